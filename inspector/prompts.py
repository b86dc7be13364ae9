"""The chat the model sees: one function for training and serving, so they cannot drift.

An inspection shows the model a small global view of the photo and crops at native
resolution (`inspector.images.make_views`), then asks for the compact answer of
`inspector.report.format_answer`: a few dozen tokens instead of a paragraph, because
every generated token costs real time on a CPU.
"""

from __future__ import annotations

from typing import Any

DEFAULT_INSTRUCTION = (
    "Inspect this photo for blur, noise, low resolution and JPEG artifacts. "
    "The first picture is the whole photo, downscaled; the others are crops at native resolution. "
    'Answer with JSON only, giving each severity as none, mild, moderate or severe: '
    '{"blur":...,"noise":...,"low_resolution":...,"jpeg_artifacts":...}'
)


def build_messages(num_images: int, instruction: str = DEFAULT_INSTRUCTION,
                   answer: str | None = None) -> list[dict[str, Any]]:
    """Chat messages for `num_images` pictures and an instruction; with the answer for training."""
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(num_images)]
    content.append({"type": "text", "text": instruction})
    messages = [{"role": "user", "content": content}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def render_prompt(processor, num_images: int, instruction: str = DEFAULT_INSTRUCTION,
                  answer: str | None = None) -> str:
    """The prompt text: up to the assistant turn, or the whole dialogue with the answer."""
    messages = build_messages(num_images, instruction, answer)
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=answer is None)


def build_inputs(processor, views_per_sample: list[list], instruction: str = DEFAULT_INSTRUCTION,
                 answers: list[str] | None = None):
    """Tokenised batch (left-padded) for several samples, each a list of PIL views.

    The views already have sides that are multiples of 28 within the processor's pixel
    range, so the processor does not resample them: the model sees native pixels.
    """
    answers = answers or [None] * len(views_per_sample)
    texts = [render_prompt(processor, len(views), instruction, answer)
             for views, answer in zip(views_per_sample, answers)]
    images = [view for views in views_per_sample for view in views]
    processor.tokenizer.padding_side = "left"
    return processor(text=texts, images=images or None, padding=True, return_tensors="pt")
