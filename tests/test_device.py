"""The compute dtype follows the GPU: bf16 where it has bf16 units, fp16 elsewhere (a T4).

The CUDA queries are monkeypatched, so both answers are checked on any machine; the real
query runs in `benchmarks/gpu_check.py` on a GPU.
"""

from __future__ import annotations

import pytest
import torch

from inspector.device import Runtime, choose_runtime, compute_dtype
from inspector.model import quantization_config


def _pretend_gpu(monkeypatch, native_bf16: bool) -> list[dict]:
    """A visible GPU with or without bf16 units; returns the keyword arguments of each query.

    Without units it answers as torch does on a T4: True when emulation counts (its default),
    False when it does not.
    """
    calls = []

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        calls.append({"including_emulation": including_emulation})
        return native_bf16 or including_emulation

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.delenv("INSPECTOR_COMPUTE_DTYPE", raising=False)
    monkeypatch.delenv("INSPECTOR_DTYPE", raising=False)
    monkeypatch.delenv("INSPECTOR_DEVICE", raising=False)
    return calls


def _pretend_cpu(monkeypatch, native_bf16: bool) -> None:
    """No GPU, a CPU with or without native bf16, PyTorch's int8 engine there, nothing asked for."""
    import inspector.device as device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("INSPECTOR_DTYPE", raising=False)
    monkeypatch.delenv("INSPECTOR_DEVICE", raising=False)
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native_bf16)
    monkeypatch.setattr(device, "cpu_has_int8_engine", lambda: True)


@pytest.mark.parametrize(("native_bf16", "expected", "torch_dtype"),
                         [(True, "bf16", torch.bfloat16), (False, "fp16", torch.float16)])
def test_nf4_computes_in_the_gpus_dtype_with_the_reason(monkeypatch, caplog, native_bf16, expected, torch_dtype):
    calls = _pretend_gpu(monkeypatch, native_bf16)
    with caplog.at_level("INFO", logger="inspector.device"):
        runtime = choose_runtime()
    assert (runtime.device, runtime.precision, runtime.compute) == ("cuda", "nf4", expected)
    assert runtime.torch_dtype is torch_dtype
    assert calls and all(call == {"including_emulation": False} for call in calls), "emulated bf16 must not count"
    reason = "computes bf16 natively" if native_bf16 else "no bf16 units"
    assert reason in runtime.reason and reason in caplog.text and f"with {expected} compute" in caplog.text
    pytest.importorskip("bitsandbytes")
    assert quantization_config(runtime).bnb_4bit_compute_dtype is torch_dtype


@pytest.mark.parametrize("native_bf16", [True, False])
def test_compute_dtype_override_beats_the_gpus_answer(monkeypatch, native_bf16):
    _pretend_gpu(monkeypatch, native_bf16)
    monkeypatch.setenv("INSPECTOR_COMPUTE_DTYPE", "fp32")
    assert compute_dtype("cuda") == ("fp32", "fp32 compute asked for")
    assert choose_runtime(precision="nf4").torch_dtype is torch.float32
    assert compute_dtype("cuda", "fp16")[0] == "fp16", "an argument beats the environment"
    monkeypatch.setenv("INSPECTOR_COMPUTE_DTYPE", "fp8")
    with pytest.raises(ValueError, match="INSPECTOR_COMPUTE_DTYPE"):
        compute_dtype("cuda")
    with pytest.raises(ValueError, match="compute dtype"):
        Runtime("cuda", "nf4", "test", compute="int4")


def test_without_a_gpu_nf4_keeps_the_recipes_bf16(monkeypatch):
    monkeypatch.delenv("INSPECTOR_COMPUTE_DTYPE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    runtime = choose_runtime(device="cpu", precision="nf4")
    assert (runtime.compute, runtime.torch_dtype) == ("bf16", torch.bfloat16)


@pytest.mark.parametrize("native_bf16", [True, False])
def test_training_autocasts_to_the_same_dtype(monkeypatch, native_bf16):
    """finetune's TrainingConfig defaults: bf16 or fp16 autocast, as nf4 computes."""
    from train.finetune import _cuda_autocast, machine_defaults  # imported before CUDA is pretended

    _pretend_gpu(monkeypatch, native_bf16)
    assert _cuda_autocast() == ("bf16" if native_bf16 else "fp16")
    assert machine_defaults() == {"bf16": native_bf16, "fp16": not native_bf16, "dataloader_pin_memory": True,
                                  "use_cpu": False}
    monkeypatch.setenv("INSPECTOR_COMPUTE_DTYPE", "fp32")
    assert _cuda_autocast() is None, "fp32 compute: no autocast"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _cuda_autocast() is None, "never on a CPU"


@pytest.mark.parametrize(("native_bf16", "tower"), [(True, "bf16"), (False, None)])
def test_a_cpu_runs_int8_with_the_tower_in_its_fast_float(monkeypatch, native_bf16, tower):
    """Both CPU kinds on any machine: int8 for the language model where PyTorch has its engine, the
    vision tower in bf16 where the CPU computes it natively, else fp32; bf16 or fp32 without int8."""
    import inspector.device as device

    _pretend_cpu(monkeypatch, native_bf16)
    runtime = choose_runtime()
    assert (runtime.device, runtime.precision, runtime.int8_vision) == ("cpu", "int8", tower)
    assert ("with a bf16 vision tower" in runtime.describe()) is native_bf16
    assert runtime.load_dtype == "auto" and runtime.torch_dtype is torch.float32, "as every int8"
    assert choose_runtime(precision="int8").int8_vision is None, "int8 asked for: the tower stays fp32"
    monkeypatch.setattr(device, "cpu_has_int8_engine", lambda: False)
    assert choose_runtime().precision == ("bf16" if native_bf16 else "fp32")


@pytest.mark.parametrize(("native_bf16", "trains_in"), [(True, "bf16"), (False, "fp32")])
def test_training_on_a_cpu_takes_its_float_where_serving_takes_int8(monkeypatch, native_bf16, trains_in):
    """Dynamic int8 layers have no gradients: finetune trains in the CPU's float instead."""
    from train.finetune import training_runtime

    _pretend_cpu(monkeypatch, native_bf16)
    assert choose_runtime().int8, "what serving picks"
    assert training_runtime(None, None).precision == trains_in
    assert training_runtime(None, "int8").precision == trains_in
    assert training_runtime(None, "fp32").precision == "fp32", "a float asked for is kept"
