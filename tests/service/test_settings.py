"""Settings come from AXON_* variables, with nested groups and list parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Limits, Settings, settings_table


def test_defaults_serve_the_default_models_on_localhost(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("AXON_"):
            monkeypatch.delenv(key)
    s = Settings()
    assert (s.host, s.port, s.model_repository) == ("127.0.0.1", 8000, Path("models"))
    assert s.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert s.default_models.vision == "mnist-cnn" and s.default_models.text == "sms-spam-minilm"
    assert s.default_models.anomaly == "thyroid-autoencoder"
    assert s.batching_enabled and s.max_batch_size is None and s.max_delay_ms is None


def test_environment_overrides_flat_nested_and_list_fields(monkeypatch):
    monkeypatch.setenv("AXON_PORT", "9123")
    monkeypatch.setenv("AXON_MODEL_REPOSITORY", "/srv/models")
    monkeypatch.setenv("AXON_PROVIDERS", "CPUExecutionProvider")
    monkeypatch.setenv("AXON_BATCHING_ENABLED", "false")
    monkeypatch.setenv("AXON_MAX_DELAY_MS", "0.5")
    monkeypatch.setenv("AXON_LIMITS__MAX_IMAGES", "3")
    monkeypatch.setenv("AXON_DEFAULT_MODELS__TEXT", "sentiment-gru")
    s = Settings()
    assert s.port == 9123 and s.model_repository == Path("/srv/models")
    assert s.providers == ["CPUExecutionProvider"]
    assert not s.batching_enabled and s.max_delay_ms == 0.5
    assert s.limits.max_images == 3 and s.limits.max_texts == 64
    assert s.default_models.text == "sentiment-gru"


def test_providers_accept_json_and_commas(monkeypatch):
    monkeypatch.setenv("AXON_PROVIDERS", '["TensorrtExecutionProvider", "CUDAExecutionProvider"]')
    assert Settings().providers == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    monkeypatch.setenv("AXON_PROVIDERS", "CUDAExecutionProvider, CPUExecutionProvider")
    assert Settings().providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("port", 70000),
        ("max_batch_size", 0),
        ("providers", []),
        # Below 64 MiB the validation child cannot even import numpy: every model would be refused.
        ("validation_memory_limit_mb", 63),
    ],
)
def test_invalid_values_are_refused(field, value):
    with pytest.raises(ValidationError):
        Settings(**{field: value})


def test_every_setting_is_documented_in_the_table():
    table = settings_table()
    assert "| `AXON_LIMITS__MAX_IMAGES` | `64` | Images per vision request. |" in table
    assert "| `AXON_BATCHING_ENABLED` | `True` |" in table
    for field in list(Settings.model_fields.values()) + list(Limits.model_fields.values()):
        assert field.description, field


def test_python_m_service_takes_top_level_settings_as_flags(monkeypatch):
    from service.__main__ import apply_flags

    # setenv first, so the variables the flags write are undone after the test
    monkeypatch.setenv("AXON_PORT", "1")
    monkeypatch.setenv("AXON_MODEL_REPOSITORY", "models")
    apply_flags(["--port", "9123", "--model-repository", "elsewhere"])
    settings = Settings()
    assert (settings.port, str(settings.model_repository)) == (9123, "elsewhere")
    with pytest.raises(SystemExit) as exit_info:
        apply_flags(["--limits", "1"])  # nested groups stay environment variables
    assert exit_info.value.code == 2
