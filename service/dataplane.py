"""The protocol-free data plane: find the model, check it is ready, pre-process, batch, post-process.

Every route (task endpoints now, V2 inference next) calls into this one class, so model lookup,
batching, per-phase metrics and error accounting exist once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from service.batcher import BatchResult
from service.errors import AxonError, InvalidInput, NonFiniteOutput, WrongTask
from service.metrics import Metrics
from service.model_config import SeriesPreprocessing, Task
from service.preprocessing import (
    ImageCodec,
    SeriesCodec,
    TabularCodec,
    TextCodec,
    classifications,
    sample_scores,
    series_scores,
    text_classifications,
)
from service.registry import ModelRegistry, ModelVersion
from service.runtime import Tensors
from service.settings import Settings
from service.signature import check_inputs, check_outputs

# The metric label of every model name the repository does not know (issue 8.9: bounded label sets).
UNKNOWN_MODEL = "unknown"
# Above this many payload bytes, pre-processing moves to a worker thread so the event loop keeps serving.
OFFLOAD_BYTES = 64 * 1024

Encode = Callable[[ModelVersion], Tensors]
Decode = Callable[[ModelVersion, Tensors], dict[str, Any]]


def check_finite(entry: ModelVersion, outputs: Tensors) -> None:
    """Refuse (422) a task answer built from non-finite model outputs; its input is outside what the model handles."""
    for name, array in outputs.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise NonFiniteOutput(
                f"{entry.label} produced a non-finite value in '{name}' for this input "
                "(values far outside the range it was trained on)"
            )


class Dataplane:
    """Runs one prediction end to end and accounts for it in the metrics."""

    def __init__(self, registry: ModelRegistry, settings: Settings, metrics: Metrics) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics

    def resolve(self, task: Task | None, name: str | None, version: int | None) -> ModelVersion:
        """The ready version serving this request (the task's default model when none is named)."""
        if name is None:
            if task is None:
                raise InvalidInput("a model name is required")
            name = getattr(self.settings.default_models, task)
        entry = self.registry.get(name, version)
        assert entry.config is not None
        if task is not None and entry.config.task != task:
            raise WrongTask(f"model '{entry.name}' is a {entry.config.task} model, not a {task} model")
        return entry

    async def run(
        self, endpoint: str, task: Task | None, name: str | None, version: int | None,
        encode: Encode, decode: Decode, payload_bytes: int = 0,
    ) -> dict[str, Any]:
        """Find -> check ready -> encode -> batch -> decode, timing each phase."""
        start = time.perf_counter()
        label = name or (getattr(self.settings.default_models, task) if task else "")
        status = 500
        try:
            entry = self.resolve(task, name, version)
            label = entry.name
            assert entry.batcher is not None
            t_pre = time.perf_counter()
            # Held until answered: a reload swapping this version out lets this request finish on it.
            with entry.hold():
                inputs = await asyncio.to_thread(encode, entry) if payload_bytes > OFFLOAD_BYTES else encode(entry)
                t_queued = time.perf_counter()
                result: BatchResult = await entry.batcher.submit(inputs, self.settings.request_timeout_s)
            t_done = time.perf_counter()
            check_finite(entry, result.outputs)
            body = {"model": entry.name, "version": entry.version, **decode(entry, result.outputs)}
            end = time.perf_counter()
            self.metrics.observe_phases(label, {
                "preprocess": t_queued - t_pre,
                "queue": result.queue_s,
                "inference": result.inference_s,
                "postprocess": end - t_done,
                "total": end - start,
            })
            status = 200
            return body
        except AxonError as exc:
            status = exc.status_code
            raise
        except asyncio.CancelledError:
            status = 499  # nginx's "client closed request": the client left before its answer
            raise
        finally:
            self.metrics.count_request(label if status == 200 else self.metric_label(label), endpoint, status)

    def metric_label(self, name: str) -> str:
        """`name` if the repository knows that model, else UNKNOWN_MODEL: clients cannot grow the label set."""
        try:
            self.registry.versions(name)
        except AxonError:
            return UNKNOWN_MODEL
        return name

    async def infer(
        self, endpoint: str, name: str, version: int | None, inputs: Tensors, decode_s: float = 0.0,
        outputs: list[str] | None = None,
    ) -> tuple[ModelVersion, BatchResult]:
        """Raw named tensors (the V2 protocol's path): checked against the model's signature (400) before they queue."""
        start = time.perf_counter()
        status = 500
        try:
            entry = self.resolve(None, name, version)
            assert entry.batcher is not None and entry.config is not None
            vocab = entry.codec.tokenizer.get_vocab_size() if isinstance(entry.codec, TextCodec) else None
            inputs = check_inputs(entry.config, inputs, entry.label, vocab)
            check_outputs(entry.config, outputs or [], entry.label)
            with entry.hold():
                result = await entry.batcher.submit(inputs, self.settings.request_timeout_s)
            self.metrics.observe_phases(entry.name, {
                "preprocess": decode_s,
                "queue": result.queue_s,
                "inference": result.inference_s,
                "total": decode_s + time.perf_counter() - start,
            })
            status = 200
            return entry, result
        except AxonError as exc:
            status = exc.status_code
            raise
        except asyncio.CancelledError:
            status = 499
            raise
        finally:
            self.metrics.count_request(name if status == 200 else self.metric_label(name), endpoint, status)

    # --- tasks -----------------------------------------------------------------------------------

    async def classify_images(
        self, images: list[bytes], model: str | None, version: int | None, top_k: int
    ) -> dict[str, Any]:
        """Vision: encoded images -> labels with probabilities and the top k."""
        self._check_top_k(top_k)

        def encode(entry: ModelVersion) -> Tensors:
            assert isinstance(entry.codec, ImageCodec)
            return entry.codec.encode(images)

        def decode(entry: ModelVersion, outputs: Tensors) -> dict[str, Any]:
            logits = outputs[entry.config.outputs[0].name]
            return {"predictions": classifications(logits, entry.config.labels, top_k)}

        return await self.run("vision", "vision", model, version, encode, decode, sum(map(len, images)))

    async def classify_texts(self, texts: list[str], model: str | None, version: int | None) -> dict[str, Any]:
        """Text: strings -> labels with every label's probability."""

        def encode(entry: ModelVersion) -> Tensors:
            assert isinstance(entry.codec, TextCodec)
            return entry.codec.encode(texts)

        def decode(entry: ModelVersion, outputs: Tensors) -> dict[str, Any]:
            logits = outputs[entry.config.outputs[0].name]
            return {"predictions": text_classifications(logits, entry.config.labels)}

        return await self.run("text", "text", model, version, encode, decode, sum(map(len, texts)))

    async def score_samples(self, samples: list[list[float]], model: str | None, version: int | None) -> dict[str, Any]:
        """Tabular anomaly: rows -> reconstruction error and verdict per row."""

        def encode(entry: ModelVersion) -> Tensors:
            if not isinstance(entry.codec, TabularCodec):
                raise InvalidInput(f"model '{entry.name}' scores series; send 'series', not 'samples'")
            return entry.codec.encode(samples)

        def decode(entry: ModelVersion, outputs: Tensors) -> dict[str, Any]:
            spec = entry.config.anomaly
            return {"threshold": spec.threshold, "results": sample_scores(outputs[spec.score_output], spec.threshold)}

        return await self.run("anomaly", "anomaly", model, version, encode, decode, 8 * sum(map(len, samples)))

    async def score_series(
        self, series: list[float], timestamps: list[Any] | None, model: str | None, version: int | None,
    ) -> dict[str, Any]:
        """Time-series anomaly: points -> per-point scores and anomalous segments."""
        if timestamps is not None and len(timestamps) != len(series):
            raise InvalidInput(f"'timestamps' has {len(timestamps)} entries but 'series' has {len(series)} points")

        def encode(entry: ModelVersion) -> Tensors:
            if not isinstance(entry.codec, SeriesCodec):
                raise InvalidInput(f"model '{entry.name}' scores tabular samples; send 'samples', not 'series'")
            return entry.codec.encode(series)

        def decode(entry: ModelVersion, outputs: Tensors) -> dict[str, Any]:
            spec = entry.config.anomaly
            assert isinstance(entry.config.preprocessing, SeriesPreprocessing)
            window_scores = outputs[spec.score_output]
            results, found = series_scores(window_scores, len(series), entry.config.preprocessing, spec.threshold)
            if timestamps is not None:
                for row, ts in zip(results, timestamps):
                    row["timestamp"] = ts
                for seg in found:
                    seg["start_timestamp"], seg["end_timestamp"] = timestamps[seg["start"]], timestamps[seg["end"]]
            return {"threshold": spec.threshold, "results": results, "segments": found}

        model = model or self.settings.default_models.series
        return await self.run("anomaly", "anomaly", model, version, encode, decode, 8 * len(series))

    def _check_top_k(self, top_k: int) -> None:
        if not 1 <= top_k <= self.settings.limits.max_top_k:
            raise InvalidInput(f"top_k must be between 1 and {self.settings.limits.max_top_k}, got {top_k}")
