"""Softmax, LogSoftmax, ArgMax, ArgMin, Cast and CastLike against ONNX Runtime."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.parity import assert_matches_ort, single_op_model
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm.compiler import UnsupportedModel

rng = np.random.default_rng(5)


def rand(*shape: int) -> np.ndarray:
    return np.asarray(rng.standard_normal(shape) * 4, np.float32)


# ---------------------------------------------------------------- Softmax / LogSoftmax

SHAPES = [(5,), (2, 3), (3, 9), (2, 3, 7), (2, 8, 4), (2, 5, 6, 3), (1, 17, 2, 9)]


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset", [9, 11, 13, 21])
@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_every_axis_and_both_semantics(op: str, opset: int, shape: tuple[int, ...]) -> None:
    """Opset < 13 coerces to 2-D at `axis` (default 1); from 13 one axis (default -1).
    Every axis of every shape, so the reduced axis is innermost or not, with inner sizes
    that are multiples of 4 and not."""
    x = rand(*shape)
    rank = len(shape)
    lowest = 0 if opset < 11 else -rank
    axes: list[int | None] = [None, *range(lowest, rank)]
    if opset < 13 and rank == 1:
        axes.remove(None)  # the default axis 1 is out of range for a vector
    for axis in axes:
        attrs: dict[str, Any] = {} if axis is None else {"axis": axis}
        assert_matches_ort(single_op_model(op, {"x": x}, opset=opset, **attrs), {"x": x})


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_is_stable_for_large_and_infinite_logits(op: str) -> None:
    x = np.array([[1000.0, 999.0, -1000.0, 0.0, 5.0, 88.0, -88.0],
                  [-np.inf, 1.0, 2.0, -np.inf, 0.0, 0.0, 3.0]], np.float32)
    assert_matches_ort(single_op_model(op, {"x": x}), {"x": x})
    assert_matches_ort(single_op_model(op, {"x": x}, axis=0), {"x": x})


def test_softmax_of_a_wide_row_after_a_kernel() -> None:
    x = rand(3, 1000)
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Softmax", ["r"], ["y"])]
    graph = helper.make_graph(nodes, "s", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 1000])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 1000])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert_matches_ort(model, {"x": x})


def test_softmax_refuses_float64() -> None:
    x = rand(2, 3).astype(np.float64)
    with pytest.raises(UnsupportedModel, match="only float32"):
        convert_onnx(single_op_model("Softmax", {"x": x}))


# ---------------------------------------------------------------- ArgMax / ArgMin

@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1, -3])
@pytest.mark.parametrize("keepdims", [None, 0, 1])
@pytest.mark.parametrize("opset", [11, 12, 13])
def test_argmax_argmin_axis_keepdims(op: str, axis: int | None, keepdims: int | None, opset: int) -> None:
    x = rand(3, 4, 5)
    attrs: dict[str, Any] = {k: v for k, v in (("axis", axis), ("keepdims", keepdims)) if v is not None}
    assert_matches_ort(single_op_model(op, {"x": x}, opset=opset, **attrs), {"x": x})


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("last", [None, 0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.int8, np.uint8])
def test_argmax_argmin_ties_and_dtypes(op: str, last: int | None, dtype: type) -> None:
    """Few distinct values, so select_last_index decides many results."""
    low = -2 if np.dtype(dtype).kind != "u" else 0
    x: np.ndarray = np.asarray(rng.integers(low, low + 3, (4, 6, 5)), dtype)
    if np.dtype(dtype) == np.uint8:
        x[0, 0, :] = 255  # values above 127 compare as unsigned
    attrs: dict[str, Any] = {} if last is None else {"select_last_index": last}
    for axis in (0, 1, 2):
        assert_matches_ort(single_op_model(op, {"x": x}, axis=axis, **attrs), {"x": x})


def test_argmax_of_a_vector_and_an_unsupported_dtype() -> None:
    x = rand(11)
    assert_matches_ort(single_op_model("ArgMax", {"x": x}, keepdims=0), {"x": x})
    h = rand(2, 3).astype(np.float16)
    with pytest.raises(UnsupportedModel, match="float16 is not supported"):
        convert_onnx(single_op_model("ArgMax", {"x": h}))


# ---------------------------------------------------------------- Cast / CastLike

CAST_TYPES = {np.bool_: TensorProto.BOOL, np.int8: TensorProto.INT8, np.uint8: TensorProto.UINT8,
              np.int16: TensorProto.INT16, np.uint16: TensorProto.UINT16, np.int32: TensorProto.INT32,
              np.uint32: TensorProto.UINT32, np.int64: TensorProto.INT64, np.uint64: TensorProto.UINT64,
              np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}


def cast_input(dtype: type, target: type) -> np.ndarray:
    """Values that every target holds: ONNX leaves out-of-range float → int undefined.
    Floats have fractions of both signs (truncation toward zero) and exact zeros (→ false)."""
    shape = (3, 7)
    if np.dtype(dtype) == np.bool_:
        return rng.random(shape) > 0.5
    info = np.iinfo(target) if np.dtype(target).kind in "iu" else None
    low = max(info.min, -100) if info is not None else -100
    high = min(info.max, 100) if info is not None else 100
    if np.dtype(dtype).kind in "iu":
        low, high = max(low, np.iinfo(dtype).min), min(high, np.iinfo(dtype).max)
        return rng.integers(low, high + 1, shape).astype(dtype)
    x = rng.uniform(low, high, shape)
    x[0, :3] = (0.0, -0.0, 0.5 if low >= 0 else -0.5)
    return x.astype(dtype)


@pytest.mark.parametrize("src", list(CAST_TYPES), ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("dst", list(CAST_TYPES), ids=lambda t: np.dtype(t).name)
def test_cast_between_every_supported_pair(src: type, dst: type) -> None:
    x = cast_input(src, dst)
    assert_matches_ort(single_op_model("Cast", {"x": x}, to=CAST_TYPES[dst]), {"x": x})


@pytest.mark.parametrize("opset", [9, 13, 19, 21])
def test_cast_wraps_narrowing_integers_and_keeps_big_values(opset: int) -> None:
    big = np.array([300, -129, 2**40 + 7, -(2**33) - 1, 65537, 2**62 + 2**39, 0, -1], np.int64)
    for to in (TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.INT32, TensorProto.FLOAT,
               TensorProto.DOUBLE, TensorProto.UINT64, TensorProto.BOOL):
        attrs: dict[str, Any] = {"saturate": 1} if opset >= 19 else {}  # saturate concerns float8 only
        assert_matches_ort(single_op_model("Cast", {"x": big}, opset=opset, to=to, **attrs), {"x": big})


@pytest.mark.parametrize("count", [1, 4, 7, 16, 33, 50])
@pytest.mark.parametrize("src,dst", [(np.float32, np.int32), (np.int32, np.float32), (np.int32, np.int64),
                                     (np.uint8, np.float32), (np.bool_, np.float32), (np.int8, np.float32)])
def test_cast_vectorised_pairs_with_tails(count: int, src: type, dst: type) -> None:
    """These pairs go a v128 at a time; lengths around the step exercise the scalar tail."""
    if np.dtype(src) == np.bool_:
        x = rng.random(count) > 0.5
    elif np.dtype(src).kind == "f":
        x = rand(count) * 1000
    else:
        info = np.iinfo(src)
        x = rng.integers(info.min, int(info.max) + 1, count).astype(src)
    assert_matches_ort(single_op_model("Cast", {"x": x}, to=CAST_TYPES[dst]), {"x": x})


def test_cast_float_to_bool_nan_and_infinities_are_true() -> None:
    x = np.array([np.nan, 0.0, -0.0, 1e-40, -2.5, np.inf, -np.inf], np.float32)
    assert_matches_ort(single_op_model("Cast", {"x": x}, to=TensorProto.BOOL), {"x": x})
    assert_matches_ort(single_op_model("Cast", {"x": x.astype(np.float64)}, to=TensorProto.BOOL),
                       {"x": x.astype(np.float64)})


@pytest.mark.parametrize("opset", [15, 19, 21])
@pytest.mark.parametrize("like", [np.int64, np.float64, np.uint8, np.bool_])
def test_castlike_takes_the_type_of_its_second_input(opset: int, like: type) -> None:
    x = cast_input(np.float32, like)
    model = single_op_model("CastLike", {"x": x}, constants={"like": np.zeros(1, like)}, opset=opset)
    assert_matches_ort(model, {"x": x})


@pytest.mark.parametrize("to,message", [(TensorProto.STRING, "string is not supported"),
                                        (TensorProto.COMPLEX64, "complex64 is not supported")])
def test_cast_to_unsupported_types_is_a_clear_problem(to: int, message: str) -> None:
    """The narrow types are tests/backends/wasm/test_narrow_casts.py's; strings and complex are refused."""
    x = rand(2, 3)
    with pytest.raises(UnsupportedModel, match=message):
        convert_onnx(single_op_model("Cast", {"x": x}, opset=24, to=to))
