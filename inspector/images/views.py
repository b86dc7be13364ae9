"""`make_views`: what the vision-language model looks at.

Blur, noise, JPEG blocks and pixelation live at native resolution, and the downscale
a VLM processor would apply erases them. So the model gets one small downscaled
global view (the composition) plus native-resolution crops (the evidence), all sized
in whole Qwen2-VL tokens (28x28 px each) so the processor does not resample them
again. Training and serving call the same function (through the task's `views`), so
they cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from PIL import Image

from .pixels import to_rgb

# Qwen2-VL: 14 px patches merged 2x2, so one visual token per 28x28 px block; the
# processor refuses sides under 56 px and aspect ratios over 200:1.
QWEN_PATCH = 28
MIN_VIEW_PATCHES = 2
MAX_ASPECT_RATIO = 200
PREVIEW_SIDE = 512  # detail map for crop placement: a few ms, enough to place 56 px crops


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
    rgb = to_rgb(image, "the image")
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
