"""The whole tiny lifecycle, as the README runs it: pre-trained stand-in, data, fine-tune, evaluate.

Slow (minutes on 2 CPU cores): `pytest -m slow tests/test_lifecycle.py`. Every step is the
README's command in a child process, so what passes here is what a user runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from conftest import ROOT, subprocess_env

RECIPE = str(ROOT / "train" / "recipes" / "tiny.yaml")
# What the tiny lifecycle reaches (README, "Training"); the target is 0.6 and +0.4.
MIN_ADAPTER_MACRO_F1 = 0.6
MIN_GAIN_OVER_BASE = 0.4


def run(*command: str, timeout: int = 900) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=timeout,
                          env=subprocess_env(), cwd=ROOT)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr[-3000:]}"
    return done.stdout, time.perf_counter() - started


@pytest.mark.slow
def test_tiny_lifecycle_adapter_learns_what_the_base_cannot(tmp_path):
    base, data, adapter = tmp_path / "base", tmp_path / "data", tmp_path / "adapter"
    timings = {}
    _, timings["pretrain"] = run("-m", "inspector.tiny", str(base), "--pretrain")
    _, timings["build"] = run("train/build_dataset.py", "--recipe", RECIPE, "--out", str(data))
    _, timings["finetune"] = run("train/finetune.py", "--config", RECIPE, "--base", str(base), "--dataset", str(data),
                                 "--output-dir", str(adapter))
    stdout, timings["evaluate"] = run("train/evaluate.py", "--config", RECIPE, "--adapter", str(adapter),
                                      "--base", str(base), "--dataset", str(data), "--json")
    summary = json.loads(stdout.strip().splitlines()[-1])
    results = json.loads((adapter / "eval" / "results.json").read_text())
    print(json.dumps({"summary": summary, "seconds": {k: round(v) for k, v in timings.items()}}))

    base_f1, adapter_f1 = summary["base"]["macro_f1"], summary["adapter"]["macro_f1"]
    assert results["n"] == summary["n"] >= 90, "the held-out test split"
    assert summary["adapter"]["parse_failure_rate"] == 0.0, "the adapter writes the trained JSON"
    assert adapter_f1 >= MIN_ADAPTER_MACRO_F1, summary
    assert adapter_f1 >= base_f1 + MIN_GAIN_OVER_BASE, summary
    assert sum(timings.values()) <= 600, timings
