"""The repository API over HTTP: index, load, unload, and names that must never reach the disk."""

from __future__ import annotations

import asyncio

import pytest

import service.lifecycle
from service.errors import UnsafeName
from tests.support.app_harness import serving, tiny_settings
from tests.support.tiny_models import add_model, build_repository

MANAGER = {"Authorization": "Bearer manager-token"}
IMAGE = {"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}]}


@pytest.fixture
def repo(tmp_path):
    root = build_repository(tmp_path / "models")
    add_model(root, "broken", "digits")
    (root / "broken" / "1" / "model.onnx").write_bytes(b"\x08\x07garbage")
    return root


def settings(root, **overrides):
    values = {"validate_models": True, "auth": {"management_token": "manager-token"}}
    return tiny_settings(root, **(values | overrides))


async def test_index_lists_every_model_with_state_and_reason(repo):
    async with serving(settings(repo)) as (_, client):
        got = await client.get("/v2/repository/index", headers=MANAGER)
        posted = await client.post("/v2/repository/index", headers=MANAGER)
        ready = await client.post("/v2/repository/index", headers=MANAGER, json={"ready": True})
        blank = await client.post("/v2/repository/index", headers=MANAGER, content=b" \r\n")
    assert got.status_code == posted.status_code == 200 and got.json() == posted.json()
    assert blank.status_code == 200 and blank.json() == got.json()  # whitespace alone is the empty request
    rows = got.json()
    assert [(r["name"], r["version"], r["state"]) for r in rows] == [
        ("broken", "1", "UNAVAILABLE"),
        ("digits", "1", "READY"),
        ("spam", "1", "READY"),
        ("temperature", "1", "READY"),
        ("thyroid", "1", "READY"),
    ]
    assert rows[0]["reason"].startswith("validation failed: ") and rows[1]["reason"] == ""
    assert [r["name"] for r in ready.json()] == ["digits", "spam", "temperature", "thyroid"]


async def test_unload_then_load_again(repo):
    async with serving(settings(repo)) as (_, client):
        assert (
            await client.post(
                "/v2/repository/models/digits/unload",
                headers=MANAGER,
                json={"parameters": {"unload_dependents": False}},
            )
        ).status_code == 200
        gone = [
            await client.post("/v2/models/digits/infer", json=IMAGE),
            await client.get("/v2/models/digits/ready"),
            await client.get("/v2/models/digits"),
            await client.post("/v1/vision/classify", json={"model": "digits", "images": ["aGVsbG8="]}),
        ]
        unknown = await client.post("/v2/models/nope/infer", json=IMAGE)
        scraped = (await client.get("/metrics")).text
        row = [r for r in (await client.get("/v2/repository/index", headers=MANAGER)).json() if r["name"] == "digits"]
        again = await client.post("/v2/repository/models/digits/load", headers=MANAGER)
        back = await client.post("/v2/models/digits/infer", json=IMAGE)
    # Unloaded is not gone: the repository still holds it, so clients are told to come back (503), not 404.
    for answer in gone:
        assert answer.status_code == 503, answer.text
        assert answer.json() == {
            "error": "model 'digits' has a folder in the repository but is not loaded: load it with "
            "POST /v2/repository/models/digits/load, or set AXON_REPOSITORY_POLL_INTERVAL_S",
            "code": "model_not_ready",
        }
        assert answer.headers["Retry-After"].isdigit()
    assert unknown.status_code == 404 and unknown.json()["error"] == "model 'nope' is not in the repository"
    assert row == [{"name": "digits", "state": "UNAVAILABLE", "reason": "unloaded"}]
    # An unloaded version's queue gauge goes with it; the models still loaded keep theirs.
    assert 'axon_queue_depth{model="digits"' not in scraped and 'axon_queue_depth{model="spam"' in scraped
    assert again.status_code == 200 and again.json() == {"name": "digits", "versions": ["1"]}
    assert back.status_code == 200


async def test_load_of_a_model_added_after_start_up(repo):
    async with serving(settings(repo)) as (_, client):
        add_model(repo, "late", "thyroid")
        before = [r for r in (await client.get("/v2/repository/index", headers=MANAGER)).json() if r["name"] == "late"]
        r = await client.post("/v2/repository/models/late/load", headers=MANAGER)
        ready = await client.get("/v2/models/late/ready")
    assert before == [{"name": "late", "state": "UNAVAILABLE", "reason": "not loaded"}]
    assert r.status_code == 200 and ready.status_code == 200


async def test_a_load_finishes_when_its_client_leaves(repo, monkeypatch):
    started, go, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()
    real = service.lifecycle.Lifecycle.load

    async def load(self, name):
        try:
            started.set()
            await go.wait()
            return await real(self, name)
        finally:
            finished.set()

    async with serving(settings(repo)) as (_, client):
        add_model(repo, "late", "digits")
        monkeypatch.setattr(service.lifecycle.Lifecycle, "load", load)
        request = asyncio.create_task(client.post("/v2/repository/models/late/load", headers=MANAGER))
        await asyncio.wait_for(started.wait(), 10)
        request.cancel()  # the client hangs up while the load runs
        with pytest.raises(asyncio.CancelledError):
            await request
        go.set()
        await asyncio.wait_for(finished.wait(), 10)
        ready = await client.get("/v2/models/late/ready")
    # A load cut short would leave a version warmed but never swapped in.
    assert ready.status_code == 200, ready.text


async def test_failed_load_answers_400_with_the_reason(repo):
    async with serving(settings(repo)) as (_, client):
        r = await client.post("/v2/repository/models/broken/load", headers=MANAGER)
        others = await client.post("/v2/models/digits/infer", json=IMAGE)
    assert r.status_code == 400
    assert r.json()["error"].startswith("failed to load model 'broken' version 1: validation failed: ")
    assert r.json()["error"].endswith("; no version serves")
    assert others.status_code == 200


UNSAFE = [
    ("%2e%2e", 400, "contains '..'"),
    ("..%2F..%2Fetc", 404, "no route"),  # a decoded '/' never matches the {name} segment
    ("a%5cb", 400, "path separator"),
    ("%00", 400, "NUL byte"),
    ("%252e%252e", 400, "percent-encoding"),  # double-encoded: arrives as '%2e%2e'
    (".hidden", 400, "not allowed"),
    ("-rf", 400, "not allowed"),
    ("x" * 200, 400, "longer than 128"),
]


async def test_unsafe_or_unknown_names_are_refused_before_the_disk_is_touched(repo, monkeypatch):
    seen: list[tuple] = []
    real = service.lifecycle.resolve_inside

    def spy(root, *parts):
        seen.append(parts)
        return real(root, *parts)

    monkeypatch.setattr(service.lifecycle, "resolve_inside", spy)
    async with serving(settings(repo, validate_models=False)) as (_, client):
        for name, status, message in UNSAFE:
            for action in ("load", "unload"):
                r = await client.post(f"/v2/repository/models/{name}/{action}", headers=MANAGER)
                assert r.status_code == status, (name, r.text)
                assert message in r.json()["error"], name
        assert seen == []  # refused by the name check alone
        for action in ("load", "unload"):
            r = await client.post(f"/v2/repository/models/nope/{action}", headers=MANAGER)
            assert r.status_code == 404 and r.json()["error"] == "model 'nope' is not in the repository"


async def test_a_model_folder_symlinked_out_of_the_repository_is_refused(repo, tmp_path):
    outside = build_repository(tmp_path / "elsewhere")
    (repo / "escape").symlink_to(outside / "digits", target_is_directory=True)
    async with serving(settings(repo)) as (_, client):
        r = await client.post("/v2/repository/models/escape/load", headers=MANAGER)
        index = [row["name"] for row in (await client.get("/v2/repository/index", headers=MANAGER)).json()]
        infer = await client.post("/v2/models/escape/infer", json=IMAGE)
    assert r.status_code == 400 and "leads outside the model repository" in r.json()["error"]
    assert "escape" not in index and infer.status_code == 404


async def test_a_version_symlinked_out_of_the_repository_is_refused(repo, tmp_path):
    outside = build_repository(tmp_path / "elsewhere")
    async with serving(settings(repo)) as (_, client):
        (repo / "digits" / "2").symlink_to(outside / "digits" / "1", target_is_directory=True)
        r = await client.post("/v2/repository/models/digits/load", headers=MANAGER)
        answer = await client.post("/v2/models/digits/infer", json=IMAGE)
    assert r.status_code == 400 and "version 2 leads outside the model repository" in r.json()["error"]
    assert answer.json()["model_version"] == "1"


@pytest.mark.parametrize("parameters", [{"config": "{}"}, {"file:1/model.onnx": "AAAA"}])
async def test_load_never_takes_a_config_or_files_from_the_client(repo, parameters):
    async with serving(settings(repo, validate_models=False)) as (_, client):
        r = await client.post("/v2/repository/models/digits/load", headers=MANAGER, json={"parameters": parameters})
    assert r.status_code == 400 and "models are loaded only from the server's repository" in r.json()["error"]


async def test_unsafe_names_on_the_inference_routes_too(repo):
    async with serving(settings(repo, validate_models=False)) as (_, client):
        for path in ("/v2/models/%2e%2e", "/v2/models/%2e%2e/ready", "/v2/models/a%5cb/versions/1"):
            r = await client.get(path)
            assert r.status_code == 400 and r.json()["code"] == "invalid_name", path
    with pytest.raises(UnsafeName):
        service.lifecycle.validate_model_name("../x")


async def test_index_reports_why_a_valid_onnx_file_did_not_load(repo):
    add_model(repo, "mismatch", "digits", inputs=[{"name": "pixels", "datatype": "FP32", "dims": [-1, 784]}])
    async with serving(settings(repo)) as (_, client):
        rows = [
            r for r in (await client.get("/v2/repository/index", headers=MANAGER)).json() if r["name"] == "mismatch"
        ]
    assert rows[0]["state"] == "UNAVAILABLE"
    assert "config.json declares inputs ['pixels']" in rows[0]["reason"]


async def test_v1_models_listing_agrees_with_the_index(repo):
    add_model(repo, "pair", "digits", versions=(1, 2), version_policy={"all": {}})
    async with serving(settings(repo)) as (_, client):
        listing = {m["name"]: m for m in (await client.get("/v1/models")).json()["models"]}
        index = (await client.get("/v2/repository/index", headers=MANAGER)).json()
    assert listing["pair"]["version_policy"] == {"all": {}}
    assert listing["digits"]["version_policy"] == {"latest": {"num_versions": 1}}
    from_listing = {(n, str(v["version"]), v["state"].upper()) for n, m in listing.items() for v in m["versions"]}
    assert from_listing == {(r["name"], r["version"], r["state"]) for r in index}
