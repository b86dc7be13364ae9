"""Training faults (issue #7): kill -9 during fine-tuning, then --resume; a data set build killed midway.

A resumed run ends with exactly the adapter of an uninterrupted one (measured, CPU fp32): the
seed fixes LoRA's initialisation, and Trainer restores the weights, optimizer, scheduler, RNG
states and data order from the checkpoint. Any difference would mean a step was lost, repeated
or fed other data, so the weights are compared for equality, not within a tolerance.

About a minute on 2 CPU cores (50-75 s measured), a third of it the child that is killed.
"""

from __future__ import annotations

import importlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from datasets import load_from_disk
from safetensors.torch import load_file

from conftest import ROOT, subprocess_env

from inspector.tasks import DegradationTask

build_dataset = importlib.import_module("train.build_dataset")
finetune = importlib.import_module("train.finetune")

STEPS = 5
DATASET = dict(sample_photos=12, crop_size=112, n=44)  # the degradation reader's options, seed 3


def finetune_argv(tiny_model: Path, dataset: Path, out: Path, *extra: str) -> list[str]:
    return ["--config", str(ROOT / "train" / "recipes" / "tiny.yaml"), "--base", str(tiny_model),
            "--dataset", str(dataset), "--output-dir", str(out), "--max-steps", str(STEPS), "--save-steps", "1",
            "--save-total-limit", "3", "--eval-steps", str(STEPS), "--max-eval-samples", "4",
            "--max-train-samples", "16", "--per-device-train-batch-size", "2", "--logging-steps", "1",
            "--report-to", "none", *extra]


def run_finetune(*argv: str) -> Path:
    return finetune.main(*finetune.parse_args(list(argv)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return build_dataset.main(build_dataset.DatasetConfig(out=str(tmp_path_factory.mktemp("data") / "ds"),
                                                          seed=3, reader_options=DATASET))


@pytest.fixture(scope="module")
def reference(tiny_model, dataset, tmp_path_factory) -> Path:
    """The uninterrupted run."""
    return run_finetune(*finetune_argv(tiny_model, dataset, tmp_path_factory.mktemp("reference") / "adapter"))


def assert_same_adapter(resumed: Path, reference: Path) -> None:
    ours, theirs = (load_file(str(folder / "adapter_model.safetensors")) for folder in (resumed, reference))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours), "the resumed adapter differs"
    final = [json.loads((folder / "checkpoints" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
             for folder in (resumed, reference)]
    assert final[0]["global_step"] == STEPS
    assert final[0]["log_history"][-1]["eval_loss"] == final[1]["log_history"][-1]["eval_loss"]


# -- fine-tune


def test_resume_after_kill_9_matches_the_uninterrupted_run(tiny_model, dataset, reference, tmp_path, capsys):
    out = tmp_path / "adapter"
    argv = finetune_argv(tiny_model, dataset, out)
    log = tmp_path / "finetune.log"
    with log.open("w") as sink:
        child = subprocess.Popen([sys.executable, "train/finetune.py", *argv], cwd=ROOT, env=subprocess_env(),
                                 stdout=sink, stderr=subprocess.STDOUT)
        try:
            # Killed as soon as Trainer creates checkpoint-3: mid-save (measured: every time, the folder
            # still empty); were it complete by then, the resume must take it instead.
            while not (out / "checkpoints" / "checkpoint-3").is_dir():
                assert child.poll() is None, f"finetune.py ended first:\n{log.read_text()[-3000:]}"
                time.sleep(0.005)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    assert child.returncode == -signal.SIGKILL
    found = finetune.scan_checkpoints(out / "checkpoints")
    last_complete = [path for path, gap in found if gap is None][-1]
    cut_short = [path.name for path, gap in found if gap is not None]

    run_finetune(*argv, "--resume")  # the command line's main, in-process: a child adds 10 s of imports
    said = capsys.readouterr().out
    print("killed with", *(f"{path.name} ({gap or 'complete'})" for path, gap in found))  # shown by -rP
    assert f"resuming from {last_complete}" in said
    for name in cut_short:
        assert f"{name} is incomplete" in said and (out / "checkpoints" / f"incomplete-{name}").is_dir()
    assert_same_adapter(out, reference)


def test_a_half_written_checkpoint_is_set_aside_and_resume_takes_the_last_complete(
        tiny_model, dataset, reference, tmp_path, capsys):
    from transformers.trainer_utils import get_last_checkpoint, sort_checkpoints

    out = tmp_path / "adapter"
    checkpoints = out / "checkpoints"
    shutil.copytree(reference / "checkpoints" / "checkpoint-3", checkpoints / "checkpoint-3")
    shutil.copytree(reference / "checkpoints" / "checkpoint-4", checkpoints / "checkpoint-4")
    (checkpoints / "checkpoint-4" / "trainer_state.json").unlink()  # killed just before Trainer's last write
    assert get_last_checkpoint(str(checkpoints)).endswith("checkpoint-4"), "what transformers alone would take"

    run_finetune(*finetune_argv(tiny_model, dataset, out, "--resume"))
    said = capsys.readouterr().out
    assert "checkpoint-4 is incomplete (no trainer_state.json)" in said and "set aside as" in said
    assert f"resuming from {checkpoints / 'checkpoint-3'}" in said
    assert sorted(path.name for path in checkpoints.iterdir()) == [
        "checkpoint-3", "checkpoint-4", "checkpoint-5", "incomplete-checkpoint-4"]
    # The rotation of save_total_limit neither counts nor deletes what was set aside.
    assert all("incomplete" not in path for path in sort_checkpoints(str(checkpoints)))
    assert_same_adapter(out, reference)


def test_checkpoint_gap_names_what_a_resume_would_miss(reference, tmp_path):
    complete = reference / "checkpoints" / f"checkpoint-{STEPS}"
    assert finetune.checkpoint_gap(complete) is None
    truncated = shutil.copytree(complete, tmp_path / "checkpoint-5")
    state = (truncated / "trainer_state.json").read_text()
    (truncated / "trainer_state.json").write_text(state[:len(state) // 2])
    assert finetune.checkpoint_gap(truncated) == "trainer_state.json truncated"
    (truncated / "optimizer.pt").unlink()
    (truncated / "adapter_model.safetensors").unlink()
    assert finetune.checkpoint_gap(truncated) == "no optimizer.pt, weights"


def test_only_incomplete_checkpoints_are_reported_as_such(tiny_model, dataset, tmp_path):
    out = tmp_path / "adapter"
    (out / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (out / "checkpoints" / "checkpoint-1" / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(FileExistsError, match="only incomplete checkpoints .*checkpoint-1: no trainer_state.json"):
        run_finetune(*finetune_argv(tiny_model, dataset, out))
    assert (out / "checkpoints" / "checkpoint-1").is_dir(), "without --resume nothing is moved"
    with pytest.raises(FileNotFoundError, match="only incomplete checkpoints .*start without --resume"):
        run_finetune(*finetune_argv(tiny_model, dataset, out, "--resume"))
    assert [path.name for path in (out / "checkpoints").iterdir()] == ["incomplete-checkpoint-1"]


# -- data set


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def leftovers(out: Path) -> list[str]:
    return sorted(path.name for path in out.parent.iterdir() if path.name.startswith(f".{out.name}."))


@pytest.mark.parametrize("previous", [True, False], ids=["over-a-data-set", "fresh"])
def test_a_failed_build_leaves_the_previous_data_set_or_nothing(dataset, tmp_path, monkeypatch, previous):
    out = tmp_path / "ds"
    if previous:
        shutil.copytree(dataset, out)
    before = snapshot(out) if previous else None

    def fail(*args, **kwargs):  # after save_to_disk: the data is written, the card is not
        raise RuntimeError("disk full")

    monkeypatch.setattr(DegradationTask, "data_card", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        build_dataset.main(build_dataset.DatasetConfig(out=str(out), overwrite=True, seed=5,
                                                       reader_options=DATASET))
    assert leftovers(out) == []
    if previous:
        assert snapshot(out) == before
        assert len(load_from_disk(str(out))["train"]) == 36
    else:
        assert not out.exists()


def test_a_build_killed_midway_leaves_the_previous_data_set_and_the_next_run_cleans_up(dataset, tmp_path, capsys):
    out = tmp_path / "ds"
    shutil.copytree(dataset, out)
    before = snapshot(out)
    command = [sys.executable, "train/build_dataset.py", "--out", str(out), "--overwrite",
               *(f"--{key.replace('_', '-')}={value}" for key, value in (DATASET | {"seed": 5}).items())]
    log = tmp_path / "build.log"
    with log.open("w") as sink:
        child = subprocess.Popen(command, cwd=ROOT, env=subprocess_env(), stdout=sink, stderr=subprocess.STDOUT)
        try:
            while not leftovers(out):  # the build has begun writing its sibling folder
                assert child.poll() is None, f"build_dataset.py ended first:\n{log.read_text()[-3000:]}"
                time.sleep(0.005)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    assert leftovers(out) == [f".ds.partial-{child.pid}"]
    assert snapshot(out) == before, "the previous data set is untouched"

    again = build_dataset.main(build_dataset.DatasetConfig(out=str(out), overwrite=True, seed=5,
                                                           reader_options=DATASET))
    assert f"removed {out.parent / f'.ds.partial-{child.pid}'}" in capsys.readouterr().out
    assert leftovers(out) == [] and load_from_disk(str(again))["train"]["spec"] != load_from_disk(
        str(dataset))["train"]["spec"]


def test_a_data_set_a_kill_caught_mid_swap_is_put_back(dataset, tmp_path):
    out = tmp_path / "ds"
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid names the leftovers of a process that no longer runs
    shutil.copytree(dataset, tmp_path / f".ds.old-{gone.pid}")
    (tmp_path / f".ds.partial-{gone.pid}").mkdir()
    build_dataset.clear_leftovers(out)
    assert leftovers(out) == [] and len(load_from_disk(str(out))["train"]) == 36


class _SavingModel:
    """Writes what PEFT's save_pretrained writes; `die` stops it after the weights, like a kill."""

    def __init__(self, weights: bytes, die: bool = False) -> None:
        self.weights, self.die = weights, die

    def save_pretrained(self, folder: str) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "adapter_model.safetensors").write_bytes(self.weights)
        if self.die:
            raise KeyboardInterrupt
        (Path(folder) / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/local/base"}))


def test_final_adapter_save_replaces_whole_files_or_nothing(tmp_path):
    from inspector.tasks import get_task

    out = tmp_path / "adapter"
    finetune.save_adapter(_SavingModel(b"first"), out.mkdir() or out, "org/base", get_task("degradation"), 256)
    with pytest.raises(KeyboardInterrupt):
        finetune.save_adapter(_SavingModel(b"second", die=True), out, "org/base", get_task("degradation"), 256)
    assert (out / "adapter_model.safetensors").read_bytes() == b"first", "the earlier adapter is intact"
    finetune.save_adapter(_SavingModel(b"third"), out, "org/base", get_task("degradation"), 256)
    assert (out / "adapter_model.safetensors").read_bytes() == b"third"
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "org/base"
    assert sorted(path.name for path in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                           "inspector_task.json"]
