"""Re-derive the blur calibration table from the calibration photos.

Usage:
    python -m inspector.evidence.calibrate

Blurs each calibration photo (the `CALIBRATION_PHOTOS` of benchmarks/evidence_bench.py:
astronaut, chelsea, coffee, china, brick, grass) with Gaussian and defocus blur of known
sigma, reads the edge sigma with `estimate_blur`, and prints the median per sigma: the
`CALIBRATION_MEASURED` / `CALIBRATION_ADDED` pairs of blur.py. The held-out benchmark
photos are never used here.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from inspector.evidence.blur import estimate_blur
from inspector.evidence.measure import luminance
from inspector.evidence.synthesis import degrade

SIGMAS = (0.0, 1.0, 1.5, 2.0, 3.0, 4.0, 5.5, 7.0)


def calibration_photos() -> list[Image.Image]:
    import sklearn.datasets
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.brick(), data.grass()]
    photos.append(sklearn.datasets.load_sample_image("china.jpg"))
    return [Image.fromarray(np.asarray(p)).convert("RGB") for p in photos]


def main() -> None:
    photos = calibration_photos()
    print("sigma  measured-median  (min-max) over photos x {gaussian, defocus}")
    for sigma in SIGMAS:
        readings = []
        for kind in ("gaussian", "defocus"):
            for image in photos:
                spec = {"blur": {"kind": kind, "sigma": sigma}} if sigma else {}
                readings.append(estimate_blur(luminance(degrade(image, spec, seed=1))[0]).total_sigma)
        print(f"{sigma:5.1f}  {np.median(readings):6.2f}  ({min(readings):.2f}-{max(readings):.2f})")


if __name__ == "__main__":
    main()
