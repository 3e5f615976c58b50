"""A standard V2 client, unchanged: `tritonclient.http` against `python -m service` in a real uvicorn process.

Every default model answers real dataset samples with JSON and with binary tensors, and the
answers equal ONNX Runtime's on the same tensors. The repository is the committed `models/` once the
defaults are built (else tiny stand-ins under the same names, see `default_repo`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from service.repository import discover_model
from tests.support.default_repo import DEFAULT_MODELS, real_inputs
from tests.support.default_repo import default_repository as make_repository

ROOT = Path(__file__).resolve().parents[2]
MANAGEMENT = "triton-test-manager"
MANAGER = {"Authorization": f"Bearer {MANAGEMENT}"}
SIGNATURES = {
    "mnist-cnn": ([("image", "FP32", 4)], ["logits"]),
    "sms-spam-transformer": ([("input_ids", "INT64", 2), ("attention_mask", "INT64", 2)], ["logits"]),
    "sentiment-gru": ([("input_ids", "INT64", 2), ("attention_mask", "INT64", 2)], ["logits"]),
    "sms-spam-minilm": ([("input_ids", "INT64", 2), ("attention_mask", "INT64", 2)], ["logits"]),
    "sentiment-minilm": ([("input_ids", "INT64", 2), ("attention_mask", "INT64", 2)], ["logits"]),
    "thyroid-autoencoder": ([("features", "FP32", 2)], ["reconstruction", "score"]),
    "machine-temperature-autoencoder": ([("window", "FP32", 3)], ["reconstruction", "score"]),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    return make_repository(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory) -> Iterator[str]:
    """`python -m service` on a free port; yields its host:port once /v2/health/ready says 200."""
    port = _free_port()
    env = os.environ | {
        "AXON_PORT": str(port),
        "AXON_MODEL_REPOSITORY": str(repository),
        "AXON_PROVIDERS": "CPUExecutionProvider",
        "AXON_AUTH__MANAGEMENT_TOKEN": MANAGEMENT,
        # As on a network interface: the token is the only way in (loopback clients are exempt by default).
        "AXON_AUTH__LOCAL_MANAGEMENT": "false",
        "AXON_ACCESS_LOG": "false",
    }
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpclient.InferenceServerClient]:
    triton = httpclient.InferenceServerClient(url=server)
    yield triton
    triton.close()


def onnx_runtime(repository: Path, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference: the newest version's model.onnx run directly."""
    (descriptor, *_) = discover_model(repository / name)
    session = ort.InferenceSession(str(descriptor.model_file), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


def test_health_and_server_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "axon"
    assert {"binary_tensor_data", "model_repository"} <= set(metadata["extensions"])


@pytest.mark.parametrize("name", list(DEFAULT_MODELS))
def test_model_metadata_and_readiness(client, name):
    inputs, outputs = SIGNATURES[name]
    metadata = client.get_model_metadata(name)
    assert metadata["name"] == name and metadata["platform"] == "onnxruntime_onnx"
    assert metadata["versions"] == ["1"] and client.get_model_metadata(name, model_version="1") == metadata
    assert [(t["name"], t["datatype"], len(t["shape"])) for t in metadata["inputs"]] == inputs
    assert [t["name"] for t in metadata["outputs"]] == outputs
    assert all(t["shape"][0] == -1 for t in metadata["inputs"] + metadata["outputs"])  # dynamic batch
    assert client.is_model_ready(name) and client.is_model_ready(name, model_version="1")
    assert not client.is_model_ready(name, model_version="2")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("name", list(DEFAULT_MODELS))
def test_inference_on_real_samples_matches_onnx_runtime(client, repository, name, binary):
    tensors = real_inputs(repository, name, n=3)
    inputs = []
    for input_name, array in tensors.items():
        tensor = httpclient.InferInput(input_name, list(array.shape), "INT64" if array.dtype == np.int64 else "FP32")
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    _, output_names = SIGNATURES[name]
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in output_names]
    result = client.infer(name, inputs, outputs=outputs, request_id=f"{name}-{binary}")
    response = result.get_response()
    assert response["id"] == f"{name}-{binary}" and response["model_version"] == "1"
    assert all(("parameters" in o) == binary for o in response["outputs"])
    want = onnx_runtime(repository, name, tensors)
    for output_name in output_names:
        got = result.as_numpy(output_name)
        assert got.shape[0] == 3
        np.testing.assert_allclose(got, want[output_name], rtol=1e-4, atol=1e-5)


def test_only_requested_outputs_and_version_selection(client, repository):
    tensors = real_inputs(repository, "thyroid-autoencoder", n=2)
    tensor = httpclient.InferInput("features", list(tensors["features"].shape), "FP32")
    tensor.set_data_from_numpy(tensors["features"])
    result = client.infer(
        "thyroid-autoencoder",
        [tensor],
        model_version="1",
        outputs=[httpclient.InferRequestedOutput("score")],
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["score"]
    assert result.as_numpy("reconstruction") is None
    with pytest.raises(InferenceServerException) as missing:
        client.infer("thyroid-autoencoder", [tensor], model_version="2")
    assert missing.value.status() == "404" and "has no version 2" in missing.value.message()


def test_errors_arrive_as_inference_server_exceptions(client):
    wrong = httpclient.InferInput("image", [1, 1, 28, 28], "FP64")
    wrong.set_data_from_numpy(np.zeros((1, 1, 28, 28), np.float64), binary_data=True)
    with pytest.raises(InferenceServerException) as dtype:
        client.infer("mnist-cnn", [wrong])
    assert dtype.value.status() == "400" and "is FP32, got FP64" in dtype.value.message()
    shaped = httpclient.InferInput("image", [1, 28, 28], "FP32")
    shaped.set_data_from_numpy(np.zeros((1, 28, 28), np.float32))
    with pytest.raises(InferenceServerException) as rank:
        client.infer("mnist-cnn", [shaped])
    assert rank.value.status() == "400" and "rank 3" in rank.value.message()
    with pytest.raises(InferenceServerException) as unknown:
        client.get_model_metadata("no-such-model")
    assert unknown.value.status() == "404"
    with pytest.raises(InferenceServerException) as unsafe:
        client.get_model_metadata("%2e%2e")
    assert unsafe.value.status() == "400"


def test_repository_extension_with_the_management_token(client):
    index = client.get_model_repository_index(headers=MANAGER)
    assert {(row["name"], row["state"]) for row in index} == {(name, "READY") for name in DEFAULT_MODELS}
    with pytest.raises(InferenceServerException) as refused:
        client.get_model_repository_index()
    assert refused.value.status() == "401"
    client.load_model("thyroid-autoencoder", headers=MANAGER)  # unchanged on disk: kept as it is
    assert client.is_model_ready("thyroid-autoencoder")
    with pytest.raises(InferenceServerException) as config:
        client.load_model("thyroid-autoencoder", headers=MANAGER, config="{}")
    assert config.value.status() == "400" and "only from the server's repository" in config.value.message()
    client.unload_model("sentiment-gru", headers=MANAGER)
    assert not client.is_model_ready("sentiment-gru")
    client.load_model("sentiment-gru", headers=MANAGER)
    assert client.is_model_ready("sentiment-gru")
