"""Degradation Inspector: the Gradio app of the Hugging Face Space.

    python app.py                      # the real Qwen2-VL-2B and our adapter from the Hub
    INSPECTOR_BASE_MODEL=/tmp/tiny INSPECTOR_ADAPTER=/tmp/tiny/adapter python app.py

Thin by design: `inspector` loads the model, prepares images, measures evidence and
parses reports; this file lays out the page and renders. The model is loaded once at
start; when it cannot be loaded, the page still comes up and says what is missing.
API: `gradio_client.Client(url).predict(handle_file("photo.jpg"), api_name="/inspect")`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import gradio as gr

from inspector.evidence import measure, render_overlay
from inspector.hub import Unavailable
from inspector.images import ImageError, load_image
from inspector.model import Inspector, InspectorConfig
from inspector.tasks import DEFAULT_TASK, get_task

try:  # ZeroGPU: `spaces.GPU` attaches a GPU for the call on a Space and does nothing elsewhere.
    import spaces

    gpu = spaces.GPU(duration=60)
except ImportError:  # not on a Space and `spaces` not installed
    def gpu(fn):
        return fn

log = logging.getLogger("inspector.app")
EXAMPLES_DIR = Path(__file__).parent / "examples"
QUEUE_SIZE = int(os.environ.get("INSPECTOR_QUEUE_SIZE", "16"))  # waiting visitors beyond this are told to retry


class PhotoInput(gr.Image):
    """The photo upload, handing the uploaded file to our loader undecoded.

    `gr.Image` opens the upload with PIL while preprocessing, so a file that is not an
    image fails there with a generic error; `inspector.images.load_image` says what is
    wrong with it instead, and refuses decompression bombs before decoding.
    """

    is_template = True  # rendered by the frontend as a plain Image

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.path is None:
            raise gr.Error("The upload did not arrive as a file: upload the photo again.")
        return payload.path


def load_inspector() -> tuple[Inspector | None, list[str]]:
    """The resident model, warmed; or None and a notice saying what is missing and how to fix it."""
    config = InspectorConfig.from_env()
    try:
        inspector = Inspector.load(config)
    except Unavailable as error:
        return None, [f"The model is not loaded: {error}. Measured evidence still works. Set "
                      "INSPECTOR_BASE_MODEL to a local Qwen2-VL folder (`python -m inspector tiny /tmp/tiny` "
                      "writes an offline stand-in) and restart."]
    except (RuntimeError, MemoryError) as error:  # out of GPU/CPU memory, broken CUDA
        return None, [f"The model could not be loaded on this machine: {error}. Try INSPECTOR_DTYPE=nf4 "
                      "on a GPU, or INSPECTOR_DEVICE=cpu."]
    inspector.warm_up()
    return inspector, inspector.notices


@gpu
def run_model(picture, question: str = "") -> dict:
    """Both models' answers for one loaded picture, through its task (the JSON of `Inspection.to_dict`)."""
    return INSPECTOR.inspect_loaded([picture], question or None)[0].to_dict()


def unavailable(notice: str) -> dict:
    """A model's place in the JSON when it could not answer."""
    return TASK.answer_json(TASK.unavailable(notice), "", notice)


def inspect_image(image_path: str | None, question: str = "") -> tuple[dict, object]:
    """The JSON result for one image (the `/inspect` API), and the overlay for the page.

    `question` is for the adapters of question tasks (chart QA, dialogue); the
    degradation inspection ignores it.
    """
    if TASK.needs_question and not (question or "").strip():
        raise gr.Error("Type a question about the image first.")
    if not image_path:
        raise gr.Error("Upload a photo or pick an example first.")
    try:
        picture = load_image(image_path)
    except ImageError as error:
        raise gr.Error(str(error)) from error
    evidence = measure(picture)
    result = {"width": picture.width, "height": picture.height, "evidence": evidence.to_dict(),
              "notices": list(NOTICES)}
    if INSPECTOR is None:
        result["base"] = result["adapter"] = unavailable(NOTICES[0])
    else:
        try:
            result.update(run_model(picture, question))
        except RuntimeError as error:  # e.g. CUDA out of memory: tell this visitor, serve the next
            log.exception("generation failed")
            message = f"The model failed on this image ({error.__class__.__name__}): try a smaller photo or retry."
            result["base"] = result["adapter"] = unavailable(message)
    return result, render_overlay(picture, evidence)


def render_result(result: dict | None, overlay) -> tuple[str, str, str, object]:
    """Markdown for the base, adapter and evidence columns, and the overlay picture."""
    if not result:
        return "", "", "", None
    return (TASK.answer_markdown(result["base"]), TASK.answer_markdown(result["adapter"]),
            render_evidence(result["evidence"]), overlay)


def render_evidence(evidence: dict) -> str:
    rows = ["| type | severity | estimate | confidence |", "| --- | --- | --- | --- |"]
    for item in evidence["degradations"]:
        rows.append(f"| {item['type']} | **{item['severity']}** | {item['estimate']:.3g} {item.get('unit', '')} "
                    f"| {item['confidence']:.0%} |")
    return "\n".join(rows)


def notice_markdown(notices: list[str]) -> str:
    return "\n\n".join(f"> **Note:** {notice}" for notice in notices)


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Degradation Inspector") as demo:
        gr.Markdown("# Degradation Inspector\nWhat is wrong with this photo? Blur, noise, low resolution "
                    "or JPEG artifacts, how badly, and the measurements behind it: the base Qwen2-VL-2B "
                    "(zero-shot) and our fine-tuned adapter side by side.")
        gr.Markdown(notice_markdown(NOTICES), visible=bool(NOTICES), elem_id="notices")
        with gr.Row():
            image = PhotoInput(type="filepath", label="Photo", sources=["upload", "clipboard"], height=360)
            overlay = gr.Image(label="Where it is degraded (measured)", interactive=False, height=360)
        question = gr.Textbox(label=f"Question ({TASK.title})", visible=TASK.needs_question, elem_id="question")
        button = gr.Button(TASK.action, variant="primary", elem_id="inspect-button")
        with gr.Row(equal_height=True):
            with gr.Column():
                gr.Markdown("### Base model (zero-shot)")
                base_md = gr.Markdown(elem_id="base-report")
            with gr.Column():
                gr.Markdown("### Fine-tuned adapter")
                adapter_md = gr.Markdown(elem_id="adapter-report")
            with gr.Column():
                gr.Markdown("### Measured evidence")
                evidence_md = gr.Markdown(elem_id="evidence-report")
        with gr.Accordion("JSON", open=False):
            result_json = gr.JSON(label="result")
        examples = sorted(str(path) for path in EXAMPLES_DIR.glob("*") if path.suffix in (".jpg", ".png"))
        if examples:
            gr.Examples(examples, inputs=image, label="Examples (click one, then Inspect)")
        overlay_state = gr.State()  # state is not part of the API: `/inspect` returns the JSON alone
        # The API takes (image) for the inspector, (image, question) for question tasks.
        inputs = [image, question] if TASK.needs_question else [image]
        button.click(inspect_image, inputs=inputs, outputs=[result_json, overlay_state], api_name="inspect").then(
            render_result, inputs=[result_json, overlay_state], outputs=[base_md, adapter_md, evidence_md, overlay],
            api_visibility="private")
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    return demo


INSPECTOR, NOTICES = load_inspector()
TASK = INSPECTOR.task if INSPECTOR is not None else get_task(DEFAULT_TASK)
demo = build_demo()

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
                max_file_size="25mb", allowed_paths=[str(EXAMPLES_DIR)])
