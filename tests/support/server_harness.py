"""A real `python -m service` process on 127.0.0.1 and raw-socket helpers, for the server tests."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.tiny_models import build_repository

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    port: int
    proc: subprocess.Popen
    log: Path

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def request(self, raw: bytes, timeout: float = 5.0) -> bytes:
        """Send one raw request on a fresh connection and read until the server closes or answers."""
        with self.connect(timeout) as s:
            s.sendall(raw)
            return read_answer(s, timeout)


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


def post(path: str, body: bytes, extra: str = "") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def read_answer(s: socket.socket, timeout: float = 5.0) -> bytes:
    """Bytes of one answer: up to its Content-Length, or until EOF; b"" if the server just closed."""
    s.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            raise
        if not chunk:
            return data
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            if length and len(body) >= int(length[0].split(b":")[1]):
                return data
    raise TimeoutError(f"no complete answer within {timeout} s (got {data[:80]!r})")


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def closed_within(s: socket.socket, timeout: float) -> bytes | None:
    """Everything the server sent before closing, or None if it was still open after `timeout`."""
    s.settimeout(0.05)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    return None


def wait_ready(served: Served, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert served.proc.poll() is None, f"server exited during start-up:\n{served.log.read_text()[-2000:]}"
        try:
            if status(served.request(get("/v2/health/ready"), timeout=2)) == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("server never became ready")


@contextlib.contextmanager
def running_server(tmp: Path, nofile: tuple[int, int] | None = None, **env: str) -> Iterator[Served]:
    """`python -m service` on the tiny repository with extra `AXON_*` settings; killed on exit if still up.

    `nofile` starts it under that (soft, hard) open-file limit.
    """
    repo = build_repository(tmp / "models")
    port = free_port()
    full_env = os.environ | {
        "AXON_PORT": str(port),
        "AXON_MODEL_REPOSITORY": str(repo),
        "AXON_PROVIDERS": "CPUExecutionProvider",
        "AXON_DEFAULT_MODELS__TEXT": "spam",
        "AXON_DEFAULT_MODELS__SERIES": "temperature",
        "AXON_VALIDATE_MODELS": "false",
        "AXON_ACCESS_LOG": "false",
        **env,
    }
    log_path = tmp / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile)) if nofile else None,
        )
    served = Served(port, proc, log_path)
    try:
        wait_ready(served)
        yield served
    finally:
        if proc.poll() is None:
            proc.terminate()  # a supervisor of AXON_WORKERS cleans up its workers and files on SIGTERM
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait()


def read_answers(s: socket.socket, count: int, timeout: float = 5.0) -> list[tuple[int, dict[str, str], bytes]]:
    """Status, headers and body of `count` answers arriving back to back on one connection (pipelining)."""
    s.settimeout(timeout)
    answers = []
    with s.makefile("rb") as f:
        for _ in range(count):
            status_line = f.readline()
            headers = {}
            while (line := f.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            answers.append((status(status_line), headers, f.read(int(headers.get("content-length", 0)))))
    return answers
