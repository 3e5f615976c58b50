"""gRPC shuts down with HTTP: on SIGTERM its health turns NOT_SERVING at once, RPCs are still answered during
the shutdown delay, and then the port closes and the process exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.grpc.proto import grpc_service_pb2 as pb
from service.grpc.proto import grpc_service_pb2_grpc as pb_grpc
from tests.support.live_server import ROOT, free_port
from tests.support.tiny_models import build_repository


def wait_for(check, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what} within {timeout_s} s"
        time.sleep(0.05)


def health_status(stub: health_pb2_grpc.HealthStub) -> int:
    return stub.Check(health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"), timeout=5).status


def test_sigterm_drops_grpc_readiness_first_then_closes(tmp_path):
    http_port, grpc_port = free_port(), free_port()
    env = os.environ | {
        "AXON_PORT": str(http_port),
        "AXON_GRPC_PORT": str(grpc_port),
        "AXON_MODEL_REPOSITORY": str(build_repository(tmp_path / "models")),
        "AXON_PROVIDERS": "CPUExecutionProvider",
        "AXON_SHUTDOWN_DELAY_S": "3",
        "AXON_ACCESS_LOG": "false",
    }
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    try:

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{http_port}/v2/health/ready").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, "ready")
        health, v2 = health_pb2_grpc.HealthStub(channel), pb_grpc.GRPCInferenceServiceStub(channel)
        assert health_status(health) == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: health_status(health) == health_pb2.HealthCheckResponse.NOT_SERVING, "NOT_SERVING")
        # During the shutdown delay the service still answers, but says it is not ready.
        assert not v2.ServerReady(pb.ServerReadyRequest(), timeout=5).ready
        assert v2.ServerLive(pb.ServerLiveRequest(), timeout=5).live
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        channel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
