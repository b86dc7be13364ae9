"""`python -m inspector ...` as a user runs it: child processes, JSON lines, progress on stderr."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import HANG_GUARD_S, subprocess_env


def run_cli(*args: str, timeout: int = HANG_GUARD_S, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspector", *args], capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(**env))


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


def test_inspect_without_network_checks_the_hub_once_and_fails_clearly(photo):
    from conftest import no_network_env

    done = run_cli("inspect", str(photo), "--json", **no_network_env())
    assert done.returncode == 2
    assert done.stderr.count("The Hub cannot be reached") == 1 and "Retrying" not in done.stderr, done.stderr
    assert "not in the local Hugging Face cache" in done.stderr and "Traceback" not in done.stderr


def test_inspect_reports_missing_paths_before_loading_the_model(photo, tmp_path):
    done = run_cli("inspect", str(tmp_path / "nope.jpg"), "--json", "--base", "nobody/never-loaded")
    assert done.returncode == 2
    assert json.loads(done.stdout) == {"path": str(tmp_path / "nope.jpg"), "error": f"no such file: {tmp_path / 'nope.jpg'}"}
    assert "never-loaded" not in done.stderr, "the model is not loaded for a path that does not exist"


def test_base_alone_does_not_ask_for_the_hub_adapter(tiny_model, photo):
    from conftest import no_network_env

    # No network: were the default Hub adapter asked for, the Hub check would say so on stderr.
    done = run_cli("inspect", str(photo), "--json", "--quiet", "--base", str(tiny_model), "--precision", "fp32",
                   "--max-new-tokens", "4", **no_network_env())
    assert done.returncode == 0, done.stderr
    assert "without an adapter" in done.stderr and "cannot be reached" not in done.stderr, done.stderr
    assert json.loads(done.stdout)["adapter"]["verdict"] == "unavailable"


def test_every_option_has_help():
    import argparse

    from inspector.cli import build_parser

    parser = build_parser()
    parsers = [parser, *next(action for action in parser._actions
                             if isinstance(action, argparse._SubParsersAction)).choices.values()]
    undocumented = [f"{sub.prog} {action.option_strings or action.dest}" for sub in parsers for action in sub._actions
                    if not isinstance(action, argparse._SubParsersAction) and not action.help]
    assert undocumented == []
