"""The table of model versions the process knows: their state, session, codec and batcher.

Discovery (`repository`) says what is on disk; the registry loads it: one ONNX Runtime session per
version, warmed up in a worker thread, then a batcher started on the event loop. A version that
fails is kept in the table as `unavailable` with its reason so clients and operators see why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import onnxruntime as ort

from service.batcher import Arrivals, Batcher, BatchPolicy
from service.errors import ModelNotFound, ModelNotReady, VersionNotFound
from service.metrics import Metrics
from service.model_config import ModelConfig
from service.preprocessing import Codec, TextCodec, build_codec
from service.repository import ModelDescriptor, discover
from service.runtime import GpuUnavailable, SessionFactory, session_runner, warm_up, warmup_batch_sizes
from service.settings import GPU_PROVIDERS, Settings

log = logging.getLogger("axon.registry")


class ModelState(StrEnum):
    """Lifecycle of one model version."""

    LOADING = "loading"
    READY = "ready"
    UNAVAILABLE = "unavailable"


@dataclass(eq=False)
class ModelVersion:
    """One version in the table; `version` is None for a model whose config could not even be read."""

    name: str
    version: int | None
    path: Path
    config: ModelConfig | None
    state: ModelState = ModelState.LOADING
    reason: str | None = None
    providers: list[str] = field(default_factory=list)
    session: ort.InferenceSession | None = None
    codec: Codec | None = None
    batcher: Batcher | None = None
    holders: int = 0
    _released: asyncio.Event | None = field(default=None, repr=False)

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep this version's batcher open while a request that resolved it is on its way to an answer."""
        self.holders += 1
        try:
            yield
        finally:
            self.holders -= 1
            if not self.holders and self._released is not None:
                self._released.set()

    async def released(self) -> None:
        """Return once no request holds this version (a reload retires it only then)."""
        while self.holders:
            self._released = asyncio.Event()
            await self._released.wait()

    @property
    def label(self) -> str:
        """How messages name this version."""
        return f"model '{self.name}'" + (f" version {self.version}" if self.version is not None else "")


def batch_policy(config: ModelConfig, settings: Settings) -> BatchPolicy:
    """The model's own batching knobs, with any override from settings applied."""

    def pick(override, own):
        return own if override is None else override

    return BatchPolicy(
        max_batch_size=pick(settings.max_batch_size, config.max_batch_size),
        max_delay_s=pick(settings.max_delay_ms, config.dynamic_batching.max_queue_delay_ms) / 1000.0,
        max_queue_size=pick(settings.max_queue_size, config.dynamic_batching.max_queue_size),
        enabled=settings.batching_enabled,
        max_pad_ratio=settings.max_pad_ratio,
    )


def _check_tensors(session: ort.InferenceSession, config: ModelConfig) -> None:
    """The ONNX graph must have the tensors config.json promises; clients rely on those names."""
    have_in = {i.name for i in session.get_inputs()}
    have_out = {o.name for o in session.get_outputs()}
    want_in = {t.name for t in config.inputs}
    want_out = {t.name for t in config.outputs}
    if want_in != have_in or not want_out <= have_out:
        raise ValueError(
            f"model.onnx has inputs {sorted(have_in)} and outputs {sorted(have_out)}; "
            f"config.json declares inputs {sorted(want_in)} and outputs {sorted(want_out)}"
        )


class ModelRegistry:
    """Loads, serves and unloads model versions; `get` finds the version a request should use."""

    def __init__(self, settings: Settings, metrics: Metrics, arrivals: Arrivals) -> None:
        self.settings = settings
        self._metrics = metrics
        self._arrivals = arrivals
        self._models: dict[str, dict[int | None, ModelVersion]] = {}
        self._factory: SessionFactory | None = None
        # Set by service.lifecycle: checks a version's ONNX file in a child process before it is opened here.
        self.validator: Callable[[ModelDescriptor], Awaitable[str | None]] | None = None
        self._scanned = False
        metrics.models_loaded.set_function(lambda: sum(e.state is ModelState.READY for e in self.entries()))

    def entries(self) -> list[ModelVersion]:
        """Every version in the table, by model name then newest version first."""
        return [e for name in sorted(self._models) for e in self._models[name].values()]

    def names(self) -> list[str]:
        """Names of every model in the table."""
        return sorted(self._models)

    def versions(self, name: str) -> list[ModelVersion]:
        """The versions of one model, newest first (raises ModelNotFound)."""
        if name not in self._models:
            if not self._scanned:
                raise ModelNotReady(f"model '{name}' is not loaded yet: the model repository is still being scanned")
            raise ModelNotFound(f"model '{name}' is not in the repository")
        return sorted(self._models[name].values(), key=lambda e: -1 if e.version is None else e.version, reverse=True)

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        """The ready version asked for, or the newest ready one; 404 or 503 errors name the reason."""
        entries = self.versions(name)
        if version is None:
            for entry in entries:
                if entry.state is ModelState.READY:
                    return entry
            entry = entries[0]
        else:
            found = [e for e in entries if e.version == version]
            if not found:
                raise VersionNotFound(f"model '{name}' has no version {version}")
            entry = found[0]
        if entry.state is not ModelState.READY:
            why = f": {entry.reason}" if entry.reason else ""
            raise ModelNotReady(f"{entry.label} is {entry.state.value}{why}")
        return entry

    def all_ready(self) -> bool:
        """True when no version is loading or unavailable."""
        return all(e.state is ModelState.READY for e in self.entries())

    def any_loading(self) -> bool:
        """True while some version is still loading."""
        return any(e.state is ModelState.LOADING for e in self.entries())

    async def load_all(self) -> None:
        """Discover the repository and load every model in it, one after the other."""
        descriptors = discover(self.settings.model_repository)
        names = list(dict.fromkeys(d.name for d in descriptors))
        # Put every model in the table as loading first, so /v1/models shows the whole plan at once.
        for d in descriptors:
            self._models.setdefault(d.name, {})[d.version] = ModelVersion(d.name, d.version, d.path, d.config)
        self._scanned = True
        for name in names:
            await self._load_descriptors(name, [d for d in descriptors if d.name == name])

    async def unload(self, name: str) -> None:
        """Take every version of a model out of service, letting queued requests finish first."""
        for entry in self._models.pop(name, {}).values():
            await self._retire(entry)

    async def stop(self) -> None:
        """Drain every batcher (queued and running requests finish) before the process exits."""
        await asyncio.gather(*(self._retire(e) for e in self.entries()))

    async def _load_descriptors(self, name: str, descriptors: list[ModelDescriptor]) -> list[ModelVersion]:
        table = self._models.setdefault(name, {})
        loaded = []
        for d in descriptors:
            entry = await self._load_version(d)
            old = table.get(d.version)
            table[d.version] = entry
            if old is not None and old is not entry:
                await self._retire(old)
            loaded.append(entry)
        wanted = {d.version for d in descriptors}
        for version in [v for v in table if v not in wanted]:
            await self._retire(table.pop(version))
        return loaded

    async def _load_version(self, d: ModelDescriptor) -> ModelVersion:
        entry = ModelVersion(d.name, d.version, d.path, d.config)
        if d.error is not None:
            return self._unavailable(entry, d.error)
        if self.validator is not None:
            problem = await self.validator(d)
            if problem is not None:
                return self._unavailable(entry, problem)
        try:
            await asyncio.to_thread(self._build, entry)
        except GpuUnavailable:
            raise
        except Exception as exc:  # a broken model must not stop the others
            return self._unavailable(entry, f"{type(exc).__name__}: {exc}")
        assert entry.config is not None and entry.session is not None
        policy = batch_policy(entry.config, self.settings)
        pads = entry.codec.pad_values if isinstance(entry.codec, TextCodec) else {}
        entry.batcher = Batcher(
            session_runner(entry.session), policy, name=entry.label, pad_values=pads, arrivals=self._arrivals,
            on_batch=self._metrics.batch_observer(d.name, d.version or 0),
        )
        entry.batcher.start()
        self._metrics.watch_queue(d.name, d.version or 0, lambda b=entry.batcher: b.queued_rows)
        entry.state = ModelState.READY
        log.info("%s ready on %s (batching %s)", entry.label, ", ".join(entry.providers), policy)
        return entry

    def _build(self, entry: ModelVersion) -> None:
        """Session, codec and warm-up: the blocking part of a load, run in a worker thread."""
        assert entry.config is not None
        if self._factory is None:
            self._factory = SessionFactory(self.settings)
        session = self._factory.create(entry.path / "model.onnx")
        _check_tensors(session, entry.config)
        entry.codec = build_codec(entry.config, entry.path, self.settings.limits)
        entry.providers = session.get_providers()
        on_gpu = any(p in GPU_PROVIDERS for p in entry.providers)
        policy = batch_policy(entry.config, self.settings)
        warm_up(session, warmup_batch_sizes(policy.max_batch_size, on_gpu), self.settings.warmup_runs)
        entry.session = session

    def _unavailable(self, entry: ModelVersion, reason: str) -> ModelVersion:
        # Reasons reach clients: name files relative to the repository, not by their server path.
        root = Path(self.settings.model_repository)
        for prefix in {str(root.resolve()), str(root)}:
            reason = reason.replace(prefix + "/", "")
        entry.state = ModelState.UNAVAILABLE
        entry.reason = reason
        log.error("%s is unavailable: %s", entry.label, reason)
        return entry

    # --- hooks for service.lifecycle, which swaps versions in and out without dropping requests ---

    def table(self, name: str) -> dict[int | None, ModelVersion]:
        """The live version table of one model (an unlisted empty one if unknown: add entries with `install`)."""
        return self._models.get(name, {})

    def install(self, entry: ModelVersion) -> None:
        """Put a version in the table (replacing that version's entry); new requests find it at once."""
        self._models.setdefault(entry.name, {})[entry.version] = entry

    async def start_version(self, d: ModelDescriptor) -> ModelVersion:
        """Validate, build, warm up and start a version without putting it in the table."""
        return await self._load_version(d)

    async def retire(self, entry: ModelVersion) -> None:
        """Drain and close a version that is no longer in the table."""
        await self._retire(entry)

    async def _retire(self, entry: ModelVersion) -> None:
        # New requests are refused from here on; those already queued still finish below.
        if entry.state is not ModelState.UNAVAILABLE:
            entry.state, entry.reason = ModelState.UNAVAILABLE, "unloaded"
        # Requests that resolved this version before it left the table still get to queue on it.
        await entry.released()
        if entry.batcher is not None:
            await entry.batcher.stop()
            self._metrics.forget_version(entry.name, entry.version or 0)
        entry.session = None
