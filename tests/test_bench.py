"""`python -m inspector bench`: every setting runs and the results hold what the README quotes.

The tiny shape (seconds) stands in for `--shape 2b` (minutes): the same code times the same
settings; only the model's size differs. The figures themselves are the README's, from
the 2B shape; here only their presence and their consistency are checked. The run takes a
subset of the settings in the CPU's own fast precision (whatever the CPU kind), and no test
here has a time limit: a slow CPU takes longer, it does not fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict

import pytest

from conftest import ROOT, subprocess_env
from inspector.bench import render_table, select_settings, settings, slow_precisions
from inspector.device import cpu_kind

SUBSET = "seed-style,half-tokens"  # with ours, which always runs


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    scratch = tmp_path_factory.mktemp("scratch")  # the bench's TMPDIR: what it leaves behind shows here
    done = subprocess.run([sys.executable, "-m", "inspector", "bench", "--shape", "tiny", "--settings", SUBSET,
                           "--out", str(out)],
                          capture_output=True, text=True, env=subprocess_env() | {"TMPDIR": str(scratch)}, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    results["table"] = done.stdout
    results["left_behind"] = sorted(path.name for path in scratch.glob("inspector-bench-*"))
    return results


def test_the_bench_removes_its_scratch_models_and_photos(tiny_bench):
    assert tiny_bench["left_behind"] == []


def test_every_asked_setting_runs_and_is_timed(tiny_bench):
    names = [row["name"] for row in tiny_bench["settings"]]
    assert names == ["ours", "seed-style baseline", "lever: half the visual tokens"]
    for row in tiny_bench["settings"]:
        assert "error" not in row, row
        assert row["1024x768"]["seconds"] > 0 and row["1024x768"]["reports"] == 2
    assert tiny_bench["settings"][0]["12MP"]["seconds"] > 0
    assert 0 < tiny_bench["settings"][0]["12MP"]["views_ms"] < 1000 * tiny_bench["settings"][0]["12MP"]["seconds"]


def test_results_hold_the_figures_the_issue_asks_for(tiny_bench):
    fast, tower = tiny_bench["fast_precision"], tiny_bench["fast_int8_vision"]
    assert tiny_bench[f"load_s_{fast}{f'_vision_{tower}' if tower else ''}"] >= 0
    assert tiny_bench["settings"][0]["int8_vision"] == tower
    assert tiny_bench["prefill_s"] > 0 and tiny_bench["decode_tokens_per_s"] > 0
    assert tiny_bench["peak_rss_gb"] > 0 and tiny_bench["resident_gb"] > 0
    assert tiny_bench["cpu_kind"] == cpu_kind() and cpu_kind() in tiny_bench["machine"]
    ours, seed = tiny_bench["settings"][0], tiny_bench["settings"][1]
    assert tiny_bench["speedup_vs_seed"] == round(seed["1024x768"]["seconds"] / ours["1024x768"]["seconds"], 1)
    assert "CPUs" in tiny_bench["machine"] and "threads" in tiny_bench["machine"]


def test_our_view_keeps_the_visual_token_budget_and_the_seeds_does_not(tiny_bench):
    rows = {row["name"]: row for row in tiny_bench["settings"]}
    ours = rows["ours"]
    assert ours["1024x768"]["visual_tokens"] <= ours["visual_token_budget"]
    assert rows["lever: half the visual tokens"]["1024x768"]["visual_tokens"] <= ours["visual_token_budget"] // 2
    # the processor's default pixel budget gives a 1024x768 photo about a thousand tokens
    assert rows["seed-style baseline"]["1024x768"]["visual_tokens"] > 3 * ours["1024x768"]["visual_tokens"]


def test_table_lists_every_setting_with_its_ratio(tiny_bench):
    table = render_table(tiny_bench)
    assert table.strip() == tiny_bench["table"].strip()
    for row in tiny_bench["settings"]:
        assert f"| {row['name']}" in table
    assert "speed-up vs seed-style" in table and f"CPU kind: {cpu_kind()}" in table


@pytest.mark.parametrize("fast", ["int8", "bf16", "fp32", "nf4"])
def test_every_setting_has_its_own_key_and_ours_always_runs(fast):
    known = settings(fast)
    assert len({setting.key for setting in known}) == len(known)
    assert [setting.key for setting in select_settings(fast, "seed-style")] == ["ours", "seed-style"]
    assert [setting.key for setting in select_settings(fast, "half-tokens, ours")] == ["ours", "half-tokens"]
    assert select_settings(fast, None) == known


def test_an_unknown_setting_is_refused_with_the_known_ones_before_anything_is_built():
    with pytest.raises(ValueError, match="unknown bench setting.*fastest.*seed-style"):
        select_settings("int8", "seed-style,fastest")
    done = subprocess.run([sys.executable, "-m", "inspector", "bench", "--shape", "tiny", "--settings", "fastest"],
                          capture_output=True, text=True, env=subprocess_env(), cwd=ROOT)
    assert done.returncode == 2 and "half-tokens" in done.stderr and "Traceback" not in done.stderr


def test_a_precision_under_a_tenth_of_fp32s_rate_is_skipped_and_the_table_says_why():
    """The AVX2-only EPYC's probe: bf16 0.5 GFLOPS, fp32 95.5; the AVX-512 VNNI Xeon's: 46 and 143."""
    assert slow_precisions({"matmul_gflops_bf16": 0.5, "matmul_gflops_fp32": 95.5}) == {
        "bf16": "skipped: bf16 matmuls at 0.5 GFLOPS, under a tenth of fp32's 95.5"}
    assert slow_precisions({"matmul_gflops_bf16": 46.0, "matmul_gflops_fp32": 143.0}) == {}
    assert slow_precisions({}) == {}, "on CUDA there is no CPU probe"
    ours, bf16 = select_settings("int8", "bf16")
    results = {"machine": "m", "cpu_kind": "AVX2", "shape": "2b", "load_average": 0.1, "prefill_s": 1,
               "decode_tokens_per_s": 2, "matmul_gflops_bf16": 0.5, "matmul_gflops_fp32": 95.5,
               "settings": [{**asdict(ours), "1024x768": {"seconds": 3.0, "visual_tokens": 200, "prompt_tokens": 260,
                                                          "reports": 2}},
                            {**asdict(bf16), "skipped": slow_precisions({"matmul_gflops_bf16": 0.5,
                                                                         "matmul_gflops_fp32": 95.5})["bf16"]}]}
    table = render_table(results)
    assert "| lever: bf16 instead of int8 | bf16 |" in table and "under a tenth of fp32's 95.5" in table
    assert "not run (seed-style not asked)" in table


@pytest.mark.parametrize(("flags", "kind"), [
    ({"avx2", "fma"}, "AVX2"), ({"avx2", "avx512f", "avx512_vnni"}, "AVX-512 VNNI"),
    ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, "AVX512-BF16"), ({"avx512_bf16", "amx_bf16"}, "AMX"),
    ({"avx2", "avx512f"}, "AVX-512"), ({"sse4_2"}, "pre-AVX2")])
def test_the_cpu_kind_is_read_from_its_flags(flags, kind):
    assert cpu_kind(flags) == kind


def test_qlora_bench_runs_the_real_recipe_on_the_tiny_shape(tmp_path):
    """benchmarks/qlora_bench.py: the degradation recipe through build_dataset and finetune, timed."""
    out = tmp_path / "qlora.json"
    done = subprocess.run([sys.executable, "benchmarks/qlora_bench.py", "--shape", "tiny", "--steps", "2",
                           "--work", str(tmp_path / "work"), "--out", str(out)],
                          capture_output=True, text=True, env=subprocess_env(), cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["shape"] == "tiny" and results["steps"] == 2 and results["batch_size"] == 1
    assert results["samples_per_s"] > 0 and results["train_s"] > 0
    assert results["tokens_per_row"] > 256, "448x448 crops at the recipe's 256 visual tokens, plus the prompt"
    assert (tmp_path / "work" / "adapter" / "adapter_model.safetensors").is_file()
    import torch

    assert (results["peak_gpu_gib"] is not None) == torch.cuda.is_available()


def test_qlora_bench_of_the_2b_shape_needs_a_gpu_and_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the 2b shape would run")
    done = subprocess.run([sys.executable, "benchmarks/qlora_bench.py", "--shape", "2b", "--work", str(tmp_path)],
                          capture_output=True, text=True, env=subprocess_env(), cwd=ROOT)
    assert done.returncode != 0 and "needs a CUDA GPU" in done.stderr
    assert not list(tmp_path.iterdir()), "nothing was built before the refusal"


def test_the_2b_shape_has_the_real_models_size_and_the_tiny_processors_token_ids(tiny_model):
    """Built on the meta device (no memory): Qwen2-VL-2B-Instruct's 2.21 B parameters."""
    import torch
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    from inspector.tiny import qwen2_vl_2b_config

    tokenizer = AutoProcessor.from_pretrained(tiny_model).tokenizer
    config = qwen2_vl_2b_config(tokenizer)
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert qwen2_vl_2b_config().image_token_id == 151655, "without a tokenizer: Qwen's own ids"
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(config)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    assert 2.20e9 < parameters < 2.22e9, parameters
    assert len(model.model.language_model.layers) == 28 and len(model.model.visual.blocks) == 32


def test_on_an_int8_cpu_the_bench_also_times_int8_in_the_vision_tower(tiny_model, tmp_path):
    """settings("int8"): the int8 default keeps the vision tower fp32; two levers take it too (a scale
    per token, a scale per tensor), each on its own model."""
    import torch
    from torchao.quantization import Int8Tensor

    from inspector.bench import _load

    planned = {setting.key: setting for setting in settings("int8")}
    assert planned["ours"].model_key == ("int8", None)
    assert planned["int8-vision"].model_key == ("int8", "per-token")
    assert planned["int8-vision-per-tensor"].model_key == ("int8", "per-tensor")
    assert planned["bf16"].model_key == ("bf16", None)
    assert not {"int8-vision", "int8-vision-per-tensor"} & {setting.key for setting in settings("bf16")}
    # the default where the CPU has native bf16: the tower in bf16, and a lever back to fp32
    native = {setting.key: setting for setting in settings("int8", fast_vision="bf16")}
    assert native["ours"].model_key == ("int8", "bf16") and native["int8-fp32-vision"].model_key == ("int8", None)
    assert native["bf16"].model_key == ("bf16", None) and native["bf16"].int8_vision is None
    assert native["int8-vision"].model_key == ("int8", "per-token")
    assert "int8-fp32-vision" not in planned, "where the default tower is fp32 there is no such lever"
    inspector = _load("tiny", "int8", tiny_model, tmp_path, int8_vision="per-token")
    modules = dict(inspector.model.named_modules())
    per_token = [name for name, module in modules.items() if isinstance(getattr(module, "weight", None), Int8Tensor)]
    per_tensor = [name for name, module in modules.items() if isinstance(module, torch.ao.nn.quantized.dynamic.Linear)]
    assert per_token and all(".visual." in name for name in per_token)
    assert any("lm_head" in name for name in per_tensor) and not any(".visual." in name for name in per_tensor)


def test_the_vision_int8_probe_finds_per_token_scales_keep_the_quiet_tokens():
    """benchmarks/vision_int8_probe.py on a few tokens, eager only: its error column is what the README
    quotes for choosing the per-token scheme (its seconds are not checked: they are the CPU's)."""
    done = subprocess.run([sys.executable, "benchmarks/vision_int8_probe.py", "--tokens", "32", "--json"],
                          capture_output=True, text=True, env=subprocess_env(), cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    schemes = json.loads(done.stdout.strip().splitlines()[-1])["schemes"]
    assert set(schemes) == {"fp32", "int8 per tensor (torch.ao)", "int8 per token (torchao, eager)"}
    assert schemes["int8 per token (torchao, eager)"]["quiet_token_error"] < 0.05
    assert schemes["int8 per tensor (torch.ao)"]["quiet_token_error"] > 0.5
