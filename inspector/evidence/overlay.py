"""Overlay: where the image is measured to be degraded, one map per type, as a heat map.

`evidence_map(image, evidence, kind)` is the one entry point: a per-tile grid of readings
in the contract's units for `kind` (blur sigma in px, noise sigma on 0-255, JPEG quality,
upscaling factor), with how far each tile is into the severity bands (0 at the mild
threshold or below, 1 at the severe one, log-spaced between). `render_overlay` draws it
(or the worst of all four per tile) over the photo: transparent where nothing is
measured, yellow at the mild threshold, red at the severe one. `legend_html` is the scale.

Blur and noise are read per tile by their estimators. JPEG quality and the upscaling
factor are one reading for the whole photo (one quantization table, one resampling
pattern): the JPEG map shows that quality where the 8-px block edges are visible in a
tile, and the resampling map shows the factor over the whole photo, and the legend says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from inspector.taxonomy import BANDS, DEGRADATION_TYPES, TYPE_LABELS

# Opacity of the overlay at the worst score.
MAX_ALPHA = 0.55
WORST = "worst"  # the map choice that shows, per tile, the worst of the four types
MAP_CHOICES: tuple[str, ...] = (WORST, *DEGRADATION_TYPES)
MAP_LABELS: dict[str, str] = {WORST: "all types (worst per tile)", "blur": "blur", "noise": "noise",
                              "low_resolution": "resampling (low resolution)",
                              "jpeg_artifacts": "JPEG blockiness"}
# How each type's parameter reads on the legend.
UNIT_LABELS: dict[str, str] = {"blur": "Gaussian sigma, px", "noise": "noise sigma on 0-255",
                               "low_resolution": "x upscaled", "jpeg_artifacts": "JPEG quality"}
JPEG_BLOCK = 8
# A tile's block edges count as fully visible when the jumps across 8-px block borders are
# this many times the jumps inside blocks (1.0: no grid at all).
BLOCK_RATIO_FULL = 1.6


@dataclass
class EvidenceMap:
    """Per-tile readings of one type (`values`, contract units, NaN: no reading) and their 0-1
    `score` on the severity bands; `whole_image` when one reading covers the whole photo."""

    kind: str
    values: np.ndarray
    score: np.ndarray
    tile: int
    whole_image: bool = False


def band_score(values: np.ndarray, kind: str) -> np.ndarray:
    """0 at the mild threshold or below, 1 at the severe threshold or above (log scale).

    JPEG quality runs the other way (lower is worse); the ratio is inverted for it."""
    band = BANDS[kind]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.maximum(values, 1e-6) / band.mild
        score = np.log(ratio if band.increasing else 1.0 / ratio) / np.log(
            (band.severe / band.mild) if band.increasing else (band.mild / band.severe))
    return np.where(np.isfinite(values), np.clip(score, 0.0, 1.0), 0.0)


def block_visibility(image: Image.Image, tile: int, grid: tuple[int, int]) -> np.ndarray:
    """Per tile, 0-1: how visible JPEG's 8-px block borders are (jumps across the borders
    against jumps inside blocks, on the luma)."""
    luma = np.asarray(image.convert("L"), dtype=np.float32)
    visibility = np.zeros(grid, dtype=np.float32)
    steps_x = np.abs(np.diff(luma, axis=1))
    steps_y = np.abs(np.diff(luma, axis=0))
    on_x = (np.arange(steps_x.shape[1]) % JPEG_BLOCK) == JPEG_BLOCK - 1
    on_y = (np.arange(steps_y.shape[0]) % JPEG_BLOCK) == JPEG_BLOCK - 1
    for row in range(grid[0]):
        for col in range(grid[1]):
            rows, cols = slice(row * tile, (row + 1) * tile), slice(col * tile, (col + 1) * tile)
            sx, sy = steps_x[rows, cols], steps_y[rows, cols]
            mx, my = on_x[cols][: sx.shape[1]], on_y[rows][: sy.shape[0]]
            if not (mx.any() and (~mx).any() and my.any() and (~my).any()):
                continue
            across = sx[:, mx].mean() + sy[my, :].mean()
            inside = sx[:, ~mx].mean() + sy[~my, :].mean()
            ratio = across / max(inside, 0.5)  # a flat tile shows no blocks
            visibility[row, col] = np.clip((ratio - 1.0) / (BLOCK_RATIO_FULL - 1.0), 0.0, 1.0)
    return visibility


def evidence_map(image: Image.Image, evidence, kind: str) -> EvidenceMap:
    """The per-tile map of one type (a name of DEGRADATION_TYPES), on the blur map's grid."""
    grid = evidence.blur_map.shape
    if kind == "blur":
        values = evidence.blur_map
    elif kind == "noise":
        values = evidence.noise_map[: grid[0], : grid[1]]
    elif kind == "jpeg_artifacts":
        quality = float(evidence.get(kind).estimate)
        visible = block_visibility(image, evidence.tile, grid)
        values = np.where(visible > 0, quality, np.nan)
        score = band_score(values, kind) * visible
        return EvidenceMap(kind, values, score, evidence.tile, whole_image=True)
    elif kind == "low_resolution":
        values = np.full(grid, float(evidence.get(kind).estimate), dtype=np.float32)
        return EvidenceMap(kind, values, band_score(values, kind), evidence.tile, whole_image=True)
    else:
        raise ValueError(f"unknown map {kind!r}; choose one of {', '.join(MAP_CHOICES)}")
    return EvidenceMap(kind, values, band_score(values, kind), evidence.tile)


def overlay_score(image: Image.Image, evidence, kind: str = WORST) -> np.ndarray:
    """Per-tile 0-1 score of one type, or the worst of the four per tile."""
    if kind != WORST:
        return evidence_map(image, evidence, kind).score
    return np.max([evidence_map(image, evidence, each).score for each in DEGRADATION_TYPES], axis=0)


def heat_colors(score: np.ndarray) -> np.ndarray:
    """Yellow (just degraded) to red (severe), as RGB uint8."""
    red = np.full_like(score, 255.0)
    green = 220.0 * (1.0 - score)
    blue = np.zeros_like(score)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def render_overlay(image: Image.Image, evidence, kind: str = WORST) -> Image.Image:
    """The image (RGB) with a translucent heat map of one type's readings (or the worst per tile)."""
    base = image.convert("RGB")
    score = overlay_score(base, evidence, kind)
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


def _threshold(value: float) -> str:
    return f"{value:g}"


def legend_html(kind: str = WORST) -> str:
    """The overlay's scale: a yellow-to-red bar with the band thresholds in the contract's units."""
    kinds = DEGRADATION_TYPES if kind == WORST else (kind,)
    rows = []
    for each in kinds:
        band = BANDS[each]
        more, less = ("&gt;", "&lt;") if band.increasing else ("&lt;", "&gt;")
        rows.append(
            f"<tr><td>{TYPE_LABELS[each]}</td><td>{UNIT_LABELS[each]}</td>"
            f"<td>{less}&nbsp;{_threshold(band.mild)}: clear</td>"
            f"<td>{_threshold(band.mild)}: mild</td><td>{_threshold(band.moderate)}: moderate</td>"
            f"<td>{more}&nbsp;{_threshold(band.severe)}: severe</td></tr>")
    note = {"jpeg_artifacts": "One JPEG quality for the whole photo, shown where the 8-px block edges are visible.",
            "low_resolution": "One upscaling factor for the whole photo: the resampling pattern is read over all "
                              "of it.",
            WORST: "Per tile, the worst of the four; JPEG quality and the upscaling factor are whole-photo readings.",
            }.get(kind, "Read per 64-px tile; tiles without a reading stay clear.")
    bar = ("<div style='display:flex;align-items:center;gap:6px'><span>clear</span>"
           "<span style='flex:1;height:12px;border-radius:3px;background:linear-gradient(to right,"
           "rgba(255,220,0,0.15),rgb(255,220,0) 2%,rgb(255,110,0) 50%,rgb(255,0,0))'></span>"
           "<span>severe</span></div>")
    table = ("<table style='font-size:0.85em'><tr><th>map</th><th>unit</th><th>no tint</th><th>yellow</th>"
             "<th>orange</th><th>red</th></tr>" + "".join(rows) + "</table>")
    return (f"<div id='legend-body'><b>Legend: {MAP_LABELS[kind]}</b>{bar}{table}"
            f"<div style='font-size:0.85em'>{note}</div></div>")
