"""The project's first task, as a Task: what is wrong with a photo (inspector.report).

A thin wrapper: the views are `inspector.images.make_views` (native-resolution crops,
where blur and noise show), the instruction is `inspector.prompts.DEFAULT_INSTRUCTION`,
the answer `inspector.report.format_answer`, the parser `parse_report`, and the
metrics `inspector.metrics.score`. Its data is synthesised from clean photos
(`inspector.tasks.degradation_data`: `inspector.evidence.degrade` with known parameters),
not read from a published layout; train/build_dataset.py writes it as for every task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from inspector.tasks.base import Task
from inspector.tasks.degradation_data import SynthesisOptions
from inspector.taxonomy import DEGRADATION_TYPES


class DegradationTask(Task):
    name = "degradation"
    answer_format = "json-labels"  # the value train/push.py has always written
    max_new_tokens = 48  # the compact JSON needs about 30 tokens
    title = "Photo degradation inspection"
    action = "Inspect"
    compares_with_evidence = True
    required_columns = ("image", "answer")
    primary_metric = "macro_f1"
    # The figures train/push.py requires in eval/results.json and train/publish/cards.py puts on the card.
    headline_metrics = (("macro_f1", "f1", "macro F1"), ("exact_set_accuracy", "exact_match", "exact-set accuracy"),
                        ("severity_accuracy", "accuracy", "severity accuracy"))
    metric_ranges = {"macro_f1": (0.0, 1.0), "exact_set_accuracy": (0.0, 1.0), "severity_accuracy": (0.0, 1.0),
                     "parse_failure_rate": (0.0, 1.0), "count": (0, float("inf"))}
    reader_options = SynthesisOptions
    source_required = False  # the clean photos may come from --sample-photos or --hub-dataset instead

    # -- data

    def read(self, source: str | Path | None, seed: int = 0, **options: Any):
        """Clean photos (the `source` folder, or the options' Hub data set or bundled photos),
        degraded with known parameters: `inspector.tasks.degradation_data`."""
        from inspector.tasks.degradation_data import synthesize

        return synthesize(source, seed, SynthesisOptions.from_mapping(options))

    def data_card(self, dataset, source: str | Path | None, seed: int = 0, **options: Any) -> str:
        from inspector.tasks.degradation_data import dataset_card

        return dataset_card(dataset, source, seed, SynthesisOptions.from_mapping(options))

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

    # -- serving: the typed Report is the answer, in its stable JSON

    def answer_length(self, app_cap: int) -> int:
        """The app's cap: the zero-shot base answers in prose, which runs as long as it is let."""
        return app_cap

    def answer_template(self):
        """`format_answer`'s JSON: four fixed keys, a severity word each (field decoding)."""
        from inspector.fields import AnswerTemplate
        from inspector.report import format_answer
        from inspector.taxonomy import SEVERITIES

        return AnswerTemplate(DEGRADATION_TYPES, SEVERITIES, format_answer)

    def unavailable(self, notice: str):
        from inspector.report import Report

        return Report.unavailable(notice)

    def answer_json(self, prediction: Any, raw_text: str = "", notice: str = "") -> dict[str, Any]:
        """`Report.to_dict()`: the report carries its raw text and notice itself."""
        return prediction.to_dict()

    def answer_markdown(self, answer: Mapping[str, Any]) -> str:
        from inspector.report import Report

        return Report.from_dict(answer).to_markdown()

    # -- evaluation

    def extra_figures(self, predictions: Mapping[str, Sequence[Any]], references: Sequence[Any]) -> dict[str, Any]:
        """The confusion matrices over severity words, and what constant answers would score."""
        from inspector.metrics import confusion, constant_baselines
        from inspector.taxonomy import SEVERITIES

        return {"confusion": {name: {"labels": list(SEVERITIES),
                                     "matrices": confusion(references, [report.labels() for report in own])}
                              for name, own in predictions.items()},
                "baselines": constant_baselines(references)}

    def results_markdown(self, results: Mapping[str, Any]) -> str:
        from inspector.taxonomy import TYPE_LABELS

        base, adapter = results["models"]["base"], results["models"]["adapter"]
        lines = [f"Test split of `{results['dataset']}`: {results['n']} images; base `{results['base_model']}` "
                 f"zero-shot vs adapter `{results['adapter']}` ({results['runtime']}).", "",
                 "| metric | base | adapter |", "| --- | --- | --- |"]
        for key, label in (("macro_f1", "macro F1 (presence)"), ("exact_set_accuracy", "exact-set accuracy"),
                           ("severity_accuracy", "severity accuracy"), ("parse_failure_rate", "parse-failure rate")):
            lines.append(f"| {label} | {base[key]:.3f} | {adapter[key]:.3f} |")
        for kind in DEGRADATION_TYPES:
            b, a = base["per_type"][kind], adapter["per_type"][kind]
            lines.append(f"| {TYPE_LABELS[kind]} F1 (P / R), support {a['support']} | {b['f1']:.3f} "
                         f"({b['precision']:.2f} / {b['recall']:.2f}) | {a['f1']:.3f} "
                         f"({a['precision']:.2f} / {a['recall']:.2f}) |")
        lines += ["", f"Reference: answering \"present\" for every type scores macro F1 "
                  f"{results['baselines']['always_present']:.3f} on this split.", ""]
        return "\n".join(lines)
