"""The protocol-free data plane: find the model, check it is ready, pre-process, batch, post-process.

Every front end calls into this one class: the task endpoints run a task module's `Job`, the V2
protocol hands over raw tensors, and model metadata and readiness are answered here too, so model
lookup, batching, per-phase metrics and error accounting exist once and a gRPC front end can reuse them.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from service import __version__
from service.batcher import BatchResult, rows_of
from service.errors import AxonError, BadRequest, ModelNotReady, NonFiniteOutput, VersionNotFound, WrongTask
from service.metrics import Metrics
from service.naming import validate_model_name, validate_version
from service.registry import ModelRegistry, ModelState, ModelVersion, batch_policy
from service.runtime import Tensors
from service.settings import Settings
from service.signature import check_inputs, check_outputs
from service.statistics import Statistics, Timing
from service.v2.config import triton_config
from service.v2.datamodels import ModelMetadataResponse, ServerMetadataResponse, TensorMetadata

if TYPE_CHECKING:
    from service.explain import ExplainJob
    from service.tasks.base import Job  # task modules import the lean path, which imports this module

# The metric label of every model name the repository does not know (issue 8.9: bounded label sets).
UNKNOWN_MODEL = "unknown"
# Above this many payload bytes, pre-processing moves to a worker thread so the event loop keeps serving.
OFFLOAD_BYTES = 64 * 1024
SERVER_NAME = "axon"
# Triton's names for the V2 protocol extensions this server implements.
EXTENSIONS = ["binary_tensor_data", "model_repository", "model_configuration", "statistics"]


def check_finite(entry: ModelVersion, outputs: Tensors) -> None:
    """Refuse (422) a task answer built from non-finite model outputs; its input is outside what the model handles."""
    for name, array in outputs.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise NonFiniteOutput(
                f"{entry.label} produced a non-finite value in '{name}' for this input "
                "(values far outside the range it was trained on)"
            )


def as_onnx_strings(inputs: Tensors, label: str) -> Tensors:
    """BYTES tensors with `str` elements: ONNX Runtime turns a `bytes` element into its repr ("b'abc'")."""
    out = dict(inputs)
    for name, array in inputs.items():
        if array.dtype.kind == "O" and array.size and isinstance(array.flat[0], bytes):
            try:
                out[name] = np.array([x.decode("utf-8") for x in array.ravel()], dtype=object).reshape(array.shape)
            except (UnicodeDecodeError, AttributeError):
                raise BadRequest(f"input '{name}' of {label} holds an element that is not UTF-8 text") from None
    return out


def name_and_version(name: str, version: str | int | None) -> tuple[str, int | None]:
    """Client-given name and version, checked before anything looks them up (400 when malformed)."""
    return validate_model_name(name), (None if version is None else validate_version(version))


class _Counted:
    """Counts one request under its model label and status once it ends: 200, the AxonError's status, 499 or 500.

    A class rather than `@contextmanager`: every request enters one, and a generator-based manager costs
    about a microsecond more per use on the V2 hot path.
    """

    __slots__ = ("dataplane", "endpoint", "label", "status")

    def __init__(self, dataplane: Dataplane, endpoint: str, label: str) -> None:
        self.dataplane = dataplane
        self.endpoint = endpoint
        self.label = label  # the route may replace it by the resolved model's name
        self.status = 500

    def __enter__(self) -> _Counted:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if kind is None:
            self.status = 200
        elif isinstance(exc, AxonError):
            self.status = exc.status_code
        elif isinstance(exc, asyncio.CancelledError):
            self.status = 499  # nginx's "client closed request": the client left before its answer
        dataplane = self.dataplane
        label = self.label if self.status == 200 else dataplane.metric_label(self.label)
        dataplane.metrics.count_request(label, self.endpoint, self.status)


class _Failures:
    """Counts a request that reached a version and failed there in its statistics (Triton's `fail`)."""

    __slots__ = ("entry", "start", "statistics")

    def __init__(self, statistics: Statistics, entry: ModelVersion, start: float) -> None:
        self.statistics = statistics
        self.entry = entry
        self.start = start

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if kind is not None:
            self.statistics.failure(self.entry.name, self.entry.version, time.perf_counter() - self.start)


class Dataplane:
    """Runs one prediction end to end and accounts for it in the metrics; answers metadata and readiness."""

    def __init__(
        self, registry: ModelRegistry, settings: Settings, metrics: Metrics, statistics: Statistics | None = None
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.statistics = statistics if statistics is not None else Statistics()

    def resolve(self, task: str | None, name: str, version: int | None) -> ModelVersion:
        """The ready version serving this request; a task request must name a model of that task."""
        entry = self.registry.get(name, version)
        assert entry.config is not None
        if task is not None and entry.config.task != task:
            raise WrongTask(f"model '{entry.name}' is a {entry.config.task} model, not a {task} model")
        return entry

    def default_model(self, job: Job | ExplainJob) -> str:
        """The model a task request names, else the default its task module reads from settings."""
        return job.model if job.model is not None else str(getattr(self.settings.default_models, job.default_model))

    async def predict(self, job: Job) -> dict[str, Any]:
        """Find -> check ready -> encode -> batch -> answer, timing each phase."""
        start = time.perf_counter()
        name = self.default_model(job)
        with self._counted(job.task, name) as outcome:
            entry = self.resolve(job.task, name, job.version)
            outcome.label = entry.name
            assert entry.batcher is not None
            t_pre = time.perf_counter()
            # Held until answered: a reload swapping this version out lets this request finish on it.
            with entry.hold(), self._failures(entry, t_pre):
                inputs = await asyncio.to_thread(job.encode, entry) if job.size > OFFLOAD_BYTES else job.encode(entry)
                t_queued = time.perf_counter()
                result: BatchResult = await entry.batcher.submit(inputs, self.settings.request_timeout_s)
                t_done = time.perf_counter()
                check_finite(entry, result.outputs)
                body = {"model": entry.name, "version": entry.version, **job.answer(entry, result)}
            end = time.perf_counter()
            rows = rows_of(inputs) if inputs else 0
            timing = Timing(end - t_pre, result.queue_s, t_queued - t_pre, result.inference_s, end - t_done)
            self.statistics.success(entry.name, entry.version, rows, timing)
            self.metrics.observe_phases(entry.name, {
                "preprocess": t_queued - t_pre,
                "queue": result.queue_s,
                "inference": result.inference_s,
                "postprocess": end - t_done,
                "total": end - start,
            })  # fmt: skip
            return body

    async def explain(self, job: ExplainJob) -> dict[str, Any]:
        """Find -> check ready -> the job's perturbed batches through the version's batcher, counted as "explain"."""
        from service.explain import ENDPOINT, Runner  # the explain package imports this module

        name = self.default_model(job)
        with self._counted(ENDPOINT, name) as outcome:
            entry = self.resolve(job.task, name, job.version)
            outcome.label = entry.name
            assert entry.config is not None
            # Slices of one batch: an explanation never fills the queue ahead of plain requests.
            rows = batch_policy(entry.config, self.settings).max_batch_size
            run = Runner(entry, rows, self.settings.request_timeout_s, self.settings.explain)
            with entry.hold():
                body = await job.explain(entry, run)
            return {"model": entry.name, "version": entry.version, **body}

    async def infer(
        self,
        endpoint: str,
        name: str,
        version: int | None,
        inputs: Tensors,
        decode_s: float = 0.0,
        outputs: list[str] | None = None,
    ) -> tuple[ModelVersion, BatchResult]:
        """Raw named tensors (the V2 protocol's path): checked against the model's signature (400) before they queue."""
        start = time.perf_counter()
        with self._counted(endpoint, name):
            entry = self.resolve(None, name, version)
            assert entry.batcher is not None and entry.config is not None and entry.codec is not None
            with entry.hold(), self._failures(entry, start):
                inputs = as_onnx_strings(check_inputs(entry.config, inputs, entry.label), entry.label)
                entry.codec.check(inputs, entry.label)
                check_outputs(entry.config, outputs or [], entry.label)
                t_checked = time.perf_counter()
                result = await entry.batcher.submit(inputs, self.settings.request_timeout_s)
            end = time.perf_counter()
            # Triton counts inferences per batch row; a model without a batch axis answers one per request.
            first = next(iter(inputs.values()), None)
            rows = first.shape[0] if entry.config.max_batch_size and first is not None and first.ndim else 1
            compute_input = decode_s + t_checked - start
            timing = Timing(end - start + decode_s, result.queue_s, compute_input, result.inference_s, 0.0)
            self.statistics.success(entry.name, entry.version, rows, timing)
            self.metrics.observe_phases(entry.name, {
                "preprocess": decode_s,
                "queue": result.queue_s,
                "inference": result.inference_s,
                "total": decode_s + time.perf_counter() - start,
            })  # fmt: skip
            return entry, result

    def _counted(self, endpoint: str, label: str) -> _Counted:
        """Count the request under its status once it ends (`_Counted`)."""
        return _Counted(self, endpoint, label)

    def _failures(self, entry: ModelVersion, start: float) -> _Failures:
        """Count a request that reached this version and failed there in its statistics."""
        return _Failures(self.statistics, entry, start)

    def metric_label(self, name: str) -> str:
        """`name` if the repository knows that model, else UNKNOWN_MODEL: clients cannot grow the label set."""
        try:
            self.registry.versions(name)
        except AxonError:
            return UNKNOWN_MODEL
        return name

    # --- metadata and readiness (V2 REST now, gRPC next) -------------------------------------------

    def server_metadata(self) -> ServerMetadataResponse:
        """The server's name, version and the protocol extensions it supports."""
        return ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)

    def described(self, name: str, version: int | None) -> ModelVersion:
        """The version metadata describes: the one asked for, else the newest ready (else the newest) one."""
        entries = self.registry.versions(name)
        if version is not None:
            found = [e for e in entries if e.version == version]
            if not found:
                raise VersionNotFound(f"model '{name}' has no version {version}")
            return found[0]
        return next((e for e in entries if e.state is ModelState.READY), entries[0])

    def model_metadata(self, name: str, version: str | int | None = None) -> ModelMetadataResponse:
        """Tensors, ready versions, platform and serving parameters of a model (or one version of it)."""
        model, number = name_and_version(name, version)
        entry = self.described(model, number)
        config = entry.config
        if config is None:
            raise ModelNotReady(f"{entry.label} has no usable config: {entry.reason}")
        ready = [str(e.version) for e in self.registry.versions(model) if e.state is ModelState.READY]
        policy = batch_policy(config, self.settings)
        return ModelMetadataResponse(
            name=model,
            versions=ready,
            platform=config.platform,
            inputs=[TensorMetadata(name=t.name, datatype=t.datatype, shape=t.dims) for t in config.inputs],
            outputs=[TensorMetadata(name=t.name, datatype=t.datatype, shape=t.dims) for t in config.outputs],
            parameters={
                "task": config.task or "",  # "" for a plain V2 model
                "state": entry.state.value,
                "max_batch_size": policy.max_batch_size,
                "providers": ",".join(entry.providers),
                "instances": len(entry.instances),
            },
        )

    def model_ready(self, name: str, version: str | int | None = None) -> str:
        """The model's name when it (or that version) serves; 404 unknown, 503 with the reason when not ready."""
        model, number = name_and_version(name, version)
        self.registry.get(model, number)
        return model

    # --- Triton's model configuration and statistics extensions (REST and gRPC) ---------------------

    def model_config(self, name: str, version: str | int | None = None) -> dict[str, Any]:
        """Triton's model configuration JSON of a model (or one version of it), with the serving knobs in force."""
        model, number = name_and_version(name, version)
        entry = self.described(model, number)
        if entry.config is None:
            raise ModelNotReady(f"{entry.label} has no usable config: {entry.reason}")
        return triton_config(entry.config, batch_policy(entry.config, self.settings))

    def model_statistics(self, name: str | None = None, version: str | int | None = None) -> dict[str, Any]:
        """Triton's statistics of every version in the table, of one model, or of one version (404 unknown)."""
        if not name:
            return self.statistics.model_stats((e.name, e.version) for e in self.registry.entries())
        model, number = name_and_version(name, version)
        entries = self.registry.versions(model)
        if number is not None:
            entries = [self.described(model, number)]
        return self.statistics.model_stats((e.name, e.version) for e in entries)
