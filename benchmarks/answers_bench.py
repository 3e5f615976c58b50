"""What typing an answer costs: building and serialising a 64-prediction vision answer four ways.

    python benchmarks/answers_bench.py

(a) TypedDicts (plain dicts at run time) + orjson: what the task modules do; the TypedDicts are the
documented schemas and tests/service/test_answers.py validates real answers against them. (b) pydantic models
validated per request, (c) pydantic models built with model_construct (no validation), (d) the dicts
validated by a TypeAdapter of the TypedDict. Prints microseconds per answer.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

import numpy as np
from pydantic import BaseModel, TypeAdapter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from service.lean import encode_json
from service.tasks.vision import VisionResponse, classifications

ROWS, CLASSES, TOP_K = 64, 10, 5
LABELS = [str(i) for i in range(CLASSES)]
LOGITS = np.random.default_rng(0).normal(size=(ROWS, CLASSES)).astype(np.float32)


class RankedModel(BaseModel):
    label: str
    score: float


class PredictionModel(RankedModel):
    top_k: list[RankedModel]


class ResponseModel(BaseModel):
    model: str
    version: int
    predictions: list[PredictionModel]


def typed_dicts() -> bytes:
    return encode_json(VisionResponse(model="m", version=1, predictions=classifications(LOGITS, LABELS, TOP_K)))


def validated_models() -> bytes:
    preds = [PredictionModel(**p) for p in classifications(LOGITS, LABELS, TOP_K)]  # type: ignore[arg-type]
    return ResponseModel(model="m", version=1, predictions=preds).model_dump_json().encode()


def constructed_models() -> bytes:
    preds = [
        PredictionModel.model_construct(
            label=p["label"], score=p["score"], top_k=[RankedModel.model_construct(**r) for r in p["top_k"]]
        )
        for p in classifications(LOGITS, LABELS, TOP_K)
    ]
    return ResponseModel.model_construct(model="m", version=1, predictions=preds).model_dump_json().encode()


ADAPTER = TypeAdapter(VisionResponse)


def adapter_validated() -> bytes:
    answer = VisionResponse(model="m", version=1, predictions=classifications(LOGITS, LABELS, TOP_K))
    return encode_json(ADAPTER.validate_python(answer))


def main() -> None:
    baseline = min(timeit.repeat(lambda: classifications(LOGITS, LABELS, TOP_K), number=200, repeat=5)) / 200
    print(f"classifications() alone (numbers and dicts): {baseline * 1e6:8.1f} us")
    for name, fn in [
        ("typed dicts + orjson", typed_dicts),
        ("pydantic, validated", validated_models),
        ("pydantic, model_construct", constructed_models),
        ("TypeAdapter validation", adapter_validated),
    ]:
        assert fn() == typed_dicts() or name.startswith("pydantic"), name
        best = min(timeit.repeat(fn, number=200, repeat=5)) / 200
        extra = (best - baseline) * 1e6
        print(f"{name:28s} {best * 1e6:8.1f} us per {ROWS}-prediction answer ({extra:6.1f} over classifications())")


if __name__ == "__main__":
    main()
