"""Access control wired into the app: inference and management tokens, open or protected probes, CORS."""

from __future__ import annotations

import logging

import pytest

from tests.support.app_harness import serving, tiny_settings
from tests.support.tiny_models import build_repository

INFERENCE, MANAGEMENT = "infer-7f3a", "manage-91c2"
IMAGE = {"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}]}
# (method, path, JSON body) of every inference-side route
INFERENCE_ROUTES = [
    ("POST", "/v2/models/digits/infer", IMAGE),
    ("POST", "/v2/models/digits/versions/1/infer", IMAGE),
    ("GET", "/v2/models/digits", None),
    ("GET", "/v2/models/digits/ready", None),
    ("GET", "/v2", None),
    ("POST", "/v1/text/classify", {"texts": ["win cash"]}),
    ("POST", "/v1/anomaly/score", {"samples": [[0.5] * 21]}),
    ("GET", "/v1/models", None),
]
MANAGEMENT_ROUTES = [
    ("GET", "/v2/repository/index", None),
    ("POST", "/v2/repository/index", {}),
    ("POST", "/v2/repository/models/digits/load", {}),
    ("POST", "/v2/repository/models/thyroid/unload", {}),
]
PROBES = ["/v2/health/live", "/v2/health/ready", "/metrics"]


@pytest.fixture
def repo(tmp_path):
    return build_repository(tmp_path / "models")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(client, method: str, path: str, body, headers=None):
    return await client.request(method, path, json=body, headers=headers or {})


async def test_without_tokens_inference_is_open_and_management_is_closed(repo):
    # Bound to a network interface: loopback requests get no token-less management either (issue 12).
    async with serving(tiny_settings(repo, host="0.0.0.0")) as (_, client):
        for method, path, body in INFERENCE_ROUTES:
            assert (await call(client, method, path, body)).status_code == 200, path
        for method, path, body in MANAGEMENT_ROUTES:
            r = await call(client, method, path, body, bearer("anything"))
            assert r.status_code == 403, path
            assert r.json() == {
                "error": "the management API is disabled: no management token is configured",
                "code": "forbidden",
            }
        for path in PROBES:
            assert (await client.get(path)).status_code == 200


async def test_inference_token_guards_every_inference_route(repo):
    async with serving(tiny_settings(repo, auth={"inference_token": INFERENCE})) as (_, client):
        for method, path, body in INFERENCE_ROUTES:
            missing = await call(client, method, path, body)
            wrong = await call(client, method, path, body, bearer(INFERENCE + "x"))
            basic = await call(client, method, path, body, {"Authorization": f"Basic {INFERENCE}"})
            right = await call(client, method, path, body, bearer(INFERENCE))
            assert (missing.status_code, wrong.status_code, basic.status_code, right.status_code) == (
                401,
                401,
                401,
                200,
            ), path
            assert missing.headers["www-authenticate"] == 'Bearer realm="axon"'
            assert wrong.headers["www-authenticate"] == 'Bearer realm="axon", error="invalid_token"'
            assert wrong.json()["error"] == "the inference token is not valid"
        for path in PROBES:  # open unless protected
            assert (await client.get(path)).status_code == 200
        # the inference token opens no management route
        for method, path, body in MANAGEMENT_ROUTES:
            assert (await call(client, method, path, body, bearer(INFERENCE))).status_code == 403


async def test_management_token_is_separate_from_the_inference_token(repo):
    auth = {"inference_token": INFERENCE, "management_token": MANAGEMENT}
    async with serving(tiny_settings(repo, auth=auth)) as (_, client):
        for method, path, body in MANAGEMENT_ROUTES:
            assert (await call(client, method, path, body)).status_code == 401, path
            assert (await call(client, method, path, body, bearer(INFERENCE))).status_code == 401, path
            assert (await call(client, method, path, body, bearer(MANAGEMENT))).status_code == 200, path
        method, path, body = INFERENCE_ROUTES[0]
        assert (await call(client, method, path, body, bearer(MANAGEMENT))).status_code == 401


async def test_management_without_an_inference_token_leaves_inference_open(repo):
    async with serving(tiny_settings(repo, auth={"management_token": MANAGEMENT})) as (_, client):
        method, path, body = INFERENCE_ROUTES[0]
        assert (await call(client, method, path, body)).status_code == 200
        assert (await client.get("/v2/repository/index")).status_code == 401
        assert (await client.get("/v2/repository/index", headers=bearer(MANAGEMENT))).status_code == 200


async def test_health_and_metrics_can_be_protected(repo):
    auth = {"inference_token": INFERENCE, "protect_health": True, "protect_metrics": True}
    async with serving(tiny_settings(repo, auth=auth)) as (_, client):
        for path in PROBES:
            assert (await client.get(path)).status_code == 401, path
            assert (await client.get(path, headers=bearer(INFERENCE))).status_code == 200, path
    async with serving(tiny_settings(repo, auth=auth | {"protect_health": False})) as (_, client):
        assert (await client.get("/v2/health/ready")).status_code == 200
        assert (await client.get("/metrics")).status_code == 401


async def test_tokens_never_reach_the_logs(repo, caplog):
    auth = {"inference_token": INFERENCE, "management_token": MANAGEMENT}
    caplog.set_level(logging.DEBUG)
    async with serving(tiny_settings(repo, auth=auth, access_log=True)) as (app, client):
        await client.get("/v2/models/digits", headers=bearer(INFERENCE))
        await client.get("/v2/models/digits", headers=bearer(INFERENCE[:-1] + "0"))
        await client.get("/v2/repository/index", headers=bearer(MANAGEMENT + "0"))
        settings_text = repr(app.state.axon.settings) + str(app.state.axon.settings.model_dump())
    assert any("/v2/models/digits" in r.getMessage() for r in caplog.records)  # the access log did run
    text = caplog.text + settings_text
    assert INFERENCE not in text and MANAGEMENT not in text and INFERENCE[:-1] not in text


def test_an_empty_token_is_a_configuration_error(repo):
    from service.app import create_app

    with pytest.raises(ValueError, match="empty token"):
        create_app(tiny_settings(repo, auth={"inference_token": " "}))


async def test_cors_is_off_by_default(repo):
    async with serving(tiny_settings(repo)) as (_, client):
        r = await client.get("/v2", headers={"Origin": "https://app.example"})
        preflight = await client.options(
            "/v2/models/digits/infer",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
            },
        )
    assert "access-control-allow-origin" not in r.headers
    assert preflight.status_code == 405 and "access-control-allow-origin" not in preflight.headers


async def test_cors_allows_only_the_configured_origins(repo):
    settings = tiny_settings(repo, cors_origins=["https://app.example"], auth={"inference_token": INFERENCE})
    preflight_headers = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,inference-header-content-length",
    }
    async with serving(settings) as (_, client):
        allowed = await client.options(
            "/v2/models/digits/infer", headers={"Origin": "https://app.example", **preflight_headers}
        )
        other = await client.options(
            "/v2/models/digits/infer", headers={"Origin": "https://evil.example", **preflight_headers}
        )
        simple = await client.post(
            "/v2/models/digits/infer", json=IMAGE, headers={"Origin": "https://app.example", **bearer(INFERENCE)}
        )
    # The preflight carries no token and must still pass: it only asks what the browser may send.
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "inference-header-content-length" in allowed.headers["access-control-allow-headers"].lower()
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    assert simple.status_code == 200 and simple.headers["access-control-allow-origin"] == "https://app.example"
    assert "Inference-Header-Content-Length" in simple.headers["access-control-expose-headers"]
