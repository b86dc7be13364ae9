"""JPEG quality: read exactly from the quantization tables, or inferred from the pixels.

Method
- Tables (a JPEG file, Pillow's `quantization`): the luminance table is matched
  against the IJG tables (the standard Annex K tables scaled by quality, what libjpeg,
  Pillow, OpenCV and most software write). An exact match gives the quality exactly
  (confidence 1). Other encoders (cameras, Photoshop) give the IJG-equivalent quality
  of the median table scale, with a lower confidence.
- Pixels (a decoded JPEG saved as PNG, or an image handed over without its file): the
  luminance is cut on the 8x8 grid and DCT-transformed as the encoder did; a coefficient
  that went through a quantizer of step Q sits near a multiple of Q. The largest Q with a
  strong comb (Fan & de Queiroz, 2003) is found for the low frequencies, and the IJG
  scale that best explains them gives the quality.

Limits: pixel inference needs the 8x8 grid where the encoder put it (no crop by a
non-multiple of 8, no resize after compression, nothing added after the JPEG); qualities
above about 90 leave steps of 1-2 that cannot be told from rounding, so they read as
"no JPEG evidence" (quality 100), which is the same severity word (`none`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ITU-T T.81 Annex K tables, natural (row-major) order: what Pillow's `quantization` holds.
STANDARD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)

# Low-frequency positions (row-major index) used for pixel inference: they are
# non-zero often enough to show their quantizer, even at low quality.
PROBE_POSITIONS = np.array([1, 8, 9, 2, 16, 10, 17, 3, 24, 11, 18, 25, 4, 32, 12, 19])
# They all lie in the lowest 5x5 frequencies: only those are computed for them.
PROBE_SIZE = 5
# Above this many blocks, a regular subset is enough and keeps the cost flat.
MAX_BLOCKS = 3000


@dataclass(frozen=True)
class JpegEstimate:
    quality: float  # IJG quality 1-100; 100 where there is no JPEG evidence
    confidence: float
    source: str  # "tables", "pixels" or "none"


def ijg_table(quality: int, base: np.ndarray = STANDARD_LUMA) -> np.ndarray:
    """The table libjpeg writes at `quality` (baseline: entries clamped to 1..255)."""
    q = min(max(int(quality), 1), 100)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return np.clip(np.floor((base * scale + 50) / 100), 1, 255)


IJG_LUMA_TABLES = np.stack([ijg_table(q) for q in range(1, 101)])


def quality_from_scale(scale: float) -> float:
    """Invert libjpeg's quality -> scale mapping (scale in percent of the standard table)."""
    scale = max(scale, 1e-6)
    return float(np.clip((200.0 - scale) / 2.0 if scale <= 100 else 5000.0 / scale, 1.0, 100.0))


def luma_table(quantization) -> np.ndarray | None:
    """The luminance table from Pillow's `quantization` (dict or list), or None."""
    if not quantization:
        return None
    table = quantization.get(0) if isinstance(quantization, dict) else quantization[0]
    if table is None:
        return None
    table = np.asarray(table, dtype=np.float64).ravel()
    return table if table.size == 64 else None


def quality_from_tables(quantization) -> JpegEstimate | None:
    """Exact IJG quality from a file's tables; the nearest IJG-equivalent for other encoders."""
    table = luma_table(quantization)
    if table is None:
        return None
    exact = np.flatnonzero(np.all(IJG_LUMA_TABLES == table[None, :], axis=1))
    if exact.size:
        # Several qualities can share a table near 100 (all ones); the highest is the honest one.
        return JpegEstimate(float(exact[-1] + 1), 1.0, "tables")
    scale = float(np.median(100.0 * table / STANDARD_LUMA))
    errors = np.abs(np.log(IJG_LUMA_TABLES) - np.log(table)[None, :]).mean(axis=1)
    best = int(np.argmin(errors))
    confidence = float(np.clip(1.0 - errors[best], 0.5, 0.95))
    quality = quality_from_scale(scale) if errors[best] > 0.05 else float(best + 1)
    return JpegEstimate(quality, confidence, "tables")


DCT8 = np.array([[np.sqrt((1 if u == 0 else 2) / 8) * np.cos((2 * x + 1) * u * np.pi / 16)
                  for x in range(8)] for u in range(8)])


def block_dct(luma: np.ndarray, max_blocks: int = MAX_BLOCKS, size: int = 8) -> np.ndarray:
    """Orthonormal 8x8 DCT (the JPEG FDCT) of grid-aligned blocks, shape (n, size * size).

    Only the lowest `size` x `size` frequencies are computed (row-major, vertical
    frequency first; `size` 8 gives all 64 in JPEG's order). A regular subset of at most
    `max_blocks` blocks is used; blocks with clipped pixels are left out (the decoder
    clipped them, which breaks the quantizer comb).
    """
    rows, cols = luma.shape[0] // 8, luma.shape[1] // 8
    count = rows * cols
    chosen = np.linspace(0, count - 1, min(count, max_blocks)).astype(np.int64)
    block_rows, block_cols = chosen // cols, chosen % cols
    view = luma[: rows * 8, : cols * 8].reshape(rows, 8, cols, 8).transpose(0, 2, 1, 3)
    if chosen.size == count:
        # Every block: a reshape is much cheaper than gathering them by index.
        blocks = view.reshape(-1, 8, 8)
    else:
        # Picked from the (rows, cols, 8, 8) view: each block's rows are copied whole
        # instead of indexing every pixel (the same array, much cheaper).
        blocks = view[block_rows, block_cols]
    keep = (blocks.min(axis=(1, 2)) > 0.5) & (blocks.max(axis=(1, 2)) < 254.5)
    blocks = np.subtract(blocks[keep], 128.0, dtype=np.float64)
    # DCT8 @ block @ DCT8.T for every block, as two plain matrix products (a batched
    # matmul of 8x8 matrices pays a per-block overhead); each product keeps only the
    # `size` frequencies wanted, so the second one is (size / 8)^2 of the full cost.
    n, basis = len(blocks), DCT8[:size]
    half = (blocks.reshape(n * 8, 8) @ basis.T).reshape(n, 8, size).transpose(0, 2, 1)
    coefficients = (half.reshape(n * size, 8) @ basis.T).reshape(n, size, size).transpose(0, 2, 1)
    return coefficients.reshape(n, size * size)


def comb_step(values: np.ndarray) -> tuple[int, float]:
    """The quantizer step Q whose comb explains `values`, and the comb's strength.

    Coefficient magnitudes fall off fast, so the first multiple of Q is the most common
    non-zero value: the mode of the rounded magnitudes proposes Q, and the comb
    strength (mean cosine of 2*pi*value/Q over values at least Q/2 from zero; zeros fit
    every step) decides. At least 24 such values and a strength above 0.6 are needed,
    so the smooth histogram of an image never compressed does not make a comb.
    """
    magnitudes = np.abs(values)
    rounded = np.rint(magnitudes[magnitudes >= 1.5]).astype(np.int64)
    if rounded.size < 24:
        return 1, 0.0
    proposal = int(np.argmax(np.bincount(rounded)))
    best_step, best_strength = 1, 0.0
    for step in (proposal - 1, proposal, proposal + 1):
        if step < 2:
            continue
        votes = values[magnitudes >= 0.5 * step]
        if votes.size < 24:
            continue
        strength = float(np.cos(votes * (2.0 * np.pi / step)).mean())
        if strength > max(best_strength, 0.6):
            best_step, best_strength = step, strength
    return best_step, best_strength


def quality_from_pixels(luma: np.ndarray) -> JpegEstimate:
    """IJG-equivalent quality from the quantizer combs of low-frequency DCT coefficients."""
    if min(luma.shape) < 16:
        return JpegEstimate(100.0, 0.2, "none")
    coefficients = block_dct(luma, size=PROBE_SIZE)
    if len(coefficients) < 16:
        return JpegEstimate(100.0, 0.2, "none")
    steps, positions, weights = [], [], []
    low_index = (PROBE_POSITIONS // 8) * PROBE_SIZE + PROBE_POSITIONS % 8
    probes = np.ascontiguousarray(coefficients[:, low_index].T)
    for index, (position, values) in enumerate(zip(PROBE_POSITIONS, probes)):
        step, strength = comb_step(values)
        if step >= 3:
            steps.append(step)
            positions.append(position)
            weights.append(strength)
        elif index == 3 and not steps:
            # The lowest frequencies carry a comb in any JPEG below about quality 90:
            # none in the first four means no JPEG evidence (and saves the rest).
            break
    if len(steps) < 3:
        return JpegEstimate(100.0, 0.8 if len(coefficients) > 200 else 0.5, "none")
    steps, positions = np.array(steps), np.array(positions)
    # The IJG quality whose table best matches the steps found (exact when they agree).
    errors = np.abs(np.log(IJG_LUMA_TABLES[:, positions]) - np.log(steps)[None, :]).mean(axis=1)
    best = np.flatnonzero(errors <= errors.min() + 1e-9)
    quality = float(np.mean(best) + 1)
    spread = float(errors.min())
    confidence = float(np.clip(np.mean(weights) * min(1.0, len(steps) / 6) * (1.0 - spread), 0.3, 0.95))
    return JpegEstimate(quality, confidence, "pixels")


def estimate_jpeg(luma: np.ndarray, quantization=None) -> JpegEstimate:
    """Quality from the tables when there are any, else from the pixels."""
    from_tables = quality_from_tables(quantization)
    return from_tables if from_tables is not None else quality_from_pixels(luma)
