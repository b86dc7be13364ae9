"""Chart question answering in the ChartQA format (image, query, label), scored by relaxed accuracy.

Two on-disk layouts are read, both as published:

1. The Hub dataset `HuggingFaceM4/ChartQA`, downloaded as a folder
   (`hf download HuggingFaceM4/ChartQA --repo-type dataset --local-dir DIR`):
   `DIR/data/{train,val,test}-NNNNN-of-NNNNN-<hash>.parquet` with columns
   `image` ({bytes, path}), `query` (str), `label` (list of str) and
   `human_or_machine` (0 human, 1 machine). The parquet-converter layout
   `DIR/default/{train,val,test}/NNNN.parquet` is read the same way.
2. The original release (github.com/vis-nlp/ChartQA, "ChartQA Dataset" folder):
   `DIR/{train,val,test}/{split}_human.json` and `{split}_augmented.json`, lists of
   `{"imgname", "query", "label"}`, with the charts in `DIR/{split}/png/`.

Splits: train -> train, val -> validation, test -> test (a missing val becomes 5 % of
train). Rows: image, query, label (the first answer), answers (all of them), source
("human" or "augmented": ChartQA reports both halves of its test set).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inspector.tasks.base import Task, as_text, raw_text_details, unparsed_markdown

log = logging.getLogger(__name__)

RELAXED_TOLERANCE = 0.05  # ChartQA: a numeric answer within 5 % of the label is correct
SPLIT_NAMES = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
SOURCES = ("human", "augmented")
VALIDATION_FROM_TRAIN = 0.05
_ANSWER_LABEL = re.compile(r"\b(?:final\s+)?answer\s*(?::|=|\bis\b)\s*(?P<value>[^\n]+)", re.IGNORECASE)
_NUMBER = re.compile(r"[-\u2212]?\$?\d[\d,]*(?:\.\d+)?%?|[-\u2212]?\.\d+%?")
_STATED = re.compile(r"\b(?:is|was|are|were|equals|equal to|be|reached|totals?|about|around|approximately)\s+"
                     r"(?:about |around |approximately |roughly |nearly |almost )?(?P<value>[-\u2212]?\$?\d[\d,]*"
                     r"(?:\.\d+)?%?)", re.IGNORECASE)


class ChartQATask(Task):
    name = "chartqa"
    needs_question = True
    answer_format = "short-text"
    max_new_tokens = 16  # a number or a few words
    title = "Chart question answering"
    primary_metric = "relaxed_accuracy"
    headline_metrics = (("relaxed_accuracy", "accuracy", "relaxed accuracy"),)
    metric_ranges = {"relaxed_accuracy": (0.0, 1.0), "exact_match": (0.0, 1.0), "parse_failure_rate": (0.0, 1.0),
                     "count": (0, float("inf"))}

    # -- data

    def read(self, source: str | Path, seed: int = 0, *, max_examples: int | Mapping[str, int] | None = None,
             **options: Any):
        """ChartQA on disk (Hub parquet or original JSON) -> DatasetDict with image, query, label, answers, source."""
        import datasets

        if options:
            raise ValueError(f"unknown chartqa reader option(s): {', '.join(options)}")
        root = Path(source)
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is not a folder; pass a download of HuggingFaceM4/ChartQA or the "
                                    "'ChartQA Dataset' folder of the original release")
        parquet = _parquet_files(root)
        splits = _read_parquet(parquet) if parquet else _read_original(_original_root(root))
        if "test" not in splits:
            raise ValueError(f"{root} has no test split: ChartQA's test split is the benchmark; check the download")
        if "validation" not in splits:
            parts = splits["train"].train_test_split(test_size=VALIDATION_FROM_TRAIN, seed=seed)
            splits["train"], splits["validation"] = parts["train"], parts["test"]
        splits = {name: _limit(splits[name], max_examples, name, seed) for name in ("train", "validation", "test")}
        return datasets.DatasetDict(splits)

    # -- model input and target

    def instruction(self, example: Mapping[str, Any]) -> str:
        return f"{example.get('query', '{question}')}\nAnswer the question with a single word or number."

    def answer(self, example: Mapping[str, Any]) -> str:
        return str(example["label"])

    def request(self, question: str | None = None, history: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        if not (question or "").strip():
            raise ValueError("ask a question about the chart, e.g. 'What is the highest value?'")
        return {"query": question.strip()}

    # -- output

    def parse(self, text: Any) -> str | None:
        """The short answer in the model's text, or None when it is empty.

        In order: a labelled answer ("Answer: 42"); a short answer as it is (up to five
        words, quotes and a final period dropped); a leading yes/no; the number a
        sentence states ("... was 45.3% in 2019" -> 45.3%); the last number of the first
        sentence; else the first sentence. Zero-shot prose is thus scored on its
        answer, while the fine-tuned adapter's terse answers pass through unchanged.
        """
        text = as_text(text)
        if text is None:
            return None
        try:
            answer = _parse_answer(text)
        except Exception:  # noqa: BLE001 - a parser bug must not take an evaluation down
            log.warning("chartqa parse failed; prediction counted as unparsed", exc_info=True)
            return None
        return answer or None

    def reference(self, example: Mapping[str, Any]) -> dict[str, Any]:
        answers = list(example.get("answers") or [example["label"]])
        return {"answers": [str(answer) for answer in answers], "source": example.get("source")}

    def metrics(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, Any]:
        return chartqa_metrics(predictions, references)

    def render(self, prediction: Any, raw_text: str = "") -> str:
        if prediction is None:
            return unparsed_markdown("Answer", raw_text)
        return f"### Answer: **{_escape(prediction)}**" + raw_text_details(raw_text) + "\n"


# --------------------------------------------------------------------------- reading


def _parquet_files(root: Path) -> dict[str, list[str]]:
    """Split -> parquet files, from the file name prefix (data/val-000...) or the folder (default/val/)."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.parquet")):
        prefix = path.name.split("-")[0].split(".")[0]
        split = SPLIT_NAMES.get(prefix) or SPLIT_NAMES.get(path.parent.name)
        if split:
            found.setdefault(split, []).append(str(path))
    return found


def _read_parquet(files: dict[str, list[str]]) -> dict[str, Any]:
    import datasets

    loaded = datasets.load_dataset("parquet", data_files=files)
    splits = {}
    for name, split in loaded.items():
        missing = {"image", "query", "label"} - set(split.column_names)
        if missing:
            raise ValueError(f"the {name} parquet files lack column(s) {', '.join(sorted(missing))}: is this "
                             "HuggingFaceM4/ChartQA?")
        source_names = None
        feature = split.features.get("human_or_machine")
        if feature is not None and hasattr(feature, "names"):
            source_names = feature.names
        splits[name] = split.map(_normalise_hub_row, fn_kwargs={"source_names": source_names},
                                 remove_columns=[c for c in split.column_names if c not in ("image", "query")],
                                 features=_features(), desc=f"ChartQA {name}")
    return splits


def _normalise_hub_row(row: dict, source_names: Sequence[str] | None) -> dict:
    label = row["label"]
    answers = [str(answer) for answer in label] if isinstance(label, (list, tuple)) else [str(label)]
    kind = row.get("human_or_machine")
    if isinstance(kind, int) and source_names is not None:
        kind = source_names[kind]
    source = {"human": "human", "machine": "augmented", "augmented": "augmented"}.get(str(kind), "")
    return {"query": row["query"], "label": answers[0] if answers else "", "answers": answers, "source": source}


def _original_root(root: Path) -> Path:
    """The folder holding train/ val/ test/ of the original release ('ChartQA Dataset' or below)."""
    for candidate in (root, root / "ChartQA Dataset", *sorted(p for p in root.iterdir() if p.is_dir())):
        if list(candidate.glob("*/*_human.json")) or list(candidate.glob("*/*_augmented.json")):
            return candidate
    raise FileNotFoundError(f"{root} holds neither ChartQA parquet files (data/train-*.parquet) nor the original "
                            "layout (train/train_human.json, train/png/)")


def _read_original(root: Path) -> dict[str, Any]:
    import datasets

    splits = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name in SPLIT_NAMES):
        rows = []
        for source in SOURCES:
            path = folder / f"{folder.name}_{source}.json"
            if not path.is_file():
                continue
            for entry in json.loads(path.read_text()):
                image = folder / "png" / entry["imgname"]
                if not image.is_file():
                    raise FileNotFoundError(f"{path} names {entry['imgname']}, which is not in {folder / 'png'}")
                label = entry["label"]
                answers = [str(a) for a in label] if isinstance(label, list) else [str(label)]
                rows.append({"image": str(image), "query": entry["query"], "label": answers[0], "answers": answers,
                             "source": source})
        if rows:
            splits[SPLIT_NAMES[folder.name]] = datasets.Dataset.from_list(rows, features=_features())
    if "train" not in splits:
        raise FileNotFoundError(f"{root} has no train/train_human.json or train/train_augmented.json")
    return splits


def _features():
    import datasets

    return datasets.Features({"image": datasets.Image(), "query": datasets.Value("string"),
                              "label": datasets.Value("string"), "answers": datasets.Sequence(datasets.Value("string")),
                              "source": datasets.Value("string")})


def _limit(split, max_examples, name: str, seed: int):
    limit = max_examples.get(name) if isinstance(max_examples, Mapping) else max_examples
    if limit is None or limit >= len(split):
        return split
    return split.shuffle(seed=seed).select(range(int(limit)))


# --------------------------------------------------------------------------- parsing


def _parse_answer(text: str) -> str:
    text = text.strip().strip("`").strip()
    labelled = _ANSWER_LABEL.search(text)
    if labelled:
        text = labelled["value"]
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    short = _clean(first_line)
    if len(short.split()) <= 5:
        return short
    sentence = re.split(r"(?<=[.!?])\s+(?=[A-Z])|(?<=[!?])\s+|\.\s*$", first_line)[0]
    leading = re.match(r"^(yes|no)\b", sentence, re.IGNORECASE)
    if leading:
        return leading[1].capitalize()
    stated = list(_STATED.finditer(sentence))
    if stated:
        return _clean(stated[0]["value"])
    numbers = _NUMBER.findall(sentence)
    if numbers:
        return _clean(numbers[-1])
    return _clean(sentence)


def _clean(answer: str) -> str:
    answer = answer.strip().strip("\"'*`").strip()
    return re.sub(r"[.;,]+$", "", answer).strip()


def _escape(text: str) -> str:
    return re.sub(r"([\\`*_{}\[\]<>#|])", r"\\\1", str(text))


# --------------------------------------------------------------------------- metrics


def to_number(text: Any) -> float | None:
    """A float from an answer: "1,234", "$5", "45%", "-3.2" (a percent sign is dropped, not
    divided by 100: ChartQA labels write percentages without it, "62" for 62 %)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str):
        return None
    cleaned = text.strip().replace("\u2212", "-").replace(",", "").replace("$", "").rstrip("%").strip()
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def relaxed_match(prediction: Any, target: Any, tolerance: float = RELAXED_TOLERANCE) -> bool:
    """ChartQA's relaxed correctness: numbers within `tolerance` relative error of the
    target (exactly equal when the target is 0), anything else equal ignoring case and
    surrounding spaces (and a final period)."""
    if prediction is None:
        return False
    predicted, expected = to_number(prediction), to_number(target)
    if predicted is not None and expected is not None:
        if expected == 0:
            return predicted == 0
        return abs(predicted - expected) / abs(expected) <= tolerance
    return _clean(str(prediction)).lower() == _clean(str(target)).lower()


def _answers(reference: Any) -> tuple[list[str], str | None]:
    if isinstance(reference, Mapping):
        return [str(a) for a in reference.get("answers") or [reference.get("label", "")]], reference.get("source")
    if isinstance(reference, (list, tuple)):
        return [str(a) for a in reference], None
    return [str(reference)], None


def chartqa_metrics(predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, Any]:
    """Relaxed accuracy (the ChartQA metric; correct if any reference answer matches), exact
    match, and the relaxed accuracy of the human and augmented halves when the
    references say which half they are from."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        raise ValueError("no predictions to score: the evaluation split is empty")
    relaxed, exact, sources = [], [], []
    for prediction, reference in zip(predictions, references):
        answers, source = _answers(reference)
        relaxed.append(any(relaxed_match(prediction, answer) for answer in answers))
        exact.append(prediction is not None and any(_clean(str(prediction)).lower() == _clean(a).lower()
                                                     for a in answers))
        sources.append(source)
    relaxed_array = np.asarray(relaxed)
    result = {
        "count": len(references),
        "relaxed_accuracy": float(relaxed_array.mean()),
        "exact_match": float(np.mean(exact)),
        "parse_failure_rate": float(np.mean([p is None for p in predictions])),
    }
    for source in SOURCES:
        chosen = np.asarray([s == source for s in sources])
        if chosen.any():
            result[f"relaxed_accuracy_{source}"] = float(relaxed_array[chosen].mean())
            result[f"count_{source}"] = int(chosen.sum())
    return result

