"""The one way the training scripts read their configuration: typed dataclasses, a YAML recipe, flags.

    python train/SCRIPT.py --config train/recipes/NAME.yaml [--flag VALUE ...]

One recipe (train/recipes/NAME.yaml) configures the whole stack: build_dataset.py,
finetune.py, evaluate.py and push.py (and pretrain_tiny.py for the stand-in) each take from it the keys that are fields of
their own dataclasses, and the flags on the command line win over the recipe. A key
that is a field of no script's configuration (`RECIPE_SCHEMA`) is an error, so a
misspelt knob stops the run instead of being silently ignored. A script's dataclass
may read a recipe key under another name (`recipe_keys`: build_dataset.py writes the
recipe's `dataset_dir`, push.py publishes its `output_dir`, pretrain_tiny.py writes its
`base_model`).

Why not `trl.TrlParser.parse_args_and_config` alone: it takes every recipe key as its
own and fails on the others, so one recipe could not serve four scripts; it is used
here for what it does well, setting the parser's defaults from the recipe.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, fields
from importlib import import_module
from pathlib import Path
from typing import Any, Iterable

import yaml

from inspector.tasks import DEFAULT_TASK

# Every dataclass a recipe configures, as module:name, imported only to check a recipe's keys.
RECIPE_SCHEMA = ("train.pretrain_tiny:PretrainConfig", "train.build_dataset:DatasetConfig",
                 "train.finetune:FinetuneConfig", "train.finetune:TrainingConfig", "train.evaluate:EvalConfig",
                 "train.push:PushArgs")


@dataclass
class TaskFields:
    """The task a data set and an adapter are for (build_dataset.py, finetune.py)."""

    task: str = field(default=DEFAULT_TASK, metadata={"help": "a task of inspector.tasks (one recipe per task)"})
    task_options: dict[str, Any] | str | None = None  # the task's options (JSON on the command line)

    def __post_init__(self) -> None:
        self.task_options = as_mapping(self.task_options, "task_options")


@dataclass
class ModelFields:
    """The base, the data and how the model sees it (finetune.py, evaluate.py); None: the script's default."""

    base_model: str | None = field(default=None, metadata={
        "aliases": ["--base"], "help": "base model: Hub repo id or local folder"})
    base_revision: str | None = None
    dataset_dir: str | None = field(default=None, metadata={
        "aliases": ["--dataset"], "help": "folder written by train/build_dataset.py"})
    visual_token_budget: int | None = None  # visual tokens per image; more: slower steps and answers
    device: str | None = None  # cuda or cpu; default: inspector.device decides
    precision: str | None = None  # nf4 / int8 / bf16 / fp16 / fp32; default: inspector.device decides


def as_mapping(value, name: str) -> dict[str, Any]:
    """A mapping from a recipe (already one) or the command line (JSON)."""
    if value is None or isinstance(value, dict):
        return dict(value or {})
    try:
        parsed = json.loads(value)
    except ValueError as error:
        raise ValueError(f"{name} must be a mapping (JSON on the command line), got {value!r}") from error
    if not isinstance(parsed, dict):
        raise ValueError(f"{name} must be a mapping, got {value!r}")
    return parsed


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The recipe's keys, each checked to be a field of some script's configuration."""
    try:
        recipe = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as error:
        raise FileNotFoundError(f"--config {path}: no such recipe (see train/recipes/)") from error
    if not isinstance(recipe, dict):
        raise ValueError(f"--config {path} must hold a YAML mapping")
    known = set()
    for entry in RECIPE_SCHEMA:
        module, name = entry.split(":")
        schema = getattr(import_module(module), name)
        known |= {item.name for item in fields(schema)} | set(getattr(schema, "recipe_keys", {}))
    unknown = sorted(set(recipe) - known)
    if unknown:
        raise ValueError(f"--config {path}: unknown key(s) {', '.join(unknown)}: not a setting of build_dataset.py, "
                         "finetune.py, evaluate.py or push.py (a typo?)")
    return recipe


def recipe_defaults(schema, recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe's values for one dataclass, by field name."""
    if hasattr(schema, "from_recipe"):
        return schema.from_recipe(recipe)
    names = {item.name for item in fields(schema) if item.init}
    renamed = getattr(schema, "recipe_keys", {})
    return {renamed.get(key, key): value for key, value in recipe.items() if renamed.get(key, key) in names}


def parse_config(schemas: Iterable[type], argv: list[str] | None = None, usage: str | None = None) -> tuple:
    """Flags over `--config RECIPE` over the dataclasses' defaults; one instance per dataclass.

    An unknown flag is an error (HfArgumentParser's), and so is an unknown recipe key.
    `usage` (the script's docstring) heads `--help`.
    """
    from argparse import RawDescriptionHelpFormatter

    from trl import TrlParser

    schemas = list(schemas)
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = TrlParser(schemas, description=usage, formatter_class=RawDescriptionHelpFormatter)
    path = _pop_config(argv)
    if path is not None:
        recipe = read_recipe(path)
        for schema in schemas:
            parser.set_defaults_with_config(**recipe_defaults(schema, recipe))
    return tuple(parser.parse_args_into_dataclasses(argv))


def peek_task(argv: list[str]) -> str | None:
    """The task a command line names, by `--task` or its `--config` recipe; None: neither says.

    For a script whose flags depend on the task (build_dataset.py: the reader's options).
    """
    for index, arg in enumerate(argv):
        if arg == "--task" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--task="):
            return arg.split("=", 1)[1]
    path = _pop_config(list(argv))
    if path is not None:
        return read_recipe(path).get("task")
    return None


def _pop_config(argv: list[str]) -> str | None:
    for index, arg in enumerate(argv):
        if arg == "--config":
            if index + 1 == len(argv):
                raise ValueError("--config needs a recipe: --config train/recipes/NAME.yaml")
            path = argv[index + 1]
            del argv[index:index + 2]
            return path
        if arg.startswith("--config="):
            del argv[index]
            return arg.split("=", 1)[1]
    return None
