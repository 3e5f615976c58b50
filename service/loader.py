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
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort

from modelrepo.config import MAX_BATCH_SIZE, ModelConfig, TensorSpec
from modelrepo.layout import MODEL_FILE
from service.batcher import Arrivals, Batcher
from service.errors import GpuUnavailable
from service.metrics import Metrics
from service.registry import ModelState, ModelVersion, batch_policy
from service.repository import ModelDescriptor
from service.runtime import Instance, SessionFactory, placements, session_runner, warm_up, warmup_batch_sizes
from service.settings import GPU_PROVIDERS, Settings
from service.statistics import Statistics
from service.tasks import build_codec
from service.tasks.base import Codec
from service.validation import TensorInfo, ValidationResult, tensor_info, validate_model

log = logging.getLogger("axon.loader")
BatchObserver = Callable[[int, float], None]


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


# A plain model whose first axis is dynamic everywhere batches up to this many rows unless config.json says.
DEFAULT_MAX_BATCH_SIZE = 64


def complete_config(config: ModelConfig, inputs: list[TensorInfo], outputs: list[TensorInfo]) -> ModelConfig:
    """The config with what it leaves out derived from the graph, as Triton's auto-complete does.

    Tensors left out come from the graph (names, datatypes, shapes with -1 for dynamic axes). A model
    without a task batches when every input and output has a dynamic first axis (`max_batch_size`
    DEFAULT_MAX_BATCH_SIZE unless config.json sets it), and not at all (0) otherwise; config.json asking
    a model with a fixed first axis to batch is refused, since its rows could not be split again.
    """
    update: dict[str, object] = {}
    if not config.inputs:
        update["inputs"] = [_spec(t) for t in inputs]
    if not config.outputs:
        update["outputs"] = [_spec(t) for t in outputs]
    if config.task is None:
        graph = [*inputs, *outputs]
        fixed = next((t.name for t in graph if not t.shape or t.shape[0] != -1), None)
        batchable = bool(inputs) and fixed is None
        if "max_batch_size" not in config.model_fields_set:
            update["max_batch_size"] = min(DEFAULT_MAX_BATCH_SIZE, MAX_BATCH_SIZE) if batchable else 0
        elif config.max_batch_size > 0 and not batchable:
            why = f"tensor {fixed!r} has no dynamic first axis" if fixed else "the model has no inputs"
            raise ValueError(f"config.json sets max_batch_size {config.max_batch_size} but {why}: set it to 0")
    return config.model_copy(update=update) if update else config


def _spec(tensor: TensorInfo) -> TensorSpec:
    # A graph may fix an axis at 0 (an empty `axes` input); a config cannot say 0, so it is listed as dynamic.
    dims = [-1 if d == 0 else d for d in tensor.shape]
    return TensorSpec.model_validate({"name": tensor.name, "datatype": tensor.datatype, "dims": dims})


class PlainCodec(Codec):
    """The codec of a model without a task: V2 tensors go in as they are; inputs marked `pad` may be padded."""

    def __init__(self, config: ModelConfig, version_dir: Path, limits: object) -> None:
        self.config = config

    @property
    def pad_values(self) -> dict[str, float]:
        """The inputs config.json marks `pad`, with their pad values (only a batching model pads)."""
        if self.config.max_batch_size == 0:
            return {}
        return {t.name: t.pad_value for t in self.config.inputs if t.pad}


class Loader:
    """Builds servable versions (validated, warmed, batching) and retires them; holds no table of its own."""

    def __init__(
        self, settings: Settings, metrics: Metrics, arrivals: Arrivals, statistics: Statistics | None = None
    ) -> None:
        self.settings = settings
        self._metrics = metrics
        self._statistics = statistics if statistics is not None else Statistics()
        self._arrivals = arrivals
        self._factory: SessionFactory | None = None

    async def build(self, d: ModelDescriptor) -> ModelVersion:
        """A ready version with its batcher running, or an unavailable one carrying the reason."""
        entry = ModelVersion(d.name, d.version, d.path, d.config)
        if d.error is not None:
            return self._unavailable(entry, d.error)
        checked: ValidationResult | None = None
        if self.settings.validate_models:
            checked = await self._validate(d)
            if not checked.ok:
                return self._unavailable(entry, f"validation failed: {checked.reason}")
            if checked.test_run_error:
                if entry.config is not None and entry.config.task is not None:
                    return self._unavailable(entry, f"validation failed: {checked.test_run_error}")
                log.info(
                    "%s: %s (served all the same: a plain model's inputs are the client's)",
                    entry.label,
                    checked.test_run_error,
                )
        try:
            await asyncio.to_thread(self._open, entry, checked)
        except GpuUnavailable:
            raise
        except Exception as exc:  # a broken model must not stop the others
            return self._unavailable(entry, f"{type(exc).__name__}: {exc}")
        assert entry.config is not None and entry.instances and entry.codec is not None
        policy = batch_policy(entry.config, self.settings)
        pads = entry.codec.pad_values
        batcher = entry.batcher = Batcher(
            [session_runner(instance.session) for instance in entry.instances],
            policy,
            name=entry.label,
            pad_values=pads,
            arrivals=self._arrivals,
            on_batch=_both(
                self._metrics.batch_observer(d.name, d.version or 0), self._statistics.batch_observer(d.name, d.version)
            ),
        )
        entry.batcher.start()
        self._metrics.watch_queue(d.name, d.version or 0, lambda: batcher.queued_rows)
        entry.state = ModelState.READY
        why = self._factory.explain(entry.providers) if self._factory is not None else ""
        where = "; ".join(f"{i.placement.name} on {', '.join(i.providers)}" for i in entry.instances)
        log.info("%s ready: %s (%s); batching %s", entry.label, where, why, policy)
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
        entry.instances = []

    async def _validate(self, d: ModelDescriptor) -> ValidationResult:
        """Check the ONNX file in a child process (a hostile file crashes only the child)."""
        s = self.settings
        return await asyncio.to_thread(
            validate_model,
            d.model_file,
            s.validation_timeout_s,
            True,
            s.validation_memory_limit_mb,
        )

    def _open(self, entry: ModelVersion, checked: ValidationResult | None = None) -> None:
        """Sessions (one per instance), config completed from the graph, codec and warm-up (in a worker thread)."""
        assert entry.config is not None
        if self._factory is None:
            self._factory = SessionFactory(self.settings)
        instances: list[Instance] = []
        for placement in placements(entry.config.instance_group, self.settings, entry.name):
            instance = self._factory.place(entry.path / MODEL_FILE, placement)
            session = instance.session
            if not instances:
                if checked is None:  # validation is off: list the tensors here (the child did it otherwise)
                    checked = ValidationResult(
                        True,
                        "",
                        [tensor_info(a) for a in session.get_inputs()],
                        [tensor_info(a) for a in session.get_outputs()],
                    )
                entry.config = complete_config(entry.config, checked.inputs, checked.outputs)
                check_tensors(session, entry.config)
                entry.codec = (
                    PlainCodec(entry.config, entry.path, None)
                    if entry.config.task is None
                    else build_codec(entry.config, entry.path, self.settings.limits)
                )
            on_gpu = any(p in GPU_PROVIDERS for p in instance.providers)
            policy = batch_policy(entry.config, self.settings)
            try:
                warm_up(session, warmup_batch_sizes(max(1, policy.max_batch_size), on_gpu), self.settings.warmup_runs)
            except Exception as exc:
                if entry.config.task is not None:
                    raise
                # Ones need not be valid data for a plain model (a shape input, an index); its first request warms it.
                log.info("%s: warm-up on ones failed (%s); served all the same", entry.label, exc)
            instances.append(instance)
        # The version's providers: every one an instance runs on, in order of first use.
        entry.providers = list(dict.fromkeys(p for i in instances for p in i.providers))
        entry.instances = instances
        entry.session = instances[0].session

    def _unavailable(self, entry: ModelVersion, reason: str) -> ModelVersion:
        # Reasons reach clients: name files relative to the repository, not by their server path.
        root = Path(self.settings.model_repository)
        for prefix in {str(root.resolve()), str(root)}:
            reason = reason.replace(prefix + "/", "")
        entry.state = ModelState.UNAVAILABLE
        entry.reason = reason
        log.error("%s is unavailable: %s", entry.label, reason)
        return entry


def _both(first: BatchObserver, second: BatchObserver) -> BatchObserver:
    """One batch observer feeding two (the Prometheus histograms and Triton's execution count)."""

    def observe(rows: int, elapsed: float) -> None:
        first(rows, elapsed)
        second(rows, elapsed)

    return observe
