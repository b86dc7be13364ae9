"""A tiny offline stand-in for Qwen2-VL-2B-Instruct, and the exact 2B shape.

No weights can be downloaded where this project is built and tested, so tests and the
offline demo use a model folder that this module writes from scratch: the real
`Qwen2VLForConditionalGeneration`, `Qwen2Tokenizer` (a byte-level BPE trained here,
with Qwen's special tokens and pre-tokenizer), `Qwen2VLImageProcessor` and the Qwen2-VL
chat template. The folder looks like a Hub snapshot and is loaded by `load_base`,
the code path that loads `Qwen/Qwen2-VL-2B-Instruct`.

`qwen2_vl_2b_config()` gives the exact 2B shape, for benchmarks that need the real
model's speed and memory without its weights.

    python -m inspector tiny /tmp/tiny-qwen2-vl
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from inspector.report import format_answer
from inspector.taxonomy import DEGRADATION_TYPES, SEVERITIES, TYPE_LABELS

log = logging.getLogger(__name__)

# Qwen2's special tokens, in the order of the real vocabulary (ids 151643...).
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)

# Qwen2-VL-Instruct's chat template (chat_template.json of the released model).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The shape of Qwen/Qwen2-VL-2B-Instruct (its config.json), for speed and memory runs.
QWEN2_VL_2B_TEXT = dict(
    vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
    num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
    rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24],
                                        "rope_theta": 1000000.0},
    bos_token_id=151643, eos_token_id=151645, tie_word_embeddings=True,
)
QWEN2_VL_2B_VISION = dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4,
                          patch_size=14, spatial_merge_size=2, temporal_patch_size=2)

TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6,
                 rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
                 tie_word_embeddings=True)
TINY_VISION = dict(depth=3, embed_dim=160, hidden_size=64, num_heads=4, mlp_ratio=2,
                   patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
TINY_VOCAB_SIZE = 1024


def qwen2_vl_2b_config(tokenizer=None):
    """The config of Qwen2-VL-2B-Instruct, built offline; with `tokenizer` (the tiny stand-in's),
    the image and vision tokens are that tokenizer's ids, so its processor can drive the model."""
    from transformers import Qwen2VLConfig

    config = Qwen2VLConfig(
        text_config=dict(QWEN2_VL_2B_TEXT), vision_config=dict(QWEN2_VL_2B_VISION),
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
        vision_end_token_id=151653, tie_word_embeddings=True,
    )
    if tokenizer is not None:
        for key, token in (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
                           ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")):
            setattr(config, key, tokenizer.convert_tokens_to_ids(token))
    return config


def build_2b_shaped(folder: str | Path, seed: int = 0) -> Path:
    """A model folder of the exact Qwen2-VL-2B shape, random-initialised (bf16, 4.4 GB), with
    the tiny stand-in's tokenizer and processor: what speed and memory runs load and train
    through the real loading path (`load_base`, nf4 included) without the real weights."""
    import shutil
    import tempfile

    import torch
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    folder = Path(folder)
    with tempfile.TemporaryDirectory() as scratch:
        processor = AutoProcessor.from_pretrained(build_tiny(Path(scratch) / "tiny", seed))
        torch.manual_seed(seed)
        model = Qwen2VLForConditionalGeneration(qwen2_vl_2b_config(processor.tokenizer)).to(torch.bfloat16)
        model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
        if folder.exists():
            shutil.rmtree(folder)
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    log.info("random Qwen2-VL-2B-shaped model written to %s", folder)
    return folder


def training_corpus() -> list[str]:
    """Text the tiny tokenizer learns its merges from: the prompts and answers we use."""
    from inspector.prompts import DEFAULT_INSTRUCTION

    lines = [DEFAULT_INSTRUCTION, "You are a helpful assistant.", "system", "user", "assistant"]
    for kind in DEGRADATION_TYPES:
        for severity in SEVERITIES:
            labels = {other: "none" for other in DEGRADATION_TYPES} | {kind: severity}
            lines.append(format_answer(labels))
            lines.append(f"The image shows {severity} {TYPE_LABELS[kind]}.")
    lines += [
        "The image appears sharp and clean, with no visible noise or compression artifacts.",
        "This photo is slightly blurry and noisy; the details look soft and pixelated.",
        "How many people are in this image? What is the value in the chart? Answer with one word.",
        "0 1 2 3 4 5 6 7 8 9 10 yes no a the of and is in on with",
    ]
    return lines


def build_tokenizer(folder: Path):
    """Train a byte-level BPE with Qwen2's pre-tokenizer and special tokens; save it."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE - len(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(training_corpus(), trainer=trainer)
    vocab = backend.get_vocab()
    merges = [tuple(pair) for pair in json.loads(backend.to_str())["model"]["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, extra_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|im_end|>", "<|endoftext|>")],
        model_max_length=32768,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return tokenizer


def build_tiny(folder: str | Path, seed: int = 0):
    """Write a tiny Qwen2-VL model folder (config, safetensors, tokenizer, processor)."""
    import torch
    from transformers import (GenerationConfig, Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                              Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    text = dict(TINY_TEXT, vocab_size=len(tokenizer), bos_token_id=ids["<|endoftext|>"],
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    config = Qwen2VLConfig(
        text_config=text, vision_config=dict(TINY_VISION), tie_word_embeddings=True,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"], do_sample=False,
    )
    model.save_pretrained(folder)
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(folder)
    size = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
    log.info("tiny Qwen2-VL written to %s (%.1f MB, seed %d)", folder, size / 1e6, seed)
    return folder


def build_tiny_adapter(base_folder: str | Path, out: str | Path, seed: int = 0, rank: int = 8):
    """An untrained LoRA adapter for the tiny base, with random (non-zero) B matrices.

    PEFT initialises B to zero, which would make the adapter's output equal the base's;
    random weights make the two differ, as a trained adapter would, for tests and demos.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2VLForConditionalGeneration

    base = Qwen2VLForConditionalGeneration.from_pretrained(base_folder, dtype=torch.float32)
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=LANGUAGE_LORA_TARGETS,
                        init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    model.save_pretrained(out)
    return Path(out)


# The language model's projections; the vision tower's (qkv, proj, fc1, fc2) are named
# otherwise, so these names touch the language model only.
LANGUAGE_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# --------------------------------------------------------------------------- a pre-trained stand-in
#
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
       the vision encoder set to see (`_set_perception`: DCT band log magnitudes per token
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
    record = {"pretrained": "inspector.tiny.pretrain_tiny", "seed": seed,
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
    _set_perception(model.model.visual)


# --------------------------------------------------------------------------- the stand-in's eyes
#
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


def _set_perception(visual) -> None:
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
    from inspector.tasks.collate import ASSISTANT_HEADER, END_OF_TURN, dialogue_labels

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


def main(argv: list[str] | None = None) -> None:
    """`python -m inspector.tiny FOLDER [--pretrain]`: write the tiny stand-in (pre-trained with --pretrain)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m inspector.tiny", description=main.__doc__)
    parser.add_argument("folder", help="where to write the model folder")
    parser.add_argument("--pretrain", action="store_true",
                        help="pre-train it briefly (pretrain_tiny): about 4 min on 2 CPU cores")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    (pretrain_tiny if args.pretrain else build_tiny)(args.folder, seed=args.seed)


if __name__ == "__main__":
    main()
