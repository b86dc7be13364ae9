"""The chat the model sees: one function for training and serving, so they cannot drift.

An inspection shows the model a small global view of the photo and crops at native
resolution (`inspector.images.make_views`), then asks for the compact answer of
`inspector.report.format_answer`: a few dozen tokens instead of a paragraph, because
every generated token costs real time on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

# Qwen2-VL's chat template opens every answer with ASSISTANT_HEADER and closes every turn
# with END_OF_TURN: what the loss masks (inspector.tasks.collate) and the scorer (inspector.scoring) look for.
ASSISTANT_HEADER = "<|im_start|>assistant\n"
END_OF_TURN = "<|im_end|>"

DEFAULT_INSTRUCTION = (
    "Inspect this photo for blur, noise, low resolution and JPEG artifacts. "
    "The first picture is the whole photo, downscaled; the others are crops at native resolution. "
    'Answer with JSON only, giving each severity as none, mild, moderate or severe: '
    '{"blur":...,"noise":...,"low_resolution":...,"jpeg_artifacts":...}'
)


def build_dialogue_messages(num_images: int, turns: Sequence[tuple[str, str | None]]) -> list[dict[str, Any]]:
    """Chat messages of a dialogue; `build_messages` of inspector.prompts for one round.

    The images come first in the first user turn, as in `build_messages`. Every answer
    but the last must be given; a last answer of None leaves the dialogue open for the
    model (generation, or scoring candidate answers).
    """
    if not turns:
        raise ValueError("a conversation needs at least one (question, answer) turn")
    messages: list[dict[str, Any]] = []
    for index, (question, answer) in enumerate(turns):
        content: list[dict[str, Any]] = [{"type": "image"} for _ in range(num_images)] if index == 0 else []
        content.append({"type": "text", "text": question})
        messages.append({"role": "user", "content": content})
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        elif index != len(turns) - 1:
            raise ValueError(f"turn {index + 1} of {len(turns)} has no answer; only the last may be open")
    return messages


def render_chat(processor, messages: list[dict[str, Any]]) -> str:
    """The chat template's text; a generation prompt is added when the last message is the user's."""
    return processor.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=messages[-1]["role"] == "user")


def build_task_inputs(processor, views_per_sample: Sequence[Sequence[Image.Image]],
                      messages_per_sample: Sequence[list[dict[str, Any]]]):
    """Tokenised, left-padded batch of several conversations: `build_inputs` with per-sample messages."""
    if len(views_per_sample) != len(messages_per_sample):
        raise ValueError(f"{len(views_per_sample)} samples of views but {len(messages_per_sample)} conversations")
    texts = [render_chat(processor, messages) for messages in messages_per_sample]
    images = [view for views in views_per_sample for view in views]
    processor.tokenizer.padding_side = "left"
    return processor(text=texts, images=images or None, padding=True, return_tensors="pt")


def build_messages(num_images: int, instruction: str = DEFAULT_INSTRUCTION,
                   answer: str | None = None) -> list[dict[str, Any]]:
    """Chat messages for `num_images` pictures and an instruction; with the answer for training."""
    return build_dialogue_messages(num_images, [(instruction, answer)])


def build_inputs(processor, views_per_sample: list[list], instruction: str = DEFAULT_INSTRUCTION,
                 answers: list[str] | None = None):
    """Tokenised batch (left-padded) for several samples, each a list of PIL views.

    The views already have sides that are multiples of 28 within the processor's pixel
    range, so the processor does not resample them: the model sees native pixels.
    """
    answers = answers or [None] * len(views_per_sample)
    messages = [build_messages(len(views), instruction, answer) for views, answer in zip(views_per_sample, answers)]
    return build_task_inputs(processor, views_per_sample, messages)
