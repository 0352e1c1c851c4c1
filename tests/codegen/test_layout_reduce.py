"""Transpose, Concat, Softmax/LogSoftmax, ArgMax/ArgMin, Cast and the view ops, against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.parity import assert_matches_ort, single_op_model

rng = np.random.default_rng(7)


def rand(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("shape,perm", [((2, 3, 4), None), ((2, 3, 4), [0, 2, 1]), ((1, 8, 3, 5), [0, 2, 3, 1]),
                                        ((2, 3, 4, 5), [3, 1, 0, 2]), ((4, 1, 6), [1, 0, 2]), ((3, 4), [0, 1])])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_transpose(shape: tuple[int, ...], perm: list[int] | None, dtype: type) -> None:
    x = (rand(*shape) * 10).astype(dtype)
    attrs = {} if perm is None else {"perm": perm}
    assert_matches_ort(single_op_model("Transpose", {"x": x}, **attrs), {"x": x})


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_concat_with_a_constant_among_inputs(axis: int) -> None:
    a, b = rand(2, 3, 4), rand(2, 3, 4)
    model = single_op_model("Concat", {"a": a, "b": b}, constants={"c": rand(2, 3, 4)}, axis=axis)
    assert_matches_ort(model, {"a": a, "b": b})


def test_concat_many_outer_blocks_int64() -> None:
    a, b = rng.integers(0, 9, (20, 3)).astype(np.int64), rng.integers(0, 9, (20, 2)).astype(np.int64)
    assert_matches_ort(single_op_model("Concat", {"a": a, "b": b}, axis=1), {"a": a, "b": b})


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset,axis", [(11, None), (11, 0), (11, 2), (13, None), (13, 1), (13, 0), (13, -2)])
@pytest.mark.parametrize("shape", [(2, 3, 7), (3, 4, 9)])
def test_softmax_both_opset_semantics(op: str, opset: int, axis: int | None, shape: tuple[int, ...]) -> None:
    x = rand(*shape) * 5
    attrs = {} if axis is None else {"axis": axis}
    assert_matches_ort(single_op_model(op, {"x": x}, opset=opset, **attrs), {"x": x})


def test_softmax_large_logits_are_stable() -> None:
    x = np.array([[1000.0, 999.0, -1000.0, 0.0, 5.0]], np.float32)
    assert_matches_ort(single_op_model("Softmax", {"x": x}), {"x": x})
    assert_matches_ort(single_op_model("LogSoftmax", {"x": x}), {"x": x})


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis,keepdims,last", [(0, 1, 0), (1, 0, 0), (-1, 1, 1), (2, 0, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_argmax_argmin(op: str, axis: int, keepdims: int, last: int, dtype: type) -> None:
    x = rng.integers(0, 3, (3, 4, 5)).astype(dtype)  # many ties: select_last_index matters
    model = single_op_model(op, {"x": x}, axis=axis, keepdims=keepdims, select_last_index=last)
    assert_matches_ort(model, {"x": x})


@pytest.mark.parametrize("src,dst", [(np.float32, TensorProto.INT64), (np.float32, TensorProto.INT32),
                                     (np.int64, TensorProto.FLOAT), (np.int32, TensorProto.FLOAT),
                                     (np.float32, TensorProto.BOOL), (np.bool_, TensorProto.FLOAT),
                                     (np.float32, TensorProto.DOUBLE), (np.float64, TensorProto.FLOAT),
                                     (np.int64, TensorProto.INT32), (np.int32, TensorProto.INT64),
                                     (np.uint8, TensorProto.FLOAT), (np.float32, TensorProto.FLOAT)])
def test_cast(src: type, dst: int) -> None:
    x = (rand(3, 5) * 7).astype(src) if src is not np.bool_ else rand(3, 5) > 0
    if src is np.uint8:
        x = rng.integers(0, 255, (3, 5)).astype(np.uint8)
    assert_matches_ort(single_op_model("Cast", {"x": x}, to=dst), {"x": x})


def _chain(nodes: list[onnx.NodeProto], x_shape: list[int], y: str, inits: list[onnx.TensorProto],
           opset: int = 13) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "views", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    inferred = onnx.shape_inference.infer_shapes(model)
    model.graph.output[0].type.CopyFrom(next(v.type for v in inferred.graph.output if v.name == y))
    return model


def test_views_cost_nothing_and_stay_correct() -> None:
    inits = [numpy_helper.from_array(np.array([0, -1, 2], np.int64), "shape"),
             numpy_helper.from_array(np.array([0], np.int64), "axes")]
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Relu", ["r"], ["a"]),
             helper.make_node("Unsqueeze", ["a", "axes"], ["u"]), helper.make_node("Squeeze", ["u", "axes"], ["s"]),
             helper.make_node("Flatten", ["s"], ["fl"], axis=-1), helper.make_node("Identity", ["fl"], ["y"])]
    x = rand(2, 3, 4, 2)
    assert_matches_ort(_chain(nodes, [2, 3, 4, 2], "y", inits), {"x": x})


def test_squeeze_axes_attribute_opset11_and_dropout_mask_unused() -> None:
    nodes = [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[1]), helper.make_node("Squeeze", ["u"], ["s"], axes=[1]),
             helper.make_node("Dropout", ["s"], ["y", "mask"])]
    x = rand(3, 4)
    assert_matches_ort(_chain(nodes, [3, 4], "y", [], opset=11), {"x": x})


def test_output_that_is_an_input_through_identity() -> None:
    x = rand(2, 2)
    assert_matches_ort(_chain([helper.make_node("Identity", ["x"], ["y"])], [2, 2], "y", []), {"x": x})
