"""The pre-trained stand-in's generic task: its pictures, their words, and a short run of it.

The whole pre-training (minutes) runs in the slow lifecycle test; here a few steps prove
that the pieces fit: new pictures every step, captions in the stand-in's own words, and
a record of how well it describes pictures it never saw.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from inspector.taxonomy import DEGRADATION_TYPES, SEVERITIES
from train.pretrain_tiny import PRETRAIN_QUALITIES, _apply_qualities, _dead_leaves, _synthetic_scene, pretrain_tiny


def test_scenes_are_deterministic_by_seed_and_described_in_json():
    first = [_synthetic_scene(np.random.default_rng(7)) for _ in range(2)]
    assert first[0][1] == first[1][1]
    assert np.array_equal(np.asarray(first[0][0]), np.asarray(first[1][0]))
    image, answer = first[0]
    assert image.size == (224, 224) and image.mode == "RGB"
    fields = json.loads(answer)
    assert set(fields) == {"shape", "colour", "texture", "scale"} | {key for key, *_ in PRETRAIN_QUALITIES}


def test_quality_words_are_the_stand_ins_own_not_the_taxonomys():
    words = {word for _, _, _, thresholds in PRETRAIN_QUALITIES for word in thresholds}
    keys = {key for key, *_ in PRETRAIN_QUALITIES}
    assert not words & set(SEVERITIES), "the adapter must learn our severity words"
    assert not keys & set(DEGRADATION_TYPES), "the adapter must learn our type names"


def test_quality_words_name_what_was_done_to_the_picture():
    """Every word comes from its quality's table, each word turns up, and grain shows in the pixels."""
    from PIL import Image

    flat = Image.new("RGB", (64, 64), (120, 130, 140))
    seen = {key: set() for key, *_ in PRETRAIN_QUALITIES}
    spread = {}
    for seed in range(200):
        image, words = _apply_qualities(flat, np.random.default_rng(seed))
        for key, _, _, thresholds in PRETRAIN_QUALITIES:
            assert words[key] in thresholds
            seen[key].add(words[key])
        spread.setdefault(words["grain"], []).append(float(np.asarray(image, dtype=np.float32).std()))
    assert all(len(words) == len(thresholds) for (key, _, _, thresholds), words in
               zip(PRETRAIN_QUALITIES, seen.values())), seen
    assert np.median(spread["heavy"]) > np.median(spread["light"]) > np.median(spread["clean"])


def test_a_short_pretraining_writes_a_loadable_model_and_its_record(tmp_path):
    from transformers import Qwen2VLForConditionalGeneration

    folder = pretrain_tiny(tmp_path / "base", caption_steps=2, batch_size=2, held_out_pictures=4)
    record = json.loads((folder / "pretraining.json").read_text())
    assert record["pictures"] == 2 * 2
    fields = {"shape", "colour", "texture", "scale"} | {key for key, *_ in PRETRAIN_QUALITIES}
    for measure in ("accuracy", "commonest_word"):
        assert set(record["held_out"][measure]) == fields
        assert all(0.0 <= share <= 1.0 for share in record["held_out"][measure].values())
    assert all(share > 0 for share in record["held_out"]["commonest_word"].values())
    model = Qwen2VLForConditionalGeneration.from_pretrained(folder)  # the loading path of the real base
    fresh = _perceiving_encoder()
    encoder = model.model.visual
    for name, parameter in [*encoder.patch_embed.named_parameters(), *encoder.blocks.named_parameters()]:
        assert torch.equal(parameter, dict([*fresh.patch_embed.named_parameters(),
                                            *fresh.blocks.named_parameters()])[name]), f"{name} changed"


# ----------------------------------------------------------------------------- the stand-in's eyes


def _perceiving_encoder():
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from inspector.tiny import TINY_TEXT, TINY_VISION
    from inspector.tiny_perception import set_perception

    config = Qwen2VLConfig(text_config=dict(TINY_TEXT, vocab_size=64), vision_config=dict(TINY_VISION))
    visual = Qwen2VLForConditionalGeneration(config).model.visual.eval()
    set_perception(visual)
    return visual


def _encode(visual, images, dtype=torch.float32):
    from transformers import Qwen2VLImageProcessor

    inputs = Qwen2VLImageProcessor()(images=images, return_tensors="pt")
    with torch.inference_mode():
        out = visual.to(dtype)(inputs["pixel_values"].to(dtype), grid_thw=inputs["image_grid_thw"])
    return out.last_hidden_state.float()


def _view_means(visual, images, dtype=torch.float32) -> np.ndarray:
    """Per image (one view each), the band log magnitudes averaged over the view, low to high frequency."""
    from inspector.tiny_perception import perception_layout

    layout = perception_layout(visual.patch_embed.proj.weight.shape[0])
    hidden = _encode(visual, images, dtype)
    per_image = hidden.shape[0] // len(images)
    return hidden[::per_image, layout["mean"]].numpy()


def test_the_encoder_sees_grain_and_softness_in_its_view_means():
    """More grain lifts every band; more blur lowers the high bands of a textured picture."""
    from PIL import Image

    from inspector.evidence.synthesis import apply_blur, apply_noise, to_uint8

    visual = _perceiving_encoder()
    rng = np.random.default_rng(0)
    flat = np.full((112, 112, 3), 128.0, dtype=np.float32)
    grainy = [Image.fromarray(to_uint8(apply_noise(flat, sigma=s, kind="gaussian", rng=rng) if s else flat))
              for s in (0, 3, 10, 30)]
    means = _view_means(visual, grainy)
    assert np.all(np.diff(means, axis=0) > 0.3), means
    textured = np.asarray(_dead_leaves(np.random.default_rng(3), 112, smallest=2.0), dtype=np.float32)
    soft = [Image.fromarray(to_uint8(apply_blur(textured, sigma=s, kind="gaussian", rng=rng) if s else textured))
            for s in (0, 1.5, 4)]
    high = _view_means(visual, soft)[:, -4:].mean(1)
    assert high[0] > high[1] > high[2], high


def test_every_channel_has_a_negated_twin_so_layernorm_keeps_magnitudes():
    from inspector.tiny_perception import PERCEPTION_REFERENCE, perception_layout

    visual = _perceiving_encoder()
    layout = perception_layout(visual.patch_embed.proj.weight.shape[0])
    image = _synthetic_scene(np.random.default_rng(5))[0].resize((56, 56))
    hidden = _encode(visual, [image])
    for name in ("texture", "colour", "log", "mean"):
        assert torch.allclose(hidden[:, layout[name]], -hidden[:, layout[name + "_twin"]], atol=1e-4), name
    assert torch.allclose(hidden[:, layout["reference"]], torch.tensor(PERCEPTION_REFERENCE))
    assert torch.allclose(hidden[:, layout["reference_twin"]], torch.tensor(-PERCEPTION_REFERENCE))
    assert abs(float(hidden.mean(1).abs().max())) < 1e-3, "LayerNorm sees a zero mean"


def test_the_encoder_sees_the_same_in_bf16():
    """The app runs bf16 on CPUs that have it: the view means must not drown in rounding.

    Measured: bf16 reads grain (sigma 2 and 8) within 0.05 log units, and a perfectly flat
    picture as faint texture (up to 0.5 in one band: the rounding of its patch sums), against
    a step of 1.4 log units from sigma 2 to 8; the lifecycle test checks what bf16 costs in
    macro F1.
    """
    from PIL import Image

    from inspector.evidence.synthesis import apply_noise, to_uint8

    flat = np.full((56, 56, 3), 90.0, dtype=np.float32)
    images = [Image.fromarray(to_uint8(apply_noise(flat, sigma=s, kind="gaussian", rng=np.random.default_rng(1))
                                       if s else flat)) for s in (0, 2, 8)]
    exact = _view_means(_perceiving_encoder(), images)
    rounded = _view_means(_perceiving_encoder(), images, torch.bfloat16)
    assert np.abs(rounded - exact)[1:].max() < 0.1, (exact, rounded)
    assert np.abs(rounded - exact).max() < 0.6, (exact, rounded)
    assert np.all(np.diff(rounded, axis=0) > 1.0), rounded
