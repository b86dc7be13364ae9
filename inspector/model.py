"""Loading the base model and the adapter, and the one batched generate that serves both.

One resident base model carries the LoRA adapter; PEFT's mixed-adapter batches
(`adapter_names=["__base__", "adapter", ...]`) give the zero-shot base report and the
adapter report from a single `generate` call: one prefill, one decode loop, one copy of
the weights.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from inspector.device import Runtime, choose_runtime, cuda_device_index
from inspector.fields import DECODINGS, FieldPlan, generate_fields, plan_fields
from inspector.generation import GREEDY_DECODING
from inspector.hub import Unavailable, explain_hub_error, is_local, prepare_hub, resolve_adapter
from inspector.images import load_image
from inspector.prompts import build_task_inputs
from inspector.quantize import INT8_VISION_SCHEMES, quantize_int8, vision_scheme
from inspector.vision import image_features

log = logging.getLogger(__name__)

DEFAULT_BASE = "Qwen/Qwen2-VL-2B-Instruct"
DEFAULT_ADAPTER = "degradation-inspector/qwen2-vl-2b-inspector-lora"
DEFAULT_ADAPTER_REVISION = "v1"
ADAPTER_NAME = "adapter"
BASE_NAME = "__base__"  # PEFT's name for "no adapter" in a mixed batch
# What the adapters adapt: the language model's projections. The vision tower's (qkv, proj,
# fc1, fc2) are named otherwise, so these names leave it alone, as the mixed batch needs.
LANGUAGE_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


DEFAULT_VISUAL_TOKENS = 256  # the app's budget where neither INSPECTOR_VISUAL_TOKENS nor the adapter names one


@dataclass
class InspectorConfig:
    """What to load and how to generate; every field has an environment override."""

    base: str = DEFAULT_BASE
    base_revision: str | None = None
    adapter: str | None = DEFAULT_ADAPTER  # None or "" serves the base model alone
    adapter_revision: str | None = DEFAULT_ADAPTER_REVISION
    device: str | None = None  # see inspector.device
    precision: str | None = None
    # visual tokens per image (more costs prefill time); None: the one the adapter was trained
    # with (its inspector_task.json), else DEFAULT_VISUAL_TOKENS
    visual_token_budget: int | None = None
    max_new_tokens: int = 48  # the compact answer needs ~30; prose is cut here
    min_new_tokens: int = 0  # benchmarks force a fixed length with min = max
    # The KV cache: "dynamic" grows token by token; "static" is allocated once per call. Static
    # was up to a ninth faster on 2 vCPUs (not in every run), but moved the tiny adapter's int8
    # macro F1 from 0.638 to 0.630, past the 1-point budget against fp32's 0.642 (README,
    # "Performance"); on CUDA generate also compiles the decode step for it, at the first request.
    # Free decoding only: field decoding grows one dynamic cache over its calls.
    kv_cache: str = "dynamic"
    # In int8, the vision tower: None leaves it to the runtime (bf16 where the CPU has native bf16 and
    # int8 was picked for it, else fp32); "fp32" keeps it fp32; "bf16" computes it in bf16 (int8
    # decodes faster, bf16 encodes faster); "per-token" (torchao, an activation scale per token) or
    # "per-tensor" (one scale per tensor: cost 51 points of macro F1 on the tiny) quantize it
    int8_vision: str | None = None
    # "fields": where the task's answer has a fixed layout (the degradation JSON), only its values
    # are decoded, one forward pass per field instead of one per token (inspector.fields); "free":
    # plain greedy generate, the model's own words
    decoding: str = "fields"

    def __post_init__(self):
        if self.kv_cache not in ("dynamic", "static"):
            raise ValueError(f"kv_cache {self.kv_cache!r} is not supported; use 'dynamic' or 'static' "
                             "(INSPECTOR_KV_CACHE)")
        if self.decoding not in DECODINGS:
            raise ValueError(f"decoding {self.decoding!r} is not supported; use 'fields' or 'free' (INSPECTOR_DECODING)")
        self.int8_vision = self.int8_vision or None  # an empty INSPECTOR_INT8_VISION: the default
        if self.int8_vision not in INT8_VISION_SCHEMES:
            raise ValueError(f"int8_vision {self.int8_vision!r} is not supported; use 'fp32', 'bf16', 'per-token' "
                             "or 'per-tensor', or leave it empty for the runtime's choice (INSPECTOR_INT8_VISION)")

    @classmethod
    def from_env(cls, **overrides) -> "InspectorConfig":
        env = {
            "base": os.environ.get("INSPECTOR_BASE_MODEL"),
            "base_revision": os.environ.get("INSPECTOR_BASE_REVISION"),
            "adapter": os.environ.get("INSPECTOR_ADAPTER"),
            "adapter_revision": os.environ.get("INSPECTOR_ADAPTER_REVISION"),
            "visual_token_budget": os.environ.get("INSPECTOR_VISUAL_TOKENS"),
            "max_new_tokens": os.environ.get("INSPECTOR_MAX_NEW_TOKENS"),
            "kv_cache": os.environ.get("INSPECTOR_KV_CACHE"),
            "int8_vision": os.environ.get("INSPECTOR_INT8_VISION"),
            "decoding": os.environ.get("INSPECTOR_DECODING"),
        }
        values = {key: value for key, value in env.items() if value is not None}
        if "adapter" in values and "adapter_revision" not in values and is_local(values["adapter"]):
            values["adapter_revision"] = None
        for key in ("visual_token_budget", "max_new_tokens"):
            if key in values:
                values[key] = int(values[key])
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


def quantization_config(runtime: Runtime):
    """nf4 with double quantization, the QLoRA recipe, computing in the runtime's compute dtype
    (bf16 where the GPU has it, as the recipe does; fp16 on older cards: `inspector.device`).

    The vision tower stays unquantized: backward through an nf4 layer with a bias (its
    qkv) fails on CPU, and serving must match the precision the adapter trained with.
    Skip patterns match from the start of the module name in transformers 5.2x
    (`quantizers_utils.should_convert_module`), so the tower is named by its full path
    `model.visual`; the bare `visual` covers releases that matched any segment.
    """
    if not runtime.quantized:
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=runtime.torch_dtype, llm_int8_skip_modules=["model.visual", "visual", "lm_head"],
    )


def load_base(name: str, revision: str | None = None, runtime: Runtime | None = None):
    """The Qwen2-VL base model and its processor, from a Hub repo id or a local folder.

    The real model and the tiny stand-in take this same path. Weights come only from
    safetensors and no remote code runs. The dtype is the runtime's `load_dtype`.
    """
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    runtime = runtime or choose_runtime()
    # Each rank of a multi-GPU run on its own GPU: device_map 0 would put every copy on the first.
    device_map = {"": cuda_device_index()} if runtime.device == "cuda" else {"": "cpu"}
    try:
        processor = AutoProcessor.from_pretrained(name, revision=revision, trust_remote_code=False)
        model = Qwen2VLForConditionalGeneration.from_pretrained(
            name, revision=revision, dtype=runtime.load_dtype, device_map=device_map,
            quantization_config=quantization_config(runtime), attn_implementation="sdpa",
            use_safetensors=True, trust_remote_code=False,
        )
    except OSError as error:
        cause = error.__cause__ or error.__context__
        if not is_local(name) and cause is not None and type(cause).__module__.startswith("huggingface_hub"):
            raise Unavailable(explain_hub_error(cause, name, revision, "base model")) from error
        raise Unavailable(f"the base model {name} could not be loaded: {error}") from error
    model.eval()
    return model, processor


@dataclass
class Inspection:
    """The outcome for one image: both models' answers as the task parsed them, and how long it took.

    For the degradation task `base` and `adapter` are `Report`s; for another task they are
    its predictions (`Task.parse`). Without an adapter, `adapter` is `task.unavailable(notice)`.
    """

    base: Any
    adapter: Any
    elapsed_s: float
    width: int = 0
    height: int = 0
    extra: dict = field(default_factory=dict)
    task: Any = None  # the Task that asked and parsed; None: the default task
    raw_texts: dict[str, str] = field(default_factory=dict)  # row (BASE_NAME, ADAPTER_NAME) -> what it wrote
    notice: str = ""  # why the adapter did not answer

    def to_dict(self) -> dict:
        from inspector.tasks import DEFAULT_TASK, get_task

        task = self.task or get_task(DEFAULT_TASK)
        return {
            "task": task.name,
            "width": self.width, "height": self.height,
            "base": task.answer_json(self.base, self.raw_texts.get(BASE_NAME, "")),
            "adapter": task.answer_json(self.adapter, self.raw_texts.get(ADAPTER_NAME, ""), self.notice),
            "elapsed_s": round(self.elapsed_s, 3),
            **self.extra,
        }


class Inspector:
    """One resident base model, with the adapter when it could be loaded."""

    def __init__(self, model, processor, runtime: Runtime, config: InspectorConfig,
                 has_adapter: bool, notices: list[str] | None = None, task=None):
        from inspector.tasks import DEFAULT_TASK, get_task

        self.model = model
        self.processor = processor
        self.runtime = runtime
        if config.visual_token_budget is None:
            config = replace(config, visual_token_budget=DEFAULT_VISUAL_TOKENS)
        self.config = config
        self.has_adapter = has_adapter
        self.notices = list(notices or [])
        # What the adapter was trained for: its views, prompt and parser serve every answer.
        self.task = task or get_task(DEFAULT_TASK)
        self.rows = [BASE_NAME, ADAPTER_NAME] if has_adapter else [BASE_NAME]  # generate rows per image
        self.adapter_folder: Path | None = None  # where the loaded adapter's files are (inspector.runinfo reads them)
        self._field_plan: FieldPlan | None | bool = False  # False: not planned yet

    @classmethod
    def load(cls, config: InspectorConfig | None = None, **overrides) -> "Inspector":
        """Load base and adapter. A missing base raises `Unavailable`; a missing adapter
        becomes a notice and the base model serves alone."""
        config = config or InspectorConfig.from_env(**overrides)
        runtime = choose_runtime(config.device, config.precision)
        started = time.perf_counter()
        offline = prepare_hub([config.base, config.adapter])
        notices, has_adapter, task, folder = [offline] if offline else [], False, None, None
        model, processor = load_base(config.base, config.base_revision, runtime)
        if config.adapter:
            try:
                folder = resolve_adapter(config.adapter, config.adapter_revision)
                task = read_task(folder)
                model = attach_adapter(model, folder)
                has_adapter = True
            except Unavailable as error:
                folder = None
                notices.append(f"Adapter not loaded, the base model serves alone: {error}")
                log.info(notices[-1])  # callers show notices (CLI: stderr, app: the page)
        if config.visual_token_budget is None and has_adapter:
            from inspector.tasks.base import read_visual_token_budget

            trained = read_visual_token_budget(folder)
            if trained is not None:
                config = replace(config, visual_token_budget=trained)
                log.info("visual tokens per image: %d, as the adapter was trained", trained)
        if runtime.int8:
            if config.int8_vision:  # asked for: the runtime then describes the tower that runs
                runtime = replace(runtime, int8_vision=vision_scheme(config.int8_vision))
            quantize_int8(model, vision=runtime.int8_vision)
        elif config.int8_vision:
            log.info("int8_vision=%s is ignored: the precision is %s, not int8", config.int8_vision, runtime.precision)
        log.info("loaded %s%s on %s in %.1f s", config.base, " + adapter" if has_adapter else "",
                 runtime.describe(), time.perf_counter() - started)
        inspector = cls(model, processor, runtime, config, has_adapter, notices, task if has_adapter else None)
        inspector.adapter_folder = folder
        return inspector

    @property
    def instruction(self) -> str:
        """The text the task asks with when the app sends no question (the inspection instruction)."""
        return self.task.instruction(self.task.request())

    @property
    def missing_adapter(self) -> str:
        adapter_notices = [notice for notice in self.notices if notice.startswith("Adapter not loaded")]
        return adapter_notices[0] if adapter_notices else "No adapter configured (INSPECTOR_ADAPTER is empty)."

    def warm_up(self) -> None:
        """One small inspection at start, so the first visitor does not pay for lazy set-up."""
        from PIL import Image

        from inspector.prompts import build_dialogue_messages

        started = time.perf_counter()
        views = self.task.views(Image.new("RGB", (112, 112), (128, 128, 128)), self.config.visual_token_budget)
        # Any question will do (a question task has no default one): what warms is the model, not the prompt.
        messages = build_dialogue_messages(len(views), [("Describe this picture.", None)])
        self.generate([views] * len(self.rows), self.rows, [messages] * len(self.rows))
        log.info("warm-up generate took %.1f s", time.perf_counter() - started)

    def field_plan(self) -> FieldPlan | None:
        """How the task's answer is field-decoded with this tokenizer; None where it cannot be (a task
        without a fixed layout, or a tokenizer the layout does not fit): free decoding serves."""
        if self._field_plan is False:
            template = self.task.answer_template()
            self._field_plan = plan_fields(self.processor.tokenizer, template) if template else None
        return self._field_plan

    def generate(self, views_per_sample: list[list], adapter_names: list[str],
                 messages_per_sample: list[list[dict]] | None = None, max_new_tokens: int | None = None,
                 streamer=None, decoding: str | None = None) -> list[str]:
        """One batched greedy generate; row i uses adapter `adapter_names[i]`.

        Field decoding (`inspector.fields`) where the config's `decoding`, or `decoding` here,
        asks for it and the task's answer has a fixed layout: one forward pass per field, and
        `max_new_tokens` and `streamer` do not apply; else transformers' `generate`.

        The prompt of each row is its chat messages; by default the task's request (the
        degradation task's inspection instruction). Rows that share the same views object
        (base and adapter of one image) share one pass of the vision tower: the LoRA adapter
        does not touch it, so its output is the same for both, and it is a third of the
        prefill time of the 2B model. `streamer` (a transformers `BaseStreamer`) is handed the
        prompt, then each step's new tokens, as transformers' `generate` does (the bench times them).
        """
        if messages_per_sample is None:
            request = self.task.request()
            messages_per_sample = [self.task.messages(request, len(views), with_answer=False)
                                   for views in views_per_sample]
        inputs = build_task_inputs(self.processor, views_per_sample, messages_per_sample).to(self.model.device)
        kwargs = {"adapter_names": adapter_names} if self.has_adapter else {}
        with torch.inference_mode():
            if inputs.get("pixel_values") is not None:
                kwargs["mm_encoder_outputs"] = {"image": self.encode_views_once(views_per_sample)}
                del inputs["pixel_values"]
            plan = self.field_plan() if (decoding or self.config.decoding) == "fields" else None
            if plan is not None:
                return generate_fields(self.model, plan, inputs, **kwargs)
            output = self.model.generate(**inputs, max_new_tokens=max_new_tokens or self.config.max_new_tokens,
                                         min_new_tokens=self.config.min_new_tokens, **GREEDY_DECODING,
                                         cache_implementation=self.config.kv_cache, streamer=streamer, **kwargs)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)

    def encode_views_once(self, views_per_sample: list[list]):
        """Vision-tower features for every row, computing each distinct views list once."""
        return image_features(self.model, self.processor, views_per_sample)

    def answer(self, pictures: list, examples: list[dict] | None = None,
               max_new_tokens: int | None = None) -> list[dict[str, str]]:
        """What every loaded row (base, adapter) wrote for each picture: [{row: text}], one generate.

        The one path of every task: the task's views of each (loaded) picture, its messages
        for each example (default: its request, what the app sends), one batched generate.
        """
        task = self.task
        examples = examples if examples is not None else [task.request() for _ in pictures]
        views = [task.views(picture, self.config.visual_token_budget) for picture in pictures]
        messages = [task.messages(example, len(own), with_answer=False) for example, own in zip(examples, views)]
        rows = self.rows
        texts = self.generate([own for own in views for _ in rows], rows * len(views),
                              [own for own in messages for _ in rows], max_new_tokens)
        return [dict(zip(rows, texts[index * len(rows):(index + 1) * len(rows)])) for index in range(len(views))]

    def inspect(self, images: list, question: str | None = None, history: tuple = ()) -> list[Inspection]:
        """Base and adapter answers for each image (read with `load_image`), from one generate.

        For the degradation task the answers are typed `Report`s; `question` and `history`
        are for the tasks that take them (chart QA, dialogue).
        """
        return self.inspect_loaded([load_image(image) for image in images], question, history)

    def inspect_loaded(self, pictures: list, question: str | None = None, history: tuple = ()) -> list[Inspection]:
        """`inspect` of pictures `load_image` already returned (the app's): decoded once."""
        started = time.perf_counter()
        task = self.task
        length = task.answer_length(self.config.max_new_tokens)
        answers = self.answer(pictures, [task.request(question, history) for _ in pictures], length)
        elapsed = (time.perf_counter() - started) / max(len(pictures), 1)
        results = []
        for picture, texts in zip(pictures, answers):
            base = task.parse(texts[BASE_NAME])
            adapter = task.parse(texts[ADAPTER_NAME]) if self.has_adapter else task.unavailable(self.missing_adapter)
            results.append(Inspection(base, adapter, elapsed, *picture.size, task=task, raw_texts=texts,
                                      notice="" if self.has_adapter else self.missing_adapter))
        return results

    def ask(self, image, question: str | None = None, history: tuple = ()) -> dict[str, dict]:
        """One image's answers as the app's JSON: {row: {prediction, raw_text, markdown}} (other tasks)."""
        inspection = self.inspect([image], question, history)[0]
        return {row: self.task.answer_json(prediction, inspection.raw_texts[row])
                for row, prediction in ((BASE_NAME, inspection.base), (ADAPTER_NAME, inspection.adapter))
                if row in inspection.raw_texts}


def read_task(adapter_folder: Path):
    """The task named by the adapter's inspector_task.json (degradation when absent)."""
    from inspector.tasks import load_task

    try:
        return load_task(adapter_folder)
    except (ValueError, KeyError) as error:
        raise Unavailable(f"the adapter's task file cannot be used: {error}") from error


def attach_adapter(model, adapter_folder: Path):
    """Wrap the base model with the LoRA adapter, under the name used in mixed batches."""
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(model, str(adapter_folder), adapter_name=ADAPTER_NAME,
                                               is_trainable=False)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise Unavailable(f"the adapter in {adapter_folder} does not fit this base model: {error}") from error
    peft_model.eval()
    return peft_model
