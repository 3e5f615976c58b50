"""Serve the `onnx` package's node backend test cases from a bare repository and check Axon's answers.

Each case (a model nobody here wrote, with its inputs and expected outputs) becomes a model folder
`<case>/1/model.onnx` with no config.json, so its configuration is derived from the graph. The
inputs go over V2 (JSON and binary), and the answers are compared with the expected outputs; ONNX
Runtime runs the same cases in-process, so a case it passes but Axon fails is an Axon bug.

The pip wheel of `onnx` does not ship `onnx/backend/test/data/node`; the cases are generated here
from `onnx.backend.test.case.node` (the generator those files come from), with the same layout:
`model.onnx` and `test_data_set_0/input_*.pb, output_*.pb`.

    python benchmarks/backend_cases.py [--limit N] [--only NAME...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modelrepo.datatypes import NUMPY_TO_V2


@dataclass
class Case:
    """One backend test case: the model bytes, its inputs and expected outputs (in graph order)."""

    name: str
    model: bytes
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    rtol: float
    atol: float


def load_cases(names: Iterable[str] | None = None) -> list[Case]:
    """The node cases whose inputs and outputs are all plain tensors (no sequences, maps or optionals)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx import TensorProto
        from onnx.backend.test.case.node import collect_testcases

        cases = collect_testcases(None)
    wanted = set(names) if names is not None else None
    found = []
    for case in cases:
        if wanted is not None and case.name not in wanted:
            continue
        graph = case.model.graph
        if not case.data_sets or not all(v.type.HasField("tensor_type") for v in [*graph.input, *graph.output]):
            continue
        inputs, outputs = case.data_sets[0]
        if not all(isinstance(a, np.ndarray | np.generic | TensorProto) for a in [*inputs, *outputs]):
            continue  # sequences, maps, optionals: no V2 tensor
        found.append(
            Case(
                case.name,
                case.model.SerializeToString(),
                {v.name: _array(a) for v, a in zip(graph.input, inputs)},
                {v.name: _array(a) for v, a in zip(graph.output, outputs)},
                case.rtol,
                case.atol,
            )
        )
    return sorted(found, key=lambda c: c.name)


def _array(value: Any) -> np.ndarray:
    from onnx import TensorProto, numpy_helper

    return numpy_helper.to_array(value) if isinstance(value, TensorProto) else np.asarray(value)


def write_repository(cases: list[Case], root: Path) -> None:
    """Each case as `<root>/<case>/1/model.onnx` plus its test data set, and no config.json."""
    from onnx import numpy_helper

    for case in cases:
        version = root / case.name / "1"
        data = version / "test_data_set_0"
        data.mkdir(parents=True, exist_ok=True)
        (version / "model.onnx").write_bytes(case.model)
        for prefix, tensors in (("input", case.inputs), ("output", case.outputs)):
            for i, (name, array) in enumerate(tensors.items()):
                (data / f"{prefix}_{i}.pb").write_bytes(numpy_helper.from_array(array, name).SerializeToString())


def servable(case: Case) -> str | None:
    """Why V2 cannot carry this case's tensors (a datatype it has no name for), else None."""
    for name, array in [*case.inputs.items(), *case.outputs.items()]:
        if array.dtype.kind in "OSU":
            continue
        if array.dtype not in NUMPY_TO_V2:
            return f"tensor {name!r} is {array.dtype}, which V2 cannot carry"
    return None


JSON_CANNOT = "JSON cannot carry NaN or infinity (binary only)"


def finite(case: Case) -> bool:
    """Whether every float input and output is finite, so JSON can carry them."""
    arrays = [*case.inputs.values(), *case.outputs.values()]
    return all(bool(np.isfinite(a).all()) for a in arrays if a.dtype.kind == "f")


def compare(case: Case, got: dict[str, np.ndarray]) -> str | None:
    """None when every expected output matches (tolerances from the case, loosened for FP16), else why not."""
    for name, want in case.outputs.items():
        have = got.get(name)
        if have is None:
            return f"output {name!r} missing"
        if want.dtype.kind in "OSU":
            want_bytes = [x.encode() if isinstance(x, str) else bytes(x) for x in want.ravel()]
            have_bytes = [x.encode() if isinstance(x, str) else bytes(x) for x in np.asarray(have).ravel()]
            if want_bytes != have_bytes or list(np.shape(have)) != list(want.shape):
                return f"output {name!r} differs"
            continue
        rtol, atol = (
            (max(case.rtol, 1e-3), max(case.atol, 1e-3)) if want.dtype == np.float16 else (case.rtol, case.atol)
        )
        try:
            np.testing.assert_allclose(np.asarray(have), want, rtol=rtol, atol=atol, strict=True)
        except AssertionError as exc:
            return f"output {name!r} differs: {str(exc).strip().splitlines()[0]}"
    return None


def run_in_process(case: Case) -> str | None:
    """ONNX Runtime alone on the case: None when it passes, else why not."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(case.model, options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        got = dict(zip(names, session.run(names, case.inputs)))
    except Exception as exc:
        return f"onnxruntime: {type(exc).__name__}"
    return compare(case, got)


def v2_request(case: Case, binary: bool) -> tuple[bytes, dict[str, str]]:
    """A V2 infer request for the case's inputs, JSON or with binary tensors, asking for every output."""
    import json

    tensors, blobs = [], []
    for name, array in case.inputs.items():
        datatype = "BYTES" if array.dtype.kind in "OSU" else NUMPY_TO_V2[array.dtype]
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            raw = _bytes_wire(array) if datatype == "BYTES" else np.ascontiguousarray(array).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            flat = array.ravel()
            tensor["data"] = [_text(x) for x in flat] if datatype == "BYTES" else flat.tolist()
        tensors.append(tensor)
    outputs = [{"name": n, "parameters": {"binary_data": binary}} for n in case.outputs]
    header = json.dumps({"inputs": tensors, "outputs": outputs}).encode()
    if not binary:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }


def v2_answer(body: bytes, headers: Any) -> dict[str, np.ndarray]:
    """The outputs of a V2 answer (JSON or binary) as numpy arrays."""
    import json

    from modelrepo.datatypes import V2_TO_NUMPY

    length = headers.get("inference-header-content-length")
    header = json.loads(body[: int(length)] if length else body)
    offset = int(length) if length else 0
    out = {}
    for tensor in header["outputs"]:
        shape, datatype = tensor["shape"], tensor["datatype"]
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            raw = body[offset : offset + size]
            offset += size
            if datatype == "BYTES":
                out[tensor["name"]] = np.array(_bytes_unwire(raw), dtype=object).reshape(shape)
            else:
                out[tensor["name"]] = np.frombuffer(raw, V2_TO_NUMPY[datatype]).reshape(shape)
        elif datatype == "BYTES":
            out[tensor["name"]] = np.array([x.encode() for x in tensor["data"]], dtype=object).reshape(shape)
        else:
            out[tensor["name"]] = np.array(tensor["data"], dtype=V2_TO_NUMPY[datatype]).reshape(shape)
    return out


def _text(x: object) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def _bytes_wire(array: np.ndarray) -> bytes:
    parts = []
    for x in array.ravel():
        raw = x if isinstance(x, bytes) else str(x).encode()
        parts.append(len(raw).to_bytes(4, "little") + raw)
    return b"".join(parts)


def _bytes_unwire(raw: bytes) -> list[bytes]:
    items, pos = [], 0
    while pos < len(raw):
        n = int.from_bytes(raw[pos : pos + 4], "little")
        items.append(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return items


async def run_served(client: Any, case: Case, binary: bool) -> str | None:
    """Axon on the case over V2: None when it answers what the case expects, else why not."""
    if not binary and not finite(case):
        return JSON_CANNOT
    body, headers = v2_request(case, binary)
    response = await client.post(f"/v2/models/{case.name}/infer", content=body, headers=headers)
    if response.status_code != 200:
        try:
            reason = response.json().get("error", "")
        except ValueError:
            reason = response.text
        return f"HTTP {response.status_code}: {reason[:120]}"
    return compare(case, v2_answer(response.content, response.headers))


async def serve_and_check(cases: list[Case], root: Path) -> dict[str, dict[str, str | None]]:
    """Write the repository, serve it in-process, and check every case in JSON and binary."""
    from tests.support.app_harness import serving, tiny_settings

    write_repository(cases, root)
    results: dict[str, dict[str, str | None]] = {}
    settings = tiny_settings(root, warmup_runs=0, max_body_bytes=64 * 1024 * 1024)
    async with serving(settings) as (app, client):
        registry = app.state.axon.registry
        for case in cases:
            entry = next(iter(registry.versions(case.name)), None)
            loaded = entry is not None and entry.state.value == "ready"
            row: dict[str, str | None] = {}
            for binary in (False, True):
                key = "binary" if binary else "json"
                row[key] = await run_served(client, case, binary) if loaded else f"not loaded: {entry and entry.reason}"
            results[case.name] = row
    return results


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N cases (by name)")
    parser.add_argument("--only", nargs="*", default=None, help="only these cases")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cases = load_cases(args.only)[: args.limit]
    ort_fail = {c.name: run_in_process(c) for c in cases}
    with tempfile.TemporaryDirectory() as tmp:
        served = asyncio.run(serve_and_check(cases, Path(tmp)))
    ort_pass = [n for n, why in ort_fail.items() if why is None]
    axon_json = [n for n, r in served.items() if r["json"] is None]
    non_finite = [n for n, r in served.items() if r["json"] == JSON_CANNOT]
    axon_binary = [n for n, r in served.items() if r["binary"] is None]
    print(f"{len(cases)} node cases with plain tensors ({time.perf_counter() - start:.0f} s)")
    print(f"ONNX Runtime in-process: {len(ort_pass)} pass")
    print(f"Axon over V2 JSON:       {len(axon_json)} pass ({len(non_finite)} cases hold NaN/inf: binary only)")
    print(f"Axon over V2 binary:     {len(axon_binary)} pass")
    bugs = {n: served[n] for n in ort_pass if served[n]["json"] not in (None, JSON_CANNOT) or served[n]["binary"]}
    print(f"passed by ONNX Runtime but not by Axon: {len(bugs)}")
    reasons = Counter(_kind(r["json"] or r["binary"] or "") for r in bugs.values())
    for reason, count in reasons.most_common():
        print(f"  {count:4d}  {reason}")
    for name, row in sorted(bugs.items()):
        print(f"    {name}: json={row['json']} binary={row['binary']}")
    return 0


def _kind(reason: str) -> str:
    return reason.split(":")[0] + (": " + reason.split(":")[1].strip()[:60] if ":" in reason else "")


if __name__ == "__main__":
    sys.exit(main())
