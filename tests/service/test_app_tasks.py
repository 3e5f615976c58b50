"""Task endpoints, model listing, metrics and request ids on small real models, checked against ORT directly."""

from __future__ import annotations

import base64
import json

import numpy as np
import onnxruntime as ort
import pytest

from modelrepo import scoring
from tests.support.app_harness import metric, png, serving, tiny_settings
from tests.support.tiny_models import build_repository


@pytest.fixture
def repo(tmp_path):
    return build_repository(tmp_path / "models")


def session(repo, name):
    return ort.InferenceSession(str(repo / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])


async def test_vision_multipart_and_base64_give_the_model_probabilities_in_order(repo):
    rng = np.random.default_rng(3)
    pixels = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(3)]
    x = np.stack([((p / 255.0 - 0.1307) / 0.3081).astype(np.float32)[None] for p in pixels])
    probs = scoring.softmax(session(repo, "digits").run(None, {"image": x})[0].astype(np.float64))
    async with serving(tiny_settings(repo)) as (_, client):
        files = [("images", (f"{i}.png", png(p), "image/png")) for i, p in enumerate(pixels)]
        multi = await client.post("/v1/vision/classify", params={"top_k": 3}, files=files)
        b64 = await client.post(
            "/v1/vision/classify", json={"images": [base64.b64encode(png(p)).decode() for p in pixels], "top_k": 3}
        )
    assert multi.status_code == 200 and b64.status_code == 200
    assert multi.json() == b64.json()
    body = multi.json()
    assert body["model"] == "digits" and body["version"] == 1
    for pred, row in zip(body["predictions"], probs):
        best = np.argsort(-row)[:3]
        assert pred["label"] == str(best[0]) and pred["score"] == pytest.approx(row[best[0]], abs=1e-6)
        assert [t["label"] for t in pred["top_k"]] == [str(i) for i in best]


async def test_text_classify_returns_every_label_probability(repo):
    ids = np.array([[2, 3, 5, 6], [2, 9, 0, 0]], np.int64)
    mask = (ids != 0).astype(np.int64)
    probs = scoring.softmax(
        session(repo, "spam").run(None, {"input_ids": ids, "attention_mask": mask})[0].astype(np.float64)
    )
    async with serving(tiny_settings(repo)) as (_, client):
        r = await client.post("/v1/text/classify", json={"texts": ["free cash now", "hello"]})
    assert r.status_code == 200
    body = r.json()
    assert (body["model"], body["version"]) == ("spam", 1)
    for pred, row in zip(body["predictions"], probs):
        assert pred["scores"] == pytest.approx({"ham": row[0], "spam": row[1]}, abs=1e-6)
        assert pred["label"] == ["ham", "spam"][int(np.argmax(row))]


async def test_anomaly_samples_and_series(repo):
    rows = np.random.default_rng(4).normal(0.5, 2, (3, 21))
    features = ((rows - 0.5) / np.array([2.0] * 20 + [1.0])).astype(np.float32)
    scores = session(repo, "thyroid").run(["score"], {"features": features})[0]
    async with serving(tiny_settings(repo)) as (_, client):
        tab = await client.post("/v1/anomaly/score", json={"samples": rows.tolist()})
        series = [10.0] * 12 + [30.0] + [10.0] * 12
        ser = await client.post(
            "/v1/anomaly/score", json={"series": series, "timestamps": [f"t{i}" for i in range(25)]}
        )
    assert tab.status_code == 200 and ser.status_code == 200
    body = tab.json()
    assert (body["model"], body["threshold"]) == ("thyroid", 0.5)
    assert [r["score"] for r in body["results"]] == pytest.approx(scores.tolist(), rel=1e-5)  # 6 digits shown
    assert [r["is_anomaly"] for r in body["results"]] == [bool(s > 0.5) for s in scores]
    body = ser.json()
    assert body["model"] == "temperature" and len(body["results"]) == 25
    assert body["results"][12]["timestamp"] == "t12"
    flagged = [i for i, r in enumerate(body["results"]) if r["is_anomaly"]]
    segments = body["segments"]
    assert flagged and segments[0]["start"] == flagged[0] and segments[-1]["end"] == flagged[-1]
    assert segments[0]["start_timestamp"] == f"t{flagged[0]}"


async def test_model_selection_by_query_and_body(repo):
    from tests.support.tiny_models import add_model

    add_model(repo, "spam2", "spam", versions=(1, 2), version_policy={"all": {}})
    async with serving(tiny_settings(repo)) as (_, client):
        by_query = await client.post(
            "/v1/text/classify", params={"model": "spam2", "version": 1}, json={"texts": ["ok"]}
        )
        by_body = await client.post("/v1/text/classify", json={"texts": ["ok"], "model": "spam2"})
    assert (by_query.json()["model"], by_query.json()["version"]) == ("spam2", 1)
    assert (by_body.json()["model"], by_body.json()["version"]) == ("spam2", 2)


async def test_models_listing_shows_state_tensors_providers_and_batching(repo):
    async with serving(tiny_settings(repo, max_delay_ms=3)) as (_, client):
        r = await client.get("/v1/models")
        one = await client.get("/v1/models/spam")
    assert r.status_code == 200
    models = {m["name"]: m for m in r.json()["models"]}
    assert set(models) == {"digits", "spam", "temperature", "thyroid"}
    spam = models["spam"]
    assert spam == one.json()
    assert (spam["task"], spam["state"]) == ("text", "ready")
    (v1,) = spam["versions"]
    assert v1["state"] == "ready" and v1["providers"] == ["CPUExecutionProvider"]
    (instance,) = v1["instances"]
    assert instance["name"] == "spam_0_0" and instance["kind"] == "KIND_AUTO"
    assert instance["providers"] == ["CPUExecutionProvider"] and instance["running"] == 0
    assert [t["name"] for t in v1["inputs"]] == ["input_ids", "attention_mask"]
    assert v1["labels"] == ["ham", "spam"]
    assert v1["batching"] == {"enabled": True, "max_batch_size": 64, "max_delay_ms": 3.0, "max_queue_size": 256}
    assert models["thyroid"]["versions"][0]["threshold"] == 0.5


async def test_request_id_is_echoed_or_made_and_metrics_count_requests(repo):
    async with serving(tiny_settings(repo)) as (_, client):
        given = await client.post("/v1/text/classify", json={"texts": ["ok"]}, headers={"X-Request-ID": "abc-123"})
        made = await client.post("/v1/text/classify", json={"texts": ["ok"]})
        await client.post("/v1/text/classify", json={"texts": ["ok"], "version": 9})
        await client.post("/v1/text/classify", json={"texts": "not a list"})
        await client.get("/no/such/path")
        text = (await client.get("/metrics")).text
    assert given.headers["x-request-id"] == "abc-123"
    assert len(made.headers["x-request-id"]) == 32
    assert metric(text, "axon_requests_total", model="spam", endpoint="text", status="200") == 2
    assert metric(text, "axon_requests_total", model="spam", endpoint="text", status="404") == 1
    for phase in ("preprocess", "queue", "inference", "postprocess", "total"):
        assert metric(text, "axon_request_phase_seconds_count", model="spam", phase=phase) == 2
    assert metric(text, "axon_models_loaded") == 4
    assert metric(text, "axon_queue_depth", model="spam", version="1") == 0
    assert "axon_batch_size_bucket" in text
    # Requests refused before any model is involved are counted per route template too.
    assert metric(text, "axon_http_requests_total", method="POST", route="/v1/text/classify", status="422") == 1
    assert metric(text, "axon_http_requests_total", method="POST", route="/v1/text/classify", status="200") == 2
    assert metric(text, "axon_http_requests_total", method="GET", route="unmatched", status="404") == 1


async def test_openapi_documents_every_task_route(repo):
    async with serving(tiny_settings(repo)) as (_, client):
        paths = (await client.get("/openapi.json")).json()["paths"]
    assert {
        "/v1/vision/classify",
        "/v1/text/classify",
        "/v1/anomaly/score",
        "/v1/models",
        "/v2/health/ready",
        "/metrics",
    } <= set(paths)
    vision = paths["/v1/vision/classify"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(vision)
    json.dumps(paths)


async def test_a_non_square_colour_image_reaches_the_model_channel_first_row_by_row(repo):
    import math

    import onnx
    from onnx import numpy_helper

    from tests.support.tiny_models import COLOUR_CLASSES, add_model

    add_model(repo, "colour", "colour")
    weights = {
        t.name: numpy_helper.to_array(t) for t in onnx.load(repo / "colour" / "1" / "model.onnx").graph.initializer
    }
    rgb = np.random.default_rng(8).integers(0, 256, (4, 6, 3), dtype=np.uint8)  # 4 rows, 6 columns: no resize
    # What the model must receive, written out pixel by pixel: x[channel][row][column], normalised per channel.
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.3, 0.4]
    flat = [(rgb[r, c, ch] / 255.0 - mean[ch]) / std[ch] for ch in range(3) for r in range(4) for c in range(6)]
    logits = [
        sum(v * float(weights["W"][i, k]) for i, v in enumerate(flat)) + float(weights["b"][k])
        for k in range(COLOUR_CLASSES)
    ]
    top = max(logits)
    total = sum(math.exp(v - top) for v in logits)
    expected = {f"c{k}": math.exp(v - top) / total for k, v in enumerate(logits)}
    async with serving(tiny_settings(repo)) as (_, client):
        files = [("images", ("x.png", png(rgb), "image/png"))]
        r = await client.post("/v1/vision/classify", params={"model": "colour", "top_k": COLOUR_CLASSES}, files=files)
    assert r.status_code == 200, r.text
    (pred,) = r.json()["predictions"]
    assert {t["label"]: t["score"] for t in pred["top_k"]} == pytest.approx(expected, abs=1e-5)
    assert pred["label"] == max(expected, key=expected.get)


async def test_a_score_exactly_at_the_threshold_is_not_an_anomaly(repo):
    from tests.support.tiny_models import add_model

    rows = np.random.default_rng(6).normal(0.5, 2, (2, 21))
    features = ((rows - 0.5) / np.array([2.0] * 20 + [1.0])).astype(np.float32)
    scores = session(repo, "thyroid").run(["score"], {"features": features})[0]
    # The same weights (seed 1) under a threshold equal to the first row's score, then just below it.
    add_model(repo, "at", "thyroid", anomaly={"threshold": float(scores[0])})
    add_model(repo, "below", "thyroid", anomaly={"threshold": float(np.nextafter(scores[0], -np.inf))})
    async with serving(tiny_settings(repo)) as (_, client):
        at = await client.post("/v1/anomaly/score", json={"samples": rows[:1].tolist(), "model": "at"})
        below = await client.post("/v1/anomaly/score", json={"samples": rows[:1].tolist(), "model": "below"})
        explained_at = await client.post("/v1/anomaly/explain", json={"samples": rows[:1].tolist(), "model": "at"})
        explained_below = await client.post(
            "/v1/anomaly/explain", json={"samples": rows[:1].tolist(), "model": "below"}
        )
    assert at.status_code == 200 and below.status_code == 200
    assert at.json()["results"][0]["score"] == pytest.approx(float(scores[0]), rel=1e-5)  # 6 digits shown
    assert at.json()["results"][0]["is_anomaly"] is False
    assert below.json()["results"][0]["is_anomaly"] is True
    # An explanation gives the same verdict as the score it explains.
    assert explained_at.json()["explanations"][0]["is_anomaly"] is False
    assert explained_below.json()["explanations"][0]["is_anomaly"] is True


async def test_a_series_point_exactly_at_the_threshold_is_not_an_anomaly(repo):
    from tests.support.tiny_models import SERIES_WINDOW, add_model

    series = np.random.default_rng(7).normal(10, 4, 24)
    first = ((series[:SERIES_WINDOW] - 10.0) / 2.0).astype(np.float32).reshape(1, SERIES_WINDOW, 1)
    # Points 0 and 1 lie in the first window only (stride 2), so their score is that window's score exactly.
    edge = float(session(repo, "temperature").run(["score"], {"window": first})[0][0])
    add_model(repo, "at", "temperature", anomaly={"threshold": edge})
    add_model(repo, "below", "temperature", anomaly={"threshold": float(np.nextafter(edge, -np.inf))})
    async with serving(tiny_settings(repo)) as (_, client):
        at = (await client.post("/v1/anomaly/score", json={"series": series.tolist(), "model": "at"})).json()
        below = (await client.post("/v1/anomaly/score", json={"series": series.tolist(), "model": "below"})).json()
    assert [r["score"] for r in at["results"][:2]] == pytest.approx([edge, edge], rel=1e-5)  # 6 digits shown
    assert [r["is_anomaly"] for r in at["results"][:2]] == [False, False]
    assert all(s["start"] > 1 for s in at["segments"])
    assert [r["is_anomaly"] for r in below["results"][:2]] == [True, True]
    assert below["segments"][0]["start"] == 0
