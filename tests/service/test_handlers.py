"""The one error shape for what reaches FastAPI itself: its body validation, and AxonErrors raised by a route."""

from __future__ import annotations

import logging

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from service.errors import InferenceFailed, ModelNotReady
from service.handlers import install_error_handlers


class Item(BaseModel):
    name: str


def app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/items")
    async def items(item: Item) -> dict[str, str]:
        return {"name": item.name}

    @app.get("/failed")
    async def failed() -> None:
        raise InferenceFailed("model 'm' version 1 failed: boom")

    @app.get("/loading")
    async def loading() -> None:
        raise ModelNotReady("model 'm' is loading")

    return app


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app()), base_url="http://axon.test")


async def test_a_body_that_is_not_json_is_400_and_one_with_wrong_fields_422():
    async with client() as http:
        broken = await http.post("/items", content=b'{"name": ', headers={"content-type": "application/json"})
        wrong = await http.post("/items", json={"name": 1})
    assert broken.status_code == 400
    assert broken.json() == {"error": "request body is not valid JSON", "code": "bad_request"}
    assert wrong.status_code == 422
    assert wrong.json() == {"error": "name: Input should be a valid string", "code": "invalid_input"}


async def test_a_server_fault_is_logged_and_an_unready_model_is_not(caplog):
    caplog.set_level(logging.INFO, logger="axon.errors")
    async with client() as http:
        failed = await http.get("/failed")
        loading = await http.get("/loading")
    assert failed.status_code == 500 and failed.json()["code"] == "inference_failed"
    assert loading.status_code == 503 and loading.json()["code"] == "model_not_ready"
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "axon.errors"]
    assert logged == [(logging.ERROR, "inference_failed: model 'm' version 1 failed: boom")]
