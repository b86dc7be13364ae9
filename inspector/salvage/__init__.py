"""Reading a degradation report out of whatever a model wrote: the parsers behind `parse_report`.

The fine-tuned adapter writes the compact answer of `inspector.report.format_answer`; the
base model answers zero-shot, in prose or in JSON of its own invention. `find` tries,
in order:

1. JSON objects anywhere in the text (bare, inside prose, inside ```json fences),
   read through a table of synonyms for keys and values (`json_text`, `lexicon`);
2. `"key": "value"` pairs salvaged from JSON cut short by `max_new_tokens` (`json_text`);
3. keyword matching of prose, clause by clause, with negation ("no noise",
   "free of compression artifacts") and intensity words ("slightly", "heavily") (`prose`).
"""

from __future__ import annotations

from typing import Any

from .json_text import find_in_json, find_in_pairs
from .lexicon import Finding
from .prose import find_in_prose

__all__ = ["Finding", "find", "safe_str"]


def find(text: str) -> Finding:
    """The three stages; the tests call this directly, so a bug cannot hide behind
    the catch-all of `parse_report`."""
    finding = find_in_json(text)
    # Pairs fill in what complete objects lack: a list cut short after a complete item.
    finding.merge(find_in_pairs(text))
    if finding.recognised:
        return finding
    prose = find_in_prose(text)  # also reads prose inside JSON: {"answer": "Slightly blurry."}
    prose.explanation = finding.explanation
    return prose


def safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - an object whose __str__ fails still gives a report
        return ""
