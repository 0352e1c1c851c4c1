"""Sigmoid, Tanh and Swish (SiLU) as inline rational functions, and exp inline in Exp and Softmax,
against ONNX Runtime and float64."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tests.parity import assert_matches_ort, graph_model, single_op_model, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.artifact.variants import select_code
from wasinfer.backends.wasm.context import Ctx
from wasinfer.backends.wasm.emitters import unary
from wasinfer.backends.wasm.emitters.gemm import RELAXED_MADD
from wasinfer.backends.wasm.writer import SIMD, uleb
from wasinfer.runtime import WasmModel, make_engine

rng = np.random.default_rng(3)

# every range the approximations treat differently: tiny, ordinary, past the clamp, infinities
EDGES = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-6, -1e-6, 1e-3, 0.5, -0.5, 3.0, -3.0, 7.9, -7.9, 8.0, -8.0, 17.9,
                  -17.9, 18.0, -18.0, 30.0, -30.0, 100.0, -100.0, 3e38, -3e38, np.inf, -np.inf], np.float32)


def spread(count: int) -> np.ndarray:
    """`count` values over [-40, 40], the edges first: every lane position meets every range."""
    body = (rng.standard_normal(max(count - EDGES.size, 0)) * 10).astype(np.float32)
    return np.concatenate([EDGES, body])[:count]


@pytest.mark.parametrize("count", [1, 3, 4, 7, 8, 9, 33, 1027])  # the scalar tail, one vector, the unrolled loop
@pytest.mark.parametrize("op", ["Sigmoid", "Tanh"])
def test_sigmoid_and_tanh_match_float64_and_ort(op: str, count: int) -> None:
    x = spread(count)
    model = single_op_model(op, {"x": x})
    got = wasm_run(model, {"x": x})[0]
    wide = x.astype(np.float64)
    exact = 0.5 * (1 + np.tanh(wide / 2)) if op == "Sigmoid" else np.tanh(wide)
    np.testing.assert_allclose(got, exact, rtol=2e-6, atol=5e-7)
    low, high = (0.0, 1.0) if op == "Sigmoid" else (-1.0, 1.0)
    assert got.min() >= low and got.max() <= high  # never past the function's range, even by one ulp
    assert_matches_ort(model, {"x": x}, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["Sigmoid", "Tanh", "Swish"])
def test_nan_stays_nan(op: str) -> None:
    x = np.array([np.nan, 1.0, -np.nan, 2.0, np.nan], np.float32)
    got = wasm_run(single_op_model(op, {"x": x}, opset=24 if op == "Swish" else 13), {"x": x})[0]
    assert np.isnan(got[[0, 2, 4]]).all() and not np.isnan(got[[1, 3]]).any()


@pytest.mark.parametrize("op", ["Sigmoid", "Tanh", "Swish", "Exp", "Softmax"])
def test_math_is_inline_without_a_helper_call(op: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rational sigmoid and tanh, and exp in Exp's and Softmax's loops, are written into the
    kernel: no call to exp4 (a call per vector; exp's range reduction cost 3x a rational's instructions)."""
    asked: list[str] = []
    original = Ctx.helper

    def recording(self: Ctx, name: str) -> int:
        asked.append(name)
        return original(self, name)

    monkeypatch.setattr(Ctx, "helper", recording)
    x = spread(64)
    convert_onnx(single_op_model(op, {"x": x}, opset=24 if op == "Swish" else 13))
    assert asked == []


@pytest.mark.parametrize("count", [3, 9, 1030])
def test_exp_matches_float64_over_its_range(count: int) -> None:
    """exp's rounding of x log2 e by adding 1.5 * 2^23 (instead of nearest + a float-to-int conversion):
    within 2e-7 relative over the clamped range, 0 and 1 exact, NaN kept."""
    x = np.concatenate([np.array([0.0, -0.0, 1e-30, 88.0, -87.0, 0.5, -0.5, 44.5, -44.5], np.float32),
                        rng.uniform(-87, 88, max(count - 9, 0)).astype(np.float32)])[:count]
    got = wasm_run(single_op_model("Exp", {"x": x}), {"x": x})[0]
    np.testing.assert_allclose(got, np.exp(x.astype(np.float64)), rtol=2e-7, atol=0)
    odd = np.array([np.nan, 0.0, 100.0, -100.0], np.float32)
    got = wasm_run(single_op_model("Exp", {"x": odd}), {"x": odd})[0]
    assert np.isnan(got[0]) and got[1] == 1.0 and np.isfinite(got[2]) and 0 < got[3] < 1e-37


@pytest.mark.parametrize("alpha", [1.0, 0.5, -1.7])
@pytest.mark.parametrize("shape", [(5,), (2, 3, 7), (1, 16, 9, 9)])
def test_swish_matches_ort(alpha: float, shape: tuple[int, ...]) -> None:
    x = (rng.standard_normal(shape) * 6).astype(np.float32)
    assert_matches_ort(single_op_model("Swish", {"x": x}, opset=24, alpha=alpha), {"x": x})


@pytest.mark.parametrize("order", ["x,s", "s,x"])
@pytest.mark.parametrize("shape", [(3,), (2, 5, 7), (1, 8, 13, 11)])
def test_silu_as_sigmoid_and_mul_runs_as_one_swish(order: str, shape: tuple[int, ...]) -> None:
    x = (rng.standard_normal(shape) * 6).astype(np.float32)
    mul_inputs = ["x", "s"] if order == "x,s" else ["s", "x"]
    model = graph_model([helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", mul_inputs, ["y"])],
                        {"x": x}, ["y"])
    assert convert_onnx(model).stats["ops"] == ["Swish"]
    assert_matches_ort(model, {"x": x})


def test_unrolled_loop_keeps_every_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """With 3 vectors per iteration, 10 vectors and a tail of 3 take all three loops of map_f32."""
    monkeypatch.setattr(unary, "UNROLL", 3)
    x = np.clip(spread(43), -20, 20)
    for op in ("Sigmoid", "Relu", "Exp"):
        assert_matches_ort(single_op_model(op, {"x": x}), {"x": x})


@pytest.mark.parametrize("op", ["Sigmoid", "Tanh", "Swish"])
def test_rational_math_fused_in_the_relaxed_variant(op: str) -> None:
    """The relaxed code variant takes each Horner step of the rational sigmoid and tanh as one
    f32x4.relaxed_madd (an FMA on this host: Sigmoid 265 -> 183 us, Swish 283 -> 213 us on 96 x 52 x 52);
    the plain code keeps mul + add. Both match float64 (the relaxed one a little closer)."""
    x = spread(1027)
    model = single_op_model(op, {"x": x}, opset=24 if op == "Swish" else 13)
    result = convert_onnx(model)
    assert RELAXED_MADD in select_code(result.wasm, relaxed=True)
    assert RELAXED_MADD not in convert_onnx(model, simd="plain").wasm
    wide = x.astype(np.float64)
    sigmoid = 0.5 * (1 + np.tanh(wide / 2))
    with np.errstate(invalid="ignore"):  # Swish(-inf) = -inf * 0: NaN, as the kernel gives it
        exact = {"Sigmoid": sigmoid, "Tanh": np.tanh(wide), "Swish": wide * sigmoid}[op]
    for relaxed in (False, True):
        got = WasmModel(result.wasm, make_engine(interruptible=False, relaxed_simd=relaxed)).run({"x": x})["y0"]
        # Swish: sigmoid's absolute error (< 2e-7) times |x| up to 18, where the clamp takes over
        np.testing.assert_allclose(got, exact, rtol=2e-6, atol=4e-6 if op == "Swish" else 5e-7,
                                   err_msg=f"relaxed={relaxed}")
        if op == "Tanh":  # saturated exactly (fused, the rational alone stopped 2 ulp short of ±1 at the clamp)
            far = np.abs(x) >= 9
            assert np.array_equal(got[far], np.sign(x[far])), f"relaxed={relaxed}"


def test_swish_sigmoid_has_no_clamp_at_one_and_stays_within_two_ulp() -> None:
    """Swish leaves out its sigmoid's clamp at 1 (one pmin per vector less: 213 -> 193 us on 96 x 52 x 52): the
    rational reaches 1 + 1 ulp for a few hundred x in [16.4, 18], so over every float32 there and its negatives
    (both code variants) x * sigmoid(x) stays within 2 ulp of float64's, and a large negative x still gives 0."""
    pmin = b"\xfd" + uleb(SIMD["f32x4.pmin"])
    swish_code, sigmoid_code = (convert_onnx(single_op_model(op, {"x": spread(64)}, opset=24 if op == "Swish" else 13),
                                             simd="plain").wasm for op in ("Swish", "Sigmoid"))
    assert swish_code.count(pmin) < sigmoid_code.count(pmin)
    top = np.arange(np.float32(16.0).view(np.int32), np.float32(18.0).view(np.int32) + 1, dtype=np.int32)
    x = np.concatenate([top.view(np.float32), -top.view(np.float32), np.float32([30.0, -30.0, 1e30, -1e30])])
    result = convert_onnx(single_op_model("Swish", {"x": x}, opset=24))
    wide = x.astype(np.float64)
    exact = wide * 0.5 * (1 + np.tanh(wide / 2))
    for relaxed in (False, True):
        got = WasmModel(result.wasm, make_engine(interruptible=False, relaxed_simd=relaxed)).run({"x": x})["y0"]
        positive = x > 0
        ulps = np.abs(got[positive].astype(np.float64) - exact[positive]) / np.spacing(np.abs(x[positive]))
        assert ulps.max() <= 2, f"relaxed={relaxed}: {ulps.max()} ulp"
        np.testing.assert_allclose(got[~positive], exact[~positive], rtol=0, atol=4e-6, err_msg=f"relaxed={relaxed}")
        assert got[-1] == 0 and got[-3] <= 0, f"relaxed={relaxed}"
