"""Blur: the Gaussian sigma (px) added to the image, read at its in-focus edges.

Method (after Zhuo & Sim, "Defocus map estimation from a single image", 2011)
- At a step edge blurred by a Gaussian of sigma s, the gradient peak is C/(sqrt(2 pi) s);
  after a further Gaussian of sigma S it is C/(sqrt(2 pi) sqrt(s^2+S^2)). Their ratio
  gives s without knowing the contrast C. The wide gradient (S = 3 px) is taken on a
  half-resolution copy; the fine gradient is read on the full-resolution pixels around
  each edge point, along the edge normal only. The ratio -> sigma curve is not a
  formula but a table computed once by running this very pipeline on synthetic
  Gaussian edges at many angles and sub-pixel offsets (sampling and discretisation
  included).
- Only isolated steps count: the luminance on either side must differ by the contrast
  the wide gradient implies. Thin lines and dense texture break the single-step model
  (under motion blur they would read far too sharp).
- Points are split in four gradient directions. The in-focus tiles (64 px) are those
  whose sharpest direction is sharpest; there the worst direction is the image's blur.
  So a sharp subject on a soft background is a sharp photo (the background's tiles are
  soft in every direction), while motion blur, which leaves the direction across the
  motion sharp in every tile, still reads as blur.
- A sharp photo is not a perfect step (lens, sensor, demosaicing), and real edges are
  not isolated steps: the measured edge sigma is mapped to the added Gaussian sigma by
  a calibration table (`CALIBRATION_MEASURED` -> `CALIBRATION_ADDED`), the medians over
  the calibration photos of Gaussian and defocus blur of known sigma.
- Noise steepens fine gradients (reads as sharpness) and hides soft edges: with noise,
  the fine gradient is taken after a small binomial filter (its own blur is in the
  table), edges must stand six noise sigmas above it, and the blur is also read from
  the spectrum of the row/column differences with the noise's share removed
  (`spectral_sigma`); the larger reading counts. The spectrum alone is used when there
  are too few edges.

Limits: needs some in-focus edges (a flat or misty image gives a low confidence);
motion blur in dense texture (foliage, fur, brick) reads low, since few isolated steps
survive; defocus and motion are read as the Gaussian of like extent (see synthesis.py);
a photo soft by nature (fog, a soft-focus lens) reads as blurred, which is what it
looks like; strong noise with strong blur leaves neither edges nor spectrum to read.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import ndtr

from inspector.evidence.shared import Shared, shared_for

# Wide smoothing, in full-resolution px, that the fine gradient is compared with.
WIDE_SIGMA = 3.0
# Measured edge sigma (intrinsic sharpness included) -> added Gaussian sigma. Medians
# over the calibration photos (astronaut, chelsea, coffee, china, brick, grass) of
# Gaussian and defocus blur of known sigma; a sharp photo reads 0.25-0.65 px, since
# lens, sensor and demosaicing leave some blur of their own. Beyond the table the last
# slope goes on. Re-derived by `python -m inspector.evidence.calibrate`.
CALIBRATION_MEASURED = (0.35, 0.92, 1.37, 1.83, 2.52, 3.30, 4.01, 4.91)
CALIBRATION_ADDED = (0.0, 1.0, 1.5, 2.0, 3.0, 4.0, 5.5, 7.0)
# Above this luminance noise sigma, or with fewer edge points than MIN_EDGE_POINTS,
# the blur is read from the spectrum as well (the larger reading counts).
SPECTRAL_NOISE = 4.0
MIN_EDGE_POINTS = 30
# What the spectral reading gives for a sharp photo (calibration photos), px.
SPECTRAL_INTRINSIC = 0.3
# Edge points need at least this contrast (0-255) and this many times the noise sigma.
MIN_CONTRAST = 20.0
NOISE_CONTRAST = 6.0
# Above this luminance noise sigma the fine gradient is read after a binomial filter.
PREFILTER_NOISE = 2.0
TILE_MIN_POINTS = 4
# Share of the tiles with edges (sharpest best direction first) read as in focus.
IN_FOCUS_QUANTILE = 30.0
DIRECTIONS = 4
MAX_SIGMA = 8.0
# Edge points kept per image (a regular subset beyond this).
MAX_POINTS = 5000


@dataclass(frozen=True)
class BlurEstimate:
    sigma: float  # added Gaussian-equivalent blur, px
    total_sigma: float  # measured at the edges, intrinsic included
    confidence: float
    tile_sigma: np.ndarray  # per-tile added blur (NaN where no edges)
    points: int


def half_resolution(luma: np.ndarray) -> np.ndarray:
    h, w = (luma.shape[0] // 2) * 2, (luma.shape[1] // 2) * 2
    quarter = luma[:h, :w]
    # 0.25 * (a + b + c + d), summed in place in the same order (one array, not four).
    total = quarter[0::2, 0::2] + quarter[1::2, 0::2]
    total += quarter[0::2, 1::2]
    total += quarter[1::2, 1::2]
    if total.dtype.kind != "f":
        return 0.25 * total
    total *= 0.25
    return total


def edge_points(luma: np.ndarray, noise_sigma: float = 0.0, min_contrast: float = MIN_CONTRAST,
                shared: Shared | None = None):
    """Edge points on the wide scale: full-res (row, col), wide gradient (per full-res px), angle."""
    smooth = ndimage.gaussian_filter(shared_for(luma, shared).half(), WIDE_SIGMA / 2.0, truncate=3.0)
    # 0.5 * (a - b) and gx * gx + gy * gy, in place (the same operations).
    gy = smooth[2:, 1:-1] - smooth[:-2, 1:-1]
    gy *= 0.5
    gx = smooth[1:-1, 2:] - smooth[1:-1, :-2]
    gx *= 0.5
    squared = gx * gx
    squared += gy * gy
    # Candidates: on large images, every `stride`-th row is enough (points are capped anyway).
    stride = max(1, int(squared.size // (MAX_POINTS * 25)))
    # Peak of the wide gradient of a step of contrast C blurred by s is C / (sqrt(2 pi) * sqrt(S^2 + s^2));
    # the floor lets through steps up to s = MAX_SIGMA; their contrast is checked later.
    floor = max(min_contrast, NOISE_CONTRAST * noise_sigma) / (np.sqrt(2 * np.pi) * np.hypot(WIDE_SIGMA, MAX_SIGMA))
    # Candidates in row-major order (as np.nonzero lists them), as flat indices into
    # `squared`: one index array to gather with, and a neighbour is one addition away.
    found = np.flatnonzero(squared[1:-1:stride, 1:-1] > (2.0 * floor) ** 2)
    if found.size > 8 * MAX_POINTS:
        chosen = np.linspace(0, found.size - 1, 8 * MAX_POINTS).astype(np.int64)
        found = found[chosen]
    width = squared.shape[1]
    sub_rows, sub_cols = np.divmod(found, max(width - 2, 1))
    rows, cols = 1 + stride * sub_rows, 1 + sub_cols
    index = rows * width + cols
    flat_squared = np.ravel(squared)
    point_gy, point_gx = np.ravel(gy)[index], np.ravel(gx)[index]
    direction = gradient_direction(point_gy, point_gx)
    # Non-maximum suppression along the (quantised) gradient direction, on candidates
    # only: the neighbour (step_y, step_x) = (0, 1), (1, 1), (1, 0), (1, -1) per direction.
    step = np.array([1, width + 1, width, width - 1])[direction]
    centre = flat_squared[index]
    keep = (centre > flat_squared[index + step]) & (centre >= flat_squared[index - step])
    rows, cols, centre, point_gy, point_gx = rows[keep], cols[keep], centre[keep], point_gy[keep], point_gx[keep]
    if rows.size > MAX_POINTS:
        # A regular subset keeps the spatial spread and bounds the cost on large images.
        chosen = np.linspace(0, rows.size - 1, MAX_POINTS).astype(np.int64)
        rows, cols, centre, point_gy, point_gx = rows[chosen], cols[chosen], centre[chosen], point_gy[chosen], point_gx[chosen]
    # The angle of the points kept only (arctan2 is the slowest step per point).
    angle = np.arctan2(point_gy, point_gx)
    # Half-res pixel (r+1, c+1) covers full-res rows 2r+2..2r+3.
    return 2 * rows + 2, 2 * cols + 2, np.sqrt(centre) / 2.0, angle


# The octant borders of the gradient's direction: |gy| / |gx| at 22.5 and 67.5 degrees.
TAN_LOW, TAN_HIGH = float(np.tan(np.pi / 8)), float(np.tan(3 * np.pi / 8))
# Ratios this close to a border (relative) take arctan2's reading.
BORDER_MARGIN = 1e-5


def gradient_direction(gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """`round(arctan2(gy, gx) / (pi / 4)) % 4`: the gradient's direction in four bins.

    Read from |gy| against |gx| at the bins' borders and the signs, which is 10 times
    faster than arctan2 on tens of thousands of candidates; points within BORDER_MARGIN
    of a border are given arctan2's bin, so every bin is the one arctan2 gives.
    """
    size_y, size_x = np.abs(gy), np.abs(gx)
    low, high = TAN_LOW * size_x, TAN_HIGH * size_x
    diagonal = np.where((gy > 0) == (gx > 0), 1, 3)
    direction = np.where(size_y < low, 0, np.where(size_y > high, 2, diagonal))
    border = (np.abs(size_y - low) <= BORDER_MARGIN * low) | (np.abs(size_y - high) <= BORDER_MARGIN * high)
    if border.any():
        angle = np.arctan2(gy[border], gx[border])
        direction[border] = np.round(angle / (np.pi / DIRECTIONS)).astype(np.int64) % DIRECTIONS
    return direction.astype(np.int64)


def fine_gradient(luma: np.ndarray, rows: np.ndarray, cols: np.ndarray, angle: np.ndarray,
                  prefilter: bool) -> np.ndarray:
    """Largest full-resolution gradient along the edge normal in the 4x4 px around each point.

    Only the component along the wide gradient's direction counts, so a sharp edge
    crossing a smeared one (motion blur) does not lend it its sharpness. Only the
    windows around the points are read (cost independent of the image size).
    """
    # Rows/cols -1..2 around the point, plus one for the differences and one per filter tap.
    margin = 2 if prefilter else 1
    offsets = np.arange(-1 - margin, 3 + margin)
    height, width = luma.shape
    # Windows as (window row, window col, point): the points on the last axis make every
    # step below one long vectorised loop instead of thousands of 4-px ones.
    if min(height, width) > 4:
        # The pixels of np.pad(luma, 4, mode="reflect") at the windows, without padding
        # (copying) the whole image: indices reflected about the first and last row/column.
        row_index = reflect_index(offsets[:, None] + rows[None, :], height)
        col_index = reflect_index(offsets[:, None] + cols[None, :], width)
        windows = np.ravel(luma)[row_index[:, None, :] * width + col_index[None, :, :]]
    else:
        padded = np.pad(luma, 4, mode="reflect")
        windows = padded[offsets[:, None, None] + rows[None, None, :] + 4,
                         offsets[None, :, None] + cols[None, None, :] + 4]
    if prefilter:
        windows = 0.25 * (windows[:-2] + 2.0 * windows[1:-1] + windows[2:])
        windows = 0.25 * (windows[:, :-2] + 2.0 * windows[:, 1:-1] + windows[:, 2:])
    gy = 0.5 * (windows[2:, 1:-1] - windows[:-2, 1:-1])
    gx = 0.5 * (windows[1:-1, 2:] - windows[1:-1, :-2])
    along = np.abs(gx * np.cos(angle) + gy * np.sin(angle))
    return along.max(axis=(0, 1))


def reflect_index(index: np.ndarray, size: int) -> np.ndarray:
    """Where np.pad's "reflect" mode reads index `index` (-(size-1) .. 2*(size-1)) of an axis of `size`."""
    index = np.abs(index)
    return np.where(index > size - 1, 2 * (size - 1) - index, index)


def binomial_3x3(luma: np.ndarray) -> np.ndarray:
    """[1 2 1]/4 in both directions (edges replicated): a light denoise of known blur."""
    padded = np.pad(luma, 1, mode="edge")
    vertical = 0.25 * (padded[:-2] + 2.0 * padded[1:-1] + padded[2:])
    return 0.25 * (vertical[:, :-2] + 2.0 * vertical[:, 1:-1] + vertical[:, 2:])


def point_ratios(luma: np.ndarray, noise_sigma: float = 0.0, prefilter: bool = False,
                 min_contrast: float = MIN_CONTRAST, isolated_only: bool = True, shared: Shared | None = None):
    """Edge points, their fine/wide gradient ratio and direction bin.

    With `isolated_only`, points must be steps: the luminance ISOLATION_SPAN px to either
    side must differ by the contrast the wide gradient implies. Thin lines and dense
    texture fail this (they break the single-step model the ratio relies on; under
    motion blur they read far too sharp).
    """
    rows, cols, wide, angle = edge_points(luma, noise_sigma, min_contrast, shared)
    direction = np.round(angle / (np.pi / DIRECTIONS)).astype(np.int64) % DIRECTIONS
    if rows.size == 0:
        return rows, cols, np.zeros(0), direction
    fine = fine_gradient(luma, rows, cols, angle, prefilter)
    ratio = fine / np.maximum(wide, 1e-6)
    if isolated_only:
        total = sigma_from_ratio(ratio, prefilter)
        keep = is_isolated_step(luma, rows, cols, angle, wide, total, max(min_contrast, NOISE_CONTRAST * noise_sigma))
        rows, cols, ratio, direction = rows[keep], cols[keep], ratio[keep], direction[keep]
    return rows, cols, ratio, direction


ISOLATION_SPAN = 12.0


def is_isolated_step(luma, rows, cols, angle, wide, total, min_contrast: float = MIN_CONTRAST) -> np.ndarray:
    span = np.maximum(ISOLATION_SPAN, 2.0 * np.sqrt(total**2 + WIDE_SIGMA**2))
    cy, cx = rows + 0.5, cols + 0.5
    dy, dx = span * np.sin(angle), span * np.cos(angle)
    ahead = ndimage.map_coordinates(luma, [cy + dy, cx + dx], order=1, mode="nearest")
    behind = ndimage.map_coordinates(luma, [cy - dy, cx - dx], order=1, mode="nearest")
    predicted = wide * np.sqrt(2 * np.pi) * np.sqrt(total**2 + WIDE_SIGMA**2)
    contrast = np.abs(ahead - behind)
    agreement = contrast / np.maximum(predicted, 1e-6)
    return (agreement > 0.75) & (agreement < 1.3) & (contrast >= min_contrast)


@functools.lru_cache(maxsize=2)
def ratio_table(prefilter: bool) -> tuple[np.ndarray, np.ndarray]:
    """(ratio, sigma) pairs of synthetic Gaussian edges run through this pipeline.

    Edges of contrast 100 at 12 angles and random sub-pixel offsets, sampled at pixel
    centres; the median ratio per sigma. Computed once per process (about 0.2 s).
    """
    rng = np.random.default_rng(12345)
    sigmas = np.exp(np.linspace(np.log(0.25), np.log(14.0), 28))
    size = 80
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    ratios = []
    for sigma in sigmas:
        values = []
        for angle in np.linspace(0, np.pi, 8, endpoint=False):
            offset = size / 2 + rng.uniform(-0.5, 0.5)
            distance = (xx - offset) * np.cos(angle) + (yy - offset) * np.sin(angle)
            edge = (60.0 + 100.0 * ndtr(distance / sigma)).astype(np.float32)
            rows, cols, ratio, _ = point_ratios(edge, prefilter=prefilter, isolated_only=False)
            central = (np.abs(rows - size / 2) < size / 4) & (np.abs(cols - size / 2) < size / 4)
            values.extend(ratio[central])
        ratios.append(np.median(values))
    ratios = np.array(ratios)
    # Sharper edges have larger ratios; keep it strictly monotone for interpolation.
    ratios = np.minimum.accumulate(ratios)
    return ratios[::-1].copy(), sigmas[::-1].copy()


def sigma_from_ratio(ratio: np.ndarray, prefilter: bool) -> np.ndarray:
    table_ratio, table_sigma = ratio_table(prefilter)
    return np.interp(ratio, table_ratio, table_sigma, left=table_sigma[0], right=table_sigma[-1])


def added_blur(total: np.ndarray | float) -> np.ndarray:
    """Added Gaussian sigma for a measured edge sigma, by the calibration table."""
    total = np.asarray(total, dtype=np.float64)
    slope = (CALIBRATION_ADDED[-1] - CALIBRATION_ADDED[-2]) / (CALIBRATION_MEASURED[-1] - CALIBRATION_MEASURED[-2])
    inside = np.interp(total, CALIBRATION_MEASURED, CALIBRATION_ADDED)
    beyond = CALIBRATION_ADDED[-1] + slope * (total - CALIBRATION_MEASURED[-1])
    return np.where(total > CALIBRATION_MEASURED[-1], beyond, inside)


def estimate_blur(luma: np.ndarray, noise_sigma_luma: float = 0.0, tile: int = 64,
                  shared: Shared | None = None) -> BlurEstimate:
    """The added blur (edges, and the spectrum under noise); `shared`: this image's shared intermediates."""
    shared = shared_for(luma, shared)
    prefilter = noise_sigma_luma > PREFILTER_NOISE
    rows, cols, ratio, direction = point_ratios(luma, noise_sigma_luma, prefilter, shared=shared)
    tiles_shape = (max(1, luma.shape[0] // tile), max(1, luma.shape[1] // tile))
    tile_sigma = np.full(tiles_shape, np.nan)
    use_spectrum = noise_sigma_luma > SPECTRAL_NOISE or rows.size < MIN_EDGE_POINTS
    # The spectrum reads the Gaussian sigma directly (a sharp photo: about 0.3 px).
    spectral = float(np.sqrt(max(spectral_sigma(luma, noise_sigma_luma, shared) ** 2 - SPECTRAL_INTRINSIC**2, 0.0))) \
        if use_spectrum else 0.0
    if rows.size < 8:
        # No edge to read: the spectrum is all there is (0 without noise: a flat image).
        confidence = 0.4 if spectral > 0 else 0.2
        return BlurEstimate(spectral, spectral, confidence, tile_sigma, int(rows.size))
    total = sigma_from_ratio(ratio, prefilter)
    tile_row = np.minimum(rows // tile, tiles_shape[0] - 1)
    tile_col = np.minimum(cols // tile, tiles_shape[1] - 1)
    tile_index = tile_row * tiles_shape[1] + tile_col
    image_total, support = worst_direction(total, direction, tile_index, tiles_shape)
    all_medians = tile_medians(tile_index, total, tiles_shape)
    tile_sigma = added_blur(np.where(np.isfinite(all_medians), all_medians, 0.0)).reshape(tiles_shape)
    tile_sigma[~np.isfinite(all_medians.reshape(tiles_shape))] = np.nan
    confidence = float(np.clip(0.3 + 0.65 * min(1.0, support / 300), 0.2, 0.95))
    # Noise makes edges read sharp (and hides soft ones): the spectrum, cleared of the
    # noise, reads a blur the edges missed.
    sigma = max(float(added_blur(image_total)), spectral)
    return BlurEstimate(sigma, image_total, confidence, tile_sigma, int(rows.size))


def worst_direction(total, direction, tile_index, tiles_shape) -> tuple[float, int]:
    """Blur of the most blurred direction, read in the in-focus tiles.

    A tile is in focus when its sharpest direction is sharp: a soft background is soft
    in every direction, while motion blur leaves the direction across the motion sharp
    in every tile. The in-focus tiles are the IN_FOCUS_QUANTILE of tiles with the
    sharpest best direction (at least three). In them, each direction's blur is the
    median of its tile medians (or of its points where fewer than two tiles have
    enough), and the worst direction is the image's blur.
    """
    per_direction = np.stack([tile_medians(tile_index[direction == d], total[direction == d], tiles_shape)
                              for d in range(DIRECTIONS)])
    finite = np.isfinite(per_direction)
    has_any = finite.any(axis=0)
    if has_any.sum() < 3:
        return float(np.median(total)), int(total.size)
    best = np.where(finite, per_direction, np.inf).min(axis=0)
    candidates = np.flatnonzero(has_any)
    cut = np.percentile(best[candidates], IN_FOCUS_QUANTILE)
    in_focus = candidates[best[candidates] <= cut]
    if in_focus.size < 3:
        in_focus = candidates[np.argsort(best[candidates])[:3]]
    points_in_focus = np.isin(tile_index, in_focus)
    worst, support = None, 0
    for d in range(DIRECTIONS):
        tiles = per_direction[d, in_focus]
        tiles = tiles[np.isfinite(tiles)]
        in_d = points_in_focus & (direction == d)
        if tiles.size >= 2:
            value = float(np.median(tiles))
        elif in_d.sum() >= 12:
            value = float(np.median(total[in_d]))
        else:
            continue
        worst = value if worst is None else max(worst, value)
        support += int(in_d.sum())
    if worst is None:
        return float(np.median(total[points_in_focus])), int(points_in_focus.sum())
    return worst, support


def spectral_sigma(luma: np.ndarray, noise_sigma: float = 0.0, shared: Shared | None = None) -> float:
    """Gaussian sigma from the fall of the difference spectrum, the noise's share removed.

    A photo's first differences have a roughly flat spectrum; a Gaussian blur multiplies
    it by exp(-4 pi^2 s^2 nu^2). Each frequency where the spectrum stands above twice the
    noise and has fallen below 90 % of its low-frequency level gives a reading of s; the
    median is returned (0 where nothing fell: no measurable blur). Used where noise
    hides the edges' own slopes.
    """
    from inspector.evidence.resolution import row_spectrum

    if min(luma.shape) < 32:
        return 0.0
    frequency, power = row_spectrum(luma, 0.0, shared=shared)
    window_power = power  # noise-free reference level comes from the low frequencies
    noise = row_spectrum_noise(frequency, noise_sigma)
    signal = power - noise
    low = (frequency >= 0.006) & (frequency <= 0.025)
    reference = float(np.mean(signal[low])) if low.any() else 0.0
    if reference <= 0:
        return 0.0
    ratio = signal / reference
    usable = (frequency >= 0.03) & (frequency <= 0.45) & (window_power > 1.3 * noise) & (ratio > 0.01) & (ratio < 0.9)
    if usable.sum() < 3:
        return 0.0
    readings = np.sqrt(-np.log(ratio[usable])) / (2 * np.pi * frequency[usable])
    return float(np.median(readings))


def row_spectrum_noise(frequency: np.ndarray, noise_sigma: float, length: int = 512) -> np.ndarray:
    """Expected `row_spectrum` power of white noise of `noise_sigma` (both axes, Hann window)."""
    window = np.hanning(length)
    return 2.0 * (window**2).sum() * 2.0 * noise_sigma**2 * (1.0 - np.cos(2 * np.pi * frequency))


def tile_medians(tile_index: np.ndarray, values: np.ndarray, tiles_shape: tuple[int, int]) -> np.ndarray:
    """Median of `values` per tile (NaN where a tile has fewer than TILE_MIN_POINTS)."""
    n_tiles = tiles_shape[0] * tiles_shape[1]
    out = np.full(n_tiles, np.nan)
    if values.size == 0:
        return out
    order = np.lexsort((values, tile_index))
    sorted_tiles, sorted_values = tile_index[order], values[order]
    starts = np.flatnonzero(np.r_[True, sorted_tiles[1:] != sorted_tiles[:-1]])
    counts = np.diff(np.r_[starts, sorted_tiles.size])
    enough = counts >= TILE_MIN_POINTS
    out[sorted_tiles[starts[enough]]] = sorted_values[starts[enough] + counts[enough] // 2]
    return out
