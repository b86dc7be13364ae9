"""The Ray Data engine of `inspector.batch`: the same jobs and shards, the rows spread over a cluster.

    ray start --head                                   # the head node; `ray start --address HEAD:6379` on the others
    RAY_ADDRESS=auto python -m inspector analyze ORG/DATASET --out /shared/measured --engine ray
    RAY_ADDRESS=auto python -m inspector inspect ORG/DATASET --out /shared/inspected --engine ray  # one model per GPU

Without RAY_ADDRESS a local Ray instance starts, with `--workers` CPUs (default: all cores).
The rows go to Ray Data as Arrow blocks of their image cells and row numbers;
`map_batches` runs the job in a pool of actors (`JobActor`: one per CPU for analyze, one
model per GPU for inspect where the cluster has GPUs, else one per CPU); only the job's
small columns come back, and the driver writes each shard (the source's rows plus those
columns) once all its rows are back, so a killed run keeps every finished shard. The
package must be importable on every node (`pip install` this repository there); the
output folder is the driver's.

Why Ray Data: it is the established engine for batch inference over a cluster (streaming
execution, actor pools with per-actor GPUs, back-pressure); Spark or Dask would serve the
measurement, but neither places one model per GPU as simply.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
from pathlib import Path

ROW = "__row"  # the row's number in the source: how results find their shard
RECORD = "__record"  # the job's columns of one row, as JSON: one schema for every block, errors included
BLOCKS_PER_WORKER = 8  # blocks are the unit of work: enough of them keeps every actor busy to the end


class JobActor:
    """One Ray actor: the job set up once (for inspect, the model loaded once), then batch after batch."""

    def __init__(self, job, image_column: str):
        if job.threads:  # an actor is a process of its own: the limit lasts its life
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(job.threads)
        job.setup()
        self.job, self.image_column = job, image_column

    def __call__(self, batch):
        import pyarrow as pa

        records = self.job.run(batch.column(self.image_column).to_pylist())
        return pa.table({ROW: batch.column(ROW), RECORD: pa.array([json.dumps(record) for record in records])})


def checkout_on_path() -> None:
    """Put this checkout first on PYTHONPATH, once, for the local Ray instance about to start.

    A local instance's workers import this checkout, installed or not. Through the environment
    the daemons inherit, not a runtime_env: Ray reuses its prestarted workers for actors only
    when they have no runtime_env (ray#47212), and with one each actor started a process more.
    """
    root = str(Path(__file__).resolve().parent.parent)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, *paths]))


def start_ray(workers: int | None) -> None:
    """Join the cluster of RAY_ADDRESS, or start a local instance with `workers` CPUs."""
    import ray

    # The job's own bar counts the rows; Ray Data's progress, logged every few seconds where
    # stderr is no terminal, would bury it.
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
        return
    checkout_on_path()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)


def run_ray(source, job, pending: list[tuple[int, int]], writer, workers: int | None, progress) -> int:
    """The pending shards through Ray Data `map_batches`; the error rows written."""
    import pyarrow as pa
    import ray

    start_ray(workers)
    if not pending:
        return 0
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if job.name == "inspect" else 0
    actors = workers or gpus or int(resources.get("CPU", 1))
    images = source.dataset.select_columns([source.image_column]).with_format("arrow")
    rows = sum(stop - start for start, stop in pending)
    block_rows = max(1, min(job.batch_rows * 4, rows // (actors * BLOCKS_PER_WORKER)))
    blocks = []
    for start, stop in pending:
        for first in range(start, stop, block_rows):
            last = min(stop, first + block_rows)
            blocks.append(images[first:last].append_column(ROW, pa.array(range(first, last), pa.int64())))
    # A fixed pool of `actors` actors (`concurrency=` is deprecated since Ray 2.51 for `compute=`).
    results = ray.data.from_arrow(blocks).map_batches(
        JobActor, fn_constructor_args=(job, source.image_column), batch_size=job.batch_rows,
        batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=0 if gpus else 1,
        num_gpus=1 if gpus else 0)

    starts = [start for start, _ in pending]
    collected: dict[tuple[int, int], dict[int, dict]] = {span: {} for span in pending}
    errors = 0
    for batch in results.iter_batches(batch_size=None, batch_format="pyarrow"):
        for row, text in zip(batch.column(ROW).to_pylist(), batch.column(RECORD).to_pylist()):
            span = pending[bisect.bisect_right(starts, row) - 1]
            collected[span][row] = json.loads(text)
            if len(collected[span]) == span[1] - span[0]:
                errors += writer.write(span, [collected[span][index] for index in range(*span)])
                del collected[span]
        progress.update(batch.num_rows)
    if collected:
        raise RuntimeError(f"Ray returned no result for some rows of {len(collected)} shards; run again to redo them")
    return errors
