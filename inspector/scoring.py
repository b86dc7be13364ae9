"""Likelihood of candidate answers: how VisDial-style evaluation ranks 100 candidates per question.

For a prompt (image views + the conversation up to the question) and candidate answers,
the score of a candidate is the log-probability the model gives its tokens, and the
`<|im_end|>` that closes the answer (so "yes" is not credited for being the start of
"yes, two of them"): summed (`CandidateScores.sums`) or per token (`.means`).

Cost. A candidate is a few tokens after a prompt of hundreds (most of them visual),
so the prompt is run once and its key/value cache is shared by every candidate: one
prefill per prompt, then the candidates in chunks of `chunk_size`, each chunk one
forward over the candidates' tokens only (`method="cached"`). The vision tower runs
once per image, not once per adapter row or per question about it. `method="full"` runs
prompt + candidate for every candidate, the direct computation the tests compare with.

Base and adapter together: with `adapter_names=["__base__", "adapter"]` (PEFT mixed
adapter batches, as `Inspector.generate`), the prefill has one row per adapter and
every chunk forward scores the chunk's candidates under all of them at once.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from inspector.prompts import END_OF_TURN
from inspector.tasks.base import build_task_inputs, render_chat
from inspector.vision import image_features


@dataclass(frozen=True)
class ScoringRequest:
    """One prompt and its candidates: views of the image, chat messages that end with the
    user's question (see `inspector.tasks.base.build_dialogue_messages`), candidate answers."""

    views: list[Image.Image]
    messages: list[dict[str, Any]]
    candidates: list[str]


@dataclass
class CandidateScores:
    """Scores of one request's candidates: row a of `sums` is adapter `adapter_names[a]`."""

    sums: np.ndarray  # (adapters, candidates): summed log-probability of each candidate's tokens
    lengths: np.ndarray  # (candidates,): tokens scored per candidate (its text and <|im_end|>)
    adapter_names: list[str] = field(default_factory=list)

    @property
    def means(self) -> np.ndarray:
        return self.sums / self.lengths[None, :]

    def scores(self, reduction: str = "sum") -> np.ndarray:
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        return self.sums if reduction == "sum" else self.means

    def for_adapter(self, name: str, reduction: str = "sum") -> list[float]:
        """The candidates' scores under one adapter, as floats (JSON-safe)."""
        return self.scores(reduction)[self.adapter_names.index(name)].tolist()


def score_candidates(model, processor, requests: Sequence[ScoringRequest], *,
                     adapter_names: Sequence[str] | None = None, chunk_size: int = 32,
                     include_end: bool = True, method: str = "cached") -> list[CandidateScores]:
    """Log-likelihood of every candidate of every request, under each adapter.

    `model`: a Qwen2-VL model, or a PeftModel around one when `adapter_names` is given
    (names of its adapters, "__base__" for the base alone). `chunk_size` candidates
    (times the number of adapters) go through one forward: more is faster and costs
    memory for their logits (chunk x adapters x tokens x vocabulary floats).
    """
    if method not in ("cached", "full"):
        raise ValueError(f"method must be 'cached' or 'full', got {method!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    names = list(adapter_names) if adapter_names else []
    score_one = _score_cached if method == "cached" else _score_full
    vision = _SharedVision(model, processor) if _vision_is_shared(model) else None
    results = []
    with torch.inference_mode():
        for request in requests:
            if not request.candidates:
                raise ValueError("a scoring request needs at least one candidate")
            candidate_ids = _candidate_ids(processor, request.candidates, include_end)
            sums = score_one(model, processor, request, candidate_ids, names, chunk_size, vision)
            lengths = np.asarray([len(ids) for ids in candidate_ids], dtype=float)
            results.append(CandidateScores(sums, lengths, names or ["__base__"]))
    return results


def _candidate_ids(processor, candidates: Sequence[str], include_end: bool) -> list[list[int]]:
    """Token ids of each candidate as the chat template writes an answer: its text, then <|im_end|>."""
    suffix = END_OF_TURN if include_end else ""
    ids = [processor.tokenizer.encode(f"{candidate}{suffix}", add_special_tokens=False) for candidate in candidates]
    empty = [candidate for candidate, row in zip(candidates, ids) if not row]
    if empty:
        raise ValueError(f"candidate {empty[0]!r} has no tokens to score; pass include_end=True")
    return ids


def _adapter_kwargs(names: list[str], repeats: int) -> dict[str, Any]:
    """adapter_names for rows laid out adapter-major: [a0 x repeats, a1 x repeats, ...]."""
    return {"adapter_names": [name for name in names for _ in range(repeats)]} if names else {}


# --------------------------------------------------------------------------- cached prefix


def _score_cached(model, processor, request: ScoringRequest, candidate_ids: list[list[int]], names: list[str],
                  chunk_size: int, vision: _SharedVision | None) -> np.ndarray:
    rows = max(1, len(names))
    prompt = build_task_inputs(processor, [request.views] * rows, [request.messages] * rows).to(model.device)
    kwargs = _adapter_kwargs(names, 1)
    if prompt.get("pixel_values") is not None and vision:
        kwargs["mm_encoder_outputs"] = {"image": vision.features(request.views, rows)}
        del prompt["pixel_values"]
    output = model(**prompt, use_cache=True, **kwargs)
    first = torch.log_softmax(output.logits[:, -1].float(), dim=-1)  # (rows, vocab): a candidate's first token
    cache = output.past_key_values
    start = _next_positions(model, prompt)  # (rows,): the M-RoPE position after the prompt
    prompt_mask = prompt["attention_mask"]
    sums = np.zeros((rows, len(candidate_ids)))
    for begin in range(0, len(candidate_ids), chunk_size):
        chunk = candidate_ids[begin:begin + chunk_size]
        sums[:, begin:begin + len(chunk)] = _score_chunk(model, processor, chunk, names, first, cache, start,
                                                         prompt_mask)
    return sums


def _score_chunk(model, processor, chunk: list[list[int]], names: list[str], first: torch.Tensor, cache,
                 start: torch.Tensor, prompt_mask: torch.Tensor) -> np.ndarray:
    """Scores of a chunk of candidates under every adapter, one forward over their tokens."""
    rows, count = first.shape[0], len(chunk)
    width = max(len(ids) for ids in chunk)
    pad = processor.tokenizer.pad_token_id or 0
    ids = torch.full((count, width), pad, dtype=torch.long)
    mask = torch.zeros((count, width), dtype=prompt_mask.dtype)
    for row, tokens in enumerate(chunk):
        ids[row, :len(tokens)] = torch.tensor(tokens)
        mask[row, :len(tokens)] = 1
    device = first.device
    ids, mask = ids.repeat(rows, 1).to(device), mask.repeat(rows, 1).to(device)  # adapter-major rows
    chunk_cache = copy.deepcopy(cache)
    chunk_cache.batch_repeat_interleave(count)
    attention = torch.cat([prompt_mask.repeat_interleave(count, dim=0).to(device), mask], dim=1)
    positions = (start.repeat_interleave(count)[:, None] + torch.arange(width, device=device)[None, :])
    positions = positions[None].expand(3, -1, -1)  # text tokens: the same position on all three M-RoPE axes
    output = model(input_ids=ids, attention_mask=attention, position_ids=positions, past_key_values=chunk_cache,
                   use_cache=True, **_adapter_kwargs(names, count))
    following = token_logprobs(output.logits[:, :-1], ids[:, 1:]) * mask[:, 1:]  # tokens 1..width-1
    opening = first[torch.arange(rows, device=device).repeat_interleave(count), ids[:, 0]]
    return (opening + following.sum(dim=1)).view(rows, count).cpu().numpy()


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at each position, in float32, without a second vocabulary-sized tensor."""
    logits = logits.float()
    return logits.gather(-1, targets[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def _next_positions(model, prompt) -> torch.Tensor:
    """The M-RoPE text position that follows each prompt row: 1 + its largest position.

    Qwen2-VL numbers an image's tokens by their grid, so positions after an image are
    not the token count; `get_rope_index` is how the model itself numbers them.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    positions, _ = inner.model.get_rope_index(
        prompt["input_ids"], mm_token_type_ids=prompt.get("mm_token_type_ids"),
        image_grid_thw=prompt.get("image_grid_thw"), attention_mask=prompt["attention_mask"])
    return positions.amax(dim=(0, 2)) + 1


class _SharedVision:
    """Vision-tower features of the latest views (`inspector.vision`), reused for every adapter
    row and for every request that shows the same views object (the ten rounds of one
    VisDial dialogue)."""

    def __init__(self, model, processor) -> None:
        self.model, self.processor = model, processor
        self.views: list[Image.Image] | None = None  # held, so its identity cannot pass to another list
        self.output = None
        self.per_image: tuple = ()

    def features(self, views: list[Image.Image], rows: int):
        if self.views is not views:
            self.output = image_features(self.model, self.processor, [views])
            self.views, self.per_image = views, tuple(self.output.pooler_output)
        shared = copy.copy(self.output)
        shared.pooler_output = self.per_image * rows
        return shared


def _vision_is_shared(model) -> bool:
    """True unless an adapter puts LoRA layers in the vision tower (then each row needs its own pass)."""
    return not any("lora_" in name and "visual" in name for name, _ in model.named_modules())


# --------------------------------------------------------------------------- direct computation


def _score_full(model, processor, request: ScoringRequest, candidate_ids: list[list[int]], names: list[str],
                chunk_size: int, vision: _SharedVision | None = None) -> np.ndarray:
    """Prompt + candidate through the model for every candidate: slow, and obviously right."""
    rows = max(1, len(names))
    prompt_text = render_chat(processor, request.messages)
    tokenizer = processor.tokenizer
    sums = np.zeros((rows, len(candidate_ids)))
    for begin in range(0, len(candidate_ids), chunk_size):
        chunk = candidate_ids[begin:begin + chunk_size]
        texts = [prompt_text + tokenizer.decode(ids) for ids in chunk]
        images = [view for _ in range(rows) for _ in chunk for view in request.views]
        tokenizer.padding_side = "left"
        batch = processor(text=texts * rows, images=images or None, padding=True, return_tensors="pt")
        batch = batch.to(model.device)
        logits = model(**batch, **_adapter_kwargs(names, len(chunk))).logits
        logprobs = token_logprobs(logits[:, :-1], batch["input_ids"][:, 1:])
        for row in range(rows):
            for offset, ids in enumerate(chunk):
                index = row * len(chunk) + offset
                _check_suffix(batch["input_ids"][index], ids)
                sums[row, begin + offset] = float(logprobs[index, -len(ids):].sum())
    return sums


def _check_suffix(row_ids: torch.Tensor, candidate: list[int]) -> None:
    """The prompt + candidate text must end with the candidate's own tokens (left padding keeps the end)."""
    if row_ids[-len(candidate):].tolist() != candidate:
        raise ValueError("the candidate's tokens changed when joined to the prompt (a BPE merge across the "
                         "boundary); use method='cached', which scores the tokens as given")
