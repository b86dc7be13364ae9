"""Degradations made by other implementations than `inspector.evidence.synthesis`.

The benchmark's third split: the same labels and parameters as `sample_spec` draws, in
the contract's bands, but applied by OpenCV, Pillow and albumentations, with kinds the
synthesis never makes (pixelation, ISO-like noise, 4:4:4 and 4:2:2 JPEG, a JPEG decoded
and re-saved without its tables). An estimator tuned or trained on the synthesis alone
is measured here on what it never saw.

Each label is recomputed from what was actually applied (an integer disk radius, the
measured standard deviation of the noise), so it is honest even where an
implementation cannot hit the drawn parameter exactly:

- blur: `cv2.GaussianBlur` or Pillow's `GaussianBlur` (sigma as drawn); a disk of
  integer radius R by `albumentations.Defocus` or `cv2.filter2D` (sigma = R / 2, the
  disk's standard deviation, as the contract's "defocus of like extent"); a motion line
  of length L by `cv2.filter2D` (sigma = L / sqrt(12)).
- low resolution: `cv2.resize` down (INTER_AREA, or INTER_LINEAR without antialiasing)
  and back up (cubic, linear, Lanczos), pixelation (nearest both ways), or
  `albumentations.Downscale`; the factor is the width ratio actually used.
- noise: Gaussian by `cv2.randn`; Poisson photon noise whose variance at mid-grey is
  sigma^2; ISO-like camera noise (signal-dependent noise on a Bayer mosaic, demosaiced
  by OpenCV: correlated between neighbours and channels). The label is the standard
  deviation of (noisy - clean) per channel over the unclipped mid-tones (levels 64-192).
  (albumentations' ISONoise is left out: it adds sparse, one-sided lightness spikes,
  not noise of a standard deviation the contract can state.)
- JPEG: `cv2.imencode` (4:2:0), Pillow at 4:4:4 or 4:2:2, or
  `albumentations.ImageCompression`; half the time the file is handed over with its
  tables (as a JPEG file is), half as decoded pixels (a JPEG re-saved as PNG).
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageFilter

from inspector.taxonomy import DEGRADATION_TYPES, severity_from_parameter

PARAMETER_KEYS = {"blur": "sigma", "noise": "sigma", "low_resolution": "factor", "jpeg_artifacts": "quality"}


def require_libraries():
    """cv2 and albumentations, or a clear message saying how to get them."""
    try:
        import albumentations
        import cv2
    except ImportError as error:
        raise SystemExit(f"the 'other' split needs OpenCV and albumentations ({error}); "
                         "install them with: pip install -r requirements-dev.txt") from error
    return cv2, albumentations


def degrade_other(image: Image.Image, spec: dict, labels: dict, rng: np.random.Generator):
    """Apply `spec` (from `sample_spec`) with other libraries, in physical order.

    Returns (image, applied spec, labels): the labels of the types applied are
    recomputed from the parameters actually applied; the image carries its JPEG
    tables in `info["inspector_quantization"]` when it is handed over as a file.
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    applied, labels = {}, dict(labels)
    quantization = None
    for kind in ("blur", "low_resolution", "noise", "jpeg_artifacts"):
        if kind not in spec:
            continue
        if kind == "blur":
            pixels, params = other_blur(pixels, spec[kind], rng)
        elif kind == "low_resolution":
            pixels, params = other_low_resolution(pixels, spec[kind]["factor"], rng)
        elif kind == "noise":
            pixels, params = other_noise(pixels, spec[kind], rng)
        else:
            pixels, params, quantization = other_jpeg(pixels, spec[kind]["quality"], rng)
        applied[kind] = params
        labels[kind] = severity_from_parameter(kind, params[PARAMETER_KEYS[kind]])
    out = Image.fromarray(pixels, "RGB")
    if quantization is not None:
        out.info["inspector_quantization"] = quantization
    return out, applied, labels


def other_blur(pixels: np.ndarray, params: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    cv2, albumentations = require_libraries()
    sigma = float(params["sigma"])
    if params.get("kind", "gaussian") == "gaussian":
        if rng.random() < 0.5:
            out = cv2.GaussianBlur(pixels, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)
            return out, {"kind": "gaussian", "sigma": sigma, "by": "cv2.GaussianBlur"}
        out = np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(sigma)))
        return out, {"kind": "gaussian", "sigma": sigma, "by": "PIL.ImageFilter.GaussianBlur"}
    if params["kind"] == "defocus":
        radius = max(1, int(round(2.0 * sigma)))
        if rng.random() < 0.5:
            transform = albumentations.Defocus(radius=(radius, radius), alias_blur=(0.1, 0.1), p=1.0)
            transform.set_random_seed(int(rng.integers(0, 2**31)))
            out = transform(image=pixels)["image"]
            by = "albumentations.Defocus"
        else:
            size = 2 * radius + 1
            kernel = np.zeros((size, size), dtype=np.float32)
            cv2.circle(kernel, (radius, radius), radius, 1.0, -1, lineType=cv2.LINE_AA)
            out = cv2.filter2D(pixels, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT_101)
            by = "cv2.circle + cv2.filter2D"
        return out, {"kind": "defocus", "sigma": radius / 2.0, "by": by}
    length = max(2, int(round(math.sqrt(12.0) * sigma)))
    angle = float(params.get("angle", rng.uniform(0, 180)))
    size = length + 3 | 1
    kernel = np.zeros((size, size), dtype=np.float32)
    centre = size // 2
    dx, dy = 0.5 * length * math.cos(math.radians(angle)), -0.5 * length * math.sin(math.radians(angle))
    # cv2.line draws in 1/16-px units with shift=4, so short lines keep their angle.
    scale = 16
    start = (int(round((centre - dx) * scale)), int(round((centre - dy) * scale)))
    end = (int(round((centre + dx) * scale)), int(round((centre + dy) * scale)))
    cv2.line(kernel, start, end, 1.0, 1, lineType=cv2.LINE_AA, shift=4)
    out = cv2.filter2D(pixels, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT_101)
    return out, {"kind": "motion", "sigma": length / math.sqrt(12.0), "angle": angle, "by": "cv2.line + cv2.filter2D"}


def other_low_resolution(pixels: np.ndarray, factor: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    cv2, albumentations = require_libraries()
    height, width = pixels.shape[:2]
    if factor <= 1.0:
        return pixels, {"factor": 1.0, "by": "none"}
    small = (max(2, int(round(width / factor))), max(2, int(round(height / factor))))
    actual = width / small[0]
    choice = int(rng.choice(4, p=[0.4, 0.2, 0.2, 0.2]))
    if choice == 0:
        down = cv2.INTER_AREA if rng.random() < 0.7 else cv2.INTER_LINEAR
        up = [cv2.INTER_CUBIC, cv2.INTER_LINEAR, cv2.INTER_LANCZOS4][int(rng.integers(0, 3))]
        out = cv2.resize(cv2.resize(pixels, small, interpolation=down), (width, height), interpolation=up)
        by = f"cv2.resize down {down}, up {up}"
    elif choice == 1:
        out = cv2.resize(cv2.resize(pixels, small, interpolation=cv2.INTER_NEAREST), (width, height),
                         interpolation=cv2.INTER_NEAREST)
        by = "pixelation (cv2 nearest both ways)"
    elif choice == 2:
        smaller = Image.fromarray(pixels).resize(small, Image.Resampling.BOX)
        out = np.asarray(smaller.resize((width, height), Image.Resampling.HAMMING))
        by = "PIL box down, hamming up"
    else:
        scale = 1.0 / factor
        transform = albumentations.Downscale(
            scale_range=(scale, scale), p=1.0,
            interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_CUBIC})
        out = transform(image=pixels)["image"]
        actual = factor
        by = "albumentations.Downscale (area, cubic)"
    return np.ascontiguousarray(out), {"factor": float(actual), "by": by}


def other_noise(pixels: np.ndarray, params: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    cv2, albumentations = require_libraries()
    sigma = float(params["sigma"])
    clean = pixels.astype(np.float32)
    choice = int(rng.choice(3, p=[0.35, 0.35, 0.3]))
    if choice == 0:
        # One channel: cv2.randn's scalar mean and sigma would fill only the first of three.
        noise = np.zeros((pixels.shape[0], pixels.shape[1] * 3), dtype=np.float32)
        cv2.setRNGSeed(int(rng.integers(0, 2**31)))
        cv2.randn(noise, 0.0, sigma)
        noisy, by = clean + noise.reshape(pixels.shape), "cv2.randn"
    elif choice == 1:
        # Photon counting: variance gain * level, gain chosen so that it is sigma^2 at mid-grey.
        gain = sigma**2 / 128.0
        noisy, by = gain * rng.poisson(np.maximum(clean, 0) / gain).astype(np.float32), "numpy Poisson photons"
    else:
        # The label compares with the clean mosaic demosaiced alike, not with the input.
        noisy, clean = camera_noise(pixels, sigma, rng)
        by = "Poisson-Gaussian on a Bayer mosaic, cv2 demosaic"
    out = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return out, {"kind": by, "sigma": measured_sigma(clean, out), "by": by}


def camera_noise(pixels: np.ndarray, sigma: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """ISO-like noise: signal-dependent noise on a Bayer mosaic, then OpenCV's demosaicing.

    As in a camera, each photosite gets noise of variance a + b * level before the colours
    are interpolated, so the noise comes out correlated between neighbours and channels.
    Demosaicing is linear, so the noise is scaled after a first pass to give `sigma` per
    channel at mid-grey; the clean image is demosaiced the same way and what the photo
    holds is the demosaiced noisy mosaic. Returns (noisy, clean demosaiced).
    """
    cv2, _ = require_libraries()
    clean = pixels.astype(np.float32)
    mosaic = np.empty(pixels.shape[:2], dtype=np.float32)
    # RGGB: R at even rows and even columns, B at odd rows and odd columns.
    mosaic[0::2, 0::2], mosaic[1::2, 1::2] = clean[0::2, 0::2, 0], clean[1::2, 1::2, 2]
    mosaic[0::2, 1::2], mosaic[1::2, 0::2] = clean[0::2, 1::2, 1], clean[1::2, 0::2, 1]
    unit = rng.standard_normal(mosaic.shape).astype(np.float32) * np.sqrt(0.25 + 0.75 * mosaic / 128.0)

    def demosaic(values: np.ndarray) -> np.ndarray:
        # 16-bit with 6 fractional bits keeps the interpolation exact enough; the offset keeps it positive.
        coded = np.clip(np.rint((values + 512.0) * 64.0), 0, 65535).astype(np.uint16)
        return cv2.cvtColor(coded, cv2.COLOR_BayerRG2RGB).astype(np.float32) / 64.0 - 512.0

    base = demosaic(mosaic)
    gain = float((demosaic(mosaic + unit) - base)[(base > 64) & (base < 192)].std() or 1.0)
    return demosaic(mosaic + unit * (sigma / gain)), base


def measured_sigma(clean: np.ndarray, noisy: np.ndarray) -> float:
    """Per-channel standard deviation of the added noise over unclipped mid-tones."""
    difference = noisy.astype(np.float64) - clean
    mid = (clean > 64) & (clean < 192) & (noisy > 0) & (noisy < 255)
    if mid.sum() < 100:
        mid = (noisy > 0) & (noisy < 255)
    return float(difference[mid].std()) if mid.any() else 0.0


def other_jpeg(pixels: np.ndarray, quality: float, rng: np.random.Generator):
    cv2, albumentations = require_libraries()
    q = int(round(quality))
    choice = int(rng.choice(3, p=[0.4, 0.4, 0.2]))
    if choice == 0:
        ok, encoded = cv2.imencode(".jpg", pixels[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        data, by = encoded.tobytes(), "cv2.imencode 4:2:0"
    elif choice == 1:
        subsampling = int(rng.choice([0, 1]))
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=q, subsampling=subsampling)
        data, by = buffer.getvalue(), f"PIL {'4:4:4' if subsampling == 0 else '4:2:2'}"
    else:
        transform = albumentations.ImageCompression(quality_range=(q, q), p=1.0)
        out = transform(image=pixels)["image"]
        # Decoded pixels only: albumentations never hands over a file.
        return np.ascontiguousarray(out), {"quality": q, "by": "albumentations.ImageCompression, pixels"}, None
    with Image.open(io.BytesIO(data)) as decoded:
        tables = {k: list(v) for k, v in decoded.quantization.items()}
        out = np.asarray(decoded.convert("RGB"))
    keep_tables = rng.random() < 0.5
    return out, {"quality": q, "by": by + (", file" if keep_tables else ", pixels")}, tables if keep_tables else None


def clean_labels() -> dict[str, str]:
    return {kind: "none" for kind in DEGRADATION_TYPES}
