"""Publishing (train/push.py, train/publish/) and pulling (inspector/hub.py), offline.

No test reaches the Hub: writes go to a fake that records the calls `HfApi` would make,
reads come from a cache laid out by tests/hubcache.py, and Hub failures are the real
`huggingface_hub` error classes raised by patched functions.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import HfApi, ModelCard, constants, errors
from huggingface_hub.repocard_data import model_index_to_eval_results

from conftest import HANG_GUARD_S, ROOT, subprocess_env
from hubcache import populate_cache
from inspector.hub import ADAPTER_FILES, Unavailable, resolve_adapter
from train import push
from train.publish.cards import AdapterCard, build_model_card, check_model_card
from train.publish.checks import explain_publish_error, scrub_local_paths
from train.publish.dataset_card import DatasetCardFacts, build_dataset_card, check_dataset_card

# huggingface_hub's HTTP library (httpx2 in 2.x, httpx in 1.x): its errors wrap that library's responses.
http = importlib.import_module(errors.Response.__module__.split(".")[0])

TOKEN = "hf_TESTTOKEN1234567890abcdefghijklmnopq"
REPO, DATA_REPO, BASE_ID = "acme/tiny-inspector-lora", "acme/degradations", "acme/tiny-qwen2-vl"
RESULTS = {
    "task": "degradation", "split": "test", "n": 40, "base_model": BASE_ID, "adapter": None,
    "dataset": None, "elapsed_s": 12.5, "machine": "2-core CPU",
    "models": {
        "base": {"macro_f1": 0.21, "exact_set_accuracy": 0.05, "severity_accuracy": 0.3, "parse_failure_rate": 0.4,
                 "per_type": {"blur": {"precision": 0.5, "recall": 0.2, "f1": 0.29, "support": 10}}},
        "adapter": {"macro_f1": 0.8125, "exact_set_accuracy": 0.55, "severity_accuracy": 0.7,
                    "parse_failure_rate": 0.0,
                    "per_type": {"blur": {"precision": 0.9, "recall": 0.8, "f1": 0.847, "support": 10}}},
    },
}


# Fixtures ------------------------------------------------------------------------------

@pytest.fixture
def finetune_output(tiny_model, tiny_adapter, tmp_path) -> Path:
    """An adapter folder as train/finetune.py leaves it: adapter, task, config, checkpoints, logs, eval."""
    folder = tmp_path / "runs" / "inspector-lora"
    shutil.copytree(tiny_adapter, folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps(config | {"base_model_name_or_path": BASE_ID}))
    (folder / "inspector_task.json").write_text(json.dumps(
        {"task": "degradation", "instruction": "Inspect this photo.", "answer_format": "json-labels"}))
    (folder / "training_config.yaml").write_text(
        f"# resolved config\nbase_model: {BASE_ID}\noutput_dir: {folder}\n"
        "dataset_dir: /home/someone/data/degradations\nlora_rank: 8  # higher: more accuracy and memory\n"
        "hub_token: null\nreport_to: [tensorboard]\n")
    checkpoint = folder / "checkpoints" / "checkpoint-5"
    checkpoint.mkdir(parents=True)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "adapter_model.safetensors"):
        (checkpoint / name).write_bytes(b"state")
    (folder / "runs").mkdir()
    (folder / "runs" / "events.out.tfevents.1.host").write_bytes(b"\x00events")
    (folder / ".env").write_text(f"HF_TOKEN={TOKEN}\n")
    (folder / "eval").mkdir()
    (folder / "eval" / "results.json").write_text(json.dumps(RESULTS | {"adapter": str(folder),
                                                                        "dataset": str(tmp_path / "data")}))
    (folder / "eval" / "results.md").write_text(f"# Results\n\nAdapter `{folder}`: macro F1 0.81\n")
    (folder / "eval" / "confusion_blur.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return folder


@pytest.fixture
def dataset_dir(tmp_path) -> Path:
    from datasets import Dataset, DatasetDict, Features, Image, Value
    from PIL import Image as PILImage

    features = Features({"image": Image(), "answer": Value("string"), "source": Value("string"),
                         "seed": Value("int64")})
    rows = {"image": [PILImage.new("RGB", (32, 32), (i * 40, 0, 0)) for i in range(3)],
            "answer": ['{"blur":"mild"}'] * 3, "source": ["astronaut.jpg"] * 3, "seed": [1, 2, 3]}
    splits = DatasetDict({split: Dataset.from_dict(rows, features=features) for split in ("train", "test")})
    splits.save_to_disk(str(tmp_path / "data"))
    return tmp_path / "data"


class FakeHub:
    """Records the `HfApi` calls of a publish; answers like a Hub holding `tags` and `files`."""

    METHODS = ("list_repo_refs", "create_repo", "list_repo_files", "create_commit", "create_tag", "delete_tag")

    def __init__(self, tags=(), files=(), fail_on=None):
        self.calls, self.tags, self.files, self.fail_on = [], set(tags), list(files), fail_on
        self.uploaded: dict[str, bytes] = {}

    def install(self, monkeypatch):
        from datasets import DatasetDict

        for name in self.METHODS:
            monkeypatch.setattr(HfApi, name, self._recorder(name))
        monkeypatch.setattr(DatasetDict, "push_to_hub", self._recorder("push_to_hub"))
        return self

    def _recorder(self, name):
        def method(_self, *args, **kwargs):
            self.calls.append((name, args, kwargs))
            if name == self.fail_on:
                response = http.Response(500, request=http.Request("POST", "http://127.0.0.1/api"))
                raise errors.HfHubHTTPError("500 Server Error: upstream timed out", response=response)
            return getattr(self, "answer_" + name, lambda *a, **k: None)(*args, **kwargs)
        return method

    def answer_list_repo_refs(self, repo_id, **kwargs):
        return SimpleNamespace(tags=[SimpleNamespace(name=tag) for tag in self.tags], branches=[])

    def answer_list_repo_files(self, repo_id, **kwargs):
        return self.files

    def answer_create_commit(self, repo_id, operations, **kwargs):
        for op in operations:
            if hasattr(op, "path_or_fileobj"):
                self.uploaded[op.path_in_repo] = Path(op.path_or_fileobj).read_bytes()
        return SimpleNamespace(oid="c0ffee" * 6 + "abcd")

    def answer_push_to_hub(self, repo_id, **kwargs):
        return SimpleNamespace(oid="da7a" * 10)

    def names(self):
        return [name for name, _, _ in self.calls]


@pytest.fixture
def hub(monkeypatch):
    return FakeHub().install(monkeypatch)


@pytest.fixture
def with_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any `HfApi` request that gets past the fakes meets offline mode, whatever HF_HUB_OFFLINE says."""
    def refuse(*args, **kwargs):
        raise errors.OfflineModeIsEnabled("tests do not reach the Hub")

    monkeypatch.setattr("huggingface_hub.hf_api.get_session", refuse)


def run_push(capsys, *args: str) -> tuple[int, str, str]:
    code = push.run([*map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def staged_files(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


# Dry run -------------------------------------------------------------------------------

def test_dry_run_lists_exact_files_sizes_and_card_and_uploads_nothing(finetune_output, tiny_model, hub, capsys,
                                                                       tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)  # a dry run needs no token
    stage = tmp_path / "stage"
    code, out, err = run_push(capsys, finetune_output, "--repo", REPO, "--tag", "v1", "--base-model", tiny_model,
                              "--dry-run", "--stage-dir", stage)
    assert code == 0, err
    assert hub.calls == []
    files = staged_files(stage / "adapter")
    assert set(files) == {
        "README.md", "adapter_config.json", "adapter_model.safetensors", "inspector_task.json",
        "training_config.yaml", "eval/results.json", "eval/results.md", "eval/confusion_blur.png",
        "processor_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}
    listing = re.findall(r"^ +([\d,]+)  (\S+)$", out, re.MULTILINE)
    assert {name: int(size.replace(",", "")) for size, name in listing if name != "files"} == files
    assert f"{sum(files.values()):,}  bytes in {len(files)} files" in out
    card = (stage / "adapter" / "README.md").read_text()
    assert card in out and "Dry run: nothing was uploaded." in out
    left_out = out.split("Left out:")[1]
    for entry in ("checkpoints/", "runs/", ".env", "README.md"):
        assert entry in left_out


def test_local_paths_are_replaced_and_listed(finetune_output, tiny_model, hub, capsys, tmp_path):
    stage = tmp_path / "stage"
    code, out, err = run_push(capsys, finetune_output, "--repo", REPO, "--base-model", tiny_model, "--dry-run",
                              "--stage-dir", stage)
    assert code == 0, err
    config = (stage / "adapter" / "training_config.yaml").read_text()
    assert "output_dir: inspector-lora\n" in config and "dataset_dir: degradations\n" in config
    assert "# higher: more accuracy and memory" in config  # comments survive
    results = json.loads((stage / "adapter" / "eval" / "results.json").read_text())
    assert results["adapter"] == "inspector-lora"
    for path in (stage / "adapter").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert str(tmp_path).encode() not in data and b"/home/someone" not in data, path
    changes = out.split("Changed on the way:")[1].split("Left out:")[0]
    assert f"training_config.yaml: {finetune_output} -> inspector-lora" in changes
    assert "training_config.yaml: /home/someone/data/degradations -> degradations" in changes


def test_adapter_naming_a_local_base_needs_its_hub_id(tiny_model, tiny_adapter, hub, capsys, tmp_path):
    code, _, err = run_push(capsys, tiny_adapter, "--repo", REPO, "--dry-run")
    assert code == 2 and "--base-model-id" in err and str(tiny_model) in err
    stage = tmp_path / "stage"
    code, out, err = run_push(capsys, tiny_adapter, "--repo", REPO, "--base-model-id", BASE_ID, "--dry-run",
                              "--stage-dir", stage)
    assert code == 0, err
    assert json.loads((stage / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == BASE_ID
    assert "no evaluation results" in out and "model-index" not in (stage / "adapter" / "README.md").read_text()


# Refusals ------------------------------------------------------------------------------

@pytest.mark.parametrize("place, name, content, message", [
    ("eval", "optimizer.pt", b"state", "optimizer/scheduler state"),
    ("eval", "model.bin", b"pickle", "a pickled file"),
    ("eval", ".env", b"WANDB_API_KEY=abc\n", "credential file"),
    ("eval", "token", TOKEN.encode(), "credential file"),
    ("eval", "notes.txt", f"pushed with {TOKEN}".encode(), "contains an access token"),
    (".", "training_config.yaml", f"hub_token: {TOKEN}\n".encode(), "contains an access token"),
    (".", "training_config.yaml", b"report_to: wandb\nwandb_api_key: 0123abcd\n", "secret under wandb_api_key"),
    ("runs", "events.out.tfevents.2.host", b"\x00\x01/home/someone/runs/x\x00", "binary data"),
])
def test_what_must_not_leave_the_machine_is_refused(finetune_output, tiny_model, hub, with_token, capsys,
                                                    place, name, content, message):
    (finetune_output / place / name).write_bytes(content)
    code, _, err = run_push(capsys, finetune_output, "--repo", REPO, "--base-model", tiny_model, "--with-logs")
    assert code == 2
    assert "Refused, nothing was uploaded" in err and message in err
    assert hub.calls == []


def _edit_adapter(folder: Path, config_edit=None, weights_edit=None) -> None:
    from safetensors.torch import load_file, save_file

    if config_edit:
        config = json.loads((folder / "adapter_config.json").read_text())
        config_edit(config)
        (folder / "adapter_config.json").write_text(json.dumps(config))
    if weights_edit:
        path = folder / "adapter_model.safetensors"
        save_file(weights_edit(load_file(path)), path)


@pytest.mark.parametrize("config_edit, weights_edit, message", [
    (lambda c: c.update(r=4), None, "size mismatch"),
    (lambda c: c.update(target_modules=["qkv_nowhere"]), None, "qkv_nowhere"),
    (lambda c: c.update(target_modules=["q_proj"]), None, "match no module"),  # peft would drop them silently
    (None, lambda w: {k: v for k, v in w.items() if "layers.1." not in k}, "not in the file"),
])
def test_adapter_that_does_not_fit_its_base_is_refused(finetune_output, tiny_model, hub, with_token, capsys,
                                                       config_edit, weights_edit, message):
    _edit_adapter(finetune_output, config_edit, weights_edit)
    code, _, err = run_push(capsys, finetune_output, "--repo", REPO, "--base-model", tiny_model)
    assert code == 2 and "does not fit the base model" in err and message in err
    assert hub.calls == []


@pytest.mark.parametrize("args, results_edit, message", [
    (["--license", "Apache 2.0"], None, "not a Hub license id"),
    (["--dataset-repo", "not a repo id"], None, "datasets 'not a repo id' is not a Hub repo id"),
    ([], lambda r: r["models"]["adapter"].update(macro_f1=float("nan")), "not a number in [0, 1]"),
    ([], lambda r: r["models"]["adapter"].pop("exact_set_accuracy"), "lacks models.adapter.exact_set_accuracy"),
])
def test_invalid_card_metadata_is_refused(finetune_output, tiny_model, hub, with_token, capsys,
                                          args, results_edit, message):
    if results_edit:
        results = json.loads((finetune_output / "eval" / "results.json").read_text())
        results_edit(results)
        (finetune_output / "eval" / "results.json").write_text(json.dumps(results))
    code, _, err = run_push(capsys, finetune_output, "--repo", REPO, "--base-model", tiny_model, *args)
    assert code == 2 and message in err, err
    assert hub.calls == []


def test_missing_token_says_how_to_log_in_and_creates_nothing(finetune_output, tmp_path):
    """The real command line, with no HF_TOKEN and an empty huggingface_hub home."""
    env = subprocess_env(HF_HOME=str(tmp_path / "empty-home"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_OIDC_RESOURCE"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, str(ROOT / "train" / "push.py"), str(finetune_output), "--repo", REPO],
                          capture_output=True, text=True, timeout=HANG_GUARD_S, env=env)
    assert done.returncode == 2
    assert "no Hugging Face token" in done.stderr
    assert "hf auth login" in done.stderr and "HF_TOKEN" in done.stderr and "--dry-run" in done.stderr
    assert done.stdout == ""  # refused before anything was staged or checked
    assert not (tmp_path / "empty-home").exists() or not any((tmp_path / "empty-home").rglob("token"))


# Publishing with a fake Hub ------------------------------------------------------------

def test_publish_is_one_commit_then_a_tag(finetune_output, tiny_model, with_token, capsys, monkeypatch):
    hub = FakeHub(files=[".gitattributes", "README.md", "eval/old_plot.png"]).install(monkeypatch)
    code, out, err = run_push(capsys, finetune_output, "--repo", REPO, "--tag", "v2", "--base-model", tiny_model,
                              "--private")
    assert code == 0, err
    assert hub.names() == ["list_repo_refs", "create_repo", "list_repo_files", "create_commit", "create_tag"]
    calls = {name: (args, kwargs) for name, args, kwargs in hub.calls}
    assert calls["create_repo"] == ((REPO,), {"repo_type": "model", "private": True, "exist_ok": True,
                                              "token": TOKEN})
    args, kwargs = calls["create_commit"]
    added = sorted(op.path_in_repo for op in args[1] if hasattr(op, "path_or_fileobj"))
    deleted = [op.path_in_repo for op in args[1] if not hasattr(op, "path_or_fileobj")]
    assert added == sorted(["README.md", "adapter_config.json", "adapter_model.safetensors", "inspector_task.json",
                            "training_config.yaml", "eval/results.json", "eval/results.md",
                            "eval/confusion_blur.png", "processor_config.json", "tokenizer.json",
                            "tokenizer_config.json", "chat_template.jinja"])
    assert deleted == ["eval/old_plot.png"]  # the tagged version holds exactly this publish
    assert kwargs["token"] == TOKEN and kwargs["repo_type"] == "model"
    _, tag_kwargs = calls["create_tag"]
    assert tag_kwargs["tag"] == "v2" and tag_kwargs["revision"] == "c0ffee" * 6 + "abcd"
    card = ModelCard(hub.uploaded["README.md"].decode())
    assert card.data.base_model == BASE_ID and card.data.library_name == "peft"
    assert "Published" in out and "hf download acme/tiny-inspector-lora --revision v2" in out


def test_existing_tag_is_refused_unless_forced(finetune_output, tiny_model, with_token, capsys, monkeypatch):
    hub = FakeHub(tags={"v1"}).install(monkeypatch)
    code, _, err = run_push(capsys, finetune_output, "--repo", REPO, "--tag", "v1", "--base-model", tiny_model)
    assert code == 2 and "already has the tag v1" in err and "--force" in err
    assert hub.names() == ["list_repo_refs"]
    hub.calls.clear()
    code, _, err = run_push(capsys, finetune_output, "--repo", REPO, "--tag", "v1", "--base-model", tiny_model,
                            "--force")
    assert code == 0, err
    assert hub.names()[-3:] == ["create_commit", "delete_tag", "create_tag"]


def test_failed_commit_leaves_no_tag_and_says_what_to_do(finetune_output, tiny_model, with_token, capsys,
                                                         monkeypatch):
    hub = FakeHub(fail_on="create_commit").install(monkeypatch)
    code, _, err = run_push(capsys, finetune_output, "--repo", REPO, "--tag", "v3", "--base-model", tiny_model)
    assert code == 1
    assert "create_tag" not in hub.names()
    assert "the Hub refused the write to the model repo acme/tiny-inspector-lora (500)" in err
    assert "run the same command again" in err


def test_token_is_never_printed_logged_or_written(finetune_output, tiny_model, with_token, hub, capsys, caplog,
                                                  tmp_path):
    caplog.set_level("DEBUG")
    stage = tmp_path / "stage"
    code, out, err = run_push(capsys, finetune_output, "--repo", REPO, "--tag", "v4", "--base-model", tiny_model,
                              "--stage-dir", stage, "-v")
    assert code == 0, err
    assert all(kwargs.get("token") == TOKEN for name, _, kwargs in hub.calls)  # passed to every call...
    seen = [out, err, caplog.text] + [p.read_bytes().decode("latin-1") for p in stage.rglob("*") if p.is_file()]
    seen += [data.decode("latin-1") for data in hub.uploaded.values()]
    assert not any(TOKEN in text or TOKEN[3:] in text for text in seen)  # ...and shown nowhere
    assert ".env" not in hub.uploaded  # the folder's .env (with the token) stays behind


def test_dataset_is_published_with_its_card_and_tag(finetune_output, tiny_model, dataset_dir, with_token, hub,
                                                    capsys, tmp_path):
    stage = tmp_path / "stage"
    code, _, err = run_push(capsys, finetune_output, "--repo", REPO, "--tag", "v5", "--base-model", tiny_model,
                            "--dataset", dataset_dir, "--dataset-repo", DATA_REPO, "--dataset-license", "cc-by-4.0",
                            "--stage-dir", stage)
    assert code == 0, err
    dataset_calls = [(name, args, kwargs) for name, args, kwargs in hub.calls
                     if DATA_REPO in args or kwargs.get("repo_type") == "dataset"]
    assert [name for name, _, _ in dataset_calls] == ["list_repo_refs", "create_repo", "create_commit",
                                                      "push_to_hub", "create_tag"]
    push_args, push_kwargs = dataset_calls[3][1:]
    assert push_args == (DATA_REPO,) and push_kwargs["token"] == TOKEN
    assert dataset_calls[4][2]["revision"] == "da7a" * 10 and dataset_calls[4][2]["tag"] == "v5"
    dataset_card = (stage / "dataset" / "README.md").read_text()
    assert check_dataset_card(build_dataset_card(DatasetCardFacts(DATA_REPO, "v5", "cc-by-4.0",
                                                                  {"train": 3, "test": 3}, {}))) == []
    assert "task_categories:\n- image-text-to-text" in dataset_card and "license: cc-by-4.0" in dataset_card
    assert f'load_dataset("{DATA_REPO}", revision="v5")' in dataset_card
    model_card = ModelCard(hub.uploaded["README.md"].decode())
    assert model_card.data.datasets == [DATA_REPO]
    assert {r.dataset_type for r in model_card.data.eval_results} == {DATA_REPO}
    assert {r.dataset_revision for r in model_card.data.eval_results} == {"v5"}


def test_dataset_holding_local_paths_is_refused(finetune_output, tiny_model, tmp_path, with_token, hub, capsys):
    from datasets import Dataset, DatasetDict

    rows = Dataset.from_dict({"image": [None], "answer": ["{}"], "source": ["/home/someone/photos/cat.jpg"]})
    DatasetDict({"train": rows}).save_to_disk(str(tmp_path / "leaky"))
    code, _, err = run_push(capsys, finetune_output, "--repo", REPO, "--base-model", tiny_model,
                            "--dataset", tmp_path / "leaky", "--dataset-repo", DATA_REPO)
    assert code == 2 and "column source: holds local paths such as /home/someone/photos/cat.jpg" in err
    assert hub.calls == []


# Cards ---------------------------------------------------------------------------------

def adapter_card(**overrides) -> AdapterCard:
    facts = {"repo_id": REPO, "tag": "v1", "base_model": "Qwen/Qwen2-VL-2B-Instruct", "dataset_repo": DATA_REPO,
             "dataset_revision": "v1", "lora": {"r": 16, "lora_alpha": 32, "target_modules": ["q_proj"]},
             "results": json.loads(json.dumps(RESULTS)), "files": [("adapter_model.safetensors", 10)]}
    return AdapterCard(**(facts | overrides))


def test_model_card_metadata_is_what_the_hub_indexes():
    card = build_model_card(adapter_card())
    assert check_model_card(card) == []
    metadata = ModelCard(str(card)).data.to_dict()
    assert {key: metadata[key] for key in ("base_model", "library_name", "pipeline_tag", "datasets", "license")} == {
        "base_model": "Qwen/Qwen2-VL-2B-Instruct", "library_name": "peft", "pipeline_tag": "image-text-to-text",
        "datasets": [DATA_REPO], "license": "apache-2.0"}
    name, results = model_index_to_eval_results(metadata["model-index"])
    assert name == "tiny-inspector-lora"
    assert {(r.metric_type, r.metric_name, r.metric_value) for r in results} == {
        ("f1", "macro F1", 0.8125), ("exact_match", "exact-set accuracy", 0.55),
        ("accuracy", "severity accuracy", 0.7)}
    assert {(r.task_type, r.dataset_type, r.dataset_split) for r in results} == {
        ("image-text-to-text", DATA_REPO, "test")}
    text = card.text
    assert "| base model, zero-shot | 0.210 |" in text and "| this adapter | 0.812 |" in text
    assert "hf download acme/tiny-inspector-lora --revision v1" in text
    assert "huggingface-cli download acme/tiny-inspector-lora --revision v1" in text
    assert "huggingface.co" not in str(card)


def test_card_checks_name_each_problem():
    card = build_model_card(adapter_card(base_model="Qwen2 VL", license="Apache 2.0"))
    problems = " ".join(check_model_card(card))
    assert "base_model 'Qwen2 VL' is not a Hub repo id" in problems and "license 'Apache 2.0'" in problems
    broken = ModelCard(str(build_model_card(adapter_card())).replace("value: 0.8125", "value: lots"))
    assert "'lots', not a number in [0, 1]" in " ".join(check_model_card(broken))


def test_card_of_another_task_has_its_figures_and_bounds():
    from inspector.tasks import get_task

    counting = get_task("counting")
    results = {"split": "test", "n": 20, "models": {
        "base": {"accuracy": 0.1, "mae": 3.5, "parse_failure_rate": 0.4},
        "adapter": {"accuracy": 0.6, "mae": 0.55, "parse_failure_rate": 0.0}}}
    card = build_model_card(adapter_card(results=results, task=counting))
    assert check_model_card(card) == []
    metadata = ModelCard(str(card)).data.to_dict()
    _, published = model_index_to_eval_results(metadata["model-index"])
    assert {(r.task_name, r.metric_type, r.metric_value) for r in published} == {
        ("Object counting", "accuracy", 0.6), ("Object counting", "mae", 0.55)}
    assert "| base model, zero-shot | 0.100 | 3.500 | 0.400 |" in card.text and "inspector.ask(" in card.text
    assert "JPEG" not in card.text and "degradation-detection" not in metadata["tags"]
    results["models"]["adapter"]["mae"] = 2.5  # an error above 1 is a figure, not a problem
    assert check_model_card(build_model_card(adapter_card(results=results, task=counting))) == []
    results["models"]["adapter"]["accuracy"] = 1.5
    problems = check_model_card(build_model_card(adapter_card(results=results, task=counting)))
    assert problems == ["model-index metric 'exact accuracy' is 1.5, not a number in [0, 1]"]
    data_card = build_dataset_card(DatasetCardFacts(repo_id=DATA_REPO, tag="v1", license="cc-by-4.0",
                                                    splits={"train": 16, "test": 4}, columns={"image": "Image"},
                                                    task=counting))
    assert check_dataset_card(data_card) == [] and "object counting" in data_card.text
    assert "recipes/counting.yaml" in data_card.text and "blur" not in data_card.text


def test_card_usage_works_as_written(tiny_model, finetune_output, photo, hub, capsys, tmp_path):
    """The card's two snippets run, unchanged, against a Hub cache holding what the publish uploads."""
    stage = tmp_path / "stage"
    code, _, err = run_push(capsys, finetune_output, "--repo", REPO, "--tag", "v1", "--base-model", tiny_model,
                            "--dry-run", "--stage-dir", stage)
    assert code == 0, err
    cache = tmp_path / "hub"
    populate_cache(cache, BASE_ID, tiny_model)
    snapshot = populate_cache(cache, REPO, stage / "adapter", revisions=("main", "v1"))
    # An adapter repo has no config.json: the Hub answers 404 and huggingface_hub records that in
    # .no_exist/, which transformers reads as "no config" (AutoProcessor asks for one).
    (snapshot.parent.parent / ".no_exist" / snapshot.name).mkdir(parents=True)
    (snapshot.parent.parent / ".no_exist" / snapshot.name / "config.json").touch()
    card = (stage / "adapter" / "README.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", card, re.DOTALL)
    assert len(snippets) == 2
    shutil.copyfile(photo, tmp_path / "photo.jpg")
    (tmp_path / "usage.py").write_text("\n".join(snippets))
    done = subprocess.run([sys.executable, "usage.py"], cwd=tmp_path, capture_output=True, text=True, timeout=HANG_GUARD_S,
                          env=subprocess_env(HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / "home")))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["verdict"] != "unavailable"  # the adapter answered


# Pulling -------------------------------------------------------------------------------

def test_adapter_pulled_offline_from_cache_by_tag_with_only_its_files(tiny_adapter, tmp_path, monkeypatch):
    import huggingface_hub

    cache = tmp_path / "hub"
    populate_cache(cache, REPO, tiny_adapter, revisions=("main", "v1"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    asked = []
    real = huggingface_hub.snapshot_download
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kw: asked.append(kw) or real(**kw))
    folder = resolve_adapter(REPO, "v1")
    assert folder.parent.parent == cache / "models--acme--tiny-inspector-lora"
    assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()
    assert asked == [{"repo_id": REPO, "revision": "v1", "allow_patterns": ADAPTER_FILES}]
    with pytest.raises(Unavailable, match="not in the local Hugging Face cache.*hf download acme/tiny-inspector-lora"):
        resolve_adapter(REPO, "v9")


def _http_error(cls, status: int):
    request = http.Request("GET", "http://127.0.0.1/api/models/acme/tiny-inspector-lora")
    return cls(f"{status} Client Error", response=http.Response(status, request=request))


@pytest.mark.parametrize("error, message", [
    (lambda: _http_error(errors.RepositoryNotFoundError, 404), "does not exist on the Hub, or is private"),
    (lambda: _http_error(errors.GatedRepoError, 403), "gated or private.*hf auth login.*HF_TOKEN"),
    (lambda: _http_error(errors.RevisionNotFoundError, 404), "has no revision 'v1': check the tag"),
    (lambda: errors.LocalEntryNotFoundError("no connection"), "not in the local Hugging Face cache.*offline"),
    (lambda: errors.HFValidationError("bad id"), "neither a local folder nor a valid Hub repo id"),
    (lambda: http.ConnectError("Name or service not known"), "cannot be reached.*ConnectError.*check the network"),
])
def test_hub_failures_become_clear_messages(monkeypatch, error, message):
    import huggingface_hub

    def failing(**kwargs):
        raise error()

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing)
    with pytest.raises(Unavailable, match=message):
        resolve_adapter(REPO, "v1")


def test_private_adapter_without_token_serves_base_with_notice(tiny_model, monkeypatch):
    import huggingface_hub

    from inspector.model import Inspector, InspectorConfig

    def gated(**kwargs):
        raise _http_error(errors.GatedRepoError, 401)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    inspector = Inspector.load(InspectorConfig(base=str(tiny_model), adapter=REPO, adapter_revision="v1",
                                               precision="fp32", max_new_tokens=2))
    assert not inspector.has_adapter
    assert "Adapter not loaded, the base model serves alone" in inspector.notices[0]
    assert "hf auth login" in inspector.notices[0]


@pytest.mark.parametrize("status, message", [
    (401, "token is invalid or expired"), (403, "cannot write"), (409, "run the same command again"),
])
def test_publish_errors_say_what_to_do(status, message):
    assert message in explain_publish_error(_http_error(errors.HfHubHTTPError, status), REPO)
    assert "HF_HUB_OFFLINE=1" in explain_publish_error(errors.OfflineModeIsEnabled("offline"), REPO)


def test_scrub_keeps_repo_ids_urls_and_units():
    text = "base: Qwen/Qwen2-VL-2B-Instruct\nurl: https://example.org/home/a/b\nspeed: 3 km/h\nout: /mnt/x/y\n"
    scrubbed, changes = scrub_local_paths(text, ".yaml")
    assert scrubbed == text.replace("/mnt/x/y", "y") and changes == [("/mnt/x/y", "y")]
