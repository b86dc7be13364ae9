"""Field decoding: an answer whose layout is fixed, with only its values left to the model.

The degradation answer is JSON with four fixed keys, `{"blur":"none","noise":"mild",...}`:
of its twenty-odd tokens, four are the model's to choose (one severity word per type) and
the rest are known before the model runs. Free greedy decoding pays one forward pass of
the language model per token, and on a CPU each pass of the 2B model costs a tenth to a
fifth of a second. Field decoding feeds each fixed stretch of the template in one pass and
reads the model's choice at its end: the prompt's prefill, then one pass per field. This is
the "jump-forward" of constrained decoders (SGLang's compressed finite-state machines), done
with transformers' own `generate`: every call continues from the previous call's KV cache.

What the model chooses. At each value the next token is the model's greedy pick among the
legal values (transformers' `prefix_allowed_tokens_fn`). A model that follows the format,
as the adapter is trained to, writes the same answer as under free greedy decoding; one that
would leave it (the zero-shot base, which may answer in prose) is held to the format, and its
answer is what it prefers among the legal values, the way Q-Bench and Q-Align read a base
model's choice. `InspectorConfig.decoding = "free"` (INSPECTOR_DECODING=free) keeps plain
`generate` and the model's own words.

The plan needs each value to be one token of its own in the template's tokenisation (true of
Qwen2's tokenizer and of the tiny stand-in's: its pre-tokenizer splits the words from the JSON
punctuation); where it is not, `plan_fields` returns None and the free path serves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from inspector.generation import GREEDY_DECODING

log = logging.getLogger(__name__)

DECODINGS = ("fields", "free")


@dataclass(frozen=True)
class AnswerTemplate:
    """A task's answer layout: named fields, each one of `choices`, written by `render`."""

    fields: tuple[str, ...]
    choices: tuple[str, ...]
    render: Callable[[Mapping[str, str]], str]


@dataclass(frozen=True)
class FieldPlan:
    """The template in one tokenizer's tokens: the fixed tokens before each field, each choice's token."""

    template: AnswerTemplate
    segments: tuple[tuple[int, ...], ...]  # segments[k]: the tokens between field k-1's value and field k's
    choice_ids: tuple[int, ...]  # the token of template.choices[i]

    def render(self, tokens: Sequence[int]) -> str:
        """The answer text of one row's chosen tokens (one per field)."""
        words = {token: choice for token, choice in zip(self.choice_ids, self.template.choices)}
        return self.template.render({field: words[int(token)] for field, token in zip(self.template.fields, tokens)})


def plan_fields(tokenizer, template: AnswerTemplate) -> FieldPlan | None:
    """Where each field's value sits in the tokens of the rendered answer; None where a value is not
    one token of its own at the same place whatever the other values are."""

    def tokens(values: Mapping[str, str]) -> list[int]:
        return tokenizer(template.render(values), add_special_tokens=False)["input_ids"]

    first = {field: template.choices[0] for field in template.fields}
    reference = tokens(first)
    positions: list[int] = []
    choice_ids: dict[str, int] = {}
    for field in template.fields:
        position = None
        for choice in template.choices[1:]:
            other = tokens({**first, field: choice})
            changed = [index for index, (a, b) in enumerate(zip(reference, other)) if a != b]
            if len(other) != len(reference) or len(changed) != 1 or position not in (None, changed[0]):
                log.info("field decoding off: %r as %r is not one token in place of %r", field, choice,
                         template.choices[0])
                return None
            position = changed[0]
            if choice_ids.setdefault(choice, other[position]) != other[position]:
                return None
        if position is None or choice_ids.setdefault(template.choices[0], reference[position]) != reference[position]:
            return None
        positions.append(position)
    if positions != sorted(set(positions)) or len(set(choice_ids.values())) != len(template.choices):
        return None
    starts = [0] + [position + 1 for position in positions[:-1]]
    segments = tuple(tuple(reference[start:position]) for start, position in zip(starts, positions))
    return FieldPlan(template, segments, tuple(choice_ids[choice] for choice in template.choices))


def generate_fields(model, plan: FieldPlan, inputs, **kwargs) -> list[str]:
    """Each row's answer text, by field decoding (`decode_fields`)."""
    chosen, _ = decode_fields(model, plan, inputs, **kwargs)
    return [plan.render(tokens) for tokens in chosen.tolist()]


def decode_fields(model, plan: FieldPlan, inputs, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows x fields chosen tokens, rows x fields x choices probabilities among the choices).

    `inputs` is the processor's left-padded batch that ends with the assistant header; `kwargs`
    go to the first `generate` (the image features, the adapter names) and, but for the image
    features, to every later one, which continues the cache of the one before."""
    allowed = list(plan.choice_ids)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    rows, device = ids.shape[0], ids.device
    first = {key: value for key, value in inputs.items() if key not in ("input_ids", "attention_mask")}
    later = {key: value for key, value in kwargs.items() if key != "mm_encoder_outputs"}
    cache, picked, probabilities = None, [], []
    for index, segment in enumerate(plan.segments):
        tail = torch.tensor(segment, dtype=ids.dtype, device=device).expand(rows, -1)
        if picked:
            tail = torch.cat([picked[-1][:, None], tail], dim=1)
        ids = torch.cat([ids, tail], dim=1)
        mask = torch.cat([mask, torch.ones_like(tail, dtype=mask.dtype)], dim=1)
        extra = {**first, **kwargs} if index == 0 else dict(later)
        if index == 0 and "mm_token_type_ids" in extra:  # the template's tokens are text
            extra["mm_token_type_ids"] = torch.cat([extra["mm_token_type_ids"], torch.zeros_like(tail)], dim=1)
        if cache is not None:
            extra["cache"] = cache
        output = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=1,
                                prefix_allowed_tokens_fn=lambda batch, sequence: allowed,
                                return_dict_in_generate=True, output_logits=True, **GREEDY_DECODING, **extra)
        cache = output.cache
        picked.append(output.sequences[:, -1])
        probabilities.append(torch.softmax(output.logits[0][:, allowed].float(), dim=-1))
    return torch.stack(picked, dim=1), torch.stack(probabilities, dim=1)
