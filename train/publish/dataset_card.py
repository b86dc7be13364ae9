"""The card of a published data set version (train/push.py --dataset)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

from .cards import (DATASET_COLUMNS, DATASET_TAGS, SIZE_CATEGORIES, TASK, answer_section, check_common,
                    degradation, is_degradation)


@dataclass
class DatasetCardFacts:
    """What the card of one published data set version says."""

    repo_id: str
    tag: str
    license: str
    splits: dict[str, int]  # split -> rows
    columns: dict[str, str]  # column -> feature type, as text
    pretty_name: str | None = None  # None: from the task
    task: Any = None  # the inspector.tasks.Task whose build it is; None: degradation

    def __post_init__(self) -> None:
        self.task = self.task or degradation()
        if self.pretty_name is None:
            self.pretty_name = ("Degradation Inspector: synthetic photo degradations" if is_degradation(self.task)
                                else f"Degradation Inspector: {self.task.title.lower()} data")


def size_category(rows: int) -> str:
    for category, limit in zip(SIZE_CATEGORIES, (1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9)):
        if rows < limit:
            return category
    return "n>1T"


def build_dataset_card(facts: DatasetCardFacts) -> DatasetCard:
    """The data set card; `datasets.push_to_hub` adds its dataset_info and configs to the metadata."""
    degradation = is_degradation(facts.task)
    data = DatasetCardData(
        license=facts.license, language=["en"], task_categories=[TASK],
        tags=DATASET_TAGS if degradation else ["degradation-inspector", facts.task.name],
        size_categories=[size_category(sum(facts.splits.values()))], pretty_name=facts.pretty_name,
        annotations_creators=["machine-generated"],
    )
    splits = [f"| {split} | {rows:,} |" for split, rows in facts.splits.items()]
    known_columns = DATASET_COLUMNS if degradation else {}
    columns = [f"| `{name}` | {kind} | {known_columns.get(name, '')} |" for name, kind in facts.columns.items()]
    what = ("Photos with synthetic degradations (blur, noise, low resolution, JPEG artifacts) at known strengths, "
            "and the answer the Degradation Inspector adapter learns to give for each." if degradation else
            f"The {facts.task.title.lower()} data a Degradation Inspector adapter (task `{facts.task.name}`) "
            "was fine-tuned and evaluated on, read from its published layout.")
    made = ("`python train/build_dataset.py` of the Degradation Inspector project degrades clean photos with "
            "parameters drawn inside each band; the seed of every sample reproduces it." if degradation else
            f"`python train/build_dataset.py --config train/recipes/{facts.task.name}.yaml` of the Degradation "
            "Inspector project read the source and split it by seed.")
    body = "\n".join([
        f"# {facts.pretty_name}", "",
        f"{what} This is version `{facts.tag}`.", "",
        "## Load it", "",
        "```python", "from datasets import load_dataset", "",
        f'dataset = load_dataset("{facts.repo_id}", revision="{facts.tag}")', "```", "",
        "```bash", f"hf download {facts.repo_id} --repo-type dataset --revision {facts.tag}", "```", "",
        "## Splits", "", "| split | rows |", "| --- | ---: |", *splits, "",
        "## Columns", "", "| column | type | what |", "| --- | --- | --- |", *columns, "",
        answer_section().replace("## Answer", "## Labels", 1) if degradation else "",
        "## How it was made", "", made, "",
    ])
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}")


def check_dataset_card(card: DatasetCard) -> list[str]:
    """Problems with a data set card's metadata, found offline by parsing it back."""
    try:
        data = DatasetCard(str(card)).data
    except ValueError as error:
        return [f"the data set card metadata does not parse: {error}"]
    problems = check_common(data.to_dict())
    if TASK not in (data.task_categories or []):
        problems.append(f"task_categories lacks {TASK!r}")
    for category in data.size_categories or []:
        if category not in SIZE_CATEGORIES + ("n>1T",):
            problems.append(f"size_categories has {category!r}, not one of the Hub's categories")
    return problems
