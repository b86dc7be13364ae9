"""A tiny offline stand-in for Qwen2-VL-2B-Instruct, and the exact 2B shape.

No weights can be downloaded where this project is built and tested, so tests and the
offline demo use a model folder that this module writes from scratch: the real
`Qwen2VLForConditionalGeneration`, `Qwen2Tokenizer` (a byte-level BPE trained here,
with Qwen's special tokens and pre-tokenizer), `Qwen2VLImageProcessor` and the Qwen2-VL
chat template. The folder looks like a Hub snapshot and is loaded by `load_base`,
the code path that loads `Qwen/Qwen2-VL-2B-Instruct`.

`qwen2_vl_2b_config()` gives the exact 2B shape, for benchmarks that need the real
model's speed and memory without its weights. The stand-in's hand-set vision encoder is
`inspector.tiny_perception`; its pre-training, a training script (train/pretrain_tiny.py).

    python -m inspector tiny /tmp/tiny-qwen2-vl
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from inspector.model import LANGUAGE_LORA_TARGETS
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
