"""ONNX → IR: dynamic dims, shape overrides, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.parity import assert_matches_ort
from wasinfer.frontends import FrontendError, load_onnx, parse_shape_overrides


def relu_model(dims: list[int | str], opset: int = 13) -> helper.ModelProto:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_dynamic_leading_dim_is_the_batch() -> None:
    loaded = load_onnx(relu_model(["batch", 3]))
    assert loaded.batch_inputs == ["x"]
    assert loaded.graph.info("x").shape == (1, 3)


def test_other_dynamic_dims_need_an_override() -> None:
    with pytest.raises(FrontendError, match="--input-shape x="):
        load_onnx(relu_model(["batch", "len"]))
    loaded = load_onnx(relu_model(["batch", "len"]), {"x": (1, 7)})
    assert loaded.graph.info("y").shape == (1, 7)


def test_override_errors_are_specific() -> None:
    with pytest.raises(FrontendError, match="rank 2"):
        load_onnx(relu_model([2, 3]), {"x": (2, 3, 4)})
    with pytest.raises(FrontendError, match="fixed at 3"):
        load_onnx(relu_model([2, 3]), {"x": (2, 4)})
    with pytest.raises(FrontendError, match="unknown inputs"):
        load_onnx(relu_model([2, 3]), {"nope": (1,)})
    with pytest.raises(FrontendError, match="NAME=d0"):
        parse_shape_overrides(["1,2,3"])
    with pytest.raises(FrontendError, match="integers"):
        parse_shape_overrides(["x=a,b"])


def test_old_opset_is_rejected() -> None:
    with pytest.raises(FrontendError, match="opset 8"):
        load_onnx(relu_model([2], opset=8))


def test_batched_run_matches_onnxruntime_sample_by_sample() -> None:
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    assert_matches_ort(relu_model(["N", 4]), {"x": x}, max_batch=8)
