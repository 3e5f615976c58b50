"""Writing (and checking) the Triton-style model repository: one new numeric version per export.

A version is assembled in a hidden staging folder beside the versions and renamed into place in one
step, so a reader never sees half a version and an existing version is never touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelrepo.config import ModelConfig, read_config, write_config
from modelrepo.layout import CONFIG_FILE, MODEL_FILE, model_names, versions
from training.card import CARD_FILE, build_card, write_card
from training.data.paths import file_sha256

# A file to place in the version folder: its content, or a file to copy.
Artefact = Path | str | bytes
# Fills in the card once the export's figures are known: (staging folder, version, parity, sha256) -> card.
CardFn = Callable[[Path, int, dict[str, Any], str], dict[str, Any]]
# Runs on the verified model.onnx before anything else is written (it may replace the file, e.g. with an
# int8 one) and returns card sections to add or replace (e.g. "quantization", "metrics").
AfterExport = Callable[[Path], dict[str, Any]]

LABELS_FILE = "labels.txt"
STAGING_PREFIX = ".staging-"


@dataclass(frozen=True)
class WrittenVersion:
    """Where a new version landed and what its export proved."""

    path: Path
    version: int
    config: ModelConfig
    parity: dict[str, Any]
    sha256: str


def next_version(model_dir: Path) -> int:
    """One more than the highest existing version (1 for a new model)."""
    return (versions(model_dir) or [0])[-1] + 1


def _place(artefact: Artefact, target: Path) -> None:
    if isinstance(artefact, Path):
        shutil.copyfile(artefact, target)
    elif isinstance(artefact, bytes):
        target.write_bytes(artefact)
    else:
        target.write_text(artefact, encoding="utf-8")


def _top_level(config: ModelConfig, existing: Path) -> ModelConfig:
    """The model-level config: this version's fields, but an operator's serving knobs survive."""
    if not existing.is_file():
        return config
    return config.with_serving_knobs(read_config(existing))


def write_version(
    repository: Path,
    model: Any,
    config: ModelConfig,
    cases: Sequence[Any],
    *,
    artefacts: Mapping[str, Artefact] | None = None,
    card: CardFn | None = None,
    after_export: AfterExport | None = None,
) -> WrittenVersion:
    """Export `model` as the next version of `config.name`, with its artefacts, card and configs."""
    from training.export import export_verified, tensor_specs  # torch-heavy; keep imports of this module light

    model_dir = Path(repository) / config.name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=model_dir))
    try:
        onnx_path = staging / MODEL_FILE
        report = export_verified(model, onnx_path, cases)
        sections = after_export(onnx_path) if after_export is not None else {}
        inputs, outputs = tensor_specs(onnx_path)
        snapshot = ModelConfig.model_validate(
            config.model_copy(update={"inputs": inputs, "outputs": outputs}).model_dump()
        )
        write_config(snapshot, staging / CONFIG_FILE)
        if snapshot.labels:
            (staging / LABELS_FILE).write_text("\n".join(snapshot.labels) + "\n", encoding="utf-8")
        for name, artefact in (artefacts or {}).items():
            _place(artefact, staging / name)
        sha = file_sha256(onnx_path)
        parity = report.to_dict()
        version = next_version(model_dir)
        if card is not None:
            write_card({**card(staging, version, parity, sha), **sections}, staging / CARD_FILE)
        target = model_dir / str(version)
        # rename() onto a missing path is atomic; mkdir-free so a concurrent writer's folder is never reused.
        if target.exists():
            raise FileExistsError(f"version {version} of {config.name!r} appeared while exporting")
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.chmod(target, 0o755)  # mkdtemp makes 0700 folders; a served repository must be readable.
    write_config(_top_level(snapshot, model_dir / CONFIG_FILE), model_dir / CONFIG_FILE)
    return WrittenVersion(target, version, snapshot, parity, sha)


def card_writer(**fields: Any) -> CardFn:
    """A CardFn that completes `build_card(**fields)` with the export's version, parity and sha256."""

    def make(folder: Path, version: int, parity: dict[str, Any], sha: str) -> dict[str, Any]:
        return build_card(
            version=version,
            parity=parity,
            model_sha256=sha,
            model_bytes=(folder / MODEL_FILE).stat().st_size,
            **fields,
        )

    return make


def validate_repository(repository: Path) -> list[str]:
    """Every problem found in a repository (empty when valid): configs, versions, ONNX files, tensors."""
    import onnxruntime as ort

    from training.export import tensor_specs

    names = model_names(repository)
    # Folders the service would skip (no config.json, a name it refuses): said here, not silently ignored.
    strays = [p.name for p in Path(repository).iterdir() if p.is_dir() and p.name not in names]
    problems = [
        f"{name}: not a model folder (no config.json, or not a model name)"
        for name in sorted(strays)
        if not name.startswith(".")
    ]  # hidden folders hold tooling state (.git, .cache)
    if not names:
        return problems or [f"{repository}: no models"]
    for name in names:
        model_dir = Path(repository) / name
        try:
            top = read_config(model_dir / CONFIG_FILE)
        except Exception as exc:
            problems.append(f"{name}: top-level config.json: {exc}")
            continue
        if top.name != name:
            problems.append(f"{name}: config name is {top.name!r}")
        extra = [p.name for p in model_dir.iterdir() if p.is_dir() and not p.name.isdigit()]
        if extra:
            problems.append(f"{name}: non-numeric folders {extra}")
        found = versions(model_dir)
        if not found:
            problems.append(f"{name}: no numeric version folder")
        for version in found:
            problems.extend(_validate_version(model_dir / str(version), top, ort, tensor_specs))
    return problems


def _validate_version(folder: Path, top: ModelConfig, ort: Any, tensor_specs: Callable[[Path], Any]) -> list[str]:
    where = f"{top.name}/{folder.name}"
    try:
        snapshot = read_config(folder / CONFIG_FILE)
    except Exception as exc:
        return [f"{where}: config.json: {exc}"]
    problems = []
    try:
        ort.InferenceSession(str(folder / MODEL_FILE), providers=["CPUExecutionProvider"])
    except Exception as exc:
        return [f"{where}: model.onnx does not load in ONNX Runtime: {exc}"]
    inputs, outputs = tensor_specs(folder / MODEL_FILE)
    if snapshot.inputs != inputs or snapshot.outputs != outputs:
        problems.append(f"{where}: snapshot tensors differ from model.onnx")
    if snapshot.labels and (folder / LABELS_FILE).read_text(encoding="utf-8").split("\n")[:-1] != snapshot.labels:
        problems.append(f"{where}: labels.txt differs from the config's labels")
    tokenizer = getattr(snapshot.preprocessing, "tokenizer", None)
    if tokenizer and not (folder / tokenizer).is_file():
        problems.append(f"{where}: missing {tokenizer}")
    if (folder / CARD_FILE).is_file():
        from training.card import read_card

        if read_card(folder / CARD_FILE).get("model_onnx", {}).get("sha256") != file_sha256(folder / MODEL_FILE):
            problems.append(f"{where}: card.json sha256 differs from model.onnx")
    else:
        problems.append(f"{where}: missing card.json")
    return problems


def export_checkpoint(
    checkpoint: Path,
    repository: Path,
    *,
    like: Path | None = None,
    config_path: Path | None = None,
    artefacts: Sequence[Path] = (),
    name: str | None = None,
) -> WrittenVersion:
    """A `save_checkpoint` file as a new version, reusing a version's config and artefacts (or a config file).

    Parity is proven on the model's own example inputs at batch 1 and 16 and, for text, at lengths 1
    and twice the export example: a checkpoint carries no held-out data of its own.
    """
    from training.card import read_card
    from training.models import ExportableModel, config_dict, family_of, model_from_checkpoint

    model = model_from_checkpoint(checkpoint)
    assert isinstance(model, ExportableModel)  # every family's model is one
    source_path = like / CONFIG_FILE if like is not None else config_path
    if source_path is None:
        raise ValueError("a checkpoint export needs `like` (a version to copy the config from) or `config_path`")
    source = read_config(source_path)
    config = source.model_copy(update={"name": name}) if name else source
    files: dict[str, Artefact] = {p.name: p for p in artefacts}
    if like is not None:
        for extra in sorted(like.iterdir()):
            if extra.is_file() and extra.name not in (MODEL_FILE, CONFIG_FILE, CARD_FILE) and extra.suffix != ".png":
                files.setdefault(extra.name, extra)
    dims = model.dynamic_dims().get(model.input_names[0], {})
    example = getattr(model.config, "example_length", 16)
    lengths = [1, 2 * example] if "seq" in dims.values() else [None]
    cases = [tuple(t.numpy() for t in model.example_inputs(batch, length)) for batch in (1, 16) for length in lengths]
    previous = read_card(like / CARD_FILE) if like is not None and (like / CARD_FILE).is_file() else {}
    card = card_writer(
        name=config.name,
        family=family_of(model),
        dataset=previous.get("dataset", {}),  # the preprocessing reused came from this data
        split={},
        hyperparameters={"model": config_dict(model), "exported_from": str(checkpoint)},
        parameters=sum(p.numel() for p in model.parameters()),
        metrics={"note": "not measured at export; run `python -m training evaluate` on held-out data"},
        training={"exported_from_checkpoint": str(checkpoint), "config_from": str(like or config_path)},
    )
    return write_version(repository, model, config, cases, artefacts=files, card=card)
