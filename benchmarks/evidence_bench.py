"""Benchmark of the measured evidence (issue 3): degrade real photos, measure them back.

Usage:
    python benchmarks/evidence_bench.py                 # held-out photos, default seed
    python benchmarks/evidence_bench.py --n 200 --seed 7 --json
    python benchmarks/evidence_bench.py --split calibration   # the photos the estimators were tuned on

Photos are the ones that ship inside installed packages (scikit-image, scikit-learn,
matplotlib). They are split once, by name, into the photos the estimators' constants
were tuned on (`CALIBRATION_PHOTOS`) and held-out photos (`BENCHMARK_PHOTOS`); the
default run uses only the held-out ones, with a seed never used for tuning.

Each sample is a random crop (and flip) of a photo, degraded by `degrade` with a spec
from `sample_spec` (known parameters, labels for all four types), then measured. Clean
samples (untouched crops) give the false-positive rate. Two classic single-number
detectors run on the same samples at the threshold that is best *for this very set*
(an optimistic baseline): the variance of the Laplacian for blur, and
skimage.restoration.estimate_sigma for noise.

Speed is `measure` alone, single thread (BLAS/OpenMP threads set to 1 before numpy
loads), per megapixel, as thread CPU time and as wall time.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse
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
PARAMETER_KEYS = {"blur": "sigma", "noise": "sigma", "low_resolution": "factor", "jpeg_artifacts": "quality"}


def photo_paths() -> dict[str, Path]:
    import matplotlib
    import skimage
    import sklearn

    skimage_data = Path(skimage.__file__).parent / "data"
    sklearn_data = Path(sklearn.__file__).parent / "datasets" / "images"
    mpl_data = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data"
    paths = {name: skimage_data / f"{name}.png" for name in
             ("astronaut", "camera", "chelsea", "coffee", "coins", "brick", "grass", "gravel", "motorcycle_left")}
    paths.update({"rocket": skimage_data / "rocket.jpg", "china": sklearn_data / "china.jpg",
                  "flower": sklearn_data / "flower.jpg", "grace_hopper": mpl_data / "grace_hopper.jpg"})
    return paths


def load_photos(names) -> dict[str, Image.Image]:
    paths = photo_paths()
    photos = {}
    for name in names:
        with Image.open(paths[name]) as image:
            photos[name] = image.convert("RGB")
    return photos


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


def run_samples(names, n: int, n_clean: int, seed: int, progress: bool = True) -> list[Sample]:
    from scipy import ndimage

    photos = load_photos(names)
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
        else:
            spec, labels = sample_spec(rng)
            image = degrade(crop, spec, seed=int(rng.integers(0, 2**31)))
        wall, cpu = time.perf_counter(), time.thread_time()
        evidence = measure(image)
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


def large_image_speed(repeats: int = 3) -> dict:
    """measure() on 1 MP and 12 MP images (a photo mirrored into a large frame), 1 thread."""
    photo = np.asarray(load_photos(["coffee"])["coffee"])
    row = np.concatenate([photo, photo[:, ::-1]] * 4, axis=1)
    mosaic = np.concatenate([row, row[::-1]] * 4, axis=0)
    speeds = {}
    for label, (width, height) in {"1mp": (1200, 834), "12mp": (4000, 3000)}.items():
        image = Image.fromarray(np.ascontiguousarray(mosaic[:height, :width]))
        measure(image)
        cpu = []
        for _ in range(repeats):
            start = time.thread_time()
            measure(image)
            cpu.append((time.thread_time() - start) * 1000)
        megapixels = width * height / 1e6
        speeds[label] = {"megapixels": megapixels, "cpu_ms": float(np.median(cpu)),
                         "cpu_ms_per_mp": float(np.median(cpu)) / megapixels}
    return speeds


def markdown(result: dict, args, machine: str) -> str:
    lines = [f"Evidence benchmark: {result['samples']} degraded + {result['clean_samples']} clean samples, "
             f"photos `{args.split}` ({', '.join(args.photos)}), seed {args.seed}", ""]
    lines += ["JPEG-compressed samples carry their quantization tables, as a JPEG file does.", "",
              "| type | F1 (presence) | severity exact | median abs error | FP on clean | positives |",
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
              f"{result['speed']['cpu_ms_per_mp']:.1f} ms/MP CPU, {result['speed']['wall_ms_per_mp']:.1f} ms/MP wall |"]
    for label, speed in result.get("large_image", {}).items():
        lines.append(f"| speed on a {speed['megapixels']:.1f} MP image, 1 thread | {speed['cpu_ms']:.0f} ms "
                     f"({speed['cpu_ms_per_mp']:.1f} ms/MP CPU) |")
    lines += [f"| machine | {machine} |", ""]
    lines.append("Severity confusion (rows: label none/mild/moderate/severe, columns: measured):")
    for kind, row in result["per_type"].items():
        lines.append(f"- {kind}: {row['confusion']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="degraded samples (default 400)")
    parser.add_argument("--clean", type=int, default=100, help="undegraded samples (default 100)")
    parser.add_argument("--seed", type=int, default=2026, help="sampling seed (default 2026, never used for tuning)")
    parser.add_argument("--split", choices=("benchmark", "calibration"), default="benchmark")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of Markdown")
    parser.add_argument("--no-large", action="store_true", help="skip the 12 MP speed run")
    args = parser.parse_args(argv)
    args.photos = BENCHMARK_PHOTOS if args.split == "benchmark" else CALIBRATION_PHOTOS
    started = time.perf_counter()
    samples = run_samples(list(args.photos), args.n, args.clean, args.seed)
    result = summarize(samples)
    if not args.no_large:
        result["large_image"] = large_image_speed()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    result["machine"] = machine
    result["seconds"] = time.perf_counter() - started
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(markdown(result, args, machine))
        print(f"\n({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
