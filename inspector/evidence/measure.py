"""Measurement: the four estimators together, with severities, confidences and maps.

`measure(image)` returns an `Evidence`: one `MeasuredDegradation` per type (all four,
`none` included, in DEGRADATION_TYPES order) and per-tile maps of blur and noise.
Each estimator's method and limits are in its module (blur.py, noise.py,
resolution.py, jpeg.py); this module runs them in the order their interactions need:

1. JPEG first: its quality tells the noise estimator to read the DCT coefficients
   (the encoder removed the noise the pixel estimator sees) and the resolution
   estimator to skip the 8-px grid's frequencies.
2. Noise next: the blur estimator prefilters and raises its edge floor with it, and
   the resolution estimator removes its floor from the spectrum.
3. Resolution, then blur: an upscaled image is soft because it is upscaled, so the
   blur it explains (`UPSCALE_SIGMA_PER_FACTOR`) is not reported as blur as well.
4. With the shipped calibration (learned.py), blur and low resolution are then read
   again from all the measurements together (features.py): the estimators' readings
   stay in `details["estimators"]`.
5. Noise the pixel estimator took for texture (correlated noise, as a camera's
   demosaicing leaves it) is read from the flattest cells (noise.flat_cell_reading)
   when they hold more than it read; `details["noise_method"]` says "flat cells".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from inspector.evidence.blur import BlurEstimate, estimate_blur, ratio_table
from inspector.evidence.features import FEATURE_NAMES, feature_vector
from inspector.evidence.jpeg import estimate_jpeg, ijg_table, luma_table
from inspector.evidence.learned import load_calibration, predict_readings
from inspector.evidence.noise import CELL, LUMA_NOISE_GAIN, estimate_noise, flat_cell_reading
from inspector.evidence.resolution import ResolutionEstimate, estimate_resolution
from inspector.evidence.shared import Shared
from inspector.taxonomy import BANDS, severity_from_parameter

DEFAULT_TILE = 64
# Blur an upscaling by f leaves at the edges as this blur estimator reads it, about
# UPSCALE_SIGMA_BASE + UPSCALE_SIGMA_PER_FACTOR * f px (calibration photos; bilinear
# reads softest); blur up to EXPLAINED_MARGIN times this is the upscaling's, not an
# extra blur.
UPSCALE_SIGMA_BASE = 0.3
UPSCALE_SIGMA_PER_FACTOR = 0.5
EXPLAINED_MARGIN = 1.15
# A JPEG at or above this quality leaves too faint an 8-px grid to mask in the
# resolution estimator's search for resampling patterns.
JPEG_GRID_QUALITY = 97.0
FLAT_P5, FLAT_HALF_P5 = FEATURE_NAMES.index("flat_std_p5"), FEATURE_NAMES.index("flat_half_std_p5")


@dataclass
class MeasuredDegradation:
    """One type's measured parameter, its severity word and how sure the reading is."""

    type: str
    severity: str
    estimate: float
    confidence: float
    unit: str

    def to_dict(self) -> dict:
        return {
            "type": self.type,
            "severity": self.severity,
            "estimate": round(float(self.estimate), 2),
            "confidence": round(float(self.confidence), 2),
            "unit": self.unit,
        }


@dataclass
class Evidence:
    """What was measured on one image. Maps are per `tile`-px tile (NaN: no reading)."""

    width: int
    height: int
    degradations: list[MeasuredDegradation]
    blur_map: np.ndarray
    noise_map: np.ndarray
    elapsed_ms: float
    tile: int = DEFAULT_TILE
    details: dict = field(default_factory=dict)

    def present(self) -> list[MeasuredDegradation]:
        return [d for d in self.degradations if d.severity != "none"]

    def get(self, kind: str) -> MeasuredDegradation:
        for degradation in self.degradations:
            if degradation.type == kind:
                return degradation
        raise KeyError(kind)

    def severities(self) -> dict[str, str]:
        return {d.type: d.severity for d in self.degradations}

    def to_dict(self) -> dict:
        """JSON-safe summary; the maps are summarised (shape, worst tile), not listed."""
        return {
            "width": self.width,
            "height": self.height,
            "degradations": [d.to_dict() for d in self.degradations],
            "maps": {
                "tile": self.tile,
                "blur": summarize_map(self.blur_map),
                "noise": summarize_map(self.noise_map),
            },
            "elapsed_ms": round(float(self.elapsed_ms), 1),
        }


def summarize_map(values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    summary = {"rows": int(values.shape[0]), "cols": int(values.shape[1])}
    if finite.size:
        worst = np.unravel_index(np.nanargmax(np.where(np.isfinite(values), values, -np.inf)), values.shape)
        summary.update({"min": round(float(finite.min()), 2), "median": round(float(np.median(finite)), 2),
                        "max": round(float(finite.max()), 2), "worst_tile": [int(worst[0]), int(worst[1])]})
    return summary


def luminance(image: Image.Image) -> tuple[np.ndarray, tuple[int, int]]:
    """BT.601 luminance (what JPEG encodes) as float32, and (width, height).

    Pillow's "L" conversion uses the same weights; its rounding to integers adds noise
    of 0.29 grey levels, far below anything measured here, and is several times faster.
    """
    gray, size = luminance8(image)
    return gray.astype(np.float32), size


def luminance8(image: Image.Image) -> tuple[np.ndarray, tuple[int, int]]:
    """`luminance` as Pillow gives it, uint8 (the noise cells read it in integers)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return np.asarray(rgb.convert("L")), image.size


def find_quantization(image: Image.Image, jpeg_quantization: dict | None):
    if jpeg_quantization:
        return jpeg_quantization
    stored = image.info.get("inspector_quantization") if hasattr(image, "info") else None
    return stored or getattr(image, "quantization", None) or None


def measure(image: Image.Image, *, jpeg_quantization: dict | None = None, tile: int = DEFAULT_TILE,
            calibrated: bool = True) -> Evidence:
    """Measure blur, noise, low resolution and JPEG artifacts of `image` (no model).

    With `calibrated` (and the shipped calibration.json), blur, noise and low resolution
    are read by the learned calibration from all the estimators' measurements together
    (learned.py); `details["estimators"]` keeps each estimator's own reading and
    `details["features"]` the calibration's inputs (features.FEATURE_NAMES).

    `jpeg_quantization` is a JPEG file's tables (Pillow's `quantization`); when None,
    `image.info["inspector_quantization"]` (set by the image loader and by `degrade`)
    and then `image.quantization` are used; without tables the quality is inferred
    from the pixels.
    """
    if tile < 16:
        raise ValueError(f"tile must be at least 16 px, got {tile}")
    # Built once per process (about 0.3 s), kept out of the per-image time.
    ratio_table(False), ratio_table(True)
    start = time.perf_counter()
    gray, (width, height) = luminance8(image)
    luma = gray.astype(np.float32)
    quantization = find_quantization(image, jpeg_quantization)
    jpeg = estimate_jpeg(gray, quantization)
    table = luma_table(quantization)
    if table is None and jpeg.source == "pixels":
        table = ijg_table(int(round(jpeg.quality)))
    noise = estimate_noise(gray, jpeg.quality, table)
    noise_luma = noise.sigma * LUMA_NOISE_GAIN
    jpeg_grid = jpeg.source != "none" and jpeg.quality < JPEG_GRID_QUALITY
    # The binned copy, difference profiles and difference spectrum, made once for the
    # resolution and blur estimators and the features (shared.py).
    shared = Shared(luma)
    resolution = estimate_resolution(luma, jpeg_present=jpeg_grid, noise_sigma=noise_luma, shared=shared)
    blur = estimate_blur(luma, noise_luma, tile, shared=shared)
    degradations = [
        blur_reading(blur, resolution),
        reading("noise", noise.sigma, noise.confidence),
        reading("low_resolution", resolution.factor, resolution.confidence),
        reading("jpeg_artifacts", jpeg.quality, jpeg.confidence),
    ]
    details = {"jpeg_source": jpeg.source, "noise_method": noise.method, "blur_total_sigma": blur.total_sigma,
               "blur_points": blur.points, "resolution_strength": resolution.strength,
               "resolution_frequency": resolution.frequency,
               "estimators": {d.type: round(float(d.estimate), 3) for d in degradations}}
    features = feature_vector(luma, jpeg, noise, resolution, blur, shared)
    details["features"] = features
    flat = flat_cell_reading(features[FLAT_P5], features[FLAT_HALF_P5])
    if flat is not None and flat > noise.sigma:
        # Noise the pixel estimator read as texture (correlated noise): the flat cells' reading.
        degradations = [reading("noise", flat, noise.confidence) if d.type == "noise" else d for d in degradations]
        details["noise_method"] = "flat cells"
        details["estimators"]["noise"] = round(float(flat), 3)
    models = load_calibration() if calibrated else None
    if models is not None:
        learned = predict_readings(features, models, details["estimators"])
        degradations = [reading(d.type, *learned[d.type]) if d.type in learned else d for d in degradations]
        details["calibration"] = "learned"
    else:
        details["calibration"] = "estimators"
    noise_map = tile_map(noise.cell_sigma, CELL, tile, blur.tile_sigma.shape)
    elapsed_ms = (time.perf_counter() - start) * 1000.0
    return Evidence(width, height, degradations, blur.tile_sigma, noise_map, elapsed_ms, tile, details)


def reading(kind: str, value: float, confidence: float) -> MeasuredDegradation:
    return MeasuredDegradation(kind, severity_from_parameter(kind, value), float(value), float(confidence),
                               BANDS[kind].unit)


def blur_reading(blur: BlurEstimate, resolution: ResolutionEstimate) -> MeasuredDegradation:
    sigma, confidence = blur.sigma, blur.confidence
    if resolution.factor >= BANDS["low_resolution"].mild:
        explained = EXPLAINED_MARGIN * (UPSCALE_SIGMA_BASE + UPSCALE_SIGMA_PER_FACTOR * resolution.factor)
        if sigma <= explained:
            # The softness is the upscaling's: report no blur beyond it.
            sigma = 0.0
    return reading("blur", sigma, confidence)


def tile_map(cell_values: np.ndarray, cell: int, tile: int, shape: tuple[int, int]) -> np.ndarray:
    """Average cell readings (NaN-aware) into the tile grid of `shape`."""
    per_tile = max(1, tile // cell)
    padded = np.full((shape[0] * per_tile, shape[1] * per_tile), np.nan)
    rows, cols = min(padded.shape[0], cell_values.shape[0]), min(padded.shape[1], cell_values.shape[1])
    padded[:rows, :cols] = cell_values[:rows, :cols]
    blocks = padded.reshape(shape[0], per_tile, shape[1], per_tile)
    finite = np.isfinite(blocks)
    count = finite.sum(axis=(1, 3))
    total = np.where(finite, blocks, 0.0).sum(axis=(1, 3))
    out = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    missing = ~np.isfinite(out)
    if missing.any() and not missing.all():
        # Large images read a subset of cells: unread tiles take their nearest reading.
        from scipy import ndimage

        nearest = ndimage.distance_transform_edt(missing, return_distances=False, return_indices=True)
        out = out[nearest[0], nearest[1]]
    return out
