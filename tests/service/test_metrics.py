"""Metrics gathered in plain numbers per request and flushed into Prometheus when scraped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from service.metrics import LATENCY_BUCKETS, Metrics
from tests.support.app_harness import metric

ROOT = Path(__file__).resolve().parents[2]


def test_observations_reach_the_exposition_in_the_right_buckets_with_count_and_sum():
    metrics = Metrics()
    for seconds in (0.0004, 0.0005, 0.003, 0.003, 60.0):  # 0.0005 is a bound: `le` includes it
        metrics.observe_phases("digits", {"total": seconds})
    text = metrics.render().decode()
    bucket = "axon_request_phase_seconds_bucket"
    assert metric(text, bucket, model="digits", phase="total", le="0.0005") == 2
    assert metric(text, bucket, model="digits", phase="total", le="0.002") == 2
    assert metric(text, bucket, model="digits", phase="total", le="0.005") == 4
    assert metric(text, bucket, model="digits", phase="total", le=str(LATENCY_BUCKETS[-1])) == 4
    assert metric(text, bucket, model="digits", phase="total", le="+Inf") == 5
    assert metric(text, "axon_request_phase_seconds_count", model="digits", phase="total") == 5
    assert abs(metric(text, "axon_request_phase_seconds_sum", model="digits", phase="total") - 60.0069) < 1e-9


def test_counts_accumulate_across_scrapes_without_being_counted_twice():
    metrics = Metrics()
    for _ in range(3):
        metrics.count_request("digits", "v2", 200)
        metrics.observe_http("POST", "/v2/models/{name}/infer", 200, 0.001)
    first = metrics.render().decode()
    metrics.count_request("digits", "v2", 200)
    second = metrics.render().decode()
    third = metrics.render().decode()
    assert metric(first, "axon_requests_total", model="digits", endpoint="v2", status="200") == 3
    assert metric(second, "axon_requests_total", model="digits", endpoint="v2", status="200") == 4
    assert metric(third, "axon_requests_total", model="digits", endpoint="v2", status="200") == 4
    labels = {"method": "POST", "route": "/v2/models/{name}/infer", "status": "200"}
    assert metric(third, "axon_http_requests_total", **labels) == 3
    assert metric(third, "axon_http_request_seconds_count", route="/v2/models/{name}/infer") == 3


def test_batch_observer_counts_rows_and_run_time():
    metrics = Metrics()
    observe = metrics.batch_observer("digits", 1)
    observe(3, 0.002)
    observe(64, 0.01)
    text = metrics.render().decode()
    assert metric(text, "axon_batch_size_bucket", model="digits", version="1", le="4.0") == 1
    assert metric(text, "axon_batch_size_sum", model="digits", version="1") == 67
    assert metric(text, "axon_batch_inference_seconds_count", model="digits", version="1") == 2


def test_forgetting_a_version_drops_its_queue_gauge_only():
    metrics = Metrics()
    metrics.watch_queue("digits", 1, lambda: 3)
    metrics.watch_queue("digits", 2, lambda: 5)
    assert metric(metrics.render().decode(), "axon_queue_depth", model="digits", version="1") == 3
    metrics.forget_version("digits", 1)
    metrics.forget_version("digits", 7)  # never watched: nothing to drop, no error
    text = metrics.render().decode()
    assert 'axon_queue_depth{model="digits",version="1"}' not in text
    assert metric(text, "axon_queue_depth", model="digits", version="2") == 5


def test_under_workers_a_forgotten_versions_queue_gauge_reads_zero(tmp_path):
    # prometheus-client picks its multiprocess value class at import, so this runs in a fresh interpreter.
    script = (
        "from service.metrics import Metrics\n"
        "m = Metrics()\n"
        "m.watch_queue('digits', 1, lambda: 5)\n"
        "print(m.render().decode())\n"
        "print('---')\n"
        "m.forget_version('digits', 1)\n"
        "print(m.render().decode())\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    before, after = run.stdout.split("---")
    # A worker's file cannot drop a series; it must read 0, not the last depth, once the version is gone.
    assert metric(before, "axon_queue_depth", model="digits", version="1") == 5
    assert 'axon_queue_depth{model="digits",version="1"} 0.0' in after
