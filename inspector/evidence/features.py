"""Features: the estimators' readings and a few more measurements, as one vector per image.

The four estimators each read one physical parameter under one model of the image.
Where their models break (an upscaled image is soft like a blurred one; noise that is
correlated between neighbours escapes a finest-scale mask; texture answers a noise
estimator), the other readings tell which case it is. The learned calibration
(`learned.py`) combines them; these are its inputs, in `FEATURE_NAMES` order:

- the estimators' readings (blur, noise, resolution, JPEG) and their internals: the
  edge sigma before calibration, the spectral blur reading, the resampling pattern's
  strength and frequency, the spectral fall between the two factor candidates, the
  share of duplicated columns (nearest-neighbour upscaling, pixelation);
- the spectrum of the first differences (noise removed) in bands of 0.025 from 0.025 to
  0.5 cycles/px, each as log10 of its median power against the lowest band, with a
  Gaussian fit of its fall and where it falls off a cliff: a Gaussian blur falls
  smoothly (log power linear in frequency squared), an upscaling by f falls off a cliff
  at 0.5/f, so "blur or upscaling" is "which model explains the spectrum";
- the low end of the same spectrum in finer bands (0.008-0.2 cycles/px), with the same
  two models: a strong blur and an upscaling by f > 4 differ only there (issue 20: a
  missed upscale showed up as blur);
- noise at several scales: the finest-scale mask's low quantiles, the same on a 2x2
  binned copy (white noise halves there, correlated noise less), and the standard
  deviation left after a plane fit in the flattest 16-px cells at full and half
  resolution (any noise, white or not, where the content is flat).

Cost: a few ms per megapixel on top of the estimators (the cell statistics are
vectorised; the binned copy, the difference profiles and the difference spectrum of 96
lines are the estimators' own, shared through `shared.Shared`).
"""

from __future__ import annotations

import numpy as np

from inspector.evidence.blur import BlurEstimate, spectral_sigma
from inspector.evidence.jpeg import JpegEstimate
from inspector.evidence.noise import LUMA_NOISE_GAIN, NoiseEstimate, noise_cells
from inspector.evidence.resolution import ResolutionEstimate, duplicate_share, passband_fall, row_spectrum
from inspector.evidence.shared import Shared, shared_for

# Bands of 0.025 cycles/px: an upscaling's cliff at 0.5/f must fall inside one band and
# not be averaged with the pass band (f = 2.5 puts it at 0.2, f = 4 at 0.125).
SPECTRUM_EDGES = tuple(np.round(np.arange(0.025, 0.5001, 0.025), 3))
FLAT_CELL = 16
MAX_FLAT_CELLS = 1200
JPEG_SOURCES = {"none": 0.0, "pixels": 1.0, "tables": 2.0}
# Finer bands at the low end (cycles/px), where a strong blur and an upscaling by f > 4
# (its cliff at 0.5/f < 0.125) differ: the 0.025-wide bands above put their whole pass
# band into one or two bands, whose levels are then at the floor for both.
FINE_EDGES = (0.008, 0.012, 0.016, 0.024, 0.032, 0.048, 0.064, 0.08, 0.1, 0.125, 0.16, 0.2)
FLOOR_BAND = (0.35, 0.5)

FEATURE_NAMES: tuple[str, ...] = (
    "jpeg_quality", "jpeg_source", "jpeg_confidence",
    "noise_sigma", "noise_dct", "noise_confidence", "noise_cells_p10", "noise_cells_p30", "noise_cells_p50",
    "noise_half_p20", "flat_std_p5", "flat_std_p20", "flat_half_std_p5", "flat_half_std_p20",
    "blur_sigma", "blur_total", "blur_spectral", "blur_points", "blur_confidence",
    "resolution_factor", "resolution_strength", "resolution_frequency", "resolution_fall", "duplicate_share",
    *(f"spectrum_{i}" for i in range(1, len(SPECTRUM_EDGES) - 1)),
    "gaussian_fit_sigma", "gaussian_fit_residual", "cutoff_frequency", "cutoff_steepness",
    "log_min_side",
    *(f"fine_spectrum_{i}" for i in range(1, len(FINE_EDGES) - 1)), "fine_floor",
    "fine_gaussian_sigma", "fine_gaussian_residual", "fine_cliff_frequency", "fine_cliff_excess",
)


def feature_vector(luma: np.ndarray, jpeg: JpegEstimate, noise: NoiseEstimate, resolution: ResolutionEstimate,
                   blur: BlurEstimate, shared: Shared | None = None) -> np.ndarray:
    """The features of one image, in FEATURE_NAMES order (float64, finite).

    `shared` (the one the estimators used) saves recomputing the binned copy, the
    difference profiles and the difference spectrum; the values are the same without it.
    """
    shared = shared_for(luma, shared)
    noise_luma = noise.sigma * LUMA_NOISE_GAIN
    cells = noise.cell_sigma[np.isfinite(noise.cell_sigma)]
    cell_quantiles = np.percentile(cells, (10, 30, 50)) if cells.size else np.zeros(3)
    half = shared.half()
    mask_half = noise_cells(half)[0]
    mask_half = mask_half[np.isfinite(mask_half)]
    # White noise halves under a 2x2 mean: doubled, the half-resolution reading is
    # comparable with the full one, and larger where the noise is correlated.
    noise_half = 2.0 * float(np.percentile(mask_half, 20)) / LUMA_NOISE_GAIN if mask_half.size else 0.0
    flat_full = flat_cell_std(luma)
    flat_half = flat_cell_std(half)
    nu = resolution.frequency
    fall = passband_fall(luma, nu, noise_luma, shared) if 0.05 < nu < 0.5 else 0.0
    values = [
        jpeg.quality, JPEG_SOURCES.get(jpeg.source, 0.0), jpeg.confidence,
        noise.sigma, 1.0 if noise.method == "dct" else 0.0, noise.confidence, *cell_quantiles,
        noise_half, *(flat_full / LUMA_NOISE_GAIN), *(2.0 * flat_half / LUMA_NOISE_GAIN),
        blur.sigma, blur.total_sigma, spectral_sigma(luma, noise_luma, shared), np.log1p(blur.points),
        blur.confidence, resolution.factor, min(resolution.strength, 50.0), nu, fall, duplicate_share(luma, shared),
        *spectrum_features(luma, noise_luma, shared),
        np.log(max(2, min(luma.shape))),
        *fine_spectrum_features(luma, noise_luma, shared),
    ]
    out = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(out), out, 0.0)


def spectrum_features(luma: np.ndarray, noise_sigma: float, shared: Shared | None = None) -> np.ndarray:
    """Band levels of the difference spectrum, a Gaussian fit of its fall, and its cliff.

    - Band levels: log10 of the median power per band against the lowest band (the
      median keeps the JPEG grid's narrow lines at k/8 cycles/px out).
    - Gaussian fit: a blur of sigma s makes log10 power fall as 4 pi^2 s^2 nu^2 / ln 10;
      the least-squares s over the bands above the noise, and the fit's RMS residual
      (small for a blur, large for an upscaling's flat-then-cliff spectrum).
    - Cliff: the first frequency where the level is 1.5 decades under the pass band,
      and how many decades it falls over the 0.05 cycles/px around it (an upscaling
      by f falls at 0.5/f, and steeply).
    """
    count = len(SPECTRUM_EDGES) - 2
    if min(luma.shape) < 32:
        return np.zeros(count + 4)
    frequency, power = row_spectrum(luma, noise_sigma, shared=shared)
    levels = band_levels(frequency, power, SPECTRUM_EDGES[:-1], np.asarray(SPECTRUM_EDGES[1:]) + 1e-9)
    centres = 0.5 * (np.asarray(SPECTRUM_EDGES[:-1]) + np.asarray(SPECTRUM_EDGES[1:]))
    relative = levels - levels[0]
    # Bands that fell more than three decades are the subtracted noise's floor, not signal.
    usable = relative > -3.0
    if usable.sum() >= 3:
        x = centres[usable] ** 2
        slope = -float(np.sum(x * relative[usable]) / np.sum(x * x))
        residual = float(np.sqrt(np.mean((relative[usable] + slope * x) ** 2)))
        sigma = float(np.sqrt(max(slope, 0.0) * np.log(10) / (4 * np.pi**2)))
    else:
        sigma, residual = 0.0, 0.0
    below = np.flatnonzero(relative < -1.5)
    if below.size:
        cut = int(below[0])
        before, after = relative[max(cut - 1, 0)], relative[min(cut + 1, len(relative) - 1)]
        cliff, steepness = float(centres[cut]), float(before - after)
    else:
        cliff, steepness = 0.5, 0.0
    return np.concatenate([relative[1:], [sigma, residual, cliff, steepness]])


def fine_spectrum_features(luma: np.ndarray, noise_sigma: float, shared: Shared | None = None) -> np.ndarray:
    """The low end of the difference spectrum in finer bands, and two models of its fall.

    - Levels: log10 of the median power per `FINE_EDGES` band against the first one
      (0.008-0.012 cycles/px), and the floor (`FLOOR_BAND`) against the same.
    - Gaussian fit over the fine bands above the floor (as in `spectrum_features`): its
      sigma and RMS residual.
    - Cliff: the first band that falls a decade under the highest level before it, and
      how much further it falls there than the Gaussian fit says (an upscaling's cliff
      is steeper than any Gaussian through its flat pass band).

    Rows and columns are summed: the anisotropy of the two (a motion blur softens one
    direction only) was tried as a feature and left out, because a photo's own content
    can be anisotropic (a tall rocket on its pad) where no training photo was.
    """
    count = len(FINE_EDGES) - 2
    if min(luma.shape) < 32:
        return np.zeros(count + 5)
    frequency, total = row_spectrum(luma, noise_sigma, shared=shared)

    every = band_levels(frequency, total, (*FINE_EDGES[:-1], FLOOR_BAND[0]), (*FINE_EDGES[1:], FLOOR_BAND[1]))
    levels, centres = every[:-1], 0.5 * (np.asarray(FINE_EDGES[:-1]) + np.asarray(FINE_EDGES[1:]))
    relative = levels - levels[0]
    floor = every[-1] - levels[0]
    usable = relative > max(floor + 0.3, -3.0)
    sigma, residual, slope = 0.0, 0.0, 0.0
    if usable.sum() >= 3:
        x = centres[usable] ** 2
        slope = max(-float(np.sum(x * relative[usable]) / np.sum(x * x)), 0.0)
        residual = float(np.sqrt(np.mean((relative[usable] + slope * x) ** 2)))
        sigma = float(np.sqrt(slope * np.log(10) / (4 * np.pi**2)))
    peak = np.maximum.accumulate(relative)
    below = np.flatnonzero(relative < peak - 1.0)
    if below.size:
        cut = int(below[0])
        drop = float(relative[cut - 1] - relative[cut])
        expected = slope * float(centres[cut] ** 2 - centres[cut - 1] ** 2)
        cliff, excess = float(centres[cut]), drop - expected
    else:
        cliff, excess = FINE_EDGES[-1], 0.0
    return np.concatenate([relative[1:], [floor, sigma, residual, cliff, excess]])


def band_levels(frequency: np.ndarray, power: np.ndarray, lows, highs) -> np.ndarray:
    """log10 of each band's median power (at least 1e-6), -6 where a band is empty."""
    return np.log10(np.maximum(np.nan_to_num(band_medians(frequency, power, lows, highs), nan=1e-6), 1e-6))


def band_medians(frequency: np.ndarray, power: np.ndarray, lows, highs) -> np.ndarray:
    """`np.median(power[(frequency >= low) & (frequency < high)])` per band, NaN where empty.

    `frequency` ascends (an rfft's), so each band is a slice found by `searchsorted`,
    and its median is read from the sorted slice: the same values as np.median, without
    its per-call overhead (a few dozen bands per image).
    """
    starts = np.searchsorted(frequency, lows, side="left")
    stops = np.searchsorted(frequency, highs, side="left")
    out = np.full(len(starts), np.nan)
    for index, (start, stop) in enumerate(zip(starts, stops)):
        if stop > start:
            part = np.sort(power[start:stop])
            middle = part.size // 2
            out[index] = part[middle] if part.size % 2 else (part[middle - 1] + part[middle]) / 2
    return out


def flat_cell_std(luma: np.ndarray, cell: int = FLAT_CELL) -> np.ndarray:
    """5th and 20th percentile over cells of the standard deviation left after a plane fit.

    In a cell whose content is a plane (sky, a wall, skin at this scale) what is left is
    the noise, whatever its spectrum; cells near black or white are skipped (clipped).
    """
    rows, cols = luma.shape[0] // cell, luma.shape[1] // cell
    if rows * cols < 8:
        return np.zeros(2)
    # A regular subset of at most about MAX_FLAT_CELLS cells: low percentiles of a
    # thousand cells are stable, and the cost stays flat on large images.
    step = max(1, int(np.ceil(np.sqrt(rows * cols / MAX_FLAT_CELLS))))
    blocks = luma[: rows * cell, : cols * cell].reshape(rows, cell, cols, cell)[::step, :, ::step]
    # One row of cell * cell pixels per cell, centred in place below: a copy (the reshape
    # makes one unless the image is a single column of cells, then it is copied here).
    blocks = blocks.transpose(0, 2, 1, 3).reshape(-1, cell * cell)
    if np.may_share_memory(blocks, luma):
        blocks = blocks.copy()
    mean = blocks.mean(axis=1)
    keep = (mean > 12) & (mean < 243)
    if keep.sum() < 8:
        return np.zeros(2)
    blocks -= mean[:, None]
    axis = (np.arange(cell) - (cell - 1) / 2.0).astype(np.float32)
    # The centred axes are orthogonal to the constant and to each other: the plane's
    # slopes are plain projections (one matrix product for both), and their share comes
    # off the variance. Every cell is computed and the clipped ones dropped after: a
    # few wasted rows cost less than copying the kept ones.
    design = np.stack([np.repeat(axis, cell), np.tile(axis, cell)], axis=1)
    slopes = (blocks @ design)[keep] / float(cell * (axis**2).sum())
    variance = (np.einsum("ij,ij->i", blocks, blocks)[keep] / (cell * cell)
                - (slopes**2).sum(axis=1) * float((axis**2).mean()))
    # Three fitted parameters of cell*cell values: the unbiased residual variance.
    variance *= cell * cell / (cell * cell - 3.0)
    std = np.sqrt(np.clip(variance, 0.0, None))
    return np.percentile(std, (5, 20))
