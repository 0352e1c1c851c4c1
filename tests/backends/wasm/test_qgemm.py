"""The int8 GEMM (QGemmInt8: passes/int8.py, lowering/qgemm.py, emitters/qgemm.py) against ONNX
Runtime on models onnxruntime.quantization writes, and against the kernel's numpy reference on
hand-built QDQ graphs with extreme values. Differences are counted in output quantization steps."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from tests.parity import graph_model, ort_run, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.ir import UnsupportedModel
from wasinfer.lowering.qgemm import reference
from wasinfer.runtime import WasmModel

rng = np.random.default_rng(23)


class _Samples(CalibrationDataReader):
    def __init__(self, samples: list[dict[str, np.ndarray]]):
        self.left = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.left, None)


def _mlp(product: str, m: int | str, k: int, hidden: int, n: int) -> onnx.ModelProto:
    """x [m, k] → product with a bias (Gemm transB=1 with C, or MatMul + Add) → Relu → MatMul → y [m, n]."""
    inits = {"w1": rng.normal(0, 0.3, (hidden, k) if product == "gemm" else (k, hidden)),
             "b1": rng.normal(0, 0.1, hidden), "w2": rng.normal(0, 0.3, (hidden, n))}
    first = ([helper.make_node("Gemm", ["x", "w1", "b1"], ["hb"], transB=1)] if product == "gemm" else
             [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"])])
    nodes = [*first, helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
                              [numpy_helper.from_array(v.astype(np.float32), name) for name, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _quantize(model: onnx.ModelProto, samples: list[dict[str, np.ndarray]], tmp: Path, per_channel: bool,
              activations: QuantType, weights: QuantType = QuantType.QInt8) -> onnx.ModelProto:
    onnx.save(model, tmp / "float.onnx")
    logging.disable(logging.WARNING)  # the quantizer's advice to pre-process the model
    try:
        quantize_static(tmp / "float.onnx", tmp / "qdq.onnx", _Samples(samples), per_channel=per_channel,
                        quant_format=QuantFormat.QDQ, activation_type=activations, weight_type=weights)
    finally:
        logging.disable(logging.NOTSET)
    return onnx.load(tmp / "qdq.onnx")


def _steps(model: onnx.ModelProto, got: np.ndarray, want: np.ndarray) -> float:
    """The largest difference in steps of the output's quantization (y_scale)."""
    y_scale = float(numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "y_scale")))
    return float(np.abs(got.astype(np.float64) - want).max()) / y_scale


SIZES = [(1, 20, 33, 6), (3, 17, 64, 1), (17, 33, 17, 40), (5, 301, 9, 3)]  # m, k, hidden, n


@pytest.mark.parametrize("activations", [QuantType.QInt8, QuantType.QUInt8], ids=["s8", "u8"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
@pytest.mark.parametrize("product", ["matmul", "gemm"])
def test_onnx_runtime_qdq_products_run_in_int8_and_match(product: str, per_channel: bool, activations: QuantType,
                                                         tmp_path: Path) -> None:
    for m, k, hidden, n in SIZES:
        samples = [{"x": rng.random((m, k), np.float32) * 2 - 0.5} for _ in range(4)]
        model = _quantize(_mlp(product, m, k, hidden, n), samples, tmp_path, per_channel, activations)
        result = convert_onnx(model)
        ops = result.stats["ops"]
        assert "QGemmInt8" in ops and "MatMul" not in ops and "Gemm" not in ops, ops  # type: ignore[operator]
        for feeds in samples[:2]:
            want, = ort_run(model, feeds)
            got = WasmModel(result.wasm).run(feeds)["y"]
            # measured: 0 steps (MLAS's requantisation, the same float32 operations) in every case here
            assert _steps(model, got, want) == 0, (m, k, hidden, n)


def test_per_sample_batch_runs_the_single_row_kernel(tmp_path: Path) -> None:
    """A dynamic batch dim runs per sample (M = 1 rows); each sample equals ONNX Runtime's whole batch."""
    samples = [{"x": rng.random((8, 64), np.float32) * 2 - 0.5} for _ in range(4)]
    model = _quantize(_mlp("gemm", "batch", 64, 48, 10), samples, tmp_path, True, QuantType.QUInt8)
    result = convert_onnx(model, max_batch=8)
    assert "QGemmInt8" in result.stats["ops"]  # type: ignore[operator]
    want, = ort_run(model, samples[0])
    got = WasmModel(result.wasm).run(samples[0])["y"]
    assert got.shape == (8, 10) and _steps(model, got, want) == 0


def test_unmatched_patterns_keep_the_float_path(tmp_path: Path) -> None:
    """uint8 weights (zero points of 128, not symmetric) are not fused: the float path runs them,
    within one step of ONNX Runtime's integer kernels."""
    samples = [{"x": rng.random((3, 20), np.float32) * 2 - 0.5} for _ in range(4)]
    model = _quantize(_mlp("matmul", 3, 20, 24, 5), samples, tmp_path, False, QuantType.QUInt8, QuantType.QUInt8)
    ops = convert_onnx(model).stats["ops"]
    assert "QGemmInt8" not in ops and "MatMul" in ops, ops  # type: ignore[operator]
    want, = ort_run(model, samples[0])
    got, = wasm_run(model, samples[0])
    assert _steps(model, got, want) <= 1


def _qdq_model(a_dtype: type, y_dtype: type, w: np.ndarray, a_zero: int, y_zero: int, scales: dict[str, np.ndarray],
               m: int, bias: np.ndarray | None, w_zero: np.ndarray | None = None, **gemm: float) -> onnx.ModelProto:
    """a (int) → DequantizeLinear → Gemm(DequantizeLinear(w), bias int32) → QuantizeLinear → y (int)."""
    inits = {"w": w, "w_scale": scales["w"], "a_scale": scales["a"], "a_zero": np.array(a_zero, a_dtype),
             "y_scale": scales["y"], "y_zero": np.array(y_zero, y_dtype)}
    w_inputs = ["w", "w_scale"]
    if w_zero is not None:
        inits["w_zero"] = w_zero
        w_inputs.append("w_zero")
    nodes = [helper.make_node("DequantizeLinear", ["a", "a_scale", "a_zero"], ["a_f"]),
             helper.make_node("DequantizeLinear", w_inputs, ["w_f"], axis=1)]
    inputs = ["a_f", "w_f"]
    if bias is not None:
        inits.update(bias=bias, bias_scale=(scales["a"] * scales["w"]).astype(np.float32))
        nodes.append(helper.make_node("DequantizeLinear", ["bias", "bias_scale"], ["bias_f"], axis=0))
        inputs.append("bias_f")
    nodes += [helper.make_node("Gemm", inputs, ["p"], **gemm),
              helper.make_node("QuantizeLinear", ["p", "y_scale", "y_zero"], ["y"])]
    return graph_model(nodes, {"a": np.zeros((m, w.shape[0]), a_dtype)}, ["y"], inits)


@pytest.mark.parametrize("a_dtype,y_dtype", [(np.int8, np.int8), (np.uint8, np.uint8), (np.uint8, np.int8)])
def test_extreme_values_accumulate_exactly_and_saturate(a_dtype: type, y_dtype: type) -> None:
    """A at its range's ends and W at ±127/-128 (the largest i16 pair sums the dot makes), K odd,
    outputs saturating both ways: bit for bit the kernel's reference (int64 accumulation, float32
    requantisation) and ONNX Runtime."""
    m, k, n = 6, 131, 37
    info = np.iinfo(a_dtype)
    a = rng.choice(np.array([info.min, info.max], a_dtype), (m, k))
    a[0] = rng.integers(info.min, info.max + 1, k)
    w = rng.choice(np.array([-128, 127, -127], np.int8), (k, n))
    w[:, 0] = rng.integers(-128, 128, k)
    a_zero = 3 if a_dtype == np.int8 else 131
    y_zero = -5 if y_dtype == np.int8 else 122
    scales = {"a": np.float32(0.02), "w": rng.uniform(0.001, 0.01, n).astype(np.float32), "y": np.float32(0.3)}
    bias = rng.integers(-2**20, 2**20, n).astype(np.int32)
    model = _qdq_model(a_dtype, y_dtype, w, a_zero, y_zero, scales, m, bias)
    result = convert_onnx(model)
    assert result.stats["ops"] == ["QGemmInt8"]
    got = WasmModel(result.wasm).run({"a": a})["y"]
    multiplier = (scales["a"] * scales["w"]).astype(np.float32) / scales["y"]
    want = reference(a, a_zero, w, bias, multiplier, y_zero, np.dtype(y_dtype))
    np.testing.assert_array_equal(got, want)
    info_y = np.iinfo(y_dtype)
    assert (got == info_y.min).any() and (got == info_y.max).any()  # saturated both ways
    np.testing.assert_array_equal(got, ort_run(model, {"a": a})[0])


@pytest.mark.parametrize("case", ["alpha", "weight_zero_point"])
def test_products_the_kernel_cannot_express_keep_the_float_path(case: str) -> None:
    """Gemm's alpha (ONNX Runtime folds it into its multiplier in an order of its own) and a nonzero
    weight zero point (a per-row correction the kernel does not compute) are not fused; the
    float path stays within one step of ONNX Runtime."""
    m, k, n = 3, 40, 12
    a = rng.integers(-128, 128, (m, k)).astype(np.int8)
    w = rng.integers(-100, 100, (k, n)).astype(np.int8)
    scales = {"a": np.float32(0.02), "w": rng.uniform(0.001, 0.01, n).astype(np.float32), "y": np.float32(0.05)}
    extra: dict[str, object] = {"alpha": 0.5} if case == "alpha" else {"w_zero": np.full(n, 3, np.int8)}
    model = _qdq_model(np.int8, np.int8, w, 1, 2, scales, m, None, **extra)  # type: ignore[arg-type]
    ops = convert_onnx(model).stats["ops"]
    assert "QGemmInt8" not in ops and "Gemm" in ops, ops  # type: ignore[operator]
    got, = wasm_run(model, {"a": a})
    want, = ort_run(model, {"a": a})
    assert np.abs(got.astype(np.int32) - want).max() <= 1


def test_matmul_of_rank_three_runs_its_leading_dims_as_rows() -> None:
    """A [2, 5, K] @ W [K, N]: the leading dims are rows of one product, the output [2, 5, N]."""
    k, n = 19, 21
    a = rng.integers(0, 256, (2, 5, k)).astype(np.uint8)
    inits = {"w": rng.integers(-127, 128, (k, n)).astype(np.int8), "w_scale": np.float32(0.01),
             "a_scale": np.float32(0.03), "a_zero": np.array(120, np.uint8), "y_scale": np.float32(0.4),
             "y_zero": np.array(-3, np.int8)}
    nodes = [helper.make_node("DequantizeLinear", ["a", "a_scale", "a_zero"], ["a_f"]),
             helper.make_node("DequantizeLinear", ["w", "w_scale"], ["w_f"]),
             helper.make_node("MatMul", ["a_f", "w_f"], ["p"]),
             helper.make_node("QuantizeLinear", ["p", "y_scale", "y_zero"], ["y"])]
    model = graph_model(nodes, {"a": a}, ["y"], inits)
    result = convert_onnx(model)
    assert result.stats["ops"] == ["QGemmInt8"]
    got = WasmModel(result.wasm).run({"a": a})["y"]
    assert got.shape == (2, 5, n)
    np.testing.assert_array_equal(got, ort_run(model, {"a": a})[0])


def test_a_model_calling_the_internal_op_wrongly_is_declined_by_name() -> None:
    """QGemmInt8 is the compiler's own op; a model that uses it with the wrong inputs gets a
    problem naming the node, not an exception from inside the compiler."""
    node = helper.make_node("QGemmInt8", ["a", "w"], ["y"], name="mine", domain="wasinfer")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.INT8, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.INT8, [1, 3])],
                              [numpy_helper.from_array(np.zeros((4, 3), np.int8), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("wasinfer", 1)])
    with pytest.raises(UnsupportedModel, match=r"mine.*QGemmInt8.*expects inputs"):
        convert_onnx(model)
