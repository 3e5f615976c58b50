"""Tabular anomaly recipe: a dense autoencoder trained on normal rows, threshold from validation."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from service.model_config import AnomalySpec, ModelConfig, TabularPreprocessing
from training import metrics as ev
from training import plots
from training.data import tabular
from training.data.split import stratified_split
from training.models import build_model
from training.recipes.common import (
    SERVING, SPLIT, Hyper, Outcome, RunOptions, fit_with, hyper_dict, normal_fit, publish, reconstruction_loss, split_sizes,
)
from training.train import predict, set_seed


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
    started, hyper, model_cfg = time.perf_counter(), hyper or Hyper(), dict(model_cfg or {})
    y = np.asarray(is_anomaly).astype(np.int64)
    parts = stratified_split(y, SPLIT, seed=opts.seed)
    train_idx, val_idx, test_idx = parts
    normal_train = train_idx[y[train_idx] == 0]
    mean, scale = tabular.fit_scaler(x[normal_train])
    if binary_scale is not None:
        binary = np.isin(x[normal_train], (0.0, 1.0)).all(axis=0)
        scale[binary] = binary_scale
    z = ((x - mean) / scale).astype(np.float32)
    set_seed(opts.seed)
    model_cfg.update(n_features=x.shape[1])
    model = build_model("dense-ae", **model_cfg)

    def subset(idx: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.from_numpy(z[idx]), torch.from_numpy(y[idx]))

    history = fit_with(model, subset(normal_train), subset(val_idx), hyper, opts,
                   loss=reconstruction_loss, metric=normal_fit)
    scores = {split: predict(model, subset(idx))[1].numpy() for split, idx in
              (("validation", val_idx), ("test", test_idx))}
    val_scores, val_y = scores["validation"], y[val_idx]
    if threshold_rule == "f1" and val_y.any() and not val_y.all():
        threshold = ev.f1_best_threshold(val_y, val_scores)
    else:
        threshold = ev.quantile_threshold(val_scores[val_y == 0], float(threshold_rule) if threshold_rule != "f1" else 0.99)
    metrics = {split: ev.anomaly_metrics(y[idx], scores[split], threshold)
               for split, idx in (("validation", val_idx), ("test", test_idx))}
    config = ModelConfig(
        name=name, task="anomaly", description=description, inputs=[], outputs=[],
        preprocessing=TabularPreprocessing(features=list(features), mean=mean.tolist(), scale=scale.tolist()),
        anomaly=AnomalySpec(threshold=threshold), **SERVING,
    )
    cases = [(z[test_idx[:1]],), (z[test_idx[:64]],)]
    with tempfile.TemporaryDirectory() as tmp:
        artefacts = {
            "training_curves.png": plots.training_curves(history, Path(tmp) / "curves.png", "-(normal MSE)"),
            "score_distribution.png": plots.score_distribution(
                scores["test"], y[test_idx], threshold, Path(tmp) / "scores.png"
            ),
        }
        written = publish(
            model, config, cases, opts, family="dense-ae", dataset=dataset,
            split=split_sizes(parts, opts.seed, method="stratified", fractions=SPLIT,
                               trained_on="normal rows of the training split", normal_train=int(len(normal_train))),
            hyper=hyper_dict(dataclasses.asdict(model.config), hyper, threshold_rule=threshold_rule,
                              binary_scale=binary_scale),
            metrics=metrics, history=history, artefacts=artefacts,
        )
    test = metrics["test"]
    return Outcome(name, written.version, written.path, metrics, time.perf_counter() - started,
                   {"split": "test", "n": test["n"], "roc_auc": test["roc_auc"], "pr_auc": test["pr_auc"],
                    "f1": test["f1"]}, model)
