"""Scoring math against values worked out by hand, not by the code under test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelrepo import scoring


def test_softmax_of_large_logits_is_finite_and_exact():
    # exp(1000) overflows float64; the shifted form gives e^0 : e^-ln2 = 2/3 : 1/3 exactly.
    logits = np.array([[1000.0, 1000.0 - math.log(2)], [-1000.0, -1000.0]])
    with np.errstate(over="raise", invalid="raise"):
        probs = scoring.softmax(logits)
    assert probs == pytest.approx(np.array([[2 / 3, 1 / 3], [0.5, 0.5]]), abs=1e-12)


def test_softmax_of_float32_logits_near_100_does_not_overflow():
    logits = np.array([[100.0, 90.0, 80.0]], np.float32)  # exp(100) overflows float32
    with np.errstate(over="raise", invalid="raise"):
        probs = scoring.softmax(logits)
    denominator = 1 + math.exp(-10) + math.exp(-20)
    assert probs[0] == pytest.approx(
        [1 / denominator, math.exp(-10) / denominator, math.exp(-20) / denominator], rel=1e-5
    )


def test_a_point_exactly_at_the_threshold_is_not_anomalous():
    scores = np.array([0.5, 0.7, 0.7, 0.5, 0.2, 0.9])
    assert scoring.segments(scores, 0.5) == [scoring.Segment(1, 2, 0.7), scoring.Segment(5, 5, 0.9)]
    assert scoring.segments(scores, 0.9) == []
    assert scoring.segments(np.nextafter(scores, 1.0), 0.9) == [scoring.Segment(5, 5, float(np.nextafter(0.9, 1.0)))]


def test_window_starts_end_on_the_last_point():
    assert scoring.window_starts(10, 4, 3).tolist() == [0, 3, 6]
    assert scoring.window_starts(11, 4, 3).tolist() == [0, 3, 6, 7]
    assert scoring.window_starts(4, 4, 3).tolist() == [0]  # a series exactly one window long is one window
    with pytest.raises(ValueError, match="at least 4 points, got 3"):
        scoring.window_starts(3, 4, 1)


def test_point_scores_average_every_window_that_covers_the_point():
    # windows of 3 with stride 2 over 7 points: [0..2]=1, [2..4]=2, [4..6]=4
    scores = scoring.point_scores(np.array([1.0, 2.0, 4.0]), 7, 3, 2)
    assert scores.tolist() == [1.0, 1.0, 1.5, 2.0, 3.0, 4.0, 4.0]


def test_point_scores_max_takes_the_worst_window_covering_the_point():
    # the same windows: [0..2]=1, [2..4]=2, [4..6]=4
    assert scoring.point_scores(np.array([1.0, 2.0, 4.0]), 7, 3, 2, "max").tolist() == [1, 1, 2, 2, 4, 4, 4]
    # 11 points, window 4, stride 3: starts 0, 3, 6 and the appended 7 (off the stride)
    scores = scoring.point_scores(np.array([1.0, 0.0, 5.0, 2.0]), 11, 4, 3, "max")
    assert scores.tolist() == [1, 1, 1, 1, 0, 0, 5, 5, 5, 5, 2]


def test_point_scores_max_over_many_covering_windows():
    # window 5, stride 1, 12 points: 8 windows; window 3 (points 3-7) scores 9, window 7 (points 8-11's only
    # other neighbours score 0) scores 1; up to 5 windows cover a point.
    window_scores = np.array([0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 1.0])
    assert scoring.point_scores(window_scores, 12, 5, 1, "max").tolist() == [0, 0, 0, 9, 9, 9, 9, 9, 1, 1, 1, 1]


def test_top_k_is_best_first_and_ties_keep_label_order():
    probs = np.array([[0.1, 0.4, 0.4, 0.1]])
    assert scoring.top_k(probs, 3) == [[(1, 0.4), (2, 0.4), (0, 0.1)]]
    assert len(scoring.top_k(probs, 99)[0]) == 4


# Runs above 1.0 at 2-3 (max 3), 6 (5), 15-20 (1.5) and 28-29 (4); every other point is 0.
RUNS = np.zeros(30)
RUNS[2:4], RUNS[6], RUNS[15:21], RUNS[28:30] = [2.0, 3.0], 5.0, 1.5, 4.0


def test_alarms_with_the_default_rule_are_the_runs_above_the_threshold():
    expected = [(2, 3, 3.0), (6, 6, 5.0), (15, 20, 1.5), (28, 29, 4.0)]
    assert [(s.start, s.end, s.max_score) for s in scoring.alarms(RUNS, 1.0)] == expected


def test_alarms_join_runs_at_most_merge_gap_apart():
    # 2-3 and 6 are 2 points apart (4, 5); 6 and 15 are 8 apart; 20 and 28 are 7 apart.
    assert [(s.start, s.end, s.max_score) for s in scoring.alarms(RUNS, 1.0, merge_gap=2)] == [
        (2, 6, 5.0),
        (15, 20, 1.5),
        (28, 29, 4.0),
    ]
    assert [(s.start, s.end) for s in scoring.alarms(RUNS, 1.0, merge_gap=1)] == [(2, 3), (6, 6), (15, 20), (28, 29)]
    assert [(s.start, s.end) for s in scoring.alarms(RUNS, 1.0, merge_gap=7)] == [(2, 6), (15, 29)]
    assert [(s.start, s.end) for s in scoring.alarms(RUNS, 1.0, merge_gap=8)] == [(2, 29)]


def test_alarms_shorter_than_min_points_are_dropped_after_joining():
    assert [(s.start, s.end) for s in scoring.alarms(RUNS, 1.0, min_points=2)] == [(2, 3), (15, 20), (28, 29)]
    assert [(s.start, s.end) for s in scoring.alarms(RUNS, 1.0, min_points=6)] == [(15, 20)]
    assert [(s.start, s.end) for s in scoring.alarms(RUNS, 1.0, merge_gap=2, min_points=3)] == [(2, 6), (15, 20)]
    # Two one-point blips 1 apart make one 3-point alarm: joined first, so min_points=3 keeps it.
    blips = np.zeros(10)
    blips[[4, 6]] = 2.0
    assert [(s.start, s.end) for s in scoring.alarms(blips, 1.0, merge_gap=1, min_points=3)] == [(4, 6)]
    assert scoring.alarms(blips, 1.0, merge_gap=0, min_points=2) == []


def test_alarm_mask_marks_both_ends():
    found = [scoring.Segment(1, 2, 1.0), scoring.Segment(4, 4, 1.0)]
    assert scoring.alarm_mask(6, found).tolist() == [False, True, True, False, True, False]
