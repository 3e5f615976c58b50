"""Triton-shaped statistics: counts and cumulative ns per model version, execution count per batch."""

from __future__ import annotations

from service.statistics import Statistics, Timing


def test_success_failure_and_batches_add_up_in_tritons_field_names():
    stats = Statistics()
    observe = stats.batch_observer("m", 1)
    stats.success("m", 1, rows=3, timing=Timing(0.010, 0.002, 0.001, 0.005, 0.0005))
    stats.success("m", 1, rows=2, timing=Timing(0.020, 0.004, 0.002, 0.010, 0.001))
    stats.failure("m", 1, 0.003)
    observe(5, 0.015)
    (row,) = stats.model_stats([("m", 1)])["model_stats"]
    assert row["name"] == "m" and row["version"] == "1"
    assert row["inference_count"] == 5 and row["execution_count"] == 1 and row["last_inference"] > 0
    phases = row["inference_stats"]
    assert phases["success"] == {"count": 2, "ns": 30_000_000}
    assert phases["fail"] == {"count": 1, "ns": 3_000_000}
    assert phases["queue"] == {"count": 2, "ns": 6_000_000}
    assert phases["compute_input"] == {"count": 2, "ns": 3_000_000}
    assert phases["compute_infer"] == {"count": 2, "ns": 15_000_000}
    assert phases["compute_output"] == {"count": 2, "ns": 1_500_000}


def test_versions_are_kept_apart_and_an_unasked_version_answers_zeros():
    stats = Statistics()
    stats.success("m", 2, rows=1, timing=Timing(0.001, 0, 0, 0.001, 0))
    rows = stats.model_stats([("m", 2), ("m", 1), ("other", None)])["model_stats"]
    assert [(r["name"], r["version"], r["inference_count"]) for r in rows] == [
        ("m", "2", 1),
        ("m", "1", 0),
        ("other", "", 0),
    ]
    assert rows[1]["inference_stats"]["success"] == {"count": 0, "ns": 0}
