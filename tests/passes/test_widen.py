"""float16/bfloat16 element-wise ops through float32 (passes/widen.py): the rewrite, and its results bit for bit
against ONNX's reference evaluator (numpy computing in the narrow type)."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from tests.parity import graph_model, single_op_model, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm import kernel_takes
from wasinfer.backends.wasm.compiler import UnsupportedModel
from wasinfer.frontends import load_onnx
from wasinfer.passes.widen import widen_half_floats

HALVES = [np.float16, ml_dtypes.bfloat16]
rng = np.random.default_rng(5)


def sample(dtype: Any, *shape: int) -> np.ndarray:
    x = (rng.standard_normal(shape) * 50).astype(np.float32)
    x.reshape(-1)[:4] = [np.nan, np.inf, -np.inf, -0.0]
    return x.astype(dtype)


def same_as_reference(model: Any, feeds: dict[str, np.ndarray]) -> None:
    want = [np.asarray(w) for w in ReferenceEvaluator(model).run(None, feeds)]
    got = wasm_run(model, feeds)
    for w, g in zip(want, got, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g.astype(np.float64), w.astype(np.float64))


@pytest.mark.parametrize("dtype", HALVES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("op", ["Max", "Min", "Add", "Sub", "Mul", "Div"])
def test_binary_ops_round_as_the_narrow_type_does(dtype: Any, op: str) -> None:
    """float32's result rounded back is the correctly rounded one: bit for bit with numpy's float16/bfloat16."""
    a, b = sample(dtype, 3, 40), sample(dtype, 40)
    same_as_reference(single_op_model(op, {"a": a, "b": b}), {"a": a, "b": b})


@pytest.mark.parametrize("dtype", HALVES, ids=lambda t: np.dtype(t).name)
def test_unary_tests_and_mod(dtype: Any) -> None:
    x = sample(dtype, 5, 8)
    for op in ("IsNaN", "IsInf", "Abs", "Neg", "Relu"):
        same_as_reference(single_op_model(op, {"x": x}, opset=20), {"x": x})
    y = (np.abs(sample(np.float32, 5, 8)) + 1).astype(dtype)
    same_as_reference(single_op_model("Mod", {"x": x, "y": y}, fmod=1), {"x": x, "y": y})


def test_the_rewrite_widens_each_tensor_once_and_constants_at_compile_time() -> None:
    x = sample(np.float16, 2, 6)
    two = np.full(6, 2.0, np.float16)
    nodes = [helper.make_node("Max", ["x", "two"], ["m"]), helper.make_node("Min", ["x", "m"], ["y"]),
             helper.make_node("Transpose", ["y"], ["t"])]
    model = graph_model(nodes, {"x": x}, ["t"], {"two": two})
    graph = load_onnx(model).graph
    assert widen_half_floats(graph, kernel_takes) == 2
    casts = [(n.inputs[0], n.outputs[0], n.attrs["to"]) for n in graph.nodes if n.op_type == "Cast"]
    # x once (both nodes read its copy); each result rounded back; `two` is a float32 constant, no Cast
    assert casts == [("x", "x/float32", TensorProto.FLOAT), ("m/float32", "m", TensorProto.FLOAT16),
                     ("m", "m/float32_1", TensorProto.FLOAT), ("y/float32", "y", TensorProto.FLOAT16)]
    assert graph.constants["two/float32"].dtype == np.float32
    assert [n.op_type for n in graph.nodes][-1] == "Transpose" and graph.nodes[-1].inputs == ["y"]
    same_as_reference(model, {"x": x})


def test_accumulating_ops_stay_declined_by_dtype() -> None:
    a = sample(np.float16, 4, 8)
    with pytest.raises(UnsupportedModel, match="float16"):
        convert_onnx(single_op_model("MatMul", {"a": a}, constants={"b": sample(np.float16, 8, 3)}))
    with pytest.raises(UnsupportedModel, match="float16"):
        convert_onnx(single_op_model("ReduceSum", {"a": a}, opset=18))
