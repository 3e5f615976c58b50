"""Sessions are created with server options, their real providers are read back, and warm-up runs."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from modelrepo.config import InstanceGroup
from service.errors import GpuUnavailable
from service.runtime import (
    Placement,
    SessionFactory,
    example_inputs,
    placements,
    session_runner,
    warm_up,
    warmup_batch_sizes,
)
from service.settings import Settings
from tests.support.tiny_models import SERIES_WINDOW, series_model, text_model, vision_model


def test_cpu_session_uses_server_options(tmp_path):
    vision_model(tmp_path / "m.onnx")
    factory = SessionFactory(Settings(providers=["CPUExecutionProvider"], intra_op_threads=1))
    opts = factory.options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.intra_op_num_threads == 1 and opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    session = factory.create(tmp_path / "m.onnx")
    assert session.get_providers() == ["CPUExecutionProvider"]
    out = session_runner(session)({"image": np.zeros((3, 1, 28, 28), np.float32)})
    assert list(out) == ["logits"] and out["logits"].shape == (3, 10)


def test_gpu_request_reports_what_really_loaded(tmp_path):
    vision_model(tmp_path / "m.onnx")
    factory = SessionFactory(Settings(providers=["CUDAExecutionProvider", "CPUExecutionProvider"]))
    first = factory.create(tmp_path / "m.onnx").get_providers()
    second = factory.create(tmp_path / "m.onnx").get_providers()
    if "CUDAExecutionProvider" in first:  # a machine with a working GPU
        assert second[0] == "CUDAExecutionProvider"
    else:  # onnxruntime-gpu without a GPU falls back; later sessions no longer ask for CUDA
        assert first == second == ["CPUExecutionProvider"]
        assert factory._providers == ["CPUExecutionProvider"]


def test_require_gpu_turns_a_cpu_fallback_into_an_error(tmp_path):
    vision_model(tmp_path / "m.onnx")
    settings = Settings(providers=["CUDAExecutionProvider", "CPUExecutionProvider"], require_gpu=True)
    try:
        factory = SessionFactory(settings)
        session = factory.create(tmp_path / "m.onnx")
    except GpuUnavailable as exc:
        assert "require_gpu" in str(exc)
    else:
        assert session.get_providers()[0] == "CUDAExecutionProvider"


def test_require_gpu_without_any_gpu_provider_fails_at_once():
    with pytest.raises(GpuUnavailable):
        SessionFactory(Settings(providers=["CPUExecutionProvider"], require_gpu=True))


def test_unknown_provider_only_is_refused():
    with pytest.raises(ValueError, match="none of the providers"):
        SessionFactory(Settings(providers=["NoSuchExecutionProvider"]))


def test_example_inputs_follow_the_graph(tmp_path):
    text_model(tmp_path / "t.onnx")
    series_model(tmp_path / "s.onnx")
    text = ort.InferenceSession(str(tmp_path / "t.onnx"), providers=["CPUExecutionProvider"])
    series = ort.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"])
    ids = example_inputs(text, 4)
    assert ids["input_ids"].shape == (4, 16) and ids["input_ids"].dtype == np.int64
    # Ones: a real token and an unmasked position (an all-zero mask would warm up a division by zero).
    assert (ids["input_ids"] == 1).all() and (ids["attention_mask"] == 1).all()
    assert example_inputs(series, 2)["window"].shape == (2, SERIES_WINDOW, 1)
    warm_up(text, [1, 4], runs=1)


def test_warmup_batch_sizes():
    assert warmup_batch_sizes(64, on_gpu=False) == [1, 64]
    assert warmup_batch_sizes(48, on_gpu=True) == [1, 2, 4, 8, 16, 32, 48]
    assert warmup_batch_sizes(1, on_gpu=True) == [1]


class RecordingSession:
    """A real session whose runs are recorded by batch size."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self.batch_sizes: list[int] = []

    def get_inputs(self):
        return self._session.get_inputs()

    def get_outputs(self):
        return self._session.get_outputs()

    def run(self, names, inputs):
        self.batch_sizes.append(next(iter(inputs.values())).shape[0])
        return self._session.run(names, inputs)


def test_warm_up_cuts_batches_to_its_byte_cap_and_refuses_a_row_past_it(tmp_path):
    vision_model(tmp_path / "v.onnx")
    session = RecordingSession(ort.InferenceSession(str(tmp_path / "v.onnx"), providers=["CPUExecutionProvider"]))
    row = 1 * 28 * 28 * 4  # one FP32 image
    warm_up(session, [1, 4, 10**12], runs=1, max_bytes=8 * row + 5)
    assert session.batch_sizes == [1, 4, 8]  # 10^12 rows would be 3 TB; 8 rows is what fits
    with pytest.raises(
        ValueError, match=f"one row of this model's inputs takes {row} bytes, more than the warm-up cap of 100"
    ):
        warm_up(session, [1], runs=1, max_bytes=100)
    session.batch_sizes.clear()
    warm_up(session, [1, 4], runs=1, max_bytes=row)  # exactly one row fits: the cap is inclusive
    assert session.batch_sizes == [1]


def test_placements_fan_groups_out_per_gpu_and_share_the_cpu_threads():
    groups = [InstanceGroup(kind="KIND_CPU", count=2), InstanceGroup(name="g", kind="KIND_GPU", count=2, gpus=[0, 3])]
    placed = placements(groups, Settings(intra_op_threads=8, gpu_device_id=5), "m")
    assert [(p.name, p.kind, p.gpu, p.threads) for p in placed] == [
        ("m_0_0", "KIND_CPU", None, 4),
        ("m_0_1", "KIND_CPU", None, 4),
        ("g_0", "KIND_GPU", 0, 0),
        ("g_1", "KIND_GPU", 0, 0),
        ("g_2", "KIND_GPU", 3, 0),
        ("g_3", "KIND_GPU", 3, 0),
    ]
    # One instance keeps the setting as it is (0: ONNX Runtime's default); KIND_AUTO runs on AXON_GPU_DEVICE_ID.
    (alone,) = placements([InstanceGroup()], Settings(gpu_device_id=5), "m")
    assert (alone.kind, alone.gpu, alone.threads) == ("KIND_AUTO", 5, 0)
    # Three instances on three threads: one each, never zero.
    assert {p.threads for p in placements([InstanceGroup(count=3)], Settings(intra_op_threads=2), "m")} == {1}


def test_the_instance_count_setting_replaces_each_groups_count_within_the_ceiling():
    groups = [InstanceGroup(kind="KIND_CPU", count=4), InstanceGroup(kind="KIND_GPU", gpus=[1, 2])]
    placed = placements(groups, Settings(instance_count=2), "m")
    assert [(p.kind, p.gpu) for p in placed] == [("KIND_CPU", None)] * 2 + [("KIND_GPU", 1)] * 2 + [("KIND_GPU", 2)] * 2
    with pytest.raises(ValueError, match="asks for 96 sessions, more than 64"):
        placements(groups, Settings(instance_count=32), "m")
    assert len(placements([InstanceGroup(kind="KIND_CPU", count=64)], Settings(), "m")) == 64  # the ceiling itself


def test_a_cpu_instance_gets_its_own_session_and_threads(tmp_path):
    vision_model(tmp_path / "m.onnx")
    factory = SessionFactory(Settings(providers=["CUDAExecutionProvider", "CPUExecutionProvider"]))
    assert factory.options(3).intra_op_num_threads == 3
    # Set already when this onnxruntime build has no CUDA at all (the CPU package), None with onnxruntime-gpu.
    before = factory.gpu_reason
    instance = factory.place(tmp_path / "m.onnx", Placement("m_0_0", "KIND_CPU", None, 1))
    # KIND_CPU never asks for CUDA, even when AXON_PROVIDERS prefers it: no CUDA attempt leaves a reason behind.
    assert instance.providers == ["CPUExecutionProvider"] and factory.gpu_reason == before


def test_a_gpu_instance_without_a_gpu_provider_is_refused_naming_it(tmp_path):
    vision_model(tmp_path / "m.onnx")
    factory = SessionFactory(Settings(providers=["CPUExecutionProvider"]))
    with pytest.raises(
        ValueError, match=r"instance m_0_0 is KIND_GPU but AXON_PROVIDERS \(CPUExecutionProvider\) has no"
    ):
        factory.place(tmp_path / "m.onnx", Placement("m_0_0", "KIND_GPU", 0, 0))
