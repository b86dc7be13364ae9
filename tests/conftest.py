"""Shared fixtures: the tiny Qwen2-VL stand-in, built once per test session, offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never touch the network: everything the Hub would give comes from local folders
# or a cache populated by tests/hubcache.py.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The checkout under test (the project is installed from it: `pip install -e .[dev,train]`).
ROOT = Path(__file__).resolve().parent.parent

# The one time limit a test may put on a child process or a page: a guard against a hang, not a
# measure of speed. The whole default run takes minutes on the slowest CPU seen (AVX2 only), so
# no healthy child comes near it on any machine; a slow CPU takes longer, it does not fail.
HANG_GUARD_S = 1800


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from inspector.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "tiny-qwen2-vl", seed=0)


@pytest.fixture(scope="session")
def tiny_adapter(tiny_model, tmp_path_factory) -> Path:
    from inspector.tiny import build_tiny_adapter

    return build_tiny_adapter(tiny_model, tmp_path_factory.mktemp("adapter") / "tiny-adapter", seed=1)


@pytest.fixture(scope="session")
def tiny_inspector(tiny_model, tiny_adapter):
    from inspector.model import Inspector, InspectorConfig

    config = InspectorConfig(base=str(tiny_model), adapter=str(tiny_adapter), adapter_revision=None,
                             precision="fp32", max_new_tokens=12)
    return Inspector.load(config)


@pytest.fixture(scope="session")
def photo(tmp_path_factory) -> Path:
    """A real photo (scikit-image's astronaut) saved as JPEG."""
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def server(tiny_model, tiny_adapter, tmp_path_factory):
    """The real app (`python app.py`) on 127.0.0.1 with the tiny model and adapter, per test module."""
    from appserver import AppServer

    log = tmp_path_factory.mktemp("app") / "app.log"
    with AppServer(log, INSPECTOR_BASE_MODEL=str(tiny_model), INSPECTOR_ADAPTER=str(tiny_adapter),
                   INSPECTOR_DTYPE="fp32", INSPECTOR_MAX_NEW_TOKENS="12") as running:
        yield running


def no_network_env() -> dict[str, str]:
    """A machine without network and with nothing set: offline mode off, the Hub's endpoint a closed
    local port (refused at once, like a machine with no route), an empty Hub cache."""
    import socket
    import tempfile

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return {"HF_HUB_OFFLINE": "", "TRANSFORMERS_OFFLINE": "", "HF_ENDPOINT": f"http://127.0.0.1:{port}",
            "HF_HUB_CACHE": tempfile.mkdtemp(prefix="empty-hub-cache-")}


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: offline, quiet, this checkout importable."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    env.update(extra)  # a test may turn the Hub's offline mode off (against a closed local endpoint)
    return env
