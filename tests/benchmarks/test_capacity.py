"""The capacity model's arithmetic (benchmarks/capacity.py); its figures come from real runs, not from here."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

spec = importlib.util.spec_from_file_location(
    "capacity", Path(__file__).resolve().parents[2] / "benchmarks/capacity.py"
)
assert spec and spec.loader
capacity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(capacity)

CAL = {
    "replicas": 1,
    "window": {"rps": 400.0, "mean_ms": 40.0, "p50_ms": 30.0, "p99_ms": 150.0},
    "cpu_ms_per_request": {"client": 0.5, "replica": 1.3, "lb": 0.2},
    "replica_rss_mb": {"r1": 86.0},
}
MODELS = {"fast": {"1": {"p50_ms": 0.1, "p99_ms": 0.3}}, "slow": {"1": {"p50_ms": 1.0, "p99_ms": 3.0}}}


def test_lognormal_moments_match_samples_with_that_median_and_p99():
    mean, second = capacity._lognormal(1.0, 3.0)
    sigma = math.log(3.0) / 2.326
    x = np.random.default_rng(0).lognormal(0.0, sigma, 400_000)
    assert np.percentile(x, 99) == pytest.approx(3.0, rel=0.02)
    assert mean == pytest.approx(x.mean(), rel=0.01) and second == pytest.approx((x**2).mean(), rel=0.02)


def test_closed_loop_prediction_follows_cores_then_replicas_and_littles_law():
    on_few_cores = capacity.predict_run(CAL, replicas=3, cores=1.0, concurrency=16)
    assert on_few_cores["bound"] == "cores" and on_few_cores["rps"] == pytest.approx(1000 / 2.0)
    assert on_few_cores["mean_ms"] == pytest.approx(16 / 500 * 1000)  # N / X
    assert on_few_cores["p99_ms"] / on_few_cores["mean_ms"] == pytest.approx(150 / 40)
    on_many_cores = capacity.predict_run(CAL, replicas=3, cores=64, concurrency=16)
    assert on_many_cores["bound"] == "replicas" and on_many_cores["rps"] == pytest.approx(3 * 1000 / 1.3)


def test_a_saturated_worker_has_no_finite_p99_and_a_lighter_one_waits_less():
    s = capacity.service_times(CAL, MODELS, {"fast": 0.5, "slow": 0.5}, overhead_tail=2.0)
    # The Python work is the replica's CPU per request less the mix's mean ONNX Runtime time.
    ort_mean = 0.5 * (0.1 + 1.0) * math.exp((math.log(3.0) / 2.326) ** 2 / 2)
    assert s["overhead_ms"] == pytest.approx(1.3 - ort_mean, rel=1e-3)
    assert s["p99_ms"] == pytest.approx((1.3 - ort_mean) * 2 + 3.0, rel=1e-3)
    assert math.isinf(capacity.p99_response(1.0 / s["mean_ms"], s))
    assert capacity.p99_response(0.3 / s["mean_ms"], s) < capacity.p99_response(0.7 / s["mean_ms"], s)


def test_plan_meets_the_slo_with_the_fewest_workers_and_scales_with_the_rate():
    mix = {"fast": 0.5, "slow": 0.5}
    small, big = capacity.plan(CAL, MODELS, mix, [1000, 10_000], slo_ms=50, max_util=0.7, workers_per_replica=2)
    s = capacity.service_times(CAL, MODELS, mix, 2.0)
    for row in (small, big):
        rate = row["rps"] / 1000
        assert row["utilisation"] <= 0.7 + 1e-9 and row["p99_ms"] <= 50
        # One worker fewer breaks the utilisation cap or the p99 target.
        fewer = row["workers"] - 1
        assert rate / fewer * s["mean_ms"] > 0.7 or capacity.p99_response(rate / fewer, s) > 50
        assert row["replicas"] == math.ceil(row["workers"] / 2)
    assert big["workers"] > 9 * small["workers"]
