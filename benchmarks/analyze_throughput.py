"""Throughput of `analyze` over a data set: 1 and 2 local workers, and Ray Data with 2 CPUs.

Usage:
    python benchmarks/analyze_throughput.py                      # 1,000 photos of 1 MP, all five runs
    python benchmarks/analyze_throughput.py --n 200 --json --out analyze.json
    python benchmarks/analyze_throughput.py --runs local-1,local-2

The photos are generated once into --photos (default runs/analyze_bench/photos): crops
of the photos bundled with scikit-image, scikit-learn and matplotlib, resized to
1152x864 (1.0 MP), degraded by `inspector.evidence.degrade` with a random spec (seed
2026), saved as JPEG. Every run measures the same folder through the same command path
(`inspector.batch.run_job`, parquet shards into a fresh folder), end to end: the pool's
start, every image read and measured, every shard written. Ray's own start (`ray.init`)
is timed apart: on a cluster it is up before the job; `ray-2-warm` runs the same job again
on the same instance, after Ray Data's helper actors are up, as on a cluster that has run a
job before. Targets (issue 18): 2 workers at
least 1.8x one; Ray within 20 % of the local 2 workers. The load average is printed
with each run: on a shared machine another job's threads take cores from these.
`--probe` adds the machine's own ceiling: the same measurement of 60 decoded photos in one
process, then in two at once, with nothing else (no pool, data set or shards). On Linux each
run also records where the machine's CPU time went (`cpu_s`: CPU seconds of every process over
the run, by name, from /proc): the workers' measurement against Ray's own processes.
"""

from __future__ import annotations

import os

# One thread per worker: the runs compare processes, not BLAS threads.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from evidence_bench import load_photos, photo_paths, random_crop  # noqa: E402  (benchmarks/, beside this)

from inspector.batch import AnalyzeJob, run_job  # noqa: E402
from inspector.device import cpu_kind  # noqa: E402

SIZE = (1152, 864)  # 0.995 MP, 4:3
# ray-2-warm: a second Ray Data job on the same instance, whose helper actors (stats, autoscaling
# coordinator, actor locations) the first job started, as on a cluster that has run a job before.
# ray-2-runtime-env: a fresh instance started as the engine started it before (the checkout's path
# in a runtime_env, which keeps Ray from reusing its prestarted workers for the actors).
# ray-2-preload: a fresh instance whose workers import Ray Data and the measurement before they take
# work (Ray's `preload_python_modules`), with six of them prestarted (`num_workers_soft_limit`):
# the two map actors and Ray Data's three helper actors would otherwise each import Ray Data on
# the job's clock (about 1.5 CPU s each, pandas most of it).
RUNS = ("local-1", "local-2", "ray-2", "ray-2-warm", "ray-2-runtime-env", "ray-2-preload")
RAY_START = {"ray-2": "env", "ray-2-warm": "env", "ray-2-runtime-env": "runtime-env", "ray-2-preload": "preload"}
PRELOAD = ["ray.data", "inspector.batch", "inspector.raydata", "inspector.evidence.measure"]
ROOT = Path(__file__).resolve().parent.parent


def generate(folder: Path, n: int, seed: int) -> list[Path]:
    """n degraded 1 MP JPEGs in `folder`; kept between runs (the same images for every engine)."""
    from inspector.evidence import degrade, sample_spec

    folder.mkdir(parents=True, exist_ok=True)
    wanted = [folder / f"photo-{index:05d}.jpg" for index in range(n)]
    missing = [path for path in wanted if not path.is_file()]
    if missing:
        photos = list(load_photos(sorted(photo_paths())).values())
        rng = np.random.default_rng(seed)
        started = time.perf_counter()
        for index, path in enumerate(wanted):
            crop = random_crop(photos[index % len(photos)], rng).resize(SIZE, Image.Resampling.LANCZOS)
            spec, _ = sample_spec(rng)
            degraded = degrade(crop, spec, seed=int(rng.integers(1 << 31)))
            if path in missing:
                quality = int(spec.get("jpeg_artifacts", {}).get("quality", 95))
                partial = path.with_suffix(".partial")
                degraded.save(partial, "JPEG", quality=quality)
                partial.rename(path)
        print(f"generated {len(missing)} photos in {time.perf_counter() - started:.0f} s into {folder}",
              file=sys.stderr)
    return wanted


def load() -> float:
    return round(os.getloadavg()[0], 2)


def process_cpu_seconds() -> dict[str, tuple[str, float]]:
    """Every process's CPU seconds so far (user + system; not its reaped children's, which
    `CpuSampler` reads from the children themselves while they run), by pid,
    with a short name: Ray's workers by their title (`ray::MapWorker(...)`), others by program and
    script. Linux /proc only; elsewhere empty. (A dozen lines of /proc rather than psutil: the
    project does not otherwise need it.)"""
    ticks, seen = os.sysconf("SC_CLK_TCK"), {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 0
            argv = (stat.parent / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, IndexError):
            continue  # a process that ended meanwhile
        name = " ".join(Path(part).name for part in argv[:2] if part) or "(kernel)"
        seen[stat.parent.name] = (name[:60], (int(fields[11]) + int(fields[12])) / ticks)  # utime, stime
    return seen


def cpu_by_process(before: dict, after: dict, most: int = 8) -> dict[str, float]:
    """CPU seconds spent over a run, summed by process name, the largest `most` (the rest as "other")."""
    spent: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        used = seconds - before[pid][1] if pid in before and before[pid][0] == name else seconds
        if used > 0:
            spent[name] = spent.get(name, 0.0) + used
    ranked = sorted(spent.items(), key=lambda item: -item[1])
    top = {name: round(seconds, 1) for name, seconds in ranked[:most]}
    if rest := sum(seconds for _, seconds in ranked[most:]):
        top["other"] = round(rest, 1)
    return top


class CpuSampler:
    """`process_cpu_seconds` every half second in a thread, over a `with` block: the last reading
    of each process, so one that ends before the block does (a Ray actor the job's end stops)
    still counts up to its last half second. `spent()`: `cpu_by_process` over the block."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.before, self.last = interval, {}, {}
        self.stop = threading.Event()

    def __enter__(self):
        self.before = process_cpu_seconds()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _read(self) -> None:
        for pid, (name, seconds) in process_cpu_seconds().items():
            known = self.last.get(pid)
            # An ended process not yet reaped has no command line left: it keeps the name it had
            self.last[pid] = (known[0] if known and name == "(kernel)" else name, seconds)

    def _sample(self) -> None:
        while not self.stop.wait(self.interval):
            self._read()

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self._read()

    def spent(self) -> dict[str, float]:
        return cpu_by_process(self.before, self.last)


def start_ray_timed(mode: str) -> float:
    """A fresh local Ray instance with 2 CPUs, its start timed apart (on a cluster it is up before
    the job): as the engine starts it (`inspector.raydata.start_ray`), with `mode` "runtime-env"
    as it did before (the checkout's path in a job runtime_env), or with "preload" as the engine
    starts it plus Ray's worker preloading (`PRELOAD`, six workers prestarted)."""
    import ray

    from inspector.raydata import start_ray

    ray.shutdown()
    started = time.perf_counter()
    if mode == "runtime-env":
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    elif mode == "preload":
        from inspector.raydata import checkout_on_path

        checkout_on_path()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _system_config={"preload_python_modules": PRELOAD, "num_workers_soft_limit": 6})
    else:
        start_ray(2)
    return round(time.perf_counter() - started, 2)


def timed_run(name: str, photos: Path, shard_rows: int) -> dict:
    engine, workers = name.split("-")[:2]
    with tempfile.TemporaryDirectory() as scratch:
        before = load()
        with CpuSampler() as sampler:
            started = time.perf_counter()
            run_job([str(photos)], AnalyzeJob(), str(Path(scratch) / "out"),
                    engine="ray" if engine == "ray" else "local", workers=int(workers), shard_rows=shard_rows,
                    quiet=True)
            seconds = time.perf_counter() - started
        cpu = sampler.spent()
    return {"seconds": round(seconds, 2), "load_before": before, "load_after": load(), "cpu_s": cpu,
            "cpu_s_total": round(sum(cpu.values()), 1)}


def _probe_worker(paths: list[str], start, queue) -> None:
    from inspector.evidence.measure import measure
    from inspector.images import load_image

    images = [load_image(path) for path in paths]  # decoded before the clock: measurement only
    measure(images[0])  # first call: imports and the calibration file
    start.wait()
    began = time.perf_counter()
    for image in images:
        measure(image)
    queue.put(time.perf_counter() - began)


def scaling_probe(paths: list[Path], n: int = 60) -> dict:
    """The machine's own ceiling for 2 workers: the same measurement of the same n decoded photos,
    in 1 process, then in 2 processes at once (no pool, no data set, no shards, no folder read).
    2 x (one process's rate) would be perfect scaling; what 2 processes reach is what the cores
    give (shared caches, memory bandwidth, or two vCPUs that are one core's two threads)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    chosen = [str(path) for path in paths[:n]]
    rates = {}
    for processes in (1, 2):
        start, queue = context.Barrier(processes), context.Queue()
        workers = [context.Process(target=_probe_worker, args=(chosen, start, queue)) for _ in range(processes)]
        for worker in workers:
            worker.start()
        seconds = [queue.get() for _ in workers]
        for worker in workers:
            worker.join()
        rates[processes] = processes * len(chosen) / max(seconds)
    return {"photos_per_process": len(chosen), "one_process_per_s": round(rates[1], 2),
            "two_processes_per_s": round(rates[2], 2), "ceiling_2_workers": round(rates[2] / rates[1], 2)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="photos (default 1000)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--photos", default=str(ROOT / "runs" / "analyze_bench" / "photos"))
    parser.add_argument("--shard-rows", type=int, default=50, help="rows per shard: the unit a local worker takes")
    parser.add_argument("--runs", default=",".join(RUNS), help="comma-separated, of " + ", ".join(RUNS))
    parser.add_argument("--probe", action="store_true",
                        help="also measure the machine's own 2-process ceiling (the same photos, measured "
                             "in 1 and in 2 processes at once, nothing else)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", help="also write the JSON results here")
    args = parser.parse_args(argv)
    runs = [name for name in args.runs.split(",") if name]  # --runs "" --probe: the probe alone
    if unknown := set(runs) - set(RUNS):
        parser.error(f"unknown runs {sorted(unknown)}; known: {', '.join(RUNS)}")
    if len(set(runs)) < len(runs):  # the results are keyed by run: a second one would replace the first
        parser.error("each run at most once per invocation; for repeats, run the benchmark again")
    warm = runs.index("ray-2-warm") if "ray-2-warm" in runs else None
    if warm is not None and (warm == 0 or runs[warm - 1] != "ray-2"):
        parser.error("ray-2-warm is a second Ray job on the same instance: ask for ray-2 right before it")

    paths = generate(Path(args.photos), args.n, args.seed)
    folder = Path(args.photos) / f"first-{args.n}"  # exactly the n photos, whatever else the cache holds
    folder.mkdir(exist_ok=True)
    for path in paths:
        link = folder / path.name
        if not link.exists():
            link.symlink_to(path)
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {cpu_kind()}", "images": args.n,
               "megapixels_each": round(SIZE[0] * SIZE[1] / 1e6, 3), "shard_rows": args.shard_rows, "runs": {}}
    started_as = None  # how the Ray instance running now was started
    for name in runs:
        init_s, mode = None, RAY_START.get(name)
        if mode is not None and started_as != mode:  # a Ray run on an instance started otherwise
            init_s, started_as = start_ray_timed(mode), mode
            results.setdefault("ray_init_s", init_s)
        run = timed_run(name, folder, args.shard_rows)
        if init_s is not None:
            run["ray_init_s"] = init_s
        run["images_per_s"] = round(args.n / run["seconds"], 2)
        results["runs"][name] = run
        print(f"{name}: {run['seconds']} s, {run['images_per_s']} images/s (load {run['load_before']} -> "
              f"{run['load_after']})", file=sys.stderr)
    if args.probe:
        results["probe"] = scaling_probe(paths)
        print(f"probe: {results['probe']}", file=sys.stderr)
    done = results["runs"]
    if {"local-1", "local-2"} <= set(done):
        results["speedup_2_workers"] = round(done["local-2"]["images_per_s"] / done["local-1"]["images_per_s"], 2)
    for ray_run in RAY_START:
        if {"local-2", ray_run} <= set(done):  # the time ratio: 1.2 is the target's bound
            results[f"{ray_run.replace('-', '_')}_time_vs_local_2"] = round(
                done[ray_run]["seconds"] / done["local-2"]["seconds"], 2)
    print(json.dumps(results, indent=2) if args.json else table(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


def table(results: dict) -> str:
    lines = [f"{results['images']} photos of {results['megapixels_each']} MP on {results['machine']}", "",
             "| run | seconds | images/s | load average (before -> after) |", "| --- | --- | --- | --- |"]
    for name, run in results["runs"].items():
        lines.append(f"| {name} | {run['seconds']} | {run['images_per_s']} | "
                     f"{run['load_before']} -> {run['load_after']} |")
    for name, run in results["runs"].items():
        if run.get("cpu_s"):
            lines.append(f"\n{name}: {run['cpu_s_total']} CPU s in all: "
                         + ", ".join(f"{process} {seconds}" for process, seconds in run["cpu_s"].items()))
    ratios = ("speedup_2_workers", *(f"{run.replace('-', '_')}_time_vs_local_2" for run in RAY_START))
    for key in (*ratios, "ray_init_s", "probe"):
        if key in results:
            lines.append(f"\n{key}: {results[key]}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
