"""A standard V2 gRPC client, unchanged: `tritonclient.grpc` against `python -m service` with AXON_GRPC_PORT set.

The same server also answers `tritonclient.http`, so config and statistics are checked to agree over both.
An inference token is configured, so every call also proves the bearer token travels in gRPC metadata.
"""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from service.repository import discover_model
from tests.service.test_autoconf import matmul, scaler
from tests.support.default_repo import default_repository, real_inputs
from tests.support.live_server import free_port, live_server

TOKEN = "grpc-inference-token"
MANAGEMENT = "grpc-management-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
MANAGER = {"authorization": f"Bearer {MANAGEMENT}"}


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    # default_repository may be the committed models/ itself: the bare models go into a copy, never into it.
    root = tmp_path_factory.mktemp("repo") / "models"
    shutil.copytree(default_repository(tmp_path_factory.mktemp("models")), root)
    scaler(root)  # bare `scaler/1/model.onnx`, no config.json: configured from its graph (issue 10)
    matmul(root)  # bare too, with fixed shapes: served without batching
    return root


@pytest.fixture(scope="module")
def ports(repository: Path, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """(http host:port, grpc host:port) of one server process with both protocols."""
    grpc_port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {
        "AXON_MODEL_REPOSITORY": str(repository),
        "AXON_GRPC_PORT": str(grpc_port),
        "AXON_AUTH__INFERENCE_TOKEN": TOKEN,
        "AXON_AUTH__MANAGEMENT_TOKEN": MANAGEMENT,
        "AXON_AUTH__LOCAL_MANAGEMENT": "false",  # as on a network interface: the token is the only way in
        "AXON_ACCESS_LOG": "false",
        "AXON_GRPC_COMPRESSION": "gzip",  # every call here reads gzip answers, as Triton's clients do
    }
    with live_server(log, **env) as url:
        yield url.removeprefix("http://"), f"127.0.0.1:{grpc_port}"


@pytest.fixture(scope="module")
def client(ports) -> Iterator[grpcclient.InferenceServerClient]:
    triton = grpcclient.InferenceServerClient(url=ports[1])
    yield triton
    triton.close()


@pytest.fixture(scope="module")
def http(ports) -> Iterator[httpclient.InferenceServerClient]:
    triton = httpclient.InferenceServerClient(url=ports[0])
    yield triton
    triton.close()


def onnx_runtime(repository: Path, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    (descriptor, *_) = discover_model(repository / name)
    session = ort.InferenceSession(str(descriptor.model_file), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


def test_health_metadata_and_the_standard_health_service(client, ports):
    assert client.is_server_live(headers=AUTH) and client.is_server_ready(headers=AUTH)
    metadata = client.get_server_metadata(headers=AUTH, as_json=True)
    assert metadata["name"] == "axon"
    assert {"model_configuration", "statistics", "model_repository"} <= set(metadata["extensions"])
    with grpc.insecure_channel(ports[1]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_model_metadata_and_readiness(client):
    metadata = client.get_model_metadata("mnist-cnn", headers=AUTH, as_json=True)
    assert metadata["name"] == "mnist-cnn" and metadata["platform"] == "onnxruntime_onnx"
    assert metadata["versions"] == ["1"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
        ("image", "FP32", ["-1", "1", "28", "28"])
    ]
    assert client.is_model_ready("mnist-cnn", headers=AUTH)
    assert not client.is_model_ready("mnist-cnn", model_version="2", headers=AUTH)
    assert not client.is_model_ready("no-such-model", headers=AUTH)


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
@pytest.mark.parametrize("name", ["mnist-cnn", "sms-spam-transformer", "thyroid-autoencoder"])
def test_inference_matches_onnx_runtime(client, repository, name, raw):
    tensors = real_inputs(repository, name, n=3)
    inputs = []
    for input_name, array in tensors.items():
        tensor = grpcclient.InferInput(input_name, list(array.shape), "INT64" if array.dtype == np.int64 else "FP32")
        tensor.set_data_from_numpy(array)
        if not raw:  # the typed-contents form of the same tensor
            contents = tensor._get_tensor().contents
            field = contents.int64_contents if array.dtype == np.int64 else contents.fp32_contents
            field.extend(array.reshape(-1).tolist())
            tensor._raw_content = None
        inputs.append(tensor)
    result = client.infer(name, inputs, request_id=f"{name}-{raw}", headers=AUTH)
    response = result.get_response(as_json=True)
    assert response["id"] == f"{name}-{raw}" and response["model_version"] == "1"
    want = onnx_runtime(repository, name, tensors)
    for output_name, expected in want.items():
        got = result.as_numpy(output_name)
        assert got is not None and got.shape[0] == 3
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_models_nobody_configured_answer_over_grpc(client, raw):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    b = np.linspace(-1, 1, 12).reshape(3, 4)
    for name, feed, output, expected in (
        ("scaler", {"x": x}, "y", x * 2),  # y = 2x, worked out by hand
        ("matmul", {"a": a, "b": b}, "c", a @ b),
    ):
        inputs = []
        for input_name, array in feed.items():
            datatype = "FP32" if array.dtype == np.float32 else "FP64"
            tensor = grpcclient.InferInput(input_name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            if not raw:
                contents = tensor._get_tensor().contents
                field = contents.fp32_contents if array.dtype == np.float32 else contents.fp64_contents
                field.extend(array.reshape(-1).tolist())
                tensor._raw_content = None
            inputs.append(tensor)
        metadata = client.get_model_metadata(name, headers=AUTH, as_json=True)
        assert [t["name"] for t in metadata["inputs"]] == list(feed)
        got = client.infer(name, inputs, headers=AUTH).as_numpy(output)
        assert got is not None
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_requested_outputs_only(client, repository):
    tensors = real_inputs(repository, "thyroid-autoencoder", n=2)
    tensor = grpcclient.InferInput("features", list(tensors["features"].shape), "FP32")
    tensor.set_data_from_numpy(tensors["features"])
    result = client.infer(
        "thyroid-autoencoder", [tensor], outputs=[grpcclient.InferRequestedOutput("score")], headers=AUTH
    )
    assert [o["name"] for o in result.get_response(as_json=True)["outputs"]] == ["score"]
    assert result.as_numpy("reconstruction") is None


def test_errors_carry_the_rest_message_and_a_matching_status(client):
    wrong = grpcclient.InferInput("image", [1, 1, 28, 28], "FP64")
    wrong.set_data_from_numpy(np.zeros((1, 1, 28, 28), np.float64))
    with pytest.raises(InferenceServerException) as dtype:
        client.infer("mnist-cnn", [wrong], headers=AUTH)
    assert dtype.value.status() == "StatusCode.INVALID_ARGUMENT" and "is FP32, got FP64" in dtype.value.message()
    short = grpcclient.InferInput("image", [1, 1, 28, 28], "FP32")
    short._get_tensor().contents.fp32_contents.extend([0.0] * 10)
    with pytest.raises(InferenceServerException) as count:
        client.infer("mnist-cnn", [short], headers=AUTH)
    assert count.value.status() == "StatusCode.INVALID_ARGUMENT" and "needs 784 values, got 10" in count.value.message()
    with pytest.raises(InferenceServerException) as unknown:
        client.get_model_metadata("no-such-model", headers=AUTH)
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    assert "model 'no-such-model' is not in the repository" in unknown.value.message()
    with pytest.raises(InferenceServerException) as missing:
        client.get_model_config("mnist-cnn", model_version="7", headers=AUTH)
    assert missing.value.status() == "StatusCode.NOT_FOUND" and "has no version 7" in missing.value.message()


def test_the_inference_token_is_demanded(client):
    with pytest.raises(InferenceServerException) as none:
        client.get_model_metadata("mnist-cnn")
    assert none.value.status() == "StatusCode.UNAUTHENTICATED" and "Bearer" in none.value.message()
    with pytest.raises(InferenceServerException) as wrong:
        client.get_model_metadata("mnist-cnn", headers={"authorization": "Bearer nope"})
    assert wrong.value.status() == "StatusCode.UNAUTHENTICATED" and "not valid" in wrong.value.message()
    assert client.is_server_live()  # health stays open, as over REST


def test_model_config_is_tritons_shape_and_equal_over_rest_and_grpc(client, http):
    config = client.get_model_config("mnist-cnn", headers=AUTH, as_json=True)["config"]
    assert config["name"] == "mnist-cnn" and config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == 64
    assert config["input"] == [{"name": "image", "data_type": "TYPE_FP32", "dims": ["1", "28", "28"]}]
    assert config["output"] == [{"name": "logits", "data_type": "TYPE_FP32", "dims": ["10"]}]
    assert "dynamic_batching" in config and config["version_policy"] == {"latest": {"num_versions": 1}}
    rest = http.get_model_config("mnist-cnn", headers=AUTH)
    assert rest["input"] == [{"name": "image", "data_type": "TYPE_FP32", "dims": [1, 28, 28]}]
    assert rest["dynamic_batching"]["max_queue_delay_microseconds"] == int(
        config["dynamic_batching"]["max_queue_delay_microseconds"]
    )
    assert http.get_model_config("mnist-cnn", model_version="1", headers=AUTH) == rest


def test_statistics_count_requests_over_both_protocols(client, http, repository):
    before = client.get_inference_statistics("thyroid-autoencoder", headers=AUTH)
    start = before.model_stats[0].inference_stats.success.count
    tensors = real_inputs(repository, "thyroid-autoencoder", n=2)
    tensor = grpcclient.InferInput("features", list(tensors["features"].shape), "FP32")
    tensor.set_data_from_numpy(tensors["features"])
    for _ in range(3):
        client.infer("thyroid-autoencoder", [tensor], headers=AUTH)
    bad = grpcclient.InferInput("features", [2, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((2, 3), np.float32))
    with pytest.raises(InferenceServerException):
        client.infer("thyroid-autoencoder", [bad], headers=AUTH)
    stats = client.get_inference_statistics("thyroid-autoencoder", headers=AUTH, as_json=True)["model_stats"][0]
    assert stats["name"] == "thyroid-autoencoder" and stats["version"] == "1"
    inference = stats["inference_stats"]
    assert int(inference["success"]["count"]) == start + 3
    assert int(inference["fail"]["count"]) >= 1
    for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert int(inference[phase]["count"]) == start + 3
    assert int(inference["compute_infer"]["ns"]) > 0
    assert int(stats["inference_count"]) >= 6 and int(stats["execution_count"]) >= 1
    rest = http.get_inference_statistics("thyroid-autoencoder", headers=AUTH)["model_stats"][0]
    assert rest["inference_stats"]["success"]["count"] == start + 3
    everything = http.get_inference_statistics(headers=AUTH)["model_stats"]
    assert {"mnist-cnn", "thyroid-autoencoder"} <= {row["name"] for row in everything}


def test_repository_load_and_unload_with_the_management_token(client):
    index = client.get_model_repository_index(headers=MANAGER, as_json=True)["models"]
    assert ("mnist-cnn", "READY") in {(row["name"], row["state"]) for row in index}
    with pytest.raises(InferenceServerException) as refused:
        client.get_model_repository_index(headers=AUTH)
    assert refused.value.status() == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException) as config:
        client.load_model("thyroid-autoencoder", headers=MANAGER, config="{}")
    assert config.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "only from the server's repository" in config.value.message()
    client.unload_model("sentiment-gru", headers=MANAGER)
    assert not client.is_model_ready("sentiment-gru", headers=AUTH)
    client.load_model("sentiment-gru", headers=MANAGER)
    assert client.is_model_ready("sentiment-gru", headers=AUTH)


class CountingRelay:
    """A TCP relay in front of the gRPC port that counts the bytes the server sends back."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.from_server = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while data := source.recv(65536):
                if counted:
                    with self.lock:
                        self.from_server += len(data)
                sink.sendall(data)  # counted first: the client cannot hold an answer the count lacks
        except OSError:
            pass
        finally:
            sink.close()


def test_infer_answers_are_compressed_when_the_setting_asks(ports):
    relay = CountingRelay(ports[1])
    triton = grpcclient.InferenceServerClient(url=relay.address)
    try:

        def answer_bytes(x: np.ndarray) -> int:
            inp = grpcclient.InferInput("x", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            before = relay.from_server
            y = triton.infer("scaler", [inp], headers=AUTH).as_numpy("y")
            np.testing.assert_array_equal(y, 2 * x)
            return relay.from_server - before

        triton.is_server_live(headers=AUTH)  # the connection's settings frames, not counted below
        raw = 1000 * 3 * 4  # the answer tensor's bytes
        noise = answer_bytes(np.random.default_rng(0).random((1000, 3), dtype=np.float32))
        zeros = answer_bytes(np.zeros((1000, 3), np.float32))
    finally:
        triton.close()
        relay.listener.close()
    assert noise > raw * 0.8  # the relay sees whole answers: random floats barely compress
    assert zeros < raw / 10  # 12 kB of zeros arrive gzipped (uncompressed, both would be 12,094 bytes)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_are_read(client, algorithm):
    x = np.arange(300, dtype=np.float32).reshape(100, 3)
    inp = grpcclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    y = client.infer("scaler", [inp], headers=AUTH, compression_algorithm=algorithm).as_numpy("y")
    np.testing.assert_array_equal(y, 2 * x)
