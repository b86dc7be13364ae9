"""The CUDA path in one short run: install offline, prove the mixed batch, time serving and QLoRA.

    bash benchmarks/gpu_check.sh --out gpu_check.json     # on a CUDA machine: ~8 minutes, one JSON
    bash benchmarks/gpu_check.sh --dry-run                # anywhere: the plan, the wheels, the GPU

Build the wheels first, where there is network (`python benchmarks/gpu_wheels.py`: gpu-wheels/,
~20 MB, git-ignored; it travels with the working tree). Each step is a child process with
its own time cap inside one deadline (the steps are planned for under 8 minutes, not yet
measured; the hard stop is 540 s, under one command's 10 minutes), and the JSON is
rewritten after each, so a step that runs over still leaves the others' figures:

1. install: `pip install --no-index --find-links gpu-wheels -r benchmarks/gpu-requirements.txt`
   (the pinned transformers, peft, bitsandbytes, datasets, trl); where pip cannot resolve a
   dependency against the machine's packages, the same wheels without dependencies, and the
   resolver's complaint in the JSON.
2. mixed-batch: the tiny stand-in on CUDA in bf16 and in nf4; base and adapter rows in one
   generate, with one vision pass for both, must equal each row run alone (the CPU test is
   `tests/test_model.py`); also the last-position logits of both ways, and the shared vision
   pass against the tower run on every row.
3. qlora: `benchmarks/qlora_bench.py --shape 2b --steps 30` (the real recipe at batch 1).
4. bench: `python -m inspector bench --shape 2b` in nf4 (every setting; with `--settings`
   where the bench has it, only those that matter on a GPU).

The JSON holds each step's command, exit code, seconds and results, and `figures`: peak
VRAM and times beside the targets (side by side <= 1.0 s, <= 4 GB VRAM serving, QLoRA at
batch 1 <= 7 GB). Each step's whole output is in a log beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_wheels import DEFAULT_FOLDER, WHEEL_LIST, check_wheels, read_pins  # noqa: E402

REQUIREMENTS = ROOT / "benchmarks" / "gpu-requirements.txt"
# The bench's rows worth GPU seconds when it can run a subset: ours (the targets), the baseline
# (the ratio), what the one mixed batch and the shared vision pass save, and the static cache
# (on CUDA generate compiles its decode step).
GPU_BENCH_SETTINGS = ("ours", "seed-style", "two-calls", "vision-per-row", "static-cache")
TARGETS = {"side_by_side_s": 1.0, "serving_vram_gb": 4.0, "qlora_batch1_vram_gb": 7.0}
PACKAGES = ("torch", "torchvision", "transformers", "peft", "bitsandbytes", "accelerate", "datasets", "trl",
            "huggingface_hub", "tokenizers")


@dataclass
class Step:
    name: str
    command: list[str]
    cap_s: float  # the most this step may take; the run's deadline can cut it shorter
    result_file: Path | None = None  # the JSON the step writes


def plan(parts: Path, wheels: Path, install: bool, bench_args: list[str]) -> list[Step]:
    """The steps; each writes its JSON into `parts` (their results go into the one JSON)."""
    python = sys.executable
    steps = []
    if install:
        steps.append(Step("install", [python, "-m", "pip", "install", "--no-index", "--find-links", str(wheels),
                                      "--no-cache-dir", "--disable-pip-version-check", "-r", str(REQUIREMENTS)], 90))
    steps += [
        Step("mixed-batch", [python, str(Path(__file__)), "--step", "mixed-batch",
                             "--step-out", str(parts / "mixed-batch.json")], 120, parts / "mixed-batch.json"),
        Step("qlora", [python, "benchmarks/qlora_bench.py", "--shape", "2b", "--steps", "30",
                       "--out", str(parts / "qlora.json")], 210, parts / "qlora.json"),
        Step("bench", [python, "-m", "inspector", "bench", "--shape", "2b", *bench_args,
                       "--out", str(parts / "bench.json")], 300, parts / "bench.json"),
    ]
    return steps


def bench_settings_args() -> tuple[list[str], str]:
    """The bench's `--settings` with GPU_BENCH_SETTINGS where it has the option; else the full run."""
    done = subprocess.run([sys.executable, "-m", "inspector", "bench", "--help"], capture_output=True, text=True,
                          cwd=ROOT, env=step_env())
    if "--settings" in done.stdout:
        return ["--settings", ",".join(GPU_BENCH_SETTINGS)], "the settings that matter on a GPU"
    return [], "every setting: this bench has no --settings"


def step_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false", HF_HUB_DISABLE_TELEMETRY="1")


def run_step(step: Step, seconds_left: float, log: Path) -> dict:
    """Run one step under min(its cap, the time left); its whole output goes to `log`."""
    limit = max(1.0, min(step.cap_s, seconds_left))
    started = time.perf_counter()
    record = {"command": " ".join(step.command), "limit_s": round(limit), "log": log.name}
    print(f"== {step.name} (at most {limit:.0f} s): {record['command']}", flush=True)
    with log.open("w") as output:
        # Its own process group: a step's children (finetune under qlora_bench) go with it at the
        # deadline, instead of holding the GPU through the next step.
        process = subprocess.Popen(step.command, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT, env=step_env(),
                                   start_new_session=True)
        try:
            record["rc"] = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            record["rc"], record["timed_out"] = None, True
    record["seconds"] = round(time.perf_counter() - started, 1)
    if step.result_file is not None and step.result_file.is_file():
        record["result"] = json.loads(step.result_file.read_text())
    if record["rc"] != 0:
        record["tail"] = log.read_text(errors="replace")[-2500:]
    print(f"   rc {record['rc']} in {record['seconds']} s", flush=True)
    return record


def install_without_dependencies(wheels: Path, log: Path) -> dict:
    """Where the resolver found a dependency missing or out of range, the wheels alone: the
    later steps then show whether the machine's own version does the job."""
    command = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--find-links", str(wheels),
               "--no-cache-dir", "--disable-pip-version-check", "-r", str(WHEEL_LIST)]
    with log.open("a") as output:
        try:
            done = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT, env=step_env(),
                                  timeout=90)
        except subprocess.TimeoutExpired:
            return {"command": " ".join(command), "rc": None, "timed_out": True}
    return {"command": " ".join(command), "rc": done.returncode}


def figures(steps: dict) -> dict:
    """The numbers the targets are about, each beside its target."""
    found = {"targets": TARGETS}
    bench = steps.get("bench", {}).get("result") or {}
    ours = next((row for row in bench.get("settings", []) if row.get("name") == "ours"), {})
    if "1024x768" in ours:
        found["side_by_side_s"] = ours["1024x768"]["seconds"]
    if "12MP" in ours:
        found["side_by_side_12mp_s"] = ours["12MP"]["seconds"]
    for key in ("peak_vram_gb", "prefill_s", "decode_tokens_per_s", "speedup_vs_seed", "load_s_nf4"):
        if key in bench:
            found[{"peak_vram_gb": "serving_vram_gb"}.get(key, key)] = bench[key]
    qlora = steps.get("qlora", {}).get("result") or {}
    for key in ("peak_gpu_gib", "samples_per_s", "train_s"):
        if qlora.get(key) is not None:
            found[{"peak_gpu_gib": "qlora_batch1_vram_gb"}.get(key, f"qlora_{key}")] = qlora[key]
    mixed = steps.get("mixed-batch", {}).get("result") or {}
    if "passed" in mixed:
        found["mixed_batch_equal"] = mixed["passed"]
    return found


def gpu_facts() -> dict:
    import torch

    facts = {"host": platform.node(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
             "torch": torch.__version__, "torch_cuda": torch.version.cuda}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        facts.update(gpu=properties.name, capability=f"{properties.major}.{properties.minor}",
                     gpu_memory_gib=round(properties.total_memory / 2**30, 1))
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True)
        facts["nvidia_smi"] = smi.stdout.strip()
    return facts


def main(out: Path, wheels: Path, deadline_s: float, dry_run: bool, install: bool) -> int:
    import torch

    started = time.perf_counter()
    out = out.resolve()  # the steps run from the repository's root
    # The steps' own JSON files go apart (their contents go into `out`): beside `out` only the
    # JSON and one log per step, few files to bring back from the GPU machine.
    parts = Path(tempfile.gettempdir()) / f"gpu-check-{os.getpid()}"
    bench_args, bench_note = bench_settings_args()
    steps = plan(parts, wheels, install, bench_args)
    print(f"plan (deadline {deadline_s:.0f} s; bench: {bench_note}):")
    for step in steps:
        print(f"  {step.name:<12} at most {step.cap_s:>4.0f} s  {' '.join(step.command)}")
    problems, summary = check_wheels(wheels, read_pins()) if install else ([], {})
    if install:
        print(f"wheels: {summary.get('size_mib', 0)} MiB in {wheels}" + (": ready" if not problems else ""))
    for problem in problems:
        print(f"wheels problem: {problem}", file=sys.stderr)
    cuda = torch.cuda.is_available()
    print(f"CUDA GPU: {torch.cuda.get_device_name(0) if cuda else 'none visible'}")
    if dry_run:
        print("dry run: nothing was run")
        return 1 if problems else 0
    if not cuda:
        print("no CUDA GPU is visible: nothing was run (run this on a CUDA machine; --dry-run checks the plan)",
              file=sys.stderr)
        return 2
    if problems:
        print("the wheels are not ready: nothing was run (or pass --no-install where the packages are installed)",
              file=sys.stderr)
        return 1

    report = {"machine": gpu_facts(), "deadline_s": deadline_s, "bench_settings": bench_note, "wheels": summary,
              "steps": {}}
    out.parent.mkdir(parents=True, exist_ok=True)
    parts.mkdir(parents=True, exist_ok=True)
    for step in steps:
        log = Path(f"{out.with_suffix('')}.{step.name}.log")
        left = deadline_s - (time.perf_counter() - started)
        if left < 10:
            report["steps"][step.name] = {"skipped": "the deadline was reached"}
            continue
        record = run_step(step, left, log)
        if step.name == "install" and record["rc"] != 0:
            record["resolver_failed"] = record.pop("tail", "")
            record["without_dependencies"] = install_without_dependencies(wheels, log)
        report["steps"][step.name] = record
        report["figures"] = figures(report["steps"])
        report["total_s"] = round(time.perf_counter() - started, 1)
        out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report.get("figures", {}), indent=2))
    print(f"written: {out} ({report['total_s']} s)")
    return 0 if all(step.get("rc") == 0 for step in report["steps"].values()) else 1


# ---- the mixed-batch step, run as its own process (after the install, with the installed packages)


def mixed_batch_check(tiny: Path, adapter: Path, device: str, precisions: list[str]) -> dict:
    """Base and adapter rows in one generate (one vision pass) against each row alone, per precision."""
    import gc
    from importlib import metadata

    import numpy as np
    import torch
    from PIL import Image

    from inspector.images import make_views
    from inspector.model import ADAPTER_NAME, BASE_NAME, Inspector, InspectorConfig

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (160, 200, 3), dtype=np.uint8))
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    results = {"device": device, "versions": versions}
    for precision in precisions:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        inspector = Inspector.load(InspectorConfig(base=str(tiny), adapter=str(adapter), adapter_revision=None,
                                                   device=device, precision=precision, max_new_tokens=24))
        views = make_views(image, inspector.config.visual_token_budget)
        together = inspector.generate([views, views], [BASE_NAME, ADAPTER_NAME])
        alone = inspector.generate([views], [BASE_NAME]) + inspector.generate([views], [ADAPTER_NAME])
        row = {"runtime": inspector.runtime.describe(), "texts_equal": together == alone,
               "adapter_differs": alone[0] != alone[1], "together": together, "alone": alone,
               **_logits_and_vision(inspector, views)}
        if device == "cuda":
            row["peak_vram_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        results[precision] = row
        del inspector
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    results["passed"] = all(results[p]["texts_equal"] and results[p]["adapter_differs"] for p in precisions)
    return results


def _logits_and_vision(inspector, views) -> dict:
    """The last-position logits of the mixed batch against each row alone, and the shared
    vision pass against the tower run on every row: how far apart, next to their scale."""
    import torch

    from inspector.model import ADAPTER_NAME, BASE_NAME
    from inspector.prompts import build_inputs

    device = inspector.model.device
    both = build_inputs(inspector.processor, [views, views], inspector.instruction).to(device)
    one = build_inputs(inspector.processor, [views], inspector.instruction).to(device)
    with torch.inference_mode():
        together = inspector.model(**both, adapter_names=[BASE_NAME, ADAPTER_NAME]).logits[:, -1].float()
        alone = torch.cat([inspector.model(**one, adapter_names=[name]).logits[:, -1].float()
                           for name in (BASE_NAME, ADAPTER_NAME)])
        shared = inspector.encode_views_once([views, views]).pooler_output
        tower = inspector.model.get_base_model().model
        every_row = tower.get_image_features(both["pixel_values"], both["image_grid_thw"], return_dict=True).pooler_output
    return {
        "logits_max_abs_diff": round((together - alone).abs().max().item(), 5),
        "logits_max_abs": round(alone.abs().max().item(), 3),
        "next_token_equal": bool((together.argmax(-1) == alone.argmax(-1)).all()),
        "vision_shared_vs_every_row_max_abs_diff": round(max((a.float() - b.float()).abs().max().item()
                                                             for a, b in zip(shared, every_row)), 5),
    }


def mixed_batch_step(step_out: Path, device: str, precisions: list[str]) -> int:
    from inspector.tiny import build_tiny, build_tiny_adapter

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        tiny = build_tiny(Path(scratch) / "tiny", seed=0)
        adapter = build_tiny_adapter(tiny, Path(scratch) / "adapter", seed=1)
        results = mixed_batch_check(tiny, adapter, device, precisions)
    step_out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the JSON (logs beside it)")
    parser.add_argument("--wheels", type=Path, default=DEFAULT_FOLDER, help="the folder gpu_wheels.py built")
    parser.add_argument("--deadline-s", type=float, default=540,
                        help="the hard stop for all steps together, under one command's 10 minutes (default 540)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, check the wheels and the GPU, run nothing")
    parser.add_argument("--no-install", dest="install", action="store_false",
                        help="the packages are installed already: skip the wheels")
    parser.add_argument("--step", choices=["mixed-batch"], help=argparse.SUPPRESS)  # one step, as its own process
    parser.add_argument("--step-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # the CPU only for the test of the step
    parser.add_argument("--precisions", default="bf16,nf4", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "mixed-batch":
        sys.exit(mixed_batch_step(args.step_out, args.device, args.precisions.split(",")))
    sys.exit(main(args.out, args.wheels, args.deadline_s, args.dry_run, args.install))
