"""Odd, broken and valid image files for tests, built from code into a folder.

    from fixtures_images import ODD_IMAGE_OUTCOMES, write_odd_images

    def test_cli_survives_odd_files(tmp_path):
        files = write_odd_images(tmp_path)          # {"empty.jpg": Path, ...}
        for name, path in files.items():
            expect_error = ODD_IMAGE_OUTCOMES[name] == "error"

A plain module (no pytest import), so any test, benchmark or script can use it.
Nothing binary is committed: every file is made by Pillow, zipfile or by hand here,
deterministically. The whole set (about 30 files, < 1 MB) is written in ~0.1 s.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# Marker colour of the EXIF-rotation fixture; its corner is asserted by tests.
MARKER_RGB = (255, 0, 0)

# Expected outcome of load_image (default limits) on each file of write_odd_images:
# "ok" (an RGB image comes back) or "error" (an ImageError).
ODD_IMAGE_OUTCOMES: dict[str, str] = {
    "photo.jpg": "ok",
    "photo.png": "ok",
    "photo.webp": "ok",
    "photo.bmp": "ok",
    "photo.tiff": "ok",
    "photo.gif": "ok",
    "png_named.jpg": "ok",  # a PNG with a .jpg name: the content decides, not the name
    "camera_mpo.jpg": "ok",  # multi-picture JPEG, as phones write; Pillow calls it MPO
    "empty.jpg": "error",
    "truncated.jpg": "error",
    "truncated.png": "error",
    "text.jpg": "error",
    "pdf.jpg": "error",
    "html.jpg": "error",
    "zip.jpg": "error",
    "heic.jpg": "error",
    "random_bytes.jpg": "error",
    "bomb.png": "error",  # declares 100000 x 100000 pixels in 67 bytes
    "tiny_1x1.png": "error",  # under the 8 px min_side
    "tiny_40x40.png": "ok",
    "wide_2000x5.png": "error",  # 5 px side is under min_side
    "tall_5x2000.png": "error",
    "wide_2000x8.png": "ok",
    "gray16.png": "ok",
    "gray16.tiff": "ok",
    "float32.tiff": "ok",
    "cmyk.jpg": "ok",
    "palette_transparent.png": "ok",
    "gray.png": "ok",
    "bilevel.png": "ok",
    "rgba.png": "ok",
    "la.png": "ok",
    "animated.gif": "ok",
    "exif_rotated.jpg": "ok",
    "exif_bad_orientation.jpg": "ok",  # orientation 9 does not exist: kept as stored
    "exif_corrupt.jpg": "ok",  # EXIF block cut short: Pillow warns, the pixels are fine
}


def sample_rgb(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A deterministic photo-like RGB image: gradients, hard edges and mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    red = 255 * x / max(width - 1, 1)
    green = 255 * y / max(height - 1, 1)
    blue = np.where(((x // 8) + (y // 8)) % 2 == 0, 200.0, 40.0)
    pixels = np.stack([red, green, blue], axis=-1) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def encode(image: Image.Image, image_format: str, **save_args) -> bytes:
    """The bytes of `image` saved in `image_format` ("JPEG", "PNG", ...)."""
    buffer = io.BytesIO()
    image.save(buffer, image_format, **save_args)
    return buffer.getvalue()


def jpeg_bytes(image: Image.Image | None = None, quality: int = 90, **save_args) -> bytes:
    return encode(image if image is not None else sample_rgb(), "JPEG", quality=quality, **save_args)


def png_bytes(image: Image.Image | None = None, **save_args) -> bytes:
    return encode(image if image is not None else sample_rgb(), "PNG", **save_args)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with a correct CRC, so only the declared size is wrong."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png_bytes(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid-looking PNG whose header declares width x height RGB pixels, with one
    scanline of data: decoding it for real would need width*height*3 bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" * 64)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data)
            + png_chunk(b"IEND", b""))


def exif_rotated_jpeg_bytes(orientation: int = 6) -> bytes:
    """A JPEG stored as 64x32 (landscape), gray with a red 16x16 block at the stored
    top-left corner, tagged with EXIF `orientation`.

    Orientation 6 means "rotate 90 degrees clockwise to display": the upright image
    is 32x64 and the red block sits at its top-RIGHT corner.
    """
    stored = Image.new("RGB", (64, 32), (128, 128, 128))
    stored.paste(MARKER_RGB, (0, 0, 16, 16))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg_bytes(stored, quality=95, exif=exif.tobytes())


def corrupt_exif_jpeg_bytes() -> bytes:
    """A good JPEG whose EXIF block announces 5 tags and ends after 2 bytes of them;
    Pillow warns "Corrupt EXIF data" when reading it."""
    truncated_ifd = b"II*\x00\x08\x00\x00\x00\x05\x00\x12\x01"
    return jpeg_bytes(sample_rgb(32, 32), exif=b"Exif\x00\x00" + truncated_ifd)


def gray16_image(width: int = 256, height: int = 16) -> Image.Image:
    """A 16-bit ramp, 0 at the left to 65535 at the right (Pillow mode I;16)."""
    ramp = np.linspace(0, 65535, width).round().astype(np.uint16)
    return Image.fromarray(np.tile(ramp, (height, 1)))


def cmyk_jpeg_bytes() -> bytes:
    """Left half pure red, right half pure blue, in CMYK (as print workflows save)."""
    cmyk = Image.new("CMYK", (64, 32), (0, 255, 255, 0))
    cmyk.paste((255, 255, 0, 0), (32, 0, 64, 32))
    return jpeg_bytes(cmyk, quality=95)


def palette_transparent_png_bytes() -> bytes:
    """A palette PNG: left half index 0 (transparent), right half index 1 (blue)."""
    image = Image.new("P", (32, 16), 0)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (16, 0, 32, 16))
    return png_bytes(image, transparency=0)


def rgba_image() -> Image.Image:
    """Left half fully transparent black, right half opaque green."""
    image = Image.new("RGBA", (32, 16), (0, 0, 0, 0))
    image.paste((0, 255, 0, 255), (16, 0, 32, 16))
    return image


def animated_gif_bytes() -> bytes:
    """Two frames: red, then blue; a loader must return the red one."""
    frames = [Image.new("RGB", (32, 32), color) for color in ((255, 0, 0), (0, 0, 255))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def mpo_bytes() -> bytes:
    """A two-picture MPO (stereo or depth photos from phones); first picture = sample_rgb."""
    first, second = sample_rgb(), sample_rgb(seed=1)
    return encode(first, "MPO", save_all=True, append_images=[second], quality=85)


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        # A fixed date: ZipFile stamps the current time, and fixtures must not change.
        archive.writestr(zipfile.ZipInfo("photo.txt", date_time=(2020, 1, 1, 0, 0, 0)), "not a photo")
    return buffer.getvalue()


def odd_image_bytes() -> dict[str, bytes]:
    """name -> content of every file of `ODD_IMAGE_OUTCOMES`."""
    photo = sample_rgb()
    full_jpeg, full_png = jpeg_bytes(photo), png_bytes(sample_rgb(256, 256))
    float_ramp = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (16, 1))
    files = {
        "photo.jpg": full_jpeg,
        "photo.png": png_bytes(photo),
        "photo.webp": encode(photo, "WEBP", quality=90),
        "photo.bmp": encode(photo, "BMP"),
        "photo.tiff": encode(photo, "TIFF"),
        "photo.gif": encode(photo, "GIF"),
        "png_named.jpg": png_bytes(photo),
        "camera_mpo.jpg": mpo_bytes(),
        "empty.jpg": b"",
        "truncated.jpg": full_jpeg[: len(full_jpeg) // 2],
        "truncated.png": full_png[: len(full_png) // 2],
        "text.jpg": b"These are my holiday notes, not a photo.\n" * 20,
        "pdf.jpg": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
        "html.jpg": b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>\n",
        "zip.jpg": zip_bytes(),
        "heic.jpg": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64),
        "random_bytes.jpg": np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "bomb.png": bomb_png_bytes(),
        "tiny_1x1.png": png_bytes(Image.new("RGB", (1, 1), (10, 20, 30))),
        "tiny_40x40.png": png_bytes(sample_rgb(40, 40)),
        "wide_2000x5.png": png_bytes(sample_rgb(2000, 5)),
        "tall_5x2000.png": png_bytes(sample_rgb(5, 2000)),
        "wide_2000x8.png": png_bytes(sample_rgb(2000, 8)),
        "gray16.png": png_bytes(gray16_image()),
        "gray16.tiff": encode(gray16_image(), "TIFF"),
        "float32.tiff": encode(Image.fromarray(float_ramp), "TIFF"),
        "cmyk.jpg": cmyk_jpeg_bytes(),
        "palette_transparent.png": palette_transparent_png_bytes(),
        "gray.png": png_bytes(photo.convert("L")),
        "bilevel.png": png_bytes(photo.convert("1")),
        "rgba.png": png_bytes(rgba_image()),
        "la.png": png_bytes(rgba_image().convert("LA")),
        "animated.gif": animated_gif_bytes(),
        "exif_rotated.jpg": exif_rotated_jpeg_bytes(6),
        "exif_bad_orientation.jpg": exif_rotated_jpeg_bytes(9),
        "exif_corrupt.jpg": corrupt_exif_jpeg_bytes(),
    }
    assert files.keys() == ODD_IMAGE_OUTCOMES.keys(), "keep ODD_IMAGE_OUTCOMES in step"
    return files


def write_odd_images(folder: str | Path) -> dict[str, Path]:
    """Write every file of `ODD_IMAGE_OUTCOMES` into `folder` (created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, content in odd_image_bytes().items():
        paths[name] = folder / name
        paths[name].write_bytes(content)
    return paths


def write_image_tree(folder: str | Path) -> dict[str, Path]:
    """A small photo folder as users have them, for path-walking tests.

    Keys are paths relative to `folder`. Images: "a.jpg", "B.PNG", "sub/c.webp",
    "sub/deeper/d.tif". Skipped by a walk: "notes.txt", "sub/raw.cr2", ".hidden.jpg",
    "._a.jpg" (a macOS resource fork), ".cache/e.jpg".
    """
    folder = Path(folder)
    photo = sample_rgb(32, 32)
    contents = {
        "a.jpg": jpeg_bytes(photo),
        "B.PNG": png_bytes(photo),
        "sub/c.webp": encode(photo, "WEBP"),
        "sub/deeper/d.tif": encode(photo, "TIFF"),
        "notes.txt": b"not an image",
        "sub/raw.cr2": b"II*\x00raw",
        ".hidden.jpg": jpeg_bytes(photo),
        "._a.jpg": b"\x00\x05\x16\x07 resource fork",
        ".cache/e.jpg": jpeg_bytes(photo),
    }
    paths = {}
    for name, content in contents.items():
        paths[name] = folder / name
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        paths[name].write_bytes(content)
    return paths
