"""Texts tokenized per batch (service/rows.py through the batcher): one tokenizer call, answers in order, and a
refused or non-finite text failing only its own request."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from service import batcher as batcher_module
from service.batcher import Batcher, BatchPolicy
from service.errors import InvalidInput, NonFiniteOutput, PayloadTooLarge
from service.settings import Limits
from service.tasks.text import TextCodec
from tests.service.tasks.test_codecs import config
from tests.support.tiny_models import VOCAB, tokenizer

PRIZE = VOCAB.index("prize")


@pytest.fixture
def codec(tmp_path):
    tokenizer(tmp_path / "tokenizer.json")
    codec = TextCodec(config("spam"), tmp_path, Limits(max_texts=4, max_text_chars=50))
    calls: list[list[str]] = []
    encode_rows = codec.encode_rows

    def spy(values):
        calls.append(list(values))
        return encode_rows(values)

    codec.encode_rows = spy  # type: ignore[method-assign]
    codec.calls = calls  # type: ignore[attr-defined]
    return codec


class Model:
    """Logits (0, id of the first word): each answer shows which text it came from; `prize` first gives NaN."""

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    def __call__(self, inputs):
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        assert ids.shape == mask.shape and (mask.sum(axis=1) == (ids != 0).sum(axis=1)).all()
        self.runs.append(ids.copy())
        spam = ids[:, 1].astype(np.float32)
        spam[ids[:, 1] == PRIZE] = np.nan
        return {"logits": np.stack([np.zeros_like(spam), spam], axis=1)}


def spam_score(first_word: str) -> float:
    return 1 / (1 + math.exp(-VOCAB.index(first_word)))


def make(run, enabled=True) -> Batcher:
    batcher = Batcher(run, BatchPolicy(64, 0.0, 256, enabled, 2.0), name="model 'spam' version 1")
    batcher.start()
    return batcher


@pytest.mark.parametrize("inline_size", [64 * 1024, 0])  # 0: the batch is tokenized on the worker thread
async def test_a_batch_is_tokenized_in_one_call_and_each_request_gets_its_texts_answers_in_order(
    codec, monkeypatch, inline_size
):
    monkeypatch.setattr(batcher_module, "INLINE_ENCODE_SIZE", inline_size)
    model = Model()
    batcher = make(model)
    requests = [["see you later call me", "free"], ["cash now"], ["win", "ok see you later call"]]
    results = await asyncio.gather(*(batcher.submit(codec.prepare(texts), 5) for texts in requests))
    assert codec.calls == [[t for texts in requests for t in texts]]
    # Lengths 6, 2, 3, 2, 6 ([CLS] included): two runs (short and long), not one padded to 6.
    assert sorted(run.shape for run in model.runs) == [(2, 6), (3, 3)]
    for texts, result in zip(requests, results):
        first_words = [t.split()[0] for t in texts]
        assert [p["label"] for p in result.answers] == ["spam"] * len(texts)
        assert [p["score"] for p in result.answers] == pytest.approx([spam_score(w) for w in first_words], abs=1e-5)
        for p, w in zip(result.answers, first_words):
            assert p["scores"]["ham"] == pytest.approx(1 - spam_score(w), abs=1e-5)
    await batcher.stop()


async def test_a_text_without_a_known_token_fails_its_own_request_only(codec):
    model = Model()
    batcher = make(model)
    requests = [["free cash"], ["hello", "zebra"], ["win now"]]
    good, bad, other = await asyncio.gather(
        *(batcher.submit(codec.prepare(texts), 5) for texts in requests), return_exceptions=True
    )
    assert isinstance(bad, InvalidInput) and bad.status_code == 422
    assert "text 1 has no token the model knows" in bad.message  # its index in its own request, not in the batch
    assert len(codec.calls) == 1
    assert [p["score"] for p in good.answers] == pytest.approx([spam_score("free")], abs=1e-5)
    assert [p["score"] for p in other.answers] == pytest.approx([spam_score("win")], abs=1e-5)
    ran = np.concatenate([run[:, 1] for run in model.runs]).tolist()
    assert sorted(ran) == sorted([VOCAB.index("free"), VOCAB.index("win")])  # the refused request never ran
    await batcher.stop()


async def test_a_non_finite_answer_fails_its_own_request_only(codec):
    batcher = make(Model())
    fine, broken = await asyncio.gather(
        batcher.submit(codec.prepare(["cash"]), 5),
        batcher.submit(codec.prepare(["free", "prize now"]), 5),
        return_exceptions=True,
    )
    assert isinstance(broken, NonFiniteOutput) and "produced a non-finite value in 'logits'" in broken.message
    assert [p["score"] for p in fine.answers] == pytest.approx([spam_score("cash")], abs=1e-5)
    await batcher.stop()


async def test_unbatched_texts_are_tokenized_answered_and_refused_the_same_way(codec):
    batcher = make(Model(), enabled=False)
    result = await batcher.submit(codec.prepare(["win", "call me"]), 5)
    assert [p["score"] for p in result.answers] == pytest.approx([spam_score("win"), spam_score("call")], abs=1e-5)
    with pytest.raises(InvalidInput, match="text 0 has no token the model knows"):
        await batcher.submit(codec.prepare(["   ", "ok"]), 5)
    await batcher.stop()


def test_limits_are_checked_before_any_tokenizing(codec):
    with pytest.raises(PayloadTooLarge, match="5 texts in one request; the limit is 4"):
        codec.prepare(["ok"] * 5)
    with pytest.raises(PayloadTooLarge, match="text 1 has 51 characters"):
        codec.prepare(["ok", "x" * 51])
    assert codec.calls == []
