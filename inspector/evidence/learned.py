"""Learned calibration: small tree ensembles that read blur and low resolution from the features.

Each type's parameter is mapped to a severity coordinate (`coordinate`): 0 at a
negligible amount, 1, 2, 3 at the contract's mild, moderate and severe thresholds, 4
at twice the severe one, log-linear in between. Gradient-boosted ensembles of shallow
trees read `features.FEATURE_NAMES`:

- `cause`: one three-class classifier (`CAUSES`: neither, blur, low resolution), one
  ensemble per class and a softmax over them. A soft image is soft for one reason or the
  other: blurred (the spectrum falls smoothly) or upscaled (flat, then a cliff at 0.5/f);
  the contract's random specs never combine the two (synthesis.EXCLUSIVE_PAIRS), so
  "which explains the spectrum better" is one decision, not two independent ones (63 of
  the 70 held-back blur false positives of two independent presence classifiers were
  upscaled images);
- `severity`, per type: a regressor trained on present cases only, their coordinate.

Present (the most probable cause): the estimate is the regressed coordinate (at least 1)
mapped back to the contract's units (`parameter`), except that a found resampling
pattern gives the factor itself (`resampling_factor`); absent: the estimator's own reading,
capped just under the mild threshold. The severity word follows from the estimate by
the bands as ever, so the two never disagree; the confidence is the cause's probability
(or one minus it where absent). Presence and severity in two stages rather than one
regression: a single regression over mostly clean samples pulls present cases towards
"none" and blurs the bands' borders (on held-back training data the two stages got the
severity exactly right 0.61 against 0.52 of the time for blur, 0.57 against 0.44 for low
resolution).

The ensembles are trained by `python train/calibrate_evidence.py` on synthetic
degradations of the calibration photos and of procedural scenes only (by
`inspector.evidence.synthesis`, and a quarter by other libraries' implementations:
train/diverse_degradations.py), and shipped as JSON (`calibration.json` beside this file):
plain arrays of split features, thresholds and leaf values, read here by a few lines
of numpy. JSON rather than a pickle, so loading it can run no code, and it diffs and
reviews as text. Without the file, `measure` keeps the estimators' own readings.

JPEG quality is not learned: the tables give it exactly, and the quantizer combs of
the pixels nearly so. Noise is not either (see LEARNED_TYPES).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from inspector.evidence.features import FEATURE_NAMES
from inspector.evidence.resolution import MIN_STRENGTH as PATTERN_STRENGTH  # the estimator's pattern threshold

CALIBRATION_PATH = Path(__file__).with_name("calibration.json")
# Where an absent type's estimator reading is capped: just under the mild threshold.
NONE_CAP = 0.99
# Noise is left to its estimator: a learned noise stage raised the noise F1 (0.96 against
# 0.87 on the held-out photos) but flagged 5-17 % of clean photos as noisy (fine
# texture, film grain), past the 5 % the whole evidence may flag.
LEARNED_TYPES: tuple[str, ...] = ("blur", "low_resolution")
# The cause classifier's classes, in its ensembles' order.
CAUSES: tuple[str, ...] = ("none", "blur", "low_resolution")
# Parameter at coordinates 0..4: a negligible amount, mild, moderate, severe, twice severe.
ANCHORS: dict[str, tuple[float, ...]] = {
    "blur": (0.2, 1.0, 2.0, 4.0, 8.0),
    "noise": (0.5, 5.0, 12.0, 25.0, 50.0),
    "low_resolution": (1.0, 1.6, 2.5, 4.0, 8.0),
}


def coordinate(kind: str, value: float) -> float:
    """The severity coordinate of a parameter value (log-linear between the anchors).

    >>> coordinate("noise", 12.0)
    2.0
    """
    logs = np.log(ANCHORS[kind])
    return float(np.interp(np.log(max(value, 1e-6)), logs, np.arange(len(logs)),
                           left=0.0, right=len(logs) - 1 + (np.log(max(value, 1e-6)) - logs[-1]) /
                           (logs[-1] - logs[-2])))


def parameter(kind: str, value: float) -> float:
    """The parameter value at a severity coordinate (the inverse of `coordinate`)."""
    logs = np.log(ANCHORS[kind])
    value = max(float(value), 0.0)
    if value > len(logs) - 1:
        return float(np.exp(logs[-1] + (value - (len(logs) - 1)) * (logs[-1] - logs[-2])))
    return float(np.exp(np.interp(value, np.arange(len(logs)), logs)))


class TreeEnsemble:
    """A gradient-boosted sum of regression trees, from its JSON arrays."""

    def __init__(self, payload: dict):
        self.base = float(payload["base"])
        self.rate = float(payload["learning_rate"])
        trees = payload["trees"]
        # Rounded leaf values: the sum is exact to about 1e-5, far under any band's width.
        # All trees' nodes in one set of arrays, so each level of all trees is one numpy step.
        offsets = np.cumsum([0] + [len(tree["feature"]) for tree in trees[:-1]])
        self.roots = offsets.astype(np.int64)
        self.feature = np.concatenate([tree["feature"] for tree in trees]).astype(np.int64)
        self.threshold = np.concatenate([tree["threshold"] for tree in trees]).astype(np.float32)
        self.value = np.concatenate([tree["value"] for tree in trees]).astype(np.float64)
        self.left = np.concatenate([np.asarray(t["left"]) + o for t, o in zip(trees, offsets)]).astype(np.int64)
        self.right = np.concatenate([np.asarray(t["right"]) + o for t, o in zip(trees, offsets)]).astype(np.int64)
        self.depth = int(payload["max_depth"])

    def predict(self, features: np.ndarray) -> float:
        features = np.asarray(features, dtype=np.float32)
        node = self.roots.copy()
        for _ in range(self.depth):
            split = self.feature[node]
            leaf = split < 0
            # float32 both sides: sklearn's trees see float32 inputs (export_threshold).
            go_left = features[np.where(leaf, 0, split)] <= self.threshold[node]
            node = np.where(leaf, node, np.where(go_left, self.left[node], self.right[node]))
        return self.base + self.rate * float(self.value[node].sum())


@functools.lru_cache(maxsize=4)
def load_calibration(path: str | None = None) -> dict | None:
    """The shipped ensembles: `cause` (one per CAUSES), and per learned type its `severity`; None without a file."""
    path = Path(path) if path else CALIBRATION_PATH
    if not path.exists():
        return None
    payload = json.loads(path.read_text())
    if tuple(payload["features"]) != FEATURE_NAMES:
        raise ValueError(f"{path} was trained on other features than inspector.evidence.features computes; "
                         "retrain it with: python train/calibrate_evidence.py")
    models = payload["models"]
    if tuple(models["cause"]["classes"]) != CAUSES:
        raise ValueError(f"{path} has other causes than {CAUSES}; retrain it with: python train/calibrate_evidence.py")
    out: dict = {"cause": [TreeEnsemble(part) for part in models["cause"]["ensembles"]]}
    out.update({kind: {"severity": TreeEnsemble(models[kind]["severity"])} for kind in LEARNED_TYPES})
    return out


def cause_probabilities(raw: np.ndarray) -> np.ndarray:
    """Softmax of the cause ensembles' raw scores (sklearn's multiclass deviance)."""
    raw = np.asarray(raw, dtype=np.float64)
    exp = np.exp(raw - raw.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def predict_readings(features: np.ndarray, models: dict, estimators: dict[str, float]) -> dict[str, tuple[float, float]]:
    """(parameter in the contract's units, confidence) per learned type; see the module docstring."""
    probabilities = cause_probabilities([ensemble.predict(features) for ensemble in models["cause"]])
    cause = CAUSES[int(np.argmax(probabilities))]
    out = {}
    for kind in LEARNED_TYPES:
        probability = float(probabilities[CAUSES.index(kind)])
        if cause == kind:
            value = parameter(kind, max(models[kind]["severity"].predict(features), 1.0))
            if kind == "low_resolution":
                value = resampling_factor(features, value, estimators[kind])
        else:
            value = parameter(kind, min(coordinate(kind, estimators[kind]), NONE_CAP))
        out[kind] = (value, float(min(max(probability, 1.0 - probability), 0.95)))
    return out


def resampling_factor(features: np.ndarray, regressed: float, estimated: float) -> float:
    """The resolution estimator's factor where it found a resampling pattern, else the regressed one.

    A pattern at nu cycles/px gives the factor to a few percent (1/nu or, folded,
    1/(1 - nu), told apart by the spectrum: resolution.choose_factor), which no
    regression matches. Without a pattern (hidden by noise or JPEG) the regressed
    factor stands. Kept at least mild: the cause classifier has said it is there.
    """
    strength = features[FEATURE_NAMES.index("resolution_strength")]
    if strength < PATTERN_STRENGTH or estimated <= 1.0:
        return regressed
    return max(estimated, ANCHORS["low_resolution"][1])


def export_ensemble(model, sample: np.ndarray, column: int = 0) -> dict:
    """The JSON arrays of a fitted sklearn GradientBoostingRegressor or GradientBoostingClassifier.

    A multiclass classifier has one ensemble per class: `column` picks it. The constant
    the boosting starts from is read back from the model's own raw output on `sample`
    (rows of its training data), which holds for every kind.
    """
    trees = []
    for estimator in model.estimators_[:, column]:
        tree = estimator.tree_
        trees.append({
            "feature": [int(f) if l != -1 else -1 for f, l in zip(tree.feature, tree.children_left)],
            "threshold": [export_threshold(t) for t in tree.threshold],
            "left": [int(c) for c in tree.children_left],
            "right": [int(c) for c in tree.children_right],
            "value": [round(float(v), 6) for v in tree.value[:, 0, 0]],
        })
    rate = float(model.learning_rate)
    raw = model.decision_function(sample) if hasattr(model, "classes_") else model.predict(sample)
    if np.ndim(raw) == 2:
        raw = raw[:, column]
    summed = sum(estimator.predict(sample.astype(np.float32)) for estimator in model.estimators_[:, column])
    base = float(np.mean(np.ravel(raw) - rate * summed))
    return {"base": base, "learning_rate": rate, "max_depth": int(model.max_depth), "trees": trees}


def export_threshold(threshold: float) -> float:
    """The largest float32 at or under a tree's float64 threshold, in its shortest decimal.

    sklearn casts inputs to float32 and tests x <= threshold; for a float32 x that holds
    exactly when x <= this value, which prints in about 9 digits instead of 17.
    """
    value = np.float32(threshold)
    if value > threshold:
        value = np.nextafter(value, np.float32(-np.inf))
    return float(str(value))
