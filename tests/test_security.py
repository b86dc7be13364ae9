"""Security of serving: safetensors only, no remote code, only our files served, uploads bounded."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request

import pytest
import torch
from safetensors.torch import load_file

from inspector.hub import Unavailable
from inspector.model import load_base


def test_pickled_weights_are_refused(tiny_model, tmp_path):
    """A folder with only a pickle checkpoint (which can run code on load) is not loaded."""
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(Unavailable, match="could not be loaded"):
        load_base(str(folder))


def test_remote_code_is_never_trusted(tiny_model, tmp_path):
    """A config asking for custom code (auto_map) must not execute it."""
    import json

    folder = tmp_path / "remote-code"
    shutil.copytree(tiny_model, folder)
    marker = tmp_path / "executed"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageTextToText": "evil.Model", "AutoProcessor": "evil.Processor"}
    (folder / "config.json").write_text(json.dumps(config))
    try:
        load_base(str(folder))
    except Unavailable:
        pass  # refusing is fine too; running the code is not
    assert not marker.exists()


@pytest.mark.parametrize("target", ["/etc/passwd", "app.py", "inspector/model.py", "../../etc/hostname"])
def test_only_our_files_are_served(server, target):
    from conftest import HANG_GUARD_S, ROOT

    for path in (target, str((ROOT / target).resolve())):
        url = f"{server.url}gradio_api/file={path}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=HANG_GUARD_S)
        assert refused.value.code in (403, 404), url


def test_examples_are_served(server):
    from conftest import HANG_GUARD_S, ROOT

    example = next((ROOT / "examples").glob("*.png"))
    with urllib.request.urlopen(f"{server.url}gradio_api/file={example}", timeout=HANG_GUARD_S) as response:
        assert response.status == 200


def test_oversized_upload_is_refused(server, tmp_path):
    from gradio_client import handle_file

    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * (30 * 1024 * 1024))
    with pytest.raises(Exception) as refused:
        server.client().predict(handle_file(str(big)), api_name="/inspect")
    assert "size" in str(refused.value).lower() or "large" in str(refused.value).lower()


def test_decompression_bomb_is_refused_before_decoding(server, tmp_path):
    from fixtures_images import bomb_png_bytes
    from gradio_client import handle_file

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png_bytes())
    with pytest.raises(Exception) as refused:
        server.client().predict(handle_file(str(bomb)), api_name="/inspect")
    assert "pixels" in str(refused.value).lower() or "large" in str(refused.value).lower()
