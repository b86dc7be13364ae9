"""The page's answers at a glance: the headline, what runs, the per-type maps and legend, the batch
table and downloads, and the one Hub check before loading."""

from __future__ import annotations

import csv
import io
import json
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspector.uploads import BatchError, expand_uploads, page_row, table_row, write_downloads
from inspector.evidence import measure
from inspector.evidence.overlay import MAP_CHOICES, evidence_map, legend_html, render_overlay
from inspector.headline import build_headline, describe_estimate

MEASURED = [{"type": "blur", "severity": "mild", "estimate": 1.3}, {"type": "noise", "severity": "severe", "estimate": 29.2},
            {"type": "low_resolution", "severity": "none", "estimate": 1.0},
            {"type": "jpeg_artifacts", "severity": "none", "estimate": 100.0}]


def report(**severities) -> dict:
    return {"verdict": "degraded", "parsed": True,
            "degradations": [{"type": kind, "severity": word} for kind, word in severities.items()]}


def test_headline_says_what_is_measured_and_flags_each_disagreement():
    headline = build_headline(MEASURED, report(noise="severe", low_resolution="severe"))
    text = headline["text"]
    assert text.startswith("Very noisy (severe, sigma 29 on 0-255) and slightly soft (mild, sigma 1.3 px)")
    assert "no resolution loss or JPEG artifacts measured" in text
    assert "agrees on noise and JPEG artifacts" in text
    assert "low resolution (adapter severe, measured none)" in text and "blur (adapter none, measured mild)" in text
    assert headline["disagreements"] == ["blur", "low_resolution"]
    assert headline["agreement"]["noise"] == "agree"
    json.dumps(headline)


def test_headline_of_agreement_one_band_apart_and_of_no_adapter():
    close = build_headline(MEASURED, report(blur="mild", noise="moderate"))
    assert close["disagreements"] == [] and close["agreement"]["noise"] == "close"
    assert "agrees on all four types, a band apart on noise (adapter moderate, measured severe)" in close["text"]
    alone = build_headline(MEASURED, None)
    assert alone["adapter"] is None and set(alone["agreement"].values()) == {"unknown"}
    assert alone["text"].endswith("No adapter report to compare (no adapter is loaded).")
    unparsed = build_headline(MEASURED, {"verdict": "unknown", "parsed": False, "degradations": []})
    assert "its answer did not parse" in unparsed["text"]
    clean = build_headline([dict(item, severity="none") for item in MEASURED], report())
    assert clean["text"].startswith("No degradation measured") and "agrees on all four types" in clean["text"]


def test_estimates_read_in_the_contracts_units():
    assert describe_estimate("blur", 2.34) == "sigma 2.3 px"
    assert describe_estimate("noise", 12.4) == "sigma 12 on 0-255"
    assert describe_estimate("low_resolution", 3.02) == "3.0x upscaled"
    assert describe_estimate("low_resolution", 1.0) == "not upscaled"
    assert describe_estimate("jpeg_artifacts", 12) == "JPEG quality 12"
    assert describe_estimate("jpeg_artifacts", 100) == "no JPEG compression found"


def coffee(size=256) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.coffee()).resize((size, size))


def test_each_map_marks_its_own_degradation():
    clean = coffee()
    buffer = io.BytesIO()
    clean.save(buffer, "JPEG", quality=10)
    jpeg = Image.open(io.BytesIO(buffer.getvalue()))
    jpeg.load()
    noisy = Image.fromarray(np.clip(np.asarray(clean, np.float32) + np.random.default_rng(0).normal(0, 30, (256, 256, 3)),
                                    0, 255).astype(np.uint8))
    clean_evidence, jpeg_evidence, noisy_evidence = measure(clean), measure(jpeg), measure(noisy)
    assert evidence_map(jpeg, jpeg_evidence, "jpeg_artifacts").score.mean() > 0.5
    assert evidence_map(clean, clean_evidence, "jpeg_artifacts").score.max() == 0
    assert evidence_map(noisy, noisy_evidence, "noise").score.mean() > 0.5
    assert evidence_map(jpeg, jpeg_evidence, "noise").score.mean() < 0.2
    upscaled = clean.resize((64, 64), Image.Resampling.BICUBIC).resize((256, 256), Image.Resampling.BICUBIC)
    resampling = evidence_map(upscaled, measure(upscaled), "low_resolution")
    assert resampling.whole_image and np.nanmin(resampling.values) > 1.6
    for kind in MAP_CHOICES:
        assert render_overlay(jpeg, jpeg_evidence, kind).size == jpeg.size
    with pytest.raises(ValueError, match="unknown map"):
        evidence_map(jpeg, jpeg_evidence, "sharpness")


def test_legend_gives_the_bands_in_the_contracts_units():
    from html import unescape

    noise = unescape(legend_html("noise")).replace("\xa0", " ")
    assert "noise sigma on 0-255" in noise and "5: mild" in noise and "> 25: severe" in noise
    assert "Gaussian sigma, px" not in noise
    jpeg = unescape(legend_html("jpeg_artifacts")).replace("\xa0", " ")
    assert "JPEG quality" in jpeg and "< 15: severe" in jpeg and "whole photo" in jpeg
    every = legend_html("worst")
    assert all(unit in every for unit in ("px", "0-255", "x upscaled", "JPEG quality"))


def record(name: str) -> dict:
    evidence = {"degradations": [dict(item, confidence=0.9) for item in MEASURED]}
    return {"photo": name, "evidence": evidence, "headline": build_headline(MEASURED, report(noise="severe"))}


def test_batch_rows_and_downloads(tmp_path):
    records = [record("a.png"), {"photo": "broken.png", "error": "not an image"}, record("b.jpg")]
    assert page_row(records[0])[2] == "mild (sigma 1.3 px); adapter: none"
    assert page_row(records[1])[1] == "error: not an image"
    csv_path, json_path = write_downloads(records, tmp_path / "out")
    with open(csv_path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["photo"] for row in rows] == ["a.png", "broken.png", "b.jpg"]
    assert rows[0]["measured noise"] == "severe (sigma 29 on 0-255)" and rows[0]["adapter noise"] == "severe"
    assert rows[0]["disagreements"] == "blur" and rows[1]["error"] == "not an image"
    assert json.loads(Path(json_path).read_text())[2]["photo"] == "b.jpg"
    assert len(table_row(records[0])) == len(rows[0])


def test_zip_uploads_are_read_in_memory_and_bounded(tmp_path, monkeypatch):
    from inspector import uploads

    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("../../escape.png", b"png bytes")
        zipped.writestr("nested/b.jpg", b"jpeg bytes")
        zipped.writestr("notes.txt", b"skipped")
        zipped.writestr("__MACOSX/._b.jpg", b"resource fork")
    (tmp_path / "single.png").write_bytes(b"x")
    sources = expand_uploads([str(tmp_path / "single.png"), str(archive)])
    assert [name for name, _ in sources] == ["single.png", "photos.zip/../../escape.png", "photos.zip/nested/b.jpg"]
    assert sources[1][1] == b"png bytes" and not (tmp_path.parent / "escape.png").exists()
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(BatchError, match="not a readable zip"):
        expand_uploads([str(tmp_path / "broken.zip")])
    monkeypatch.setattr(uploads, "MAX_PHOTOS", 1)
    with pytest.raises(BatchError, match="at most 1"):
        expand_uploads([str(archive)])
    with pytest.raises(BatchError, match="no photos"):
        expand_uploads([])


def test_runtime_names_the_stand_in_and_its_untrained_adapter(tiny_inspector):
    from inspector.runinfo import describe_runtime, runtime_line

    info = describe_runtime(tiny_inspector)
    assert info["base"]["kind"] == "tiny stand-in, random weights" and info["base"]["revision"] == "local folder"
    assert info["adapter"]["trained"] is False and info["precision"] == "fp32" and info["visual_tokens"] == 256
    line = runtime_line(info)
    assert "tiny stand-in" in line and "untrained" in line and "cpu/fp32, 256 visual tokens" in line
    assert "Qwen2-VL-2B" not in line
    json.dumps(info)


def test_trained_adapter_shows_its_evaluation_figures(tiny_adapter, tmp_path):
    import shutil

    from inspector.runinfo import adapter_training
    from inspector.tasks import get_task

    folder = tmp_path / "trained"
    shutil.copytree(tiny_adapter, folder)
    (folder / "eval").mkdir()
    (folder / "eval" / "results.json").write_text(json.dumps(
        {"n": 96, "split": "test", "models": {"base": {"macro_f1": 0.0}, "adapter": {"macro_f1": 0.642}}}))
    training = adapter_training(folder, get_task("degradation"))
    assert training["trained"] and training["figures"]["adapter"] == 0.642
    from inspector.runinfo import format_figures

    assert format_figures(training) == "trained; macro_f1 0.642 against the base's 0.000 on 96 test images"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_hub_switches_to_the_cache_once(monkeypatch):
    from huggingface_hub import constants

    from inspector import hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert hub.prepare_hub(["/local/folder/that/is/not/the/hub"]) is None, "local folders need no check"
    assert constants.HF_HUB_OFFLINE is False
    notice = hub.prepare_hub(["Qwen/Qwen2-VL-2B-Instruct", None])
    assert "cannot be reached" in notice and "HF_HUB_OFFLINE=1" in notice
    assert constants.HF_HUB_OFFLINE is True and hub.hub_is_offline()
    assert hub.prepare_hub(["Qwen/Qwen2-VL-2B-Instruct"]) is None, "checked once"


def test_reachable_hub_is_left_online(monkeypatch):
    from huggingface_hub import constants

    from inspector import hub

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{listening.getsockname()[1]}")
        assert hub.prepare_hub(["ORG/NAME"]) is None
        assert constants.HF_HUB_OFFLINE is False
