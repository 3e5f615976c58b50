"""Triton's model configuration JSON (`GET /v2/models/{m}/config`, gRPC ModelConfig) built from a ModelConfig.

One function for both protocols: REST returns the dict, gRPC parses it into `inference.ModelConfig`, so
the two cannot drift. Field names and enum spellings are Triton's (`model_config.proto`): data types
are `TYPE_FP32`..., dims leave out the batch dimension when the model batches, and the dynamic
batching knobs are the ones in force (settings overrides applied), not just those of config.json.
"""

from __future__ import annotations

from typing import Any

from modelrepo.config import ModelConfig, TensorSpec, VersionPolicy
from service.batcher import BatchPolicy

# V2 names its string type BYTES; Triton's model configuration calls the same type TYPE_STRING.
_TYPE_NAMES = {"BYTES": "TYPE_STRING"}


def data_type(datatype: str) -> str:
    """Triton's `DataType` enum name of a V2 datatype (FP32 -> TYPE_FP32, BYTES -> TYPE_STRING)."""
    return _TYPE_NAMES.get(datatype, f"TYPE_{datatype}")


def _tensor(spec: TensorSpec, batching: bool) -> dict[str, Any]:
    dims = spec.dims[1:] if batching else spec.dims
    return {"name": spec.name, "data_type": data_type(spec.datatype), "dims": list(dims)}


def _version_policy(policy: VersionPolicy) -> dict[str, Any]:
    if policy.all is not None:
        return {"all": {}}
    if policy.specific is not None:
        return {"specific": {"versions": list(policy.specific.versions)}}
    assert policy.latest is not None
    return {"latest": {"num_versions": policy.latest.num_versions}}


def triton_config(config: ModelConfig, policy: BatchPolicy) -> dict[str, Any]:
    """The model's configuration in Triton's JSON shape, with the batching policy in force."""
    batching = policy.max_batch_size > 0
    answer: dict[str, Any] = {
        "name": config.name,
        "platform": config.platform,
        "backend": "onnxruntime",
        "version_policy": _version_policy(config.version_policy),
        "max_batch_size": policy.max_batch_size,
        "input": [_tensor(t, batching) for t in config.inputs],
        "output": [_tensor(t, batching) for t in config.outputs],
    }
    if policy.enabled:
        answer["dynamic_batching"] = {
            "max_queue_delay_microseconds": round(policy.max_delay_s * 1e6),
            "default_queue_policy": {"max_queue_size": policy.max_queue_size},
        }
    if config.task is not None:
        answer["parameters"] = {"task": {"string_value": config.task}}
    return answer
