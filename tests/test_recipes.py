"""Each task recipe's lifecycle on the tiny stand-in, with the README's commands.

    python -m pytest tests/test_recipes.py

For classification.yaml, counting.yaml, chartqa.yaml and visdial.yaml: build the data set
from a small source in the real layout (`tests/fixtures_tasks.py`), fine-tune two steps,
evaluate base and adapter on the test split (VisDial: likelihood ranking of 100 candidates
per round), and check what a user reads: the `--json` line, results.json with both models
and every metric within its range, results.md and predictions.jsonl. The command lines are
the README's ("Other fine-tuning jobs"); only the paths and the flags that keep the tiny run
small differ (`TINY_FINETUNE`, `TINY_EVALUATE`). One recipe runs them as child processes,
verbatim; the others call each script's `main` with the same argv in this process, which
saves the ~15 s of imports a child pays per script.

The tiny stand-in is random and trains two steps: its figures are well-formed, not good.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from datasets import load_from_disk
from safetensors.torch import load_file

from conftest import HANG_GUARD_S, ROOT, subprocess_env
from fixtures_tasks import write_small_source
from inspector.tasks import load_task

RECIPES = ("classification", "counting", "chartqa", "visdial")
CHILD_PROCESS_RECIPE = "visdial"  # the most moving parts: multi-turn training, ranking of 100 candidates
TINY_BASE_ID = "acme/tiny-qwen2-vl"  # what the published adapter_config.json names instead of a local folder
# What makes the real recipe a seconds-long run: two steps of two rows, a tiny validation pass,
# fp32 (the stand-in's precision on a CPU; the real recipes get nf4 on a GPU).
TINY_FINETUNE = ("--max-steps", "2", "--save-steps", "2", "--eval-steps", "2", "--logging-steps", "1",
                 "--max-train-samples", "8", "--max-eval-samples", "2", "--per-device-train-batch-size", "2",
                 "--gradient-accumulation-steps", "1", "--precision", "fp32")
TINY_EVALUATE = ("--precision", "fp32")


@dataclass
class Paths:
    base: Path
    source: Path
    data: Path
    adapter: Path


def commands(name: str, paths: Paths) -> dict[str, list[str]]:
    """The README's command lines of one recipe, with the tiny run's paths and size flags."""
    recipe = f"train/recipes/{name}.yaml"
    return {
        "build": ["train/build_dataset.py", "--config", recipe, "--source", str(paths.source),
                  "--out", str(paths.data)],
        "finetune": ["train/finetune.py", "--config", recipe, "--base", str(paths.base), "--dataset", str(paths.data),
                     "--output-dir", str(paths.adapter), *TINY_FINETUNE],
        "evaluate": ["train/evaluate.py", "--config", recipe, "--adapter", str(paths.adapter), "--base",
                     str(paths.base), "--dataset", str(paths.data), "--json", *TINY_EVALUATE],
        "publish": ["train/push.py", str(paths.adapter), "--repo", f"acme/{name}-lora", "--tag", "v1", "--dry-run",
                    "--base-model", str(paths.base), "--base-model-id", TINY_BASE_ID],
    }


def run_child(argv: list[str]) -> str:
    """`python SCRIPT ARGS...` from the repository root, as the README has it; its stdout."""
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=HANG_GUARD_S,
                          env=subprocess_env(), cwd=ROOT)
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


def run_in_process(argv: list[str]) -> str:
    """The script's `main` with the same arguments, from the repository root; its stdout."""
    script, *args = argv
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)  # the recipes' paths are relative, as typed in the README
        patch.setenv("TENSORBOARD_LOGGING_DIR", "")  # finetune.py points it at its run; restored after
        if script == "train/build_dataset.py":
            module = importlib.import_module("train.build_dataset")
            module.main(*module.parse_args(args))
        elif script == "train/finetune.py":
            module = importlib.import_module("train.finetune")
            module.main(*module.parse_args(args))
        elif script == "train/evaluate.py":
            module = importlib.import_module("train.evaluate")
            module.main(*module.parse_args(args))
        else:
            code = importlib.import_module("train.push").run(args)
            assert code == 0, f"{' '.join(argv)} returned {code}:\n{out.getvalue()[-3000:]}"
    return out.getvalue()


@pytest.fixture(scope="module", params=RECIPES)
def lifecycle(request, tiny_model, tmp_path_factory) -> dict:
    """build -> fine-tune (2 steps) -> evaluate, for one recipe."""
    name = request.param
    root = tmp_path_factory.mktemp(name)
    paths = Paths(base=tiny_model, source=write_small_source(name, root / "source"), data=root / "data" / name,
                  adapter=root / "runs" / f"{name}-lora")
    run = run_child if name == CHILD_PROCESS_RECIPE else run_in_process
    lines = commands(name, paths)
    for step in ("build", "finetune"):
        run(lines[step])
    stdout = run(lines["evaluate"])
    return {"name": name, "paths": paths, "commands": lines,
            "summary": json.loads(stdout),  # with --json, stdout is the JSON line and nothing else
            "results": json.loads((paths.adapter / "eval" / "results.json").read_text()),
            "test_rows": load_from_disk(str(paths.data))["test"]}


def test_recipe_lifecycle_writes_both_models_metrics_in_range(lifecycle):
    name, paths, results = lifecycle["name"], lifecycle["paths"], lifecycle["results"]
    rows = lifecycle["test_rows"]
    task = load_task(paths.adapter)
    assert task.name == name
    weights = load_file(paths.adapter / "adapter_model.safetensors")
    updates = [tensor for key, tensor in weights.items() if "lora_B" in key]  # LoRA starts B at zero
    assert updates and all(tensor.abs().max() > 0 for tensor in updates), "every LoRA layer was trained"
    assert results["task"] == name and results["split"] == "test" and results["n"] == len(rows) > 0
    assert set(results["models"]) == {"base", "adapter"}
    # these tasks' answers have no fixed layout to field-decode (the degradation JSON has; the tiny
    # lifecycle checks it); VisDial ranks its candidates
    assert results["decoding"] == ("candidate scoring" if name == "visdial" else "free")
    for model, metrics in results["models"].items():
        scalars = {key: value for key, value in metrics.items() if isinstance(value, (int, float))}
        assert all(math.isfinite(value) and value >= 0 for value in scalars.values()), (model, scalars)
        for key, (low, high) in task.metric_ranges.items():
            assert low <= metrics[key] <= high, (model, key, metrics[key])
        CHECKS[name](metrics, rows)
    summary = lifecycle["summary"]  # the --json line
    assert summary["task"] == name and summary["n"] == len(rows)
    assert summary["adapter"][task.primary_metric] == pytest.approx(results["models"]["adapter"][task.primary_metric],
                                                                    abs=1e-3)
    table = (paths.adapter / "eval" / "results.md").read_text()
    assert "| base (zero-shot) | adapter |" in table and f"| {task.primary_metric} |" in table
    predictions = (paths.adapter / "eval" / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == results["models"]["adapter"]["count"]
    assert {"reference", "base", "adapter"} <= set(json.loads(predictions[0]))


def test_recipe_adapter_publishes_as_a_dry_run(lifecycle):
    stdout = run_in_process(lifecycle["commands"]["publish"])  # a child would add ~15 s of imports
    assert "Dry run: nothing was uploaded." in stdout and "adapter_model.safetensors" in stdout
    card = stdout.split("----- README.md of", 1)[1]
    task = load_task(lifecycle["paths"].adapter)
    metadata = yaml.safe_load(card.split("\n---\n")[1])
    published = {metric["name"] for entry in metadata["model-index"] for result in entry["results"]
                 for metric in result["metrics"]}
    assert published == {name for _, _, name in task.headline_metrics}, "the task's own headline figures"
    assert task.name in metadata["tags"] and "degradation-detection" not in metadata["tags"]
    assert task.title.lower() in card and "JPEG artifacts" not in card


# --------------------------------------------------------------------------- the README says the same

README_SOURCES = {"classification": "raw_data", "counting": "shop", "chartqa": "chartqa", "visdial": "visdial"}


def readme_commands() -> set[str]:
    """Every `python ...` command of the README, continuation lines joined, comments dropped."""
    text = (ROOT / "README.md").read_text().replace("\\\n", " ")
    return {" ".join(line.split("#")[0].split()) for line in text.splitlines() if line.startswith("python ")}


@pytest.mark.parametrize("name", RECIPES)
def test_readme_lists_each_recipes_commands_with_its_paths(name):
    recipe = yaml.safe_load((ROOT / "train" / "recipes" / f"{name}.yaml").read_text())
    data, adapter, path = recipe["dataset_dir"], recipe["output_dir"], f"train/recipes/{name}.yaml"
    expected = [f"python train/build_dataset.py --config {path} --source {README_SOURCES[name]} --out {data}",
                f"python train/finetune.py --config {path}",
                f"python train/evaluate.py --config {path} --adapter {adapter}",
                f"python train/push.py {adapter} --repo ORG/{Path(adapter).name} --tag v1 --dry-run"]
    assert set(expected) <= readme_commands(), set(expected) - readme_commands()


def test_readme_shows_the_tests_command_lines():
    """The tiny rehearsal in the README is what this file runs, flag for flag."""
    folder = Path("runs/recipes")
    paths = Paths(base=folder / "base", source=folder / "shop", data=folder / "shop-counts",
                  adapter=folder / "counting-lora")
    lines = commands("counting", paths)
    expected = {"python " + " ".join(lines[step]) for step in ("build", "finetune", "evaluate")}
    assert expected <= readme_commands(), expected - readme_commands()


# --------------------------------------------------------------------------- per task


def fraction(value) -> bool:
    return 0.0 <= value <= 1.0


def check_per_label(per_label: dict, labels: list[str], n: int) -> None:
    """Precision/recall/F1 of every label in [0, 1], supports summing to the test rows."""
    assert list(per_label) == labels
    assert all(fraction(scores[key]) for scores in per_label.values() for key in ("precision", "recall", "f1"))
    assert sum(scores["support"] for scores in per_label.values()) == n


def check_classification(metrics: dict, rows) -> None:
    classes = rows.features["label"].names
    check_per_label(metrics["per_class"], classes, len(rows))
    confusion = metrics["confusion_matrix"]
    assert confusion["labels"] == classes and confusion["columns"] == [*classes, "unparsed"]
    matrix = confusion["matrix"]
    assert sum(map(sum, matrix)) == len(rows) == metrics["count"]
    assert [sum(row) for row in matrix] == [metrics["per_class"][name]["support"] for name in classes]
    unparsed = sum(row[-1] for row in matrix) / len(rows)
    assert metrics["parse_failure_rate"] == pytest.approx(unparsed)


def check_counting(metrics: dict, rows) -> None:
    counts = sorted(set(rows["count"]))
    check_per_label(metrics["per_count"], [str(count) for count in counts], len(rows))
    assert metrics["count"] == len(rows) and fraction(metrics["within_one"])
    assert metrics["accuracy"] <= metrics["within_one"]
    assert metrics["mae_parsed"] is None or metrics["mae_parsed"] >= 0
    assert (metrics["mae_parsed"] is None) == (metrics["parse_failure_rate"] == 1.0)


def check_chartqa(metrics: dict, rows) -> None:
    assert metrics["count"] == len(rows)
    assert metrics["exact_match"] <= metrics["relaxed_accuracy"]  # an exact answer is relaxed-correct
    sources = [source for source in ("human", "augmented") if source in rows["source"]]
    assert sources and sum(metrics[f"count_{source}"] for source in sources) == len(rows)
    assert all(fraction(metrics[f"relaxed_accuracy_{source}"]) for source in sources)


def check_visdial(metrics: dict, rows) -> None:
    rounds = sum(len(options) for options in rows["options"])
    assert all(len(candidates) == 100 for options in rows["options"] for candidates in options)
    assert metrics["count"] == rounds, "every round of every test dialogue is ranked"
    assert 1.0 <= metrics["mean_rank"] <= 100.0
    assert metrics["r@1"] <= metrics["r@5"] <= metrics["r@10"]
    annotated = sum(bool(relevance) for dialogue in rows["relevance"] for relevance in dialogue)
    assert metrics["ndcg_dense_rounds"] == annotated > 0
    assert fraction(metrics["ndcg_dense"])


CHECKS = {"classification": check_classification, "counting": check_counting, "chartqa": check_chartqa,
          "visdial": check_visdial}
