"""Publish a trained adapter, and its data set, to the Hub as a tagged version.

    python train/push.py runs/inspector-lora --repo ORG/NAME --tag v1 --dry-run
    python train/push.py --config train/recipes/degradation.yaml --repo ORG/NAME --tag v1   # its output_dir
    python train/push.py runs/inspector-lora --repo ORG/NAME --tag v1 \\
        --dataset data/degradations --dataset-repo ORG/DATA

Nothing is uploaded until every check passes:
- the adapter loads with stock peft onto its base (`--base-model`, default the base that
  adapter_config.json names) and every tensor of its file lands in the model;
- the processor files ship with it, and load;
- the cards' metadata parses back with huggingface_hub's card classes;
- no checkpoint, optimizer state, pickle, credential, token or local path is in the upload.
  Local paths in text files (training_config.yaml, results) become their last component,
  and the dry run lists each change.
`--dry-run` prints the exact files, sizes and cards, and uploads nothing. A publish is one
commit (files of the previous version that are not in it are deleted in that commit), then
a tag on that commit, which the Space and users pin. The token comes from HF_TOKEN or
`hf auth login`, and is never printed, logged or written.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

from inspector.hub import Unavailable, fetch_snapshot
from train.config import parse_config
from train.publish.cards import AdapterCard, build_model_card, check_model_card
from train.publish.checks import (TEXT_SUFFIXES, TOKEN_PATTERN, check_adapter_loads, find_leaks, local_path_pattern,
                                  require_token, scrub_local_paths)
from train.publish.commit import publish
from train.publish.dataset_card import DatasetCardFacts, build_dataset_card, check_dataset_card

log = logging.getLogger("push")

REQUIRED_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# What users need to run the adapter besides the base weights: the base's processor and tokenizer.
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json",
                   "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "chat_template.json", "chat_template.jinja")
LEFT_OUT_REASONS = {
    "checkpoints": "checkpoints and optimizer states stay on this machine",
    "runs": "training logs; --with-logs publishes them",
    "README.md": "replaced by the generated model card",
}
JUNK = {".DS_Store", "__pycache__", ".ipynb_checkpoints"}
TAG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class Refused(Exception):
    """The publish is refused before anything is uploaded; the message says what to fix."""


@dataclass
class PushArgs:
    """What to publish, where, and how; a recipe's output_dir is the adapter folder."""

    recipe_keys: ClassVar[dict[str, str]] = {"output_dir": "adapter_dir"}

    adapter_dir: Path = field(metadata={"help": "the adapter folder train/finetune.py wrote (also the first "
                                                "positional argument)"})
    repo: str = field(metadata={"help": "model repo to publish to, ORG/NAME"})
    tag: str = field(default="", metadata={
        "aliases": ["--revision"], "help": "the version's tag, pinned by the Space and users (default: v<UTC date-time>)"})
    base_model: str | None = field(default=None, metadata={
        "help": "folder or repo id to load the base from for the check (default: the base adapter_config.json names)"})
    base_model_id: str | None = field(default=None, metadata={
        "help": "the base's Hub id, for the card and the published adapter_config.json (needed when the adapter "
                "names a local folder)"})
    eval_dir: Path | None = field(default=None, metadata={
        "aliases": ["--eval"], "help": "train/evaluate.py output folder (default: ADAPTER_DIR/eval)"})
    dataset: Path | None = field(default=None, metadata={
        "help": "data set folder (DatasetDict.save_to_disk) to publish too"})
    dataset_repo: str | None = field(default=None, metadata={
        "help": "data set repo, ORG/NAME: published to with --dataset, named in the model card either way"})
    license: str = field(default="apache-2.0", metadata={"help": "the adapter's license, a Hub license id (the base's)"})
    dataset_license: str = field(default="other", metadata={
        "help": "the data set's license, a Hub license id: say the source photos' license"})
    private: bool = field(default=False, metadata={"help": "create new repos private"})
    with_logs: bool = field(default=False, metadata={"help": "also publish runs/ (TensorBoard logs)"})
    force: bool = field(default=False, metadata={"help": "move the tag if it exists already"})
    dry_run: bool = field(default=False, metadata={"help": "print what would be uploaded; upload nothing"})
    stage_dir: Path | None = field(default=None, metadata={
        "help": "build the upload in this folder and keep it (default: a temporary folder)"})
    verbose: bool = field(default=False, metadata={"aliases": ["-v"], "help": "log progress"})

    def __post_init__(self) -> None:
        self.adapter_dir = Path(self.adapter_dir).expanduser()
        self.tag = self.tag or datetime.now(timezone.utc).strftime("v%Y%m%d-%H%M")
        if not TAG_PATTERN.fullmatch(self.tag):
            raise Refused(f"tag {self.tag!r} is not a valid tag name: use letters, digits, '.', '_' and '-' (e.g. v1)")
        if not self.adapter_dir.is_dir():
            raise Refused(f"adapter folder {self.adapter_dir} does not exist")
        if self.dataset and not self.dataset_repo:
            raise Refused("--dataset needs --dataset-repo ORG/NAME: where to publish it")
        if self.eval_dir is None and (self.adapter_dir / "eval").is_dir():
            self.eval_dir = self.adapter_dir / "eval"


@dataclass
class Upload:
    """One repo's upload as it will be sent: a folder, and what changed or stayed behind on the way."""

    folder: Path
    changes: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def files(self) -> list[tuple[str, int]]:
        paths = sorted(p for p in self.folder.rglob("*") if p.is_file())
        return [(p.relative_to(self.folder).as_posix(), p.stat().st_size) for p in paths]


# Upload plan ----------------------------------------------------------------------------

def stage_adapter(args: PushArgs, folder: Path, known_paths: tuple[str, ...]) -> tuple[Upload, dict, str, str]:
    """Copy what is published into `folder`; return it with the adapter config, base id and base source."""
    source = args.adapter_dir
    missing = [name for name in REQUIRED_ADAPTER_FILES if not (source / name).is_file()]
    if missing:
        raise Refused(f"{source} lacks {', '.join(missing)}: point to the adapter folder train/finetune.py wrote")
    folder.mkdir(parents=True)
    upload = Upload(folder)
    config = json.loads((source / "adapter_config.json").read_text())
    declared = str(config.get("base_model_name_or_path") or "")
    base_id = args.base_model_id or (declared if is_repo_id(declared) else None)
    if not base_id:
        raise Refused(f"adapter_config.json names its base by the local path {declared!r}: say which Hub model "
                      "it is with --base-model-id ORG/NAME (written into the published adapter_config.json)")
    base_source = args.base_model or (declared if Path(declared).is_dir() else base_id)
    if declared == base_id:
        shutil.copyfile(source / "adapter_config.json", folder / "adapter_config.json")
    else:
        upload.changes.append(f"adapter_config.json: base_model_name_or_path {declared!r} -> {base_id!r}")
        config["base_model_name_or_path"] = base_id
        (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(source / "adapter_model.safetensors", folder / "adapter_model.safetensors")
    stage_task(source, folder, upload)
    if (source / "training_config.yaml").is_file():
        shutil.copyfile(source / "training_config.yaml", folder / "training_config.yaml")
    if args.eval_dir:
        copy_tree(Path(args.eval_dir), folder / "eval")
    else:
        upload.warnings.append("no evaluation results (ADAPTER_DIR/eval or --eval): the card has no model-index; "
                               "run train/evaluate.py first")
    if args.with_logs and (source / "runs").is_dir():
        copy_tree(source / "runs", folder / "runs")
    stage_processor(base_source, folder)
    used = {"adapter_config.json", "adapter_model.safetensors", "inspector_task.json", "training_config.yaml"}
    used |= {"eval"} if args.eval_dir and Path(args.eval_dir).resolve().parent == source.resolve() else set()
    used |= {"runs"} if args.with_logs else set()
    for entry in sorted(source.iterdir()):
        if entry.name not in used and entry.name not in JUNK:
            reason = LEFT_OUT_REASONS.get(entry.name, "not part of a published adapter")
            upload.left_out.append(f"{entry.name}{'/' if entry.is_dir() else ''} ({reason})")
    scrub_folder(folder, known_paths, upload)
    return upload, config, base_id, base_source


def stage_task(source: Path, folder: Path, upload: Upload) -> None:
    """inspector_task.json: the adapter's own, or the default task's (what the app assumes) when it has none."""
    if (source / "inspector_task.json").is_file():
        shutil.copyfile(source / "inspector_task.json", folder / "inspector_task.json")
        return
    from inspector.tasks import DEFAULT_TASK, get_task

    get_task(DEFAULT_TASK).save_config(folder)
    upload.changes.append(f"inspector_task.json: absent; written for the default task ({DEFAULT_TASK})")


def stage_processor(base_source: str, folder: Path) -> None:
    """The base's processor and tokenizer files, unchanged, so the adapter folder is self-contained."""
    try:
        base_folder = Path(base_source) if Path(base_source).is_dir() else \
            fetch_snapshot(base_source, None, list(PROCESSOR_FILES), "base model")
    except Unavailable as error:
        raise Refused(f"the processor files of the base cannot be had: {error}") from error
    found = [name for name in PROCESSOR_FILES if (base_folder / name).is_file()]
    if not found:
        raise Refused(f"no processor or tokenizer files in {base_source}: pass the base folder with --base-model")
    for name in found:
        shutil.copyfile(base_folder / name, folder / name)


def copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*JUNK), dirs_exist_ok=True)


def scrub_folder(folder: Path, known_paths: tuple[str, ...], upload: Upload) -> None:
    """Local paths in text files become their last component; each change is listed."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # not text after all: find_leaks scans its bytes
        scrubbed, changes = scrub_local_paths(text, path.suffix, known_paths)
        if changes:
            path.write_text(scrubbed, encoding="utf-8")
            name = path.relative_to(folder).as_posix()
            upload.changes += [f"{name}: {old} -> {new}" for old, new in changes]


def is_repo_id(text: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if "/" not in text or text.startswith(("/", ".", "~")) or Path(text).is_dir():
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


# Checks -------------------------------------------------------------------------------

def read_task(upload: Upload):
    """The task of the staged inspector_task.json: it decides the card's figures and text."""
    from inspector.tasks import load_task

    try:
        return load_task(upload.folder)
    except (ValueError, KeyError) as error:
        raise Refused(f"inspector_task.json cannot be used ({error}): re-run train/finetune.py") from error


def read_results(upload: Upload, adapter_dir: Path, task=None) -> tuple[dict | None, list[str]]:
    """eval/results.json of train/evaluate.py (already scrubbed), checked for the card's figures."""
    path = upload.folder / "eval" / "results.json"
    if not path.is_file():
        if (upload.folder / "eval").is_dir():
            return None, ["the evaluation folder has no results.json: run train/evaluate.py"]
        return None, []
    try:
        results = json.loads(path.read_text())
        adapter = results["models"]["adapter"]
        task = task or read_task(upload)
        missing = [key for key, _, _ in task.headline_metrics if key not in adapter]
    except (ValueError, KeyError, TypeError) as error:
        return None, [f"eval/results.json is not train/evaluate.py's output ({error!r}): re-run it"]
    if missing:
        return None, [f"eval/results.json lacks models.adapter.{', '.join(missing)}: re-run train/evaluate.py"]
    evaluated = str(results.get("adapter") or "")
    if evaluated and Path(evaluated).name != adapter_dir.resolve().name and not is_repo_id(evaluated):
        upload.warnings.append(f"eval/results.json was made for the adapter {evaluated!r}, not {adapter_dir.name!r}")
    return results, []


def plan_dataset(args: PushArgs, folder: Path, known_paths: tuple[str, ...], task=None):
    """The data set to push, its card staged in `folder`, and the problems found in it."""
    from datasets import DatasetDict, Value, load_from_disk

    try:
        dataset = load_from_disk(str(args.dataset))
    except (FileNotFoundError, ValueError) as error:
        raise Refused(f"{args.dataset} is not a data set saved with save_to_disk: {error}") from error
    if not isinstance(dataset, DatasetDict):
        raise Refused(f"{args.dataset} holds one split: save a DatasetDict (train/validation/test), "
                      "as train/build_dataset.py does")
    problems = []
    columns = dataset[next(iter(dataset))].features
    if task is None:
        from inspector.tasks import DEFAULT_TASK, get_task

        task = get_task(DEFAULT_TASK)
    problems += [f"the data set has no {name!r} column" for name in task.required_columns if name not in columns]
    local_path = local_path_pattern(known_paths)
    for split, rows in dataset.items():
        flat = rows.flatten()
        for name, feature in flat.features.items():
            if isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
                values = [v for v in flat.data.column(name).to_pylist() if v]
                if any(TOKEN_PATTERN.search(v.encode()) for v in values):
                    problems.append(f"data set split {split}, column {name}: contains an access token")
                leaked = next((m.group(0) for v in values if (m := local_path.search(v))), None)
                if leaked:
                    problems.append(f"data set split {split}, column {name}: holds local paths such as {leaked}; "
                                    "store names relative to the source folder (train/build_dataset.py)")
    facts = DatasetCardFacts(
        repo_id=args.dataset_repo, tag=args.tag, license=args.dataset_license,
        splits={split: rows.num_rows for split, rows in dataset.items()},
        columns={name: getattr(feature, "dtype", type(feature).__name__) for name, feature in columns.items()},
        task=task,
    )
    card = build_dataset_card(facts)
    problems += [f"data set card: {problem}" for problem in check_dataset_card(card)]
    folder.mkdir(parents=True, exist_ok=True)
    card.save(folder / "README.md")
    upload = Upload(folder)
    if args.dataset_license == "other":
        upload.warnings.append("--dataset-license not given: the card says 'other'; name the source photos' license")
    return dataset, upload, problems


# Report -------------------------------------------------------------------------------

def describe(title: str, upload: Upload) -> str:
    files = upload.files()
    lines = [title] + [f"  {size:>12,}  {name}" for name, size in files]
    lines.append(f"  {sum(size for _, size in files):>12,}  bytes in {len(files)} files")
    for heading, items in (("Changed on the way", upload.changes), ("Left out", upload.left_out),
                           ("Warning", upload.warnings)):
        lines += [f"{heading}:"] + [f"  {item}" for item in items] if items else []
    return "\n".join(lines)


# Main ---------------------------------------------------------------------------------

def main(args: PushArgs) -> int:
    from huggingface_hub import get_token

    # A dry run needs no token; with one at hand it still checks that the token is in no file.
    token = get_token() if args.dry_run else require_token()
    with tempfile.TemporaryDirectory(prefix="push-") as temporary:
        stage = Path(args.stage_dir or temporary)
        if args.stage_dir and stage.exists() and any(stage.iterdir()):
            raise Refused(f"--stage-dir {stage} is not empty: give a new folder")
        known = known_local_paths(args)
        upload, config, base_id, base_source = stage_adapter(args, stage / "adapter", known)
        task = read_task(upload)
        results, problems = read_results(upload, args.adapter_dir, task)
        dataset, dataset_upload = None, None
        if args.dataset:
            dataset, dataset_upload, dataset_problems = plan_dataset(args, stage / "dataset", known, task)
            problems += dataset_problems
        card = build_card(args, upload, config, base_id, results, task)
        card.save(upload.folder / "README.md")
        problems += [f"model card: {problem}" for problem in check_model_card(card)]
        for checked in (upload, dataset_upload):
            if checked:
                problems += find_leaks(checked.folder, known, token)
        log.info("loading the adapter onto %s with peft", base_source)
        problems += check_adapter_loads(upload.folder, base_source)
        print(describe(f"Model repo {args.repo}, tag {args.tag}{' (private)' if args.private else ''}, "
                       "one commit:", upload))
        if dataset is not None:
            rows = ", ".join(f"{split} {split_rows.num_rows:,}" for split, split_rows in dataset.items())
            print(describe(f"Data set repo {args.dataset_repo}, tag {args.tag}: the card, then "
                           f"datasets.push_to_hub (Parquet shards of {rows} rows):", dataset_upload))
        if problems:
            print("Refused, nothing was uploaded:\n" + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
            return 2
        print(f"Checks passed: the adapter loads with peft onto {base_source}; the card metadata parses; "
              "no checkpoint, pickle, credential, token or local path in the upload.")
        if args.dry_run:
            print(f"\n----- README.md of {args.repo} -----\n{card}")
            if dataset_upload:
                print(f"\n----- README.md of {args.dataset_repo} -----\n"
                      f"{(dataset_upload.folder / 'README.md').read_text()}")
            print("Dry run: nothing was uploaded.")
            return 0
        return publish(args, upload, dataset, dataset_upload, token)


def build_card(args: PushArgs, upload: Upload, config: dict, base_id: str, results: dict | None, task=None):
    from importlib.metadata import version

    return build_model_card(AdapterCard(
        repo_id=args.repo, tag=args.tag, base_model=base_id, license=args.license, dataset_repo=args.dataset_repo,
        dataset_revision=args.tag if args.dataset else None, lora=config, results=results,
        files=upload.files(), processor_files=PROCESSOR_FILES,
        versions={lib: version(lib) for lib in ("transformers", "peft")}, task=task,
    ))


def known_local_paths(args: PushArgs) -> tuple[str, ...]:
    """This run's input folders and home, literally: paths under them are local whatever their root."""
    paths = [args.adapter_dir, args.eval_dir, args.dataset, args.base_model, Path.home()]
    found = set()
    for path in paths:
        if path and Path(path).expanduser().exists():
            found |= {str(Path(path).expanduser().absolute()), str(Path(path).expanduser().resolve())}
    return tuple(sorted(found))


def parse_args(argv: list[str] | None = None) -> tuple[PushArgs]:
    """The command line over `--config RECIPE` (train/config.py); a first bare argument is --adapter-dir."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):  # `push.py ADAPTER_DIR ...`, the form the cards and docs show
        argv[:1] = ["--adapter-dir", argv[0]]
    (args,) = parse_config([PushArgs], argv, __doc__)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    return (args,)


def run(argv: list[str] | None = None) -> int:
    """Parse, publish, and turn a refusal into a message and exit code 2."""
    try:
        return main(*parse_args(argv))
    except (Refused, Unavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
