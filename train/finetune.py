"""Fine-tune a LoRA adapter for a task: QLoRA on CUDA, LoRA on CPU for the tiny stand-in.

    python train/finetune.py --config train/recipes/degradation.yaml
    python train/finetune.py --config train/recipes/tiny.yaml --base runs/tiny/base \
        --dataset runs/tiny/data --output-dir runs/tiny/adapter
    python train/finetune.py --config train/recipes/degradation.yaml --resume   # after a crash
    torchrun --nproc_per_node 4 train/finetune.py --config train/recipes/degradation.yaml   # 4 GPUs (DDP)
    accelerate launch --num_processes 4 train/finetune.py --config train/recipes/degradation.yaml

Every knob is a field of `FinetuneConfig` or `TrainingConfig` (transformers'
`TrainingArguments` with this project's defaults) below; a YAML recipe sets them
(`--config`, one per task in train/recipes/), the command line overrides the recipe.

The recipe of the seeds, kept: the base in nf4 with double quantization and bf16
compute (`inspector.model.quantization_config`; fp16 on GPUs without bf16 such as the T4,
and the autocast follows: `inspector.device.compute_dtype`), LoRA r=16, alpha=32, dropout
0.05 on the language model's q/k/v/o/gate/up/down projections, gradient checkpointing and
accumulation. What this script adds: the loss on the answers only, the input built by
`inspector.tasks.collate.TaskCollator` with the task's views and messages and
`build_task_inputs` (what serving uses too: `inspector.model.Inspector.answer`),
evaluation during training, TensorBoard logs, `--resume`, and an
adapter folder the app loads as it is:

    OUTPUT_DIR/adapter_config.json, adapter_model.safetensors   stock PEFT adapter
    OUTPUT_DIR/inspector_task.json                              task, instruction, answer format, options
    OUTPUT_DIR/training_config.yaml                             the resolved config
    OUTPUT_DIR/checkpoints/checkpoint-N/                        for --resume (the last complete one)
    OUTPUT_DIR/runs/                                            TensorBoard (tensorboard --logdir OUTPUT_DIR/runs)

Why `transformers.Trainer` and not TRL's `SFTTrainer`: the collator must be ours, so
that training and serving build the input with one function. `SFTTrainer` accepts a
custom collator, but then skips its dataset preparation, and its fused-LM-head loss and
chat-template handling are machinery we would carry without using; `Trainer` with one
collator module is the smaller, well-kept surface.

Several processes (`torchrun`, `accelerate launch`): `Trainer` runs them as DDP, each rank
with the base on its own GPU (`LOCAL_RANK`, `inspector.model.load_base`) and its share of
every batch; the effective batch size is per-device x accumulation x processes. Only the
main process prints the config and writes files (the config, the adapter; `Trainer` its
checkpoints and logs). Several machines need OUTPUT_DIR on a file system they share: every
rank reads the checkpoint it resumes from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from transformers import IntervalStrategy, TrainingArguments

from inspector.model import DEFAULT_BASE, DEFAULT_VISUAL_TOKENS, LANGUAGE_LORA_TARGETS
from train.config import ModelFields, TaskFields, parse_config

# The vision tower's linear layers (Qwen2-VL names them apart from the language model's).
VISION_LORA_PATTERN = r"visual\.blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)"
# What Trainer reads to resume from a checkpoint-N folder (its names: trainer.py's *_NAME constants),
# and the weights, in whichever format it was saved.
CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
CHECKPOINT_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors", "pytorch_model.bin")
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")  # transformers.trainer_utils' pattern, fully matched


@dataclass
class FinetuneConfig(ModelFields, TaskFields):
    """The task, the data, the base and the adapter's shape; the trainer's knobs are `TrainingConfig`."""

    base_model_id: str | None = field(default=None, metadata={
        "help": "base named in adapter_config.json; default: the Hub id, or 'local/<folder name>' for a folder"})
    max_train_samples: int | None = None  # a subset for quick runs
    max_eval_samples: int | None = 64  # validation rows scored at each evaluation: each costs a forward pass
    lora_r: int = 16  # rank: higher adapts more, costs memory and time
    lora_alpha: int = 32  # the update is scaled by alpha / r
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(LANGUAGE_LORA_TARGETS))
    lora_vision: bool = False  # also adapt the vision tower: then it cannot be served in the app's mixed batch
    resume: bool = False  # continue from the last checkpoint in OUTPUT_DIR/checkpoints

    def __post_init__(self) -> None:
        TaskFields.__post_init__(self)
        # The defaults of this script (evaluate.py's come from the adapter it evaluates).
        self.base_model = self.base_model or DEFAULT_BASE
        self.dataset_dir = self.dataset_dir or "data/degradation"
        self.visual_token_budget = self.visual_token_budget or DEFAULT_VISUAL_TOKENS  # saved in inspector_task.json
        if self.precision not in (None, "nf4", "bf16", "fp16", "fp32"):
            raise ValueError(f"precision {self.precision!r}: use nf4 (QLoRA), bf16, fp16 or fp32")
        if self.lora_r < 1 or not 0 <= self.lora_dropout < 1:
            raise ValueError("lora_r must be >= 1 and lora_dropout in [0, 1)")


@dataclass
class TrainingConfig(TrainingArguments):
    """`transformers.TrainingArguments` with this project's defaults: evaluation during training,
    TensorBoard logs, and every data set column kept for the collator."""

    output_dir: str | None = field(default=None, metadata={"help": "the adapter folder (checkpoints/ and runs/ inside)"})
    eval_strategy: IntervalStrategy | str = "steps"
    eval_steps: float | None = 100
    save_steps: float = 100
    logging_steps: float = 10
    report_to: None | str | list[str] = "tensorboard"
    # Every LoRA weight takes part in every step, so DDP need not search the graph for unused ones
    # (PEFT models are not PreTrainedModels, for which Trainer would set this itself); the search
    # also breaks reentrant gradient checkpointing ("marked ready twice").
    ddp_find_unused_parameters: bool | None = False
    remove_unused_columns: bool = False  # the collator needs the image and the task's columns
    # The four below: None is "decided by the machine", in __post_init__. Not a default_factory:
    # HfArgumentParser gives a bool field with one False, whatever the factory says.
    # Autocast in the GPU's compute dtype, the one nf4 computes in (inspector.device.compute_dtype):
    # bf16 where the GPU has it (the QLoRA paper's), fp16 with loss scaling on older cards (T4);
    # never on CPU, where transformers refuses it without use_cpu and the tiny trains in fp32.
    bf16: bool | None = None
    fp16: bool | None = None
    dataloader_pin_memory: bool | None = None  # pinned memory only helps a GPU
    # Without a GPU, Trainer joins the processes of `torchrun` (gloo) only with use_cpu: otherwise each
    # rank trains the whole data set alone and every rank writes the same files (accelerate's PartialState).
    use_cpu: bool | None = None

    def __post_init__(self) -> None:
        if not self.output_dir:
            raise ValueError("--output-dir is required: the folder the adapter is written to")
        for name, value in machine_defaults().items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        super().__post_init__()


def machine_defaults() -> dict[str, bool]:
    """What TrainingConfig's None fields become on this machine: autocast in the GPU's compute
    dtype, pinned memory and the processes joined on a GPU, use_cpu without one."""
    autocast, cuda = _cuda_autocast(), _cuda()
    return {"bf16": autocast == "bf16", "fp16": autocast == "fp16", "dataloader_pin_memory": cuda,
            "use_cpu": not cuda}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _cuda_autocast() -> str | None:
    """"bf16" or "fp16" on a CUDA GPU (the compute dtype), None elsewhere (or for fp32 compute)."""
    from inspector.device import compute_dtype

    if not _cuda():
        return None
    dtype, _ = compute_dtype("cuda")
    return dtype if dtype != "fp32" else None


def is_main_process() -> bool:
    """Rank 0 of `torchrun` / `accelerate launch` (RANK), or the only process."""
    return int(os.environ.get("RANK", "0")) == 0


def print0(*values, **kwargs) -> None:
    """`print` on the main process only: N ranks would print every line N times."""
    if is_main_process():
        print(*values, **kwargs)


def training_runtime(device: str | None, precision: str | None):
    """The runtime to train in: the serving choice, except that int8 (the CPU serving default) becomes
    the CPU's float, bf16 where it is native, else fp32: dynamic int8 layers have no gradients."""
    from inspector.device import choose_runtime, cpu_has_native_bf16

    runtime = choose_runtime(device, precision)
    if runtime.int8:
        runtime = choose_runtime(runtime.device, "bf16" if cpu_has_native_bf16() else "fp32")
    return runtime


def main(config: FinetuneConfig, args: TrainingConfig) -> Path:
    """Train and save the adapter to `args.output_dir`; returns that folder."""
    import torch
    from datasets import load_from_disk
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import Trainer, set_seed

    from inspector.hub import is_local
    from inspector.model import load_base
    from inspector.tasks import get_task
    from inspector.tasks.collate import TaskCollator

    out = Path(args.output_dir)
    checkpoints = out / "checkpoints"
    # The main process sets incomplete checkpoints aside before the others look: then all ranks
    # resume from the same one.
    with args.main_process_first(local=False, desc="checkpoint scan"):
        resume_from = check_resume(config, out)
    base_model_id = config.base_model_id or (
        f"local/{Path(config.base_model).name}" if is_local(config.base_model) else config.base_model)
    resolved = {**asdict(config), "base_model_id": base_model_id, **training_arguments(args)}
    if is_main_process():
        print(yaml.safe_dump(resolved, sort_keys=False), end="")
        out.mkdir(parents=True, exist_ok=True)
        (out / "training_config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))

    # Dataset
    dataset = load_from_disk(config.dataset_dir)
    task = get_task(config.task, **config.task_options).for_dataset(dataset)
    train_rows = subset(dataset["train"], config.max_train_samples, args.seed)
    eval_rows = subset(dataset["validation"], config.max_eval_samples, args.seed)

    # Model
    # LoRA's A matrices are drawn in get_peft_model, before Trainer seeds: unseeded, the same
    # recipe gave a different adapter on every run, and a resumed run could not be checked against one.
    set_seed(args.seed)
    runtime = training_runtime(config.device, config.precision)
    print0(f"runtime: {runtime.describe()}")
    print0(f"autocast: {'bf16' if args.bf16 else 'fp16' if args.fp16 else 'none'}")
    model, processor = load_base(config.base_model, config.base_revision, runtime)
    if runtime.quantized:
        # Freezes the base, upcasts its unquantized weights (norms, embeddings, vision tower) to fp32
        # for stable gradients, and enables gradient checkpointing: the standard QLoRA preparation.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing,
                                                gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=lora_targets(config), task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    if is_main_process():
        model.print_trainable_parameters()
    collator = TaskCollator(processor, task, config.visual_token_budget)
    if is_main_process():
        sanity_check(collator, train_rows, processor)

    # Training
    args.output_dir = str(checkpoints)
    args.label_names = ["labels"]
    if "tensorboard" in (args.report_to or []):
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(out / "runs")
    trainer = Trainer(model=model, args=args, data_collator=collator, train_dataset=train_rows,
                      eval_dataset=eval_rows if args.eval_strategy != "no" else None)
    print0(f"effective batch size: {effective_batch_size(args)} rows per optimizer step "
           f"({args.per_device_train_batch_size} per device x {args.gradient_accumulation_steps} accumulated "
           f"x {args.world_size} processes); {len(train_rows)} training rows")
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    print0(f"trained {result.global_step} steps in {time.perf_counter() - started:.1f} s, "
          f"final train loss {result.training_loss:.4f}")
    if torch.cuda.is_available():  # what decides whether a recipe fits a card; each rank's own GPU
        print(f"rank {args.process_index}: peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB "
              "(allocated by torch)")
    if trainer.is_world_process_zero():
        save_adapter(trainer.model, out, base_model_id, task, config.visual_token_budget)
    return out


def effective_batch_size(args) -> int:
    """Rows per optimizer step over all processes: what the learning rate is tuned for."""
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size


def check_resume(config: FinetuneConfig, out: Path) -> Path | None:
    """The checkpoint to continue from: with --resume the last complete one, else None (a fresh run).

    Trainer writes checkpoint-N/ file by file, trainer_state.json last, and transformers'
    `get_last_checkpoint` takes the highest N even when a kill -9 stopped it halfway (issue #7):
    resuming from it fails on a missing file or loads a truncated one. With --resume the
    incomplete folders are set aside first, so that neither this resume nor the rotation of
    `save_total_limit` trusts or counts them.
    """
    folder = out / "checkpoints"
    found = scan_checkpoints(folder)
    complete = [path for path, gap in found if gap is None]
    if not config.resume:
        if complete:
            raise FileExistsError(f"{out} already holds checkpoints ({complete[-1].name}); pass --resume to "
                                  "continue that run, or choose another --output-dir")
        if found:
            raise FileExistsError(f"{out} holds only incomplete checkpoints ({describe(found)}), from a run "
                                  f"stopped while saving; delete {folder} or choose another --output-dir")
        return None
    for path, gap in found:
        if gap is not None:
            set_aside(path, gap)
    if not found:
        raise FileNotFoundError(f"--resume: no checkpoint-N folder in {folder}; start without --resume")
    if not complete:
        raise FileNotFoundError(f"--resume: {folder} holds only incomplete checkpoints ({describe(found)}), now "
                                "set aside: the run stopped before its first one was written; start without --resume")
    print0(f"resuming from {complete[-1]}")
    return complete[-1]


def scan_checkpoints(folder: Path) -> list[tuple[Path, str | None]]:
    """The checkpoint-N folders by step, each with what it lacks to resume from (None: complete)."""
    if not folder.is_dir():
        return []
    steps = {path: int(match[1]) for path in folder.iterdir()
             if path.is_dir() and (match := CHECKPOINT_NAME.fullmatch(path.name))}
    return [(path, checkpoint_gap(path)) for path in sorted(steps, key=steps.get)]


def checkpoint_gap(path: Path) -> str | None:
    missing = [name for name in CHECKPOINT_FILES if not (path / name).is_file()]
    if not any((path / name).is_file() for name in CHECKPOINT_WEIGHTS):
        missing.append("weights")
    if missing:
        return f"no {', '.join(missing)}"
    try:  # written last, but not atomically: a kill during its write leaves it truncated
        json.loads((path / "trainer_state.json").read_text())
    except ValueError:
        return "trainer_state.json truncated"
    return None


def set_aside(path: Path, gap: str) -> None:
    # A name outside both of transformers' patterns: `get_last_checkpoint` matches ^checkpoint-N$ and
    # the rotation globs checkpoint-*, so a "checkpoint-N.incomplete" would still be counted there.
    target = path.with_name(f"incomplete-{path.name}")
    if target.exists():  # set aside by an earlier resume of the same step: the newer attempt replaces it
        shutil.rmtree(target)
    path.rename(target)
    print0(f"{path.name} is incomplete ({gap}), from a run stopped while saving it: set aside as {target}")


def describe(found: list[tuple[Path, str | None]]) -> str:
    return "; ".join(f"{path.name}: {gap}" for path, gap in found if gap is not None)


def lora_targets(config: FinetuneConfig) -> list[str] | str:
    """The language model's projections; with `lora_vision`, one regex that adds the vision tower's.

    The vision tower's LoRA trains fine, but the app's one generate for both reports
    (`inspector.model.Inspector.generate`) runs the vision tower once for an image's base
    and adapter rows, and PEFT's mixed batches split an adapted layer's input by batch row
    where the vision tower's rows are patches: an adapter with vision LoRA must be served
    alone, never in the app's side-by-side batch.
    """
    if not config.lora_vision:
        return list(config.target_modules)
    print0("warning: lora_vision adapts the vision tower; serve this adapter alone, not in the app's mixed batch")
    language = "|".join(config.target_modules)
    return rf".*language_model.*\.({language})|.*{VISION_LORA_PATTERN}"


def subset(rows, limit: int | None, seed: int):
    if limit is None or limit >= len(rows):
        return rows
    return rows.shuffle(seed=seed).select(range(limit))


def sanity_check(collator, rows, processor) -> None:
    """Collate two rows before the long run: the loss must see the answer, and only the answer."""
    batch = collator([rows[index] for index in range(min(2, len(rows)))])
    supervised = batch["labels"][0][batch["labels"][0] != -100]
    if len(supervised) == 0:
        raise RuntimeError("the first training row has no supervised tokens: check the chat template")
    print(f"input: {batch['input_ids'].shape[1]} tokens per row ({int(batch['image_grid_thw'].shape[0])} views "
          f"in 2 rows); loss on {len(supervised)} tokens: {processor.tokenizer.decode(supervised)!r}")


def save_adapter(model, out: Path, base_model_id: str, task, visual_token_budget: int) -> None:
    """The adapter folder the app and `PeftModel.from_pretrained` load; no processor, no checkpoint.

    Written into a staging folder inside `out`, then each file renamed into place: a kill
    during the save leaves the previous adapter files (or none), never a truncated one.
    """
    staging = out / ".adapter-partial"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    # The base it names: never this machine's path (the folder is published and loaded elsewhere).
    # Set after saving: PEFT would otherwise look that name up to check the vocabulary.
    config_path = staging / "adapter_config.json"
    adapter_config = json.loads(config_path.read_text())
    adapter_config["base_model_name_or_path"] = base_model_id
    config_path.write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
    # inspector_task.json: the app serves the adapter with this task's prompt, parser and visual-token budget
    task.save_config(staging, visual_token_budget)
    # The weights last: an adapter_model.safetensors in `out` means the config beside it is this run's.
    for path in sorted(staging.iterdir(), key=lambda path: path.name == "adapter_model.safetensors"):
        os.replace(path, out / path.name)
    staging.rmdir()
    print(f"adapter written to {out}")


def training_arguments(args) -> dict:
    """The TrainingArguments worth saving: all of them, as plain YAML values."""
    values = args.to_dict()
    return {key: value for key, value in values.items() if not key.startswith("_") and not key.endswith("_token")}


def parse_args(argv: list[str] | None = None) -> tuple:
    """The command line over `--config RECIPE` (train/config.py)."""
    return parse_config([FinetuneConfig, TrainingConfig], argv, __doc__)


if __name__ == "__main__":
    main(*parse_args())
