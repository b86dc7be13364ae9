"""Procedural scenes: clean, photo-like images made from a seed, for calibration and tests.

The learned calibration (`train/calibrate_evidence.py`) and the benchmark need many
clean images whose content varies more than the dozen photos that ship with the
installed packages. A dead-leaves scene (Lee, Mumford & Huang 2001) is the classic
stand-in: occluding shapes whose sizes follow a power law give the 1/f spectrum and
the step edges of natural photos. Each shape is filled with a flat colour, a shading
gradient or a band-limited texture, so the scenes also hold the smooth areas, the
fine texture and the thin lines the estimators must not read as degradations.

Rendering is at twice the size and box-averaged down: edges come out antialiased,
like a lens and a sensor's pixel area make them, with no resampling pattern (a box
average by an integer factor leaves none). A faint sensor noise (sigma 0.3-1.2 on
0-255) and a lens blur (0.2-0.5 px) finish the scene: both are far below the
contract's mild thresholds, so the scene is clean.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

# Shape radii, in output px, drawn from a power law between these (exponent SIZE_EXPONENT).
MIN_RADIUS, MAX_RADIUS = 3.0, 200.0
SIZE_EXPONENT = 2.1


def dead_leaves(seed: int, size: tuple[int, int] = (512, 384), shapes: int = 700) -> Image.Image:
    """A clean RGB scene of `size` (width, height), the same for the same seed.

    >>> dead_leaves(0, (96, 64)).size
    (96, 64)
    """
    rng = np.random.default_rng(seed)
    width, height = size
    big_w, big_h = 2 * width, 2 * height
    canvas = np.empty((big_h, big_w, 3), dtype=np.float32)
    canvas[:] = rng.uniform(40, 215, 3)
    # Painted back to front: the last shapes drawn occlude the earlier ones.
    for _ in range(shapes):
        radius = 2.0 * power_law_radius(rng)
        cy, cx = rng.uniform(-radius, big_h + radius), rng.uniform(-radius, big_w + radius)
        top, bottom = int(max(0, cy - radius)), int(min(big_h, cy + radius + 1))
        left, right = int(max(0, cx - radius)), int(min(big_w, cx + radius + 1))
        if bottom <= top or right <= left:
            continue
        yy, xx = np.mgrid[top:bottom, left:right].astype(np.float32)
        inside = shape_mask(rng, yy - cy, xx - cx, radius)
        if not inside.any():
            continue
        fill = shape_fill(rng, yy, xx, radius)
        region = canvas[top:bottom, left:right]
        region[inside] = fill[inside]
    small = canvas.reshape(height, 2, width, 2, 3).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, (rng.uniform(0.2, 0.5),) * 2 + (0,))
    small = small + rng.standard_normal(small.shape, dtype=np.float32) * rng.uniform(0.3, 1.2)
    return Image.fromarray(np.clip(np.rint(small), 0, 255).astype(np.uint8), "RGB")


def power_law_radius(rng: np.random.Generator) -> float:
    """Inverse-CDF draw from p(r) ~ r^-SIZE_EXPONENT on [MIN_RADIUS, MAX_RADIUS]."""
    a = 1.0 - SIZE_EXPONENT
    low, high = MIN_RADIUS**a, MAX_RADIUS**a
    return float((low + rng.random() * (high - low)) ** (1.0 / a))


def shape_mask(rng: np.random.Generator, dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
    """A disc, an ellipse, a rotated rectangle or a thin bar around the centre."""
    kind = rng.choice(4, p=[0.35, 0.25, 0.3, 0.1])
    angle = rng.uniform(0, np.pi)
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    if kind == 0:
        return u * u + v * v <= radius * radius
    if kind == 1:
        ratio = rng.uniform(0.3, 0.9)
        return (u / radius) ** 2 + (v / (ratio * radius)) ** 2 <= 1.0
    if kind == 2:
        ratio = rng.uniform(0.3, 1.0)
        return (np.abs(u) <= radius) & (np.abs(v) <= ratio * radius)
    # Thin bars (twigs, wires, window frames): 1-4 px wide at the output size.
    return (np.abs(u) <= radius) & (np.abs(v) <= rng.uniform(1.0, 4.0))


def shape_fill(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, radius: float) -> np.ndarray:
    """Flat colour, a linear shading, or a colour modulated by band-limited texture."""
    base = rng.uniform(10, 245, 3).astype(np.float32)
    kind = rng.choice(3, p=[0.45, 0.3, 0.25])
    fill = np.broadcast_to(base, yy.shape + (3,)).copy()
    if kind == 1:
        direction = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(direction) * (xx - xx.mean()) + np.sin(direction) * (yy - yy.mean())) / max(radius, 1.0)
        fill += (rng.uniform(10, 60) * ramp)[..., None]
    elif kind == 2:
        texture = ndimage.gaussian_filter(rng.standard_normal(yy.shape).astype(np.float32), rng.uniform(1.0, 6.0))
        texture /= texture.std() + 1e-6
        fill += (rng.uniform(5, 40) * texture)[..., None]
    return np.clip(fill, 0, 255)
