"""A V2 request's tensors against the config's signature: what is refused (400) and what is the model's business."""

from __future__ import annotations

import numpy as np
import pytest

from modelrepo.config import ModelConfig
from service.errors import BadRequest
from service.signature import check_inputs


def config(max_batch_size: int, *inputs: str) -> ModelConfig:
    """A plain model whose FP32 inputs each have one dynamic axis."""
    return ModelConfig.model_validate(
        {
            "name": "m",
            "max_batch_size": max_batch_size,
            "inputs": [{"name": name, "datatype": "FP32", "dims": [-1]} for name in inputs],
            "outputs": [{"name": "y", "datatype": "FP32", "dims": [-1]}],
        }
    )


def test_an_input_the_model_lacks_is_refused_even_with_every_declared_one_present():
    inputs = {"a": np.zeros(2, np.float32), "extra": np.zeros(2, np.float32)}
    with pytest.raises(BadRequest, match=r"model 'm' has no input 'extra'; its inputs are \['a'\]"):
        check_inputs(config(8, "a"), inputs, "model 'm'")


def test_a_batching_models_inputs_must_agree_on_rows_but_a_plain_models_need_not():
    inputs = {"a": np.zeros(3, np.float32), "b": np.zeros(5, np.float32)}
    with pytest.raises(BadRequest, match=r"disagree on their number of rows: \[3, 5\]"):
        check_inputs(config(8, "a", "b"), inputs, "model 'm'")
    # Without batching the first axis is not rows: a concat of a length-3 and a length-5 vector is a fine request.
    assert list(check_inputs(config(0, "b", "a"), inputs, "model 'm'")) == ["b", "a"]


def test_an_empty_axis_is_refused_for_a_batching_model_only():
    empty = {"a": np.zeros(0, np.float32)}
    with pytest.raises(BadRequest, match=r"input 'a' of model 'm' has an empty axis 0 in shape \[0\]"):
        check_inputs(config(8, "a"), empty, "model 'm'")
    assert check_inputs(config(0, "a"), empty, "model 'm'")["a"].shape == (0,)
