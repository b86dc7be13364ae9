"""Small data sets in the real on-disk formats of each fine-tuning task, written from code.

    from fixtures_tasks import write_class_folders, write_counting, write_chartqa_hub, write_visdial

    root = write_class_folders(tmp_path / "raw_data")        # raw_data/0_irrelevant/..., 1_weapons/...
    dataset = get_task("classification").read(root, seed=0)

    python tests/fixtures_tasks.py visdial /tmp/visdial      # a recipe's small source, from the shell

No download is possible where this project is tested, so these stand in for the
published data sets, in their published layouts (see each function). The pictures are
simple drawings that carry the label (a class colour, N figures, the bars of a chart),
so a model could learn them; they are small, deterministic and written in well under a
second each. A plain module (no pytest import): tests, benchmarks and scripts can use it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Class folders of a forensic-triage-like set: the index prefix fixes the label order.
CLASS_COUNTS: dict[str, int] = {"0_irrelevant": 20, "1_weapons": 6, "2_drugs": 10, "3_documents": 4}
_CLASS_COLOURS = [(90, 140, 90), (160, 40, 40), (230, 220, 60), (220, 220, 230), (60, 60, 160), (200, 120, 40)]


def write_class_folders(root: Path, counts: dict[str, int] | None = None, size: tuple[int, int] = (96, 72),
                        seed: int = 0) -> Path:
    """root/<index>_<name>/img_NNN.{jpg,png}: images in class folders, as triage sets are shared.

    Each class has its own colour and shape, with random position and noise; JPEG and
    PNG files alternate, and one class keeps some images in a subfolder.
    """
    counts = counts or CLASS_COUNTS
    rng = np.random.default_rng(seed)
    for label, (folder, count) in enumerate(counts.items()):
        for index in range(count):
            subfolder = "batch2" if label == 0 and index % 5 == 4 else ""
            path = root / folder / subfolder / f"img_{index:03d}.{'jpg' if index % 2 else 'png'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            _class_picture(label, size, rng).save(path)
    return root


def _class_picture(label: int, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    width, height = size
    background = rng.integers(0, 60, size=3)
    pixels = np.full((height, width, 3), background, dtype=np.float32)
    pixels += rng.normal(0, 6, size=pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    x, y = int(rng.integers(5, width // 2)), int(rng.integers(5, height // 2))
    colour = _CLASS_COLOURS[label % len(_CLASS_COLOURS)]
    box = (x, y, x + width // 3, y + height // 3)
    [draw.rectangle, draw.ellipse, draw.polygon][label % 3](
        box if label % 3 != 2 else [(x, y + height // 3), (x + width // 6, y), (x + width // 3, y + height // 3)],
        fill=colour)
    return image


# --------------------------------------------------------------------------- counting


def write_counting(root: Path, frames: int = 20, max_count: int = 4, size: tuple[int, int] = (112, 84),
                   seed: int = 0, header: tuple[str, str] = ("file", "count")) -> Path:
    """root/frames/frame_NNNN.jpg + root/labels.csv (file,count): CCTV-like frames with N figures."""
    rng = np.random.default_rng(seed)
    (root / "frames").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(frames):
        count = int(index % (max_count + 1))  # every count appears, in a stable proportion
        name = f"frame_{index:04d}.jpg"
        _crowd_picture(count, size, rng).save(root / "frames" / name, quality=90)
        rows.append((name, count))
    with open(root / "labels.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return root


def _crowd_picture(count: int, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    width, height = size
    image = Image.new("RGB", size, (150, 150, 140))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, height * 2 // 3, width, height), fill=(110, 100, 90))  # the floor
    slots = rng.permutation(max(count, 1) * 2)[:count]
    step = width // (max(count, 1) * 2)
    for slot in slots:
        x = int(slot * step + step // 4)
        draw.ellipse((x, height // 4, x + 8, height // 4 + 8), fill=(60, 40, 30))  # head
        draw.rectangle((x - 1, height // 4 + 9, x + 9, height // 4 + 35), fill=(30, 30, 80))  # body
    return image


# --------------------------------------------------------------------------- charts

_CATEGORIES = ["Lamb", "Corn", "Rice", "Beef", "Milk", "Eggs"]


def _chart(values: list[float], categories: list[str], size: tuple[int, int] = (168, 112)) -> Image.Image:
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    top = max(values)
    bar = width // (len(values) * 2)
    for index, (value, name) in enumerate(zip(values, categories)):
        x = bar // 2 + index * 2 * bar
        y = height - 14 - int((height - 30) * value / top)
        draw.rectangle((x, y, x + bar, height - 14), fill=_CLASS_COLOURS[index % len(_CLASS_COLOURS)])
        draw.text((x, y - 11), f"{value:g}", fill="black")
        draw.text((x, height - 12), name[:4], fill="black")
    return image


def _chart_examples(count: int, rng: np.random.Generator, human_share: float = 0.5) -> list[dict]:
    """Charts with questions and answers as ChartQA writes them (labels are strings)."""
    examples = []
    for index in range(count):
        categories = list(rng.choice(_CATEGORIES, size=3, replace=False))
        values = [float(v) for v in rng.integers(1, 100, size=3)]
        image = _chart(values, categories)
        tallest = categories[int(np.argmax(values))]
        questions = [
            (f"What is the value of {categories[0]}?", f"{values[0]:g}"),
            ("Which category has the highest value?", tallest),
            (f"Is the value of {categories[1]} more than {categories[2]}?",
             "Yes" if values[1] > values[2] else "No"),
        ]
        query, label = questions[index % len(questions)]
        examples.append({"image": image, "query": query, "label": label,
                         "human": bool(rng.random() < human_share), "name": f"{40000000000000 + index}.png"})
    return examples


def write_chartqa_hub(root: Path, sizes: dict[str, int] | None = None, seed: int = 0) -> Path:
    """The layout of the Hub dataset HuggingFaceM4/ChartQA as downloaded:
    root/data/{train,val,test}-00000-of-00001-<hash>.parquet, columns image {bytes, path},
    query (str), label (list of str), human_or_machine (ClassLabel human/machine), and
    the README with its dataset_info."""
    import datasets

    sizes = sizes or {"train": 8, "val": 3, "test": 4}
    rng = np.random.default_rng(seed)
    features = datasets.Features({
        "image": datasets.Image(), "query": datasets.Value("string"),
        "label": datasets.Sequence(datasets.Value("string")),
        "human_or_machine": datasets.ClassLabel(names=["human", "machine"]),
    })
    (root / "data").mkdir(parents=True, exist_ok=True)
    for split, count in sizes.items():
        examples = _chart_examples(count, rng)
        table = datasets.Dataset.from_dict({
            "image": [example["image"] for example in examples],
            "query": [example["query"] for example in examples],
            "label": [[example["label"]] for example in examples],
            "human_or_machine": [0 if example["human"] else 1 for example in examples],
        }, features=features)
        table.to_parquet(str(root / "data" / f"{split}-00000-of-00001-{seed:016x}.parquet"))
    splits = "\n".join(f"  - name: {split}\n    num_examples: {count}" for split, count in sizes.items())
    files = "\n".join(f"  - split: {split}\n    path: data/{split}-*" for split in sizes)
    (root / "README.md").write_text(
        "---\ndataset_info:\n  features:\n  - name: image\n    dtype: image\n  - name: query\n    dtype: string\n"
        "  - name: label\n    list: string\n  - name: human_or_machine\n    dtype:\n      class_label:\n"
        f"        names:\n          '0': human\n          '1': machine\n  splits:\n{splits}\n"
        f"configs:\n- config_name: default\n  data_files:\n{files}\n---\n# Dataset Card for \"ChartQA\"\n")
    return root


def write_chartqa_original(root: Path, sizes: dict[str, int] | None = None, seed: int = 0) -> Path:
    """The layout of the original release (github.com/vis-nlp/ChartQA): root/"ChartQA Dataset"/
    {train,val,test}/{split}_human.json and {split}_augmented.json (lists of {imgname, query,
    label}) and the charts in {split}/png/. Returns the folder that holds "ChartQA Dataset"."""
    sizes = sizes or {"train": 8, "val": 3, "test": 4}
    rng = np.random.default_rng(seed)
    base = root / "ChartQA Dataset"
    for split, count in sizes.items():
        (base / split / "png").mkdir(parents=True, exist_ok=True)
        entries: dict[str, list[dict]] = {"human": [], "augmented": []}
        for example in _chart_examples(count, rng):
            example["image"].save(base / split / "png" / example["name"])
            entries["human" if example["human"] else "augmented"].append(
                {"imgname": example["name"], "query": example["query"], "label": example["label"]})
        for source, items in entries.items():
            (base / split / f"{split}_{source}.json").write_text(json.dumps(items))
    return root


# --------------------------------------------------------------------------- visual dialogue

_ANSWER_WORDS = ["yes", "no", "maybe", "i think so", "not really", "red", "blue", "green", "white", "black",
                 "1", "2", "3", "4", "5", "many", "a few", "none", "outside", "inside", "daytime", "at night",
                 "on the left", "on the right", "in the middle", "he is", "she is", "it is", "they are", "can't tell"]
_QUESTIONS = ["is it sunny", "how many shapes are there", "what color is the big shape", "is there a person",
              "is this indoors", "what is on the left", "can you see the sky", "is the picture in color",
              "are there any animals", "what time of day is it"]


def _answer_pool(size: int) -> list[str]:
    """`size` distinct answers: VisDial's short phrases, then pairs of them."""
    pairs = (f"{first}, {second}" for first in _ANSWER_WORDS for second in _ANSWER_WORDS if first != second)
    pool = list(_ANSWER_WORDS)
    while len(pool) < size:
        pool.append(next(pairs))
    return pool


def write_visdial(root: Path, dialogs: dict[str, int] | None = None, rounds: int = 10, options: int = 100,
                  dense: bool = True, seed: int = 0) -> Path:
    """VisDial v1.0 as visualdialog.org publishes it:

    - root/visdial_1.0_{train,val}.json: {"version": "1.0", "split": ..., "data": {"questions",
      "answers", "dialogs": [{"image_id", "caption", "dialog": [{"question", "answer",
      "answer_options" (100 indices), "gt_index"}]}]}};
    - root/visdial_1.0_val_dense_annotations.json: [{"image_id", "round_id" (1-based),
      "gt_relevance" (100 floats)}], one annotated round per val image;
    - images named by image_id as released: root/images/train2014/COCO_train2014_%012d.jpg and
      root/images/VisualDialog_val2018/VisualDialog_val2018_%012d.jpg.
    """
    dialogs = dialogs or {"train": 6, "val": 3}
    rng = np.random.default_rng(seed)
    answers = _answer_pool(max(options + 20, 120))
    questions = list(_QUESTIONS)
    annotations = []
    image_id = 1000
    for split, count in dialogs.items():
        entries = []
        for _ in range(count):
            image_id += 7
            folder, name = (("train2014", f"COCO_train2014_{image_id:012d}.jpg") if split == "train" else
                            ("VisualDialog_val2018", f"VisualDialog_val2018_{image_id:012d}.jpg"))
            (root / "images" / folder).mkdir(parents=True, exist_ok=True)
            _class_picture(int(rng.integers(0, 6)), (112, 84), rng).save(root / "images" / folder / name)
            entry_rounds = []
            for turn in range(rounds):
                answer = int(rng.integers(len(answers)))
                others = [int(i) for i in rng.permutation(len(answers)) if i != answer][:options - 1]
                gt_index = int(rng.integers(options))
                option_ids = others[:gt_index] + [answer] + others[gt_index:]
                entry_rounds.append({"question": turn % len(questions), "answer": answer,
                                     "answer_options": option_ids, "gt_index": gt_index})
            entries.append({"image_id": image_id, "caption": f"a picture with a shape number {image_id % 13}",
                            "dialog": entry_rounds})
            if split == "val" and dense:
                turn = int(rng.integers(rounds))
                relevance = [0.0] * options
                relevance[entry_rounds[turn]["gt_index"]] = 1.0
                for other in rng.choice(options, size=3, replace=False):
                    relevance[int(other)] = max(relevance[int(other)], float(rng.choice([0.5, 1.0])))
                annotations.append({"image_id": image_id, "round_id": turn + 1, "gt_relevance": relevance})
        document = {"version": "1.0", "split": f"{split}2018" if split == "val" else split,
                    "data": {"questions": questions, "answers": answers, "dialogs": entries}}
        (root / f"visdial_1.0_{split}.json").write_text(json.dumps(document))
    if annotations:
        (root / "visdial_1.0_val_dense_annotations.json").write_text(json.dumps(annotations))
    return root


# --------------------------------------------------------------------------- one small source per recipe

# The smallest data each recipe's lifecycle runs on (tests/test_recipes.py): every split
# non-empty, every class and count in the test split, VisDial's 100 candidates a round.
SMALL_SOURCES = {
    "classification": lambda root: write_class_folders(root, counts={"0_irrelevant": 8, "1_weapons": 3,
                                                                     "2_drugs": 4}),
    "counting": lambda root: write_counting(root, frames=15, max_count=2),
    "chartqa": lambda root: write_chartqa_hub(root, sizes={"train": 4, "val": 2, "test": 3}),
    "visdial": lambda root: write_visdial(root, dialogs={"train": 4, "val": 2}, rounds=2, options=100),
}


def write_small_source(task: str, root: Path) -> Path:
    """A small data folder in the real layout the recipe of `task` reads (`--source`)."""
    if task not in SMALL_SOURCES:
        raise ValueError(f"no small source for task {task!r}; there is one for: {', '.join(SMALL_SOURCES)}")
    return SMALL_SOURCES[task](Path(root))


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3:
        sys.exit(f"usage: python tests/fixtures_tasks.py {{{','.join(SMALL_SOURCES)}}} FOLDER")
    print(write_small_source(sys.argv[1], Path(sys.argv[2])))
