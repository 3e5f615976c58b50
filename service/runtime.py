"""ONNX Runtime sessions for a server process: provider choice that is checked, not assumed, and warm-up.

`onnxruntime-gpu` lists CUDA as *available* even on a machine without a GPU and then silently
runs on CPU, so the providers in use are always read back from the session after it is created.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelrepo.datatypes import ORT_TO_V2, V2_TO_NUMPY
from service.errors import GpuUnavailable
from service.settings import GPU_PROVIDERS, Settings

log = logging.getLogger("axon.runtime")

Tensors = dict[str, np.ndarray]
RunFn = Callable[[Tensors], Tensors]

# Length used for dynamic non-batch axes (sequence length) when warming up.
WARMUP_SEQUENCE = 16
# Warm-up inputs of one run never take more than this: a batch size from config.json or settings
# must not be able to make the server allocate its way out of memory before serving anything.
WARMUP_MAX_BYTES = 64 * 1024 * 1024


class SessionFactory:
    """Creates `InferenceSession`s with server-friendly options and the providers that really load."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        available = set(ort.get_available_providers())
        self._providers = [p for p in settings.providers if p in available]
        missing = [p for p in settings.providers if p not in available]
        if missing:
            log.warning("execution providers not in this onnxruntime build: %s", ", ".join(missing))
        if settings.require_gpu and not any(p in GPU_PROVIDERS for p in self._providers):
            raise GpuUnavailable(f"require_gpu is set but this onnxruntime offers only {sorted(available)}")
        if not self._providers:
            raise ValueError(f"none of the providers {settings.providers} is available; have {sorted(available)}")
        self._lock = threading.Lock()

    def options(self) -> ort.SessionOptions:
        """Session options for a long-running server sharing its CPUs with an event loop."""
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self._settings.intra_op_threads
        opts.inter_op_num_threads = self._settings.inter_op_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning worker threads burn the cores the event loop and the other models need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        return opts

    def _provider_args(self) -> list[str | tuple[str, dict]]:
        device = {"device_id": str(self._settings.gpu_device_id)}
        return [(p, device) if p in GPU_PROVIDERS else p for p in self._providers]

    def create(self, model_file: Path) -> ort.InferenceSession:
        """Load one ONNX file; raise if a required GPU did not come up."""
        with self._lock:
            providers = self._provider_args()
        session = ort.InferenceSession(str(model_file), sess_options=self.options(), providers=providers)
        in_use = session.get_providers()
        wanted_gpu = [p for p in self._providers if p in GPU_PROVIDERS]
        if wanted_gpu and not any(p in GPU_PROVIDERS for p in in_use):
            if self._settings.require_gpu:
                wanted = " and ".join(wanted_gpu)
                raise GpuUnavailable(f"{wanted} did not load (session runs on {in_use}) and require_gpu is set")
            with self._lock:
                # Asking again would make ONNX Runtime log the same load failure for every model.
                self._providers = [p for p in self._providers if p not in GPU_PROVIDERS] or ["CPUExecutionProvider"]
            log.warning("%s requested but not usable here; falling back to %s", ", ".join(wanted_gpu), in_use)
        return session


def session_runner(session: ort.InferenceSession) -> RunFn:
    """A thread-safe function running the session on named inputs and returning every output by name."""
    names = [o.name for o in session.get_outputs()]

    def run(inputs: Tensors) -> Tensors:
        return dict(zip(names, session.run(names, inputs)))

    return run


def _shapes(session: ort.InferenceSession, batch_size: int, sequence: int) -> dict[str, tuple[list[int], np.dtype]]:
    out = {}
    for arg in session.get_inputs():
        dims = [
            d if isinstance(d, int) and d > 0 else (batch_size if i == 0 else sequence) for i, d in enumerate(arg.shape)
        ]
        datatype = ORT_TO_V2.get(arg.type, "FP32")
        # Synthetic strings are no input a string model could check; such a model warms up on floats and fails here.
        out[arg.name] = (dims, V2_TO_NUMPY["FP32" if datatype == "BYTES" else datatype])
    return out


def example_bytes(session: ort.InferenceSession, batch_size: int, sequence: int = WARMUP_SEQUENCE) -> int:
    """What `example_inputs` would allocate for this batch size, computed without allocating it."""
    return sum(math.prod(dims) * dtype.itemsize for dims, dtype in _shapes(session, batch_size, sequence).values())


def example_inputs(session: ort.InferenceSession, batch_size: int, sequence: int = WARMUP_SEQUENCE) -> Tensors:
    """Inputs of the right names, dtypes and shapes (dynamic batch = batch_size, other dynamic axes = sequence)."""
    # Ones, not zeros: a token id of 1 is a real token and an attention mask of 1 keeps every row unmasked.
    return {name: np.ones(dims, dtype=dtype) for name, (dims, dtype) in _shapes(session, batch_size, sequence).items()}


def warmup_batch_sizes(max_batch_size: int, on_gpu: bool) -> list[int]:
    """Batch sizes to run before serving: every power of two on GPU (kernels are chosen per shape)."""
    if not on_gpu:
        return sorted({1, max_batch_size})
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return sizes + [max_batch_size]


def warm_up(
    session: ort.InferenceSession, batch_sizes: Sequence[int], runs: int, max_bytes: int = WARMUP_MAX_BYTES
) -> None:
    """Run the session on synthetic inputs so the first real request pays no allocation or kernel search.

    Batch sizes whose inputs would pass `max_bytes` are cut to the largest that fits; a model whose
    single row passes it is refused (ValueError), since no request to it could be served safely either.
    """
    row = example_bytes(session, 1)
    if row > max_bytes:
        raise ValueError(f"one row of this model's inputs takes {row} bytes, more than the warm-up cap of {max_bytes}")
    largest = max_bytes // row  # inputs are linear in the batch size
    run = session_runner(session)
    for size in sorted({min(size, largest) for size in batch_sizes}):
        inputs = example_inputs(session, size)
        for _ in range(runs):
            run(inputs)
