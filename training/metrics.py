"""Metrics for the model card and `evaluate`: classifiers, tabular anomaly scores, series anomaly windows.

Series figures go through `modelrepo.scoring` so a threshold is judged on exactly the per-point
scores and segments the service reports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
from sklearn import metrics

from modelrepo.scoring import PointScore, alarm_mask, alarms, point_scores


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class F1 and the confusion matrix (rows = truth, columns = prediction)."""
    classes = list(range(len(labels)))
    per_class = metrics.f1_score(y_true, y_pred, labels=classes, average=None, zero_division=0)
    return {
        "n": len(y_true),
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "macro_f1": float(metrics.f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        "per_class_f1": {label: float(f) for label, f in zip(labels, per_class)},
        "confusion_matrix": metrics.confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    }


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (accuracy): unlike p +- z*se it stays inside [0, 1] near 100%."""
    if n <= 0:
        raise ValueError("a proportion needs at least one trial")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 or n successes one end is exactly 0 or 1; the formula gets there only up to rounding.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return float(low), float(high)


def bootstrap_interval(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], float],
    *,
    confidence: float = 0.95,
    rounds: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(y_true, y_pred)` over rows resampled with a seeded generator.

    For figures with no closed-form interval (a class's F1): the rows are the test split, resampled whole.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    rng = np.random.default_rng(seed)
    draws = [statistic(y_true[idx], y_pred[idx]) for idx in rng.integers(0, len(y_true), (rounds, len(y_true)))]
    low, high = np.quantile(draws, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def anomaly_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """ROC-AUC and PR-AUC of the scores (1 = anomaly), and precision/recall/F1 at the threshold."""
    y_true = np.asarray(y_true).astype(int)
    flagged = (np.asarray(scores) > threshold).astype(int)
    both = len(np.unique(y_true)) == 2
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
        y_true, flagged, average="binary", zero_division=0
    )
    return {
        "n": len(y_true),
        "anomalies": int(y_true.sum()),
        # AUCs are undefined with one class present (a dry run's single batch); say so rather than crash.
        "roc_auc": float(metrics.roc_auc_score(y_true, scores)) if both else None,
        "pr_auc": float(metrics.average_precision_score(y_true, scores)) if both else None,
        "threshold": float(threshold),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "flagged": int(flagged.sum()),
    }


def quantile_threshold(normal_scores: np.ndarray, quantile: float) -> float:
    """The `quantile` of scores known to be normal: about (1 - quantile) of normal data is flagged."""
    return float(np.quantile(np.asarray(normal_scores, dtype=np.float64), quantile))


def f1_best_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The score cut with the best F1 for class 1 (midway to the next score, so it generalises a little)."""
    scores = np.asarray(scores, dtype=np.float64)
    precision, recall, cuts = metrics.precision_recall_curve(y_true, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    cut = float(cuts[int(np.argmax(f1[:-1]))])
    # The curve flags score >= cut; the service flags score > threshold, so step below the cut.
    lower = scores[scores < cut]
    return float((cut + lower.max()) / 2) if lower.size else float(np.nextafter(cut, -np.inf))


def in_windows(n_points: int, windows: Sequence[tuple[int, int]]) -> np.ndarray:
    """Boolean mask of the points inside any (start, end) window, both ends included."""
    mask = np.zeros(n_points, dtype=bool)
    for start, end in windows:
        mask[start : end + 1] = True
    return mask


def series_point_scores(
    window_scores: np.ndarray, n_points: int, window: int, stride: int, how: PointScore = "mean"
) -> np.ndarray:
    """Per-point scores exactly as the service computes them (`how`: the config's `anomaly.point_score`)."""
    return point_scores(np.asarray(window_scores, dtype=np.float64), n_points, window, stride, how)


def window_detection(
    scores: np.ndarray,
    threshold: float,
    windows: Sequence[tuple[int, int]],
    merge_gap: int = 0,
    min_points: int = 1,
) -> dict[str, Any]:
    """Which label windows an alarm overlaps, and the alarms outside every window (false alarms).

    The alarms are the service's (`modelrepo.scoring.alarms` with the model's `merge_gap` and
    `min_points`), so a window counts as found only when the service would have raised an alarm in it.
    """
    found = alarms(np.asarray(scores), threshold, merge_gap, min_points)
    labelled = in_windows(len(scores), windows)
    alarmed = alarm_mask(len(scores), found)
    hit = [bool(alarmed[start : end + 1].any()) for start, end in windows]
    false_alarms = [s for s in found if not labelled[s.start : s.end + 1].any()]
    return {
        "threshold": float(threshold),
        "merge_gap": merge_gap,
        "min_points": min_points,
        "windows_total": len(windows),
        "windows_hit": int(sum(hit)),
        "hit": hit,
        "segments": len(found),
        "false_alarms": len(false_alarms),
        "false_alarm_points": int(sum(s.end - s.start + 1 for s in false_alarms)),
        # Joined alarms can run past a window's ends: every alarmed point outside the windows, overhangs included.
        "alarm_points_outside_windows": int((alarmed & ~labelled).sum()),
    }
