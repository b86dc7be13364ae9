"""OpenVINO (openvino-genai's VLMPipeline) as the CPU engine, beside ours, on the 2B shape.

Issue 15, item 2. The real weights cannot be downloaded here, so, as `python -m inspector bench`
does, the model is random-initialised with the exact Qwen2-VL-2B shape, a random LoRA adapter is
put on it, and every generate is forced to 32 new tokens. Three steps, in two environments:

1. `prepare`, in the project's environment: writes the 2B-shaped model (`inspector.tiny.
   build_2b_shaped`), a LoRA adapter on it (the bench's LoraConfig on LANGUAGE_LORA_TARGETS, B
   random and nonzero so that it changes the answer), the bench's 1024x768 photo, our views of it
   (`make_views`: global view + native crops, 255 visual tokens) and the same photo resized to
   504x392 (18x14 merged patches: 252 visual tokens, for the one-image variant), and PyTorch's
   greedy tokens for each input, base and adapter (the sanity check of step 3):

       . /work/venv/bin/activate
       PYTHONPATH=. HF_HUB_OFFLINE=1 python benchmarks/openvino_bench.py prepare --work /work/ov

2. the export, in a SEPARATE environment: optimum-intel 2.2.0 caps transformers below 5.6 in its
   metadata, and its Qwen2-VL exporter refuses any transformers above 5.0 (MAX_TRANSFORMERS_VERSION
   in optimum/exporters/openvino/model_configs.py), while the project runs 5.24:

       python3 -m venv /work/ovenv && . /work/ovenv/bin/activate
       pip install --no-deps torch==2.14.1 torchvision==0.29.1
       pip install typing_extensions sympy networkx jinja2 fsspec filelock
       pip install "optimum-intel[openvino]==2.2.0" "transformers==5.0.0" \\
           "openvino-genai==2026.4.1.0" pillow accelerate
       # (torch's CUDA wheels came in all the same, through the last line's resolution; unused here)
       HF_HUB_OFFLINE=1 optimum-cli export openvino --model /work/ov/base2b \\
           --task image-text-to-text --weight-format int8 /work/ov/ov-int8

3. `measure`, in the export environment: VLMPipeline on the CPU, base and adapter as two generate
   calls (the pipeline takes one prompt per call; the adapter through openvino_genai.Adapter and
   GenerationConfig.adapters), 3 repeats after a warm-up, end to end, prefill (call start to first
   token) and decode rate from a streamer's clock, peak RSS, and agreement of the greedy tokens
   with PyTorch's:

       . /work/ovenv/bin/activate
       python benchmarks/openvino_bench.py measure --work /work/ov --model /work/ov/ov-int8

   It writes WORK/openvino-<model folder>.json (or --out). `--inputs views` times only our views
   (four images, the same 342-token prompt as ours), `--inputs one-image` only the 504x392 photo;
   `--precision-hint f32` overrides the CPU plugin's bf16 compute; `--alpha` the adapter's scale
   (default lora_alpha / r, as PEFT applies it). A bf16/fp32 matmul probe at the start and the end
   (the bench's) tells how fast the shared machine was at the time. `prepare` computes PyTorch's
   tokens in bf16 where the CPU has it natively, else fp32 (written into reference.json).

Ours, beside it: `python -m inspector bench --shape 2b --settings int8 --out ours.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

NEW_TOKENS = 32
ONE_IMAGE_SIZE = (504, 392)  # 18 x 14 merged 28-pixel patches: 252 visual tokens, near our 255
REPEATS = 3


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def matmul_gflops(seconds: float = 0.3) -> dict:
    """The machine's speed at the time (shared vCPUs): bf16 and fp32 matmul rates, as the bench's
    `inspector.device.matmul_gflops` (copied: the project is not installed in the export env)."""
    import torch

    rates = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        left, right = torch.randn(256, 1536, dtype=dtype), torch.randn(1536, 1536, dtype=dtype)
        left @ right
        calls, started = 0, time.perf_counter()
        while calls == 0 or time.perf_counter() - started < seconds:
            left @ right
            calls += 1
        rates[f"matmul_gflops_{name}"] = round(calls * 2 * 256 * 1536 * 1536 / (time.perf_counter() - started) / 1e9, 1)
    return rates


def peak_rss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


# ---------------------------------------------------------------- prepare (project environment)

def prepare(work: Path, seed: int = 0) -> None:
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from PIL import Image
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    from inspector.bench import bench_photo
    from inspector.device import cpu_has_native_bf16, cpu_kind
    from inspector.images import load_image, make_views
    from inspector.model import LANGUAGE_LORA_TARGETS
    from inspector.prompts import DEFAULT_INSTRUCTION, build_inputs
    from inspector.tiny import build_2b_shaped

    work.mkdir(parents=True, exist_ok=True)
    base = work / "base2b"
    if not (base / "model.safetensors").exists():
        build_2b_shaped(base, seed)
    photo = bench_photo((1024, 768), work)
    views = make_views(load_image(photo), 256)
    inputs_dir = {"views": work / "views", "one-image": work / "one-image"}
    for folder in inputs_dir.values():
        folder.mkdir(exist_ok=True)
    for index, view in enumerate(views):
        view.save(inputs_dir["views"] / f"{index}.png")
    one = load_image(photo).resize(ONE_IMAGE_SIZE, Image.Resampling.BICUBIC)
    one.save(inputs_dir["one-image"] / "0.png")

    processor = AutoProcessor.from_pretrained(base)
    # the reference tokens in bf16 where the CPU computes it natively, else fp32 (bf16 runs at
    # about 1 GFLOPS on an AVX2-only CPU: the four generates would take hours)
    dtype = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    model = Qwen2VLForConditionalGeneration.from_pretrained(base, dtype=dtype).eval()
    adapter = work / "adapter"
    if not (adapter / "adapter_model.safetensors").exists():
        lora = LoraConfig(r=16, lora_alpha=32, target_modules=LANGUAGE_LORA_TARGETS, task_type="CAUSAL_LM")
        peft_model = get_peft_model(model, lora)
        torch.manual_seed(seed + 1)
        with torch.no_grad():
            for name, parameter in peft_model.named_parameters():
                if "lora_B" in name:  # PEFT starts B at zero (the adapter a no-op): make it change outputs
                    parameter.normal_(0.0, 0.02)
        peft_model.save_pretrained(adapter)
        model = peft_model
    else:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()

    reference = {"instruction": DEFAULT_INSTRUCTION, "inputs": {}, "cpu_kind": cpu_kind(),
                 "pytorch_dtype": str(dtype).removeprefix("torch.")}
    for key, folder in inputs_dir.items():
        pictures = [Image.open(path).convert("RGB") for path in sorted(folder.glob("*.png"), key=lambda p: int(p.stem))]
        batch = build_inputs(processor, [pictures], DEFAULT_INSTRUCTION)
        visual = int((batch["input_ids"] == model.config.image_token_id).sum())
        row = {"images": [list(p.size) for p in pictures], "prompt_tokens": int(batch["input_ids"].shape[1]),
               "visual_tokens": visual, "prompt_ids": batch["input_ids"][0].tolist()}
        for which in ("base", "adapter"):
            started = time.perf_counter()
            with torch.no_grad():
                if which == "base":
                    with model.disable_adapter():
                        out = model.generate(**batch, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                             do_sample=False)
                else:
                    out = model.generate(**batch, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                         do_sample=False)
            row[f"{which}_tokens"] = out[0, batch["input_ids"].shape[1]:].tolist()
            row[f"{which}_seconds_single_call"] = round(time.perf_counter() - started, 2)
        reference["inputs"][key] = row
        print(key, {k: v for k, v in row.items() if k != "prompt_ids"}, file=sys.stderr, flush=True)
    reference["load_average"] = load_average()
    reference["peak_rss_gb"] = peak_rss_gb()
    (work / "reference.json").write_text(json.dumps(reference, indent=1))
    print(f"wrote {work / 'reference.json'}", file=sys.stderr)


# ---------------------------------------------------------------- measure (export environment)

def measure(work: Path, model_dir: Path, repeats: int = REPEATS, inputs: list[str] | None = None,
            alpha: float | None = None, precision_hint: str | None = None) -> dict:
    import numpy as np
    import openvino as ov
    import openvino_genai as genai
    from PIL import Image

    reference = json.loads((work / "reference.json").read_text())
    speed_at_start = matmul_gflops()
    adapter_file = work / "adapter" / "adapter_model.safetensors"
    adapter = genai.Adapter(str(adapter_file))
    # PEFT keeps lora_alpha in adapter_config.json, not in the safetensors; the scale PyTorch applies
    # is lora_alpha / r, so that is the alpha the pipeline is given (the warm-up also tries 1.0)
    if alpha is None:
        peft_config = json.loads((work / "adapter" / "adapter_config.json").read_text())
        alpha = peft_config["lora_alpha"] / peft_config["r"]
    started = time.perf_counter()
    # the CPU plugin computes in bf16 where the CPU has it natively (AVX512-BF16, AMX) unless told f32
    properties = {"INFERENCE_PRECISION_HINT": precision_hint} if precision_hint else {}
    pipe = genai.VLMPipeline(str(model_dir), "CPU", adapters=genai.AdapterConfig(adapter), **properties)
    results = {"model": str(model_dir), "openvino": ov.__version__, "openvino_genai": genai.__version__,
               "load_s": round(time.perf_counter() - started, 1), "adapter_alpha": alpha,
               # what the plugin computes in unless told (bf16 where the CPU has it natively, else f32)
               # and what it says the CPU can do: OpenVINO's own word on the machine
               "inference_precision_hint": precision_hint or
               f"default ({ov.Core().get_property('CPU', 'INFERENCE_PRECISION_HINT')})",
               "cpu_capabilities": list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
               "load_average_start": load_average(),
               "rss_after_load_gb": peak_rss_gb(), "speed_at_start": speed_at_start, "inputs": {}}

    class Clock(genai.StreamerBase):
        def __init__(self):
            super().__init__()
            self.arrivals, self.tokens = [], []

        def write(self, token):
            now = time.perf_counter()
            got = list(token) if isinstance(token, (list, tuple)) else [int(token)]
            self.arrivals += [now] * len(got)
            self.tokens += got
            return genai.StreamingStatus.RUNNING

        def end(self):
            pass

    def config(with_adapter: bool, scale: float | None = None):
        cfg = genai.GenerationConfig()
        cfg.max_new_tokens = cfg.min_new_tokens = NEW_TOKENS
        cfg.do_sample = False
        cfg.adapters = genai.AdapterConfig(adapter, scale or alpha) if with_adapter else genai.AdapterConfig()
        return cfg

    def one_call(images, with_adapter: bool, scale: float | None = None) -> dict:
        clock = Clock()
        begun = time.perf_counter()
        out = pipe.generate(reference["instruction"], images=images, generation_config=config(with_adapter, scale),
                            streamer=clock)
        total = time.perf_counter() - begun
        metrics = out.perf_metrics
        steps = clock.arrivals
        return {"seconds": total, "prefill_s": steps[0] - begun,
                "decode_tokens_per_s": (len(steps) - 1) / (steps[-1] - steps[0]) if len(steps) > 1 else None,
                "tokens": clock.tokens, "prompt_tokens": int(metrics.get_num_input_tokens()),
                "ttft_ms_genai": round(metrics.get_ttft().mean, 1), "tpot_ms_genai": round(metrics.get_tpot().mean, 1)}

    for key in inputs or list(reference["inputs"]):
        folder = work / ("views" if key == "views" else "one-image")
        paths = sorted(folder.glob("*.png"), key=lambda p: int(p.stem))
        images = [ov.Tensor(np.array(Image.open(p).convert("RGB"))[None]) for p in paths]
        one_call(images, False)  # warm-up (first-inference compilation), not timed
        alpha_one = one_call(images, True, 1.0)["tokens"]  # and the other reading of the adapter's scale
        runs = []
        load_before = load_average()
        for _ in range(repeats):
            base, adapted = one_call(images, False), one_call(images, True)
            runs.append({"side_by_side_s": base["seconds"] + adapted["seconds"], "base": base, "adapter": adapted})
        ref = reference["inputs"][key]
        last = runs[-1]

        def agreement(mine, theirs):
            same = 0
            for a, b in zip(mine, theirs):
                if a != b:
                    break
                same += 1
            return {"leading_tokens_equal": same, "positions_equal": sum(a == b for a, b in zip(mine, theirs)),
                    "of": len(theirs)}

        row = {
            "images": ref["images"], "visual_tokens": ref["visual_tokens"],
            "prompt_tokens_pytorch": ref["prompt_tokens"], "prompt_tokens_openvino": last["base"]["prompt_tokens"],
            "side_by_side_s_median": round(statistics.median(r["side_by_side_s"] for r in runs), 2),
            "side_by_side_s_runs": [round(r["side_by_side_s"], 2) for r in runs],
            "prefill_s_median": round(statistics.median(r[w]["prefill_s"] for r in runs
                                                        for w in ("base", "adapter")), 2),
            "decode_tokens_per_s_median": round(statistics.median(
                r[w]["decode_tokens_per_s"] for r in runs for w in ("base", "adapter")), 2),
            "genai_ttft_ms": last["base"]["ttft_ms_genai"], "genai_tpot_ms": last["base"]["tpot_ms_genai"],
            "new_tokens": [len(last["base"]["tokens"]), len(last["adapter"]["tokens"])],
            "adapter_changes_tokens": last["base"]["tokens"] != last["adapter"]["tokens"],
            "base_vs_pytorch": agreement(last["base"]["tokens"], ref["base_tokens"]),
            "adapter_vs_pytorch": agreement(last["adapter"]["tokens"], ref["adapter_tokens"]),
            "adapter_alpha_1_vs_pytorch": agreement(alpha_one, ref["adapter_tokens"]),
            "repeats_identical": all(r["base"]["tokens"] == last["base"]["tokens"] for r in runs),
            "base_tokens": last["base"]["tokens"], "adapter_tokens": last["adapter"]["tokens"],
            "load_average_before": load_before, "load_average_after": load_average(),
        }
        results["inputs"][key] = row
        print(key, {k: v for k, v in row.items() if not k.endswith("_tokens")}, file=sys.stderr, flush=True)
    results["peak_rss_gb"] = peak_rss_gb()
    results["load_average_end"] = load_average()
    results["speed_at_end"] = matmul_gflops()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["prepare", "measure"])
    parser.add_argument("--work", type=Path, default=Path("/work/ov"))
    parser.add_argument("--model", type=Path, help="the exported OpenVINO folder (measure)")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--inputs", help="comma-separated: views, one-image (measure; default both)")
    parser.add_argument("--alpha", type=float, help="the adapter's scale (default: lora_alpha / r, as PEFT)")
    parser.add_argument("--precision-hint", help="the CPU plugin's INFERENCE_PRECISION_HINT, e.g. f32")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.step == "prepare":
        prepare(args.work)
        return
    results = measure(args.work, args.model, args.repeats, args.inputs.split(",") if args.inputs else None,
                      args.alpha, args.precision_hint)
    text = json.dumps(results, indent=1)
    (args.out or args.work / f"openvino-{args.model.name}.json").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
