"""Seeded, stratified train/validation/test index splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Train / validation / test fractions of a pool (acceptance data is held elsewhere): what every recipe
# splits with and what `evaluate --split test` reproduces.
POOL_SPLIT = (0.8, 0.1, 0.1)


def _class_counts(n: int, fractions: np.ndarray) -> np.ndarray:
    """Split n items by fractions; the largest remainders get the leftover items, so counts sum to n."""
    exact = fractions * n
    counts: np.ndarray = np.floor(exact).astype(np.int64)
    leftover = n - counts.sum()
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:leftover]] += 1
    return counts


def stratified_split(
    y: Sequence[int] | np.ndarray, fractions: tuple[float, ...] = (0.7, 0.15, 0.15), seed: int = 0
) -> tuple[np.ndarray, ...]:
    """One sorted int64 index array per fraction, each holding about that fraction of every class."""
    y = np.asarray(y)
    parts = np.asarray(fractions, dtype=np.float64)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError("stratified_split needs a non-empty 1-D label array")
    if len(parts) < 2 or (parts <= 0).any() or abs(parts.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must be at least two positive numbers summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    chosen: list[list[np.ndarray]] = [[] for _ in parts]
    for label in np.unique(y):  # sorted, so the draw order does not depend on row order
        members = rng.permutation(np.flatnonzero(y == label))
        bounds = np.cumsum(_class_counts(len(members), parts))[:-1]
        for bucket, piece in zip(chosen, np.split(members, bounds)):
            bucket.append(piece)
    return tuple(np.sort(np.concatenate(bucket)).astype(np.int64) for bucket in chosen)
