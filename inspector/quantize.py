"""CPU int8 of a Qwen2-VL model, in place: the language model always, the vision tower as asked.

`quantize_int8(model, vision=None | "fp32" | "bf16" | "per-token" | "per-tensor")`; `inspector.model`
applies it at load time when the runtime's precision is int8 (INSPECTOR_INT8_VISION picks
the tower's scheme, else the runtime's: bf16 on CPUs with native bf16), and the benchmark for its int8 rows.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

VISION_MODULE = "visual"  # Qwen2-VL's vision tower (blocks and merger): `model.visual`
INT8_VISION_SCHEMES = (None, "fp32", "bf16", "per-token", "per-tensor")  # how int8 treats the vision tower


def vision_scheme(vision: str | None) -> str | None:
    """The tower's scheme as `quantize_int8` applies it, checked: "fp32" and None are both the fp32
    tower (None)."""
    if vision not in INT8_VISION_SCHEMES:
        raise ValueError(f"vision={vision!r}: use None or 'fp32' (fp32 tower), 'bf16', 'per-token' or 'per-tensor'")
    return None if vision == "fp32" else vision


def quantize_int8(model, vision: str | None = None) -> int:
    """Dynamic int8 of the language model's Linear layers, in place; returns how many.

    PyTorch's dynamic quantization: weights in int8 per output channel, activations
    quantized on the fly per call, one scale per tensor, fbgemm/oneDNN int8 kernels (VNNI).
    The language model and the output head are quantized; the vision tower (its blocks and
    the merger) stays in fp32 unless `vision` names a scheme, as nf4 leaves it in bf16
    (`llm_int8_skip_modules`): a vision tower's activations span orders of magnitude within
    a tensor, which one int8 scale per tensor cannot hold. On the tiny stand-in, whose set
    encoder is such a tower, int8 everywhere (`vision="per-tensor"`) cost 51 points of macro
    F1 and int8 in the language model alone less than 1 (README, "Performance").
    `vision="per-token"` gives the tower one activation scale per token and one weight scale
    per output channel instead (`quantize_vision_per_token`). `vision="bf16"` leaves the tower
    unquantized in bf16, for CPUs whose bf16 matmuls outrun fp32 (AVX512-BF16, AMX): the
    tower's input is cast to its dtype and its output to the language model's by
    transformers' Qwen2-VL itself. LoRA's own A/B layers stay in
    fp32 (they are small, and the adapter's update is what it trained). PEFT keeps working:
    its LoRA layer calls its base layer as a module, whatever that module is. Applied after
    the adapter is attached, since PEFT only wraps plain Linear layers.
    """
    import gc
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    vision = vision_scheme(vision)  # checked before any layer is touched

    targets = [name for name, module in model.named_modules()
               if type(module) is torch.nn.Linear and ".lora_" not in name
               and (vision == "per-tensor" or VISION_MODULE not in name.split("."))]
    with warnings.catch_warnings():  # torch.ao's notice that it moves to torchao; the kernels are the same
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*(torch.ao.quantization|quantize_per_tensor).*")
        # One layer at a time, widened to fp32 just before (exact from the checkpoint's bf16):
        # quantizing the whole model at once needs all of it in fp32 first, 9 GB for the 2B.
        for count, name in enumerate(targets):
            if count % 16 == 0:
                # Collecting as it goes keeps the peak near the final size: without it the
                # garbage of the swaps piled up (an ad-hoc check on the 2B shape: 10.5 GB, not 5.9).
                gc.collect()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name)  # no list of modules: each fp32 layer is freed once swapped
            getattr(parent, child).float()
            quantize_dynamic(parent, {child: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    model.float()  # what stays unquantized (the vision tower, norms, embeddings, LoRA) computes in fp32
    gc.collect()
    if vision == "per-token":
        targets += quantize_vision_per_token(model)
    elif vision == "bf16":
        vision_tower(model).to(torch.bfloat16)
    log.info("int8: %d Linear layers quantized; the vision tower %s", len(targets),
             {None: "stays fp32", "bf16": "stays unquantized, in bf16",
              "per-tensor": "too, one activation scale per tensor",
              "per-token": "too, one activation scale per token"}[vision])
    return len(targets)


def vision_tower(model) -> torch.nn.Module:
    """The vision tower (`visual`: blocks and merger) of a Qwen2-VL model, PEFT-wrapped or not."""
    for name, module in model.named_modules():
        if name.split(".")[-1] == VISION_MODULE:
            return module
    raise ValueError("the model has no vision tower (no module named 'visual')")


def quantize_vision_per_token(model) -> list[str]:
    """The vision tower's Linear layers in int8, in place, with an activation scale per token.

    torchao's dynamic int8 (`Int8DynamicActivationInt8WeightConfig`: symmetric int8 weights per
    output channel, activations quantized per call and per row, int8 matmuls by `torch._int_mm`):
    a token whose activations are a thousand times another's gets its own scale, where one
    scale per tensor rounds the quiet tokens to zero. Returns the names of the layers quantized.
    """
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    tower = vision_tower(model)
    names = [name for name, module in tower.named_modules() if type(module) is torch.nn.Linear]
    quantize_(tower, Int8DynamicActivationInt8WeightConfig(),
              filter_fn=lambda module, name: type(module) is torch.nn.Linear and ".lora_" not in name)
    return names
