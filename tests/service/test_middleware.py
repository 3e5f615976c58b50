"""The request-context middleware's access log: one line per request, its parts as fields, probes at debug."""

from __future__ import annotations

import json
import logging

import pytest

from service.logs import JsonFormatter
from tests.support.app_harness import serving, tiny_settings
from tests.support.tiny_models import build_repository

IMAGE = {"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}]}


@pytest.fixture
def repo(tmp_path):
    return build_repository(tmp_path / "models")


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "axon.access"]


async def test_an_inference_line_carries_method_route_status_duration_bytes_model_and_id_as_fields(repo, caplog):
    caplog.set_level(logging.DEBUG, logger="axon.access")
    async with serving(tiny_settings(repo, access_log=True)) as (_, client):
        r = await client.post("/v2/models/digits/infer", json=IMAGE, headers={"X-Request-ID": "trace-7"})
    assert r.status_code == 200
    (record,) = access_records(caplog)
    entry = json.loads(JsonFormatter().format(record))
    assert record.levelno == logging.INFO
    assert entry["method"] == "POST"
    assert entry["route"] == "/v2/models/{name}/infer"  # the template, as in the metrics
    assert entry["path"] == "/v2/models/digits/infer"
    assert entry["status"] == 200
    assert entry["bytes"] == len(r.content)
    assert entry["model"] == "digits"
    assert entry["request_id"] == "trace-7"
    assert 0 < entry["duration_ms"] < 30_000


async def test_an_error_line_has_its_status_and_no_model_before_one_was_resolved(repo, caplog):
    caplog.set_level(logging.DEBUG, logger="axon.access")
    async with serving(tiny_settings(repo, access_log=True)) as (_, client):
        r = await client.post("/v2/models/digits/infer", content=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    (record,) = access_records(caplog)
    assert record.status == 400 and record.model is None and record.bytes == len(r.content)


async def test_health_probes_are_logged_at_debug_and_other_requests_at_info(repo, caplog):
    caplog.set_level(logging.DEBUG, logger="axon.access")
    async with serving(tiny_settings(repo, access_log=True)) as (_, client):
        for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/digits/ready", "/v2/models/digits"):
            assert (await client.get(path)).status_code == 200, path
    levels = {r.route: r.levelno for r in access_records(caplog)}
    assert levels == {
        "/v2/health/live": logging.DEBUG,
        "/v2/health/ready": logging.DEBUG,
        "/v2/models/{name}/ready": logging.DEBUG,
        "/v2/models/{name}": logging.INFO,
    }
