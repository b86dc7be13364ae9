"""The app under load: many concurrent clients, a bounded queue, and a soak for memory growth."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from appserver import AppServer

CLIENTS = 12


@pytest.fixture(scope="module")
def small_queue_server(tiny_model, tiny_adapter, tmp_path_factory):
    log = tmp_path_factory.mktemp("load") / "app.log"
    with AppServer(log, INSPECTOR_BASE_MODEL=str(tiny_model), INSPECTOR_ADAPTER=str(tiny_adapter),
                   INSPECTOR_DTYPE="fp32", INSPECTOR_MAX_NEW_TOKENS="8", INSPECTOR_QUEUE_SIZE="4") as running:
        yield running


def call(server: AppServer, photo) -> str:
    from gradio_client import handle_file

    try:
        result = server.client().predict(handle_file(str(photo)), api_name="/inspect")
    except Exception as error:  # noqa: BLE001 - the kind of refusal is what the test checks
        return f"refused: {error}"
    return "answered" if result["adapter"]["verdict"] != "unavailable" else f"broken: {result}"


def test_concurrent_clients_are_answered_or_told_to_retry(small_queue_server, photo, capsys):
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        outcomes = list(pool.map(lambda _: call(small_queue_server, photo), range(CLIENTS)))
    answered = outcomes.count("answered")
    refused = [outcome for outcome in outcomes if outcome.startswith("refused")]
    with capsys.disabled():
        print(f"\nload: {CLIENTS} concurrent clients, queue of 4: {answered} answered, {len(refused)} told to "
              f"retry, in {time.monotonic() - started:.0f} s")
    assert answered + len(refused) == CLIENTS, outcomes  # nothing lost, nothing broken
    assert answered >= 4, outcomes  # at least the queue's worth is served
    for outcome in refused:
        assert "queue" in outcome.lower() or "full" in outcome.lower(), outcome
    assert call(small_queue_server, photo) == "answered", "the server serves after the burst"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.slow
def test_soak_memory_is_stable(small_queue_server, photo, capsys):
    """A few hundred requests: the server's resident memory must level off, not grow with requests."""
    from gradio_client import handle_file

    client = small_queue_server.client()
    pid = small_queue_server.process.pid
    samples, started = [], time.monotonic()
    for index in range(300):
        client.predict(handle_file(str(photo)), api_name="/inspect")
        if index % 50 == 49:
            samples.append(rss_mb(pid))
    growth = samples[-1] - samples[1]
    with capsys.disabled():
        print(f"\nsoak: 300 requests in {time.monotonic() - started:.0f} s, RSS MB at 50-request marks {samples}, "
              f"growth after warm-up {growth:.1f} MB")
    assert growth < 60, samples
