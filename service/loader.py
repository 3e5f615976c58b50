"""Building a servable version out of what discovery found, and tearing it down again: the one place that does either.

`Loader.build` turns a `ModelDescriptor` into a `ModelVersion`: the ONNX file checked in a child
process (when enabled), a session created and checked against config.json, its codec, a bounded
warm-up in a worker thread, then a batcher started on the event loop. A version that fails comes
back `unavailable` with its reason (never an exception), so one broken model never stops the
others; only a GPU that was required and is missing is raised, since it ends the process.
`Loader.retire` drains and closes a version once it has left the registry's table.

Which versions to build, when, and what replaces what is decided by `service.lifecycle` alone.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import onnxruntime as ort

from modelrepo.config import ModelConfig
from modelrepo.layout import MODEL_FILE
from service.batcher import Arrivals, Batcher
from service.errors import GpuUnavailable
from service.metrics import Metrics
from service.registry import ModelState, ModelVersion, batch_policy
from service.repository import ModelDescriptor
from service.runtime import SessionFactory, session_runner, warm_up, warmup_batch_sizes
from service.settings import GPU_PROVIDERS, Settings
from service.tasks import build_codec
from service.validation import validate_model

log = logging.getLogger("axon.loader")


def check_tensors(session: ort.InferenceSession, config: ModelConfig) -> None:
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


class Loader:
    """Builds servable versions (validated, warmed, batching) and retires them; holds no table of its own."""

    def __init__(self, settings: Settings, metrics: Metrics, arrivals: Arrivals) -> None:
        self.settings = settings
        self._metrics = metrics
        self._arrivals = arrivals
        self._factory: SessionFactory | None = None

    async def build(self, d: ModelDescriptor) -> ModelVersion:
        """A ready version with its batcher running, or an unavailable one carrying the reason."""
        entry = ModelVersion(d.name, d.version, d.path, d.config)
        if d.error is not None:
            return self._unavailable(entry, d.error)
        if self.settings.validate_models:
            problem = await self._validate(d)
            if problem is not None:
                return self._unavailable(entry, problem)
        try:
            await asyncio.to_thread(self._open, entry)
        except GpuUnavailable:
            raise
        except Exception as exc:  # a broken model must not stop the others
            return self._unavailable(entry, f"{type(exc).__name__}: {exc}")
        assert entry.config is not None and entry.session is not None and entry.codec is not None
        policy = batch_policy(entry.config, self.settings)
        pads = entry.codec.pad_values
        batcher = entry.batcher = Batcher(
            session_runner(entry.session),
            policy,
            name=entry.label,
            pad_values=pads,
            arrivals=self._arrivals,
            on_batch=self._metrics.batch_observer(d.name, d.version or 0),
        )
        entry.batcher.start()
        self._metrics.watch_queue(d.name, d.version or 0, lambda: batcher.queued_rows)
        entry.state = ModelState.READY
        why = self._factory.explain(entry.providers) if self._factory is not None else ""
        log.info("%s ready on %s (%s); batching %s", entry.label, ", ".join(entry.providers), why, policy)
        return entry

    async def retire(self, entry: ModelVersion) -> None:
        """Drain and close a version that has left the table: queued and already-resolved requests finish first."""
        # New requests are refused from here on; those already queued still finish below.
        if entry.state is not ModelState.UNAVAILABLE:
            entry.state, entry.reason = ModelState.UNAVAILABLE, "unloaded"
        # Requests that resolved this version before it left the table still get to queue on it.
        await entry.released()
        if entry.batcher is not None:
            await entry.batcher.stop()
            self._metrics.forget_version(entry.name, entry.version or 0)
        entry.session = None

    async def _validate(self, d: ModelDescriptor) -> str | None:
        """Check the ONNX file in a child process (a hostile file crashes only the child); the reason, or None."""
        s = self.settings
        result = await asyncio.to_thread(
            validate_model,
            d.model_file,
            s.validation_timeout_s,
            True,
            s.validation_memory_limit_mb,
        )
        return None if result.ok else f"validation failed: {result.reason}"

    def _open(self, entry: ModelVersion) -> None:
        """Session, codec and warm-up: the blocking part of a build, run in a worker thread."""
        assert entry.config is not None
        if self._factory is None:
            self._factory = SessionFactory(self.settings)
        session = self._factory.create(entry.path / MODEL_FILE)
        check_tensors(session, entry.config)
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
