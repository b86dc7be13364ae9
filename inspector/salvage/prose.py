"""Stage 3 of the salvage: the free prose of a zero-shot model, read clause by clause."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

from ..taxonomy import SEVERITY_RANK, worst_severity
from .lexicon import NEUTRAL_WORDS, PRESENCE_WORDS, QUALIFIERS, SEVERITY_BY_WORD, TYPE_BY_NAME, Finding

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

    for word, severity in SEVERITY_BY_WORD.items():
        put(word, severity=None if word in PRESENCE_WORDS else severity, presence=word in PRESENCE_WORDS)
    for word, degraded in QUALIFIERS.items():
        put(word, degraded=degraded)
    for phrase in _PRENOMINAL_NEGATIONS:
        put(phrase, severity="none", prenominal=True)
    for word in _CONTRAST_WORDS:
        put(word, contrast=True)
    # Mentions last: where a phrase is both ("clean"), it reads as a mention.
    for name, kind in TYPE_BY_NAME.items():
        if name not in NEUTRAL_WORDS:
            cues[name] = {"mention": (kind, _PRESENT)}
    for kind, names in _ANTONYMS.items():
        for name in names:
            cues[name] = {"mention": (kind, _ABSENT)}
    for name in _WHOLE_IMAGE_PROBLEMS:
        cues[name] = {"mention": (_WHOLE_IMAGE, _PRESENT)}
    for name, kind in NEUTRAL_WORDS.items():
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


def find_in_prose(text: str) -> Finding:
    """Labels from prose: each clause's mentions, read with the cues around them."""
    mentions: dict[str, list[tuple[bool, str]]] = {}  # type -> [(explicit, severity)]
    clean_statement = False
    for clause in _clauses(text):
        for kind, explicit, severity in _read_mentions(_lex(clause)):
            if kind == _WHOLE_IMAGE:
                clean_statement |= severity == "none"
            else:
                mentions.setdefault(kind, []).append((explicit, severity))
    finding = Finding(recognised=clean_statement)
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
