"""The integer kernels of quantized element-wise islands (QLookupInt8, QAddInt8, QMulInt8,
QGlobalAveragePoolInt8, QMaxPoolInt8: passes/int8_islands.py, emitters/qelementwise.py) against ONNX
Runtime: hand-built QDQ graphs with values over the whole 8-bit range, odd sizes and broadcast shapes,
and models onnxruntime.quantization quantizes itself (QDQ and QOperator, int8 and uint8 activations).
Differences are counted in output quantization steps."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from tests.parity import graph_model, ort_run
from wasinfer.artifact import convert_onnx
from wasinfer.runtime import WasmModel

rng = np.random.default_rng(41)


def _q(dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


def _params(prefix: str, scale: float, zero: int, dtype: type) -> dict[str, np.ndarray]:
    return {f"{prefix}_s": np.array(scale, np.float32), f"{prefix}_z": np.array(zero, dtype)}


def _run_both(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    result = convert_onnx(model)
    counts = result.stats["op_counts"]
    assert isinstance(counts, dict)
    got = WasmModel(result.wasm).run(feeds)["y"]
    want, = ort_run(model, feeds)
    assert got.shape == want.shape and got.dtype == want.dtype
    return counts, got, want


@pytest.mark.parametrize("dtype", [np.int8, np.uint8], ids=["s8", "u8"])
@pytest.mark.parametrize("op", ["Add", "Mul"])
@pytest.mark.parametrize("a_shape,b_shape", [((1, 5, 7, 3), (1, 5, 7, 3)), ((2, 6, 5, 5), (1, 6, 1, 1)),
                                             ((1, 3, 4, 9), (1,)), ((3, 1, 5), (1, 4, 5)),
                                             ((1, 8, 1, 1), (1, 8, 6, 6))],
                         ids=["same_odd", "per_channel", "scalar", "both_broadcast", "a_broadcast"])
def test_quantized_add_and_mul_run_on_the_integers(a_shape: tuple[int, ...], b_shape: tuple[int, ...], op: str,
                                                   dtype: type) -> None:
    """DQ(a), DQ(b) → Add | Mul → Q with numpy broadcasting (an SE block's per-channel scale, a scalar,
    both sides broadcast): one QAddInt8 / QMulInt8, within one step of ONNX Runtime (which fuses the
    same pattern into its QLinearAdd / QLinearMul), saturating at both ends."""
    signed = dtype == np.int8
    inits = {**_params("a", 0.05, -3 if signed else 120, dtype), **_params("b", 0.02, 9 if signed else 131, dtype),
             **_params("y", 0.03 if op == "Add" else 0.04, 4 if signed else 125, dtype)}
    nodes = [helper.make_node("DequantizeLinear", ["a", "a_s", "a_z"], ["a_f"]),
             helper.make_node("DequantizeLinear", ["b", "b_s", "b_z"], ["b_f"]),
             helper.make_node(op, ["a_f", "b_f"], ["c"]),
             helper.make_node("QuantizeLinear", ["c", "y_s", "y_z"], ["y"])]
    feeds = {"a": _q(dtype, a_shape), "b": _q(dtype, b_shape)}
    if feeds["b"].size == 1 and op == "Mul":  # a scalar far from its zero point, so that products saturate
        feeds["b"][...] = np.iinfo(dtype).max
    counts, got, want = _run_both(graph_model(nodes, feeds, ["y"], inits), feeds)
    assert counts == {f"Q{op}Int8": 1}
    assert np.abs(got.astype(np.int32) - want).max() <= 1
    info = np.iinfo(dtype)
    saturated = [(got == info.min).any(), (got == info.max).any()]
    assert all(saturated) if op == "Add" else any(saturated)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8], ids=["s8", "u8"])
@pytest.mark.parametrize("chain", ["swish", "scaled_tanh_clip", "hardswish", "requantize", "gelu"])
def test_unary_chains_become_one_table(chain: str, dtype: type) -> None:
    """Chains of element-wise float ops of one quantized tensor: x * sigmoid(x) reading one
    DequantizeLinear twice; a scalar Mul, Tanh and a constant Clip; HardSwish; a bare requantisation
    (DQ → Q with other parameters); an Erf-based GELU; over every 8-bit value in an odd-sized tensor
    (259 elements: the four-at-a-time loop and its tail): one QLookupInt8, within one step of ONNX Runtime."""
    signed = dtype == np.int8
    inits = {**_params("x", 0.04, 5 if signed else 128, dtype), **_params("y", 0.03, -20 if signed else 90, dtype),
             "k": np.array(0.7, np.float32), "lo": np.array(-0.5, np.float32), "hi": np.array(0.9, np.float32),
             "half": np.array(0.5, np.float32), "one": np.array(1.0, np.float32),
             "root2": np.array(np.sqrt(2), np.float32)}
    dq = helper.make_node("DequantizeLinear", ["x", "x_s", "x_z"], ["f"])
    ops = {
        "swish": [helper.make_node("Sigmoid", ["f"], ["s"]), helper.make_node("Mul", ["f", "s"], ["v"])],
        "scaled_tanh_clip": [helper.make_node("Mul", ["f", "k"], ["m"]), helper.make_node("Tanh", ["m"], ["t"]),
                             helper.make_node("Clip", ["t", "lo", "hi"], ["v"])],
        "hardswish": [helper.make_node("HardSwish", ["f"], ["v"])],
        "requantize": [helper.make_node("Identity", ["f"], ["v"])],
        "gelu": [helper.make_node("Div", ["f", "root2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
                 helper.make_node("Add", ["e", "one"], ["e1"]), helper.make_node("Mul", ["f", "e1"], ["m"]),
                 helper.make_node("Mul", ["m", "half"], ["v"])],
    }[chain]
    nodes = [dq, *ops, helper.make_node("QuantizeLinear", ["v", "y_s", "y_z"], ["y"])]
    x = np.concatenate([np.arange(256, dtype=np.uint8).view(dtype), _q(dtype, (3,))]).reshape(7, 37)
    counts, got, want = _run_both(graph_model(nodes, {"x": x}, ["y"], inits, opset=14), {"x": x})
    assert counts == {"QLookupInt8": 1}, counts
    assert np.abs(got.astype(np.int32) - want).max() <= 1
    assert (got == want).mean() > 0.98


@pytest.mark.parametrize("dtype", [np.int8, np.uint8], ids=["s8", "u8"])
@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 4, 6, 6), (1, 2, 17, 19)],
                         ids=["tail_only", "16_plus_tail", "big"])
def test_global_average_pool_sums_in_int32(shape: tuple[int, ...], dtype: type) -> None:
    """DQ → GlobalAveragePool → Q: one QGlobalAveragePoolInt8 within one step of ONNX Runtime, for
    planes shorter than one 16-byte step, with a tail, and larger."""
    signed = dtype == np.int8
    inits = {**_params("x", 0.05, -7 if signed else 140, dtype), **_params("y", 0.01, 3 if signed else 100, dtype)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_s", "x_z"], ["f"]),
             helper.make_node("GlobalAveragePool", ["f"], ["p"]),
             helper.make_node("QuantizeLinear", ["p", "y_s", "y_z"], ["y"])]
    x = _q(dtype, shape)
    counts, got, want = _run_both(graph_model(nodes, {"x": x}, ["y"], inits), {"x": x})
    assert counts == {"QGlobalAveragePoolInt8": 1}
    assert np.abs(got.astype(np.int32) - want).max() <= 1


@pytest.mark.parametrize("dtype", [np.int8, np.uint8], ids=["s8", "u8"])
@pytest.mark.parametrize("attrs", [{"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
                                   {"kernel_shape": [2, 3], "pads": [0, 2, 1, 0], "ceil_mode": 1, "strides": [2, 3]},
                                   {"kernel_shape": [3, 2], "dilations": [2, 1]},
                                   {"kernel_shape": [2, 2], "strides": [2, 2]},
                                   {"kernel_shape": [5, 5], "pads": [2, 2, 2, 2]}],
                         ids=["resnet_stem", "asymmetric_ceil", "dilated", "plain", "spp_5x5"])
def test_max_pool_of_the_integers_is_exact(attrs: dict[str, object], dtype: type) -> None:
    """MaxPool on (u)int8 values, as QOperator models run it, and between a DequantizeLinear and a
    QuantizeLinear of one scale and zero point: QMaxPoolInt8, equal to ONNX Runtime's, pads reading
    as the type's minimum, rows wider than 16 bytes."""
    x = _q(dtype, (2, 3, 11, 37))
    direct = graph_model([helper.make_node("MaxPool", ["x"], ["y"], **attrs)], {"x": x}, ["y"], opset=13)
    params = _params("q", 0.1, 3 if dtype == np.int8 else 128, dtype)
    qdq = graph_model([helper.make_node("DequantizeLinear", ["x", "q_s", "q_z"], ["f"]),
                       helper.make_node("MaxPool", ["f"], ["p"], **attrs),
                       helper.make_node("QuantizeLinear", ["p", "q_s", "q_z"], ["y"])], {"x": x}, ["y"], params)
    for model in (direct, qdq):
        counts, got, want = _run_both(model, {"x": x})
        assert counts == {"QMaxPoolInt8": 1}
        np.testing.assert_array_equal(got, want)


def test_data_movement_between_equal_parameters_moves_the_integers() -> None:
    """DQ → Transpose → Q and DQ, DQ → Concat → Q, Flatten, with one scale and zero point throughout:
    no float op is left, and the integers come out as ONNX Runtime's."""
    x, z = _q(np.int8, (1, 4, 3, 5)), _q(np.int8, (1, 5, 3, 4))
    params = _params("q", 0.2, -1, np.int8)
    nodes = [helper.make_node("DequantizeLinear", ["x", "q_s", "q_z"], ["xf"]),
             helper.make_node("DequantizeLinear", ["z", "q_s", "q_z"], ["zf"]),
             helper.make_node("Transpose", ["zf"], ["zt"], perm=[0, 3, 2, 1]),
             helper.make_node("QuantizeLinear", ["zt", "q_s", "q_z"], ["zq"]),
             helper.make_node("DequantizeLinear", ["zq", "q_s", "q_z"], ["zd"]),
             helper.make_node("Concat", ["xf", "zd"], ["c"], axis=1),
             helper.make_node("QuantizeLinear", ["c", "q_s", "q_z"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "q_s", "q_z"], ["cd"]),
             helper.make_node("Flatten", ["cd"], ["fl"], axis=1),
             helper.make_node("QuantizeLinear", ["fl", "q_s", "q_z"], ["y"])]
    counts, got, want = _run_both(graph_model(nodes, {"x": x, "z": z}, ["y"], params), {"x": x, "z": z})
    assert set(counts) <= {"Transpose", "Concat", "Flatten"}, counts
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8], ids=["s8", "u8"])
def test_nearest_resize_and_depth_to_space_move_the_integers(dtype: type) -> None:
    """DQ → Resize (nearest, 2x) → Q → DQ → DepthToSpace → Q of one scale and zero point: both run
    on the integers, equal to ONNX Runtime's; a linear Resize computes new values and stays float."""
    x = _q(dtype, (1, 4, 5, 3))
    params = {**_params("q", 0.1, 3 if dtype == np.int8 else 128, dtype), "scales": np.array([1, 1, 2, 2], np.float32)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "q_s", "q_z"], ["f"]),
             helper.make_node("Resize", ["f", "", "scales"], ["r"], mode="nearest"),
             helper.make_node("QuantizeLinear", ["r", "q_s", "q_z"], ["rq"]),
             helper.make_node("DequantizeLinear", ["rq", "q_s", "q_z"], ["rf"]),
             helper.make_node("DepthToSpace", ["rf"], ["d"], blocksize=2),
             helper.make_node("QuantizeLinear", ["d", "q_s", "q_z"], ["y"])]
    counts, got, want = _run_both(graph_model(nodes, {"x": x}, ["y"], params), {"x": x})
    assert counts == {"Resize": 1, "DepthToSpace": 1}, counts
    np.testing.assert_array_equal(got, want)
    nodes[1] = helper.make_node("Resize", ["f", "", "scales"], ["r"], mode="linear")
    counts, got, want = _run_both(graph_model(nodes, {"x": x}, ["y"], params), {"x": x})
    assert counts.get("Resize") == 1 and counts.get("QuantizeLinear") == 1, counts
    assert np.abs(got.astype(np.int32) - want).max() <= 1


class _Samples(CalibrationDataReader):
    def __init__(self, samples: list[dict[str, np.ndarray]]):
        self.left = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.left, None)


def _se_model() -> onnx.ModelProto:
    """x [1, 4, 9, 7] → Conv 3x3 → LeakyRelu → a; SE: GlobalAveragePool → Conv 1x1 → Sigmoid → g [1, 8, 1, 1];
    Mul(a, g) (broadcast) + a (residual); Concat with a; MaxPool 2x2 stride 2 → y (float)."""
    def w(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.4, shape).astype(np.float32), name)

    inits = [w("w1", (8, 4, 3, 3)), w("b1", (8,)), w("w2", (8, 8, 1, 1)), w("b2", (8,))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("LeakyRelu", ["c1"], ["a"], alpha=0.1),
             helper.make_node("GlobalAveragePool", ["a"], ["g0"]),
             helper.make_node("Conv", ["g0", "w2", "b2"], ["g1"]),
             helper.make_node("Sigmoid", ["g1"], ["g"]),
             helper.make_node("Mul", ["a", "g"], ["m"]),
             helper.make_node("Add", ["m", "a"], ["r"]),
             helper.make_node("Concat", ["r", "a"], ["cat"], axis=1),
             helper.make_node("MaxPool", ["cat"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    graph = helper.make_graph(nodes, "se", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 9, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


@pytest.mark.parametrize("activations", [QuantType.QInt8, QuantType.QUInt8], ids=["s8", "u8"])
@pytest.mark.parametrize("quant_format", [QuantFormat.QDQ, QuantFormat.QOperator], ids=["qdq", "qoperator"])
def test_onnx_runtime_quantized_islands_run_on_the_integers(quant_format: QuantFormat, activations: QuantType,
                                                            tmp_path: Path) -> None:
    """An SE block with a residual, LeakyRelu, Sigmoid, Concat and MaxPool on odd sizes, quantized by
    onnxruntime.quantization: the only DequantizeLinear / QuantizeLinear left are the float input's and
    output's, and the output is within one step of ONNX Runtime's."""
    model = _se_model()
    samples = [{"x": rng.normal(0, 1, (1, 4, 9, 7)).astype(np.float32)} for _ in range(4)]
    onnx.save(model, tmp_path / "float.onnx")
    logging.disable(logging.WARNING)
    try:
        quantize_static(tmp_path / "float.onnx", tmp_path / "q.onnx", _Samples(samples), per_channel=False,
                        quant_format=quant_format, activation_type=activations, weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    quantized = onnx.load(tmp_path / "q.onnx")
    result = convert_onnx(quantized)
    counts = result.stats["op_counts"]
    assert isinstance(counts, dict)
    assert counts.get("QuantizeLinear") == 1 and counts.get("DequantizeLinear") == 1, counts
    assert {"QConvInt8", "QLookupInt8", "QMulInt8", "QAddInt8", "QGlobalAveragePoolInt8",
            "QMaxPoolInt8"} <= set(counts), counts
    dq = next(n for n in quantized.graph.node if "y" in n.output)
    y_scale = float(numpy_helper.to_array(next(i for i in quantized.graph.initializer if i.name == dq.input[1])))
    module = WasmModel(result.wasm)
    for feeds in samples[:2]:
        want, = ort_run(quantized, feeds)
        assert np.rint(np.abs(module.run(feeds)["y"] - want).max() / y_scale) <= 1


@pytest.mark.parametrize("dtype", [np.int8, np.uint8], ids=["s8", "u8"])
@pytest.mark.parametrize("attrs", [{"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
                                   {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
                                   {"kernel_shape": [2, 3], "pads": [0, 2, 1, 0], "ceil_mode": 1, "strides": [2, 3]},
                                   {"kernel_shape": [7, 7], "strides": [1, 1]},
                                   {"kernel_shape": [2, 2], "strides": [2, 2]}],
                         ids=["same_pads", "count_pads", "asymmetric_ceil", "7x7", "2x2_stride2"])
def test_average_pool_sums_the_integers(attrs: dict[str, object], dtype: type) -> None:
    """DQ → AveragePool → Q, and com.microsoft QLinearAveragePool (rewritten into it): one
    QAveragePoolInt8 summing the integers, padding read as the zero point, each output divided as
    AveragePool divides (count_include_pad, ceil_mode's last window), within one step of ONNX Runtime."""
    x = _q(dtype, (2, 3, 11, 37))
    signed = dtype == np.int8
    params = {**_params("x", 0.05, -9 if signed else 140, dtype), **_params("y", 0.02, 6 if signed else 120, dtype)}
    qdq = graph_model([helper.make_node("DequantizeLinear", ["x", "x_s", "x_z"], ["f"]),
                       helper.make_node("AveragePool", ["f"], ["p"], **attrs),
                       helper.make_node("QuantizeLinear", ["p", "y_s", "y_z"], ["y"])], {"x": x}, ["y"], params)
    contrib = helper.make_model(helper.make_graph(
        [helper.make_node("QLinearAveragePool", ["x", "x_s", "x_z", "y_s", "y_z"], ["y"], domain="com.microsoft",
                          **attrs)], "qlinear", [helper.make_tensor_value_info("x", qdq.graph.input[0].type.tensor_type
                                                                               .elem_type, list(x.shape))],
        [qdq.graph.output[0]], [numpy_helper.from_array(v, k) for k, v in params.items()]),
        opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])
    for model in (qdq, contrib):
        counts, got, want = _run_both(model, {"x": x})
        assert counts == {"QAveragePoolInt8": 1}, counts
        assert np.abs(got.astype(np.int32) - want).max() <= 1


@pytest.mark.parametrize("dtype", [np.int8, np.uint8], ids=["s8", "u8"])
@pytest.mark.parametrize("pool", ["MaxPool", "AveragePool"])
def test_pools_between_layout_transposes_run_on_the_integers(pool: str, dtype: type) -> None:
    """`DQ → Transpose → pool → Transpose → Q`, as the TFLite frontend writes a full-integer NHWC pool:
    the DequantizeLinear moves after the first Transpose and the QuantizeLinear before the second, so
    the pool meets them and runs on the integers (the output's parameters differ from the input's:
    the AveragePool requantises, the MaxPool needs equal ones and gets a table after it)."""
    x = _q(dtype, (1, 9, 11, 6))
    signed = dtype == np.int8
    params = {**_params("x", 0.05, 3 if signed else 130, dtype), **_params("y", 0.04, -2 if signed else 120, dtype)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_s", "x_z"], ["f"]),
             helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node(pool, ["t"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["p"], ["u"], perm=[0, 2, 3, 1]),
             helper.make_node("QuantizeLinear", ["u", "y_s", "y_z"], ["y"])]
    counts, got, want = _run_both(graph_model(nodes, {"x": x}, ["y"], params), {"x": x})
    assert "DequantizeLinear" not in counts and "QuantizeLinear" not in counts, counts
    assert counts.get(f"Q{pool}Int8") == 1 and counts.get("Transpose") == 2, counts
    assert np.abs(got.astype(np.int32) - want).max() <= (0 if pool == "MaxPool" else 1)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8], ids=["s8", "u8"])
@pytest.mark.parametrize("op,clamp", [("Add", "Relu"), ("Sub", None), ("Sub", "Clip"), ("Mul", "Clip")])
def test_sub_and_fused_activations_run_on_the_integers(op: str, clamp: str | None, dtype: type) -> None:
    """`DQ(a), DQ(b) → Sub` (an Add of b's scale negated), and Add/Sub/Mul followed by a Relu or a Clip
    (TFLite's fused activations) before the QuantizeLinear: one QAddInt8 / QMulInt8 whose output is
    clamped to [Q(lo), Q(hi)], within one step of ONNX Runtime."""
    signed = dtype == np.int8
    inits = {**_params("a", 0.05, -3 if signed else 120, dtype), **_params("b", 0.02, 9 if signed else 131, dtype),
             **_params("y", 0.03, 4 if signed else 125, dtype),
             "lo": np.array(-0.7, np.float32), "hi": np.array(1.1, np.float32)}
    nodes = [helper.make_node("DequantizeLinear", ["a", "a_s", "a_z"], ["a_f"]),
             helper.make_node("DequantizeLinear", ["b", "b_s", "b_z"], ["b_f"]),
             helper.make_node(op, ["a_f", "b_f"], ["c" if clamp else "v"])]
    if clamp:
        nodes.append(helper.make_node(clamp, ["c", "lo", "hi"] if clamp == "Clip" else ["c"], ["v"]))
    nodes.append(helper.make_node("QuantizeLinear", ["v", "y_s", "y_z"], ["y"]))
    feeds = {"a": _q(dtype, (2, 6, 5, 7)), "b": _q(dtype, (1, 6, 1, 7))}
    counts, got, want = _run_both(graph_model(nodes, feeds, ["y"], inits), feeds)
    assert counts == {"QMulInt8" if op == "Mul" else "QAddInt8": 1}, counts
    assert np.abs(got.astype(np.int32) - want).max() <= 1
    if clamp:  # the range's ends are reached
        lo = {"Relu": 0.0, "Clip": -0.7}[clamp]
        assert got.min() == np.clip(np.rint(np.float32(lo) / np.float32(0.03)) + int(inits["y_z"]),
                                    np.iinfo(dtype).min, np.iinfo(dtype).max)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8], ids=["s8", "u8"])
def test_a_gemm_followed_by_relu_runs_in_int8_then_clamps(dtype: type) -> None:
    """`DQ(a), DQ(w) → Gemm → Relu → Q` (a full-integer TFLite FULLY_CONNECTED with its fused Relu):
    QGemmInt8, then a table clamping its integers to [Q(0), max], within one step of ONNX Runtime."""
    a = _q(dtype, (3, 20))
    w = rng.integers(-127, 128, (12, 20)).astype(np.int8)
    inits = {**_params("a", 0.05, 2 if dtype == np.int8 else 128, dtype), "w": w,
             "w_s": np.array(0.01, np.float32), **_params("y", 0.04, -5 if dtype == np.int8 else 100, dtype)}
    nodes = [helper.make_node("DequantizeLinear", ["a", "a_s", "a_z"], ["a_f"]),
             helper.make_node("DequantizeLinear", ["w", "w_s"], ["w_f"]),
             helper.make_node("Gemm", ["a_f", "w_f"], ["g"], transB=1),
             helper.make_node("Relu", ["g"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "y_s", "y_z"], ["y"])]
    counts, got, want = _run_both(graph_model(nodes, {"a": a}, ["y"], inits), {"a": a})
    assert counts == {"QGemmInt8": 1, "QLookupInt8": 1}, counts
    assert np.abs(got.astype(np.int32) - want).max() <= 1 and got.min() == inits["y_z"]


@pytest.mark.parametrize("dtype", [np.int8, np.uint8], ids=["s8", "u8"])
def test_pad_gather_and_split_move_the_integers(dtype: type) -> None:
    """`DQ → Pad (constant 0) → Gather → Split → Q, Q` (the second output requantised): the DequantizeLinear
    moves past the Pad (padding with the zero point, which dequantises to 0 exactly), the Gather and the
    Split (one per output), so no float op is left; a pad value that no integer dequantises to (0.13 at a
    scale of 0.1) keeps the float path. Both equal ONNX Runtime's."""
    x = _q(dtype, (1, 3, 4, 6))
    z = 3 if dtype == np.int8 else 128
    inits = {**_params("q", 0.1, z, dtype), **_params("r", 0.07, z - 1, dtype),
             "pads": np.array([0, 0, 1, 2, 0, 0, 1, 0], np.int64), "zero": np.array(0.0, np.float32),
             "odd": np.array(0.13, np.float32), "rows": np.array([5, 0, 2, 2], np.int64),
             "halves": np.array([4, 4], np.int64)}
    for value, float_left in (("zero", False), ("odd", True)):
        nodes = [helper.make_node("DequantizeLinear", ["x", "q_s", "q_z"], ["f"]),
                 helper.make_node("Pad", ["f", "pads", value], ["p"]),
                 helper.make_node("Gather", ["p", "rows"], ["g"], axis=2),
                 helper.make_node("Split", ["g", "halves"], ["a", "b"], axis=3),
                 helper.make_node("QuantizeLinear", ["a", "q_s", "q_z"], ["y"]),
                 helper.make_node("QuantizeLinear", ["b", "r_s", "r_z"], ["y2"])]
        model = graph_model(nodes, {"x": x}, ["y", "y2"], inits)
        result = convert_onnx(model)
        counts = result.stats["op_counts"]
        assert isinstance(counts, dict)
        assert ("DequantizeLinear" in counts) == float_left, (value, counts)
        got = WasmModel(result.wasm).run({"x": x})
        for name, want in zip(("y", "y2"), ort_run(model, {"x": x}), strict=True):
            np.testing.assert_array_equal(got[name], want, err_msg=f"{value} {name}")


def test_a_quantized_scalar_constant_is_part_of_the_table() -> None:
    """`Max(DQ(x), DQ(c))` with c a quantized constant of one element (TFLite's MAXIMUM with a constant
    operand): c is dequantised at compile time, and the island is one table, equal to ONNX Runtime's."""
    x = np.arange(256, dtype=np.uint8).view(np.int8)
    inits = {**_params("q", 0.1, 3, np.int8), **_params("c", 0.05, 0, np.int8), "c": np.array(17, np.int8)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "q_s", "q_z"], ["f"]),
             helper.make_node("DequantizeLinear", ["c", "c_s", "c_z"], ["g"]),
             helper.make_node("Max", ["f", "g"], ["m"]),
             helper.make_node("QuantizeLinear", ["m", "q_s", "q_z"], ["y"])]
    counts, got, want = _run_both(graph_model(nodes, {"x": x}, ["y"], inits), {"x": x})
    assert counts == {"QLookupInt8": 1}, counts
    np.testing.assert_array_equal(got, want)
