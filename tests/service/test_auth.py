"""Bearer tokens for inference and management, and CORS, on a real FastAPI app."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from service.auth import (
    AuthError,
    Forbidden,
    Unauthorized,
    add_cors,
    bearer_token,
    check_inference,
    check_management,
    inference_dependency,
    management_dependency,
    token_matches,
)

INFER = "infer-t0ken"
MANAGE = "manage-t0ken"


def _app(inference_token=None, management_token=None, origins=()) -> FastAPI:
    app = FastAPI()

    @app.exception_handler(AuthError)
    async def _render(request: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse({"error": exc.message, "code": exc.code}, exc.status_code, headers=exc.headers)

    @app.post("/v2/models/m/infer", dependencies=[Depends(inference_dependency(inference_token))])
    async def infer() -> dict:
        return {"ok": True}

    @app.post("/v2/repository/index", dependencies=[Depends(management_dependency(management_token))])
    async def index() -> list:
        return []

    add_cors(app, origins)
    return app


async def _call(app: FastAPI, path: str, token: str | None = None, method: str = "POST", headers=None):
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, headers=headers)


async def test_inference_is_open_without_a_configured_token():
    response = await _call(_app(), "/v2/models/m/infer")
    assert response.status_code == 200


async def test_inference_token_required_when_configured():
    app = _app(inference_token=SecretStr(INFER))
    missing = await _call(app, "/v2/models/m/infer")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="axon"'
    assert missing.json()["code"] == "unauthorized"
    wrong = await _call(app, "/v2/models/m/infer", token="nope")
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    assert (await _call(app, "/v2/models/m/infer", token=INFER)).status_code == 200


async def test_management_refused_when_no_management_token_is_configured():
    app = _app(inference_token=INFER)
    for token in (None, INFER, "anything"):
        response = await _call(app, "/v2/repository/index", token=token)
        assert response.status_code == 403
        assert "no management token is configured" in response.json()["error"]


async def test_management_token_is_separate_from_the_inference_token():
    app = _app(inference_token=INFER, management_token=MANAGE)
    assert (await _call(app, "/v2/repository/index")).status_code == 401
    assert (await _call(app, "/v2/repository/index", token=INFER)).status_code == 401
    assert (await _call(app, "/v2/repository/index", token=MANAGE)).status_code == 200
    assert (await _call(app, "/v2/models/m/infer", token=MANAGE)).status_code == 401
    assert (await _call(app, "/v2/models/m/infer", token=INFER)).status_code == 200


@pytest.mark.parametrize(
    "header",
    [f"Basic {INFER}", f"Token {INFER}", INFER, "Bearer", "Bearer ", f"Bearer {INFER}x", f"Bearer {INFER[:-1]}"],
)
async def test_malformed_or_other_scheme_headers_are_refused(header):
    response = await _call(_app(inference_token=INFER), "/v2/models/m/infer", headers={"Authorization": header})
    assert response.status_code == 401


async def test_scheme_is_case_insensitive():
    response = await _call(
        _app(inference_token=INFER), "/v2/models/m/infer", headers={"Authorization": f"bearer {INFER}"}
    )
    assert response.status_code == 200


def test_bearer_token_parsing():
    assert bearer_token(f"Bearer {INFER}") == INFER
    assert bearer_token(f"  BEARER   {INFER}  ") == INFER
    assert bearer_token(None) is None and bearer_token("") is None
    assert bearer_token(f"Basic {INFER}") is None and bearer_token("Bearer") is None


def test_token_matches_handles_non_ascii_and_missing():
    secret = SecretStr("clé-secrète")
    assert token_matches("clé-secrète", secret)
    assert not token_matches("cle-secrete", secret)
    assert not token_matches("é" * 3, SecretStr("abc"))  # str compare_digest would raise TypeError here
    assert not token_matches(None, secret)


def test_plain_functions_raise_the_right_errors():
    check_inference(None, None)
    with pytest.raises(Unauthorized):
        check_inference(None, SecretStr(INFER))
    with pytest.raises(Forbidden):
        check_management(f"Bearer {MANAGE}", None)
    check_management(f"Bearer {MANAGE}", SecretStr(MANAGE))


@pytest.mark.parametrize("bad", ["", "   ", " padded", "padded\n"])
def test_empty_or_padded_configured_token_is_a_configuration_error(bad):
    with pytest.raises(ValueError):
        inference_dependency(bad)
    with pytest.raises(ValueError):
        management_dependency(SecretStr(bad))


async def test_tokens_never_appear_in_reprs_messages_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    secret = SecretStr(INFER)
    assert INFER not in repr(secret) and INFER not in str(secret)
    app = _app(inference_token=secret, management_token=MANAGE)
    responses = [
        await _call(app, "/v2/models/m/infer", token=MANAGE),
        await _call(app, "/v2/repository/index", token=INFER),
    ]
    for response in responses:
        assert INFER not in response.text and MANAGE not in response.text
        assert INFER not in str(response.headers) and MANAGE not in str(response.headers)
    assert INFER not in caplog.text and MANAGE not in caplog.text
    with pytest.raises(Unauthorized) as info:
        check_inference(f"Bearer {MANAGE}", secret)
    assert MANAGE not in str(info.value) and INFER not in str(info.value)


async def test_cors_is_off_by_default():
    response = await _call(
        _app(),
        "/v2/models/m/infer",
        method="OPTIONS",
        headers={
            "Origin": "https://ui.example",
            "Access-Control-Request-Method": "POST",
        },
    )
    assert "access-control-allow-origin" not in response.headers


async def test_cors_allows_only_configured_origins():
    app = _app(inference_token=INFER, origins=["https://ui.example"])
    preflight = await _call(
        app,
        "/v2/models/m/infer",
        method="OPTIONS",
        headers={
            "Origin": "https://ui.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,inference-header-content-length",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://ui.example"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    other = await _call(
        app,
        "/v2/models/m/infer",
        method="OPTIONS",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
        },
    )
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    actual = await _call(app, "/v2/models/m/infer", token=INFER, headers={"Origin": "https://ui.example"})
    assert actual.status_code == 200
    assert actual.headers["access-control-allow-origin"] == "https://ui.example"
    assert "inference-header-content-length" in actual.headers["access-control-expose-headers"].lower()


@pytest.mark.parametrize("variant", [INFER.upper(), INFER.capitalize(), INFER.swapcase()])
async def test_a_token_differing_only_in_case_is_refused(variant):
    # Tokens are secrets, not names: "Infer-T0ken" is another token (the scheme alone is case-insensitive).
    app = _app(inference_token=SecretStr(INFER), management_token=SecretStr(MANAGE))
    assert (await _call(app, "/v2/models/m/infer", token=INFER)).status_code == 200
    refused = await _call(app, "/v2/models/m/infer", token=variant)
    assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
    assert (await _call(app, "/v2/repository/index", token=MANAGE.upper())).status_code == 401
    assert not token_matches(variant, SecretStr(INFER))


async def test_cors_never_allows_credentials():
    # Bearer tokens travel in a header the page sets itself: a browser must never send cookies along.
    app = _app(inference_token=INFER, origins=["https://ui.example"])
    preflight = await _call(
        app,
        "/v2/models/m/infer",
        method="OPTIONS",
        headers={
            "Origin": "https://ui.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    actual = await _call(app, "/v2/models/m/infer", token=INFER, headers={"Origin": "https://ui.example"})
    assert preflight.status_code == 200 and actual.status_code == 200
    for response in (preflight, actual):
        assert "access-control-allow-credentials" not in response.headers
        assert response.headers["access-control-allow-origin"] == "https://ui.example"  # never a reflected "*" either
