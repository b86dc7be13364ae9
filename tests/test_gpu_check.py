"""`benchmarks/gpu_check.sh`, the first-GPU check: its dry run, its wheels check, and its
mixed-batch step, on the CPU. What it measures needs a CUDA GPU; this checks that the one
command a GPU session runs is ready: the plan, the wheels it installs offline, the step code."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from benchmarks.gpu_check import Step, figures, mixed_batch_check, run_step
from benchmarks.gpu_wheels import check_wheels, read_pins, trim_bitsandbytes
from conftest import HANG_GUARD_S, ROOT, subprocess_env

BNB_LIBRARIES = ("cpu", "cuda118", "cuda128", "cuda130", "cuda132", "rocm64")


def _wheel(folder: Path, name: str, version: str, tags: str = "py3-none-any", files: dict | None = None) -> Path:
    """A small real wheel archive: METADATA, RECORD and the given files."""
    info = f"{name}-{version}.dist-info"
    files = {f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", **(files or {})}
    files[f"{info}/RECORD"] = "".join(f"{path},sha256=x,{len(data)}\n" for path, data in files.items()) + \
        f"{info}/RECORD,,\n"
    path = folder / f"{name}-{version}-{tags}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return path


def _bnb_files(kinds=BNB_LIBRARIES) -> dict:
    return {f"bitsandbytes/libbitsandbytes_{kind}.so": b"\0" * 64 for kind in kinds} | {"bitsandbytes/__init__.py": ""}


def _wheels_folder(folder: Path, trimmed: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for pin in read_pins():
        name, version = pin.split("==")
        if name == "bitsandbytes":
            _wheel(folder, name, version, "py3-none-manylinux_2_24_x86_64",
                   _bnb_files(("cpu", "cuda130") if trimmed else BNB_LIBRARIES))
        else:
            _wheel(folder, name.replace("-", "_"), version)
    return folder


def _gpu_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), *args], capture_output=True, text=True,
                          env=subprocess_env(PYTHON=sys.executable), cwd=ROOT, timeout=HANG_GUARD_S)


def test_dry_run_prints_the_plan_checks_the_wheels_and_runs_nothing(tmp_path):
    done = _gpu_check("--dry-run", "--wheels", str(_wheels_folder(tmp_path / "wheels")), "--out",
                      str(tmp_path / "check.json"))
    assert done.returncode == 0, done.stderr
    for expected in ("-m pip install --no-index --find-links", "gpu-requirements.txt", "--step mixed-batch",
                     "qlora_bench.py --shape 2b --steps 30", "-m inspector bench --shape 2b --settings ours,seed-style,", "deadline 540 s",
                     ": ready", "dry run: nothing was run"):
        assert expected in done.stdout, expected
    assert not list(tmp_path.glob("check*")), "a dry run writes nothing"


def test_dry_run_without_the_wheels_says_how_to_build_them(tmp_path):
    done = _gpu_check("--dry-run", "--wheels", str(tmp_path / "absent"))
    assert done.returncode == 1
    assert "python benchmarks/gpu_wheels.py" in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: the check would run")
def test_without_a_gpu_the_check_exits_clearly(tmp_path):
    done = _gpu_check("--wheels", str(_wheels_folder(tmp_path / "wheels")), "--out", str(tmp_path / "check.json"))
    assert done.returncode == 2
    assert "no CUDA GPU is visible: nothing was run" in done.stderr
    assert not (tmp_path / "check.json").exists()


def test_the_wheels_check_finds_what_would_fail_offline(tmp_path):
    folder = _wheels_folder(tmp_path / "wheels")
    problems, summary = check_wheels(folder)
    assert problems == [] and len(summary["wheels"]) == len(read_pins())

    (folder / next(p.name for p in folder.glob("trl-*"))).unlink()
    _wheel(folder, "trl", "0.1.0")  # another version than the pin
    _wheel(folder, "extra", "1.0", "cp311-cp311-manylinux_2_17_x86_64")  # another Python
    (folder / "broken-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    problems, _ = check_wheels(folder, limit_mib=0.001)
    text = "\n".join(problems)
    assert "trl==1.16.0: found ['0.1.0']" in text
    assert "not for CPython 3.12" in text and "not a zip archive" in text and "over the" in text

    untrimmed = _wheels_folder(tmp_path / "untrimmed", trimmed=False)
    assert any("is not trimmed" in problem for problem in check_wheels(untrimmed)[0])


def test_bitsandbytes_is_trimmed_to_one_cuda_library_and_its_record(tmp_path):
    wheel = _wheel(tmp_path, "bitsandbytes", "0.50.2", "py3-none-manylinux_2_24_x86_64", _bnb_files())
    before, after = trim_bitsandbytes(wheel, ["130"])
    assert after < before
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        record = archive.read("bitsandbytes-0.50.2.dist-info/RECORD").decode()
    libraries = {name for name in names if "libbitsandbytes_" in name}
    assert libraries == {"bitsandbytes/libbitsandbytes_cpu.so", "bitsandbytes/libbitsandbytes_cuda130.so"}
    assert "cuda118" not in record and "libbitsandbytes_cuda130.so" in record and "__init__.py" in record
    with pytest.raises(ValueError, match="no library for CUDA 999"):
        trim_bitsandbytes(wheel, ["999"])


def test_the_mixed_batch_step_runs_and_compares_on_the_cpu(tiny_model, tiny_adapter):
    """The step's own code, on the CPU in fp32 (on the GPU it runs in bf16 and nf4)."""
    results = mixed_batch_check(tiny_model, tiny_adapter, "cpu", ["fp32"])
    row = results["fp32"]
    assert results["passed"] and row["texts_equal"] and row["adapter_differs"] and row["next_token_equal"]
    assert row["logits_max_abs_diff"] < 1e-4 and row["vision_shared_vs_every_row_max_abs_diff"] < 1e-5
    assert results["versions"]["transformers"]


def test_figures_are_read_from_the_steps_results():
    steps = {
        "bench": {"result": {"settings": [{"name": "ours", "1024x768": {"seconds": 0.8}, "12MP": {"seconds": 0.9}},
                                          {"name": "seed-style baseline", "1024x768": {"seconds": 9.0}}],
                             "peak_vram_gb": 3.1, "prefill_s": 0.2, "decode_tokens_per_s": 40.0}},
        "qlora": {"result": {"peak_gpu_gib": 6.2, "samples_per_s": 2.5, "train_s": 12.0}},
        "mixed-batch": {"result": {"passed": True}},
    }
    found = figures(steps)
    assert (found["side_by_side_s"], found["side_by_side_12mp_s"], found["serving_vram_gb"]) == (0.8, 0.9, 3.1)
    assert (found["qlora_batch1_vram_gb"], found["qlora_samples_per_s"], found["mixed_batch_equal"]) == (6.2, 2.5, True)
    assert found["targets"] == {"side_by_side_s": 1.0, "serving_vram_gb": 4.0, "qlora_batch1_vram_gb": 7.0}
    assert "side_by_side_s" not in figures({"bench": {"rc": None, "timed_out": True}})


def test_the_travelling_pins_are_inside_the_projects_ranges():
    """What the GPU check installs is a version the project allows (pyproject.toml's ranges)."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ranges = {canonicalize_name(requirement.name): requirement.specifier
              for requirement in map(Requirement, project["dependencies"] + project["optional-dependencies"]["train"])}
    pins = [Requirement(pin) for pin in read_pins(ROOT / "benchmarks" / "gpu-requirements.txt")]
    assert {canonicalize_name(pin.name) for pin in pins} == {"transformers", "peft", "bitsandbytes", "datasets", "trl"}
    for pin in pins:
        version = next(iter(pin.specifier)).version
        assert ranges[canonicalize_name(pin.name)].contains(version), (pin, ranges[canonicalize_name(pin.name)])


def test_a_step_past_its_limit_is_stopped_with_its_children_and_the_others_results_kept(tmp_path):
    """A step cut at its limit takes its child processes with it (finetune under qlora_bench would
    hold the GPU through the next step); a step that ends has its JSON read into the record."""
    import json
    import time

    pid_file = tmp_path / "child.pid"
    stuck = Step("stuck", ["bash", "-c", f"sleep 600 & echo $! > {pid_file}; wait"], cap_s=600)
    record = run_step(stuck, seconds_left=2, log=tmp_path / "stuck.log")
    assert record["timed_out"] and record["rc"] is None and record["limit_s"] == 2
    child = int(pid_file.read_text())
    deadline = time.monotonic() + HANG_GUARD_S  # a hang guard only: SIGKILL lands within milliseconds
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(child), "the step's child outlived it"

    result = tmp_path / "done.json"
    done = Step("done", [sys.executable, "-c", f"import json; json.dump({{'ok': 1}}, open({str(result)!r}, 'w'))"],
                cap_s=600, result_file=result)
    record = run_step(done, seconds_left=600, log=tmp_path / "done.log")
    assert record["rc"] == 0 and record["result"] == {"ok": 1} and "tail" not in record
    assert json.loads(result.read_text()) == {"ok": 1}


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed orphan waits for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
