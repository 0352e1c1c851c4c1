"""Comparisons, bool logic, bitwise logic and BitShift, Where, integer arithmetic, Erf/Gelu, Pow, run-time Clip and Mod
against ONNX Runtime (and math.erf / numpy where ONNX Runtime has no kernel or no answer)."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import helper

from tests.parity import assert_matches_ort, single_op_model, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm.compiler import UnsupportedModel

rng = np.random.default_rng(7)
BROADCASTS = [((2, 3, 5), (3, 1)), ((4,), ()), ((1, 6), (5, 1)), ((7,), (7,))]


def values(shape: tuple[int, ...], dtype: type, scale: float = 4.0) -> np.ndarray:
    """Small integers (so that comparisons see ties) in the dtype."""
    return np.asarray(np.round(rng.standard_normal(shape) * scale)).astype(dtype)


@pytest.mark.parametrize("op", ["Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual"])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64])
def test_comparisons(op: str, dtype: type) -> None:
    for a_shape, b_shape in BROADCASTS[:2]:
        a, b = values(a_shape, dtype), values(b_shape, dtype)
        assert_matches_ort(single_op_model(op, {"a": a, "b": b}, opset=16), {"a": a, "b": b})


def test_float_comparisons_with_nan_and_a_17_element_tail() -> None:
    a = values((17,), np.float32)
    a[[2, 9, 16]] = np.nan
    b = values((17,), np.float32)
    for op in ("Equal", "Less", "GreaterOrEqual"):
        got = wasm_run(single_op_model(op, {"a": a, "b": b}, opset=16), {"a": a, "b": b})[0]
        assert got.dtype == np.bool_ and not got[[2, 9, 16]].any()
        assert_matches_ort(single_op_model(op, {"a": a, "b": b}, opset=16), {"a": a, "b": b})


@pytest.mark.parametrize("dtype", [np.uint64, np.uint8, np.int16, np.uint32])
def test_comparisons_on_other_integers(dtype: type) -> None:
    info = np.iinfo(dtype)
    a = np.array([0, 1, info.max, info.max - 1, info.min, 5, 5, 7, 2], dtype)
    b = np.array([1, 0, info.max, info.max, 3, 5, 4, 9, 2], dtype)
    for op, want in (("Less", a < b), ("GreaterOrEqual", a >= b), ("Equal", a == b)):
        got = wasm_run(single_op_model(op, {"a": a, "b": b}, opset=16), {"a": a, "b": b})[0]
        np.testing.assert_array_equal(got, want)


def test_equal_on_bool() -> None:
    a, b = rng.random((3, 20)) > 0.5, rng.random((20,)) > 0.5
    assert_matches_ort(single_op_model("Equal", {"a": a, "b": b}), {"a": a, "b": b})


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
def test_bool_logic_broadcast(op: str) -> None:
    a, b = rng.random((2, 3, 19)) > 0.5, rng.random((3, 1)) > 0.5
    assert_matches_ort(single_op_model(op, {"a": a, "b": b}), {"a": a, "b": b})


def test_not() -> None:
    a = rng.random((5, 21)) > 0.5
    assert_matches_ort(single_op_model("Not", {"a": a}), {"a": a})


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64, np.uint8])
@pytest.mark.parametrize("shapes", [((2, 3, 5), (2, 3, 5), (2, 3, 5)), ((1, 5), (3, 1), ()),
                                    ((4, 1, 1), (1, 3, 1), (1, 1, 17)), ((), (6,), (2, 1))])
def test_where_three_way_broadcast(dtype: type, shapes: tuple[tuple[int, ...], ...]) -> None:
    cond = np.asarray(rng.random(shapes[0]) > 0.5)
    x, y = values(shapes[1], dtype), values(shapes[2], dtype)
    feeds = {"c": cond, "x": x, "y": y}
    assert_matches_ort(single_op_model("Where", feeds), feeds)


@pytest.mark.parametrize("dtype", [np.int16, np.bool_])
def test_where_on_types_ort_lacks(dtype: type) -> None:  # numpy is the reference
    cond, x, y = rng.random((3, 19)) > 0.5, values((19,), dtype, 1000), values((3, 1), dtype, 1000)
    got = wasm_run(single_op_model("Where", {"c": cond, "x": x, "y": y}), {"c": cond, "x": x, "y": y})[0]
    np.testing.assert_array_equal(got, np.where(cond, x, y))


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int8, np.uint8, np.uint32])
def test_integer_binary(op: str, dtype: type) -> None:
    big = {4: 3e4, 8: 3e9}.get(np.dtype(dtype).itemsize, 9.0)
    a, b = values((2, 3, 9), np.float64, big), values((3, 1), np.float64, 5.0)
    if np.dtype(dtype).kind == "u":
        a, b = np.abs(a), np.abs(b)
    if op == "Div":
        b[b == 0] = 3
    a, b = a.astype(dtype), b.astype(dtype)
    if op in ("Max", "Min") and np.dtype(dtype).itemsize == 1:
        return  # ONNX Runtime has no 8-bit Max/Min kernels
    assert_matches_ort(single_op_model(op, {"a": a, "b": b}, opset=14), {"a": a, "b": b}, rtol=0, atol=0)


def test_integer_division_never_traps() -> None:
    """ONNX Runtime's integer x/0 and MIN/-1 are undefined (a crash); ours are 0 and MIN."""
    for dtype in (np.int32, np.int64, np.int8):
        info = np.iinfo(dtype)
        a = np.array([7, -7, info.min, info.min, 5], dtype)
        b = np.array([0, 2, -1, 1, -2], dtype)
        got = wasm_run(single_op_model("Div", {"a": a, "b": b}, opset=14), {"a": a, "b": b})[0]
        np.testing.assert_array_equal(got, np.array([0, -3, info.min, info.min, -2], dtype))


def test_variadic_integer_sum_and_max() -> None:
    a, b, c = values((2, 3), np.int64), values((3,), np.int64), values((2, 1), np.int64)
    for op in ("Sum", "Max", "Min"):
        model = single_op_model(op, {"a": a, "b": b, "c": c})
        if op == "Sum":
            got = wasm_run(model, {"a": a, "b": b, "c": c})[0]
            np.testing.assert_array_equal(got, a + b + c)
        else:
            assert_matches_ort(model, {"a": a, "b": b, "c": c})


@pytest.mark.parametrize("op", ["Neg", "Abs"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int8])
def test_integer_neg_abs(op: str, dtype: type) -> None:
    x = values((3, 11), dtype, 50.0)
    assert_matches_ort(single_op_model(op, {"x": x}), {"x": x}, rtol=0, atol=0)


def test_erf_accuracy_over_a_dense_range() -> None:
    x = np.concatenate([np.linspace(-6, 6, 200_001), [0.0, -0.0, 1.0, -1.0, 3.99, 4.0, 4.01, 1e-30, 1e30]])
    x = x.astype(np.float32)
    got = wasm_run(single_op_model("Erf", {"x": x}), {"x": x})[0]
    want = np.array([math.erf(float(v)) for v in x])
    assert np.max(np.abs(got - want)) <= 2e-7
    special = np.array([np.inf, -np.inf, np.nan, -0.0], np.float32)
    got = wasm_run(single_op_model("Erf", {"x": special}), {"x": special})[0]
    assert got[0] == 1.0 and got[1] == -1.0 and np.isnan(got[2]) and got[3] == 0 and np.signbit(got[3])
    assert_matches_ort(single_op_model("Erf", {"x": x[::1000]}), {"x": x[::1000]}, rtol=1e-6, atol=2e-7)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate: str) -> None:
    x = (rng.standard_normal((3, 37)) * 4).astype(np.float32)
    assert_matches_ort(single_op_model("Gelu", {"x": x}, opset=20, approximate=approximate), {"x": x},
                       rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation,attrs", [("Gelu", {"approximate": "none"}), ("Gelu", {"approximate": "tanh"}),
                                              ("Erf", {})])
def test_gelu_and_erf_fuse_into_add(activation: str, attrs: dict[str, str]) -> None:
    a, b = rng.standard_normal((4, 10)).astype(np.float32), rng.standard_normal((10,)).astype(np.float32)
    nodes = [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node(activation, ["s"], ["y"], **attrs)]
    graph = helper.make_graph(nodes, "fused", [helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, a.shape)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, a.shape)],
                              [onnx.numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    assert convert_onnx(model).stats["activations_fused"] == 1
    assert_matches_ort(model, {"a": a}, rtol=1e-5, atol=1e-6)


def test_pow_broadcast_with_signs() -> None:
    x = (rng.standard_normal((3, 13)) * 3).astype(np.float32)
    y = np.array([[2.0], [3.0], [-1.0]], np.float32)
    assert_matches_ort(single_op_model("Pow", {"x": x, "y": y}), {"x": x, "y": y}, rtol=1e-5)
    base = np.abs(x) + 0.1
    frac = (rng.random((13,)) * 4 - 2).astype(np.float32)
    assert_matches_ort(single_op_model("Pow", {"x": base, "y": frac}), {"x": base, "y": frac}, rtol=1e-5)


def test_pow_edge_values_follow_c() -> None:
    x = np.array([-2.0, -2.0, -2.0, 0.0, 0.0, 0.0, 1.0, np.nan, 3.0, 10.0, -0.0], np.float32)
    y = np.array([3.0, 2.0, 0.5, 2.0, -1.0, 0.0, np.nan, 0.0, 0.5, 40.0, -3.0], np.float32)
    got = wasm_run(single_op_model("Pow", {"x": x, "y": y}), {"x": x, "y": y})[0]
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(got, np.power(x, y), rtol=1e-6)


@pytest.mark.parametrize("exponent", [1.0, 2.0, 3.0, 0.5, -1.5])
def test_pow_constant_exponent(exponent: float) -> None:
    x = (np.abs(rng.standard_normal((2, 9))) * 3).astype(np.float32)
    model = single_op_model("Pow", {"x": x}, constants={"y": np.array(exponent, np.float32)})
    assert_matches_ort(model, {"x": x}, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_pow_integer_exponent(dtype: type) -> None:
    x = (rng.standard_normal((4, 6)) * 2).astype(np.float32)
    y = np.arange(-2, 4).astype(dtype)
    assert_matches_ort(single_op_model("Pow", {"x": x, "y": y}, opset=15), {"x": x, "y": y}, rtol=1e-5)


@pytest.mark.parametrize("bounds", ["both", "min", "max"])
def test_clip_with_run_time_bounds(bounds: str) -> None:
    x = (rng.standard_normal((3, 17)) * 3).astype(np.float32)
    x[0, 0] = np.nan
    feeds = {"x": x, "lo": np.array(-1.5, np.float32), "hi": np.array(0.5, np.float32)}
    names = {"both": ["x", "lo", "hi"], "min": ["x", "lo"], "max": ["x", "", "hi"]}[bounds]
    node = helper.make_node("Clip", names, ["y"])
    inputs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, feeds[n].shape) for n in names if n]
    graph = helper.make_graph([node], "clip", inputs, [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT,
                                                                                    x.shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert_matches_ort(model, {n: feeds[n] for n in names if n})


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int8])
def test_integer_clip(dtype: type) -> None:
    x = values((4, 9), dtype, 20.0)
    model = single_op_model("Clip", {"x": x}, constants={"lo": np.array(-5, dtype), "hi": np.array(7, dtype)})
    assert_matches_ort(model, {"x": x}, rtol=0, atol=0)


def test_float_fmod() -> None:
    a = (rng.standard_normal((3, 10)) * 20).astype(np.float32)
    b = np.array([[3.0], [-2.5], [0.7]], np.float32)
    a[0, :3] = [6.0, -6.0, 0.0]
    assert_matches_ort(single_op_model("Mod", {"a": a, "b": b}, fmod=1), {"a": a, "b": b}, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fmod", [0, 1])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int8, np.uint16])
def test_integer_mod(fmod: int, dtype: type) -> None:
    a = values((3, 8), np.float64, 30.0)
    b = values((8,), np.float64, 6.0)
    b[b == 0] = -4
    if np.dtype(dtype).kind == "u":
        a, b = np.abs(a), np.abs(b)
    a, b = a.astype(dtype), b.astype(dtype)
    assert_matches_ort(single_op_model("Mod", {"a": a, "b": b}, fmod=fmod), {"a": a, "b": b}, rtol=0, atol=0)


def test_declined_with_reasons() -> None:
    cases = [(single_op_model("Gelu", {"a": np.ones(3, np.float32)}, opset=20, approximate="fast"), "approximate"),
             (single_op_model("Less", {"a": np.ones(3, np.float64), "b": np.ones(3, np.float64)}), "float64"),
             (single_op_model("Pow", {"a": np.ones(3, np.int32), "b": np.ones(3, np.float32)}, opset=15), "exponent"),
             (single_op_model("Add", {"a": np.ones(3, np.float64), "b": np.ones(3, np.float64)}), "float64")]
    for model, reason in cases:
        with pytest.raises(UnsupportedModel, match=reason):
            convert_onnx(model)


def test_unknown_gelu_approximation_is_not_fused_away() -> None:
    nodes = [helper.make_node("Add", ["a", "a"], ["s"]), helper.make_node("Gelu", ["s"], ["y"], approximate="fast")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4])])
    with pytest.raises(UnsupportedModel, match="approximate='fast'"):
        convert_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]))


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_integer_pow(dtype: type) -> None:
    x = np.array([[2, -3, 0, 1, -1, 7], [5, -2, 3, -1, 1, 2]], dtype)
    y = np.array([[3, 3, 4, -2, -3, 0], [1, 5, 0, 4, -5, 10]], dtype)
    assert_matches_ort(single_op_model("Pow", {"x": x, "y": y}, opset=15), {"x": x, "y": y}, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_pow_unsigned_exponent(dtype: type) -> None:  # ONNX Runtime has no such kernel; numpy is the reference
    x = (rng.standard_normal((3, 5)) * 2).astype(np.float32)
    y = np.arange(5).astype(dtype)
    got = wasm_run(single_op_model("Pow", {"x": x, "y": y}, opset=15), {"x": x, "y": y})[0]
    np.testing.assert_allclose(got, np.power(x, y.astype(np.float32)), rtol=1e-5)


@pytest.mark.parametrize("fmod", [0, 1])
def test_float_mod_edge_values(fmod: int) -> None:
    """numpy's mod and fmod on zeros of both signs, infinities and NaN, as ONNX's own cases."""
    a = np.array([0.0, -0.0, 0.0, -0.0, -3.0, 3.0, -1.0, 1.0, np.inf, -np.inf, 1.0, 1.0, np.nan, 1.0, 4.0, -4.0,
                  5.5, -5.5], np.float32)
    b = np.array([-2.0, 2.0, 2.0, -2.0, np.inf, np.inf, -np.inf, -np.inf, 2.0, 2.0, 0.0, -0.0, 2.0, np.nan, -2.0,
                  2.0, -2.0, 2.0], np.float32)
    got = wasm_run(single_op_model("Mod", {"a": a, "b": b}, fmod=fmod), {"a": a, "b": b})[0]
    with np.errstate(all="ignore"):
        want = np.fmod(a, b) if fmod else np.mod(a, b)
    np.testing.assert_array_equal(got, want)
    numbers = ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(got[numbers]), np.signbit(want[numbers]))


def test_integer_clip_after_integer_add_is_not_fused() -> None:
    a = values((3, 8), np.int64, 20.0)
    nodes = [helper.make_node("Add", ["a", "a"], ["s"]), helper.make_node("Clip", ["s", "lo", "hi"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("a", onnx.TensorProto.INT64, a.shape)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.INT64, a.shape)],
                              [onnx.numpy_helper.from_array(np.array(-9, np.int64), "lo"),
                               onnx.numpy_helper.from_array(np.array(11, np.int64), "hi")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert convert_onnx(model).stats["activations_fused"] == 0
    assert_matches_ort(model, {"a": a}, rtol=0, atol=0)


INTEGERS = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]


def bit_patterns(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("dtype", INTEGERS)
@pytest.mark.parametrize("op", ["BitwiseAnd", "BitwiseOr", "BitwiseXor"])
def test_bitwise_ops_broadcast_on_every_integer_dtype(op: str, dtype: type) -> None:
    for a_shape, b_shape in BROADCASTS:
        a, b = bit_patterns(a_shape, dtype), bit_patterns(b_shape, dtype)
        assert_matches_ort(single_op_model(op, {"a": a, "b": b}, opset=18), {"a": a, "b": b}, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", INTEGERS)
def test_bitwise_not(dtype: type) -> None:
    x = bit_patterns((37,), dtype)
    assert_matches_ort(single_op_model("BitwiseNot", {"x": x}, opset=18), {"x": x}, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
def test_bitshift_by_each_lanes_own_amount(dtype: type, direction: str) -> None:
    """Amounts from 0 past the lane's width (those give 0, as in ONNX Runtime, not x shifted modulo
    the width as Wasm's shift instructions would), broadcast both ways."""
    bits = np.dtype(dtype).itemsize * 8
    for x_shape, y_shape in BROADCASTS:
        x = bit_patterns(x_shape, dtype)
        y = rng.integers(0, bits + 40, y_shape).astype(dtype)
        model = single_op_model("BitShift", {"x": x, "y": y}, opset=11, direction=direction)
        assert_matches_ort(model, {"x": x, "y": y}, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
def test_signed_bitshift_is_arithmetic_and_fills_with_the_sign(dtype: type, direction: str) -> None:
    """Opset 28's signed BitShift, against the spec's own statement of it (ONNX Runtime has no kernel
    yet): amounts that are negative or reach the width leave the sign fill."""
    bits = np.dtype(dtype).itemsize * 8
    x = bit_patterns((4, 9), dtype)
    y = rng.integers(-3, bits + 3, (9,)).astype(dtype)
    got = wasm_run(single_op_model("BitShift", {"x": x, "y": y}, opset=28, direction=direction), {"x": x, "y": y})[0]
    wide, amount = x.astype(object), [int(v) for v in y]
    fill = [[(-1 if v < 0 and direction == "RIGHT" else 0) for v in row] for row in wide]
    want = np.array([[fill[r][c] if not 0 <= amount[c] < bits else
                      (int(wide[r, c]) << amount[c] if direction == "LEFT" else int(wide[r, c]) >> amount[c])
                      for c in range(9)] for r in range(4)], dtype=object)
    want = np.array([[((int(v) + 2 ** (bits - 1)) % 2 ** bits) - 2 ** (bits - 1) for v in row] for row in want],
                    dtype=dtype)  # bits past the sign bit are discarded
    np.testing.assert_array_equal(got, want)


def test_signed_bitshift_before_opset_28_is_refused_by_name() -> None:
    node = helper.make_node("BitShift", ["x", "y"], ["z"], direction="LEFT")
    graph = helper.make_graph([node], "shift", [helper.make_tensor_value_info(n, onnx.TensorProto.INT32, [2])
                                                for n in ("x", "y")],
                              [helper.make_tensor_value_info("z", onnx.TensorProto.INT32, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    with pytest.raises(UnsupportedModel, match="BitShift on int32 is defined from opset 28"):
        convert_onnx(model)
