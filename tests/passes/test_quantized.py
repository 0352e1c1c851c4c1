"""ONNX Runtime's quantizer output (static QOperator and QDQ, dynamic) compiles and matches ONNX
Runtime on the same quantized model within one quantization step (passes/quantized.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

from tests.parity import ort_run, wasm_run
from wasinfer.artifact import convert_onnx

rng = np.random.default_rng(17)


def _cnn() -> onnx.ModelProto:
    """Conv (+ bias, per-channel weights), Relu, Add of two branches, Sigmoid, Concat, global pooling, Gemm."""
    inits = {"w1": rng.normal(0, 0.4, (8, 3, 3, 3)), "b1": rng.normal(0, 0.1, 8),
             "w2": rng.normal(0, 0.3, (8, 8, 1, 1)), "w3": rng.normal(0, 0.3, (8, 8, 3, 3)),
             "wf": rng.normal(0, 0.3, (10, 16)), "bf": rng.normal(0, 0.1, 10)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"]),
             helper.make_node("Conv", ["r1", "w3"], ["c3"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "c3"], ["a"]),
             helper.make_node("Sigmoid", ["a"], ["s"]),
             helper.make_node("Concat", ["s", "r1"], ["cat"], axis=1),
             helper.make_node("GlobalAveragePool", ["cat"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _mlp() -> onnx.ModelProto:
    inits = {"w1": rng.normal(0, 0.3, (20, 32)), "b1": rng.normal(0, 0.1, 32), "w2": rng.normal(0, 0.3, (32, 6))}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 20])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 6])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


class _Samples(CalibrationDataReader):
    def __init__(self, samples: list[dict[str, np.ndarray]]):
        self.left = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.left, None)


def _quantized(model: onnx.ModelProto, how: str, samples: list[dict[str, np.ndarray]], tmp: Path) -> onnx.ModelProto:
    onnx.save(model, tmp / "float.onnx")
    out = tmp / f"{how}.onnx"
    if how == "dynamic":
        quantize_dynamic(tmp / "float.onnx", out, weight_type=QuantType.QInt8)
    else:
        quantize_static(tmp / "float.onnx", out, _Samples(samples), per_channel=True,
                        quant_format=QuantFormat.QOperator if how == "qoperator" else QuantFormat.QDQ)
    return onnx.load(out)


@pytest.mark.parametrize("how", ["qoperator", "qdq", "dynamic"])
@pytest.mark.parametrize("make", [_cnn, _mlp], ids=["cnn", "mlp"])
def test_onnx_runtime_quantized_models_compile_and_match(make: object, how: str, tmp_path: Path) -> None:
    model = make()  # type: ignore[operator]
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    samples = [{"x": rng.random(shape, np.float32) * 2 - 0.5} for _ in range(6)]
    quantized = _quantized(model, how, samples, tmp_path)
    ops = {n.op_type for n in quantized.graph.node}
    expected = {"qoperator": {"QLinearConv", "QLinearMatMul"}, "qdq": {"DequantizeLinear"},
                "dynamic": {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}}[how]
    assert ops & expected, ops
    result = convert_onnx(quantized)
    assert not {"QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear"} & set(
        result.stats["ops"])  # type: ignore[arg-type]
    # static models' products (QLinearMatMul, QGemm, QDQ MatMul/Gemm) run as int8 GEMMs (passes/int8.py)
    assert ("QGemmInt8" in result.stats["ops"]) == (how != "dynamic"), result.stats["ops"]  # type: ignore[operator]
    for feeds in samples[:3]:
        want, = ort_run(quantized, feeds)
        got, = wasm_run(quantized, feeds)
        # within one int8 step of the output's range (measured: equal, or 2.4e-7 apart)
        step = float(np.abs(want).max()) / 127 + 1e-6
        np.testing.assert_allclose(got, want, rtol=0, atol=step)


def test_dynamic_quantization_fused_by_onnx_runtime_sessions(tmp_path: Path) -> None:
    """A dynamically quantized encoder as ONNX Runtime's session optimiser (extended level) writes it: its
    MatMulInteger products fused into com.microsoft DynamicQuantizeMatMul and MatMulIntegerToFloat."""
    import onnxruntime as ort

    from tests.model_zoo import transformer_encoder

    quantized = _quantized(transformer_encoder(), "dynamic", [], tmp_path)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "fused.onnx")
    ort.InferenceSession(quantized.SerializeToString(), options, providers=["CPUExecutionProvider"])
    fused = onnx.load(tmp_path / "fused.onnx")
    ops = {n.op_type for n in fused.graph.node}
    assert {"DynamicQuantizeMatMul", "MatMulIntegerToFloat"} <= ops, ops
    feeds = {"input_ids": rng.integers(0, 64, (2, 7)).astype(np.int64),
             "attention_mask": np.array([[1] * 7, [1] * 5 + [0] * 2], np.int64)}
    want = ort_run(fused, feeds)
    got = wasm_run(fused, feeds, max_batch=2, input_shapes={"input_ids": (1, 7), "attention_mask": (1, 7)})
    for expected, actual in zip(want, got, strict=True):
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)
