"""gzip/deflate bodies: tritonclient's own compression options against a real server, and bombs refused at the limit."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from service.compression import accepted
from tests.service.test_autoconf import scaler
from tests.support.app_harness import serving, tiny_settings
from tests.support.live_server import live_server

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("models")
    scaler(root)
    with live_server(root.parent / "server.log", AXON_MODEL_REPOSITORY=str(root), AXON_VALIDATE_MODELS="false") as url:
        yield url.removeprefix("http://")


@pytest.mark.parametrize("request_algo", [None, "gzip", "deflate"])
@pytest.mark.parametrize("response_algo", [None, "gzip", "deflate"])
@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_compression_options(server: str, request_algo, response_algo, binary: bool) -> None:
    client = httpclient.InferenceServerClient(server)
    x = np.arange(300, dtype=np.float32).reshape(100, 3)  # large enough for the answer to be compressed
    tensor = httpclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    result = client.infer(
        "scaler",
        [tensor],
        outputs=[httpclient.InferRequestedOutput("y", binary_data=binary)],
        request_compression_algorithm=request_algo,
        response_compression_algorithm=response_algo,
    )
    np.testing.assert_array_equal(result.as_numpy("y"), 2 * x)
    client.close()


def bomb(encoding: str, size: int) -> bytes:
    raw = b"[" + b" " * size + b"]"
    return gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_bomb_is_refused_at_the_decompressed_limit(tmp_path: Path, encoding: str) -> None:
    scaler(tmp_path)
    async with serving(tiny_settings(tmp_path, limits={"max_body_bytes": LIMIT})) as (_, client):
        small = bomb(encoding, 200 * LIMIT)  # ~13 MB inflated from ~13 KB sent
        assert len(small) < LIMIT
        headers = {"content-encoding": encoding, "content-type": "application/json"}
        refused = await client.post("/v2/models/scaler/infer", content=small, headers=headers)
        assert refused.status_code == 413, refused.text
        assert refused.json()["code"] == "payload_too_large"
        corrupt = await client.post("/v2/models/scaler/infer", content=small[:-20] + b"x" * 20, headers=headers)
        assert corrupt.status_code in (400, 413) and corrupt.json()["code"]
        garbage = await client.post("/v2/models/scaler/infer", content=b"not compressed", headers=headers)
        assert garbage.status_code == 400 and garbage.json()["code"] == "bad_request"
        other = await client.post("/v2/models/scaler/infer", content=b"{}", headers={"content-encoding": "br"})
        assert other.status_code == 415


async def test_compressed_body_within_the_limit_is_served(tmp_path: Path) -> None:
    scaler(tmp_path)
    body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}'
    async with serving(tiny_settings(tmp_path, limits={"max_body_bytes": len(body)})) as (_, client):
        headers = {"content-encoding": "gzip", "content-type": "application/json"}
        answer = await client.post("/v2/models/scaler/infer", content=gzip.compress(body), headers=headers)
        assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [2, 4, 6]
        over = await client.post("/v2/models/scaler/infer", content=gzip.compress(body + b" "), headers=headers)
        assert over.status_code == 413
        # Answers: compressed as tritonclient asks (deflate = the zlib format), with Vary for caches
        big = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [100, 3], "data": [%s]}]}' % b",".join(
            b"1" for _ in range(300)
        )
        async with serving(tiny_settings(tmp_path)) as (_, plain):
            raw = await plain.post("/v2/models/scaler/infer", content=big, headers={"accept-encoding": "deflate"})
        assert raw.headers["content-encoding"] == "deflate" and "accept-encoding" in raw.headers["vary"].lower()
        assert int(raw.headers["content-length"]) < 300 < len(raw.content)  # httpx inflated what the wire carried
        assert raw.json()["outputs"][0]["data"] == [2] * 300


def test_accept_encoding() -> None:
    assert accepted("gzip") == "gzip" and accepted("deflate") == "deflate"
    assert accepted("br, deflate;q=0.5") == "deflate"
    assert accepted("gzip;q=0") is None and accepted("identity") is None and accepted(None) is None


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compressed_body_cut_short_is_400_even_when_what_arrived_inflates_to_valid_json(
    tmp_path: Path, encoding: str
) -> None:
    # A stream cut before its checksum may hold the whole document: without its end it cannot be trusted.
    scaler(tmp_path)
    body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}'
    whole = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    assert zlib.decompressobj(31 if encoding == "gzip" else 15).decompress(whole[:-4]) == body
    async with serving(tiny_settings(tmp_path)) as (_, client):
        headers = {"content-encoding": encoding, "content-type": "application/json"}
        cut = await client.post("/v2/models/scaler/infer", content=whole[:-4], headers=headers)
        assert cut.status_code == 400, cut.text
        assert cut.json() == {"error": f"the {encoding} body ends before its end of stream", "code": "bad_request"}
        served = await client.post("/v2/models/scaler/infer", content=whole, headers=headers)
        assert served.status_code == 200 and served.json()["outputs"][0]["data"] == [2, 4, 6]
