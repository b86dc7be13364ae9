"""Whole data sets: `analyze` (and `inspect`) over millions of rows, resumable, on N processes or Ray.

    python -m inspector analyze photos/ --out measured/ --workers 2
    python -m inspector analyze ORG/DATASET --split train --image-column image --out measured/
    python -m inspector analyze saved_dataset/ --out measured/ --engine ray        # a Ray cluster, or local
    python -m inspector inspect saved_dataset/ --out inspected/ --engine ray --base ... --adapter ...

A source is image files and folders (walked; a `path` column), a `datasets` folder
(`save_to_disk`), parquet files or a folder of them, an image folder with a metadata file
(`imagefolder`), or a Hub data set name. The output is the source's columns plus the job's
columns (`MEASUREMENT_FEATURES`, `INSPECTION_FEATURES`), written as parquet shards in the
Hub's layout, OUT/data/{split}-00000-of-00042.parquet, each renamed into place once
complete: `load_dataset("parquet", data_dir=OUT)` reads it, `Dataset.filter` curates it,
`push_to_hub` or `huggingface-cli upload` publishes it. A restart with the same OUT skips
the shards already there (OUT/job.json says which run they belong to). An image that cannot
be read or measured is a row with `error` set, never a failed job.

Engines: `local` runs the shards on a pool of processes (`--workers`); `ray` hands the
rows to Ray Data (`inspector.raydata`), which spreads them over a cluster. Both go
through `Job`: per batch of image cells, the job's columns, one dict per row.
"""

from __future__ import annotations

import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.taxonomy import DEGRADATION_TYPES

DEFAULT_SHARD_ROWS = 500  # rows per output file: what a killed run loses at most, per worker
METADATA_FILES = ("metadata.jsonl", "metadata.csv", "metadata.parquet")  # what makes a folder an imagefolder


def _measurement_features():
    from datasets import Features, Value

    columns = {"width": Value("int32"), "height": Value("int32")}
    for kind in DEGRADATION_TYPES:
        columns |= {f"{kind}_severity": Value("string"), f"{kind}_estimate": Value("float64"),
                    f"{kind}_confidence": Value("float64")}
    return Features({**columns, "error": Value("string")})


def _inspection_features():
    from datasets import Features, List, Value

    report = {"verdict": Value("string"), "degradations": List({"type": Value("string"), "severity": Value("string")}),
              "explanation": Value("string"), "parsed": Value("bool"), "raw_text": Value("string"),
              "notice": Value("string")}
    return Features({"task": Value("string"), "width": Value("int32"), "height": Value("int32"),
                     "base": report, "adapter": report,
                     "elapsed_s": Value("float64"), "error": Value("string")})


# -- sources


@dataclass
class Source:
    """The rows to process and the column that holds each row's image."""

    dataset: Any  # datasets.Dataset
    image_column: str
    description: str
    split: str


def open_source(paths: list[str], split: str | None = None, image_column: str | None = None) -> Source:
    """A `datasets.Dataset` for what the command line names, its image column cast to undecoded
    {bytes, path}: the job decodes each image itself, so that a bad one is that row's error."""
    from datasets import Dataset

    local = [Path(path) for path in paths]
    if len(paths) == 1 and not local[0].exists() and not local[0].suffix:
        return _with_images(_load_hub(paths[0], split), image_column, paths[0], split)
    if len(paths) == 1 and local[0].is_dir() and _is_saved_dataset(local[0]):
        from datasets import load_from_disk

        return _with_images(_pick_split(load_from_disk(str(local[0])), split, paths[0]), image_column, paths[0], split)
    parquet = [path for path in local if path.suffix == ".parquet"] or (
        sorted(local[0].rglob("*.parquet")) if len(local) == 1 and local[0].is_dir() else [])
    if parquet:
        from datasets import load_dataset

        rows = load_dataset("parquet", data_files=[str(path) for path in parquet], split="train")
        return _with_images(rows, image_column, " ".join(paths), split)
    if len(local) == 1 and local[0].is_dir() and any((local[0] / name).is_file() for name in METADATA_FILES):
        from datasets import load_dataset

        rows = _pick_split(load_dataset("imagefolder", data_dir=str(local[0])), split, paths[0])
        return _with_images(rows, image_column, paths[0], split)
    from inspector.images import iter_image_paths

    files = [str(path) for path in iter_image_paths(paths)]
    if not files:
        raise ValueError("no image found under: " + " ".join(paths))
    return Source(Dataset.from_dict({"path": files}), "path", " ".join(paths), split or "train")


def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def _load_hub(name: str, split: str | None):
    from datasets import load_dataset

    try:
        return _pick_split(load_dataset(name), split, name) if split is None else load_dataset(name, split=split)
    except (FileNotFoundError, ConnectionError, ValueError) as error:
        raise ValueError(f"{name}: not a local path, and the Hub data set could not be loaded ({error}); "
                         "name a folder, parquet files or an existing Hub data set") from error


def _pick_split(loaded, split: str | None, name: str):
    from datasets import DatasetDict

    if not isinstance(loaded, DatasetDict):
        return loaded
    if split is None:
        if len(loaded) == 1:
            return next(iter(loaded.values()))
        split = "train" if "train" in loaded else None
    if split not in loaded:
        raise ValueError(f"{name} has the splits {', '.join(loaded)}; choose one with --split")
    return loaded[split]


def _with_images(rows, image_column: str | None, description: str, split: str | None) -> Source:
    from datasets import Image

    images = [name for name, feature in rows.features.items() if isinstance(feature, Image)]
    column = image_column or (images[0] if images else "image" if "image" in rows.column_names else None)
    if column is None or column not in rows.column_names:
        raise ValueError(f"{description}: no image column {'named ' + repr(column) if column else 'found'}; "
                         f"its columns are {', '.join(rows.column_names)}: choose one with --image-column")
    if isinstance(rows.features[column], Image):
        rows = rows.cast_column(column, Image(decode=False))
    return Source(rows, column, description, split or getattr(rows, "split", None) or "train")


def image_of(cell):
    """What `load_image` reads, from an image cell: {bytes, path} (datasets' Image), bytes or a path."""
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return cell["bytes"]
        if cell.get("path"):
            return cell["path"]
        raise ValueError("the image cell holds neither bytes nor a path")
    if cell is None:
        raise ValueError("the image cell is empty")
    return cell


# -- jobs


class AnalyzeJob:
    """The measured evidence (`inspector.evidence.measure`) as flat columns: filter-ready."""

    name = "analyze"
    batch_rows = 16  # measurement is milliseconds a row: batches only amortise the hand-over
    # One process per core, one BLAS thread each: threads of their own would fight over the same cores.
    threads = 1
    default_workers = os.cpu_count() or 1

    @property
    def features(self):
        return _measurement_features()

    def setup(self) -> None:
        from inspector.memory import keep_freed_memory

        keep_freed_memory()  # a measuring process: its large temporaries stay mapped (inspector/memory.py)

    def run(self, cells: list) -> list[dict]:
        return [measure_cell(cell) for cell in cells]


def measure_cell(cell) -> dict:
    """One row's measurement columns; never raises (a failure fills `error`, the rest None)."""
    from inspector.evidence.analyze import error_message
    from inspector.evidence.measure import measure
    from inspector.images import load_image

    try:
        evidence = measure(load_image(image_of(cell)))
    except Exception as error:  # noqa: BLE001 - one bad image must not stop a data set
        return {name: None for name in _measurement_features()} | {"error": error_message(error)}
    record: dict[str, Any] = {"width": evidence.width, "height": evidence.height, "error": None}
    for degradation in evidence.degradations:
        record[f"{degradation.type}_severity"] = degradation.severity
        record[f"{degradation.type}_estimate"] = round(float(degradation.estimate), 2)
        record[f"{degradation.type}_confidence"] = round(float(degradation.confidence), 2)
    return record


class InspectJob:
    """Base and adapter reports, the CLI's JSON as columns; one resident model per worker."""

    name = "inspect"
    batch_rows = 4  # images per generate call: one prefill for all of them
    threads = None  # a model uses every core it is given (torch's threads)
    default_workers = 1  # one model per process: on one machine, one copy of the weights

    def __init__(self, config):
        self.config = config  # inspector.model.InspectorConfig
        self.inspector = None

    @property
    def features(self):
        return _inspection_features()

    def setup(self) -> None:
        from inspector.model import Inspector

        self.inspector = Inspector.load(self.config)
        if self.inspector.task.name != "degradation":
            # Each task's answer has its own shape; the columns here are the degradation report's.
            raise ValueError(f"inspect --out writes degradation reports; this adapter serves the "
                             f"{self.inspector.task.name!r} task: run train/evaluate.py on its data set instead")

    def run(self, cells: list) -> list[dict]:
        from inspector.evidence.analyze import error_message
        from inspector.images import load_image

        records: list[dict | None] = [None] * len(cells)
        pictures = {}
        for index, cell in enumerate(cells):
            try:
                pictures[index] = load_image(image_of(cell))
            except Exception as error:  # noqa: BLE001 - a bad image is its row's error
                records[index] = self._failed(error_message(error))
        try:  # one generate for the batch; if it fails, each image alone says which one
            results = dict(zip(pictures, self.inspector.inspect(list(pictures.values())))) if pictures else {}
        except Exception:  # noqa: BLE001
            results = {}
            for index, picture in pictures.items():
                try:
                    results[index] = self.inspector.inspect([picture])[0]
                except Exception as error:  # noqa: BLE001
                    records[index] = self._failed(f"inspection failed: {type(error).__name__}: {error}")
        for index, result in results.items():
            row = result.to_dict()
            records[index] = {name: row.get(name) for name in _inspection_features()} | {"error": None}
        return records

    @staticmethod
    def _failed(message: str) -> dict:
        return {name: None for name in _inspection_features()} | {"error": message}


# -- shards and the output folder


def plan_shards(rows: int, shard_rows: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) row ranges, the same for the same input and size on every run."""
    count = max(1, math.ceil(rows / shard_rows))
    return [(index * shard_rows, min(rows, (index + 1) * shard_rows)) for index in range(count)]


def shard_path(out: Path, split: str, index: int, count: int) -> Path:
    return out / "data" / f"{split}-{index:05d}-of-{count:05d}.parquet"


def prepare_output(out: Path, source: Source, job, shard_rows: int) -> list[tuple[int, int]]:
    """The shards still to do; refuses an OUT that holds another job's or another input's shards."""
    plan = {"job": job.name, "source": source.description, "split": source.split,
            "image_column": source.image_column, "rows": len(source.dataset), "shard_rows": shard_rows,
            "columns": source.dataset.column_names}
    manifest = out / "job.json"
    if manifest.is_file():
        before = json.loads(manifest.read_text())
        if before != plan:
            changed = ", ".join(key for key in plan if before.get(key) != plan[key])
            raise FileExistsError(f"{out} holds the output of another run ({changed} differ): choose another --out, "
                                  "or delete it to start over")
    elif out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not an output of this command: choose another --out")
    (out / "data").mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(plan, indent=2) + "\n")
    shards = plan_shards(len(source.dataset), shard_rows)
    return [span for index, span in enumerate(shards)
            if not shard_path(out, source.split, index, len(shards)).is_file()]


class ShardWriter:
    """Writes the shards of one plan; knows each span's index."""

    def __init__(self, out: Path, source: Source, job, shard_rows: int):
        self.out, self.source, self.job = out, source, job
        self.shards = plan_shards(len(source.dataset), shard_rows)
        self.index = {span: index for index, span in enumerate(self.shards)}

    def write(self, span: tuple[int, int], records: list[dict]) -> int:
        from datasets import Dataset, concatenate_datasets

        if len(records) != span[1] - span[0]:
            raise RuntimeError(f"rows {span}: {len(records)} results for {span[1] - span[0]} rows")
        rows = self.source.dataset.select(range(*span))
        rows = rows.remove_columns([name for name in self.job.features if name in rows.column_names])
        features = self.job.features
        added = Dataset.from_list([{name: record.get(name) for name in features} for record in records],
                                  features=features)
        path = shard_path(self.out, self.source.split, self.index[span], len(self.shards))
        partial = path.with_name(f".{path.name}.partial")
        concatenate_datasets([rows, added], axis=1).to_parquet(str(partial))
        os.replace(partial, path)  # atomic: a shard on disk is a whole shard
        return sum(record["error"] is not None for record in records)


# -- the local engine


_worker: dict[str, Any] = {}


def _start_worker(job, dataset, image_column: str, pool: bool = True) -> None:
    if pool and job.threads:  # for the life of a pool process; this process keeps its own threads
        from threadpoolctl import threadpool_limits

        _worker["limits"] = threadpool_limits(job.threads)
    job.setup()
    _worker.update(job=job, dataset=dataset, image_column=image_column)


def _run_span(span: tuple[int, int]) -> tuple[tuple[int, int], list[dict]]:
    job, dataset = _worker["job"], _worker["dataset"]
    cells = dataset.select_columns([_worker["image_column"]])[span[0]:span[1]][_worker["image_column"]]
    records = []
    for offset in range(0, len(cells), job.batch_rows):
        records.extend(job.run(cells[offset:offset + job.batch_rows]))
    return span, records


def run_local(source: Source, job, pending: list[tuple[int, int]], writer: ShardWriter, workers: int,
              progress) -> int:
    """The pending shards on `workers` processes (1: this one); the error rows written."""
    errors = 0
    if workers == 1:
        from contextlib import nullcontext

        from threadpoolctl import threadpool_limits

        _start_worker(job, source.dataset, source.image_column, pool=False)
        try:
            with threadpool_limits(job.threads) if job.threads else nullcontext():
                for span in pending:
                    span, records = _run_span(span)
                    errors += writer.write(span, records)
                    progress.update(len(records))
        finally:
            _worker.clear()  # the job (for inspect, a model) is not kept alive in the caller
        return errors
    import multiprocessing

    # fork: the workers inherit the imports and the data set's memory map instead of paying for
    # them again (spawn costs seconds per worker); the analyze job never loads torch.
    context = multiprocessing.get_context("fork" if job.name == "analyze" and sys.platform == "linux" else "spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(job, source.dataset, source.image_column)) as pool:
        futures = [pool.submit(_run_span, span) for span in pending]
        for future in as_completed(futures):
            span, records = future.result()
            errors += writer.write(span, records)
            progress.update(len(records))
    return errors


# -- the command


def run_job(paths: list[str], job, out: str, *, split: str | None = None, image_column: str | None = None,
            engine: str = "local", workers: int | None = None, shard_rows: int = DEFAULT_SHARD_ROWS,
            quiet: bool = False) -> int:
    """Run `job` over the source into `out`; 0, or 1 when any row failed (2: nothing could start)."""
    from tqdm import tqdm

    if shard_rows < 1:
        raise ValueError("--shard-rows must be at least 1")
    from datasets import disable_progress_bars

    disable_progress_bars()  # one bar for the job, not one per shard written
    source = open_source(paths, split, image_column)
    folder = Path(out)
    pending = prepare_output(folder, source, job, shard_rows)
    writer = ShardWriter(folder, source, job, shard_rows)
    done = len(source.dataset) - sum(stop - start for start, stop in pending)
    if done:
        print(f"{folder}: {len(writer.shards) - len(pending)} of {len(writer.shards)} shards already written, "
              "skipped", file=sys.stderr)
    with tqdm(total=len(source.dataset), initial=done, desc=job.name, unit="img", file=sys.stderr,
              disable=quiet or None) as progress:
        if engine == "ray":
            from inspector.raydata import run_ray

            errors = run_ray(source, job, pending, writer, workers, progress)
        else:
            errors = run_local(source, job, pending, writer, workers or job.default_workers, progress)
    print(f"{len(source.dataset)} rows of {source.description} in {folder / 'data'} "
          f"({errors} failed in this run); read it with datasets.load_dataset('parquet', data_dir={str(folder)!r})",
          file=sys.stderr)
    return 1 if errors else 0
