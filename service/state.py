"""What one app instance holds: settings, metrics, registry, data plane, and its start/stop lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastapi import Request

from service.batcher import Arrivals
from service.dataplane import Dataplane
from service.errors import GpuUnavailable
from service.lifecycle import Lifecycle
from service.loader import Loader
from service.metrics import Metrics
from service.registry import ModelRegistry, ModelState
from service.settings import Settings

log = logging.getLogger("axon.state")


class AxonState:
    """The per-app objects routes reach through `request.app.state.axon`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.arrivals = Arrivals()
        self.registry = ModelRegistry(settings)
        self.metrics.models_loaded.set_function(self.registry.ready_count)
        self.dataplane = Dataplane(self.registry, settings, self.metrics)
        self.lifecycle = Lifecycle(self.registry, Loader(settings, self.metrics, self.arrivals), settings)
        self.loaded = False
        self.draining = False
        self.fatal: str | None = None
        self.load_task: asyncio.Task | None = None
        # Set by `python -m service` so a start-up error (require_gpu without a GPU) ends the process.
        self.on_fatal: Callable[[str], None] | None = None

    async def load_models(self) -> None:
        """Load the whole repository; runs in the background so liveness answers during start-up."""
        try:
            await self.lifecycle.load_all()
        except GpuUnavailable as exc:
            self.fatal = str(exc)
            log.critical("start-up failed: %s", exc)
            if self.on_fatal:
                self.on_fatal(self.fatal)
            return
        self.loaded = True
        self.lifecycle.start_polling()
        ready = sum(e.state is ModelState.READY for e in self.registry.entries())
        log.info("model repository loaded: %d of %d versions ready", ready, len(self.registry.entries()))

    def readiness(self) -> tuple[bool, str]:
        """Whether the server takes traffic, and why not."""
        if self.draining:
            return False, "the server is shutting down"
        if self.fatal:
            return False, f"start-up failed: {self.fatal}"
        if not self.loaded:
            loading = sum(e.state is ModelState.LOADING for e in self.registry.entries())
            if not loading:
                return False, "scanning the model repository"
            return False, f"models are still loading ({loading} versions to go)"
        if self.settings.strict_readiness and not self.registry.all_ready():
            bad = [e.label for e in self.registry.entries() if e.state is not ModelState.READY]
            return False, f"not every model is ready: {', '.join(bad)}"
        return True, "ready"

    async def stop(self) -> None:
        """Stop taking work, cancel a load still running, and drain every batcher."""
        self.draining = True
        # The start-up load goes first, so nothing it builds lands in the table after the drain below.
        if self.load_task is not None and not self.load_task.done():
            self.load_task.cancel()
            try:
                await self.load_task
            except (asyncio.CancelledError, Exception):
                pass
        await self.lifecycle.stop()


def axon(request: Request) -> AxonState:
    """The state of the app serving this request."""
    return request.app.state.axon
