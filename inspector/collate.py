"""The one collator: training batches built by the function that builds serving inputs.

`DegradationCollator` turns data set rows (an image and its compact answer) into a
model batch with `inspector.prompts.build_inputs`, the function `Inspector.generate`
calls, after `inspector.images.make_views`, the views `Inspector.inspect` shows. So
the fine-tuned adapter sees at training time exactly the pixels and tokens it will see
when served.

The loss is on the assistant's answer only: every label is -100 except the answer's
tokens and the `<|im_end|>` that closes it (so the model learns to stop). The prompt,
the image placeholders, the newline after `<|im_end|>` and the padding never count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from inspector.images import load_image, make_views
from inspector.prompts import DEFAULT_INSTRUCTION, build_inputs

IGNORE_INDEX = -100  # what torch's cross-entropy (and transformers' loss) skip
ASSISTANT_HEADER = "<|im_start|>assistant\n"  # Qwen2-VL's chat template opens the answer with it
END_OF_TURN = "<|im_end|>"


@dataclass
class DegradationCollator:
    """Rows with `image` (PIL, path or bytes) and `answer` -> a batch with masked `labels`.

    `visual_token_budget` must be the one the adapter is served with
    (`InspectorConfig.visual_token_budget`): the views, and so the input, depend on it.
    """

    processor: Any
    visual_token_budget: int = 256
    instruction: str = DEFAULT_INSTRUCTION

    def __post_init__(self) -> None:
        tokenizer = self.processor.tokenizer
        self.header_ids = tokenizer.encode(ASSISTANT_HEADER, add_special_tokens=False)
        self.end_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
        if self.end_id is None or self.end_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {END_OF_TURN} token: is this a Qwen2-VL processor?")

    def __call__(self, rows: Sequence[Mapping[str, Any]]):
        views = [make_views(load_image(row["image"]), self.visual_token_budget) for row in rows]
        answers = [str(row["answer"]) for row in rows]
        batch = build_inputs(self.processor, views, self.instruction, answers=answers)
        batch["labels"] = answer_labels(batch["input_ids"], batch["attention_mask"], self.header_ids, self.end_id)
        return batch


def answer_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor, header_ids: list[int],
                  end_id: int) -> torch.Tensor:
    """Labels that keep only the tokens after the last assistant header, up to its `<|im_end|>`.

    Raises ValueError on a row without an assistant answer: training on a row whose
    labels are all -100 would silently teach nothing.
    """
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    width = len(header_ids)
    header = torch.tensor(header_ids, dtype=input_ids.dtype)
    for row, (ids, mask) in enumerate(zip(input_ids, attention_mask)):
        start = _last_match(ids, header, mask)
        if start is None:
            raise ValueError("a training row has no assistant turn: was build_inputs called without answers?")
        begin = start + width
        ends = (ids[begin:] == end_id).nonzero()
        if len(ends) == 0:
            raise ValueError("a training row's answer has no <|im_end|>: the sequence was truncated")
        stop = begin + int(ends[0]) + 1  # include <|im_end|>: the model must learn to stop
        labels[row, begin:stop] = ids[begin:stop]
    return labels


def _last_match(ids: torch.Tensor, pattern: torch.Tensor, mask: torch.Tensor) -> int | None:
    """Index of the last occurrence of `pattern` among the attended tokens of `ids`."""
    width = len(pattern)
    if len(ids) < width:
        return None
    windows = ids.unfold(0, width, 1)  # (positions, width), a view: no copy
    hits = ((windows == pattern).all(dim=1) & mask[:len(windows)].bool()).nonzero()
    return int(hits[-1]) if len(hits) else None
