"""PNG plots for a model version: training curves, confusion matrix, anomaly score pictures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training machines or in CI

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from training.train import History


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def training_curves(history: History, path: Path, metric_name: str = "validation metric") -> Path:
    """Train/validation loss and the validation metric per epoch, the kept epoch marked."""
    epochs = np.arange(1, len(history.train_loss) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, history.train_loss, marker="o", label="train")
    left.plot(epochs, history.val_loss, marker="o", label="validation")
    left.set(xlabel="epoch", ylabel="loss", title="Loss")
    left.legend()
    right.plot(epochs, history.val_metric, marker="o", color="tab:green")
    right.axvline(history.best_epoch, color="grey", linestyle="--", label=f"kept: epoch {history.best_epoch}")
    right.set(xlabel="epoch", ylabel=metric_name, title=f"Validation {metric_name}")
    right.legend()
    return _save(fig, path)


def confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str = "") -> Path:
    """Counts per (true, predicted) class, with the numbers written in each cell."""
    cm = np.asarray(matrix)
    size = max(4.0, 0.55 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 2 else 0)
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="true", title=title or "Confusion matrix (test split)")
    for (i, j), count in np.ndenumerate(cm):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > cm.max() / 2 else "black")
    return _save(fig, path)


def score_distribution(scores: np.ndarray, is_anomaly: np.ndarray, threshold: float, path: Path) -> Path:
    """Histograms of normal and anomalous scores on a log axis, with the stored threshold."""
    scores = np.asarray(scores, dtype=np.float64)
    is_anomaly = np.asarray(is_anomaly, dtype=bool)
    floor = max(scores[scores > 0].min() if (scores > 0).any() else 1e-9, 1e-12)
    bins = np.geomspace(floor, max(scores.max(), floor * 10), 50)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.hist(np.clip(scores[~is_anomaly], floor, None), bins=bins.tolist(), alpha=0.6, label="normal")
    if is_anomaly.any():
        ax.hist(np.clip(scores[is_anomaly], floor, None), bins=bins.tolist(), alpha=0.6, label="anomaly")
    ax.axvline(threshold, color="red", linestyle="--", label=f"threshold {threshold:.4g}")
    ax.set(xscale="log", xlabel="anomaly score (reconstruction MSE)", ylabel="count", title="Score distribution")
    ax.legend()
    return _save(fig, path)


def series_scores(
    values: np.ndarray,
    scores: np.ndarray,
    windows: Sequence[tuple[int, int]],
    threshold: float,
    path: Path,
) -> Path:
    """The series with its label windows shaded, and the per-point scores against the threshold."""
    x = np.arange(len(values))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    top.plot(x, values, linewidth=0.6)
    top.set(ylabel="value", title="Series and label windows")
    bottom.plot(x, scores, linewidth=0.6, color="tab:purple")
    bottom.axhline(threshold, color="red", linestyle="--", label=f"threshold {threshold:.4g}")
    flagged = scores > threshold
    bottom.fill_between(x, 0, scores.max(), where=flagged, color="red", alpha=0.2, label="flagged")
    for start, end in windows:
        for ax in (top, bottom):
            ax.axvspan(start, end, color="orange", alpha=0.25)
    bottom.set(yscale="log", xlabel="point", ylabel="point score")
    bottom.legend(loc="upper left")
    return _save(fig, path)
