"""Predictions and metrics of a task, base and adapter side by side, in shared batches.

What train/evaluate.py and the app need beyond `Inspector.generate` (which knows one
instruction, the degradation task's): each example's own prompt (its question, its
dialogue) from the task, one `generate` per batch for base and adapter together
(PEFT mixed adapter batches), and, for tasks evaluated by ranking (VisDial),
likelihood scores of the candidates (`inspector.scoring`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from inspector.generation import GREEDY_DECODING
from inspector.images import load_image
from inspector.scoring import ScoringRequest, score_candidates
from inspector.tasks.base import Task, build_dialogue_messages, build_task_inputs

from inspector.model import BASE_NAME


def generate_answers(model, processor, task: Task, examples: Sequence[Mapping[str, Any]], *,
                     adapter_names: Sequence[str] | None = None, visual_token_budget: int = 256,
                     batch_size: int = 4, max_new_tokens: int | None = None) -> dict[str, list[str]]:
    """The generated text of every example under each adapter: {name: [text per example]}.

    A batch of `batch_size` examples is one greedy `generate` with one row per example
    and adapter. `adapter_names` None: the model as it is (a base model alone).
    """
    names = list(adapter_names) if adapter_names else [BASE_NAME]
    texts: dict[str, list[str]] = {name: [] for name in names}
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        views = [task.views(load_image(example["image"]), visual_token_budget) for example in batch]
        messages = [task.messages(example, len(own), with_answer=False) for example, own in zip(batch, views)]
        inputs = build_task_inputs(processor, [v for v in views for _ in names], [m for m in messages for _ in names])
        inputs = inputs.to(model.device)
        kwargs = {"adapter_names": names * len(batch)} if adapter_names else {}
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens or task.max_new_tokens, **GREEDY_DECODING,
                                    **kwargs)
        decoded = processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        for row, text in enumerate(decoded):
            texts[names[row % len(names)]].append(text)
    return texts


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


def evaluate_task(model, processor, task: Task, examples: Sequence[Mapping[str, Any]], *,
                  adapter_names: Sequence[str] | None = None, visual_token_budget: int = 256, batch_size: int = 4,
                  chunk_size: int = 32, rounds: str = "all") -> dict[str, dict[str, Any]]:
    """{name: {"metrics", "predictions", "texts"}} for each adapter, e.g. "__base__" (zero-shot) and "adapter"."""
    if task.evaluation == "rank":
        scores, references = rank_candidates(model, processor, task, examples, adapter_names=adapter_names,
                                             visual_token_budget=visual_token_budget, chunk_size=chunk_size,
                                             rounds=rounds)
        return {name: {"metrics": task.metrics(own, references), "predictions": own, "texts": []}
                for name, own in scores.items()}
    texts = generate_answers(model, processor, task, examples, adapter_names=adapter_names,
                             visual_token_budget=visual_token_budget, batch_size=batch_size)
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
