"""The degradation task's data: clean photos, degraded with known parameters, and their answers.

    from inspector.tasks import get_task

    dataset = get_task("degradation").read("photos/", seed=0, n=5000)      # a folder of clean photos
    dataset = get_task("degradation").read(None, seed=0, sample_photos=240)  # offline: bundled photos

Each row is a clean photo degraded by `inspector.evidence.degrade` with parameters drawn
by `inspector.evidence.sample_spec` (known, inside the contract's bands), and the target
answer `inspector.report.format_answer(labels)`. Rows cycle through a block of degradation
combinations in which every type is present equally often: undegraded photos, each type
alone, the pairs and triples that can co-occur (blur and low resolution hide each other, so
they are never combined); severities are drawn uniformly. A clean photo and all its
degraded versions land in one split, so the test split holds photos the adapter never saw.

`train_combinations: raised` draws the train split from `RAISED_BLOCK` instead: each type
present in about 40 % of the rows, where the held-out splits keep about 32 %. A model that
answers greedily says "present" only where it is more likely than "none", so on a faint
signal it says "none", which F1 scores as a miss; a prior raised in training moves that
decision point lower, as class weights do for a classifier. The validation and test splits
are the same rows either way, so evaluations compare (measured on the tiny stand-in:
README, "Training").

The result is a `datasets.DatasetDict` (train / validation / test), columns `image` (PNG,
lossless: the JPEG artifacts are in the pixels), `labels`, `answer`, `spec` (JSON),
`combination`, `source`, `seed`. Same options, same bytes. Its rows are generated into a
fresh cache folder that lives as long as the DatasetDict (never a stale cache of an
earlier run); train/build_dataset.py saves it with `save_to_disk`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
from PIL import Image

from inspector.taxonomy import DEGRADATION_TYPES

# One block of the schedule: every type is present in 7 of its 22 rows (~32 %), 3 rows
# are undegraded, and every combination `sample_spec` can make appears.
COMBINATION_BLOCK: tuple[tuple[str, ...], ...] = (
    (), (), (),
    ("blur",), ("blur",), ("blur",), ("blur",),
    ("low_resolution",), ("low_resolution",), ("low_resolution",), ("low_resolution",),
    ("noise",), ("noise",), ("jpeg_artifacts",), ("jpeg_artifacts",),
    ("blur", "noise"), ("blur", "jpeg_artifacts"), ("low_resolution", "noise"),
    ("low_resolution", "jpeg_artifacts"), ("noise", "jpeg_artifacts"),
    ("blur", "noise", "jpeg_artifacts"), ("low_resolution", "noise", "jpeg_artifacts"),
)
# The train split with `train_combinations: raised`: every type present more often (blur and
# low resolution in 7 of 18 rows, noise and JPEG in 8 of 18), one undegraded row in 18.
_B, _L, _N, _J = "blur", "low_resolution", "noise", "jpeg_artifacts"
RAISED_BLOCK: tuple[tuple[str, ...], ...] = (
    (), (_B,), (_B,), (_L,), (_L,), (_N,), (_J,),
    (_B, _N), (_B, _N), (_B, _J), (_B, _J), (_L, _N), (_L, _N), (_L, _J), (_L, _J), (_N, _J),
    (_B, _N, _J), (_L, _N, _J),
)
TRAIN_COMBINATIONS = {"natural": COMBINATION_BLOCK, "raised": RAISED_BLOCK}
SPLITS = ("train", "validation", "test")
# Photos bundled with scikit-image and scikit-learn: an offline source for the tiny lifecycle.
SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "brick", "grass", "gravel", "camera", "retina",
                 "hubble_deep_field", "immunohistochemistry", "moon", "coins", "stereo_motorcycle",
                 "china.jpg", "flower.jpg")


@dataclass
class SynthesisOptions:
    """The degradation reader's options (flags of train/build_dataset.py, a recipe's `reader_options`).

    The clean photos come from exactly one place: the reader's `source` folder, a Hub data
    set, or crops of the bundled photos.
    """

    hub_dataset: str | None = field(default=None, metadata={"help": "Hub data set of clean photos (needs network)"})
    hub_split: str = "train"
    hub_image_column: str = "image"
    sample_photos: int = field(default=0, metadata={
        "help": "use N random crops of the photos bundled with scikit-image/scikit-learn (offline)"})
    crop_size: int = 224  # side of the sample-photo crops: larger shows more, costs visual tokens
    n: int = 1000  # rows over all splits; each clean photo is reused n / photos times
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    max_side: int | None = 1536  # larger clean photos are downscaled first: smaller files, still sharp
    max_photos: int | None = None  # use at most this many clean photos (a random subset)
    train_combinations: str = field(default="natural", metadata={
        "help": "natural: the train split has the held-out splits' mix; raised: each type present more often "
                "(RAISED_BLOCK), for a higher F1 from greedy answers"})

    def __post_init__(self) -> None:
        if self.train_combinations not in TRAIN_COMBINATIONS:
            raise ValueError(f"train_combinations must be one of {', '.join(TRAIN_COMBINATIONS)}, "
                             f"got {self.train_combinations!r}")
        if self.n < len(SPLITS):
            raise ValueError(f"--n {self.n} is too small: every split needs at least one row")
        if not (0 < self.validation_fraction < 1 and 0 < self.test_fraction < 1
                and self.validation_fraction + self.test_fraction < 1):
            raise ValueError("validation_fraction and test_fraction must be in (0, 1) and sum to less than 1")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> SynthesisOptions:
        unknown = set(options) - {item.name for item in fields(cls)}
        if unknown:
            raise ValueError(f"unknown degradation reader option(s) {', '.join(sorted(unknown))}; "
                             f"the options are: {', '.join(item.name for item in fields(cls))}")
        return cls(**options)

    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any]) -> dict[str, Any]:
        """A recipe's `reader_options` (train/config.py's parser reads its defaults through this)."""
        options = dict(recipe.get("reader_options") or {})
        cls.from_mapping(options)  # an unknown or invalid option stops the run here
        return options


@dataclass
class CleanPhoto:
    name: str
    load: Callable[[], Image.Image]


def synthesize(source: str | Path | None, seed: int, options: SynthesisOptions):
    """The DatasetDict of degraded rows (train, validation, test)."""
    from datasets import DatasetDict

    sources = [bool(source), bool(options.hub_dataset), options.sample_photos > 0]
    if sum(sources) != 1:
        raise ValueError("give exactly one source of clean photos: --source FOLDER, --hub-dataset NAME "
                         "or --sample-photos N")
    rng = np.random.default_rng(seed)
    photos = list_photos(source, options, rng)
    groups = split_photos(photos, options, rng)
    sizes = split_sizes(options)
    cache = tempfile.mkdtemp(prefix="inspector-degradation-")
    try:
        dataset = DatasetDict({
            split: make_split(groups[split], sizes[split], rng, cache, split,
                              options.train_combinations if split == "train" else "natural", seed)
            for split in SPLITS
        })
    except BaseException:
        shutil.rmtree(cache, ignore_errors=True)
        raise
    # The generated rows live in `cache`: removed when the data set is released, or at exit.
    weakref.finalize(dataset, shutil.rmtree, cache, ignore_errors=True)
    return dataset


def list_photos(source: str | Path | None, options: SynthesisOptions, rng: np.random.Generator) -> list[CleanPhoto]:
    """The clean photos, in a deterministic order."""
    from inspector.images import iter_image_paths, load_image

    if source:
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"--source {folder} is not a folder of photos")
        photos = [CleanPhoto(str(path.relative_to(folder)), lambda path=path: load_image(path))
                  for path in sorted(iter_image_paths([folder]))]
    elif options.hub_dataset:
        photos = hub_photos(options)
    else:
        photos = sample_photo_crops(options.sample_photos, options.crop_size, rng)
    if options.max_photos and len(photos) > options.max_photos:
        keep = sorted(rng.choice(len(photos), options.max_photos, replace=False))
        photos = [photos[index] for index in keep]
    if len(photos) < len(SPLITS):
        raise ValueError(f"found {len(photos)} clean photos; every split needs its own, so give at least 3")
    return [CleanPhoto(photo.name, _bounded(photo.load, options.max_side)) for photo in photos]


def hub_photos(options: SynthesisOptions) -> list[CleanPhoto]:
    from datasets import load_dataset

    from inspector.images import load_image

    try:
        rows = load_dataset(options.hub_dataset, split=options.hub_split)
    except Exception as error:  # noqa: BLE001 - any Hub failure gets the same advice
        raise RuntimeError(f"could not load the Hub data set {options.hub_dataset!r} ({type(error).__name__}: "
                           f"{error}); without network, use --source FOLDER") from error
    if options.hub_image_column not in rows.column_names:
        raise ValueError(f"{options.hub_dataset} has no column {options.hub_image_column!r}; "
                         f"its columns: {', '.join(rows.column_names)} (set --hub-image-column)")
    return [CleanPhoto(f"{options.hub_dataset}[{index}]",
                       lambda index=index: load_image(rows[index][options.hub_image_column]))
            for index in range(len(rows))]


def sample_photo_crops(count: int, size: int, rng: np.random.Generator) -> list[CleanPhoto]:
    """`count` random `size`-pixel crops of the bundled photos, round-robin over the photos."""
    photos = [(name, _bundled_photo(name)) for name in SAMPLE_PHOTOS]
    crops = []
    for index in range(count):
        name, photo = photos[index % len(photos)]
        side = min(size, photo.width, photo.height)
        left, top = int(rng.integers(0, photo.width - side + 1)), int(rng.integers(0, photo.height - side + 1))
        box = (left, top, left + side, top + side)
        crops.append(CleanPhoto(f"{name}@{left},{top},{side}", lambda photo=photo, box=box: photo.crop(box)))
    return crops


def _bundled_photo(name: str) -> Image.Image:
    if name.endswith(".jpg"):
        from sklearn.datasets import load_sample_image

        return Image.fromarray(load_sample_image(name)).convert("RGB")
    from skimage import data

    pixels = getattr(data, name)()
    return Image.fromarray(pixels[0] if name == "stereo_motorcycle" else pixels).convert("RGB")


def _bounded(load: Callable[[], Image.Image], max_side: int | None) -> Callable[[], Image.Image]:
    def bounded() -> Image.Image:
        image = load().convert("RGB")
        if max_side and max(image.size) > max_side:
            scale = max_side / max(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.Resampling.LANCZOS, reducing_gap=3.0)
        return image
    return bounded


def split_photos(photos: list[CleanPhoto], options: SynthesisOptions, rng: np.random.Generator) -> dict[str, list]:
    """Each clean photo goes to one split, so no test photo is seen in training."""
    order = [photos[index] for index in rng.permutation(len(photos))]
    n_test = max(1, round(len(order) * options.test_fraction))
    n_validation = max(1, round(len(order) * options.validation_fraction))
    return {"test": order[:n_test], "validation": order[n_test:n_test + n_validation],
            "train": order[n_test + n_validation:]}


def split_sizes(options: SynthesisOptions) -> dict[str, int]:
    n_test = max(1, round(options.n * options.test_fraction))
    n_validation = max(1, round(options.n * options.validation_fraction))
    return {"train": options.n - n_test - n_validation, "validation": n_validation, "test": n_test}


def make_split(photos: list[CleanPhoto], size: int, rng: np.random.Generator, cache: str, split: str,
               combinations: str = "natural", seed: int = 0):
    from datasets import Dataset

    rows = list(make_rows(photos, size, rng))  # drawn here, in order, so the result is deterministic
    if combinations != "natural":
        # The natural rows above were drawn only to move `rng` on as they would: the next
        # splits are then the same rows whatever the train split's mix.
        rows = list(make_rows(photos, size, np.random.default_rng([seed, 1]), TRAIN_COMBINATIONS[combinations]))
    return Dataset.from_generator(_yield, gen_kwargs={"rows": rows}, features=features(), cache_dir=cache,
                                  split=split)


def make_rows(photos: list[CleanPhoto], size: int, rng: np.random.Generator,
              block: tuple[tuple[str, ...], ...] = COMBINATION_BLOCK) -> Iterator[dict]:
    """The rows of one split: photos round-robin, combinations in shuffled blocks."""
    from inspector.evidence import sample_spec

    combinations: list[tuple[str, ...]] = []
    while len(combinations) < size:
        combinations += [block[index] for index in rng.permutation(len(block))]
    photo_order = rng.permutation(len(photos))
    for index, combination in enumerate(combinations[:size]):
        photo = photos[photo_order[index % len(photos)]]
        spec, labels = sample_spec(rng, types=list(combination))
        seed = int(rng.integers(2**31))
        yield {"photo": photo, "spec": spec, "labels": labels, "seed": seed,
               "combination": "+".join(combination) or "clean"}


def _yield(rows: list[dict]) -> Iterator[dict]:
    from inspector.evidence import degrade
    from inspector.report import format_answer

    for row in rows:
        image = degrade(row["photo"].load(), row["spec"], row["seed"])
        yield {"image": image, "labels": row["labels"], "answer": format_answer(row["labels"]),
               "spec": json.dumps(row["spec"], sort_keys=True), "combination": row["combination"],
               "source": row["photo"].name, "seed": row["seed"]}


def features():
    from datasets import Features, Image as ImageFeature, Value

    return Features({
        "image": ImageFeature(),
        "labels": {kind: Value("string") for kind in DEGRADATION_TYPES},
        "answer": Value("string"),
        "spec": Value("string"),
        "combination": Value("string"),
        "source": Value("string"),
        "seed": Value("int64"),
    })


def dataset_card(dataset, source: str | Path | None, seed: int, options: SynthesisOptions) -> str:
    """A short card with YAML metadata; the publish step may replace it with a fuller one."""
    origin = source or options.hub_dataset or f"{options.sample_photos} crops of scikit-image/scikit-learn photos"
    photo_count = len({name for split in SPLITS for name in dataset[split]["source"]})
    lines = ["---", "task_categories:", "- image-to-text", "tags:", "- image-quality", "- degradation",
             "- synthetic", "size_categories:", "- n<1K" if options.n < 1000 else "- 1K<n<10K", "---", "",
             "# Degradation instruction data", "",
             f"Clean photos from {origin} ({photo_count} photos), degraded with known parameters by "
             "`inspector.evidence.degrade`; the answer is `inspector.report.format_answer(labels)`.", "",
             "| split | rows | present: " + " | ".join(DEGRADATION_TYPES) + " | undegraded |",
             "| --- | --- | " + " | ".join("---" for _ in DEGRADATION_TYPES) + " | --- |"]
    for split in SPLITS:
        labels = dataset[split]["labels"]
        present = [sum(row[kind] != "none" for row in labels) for kind in DEGRADATION_TYPES]
        clean = sum(all(word == "none" for word in row.values()) for row in labels)
        lines.append(f"| {split} | {len(labels)} | " + " | ".join(map(str, present)) + f" | {clean} |")
    lines += ["", f"Rebuild: `python train/build_dataset.py --config build_config.yaml` (seed {seed}).", ""]
    return "\n".join(lines)
