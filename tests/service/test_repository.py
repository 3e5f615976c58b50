"""Discovery finds models and versions on disk and reports broken ones instead of raising."""

from __future__ import annotations

import json

from service.repository import discover, discover_model
from tests.support.tiny_models import add_model


def test_finds_every_model_and_the_newest_version_by_default(tmp_path):
    add_model(tmp_path, "digits", "digits", versions=(1, 2, 10))
    add_model(tmp_path, "spam", "spam")
    (tmp_path / "digits" / "plots").mkdir()  # not a version
    (tmp_path / "notes").mkdir()  # no config.json: not a model
    found = discover(tmp_path)
    assert [(d.name, d.version, d.error) for d in found] == [("digits", 10, None), ("spam", 1, None)]
    assert found[0].model_file == tmp_path / "digits" / "10" / "model.onnx"


def test_version_policy_all_and_specific(tmp_path):
    add_model(tmp_path, "digits", "digits", versions=(1, 2, 3), version_policy={"all": {}})
    assert [d.version for d in discover_model(tmp_path / "digits")] == [3, 2, 1]
    add_model(tmp_path, "digits", "digits", versions=(1, 2, 3), version_policy={"specific": {"versions": [1, 3]}})
    assert [d.version for d in discover_model(tmp_path / "digits")] == [3, 1]


def test_version_snapshot_supplies_tensors_and_top_level_supplies_serving_knobs(tmp_path):
    model_dir = add_model(tmp_path, "digits", "digits", max_batch_size=8)
    snapshot = json.loads((model_dir / "1" / "config.json").read_text())
    snapshot |= {"labels": list("abcdefghij"), "max_batch_size": 99}
    (model_dir / "1" / "config.json").write_text(json.dumps(snapshot))
    (d,) = discover_model(model_dir)
    assert d.config.labels == list("abcdefghij") and d.config.max_batch_size == 8


def test_broken_configs_and_missing_files_become_reasons(tmp_path):
    add_model(tmp_path, "bad-json", "digits")
    (tmp_path / "bad-json" / "config.json").write_text("{not json")
    add_model(tmp_path, "bad-schema", "digits", task="text")
    add_model(tmp_path, "no-onnx", "digits")
    (tmp_path / "no-onnx" / "1" / "model.onnx").unlink()
    add_model(tmp_path, "renamed", "digits")
    (tmp_path / "renamed").rename(tmp_path / "other-name")
    add_model(tmp_path, "good", "digits")
    reasons = {d.name: d.error for d in discover(tmp_path)}
    assert reasons["bad-json"].startswith("config.json: ")
    assert "task 'text' cannot use 'image' preprocessing" in reasons["bad-schema"]
    assert reasons["no-onnx"] == "version 1 has no model.onnx"
    assert reasons["other-name"] == "config.json names the model 'renamed' but its folder is 'other-name'"
    assert reasons["good"] is None


def test_missing_repository_is_empty(tmp_path):
    assert discover(tmp_path / "absent") == []


def test_only_numeric_folders_are_versions_not_numeric_files(tmp_path):
    add_model(tmp_path, "digits", "digits", versions=(1,))
    (tmp_path / "digits" / "7").write_text("a file named like a version")
    (tmp_path / "digits" / "01").mkdir()  # not a version name either way: never newer than 1
    (d,) = discover_model(tmp_path / "digits")
    assert (d.version, d.error) == (1, None)


def test_every_serving_knob_comes_from_the_top_level_file(tmp_path):
    model_dir = add_model(
        tmp_path,
        "digits",
        "digits",
        versions=(1, 2),
        max_batch_size=8,
        dynamic_batching={"max_queue_delay_ms": 7.0, "max_queue_size": 9},
        version_policy={"all": {}},
    )
    for v in (1, 2):
        snapshot = json.loads((model_dir / str(v) / "config.json").read_text())
        snapshot |= {
            "max_batch_size": 99,
            "dynamic_batching": {"max_queue_delay_ms": 1.0, "max_queue_size": 1},
            "version_policy": {"latest": {"num_versions": 1}},
            "name": "old-name",
        }
        (model_dir / str(v) / "config.json").write_text(json.dumps(snapshot))
    found = discover_model(model_dir)
    assert [d.version for d in found] == [2, 1]  # the top-level policy (all), not the snapshot's (latest 1)
    for d in found:
        assert d.config.name == "digits" and d.config.max_batch_size == 8
        assert (d.config.dynamic_batching.max_queue_delay_ms, d.config.dynamic_batching.max_queue_size) == (7.0, 9)
