"""load_image and iter_image_paths: every odd input gives an RGB image or a clear ImageError."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from fixtures_images import (
    MARKER_RGB,
    ODD_IMAGE_OUTCOMES,
    bomb_png_bytes,
    gray16_image,
    jpeg_bytes,
    odd_image_bytes,
    png_bytes,
    sample_rgb,
    write_image_tree,
    write_odd_images,
)
from PIL import Image, ImageFile

from inspector.images import ImageError, ImageLimits, iter_image_paths, load_image

INFO_KEYS = ("inspector_format", "inspector_quantization", "inspector_source_size",
             "inspector_orientation", "inspector_path", "inspector_warnings")


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory) -> dict[str, Path]:
    return write_odd_images(tmp_path_factory.mktemp("odd"))


@pytest.fixture(scope="module")
def loaded(odd_files) -> dict[str, Image.Image]:
    return {name: load_image(path) for name, path in odd_files.items() if ODD_IMAGE_OUTCOMES[name] == "ok"}


def pixel(image: Image.Image, x: int, y: int) -> np.ndarray:
    return np.asarray(image)[y, x].astype(int)


@pytest.mark.parametrize("name", sorted(ODD_IMAGE_OUTCOMES))
def test_every_odd_file_gives_rgb_or_image_error(odd_files, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no stray warning escapes either
        if ODD_IMAGE_OUTCOMES[name] == "ok":
            image = load_image(odd_files[name])
            assert image.mode == "RGB" and image.width >= 8 and image.height >= 8
            assert all(key in image.info for key in INFO_KEYS)
            assert image.info["inspector_path"] == str(odd_files[name])
        else:
            with pytest.raises(ImageError) as caught:
                load_image(odd_files[name])
            assert name in str(caught.value)  # the message names the file


@pytest.mark.parametrize(("name", "words"), [
    ("empty.jpg", "empty (0 bytes)"),
    ("truncated.jpg", "truncated"),
    ("truncated.png", "truncated"),
    ("text.jpg", "plain text"),
    ("pdf.jpg", "PDF"),
    ("html.jpg", "HTML"),
    ("zip.jpg", "ZIP"),
    ("heic.jpg", "HEIC"),
    ("bomb.png", "decompression bomb"),
    ("tiny_1x1.png", "1x1"),
    ("wide_2000x5.png", "2000x5"),
])
def test_error_messages_say_what_is_wrong_and_what_to_do(odd_files, name, words):
    with pytest.raises(ImageError) as caught:
        load_image(odd_files[name])
    message = str(caught.value)
    assert words in message
    assert any(hint in message for hint in ("upload", "re-", "convert", "send", "downscale", "larger"))


def test_non_image_message_lists_the_formats(odd_files):
    with pytest.raises(ImageError, match=r"not an image \(it looks like a PDF document\); upload a JPEG, PNG"):
        load_image(odd_files["pdf.jpg"])


def test_bomb_fails_fast_before_decoding(monkeypatch):
    """Refused from the header: not one pixel is decoded (a check of the work done, not of the time)."""
    def no_decoding(self, *args, **kwargs):
        raise AssertionError("the bomb's pixels were decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageError, match="100000x100000|exceeds limit"):
        load_image(bomb_png_bytes(100_000, 100_000))


def test_bomb_under_pillows_limit_is_caught_by_ours():
    # 70 MP: Pillow would decode it (its limit is ~89 MP); ours refuses from the header.
    with pytest.raises(ImageError, match="10000x7000 pixels.*over the limit of 64 megapixels"):
        load_image(bomb_png_bytes(10_000, 7_000))


def test_pillow_bomb_warning_becomes_an_error_not_a_warning():
    # 100 MP with our limit raised: Pillow only *warns* (between 89 and 179 MP).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError, match="more pixels than allowed"):
            load_image(bomb_png_bytes(10_000, 10_000), max_pixels=150_000_000)


def test_limits_are_keyword_arguments():
    data = png_bytes(sample_rgb(64, 64))
    with pytest.raises(ImageError, match="over the .* limit; recompress"):
        load_image(data, max_bytes=100)
    with pytest.raises(ImageError, match="over the limit of 0.001 megapixels"):
        load_image(data, max_pixels=1_000)
    with pytest.raises(ImageError, match="at least 100 px"):
        load_image(data, min_side=100)
    assert load_image(sample_rgb(4, 4), min_side=4).size == (4, 4)
    with pytest.raises(ValueError):
        ImageLimits(max_pixels=0)


def test_big_file_is_refused_from_its_size_alone(tmp_path):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as file:
        file.truncate(3 * 1024 * 1024)  # sparse: 3 MiB of zeros, nothing read
    with pytest.raises(ImageError, match=r"huge.jpg is 3.0 MiB, over the 1.0 MiB limit"):
        load_image(path, max_bytes=1024 * 1024)


def test_missing_file_folder_and_device(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)
    if Path("/dev/zero").exists():
        with pytest.raises(ImageError, match="not a regular file"):
            load_image("/dev/zero")


def test_jpeg_keeps_format_quantization_and_size(loaded):
    image = loaded["photo.jpg"]
    assert image.info["inspector_format"] == "JPEG"
    tables = image.info["inspector_quantization"]
    assert set(tables) == {0, 1} and all(len(table) == 64 for table in tables.values())
    assert image.info["inspector_source_size"] == (96, 64)
    assert loaded["photo.png"].info["inspector_quantization"] is None
    assert loaded["photo.png"].info["inspector_format"] == "PNG"


def test_quantization_matches_what_the_encoder_wrote():
    reference = Image.open(io.BytesIO(jpeg_bytes(quality=37)))
    image = load_image(jpeg_bytes(quality=37))
    assert image.info["inspector_quantization"] == {k: list(v) for k, v in reference.quantization.items()}


def test_multi_picture_jpeg_reports_jpeg(loaded):
    image = loaded["camera_mpo.jpg"]
    assert image.info["inspector_format"] == "JPEG"
    assert image.info["inspector_quantization"] is not None


def test_png_named_jpg_is_read_by_content(loaded):
    assert loaded["png_named.jpg"].info["inspector_format"] == "PNG"


def test_exif_orientation_6_is_made_upright(loaded):
    image = loaded["exif_rotated.jpg"]
    assert image.size == (32, 64)  # stored 64x32
    assert image.info["inspector_source_size"] == (64, 32)
    assert image.info["inspector_orientation"] == 6
    # The red block stored at the top-left is at the top-right once upright.
    assert np.abs(pixel(image, 31 - 8, 8) - MARKER_RGB).max() < 40
    assert np.abs(pixel(image, 8, 8) - (128, 128, 128)).max() < 40
    assert np.abs(pixel(image, 31 - 8, 64 - 8) - (128, 128, 128)).max() < 40


def test_invalid_orientation_is_ignored(loaded):
    image = loaded["exif_bad_orientation.jpg"]
    assert image.size == (64, 32) and image.info["inspector_orientation"] == 1


def test_pillow_warnings_are_recorded_not_printed(odd_files):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = load_image(odd_files["exif_corrupt.jpg"])
    assert any("Corrupt EXIF" in text for text in image.info["inspector_warnings"])
    assert load_image(odd_files["photo.jpg"]).info["inspector_warnings"] == []


def test_sixteen_bit_is_scaled_not_clipped(loaded):
    for name in ("gray16.png", "gray16.tiff"):
        row = np.asarray(loaded[name])[0, :, 0].astype(int)
        assert row[0] == 0 and row[-1] == 255
        assert abs(row[128] - 128) <= 1  # the middle of the ramp is mid-gray, not 255
        assert len(np.unique(row)) > 200  # a ramp, not a clipped step
        assert np.all(np.diff(row) >= 0)


def test_float_tiff_in_unit_range_is_scaled(loaded):
    row = np.asarray(loaded["float32.tiff"])[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and abs(row[32] - 130) <= 2


def test_cmyk_jpeg_becomes_rgb(loaded):
    image = loaded["cmyk.jpg"]
    assert np.abs(pixel(image, 8, 16) - (255, 0, 0)).max() < 40
    assert np.abs(pixel(image, 56, 16) - (0, 0, 255)).max() < 40


def test_transparency_is_composited_over_white(loaded):
    palette = loaded["palette_transparent.png"]
    assert tuple(pixel(palette, 4, 8)) == (255, 255, 255)
    assert tuple(pixel(palette, 28, 8)) == (0, 0, 255)
    rgba = loaded["rgba.png"]
    assert tuple(pixel(rgba, 4, 8)) == (255, 255, 255)
    assert tuple(pixel(rgba, 28, 8)) == (0, 255, 0)
    assert tuple(pixel(loaded["la.png"], 4, 8)) == (255, 255, 255)


def test_grayscale_and_bilevel_become_gray_rgb(loaded):
    for name in ("gray.png", "bilevel.png"):
        pixels = np.asarray(loaded[name])
        assert np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 1], pixels[..., 2])
    assert set(np.unique(np.asarray(loaded["bilevel.png"]))) <= {0, 255}


def test_animated_gif_gives_first_frame(loaded):
    assert tuple(pixel(loaded["animated.gif"], 16, 16)) == (255, 0, 0)


def test_bytes_file_objects_and_pil_images():
    data = jpeg_bytes(sample_rgb())
    from_bytes = load_image(data)
    assert from_bytes.info["inspector_path"] is None and from_bytes.info["inspector_format"] == "JPEG"
    assert np.array_equal(np.asarray(load_image(bytearray(data))), np.asarray(from_bytes))
    assert np.array_equal(np.asarray(load_image(io.BytesIO(data))), np.asarray(from_bytes))
    lazy = Image.open(io.BytesIO(data))  # opened, not decoded: load_image decodes it
    from_pil = load_image(lazy)
    assert from_pil.info["inspector_quantization"] is not None
    assert np.array_equal(np.asarray(from_pil), np.asarray(from_bytes))


def test_caller_pil_image_is_not_modified():
    original = sample_rgb()
    original.info["mine"] = 1
    result = load_image(original)
    assert result is not original and original.info == {"mine": 1}
    result.putpixel((0, 0), (1, 2, 3))
    assert original.getpixel((0, 0)) != (1, 2, 3)


def test_load_image_is_idempotent_and_keeps_carried_metadata(odd_files):
    once = load_image(odd_files["exif_rotated.jpg"])
    twice = load_image(once)
    assert twice.info == once.info and np.array_equal(np.asarray(twice), np.asarray(once))
    degraded = sample_rgb()  # as evidence.degrade returns it: in memory, with the JPEG's tables
    degraded.info["inspector_quantization"] = {0: [7] * 64}
    assert load_image(degraded).info["inspector_quantization"] == {0: [7] * 64}


def test_text_mode_file_object_is_refused(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(b"hello")
    with open(path, encoding="utf-8") as text_file, pytest.raises(ImageError, match="text mode"):
        load_image(text_file)


def test_unsupported_source_type():
    with pytest.raises(ImageError, match="cannot read an image from a int"):
        load_image(42)


@pytest.mark.parametrize(("array", "expected"), [
    (np.full((16, 16), 128, np.uint8), 128),
    (np.full((16, 16, 1), 128, np.uint8), 128),
    (np.full((16, 16, 3), 128, np.uint8), 128),
    (np.full((16, 16, 4), 128, np.uint8), 128),  # opaque alpha: colour unchanged
    (np.full((16, 16, 3), 32896, np.uint16), 128),  # 128 * 257
    (np.full((16, 16, 3), 0.5, np.float32), 128),
    (np.full((16, 16, 3), 0.5, np.float64), 128),
    (np.full((16, 16, 3), 0.5, np.float16), 128),
    (np.ones((16, 16), bool), 255),
    (np.full((16, 16, 3), 128, np.int64), 128),
])
def test_numpy_arrays_of_each_dtype(array, expected):
    if array.ndim == 3 and array.shape[2] == 4:
        array[..., 3] = 255
    image = load_image(array)
    assert image.mode == "RGB" and image.size == (16, 16)
    assert abs(int(np.asarray(image)[5, 5, 0]) - expected) <= 1
    assert image.info["inspector_format"] is None and image.info["inspector_source_size"] == (16, 16)


def test_uint16_array_is_scaled_not_clipped():
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    row = np.asarray(load_image(ramp))[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and len(np.unique(row)) == 64


def test_sixteen_bit_pil_image_is_scaled():
    row = np.asarray(load_image(gray16_image()))[0, :, 0].astype(int)
    assert row[-1] == 255 and abs(row[128] - 128) <= 1


@pytest.mark.parametrize("mode", ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK",
                                  "YCbCr", "HSV", "I", "I;16", "I;16B", "F"])
def test_every_pillow_mode_becomes_rgb(mode):
    assert load_image(Image.new(mode, (16, 16))).mode == "RGB"


def test_big_endian_uint16_array_is_scaled():
    assert load_image(np.full((16, 16), 65535, ">u2")).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(("array", "words"), [
    (np.full((16, 16, 3), 2.0, np.float32), r"in \[0, 1\]"),
    (np.full((16, 16, 3), np.nan, np.float32), "NaN"),
    (np.full((3, 16, 16), 0.5, np.float32), "channels-first"),
    (np.zeros((16, 16, 2), np.uint8), "shape"),
    (np.zeros((2, 16, 16, 3), np.uint8), "shape"),
    (np.full((16, 16), 300, np.int32), "values from 300 to 300"),
    (np.zeros((16, 16), np.complex64), "dtype"),
    (np.zeros((4, 16), np.uint8), "4 pixels|16x4"),
])
def test_bad_arrays_give_image_errors(array, words):
    with pytest.raises(ImageError, match=words):
        load_image(array)


# ----------------------------------------------------------------------- iter_image_paths


def test_folders_are_walked_sorted_without_hidden_or_other_files(tmp_path):
    write_image_tree(tmp_path)
    found = [path.relative_to(tmp_path).as_posix() for path in iter_image_paths([tmp_path])]
    assert found == ["B.PNG", "a.jpg", "sub/c.webp", "sub/deeper/d.tif"]


def test_given_files_are_kept_as_given_and_missing_ones_too(tmp_path):
    tree = write_image_tree(tmp_path)
    missing = tmp_path / "missing.jpg"
    given = [tree["notes.txt"], missing, tree[".hidden.jpg"]]
    assert list(iter_image_paths(given)) == given
    with pytest.raises(ImageError, match="does not exist"):
        load_image(missing)


def test_paths_are_not_repeated_and_a_lone_path_works(tmp_path):
    tree = write_image_tree(tmp_path)
    found = list(iter_image_paths([tree["a.jpg"], str(tmp_path), tree["a.jpg"]]))
    assert found.count(tree["a.jpg"]) == 1 and len(found) == 4
    assert list(iter_image_paths(str(tree["a.jpg"]))) == [tree["a.jpg"]]


def test_every_odd_file_goes_through_the_walk(odd_files):
    folder = next(iter(odd_files.values())).parent
    assert set(iter_image_paths([folder])) == set(odd_files.values())


def test_odd_bytes_match_written_files(odd_files):
    contents = odd_image_bytes()
    assert all(odd_files[name].read_bytes() == content for name, content in contents.items())

