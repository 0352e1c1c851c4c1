"""Gemm, MatMul, elementwise and activation kernels against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import wasinfer.lowering.gemm as gemm
from tests.parity import assert_matches_ort, graph_model, single_op_model
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm.emitters.gemm import RELAXED_MADD
from wasinfer.frontends import load_onnx
from wasinfer.runtime import WasmModel

rng = np.random.default_rng(0)


def rand(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("m,k,n", [(1, 7, 10), (5, 9, 13), (8, 16, 16), (3, 1, 2), (13, 33, 21)])
@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 0), (0, 1)])
def test_gemm_shapes_and_transposes(m: int, k: int, n: int, trans_a: int, trans_b: int) -> None:
    a = rand(*((k, m) if trans_a else (m, k)))
    b = rand(*((n, k) if trans_b else (k, n)))
    model = single_op_model("Gemm", {"a": a}, constants={"b": b, "c": rand(n)}, transA=trans_a, transB=trans_b,
                            alpha=0.5, beta=2.0)
    assert_matches_ort(model, {"a": a})


def test_gemm_runtime_transposed_b_and_scaled_runtime_c() -> None:
    a, b, c = rand(5, 7), rand(9, 7), rand(5, 9)
    model = single_op_model("Gemm", {"a": a, "b": b, "c": c}, transB=1, alpha=0.7, beta=0.5)
    assert_matches_ort(model, {"a": a, "b": b, "c": c})


def test_gemm_runtime_b_and_row_bias() -> None:
    a, b, c = rand(6, 5), rand(5, 9), rand(6, 1)
    model = single_op_model("Gemm", {"a": a, "b": b, "c": c})
    assert_matches_ort(model, {"a": a, "b": b, "c": c})


@pytest.mark.parametrize("a_shape,b_shape", [((3, 4), (4, 5)), ((2, 3, 4), (4, 6)), ((2, 1, 3, 4), (5, 4, 2)),
                                             ((4,), (4, 3)), ((2, 3, 4), (4,))])
def test_matmul_broadcast(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> None:
    a, b = rand(*a_shape), rand(*b_shape)
    assert_matches_ort(single_op_model("MatMul", {"a": a, "b": b}), {"a": a, "b": b})


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min"])
@pytest.mark.parametrize("a_shape,b_shape", [((2, 3, 4, 5), (2, 3, 4, 5)), ((2, 3, 4, 5), (3, 1, 1)),
                                             ((2, 3, 4, 5), ()), ((1, 5), (7, 1)), ((3, 1, 6), (1, 4, 1))])
def test_binary_broadcast(op: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> None:
    a, b = rand(*a_shape), rand(*b_shape)
    if op == "Div":
        b = np.where(np.abs(b) < 0.1, 1.0, b).astype(np.float32)
    assert_matches_ort(single_op_model(op, {"a": a, "b": b}), {"a": a, "b": b})


def test_variadic_sum_three_inputs() -> None:
    a, b, c = rand(2, 3), rand(3), rand(2, 1)
    assert_matches_ort(single_op_model("Sum", {"a": a, "b": b, "c": c}), {"a": a, "b": b, "c": c})


@pytest.mark.parametrize("op,attrs", [("Relu", {}), ("LeakyRelu", {"alpha": 0.2}), ("Sigmoid", {}), ("Tanh", {}),
                                      ("Exp", {}), ("Abs", {}), ("Neg", {}), ("Floor", {}), ("Ceil", {})])
def test_unary(op: str, attrs: dict[str, float]) -> None:
    x = (rand(3, 7, 5) * 4).astype(np.float32)
    assert_matches_ort(single_op_model(op, {"x": x}, **attrs), {"x": x})


def test_log_and_sqrt_on_positive_values() -> None:
    x = (np.abs(rand(4, 9)) * 100 + 1e-3).astype(np.float32)
    for op in ("Log", "Sqrt", "Reciprocal"):
        assert_matches_ort(single_op_model(op, {"x": x}), {"x": x})


def test_prelu_per_channel_slope() -> None:
    x, slope = rand(2, 3, 4, 4), rand(3, 1, 1)
    assert_matches_ort(single_op_model("PRelu", {"x": x}, constants={"slope": slope}), {"x": x})


def test_clip_with_constant_bounds() -> None:
    x = rand(5, 6) * 3
    model = single_op_model("Clip", {"x": x}, constants={"lo": np.array(-1, np.float32),
                                                          "hi": np.array(0.5, np.float32)})
    assert_matches_ort(model, {"x": x})


@pytest.mark.parametrize("m,k,n", [(5, 9, 37), (9, 45, 13), (20, 64, 70), (13, 1030, 21)])
@pytest.mark.parametrize("op", ["Gemm", "Gemm-transA", "MatMul"])
def test_gemm_columns_outer(monkeypatch: pytest.MonkeyPatch, op: str, m: int, k: int, n: int) -> None:
    """A few rows against a constant B larger than the L2 budget walk B's column tiles outermost, A packed
    in panels in scratch first: odd M (a short last row tile and padding rows), N with an overlapping last
    tile, K in blocks (1030), transposed A, Gemm's transB, alpha, beta, bias and a fused activation."""
    monkeypatch.setattr(gemm, "GEMM_B_BUDGET", m * gemm.gemm_plan(m, n, k).k_len * 4)  # A's block just fits
    assert gemm.gemm_plan(m, n, k, constant_b=True).columns_outer
    a = rand(k, m) if op == "Gemm-transA" else rand(m, k)
    if op == "MatMul":
        model = single_op_model("MatMul", {"a": a}, constants={"b": rand(k, n)})
    else:
        nodes = [helper.make_node("Gemm", ["a", "b", "c"], ["g"], transA=int(op == "Gemm-transA"), transB=1,
                                  alpha=0.5, beta=2.0), helper.make_node("Tanh", ["g"], ["y"])]
        model = graph_model(nodes, {"a": a}, ["y"], {"b": rand(n, k), "c": rand(n)})
    # sums of K products of N(0, 1) values, added in another order than ONNX Runtime's: their rounding grows as
    # sqrt(K) (K = 1030: a value near 0 once missed 2e-5 by 0.9e-5, with the module's rng drawn in another order)
    assert_matches_ort(model, {"a": a}, rtol=1e-4, atol=2e-5 * max(1.0, (k / 64) ** 0.5))


@pytest.mark.parametrize("m", [1, 2, 3])
def test_few_rows_against_a_wide_constant_b(m: int) -> None:
    """One row tile (16 columns for one row, 8 for two or three) over N = 8210, B read once either way."""
    a = rand(m, 512)
    assert not gemm.gemm_plan(m, 8210, 512, constant_b=True).columns_outer
    model = single_op_model("Gemm", {"a": a}, constants={"b": rand(8210, 512) * 0.05, "c": rand(8210)}, transB=1)
    assert_matches_ort(model, {"a": a})


def test_columns_outer_packs_a_in_scratch() -> None:
    """The scratch the memory planner reserves holds A's panels, padding rows included."""
    a = rand(20, 1024)
    cases = (("Gemm", {"b": rand(8210, 1024)}, {"transB": 1}), ("MatMul", {"b": rand(1024, 8210)}, {}))
    for op, constants, attrs in cases:
        graph = load_onnx(single_op_model(op, {"a": a}, constants=constants, **attrs)).graph
        scratch = gemm.gemm_scratch if op == "Gemm" else gemm.matmul_scratch
        assert scratch(graph.nodes[0], graph) == 20 * 1024 * 4
    small = load_onnx(single_op_model("MatMul", {"a": rand(3, 8)}, constants={"b": rand(8, 5)})).graph
    assert gemm.matmul_scratch(small.nodes[0], small) == 0


def test_gemm_columns_outer_classifier_shape() -> None:
    """ddddocr_rec's classifier at its real size (no budget patched): 20 rows, N 8210, all of K (1024) in
    one block, since A's 80 KiB stay in L2."""
    a = rand(20, 1024)
    model = single_op_model("Gemm", {"a": a}, constants={"b": rand(8210, 1024) * 0.05, "c": rand(8210)}, transB=1)
    plan = gemm.gemm_plan(20, 8210, 1024, constant_b=True)
    assert plan.columns_outer and (plan.blocks, plan.k_len) == (1, 1024)
    assert_matches_ort(model, {"a": a}, atol=5e-5)


@pytest.mark.parametrize("m,k,n", [(1, 70, 37), (6, 45, 13), (9, 64, 6)])
@pytest.mark.parametrize("trans_a", [0, 1])
def test_gemm_k_blocks(monkeypatch: pytest.MonkeyPatch, m: int, k: int, n: int, trans_a: int) -> None:
    """K cut into blocks (a short last one too): partial sums go through C; alpha, the bias and the
    fused activation come once, at the end."""
    monkeypatch.setattr(gemm, "K_BLOCK", 16)
    a, b = rand(*((k, m) if trans_a else (m, k))), rand(k, n)
    gemm_node = helper.make_node("Gemm", ["a", "b", "c"], ["g"], transA=trans_a, alpha=0.5, beta=2.0)
    graph = helper.make_graph([gemm_node, helper.make_node("Tanh", ["g"], ["y"])], "gemm_tanh",
                              [helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, a.shape)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, (m, n))],
                              [onnx.numpy_helper.from_array(b, "b"), onnx.numpy_helper.from_array(rand(n), "c")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert convert_onnx(model).stats["activations_fused"] == 1
    assert_matches_ort(model, {"a": a})
    x, y = rand(3, m, k), rand(k, n)
    assert_matches_ort(single_op_model("MatMul", {"x": x, "y": y}), {"x": x, "y": y})


@pytest.mark.parametrize("op", ["Gemm", "MatMul"])
def test_gemm_relaxed_simd(op: str) -> None:
    a, b = rand(5, 33), rand(33, 19)
    model = single_op_model(op, {"a": a}, constants={"b": b})
    relaxed = convert_onnx(model, simd="relaxed").wasm
    assert RELAXED_MADD in relaxed
    np.testing.assert_allclose(WasmModel(relaxed).run({"a": a})["y0"], a @ b, rtol=1e-4, atol=1e-4)
