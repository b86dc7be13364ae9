"""Noise: the standard deviation of additive noise, on 0-255, from the quietest cells.

Method
- Immerkaer's (1996) Laplacian-difference mask `[1 -2 1] x [1 -2 1]` cancels any plane
  and responds most at the diagonal Nyquist frequency, where photos hold little energy
  and white noise holds as much as anywhere. Its mean absolute response, scaled by
  `sqrt(pi/2)/6`, is the noise sigma in a flat region (`s_h`, per 32-px cell).
- Texture also answers the mask. White noise answers a first difference (`s_g`) and
  the mask in a fixed proportion (ratio 1 with these scalings); texture, with its energy
  at lower frequencies, answers the first difference more. Cells in the quieter half of
  the frame whose ratio is under `WHITE_RATIO` hold noise: with enough of them, their
  `WHITE_QUANTILE` is the noise. A frame that is texture everywhere falls back to
  texture-corrected cells, `(s_h**2 - r * s_g**2) / (1 - r)` (exact for white noise,
  removes texture whose mask-to-difference energy ratio is `r`), and their low quantile.
- Sensor noise grows with the signal: cells are binned by level and the noise is
  stated at mid-grey (`mid_grey_sigma`). Cells near black or white (clipped) are skipped.
- After a JPEG below quality `JPEG_NOISE_QUALITY`, the encoder has quantized away the
  noise the mask sees: the noise is then also read from the DCT coefficients that
  survived (`noise_from_dct`), and the larger reading counts.
- Sigma is per RGB channel, as synthesised: the luminance of channel-independent noise
  has `LUMA_NOISE_GAIN` (0.67) times its sigma.

Limits: a texture that is white at the pixel scale (fine grass, fur) is, after a JPEG,
indistinguishable from noise in one image; noise that was denoised or compressed away
is not there to measure; noise that is correlated across channels (luminance-only) is
under-read by up to 1/0.67.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erfinv

# Luminance (JPEG/BT.601 weights) of independent per-channel noise: sqrt(.299^2+.587^2+.114^2).
LUMA_NOISE_GAIN = float(np.sqrt(0.299**2 + 0.587**2 + 0.114**2))
CELL = 32
# Mask-to-difference energy ratio removed as texture where no cell is white: high
# enough that fine texture (grass) is not read as noise, at the cost of under-reading
# mild noise on strong-gradient texture (brick).
TEXTURE_RATIO = 0.4
# Quantile of the (texture-corrected) cells taken as the image's noise.
CELL_QUANTILE = 20.0
# Cells whose first-difference/mask ratio is under WHITE_RATIO hold white residual
# (noise: 1.0); with at least WHITE_SHARE of the cells white and in the quieter half,
# their WHITE_QUANTILE is the noise.
WHITE_RATIO = 1.2
WHITE_SHARE = 0.05
WHITE_QUANTILE = 30.0
# Below this JPEG quality the DCT reading of the noise replaces the pixel reading.
JPEG_NOISE_QUALITY = 80.0


@dataclass(frozen=True)
class NoiseEstimate:
    sigma: float  # per channel, 0-255
    confidence: float
    cell_sigma: np.ndarray  # per-cell sigma (NaN where clipped), CELL-px cells
    method: str


# Pixels read at most (in cells of CELL px, a regular subset beyond): noise covers the
# frame, so a subset measures it as well and keeps large images cheap.
MAX_CELL_PIXELS = 400_000


def chosen_cells(shape: tuple[int, int], cell: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the cells to read: all of them, or a regular checkered subset."""
    grid_rows, grid_cols = shape[0] // cell, shape[1] // cell
    rows, cols = np.divmod(np.arange(grid_rows * grid_cols), max(grid_cols, 1))
    stride = int(np.ceil(grid_rows * grid_cols * cell * cell / MAX_CELL_PIXELS))
    if stride > 1:
        keep = (rows + cols) % stride == 0
        rows, cols = rows[keep], cols[keep]
    return rows, cols


def noise_cells(luma: np.ndarray, cell: int = CELL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cell mask sigma, first-difference sigma (both as for white noise) and mean level.

    Cells not read (large images) are NaN.
    """
    grid = (luma.shape[0] // cell, luma.shape[1] // cell)
    out = [np.full(grid, np.nan, dtype=np.float32) for _ in range(3)]
    rows, cols = chosen_cells(luma.shape, cell)
    if rows.size == 0:
        return out[0], out[1], out[2]
    blocks = cell_blocks(luma, cell, grid, rows, cols)
    if blocks.dtype == np.uint8:
        # 8-bit luminance (what `measure` reads): the differences in int16 (they stay
        # within +-2040) and the sums in int32, a quarter of the float32 path's memory
        # traffic. Every value is an integer and every float32 partial sum of the float
        # path is one below 2^24, so both give the very same float32 means.
        blocks = blocks.astype(np.int16)
        two = np.int16(2)
    else:
        # Float luminance is read in its own precision; other integers as float32.
        blocks = blocks if blocks.dtype.kind == "f" else blocks.astype(np.float32)
        two = 2.0
    # In place where a temporary would be made (the same operations in the same order).
    vertical = blocks[:, :-2] + blocks[:, 2:]
    vertical -= two * blocks[:, 1:-1]
    mask = vertical[:, :, :-2] + vertical[:, :, 2:]
    mask -= two * vertical[:, :, 1:-1]
    np.abs(mask, out=mask)
    diff = blocks[:, :-1, :-1] - blocks[:, :-1, 1:]
    np.abs(diff, out=diff)
    down = blocks[:, :-1, :-1] - blocks[:, 1:, :-1]
    diff += np.abs(down, out=down)
    out[0][rows, cols] = cell_means(mask) * np.float32(np.sqrt(np.pi / 2) / 6)
    out[1][rows, cols] = cell_means(diff) * np.float32(np.sqrt(np.pi) / 4)
    out[2][rows, cols] = cell_means(blocks)
    return out[0], out[1], out[2]


def cell_means(values: np.ndarray) -> np.ndarray:
    """Per-cell float32 means of (n, rows, cols) values: exact integer sums for integer values."""
    if values.dtype.kind == "f":
        return values.mean(axis=(1, 2))
    return values.sum(axis=(1, 2), dtype=np.int32).astype(np.float32) / np.float32(values[0].size)


def cell_blocks(luma: np.ndarray, cell: int, grid: tuple[int, int], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The (n, cell, cell) pixels of the chosen cells, in (rows, cols) order.

    When every cell is read (small and mid-size images) a reshape does it; otherwise the
    cells are picked from the (grid rows, grid cols, cell, cell) view of the image, whole
    rows of a cell at a time (20 times cheaper than indexing every pixel).
    """
    view = luma[: grid[0] * cell, : grid[1] * cell].reshape(grid[0], cell, grid[1], cell).transpose(0, 2, 1, 3)
    if rows.size == grid[0] * grid[1]:
        return view.reshape(-1, cell, cell)
    return view[rows, cols]


def mid_grey_sigma(values: np.ndarray, levels: np.ndarray, quantile: float = CELL_QUANTILE) -> float:
    """The cells' low quantile, stated at mid-grey for signal-dependent noise.

    Sensor noise grows with the signal (var = a + b * level). Cells are binned by level,
    each bin gives its CELL_QUANTILE variance, and a line through them (b >= 0) is read
    at level 128; with one bin, or levels too close together, the plain quantile.
    """
    overall = float(np.percentile(values, quantile))
    if values.size < 12 or np.ptp(levels) < 60:
        return overall
    edges = np.percentile(levels, np.linspace(0, 100, 6))
    centres, variances, counts = [], [], []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (levels >= low) & (levels <= high)
        if inside.sum() >= 4:
            centres.append(levels[inside].mean())
            variances.append(np.percentile(values[inside], quantile) ** 2)
            counts.append(inside.sum())
    if len(centres) < 2:
        return overall
    slope, intercept = np.polyfit(centres, variances, 1, w=np.sqrt(counts))
    if slope <= 0:
        return overall
    at_mid_grey = intercept + slope * 128.0
    return float(np.sqrt(np.clip(at_mid_grey, min(variances), max(variances))))


def texture_corrected(s_h: np.ndarray, s_g: np.ndarray, ratio: float = TEXTURE_RATIO) -> np.ndarray:
    variance = (s_h.astype(np.float64) ** 2 - ratio * s_g.astype(np.float64) ** 2) / (1.0 - ratio)
    return np.sqrt(np.clip(variance, 0.0, None))


def estimate_noise(luma: np.ndarray, jpeg_quality: float = 100.0, jpeg_table: np.ndarray | None = None) -> NoiseEstimate:
    """Noise sigma per channel from the luminance (0-255; uint8 is read in integers, the same values)."""
    s_h, s_g, level = noise_cells(luma)
    usable = np.isfinite(level) & (level > 12) & (level < 243)
    cell_sigma = np.where(usable, texture_corrected(s_h, s_g), np.nan) / LUMA_NOISE_GAIN
    values = cell_sigma[usable]
    if values.size == 0:
        return NoiseEstimate(0.0, 0.2, cell_sigma, "none")
    mask_sigma = s_h[usable]
    with np.errstate(all="ignore"):
        white = (s_g[usable] / np.maximum(mask_sigma, 1e-6)) < WHITE_RATIO
    # Fine texture can be white too, but it is not the quietest half of the frame.
    white &= mask_sigma <= np.median(mask_sigma)
    if white.sum() >= max(4, WHITE_SHARE * values.size):
        # Enough quiet cells whose residual is white: noise, read as it is.
        sigma = mid_grey_sigma(mask_sigma[white] / LUMA_NOISE_GAIN, level[usable][white], WHITE_QUANTILE)
    else:
        # Texture everywhere: the texture-corrected cells, their low quantile.
        sigma = mid_grey_sigma(values, level[usable])
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
# Fewer informative frequencies than this: the reading is texture as likely as noise.
MIN_INFORMATIVE = 6


def noise_from_dct(luma: np.ndarray, table: np.ndarray) -> float | None:
    """Noise sigma from the zero share of quantized DCT coefficients in the flattest blocks.

    Under Gaussian noise of luminance sigma s, a coefficient quantized with step Q is
    zero with probability erf(Q / (2*sqrt(2)*s)); each frequency whose zero share is
    informative (3-97 %) gives one reading, and their median is the estimate. None when
    fewer than MIN_INFORMATIVE frequencies are informative (the noise is far below the
    steps, and a few textured blocks would be read as noise).
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
    if len(estimates) < MIN_INFORMATIVE:
        return None
    return float(np.median(estimates)) / LUMA_NOISE_GAIN


# Noise correlated between neighbours (a camera's demosaiced noise) escapes the pixel
# estimator: its finest-scale mask sees little of it, and the texture correction reads
# the rest as texture (61 % of the correlated noise in the calibration data read 0; of
# demosaiced Bayer noise on the calibration photos, 20 % was found). In the flattest
# cells the plane fit's residual is the noise whatever its spectrum, and texture where
# there is no flat cell; the two part by how the residual grows at half resolution: white
# noise halves under the 2x2 mean (doubled, it stays), correlated noise grows to about
# twice, texture more (clean grass: 2.1-2.3 on the calibration photos). The growth
# was chosen on the calibration photos only (three draws of 480 crops, other libraries'
# degradations and the synthesis): no crop flagged that was not flagged before. The
# floor is 1.2 times the contract's mild noise (5): the reading is over the true sigma
# by up to 10-18 % (90th percentile, demosaiced noise on the calibration photos), and
# at 5 itself the benchmark's clean crops of grace_hopper, a scan with its own grain,
# read 5.4 and were flagged (README, evidence section).
FLAT_MIN_SIGMA = 6.0
FLAT_MAX_GROWTH = 2.0


def flat_cell_reading(flat_p5: float, flat_half_p5: float) -> float | None:
    """Noise sigma (per channel) from the flattest cells' residuals, or None where it is texture.

    `flat_p5`: the 5th percentile of the cells' plane-fit residual (features.flat_cell_std)
    over LUMA_NOISE_GAIN; `flat_half_p5`: the same at half resolution, doubled (features'
    `flat_std_p5` and `flat_half_std_p5`).
    """
    if flat_p5 < FLAT_MIN_SIGMA or flat_half_p5 > FLAT_MAX_GROWTH * flat_p5:
        return None
    return float(flat_p5)

