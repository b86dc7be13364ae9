"""Benchmark of the measured evidence: degrade photos, measure them back, on three splits.

Usage:
    python benchmarks/evidence_bench.py                  # the three splits below, seed 2026
    python benchmarks/evidence_bench.py --quick          # a smoke run: 60 + 20 samples per split
    python benchmarks/evidence_bench.py --split unseen --n 200 --seed 7 --json
    python benchmarks/evidence_bench.py --split calibration   # the photos the estimators were tuned on
    python benchmarks/evidence_bench.py --speed          # only measure() on 1 MP and 12 MP, one thread, both allocators

Splits (photos fixed by name before any figure was looked at; the seed 2026 was never
used for tuning or training):
- `benchmark`: held-out photos shipped with scikit-image, scikit-learn and matplotlib
  (`BENCHMARK_PHOTOS`), degraded by `inspector.evidence.synthesis`.
- `unseen`: photos never used to tune any constant, nor looked at while tuning
  (`UNSEEN_PHOTOS`: scikit-image's motorcycle_right, mahotas' DepartmentStore, imgaug's
  quokka; install with `pip install mahotas` and `pip install --no-deps imgaug==0.4.0`,
  a missing one is skipped and named), plus procedural dead-leaves scenes of seeds that
  no calibration drew (`UNSEEN_SCENE_SEEDS`); degraded by the synthesis.
- `other`: the benchmark and unseen photos degraded by other implementations (OpenCV,
  Pillow, albumentations: pixelation, disk defocus, Poisson and ISO-like noise, 4:4:4
  and 4:2:2 JPEG, JPEG without its tables); see benchmarks/other_degradations.py.
- `calibration`: the photos the constants and the learned calibration were tuned on
  (`CALIBRATION_PHOTOS`), for comparison only.

Each sample is a random crop (and flip) of a photo, degraded with a spec from
`sample_spec` (known parameters, labels for all four types, in the contract's bands),
then measured. Clean samples (untouched crops) give the false-positive rate. Two
classic single-number detectors run on the same samples at the threshold that is best
*for this very set* (an optimistic baseline): the variance of the Laplacian for blur,
and skimage.restoration.estimate_sigma for noise.

Speed is `measure` alone, single thread (BLAS/OpenMP threads set to 1 before numpy
loads), per megapixel, as thread CPU time and as wall time; and on 1 MP and 12 MP
images, where the per-image overheads no longer dominate.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse
import importlib.util
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inspector.evidence import degrade, measure, sample_spec
from inspector.evidence.jpeg import quality_from_pixels
from inspector.evidence.measure import luminance
from inspector.taxonomy import BANDS, DEGRADATION_TYPES, SEVERITIES, severity_from_parameter

# Split fixed by name before any figure was looked at. moon.png is left out of both: it
# is itself an upscaled image (a strong 2x resampling pattern), so not a clean photo.
CALIBRATION_PHOTOS = ("astronaut", "chelsea", "coffee", "china", "brick", "grass")
BENCHMARK_PHOTOS = ("camera", "coins", "rocket", "grace_hopper", "flower", "motorcycle_left", "gravel")
# Natural scenes only, chosen by content before measuring them: the microscopy,
# astronomy and fundus images that ship beside them (ihc, nuclear, hubble_deep_field,
# retina) are not the photos the app is for.
UNSEEN_PHOTOS = ("motorcycle_right", "department_store", "quokka")
# Calibration scenes are seeds 0-99 999 (train/calibrate_evidence.py); these are never drawn there.
UNSEEN_SCENE_SEEDS = (1_000_001, 1_000_002, 1_000_003, 1_000_004)
SPLITS = ("benchmark", "unseen", "other")
PARAMETER_KEYS = {"blur": "sigma", "noise": "sigma", "low_resolution": "factor", "jpeg_artifacts": "quality"}


def photo_paths() -> dict[str, Path]:
    import matplotlib
    import skimage
    import sklearn

    skimage_data = Path(skimage.__file__).parent / "data"
    sklearn_data = Path(sklearn.__file__).parent / "datasets" / "images"
    mpl_data = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data"
    paths = {name: skimage_data / f"{name}.png" for name in
             ("astronaut", "camera", "chelsea", "coffee", "coins", "brick", "grass", "gravel", "motorcycle_left",
              "motorcycle_right")}
    paths.update({"rocket": skimage_data / "rocket.jpg", "china": sklearn_data / "china.jpg",
                  "flower": sklearn_data / "flower.jpg", "grace_hopper": mpl_data / "grace_hopper.jpg"})
    for name, (package, relative) in {"department_store": ("mahotas", "demos/data/DepartmentStore.jpg"),
                                      "quokka": ("imgaug", "quokka.jpg")}.items():
        # find_spec locates the package without importing it (imgaug's imports need old libraries).
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            paths[name] = Path(spec.origin).parent / relative
    return paths


def load_photos(names) -> dict[str, Image.Image]:
    """The named photos as RGB; scenes are `scene-SEED`; a photo whose package is missing is skipped."""
    from inspector.evidence.scenes import dead_leaves

    paths = photo_paths()
    photos = {}
    for name in names:
        if name.startswith("scene-"):
            photos[name] = dead_leaves(int(name.split("-", 1)[1]), (640, 480))
            continue
        if name not in paths or not paths[name].exists():
            print(f"  photo {name} not installed, skipped (see the usage docstring)", file=sys.stderr)
            continue
        with Image.open(paths[name]) as image:
            photos[name] = image.convert("RGB")
    return photos


def split_photos(split: str) -> tuple[str, ...]:
    scenes = tuple(f"scene-{seed}" for seed in UNSEEN_SCENE_SEEDS)
    return {"benchmark": BENCHMARK_PHOTOS, "calibration": CALIBRATION_PHOTOS, "unseen": UNSEEN_PHOTOS + scenes,
            "other": BENCHMARK_PHOTOS + UNSEEN_PHOTOS + scenes}[split]


def random_crop(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A crop of 60-100 % of each side (at least 192 px), maybe mirrored."""
    width, height = photo.size
    crop_w = int(rng.uniform(0.6, 1.0) * width) if width > 192 else width
    crop_h = int(rng.uniform(0.6, 1.0) * height) if height > 192 else height
    crop_w, crop_h = max(min(width, 192), crop_w), max(min(height, 192), crop_h)
    left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
    crop = photo.crop((left, top, left + crop_w, top + crop_h))
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


@dataclass
class Sample:
    photo: str
    clean: bool
    spec: dict
    labels: dict
    measured: dict
    estimates: dict
    megapixels: float
    cpu_ms: float
    wall_ms: float
    laplacian_variance: float
    wavelet_sigma: float
    jpeg_pixels_severity: str


def other_degrader():
    """other_degradations.degrade_other, whether this file runs as a script or as benchmarks.evidence_bench."""
    try:
        from benchmarks.other_degradations import degrade_other
    except ImportError:
        # As `python benchmarks/evidence_bench.py`, this folder is the first import path.
        from other_degradations import degrade_other
    return degrade_other


def run_samples(photos: dict[str, Image.Image], n: int, n_clean: int, seed: int, other: bool = False,
                progress: bool = True, calibrated: bool = True) -> list[Sample]:
    """Degraded then clean samples; `other`: degradations by other libraries (other_degradations.py)."""
    from scipy import ndimage

    names = sorted(photos)
    rng = np.random.default_rng(seed)
    samples = []
    measure(photos[names[0]])  # warm-up: builds the blur estimator's table once
    total = n + n_clean
    for index in range(total):
        clean = index >= n
        name = str(rng.choice(names))
        crop = random_crop(photos[name], rng)
        if clean:
            spec, labels = {}, {kind: "none" for kind in DEGRADATION_TYPES}
            image = crop
        elif other:
            degrade_other = other_degrader()

            spec, labels = sample_spec(rng)
            image, spec, labels = degrade_other(crop, spec, labels, rng)
        else:
            spec, labels = sample_spec(rng)
            image = degrade(crop, spec, seed=int(rng.integers(0, 2**31)))
        wall, cpu = time.perf_counter(), time.thread_time()
        evidence = measure(image, calibrated=calibrated)
        cpu_ms, wall_ms = (time.thread_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000
        gray = np.asarray(image.convert("L"), dtype=np.float64)
        rgb = np.asarray(image, dtype=np.float64) / 255.0
        samples.append(Sample(
            photo=name, clean=clean, spec=spec, labels=labels, measured=evidence.severities(),
            estimates={d.type: d.estimate for d in evidence.degradations},
            megapixels=image.size[0] * image.size[1] / 1e6, cpu_ms=cpu_ms, wall_ms=wall_ms,
            laplacian_variance=float(ndimage.laplace(gray).var()),
            wavelet_sigma=wavelet_sigma(rgb) * 255.0,
            # The same image without its tables (a JPEG re-saved as PNG): quality from pixels.
            jpeg_pixels_severity=severity_from_parameter(
                "jpeg_artifacts", quality_from_pixels(luminance(image)[0]).quality),
        ))
        if progress and (index + 1) % 25 == 0:
            print(f"  {index + 1}/{total} samples", file=sys.stderr)
    return samples


def wavelet_sigma(rgb: np.ndarray) -> float:
    """skimage.restoration.estimate_sigma (Donoho & Johnstone wavelet MAD, needs PyWavelets), channels averaged."""
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(rgb, channel_axis=-1, average_sigmas=True))


def f1_score(truth: np.ndarray, predicted: np.ndarray) -> float:
    tp = float(np.sum(truth & predicted))
    fp, fn = float(np.sum(~truth & predicted)), float(np.sum(truth & ~predicted))
    return 2 * tp / max(2 * tp + fp + fn, 1.0)


def best_threshold_f1(truth: np.ndarray, score: np.ndarray, positive_above: bool) -> tuple[float, float]:
    """Best F1 over all thresholds on this very set, and the threshold."""
    best = (0.0, float("nan"))
    for threshold in np.unique(score):
        predicted = score >= threshold if positive_above else score <= threshold
        best = max(best, (f1_score(truth, predicted), float(threshold)))
    return best


def summarize(samples: list[Sample]) -> dict:
    degraded = [s for s in samples if not s.clean]
    clean = [s for s in samples if s.clean]
    result: dict = {"samples": len(degraded), "clean_samples": len(clean), "per_type": {}}
    for kind in DEGRADATION_TYPES:
        truth = np.array([s.labels[kind] != "none" for s in degraded])
        predicted = np.array([s.measured[kind] != "none" for s in degraded])
        positives = [s for s in degraded if s.labels[kind] != "none"]
        exact = np.mean([s.measured[kind] == s.labels[kind] for s in positives]) if positives else float("nan")
        errors = [abs(s.estimates[kind] - s.spec[kind][PARAMETER_KEYS[kind]]) for s in positives]
        result["per_type"][kind] = {
            "f1": f1_score(truth, predicted),
            "positives": int(truth.sum()),
            "severity_accuracy": float(exact),
            "median_abs_error": float(np.median(errors)) if errors else float("nan"),
            "unit": BANDS[kind].unit,
            "clean_fp_rate": float(np.mean([s.measured[kind] != "none" for s in clean])) if clean else float("nan"),
            "confusion": confusion(degraded, kind),
        }
    exact_set = [{k for k in DEGRADATION_TYPES if s.labels[k] != "none"} ==
                 {k for k in DEGRADATION_TYPES if s.measured[k] != "none"} for s in degraded]
    present = [(s, k) for s in degraded for k in DEGRADATION_TYPES if s.labels[k] != "none"]
    result["exact_set_accuracy"] = float(np.mean(exact_set))
    result["severity_accuracy"] = float(np.mean([s.measured[k] == s.labels[k] for s, k in present]))
    result["severity_accuracy_all"] = float(np.mean([s.measured[k] == s.labels[k] for s in degraded
                                                     for k in DEGRADATION_TYPES]))
    result["clean_fp_rate"] = float(np.mean([any(v != "none" for v in s.measured.values()) for s in clean]))
    jpeg_truth = np.array([s.labels["jpeg_artifacts"] != "none" for s in degraded])
    jpeg_positives = [s for s in degraded if s.labels["jpeg_artifacts"] != "none"]
    result["jpeg_from_pixels"] = {
        "f1": f1_score(jpeg_truth, np.array([s.jpeg_pixels_severity != "none" for s in degraded])),
        "severity_accuracy": float(np.mean([s.jpeg_pixels_severity == s.labels["jpeg_artifacts"]
                                            for s in jpeg_positives])) if jpeg_positives else float("nan"),
    }
    blur_truth = np.array([s.labels["blur"] != "none" for s in degraded])
    noise_truth = np.array([s.labels["noise"] != "none" for s in degraded])
    result["baselines"] = {
        "laplacian_variance_blur": best_threshold_f1(blur_truth, np.array([s.laplacian_variance for s in degraded]),
                                                     positive_above=False),
        "estimate_sigma_noise": best_threshold_f1(noise_truth, np.array([s.wavelet_sigma for s in degraded]),
                                                  positive_above=True),
    }
    per_mp_cpu = [s.cpu_ms / s.megapixels for s in samples]
    per_mp_wall = [s.wall_ms / s.megapixels for s in samples]
    result["speed"] = {"cpu_ms_per_mp": float(np.median(per_mp_cpu)), "wall_ms_per_mp": float(np.median(per_mp_wall)),
                       "median_megapixels": float(np.median([s.megapixels for s in samples]))}
    return result


def confusion(samples: list[Sample], kind: str) -> list[list[int]]:
    matrix = np.zeros((len(SEVERITIES), len(SEVERITIES)), dtype=int)
    for s in samples:
        matrix[SEVERITIES.index(s.labels[kind]), SEVERITIES.index(s.measured[kind])] += 1
    return matrix.tolist()


def large_image_speed(repeats: int = 7) -> dict:
    """measure() on 1 MP and 12 MP images (a photo mirrored into a large frame), 1 thread.

    First with glibc's default allocator settings (the app's process), then with the
    thresholds `analyze` sets (inspector/memory.py: freed memory stays in the heap).
    """
    from inspector.memory import keep_freed_memory

    photo = np.asarray(load_photos(["coffee"])["coffee"])
    row = np.concatenate([photo, photo[:, ::-1]] * 4, axis=1)
    mosaic = np.concatenate([row, row[::-1]] * 4, axis=0)
    images = {label: Image.fromarray(np.ascontiguousarray(mosaic[:height, :width]))
              for label, (width, height) in {"1mp": (1200, 834), "12mp": (4000, 3000)}.items()}
    speeds = {}
    for allocator in ("default", "analyze"):
        if allocator == "analyze" and not keep_freed_memory():
            break  # not glibc: the two are the same
        for label, image in images.items():
            measure(image)
            cpu = []
            for _ in range(repeats):
                start = time.thread_time()
                measure(image)
                cpu.append((time.thread_time() - start) * 1000)
            megapixels = image.size[0] * image.size[1] / 1e6
            speeds[label if allocator == "default" else f"{label}-analyze"] = {
                "megapixels": megapixels, "cpu_ms": float(np.median(cpu)),
                "cpu_ms_per_mp": float(np.median(cpu)) / megapixels, "allocator": allocator}
    return speeds


# What the issue asks of every split.
TARGETS = {"f1": 0.90, "clean_fp_rate": 0.05, "severity_accuracy": 0.75}


def markdown(result: dict, split: str, photos, seed: int) -> str:
    lines = [f"### Split `{split}`: {result['samples']} degraded + {result['clean_samples']} clean samples, "
             f"seed {seed}", "", f"Photos: {', '.join(photos)}.", ""]
    if split == "other":
        lines += ["Degraded by OpenCV, Pillow and albumentations (benchmarks/other_degradations.py); half the "
                  "JPEGs without their tables.", ""]
    else:
        lines += ["JPEG-compressed samples carry their quantization tables, as a JPEG file does.", ""]
    lines += ["| type | F1 (presence) | severity exact | median abs error | FP on clean | positives |",
              "| --- | --- | --- | --- | --- | --- |"]
    for kind, row in result["per_type"].items():
        lines.append(f"| {kind} | {row['f1']:.3f} | {row['severity_accuracy']:.1%} | "
                     f"{row['median_abs_error']:.2f} {row['unit']} | {row['clean_fp_rate']:.1%} | {row['positives']} |")
    baselines = result["baselines"]
    lines += ["", "| figure | value |", "| --- | --- |",
              f"| exact-set accuracy (types present) | {result['exact_set_accuracy']:.1%} |",
              f"| severity exactly right (present degradations) | {result['severity_accuracy']:.1%} |",
              f"| severity exactly right (all type x image pairs) | {result['severity_accuracy_all']:.1%} |",
              f"| false positives on undegraded photos (any type) | {result['clean_fp_rate']:.1%} |",
              f"| JPEG from pixels only (tables dropped): F1, severity exact | "
              f"{result['jpeg_from_pixels']['f1']:.3f}, {result['jpeg_from_pixels']['severity_accuracy']:.1%} |",
              f"| blur F1, variance of Laplacian at its best threshold for this set | "
              f"{baselines['laplacian_variance_blur'][0]:.3f} (threshold {baselines['laplacian_variance_blur'][1]:.1f}) |",
              f"| noise F1, skimage estimate_sigma at its best threshold for this set | "
              f"{baselines['estimate_sigma_noise'][0]:.3f} (threshold {baselines['estimate_sigma_noise'][1]:.2f}) |",
              f"| speed, all four estimators, 1 thread (median image {result['speed']['median_megapixels']:.2f} MP) | "
              f"{result['speed']['cpu_ms_per_mp']:.1f} ms/MP CPU, {result['speed']['wall_ms_per_mp']:.1f} ms/MP wall |",
              ""]
    lines.append("Severity confusion (rows: label none/mild/moderate/severe, columns: measured):")
    for kind, row in result["per_type"].items():
        lines.append(f"- {kind}: {row['confusion']}")
    return "\n".join(lines)


def summary_markdown(results: dict, machine: str, load: str, large: dict | None = None) -> str:
    """One row per split: the figures the targets are set on, with a mark where one is missed."""
    def mark(value: float, target: float, above: bool) -> str:
        met = value >= target if above else value <= target
        return f"{value:.3f}" + ("" if met else " (below target)" if above else " (above target)")

    header = "| split | " + " | ".join(f"{kind} F1" for kind in DEGRADATION_TYPES) + \
        " | clean flagged | severity exact |"
    lines = ["## Summary (targets: F1 >= 0.90 per type, clean flagged <= 5 %, severity exact >= 75 %)", "",
             header, "| --- " * (len(DEGRADATION_TYPES) + 3) + "|"]
    for split, result in results.items():
        cells = [mark(result["per_type"][kind]["f1"], TARGETS["f1"], True) for kind in DEGRADATION_TYPES]
        cells.append(mark(result["clean_fp_rate"], TARGETS["clean_fp_rate"], False))
        cells.append(mark(result["severity_accuracy"], TARGETS["severity_accuracy"], True))
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    lines += ["", f"Machine: {machine}; load average at the start: {load}."]
    for label, speed in (large or {}).items():
        process = "as in analyze (freed memory kept)" if speed["allocator"] == "analyze" else "default allocator"
        lines.append(f"Speed on a {speed['megapixels']:.1f} MP image, 1 thread, {process}: {speed['cpu_ms']:.0f} ms "
                     f"({speed['cpu_ms_per_mp']:.1f} ms/MP CPU).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="degraded samples per split (default 300)")
    parser.add_argument("--clean", type=int, default=100, help="undegraded samples per split (default 100)")
    parser.add_argument("--seed", type=int, default=2026, help="sampling seed (default 2026, never used for tuning)")
    parser.add_argument("--split", choices=SPLITS + ("calibration", "all"), default="all",
                        help="one split, or all three held-out ones (default)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 60 + 20 samples per split, no 12 MP run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of Markdown")
    parser.add_argument("--no-large", action="store_true", help="skip the 1 MP and 12 MP speed runs")
    parser.add_argument("--speed", action="store_true", help="only the 1 MP and 12 MP speed runs")
    parser.add_argument("--estimators-only", action="store_true",
                        help="measure without the learned calibration (measure(..., calibrated=False))")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.clean, args.no_large = 60, 20, True
    splits = () if args.speed else SPLITS if args.split == "all" else (args.split,)
    started = time.perf_counter()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    results, texts = {}, []
    for split in splits:
        photos = load_photos(split_photos(split))
        print(f"split {split}: {len(photos)} photos", file=sys.stderr)
        samples = run_samples(photos, args.n, args.clean, args.seed, other=split == "other",
                              calibrated=not args.estimators_only)
        results[split] = summarize(samples)
        results[split]["photos"] = sorted(photos)
        texts.append(markdown(results[split], split, sorted(photos), args.seed))
    output: dict = {"splits": results, "machine": machine, "load_average": load,
                    "calibration": "estimators only" if args.estimators_only else "learned"}
    if not args.no_large:
        output["large_image"] = large_image_speed()
    output["seconds"] = time.perf_counter() - started
    if args.json:
        print(json.dumps(output, indent=2))
    else:
        print(summary_markdown(results, machine, load, output.get("large_image")))
        print(f"Readings: {output['calibration']}.")
        print("\n" + "\n\n".join(texts))
        print(f"\n({output['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
