"""`python -m service` as a real uvicorn process: start, ready, serve, SIGTERM, drain, exit 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.app_harness import metric
from tests.support.tiny_models import build_repository

ROOT = Path(__file__).resolve().parents[2]
PROBE_POINTS = 4000
PROBE_WINDOWS = (PROBE_POINTS - 8) // 2 + 1  # tiny series model: window 8, stride 2, one window per batch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_ready(client: httpx.AsyncClient, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited during start-up"
        try:
            if (await client.get("/v2/health/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("server never became ready")


async def seconds_per_point(client: httpx.AsyncClient) -> float:
    """How long the server takes per series point with one window per batch (machines differ a lot)."""
    probe = [10.0 + (i % 50) / 10 for i in range(PROBE_POINTS)]
    start = time.perf_counter()
    r = await client.post("/v1/anomaly/score", json={"series": probe})
    assert r.status_code == 200
    return (time.perf_counter() - start) / len(probe)


def long_series(per_point: float, seconds: float) -> list[float]:
    """A series the server needs about `seconds` for (within the default length limit)."""
    n = int(min(100_000, max(4000, seconds / per_point)))
    return [10.0 + (i % 50) / 10 for i in range(n)]


async def settled_metric(client: httpx.AsyncClient, name: str, timeout: float = 10, **labels: str) -> float:
    """A metric once two scrapes a second apart agree (with workers, each flushes every half second)."""
    deadline = time.monotonic() + timeout
    last = metric((await client.get("/metrics")).text, name, **labels)
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        now = metric((await client.get("/metrics")).text, name, **labels)
        if now == last:
            return now
        last = now
    raise AssertionError(f"{name} never settled")


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_real_server_serves_then_drains_on_sigterm(tmp_path, workers):
    repo = build_repository(tmp_path / "models")
    port = free_port()
    env = os.environ | {
        "AXON_WORKERS": workers,
        "AXON_PORT": str(port),
        "AXON_MODEL_REPOSITORY": str(repo),
        "AXON_PROVIDERS": "CPUExecutionProvider",
        "AXON_DEFAULT_MODELS__TEXT": "spam",
        "AXON_DEFAULT_MODELS__SERIES": "temperature",
        "AXON_MAX_BATCH_SIZE": "1",  # makes the long series request run thousands of batches
        "AXON_SHUTDOWN_DELAY_S": "1",
        "AXON_LOG_JSON": "true",
    }
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            await wait_ready(client, proc)
            r = await client.post(
                "/v1/text/classify", json={"texts": ["free cash now"]}, headers={"X-Request-ID": "proc-test-1"}
            )
            assert r.status_code == 200 and r.json()["model"] == "spam"
            assert r.headers["x-request-id"] == "proc-test-1"

            series = long_series(await seconds_per_point(client), seconds=1.5)
            windows = (len(series) - 8) // 2 + 1
            # A client that gives up: its remaining windows must not be computed.
            try:
                await client.post("/v1/anomaly/score", json={"series": series}, timeout=0.2)
                raise AssertionError("the long request should outlast the client's timeout")
            except httpx.ReadTimeout:
                pass
            first = await settled_metric(client, "axon_batch_size_count", model="temperature", version="1")
            text = (await client.get("/metrics")).text
            assert first - PROBE_WINDOWS < windows  # the abandoned request stopped part-way
            assert metric(text, "axon_requests_total", model="temperature", endpoint="anomaly", status="499") == 1

            long = asyncio.create_task(client.post("/v1/anomaly/score", json={"series": series}))
            await asyncio.sleep(0.3)
            assert not long.done(), "the long request should still be running"
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            ready = await client.get("/v2/health/ready")
            assert ready.status_code == 503 and ready.json() == {
                "error": "the server is shutting down",
                "code": "not_ready",
            }
            assert (await client.get("/v2/health/live")).status_code == 200
            done = await long
            assert done.status_code == 200 and len(done.json()["results"]) == len(series)
            assert time.monotonic() > sent
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    access = [entry for entry in lines if entry["logger"] == "axon.access"]
    assert any(
        e["request_id"] == "proc-test-1" and e["path"] == "/v1/text/classify" and e["status"] == 200 for e in access
    )
    assert any(e["message"] == "Application shutdown complete." for e in lines)
