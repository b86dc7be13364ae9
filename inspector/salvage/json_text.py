"""Stages 1 and 2 of the salvage: JSON objects anywhere in a text, and the pairs of JSON cut short."""

from __future__ import annotations

import json
import re
from typing import Any, Iterator, Mapping

from .lexicon import (CLEAN_VERDICTS, EXPLANATION_KEYS, ITEM_PRESENCE_KEYS, ITEM_SEVERITY_KEYS, ITEM_TYPE_KEYS,
                      LIST_KEYS, MAX_DEPTH, VERDICT_KEYS, Finding, normalise, severity_for_key, severity_of_phrase,
                      severity_of_value, type_of)
from .prose import find_in_prose

# -- stage 1: JSON objects anywhere in the text

_DECODER = json.JSONDecoder()
_MAX_JSON_STARTS = 256  # "{" positions tried; bounds the cost on brace-heavy text


def find_in_json(text: str) -> Finding:
    finding = Finding()
    for value in _json_objects(text):
        finding.merge(_read_object(value))
    return finding


def _json_objects(text: str) -> Iterator[dict]:
    """Every complete JSON object in the text, outermost first, via `raw_decode`.

    A failed start (e.g. the outer object of a truncated answer) moves on to the next
    "{", so the complete inner objects of a cut-short list are still found.
    """
    start = text.find("{")
    for _ in range(_MAX_JSON_STARTS):
        if start == -1:
            return
        try:
            value, end = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):
            start = text.find("{", start + 1)
            continue
        yield value
        start = text.find("{", end)


def _read_object(obj: Mapping, depth: int = 0) -> Finding:
    finding = Finding()
    for key, value in obj.items():
        name = normalise(key)
        if _add_typed_pair(finding, name, value):
            continue
        if name in LIST_KEYS and depth < MAX_DEPTH:
            finding.merge(_read_container(value, depth + 1))
        elif name in EXPLANATION_KEYS and isinstance(value, str) and value.strip():
            finding.explanation = finding.explanation or value.strip()
        elif name in VERDICT_KEYS and isinstance(value, str) and normalise(value) in CLEAN_VERDICTS:
            finding.recognised = True
        elif isinstance(value, (Mapping, list)) and depth < MAX_DEPTH:  # {"report": {...}}
            finding.merge(_read_container(value, depth + 1))
    item = _read_item(obj)
    if item is not None:
        finding.add(*item)
    return finding


def _add_typed_pair(finding: Finding, name: str, value: Any) -> bool:
    """A `"blur": <severity>` pair, from a parsed object or a cut-short text: added to `finding`.
    False when `name` is no degradation type (the caller reads it as another key)."""
    kind = type_of(name)
    if kind is None:
        return False
    severity = severity_for_key(name, value)
    if severity is not None:
        finding.add(kind, severity)
    return True


def _read_item(obj: Mapping) -> tuple[str, str] | None:
    """The list form's element: {"type": "blur", "severity": "mild"} -> ("blur", "mild")."""
    fields = {normalise(key): value for key, value in obj.items()}
    kinds = [type_of(normalise(v)) for k, v in fields.items() if k in ITEM_TYPE_KEYS and isinstance(v, str)]
    kind = next((kind for kind in kinds if kind is not None), None)
    if kind is None:
        return None
    for keys in (ITEM_SEVERITY_KEYS, ITEM_PRESENCE_KEYS):
        severities = [severity_of_value(v) for k, v in fields.items() if k in keys]
        severity = next((severity for severity in severities if severity is not None), None)
        if severity is not None:
            return kind, severity
    return kind, "moderate"  # listed without a severity: present, amount unsaid


def _read_container(value: Any, depth: int) -> Finding:
    """The value of "degradations": a list of items or of phrases, a dict, or a phrase."""
    finding = Finding()
    if isinstance(value, Mapping):
        finding.merge(_read_object(value, depth))
        finding.recognised = True
    elif isinstance(value, list):
        for element in value:
            if isinstance(element, Mapping):
                finding.merge(_read_object(element, depth))
            elif isinstance(element, str):  # ["blur", "mild noise"]
                finding.merge(find_in_prose(element))
        finding.recognised = True  # an empty list is an explicit "nothing found"
    elif isinstance(value, str):
        if severity_of_phrase(value) == "none":  # "degradations": "none"
            finding.recognised = True
        else:
            finding.merge(find_in_prose(value))
    return finding


# -- stage 2: key/value pairs of JSON cut short (generation hit max_new_tokens)

# Bounded repeats keep each attempt short: no quadratic scan of an unclosed string.
_PAIR = re.compile(
    r"""(?P<q>["'])(?P<key>[^"'\\\n]{1,40})(?P=q)\s*:\s*"""
    r"""(?:"(?P<dq>(?:[^"\\\n]|\\.){0,400})"|'(?P<sq>(?:[^'\\\n]|\\.){0,400})'"""
    r"""|(?P<bare>-?\d+(?:\.\d+)?|true|false|null|True|False|None))"""
)


def find_in_pairs(text: str) -> Finding:
    finding = Finding()
    pending_type: str | None = None  # list form: "type" seen, waiting for its "severity"
    for key, value in _pairs(text):
        name = normalise(key)
        if _add_typed_pair(finding, name, value):
            continue
        if name in ITEM_TYPE_KEYS and isinstance(value, str):
            pending_type = type_of(normalise(value))
        elif name in ITEM_SEVERITY_KEYS and pending_type is not None:
            severity = severity_of_value(value)
            if severity is not None:
                finding.add(pending_type, severity)
            pending_type = None
        elif name in EXPLANATION_KEYS and isinstance(value, str) and value.strip():
            finding.explanation = finding.explanation or value.strip()
    return finding


def _pairs(text: str) -> Iterator[tuple[str, Any]]:
    for match in _PAIR.finditer(text):
        if match["bare"] is not None:
            bare = match["bare"].lower().replace("none", "null")
            yield match["key"], json.loads(bare)
        else:
            yield match["key"], _unescape(match["dq"] if match["dq"] is not None else match["sq"])


def _unescape(body: str) -> str:
    try:
        return json.loads(f'"{body}"')
    except ValueError:
        return body
