"""The app over HTTP with gradio_client, and in a real headless Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appserver import AppServer
from conftest import HANG_GUARD_S


@pytest.fixture(scope="module")
def offline_server(tmp_path_factory):
    """The app with the default (Hub) model names, no network and nothing set: it must start and explain."""
    from conftest import no_network_env

    log = tmp_path_factory.mktemp("app-offline") / "app.log"
    with AppServer(log, **no_network_env()) as running:
        yield running


def test_api_returns_both_reports_and_evidence(server, photo):
    from gradio_client import handle_file

    client = server.client()
    result = client.predict(handle_file(str(photo)), api_name="/inspect")
    assert (result["width"], result["height"]) == (512, 512)
    for side in ("base", "adapter"):
        report = result[side]
        assert set(report) >= {"verdict", "degradations", "explanation", "parsed", "raw_text"}
        assert report["verdict"] != "unavailable"
    assert [item["type"] for item in result["evidence"]["degradations"]] == [
        "blur", "noise", "low_resolution", "jpeg_artifacts"]
    assert result["notices"] == []


def test_api_lists_the_inspect_endpoint(server):

    api = server.client().view_api(print_info=False, return_format="dict")
    assert "/inspect" in api["named_endpoints"]


def test_bad_upload_is_a_clear_error_and_server_keeps_serving(server, photo, tmp_path):
    from gradio_client import handle_file

    fake = tmp_path / "not-a-photo.png"
    fake.write_bytes(b"%PDF-1.4 this is a document, not a photo")
    client = server.client()
    with pytest.raises(Exception) as raised:
        client.predict(handle_file(str(fake)), api_name="/inspect")
    assert "image" in str(raised.value).lower()
    assert client.predict(handle_file(str(photo)), api_name="/inspect")["adapter"]["verdict"] != "unavailable"


def test_offline_app_starts_and_explains(offline_server, photo):
    from gradio_client import handle_file

    page = _get(offline_server.url)
    assert "not loaded" in page and "INSPECTOR_BASE_MODEL" in page
    log = offline_server.output()
    # One reachability check, then the cache only: no retries of every file (150 s before the page came up).
    assert log.count("The Hub cannot be reached") == 1 and "Retrying" not in log, log
    assert "No model loaded" in page, "the runtime line says nothing runs"
    result = offline_server.client().predict(handle_file(str(photo)), api_name="/inspect")
    assert result["base"]["verdict"] == "unavailable"
    assert result["evidence"]["degradations"], "measured evidence works without a model"


ARTIFACTS = Path(__file__).parent / "artifacts"  # screenshots of the browser tests, kept (ignored by git)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    # Debian's chromium where installed (CI here); else Playwright's own browser, if it was installed.
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=chromium, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        except PlaywrightError as error:
            pytest.skip(f"no Chromium to drive: install Debian's chromium ({error.message.splitlines()[0]})")
        yield launched
        launched.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(HANG_GUARD_S * 1000)  # Playwright's 30 s would fail a busy CPU
    page.goto(url, wait_until="domcontentloaded")
    page.locator("#inspect-button").wait_for()
    return page


def wait_until_idle(page) -> None:
    """Until no component shows Gradio's pending state (its status tracker is hidden when idle)."""
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=status-tracker]')]"
                           ".every(tracker => tracker.classList.contains('hide'))"
                           " && !document.querySelector('.generating')")  # a streaming output's grey


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


@pytest.mark.browser
def test_page_shows_what_runs_the_headline_the_legend_and_the_map_selector(server, browser):
    from app import EXAMPLE_CAPTIONS
    from gradio_client import handle_file
    from inspector.evidence import measure
    from inspector.headline import build_headline
    from inspector.images import load_image

    page = open_page(browser, server.url)
    runtime = page.locator("#runtime").inner_text()
    assert "tiny stand-in" in runtime and "untrained" in runtime and "cpu/fp32" in runtime
    assert "256 visual tokens" in runtime and "Qwen2-VL-2B" not in page.locator("body").inner_text()
    assert "untrained" in page.locator("#adapter-title").inner_text()
    assert "Legend" in page.locator("#legend").inner_text()

    # A cached example: the headline of the noisy cat, as the measurement and the adapter's own report
    # (asked again over the API; field decoding makes even the untrained adapter's answer parse) make it.
    page.get_by_text(EXAMPLE_CAPTIONS["noise-severe-chelsea.png"]).click()
    page.wait_for_function("() => document.querySelector('#headline').innerText.includes('noisy')")
    wait_until_idle(page)
    photo = Path(__file__).parent.parent / "examples" / "noise-severe-chelsea.png"
    adapter = server.client().predict(handle_file(str(photo)), api_name="/inspect")["adapter"]
    expected = build_headline(measure(load_image(photo)).to_dict()["degradations"], adapter)
    sign = "⚠️ " if expected["disagreements"] else ""
    assert page.locator("#headline").inner_text().strip() == sign + expected["text"]
    assert "Verdict" in page.locator("#base-report").inner_text()
    assert "Verdict" in page.locator("#adapter-report").inner_text()
    evidence = page.locator("#evidence-report").inner_text()
    assert "sigma 29 on 0-255" in evidence and "JPEG artifacts" in evidence and "not upscaled" in evidence
    screenshot(page, "example-noise-all-maps.png")

    page.locator("#map-selector label", has_text="noise").click()
    page.wait_for_function("() => document.querySelector('#legend').innerText.includes('Legend: noise')")
    wait_until_idle(page)
    legend = page.locator("#legend").inner_text()
    assert "noise sigma on 0-255" in legend and "25: severe" in legend and "blur" not in legend
    screenshot(page, "example-noise-noise-map.png")

    page.get_by_text(EXAMPLE_CAPTIONS["jpeg-severe-coffee.jpg"]).click()
    page.wait_for_function("() => document.querySelector('#headline').innerText.includes('JPEG quality 10')")
    page.locator("#map-selector label", has_text="JPEG blockiness").click()
    page.wait_for_function("() => document.querySelector('#legend').innerText.includes('JPEG quality')")
    wait_until_idle(page)
    screenshot(page, "example-jpeg-jpeg-map.png")
    page.close()


@pytest.mark.browser
def test_batch_of_three_photos_gives_three_rows_and_a_csv(server, browser, tmp_path):
    import csv

    from PIL import Image
    from skimage import data

    paths = []
    for name, pixels in (("camera.png", data.camera()), ("coffee.jpg", data.coffee()), ("rocket.png", data.rocket())):
        Image.fromarray(pixels).convert("RGB").save(tmp_path / name, **({"quality": 12} if name.endswith("jpg") else {}))
        paths.append(str(tmp_path / name))
    page = open_page(browser, server.url)
    page.get_by_role("tab", name="Many photos").click()
    page.locator("#batch-files input[type=file]").set_input_files(paths)
    page.locator("#batch-files td[aria-label='rocket.png']").wait_for()
    page.locator("#batch-button").click()
    page.wait_for_function("() => document.querySelector('#batch-table').innerText.includes('rocket.png')")
    wait_until_idle(page)
    table = page.locator("#batch-table").inner_text()
    assert all(name in table for name in ("camera.png", "coffee.jpg", "rocket.png"))
    screenshot(page, "batch-three-photos.png")
    with page.expect_download() as download:
        page.locator("#batch-downloads a[download='results.csv']").click()
    rows = list(csv.DictReader(open(download.value.path(), encoding="utf-8")))
    page.close()
    assert [row["photo"] for row in rows] == ["camera.png", "coffee.jpg", "rocket.png"]
    assert rows[1]["measured jpeg_artifacts"] == "severe (JPEG quality 12)"
    assert all(row["headline"] and not row["error"] for row in rows)


def _get(url: str) -> str:
    import json
    import urllib.request

    with urllib.request.urlopen(url + "config", timeout=HANG_GUARD_S) as response:
        return json.dumps(json.load(response))
