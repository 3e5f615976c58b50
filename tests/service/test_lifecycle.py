"""Reloads without dropping requests: swap under load, failed loads keep the old version, policies, polling, drains."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil

import numpy as np
import onnx
import pytest

from service.errors import LoadFailed, ModelNotReady
from service.registry import ModelState
from tests.support.app_harness import png, serving, tiny_settings, until
from tests.support.tiny_models import add_model, build_repository, vision_model

IMAGE = np.random.default_rng(0).normal(size=(1, 1, 28, 28)).astype(np.float32)
V2_BODY = {
    "inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": IMAGE.reshape(-1).tolist()}]
}
PNG = base64.b64encode(png(np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8))).decode()
MANAGER = {"Authorization": "Bearer manager-token"}


@pytest.fixture
def repo(tmp_path):
    return build_repository(tmp_path / "models")


def settings(root, **overrides):
    values = {"validate_models": True, "auth": {"management_token": "manager-token"}}
    return tiny_settings(root, **(values | overrides))


def new_version(root, name: str, version: int, seed: int) -> None:
    """A new version folder: a copy of version 1 with other weights, as an export would write it."""
    shutil.copytree(root / name / "1", root / name / str(version))
    vision_model(root / name / str(version) / "model.onnx", seed=seed)


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


async def test_new_version_under_concurrent_load_swaps_in_without_a_failed_request(repo):
    results: list[tuple[int, str | None, bool]] = []  # status, version, started after the load returned
    loaded = asyncio.Event()
    stop = asyncio.Event()
    async with serving(settings(repo)) as (app, client):

        async def v2_client() -> None:
            while not stop.is_set():
                after = loaded.is_set()
                r = await client.post("/v2/models/digits/infer", json=V2_BODY)
                results.append((r.status_code, r.json().get("model_version"), after))

        async def task_client() -> None:
            while not stop.is_set():
                after = loaded.is_set()
                r = await client.post("/v1/vision/classify", json={"images": [PNG], "model": "digits"})
                results.append((r.status_code, str(r.json().get("version")), after))

        workers = [asyncio.create_task(w()) for w in (v2_client, task_client) * 4]
        await until(lambda: len(results) >= 40, what="40 answers before the load")
        await asyncio.to_thread(new_version, repo, "digits", 2, seed=7)
        r = await client.post("/v2/repository/models/digits/load", headers=MANAGER)
        loaded.set()
        await until(lambda: sum(after for *_, after in results) >= 40, what="40 answers after the load")
        stop.set()
        await asyncio.gather(*workers)
        registry = app.state.axon.registry
        assert [e.version for e in registry.versions("digits")] == [2]
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "digits", "versions": ["2"]}
    statuses = [s for s, _, _ in results]
    assert statuses.count(200) == len(results) > 50, [s for s in statuses if s != 200][:5]
    before = {v for _, v, after in results if not after}
    assert "1" in before  # the old version served while the new one was validated and warmed
    assert {v for _, v, after in results if after} == {"2"}  # once load returned, only version 2 answered


async def test_truncated_new_version_fails_and_the_old_one_keeps_serving(repo):
    async with serving(settings(repo)) as (_, client):
        new_version(repo, "digits", 2, seed=7)
        truncate(repo / "digits" / "2" / "model.onnx")
        r = await client.post("/v2/repository/models/digits/load", headers=MANAGER)
        assert r.status_code == 400
        assert "model 'digits' version 2: validation failed: " in r.json()["error"]
        assert r.json()["error"].endswith("serving version(s) 1")
        index = (await client.post("/v2/repository/index", headers=MANAGER, json={})).json()
        rows = {(row["name"], row.get("version")): row for row in index}
        assert (
            rows[("digits", "2")]["state"] == "UNAVAILABLE" and "validation failed" in rows[("digits", "2")]["reason"]
        )
        assert (
            rows[("digits", "1")]["state"] == "READY"
            and "outside the version policy" in rows[("digits", "1")]["reason"]
        )
        views = {v["version"]: v for v in (await client.get("/v1/models/digits")).json()["versions"]}
        assert views[1]["reason"] == rows[("digits", "1")]["reason"]
        assert views[2]["state"] == "unavailable" and views[2]["reason"] == rows[("digits", "2")]["reason"]
        answer = await client.post("/v2/models/digits/infer", json=V2_BODY)
        assert answer.status_code == 200 and answer.json()["model_version"] == "1"
        refused = await client.post("/v2/models/digits/versions/2/infer", json=V2_BODY)
        assert refused.status_code == 503 and "version 2 is unavailable: validation failed" in refused.json()["error"]
        # A fixed export of version 2 loads and replaces version 1.
        vision_model(repo / "digits" / "2" / "model.onnx", seed=7)
        assert (await client.post("/v2/repository/models/digits/load", headers=MANAGER)).status_code == 200
        index = (await client.get("/v2/repository/index", headers=MANAGER)).json()
        assert [(row.get("version"), row["state"], row["reason"]) for row in index if row["name"] == "digits"] == [
            ("2", "READY", "")
        ]


async def test_external_data_outside_the_folder_fails_to_load_while_the_server_serves(repo, tmp_path):
    (tmp_path / "secret.bin").write_bytes(np.zeros(7840, np.float32).tobytes())
    add_model(repo, "leaky", "digits")
    model = onnx.load(repo / "leaky" / "1" / "model.onnx")
    weights = next(t for t in model.graph.initializer if t.name == "W")
    weights.ClearField("raw_data")
    weights.data_location = onnx.TensorProto.EXTERNAL
    entry = weights.external_data.add()
    entry.key, entry.value = "location", "../../../secret.bin"
    onnx.save(model, repo / "leaky" / "1" / "model.onnx")
    async with serving(settings(repo)) as (_, client):
        r = await client.post("/v2/repository/models/leaky/load", headers=MANAGER)
        index = (await client.get("/v2/repository/index", headers=MANAGER)).json()
        answer = await client.post("/v2/models/digits/infer", json=V2_BODY)
    assert r.status_code == 400 and "points outside the model's folder" in r.json()["error"]
    (row,) = [row for row in index if row["name"] == "leaky"]
    assert row["state"] == "UNAVAILABLE"
    assert (
        row["reason"]
        == "validation failed: external data location '../../../secret.bin' points outside the model's folder"
    )
    assert answer.status_code == 200


async def test_unchanged_versions_are_kept_and_changed_config_rebuilds(repo):
    async with serving(settings(repo)) as (app, _):
        state = app.state.axon
        before = state.registry.get("digits")
        await state.lifecycle.load("digits")
        assert state.registry.get("digits") is before  # nothing changed on disk: same session, same batcher
        config = json.loads((repo / "digits" / "config.json").read_text())
        (repo / "digits" / "config.json").write_text(json.dumps(config | {"max_batch_size": 5}))
        await state.lifecycle.load("digits")
        after = state.registry.get("digits")
        assert after is not before and after.batcher.policy.max_batch_size == 5
        assert before.state is ModelState.UNAVAILABLE and before.session is None  # retired


async def test_failed_reload_of_a_changed_version_keeps_its_previous_files_serving(repo):
    async with serving(settings(repo)) as (app, client):
        state = app.state.axon
        before = state.registry.get("digits")
        truncate(repo / "digits" / "1" / "model.onnx")
        with pytest.raises(LoadFailed, match="reload failed, previous files still serving: validation failed"):
            await state.lifecycle.load("digits")
        assert state.registry.get("digits") is before and before.state is ModelState.READY
        assert (await client.post("/v2/models/digits/infer", json=V2_BODY)).status_code == 200
        (row,) = [r for r in await state.lifecycle.index() if r["name"] == "digits"]
        assert row["state"] == "READY" and row["reason"].startswith("reload failed, previous files still serving")
        # /v1/models gives the same reason as the index, not the old entry's empty one.
        (view,) = (await client.get("/v1/models/digits")).json()["versions"]
        assert (view["state"], view["reason"]) == ("ready", row["reason"])


async def test_broken_config_keeps_the_ready_version_serving(repo):
    async with serving(settings(repo)) as (app, client):
        (repo / "digits" / "config.json").write_text("{broken")
        with pytest.raises(LoadFailed, match=r"config\.json"):
            await app.state.axon.lifecycle.load("digits")
        answer = await client.post("/v2/models/digits/infer", json=V2_BODY)
        assert answer.status_code == 200 and answer.json()["model_version"] == "1"


async def test_version_policies_select_what_serves(repo):
    add_model(repo, "multi", "digits", versions=(1, 2, 3), version_policy={"latest": {"num_versions": 2}})
    async with serving(settings(repo)) as (app, _):
        lifecycle, registry = app.state.axon.lifecycle, app.state.axon.registry
        assert [e.version for e in registry.versions("multi")] == [3, 2]
        config = json.loads((repo / "multi" / "config.json").read_text())
        (repo / "multi" / "config.json").write_text(
            json.dumps(config | {"version_policy": {"specific": {"versions": [1, 3]}}})
        )
        await lifecycle.load("multi")
        assert [e.version for e in registry.versions("multi")] == [3, 1]
        (repo / "multi" / "config.json").write_text(json.dumps(config | {"version_policy": {"all": {}}}))
        await lifecycle.load("multi")
        assert [e.version for e in registry.versions("multi")] == [3, 2, 1]
        assert all(e.state is ModelState.READY for e in registry.versions("multi"))


async def test_a_retired_version_waits_for_requests_that_already_chose_it(repo):
    async with serving(settings(repo)) as (app, _):
        state = app.state.axon
        entry = state.registry.get("digits")
        with entry.hold():  # a request that resolved version 1 and is still pre-processing
            unloading = asyncio.create_task(state.lifecycle.unload("digits"))
            await until(lambda: "digits" not in state.registry.names(), what="version 1 leaving the table")
            for _ in range(20):  # let the unload run as far as it can without this request letting go
                await asyncio.sleep(0)
            assert not unloading.done()
            with pytest.raises(ModelNotReady, match="has a folder in the repository but is not loaded"):
                state.registry.get("digits")  # new requests no longer get it (503: it is unloaded, not gone)
            result = await entry.batcher.submit({"image": IMAGE}, 5.0)  # but this one still gets its answer
            assert result.outputs["logits"].shape == (1, 10)
        await asyncio.wait_for(unloading, 5)
        assert entry.session is None


async def test_polling_picks_up_new_changed_and_removed_models(repo):
    async with serving(settings(repo, repository_poll_interval_s=0.05)) as (app, client):
        registry = app.state.axon.registry
        await asyncio.to_thread(new_version, repo, "digits", 2, seed=5)
        await until(
            lambda: (
                registry.versions("digits")[0].version == 2 and registry.versions("digits")[0].state is ModelState.READY
            )
        )
        assert len(registry.versions("digits")) == 1
        await asyncio.to_thread(add_model, repo, "late", "digits")
        await until(lambda: "late" in registry.names())
        answer = await client.post("/v2/models/late/infer", json=V2_BODY)
        assert answer.status_code == 200
        shutil.rmtree(repo / "late")
        await until(lambda: "late" not in registry.names())
        assert (await client.post("/v2/models/late/infer", json=V2_BODY)).status_code == 404


async def test_polling_is_off_by_default(repo):
    async with serving(settings(repo)) as (app, _):
        # No poller task exists at all, so nothing can pick up a change on disk: no need to wait and see.
        assert app.state.axon.settings.repository_poll_interval_s is None
        assert app.state.axon.lifecycle._poller is None
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "poll-repository"]


async def test_restoring_the_files_clears_the_failure_and_a_stand_in_wanted_again_is_plain_ready(repo):
    add_model(repo, "multi", "digits", versions=(1,))
    async with serving(settings(repo)) as (app, _):
        lifecycle = app.state.axon.lifecycle
        good = (repo / "multi" / "1" / "model.onnx").read_bytes()
        stat = (repo / "multi" / "1" / "model.onnx").stat()
        truncate(repo / "multi" / "1" / "model.onnx")
        with pytest.raises(LoadFailed):
            await lifecycle.load("multi")
        (repo / "multi" / "1" / "model.onnx").write_bytes(good)
        os.utime(repo / "multi" / "1" / "model.onnx", ns=(stat.st_atime_ns, stat.st_mtime_ns))
        await lifecycle.load("multi")  # the very files it was built from: kept, and no longer failing
        new_version(repo, "multi", 2, seed=3)
        truncate(repo / "multi" / "2" / "model.onnx")
        with pytest.raises(LoadFailed):
            await lifecycle.load("multi")
        rows = {r["version"]: r for r in await lifecycle.index() if r["name"] == "multi"}
        assert rows["1"]["reason"].startswith("outside the version policy")
        config = json.loads((repo / "multi" / "config.json").read_text())
        (repo / "multi" / "config.json").write_text(
            json.dumps(config | {"version_policy": {"specific": {"versions": [1]}}})
        )
        await lifecycle.load("multi")
        rows = {r["version"]: r for r in await lifecycle.index() if r["name"] == "multi"}
    assert rows == {"1": {"name": "multi", "version": "1", "state": "READY", "reason": ""}}


async def test_a_hostile_config_is_a_refused_load_with_its_reason_never_a_500(repo):
    async with serving(settings(repo, validate_models=False)) as (_, client):
        add_model(repo, "deep", "digits")
        (repo / "deep" / "config.json").write_text("[" * 100_000 + "]" * 100_000)
        add_model(repo, "huge", "digits", max_batch_size=10**12)
        deep = await client.post("/v2/repository/models/deep/load", headers=MANAGER)
        huge = await client.post("/v2/repository/models/huge/load", headers=MANAGER)
        index = {row["name"]: row for row in (await client.get("/v2/repository/index", headers=MANAGER)).json()}
        infer = await client.post("/v2/models/deep/infer", json=V2_BODY)
    assert deep.status_code == 400 and deep.json()["code"] == "load_failed"
    assert "model 'deep': config.json: the file is nested too deeply to be a model config" in deep.json()["error"]
    assert index["deep"]["state"] == "UNAVAILABLE" and "nested too deeply" in index["deep"]["reason"]
    assert infer.status_code == 503 and "nested too deeply" in infer.json()["error"]
    assert (
        huge.status_code == 400 and "max_batch_size: Input should be less than or equal to 4096" in huge.json()["error"]
    )


async def test_a_huge_batch_size_from_settings_warms_up_within_the_cap_and_serves(repo):
    # The settings override is not bounded by the schema: the warm-up cap is what keeps memory in check.
    async with serving(settings(repo, validate_models=False, max_batch_size=10**12)) as (app, client):
        entry = app.state.axon.registry.get("digits")
        answer = await client.post("/v2/models/digits/infer", json=V2_BODY)
    assert entry.batcher.policy.max_batch_size == 10**12 and answer.status_code == 200


class Gate:
    """Holds `Loader.build` of chosen versions until released, and says when one is being held."""

    def __init__(self, monkeypatch, hold) -> None:
        from service.loader import Loader

        self.open, self.held = asyncio.Event(), asyncio.Event()
        real = Loader.build

        async def build(loader, d):
            if hold(d):
                self.held.set()
                await self.open.wait()
            return await real(loader, d)

        monkeypatch.setattr(Loader, "build", build)


async def test_a_version_being_built_is_listed_as_loading(repo, monkeypatch):
    gate = Gate(monkeypatch, lambda d: d.version == 2)
    async with serving(settings(repo, validate_models=False)) as (app, client):
        new_version(repo, "digits", 2, seed=7)
        loading = asyncio.create_task(app.state.axon.lifecycle.load("digits"))
        await asyncio.wait_for(gate.held.wait(), 10)
        during = [r for r in await app.state.axon.lifecycle.index() if r["name"] == "digits"]
        answer = await client.post("/v2/models/digits/infer", json=V2_BODY)  # version 1 serves meanwhile
        described = (await client.get("/v1/models/digits")).json()
        gate.open.set()
        await asyncio.wait_for(loading, 10)
        after = [r for r in await app.state.axon.lifecycle.index() if r["name"] == "digits"]
    assert {
        "name": "digits",
        "version": "2",
        "state": "LOADING",
        "reason": "a new version is being validated and warmed up",
    } in during
    assert answer.status_code == 200 and answer.json()["model_version"] == "1"
    # A model is ready while any version serves, even with a newer one still loading.
    assert described["state"] == "ready", described
    assert [v["state"] for v in described["versions"]] == ["loading", "ready"], described
    assert after == [{"name": "digits", "version": "2", "state": "READY", "reason": ""}]


async def test_a_serving_version_being_rebuilt_is_listed_once_as_ready_with_the_reason(repo, monkeypatch):
    async with serving(settings(repo, validate_models=False)) as (app, client):
        gate = Gate(monkeypatch, lambda d: d.version == 1)  # after start-up: holds only the rebuild
        vision_model(repo / "digits" / "1" / "model.onnx", seed=7)
        loading = asyncio.create_task(app.state.axon.lifecycle.load("digits"))
        await asyncio.wait_for(gate.held.wait(), 10)
        during = [r for r in await app.state.axon.lifecycle.index() if r["name"] == "digits"]
        described = (await client.get("/v1/models/digits")).json()
        answer = await client.post("/v2/models/digits/infer", json=V2_BODY)
        gate.open.set()
        await asyncio.wait_for(loading, 10)
        after = [r for r in await app.state.axon.lifecycle.index() if r["name"] == "digits"]
    reloading = "new files are being validated and warmed up; the previous files serve meanwhile"
    assert during == [{"name": "digits", "version": "1", "state": "READY", "reason": reloading}]
    assert [(v["version"], v["state"], v["reason"]) for v in described["versions"]] == [(1, "ready", reloading)]
    assert answer.status_code == 200 and answer.json()["model_version"] == "1"
    assert after == [{"name": "digits", "version": "1", "state": "READY", "reason": ""}]


async def test_a_failed_version_being_retried_is_listed_once_as_loading(repo, monkeypatch):
    async with serving(settings(repo)) as (app, client):
        new_version(repo, "digits", 2, seed=7)
        truncate(repo / "digits" / "2" / "model.onnx")
        assert (await client.post("/v2/repository/models/digits/load", headers=MANAGER)).status_code == 400
        gate = Gate(monkeypatch, lambda d: d.version == 2)
        vision_model(repo / "digits" / "2" / "model.onnx", seed=7)
        loading = asyncio.create_task(app.state.axon.lifecycle.load("digits"))
        await asyncio.wait_for(gate.held.wait(), 10)
        during = [(r["version"], r["state"]) for r in await app.state.axon.lifecycle.index() if r["name"] == "digits"]
        described = (await client.get("/v1/models/digits")).json()
        gate.open.set()
        await asyncio.wait_for(loading, 10)
    assert during == [("2", "LOADING"), ("1", "READY")]
    assert [(v["version"], v["state"]) for v in described["versions"]] == [(2, "loading"), (1, "ready")]


async def test_a_new_model_being_built_is_listed_as_loading_not_missing(repo, monkeypatch):
    gate = Gate(monkeypatch, lambda d: d.name == "digits-b")
    async with serving(settings(repo, validate_models=False)) as (app, client):
        add_model(repo, "digits-b", "digits")
        loading = asyncio.create_task(app.state.axon.lifecycle.load("digits-b"))
        await asyncio.wait_for(gate.held.wait(), 10)
        one = await client.get("/v1/models/digits-b")
        listed = {m["name"]: m for m in (await client.get("/v1/models")).json()["models"]}
        gate.open.set()
        await asyncio.wait_for(loading, 10)
        after = (await client.get("/v1/models/digits-b")).json()
    assert one.status_code == 200, one.text
    assert one.json()["state"] == "loading" and listed["digits-b"]["state"] == "loading"
    assert one.json()["versions"] == [
        {"version": 1, "state": "loading", "reason": "a new version is being validated and warmed up"}
    ]
    assert after["state"] == "ready" and [v["state"] for v in after["versions"]] == ["ready"]


async def test_an_unload_during_start_up_waits_for_it_and_stays_unloaded(repo, monkeypatch):
    gate = Gate(monkeypatch, lambda d: d.name == "digits")  # start-up goes by name: digits comes first
    async with serving(settings(repo, validate_models=False), wait_ready=False) as (app, client):
        state = app.state.axon
        await asyncio.wait_for(gate.held.wait(), 10)
        unloading = asyncio.create_task(state.lifecycle.unload("thyroid"))
        for _ in range(50):  # let the unload run as far as it can while start-up is held
            await asyncio.sleep(0)
        gate.open.set()
        await asyncio.wait_for(asyncio.gather(state.load_task, unloading), 20)
        answer = await client.post("/v1/anomaly/score", json={"samples": [[0.0] * 21], "model": "thyroid"})
        (row,) = [r for r in await state.lifecycle.index() if r["name"] == "thyroid"]
    assert answer.status_code == 503 and answer.json()["code"] == "model_not_ready"
    assert row == {"name": "thyroid", "state": "UNAVAILABLE", "reason": "unloaded"}
