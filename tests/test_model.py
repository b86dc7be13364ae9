"""Loading the base and the adapter, and the one batched generate that serves both."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from conftest import HANG_GUARD_S, subprocess_env
from hubcache import populate_cache
from inspector.device import choose_runtime
from inspector.hub import Unavailable, resolve_adapter
from inspector.images import make_views
from inspector.model import ADAPTER_NAME, BASE_NAME, Inspector, InspectorConfig


def test_tiny_folder_is_hub_shaped_and_small(tiny_model):
    names = {path.name for path in tiny_model.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json",
            "generation_config.json"} <= names
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["architectures"] == ["Qwen2VLForConditionalGeneration"]
    assert sum(path.stat().st_size for path in tiny_model.iterdir()) < 8_000_000  # 5.5 MB


def test_tiny_is_deterministic_from_seed(tiny_model, tmp_path):
    from inspector.tiny import build_tiny

    again = build_tiny(tmp_path / "again", seed=0)
    assert (again / "model.safetensors").read_bytes() == (tiny_model / "model.safetensors").read_bytes()
    assert (again / "tokenizer.json").read_text() == (tiny_model / "tokenizer.json").read_text()


def test_tokenizer_has_qwen_special_tokens(tiny_inspector):
    tokenizer = tiny_inspector.processor.tokenizer
    for token in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|endoftext|>"):
        assert len(tokenizer(token)["input_ids"]) == 1, token
    assert tiny_inspector.model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")


def test_batched_base_and_adapter_equal_separate_greedy_runs(tiny_inspector):
    views = make_views(Image.open(_noise_png()), tiny_inspector.config.visual_token_budget)
    together = tiny_inspector.generate([views, views], [BASE_NAME, ADAPTER_NAME])
    alone_base = tiny_inspector.generate([views], [BASE_NAME])
    alone_adapter = tiny_inspector.generate([views], [ADAPTER_NAME])
    assert together == alone_base + alone_adapter
    # The adapter really changes the output, so the equality above is not trivial.
    assert alone_base != alone_adapter


def test_static_kv_cache_gives_the_same_greedy_reports(tiny_inspector, monkeypatch):
    """INSPECTOR_KV_CACHE=static (opt-in, for free decoding): the same answers in fp32, from a cache
    allocated per call."""
    views = make_views(Image.open(_noise_png()), tiny_inspector.config.visual_token_budget)
    monkeypatch.setattr(tiny_inspector.config, "decoding", "free")
    dynamic = tiny_inspector.generate([views, views], [BASE_NAME, ADAPTER_NAME])
    monkeypatch.setattr(tiny_inspector.config, "kv_cache", "static")
    calls = []
    original = tiny_inspector.model.generate
    monkeypatch.setattr(tiny_inspector.model, "generate",
                        lambda *args, **kwargs: calls.append(kwargs["cache_implementation"]) or original(*args, **kwargs))
    assert tiny_inspector.generate([views, views], [BASE_NAME, ADAPTER_NAME]) == dynamic
    assert calls == ["static"]


def test_kv_cache_is_read_from_the_environment_and_checked(monkeypatch):
    assert InspectorConfig.from_env().kv_cache == "dynamic"
    monkeypatch.setenv("INSPECTOR_KV_CACHE", "static")
    assert InspectorConfig.from_env().kv_cache == "static"
    monkeypatch.setenv("INSPECTOR_KV_CACHE", "paged")
    with pytest.raises(ValueError, match="INSPECTOR_KV_CACHE"):
        InspectorConfig.from_env()


def test_int8_vision_is_read_from_the_environment_and_checked(monkeypatch):
    assert InspectorConfig.from_env().int8_vision is None
    monkeypatch.setenv("INSPECTOR_INT8_VISION", "")
    assert InspectorConfig.from_env().int8_vision is None, "empty: the fp32 tower"
    monkeypatch.setenv("INSPECTOR_INT8_VISION", "per-token")
    assert InspectorConfig.from_env().int8_vision == "per-token"
    monkeypatch.setenv("INSPECTOR_INT8_VISION", "yes")
    with pytest.raises(ValueError, match="INSPECTOR_INT8_VISION"):
        InspectorConfig.from_env()


@pytest.mark.parametrize("decoding", ["free", "fields"])
def test_generate_is_one_batch_for_both_reports(tiny_inspector, photo, monkeypatch, decoding):
    """Base and adapter rows in every call: free, one generate; field-decoded, one per field, each
    with every knob of greedy decoding (a checkpoint's sampling settings must not act)."""
    from inspector.generation import GREEDY_DECODING

    calls = []
    original = tiny_inspector.model.generate

    def counting_generate(*args, **kwargs):
        calls.append(kwargs.get("adapter_names"))
        assert {key: kwargs[key] for key in GREEDY_DECODING} == GREEDY_DECODING
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny_inspector.model, "generate", counting_generate)
    monkeypatch.setattr(tiny_inspector.config, "decoding", decoding)
    result = tiny_inspector.inspect([photo])[0]
    calls_wanted = 1 if decoding == "free" else len(tiny_inspector.field_plan().segments)
    assert calls == [[BASE_NAME, ADAPTER_NAME]] * calls_wanted
    assert result.base.raw_text != result.adapter.raw_text
    assert (result.width, result.height) == (512, 512)


def test_missing_adapter_serves_base_with_notice(tiny_model):
    inspector = Inspector.load(InspectorConfig(base=str(tiny_model), adapter="nobody/no-such-adapter",
                                               adapter_revision="v1", precision="fp32", max_new_tokens=4))
    assert not inspector.has_adapter
    assert "no-such-adapter" in inspector.notices[0]
    result = inspector.inspect([Image.new("RGB", (64, 64))])[0]
    assert result.adapter.verdict == "unavailable"
    assert "no-such-adapter" in result.adapter.notice


def test_missing_base_raises_clear_error(tmp_path):
    with pytest.raises(Unavailable, match="not in the local Hugging Face cache|could not be loaded"):
        Inspector.load(InspectorConfig(base="nobody/no-such-model", adapter=None, precision="fp32"))


def test_adapter_folder_without_config_is_refused(tmp_path):
    with pytest.raises(Unavailable, match="adapter_config.json"):
        resolve_adapter(tmp_path)


def test_runtime_choice_logged_and_overridable(monkeypatch):
    monkeypatch.setenv("INSPECTOR_DTYPE", "fp32")
    runtime = choose_runtime()
    assert runtime.precision == "fp32" and "asked for" in runtime.reason
    monkeypatch.delenv("INSPECTOR_DTYPE")
    runtime = choose_runtime(device="cpu")
    assert runtime.precision in ("bf16", "int8", "fp32") and runtime.reason
    with pytest.raises(ValueError, match="INSPECTOR_DTYPE"):
        choose_runtime(precision="int3")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            choose_runtime(device="cuda")


def test_nf4_path_loads_and_generates_on_cpu(tiny_model, tiny_adapter):
    """The CUDA recipe (bitsandbytes nf4, double quant) also runs on the CPU with the tiny model."""
    pytest.importorskip("bitsandbytes")
    inspector = Inspector.load(InspectorConfig(base=str(tiny_model), adapter=str(tiny_adapter),
                                               adapter_revision=None, precision="nf4", max_new_tokens=4))
    import bitsandbytes as bnb

    quantized = [name for name, module in inspector.model.named_modules() if isinstance(module, bnb.nn.Linear4bit)]
    assert any(".language_model." in name for name in quantized)
    assert not [name for name in quantized if ".visual." in name], "the vision tower stays unquantized"
    result = inspector.inspect([Image.new("RGB", (96, 96), (10, 200, 30))])[0]
    assert result.base.verdict != "unavailable" and result.adapter.verdict != "unavailable", "both models answered"


def test_loading_from_hub_cache_offline(tiny_model, tiny_adapter, photo, tmp_path):
    """Repo ids at a pinned tag resolve through the huggingface_hub cache with HF_HUB_OFFLINE=1."""
    cache = tmp_path / "hub"
    populate_cache(cache, "acme/tiny-qwen2-vl", tiny_model)
    populate_cache(cache, "acme/tiny-inspector-lora", tiny_adapter, revisions=("main", "v1"))
    command = [sys.executable, "-m", "inspector", "inspect", str(photo), "--json", "--quiet",
               "--base", "acme/tiny-qwen2-vl", "--adapter", "acme/tiny-inspector-lora",
               "--adapter-revision", "v1", "--precision", "fp32", "--max-new-tokens", "8"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD_S,
                          env=subprocess_env(HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / "home")))
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.strip())
    assert record["path"] == str(photo)
    assert record["adapter"]["verdict"] != "unavailable"
    assert "notice" not in done.stderr


def _noise_png():
    import io

    import numpy as np

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (160, 200, 3), dtype=np.uint8)).save(buffer, "PNG")
    buffer.seek(0)
    return buffer


def test_shared_vision_pass_equals_the_vision_tower_on_every_row(tiny_inspector, photo):
    """Base and adapter rows share one vision pass; its features equal a pass over every row."""
    from inspector.images import load_image
    from inspector.prompts import build_inputs

    first = make_views(load_image(photo), 128)
    second = make_views(Image.open(_noise_png()), 128)
    rows = [first, first, second, second, first]
    shared = tiny_inspector.encode_views_once(rows).pooler_output
    inputs = build_inputs(tiny_inspector.processor, rows, tiny_inspector.instruction)
    vision = tiny_inspector.model.get_base_model().model
    with torch.inference_mode():
        every_row = vision.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"],
                                              return_dict=True).pooler_output
    assert len(shared) == len(every_row) == sum(len(views) for views in rows)
    for ours, theirs in zip(shared, every_row):
        torch.testing.assert_close(ours, theirs)


def test_int8_quantizes_the_base_layers_keeps_lora_and_stays_close(tiny_model, tiny_adapter):
    """CPU int8: every Linear of the language model and the head becomes a dynamic int8 layer,
    the vision tower and LoRA's A/B stay fp32, and the logits of base and adapter rows stay near
    fp32's, in the same mixed batch."""
    from inspector.prompts import build_inputs

    loaded = {precision: Inspector.load(InspectorConfig(base=str(tiny_model), adapter=str(tiny_adapter),
                                                        adapter_revision=None, device="cpu", precision=precision))
              for precision in ("fp32", "int8")}
    modules = dict(loaded["int8"].model.named_modules())
    quantized = [name for name, module in modules.items()
                 if isinstance(module, torch.ao.nn.quantized.dynamic.Linear)]
    plain = [name for name, module in modules.items() if type(module) is torch.nn.Linear]
    assert any("lm_head" in name for name in quantized) and not any(".visual." in name for name in quantized)
    assert any(name.endswith("q_proj.base_layer") for name in quantized)
    assert any(name.endswith(".visual.merger.mlp.0") for name in plain), "the vision tower stays fp32"
    assert plain and all(".lora_A." in name or ".lora_B." in name or ".visual." in name for name in plain)

    views = make_views(Image.open(_noise_png()), 64)
    logits = {}
    for precision, inspector in loaded.items():
        inputs = build_inputs(inspector.processor, [views, views], inspector.instruction)
        with torch.inference_mode():
            logits[precision] = inspector.model(**inputs, adapter_names=[BASE_NAME, ADAPTER_NAME]).logits[:, -1]
    error = (logits["int8"] - logits["fp32"]).norm(dim=-1) / logits["fp32"].norm(dim=-1)
    # Measured on the tiny stand-in: 0.13 (base row) and 0.03 (adapter row). Its 64-wide layers quantize
    # coarser than the 2B's; a broken scale or a skipped layer gives errors of order 1.
    assert error.max() < 0.2, error
    assert not torch.allclose(logits["int8"][0], logits["int8"][1]), "the adapter row still differs from the base"
    assert loaded["int8"].inspect([Image.open(_noise_png())])[0].adapter.raw_text


def test_int8_of_the_vision_tower_is_opt_in_with_a_scale_per_token_or_per_tensor(tiny_model):
    """`quantize_int8(vision=...)` also takes the tower's blocks and merger: per token with torchao's
    int8 weights, per tensor with torch's dynamic int8 Linear; by default the tower stays fp32."""
    from torchao.quantization import Int8Tensor

    from inspector.device import Runtime
    from inspector.model import load_base
    from inspector.quantize import quantize_int8

    counts, kinds = {}, {}
    for vision in (None, "per-token", "per-tensor"):
        model, _ = load_base(str(tiny_model), runtime=Runtime("cpu", "fp32", "test"))
        counts[vision] = quantize_int8(model, vision=vision)
        visual = [module for name, module in model.named_modules() if ".visual." in name]
        kinds[vision] = {"per-token": sum(isinstance(getattr(module, "weight", None), Int8Tensor) for module in visual),
                         "per-tensor": sum(isinstance(module, torch.ao.nn.quantized.dynamic.Linear)
                                           for module in visual)}
        language = [name for name, module in model.named_modules()
                    if isinstance(module, torch.ao.nn.quantized.dynamic.Linear) and ".visual." not in name]
        assert language, "the language model is int8 whatever the tower"
    assert kinds[None] == {"per-token": 0, "per-tensor": 0}, kinds
    assert kinds["per-token"]["per-token"] > 0 == kinds["per-token"]["per-tensor"], kinds
    assert kinds["per-tensor"]["per-tensor"] > 0 == kinds["per-tensor"]["per-token"], kinds
    assert counts["per-token"] == counts["per-tensor"] > counts[None] > 0, counts


def test_int8_with_a_bf16_vision_tower_keeps_the_tower_unquantized_in_bf16_and_stays_close(tiny_model, tiny_adapter):
    """`int8_vision="bf16"` (for CPUs with native bf16): the language model in int8 as ever, the tower
    unquantized and in bf16, its fp32 input and output cast by transformers' Qwen2-VL; the logits of
    base and adapter rows stay near those of int8 with an fp32 tower, through the shared vision pass."""
    from inspector.quantize import vision_tower
    from inspector.prompts import build_inputs
    from inspector.vision import image_features

    loaded = {vision: Inspector.load(InspectorConfig(base=str(tiny_model), adapter=str(tiny_adapter),
                                                     adapter_revision=None, device="cpu", precision="int8",
                                                     int8_vision=vision))
              for vision in (None, "bf16")}
    tower = vision_tower(loaded["bf16"].model)
    assert {parameter.dtype for parameter in tower.parameters()} == {torch.bfloat16}
    assert {parameter.dtype for parameter in vision_tower(loaded[None].model).parameters()} == {torch.float32}
    assert not [name for name, module in tower.named_modules()
                if isinstance(module, torch.ao.nn.quantized.dynamic.Linear)], "the tower is not quantized"
    assert any(isinstance(module, torch.ao.nn.quantized.dynamic.Linear) and ".visual." not in name
               for name, module in loaded["bf16"].model.named_modules()), "the language model stays int8"

    views = make_views(Image.open(_noise_png()), 64)
    logits, features = {}, {}
    for vision, inspector in loaded.items():
        inputs = build_inputs(inspector.processor, [views, views], inspector.instruction)
        with torch.inference_mode():
            features[vision] = image_features(inspector.model, inspector.processor, [views, views]).pooler_output
            logits[vision] = inspector.model(**inputs, adapter_names=[BASE_NAME, ADAPTER_NAME]).logits[:, -1]
    assert features["bf16"][0].dtype == torch.bfloat16 and features[None][0].dtype == torch.float32
    error = (logits["bf16"] - logits[None]).norm(dim=-1) / logits[None].norm(dim=-1)
    # Measured on the tiny stand-in: 0.068 (base row) and 0.034 (adapter row), bf16's 8-bit mantissa in the
    # tower alone; features of a wrongly cast or mis-scaled tower give errors of order 1.
    assert error.max() < 0.2, error
    assert loaded["bf16"].inspect([Image.open(_noise_png())])[0].adapter.verdict != "unavailable"


def test_on_a_cpu_with_native_bf16_the_default_is_int8_with_a_bf16_tower_and_fp32_can_be_asked(
        tiny_model, tiny_adapter, monkeypatch):
    """What the app loads where the CPU has native bf16 (pretended here on any CPU): the language model in
    int8, the tower unquantized in bf16, and the page's runtime line says so; INSPECTOR_INT8_VISION=fp32
    keeps the tower in fp32, and the runtime then describes that tower."""
    import inspector.device as device
    from inspector.quantize import vision_tower
    from inspector.runinfo import describe_runtime, runtime_line

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("INSPECTOR_DTYPE", "INSPECTOR_DEVICE", "INSPECTOR_INT8_VISION"):
        monkeypatch.delenv(name, raising=False)
    if not device.cpu_has_int8_engine():
        pytest.skip("PyTorch has no int8 engine on this CPU: the default is bf16 here")
    towers = {}
    for asked in (None, "fp32"):
        inspector = Inspector.load(InspectorConfig(base=str(tiny_model), adapter=str(tiny_adapter),
                                                   adapter_revision=None, int8_vision=asked))
        towers[asked] = {parameter.dtype for parameter in vision_tower(inspector.model).parameters()}
        info = describe_runtime(inspector)
        assert (info["precision"], info["int8_vision"]) == ("int8", None if asked else "bf16")
        assert ("cpu/int8 with a bf16 vision tower," in runtime_line(info)) is (asked is None)
    assert towers == {None: {torch.bfloat16}, "fp32": {torch.float32}}


def test_per_token_int8_of_the_vision_tower_keeps_its_output_close_where_one_scale_per_tensor_does_not(tiny_model):
    """A token a thousand times louder than the others: one scale per tensor rounds the quiet
    tokens to zero, a scale per token keeps them (the reason for the per-token scheme)."""
    from inspector.device import Runtime
    from inspector.model import load_base
    from inspector.quantize import quantize_int8

    towers = {}
    for vision in (None, "per-token", "per-tensor"):
        model, _ = load_base(str(tiny_model), runtime=Runtime("cpu", "fp32", "test"))
        quantize_int8(model, vision=vision)
        towers[vision] = model.model.visual
    block = {vision: tower.blocks[0].mlp for vision, tower in towers.items()}
    torch.manual_seed(0)
    hidden = torch.randn(64, towers[None].blocks[0].mlp.fc1.in_features)
    hidden[0] *= 1000  # one outlier token, as vision towers have
    with torch.inference_mode():
        outputs = {vision: mlp(hidden)[1:] for vision, mlp in block.items()}  # the quiet tokens
    error = {vision: float((outputs[vision] - outputs[None]).norm() / outputs[None].norm())
             for vision in ("per-token", "per-tensor")}
    assert error["per-token"] < 0.05 < error["per-tensor"], error


def test_int8_from_a_bf16_checkpoint_widens_layer_by_layer_and_frees_what_it_swaps(tiny_model, tmp_path):
    """The 2B is stored in bf16: int8 loads it as such (not all of it in fp32 first), quantizes each
    Linear from its exact fp32 widening, frees the swapped-out layers, and computes in fp32 after."""
    import gc
    import weakref

    from inspector.device import Runtime
    from inspector.model import load_base
    from inspector.quantize import quantize_int8

    model, processor = load_base(str(tiny_model), runtime=Runtime("cpu", "bf16", "test"))
    model.save_pretrained(tmp_path / "bf16")
    processor.save_pretrained(tmp_path / "bf16")
    loaded, _ = load_base(str(tmp_path / "bf16"), runtime=Runtime("cpu", "int8", "test"))
    assert loaded.dtype == torch.bfloat16, "loaded in the checkpoint's dtype"
    swapped = weakref.ref(loaded.model.language_model.layers[0].mlp.down_proj)
    gc.disable()  # the automatic collector may or may not run in between; quantize_int8 must not rely on it
    try:
        quantize_int8(loaded)
        assert swapped() is None, "the fp32 layer it replaced is gone"
    finally:
        gc.enable()
    assert {parameter.dtype for parameter in loaded.parameters()} == {torch.float32}

    reference, _ = load_base(str(tmp_path / "bf16"), runtime=Runtime("cpu", "fp32", "test"))
    views = make_views(Image.open(_noise_png()), 64)
    from inspector.prompts import build_inputs

    inputs = build_inputs(processor, [views], "Describe the image.")
    with torch.inference_mode():
        ours, theirs = loaded(**inputs).logits[:, -1], reference(**inputs).logits[:, -1]
    assert ((ours - theirs).norm() / theirs.norm()) < 0.2  # the bound of the fp32-checkpoint test above


def test_int8_is_refused_on_cuda():
    with pytest.raises(ValueError, match="nf4"):
        choose_runtime(device="cuda", precision="int8")


def test_a_checkpoints_sampling_settings_do_not_change_the_answers(tiny_model, tiny_adapter, tmp_path, monkeypatch):
    """A generation_config.json that asks for sampling and a repetition penalty (as Qwen2-VL's
    checkpoints do) gives the plain tiny's greedy answers, and its sampling values neither act
    nor warn; without the project's settings the same checkpoint answers otherwise. (Free decoding:
    the field-decoded calls get the same knobs, test_generate_is_one_batch_for_both_reports.)"""
    import shutil

    from transformers import GenerationConfig

    import inspector.model
    from inspector.generation import GREEDY_DECODING

    configured = tmp_path / "sampling-checkpoint"
    shutil.copytree(tiny_model, configured)
    settings = json.loads((configured / "generation_config.json").read_text())
    settings.update(do_sample=True, temperature=0.01, top_k=1, top_p=0.001, repetition_penalty=1.05)
    (configured / "generation_config.json").write_text(json.dumps(settings))
    images = [Image.open(_noise_png()), Image.new("RGB", (128, 128), (90, 120, 200))]

    def answers(base) -> list[tuple[str, str]]:
        inspector = Inspector.load(InspectorConfig(base=str(base), adapter=str(tiny_adapter), adapter_revision=None,
                                                   precision="fp32", max_new_tokens=48, decoding="free"))
        return [(result.base.raw_text, result.adapter.raw_text) for result in inspector.inspect(images)]

    plain = answers(tiny_model)
    assert answers(configured) == plain
    checkpoint = GenerationConfig.from_pretrained(configured)
    checkpoint.update(**GREEDY_DECODING)
    checkpoint.validate(strict=True)  # strict: any sampling flag left set would raise

    monkeypatch.setattr(inspector.model, "GREEDY_DECODING", {"do_sample": False})
    assert answers(configured) != plain, "the penalty alone changes greedy answers, so the check above can fail"
    with pytest.raises(ValueError, match="temperature|top_p|top_k"):
        GenerationConfig.from_pretrained(configured, do_sample=False).validate(strict=True)
