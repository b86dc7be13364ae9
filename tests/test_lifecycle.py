"""The whole tiny lifecycle, as the README runs it: pre-trained stand-in, data, fine-tune, evaluate.

Slow (10-15 minutes on 2 idle CPU cores, far longer beside other jobs):
`pytest -m slow -n 0 -s tests/test_lifecycle.py`.
Every step is the README's command in a child process, so what passes here is what a user runs.
It checks the issue's target: on the held-out split the adapter reaches macro F1 >= 0.6 and
>= base + 0.4. Its time is printed, not asserted: a slower CPU takes longer, it does not fail
(README "Training" has the figures, with the CPU kind).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from conftest import HANG_GUARD_S, ROOT, subprocess_env
from inspector.device import cpu_has_int8_engine

RECIPE = str(ROOT / "train" / "recipes" / "tiny.yaml")
TARGET_ADAPTER_MACRO_F1 = 0.6  # the issue's target
TARGET_GAIN_OVER_BASE = 0.4
# The CPU precisions the app picks (inspector.device.choose_runtime): int8 where PyTorch has its engine,
# its tower in bf16 where the CPU has native bf16 (int8-bf16-vision) and in fp32 elsewhere (int8); bf16,
# the default before; and the opt-in lever of INSPECTOR_INT8_VISION, the tower in int8 too with a scale
# per token.
FAST_CPU_PRECISIONS = {"bf16": ["--precision", "bf16"]}
# The app field-decodes the answer (inspector.fields); the first evaluation does too, and this one
# decodes freely, token by token, as before field decoding: the two must score within a point.
FREE_DECODING = ["--decoding", "free"]
if cpu_has_int8_engine():
    FAST_CPU_PRECISIONS["int8"] = ["--precision", "int8"]
    FAST_CPU_PRECISIONS["int8-bf16-vision"] = ["--precision", "int8", "--int8-vision", "bf16"]
    FAST_CPU_PRECISIONS["int8-vision-per-token"] = ["--precision", "int8", "--int8-vision", "per-token"]
# Measured 2026-12-02 (this test, AVX512-BF16 EPYC): the per-token int8 tower took the adapter from
# macro F1 0.642 to 0.000 (it answers "none" everywhere), so it stays an opt-in lever, not a default.
# Strict: the day it keeps the quality this fails, and the README's finding must be revisited.
PRECISION_PARAMS = [pytest.param(name, marks=pytest.mark.xfail(
    strict=True, reason="int8 with a scale per token in the tiny's set vision tower loses its perception "
    "(README, 'The vision tower in int8 with a scale per token')")) if name == "int8-vision-per-token" else name
    for name in FAST_CPU_PRECISIONS]


def run(*command: str, timeout: int = HANG_GUARD_S) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=timeout,
                          env=subprocess_env(), cwd=ROOT)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr[-3000:]}"
    return done.stdout, time.perf_counter() - started


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("lifecycle")
    base, data, adapter = root / "base", root / "data", root / "adapter"
    seconds = {}
    # Pre-training took 22 minutes on a 2-vCPU AVX2-only EPYC: the guard is doubled for it and fine-tuning.
    _, seconds["pretrain"] = run("train/pretrain_tiny.py", "--config", RECIPE, "--folder", str(base),
                                 timeout=2 * HANG_GUARD_S)
    _, seconds["build"] = run("train/build_dataset.py", "--config", RECIPE, "--out", str(data))
    _, seconds["finetune"] = run("train/finetune.py", "--config", RECIPE, "--base", str(base),
                                 "--dataset", str(data), "--output-dir", str(adapter), timeout=2 * HANG_GUARD_S)
    stdout, seconds["evaluate"] = run("train/evaluate.py", "--config", RECIPE, "--adapter", str(adapter),
                                      "--base", str(base), "--dataset", str(data), "--json")
    summary = json.loads(stdout.strip().splitlines()[-1])
    # The same evaluation in each precision the app picks on a CPU, whichever this CPU is: int8 with
    # its tower in bf16 where the CPU computes bf16 natively, in fp32 elsewhere (inspector.device).
    fast_summaries = {}
    for fast, options in {**FAST_CPU_PRECISIONS, "free-decoding": FREE_DECODING}.items():
        stdout, seconds[f"evaluate_{fast}"] = run(
            "train/evaluate.py", "--config", RECIPE, "--adapter", str(adapter), "--base", str(base),
            "--dataset", str(data), "--json", *options, "--out", str(root / f"eval-{fast}"))
        fast_summaries[fast] = json.loads(stdout.strip().splitlines()[-1])
    print(json.dumps({"summary": summary, **{f"summary_{fast}": value for fast, value in fast_summaries.items()},
                      "seconds": {step: round(value) for step, value in seconds.items()}}))
    return {"summary": summary, "fast_summaries": fast_summaries, "seconds": seconds, "adapter": adapter,
            "base": base, "results": json.loads((adapter / "eval" / "results.json").read_text())}


@pytest.mark.slow
def test_tiny_lifecycle_runs_and_the_adapter_learns_the_answer_format(lifecycle):
    summary, results = lifecycle["summary"], lifecycle["results"]
    assert results["n"] == summary["n"] >= 90, "the held-out test split"
    assert summary["adapter"]["parse_failure_rate"] == 0.0, "the adapter writes the trained JSON"
    free = lifecycle["fast_summaries"]["free-decoding"]
    # free, the pre-trained base mostly answers in its own format (0.84-1.0 of its answers unparsed,
    # by the machine the stand-in was pre-trained on: 0.844 on an AVX2-only EPYC, 2026-12-02)
    assert free["base"]["parse_failure_rate"] >= 0.5, "free, the pre-trained base answers in its own format"
    assert summary["base"]["parse_failure_rate"] == 0.0, "field decoding holds it to the layout"
    assert summary["adapter"]["macro_f1"] >= summary["base"]["macro_f1"]
    assert {"adapter_config.json", "adapter_model.safetensors", "inspector_task.json"} <= {
        path.name for path in lifecycle["adapter"].iterdir()}
    record = json.loads((lifecycle["base"] / "pretraining.json").read_text())
    assert all(0.0 <= share <= 1.0 for share in record["held_out"]["accuracy"].values())


@pytest.mark.slow
@pytest.mark.parametrize("fast", PRECISION_PARAMS)
def test_the_apps_fast_precisions_lose_at_most_one_point_of_macro_f1(lifecycle, fast):
    """Issue 6: quality must not pay for speed (the evaluation rerun in the app's CPU precisions)."""
    full, faster = lifecycle["summary"], lifecycle["fast_summaries"][fast]
    for model in ("base", "adapter"):
        assert faster[model]["macro_f1"] >= full[model]["macro_f1"] - 0.01, (model, full, faster)


@pytest.mark.slow
def test_field_decoding_scores_as_free_decoding_within_one_point(lifecycle):
    """Field decoding feeds the answer's layout and lets the model choose only the values: the
    adapter, trained on that layout, must lose at most a point of macro F1 against free decoding."""
    fields = lifecycle["summary"]["adapter"]["macro_f1"]
    free = lifecycle["fast_summaries"]["free-decoding"]["adapter"]["macro_f1"]
    assert fields >= free - 0.01, f"field decoding macro F1 {fields:.3f} against free decoding's {free:.3f}"
    assert lifecycle["summary"]["adapter"]["parse_failure_rate"] == 0.0, "field decoding always writes the layout"
    assert lifecycle["results"]["decoding"] == "fields"


@pytest.mark.slow
def test_tiny_adapter_reaches_the_issue_target(lifecycle):
    summary = lifecycle["summary"]
    assert summary["adapter"]["macro_f1"] >= TARGET_ADAPTER_MACRO_F1, summary
    # The gain is over the zero-shot base as it answers by itself (free decoding), the base the target
    # was set against. Field-decoded, the base is held to the layout and reads higher (0.235 against
    # 0.000 on an AVX2-only EPYC, 2026-12-02, README "Training"), so the gain there is smaller.
    free = lifecycle["fast_summaries"]["free-decoding"]
    assert summary["adapter"]["macro_f1"] >= free["base"]["macro_f1"] + TARGET_GAIN_OVER_BASE, (summary, free)
    lifecycle_seconds = sum(lifecycle["seconds"][step] for step in ("pretrain", "build", "finetune", "evaluate"))
    print(f"\ntiny lifecycle: {lifecycle_seconds:.0f} s ({lifecycle['seconds']})")
