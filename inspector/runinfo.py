"""What runs: the base model, the adapter and its training figures, device, precision and
visual tokens, as one JSON-able description (`describe_runtime`) and one line for the page
and the log (`runtime_line`).

The adapter's figures come from what its folder holds, first found first:
`eval/results.json` (train/evaluate.py, a local run), the model card's model-index (a
published adapter, train/push.py), `training_config.yaml` (trained, not evaluated). A
folder with none of them, such as `python -m inspector tiny OUT --with-adapter`'s random
adapter, is reported as untrained rather than passed off as a trained one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Below this many parameters the base is the tiny stand-in (inspector.tiny), not a real Qwen2-VL:
# the stand-in has about 1 M, Qwen2-VL-2B 2.2 B.
STAND_IN_PARAMETERS = 100_000_000


def count_parameters(model) -> int:
    """The base model's parameters, for the page (to one decimal): LoRA's own are left out, and dynamic
    int8 layers, which keep their weights and biases outside `parameters()`, are counted too."""
    total = sum(p.numel() for name, p in model.named_parameters() if "lora_" not in name)
    config = getattr(model, "config", None)
    tied = getattr(config, "tie_word_embeddings", False) or getattr(
        getattr(config, "text_config", None), "tie_word_embeddings", False)
    for name, module in model.named_modules():
        if "lora_" in name or not callable(getattr(module, "weight", None)):
            continue
        if tied and name.endswith("lm_head"):  # int8 made a copy of the tied embedding; count it once
            continue
        bias = module.bias() if callable(getattr(module, "bias", None)) else None
        total += module.weight().numel() + (bias.numel() if bias is not None else 0)
    return total


def describe_base(inspector) -> dict[str, Any]:
    config = inspector.config
    model_config = getattr(inspector.model, "config", None)
    local = Path(config.base).expanduser().is_dir()
    revision = config.base_revision or getattr(model_config, "_commit_hash", None)
    parameters = count_parameters(inspector.model)
    if parameters < STAND_IN_PARAMETERS:
        pretrained = (Path(config.base) / "pretraining.json").is_file() if local else False
        kind = "tiny stand-in" + (", pre-trained on synthetic pictures" if pretrained else ", random weights")
    else:
        kind = "Qwen2-VL"
    return {"name": config.base, "revision": revision or ("local folder" if local else "default branch"),
            "parameters": parameters, "kind": kind}


def adapter_training(folder: Path, task) -> dict[str, Any]:
    """What the adapter folder says of its training: {"trained": bool, "source", "figures"}."""
    results_path = folder / "eval" / "results.json"
    if results_path.is_file():
        try:
            results = json.loads(results_path.read_text())
            metric = task.primary_metric
            models = results["models"]
            return {"trained": True, "source": "eval/results.json", "figures": {
                "metric": metric, "adapter": models["adapter"][metric], "base": models["base"][metric],
                "n": results.get("n"), "split": results.get("split")}}
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("%s cannot be read (%s); its figures are not shown", results_path, error)
    card = card_figures(folder / "README.md")
    if card:
        return {"trained": True, "source": "model card", "figures": card}
    config_path = folder / "training_config.yaml"
    if config_path.is_file():
        return {"trained": True, "source": "training_config.yaml", "figures": training_figures(config_path)}
    return {"trained": False, "source": None, "figures": {}}


def card_figures(path: Path) -> dict[str, Any]:
    """The model-index figures of a model card ({metric name: value}); empty without any."""
    if not path.is_file():
        return {}
    from huggingface_hub import ModelCard

    try:
        results = ModelCard.load(path).data.eval_results or []
    except Exception as error:  # noqa: BLE001 - a broken card must not stop the app; say so in the log
        log.warning("the adapter card %s cannot be read (%s); its figures are not shown", path, error)
        return {}
    return {result.metric_name or result.metric_type: result.metric_value for result in results}


def training_figures(path: Path) -> dict[str, Any]:
    import yaml

    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    keys = ("dataset_dir", "num_train_epochs", "max_steps", "learning_rate", "lora_r")
    return {key: Path(str(config[key])).name if key == "dataset_dir" else config[key] for key in keys
            if config.get(key) not in (None, -1)}


def describe_adapter(inspector) -> dict[str, Any] | None:
    config = inspector.config
    if not inspector.has_adapter:
        return None
    folder = inspector.adapter_folder
    local = Path(str(config.adapter)).expanduser().is_dir()
    revision = config.adapter_revision or ("local folder" if local else "default branch")
    info = {"name": config.adapter, "revision": revision, "task": inspector.task.name}
    info.update(adapter_training(Path(folder), inspector.task) if folder else
                {"trained": False, "source": None, "figures": {}})
    return info


def describe_runtime(inspector, notices: list[str] = ()) -> dict[str, Any]:
    """What runs, as JSON: base, adapter (None without one), device, precision, visual tokens."""
    if inspector is None:
        return {"base": None, "adapter": None, "device": None, "precision": None, "int8_vision": None,
                "visual_tokens": None, "notices": list(notices)}
    return {"base": describe_base(inspector), "adapter": describe_adapter(inspector),
            "device": inspector.runtime.device, "precision": inspector.runtime.precision,
            "precision_reason": inspector.runtime.reason,
            # int8's vision tower ("bf16", "per-token", ...; None: fp32), None where the precision is not int8
            "int8_vision": inspector.runtime.int8_vision if inspector.runtime.int8 else None,
            "visual_tokens": inspector.config.visual_token_budget, "notices": list(notices)}


def format_figures(training: dict[str, Any]) -> str:
    figures = training["figures"]
    if not training["trained"]:
        return "untrained: no training record (evaluation results, card figures or training config)"
    if training["source"] == "eval/results.json":
        return (f"trained; {figures['metric']} {figures['adapter']:.3f} against the base's {figures['base']:.3f} "
                f"on {figures['n']} {figures['split']} images")
    shown = ", ".join(f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}"
                      for key, value in figures.items())
    return f"trained ({training['source']}" + (f": {shown})" if shown else ")")


def runtime_line(info: dict[str, Any]) -> str:
    """One line: "Base tiny-qwen2-vl (tiny stand-in, local folder) + adapter ...; cpu/int8 with a bf16
    vision tower, 256 visual tokens per image."
    """
    base = info["base"]
    if base is None:
        return "No model loaded: only the measured evidence is served."
    size = base["parameters"]
    size_text = f"{size / 1e9:.1f} B" if size >= 1e9 else f"{size / 1e6:.1f} M"
    text = f"Base {base['name']} ({base['kind']}, {size_text} parameters, revision {base['revision']})"
    adapter = info["adapter"]
    if adapter is None:
        text += " with no adapter"
    else:
        text += f" + adapter {adapter['name']} (revision {adapter['revision']}, {format_figures(adapter)})"
    tower = f" with a {info['int8_vision']} vision tower" if info.get("int8_vision") else ""
    return text + f"; {info['device']}/{info['precision']}{tower}, {info['visual_tokens']} visual tokens per image."
