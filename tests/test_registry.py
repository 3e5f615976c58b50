"""Loading the repository: ready versions, unavailable ones with reasons, lookup rules, (re)load and unload."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import add_model, build_repository

from service.batcher import Arrivals
from service.errors import ModelNotFound, ModelNotReady, VersionNotFound
from service.metrics import Metrics
from service.model_config import read_config
from service.registry import ModelRegistry, ModelState, batch_policy
from service.settings import Settings


def registry_for(root, **settings) -> ModelRegistry:
    return ModelRegistry(Settings(model_repository=root, providers=["CPUExecutionProvider"], warmup_runs=1, validate_models=False, **settings), Metrics(), Arrivals())


async def test_every_model_loads_warms_up_and_serves(tmp_path):
    registry = registry_for(build_repository(tmp_path))
    await registry.load_all()
    assert [(e.name, e.version, e.state) for e in registry.entries()] == [
        ("digits", 1, ModelState.READY), ("spam", 1, ModelState.READY),
        ("temperature", 1, ModelState.READY), ("thyroid", 1, ModelState.READY),
    ]
    entry = registry.get("digits")
    assert entry.providers == ["CPUExecutionProvider"]
    result = await entry.batcher.submit({"image": np.zeros((2, 1, 28, 28), np.float32)}, 5)
    assert result.outputs["logits"].shape == (2, 10)
    await registry.stop()


async def test_lookup_errors_name_the_model_and_version(tmp_path):
    add_model(tmp_path, "digits", "digits", versions=(1, 2), version_policy={"all": {}})
    registry = registry_for(tmp_path)
    await registry.load_all()
    assert registry.get("digits").version == 2 and registry.get("digits", 1).version == 1
    with pytest.raises(VersionNotFound, match="model 'digits' has no version 7"):
        registry.get("digits", 7)
    with pytest.raises(ModelNotFound, match="model 'nope' is not in the repository"):
        registry.get("nope")
    await registry.stop()


async def test_a_broken_model_is_unavailable_with_its_reason_and_the_others_serve(tmp_path):
    build_repository(tmp_path)
    add_model(tmp_path, "broken", "digits")
    (tmp_path / "broken" / "1" / "model.onnx").write_bytes(b"\x08\x07garbage, not a protobuf")
    add_model(tmp_path, "renamed-tensors", "digits", inputs=[{"name": "pixels", "datatype": "FP32", "dims": [-1, 1, 28, 28]}])
    registry = registry_for(tmp_path)
    await registry.load_all()
    states = {e.name: e.state for e in registry.entries()}
    assert states.pop("broken") is ModelState.UNAVAILABLE and states.pop("renamed-tensors") is ModelState.UNAVAILABLE
    assert set(states.values()) == {ModelState.READY}
    with pytest.raises(ModelNotReady, match="model 'broken' version 1 is unavailable: InvalidProtobuf: .*parsing failed") as info:
        registry.get("broken")
    assert "broken/1/model.onnx" in info.value.message and str(tmp_path) not in info.value.message
    with pytest.raises(ModelNotReady, match=r"model.onnx has inputs \['image'\] .* config.json declares inputs \['pixels'\]"):
        registry.get("renamed-tensors")
    assert not registry.all_ready()
    await registry.stop()


async def test_newest_ready_version_answers_when_the_newest_is_broken(tmp_path):
    add_model(tmp_path, "digits", "digits", versions=(1, 2), version_policy={"all": {}})
    (tmp_path / "digits" / "2" / "model.onnx").write_bytes(b"broken")
    registry = registry_for(tmp_path)
    await registry.load_all()
    assert registry.get("digits").version == 1
    with pytest.raises(ModelNotReady, match="model 'digits' version 2 is unavailable"):
        registry.get("digits", 2)
    await registry.stop()


async def test_unload_retires_every_version(tmp_path):
    # Reloads go through service.lifecycle (tests/test_lifecycle.py); the registry only installs and retires.
    add_model(tmp_path, "digits", "digits", versions=(1,))
    registry = registry_for(tmp_path)
    await registry.load_all()
    old = registry.get("digits")
    await registry.unload("digits")
    assert old.state is ModelState.UNAVAILABLE and old.reason == "unloaded"
    with pytest.raises(ModelNotFound):
        registry.get("digits")


def test_batch_policy_takes_config_unless_settings_override(tmp_path):
    add_model(tmp_path, "digits", "digits", max_batch_size=16, dynamic_batching={"max_queue_delay_ms": 4, "max_queue_size": 32})
    config = read_config(tmp_path / "digits" / "config.json")
    own = batch_policy(config, Settings())
    assert (own.max_batch_size, own.max_delay_s, own.max_queue_size, own.enabled) == (16, 0.004, 32, True)
    forced = batch_policy(config, Settings(max_batch_size=4, max_delay_ms=0, max_queue_size=8, batching_enabled=False))
    assert (forced.max_batch_size, forced.max_delay_s, forced.max_queue_size, forced.enabled) == (4, 0.0, 8, False)
