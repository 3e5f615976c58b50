"""Building a servable version: session, warm-up and batcher, or an unavailable version with its reason; retiring it."""

from __future__ import annotations

import numpy as np
import pytest

import service.loader
from service.batcher import Arrivals
from service.loader import Loader
from service.metrics import Metrics
from service.registry import ModelState
from service.repository import discover_model
from service.settings import Settings
from tests.support.tiny_models import add_model, vision_model


@pytest.fixture
def loader(tmp_path) -> Loader:
    settings = Settings(
        model_repository=tmp_path, providers=["CPUExecutionProvider"], warmup_runs=1, validate_models=False
    )
    return Loader(settings, Metrics(), Arrivals())


async def test_a_version_builds_warm_and_serves_then_retires(tmp_path, loader):
    add_model(tmp_path, "digits", "digits")
    (descriptor,) = discover_model(tmp_path / "digits")
    entry = await loader.build(descriptor)
    assert entry.state is ModelState.READY and entry.providers == ["CPUExecutionProvider"]
    result = await entry.batcher.submit({"image": np.zeros((2, 1, 28, 28), np.float32)}, 5)
    assert result.outputs["logits"].shape == (2, 10)
    await loader.retire(entry)
    assert entry.state is ModelState.UNAVAILABLE and entry.reason == "unloaded" and entry.session is None


async def test_a_broken_file_or_mismatched_tensors_give_an_unavailable_version_with_its_reason(tmp_path, loader):
    add_model(tmp_path, "broken", "digits")
    (tmp_path / "broken" / "1" / "model.onnx").write_bytes(b"\x08\x07garbage, not a protobuf")
    add_model(tmp_path, "renamed", "digits", inputs=[{"name": "pixels", "datatype": "FP32", "dims": [-1, 1, 28, 28]}])
    broken = await loader.build(discover_model(tmp_path / "broken")[0])
    renamed = await loader.build(discover_model(tmp_path / "renamed")[0])
    assert broken.state is ModelState.UNAVAILABLE and broken.batcher is None
    assert broken.reason.startswith("InvalidProtobuf: ") and "parsing failed" in broken.reason
    # Reasons reach clients: the file is named inside the repository, never by its server path.
    assert "broken/1/model.onnx" in broken.reason and str(tmp_path) not in broken.reason
    assert renamed.state is ModelState.UNAVAILABLE
    assert (
        "model.onnx has inputs ['image']" in renamed.reason
        and "config.json declares inputs ['pixels']" in renamed.reason
    )


async def test_a_config_that_leaves_out_one_of_the_models_inputs_is_unavailable(tmp_path, loader):
    # Every request would fail in ONNX Runtime for want of attention_mask: refuse the version at load instead.
    add_model(tmp_path, "half", "spam", inputs=[{"name": "input_ids", "datatype": "INT64", "dims": [-1, -1]}])
    half = await loader.build(discover_model(tmp_path / "half")[0])
    assert half.state is ModelState.UNAVAILABLE and half.batcher is None
    assert "model.onnx has inputs ['attention_mask', 'input_ids']" in half.reason
    assert "config.json declares inputs ['input_ids']" in half.reason


async def test_a_failed_warm_up_makes_a_task_model_unavailable_but_a_plain_model_serves(tmp_path, loader, monkeypatch):
    def broken_warm_up(*args, **kwargs):
        raise RuntimeError("warm-up broke")

    monkeypatch.setattr(service.loader, "warm_up", broken_warm_up)
    add_model(tmp_path, "digits", "digits")
    (tmp_path / "plain" / "1").mkdir(parents=True)
    vision_model(tmp_path / "plain" / "1" / "model.onnx")  # no config.json: a plain V2 model
    task = await loader.build(discover_model(tmp_path / "digits")[0])
    plain = await loader.build(discover_model(tmp_path / "plain")[0])
    # A task model is warmed with inputs it must accept; a plain model may need real data (a shape, an index).
    assert task.state is ModelState.UNAVAILABLE and "warm-up broke" in task.reason
    assert plain.state is ModelState.READY
    await loader.retire(plain)


async def test_a_descriptor_that_carries_an_error_is_not_opened(tmp_path, loader):
    add_model(tmp_path, "digits", "digits")
    (tmp_path / "digits" / "config.json").write_text("{broken")
    (descriptor,) = discover_model(tmp_path / "digits")
    entry = await loader.build(descriptor)
    assert entry.state is ModelState.UNAVAILABLE and entry.reason.startswith("config.json: ")
    assert entry.session is None


async def test_a_version_builds_one_warm_session_per_instance_and_batches_on_each(tmp_path, loader):
    add_model(tmp_path, "digits", "digits", instance_group=[{"kind": "KIND_CPU", "count": 3}])
    (descriptor,) = discover_model(tmp_path / "digits")
    entry = await loader.build(descriptor)
    assert entry.state is ModelState.READY
    assert [i.placement.name for i in entry.instances] == ["digits_0_0", "digits_0_1", "digits_0_2"]
    assert len({id(i.session) for i in entry.instances}) == 3 and entry.session is entry.instances[0].session
    assert entry.providers == ["CPUExecutionProvider"]
    assert len(entry.batcher.instances) == 3
    result = await entry.batcher.submit({"image": np.zeros((2, 1, 28, 28), np.float32)}, 5)
    assert result.outputs["logits"].shape == (2, 10)
    await loader.retire(entry)
    assert entry.instances == [] and entry.session is None


async def test_a_gpu_instance_that_cannot_be_placed_makes_the_version_unavailable(tmp_path, loader):
    add_model(tmp_path, "digits", "digits", instance_group=[{"kind": "KIND_GPU", "gpus": [1]}])
    entry = await loader.build(discover_model(tmp_path / "digits")[0])
    assert entry.state is ModelState.UNAVAILABLE and entry.batcher is None
    assert entry.reason.startswith("ValueError: instance digits_0_0 is KIND_GPU but AXON_PROVIDERS")
