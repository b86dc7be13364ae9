"""The headline: one line per photo that says what is wrong with it, from the measurement and
the adapter's report, where the two agree and each type where they do not.

    headline = build_headline(evidence.to_dict()["degradations"], adapter_report)
    headline["text"]  # "Noisy (severe, sigma about 29 on 0-255); no blur, low resolution or JPEG
                      #  loss measured. The adapter agrees on all four types."

The measurement leads (it is a physical reading in the contract's units); the adapter's words
are compared with it type by type. Agreement is on the severity word; one band apart with both
present counts as agreeing that the type is there, and the line says by how much they differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspector.taxonomy import DEGRADATION_TYPES, SEVERITY_RANK, TYPE_LABELS

# How a degradation reads in the headline, by severity: an adjective a visitor understands.
WORDS: dict[str, dict[str, str]] = {
    "blur": {"mild": "slightly soft", "moderate": "blurry", "severe": "very blurry"},
    "noise": {"mild": "slightly noisy", "moderate": "noisy", "severe": "very noisy"},
    "low_resolution": {"mild": "slightly upscaled", "moderate": "upscaled from low resolution",
                       "severe": "upscaled from very low resolution"},
    "jpeg_artifacts": {"mild": "lightly JPEG-compressed", "moderate": "JPEG-compressed",
                       "severe": "heavily JPEG-compressed"},
}
# What "none" means for each type, for the clean side of the line.
CLEAN_WORDS: dict[str, str] = {"blur": "blur", "noise": "noise", "low_resolution": "resolution loss",
                               "jpeg_artifacts": "JPEG artifacts"}


def format_estimate(kind: str, value: float) -> str:
    """A measured parameter in the contract's units, as words: "sigma 2.3 px", "JPEG quality 12"."""
    if kind == "blur":
        return f"sigma {value:.1f} px"
    if kind == "noise":
        return f"sigma {value:.0f} on 0-255"
    if kind == "low_resolution":
        return f"{value:.1f}x upscaled"
    return f"JPEG quality {value:.0f}"


def describe_estimate(kind: str, value: float) -> str:
    """`format_estimate`, with the clean ends in words: "not upscaled", "no JPEG compression found"."""
    if kind == "low_resolution" and value <= 1.0:
        return "not upscaled"
    if kind == "jpeg_artifacts" and value >= 100:
        return "no JPEG compression found"
    return format_estimate(kind, value)


def compare(measured: str, said: str | None) -> str:
    """'agree', 'close' (both present, one band apart), 'disagree', or 'unknown' (no adapter word)."""
    if said is None:
        return "unknown"
    if measured == said:
        return "agree"
    if "none" not in (measured, said) and abs(SEVERITY_RANK[measured] - SEVERITY_RANK[said]) == 1:
        return "close"
    return "disagree"


def join_words(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def measured_clause(measured: list[Mapping[str, Any]]) -> str:
    """"Noisy (severe, sigma 29 on 0-255) and slightly soft (mild, sigma 1.3 px); no resolution or JPEG loss measured"."""
    present = sorted((item for item in measured if item["severity"] != "none"),
                     key=lambda item: -SEVERITY_RANK[item["severity"]])
    clean = [CLEAN_WORDS[item["type"]] for item in measured if item["severity"] == "none"]
    if not present:
        return "No degradation measured: sharp, clean, full resolution, no JPEG artifacts"
    parts = [f"{WORDS[item['type']][item['severity']]} ({item['severity']}, "
             f"{format_estimate(item['type'], float(item['estimate']))})" for item in present]
    text = join_words(parts)
    text = text[0].upper() + text[1:]
    if clean:
        text += f"; no {join_words(clean).replace(' and ', ' or ')} measured"
    return text


def adapter_clause(comparison: dict[str, str], measured: dict[str, str], said: dict[str, str]) -> str:
    """"The adapter agrees on noise and blur; it differs on low resolution (adapter severe, measured none)"."""
    agreed = [TYPE_LABELS[kind] for kind in DEGRADATION_TYPES if comparison[kind] in ("agree", "close")]
    flagged = [f"{TYPE_LABELS[kind]} (adapter {said[kind]}, measured {measured[kind]})"
               for kind in DEGRADATION_TYPES if comparison[kind] == "disagree"]
    close = [f"{TYPE_LABELS[kind]} (adapter {said[kind]}, measured {measured[kind]})"
             for kind in DEGRADATION_TYPES if comparison[kind] == "close"]
    if not flagged:
        text = "The adapter agrees on all four types"
        return text + (f", a band apart on {join_words(close)}" if close else "")
    text = (f"The adapter agrees on {join_words(agreed)}" if agreed else "The adapter agrees on none of the types")
    text += f"; it disagrees on {join_words(flagged)}"
    return text + (f" and is a band apart on {join_words(close)}" if close else "")


def build_headline(measured: list[Mapping[str, Any]], adapter: Mapping[str, Any] | None) -> dict[str, Any]:
    """The headline of one photo, as JSON.

    `measured` is the evidence's degradations (`Evidence.to_dict()["degradations"]`);
    `adapter` the adapter's report (`Report.to_dict()`), or None without one. Returns
    {"text", "measured": {type: severity}, "adapter": {type: severity} or None,
    "agreement": {type: agree|close|disagree|unknown}, "disagreements": [types]}.
    """
    measured_words = {item["type"]: item["severity"] for item in measured}
    usable = adapter is not None and adapter.get("parsed") and adapter.get("verdict") != "unavailable"
    said = None
    if usable:
        said = {kind: "none" for kind in DEGRADATION_TYPES}
        said.update({item["type"]: item["severity"] for item in adapter.get("degradations", [])})
    comparison = {kind: compare(measured_words.get(kind, "none"), said[kind] if said else None)
                  for kind in DEGRADATION_TYPES}
    text = measured_clause(measured) + ". "
    if said is None:
        why = "no adapter is loaded" if adapter is None or adapter.get("verdict") == "unavailable" \
            else "its answer did not parse"
        text += f"No adapter report to compare ({why})."
    else:
        text += adapter_clause(comparison, measured_words, said) + "."
    return {"text": text, "measured": measured_words, "adapter": said, "agreement": comparison,
            "disagreements": [kind for kind in DEGRADATION_TYPES if comparison[kind] == "disagree"]}


def headline_markdown(headline: Mapping[str, Any]) -> str:
    """The headline for the page: the line itself, and a warning sign where model and measurement disagree."""
    sign = "⚠️ " if headline["disagreements"] else ""
    return f"### {sign}{headline['text']}"
