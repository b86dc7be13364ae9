"""Images in: reading and validating user files, and deciding what the model sees.

Two jobs live here because both are about pixels before the model:

1. `load_image` is the edge where untrusted files enter. Whatever arrives (a path,
   bytes, a file object, a PIL image, a numpy array) leaves as an upright 8-bit RGB
   `PIL.Image`, or as an `ImageError` whose message says what is wrong and what to do.
   Cheap checks run before any pixel is decoded: byte size, what the content looks
   like, and the size the header declares (decompression bombs). Decoding itself is
   Pillow's; every decoder failure becomes an `ImageError`.

2. `make_views` decides what the vision-language model looks at. Blur, noise, JPEG
   blocks and pixelation live at native resolution, and the downscale a VLM processor
   would apply erases them. So the model gets one small downscaled global view (the
   composition) plus native-resolution crops (the evidence), all sized in whole
   Qwen2-VL tokens (28x28 px each) so the processor does not resample them again.
   Training and serving call the same function, so they cannot drift apart.

The metadata the rest of the package needs survives in `image.info` (see
`load_image`). Pillow's `convert`/`transpose`/`crop` copy `info`, but `quantization`
is an attribute of `JpegImageFile` only and is lost on the first conversion, which is
why `load_image` copies it into `info`.
"""

from __future__ import annotations

import io
import math
import os
import stat
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow format ids we decode. Keeping the list short keeps rarely fuzzed decoders
# (and the loose header checks of formats like TGA) away from user uploads.
# "JPEG" also opens multi-picture JPEGs (MPO) from phones and cameras.
READ_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
)
SUPPORTED_FORMATS_TEXT = "a JPEG, PNG, WebP, BMP, TIFF or GIF"

# Qwen2-VL: 14 px patches merged 2x2, so one visual token per 28x28 px block; the
# processor refuses sides under 56 px and aspect ratios over 200:1.
QWEN_PATCH = 28
MIN_VIEW_PATCHES = 2
MAX_ASPECT_RATIO = 200
PREVIEW_SIDE = 512  # detail map for crop placement: a few ms, enough to place 56 px crops

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# `info` keys that only made sense before the conversion to RGB.
_STALE_INFO_KEYS = ("transparency",)


class ImageError(ValueError):
    """A file or array that cannot be inspected; the message says why and what to do."""


@dataclass(frozen=True)
class ImageLimits:
    """What `load_image` accepts; the defaults of its keyword arguments.

    Pillow also refuses images over 2 * `PIL.Image.MAX_IMAGE_PIXELS` (about 179 MP)
    on its own, so a `max_pixels` above that has no effect.
    """

    max_pixels: int = 64_000_000  # a 61 MP full-frame camera fits; ~190 MB once RGB
    max_bytes: int = 50 * 1024 * 1024  # a 12 MP JPEG is 3-8 MB; a raw 16-bit 12 MP TIFF (72 MB) needs more
    min_side: int = 8  # fewer pixels than this hold no texture to judge

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_bytes", "min_side"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")


# --------------------------------------------------------------------------- loading


def load_image(
    source: Any,
    *,
    max_pixels: int = ImageLimits.max_pixels,
    max_bytes: int = ImageLimits.max_bytes,
    min_side: int = ImageLimits.min_side,
) -> Image.Image:
    """Read and validate an image; return it upright, as 8-bit RGB.

    `source`: a path (str or `os.PathLike`), `bytes`, a binary file object, a
    `PIL.Image.Image`, or a numpy array (HxW, HxWx1, HxWx3, HxWx4; uint8, uint16,
    bool, or float in [0, 1]).

    The result is loaded (no open file behind it) and a new object (the caller's PIL
    image is never modified). It is rotated upright by its EXIF orientation, is the
    first frame of an animation, has 16-bit data scaled (not clipped) to 8 bit, and
    has transparency composited over white. Its `info` holds, for every source:

    - `inspector_format`: Pillow's format id ("JPEG", "PNG", ...; MPO is reported
      as "JPEG"), None for arrays and for PIL images not read from a file;
    - `inspector_quantization`: the JPEG quantization tables, `{table_id: [64 ints]}`
      as Pillow reads them, None when the source is not a JPEG file;
    - `inspector_source_size`: (width, height) as stored, before EXIF rotation;
    - `inspector_orientation`: the EXIF orientation that was undone (1 = none);
    - `inspector_path`: the path as given (str), None when not read from a path;
    - `inspector_warnings`: what Pillow warned about while reading (e.g. "Corrupt
      EXIF data"), as a list of str; these are not printed.

    A PIL image not read from a file (`format` None) keeps the `inspector_*` keys it
    already carries: `load_image(load_image(x))` equals `load_image(x)`, and the JPEG
    tables that `evidence.degrade` puts in `info` survive.

    Raises `ImageError` (and nothing else) for anything that is not a readable image
    within the limits; see `ImageLimits` for them.
    """
    limits = ImageLimits(max_pixels=max_pixels, max_bytes=max_bytes, min_side=min_side)
    if isinstance(source, Image.Image):
        return _load_pil_image(source, limits)
    if isinstance(source, (str, os.PathLike)):
        return _load_path(Path(source), limits)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _load_bytes(bytes(source), "the uploaded data", limits)
    if isinstance(source, np.ndarray) or hasattr(source, "__array__"):
        return _load_array(source, limits)
    if hasattr(source, "read"):
        return _load_file_object(source, limits)
    raise ImageError(
        f"cannot read an image from a {type(source).__name__}; pass a path, bytes, "
        "a binary file object, a PIL image or a numpy array"
    )


def _load_path(path: Path, limits: ImageLimits) -> Image.Image:
    """Check the file system entry first: a folder, a pipe or /dev/zero must not be read."""
    label = path.name or str(path)
    try:
        entry = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{path} does not exist (no such file); check the path") from None
    except OSError as error:
        raise ImageError(f"{label} cannot be opened ({error.strerror or error}); check its permissions") from None
    if stat.S_ISDIR(entry.st_mode):
        raise ImageError(f"{label} is a folder, not an image; pass the files in it (the CLI walks folders)")
    if not stat.S_ISREG(entry.st_mode):
        raise ImageError(f"{label} is not a regular file (a device, pipe or socket); pass an image file")
    _check_byte_size(entry.st_size, label, limits)
    try:
        with open(path, "rb") as file:
            data = file.read(limits.max_bytes + 1)  # +1: a file that grew is still caught
    except OSError as error:
        raise ImageError(f"{label} cannot be read ({error.strerror or error}); check its permissions") from None
    return _load_bytes(data, label, limits, path=path)


def _load_file_object(file: Any, limits: ImageLimits) -> Image.Image:
    """Read at most max_bytes + 1 bytes, so an endless stream cannot exhaust memory."""
    name = getattr(file, "name", None)
    label = Path(name).name if isinstance(name, str) and name else "the file object"
    try:
        data = file.read(limits.max_bytes + 1)
    except Exception as error:  # noqa: BLE001 - whatever the stream raises, the input is bad
        raise ImageError(f"{label} cannot be read ({error}); pass a readable binary file") from None
    if isinstance(data, str):
        raise ImageError(f"{label} is open in text mode; open it with open(path, 'rb')")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(f"{label} gave {type(data).__name__} instead of bytes; pass a readable binary file")
    return _load_bytes(bytes(data), label, limits)


def _load_bytes(data: bytes, label: str, limits: ImageLimits, path: Path | None = None) -> Image.Image:
    """Refuse what cheap checks can refuse, then decode with Pillow."""
    _check_byte_size(len(data), label, limits)
    with _pillow_warnings() as caught:
        image = _open_header(data, label, limits)
        with image:
            _check_declared_size(image.size, label, limits)
            metadata = _file_metadata(image, path)
            _decode(image, label)
            result = _finish(image, metadata, label)
    result.info["inspector_warnings"] = _warning_texts(caught)
    return result


def _load_pil_image(image: Image.Image, limits: ImageLimits) -> Image.Image:
    """A PIL image may still be lazy (opened, not loaded): check its size before decoding."""
    filename = getattr(image, "filename", "")
    label = Path(filename).name if isinstance(filename, str) and filename else "the image"
    _check_declared_size(image.size, label, limits)
    metadata = _file_metadata(image, None)
    with _pillow_warnings() as caught:
        _decode(image, label)
        result = _finish(image, metadata, label)
    result.info["inspector_warnings"] = _warning_texts(caught)
    if image.format is None:
        # An in-memory image that carries our keys (a load_image result, or the
        # output of evidence.degrade with its JPEG tables) keeps them: its file's
        # facts are in them, and load_image stays idempotent.
        result.info.update({key: value for key, value in image.info.items() if key.startswith("inspector_")})
    return result


def _load_array(array: Any, limits: ImageLimits) -> Image.Image:
    """Arrays carry no format: the dtype says the value range (see `_array_to_uint8`)."""
    label = "the array"
    try:
        array = np.asarray(array)
    except Exception as error:  # noqa: BLE001 - e.g. a CUDA tensor; the input is bad
        raise ImageError(f"cannot turn {type(array).__name__} into a numpy array ({error}); pass a CPU array") from None
    height, width = _check_array_shape(array, label)
    _check_declared_size((width, height), label, limits)
    pixels = _array_to_uint8(array, label)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    image = _to_rgb(Image.fromarray(np.ascontiguousarray(pixels)), label)
    image.info = {
        "inspector_format": None,
        "inspector_quantization": None,
        "inspector_source_size": (width, height),
        "inspector_orientation": 1,
        "inspector_path": None,
        "inspector_warnings": [],
    }
    return image


# ---------------------------------------------------------------- checks before decoding


def _check_byte_size(size: int, label: str, limits: ImageLimits) -> None:
    if size == 0:
        raise ImageError(f"{label} is empty (0 bytes); the upload or copy did not finish, so send the file again")
    if size > limits.max_bytes:
        raise ImageError(
            f"{label} is {_mib(size)}, over the {_mib(limits.max_bytes)} limit; "
            "recompress or downscale it, or raise max_bytes"
        )


def _check_declared_size(size: tuple[int, int], label: str, limits: ImageLimits) -> None:
    """The header's size, read before decoding, is what guards against decompression bombs."""
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{label} declares a size of {width}x{height} pixels; the file is damaged, re-export it")
    if width * height > limits.max_pixels:
        raise ImageError(
            f"{label} declares {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), over the "
            f"limit of {limits.max_pixels / 1e6:g} megapixels (a guard against decompression bombs); "
            "downscale it first, or raise max_pixels"
        )
    if min(width, height) < limits.min_side:
        raise ImageError(
            f"{label} is only {width}x{height} pixels; at least {limits.min_side} px per side are needed "
            "to judge blur, noise or compression, so use a larger original"
        )


def _open_header(data: bytes, label: str, limits: ImageLimits) -> Image.Image:
    """Image.open reads the header only (lazy); all its failures become ImageError."""
    try:
        return Image.open(io.BytesIO(data), formats=READ_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(
            f"{label} declares more pixels than allowed ({error}); our limit is "
            f"{limits.max_pixels / 1e6:g} megapixels, so downscale it first"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(describe_unreadable(data, label)) from None
    except Exception as error:  # noqa: BLE001 - a plugin took the magic bytes, then choked
        kind = sniff_content(data)[0] or "an image"
        raise ImageError(
            f"{label} starts like {kind} but its header is damaged ({error}); re-export or re-download it"
        ) from None


@contextmanager
def _pillow_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record Pillow's warnings instead of printing them; make bomb warnings errors.

    Pillow warns about damaged but readable files ("Corrupt EXIF data", odd ICC or
    text chunks) without naming the file: over a folder of thousands, stderr fills
    with anonymous lines. Recorded, they go to `info["inspector_warnings"]` of the
    image they belong to. Pillow only *warns* about decompression bombs between
    MAX_IMAGE_PIXELS and twice that; here that is an error, hence an ImageError.
    Scoped rather than a global filter, so the rest of the process keeps Pillow's
    behaviour. (`catch_warnings` is not thread-safe before Python 3.14: threads that
    interleave can swap their recorded warnings, or briefly see these filters.)
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield caught


def _warning_texts(caught: list[warnings.WarningMessage]) -> list[str]:
    return list(dict.fromkeys(str(warning.message).strip() for warning in caught))


def _decode(image: Image.Image, label: str) -> None:
    """Decode the pixels; truncated files fail here (LOAD_TRUNCATED_IMAGES stays off)."""
    try:
        image.load()
    except MemoryError:
        raise ImageError(f"{label} is too large to decode in the memory available; downscale it first") from None
    except Exception as error:  # noqa: BLE001 - OSError, SyntaxError, struct.error, EOFError...
        detail = str(error) or type(error).__name__
        if isinstance(error, EOFError) or "truncated" in detail or "unpack requires" in detail:
            raise ImageError(
                f"{label} is truncated: the file ends before the image data does ({detail}); "
                "re-download or re-export it"
            ) from None
        raise ImageError(
            f"{label} is damaged and cannot be decoded ({detail}); re-export it or try another copy"
        ) from None


def _file_metadata(image: Image.Image, path: Path | None) -> dict[str, Any]:
    """What the file says about itself, taken before any conversion drops it."""
    image_format = "JPEG" if image.format == "MPO" else image.format
    tables = getattr(image, "quantization", None) if image_format == "JPEG" else None
    return {
        "inspector_format": image_format,
        "inspector_quantization": {int(k): list(v) for k, v in tables.items()} if tables else None,
        "inspector_source_size": tuple(image.size),
        "inspector_path": str(path) if path is not None else None,
    }


def _finish(image: Image.Image, metadata: dict[str, Any], label: str) -> Image.Image:
    """Upright, RGB, a new object, with the file's info plus ours."""
    orientation = _exif_orientation(image)
    upright = image
    if orientation != 1:
        try:
            upright = ImageOps.exif_transpose(image)
        except Exception:  # noqa: BLE001 - broken EXIF: the pixels are still good, keep them as stored
            orientation = 1
    rgb = _to_rgb(upright, label)
    if rgb is image:
        rgb = image.copy()  # never hand back (or later modify) the caller's object
    info = {key: value for key, value in upright.info.items() if key not in _STALE_INFO_KEYS}
    rgb.info = {**info, **metadata, "inspector_orientation": orientation}
    return rgb


def _exif_orientation(image: Image.Image) -> int:
    """EXIF orientation 1-8; 1 when absent or unreadable (corrupt EXIF is common)."""
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - EXIF parsing fails in every way on damaged files
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


# ------------------------------------------------------------------- pixel conversions


def _to_rgb(image: Image.Image, label: str) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; returns `image` itself when it already is RGB.

    16-bit and float modes go through numpy because Pillow's `convert` clips them to
    0-255 instead of scaling. Alpha is composited over white, the usual paper colour
    of transparent product shots and logos (black would invent dark edges).
    """
    mode = image.mode
    try:
        if mode.startswith("I;16") or mode in ("I", "F"):
            return _to_rgb(Image.fromarray(_high_depth_to_uint8(np.asarray(image))), label)
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


def _high_depth_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale Pillow's 16-bit ("I;16"), 32-bit ("I") and float ("F") data to 0-255.

    "I;16" is 16-bit by definition: divide by 257 (65535 -> 255). "I" and "F" do not
    say their range, so it is inferred: "F" within 0-1 is scaled by 255; values
    within 0-255 are kept; "I" within 0-65535 is treated as 16-bit; anything else is
    stretched from its minimum to its maximum.
    """
    if values.dtype.kind == "u" and values.dtype.itemsize == 2:
        return _uint16_to_uint8(values)
    is_float = values.dtype.kind == "f"
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if is_float and 0.0 <= low and high <= 1.0:
        return np.round(values * 255.0).astype(np.uint8)
    if 0.0 <= low and high <= 255.0:
        return np.round(values).astype(np.uint8)
    if not is_float and 0.0 <= low and high <= 65535.0:
        return _uint16_to_uint8(values.astype(np.uint16))
    return _stretch(values, low, high)


def _uint16_to_uint8(values: np.ndarray) -> np.ndarray:
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _check_array_shape(array: np.ndarray, label: str) -> tuple[int, int]:
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


def _array_to_uint8(array: np.ndarray, label: str) -> np.ndarray:
    """uint8 as is, uint16 scaled by 1/257, bool to 0/255, float in [0, 1] times 255.

    Stricter than `_high_depth_to_uint8`: an array's caller knows its range, so a
    float array outside [0, 1] is refused rather than guessed at.
    """
    kind = array.dtype.kind
    if array.dtype == np.uint8:
        return array
    if kind == "u" and array.dtype.itemsize == 2:  # any byte order
        return _uint16_to_uint8(array)
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


# ----------------------------------------------------------------- what a file looks like

# (magic bytes, offset, what it is, category). Categories: "readable" (one of
# READ_FORMATS: a failure means a damaged file), "image" (an image format we do not
# read), "other" (not an image at all).
_SIGNATURES: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\xff\xd8\xff", 0, "a JPEG", "readable"),
    (b"\x89PNG\r\n\x1a\n", 0, "a PNG", "readable"),
    (b"GIF87a", 0, "a GIF", "readable"),
    (b"GIF89a", 0, "a GIF", "readable"),
    (b"II*\x00", 0, "a TIFF", "readable"),
    (b"MM\x00*", 0, "a TIFF", "readable"),
    (b"II+\x00", 0, "a BigTIFF", "image"),
    (b"8BPS", 0, "a Photoshop (PSD)", "image"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", 0, "a JPEG XL", "image"),
    (b"\xff\x0a", 0, "a JPEG XL", "image"),
    (b"\x00\x00\x00\x0cjP  ", 0, "a JPEG 2000", "image"),
    (b"\x76\x2f\x31\x01", 0, "an OpenEXR", "image"),
    (b"qoif", 0, "a QOI", "image"),
    (b"%PDF", 0, "a PDF document", "other"),
    (b"PK\x03\x04", 0, "a ZIP archive or an Office document", "other"),
    (b"PK\x05\x06", 0, "an empty ZIP archive", "other"),
    (b"\x1f\x8b", 0, "a gzip archive", "other"),
    (b"Rar!\x1a\x07", 0, "a RAR archive", "other"),
    (b"7z\xbc\xaf\x27\x1c", 0, "a 7-Zip archive", "other"),
    (b"\x1aE\xdf\xa3", 0, "a Matroska/WebM video", "other"),
    (b"OggS", 0, "an Ogg audio or video file", "other"),
    (b"ID3", 0, "an MP3 audio file", "other"),
    (b"fLaC", 0, "a FLAC audio file", "other"),
    (b"\x7fELF", 0, "a Linux program", "other"),
    (b"SQLite format 3\x00", 0, "an SQLite database", "other"),
)
_FTYP_IMAGE_BRANDS = {
    b"heic": "a HEIC", b"heix": "a HEIC", b"hevc": "a HEIC", b"heim": "a HEIC", b"heis": "a HEIC",
    b"mif1": "a HEIF", b"msf1": "a HEIF", b"avif": "an AVIF", b"avis": "an AVIF",
}
_RIFF_KINDS = {
    b"WEBP": ("a WebP", "readable"), b"AVI ": ("an AVI video", "other"), b"WAVE": ("a WAV audio file", "other"),
}


def sniff_content(data: bytes) -> tuple[str | None, str | None]:
    """Guess what bytes are from their first bytes: (description, category).

    Only for error messages: the decision to decode is Pillow's. Categories:
    "readable", "image", "other" (see `_SIGNATURES`), or (None, None) when unknown.
    """
    head = data[:2048]
    for magic, offset, what, category in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return what, category
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return (_FTYP_IMAGE_BRANDS[brand], "image") if brand in _FTYP_IMAGE_BRANDS else ("an MP4/MOV video", "other")
    if head[:4] == b"RIFF" and head[8:12] in _RIFF_KINDS:
        return _RIFF_KINDS[head[8:12]]
    text = _as_text(head)
    if text is not None:
        return _describe_text(text)
    if head[:2] == b"BM":  # checked after text: "BM" is a weak, two-letter magic
        return "a BMP", "readable"
    if head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00"):
        return "an icon (ICO/CUR)", "image"
    if head[:2] == b"MZ":
        return "a Windows program", "other"
    return None, None


def _as_text(head: bytes) -> str | None:
    """The head as text when it reads like text (UTF-8 or ASCII, few control characters)."""
    if not head or b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:  # not just a character cut at the end
            return None
        text = head[: error.start].decode("utf-8")
    controls = sum(1 for char in text if ord(char) < 32 and char not in "\t\n\r\f")
    return text if controls <= len(text) * 0.02 else None


def _describe_text(text: str) -> tuple[str, str]:
    start = text.lstrip("\ufeff \t\r\n").lower()
    if start.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in start[:1024]:
        return "an HTML page, such as a saved web page or a download's error page", "other"
    if "<svg" in start[:1024]:
        return "an SVG drawing", "image"
    if start.startswith("<?xml"):
        return "an XML document", "other"
    if start.startswith(("{", "[")):
        return "JSON text", "other"
    return "plain text", "other"


def describe_unreadable(data: bytes, label: str) -> str:
    """The message for content that Pillow could not identify, by what it looks like."""
    what, category = sniff_content(data)
    if category == "readable":
        return f"{label} starts like {what} but cannot be read (damaged header); re-export or re-download it"
    if category == "image":
        return f"{label} is {what} image, which is not supported; convert it to {SUPPORTED_FORMATS_TEXT[2:]}"
    if category == "other":
        return f"{label} is not an image (it looks like {what}); upload {SUPPORTED_FORMATS_TEXT}"
    return (
        f"{label} is not an image this tool can read (it starts with bytes {data[:8].hex(' ')}); "
        f"upload {SUPPORTED_FORMATS_TEXT}"
    )


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


# --------------------------------------------------------------------------- folders


def iter_image_paths(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Expand command-line paths into image files, in a stable order.

    - a file is yielded as given, whatever its extension: the user named it, and
      `load_image` will say what is wrong with it if anything is;
    - a folder is walked recursively (symlinked folders are not followed, so links
      cannot loop), keeping files with an image extension (`IMAGE_EXTENSIONS`, any
      case), skipping hidden files and folders (names starting with "."; this also
      drops macOS "._photo.jpg" resource forks), sorted by path;
    - a path that does not exist is yielded anyway, so that `load_image` reports
      "no such file" for it in the same stream as every other error;
    - a file reached twice (given twice, or given and inside a given folder) is
      yielded once. Unreadable subfolders are skipped silently.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]  # a lone path would otherwise be iterated letter by letter
    seen: set[str] = set()
    for given in paths:
        path = Path(given)
        for found in _walk_images(path) if path.is_dir() else [path]:
            key = os.path.abspath(found)
            if key not in seen:
                seen.add(key)
                yield found


def _walk_images(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(root) / name)
    return sorted(found)


# ----------------------------------------------------------------------------- views


def make_views(
    image: Image.Image,
    visual_token_budget: int = 256,
    *,
    patch: int = QWEN_PATCH,
    max_crops: int = 3,
    smooth_crop: bool = True,
) -> list[Image.Image]:
    """What the vision-language model sees: [global view, crop, crop, ...].

    - views[0], the global view: the whole image, downscaled (never upscaled) to fit
      about a quarter of the budget, letterboxed in black to sides that are whole
      tokens, >= 56 px, aspect <= 200:1. It shows the composition, not the evidence.
    - views[1:], up to `max_crops` crops at NATIVE resolution: pixel-for-pixel copies
      of the image, sides multiples of `patch`, sharing the rest of the budget. They
      are placed on the most detailed windows of the image (edges show blur, ringing
      and pixelation), without overlap. With `smooth_crop` and 3+ crops, the last one
      is instead the smoothest well-exposed window, where noise and JPEG blocking show
      best. When the whole image fits the crop budget, there is one crop: all of it
      (less the remainder of a side under one patch).
    - A crop side under 56 px (the image is that small) is padded by mirroring,
      never upscaled: upscaling is itself blur, and would show the model a
      degradation the photo does not have.

    Every view has sides that are multiples of `patch` (at least 2 patches) and an
    aspect ratio <= 200:1, so the Qwen2-VL processor takes it without resampling as
    long as `visual_token_budget` stays within its max_pixels (1280 tokens).
    `view_tokens(views) <= visual_token_budget`. Each view's `info["inspector_view"]`
    says where it came from: {"kind": "global" | "crop", "box": (left, top, right,
    bottom) in image pixels, "padding": (left, top, right, bottom) in view pixels}.
    Deterministic; a 12 MP photo takes tens of milliseconds.
    """
    _check_view_arguments(visual_token_budget, patch, max_crops)
    rgb = _to_rgb(image, "the image")
    preview, factor = _preview(rgb)
    views = [_global_view(rgb, preview, max(MIN_VIEW_PATCHES**2, visual_token_budget // 4), patch)]
    crop_budget = visual_token_budget - view_tokens(views, patch=patch)
    for box in _choose_crop_boxes(rgb, preview, factor, crop_budget, patch, max_crops, smooth_crop):
        views.append(_native_crop(rgb, box, patch))
    return views


def view_tokens(views: Iterable[Image.Image], *, patch: int = QWEN_PATCH) -> int:
    """Visual tokens Qwen2-VL spends on these views: one per patch x patch block."""
    return sum((view.width // patch) * (view.height // patch) for view in views)


def _check_view_arguments(budget: int, patch: int, max_crops: int) -> None:
    smallest = 2 * MIN_VIEW_PATCHES**2
    if budget < smallest:
        raise ValueError(
            f"visual_token_budget={budget} is too small: a 56x56 global view and one 56x56 crop "
            f"take {smallest} tokens"
        )
    if patch < 1 or max_crops < 1:
        raise ValueError(f"patch and max_crops must be positive, got patch={patch}, max_crops={max_crops}")


def _preview(rgb: Image.Image, longest: int = PREVIEW_SIDE) -> tuple[Image.Image, int]:
    """(preview, factor): the image box-averaged by a whole factor to <= `longest` px.

    Shared by the global view (a cheap first stage of its downscale) and the crop
    placement (its detail map), so a 12 MP photo is reduced once (~13 ms), not twice.
    """
    factor = max(1, math.ceil(max(rgb.size) / longest))
    return (rgb.reduce(factor) if factor > 1 else rgb), factor


def _global_view(rgb: Image.Image, preview: Image.Image, tokens: int, patch: int) -> Image.Image:
    width, height = rgb.size
    grid_w, grid_h, scale = _global_grid(width, height, tokens, patch)
    content_w = min(grid_w * patch, max(1, round(width * scale)))
    content_h = min(grid_h * patch, max(1, round(height * scale)))
    content = rgb
    if (content_w, content_h) != (width, height):
        # Two stages, as Pillow's `reducing_gap` does: the box-averaged preview, then
        # Lanczos. Reusing the preview saves a second pass over a 12 MP image.
        if preview.width >= content_w and preview.height >= content_h:
            content = preview.resize((content_w, content_h), Image.Resampling.LANCZOS)
        else:
            content = rgb.resize((content_w, content_h), Image.Resampling.LANCZOS, reducing_gap=2.0)
    canvas = Image.new("RGB", (grid_w * patch, grid_h * patch), (0, 0, 0))
    left, top = (canvas.width - content_w) // 2, (canvas.height - content_h) // 2
    canvas.paste(content, (left, top))
    padding = (left, top, canvas.width - content_w - left, canvas.height - content_h - top)
    canvas.info = {"inspector_view": {"kind": "global", "box": (0, 0, width, height), "padding": padding}}
    return canvas


def _global_grid(width: int, height: int, tokens: int, patch: int) -> tuple[int, int, float]:
    """The token grid (w, h) and scale that show the most of the image within `tokens`.

    Tries every grid height; a grid is trimmed to what the scaled image needs, so the
    letterbox stays under one patch per side. Ties go to fewer tokens.
    """
    best = (0.0, 0, 0, 0)  # scale, -tokens, grid_w, grid_h
    for grid_h in range(MIN_VIEW_PATCHES, tokens // MIN_VIEW_PATCHES + 1):
        grid_w = min(tokens // grid_h, MAX_ASPECT_RATIO * grid_h)
        if grid_w < MIN_VIEW_PATCHES:
            break
        scale = min(1.0, grid_w * patch / width, grid_h * patch / height)
        grid_w = max(MIN_VIEW_PATCHES, math.ceil(round(width * scale, 6) / patch))
        grid_h_used = max(MIN_VIEW_PATCHES, math.ceil(round(height * scale, 6) / patch))
        grid_h_used = max(grid_h_used, math.ceil(grid_w / MAX_ASPECT_RATIO))
        grid_w = max(grid_w, math.ceil(grid_h_used / MAX_ASPECT_RATIO))
        candidate = (scale, -grid_w * grid_h_used, grid_w, grid_h_used)
        best = max(best, candidate)
    _, _, grid_w, grid_h = best
    return grid_w, grid_h, best[0]


Box = tuple[int, int, int, int]


def _choose_crop_boxes(rgb: Image.Image, preview: Image.Image, factor: int, tokens: int, patch: int,
                       max_crops: int, smooth_crop: bool) -> list[Box]:
    """Where the native crops go: the whole image if it fits, else the detailed windows."""
    width, height = rgb.size
    whole_w, whole_h = _native_extent(width, patch), _native_extent(height, patch)
    if _tokens_of(whole_w, whole_h, patch) <= tokens:
        left, top = _snap((width - whole_w) // 2, width - whole_w), _snap((height - whole_h) // 2, height - whole_h)
        return [(left, top, left + whole_w, top + whole_h)]
    crops, crop_w, crop_h = _crop_plan(width, height, tokens, patch, max_crops)
    return _place_crops(rgb.size, preview, factor, crop_w, crop_h, crops, smooth_crop and crops >= 3)


def _crop_plan(width: int, height: int, tokens: int, patch: int, max_crops: int) -> tuple[int, int, int]:
    """(crops, crop_w, crop_h): the most crops, up to max_crops, that tile the image
    without overlap at the size their share of the budget buys. A mid-sized image
    thus gets one large crop rather than one small crop and an unspent budget."""
    for crops in range(max_crops, 0, -1):
        if crops > 1 and tokens // crops < MIN_VIEW_PATCHES**2:
            continue
        grid_w, grid_h = _crop_grid(width, height, tokens // crops, patch)
        crop_w, crop_h = min(grid_w * patch, width), min(grid_h * patch, height)
        if crops == 1 or (width // crop_w) * (height // crop_h) >= crops:
            return crops, crop_w, crop_h
    raise AssertionError("unreachable: one crop always fits")


def _native_extent(side: int, patch: int) -> int:
    """Pixels of one side a native crop can take: whole patches, or all of a short side."""
    return side if side < MIN_VIEW_PATCHES * patch else side // patch * patch


def _tokens_of(width: int, height: int, patch: int) -> int:
    return max(MIN_VIEW_PATCHES, math.ceil(width / patch)) * max(MIN_VIEW_PATCHES, math.ceil(height / patch))


def _crop_grid(width: int, height: int, tokens: int, patch: int) -> tuple[int, int]:
    """A square-ish token grid within `tokens`; a side the image cannot fill gives its
    tokens to the other side (a 3000x100 panorama gets a wide crop, not a tiny one)."""
    most_w = max(MIN_VIEW_PATCHES, width // patch)
    most_h = max(MIN_VIEW_PATCHES, height // patch)
    side = max(MIN_VIEW_PATCHES, math.isqrt(tokens))
    grid_w, grid_h = min(side, most_w), min(side, most_h)
    if grid_w < side:
        grid_h = min(tokens // grid_w, most_h)
    elif grid_h < side:
        grid_w = min(tokens // grid_h, most_w)
    return min(grid_w, MAX_ASPECT_RATIO * grid_h), min(grid_h, MAX_ASPECT_RATIO * grid_w)


def _place_crops(size: tuple[int, int], preview: Image.Image, factor: int, crop_w: int, crop_h: int,
                 crops: int, smooth_last: bool) -> list[Box]:
    """Pick non-overlapping windows on the gradient energy of the preview.

    The preview is the image box-averaged to <= 512 px a side: cheap, and nearly
    blind to pixel noise, so about the same windows are chosen whether or not the
    photo is degraded, which keeps training and serving views comparable.
    """
    luma = np.asarray(preview.convert("L"), dtype=np.float64)
    energy = np.zeros_like(luma)
    energy[:, 1:] += np.abs(np.diff(luma, axis=1))
    energy[1:, :] += np.abs(np.diff(luma, axis=0))
    win_w = min(luma.shape[1], max(1, round(crop_w / factor)))
    win_h = min(luma.shape[0], max(1, round(crop_h / factor)))
    detail = _window_sums(energy, win_w, win_h)
    brightness = _window_sums(luma, win_w, win_h) / (win_w * win_h)
    center_bias = _center_distance(detail.shape) * 1e-9 * (float(detail.max()) + 1.0)  # breaks ties only
    free = np.ones(detail.shape, bool)
    picks = []
    for index in range(crops):
        if smooth_last and index == crops - 1:
            exposed = free & (brightness >= 24) & (brightness <= 232)
            score = np.where(exposed if exposed.any() else free, -detail - center_bias, -np.inf)
        else:
            score = np.where(free, detail - center_bias, -np.inf)
        y, x = np.unravel_index(int(np.argmax(score)), score.shape)
        if not np.isfinite(score[y, x]):
            break
        free[max(0, y - win_h + 1): y + win_h, max(0, x - win_w + 1): x + win_w] = False
        picks.append(_map_to_box(x, y, win_w, win_h, factor, crop_w, crop_h, size))
    return picks


def _window_sums(values: np.ndarray, win_w: int, win_h: int) -> np.ndarray:
    """Sum over every win_h x win_w window (summed-area table); shape (H-h+1, W-w+1)."""
    table = np.zeros((values.shape[0] + 1, values.shape[1] + 1))
    table[1:, 1:] = values.cumsum(0).cumsum(1)
    return table[win_h:, win_w:] - table[:-win_h, win_w:] - table[win_h:, :-win_w] + table[:-win_h, :-win_w]


def _center_distance(shape: tuple[int, ...]) -> np.ndarray:
    rows = (np.arange(shape[0]) - (shape[0] - 1) / 2) / max(shape[0], 1)
    cols = (np.arange(shape[1]) - (shape[1] - 1) / 2) / max(shape[1], 1)
    return rows[:, None] ** 2 + cols[None, :] ** 2


def _map_to_box(x: int, y: int, win_w: int, win_h: int, factor: int, crop_w: int, crop_h: int,
                size: tuple[int, int]) -> Box:
    """Map-window position -> image box of the crop size, centred on the same spot."""
    left = _snap(round((x + win_w / 2) * factor - crop_w / 2), size[0] - crop_w)
    top = _snap(round((y + win_h / 2) * factor - crop_h / 2), size[1] - crop_h)
    return left, top, left + crop_w, top + crop_h


def _snap(offset: int, most: int) -> int:
    """Round down to a multiple of 8 (the JPEG block grid, so blocks sit at the same
    place in every crop), then keep the crop inside the image."""
    return min(max(0, offset // 8 * 8), max(0, most))


def _native_crop(rgb: Image.Image, box: Box, patch: int) -> Image.Image:
    """The pixels of `box` untouched; sides under 2 patches mirrored out to 2 patches."""
    region = rgb.crop(box)
    want_w = max(region.width, MIN_VIEW_PATCHES * patch)
    want_h = max(region.height, MIN_VIEW_PATCHES * patch)
    pad_left, pad_top = (want_w - region.width) // 2, (want_h - region.height) // 2
    padding = (pad_left, pad_top, want_w - region.width - pad_left, want_h - region.height - pad_top)
    if any(padding):
        pixels = np.pad(np.asarray(region), ((padding[1], padding[3]), (padding[0], padding[2]), (0, 0)),
                        mode="symmetric")
        region = Image.fromarray(pixels)
    region.info = {"inspector_view": {"kind": "crop", "box": box, "padding": padding}}
    return region
