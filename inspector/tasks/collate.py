"""Training batches of any task, single-turn or dialogue, with the loss on the answers only.

`TaskCollator` builds the model input of each row with the task's views and messages
and `build_task_inputs` (what serving uses), then keeps as labels the tokens of every
assistant answer and the `<|im_end|>` closing it; everything else (system prompt,
questions, image placeholders, padding) is -100. For a single-turn row that is its one
answer; for a VisDial dialogue, all ten answers count, each given the true history
before it (teacher forcing over the rounds). The one collator of the project: the
tiny stand-in's pre-training masks its captions with `dialogue_labels` too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from inspector.images import load_image
from inspector.prompts import ASSISTANT_HEADER, END_OF_TURN
from inspector.tasks.base import Task, build_task_inputs

IGNORE_INDEX = -100


@dataclass
class TaskCollator:
    """Rows of a task's data set -> a batch with masked `labels`.

    `visual_token_budget` must be the one the adapter is served with: the views, and so
    the input, depend on it.
    """

    processor: Any
    task: Task
    visual_token_budget: int = 256

    def __post_init__(self) -> None:
        tokenizer = self.processor.tokenizer
        self.header_ids = tokenizer.encode(ASSISTANT_HEADER, add_special_tokens=False)
        self.end_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
        if self.end_id is None or self.end_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {END_OF_TURN} token: is this a Qwen2-VL processor?")

    def __call__(self, rows: Sequence[Mapping[str, Any]]):
        views = [self.task.views(load_image(row["image"]), self.visual_token_budget) for row in rows]
        messages = [self.task.messages(row, len(row_views)) for row, row_views in zip(rows, views)]
        batch = build_task_inputs(self.processor, views, messages)
        batch["labels"] = dialogue_labels(batch["input_ids"], batch["attention_mask"], self.header_ids, self.end_id)
        return batch


def dialogue_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor, header_ids: list[int],
                    end_id: int) -> torch.Tensor:
    """Labels that keep every assistant answer, from after its header to its `<|im_end|>` included.

    Raises ValueError on a row without an answer, or an answer cut before its
    `<|im_end|>`: training on them would silently teach nothing, or not to stop.
    """
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    width = len(header_ids)
    header = torch.tensor(header_ids, dtype=input_ids.dtype, device=input_ids.device)
    for row, (ids, mask) in enumerate(zip(input_ids, attention_mask)):
        if len(ids) < width:
            raise ValueError("a training row is shorter than the assistant header: no answer to learn")
        windows = ids.unfold(0, width, 1)
        starts = ((windows == header).all(dim=1) & mask[:len(windows)].bool()).nonzero().flatten().tolist()
        if not starts:
            raise ValueError("a training row has no assistant turn: were the messages built with answers?")
        for start in starts:
            begin = start + width
            ends = (ids[begin:] == end_id).nonzero()
            if len(ends) == 0:
                raise ValueError("a training row's answer has no <|im_end|>: the sequence was truncated")
            stop = begin + int(ends[0]) + 1
            labels[row, begin:stop] = ids[begin:stop]
    return labels
