"""Overlay: where the image is measured to be degraded, as a translucent heat map.

The blur and noise maps of `Evidence` are per-tile readings in the units of the
contract (px of Gaussian sigma, noise sigma on 0-255). Each is turned into a 0-1
"how bad" score by the severity bands (0 below the mild threshold, 1 at the severe
one, log-spaced between), the worse of the two is taken per tile, smoothed to the
image size, and drawn over the image: transparent where nothing is measured, red
where it is worst. Blur tiles without edges (no reading) stay transparent.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from inspector.taxonomy import BANDS

# Opacity of the overlay at the worst score.
MAX_ALPHA = 0.55


def band_score(values: np.ndarray, kind: str) -> np.ndarray:
    """0 at the mild threshold or below, 1 at the severe threshold or above (log scale)."""
    band = BANDS[kind]
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.log(np.maximum(values, 1e-6) / band.mild) / np.log(band.severe / band.mild)
    return np.where(np.isfinite(values), np.clip(score, 0.0, 1.0), 0.0)


def degradation_score(evidence) -> np.ndarray:
    """Per-tile 0-1 score: the worse of blur and noise, on the blur map's grid."""
    blur = band_score(evidence.blur_map, "blur")
    noise = band_score(evidence.noise_map, "noise")
    rows, cols = min(blur.shape[0], noise.shape[0]), min(blur.shape[1], noise.shape[1])
    return np.maximum(blur[:rows, :cols], noise[:rows, :cols])


def heat_colors(score: np.ndarray) -> np.ndarray:
    """Yellow (just degraded) to red (severe), as RGB uint8."""
    red = np.full_like(score, 255.0)
    green = 220.0 * (1.0 - score)
    blue = np.zeros_like(score)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def render_overlay(image: Image.Image, evidence) -> Image.Image:
    """The image (RGB) with a translucent heat map of the per-tile blur/noise readings."""
    base = image.convert("RGB")
    score = degradation_score(evidence)
    if score.size == 0 or not np.any(score > 0):
        return base
    # Tiles cover the image from the top-left; stretching the grid over the whole image
    # moves a reading by at most half a tile, which the smoothing hides anyway.
    score_image = Image.fromarray((score * 255).astype(np.uint8), "L")
    canvas = score_image.resize(base.size, Image.Resampling.BILINEAR)
    level = np.asarray(canvas, dtype=np.float32) / 255.0
    colors = Image.fromarray(heat_colors(level), "RGB")
    alpha = Image.fromarray((level * MAX_ALPHA * 255).astype(np.uint8), "L")
    return Image.composite(colors, base, alpha)
