"""Tabular anomaly recipe: a dense autoencoder trained on normal rows, threshold from validation."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from modelrepo.config import AnomalySpec, TabularPreprocessing
from training import metrics as ev
from training import plots
from training.data import tabular
from training.models import config_dict
from training.recipes.common import (
    SPLIT,
    Fitted,
    Hyper,
    Outcome,
    RunOptions,
    conclude,
    fit_new,
    hyper_dict,
    normal_fit,
    pool_parts,
    reconstruction_loss,
    rows,
    serving_config,
    split_sizes,
)
from training.repository import Artefact
from training.train import History, predict


def train_tabular_autoencoder(
    name: str,
    x: np.ndarray,
    is_anomaly: np.ndarray,
    features: Sequence[str],
    opts: RunOptions,
    *,
    dataset: dict[str, Any],
    model_cfg: dict[str, Any] | None = None,
    hyper: Hyper | None = None,
    threshold_rule: str = "f1",
    binary_scale: float | None = None,
    description: str = "",
) -> Outcome:
    """A dense autoencoder trained on the normal rows of the training split; class 1 = anomaly.

    `binary_scale`: the scale of 0/1 columns instead of their std. A flag that is 1 for one row in a
    hundred has std 0.1, so standardising turns it into a value of 10 whose squared error swamps the
    continuous measurements; keeping flags near unit range lets those measurements drive the score.
    """
    started, hyper = time.perf_counter(), hyper or Hyper()
    y = np.asarray(is_anomaly).astype(np.int64)
    train_idx, val_idx, test_idx = parts = pool_parts(y, opts.seed)
    normal_train = train_idx[y[train_idx] == 0]
    mean, scale = tabular.fit_scaler(x[normal_train])
    if binary_scale is not None:
        binary = np.isin(x[normal_train], (0.0, 1.0)).all(axis=0)
        scale[binary] = binary_scale
    z = ((x - mean) / scale).astype(np.float32)
    model, history = fit_new(
        "dense-ae",
        {**(model_cfg or {}), "n_features": x.shape[1]},
        rows(normal_train, z, y),
        rows(val_idx, z, y),
        hyper,
        opts,
        loss=reconstruction_loss,
        metric=normal_fit,
    )
    scores = {
        split: predict(model, rows(idx, z, y))[1].numpy()
        for split, idx in (("validation", val_idx), ("test", test_idx))
    }
    threshold = _threshold(scores["validation"], y[val_idx], threshold_rule)
    metrics = {
        split: ev.anomaly_metrics(y[idx], scores[split], threshold)
        for split, idx in (("validation", val_idx), ("test", test_idx))
    }
    test = metrics["test"]
    preprocessing = TabularPreprocessing(features=list(features), mean=mean.tolist(), scale=scale.tolist())
    return conclude(
        name,
        "dense-ae",
        Fitted(
            model,
            history,
            metrics,
            serving_config(name, "anomaly", description, preprocessing, anomaly=AnomalySpec(threshold=threshold)),
            cases=[(z[test_idx[:1]],), (z[test_idx[:64]],)],
            split=split_sizes(
                parts,
                opts.seed,
                method="stratified",
                fractions=SPLIT,
                trained_on="normal rows of the training split",
                normal_train=len(normal_train),
            ),
            hyper=hyper_dict(config_dict(model), hyper, threshold_rule=threshold_rule, binary_scale=binary_scale),
            summary={
                "split": "test",
                "n": test["n"],
                "roc_auc": test["roc_auc"],
                "pr_auc": test["pr_auc"],
                "f1": test["f1"],
            },
            artefacts=partial(_plots, history, scores["test"], y[test_idx], threshold),
        ),
        opts,
        dataset,
        started,
    )


def _threshold(val_scores: np.ndarray, val_y: np.ndarray, rule: str) -> float:
    """The best-F1 cut on validation when it holds both classes, else a quantile of its normal scores."""
    if rule == "f1" and val_y.any() and not val_y.all():
        return ev.f1_best_threshold(val_y, val_scores)
    return ev.quantile_threshold(val_scores[val_y == 0], float(rule) if rule != "f1" else 0.99)


def _plots(history: History, scores: np.ndarray, y: np.ndarray, threshold: float, tmp: Path) -> dict[str, Artefact]:
    return {
        "training_curves.png": plots.training_curves(history, tmp / "curves.png", "-(normal MSE)"),
        "score_distribution.png": plots.score_distribution(scores, y, threshold, tmp / "scores.png"),
    }
