"""Trilu, EyeLike, OneHot and ReverseSequence (emitters/patterns.py) against ONNX Runtime, and against
onnx's reference implementation for the type combinations ONNX Runtime has no kernel for (its OneHot
and EyeLike take a few): every whole-byte dtype they move, odd shapes, each k from below the matrix
to past it, and the refusals."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from tests.parity import assert_matches_ort, graph_model, ort_run, single_op_model, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm.compiler import UnsupportedModel
from wasinfer.runtime import WasmModel
from wasinfer.runtime.base import InputError

rng = np.random.default_rng(18)
DTYPES = [np.float32, np.int64, np.int32, np.uint8, np.int16, np.float64, np.bool_]


def assert_matches_reference(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
    """Exactly what onnx's reference implementation computes, dtype included."""
    (want,) = ReferenceEvaluator(model).run(None, feeds)
    got = wasm_run(model, feeds)[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def sample(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if dtype is np.bool_:
        return rng.random(shape) < 0.5
    return (rng.standard_normal(shape) * 20).astype(dtype)


# ---------------------------------------------------------------- Trilu

@pytest.mark.parametrize("shape", [(5, 7), (7, 5), (2, 3, 4, 4), (1, 1), (3, 1, 9)])
@pytest.mark.parametrize("upper", [0, 1])
def test_trilu_every_k_matches_ort(shape: tuple[int, ...], upper: int) -> None:
    x = sample(shape, np.float32)
    for k in (-10, -3, -1, 0, 1, 2, 6, 12):
        model = single_op_model("Trilu", {"x": x}, constants={"k": np.array(k, np.int64)}, opset=14, upper=upper)
        assert_matches_ort(model, {"x": x}, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_trilu_dtypes_and_default_k(dtype: type) -> None:
    x = sample((3, 6, 5), dtype)
    for upper in (0, 1):
        model = single_op_model("Trilu", {"x": x}, opset=14, upper=upper)
        got = wasm_run(model, {"x": x})[0]
        np.testing.assert_array_equal(got, np.triu(x) if upper else np.tril(x))
        if dtype in (np.float32, np.float64, np.int64, np.bool_):  # the dtypes ONNX Runtime's Trilu has
            assert_matches_ort(model, {"x": x}, rtol=0, atol=0)


def test_a_causal_mask_of_a_long_sequence_costs_no_mask_in_the_module() -> None:
    """A 1024 x 1024 causal mask: each row is one copy and one fill, so the module holds no 1 MiB mask."""
    x = np.ones((1024, 1024), np.float32)
    model = single_op_model("Trilu", {"x": x}, opset=14, upper=0)
    wasm = convert_onnx(model).wasm
    assert len(wasm) < 64 * 1024
    np.testing.assert_array_equal(WasmModel(wasm).run({"x": x})["y0"], np.tril(x))


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("shape", [(5, 7), (2, 7, 5)])
def test_trilu_with_a_run_time_k_serves_every_k_from_one_module(shape: tuple[int, ...], upper: int) -> None:
    """k a graph input: one module, read by each run, k from far below the matrix to far past it (int64's ends)."""
    x = sample(shape, np.float32)
    model = single_op_model("Trilu", {"x": x, "k": np.array(0, np.int64)}, opset=14, upper=upper)
    module = WasmModel(convert_onnx(model).wasm)
    for k in (-2**63, -9, -6, -5, -1, 0, 1, 3, 6, 7, 8, 2**63 - 1):
        feeds = {"x": x, "k": np.array(k, np.int64)}
        np.testing.assert_array_equal(module.run(feeds)["y0"], ort_run(model, feeds)[0], err_msg=f"k={k}")


# ---------------------------------------------------------------- EyeLike

@pytest.mark.parametrize("shape", [(4, 4), (3, 7), (7, 3), (1, 1)])
@pytest.mark.parametrize("k", [-8, -2, 0, 1, 5])
def test_eye_like_matches_ort(shape: tuple[int, int], k: int) -> None:
    x = sample(shape, np.float32)
    model = single_op_model("EyeLike", {"x": x}, k=k)
    got = wasm_run(model, {"x": x})[0]
    np.testing.assert_array_equal(got, np.eye(*shape, k=k, dtype=np.float32))
    assert_matches_reference(model, {"x": x})


@pytest.mark.parametrize("dtype,tensor_type", [(np.int32, TensorProto.INT64), (np.float32, TensorProto.DOUBLE),
                                               (np.int64, TensorProto.INT32), (np.float32, TensorProto.UINT8),
                                               (np.int32, TensorProto.FLOAT)])
def test_eye_like_output_dtypes(dtype: type, tensor_type: int) -> None:
    x = sample((5, 6), dtype)
    model = single_op_model("EyeLike", {"x": x}, k=1, dtype=tensor_type)
    got = wasm_run(model, {"x": x})[0]
    assert got.dtype == helper.tensor_dtype_to_np_dtype(tensor_type)
    np.testing.assert_array_equal(got, np.eye(5, 6, k=1))
    assert_matches_reference(model, {"x": x})


# ---------------------------------------------------------------- OneHot

@pytest.mark.parametrize("index_dtype", [np.int64, np.int32, np.float32])
@pytest.mark.parametrize("shape,axis", [((5,), -1), ((3, 4), 1), ((3, 4), 0), ((2, 3, 5), -2), ((7,), 0)])
def test_one_hot_matches_ort(index_dtype: type, shape: tuple[int, ...], axis: int) -> None:
    depth = 6
    indices = rng.integers(-depth, depth, shape).astype(index_dtype)
    indices.reshape(-1)[0] = depth + 3  # outside [-depth, depth): off everywhere
    model = single_op_model("OneHot", {"indices": indices},
                            constants={"depth": np.array(depth, np.int64), "values": np.array([-1.5, 4], np.float32)},
                            opset=11, axis=axis)
    assert_matches_reference(model, {"indices": indices})
    if index_dtype is np.int64:  # the combination ONNX Runtime has (int64 indices, float depth and values)
        model = single_op_model("OneHot", {"indices": indices}, constants={
            "depth": np.array(depth, np.float32), "values": np.array([-1.5, 4], np.float32)}, opset=11, axis=axis)
        assert_matches_ort(model, {"indices": indices}, rtol=0, atol=0)


@pytest.mark.parametrize("value_dtype", [np.int64, np.int32, np.uint8, np.float64, np.int8])
def test_one_hot_value_dtypes(value_dtype: type) -> None:
    indices = np.array([[0, 2], [-1, 1]], np.int64)
    values = np.array([0, 1], value_dtype)
    model = single_op_model("OneHot", {"indices": indices},
                            constants={"depth": np.array(3.0, np.float32), "values": values}, opset=11)
    assert_matches_reference(model, {"indices": indices})


def test_one_hot_values_computed_at_run_time() -> None:
    indices = np.array([[1, -3], [5, 0]], np.int64)
    values = np.array([2.5, -7], np.float32)
    node = helper.make_node("OneHot", ["indices", "depth", "values"], ["y"], axis=1)
    model = graph_model([node], {"indices": indices, "values": values}, ["y"], {"depth": np.array(4, np.int64)}, 11)
    assert_matches_reference(model, {"indices": indices, "values": values})


def test_one_hot_with_a_run_time_depth_is_declined_by_name() -> None:
    """Even where the model declares the output's shape, a depth fed at run time is refused naming it."""
    graph = helper.make_graph(
        [helper.make_node("OneHot", ["indices", "depth", "values"], ["y"])], "one_hot",
        [helper.make_tensor_value_info("indices", TensorProto.INT64, [2]),
         helper.make_tensor_value_info("depth", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [onnx.numpy_helper.from_array(np.array([0, 1], np.float32), "values")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    with pytest.raises(UnsupportedModel, match=r"depth is computed at run time.*--input-values"):
        convert_onnx(model)


def run_time_depth_model(axis: int, depth_type: int, shape: list[int]) -> onnx.ModelProto:
    """OneHot whose depth is a graph input (a float, as ONNX's cases feed it, or an int64); the output's shape
    left to the compiler."""
    graph = helper.make_graph(
        [helper.make_node("OneHot", ["indices", "depth", "values"], ["y"], axis=axis)], "one_hot",
        [helper.make_tensor_value_info("indices", TensorProto.INT64, shape),
         helper.make_tensor_value_info("depth", depth_type, []),
         helper.make_tensor_value_info("values", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])


@pytest.mark.parametrize("depth_type", [TensorProto.FLOAT, TensorProto.INT64])
@pytest.mark.parametrize("shape,axis", [([5], -1), ([3, 4], 1), ([3, 4], 0), ([2, 3, 2], -2)])
def test_one_hot_with_a_declared_run_time_depth_serves_every_depth(depth_type: int, shape: list[int],
                                                                   axis: int) -> None:
    """One module (depth declared 1..12) at depths 1, 3, 7.9 (truncated to 7, as the spec casts it) and 12,
    negative and out-of-range indices included: a float depth against ONNX Runtime (the reference evaluator takes
    np.arange(7.9), 8 classes), an int64 one against the reference (ORT has no such kernel)."""
    model = run_time_depth_model(axis, depth_type, shape)
    module = WasmModel(convert_onnx(model, input_values={"depth": (1, 12)}).wasm)
    dtype = helper.tensor_dtype_to_np_dtype(depth_type)
    for depth in (3, 1, 7.9 if depth_type == TensorProto.FLOAT else 7, 12):
        indices = rng.integers(-14, 14, shape).astype(np.int64)
        feeds = {"indices": indices, "depth": np.array(depth, dtype), "values": np.array([-1.5, 4], np.float32)}
        want = (ort_run(model, feeds) if depth_type == TensorProto.FLOAT else
                ReferenceEvaluator(model).run(None, feeds))[0]
        got = module.run(feeds)["y"]
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_one_hot_depth_outside_its_declared_range_is_refused_naming_the_input() -> None:
    module = WasmModel(convert_onnx(run_time_depth_model(-1, TensorProto.FLOAT, [3]),
                                    input_values={"depth": (1, 12)}).wasm)
    feeds = {"indices": np.array([0, 1, 2], np.int64), "values": np.array([0, 1], np.float32)}
    with pytest.raises(InputError, match=r"input 'depth': its values must lie in 1..12"):
        module.run({**feeds, "depth": np.array(13, np.float32)})


# ---------------------------------------------------------------- ReverseSequence

@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8, np.int16])
@pytest.mark.parametrize("batch_axis,shape", [(1, (6, 4)), (0, (4, 6)), (1, (5, 3, 7)), (0, (3, 5, 2, 3))])
def test_reverse_sequence_matches_ort(dtype: type, batch_axis: int, shape: tuple[int, ...]) -> None:
    x = sample(shape, dtype)
    steps, batch = shape[1 - batch_axis], shape[batch_axis]
    lens = rng.integers(0, steps + 1, batch).astype(np.int64)
    lens[0] = steps
    model = single_op_model("ReverseSequence", {"x": x, "lens": lens}, opset=10,
                            batch_axis=batch_axis, time_axis=1 - batch_axis)
    assert_matches_ort(model, {"x": x, "lens": lens}, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [7, -1])
def test_reverse_sequence_traps_on_a_length_outside_the_time_axis(bad: int) -> None:
    x = sample((6, 2), np.float32)
    lens = np.array([2, bad], np.int64)
    model = single_op_model("ReverseSequence", {"x": x, "lens": lens}, opset=10)
    with pytest.raises(Exception, match=r"unreachable|trap"):
        wasm_run(model, {"x": x, "lens": lens})




def test_a_causal_mask_per_sample_of_a_run_time_batch() -> None:
    """Scores (N, 5, 5) → Trilu(lower) → Softmax: the batch leads, the triangle is per sample."""
    nodes = [helper.make_node("Trilu", ["scores"], ["masked"], upper=0),
             helper.make_node("Softmax", ["masked"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "causal", [helper.make_tensor_value_info("scores", TensorProto.FLOAT,
                                                                              ["N", 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, 5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    scores = sample((4, 5, 5), np.float32) / 10
    assert_matches_ort(model, {"scores": scores}, max_batch=4, rtol=1e-5, atol=1e-6)
