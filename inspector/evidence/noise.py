"""Noise: the standard deviation of additive noise, on 0-255, from the flattest cells.

Method
- Immerkaer's (1996) Laplacian-difference mask `[1 -2 1] x [1 -2 1]` cancels any plane
  and responds most at the diagonal Nyquist frequency, where photos hold little energy
  and white noise holds as much as anywhere. Its mean absolute response, scaled by
  `sqrt(pi/2)/6`, is the noise sigma in a flat region.
- Texture also answers the mask. White noise answers a first difference and the mask in
  a fixed proportion; texture (energy at lower frequencies) answers the first difference
  far more. So each 32-px cell gets two estimates, from the mask (`s_h`) and from the
  first differences (`s_g`), and the cell's noise variance is read as
  `(s_h**2 - r * s_g**2) / (1 - r)`: exact for white noise, and it removes a texture
  whose mask-to-difference energy ratio is `r`.
- The image's sigma is a low quantile of the cells (noise covers the frame, texture
  and edges do not), skipping cells near black or white where noise is clipped.
- After a JPEG, the encoder has quantized away the noise the mask sees. When the
  quality is known (tables or pixel inference) and below `JPEG_NOISE_QUALITY`, the noise
  is read instead from the DCT coefficients that survived: in flat blocks the share of
  coefficients quantized to zero at a step Q is `erf(Q / (2*sqrt(2)*sigma))`.
- Sigma is per RGB channel, as synthesised: the luminance of channel-independent noise
  has `LUMA_NOISE_GAIN` times its sigma.

Limits: a texture that is white at the pixel scale (fine grass, sand seen from far) is
indistinguishable from noise in one image; noise that was denoised or compressed away
is not there to measure; for signal-dependent noise the figure is that of the flat
regions, which may be brighter or darker than mid-grey.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erfinv

# Luminance (JPEG/BT.601 weights) of independent per-channel noise: sqrt(.299^2+.587^2+.114^2).
LUMA_NOISE_GAIN = float(np.sqrt(0.299**2 + 0.587**2 + 0.114**2))
CELL = 32
# Mask-to-difference energy ratio removed as texture (lowest seen on calibration textures).
TEXTURE_RATIO = 0.15
# Quantile of the cells taken as the image's noise.
CELL_QUANTILE = 20.0
# Below this JPEG quality the DCT reading of the noise replaces the pixel reading.
JPEG_NOISE_QUALITY = 80.0


@dataclass(frozen=True)
class NoiseEstimate:
    sigma: float  # per channel, 0-255
    confidence: float
    cell_sigma: np.ndarray  # per-cell sigma (NaN where clipped), CELL-px cells
    method: str


def cell_means(values: np.ndarray, cell: int) -> np.ndarray:
    rows, cols = values.shape[0] // cell, values.shape[1] // cell
    return values[: rows * cell, : cols * cell].reshape(rows, cell, cols, cell).mean(axis=(1, 3))


def noise_cells(luma: np.ndarray, cell: int = CELL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cell mask sigma, first-difference sigma (both as for white noise) and mean level."""
    rows = luma[:-2] + luma[2:] - 2.0 * luma[1:-1]
    mask = np.abs(rows[:, :-2] + rows[:, 2:] - 2.0 * rows[:, 1:-1])
    inner = luma[1:-1, 1:-1]
    diff = np.abs(inner - luma[1:-1, 2:]) + np.abs(inner - luma[2:, 1:-1])
    s_h = cell_means(mask, cell) * np.float32(np.sqrt(np.pi / 2) / 6)
    s_g = cell_means(diff, cell) * np.float32(np.sqrt(np.pi) / 4)
    level = cell_means(inner, cell)
    return s_h, s_g, level


def texture_corrected(s_h: np.ndarray, s_g: np.ndarray, ratio: float = TEXTURE_RATIO) -> np.ndarray:
    variance = (s_h.astype(np.float64) ** 2 - ratio * s_g.astype(np.float64) ** 2) / (1.0 - ratio)
    return np.sqrt(np.clip(variance, 0.0, None))


def estimate_noise(luma: np.ndarray, jpeg_quality: float = 100.0, jpeg_table: np.ndarray | None = None) -> NoiseEstimate:
    s_h, s_g, level = noise_cells(luma)
    usable = (level > 12) & (level < 243)
    cell_sigma = np.where(usable, texture_corrected(s_h, s_g), np.nan) / LUMA_NOISE_GAIN
    values = cell_sigma[usable]
    if values.size == 0:
        return NoiseEstimate(0.0, 0.2, cell_sigma, "none")
    sigma = float(np.percentile(values, CELL_QUANTILE))
    # Few cells, or cells that disagree, make a weak reading.
    spread = float(np.percentile(values, 50) / max(sigma, 0.5))
    confidence = float(np.clip(min(1.0, values.size / 40) * (1.2 - 0.15 * spread), 0.3, 0.95))
    method = "pixels"
    if jpeg_quality < JPEG_NOISE_QUALITY and jpeg_table is not None:
        from_dct = noise_from_dct(luma, jpeg_table)
        if from_dct is not None:
            sigma, method = max(sigma, from_dct), "dct"
    return NoiseEstimate(sigma, confidence, cell_sigma, method)


# DCT positions that pick the flat blocks; the noise is read from the others, which
# are independent of them under noise, so the choice does not bias the reading.
FLATNESS_POSITIONS = (1, 8, 9, 2, 16)
FLAT_BLOCK_SHARE = 0.15


def noise_from_dct(luma: np.ndarray, table: np.ndarray) -> float | None:
    """Noise sigma from the zero share of quantized DCT coefficients in the flattest blocks.

    Under Gaussian noise of luminance sigma s, a coefficient quantized with step Q is
    zero with probability erf(Q / (2*sqrt(2)*s)); each frequency whose zero share is
    informative (3-97 %) gives one reading, and their median is the estimate. None when
    fewer than three frequencies are informative (the noise is far below the steps).
    """
    from inspector.evidence.jpeg import block_dct

    coefficients = block_dct(luma, max_blocks=20000)
    if len(coefficients) < 100:
        return None
    flatness = np.abs(coefficients[:, FLATNESS_POSITIONS]).sum(axis=1)
    # A stable order: many blocks tie at zero after a coarse JPEG.
    order = np.argsort(flatness, kind="stable")
    flat = coefficients[order[: max(30, int(FLAT_BLOCK_SHARE * len(coefficients)))]]
    estimates = []
    for position in range(1, 64):
        if position in FLATNESS_POSITIONS:
            continue
        step = table[position]
        zero_share = float(np.mean(np.abs(flat[:, position]) < 0.5 * step))
        if 0.03 < zero_share < 0.97:
            estimates.append(step / (2.0 * np.sqrt(2.0) * erfinv(zero_share)))
    if len(estimates) < 3:
        return None
    return float(np.median(estimates)) / LUMA_NOISE_GAIN
