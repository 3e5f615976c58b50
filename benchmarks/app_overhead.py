"""Axon's own per-request cost on the SMS text endpoint, without HTTP, beside the least server's.

    python benchmarks/app_overhead.py --rounds 600      # pin it to one core: taskset -c 1 python ...

Drives two ASGI apps in this process, each with the same body (one SMS text naming `sms-spam-transformer`) and
`--concurrency` requests at a time: Axon's app (`create_app` on a repository of that one model, one ONNX Runtime
thread, the server's collector tuning) and `least_text_app.py` (the ceiling's work behind a no-wait batcher,
nothing else). Each request gets a stand-in for uvicorn's request cycle (a `disconnected` flag and flow
control) so Axon takes its production path. Prints CPU microseconds per request for each and the difference:
what Axon's limits, admission, validation, request ids, metrics, deadlines and answers cost per request, with
the socket and HTTP parsing left out (`peers.py floor` measures those). Absolute figures vary between runs;
alternate `--repeat` runs to see the spread.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MODEL = "sms-spam-transformer"
BODY = (
    b'{"texts": ["Congratulations! You have won a 1000 pound prize. Call 09061701461 now to claim, T&C apply"],'
    b' "model": "sms-spam-transformer"}'
)
SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/v1/text/classify",
    "raw_path": b"/v1/text/classify",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"axon"), (b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))],
    "client": ("127.0.0.1", 1),
    "server": ("127.0.0.1", 8000),
}


class Cycle:
    """What the lean path reads of uvicorn's request cycle: the body once, a disconnect flag, flow control."""

    def __init__(self) -> None:
        self.disconnected = False
        self.flow = SimpleNamespace(resume_reading=lambda: None)
        self.read = False
        self.status = 0

    async def receive(self) -> dict[str, Any]:
        assert not self.read, "the app read past the body"
        self.read = True
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


async def per_request_us(app: Any, rounds: int, concurrency: int) -> float:
    """CPU microseconds per request over `rounds` waves of `concurrency` requests (after 20 waves of warm-up)."""

    async def one() -> None:
        cycle = Cycle()
        await app({**SCOPE, "extensions": {}, "state": {}}, cycle.receive, cycle.send)
        assert cycle.status == 200, f"the app answered {cycle.status}"

    for _ in range(20):
        await asyncio.gather(*(one() for _ in range(concurrency)))
    start = time.process_time()
    for _ in range(rounds):
        await asyncio.gather(*(one() for _ in range(concurrency)))
    return (time.process_time() - start) / (rounds * concurrency) * 1e6


async def axon_us(rounds: int, concurrency: int) -> float:
    from service.app import create_app
    from service.server import tune_collector
    from service.settings import Settings

    with tempfile.TemporaryDirectory() as repo:  # the one model the body names: a quick start, the same path
        shutil.copytree(ROOT / "models" / MODEL, Path(repo) / MODEL)
        settings = Settings(
            model_repository=Path(repo),
            providers=["CPUExecutionProvider"],
            intra_op_threads=1,
            inter_op_threads=1,
            access_log=False,
        )
        logger = logging.getLogger("axon")
        level = logger.level
        logger.setLevel(logging.ERROR)  # the task defaults are not in this repository: no warning for each
        try:
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                await app.state.axon.load_task
                tune_collector()  # as `python -m service` does before serving
                return await per_request_us(app, rounds, concurrency)
        finally:
            logger.setLevel(level)


async def least_us(rounds: int, concurrency: int) -> float:
    import least_text_app

    gc.collect()  # the same collector tuning as Axon's server, so the difference is the apps'
    gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
    return await per_request_us(least_text_app.app, rounds, concurrency)


@contextmanager
def collector_restored() -> Iterator[None]:
    """Undo the collector tuning afterwards (thresholds, frozen objects): the tests call `main` in their process."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=600)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=1, help="alternate the two apps this many times")
    a = ap.parse_args(argv)
    for _ in range(a.repeat):
        with collector_restored():
            axon = asyncio.run(axon_us(a.rounds, a.concurrency))
        with collector_restored():
            least = asyncio.run(least_us(a.rounds, a.concurrency))
        print(f"axon {axon:.1f} us/request, least {least:.1f} us/request, axon's own {axon - least:+.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
