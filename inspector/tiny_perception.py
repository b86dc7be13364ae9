"""The tiny stand-in's eyes: vision-encoder weights written, not learned (train/pretrain_tiny.py sets them).
"""

from __future__ import annotations

# The vision encoder of the pre-trained stand-in is set, not learned. A 2-layer model trained for
# minutes on a CPU does not learn to see grain or softness (measured: its words for them were right
# exactly as often as the commonest word), while Qwen2-VL's encoder, trained on billions of
# pictures, does. So its weights are written to compute what classic no-reference quality measures
# compute (BRISQUE- and NIQE-style local statistics), inside the real Qwen2-VL vision blocks:
#   patch embedding  2-D DCT filters of each 14x14 patch, and the colour means;
#   block 0          attention adds a constant reference pair (+R, -R); the MLP takes, per frequency
#                    band, the mean magnitude of the patch's DCT coefficients;
#   block 1          the MLP compresses each band's magnitude to a log scale (ln 2 per octave);
#   block 2          attention, into every token: one head averages those log magnitudes over
#                    the view, one takes them at its most detailed tokens (a soft maximum of one
#                    band: the sharpest edges tell soft from crisp), one at its flattest tokens
#                    (a soft minimum: where grain and blocks show best).
# Every channel has a negated twin, so LayerNorm's mean is exactly 0; with the reference pair far
# larger than the rest, its std is nearly fixed, so each LayerNorm acts as a fixed scaling and
# keeps the magnitudes (a plain LayerNorm would divide them out), in bf16 too. The merger and the
# language model are what pre-training teaches; our types, severities and bands stay the
# adapter's to learn. Dynamic int8 does not keep these activations (README, "Training").

PERCEPTION_BANDS = ((1, 3), (3, 5), (5, 8), (8, 11), (11, 14), (14, 18), (18, 22), (22, 27))  # u + v of DCT(u, v)
PERCEPTION_REFERENCE = 300.0  # content energy reached 4.6e3 on the tiny recipe's photos: R^2 = 9e4
PERCEPTION_LOG_FLOOR = 0.02  # about 1/4 of a mild grain's magnitude; above the rounding of 8-bit and bf16 pixels
PERCEPTION_LOG_OCTAVES = 12  # octaves of the log scale, from the floor up
PERCEPTION_PEAK_BAND = 4  # the band whose soft maximum (minimum) over the view picks its most (least) detailed tokens
PERCEPTION_PEAK_SHARPNESS = 4.0  # attention weight ~ exp(+-4 log-magnitude): ~ magnitude^+-4


def perception_layout(embed_dim: int, colours: int = 3) -> dict[str, slice | int]:
    """Channel layout of the stand-in's vision tokens: textures, colours, band logs, their view means and
    their values at the view's most and least detailed tokens (each with a negated twin), and the reference."""
    bands = len(PERCEPTION_BANDS)
    textures = (embed_dim - 2 * colours - 2 - 8 * bands) // 2
    if textures < 2 * bands:
        raise ValueError(f"embed_dim={embed_dim} leaves {textures} DCT filters, fewer than 2 per band")
    layout, start = {}, 0
    for name, width in (("texture", textures), ("colour", colours), ("log", bands), ("mean", bands), ("peak", bands),
                        ("floor", bands)):
        layout[name], layout[name + "_twin"] = slice(start, start + width), slice(start + width, start + 2 * width)
        start += 2 * width
    layout["reference"], layout["reference_twin"] = start, start + 1
    return layout


def set_perception(visual) -> None:
    """Write the perception weights above into a Qwen2-VL vision encoder of depth >= 3 (in place).

    The merger's LayerNorm starts as the same fixed scaling (x4); its MLP keeps its weights,
    for pre-training to train.
    """
    import math

    import numpy as np
    import torch

    patch = visual.patch_embed.proj
    channels, colours, temporal, size = patch.weight.shape[:4]
    layout = perception_layout(channels, colours)
    n_tex = layout["texture"].stop - layout["texture"].start
    references = [layout["reference"], layout["reference_twin"]]
    blocks = visual.blocks
    if len(blocks) < 3:
        raise ValueError("the perception encoder needs at least 3 vision blocks")
    # LayerNorm of x = content + R (e_ref - e_twin): mean 0, std sigma0 (the content adds little)
    sigma0 = PERCEPTION_REFERENCE * math.sqrt(2 / channels)
    scale = 1.0 / sigma0  # what each LayerNorm multiplies a content channel by

    def twin(name: str) -> slice:
        return layout[name + "_twin"]

    with torch.no_grad():
        for parameter in [*visual.patch_embed.parameters(), *blocks.parameters()]:  # the merger stays
            parameter.zero_()
        # patch embedding: DCT filters (and negated twins), colour means (and twins)
        x = np.arange(size)
        frequencies = sorted(((u, v) for u in range(size) for v in range(size) if (u, v) != (0, 0)),
                             key=lambda f: (f[0] + f[1], f))
        chosen = [frequencies[i] for i in np.round(np.linspace(0, len(frequencies) - 1, n_tex)).astype(int)]
        weights = np.zeros((channels, colours, temporal, size, size), dtype=np.float32)
        for index, (u, v) in enumerate(chosen):
            b = np.outer(np.cos(np.pi * (2 * x + 1) * u / (2 * size)), np.cos(np.pi * (2 * x + 1) * v / (2 * size)))
            b /= np.linalg.norm(b) * math.sqrt(colours * temporal)
            weights[layout["texture"].start + index] = b
            weights[twin("texture").start + index] = -b
        flat = np.full((size, size), 1.0 / size, dtype=np.float32) / math.sqrt(temporal) * 0.05
        for colour in range(colours):
            weights[layout["colour"].start + colour, colour] = flat
            weights[twin("colour").start + colour, colour] = -flat
        patch.weight.copy_(torch.from_numpy(weights))
        norms = [(norm, 1.0) for block in blocks for norm in (block.norm1, block.norm2)]
        for norm, gain in norms + [(visual.merger.ln_q, 4.0)]:
            norm.weight.fill_(gain)
            norm.bias.zero_()
            norm.weight[references] = 0.0
        # block 0: the reference pair; per band, the mean magnitude of its DCT coefficients
        blocks[0].attn.proj.bias[references[0]] = PERCEPTION_REFERENCE
        blocks[0].attn.proj.bias[references[1]] = -PERCEPTION_REFERENCE
        fc1, fc2 = blocks[0].mlp.fc1, blocks[0].mlp.fc2
        sharp = 100.0  # x tanh(0.85 sharp x) = |x| beyond 0.02
        band_of = [next(b for b, (lo, hi) in enumerate(PERCEPTION_BANDS) if lo <= u + v < hi) for u, v in chosen]
        counts = np.bincount(band_of, minlength=len(PERCEPTION_BANDS))
        for index, band in enumerate(band_of):
            for sign, unit in ((1.0, 2 * index), (-1.0, 2 * index + 1)):
                fc1.weight[unit, layout["texture"].start + index] = sign * sharp / scale
                fc2.weight[layout["log"].start + band, unit] = 1.0 / (sharp * counts[band])
                fc2.weight[twin("log").start + band, unit] = -1.0 / (sharp * counts[band])
        # block 1: each band's magnitude m to a log scale, as a sum of saturating units, one per
        # octave from `floor` up: qg(1) - qg(1 - m / t) rises like m / t and levels off at
        # qg(1) = 0.85 past t (qg: quick_gelu). Bounded terms, so bf16 keeps the sum (a sum of
        # hinges would cancel terms in the hundreds). f(m) ~ ln 2 per octave of m above `floor`.
        fc1, fc2 = blocks[1].mlp.fc1, blocks[1].mlp.fc2
        knee = 1.0 * torch.sigmoid(torch.tensor(1.702)).item()  # qg(1)
        weight = math.log(2) / knee
        octaves = PERCEPTION_LOG_OCTAVES
        linear = 200.0  # qg(200 m) / 200 = m beyond 0.01: the unit that takes m itself back out
        for band in range(len(PERCEPTION_BANDS)):
            out, out_twin = layout["log"].start + band, twin("log").start + band
            for k in range(octaves):
                unit = band * (octaves + 1) + k
                fc1.weight[unit, out] = -1.0 / (PERCEPTION_LOG_FLOOR * 2 ** k) / scale
                fc1.bias[unit] = 1.0
                fc2.weight[out, unit], fc2.weight[out_twin, unit] = -weight, weight
            unit = band * (octaves + 1) + octaves
            fc1.weight[unit, out] = linear / scale
            fc2.weight[out, unit], fc2.weight[out_twin, unit] = -1.0 / linear, 1.0 / linear
            fc2.bias[out], fc2.bias[out_twin] = octaves * weight * knee, -octaves * weight * knee
        # block 2, head 0: zero queries and keys, so uniform attention averages the band logs over the view
        attn, dim = blocks[2].attn, channels
        head = dim // attn.num_heads
        for band in range(len(PERCEPTION_BANDS)):
            attn.qkv.weight[2 * dim + band, layout["log"].start + band] = 1.0 / scale
            attn.proj.weight[layout["mean"].start + band, band] = 1.0
            attn.proj.weight[twin("mean").start + band, band] = -1.0
        # heads 1 and 2: a constant query (+1, -1) against keys = one band's log, so attention goes
        # to the tokens where it peaks (is lowest). Query and key sit in the head dimension that the
        # 2-D rotary embedding turns slowest (its last height frequency: ~1e-4 rad per token), so
        # position does not matter.
        if attn.num_heads < 3:
            raise ValueError("the perception encoder needs at least 3 attention heads")
        slow = head // 4 - 1
        if float(visual.rotary_pos_emb.inv_freq[-1]) > 1e-3:
            raise ValueError("the vision rotary embedding turns too fast for position-free attention")
        for index, (name, sign) in enumerate((("peak", 1.0), ("floor", -1.0)), start=1):
            offset = index * head
            attn.qkv.bias[offset + slow] = sign
            attn.qkv.weight[dim + offset + slow, layout["log"].start + PERCEPTION_PEAK_BAND] = \
                PERCEPTION_PEAK_SHARPNESS * math.sqrt(head) / scale
            for band in range(len(PERCEPTION_BANDS)):
                attn.qkv.weight[2 * dim + offset + band, layout["log"].start + band] = 1.0 / scale
                attn.proj.weight[layout[name].start + band, offset + band] = 1.0
                attn.proj.weight[twin(name).start + band, offset + band] = -1.0
