"""The typed report of one inspection, the compact answer format, and its parser.

The fine-tuned adapter writes `format_answer(labels)`: compact JSON, because every
generated token costs real seconds on CPU. The base model answers zero-shot, in
prose or in JSON of its own invention. `parse_report` turns either into a `Report`
and never raises. It tries, in order:

1. JSON objects anywhere in the text (bare, inside prose, inside ```json fences),
   read through a table of synonyms for keys and values;
2. `"key": "value"` pairs salvaged from JSON cut short by `max_new_tokens`;
3. keyword matching of prose, clause by clause, with negation ("no noise",
   "free of compression artifacts") and intensity words ("slightly", "heavily").

Whatever it finds, the model's text is kept verbatim in `Report.raw_text`, and a text
that yields nothing gives `parsed=False` with the verdict "unknown", never "clean".
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from .taxonomy import (
    DEGRADATION_TYPES,
    SEVERITIES,
    SEVERITY_RANK,
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
# and the JSON scan below would be quadratic on a pathological megabyte of braces.
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
                raw = _code_block(self.raw_text)
                parts.append(f"<details><summary>Model's answer</summary>\n\n{raw}\n\n</details>")
            else:
                parts.append(f"The model said:\n\n{_code_block(self.raw_text)}")
        return "\n\n".join(parts) + "\n"


def _code_block(text: str) -> str:
    # A fence longer than any backtick run inside, so the model's own fences cannot close it.
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
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
# Synonym tables. Keys are normalised by `_normalise`: lower case, one space between words.

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
_TYPE_BY_NAME: dict[str, str] = {name: kind for kind, names in TYPE_SYNONYMS.items() for name in names}

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
_SEVERITY_BY_WORD: dict[str, str] = {
    **{word: severity for severity, words in SEVERITY_SYNONYMS.items() for word in words},
    **{word: "moderate" for word in PRESENCE_WORDS},
}

# "resolution" alone says nothing until qualified: "the resolution is low / adequate",
# {"resolution": "high"}. Its qualifiers, True where they mean "degraded"; they also
# qualify the antonyms of prose ("poor sharpness").
_NEUTRAL_WORDS = {"resolution": "low_resolution", "image resolution": "low_resolution"}
_QUALIFIERS: dict[str, bool] = {
    **dict.fromkeys(("low", "lower", "poor", "limited", "reduced", "insufficient", "inadequate", "bad",
                     "lacking"), True),
    **dict.fromkeys(("high", "higher", "good", "adequate", "sufficient", "fine", "decent", "excellent", "great",
                     "acceptable", "reasonable", "full", "ok", "okay", "satisfactory", "native"), False),
}

# JSON keys with a role other than a type name.
_LIST_KEYS = {"degradations", "issues", "problems", "defects", "findings", "detected", "labels", "results"}
_ITEM_TYPE_KEYS = {"type", "name", "degradation", "kind", "category", "label"}
_ITEM_SEVERITY_KEYS = {"severity", "level", "degree", "intensity", "strength", "amount", "score", "value"}
_ITEM_PRESENCE_KEYS = {"present", "detected", "visible"}
_EXPLANATION_KEYS = {
    "explanation", "reason", "reasoning", "rationale", "description", "summary", "comment",
    "comments", "notes", "analysis", "details",
}
_VERDICT_KEYS = {"verdict", "overall", "assessment", "quality", "overall quality"}
_CLEAN_VERDICTS = {"clean", "none", "no degradation", "no degradations", "good", "high quality", "pristine"}
_KEY_SUFFIXES = ("severity", "level", "degree", "score", "amount", "intensity", "present", "detected")
_MAX_DEPTH = 4  # how deep nested JSON is followed; real answers nest one or two levels


def _normalise(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _type_of(name: str) -> str | None:
    """The taxonomy type a normalised key names, tolerating "blur severity", "noise_level"."""
    if name in _TYPE_BY_NAME:
        return _TYPE_BY_NAME[name]
    words = name.split()
    if len(words) > 1 and words[-1] in _KEY_SUFFIXES:
        return _TYPE_BY_NAME.get(" ".join(words[:-1]))
    return None


def _severity_for_key(name: str, value: Any) -> str | None:
    """The severity a JSON value gives the type its (normalised) key names."""
    if name in _NEUTRAL_WORDS and isinstance(value, str) and _normalise(value) in _QUALIFIERS:
        # {"resolution": "high"} is a good resolution, not severe low resolution.
        return "moderate" if _QUALIFIERS[_normalise(value)] else "none"
    return _severity_of_value(value)


def _severity_of_value(value: Any, depth: int = 0) -> str | None:
    """A severity word from a JSON value of any type; None where it says nothing usable."""
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "moderate" if value else "none"
    if isinstance(value, (int, float)):
        return SEVERITIES[int(value)] if value in (0, 1, 2, 3) else None
    if value is None:
        return "none"
    if isinstance(value, str):
        return _severity_of_phrase(value)
    if isinstance(value, Mapping) and depth < _MAX_DEPTH:  # {"blur": {"severity": "mild"}}
        for key, inner in value.items():
            name = _normalise(str(key))
            if name in _ITEM_SEVERITY_KEYS or name in _ITEM_PRESENCE_KEYS:
                return _severity_of_value(inner, depth + 1)
    return None


def _severity_of_phrase(text: str) -> str | None:
    name = _normalise(text)
    if name in _SEVERITY_BY_WORD:
        return _SEVERITY_BY_WORD[name]
    if name in ("0", "1", "2", "3"):
        return SEVERITIES[int(name)]
    words = name.split()
    canonical = {word for word in words if word in SEVERITY_RANK}
    if len(canonical) > 1:
        return None  # e.g. an echoed "none|mild|moderate|severe": a template, not an answer
    if canonical:
        return canonical.pop()
    found = [_SEVERITY_BY_WORD[word] for word in words if word in _SEVERITY_BY_WORD]
    if "none" in found:  # "not present", "no visible": a negation outweighs any adverb
        return "none"
    return found[0] if found else None


# ---------------------------------------------------------------------------
# The parser


@dataclass
class _Finding:
    """What one stage of the parser read; the first value found for a type wins."""

    labels: dict[str, str] = field(default_factory=dict)
    explanation: str | None = None
    recognised: bool = False  # True also for an explicit "nothing found" (empty list, "clean")

    def add(self, kind: str, severity: str) -> None:
        self.labels.setdefault(kind, severity)
        self.recognised = True

    def merge(self, other: _Finding) -> None:
        for kind, severity in other.labels.items():
            self.labels.setdefault(kind, severity)
        self.explanation = self.explanation or other.explanation
        self.recognised = self.recognised or other.recognised


def parse_report(text: Any) -> Report:
    """A `Report` from a model's answer; never raises, whatever `text` is.

    `parsed` is False (verdict "unknown") when nothing reliable could be read.
    """
    if not isinstance(text, str):
        return Report.from_labels({}, raw_text="" if text is None else _safe_str(text), parsed=False)
    try:
        finding = _find(text[:MAX_PARSE_CHARS])
    except Exception:  # noqa: BLE001 - a parser bug must not take an inspection down with it
        _LOG.warning("parse_report failed; reporting the answer as unparsed", exc_info=True)
        finding = _Finding()
    if not finding.recognised:
        return Report.from_labels({}, raw_text=text, parsed=False)
    return Report.from_labels(finding.labels, raw_text=text, explanation=finding.explanation)


def _find(text: str) -> _Finding:
    """The three stages; the tests call this directly, so a bug cannot hide behind
    the catch-all of `parse_report`."""
    finding = _find_in_json(text)
    # Pairs fill in what complete objects lack: a list cut short after a complete item.
    finding.merge(_find_in_pairs(text))
    if finding.recognised:
        return finding
    prose = _find_in_prose(text)  # also reads prose inside JSON: {"answer": "Slightly blurry."}
    prose.explanation = finding.explanation
    return prose


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - an object whose __str__ fails still gives a report
        return ""


# -- stage 1: JSON objects anywhere in the text

_DECODER = json.JSONDecoder()
_MAX_JSON_STARTS = 256  # "{" positions tried; bounds the cost on brace-heavy text


def _find_in_json(text: str) -> _Finding:
    finding = _Finding()
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


def _read_object(obj: Mapping, depth: int = 0) -> _Finding:
    finding = _Finding()
    for key, value in obj.items():
        name = _normalise(key)
        if _add_typed_pair(finding, name, value):
            continue
        if name in _LIST_KEYS and depth < _MAX_DEPTH:
            finding.merge(_read_container(value, depth + 1))
        elif name in _EXPLANATION_KEYS and isinstance(value, str) and value.strip():
            finding.explanation = finding.explanation or value.strip()
        elif name in _VERDICT_KEYS and isinstance(value, str) and _normalise(value) in _CLEAN_VERDICTS:
            finding.recognised = True
        elif isinstance(value, (Mapping, list)) and depth < _MAX_DEPTH:  # {"report": {...}}
            finding.merge(_read_container(value, depth + 1))
    item = _read_item(obj)
    if item is not None:
        finding.add(*item)
    return finding


def _add_typed_pair(finding: _Finding, name: str, value: Any) -> bool:
    """A `"blur": <severity>` pair, from a parsed object or a cut-short text: added to `finding`.
    False when `name` is no degradation type (the caller reads it as another key)."""
    kind = _type_of(name)
    if kind is None:
        return False
    severity = _severity_for_key(name, value)
    if severity is not None:
        finding.add(kind, severity)
    return True


def _read_item(obj: Mapping) -> tuple[str, str] | None:
    """The list form's element: {"type": "blur", "severity": "mild"} -> ("blur", "mild")."""
    fields = {_normalise(key): value for key, value in obj.items()}
    kinds = [_type_of(_normalise(v)) for k, v in fields.items() if k in _ITEM_TYPE_KEYS and isinstance(v, str)]
    kind = next((kind for kind in kinds if kind is not None), None)
    if kind is None:
        return None
    for keys in (_ITEM_SEVERITY_KEYS, _ITEM_PRESENCE_KEYS):
        severities = [_severity_of_value(v) for k, v in fields.items() if k in keys]
        severity = next((severity for severity in severities if severity is not None), None)
        if severity is not None:
            return kind, severity
    return kind, "moderate"  # listed without a severity: present, amount unsaid


def _read_container(value: Any, depth: int) -> _Finding:
    """The value of "degradations": a list of items or of phrases, a dict, or a phrase."""
    finding = _Finding()
    if isinstance(value, Mapping):
        finding.merge(_read_object(value, depth))
        finding.recognised = True
    elif isinstance(value, list):
        for element in value:
            if isinstance(element, Mapping):
                finding.merge(_read_object(element, depth))
            elif isinstance(element, str):  # ["blur", "mild noise"]
                finding.merge(_find_in_prose(element))
        finding.recognised = True  # an empty list is an explicit "nothing found"
    elif isinstance(value, str):
        if _severity_of_phrase(value) == "none":  # "degradations": "none"
            finding.recognised = True
        else:
            finding.merge(_find_in_prose(value))
    return finding


# -- stage 2: key/value pairs of JSON cut short (generation hit max_new_tokens)

# Bounded repeats keep each attempt short: no quadratic scan of an unclosed string.
_PAIR = re.compile(
    r"""(?P<q>["'])(?P<key>[^"'\\\n]{1,40})(?P=q)\s*:\s*"""
    r"""(?:"(?P<dq>(?:[^"\\\n]|\\.){0,400})"|'(?P<sq>(?:[^'\\\n]|\\.){0,400})'"""
    r"""|(?P<bare>-?\d+(?:\.\d+)?|true|false|null|True|False|None))"""
)


def _find_in_pairs(text: str) -> _Finding:
    finding = _Finding()
    pending_type: str | None = None  # list form: "type" seen, waiting for its "severity"
    for key, value in _pairs(text):
        name = _normalise(key)
        if _add_typed_pair(finding, name, value):
            continue
        if name in _ITEM_TYPE_KEYS and isinstance(value, str):
            pending_type = _type_of(_normalise(value))
        elif name in _ITEM_SEVERITY_KEYS and pending_type is not None:
            severity = _severity_of_value(value)
            if severity is not None:
                finding.add(pending_type, severity)
            pending_type = None
        elif name in _EXPLANATION_KEYS and isinstance(value, str) and value.strip():
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


# -- stage 3: prose
#
# A clause is lexed into cues (a type mention, an intensity word, a negation, a
# qualifier such as "low"/"high" for "resolution"). Each mention reads the cues in a
# small window around it, within its own stretch of the clause; a mention with no cue
# of its own that follows another in a list ("no blur, noise or artifacts") shares the
# cues of the one before it.

_PRESENT, _ABSENT, _NEUTRAL = "present", "absent", "neutral"
_WHOLE_IMAGE = "*"  # pseudo-type of statements about the whole image: "high quality", "no issues"

# Words that say a type is absent when asserted ("sharp") and present when negated ("not sharp").
_ANTONYMS: dict[str, tuple[str, ...]] = {
    "blur": ("sharp", "sharpness", "crisp", "crispness", "in focus", "well focused", "focused", "well defined"),
    "noise": ("noise free", "noiseless", "clean of noise"),
    "low_resolution": ("high resolution", "high res", "full resolution", "good resolution", "high definition"),
    "jpeg_artifacts": ("uncompressed", "lossless", "artifact free", "artefact free"),
    _WHOLE_IMAGE: ("high quality", "good quality", "excellent quality", "great quality", "clean", "pristine",
                   "flawless"),
}
_WHOLE_IMAGE_PROBLEMS = (
    "degradation", "degradations", "issues", "issue", "problems", "problem", "defects", "distortion",
    "distortions", "imperfections", "flaws", "quality issues",
)
# Negations that only look ahead: "no noise", "without blur". After a mention they start
# a new noun phrase ("blurry with no noise"), except "no" ending a clause ("Noise: no").
_PRENOMINAL_NEGATIONS = ("no", "without", "free of", "free from", "lack of", "lacks", "absence of",
                         "devoid of", "neither", "nor", "never")
_CONTRAST_WORDS = ("but", "however", "although", "though", "while", "whereas", "yet", "except", "apart",
                   "besides", "which", "because")
_SEGMENT_STOPS = {",", "and", "or", "nor"}  # end a mention's own stretch of the clause
_FORWARD_STOPS = {"with", "especially", "particularly", "such", "like", "due", "making", "causing",
                  "resulting", "giving", "than"}
_LIST_LINKS = {",", "and", "or", "nor", "with", "of", "any", "regarding", "in", "terms", "to", "related", "either"}
_WINDOW = 6  # words a cue may stand from its mention: "no evidence of any significant blur"
_DEGREE_ADVERBS = ("very", "quite", "fairly", "rather", "extremely", "highly", "too", "somewhat")


@dataclass(frozen=True)
class _Cue:
    mention: tuple[str, str] | None = None  # (type, polarity)
    severity: str | None = None  # intensity; "none" is a negation
    degraded: bool | None = None  # qualifier
    presence: bool = False  # "visible", "present": asserted, amount unsaid
    prenominal: bool = False
    contrast: bool = False


def _build_lexicon() -> dict[tuple[str, ...], _Cue]:
    cues: dict[str, dict[str, Any]] = {}

    def put(phrase: str, **fields: Any) -> None:
        cues.setdefault(phrase, {}).update(fields)

    for word, severity in _SEVERITY_BY_WORD.items():
        put(word, severity=None if word in PRESENCE_WORDS else severity, presence=word in PRESENCE_WORDS)
    for word, degraded in _QUALIFIERS.items():
        put(word, degraded=degraded)
    for phrase in _PRENOMINAL_NEGATIONS:
        put(phrase, severity="none", prenominal=True)
    for word in _CONTRAST_WORDS:
        put(word, contrast=True)
    # Mentions last: where a phrase is both ("clean"), it reads as a mention.
    for name, kind in _TYPE_BY_NAME.items():
        if name not in _NEUTRAL_WORDS:
            cues[name] = {"mention": (kind, _PRESENT)}
    for kind, names in _ANTONYMS.items():
        for name in names:
            cues[name] = {"mention": (kind, _ABSENT)}
    for name in _WHOLE_IMAGE_PROBLEMS:
        cues[name] = {"mention": (_WHOLE_IMAGE, _PRESENT)}
    for name, kind in _NEUTRAL_WORDS.items():
        cues[name] = {"mention": (kind, _NEUTRAL)}
    return {tuple(phrase.split()): _Cue(**fields) for phrase, fields in cues.items()}


_LEXICON = _build_lexicon()
_LONGEST_PHRASE = max(len(phrase) for phrase in _LEXICON)


@dataclass(frozen=True)
class _Token:
    text: str
    cue: _Cue | None

    @property
    def mention(self) -> tuple[str, str] | None:
        return self.cue.mention if self.cue else None


@dataclass(frozen=True)
class _Evidence:
    negated: bool = False
    degraded: bool | None = None  # the nearest qualifier
    intensity: str | None = None  # the nearest intensity word
    other_intensity: str | None = None  # the nearest one that is not the qualifier itself
    presence: bool = False
    options: bool = False  # "blur: none|mild|moderate|severe" lists choices; it states nothing

    @property
    def empty(self) -> bool:
        return not (self.negated or self.presence or self.intensity or self.degraded is not None)


def _find_in_prose(text: str) -> _Finding:
    """Labels from prose: each clause's mentions, read with the cues around them."""
    mentions: dict[str, list[tuple[bool, str]]] = {}  # type -> [(explicit, severity)]
    clean_statement = False
    for clause in _clauses(text):
        for kind, explicit, severity in _read_mentions(_lex(clause)):
            if kind == _WHOLE_IMAGE:
                clean_statement |= severity == "none"
            else:
                mentions.setdefault(kind, []).append((explicit, severity))
    finding = _Finding(recognised=clean_statement)
    for kind, found in mentions.items():
        finding.add(kind, _combine(found))
    return finding


def _combine(found: list[tuple[bool, str]]) -> str:
    """One severity from all mentions of a type: explicit statements ("slightly blurry",
    "no blur") outweigh bare ones ("blurry"); among them the worst wins, since a model
    that hedges ("sharp overall, slight blur at the edges") did see the degradation."""
    explicit = [severity for is_explicit, severity in found if is_explicit]
    return worst_severity(explicit) if explicit else "moderate"


def _clauses(text: str) -> list[str]:
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"n't\b", " not", text.replace("cannot", "can not"))
    return [clause for clause in re.split(r"[.!?;\n]+", text) if clause.strip()]


def _lex(clause: str) -> list[_Token]:
    """Words and commas, with multi-word phrases ("free of", "low resolution") joined, longest first."""
    words = re.findall(r"[a-z0-9]+|,", clause)
    tokens, i = [], 0
    while i < len(words):
        for length in range(min(_LONGEST_PHRASE, len(words) - i), 0, -1):
            phrase = tuple(words[i:i + length])
            if phrase in _LEXICON:
                tokens.append(_Token(" ".join(phrase), _LEXICON[phrase]))
                i += length
                break
        else:
            tokens.append(_Token(words[i], None))
            i += 1
    return tokens


def _read_mentions(tokens: list[_Token]) -> Iterator[tuple[str, bool, str]]:
    """(type, explicit, severity) for each mention of a clause that says something."""
    previous: tuple[int, _Evidence] | None = None
    for index, token in enumerate(tokens):
        if token.mention is None:
            continue
        evidence = _own_evidence(tokens, index)
        if evidence.empty and previous is not None and _linked(tokens, previous[0], index):
            evidence = previous[1]  # "no blur, noise or artifacts": the list shares one negation
        previous = (index, evidence)
        kind, polarity = token.mention
        severity = None if evidence.options else _resolve(polarity, evidence)
        if severity is not None:
            explicit = polarity != _PRESENT or evidence.negated or evidence.intensity is not None
            yield kind, explicit, severity


def _linked(tokens: list[_Token], before: int, after: int) -> bool:
    return all(token.text in _LIST_LINKS for token in tokens[before + 1:after])


def _own_evidence(tokens: list[_Token], index: int) -> _Evidence:
    # Nearest first; on a tie the word before the mention wins ("slightly blurry, mild").
    window = sorted(_looking_back(tokens, index) + _looking_ahead(tokens, index), key=lambda w: w[:2])
    cued = [token for _, _, token in window if token.cue is not None]
    qualifier = next((token for token in cued if token.cue.degraded is not None), None)
    intensities = [token for token in cued if token.cue.severity not in (None, "none")]
    # "quite strong", "the blur is very slight": an adverb of degree yields to the word it modifies.
    intensities.sort(key=lambda token: token.text in _DEGREE_ADVERBS)
    return _Evidence(
        negated=any(token.cue.severity == "none" for token in cued),
        degraded=qualifier.cue.degraded if qualifier else None,
        intensity=intensities[0].cue.severity if intensities else None,
        other_intensity=next((t.cue.severity for t in intensities if t is not qualifier), None),
        presence=any(token.cue.presence for token in cued),
        options=len({token.text for token in cued if token.text in SEVERITY_RANK}) > 2,
    )


def _stops(token: _Token) -> bool:
    return token.text in _SEGMENT_STOPS or token.mention is not None or bool(token.cue and token.cue.contrast)


def _looking_back(tokens: list[_Token], index: int) -> list[tuple[int, int, _Token]]:
    """(distance, side, token) before a mention, up to the start of its stretch."""
    window = []
    for j in range(index - 1, max(-1, index - 1 - _WINDOW), -1):
        if _stops(tokens[j]):
            break
        window.append((index - j, 0, tokens[j]))
    return window


def _looking_ahead(tokens: list[_Token], index: int) -> list[tuple[int, int, _Token]]:
    """(distance, side, token) after a mention: "the blur is mild", "noise: none"."""
    window = []
    for j in range(index + 1, min(len(tokens), index + 1 + _WINDOW)):
        token = tokens[j]
        if _stops(token) or token.text in _FORWARD_STOPS:
            break
        clause_ends = j + 1 == len(tokens) or tokens[j + 1].text == ","
        if token.cue is not None and token.cue.prenominal and not (token.text == "no" and clause_ends):
            break  # "blurry without noise": the negation belongs to what follows
        window.append((j - index, 1, token))
    return window


def _resolve(polarity: str, evidence: _Evidence) -> str | None:
    """The severity one mention states, or None where it states nothing."""
    if polarity == _PRESENT:  # "blurry", "no noise", "heavily compressed"
        return "none" if evidence.negated else (evidence.intensity or "moderate")
    if polarity == _ABSENT:  # "sharp", "not sharp", "poor sharpness"
        degraded = bool(evidence.degraded)
    else:  # "resolution": only with a qualifier ("low", "adequate"), a severity word or a negation
        if evidence.degraded is None and evidence.other_intensity is None and not evidence.negated:
            return None
        degraded = True if evidence.degraded is None else evidence.degraded
    if evidence.negated:
        # "not very sharp" is moderate blur: an adverb under a negation says little about amount.
        return "moderate" if not degraded else "none"
    return (evidence.other_intensity or "moderate") if degraded else "none"
