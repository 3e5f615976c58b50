"""Series anomaly recipe: a sequence autoencoder on normal stretches, in time order."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from modelrepo.config import AnomalySpec, SeriesPreprocessing
from modelrepo.scoring import PointScore, window_starts
from training import metrics as ev
from training import plots
from training.data import timeseries
from training.models import config_dict
from training.recipes.common import (
    Fitted,
    Hyper,
    Outcome,
    RunOptions,
    conclude,
    fit_new,
    hyper_dict,
    normal_fit,
    reconstruction_loss,
    serving_config,
)
from training.repository import Artefact
from training.train import History, predict


def _clean_starts(labels: np.ndarray, lo: int, hi: int, window: int, stride: int) -> np.ndarray:
    """Start indices of windows inside [lo, hi) that hold no labelled point."""
    starts = np.arange(lo, hi - window + 1, stride)
    bad = np.concatenate([[0], np.cumsum(labels)])  # prefix sums: labelled points in [s, s + window)
    clean: np.ndarray = starts[(bad[starts + window] - bad[starts]) == 0]
    return clean


@dataclass(frozen=True)
class SeriesFit:
    """A sequence autoencoder fitted on a series' normal stretches, and its per-point scores."""

    model: nn.Module
    history: History
    window_scores: np.ndarray  # float64 [n_windows]: each window's reconstruction error
    val_normal: np.ndarray  # int64: the validation stretch's normal points (the threshold's calibration set)
    preprocessing: SeriesPreprocessing
    split: dict[str, Any]
    all_windows: np.ndarray  # float32 [n_windows, window, 1]: the whole series as the service cuts it
    n_points: int

    def points(self, how: PointScore = "mean") -> np.ndarray:
        """Each point's score as the service computes it with `anomaly.point_score` = `how`."""
        prep = self.preprocessing
        return ev.series_point_scores(self.window_scores, self.n_points, prep.window, prep.stride, how)

    def threshold(self, quantile: float, margin: float, how: PointScore = "mean") -> float:
        """`margin` times the `quantile` of the normal validation points' scores."""
        return ev.quantile_threshold(self.points(how)[self.val_normal], quantile) * margin


def fit_series_autoencoder(
    series: timeseries.NabSeries,
    opts: RunOptions,
    *,
    window: int,
    stride: int,
    model_cfg: dict[str, Any] | None,
    hyper: Hyper,
    train_fraction: float,
    val_fraction: float,
) -> SeriesFit:
    """Train on the first `train_fraction` (normal points only), stop early on the next `val_fraction`."""
    n = len(series)
    cut_train, cut_val = int(n * train_fraction), int(n * (train_fraction + val_fraction))
    labels = series.labels.astype(np.int64)
    train_points = np.flatnonzero(labels[:cut_train] == 0)
    mean, std = timeseries.fit_normaliser(series.values[train_points])
    z = timeseries.normalise(series.values, mean, std)
    train_starts = _clean_starts(labels, 0, cut_train, window, stride)
    val_starts = _clean_starts(labels, cut_train, cut_val, window, stride)
    model, history = fit_new(
        "seq-ae",
        {**(model_cfg or {}), "window": window},
        _windows(z, train_starts, window),
        _windows(z, val_starts, window),
        hyper,
        opts,
        loss=reconstruction_loss,
        metric=normal_fit,
    )
    all_windows = timeseries.sliding_windows(z, window, stride)[:, :, None]
    window_scores = predict(model, TensorDataset(torch.from_numpy(all_windows), torch.zeros(len(all_windows))))[1]
    split = {
        "seed": opts.seed,
        "method": "chronological",
        "train_points": [0, cut_train],
        "validation_points": [cut_train, cut_val],
        "train_windows": len(train_starts),
        "validation_windows": len(val_starts),
        "note": "no window touching a label window is trained or validated on; "
        "detection is reported over the whole series",
    }
    return SeriesFit(
        model,
        history,
        window_scores.numpy().astype(np.float64),
        np.arange(cut_train, cut_val)[labels[cut_train:cut_val] == 0],
        SeriesPreprocessing(window=window, stride=stride, mean=mean, std=std),
        split,
        all_windows,
        n,
    )


def train_series_autoencoder(
    name: str,
    series: timeseries.NabSeries,
    opts: RunOptions,
    *,
    dataset: dict[str, Any],
    window: int = 64,
    stride: int = 1,
    model_cfg: dict[str, Any] | None = None,
    hyper: Hyper | None = None,
    train_fraction: float = 0.5,
    val_fraction: float = 0.2,
    threshold_quantile: float = 1.0,
    threshold_margin: float = 1.0,
    merge_gap: int = 0,
    min_points: int = 1,
    point_score: PointScore = "mean",
    protocol: dict[str, Any] | None = None,
    description: str = "",
) -> Outcome:
    """A sequence autoencoder on windows of a series' normal stretches, in time order.

    The first `train_fraction` of the series (its points outside every label window) trains, the next
    `val_fraction` stops training early and calibrates the threshold on its normal points; no point
    inside a label window is ever trained on. A point's score is the `point_score` (mean or max) of the
    windows covering it; alarms join runs `merge_gap` apart and need `min_points` (all three written into
    the served config). Detection is then reported over the whole series;
    `protocol` (how these settings were chosen, on which data) goes into the card's split section.
    """
    started, hyper = time.perf_counter(), hyper or Hyper()
    fit = fit_series_autoencoder(
        series,
        opts,
        window=window,
        stride=stride,
        model_cfg=model_cfg,
        hyper=hyper,
        train_fraction=train_fraction,
        val_fraction=val_fraction,
    )
    n, points = len(series), fit.points(point_score)
    cut_train, cut_val = fit.split["train_points"][1], fit.split["validation_points"][1]
    threshold = fit.threshold(threshold_quantile, threshold_margin, point_score)
    rule = {"merge_gap": merge_gap, "min_points": min_points}
    detection = ev.window_detection(points, threshold, series.windows, **rule)
    unseen = [(s - cut_train, e - cut_train) for s, e in series.windows if s >= cut_train]
    later = ev.window_detection(points[cut_train:], threshold, unseen, **rule)
    metrics: dict[str, Any] = {
        "series": detection,
        "after_training_portion": later,
        "point_auc": ev.anomaly_metrics(series.labels, points, threshold),
    }
    test_windows = fit.all_windows[window_starts(n, window, stride) >= cut_val]  # never trained or validated on
    anomaly = AnomalySpec(threshold=threshold, point_score=point_score, **rule)
    return conclude(
        name,
        "seq-ae",
        Fitted(
            fit.model,
            fit.history,
            metrics,
            serving_config(name, "anomaly", description, fit.preprocessing, anomaly=anomaly),
            cases=[(test_windows[:1],), (test_windows[:: max(1, len(test_windows) // 64)][:64],)],
            split=fit.split if protocol is None else {**fit.split, "selection": protocol},
            hyper=hyper_dict(
                config_dict(fit.model),
                hyper,
                stride=stride,
                threshold_quantile=threshold_quantile,
                threshold_margin=threshold_margin,
                point_score=point_score,
                **rule,
            ),
            summary={
                "split": "whole series",
                "windows_hit": f"{detection['windows_hit']}/{detection['windows_total']}",
                "false_alarms": detection["false_alarms"],
                "point_roc_auc": metrics["point_auc"]["roc_auc"],
            },
            artefacts=partial(_plots, fit.history, series, points, threshold),
        ),
        opts,
        dataset,
        started,
    )


def _windows(z: np.ndarray, starts: np.ndarray, window: int) -> TensorDataset:
    """Windows of `z` at `starts` as [N, window, 1], with all-zero (normal) targets."""
    w = np.stack([z[s : s + window] for s in starts])[:, :, None]
    return TensorDataset(torch.from_numpy(w), torch.zeros(len(starts), dtype=torch.int64))


def _plots(
    history: History, series: timeseries.NabSeries, points: np.ndarray, threshold: float, tmp: Path
) -> dict[str, Artefact]:
    return {
        "training_curves.png": plots.training_curves(history, tmp / "curves.png", "-(normal MSE)"),
        "score_distribution.png": plots.score_distribution(points, series.labels, threshold, tmp / "d.png"),
        "series_scores.png": plots.series_scores(series.values, points, series.windows, threshold, tmp / "s.png"),
    }
