"""Recipes: data -> split -> fit -> metrics -> plots -> a new repository version, one per task kind.

`train_image_classifier`, `train_text_classifier`, `train_tabular_autoencoder` and
`train_series_autoencoder` are the pipelines the CLI's `train` runs; `DEFAULTS` binds each default
model to its dataset and the settings that meet its target, and is what `rebuild` runs.
Every normalisation statistic is computed on the training split only.

The names below load on first use, so the CLI can read `DEFAULT_NAMES` without importing PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

# The default models, in rebuild order (`DEFAULTS` has exactly these keys; a test checks it).
DEFAULT_NAMES = (
    "mnist-cnn",
    "sms-spam-transformer",
    "sentiment-gru",
    "sms-spam-minilm",
    "sentiment-minilm",
    "thyroid-autoencoder",
    "machine-temperature-autoencoder",
)

_EXPORTS = {
    "SPLIT": "common",
    "Hyper": "common",
    "Outcome": "common",
    "RunOptions": "common",
    "describe_files": "common",
    "DEFAULTS": "defaults",
    "Recipe": "defaults",
    "train_image_classifier": "images",
    "train_pretrained_text_classifier": "pretrained",
    "train_series_autoencoder": "series",
    "train_tabular_autoencoder": "tabular",
    "train_text_classifier": "text",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"training.recipes.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_NAMES", *_EXPORTS]
