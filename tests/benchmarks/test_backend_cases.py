"""A fast subset of the `onnx` backend node cases served from a bare repository (no config.json anywhere).

The subset is fixed by name, across datatypes (FP16, FP32, FP64, INT8, UINT8, INT64, BOOL, STRING), shapes
(scalars, empty `axes`, data-dependent shapes), models with and without a batch axis, and NaN/inf values.
Each case must pass in ONNX Runtime in-process and through Axon over V2 JSON and binary; the full run is
`python benchmarks/backend_cases.py`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from benchmarks.backend_cases import JSON_CANNOT, Case, load_cases, run_in_process, serve_and_check

SUBSET = [
    "test_abs",
    "test_add_uint8",
    "test_and2d",
    "test_argmax_default_axis_example",
    "test_attention_4d_fp16",
    "test_blackmanwindow",
    "test_castlike_DOUBLE_to_FLOAT16",
    "test_castlike_FLOAT16_to_DOUBLE",
    "test_clip_default_int8_inbounds",
    "test_clip_default_int8_max",
    "test_conv_with_strides_padding",
    "test_cumsum_1d",
    "test_div_uint8",
    "test_equal_string",
    "test_gather_0",
    "test_isinf_float16",
    "test_isnan",
    "test_ai_onnx_ml_label_encoder_string_int",
    "test_matmul_2d",
    "test_mul_int8",
    "test_nonzero_example",
    "test_not_2d",
    "test_reduce_sum_default_axes_keepdims_example",
    "test_regex_full_match_basic",
    "test_relu",
    "test_reshape_reordered_all_dims",
    "test_shape",
    "test_size_example",
    "test_softmax_example",
    "test_string_concat",
    "test_sub_uint8",
    "test_top_k",
    "test_where_example",
    "test_xor_bcast3v1d",
]


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    found = load_cases(SUBSET)
    assert sorted(c.name for c in found) == sorted(SUBSET), "a case of the subset is gone from the onnx package"
    return found


@pytest.fixture(scope="module")
def served(cases: list[Case], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str | None]]:
    return asyncio.run(serve_and_check(cases, Path(tmp_path_factory.mktemp("backend"))))


def test_the_subset_covers_the_datatypes_and_shapes(cases: list[Case]) -> None:
    kinds = {a.dtype.name for c in cases for a in [*c.inputs.values(), *c.outputs.values()]}
    assert {"float16", "float32", "float64", "int8", "uint8", "int64", "bool", "object"} <= kinds
    assert any(a.ndim == 0 for c in cases for a in c.outputs.values())  # scalar outputs
    assert any(0 in a.shape for c in cases for a in c.inputs.values())  # an empty input


def test_onnx_runtime_passes_the_subset_in_process(cases: list[Case]) -> None:
    assert {c.name: run_in_process(c) for c in cases} == {c.name: None for c in cases}


def test_axon_passes_the_subset_over_v2_json_and_binary(served: dict[str, dict[str, str | None]]) -> None:
    failed = {
        name: row for name, row in served.items() if row["binary"] is not None or row["json"] not in (None, JSON_CANNOT)
    }
    assert failed == {}
    assert sum(row["json"] is None for row in served.values()) >= len(served) - 4  # NaN/inf cases: binary only
