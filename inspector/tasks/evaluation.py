"""Predictions and metrics of a task, base and adapter side by side, in shared batches.

Generated answers come from `Inspector.answer` (the app's path: the task's views and
messages, one `generate` per batch for base and adapter together, PEFT mixed adapter
batches); tasks evaluated by ranking (VisDial) score their candidates by likelihood
(`inspector.scoring`), base and adapter in one forward per chunk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


from inspector.images import load_image
from inspector.scoring import ScoringRequest, score_candidates
from inspector.tasks.base import Task, build_dialogue_messages

from inspector.model import BASE_NAME


def rank_candidates(model, processor, task: Task, examples: Sequence[Mapping[str, Any]], *,
                    adapter_names: Sequence[str] | None = None, visual_token_budget: int = 256,
                    chunk_size: int = 32, rounds: str = "all") -> tuple[dict[str, list[list[float]]], list[dict]]:
    """({name: candidate scores per ranked question}, references) of a ranking task."""
    names = list(adapter_names) if adapter_names else [BASE_NAME]
    scores: dict[str, list[list[float]]] = {name: [] for name in names}
    references: list[dict] = []
    reduction = getattr(task, "scoring", "sum")
    for example in examples:
        views = task.views(load_image(example["image"]), visual_token_budget)
        items = task.ranking_items(example, rounds=rounds)
        requests = [ScoringRequest(views, build_dialogue_messages(len(views), item.turns), item.candidates)
                    for item in items]
        results = score_candidates(model, processor, requests, adapter_names=adapter_names, chunk_size=chunk_size)
        for item, result in zip(items, results):
            for row, name in enumerate(names):
                scores[name].append(result.scores(reduction)[row].tolist())
            references.append(item.reference)
    return scores, references


def evaluate_task(inspector, examples: Sequence[Mapping[str, Any]], *, batch_size: int = 4, chunk_size: int = 32,
                  rounds: str = "all") -> dict[str, dict[str, Any]]:
    """{row: {"metrics", "predictions", "texts"}} of an `Inspector`'s task, for each of its rows
    ("__base__", zero-shot, and "adapter"), at its visual-token budget."""
    task = inspector.task
    if task.evaluation == "rank":
        scores, references = rank_candidates(inspector.model, inspector.processor, task, examples,
                                             adapter_names=inspector.rows if inspector.has_adapter else None,
                                             visual_token_budget=inspector.config.visual_token_budget,
                                             chunk_size=chunk_size, rounds=rounds)
        return {name: {"metrics": task.metrics(own, references), "predictions": own, "texts": []}
                for name, own in scores.items()}
    texts: dict[str, list[str]] = {row: [] for row in inspector.rows}
    for start in range(0, len(examples), batch_size):
        batch = list(examples[start:start + batch_size])
        for answers in inspector.answer([load_image(example["image"]) for example in batch], batch,
                                        max_new_tokens=task.max_new_tokens):
            for row, text in answers.items():
                texts[row].append(text)
    references = [task.reference(example) for example in examples]
    results = {}
    for name, own in texts.items():
        predictions = [task.parse(text) for text in own]
        results[name] = {"metrics": task.metrics(predictions, references), "texts": own,
                         "predictions": [_json_safe(prediction) for prediction in predictions]}
    return results


def _json_safe(prediction: Any) -> Any:
    """A Report (the degradation task) as its dict; other predictions are JSON already."""
    return prediction.to_dict() if hasattr(prediction, "to_dict") else prediction
