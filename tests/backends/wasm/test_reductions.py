"""Reduce* over any axes, LayerNormalization, InstanceNormalization, CumSum, CumProd, Hardmax, TopK and Range
against ONNX Runtime."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from tests.parity import assert_matches_ort, ort_run, single_op_model, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm.compiler import UnsupportedModel
from wasinfer.runtime import WasmModel
from wasinfer.runtime.onnx_backend import WasinferBackend

rng = np.random.default_rng(11)

REDUCE_OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"]


def rand(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def reduce_input(op: str, *shape: int) -> np.ndarray:
    """Values in each op's comfortable range: positive for LogSum, near 1 for Prod."""
    x = rand(*shape)
    if op == "ReduceLogSum":
        return np.abs(x) + np.float32(0.1)
    if op == "ReduceProd":
        return (x * np.float32(0.2) + np.float32(1.0)).astype(np.float32)
    return x


def reduce_model(op: str, x: np.ndarray, axes: list[int] | None, opset: int = 18, **attrs: Any) -> onnx.ModelProto:
    """Axes as a constant input from the opset that has it, else as the attribute."""
    input_from = 13 if op == "ReduceSum" else 18
    if axes is None:
        return single_op_model(op, {"x": x}, opset=opset, **attrs)
    if opset >= input_from:
        return single_op_model(op, {"x": x}, constants={"axes": np.array(axes, np.int64)}, opset=opset, **attrs)
    return single_op_model(op, {"x": x}, opset=opset, axes=axes, **attrs)


# ---------------------------------------------------------------- Reduce*

AXES_SETS = [[1], [3], [1, 2], [0, 2], [-1, -3], [0, 3], [0, 1, 2, 3]]


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("shape", [(2, 6, 3, 20), (3, 5, 2, 7)])
def test_reduce_any_axes_and_keepdims(op: str, shape: tuple[int, ...]) -> None:
    """Innermost axis kept (lanes across outputs) or reduced (along the run), middle and
    several axes; 20 and 7 exercise the 16-, 4- and 1-float steps."""
    x = reduce_input(op, *shape)
    rtol = 1e-3 if op == "ReduceProd" else 1e-4
    for index, axes in enumerate(AXES_SETS):  # keepdims changes the output shape only: alternate it
        assert_matches_ort(reduce_model(op, x, axes, keepdims=index % 2), {"x": x}, rtol=rtol)


@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce_empty_axes_noop_and_attribute_form(op: str) -> None:
    """No axes reduce everything; noop_with_empty_axes keeps the shape but still applies the
    per-element part; opset 13 (11 for ReduceSum) takes axes as an attribute."""
    x = reduce_input(op, 3, 4, 5)
    assert_matches_ort(reduce_model(op, x, None), {"x": x})
    assert_matches_ort(reduce_model(op, x, None, keepdims=0), {"x": x})
    assert_matches_ort(reduce_model(op, x, [], noop_with_empty_axes=1), {"x": x})
    assert_matches_ort(reduce_model(op, x, None, noop_with_empty_axes=1), {"x": x})
    attr_opset = 11 if op == "ReduceSum" else 13
    for axes in ([1], [0, 2], None):
        assert_matches_ort(reduce_model(op, x, axes, opset=attr_opset, keepdims=0), {"x": x})


def test_reduce_on_vectors_scalars_and_long_runs() -> None:
    for op in ("ReduceSum", "ReduceLogSumExp"):
        for shape in [(1,), (9,), (1, 1, 1), (2, 1, 3), (1000,), (3, 333)]:
            x = reduce_input(op, *shape)
            assert_matches_ort(reduce_model(op, x, None), {"x": x})
            assert_matches_ort(reduce_model(op, x, [-1], keepdims=0), {"x": x})


def test_reduce_log_sum_exp_is_stable() -> None:
    """exp(1000) overflows float32; subtracting the max first keeps it finite."""
    x = np.array([[1000.0, 999.0, 998.0, -5.0, 1000.0], [-1000.0, -999.0, -1001.0, -1000.0, -998.0]], np.float32)
    for axes in ([1], [0]):
        assert_matches_ort(reduce_model("ReduceLogSumExp", x, axes), {"x": x})
    wide = np.full((2, 40), 100.0, np.float32)
    assert_matches_ort(reduce_model("ReduceLogSumExp", wide, [1]), {"x": wide})


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_reduce_integers(op: str, dtype: type) -> None:
    x = rng.integers(-9, 10, (3, 4, 5)).astype(dtype)
    if op == "ReduceProd":
        x = rng.integers(-3, 4, (3, 4, 5)).astype(dtype)
    for axes in ([1], [0, 2], [2], []):
        for keepdims in (0, 1):
            assert_matches_ort(reduce_model(op, x, axes, keepdims=keepdims), {"x": x})


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
def test_reduce_bool_max_min(op: str) -> None:
    x = rng.random((3, 4, 5)) > 0.7
    for axes in ([1], [0, 2], []):
        assert_matches_ort(reduce_model(op, x, axes, opset=20), {"x": x})


@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce_over_an_empty_axis_and_an_empty_output(op: str) -> None:
    """Folding no elements gives each op's empty value (0, 1, -inf, inf; ONNX Runtime's
    ReduceMean gives 0); an empty output is nothing to do."""
    x = np.zeros((2, 0, 3), np.float32)
    assert_matches_ort(reduce_model(op, x, [1]), {"x": x})
    assert_matches_ort(reduce_model(op, x, [2], keepdims=0), {"x": x})
    if op in ("ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"):
        ints = np.zeros((2, 0, 3), np.int64)
        assert_matches_ort(reduce_model(op, ints, [1]), {"x": ints})


def runtime_axes_model(op: str, x: np.ndarray, axes_count: int, keepdims: int, **attrs: Any) -> onnx.ModelProto:
    """Axes fed at run time, `axes_count` of them; the output's type left for the compiler to find."""
    node = helper.make_node(op, ["x", "axes"], ["y"], keepdims=keepdims, **attrs)
    graph = helper.make_graph(
        [node], op,
        [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(x.dtype), x.shape),
         helper.make_tensor_value_info("axes", TensorProto.INT64, [axes_count])],
        [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(x.dtype), None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


# per number of axes: the sets one module is run with (negative, unsorted, the last axis alone)
RUN_TIME_AXES = {1: [[0], [1], [2], [-1], [-3]], 2: [[0, 2], [2, 0], [-1, 1], [0, 1]], 3: [[0, 1, 2], [2, -3, 1]]}


@pytest.mark.parametrize("keepdims", [1, 0])
@pytest.mark.parametrize("op", REDUCE_OPS)
def test_run_time_axes_serve_every_set_of_axes_from_one_module(op: str, keepdims: int) -> None:
    """Nothing bound: one module per number of axes, run with every set of that many, each output at its own
    shape, as ONNX Runtime computes it."""
    x = reduce_input(op, 2, 3, 5)
    for count, sets in RUN_TIME_AXES.items():
        model = runtime_axes_model(op, x, count, keepdims)
        module = WasmModel(convert_onnx(model).wasm)
        for axes in sets:
            feeds = {"x": x, "axes": np.array(axes, np.int64)}
            got, want = module.run(feeds)["y"], ort_run(model, feeds)[0]
            assert got.shape == want.shape, (axes, got.shape, want.shape)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"axes {axes}")


@pytest.mark.parametrize(("op", "dtype"), [("ReduceSum", np.int64), ("ReduceProd", np.int32),
                                           ("ReduceMax", np.int64), ("ReduceMin", np.int32)])
def test_run_time_axes_over_integers(op: str, dtype: type) -> None:
    x = rng.integers(-9, 9, (3, 4, 2)).astype(dtype)
    for keepdims in (1, 0):
        model = runtime_axes_model(op, x, 1, keepdims)
        module = WasmModel(convert_onnx(model).wasm)
        for axis in (0, -2, 2):
            feeds = {"x": x, "axes": np.array([axis], np.int64)}
            got, want = module.run(feeds)["y"], ort_run(model, feeds)[0]
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("noop", [0, 1])
@pytest.mark.parametrize("keepdims", [1, 0])
def test_an_empty_run_time_axes_input_reduces_all_or_nothing(keepdims: int, noop: int) -> None:
    """An axes input of length 0 is always empty: every axis, or none with noop_with_empty_axes (the squares of
    ReduceSumSquare still taken), as ONNX Runtime does."""
    x = rand(2, 3, 4)
    model = runtime_axes_model("ReduceSumSquare", x, 0, keepdims, noop_with_empty_axes=noop)
    feeds = {"x": x, "axes": np.zeros(0, np.int64)}
    got, want = wasm_run(model, feeds)[0], ort_run(model, feeds)[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_run_time_axes_over_an_empty_axis_give_the_empty_reduction() -> None:
    """Reducing a 0-length axis: 0 for a sum, 0 for a mean (ONNX Runtime's), -inf for a max; the other axis
    reduced instead leaves the output empty."""
    x = np.zeros((3, 0, 2), np.float32)
    for op in ("ReduceSum", "ReduceMean", "ReduceMax"):
        model = runtime_axes_model(op, x, 1, 1)
        module = WasmModel(convert_onnx(model).wasm)
        for axis in (1, 0):
            feeds = {"x": x, "axes": np.array([axis], np.int64)}
            got, want = module.run(feeds)["y"], ort_run(model, feeds)[0]
            assert got.shape == want.shape, (op, axis)
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("axes", [[3], [-4], [1, 1], [0, -3]], ids=["past", "before", "twice", "twice-negative"])
def test_run_time_axes_out_of_range_or_repeated_trap_the_run(axes: list[int]) -> None:
    x = rand(2, 3, 4)
    module = WasmModel(convert_onnx(runtime_axes_model("ReduceSum", x, len(axes), 1)).wasm)
    with pytest.raises(Exception, match=r"unreachable|trap"):
        module.run({"x": x, "axes": np.array(axes, np.int64)})


def test_what_follows_run_time_axes_runs_at_the_run_s_shape() -> None:
    """A Relu after the reduction follows its dims; a broadcast against it (the dim may be 1 or not) is
    refused by name."""
    x = rand(2, 3, 4)
    follow = helper.make_node("Relu", ["m"], ["y"])
    graph = helper.make_graph([helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0), follow], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape),
                               helper.make_tensor_value_info("axes", TensorProto.INT64, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    module = WasmModel(convert_onnx(model).wasm)
    for axis in (0, 1, 2):
        feeds = {"x": x, "axes": np.array([axis], np.int64)}
        np.testing.assert_allclose(module.run(feeds)["y"], ort_run(model, feeds)[0], rtol=1e-5, atol=1e-6)
    model.graph.node[1].CopyFrom(helper.make_node("Sub", ["x", "m"], ["y"], name="Sub_1"))
    model.graph.node[0].attribute[0].i = 1  # keepdims
    with pytest.raises(UnsupportedModel, match=r"node 'Sub_1'|\(Sub\)"):
        convert_onnx(model)


def test_an_output_declared_at_one_run_s_shape_follows_run_time_axes() -> None:
    """ReduceL2 as its function body (Mul, ReduceSum over run-time axes, Sqrt), its output declared [3, 2, 1] as
    the backend suite's case declares it: the declaration is one example's shape, not every run's, so one module
    returns each set of axes at its own shape (it was refused: the declared dims disagreed with the extent
    rules)."""
    x = rand(3, 2, 2)
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"]),
             helper.make_node("ReduceSum", ["sq", "axes"], ["s"], keepdims=1),
             helper.make_node("Sqrt", ["s"], ["y"])]
    graph = helper.make_graph(nodes, "l2", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape),
                                            helper.make_tensor_value_info("axes", TensorProto.INT64, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    module = WasmModel(convert_onnx(model).wasm)
    for axis in (2, 0, -2):
        feeds = {"x": x, "axes": np.array([axis], np.int64)}
        got, want = module.run(feeds)["y"], ReferenceEvaluator(model).run(None, feeds)[0]
        assert got.shape == want.shape, (axis, got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_the_backend_binds_no_run_time_axes() -> None:
    """The ONNX backend compiles the model as it is: one module for every set of axes, nothing bound."""
    x = reduce_input("ReduceL1", 3, 4, 1, 5)
    model = runtime_axes_model("ReduceL1", x, 2, keepdims=0)
    rep = WasinferBackend.prepare(model)
    for axes in ([1, 2], [0, 3], [-1, 0]):
        feeds = {"x": x, "axes": np.array(axes, np.int64)}
        (got,) = rep.run(feeds)
        np.testing.assert_allclose(got, ort_run(model, feeds)[0], rtol=1e-5, atol=1e-6)
    assert rep.bound == set() and len(rep.modules) == 1


def test_reduce_refuses_what_it_cannot_compute() -> None:
    x = rand(3, 4, 4)
    with pytest.raises(UnsupportedModel, match="float64 is not supported"):
        convert_onnx(reduce_model("ReduceMean", x.astype(np.float64), [1]))
    with pytest.raises(UnsupportedModel, match="int32 is not supported"):
        convert_onnx(reduce_model("ReduceL2", x.astype(np.int32), [1]))


# ---------------------------------------------------------------- LayerNormalization / InstanceNormalization

def layernorm_model(x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None, outputs: int = 1,
                    **attrs: Any) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    inputs = {"x": x, "scale": scale} | ({"bias": bias} if bias is not None else {})
    return single_op_model("LayerNormalization", inputs, output_count=outputs, opset=17, **attrs), inputs


@pytest.mark.parametrize("shape", [(2, 3, 20), (4, 37), (2, 3, 2, 5)])
@pytest.mark.parametrize("axis", [-1, -2, 1])
def test_layernorm_axis_scale_bias_and_statistics(shape: tuple[int, ...], axis: int) -> None:
    """Scale per element of a line, per last axis only (broadcast within the line), or one
    value; bias or none; Mean and InvStdDev outputs."""
    x = rand(*shape) * np.float32(3) + np.float32(2)
    normalized = shape[axis:]
    for scale_shape, bias in ((normalized, rand(*normalized)), (normalized[-1:], None),
                              ((1,), rand(*normalized[-1:])), (normalized, rand(1))):
        model, feeds = layernorm_model(x, rand(*scale_shape), bias, outputs=3, axis=axis, epsilon=1e-3)
        assert_matches_ort(model, feeds)


def test_layernorm_default_axis_and_a_large_mean() -> None:
    """The variance is computed from deviations, so a mean far from zero costs no precision."""
    x = rand(3, 64) + np.float32(1000.0)
    model, feeds = layernorm_model(x, rand(64), rand(64))
    assert_matches_ort(model, feeds, rtol=1e-3, atol=1e-3)
    model, feeds = layernorm_model(x[:, :5], rand(5), None, outputs=2)
    assert_matches_ort(model, feeds, rtol=1e-3, atol=1e-3)


def test_layernorm_refuses_other_stash_types_and_dtypes() -> None:
    x = rand(2, 8)
    with pytest.raises(UnsupportedModel, match="stash_type=0"):
        convert_onnx(layernorm_model(x, rand(8), None, stash_type=0)[0])
    with pytest.raises(UnsupportedModel, match="only float32"):
        convert_onnx(layernorm_model(x.astype(np.float64), rand(8).astype(np.float64), None)[0])


@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 4, 6, 7), (2, 2, 1), (1, 3, 2, 2, 9)])
def test_instancenorm(shape: tuple[int, ...]) -> None:
    x = rand(*shape) * np.float32(2) - np.float32(1)
    inputs = {"x": x, "scale": rand(shape[1]), "bias": rand(shape[1])}
    for attrs in ({}, {"epsilon": 1e-2}):
        assert_matches_ort(single_op_model("InstanceNormalization", inputs, opset=13, **attrs), inputs)


# ---------------------------------------------------------------- CumSum

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("shape", [(9,), (3, 9), (2, 5, 6)])
def test_cumsum_axes_exclusive_reverse(dtype: type, shape: tuple[int, ...]) -> None:
    """Sums in order, so float results match exactly; inner sizes of 6 and 30 take 4-lane
    steps and a tail."""
    x = (rand(*shape) * 10).astype(dtype)
    for axis in (*range(len(shape)), -1):
        for exclusive, reverse in ((0, 0), (1, 1)) if axis != 0 else ((0, 0), (1, 0), (0, 1), (1, 1)):
            model = single_op_model("CumSum", {"x": x}, constants={"axis": np.array(axis, np.int32)},
                                    opset=14, exclusive=exclusive, reverse=reverse)
            assert_matches_ort(model, {"x": x}, rtol=1e-6, atol=1e-6)


def runtime_axis_scan(op: str, shape: tuple[int, ...], axis_type: int = TensorProto.INT64) -> onnx.ModelProto:
    node = helper.make_node(op, ["x", "axis"], ["y"])
    graph = helper.make_graph([node], "scan", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape),
                                               helper.make_tensor_value_info("axis", axis_type, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 26 if op == "CumProd" else 14)])


@pytest.mark.parametrize("op", ["CumSum", "CumProd"])
def test_a_scan_axis_computed_at_run_time_is_read_by_the_run(op: str) -> None:
    """One module serves every axis (a scan per axis, the run takes its own); negative axes count from
    the end; an axis outside [-rank, rank) traps."""
    x = rand(3, 4, 5)
    model = runtime_axis_scan(op, (3, 4, 5))
    module = WasmModel(convert_onnx(model).wasm)
    for axis in (0, 1, 2, -1, -3):
        feeds = {"x": x, "axis": np.array(axis, np.int64)}
        np.testing.assert_allclose(module.run(feeds)["y"], ort_run(model, feeds)[0], rtol=1e-6, atol=1e-6)
    for bad in (3, -4):
        with pytest.raises(Exception, match=r"unreachable|trap"):
            module.run({"x": x, "axis": np.array(bad, np.int64)})
    vector = runtime_axis_scan(op, (7,), TensorProto.INT32)
    assert_matches_ort(vector, {"x": rand(7), "axis": np.array(0, np.int32)})


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("shape", [(9,), (3, 9), (2, 5, 6)])
def test_cumprod_axes_exclusive_reverse(dtype: type, shape: tuple[int, ...]) -> None:
    """Multiplies in order from one (exclusive starts with it), four lines per step where the axis is
    not innermost; values near ±1 keep the products finite."""
    x = (rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2, shape)).astype(np.float32)
    x = np.round(x * 2).astype(dtype) if np.issubdtype(dtype, np.integer) else x.astype(dtype)
    for axis in (*range(len(shape)), -1):
        for exclusive, reverse in ((0, 0), (1, 0), (0, 1), (1, 1)):
            model = single_op_model("CumProd", {"x": x}, constants={"axis": np.array(axis, np.int64)},
                                    opset=26, exclusive=exclusive, reverse=reverse)
            assert_matches_ort(model, {"x": x}, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- Hardmax

@pytest.mark.parametrize("shape,axis,opset", [((5,), -1, 13), ((3, 7), 1, 13), ((3, 7), 0, 13),
                                              ((2, 3, 5), 1, 13), ((2, 3, 5), 1, 11), ((2, 3, 5), 0, 11),
                                              ((4, 1, 6), -1, 13)])
def test_hardmax_marks_the_first_largest(shape: tuple[int, ...], axis: int, opset: int) -> None:
    """Ties (values rounded to a few levels) mark the first; before opset 13 the axes from `axis` on
    are one line."""
    x = np.round(rand(*shape) * 2) / 2
    assert_matches_ort(single_op_model("Hardmax", {"x": x}, opset=opset, axis=axis), {"x": x}, rtol=0, atol=0)


def test_hardmax_never_marks_nan() -> None:
    """ONNX leaves NaN unspecified, and ONNX Runtime's answer depends on where the NaN sits (Eigen's
    maxCoeff); here a NaN is never the largest, and a line that starts with one stays zeros."""
    x = np.array([[0.5, np.nan, -1.0, 1.5], [np.nan, 2.0, 3.0, 1.0], [1.0, 2.0, np.nan, 2.0]], np.float32)
    got = wasm_run(single_op_model("Hardmax", {"x": x}, opset=13), {"x": x})[0]
    np.testing.assert_array_equal(got, [[0, 0, 0, 1], [0, 0, 0, 0], [0, 1, 0, 0]])


# ---------------------------------------------------------------- TopK

def topk_model(x: np.ndarray, k: int, opset: int = 11, **attrs: Any) -> onnx.ModelProto:
    return single_op_model("TopK", {"x": x}, output_count=2, constants={"k": np.array([k], np.int64)},
                           opset=opset, **attrs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("largest", [0, 1])
def test_topk_ties_keep_the_lower_index_first(dtype: type, largest: int) -> None:
    """Few distinct values, so most picks are ties; every axis and k from 1 to the whole axis."""
    x = rng.integers(0, 4, (3, 6, 5)).astype(dtype)
    for axis in (0, 1, 2, -1):
        for k in sorted({1, 2, x.shape[axis]}):
            assert_matches_ort(topk_model(x, k, axis=axis, largest=largest), {"x": x}, rtol=0, atol=0)


def test_topk_random_floats_default_axis_and_nan() -> None:
    x = rand(4, 50)
    for k in (1, 7, 50):
        assert_matches_ort(topk_model(x, k), {"x": x}, rtol=0, atol=0)
        assert_matches_ort(topk_model(x, k, largest=0), {"x": x}, rtol=0, atol=0)
    assert_matches_ort(topk_model(x, 5, opset=10), {"x": x}, rtol=0, atol=0)
    nan = np.array([[1.0, np.nan, 3.0, -1.0, np.nan, 2.0, np.inf]], np.float32)
    for largest in (0, 1):  # NaN ranks above every number, as ONNX Runtime has it
        for k in (3, 7):
            model = topk_model(nan, k, largest=largest)
            want, got = ort_run(model, {"x": nan}), wasm_run(model, {"x": nan})
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


def test_topk_unsorted_returns_the_same_elements() -> None:
    """sorted=0 leaves the order open; the elements (value, index pairs) must be the same."""
    x = rand(3, 20)
    model = topk_model(x, 6, sorted=0)
    want, got = ort_run(model, {"x": x}), wasm_run(model, {"x": x})
    for row in range(3):
        assert sorted(zip(got[1][row], got[0][row], strict=True)) == sorted(zip(want[1][row], want[0][row],
                                                                                strict=True))


@pytest.mark.parametrize("largest", [0, 1])
def test_topk_unsigned_compares_unsigned(largest: int) -> None:
    """ONNX Runtime has no uint64 TopK; ONNX's reference evaluator (as in the conformance
    suite) judges, with values above 2**63 that a signed comparison would put last."""
    x = np.array([[3, 2**63 + 5, 0, 2**64 - 1, 3, 7], [1, 1, 2**63, 0, 2**63, 5]], np.uint64)
    model = topk_model(x, 4, largest=largest)
    want = ReferenceEvaluator(model).run(None, {"x": x})
    got = wasm_run(model, {"x": x})
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_topk_refuses_unsupported_dtypes() -> None:
    with pytest.raises(UnsupportedModel, match="int8 is not supported"):
        convert_onnx(topk_model(rng.integers(0, 9, (2, 5)).astype(np.int8), 2))


# ---------------------------------------------------------------- Range

def test_range_with_constant_inputs_folds() -> None:
    consts = {"start": np.array(1.0, np.float32), "limit": np.array(9.5, np.float32),
              "delta": np.array(1.5, np.float32)}
    nodes = [helper.make_node("Range", ["start", "limit", "delta"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"])]
    graph = helper.make_graph(nodes, "r", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [6])],
                              [onnx.numpy_helper.from_array(v, n) for n, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = rand(6)
    assert_matches_ort(model, {"x": x})


def test_range_with_runtime_inputs_is_refused_with_a_hint() -> None:
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, []) for n in ("start", "limit", "delta")]
    node = helper.make_node("Range", ["start", "limit", "delta"], ["y"])
    graph = helper.make_graph([node], "r", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    with pytest.raises(UnsupportedModel, match="evaluated at compile time when start, limit and delta"):
        convert_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
