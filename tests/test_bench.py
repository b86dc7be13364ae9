"""`python -m inspector bench`: every setting runs and the results hold what the README quotes.

The tiny shape (seconds) stands in for `--shape 2b` (minutes): the same code times the same
settings; only the model's size differs. The figures themselves are the README's, from
the 2B shape; here only their presence and their consistency are checked.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, subprocess_env
from inspector.bench import render_table, settings


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run([sys.executable, "-m", "inspector", "bench", "--shape", "tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=subprocess_env(), cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    results["table"] = done.stdout
    return results


def test_every_setting_runs_and_is_timed(tiny_bench):
    names = [row["name"] for row in tiny_bench["settings"]]
    assert names == [setting.name for setting in settings(tiny_bench["fast_precision"])]
    for row in tiny_bench["settings"]:
        assert "error" not in row, row
        assert row["1024x768"]["seconds"] > 0 and row["1024x768"]["reports"] == 2
    assert tiny_bench["settings"][0]["12MP"]["seconds"] > 0


def test_results_hold_the_figures_the_issue_asks_for(tiny_bench):
    fast = tiny_bench["fast_precision"]
    assert tiny_bench[f"load_s_{fast}"] >= 0
    assert tiny_bench["prefill_s"] > 0 and tiny_bench["decode_tokens_per_s"] > 0
    assert tiny_bench["peak_rss_gb"] > 0 and tiny_bench["resident_gb"] > 0
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
        assert f"| {row['name']} |" in table
    assert "speed-up vs seed-style" in table
