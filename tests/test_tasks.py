"""The task library: readers on fixtures in the real formats, parsers, metrics, prompts, scoring."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fixtures_tasks import (CLASS_COUNTS, write_chartqa_hub, write_chartqa_original, write_class_folders,
                            write_counting, write_visdial)
from inspector.tasks import (TASK_FILE, TASKS, build_dialogue_messages, build_task_inputs, get_task, load_task,
                             metrics_table)
from inspector.tasks.base import SPLITS, stratified_split, whole_view
from inspector.tasks.chartqa import relaxed_match
from inspector.tasks.visdial import gt_rank, ndcg

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["irrelevant", "weapons", "drugs", "documents"]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def triage(tmp_path_factory):
    root = write_class_folders(tmp_path_factory.mktemp("triage") / "raw_data")
    return root, get_task("classification").read(root, seed=0, augment_per_image=2, minority_ratio=0.5)


@pytest.fixture(scope="module")
def visdial(tmp_path_factory):
    root = write_visdial(tmp_path_factory.mktemp("visdial"), dialogs={"train": 6, "val": 3}, rounds=4)
    return root, get_task("visdial").read(root, seed=0, validation_fraction=0.2)


# --------------------------------------------------------------------------- registry and task file


def test_registry_builds_every_task_and_refuses_unknown_names():
    assert set(TASKS) == {"degradation", "classification", "counting", "chartqa", "visdial"}
    for name in TASKS:
        task = get_task(name)
        assert task.name == name and task.title and task.max_new_tokens > 0
        headline = [key for key, _, _ in task.headline_metrics]
        assert task.primary_metric == headline[0] and set(headline) <= set(task.metric_ranges)
    assert get_task("chartqa").needs_question and get_task("visdial").needs_question
    assert not get_task("classification").needs_question and not get_task("counting").needs_question
    with pytest.raises(ValueError, match="unknown task 'ocr'.*classification"):
        get_task("ocr")
    with pytest.raises(ValueError, match="no option colour"):
        get_task("counting", colour="red")


def test_task_file_round_trips_and_a_folder_without_it_is_degradation(tmp_path):
    task = get_task("classification", classes=CLASSES, synonyms={"weapons": ["gun"]})
    task.save_config(tmp_path)
    config = json.loads((tmp_path / TASK_FILE).read_text())
    assert config["task"] == "classification" and config["answer_format"] == "class-name"
    assert "weapons" in config["instruction"]  # the bare adapter's users need the prompt
    again = load_task(tmp_path)
    assert again.classes == CLASSES and again.parse("a gun") == "weapons"
    assert load_task(tmp_path / "nowhere").name == "degradation"
    chart = get_task("chartqa").to_config()
    assert "{question}" in chart["instruction"] and chart["needs_question"]


def test_every_recipe_names_a_task_with_valid_options():
    recipes = sorted((ROOT / "train" / "recipes").glob("*.yaml"))
    names = {path.stem for path in recipes}
    assert {"classification", "counting", "chartqa", "visdial"} <= names
    shared = {"task", "base_model", "dataset_dir", "output_dir", "lora_r", "lora_alpha", "lora_dropout",
              "target_modules", "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
              "gradient_accumulation_steps", "gradient_checkpointing", "visual_token_budget", "seed", "eval_steps",
              "save_steps"}  # the training knobs every recipe sets (the degradation recipe's data keys are its own)
    for path in recipes:
        recipe = yaml.safe_load(path.read_text())
        assert recipe["task"] in TASKS, path  # a recipe named after a task (or another, e.g. tiny) trains a known task
        if path.stem in TASKS:
            assert recipe["task"] == path.stem, path
        if recipe["task"] == "degradation":
            continue
        assert shared <= set(recipe), (path, shared - set(recipe))
        options = {key: value for key, value in (recipe.get("task_options") or {}).items() if value is not None}
        get_task(recipe["task"], **options)  # raises on an unknown option
        for line in path.read_text().splitlines():  # torchtune style: every knob says its cost
            if line.split(":")[0] in ("lora_r", "per_device_train_batch_size", "visual_token_budget",
                                      "gradient_checkpointing"):
                assert "#" in line, f"{path.name}: {line!r} needs a one-line cost comment"


# --------------------------------------------------------------------------- messages, inputs, views


def test_dialogue_messages_extend_build_messages():
    from inspector.prompts import build_messages

    assert build_dialogue_messages(3, [("Look.", None)]) == build_messages(3, "Look.")
    assert build_dialogue_messages(2, [("Look.", "Blur.")]) == build_messages(2, "Look.", "Blur.")
    dialogue = build_dialogue_messages(2, [("q1", "a1"), ("q2", "a2"), ("q3", None)])
    assert [m["role"] for m in dialogue] == ["user", "assistant", "user", "assistant", "user"]
    images = [[part["type"] for part in m["content"]].count("image") for m in dialogue]
    assert images == [2, 0, 0, 0, 0]  # images first, in the first user turn only
    with pytest.raises(ValueError, match="only the last may be open"):
        build_dialogue_messages(1, [("q1", None), ("q2", "a2")])


def test_build_task_inputs_equals_build_inputs_for_the_degradation_prompt(tiny_inspector):
    from inspector.prompts import DEFAULT_INSTRUCTION, build_inputs

    processor = tiny_inspector.processor
    task = get_task("degradation")
    views = [task.views(Image.new("RGB", (300, 200), (120, 90, 60)), 64), [whole_view(Image.new("RGB", (90, 90)), 16)]]
    for answers in (None, ['{"blur":"mild"}', '{"noise":"none"}']):
        expected = build_inputs(processor, views, DEFAULT_INSTRUCTION, answers=answers)
        messages = [task.messages({"answer": answer}, len(v), with_answer=answer is not None)
                    for v, answer in zip(views, answers or [None, None])]
        got = build_task_inputs(processor, views, messages)
        assert torch.equal(got["input_ids"], expected["input_ids"])
        assert torch.equal(got["pixel_values"], expected["pixel_values"])


@pytest.mark.parametrize("size,budget", [((1920, 1080), 256), ((640, 480), 1024), ((30, 20), 64), ((5000, 60), 128),
                                         ((600, 800), 768), ((40000, 20), 1280)])
def test_whole_view_is_whole_tokens_within_the_budget(size, budget):
    view = whole_view(Image.new("RGB", size, (10, 20, 30)), budget)
    assert view.width % 28 == 0 and view.height % 28 == 0
    assert view.width >= 56 and view.height >= 56
    assert (view.width // 28) * (view.height // 28) <= budget
    assert max(view.size) / min(view.size) <= 200  # Qwen2-VL refuses more
    if size[0] * size[1] <= budget * 784 and min(size) >= 56:
        assert abs(view.width - size[0]) <= 14 and abs(view.height - size[1]) <= 14  # never shrunk when it fits


# --------------------------------------------------------------------------- splits


def test_stratified_split_keeps_proportions_and_is_seeded():
    strata = ["a"] * 50 + ["b"] * 30 + ["c"] * 7 + ["d"] * 1
    fractions = {"train": 0.72, "validation": 0.13, "test": 0.15}
    split = stratified_split(strata, fractions, seed=3)
    assert sorted(i for indices in split.values() for i in indices) == list(range(len(strata)))
    for name, share in fractions.items():
        assert abs(len(split[name]) - share * len(strata)) <= 1
        for stratum, size in Counter(strata).items():
            got = sum(strata[i] == stratum for i in split[name])
            assert abs(got - share * size) <= 2, (name, stratum, got)
    assert split == stratified_split(strata, fractions, seed=3)
    assert split != stratified_split(strata, fractions, seed=4)
    filled = stratified_split(strata, fractions, seed=3, min_per_split=1)
    for name in fractions:
        assert {strata[i] for i in filled[name]} >= {"a", "b", "c"}  # "d" has one image: train only


# --------------------------------------------------------------------------- classification


def test_classification_reader_splits_class_folders_and_augments_minorities_in_train_only(triage):
    root, dataset = triage
    assert list(dataset) == list(SPLITS)
    assert dataset["train"].features["label"].names == CLASSES  # folder index order, prefix dropped
    originals = {name: [row for row in dataset[name] if not row["augmented"]] for name in SPLITS}
    total = sum(CLASS_COUNTS.values())
    assert sum(len(rows) for rows in originals.values()) == total
    for name, share in zip(SPLITS, (0.72, 0.13, 0.15)):
        assert abs(len(originals[name]) - share * total) <= len(CLASS_COUNTS)
        assert {row["label"] for row in originals[name]} == set(range(len(CLASSES)))  # every class everywhere
    files = {name: {row["file"] for row in originals[name]} for name in SPLITS}
    assert not (files["train"] & files["test"]) and not (files["train"] & files["validation"])
    train_counts = Counter(row["label"] for row in originals["train"])
    largest = max(train_counts.values())
    augmented = Counter(row["label"] for row in dataset["train"] if row["augmented"])
    for label, count in train_counts.items():
        assert augmented[label] == (2 * count if count < 0.5 * largest else 0), CLASSES[label]
    assert augmented and not any(row["augmented"] for name in ("validation", "test") for row in dataset[name])
    row = next(row for row in dataset["train"] if row["augmented"])
    assert row["image"].size == (96, 72) and "rotate" in row["augmentation"]


def test_classification_reader_skips_unreadable_files_and_explains_bad_layouts(tmp_path):
    root = write_class_folders(tmp_path / "raw", counts={"0_cats": 4, "1_dogs": 4})
    (root / "1_dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    dataset = get_task("classification").read(root, seed=0)
    assert sum(len(dataset[name]) for name in SPLITS) == 8
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="at least 2"):
        get_task("classification").read(tmp_path / "flat")
    with pytest.raises(FileNotFoundError, match="class folders"):
        get_task("classification").read(tmp_path / "missing")


def test_classification_task_binds_classes_from_the_data_set(triage):
    _, dataset = triage
    task = get_task("classification").for_dataset(dataset)
    assert task.classes == CLASSES
    prompt = task.instruction({})
    assert all(name in prompt for name in CLASSES)
    row = dataset["test"][0]
    assert task.answer(row) == CLASSES[row["label"]] == task.reference(row)
    with pytest.raises(ValueError, match="no classes yet"):
        get_task("classification").instruction({})


@pytest.mark.parametrize("text,expected", [
    ("weapons", "weapons"),
    ("Weapons.", "weapons"),
    ("1", "weapons"),
    ("1_weapons", "weapons"),
    ("DRUGS", "drugs"),
    ("Class: documents", "documents"),
    ("The answer is: drugs.", "drugs"),
    ("The image shows a handgun lying on a table, so it belongs to the weapons class.", "weapons"),
    ("This is not a weapon; it is an ordinary holiday photo, so irrelevant.", "irrelevant"),
    ("There are no drugs and no weapons visible. Irrelevant.", "irrelevant"),
    ("I see a scanned passport, which is a document.", "documents"),
    ("A knife on a kitchen counter.", "weapons"),  # a synonym from the recipe
    ("I'm not sure what this picture shows.", None),
    ("", None),
])
def test_classification_parser_reads_answers_and_zero_shot_prose(text, expected):
    task = get_task("classification", classes=CLASSES, synonyms={"weapons": ["knife", "handgun", "gun"]})
    assert task.parse(text) == expected


def test_classification_metrics_by_hand():
    task = get_task("classification", classes=["a", "b", "c"])
    metrics = task.metrics(["a", "b", "b", "b", None, "c"], ["a", "a", "b", "b", "c", "c"])
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert metrics["per_class"]["b"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8),
                                         "support": 2}
    assert metrics["per_class"]["c"]["recall"] == 0.5  # the unparsed answer is a miss
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 2 / 3) / 3)
    assert metrics["parse_failure_rate"] == pytest.approx(1 / 6)
    assert metrics["confusion_matrix"]["matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 1]]
    assert metrics["confusion_matrix"]["columns"] == ["a", "b", "c", "unparsed"]
    json.dumps(metrics)
    _check_ranges(task, metrics)
    table = metrics_table({"base (zero-shot)": metrics, "adapter": {"accuracy": 1.0}}, ["accuracy", "macro_f1"])
    assert table.splitlines()[2] == "| accuracy | 0.667 | 1.000 |" and table.endswith("| macro_f1 | 0.711 | - |")


# --------------------------------------------------------------------------- degradation


def test_degradation_task_wraps_the_report_and_its_metrics():
    from inspector.prompts import DEFAULT_INSTRUCTION
    from inspector.report import format_answer

    task = get_task("degradation")
    labels = {"blur": "mild", "noise": "none", "low_resolution": "none", "jpeg_artifacts": "severe"}
    row = {"labels": labels, "answer": format_answer(labels)}
    assert task.instruction(row) == DEFAULT_INSTRUCTION and task.answer(row) == format_answer(labels)
    assert task.reference(row) == labels == task.reference({"answer": format_answer(labels)})
    assert len(task.views(Image.new("RGB", (640, 480)), 256)) > 1  # native crops, not one downscale
    predictions = [task.parse(format_answer(labels)), task.parse("no idea"), task.parse(format_answer({})).to_dict()]
    metrics = task.metrics(predictions, [labels, labels, {}])
    assert metrics["parse_failure_rate"] == pytest.approx(1 / 3) and metrics["count"] == 3
    assert metrics["exact_set_accuracy"] == pytest.approx(2 / 3)  # the unread answer reads as clean
    _check_ranges(task, metrics)


# --------------------------------------------------------------------------- counting


def test_counting_reader_splits_80_20_stratified_by_count(tmp_path):
    root = write_counting(tmp_path / "shop", frames=50, max_count=4)
    dataset = get_task("counting").read(root, seed=0)
    sizes = {name: len(dataset[name]) for name in SPLITS}
    assert sum(sizes.values()) == 50
    assert sizes["test"] == 10 and sizes["train"] + sizes["validation"] == 40  # 80/20
    assert sizes["validation"] == 4  # a tenth of the 80
    for name in SPLITS:
        counts = Counter(dataset[name]["count"])
        assert set(counts) == set(range(5)) or name == "validation"
    row = dataset["test"][0]
    assert set(row) == {"image", "count", "file"} and row["file"].endswith(".jpg")
    assert get_task("counting").answer(row) == str(row["count"])


def test_counting_reader_accepts_header_variants_and_skips_bad_rows(tmp_path):
    root = write_counting(tmp_path / "shop", frames=12, header=("filename", "people"))
    with open(root / "labels.csv", "a") as file:
        file.write("missing.jpg,3\nframe_0001.jpg,two\nframe_0002.jpg,-1\n")
    dataset = get_task("counting").read(root, seed=1)
    assert sum(len(dataset[name]) for name in SPLITS) == 12
    (root / "labels.csv").write_text("path;n\n")
    with pytest.raises(ValueError, match="file column"):
        get_task("counting").read(root)


@pytest.mark.parametrize("text,expected", [
    ("3", 3), ("3.", 3), ("three", 3), ("There are 4 people in the frame.", 4),
    ("I can see two customers near the counter.", 2), ("No one is visible in this frame.", 0),
    ("The shop appears empty.", 0), ("At 10:32 the camera shows 5 shoppers.", 5),
    ("In this 1080p frame there are 3.", 3), ("a single person walks by", 1),
    ("Approximately 12 individuals are standing in line.", 12), ("I cannot tell.", None), ("", None),
])
def test_counting_parser_reads_numbers_in_prose(text, expected):
    assert get_task("counting").parse(text) == expected


def test_counting_metrics_by_hand():
    task = get_task("counting")
    metrics = task.metrics([0, 2, 2, None, 3], [0, 1, 2, 2, 3])
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["mae"] == pytest.approx((0 + 1 + 0 + 2 + 0) / 5)  # unparsed costs its reference
    assert metrics["mae_parsed"] == pytest.approx(0.25)
    assert metrics["within_one"] == pytest.approx(0.8)
    assert metrics["per_count"]["2"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert metrics["per_count"]["1"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert metrics["macro_f1"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    json.dumps(metrics)
    _check_ranges(task, metrics)
    assert task.metrics([None], [2])["mae_parsed"] is None


# --------------------------------------------------------------------------- chart QA


@pytest.mark.parametrize("writer", [write_chartqa_hub, write_chartqa_original])
def test_chartqa_reader_reads_both_published_layouts(tmp_path, writer):
    root = writer(tmp_path / "chartqa", sizes={"train": 6, "val": 3, "test": 4})
    dataset = get_task("chartqa").read(root, seed=0)
    assert {name: len(dataset[name]) for name in SPLITS} == {"train": 6, "validation": 3, "test": 4}
    row = dataset["test"][0]
    assert set(row) == {"image", "query", "label", "answers", "source"}
    assert isinstance(row["image"], Image.Image) and row["query"].endswith("?")
    assert row["answers"][0] == row["label"] and row["source"] in ("human", "augmented")
    assert {r["source"] for name in SPLITS for r in dataset[name]} == {"human", "augmented"}
    task = get_task("chartqa")
    assert task.instruction(row).startswith(row["query"]) and task.answer(row) == row["label"]


def test_chartqa_reader_carves_validation_when_the_download_has_none(tmp_path):
    root = write_chartqa_hub(tmp_path / "chartqa", sizes={"train": 20, "test": 2})
    dataset = get_task("chartqa").read(root, seed=0, max_examples={"train": 10})
    assert len(dataset["validation"]) == 1 and len(dataset["train"]) == 10
    (tmp_path / "empty" / "charts").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="neither"):
        get_task("chartqa").read(tmp_path / "empty")


@pytest.mark.parametrize("text,expected", [
    ("14", "14"), ("Yes", "Yes"), ("Italy.", "Italy"), ("The answer is 0.57.", "0.57"), ("Answer: Mexico", "Mexico"),
    ("The value for 2019 is 45.3%.", "45.3%"),
    ("Yes, the sum for Madagascar (3.5) is more than the one for Fiji (2.1).", "Yes"),
    ("In 2019, the share of adults who approve was 45.3, up from 40 in 2018.", "45.3"),
    ("Looking at the bar chart, the highest bar belongs to Lamb with a value of 93.45", "93.45"),
    ("", None),
])
def test_chartqa_parser_finds_the_short_answer(text, expected):
    assert get_task("chartqa").parse(text) == expected


def test_relaxed_accuracy_by_hand():
    assert relaxed_match("105", "100") and not relaxed_match("105.1", "100")  # 5 % of the label
    assert relaxed_match("95", "100") and not relaxed_match("94.9", "100")
    assert relaxed_match("0.0", "0") and not relaxed_match("0.01", "0")  # a zero label needs exactly 0
    assert relaxed_match("1,234", "1234") and relaxed_match("45%", "45") and relaxed_match("$12", "12.3")
    assert relaxed_match(" italy. ", "Italy") and not relaxed_match("Italia", "Italy")
    assert not relaxed_match(None, "3") and not relaxed_match("2019", "Mexico")
    task = get_task("chartqa")
    references = ["45.3", {"answers": ["Italy"], "source": "human"}, {"answers": ["96", "95"], "source": "augmented"},
                  "3"]
    metrics = task.metrics(["45", "italy", "100", None], references)
    assert metrics["relaxed_accuracy"] == pytest.approx(0.75)
    assert metrics["exact_match"] == pytest.approx(0.25)
    assert metrics["relaxed_accuracy_human"] == 1.0 and metrics["count_augmented"] == 1
    _check_ranges(task, metrics)


# --------------------------------------------------------------------------- visual dialogue


def test_visdial_reader_reads_dialogs_candidates_and_dense_relevance(visdial):
    root, dataset = visdial
    assert {name: len(dataset[name]) for name in SPLITS} == {"train": 5, "validation": 1, "test": 3}
    document = json.loads((root / "visdial_1.0_val.json").read_text())["data"]
    dense = {entry["image_id"]: entry for entry in
             json.loads((root / "visdial_1.0_val_dense_annotations.json").read_text())}
    for row in dataset["test"]:
        source = next(d for d in document["dialogs"] if d["image_id"] == row["image_id"])
        assert row["questions"] == [document["questions"][r["question"]] for r in source["dialog"]]
        for index, options in enumerate(row["options"]):
            assert len(options) == 100
            assert options[row["gt_index"][index]] == row["answers"][index]  # the ground truth is a candidate
        annotated = dense[row["image_id"]]["round_id"] - 1
        assert [bool(r) for r in row["relevance"]] == [i == annotated for i in range(4)]
    assert all(options == [] for row in dataset["train"] for options in row["options"])  # not trained on


def test_visdial_turns_and_ranking_items(visdial):
    _, dataset = visdial
    task = get_task("visdial")
    row = dataset["test"][0]
    turns = task.turns(row)
    assert len(turns) == 4 and turns[0][0].startswith("Answer questions") and row["caption"] in turns[0][0]
    assert all(question.endswith("?") for question, _ in turns)
    items = task.ranking_items(row)
    assert len(items) == 4 and items[2].turns[:2] == turns[:2] and items[2].turns[2] == (turns[2][0], None)
    assert items[2].candidates[items[2].reference["gt_index"]] == turns[2][1]
    dense = task.ranking_items(row, rounds="dense")
    assert len(dense) == 1 and len(dense[0].reference["relevance"]) == 100
    served = task.request("is it sunny", history=[("what is it", "a shape")])
    assert task.prompt_turns(served)[-1] == ("is it sunny?", None) and len(task.prompt_turns(served)) == 2


def test_visdial_metrics_by_hand():
    assert gt_rank([0.1, 0.9, 0.5, 0.9, 0.2], 2) == 3
    assert gt_rank([0.1, 0.9, 0.5, 0.9, 0.2], 1) == 2  # a tie counts against the model
    assert gt_rank([0.5] * 100, 0) == 100
    # ranking by score: 1, 3, 2, 4, 0; k = 3 relevant; DCG = 1 + 0 + 0.5 / log2(4); ideal = 1 + 1 / log2(3) + 0.25
    assert ndcg([0.1, 0.9, 0.5, 0.8, 0.2], [0, 1, 0.5, 0, 1]) == pytest.approx(1.25 / (1.25 + 1 / math.log2(3)))
    assert ndcg([0.1, 0.2], [0, 0]) is None
    task = get_task("visdial")
    scores = [[0.1, 0.9, 0.5, 0.9, 0.2], [0.1, 0.9, 0.5, 0.9, 0.2], [0.9, 0.1, 0.1, 0.1, 0.1]]
    references = [{"gt_index": 2, "relevance": None}, {"gt_index": 1, "relevance": [0, 1, 0.5, 0, 1]},
                  {"gt_index": 0, "relevance": []}]
    metrics = task.metrics(scores, references)
    assert metrics["mrr"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    assert (metrics["r@1"], metrics["r@5"], metrics["mean_rank"]) == (pytest.approx(1 / 3), 1.0, 2.0)
    dense = ndcg(scores[1], references[1]["relevance"])
    assert metrics["ndcg"] == pytest.approx((1 / math.log2(4) + dense + 1.0) / 3)
    assert metrics["ndcg_dense_rounds"] == 1
    _check_ranges(task, metrics)


def test_task_collator_labels_every_dialogue_answer(tiny_inspector, visdial):
    from inspector.tasks.collate import TaskCollator, dialogue_labels

    _, dataset = visdial
    processor = tiny_inspector.processor
    collator = TaskCollator(processor, get_task("visdial"), visual_token_budget=16)
    rows = [dataset["train"][0], dataset["train"][1]]
    batch = collator(rows)
    tokenizer = processor.tokenizer
    for index, row in enumerate(rows):
        kept = batch["labels"][index][batch["labels"][index] != -100]
        assert tokenizer.decode(kept) == "".join(f"{answer}<|im_end|>" for answer in row["answers"])
    single = get_task("counting")
    views = [single.views(Image.new("RGB", (90, 60)), 16)]
    messages = [single.messages({"count": 3}, 1), single.messages({"count": 12}, 1)]
    inputs = build_task_inputs(processor, views * 2, messages)
    labels = dialogue_labels(inputs["input_ids"], inputs["attention_mask"], collator.header_ids, collator.end_id)
    for row, answer in zip(labels, ("3", "12")):  # single turn: the one answer and its end, nothing else
        assert tokenizer.decode(row[row != -100]) == f"{answer}<|im_end|>"


# --------------------------------------------------------------------------- parsers never raise

_ANY_TEXT = st.one_of(st.text(max_size=300), st.text(alphabet="0123456789.,%$-: yesnoYESNO{}[]\"'\n", max_size=80))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_ANY_TEXT)
def test_parsers_never_raise(text):
    tasks = [get_task("classification", classes=CLASSES, synonyms={"weapons": ["gun"]}), get_task("counting"),
             get_task("chartqa"), get_task("visdial"), get_task("degradation")]
    for task in tasks:
        prediction = task.parse(text)
        if task.name != "degradation":
            json.dumps(prediction)
        assert isinstance(task.render(prediction, text), str)
    for task in tasks[:4]:
        assert task.parse(None) is None and task.parse(b"bytes") is None


# --------------------------------------------------------------------------- likelihood scoring


def _request(task_turns, candidates):
    from inspector.scoring import ScoringRequest

    views = [whole_view(Image.new("RGB", (120, 90), (100, 150, 200)), 16)]
    return ScoringRequest(views, build_dialogue_messages(len(views), task_turns), candidates)


def test_candidate_scores_equal_a_direct_forward_pass(tiny_inspector):
    from inspector.scoring import score_candidates
    from inspector.tasks.base import render_chat

    model, processor = tiny_inspector.model, tiny_inspector.processor
    turns = [("Its caption: a blue square.\nis it blue?", "yes"), ("how many?", None)]
    candidates = ["2", "yes", "no, there are three", "many"]
    request = _request(turns, candidates)
    cached = score_candidates(model, processor, [request], adapter_names=["adapter"], chunk_size=3)[0]
    full = score_candidates(model, processor, [request], adapter_names=["adapter"], method="full")[0]
    np.testing.assert_allclose(cached.sums, full.sums, atol=1e-4)
    direct = []
    for candidate in candidates:  # the training text of the whole dialogue, as the collator builds it
        text = render_chat(processor, build_dialogue_messages(1, [*turns[:-1], (turns[-1][0], candidate)]))
        batch = processor(text=[text], images=request.views, return_tensors="pt")
        with torch.inference_mode():
            logits = model(**batch, adapter_names=["adapter"]).logits[0].float()
        ids = batch["input_ids"][0]
        answer = processor.tokenizer.encode(f"{candidate}<|im_end|>", add_special_tokens=False)
        end = len(ids) - 1  # the template ends the answer with <|im_end|>\n
        assert ids[end - len(answer):end].tolist() == answer
        logprobs = torch.log_softmax(logits[end - len(answer) - 1:end - 1], dim=-1)
        direct.append(float(logprobs.gather(-1, torch.tensor(answer)[:, None]).sum()))
    np.testing.assert_allclose(cached.sums[0], direct, atol=1e-4)
    assert list(np.argsort(-cached.sums[0])) == list(np.argsort(-np.asarray(direct)))
    assert cached.lengths.tolist() == [len(processor.tokenizer.encode(f"{c}<|im_end|>")) for c in candidates]
    np.testing.assert_allclose(cached.means, cached.sums / cached.lengths)


def test_mixed_adapter_batch_scores_equal_separate_passes(tiny_inspector, monkeypatch):
    from inspector.scoring import score_candidates

    model, processor = tiny_inspector.model, tiny_inspector.processor
    requests = [_request([("is it blue?", None)], ["yes", "no", "i think so", "blue, 2", "many"]),
                _request([("what is it?", "a square"), ("is it big?", None)], ["yes", "no"])]
    requests.append(type(requests[1])(requests[1].views, requests[0].messages, ["no", "yes"]))  # same views object
    vision = model.get_base_model().model
    calls = []
    original = vision.get_image_features
    monkeypatch.setattr(vision, "get_image_features", lambda *a, **k: calls.append(1) or original(*a, **k))
    together = score_candidates(model, processor, requests, adapter_names=["__base__", "adapter"], chunk_size=2)
    assert len(calls) == 2  # once per distinct views, not per adapter row or per question
    monkeypatch.undo()
    for index, scores in enumerate(together):
        base = score_candidates(model, processor, [requests[index]], adapter_names=["__base__"])[0]
        adapter = score_candidates(model, processor, [requests[index]], adapter_names=["adapter"])[0]
        np.testing.assert_allclose(scores.sums[0], base.sums[0], atol=1e-5)
        np.testing.assert_allclose(scores.sums[1], adapter.sums[0], atol=1e-5)
        assert scores.for_adapter("adapter") == pytest.approx(adapter.sums[0].tolist(), abs=1e-5)
        assert not np.allclose(scores.sums[0], scores.sums[1])  # the adapter really changes the scores
    with model.disable_adapter():  # a model without adapters: no adapter_names at all
        plain = score_candidates(model, processor, requests[:1])[0]
    np.testing.assert_allclose(plain.sums[0], together[0].sums[0], atol=1e-5)
    assert plain.adapter_names == ["__base__"]


# --------------------------------------------------------------------------- helpers


def _check_ranges(task, metrics):
    for key, (low, high) in task.metric_ranges.items():
        assert key in metrics, key
        assert low <= metrics[key] <= high, (key, metrics[key])


# --------------------------------------------------------------------------- the library's lifecycle

_FIXTURES = {
    "classification": lambda root: write_class_folders(root, counts={"0_irrelevant": 8, "1_weapons": 3, "2_drugs": 4}),
    "counting": lambda root: write_counting(root, frames=15, max_count=2),
    "chartqa": lambda root: write_chartqa_hub(root, sizes={"train": 4, "val": 2, "test": 3}),
    "visdial": lambda root: write_visdial(root, dialogs={"train": 4, "val": 2}, rounds=2, options=100),
}


@pytest.mark.parametrize("name", list(_FIXTURES))
def test_library_lifecycle_read_train_save_load_evaluate(name, tiny_model, tmp_path):
    """read -> a few LoRA steps with TaskCollator -> adapter + task file -> Inspector.load -> base and
    adapter evaluated together -> metrics in range: what the train scripts will wire."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    from inspector.model import Inspector, InspectorConfig
    from inspector.tasks.collate import TaskCollator
    from inspector.tasks.evaluation import evaluate_task
    from inspector.model import LANGUAGE_LORA_TARGETS

    dataset = get_task(name).read(_FIXTURES[name](tmp_path / "data"), seed=0)
    task = get_task(name).for_dataset(dataset)
    processor = AutoProcessor.from_pretrained(tiny_model)
    torch.manual_seed(0)
    base = Qwen2VLForConditionalGeneration.from_pretrained(tiny_model, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=LANGUAGE_LORA_TARGETS,
                                            task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    collator = TaskCollator(processor, task, visual_token_budget=16)
    rows = list(dataset["train"])
    for step in range(2):
        loss = model(**collator(rows[2 * step:2 * step + 2])).loss
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    adapter_dir = tmp_path / "adapter"
    model.save_pretrained(adapter_dir)
    task.save_config(adapter_dir)

    inspector = Inspector.load(InspectorConfig(base=str(tiny_model), adapter=str(adapter_dir), adapter_revision=None,
                                               precision="fp32", visual_token_budget=16))
    served = load_task(adapter_dir)
    assert served.to_config() == task.to_config() == inspector.task.to_config()
    results = evaluate_task(inspector, list(dataset["test"]), batch_size=4,
                            rounds="dense")  # VisDial's NDCG protocol: the annotated round of each dialogue
    for model_name in ("__base__", "adapter"):
        metrics = results[model_name]["metrics"]
        json.dumps(results[model_name])
        _check_ranges(served, metrics)
        assert metrics["count"] > 0
