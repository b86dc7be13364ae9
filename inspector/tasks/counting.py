"""Counting objects, e.g. people in shop CCTV frames.

Data on disk: the frames and one CSV of counts, as such data sets are usually shared:

    shop/frames/seq_000001.jpg
    shop/labels.csv        file,count
                           seq_000001.jpg,3

`file` is relative to `frames/` (a header `image`/`filename`/`frame` and
`count`/`people`/`label` is read too). Reading gives an 80/20 split of the labelled
frames, stratified by count; a tenth of the 80 is held out as the validation split
that fine-tuning evaluates on (72/8/20 in all). The model answers with a number; the
parser reads numbers in digits or words from zero-shot prose too.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inspector.tasks.base import (SPLITS, Task, as_text, raw_text_details, split_fractions, stratified_split,
                                  unparsed_markdown)

log = logging.getLogger(__name__)

DEFAULT_SPLIT = {"train": 0.72, "validation": 0.08, "test": 0.20}  # 80/20, a tenth of the 80 for validation
FILE_COLUMNS = ("file", "filename", "image", "frame", "path")
COUNT_COLUMNS = ("count", "people", "label", "n", "number")
_NUMBER_WORDS = {
    "zero": 0, "no": 0, "none": 0, "nobody": 0, "one": 1, "a single": 1, "single": 1, "a lone": 1, "two": 2,
    "a couple of": 2, "a pair of": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50,
}
_ZERO_PHRASES = ("no one", "nobody", "no people", "no person", "empty", "nothing", "not any")
_NUMBER = re.compile(r"(?<![\w.])(\d{1,6})(?!\w|\.\d)|\b(" + "|".join(
    sorted((re.escape(word) for word in _NUMBER_WORDS), key=len, reverse=True)) + r")\b")
_PEOPLE = ("people", "persons", "person", "individuals", "individual", "customers", "customer", "shoppers",
           "shopper", "men", "man", "women", "woman", "figures", "pedestrians", "humans", "visitors")


class CountingTask(Task):
    name = "counting"
    answer_format = "integer"
    max_new_tokens = 8  # a number; zero-shot prose is cut, and the parser reads its start
    title = "Object counting"
    primary_metric = "accuracy"
    headline_metrics = (("accuracy", "accuracy", "exact accuracy"), ("mae", "mae", "mean absolute error"))
    metric_ranges = {"accuracy": (0.0, 1.0), "mae": (0.0, float("inf")), "macro_f1": (0.0, 1.0),
                     "parse_failure_rate": (0.0, 1.0), "count": (0, float("inf"))}

    def __init__(self, noun: str = "people", nouns: Sequence[str] | None = None) -> None:
        """`noun`: what is counted, in the prompt; `nouns`: words the parser ties a number to
        ("3 shoppers"), by default the noun and words for people."""
        self.noun = str(noun)
        self.nouns = tuple(nouns) if nouns else tuple(dict.fromkeys((self.noun, *_PEOPLE)))

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return ("noun", "nouns")

    def options(self) -> dict[str, Any]:
        return {"noun": self.noun, "nouns": list(self.nouns)}

    # -- data

    def read(self, source: str | Path, seed: int = 0, *, split: Any = None, validate: bool = True,
             **options: Any):
        """frames/ + labels.csv -> DatasetDict with columns image, count, file."""
        import datasets

        if options:
            raise ValueError(f"unknown counting reader option(s): {', '.join(options)}")
        root = Path(source)
        rows = read_labels(root, validate=validate)
        indices = stratified_split([row["count"] for row in rows], split_fractions(split, DEFAULT_SPLIT), seed)
        features = datasets.Features({"image": datasets.Image(), "count": datasets.Value("int32"),
                                      "file": datasets.Value("string")})
        return datasets.DatasetDict({
            name: datasets.Dataset.from_list([rows[i] for i in indices[name]], features=features) for name in SPLITS
        })

    # -- model input and target

    def instruction(self, example: Mapping[str, Any]) -> str:
        return f"How many {self.noun} are in this image? Answer with a number only."

    def answer(self, example: Mapping[str, Any]) -> str:
        return str(int(example["count"]))

    # -- output

    def parse(self, text: Any) -> int | None:
        """A count from the model's text, or None.

        In order: a bare number ("3", "three"); a number tied to what is counted ("I can
        see 4 people", "two customers"); "there are N"; the first number. A negation of
        presence ("no one is visible", "the shop is empty") is 0.
        """
        text = as_text(text)
        if text is None:
            return None
        try:
            return _parse_count(text, self.nouns)
        except Exception:  # noqa: BLE001 - a parser bug must not take an evaluation down
            log.warning("count parse failed; prediction counted as unparsed", exc_info=True)
            return None

    def reference(self, example: Mapping[str, Any]) -> int:
        return int(example["count"])

    def metrics(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, Any]:
        return counting_metrics(predictions, references)

    def render(self, prediction: Any, raw_text: str = "") -> str:
        if prediction is None:
            return unparsed_markdown("Count", raw_text)
        return f"### Count: **{prediction}** {self.noun}" + raw_text_details(raw_text) + "\n"


# --------------------------------------------------------------------------- reading


def read_labels(root: Path, validate: bool = True) -> list[dict[str, Any]]:
    """Rows {image, count, file} of frames/ + labels.csv; frames without a label are left out."""
    from inspector.images import ImageError, load_image

    csv_path, frames = root / "labels.csv", root / "frames"
    if not csv_path.is_file() or not frames.is_dir():
        raise FileNotFoundError(f"{root} must hold frames/ and labels.csv (file,count); found "
                                f"{', '.join(sorted(p.name for p in root.iterdir())) if root.is_dir() else 'nothing'}")
    with open(csv_path, newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        header = {name.strip().lower(): name for name in reader.fieldnames or []}
        file_key = next((header[name] for name in FILE_COLUMNS if name in header), None)
        count_key = next((header[name] for name in COUNT_COLUMNS if name in header), None)
        if file_key is None or count_key is None:
            raise ValueError(f"{csv_path} needs a file column ({'/'.join(FILE_COLUMNS)}) and a count column "
                             f"({'/'.join(COUNT_COLUMNS)}); its header is {reader.fieldnames}")
        rows, problems = [], []
        for line, record in enumerate(reader, start=2):
            name, value = (record.get(file_key) or "").strip(), (record.get(count_key) or "").strip()
            path = frames / name
            try:
                count = int(float(value))
                if count < 0 or count != float(value):
                    raise ValueError
            except ValueError:
                problems.append(f"line {line}: count {value!r} is not a whole number >= 0")
                continue
            if not name or not path.is_file():
                problems.append(f"line {line}: frames/{name} does not exist")
                continue
            if validate:
                try:
                    load_image(path)
                except ImageError as error:
                    problems.append(f"line {line}: {error}")
                    continue
            rows.append({"image": str(path), "count": count, "file": name})
    if problems:
        log.warning("skipped %d row(s) of %s, e.g. %s", len(problems), csv_path, problems[0])
    if len(rows) < len(SPLITS):
        raise ValueError(f"{csv_path} gives {len(rows)} usable frame(s); a train/validation/test split needs more"
                         + (f" (first problem: {problems[0]})" if problems else ""))
    return rows


# --------------------------------------------------------------------------- parsing


def _parse_count(text: str, nouns: Sequence[str]) -> int | None:
    lowered = re.sub(r"\s+", " ", text.lower().replace("\u2019", "'")).strip()
    bare = lowered.strip(" .!\"'`*")
    if re.fullmatch(r"\d{1,6}", bare):
        return int(bare)
    if bare in _NUMBER_WORDS:
        return _NUMBER_WORDS[bare]
    numbers = [(match.start(), match.end(), _value(match)) for match in _NUMBER.finditer(lowered)]
    noun_pattern = r"^\s*(?:\w+\s+){0,2}?(?:" + "|".join(re.escape(noun) for noun in nouns) + r")\b"
    for _, end, value in numbers:
        if re.match(noun_pattern, lowered[end:]):
            return value
    if any(re.search(rf"\b{re.escape(phrase)}\b", lowered) for phrase in _ZERO_PHRASES):
        return 0
    there = re.search(r"\bthere (?:is|are|were|was|appear to be|seem to be) (?:about |around |approximately )?",
                      lowered)
    if there:
        after = [value for start, _, value in numbers if start == there.end()]
        if after:
            return after[0]
    digits = [value for start, end, value in numbers if lowered[start:end].isdigit()]
    words = [value for start, end, value in numbers if not lowered[start:end].isdigit()
             and lowered[start:end] not in ("no", "none", "single")]
    return (digits or words or [None])[0]


def _value(match: re.Match) -> int:
    return int(match[1]) if match[1] is not None else _NUMBER_WORDS[match[2]]


# --------------------------------------------------------------------------- metrics


def counting_metrics(predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, Any]:
    """Exact accuracy, mean absolute error, and precision/recall/F1 of each true count.

    An unparsed prediction (None) is wrong for accuracy and recall. `mae` is over all
    predictions, an unparsed one costing its reference (as if it had said 0), so it is
    always defined; `mae_parsed` is over the parsed ones (None when there are none).
    """
    from sklearn.metrics import precision_recall_fscore_support

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        raise ValueError("no predictions to score: the evaluation split is empty")
    refs = np.asarray([int(ref) for ref in references])
    parsed = np.asarray([isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in predictions])
    preds = np.asarray([int(p) if ok else -1 for p, ok in zip(predictions, parsed)])
    errors = np.abs(preds - refs)
    labels = sorted(set(refs.tolist()))
    precision, recall, f1, support = precision_recall_fscore_support(refs, preds, labels=labels, zero_division=0)
    return {
        "count": int(len(refs)),
        "accuracy": float(np.mean(parsed & (preds == refs))),
        "mae": float(np.where(parsed, errors, np.abs(refs)).mean()),
        "mae_parsed": float(errors[parsed].mean()) if parsed.any() else None,
        "within_one": float(np.mean(parsed & (errors <= 1))),
        "macro_f1": float(np.mean(f1)),
        "parse_failure_rate": float(1 - parsed.mean()),
        "per_count": {str(label): {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                                   "support": int(support[i])} for i, label in enumerate(labels)},
    }
