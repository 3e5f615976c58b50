"""Image classification recipe: a CNN on uint8 images, with translation augmentation."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from modelrepo.config import ImagePreprocessing
from training import plots
from training.data.images import image_batch
from training.models import config_dict
from training.recipes.common import (
    SPLIT,
    Fitted,
    Hyper,
    Outcome,
    RunOptions,
    accuracy,
    class_metrics,
    conclude,
    fit_new,
    hyper_dict,
    pool_parts,
    rows,
    serving_config,
    split_sizes,
)
from training.repository import Artefact
from training.train import History


class RandomShift(Dataset[Any]):
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
    started, hyper = time.perf_counter(), hyper or Hyper()
    x, y = image_batch(images, invert), y.astype(np.int64)  # (N, C, H, W) in [0, 1]
    train_idx, val_idx, test_idx = parts = pool_parts(y, opts.seed)
    mean = x[train_idx].mean(axis=(0, 2, 3))
    std = x[train_idx].std(axis=(0, 2, 3))
    x = (x - mean[None, :, None, None]) / std[None, :, None, None]
    channels, height, width = x.shape[1:]
    model_cfg = {
        **(model_cfg or {}),
        "in_channels": channels,
        "num_classes": len(labels),
        "image_size": (height, width),
    }
    train_rows = rows(train_idx, x, y)
    train: Dataset[Any] = train_rows
    if shift:
        # What an empty pixel becomes after inverting and normalising: the padding must look like paper.
        background = torch.from_numpy(((1.0 if invert else 0.0) - mean) / std).float()
        train = RandomShift(train_rows.tensors[0], train_rows.tensors[1], shift, background)
    model, history = fit_new(
        "cnn", model_cfg, train, rows(val_idx, x, y), hyper, opts, loss=F.cross_entropy, metric=accuracy
    )
    metrics = class_metrics(
        model,
        {"validation": rows(val_idx, x, y), "test": rows(test_idx, x, y)},
        {"validation": y[val_idx], "test": y[test_idx]},
        labels,
    )
    test = metrics["test"]
    preprocessing = ImagePreprocessing(
        height=height, width=width, channels=channels, mean=mean.tolist(), std=std.tolist(), invert=invert
    )
    return conclude(
        name,
        "cnn",
        Fitted(
            model,
            history,
            metrics,
            serving_config(name, "vision", description, preprocessing, labels=list(labels)),
            cases=[(x[test_idx[:1]],), (x[test_idx[:64]],)],
            split=split_sizes(parts, opts.seed, method="stratified", fractions=SPLIT),
            hyper=hyper_dict(config_dict(model), hyper, augment_shift_pixels=shift),
            summary={"split": "test", "n": test["n"], "accuracy": test["accuracy"], "macro_f1": test["macro_f1"]},
            artefacts=partial(_plots, history, test["confusion_matrix"], labels),
        ),
        opts,
        dataset,
        started,
    )


def _plots(history: History, confusion: list[list[int]], labels: Sequence[str], tmp: Path) -> dict[str, Artefact]:
    return {
        "training_curves.png": plots.training_curves(history, tmp / "curves.png", "accuracy"),
        "confusion_matrix.png": plots.confusion_matrix(confusion, labels, tmp / "cm.png"),
    }
