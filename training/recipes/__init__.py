"""Recipes: data -> split -> fit -> metrics -> plots -> a new repository version, one per task kind.

`train_image_classifier`, `train_text_classifier`, `train_tabular_autoencoder` and
`train_series_autoencoder` are the pipelines the CLI's `train` runs; `DEFAULTS` binds each default
model to its dataset and the settings that meet its target, and is what `rebuild` runs.
Every normalisation statistic is computed on the training split only.
"""

from training.recipes.common import SPLIT, Hyper, Outcome, RunOptions, describe_files
from training.recipes.defaults import DEFAULTS, Recipe
from training.recipes.images import train_image_classifier
from training.recipes.series import train_series_autoencoder
from training.recipes.tabular import train_tabular_autoencoder
from training.recipes.text import train_text_classifier

__all__ = [
    "DEFAULTS", "SPLIT", "Hyper", "Outcome", "Recipe", "RunOptions", "describe_files",
    "train_image_classifier", "train_series_autoencoder", "train_tabular_autoencoder", "train_text_classifier",
]
