"""The V2 REST routes in process: metadata, readiness, JSON and binary inference on the shared batchers, errors."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import onnxruntime as ort
import pytest

from modelrepo.scoring import softmax
from service.v2.binary import HEADER_LENGTH
from tests.support.app_harness import metric, serving, tiny_settings
from tests.support.tiny_models import N_FEATURES, VOCAB, add_model, build_repository

IMAGE = np.random.default_rng(0).normal(size=(3, 1, 28, 28)).astype(np.float32)


@pytest.fixture
def repo(tmp_path):
    root = build_repository(tmp_path / "models")
    add_model(root, "digits2", "digits", versions=(1, 2), version_policy={"all": {}})
    add_model(root, "broken", "digits")
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not onnx")
    return root


def tensor(name: str, array: np.ndarray, datatype: str) -> dict:
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": array.reshape(-1).tolist()}


def text_inputs(ids: list[list[int]]) -> list[dict]:
    width = max(map(len, ids))
    padded = np.array([row + [0] * (width - len(row)) for row in ids], np.int64)
    mask = np.array([[1] * len(row) + [0] * (width - len(row)) for row in ids], np.int64)
    return [tensor("input_ids", padded, "INT64"), tensor("attention_mask", mask, "INT64")]


def ort_run(path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


def binary_body(header: dict, tensors: list[bytes]) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + b"".join(tensors), {HEADER_LENGTH: str(len(head)), "Content-Type": "application/octet-stream"}


def split_binary(response) -> tuple[dict, bytes]:
    length = int(response.headers[HEADER_LENGTH])
    return json.loads(response.content[:length]), response.content[length:]


def assert_v2_error(response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and message in body["error"], body


async def test_server_metadata_names_the_extensions(repo):
    async with serving(tiny_settings(repo)) as (_, client):
        r = await client.get("/v2")
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "axon" and body["version"] == "0.1.0"
    assert {"binary_tensor_data", "model_repository"} <= set(body["extensions"])


async def test_model_metadata_with_and_without_version(repo):
    async with serving(tiny_settings(repo)) as (_, client):
        latest = (await client.get("/v2/models/digits2")).json()
        one = (await client.get("/v2/models/digits2/versions/1")).json()
        spam = (await client.get("/v2/models/spam")).json()
        thyroid = (await client.get("/v2/models/thyroid")).json()
    assert latest["name"] == "digits2" and latest["platform"] == "onnxruntime_onnx"
    assert latest["versions"] == ["2", "1"] and one["versions"] == ["2", "1"]
    assert latest["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert one["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    assert [(t["name"], t["datatype"], t["shape"]) for t in spam["inputs"]] == [
        ("input_ids", "INT64", [-1, -1]),
        ("attention_mask", "INT64", [-1, -1]),
    ]
    assert [t["name"] for t in thyroid["outputs"]] == ["reconstruction", "score"]
    assert thyroid["outputs"][1]["shape"] == [-1]
    assert latest["parameters"]["task"] == "vision" and "CPUExecutionProvider" in latest["parameters"]["providers"]


async def test_metadata_of_a_model_that_failed_to_load_says_so(repo):
    async with serving(tiny_settings(repo)) as (_, client):
        body = (await client.get("/v2/models/broken")).json()
    assert body["versions"] == [] and body["parameters"]["state"] == "unavailable"
    assert body["inputs"][0]["name"] == "image"  # what its config declares, for a client to prepare


async def test_metadata_without_a_version_describes_the_newest_ready_one(repo):
    add_model(repo, "digits3", "digits", versions=(1, 2), version_policy={"all": {}})
    (repo / "digits3" / "2" / "model.onnx").write_bytes(b"not onnx")
    async with serving(tiny_settings(repo)) as (_, client):
        body = (await client.get("/v2/models/digits3")).json()
        newest = (await client.get("/v2/models/digits3/versions/2")).json()
    assert body["versions"] == ["1"] and body["parameters"]["state"] == "ready"
    assert newest["parameters"]["state"] == "unavailable"  # still described when asked for by number


async def test_readiness_per_model_and_version(repo):
    async with serving(tiny_settings(repo)) as (_, client):
        assert (await client.get("/v2/models/digits/ready")).json() == {"name": "digits", "ready": True}
        assert (await client.get("/v2/models/digits2/versions/1/ready")).status_code == 200
        assert_v2_error(await client.get("/v2/models/broken/ready"), 503, "model 'broken' version 1 is unavailable")
        assert_v2_error(await client.get("/v2/models/nope/ready"), 404, "model 'nope' is not in the repository")
        assert_v2_error(await client.get("/v2/models/digits/versions/9/ready"), 404, "model 'digits' has no version 9")


@pytest.mark.parametrize(
    "path,status,message",
    [
        ("/v2/models/nope", 404, "model 'nope' is not in the repository"),
        ("/v2/models/digits/versions/7", 404, "model 'digits' has no version 7"),
        ("/v2/models/digits/versions/abc", 400, "not a positive integer"),
        ("/v2/models/digits/versions/01", 400, "not a positive integer"),
        ("/v2/models/digits/versions/-1", 400, "not a positive integer"),
        ("/v2/models/%2e%2e", 400, "'..'"),
        ("/v2/models/..%5cetc", 400, "path separator"),
        ("/v2/models/%00x", 400, "NUL"),
        ("/v2/models/.hidden", 400, "not allowed"),
        ("/v2/models/a%2Fb", 404, "no route"),  # the decoded '/' splits the path: no route matches
    ],
)
async def test_metadata_errors(repo, path, status, message):
    async with serving(tiny_settings(repo)) as (_, client):
        assert_v2_error(await client.get(path), status, message)


async def test_statistics_and_config_of_one_version(repo):
    async with serving(tiny_settings(repo)) as (_, client):
        r = await client.post("/v2/models/digits2/versions/2/infer", json={"inputs": [tensor("image", IMAGE, "FP32")]})
        assert r.status_code == 200, r.text
        (one,) = (await client.get("/v2/models/digits2/versions/2/stats")).json()["model_stats"]
        both = (await client.get("/v2/models/digits2/stats")).json()["model_stats"]
        config = await client.get("/v2/models/digits2/versions/1/config")
        assert_v2_error(await client.get("/v2/models/digits2/versions/7/stats"), 404, "has no version 7")
        assert_v2_error(await client.get("/v2/models/digits2/versions/7/config"), 404, "has no version 7")
    # Triton counts inferences per row and executions per batch: one request of 3 images is 3 and 1.
    assert (one["name"], one["version"], one["inference_count"], one["execution_count"]) == ("digits2", "2", 3, 1)
    assert sorted(row["version"] for row in both) == ["1", "2"]
    assert config.status_code == 200 and config.json()["name"] == "digits2"


async def test_json_inference_matches_onnx_runtime_and_echoes_the_id(repo):
    async with serving(tiny_settings(repo)) as (_, client):
        r = await client.post(
            "/v2/models/digits/infer", json={"id": "req-7", "inputs": [tensor("image", IMAGE, "FP32")]}
        )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("digits", "1", "req-7")
    (out,) = body["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == ("logits", "FP32", [3, 10])
    want = ort_run(repo / "digits" / "1" / "model.onnx", {"image": IMAGE})["logits"]
    np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(3, 10), want, rtol=1e-5, atol=1e-6)


async def test_only_requested_outputs_come_back_in_the_order_asked(repo):
    rows = np.random.default_rng(1).normal(size=(4, N_FEATURES)).astype(np.float32)
    async with serving(tiny_settings(repo)) as (_, client):
        body = {"inputs": [tensor("features", rows, "FP32")], "outputs": [{"name": "score"}]}
        only = (await client.post("/v2/models/thyroid/infer", json=body)).json()
        body["outputs"] = [{"name": "score"}, {"name": "reconstruction"}]
        both = (await client.post("/v2/models/thyroid/infer", json=body)).json()
    assert [o["name"] for o in only["outputs"]] == ["score"] and only["outputs"][0]["shape"] == [4]
    assert [o["name"] for o in both["outputs"]] == ["score", "reconstruction"]
    want = ort_run(repo / "thyroid" / "1" / "model.onnx", {"features": rows})["score"]
    np.testing.assert_allclose(only["outputs"][0]["data"], want, rtol=1e-5)


async def test_binary_request_and_binary_response(repo):
    header = {
        "inputs": [
            {
                "name": "image",
                "shape": [3, 1, 28, 28],
                "datatype": "FP32",
                "parameters": {"binary_data_size": IMAGE.nbytes},
            }
        ],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
    }
    content, headers = binary_body(header, [IMAGE.tobytes()])
    async with serving(tiny_settings(repo)) as (_, client):
        r = await client.post("/v2/models/digits/infer", content=content, headers=headers)
        mixed = await client.post(
            "/v2/models/digits/infer",
            content=content,
            headers=headers | {HEADER_LENGTH: str(len(content) - IMAGE.nbytes)},
        )
        everything = {**header, "parameters": {"binary_data_output": True}, "outputs": []}
        default_binary = await client.post(
            "/v2/models/digits/infer",
            content=binary_body(everything, [IMAGE.tobytes()])[0],
            headers=headers | {HEADER_LENGTH: str(len(json.dumps(everything)))},
        )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    head, raw = split_binary(r)
    (out,) = head["outputs"]
    assert out["parameters"] == {"binary_data_size": 3 * 10 * 4} and "data" not in out
    want = ort_run(repo / "digits" / "1" / "model.onnx", {"image": IMAGE})["logits"]
    np.testing.assert_allclose(np.frombuffer(raw, "<f4").reshape(3, 10), want, rtol=1e-5, atol=1e-6)
    assert mixed.status_code == 200
    assert default_binary.status_code == 200 and HEADER_LENGTH in default_binary.headers


async def test_text_rows_of_different_lengths_are_padded_in_the_shared_batch(repo):
    short, long = [[2, 3]], [[2, 3, 4, 5, 14]]
    async with serving(tiny_settings(repo, max_delay_ms=50)) as (_, client):
        alone = [
            (await client.post("/v2/models/spam/infer", json={"inputs": text_inputs(ids)})).json()
            for ids in (short, long)
        ]
        together = await asyncio.gather(
            *(client.post("/v2/models/spam/infer", json={"inputs": text_inputs(ids)}) for ids in (short, long) * 4)
        )
        scrape = (await client.get("/metrics")).text
    for i, r in enumerate(together):
        assert r.status_code == 200
        np.testing.assert_allclose(
            r.json()["outputs"][0]["data"], alone[i % 2]["outputs"][0]["data"], rtol=1e-5, atol=1e-6
        )
    batches = metric(scrape, "axon_batch_size_count", model="spam", version="1")
    rows = metric(scrape, "axon_batch_size_sum", model="spam", version="1")
    assert rows == 10 and batches < 8  # 2 + 8 rows; the 8 concurrent ones shared batches


async def test_v2_and_task_requests_share_one_batcher_and_agree(repo):
    texts = ["win cash now", "see you later", "call me"]
    tokens = [[2] + [VOCAB.index(w) for w in t.split()] for t in texts]
    async with serving(tiny_settings(repo, max_delay_ms=50)) as (_, client):
        v2 = client.post("/v2/models/spam/infer", json={"inputs": text_inputs(tokens)})
        task = client.post("/v1/text/classify", json={"texts": texts, "model": "spam"})
        v2_r, task_r = await asyncio.gather(v2, task)
        scrape = (await client.get("/metrics")).text
    logits = np.array(v2_r.json()["outputs"][0]["data"], np.float32).reshape(3, 2)
    probs = [p["scores"]["spam"] for p in task_r.json()["predictions"]]
    np.testing.assert_allclose(softmax(logits)[:, 1], probs, rtol=1e-5)
    # One queue, two runs: the task's raw texts are tokenized with their batch, so they batch with raw texts only
    assert metric(scrape, "axon_batch_size_count", model="spam", version="1") == 2
    assert metric(scrape, "axon_batch_size_sum", model="spam", version="1") == 6
    assert metric(scrape, "axon_requests_total", model="spam", endpoint="v2", status="200") == 1


async def test_without_a_version_the_newest_ready_answers(repo):
    body = {"inputs": [tensor("image", IMAGE[:1], "FP32")]}
    async with serving(tiny_settings(repo)) as (_, client):
        newest = (await client.post("/v2/models/digits2/infer", json=body)).json()
        first = (await client.post("/v2/models/digits2/versions/1/infer", json=body)).json()
    assert newest["model_version"] == "2" and first["model_version"] == "1"
    assert newest["outputs"][0]["data"] != first["outputs"][0]["data"]  # different weights per version


def _image(shape, datatype="FP32", dtype=np.float32):
    return {
        "inputs": [
            {
                "name": "image",
                "shape": shape,
                "datatype": datatype,
                "data": np.zeros(int(np.prod(shape)), dtype).tolist(),
            }
        ]
    }


@pytest.mark.parametrize(
    "body,message",
    [
        (_image([1, 1, 28, 28], "FP64", np.float64), "input 'image' of model 'digits' version 1 is FP32, got FP64"),
        (_image([1, 1, 28, 28], "INT64", np.int64), "is FP32, got INT64"),
        (_image([1, 28, 28]), "got [1, 28, 28] (rank 3)"),
        (_image([1, 1, 28, 27]), "has shape [-1, 1, 28, 28], got [1, 1, 28, 27] (axis 3)"),
        (_image([0, 1, 28, 28]), "empty axis 0"),
        (
            {"inputs": [{"name": "image", "shape": [-1, 1, 28, 28], "datatype": "FP32", "data": [0.0]}]},
            "negative dimension",
        ),
        (
            {"inputs": [{"name": "image", "shape": [10**9, 10**9, 28, 28], "datatype": "FP32", "data": [0.0]}]},
            "more than the limit",
        ),
        (
            {"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 3}]},
            "has 3 elements but shape",
        ),
        ({"inputs": [{"name": "pixels", "shape": [1], "datatype": "FP32", "data": [0.0]}]}, "has no input 'pixels'"),
        ({"inputs": []}, "needs input 'image'"),
        (
            {"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "FLOAT", "data": [0.0]}]},
            "unsupported datatype 'FLOAT'",
        ),
        ({**_image([1, 1, 28, 28]), "outputs": [{"name": "probs"}]}, "has no output 'probs'"),
        ({"inputs": "image"}, "invalid InferenceRequest"),
    ],
)
async def test_bad_tensors_are_refused_before_anything_is_queued(repo, body, message):
    async with serving(tiny_settings(repo)) as (_, client):
        r = await client.post("/v2/models/digits/infer", json=body)
        scrape = (await client.get("/metrics")).text
    assert_v2_error(r, 400, message)
    assert metric(scrape, "axon_batch_size_count", model="digits", version="1") == 0


@pytest.mark.parametrize(
    "ids,message",
    [
        ([[2, 3, 4, 5, 6, 7, 8]], "has 7 tokens per row; the limit is 6"),
        ([[2, len(VOCAB)]], f"must lie in [0, {len(VOCAB)})"),
        ([[2, -1]], "must lie in"),
    ],
)
async def test_text_tensors_the_model_cannot_take_are_refused(repo, ids, message):
    async with serving(tiny_settings(repo)) as (_, client):
        r = await client.post("/v2/models/spam/infer", json={"inputs": text_inputs(ids)})
    assert_v2_error(r, 400, message)


async def test_rows_that_disagree_are_refused(repo):
    inputs = text_inputs([[2, 3]])
    inputs[1] = tensor("attention_mask", np.ones((2, 2), np.int64), "INT64")
    async with serving(tiny_settings(repo)) as (_, client):
        assert_v2_error(
            await client.post("/v2/models/spam/infer", json={"inputs": inputs}), 400, "disagree on their number of rows"
        )


async def test_binary_framing_errors(repo):
    ok_header = {
        "inputs": [
            {"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32", "parameters": {"binary_data_size": 784 * 4}}
        ]
    }
    raw = np.zeros(784, np.float32).tobytes()
    async with serving(tiny_settings(repo)) as (_, client):
        content, headers = binary_body(ok_header, [raw[:-4]])
        short = await client.post("/v2/models/digits/infer", content=content, headers=headers)
        lying = json.loads(json.dumps(ok_header))
        lying["inputs"][0]["parameters"]["binary_data_size"] = 784 * 4 - 4
        content, headers = binary_body(lying, [raw[:-4]])
        mismatch = await client.post("/v2/models/digits/infer", content=content, headers=headers)
        content, headers = binary_body(ok_header, [raw, b"extra"])
        extra = await client.post("/v2/models/digits/infer", content=content, headers=headers)
        too_long = await client.post("/v2/models/digits/infer", content=b"{}", headers={HEADER_LENGTH: "99"})
        not_number = await client.post("/v2/models/digits/infer", content=b"{}", headers={HEADER_LENGTH: "x"})
        not_json = await client.post(
            "/v2/models/digits/infer", content=b"{nope", headers={"Content-Type": "application/json"}
        )
    assert_v2_error(short, 400, "declares 3136 binary bytes but only 3132 remain")
    assert_v2_error(mismatch, 400, "needs 3136 bytes, got 3132")
    assert_v2_error(extra, 400, "5 bytes after the last tensor")
    assert_v2_error(too_long, 400, "is 99 but the body has only 2 bytes")
    assert_v2_error(not_number, 400, "must be a non-negative integer")
    assert_v2_error(not_json, 400, "not valid JSON")


async def test_unknown_and_unready_models_on_infer(repo):
    body = _image([1, 1, 28, 28])
    async with serving(tiny_settings(repo)) as (_, client):
        assert_v2_error(
            await client.post("/v2/models/nope/infer", json=body), 404, "model 'nope' is not in the repository"
        )
        assert_v2_error(await client.post("/v2/models/digits/versions/3/infer", json=body), 404, "has no version 3")
        assert_v2_error(
            await client.post("/v2/models/broken/infer", json=body), 503, "model 'broken' version 1 is unavailable"
        )
        assert_v2_error(await client.post("/v2/models/..%2f..%2fetc/infer", json=body), 404, "no route")
        assert_v2_error(await client.post("/v2/models/%2e%2e/infer", json=body), 400, "'..'")
