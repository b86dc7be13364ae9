"""How much of the degradations the tiny stand-in's vision tower passes on: linear probes.

    python benchmarks/tiny_probe.py --base runs/tiny/base --dataset runs/tiny/data

A LoRA adapter on the language model can only report what the vision tower's tokens
carry. This fits, per degradation type, a logistic regression of "present" on pooled
features of the train split and scores its presence F1 on the test split, for:

- `vision`: the stand-in's own vision tokens (the merged tokens and the encoder's last
  hidden states over all views, pooled by `pooled`): what the adapter has to work with;
- `spectra`: the log power of each 28x28 token of the native crops in radial frequency
  bands, computed from the pixels: a reference of what simple local statistics carry.

Compare with the constant "always present" answer (about 0.46 macro F1 on the tiny
recipe's data): features below it carry next to nothing a linear read-out can use.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from inspector.taxonomy import DEGRADATION_TYPES


def vision_features(model, processor, views) -> np.ndarray:
    import torch

    inputs = processor.image_processor(images=views, return_tensors="pt")
    with torch.inference_mode():
        out = model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
    merged, hidden = out.pooler_output.float().numpy(), out.last_hidden_state.float().numpy()
    return np.concatenate([pooled(merged), pooled(hidden)])


def pooled(tokens: np.ndarray) -> np.ndarray:
    """Mean, spread, extremes and low decile over tokens: what attention over them could read."""
    return np.concatenate([tokens.mean(0), tokens.std(0), tokens.min(0), tokens.max(0),
                           np.percentile(tokens, 10, axis=0)])


SPECTRUM_BANDS = (0.0, 0.04, 0.09, 0.15, 0.23, 0.33, 0.75)  # radial frequency edges, cycles per pixel


def token_spectra(view) -> list[list[float]]:
    """log10 power of the luminance in radial frequency bands, per 28x28 token (one merged token)."""
    gray = np.asarray(view.convert("L"), dtype=np.float32) / 255.0
    radius = np.sqrt(np.fft.fftfreq(28)[:, None] ** 2 + np.fft.rfftfreq(28)[None, :] ** 2)
    bands = [(radius >= low) & (radius < high) for low, high in zip(SPECTRUM_BANDS, SPECTRUM_BANDS[1:])]
    spectra = []
    for top in range(0, gray.shape[0], 28):
        for left in range(0, gray.shape[1], 28):
            tile = gray[top:top + 28, left:left + 28]
            power = np.abs(np.fft.rfft2(tile - tile.mean())) ** 2 / tile.size
            spectra.append([float(np.log10(power[band].mean() + 1e-6)) for band in bands])
    return spectra


def spectra_features(views) -> np.ndarray:
    return pooled(np.array([band for view in views[1:] for band in token_spectra(view)]))  # the native crops


def probe(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train[0])
    scores = {}
    for index, kind in enumerate(DEGRADATION_TYPES):
        classifier = LogisticRegression(C=0.5, max_iter=3000, class_weight="balanced")
        classifier.fit(scaler.transform(train[0]), train[1][:, index])
        scores[kind] = round(float(f1_score(test[1][:, index], classifier.predict(scaler.transform(test[0])))), 3)
    scores["macro_f1"] = round(float(np.mean([scores[kind] for kind in DEGRADATION_TYPES])), 3)
    return scores


def main(base: str, dataset: str, budget: int, max_train: int) -> dict:
    from datasets import load_from_disk
    from tqdm import tqdm
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    from inspector.images import make_views

    processor = AutoProcessor.from_pretrained(base)
    model = Qwen2VLForConditionalGeneration.from_pretrained(base).eval()
    data = load_from_disk(dataset)
    splits = {}
    for split, limit in (("train", max_train), ("test", None)):
        rows = data[split] if limit is None else data[split].select(range(min(limit, len(data[split]))))
        features = {"vision": [], "spectra": []}
        present = []
        for row in tqdm(rows, desc=split, file=sys.stderr):
            views = make_views(row["image"].convert("RGB"), budget)
            features["vision"].append(vision_features(model, processor, views))
            features["spectra"].append(spectra_features(views))
            present.append([row["labels"][kind] != "none" for kind in DEGRADATION_TYPES])
        splits[split] = {name: np.array(values) for name, values in features.items()} | {"y": np.array(present)}
    return {name: probe((splits["train"][name], splits["train"]["y"]), (splits["test"][name], splits["test"]["y"]))
            for name in ("vision", "spectra")}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the stand-in (python -m inspector tiny OUT --pretrain)")
    parser.add_argument("--dataset", required=True, help="train/build_dataset.py's output")
    parser.add_argument("--visual-token-budget", type=int, default=64, help="as the tiny recipe")
    parser.add_argument("--max-train", type=int, default=600, help="train rows for the probes")
    args = parser.parse_args()
    print(json.dumps(main(args.base, args.dataset, args.visual_token_budget, args.max_train)))
