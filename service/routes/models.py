"""GET /v1/models: what the server knows about every model, including why a version is not serving.

Also a version's model card and plots, read-only (the web page shows them): only `card.json` and
`*.png` / `*.svg` directly in the version folder, never the ONNX file, the config or the tokenizer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel

from service.errors import FileNotFound, ModelNotFound, UnsafeName, VersionNotFound
from service.lifecycle import LOADING_REASON
from service.naming import resolve_inside, validate_model_name, validate_version
from service.registry import ModelState, ModelVersion, batch_policy, newest_first
from service.state import axon

router = APIRouter(prefix="/v1/models", tags=["models"])

# A plain name in the version folder: no separator, no leading dot, only the card and images.
SERVED_FILE = re.compile(r"card\.json|[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.(?:png|svg)", re.ASCII)
MEDIA_TYPES = {".json": "application/json", ".png": "image/png", ".svg": "image/svg+xml"}
# An SVG from the repository is opened as a document when visited directly: no script, nothing fetched.
FILE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


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
            "preprocessing": config.preprocessing.model_dump() if config.preprocessing else None,
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
    """A model with its versions, newest first; its state is `ready` if any version serves.

    A version being built (a new model, or a new version beside the serving ones) is listed as `loading`, as
    the V2 repository index lists it; a serving version being rebuilt shows the files still serving, with the reason.
    """
    state = axon(request)
    # Neither in the table nor being built: `versions` raises the 404 (or the 503 of an unloaded model).
    known = state.registry.table(name) or not state.lifecycle.loading(name)
    entries = state.registry.versions(name) if known else []
    building, rebuilding = state.lifecycle.building(name, entries)
    versions = [v for v in entries if v.version not in building]
    views = [describe_version(v, request) | {"reason": state.lifecycle.reason(name, v, rebuilding)} for v in versions]
    views += [{"version": v, "state": ModelState.LOADING.value, "reason": LOADING_REASON} for v in building]
    views.sort(key=lambda view: newest_first(view["version"]))
    states = {view["state"] for view in views}
    summary = next(s for s in (ModelState.READY, ModelState.LOADING, ModelState.UNAVAILABLE) if s.value in states)
    config = next((v.config for v in versions if v.config is not None), None)
    return {
        "name": name,
        "task": config.task if config else None,
        "description": config.description if config else "",
        "state": summary.value,
        # Which versions serve (Triton's latest N / all / specific); states are those of the V2 repository index.
        "version_policy": config.version_policy.model_dump(exclude_none=True) if config else None,
        "versions": views,
    }


@router.get("")
async def list_models(request: Request) -> dict[str, Any]:
    """Every model in the repository (loading, ready or unavailable with its reason), and each task's default
    model with `resolved: false` and the reason when no model of that name is loaded."""
    state = axon(request)
    return {
        "models": [
            describe_model(name, request)
            for name in sorted({*state.registry.names(), *state.lifecycle.loading_names()})
        ],
        "defaults": state.defaults(),
    }


@router.get("/{name}")
async def get_model(name: str, request: Request) -> dict[str, Any]:
    """One model; 404 if the repository has no such model."""
    return describe_model(name, request)


def version_folder(name: str, version: str, request: Request) -> Path:
    """The folder of a model version in the repository, checked: 400 bad name, 404 no such model or version."""
    name = validate_model_name(name)
    number = validate_version(version)
    root = axon(request).settings.model_repository
    model = resolve_inside(root, name)
    if not model.is_dir():
        raise ModelNotFound(f"model '{name}' is not in the repository")
    folder = resolve_inside(root, name, str(number))
    if not folder.is_dir():
        raise VersionNotFound(f"model '{name}' has no version {number}")
    return folder


def served_files(folder: Path) -> list[str]:
    """The card and plots of a version folder that the API serves, sorted (card.json first when present)."""
    names = [p.name for p in folder.iterdir() if SERVED_FILE.fullmatch(p.name) and _stays_inside(folder, p.name)]
    return sorted(names, key=lambda n: (n != "card.json", n))


def _stays_inside(folder: Path, name: str) -> bool:
    """Whether `folder/name` is a file that does not lead out of the folder (a symlink may)."""
    try:
        return resolve_inside(folder, name).is_file()
    except UnsafeName:
        return False


class VersionFiles(BaseModel):
    """The files of a model version that `GET /v1/models/{name}/versions/{version}/files/{file}` serves."""

    name: str
    version: int
    files: list[str]


FILES_EXAMPLE = {
    "name": "mnist-cnn",
    "version": 1,
    "files": ["card.json", "confusion_matrix.png", "training_curves.png"],
}
CARD_EXAMPLE = {"name": "mnist-cnn", "version": 1, "metrics": {"test": {"n": 798, "accuracy": 0.9937}}}


@router.get(
    "/{name}/versions/{version}/files", responses={200: {"content": {"application/json": {"example": FILES_EXAMPLE}}}}
)
async def list_version_files(name: str, version: str, request: Request) -> VersionFiles:
    """The model card (`card.json`) and plots (`*.png`, `*.svg`) of one version, as names for the route below."""
    folder = version_folder(name, version, request)
    return VersionFiles(name=name, version=int(version), files=served_files(folder))


@router.get(
    "/{name}/versions/{version}/files/{file}",
    response_class=FileResponse,
    responses={
        200: {
            "description": "card.json (JSON) or a plot (PNG, SVG)",
            "content": {"application/json": {"example": CARD_EXAMPLE}, "image/png": {}, "image/svg+xml": {}},
        }
    },
)
async def get_version_file(name: str, version: str, file: str, request: Request) -> FileResponse:
    """One version's `card.json` or plot, read-only; any other file name is 404 (the ONNX file is never served)."""
    folder = version_folder(name, version, request)
    if not SERVED_FILE.fullmatch(file):
        raise FileNotFound(f"model '{name}' version {version} serves only card.json and *.png/*.svg, not {file!r}")
    path = resolve_inside(folder, file)
    if not path.is_file():
        raise FileNotFound(f"model '{name}' version {version} has no file {file!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=FILE_HEADERS)
