"""GET /v1/models: what the server knows about every model, including why a version is not serving."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from service.registry import ModelState, ModelVersion, batch_policy
from service.state import axon

router = APIRouter(prefix="/v1/models", tags=["models"])


def describe_instances(entry: ModelVersion) -> list[dict[str, Any]]:
    """Each session of a version: where it was placed, what it runs on, batches run and running now."""
    loads = entry.batcher.instances if entry.batcher is not None else []
    views = []
    for n, instance in enumerate(entry.instances):
        p = instance.placement
        view: dict[str, Any] = {"name": p.name, "kind": p.kind, "gpu": p.gpu, "intra_op_threads": p.threads}
        view["providers"] = instance.providers
        if n < len(loads):
            view |= {"batches": loads[n].batches, "running": loads[n].running}
        views.append(view)
    return views


def describe_version(entry: ModelVersion, request: Request) -> dict[str, Any]:
    """One version's state, tensors, labels, providers and batching knobs."""
    view: dict[str, Any] = {"version": entry.version, "state": entry.state.value, "reason": entry.reason}
    config = entry.config
    if config is not None:
        policy = batch_policy(config, axon(request).settings)
        view |= {
            "inputs": [t.model_dump() for t in config.inputs],
            "outputs": [t.model_dump() for t in config.outputs],
            "labels": config.labels,
            "preprocessing": config.preprocessing.model_dump(),
            "threshold": config.anomaly.threshold if config.anomaly else None,
            "providers": entry.providers,
            "instance_group": [g.model_dump() for g in config.instance_group],
            "instances": describe_instances(entry),
            "batching": {
                "enabled": policy.enabled,
                "max_batch_size": policy.max_batch_size,
                "max_delay_ms": policy.max_delay_s * 1000.0,
                "max_queue_size": policy.max_queue_size,
            },
        }
    return view


def describe_model(name: str, request: Request) -> dict[str, Any]:
    """A model with its versions, newest first; its state is `ready` if any version serves."""
    versions = axon(request).registry.versions(name)
    states = {v.state for v in versions}
    state = next(s for s in (ModelState.READY, ModelState.LOADING, ModelState.UNAVAILABLE) if s in states)
    config = next((v.config for v in versions if v.config is not None), None)
    return {
        "name": name,
        "task": config.task if config else None,
        "description": config.description if config else "",
        "state": state.value,
        # Which versions serve (Triton's latest N / all / specific); states are those of the V2 repository index.
        "version_policy": config.version_policy.model_dump(exclude_none=True) if config else None,
        "versions": [describe_version(v, request) for v in versions],
    }


@router.get("")
async def list_models(request: Request) -> dict[str, Any]:
    """Every model in the repository (loading, ready or unavailable with its reason), and each task's default
    model with `resolved: false` and the reason when no model of that name is loaded."""
    state = axon(request)
    return {
        "models": [describe_model(name, request) for name in state.registry.names()],
        "defaults": state.defaults(),
    }


@router.get("/{name}")
async def get_model(name: str, request: Request) -> dict[str, Any]:
    """One model; 404 if the repository has no such model."""
    return describe_model(name, request)
