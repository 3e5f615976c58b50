"""Every failure a client can cause gets its status and the one error body; nothing is a 500."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest

from tests.support.app_harness import png, serving, tiny_settings
from tests.support.tiny_models import add_model, build_repository

IMAGE = png(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8))
ROW = [0.5] * 21


@pytest.fixture
def repo(tmp_path):
    return build_repository(tmp_path / "models")


def assert_error(response, status: int, code: str, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "code"} and body["code"] == code, body
    if message is not None:
        assert message in body["error"], body


@pytest.mark.parametrize(
    "path, body, status, code, message",
    [
        ("/v1/text/classify", {"texts": []}, 422, "invalid_input", "'texts' must hold at least one text"),
        ("/v1/text/classify", {"texts": [1, 2]}, 422, "invalid_input", "texts.0: Input should be a valid string"),
        ("/v1/text/classify", {"text": ["hello"]}, 422, "invalid_input", "texts: Field required"),
        (  # five problems are spelled out, the rest counted
            "/v1/text/classify",
            {"texts": [1, 2, 3, 4, 5, 6, 7]},
            422,
            "invalid_input",
            "texts.4: Input should be a valid string (+2 more)",
        ),
        ("/v1/text/classify", {"texts": ["   "]}, 422, "invalid_input", "text 0 has no token the model knows"),
        (
            "/v1/text/classify",
            {"texts": ["hi"] * 65},
            413,
            "payload_too_large",
            "65 texts in one request; the limit is 64",
        ),
        ("/v1/text/classify", {"texts": ["x" * 10_001]}, 413, "payload_too_large", "text 0 has 10001 characters"),
        (
            "/v1/text/classify",
            {"texts": ["hello"], "model": "nope"},
            404,
            "model_not_found",
            "model 'nope' is not in the repository",
        ),
        (
            "/v1/text/classify",
            {"texts": ["hello"], "version": 7},
            404,
            "version_not_found",
            "model 'spam' has no version 7",
        ),
        (
            "/v1/text/classify",
            {"texts": ["hello"], "model": "digits"},
            422,
            "wrong_task",
            "model 'digits' is a vision model, not a text model",
        ),
        (
            "/v1/anomaly/score",
            {"samples": [ROW[:20]]},
            422,
            "invalid_input",
            "sample 0 has 20 features; the model expects 21",
        ),
        (
            "/v1/anomaly/score",
            {"samples": [["a"] * 21]},
            422,
            "invalid_input",
            "samples.0.0: Input should be a valid number",
        ),
        ("/v1/anomaly/score", {"samples": []}, 422, "invalid_input", "'samples' must hold at least one row"),
        (
            "/v1/anomaly/score",
            {"samples": [ROW], "series": [1.0] * 10},
            422,
            "invalid_input",
            "exactly one of 'samples'",
        ),
        (
            "/v1/anomaly/score",
            {"samples": [ROW], "timestamps": [1]},
            422,
            "invalid_input",
            "'timestamps' go with 'series'",
        ),
        (
            "/v1/anomaly/score",
            {"series": [1.0] * 3},
            422,
            "invalid_input",
            "the series has 3 points; the model needs at least 8",
        ),
        (
            "/v1/anomaly/score",
            {"series": [1.0] * 10, "timestamps": [1, 2]},
            422,
            "invalid_input",
            "'timestamps' has 2 entries but 'series' has 10 points",
        ),
        (
            "/v1/anomaly/score",
            {"samples": [ROW], "model": "temperature"},
            422,
            "invalid_input",
            "send 'series', not 'samples'",
        ),
        ("/v1/vision/classify", {"images": ["%%%"]}, 422, "invalid_input", "image 0 is not valid base64"),
        (
            "/v1/vision/classify",
            {"images": [base64.b64encode(b"nope").decode()]},
            422,
            "invalid_input",
            "image 0 is not a decodable image",
        ),
        (
            "/v1/vision/classify",
            {"images": [base64.b64encode(png(np.zeros((8, 8), np.uint8), "GIF")).decode()]},
            415,
            "unsupported_media_type",
            "image 0 is GIF",
        ),
        (
            "/v1/vision/classify",
            {"images": [base64.b64encode(IMAGE).decode()], "top_k": 0},
            422,
            "invalid_input",
            "top_k must be between 1 and 100, got 0",
        ),
        ("/v1/vision/classify", {"images": "abc"}, 422, "invalid_input", "images: Input should be a valid list"),
    ],
)
async def test_bad_json_bodies(repo, path, body, status, code, message):
    async with serving(tiny_settings(repo)) as (_, client):
        assert_error(await client.post(path, json=body), status, code, message)


async def test_malformed_json_is_400(repo):
    async with serving(tiny_settings(repo)) as (_, client):
        for path in ("/v1/text/classify", "/v1/vision/classify", "/v1/anomaly/score"):
            r = await client.post(path, content=b'{"texts": [', headers={"content-type": "application/json"})
            assert_error(r, 400, "bad_request", "request body is not valid JSON")


async def test_routes_methods_and_media_types(repo):
    async with serving(tiny_settings(repo)) as (_, client):
        assert_error(await client.get("/v1/nothing"), 404, "not_found", "no route GET /v1/nothing")
        wrong_method = await client.get("/v1/text/classify")
        assert_error(wrong_method, 405, "method_not_allowed", "method GET is not allowed on /v1/text/classify")
        assert wrong_method.headers["allow"] == "POST"  # RFC 9110: a 405 lists the methods the route takes
        r = await client.post("/v1/vision/classify", content=IMAGE, headers={"content-type": "image/png"})
        assert_error(r, 415, "unsupported_media_type", "content type 'image/png' is not accepted")
        assert_error(
            await client.get("/v1/models/nope"), 404, "model_not_found", "model 'nope' is not in the repository"
        )


async def test_multipart_errors(repo):
    settings = tiny_settings(repo, limits={"max_images": 2, "max_form_fields": 2, "max_form_field_bytes": 20})
    async with serving(settings) as (_, client):
        one = [("images", ("a.png", IMAGE, "image/png"))]
        r = await client.post("/v1/vision/classify", data={"top_k": "1", "model": "m", "version": "1"}, files=one)
        assert_error(r, 413, "payload_too_large", "more than 2 text fields in one multipart body")
        r = await client.post("/v1/vision/classify", data={"model": "m" * 21}, files=one)
        assert_error(r, 413, "payload_too_large", "the multipart text field 'model' is over 20 bytes")
        r = await client.post("/v1/vision/classify", files=[("pictures", ("a.png", IMAGE, "image/png"))])
        assert_error(r, 422, "invalid_input", "no file in the field 'images'")
        r = await client.post("/v1/vision/classify", files=[("images", ("a.png", IMAGE, "image/png"))] * 3)
        assert_error(r, 413, "payload_too_large", "more than 2 images")
        r = await client.post(
            "/v1/vision/classify", data={"images": "text"}, files=[("x", ("a.png", IMAGE, "image/png"))]
        )
        assert_error(r, 422, "invalid_input", "'images' parts must be files")
        r = await client.post("/v1/vision/classify?top_k=x", files=[("images", ("a.png", IMAGE, "image/png"))])
        assert_error(r, 422, "invalid_input", "top_k: Input should be a valid integer")
        r = await client.post(
            "/v1/vision/classify", data={"top_k": "x"}, files=[("images", ("a.png", IMAGE, "image/png"))]
        )
        assert_error(r, 422, "invalid_input", "form.top_k: Input should be a valid integer, got 'x'")
        cut = b'--b\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n\r\n' + IMAGE
        r = await client.post(
            "/v1/vision/classify", content=cut, headers={"content-type": "multipart/form-data; boundary=b"}
        )
        assert_error(r, 400, "bad_request", "ends before its closing boundary")
        r = await client.post("/v1/vision/classify", content=cut, headers={"content-type": "multipart/form-data"})
        assert_error(r, 400, "bad_request", "no boundary")


async def test_size_limits_on_bodies_and_images(repo):
    settings = tiny_settings(repo, limits={"max_body_bytes": 2000, "max_image_pixels": 500, "max_image_bytes": 600})
    async with serving(settings) as (_, client):
        r = await client.post("/v1/text/classify", json={"texts": ["free " * 500]})
        assert_error(r, 413, "payload_too_large", "larger than the limit of 2000 bytes")

        async def chunks():  # no Content-Length: the limit must hold while reading
            for _ in range(10):
                yield b" " * 300

        r = await client.post("/v1/text/classify", content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in r.request.headers
        assert_error(r, 413, "payload_too_large", "larger than the limit of 2000 bytes")
        flat = png(np.zeros((28, 28), np.uint8))  # 784 pixels in a few bytes
        r = await client.post("/v1/vision/classify", files=[("images", ("a.png", flat, "image/png"))])
        assert_error(r, 413, "payload_too_large", "image 0 has 28x28 pixels; the limit is 500 pixels")
        r = await client.post("/v1/vision/classify", files=[("images", ("b.png", IMAGE, "image/png"))])  # noise: >600 B
        assert_error(r, 413, "payload_too_large", f"image 0 has {len(IMAGE)} bytes; the limit is 600")
        r = await client.post(
            "/v1/anomaly/score", json={"series": [1.0] * 10, "model": "temperature"}, params={"version": "x"}
        )
        assert_error(r, 422, "invalid_input", "version: Input should be a valid integer")


async def test_full_queue_answers_429_with_retry_after(repo):
    settings = tiny_settings(repo, max_batch_size=1, max_queue_size=1)
    async with serving(settings) as (_, client):
        responses = await asyncio.gather(
            *(client.post("/v1/text/classify", json={"texts": ["free cash now"]}) for _ in range(30))
        )
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 429}, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert_error(refused, 429, "overloaded", "model 'spam' version 1 has 1 rows queued (limit 1); retry later")
    assert refused.headers["retry-after"] == "1"


async def test_deadline_answers_504(repo):
    async with serving(tiny_settings(repo, request_timeout_s=1e-6)) as (_, client):
        r = await client.post("/v1/text/classify", json={"texts": ["hello"]})
        assert_error(r, 504, "deadline_exceeded", "model 'spam' version 1 gave no answer within 1e-06 s")


async def test_unavailable_and_loading_models_answer_503(tmp_path):
    root = build_repository(tmp_path / "models")
    add_model(root, "broken", "spam")
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not onnx")
    async with serving(tiny_settings(root), wait_ready=False) as (app, client):
        early = await client.post("/v1/text/classify", json={"texts": ["hello"]})
        assert_error(early, 503, "model_not_ready")
        await app.state.axon.load_task
        r = await client.post("/v1/text/classify", json={"texts": ["hello"], "model": "broken"})
        assert_error(r, 503, "model_not_ready", "model 'broken' version 1 is unavailable: InvalidProtobuf")
        assert (await client.post("/v1/text/classify", json={"texts": ["hello"]})).status_code == 200


async def test_pillows_bomb_guard_follows_the_pixel_limit(repo):
    # Past twice the limit Pillow itself refuses the file when it opens it, before a pixel is decoded.
    flat = png(np.zeros((28, 28), np.uint8))  # 784 pixels, more than twice 300
    async with serving(tiny_settings(repo, limits={"max_image_pixels": 300})) as (_, client):
        r = await client.post("/v1/vision/classify", files=[("images", ("a.png", flat, "image/png"))])
    assert_error(r, 413, "payload_too_large", "image 0 is a decompression bomb")
