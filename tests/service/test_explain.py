"""Explanations on the committed default models and real inputs: shapes, offsets, and faithfulness.

Faithfulness is checked outside the code under test: the deletions are scored by ONNX Runtime run here
on inputs prepared by hand from the repository contract, and must hurt the explained class more when
they remove the top-attributed pixels or tokens than when they remove random ones.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import pytest_asyncio
from PIL import Image
from tokenizers import Tokenizer

from modelrepo import scoring
from service.settings import Settings
from tests.support.app_harness import metric, png, serving
from tests.support.data_roots import root
from training.data.images import load_mnist_pool
from training.data.tabular import is_anomaly, load_thyroid
from training.data.text import load_sentiment_file, load_sms_spam
from training.data.timeseries import load_nab

ROOT = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("AXON_TEST_MODELS", ROOT / "models"))
DATA = root()

pytestmark = pytest.mark.asyncio(loop_scope="module")


def version_dir(name: str) -> Path:
    return max((p for p in (MODELS / name).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def config(name: str) -> dict:
    return json.loads((MODELS / name / "config.json").read_text())


def session(name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(version_dir(name) / "model.onnx"), providers=["CPUExecutionProvider"])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client():
    settings = Settings(
        model_repository=MODELS, providers=["CPUExecutionProvider"], access_log=False, validate_models=False
    )
    async with serving(settings) as (_, http):
        yield http


def mnist_images(n: int) -> list[np.ndarray]:
    images, _ = load_mnist_pool(DATA / "mnist_test10k")
    return [images[i] for i in range(0, len(images), len(images) // n)[:n]]


async def test_vision_saliency_top_pixels_hurt_more_than_random_ones(client):
    digit = np.asarray(Image.open(ROOT / "examples" / "digit.png").convert("L").resize((28, 28)))
    images = [digit, *mnist_images(5)]
    r = await client.post("/v1/vision/explain", json={"images": [base64.b64encode(png(i)).decode() for i in images]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "mnist-cnn" and len(body["explanations"]) == len(images)
    spec = config("mnist-cnn")["preprocessing"]
    x = ((np.stack(images)[:, None] / 255.0 - spec["mean"][0]) / spec["std"][0]).astype(np.float32)
    background = np.float32((0.0 - spec["mean"][0]) / spec["std"][0])
    run = session("mnist-cnn")
    rng = np.random.default_rng(0)
    top_drops, random_drops = [], []
    for img, e in zip(x, body["explanations"]):
        heat = np.asarray(e["saliency"])
        assert heat.shape == (28, 28) and e["passes"] == 1 + 49  # 4x4 patches on 28x28, plus the image itself
        k = config("mnist-cnn")["labels"].index(e["label"])
        order = np.argsort(-heat.ravel(), kind="stable")
        variants = []
        for chosen in [order[:40], *(rng.permutation(784)[:40] for _ in range(5))]:  # 5% of the pixels
            v = img.copy().ravel()
            v[chosen] = background
            variants.append(v.reshape(img.shape))
        p = scoring.softmax(run.run(None, {"image": np.stack([img, *variants])})[0].astype(np.float64))[:, k]
        assert p[0] == pytest.approx(e["score"], abs=1e-5)
        top_drops.append(p[0] - p[1])
        random_drops.append(np.mean(p[0] - p[2:]))
    assert np.mean(top_drops) > np.mean(random_drops) + 0.2, (top_drops, random_drops)


async def test_vision_overlay_and_target(client):
    image = base64.b64encode(png(mnist_images(1)[0])).decode()
    r = await client.post("/v1/vision/explain", params={"overlay": "true", "target": "3"}, json={"images": [image]})
    assert r.status_code == 200, r.text
    e = r.json()["explanations"][0]
    assert e["label"] == "3"
    overlay = Image.open(io.BytesIO(base64.b64decode(e["overlay"])))
    assert overlay.format == "PNG" and overlay.size == (224, 224)
    plain = await client.post("/v1/vision/explain", files=[("images", ("a.png", png(mnist_images(1)[0]), "image/png"))])
    assert "overlay" not in plain.json()["explanations"][0]


def sample_texts(name: str, n: int) -> list[str]:
    if "sentiment" in name:
        texts, _ = load_sentiment_file(DATA / "sentiment_labelled_sentences" / "amazon_cells_labelled.txt")
        return [t for t in texts if len(t.split()) >= 6][:n]
    texts, labels = load_sms_spam(DATA / "sms_spam" / "SMSSpamCollection.tsv")
    return [t for t, y in zip(texts, labels) if y == "spam"][:n]  # ham is answered with p ~ 1 whatever is removed


@pytest.mark.parametrize("name", ["sms-spam-transformer", "sentiment-gru"])
async def test_text_top_tokens_hurt_more_than_random_ones(client, name):
    texts = sample_texts(name, 8)
    r = await client.post("/v1/text/explain", json={"texts": texts, "model": name})
    assert r.status_code == 200, r.text
    cfg = config(name)
    tokenizer = Tokenizer.from_file(str(version_dir(name) / cfg["preprocessing"]["tokenizer"]))
    tokenizer.enable_truncation(cfg["preprocessing"]["max_length"])
    run = session(name)
    rng = np.random.default_rng(0)
    top_drops, random_drops = [], []
    for text, e in zip(texts, r.json()["explanations"]):
        enc = tokenizer.encode(text.lower() if cfg["preprocessing"]["lowercase"] else text)
        spans = [(t["start"], t["end"]) for t in e["tokens"]]
        for t in e["tokens"]:  # offsets point into the original text at the token's characters
            assert text[t["start"] : t["end"]].lower() == t["token"].removeprefix("##").lower()
        assert e["passes"] == 1 + len(e["tokens"])
        position = {span: i for i, span in enumerate(enc.offsets)}
        contributions = np.array([t["contribution"] for t in e["tokens"]])
        k = cfg["labels"].index(e["label"])

        def prob_without(chosen: list[int], ids: list[int], where: list[int], k: int) -> float:
            drop = {where[j] for j in chosen}
            kept = np.array([[t for i, t in enumerate(ids) if i not in drop]], np.int64)
            logits = run.run(None, {"input_ids": kept, "attention_mask": np.ones_like(kept)})[0]
            return float(scoring.softmax(logits.astype(np.float64))[0, k])

        where = [position[span] for span in spans]  # each explained token's index in the tokenizer's output
        args = (enc.ids, where, k)
        assert prob_without([], *args) == pytest.approx(e["score"], abs=1e-5)
        top = list(np.argsort(-contributions, kind="stable")[:2])
        top_drops.append(e["score"] - prob_without(top, *args))
        random_drops.append(
            np.mean([e["score"] - prob_without(list(rng.permutation(len(spans))[:2]), *args) for _ in range(3)])
        )
    assert np.mean(top_drops) > np.mean(random_drops) + 0.02, (top_drops, random_drops)


async def test_tabular_injected_anomaly_is_the_top_feature(client):
    rows, cls = load_thyroid(DATA / "thyroid_ann" / "ann-train.data")
    normal = rows[np.asarray(is_anomaly(cls)) == 0][:20].astype(np.float64)
    spec = config("thyroid-autoencoder")["preprocessing"]
    scale = np.where(np.asarray(spec["scale"]) == 0, 1.0, spec["scale"])
    rng = np.random.default_rng(0)
    features = rng.integers(len(spec["features"]), size=len(normal))
    injected = normal.copy()
    injected[np.arange(len(normal)), features] += 3 * scale[features]  # 3 training standard deviations
    r = await client.post("/v1/anomaly/explain", json={"samples": injected.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    scored = await client.post("/v1/anomaly/score", json={"samples": injected.tolist()})
    assert [e["score"] for e in body["explanations"]] == [s["score"] for s in scored.json()["results"]]
    hits = 0
    for f, e in zip(features, body["explanations"]):
        assert [x["name"] for x in e["features"]] == spec["features"] and e["passes"] == 1
        shares = [x["contribution"] for x in e["features"]]
        assert sum(shares) == pytest.approx(1.0)
        hits += int(np.argmax(shares) == f)
    assert hits / len(features) >= 0.7  # chance: 1 in 21


async def test_series_segments_name_their_window_and_points(client):
    series = load_nab(
        DATA / "nab_realKnownCause" / "data" / "realKnownCause" / "machine_temperature_system_failure.csv"
    )
    values = series.values[:3000].tolist()
    r = await client.post("/v1/anomaly/explain", json={"series": values})
    assert r.status_code == 200, r.text
    body = r.json()
    scored = (await client.post("/v1/anomaly/score", json={"series": values})).json()
    assert body["results"] == scored["results"]
    assert [(s["start"], s["end"]) for s in body["segments"]] == [(s["start"], s["end"]) for s in scored["segments"]]
    assert body["segments"], "the excerpt holds a flagged segment"
    # Each segment is explained by the highest-scoring window that overlaps it, scored here by ONNX Runtime.
    spec = config("machine-temperature-autoencoder")["preprocessing"]
    z = ((np.asarray(values) - spec["mean"]) / spec["std"]).astype(np.float32)
    starts = scoring.window_starts(len(z), spec["window"], spec["stride"])
    windows = np.stack([z[s : s + spec["window"]] for s in starts])[:, :, None]
    window_scores = session("machine-temperature-autoencoder").run(["score"], {"window": windows})[0]
    for seg in body["segments"]:
        w = seg["window"]
        assert w["end"] - w["start"] + 1 == 256 and w["start"] <= seg["end"] and w["end"] >= seg["start"]
        overlapping = (starts <= seg["end"]) & (starts + spec["window"] - 1 >= seg["start"])
        assert w["start"] == int(starts[overlapping][np.argmax(window_scores[overlapping])]), seg
        assert seg["points"] and all(w["start"] <= p["index"] <= w["end"] for p in seg["points"])
        shares = [p["contribution"] for p in seg["points"]]
        assert shares == sorted(shares, reverse=True)


async def test_v2_explain_answers_like_the_task_route(client):
    texts = sample_texts("sentiment-gru", 2)
    v1 = await client.post("/v1/text/explain", json={"texts": texts, "model": "sentiment-gru"})
    v2 = await client.post("/v2/models/sentiment-gru/versions/1/explain", json={"texts": texts})
    assert v2.status_code == 200 and v2.json() == v1.json()
    missing = await client.post("/v2/models/nope/explain", json={"texts": texts})
    assert missing.status_code == 404 and missing.json()["code"] == "model_not_found"


async def test_explain_errors_use_the_error_shape_and_are_counted(client):
    before = metric((await client.get("/metrics")).text, "axon_requests_total", endpoint="explain", status="422")
    r = await client.post("/v1/text/explain", json={"texts": ["free cash"], "target": "eggs"})
    assert r.status_code == 422 and "eggs" in r.json()["error"] and r.json()["code"] == "invalid_input"
    r = await client.post("/v1/text/explain", json={"texts": ["a"], "model": "mnist-cnn"})
    assert r.status_code >= 400 and set(r.json()) == {"error", "code"}
    r = await client.post("/v1/text/explain", json={"texts": ["x"] * 9})
    assert r.status_code == 413 and "limit is 8" in r.json()["error"]
    r = await client.post("/v1/anomaly/explain", json={"series": [80.0] * 300, "timestamps": ["a", "b"]})
    assert r.status_code == 422 and r.json() == {
        "error": "'timestamps' has 2 entries but 'series' has 300",
        "code": "invalid_input",
    }
    after = metric((await client.get("/metrics")).text, "axon_requests_total", endpoint="explain", status="422")
    assert after >= before + 1


# --- the lane and the cost caps, on the tiny stand-in models ---------------------------------------


async def test_explanations_queue_in_their_own_lane(tmp_path):
    from tests.support.app_harness import tiny_settings
    from tests.support.tiny_models import build_repository

    # Bounds that differ: the lane takes 2 explanations, whatever plain inference's bound (1).
    settings = tiny_settings(
        build_repository(tmp_path / "models"), max_requests_in_flight=1, explain={"max_in_flight": 2}
    )
    started, release = [asyncio.Event(), asyncio.Event()], asyncio.Event()

    async def slow_body(started: asyncio.Event):
        started.set()
        await release.wait()
        yield json.dumps({"texts": ["free cash now"]}).encode()

    async with serving(settings) as (_, client):
        headers = {"content-type": "application/json"}
        held = [
            asyncio.create_task(client.post("/v1/text/explain", content=slow_body(event), headers=headers))
            for event in started
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 10)  # both of the lane's slots taken
        third = await client.post("/v1/text/explain", json={"texts": ["hello"]})
        plain = await client.post("/v1/text/classify", json={"texts": ["hello"]})
        release.set()
        first = await asyncio.gather(*held)
    assert third.status_code == 429 and third.json()["code"] == "overloaded" and "Retry-After" in third.headers
    assert plain.status_code == 200  # plain inference's one slot was free all along
    assert [r.status_code for r in first] == [200, 200], [r.text for r in first]


async def test_occlusion_patch_grows_to_fit_max_passes_and_text_is_refused_past_it(tmp_path):
    from tests.support.app_harness import tiny_settings
    from tests.support.tiny_models import build_repository

    # The tiny spam model keeps 6 tokens of a text: 7 passes with its own, past a limit of 5.
    settings = tiny_settings(build_repository(tmp_path / "models"), explain={"max_passes": 5})
    async with serving(settings) as (_, client):
        image = base64.b64encode(png(mnist_images(1)[0])).decode()
        vision = await client.post("/v1/vision/explain", json={"images": [image]})
        text = await client.post("/v1/text/explain", json={"texts": ["free cash now " * 20]})
    assert vision.status_code == 200, vision.text
    e = vision.json()["explanations"][0]
    assert e["passes"] <= 5 and np.asarray(e["saliency"]).shape == (28, 28)
    assert text.status_code == 413 and "the limit is 5" in text.json()["error"]


async def test_a_lowercasing_model_explains_the_text_as_its_codec_sees_it(tmp_path):
    from tokenizers import normalizers

    from tests.support.app_harness import tiny_settings
    from tests.support.tiny_models import CONFIGS, add_model

    # `lowercase` in the config, not in the tokenizer: the explanation must lowercase as classify does.
    root = tmp_path / "models"
    folder = add_model(root, "shouty", "spam", preprocessing={**CONFIGS["spam"]["preprocessing"], "lowercase": True})
    tokenizer = Tokenizer.from_file(str(folder / "1" / "tokenizer.json"))
    tokenizer.normalizer = normalizers.Sequence([])
    tokenizer.save(str(folder / "1" / "tokenizer.json"))
    async with serving(tiny_settings(root)) as (_, client):
        r = await client.post("/v1/text/explain", json={"texts": ["FREE Cash now"], "model": "shouty"})
    assert r.status_code == 200, r.text
    tokens = [(t["token"], t["start"], t["end"]) for t in r.json()["explanations"][0]["tokens"]]
    assert tokens == [("free", 0, 4), ("cash", 5, 9), ("now", 10, 13)]


async def test_the_occlusion_grid_and_its_unoccluded_pass_fit_max_passes():
    from service.explain.vision import patch_side

    # 28x28 in patches of 4: a 7x7 grid, 49 passes plus the unoccluded one.
    assert patch_side(28, 28, 4, 50) == 4
    assert patch_side(28, 28, 4, 49) == 5  # a 6x6 grid: 37 passes


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("On", True), ("0", False), ("", False), (None, None)])
async def test_overlay_flags_read_as_query_and_form_strings(value, expected):
    from service.explain.vision import flag

    assert flag(value, "overlay") is expected
