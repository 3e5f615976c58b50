"""What one app instance holds: settings, metrics, registry, data plane, and its start/stop lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from fastapi import Request

from service.auth import local_management_allowed
from service.batcher import Arrivals
from service.dataplane import Dataplane
from service.errors import AxonError, GpuUnavailable, ManyWorkers, RepositoryMissing
from service.lifecycle import Lifecycle
from service.loader import Loader
from service.metrics import Metrics
from service.registry import ModelRegistry, ModelState
from service.settings import Settings
from service.statistics import Statistics
from service.workers import Peers

log = logging.getLogger("axon.state")


class AxonState:
    """The per-app objects routes reach through `request.app.state.axon`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.arrivals = Arrivals()
        self.registry = ModelRegistry(settings)
        self.metrics.watch_models(self.registry.ready_count)
        self.statistics = Statistics()
        self.dataplane = Dataplane(self.registry, settings, self.metrics, self.statistics)
        loader = Loader(settings, self.metrics, self.arrivals, self.statistics)
        self.lifecycle = Lifecycle(self.registry, loader, settings)
        self.loaded = False
        self.draining = False
        self.fatal: str | None = None
        self.load_task: asyncio.Task[None] | None = None
        # Set by `python -m service` so a start-up error (require_gpu without a GPU) ends the process.
        self.on_fatal: Callable[[str], None] | None = None
        # Set by `python -m service` in a worker of `AXON_WORKERS=N`: readiness then covers every worker.
        self.peers: Peers | None = None

    async def load_models(self) -> None:
        """Load the whole repository; runs in the background so liveness answers during start-up.

        A missing repository folder is fatal (issue 12): a typo or a start from another directory never
        heals by waiting, so `python -m service` exits with the reason at once instead of serving nothing
        while looking healthy; an app without that hook stays not ready with the reason.
        """
        try:
            self.lifecycle.check_root()
            await self.lifecycle.load_all()
        except (GpuUnavailable, RepositoryMissing) as exc:
            self.fatal = exc.message if isinstance(exc, RepositoryMissing) else str(exc)
            log.critical("start-up failed: %s", self.fatal)
            if self.on_fatal:
                self.on_fatal(self.fatal)
            return
        self.loaded = True
        self.lifecycle.start_polling()
        self._report()

    def _report(self) -> None:
        """Say at start-up what serves, what does not, and which task defaults nothing answers for."""
        entries = self.registry.entries()
        ready = sum(e.state is ModelState.READY for e in entries)
        root = self.lifecycle.root
        log.info("model repository %s loaded: %d of %d versions ready", root, ready, len(entries))
        if not entries:
            log.error("the model repository %s holds no model (no <name>/config.json): not ready until one loads", root)
        for task, default in self.defaults().items():
            if not default["resolved"]:
                log.warning("default %s model '%s' does not serve: %s", task, default["model"], default["reason"])
        auth = self.settings.auth
        if local_management_allowed(auth.local_management, self.settings.host):
            log.info("management API: open to requests from this machine without a token (loopback bind)")
        elif auth.management_token is None:
            log.info("management API: closed (set AXON_AUTH__MANAGEMENT_TOKEN to load and unload models)")

    def defaults(self) -> dict[str, dict[str, Any]]:
        """Each task's default model, whether the registry holds it, and if not why (for /v1/models and start-up)."""
        out: dict[str, dict[str, Any]] = {}
        for task, name in self.settings.default_models.model_dump().items():
            view: dict[str, Any] = {"model": name, "resolved": name in self.registry.names()}
            if not view["resolved"]:
                try:
                    self.registry.versions(name)
                except AxonError as exc:  # not in the repository (404) or on disk but not loaded (503)
                    view["reason"] = exc.message
            out[task] = view
        return out

    def readiness(self) -> tuple[bool, str]:
        """Whether the server takes traffic, and why not (with workers: every worker)."""
        own = self.own_readiness()
        return own if self.peers is None else self.peers.readiness(own)

    def check_single_process(self) -> None:
        """Refuse a repository load or unload under `AXON_WORKERS` > 1.

        The request reaches one worker; the others would keep serving the old model. Polling reaches all:
        each worker rescans the repository on its own and converges on what is on disk.
        """
        if self.peers is not None:
            raise ManyWorkers(
                f"loading and unloading through the API would reach 1 of {self.peers.count} worker processes;"
                " with AXON_WORKERS > 1 change the repository on disk and set AXON_REPOSITORY_POLL_INTERVAL_S"
                " (every worker rescans it)"
            )

    def tick(self) -> None:
        """Publish what other workers read: this worker's metrics and readiness (every `server.TICK_S`)."""
        if self.peers is not None:
            self.metrics.flush()
            self.peers.publish(*self.own_readiness())

    def own_readiness(self) -> tuple[bool, str]:
        """Whether this process takes traffic, and why not."""
        if self.draining:
            return False, "the server is shutting down"
        if self.fatal:
            return False, f"start-up failed: {self.fatal}"
        if not self.loaded:
            loading = sum(e.state is ModelState.LOADING for e in self.registry.entries())
            if not loading:
                return False, "scanning the model repository"
            return False, f"models are still loading ({loading} versions to go)"
        if not self.registry.entries():
            return False, f"the model repository {self.lifecycle.root} holds no model"
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
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the stop itself was cancelled, not only the load
            except Exception:
                pass  # the load failed as it was being cancelled: nothing of it is served
        await self.lifecycle.stop()


def axon(request: Request) -> AxonState:
    """The state of the app serving this request."""
    state: AxonState = request.app.state.axon
    return state
