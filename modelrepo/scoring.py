"""Turning raw model outputs into answers: probabilities, top-k, per-point anomaly scores, segments.

Training imports these too, so a threshold is calibrated on exactly the scores the service reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    probs: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return probs


def top_k(probs: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """For each row, the k best (index, probability) pairs, best first."""
    k = min(k, probs.shape[-1])
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    return [[(int(i), float(row[i])) for i in idx] for row, idx in zip(probs, order)]


def window_starts(n_points: int, window: int, stride: int) -> np.ndarray:
    """Start index of every window; the last window always ends on the last point."""
    if n_points < window:
        raise ValueError(f"a series needs at least {window} points, got {n_points}")
    starts = np.arange(0, n_points - window + 1, stride)
    if starts[-1] != n_points - window:
        starts = np.append(starts, n_points - window)
    return starts


def cut_windows(values: np.ndarray, window: int, stride: int) -> np.ndarray:
    """(n_windows, window) view of a 1-D series."""
    starts = window_starts(len(values), window, stride)
    return np.stack([values[s : s + window] for s in starts])


PointScore = Literal["mean", "max"]


def point_scores(
    window_scores: np.ndarray, n_points: int, window: int, stride: int, how: PointScore = "mean"
) -> np.ndarray:
    """Each point's score from every window that covers it: their mean, or their maximum.

    The mean spreads a badly reconstructed window's error over every point it covers, diluted by the
    windows around it; the maximum keeps the worst window's score on each of its points.
    """
    starts = window_starts(n_points, window, stride)
    if how == "max":
        return _covering_max(np.asarray(window_scores, np.float64), starts, n_points, window)
    total = np.zeros(n_points + 1)
    count = np.zeros(n_points + 1)
    # Difference arrays: add each window's score over [start, start + window) in O(1).
    np.add.at(total, starts, window_scores)
    np.add.at(total, starts + window, -window_scores)
    np.add.at(count, starts, 1)
    np.add.at(count, starts + window, -1)
    return np.cumsum(total)[:n_points] / np.cumsum(count)[:n_points]


def _covering_max(scores: np.ndarray, starts: np.ndarray, n_points: int, window: int) -> np.ndarray:
    """Per point, the maximum score of the windows covering it (a sparse table: O(n log n), no Python loop)."""
    points = np.arange(n_points)
    # The windows covering point p are a contiguous run of starts: first = the first window ending after p,
    # last = the last window starting at or before p (starts are sorted, the first is 0, the last ends at n).
    first = np.searchsorted(starts + window, points, side="right")
    last = np.searchsorted(starts, points, side="right") - 1
    levels = [scores]  # levels[j][i] = max(scores[i : i + 2**j])
    while 2 ** len(levels) <= len(scores):
        prev, half = levels[-1], 2 ** (len(levels) - 1)
        levels.append(np.maximum(prev[:-half], prev[half:]))
    k = np.floor(np.log2(last - first + 1)).astype(np.int64)
    table = np.full((len(levels), len(scores)), -np.inf)
    for j, level in enumerate(levels):
        table[j, : len(level)] = level
    out: np.ndarray = np.maximum(table[k, first], table[k, last - 2**k + 1])
    return out


@dataclass(frozen=True)
class Segment:
    """A run of consecutive anomalous points, both ends included."""

    start: int
    end: int
    max_score: float


def segments(scores: np.ndarray, threshold: float) -> list[Segment]:
    """Maximal runs of points whose score is above the threshold."""
    above = np.concatenate([[False], scores > threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    return [Segment(int(s), int(e - 1), float(scores[s:e].max())) for s, e in zip(edges[::2], edges[1::2])]


def alarms(scores: np.ndarray, threshold: float, merge_gap: int = 0, min_points: int = 1) -> list[Segment]:
    """The alarm segments of a series: runs above the threshold, then joined, then filtered.

    Runs separated by at most `merge_gap` points at or below the threshold become one alarm (a score
    that dips for a moment inside one incident does not raise a second alarm); an alarm then needs at
    least `min_points` points, gap included, or it is dropped (a blip shorter than that is noise, not an
    incident). With the defaults (0, 1) the alarms are exactly `segments`.
    """
    joined: list[Segment] = []
    for seg in segments(scores, threshold):
        if joined and seg.start - joined[-1].end - 1 <= merge_gap:
            last = joined.pop()
            seg = Segment(last.start, seg.end, max(last.max_score, seg.max_score))
        joined.append(seg)
    return [s for s in joined if s.end - s.start + 1 >= min_points]


def alarm_mask(n_points: int, found: list[Segment]) -> np.ndarray:
    """Boolean [n_points]: inside one of the alarm segments `found` (both ends included)."""
    mask = np.zeros(n_points, dtype=bool)
    for seg in found:
        mask[seg.start : seg.end + 1] = True
    return mask
