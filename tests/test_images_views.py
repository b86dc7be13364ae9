"""make_views: whole-token views, within budget, crops at native resolution on the detail."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from fixtures_images import sample_rgb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from inspector.images import load_image, make_views, view_tokens

PATCH = 28


@functools.cache
def cached_sample(width: int, height: int) -> Image.Image:
    """sample_rgb, made once per size: the 2 MP ones take a fraction of a second."""
    return sample_rgb(width, height)


def half_flat_half_textured(width: int = 800, height: int = 600) -> Image.Image:
    """Left half flat mid-gray, right half random texture."""
    pixels = np.full((height, width, 3), 128, np.uint8)
    rng = np.random.default_rng(3)
    pixels[:, width // 2:] = rng.integers(0, 256, (height, width - width // 2, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def assert_valid_views(views: list[Image.Image], budget: int) -> None:
    assert len(views) >= 2 and views[0].info["inspector_view"]["kind"] == "global"
    assert all(view.info["inspector_view"]["kind"] == "crop" for view in views[1:])
    for view in views:
        assert view.mode == "RGB"
        assert view.width % PATCH == 0 and view.height % PATCH == 0, view.size
        assert min(view.size) >= 2 * PATCH, view.size
        assert max(view.size) / min(view.size) <= 200, view.size
    assert view_tokens(views) <= budget


def assert_native_crops(image: Image.Image, views: list[Image.Image]) -> None:
    """Every crop holds the pixels of its box exactly (no resampling), padding aside."""
    original = np.asarray(image)
    for view in views[1:]:
        left, top, right, bottom = view.info["inspector_view"]["box"]
        pad_left, pad_top, pad_right, pad_bottom = view.info["inspector_view"]["padding"]
        inner = np.asarray(view)[pad_top: view.height - pad_bottom, pad_left: view.width - pad_right]
        assert np.array_equal(inner, original[top:bottom, left:right])


def boxes_overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


SIZES = [(1, 1), (40, 40), (2000, 5), (5, 2000), (100, 100), (400, 400), (600, 300), (3000, 100),
         (1600, 1200), (20000, 56)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("budget", [8, 16, 64, 256, 1024])
def test_views_are_valid_for_every_shape_and_budget(size, budget):
    image = cached_sample(*size)
    views = make_views(image, budget)
    assert_valid_views(views, budget)
    assert_native_crops(image, views)


def test_default_budget_gives_global_plus_three_crops():
    views = make_views(sample_rgb(1600, 1200))
    assert [view.size for view in views[1:]] == [(224, 224)] * 3
    assert view_tokens(views) <= 256 and view_tokens(views[:1]) <= 64


def test_crop_lands_on_the_detailed_half_and_the_smooth_crop_on_the_flat_half():
    image = half_flat_half_textured()
    views = make_views(image, 256)
    boxes = [view.info["inspector_view"]["box"] for view in views[1:]]
    assert len(boxes) == 3
    assert all(box[0] >= 400 for box in boxes[:2])  # detail crops: textured half
    assert boxes[2][2] <= 400  # smooth crop: flat half
    assert not any(boxes_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    only_detail = make_views(image, 256, smooth_crop=False)
    # Two 224 px crops fit in the 400x600 textured half; the third takes what is left.
    assert all(view.info["inspector_view"]["box"][0] >= 400 for view in only_detail[1:3])


def test_crops_follow_the_texture_wherever_it_is():
    pixels = np.full((600, 800, 3), 90, np.uint8)
    rng = np.random.default_rng(5)
    pixels[350:590, 20:260] = rng.integers(0, 256, (240, 240, 3), dtype=np.uint8)
    views = make_views(Image.fromarray(pixels), 256, max_crops=1)
    left, top, right, bottom = views[1].info["inspector_view"]["box"]
    assert views[1].size == (364, 364)  # one crop takes the whole crop budget (13 x 13 tokens)
    # It covers the textured square, give or take the 8 px snap to the JPEG block grid.
    assert left <= 20 + 8 and right >= 260 - 8 and top <= 350 + 8 and bottom >= 590 - 8


def test_small_image_is_padded_not_upscaled():
    image = sample_rgb(40, 30)
    views = make_views(image, 256)
    crop = views[1]
    assert crop.size == (56, 56) and crop.info["inspector_view"]["padding"] == (8, 13, 8, 13)
    assert np.array_equal(np.asarray(crop)[13:43, 8:48], np.asarray(image))
    glob = views[0]
    left, top, right, bottom = glob.info["inspector_view"]["padding"]
    assert np.array_equal(np.asarray(glob)[top: glob.height - bottom, left: glob.width - right], np.asarray(image))


def test_whole_image_is_one_crop_when_it_fits_the_budget():
    views = make_views(sample_rgb(300, 200), 256)
    assert len(views) == 2 and views[1].size == (280, 196)


def test_global_view_keeps_the_aspect_ratio():
    views = make_views(sample_rgb(4000, 1000), 256)
    left, top, right, bottom = views[0].info["inspector_view"]["padding"]
    content_w, content_h = views[0].width - left - right, views[0].height - top - bottom
    assert abs(content_w / content_h - 4.0) < 0.1


def test_views_are_deterministic():
    image = half_flat_half_textured(1000, 700)
    first, second = make_views(image), make_views(image)
    assert [v.info for v in first] == [v.info for v in second]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, second, strict=True))


def test_other_modes_are_converted():
    views = make_views(sample_rgb(300, 300).convert("L"), 64)
    assert_valid_views(views, 64)


def test_budget_too_small_is_a_value_error():
    with pytest.raises(ValueError, match="too small"):
        make_views(sample_rgb(), 7)


def test_loaded_extreme_aspect_gives_valid_views():
    image = load_image(sample_rgb(2000, 8))
    assert_valid_views(make_views(image), 256)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(width=st.integers(1, 3000), height=st.integers(1, 3000), budget=st.integers(8, 1500),
       max_crops=st.integers(1, 5), smooth=st.booleans())
def test_views_property(width, height, budget, max_crops, smooth):
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    views = make_views(image, budget, max_crops=max_crops, smooth_crop=smooth)
    assert_valid_views(views, budget)
    assert len(views) <= 1 + max_crops
    assert_native_crops(image, views)
