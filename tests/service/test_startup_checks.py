"""Issue 12: a bad start is loud: a missing repository is fatal, an empty one not ready, a missing default warned."""

from __future__ import annotations

import logging
import shutil

import pytest

from tests.support.app_harness import serving, tiny_settings
from tests.support.tiny_models import build_repository


@pytest.fixture
def repo(tmp_path):
    return build_repository(tmp_path / "models")


async def test_a_missing_repository_is_fatal_with_the_reason(tmp_path, caplog):
    fatal: list[str] = []
    settings = tiny_settings(tmp_path / "modles")  # the typo
    async with serving(settings, wait_ready=False) as (app, client):
        app.state.axon.on_fatal = fatal.append
        await app.state.axon.load_task
        ready = await client.get("/v2/health/ready")
        live = await client.get("/v2/health/live")
    assert fatal and "modles does not exist" in fatal[0] and "AXON_MODEL_REPOSITORY" in fatal[0]
    assert ready.status_code == 503 and ready.json()["code"] == "not_ready"
    assert "start-up failed: the model repository" in ready.json()["error"]
    assert "does not exist" in ready.json()["error"]
    assert live.status_code == 200
    assert any(r.levelno == logging.CRITICAL and "modles does not exist" in r.getMessage() for r in caplog.records)


async def test_a_relative_missing_repository_names_the_directory_it_was_resolved_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    async with serving(tiny_settings(tmp_path / "x").model_copy(update={"model_repository": "models"})) as (app, _):
        assert app.state.axon.fatal is not None
        assert f"models (resolved from {tmp_path})" in app.state.axon.fatal


async def test_a_file_in_place_of_the_repository_is_fatal(tmp_path):
    (tmp_path / "models").write_text("not a folder")
    async with serving(tiny_settings(tmp_path / "models")) as (app, _):
        assert "is not a directory" in (app.state.axon.fatal or "")


async def test_an_empty_repository_is_not_ready_and_says_so(tmp_path, caplog):
    (tmp_path / "models").mkdir()
    async with serving(tiny_settings(tmp_path / "models")) as (_, client):
        ready = await client.get("/v2/health/ready")
    assert ready.status_code == 503
    assert ready.json()["error"] == f"the model repository {tmp_path / 'models'} holds no model"
    assert any(r.levelno == logging.ERROR and "holds no model" in r.getMessage() for r in caplog.records)


async def test_missing_defaults_are_warned_at_start_up_and_listed_unresolved(repo, caplog):
    shutil.rmtree(repo / "temperature")
    caplog.set_level(logging.INFO)
    async with serving(tiny_settings(repo, auth={"management_token": "m"})) as (_, client):
        listing = (await client.get("/v1/models")).json()
        ready = await client.get("/v2/health/ready")
        unloaded = await client.post("/v2/repository/models/spam/unload", headers={"Authorization": "Bearer m"})
        after = (await client.get("/v1/models")).json()["defaults"]
    defaults = listing["defaults"]
    assert defaults["vision"] == {"model": "digits", "resolved": True}
    assert defaults["series"] == {
        "model": "temperature",
        "resolved": False,
        "reason": "model 'temperature' is not in the repository",
    }
    assert ready.status_code == 200  # the other models serve
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "default series model 'temperature' does not serve: model 'temperature' is not in the repository" in warnings
    assert not any("default vision" in w for w in warnings)
    assert unloaded.status_code == 200
    assert after["text"]["resolved"] is False
    assert after["text"]["reason"].startswith("model 'spam' has a folder in the repository but is not loaded")
