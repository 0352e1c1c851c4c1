"""The int8 convolution (QConvInt8: passes/int8.py, lowering/qconv.py, emitters/qconv.py) against
ONNX Runtime on models onnxruntime.quantization writes (static QDQ and QOperator, per tensor and
per channel, int8 and uint8 activations), and against the kernel's numpy reference on hand-built
QDQ graphs with extreme values. Differences are counted in output quantization steps."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from tests.frontends import test_tflite_int8 as tflite_cases
from tests.model_zoo import mobilenet_like
from tests.parity import graph_model, ort_run
from tests.tflite_builder import TfliteBuilder, run_litert
from wasinfer.artifact import convert_onnx
from wasinfer.artifact.convert import convert_model
from wasinfer.artifact.metadata import read_metadata, sections
from wasinfer.artifact.variants import has_relaxed_code, select_code
from wasinfer.backends.wasm.emitters import qconv as qconv_emitter
from wasinfer.lowering.qconv import reference
from wasinfer.runtime import WasmModel, make_engine

rng = np.random.default_rng(31)


class _Samples(CalibrationDataReader):
    def __init__(self, samples: list[dict[str, np.ndarray]]):
        self.left = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.left, None)


def _conv(x_shape: tuple[int, ...], out_channels: int, kernel: tuple[int, ...], bias: bool = True,
          **attrs: Any) -> onnx.ModelProto:
    """x → Conv(w, b, attrs) → y, float32 weights the quantizer quantizes."""
    group = int(attrs.get("group", 1))
    w = rng.normal(0, 0.5, (out_channels, x_shape[1] // group, *kernel)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.normal(0, 0.2, out_channels).astype(np.float32), "b"))
        inputs.append("b")
    node = helper.make_node("Conv", inputs, ["y"], **attrs)
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _quantize(model: onnx.ModelProto, samples: list[dict[str, np.ndarray]], tmp: Path, per_channel: bool,
              activations: QuantType, quant_format: QuantFormat = QuantFormat.QDQ,
              reduce_range: bool = False) -> onnx.ModelProto:
    onnx.save(model, tmp / "float.onnx")
    logging.disable(logging.WARNING)  # the quantizer's advice to pre-process the model
    try:
        quantize_static(tmp / "float.onnx", tmp / "q.onnx", _Samples(samples), per_channel=per_channel,
                        quant_format=quant_format, activation_type=activations, weight_type=QuantType.QInt8,
                        reduce_range=reduce_range)
    finally:
        logging.disable(logging.NOTSET)
    return onnx.load(tmp / "q.onnx")


def _steps(model: onnx.ModelProto, got: np.ndarray, want: np.ndarray) -> float:
    """The largest difference in steps of the output's quantization (y_scale): both are dequantized
    integers, so a whole number of steps, up to float32 rounding."""
    y_scale = float(numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "y_scale")))
    return float(np.rint(np.abs(got.astype(np.float64) - want).max() / y_scale))


# x shape, out channels, kernel, attributes: odd channel counts and K, position tails, stride 2,
# pads (asymmetric too), groups, depthwise (with a channel multiplier), dilation, 1-D, batch 2,
# fewer positions than one register tile
CASES: dict[str, tuple[tuple[int, ...], int, tuple[int, ...], dict[str, Any]]] = {
    "3x3_first_layer": ((1, 3, 12, 12), 8, (3, 3), {"pads": [1, 1, 1, 1]}),
    "pointwise_odd": ((1, 17, 9, 7), 13, (1, 1), {}),
    "3x3_stride2": ((1, 8, 11, 11), 10, (3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "stride2_rows_of_9": ((1, 3, 6, 18), 5, (3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "stride2_wide_depthwise": ((1, 6, 5, 37), 6, (3, 3), {"group": 6, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "depthwise": ((1, 12, 10, 10), 12, (3, 3), {"group": 12, "pads": [1, 1, 1, 1]}),
    "depthwise_stride2": ((1, 9, 9, 9), 9, (3, 3), {"group": 9, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "depthwise_multiplier": ((1, 4, 8, 8), 8, (3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),
    "grouped_dilated": ((1, 8, 12, 12), 12, (3, 3), {"group": 4, "dilations": [2, 2], "pads": [2, 2, 2, 2]}),
    "asymmetric_pads": ((2, 5, 7, 9), 6, (2, 3), {"pads": [0, 1, 2, 0]}),
    "one_d": ((1, 6, 30), 10, (5,), {"pads": [2, 2]}),
    "tiny_pointwise": ((1, 16, 2, 2), 10, (1, 1), {}),
    "same_upper_stride2": ((1, 4, 10, 9), 5, (3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    "one_d_strided_dilated": ((1, 3, 41), 7, (3,), {"strides": [3], "dilations": [2], "pads": [1, 0]}),
}


@pytest.mark.parametrize("activations", [QuantType.QInt8, QuantType.QUInt8], ids=["s8", "u8"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
@pytest.mark.parametrize("quant_format", [QuantFormat.QDQ, QuantFormat.QOperator], ids=["qdq", "qoperator"])
def test_onnx_runtime_quantized_convs_run_in_int8_and_match(quant_format: QuantFormat, per_channel: bool,
                                                            activations: QuantType, tmp_path: Path) -> None:
    worst: dict[str, float] = {}
    for name, (x_shape, out_channels, kernel, attrs) in CASES.items():
        model = _conv(x_shape, out_channels, kernel, **attrs)
        samples = [{"x": rng.random(x_shape, np.float32) * 2 - 0.5} for _ in range(4)]
        quantized = _quantize(model, samples, tmp_path, per_channel, activations, quant_format)
        result = convert_onnx(quantized)
        ops = result.stats["ops"]
        assert "QConvInt8" in ops and "Conv" not in ops, (name, ops)  # type: ignore[operator]
        module = WasmModel(result.wasm)
        for feeds in samples[:2]:
            want, = ort_run(quantized, feeds)
            got = module.run(feeds)["y"]
            assert got.shape == want.shape, name
            worst[name] = max(worst.get(name, 0.0), _steps(quantized, got, want))
    assert max(worst.values()) <= 1, worst


@dataclass(frozen=True)
class Extremes:
    """A QDQ conv at its values' ends, as the extremes tests build it: the model, its input, and the kernel's
    reference output (int64 sums, float32 requantisation)."""

    model: onnx.ModelProto
    x: np.ndarray
    want: np.ndarray


def extremes(rng: np.random.Generator, x_dtype: type, y_dtype: type, channels: int, w_values: tuple[int, ...],
             w_first: tuple[int, int], kernel: tuple[int, int] = (3, 3), pads: tuple[int, ...] = (1, 2, 1, 0),
             strides: tuple[int, int] = (2, 2)) -> Extremes:
    """X at its range's ends (its first channel anywhere), W drawn from `w_values` (its first output channel
    anywhere in [w_first[0], w_first[1])), 11 output channels, zero points off 0, a bias of any int32."""
    m = 11
    info = np.iinfo(x_dtype)
    x = rng.choice(np.array([info.min, info.max], x_dtype), (1, channels, 13, 10))
    x[0, 0] = rng.integers(info.min, info.max + 1, (13, 10))
    w = rng.choice(np.array(w_values, np.int8), (m, channels, *kernel))
    w[0] = rng.integers(*w_first, (channels, *kernel))
    x_zero = 3 if x_dtype == np.int8 else 131
    y_zero = -5 if y_dtype == np.int8 else 122
    x_scale, y_scale = np.float32(0.02), np.float32(0.3)
    w_scale = rng.uniform(0.001, 0.01, m).astype(np.float32)
    bias = rng.integers(-2**20, 2**20, m).astype(np.int32)
    inits = {"w": w, "w_scale": w_scale, "x_scale": x_scale, "x_zero": np.array(x_zero, x_dtype),
             "y_scale": y_scale, "y_zero": np.array(y_zero, y_dtype), "bias": bias,
             "bias_scale": (x_scale * w_scale).astype(np.float32)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zero"], ["x_f"]),
             helper.make_node("DequantizeLinear", ["w", "w_scale"], ["w_f"], axis=0),
             helper.make_node("DequantizeLinear", ["bias", "bias_scale"], ["bias_f"], axis=0),
             helper.make_node("Conv", ["x_f", "w_f", "bias_f"], ["p"], strides=list(strides), pads=list(pads)),
             helper.make_node("QuantizeLinear", ["p", "y_scale", "y_zero"], ["y"])]
    multiplier = (x_scale * w_scale).astype(np.float32) / y_scale
    want = reference(x, x_zero, w, bias, multiplier, y_zero, np.dtype(y_dtype), strides=strides, pads=pads)
    return Extremes(graph_model(nodes, {"x": x}, ["y"], inits), x, want)


def saturates(y: np.ndarray) -> bool:
    """Whether some outputs are at each end of their dtype's range."""
    info = np.iinfo(y.dtype)
    return bool((y == info.min).any() and (y == info.max).any())


@pytest.mark.parametrize("x_dtype,y_dtype", [(np.int8, np.int8), (np.uint8, np.uint8), (np.uint8, np.int8)])
def test_extreme_values_accumulate_exactly_and_saturate(x_dtype: type, y_dtype: type) -> None:
    """X at its range's ends and W at ±127/-128 (the largest i16 pair sums the dot makes), an odd
    K, pads (read as x_zero), stride 2, outputs saturating both ways: bit for bit the kernel's
    reference (int64 sums, float32 requantisation) and ONNX Runtime."""
    case = extremes(rng, x_dtype, y_dtype, 7, (-128, 127, -127), (-128, 128))
    result = convert_onnx(case.model)
    assert result.stats["ops"] == ["QConvInt8"]
    got = WasmModel(result.wasm).run({"x": case.x})["y"]
    np.testing.assert_array_equal(got, case.want)
    assert saturates(got)
    np.testing.assert_array_equal(got, ort_run(case.model, {"x": case.x})[0])


def test_a_quantized_cnn_runs_every_conv_in_int8(tmp_path: Path) -> None:
    """tests/model_zoo.py's mobilenet_like (pointwise, depthwise, stride 2), quantized static QDQ
    per channel: every Conv is fused, and the output stays within one step of ONNX Runtime's, for
    one image and for a batch of three (its dynamic batch dim runs per sample)."""
    model = mobilenet_like()
    name = model.graph.input[0].name
    samples = [{name: rng.random((3, 3, 32, 32), np.float32)} for _ in range(4)]
    quantized = _quantize(model, samples, tmp_path, True, QuantType.QUInt8)
    result = convert_onnx(quantized, max_batch=4)
    ops = result.stats["ops"]
    assert "QConvInt8" in ops and "Conv" not in ops, ops  # type: ignore[operator]
    output = quantized.graph.output[0].name
    dq = next(n for n in quantized.graph.node if output in n.output)
    y_scale = float(numpy_helper.to_array(next(i for i in quantized.graph.initializer if i.name == dq.input[1])))
    module = WasmModel(result.wasm)
    for feeds in ({name: samples[0][name][:1]}, samples[1]):
        got = module.run(feeds)[output]
        want, = ort_run(quantized, feeds)
        assert got.shape == want.shape and np.rint(np.abs(got - want).max() / y_scale) <= 1


def test_convs_the_kernel_cannot_express_keep_the_float_path(tmp_path: Path) -> None:
    """A kernel of more taps than the column copy unrolls (ops/quantized.py QCONV_MAX_TAPS) is
    not fused; the float path runs it within one step of ONNX Runtime."""
    model = _conv((1, 2, 1, 90), 3, (1, 65), pads=[0, 32, 0, 32])
    samples = [{"x": rng.random((1, 2, 1, 90), np.float32)} for _ in range(2)]
    quantized = _quantize(model, samples, tmp_path, False, QuantType.QInt8)
    result = convert_onnx(quantized)
    ops = result.stats["ops"]
    assert "QConvInt8" not in ops and "Conv" in ops, ops  # type: ignore[operator]
    got = WasmModel(result.wasm).run(samples[0])["y"]
    assert _steps(quantized, got, ort_run(quantized, samples[0])[0]) <= 1


@pytest.mark.parametrize("case", ["conv", "conv_relu", "conv_relu6_valid_stride2", "depthwise"])
def test_full_integer_tflite_convs_run_in_int8_and_match_litert(case: str, tmp_path: Path) -> None:
    """A full-integer TFLite conv (int8: symmetric per-channel weights) reaches the fusion as
    DequantizeLinear → Transpose (NHWC → NCHW) → Conv → Relu/Clip (its fused activation) →
    QuantizeLinear: the Transpose moves to the integers, the activation becomes the output's
    integer range, and the module stays within one step of LiteRT."""
    b = TfliteBuilder()
    outputs = tflite_cases.CASES[case](b, np.int8)
    raw = b.build(outputs)
    path = tmp_path / "model.tflite"
    path.write_bytes(raw)
    result = convert_model(path)
    assert set(result.stats["ops"]) == {"QConvInt8", "Transpose"}, result.stats["ops"]  # type: ignore[arg-type]
    feeds = tflite_cases.feeds_for(b)
    want, got = run_litert(raw, feeds), WasmModel(result.wasm).run(feeds)
    name = b.tensors[outputs[0]].name
    worst, _ = tflite_cases.steps_apart(name, want[name], got[name], 1.0)
    assert worst <= 1


def test_relu_and_transpose_around_a_qdq_conv_are_taken_in() -> None:
    """x NHWC (int8) → DequantizeLinear → Transpose → Conv → Clip(0, 6) → QuantizeLinear (uint8)
    and the same with Relu: one Transpose of the integers and one QConvInt8, within one step of
    ONNX Runtime, which runs it as written."""
    x = rng.integers(-128, 128, (1, 9, 11, 6)).astype(np.int8)
    w = rng.integers(-127, 128, (7, 6, 3, 3)).astype(np.int8)
    for clamp in ("Relu", "Clip"):
        inits: dict[str, np.ndarray] = {
            "w": w, "w_scale": rng.uniform(0.002, 0.01, 7).astype(np.float32), "x_scale": np.float32(0.05),
            "x_zero": np.array(-3, np.int8), "y_scale": np.float32(0.02), "y_zero": np.array(20, np.uint8),
            "lo": np.float32(0.0), "hi": np.float32(3.0)}
        nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zero"], ["x_f"]),
                 helper.make_node("Transpose", ["x_f"], ["x_nchw"], perm=[0, 3, 1, 2]),
                 helper.make_node("DequantizeLinear", ["w", "w_scale"], ["w_f"], axis=0),
                 helper.make_node("Conv", ["x_nchw", "w_f"], ["p"], pads=[1, 1, 1, 1]),
                 helper.make_node(clamp, ["p", "lo", "hi"] if clamp == "Clip" else ["p"], ["c"]),
                 helper.make_node("QuantizeLinear", ["c", "y_scale", "y_zero"], ["y"])]
        model = graph_model(nodes, {"x": x}, ["y"], inits)
        result = convert_onnx(model)
        assert sorted(result.stats["ops"]) == ["QConvInt8", "Transpose"], result.stats["ops"]  # type: ignore[arg-type]
        got = WasmModel(result.wasm).run({"x": x})["y"]
        want, = ort_run(model, {"x": x})
        assert np.abs(got.astype(np.int32) - want).max() <= 1, clamp
        assert got.min() == 20 and (clamp == "Relu" or got.max() == 20 + 150)  # the range: [Q(0), Q(3)]


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel,multiplier", [((3, 3), 1), ((5, 2), 2)], ids=["3x3", "5x2_x2"])
def test_depthwise_sliding_kernel_is_exact(stride: int, kernel: tuple[int, int], multiplier: int) -> None:
    """Depthwise convs with 8 or more outputs per row run the sliding kernel (no column buffer):
    stride 1 (even and odd outputs summed apart, then interleaved) and 2, odd and even kernel
    widths, a channel multiplier, asymmetric pads, a row length that is no multiple of 8 (the last
    eight overlap), two samples: bit for bit the kernel's reference and ONNX Runtime."""
    channels, pads = 5, (2, 1, 0, 2)
    x = rng.integers(0, 256, (2, channels, 9, 21)).astype(np.uint8)
    w = rng.integers(-128, 128, (channels * multiplier, 1, *kernel)).astype(np.int8)
    w_scale = rng.uniform(0.001, 0.01, channels * multiplier).astype(np.float32)
    x_scale, y_scale = np.float32(0.03), np.float32(0.05)
    bias = rng.integers(-5000, 5000, channels * multiplier).astype(np.int32)
    inits = {"w": w, "w_scale": w_scale, "x_scale": x_scale, "x_zero": np.array(117, np.uint8), "y_scale": y_scale,
             "y_zero": np.array(-7, np.int8), "bias": bias, "bias_scale": (x_scale * w_scale).astype(np.float32)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zero"], ["x_f"]),
             helper.make_node("DequantizeLinear", ["w", "w_scale"], ["w_f"], axis=0),
             helper.make_node("DequantizeLinear", ["bias", "bias_scale"], ["bias_f"], axis=0),
             helper.make_node("Conv", ["x_f", "w_f", "bias_f"], ["p"], group=channels, strides=[stride, stride],
                              pads=list(pads)),
             helper.make_node("QuantizeLinear", ["p", "y_scale", "y_zero"], ["y"])]
    model = graph_model(nodes, {"x": x}, ["y"], inits)
    result = convert_onnx(model)
    assert result.stats["ops"] == ["QConvInt8"]
    got = WasmModel(result.wasm).run({"x": x})["y"]
    multiplier_f = (x_scale * w_scale).astype(np.float32) / y_scale
    want = reference(x, 117, w, bias, multiplier_f, -7, np.dtype(np.int8), strides=(stride, stride), pads=pads,
                     groups=channels)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, ort_run(model, {"x": x})[0])


RELAXED_DOT_OP = b"\xfd\x93\x02"  # i32x4.relaxed_dot_i8x16_i7x16_add_s (0xfd 0x113)


@pytest.fixture
def relaxed_dot(monkeypatch: pytest.MonkeyPatch) -> None:
    """The relaxed code variant's convs on the 8-bit relaxed dot (emitters/qconv.py RELAXED_DOT)."""
    monkeypatch.setattr(qconv_emitter, "RELAXED_DOT", True)


def _plain_and_relaxed(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The model's output from its plain-SIMD build and from its relaxed one (which must use the dot)."""
    plain, relaxed = convert_onnx(model, simd="plain"), convert_onnx(model, simd="relaxed")
    assert "QConvInt8" in plain.stats["ops"], plain.stats["ops"]  # type: ignore[operator]
    assert RELAXED_DOT_OP in relaxed.wasm and RELAXED_DOT_OP not in plain.wasm
    output = model.graph.output[0].name
    return WasmModel(plain.wasm).run(feeds)[output], WasmModel(relaxed.wasm).run(feeds)[output]


# the GEMM-shaped convs (the relaxed dot's): a k quad's tail of 1, 2 and 3 rows, pointwise read in
# place and through the column buffer, 1 and several panels of output channels with a partial last
# one, position tails, a group of one output channel (1 x 32 tiles), stride 2, pads, dilation, 1-D
RELAXED_CASES = {name: CASES[name] for name in ("3x3_first_layer", "pointwise_odd", "3x3_stride2", "stride2_rows_of_9",
                                                "grouped_dilated", "asymmetric_pads", "one_d", "tiny_pointwise",
                                                "same_upper_stride2")}
RELAXED_CASES["depthwise_narrow"] = ((1, 6, 5, 3), 6, (3, 3), {"group": 6, "pads": [1, 1, 1, 1]})
RELAXED_CASES["pointwise_k18"] = ((2, 18, 4, 5), 9, (1, 1), {})


@pytest.mark.parametrize("activations,per_channel", [(QuantType.QUInt8, True), (QuantType.QInt8, False)],
                         ids=["u8_per_channel", "s8_per_tensor"])
def test_the_relaxed_dot_kernel_equals_the_plain_one_and_onnx_runtime(relaxed_dot: None, activations: QuantType,
                                                                       per_channel: bool, tmp_path: Path) -> None:
    """Models onnxruntime.quantization writes: the relaxed build's outputs are the plain build's
    bit for bit and within one step of ONNX Runtime's."""
    worst: dict[str, float] = {}
    for name, (x_shape, out_channels, kernel, attrs) in RELAXED_CASES.items():
        model = _conv(x_shape, out_channels, kernel, **attrs)
        samples = [{"x": rng.random(x_shape, np.float32) * 2 - 0.5} for _ in range(3)]
        quantized = _quantize(model, samples, tmp_path, per_channel, activations)
        plain, relaxed = _plain_and_relaxed(quantized, samples[0])
        np.testing.assert_array_equal(relaxed, plain, err_msg=name)
        worst[name] = _steps(quantized, relaxed, ort_run(quantized, samples[0])[0])
    assert max(worst.values()) <= 1, worst


@pytest.mark.parametrize("x_dtype,y_dtype", [(np.int8, np.int8), (np.uint8, np.uint8), (np.uint8, np.int8)])
@pytest.mark.parametrize("channels", [5, 6, 7, 16])
def test_the_relaxed_dot_kernel_is_exact_at_the_extremes(relaxed_dot: None, x_dtype: type, y_dtype: type,
                                                         channels: int) -> None:
    """X at its range's ends (every byte's top bit set or not: both halves of the split) and W at
    ±127/-128, K = 9 x channels (a last k quad of 1, 2, 3 rows or none), pads, stride 2, outputs
    saturating both ways: the relaxed build equals the kernel's reference, the plain build and
    ONNX Runtime, bit for bit."""
    rng = np.random.default_rng(channels)  # its own: the data (and whether it saturates) must not depend on test order
    case = extremes(rng, x_dtype, y_dtype, channels, (-128, 127, -127), (-128, 128))
    plain, relaxed = _plain_and_relaxed(case.model, {"x": case.x})
    np.testing.assert_array_equal(relaxed, case.want)
    np.testing.assert_array_equal(plain, case.want)
    assert saturates(relaxed)
    np.testing.assert_array_equal(relaxed, ort_run(case.model, {"x": case.x})[0])


@pytest.mark.parametrize("kernel", ["split", "narrow"])
def test_auto_carries_the_relaxed_dot_code_beside_the_plain_one(kernel: str, monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    """The two builds share their data and memory layout (the relaxed kernels read the plain one's
    packed weights, the narrow kernel's tables are in both, scratch has room for every kernel's
    blocks), so `--simd auto` keeps the relaxed code (attach_relaxed_code would refuse it
    otherwise), and an engine with relaxed SIMD, one without and the serving one (whose interrupt
    rewrite decodes the relaxed code) compute the same outputs: with the split kernel turned on,
    and with 7-bit weights (`reduce_range`), which take the narrow kernel by default."""
    monkeypatch.setattr(qconv_emitter, "RELAXED_DOT", kernel == "split")
    model = mobilenet_like()
    name = model.graph.input[0].name
    samples = [{name: rng.random((1, 3, 32, 32), np.float32)} for _ in range(3)]
    quantized = _quantize(model, samples, tmp_path, True, QuantType.QUInt8, reduce_range=kernel == "narrow")
    result = convert_onnx(quantized)
    assert json.loads(read_metadata(result.wasm).to_json())["compile_options"]["simd"] == "auto"
    assert has_relaxed_code(result.wasm)
    code = {relaxed: next(payload for sid, payload in sections(select_code(result.wasm, relaxed)) if sid == 10)
            for relaxed in (True, False)}
    assert RELAXED_DOT_OP in code[True] and RELAXED_DOT_OP not in code[False]
    output = quantized.graph.output[0].name
    with_dot = WasmModel(result.wasm).run(samples[0])[output]
    without = WasmModel(result.wasm, engine=make_engine(relaxed_simd=False)).run(samples[0])[output]
    np.testing.assert_array_equal(with_dot, without)
    served = WasmModel(result.wasm, deadline_seconds=60).run(samples[0])[output]  # rewritten for deadlines
    np.testing.assert_array_equal(served, without)


def _int8_weights(model: onnx.ModelProto) -> np.ndarray:
    """The quantized conv weight of a one-conv model the quantizer wrote."""
    found = [numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type == TensorProto.INT8 and
             len(i.dims) >= 3]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("activations,per_channel", [(QuantType.QUInt8, True), (QuantType.QInt8, True),
                                                     (QuantType.QUInt8, False)],
                         ids=["u8_per_channel", "s8_per_channel", "u8_per_tensor"])
def test_seven_bit_weights_take_the_relaxed_dot_by_default(activations: QuantType, per_channel: bool,
                                                           tmp_path: Path) -> None:
    """ONNX Runtime's `reduce_range` weights (-64..64): where every channel's weights lie within
    128 values (lowering/qconv.py narrow_weights), the relaxed build runs the narrow kernel (one
    relaxed dot per four products) with RELAXED_DOT off; its outputs are the plain build's bit
    for bit and within one step of ONNX Runtime's; a conv whose weights do not fit keeps the
    plain kernel."""
    used = 0
    for name, (x_shape, out_channels, kernel, attrs) in RELAXED_CASES.items():
        model = _conv(x_shape, out_channels, kernel, **attrs)
        samples = [{"x": rng.random(x_shape, np.float32) * 2 - 0.5} for _ in range(3)]
        quantized = _quantize(model, samples, tmp_path, per_channel, activations, reduce_range=True)
        w = _int8_weights(quantized).reshape(out_channels, -1).astype(np.int64)
        fits = (np.maximum(w.max(axis=1), 0) - np.minimum(w.min(axis=1), 0)).max() <= 127
        relaxed = convert_onnx(quantized, simd="relaxed").wasm
        assert (RELAXED_DOT_OP in relaxed) == fits, name
        used += fits
        got = WasmModel(relaxed).run(samples[0])["y"]
        np.testing.assert_array_equal(got, WasmModel(convert_onnx(quantized, simd="plain").wasm).run(samples[0])["y"],
                                      err_msg=name)
        assert _steps(quantized, got, ort_run(quantized, samples[0])[0]) <= 1, name
    assert used >= len(RELAXED_CASES) // 2, used  # most reduce_range weights fit


@pytest.mark.parametrize("x_dtype,y_dtype", [(np.int8, np.int8), (np.uint8, np.uint8), (np.uint8, np.int8)])
@pytest.mark.parametrize("window", [(-64, 63), (-10, 117), (3, 127), (-127, -3)])
def test_the_narrow_kernel_is_exact_at_the_extremes(x_dtype: type, y_dtype: type, window: tuple[int, int]) -> None:
    """7-bit weight windows at their ends (negative, positive only: the offset is 0 or the
    channel's minimum), X at its range's ends, K = 9 x 6 (a last k quad of 2 rows) and a
    pointwise K of 17 (1 row), pads, stride 2, outputs saturating both ways: bit for bit the
    kernel's reference, the plain build and ONNX Runtime."""
    rng = np.random.default_rng(window[0] & 0xFF)  # its own: the data must not depend on test order
    for channels, kernel, pads, strides in ((6, (3, 3), (1, 2, 1, 0), (2, 2)), (17, (1, 1), (0, 0, 0, 0), (1, 1))):
        case = extremes(rng, x_dtype, y_dtype, channels, window, (window[0], window[1] + 1), kernel, pads, strides)
        plain, relaxed = _plain_and_relaxed(case.model, {"x": case.x})
        np.testing.assert_array_equal(relaxed, case.want)
        np.testing.assert_array_equal(plain, case.want)
        np.testing.assert_array_equal(relaxed, ort_run(case.model, {"x": case.x})[0])
        assert saturates(relaxed)
