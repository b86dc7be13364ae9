"""The typed report of one inspection (the contract), the compact answer format, and `parse_report`.

The fine-tuned adapter writes `format_answer(labels)`: compact JSON, because every
generated token costs real seconds on CPU. The base model answers zero-shot, in
prose or in JSON of its own invention. `parse_report` turns either into a `Report`
and never raises; the salvage of odd text is `inspector.salvage`'s. Whatever it finds, the model's text is kept verbatim in `Report.raw_text`, and a text
that yields nothing gives `parsed=False` with the verdict "unknown", never "clean".
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .salvage import Finding, find, safe_str
from .taxonomy import (
    DEGRADATION_TYPES,
    TYPE_LABELS,
    check_severity,
    check_type,
    worst_severity,
)

_LOG = logging.getLogger(__name__)

VERDICT_BY_SEVERITY: dict[str, str] = {
    "none": "clean",
    "mild": "mildly degraded",
    "moderate": "moderately degraded",
    "severe": "severely degraded",
}
UNKNOWN = "unknown"  # the model answered, but nothing reliable could be read from it
UNAVAILABLE = "unavailable"  # no model answered at all (e.g. the adapter is not loaded)
VERDICTS: tuple[str, ...] = (*VERDICT_BY_SEVERITY.values(), UNKNOWN, UNAVAILABLE)

UNREADABLE_EXPLANATION = "The model's answer could not be read as a degradation report."
UNAVAILABLE_EXPLANATION = "No answer: the model is not available."

# Only this much of a text is searched; a model answer is a few hundred characters,
# and the JSON scan of the salvage would be quadratic on a pathological megabyte of braces.
MAX_PARSE_CHARS = 20_000


# ---------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class Degradation:
    """One degradation the model reported: a taxonomy type and a severity word."""

    type: str
    severity: str

    def __post_init__(self) -> None:
        check_type(self.type)
        check_severity(self.severity)

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "severity": self.severity}


@dataclass
class Report:
    """What one model said about one image.

    `degradations` holds only the present ones (severity other than "none"), at most
    one per type, kept in `DEGRADATION_TYPES` order. `verdict` is one of `VERDICTS`.
    """

    degradations: list[Degradation]
    verdict: str
    explanation: str
    raw_text: str
    parsed: bool
    notice: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; expected one of {', '.join(VERDICTS)}")
        seen: set[str] = set()
        for degradation in self.degradations:
            if not isinstance(degradation, Degradation):
                raise TypeError(f"degradations must be Degradation objects, got {degradation!r}")
            if degradation.severity == "none":
                raise ValueError(f"list only present degradations; {degradation.type!r} has severity 'none'")
            if degradation.type in seen:
                raise ValueError(f"degradation type {degradation.type!r} is listed twice; keep one per type")
            seen.add(degradation.type)
        self.degradations = sorted(self.degradations, key=lambda d: DEGRADATION_TYPES.index(d.type))

    # -- queries

    def severity(self, kind: str) -> str:
        """The severity of one type; "none" where the report does not list it."""
        check_type(kind)
        return next((d.severity for d in self.degradations if d.type == kind), "none")

    def labels(self) -> dict[str, str]:
        """Every type, in `DEGRADATION_TYPES` order, with its severity."""
        return {kind: self.severity(kind) for kind in DEGRADATION_TYPES}

    # -- construction

    @classmethod
    def from_labels(
        cls,
        labels: Mapping[str, str],
        raw_text: str = "",
        parsed: bool = True,
        explanation: str | None = None,
        notice: str = "",
    ) -> Report:
        """A report from a type -> severity mapping; missing types count as "none"."""
        full = _complete_labels(labels)
        degradations = [Degradation(kind, word) for kind, word in full.items() if word != "none"]
        verdict = VERDICT_BY_SEVERITY[worst_severity(list(full.values()))] if parsed else UNKNOWN
        if not (explanation and explanation.strip()):
            explanation = render_explanation(full) if parsed else UNREADABLE_EXPLANATION
        return cls(degradations, verdict, explanation.strip(), raw_text, parsed, notice)

    @classmethod
    def unavailable(cls, notice: str) -> Report:
        """The report of a model that could not answer (missing weights, adapter not loaded)."""
        return cls([], UNAVAILABLE, UNAVAILABLE_EXPLANATION, "", False, notice)

    # -- serialisation: the keys and their order are part of the public JSON

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "degradations": [d.to_dict() for d in self.degradations],
            "explanation": self.explanation,
            "parsed": self.parsed,
            "raw_text": self.raw_text,
            "notice": self.notice,
        }

    def to_json(self, indent: int | None = None) -> str:
        # ASCII escapes keep a JSON line printable on any console, whatever the model wrote.
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """The inverse of `to_dict`; raises ValueError on a malformed mapping."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a report must be a mapping, got {type(data).__name__}")
        missing = {"verdict", "degradations"} - set(data)
        if missing:
            raise ValueError(f"report is missing {', '.join(sorted(missing))}; was it written by Report.to_dict()?")
        items = data["degradations"]
        well_formed = isinstance(items, list) and all(
            isinstance(item, Mapping) and {"type", "severity"} <= set(item) for item in items)
        if not well_formed:
            raise ValueError('"degradations" must be a list of {"type": ..., "severity": ...} objects')
        return cls(
            degradations=[Degradation(str(i["type"]), str(i["severity"])) for i in items],
            verdict=str(data["verdict"]),
            explanation=str(data.get("explanation", "")),
            raw_text=str(data.get("raw_text", "")),
            parsed=bool(data.get("parsed", True)),
            notice=str(data.get("notice", "")),
        )

    def to_markdown(self) -> str:
        """Markdown for the UI: the verdict, one bullet per degradation, the explanation,
        and the model's own words (visible when unparsed, collapsed otherwise)."""
        parts = [f"### Verdict: {self.verdict}"]
        if self.notice:
            parts.append(f"> **Note:** {self.notice}")
        if self.degradations:
            parts.append("\n".join(f"- **{TYPE_LABELS[d.type]}**: {d.severity}" for d in self.degradations))
        if self.explanation:
            parts.append(self.explanation)
        if self.raw_text.strip():
            if self.parsed:
                raw = code_block(self.raw_text)
                parts.append(f"<details><summary>Model's answer</summary>\n\n{raw}\n\n</details>")
            else:
                parts.append(f"The model said:\n\n{code_block(self.raw_text)}")
        return "\n\n".join(parts) + "\n"


def code_block(text: str) -> str:
    """A fenced block longer than any backtick run inside, so the model's own fences cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text or "")), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _complete_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """All types in taxonomy order; unknown types or severity words raise ValueError."""
    for kind, word in labels.items():
        check_type(kind)
        check_severity(word)
    return {kind: labels.get(kind, "none") for kind in DEGRADATION_TYPES}


# ---------------------------------------------------------------------------
# The compact answer and the rendered explanation


def format_answer(labels: Mapping[str, str]) -> str:
    """The compact answer the adapter is trained to write, e.g.
    {"blur":"moderate","noise":"none","low_resolution":"none","jpeg_artifacts":"mild"}

    All four types, in `DEGRADATION_TYPES` order, missing ones as "none"; no spaces,
    since every generated token costs time.
    """
    return json.dumps(_complete_labels(labels), separators=(",", ":"))


def render_explanation(labels: Mapping[str, str]) -> str:
    """One sentence from the labels: "Moderate blur and mild JPEG artifacts."."""
    full = _complete_labels(labels)
    phrases = [f"{word} {TYPE_LABELS[kind]}" for kind, word in full.items() if word != "none"]
    if not phrases:
        return "No visible degradation."
    sentence = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return sentence[0].upper() + sentence[1:] + "."


# ---------------------------------------------------------------------------
# The parser

def parse_report(text: Any) -> Report:
    """A `Report` from a model's answer; never raises, whatever `text` is.

    `parsed` is False (verdict "unknown") when nothing reliable could be read.
    """
    if not isinstance(text, str):
        return Report.from_labels({}, raw_text="" if text is None else safe_str(text), parsed=False)
    try:
        finding = find(text[:MAX_PARSE_CHARS])
    except Exception:  # noqa: BLE001 - a parser bug must not take an inspection down with it
        _LOG.warning("parse_report failed; reporting the answer as unparsed", exc_info=True)
        finding = Finding()
    if not finding.recognised:
        return Report.from_labels({}, raw_text=text, parsed=False)
    return Report.from_labels(finding.labels, raw_text=text, explanation=finding.explanation)
