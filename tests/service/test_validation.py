"""ONNX validation in a child process: bad files and crashing children become clean failure reasons."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.validation import (
    TensorInfo,
    check_external_data,
    external_data_locations,
    run_validator,
    validate_model,
)

# ONNX Runtime reads IR versions up to its own; pin one every supported release knows.
IR_VERSION = 9


def _matmul_model(weight_name: str = "w") -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.eye(4, dtype=np.float32) * 2, weight_name)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", weight_name], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)


def _externalise(model: onnx.ModelProto, location: str) -> onnx.ModelProto:
    """Point the first initializer at an external file, as onnx.save_model(save_as_external_data=True) would."""
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    return model


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "tiny" / "1"
    path.mkdir(parents=True)
    return path


@pytest.fixture()
def weights_outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside.bin"
    (np.eye(4, dtype=np.float32) * 2).tofile(path)
    return path


def test_good_model_passes_with_its_tensors(folder: Path):
    onnx.save(_matmul_model(), folder / "model.onnx")
    result = validate_model(folder / "model.onnx")
    assert result.ok, result.reason
    assert result.inputs == [TensorInfo("x", "FP32", [-1, 4])]
    assert result.outputs == [TensorInfo("y", "FP32", [-1, 4])]


def test_external_data_inside_the_folder_passes(folder: Path):
    (np.eye(4, dtype=np.float32) * 2).tofile(folder / "weights.bin")
    onnx.save(_externalise(_matmul_model(), "weights.bin"), folder / "model.onnx")
    assert validate_model(folder / "model.onnx").ok


def test_truncated_model_fails_cleanly(folder: Path):
    onnx.save(_matmul_model(), folder / "full.onnx")
    data = (folder / "full.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(data[: len(data) // 2])
    result = validate_model(folder / "model.onnx")
    assert not result.ok
    assert "truncated" in result.reason or "cannot load" in result.reason
    assert result.inputs == []


@pytest.mark.parametrize(
    "content,reason",
    [
        (b"", "the model file is empty"),
        (b"this is not a model\n" * 10, "protobuf|cannot load"),
        (b"not onnx", "not an ONNX protobuf"),
    ],
)
def test_empty_or_garbage_file_fails_cleanly(folder: Path, content: bytes, reason: str):
    (folder / "model.onnx").write_bytes(content)
    result = validate_model(folder / "model.onnx")
    assert not result.ok
    assert any(word in result.reason for word in reason.split("|")), result.reason
    assert "without a result" not in result.reason  # the child reported it, it did not die


def test_missing_file_fails_cleanly(folder: Path):
    result = validate_model(folder / "nope.onnx")
    assert not result.ok and "No such file" in result.reason


@pytest.mark.parametrize("location", ["../../../outside.bin", "OUTSIDE_ABSOLUTE", "sub/../../../../outside.bin"])
def test_external_data_outside_the_folder_fails(folder: Path, weights_outside: Path, location: str):
    location = str(weights_outside) if location == "OUTSIDE_ABSOLUTE" else location
    assert (folder / location).resolve() == weights_outside.resolve()  # the file really is reachable
    onnx.save(_externalise(_matmul_model(), location), folder / "model.onnx")
    result = validate_model(folder / "model.onnx")
    assert not result.ok
    assert "points outside the model's folder" in result.reason


@pytest.mark.parametrize(
    "location", ["C:\\weights.bin", "c:weights.bin", "\\\\server\\share\\weights.bin", "\\weights.bin"]
)
def test_windows_absolute_external_data_is_refused_too(folder: Path, location: str):
    # Harmless on Linux, where it names a file in the folder, but a repository may be copied to Windows.
    onnx.save(_externalise(_matmul_model(), location), folder / "model.onnx")
    with pytest.raises(ValueError, match="points outside the model's folder"):
        check_external_data(folder / "model.onnx")


def test_subgraphs_nested_past_the_scan_depth_are_refused():
    # graph -> node -> attribute -> graph: three levels per subgraph, 30 subgraphs deep
    graph = onnx.GraphProto(name="innermost")
    for _ in range(30):
        attribute = onnx.AttributeProto(name="body", type=onnx.AttributeProto.GRAPH, g=graph)
        graph = onnx.GraphProto(node=[onnx.NodeProto(op_type="Loop", attribute=[attribute])])
    with pytest.raises(ValueError, match="nests subgraphs too deeply"):
        external_data_locations(onnx.ModelProto(graph=graph).SerializeToString())
    assert external_data_locations(onnx.ModelProto(graph=onnx.GraphProto()).SerializeToString()) == []


def test_external_data_through_a_symlink_leaving_the_folder_fails(folder: Path, weights_outside: Path):
    os.symlink(weights_outside, folder / "weights.bin")
    onnx.save(_externalise(_matmul_model(), "weights.bin"), folder / "model.onnx")
    result = validate_model(folder / "model.onnx")
    assert not result.ok and "points outside" in result.reason


def test_scan_finds_external_data_in_subgraphs_like_onnx_does(folder: Path):
    """The wire-format walk must see what onnx itself sees, including tensors inside an If branch."""
    inner = _externalise(_matmul_model("w_then"), "../../escape_then.bin").graph
    inner.ClearField("input")
    other = _matmul_model("w_else").graph
    other.ClearField("input")
    node = helper.make_node("If", ["cond"], ["y"], then_branch=inner, else_branch=other)
    constant = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.ones(2, np.float32), "c"))
    graph = helper.make_graph(
        [constant, node],
        "outer",
        [
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    attribute_tensor = model.graph.node[0].attribute[0].t
    attribute_tensor.ClearField("raw_data")
    attribute_tensor.ClearField("float_data")
    attribute_tensor.data_location = TensorProto.EXTERNAL
    entry = attribute_tensor.external_data.add()
    entry.key, entry.value = "location", "/etc/attribute.bin"

    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    expected = sorted(
        next(e.value for e in t.external_data if e.key == "location")
        for t in _get_all_tensors(model)
        if uses_external_data(t)
    )
    assert expected == ["../../escape_then.bin", "/etc/attribute.bin"]
    assert sorted(external_data_locations(model.SerializeToString())) == expected

    onnx.save(model, folder / "model.onnx")
    with pytest.raises(ValueError, match=r"escape_then|attribute"):
        check_external_data(folder / "model.onnx")
    result = validate_model(folder / "model.onnx")
    assert not result.ok and "points outside" in result.reason


def test_tensor_type_v2_cannot_carry_is_refused(folder: Path):
    graph = helper.make_graph(
        [helper.make_node("SequenceConstruct", ["x"], ["s"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, [2])],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION),
        folder / "model.onnx",
    )
    result = validate_model(folder / "model.onnx")
    assert not result.ok and "cannot carry" in result.reason


def test_model_failing_its_test_run_is_reported_unless_the_run_is_skipped(folder: Path):
    # Reported, not refused: the loader refuses it for a task model, serves a plain model (its inputs are the client's).
    # Reshape to a fixed 3 elements loads fine but cannot run on a [1, 4] input.
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([3], np.int64), "shape")],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION),
        folder / "model.onnx",
    )
    result = validate_model(folder / "model.onnx")
    assert result.ok and "test run" in result.test_run_error
    skipped = validate_model(folder / "model.onnx", test_run=False)
    assert skipped.ok and not skipped.test_run_error


def test_crashing_child_is_reported_not_propagated():
    result = run_validator([sys.executable, "-c", "import os; os.abort()"], timeout_s=30)
    assert not result.ok
    assert "crashed with SIGABRT" in result.reason


def test_segfaulting_child_is_reported():
    result = run_validator([sys.executable, "-c", "import ctypes; ctypes.string_at(0)"], timeout_s=30)
    assert not result.ok and "crashed with SIGSEGV" in result.reason


def test_hanging_child_is_killed_at_the_timeout():
    result = run_validator([sys.executable, "-c", "import time; time.sleep(60)"], timeout_s=0.5)
    assert not result.ok and "did not finish within 0.5 s" in result.reason


def test_child_without_a_result_is_a_failure():
    result = run_validator([sys.executable, "-c", "import sys; print('noise'); sys.exit(3)"], timeout_s=30)
    assert not result.ok and "exited with code 3 without a result" in result.reason


def test_memory_cap_applies_to_the_child(folder: Path):
    onnx.save(_matmul_model(), folder / "model.onnx")
    result = validate_model(folder / "model.onnx", memory_limit_mb=40)
    assert not result.ok  # the interpreter cannot even import numpy in 40 MiB of address space
    assert validate_model(folder / "model.onnx", memory_limit_mb=2048).ok


def test_the_test_run_feeds_ones_not_zeros(folder: Path):
    # Range(x, x, x) runs on x = 1 (an empty range) and fails on x = 0 (a zero step), as an all-zero length
    # or attention mask would trip a real model: a test run on zeros would blame a sound model.
    graph = helper.make_graph(
        [helper.make_node("Range", ["x", "x", "x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, ["n"])],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION),
        folder / "model.onnx",
    )
    result = validate_model(folder / "model.onnx")
    assert result.ok and result.test_run_error == "", result.test_run_error


def test_scan_finds_external_data_in_sparse_values_and_indices():
    def external(location: str) -> onnx.TensorProto:
        tensor = onnx.TensorProto(name=location, data_location=TensorProto.EXTERNAL)
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", location
        return tensor

    sparse = onnx.SparseTensorProto(values=external("../values.bin"), indices=external("../indices.bin"), dims=[4])
    model = onnx.ModelProto(graph=onnx.GraphProto(sparse_initializer=[sparse]))
    assert external_data_locations(model.SerializeToString()) == ["../values.bin", "../indices.bin"]


def test_the_child_exits_non_zero_for_a_refused_model(folder: Path):
    # `python -m service.validation <model.onnx>` is a command too: its status says what its JSON line says.
    (folder / "model.onnx").write_bytes(b"not onnx")
    child = subprocess.run(
        [sys.executable, "-m", "service.validation", str(folder / "model.onnx")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    assert child.returncode == 1
    assert json.loads(child.stdout)["ok"] is False
