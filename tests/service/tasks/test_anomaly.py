"""The series answer: alarms follow the model's config (threshold, merge_gap, min_points), values worked by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from modelrepo.config import ModelConfig
from service.batcher import BatchResult
from service.registry import ModelVersion
from service.tasks.anomaly import ScoreSeries, series_scores
from tests.support.tiny_models import CONFIGS

# Window 2, stride 2: each of the 15 windows covers two points of its own, so point 2k and 2k+1 score w[k].
WINDOW_SCORES = np.zeros(15)
WINDOW_SCORES[[1, 3, 8, 9, 14]] = [3.0, 5.0, 1.5, 2.0, 4.0]
# Points above 1.0: 2-3 (3), 6-7 (5), 16-19 (1.5, 2) and 28-29 (4).


def version(window: int = 2, **anomaly: float | str) -> ModelVersion:
    config = ModelConfig.model_validate(
        {
            **CONFIGS["temperature"],
            "name": "temperature",
            "preprocessing": {"kind": "series", "window": window, "stride": 2, "mean": 0.0, "std": 1.0},
            "anomaly": {"threshold": 1.0, **anomaly},
        }
    )
    return ModelVersion("temperature", 1, Path("/nonexistent"), config)


def answer(entry: ModelVersion) -> tuple[list[tuple[int, int, float]], list[int]]:
    result = BatchResult({"score": WINDOW_SCORES.astype(np.float32)}, 0.0, 0.0)
    body = ScoreSeries([0.0] * 30, None, None, None).answer(entry, result)
    segments = [(s["start"], s["end"], s["max_score"]) for s in body["segments"]]
    return segments, [i for i, r in enumerate(body["results"]) if r["is_anomaly"]]


def test_without_a_rule_every_run_above_the_threshold_is_an_alarm():
    segments, flagged = answer(version())
    assert segments == [(2, 3, 3.0), (6, 7, 5.0), (16, 19, 2.0), (28, 29, 4.0)]
    assert flagged == [2, 3, 6, 7, 16, 17, 18, 19, 28, 29]


def test_the_configs_merge_gap_and_min_points_shape_the_served_alarms():
    # 2-3 and 6-7 are 2 points apart: one alarm 2-7 (4 and 5 inside it); 28-29 is shorter than 3: dropped.
    segments, flagged = answer(version(merge_gap=2, min_points=3))
    assert segments == [(2, 7, 5.0), (16, 19, 2.0)]
    assert flagged == [2, 3, 4, 5, 6, 7, 16, 17, 18, 19]
    segments, _ = answer(version(min_points=4))
    assert segments == [(16, 19, 2.0)]


def test_series_scores_applies_the_rule_it_is_given():
    spec = version().config.preprocessing  # type: ignore[union-attr]
    # 7 -> 16 and 19 -> 28 are both 8 points apart: gap 7 keeps them apart, gap 8 joins everything.
    _, segments = series_scores(WINDOW_SCORES, 30, spec, 1.0, merge_gap=7, min_points=1)
    assert [(s["start"], s["end"]) for s in segments] == [(2, 7), (16, 19), (28, 29)]
    results, segments = series_scores(WINDOW_SCORES, 30, spec, 1.0, merge_gap=8, min_points=1)
    assert [(s["start"], s["end"]) for s in segments] == [(2, 29)]
    assert all(r["is_anomaly"] for r in results[2:30]) and not any(r["is_anomaly"] for r in results[:2])
    assert [r["score"] for r in results[4:8]] == [0.0, 0.0, 5.0, 5.0]


def test_the_configs_point_score_decides_how_windows_become_point_scores():
    # Window 3, stride 2 over 7 points: windows [0..2]=1, [2..4]=2, [4..6]=4, threshold 1.5.
    # mean: 1, 1, 1.5, 2, 3, 4, 4 -> alarm 3-6; max: 1, 1, 2, 2, 4, 4, 4 -> alarm 2-6.
    def served(entry: ModelVersion) -> tuple[list[tuple[int, int]], list[float]]:
        job = ScoreSeries([0.0] * 7, None, None, None)
        body = job.answer(entry, BatchResult({"score": np.array([1.0, 2.0, 4.0], np.float32)}, 0.0, 0.0))
        return [(s["start"], s["end"]) for s in body["segments"]], [r["score"] for r in body["results"]]

    assert served(version(window=3, threshold=1.5)) == ([(3, 6)], [1, 1, 1.5, 2, 3, 4, 4])
    assert served(version(window=3, threshold=1.5, point_score="max")) == ([(2, 6)], [1, 1, 2, 2, 4, 4, 4])


@pytest.mark.parametrize("field, value", [("merge_gap", -1), ("min_points", 0), ("point_score", "median")])
def test_a_rule_out_of_range_is_refused(field, value):
    with pytest.raises(ValidationError, match=field):
        version(**{field: value})


@pytest.mark.parametrize("rule", [{"merge_gap": 3}, {"point_score": "max"}])
def test_a_tabular_model_takes_no_series_rule(rule):
    with pytest.raises(ValidationError, match="merge_gap, min_points and point_score"):
        ModelConfig.model_validate({**CONFIGS["thyroid"], "name": "t", "anomaly": {"threshold": 0.5, **rule}})


def test_timestamps_label_every_point_and_both_ends_of_each_segment():
    timestamps = [f"t{i}" for i in range(30)]
    result = BatchResult({"score": WINDOW_SCORES.astype(np.float32)}, 0.0, 0.0)
    body = ScoreSeries([0.0] * 30, timestamps, None, None).answer(version(), result)
    assert [r["timestamp"] for r in body["results"]] == timestamps
    assert [(s["start_timestamp"], s["end_timestamp"]) for s in body["segments"]] == [
        ("t2", "t3"),
        ("t6", "t7"),
        ("t16", "t19"),
        ("t28", "t29"),
    ]
