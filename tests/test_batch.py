"""Whole data sets: `analyze` / `inspect --out` from every kind of source, resumable, local and Ray.

Fast: a few dozen small images, the local engine. Slow: Ray on a local instance with
2 CPUs (its start takes most of a minute on 2 shared cores).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from inspector import cli
from inspector.batch import AnalyzeJob, InspectJob, open_source, plan_shards, run_job
from inspector.taxonomy import DEGRADATION_TYPES, SEVERITIES

ROWS = 12
BAD_ROW = 5


def jpeg(seed: int, quality: int = 60, size=(96, 128)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(128, 40, (*size, 3)), 0, 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def saved_dataset(tmp_path_factory):
    """A `save_to_disk` folder with an Image column, a label column and one row that is no image."""
    from datasets import Dataset, Features, Image as ImageFeature, Value

    images = [{"bytes": jpeg(index, quality=30 + 5 * index), "path": None} for index in range(ROWS)]
    images[BAD_ROW] = {"bytes": b"this is no image", "path": None}
    rows = Dataset.from_dict({"picture": images, "label": list(range(ROWS))},
                             features=Features({"picture": ImageFeature(), "label": Value("int64")}))
    folder = tmp_path_factory.mktemp("source") / "saved"
    rows.save_to_disk(str(folder))
    return folder


def read(out):
    from datasets import load_dataset

    return load_dataset("parquet", data_dir=str(out), split="train")


def test_analyze_a_saved_dataset_writes_the_rows_with_the_measurement_as_columns(saved_dataset, tmp_path, capsys):
    out = tmp_path / "measured"
    code = cli.main(["analyze", str(saved_dataset), "--out", str(out), "--shard-rows", "5", "--workers", "1"])
    assert code == 1, "a failed row makes the exit code 1, as for folders"
    assert sorted(path.name for path in (out / "data").iterdir()) == [
        f"train-0000{index}-of-00003.parquet" for index in range(3)]
    rows = read(out)
    assert len(rows) == ROWS and rows["label"] == list(range(ROWS)), "every source row, in order"
    assert {"picture", "label", "width", "height", "error"} <= set(rows.column_names)
    for kind in DEGRADATION_TYPES:
        assert {f"{kind}_severity", f"{kind}_estimate", f"{kind}_confidence"} <= set(rows.column_names)
    bad = rows[BAD_ROW]
    assert "not an image" in bad["error"] and bad["width"] is None and bad["blur_severity"] is None
    good = rows.filter(lambda row: row["error"] is None)
    assert len(good) == ROWS - 1 and set(good["width"]) == {128} and set(good["height"]) == {96}
    assert set(good["jpeg_artifacts_severity"]) <= set(SEVERITIES)
    assert good["jpeg_artifacts_estimate"][0] == pytest.approx(30, abs=1), "quality read from the file's tables"
    heavy = rows.filter(lambda row: row["jpeg_artifacts_severity"] in ("moderate", "severe"))
    assert 0 < len(heavy) < ROWS - 1, "the columns curate: filter on them"
    assert "in " + str(out / "data") in capsys.readouterr().err


def test_two_workers_give_the_rows_of_one(saved_dataset, tmp_path):
    run_job([str(saved_dataset)], AnalyzeJob(), str(tmp_path / "one"), workers=1, shard_rows=4, quiet=True)
    run_job([str(saved_dataset)], AnalyzeJob(), str(tmp_path / "two"), workers=2, shard_rows=4, quiet=True)
    one, two = read(tmp_path / "one"), read(tmp_path / "two")
    assert one.to_list() == two.to_list()


def test_a_restarted_run_skips_the_shards_already_written(saved_dataset, tmp_path, capsys):
    out = tmp_path / "measured"
    run_job([str(saved_dataset)], AnalyzeJob(), str(out), workers=1, shard_rows=5, quiet=True)
    first = read(out).to_list()
    shards = sorted((out / "data").iterdir())
    kept = {path: path.stat().st_mtime_ns for path in shards[:2]}
    # As a kill leaves it: the last shard missing, and half of it written under its temporary name.
    shards[2].rename(shards[2].with_name(f".{shards[2].name}.partial"))
    capsys.readouterr()
    run_job([str(saved_dataset)], AnalyzeJob(), str(out), workers=1, shard_rows=5, quiet=True)
    assert "2 of 3 shards already written, skipped" in capsys.readouterr().err
    assert {path: path.stat().st_mtime_ns for path in kept} == kept, "done shards are not redone"
    assert read(out).to_list() == first
    assert shards[2].is_file() and not list((out / "data").glob(".*.partial")), "the half shard was redone whole"


def test_an_output_folder_of_another_run_is_refused(saved_dataset, tmp_path):
    out = tmp_path / "measured"
    run_job([str(saved_dataset)], AnalyzeJob(), str(out), workers=1, shard_rows=5, quiet=True)
    with pytest.raises(FileExistsError, match="shard_rows"):
        run_job([str(saved_dataset)], AnalyzeJob(), str(out), workers=1, shard_rows=4, quiet=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an output"):
        run_job([str(saved_dataset)], AnalyzeJob(), str(tmp_path / "other"), quiet=True)


def test_every_kind_of_source_gives_its_rows_and_image_column(saved_dataset, tmp_path):
    from datasets import load_from_disk

    rows = load_from_disk(str(saved_dataset))
    rows.to_parquet(str(tmp_path / "rows.parquet"))
    parquet = open_source([str(tmp_path / "rows.parquet")])
    assert (len(parquet.dataset), parquet.image_column) == (ROWS, "picture")
    folder = tmp_path / "photos"
    (folder / "cats").mkdir(parents=True)
    for index in range(3):
        (folder / "cats" / f"{index}.jpg").write_bytes(jpeg(index))
    (folder / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": f"cats/{index}.jpg", "caption": f"cat {index}"}) + "\n" for index in range(3)))
    imagefolder = open_source([str(folder)])
    assert imagefolder.image_column == "image" and sorted(imagefolder.dataset["caption"]) == ["cat 0", "cat 1", "cat 2"]
    os.remove(folder / "metadata.jsonl")
    files = open_source([str(folder)])
    assert files.image_column == "path" and len(files.dataset) == 3
    with pytest.raises(ValueError, match="--image-column"):
        open_source([str(saved_dataset)], image_column="photo")


def test_a_folder_of_files_with_out_keeps_the_paths(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(3):
        (folder / f"{index}.jpg").write_bytes(jpeg(index))
    (folder / "broken.jpg").write_bytes(jpeg(9)[:200])
    assert cli.main(["analyze", str(folder), "--out", str(tmp_path / "out"), "--workers", "2", "--quiet"]) == 1
    rows = read(tmp_path / "out")
    assert sorted(os.path.basename(path) for path in rows["path"]) == ["0.jpg", "1.jpg", "2.jpg", "broken.jpg"]
    errors = dict(zip(map(os.path.basename, rows["path"]), rows["error"]))
    assert errors["broken.jpg"] and not errors["0.jpg"]


def test_dataset_options_without_out_say_what_to_add(tmp_path, capsys):
    assert cli.main(["analyze", str(tmp_path), "--workers", "2"]) == 2
    assert "--workers write a data set: add --out FOLDER" in capsys.readouterr().err


def test_the_throughput_bench_times_both_local_runs_and_the_machines_own_ceiling(tmp_path, monkeypatch):
    """benchmarks/analyze_throughput.py on 6 photos: each run times the whole job, and `--probe`
    measures the same photos in 1 and in 2 processes at once."""
    from pathlib import Path

    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        monkeypatch.setenv(variable, "1")  # what the bench sets at import, undone after the test
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import analyze_throughput

    photos = tmp_path / "photos"
    results = analyze_throughput.main(["--n", "6", "--photos", str(photos), "--runs", "local-1,local-2",
                                       "--shard-rows", "2", "--probe", "--json", "--out", str(tmp_path / "r.json")])
    assert len(list(photos.glob("photo-*.jpg"))) == 6
    assert set(results["runs"]) == {"local-1", "local-2"} and results["speedup_2_workers"] > 0
    assert all(run["seconds"] > 0 and run["images_per_s"] > 0 for run in results["runs"].values())
    if sys.platform == "linux":  # where the CPU time went, from /proc: the measurement is most of it
        for run in results["runs"].values():
            assert run["cpu_s_total"] == pytest.approx(sum(run["cpu_s"].values()), abs=0.2)
            assert 0 < max(run["cpu_s"].values()) <= run["cpu_s_total"]
        assert results["runs"]["local-1"]["cpu_s_total"] >= 0.5 * results["runs"]["local-1"]["seconds"]
    probe = results["probe"]
    assert probe["photos_per_process"] == 6 and probe["one_process_per_s"] > 0
    assert probe["ceiling_2_workers"] == pytest.approx(probe["two_processes_per_s"] / probe["one_process_per_s"],
                                                       abs=0.01)
    assert json.loads((tmp_path / "r.json").read_text()) == results
    refused = ("ray-2-warm",  # the warm Ray run is a second job on the same instance
               "ray-2,ray-2-runtime-env,ray-2-warm",  # ... so it comes right after ray-2
               "local-2,local-1,local-2")  # results are keyed by run: a repeat would replace the first
    for runs in refused:  # each refused before any photo is made
        with pytest.raises(SystemExit):
            analyze_throughput.main(["--n", "6", "--photos", str(tmp_path / "none"), "--runs", runs])
    assert not (tmp_path / "none").exists()


def test_shards_cover_the_rows_once():
    assert plan_shards(12, 5) == [(0, 5), (5, 10), (10, 12)]
    assert plan_shards(0, 5) == [(0, 0)]


def test_inspect_a_dataset_gives_the_cli_json_as_columns(saved_dataset, tiny_model, tiny_adapter, tmp_path,
                                                         capsys):
    out = tmp_path / "inspected"
    argv = ["--base", str(tiny_model), "--adapter", str(tiny_adapter), "--precision", "fp32",
            "--max-new-tokens", "4", "--quiet"]
    assert cli.main(["inspect", str(saved_dataset), "--out", str(out), "--workers", "1", *argv]) == 1
    rows = read(out)
    good = rows[0]
    photo = tmp_path / "first.jpg"
    photo.write_bytes(jpeg(0, quality=30))
    capsys.readouterr()
    cli.main(["inspect", str(photo), "--json", *argv])
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    expected = set(line) - {"path"}
    assert expected <= set(rows.column_names), "the CLI's JSON keys are the columns"
    assert good["base"] == line["base"] and good["adapter"] == line["adapter"], "the same reports as the CLI's"
    assert "not an image" in rows[BAD_ROW]["error"] and rows[BAD_ROW]["base"] is None


# -- Ray: a local instance with 2 CPUs


def test_a_local_ray_instance_gets_the_checkout_through_the_environment(monkeypatch):
    """No job runtime_env (Ray reuses its prestarted workers for actors only without one); the
    checkout's path in PYTHONPATH, which the instance's daemons and workers inherit, once."""
    ray = pytest.importorskip("ray")
    from conftest import ROOT

    from inspector import raydata

    calls = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    raydata.start_ray(2)
    raydata.start_ray(2)
    assert calls[0] == {"num_cpus": 2, "include_dashboard": False, "log_to_driver": False}
    assert os.environ["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/elsewhere"]
    monkeypatch.setenv("RAY_ADDRESS", "auto")  # a cluster: joined as it is, the nodes have the package
    raydata.start_ray(None)
    assert calls[-1] == {"log_to_driver": False}


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    from inspector.raydata import start_ray

    start_ray(2)  # as the engine starts a local instance: its workers import this checkout
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_analyze_gives_the_local_rows_and_resumes(local_ray, saved_dataset, tmp_path):
    run_job([str(saved_dataset)], AnalyzeJob(), str(tmp_path / "local"), workers=1, shard_rows=5, quiet=True)
    out = tmp_path / "ray"
    assert run_job([str(saved_dataset)], AnalyzeJob(), str(out), engine="ray", workers=2, shard_rows=5,
                   quiet=True) == 1
    assert read(out).to_list() == read(tmp_path / "local").to_list()
    (out / "data" / "train-00001-of-00003.parquet").unlink()
    run_job([str(saved_dataset)], AnalyzeJob(), str(out), engine="ray", workers=2, shard_rows=5, quiet=True)
    assert read(out).to_list() == read(tmp_path / "local").to_list()


@pytest.mark.slow
def test_ray_inspect_places_one_model_per_worker(local_ray, saved_dataset, tiny_model, tiny_adapter, tmp_path):
    from inspector.model import InspectorConfig

    config = InspectorConfig(base=str(tiny_model), adapter=str(tiny_adapter), adapter_revision=None,
                             precision="fp32", max_new_tokens=4)
    run_job([str(saved_dataset)], InspectJob(config), str(tmp_path / "local"), workers=1, shard_rows=6, quiet=True)
    run_job([str(saved_dataset)], InspectJob(config), str(tmp_path / "ray"), engine="ray", workers=2, shard_rows=6,
            quiet=True)
    local, ray_rows = read(tmp_path / "local"), read(tmp_path / "ray")
    for column in ("base", "adapter", "width", "height", "error"):
        assert ray_rows[column] == local[column], column


_FAULTS = """
import resource, sys
import numpy as np
if sys.argv[1] == "kept":
    from inspector.memory import keep_freed_memory
    assert keep_freed_memory()
elif sys.argv[1] == "analyze worker":
    from inspector.batch import AnalyzeJob
    AnalyzeJob().setup()  # what each analyze worker runs first
np.ones(10 * 2**20, dtype=np.float32)  # a 40 MB block, above glibc's largest default mmap threshold
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    np.ones(10 * 2**20, dtype=np.float32)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_measuring_processes_keep_freed_memory_instead_of_faulting_it_in_again():
    """After keep_freed_memory (analyze's workers), a freed 40 MB block is reused from the heap:
    five more of them fault in almost no page, against every page of each by default (10 000 of
    4 KiB, or 20 huge pages where the kernel backs the mapping with them)."""
    faults = {mode: int(subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("default", "kept", "analyze worker")}
    assert faults["default"] >= 5 * 20, faults
    assert 10 * max(faults["kept"], faults["analyze worker"]) < faults["default"], faults
