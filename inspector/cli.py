"""`python -m inspector ...`: the command line.

    python -m inspector tiny /tmp/tiny                       # write the tiny offline stand-in
    python -m inspector inspect photos/ --base /tmp/tiny --json
    python -m inspector analyze photos/ --json               # measured evidence only, no model
    python -m inspector analyze ORG/DATASET --out measured/ --workers 2   # a data set, as parquet shards
    python -m inspector inspect saved_dataset/ --out inspected/ --engine ray   # one model per Ray worker
    python -m inspector bench --shape 2b --json              # speed on this machine
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

log = logging.getLogger("inspector")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", help="base model: Hub repo id or local folder (env INSPECTOR_BASE_MODEL)")
    parser.add_argument("--base-revision", help="base model revision (env INSPECTOR_BASE_REVISION)")
    parser.add_argument("--adapter", help="LoRA adapter: Hub repo id or local folder; '' for none "
                                          "(env INSPECTOR_ADAPTER)")
    parser.add_argument("--adapter-revision", help="adapter revision: tag or commit (env INSPECTOR_ADAPTER_REVISION)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="override the device (env INSPECTOR_DEVICE)")
    parser.add_argument("--precision", choices=["nf4", "int8", "bf16", "fp16", "fp32"],
                        help="override the precision (env INSPECTOR_DTYPE)")
    parser.add_argument("--visual-tokens", type=int, dest="visual_token_budget",
                        help="visual tokens per image (env INSPECTOR_VISUAL_TOKENS)")
    parser.add_argument("--max-new-tokens", type=int, help="generation length cap (env INSPECTOR_MAX_NEW_TOKENS)")
    parser.add_argument("--kv-cache", choices=["dynamic", "static"], help="KV cache (env INSPECTOR_KV_CACHE)")


def config_from_args(args: argparse.Namespace):
    from inspector.model import InspectorConfig

    overrides = {key: getattr(args, key) for key in (
        "base", "base_revision", "adapter", "adapter_revision", "device", "precision",
        "visual_token_budget", "max_new_tokens", "kv_cache")}
    config = InspectorConfig.from_env(**overrides)
    if args.base is not None and args.adapter is None and "INSPECTOR_ADAPTER" not in os.environ:
        # The default adapter was trained on the default base; on another base it would not load
        # (or would mislead), so a base named alone is served alone, without asking the Hub.
        config.adapter = None
        print(f"notice: serving {args.base} without an adapter (--base without --adapter); "
              "add --adapter FOLDER to compare", file=sys.stderr)
    elif args.adapter is not None:
        # An adapter named on the command line comes with its own revision, or none
        # (a local folder, or the repo's default branch); '' serves the base alone.
        config.adapter = args.adapter or None
        config.adapter_revision = args.adapter_revision
    return config


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """A whole data set into a new one (`inspector.batch`): resumable shards, several processes or Ray."""
    group = parser.add_argument_group("data sets (inspector.batch)")
    group.add_argument("--out", help="write a data set here (parquet shards, the source's columns plus the results); "
                                     "rerun with the same --out to finish a stopped run")
    group.add_argument("--split", help="the split of a data set source (default: its only one, or train)")
    group.add_argument("--image-column", help="the column holding the images (default: the first Image column)")
    group.add_argument("--workers", type=int, help="processes (local) or Ray actors (default: every core)")
    group.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="local: a process pool on this machine; ray: Ray Data (RAY_ADDRESS, or a local instance)")
    group.add_argument("--shard-rows", type=int, default=None, help="rows per output shard (default 500)")


def run_dataset_job(args: argparse.Namespace, job) -> int:
    from inspector.batch import DEFAULT_SHARD_ROWS, run_job

    if args.workers is not None and args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        return run_job(args.paths, job, args.out, split=args.split, image_column=args.image_column,
                       engine=args.engine, workers=args.workers, shard_rows=args.shard_rows or DEFAULT_SHARD_ROWS,
                       quiet=args.quiet)
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def needs_out(args: argparse.Namespace) -> str | None:
    """The data set options given without --out, which they need."""
    given = [flag for flag, value in (("--split", args.split), ("--image-column", args.image_column),
                                      ("--workers", args.workers), ("--engine ray", args.engine == "ray"),
                                      ("--shard-rows", args.shard_rows)) if value]
    return f"error: {', '.join(given)} write a data set: add --out FOLDER" if given else None


def run_inspect(args: argparse.Namespace) -> int:
    """One JSON line per image with the base and adapter reports; bad images do not stop the run."""
    from tqdm import tqdm

    if args.out:
        from inspector.batch import InspectJob

        return run_dataset_job(args, InspectJob(config_from_args(args)))
    if message := needs_out(args):
        print(message, file=sys.stderr)
        return 2

    from inspector.hub import Unavailable
    from inspector.images import ImageError, iter_image_paths, load_image
    from inspector.model import Inspector

    paths = list(iter_image_paths(args.paths))
    if not paths:
        print("no images found in: " + " ".join(args.paths), file=sys.stderr)
        return 2
    # Paths that do not exist are reported before the model loads (seconds to minutes), not after.
    missing = [path for path in paths if not path.exists()]
    for path in missing:
        print_record({"path": str(path), "error": f"no such file: {path}"}, args.json)
    paths = [path for path in paths if path.exists()]
    if not paths:
        return 2
    try:
        inspector = Inspector.load(config_from_args(args))
    except Unavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for notice in inspector.notices:
        print(f"notice: {notice}", file=sys.stderr)
    failures = len(missing)
    for path in tqdm(paths, desc="inspecting", unit="image", file=sys.stderr, disable=args.quiet):
        record: dict = {"path": str(path)}
        try:
            result = inspector.inspect_loaded([load_image(path)])[0]
            record.update(result.to_dict())
        except ImageError as error:
            record["error"] = str(error)
        except Exception as error:  # noqa: BLE001 - one failing image must not end a batch run
            log.exception("inspection of %s failed", path)
            record["error"] = f"inspection failed: {type(error).__name__}: {error}"
        failures += "error" in record
        print_record(record, args.json)
    return 1 if failures else 0


def print_record(record: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(record, ensure_ascii=False), flush=True)
    elif "error" in record:
        print(f"{record['path']}: ERROR {record['error']}", flush=True)
    else:
        # A report's verdict (the degradation task), else the task's prediction.
        base, adapter = (record[side].get("verdict", record[side].get("prediction")) if record.get(side) else "-"
                         for side in ("base", "adapter"))
        print(f"{record['path']}: base={base} adapter={adapter}", flush=True)


def run_tiny(args: argparse.Namespace) -> int:
    from inspector.tiny import build_tiny, build_tiny_adapter

    started = time.perf_counter()
    folder = build_tiny(args.out, seed=args.seed)
    message = f"tiny Qwen2-VL written to {folder}"
    if args.with_adapter:
        adapter = build_tiny_adapter(folder, folder / "adapter", seed=args.seed)
        message += f", an untrained LoRA adapter to {adapter}"
    print(f"{message} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


def run_analyze(args: argparse.Namespace) -> int:
    if args.out:
        from inspector.batch import AnalyzeJob

        return run_dataset_job(args, AnalyzeJob())
    if message := needs_out(args):
        print(message, file=sys.stderr)
        return 2
    from inspector.evidence.analyze import analyze_main

    return analyze_main(args.paths, as_json=args.json)


def run_bench(args: argparse.Namespace) -> int:
    from inspector.bench import bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inspector", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and decisions")
    commands = parser.add_subparsers(dest="command", required=True)

    tiny = commands.add_parser("tiny", help="write the tiny offline Qwen2-VL stand-in to a folder (untrained; "
                                            "train/pretrain_tiny.py pre-trains it)")
    tiny.add_argument("out", help="output folder")
    tiny.add_argument("--seed", type=int, default=0, help="random seed of the weights")
    tiny.add_argument("--with-adapter", action="store_true",
                      help="also write an untrained (random) LoRA adapter to OUT/adapter, for demos")
    tiny.set_defaults(run=run_tiny)

    inspect = commands.add_parser("inspect", help="base and adapter reports for images or folders")
    inspect.add_argument("paths", nargs="+", help="image files or folders (walked); with --out also a data set: "
                                                  "a datasets folder, parquet files, an imagefolder or a Hub name")
    inspect.add_argument("--json", action="store_true", help="one JSON object per line")
    inspect.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_arguments(inspect)
    add_dataset_arguments(inspect)
    inspect.set_defaults(run=run_inspect)

    analyze = commands.add_parser("analyze", help="measured evidence only (no model), per image")
    analyze.add_argument("paths", nargs="+", help="image files or folders (walked); with --out also a data set: "
                                                  "a datasets folder, parquet files, an imagefolder or a Hub name")
    analyze.add_argument("--json", action="store_true", help="one JSON object per line")
    analyze.add_argument("--quiet", action="store_true", help="no progress bar (with --out)")
    add_dataset_arguments(analyze)
    analyze.set_defaults(run=run_analyze)

    bench = commands.add_parser("bench", help="measure speed and memory on this machine")
    bench.add_argument("--shape", choices=["tiny", "2b"], default="2b",
                       help="random-initialised model: tiny stand-in or the exact Qwen2-VL-2B shape")
    bench.add_argument("--image", help="photo to inspect (default: a built-in 1024x768 photo)")
    bench.add_argument("--settings", metavar="KEY,KEY", default=None,
                       help="run only these settings (ours always runs), e.g. ours,seed-style,half-tokens; "
                            "an unknown key lists the known ones")
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    bench.add_argument("--out", help="also write the JSON results to this file")
    add_model_arguments(bench)
    bench.set_defaults(run=run_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    return args.run(args)
