"""The degradation taxonomy: types, severity words and the bands that link them.

This module is the one place that knows the public contract of DESIGN.md. The names
of types and severities are part of the JSON the CLI and the API return: never
rename them. The bands are stated at the image's native resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

DEGRADATION_TYPES: tuple[str, ...] = ("blur", "noise", "low_resolution", "jpeg_artifacts")
SEVERITIES: tuple[str, ...] = ("none", "mild", "moderate", "severe")
SEVERITY_RANK: dict[str, int] = {word: rank for rank, word in enumerate(SEVERITIES)}

# Human-readable names, for prompts, cards and the UI.
TYPE_LABELS: dict[str, str] = {
    "blur": "blur",
    "noise": "noise",
    "low_resolution": "low resolution",
    "jpeg_artifacts": "JPEG artifacts",
}


@dataclass(frozen=True)
class Band:
    """Thresholds of one physical parameter between the severity words.

    `mild`, `moderate`, `severe` are the parameter values where each word starts.
    `increasing` is False where a lower value is worse (JPEG quality).
    """

    parameter: str
    unit: str
    mild: float
    moderate: float
    severe: float
    increasing: bool = True


BANDS: dict[str, Band] = {
    "blur": Band("gaussian_sigma", "px", 1.0, 2.0, 4.0),
    "noise": Band("noise_sigma", "0-255", 5.0, 12.0, 25.0),
    "low_resolution": Band("downscale_factor", "x", 1.6, 2.5, 4.0),
    "jpeg_artifacts": Band("jpeg_quality", "quality", 50.0, 30.0, 15.0, increasing=False),
}


def severity_from_parameter(kind: str, value: float) -> str:
    """Severity word for a physical parameter value, by the bands of DESIGN.md.

    >>> severity_from_parameter("noise", 15.0)
    'moderate'
    >>> severity_from_parameter("jpeg_artifacts", 10)
    'severe'
    """
    band = BANDS[check_type(kind)]
    thresholds = (band.severe, band.moderate, band.mild)
    for word, threshold in zip(("severe", "moderate", "mild"), thresholds):
        if (value > threshold) if band.increasing else (value < threshold):
            return word
        if value == threshold and word != "severe":
            # A value exactly on a border belongs to the band it starts.
            return word
    return "none"


def parameter_range(kind: str, severity: str) -> tuple[float, float]:
    """The (low, high) parameter range of a severity word, for synthesis.

    `none` gives the clean side of the mild threshold; `severe` is capped at a
    physically sensible extreme.
    """
    band = BANDS[check_type(kind)]
    check_severity(severity)
    if band.increasing:
        edges = {"none": (0.0, band.mild), "mild": (band.mild, band.moderate),
                 "moderate": (band.moderate, band.severe), "severe": (band.severe, band.severe * 2)}
    else:
        edges = {"none": (band.mild, 100.0), "mild": (band.moderate, band.mild),
                 "moderate": (band.severe, band.moderate), "severe": (5.0, band.severe)}
    return edges[severity]


def worst_severity(severities: list[str]) -> str:
    """The worst of several severity words; `none` for an empty list."""
    return max(severities, key=SEVERITY_RANK.__getitem__, default="none")


def check_type(kind: str) -> str:
    if kind not in BANDS:
        raise ValueError(f"unknown degradation type {kind!r}; expected one of {', '.join(DEGRADATION_TYPES)}")
    return kind


def check_severity(word: str) -> str:
    if word not in SEVERITY_RANK:
        raise ValueError(f"unknown severity {word!r}; expected one of {', '.join(SEVERITIES)}")
    return word
