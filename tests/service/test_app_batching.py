"""Through HTTP: concurrent requests share batches (visible in /metrics) and get the answers they get alone."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.support.app_harness import metric, png, serving, tiny_settings
from tests.support.tiny_models import VOCAB, build_repository


@pytest.fixture
def repo(tmp_path):
    return build_repository(tmp_path / "models")


def texts(n: int) -> list[str]:
    rng = np.random.default_rng(5)
    words = VOCAB[3:]
    return [" ".join(rng.choice(words, rng.integers(1, 9))) for _ in range(n)]


def mean_batch(text: str, model: str) -> float:
    return metric(text, "axon_batch_size_sum", model=model, version="1") / metric(
        text, "axon_batch_size_count", model=model, version="1"
    )


async def test_concurrent_texts_are_batched_and_match_their_solo_answers(repo):
    corpus = texts(48)
    async with serving(tiny_settings(repo, max_delay_ms=20)) as (_, client):
        alone = [(await client.post("/v1/text/classify", json={"texts": [t]})).json() for t in corpus]
        before = (await client.get("/metrics")).text
        together = await asyncio.gather(*(client.post("/v1/text/classify", json={"texts": [t]}) for t in corpus))
        after = (await client.get("/metrics")).text
    assert mean_batch(before, "spam") == 1.0  # one at a time: nothing to batch with
    runs = metric(after, "axon_batch_size_count", model="spam", version="1") - len(corpus)
    assert runs < len(corpus) / 2, f"{len(corpus)} concurrent requests took {runs} runs"
    for solo, mixed in zip(alone, together):
        assert mixed.status_code == 200
        np.testing.assert_allclose(
            list(mixed.json()["predictions"][0]["scores"].values()),
            list(solo["predictions"][0]["scores"].values()),
            atol=1e-5,
        )


async def test_multi_image_requests_are_split_and_merged_in_order(repo):
    rng = np.random.default_rng(6)
    requests = [[png(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for _ in range(n)] for n in (5, 1, 7, 3)]
    async with serving(tiny_settings(repo, max_batch_size=4)) as (_, client):
        alone = [
            (
                await client.post("/v1/vision/classify", files=[("images", ("i.png", b, "image/png")) for b in imgs])
            ).json()
            for imgs in requests
        ]
        together = await asyncio.gather(
            *(
                client.post("/v1/vision/classify", files=[("images", ("i.png", b, "image/png")) for b in imgs])
                for imgs in requests
            )
        )
        text = (await client.get("/metrics")).text
    for solo, mixed in zip(alone, together):
        assert len(mixed.json()["predictions"]) == len(solo["predictions"])
        for a, b in zip(solo["predictions"], mixed.json()["predictions"]):
            assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-5)
    assert metric(text, "axon_batch_size_bucket", model="digits", version="1", le="4.0") == metric(
        text, "axon_batch_size_count", model="digits", version="1"
    )  # never more than max_batch_size rows per run


async def test_batching_switched_off_runs_one_request_per_session_run(repo):
    async with serving(tiny_settings(repo, batching_enabled=False)) as (_, client):
        responses = await asyncio.gather(*(client.post("/v1/text/classify", json={"texts": [t]}) for t in texts(16)))
        text = (await client.get("/metrics")).text
    assert all(r.status_code == 200 for r in responses)
    assert metric(text, "axon_batch_size_count", model="spam", version="1") == 16
    assert mean_batch(text, "spam") == 1.0


async def test_batching_switched_off_still_refuses_past_its_bound_with_429(repo, monkeypatch):
    import threading

    import service.loader
    from tests.support.app_harness import until

    entered, release = threading.Event(), threading.Event()
    real = service.loader.session_runner

    def held_runner(session):
        run = real(session)

        def held(inputs):
            entered.set()
            release.wait(10)  # the first request holds the only running slot until the test lets go
            return run(inputs)

        return held

    monkeypatch.setattr(service.loader, "session_runner", held_runner)
    async with serving(tiny_settings(repo, batching_enabled=False, max_queue_size=1)) as (_, client):
        first = asyncio.create_task(client.post("/v1/text/classify", json={"texts": ["hello"]}))
        try:
            await until(entered.is_set, what="the first request reaching the model")
            second = await client.post("/v1/text/classify", json={"texts": ["free cash"]})
        finally:
            release.set()
        first = await first
    assert first.status_code == 200
    assert second.status_code == 429 and second.json()["code"] == "overloaded"
    assert second.headers["Retry-After"].isdigit()
