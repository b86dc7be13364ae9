"""Pixel conversions of `load_image`: any mode, depth or array layout to 8-bit RGB."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .formats import ImageError

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


# ------------------------------------------------------------------- pixel conversions


def to_rgb(image: Image.Image, label: str) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; returns `image` itself when it already is RGB.

    16-bit and float modes go through numpy because Pillow's `convert` clips them to
    0-255 instead of scaling. Alpha is composited over white, the usual paper colour
    of transparent product shots and logos (black would invent dark edges).
    """
    mode = image.mode
    try:
        if mode.startswith("I;16") or mode in ("I", "F"):
            return to_rgb(Image.fromarray(high_depth_to_uint8(np.asarray(image))), label)
        if mode in _ALPHA_MODES or "transparency" in image.info:
            # Pillow has no La -> RGBA conversion; La -> LA (un-premultiply) first.
            return _over_white((image.convert("LA") if mode == "La" else image).convert("RGBA"))
        return image if mode == "RGB" else image.convert("RGB")
    except MemoryError:
        raise ImageError(f"{label} is too large to convert in the memory available; downscale it first") from None
    except (ValueError, OSError, TypeError) as error:
        raise ImageError(
            f"{label} uses the colour mode {mode}, which cannot be converted to RGB here ({error}); "
            "save it as an RGB or grayscale image"
        ) from None


def _over_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def high_depth_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale Pillow's 16-bit ("I;16"), 32-bit ("I") and float ("F") data to 0-255.

    "I;16" is 16-bit by definition: divide by 257 (65535 -> 255). "I" and "F" do not
    say their range, so it is inferred: "F" within 0-1 is scaled by 255; values
    within 0-255 are kept; "I" within 0-65535 is treated as 16-bit; anything else is
    stretched from its minimum to its maximum.
    """
    if values.dtype.kind == "u" and values.dtype.itemsize == 2:
        return uint16_to_uint8(values)
    is_float = values.dtype.kind == "f"
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if is_float and 0.0 <= low and high <= 1.0:
        return np.round(values * 255.0).astype(np.uint8)
    if 0.0 <= low and high <= 255.0:
        return np.round(values).astype(np.uint8)
    if not is_float and 0.0 <= low and high <= 65535.0:
        return uint16_to_uint8(values.astype(np.uint16))
    return _stretch(values, low, high)


def uint16_to_uint8(values: np.ndarray) -> np.ndarray:
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def check_array_shape(array: np.ndarray, label: str) -> tuple[int, int]:
    """HxW or HxWxC (C = 1, 3, 4); the common channels-first mistake gets its own hint."""
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
        raise ImageError(
            f"{label} has shape {array.shape}, which looks channels-first; "
            "pass it as height x width x channels, e.g. array.transpose(1, 2, 0)"
        )
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4)):
        return int(array.shape[0]), int(array.shape[1])
    raise ImageError(
        f"{label} has shape {array.shape}; pass height x width (grayscale) or "
        "height x width x 1, 3 or 4 channels (gray, RGB, RGBA)"
    )


def array_to_uint8(array: np.ndarray, label: str) -> np.ndarray:
    """uint8 as is, uint16 scaled by 1/257, bool to 0/255, float in [0, 1] times 255.

    Stricter than `high_depth_to_uint8`: an array's caller knows its range, so a
    float array outside [0, 1] is refused rather than guessed at.
    """
    kind = array.dtype.kind
    if array.dtype == np.uint8:
        return array
    if kind == "u" and array.dtype.itemsize == 2:  # any byte order
        return uint16_to_uint8(array)
    if kind == "b":
        return array.astype(np.uint8) * 255
    if kind in "iu":
        low, high = int(array.min()), int(array.max())
        if 0 <= low and high <= 255:
            return array.astype(np.uint8)
        raise ImageError(
            f"{label} is {array.dtype} with values from {low} to {high}; pass uint8 (0-255), "
            "uint16 (0-65535) or float (0-1)"
        )
    if kind == "f":
        if not np.all(np.isfinite(array)):
            raise ImageError(f"{label} holds NaN or infinite values; replace them before inspecting")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ImageError(
                f"{label} is {array.dtype} with values from {low:g} to {high:g}; float images must be "
                "in [0, 1] (divide by 255 if it holds 0-255 values)"
            )
        return np.round(array.astype(np.float64) * 255.0).astype(np.uint8)
    raise ImageError(f"{label} has dtype {array.dtype}; pass uint8, uint16, bool or float values")
