"""The Task interface: what one fine-tuning job reads, asks, expects and measures.

The stack (train/build_dataset.py, finetune.py, evaluate.py, push.py, app.py) is the
same for every job; a `Task` holds what differs between them:

| step | method | e.g. classification |
| --- | --- | --- |
| data | `read(source, seed)` -> DatasetDict train/validation/test | class folders, stratified 72/13/15 |
| input | `views(image, budget)`, `turns(example)`, `messages(...)` | the whole image; "Which class: a, b, c?" |
| target | `answer(example)` | "weapons" |
| output | `parse(text)` (never raises), `render(prediction, raw_text)` | "It looks like a gun" -> "weapons" |
| score | `reference(example)`, `metrics(predictions, references)` | accuracy, per-class P/R/F1, confusion |
| adapter | `to_config()` -> inspector_task.json, `load_task(folder)` | {"task": "classification", "options": {...}} |

Prompts follow `inspector.prompts.build_messages` (images first in the first user
turn); `build_dialogue_messages` extends it to several rounds, and
`build_task_inputs` is `build_inputs` for per-sample conversations, so training
and serving still build the model input with one function.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from inspector.images import MAX_ASPECT_RATIO, MIN_VIEW_PATCHES, QWEN_PATCH
from inspector.prompts import build_dialogue_messages, build_task_inputs, render_chat  # noqa: F401 - re-exported
from inspector.report import MAX_PARSE_CHARS, code_block

TASK_FILE = "inspector_task.json"  # in every adapter folder; push.py publishes it, hub.py fetches it
SPLITS: tuple[str, ...] = ("train", "validation", "test")

@dataclass(frozen=True)
class RankingItem:
    """One question whose candidate answers are ranked by the model's likelihood (VisDial).

    `turns` is the dialogue up to the question, its last answer None; `reference`
    is what `Task.metrics` compares the candidates' scores with.
    """

    turns: list[tuple[str, str | None]]
    candidates: list[str]
    reference: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """One fine-tuning job. Subclasses set the class attributes and implement the methods.

    Instances are cheap and immutable in spirit: options that come from the data
    (the class names of a classification) are bound with `for_dataset`, which
    returns a new task, and travel with the adapter through `to_config`.
    """

    name: ClassVar[str] = ""
    needs_question: ClassVar[bool] = False  # the app shows a question box (chart QA, dialogue)
    multi_turn: ClassVar[bool] = False  # examples are dialogues: the loss is on every answer
    evaluation: ClassVar[str] = "generate"  # "generate": parse generated text; "rank": score candidates
    answer_format: ClassVar[str] = "text"  # named in inspector_task.json
    max_new_tokens: ClassVar[int] = 16  # enough for the trained answer; prose is cut here
    title: ClassVar[str] = ""  # the model card's task name
    action: ClassVar[str] = "Ask"  # the app's button
    # The app's headline, batch table and examples compare the adapter's report with the measured
    # evidence (inspector.headline): for tasks whose answer is a degradation report.
    compares_with_evidence: ClassVar[bool] = False
    # Columns a published data set of this task must have (train/push.py checks them).
    required_columns: ClassVar[tuple[str, ...]] = ("image",)
    primary_metric: ClassVar[str] = "accuracy"  # the number to compare runs by
    # (key in the metrics, model-index metric type, name): the model card's headline figures.
    headline_metrics: ClassVar[tuple[tuple[str, str, str], ...]] = ()
    # The documented range of every scalar metric; lifecycle tests check results against it.
    metric_ranges: ClassVar[dict[str, tuple[float, float]]] = {}
    # A dataclass of `read`'s options, when they are typed: train/build_dataset.py gives each
    # field as a flag (recipes as `reader_options`). None: the options go to `read` as they are.
    reader_options: ClassVar[type | None] = None
    # `read` needs a folder (`--source`); False where the options may name another source.
    source_required: ClassVar[bool] = True

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.option_names())
        if unknown:
            raise ValueError(f"task {self.name!r} has no option {', '.join(sorted(unknown))}; "
                             f"its options are: {', '.join(self.option_names()) or 'none'}")

    # -- options and the adapter's task file

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return ()

    def options(self) -> dict[str, Any]:
        """JSON-safe options that rebuild this task: `type(task)(**task.options())`."""
        return {}

    def for_dataset(self, dataset) -> Task:
        """This task with the options the data set fixes (e.g. class names); default: itself."""
        return self

    def to_config(self) -> dict[str, Any]:
        """The content of inspector_task.json: task, instruction, answer format, options."""
        return {"task": self.name, "instruction": self.instruction_template(), "answer_format": self.answer_format,
                "needs_question": self.needs_question, "options": self.options()}

    def save_config(self, folder: str | Path, visual_token_budget: int | None = None) -> Path:
        """Write inspector_task.json; with the visual-token budget the adapter was trained with,
        which the app then serves it with (the views, and so the input, depend on it)."""
        config = self.to_config()
        if visual_token_budget is not None:
            config["visual_token_budget"] = int(visual_token_budget)
        path = Path(folder) / TASK_FILE
        path.write_text(json.dumps(config, indent=2) + "\n")
        return path

    def instruction_template(self) -> str:
        """The instruction users of the bare adapter send; "{question}" marks the user's question."""
        return self.instruction({})

    # -- data

    @abstractmethod
    def read(self, source: str | Path | None, seed: int = 0, **options: Any):
        """The task's data -> DatasetDict(train, validation, test): a published layout on disk,
        or rows the task makes itself (the degradation task synthesises them from clean photos).

        Every split has an `image` column (`datasets.Image`) and the task's columns.
        """

    def data_card(self, dataset, source: str | Path | None, seed: int = 0, **options: Any) -> str | None:
        """A dataset card (README.md with YAML metadata) for what `read` returned; None: none."""
        return None

    # -- model input

    def views(self, image: Image.Image, visual_token_budget: int = 256) -> list[Image.Image]:
        """What the model sees of one image: by default the whole image within the budget."""
        return [whole_view(image, visual_token_budget)]

    @abstractmethod
    def instruction(self, example: Mapping[str, Any]) -> str:
        """The user's text of a single-turn example (the first question of a dialogue)."""

    @abstractmethod
    def answer(self, example: Mapping[str, Any]) -> str:
        """The training target of a single-turn example (the text after the assistant header)."""

    def turns(self, example: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The training conversation: (user text, answer) per round."""
        return [(self.instruction(example), self.answer(example))]

    def prompt_turns(self, example: Mapping[str, Any]) -> list[tuple[str, str | None]]:
        """The conversation to answer at serving time; the last answer is None."""
        return [(self.instruction(example), None)]

    def messages(self, example: Mapping[str, Any], num_images: int, *, with_answer: bool = True) -> list[dict]:
        """Chat messages of one example: the whole dialogue for training, else up to the question."""
        turns = self.turns(example) if with_answer else self.prompt_turns(example)
        return build_dialogue_messages(num_images, turns)

    def request(self, question: str | None = None, history: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        """The example the app builds from what a visitor typed (question tasks use it)."""
        return {}

    def ranking_items(self, example: Mapping[str, Any], **options: Any) -> list[RankingItem]:
        """The questions of an example whose candidates are ranked (tasks with evaluation "rank")."""
        raise NotImplementedError(f"task {self.name!r} is evaluated by generation, not by ranking candidates")

    # -- model output

    @abstractmethod
    def parse(self, text: Any) -> Any:
        """Model text -> prediction (JSON-safe); never raises, None where nothing can be read."""

    @abstractmethod
    def reference(self, example: Mapping[str, Any]) -> Any:
        """The ground truth of an example, in the space of `parse`'s predictions (JSON-safe)."""

    @abstractmethod
    def metrics(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, Any]:
        """JSON-safe metrics; every key of `metric_ranges` is present and within its range."""

    @abstractmethod
    def render(self, prediction: Any, raw_text: str = "") -> str:
        """Markdown of one prediction for the app's column; shows the raw text when unparsed."""

    # -- serving: what the app, the CLI and the API show of an answer

    def answer_length(self, app_cap: int) -> int:
        """New tokens per answer when served: what the adapter was trained to write, whatever
        the app's cap (INSPECTOR_MAX_NEW_TOKENS)."""
        return self.max_new_tokens

    def answer_template(self):
        """The answer's fixed layout (`inspector.fields.AnswerTemplate`), where only some values are
        the model's to choose: served by field decoding. None (the default): free text."""
        return None

    def unavailable(self, notice: str) -> Any:
        """The prediction of a model that could not answer (no adapter loaded): none."""
        return None

    def answer_json(self, prediction: Any, raw_text: str = "", notice: str = "") -> dict[str, Any]:
        """One model's answer in the app's JSON: the prediction, the text it came from, its markdown;
        with `notice`, why there is no answer."""
        if notice:
            return {"prediction": None, "raw_text": "", "markdown": f"> **Note:** {notice}"}
        return {"prediction": prediction, "raw_text": raw_text, "markdown": self.render(prediction, raw_text)}

    def answer_markdown(self, answer: Mapping[str, Any]) -> str:
        """The markdown of an `answer_json`, for the app's column."""
        return str(answer.get("markdown", ""))

    # -- evaluation (train/evaluate.py)

    def extra_figures(self, predictions: Mapping[str, Sequence[Any]], references: Sequence[Any]) -> dict[str, Any]:
        """Figures beyond `metrics` for results.json, over every model's predictions: none by default."""
        return {}

    def results_markdown(self, results: Mapping[str, Any]) -> str:
        """results.md: the scalar metrics, base beside adapter."""
        return (f"{results['task']}, {results['split']} split of `{results['dataset']}`: {results['n']} examples\n\n"
                + metrics_table({"base (zero-shot)": results["models"]["base"],
                                 "adapter": results["models"]["adapter"]}) + "\n")


# --------------------------------------------------------------------------- the adapter's task


def task_from_config(config: Mapping[str, Any]) -> Task:
    """A task from the content of inspector_task.json."""
    from inspector.tasks import get_task

    if not isinstance(config, Mapping) or "task" not in config:
        raise ValueError(f"{TASK_FILE} must be a JSON object with a 'task' key, got {str(config)[:80]!r}")
    return get_task(str(config["task"]), **dict(config.get("options") or {}))


def read_visual_token_budget(folder: str | Path) -> int | None:
    """The visual-token budget an adapter folder's inspector_task.json records, if any."""
    path = Path(folder) / TASK_FILE
    try:
        budget = json.loads(path.read_text()).get("visual_token_budget")
    except (OSError, ValueError, AttributeError):
        return None  # no file, or one load_task reports on
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 2 * MIN_VIEW_PATCHES**2:
        return None
    return budget


def load_task(folder: str | Path) -> Task:
    """The task an adapter folder was trained for; a folder without inspector_task.json is a
    degradation adapter (the project's first task, published before the file existed)."""
    from inspector.tasks import get_task

    path = Path(folder) / TASK_FILE
    if not path.is_file():
        return get_task("degradation")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} cannot be read ({error}); re-run train/finetune.py or restore the file") from None
    return task_from_config(config)


# --------------------------------------------------------------------------- views


def whole_view(image: Image.Image, visual_token_budget: int = 256, *, patch: int = QWEN_PATCH) -> Image.Image:
    """The whole image resized to whole Qwen2-VL tokens within `visual_token_budget`.

    For tasks about content (a class, a count, a chart), not pixels: what Qwen2-VL's
    own processor does with `max_pixels = budget * 28 * 28` (aspect kept, sides rounded
    to whole 28 px tokens, at least 2 tokens a side), done here so the processor
    does not resample again and the budget is the recipe's. Never upscales beyond the
    2-token minimum side.
    """
    if visual_token_budget < MIN_VIEW_PATCHES**2:
        raise ValueError(f"visual_token_budget={visual_token_budget} is under {MIN_VIEW_PATCHES**2}, "
                         "the smallest image Qwen2-VL takes (56x56 px)")
    width, height = image.size
    scale = min(1.0, math.sqrt(visual_token_budget * patch * patch / (width * height)))
    grid_w = max(MIN_VIEW_PATCHES, round(width * scale / patch))
    grid_h = max(MIN_VIEW_PATCHES, round(height * scale / patch))
    grid_w, grid_h = min(grid_w, MAX_ASPECT_RATIO * grid_h), min(grid_h, MAX_ASPECT_RATIO * grid_w)  # 200:1
    while grid_w * grid_h > visual_token_budget:  # rounding up may overshoot by a row or column
        if grid_w >= grid_h and grid_w > MIN_VIEW_PATCHES:
            grid_w -= 1
        else:
            grid_h -= 1
    size = (grid_w * patch, grid_h * patch)
    rgb = image.convert("RGB") if image.mode != "RGB" else image
    return rgb.copy() if rgb.size == size else rgb.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)


# --------------------------------------------------------------------------- splits


def stratified_split(strata: Sequence[Hashable], fractions: Mapping[str, float], seed: int,
                     min_per_split: int = 0) -> dict[str, list[int]]:
    """Indices of each split, with every stratum (class, count) in about the same proportions.

    Items are ordered by stratum (shuffled within it, seeded), then dealt one by one to
    the split furthest behind its quota. Each split's size is within 1 of its exact
    share, and each stratum's share of a split within 2 items of exact, also for strata
    too small for sklearn's stratified splitter (which refuses a class of one).
    `min_per_split=1` then moves items so that every stratum with enough items is in
    every split (a class missing from the test split cannot be evaluated), at the cost
    of the split sizes' exactness when there are many small strata.
    """
    import numpy as np

    _check_fractions(fractions)
    names = [name for name, share in fractions.items() if share > 0]
    shares = np.array([fractions[name] for name in names], dtype=float)
    shares = shares / shares.sum()
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for index in sorted(range(len(strata)), key=lambda index: (str(strata[index]), index)):
        groups.setdefault(str(strata[index]), []).append(index)
    assigned = np.zeros(len(names))
    result: dict[str, list[int]] = {name: [] for name in fractions}
    position = 0
    for members in groups.values():
        dealt: dict[str, list[int]] = {name: [] for name in names}
        for index in rng.permutation(members).tolist():
            position += 1
            choice = int(np.argmax(shares * position - assigned))
            assigned[choice] += 1
            dealt[names[choice]].append(index)
        if min_per_split and len(members) >= min_per_split * len(names):
            _fill_empty_splits(dealt, min_per_split)
        for slot, (name, indices) in enumerate(dealt.items()):
            result[name] += indices
            assigned[slot] = len(result[name])  # later strata make up for the moves
    return {name: sorted(indices) for name, indices in result.items()}


def _fill_empty_splits(dealt: dict[str, list[int]], minimum: int) -> None:
    """Move items of one stratum from its largest split to those under `minimum`."""
    for indices in dealt.values():
        while len(indices) < minimum:
            donor = max(dealt, key=lambda other: len(dealt[other]))
            indices.append(dealt[donor].pop())


def _check_fractions(fractions: Mapping[str, float]) -> None:
    if set(fractions) != set(SPLITS):
        raise ValueError(f"split fractions need exactly {', '.join(SPLITS)}; got {', '.join(fractions)}")
    if any(share < 0 for share in fractions.values()) or not math.isclose(sum(fractions.values()), 1.0,
                                                                             abs_tol=1e-6):
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {dict(fractions)}")
    if fractions["train"] <= 0:
        raise ValueError("the train fraction must be positive")


def split_fractions(value: Any, default: Mapping[str, float]) -> dict[str, float]:
    """Fractions from a recipe: a mapping, or a [train, validation, test] list; None keeps the default."""
    if value is None:
        return dict(default)
    if isinstance(value, Mapping):
        fractions = {str(key): float(share) for key, share in value.items()}
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == len(SPLITS):
        fractions = dict(zip(SPLITS, (float(share) for share in value)))
    else:
        raise ValueError(f"split must be [train, validation, test] fractions, got {value!r}")
    _check_fractions(fractions)
    return fractions


# --------------------------------------------------------------------------- text helpers


def normalise_text(text: str) -> str:
    """Lower case, '_'/'-' as spaces, other punctuation dropped, one space between words."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"n't\b", " not", text)
    text = re.sub(r"[_\-/]+", " ", text)
    text = re.sub(r"[^\w\s.%]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def as_text(value: Any) -> str | None:
    """`value` as text for a parser, or None when it is not text (parsers never raise)."""
    if isinstance(value, str):
        return value[:MAX_PARSE_CHARS]
    return None


def unparsed_markdown(what: str, raw_text: str) -> str:
    """The app's column for an answer the parser could not read: say so, show the text."""
    return f"### {what}: unknown\n\nThe model's answer could not be read.\n\n{code_block(raw_text)}\n"


def raw_text_details(raw_text: str) -> str:
    if not (raw_text or "").strip():
        return ""
    return f"\n\n<details><summary>Model's answer</summary>\n\n{code_block(raw_text)}\n\n</details>"


def metrics_table(metrics_by_model: Mapping[str, Mapping[str, Any]], keys: Sequence[str] | None = None) -> str:
    """Markdown table of scalar metrics, one column per model ("base (zero-shot)", "adapter")."""
    models = list(metrics_by_model)
    if keys is None:
        keys = [key for key, value in next(iter(metrics_by_model.values()), {}).items()
                if isinstance(value, (int, float)) and not isinstance(value, bool)]
    rows = [f"| metric | {' | '.join(models)} |", f"| --- |{' --- |' * len(models)}"]
    for key in keys:
        cells = [figure(metrics_by_model[model].get(key)) for model in models]
        rows.append(f"| {key} | {' | '.join(cells)} |")
    return "\n".join(rows)


def figure(value: Any) -> str:
    """A metric as the tables print it (here and on model cards): a float to three decimals,
    an integer as it is, '-' for none."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}" if math.isfinite(value) else str(value)
    return str(value)
