"""`python -m inspector ...` as a user runs it: child processes, JSON lines, progress on stderr."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import HANG_GUARD_S, subprocess_env


def run_cli(*args: str, timeout: int = HANG_GUARD_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspector", *args], capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env())


def test_tiny_command_writes_a_loadable_folder(tmp_path):
    done = run_cli("tiny", str(tmp_path / "t"), "--with-adapter")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "t" / "model.safetensors").is_file()
    assert (tmp_path / "t" / "adapter" / "adapter_config.json").is_file()


def test_inspect_walks_folders_and_keeps_going_after_bad_images(tiny_model, tiny_adapter, photo, tmp_path):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    (folder / "nested" / "good.jpg").write_bytes(photo.read_bytes())
    (folder / "broken.jpg").write_bytes(b"this is text, not a JPEG")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image extension: skipped")
    done = run_cli("inspect", str(folder), "--json", "--base", str(tiny_model), "--adapter", str(tiny_adapter),
                   "--precision", "fp32", "--max-new-tokens", "8")
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    by_name = {line["path"].rsplit("/", 1)[-1]: line for line in lines}
    assert sorted(by_name) == ["broken.jpg", "empty.png", "good.jpg"]
    assert "error" in by_name["broken.jpg"] and "error" in by_name["empty.png"]
    good = by_name["good.jpg"]
    assert set(good) >= {"path", "base", "adapter", "width", "height"}
    assert good["adapter"]["verdict"] != "unavailable"
    assert done.returncode == 1, "errors are reported in the exit code"
    assert "inspecting" in done.stderr, "progress bar on stderr"


def test_inspect_without_adapter_prints_both_keys_with_a_notice(tiny_model, photo):
    done = run_cli("inspect", str(photo), "--json", "--quiet", "--base", str(tiny_model), "--adapter",
                   "nobody/missing-adapter", "--precision", "fp32", "--max-new-tokens", "4")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["adapter"]["verdict"] == "unavailable"
    assert "missing-adapter" in record["adapter"]["notice"]
    assert "notice:" in done.stderr


def test_inspect_with_missing_base_fails_clearly(photo):
    done = run_cli("inspect", str(photo), "--base", "nobody/missing-base")
    assert done.returncode == 2
    assert "missing-base" in done.stderr and "Traceback" not in done.stderr
