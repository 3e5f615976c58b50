"""Image classification recipe: a CNN on uint8 images, with translation augmentation."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from service.model_config import ImagePreprocessing, ModelConfig
from training import plots
from training.data.images import image_batch
from training.data.split import stratified_split
from training.models import build_model
from training.recipes.common import (
    SERVING, SPLIT, Hyper, Outcome, RunOptions, accuracy, class_report, fit_with, hyper_dict, publish, split_sizes,
)
from training.train import predict, set_seed


class RandomShift(Dataset):
    """Training images moved by up to `pixels` in x and y, a fresh shift each time an item is read.

    Digits in the wild are rarely centred the way MNIST's are, and with a few thousand training images
    small translations are the cheapest way to stop a CNN memorising exact pixel positions.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, pixels: int, fill: torch.Tensor) -> None:
        self.x, self.y, self.pixels, self.fill = x, y, pixels, fill  # fill: (C,) normalised background

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, p = self.x[i], self.pixels
        _, height, width = image.shape
        padded = self.fill[:, None, None].expand(-1, height + 2 * p, width + 2 * p).clone()
        padded[:, p : p + height, p : p + width] = image
        dy, dx = (int(v) for v in torch.randint(0, 2 * p + 1, (2,)))  # seeded by fit's set_seed
        return padded[:, dy : dy + height, dx : dx + width], self.y[i]


def train_image_classifier(
    name: str,
    images: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    opts: RunOptions,
    *,
    dataset: dict[str, Any],
    model_cfg: dict[str, Any] | None = None,
    hyper: Hyper | None = None,
    invert: bool = False,
    shift: int = 0,
    description: str = "",
) -> Outcome:
    """A CNN on uint8 images [N, H, W] or [N, H, W, 3] with integer labels (`shift`: augment by translation)."""
    started, hyper, model_cfg = time.perf_counter(), hyper or Hyper(), dict(model_cfg or {})
    x = image_batch(images, invert)  # (N, C, H, W) in [0, 1]
    parts = stratified_split(y, SPLIT, seed=opts.seed)
    train_idx, val_idx, test_idx = parts
    mean = x[train_idx].mean(axis=(0, 2, 3))
    std = x[train_idx].std(axis=(0, 2, 3))
    x = (x - mean[None, :, None, None]) / std[None, :, None, None]
    channels, height, width = x.shape[1:]
    set_seed(opts.seed)
    model_cfg.update(in_channels=channels, num_classes=len(labels), image_size=(height, width))
    model = build_model("cnn", **model_cfg)

    def subset(idx: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.from_numpy(x[idx]), torch.from_numpy(y[idx].astype(np.int64)))

    train = subset(train_idx)
    if shift:
        # What an empty pixel becomes after inverting and normalising: the padding must look like paper.
        background = torch.from_numpy(((1.0 if invert else 0.0) - mean) / std).float()
        train = RandomShift(*train.tensors, shift, background)
    history = fit_with(model, train, subset(val_idx), hyper, opts, loss=F.cross_entropy, metric=accuracy)
    metrics = {
        split: class_report(predict(model, subset(idx)), y[idx], labels)
        for split, idx in (("validation", val_idx), ("test", test_idx))
    }
    config = ModelConfig(
        name=name, task="vision", description=description, inputs=[], outputs=[], labels=list(labels),
        preprocessing=ImagePreprocessing(
            height=height, width=width, channels=channels, mean=mean.tolist(), std=std.tolist(), invert=invert
        ),
        **SERVING,
    )
    many = test_idx[: min(64, len(test_idx))]
    cases = [(x[test_idx[:1]],), (x[many],)]
    with tempfile.TemporaryDirectory() as tmp:
        artefacts = {
            "training_curves.png": plots.training_curves(history, Path(tmp) / "curves.png", "accuracy"),
            "confusion_matrix.png": plots.confusion_matrix(
                metrics["test"]["confusion_matrix"], labels, Path(tmp) / "cm.png"
            ),
        }
        written = publish(
            model, config, cases, opts, family="cnn", dataset=dataset,
            split=split_sizes(parts, opts.seed, method="stratified", fractions=SPLIT),
            hyper=hyper_dict(dataclasses.asdict(model.config), hyper, augment_shift_pixels=shift),
            metrics=metrics, history=history,
            artefacts=artefacts,
        )
    test = metrics["test"]
    return Outcome(name, written.version, written.path, metrics, time.perf_counter() - started,
                   {"split": "test", "n": test["n"], "accuracy": test["accuracy"], "macro_f1": test["macro_f1"]},
                   model)
