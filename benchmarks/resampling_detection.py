"""The resampling-pattern detector alone: upscalings found against false patterns, by profile kind.

Usage:
    python benchmarks/resampling_detection.py                  # 900 samples of the calibration photos
    python benchmarks/resampling_detection.py --n 300 --json

`inspector.evidence.resolution.periodic_peak` searches the difference profiles of an image
for the periodic pattern an upscaling leaves. This measures that search on its own, before
the factor choice and the learned calibration: on crops of the calibration (tuning)
photos only, half of them upscaled by a factor drawn log-uniformly from 1.4-8 with the
synthesis's four interpolations, a quarter clean and a quarter blurred (Gaussian, sigma
1-5), each with nothing more, white noise (sigma 4-25), a JPEG (quality 25-75) or both.
For the mean absolute difference profiles (the detector up to 2026-12-03) and for their L3
means (the shipped one) it prints, at each detector's own threshold and
at thresholds in between, the share of upscaled crops whose pattern clears it ("found")
and of the others that show one ("false"), the found share by condition and factor band.
Seeds 7 and 8 were the two draws looked at when the power and the threshold were chosen
(the default is 8); the held-out photos of benchmarks/evidence_bench.py were not used.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from evidence_bench import CALIBRATION_PHOTOS, load_photos, random_crop  # noqa: E402  (benchmarks/, beside this)

from inspector.evidence import synthesis  # noqa: E402
from inspector.evidence.measure import luminance  # noqa: E402
from inspector.evidence.resolution import MEAN_MIN_STRENGTH, MIN_STRENGTH, periodic_peak  # noqa: E402
from inspector.evidence.shared import Shared  # noqa: E402

CONDITIONS = ("plain", "noise", "jpeg", "noise+jpeg")
FACTOR_BANDS = ((1.4, 2.0), (2.0, 4.0), (4.0, 8.01))
# Each detector: whether it reads the mean absolute profiles, and its threshold.
DETECTORS = {"mean absolute profiles (before)": (True, MEAN_MIN_STRENGTH), "L3 profiles (shipped)": (False, MIN_STRENGTH)}


def draw(rng: np.random.Generator, photos: dict) -> dict:
    """One sample: its kind (upscaled, clean, blurred), condition, spec, and the image."""
    crop = random_crop(photos[str(rng.choice(sorted(photos)))], rng)
    kind = str(rng.choice(["upscaled", "upscaled", "clean", "blurred"]))
    spec: dict = {}
    if kind == "upscaled":
        factor = float(np.exp(rng.uniform(np.log(1.4), np.log(8.0))))
        spec["low_resolution"] = {"factor": round(factor, 3), "interpolation": str(
            rng.choice(list(synthesis.INTERPOLATIONS), p=[0.4, 0.25, 0.15, 0.2]))}
    elif kind == "blurred":
        spec["blur"] = {"sigma": float(np.exp(rng.uniform(0.0, np.log(5.0)))), "kind": "gaussian"}
    condition = str(rng.choice(CONDITIONS))
    if "noise" in condition:
        spec["noise"] = {"sigma": float(rng.uniform(4, 25)), "kind": "gaussian"}
    if "jpeg" in condition:
        spec["jpeg_artifacts"] = {"quality": int(rng.uniform(25, 75))}
    image = synthesis.degrade(crop, spec, seed=int(rng.integers(0, 2**31)))
    return {"kind": kind, "condition": condition, "spec": spec, "image": image}


def share(flags: np.ndarray) -> float | None:
    return round(float(flags.mean()), 3) if flags.size else None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=900, help="samples (default 900)")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    photos = load_photos(CALIBRATION_PHOTOS)
    kinds, conditions, factors, strengths = [], [], [], {name: [] for name in DETECTORS}
    for _ in tqdm(range(args.n), desc="samples", file=sys.stderr):
        sample = draw(rng, photos)
        luma, _ = luminance(sample["image"])
        shared, jpeg = Shared(luma), "jpeg_artifacts" in sample["spec"]
        for name, (mean_profiles, threshold) in DETECTORS.items():
            strengths[name].append(periodic_peak(luma, jpeg, shared, threshold, mean_profiles)[1])
        kinds.append(sample["kind"])
        conditions.append(sample["condition"])
        factors.append(sample["spec"].get("low_resolution", {}).get("factor", 1.0))
    upscaled, conditions, factors = np.array(kinds) == "upscaled", np.array(conditions), np.array(factors)
    result = {"samples": args.n, "seed": args.seed, "upscaled": int(upscaled.sum()), "detectors": {}}
    for name, (_, own) in DETECTORS.items():
        strength = np.array(strengths[name])
        rows = {}
        for threshold in sorted({own, *np.round(np.arange(2.8, 4.6, 0.2), 1)}):
            found = strength >= threshold
            rows[f"{threshold:.1f}"] = {
                "found": share(found[upscaled]), "false": share(found[~upscaled]),
                **{condition: share(found[upscaled & (conditions == condition)]) for condition in CONDITIONS},
                **{f"factor {low}-{high:.0f}": share(found[upscaled & (factors >= low) & (factors < high)])
                   for low, high in FACTOR_BANDS}}
        result["detectors"][name] = {"threshold": own, "rows": rows}
    print(json.dumps(result, indent=2) if args.json else table(result))
    return result


def table(result: dict) -> str:
    lines = [(f"{result['samples']} samples of the calibration photos (seed {result['seed']}), "
              f"{result['upscaled']} upscaled"), ""]
    for name, detector in result["detectors"].items():
        columns = list(next(iter(detector["rows"].values())))
        lines += [f"{name} (its threshold: {detector['threshold']})", "",
                  "| threshold | " + " | ".join(columns) + " |", "|" + " --- |" * (len(columns) + 1)]
        for threshold, row in detector["rows"].items():
            mark = " (its own)" if float(threshold) == detector["threshold"] else ""
            lines.append(f"| {threshold}{mark} | " + " | ".join(str(row[column]) for column in columns) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
