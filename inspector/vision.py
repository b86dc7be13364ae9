"""The vision tower's output for a batch whose rows share images: each image encoded once.

A LoRA adapter on the language model does not change the vision tower, so the base and
adapter rows of one image (and the rounds of one dialogue) need one pass, not one per
row: a third of the 2B model's prefill. `generate` and the likelihood scoring both pass
the result as `mm_encoder_outputs`.
"""

from __future__ import annotations


def image_features(model, processor, views_per_sample: list[list]):
    """Vision-tower features laid out per row; rows holding the same views list (by identity)
    share one encoding. `model`: a Qwen2-VL model or a PeftModel around one."""
    distinct = list({id(views): views for views in views_per_sample}.values())
    images = [view for views in distinct for view in views]
    encoded = processor.image_processor(images=images, return_tensors="pt").to(model.device)
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    features = inner.model.get_image_features(encoded["pixel_values"], encoded["image_grid_thw"], return_dict=True)
    per_image = list(features.pooler_output)
    starts, start = {}, 0
    for views in distinct:
        starts[id(views)], start = start, start + len(views)
    features.pooler_output = tuple(per_image[starts[id(views)] + index]
                                   for views in views_per_sample for index in range(len(views)))
    return features
