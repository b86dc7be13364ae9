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
import tempfile
from pathlib import Path

import gradio as gr

from inspector.uploads import PAGE_COLUMNS, BatchError, expand_uploads, page_row, write_downloads
from inspector.evidence import measure, render_overlay
from inspector.evidence.overlay import MAP_CHOICES, MAP_LABELS, WORST, legend_html
from inspector.headline import build_headline, describe_estimate, headline_markdown
from inspector.hub import Unavailable
from inspector.images import ImageError, load_image
from inspector.model import Inspector, InspectorConfig
from inspector.runinfo import describe_runtime, runtime_line
from inspector.tasks import DEFAULT_TASK, get_task
from inspector.taxonomy import TYPE_LABELS

try:  # ZeroGPU: `spaces.GPU` attaches a GPU for the call on a Space and does nothing elsewhere.
    import spaces

    gpu = spaces.GPU(duration=60)
except ImportError:  # not on a Space and `spaces` not installed
    def gpu(fn):
        return fn

# The app's start (runtime, what was loaded, the Hub check) is logged without any flag.
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
log = logging.getLogger("inspector.app")
EXAMPLES_DIR = Path(__file__).parent / "examples"
QUEUE_SIZE = int(os.environ.get("INSPECTOR_QUEUE_SIZE", "16"))  # waiting visitors beyond this are told to retry
# What each example shows, by file name (examples/make_examples.py writes them).
EXAMPLE_CAPTIONS = {
    "clean-coffee.png": "Clean: coffee, untouched",
    "blur-moderate-astronaut.png": "Blur, moderate: astronaut, Gaussian sigma 3 px",
    "noise-severe-chelsea.png": "Noise, severe: cat, sigma 30 on 0-255",
    "lowres-moderate-rocket.png": "Low resolution, moderate: rocket, 3x bicubic upscale",
    "jpeg-severe-coffee.jpg": "JPEG, severe: coffee at quality 10",
}


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


def inspect_picture(picture, question: str = "", evidence=None) -> dict:
    """The JSON result for one loaded photo: evidence (measured here unless given), both reports
    and the headline."""
    evidence = measure(picture) if evidence is None else evidence
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
    if TASK.compares_with_evidence:
        adapter = result["adapter"] if INSPECTOR is not None and INSPECTOR.has_adapter else None
        result["headline"] = build_headline(result["evidence"]["degradations"], adapter)
    return result


def inspect_image(image_path: str | None, question: str = "") -> tuple[dict, tuple | None]:
    """The JSON result for one image (the `/inspect` API), and (path, picture, evidence) for the maps.

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
    evidence = measure(picture)  # once: for the result and for the maps
    return inspect_picture(picture, question, evidence), (image_path, picture, evidence)


def picture_and_evidence(image_path: str | None, state: tuple | None):
    """The photo and its evidence for the maps: from the last inspection, else measured again (ms)."""
    if state and state[0] == image_path:
        return state[1], state[2]
    if not image_path:
        return None, None
    try:
        picture = load_image(image_path)
    except ImageError:
        return None, None
    return picture, measure(picture)


def render_map(image_path: str | None, map_kind: str, state: tuple | None = None) -> tuple[object, str]:
    """The overlay of the chosen map and its legend."""
    picture, evidence = picture_and_evidence(image_path, state)
    map_kind = map_kind if map_kind in MAP_CHOICES else WORST
    overlay = render_overlay(picture, evidence, map_kind) if picture is not None else None
    return overlay, legend_html(map_kind)


def render_report(answer: dict) -> str:
    if INSPECTOR is None:  # the note at the top says why, once
        return "### Not loaded\n\nSee the note at the top of the page."
    return TASK.answer_markdown(answer)


def render_result(result: dict | None) -> tuple[str, str, str, str]:
    """Markdown for the headline and the base, adapter and evidence columns."""
    if not result:
        return "", "", "", ""
    headline = headline_markdown(result["headline"]) if "headline" in result else ""
    return headline, render_report(result["base"]), render_report(result["adapter"]), render_evidence(result["evidence"])


def show_result(result: dict | None, image_path: str | None, map_kind: str, state: tuple | None):
    """Everything the page shows after an inspection."""
    overlay, legend = render_map(image_path, map_kind, state)
    return (*render_result(result), overlay, legend)


def inspect_and_show(image_path: str | None, map_kind: str = WORST):
    """One inspection and its page, in one call: what the examples cache."""
    result, state = inspect_image(image_path)
    return (result, *show_result(result, image_path, map_kind, state))


def render_evidence(evidence: dict) -> str:
    # nowrap: in a narrow column, a Markdown table broke "moderate" and "low_resolution" mid-word.
    cell = "<td style='white-space:nowrap'>"
    rows = ["<table style='width:100%;font-size:0.85em'><tr><th>type</th><th>severity</th><th>measured</th><th>conf.</th></tr>"]
    for item in evidence["degradations"]:
        rows.append(f"<tr>{cell}{TYPE_LABELS[item['type']]}</td>{cell}<b>{item['severity']}</b></td>"
                    f"{cell}{describe_estimate(item['type'], float(item['estimate']))}</td>{cell}{item['confidence']:.0%}</td></tr>")
    return "".join(rows) + "</table>"


def inspect_many(files: list[str] | None, progress=gr.Progress()):
    """The batch tab: each photo's row as soon as it is ready, and the CSV and JSON so far."""
    if not files:
        raise gr.Error("Upload some photos (or a zip of them) first.")
    try:
        sources = expand_uploads(files)
    except BatchError as error:
        raise gr.Error(str(error)) from error
    folder = Path(tempfile.mkdtemp(prefix="inspector-batch-"))
    records, rows = [], []
    for index, (name, source) in enumerate(sources):
        progress((index, len(sources)), desc=f"inspecting {name}", unit="photos")
        try:
            record = {"photo": name, **inspect_picture(load_image(source))}
        except ImageError as error:
            record = {"photo": name, "error": str(error)}
        records.append(record)
        rows.append(page_row(record))
        yield rows, write_downloads(records, folder)


def notice_markdown(notices: list[str]) -> str:
    return "\n\n".join(f"> **Note:** {notice}" for notice in notices)


def column_titles() -> tuple[str, str]:
    """The two model columns' titles, naming what runs (never "Qwen2-VL-2B" for the stand-in)."""
    if INSPECTOR is None:
        return "### Base model: not loaded", "### Adapter: not loaded"
    base = RUNTIME["base"]
    base_title = f"### Base: {Path(base['name']).name} ({base['kind']}, zero-shot)"
    adapter = RUNTIME["adapter"]
    if adapter is None:
        return base_title, "### Adapter: none loaded"
    trained = "trained" if adapter["trained"] else "untrained: random weights, not a trained adapter"
    return base_title, f"### Adapter: {Path(str(adapter['name'])).name} ({trained})"


def example_cache_mode() -> str:
    """Eager unless a real model runs on a CPU, where caching five inspections at start (about 10 s each
    on 2 vCPUs) would delay the page; there each example is cached at its first click.
    INSPECTOR_EXAMPLE_CACHE=eager|lazy overrides."""
    chosen = os.environ.get("INSPECTOR_EXAMPLE_CACHE")
    if chosen in ("eager", "lazy"):
        return chosen
    real_on_cpu = INSPECTOR is not None and INSPECTOR.runtime.device == "cpu" and RUNTIME["base"]["kind"] == "Qwen2-VL"
    return "lazy" if real_on_cpu else "eager"


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Degradation Inspector") as demo:
        gr.Markdown("# Degradation Inspector\nWhat is wrong with this photo? Blur, noise, low resolution "
                    "or JPEG artifacts, how badly, and the measurements behind it: the base model (zero-shot) "
                    "and the fine-tuned adapter side by side, checked against the measured evidence.")
        gr.Markdown(f"**Running:** {runtime_line(RUNTIME)}", elem_id="runtime")
        gr.Markdown(notice_markdown(NOTICES), visible=bool(NOTICES), elem_id="notices")
        with gr.Tab("One photo"):
            build_single_tab()
        if TASK.compares_with_evidence:  # the table's columns are the degradation types
            with gr.Tab("Many photos"):
                build_batch_tab()
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    return demo


def build_single_tab() -> None:
    with gr.Row():
        image = PhotoInput(type="filepath", label="Photo", sources=["upload", "clipboard"], height=360)
        with gr.Column():
            overlay = gr.Image(label="Where it is degraded (measured)", interactive=False, height=360,
                               elem_id="overlay")
            map_kind = gr.Radio([(MAP_LABELS[kind], kind) for kind in MAP_CHOICES], value=WORST,
                                label="Map", elem_id="map-selector")
            legend = gr.HTML(legend_html(WORST), elem_id="legend")
    question = gr.Textbox(label=f"Question ({TASK.title})", visible=TASK.needs_question, elem_id="question")
    button = gr.Button(TASK.action, variant="primary", elem_id="inspect-button")
    headline = gr.Markdown(elem_id="headline")
    base_title, adapter_title = column_titles()
    with gr.Row():
        with gr.Column():
            gr.Markdown(base_title, elem_id="base-title")
            base_md = gr.Markdown(elem_id="base-report")
        with gr.Column():
            gr.Markdown(adapter_title, elem_id="adapter-title")
            adapter_md = gr.Markdown(elem_id="adapter-report")
        with gr.Column(scale=1, min_width=420):
            gr.Markdown("### Measured evidence", elem_id="evidence-title")
            evidence_md = gr.HTML(elem_id="evidence-report")
    with gr.Accordion("JSON", open=False):
        result_json = gr.JSON(label="result")
    shown = [headline, base_md, adapter_md, evidence_md, overlay, legend]
    examples = sorted(str(path) for path in EXAMPLES_DIR.glob("*") if path.suffix in (".jpg", ".png"))
    if examples and TASK.compares_with_evidence:  # the examples are degraded photos
        gr.Examples(examples, inputs=image, outputs=[result_json, *shown], fn=inspect_and_show,
                    cache_examples=True, cache_mode=example_cache_mode(), elem_id="examples",
                    example_labels=[EXAMPLE_CAPTIONS.get(Path(path).name, Path(path).stem) for path in examples],
                    label="Examples: click one to see its report")
    state = gr.State()  # state is not part of the API: `/inspect` returns the JSON alone
    # The API takes (image) for the inspector, (image, question) for question tasks.
    inputs = [image, question] if TASK.needs_question else [image]
    button.click(inspect_image, inputs=inputs, outputs=[result_json, state], api_name="inspect").then(
        show_result, inputs=[result_json, image, map_kind, state], outputs=shown, api_visibility="private")
    map_kind.change(render_map, inputs=[image, map_kind, state], outputs=[overlay, legend], api_visibility="private")


def build_batch_tab() -> None:
    files = gr.File(file_count="multiple", file_types=["image", ".zip"], label="Photos, or a zip of them",
                    elem_id="batch-files")
    button = gr.Button("Inspect all", variant="primary", elem_id="batch-button")
    table = gr.Dataframe(headers=PAGE_COLUMNS, label="Results (each row as soon as it is ready)",
                         interactive=False, wrap=True, elem_id="batch-table",
                         column_widths=["12%", "40%", "12%", "12%", "12%", "12%"])
    downloads = gr.File(label="Download: results.csv and results.json", file_count="multiple",
                        interactive=False, elem_id="batch-downloads")
    button.click(inspect_many, inputs=files, outputs=[table, downloads], api_name="inspect_many")


INSPECTOR, NOTICES = load_inspector()
TASK = INSPECTOR.task if INSPECTOR is not None else get_task(DEFAULT_TASK)
RUNTIME = describe_runtime(INSPECTOR, NOTICES)
log.info("running: %s", runtime_line(RUNTIME))
demo = build_demo()

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
                max_file_size="25mb", allowed_paths=[str(EXAMPLES_DIR)])
