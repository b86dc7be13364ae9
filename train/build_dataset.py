"""Build a task's data set; for the degradation task, degraded photos and the answers the adapter learns.

    python train/build_dataset.py --source photos/ --n 5000 --seed 0 --out data/degradation
    python train/build_dataset.py --config train/recipes/degradation.yaml --source photos/
    python train/build_dataset.py --config train/recipes/tiny.yaml --out runs/tiny/data   # offline photos
    python train/build_dataset.py --hub-dataset ORG/PHOTOS --n 5000 --out data/degradation  # with network
    python train/build_dataset.py --config train/recipes/counting.yaml --source shop --out data/shop-counts

`--config` reads a recipe's `task`, `task_options`, `seed`, `dataset_dir` (the default
--out) and `reader_options` (for the degradation task, the fields below; for the
others, the options of the task's reader, `inspector.tasks`); flags on the command
line win (train/config.py).
The other tasks read a published layout (`Task.read`); the rest of this docstring is
about the degradation task, whose data is synthesised.

Each row is a clean photo degraded by `inspector.evidence.degrade` with parameters
drawn by `inspector.evidence.sample_spec` (known, inside the bands of DESIGN.md), and
the target answer `inspector.report.format_answer(labels)`. Rows cycle through a
block of degradation combinations in which every type is present equally often:
undegraded photos, each type alone, the pairs and triples that can co-occur (blur and
low resolution hide each other, so they are never combined); severities are drawn
uniformly. A clean photo and all its degraded versions land in one split, so the test
split holds photos the adapter never saw.

`train_combinations: raised` draws the train split from `RAISED_BLOCK` instead: each type
present in about 40 % of the rows, where the held-out splits keep about 32 %. A model that
answers greedily says "present" only where it is more likely than "none", so on a faint
signal it says "none", which F1 scores as a miss; a prior raised in training moves that
decision point lower, as class weights do for a classifier. The validation and test splits
are the same rows either way, so evaluations compare (measured on the tiny stand-in:
README, "Training").

Output: a `datasets.DatasetDict` (train / validation / test) saved with
`save_to_disk`, columns `image` (PNG, lossless: the JPEG artifacts are in the pixels),
`labels`, `answer`, `spec` (JSON), `combination`, `source`, `seed`; beside it a dataset
card (README.md) and the resolved config (build_config.yaml). Same config, same bytes.
All of it is written to a sibling `.OUT.partial-PID` and renamed to OUT once complete, so a
killed build leaves OUT as it was; the next run removes what it left.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import numpy as np
import yaml
from PIL import Image

from inspector.evidence import degrade, sample_spec
from inspector.images import iter_image_paths, load_image
from inspector.report import format_answer
from inspector.taxonomy import DEGRADATION_TYPES
from train.config import TaskFields, as_mapping, parse_config

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
class DatasetConfig(TaskFields):
    """Where the data comes from and how many rows to make (degradation: exactly one photo source)."""

    recipe_keys: ClassVar[dict[str, str]] = {"dataset_dir": "out"}

    out: str | None = field(default=None, metadata={"help": "folder to save the DatasetDict to"})
    reader_options: dict[str, Any] | str | None = None  # the reader options of tasks other than degradation
    source: str | None = field(default=None, metadata={
        "aliases": ["--images"], "help": "the data folder; for degradation, clean photos (searched recursively)"})
    hub_dataset: str | None = field(default=None, metadata={"help": "Hub data set of clean photos (needs network)"})
    hub_split: str = "train"
    hub_image_column: str = "image"
    sample_photos: int = field(default=0, metadata={
        "help": "use N random crops of the photos bundled with scikit-image/scikit-learn (offline)"})
    crop_size: int = 224  # side of the sample-photo crops: larger shows more, costs visual tokens
    n: int = 1000  # rows over all splits; each clean photo is reused n / photos times
    seed: int = 0
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    max_side: int | None = 1536  # larger clean photos are downscaled first: smaller files, still sharp
    max_photos: int | None = None  # use at most this many clean photos (a random subset)
    train_combinations: str = field(default="natural", metadata={
        "help": "natural: the train split has the held-out splits' mix; raised: each type present more often "
                "(RAISED_BLOCK), for a higher F1 from greedy answers"})
    overwrite: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.reader_options = as_mapping(self.reader_options, "reader_options")
        if not self.out:
            raise ValueError("--out is required (or a --config recipe with dataset_dir): the folder to save the data "
                             "set to")
        if self.task != "degradation":
            if not self.source:
                raise ValueError(f"the {self.task} task reads its data from a folder: give --source FOLDER")
            return
        if self.train_combinations not in TRAIN_COMBINATIONS:
            raise ValueError(f"train_combinations must be one of {', '.join(TRAIN_COMBINATIONS)}, "
                             f"got {self.train_combinations!r}")
        sources = [bool(self.source), bool(self.hub_dataset), self.sample_photos > 0]
        if sum(sources) != 1:
            raise ValueError("give exactly one source of clean photos: --source FOLDER, --hub-dataset NAME "
                             "or --sample-photos N")
        if self.n < len(SPLITS):
            raise ValueError(f"--n {self.n} is too small: every split needs at least one row")
        if not (0 < self.validation_fraction < 1 and 0 < self.test_fraction < 1
                and self.validation_fraction + self.test_fraction < 1):
            raise ValueError("validation_fraction and test_fraction must be in (0, 1) and sum to less than 1")

    @classmethod
    def from_recipe(cls, recipe: dict[str, Any]) -> dict[str, Any]:
        """The values a recipe gives this script: its own keys, dataset_dir as --out, the reader options.

        The degradation task's reader options are this dataclass's own fields (the synthesis
        is configured here); another task's go to its reader whole.
        """
        names = {item.name for item in fields(cls)}
        values = {key: value for key, value in recipe.items() if key in names and key != "reader_options"}
        if "dataset_dir" in recipe:
            values["out"] = recipe["dataset_dir"]
        options = dict(recipe.get("reader_options") or {})
        if recipe.get("task", "degradation") == "degradation":
            unknown = set(options) - names
            if unknown:
                raise ValueError(f"unknown degradation reader option(s) {', '.join(sorted(unknown))}")
            values.update(options)
        else:
            values["reader_options"] = options
        return values


@dataclass
class CleanPhoto:
    name: str
    load: Callable[[], Image.Image]


def main(config: DatasetConfig) -> Path:
    out = Path(config.out)
    clear_leftovers(out)
    if out.exists() and any(out.iterdir()) and not config.overwrite:
        raise FileExistsError(f"{out} already exists and is not empty; pass --overwrite to replace it")
    print(yaml.safe_dump({"build_dataset": asdict(config)}, sort_keys=False), end="")
    started = time.perf_counter()
    with staged(out) as folder:
        summary = build_degradation(config, folder) if config.task == "degradation" else build_from_task(config, folder)
    print(f"{summary} written to {out} in {time.perf_counter() - started:.1f} s")
    return out


def build_degradation(config: DatasetConfig, folder: Path) -> str:
    """Synthesise the degradation data set into `folder`; returns what it holds, in words."""
    rng = np.random.default_rng(config.seed)
    photos = list_photos(config, rng)
    groups = split_photos(photos, config, rng)
    sizes = split_sizes(config)

    # Dataset
    from datasets import DatasetDict

    with tempfile.TemporaryDirectory() as cache:  # a fresh cache: never a stale one from an earlier run
        dataset = DatasetDict({
            split: make_split(groups[split], sizes[split], rng, cache, split,
                              config.train_combinations if split == "train" else "natural", config.seed)
            for split in SPLITS
        })
        dataset.save_to_disk(str(folder))
        (folder / "build_config.yaml").write_text(yaml.safe_dump(asdict(config), sort_keys=False))
        (folder / "README.md").write_text(dataset_card(dataset, config, len(photos)))
    return (f"{sum(sizes.values())} rows ({', '.join(f'{s} {sizes[s]}' for s in SPLITS)}) from {len(photos)} "
            "clean photos")


def build_from_task(config: DatasetConfig, folder: Path) -> str:
    """A task's published layout -> DatasetDict, through the task's reader."""
    from inspector.tasks import get_task

    task = get_task(config.task, **config.task_options)
    dataset = task.read(config.source, seed=config.seed, **config.reader_options)
    dataset.save_to_disk(str(folder))
    (folder / "build_config.yaml").write_text(yaml.safe_dump(asdict(config), sort_keys=False))
    return f"{config.task}: {', '.join(f'{split} {len(rows)}' for split, rows in dataset.items())} rows"


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A sibling folder to build `out` in, put in its place only once complete.

    Built in place, a crash midway left the previous data set deleted and a half-written one
    that `load_from_disk` may accept (issue #7). A sibling is on the same filesystem, so the
    swap is two renames; a kill between them leaves the previous data set aside, and the next
    run puts it back (`clear_leftovers`).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    # Named by pid, not mkdtemp: mkdtemp's 0700 mode would stay on the published folder.
    partial, old = (out.with_name(f".{out.name}.{kind}-{os.getpid()}") for kind in ("partial", "old"))
    for path in (partial, old):  # an earlier process of the same pid, long gone
        shutil.rmtree(path, ignore_errors=True)
    partial.mkdir()
    try:
        yield partial
    except BaseException:  # KeyboardInterrupt too: nothing half-written stays behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out.exists():
        out.rename(old)
        partial.rename(out)
        shutil.rmtree(old)
    else:
        partial.rename(out)


def clear_leftovers(out: Path) -> None:
    """Remove what a killed build left beside `out`; put back a previous data set caught mid-swap."""
    for path in sorted(out.parent.glob(f".{glob.escape(out.name)}.*-[0-9]*")):
        kind, _, pid = path.name[len(out.name) + 2:].rpartition("-")
        if kind not in ("partial", "old") or not pid.isdigit() or _running(int(pid)):
            continue  # not ours, or a build still running
        if kind == "old" and not out.exists():
            path.rename(out)
            print(f"{out} put back from {path.name}: a build was killed while replacing it")
        else:
            shutil.rmtree(path)
            print(f"removed {path}: left by a build that was killed before it completed")


def _running(pid: int) -> bool:
    if os.name != "posix":  # on Windows os.kill(pid, 0) would terminate it: keep what we cannot check
        return True
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        pass
    return True


def list_photos(config: DatasetConfig, rng: np.random.Generator) -> list[CleanPhoto]:
    """The clean photos, in a deterministic order."""
    if config.source:
        folder = Path(config.source)
        if not folder.is_dir():
            raise FileNotFoundError(f"--source {folder} is not a folder of photos")
        photos = [CleanPhoto(str(path.relative_to(folder)), lambda path=path: load_image(path))
                  for path in sorted(iter_image_paths([folder]))]
    elif config.hub_dataset:
        photos = hub_photos(config)
    else:
        photos = sample_photo_crops(config.sample_photos, config.crop_size, rng)
    if config.max_photos and len(photos) > config.max_photos:
        keep = sorted(rng.choice(len(photos), config.max_photos, replace=False))
        photos = [photos[index] for index in keep]
    if len(photos) < len(SPLITS):
        raise ValueError(f"found {len(photos)} clean photos; every split needs its own, so give at least 3")
    return [CleanPhoto(photo.name, _bounded(photo.load, config.max_side)) for photo in photos]


def hub_photos(config: DatasetConfig) -> list[CleanPhoto]:
    from datasets import load_dataset

    try:
        rows = load_dataset(config.hub_dataset, split=config.hub_split)
    except Exception as error:  # noqa: BLE001 - any Hub failure gets the same advice
        raise RuntimeError(f"could not load the Hub data set {config.hub_dataset!r} ({type(error).__name__}: "
                           f"{error}); without network, use --source FOLDER") from error
    if config.hub_image_column not in rows.column_names:
        raise ValueError(f"{config.hub_dataset} has no column {config.hub_image_column!r}; "
                         f"its columns: {', '.join(rows.column_names)} (set --hub-image-column)")
    return [CleanPhoto(f"{config.hub_dataset}[{index}]",
                       lambda index=index: load_image(rows[index][config.hub_image_column]))
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


def split_photos(photos: list[CleanPhoto], config: DatasetConfig, rng: np.random.Generator) -> dict[str, list]:
    """Each clean photo goes to one split, so no test photo is seen in training."""
    order = [photos[index] for index in rng.permutation(len(photos))]
    n_test = max(1, round(len(order) * config.test_fraction))
    n_validation = max(1, round(len(order) * config.validation_fraction))
    return {"test": order[:n_test], "validation": order[n_test:n_test + n_validation],
            "train": order[n_test + n_validation:]}


def split_sizes(config: DatasetConfig) -> dict[str, int]:
    n_test = max(1, round(config.n * config.test_fraction))
    n_validation = max(1, round(config.n * config.validation_fraction))
    return {"train": config.n - n_test - n_validation, "validation": n_validation, "test": n_test}


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


def dataset_card(dataset, config: DatasetConfig, photo_count: int) -> str:
    """A short card with YAML metadata; the publish step may replace it with a fuller one."""
    source = config.source or config.hub_dataset or f"{config.sample_photos} crops of scikit-image/scikit-learn photos"
    lines = ["---", "task_categories:", "- image-to-text", "tags:", "- image-quality", "- degradation",
             "- synthetic", "size_categories:", "- n<1K" if config.n < 1000 else "- 1K<n<10K", "---", "",
             "# Degradation instruction data", "",
             f"Clean photos from {source} ({photo_count} photos), degraded with known parameters by "
             "`inspector.evidence.degrade`; the answer is `inspector.report.format_answer(labels)`.", "",
             "| split | rows | present: " + " | ".join(DEGRADATION_TYPES) + " | undegraded |",
             "| --- | --- | " + " | ".join("---" for _ in DEGRADATION_TYPES) + " | --- |"]
    for split in SPLITS:
        labels = dataset[split]["labels"]
        present = [sum(row[kind] != "none" for row in labels) for kind in DEGRADATION_TYPES]
        clean = sum(all(word == "none" for word in row.values()) for row in labels)
        lines.append(f"| {split} | {len(labels)} | " + " | ".join(map(str, present)) + f" | {clean} |")
    lines += ["", f"Rebuild: `python train/build_dataset.py --config build_config.yaml` (seed {config.seed}).", ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> tuple:
    """The command line over `--config RECIPE` (train/config.py)."""
    return parse_config([DatasetConfig], argv, __doc__)


if __name__ == "__main__":
    main(*parse_args())
