"""Maps: where each degradation is, per tile, as a 0-1 score for the page's overlay.

`maps(image)` returns one float array per type, all on the same grid of `tile`-px
tiles (rows = height // tile, columns = width // tile, at least 1), in 0..1 where
0 is "not degraded here" and 1 "severe here". The scales, in the contract's units:

- `blur`: the tile's added Gaussian sigma (the blur estimator's per-tile edge reading),
  0 at the mild threshold (1 px) or below, 1 at the severe one (4 px), log-spaced
  between; tiles without edges to read are 0.
- `noise`: the tile's noise sigma on 0-255 (the noise estimator's cells), 0 at 5, 1 at
  25, log-spaced; clipped (near black or white) tiles are 0.
- `jpeg_artifacts`: the image's JPEG score (0 at quality 50 or above, 1 at 15 or
  below, log-spaced: a JPEG quantizes the whole frame alike) times the tile's block
  visibility: how much larger the luminance steps across the 8-px block borders are
  than those inside the blocks (0 at 1.2 times or less, 1 at twice). Smooth areas, where
  the blocks show, light up; busy texture, which masks them, less.
- `low_resolution`: the image's downscale-factor score (0 at 1.6x or below, 1 at 4x
  or above, log-spaced) times the tile's resampling pattern: the strength of the
  periodic pattern at the frequency found for the whole image, in this tile's
  difference profiles (0 at up to 1.5 times its neighbourhood, 1 at 4 times). Where the
  image was upscaled everywhere, the map shows where the pattern is visible; a pasted
  upscaled region shows as such.

The whole image's readings come from `measure` (pass its `Evidence` to reuse it). The
JPEG and resampling parts are computed here, not in `measure`, so they stay out of its
speed budget: about 12 ms for a 512x512 image on the benchmark's shared 2-core machine.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from inspector.evidence.measure import DEFAULT_TILE, Evidence, luminance, measure
from inspector.evidence.overlay import band_score

MAP_TYPES: tuple[str, ...] = ("blur", "noise", "low_resolution", "jpeg_artifacts")
# Border/inside step ratios scoring 0 and 1 in the JPEG map: tiles of clean photos read
# 0.9-1.2, of a quality-45 JPEG 1.2-3, of a quality-10 one 1.9-9 (astronaut, coffee, camera).
BLOCK_RATIO_NONE, BLOCK_RATIO_FULL = 1.2, 2.0
# Line/neighbourhood ratios scoring 0 and 1 in the resampling map: 64-px tiles of clean
# photos read 0.3-1.6 (10th-90th percentile), of 3x and 5x upscales 1-12, median 2.4-7
# (astronaut, coffee, camera). At a factor of 2 the line sits at 0.5 cycles/px, where a
# 64-px tile cannot tell it from its neighbours: such tiles read as clean ones.
PATTERN_RATIO_NONE, PATTERN_RATIO_FULL = 1.5, 4.0


def maps(image: Image.Image, evidence: Evidence | None = None, tile: int = DEFAULT_TILE) -> dict[str, np.ndarray]:
    """Per-tile 0-1 maps of blur, noise, low resolution and JPEG artifacts (see the module docstring)."""
    if evidence is None:
        evidence = measure(image, tile=tile)
    tile = evidence.tile
    luma = luminance(image)[0]
    shape = (max(1, luma.shape[0] // tile), max(1, luma.shape[1] // tile))
    out = {
        "blur": fit_grid(band_score(evidence.blur_map, "blur"), shape),
        "noise": fit_grid(band_score(evidence.noise_map, "noise"), shape),
    }
    jpeg_score = float(band_score(np.array([evidence.get("jpeg_artifacts").estimate]), "jpeg_artifacts")[0])
    out["jpeg_artifacts"] = jpeg_score * block_visibility(luma, tile, shape) if jpeg_score > 0 else np.zeros(shape)
    factor_score = float(band_score(np.array([evidence.get("low_resolution").estimate]), "low_resolution")[0])
    frequency = float(evidence.details.get("resolution_frequency", 0.0))
    if factor_score > 0 and 0.05 < frequency <= 0.5:
        out["low_resolution"] = factor_score * pattern_visibility(luma, tile, shape, frequency)
    else:
        out["low_resolution"] = np.zeros(shape)
    return {kind: np.clip(np.nan_to_num(out[kind], nan=0.0), 0.0, 1.0).astype(np.float32) for kind in MAP_TYPES}


def fit_grid(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`values` cut or zero-padded to `shape` (the estimators' grids can differ by a tile)."""
    out = np.zeros(shape, dtype=np.float64)
    rows, cols = min(shape[0], values.shape[0]), min(shape[1], values.shape[1])
    out[:rows, :cols] = values[:rows, :cols]
    return out


def tile_sums(values: np.ndarray, tile: int, shape: tuple[int, int]) -> np.ndarray:
    """Sum of `values` per tile of `shape` (the last row/column of tiles takes the remainder)."""
    rows = np.minimum(np.arange(values.shape[0]) // tile, shape[0] - 1)
    cols = np.minimum(np.arange(values.shape[1]) // tile, shape[1] - 1)
    per_row = np.zeros((shape[0], values.shape[1]))
    np.add.at(per_row, rows, values.astype(np.float64))
    out = np.zeros(shape)
    np.add.at(out.T, cols, per_row.T)
    return out


def block_visibility(luma: np.ndarray, tile: int, shape: tuple[int, int]) -> np.ndarray:
    """Per tile: the block-border step ratio (both axes) from BLOCK_RATIO_NONE to BLOCK_RATIO_FULL as 0-1."""
    ratio = 0.5 * (border_ratio(luma, tile, shape) + border_ratio(luma.T, tile, shape[::-1]).T)
    return np.clip((ratio - BLOCK_RATIO_NONE) / (BLOCK_RATIO_FULL - BLOCK_RATIO_NONE), 0.0, 1.0)


def border_ratio(luma: np.ndarray, tile: int, shape: tuple[int, int]) -> np.ndarray:
    """Per tile: mean |horizontal step| across block borders over the mean inside blocks."""
    steps = np.abs(np.diff(luma, axis=1))
    # The step between columns 7 and 8 (and every 8 on) crosses a block border.
    border = np.broadcast_to((np.arange(steps.shape[1]) % 8) == 7, steps.shape)
    across = tile_sums(np.where(border, steps, 0.0), tile, shape) / np.maximum(tile_sums(border, tile, shape), 1)
    inside = tile_sums(np.where(border, 0.0, steps), tile, shape) / np.maximum(tile_sums(~border, tile, shape), 1)
    # A floor of a quarter grey level: in flat tiles rounding alone would make any ratio.
    return across / np.maximum(inside, 0.25)


def pattern_visibility(luma: np.ndarray, tile: int, shape: tuple[int, int], frequency: float) -> np.ndarray:
    """Per tile: the resampling line at `frequency` against its neighbourhood, scaled to 0-1.

    Each tile's mean |second difference| profile along rows and along columns is
    projected on `frequency` and on four neighbouring frequencies (+-0.03, +-0.06
    cycles/px); the line's amplitude over their mean maps to 0..1 from
    PATTERN_RATIO_NONE to PATTERN_RATIO_FULL. The two axes are averaged.
    """
    scores = []
    for lines in (luma, luma.T):
        grid = shape if lines is luma else shape[::-1]
        second = np.abs(lines[:, 2:] + lines[:, :-2] - 2.0 * lines[:, 1:-1])
        usable_rows, usable_cols = grid[0] * tile, (second.shape[1] // tile) * tile
        if usable_cols < tile or usable_rows > second.shape[0]:
            scores.append(np.zeros(shape))
            continue
        # Profile per tile: mean over the tile's lines, one value per position.
        profiles = second[:usable_rows, :usable_cols].reshape(grid[0], tile, -1, tile).mean(axis=1)
        profiles = profiles[:, : grid[1]] - profiles[:, : grid[1]].mean(axis=-1, keepdims=True)
        windowed = profiles * np.hanning(tile)
        line = line_amplitude(windowed, frequency)
        around = [line_amplitude(windowed, frequency + d) for d in (-0.06, -0.03, 0.03, 0.06)
                  if 0.02 < frequency + d < 0.5]
        background = np.mean(around, axis=0) + 1e-6 if around else np.full(line.shape, np.inf)
        score = np.clip((line / background - PATTERN_RATIO_NONE) / (PATTERN_RATIO_FULL - PATTERN_RATIO_NONE), 0, 1)
        scores.append(fit_grid(score if lines is luma else score.T, shape))
    return 0.5 * (scores[0] + scores[1])


def line_amplitude(windowed: np.ndarray, frequency: float) -> np.ndarray:
    """|DFT| of each windowed profile (last axis) at one frequency, cycles/px."""
    return np.abs(windowed @ np.exp(-2j * np.pi * frequency * np.arange(windowed.shape[-1])))
