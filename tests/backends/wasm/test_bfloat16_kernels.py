"""bfloat16 (and the one-byte narrow types) through the kernels that only move elements, and Unique, which compares
them: bit for bit against ONNX's reference evaluator, the tensors crossing the module's ABI as they are."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from tests.parity import graph_model, single_op_model, wasm_run

BF16 = np.dtype(ml_dtypes.bfloat16)
rng = np.random.default_rng(3)


def values(*shape: int, dtype: Any = BF16) -> np.ndarray:
    return (rng.integers(-6, 7, shape) * 0.375).astype(np.float32).astype(dtype)


def assert_same_as_reference(model: Any, feeds: dict[str, np.ndarray]) -> None:
    want = ReferenceEvaluator(model).run(None, feeds)
    got = wasm_run(model, feeds)
    for w, g in zip(want, got, strict=True):
        w = np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape
        assert g.tobytes() == w.tobytes()


@pytest.mark.parametrize("dtype", [BF16, np.dtype(ml_dtypes.float8_e4m3fn), np.dtype(ml_dtypes.int4)],
                         ids=lambda d: d.name)
def test_moving_kernels(dtype: np.dtype) -> None:  # type: ignore[type-arg]
    x = values(3, 4, 5, dtype=dtype)
    assert_same_as_reference(single_op_model("Transpose", {"x": x}, perm=[2, 0, 1]), {"x": x})
    assert_same_as_reference(single_op_model("Concat", {"a": x, "b": x[:, :1]}, axis=1), {"a": x, "b": x[:, :1]})
    assert_same_as_reference(single_op_model("Gather", {"x": x}, constants={"i": np.array([2, 0, 2], np.int64)},
                                             axis=1), {"x": x})
    mask = np.array([True, False, True, True, False])
    assert_same_as_reference(single_op_model("Compress", {"x": x}, constants={"c": mask}, axis=2), {"x": x})
    lengths = np.array([1, 4, 2], np.int64)
    assert_same_as_reference(single_op_model("ReverseSequence", {"x": x}, constants={"l": lengths},
                                             batch_axis=0, time_axis=1), {"x": x})


def test_onehot_values_and_reshape_in_bfloat16() -> None:
    on_off = np.array([-1.5, 2.25], np.float32).astype(BF16)
    indices = np.array([[0, 3], [2, 1]], np.int64)
    model = single_op_model("OneHot", {"i": indices}, constants={"depth": np.array(4, np.int64), "v": on_off},
                            opset=11)
    assert_same_as_reference(model, {"i": indices})
    x = values(2, 6)
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"])]
    assert_same_as_reference(graph_model(nodes, {"x": x}, ["y"], {"s": np.array([3, 4], np.int64)}), {"x": x})


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_unique_compares_bfloat16_as_floats(axis: int | None) -> None:
    x = values(6, 3)
    x[4] = x[1]
    x[0, 0] = np.float32(-0.0).astype(BF16)  # -0 equals 0
    attrs = {} if axis is None else {"axis": axis}
    model = single_op_model("Unique", {"x": x}, output_count=4, opset=11, **attrs)
    assert_same_as_reference(model, {"x": x})
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.BFLOAT16
