"""Synthesis: apply each degradation with a known parameter, in physical order.

`degrade(image, spec, seed)` is the one place that knows how a degradation is made;
`train/` builds its data with it and the benchmark degrades real photos with it.

Physical order, whatever the order of the spec's keys: optics (`blur`), sampling
(`low_resolution`), sensor (`noise`), storage (`jpeg_artifacts`).

Parameters (the bands of DESIGN.md are stated in these units):

- `blur`: `{"kind": "gaussian" | "defocus" | "motion", "sigma": px}`. `sigma` is the
  Gaussian sigma of the contract. Defocus and motion are given the extent whose edge
  has the same maximum slope as the Gaussian's (acutance equivalence, the quantity
  sharpness is judged by): a defocus disk of radius `R = 2*sqrt(2*pi)/pi * sigma`
  (about 1.60 sigma) and a motion line of length `L = sqrt(2*pi) * sigma` (about
  2.51 sigma), at `angle` degrees (drawn from the seed when absent).
- `noise`: `{"kind": "gaussian" | "poisson_gaussian", "sigma": 0-255}`, independent in
  each RGB channel. For `poisson_gaussian` the variance grows with the signal,
  `var(I) = sigma**2 * (0.25 + 0.75 * I / 128)`, so `sigma` is the noise at mid-grey.
- `low_resolution`: `{"factor": f, "interpolation": "bicubic" | "bilinear" |
  "nearest" | "lanczos"}`: resized down by `f` and back up to the original size with
  that interpolation (antialiased on the way down, except `nearest`).
- `jpeg_artifacts`: `{"quality": q}`: IJG quality 1-100, Pillow's encoder, 4:2:0.
  The output carries the file's tables in `info["inspector_quantization"]`, as a
  loaded JPEG file does.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image
from scipy import ndimage

from inspector.taxonomy import DEGRADATION_TYPES, SEVERITIES, check_severity, check_type, parameter_range

PHYSICAL_ORDER: tuple[str, ...] = ("blur", "low_resolution", "noise", "jpeg_artifacts")
BLUR_KINDS: tuple[str, ...] = ("gaussian", "defocus", "motion")
NOISE_KINDS: tuple[str, ...] = ("gaussian", "poisson_gaussian")
INTERPOLATIONS: dict[str, int] = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
# Like extent (see the module docstring): kernels with the standard deviation of a Gaussian sigma.
DEFOCUS_RADIUS_PER_SIGMA = 2.0
MOTION_LENGTH_PER_SIGMA = math.sqrt(12.0)
# Share of the noise variance at mid-grey that does not depend on the signal (read noise).
POISSON_READ_SHARE = 0.25
# Pairs where one degradation hides the other; random specs never combine them.
EXCLUSIVE_PAIRS: tuple[frozenset[str], ...] = (frozenset({"blur", "low_resolution"}),)
# Fraction of the log-width of a band kept clear at each border when sampling a parameter.
BAND_MARGIN = 0.1
# Sub-threshold ("none") amounts applied to some clean labels, so "none" is not "untouched".
NONE_RANGES: dict[str, tuple[float, float]] = {
    "blur": (0.3, 0.7),
    "noise": (1.0, 3.0),
    "low_resolution": (1.15, 1.35),
    "jpeg_artifacts": (65.0, 95.0),
}
NONE_APPLY_PROBABILITY: dict[str, float] = {"blur": 0.2, "noise": 0.2, "low_resolution": 0.15, "jpeg_artifacts": 0.4}


def degrade(image: Image.Image, spec: dict, seed: int) -> Image.Image:
    """Apply the degradations of `spec` to `image` in physical order; same size, RGB.

    >>> img = Image.new("RGB", (64, 48), (120, 130, 140))
    >>> degrade(img, {"jpeg_artifacts": {"quality": 20}, "noise": {"sigma": 10}}, seed=0).size
    (64, 48)
    """
    for kind in spec:
        check_type(kind)
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    quantization = None
    for kind in PHYSICAL_ORDER:
        if kind not in spec or spec[kind] is None:
            continue
        params = dict(spec[kind])
        if kind == "blur":
            pixels = apply_blur(pixels, rng=rng, **params)
        elif kind == "low_resolution":
            pixels = apply_low_resolution(pixels, **params)
        elif kind == "noise":
            pixels = apply_noise(pixels, rng=rng, **params)
        else:
            pixels, quantization = apply_jpeg(pixels, **params)
    out = Image.fromarray(to_uint8(pixels), "RGB")
    if quantization is not None:
        out.info["inspector_quantization"] = quantization
    return out


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def apply_blur(pixels: np.ndarray, *, sigma: float, kind: str = "gaussian", angle: float | None = None,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """Blur an HxWx3 float array; `sigma` in px (see the module docstring for defocus/motion)."""
    if sigma < 0:
        raise ValueError(f"blur sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return pixels
    if kind == "gaussian":
        return ndimage.gaussian_filter(pixels, sigma=(sigma, sigma, 0), mode="reflect")
    if kind == "defocus":
        kernel = disk_kernel(DEFOCUS_RADIUS_PER_SIGMA * sigma)
    elif kind == "motion":
        if angle is None:
            angle = float((rng or np.random.default_rng()).uniform(0.0, 180.0))
        kernel = motion_kernel(MOTION_LENGTH_PER_SIGMA * sigma, angle)
    else:
        raise ValueError(f"unknown blur kind {kind!r}; expected one of {', '.join(BLUR_KINDS)}")
    return convolve_reflect(pixels, kernel)


def disk_kernel(radius: float, supersample: int = 8) -> np.ndarray:
    """Uniform disk (a defocused lens), area-sampled so small radii stay accurate."""
    half = int(math.ceil(radius + 0.5))
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    grid = np.arange(-half, half + 1)
    fine = (grid[:, None] + offsets[None, :]).ravel()
    inside = (fine[:, None] ** 2 + fine[None, :] ** 2) <= radius**2
    n = 2 * half + 1
    kernel = inside.reshape(n, supersample, n, supersample).mean(axis=(1, 3))
    return kernel / kernel.sum()


def motion_kernel(length: float, angle_deg: float, samples_per_px: int = 16) -> np.ndarray:
    """Uniform line of `length` px at `angle_deg` (camera shake at constant speed), bilinear-splatted."""
    half = int(math.ceil(length / 2 + 1))
    n = 2 * half + 1
    count = max(2, int(math.ceil(length * samples_per_px)))
    t = (np.arange(count) + 0.5) / count - 0.5
    theta = math.radians(angle_deg)
    xs = half + t * length * math.cos(theta)
    ys = half - t * length * math.sin(theta)
    kernel = np.zeros((n, n), dtype=np.float64)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dy, dx, w in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(kernel, (y0 + dy, x0 + dx), w)
    return kernel / kernel.sum()


def convolve_reflect(pixels: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    # Imported here: scipy.signal takes most of a second to import, which every process that
    # only measures (a batch worker, the CLI's analyze, the app) would pay for synthesis it never runs.
    from scipy import signal

    pad_y, pad_x = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(pixels, ((pad_y, pad_y), (pad_x, pad_x), (0, 0)), mode="reflect")
    out = signal.fftconvolve(padded, kernel[:, :, None].astype(np.float32), mode="valid", axes=(0, 1))
    return out.astype(np.float32)


def apply_low_resolution(pixels: np.ndarray, *, factor: float, interpolation: str = "bicubic") -> np.ndarray:
    """Resize down by `factor` and back up to the original size."""
    if factor < 1:
        raise ValueError(f"low_resolution factor must be >= 1, got {factor}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; expected one of {', '.join(INTERPOLATIONS)}")
    if factor == 1:
        return pixels
    height, width = pixels.shape[:2]
    small = (max(2, round(width / factor)), max(2, round(height / factor)))
    method = INTERPOLATIONS[interpolation]
    out = np.empty_like(pixels)
    for c in range(pixels.shape[2]):
        # Mode "F" keeps full precision through both resizes.
        channel = Image.fromarray(np.ascontiguousarray(pixels[:, :, c]), "F")
        out[:, :, c] = np.asarray(channel.resize(small, method).resize((width, height), method))
    return out


def apply_noise(pixels: np.ndarray, *, sigma: float, kind: str = "gaussian",
                rng: np.random.Generator | None = None) -> np.ndarray:
    """Add sensor-like noise independently to each channel; clipped to 0-255 like a real sensor."""
    if sigma < 0:
        raise ValueError(f"noise sigma must be >= 0, got {sigma}")
    rng = rng or np.random.default_rng()
    if kind == "gaussian":
        std = np.float32(sigma)
    elif kind == "poisson_gaussian":
        signal_level = np.clip(pixels, 0.0, 255.0)
        std = sigma * np.sqrt(POISSON_READ_SHARE + (1 - POISSON_READ_SHARE) * signal_level / 128.0)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {', '.join(NOISE_KINDS)}")
    noisy = pixels + rng.standard_normal(pixels.shape, dtype=np.float32) * std
    return np.clip(noisy, 0.0, 255.0)


def apply_jpeg(pixels: np.ndarray, *, quality: float) -> tuple[np.ndarray, dict]:
    """Encode with Pillow (IJG tables) at `quality` and decode; returns pixels and the tables."""
    q = int(round(quality))
    if not 1 <= q <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(pixels), "RGB").save(buffer, format="JPEG", quality=q)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        quantization = {k: list(v) for k, v in decoded.quantization.items()}
        out = np.asarray(decoded.convert("RGB"), dtype=np.float32)
    return out, quantization


# --- random specs with known labels -------------------------------------------------

def sample_spec(rng: np.random.Generator, types: list[str] | None = None,
                severities: dict[str, str] | None = None) -> tuple[dict, dict[str, str]]:
    """Draw a spec with known parameters and its labels (every type -> severity word).

    - `severities` given: exactly those words (types not named are `none`).
    - `types` given: those types present at a random severity, the others `none`.
    - neither: 0-3 types at random (15 % clean), never two of an `EXCLUSIVE_PAIRS` pair.

    Parameters are drawn log-uniformly inside the band of the word, `BAND_MARGIN` clear
    of its borders, so labels are unambiguous. Some `none` labels still get a
    sub-threshold amount (`NONE_RANGES`: a JPEG at quality 65-95 is not an artifact).
    Where a random draw puts noise under a JPEG that would quantize it away
    (`noise_survives_jpeg`), the quality is redrawn higher inside its band, or the JPEG
    is dropped (`_keep_noise_visible`); explicit `severities` are honoured as given.
    """
    if severities is not None:
        labels = {kind: "none" for kind in DEGRADATION_TYPES}
        for kind, word in severities.items():
            labels[check_type(kind)] = check_severity(word)
        explicit = True
    else:
        if types is None:
            types = _draw_types(rng)
        labels = {kind: "none" for kind in DEGRADATION_TYPES}
        for kind in types:
            labels[check_type(kind)] = str(rng.choice(SEVERITIES[1:]))
        explicit = False
    spec: dict = {}
    for kind in DEGRADATION_TYPES:
        word = labels[kind]
        if word == "none":
            if rng.random() < NONE_APPLY_PROBABILITY[kind]:
                low, high = NONE_RANGES[kind]
                value = float(rng.uniform(low, high))
                spec[kind] = _params(kind, round(value) if kind == "jpeg_artifacts" else round(value, 3), rng)
            continue
        spec[kind] = _params(kind, _draw_in_band(kind, word, rng), rng)
    if not explicit:
        _keep_noise_visible(spec, labels, rng)
    return spec, labels


def _draw_types(rng: np.random.Generator) -> list[str]:
    count = int(rng.choice([0, 1, 2, 3], p=[0.15, 0.45, 0.3, 0.1]))
    while True:
        chosen = list(rng.choice(DEGRADATION_TYPES, size=count, replace=False))
        if not any(pair <= set(chosen) for pair in EXCLUSIVE_PAIRS):
            return [str(kind) for kind in chosen]


def _draw_in_band(kind: str, word: str, rng: np.random.Generator) -> float:
    low, high = parameter_range(kind, word)
    log_low, log_high = math.log(low), math.log(high)
    margin = BAND_MARGIN * (log_high - log_low)
    value = math.exp(rng.uniform(log_low + margin, log_high - margin))
    return float(round(value)) if kind == "jpeg_artifacts" else round(value, 3)


def _params(kind: str, value: float, rng: np.random.Generator) -> dict:
    if kind == "blur":
        blur_kind = str(rng.choice(BLUR_KINDS, p=[0.4, 0.3, 0.3]))
        params = {"kind": blur_kind, "sigma": value}
        if blur_kind == "motion":
            params["angle"] = round(float(rng.uniform(0.0, 180.0)), 1)
        return params
    if kind == "noise":
        return {"kind": str(rng.choice(NOISE_KINDS, p=[0.6, 0.4])), "sigma": value}
    if kind == "low_resolution":
        return {"factor": value, "interpolation": str(rng.choice(list(INTERPOLATIONS), p=[0.4, 0.25, 0.15, 0.2]))}
    return {"quality": int(round(value))}


def jpeg_ac_step(quality: float) -> float:
    """Luminance quantization step of the first AC coefficients (standard table entry 11-12)."""
    q = min(max(int(round(quality)), 1), 100)
    scale = 5000 / q if q < 50 else 200 - 2 * q
    return max(1.0, math.floor((11.5 * scale + 50) / 100))


def noise_survives_jpeg(sigma: float, quality: float) -> bool:
    """Whether noise of `sigma` (per channel) is still visible after a JPEG at `quality`.

    The luminance part of the noise (about 2/3 of sigma) survives where the first AC
    steps are at most about twice its size; beyond that the encoder quantizes it away.
    """
    return jpeg_ac_step(quality) <= 2.0 * 0.67 * sigma


def _keep_noise_visible(spec: dict, labels: dict[str, str], rng: np.random.Generator) -> None:
    """Redraw a JPEG that would quantize the noise away, inside its band; else drop it."""
    if labels["noise"] == "none" or "jpeg_artifacts" not in spec:
        return
    sigma = spec["noise"]["sigma"]
    if noise_survives_jpeg(sigma, spec["jpeg_artifacts"]["quality"]):
        return
    visible = [q for q in range(1, 101) if noise_survives_jpeg(sigma, q)]
    low, high = parameter_range("jpeg_artifacts", labels["jpeg_artifacts"])
    if labels["jpeg_artifacts"] == "none":
        low, high = NONE_RANGES["jpeg_artifacts"]
    else:
        margin = BAND_MARGIN * (high - low)
        low, high = low + margin, high - margin
    choices = [q for q in visible if low <= q <= high]
    if choices:
        spec["jpeg_artifacts"]["quality"] = int(rng.choice(choices))
    else:
        # No quality of that word leaves the noise visible: keep the labels honest.
        spec.pop("jpeg_artifacts")
        labels["jpeg_artifacts"] = "none"
