"""Real answers of every task validate against the OpenAPI schema the app publishes: the docs cannot drift.

The task modules build their answers as TypedDicts (no per-request pydantic cost) and the same TypedDicts
are the documented response schemas; this test is what holds the two together at run time.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from tests.support.app_harness import png, serving, tiny_settings
from tests.support.tiny_models import build_repository

PATHS = {"vision": "/v1/vision/classify", "text": "/v1/text/classify", "anomaly": "/v1/anomaly/score"}


def response_validator(openapi: dict, path: str) -> Draft202012Validator:
    """A validator for the 200 answer of `path`, its $refs resolved against the document's components."""
    schema = openapi["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "$ref" in schema, f"{path} documents no response model"
    return Draft202012Validator({**schema, "components": openapi["components"]})


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return build_repository(tmp_path_factory.mktemp("answers") / "models")


async def test_every_task_answer_matches_its_documented_schema(repo):
    pixels = np.random.default_rng(5).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    series = [10.0] * 12 + [30.0] + [10.0] * 12
    requests = [
        ("vision", {"json": {"images": [base64.b64encode(png(p)).decode() for p in pixels], "top_k": 3}}),
        ("vision", {"files": [("images", ("a.png", png(pixels[0]), "image/png"))]}),
        ("text", {"json": {"texts": ["free cash now", "hello"]}}),
        ("anomaly", {"json": {"samples": np.random.default_rng(6).normal(0.5, 2, (3, 21)).tolist()}}),
        ("anomaly", {"json": {"series": series}}),
        ("anomaly", {"json": {"series": series, "timestamps": [f"t{i}" for i in range(25)]}}),
        ("anomaly", {"json": {"series": series, "timestamps": list(range(1000, 1025))}}),
    ]
    async with serving(tiny_settings(repo)) as (_, client):
        openapi = (await client.get("/openapi.json")).json()
        answers = [(task, await client.post(PATHS[task], **kwargs)) for task, kwargs in requests]
    for task, response in answers:
        assert response.status_code == 200, response.text
        errors = [e.message for e in response_validator(openapi, PATHS[task]).iter_errors(response.json())]
        assert errors == [], f"{task} answer {response.json()} breaks its schema"
    segments = answers[-1][1].json()["segments"]
    assert segments and segments[0]["start_timestamp"] >= 1000, "the series case must exercise segment timestamps"


async def test_the_schemas_refuse_fields_they_do_not_declare(repo):
    # What let series segments carry undeclared timestamps before: schemas that allowed any extra field.
    async with serving(tiny_settings(repo)) as (_, client):
        openapi = (await client.get("/openapi.json")).json()
    drifted = {
        "vision": {"model": "m", "version": 1, "predictions": [{"label": "a", "score": 1.0, "top_k": [], "extra": 1}]},
        "text": {"model": "m", "version": 1, "predictions": [], "extra": 1},
        "anomaly": {
            "model": "m",
            "version": 1,
            "threshold": 0.5,
            "results": [],
            "segments": [{"start": 0, "end": 1, "max_score": 1.0, "stop_timestamp": "t"}],
        },
    }
    for task, answer in drifted.items():
        assert not response_validator(openapi, PATHS[task]).is_valid(answer), task
