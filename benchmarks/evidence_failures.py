"""Where blur and low resolution are missed or wrongly found: the benchmark's samples by their parameters.

Usage:
    python benchmarks/evidence_failures.py --split calibration          # the tuning photos
    python benchmarks/evidence_failures.py --split benchmark --dump /tmp/benchmark_samples.pkl
    python benchmarks/evidence_failures.py --load /tmp/benchmark_samples.pkl --calibration /tmp/try.json

Draws exactly the samples of `benchmarks/evidence_bench.py` (same seed, same order),
keeps each one's feature vector, and prints, per learned type (blur, low resolution),
how often it is found by band of its own parameter, by kind (blur kernel, upscaling
interpolation) and by the noise and JPEG in the same image, and what the images read as
it without having it actually have. `--dump` keeps the samples (with their features),
`--load` reads them back and `--calibration` re-reads them with another calibration file
(features unchanged), so a retrained calibration is scored in seconds.

Only the `calibration` and `benchmark` splits are for this: the unseen and other splits
are read through their aggregate figures only (evidence_bench.py), so that they stay
blind to what is tuned here.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse
import pickle
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from inspector.evidence.learned import LEARNED_TYPES, load_calibration, predict_readings
from inspector.taxonomy import DEGRADATION_TYPES, severity_from_parameter

ANALYSED_SPLITS = ("calibration", "benchmark")
# Bands of the types' own parameters, finer than the contract's near the mild threshold.
PARAMETER_BANDS = {
    "blur": ((1.0, 1.5), (1.5, 2.0), (2.0, 4.0), (4.0, 99.0)),
    "low_resolution": ((1.6, 2.0), (2.0, 2.5), (2.5, 4.0), (4.0, 99.0)),
}
NOISE_BANDS = ((0.0, 5.0), (5.0, 12.0), (12.0, 25.0), (25.0, 999.0))
JPEG_BANDS = ((50.0, 101.0), (30.0, 50.0), (0.0, 30.0))


def band_label(value: float, bands) -> str:
    """The band of `value` as 'low-high' ('>low' for the open top band).

    >>> band_label(1.7, PARAMETER_BANDS["blur"])
    '1.5-2'
    """
    for low, high in bands:
        if low <= value < high:
            return f">{low:g}" if high >= 99 else f"{low:g}-{high:g}"
    return "out"


def sample_records(split: str, n: int, n_clean: int, seed: int) -> list[dict]:
    """The bench's samples of `split` with their feature vectors, in the bench's order."""
    from benchmarks import evidence_bench

    recorded = []
    measure = evidence_bench.measure

    def recording_measure(image, **kwargs):
        evidence = measure(image, **kwargs)
        recorded.append(evidence.details)
        return evidence

    evidence_bench.measure = recording_measure
    try:
        photos = evidence_bench.load_photos(evidence_bench.split_photos(split))
        samples = evidence_bench.run_samples(photos, n, n_clean, seed, other=split == "other")
    finally:
        evidence_bench.measure = measure
    details = recorded[1:]  # the first call is run_samples' warm-up
    return [{"photo": s.photo, "clean": s.clean, "spec": s.spec, "labels": s.labels, "measured": s.measured,
             "features": d["features"], "estimators": d["estimators"]} for s, d in zip(samples, details)]


def reread(records: list[dict], calibration: str) -> list[dict]:
    """The records with blur and low resolution read again by another calibration file."""
    models = load_calibration(calibration)
    out = []
    for record in records:
        learned = predict_readings(record["features"], models, record["estimators"])
        measured = dict(record["measured"])
        measured.update({kind: severity_from_parameter(kind, value) for kind, (value, _) in learned.items()})
        out.append({**record, "measured": measured})
    return out


def context(record: dict) -> dict[str, str]:
    """What else is in the image: noise and JPEG bands, blur kernel and upscaling interpolation."""
    spec = record["spec"]
    noise = spec.get("noise", {}).get("sigma", 0.0)
    quality = spec.get("jpeg_artifacts", {}).get("quality", 100.0)
    return {"noise": band_label(noise, NOISE_BANDS), "jpeg": band_label(quality, JPEG_BANDS),
            "blur kind": spec.get("blur", {}).get("kind", "-"),
            "interpolation": spec.get("low_resolution", {}).get("interpolation", "-")}


def found_table(records: list[dict], kind: str) -> list[str]:
    """Share found among the present ones, per parameter band and per context."""
    from benchmarks.evidence_bench import PARAMETER_KEYS

    key = PARAMETER_KEYS[kind]
    present = [r for r in records if not r["clean"] and r["labels"][kind] != "none"]
    groups: dict[str, list[bool]] = defaultdict(list)
    for r in present:
        hit = r["measured"][kind] != "none"
        groups[f"{key} {band_label(r['spec'][kind][key], PARAMETER_BANDS[kind])}"].append(hit)
        for name, value in context(r).items():
            if (name == "blur kind") == (kind == "blur") or name in ("noise", "jpeg"):
                groups[f"{name} {value}"].append(hit)
    lines = [f"{kind}: found {sum(r['measured'][kind] != 'none' for r in present)} of {len(present)} present"]
    for label in sorted(groups):
        hits = groups[label]
        lines.append(f"  {label:22s} {np.mean(hits):6.1%} of {len(hits):3d}")
    return lines


def false_table(records: list[dict], kind: str) -> list[str]:
    """What the images read as `kind` without having it are: clean, the other learned type, or else."""
    from benchmarks.evidence_bench import PARAMETER_KEYS

    wrong = [r for r in records if r["labels"][kind] == "none" and r["measured"][kind] != "none"]
    other = [k for k in LEARNED_TYPES if k != kind][0]
    counts: dict[str, int] = defaultdict(int)
    for r in wrong:
        if r["clean"]:
            counts[f"clean crop ({r['photo']})"] += 1
        elif r["labels"][other] != "none":
            counts[f"{other} {band_label(r['spec'][other][PARAMETER_KEYS[other]], PARAMETER_BANDS[other])} "
                   f"{context(r)['blur kind' if other == 'blur' else 'interpolation']}"] += 1
        else:
            present = [k for k in DEGRADATION_TYPES if r["labels"][k] != "none"]
            counts["only " + "+".join(present)] += 1
    lines = [f"{kind}: {len(wrong)} false positives"]
    lines += [f"  {label:34s} {count:3d}" for label, count in sorted(counts.items(), key=lambda kv: -kv[1])]
    return lines


def f1_line(records: list[dict]) -> str:
    from benchmarks.evidence_bench import f1_score

    degraded = [r for r in records if not r["clean"]]
    clean = [r for r in records if r["clean"]]
    cells = []
    for kind in LEARNED_TYPES:
        truth = np.array([r["labels"][kind] != "none" for r in degraded])
        found = np.array([r["measured"][kind] != "none" for r in degraded])
        f1 = f1_score(truth, found)
        exact = np.mean([r["measured"][kind] == r["labels"][kind] for r in degraded if r["labels"][kind] != "none"])
        cells.append(f"{kind} F1 {f1:.3f} severity exact {exact:.1%}")
    flagged = np.mean([any(v != "none" for v in r["measured"].values()) for r in clean]) if clean else float("nan")
    return "; ".join(cells) + f"; clean flagged (any type) {flagged:.1%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=ANALYSED_SPLITS, default="calibration")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--clean", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--dump", type=Path, help="keep the samples and their features here (pickle)")
    parser.add_argument("--load", type=Path, help="read samples kept by --dump instead of drawing them")
    parser.add_argument("--calibration", help="read blur and low resolution again with this calibration file")
    args = parser.parse_args(argv)
    if args.load:
        records = pickle.loads(args.load.read_bytes())
    else:
        records = sample_records(args.split, args.n, args.clean, args.seed)
        if args.dump:
            args.dump.write_bytes(pickle.dumps(records))
    if args.calibration:
        records = reread(records, args.calibration)
    print(f1_line(records))
    for kind in LEARNED_TYPES:
        print("\n".join(found_table(records, kind) + false_table(records, kind)))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
