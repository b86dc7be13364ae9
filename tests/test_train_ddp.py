"""Fine-tuning on several processes: `torchrun` (DDP, gloo on CPU) with the tiny recipe.

The slow test launches `torchrun --nproc_per_node 2 train/finetune.py` as the README has
it, then `--resume`s it; the fast ones check the rank handling that decides whether two
processes train one model together or each its own.
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys

import pytest

from conftest import HANG_GUARD_S, ROOT, subprocess_env

finetune = importlib.import_module("train.finetune")
build_dataset = importlib.import_module("train.build_dataset")

PROCESSES = 2
PER_DEVICE = 2
TRAIN_ROWS = 16


def parse(*argv: str):
    return finetune.parse_args(list(argv))


def test_without_a_gpu_the_trainer_joins_the_processes_on_the_cpu(monkeypatch):
    """Without use_cpu, accelerate gives each torchrun rank a world of one: N separate runs."""
    monkeypatch.setattr(finetune, "_cuda", lambda: False)
    monkeypatch.setattr(finetune, "_cuda_autocast", lambda: None)
    _, args = parse("--output-dir", "/tmp/unused")
    assert args.use_cpu is True and args.bf16 is False and args.dataloader_pin_memory is False
    assert args.ddp_find_unused_parameters is False
    _, asked = parse("--output-dir", "/tmp/unused", "--use-cpu", "false")
    assert asked.use_cpu is False, "the command line still decides"


def test_machine_defaults_survive_the_command_line_parser(monkeypatch):
    """HfArgumentParser turns a bool field's default_factory into False: the GPU defaults must not."""
    monkeypatch.setattr(finetune, "_cuda", lambda: True)
    monkeypatch.setattr(finetune, "_cuda_autocast", lambda: "bf16")
    monkeypatch.setattr(finetune.TrainingArguments, "__post_init__", lambda self: None)  # no GPU to set up here
    _, args = parse("--output-dir", "/tmp/unused")
    assert args.use_cpu is False and args.bf16 is True and args.dataloader_pin_memory is True


def test_only_rank_zero_prints(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    finetune.print0("from rank 1")
    monkeypatch.setenv("RANK", "0")
    finetune.print0("from rank 0")
    assert capsys.readouterr().out == "from rank 0\n"


def torchrun(*argv: str) -> str:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(PROCESSES),
               "train/finetune.py", *argv]
    done = subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=ROOT,
                          env=subprocess_env(TENSORBOARD_LOGGING_DIR=""))
    assert done.returncode == 0, f"torchrun exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.mark.slow
def test_torchrun_two_processes_train_one_adapter_and_resume(tiny_model, tmp_path):
    data = build_dataset.main(build_dataset.DatasetConfig(out=str(tmp_path / "data"), seed=3, reader_options=dict(
        sample_photos=12, crop_size=112, n=44)))
    out = tmp_path / "adapter"
    common = ("--config", "train/recipes/tiny.yaml", "--base", str(tiny_model), "--dataset", str(data),
              "--output-dir", str(out), "--max-train-samples", str(TRAIN_ROWS), "--per-device-train-batch-size",
              str(PER_DEVICE), "--gradient-accumulation-steps", "1", "--save-steps", "2", "--eval-steps", "4",
              "--max-eval-samples", "4", "--logging-steps", "1")
    steps_per_epoch = math.ceil(TRAIN_ROWS / (PER_DEVICE * PROCESSES))  # DDP splits each batch over the ranks

    stdout = torchrun(*common, "--num-train-epochs", "1")
    assert f"effective batch size: {PER_DEVICE * PROCESSES} rows per optimizer step" in stdout
    assert stdout.count("adapter written to") == 1 and stdout.count("\nbase_model_id: ") == 1, "rank 0 only"
    assert (out / "adapter_model.safetensors").is_file() and (out / "inspector_task.json").is_file()
    assert not (out / ".adapter-partial").exists()
    assert len(list((out / "runs").rglob("events.out.tfevents.*"))) == 1, "one TensorBoard writer"
    last = out / "checkpoints" / f"checkpoint-{steps_per_epoch}"
    state = json.loads((last / "trainer_state.json").read_text())
    assert state["global_step"] == steps_per_epoch
    assert {f"rng_state_{rank}.pth" for rank in range(PROCESSES)} <= {path.name for path in last.iterdir()}

    stdout = torchrun(*common, "--num-train-epochs", "2", "--resume")
    assert f"resuming from {last}" in stdout and stdout.count("resuming from") == 1
    state = json.loads((out / "checkpoints" / f"checkpoint-{2 * steps_per_epoch}" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 * steps_per_epoch
    logged = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged == list(range(1, 2 * steps_per_epoch + 1)), "steps 1-4 from the checkpoint, 5-8 resumed"
