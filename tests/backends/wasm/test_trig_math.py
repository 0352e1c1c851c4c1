"""Sin ... Atanh, Sign, IsNaN, IsInf and Mean against ONNX Runtime and float64: odd sizes (the vector
loop, the unrolled loop and the scalar tail), each function's edges, and Sin/Cos far from zero."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.parity import assert_matches_ort, single_op_model, wasm_run

rng = np.random.default_rng(18)
SIZES = [1, 3, 4, 9, 1027]  # a lone tail, one vector, vector + tail, the unrolled loop

# each op's domain for random values, its float64 reference, and the edges its kernel treats apart
DOMAINS: dict[str, tuple[float, float]] = {
    "Sin": (-20, 20), "Cos": (-20, 20), "Tan": (-1.5, 1.5), "Atan": (-50, 50), "Asin": (-1, 1), "Acos": (-1, 1),
    "Sinh": (-20, 20), "Cosh": (-20, 20), "Asinh": (-2000, 2000), "Acosh": (1, 3000), "Atanh": (-1, 1)}
EXACT = {"Sin": np.sin, "Cos": np.cos, "Tan": np.tan, "Atan": np.arctan, "Asin": np.arcsin, "Acos": np.arccos,
         "Sinh": np.sinh, "Cosh": np.cosh, "Asinh": np.arcsinh, "Acosh": np.arccosh, "Atanh": np.arctanh}
EDGES: dict[str, list[float]] = {
    "Sin": [0.0, -0.0, 1e-30, np.pi / 4, np.pi / 2, np.pi, 3 * np.pi / 2, -np.pi, 100.0, -1000.5],
    "Cos": [0.0, -0.0, 1e-30, np.pi / 4, np.pi / 2, np.pi, 3 * np.pi / 2, -np.pi, 100.0, -1000.5],
    "Tan": [0.0, -0.0, 1e-20, 0.3926, 0.7853, 0.8, -0.8, 1.2, 2.0, -2.0, 4.0, 10.0],
    "Atan": [0.0, -0.0, 1e-30, 0.41, 0.42, 2.41, 2.42, 1.0, -1.0, 1e10, -1e10, np.inf, -np.inf],
    "Asin": [0.0, -0.0, 1e-30, 0.49, 0.5, 0.51, 0.999, -0.999, 1.0, -1.0],
    "Acos": [0.0, -0.0, 1e-30, 0.49, 0.5, 0.51, 0.999, -0.999, 0.9999999, 1.0, -1.0],
    "Sinh": [0.0, -0.0, 1e-30, 0.99, 1.0, 1.01, -1.01, 50.0, -50.0, 88.0, 89.0, -89.0],
    "Cosh": [0.0, -0.0, 1e-30, 1.0, 50.0, -50.0, 88.0, 89.0, -89.0],
    "Asinh": [0.0, -0.0, 1e-30, 0.49, 0.5, 0.51, 1499.0, 1501.0, -1501.0, 1e20, -1e30],
    "Acosh": [1.0, 1.0001, 1.49, 1.5, 1.51, 1499.0, 1501.0, 1e30],
    "Atanh": [0.0, -0.0, 1e-30, 0.49, 0.5, 0.51, -0.51, 0.999, -0.999, 0.9999999],
}


def values(op: str, count: int) -> np.ndarray:
    low, high = DOMAINS[op]
    edges = np.array(EDGES[op], np.float32)
    body = rng.uniform(low, high, max(count - edges.size, 0)).astype(np.float32)
    return np.concatenate([edges, body])[:count]


@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize("op", list(EXACT))
def test_math_matches_float64_and_ort(op: str, count: int) -> None:
    x = values(op, count)
    model = single_op_model(op, {"x": x})
    got = wasm_run(model, {"x": x})[0]
    exact = EXACT[op](x.astype(np.float64))
    # a few float32 ulps of the value, or of 1 where the function crosses zero
    np.testing.assert_allclose(got, exact, rtol=4e-7 if op not in ("Tan",) else 1e-6, atol=2e-7)
    assert_matches_ort(model, {"x": x}, rtol=1e-6, atol=2e-7)


@pytest.mark.parametrize("op", ["Sin", "Cos"])
@pytest.mark.parametrize("bound", [1e2, 1e4])
def test_sin_and_cos_stay_float32_accurate_for_large_arguments(op: str, bound: float) -> None:
    """Rotary and positional embeddings take sin and cos of position times frequency, which reaches
    thousands: the three-part reduction by pi/2 keeps the error under a float32 ulp of 1 (an error of
    3e-2 near 1e6 would be a single-constant reduction's)."""
    x = rng.uniform(-bound, bound, 4099).astype(np.float32)
    got = wasm_run(single_op_model(op, {"x": x}), {"x": x})[0]
    exact = (np.sin if op == "Sin" else np.cos)(x.astype(np.float64))
    assert np.abs(got - exact).max() < 1.2e-7


@pytest.mark.parametrize("op", list(EXACT))
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy warns on the NaN it is asked for
def test_nan_and_out_of_domain_values(op: str) -> None:
    """NaN stays NaN; arguments outside the domain give NaN and the poles ±inf, as ONNX Runtime."""
    x = np.array([np.nan, 0.5, -np.nan, 2.0, np.inf, -np.inf, -2.0, 1.0, -1.0], np.float32)
    model = single_op_model(op, {"x": x})
    got, want = wasm_run(model, {"x": x})[0], (EXACT[op](x.astype(np.float64))).astype(np.float32)
    assert np.isnan(got[[0, 2]]).all()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"NaN where {got} vs {want}")
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)])
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-6)


@pytest.mark.parametrize("count", SIZES)
def test_float_sign_matches_ort(count: int) -> None:
    x = np.concatenate([np.array([np.nan, 0.0, -0.0, np.inf, -np.inf, 1e-40, -1e-40], np.float32),
                        rng.standard_normal(count).astype(np.float32)])[:count]
    model = single_op_model("Sign", {"x": x})
    got = wasm_run(model, {"x": x})[0]
    np.testing.assert_array_equal(got, np.sign(x))
    assert_matches_ort(model, {"x": x}, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
                                   np.uint64])
@pytest.mark.parametrize("count", [5, 37])
def test_integer_sign_matches_ort(dtype: type, count: int) -> None:
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, count, dtype=dtype, endpoint=True)
    x[:3] = [0, info.max, info.min]
    model = single_op_model("Sign", {"x": x})
    got = wasm_run(model, {"x": x})[0]
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, np.sign(x))
    assert_matches_ort(model, {"x": x}, rtol=0, atol=0)


@pytest.mark.parametrize("count", [1, 5, 19])
@pytest.mark.parametrize("op,attrs", [("IsNaN", {}), ("IsInf", {}), ("IsInf", {"detect_negative": 0}),
                                      ("IsInf", {"detect_positive": 0}),
                                      ("IsInf", {"detect_positive": 0, "detect_negative": 0})])
def test_isnan_and_isinf_match_ort(op: str, attrs: dict[str, int], count: int) -> None:
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, 3e38, -np.nan, 1.0], np.float32)
    x = rng.choice(specials, count).astype(np.float32)
    model = single_op_model(op, {"x": x}, opset=20, **attrs)
    got = wasm_run(model, {"x": x})[0]
    assert got.dtype == np.bool_
    assert_matches_ort(model, {"x": x}, rtol=0, atol=0)


@pytest.mark.parametrize("shapes", [[(7,)], [(2, 3, 5), (2, 3, 5)], [(2, 3, 5), (5,), (3, 1)],
                                    [(1, 9), (4, 1), (), (4, 9)]])
def test_mean_of_broadcast_inputs_matches_ort(shapes: list[tuple[int, ...]]) -> None:
    feeds = {f"x{i}": rng.standard_normal(shape).astype(np.float32) for i, shape in enumerate(shapes)}
    assert_matches_ort(single_op_model("Mean", feeds), feeds, rtol=1e-6, atol=1e-7)


def test_rotary_style_embedding_per_sample_of_a_run_time_batch() -> None:
    """x (N, 6, 8): angles = positions times frequencies, then x * cos + rotate(x) * sin, as rotary
    embeddings do, with the batch a run-time dim (each sample runs through the same module)."""
    positions = np.arange(6, dtype=np.float32)[:, None] * 1000.0  # far from zero: the reduction matters
    freqs = (1.0 / 10000 ** (np.arange(8) / 8)).astype(np.float32)
    nodes = [helper.make_node("Mul", ["pos", "freq"], ["angle"]),
             helper.make_node("Sin", ["angle"], ["s"]), helper.make_node("Cos", ["angle"], ["c"]),
             helper.make_node("Mul", ["x", "c"], ["xc"]), helper.make_node("Neg", ["x"], ["nx"]),
             helper.make_node("Mul", ["nx", "s"], ["xs"]), helper.make_node("Add", ["xc", "xs"], ["y"])]
    graph = helper.make_graph(nodes, "rotary", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 8])],
                              [numpy_helper.from_array(positions, "pos"), numpy_helper.from_array(freqs, "freq")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = rng.standard_normal((3, 6, 8)).astype(np.float32)
    assert_matches_ort(model, {"x": x}, max_batch=3, rtol=1e-5, atol=1e-6)
