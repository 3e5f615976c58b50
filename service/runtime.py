"""ONNX Runtime sessions for a server process: provider choice that is checked, not assumed, and warm-up.

`onnxruntime-gpu` lists CUDA as *available* even on a machine without a GPU and then silently
runs on CPU, so the providers in use are always read back from the session after it is created.

ONNX Runtime's own log lines (such as `libcublasLt.so.13: cannot open shared object file` on every CPU
start) are written by native code straight to file descriptor 2, in colour, past Python's logging: the
Python API offers no log sink. So session creation runs with fd 2 captured (`native_stderr`), and each
captured line is parsed, stripped of its ANSI codes and re-logged through logging (logger `onnxruntime`),
where the service's plain or JSON format applies; a provider that did not load is reported once, with
ONNX Runtime's reason, by `axon.runtime`. Sessions log only errors once they run (`log_severity_level`).
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelrepo.config import MAX_INSTANCES, InstanceGroup
from modelrepo.datatypes import ORT_TO_V2, V2_TO_NUMPY
from service.errors import GpuUnavailable
from service.settings import GPU_PROVIDERS, Settings

log = logging.getLogger("axon.runtime")
ort_log = logging.getLogger("onnxruntime")

Tensors = dict[str, np.ndarray]
RunFn = Callable[[Tensors], Tensors]

# Length used for dynamic non-batch axes (sequence length) when warming up.
WARMUP_SEQUENCE = 16
# Warm-up inputs of one run never take more than this: a batch size from config.json or settings
# must not be able to make the server allocate its way out of memory before serving anything.
WARMUP_MAX_BYTES = 64 * 1024 * 1024


# "2026-11-30 04:42:30.831297001 [E:onnxruntime:Default, provider_bridge_ort.cc:2458 operator()] message"
ORT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \[([VIWEF]):onnxruntime:[^\]]*\] (.*)$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
ORT_LEVELS = {"V": logging.DEBUG, "I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}
# Session creation across threads takes turns while fd 2 is redirected: a process has one fd 2.
_capture_lock = threading.Lock()


@dataclass
class NativeLog:
    """What ONNX Runtime wrote to fd 2 while captured: (logging level, message) per line."""

    records: list[tuple[int, str]] = field(default_factory=list)

    def reason(self) -> str | None:
        """The most telling error, for a provider that did not load ("libcublasLt.so.13: cannot open ...")."""
        for level, message in self.records:
            if level >= logging.ERROR:
                return message.rpartition(" with error: ")[2].strip() or message
        return next((m for lvl, m in self.records if lvl >= logging.WARNING), None)

    def replay(self, quiet: bool = False) -> None:
        """Log every line through `onnxruntime`; `quiet` puts them at debug (the caller has said it plainly)."""
        for level, message in self.records:
            ort_log.log(logging.DEBUG if quiet else level, message)


def parse_native(text: str) -> tuple[NativeLog, str]:
    """ONNX Runtime's lines (ANSI codes removed) and whatever else was written, unchanged."""
    found, other = NativeLog(), []
    open_colour = False  # inside a coloured ONNX Runtime message: it ends with the reset code "\x1b[m"
    for raw in text.splitlines(keepends=True):
        line = ANSI.sub("", raw).strip()
        m = ORT_LINE.match(line)
        if m:
            found.records.append((ORT_LEVELS[m.group(1)], m.group(2)))
            open_colour = raw.startswith("\x1b[") and "\x1b[m" not in raw
        elif open_colour:
            if line:
                level, message = found.records[-1]
                found.records[-1] = (level, f"{message} {line}")
            open_colour = "\x1b[m" not in raw
        elif line:
            other.append(raw)
    return found, "".join(other)


@contextmanager
def native_stderr() -> Iterator[NativeLog]:
    """Capture fd 2 (native writes) for the block; ONNX Runtime's lines are parsed, anything else goes back out."""
    captured = NativeLog()
    with _capture_lock, tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            found, other = parse_native(tmp.read().decode("utf-8", "replace"))
            captured.records.extend(found.records)
            if other:  # another thread's output (a log line) written while captured
                os.write(2, other.encode("utf-8"))


@dataclass(frozen=True)
class Placement:
    """Where one instance's session runs: its group's kind, its GPU (KIND_AUTO/KIND_GPU), its intra-op threads."""

    name: str
    kind: str
    gpu: int | None
    threads: int


@dataclass
class Instance:
    """One ONNX Runtime session of a model version, where it was asked to run and what it really runs on."""

    placement: Placement
    session: ort.InferenceSession
    providers: list[str]


def placements(groups: Sequence[InstanceGroup], settings: Settings, model: str) -> list[Placement]:
    """One placement per instance the groups ask for (AXON_INSTANCE_COUNT replacing each group's count).

    Instances named as Triton names them: `<group name, else model_index>_<n>`. Non-GPU instances of a
    version run side by side, so they share AXON_INTRA_OP_THREADS (0: the cores this process may use)
    rather than each taking all of them; a single instance keeps the setting as it is.
    """
    counted = [(g, settings.instance_count or g.count) for g in groups]
    total = sum(count * max(1, len(g.gpus)) for g, count in counted)
    if total > MAX_INSTANCES:
        raise ValueError(f"instance_group asks for {total} sessions, more than {MAX_INSTANCES}")
    on_cpu = sum(count for g, count in counted if g.kind != "KIND_GPU")
    threads = settings.intra_op_threads
    if on_cpu > 1:
        threads = max(1, (threads or len(os.sched_getaffinity(0))) // on_cpu)
    out = []
    for index, (group, count) in enumerate(counted):
        base = group.name or f"{model}_{index}"
        gpus: list[int | None] = list(group.gpus) or [None if group.kind == "KIND_CPU" else settings.gpu_device_id]
        devices = [gpu for gpu in gpus for _ in range(count)]
        for n, gpu in enumerate(devices):
            out.append(Placement(f"{base}_{n}", group.kind, gpu, threads if group.kind != "KIND_GPU" else 0))
    return out


class SessionFactory:
    """Creates `InferenceSession`s with server-friendly options and the providers that really load."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        available = set(ort.get_available_providers())
        self._providers = [p for p in settings.providers if p in available]
        missing = [p for p in settings.providers if p not in available]
        # Why a GPU provider asked for is not in use: not in this build, or (set by `create`) it did not load.
        self.gpu_reason: str | None = None
        if any(p in GPU_PROVIDERS for p in missing):
            self.gpu_reason = f"this onnxruntime build has no {' or '.join(p for p in missing if p in GPU_PROVIDERS)}"
        if missing:
            log.warning("execution providers not in this onnxruntime build: %s", ", ".join(missing))
        if settings.require_gpu and not any(p in GPU_PROVIDERS for p in self._providers):
            raise GpuUnavailable(f"require_gpu is set but this onnxruntime offers only {sorted(available)}")
        if not self._providers:
            raise ValueError(f"none of the providers {settings.providers} is available; have {sorted(available)}")
        self._lock = threading.Lock()
        # Warnings and errors reach the capture around session creation; verbose output only when debugging.
        ort.set_default_logger_severity(1 if settings.log_level == "debug" else 2)

    def options(self, intra_op_threads: int | None = None) -> ort.SessionOptions:
        """Session options for a long-running server sharing its CPUs with an event loop."""
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self._settings.intra_op_threads if intra_op_threads is None else intra_op_threads
        opts.inter_op_num_threads = self._settings.inter_op_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Once running, a session logs only errors: its output is not captured (see the module docstring).
        opts.log_severity_level = 3
        # Spinning worker threads burn the cores the event loop and the other models need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        return opts

    def _provider_args(self, providers: list[str], gpu: int | None) -> list[str | tuple[str, dict[str, str]]]:
        device = {"device_id": str(self._settings.gpu_device_id if gpu is None else gpu)}
        return [(p, device) if p in GPU_PROVIDERS else p for p in providers]

    def _placed(self, placement: Placement) -> list[str]:
        """The providers one instance asks for: its kind narrows AXON_PROVIDERS (KIND_AUTO takes them as they are)."""
        if placement.kind == "KIND_CPU":
            return ["CPUExecutionProvider"]
        if placement.kind == "KIND_GPU":
            gpu = [p for p in self._settings.providers if p in GPU_PROVIDERS and p in ort.get_available_providers()]
            if not gpu:
                asked = ", ".join(self._settings.providers)
                raise ValueError(
                    f"instance {placement.name} is KIND_GPU but AXON_PROVIDERS ({asked}) has no GPU provider "
                    "this onnxruntime offers"
                )
            return [*gpu, "CPUExecutionProvider"]
        with self._lock:
            return list(self._providers)

    def place(self, model_file: Path, placement: Placement) -> Instance:
        """One instance's session on its device; a KIND_GPU instance that would land on the CPU is refused."""
        session = self.create(model_file, placement)
        in_use = session.get_providers()
        return Instance(placement, session, in_use)

    def create(self, model_file: Path, placement: Placement | None = None) -> ort.InferenceSession:
        """Load one ONNX file where `placement` says (else per AXON_PROVIDERS); raise if a required GPU is missing."""
        placed = self._placed(placement) if placement is not None else None
        with self._lock:
            asked = placed if placed is not None else list(self._providers)
        providers = self._provider_args(asked, placement.gpu if placement is not None else None)
        threads = placement.threads if placement is not None else None
        with native_stderr() as native:
            session = ort.InferenceSession(str(model_file), sess_options=self.options(threads), providers=providers)
        in_use = session.get_providers()
        wanted_gpu = [p for p in asked if p in GPU_PROVIDERS]
        fell_back = bool(wanted_gpu) and not any(p in GPU_PROVIDERS for p in in_use)
        if fell_back and placement is not None and placement.kind == "KIND_GPU":
            native.replay(quiet=True)
            why = native.reason() or "ONNX Runtime gave no reason"
            raise ValueError(
                f"instance {placement.name} is KIND_GPU on GPU {placement.gpu} but {wanted_gpu[0]} did not "
                f"load there ({why})"
            )
        # On a fallback the reason goes into the one plain line below; ONNX Runtime's own lines stay at debug.
        native.replay(quiet=fell_back)
        if fell_back:
            wanted = " and ".join(wanted_gpu)
            why = native.reason() or "ONNX Runtime gave no reason"
            if self._settings.require_gpu:
                raise GpuUnavailable(f"{wanted} did not load ({why}; session runs on {in_use}) and require_gpu is set")
            self.gpu_reason = f"{wanted} did not load: {why}"
            with self._lock:
                # Asking again would make ONNX Runtime log the same load failure for every model.
                self._providers = [p for p in self._providers if p not in GPU_PROVIDERS] or ["CPUExecutionProvider"]
            log.warning(
                "%s requested but not usable here (%s): every model runs on %s; set AXON_PROVIDERS=%s to skip "
                "the attempt, AXON_REQUIRE_GPU=true to refuse",
                wanted,
                why,
                ", ".join(in_use),
                ",".join(in_use),
            )
        return session

    def explain(self, in_use: Sequence[str]) -> str:
        """Why a session runs on the providers it got, in words for the start-up log."""
        asked = ", ".join(self._settings.providers)
        if any(p in GPU_PROVIDERS for p in in_use) or not any(p in GPU_PROVIDERS for p in self._settings.providers):
            return f"the first of AXON_PROVIDERS ({asked}) that loaded"
        return f"CPU fallback: {self.gpu_reason or 'the GPU provider did not load'}"


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
        out[arg.name] = (dims, V2_TO_NUMPY[datatype])
    return out


def example_bytes(session: ort.InferenceSession, batch_size: int, sequence: int = WARMUP_SEQUENCE) -> int:
    """What `example_inputs` would allocate for this batch size, computed without allocating it."""
    return sum(math.prod(dims) * dtype.itemsize for dims, dtype in _shapes(session, batch_size, sequence).values())


def example_inputs(session: ort.InferenceSession, batch_size: int, sequence: int = WARMUP_SEQUENCE) -> Tensors:
    """Inputs of the right names, dtypes and shapes (dynamic batch = batch_size, other dynamic axes = sequence)."""
    # Ones, not zeros: a token id of 1 is a real token and an attention mask of 1 keeps every row unmasked.
    return {
        name: np.full(dims, b"", dtype=object) if dtype.kind == "O" else np.ones(dims, dtype=dtype)
        for name, (dims, dtype) in _shapes(session, batch_size, sequence).items()
    }


def warmup_batch_sizes(max_batch_size: int, on_gpu: bool) -> list[int]:
    """Batch sizes to run before serving: every power of two on GPU (kernels are chosen per shape)."""
    if not on_gpu:
        return sorted({1, max_batch_size})
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return [*sizes, max_batch_size]


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
