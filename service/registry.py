"""The table of model versions requests resolve: their state, session, codec and batcher.

Discovery (`repository`) says what is on disk, `loader` builds a servable version, `lifecycle`
decides what is installed and retired; this module only holds the result and answers lookups. A
version that failed stays in the table as `unavailable` with its reason so clients see why.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

import onnxruntime as ort

from modelrepo.config import ModelConfig
from modelrepo.layout import is_model_dir
from service.batcher import Batcher, BatchPolicy
from service.errors import ModelNotFound, ModelNotReady, VersionNotFound
from service.runtime import Instance
from service.settings import Settings

if TYPE_CHECKING:
    from service.tasks.base import Codec  # task modules type their jobs with ModelVersion

# What a client is told to wait before asking again for a model that is loading, reloading or unloaded.
RETRY_AFTER_S = "2"


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
    session: ort.InferenceSession | None = None  # the first instance's
    instances: list[Instance] = field(default_factory=list)
    codec: Codec | None = None
    batcher: Batcher | None = None
    holders: int = 0
    _released: asyncio.Event | None = field(default=None, repr=False)

    def hold(self) -> _Hold:
        """Keep this version's batcher open while a request that resolved it is on its way to an answer."""
        return _Hold(self)

    def release(self) -> None:
        """End one hold."""
        self.holders -= 1
        if not self.holders and self._released is not None:
            self._released.set()

    async def released(self) -> None:
        """Return once no request holds this version (a reload retires it only then)."""
        while self.holders:
            self._released = asyncio.Event()
            await self._released.wait()

    @functools.cached_property
    def label(self) -> str:
        """How messages name this version (made once: every request's checks pass it along)."""
        return f"model '{self.name}'" + (f" version {self.version}" if self.version is not None else "")


class _Hold:
    """One request's hold on a version (a class, not `@contextmanager`: every request takes one)."""

    __slots__ = ("entry",)

    def __init__(self, entry: ModelVersion) -> None:
        self.entry = entry

    def __enter__(self) -> None:
        self.entry.holders += 1

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.entry.release()


Number = TypeVar("Number", int, float)


def newest_first(version: int | None) -> int:
    """Sort key: versions descending, a config-less entry (no version) last."""
    return 1 if version is None else -version


def batch_policy(config: ModelConfig, settings: Settings) -> BatchPolicy:
    """The model's own batching knobs, with any override from settings applied."""

    def pick(override: Number | None, own: Number) -> Number:
        return own if override is None else override

    batches = config.max_batch_size > 0  # 0: the model has no batch axis (Triton's rule), whatever settings say
    return BatchPolicy(
        max_batch_size=pick(settings.max_batch_size, config.max_batch_size) if batches else 0,
        max_delay_s=pick(settings.max_delay_ms, config.dynamic_batching.max_queue_delay_ms) / 1000.0,
        max_queue_size=pick(settings.max_queue_size, config.dynamic_batching.max_queue_size),
        enabled=settings.batching_enabled and batches,
        max_pad_ratio=settings.max_pad_ratio,
    )


class ModelRegistry:
    """The table of versions requests resolve: `get` finds one, `install` and `remove` change it.

    It builds and drains nothing: `service.loader` does that, and `service.lifecycle` decides what
    goes in and out. A name missing from the table whose folder the repository holds (unloaded,
    or not loaded yet) is *not ready* (503 with Retry-After), not unknown (404).
    """

    def __init__(self, settings: Settings) -> None:
        self.root = Path(settings.model_repository)
        self._models: dict[str, dict[int | None, ModelVersion]] = {}
        # Each model's versions newest first, kept in step with `_models`: every request looks one up.
        self._newest_first: dict[str, list[ModelVersion]] = {}

    def entries(self) -> list[ModelVersion]:
        """Every version in the table, by model name then newest version first."""
        return [e for name in sorted(self._models) for e in self.versions(name)]

    def names(self) -> list[str]:
        """Names of every model in the table."""
        return sorted(self._models)

    def versions(self, name: str) -> list[ModelVersion]:
        """The versions of one model, newest first.

        Raises ModelNotReady if the repository holds the model unloaded, else ModelNotFound.
        """
        entries = self._newest_first.get(name)
        if entries is not None:
            return list(entries)
        return self._missing(name)

    def _missing(self, name: str) -> NoReturn:
        """Raise the error for a model with no version in the table."""
        if is_model_dir(self.root, name):
            raise ModelNotReady(
                f"model '{name}' has a folder in the repository but is not loaded: load it with "
                f"POST /v2/repository/models/{name}/load, or set AXON_REPOSITORY_POLL_INTERVAL_S",
                headers={"Retry-After": RETRY_AFTER_S},
            )
        raise ModelNotFound(f"model '{name}' is not in the repository")

    def _sort(self, name: str) -> None:
        table = self._models.get(name)
        if table:
            order = sorted(table.values(), key=lambda e: newest_first(e.version))
            self._newest_first[name] = order
        else:
            self._newest_first.pop(name, None)

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        """The ready version asked for, or the newest ready one; 404 or 503 errors name the reason."""
        entries = self._newest_first.get(name) or self._missing(name)
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
            # Loading comes to an end by itself; an unavailable version may come back with a reload.
            raise ModelNotReady(f"{entry.label} is {entry.state.value}{why}", headers={"Retry-After": RETRY_AFTER_S})
        return entry

    def all_ready(self) -> bool:
        """True when no version is loading or unavailable."""
        return all(e.state is ModelState.READY for e in self.entries())

    def ready_count(self) -> int:
        """How many versions serve."""
        return sum(e.state is ModelState.READY for e in self.entries())

    def table(self, name: str) -> dict[int | None, ModelVersion]:
        """A copy of one model's version table (empty if it has none)."""
        return dict(self._models.get(name, {}))

    def install(self, entry: ModelVersion) -> None:
        """Put a version in the table (replacing that version's entry); new requests find it at once."""
        self._models.setdefault(entry.name, {})[entry.version] = entry
        self._sort(entry.name)

    def remove(self, name: str, version: int | None) -> ModelVersion | None:
        """Take one version out of the table (new requests no longer find it); the caller retires it."""
        table = self._models.get(name, {})
        entry = table.pop(version, None)
        if not table:
            self._models.pop(name, None)
        self._sort(name)
        return entry

    def remove_model(self, name: str) -> list[ModelVersion]:
        """Take every version of a model out of the table; the caller retires them."""
        entries = list(self._models.pop(name, {}).values())
        self._sort(name)
        return entries

    def remove_all(self) -> list[ModelVersion]:
        """Empty the table (shutdown); the caller retires what it returns."""
        out = self.entries()
        self._models.clear()
        self._newest_first.clear()
        return out
