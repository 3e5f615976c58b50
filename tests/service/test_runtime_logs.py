"""Issue 12.7: ONNX Runtime's own lines go through logging (no ANSI codes), and each model's provider is explained."""

from __future__ import annotations

import logging
import os

import onnxruntime as ort

from service.runtime import NativeLog, SessionFactory, native_stderr, parse_native
from service.settings import Settings
from tests.support.tiny_models import build_repository

# Exactly what onnxruntime-gpu 1.31 writes on a machine without CUDA libraries (colour codes included).
CUDA_MISSING = (
    "\x1b[1;31m2026-11-30 04:42:30.831297001 [E:onnxruntime:Default, provider_bridge_ort.cc:2458 operator()] "
    "/onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:2043 onnxruntime::Provider& "
    "onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : Failed to load library "
    "/venv/onnxruntime/capi/libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared "
    "object file: No such file or directory\n\x1b[m\n"
    "\x1b[0;93m2026-11-30 04:42:30.831330761 [W:onnxruntime:Default, onnxruntime_pybind_state.cc:1295 "
    "CreateExecutionProviderFactoryInstance] Failed to create CUDAExecutionProvider. "
    "Require cuDNN 9.* and CUDA 13.*.\x1b[m\n"
)


def test_onnxruntime_lines_are_parsed_without_colour_codes():
    found, other = parse_native(CUDA_MISSING + "some other native line\n")
    assert [level for level, _ in found.records] == [logging.ERROR, logging.WARNING]
    assert not any("\x1b" in message for _, message in found.records)
    assert found.records[1][1] == "Failed to create CUDAExecutionProvider. Require cuDNN 9.* and CUDA 13.*."
    assert found.reason() == "libcublasLt.so.13: cannot open shared object file: No such file or directory"
    assert other == "some other native line\n"


def test_native_writes_to_fd_2_are_captured_and_replayed_through_logging(capfd, caplog):
    with native_stderr() as native:
        os.write(2, CUDA_MISSING.encode())
        os.write(2, b"not from onnxruntime\n")
    err = capfd.readouterr().err
    assert "\x1b[" not in err and "libcublasLt" not in err
    assert "not from onnxruntime" in err  # what is not ONNX Runtime's goes back out unchanged
    caplog.set_level(logging.DEBUG, logger="onnxruntime")
    native.replay()
    records = [r for r in caplog.records if r.name == "onnxruntime"]
    assert [r.levelno for r in records] == [logging.ERROR, logging.WARNING]
    NativeLog([(logging.ERROR, "x")]).replay(quiet=True)
    assert caplog.records[-1].levelno == logging.DEBUG


def test_a_session_asking_for_cuda_says_which_provider_it_got_and_why(tmp_path, capfd, caplog):
    repo = build_repository(tmp_path / "models")
    settings = Settings(model_repository=repo, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    caplog.set_level(logging.INFO)
    factory = SessionFactory(settings)
    session = factory.create(repo / "thyroid" / "1" / "model.onnx")
    in_use = session.get_providers()
    why = factory.explain(in_use)
    assert "\x1b[" not in capfd.readouterr().err  # nothing coloured reached the terminal
    if "CUDAExecutionProvider" in in_use:  # a machine with a working GPU
        assert why.startswith("the first of AXON_PROVIDERS")
        return
    assert why.startswith("CPU fallback: ")
    if "CUDAExecutionProvider" not in ort.get_available_providers():  # the CPU package
        assert why == "CPU fallback: this onnxruntime build has no CUDAExecutionProvider"
    else:  # onnxruntime-gpu without CUDA libraries or a GPU: ONNX Runtime's reason, in one plain warning
        assert why.startswith("CPU fallback: CUDAExecutionProvider did not load: ")
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "axon.runtime"]
        assert len(warnings) == 1 and "CUDAExecutionProvider requested but not usable here (" in warnings[0]
        assert not [r for r in caplog.records if r.name == "onnxruntime" and r.levelno > logging.DEBUG]


def test_a_cpu_only_configuration_is_explained_as_chosen(tmp_path):
    repo = build_repository(tmp_path / "models")
    factory = SessionFactory(Settings(model_repository=repo, providers=["CPUExecutionProvider"]))
    session = factory.create(repo / "thyroid" / "1" / "model.onnx")
    assert factory.explain(session.get_providers()) == "the first of AXON_PROVIDERS (CPUExecutionProvider) that loaded"
