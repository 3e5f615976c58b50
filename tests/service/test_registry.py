"""The table of versions: lookup rules, not-ready versus unknown names, install and remove, batch policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelrepo.config import read_config
from service.errors import ModelNotFound, ModelNotReady, VersionNotFound
from service.registry import ModelRegistry, ModelState, ModelVersion, batch_policy
from service.settings import Settings
from tests.support.tiny_models import add_model


def version(
    name: str, number: int | None, state: ModelState = ModelState.READY, reason: str | None = None
) -> ModelVersion:
    return ModelVersion(name, number, Path("/nowhere"), None, state=state, reason=reason)


def test_lookup_takes_the_newest_ready_version_or_the_one_asked_for(tmp_path):
    registry = ModelRegistry(Settings(model_repository=tmp_path))
    for entry in (version("digits", 1), version("digits", 3, ModelState.UNAVAILABLE, "broken"), version("digits", 2)):
        registry.install(entry)
    assert registry.get("digits").version == 2
    assert registry.get("digits", 1).version == 1
    assert [e.version for e in registry.versions("digits")] == [3, 2, 1]
    with pytest.raises(VersionNotFound, match="model 'digits' has no version 7"):
        registry.get("digits", 7)
    with pytest.raises(ModelNotReady, match="model 'digits' version 3 is unavailable: broken") as info:
        registry.get("digits", 3)
    assert info.value.headers["Retry-After"].isdigit()
    assert not registry.all_ready() and registry.ready_count() == 2


def test_a_model_with_no_ready_version_reports_its_newest_state(tmp_path):
    registry = ModelRegistry(Settings(model_repository=tmp_path))
    registry.install(version("digits", 1, ModelState.LOADING))
    with pytest.raises(ModelNotReady, match="model 'digits' version 1 is loading"):
        registry.get("digits")


def test_a_name_the_repository_holds_but_the_table_lacks_is_not_ready_not_unknown(tmp_path):
    add_model(tmp_path, "digits", "digits")
    (tmp_path / "no-config").mkdir()
    registry = ModelRegistry(Settings(model_repository=tmp_path))
    how = (
        "model 'digits' has a folder in the repository but is not loaded: "
        "load it with POST /v2/repository/models/digits/load"
    )
    with pytest.raises(ModelNotReady, match=how) as info:
        registry.get("digits")
    assert info.value.status_code == 503 and info.value.headers["Retry-After"].isdigit()
    with pytest.raises(ModelNotReady):
        registry.versions("digits")
    for unknown in ("nope", "no-config", "../digits", "digits/1", ""):
        with pytest.raises(ModelNotFound, match="is not in the repository"):
            registry.get(unknown)


def test_install_replaces_and_remove_takes_out(tmp_path):
    registry = ModelRegistry(Settings(model_repository=tmp_path))
    first, second = version("digits", 1), version("digits", 1)
    registry.install(first)
    registry.install(second)
    assert registry.get("digits") is second and registry.entries() == [second]
    assert registry.remove("digits", 1) is second
    assert registry.names() == [] and registry.remove("digits", 1) is None
    registry.install(version("a", 1))
    registry.install(version("b", 1))
    registry.install(version("b", 2))
    assert [e.version for e in registry.remove_model("b")] == [1, 2] and registry.names() == ["a"]
    assert [e.name for e in registry.remove_all()] == ["a"] and registry.entries() == []


def test_batch_policy_takes_config_unless_settings_override(tmp_path):
    add_model(
        tmp_path,
        "digits",
        "digits",
        max_batch_size=16,
        dynamic_batching={"max_queue_delay_ms": 4, "max_queue_size": 32},
    )
    config = read_config(tmp_path / "digits" / "config.json")
    own = batch_policy(config, Settings())
    assert (own.max_batch_size, own.max_delay_s, own.max_queue_size, own.enabled) == (16, 0.004, 32, True)
    forced = batch_policy(config, Settings(max_batch_size=4, max_delay_ms=0, max_queue_size=8, batching_enabled=False))
    assert (forced.max_batch_size, forced.max_delay_s, forced.max_queue_size, forced.enabled) == (4, 0.0, 8, False)
    # A model without a batch axis (max_batch_size 0) never batches, whatever the settings ask.
    unbatched = batch_policy(config.model_copy(update={"max_batch_size": 0}), Settings(max_batch_size=4))
    assert (unbatched.max_batch_size, unbatched.enabled) == (0, False)
