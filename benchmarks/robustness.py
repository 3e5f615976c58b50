"""Drive a real `python -m service` with slow and abusive clients and print a table of what it withstood.

Only 127.0.0.1, bounded in connections and seconds (a few minutes in all); long, so kept out of the tests:

    python benchmarks/robustness.py                      # the default models in ./models
    python benchmarks/robustness.py --cases slow_headers sigterm

The fd-limit cases start the server under `ulimit -n 1024` (soft and hard), the common default.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEXT_BODY = json.dumps({"texts": ["free entry in a weekly competition to win cash now"]}).encode()
Row = tuple[str, str, str]


def post(path: str, body: bytes, close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(repository: Path, nofile: int | None = None, **env: str):
    """A `python -m service` process; yields (port, process); killed if still running at the end."""
    port = free_port()
    full_env = os.environ | {
        "AXON_PORT": str(port),
        "AXON_MODEL_REPOSITORY": str(repository),
        "AXON_ACCESS_LOG": "false",
        "AXON_PROVIDERS": "CPUExecutionProvider",
        "AXON_LOG_LEVEL": "warning",
        **env,
    }

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,
        )
        try:
            deadline = time.monotonic() + 120
            while asyncio.run(status_of(port, get("/v2/health/ready"), 2)) != 200:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"server did not start:\n{log.read().decode()[-3000:]}")
                time.sleep(0.1)
            yield port, proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one answer (Content-Length framed); (0, b"") if the connection ended first."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return 0, b""
    lines = head.split(b"\r\n")
    length = next((int(h.split(b":")[1]) for h in lines if h.lower().startswith(b"content-length:")), 0)
    body = await reader.readexactly(length) if length else b""
    return int(lines[0].split(b" ")[1]), body


async def status_of(port: int, raw: bytes, timeout: float) -> int:
    """Status of one request on a fresh connection; 0 on any failure (refused, reset, timeout)."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(raw)
                return (await read_answer(reader))[0]
            finally:
                writer.close()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return 0


async def first_success(port: int, start: float, limit_s: float) -> float | None:
    """Seconds from `start` until a normal client's request is answered 200 (None: never within limit)."""
    while time.monotonic() - start < limit_s:
        if await status_of(port, get("/v2/health/live"), 2.0) == 200:
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    return None


async def closed_by(conns: list, deadline: float) -> int:
    """How many of these connections the server has closed by `deadline` (monotonic)."""

    async def one(reader: asyncio.StreamReader) -> bool:
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                while await reader.read(65536):
                    pass
            return True
        except TimeoutError:
            return False
        except OSError:
            return True

    return sum(await asyncio.gather(*(one(r) for r, _ in conns)))


async def open_many(port: int, n: int, first_bytes: bytes) -> list:
    conns = []
    for _ in range(n):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(first_bytes)
            conns.append((reader, writer))
        except OSError:
            pass
    return conns


def close_all(conns: list) -> None:
    for _, writer in conns:
        writer.transport.abort()


# Cases ------------------------------------------------------------------------------------------------
def slow(repository: Path, label: str, first_bytes: bytes) -> list[Row]:
    async def run(port: int) -> list[Row]:
        start = time.monotonic()
        conns = await open_many(port, 1100, first_bytes)
        through = await first_success(port, start, 30)
        closed = await closed_by(conns, start + 15)
        close_all(conns)
        return [
            (label, "normal client answered after", f"{through:.1f} s" if through is not None else "never (30 s)"),
            (label, "slow sockets closed within 15 s", f"{closed} of {len(conns)}"),
        ]

    with server(repository, nofile=1024) as (port, _):
        return asyncio.run(run(port))


def slow_headers(repository: Path) -> list[Row]:
    return slow(repository, "1,100 trickling heads, ulimit -n 1024", b"POST /v1/text/classify HTTP/1.1\r\nHost: t\r\n")


def slow_bodies(repository: Path) -> list[Row]:
    return slow(repository, "1,100 trickling bodies, ulimit -n 1024", post("/v1/text/classify", TEXT_BODY)[:-10])


def big_heads(repository: Path) -> list[Row]:
    async def run(port: int) -> list[Row]:
        rows = []
        many = b"".join(b"X-%d: v\r\n" % i for i in range(10_000))
        for label, raw in (
            ("one 8 MB header", b"GET /v2/health/live HTTP/1.1\r\nX-Big: " + b"a" * 8_000_000 + b"\r\n\r\n"),
            ("10,000 headers", b"GET /v2/health/live HTTP/1.1\r\n" + many + b"\r\n"),
        ):
            start = time.monotonic()
            code = await status_of(port, raw, 10)
            rows.append((label, "answer", f"{code or 'closed/reset'} in {time.monotonic() - start:.2f} s"))
        return rows

    with server(repository) as (port, _):
        return asyncio.run(run(port))


def keep_alive(repository: Path) -> list[Row]:
    async def run(port: int) -> list[Row]:
        conns = await open_many(port, 2000, get("/v2/health/live"))
        answers = await asyncio.gather(*(read_answer(r) for r, _ in conns))
        answered = time.monotonic()
        ok = sum(code == 200 for code, _ in answers)
        closed = await closed_by(conns, answered + 8)
        close_all(conns)
        label = "2,000 kept-alive idle connections, keep-alive 5 s"
        return [(label, "closed 8 s after their answer", f"{closed} of {ok} answered")]

    with server(repository) as (port, _):
        return asyncio.run(run(port))


def sigterm(repository: Path, delay: str) -> list[Row]:
    label = f"SIGTERM, 100 requests sent on fresh connections, delay {delay} s"

    async def run(port: int, proc: subprocess.Popen) -> list[Row]:
        conns = await open_many(port, 100, post("/v1/text/classify", TEXT_BODY))
        await asyncio.sleep(0.05)  # the bytes are on their way; many connections still sit in the backlog
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        probes: list[int] = []

        async def probe_readiness() -> None:
            while proc.poll() is None and time.monotonic() - sent < 10:
                probes.append(await status_of(port, get("/v2/health/ready"), 1))
                await asyncio.sleep(0.05)

        probing = asyncio.create_task(probe_readiness())
        answers = await asyncio.gather(*(read_answer(r) for r, _ in conns))
        close_all(conns)
        while proc.poll() is None and time.monotonic() - sent < 40:
            await asyncio.sleep(0.05)
        exited = time.monotonic() - sent
        await probing
        ok = sum(code == 200 for code, _ in answers)
        return [
            (label, "answered 200 / lost", f"{ok} / {len(answers) - ok}"),
            (label, "readiness 503 seen / exit after", f"{'yes' if 503 in probes else 'no'} / {exited:.1f} s"),
        ]

    with server(repository, AXON_SHUTDOWN_DELAY_S=delay) as (port, proc):
        return asyncio.run(run(port, proc))


async def closed_loop(port: int, clients: int, seconds: float) -> tuple[int, list[float], int, int]:
    """`clients` workers each on its own connection: 200 count, their latencies, 429 count, other count."""
    body = post("/v1/text/classify", TEXT_BODY)
    ok: list[float] = []
    counts = {"429": 0, "other": 0}
    end = time.monotonic() + seconds

    async def worker() -> None:
        conn = None
        while time.monotonic() < end:
            try:
                if conn is None:
                    conn = await asyncio.open_connection("127.0.0.1", port)
                start = time.monotonic()
                conn[1].write(body)
                async with asyncio.timeout(30):
                    code, _ = await read_answer(conn[0])
            except (OSError, TimeoutError):
                code = 0
            if code == 200:
                ok.append(time.monotonic() - start)
            elif code == 429:
                counts["429"] += 1
            else:
                counts["other"] += 1
            if code != 200 and conn is not None:  # refused or broken: start afresh
                conn[1].transport.abort()
                conn = None
        if conn is not None:
            conn[1].transport.abort()

    await asyncio.gather(*(worker() for _ in range(clients)))
    return len(ok), ok, counts["429"], counts["other"]


def overload(repository: Path) -> list[Row]:
    """Saturation: the fewest clients that reach 90% of the best goodput of a short sweep; then 10x that."""

    async def run(port: int) -> list[Row]:
        sweep = {}
        for clients in (4, 16, 64):
            sweep[clients] = (await closed_loop(port, clients, 4.0))[0] / 4.0
        best = max(sweep.values())
        saturating = min(c for c, g in sweep.items() if g >= 0.9 * best)
        rows = []
        for clients in (saturating, min(10 * saturating, 1000)):
            n, latencies, refused, other = await closed_loop(port, clients, 8.0)
            goodput = n / 8.0
            p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) > 100 else float("nan")
            label = f"text classify, {clients} closed-loop clients"
            rows.append((label, "goodput / share of saturation", f"{goodput:.0f}/s / {goodput / best:.0%}"))
            rows.append((label, "p99 of admitted / 429 / other", f"{p99 * 1000:.0f} ms / {refused} / {other}"))
        return rows

    with server(repository) as (port, _):
        return asyncio.run(run(port))


def big_bodies(repository: Path) -> list[Row]:
    async def run(port: int) -> list[Row]:
        rows = []
        cases = (
            (
                "1,000,000-item texts (2 MB)",
                "/v1/text/classify",
                b'{"texts": [' + b",".join([b"1"] * 1_000_000) + b"]}",
            ),
            ("150,000-deep JSON to V2 infer", "/v2/models/sms-spam-transformer/infer", b"[" * 150_000 + b"]" * 150_000),
        )
        for label, path, body in cases:
            worst = 0.0
            done = asyncio.Event()

            async def live(done: asyncio.Event) -> None:
                nonlocal worst
                while not done.is_set():
                    start = time.monotonic()
                    await status_of(port, get("/v2/health/live"), 30)
                    worst = max(worst, time.monotonic() - start)
                    await asyncio.sleep(0.05)

            probe = asyncio.create_task(live(done))
            start = time.monotonic()
            code = await status_of(port, post(path, body, close=True), 60)
            took = time.monotonic() - start
            done.set()
            await probe
            rows.append((label, "answer / liveness worst", f"{code} in {took:.2f} s / {worst * 1000:.0f} ms"))
        return rows

    with server(repository) as (port, _):
        return asyncio.run(run(port))


def pipelining(repository: Path) -> list[Row]:
    """One client pipelines requests for 14 s and never reads an answer (the write timeout is 10 s)."""

    def rss_mb(pid: int) -> float:
        return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024

    with server(repository) as (port, proc):
        before = rss_mb(proc.pid)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        stream, sent, peak, dropped = get("/v2/health/live") * 100, 0, before, None
        start = time.monotonic()
        while time.monotonic() - start < 14 and dropped is None:
            try:
                sent += s.send(stream[sent % len(stream) :])
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                dropped = time.monotonic() - start
            peak = max(peak, rss_mb(proc.pid))
        s.close()
    label = "one client pipelining for 14 s, reading nothing"
    after = f"{dropped:.1f} s" if dropped else "no"
    return [
        (label, "server RSS growth / dropped after", f"{peak - before:.0f} MiB / {after} ({sent / 1e6:.0f} MB sent)")
    ]


def protocol_cost(repository: Path) -> list[Row]:
    """CPU time per request of uvicorn's httptools protocol and of GuardedProtocol, in process (no sockets)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from service.server import GuardedProtocol, ServerConfig
    from service.settings import HttpSettings

    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    class Sink(asyncio.Transport):
        def get_extra_info(self, name, default=None):
            return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

        def write(self, data) -> None: ...
        def is_closing(self) -> bool:
            return False

        def pause_reading(self) -> None: ...
        def resume_reading(self) -> None: ...
        def get_write_buffer_size(self) -> int:
            return 0

    raw = post("/v1/text/classify", TEXT_BODY).replace(
        b"Host: t\r\n", b"Host: t\r\nUser-Agent: bench\r\nAccept: */*\r\n"
    )

    async def per_request(cls: type, n: int = 10_000) -> float:
        config = ServerConfig(app, http=HttpSettings(), max_connections=10, log_config=None, lifespan="off")
        config.load()
        protocol = cls(config=config, server_state=ServerState(), app_state={})
        protocol.connection_made(Sink())
        start = time.process_time()
        for _ in range(n):
            protocol.data_received(raw)
            await asyncio.sleep(0)
        return (time.process_time() - start) / n * 1e6

    async def run() -> list[Row]:
        stock, guarded = [], []
        for _ in range(9):
            stock.append(await per_request(HttpToolsProtocol))
            guarded.append(await per_request(GuardedProtocol))
        s, g = statistics.median(stock), statistics.median(guarded)
        label = "HTTP protocol CPU per request (8 headers)"
        return [(label, "uvicorn / guarded / added", f"{s:.1f} / {g:.1f} / {g - s:+.1f} us")]

    return asyncio.run(run())


CASES: dict[str, Callable[[Path], list[Row]]] = {
    "slow_headers": slow_headers,
    "slow_bodies": slow_bodies,
    "big_heads": big_heads,
    "keep_alive": keep_alive,
    "sigterm": lambda repo: sigterm(repo, "0") + sigterm(repo, "2"),
    "overload": overload,
    "big_bodies": big_bodies,
    "pipelining": pipelining,
    "protocol_cost": protocol_cost,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "models")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))  # the client needs > 2,000
    rows: list[Row] = []
    for name in args.cases:
        try:
            found = CASES[name](args.repository)
        except Exception as exc:  # one broken case must not hide the others' figures
            found = [(name, "failed", f"{type(exc).__name__}: {exc}"[:120])]
        rows += found
        for row in found:
            print(" | ".join(row), file=sys.stderr, flush=True)
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print("\n| case | figure | measured |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |")


if __name__ == "__main__":
    main()
