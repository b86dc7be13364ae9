"""Tests of inspector.report: the typed report, the compact answer and the parser."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspector import report as report_module
from inspector import salvage
from inspector.report import (
    VERDICTS,
    Degradation,
    Report,
    format_answer,
    parse_report,
    render_explanation,
)
from inspector.taxonomy import DEGRADATION_TYPES, SEVERITIES

ALL_LABELS = [dict(zip(DEGRADATION_TYPES, combo)) for combo in itertools.product(SEVERITIES, repeat=4)]
labels_strategy = st.fixed_dictionaries({kind: st.sampled_from(SEVERITIES) for kind in DEGRADATION_TYPES})


def labels(blur="none", noise="none", low_resolution="none", jpeg_artifacts="none") -> dict[str, str]:
    return {"blur": blur, "noise": noise, "low_resolution": low_resolution, "jpeg_artifacts": jpeg_artifacts}


def assert_valid(report: Report) -> None:
    assert isinstance(report, Report)
    assert report.verdict in VERDICTS
    assert [d.type for d in report.degradations] == [t for t in DEGRADATION_TYPES if report.severity(t) != "none"]
    for degradation in report.degradations:
        assert degradation.type in DEGRADATION_TYPES
        assert degradation.severity in SEVERITIES[1:]
    if not report.parsed:
        assert report.degradations == [] and report.verdict in ("unknown", "unavailable")


# ---------------------------------------------------------------------------
# The compact answer


def test_format_answer_is_compact_and_ordered():
    answer = format_answer({"jpeg_artifacts": "mild", "blur": "moderate"})
    assert answer == '{"blur":"moderate","noise":"none","low_resolution":"none","jpeg_artifacts":"mild"}'


def test_format_answer_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown degradation type"):
        format_answer({"haze": "mild"})
    with pytest.raises(ValueError, match="unknown severity"):
        format_answer({"blur": "terrible"})


def test_every_label_combination_roundtrips_through_the_compact_answer():
    for expected in ALL_LABELS:
        report = parse_report(format_answer(expected))
        assert report.parsed and report.labels() == expected, expected
        assert report.raw_text == format_answer(expected)


@given(labels_strategy, st.sampled_from(["", " ", "\n", "Answer: ", "```json\n"]))
def test_compact_answer_roundtrips_with_surrounding_text(expected, prefix):
    assert parse_report(prefix + format_answer(expected) + "\n").labels() == expected


# ---------------------------------------------------------------------------
# The report


def test_report_from_labels_keeps_only_present_degradations_in_taxonomy_order():
    report = Report.from_labels({"jpeg_artifacts": "severe", "noise": "none", "blur": "mild"}, raw_text="x")
    assert report.degradations == [Degradation("blur", "mild"), Degradation("jpeg_artifacts", "severe")]
    assert report.verdict == "severely degraded"
    assert report.severity("noise") == "none" and report.severity("jpeg_artifacts") == "severe"
    assert list(report.labels()) == list(DEGRADATION_TYPES)
    assert report.explanation == "Mild blur and severe JPEG artifacts."


@pytest.mark.parametrize(
    ("given_labels", "verdict"),
    [({}, "clean"), ({"noise": "mild"}, "mildly degraded"),
     ({"blur": "moderate", "noise": "mild"}, "moderately degraded"),
     ({"low_resolution": "severe"}, "severely degraded")],
)
def test_verdict_follows_the_worst_severity(given_labels, verdict):
    assert Report.from_labels(given_labels).verdict == verdict


def test_report_validates_its_fields():
    with pytest.raises(ValueError):
        Degradation("haze", "mild")
    with pytest.raises(ValueError):
        Degradation("blur", "awful")
    with pytest.raises(ValueError, match="only present"):
        Report([Degradation("blur", "none")], "clean", "", "", True)
    with pytest.raises(ValueError, match="twice"):
        Report([Degradation("blur", "mild"), Degradation("blur", "severe")], "mildly degraded", "", "", True)
    with pytest.raises(ValueError, match="verdict"):
        Report([], "fine", "", "", True)


def test_to_dict_has_stable_keys_and_order():
    report = Report.from_labels({"noise": "moderate"}, raw_text='{"noise":"moderate"}')
    data = report.to_dict()
    assert list(data) == ["verdict", "degradations", "explanation", "parsed", "raw_text", "notice"]
    assert data["degradations"] == [{"type": "noise", "severity": "moderate"}]
    assert list(data["degradations"][0]) == ["type", "severity"]
    assert list(json.loads(report.to_json())) == list(data)


@given(labels_strategy, st.text(max_size=50), st.booleans(), st.text(max_size=20))
def test_to_dict_from_dict_roundtrip(given_labels, raw_text, parsed, notice):
    report = Report.from_labels(given_labels, raw_text=raw_text, parsed=parsed, notice=notice)
    assert Report.from_dict(report.to_dict()) == report
    assert Report.from_dict(json.loads(report.to_json())) == report


def test_from_dict_rejects_malformed_input():
    with pytest.raises(ValueError, match="missing"):
        Report.from_dict({"verdict": "clean"})
    with pytest.raises(ValueError, match="degradations"):
        Report.from_dict({"verdict": "clean", "degradations": ["blur"]})


def test_unavailable_report():
    report = Report.unavailable("adapter not loaded: no such folder 'adapters/x'")
    assert report.verdict == "unavailable" and not report.parsed and report.degradations == []
    assert report.labels() == labels()
    markdown = report.to_markdown()
    assert "unavailable" in markdown and "adapter not loaded" in markdown


def test_render_explanation():
    assert render_explanation({}) == "No visible degradation."
    assert render_explanation({"blur": "moderate", "jpeg_artifacts": "mild"}) == (
        "Moderate blur and mild JPEG artifacts.")
    assert render_explanation(labels("severe", "mild", "moderate")) == (
        "Severe blur, mild noise and moderate low resolution.")


@given(labels_strategy)
def test_markdown_shows_verdict_and_each_degradation(given_labels):
    report = Report.from_labels(given_labels, raw_text=format_answer(given_labels))
    markdown = report.to_markdown()
    assert report.verdict in markdown
    assert markdown.count("\n- ") == len(report.degradations)


def test_markdown_of_an_unparsed_answer_shows_the_raw_text_safely():
    report = parse_report("I'm sorry, I can't help with that.\n```\nstray fence")
    markdown = report.to_markdown()
    assert "unknown" in markdown and "stray fence" in markdown
    assert "````text" in markdown  # a longer fence than the model's own


# ---------------------------------------------------------------------------
# JSON the base model may write


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"Blur": "Slight", "Noise": "No", "Low Resolution": "Medium", "JPEG Artifacts": "Heavy"}',
         labels("mild", "none", "moderate", "severe")),
        ('{"blurry": true, "noisy": false, "resolution": 0, "compression": 3}',
         labels("moderate", "none", "none", "severe")),
        ('{"degradations": [{"type": "blur", "severity": "moderate"}, {"type": "JPEG artifacts", "severity": "minor"}],'
         ' "verdict": "moderately degraded", "explanation": "Soft edges and blocky sky."}',
         labels("moderate", jpeg_artifacts="mild")),
        ('{"degradations": [], "verdict": "clean"}', labels()),
        ('{"degradations": ["grain", "pixelation"]}', labels(noise="moderate", low_resolution="moderate")),
        ('{"blur_severity": "strong", "noise_level": "low", "grain": "extreme"}', labels("severe", "mild")),
        ('{"analysis": {"blur": {"severity": "significant"}, "noise": {"present": false}}}', labels("severe")),
        ("{'blur': 'mild', 'noise': 'none'}", labels("mild")),  # a Python dict, not JSON
        ('{"resolution": "high", "blur": "low"}', labels("mild")),  # a good resolution, not a severe one
        ('{"resolution": "poor", "JPEG": 1}', labels(low_resolution="moderate", jpeg_artifacts="mild")),
    ],
)
def test_json_variants(text, expected):
    report = parse_report(text)
    assert report.parsed and report.labels() == expected


def test_model_explanation_is_kept_and_model_verdict_is_recomputed():
    text = ('{"degradations": [{"type": "noise", "severity": "severe"}], "verdict": "clean", '
            '"explanation": "Strong grain in the shadows."}')
    report = parse_report(text)
    assert report.explanation == "Strong grain in the shadows."
    assert report.verdict == "severely degraded"


def test_json_embedded_in_prose_and_fences():
    text = ('Sure! Here is the analysis of the image:\n\n```json\n{\n  "blur": "mild",\n  "noise": "severe",\n'
            '  "low_resolution": "none",\n  "jpeg_artifacts": "moderate"\n}\n```\n\nLet me know if you need more.')
    assert parse_report(text).labels() == labels("mild", "severe", "none", "moderate")


def test_truncated_compact_answer_keeps_complete_pairs():
    report = parse_report('{"blur":"severe","noise":"mild","low_resolution":"mod')
    assert report.parsed and report.labels() == labels("severe", "mild")


def test_truncated_list_form_keeps_complete_items():
    text = '```json\n{"degradations": [{"type": "noise", "severity": "moderate"}, {"type": "blur", "severity": "mi'
    assert parse_report(text).labels() == labels(noise="moderate")
    text = '{"degradations": [{"type": "noise", "severity": "moderate"}, {"type": "blur", "severity": "mild"'
    assert parse_report(text).labels() == labels("mild", "moderate")


def test_echoed_template_is_not_an_answer():
    report = parse_report('{"blur":"none|mild|moderate|severe","noise":"none|mild|moderate|severe"}')
    assert not report.parsed and report.verdict == "unknown"


# ---------------------------------------------------------------------------
# Prose, as Qwen2-VL-2B-Instruct answers zero-shot

PROSE = [
    ("The image appears to be slightly blurry, especially around the edges. There is no significant noise, and the "
     "resolution seems adequate. No noticeable JPEG compression artifacts are visible.",
     labels("mild")),
    ("The image is of high quality, with no blur, noise, or compression artifacts. The details are sharp and clear.",
     labels()),
    ("The image is clear and sharp with no visible degradations.", labels()),
    ("The image shows significant noise, particularly in the darker areas of the scene. It is also somewhat blurry, "
     "which makes the fine details hard to make out.",
     labels("mild", "severe")),
    ("The photo has a low resolution, and it appears pixelated when viewed closely. There are also visible compression "
     "artifacts, such as blockiness around the edges of the buildings.",
     labels(low_resolution="moderate", jpeg_artifacts="moderate")),
    ("The image is not blurry, but it has some noise, giving it a grainy texture.", labels(noise="mild")),
    ("The image is heavily compressed, with strong JPEG artifacts visible in the sky. Blurriness is minimal, and "
     "there is no noticeable noise.",
     labels("mild", jpeg_artifacts="severe")),
    ("The picture is very blurry and out of focus. It is difficult to make out any details of the person's face.",
     labels("severe")),
    ("1. **Blur**: The image is slightly blurred.\n2. **Noise**: There is a moderate amount of noise.\n"
     "3. **Resolution**: The resolution is low.\n4. **JPEG artifacts**: None.",
     labels("mild", "moderate", "moderate")),
    ("The image has a noticeable amount of grain, which suggests it was taken in low light. The image is in focus, "
     "and the resolution is good.",
     labels(noise="moderate")),
    ("The image does not appear to have any blur or noise. However, the resolution is quite low and the image "
     "looks pixelated.",
     labels(low_resolution="moderate")),
    ("The image quality is poor. It is extremely noisy and heavily pixelated, with severe compression artifacts.",
     labels(noise="severe", low_resolution="severe", jpeg_artifacts="severe")),
    ("The image is sharp and well-focused, free of noise and compression artifacts.", labels()),
    ("The image lacks sharpness and appears slightly grainy.", labels("moderate", "mild")),
    ("There are no signs of blur. The image is neither noisy nor pixelated, but there is slight blocking from "
     "JPEG compression.",
     labels(jpeg_artifacts="mild")),
]


@pytest.mark.parametrize(("text", "expected"), PROSE)
def test_zero_shot_prose(text, expected):
    report = parse_report(text)
    assert report.parsed, text
    assert report.labels() == expected, text
    assert report.raw_text == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("There is no noise.", labels()),
        ("The image isn't blurry.", labels()),
        ("The photo is free of compression artifacts.", labels()),
        ("Taken without blur.", labels()),
        ("The image does not look noisy at all.", labels()),
        ("Noise is not visible.", labels()),
        ("There is little to no noise.", labels()),
        ("No blur; slight noise.", labels(noise="mild")),
        ("There is no noise, and the image is slightly blurry.", labels("mild")),
        ("The image is blurry with no noise.", labels("moderate")),
        ("The image is not sharp.", labels("moderate")),
        ("The resolution is not high.", labels(low_resolution="moderate")),
        ("The resolution is not low.", labels()),
    ],
)
def test_negations(text, expected):
    report = parse_report(text)
    assert report.parsed and report.labels() == expected


@pytest.mark.parametrize(
    ("text", "severity"),
    [("slightly blurry", "mild"), ("a bit blurry", "mild"), ("blurry", "moderate"), ("moderately blurry", "moderate"),
     ("very blurry", "severe"), ("extremely blurred", "severe"), ("The blur is severe.", "severe"),
     ("Blur: mild", "mild"), ("very slightly blurry", "mild"), ("The blur is very slight.", "mild"),
     ("The blur in the corners is quite strong.", "severe"), ("quite blurry", "moderate")],
)
def test_intensity_words(text, severity):
    assert parse_report(text).severity("blur") == severity


@given(labels_strategy, st.sampled_from(["", "The image is a photo of a street. "]))
def test_templated_prose_roundtrips(expected, preamble):
    nouns = {"blur": "blur", "noise": "noise", "low_resolution": "pixelation",
             "jpeg_artifacts": "compression artifacts"}
    adverbs = {"none": "no", "mild": "slight", "moderate": "noticeable", "severe": "heavy"}
    text = preamble + " ".join(f"There is {adverbs[word]} {nouns[kind]}." for kind, word in expected.items())
    assert parse_report(text).labels() == expected


@pytest.mark.parametrize(
    "text",
    ["", "   ", "I'm sorry, I can't help with that.", "The image shows a cat sitting on a sofa.",
     "The image quality is poor.", "{}", '{"answer": 42}', "```json\n{\n"],
)
def test_nothing_recognised_is_unknown_not_clean(text):
    report = parse_report(text)
    assert not report.parsed and report.verdict == "unknown" and report.degradations == []
    assert report.raw_text == text


def test_prose_inside_json_is_read_and_its_explanation_kept():
    report = parse_report('{"answer": "The photo is slightly blurry.", "explanation": "Soft edges."}')
    assert report.labels() == labels("mild") and report.explanation == "Soft edges."


def test_a_parser_bug_gives_an_unparsed_report(monkeypatch, caplog):
    def broken(text):
        raise KeyError("bug")

    monkeypatch.setattr(report_module, "find", broken)
    report = parse_report(format_answer({"blur": "mild"}))
    assert not report.parsed and report.verdict == "unknown"
    assert "parse_report failed" in caplog.text


@pytest.mark.parametrize("value", [None, 42, b'{"blur":"mild"}', ["blur"], object()])
def test_non_string_input_gives_an_unparsed_report(value):
    report = parse_report(value)
    assert not report.parsed and report.verdict == "unknown"


# ---------------------------------------------------------------------------
# Robustness: any text, never an exception

JSON_FRAGMENTS = st.sampled_from([
    "{", "}", "[", "]", ":", ",", '"', "'", "\\", " ", "\n", "```json", "```", '"blur"', '"noise"', '"type"',
    '"severity"', '"degradations"', '"explanation"', '"mild"', '"severe"', '"none"', "null", "true", "2", "7",
    "-1.5e3", '"low resolution"', "not", "no", "very", "slightly", "blurry", "noisy", "sharp", "resolution", "low",
])


@settings(max_examples=300)
@given(st.one_of(
    st.text(),
    st.binary().map(lambda raw: raw.decode("utf-8", errors="replace")),
    st.lists(JSON_FRAGMENTS, max_size=40).map("".join),
    st.lists(st.one_of(JSON_FRAGMENTS, st.text(max_size=5)), max_size=30).map(" ".join),
))
def test_parse_report_never_raises(text):
    salvage.find(text)  # the stages themselves, without parse_report's catch-all
    report = parse_report(text)
    assert_valid(report)
    assert report.raw_text == text
    assert report.verdict in report.to_markdown()
    assert Report.from_dict(json.loads(report.to_json())) == report


@settings(max_examples=50)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10)
    | st.sampled_from(SEVERITIES + DEGRADATION_TYPES),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["blur", "noise", "type", "severity", "degradations", "explanation", "x"])
                      | st.text(max_size=6), children, max_size=4),
    max_leaves=20,
))
def test_parse_report_survives_arbitrary_json(value):
    text = json.dumps(value)
    salvage.find(text)
    report = parse_report(text)
    assert_valid(report)
    assert report.raw_text == text


def test_pathological_inputs_are_fast_and_safe():
    for text in ["{" * 50_000, "[" * 5000 + "]" * 5000, '{"a": "' + "x" * 100_000, '{"blur": ' * 10_000,
                 "not " * 20_000 + "blurry", '{"degradations": ' + "[" * 3000 + "]" * 3000 + "}"]:
        assert_valid(parse_report(text))
