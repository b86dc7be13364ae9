"""The model card of a published adapter, built with `huggingface_hub`'s card classes.

The metadata is what the Hub indexes: base_model, library_name, pipeline_tag, datasets,
license, tags and the model-index with the evaluation figures of `train/evaluate.py`.
`check_model_card` (and `dataset_card.check_dataset_card`) validate a card offline: they parse it back
with the card classes, as the Hub would. (`RepoCard.validate()` posts the card to the
Hub, so it cannot run before an upload is decided, nor in tests.)

    card = build_model_card(AdapterCard(repo_id="ORG/NAME", tag="v1", base_model="Qwen/Qwen2-VL-2B-Instruct", ...))
    problems = check_model_card(card)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from inspector.tasks import DEFAULT_TASK
from inspector.tasks.base import figure
from inspector.taxonomy import BANDS, DEGRADATION_TYPES, SEVERITIES, TYPE_LABELS

TASK = "image-text-to-text"
TASK_NAME = "Photo degradation inspection"
MODEL_TAGS = ["lora", "peft", "qwen2-vl", "image-quality", "degradation-detection", "degradation-inspector"]
DATASET_TAGS = ["image-quality", "degradation-detection", "synthetic", "degradation-inspector"]

# The other tasks' cards: their headline figures are `Task.headline_metrics`.
OTHER_TASK_TAGS = ["lora", "peft", "qwen2-vl", "degradation-inspector"]
PARSE_FAILURES = ("parse_failure_rate", "parse_failure_rate", "parse failures")
UNBOUNDED_METRIC_TYPES = ("mae", "mean_rank")  # model-index types whose values are not in [0, 1]

# The Hub's license ids (its repositories-licenses list); "other" for anything else.
HUB_LICENSES = frozenset("""
apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 bigcode-openrail-m
afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0
cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0
cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0
cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl
gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr
mpl-2.0 odc-by odbl openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr
deepfloyd-if-license llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 gemma unknown other
""".split())
SIZE_CATEGORIES = ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B")

# What each file of a published adapter is, for the card's file table.
FILE_ROLES = {
    "adapter_config.json": "PEFT config; names the base model by its Hub id",
    "adapter_model.safetensors": "LoRA weights",
    "inspector_task.json": "task, instruction, answer format and visual-token budget the adapter was trained with",
    "training_config.yaml": "the resolved training config (local paths replaced by their last component)",
}
PROCESSOR_ROLE = "the base model's processor/tokenizer file, unchanged"

DATASET_COLUMNS = {
    "image": "the degraded photo",
    "labels": "severity word per degradation type",
    "answer": "the answer the adapter is trained to give (compact JSON)",
    "spec": "the degradation parameters applied",
    "source": "the clean photo it was made from",
    "seed": "the random seed that reproduces the sample",
}


@dataclass
class AdapterCard:
    """What the model card of one published adapter version says."""

    repo_id: str
    tag: str
    base_model: str  # a Hub repo id
    license: str = "apache-2.0"
    dataset_repo: str | None = None
    dataset_revision: str | None = None
    lora: dict[str, Any] = field(default_factory=dict)  # adapter_config.json
    results: dict[str, Any] | None = None  # eval/results.json of train/evaluate.py
    files: list[tuple[str, int]] = field(default_factory=list)  # (path in repo, bytes), README.md excluded
    processor_files: tuple[str, ...] = ()
    versions: dict[str, str] = field(default_factory=dict)  # library -> version, as published
    task: Any = None  # the adapter's inspector.tasks.Task (inspector_task.json); None: degradation

    @property
    def the_task(self):
        return self.task or degradation()


def degradation():
    from inspector.tasks import get_task

    return get_task(DEFAULT_TASK)


def is_degradation(task) -> bool:
    """The project's own task gets the full card (its synthetic data, its report format, its bands);
    kept here, not as a hook of the task, so that card prose stays out of the run-time library."""
    return task.name == DEFAULT_TASK


# Model card ---------------------------------------------------------------------------

def eval_results(results: dict[str, Any], dataset_type: str, dataset_revision: str | None = None,
                 task=None) -> list[EvalResult]:
    """The adapter's headline figures as model-index entries (the base's go in the card body)."""
    task = task or degradation()
    adapter = results["models"]["adapter"]
    split = results.get("split", "test")
    dataset_name = (f"Degradation Inspector synthetic degradations ({split})" if is_degradation(task)
                    else f"{dataset_type} ({split})")
    return [
        EvalResult(task_type=TASK, task_name=task.title or TASK_NAME, dataset_type=dataset_type,
                   dataset_name=dataset_name, dataset_split=split, dataset_revision=dataset_revision,
                   metric_type=metric_type, metric_name=name, metric_value=round(float(adapter[key]), 4))
        for key, metric_type, name in task.headline_metrics
    ]


def build_model_card(facts: AdapterCard) -> ModelCard:
    """The model card: Hub metadata, usage that works as written, evaluation, training, files."""
    results, task = facts.results, facts.the_task
    degradation = is_degradation(task)
    dataset_type = (facts.dataset_repo or (results or {}).get("dataset")
                    or ("degradation-inspector-synthetic" if degradation else f"{task.name}-data"))
    data = ModelCardData(
        base_model=facts.base_model, library_name="peft", pipeline_tag=TASK, license=facts.license,
        language=["en"], datasets=[facts.dataset_repo] if facts.dataset_repo else None,
        tags=MODEL_TAGS if degradation else OTHER_TASK_TAGS + [task.name],
        model_name=facts.repo_id.split("/")[-1] if results else None,
        eval_results=eval_results(results, dataset_type, facts.dataset_revision, task) if results else None,
    )
    what = ("inspects a photo for blur, noise, low resolution and JPEG artifacts, grades each as none, mild, "
            "moderate or severe, and answers with compact JSON" if degradation
            else f"is fine-tuned for {task.title.lower()} (task `{task.name}`, see `inspector_task.json`)")
    body = "\n".join([
        f"# {facts.repo_id.split('/')[-1]}", "",
        (f"A LoRA adapter for `{facts.base_model}` that {what}. "
         f"Part of the Degradation Inspector project. This is version `{facts.tag}`: pin it with "
         f"`revision=\"{facts.tag}\"`."), "",
        usage_section(facts), answer_section() if degradation else task_answer_section(task),
        evaluation_section(results, dataset_type, [name for name, _ in facts.files], task),
        training_section(facts), files_section(facts), limitations_section(facts),
    ])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def usage_section(facts: AdapterCard) -> str:
    repo, tag, base, name = facts.repo_id, facts.tag, facts.base_model, facts.repo_id.split("/")[-1]
    versions = ", ".join(f"{lib} {version}" for lib, version in facts.versions.items())
    return f"""## Use it

Download the adapter folder (adapter, processor files, task, config, evaluation):

```bash
hf download {repo} --revision {tag} --local-dir {name}
# with huggingface_hub < 1.0: huggingface-cli download {repo} --revision {tag} --local-dir {name}
```

With `transformers` and `peft` alone{f" (published with {versions})" if versions else ""}:

```python
import json

import torch
from huggingface_hub import hf_hub_download
from peft import PeftModel
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

base = AutoModelForImageTextToText.from_pretrained("{base}", dtype=torch.bfloat16)
model = PeftModel.from_pretrained(base, "{repo}", revision="{tag}").eval()
processor = AutoProcessor.from_pretrained("{repo}", revision="{tag}")  # the base's processor files
with open(hf_hub_download("{repo}", "inspector_task.json", revision="{tag}")) as file:
    instruction = json.load(file)["instruction"]

messages = [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": instruction}}]}}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(text=[prompt], images=[Image.open("photo.jpg").convert("RGB")], return_tensors="pt")
output = model.generate(**inputs, max_new_tokens=48, do_sample=False, repetition_penalty=1.0)
print(processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0])
```

{library_section(facts)}"""


def library_section(facts: AdapterCard) -> str:
    """How the project's library serves the adapter: the views it was trained on, base and adapter side by side."""
    repo, tag, base, task = facts.repo_id, facts.tag, facts.base_model, facts.the_task
    load = f'inspector = Inspector.load(base="{base}", adapter="{repo}", adapter_revision="{tag}")'
    if is_degradation(task):
        return f"""The adapter was trained on several views of each photo: a downscaled whole photo and crops at
native resolution, where fine blur and noise are visible. The Degradation Inspector library builds
those views, shows the base model's and the adapter's reports side by side, and parses the answer:

```python
from inspector import Inspector

{load}
result = inspector.inspect(["photo.jpg"])[0]
print(result.adapter.to_json())
```
"""
    question = ', "What is the highest value?"' if task.needs_question else ""
    return f"""The Degradation Inspector library builds the views and prompt the adapter was trained with,
asks the base model and the adapter in one batch, and parses both answers:

```python
from inspector import Inspector

{load}
answers = inspector.ask("image.jpg"{question})
print(answers["adapter"]["prediction"], answers["__base__"]["prediction"])
```
"""


def task_answer_section(task) -> str:
    return "\n".join([
        "## Answer", "",
        (f"The answer format is `{task.answer_format}` (`inspector_task.json`), at most {task.max_new_tokens} new "
         f"tokens; `inspector.tasks.get_task(\"{task.name}\").parse` reads it."), "",
    ])


def answer_section() -> str:
    example = "{" + ",".join(f'"{kind}":"none"' for kind in DEGRADATION_TYPES) + "}"
    rows = [f"| {TYPE_LABELS[kind]} | {band.parameter} ({band.unit}) | "
            + " | ".join(_band_text(band, word) for word in SEVERITIES[1:]) + " |"
            for kind, band in BANDS.items()]
    return "\n".join([
        "## Answer", "",
        (f"One JSON object, a severity word ({', '.join(SEVERITIES)}) per degradation type, e.g. `{example}`. "
         "The words follow these bands, measured at the photo's native resolution:"), "",
        "| type | parameter | mild | moderate | severe |", "| --- | --- | --- | --- | --- |", *rows, "",
    ])


def _band_text(band, word: str) -> str:
    low, high = {"mild": (band.mild, band.moderate), "moderate": (band.moderate, band.severe)}.get(word, (None, None))
    if word == "severe":
        return f"{'>' if band.increasing else '<'} {band.severe:g}"
    return f"{low:g}-{high:g}" if band.increasing else f"{high:g}-{low:g}"


def evaluation_section(results: dict[str, Any] | None, dataset_type: str, files: list[str], task=None) -> str:
    if not results:
        return "## Evaluation\n\nThis version was published without evaluation results.\n"
    models = results["models"]
    table = (task or degradation()).headline_metrics
    if any(PARSE_FAILURES[0] in figures for figures in models.values()):
        table += (PARSE_FAILURES,)
    header = "| model | " + " | ".join(name for _, _, name in table) + " |"
    rows = [f"| {label} | " + " | ".join(figure(models[key].get(metric)) for metric, _, _ in table) + " |"
            for key, label in (("base", "base model, zero-shot"), ("adapter", "this adapter")) if key in models]
    per_type = models["adapter"].get("per_type", {})
    type_rows = [f"| {TYPE_LABELS.get(kind, kind)} | " + " | ".join(
        figure(scores.get(name)) for name in ("precision", "recall", "f1")) + f" | {scores.get('support', '')} |"
        for kind, scores in per_type.items()]
    lines = [
        "## Evaluation", "",
        (f"On {results.get('n', '?')} photos of the `{results.get('split', 'test')}` split of `{dataset_type}` "
         "(`train/evaluate.py`):"), "",
        header, "| --- |" + " --- |" * len(table), *rows, "",
    ]
    if type_rows:
        lines += ["Per degradation type, this adapter:", "",
                  "| type | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |", *type_rows, ""]
    evaluation_files = [f"`{name}`" for name in files if name.startswith("eval/")]
    lines += [f"Full results in this repo: {', '.join(evaluation_files)}.", ""] if evaluation_files else []
    return "\n".join(lines)


def training_section(facts: AdapterCard) -> str:
    lora = facts.lora
    targets = lora.get("target_modules") or []
    data = (f"`{facts.dataset_repo}`" + (f" at revision `{facts.dataset_revision}`" if facts.dataset_revision else "")
            if facts.dataset_repo else "synthetic degradations built by `train/build_dataset.py`")
    lines = [
        "## Training", "",
        f"- Data: {data}.",
        (f"- LoRA: rank {lora.get('r', '?')}, alpha {lora.get('lora_alpha', '?')}, "
         f"dropout {lora.get('lora_dropout', '?')}, "
         f"on {', '.join(f'`{t}`' for t in sorted(targets)) or 'see adapter_config.json'}."),
    ]
    if any(name == "training_config.yaml" for name, _ in facts.files):
        lines.append("- Config: `training_config.yaml`, as resolved for the run.")
    return "\n".join(lines + [""])


def files_section(facts: AdapterCard) -> str:
    rows = [f"| `{name}` | {size:,} | {describe_file(name, facts.processor_files)} |" for name, size in facts.files]
    return "\n".join(["## Files", "", "| file | bytes | what |", "| --- | ---: | --- |", *rows, ""])


def describe_file(name: str, processor_files: tuple[str, ...] = ()) -> str:
    if name in FILE_ROLES:
        return FILE_ROLES[name]
    if name in processor_files:
        return PROCESSOR_ROLE
    if name.startswith("eval/"):
        return "evaluation output of `train/evaluate.py`"
    if name.startswith("runs/"):
        return "training logs (TensorBoard)"
    return ""


def limitations_section(facts: AdapterCard) -> str:
    if not is_degradation(facts.the_task):
        return f"""## Limitations

- Fine-tuned and evaluated on the data named above: check it on your own images before relying on it.
- The base model's license and limitations apply (`{facts.base_model}`).
"""
    return f"""## Limitations

- Trained on synthetic degradations of clean photos, one or several at known strengths: real photos mix
  causes (motion blur, sensor noise, compression after resizing) that the synthesis approximates.
- The bands are stated at native resolution: a photo resized before inspection gets a different answer.
- The base model's license and limitations apply (`{facts.base_model}`).
"""


def check_model_card(card: ModelCard) -> list[str]:
    """Problems with a model card's metadata, found offline by parsing it back as the Hub would."""
    from huggingface_hub.repocard_data import model_index_to_eval_results

    try:
        data = ModelCard(str(card)).data
    except ValueError as error:
        return [f"the card metadata does not parse: {error}"]
    problems = check_common(data.to_dict())
    problems += check_repo_id(data.base_model, "base_model")
    for dataset in data.datasets or []:
        problems += check_repo_id(dataset, "datasets")
    if data.library_name != "peft":
        problems.append(f"library_name is {data.library_name!r}, not 'peft'")
    if data.pipeline_tag != TASK:
        problems.append(f"pipeline_tag is {data.pipeline_tag!r}, not {TASK!r}")
    model_index = data.to_dict().get("model-index")
    if model_index:
        try:
            _, results = model_index_to_eval_results(model_index)
        except (KeyError, TypeError, ValueError) as error:
            return problems + [f"the model-index does not parse: {error!r}"]
        for result in results:
            value, unbounded = result.metric_value, result.metric_type in UNBOUNDED_METRIC_TYPES
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or not 0 <= value <= (math.inf if unbounded else 1):
                problems.append(f"model-index metric {result.metric_name!r} is {value!r}, not a number in "
                                f"{'[0, inf)' if unbounded else '[0, 1]'}")
    return problems


def check_common(metadata: dict[str, Any]) -> list[str]:
    problems = []
    licenses = metadata.get("license")
    for license_id in licenses if isinstance(licenses, list) else [licenses]:
        if license_id not in HUB_LICENSES:
            problems.append(f"license {license_id!r} is not a Hub license id (e.g. apache-2.0, mit, cc-by-4.0, other)")
    for tag in metadata.get("tags") or []:
        if not isinstance(tag, str) or not tag or any(c.isspace() for c in tag):
            problems.append(f"tag {tag!r} is not a single word (use hyphens)")
    return problems


def check_repo_id(repo_id: Any, key: str) -> list[str]:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except (HFValidationError, TypeError) as error:
        return [f"{key} {repo_id!r} is not a Hub repo id: {error}"]
    if "/" not in str(repo_id):
        return [f"{key} {repo_id!r} is not a Hub repo id: expected ORG/NAME"]
    return []
