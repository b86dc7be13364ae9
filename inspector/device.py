"""Device and dtype: decided once, here, with the reason logged and an override.

- CUDA: the base model in nf4 (bitsandbytes, double quant), placed at load time with
  `device_map` (a 4-bit model must never be moved with `.to()`). It computes in bf16 where
  the GPU has bf16 units (Ampere and later: A10G, L4, A100, H100) and in fp16 elsewhere
  (T4, V100), and so do the training autocast and the benchmark (`compute_dtype`).
- CPU: int8 for the language model everywhere PyTorch has its int8 engine: the weights of
  its Linear layers in int8 per output channel, activations quantized per call (PyTorch
  dynamic quantization, fbgemm/oneDNN kernels). The vision tower stays unquantized
  (`inspector.quantize.quantize_int8` says why): in bf16 where the CPU computes bf16
  natively (AVX512-BF16 or AMX), in fp32 elsewhere. On native bf16 this pair (int8 decodes
  faster, bf16 encodes faster) took a side-by-side report of the 2B shape to 8.7-10.0 s
  against 11.8-14.2 s in bf16 (two runs), at the tiny adapter's macro F1 of fp32 (README,
  "Performance"). Without native bf16 a bf16
  matmul is converted on the fly (46 GFLOPS against 143 for fp32 on the AVX-512 VNNI
  Xeon here), while an int8 Linear of the 2B's MLP shape ran 5x faster than fp32 at one
  token and 2.7x at 220 (`python -m inspector bench` measures the whole report).
- Where PyTorch has no int8 engine: bf16 on CPUs with native bf16, else fp32.

Overrides: `INSPECTOR_DEVICE` (`cuda`, `cpu`), `INSPECTOR_DTYPE` (`nf4`, `int8`, `bf16`,
`fp16`, `fp32`; an int8 asked for keeps the tower in fp32 unless `INSPECTOR_INT8_VISION`
says otherwise) and `INSPECTOR_COMPUTE_DTYPE` (`bf16`, `fp16`, `fp32`: what nf4 computes
in and training autocasts to), or the arguments of `choose_runtime` and `compute_dtype`.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
COMPUTE_DTYPES = ("bf16", "fp16", "fp32")  # what nf4 layers compute in, and the training autocast
QUANTIZATIONS = ("nf4",)  # applied by bitsandbytes at load time
INT8 = "int8"  # applied after loading (and after the adapter is attached), CPU only


@dataclass(frozen=True)
class Runtime:
    """Where and in what precision the model runs, and why."""

    device: str
    precision: str  # "nf4", "int8", "bf16", "fp16" or "fp32"
    reason: str
    compute: str = "bf16"  # nf4's compute dtype (`compute_dtype`); the other precisions compute in their own
    # int8's vision tower where the runtime picked int8 itself: "bf16" on CPUs with native bf16,
    # None (fp32) elsewhere; `InspectorConfig.int8_vision` (INSPECTOR_INT8_VISION) overrides it
    int8_vision: str | None = None

    def __post_init__(self):
        if self.compute not in COMPUTE_DTYPES:
            raise ValueError(f"compute dtype {self.compute!r} is not supported; use one of {COMPUTE_DTYPES}")

    @property
    def quantized(self) -> bool:
        return self.precision in QUANTIZATIONS

    @property
    def int8(self) -> bool:
        return self.precision == INT8

    @property
    def torch_dtype(self) -> torch.dtype:
        """The dtype of the unquantized weights and of the compute."""
        if self.int8:
            return torch.float32  # what quantize_int8 leaves the unquantized layers in
        return DTYPES[self.compute] if self.quantized else DTYPES[self.precision]

    @property
    def load_dtype(self) -> torch.dtype | str:
        """The dtype a checkpoint loads in: for int8 its own ("auto": bf16 for the 2B), which
        `quantize_int8` widens layer by layer instead of loading all of it in fp32 first."""
        return "auto" if self.int8 else self.torch_dtype

    def describe(self) -> str:
        compute = f" with {self.compute} compute" if self.quantized else ""
        tower = f" with a {self.int8_vision} vision tower" if self.int8 and self.int8_vision else ""
        return f"{self.device}/{self.precision}{compute}{tower} ({self.reason})"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_kind(flags: set[str] | None = None) -> str:
    """The CPU's kind as far as matmul speed goes: AMX, AVX512-BF16, AVX-512 VNNI, AVX-512, AVX2 or older.

    Two vCPUs of each kind run the same model at very different rates (bf16 at 900 GFLOPS with
    AVX512-BF16, 0.5 with AVX2 only), so every figure is named with its kind."""
    flags = cpu_flags() if flags is None else flags
    if not flags:  # no /proc/cpuinfo (not Linux): torch's own word, the vector width it dispatches to
        return f"unknown ({torch.backends.cpu.get_cpu_capability()})"
    for flag, kind in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"), ("avx512_vnni", "AVX-512 VNNI"),
                       ("avx512f", "AVX-512"), ("avx2", "AVX2")):
        if flag in flags:
            return kind
    return "pre-AVX2"


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX)."""
    return cpu_kind() in ("AMX", "AVX512-BF16")


def cuda_has_native_bf16() -> bool:
    """True where the visible GPU has bf16 units (compute capability 8.0 and later).

    `torch.cuda.is_bf16_supported()` on its own answers True on a T4 too: by default it also
    counts bf16 that the GPU can only emulate, which runs far slower than fp16 there.
    """
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def compute_dtype(device: str, asked: str | None = None) -> tuple[str, str]:
    """(dtype name, why): what nf4 layers compute in, training autocasts to, and the benchmark
    times on `device`. Argument beats `INSPECTOR_COMPUTE_DTYPE` beats the GPU's answer."""
    asked = asked or os.environ.get("INSPECTOR_COMPUTE_DTYPE") or None
    if asked not in (None, *COMPUTE_DTYPES):
        raise ValueError(f"compute dtype {asked!r} is not supported; use bf16, fp16 or fp32 (INSPECTOR_COMPUTE_DTYPE)")
    if asked is not None:
        return asked, f"{asked} compute asked for"
    if device != "cuda":
        # nf4 on a CPU serves the tests only; training on a CPU runs without autocast
        return "bf16", "bf16 compute, the QLoRA recipe's, off CUDA"
    if cuda_has_native_bf16():
        return "bf16", "the GPU computes bf16 natively"
    return "fp16", "the GPU has no bf16 units (before Ampere, e.g. T4): fp16 compute"


def cpu_has_int8_engine() -> bool:
    """True where PyTorch has a fast int8 engine for dynamic quantization (x86: fbgemm/oneDNN)."""
    return "x86" in torch.backends.quantized.supported_engines


def cuda_device_index() -> int:
    """The GPU this process places the model on: LOCAL_RANK under `torchrun` and `accelerate
    launch` (one process per GPU of the machine), else 0 (one process, or a Ray worker, which sees
    only its own GPU through CUDA_VISIBLE_DEVICES)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def choose_runtime(device: str | None = None, precision: str | None = None) -> Runtime:
    """Pick the device and precision; arguments beat environment beat detection."""
    device = device or os.environ.get("INSPECTOR_DEVICE") or None
    precision = precision or os.environ.get("INSPECTOR_DTYPE") or None
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; use 'cuda' or 'cpu' (INSPECTOR_DEVICE)")
    if precision not in (None, "nf4", INT8, *DTYPES):
        raise ValueError(f"precision {precision!r} is not supported; use nf4, int8, bf16, fp16 or fp32 "
                         "(INSPECTOR_DTYPE)")
    if precision == INT8 and (device == "cuda" or (device is None and torch.cuda.is_available())):
        raise ValueError("int8 is the CPU precision; on a CUDA GPU use nf4 (or set INSPECTOR_DEVICE=cpu)")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("INSPECTOR_DEVICE=cuda but no CUDA GPU is visible; unset it to run on the CPU")

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        why_device = "a CUDA GPU is visible" if device == "cuda" else "no CUDA GPU is visible"
    else:
        why_device = "asked for"
    if precision == "nf4":
        compute, why_compute = compute_dtype(device)
        runtime = Runtime(device, precision, f"{why_device}; precision asked for; {why_compute}", compute)
    elif precision is not None:
        if device == "cuda" and precision == "bf16" and not cuda_has_native_bf16():
            log.warning("bf16 on a GPU without bf16 units is emulated, far slower than fp16 (INSPECTOR_DTYPE=fp16)")
        runtime = Runtime(device, precision, f"{why_device}; precision asked for")
    elif device == "cuda":
        compute, why_compute = compute_dtype(device)
        runtime = Runtime(device, "nf4", f"{why_device}; nf4 keeps the 2B model under 4 GB of VRAM; {why_compute}",
                          compute)
    elif cpu_has_native_bf16():
        if cpu_has_int8_engine():
            runtime = Runtime(device, INT8, f"{why_device}; the CPU computes bf16 natively: int8 decodes faster, "
                              "bf16 runs the vision tower faster", int8_vision="bf16")
        else:
            runtime = Runtime(device, "bf16", f"{why_device}; the CPU computes bf16 natively")
    elif cpu_has_int8_engine():
        runtime = Runtime(device, INT8, f"{why_device}; no native bf16, and int8 Linear layers beat fp32 here")
    else:
        runtime = Runtime(device, "fp32", f"{why_device}; neither native bf16 nor an int8 engine")
    log.info("runtime: %s", runtime.describe())
    return runtime


# -- what a benchmark records of the machine


def matmul_gflops(seconds: float = 0.3) -> dict:
    """bf16 and fp32 matmul rates on this CPU: where bf16 is emulated it is the slower one.

    Each rate repeats one prefill-sized matmul for about `seconds` (at least once after a warm-up),
    so the probe costs about five seconds where bf16 runs at 0.5 GFLOPS, not minutes."""
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


def cpu_model() -> str:
    """The CPU's model name (Linux), since the same 2 vCPUs run at very different rates."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """One line naming this machine for a benchmark or evaluation record: CPU, its kind, GPU, torch."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.machine()} {os.cpu_count()} CPUs, {cpu_model()} ({cpu_kind()}; torch dispatch "
            f"{torch.backends.cpu.get_cpu_capability()}), {gpu}, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads")
