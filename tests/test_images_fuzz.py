"""Fuzzing load_image: any bytes give an RGB image or an ImageError, quickly, nothing else.

The limits are lowered (4 MP) only to keep each example fast: a random header that
declares 60 MP would pass the default limit and spend a second allocating pixels
before it fails as truncated; the property itself does not depend on the limits.
"""

from __future__ import annotations

import functools

from fixtures_images import encode, sample_rgb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from inspector.images import ImageError, load_image

FUZZ_LIMITS = {"max_pixels": 4_000_000, "max_bytes": 1_000_000}
FUZZ_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MAGICS = [b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"GIF87a", b"BM",
          b"II*\x00", b"MM\x00*", b"RIFF\x00\x01\x00\x00WEBPVP8 ", b"RIFF\x00\x01\x00\x00WEBPVP8L"]


@functools.cache
def valid_files() -> tuple[bytes, ...]:
    """Small valid files of each format, to mutate."""
    photo = sample_rgb(40, 24)
    return (
        encode(photo, "JPEG", quality=75),
        encode(photo, "JPEG", quality=75, progressive=True),
        encode(photo, "PNG"),
        encode(photo.convert("P"), "PNG", transparency=0),
        encode(photo, "GIF"),
        encode(photo, "WEBP", quality=80),
        encode(photo, "WEBP", lossless=True),
        encode(photo, "BMP"),
        encode(photo, "TIFF"),
        encode(photo, "TIFF", compression="tiff_lzw"),
    )


def assert_rgb_or_image_error(data: bytes) -> None:
    try:
        image = load_image(data, **FUZZ_LIMITS)
    except ImageError as error:
        assert str(error)
        return
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert image.width >= 8 and image.height >= 8
    image.tobytes()  # the pixels are really there


@FUZZ_SETTINGS
@given(st.binary(max_size=4096))
def test_random_bytes(data):
    assert_rgb_or_image_error(data)


@FUZZ_SETTINGS
@given(st.sampled_from(MAGICS), st.binary(max_size=2048))
def test_random_bytes_behind_a_real_magic_number(magic, tail):
    assert_rgb_or_image_error(magic + tail)


@FUZZ_SETTINGS
@given(st.data())
def test_mutated_valid_files(data):
    original = bytearray(data.draw(st.sampled_from(valid_files())))
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)), max_size=8))
    for position, value in edits:
        original[position] = value
    keep = data.draw(st.integers(0, len(original)))
    assert_rgb_or_image_error(bytes(original[:keep]))


def test_unmutated_files_load():
    for content in valid_files():
        assert load_image(content).size == (40, 24)
