"""Field decoding (inspector.fields): the answer's fixed layout fed, its values chosen by the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from inspector.fields import AnswerTemplate, decode_fields, generate_fields, plan_fields
from inspector.generation import GREEDY_DECODING
from inspector.model import ADAPTER_NAME, BASE_NAME, InspectorConfig
from inspector.prompts import build_messages, build_task_inputs, render_chat
from inspector.report import format_answer, parse_report
from inspector.taxonomy import DEGRADATION_TYPES, SEVERITIES


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (200, 260, 3), dtype=np.uint8)),
            Image.new("RGB", (300, 200), (90, 120, 200))]


def test_the_degradation_answer_plans_as_its_fixed_keys_and_one_token_per_severity(tiny_inspector):
    plan = tiny_inspector.field_plan()
    tokenizer = tiny_inspector.processor.tokenizer
    assert [tokenizer.decode(segment) for segment in plan.segments] == [
        '{"blur":"', '","noise":"', '","low_resolution":"', '","jpeg_artifacts":"']
    assert [tokenizer.decode([token]) for token in plan.choice_ids] == list(SEVERITIES)
    # the plan's pieces, put together, are the tokens of the answer the adapter is trained on
    labels = {"blur": "mild", "noise": "none", "low_resolution": "severe", "jpeg_artifacts": "moderate"}
    tokens = [token for segment, kind in zip(plan.segments, DEGRADATION_TYPES)
              for token in (*segment, plan.choice_ids[SEVERITIES.index(labels[kind])])]
    answer = format_answer(labels)
    assert tokens == tokenizer(answer[:-2], add_special_tokens=False)["input_ids"]
    # and so they are in the chat that training tokenizes as a whole (inspector.tasks.collate)
    processor = tiny_inspector.processor
    prompt = render_chat(processor, build_messages(2))
    chat = tokenizer(render_chat(processor, build_messages(2, answer=answer)), add_special_tokens=False)["input_ids"]
    start = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert chat[start:start + len(tokens)] == tokens
    assert plan.render([plan.choice_ids[SEVERITIES.index(labels[kind])] for kind in DEGRADATION_TYPES]) == answer


def test_a_layout_whose_values_are_not_single_tokens_is_left_to_free_decoding(tiny_inspector):
    tokenizer = tiny_inspector.processor.tokenizer
    spelled = AnswerTemplate(("blur",), ("none", "quite noticeably soft"), lambda values: json.dumps(values))
    assert plan_fields(tokenizer, spelled) is None


def test_field_decoding_is_token_by_token_greedy_held_to_the_layout(tiny_inspector, pictures):
    """The jump-forward (one pass per field, each continuing the last call's cache) must see what
    plain greedy decoding sees when every token is held to the layout, for base and adapter rows:
    the same choices and the same probabilities of every choice (which depend on every position)."""
    inspector = tiny_inspector
    plan = inspector.field_plan()
    views = [inspector.task.views(picture, inspector.config.visual_token_budget) for picture in pictures]
    rows = [own for own in views for _ in inspector.rows]
    names = inspector.rows * len(views)
    messages = [inspector.task.messages(inspector.task.request(), len(own), with_answer=False) for own in rows]
    inputs = build_task_inputs(inspector.processor, rows, messages)
    with torch.inference_mode():
        chosen, probabilities = decode_fields(inspector.model, plan, inputs, adapter_names=names)
    assert inspector.generate(rows, names, messages, decoding="fields") == [
        plan.render(tokens) for tokens in chosen.tolist()]

    prompt = inputs["input_ids"].shape[1]
    layout = [token for segment in plan.segments for token in (*segment, None)]  # None: a value

    def allowed(batch, sequence):
        token = layout[len(sequence) - prompt]
        return list(plan.choice_ids) if token is None else [token]

    with torch.inference_mode():
        held = inspector.model.generate(**inputs, max_new_tokens=len(layout), prefix_allowed_tokens_fn=allowed,
                                        adapter_names=names, return_dict_in_generate=True, output_logits=True,
                                        **GREEDY_DECODING)
    values = [index for index, token in enumerate(layout) if token is None]
    assert held.sequences[:, prompt:][:, values].tolist() == chosen.tolist()
    expected = torch.stack([torch.softmax(held.logits[index][:, list(plan.choice_ids)].float(), dim=-1)
                            for index in values], dim=1)
    assert torch.allclose(probabilities, expected, atol=1e-4), (probabilities - expected).abs().max()
    assert {BASE_NAME, ADAPTER_NAME} == set(names)


def test_the_app_path_field_decodes_and_free_decoding_stays_on_request(tiny_inspector, pictures):
    inspector = tiny_inspector
    fields = inspector.answer(pictures)
    assert all(parse_report(text).parsed for answers in fields for text in answers.values())
    free = inspector.generate([inspector.task.views(pictures[0], inspector.config.visual_token_budget)],
                              [ADAPTER_NAME], decoding="free", max_new_tokens=5)
    # the tiny test adapter is random: free, it does not write the layout, so the two paths differ
    assert free[0] != fields[0][ADAPTER_NAME]


def test_generate_fields_takes_a_batch_of_one(tiny_inspector, pictures):
    inspector = tiny_inspector
    views = inspector.task.views(pictures[1], inspector.config.visual_token_budget)
    messages = [inspector.task.messages(inspector.task.request(), len(views), with_answer=False)]
    inputs = build_task_inputs(inspector.processor, [views], messages)
    alone = generate_fields(inspector.model, inspector.field_plan(), inputs, adapter_names=[ADAPTER_NAME])
    batched = inspector.answer(pictures)[1][ADAPTER_NAME]
    assert alone == [batched]


def test_an_unknown_decoding_is_refused_with_the_known_ones(monkeypatch):
    monkeypatch.setenv("INSPECTOR_DECODING", "beam")
    with pytest.raises(ValueError, match="'fields' or 'free'"):
        InspectorConfig.from_env()
