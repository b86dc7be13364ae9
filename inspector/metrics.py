"""Scores of degradation reports against known labels: what `train/evaluate.py` reports.

Each image has gold labels and a predicted report, both as `{type: severity word}` over
the four `DEGRADATION_TYPES`. The scores:

- per type, *presence* (severity other than "none") as a binary decision: precision,
  recall, F1 and support (images where the type is present);
- `macro_f1`: the mean of the four presence F1s;
- `exact_set_accuracy`: share of images whose set of present types is exactly right
  (severities aside);
- `severity_accuracy`: among the (image, type) pairs present in the truth, the share
  given the right severity word (a model that says "none" everywhere scores 0);
- `parse_failure_rate`: share of answers `parse_report` could not read. An unread
  answer counts as "none" for every type in the other scores, as the app shows it;
- a confusion matrix per type over the severity words (rows truth, columns prediction).

Pure Python, NumPy and scikit-learn: no model, so the tests check it on known inputs.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from inspector.taxonomy import DEGRADATION_TYPES, SEVERITIES

Labels = Mapping[str, str]


def complete(labels: Labels) -> dict[str, str]:
    """All four types, missing ones as "none"; unknown words raise ValueError."""
    for kind, word in labels.items():
        if kind not in DEGRADATION_TYPES or word not in SEVERITIES:
            raise ValueError(f"not a degradation label: {kind!r}: {word!r}")
    return {kind: labels.get(kind, "none") for kind in DEGRADATION_TYPES}


def presence_scores(gold: Sequence[Labels], predicted: Sequence[Labels]) -> dict[str, dict[str, float]]:
    """Per type: precision, recall and F1 of presence, and the support (present in truth)."""
    gold, predicted = _checked(gold, predicted)
    scores = {}
    for kind in DEGRADATION_TYPES:
        truth = [labels[kind] != "none" for labels in gold]
        guess = [labels[kind] != "none" for labels in predicted]
        precision, recall, f1, _ = precision_recall_fscore_support(
            truth, guess, average="binary", pos_label=True, zero_division=0)
        scores[kind] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                        "support": int(sum(truth))}
    return scores


def confusion(gold: Sequence[Labels], predicted: Sequence[Labels]) -> dict[str, list[list[int]]]:
    """Per type, a 4x4 matrix over `SEVERITIES`: rows the truth, columns the prediction."""
    gold, predicted = _checked(gold, predicted)
    return {kind: confusion_matrix([g[kind] for g in gold], [p[kind] for p in predicted],
                                   labels=list(SEVERITIES)).tolist()
            for kind in DEGRADATION_TYPES}


def score(gold: Sequence[Labels], predicted: Sequence[Labels], parsed: Sequence[bool] | None = None) -> dict:
    """The summary of one model on one split (the `models.<name>` entry of results.json)."""
    gold, predicted = _checked(gold, predicted)
    per_type = presence_scores(gold, predicted)
    present_sets = [(frozenset(k for k, w in g.items() if w != "none"), frozenset(k for k, w in p.items() if w != "none"))
                    for g, p in zip(gold, predicted)]
    present_pairs = [(g[k], p[k]) for g, p in zip(gold, predicted) for k in DEGRADATION_TYPES if g[k] != "none"]
    parsed = list(parsed) if parsed is not None else [True] * len(gold)
    if len(parsed) != len(gold):
        raise ValueError(f"{len(parsed)} parse flags for {len(gold)} images")
    return {
        "macro_f1": float(np.mean([per_type[k]["f1"] for k in DEGRADATION_TYPES])),
        "exact_set_accuracy": _mean([truth == guess for truth, guess in present_sets]),
        "severity_accuracy": _mean([truth == guess for truth, guess in present_pairs]),
        "parse_failure_rate": _mean([not ok for ok in parsed]),
        "per_type": per_type,
    }


def constant_baselines(gold: Sequence[Labels]) -> dict[str, float]:
    """Macro F1 of two answers that ignore the image: reference points for a model's score.

    "always_present" (every type present at any severity) is the one to beat: presence
    F1 rewards over-reporting, and it reaches 2p / (1 + p) for a type present in a
    share p of the images.
    """
    gold = [complete(labels) for labels in gold]
    everything = [{kind: "moderate" for kind in DEGRADATION_TYPES}] * len(gold)
    nothing = [{kind: "none" for kind in DEGRADATION_TYPES}] * len(gold)
    return {"always_present": score(gold, everything)["macro_f1"], "always_none": score(gold, nothing)["macro_f1"]}


def _checked(gold: Sequence[Labels], predicted: Sequence[Labels]) -> tuple[list[dict], list[dict]]:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(predicted)} predictions for {len(gold)} labelled images")
    if not gold:
        raise ValueError("nothing to score: no labelled images")
    return [complete(labels) for labels in gold], [complete(labels) for labels in predicted]


def _mean(flags: Sequence[bool]) -> float:
    return float(np.mean(flags)) if len(flags) else 0.0
