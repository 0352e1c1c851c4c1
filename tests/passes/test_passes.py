"""Graph passes: folding, BN folding, activation fusion, memory reuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.parity import assert_matches_ort
from wasinfer.artifact import convert_onnx
from wasinfer.frontends import load_onnx
from wasinfer.passes import fold_batchnorm, fold_constants, fuse_activations, plan_memory


def conv_bn_relu_model() -> helper.ModelProto:
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(v, n) for n, v in {
        "w": rng.standard_normal((4, 3, 1, 1)).astype(np.float32),
        "scale": rng.uniform(0.5, 2, 4).astype(np.float32), "bias": rng.standard_normal(4).astype(np.float32),
        "mean": rng.standard_normal(4).astype(np.float32), "var": rng.uniform(0.5, 2, 4).astype(np.float32),
        "shape": np.array([1, 4 * 5 * 5], np.int64)}.items()]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["b"], name="bn"),
             helper.make_node("Relu", ["b"], ["r"], name="relu"),
             helper.make_node("Reshape", ["r", "shape"], ["y"], name="flat")]
    graph = helper.make_graph(nodes, "cbr", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 100])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_bn_folds_into_conv_and_relu_fuses() -> None:
    graph = load_onnx(conv_bn_relu_model()).graph
    assert fold_batchnorm(graph) == 1
    assert fuse_activations(graph) == 1
    assert [n.op_type for n in graph.nodes] == ["Conv", "Reshape"]
    assert graph.nodes[0].activation is not None and graph.nodes[0].activation.op_type == "Relu"


def test_folded_model_still_matches_onnxruntime() -> None:
    x = np.random.default_rng(4).standard_normal((1, 3, 5, 5)).astype(np.float32)
    assert_matches_ort(conv_bn_relu_model(), {"x": x})


def test_constant_subgraph_is_folded() -> None:
    nodes = [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.ones((2, 2), np.float32))),
             helper.make_node("Add", ["k", "k"], ["k2"]), helper.make_node("Mul", ["x", "k2"], ["y"])]
    graph_proto = helper.make_graph(nodes, "f", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])])
    graph = load_onnx(helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", 13)])).graph
    assert fold_constants(graph) == 2
    assert [n.op_type for n in graph.nodes] == ["Mul"]
    np.testing.assert_array_equal(graph.constants["k2"], np.full((2, 2), 2, np.float32))


def test_memory_plan_reuses_dead_buffers_and_never_overlaps_live_ones() -> None:
    # a chain of 6 relus: only two buffers need to be alive at once
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=f"r{i}") for i in range(6)]
    graph_proto = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [256])],
                                    [helper.make_tensor_value_info("t6", TensorProto.FLOAT, [256])])
    graph = load_onnx(helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", 13)])).graph
    plan = plan_memory(graph, {})
    assert plan.arena_size < plan.naive_size
    assert plan.arena_size <= 3 * 1024
    for node in graph.nodes:  # input and output of each node must not overlap
        a, b = plan.offsets[node.inputs[0]], plan.offsets[node.outputs[0]]
        assert abs(a - b) >= 1024


def _small_cnn(opset: int) -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(size=(8,)).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(size=(10, 8)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("Gemm", ["f", "w2"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_qdq_model_below_opset_19_folds_its_dequantized_weights(tmp_path: Path) -> None:
    """ONNX Runtime's quantizer writes QDQ models at the model's opset (13 here); ONNX's reference
    evaluator implements DequantizeLinear only from 19, so folding the weights' DequantizeLinear
    used to crash the converter with a traceback. ONNX Runtime evaluates those nodes instead."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(8)
    samples = [{"x": rng.random((1, 3, 16, 16)).astype(np.float32)} for _ in range(4)]

    class Samples(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.left, None)

    onnx.save(_small_cnn(13), tmp_path / "float.onnx")
    # uint8 weights (nonzero zero points): the int8 kernels of passes/int8.py take none of them, so all fold
    quantize_static(tmp_path / "float.onnx", tmp_path / "qdq.onnx", Samples(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8)
    model = onnx.load(tmp_path / "qdq.onnx")
    assert {n.op_type for n in model.graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) < 19
    result = convert_onnx(model)
    weights = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0].endswith("_quantized")]
    assert len(weights) == 3  # w1, b1, w2
    assert not {"QGemmInt8", "QConvInt8"} & set(result.stats["ops"])  # type: ignore[arg-type]
    assert result.stats["folded"] >= len(weights)  # type: ignore[operator]
    assert_matches_ort(model, samples[0])
