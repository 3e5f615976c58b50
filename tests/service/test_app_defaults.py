"""The committed default models served over HTTP on real dataset samples.

Each answer is checked against ONNX Runtime run in-process on inputs prepared by hand from the
repository contract (so the service's pre-processing is checked too), and against the dataset's
own labels for a sanity level of accuracy.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import pytest_asyncio
from tokenizers import Tokenizer

from modelrepo import scoring
from service.settings import Settings
from tests.support.app_harness import metric, png, serving
from tests.support.data_roots import root
from training.data.images import load_mnist_pool
from training.data.tabular import is_anomaly, load_thyroid
from training.data.text import load_sentiment, load_sms_spam
from training.data.timeseries import load_nab

ROOT = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("AXON_TEST_MODELS", ROOT / "models"))
DATA = root()  # the full datasets where present (CI), else the committed excerpts in tests/data
DEFAULTS = [
    "mnist-cnn",
    "sms-spam-transformer",
    "sentiment-gru",
    "sms-spam-minilm",
    "sentiment-minilm",
    "thyroid-autoencoder",
    "machine-temperature-autoencoder",
]

pytestmark = pytest.mark.asyncio(loop_scope="module")


def newest(name: str) -> Path:
    return max((p for p in (MODELS / name).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def config(name: str) -> dict:
    return json.loads((newest(name) / "config.json").read_text())


def reference(name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(newest(name) / "model.onnx"), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client():
    settings = Settings(
        model_repository=MODELS, providers=["CPUExecutionProvider"], access_log=False, validate_models=False
    )
    async with serving(settings) as (_, http):
        yield http


async def test_every_default_model_is_ready(client):
    models = {m["name"]: m for m in (await client.get("/v1/models")).json()["models"]}
    assert set(DEFAULTS) <= set(models)
    for name in DEFAULTS:
        assert models[name]["state"] == "ready", models[name]
    assert (await client.get("/v2/health/ready")).status_code == 200


async def test_mnist_digits(client):
    images, labels = load_mnist_pool(DATA / "mnist_test10k")
    pick = np.arange(0, len(images), len(images) // 24)[:24]
    r = await client.post(
        "/v1/vision/classify", files=[("images", (f"{i}.png", png(images[i]), "image/png")) for i in pick]
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "mnist-cnn"
    spec = config("mnist-cnn")["preprocessing"]
    x = images[pick].astype(np.float32) / 255.0
    x = 1.0 - x if spec.get("invert") else x
    x = ((x - spec["mean"][0]) / spec["std"][0])[:, None].astype(np.float32)
    probs = scoring.softmax(reference("mnist-cnn", {"image": x})["logits"].astype(np.float64))
    predicted = [int(p["label"]) for p in body["predictions"]]
    assert predicted == probs.argmax(axis=1).tolist()
    assert [p["score"] for p in body["predictions"]] == pytest.approx(probs.max(axis=1).tolist(), abs=1e-5)
    assert np.mean(np.array(predicted) == labels[pick]) >= 0.9


async def _texts(client, model: str, texts: list[str], truth: list[str], accuracy: float) -> None:
    r = await client.post("/v1/text/classify", json={"texts": texts, "model": model})
    assert r.status_code == 200, r.text
    spec = config(model)["preprocessing"]
    tok = Tokenizer.from_file(str(newest(model) / spec.get("tokenizer", "tokenizer.json")))
    tok.enable_truncation(spec["max_length"])
    tok.no_padding()
    rows = [e.ids for e in tok.encode_batch(texts)]
    # One text per run: no padding at all, the strictest reference for the batched service.
    expected = [
        scoring.softmax(
            reference(model, {"input_ids": np.array([ids]), "attention_mask": np.ones((1, len(ids)), np.int64)})[
                "logits"
            ].astype(np.float64)
        )[0]
        for ids in rows
    ]
    labels = config(model)["labels"]
    # An int8 file quantizes its activations per batch (ONNX Runtime dynamic quantization), so a text's scores
    # move a little with the texts batched beside it: up to 0.006 measured on 256 SMS, argmax unchanged.
    # Stored int8 or fp16 weights are fp32 arithmetic once loaded, held to fp32's tolerance.
    card = json.loads((newest(model) / "card.json").read_text())
    tol = 0.02 if card.get("quantization", {}).get("served") == "int8" else 1e-5
    for pred, probs in zip(r.json()["predictions"], expected):
        assert list(pred["scores"].values()) == pytest.approx(probs.tolist(), abs=tol)
        runner_up, best = np.sort(probs)[-2:]
        if best - runner_up > 2 * tol:  # a near tie may flip between batchings
            assert pred["label"] == labels[int(np.argmax(probs))]
    hits = np.mean([p["label"] == t for p, t in zip(r.json()["predictions"], truth)])
    assert hits >= accuracy, hits


@pytest.mark.parametrize("model", ["sms-spam-transformer", "sms-spam-minilm"])
async def test_sms_spam(client, model):
    texts, labels = load_sms_spam(DATA / "sms_spam" / "SMSSpamCollection.tsv")
    spam = [i for i, label in enumerate(labels) if label == "spam"][:12]
    ham = [i for i, label in enumerate(labels) if label == "ham"][:20]
    chosen = spam + ham
    await _texts(client, model, [texts[i] for i in chosen], [labels[i] for i in chosen], 0.85)


@pytest.mark.parametrize("model", ["sentiment-gru", "sentiment-minilm"])
async def test_sentiment(client, model):
    texts, labels = load_sentiment(DATA / "sentiment_labelled_sentences")
    chosen = list(range(0, len(texts), len(texts) // 30))[:30]
    await _texts(client, model, [texts[i] for i in chosen], [labels[i] for i in chosen], 0.7)


async def test_thyroid_rows(client):
    x, cls = load_thyroid(DATA / "thyroid_ann" / "ann-train.data")
    anomalous = np.flatnonzero(is_anomaly(cls))[:20]
    normal = np.flatnonzero(~is_anomaly(cls))[:40]
    rows = x[np.concatenate([anomalous, normal])]
    r = await client.post("/v1/anomaly/score", json={"samples": rows.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    spec = config("thyroid-autoencoder")
    pre = spec["preprocessing"]
    scale = np.where(np.array(pre["scale"]) == 0, 1.0, pre["scale"])
    features = ((rows.astype(np.float64) - pre["mean"]) / scale).astype(np.float32)
    expected = reference("thyroid-autoencoder", {"features": features})["score"]
    scores = np.array([res["score"] for res in body["results"]])
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    assert body["threshold"] == spec["anomaly"]["threshold"]
    assert [res["is_anomaly"] for res in body["results"]] == (expected > body["threshold"]).tolist()
    assert scores[: len(anomalous)].mean() > scores[len(anomalous) :].mean()


async def test_machine_temperature_series(client):
    nab = load_nab(DATA / "nab_realKnownCause" / "data" / "realKnownCause" / "machine_temperature_system_failure.csv")
    values = nab.values.astype(np.float64)
    stamps = [str(t) for t in nab.timestamps]
    r = await client.post("/v1/anomaly/score", json={"series": values.tolist(), "timestamps": stamps})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "machine-temperature-autoencoder" and len(body["results"]) == len(values)
    pre = config("machine-temperature-autoencoder")["preprocessing"]
    windows = scoring.cut_windows((values - pre["mean"]) / pre["std"], pre["window"], pre["stride"])
    window_scores = reference("machine-temperature-autoencoder", {"window": windows[..., None].astype(np.float32)})[
        "score"
    ]
    rule = config("machine-temperature-autoencoder")["anomaly"]
    how = rule.get("point_score", "mean")
    points = scoring.point_scores(window_scores.astype(np.float64), len(values), pre["window"], pre["stride"], how)
    np.testing.assert_allclose([res["score"] for res in body["results"]], points, rtol=1e-4, atol=1e-6)
    found = scoring.alarms(points, body["threshold"], rule.get("merge_gap", 0), rule.get("min_points", 1))
    assert [(s["start"], s["end"]) for s in body["segments"]] == [(s.start, s.end) for s in found]
    assert body["segments"], "the machine-temperature failure should show up as at least one segment"
    assert body["segments"][0]["start_timestamp"] == stamps[body["segments"][0]["start"]]


@pytest.mark.full_data("nab_realKnownCause")
async def test_machine_temperature_alarms_served_are_the_ones_its_card_counts(client):
    """The card's windows found and false alarms, recounted here from the served segments and NAB's windows."""
    nab = load_nab(DATA / "nab_realKnownCause" / "data" / "realKnownCause" / "machine_temperature_system_failure.csv")
    r = await client.post("/v1/anomaly/score", json={"series": nab.values.tolist()})
    assert r.status_code == 200, r.text
    served = [(s["start"], s["end"]) for s in r.json()["segments"]]
    overlaps = [[s <= w_end and e >= w_start for w_start, w_end in nab.windows] for s, e in served]
    hit = [any(row[i] for row in overlaps) for i in range(len(nab.windows))]
    false_alarms = sum(not any(row) for row in overlaps)
    card = json.loads((newest("machine-temperature-autoencoder") / "card.json").read_text())["metrics"]["series"]
    assert (hit, false_alarms, len(served)) == (card["hit"], card["false_alarms"], card["segments"])


async def test_concurrent_load_is_batched_and_answers_match(client):
    texts, _ = load_sms_spam(DATA / "sms_spam" / "SMSSpamCollection.tsv")
    sample = texts[:64]
    # The fp32 from-scratch model: an int8 one's scores move with what they are batched with (see `_texts`).
    model = "sms-spam-transformer"
    body = {"model": model}
    alone = [
        (await client.post("/v1/text/classify", json={"texts": [t], **body})).json()["predictions"][0]
        for t in sample[:8]
    ]
    before = (await client.get("/metrics")).text
    together = await asyncio.gather(*(client.post("/v1/text/classify", json={"texts": [t], **body}) for t in sample))
    after = (await client.get("/metrics")).text
    labels = {"model": model, "version": newest(model).name}
    runs = metric(after, "axon_batch_size_count", **labels) - metric(before, "axon_batch_size_count", **labels)
    rows = metric(after, "axon_batch_size_sum", **labels) - metric(before, "axon_batch_size_sum", **labels)
    assert rows == len(sample) and rows / runs > 1, (rows, runs)
    for solo, r in zip(alone, together):
        assert list(r.json()["predictions"][0]["scores"].values()) == pytest.approx(
            list(solo["scores"].values()), abs=1e-5
        )
