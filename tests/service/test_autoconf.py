"""Any ONNX model, no config needed: a bare `<name>/<version>/model.onnx` is configured from its graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from modelrepo.config import ModelConfig
from modelrepo.layout import is_model_dir, model_names
from service.loader import DEFAULT_MAX_BATCH_SIZE, PlainCodec, complete_config
from service.validation import TensorInfo
from tests.support.app_harness import serving, tiny_settings


def save(graph: onnx.GraphProto, root: Path, name: str, config: dict | None = None) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (root / name / "1").mkdir(parents=True)
    onnx.save(model, str(root / name / "1" / "model.onnx"))
    if config is not None:
        (root / name / "config.json").write_text(json.dumps(config))


def scaler(root: Path, name: str = "scaler", config: dict | None = None) -> None:
    """y = 2x over FP32 [batch, 3]: a dynamic first axis, so it batches."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    save(helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "g", [x], [y], [two]), root, name, config)


def matmul(root: Path) -> None:
    """a @ b with fixed shapes [2, 3] x [3, 4]: no batch axis, and the inputs' first axes differ."""
    a = helper.make_tensor_value_info("a", TensorProto.DOUBLE, [2, 3])
    b = helper.make_tensor_value_info("b", TensorProto.DOUBLE, [3, 4])
    c = helper.make_tensor_value_info("c", TensorProto.DOUBLE, [2, 4])
    save(helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "g", [a, b], [c]), root, "matmul")


def typed(root: Path) -> None:
    """Identity over FP16, INT8, BOOL and STRING tensors, plus a scalar ReduceSum output."""
    nodes, ins, outs = [], [], []
    for name, elem in (("h", TensorProto.FLOAT16), ("i", TensorProto.INT8), ("b", TensorProto.BOOL),
                       ("s", TensorProto.STRING)):  # fmt: skip
        ins.append(helper.make_tensor_value_info(name, elem, [2]))
        outs.append(helper.make_tensor_value_info(name + "_out", elem, [2]))
        nodes.append(helper.make_node("Identity", [name], [name + "_out"]))
    outs.append(helper.make_tensor_value_info("total", TensorProto.FLOAT16, []))
    nodes.append(helper.make_node("ReduceSum", ["h"], ["total"], keepdims=0))
    save(helper.make_graph(nodes, "g", ins, outs), root, "typed")


def test_a_folder_with_only_a_model_file_is_a_model(tmp_path: Path) -> None:
    scaler(tmp_path)
    (tmp_path / "notes" / "1").mkdir(parents=True)  # a version folder without model.onnx: not a model
    (tmp_path / "notes" / "config.json").mkdir()  # nor is a folder that merely has that name
    assert is_model_dir(tmp_path, "scaler") and not is_model_dir(tmp_path, "notes")
    assert model_names(tmp_path) == ["scaler"]


def info(name: str, datatype: str, shape: list[int]) -> TensorInfo:
    return TensorInfo(name, datatype, shape)


def test_config_is_completed_from_the_graph() -> None:
    bare = ModelConfig.model_validate({"name": "m"})
    batched = complete_config(bare, [info("x", "FP32", [-1, 3])], [info("y", "FP32", [-1])])
    assert batched.max_batch_size == DEFAULT_MAX_BATCH_SIZE
    assert [(t.name, t.datatype, t.dims) for t in batched.inputs] == [("x", "FP32", [-1, 3])]
    fixed = complete_config(bare, [info("x", "FP32", [-1, 3])], [info("y", "FP32", [])])  # scalar out: no batch axis
    assert fixed.max_batch_size == 0
    # config.json overrides: its max_batch_size wins, and asking a model without a batch axis to batch is refused
    own = ModelConfig.model_validate({"name": "m", "max_batch_size": 8})
    assert complete_config(own, [info("x", "FP32", [-1, 3])], [info("y", "FP32", [-1])]).max_batch_size == 8
    for size in (8, 1):  # even 1 says the first axis is the batch, which a fixed axis of 2 is not
        fixed_axis = ModelConfig.model_validate({"name": "m", "max_batch_size": size})
        with pytest.raises(ValueError, match=f"max_batch_size {size} but tensor 'x' has no dynamic first axis"):
            complete_config(fixed_axis, [info("x", "FP32", [2, 3])], [info("y", "FP32", [2])])


def test_only_declared_inputs_are_padded() -> None:
    config = ModelConfig.model_validate({
        "name": "m",
        "inputs": [{"name": "ids", "datatype": "INT64", "dims": [-1, -1], "pad": True, "pad_value": 3},
                   {"name": "x", "datatype": "FP32", "dims": [-1, -1]}],
        "outputs": [{"name": "y", "datatype": "FP32", "dims": [-1]}],
    })  # fmt: skip
    assert PlainCodec(config, Path("."), None).pad_values == {"ids": 3.0}
    assert PlainCodec(config.model_copy(update={"max_batch_size": 0}), Path("."), None).pad_values == {}


async def test_bare_models_are_served_over_v2_json_and_binary(tmp_path: Path) -> None:
    scaler(tmp_path)
    matmul(tmp_path)
    typed(tmp_path)
    async with serving(tiny_settings(tmp_path)) as (_, client):
        meta = (await client.get("/v2/models/scaler")).json()
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
        assert meta["parameters"]["max_batch_size"] == DEFAULT_MAX_BATCH_SIZE
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}]}
        answer = (await client.post("/v2/models/scaler/infer", json=body)).json()
        assert answer["outputs"][0]["data"] == [2, 4, 6, 8, 10, 12]

        assert (await client.get("/v2/models/matmul")).json()["parameters"]["max_batch_size"] == 0
        a, b = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
        body = {"inputs": [{"name": "a", "datatype": "FP64", "shape": [2, 3], "data": a.ravel().tolist()},
                           {"name": "b", "datatype": "FP64", "shape": [3, 4], "data": b.ravel().tolist()}]}  # fmt: skip
        answer = (await client.post("/v2/models/matmul/infer", json=body)).json()
        assert answer["outputs"][0]["data"] == (a @ b).ravel().tolist()

        h = np.array([1.5, 2.25], np.float16)
        i = np.array([-7, 9], np.int8)
        header = {
            "inputs": [
                {"name": "h", "datatype": "FP16", "shape": [2], "parameters": {"binary_data_size": 4}},
                {"name": "i", "datatype": "INT8", "shape": [2], "parameters": {"binary_data_size": 2}},
                {"name": "b", "datatype": "BOOL", "shape": [2], "data": [True, False]},
                {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["héllo", "x"]},
            ],
        }
        raw = json.dumps(header).encode()
        response = await client.post(
            "/v2/models/typed/infer",
            content=raw + h.tobytes() + i.tobytes(),
            headers={"content-type": "application/octet-stream", "inference-header-content-length": str(len(raw))},
        )
        assert response.status_code == 200, response.text
        outputs = {o["name"]: o for o in response.json()["outputs"]}
        assert outputs["i_out"]["data"] == [-7, 9] and outputs["b_out"]["data"] == [True, False]
        assert outputs["s_out"]["data"] == ["héllo", "x"]  # not "b'h\\xc3\\xa9llo'"
        assert outputs["h_out"]["data"] == [1.5, 2.25]
        assert outputs["total"]["shape"] == [] and outputs["total"]["data"] == [3.75]


async def test_plain_models_are_listed_and_task_endpoints_refuse_them(tmp_path: Path) -> None:
    scaler(tmp_path, config={"max_batch_size": 4})  # a partial config: no name, no task, no tensors
    # With the validation child on: its tensor list is what completes the config.
    settings = tiny_settings(tmp_path, validate_models=True, auth={"management_token": "m"})
    async with serving(settings) as (_, client):
        listed = (await client.get("/v1/models/scaler")).json()
        assert listed["task"] is None and listed["state"] == "ready"
        assert listed["versions"][0]["batching"]["max_batch_size"] == 4
        assert listed["versions"][0]["preprocessing"] is None
        index = (await client.post("/v2/repository/index", headers={"Authorization": "Bearer m"})).json()
        assert [(m["name"], m["state"]) for m in index] == [("scaler", "READY")], index
        refused = await client.post("/v1/anomaly/score", json={"model": "scaler", "rows": [{"a": 1}]})
        assert refused.status_code in (400, 409, 422) and refused.json()["code"]


def reshape_to_3(root: Path, name: str, config: dict | None = None) -> None:
    """Reshape [batch, k] to [3]: loads, fails its test run on ones ([1, 4]), answers a [1, 3] input."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "k"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [3])
    save(helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g", [x], [y], [shape]), root, name,
         config)  # fmt: skip


async def test_a_failing_test_run_refuses_a_task_model_but_not_a_plain_one(tmp_path: Path) -> None:
    reshape_to_3(tmp_path, "plain")
    task = {"task": "anomaly", "preprocessing": {"kind": "tabular", "features": ["a"], "mean": [0], "scale": [1]},
            "anomaly": {"threshold": 1.0, "score_output": "y"}}  # fmt: skip
    reshape_to_3(tmp_path, "tasked", task)
    async with serving(tiny_settings(tmp_path, validate_models=True)) as (app, client):
        tasked = app.state.axon.registry.versions("tasked")[0]
        assert tasked.state.value == "unavailable" and "test run" in tasked.reason
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
        answer = await client.post("/v2/models/plain/infer", json=body)
        assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [1, 2, 3]
