"""Visual dialogue in the VisDial v1.0 format: multi-turn training, candidate ranking for evaluation.

Data on disk, as visualdialog.org publishes it:

    visdial/visdial_1.0_train.json       {"version", "split", "data": {"questions": [...],
    visdial/visdial_1.0_val.json           "answers": [...], "dialogs": [{"image_id", "caption",
                                            "dialog": [{"question": qi, "answer": ai,
                                            "answer_options": [100 ai], "gt_index": k}, ...]}]}}
    visdial/visdial_1.0_val_dense_annotations.json   (optional) [{"image_id", "round_id" (1-based),
                                                     "gt_relevance": [100 floats]}]
    visdial/images/.../COCO_train2014_000000378466.jpg, VisualDialog_val2018_000000000001.jpg, 378466.jpg

Questions and answers are indices into the shared lists. An image is found by the
number its file name ends with (the image_id), in any folder under the root.

Splits: train and validation from the train file (a small seeded share of its
dialogs, `validation_fraction`, for the fine-tuning's evaluation loss), test = the
val file, where the dense annotations are (VisDial's own test answers are hidden on
EvalAI, so its test file is not read). One row per dialogue: image, image_id, caption,
questions, answers, options (100 per round; left out of train, where only the answers
are trained on), gt_index and relevance (per round; empty where not annotated).

Training is multi-turn with the loss on every answer (`inspector.tasks.collate`);
evaluation ranks each round's 100 candidates by the model's likelihood given the
image and the ground-truth history (`inspector.scoring`): MRR, R@1/5/10, mean rank, NDCG.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inspector.tasks.base import RankingItem, Task, as_text, raw_text_details, unparsed_markdown

log = logging.getLogger(__name__)

DIALOGUE_INSTRUCTION = "Answer questions about this picture in a few words."
VALIDATION_FRACTION = 0.02
_TRAILING_NUMBER = re.compile(r"(\d+)$")


class VisDialTask(Task):
    name = "visdial"
    needs_question = True
    multi_turn = True
    evaluation = "rank"
    answer_format = "short-text"
    max_new_tokens = 24  # VisDial answers are a few words
    title = "Visual dialogue"
    primary_metric = "mrr"
    headline_metrics = (("mrr", "mrr", "MRR"), ("r@1", "recall", "R@1"), ("ndcg", "ndcg", "NDCG"))
    metric_ranges = {"mrr": (0.0, 1.0), "r@1": (0.0, 1.0), "r@5": (0.0, 1.0), "r@10": (0.0, 1.0),
                     "mean_rank": (1.0, 100.0), "ndcg": (0.0, 1.0), "count": (0, float("inf"))}

    def __init__(self, scoring: str = "sum") -> None:
        """`scoring`: how a candidate's token log-probabilities make its score; "sum" (its
        likelihood) or "mean" (per token, which favours short answers less)."""
        if scoring not in ("sum", "mean"):
            raise ValueError(f"scoring must be 'sum' or 'mean', got {scoring!r}")
        self.scoring = scoring

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return ("scoring",)

    def options(self) -> dict[str, Any]:
        return {"scoring": self.scoring}

    # -- data

    def read(self, source: str | Path, seed: int = 0, *, validation_fraction: float = VALIDATION_FRACTION,
             train_options: bool = False, max_dialogs: int | Mapping[str, int] | None = None, **options: Any):
        """VisDial v1.0 JSON + images -> DatasetDict, one row per dialogue."""
        import datasets

        if options:
            raise ValueError(f"unknown visdial reader option(s): {', '.join(options)}")
        root = Path(source)
        files = find_visdial_files(root)
        images = image_index(root)
        dense = read_dense(files["dense"]) if files.get("dense") else {}
        train = read_dialogs(files["train"], images, dense, keep_options=True)
        if files.get("val"):
            test = read_dialogs(files["val"], images, dense, keep_options=True)
        else:
            log.warning("no visdial_1.0_val.json in %s: the test split is carved from train", root)
            train, test = _carve(train, 0.1, seed)
        train, validation = _carve(train, validation_fraction, seed + 1)
        if not train_options:
            for row in train:
                row["options"] = [[] for _ in row["options"]]
        splits = {"train": train, "validation": validation, "test": test}
        return datasets.DatasetDict({
            name: datasets.Dataset.from_list(_limit(rows, max_dialogs, name, seed), features=_features())
            for name, rows in splits.items()
        })

    # -- model input and target

    def instruction(self, example: Mapping[str, Any]) -> str:
        questions = example.get("questions") or [example.get("question", "{question}")]
        return first_turn_text(example.get("caption", ""), questions[0])

    def answer(self, example: Mapping[str, Any]) -> str:
        return str(example["answers"][0])

    def instruction_template(self) -> str:
        return f"{DIALOGUE_INSTRUCTION}\n{{question}}"

    def turns(self, example: Mapping[str, Any]) -> list[tuple[str, str]]:
        questions, answers = list(example["questions"]), list(example["answers"])
        if not questions or len(questions) != len(answers):
            raise ValueError(f"a dialogue needs as many answers as questions, got {len(questions)} and {len(answers)}")
        return [(self._question_text(example, index), str(answer)) for index, answer in enumerate(answers)]

    def prompt_turns(self, example: Mapping[str, Any]) -> list[tuple[str, str | None]]:
        """The history (questions/answers of the example) and the new `question`."""
        history = list(zip(example.get("questions") or [], example.get("answers") or []))
        question = example.get("question")
        if question is None:
            raise ValueError("a dialogue prompt needs the new question (example['question'])")
        texts = [*(q for q, _ in history), question]
        turns: list[tuple[str, str | None]] = []
        for index, text in enumerate(texts):
            shown = first_turn_text(example.get("caption", ""), text) if index == 0 else as_question(text)
            turns.append((shown, history[index][1] if index < len(history) else None))
        return turns

    def request(self, question: str | None = None, history: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        if not (question or "").strip():
            raise ValueError("ask a question about the picture, e.g. 'Is it sunny?'")
        return {"caption": "", "questions": [q for q, _ in history], "answers": [a for _, a in history],
                "question": question.strip()}

    def ranking_items(self, example: Mapping[str, Any], rounds: str = "all", **options: Any) -> list[RankingItem]:
        """One item per round that has candidates: history with ground-truth answers, the
        question, its 100 candidates. `rounds="dense"` keeps the rounds with dense
        relevance only (VisDial's NDCG protocol: one annotated round per image)."""
        if options or rounds not in ("all", "dense"):
            raise ValueError(f"ranking_items takes rounds='all' or 'dense', got {rounds!r} {options or ''}")
        turns = self.turns(example)
        relevance = list(example.get("relevance") or [])
        items = []
        for index, candidates in enumerate(example.get("options") or []):
            graded = relevance[index] if index < len(relevance) and relevance[index] else None
            gt_index = int(example["gt_index"][index])
            if not candidates or gt_index < 0 or (rounds == "dense" and graded is None):
                continue
            history = [*turns[:index], (turns[index][0], None)]
            items.append(RankingItem(history, [str(c) for c in candidates],
                                     {"gt_index": gt_index, "relevance": graded, "round": index + 1,
                                      "image_id": int(example.get("image_id", -1))}))
        return items

    def _question_text(self, example: Mapping[str, Any], index: int) -> str:
        question = str(example["questions"][index])
        return first_turn_text(example.get("caption", ""), question) if index == 0 else as_question(question)

    # -- output

    def parse(self, text: Any) -> str | None:
        """A generated answer (the app): its first line, stripped; None when empty."""
        text = as_text(text)
        if text is None:
            return None
        line = next((line.strip() for line in text.splitlines() if line.strip()), "")
        return line or None

    def reference(self, example: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One reference per ranked round (see `ranking_items`)."""
        return [item.reference for item in self.ranking_items(example)]

    def metrics(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, Any]:
        """`predictions`: the candidates' scores of each round; `references`: RankingItem.reference."""
        return visdial_metrics(predictions, references)

    def render(self, prediction: Any, raw_text: str = "") -> str:
        if prediction is None:
            return unparsed_markdown("Answer", raw_text)
        return f"### Answer: **{prediction}**" + raw_text_details(raw_text) + "\n"


def as_question(text: str) -> str:
    """VisDial writes questions lower case without "?": add it, as a user would type it."""
    text = str(text).strip()
    return text if text.endswith("?") else f"{text}?"


def first_turn_text(caption: str, question: str) -> str:
    caption = str(caption or "").strip()
    lead = f"{DIALOGUE_INSTRUCTION} Its caption: {caption.rstrip('.')}." if caption else DIALOGUE_INSTRUCTION
    return f"{lead}\n{as_question(question)}"


# --------------------------------------------------------------------------- reading


def find_visdial_files(root: Path) -> dict[str, Path]:
    """The train, val and dense-annotation JSON files under `root` (one level deep at most)."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; pass the folder with visdial_1.0_train.json and the images")
    found: dict[str, Path] = {}
    for path in sorted([*root.glob("*.json"), *root.glob("*/*.json")]):
        name = path.name.lower()
        if "visdial" not in name and "dialog" not in name:
            continue
        kind = "dense" if "dense" in name else "train" if "train" in name else "val" if "val" in name else None
        if kind and kind not in found:
            found[kind] = path
    if "train" not in found:
        raise FileNotFoundError(f"{root} has no visdial_1.0_train.json (VisDial v1.0 layout)")
    return found


def image_index(root: Path) -> dict[int, Path]:
    """image_id -> file, from the number each image file name ends with."""
    from inspector.images import iter_image_paths

    index: dict[int, Path] = {}
    for path in iter_image_paths([root]):
        match = _TRAILING_NUMBER.search(path.stem)
        if match:
            index.setdefault(int(match[1]), path)
    return index


def read_dense(path: Path) -> dict[int, dict[int, list[float]]]:
    """image_id -> {round index (0-based): relevance of the 100 candidates}."""
    entries = json.loads(Path(path).read_text())
    dense: dict[int, dict[int, list[float]]] = {}
    for entry in entries:
        relevance = entry.get("gt_relevance", entry.get("relevance"))
        if relevance is None or "round_id" not in entry:
            raise ValueError(f"{path}: entries need image_id, round_id and gt_relevance (or relevance)")
        dense.setdefault(int(entry["image_id"]), {})[int(entry["round_id"]) - 1] = [float(v) for v in relevance]
    return dense


def read_dialogs(path: Path, images: Mapping[int, Path], dense: Mapping[int, Mapping[int, list[float]]],
                 keep_options: bool = True) -> list[dict[str, Any]]:
    """Rows of one VisDial file; dialogues whose image is missing are skipped with a warning."""
    document = json.loads(Path(path).read_text())
    try:
        data = document["data"]
        questions, answers, dialogs = data["questions"], data["answers"], data["dialogs"]
    except (KeyError, TypeError):
        raise ValueError(f"{path} is not VisDial v1.0 JSON: it needs data.questions, data.answers, "
                         "data.dialogs") from None
    rows, missing = [], []
    for dialog in dialogs:
        image_id = int(dialog["image_id"])
        if image_id not in images:
            missing.append(image_id)
            continue
        rounds = [r for r in dialog["dialog"] if "answer" in r]  # the test file's last round has no answer
        graded = dense.get(image_id, {})
        rows.append({
            "image": str(images[image_id]), "image_id": image_id, "caption": dialog.get("caption", ""),
            "questions": [questions[r["question"]] for r in rounds],
            "answers": [answers[r["answer"]] for r in rounds],
            "options": [[answers[i] for i in r.get("answer_options", [])] if keep_options else [] for r in rounds],
            "gt_index": [int(r.get("gt_index", -1)) for r in rounds],
            "relevance": [graded.get(index, []) for index in range(len(rounds))],
        })
    if missing:
        log.warning("%s: %d dialogue(s) skipped, their image is not under the root (e.g. image_id %d)",
                    path.name, len(missing), missing[0])
    if not rows:
        raise FileNotFoundError(f"no image of {path.name} was found: put the images (named by image_id, e.g. "
                                "COCO_train2014_000000378466.jpg) under the same folder")
    return rows


def _carve(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(rest, carved): a seeded share of the dialogues, at least one, never all."""
    if len(rows) < 2:
        raise ValueError(f"{len(rows)} dialogue(s) cannot be split; VisDial gives thousands")
    count = min(len(rows) - 1, max(1, round(fraction * len(rows))))
    chosen = set(np.random.default_rng(seed).permutation(len(rows))[:count].tolist())
    return ([row for i, row in enumerate(rows) if i not in chosen], [row for i, row in enumerate(rows) if i in chosen])


def _limit(rows: list[dict], max_dialogs, name: str, seed: int) -> list[dict]:
    limit = max_dialogs.get(name) if isinstance(max_dialogs, Mapping) else max_dialogs
    if limit is None or limit >= len(rows):
        return rows
    keep = sorted(np.random.default_rng(seed).permutation(len(rows))[:int(limit)].tolist())
    return [rows[i] for i in keep]


def _features():
    import datasets

    strings = datasets.Sequence(datasets.Value("string"))
    return datasets.Features({
        "image": datasets.Image(), "image_id": datasets.Value("int64"), "caption": datasets.Value("string"),
        "questions": strings, "answers": strings, "options": datasets.Sequence(strings),
        "gt_index": datasets.Sequence(datasets.Value("int32")),
        "relevance": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
    })


# --------------------------------------------------------------------------- metrics


def gt_rank(scores: Sequence[float], gt_index: int) -> int:
    """1-based rank of the ground truth among the candidates, higher score first. Ties
    count against the model: a model scoring everything alike ranks it last."""
    scores = np.asarray(scores, dtype=float)
    target = scores[gt_index]
    others = np.delete(scores, gt_index)
    return int(1 + np.sum(others >= target))


def ndcg(scores: Sequence[float], relevance: Sequence[float]) -> float | None:
    """NDCG@k of VisDial's evaluation: k = candidates with non-zero relevance, the
    candidates ranked by score (ties by index); None where nothing is relevant."""
    relevance = np.asarray(relevance, dtype=float)
    k = int(np.sum(relevance != 0))
    if k == 0:
        return None
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores, dtype=float)))
    discounts = 1.0 / np.log2(np.arange(k) + 2)
    ideal = float(np.sum(np.sort(relevance)[::-1][:k] * discounts))
    return float(np.sum(relevance[order[:k]] * discounts) / ideal) if ideal > 0 else None


def visdial_metrics(predictions: Sequence[Sequence[float]], references: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """MRR, R@1/5/10 and mean rank of the ground truth; NDCG per round from the dense
    relevance where the reference has it (VisDial's NDCG), else from the ground truth
    alone (binary relevance over all candidates: 1 / log2(1 + rank)); the number of
    rounds scored with dense relevance is `ndcg_dense_rounds`.

    `ndcg_dense` is the mean over the densely annotated rounds only (None without any):
    VisDial's protocol, and the figure published results quote. On the v1.0 val split one
    round in ten is annotated, so `ndcg` there is mostly the binary figure of the others."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} score lists for {len(references)} references")
    if not references:
        raise ValueError("no rounds to score: the evaluation split has no candidates")
    ranks, gains, dense_gains = [], [], []
    for scores, reference in zip(predictions, references):
        if len(scores) <= int(reference["gt_index"]):
            raise ValueError(f"{len(scores)} scores but the ground truth is candidate {reference['gt_index']}")
        rank = gt_rank(scores, int(reference["gt_index"]))
        ranks.append(rank)
        graded = ndcg(scores, reference["relevance"]) if reference.get("relevance") else None
        if graded is None:
            gains.append(1.0 / np.log2(1 + rank))
        else:
            gains.append(graded)
            dense_gains.append(graded)
    ranks_array = np.asarray(ranks, dtype=float)
    return {
        "count": len(ranks),
        "mrr": float(np.mean(1.0 / ranks_array)),
        "r@1": float(np.mean(ranks_array <= 1)),
        "r@5": float(np.mean(ranks_array <= 5)),
        "r@10": float(np.mean(ranks_array <= 10)),
        "mean_rank": float(np.mean(ranks_array)),
        "ndcg": float(np.mean(gains)),
        "ndcg_dense": float(np.mean(dense_gains)) if dense_gains else None,
        "ndcg_dense_rounds": len(dense_gains),
    }
