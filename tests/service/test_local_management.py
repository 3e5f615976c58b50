"""Issue 12: train, then load without a restart: token-less management for requests from the machine itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from service.app import create_app
from service.auth import is_loopback, local_management_allowed
from service.settings import Settings
from tests.support.app_harness import tiny_settings
from tests.support.tiny_models import build_repository

LOAD = "/v2/repository/models/digits/load"


@pytest.fixture
def repo(tmp_path):
    return build_repository(tmp_path / "models")


@asynccontextmanager
async def client_from(
    settings: Settings, peer: str, base_url: str = "http://127.0.0.1:8000"
) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests reach the app from `peer` (the address uvicorn would report)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await app.state.axon.load_task
        transport = httpx.ASGITransport(app=app, client=(peer, 50000))
        async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=30) as client:
            yield client


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_binds_open_local_management_by_default(host):
    assert local_management_allowed(None, host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.7", "example.com"])
def test_network_binds_keep_management_closed_by_default(host):
    assert not local_management_allowed(None, host)
    assert local_management_allowed(True, host)  # an explicit setting wins
    assert not local_management_allowed(False, "127.0.0.1")


def test_loopback_names():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]") and is_loopback("LOCALHOST")
    assert (
        not is_loopback("10.0.0.1")
        and not is_loopback("")
        and not is_loopback(None)
        and not is_loopback("localhost.evil")
    )


async def test_a_loopback_server_loads_for_local_clients_without_a_token(repo):
    async with client_from(tiny_settings(repo), "127.0.0.1") as client:
        loaded = await client.post(LOAD)
        index = await client.get("/v2/repository/index")
    assert loaded.status_code == 200, loaded.text
    assert loaded.json() == {"name": "digits", "versions": ["1"]}
    assert index.status_code == 200 and {row["name"] for row in index.json()} >= {"digits"}


async def test_ipv6_loopback_and_localhost_host_are_local(repo):
    async with client_from(tiny_settings(repo), "::1", "http://localhost:8000") as client:
        assert (await client.post(LOAD)).status_code == 200


@pytest.mark.parametrize(
    ("peer", "headers", "why"),
    [
        ("10.1.2.3", {}, "a remote peer"),
        ("127.0.0.1", {"Origin": "https://evil.example"}, "a browser page (cross-site request)"),
        ("127.0.0.1", {"Host": "rebound.evil.example:8000"}, "a DNS-rebinding page"),
    ],
)
async def test_only_requests_from_the_machine_itself_skip_the_token(repo, peer, headers, why):
    async with client_from(tiny_settings(repo), peer) as client:
        refused = await client.post(LOAD, headers=headers)
    assert refused.status_code == 403, why
    assert refused.json() == {
        "error": "the management API is open only to requests from this machine (no management token is configured)",
        "code": "forbidden",
    }


async def test_a_network_bind_keeps_management_closed_even_from_loopback(repo):
    async with client_from(tiny_settings(repo, host="0.0.0.0"), "127.0.0.1") as client:
        refused = await client.post(LOAD)
    assert refused.status_code == 403
    assert refused.json()["error"] == "the management API is disabled: no management token is configured"


async def test_the_setting_turns_local_management_off_on_loopback(repo):
    settings = tiny_settings(repo, auth={"local_management": False})
    async with client_from(settings, "127.0.0.1") as client:
        assert (await client.post(LOAD)).status_code == 403


async def test_with_a_token_local_clients_still_skip_it_and_remote_ones_need_it(repo):
    settings = tiny_settings(repo, auth={"management_token": "m-token"})
    async with client_from(settings, "127.0.0.1") as client:
        local = await client.post(LOAD)
    async with client_from(settings, "10.1.2.3") as client:
        remote = await client.post(LOAD)
        with_token = await client.post(LOAD, headers={"Authorization": "Bearer m-token"})
    assert local.status_code == 200
    assert remote.status_code == 401 and remote.headers["WWW-Authenticate"].startswith("Bearer")
    assert with_token.status_code == 200
