"""The app serving an adapter of another task: the adapter's task file decides the page and the answer."""

from __future__ import annotations

import importlib
import sys

import pytest
from PIL import Image


@pytest.fixture(scope="module")
def chartqa_app(tiny_model, tmp_path_factory):
    from inspector.tasks import get_task
    from inspector.tiny import build_tiny_adapter

    adapter = build_tiny_adapter(tiny_model, tmp_path_factory.mktemp("chartqa") / "adapter", seed=3)
    get_task("chartqa").save_config(adapter)
    patch = pytest.MonkeyPatch()
    for key, value in {"INSPECTOR_BASE_MODEL": str(tiny_model), "INSPECTOR_ADAPTER": str(adapter),
                       "INSPECTOR_DTYPE": "fp32"}.items():
        patch.setenv(key, value)
    sys.modules.pop("app", None)
    yield importlib.import_module("app")
    sys.modules.pop("app", None)
    patch.undo()


def test_question_task_needs_a_question(chartqa_app, tmp_path):
    import gradio as gr

    chart = tmp_path / "chart.png"
    Image.new("RGB", (320, 240), (250, 250, 250)).save(chart)
    assert chartqa_app.TASK.name == "chartqa" and chartqa_app.TASK.needs_question
    with pytest.raises(gr.Error, match="question"):
        chartqa_app.inspect_image(str(chart), "")


def test_question_task_answers_base_and_adapter_side_by_side(chartqa_app, tmp_path):
    chart = tmp_path / "chart.png"
    Image.new("RGB", (320, 240), (250, 250, 250)).save(chart)
    result, _ = chartqa_app.inspect_image(str(chart), "What is the highest value?")
    assert result["task"] == "chartqa"
    for side in ("base", "adapter"):
        assert set(result[side]) == {"prediction", "raw_text", "markdown"}
        assert isinstance(result[side]["markdown"], str) and result[side]["markdown"]
    headline, base_md, adapter_md, evidence_md = chartqa_app.render_result(result)
    assert headline == "" and "headline" not in result, "the degradation headline is for degradation reports"
    assert base_md == result["base"]["markdown"] and adapter_md == result["adapter"]["markdown"]
    assert "blur" in evidence_md
