"""Low resolution: the factor by which an image was made small and then scaled back up.

Method (resampling detection, after Popescu & Farid 2005 and Kirchner 2008)
- An image upscaled by f is an interpolation of a grid f px apart: how each output
  pixel mixes its neighbours repeats every f px. The first and second differences of
  each column (and of each row) therefore carry a periodic pattern at frequency 1/f,
  folded to 1 - 1/f for f < 2, while an image taken at its size has none. The pattern is
  searched in the cube-root mean cube of the differences along each column (an L3 mean):
  the interpolation leaves its mark in how large the large differences are, which the
  cube weighs above the small ones that noise and JPEG add (on the calibration photos,
  `python benchmarks/resampling_detection.py`: more upscalings found than with the mean
  absolute difference, at no more false patterns). The pattern must be there along both
  axes at the same frequency (scaling is done on both), and strong against the profile's
  own spectrum.
- The fold leaves two candidates, 1/nu and 1/(1-nu). An upscaled image has lost all
  detail above 1/(2f) cycles/px, so the spectrum of the row differences decides: a
  cliff between the two candidates' cut-offs means the larger factor. Nearest-neighbour
  upscaling keeps a flat spectrum but duplicates pixels: the share of near-zero
  columns in the difference profile (1 - 1/f) decides instead.
- JPEG's 8-px grid makes the same kind of pattern at k/8 cycles/px; where a JPEG is
  measured, those frequencies are not searched.
- A small image that is sharp has no pattern: it is not low-resolution whatever its
  size (the contract's parameter is the lost factor, not the pixel count).

Limits: an upscaling followed by strong noise or heavy JPEG can hide the pattern; a
factor whose pattern falls on the JPEG grid (4, 8, 1.33, 1.6 or 2.67 with a JPEG) is
then not seen; an image downscaled again after upscaling, or rotated, loses the
pattern. A soft image without the pattern is reported by the blur estimator instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from inspector.evidence.shared import Shared, shared_for

# Frequencies searched, cycles/px: factors from 1.12 to about 9.
BAND = (0.105, 0.5)
# Joint (both axes) peak height over its local background to call a pattern, in the L3
# profiles. MEAN_MIN_STRENGTH in the mean absolute ones (the detector up to 2026-12-03),
# where it let through the same share of false patterns on the calibration photos as 3.2
# does in these.
MIN_STRENGTH = 3.4
MEAN_MIN_STRENGTH = 4.0
# Half-width around k/8 cycles/px left out when a JPEG is measured.
JPEG_GUARD = 0.01
# Rows (and columns) used for the spectrum that tells the two candidates apart.
SPECTRUM_LINES = 96


@dataclass(frozen=True)
class ResolutionEstimate:
    factor: float  # 1.0 where no upscaling pattern is found
    confidence: float
    strength: float
    frequency: float


# Lines averaged into a profile: the pattern is the same on every line, so a regular
# subset is as good as all of them and keeps the cost flat for large images.
PROFILE_LINES = 256


def difference_profiles(luma: np.ndarray, axis: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per position along `axis`: the mean |first| and |second| differences, and the same
    differences' L3 means ((mean |d|^3)^(1/3)), from one pass."""
    lines = luma if axis == 1 else luma.T
    step = max(1, lines.shape[0] // PROFILE_LINES)
    lines = np.ascontiguousarray(lines[::step])
    first = lines[:, 1:] - lines[:, :-1]
    second = first[:, 1:] - first[:, :-1]
    means, cubic = [], []
    for differences in (first, second):
        # abs in place: the same values without more temporaries.
        size = np.abs(differences, out=differences)
        means.append(size.mean(axis=0))
        # The sum of cubes per position in one pass, without the temporaries of size**3.
        cubic.append(np.cbrt(np.einsum("ij,ij,ij->j", size, size, size) / size.shape[0]))
    return means, cubic


def profile_spectrum(profile: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude spectrum of a profile as a ratio to its local background."""
    centred = profile - profile.mean()
    spectrum = np.abs(np.fft.rfft(centred * np.hanning(centred.size), n=size))
    frequency = np.fft.rfftfreq(size)
    # A periodic pattern is a narrow peak; content makes a smooth, falling spectrum. So
    # each frequency is judged against its neighbourhood (+-0.03 cycles/px), in robust units.
    window = max(5, int(0.03 * size)) | 1
    smooth = ndimage.median_filter(spectrum, size=window, mode="reflect")
    # The background at nu is the higher of the levels a little below and above it, so a
    # spectrum that merely falls (soft content) never stands above its background.
    shift = int(0.025 * size)
    background = np.maximum(np.roll(smooth, shift), np.roll(smooth, -shift))
    in_band = (frequency >= BAND[0]) & (frequency <= BAND[1])
    floor = 0.05 * np.median(spectrum[in_band]) + 1e-9
    return frequency, spectrum / (background + floor)


def periodic_peak(luma: np.ndarray, jpeg_present: bool, shared: Shared | None = None,
                  min_strength: float = MIN_STRENGTH, mean_profiles: bool = False) -> tuple[float, float]:
    """(frequency, strength) of the strongest pattern present along both axes.

    `mean_profiles` searches the mean absolute differences instead of their L3 means (the
    detector before, with MEAN_MIN_STRENGTH as `min_strength`: benchmarks/resampling_detection.py)."""
    shared = shared_for(luma, shared)
    size = 4096
    axis_scores = []
    for axis in (1, 0):
        scores = None
        for profile in shared.profiles(axis) if mean_profiles else shared.pattern_profiles(axis):
            frequency, score = profile_spectrum(profile, size)
            scores = score if scores is None else np.maximum(scores, score)
        # The two axes have different lengths, so their peaks may sit a bin or two apart.
        width = max(3, int(2 * size / max(8, luma.shape[1 - axis])))
        axis_scores.append(ndimage.maximum_filter1d(scores, width))
    joint = np.minimum(axis_scores[0], axis_scores[1])
    searched = (frequency >= BAND[0]) & (frequency <= BAND[1])
    if jpeg_present:
        searched &= np.abs(frequency * 8 - np.round(frequency * 8)) > JPEG_GUARD * 8
    joint = np.where(searched, joint, -np.inf)
    best = int(np.argmax(joint))
    nu, strength = float(frequency[best]), float(joint[best])
    # The strongest line may be a harmonic (2/f, 3/f) of the pattern: prefer a
    # fundamental that is itself a clear line.
    # A harmonic may also come folded (k/f > 1/2 shows at 1 - k/f).
    for below in sorted({nu / 3, nu / 2, (1 - nu) / 3, (1 - nu) / 2}):
        if below >= BAND[0] and below < nu - 0.01:
            near = np.abs(frequency - below) <= 2.0 / size
            if np.any(near) and joint[near].max() >= max(min_strength, 0.5 * strength):
                return below, strength
    return nu, strength


def line_powers(luma: np.ndarray, length: int = 512) -> tuple[np.ndarray, list[tuple[np.ndarray, float]]]:
    """Frequencies, and per axis (rows, then columns) the mean power spectrum of the first
    differences with its Hann window's energy: `row_spectrum` before the noise comes off.

    A central stretch of `length` px of SPECTRUM_LINES rows (and columns) is enough.
    """
    frequency = np.fft.rfftfreq(length)
    per_axis = []
    for lines in (luma, luma.T):
        n = min(length, lines.shape[1] - 1)
        start = (lines.shape[1] - 1 - n) // 2
        step = max(1, lines.shape[0] // SPECTRUM_LINES)
        # Only the central stretch is differenced (the same values as differencing the
        # whole line and cutting the stretch out).
        stretch = lines[::step, start: start + n + 1]
        diffs = stretch[:, 1:] - stretch[:, :-1]
        diffs = diffs - diffs.mean(axis=1, keepdims=True)
        window = np.hanning(n)
        power = (np.abs(np.fft.rfft(diffs * window, n=length, axis=1)) ** 2).mean(axis=0)
        per_axis.append((power, (window**2).sum()))
    return frequency, per_axis


def row_spectrum(luma: np.ndarray, noise_sigma: float = 0.0, length: int = 512,
                 shared: Shared | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean power spectrum of the first differences along rows and columns, noise removed.

    The spectra (`line_powers`) are computed once per image (`shared`); the expected
    spectrum of white noise of `noise_sigma` is subtracted from each axis's.
    """
    frequency, per_axis = shared_for(luma, shared).line_powers(length)
    total = 0.0
    for power, window_energy in per_axis:
        noise = window_energy * 2.0 * noise_sigma**2 * (1.0 - np.cos(2 * np.pi * frequency))
        total = total + np.maximum(power - noise, 1e-3 * power)
    return frequency, total


def band_power(frequency, power, low, high) -> float:
    chosen = (frequency >= low) & (frequency <= high)
    return float(power[chosen].mean()) if chosen.any() else float("nan")


def duplicate_share(luma: np.ndarray, shared: Shared | None = None) -> float:
    """Share of columns/rows whose difference to the next is far below the typical one."""
    shared = shared_for(luma, shared)
    shares = []
    for axis in (1, 0):
        profile = shared.profiles(axis)[0]
        level = np.percentile(profile, 90)
        shares.append(float(np.mean(profile < 0.35 * level)) if level > 0 else 0.0)
    return float(np.mean(shares))


# Decades the difference spectrum falls from the pass band to just above the larger
# factor's cut-off when that factor is true (calibration photos: 0.9-2.6 against
# -0.6-0.9 when the smaller one is); and the duplicate share nearest-neighbour
# upscaling by f >= 2.5 leaves (0.6-0.9, against 0.2-0.55 for f < 1.7).
FALL_FOR_LARGER = 0.9
DUPLICATES_FOR_LARGER = 0.58


def passband_fall(luma: np.ndarray, nu: float, noise_sigma: float = 0.0, shared: Shared | None = None) -> float:
    """Decades from the pass band of 1/nu to the band between the two candidates' cut-offs."""
    big, small = 1.0 / nu, 1.0 / (1.0 - nu)
    cut_big, cut_small = 0.5 / big, 0.5 / small
    frequency, power = row_spectrum(luma, noise_sigma, shared=shared)
    passband = band_power(frequency, power, 0.03, 0.8 * cut_big)
    between = band_power(frequency, power, 1.15 * cut_big, max(0.85 * cut_small, 1.15 * cut_big + 0.01))
    if not (np.isfinite(passband) and np.isfinite(between)) or between <= 0:
        return 0.0
    return float(np.log10(passband / between))


def choose_factor(luma: np.ndarray, nu: float, noise_sigma: float = 0.0, shared: Shared | None = None) -> float:
    """The factor behind a pattern at `nu`: 1/nu (>= 2) or 1/(1-nu) (< 2)."""
    big, small = 1.0 / nu, 1.0 / (1.0 - nu)
    if abs(big - small) < 0.05:
        return big
    shared = shared_for(luma, shared)
    if duplicate_share(luma, shared) > DUPLICATES_FOR_LARGER:
        return big
    return big if passband_fall(luma, nu, noise_sigma, shared) > FALL_FOR_LARGER else small


def estimate_resolution(luma: np.ndarray, jpeg_present: bool = False, noise_sigma: float = 0.0,
                        shared: Shared | None = None) -> ResolutionEstimate:
    """The upscaling factor (1.0: none found); `shared`: this image's shared intermediates."""
    if min(luma.shape) < 32:
        return ResolutionEstimate(1.0, 0.2, 0.0, 0.0)
    shared = shared_for(luma, shared)
    nu, strength = periodic_peak(luma, jpeg_present, shared)
    if strength < MIN_STRENGTH:
        confidence = float(np.clip(1.1 - 0.2 * max(strength, 0.0), 0.5, 0.95))
        return ResolutionEstimate(1.0, confidence, strength, nu)
    factor = choose_factor(luma, nu, noise_sigma, shared)
    confidence = float(np.clip(0.5 + 0.15 * (strength - MIN_STRENGTH), 0.5, 0.95))
    return ResolutionEstimate(factor, confidence, strength, nu)
