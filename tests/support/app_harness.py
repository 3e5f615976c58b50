"""Start a real app (lifespan included) on a model repository and talk to it over httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
from fastapi import FastAPI
from PIL import Image

from service.app import create_app
from service.settings import Settings

TINY_DEFAULTS = {"vision": "digits", "text": "spam", "anomaly": "thyroid", "series": "temperature"}


def tiny_settings(root: Path, **overrides) -> Settings:
    """Settings for the tiny repository: CPU only, task defaults pointing at the tiny models.

    The child-process check of every ONNX file is off: it has its own tests, and here it would
    cost a process start per model per test.
    """
    values = {
        "model_repository": root,
        "providers": ["CPUExecutionProvider"],
        "default_models": TINY_DEFAULTS,
        "warmup_runs": 1,
        "access_log": False,
        "validate_models": False,
    }
    return Settings(**(values | overrides))


@asynccontextmanager
async def serving(settings: Settings, wait_ready: bool = True) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan running (models loaded unless wait_ready=False) and a client bound to it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        if wait_ready:
            await app.state.axon.load_task
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://axon.test", timeout=30) as client:
            yield app, client


def png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    """Encode a uint8 (H, W) or (H, W, 3) array as an image file."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt)
    return buf.getvalue()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 if absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric_name, _, label_part = head.partition("{")
        if metric_name != name:
            continue
        found = dict(p.split("=", 1) for p in label_part.rstrip("}").split(",") if p)
        if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            return float(value)
    return 0.0


async def until(check: Callable[[], bool], timeout_s: float = 10.0, what: str = "the condition") -> None:
    """Poll `check` until it holds; fail once `timeout_s` has passed on the monotonic clock (no fixed sleeps)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s} s")
        await asyncio.sleep(0.01)
