"""`AXON_WORKERS=2`: metrics summed over workers, readiness across workers, a killed worker replaced."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from service.workers import DIR_ENV, STALE_S, Group, Peers, _Worker, draining_path, status_path
from tests.support.app_harness import metric
from tests.support.server_harness import ROOT, free_port, running_server

TEXT = {"texts": ["free cash now"]}


def workers_of(supervisor: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()]


def wait_for(check, timeout: float = 30.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s")


def requests_per_pid(folder: Path, endpoint: str) -> dict[int, float]:
    """axon_requests_total of one endpoint as each process wrote it to its multiprocess file."""
    out: dict[int, float] = {}
    for path in folder.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            _, sample, labels, *_ = json.loads(key)
            if sample == "axon_requests_total" and labels.get("endpoint") == endpoint:
                out[pid] = out.get(pid, 0) + value
    return out


def classify_on_fresh_connections(url: str, count: int) -> list[int]:
    def one(_: int) -> int:
        with httpx.Client(base_url=url, timeout=30) as client:  # a new connection each: any worker may take it
            return client.post("/v1/text/classify", json=TEXT).status_code

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(count)))


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workers")
    (tmp / "metrics").mkdir()
    with running_server(tmp, AXON_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(tmp / "metrics")) as served:
        served.metrics_dir = tmp / "metrics"
        served.url = f"http://127.0.0.1:{served.port}"
        yield served


def test_metrics_count_the_requests_of_every_worker(group):
    before = metric(httpx.get(f"{group.url}/metrics").text, "axon_requests_total", model="spam", status="200")
    written = sum(requests_per_pid(group.metrics_dir, "text").values())
    assert classify_on_fresh_connections(group.url, 200) == [200] * 200
    # Every worker writes its counts to the shared files each tick, scraped or not: a scrape, answered by one
    # worker, then finds the other's counts there.
    wait_for(
        lambda: sum(requests_per_pid(group.metrics_dir, "text").values()) - written == 200,
        timeout=10,
        what="the workers' files did not count all 200 requests without a scrape",
    )

    def counted() -> bool:
        text = httpx.get(f"{group.url}/metrics").text
        return metric(text, "axon_requests_total", model="spam", status="200") - before == 200

    wait_for(counted, what="/metrics did not count all 200 requests")
    per_pid = requests_per_pid(group.metrics_dir, "text")
    workers = workers_of(group.proc.pid)
    assert sorted(per_pid) == sorted(workers), "requests counted by a process that is not a worker"
    assert all(per_pid[pid] > 0 for pid in workers), f"one worker served nothing: {per_pid}"
    text = httpx.get(f"{group.url}/metrics").text
    assert metric(text, "axon_models_loaded") == 4  # the tiny repository's 4 versions, in each worker: not 8
    assert metric(text, "axon_worker_restarts_total") == 0


def test_the_load_api_is_refused_with_a_reason(group):
    for action in ("load", "unload"):
        r = httpx.post(f"{group.url}/v2/repository/models/spam/{action}")
        assert r.status_code == 409
        assert r.json()["code"] == "many_workers"
        assert "1 of 2 worker processes" in r.json()["error"]
    assert httpx.post(f"{group.url}/v1/text/classify", json=TEXT).status_code == 200  # still served


def test_a_hung_worker_makes_the_group_not_ready(group):
    hung = workers_of(group.proc.pid)[0]
    os.kill(hung, signal.SIGSTOP)
    try:
        started = time.monotonic()

        def not_ready() -> dict | None:
            r = httpx.get(f"{group.url}/v2/health/ready", timeout=5)
            return r.json() if r.status_code == 503 else None

        answer = wait_for(not_ready, timeout=STALE_S + 10, what="readiness stayed 200 with a worker stopped")
        assert time.monotonic() - started >= STALE_S - 1
        assert "has not reported for" in answer["error"]
    finally:
        os.kill(hung, signal.SIGCONT)
    wait_for(lambda: httpx.get(f"{group.url}/v2/health/ready").status_code == 200, what="never ready again")


def test_a_killed_worker_is_replaced_and_reported(tmp_path):
    with running_server(tmp_path, AXON_WORKERS="2") as served:
        url = f"http://127.0.0.1:{served.port}"
        victim, survivor = workers_of(served.proc.pid)
        os.kill(victim, signal.SIGKILL)
        # The survivor takes every connection from the shared queue while the replacement loads.
        assert classify_on_fresh_connections(url, 40) == [200] * 40

        def replaced() -> list[int] | None:
            now = workers_of(served.proc.pid)
            return now if len(now) == 2 and victim not in now else None

        workers = wait_for(replaced, what="no replacement worker")
        assert survivor in workers
        wait_for(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 200, what="never ready again")
        text = httpx.get(f"{url}/metrics").text
        assert metric(text, "axon_worker_restarts_total") == 1
        assert classify_on_fresh_connections(url, 20) == [200] * 20
        log = served.log.read_text()
        assert f"(pid {victim}) exited with signal 9; starting a replacement (1 restarts so far)" in log


def test_the_group_exits_non_zero_when_a_worker_does_not_stop_cleanly(tmp_path):
    # A process manager (docker, Kubernetes, systemd) learns from the exit status that a drain went wrong.
    with running_server(tmp_path, AXON_WORKERS="2") as served:
        stuck, _ = workers_of(served.proc.pid)
        environ = dict(v.split("=", 1) for v in Path(f"/proc/{stuck}/environ").read_text().split("\0") if "=" in v)
        draining = draining_path(Path(environ[DIR_ENV]))
        os.kill(stuck, signal.SIGSTOP)  # it cannot drain: SIGTERM stays pending until the SIGKILL below
        served.proc.send_signal(signal.SIGTERM)
        # The supervisor's signal handler writes this file, then marks itself stopping before its loop runs
        # again: from then on it replaces no worker. (Not readiness: the other worker may be gone already,
        # leaving the shared listener to the stopped one.)
        wait_for(draining.exists, what="the supervisor never began to stop")
        os.kill(stuck, signal.SIGKILL)
        assert served.proc.wait(timeout=60) == 1
    assert "all 2 workers stopped (1 with errors)" in served.log.read_text()


def test_a_worker_that_cannot_start_stops_the_group(tmp_path):
    env = os.environ | {
        "AXON_WORKERS": "2",
        "AXON_PORT": str(free_port()),
        "AXON_MODEL_REPOSITORY": str(tmp_path / "missing"),
        "AXON_PROVIDERS": "CPUExecutionProvider",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "service"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "before it was ready: stopping" in proc.stderr


class FakeProcess:
    """What the supervisor reads of a worker's Popen: its pid, its exit status (None while it runs), its signals."""

    def __init__(self, pid: int, code: int | None) -> None:
        self.pid, self.code, self.signals = pid, code, []

    def poll(self) -> int | None:
        return self.code

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)


def group_of(folder: Path, *processes: FakeProcess) -> tuple[Group, list[str]]:
    """A supervisor's group over fake workers (a replacement is a new fake process) and what it did besides."""
    did: list[str] = []
    group = Group(
        folder,
        start=lambda index: _Worker(index, FakeProcess(1000 + index, None)),  # type: ignore[arg-type]
        forget=lambda worker: did.append(f"forget {worker.proc.pid}"),
        on_restart=lambda: did.append("count a restart"),
        workers=[_Worker(i, p) for i, p in enumerate(processes)],  # type: ignore[arg-type]
    )
    return group, did


def test_a_worker_killed_before_it_was_ready_is_replaced_one_that_failed_stops_the_group(tmp_path):
    # A start-up error (exit status > 0) would repeat in every replacement; a signal (the OOM killer while
    # it loads, an operator) says nothing about the next worker.
    killed, did = group_of(tmp_path, FakeProcess(101, -signal.SIGKILL))
    assert killed.watch() is None
    assert killed.restarts == 1 and killed.workers[0].proc.pid == 1000
    assert did == ["forget 101", "count a restart"]
    failed, did = group_of(tmp_path, FakeProcess(102, 1))
    assert failed.watch() == 1
    assert failed.restarts == 0 and failed.workers[0].proc.pid == 102 and did == []


def test_a_worker_that_failed_after_it_was_ready_is_replaced(tmp_path):
    # Ready once, so its start-up works: a later failure (a crash while serving) is the worker's, not the setup's.
    Peers(0, 1, tmp_path).publish(True, "ready")  # written by this process, so with this pid
    group, did = group_of(tmp_path, FakeProcess(os.getpid(), 1))
    assert group.watch() is None
    assert group.restarts == 1 and group.workers[0].proc.pid == 1000
    assert did == [f"forget {os.getpid()}", "count a restart"]


def test_no_worker_is_replaced_once_the_group_is_stopping(tmp_path):
    group, did = group_of(tmp_path, FakeProcess(301, 0), FakeProcess(302, -signal.SIGKILL))
    group.on_signal(signal.SIGTERM, None)
    assert group.watch() is None
    assert group.restarts == 0 and [w.proc.pid for w in group.workers] == [301, 302] and did == []


def test_a_second_signal_is_passed_on_to_the_running_workers(tmp_path):
    running, gone = FakeProcess(201, None), FakeProcess(202, 0)
    group, _ = group_of(tmp_path, running, gone)
    group.on_signal(signal.SIGTERM, None)  # the first: readiness drops; Supervisor._stop() signals the workers
    assert draining_path(tmp_path).exists() and running.signals == []
    group.on_signal(signal.SIGINT, None)  # the second: workers stop waiting for running requests
    assert running.signals == [signal.SIGTERM] and gone.signals == []


def test_readiness_waits_for_every_worker(tmp_path):
    first, second = Peers(0, 2, tmp_path), Peers(1, 2, tmp_path)
    assert first.readiness((False, "models are still loading (2 versions to go)")) == (
        False,
        "models are still loading (2 versions to go)",
    )
    assert first.readiness((True, "ready")) == (False, "worker 1 of 2 has not reported yet")
    second.publish(False, "scanning the model repository")
    assert first.readiness((True, "ready")) == (False, "worker 1 of 2: scanning the model repository")
    second.publish(True, "ready")
    assert first.readiness((True, "ready")) == (True, "ready")
    old = time.time() - STALE_S - 1
    os.utime(status_path(tmp_path, 1), (old, old))
    assert first.readiness((True, "ready"))[1].startswith("worker 1 of 2 has not reported for")


def test_a_shared_listener_keeps_its_queue_where_reuseport_resets_it():
    """Why the workers share one socket: closing one SO_REUSEPORT listener resets the connections queued on it."""

    def queued_answers(listeners: list[socket.socket], close: socket.socket, port: int) -> list[str]:
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
        for c in clients:
            c.sendall(b"ping")
        close.close()
        outcomes = []
        for listener in listeners:
            if listener is close:
                continue
            listener.setblocking(False)
            try:
                while True:
                    conn, _ = listener.accept()
                    conn.sendall(b"pong")
                    conn.close()
            except BlockingIOError:
                pass
        for c in clients:
            c.settimeout(2)
            try:
                outcomes.append("answered" if c.recv(4) == b"pong" else "closed")
            except ConnectionResetError:
                outcomes.append("reset")
            c.close()
        return outcomes

    shared = socket.create_server(("127.0.0.1", 0), backlog=64)
    port = shared.getsockname()[1]
    copy = socket.socket(fileno=os.dup(shared.fileno()))  # what each worker holds
    assert queued_answers([shared, copy], copy, port) == ["answered"] * 16
    shared.close()

    first = socket.create_server(("127.0.0.1", 0), backlog=64, reuse_port=True)
    port = first.getsockname()[1]
    second = socket.create_server(("127.0.0.1", port), backlog=64, reuse_port=True)
    outcomes = queued_answers([first, second], first, port)
    second.close()
    assert "reset" in outcomes  # the kernel hashed some connections to the closed listener


def test_errors_keep_their_shape_on_every_worker(group):
    def answers(body: dict) -> set[tuple[int, str]]:
        seen = set()
        for _ in range(20):  # fresh connections: both workers answer some
            r = httpx.post(f"{group.url}/v1/text/classify", json=body)
            seen.add((r.status_code, r.json()["code"]))
        return seen

    assert answers({"texts": []}) == {(422, "invalid_input")}
    assert answers({"texts": ["hi"], "model": "nope"}) == {(404, "model_not_found")}
