"""The pre-trained stand-in's generic task: its pictures, their words, and a short run of it.

The whole pre-training (minutes) runs in the slow lifecycle test; here a few steps prove
that the pieces fit: new pictures every step, captions in the stand-in's own words, and
a record of how well it describes pictures it never saw.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from inspector.taxonomy import DEGRADATION_TYPES, SEVERITIES
from inspector.tiny import PRETRAIN_QUALITIES, _apply_qualities, _synthetic_scene, pretrain_tiny


def test_scenes_are_deterministic_by_seed_and_described_in_json():
    first = [_synthetic_scene(np.random.default_rng(7)) for _ in range(2)]
    assert first[0][1] == first[1][1]
    assert np.array_equal(np.asarray(first[0][0]), np.asarray(first[1][0]))
    image, answer = first[0]
    assert image.size == (224, 224) and image.mode == "RGB"
    fields = json.loads(answer)
    assert set(fields) == {"shape", "colour", "texture", "scale"} | {key for key, *_ in PRETRAIN_QUALITIES}


def test_quality_words_are_the_stand_ins_own_not_the_taxonomys():
    words = {word for _, _, _, thresholds in PRETRAIN_QUALITIES for word in thresholds}
    keys = {key for key, *_ in PRETRAIN_QUALITIES}
    assert not words & set(SEVERITIES), "the adapter must learn our severity words"
    assert not keys & set(DEGRADATION_TYPES), "the adapter must learn our type names"


def test_quality_words_name_what_was_done_to_the_picture():
    """Every word comes from its quality's table, each word turns up, and grain shows in the pixels."""
    from PIL import Image

    flat = Image.new("RGB", (64, 64), (120, 130, 140))
    seen = {key: set() for key, *_ in PRETRAIN_QUALITIES}
    spread = {}
    for seed in range(200):
        image, words = _apply_qualities(flat, np.random.default_rng(seed))
        for key, _, _, thresholds in PRETRAIN_QUALITIES:
            assert words[key] in thresholds
            seen[key].add(words[key])
        spread.setdefault(words["grain"], []).append(float(np.asarray(image, dtype=np.float32).std()))
    assert all(len(words) == len(thresholds) for (key, _, _, thresholds), words in
               zip(PRETRAIN_QUALITIES, seen.values())), seen
    assert np.median(spread["heavy"]) > np.median(spread["light"]) > np.median(spread["clean"])


@pytest.mark.timeout(300)
def test_a_short_pretraining_writes_a_loadable_model_and_its_record(tmp_path):
    from transformers import Qwen2VLForConditionalGeneration

    folder = pretrain_tiny(tmp_path / "base", caption_steps=2, batch_size=2, held_out_pictures=4)
    record = json.loads((folder / "pretraining.json").read_text())
    assert record["pictures"] == 2 * 2
    fields = {"shape", "colour", "texture", "scale"} | {key for key, *_ in PRETRAIN_QUALITIES}
    for measure in ("accuracy", "commonest_word"):
        assert set(record["held_out"][measure]) == fields
        assert all(0.0 <= share <= 1.0 for share in record["held_out"][measure].values())
    assert all(share > 0 for share in record["held_out"]["commonest_word"].values())
    model = Qwen2VLForConditionalGeneration.from_pretrained(folder)  # the loading path of the real base
    from inspector.tiny import _dct_filters

    patch = model.model.visual.patch_embed.proj.weight
    assert torch.equal(patch, _dct_filters(*patch.shape[:3], patch.shape[-1])), "the encoder stays as initialised"
