"""The repository writer: numbered versions, never overwritten, atomic, and a valid repository."""

import json
import shutil
import stat

import numpy as np
import pytest

from modelrepo.config import (
    AnomalySpec,
    DynamicBatching,
    read_config,
    write_config,
)
from tests.support.tiny_autoencoder import tiny_autoencoder, tiny_autoencoder_config
from training.card import read_card
from training.data.paths import file_sha256
from training.models import save_checkpoint
from training.repository import card_writer, export_checkpoint, validate_repository, versions, write_version


def _cases() -> list[tuple[np.ndarray]]:
    rng = np.random.default_rng(0)
    return [(rng.normal(size=(1, 3)).astype(np.float32),), (rng.normal(size=(32, 3)).astype(np.float32),)]


def _card() -> card_writer:
    return card_writer(
        name="tiny-ae",
        family="dense-ae",
        dataset={"name": "none"},
        split={},
        hyperparameters={},
        parameters=0,
        metrics={},
        training={},
    )


def test_first_write_is_version_1_with_tensors_from_the_onnx_file(tmp_path):
    written = write_version(
        tmp_path,
        tiny_autoencoder(),
        tiny_autoencoder_config(),
        _cases(),
        artefacts={"notes.txt": "hello"},
        card=_card(),
    )
    assert written.version == 1 and written.path == tmp_path / "tiny-ae" / "1"
    snapshot = read_config(written.path / "config.json")
    assert [t.name for t in snapshot.inputs] == ["features"]
    assert [(t.name, t.dims) for t in snapshot.outputs] == [("reconstruction", [-1, 3]), ("score", [-1])]
    assert (written.path / "notes.txt").read_text() == "hello"
    card = read_card(written.path / "card.json")
    assert card["model_onnx"]["sha256"] == file_sha256(written.path / "model.onnx")
    assert card["parity"]["passed"] and len(card["parity"]["cases"]) == 2
    assert card["version"] == 1
    assert validate_repository(tmp_path) == []


def test_second_write_is_version_2_and_leaves_1_untouched(tmp_path):
    first = write_version(tmp_path, tiny_autoencoder(0), tiny_autoencoder_config(), _cases(), card=_card())
    before = {p.name: p.read_bytes() for p in first.path.iterdir()}
    second = write_version(tmp_path, tiny_autoencoder(1), tiny_autoencoder_config(), _cases(), card=_card())
    assert second.version == 2
    assert {p.name: p.read_bytes() for p in first.path.iterdir()} == before
    assert versions(tmp_path / "tiny-ae") == [1, 2]
    assert file_sha256(first.path / "model.onnx") != file_sha256(second.path / "model.onnx")
    assert validate_repository(tmp_path) == []


def test_top_level_config_keeps_the_operators_serving_knobs(tmp_path):
    write_version(tmp_path, tiny_autoencoder(), tiny_autoencoder_config(), _cases(), card=_card())
    top_path = tmp_path / "tiny-ae" / "config.json"
    top = read_config(top_path)
    edited = top.model_copy(update={"max_batch_size": 7, "dynamic_batching": DynamicBatching(max_queue_delay_ms=9)})
    write_config(edited, top_path)
    config = tiny_autoencoder_config().model_copy(update={"anomaly": AnomalySpec(threshold=3.0)})
    write_version(tmp_path, tiny_autoencoder(), config, _cases(), card=_card())
    top = read_config(top_path)
    assert top.max_batch_size == 7 and top.dynamic_batching.max_queue_delay_ms == 9
    assert top.anomaly.threshold == 3.0  # the version's own fields follow the newest export


def test_failed_export_leaves_no_version_and_no_staging(tmp_path):
    bad_cases = [(np.zeros((2, 5), dtype=np.float32),)]  # 5 features for a 3-feature model
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        write_version(tmp_path, tiny_autoencoder(), tiny_autoencoder_config(), bad_cases, card=_card())
    assert list((tmp_path / "tiny-ae").iterdir()) == []


def test_validate_repository_reports_mismatched_tensors_and_sha(tmp_path):
    written = write_version(tmp_path, tiny_autoencoder(), tiny_autoencoder_config(), _cases(), card=_card())
    snapshot = json.loads((written.path / "config.json").read_text())
    snapshot["outputs"][1]["dims"] = [-1, 1]
    (written.path / "config.json").write_text(json.dumps(snapshot))
    card = read_card(written.path / "card.json")
    card["model_onnx"]["sha256"] = "0" * 64
    (written.path / "card.json").write_text(json.dumps(card))
    (tmp_path / "tiny-ae" / "latest").mkdir()
    problems = validate_repository(tmp_path)
    assert any("snapshot tensors differ" in p for p in problems)
    assert any("sha256" in p for p in problems)
    assert any("non-numeric" in p for p in problems)


def test_a_write_after_a_removed_version_is_one_past_the_highest_and_readable_by_all(tmp_path):
    first = write_version(tmp_path, tiny_autoencoder(0), tiny_autoencoder_config(), _cases(), card=_card())
    write_version(tmp_path, tiny_autoencoder(1), tiny_autoencoder_config(), _cases(), card=_card())
    shutil.rmtree(first.path)  # an operator retired version 1: 2 is left
    third = write_version(tmp_path, tiny_autoencoder(2), tiny_autoencoder_config(), _cases(), card=_card())
    assert third.version == 3 and versions(tmp_path / "tiny-ae") == [2, 3]
    # The staging folder was made 0700; the served folder must be readable by the server's own user.
    assert stat.S_IMODE(third.path.stat().st_mode) == 0o755


def test_export_checkpoint_reuses_a_versions_config_as_a_new_version(tmp_path):
    first = write_version(
        tmp_path, tiny_autoencoder(), tiny_autoencoder_config(), _cases(), artefacts={"notes.txt": "kept"}, card=_card()
    )
    (first.path / "training_curves.png").write_bytes(b"the first version's own plot")
    save_checkpoint(tiny_autoencoder(3), "dense-ae", tmp_path / "ae.pt")
    written = export_checkpoint(tmp_path / "ae.pt", tmp_path, like=first.path)
    assert written.version == 2
    # Its other files come along; plots describe the first version's training, not this checkpoint's.
    assert (written.path / "notes.txt").read_text() == "kept"
    assert not (written.path / "training_curves.png").exists()
    assert (
        read_config(written.path / "config.json").preprocessing == read_config(first.path / "config.json").preprocessing
    )
    assert validate_repository(tmp_path) == []
