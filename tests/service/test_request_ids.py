"""X-Request-ID through the whole app: a client's id is echoed only when it is short and printable."""

from __future__ import annotations

import re

import pytest

from tests.support.app_harness import serving, tiny_settings
from tests.support.tiny_models import build_repository

MADE = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def repo(tmp_path):
    return build_repository(tmp_path / "models")


@pytest.mark.parametrize(
    "sent",
    [
        "abc\x01def",  # a control byte
        "abc\x1b[31mred",  # a terminal escape sequence, aimed at whoever reads the logs
        "tab\there",
        "del\x7f",
        "x" * 129,  # one past the length limit
        "y" * 10_000,
    ],
)
async def test_an_unprintable_or_overlong_id_is_replaced_by_a_fresh_one(repo, sent):
    async with serving(tiny_settings(repo)) as (_, client):
        r = await client.get("/v2/health/live", headers=[("X-Request-ID", sent.encode("latin-1"))])
    assert r.status_code == 200
    echoed = r.headers["x-request-id"]
    assert MADE.fullmatch(echoed), echoed
    assert r.headers.get_list("x-request-id") == [echoed]  # one id, never the client's beside it


async def test_a_printable_id_up_to_the_limit_is_echoed_on_answers_and_errors(repo):
    longest = "r" * 128
    async with serving(tiny_settings(repo)) as (_, client):
        ok = await client.get("/v2/health/live", headers={"X-Request-ID": longest})
        refused = await client.post("/v1/text/classify", json={"texts": "no"}, headers={"X-Request-ID": "trace 42/a"})
    assert ok.headers["x-request-id"] == longest
    assert refused.status_code == 422 and refused.headers["x-request-id"] == "trace 42/a"


async def test_a_non_ascii_id_is_replaced_not_echoed_in_another_encoding(repo):
    # "café" sent as latin-1 bytes would come back UTF-8 encoded: a different id than the client's
    async with serving(tiny_settings(repo)) as (_, client):
        r = await client.get("/v2/health/live", headers=[("X-Request-ID", "café".encode("latin-1"))])
    assert r.status_code == 200
    assert MADE.fullmatch(r.headers["x-request-id"]), r.headers["x-request-id"]
