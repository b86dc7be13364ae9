"""The app over HTTP with gradio_client, and in a real headless Chromium."""

from __future__ import annotations

import shutil

import pytest

from appserver import AppServer
from conftest import HANG_GUARD_S


@pytest.fixture(scope="module")
def offline_server(tmp_path_factory):
    """The app with the default (Hub) model names, offline: it must start and explain."""
    log = tmp_path_factory.mktemp("app-offline") / "app.log"
    with AppServer(log, HF_HUB_CACHE=str(tmp_path_factory.mktemp("empty-cache"))) as running:
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
    result = offline_server.client().predict(handle_file(str(photo)), api_name="/inspect")
    assert result["base"]["verdict"] == "unavailable"
    assert result["evidence"]["degradations"], "measured evidence works without a model"


@pytest.mark.browser
def test_page_in_headless_chromium_shows_both_reports(server, photo, tmp_path):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    # Debian's chromium where installed (CI here); else Playwright's own browser, if it was installed.
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        except PlaywrightError as error:
            pytest.skip(f"no Chromium to drive: install Debian's chromium ({error.message.splitlines()[0]})")
        page = browser.new_page()
        page.set_default_timeout(HANG_GUARD_S * 1000)  # Playwright's 30 s would fail a busy CPU
        page.goto(server.url, wait_until="domcontentloaded")
        page.locator("#inspect-button").wait_for()
        page.locator("input[type=file]").first.set_input_files(str(photo))
        # The upload finishes when the preview shows the photo.
        page.locator("img").first.wait_for()
        page.locator("#inspect-button").click()
        page.wait_for_function(
            "() => ['#base-report', '#adapter-report'].every("
            "id => document.querySelector(id).innerText.includes('Verdict'))")
        base_text = page.locator("#base-report").inner_text()
        adapter_text = page.locator("#adapter-report").inner_text()
        evidence_text = page.locator("#evidence-report").inner_text()
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()
    assert "Verdict" in base_text and "Verdict" in adapter_text
    assert "blur" in evidence_text and "jpeg_artifacts" in evidence_text


def _get(url: str) -> str:
    import json
    import urllib.request

    with urllib.request.urlopen(url + "config", timeout=HANG_GUARD_S) as response:
        return json.dumps(json.load(response))
