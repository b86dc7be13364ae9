"""More kinds of each degradation for the learned calibration's training (train/calibrate_evidence.py).

`inspector.evidence.synthesis` makes one implementation of each degradation (scipy
blurs, Pillow resizes in float, white noise, Pillow 4:2:0 JPEG with its tables). Photos
in the wild were made by many: a calibration that saw only one learns its quirks (the
exact shape of Pillow's bicubic, the absence of aliasing, noise that is never
correlated). `diverse_degrade` applies the same spec with other resamplers, blurs,
noise models and encoders, so the trees learn what is common to all of them:

- blur: `cv2.GaussianBlur`, Pillow's `GaussianBlur` (a box approximation), or the
  synthesis (Gaussian, disk, motion line), sigma as drawn;
- low resolution: `cv2.resize` down (area, linear without antialiasing, cubic) and up
  (cubic, linear, Lanczos, nearest), or Pillow on 8-bit pixels (box, bilinear, bicubic,
  Lanczos, Hamming down; bicubic, bilinear, Lanczos, Hamming, nearest up); the factor is
  the width ratio actually used;
- noise: white Gaussian or Poisson-Gaussian (the synthesis), photon (Poisson) noise, or
  noise correlated between neighbours and channels (white noise blurred by 0.4-1 px and
  mixed across channels, as a camera's interpolation and sharpening leave it), scaled to
  the drawn per-channel sigma; the demosaicing of a Bayer mosaic that the benchmark's
  "other" split uses is NOT made here;
- JPEG: Pillow at 4:2:0, 4:2:2 or 4:4:4, or `cv2.imencode`, handed over with its tables
  or as pixels only (half each).

The benchmark's "other" split (benchmarks/other_degradations.py) uses some of the same
library calls (cv2.resize with area/linear down, Pillow's box down and Hamming up,
cv2.GaussianBlur, Pillow's GaussianBlur, cv2.imencode, Poisson photons), so with this
training that split measures other photos and parameters, but less fully other
implementations. OpenCV is imported here only (the train extras install it).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from inspector.evidence.synthesis import apply_blur, apply_low_resolution, apply_noise, to_uint8

# Down- and up-sampling choices: (library, method name).
CV2_DOWN = ("INTER_AREA", "INTER_LINEAR", "INTER_CUBIC")
CV2_UP = ("INTER_CUBIC", "INTER_LINEAR", "INTER_LANCZOS4", "INTER_NEAREST")
PIL_DOWN = ("BOX", "BILINEAR", "BICUBIC", "LANCZOS", "HAMMING")
PIL_UP = ("BICUBIC", "BILINEAR", "LANCZOS", "HAMMING", "NEAREST")


def diverse_degrade(crop: Image.Image, spec: dict, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """Apply `spec` (from `sample_spec`) in physical order with a random implementation per type.

    Returns the image and the spec as applied (the low-resolution factor actually used).
    """
    import cv2

    pixels = np.asarray(crop.convert("RGB"), dtype=np.float32)
    applied = {kind: dict(params) for kind, params in spec.items()}
    tables = None
    if "blur" in spec:
        pixels = diverse_blur(pixels, spec["blur"], rng, cv2)
    if "low_resolution" in spec:
        pixels, applied["low_resolution"]["factor"] = diverse_resize(pixels, spec["low_resolution"], rng, cv2)
    if "noise" in spec:
        pixels, applied["noise"]["kind"] = diverse_noise(pixels, spec["noise"], rng)
    if "jpeg_artifacts" in spec:
        pixels, tables = diverse_jpeg(pixels, spec["jpeg_artifacts"]["quality"], rng, cv2)
    out = Image.fromarray(to_uint8(pixels), "RGB")
    if tables is not None:
        out.info["inspector_quantization"] = tables
    return out, applied


def diverse_blur(pixels: np.ndarray, params: dict, rng: np.random.Generator, cv2) -> np.ndarray:
    choice = int(rng.integers(0, 3))
    if params.get("kind", "gaussian") != "gaussian" or choice == 0:
        return apply_blur(pixels, rng=rng, **params)
    sigma = float(params["sigma"])
    if choice == 1:
        return cv2.GaussianBlur(pixels, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)
    return np.asarray(Image.fromarray(to_uint8(pixels)).filter(ImageFilter.GaussianBlur(sigma)), dtype=np.float32)


def diverse_resize(pixels: np.ndarray, params: dict, rng: np.random.Generator, cv2) -> tuple[np.ndarray, float]:
    factor = float(params["factor"])
    height, width = pixels.shape[:2]
    small = (max(2, round(width / factor)), max(2, round(height / factor)))
    choice = int(rng.integers(0, 3))
    if choice == 0:
        return apply_low_resolution(pixels, **params), factor
    if choice == 1:
        down = getattr(cv2, CV2_DOWN[int(rng.integers(0, len(CV2_DOWN)))])
        up = getattr(cv2, CV2_UP[int(rng.integers(0, len(CV2_UP)))])
        source = to_uint8(pixels)
        out = cv2.resize(cv2.resize(source, small, interpolation=down), (width, height), interpolation=up)
    else:
        down = getattr(Image.Resampling, PIL_DOWN[int(rng.integers(0, len(PIL_DOWN)))])
        up = getattr(Image.Resampling, PIL_UP[int(rng.integers(0, len(PIL_UP)))])
        out = np.asarray(Image.fromarray(to_uint8(pixels)).resize(small, down).resize((width, height), up))
    return np.asarray(out, dtype=np.float32), width / small[0]


def diverse_noise(pixels: np.ndarray, params: dict, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Noisy pixels and the kind made (the synthesis' kind, "photon" or "correlated")."""
    choice = int(rng.integers(0, 3))
    sigma = float(params["sigma"])
    if choice == 0:
        return apply_noise(pixels, rng=rng, **params), params.get("kind", "gaussian")
    if choice == 1:
        # Photon counting: variance gain * level, sigma^2 at mid-grey.
        gain = sigma**2 / 128.0
        return gain * rng.poisson(np.maximum(pixels, 0) / gain).astype(np.float32), "photon"
    from scipy import ndimage

    white = rng.standard_normal(pixels.shape).astype(np.float32)
    field = ndimage.gaussian_filter(white, (rng.uniform(0.4, 1.0),) * 2 + (0,))
    mixed = rng.uniform(0.0, 0.7)
    field = (1 - mixed) * field + mixed * field.mean(axis=2, keepdims=True)
    field /= field.std(axis=(0, 1), keepdims=True) + 1e-6
    if params.get("kind") == "poisson_gaussian":
        field *= np.sqrt(0.25 + 0.75 * np.clip(pixels, 0, 255) / 128.0)
    return np.clip(pixels + sigma * field, 0, 255), "correlated"


def diverse_jpeg(pixels: np.ndarray, quality: float, rng: np.random.Generator, cv2) -> tuple[np.ndarray, dict | None]:
    q = int(round(quality))
    source = to_uint8(pixels)
    if rng.random() < 0.3:
        _, encoded = cv2.imencode(".jpg", source[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        data = encoded.tobytes()
    else:
        buffer = io.BytesIO()
        Image.fromarray(source).save(buffer, format="JPEG", quality=q, subsampling=int(rng.integers(0, 3)))
        data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as decoded:
        tables = {k: list(v) for k, v in decoded.quantization.items()}
        out = np.asarray(decoded.convert("RGB"), dtype=np.float32)
    return out, tables if rng.random() < 0.5 else None
