"""Triton's model configuration JSON built from a ModelConfig and the batching policy in force."""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import json_format

from modelrepo.config import ModelConfig
from service.batcher import BatchPolicy
from service.grpc.proto import model_config_pb2
from service.v2.config import data_type, triton_config

ROOT = Path(__file__).resolve().parents[3]


def mnist() -> ModelConfig:
    return ModelConfig.model_validate(json.loads((ROOT / "models" / "mnist-cnn" / "config.json").read_text()))


def test_dims_leave_out_the_batch_dimension_and_types_are_tritons_enums():
    policy = BatchPolicy(max_batch_size=32, max_delay_s=0.002, max_queue_size=100)
    config = triton_config(mnist(), policy)
    assert config["name"] == "mnist-cnn" and config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == 32
    assert config["input"] == [{"name": "image", "data_type": "TYPE_FP32", "dims": [1, 28, 28]}]
    assert config["output"] == [{"name": "logits", "data_type": "TYPE_FP32", "dims": [10]}]
    assert config["dynamic_batching"] == {
        "max_queue_delay_microseconds": 2000,
        "default_queue_policy": {"max_queue_size": 100},
    }
    assert config["version_policy"] == {"latest": {"num_versions": 1}}


def test_the_json_parses_as_tritons_model_config_proto():
    config = triton_config(mnist(), BatchPolicy(max_batch_size=8, max_delay_s=0.001, max_queue_size=10))
    message = json_format.ParseDict(config, model_config_pb2.ModelConfig())
    assert message.input[0].data_type == model_config_pb2.TYPE_FP32 and list(message.input[0].dims) == [1, 28, 28]
    assert message.dynamic_batching.default_queue_policy.max_queue_size == 10


def test_unbatched_policy_and_bytes_type():
    config = triton_config(mnist(), BatchPolicy(max_batch_size=4, max_delay_s=0, max_queue_size=1, enabled=False))
    assert "dynamic_batching" not in config
    assert data_type("BYTES") == "TYPE_STRING" and data_type("INT64") == "TYPE_INT64"
