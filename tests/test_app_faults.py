"""Faults inside the app's predict function, called in-process: the next request is still served."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch


@pytest.fixture(scope="module")
def app_module(tiny_model, tiny_adapter):
    patch = pytest.MonkeyPatch()
    patch.setenv("INSPECTOR_BASE_MODEL", str(tiny_model))
    patch.setenv("INSPECTOR_ADAPTER", str(tiny_adapter))
    patch.setenv("INSPECTOR_DTYPE", "fp32")
    patch.setenv("INSPECTOR_MAX_NEW_TOKENS", "4")
    sys.modules.pop("app", None)
    module = importlib.import_module("app")
    yield module
    patch.undo()


def test_out_of_memory_is_reported_and_the_model_keeps_serving(app_module, photo, monkeypatch):
    model = app_module.INSPECTOR.model
    original = model.generate

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model, "generate", out_of_memory)
    result, overlay = app_module.inspect_image(str(photo))
    assert result["base"]["verdict"] == "unavailable"
    assert "OutOfMemoryError" in result["adapter"]["notice"] and "retry" in result["adapter"]["notice"]
    assert result["evidence"]["degradations"], "the measured evidence still comes back"
    monkeypatch.setattr(model, "generate", original)
    result, _ = app_module.inspect_image(str(photo))
    assert result["adapter"]["verdict"] != "unavailable"


def test_garbage_model_text_keeps_the_raw_text(app_module, photo, monkeypatch):
    monkeypatch.setattr(app_module.INSPECTOR, "generate", lambda views, names, *prompt, **options: [
        "\x00\ufffd}{]]] lorem ipsum 🙃" for _ in names])
    result, _ = app_module.inspect_image(str(photo))
    for side in ("base", "adapter"):
        assert result[side]["parsed"] is False
        assert result[side]["verdict"] == "unknown"
        assert "lorem ipsum" in result[side]["raw_text"]


def test_no_image_is_a_clear_error(app_module):
    import gradio as gr

    with pytest.raises(gr.Error, match="Upload a photo"):
        app_module.inspect_image(None)
