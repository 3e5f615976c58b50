"""`AXON_WORKERS=N`: N server processes sharing one listening socket, under a small supervisor.

Why one pre-bound socket that every worker accepts from, not SO_REUSEPORT: with SO_REUSEPORT each worker
has its own accept queue, the kernel hashes each new connection to one of them, and a worker that stops
or dies takes its queue with it (the kernel resets every connection in it, requests already sent). With
one shared queue a worker that stops accepting leaves the queue to the others; a worker killed loses
only the connections it had accepted. The last process to close the socket closes the queue, and
`GracefulServer` already adopts a backlog before closing, so the single-process guarantee carries over.

Why not uvicorn's own supervisor (`uvicorn.supervisors.Multiprocess`): its children run `uvicorn.Server`
built from a config pickled into a spawned process, not `GracefulServer` with the readiness hook and the
guarded protocol; and it reports a dead worker only in a log line. Here each worker is a fresh
`python -m service` started with the socket's descriptor (`AXON_WORKER_FD`), so a worker is exactly the
single-process server, and the supervisor imports no model code.

Across workers: metrics go through prometheus-client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`),
readiness through one small status file per worker (`Peers`), and the supervisor counts restarts.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from service.settings import Settings

log = logging.getLogger("axon.workers")

# Environment a worker is started with (internal: the supervisor sets them, users do not).
FD_ENV, INDEX_ENV, DIR_ENV = "AXON_WORKER_FD", "AXON_WORKER_INDEX", "AXON_WORKER_DIR"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# A worker rewrites its status file every `server.TICK_S`; one not rewritten for STALE_S is not ready
# (hung or gone).
STALE_S = 5.0
POLL_S = 0.1
LISTEN_BACKLOG = 2048
PR_SET_PDEATHSIG = 1


@dataclass
class Peers:
    """A worker's view of the group: it publishes its own readiness and reads everyone's."""

    index: int
    count: int
    folder: Path

    @classmethod
    def from_env(cls, count: int) -> Peers | None:
        """The group this process is a worker of, or None for a single-process server."""
        if DIR_ENV not in os.environ:
            return None
        return cls(int(os.environ[INDEX_ENV]), count, Path(os.environ[DIR_ENV]))

    def listener(self) -> socket.socket:
        """The listening socket the supervisor bound and passed down."""
        return socket.socket(fileno=int(os.environ[FD_ENV]))

    def publish(self, ready: bool, reason: str) -> None:
        """Write this worker's readiness atomically (a reader never sees half a file)."""
        path = status_path(self.folder, self.index)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "ready": ready, "reason": reason}))
        os.replace(tmp, path)

    def readiness(self, own: tuple[bool, str]) -> tuple[bool, str]:
        """Ready only when this worker and every other one are; else the first reason found."""
        if not own[0]:
            return own
        if draining_path(self.folder).exists():
            # The supervisor got SIGTERM: the group stops taking traffic now, before its workers hear of it.
            return False, "the server is shutting down"
        now = time.time()
        for index in range(self.count):
            if index == self.index:
                continue
            path = status_path(self.folder, index)
            try:
                age = now - path.stat().st_mtime
                status = json.loads(path.read_text())
            except (OSError, ValueError):
                return False, f"worker {index} of {self.count} has not reported yet"
            if age > STALE_S:
                return False, f"worker {index} of {self.count} has not reported for {age:.0f} s"
            if not status["ready"]:
                return False, f"worker {index} of {self.count}: {status['reason']}"
        return True, "ready"


def draining_path(folder: Path) -> Path:
    """Written by the supervisor the moment it is signalled; every worker's readiness reads it."""
    return folder / "draining"


def status_path(folder: Path, index: int) -> Path:
    return folder / f"worker-{index}.json"


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM (a graceful drain) when the supervisor dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    was_ready: bool = False


@dataclass
class Group:
    """What the supervisor decides about its workers: replace one that died, stop on a start-up failure, and on a
    signal drop readiness across the group (a second signal goes on to the workers).

    Kept apart from the process's resources (the socket, the metrics folder) so the rules can be tried on
    workers that are not processes.
    """

    folder: Path
    start: Callable[[int], _Worker]
    forget: Callable[[_Worker], None]
    on_restart: Callable[[], None]
    workers: list[_Worker] = field(default_factory=list)
    stopping: bool = False
    restarts: int = 0

    def on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self.stopping:  # a second signal: pass it on, so workers stop waiting for running requests
            for worker in self.workers:
                if worker.proc.poll() is None:
                    worker.proc.send_signal(signal.SIGTERM)
        else:
            # Readiness turns 503 across the group at once; the workers get their SIGTERM from Supervisor._stop().
            draining_path(self.folder).touch()
        self.stopping = True

    def watch(self) -> int | None:
        """Replace every worker that has exited; an exit status when a worker cannot start at all."""
        for slot, worker in enumerate(self.workers):
            if not worker.was_ready:
                worker.was_ready = _reported_ready(self.folder, worker)
            code = worker.proc.poll()
            if code is None or self.stopping:
                continue
            how = f"signal {-code}" if code < 0 else f"status {code}"
            if not worker.was_ready and code > 0:
                # A start-up failure (missing repository, required GPU absent) repeats in every new worker.
                log.critical(
                    "worker %d (pid %d) exited with %s before it was ready: stopping",
                    worker.index,
                    worker.proc.pid,
                    how,
                )
                return code
            self.forget(worker)
            self.restarts += 1
            self.on_restart()
            log.error(
                "worker %d (pid %d) exited with %s; starting a replacement (%d restarts so far)",
                worker.index,
                worker.proc.pid,
                how,
                self.restarts,
            )
            self.workers[slot] = self.start(worker.index)
        return None


class Supervisor:
    """Binds the port, starts N workers, replaces any that dies, and drains them all on SIGTERM."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.count = settings.workers
        self.folder = Path(tempfile.mkdtemp(prefix="axon-workers-"))
        own_metrics = MULTIPROC_ENV not in os.environ
        self.metrics_dir = Path(os.environ.get(MULTIPROC_ENV) or self.folder / "metrics")
        self._remove_metrics_dir = own_metrics
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.metrics_dir.glob("*.db"):  # files of an earlier run would be summed in
            stale.unlink()
        if "prometheus_client" in sys.modules:
            raise RuntimeError("prometheus_client was imported before the supervisor set PROMETHEUS_MULTIPROC_DIR")
        os.environ[MULTIPROC_ENV] = str(self.metrics_dir)
        from prometheus_client import Counter

        restarts = Counter("axon_worker_restarts", "Worker processes that died and were replaced.", registry=None)
        self.sock = socket.create_server((settings.host, settings.port), backlog=LISTEN_BACKLOG)
        self.sock.set_inheritable(True)
        self.group = Group(self.folder, self._start, self._forget, restarts.inc)

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; the exit status is 0 when every worker drained cleanly."""
        signal.signal(signal.SIGTERM, self.group.on_signal)
        signal.signal(signal.SIGINT, self.group.on_signal)
        host, port = self.sock.getsockname()[:2]
        log.info(
            "serving %s on http://%s:%d with %d worker processes",
            self.settings.model_repository,
            host,
            port,
            self.count,
        )
        try:
            self.group.workers = [self._start(i) for i in range(self.count)]
            while not self.group.stopping:
                status = self.group.watch()
                if status is not None:
                    self._stop()
                    return status
                time.sleep(POLL_S)
            return self._stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
            if self._remove_metrics_dir:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _start(self, index: int) -> _Worker:
        fd = self.sock.fileno()
        env = os.environ | {FD_ENV: str(fd), INDEX_ENV: str(index), DIR_ENV: str(self.folder)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "service"],
            env=env,
            pass_fds=(fd,),
            # Its own process group: a terminal's Ctrl-C reaches the supervisor only, which then sends one
            # SIGTERM (a second signal would make a worker skip its drain).
            process_group=0,
            preexec_fn=_die_with_parent,
        )
        log.info("worker %d started (pid %d)", index, proc.pid)
        return _Worker(index, proc)

    def _forget(self, worker: _Worker) -> None:
        """Drop a gone worker's readiness and its live gauges (its counters stay in the totals)."""
        from prometheus_client import multiprocess

        status_path(self.folder, worker.index).unlink(missing_ok=True)
        multiprocess.mark_process_dead(worker.proc.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]

    def _stop(self) -> int:
        """SIGTERM every worker and wait: each drops readiness, drains and exits on its own."""
        # The supervisor's copy of the socket goes first, so the last worker to close its copy closes the
        # queue, right after adopting what waits in it.
        self.sock.close()
        workers = self.group.workers
        for worker in workers:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        codes = [worker.proc.wait() for worker in workers]
        for worker in workers:
            self._forget(worker)
        failed = [c for c in codes if c != 0]
        log.info("all %d workers stopped%s", len(codes), f" ({len(failed)} with errors)" if failed else "")
        return 1 if failed else 0


def _reported_ready(folder: Path, worker: _Worker) -> bool:
    try:
        status = json.loads(status_path(folder, worker.index).read_text())
    except (OSError, ValueError):
        return False
    return bool(status["pid"] == worker.proc.pid and status["ready"])
