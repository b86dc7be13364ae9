"""Classification into a fixed label set, e.g. forensic triage of seized images.

Data on disk: one folder per class, named `<index>_<name>`, images anywhere inside:

    raw_data/0_irrelevant/IMG_0001.jpg
    raw_data/1_weapons/...
    raw_data/2_drugs/...

The index fixes the class order (the confusion matrix, the prompt); a layout without
indices is ordered by name. Reading gives a stratified train/validation/test split
(72/13/15 by default), then grows the under-represented classes of the train split
only (so no augmented copy of a test image is trained on): each original image of a
class with fewer than `minority_ratio` x the largest class's count gets
`augment_per_image` new images (flip, rotation, brightness/contrast, noise, blur).

The model answers with the class name. The parser also reads zero-shot prose: "This
appears to be a handgun, so: weapons." -> "weapons"; see `ClassificationTask.parse`.
"""

from __future__ import annotations

import io
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from inspector.images import ImageError, iter_image_paths, load_image
from inspector.tasks.base import (SPLITS, Task, as_text, raw_text_details, split_fractions, stratified_split,
                                  unparsed_markdown)

log = logging.getLogger(__name__)

DEFAULT_SPLIT = {"train": 0.72, "validation": 0.13, "test": 0.15}
_FOLDER = re.compile(r"^(?P<index>\d+)[_\- ]+(?P<name>.+)$")
# Words that deny the class right after them: "not a weapon", "no drugs", "rather than documents".
_NEGATIONS = ("not", "no", "without", "neither", "nor", "non", "rather than", "instead of", "excluding")
_PUNCTUATION = frozenset(",.;:!?()")
_NEGATION_WINDOW = 3  # words between a negation and the class it denies: "not a real weapon"
_LABELLED = re.compile(r"\b(?:class|category|label|answer|classification|prediction|verdict)\s*(?:is|:|=|-)\s*"
                       r"(?P<value>[^\n.,;]{1,80})", re.IGNORECASE)


class ClassificationTask(Task):
    name = "classification"
    answer_format = "class-name"
    max_new_tokens = 12  # a class name; zero-shot prose is cut, and the parser reads its start
    title = "Image classification"
    primary_metric = "accuracy"
    headline_metrics = (("accuracy", "accuracy", "accuracy"), ("macro_f1", "f1", "macro F1"))
    metric_ranges = {"accuracy": (0.0, 1.0), "macro_precision": (0.0, 1.0), "macro_recall": (0.0, 1.0),
                     "macro_f1": (0.0, 1.0), "weighted_f1": (0.0, 1.0), "parse_failure_rate": (0.0, 1.0),
                     "count": (0, float("inf"))}

    def __init__(self, classes: Sequence[str] | None = None, descriptions: Mapping[str, str] | None = None,
                 synonyms: Mapping[str, Sequence[str]] | None = None) -> None:
        """`classes`: names in label order (known after `read`); `descriptions`: a phrase per class
        for the prompt; `synonyms`: extra words the parser maps to a class ("gun" -> weapons)."""
        self.classes = [str(name) for name in classes] if classes else []
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"class names must be distinct, got {self.classes}")
        self.descriptions = dict(descriptions or {})
        self.synonyms = {str(key): [str(word) for word in words] for key, words in (synonyms or {}).items()}
        for key in (*self.descriptions, *self.synonyms):
            if self.classes and key not in self.classes:
                raise ValueError(f"descriptions/synonyms name {key!r}, which is not one of the classes "
                                 f"({', '.join(self.classes)})")
        self._aliases = _build_aliases(self.classes, self.synonyms)

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return ("classes", "descriptions", "synonyms")

    def options(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "descriptions": dict(self.descriptions),
                "synonyms": {key: list(words) for key, words in self.synonyms.items()}}

    def for_dataset(self, dataset) -> ClassificationTask:
        """The task with the class names of the data set's `label` column (a ClassLabel)."""
        split = dataset[next(iter(dataset))] if hasattr(dataset, "keys") else dataset
        names = list(split.features["label"].names)
        if self.classes and self.classes != names:
            raise ValueError(f"the recipe's classes {self.classes} differ from the data set's {names}")
        return ClassificationTask(names, self.descriptions, self.synonyms)

    # -- data

    def read(self, source: str | Path, seed: int = 0, *, split: Any = None, augment_per_image: int = 2,
             minority_ratio: float = 0.5, validate: bool = True, **options: Any):
        """Class folders -> DatasetDict with columns image, label (ClassLabel), file, augmented, augmentation."""
        import datasets

        if options:
            raise ValueError(f"unknown classification reader option(s): {', '.join(options)}")
        if augment_per_image < 0 or not 0 <= minority_ratio <= 1:
            raise ValueError("augment_per_image must be >= 0 and minority_ratio within [0, 1]")
        root = Path(source)
        classes, files = read_class_folders(root, validate=validate)
        labels = [label for label, _ in files]
        indices = stratified_split(labels, split_fractions(split, DEFAULT_SPLIT), seed, min_per_split=1)
        features = datasets.Features({
            "image": datasets.Image(), "label": datasets.ClassLabel(names=classes), "file": datasets.Value("string"),
            "augmented": datasets.Value("bool"), "augmentation": datasets.Value("string"),
        })
        splits = {}
        for name in SPLITS:
            rows = [{"image": str(path), "label": label, "file": path.relative_to(root).as_posix(),
                     "augmented": False, "augmentation": ""} for label, path in (files[i] for i in indices[name])]
            if name == "train":
                rows += augment_minorities(rows, root, augment_per_image, minority_ratio, seed)
            splits[name] = datasets.Dataset.from_list(rows, features=features)
        return datasets.DatasetDict(splits)

    # -- model input and target

    def instruction(self, example: Mapping[str, Any]) -> str:
        self._require_classes()
        if self.descriptions:
            listed = "\n".join(f"- {name}: {self.descriptions[name]}" if name in self.descriptions else f"- {name}"
                               for name in self.classes)
            return (f"Classify this image into exactly one of these classes:\n{listed}\n"
                    "Answer with the class name only.")
        return (f"Classify this image into exactly one of these classes: {', '.join(self.classes)}. "
                "Answer with the class name only.")

    def answer(self, example: Mapping[str, Any]) -> str:
        self._require_classes()
        return self.classes[int(example["label"])]

    # -- output

    def parse(self, text: Any) -> str | None:
        """A class name from the model's text, or None.

        In order: the whole answer is a class (or its folder name, or its index); a
        labelled answer ("Class: drugs"); the earliest class mentioned in the text that
        is not negated ("not a weapon, just documents" -> documents). Plurals, case,
        underscores and the recipe's synonyms are accepted.
        """
        text = as_text(text)
        if text is None or not self.classes:
            return None
        try:
            return self._parse(text)
        except Exception:  # noqa: BLE001 - a parser bug must not take an evaluation down
            log.warning("classification parse failed; prediction counted as unparsed", exc_info=True)
            return None

    def _parse(self, text: str) -> str | None:
        whole = tuple(word for word in _tokens(text) if word not in _PUNCTUATION)
        if whole in self._aliases:
            return self._aliases[whole]
        if len(whole) == 1 and whole[0].isdigit() and int(whole[0]) < len(self.classes):
            return self.classes[int(whole[0])]
        for match in _LABELLED.finditer(text):
            found = self._mentions(_tokens(match["value"]))
            if found:
                return found[0]
        found = self._mentions(_tokens(text))
        return found[0] if found else None

    def _mentions(self, words: list[str]) -> list[str]:
        """Classes mentioned and not negated, in order of appearance; longer aliases win overlaps."""
        spans = []
        for alias, name in self._aliases.items():
            for start in range(len(words) - len(alias) + 1):
                if tuple(words[start:start + len(alias)]) == alias:
                    spans.append((start, start + len(alias), name))
        spans.sort(key=lambda span: (span[0], -(span[1] - span[0])))
        taken, found = -1, []
        for start, end, name in spans:
            if start < taken:
                continue  # inside a longer alias already read ("child abuse" before "abuse")
            taken = end
            if not _negated(words, start):
                found.append(name)
        return found

    def reference(self, example: Mapping[str, Any]) -> str:
        return self.answer(example)

    def metrics(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, Any]:
        self._require_classes()
        return classification_metrics(predictions, references, self.classes)

    def render(self, prediction: Any, raw_text: str = "") -> str:
        if prediction is None:
            return unparsed_markdown("Class", raw_text)
        return f"### Class: **{prediction}**" + raw_text_details(raw_text) + "\n"

    def _require_classes(self) -> None:
        if not self.classes:
            raise ValueError("the classification task has no classes yet: bind them with "
                             "task.for_dataset(dataset) or name them in the recipe (classes: [...])")


# --------------------------------------------------------------------------- reading


def class_name(folder: str) -> str:
    """`1_weapons` -> `weapons`; a folder without an index keeps its name."""
    match = _FOLDER.match(folder)
    return match["name"] if match else folder


def read_class_folders(root: Path, validate: bool = True) -> tuple[list[str], list[tuple[int, Path]]]:
    """(class names in label order, [(label, path)]) of a folder of class folders.

    With `validate`, each image is decoded once (`load_image`); unreadable files are
    skipped with a warning, so a bad file fails here and not hours into training.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; pass the folder holding the class folders "
                                "(raw_data/0_irrelevant/, raw_data/1_.../)")
    folders = [entry for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")]
    if len(folders) < 2:
        raise ValueError(f"{root} holds {len(folders)} class folder(s); classification needs at least 2 "
                         "(raw_data/0_irrelevant/, raw_data/1_.../)")
    indexed = [_FOLDER.match(folder.name) for folder in folders]
    if all(indexed):
        folders.sort(key=lambda folder: (int(_FOLDER.match(folder.name)["index"]), folder.name))
    else:
        folders.sort(key=lambda folder: folder.name)
    names = [class_name(folder.name) for folder in folders]
    if len(set(names)) != len(names):
        raise ValueError(f"two class folders share a name once the index is dropped: {names}")
    files, skipped = [], []
    for label, folder in enumerate(folders):
        paths = list(iter_image_paths([folder]))
        if validate:
            paths, bad = _readable(paths)
            skipped += bad
        if not paths:
            raise ValueError(f"class folder {folder} holds no readable image")
        files += [(label, path) for path in paths]
    if skipped:
        log.warning("skipped %d unreadable file(s), e.g. %s", len(skipped), skipped[0])
    return names, files


def _readable(paths: list[Path]) -> tuple[list[Path], list[str]]:
    good, bad = [], []
    for path in paths:
        try:
            load_image(path)
            good.append(path)
        except ImageError as error:
            bad.append(f"{path}: {error}")
    return good, bad


# --------------------------------------------------------------------------- augmentation


def augment_minorities(rows: list[dict], root: Path, per_image: int, minority_ratio: float,
                       seed: int) -> list[dict]:
    """New rows for each original of the classes under `minority_ratio` x the largest class."""
    counts = Counter(row["label"] for row in rows)
    if per_image == 0 or not counts:
        return []
    largest = max(counts.values())
    minority = {label for label, count in counts.items() if count < minority_ratio * largest}
    rng = np.random.default_rng([seed, 1])
    added = []
    for row in rows:
        if row["label"] not in minority:
            continue
        original = load_image(row["image"])
        for copy in range(per_image):
            image, description = augment_image(original, rng)
            added.append({"image": {"bytes": _png_bytes(image), "path": None}, "label": row["label"],
                          "file": f"{row['file']}#aug{copy + 1}", "augmented": True, "augmentation": description})
    log.info("augmented %d minority class(es) with %d new image(s)", len(minority), len(added))
    return added


def augment_image(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """A plausible variant of a photo, and what was done: always a small rotation and a
    brightness/contrast change; a horizontal flip, noise and blur at random."""
    from inspector.evidence import degrade

    steps = []
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
        steps.append("flip")
    angle = float(rng.uniform(-15, 15))
    fill = tuple(int(v) for v in np.asarray(image).reshape(-1, 3).mean(axis=0))
    image = image.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=fill)
    steps.append(f"rotate({angle:.1f})")
    brightness, contrast = (float(v) for v in rng.uniform(0.75, 1.25, size=2))
    image = ImageEnhance.Contrast(ImageEnhance.Brightness(image).enhance(brightness)).enhance(contrast)
    steps.append(f"brightness({brightness:.2f}),contrast({contrast:.2f})")
    spec = {}
    if rng.random() < 0.5:
        spec["noise"] = {"sigma": round(float(rng.uniform(3, 10)), 2)}
        steps.append(f"noise({spec['noise']['sigma']})")
    if rng.random() < 0.3:
        spec["blur"] = {"sigma": round(float(rng.uniform(0.5, 1.5)), 2)}
        steps.append(f"blur({spec['blur']['sigma']})")
    if spec:
        image = degrade(image, spec, seed=int(rng.integers(2**31)))
    return image, ",".join(steps)


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------- parsing helpers


def _tokens(text: str) -> list[str]:
    """Lower-case words and clause punctuation: "isn't a gun, it's X" -> is not a gun , it s x."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"n't\b", " not", text).replace("cannot", "can not")
    return re.findall(r"[a-z0-9]+|[,.;:!?()]", re.sub(r"[_\-/]+", " ", text))


def _build_aliases(classes: Sequence[str], synonyms: Mapping[str, Sequence[str]]) -> dict[tuple[str, ...], str]:
    """Phrase (as words) -> class: the name, its folder form, singular/plural, synonyms."""
    aliases: dict[tuple[str, ...], str] = {}
    for index, name in enumerate(classes):
        for phrase in (name, f"{index} {name}", *synonyms.get(name, ())):
            base = tuple(word for word in _tokens(phrase) if word not in _PUNCTUATION)
            for variant in (base, *_number_variants(base)):
                if variant:
                    aliases.setdefault(variant, name)
    return aliases


def _number_variants(words: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Singular and plural of the last word: weapons <-> weapon, glasses <-> glass."""
    if not words:
        return []
    *head, last = words
    forms = {last + "s", last + "es"}
    if last.endswith("es"):
        forms.add(last[:-2])
    if last.endswith("s"):
        forms.add(last[:-1])
    return [(*head, form) for form in forms if len(form) > 2]


def _negated(words: list[str], start: int) -> bool:
    """A negation within a few words before, in the same clause: "not a weapon", "no drugs"."""
    window: list[str] = []
    for word in reversed(words[max(0, start - _NEGATION_WINDOW - 1):start]):
        if word in _PUNCTUATION:
            break
        window.insert(0, word)
    text = " " + " ".join(window) + " "
    return any(f" {negation} " in text for negation in _NEGATIONS)


# --------------------------------------------------------------------------- metrics


def classification_metrics(predictions: Sequence[Any], references: Sequence[Any],
                           classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, macro and weighted means, and the
    confusion matrix (rows: true class; columns: predicted class, then "unparsed").

    An unparsed prediction (None) is wrong: it counts against recall, in no class's precision.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    _check_lengths(predictions, references)
    classes = list(classes)
    unknown = [ref for ref in references if ref not in classes]
    if unknown:
        raise ValueError(f"reference labels {sorted(set(map(str, unknown)))[:5]} are not classes {classes}")
    unparsed = "\x00unparsed"
    predicted = [p if p in classes else unparsed for p in predictions]
    references = list(references)
    n = len(references)
    if n == 0:
        raise ValueError("no predictions to score: the evaluation split is empty")
    labels = [*classes, unparsed]
    matrix = confusion_matrix(references, predicted, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(references, predicted, labels=classes,
                                                                     zero_division=0)
    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                        "support": int(support[i])} for i, name in enumerate(classes)}
    weights = np.asarray(support, dtype=float)
    return {
        "count": n,
        "accuracy": float(np.mean([p == r for p, r in zip(predicted, references)])),
        "macro_precision": float(np.mean(precision)),
        "macro_recall": float(np.mean(recall)),
        "macro_f1": float(np.mean(f1)),
        "weighted_f1": float(np.average(f1, weights=weights)) if weights.sum() else 0.0,
        "parse_failure_rate": float(sum(p == unparsed for p in predicted) / n),
        "per_class": per_class,
        "confusion_matrix": {"labels": classes, "columns": [*classes, "unparsed"],
                             "matrix": [[int(v) for v in row] for row in matrix[:len(classes)]]},
    }


def _check_lengths(predictions: Sequence[Any], references: Sequence[Any]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
