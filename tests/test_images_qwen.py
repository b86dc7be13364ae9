"""make_views against the real Qwen2-VL image processor: no resampling, tokens as counted.

Importing transformers takes ~10 s on a cold 2-core machine; the rest of the suite
imports it anyway (the tiny model), so in a full run this file costs about a second.
"""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_images import sample_rgb

from inspector.images import make_views, view_tokens

qwen_processing = pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl")


@pytest.mark.parametrize(("size", "budget"), [((1600, 1200), 256), ((40, 30), 64), ((2000, 8), 256),
                                              ((8, 3000), 1024), ((300, 200), 256)])
def test_processor_takes_views_as_they_are(size, budget):
    views = make_views(sample_rgb(*size), budget)
    processor = qwen_processing.Qwen2VLImageProcessor()
    resized = processor(images=views, return_tensors="np")
    native = processor(images=views, do_resize=False, return_tensors="np")
    # The processor's own resize changes nothing: the model sees our pixels.
    assert np.array_equal(resized["pixel_values"], native["pixel_values"])
    grids = resized["image_grid_thw"]
    assert [(int(h) * 14, int(w) * 14) for _, h, w in grids] == [(v.height, v.width) for v in views]
    merge = processor.merge_size**2
    assert int(np.prod(grids, axis=1).sum()) // merge == view_tokens(views) <= budget
