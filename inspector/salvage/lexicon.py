"""The words the salvage parsers read: synonyms of the types and severities, JSON key roles.

Keys are normalised by `normalise`: lower case, one space between words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..taxonomy import SEVERITIES, SEVERITY_RANK

# Synonym tables. Keys are normalised by `normalise`: lower case, one space between words.

TYPE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "blur": (
        "blur", "blurry", "blurred", "blurriness", "blurring", "blurs", "motion blur", "defocus",
        "defocused", "defocus blur", "out of focus", "unfocused", "fuzzy", "fuzziness", "softness",
    ),
    "noise": (
        "noise", "noisy", "grain", "grainy", "graininess", "speckle", "speckles", "speckled",
        "noise artifacts", "noise artefacts",
    ),
    "low_resolution": (
        "low resolution", "low res", "lowres", "resolution", "image resolution", "pixelated", "pixelation",
        "pixellated", "pixelization", "pixelized", "upscaled", "upsampled", "downscaled", "downsampled",
        "resolution issues", "resolution problems", "resolution loss",
    ),
    "jpeg_artifacts": (
        "jpeg artifacts", "jpeg artefacts", "jpeg", "jpg", "jpeg compression", "jpeg compression artifacts",
        "compression", "compressed", "compression artifacts", "compression artefacts", "artifacts",
        "artefacts", "artifact", "artefact", "blocky", "blockiness", "blocking", "block artifacts",
        "macroblocking", "ringing", "mosquito noise", "banding",
    ),
}
TYPE_BY_NAME: dict[str, str] = {name: kind for kind, names in TYPE_SYNONYMS.items() for name in names}

# Words a JSON value or a prose intensity adverb may use for each severity.
SEVERITY_SYNONYMS: dict[str, tuple[str, ...]] = {
    "none": (
        "none", "no", "not", "absent", "false", "zero", "nil", "null", "negligible", "nonexistent",
        "not present", "not visible", "not detected", "not noticeable", "n a", "clean",
    ),
    "mild": (
        "mild", "mildly", "slight", "slightly", "light", "lightly", "minor", "low", "little", "a little",
        "small", "weak", "minimal", "minimally", "faint", "faintly", "subtle", "subtly", "somewhat",
        "some", "a bit", "barely", "marginal", "marginally",
    ),
    "moderate": ("moderate", "moderately", "medium", "average", "fair", "fairly", "rather", "quite", "mid"),
    "severe": (
        "severe", "severely", "strong", "strongly", "heavy", "heavily", "high", "highly", "significant",
        "significantly", "extreme", "extremely", "very", "very high", "major", "intense", "serious",
        "seriously", "considerable", "considerably", "substantial", "substantially", "excessive",
        "pronounced", "a lot", "lots", "massive", "terrible", "terribly", "badly", "too",
    ),
}
# Words that say "it is there" without saying how much: moderate as a JSON value; in
# prose they only mark a mention as asserted (so it does not inherit a list's negation).
PRESENCE_WORDS: tuple[str, ...] = (
    "yes", "true", "present", "visible", "evident", "apparent", "noticeable", "noticeably",
    "obvious", "detected", "detectable", "observed", "notable", "some signs",
)
SEVERITY_BY_WORD: dict[str, str] = {
    **{word: severity for severity, words in SEVERITY_SYNONYMS.items() for word in words},
    **{word: "moderate" for word in PRESENCE_WORDS},
}

# "resolution" alone says nothing until qualified: "the resolution is low / adequate",
# {"resolution": "high"}. Its qualifiers, True where they mean "degraded"; they also
# qualify the antonyms of prose ("poor sharpness").
NEUTRAL_WORDS = {"resolution": "low_resolution", "image resolution": "low_resolution"}
QUALIFIERS: dict[str, bool] = {
    **dict.fromkeys(("low", "lower", "poor", "limited", "reduced", "insufficient", "inadequate", "bad",
                     "lacking"), True),
    **dict.fromkeys(("high", "higher", "good", "adequate", "sufficient", "fine", "decent", "excellent", "great",
                     "acceptable", "reasonable", "full", "ok", "okay", "satisfactory", "native"), False),
}

# JSON keys with a role other than a type name.
LIST_KEYS = {"degradations", "issues", "problems", "defects", "findings", "detected", "labels", "results"}
ITEM_TYPE_KEYS = {"type", "name", "degradation", "kind", "category", "label"}
ITEM_SEVERITY_KEYS = {"severity", "level", "degree", "intensity", "strength", "amount", "score", "value"}
ITEM_PRESENCE_KEYS = {"present", "detected", "visible"}
EXPLANATION_KEYS = {
    "explanation", "reason", "reasoning", "rationale", "description", "summary", "comment",
    "comments", "notes", "analysis", "details",
}
VERDICT_KEYS = {"verdict", "overall", "assessment", "quality", "overall quality"}
CLEAN_VERDICTS = {"clean", "none", "no degradation", "no degradations", "good", "high quality", "pristine"}
KEY_SUFFIXES = ("severity", "level", "degree", "score", "amount", "intensity", "present", "detected")
MAX_DEPTH = 4  # how deep nested JSON is followed; real answers nest one or two levels


def normalise(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def type_of(name: str) -> str | None:
    """The taxonomy type a normalised key names, tolerating "blur severity", "noise_level"."""
    if name in TYPE_BY_NAME:
        return TYPE_BY_NAME[name]
    words = name.split()
    if len(words) > 1 and words[-1] in KEY_SUFFIXES:
        return TYPE_BY_NAME.get(" ".join(words[:-1]))
    return None


def severity_for_key(name: str, value: Any) -> str | None:
    """The severity a JSON value gives the type its (normalised) key names."""
    if name in NEUTRAL_WORDS and isinstance(value, str) and normalise(value) in QUALIFIERS:
        # {"resolution": "high"} is a good resolution, not severe low resolution.
        return "moderate" if QUALIFIERS[normalise(value)] else "none"
    return severity_of_value(value)


def severity_of_value(value: Any, depth: int = 0) -> str | None:
    """A severity word from a JSON value of any type; None where it says nothing usable."""
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "moderate" if value else "none"
    if isinstance(value, (int, float)):
        return SEVERITIES[int(value)] if value in (0, 1, 2, 3) else None
    if value is None:
        return "none"
    if isinstance(value, str):
        return severity_of_phrase(value)
    if isinstance(value, Mapping) and depth < MAX_DEPTH:  # {"blur": {"severity": "mild"}}
        for key, inner in value.items():
            name = normalise(str(key))
            if name in ITEM_SEVERITY_KEYS or name in ITEM_PRESENCE_KEYS:
                return severity_of_value(inner, depth + 1)
    return None


def severity_of_phrase(text: str) -> str | None:
    name = normalise(text)
    if name in SEVERITY_BY_WORD:
        return SEVERITY_BY_WORD[name]
    if name in ("0", "1", "2", "3"):
        return SEVERITIES[int(name)]
    words = name.split()
    canonical = {word for word in words if word in SEVERITY_RANK}
    if len(canonical) > 1:
        return None  # e.g. an echoed "none|mild|moderate|severe": a template, not an answer
    if canonical:
        return canonical.pop()
    found = [SEVERITY_BY_WORD[word] for word in words if word in SEVERITY_BY_WORD]
    if "none" in found:  # "not present", "no visible": a negation outweighs any adverb
        return "none"
    return found[0] if found else None


@dataclass
class Finding:
    """What one stage of the parser read; the first value found for a type wins."""

    labels: dict[str, str] = field(default_factory=dict)
    explanation: str | None = None
    recognised: bool = False  # True also for an explicit "nothing found" (empty list, "clean")

    def add(self, kind: str, severity: str) -> None:
        self.labels.setdefault(kind, severity)
        self.recognised = True

    def merge(self, other: Finding) -> None:
        for kind, severity in other.labels.items():
            self.labels.setdefault(kind, severity)
        self.explanation = self.explanation or other.explanation
        self.recognised = self.recognised or other.recognised
