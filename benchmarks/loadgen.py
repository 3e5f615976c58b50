"""Closed-loop HTTP load: N workers each send one request, wait for the answer, send the next.

The client shares the machine with the server, so it is kept lean: bodies are encoded once, and the load
is spread over several processes (one asyncio loop each) so the client is not the bottleneck it measures.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import statistics
import time
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Request:
    """One pre-encoded request body and its headers."""

    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class LoadResult:
    """What a load run measured: latencies of successful requests and counts."""

    latencies_s: list[float]
    errors: int
    elapsed_s: float
    items: int

    @property
    def throughput(self) -> float:
        """Items answered per second (an item is an image, a text or a row)."""
        return self.items / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, q: float) -> float:
        """Latency percentile in milliseconds."""
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    @property
    def p50_ms(self) -> float:
        return 1000 * statistics.median(self.latencies_s) if self.latencies_s else float("nan")


class _Connection:
    """A keep-alive HTTP/1.1 connection speaking just enough of the protocol for this load.

    httpx costs several hundred microseconds of client CPU per request, which on a 2-core machine is CPU
    the server under test does not get; pre-encoded requests over raw streams cost a few tens.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, wire: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(wire)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _wire(host: str, port: int, r: Request) -> bytes:
    headers = {"host": f"{host}:{port}", "content-length": str(len(r.body)), **r.headers}
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"POST {r.path} HTTP/1.1\r\n{lines}\r\n".encode() + r.body


async def _worker(
    conn: _Connection, wires: list[bytes], offset: int, stop_at: float, out: list[float], errors: list[int]
) -> None:
    i = offset
    while time.perf_counter() < stop_at:
        wire = wires[i % len(wires)]
        i += 1
        t0 = time.perf_counter()
        status = await conn.post(wire)
        if status == 200:
            out.append(time.perf_counter() - t0)
        else:
            errors.append(status)


async def _run(
    base_url: str, requests: list[Request], concurrency: int, duration_s: float, seed: int
) -> tuple[list[float], int, float]:
    url = httpx.URL(base_url)
    wires = [_wire(url.host, url.port, r) for r in requests]
    conns = [_Connection(url.host, url.port) for _ in range(concurrency)]
    try:
        # One request per connection first so connection set-up is not measured.
        await asyncio.gather(*(c.post(wires[i % len(wires)]) for i, c in enumerate(conns)))
        latencies: list[float] = []
        errors: list[int] = []
        start = time.perf_counter()
        stop_at = start + duration_s
        await asyncio.gather(
            *(_worker(c, wires, seed * 7919 + w * 31, stop_at, latencies, errors) for w, c in enumerate(conns))
        )
        return latencies, len(errors), time.perf_counter() - start
    finally:
        for c in conns:
            c.close()


def _process_main(args: tuple) -> tuple[list[float], int, float]:
    return asyncio.run(_run(*args))


def run_load(
    base_url: str,
    requests: list[Request],
    *,
    concurrency: int,
    duration_s: float,
    items_per_request: int = 1,
    processes: int = 1,
) -> LoadResult:
    """Keep `concurrency` requests in flight for `duration_s`, spread over `processes` client processes."""
    processes = max(1, min(processes, concurrency))
    shares = [concurrency // processes + (1 if p < concurrency % processes else 0) for p in range(processes)]
    jobs = [(base_url, requests, share, duration_s, p) for p, share in enumerate(shares)]
    if processes == 1:
        results = [_process_main(jobs[0])]
    else:
        with mp.get_context("spawn").Pool(processes) as pool:
            results = pool.map(_process_main, jobs)
    latencies = [lat for r in results for lat in r[0]]
    errors = sum(r[1] for r in results)
    elapsed = max(r[2] for r in results)
    return LoadResult(latencies, errors, elapsed, len(latencies) * items_per_request)
