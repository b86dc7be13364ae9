"""The training stack on the tiny stand-in: data set, collator, metrics, fine-tune, resume, evaluate.

Fast: a few dozen rows, two optimizer steps, four test images. The slow lifecycle that
checks the adapter really learns is tests/test_lifecycle.py.
"""

from __future__ import annotations

import importlib
import json
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Image as ImageFeature, load_from_disk

from conftest import ROOT
from inspector.prompts import DEFAULT_INSTRUCTION
from inspector.report import format_answer
from inspector.tasks.degradation_data import COMBINATION_BLOCK
from inspector.taxonomy import DEGRADATION_TYPES, SEVERITIES

build_dataset = importlib.import_module("train.build_dataset")
finetune = importlib.import_module("train.finetune")
evaluate = importlib.import_module("train.evaluate")

RECIPES = sorted((ROOT / "train" / "recipes").glob("*.yaml"))


def build(out: Path, seed: int = 3, overwrite: bool = False, **overrides) -> Path:
    options = dict(sample_photos=12, crop_size=112, n=44) | overrides
    return build_dataset.main(build_dataset.DatasetConfig(out=str(out), seed=seed, overwrite=overwrite,
                                                          reader_options=options))


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("data") / "ds")


def parse_finetune_args(*argv: str):
    return finetune.parse_args(list(argv))


def tiny_args(tiny_model, dataset, out, *extra: str):
    return parse_finetune_args(
        "--config", str(ROOT / "train" / "recipes" / "tiny.yaml"), "--base", str(tiny_model),
        "--dataset", str(dataset), "--output-dir", str(out), "--max-steps", "2", "--save-steps", "1",
        "--eval-steps", "2", "--max-eval-samples", "4", "--max-train-samples", "16", "--logging-steps", "1",
        "--per-device-train-batch-size", "2", *extra)


@pytest.fixture(scope="module")
def trained_adapter(tiny_model, small_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "adapter"
    return finetune.main(*tiny_args(tiny_model, small_dataset, out))


# -- data set


def test_dataset_is_deterministic_by_seed(small_dataset, tmp_path):
    again = load_from_disk(str(build(tmp_path / "again")))
    first = load_from_disk(str(small_dataset))
    for split in ("train", "validation", "test"):
        one, two = (d[split].cast_column("image", ImageFeature(decode=False)) for d in (first, again))
        assert one.to_list() == two.to_list(), split
    other = load_from_disk(str(build(tmp_path / "other", seed=4)))["train"]["spec"]
    assert other != first["train"]["spec"]


def test_dataset_refuses_to_overwrite(small_dataset):
    with pytest.raises(FileExistsError, match="--overwrite"):
        build(small_dataset)
    assert build(small_dataset, overwrite=True) == small_dataset


def test_dataset_rows_schema_and_split_by_photo(small_dataset):
    dataset = load_from_disk(str(small_dataset))
    assert [len(dataset[s]) for s in ("train", "validation", "test")] == [36, 4, 4]
    row = dataset["train"][0]
    assert {"image", "labels", "answer", "spec", "combination", "source", "seed"} <= set(row)
    assert row["answer"] == format_answer(row["labels"]) and json.loads(row["spec"]) is not None
    assert row["image"].size == (112, 112)
    sources = {split: set(dataset[split]["source"]) for split in dataset}
    assert not sources["train"] & sources["test"] and not sources["train"] & sources["validation"]
    assert (small_dataset / "README.md").read_text().startswith("---\n")


def test_dataset_is_balanced_over_types_severities_and_clean(tmp_path):
    rows = load_from_disk(str(build(tmp_path / "big", n=220, sample_photos=30, crop_size=64)))["train"]
    present = Counter(kind for labels in rows["labels"] for kind, word in labels.items() if word != "none")
    shares = {kind: present[kind] / len(rows) for kind in DEGRADATION_TYPES}
    assert all(0.22 <= share <= 0.42 for share in shares.values()), shares
    severities = Counter(word for labels in rows["labels"] for word in labels.values())
    assert all(severities[word] >= 0.05 * len(rows) for word in SEVERITIES[1:]), severities
    combinations = Counter(rows["combination"])
    assert 0.08 <= combinations["clean"] / len(rows) <= 0.2
    assert len(combinations) == len(set(COMBINATION_BLOCK))
    assert not any(labels["blur"] != "none" and labels["low_resolution"] != "none" for labels in rows["labels"])


def test_a_raised_train_split_shows_each_type_more_often_and_keeps_the_held_out_rows(tmp_path):
    natural = load_from_disk(str(build(tmp_path / "natural", n=220, sample_photos=30, crop_size=64)))
    raised = load_from_disk(str(build(tmp_path / "raised", n=220, sample_photos=30, crop_size=64,
                                      train_combinations="raised")))

    def shares(rows):
        present = Counter(kind for labels in rows["labels"] for kind, word in labels.items() if word != "none")
        return {kind: present[kind] / len(rows) for kind in DEGRADATION_TYPES}

    before, after = shares(natural["train"]), shares(raised["train"])
    assert all(after[kind] >= before[kind] + 0.04 for kind in DEGRADATION_TYPES), (before, after)
    assert all(0.33 <= share <= 0.5 for share in after.values()), after
    assert not any(labels["blur"] != "none" and labels["low_resolution"] != "none"
                   for labels in raised["train"]["labels"])
    assert set(raised["train"]["source"]) == set(natural["train"]["source"]), "the same train photos"
    for split in ("validation", "test"):
        one, two = (d[split].cast_column("image", ImageFeature(decode=False)) for d in (natural, raised))
        assert one.to_list() == two.to_list(), f"the {split} split must not depend on the train mix"
    with pytest.raises(ValueError, match="train_combinations"):
        build(tmp_path / "x", sample_photos=3, train_combinations="more")


def test_dataset_needs_exactly_one_source(tmp_path):
    with pytest.raises(ValueError, match="exactly one source"):
        build_dataset.main(build_dataset.DatasetConfig(out=str(tmp_path), reader_options={"n": 10}))


# -- collator


def degradation_collator(tiny_model):
    from transformers import AutoProcessor

    from inspector.tasks import get_task
    from inspector.tasks.collate import TaskCollator

    processor = AutoProcessor.from_pretrained(tiny_model)
    return processor, TaskCollator(processor, get_task("degradation"), visual_token_budget=64)


def test_collator_trains_on_the_answer_and_end_of_turn_only(tiny_model, small_dataset):
    processor, collator = degradation_collator(tiny_model)
    rows = load_from_disk(str(small_dataset))["train"].select(range(3))
    short = dict(rows[1], answer='{"x":1}')  # rows of different lengths: left padding in play
    batch = collator([rows[0], short, rows[2]])
    for labels, ids, answer in zip(batch["labels"], batch["input_ids"], [rows[0]["answer"], '{"x":1}',
                                                                           rows[2]["answer"]]):
        kept = labels[labels != -100]
        assert processor.tokenizer.decode(kept) == answer + "<|im_end|>"
        assert (ids[labels != -100] == kept).all()
        assert len(kept) == len(processor.tokenizer(answer + "<|im_end|>")["input_ids"])
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


def test_training_batch_is_the_serving_input_plus_the_answer(tiny_model, small_dataset):
    """Training and serving build the model input with the same function and views."""
    from inspector.images import load_image, make_views
    from inspector.prompts import build_inputs

    processor, collator = degradation_collator(tiny_model)
    rows = [load_from_disk(str(small_dataset))["train"][index] for index in range(2)]
    batch = collator(rows)
    views = [make_views(load_image(row["image"]), 64) for row in rows]
    served = build_inputs(processor, views, DEFAULT_INSTRUCTION, answers=[row["answer"] for row in rows])
    for key in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw"):
        assert torch.equal(batch[key], served[key]), key
    prompt = build_inputs(processor, views[:1], DEFAULT_INSTRUCTION)["input_ids"][0]
    first = batch["input_ids"][0][batch["attention_mask"][0].bool()]
    assert torch.equal(first[:len(prompt)], prompt), "the training row starts with the served prompt"


def test_collator_uses_the_serving_views(tiny_model, small_dataset):
    from inspector.images import make_views, view_tokens

    processor, collator = degradation_collator(tiny_model)
    row = load_from_disk(str(small_dataset))["train"][0]
    batch = collator([row])
    image_tokens = int((batch["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())
    assert image_tokens == view_tokens(make_views(row["image"], 64))


# -- metrics


def test_metrics_on_known_inputs():
    from inspector.metrics import confusion, constant_baselines, score

    gold = [{"blur": "mild"}, {"noise": "severe"}, {}, {"blur": "severe", "noise": "mild"}]
    predicted = [{"blur": "moderate"}, {}, {"noise": "mild"}, {"blur": "severe", "noise": "mild"}]
    result = score(gold, predicted, parsed=[True, False, True, True])
    # blur: 2 true positives, no errors; noise: 1 TP, 1 FP, 1 FN; the others: no support, no guesses.
    assert result["per_type"]["blur"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert result["per_type"]["noise"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert result["per_type"]["jpeg_artifacts"]["f1"] == 0.0
    assert result["macro_f1"] == pytest.approx((1.0 + 0.5) / 4)
    assert result["exact_set_accuracy"] == pytest.approx(2 / 4)  # rows 1 and 4
    assert result["severity_accuracy"] == pytest.approx(2 / 4)  # of mild, severe, severe, mild: the last two
    assert result["parse_failure_rate"] == pytest.approx(1 / 4)
    matrices = confusion(gold, predicted)
    assert matrices["blur"][SEVERITIES.index("mild")][SEVERITIES.index("moderate")] == 1
    assert sum(map(sum, matrices["noise"])) == 4
    assert constant_baselines(gold)["always_present"] == pytest.approx((2 * 2 / 6) / 2)


def test_metrics_reject_unknown_words():
    from inspector.metrics import score

    with pytest.raises(ValueError):
        score([{"blur": "huge"}], [{}])


# -- fine-tune


def test_every_recipe_parses_into_the_typed_configs_of_each_script():
    from inspector.tasks import TASKS

    for recipe in RECIPES:
        config, args = parse_finetune_args("--config", str(recipe))
        assert config.task in TASKS, recipe
        assert config.lora_r == 16 and config.lora_alpha == 32 and config.lora_dropout == 0.05, recipe
        assert args.report_to == ["tensorboard"] and args.eval_strategy == "steps", recipe
        assert args.output_dir and not args.remove_unused_columns, recipe
        assert build_dataset.parse_args(["--config", str(recipe)])[0].task == config.task, recipe
        (eval_config,) = evaluate.parse_args(["--config", str(recipe), "--adapter", "adapter"])
        assert eval_config.dataset_dir == config.dataset_dir, recipe
    assert {recipe.name for recipe in RECIPES} >= {"degradation.yaml", "tiny.yaml"}


def test_degradation_recipe_is_the_seeds_qlora():
    config, args = parse_finetune_args("--config", str(ROOT / "train" / "recipes" / "degradation.yaml"))
    assert config.precision == "nf4" and config.target_modules == finetune.LANGUAGE_LORA_TARGETS
    assert args.gradient_checkpointing and args.gradient_accumulation_steps > 1
    assert config.base_model_id == "Qwen/Qwen2-VL-2B-Instruct"


def test_finetune_writes_the_adapter_folder_contract(trained_adapter, tiny_model):
    from peft import PeftModel
    from transformers import Qwen2VLForConditionalGeneration

    names = {path.name for path in trained_adapter.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "inspector_task.json", "training_config.yaml",
            "checkpoints", "runs"} <= names
    assert not {"tokenizer.json", "preprocessor_config.json"} & names
    adapter_config = json.loads((trained_adapter / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "local/tiny-qwen2-vl"
    assert adapter_config["r"] == 16 and set(adapter_config["target_modules"]) == set(finetune.LANGUAGE_LORA_TARGETS)
    task = json.loads((trained_adapter / "inspector_task.json").read_text())
    assert task["task"] == "degradation" and task["answer_format"] == "json-labels"
    assert task["instruction"] == DEFAULT_INSTRUCTION
    assert task["visual_token_budget"] == 64, "the app serves the adapter with the budget it trained with"
    resolved = yaml.safe_load((trained_adapter / "training_config.yaml").read_text())
    assert resolved["max_steps"] == 2 and resolved["visual_token_budget"] == 64
    assert resolved["output_dir"] == str(trained_adapter)
    assert sorted(p.name for p in (trained_adapter / "checkpoints").iterdir()) == ["checkpoint-1", "checkpoint-2"]
    assert list((trained_adapter / "runs").rglob("events.out.tfevents.*"))
    base = Qwen2VLForConditionalGeneration.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(base, str(trained_adapter))  # stock PEFT, as `hf download` users do
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_finetune_resume_continues_from_the_last_checkpoint(trained_adapter, tiny_model, small_dataset):
    with pytest.raises(FileExistsError, match="--resume"):
        finetune.main(*tiny_args(tiny_model, small_dataset, trained_adapter))
    finetune.main(*tiny_args(tiny_model, small_dataset, trained_adapter, "--resume", "--max-steps", "3"))
    state = json.loads((trained_adapter / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert len(state["log_history"]) > 3, "the log of steps 1-2 came back with the checkpoint"


def test_finetune_resume_without_checkpoint_says_what_to_do(tiny_model, small_dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match="without --resume"):
        finetune.main(*tiny_args(tiny_model, small_dataset, tmp_path / "fresh", "--resume"))


# -- evaluate


def test_evaluate_writes_results_with_the_published_schema(trained_adapter, tiny_model, small_dataset, tmp_path):
    out = tmp_path / "eval"
    config = evaluate.EvalConfig(adapter=str(trained_adapter), base_model=str(tiny_model),
                                 dataset_dir=str(small_dataset), out=str(out), precision="fp32", max_new_tokens=6,
                                 batch_size=4)
    results = evaluate.main(config)
    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert {"task", "split", "n", "base_model", "adapter", "dataset", "models", "confusion", "elapsed_s",
            "machine"} <= set(saved)
    assert saved["task"] == "degradation" and saved["split"] == "test" and saved["n"] == 4
    for name in ("base", "adapter"):
        model = saved["models"][name]
        assert {"macro_f1", "exact_set_accuracy", "severity_accuracy", "parse_failure_rate", "per_type"} <= set(model)
        assert set(model["per_type"]) == set(DEGRADATION_TYPES)
        assert set(model["per_type"]["blur"]) == {"precision", "recall", "f1", "support"}
        assert (out / f"confusion_{name}.png").stat().st_size > 1000
    assert saved["visual_token_budget"] == 64, "the budget comes from the adapter's training_config.yaml"
    assert "| macro F1 (presence) |" in (out / "results.md").read_text()
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 4


def test_the_app_serves_an_adapter_with_the_visual_tokens_it_trained_with(trained_adapter, tiny_model, monkeypatch):
    """The views (so the model input) depend on the budget: an adapter trained at 64 tokens is
    served at 64, unless INSPECTOR_VISUAL_TOKENS says otherwise; the base alone at the default."""
    from inspector.model import DEFAULT_VISUAL_TOKENS, Inspector, InspectorConfig

    monkeypatch.delenv("INSPECTOR_VISUAL_TOKENS", raising=False)
    common = dict(base=str(tiny_model), adapter_revision=None, precision="fp32", max_new_tokens=2)
    assert Inspector.load(InspectorConfig(adapter=str(trained_adapter), **common)).config.visual_token_budget == 64
    monkeypatch.setenv("INSPECTOR_VISUAL_TOKENS", "128")
    chosen = Inspector.load(InspectorConfig.from_env(adapter=str(trained_adapter), **common))
    assert chosen.config.visual_token_budget == 128
    alone = Inspector.load(InspectorConfig(adapter="", **common))
    assert alone.config.visual_token_budget == DEFAULT_VISUAL_TOKENS
