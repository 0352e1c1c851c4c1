"""Data movement against ONNX Runtime: Transpose, Concat, the view ops (which cost nothing),
the Shape/Size folding pass, Dropout's mask, and graph outputs that are inputs or constants."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.parity import assert_matches_ort, graph_model, single_op_model
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm.compiler import UnsupportedModel
from wasinfer.frontends import load_onnx
from wasinfer.ops import VIEW_OPS
from wasinfer.passes import fold_constants
from wasinfer.passes.shapes import fold_static_values

rng = np.random.default_rng(11)


def values(shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    if np.dtype(dtype) == np.bool_:
        return rng.random(shape) > 0.5
    if np.dtype(dtype).kind in "iu":
        return np.asarray(rng.integers(0, 100, shape), dtype)
    return np.asarray(rng.standard_normal(shape) * 10, dtype)


def compute_ops(model: onnx.ModelProto) -> list[str]:
    """The ops that run code: views (aliases) and folded nodes are not among them."""
    ops: list[str] = convert_onnx(model).stats["ops"]  # type: ignore[assignment]
    return [op for op in ops if op not in VIEW_OPS]


# ---------------------------------------------------------------- Transpose

TRANSPOSES = [((7,), None), ((3, 5), None), ((3, 5), [0, 1]), ((2, 3, 4), [0, 2, 1]),
              ((2, 3, 4), [1, 0, 2]), ((2, 3, 4), [2, 0, 1]), ((1, 8, 3, 5), [0, 2, 3, 1]),
              ((1, 3, 5, 8), [0, 3, 1, 2]), ((2, 3, 4, 5), [3, 1, 0, 2]), ((4, 1, 6), [1, 0, 2]),
              ((2, 3, 2, 3, 2), [4, 2, 0, 3, 1]), ((2, 1, 3, 1, 2, 3), [5, 3, 1, 4, 0, 2]),
              ((2, 40, 3), [1, 0, 2]), ((9, 7), [1, 0]), ((2, 6, 7, 5), [0, 2, 3, 1]),
              ((2, 7, 5, 6), [0, 3, 1, 2]), ((6, 9, 5), [2, 1, 0]), ((4, 4), [1, 0])]


@pytest.mark.parametrize("shape,perm", TRANSPOSES)
@pytest.mark.parametrize("opset", [9, 13, 21])
def test_transpose_any_rank_and_perm(shape: tuple[int, ...], perm: list[int] | None, opset: int) -> None:
    x = values(shape)
    attrs: dict[str, Any] = {} if perm is None else {"perm": perm}
    assert_matches_ort(single_op_model("Transpose", {"x": x}, opset=opset, **attrs), {"x": x})


def test_transpose_of_a_scalar() -> None:
    """At the default opset: ONNX's shape inference for Transpose-1 gives a scalar no shape."""
    x = values(())
    assert_matches_ort(single_op_model("Transpose", {"x": x}), {"x": x})


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.int8, np.bool_, np.float16, np.float64])
@pytest.mark.parametrize("shape,perm", [((2, 3, 5), [2, 0, 1]), ((3, 4, 6), [1, 0, 2]), ((5, 3), None),
                                        ((9, 6), None)])
def test_transpose_moves_any_dtype_by_element_size(dtype: type, shape: tuple[int, ...], perm: list[int] | None) -> None:
    x = values(shape, dtype)
    attrs: dict[str, Any] = {} if perm is None else {"perm": perm}
    assert_matches_ort(single_op_model("Transpose", {"x": x}, **attrs), {"x": x})


def test_transpose_of_a_string_tensor_is_refused() -> None:
    x = np.array([["a", "b"]], dtype=object)
    model = single_op_model("Transpose", {"x": x})
    with pytest.raises(UnsupportedModel, match="cannot be moved"):
        convert_onnx(model)


# ---------------------------------------------------------------- Concat

def valid_axes(axes: list[int], opsets: list[int]) -> list[tuple[int, int]]:
    """(axis, opset) pairs, negative axes only from opset 11 where they arrived."""
    return [(axis, opset) for opset in opsets for axis in axes if axis >= 0 or opset >= 11]


@pytest.mark.parametrize("axis,opset", valid_axes([0, 1, 2, -1, -2, -3], [9, 11, 13]))
def test_concat_axes_with_a_constant_among_inputs(axis: int, opset: int) -> None:
    shape = [2, 3, 4]
    a_shape, c_shape = list(shape), list(shape)
    a_shape[axis], c_shape[axis] = 5, 1
    a, b = values(tuple(a_shape)), values(tuple(shape))
    model = single_op_model("Concat", {"a": a, "b": b}, constants={"c": values(tuple(c_shape))}, opset=opset,
                            axis=axis)
    assert_matches_ort(model, {"a": a, "b": b})


@pytest.mark.parametrize("outer,widths", [(1, [3, 70, 1]), (3, [2, 2, 2, 2, 2]), (20, [3, 2]),
                                          (6, [50, 1, 40]), (7, [0, 3])])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8, np.bool_, np.float16])
def test_concat_many_inputs_blocks_and_dtypes(outer: int, widths: list[int], dtype: type) -> None:
    inputs = {f"x{i}": values((outer, w), dtype) for i, w in enumerate(widths)}
    assert_matches_ort(single_op_model("Concat", inputs, axis=1), inputs)


def test_concat_of_one_input_is_a_copy() -> None:
    x = values((3, 4))
    assert_matches_ort(single_op_model("Concat", {"x": x}, axis=0), {"x": x})


# ---------------------------------------------------------------- views

@pytest.mark.parametrize("shape,allowzero", [([0, -1, 2], None), ([-1], None), ([-1, 0, 0, 2], None),
                                             ([2, 3, 8], 0), ([4, -1], 1)])
def test_reshape_with_zero_and_minus_one(shape: list[int], allowzero: int | None) -> None:
    x = values((2, 3, 4, 2))
    attrs: dict[str, Any] = {} if allowzero is None else {"allowzero": allowzero}
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Reshape", ["r", "shape"], ["y"], **attrs)]
    model = graph_model(nodes, {"x": x}, ["y"], {"shape": np.array(shape, np.int64)},
                        opset=14 if allowzero is not None else 13)
    assert_matches_ort(model, {"x": x})
    assert compute_ops(model) == ["Relu"]


@pytest.mark.parametrize("axis,opset", valid_axes([0, 1, 2, 3, -1, -3], [9, 11, 13]))
def test_flatten_axes(axis: int, opset: int) -> None:
    x = values((2, 3, 4))
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Flatten", ["r"], ["y"], axis=axis)]
    assert_matches_ort(graph_model(nodes, {"x": x}, ["y"], opset=opset), {"x": x})


@pytest.mark.parametrize("opset", [11, 13, 21])
@pytest.mark.parametrize("unsqueeze_axes,squeeze_axes", [([0], [0]), ([1, -1], [-1, 1]), ([0, 3], None)])
def test_squeeze_unsqueeze_axes_as_attribute_or_input(opset: int, unsqueeze_axes: list[int],
                                                     squeeze_axes: list[int] | None) -> None:
    """Opset 13 moved `axes` from an attribute to an input; no axes squeezes every 1."""
    x = values((3, 4))
    inits: dict[str, np.ndarray] = {}
    if opset >= 13:
        inits["ua"] = np.array(unsqueeze_axes, np.int64)
        unsqueeze = helper.make_node("Unsqueeze", ["r", "ua"], ["u"])
        if squeeze_axes is not None:
            inits["sa"] = np.array(squeeze_axes, np.int64)
        squeeze = helper.make_node("Squeeze", ["u"] + (["sa"] if squeeze_axes is not None else []), ["y"])
    else:
        unsqueeze = helper.make_node("Unsqueeze", ["r"], ["u"], axes=unsqueeze_axes)
        attrs: dict[str, Any] = {} if squeeze_axes is None else {"axes": squeeze_axes}
        squeeze = helper.make_node("Squeeze", ["u"], ["y"], **attrs)
    nodes = [helper.make_node("Relu", ["x"], ["r"]), unsqueeze, squeeze, helper.make_node("Neg", ["u"], ["z"])]
    model = graph_model(nodes, {"x": x}, ["y", "z"], inits, opset=opset)
    assert_matches_ort(model, {"x": x})
    assert compute_ops(model) == ["Neg", "Relu"]


def test_a_chain_of_views_between_kernels() -> None:
    inits = {"shape": np.array([0, -1, 2], np.int64), "axes": np.array([0], np.int64)}
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Relu", ["r"], ["a"]),
             helper.make_node("Unsqueeze", ["a", "axes"], ["u"]), helper.make_node("Squeeze", ["u", "axes"], ["s"]),
             helper.make_node("Flatten", ["s"], ["fl"], axis=-1), helper.make_node("Identity", ["fl"], ["i"]),
             helper.make_node("Dropout", ["i"], ["d"]), helper.make_node("Neg", ["d"], ["y"])]
    x = values((2, 3, 4, 2))
    assert_matches_ort(graph_model(nodes, {"x": x}, ["y"], inits), {"x": x})


# ---------------------------------------------------------------- Dropout

@pytest.mark.parametrize("opset,mode", [(9, None), (10, None), (12, None), (12, False), (13, False), (22, None)])
def test_dropout_mask_output_in_inference(opset: int, mode: bool | None) -> None:
    """ONNX Runtime writes an all-true mask from opset 12 and zeros before; both as outputs
    and when a kernel consumes the mask."""
    x = values((3, 5))
    inits: dict[str, np.ndarray] = {}
    inputs = ["x"]
    if mode is not None:
        inits = {"ratio": np.array(0.3, np.float32), "training": np.array(mode)}
        inputs = ["x", "ratio", "training"]
    attrs: dict[str, Any] = {"ratio": 0.3} if opset < 12 else {}
    nodes = [helper.make_node("Dropout", inputs, ["y", "mask"], **attrs),
             helper.make_node("Cast", ["mask"], ["mask_f"], to=TensorProto.FLOAT)]
    model = graph_model(nodes, {"x": x}, ["y", "mask", "mask_f"], inits, opset=opset)
    # ONNX's shape inference leaves Dropout-7's mask (typed like the input) unknown
    mask_type = TensorProto.FLOAT if opset < 10 else TensorProto.BOOL
    model.graph.output[1].type.CopyFrom(helper.make_tensor_type_proto(mask_type, x.shape))
    model.graph.output[2].type.CopyFrom(helper.make_tensor_type_proto(TensorProto.FLOAT, x.shape))
    assert_matches_ort(model, {"x": x})


def test_dropout_in_training_mode_is_refused() -> None:
    x = values((3, 5))
    nodes = [helper.make_node("Dropout", ["x", "ratio", "training"], ["y", "mask"])]
    model = graph_model(nodes, {"x": x}, ["y", "mask"], {"ratio": np.array(0.3, np.float32),
                                                         "training": np.array(True)})
    with pytest.raises(UnsupportedModel, match="training_mode"):
        convert_onnx(model)


# ---------------------------------------------------------------- graph outputs

def test_output_that_is_an_input_through_identity() -> None:
    x = values((2, 3))
    model = graph_model([helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["z"])],
                        {"x": x}, ["y", "z"])
    assert_matches_ort(model, {"x": x})


def test_output_that_is_a_folded_constant() -> None:
    nodes = [helper.make_node("Add", ["k", "k"], ["k2"]), helper.make_node("Transpose", ["k2"], ["kt"]),
             helper.make_node("Neg", ["x"], ["y"])]
    x = values((1, 3))
    model = graph_model(nodes, {"x": x}, ["kt", "y"], {"k": values((2, 3))})
    assert compute_ops(model) == ["Neg"]
    assert_matches_ort(model, {"x": x})


def test_output_that_is_an_identity_of_an_initializer() -> None:
    x = values((2, 3))
    model = graph_model([helper.make_node("Identity", ["k"], ["y"]), helper.make_node("Neg", ["x"], ["z"])],
                        {"x": x}, ["y", "z"], {"k": values((2, 3))})
    assert_matches_ort(model, {"x": x})


# ---------------------------------------------------------------- Shape / Size folding

def shape_subgraph_model(opset: int = 13) -> onnx.ModelProto:
    """y = Reshape(relu(x), [Shape(x)[0], -1]): the pattern exporters write for Flatten."""
    inits = {"zero": np.array(0, np.int64), "minus_one": np.array([-1], np.int64), "zero_axes": np.array([0], np.int64)}
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Shape", ["r"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "zero_axes"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus_one"], ["new_shape"], axis=0),
             helper.make_node("Reshape", ["r", "new_shape"], ["y"])]
    graph = helper.make_graph(nodes, "flatten", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 12])],
                              [numpy_helper.from_array(v, n) for n, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_shape_gather_concat_reshape_folds_to_a_view() -> None:
    graph = load_onnx(shape_subgraph_model()).graph
    assert fold_static_values(graph) == 1
    fold_constants(graph)
    assert [n.op_type for n in graph.nodes] == ["Relu", "Reshape"]
    np.testing.assert_array_equal(graph.constants["new_shape"], [1, -1])


@pytest.mark.parametrize("batch", [1, 4])
def test_shape_subgraph_matches_onnxruntime_per_sample(batch: int) -> None:
    x = values((batch, 3, 4))
    assert_matches_ort(shape_subgraph_model(), {"x": x}, max_batch=batch)


@pytest.mark.parametrize("start,end", [(None, None), (1, None), (-2, None), (0, -1), (-10, 10), (2, 1)])
def test_shape_start_end_and_size_of_a_runtime_tensor(start: int | None, end: int | None) -> None:
    x = values((2, 3, 4))
    attrs: dict[str, Any] = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Shape", ["r"], ["s"], **attrs),
             helper.make_node("Size", ["r"], ["n"])]
    model = graph_model(nodes, {"x": x}, ["s", "n"], opset=15)
    assert_matches_ort(model, {"x": x})


def test_constant_of_shape_of_a_runtime_tensors_shape_folds() -> None:
    x = values((2, 3))
    value = numpy_helper.from_array(np.array([1.5], np.float32))
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("ConstantOfShape", ["s"], ["c"], value=value),
             helper.make_node("Add", ["x", "c"], ["y"])]
    model = graph_model(nodes, {"x": x}, ["y"])
    assert_matches_ort(model, {"x": x})
    assert compute_ops(model) == ["Add"]


def test_constant_of_shape_with_a_runtime_shape_is_a_clear_problem() -> None:
    shape = np.array([2, 3], np.int64)
    model = single_op_model("ConstantOfShape", {"shape": shape})
    with pytest.raises(UnsupportedModel, match=r"ConstantOfShape.*run-time values"):
        convert_onnx(model)
