"""QLoRA speed and memory of the real recipe on the exact Qwen2-VL-2B shape.

    python benchmarks/qlora_bench.py --shape 2b --steps 30 --out qlora.json   # on a CUDA GPU, ~5 min
    python benchmarks/qlora_bench.py --shape tiny --steps 2                    # anywhere: the plumbing

The weights cannot be downloaded where this project is built, so `inspector.tiny.build_2b_shaped`
writes a random-initialised model of the 2B shape (its speed and memory are the real
model's). Everything else is the real recipe, `train/recipes/degradation.yaml`, run as a user
runs it: `train/build_dataset.py` makes rows from 448x448 crops of the bundled photos, and
`train/finetune.py` trains them, nf4 with double quantization, LoRA r=16 on the language
model, gradient checkpointing, paged 8-bit AdamW, batch 1 without accumulation (the
configuration an 8 GB card must hold). It reports Trainer's samples/s over all steps (the
first ones included), finetune's peak GPU memory, and the wall time.

On the CPU the tiny shape checks the plumbing in fp32 (nf4 backward through the 2B shape on
2 CPU cores would take hours); its figures say nothing about the GPU.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RECIPE = ROOT / "train" / "recipes" / "degradation.yaml"
CPU_OVERRIDES = ["--precision", "fp32", "--optim", "adamw_torch", "--dataloader-num-workers", "0"]


def run(*command: str) -> str:
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} failed:\n{done.stderr[-3000:]}")
    return done.stdout + done.stderr


def main(shape: str, steps: int, batch_size: int, work: Path) -> dict:
    import torch

    from inspector.device import machine
    from inspector.tiny import build_2b_shaped, build_tiny

    cuda = torch.cuda.is_available()
    if shape == "2b" and not cuda:
        raise SystemExit("--shape 2b needs a CUDA GPU (QLoRA of the 2B shape on a CPU takes hours); "
                         "--shape tiny checks the plumbing here")
    started = time.perf_counter()
    base = (build_2b_shaped if shape == "2b" else build_tiny)(work / "base")
    run("train/build_dataset.py", "--sample-photos", "16", "--crop-size", "448", "--n", str(max(40, 2 * steps)),
        "--out", str(work / "data"))
    prepared = time.perf_counter() - started
    output = run("train/finetune.py", "--config", str(RECIPE), "--base", str(base), "--dataset", str(work / "data"),
                 "--output-dir", str(work / "adapter"), "--max-steps", str(steps),
                 "--per-device-train-batch-size", str(batch_size), "--gradient-accumulation-steps", "1",
                 "--eval-strategy", "no", "--save-strategy", "no", "--logging-steps", "1", "--report-to", "none",
                 *([] if cuda else CPU_OVERRIDES))
    return {"machine": machine(), "shape": shape, "steps": steps, "batch_size": batch_size,
            "tokens_per_row": _number(r"input: (\d+) tokens per row", output),
            "samples_per_s": _number(r"'train_samples_per_second': '?([\d.]+)", output),
            "train_s": _number(r"trained \d+ steps in ([\d.]+) s", output),
            "peak_gpu_gib": _number(r"peak GPU memory: ([\d.]+) GiB", output),
            "runtime": _text(r"runtime: (.+)", output), "prepare_s": round(prepared, 1)}


def _number(pattern: str, text: str) -> float | None:
    found = re.search(pattern, text)
    return float(found.group(1)) if found else None


def _text(pattern: str, text: str) -> str | None:
    found = re.search(pattern, text)
    return found.group(1).strip() if found else None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=["2b", "tiny"], default="2b")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps to time")
    parser.add_argument("--batch-size", type=int, default=1, help="rows per step (no accumulation)")
    parser.add_argument("--work", help="folder for the model, data and adapter (default: a temporary one)")
    parser.add_argument("--out", help="also write the JSON results to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qlora-bench-") as scratch:
        results = main(args.shape, args.steps, args.batch_size, Path(args.work or scratch))
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
