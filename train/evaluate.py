"""Evaluate the base model zero-shot and the adapter on the test split, through the app's path.

    python train/evaluate.py --adapter runs/degradation-lora --base Qwen/Qwen2-VL-2B-Instruct \
        --dataset data/degradation --out runs/degradation-lora/eval
    python train/evaluate.py --config train/recipes/tiny.yaml --adapter runs/tiny/adapter --json
    python train/evaluate.py --config train/recipes/counting.yaml --adapter runs/counting-lora
    python train/evaluate.py --config train/recipes/visdial.yaml --adapter runs/visdial-lora --max-samples 50

`--config` reads a recipe's base_model, dataset_dir, visual_token_budget and
precision (its other keys are the other scripts'); flags win. The task is the
adapter's (inspector_task.json). The visual-token budget the adapter was trained with
(its training_config.yaml) is used unless the flag or the recipe gives one, and a
different one is warned about: the views, and so the figures, depend on it.

Base and adapter answer every test example in one batched `generate` per batch
(`inspector.model.Inspector.generate`: PEFT's mixed base+adapter batch, one vision
pass per image), with the task's views, prompt and parser, as the app serves them; a
ranking task (VisDial) scores every round's candidates by likelihood
(`inspector.tasks.evaluation.rank_candidates`), base and adapter in one forward per chunk
of candidates. So these figures are what the app shows.

Writes to --out (default ADAPTER/eval, where train/push.py looks): results.json (the
summary the model card quotes; for the degradation task per-type precision, recall,
F1, macro F1, exact-set accuracy, severity accuracy, parse-failure rate and the
confusion matrices of `inspector.metrics`), results.md (base vs adapter),
confusion_base.png and confusion_adapter.png, and predictions.jsonl (every answer,
verbatim; for a ranking task, per round the ground truth's rank and the top candidate).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from inspector.taxonomy import DEGRADATION_TYPES, SEVERITIES, TYPE_LABELS
from train.config import ModelFields, parse_config

MODELS = ("base", "adapter")


@dataclass
class EvalConfig(ModelFields):
    """What to evaluate and how; base, data set and budget default to the adapter's training_config.yaml."""

    adapter: str | None = field(default=None, metadata={
        "help": "adapter folder (train/finetune.py --output-dir) or Hub repo id"})
    out: str | None = field(default=None, metadata={"help": "results folder; default: ADAPTER/eval"})
    split: str = "test"
    adapter_revision: str | None = None
    max_samples: int | None = None  # the first N rows (VisDial: dialogues) of the split, for a quick look
    batch_size: int = 8  # examples per generate call (2 rows each: base and adapter); more: faster, more memory
    max_new_tokens: int | None = None  # default: the task's (degradation: 48, as the app)
    kv_cache: str = "dynamic"  # or "static", the app's INSPECTOR_KV_CACHE
    int8_vision: str | None = None  # with --precision int8: fp32, bf16, per-token or per-tensor (INSPECTOR_INT8_VISION)
    decoding: str = "fields"  # or "free": plain greedy generate, the app's INSPECTOR_DECODING (inspector.fields)
    json: bool = False  # print the summary as one JSON line instead of the Markdown table

    def __post_init__(self) -> None:
        if not self.adapter:
            raise ValueError("--adapter is required: the adapter folder (train/finetune.py --output-dir) or Hub id")


def main(config: EvalConfig) -> dict:
    from datasets import load_from_disk

    from inspector.device import machine
    from inspector.hub import resolve_adapter
    from inspector.model import DEFAULT_VISUAL_TOKENS, Inspector, InspectorConfig

    started = time.perf_counter()
    folder = resolve_adapter(config.adapter, config.adapter_revision)
    trained = read_training_config(folder)
    base = config.base_model or trained.get("base_model")
    dataset_dir = config.dataset_dir or trained.get("dataset_dir")
    if not base or not dataset_dir:
        raise ValueError("give --base and --dataset (the adapter folder has no training_config.yaml naming them)")
    budget = config.visual_token_budget or trained.get("visual_token_budget") or DEFAULT_VISUAL_TOKENS
    if trained.get("visual_token_budget") not in (None, budget):
        print(f"warning: the adapter was trained with visual_token_budget {trained['visual_token_budget']} and is "
              f"evaluated with {budget} (--visual-token-budget or the recipe); these figures hold for an app "
              f"serving it with INSPECTOR_VISUAL_TOKENS={budget}", file=sys.stderr)
    out = Path(config.out) if config.out else folder / "eval"
    # With --json, stdout holds the one JSON line only, so a JSON reader can take it as it is.
    print(yaml.safe_dump({"evaluate": {**asdict(config), "base_model": base, "dataset_dir": dataset_dir,
                                       "visual_token_budget": budget, "out": str(out)}}, sort_keys=False), end="",
          file=sys.stderr if config.json else sys.stdout)
    rows = load_from_disk(dataset_dir)[config.split]
    if config.max_samples is not None:
        rows = rows.select(range(min(config.max_samples, len(rows))))

    # Model: the app's loader, with the adapter as a required part (no silent base-only run)
    inspector = Inspector.load(InspectorConfig(
        base=base, base_revision=config.base_revision, adapter=config.adapter,
        adapter_revision=config.adapter_revision, device=config.device, precision=config.precision,
        visual_token_budget=budget, max_new_tokens=config.max_new_tokens or 48, kv_cache=config.kv_cache,
        int8_vision=config.int8_vision, decoding=config.decoding))
    if not inspector.has_adapter:
        raise RuntimeError(inspector.missing_adapter)
    task = inspector.task

    # Evaluation
    if task.evaluation == "rank":
        predictions, records = rank(inspector, task, rows)
    else:
        predictions, texts, references = predict(inspector, task, rows, config)
        records = [{"reference": reference, **{name: texts[name][index] for name in MODELS}}
                   for index, reference in enumerate(references)]
    references = [record["reference"] for record in records]
    models = {name: task.metrics(predictions[name], references) for name in MODELS}
    results = {
        "task": task.name, "split": config.split, "n": len(rows),
        "base_model": base, "adapter": config.adapter, "dataset": dataset_dir,
        "models": models,
        "visual_token_budget": budget,
        "runtime": inspector.runtime.describe(),
        # how the answers were decoded: the layout fed and only its values chosen (inspector.fields),
        # plain generate, or (ranking tasks) the candidates' likelihood
        "decoding": ("candidate scoring" if task.evaluation == "rank" else
                     "fields" if config.decoding == "fields" and inspector.field_plan() else "free"),
        "machine": machine(),  # the bench's description: CPU kind and capability, threads, GPU
    }
    results.update(task.extra_figures(predictions, references))  # degradation: confusion matrices, baselines
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as lines:
        for record in records:
            lines.write(json.dumps(record) + "\n")
    write_results(results, out, task)
    print(json.dumps(summary(results)) if config.json else markdown(results, task))
    return results


def predict(inspector, task, rows, config: EvalConfig):
    """({model: predictions}, {model: raw texts}, references) over the split, in batches.

    Each batch is one `Inspector.answer`: the app's path, the task's views, messages and parser.
    """
    from tqdm import tqdm

    from inspector.images import load_image
    from inspector.model import ADAPTER_NAME, BASE_NAME

    examples = [rows[index] for index in range(len(rows))]
    predictions, texts = {name: [] for name in MODELS}, {name: [] for name in MODELS}
    for start in tqdm(range(0, len(examples), config.batch_size), desc="evaluating", unit="batch", file=sys.stderr):
        batch = examples[start:start + config.batch_size]
        answers = inspector.answer([load_image(example["image"]) for example in batch], batch,
                                   max_new_tokens=config.max_new_tokens or task.max_new_tokens)
        for own in answers:
            for name, row in zip(MODELS, (BASE_NAME, ADAPTER_NAME)):
                texts[name].append(own[row])
                predictions[name].append(task.parse(own[row]))
    return predictions, texts, [task.reference(example) for example in examples]


def rank(inspector, task, rows) -> tuple[dict, list[dict]]:
    """({model: candidate scores per ranked round}, a record per round) of a ranking task (VisDial).

    Every round with candidates is ranked (VisDial's protocol for MRR, R@k and mean rank);
    the task's metrics add NDCG over the densely annotated rounds (`ndcg_dense`). Base and
    adapter score each chunk of candidates in one forward.
    """
    from tqdm import tqdm

    from inspector.model import ADAPTER_NAME, BASE_NAME
    from inspector.tasks.evaluation import rank_candidates

    examples = tqdm([rows[index] for index in range(len(rows))], desc="ranking", unit="dialogue", file=sys.stderr)
    scores, references = rank_candidates(inspector.model, inspector.processor, task, examples,
                                         adapter_names=[BASE_NAME, ADAPTER_NAME],
                                         visual_token_budget=inspector.config.visual_token_budget)
    predictions = {"base": scores[BASE_NAME], "adapter": scores[ADAPTER_NAME]}
    records = [{"reference": reference,
                **{name: ranked_summary(predictions[name][index], reference["gt_index"]) for name in MODELS}}
               for index, reference in enumerate(references)]
    return predictions, records


def ranked_summary(scores: list[float], gt_index: int) -> dict:
    """One model's ranking of a round, for predictions.jsonl: its top candidate and the ground truth's rank."""
    from inspector.tasks.visdial import gt_rank

    return {"top_index": max(range(len(scores)), key=scores.__getitem__), "gt_rank": gt_rank(scores, gt_index)}


def read_training_config(adapter_folder: Path) -> dict:
    path = adapter_folder / "training_config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def summary(results: dict) -> dict:
    """The figures a reader wants first: per model, the scalar scores."""
    figures = {name: {key: round(value, 3) for key, value in results["models"][name].items()
                      if isinstance(value, (int, float)) and not isinstance(value, bool)} for name in MODELS}
    extra = {"always_present_macro_f1": round(results["baselines"]["always_present"], 3)} if "baselines" in results else {}
    return {"task": results["task"], "n": results["n"], "elapsed_s": results["elapsed_s"], **figures, **extra}


def markdown(results: dict, task) -> str:
    return task.results_markdown(results)


def write_results(results: dict, out: Path, task) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results, task))
    for name in MODELS if "confusion" in results else ():
        plot_confusion(results["confusion"][name]["matrices"], f"{name}: {results['n']} test images",
                       out / f"confusion_{name}.png")


def plot_confusion(matrices: dict[str, list[list[int]]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(DEGRADATION_TYPES), figsize=(4 * len(DEGRADATION_TYPES), 3.8))
    for axis, kind in zip(axes, DEGRADATION_TYPES):
        matrix = matrices[kind]
        axis.imshow(matrix, cmap="Blues")
        axis.set_title(TYPE_LABELS[kind])
        axis.set_xticks(range(len(SEVERITIES)), SEVERITIES, rotation=45)
        axis.set_yticks(range(len(SEVERITIES)), SEVERITIES)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        peak = max(max(row) for row in matrix) or 1
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                axis.text(j, i, count, ha="center", va="center", color="white" if count > peak / 2 else "black")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def parse_args(argv: list[str] | None = None) -> tuple:
    """The command line over `--config RECIPE` (train/config.py)."""
    return parse_config([EvalConfig], argv, __doc__)


if __name__ == "__main__":
    main(*parse_args())
