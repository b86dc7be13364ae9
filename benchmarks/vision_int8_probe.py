"""Speed and error of one vision-tower MLP of the 2B shape in each int8 scheme, on this CPU.

    python benchmarks/vision_int8_probe.py [--tokens 1020] [--compile] [--json]

Qwen2-VL-2B's vision blocks are 1280 -> 5120 -> 1280 MLPs (two thirds of the tower's
matmul work) over about 1020 patches for our 255 visual tokens. This times one such MLP,
random-initialised, in fp32, in torch's dynamic int8 with one activation scale per tensor
(`quantize_int8(vision="per-tensor")`), and in torchao's int8 with a scale per token
(`vision="per-token"`), eager and, with `--compile`, under `torch.compile` (Inductor fuses
torchao's quantize and rescale steps, which run as separate passes in eager mode). The
error is against fp32 on inputs with one outlier token a thousand times the others, as
vision towers have: the quiet tokens' relative error. Seconds are the median of a few
calls; the load average is printed beside them, since the figure depends on it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HIDDEN, INTERMEDIATE = 1280, 5120  # Qwen2-VL-2B vision_config: embed_dim, embed_dim * mlp_ratio


def median_seconds(function, calls: int = 5) -> float:
    function()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 4)


def schemes(mlp: torch.nn.Module, compile_too: bool) -> dict[str, torch.nn.Module]:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        per_tensor = quantize_dynamic(copy.deepcopy(mlp), {torch.nn.Linear: per_channel_dynamic_qconfig},
                                      dtype=torch.qint8)
    per_token = copy.deepcopy(mlp)
    quantize_(per_token, Int8DynamicActivationInt8WeightConfig())
    found = {"fp32": mlp, "int8 per tensor (torch.ao)": per_tensor, "int8 per token (torchao, eager)": per_token}
    if compile_too:
        found["int8 per token (torchao, torch.compile)"] = torch.compile(copy.deepcopy(per_token), dynamic=True)
    return found


def main(tokens: int, compile_too: bool) -> dict:
    from inspector.device import cpu_model
    from inspector.device import cpu_kind

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(HIDDEN, INTERMEDIATE), torch.nn.GELU(),
                              torch.nn.Linear(INTERMEDIATE, HIDDEN)).eval()
    hidden = torch.randn(tokens, HIDDEN)
    hidden[0] *= 1000
    results = {"cpu": cpu_model(), "cpu_kind": cpu_kind(), "threads": torch.get_num_threads(), "tokens": tokens,
               "load_average": os.getloadavg()[0], "schemes": {}}
    with torch.inference_mode():
        reference = mlp(hidden)[1:]
        for name, module in schemes(mlp, compile_too).items():
            started = time.perf_counter()
            quiet = module(hidden)[1:]  # the first call: compiles, where compiled
            first = time.perf_counter() - started
            error = float((quiet - reference).norm() / reference.norm())
            results["schemes"][name] = {"seconds": median_seconds(lambda: module(hidden)),
                                        "first_call_s": round(first, 2), "quiet_token_error": round(error, 4)}
    results["load_average_end"] = os.getloadavg()[0]
    fp32 = results["schemes"]["fp32"]["seconds"]
    for figures in results["schemes"].values():
        figures["vs_fp32"] = round(fp32 / figures["seconds"], 2)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1020, help="patches per call (ours: about 1020)")
    parser.add_argument("--compile", action="store_true", help="also torchao under torch.compile (minutes)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    outcome = main(args.tokens, args.compile)
    if args.json:
        print(json.dumps(outcome))
    else:
        print(f"{outcome['cpu']} ({outcome['cpu_kind']}), {outcome['threads']} threads, {outcome['tokens']} tokens, "
              f"load average {outcome['load_average']:.1f} to {outcome['load_average_end']:.1f}")
        for name, figures in outcome["schemes"].items():
            print(f"  {name}: {figures['seconds']} s ({figures['vs_fp32']}x fp32), first call "
                  f"{figures['first_call_s']} s, quiet-token error {figures['quiet_token_error']}")
