"""BitCast (a view: the output aliases the input's bytes) against numpy's `view`: every pair of same-width
dtypes a module holds, a graph input straight to an output, between two kernels, and a folded constant."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.parity import graph_model, single_op_model, wasm_run

rng = np.random.default_rng(26)
PAIRS = [(np.float32, np.int32), (np.int32, np.float32), (np.float64, np.int64), (np.int64, np.float64),
         (np.uint32, np.int32), (np.int8, np.uint8), (np.uint16, np.int16), (np.bool_, np.uint8),
         (np.float16, np.uint16), (np.uint64, np.float64)]


def _sample(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if dtype is np.bool_:
        return rng.random(shape) < 0.5
    count = int(np.prod(shape, dtype=np.int64))  # random bytes: NaN and infinity patterns too, for floats
    return rng.integers(0, 256, count * np.dtype(dtype).itemsize, np.uint8).view(dtype).reshape(shape)


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_bitcast_keeps_the_bits(source: type, target: type) -> None:
    for shape in ((3, 5), (), (2, 1, 4)):
        x = _sample(shape, source)
        model = single_op_model("BitCast", {"x": x}, opset=26, to=helper.np_dtype_to_tensor_dtype(np.dtype(target)))
        got = wasm_run(model, {"x": x})[0]
        assert got.dtype == np.dtype(target) and got.shape == x.shape
        np.testing.assert_array_equal(got.reshape(-1).view(np.uint8), x.reshape(-1).view(np.uint8))


def test_bitcast_between_kernels_reads_and_writes_the_same_bytes() -> None:
    """float32 → its bits → the sign bit cleared → float32: |x|, through two views and a kernel between."""
    x = rng.standard_normal((4, 7)).astype(np.float32)
    nodes = [helper.make_node("BitCast", ["x"], ["bits"], to=TensorProto.INT32),
             helper.make_node("BitwiseAnd", ["bits", "mask"], ["cleared"]),
             helper.make_node("BitCast", ["cleared"], ["y"], to=TensorProto.FLOAT)]
    model = graph_model(nodes, {"x": x}, ["y"], {"mask": np.array(0x7FFFFFFF, np.int32)}, opset=26)
    np.testing.assert_array_equal(wasm_run(model, {"x": x})[0], np.abs(x))


def test_a_bitcast_of_a_constant_folds() -> None:
    x = rng.standard_normal((2, 3)).astype(np.float32)
    nodes = [helper.make_node("BitCast", ["c"], ["bits"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "bits"], ["y"])]
    c = rng.standard_normal((2, 3)).astype(np.float32).view(np.int32)
    model = graph_model(nodes, {"x": x}, ["y"], {"c": c}, opset=26)
    np.testing.assert_array_equal(wasm_run(model, {"x": x})[0], x + c.view(np.float32))
