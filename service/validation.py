"""Validate an ONNX file in a child process before the server loads it.

A broken or malicious model can crash ONNX Runtime inside native code (a segfault takes the whole
process with it), spin forever, or read files outside its folder through external-data references.
So the checks run in `python -m service.validation <model.onnx>`: the parent only reads a JSON line
from the child's stdout, and a crash, a signal, a timeout or garbage becomes a failure reason.

The child (1) scans the protobuf for external-data locations and refuses any that leave the model's
folder, (2) opens an InferenceSession on CPU, (3) lists inputs/outputs as V2 tensors and, by default,
(4) runs the model once on ones (dynamic dimensions set to 1) so a crashing kernel is caught here;
ones rather than zeros because an all-zero attention mask or length is a degenerate input.
Step 1 is a small protobuf wire-format walk: the `onnx` package is not part of the serving install,
and recent ONNX Runtime releases refuse escaping paths themselves, but older ones (the project
allows >=1.22) are not known to, so the check does not rely on them.
"""

from __future__ import annotations

import json
import mmap
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelrepo.datatypes import ORT_TO_V2
from service.errors import UnsafeName
from service.naming import resolve_inside

_PROJECT_ROOT = Path(__file__).resolve().parents[1]
_STDERR_TAIL = 2000


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output as V2 describes it; -1 marks a dynamic dimension."""

    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True)
class ValidationResult:
    """What the child found: ok with the model's tensors, or not ok with the reason."""

    ok: bool
    reason: str = ""
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    # The test run on ones raised (no crash): a refusal for a task model, whose inputs the service builds,
    # but not for a plain model, whose data inputs (a shape, an index) ones need not satisfy.
    test_run_error: str = ""


def validate_model(
    path: Path | str, timeout_s: float = 120.0, test_run: bool = True, memory_limit_mb: int | None = 8192
) -> ValidationResult:
    """Check an ONNX file in a child process; never raises for anything the file contains."""
    argv = [sys.executable, "-m", "service.validation", str(Path(path).resolve())]
    if not test_run:
        argv.append("--no-test-run")
    if memory_limit_mb is not None:
        argv += ["--memory-limit-mb", str(memory_limit_mb)]
    return run_validator(argv, timeout_s)


def run_validator(argv: Sequence[str], timeout_s: float) -> ValidationResult:
    """Run a validator child and turn whatever happens to it into a ValidationResult."""
    env = dict(os.environ)
    # The child imports this package from the project, whatever the server's working directory;
    # cwd is the project too, never the model's folder (a planted `service/` there must not load).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")]))
    # One thread each: BLAS pools reserve address space per thread, which the memory cap counts.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            timeout=timeout_s,
            env=env,
            cwd=_PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return ValidationResult(False, f"validation did not finish within {timeout_s:g} s (child killed)")
    except OSError as exc:
        return ValidationResult(False, f"could not start the validation process: {exc}")
    if done.returncode < 0:
        crash = _signal_name(-done.returncode)
        return ValidationResult(False, f"validation process crashed with {crash}{_tail(done.stderr)}")
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        payload = json.loads(lines[-1])
        return ValidationResult(
            ok=bool(payload["ok"]),
            reason=str(payload.get("reason", "")),
            inputs=[TensorInfo(**t) for t in payload.get("inputs", [])],
            outputs=[TensorInfo(**t) for t in payload.get("outputs", [])],
            test_run_error=str(payload.get("test_run_error", "")),
        )
    except (IndexError, ValueError, KeyError, TypeError):
        return ValidationResult(
            False, f"validation process exited with code {done.returncode} without a result{_tail(done.stderr)}"
        )


def external_data_locations(model: bytes | memoryview | mmap.mmap) -> list[str]:
    """Every external-data `location` in a serialized ModelProto (graphs, subgraphs, functions, training info)."""
    view = memoryview(model)
    locations: list[str] = []
    _walk(view, 0, len(view), "model", locations, depth=0)
    return locations


def check_external_data(model_path: Path) -> None:
    """Raise ValueError if a tensor's external data lives outside the model file's folder."""
    folder = model_path.resolve().parent
    with open(model_path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise ValueError("the model file is empty")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            try:
                locations = external_data_locations(data)
            except ValueError as exc:
                # Only the message leaves this block: the traceback's frames hold views of the map,
                # which could not be closed while they live.
                problem: str | None = str(exc)
            else:
                problem = None
    if problem is not None:
        raise ValueError(problem)
    for location in locations:
        # Windows-style absolute forms count too: a repository may be copied between systems.
        windows_absolute = location.startswith("\\") or (len(location) > 1 and location[1] == ":")
        try:
            if not location or windows_absolute:
                raise UnsafeName("absolute or empty")
            resolve_inside(folder, location)
        except UnsafeName:
            raise ValueError(f"external data location {location!r} points outside the model's folder") from None


def inspect_model(path: Path, test_run: bool = True) -> ValidationResult:
    """The child's work: external-data check, a CPU session, the tensor list and optionally one run."""
    try:
        check_external_data(path)
    except (ValueError, OSError) as exc:
        return ValidationResult(False, str(exc))
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for every kind of bad file
        return ValidationResult(False, f"ONNX Runtime cannot load the model: {_short(exc)}")
    try:
        inputs = [tensor_info(arg) for arg in session.get_inputs()]
        outputs = [tensor_info(arg) for arg in session.get_outputs()]
    except ValueError as exc:
        return ValidationResult(False, str(exc))
    if test_run:
        from modelrepo.datatypes import V2_TO_NUMPY

        feed = {}
        for tensor in inputs:
            shape = [1 if d < 0 else d for d in tensor.shape]
            if tensor.datatype == "BYTES":
                feed[tensor.name] = np.full(shape, "", dtype=object)
            else:
                feed[tensor.name] = np.ones(shape, V2_TO_NUMPY[tensor.datatype])
        try:
            session.run(None, feed)
        except Exception as exc:
            problem = f"a test run on ones (dynamic dimensions = 1) failed: {_short(exc)}"
            return ValidationResult(True, "", inputs, outputs, test_run_error=problem)
    return ValidationResult(True, "", inputs, outputs)


def main(argv: Sequence[str] | None = None) -> int:
    """Child entry point: validate one file and print one JSON line on the original stdout."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m service.validation", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--no-test-run", action="store_true", help="skip the test run")
    parser.add_argument("--memory-limit-mb", type=int, default=None, help="address-space limit for this process")
    args = parser.parse_args(argv)
    # Keep stdout for the result alone: native code printing to fd 1 now lands on stderr.
    result_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    _limit_resources(args.memory_limit_mb)
    result = inspect_model(args.model, test_run=not args.no_test_run)
    result_out.write(json.dumps(asdict(result)) + "\n")
    result_out.flush()
    return 0 if result.ok else 1


def _limit_resources(memory_limit_mb: int | None) -> None:
    """No core dumps from a crash; an address-space cap so a memory bomb fails here, not in the server."""
    try:
        import resource
    except ImportError:  # not on Windows; the timeout still bounds the child there
        return
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_limit_mb is not None:
        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


# Which fields of which ONNX messages hold sub-messages that may (transitively) hold a TensorProto.
_SCHEMA: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},  # ModelProto
    "training": {1: "graph", 2: "graph"},  # TrainingInfoProto.initialization / algorithm
    "function": {7: "node", 11: "attribute"},  # FunctionProto.node / attribute_proto
    "graph": {1: "node", 5: "tensor", 15: "sparse"},  # GraphProto.node / initializer / sparse_initializer
    "node": {5: "attribute"},  # NodeProto.attribute
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},  # SparseTensorProto.values / indices
}
_TENSOR_EXTERNAL_DATA = 13  # TensorProto.external_data: repeated StringStringEntryProto {1: key, 2: value}
_MAX_DEPTH = 64


def _walk(view: memoryview, start: int, end: int, kind: str, out: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError("the model nests subgraphs too deeply")
    for number, begin, stop in _length_delimited(view, start, end):
        if kind == "tensor":
            if number == _TENSOR_EXTERNAL_DATA:
                entry = {n: bytes(view[b:s]) for n, b, s in _length_delimited(view, begin, stop)}
                if entry.get(1) == b"location":
                    out.append(entry.get(2, b"").decode("utf-8", "replace"))
        elif number in _SCHEMA[kind]:
            _walk(view, begin, stop, _SCHEMA[kind][number], out, depth + 1)


def _length_delimited(view: memoryview, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, start, stop) of each length-delimited field of one message; other fields skipped."""
    while pos < end:
        key, pos = _varint(view, pos, end)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, pos = _varint(view, pos, end)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length, pos = _varint(view, pos, end)
            if pos + length > end:
                raise ValueError("the model file is truncated or not an ONNX protobuf")
            yield number, pos, pos + length
            pos += length
        else:
            raise ValueError("the model file is not an ONNX protobuf (unexpected wire type)")
        if pos > end:
            raise ValueError("the model file is truncated or not an ONNX protobuf")


def _varint(view: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("the model file is truncated or not an ONNX protobuf")
        byte = view[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def tensor_info(arg: Any) -> TensorInfo:  # arg: onnxruntime.NodeArg (ONNX Runtime ships no types)
    datatype = ORT_TO_V2.get(arg.type)
    if datatype is None:
        raise ValueError(f"tensor '{arg.name}' has type {arg.type}, which the V2 protocol cannot carry")
    shape = [d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or [])]
    return TensorInfo(arg.name, datatype, shape)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _tail(stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    return f": {text[-_STDERR_TAIL:]}" if text else ""


def _short(exc: Exception) -> str:
    text = str(exc).strip().replace("\n", " ")
    return text if len(text) <= 500 else text[:497] + "..."


if __name__ == "__main__":
    sys.exit(main())
