"""config.json's schema: every number has a ceiling, and a hostile file is a ValueError naming the problem."""

from __future__ import annotations

import json

import pytest

from modelrepo.config import MAX_CONFIG_BYTES, ModelConfig, read_config
from tests.support.tiny_models import CONFIGS


def config(kind: str = "digits", **changes) -> dict:
    return {"name": "m", **json.loads(json.dumps(CONFIGS[kind])), **changes}


def with_preprocessing(kind: str, **changes) -> dict:
    base = config(kind)
    return base | {"preprocessing": base["preprocessing"] | changes}


def test_the_tiny_configs_are_valid():
    for kind in CONFIGS:
        ModelConfig.model_validate(config(kind))


@pytest.mark.parametrize(
    ("document", "where"),
    [
        (config(max_batch_size=10**12), "max_batch_size"),
        (config(max_batch_size=4097), "max_batch_size"),
        (config(dynamic_batching={"max_queue_size": 10**9}), "dynamic_batching.max_queue_size"),
        (config(dynamic_batching={"max_queue_delay_ms": 1e12}), "dynamic_batching.max_queue_delay_ms"),
        (config(dynamic_batching={"max_queue_delay_ms": float("nan")}), "dynamic_batching.max_queue_delay_ms"),
        (config(inputs=[{"name": "image", "datatype": "FP32", "dims": [-1, 1, 10**6, 28]}]), "inputs.0.dims.2"),
        (config(inputs=[{"name": "image", "datatype": "FP32", "dims": [-1, 3, 4096, 4096]}]), "inputs.0"),
        (config(inputs=[{"name": "image", "datatype": "FP32", "dims": [-1, 0, 28, 28]}]), "inputs.0"),
        (config(inputs=[{"name": "image", "datatype": "FP32", "dims": [-2, 1, 28, 28]}]), "inputs.0.dims.0"),
        (config(inputs=[{"name": "image", "datatype": "FP32", "dims": [1] * 9}]), "inputs.0.dims"),
        (config(inputs=[{"name": f"i{i}", "datatype": "FP32", "dims": [-1]} for i in range(65)]), "inputs"),
        (config(labels=[str(i) for i in range(65_537)]), "labels"),
        (config(labels=["x" * 257]), "labels.0"),
        (config(description="x" * 5000), "description"),
        (config(version_policy={"latest": {"num_versions": 10**9}}), "version_policy.latest.num_versions"),
        (config(version_policy={"specific": {"versions": [10**18]}}), "version_policy.specific.versions.0"),
        (config(version_policy={"all": {"nested": {"deep": 1}}}), "version_policy.all"),
        (with_preprocessing("digits", height=10**6), "preprocessing.image.height"),
        (with_preprocessing("digits", width=10**6), "preprocessing.image.width"),
        (with_preprocessing("digits", std=[0.0]), "preprocessing.image.std.0"),
        (with_preprocessing("digits", mean=[0.1, 0.2]), "preprocessing.image"),
        (with_preprocessing("spam", max_length=10**9), "preprocessing.text.max_length"),
        (with_preprocessing("spam", pad_id=-1), "preprocessing.text.pad_id"),
        (with_preprocessing("spam", tokenizer="../../secret.json"), "preprocessing.text.tokenizer"),
        (with_preprocessing("temperature", window=10**9), "preprocessing.series.window"),
        (with_preprocessing("temperature", stride=10**9), "preprocessing.series.stride"),
        (with_preprocessing("temperature", std=0.0), "preprocessing.series.std"),
        (with_preprocessing("temperature", mean=float("inf")), "preprocessing.series.mean"),
        (with_preprocessing("thyroid", scale=[-1.0] * 21), "preprocessing.tabular.scale.0"),
        (with_preprocessing("thyroid", features=[], mean=[], scale=[]), "preprocessing.tabular.features"),
        (config("thyroid", anomaly={"threshold": float("inf")}), "anomaly.threshold"),
        (config(name="x" * 129), "name"),
        (config(instance_group=[{"count": 0}]), "instance_group.0.count"),
        (config(instance_group=[{"count": 65}]), "instance_group.0.count"),
        (config(instance_group=[{"kind": "KIND_TPU"}]), "instance_group.0.kind"),
        (config(instance_group=[{"kind": "KIND_GPU", "gpus": [-1]}]), "instance_group.0.gpus.0"),
        (config(instance_group=[{"kind": "KIND_GPU", "gpus": [1024]}]), "instance_group.0.gpus.0"),
        (config(instance_group=[{"kind": "KIND_GPU", "gpus": [0, 0]}]), "instance_group.0"),
        (config(instance_group=[{"kind": "KIND_CPU", "gpus": [0]}]), "instance_group.0"),
        (config(instance_group=[{"kind": "KIND_GPU", "gpus": [0, 1], "count": 33}]), "instance_group"),
        (config(instance_group=[{"count": 40}, {"count": 40}]), "instance_group"),
        (config(instance_group=[]), "instance_group"),
        (config(instance_group=[{"count": 2, "cpus": 4}]), "instance_group.0.cpus"),
    ],
)
def test_out_of_bounds_values_are_refused_naming_the_field(document, where):
    with pytest.raises(ValueError) as info:
        ModelConfig.model_validate(document)
    assert where in {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}, info.value


def test_the_ceilings_still_take_the_largest_allowed_values():
    ModelConfig.model_validate(
        config(max_batch_size=4096, dynamic_batching={"max_queue_size": 65_536, "max_queue_delay_ms": 10_000})
    )
    ModelConfig.model_validate(with_preprocessing("thyroid", scale=[0.0] * 21))  # 0 marks a constant column


def test_a_deeply_nested_file_is_a_value_error_not_a_recursion_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        read_config(path)


def test_an_oversized_file_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config(description="")) + " " * MAX_CONFIG_BYTES)
    with pytest.raises(ValueError, match=f"larger than {MAX_CONFIG_BYTES} bytes"):
        read_config(path)


def test_an_anomaly_model_needs_its_threshold_section():
    document = config("thyroid")
    del document["anomaly"]
    with pytest.raises(ValueError, match="an anomaly model needs an 'anomaly' section with its threshold"):
        ModelConfig.model_validate(document)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            with_preprocessing("thyroid", scale=[1.0] * 20),
            "features, mean and scale must have the same length",
        ),
        (
            config("thyroid", anomaly={"threshold": 0.5, "merge_gap": 10}),
            "merge_gap, min_points and point_score turn a series' windows into alarms; a tabular model has rows",
        ),
        (
            config("thyroid", anomaly={"threshold": 0.5, "point_score": "max"}),
            "a tabular model has rows",
        ),
        (config("spam", labels=[]), "a text model needs its labels"),
        (config("digits", labels=[]), "a vision model needs its labels"),
    ],
)
def test_what_a_task_s_sections_must_agree_on(document, message):
    # Each of these would load and then answer wrongly: a feature scaled by the wrong value, a series rule
    # silently unused, predictions without label names.
    with pytest.raises(ValueError, match=message):
        ModelConfig.model_validate(document)


def test_a_version_policy_takes_exactly_one_kind_and_defaults_to_the_latest():
    with pytest.raises(ValueError, match="version_policy takes one of latest/all/specific"):
        ModelConfig.model_validate(config(version_policy={"latest": {"num_versions": 2}, "all": {}}))
    policy = ModelConfig.model_validate(config(version_policy={})).version_policy
    assert policy.select([1, 3, 2]) == [3]
    assert ModelConfig.model_validate(config(version_policy={"latest": {"num_versions": 2}})).version_policy.select(
        [1, 3, 2]
    ) == [3, 2]


def test_a_config_without_a_task_is_a_plain_model() -> None:

    plain = ModelConfig.model_validate({"name": "m", "max_batch_size": 0})
    assert plain.task is None and plain.preprocessing is None and plain.inputs == []
    for extra in (
        {"labels": ["a"]},
        {"preprocessing": {"kind": "series", "window": 4, "mean": 0, "std": 1}},
        {"anomaly": {"threshold": 1.0}},
    ):
        with pytest.raises(ValueError, match="belong to a task"):
            ModelConfig.model_validate({"name": "m", **extra})
    series = {"kind": "series", "window": 4, "mean": 0, "std": 1}
    with pytest.raises(ValueError, match="needs its preprocessing"):
        ModelConfig.model_validate({"name": "m", "task": "anomaly", "anomaly": {"threshold": 1.0}})
    with pytest.raises(ValueError, match="batches"):
        ModelConfig.model_validate(
            {
                "name": "m",
                "task": "anomaly",
                "anomaly": {"threshold": 1.0},
                "preprocessing": series,
                "max_batch_size": 0,
            }
        )


def test_a_config_without_a_name_takes_its_folders(tmp_path) -> None:

    (tmp_path / "config.json").write_text('{"max_batch_size": 8}')
    assert read_config(tmp_path / "config.json", "folder").name == "folder"
    with pytest.raises(ValueError):
        read_config(tmp_path / "config.json")


def test_instance_groups_follow_triton_and_default_to_one_auto_instance():
    assert [g.model_dump() for g in ModelConfig.model_validate(config()).instance_group] == [
        {"name": "", "kind": "KIND_AUTO", "count": 1, "gpus": []}
    ]
    groups = ModelConfig.model_validate(
        config(instance_group=[{"kind": "KIND_CPU", "count": 2}, {"kind": "KIND_GPU", "count": 2, "gpus": [0, 3]}])
    ).instance_group
    assert [(g.kind, g.count, g.gpus, g.instances) for g in groups] == [
        ("KIND_CPU", 2, [], 2),
        ("KIND_GPU", 2, [0, 3], 4),
    ]
    # The ceiling counts sessions over every group: 32 on each of two GPUs is the most allowed.
    ModelConfig.model_validate(config(instance_group=[{"kind": "KIND_GPU", "gpus": [0, 1], "count": 32}]))
    with pytest.raises(ValueError, match="asks for 66 sessions, more than 64"):
        ModelConfig.model_validate(config(instance_group=[{"kind": "KIND_GPU", "gpus": [0, 1], "count": 33}]))
    with pytest.raises(ValueError, match="gpus are listed only for kind KIND_GPU, not KIND_AUTO"):
        ModelConfig.model_validate(config(instance_group=[{"gpus": [0]}]))


def test_instance_group_is_a_model_level_knob():
    snapshot = ModelConfig.model_validate(config())
    top = ModelConfig.model_validate(config(instance_group=[{"kind": "KIND_CPU", "count": 3}]))
    assert snapshot.serving_view(top).instance_group[0].count == 3
