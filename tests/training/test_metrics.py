"""Confidence intervals of the card's figures, against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import anomaly_metrics, bootstrap_interval, wilson_interval


def test_wilson_interval_of_95_out_of_100() -> None:
    # By hand, z = 1.959964, z^2 = 3.841459: centre = (0.95 + z^2/200) / (1 + z^2/100) = 0.969207 / 1.038415
    # = 0.933353; half-width = z * sqrt(0.95*0.05/100 + z^2/40000) / 1.038415 = 0.045103. Tables give 0.8882-0.9785.
    low, high = wilson_interval(95, 100)
    assert low == pytest.approx(0.888250, abs=1e-5) and high == pytest.approx(0.978456, abs=1e-5)


def test_wilson_interval_stays_inside_zero_and_one() -> None:
    low, high = wilson_interval(50, 50)
    assert high == 1.0 and low == pytest.approx(50 / (50 + 1.959964**2), abs=1e-5)  # n / (n + z^2) at p = 1
    assert wilson_interval(0, 10)[0] == 0.0


def test_bootstrap_interval_is_seeded_and_brackets_the_figure() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    pred = np.where(rng.random(400) < 0.9, y, 1 - y)

    def accuracy(t: np.ndarray, p: np.ndarray) -> float:
        return float((t == p).mean())

    first = bootstrap_interval(y, pred, accuracy, seed=1)
    assert first == bootstrap_interval(y, pred, accuracy, seed=1)
    assert first[0] < accuracy(y, pred) < first[1]
    # Close to the Wilson interval of the same accuracy (both about +-3 points at n = 400).
    wilson = wilson_interval(int((y == pred).sum()), 400)
    assert abs(first[0] - wilson[0]) < 0.01 and abs(first[1] - wilson[1]) < 0.01


def test_a_score_equal_to_the_threshold_is_not_flagged() -> None:
    # The service flags score > threshold; the card's figures must count the same rows.
    m = anomaly_metrics(np.array([0, 1, 1]), np.array([0.5, 0.5, 0.9]), threshold=0.5)
    assert m["flagged"] == 1
    assert (m["precision"], m["recall"]) == (1.0, 0.5)
