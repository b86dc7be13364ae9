"""Pre-train the tiny offline stand-in briefly, so that a LoRA adapter on it has something to steer.

    python train/pretrain_tiny.py --config train/recipes/tiny.yaml       # writes the recipe's base_model
    python train/pretrain_tiny.py --folder runs/tiny/base --seed 0       # about 4 min on 2 CPU cores

The stand-in itself is `inspector.tiny.build_tiny` (run time: tests and the offline demo
use it untrained); its vision encoder's hand-set weights are `inspector.tiny_perception`.
This script is the training loop on top: synthetic pictures, their own instruction, and
an AdamW run over the language model and the vision merger. Writes the model folder and
`pretraining.json` (the run, and how well it describes new pictures).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from inspector.tiny import build_tiny
from inspector.tiny_perception import set_perception
from train.config import parse_config

log = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    """Where to write the stand-in and how long to pre-train it; a recipe's base_model is the folder."""

    recipe_keys: ClassVar[dict[str, str]] = {"base_model": "folder"}

    folder: str | None = field(default=None, metadata={"help": "the model folder to write"})
    seed: int = 0
    caption_steps: int = 2400  # more: better eyes-to-words, ~0.1 s each on 2 CPU cores
    pretrain_batch_size: int = 8  # pictures per step
    pretrain_visual_token_budget: int = 64  # the tiny recipe's budget
    pretrain_learning_rate: float = 2e-3
    held_out_pictures: int = 64  # new pictures described to score the run (pretraining.json)

    def __post_init__(self) -> None:
        if not self.folder:
            raise ValueError("--folder is required (or a --config recipe with base_model): where to write the model")


# A randomly initialised tiny base is a poor stand-in for a pre-trained one: with hidden size 64
# and init std 0.02 its output head is near uniform and its vision tower passes on little of
# what it sees, so a LoRA adapter on top has nothing to steer. `pretrain_tiny` gives it, in
# minutes, what pre-training gives Qwen2-VL: an encoder that sees texture, grain and softness
# (set by construction: "the stand-in's eyes" below), and a model that answers in JSON about what a picture
# shows and how it looks ("soft", "grainy", in words of its own), on a generic task of its own
# (synthetic pictures, their own instruction). It never sees the photos of our data sets, the
# inspection instruction, our type names, severity words or bands: those stay the adapter's
# to learn. `benchmarks/tiny_probe.py` measures how much of the degradations its vision tokens
# carry (README, "Training").

PRETRAIN_INSTRUCTION = ("Describe the picture as JSON: the shape, its colour, the background texture and its scale, "
                        "then how it looks: focus, pixels, grain and blocks.")
PRETRAIN_COLOURS = {"red": (200, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 200), "yellow": (230, 210, 40),
                    "white": (240, 240, 240), "black": (20, 20, 20)}
PRETRAIN_SHAPES = ("circle", "square", "triangle")
PRETRAIN_TEXTURES = ("plain", "stripes", "checks", "dots", "leaves")
PRETRAIN_SCALES = {"fine": (2.0, 4.0), "medium": (6.0, 10.0), "coarse": (16.0, 28.0)}  # period in pixels
# How a picture looks, in the stand-in's own words: what a pre-trained VLM can say of any photo
# ("a bit soft", "grainy") before it learns our schema. Each quality is applied to a scene with
# probability `chance`, its amount drawn log-uniformly over `amounts`, and named by the word
# whose range holds it. Own words and own thresholds, never the taxonomy's: the adapter still
# has to learn our types, names, severities and bands.
PretrainQuality = tuple[str, float, tuple[float, float], dict[str, float]]
PRETRAIN_QUALITIES: tuple[PretrainQuality, ...] = (
    # key, chance, amounts, {word: where it starts}
    # in the order light meets them: optics, sampling, sensor, file
    ("focus", 0.4, (0.3, 8.0), {"crisp": 0.0, "soft": 0.9, "hazy": 3.0}),  # blur sigma, px
    ("pixels", 0.35, (1.1, 6.0), {"fine": 0.0, "coarse": 1.5, "giant": 3.5}),  # down-up resize factor
    ("grain", 0.4, (1.0, 45.0), {"clean": 0.0, "light": 4.0, "heavy": 15.0}),  # noise sigma on 0-255
    ("blocks", 0.35, (20.0, 99.0), {"clean": 0.0, "light": 45.0, "heavy": 75.0}),  # 100 - JPEG quality
)


def pretrain_tiny(folder: str | Path, seed: int = 0, caption_steps: int = 2400,
                  batch_size: int = 8, visual_token_budget: int = 64, learning_rate: float = 2e-3,
                  held_out_pictures: int = 64) -> Path:
    """Write the tiny stand-in to `folder`, briefly pre-trained (full parameters) on synthetic pictures.

    1. `build_tiny(folder, seed)`, then the weights re-drawn at the scale of this width
       (std 1/sqrt(fan_in); the 0.02 of `initializer_range` suits widths near 2000), and
       the vision encoder set to see (`set_perception`: DCT band log magnitudes per token
       and per view, what classic no-reference quality measures compute).
    2. The language model and the vision merger learn to describe the pictures in JSON,
       what they show and how they look:
       {"shape":...,"colour":...,"texture":...,"scale":...,"focus":...,...}.
       The encoder stays as set. A learned one did not learn to see: with DCT-initialised
       filters and random blocks, trained end to end or frozen, the stand-in named focus,
       grain and blocks exactly as often as the commonest word, and its adapter answered
       "none" for every type (macro F1 0.0); with the set encoder and 2400 steps it names
       grain right 95 % of the time (commonest word: 80 %) and its adapter reaches macro
       F1 0.64 (README, "Training").
    Every step draws new pictures: a 2-layer model shown the same few thousand pictures
    again learns them by heart instead of learning to see. `pretraining.json` records
    the run and, per caption field, the share of `held_out_pictures` new pictures it
    describes right, beside what always saying the commonest word would get.
    Deterministic by seed. Returns `folder`.
    """
    import time

    import numpy as np
    import torch
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    started = time.perf_counter()
    folder = Path(build_tiny(folder, seed))
    processor = AutoProcessor.from_pretrained(folder)
    model = Qwen2VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    torch.manual_seed(seed)
    _rescale_initialisation(model, seed)
    rng = np.random.default_rng(seed)
    _train_captions(model, _pretrain_batches(processor, rng, batch_size, visual_token_budget), caption_steps,
                    learning_rate)
    model.save_pretrained(folder)
    held_out = _caption_accuracy(model, processor, np.random.default_rng(seed + 1), visual_token_budget,
                                 held_out_pictures)
    record = {"pretrained": "train/pretrain_tiny.py", "seed": seed,
              "pictures": caption_steps * batch_size, "caption_steps": caption_steps,
              "instruction": PRETRAIN_INSTRUCTION,
              "visual_token_budget": visual_token_budget, "held_out": held_out,
              "seconds": round(time.perf_counter() - started, 1)}
    (folder / "pretraining.json").write_text(json.dumps(record, indent=2) + "\n")
    log.info("pre-trained tiny Qwen2-VL written to %s in %.0f s", folder, record["seconds"])
    return folder


def _pretrain_batches(processor, rng, size: int, visual_token_budget: int):
    """Endless batches of `size` new synthetic pictures: inputs and answer-only labels."""
    from inspector.images import make_views
    from inspector.prompts import build_inputs

    while True:
        scenes = [_synthetic_scene(rng) for _ in range(size)]
        views = [make_views(image, visual_token_budget) for image, _ in scenes]
        batch = build_inputs(processor, views, PRETRAIN_INSTRUCTION, answers=[answer for _, answer in scenes])
        batch["labels"] = _answer_labels(batch, processor)
        yield batch


def _caption_accuracy(model, processor, rng, visual_token_budget: int,
                      pictures: int = 64) -> dict[str, dict[str, float]]:
    """Per caption field, the share of new pictures the pre-trained stand-in describes right
    (greedy), and the share a constant answer of the field's commonest word would get."""
    from collections import Counter

    import torch

    from inspector.generation import GREEDY_DECODING
    from inspector.images import make_views
    from inspector.prompts import build_inputs

    hits: dict[str, list[bool]] = {}
    truths: dict[str, Counter] = {}
    for start in range(0, pictures, 16):
        scenes = [_synthetic_scene(rng) for _ in range(min(16, pictures - start))]
        inputs = build_inputs(processor, [make_views(image, visual_token_budget) for image, _ in scenes],
                              PRETRAIN_INSTRUCTION)
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=160, **GREEDY_DECODING)
        texts = processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        for (_, answer), text in zip(scenes, texts):
            try:
                said = json.loads(text)
            except json.JSONDecodeError:  # cut short or malformed: every field counts as missed
                said = {}
            said = said if isinstance(said, dict) else {}
            for key, value in json.loads(answer).items():
                hits.setdefault(key, []).append(said.get(key) == value)
                truths.setdefault(key, Counter())[value] += 1
    return {"accuracy": {key: round(sum(flags) / len(flags), 3) for key, flags in hits.items()},
            "commonest_word": {key: round(counts.most_common(1)[0][1] / sum(counts.values()), 3)
                               for key, counts in truths.items()}}


def _rescale_initialisation(model, seed: int) -> None:
    import math

    import torch

    generator = torch.Generator().manual_seed(seed)
    layers = model.config.text_config.num_hidden_layers
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear):
                std = 1 / math.sqrt(module.in_features)
                if name.endswith(("o_proj", "down_proj", "attn.proj", "fc2")):
                    std /= math.sqrt(2 * layers)  # residual branches: keep the stream's scale
                module.weight.normal_(0.0, std, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, torch.nn.Embedding):
                module.weight.normal_(0.0, 1 / math.sqrt(module.embedding_dim), generator=generator)
    set_perception(model.model.visual)


def _synthetic_scene(rng):
    """A shape on a plain, striped, checked, dotted or leafy background, and its JSON description.

    "leaves" is the dead-leaves model (overlapping discs, power-law radii): the one texture
    with the scale-invariant statistics of natural photos, so that what the stand-in learns
    to see on these pictures carries over to photos.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    size = 224
    first = rng.integers(0, 256, 3)
    second = np.clip(first + rng.choice([-1, 1], 3) * rng.integers(40, 120, 3), 0, 255)
    texture = PRETRAIN_TEXTURES[rng.integers(len(PRETRAIN_TEXTURES))]
    scale = list(PRETRAIN_SCALES)[rng.integers(len(PRETRAIN_SCALES))]
    period = rng.uniform(*PRETRAIN_SCALES[scale])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u, v = xx * np.cos(angle) + yy * np.sin(angle), -xx * np.sin(angle) + yy * np.cos(angle)
    if texture == "plain":
        mask = np.zeros((size, size))
    elif texture == "stripes":
        mask = np.floor(u / period * 2) % 2
    elif texture == "checks":
        mask = (np.floor(u / period) + np.floor(v / period)) % 2
    elif texture == "dots":
        cell = period * 1.5
        mask = ((np.mod(u, cell) - cell / 2) ** 2 + (np.mod(v, cell) - cell / 2) ** 2 < (period * 0.4) ** 2)
    if texture == "leaves":
        image = _dead_leaves(rng, size, smallest=period / 2)
    else:
        pixels = first[None, None, :] * (1 - mask[..., None]) + second[None, None, :] * mask[..., None]
        image = Image.fromarray(pixels.astype(np.uint8))
    shape = PRETRAIN_SHAPES[rng.integers(len(PRETRAIN_SHAPES))]
    colour = list(PRETRAIN_COLOURS)[rng.integers(len(PRETRAIN_COLOURS))]
    radius = rng.uniform(0.15, 0.35) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    draw, fill = ImageDraw.Draw(image), PRETRAIN_COLOURS[colour]
    if shape == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
    elif shape == "square":
        draw.rectangle((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
    else:
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=fill)
    answer = {"shape": shape, "colour": colour, "texture": texture, "scale": "none" if texture == "plain" else scale}
    image, looks = _apply_qualities(image, rng)
    return image, json.dumps(answer | looks, separators=(",", ":"))


def _dead_leaves(rng, size: int, smallest: float, most_discs: int = 1200):
    """Overlapping discs of random colours, radii with density r^-3 from `smallest` to size/4.

    Enough discs to cover the picture about twice, at most `most_discs` (a fine scale then
    leaves gaps of the first colour; drawing is the cost).
    """
    import math

    import numpy as np
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    largest = size / 4
    mean_area = math.pi * math.log(largest / smallest) / (0.5 * (smallest ** -2 - largest ** -2))
    discs = min(most_discs, math.ceil(2 * size * size / mean_area))
    # inverse CDF of p(r) ~ r^-3 on [smallest, largest]
    uniform = rng.uniform(0, 1, discs)
    radii = (smallest ** -2 - uniform * (smallest ** -2 - largest ** -2)) ** -0.5
    base = rng.integers(0, 256, 3)
    for radius, (x, y) in zip(radii, rng.uniform(-largest, size + largest, (discs, 2))):
        colour = tuple(int(c) for c in np.clip(base + rng.normal(0, 70, 3), 0, 255))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    return image


def _apply_qualities(image, rng):
    """The scene as a camera and a file might leave it: soft, grainy, blocky or coarse; and their words.

    The pixel operations are `inspector.evidence.synthesis`'s, the one place that knows how an
    image is blurred or compressed; what is applied, how much and how it is named are the
    pre-training's own (`PRETRAIN_QUALITIES`).
    """
    import math

    import numpy as np
    from PIL import Image

    from inspector.evidence.synthesis import apply_blur, apply_jpeg, apply_low_resolution, apply_noise, to_uint8

    pixels = np.asarray(image, dtype=np.float32)
    words = {}
    for key, chance, (low, high), thresholds in PRETRAIN_QUALITIES:
        amount = math.exp(rng.uniform(math.log(low), math.log(high))) if rng.random() < chance else 0.0
        words[key] = [word for word, start in thresholds.items() if amount >= start][-1]
        if amount == 0.0:
            continue
        if key == "focus":
            pixels = apply_blur(pixels, sigma=amount, kind=str(rng.choice(["gaussian", "defocus", "motion"])), rng=rng)
        elif key == "grain":
            pixels = apply_noise(pixels, sigma=amount, kind=str(rng.choice(["gaussian", "poisson_gaussian"])), rng=rng)
        elif key == "blocks":
            pixels, _ = apply_jpeg(pixels, quality=max(1, round(100 - amount)))
        else:
            interpolation = str(rng.choice(["nearest", "bilinear", "bicubic", "lanczos"]))
            pixels = apply_low_resolution(pixels, factor=amount, interpolation=interpolation)
    return Image.fromarray(to_uint8(pixels)), words


def _answer_labels(batch, processor):
    from inspector.prompts import ASSISTANT_HEADER, END_OF_TURN
    from inspector.tasks.collate import dialogue_labels

    tokenizer = processor.tokenizer
    return dialogue_labels(batch["input_ids"], batch["attention_mask"],
                           tokenizer.encode(ASSISTANT_HEADER, add_special_tokens=False),
                           tokenizer.convert_tokens_to_ids(END_OF_TURN))


def _train_captions(model, batches, steps: int, learning_rate: float) -> None:
    """The language model and the vision merger learn to describe the pictures; the encoder stays as set."""
    encoder = model.model.visual
    frozen = {id(parameter) for parameter in [*encoder.patch_embed.parameters(), *encoder.blocks.parameters()]}
    for parameter in model.parameters():
        parameter.requires_grad = id(parameter) not in frozen
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer, schedule = _optimizer(parameters, steps, learning_rate)
    model.train()
    for step, batch in zip(range(steps), batches):
        loss = model(**batch).loss
        _step(loss, parameters, optimizer, schedule)
        if (step + 1) % 200 == 0:
            log.info("tiny pre-training, captions %d/%d: loss %.3f", step + 1, steps, loss.item())
    for parameter in model.parameters():
        parameter.requires_grad = True
    model.eval()


def _optimizer(parameters, steps: int, learning_rate: float):
    import torch

    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=max(steps, 1),
                                                   pct_start=0.05)
    return optimizer, schedule


def _step(loss, parameters, optimizer, schedule) -> None:
    import torch

    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad()


def main(config: PretrainConfig) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return pretrain_tiny(config.folder, seed=config.seed, caption_steps=config.caption_steps,
                         batch_size=config.pretrain_batch_size, visual_token_budget=config.pretrain_visual_token_budget,
                         learning_rate=config.pretrain_learning_rate, held_out_pictures=config.held_out_pictures)


def parse_args(argv: list[str] | None = None) -> tuple:
    """The command line over `--config RECIPE` (train/config.py)."""
    return parse_config([PretrainConfig], argv, __doc__)


if __name__ == "__main__":
    main(*parse_args())
