"""Train the measured evidence's learned calibration (inspector/evidence/calibration.json).

Usage:
    python train/calibrate_evidence.py                    # about 12 minutes on 2 shared CPU cores
    python train/calibrate_evidence.py --samples 600 --out /tmp/calibration.json   # a quick try
    python train/calibrate_evidence.py --cache /tmp/evidence_data.npz --max-depth 4  # refit on kept data

# Data
Random crops (192-512 px a side, maybe mirrored) of the calibration photos
(`CALIBRATION_PHOTOS` of benchmarks/evidence_bench.py: astronaut, chelsea, coffee, china,
brick, grass) and of procedural dead-leaves scenes (inspector/evidence/scenes.py, seeds
0-99 999; the benchmark's scenes use other seeds), degraded by
`inspector.evidence.synthesis` with specs from `sample_spec` (a share of the noise made
correlated by `training_degrade`, none by default), a quarter of them (`diverse_share`)
by other implementations of the same specs (train/diverse_degradations.py: OpenCV and
Pillow resizers, blurs and encoders, photon and correlated noise; some of them are the
library calls of the benchmark's "other" split, which is then less independent). No
held-out or unseen photo, nor benchmarks/other_degradations.py, is ever read here. Each crop is measured by
the estimators (`measure(..., calibrated=False)`), which gives the feature vector.

# Training
Scikit-learn ensembles of shallow trees (inspector/evidence/learned.py): one three-class
GradientBoostingClassifier of the cause (neither, blur, low resolution: learned.CAUSES;
the random specs never combine the two) on all samples, and per learned type
(learned.LEARNED_TYPES) a GradientBoostingRegressor of the severity coordinate of the
true parameter (1/2/3 at the mild/moderate/severe thresholds) on the present ones. A
fifth of the data is held back to print the fit; the shipped model is then refitted on
all of it. Deterministic: fixed seeds, single-threaded fitting.

# Output
JSON (no pickle): feature names, per-type tree arrays, the config and the data it
came from; `inspector.evidence.learned` reads it.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inspector.evidence import degrade, measure, sample_spec
from inspector.evidence.features import FEATURE_NAMES
from inspector.evidence.learned import (
    ANCHORS,
    CALIBRATION_PATH,
    CAUSES,
    LEARNED_TYPES,
    coordinate,
    export_ensemble,
)
from inspector.evidence.scenes import dead_leaves
from inspector.taxonomy import severity_from_parameter
from train.diverse_degradations import diverse_degrade

PARAMETER_KEYS = {"blur": "sigma", "noise": "sigma", "low_resolution": "factor"}
ESTIMATOR_FEATURES = {"blur": "blur_sigma", "noise": "noise_sigma", "low_resolution": "resolution_factor"}
CALIBRATION_PHOTOS = ("astronaut", "chelsea", "coffee", "china", "brick", "grass")
FINE_LEVELS = ",".join([name for name in FEATURE_NAMES if name.startswith("fine_spectrum_")] + ["fine_floor"])


@dataclass
class CalibrationConfig:
    samples: int = 12000  # more: a smoother fit, about 0.05 s each
    scenes: int = 60  # procedural scenes to crop from (0.7 s each to draw)
    scene_share: float = 0.5  # share of the samples cropped from scenes rather than photos
    correlated_noise_share: float = 0.0  # share of noisy samples given correlated noise (training_degrade)
    # Share of the samples degraded by other implementations (train/diverse_degradations.py).
    diverse_share: float = 0.25
    n_estimators: int = 150  # trees per type; more: a closer fit and a larger file
    max_depth: int = 4  # depth of each tree
    learning_rate: float = 0.1
    subsample: float = 0.8
    seed: int = 20261202
    # Features a type's models may not split on (comma-separated names), e.g. readings that
    # the synthetic scenes make look more reliable than they are on real photos.
    noise_excluded: str = "flat_std_p5,flat_std_p20,flat_half_std_p5,flat_half_std_p20,noise_half_p20"
    # The fine bands' own levels describe the photo's content as much as its softness: split
    # on, they lifted the training photos' figures and lowered the unseen photos' (README,
    # "What was tried"); the Gaussian and cliff fits over the same bands stay.
    blur_excluded: str = FINE_LEVELS
    low_resolution_excluded: str = FINE_LEVELS


def calibration_sources(config: CalibrationConfig) -> tuple[list[Image.Image], list[Image.Image]]:
    import sklearn.datasets
    from skimage import data

    photos = [getattr(data, name)() for name in CALIBRATION_PHOTOS if name != "china"]
    photos.append(sklearn.datasets.load_sample_image("china.jpg"))
    photos = [Image.fromarray(np.asarray(p)).convert("RGB") for p in photos]
    rng = np.random.default_rng(config.seed)
    scenes = []
    for _ in range(config.scenes):
        seed = int(rng.integers(0, 100_000))
        width, height = int(rng.integers(384, 769)), int(rng.integers(320, 641))
        scenes.append(dead_leaves(seed, (width, height)))
    return photos, scenes


def random_crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    width, height = image.size
    crop_w = int(rng.integers(min(192, width), min(512, width) + 1))
    crop_h = int(rng.integers(min(192, height), min(512, height) + 1))
    left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
    crop = image.crop((left, top, left + crop_w, top + crop_h))
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


def training_degrade(crop: Image.Image, spec: dict, rng: np.random.Generator, correlated_share: float) -> Image.Image:
    """`degrade`, except that a share of the noisy samples get noise correlated in space and colour.

    Cameras interpolate colours (demosaicing) and sharpen, so their noise is correlated
    between neighbours and channels, and a finest-scale noise reading under-reads it;
    the synthesis makes white noise only. Here white noise is blurred by 0.4-1.0 px and
    mixed across channels, then scaled back to the spec's per-channel sigma (at
    mid-grey for Poisson-Gaussian, as `apply_noise` states it), so the calibration
    learns to read it from the coarser scales. The benchmark's camera noise (a Bayer
    mosaic demosaiced by OpenCV) is another implementation, never seen here.
    """
    seed = int(rng.integers(0, 2**31))
    if "noise" not in spec or rng.random() >= correlated_share:
        return degrade(crop, spec, seed=seed)
    from scipy import ndimage

    from inspector.evidence.synthesis import apply_jpeg, to_uint8

    before = degrade(crop, {k: v for k, v in spec.items() if k in ("blur", "low_resolution")}, seed=seed)
    pixels = np.asarray(before, dtype=np.float32)
    white = rng.standard_normal(pixels.shape).astype(np.float32)
    field = ndimage.gaussian_filter(white, (rng.uniform(0.4, 1.0),) * 2 + (0,))
    shared = rng.uniform(0.0, 0.7)
    field = (1 - shared) * field + shared * field.mean(axis=2, keepdims=True)
    field /= field.std(axis=(0, 1), keepdims=True) + 1e-6
    sigma = float(spec["noise"]["sigma"])
    if spec["noise"].get("kind") == "poisson_gaussian":
        field *= np.sqrt(0.25 + 0.75 * np.clip(pixels, 0, 255) / 128.0)
    pixels = np.clip(pixels + sigma * field, 0, 255)
    if "jpeg_artifacts" in spec:
        pixels, tables = apply_jpeg(pixels, quality=spec["jpeg_artifacts"]["quality"])
        out = Image.fromarray(to_uint8(pixels), "RGB")
        out.info["inspector_quantization"] = tables
        return out
    return Image.fromarray(to_uint8(pixels), "RGB")


def build_data(config: CalibrationConfig) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Features, target coordinates and true parameters per type."""
    photos, scenes = calibration_sources(config)
    rng = np.random.default_rng(config.seed + 1)
    # Noise too (not learned, kept for studying the noise estimator on the same data), and its kind.
    features, targets = [], {kind: [] for kind in PARAMETER_KEYS}
    noise_kinds = []
    started = time.perf_counter()
    for index in range(config.samples):
        source = scenes if rng.random() < config.scene_share else photos
        crop = random_crop(source[int(rng.integers(0, len(source)))], rng)
        spec, _ = sample_spec(rng)
        if config.diverse_share and rng.random() < config.diverse_share:
            image, spec = diverse_degrade(crop, spec, rng)
        else:
            image = training_degrade(crop, spec, rng, config.correlated_noise_share)
        features.append(measure(image, calibrated=False).details["features"])
        for kind in PARAMETER_KEYS:
            value = spec[kind][PARAMETER_KEYS[kind]] if kind in spec else ANCHORS[kind][0]
            targets[kind].append(value)
        noise_kinds.append(spec.get("noise", {}).get("kind", "none"))
        if (index + 1) % 250 == 0:
            print(f"  {index + 1}/{config.samples} samples, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    parameters = {kind: np.asarray(values) for kind, values in targets.items()}
    parameters["noise_kind"] = np.asarray(noise_kinds)
    coordinates = {kind: np.array([coordinate(kind, parameters[kind][i]) for i in range(len(parameters[kind]))])
                   for kind in LEARNED_TYPES}
    return np.asarray(features), coordinates, parameters


def fit(features: np.ndarray, coordinates: dict[str, np.ndarray], config: CalibrationConfig) -> dict:
    """The stages of learned.py: the cause (neither, blur, low resolution) on all, severity on present cases."""
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

    settings = dict(n_estimators=config.n_estimators, max_depth=config.max_depth, learning_rate=config.learning_rate,
                    subsample=config.subsample, random_state=config.seed)
    # The random specs never combine blur and low resolution (synthesis.EXCLUSIVE_PAIRS).
    cause = np.zeros(len(features), dtype=int)
    for index, kind in enumerate(CAUSES[1:], start=1):
        cause[coordinates[kind] >= 1.0] = index
    models = {"cause": GradientBoostingClassifier(**settings).fit(
        masked(features, config, LEARNED_TYPES), cause)}
    for kind in LEARNED_TYPES:
        present = coordinates[kind] >= 1.0
        models[kind] = GradientBoostingRegressor(**settings).fit(
            masked(features, config, (kind,))[present], coordinates[kind][present])
    return models


def masked(features: np.ndarray, config: CalibrationConfig, kinds) -> np.ndarray:
    """The features with those the kinds' models may not split on set to 0 (a constant column
    is never split on; the trees' feature indices stay those of FEATURE_NAMES)."""
    excluded = [FEATURE_NAMES.index(name) for kind in kinds for name in excluded_features(config, kind)]
    if not excluded:
        return features
    features = features.copy()
    features[:, excluded] = 0.0
    return features


def excluded_features(config: CalibrationConfig, kind: str) -> list[str]:
    names = [name for name in (getattr(config, f"{kind}_excluded", "") or "").split(",") if name]
    unknown = set(names) - set(FEATURE_NAMES)
    if unknown:
        raise ValueError(f"unknown features to exclude for {kind}: {sorted(unknown)}; see FEATURE_NAMES")
    return names


def predict(models: dict, features: np.ndarray, estimators: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """Severity words per learned type by the rule of learned.predict_readings, from the sklearn models."""
    from inspector.evidence.learned import NONE_CAP, parameter, resampling_factor

    cause = models["cause"].predict(features)
    words = {}
    for index, kind in enumerate(CAUSES[1:], start=1):
        magnitude = np.maximum(models[kind].predict(features), 1.0)
        words[kind] = []
        for row, c, m, e in zip(features, cause, magnitude, estimators[kind]):
            value = parameter(kind, m) if c == index else parameter(kind, min(coordinate(kind, e), NONE_CAP))
            if c == index and kind == "low_resolution":
                value = resampling_factor(row, value, e)
            words[kind].append(severity_from_parameter(kind, value))
    return words


def report_fit(features, coordinates, parameters, config: CalibrationConfig) -> dict:
    """Fit on four fifths, score presence F1 and severity on the fifth held back."""
    n = len(features)
    order = np.random.default_rng(config.seed + 2).permutation(n)
    train, test = order[: int(0.8 * n)], order[int(0.8 * n):]
    models = fit(features[train], {kind: coordinates[kind][train] for kind in LEARNED_TYPES}, config)
    estimators = {kind: features[test, FEATURE_NAMES.index(ESTIMATOR_FEATURES[kind])] for kind in LEARNED_TYPES}
    predicted = predict(models, features[test], estimators)
    scores = {}
    for kind in LEARNED_TYPES:
        truth = [severity_from_parameter(kind, v) for v in parameters[kind][test]]
        present_true = np.array([t != "none" for t in truth])
        present_pred = np.array([p != "none" for p in predicted[kind]])
        tp = float(np.sum(present_true & present_pred))
        f1 = 2 * tp / max(2 * tp + np.sum(present_true ^ present_pred), 1.0)
        exact = float(np.mean([p == t for p, t in zip(predicted[kind], truth) if t != "none"]))
        scores[kind] = {"f1": round(f1, 3), "severity_exact": round(exact, 3)}
        print(f"  {kind}: held-back F1 {f1:.3f}, severity exact {exact:.1%}", file=sys.stderr)
    return scores


def main(config: CalibrationConfig, out: Path, cache: Path | None = None) -> None:
    # Data
    print(f"config: {asdict(config)}", file=sys.stderr)
    data_config = {k: v for k, v in asdict(config).items()
                   if k in ("samples", "scenes", "scene_share", "correlated_noise_share", "diverse_share", "seed")}
    if cache is not None and cache.exists() and json.loads(str(np.load(cache)["config"])) == data_config:
        # Measuring is the slow part; refitting other tree settings can reuse it.
        stored = np.load(cache)
        features = stored["features"]
        parameters = {kind: stored[kind] for kind in LEARNED_TYPES}
        coordinates = {kind: np.array([coordinate(kind, v) for v in values]) for kind, values in parameters.items()}
        print(f"data from {cache}", file=sys.stderr)
    else:
        features, coordinates, parameters = build_data(config)
        if cache is not None:
            np.savez(cache, features=features, config=json.dumps(data_config), **parameters)
    # Training
    held_back = report_fit(features, coordinates, parameters, config)
    fitted = fit(features, coordinates, config)
    models = {"cause": {"classes": list(CAUSES), "ensembles": [export_ensemble(fitted["cause"], features[:64], column)
                                                              for column in range(len(CAUSES))]}}
    models.update({kind: {"severity": export_ensemble(fitted[kind], features[:64])} for kind in LEARNED_TYPES})
    # Output
    payload = {"features": list(FEATURE_NAMES), "config": asdict(config), "held_back_fit": held_back,
               "trained_on": {"photos": list(CALIBRATION_PHOTOS), "scenes": "dead_leaves seeds 0-99999",
                              "degradations": "inspector.evidence.synthesis.degrade, sample_spec"},
               "models": models}
    out.write_text(json.dumps(payload, separators=(",", ":")) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)", file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = CalibrationConfig()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--out", type=Path, default=CALIBRATION_PATH)
    parser.add_argument("--cache", type=Path, default=None, help="keep the measured data here and reuse it")
    arguments = vars(parser.parse_args())
    output, cache_path = arguments.pop("out"), arguments.pop("cache")
    main(CalibrationConfig(**arguments), output, cache_path)
