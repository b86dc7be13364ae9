"""`load_image`: the edge where untrusted files enter.

Whatever arrives (a path, bytes, a file object, a PIL image, a numpy array) leaves
as an upright 8-bit RGB `PIL.Image`, or as an `ImageError` whose message says what
is wrong and what to do. Cheap checks run before any pixel is decoded: byte size,
what the content looks like, and the size the header declares (decompression
bombs). Decoding itself is Pillow's; every decoder failure becomes an `ImageError`.

The metadata the rest of the package needs survives in `image.info` (see
`load_image`). Pillow's `convert`/`transpose`/`crop` copy `info`, but `quantization`
is an attribute of `JpegImageFile` only and is lost on the first conversion, which is
why `load_image` copies it into `info`.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .formats import READ_FORMATS, ImageError, describe_unreadable, sniff_content
from .pixels import array_to_uint8, check_array_shape, to_rgb

# `info` keys that only made sense before the conversion to RGB.
_STALE_INFO_KEYS = ("transparency",)


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
    """Arrays carry no format: the dtype says the value range (see `array_to_uint8`)."""
    label = "the array"
    try:
        array = np.asarray(array)
    except Exception as error:  # noqa: BLE001 - e.g. a CUDA tensor; the input is bad
        raise ImageError(f"cannot turn {type(array).__name__} into a numpy array ({error}); pass a CPU array") from None
    height, width = check_array_shape(array, label)
    _check_declared_size((width, height), label, limits)
    pixels = array_to_uint8(array, label)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    image = to_rgb(Image.fromarray(np.ascontiguousarray(pixels)), label)
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
            f"{label} is {mib(size)}, over the {mib(limits.max_bytes)} limit; "
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
    rgb = to_rgb(upright, label)
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


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"
