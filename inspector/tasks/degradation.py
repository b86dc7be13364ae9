"""The project's first task, as a Task: what is wrong with a photo (inspector.report).

A thin wrapper: the views are `inspector.images.make_views` (native-resolution crops,
where blur and noise show), the instruction is `inspector.prompts.DEFAULT_INSTRUCTION`,
the answer `inspector.report.format_answer`, the parser `parse_report`, and the
metrics `inspector.metrics.score`. The data set is synthesised from clean photos by
train/build_dataset.py (`inspector.evidence.degrade`), not read from a published layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from inspector.tasks.base import Task
from inspector.taxonomy import DEGRADATION_TYPES


class DegradationTask(Task):
    name = "degradation"
    answer_format = "json-labels"  # the value train/push.py has always written
    max_new_tokens = 48  # the compact JSON needs about 30 tokens
    title = "Photo degradation inspection"
    primary_metric = "macro_f1"
    # The figures train/push.py requires in eval/results.json and train/publish/cards.py puts on the card.
    headline_metrics = (("macro_f1", "f1", "macro F1"), ("exact_set_accuracy", "exact_match", "exact-set accuracy"),
                        ("severity_accuracy", "accuracy", "severity accuracy"))
    metric_ranges = {"macro_f1": (0.0, 1.0), "exact_set_accuracy": (0.0, 1.0), "severity_accuracy": (0.0, 1.0),
                     "parse_failure_rate": (0.0, 1.0), "count": (0, float("inf"))}

    # -- data

    def read(self, source: str | Path, seed: int = 0, **options: Any):
        raise NotImplementedError(
            "the degradation data set is synthesised from clean photos, not read from a published layout: "
            "run train/build_dataset.py with the degradation recipe")

    # -- model input and target

    def views(self, image: Image.Image, visual_token_budget: int = 256) -> list[Image.Image]:
        from inspector.images import make_views

        return make_views(image, visual_token_budget)

    def instruction(self, example: Mapping[str, Any]) -> str:
        from inspector.prompts import DEFAULT_INSTRUCTION

        return DEFAULT_INSTRUCTION

    def answer(self, example: Mapping[str, Any]) -> str:
        """The row's compact answer: its `answer` column, else `format_answer` of its labels."""
        if example.get("answer"):
            return str(example["answer"])
        from inspector.report import format_answer

        return format_answer(self.reference(example))

    # -- output

    def parse(self, text: Any):
        """A `Report` (never raises); `Report.to_dict()` is its JSON form."""
        from inspector.report import parse_report

        return parse_report(text)

    def reference(self, example: Mapping[str, Any]) -> dict[str, str]:
        """type -> severity of the row: its `labels` mapping, per-type columns, or its `answer` JSON."""
        if isinstance(example.get("labels"), Mapping):
            return {kind: str(example["labels"].get(kind, "none")) for kind in DEGRADATION_TYPES}
        if all(kind in example for kind in DEGRADATION_TYPES):
            return {kind: str(example[kind]) for kind in DEGRADATION_TYPES}
        from inspector.report import parse_report

        return parse_report(str(example.get("answer", ""))).labels()

    def metrics(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, Any]:
        """`inspector.metrics.score` of the reports (Reports or their dicts) against the labels:
        macro_f1, exact_set_accuracy, severity_accuracy, parse_failure_rate, per_type."""
        from inspector.metrics import score
        from inspector.report import Report, parse_report

        reports = [prediction if isinstance(prediction, Report) else
                   Report.from_dict(prediction) if isinstance(prediction, Mapping) else parse_report(prediction)
                   for prediction in predictions]
        metrics = score(list(references), [report.labels() for report in reports],
                        parsed=[report.parsed for report in reports])
        return {"count": len(references), **metrics}

    def render(self, prediction: Any, raw_text: str = "") -> str:
        from inspector.report import parse_report

        report = prediction if hasattr(prediction, "to_markdown") else parse_report(raw_text)
        return report.to_markdown()
