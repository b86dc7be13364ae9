"""Build a task's data set through its reader (`Task.read`), the same way for every task.

    python train/build_dataset.py --source photos/ --n 5000 --seed 0 --out data/degradation
    python train/build_dataset.py --config train/recipes/degradation.yaml --source photos/
    python train/build_dataset.py --config train/recipes/tiny.yaml --out runs/tiny/data   # offline photos
    python train/build_dataset.py --hub-dataset ORG/PHOTOS --n 5000 --out data/degradation  # with network
    python train/build_dataset.py --config train/recipes/counting.yaml --source shop --out data/shop-counts

`--config` reads a recipe's `task`, `task_options`, `seed`, `dataset_dir` (the default
--out) and `reader_options` (the options of the task's reader, `inspector.tasks`); flags
on the command line win (train/config.py). A task whose reader options are typed (the
degradation task's `inspector.tasks.degradation_data.SynthesisOptions`: --n,
--sample-photos, --hub-dataset, ...) takes each as a flag too.

The degradation task synthesises its rows from clean photos (`inspector.tasks.degradation_data`);
the other tasks read a published layout. Output: the reader's `datasets.DatasetDict`
(train / validation / test) saved with `save_to_disk`, the resolved config beside it
(build_config.yaml) and the task's dataset card (README.md) where it has one. Same config,
same bytes. All of it is written to a sibling `.OUT.partial-PID` and renamed to OUT once
complete, so a killed build leaves OUT as it was; the next run removes what it left.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

import yaml

from train.config import TaskFields, as_mapping, parse_config, peek_task


@dataclass
class DatasetConfig(TaskFields):
    """Which task's data, read from where, and where to write it."""

    recipe_keys: ClassVar[dict[str, str]] = {"dataset_dir": "out"}

    out: str | None = field(default=None, metadata={"help": "folder to save the DatasetDict to"})
    source: str | None = field(default=None, metadata={
        "aliases": ["--images"], "help": "the data folder; for degradation, clean photos (searched recursively)"})
    reader_options: dict[str, Any] | str | None = None  # the task reader's options (JSON on the command line)
    seed: int = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.reader_options = as_mapping(self.reader_options, "reader_options")
        if not self.out:
            raise ValueError("--out is required (or a --config recipe with dataset_dir): the folder to save the data "
                             "set to")


def main(config: DatasetConfig) -> Path:
    from inspector.tasks import get_task

    task = get_task(config.task, **config.task_options)
    if task.source_required and not config.source:
        raise ValueError(f"the {task.name} task reads its data from a folder: give --source FOLDER")
    out = Path(config.out)
    clear_leftovers(out)
    if out.exists() and any(out.iterdir()) and not config.overwrite:
        raise FileExistsError(f"{out} already exists and is not empty; pass --overwrite to replace it")
    print(yaml.safe_dump({"build_dataset": asdict(config)}, sort_keys=False), end="")
    started = time.perf_counter()
    with staged(out) as folder:
        dataset = task.read(config.source, seed=config.seed, **config.reader_options)
        dataset.save_to_disk(str(folder))
        (folder / "build_config.yaml").write_text(yaml.safe_dump(asdict(config), sort_keys=False))
        card = task.data_card(dataset, config.source, seed=config.seed, **config.reader_options)
        if card:
            (folder / "README.md").write_text(card)
        rows = ", ".join(f"{split} {len(part)}" for split, part in dataset.items())
        del dataset  # a reader's generated rows (its cache) are released before the swap
    print(f"{task.name}: {rows} rows written to {out} in {time.perf_counter() - started:.1f} s")
    return out


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A sibling folder to build `out` in, put in its place only once complete.

    Built in place, a crash midway left the previous data set deleted and a half-written one
    that `load_from_disk` may accept (issue #7). A sibling is on the same filesystem, so the
    swap is two renames; a kill between them leaves the previous data set aside, and the next
    run puts it back (`clear_leftovers`).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    # Named by pid, not mkdtemp: mkdtemp's 0700 mode would stay on the published folder.
    partial, old = (out.with_name(f".{out.name}.{kind}-{os.getpid()}") for kind in ("partial", "old"))
    for path in (partial, old):  # an earlier process of the same pid, long gone
        shutil.rmtree(path, ignore_errors=True)
    partial.mkdir()
    try:
        yield partial
    except BaseException:  # KeyboardInterrupt too: nothing half-written stays behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out.exists():
        out.rename(old)
        partial.rename(out)
        shutil.rmtree(old)
    else:
        partial.rename(out)


def clear_leftovers(out: Path) -> None:
    """Remove what a killed build left beside `out`; put back a previous data set caught mid-swap."""
    for path in sorted(out.parent.glob(f".{glob.escape(out.name)}.*-[0-9]*")):
        kind, _, pid = path.name[len(out.name) + 2:].rpartition("-")
        if kind not in ("partial", "old") or not pid.isdigit() or _running(int(pid)):
            continue  # not ours, or a build still running
        if kind == "old" and not out.exists():
            path.rename(out)
            print(f"{out} put back from {path.name}: a build was killed while replacing it")
        else:
            shutil.rmtree(path)
            print(f"removed {path}: left by a build that was killed before it completed")


def _running(pid: int) -> bool:
    if os.name != "posix":  # on Windows os.kill(pid, 0) would terminate it: keep what we cannot check
        return True
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        pass
    return True


def parse_args(argv: list[str] | None = None) -> tuple[DatasetConfig]:
    """The command line over `--config RECIPE` (train/config.py), with the task's typed reader
    options as flags of their own, merged into `reader_options`."""
    from inspector.tasks import TASKS, DEFAULT_TASK

    argv = list(sys.argv[1:] if argv is None else argv)
    name = peek_task(argv) or DEFAULT_TASK
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; the tasks are: {', '.join(TASKS)}")
    options_schema = TASKS[name].reader_options
    parsed = parse_config([DatasetConfig, *([options_schema] if options_schema else [])], argv, __doc__)
    config = parsed[0]
    if options_schema:
        config.reader_options = {**config.reader_options, **asdict(parsed[1])}
    return (config,)


if __name__ == "__main__":
    main(*parse_args())
