"""QuantizeLinear and DequantizeLinear against ONNX Runtime: per tensor, per axis, blocked;
every integer type; ties rounding to even; saturation; scale and zero point as constants or
run-time inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.parity import assert_matches_ort, single_op_model
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm.compiler import UnsupportedModel

rng = np.random.default_rng(3)
INT_TYPES = [np.uint8, np.int8, np.uint16, np.int16]


def zero_point(dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -100), min(info.max, 100), size=shape, endpoint=True).astype(dtype)


def quantize_input(shape: tuple[int, ...]) -> np.ndarray:
    """Values with exact .5 ties after division by 0.5 and 2, and far out of range."""
    x = rng.standard_normal(shape).astype(np.float32) * 300
    flat = x.reshape(-1)
    flat[: min(8, flat.size)] = np.array([0.25, 0.75, -0.25, -1.25, 1e6, -1e6, 2.5, 3.0], np.float32)[: flat.size]
    return x


@pytest.mark.parametrize("dtype", INT_TYPES)
@pytest.mark.parametrize("runtime", [False, True])
def test_per_tensor(dtype: Any, runtime: bool) -> None:
    x = quantize_input((3, 7))
    params = {"s": np.array(0.5, np.float32), "z": zero_point(dtype, ())}
    inputs, consts = ({"x": x, **params}, None) if runtime else ({"x": x}, params)
    model = single_op_model("QuantizeLinear", inputs, constants=consts, opset=21)
    assert_matches_ort(model, inputs, atol=0)
    q = zero_point(dtype, (3, 7))
    inputs, consts = ({"q": q, **params}, None) if runtime else ({"q": q}, params)
    assert_matches_ort(single_op_model("DequantizeLinear", inputs, constants=consts, opset=21), inputs)


@pytest.mark.parametrize("opset", [10, 13])
def test_default_zero_point_is_uint8(opset: int) -> None:
    x = quantize_input((11,))
    model = single_op_model("QuantizeLinear", {"x": x}, constants={"s": np.array(2.0, np.float32)}, opset=opset)
    assert_matches_ort(model, {"x": x}, atol=0)
    q = np.arange(200, 211, dtype=np.uint8)
    model = single_op_model("DequantizeLinear", {"q": q}, constants={"s": np.array(0.1, np.float32)}, opset=opset)
    assert_matches_ort(model, {"q": q})


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_per_axis(axis: int, dtype: Any) -> None:
    x = quantize_input((2, 3, 5))
    channels = x.shape[axis]
    params = {"s": np.asarray(rng.uniform(0.1, 4, channels), np.float32), "z": zero_point(dtype, (channels,))}
    model = single_op_model("QuantizeLinear", {"x": x}, constants=params, opset=13, axis=axis)
    assert_matches_ort(model, {"x": x}, atol=0)
    q = zero_point(dtype, x.shape)
    model = single_op_model("DequantizeLinear", {"q": q, **params}, opset=13, axis=axis)
    assert_matches_ort(model, {"q": q, **params})


def test_dequantize_int32() -> None:
    q = rng.integers(-(2**20), 2**20, size=(4, 6)).astype(np.int32)
    model = single_op_model("DequantizeLinear", {"q": q}, constants={"s": np.array(0.03, np.float32)}, opset=13)
    assert_matches_ort(model, {"q": q})
    s = rng.uniform(0.1, 1, 6).astype(np.float32)
    model = single_op_model("DequantizeLinear", {"q": q}, constants={"s": s, "z": np.zeros(6, np.int32)}, opset=13)
    assert_matches_ort(model, {"q": q})


@pytest.mark.parametrize("axis", [0, 1])
def test_blocked(axis: int) -> None:
    x = quantize_input((6, 8))
    shape = (2, 8) if axis == 0 else (6, 3)  # 6/4 → 2 blocks; 8/3 → 3 blocks, the last partial
    block = 4 if axis == 0 else 3
    params = {"s": rng.uniform(0.5, 3, shape).astype(np.float32), "z": zero_point(np.int8, shape)}
    model = single_op_model("QuantizeLinear", {"x": x, **params}, opset=21, axis=axis, block_size=block)
    assert_matches_ort(model, {"x": x, **params}, atol=0)
    q = zero_point(np.int8, x.shape)
    model = single_op_model("DequantizeLinear", {"q": q}, constants=params, opset=21, axis=axis, block_size=block)
    assert_matches_ort(model, {"q": q})


def test_quantize_dequantize_chain_after_a_kernel() -> None:
    from onnx import TensorProto, helper, numpy_helper
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 9])],
                              [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
                               numpy_helper.from_array(np.array(3, np.uint8), "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = rng.standard_normal((4, 9)).astype(np.float32) * 5
    assert_matches_ort(model, {"x": x})


def test_unsupported_types_are_declined() -> None:
    x = np.ones((4,), np.float64)  # float16 and bfloat16 are tests/backends/wasm/test_narrow_quantize.py's
    model = single_op_model("QuantizeLinear", {"x": x}, constants={"s": np.array(1.0, np.float64),
                                                                    "z": np.array(0, np.uint8)}, opset=19)
    with pytest.raises(UnsupportedModel, match="float64, only float32, float16 and bfloat16"):
        convert_onnx(model)
    model = single_op_model("QuantizeLinear", {"x": x.astype(np.float32)}, constants={
        "s": np.ones((2, 2), np.float32)}, opset=21, axis=0, block_size=3)
    with pytest.raises(UnsupportedModel, match="blocked scale has shape"):
        convert_onnx(model)
