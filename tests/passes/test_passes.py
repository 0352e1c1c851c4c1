"""Graph passes: folding, BN folding, activation fusion, memory reuse."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.parity import assert_matches_ort, graph_model
from wasinfer.artifact import convert_onnx
from wasinfer.frontends import load_onnx
from wasinfer.ir import Graph
from wasinfer.passes import fold_batchnorm, fold_constants, fold_conv_affine, fuse_activations, plan_memory


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


def _silu_graph(extra: list[onnx.NodeProto], outputs: list[str], mul_inputs: tuple[str, str] = ("x", "s")) -> Graph:
    nodes = [helper.make_node("Conv", ["x0", "w"], ["x"], name="conv"), helper.make_node("Sigmoid", ["x"], ["s"]),
             *extra, helper.make_node("Mul", list(mul_inputs), ["y"], name="silu")]
    w = np.random.default_rng(5).standard_normal((4, 3, 1, 1)).astype(np.float32)
    return load_onnx(graph_model(nodes, {"x0": np.zeros((1, 3, 5, 5), np.float32)}, outputs, {"w": w})).graph


def test_silu_becomes_one_swish_left_unfused_in_the_conv() -> None:
    """Sigmoid(x) * x is one Swish in the Mul's place; it stays a kernel of its own (fused into the Conv's
    epilogue it measured no faster on YOLOX's SiLUs)."""
    graph = _silu_graph([], ["y"])
    assert fuse_activations(graph) == 1
    assert [(n.op_type, n.name, n.inputs, n.outputs) for n in graph.nodes] == [
        ("Conv", "conv", ["x0", "w"], ["x"]), ("Swish", "silu", ["x"], ["y"])]
    assert graph.nodes[0].activation is None and graph.nodes[1].attrs == {"alpha": 1.0}


def test_silu_is_left_alone_where_the_sigmoid_is_needed_elsewhere() -> None:
    for graph in (_silu_graph([], ["y", "s"]),  # the sigmoid is an output
                  _silu_graph([helper.make_node("Neg", ["s"], ["n"])], ["y", "n"]),  # another consumer
                  _silu_graph([], ["y"], ("s", "s")),  # sigmoid squared, not x times it
                  _silu_graph([helper.make_node("Neg", ["x"], ["n"])], ["y"], ("n", "s"))):  # -x times sigmoid(x)
        before = [n.op_type for n in graph.nodes]
        fuse_activations(graph)
        assert "Swish" not in [n.op_type for n in graph.nodes] and "Mul" in [n.op_type for n in graph.nodes], before


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


def _conv_chain(nodes: list[onnx.NodeProto], outputs: list[str], inits: dict[str, np.ndarray],
                channels: int = 4) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, channels, 6, 7)).astype(np.float32)
    return graph_model(nodes, {"x": x}, outputs, inits), {"x": x}


def _weights(out: int, inp: int, k: int, seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"w{k}": rng.standard_normal((out, inp, k, k)).astype(np.float32),
            f"b{k}": rng.standard_normal(out).astype(np.float32)}


@pytest.mark.parametrize("scale,shift", [
    (np.array([1.7], np.float32), np.array([0.3], np.float32)),  # PP-OCRv4's learnable affine: scalars
    (np.linspace(0.5, 2, 4, dtype=np.float32).reshape(4, 1, 1), np.arange(4, dtype=np.float32).reshape(1, 4, 1, 1)),
])
def test_mul_and_add_by_channel_constants_fold_into_the_conv_before_them(scale: np.ndarray,
                                                                          shift: np.ndarray) -> None:
    nodes = [helper.make_node("Conv", ["x", "w3", "b3"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Mul", ["s", "c"], ["m"]), helper.make_node("Add", ["m", "t"], ["y"])]
    model, feeds = _conv_chain(nodes, ["y"], {**_weights(4, 4, 3), "s": scale, "t": shift})
    graph = load_onnx(model).graph
    assert fold_conv_affine(graph) == 2
    assert [(n.op_type, n.outputs) for n in graph.nodes] == [("Conv", ["y"])]
    assert_matches_ort(model, feeds)


@pytest.mark.parametrize("group", [1, 2, 4])
def test_mul_and_add_fold_into_an_unpadded_conv_after_them(group: int) -> None:
    """Conv(x * s + t) = Conv'(x): weights scaled per input channel, sum(W * t) added to the bias."""
    w = _weights(8, 4 // group, 1)
    nodes = [helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Add", ["t", "m"], ["a"]),
             helper.make_node("Conv", ["a", "w1", "b1"], ["y"], group=group)]
    model, feeds = _conv_chain(nodes, ["y"], {**w, "s": np.array([0.5, -1.5, 2.0, 0.25], np.float32).reshape(4, 1, 1),
                                              "t": np.array([[[0.1]], [[-0.2]], [[0.3]], [[0.7]]], np.float32)})
    graph = load_onnx(model).graph
    assert fold_conv_affine(graph) == 2
    assert [(n.op_type, n.inputs[0]) for n in graph.nodes] == [("Conv", "x")]
    assert_matches_ort(model, feeds)


def test_affine_stays_where_folding_would_be_wrong() -> None:
    w3 = _weights(4, 4, 3)
    spatial = np.random.default_rng(8).standard_normal((1, 1, 6, 7)).astype(np.float32)
    cases = [
        # before a padded Conv: the padding would be zeros of x * s + t, not of x
        ([helper.make_node("Add", ["x", "t"], ["a"]), helper.make_node("Conv", ["a", "w3", "b3"], ["y"], pads=[1] * 4)],
         ["y"]),
        # the Conv's output has a second consumer
        ([helper.make_node("Conv", ["x", "w3", "b3"], ["c"], pads=[1] * 4), helper.make_node("Mul", ["c", "s"], ["y"]),
          helper.make_node("Relu", ["c"], ["r"])], ["y", "r"]),
        # a constant that varies along a spatial axis is no per-channel affine
        ([helper.make_node("Conv", ["x", "w3", "b3"], ["c"], pads=[1] * 4), helper.make_node("Mul", ["c", "p"], ["y"])],
         ["y"]),
    ]
    for nodes, outputs in cases:
        model, feeds = _conv_chain(nodes, outputs, {**w3, "t": np.array([0.5], np.float32),
                                                    "s": np.array([2.0], np.float32), "p": spatial})
        graph = load_onnx(model).graph
        assert fold_conv_affine(graph) == 0, [n.op_type for n in graph.nodes]
        assert_matches_ort(model, feeds)


def test_weights_shared_by_two_convs_fold_into_copies() -> None:
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="a"), helper.make_node("Mul", ["c", "s"], ["y"]),
             helper.make_node("Conv", ["x", "w1", "b1"], ["z"], name="b")]
    model, feeds = _conv_chain(nodes, ["y", "z"], {**_weights(4, 4, 1), "s": np.array([3.0], np.float32)})
    graph = load_onnx(model).graph
    assert fold_conv_affine(graph) == 1
    assert graph.nodes[1].inputs[1:] == ["w1", "b1"] and graph.nodes[0].inputs[1] != "w1"
    assert_matches_ort(model, feeds)


@pytest.mark.parametrize("scale_op,factor", [("Div", 6.0), ("Mul", 1 / 6)])
@pytest.mark.parametrize("order", ["x,clip", "clip,x"])
def test_hard_swish_as_paddle_writes_it_is_one_hard_swish(scale_op: str, factor: float, order: str) -> None:
    mul_inputs = ["x", "r"] if order == "x,clip" else ["r", "x"]
    nodes = [helper.make_node("Add", ["x", "three"], ["a"]), helper.make_node("Clip", ["a", "zero", "six"], ["r"]),
             helper.make_node("Mul", mul_inputs, ["m"]), helper.make_node(scale_op, ["m", "f"], ["y"])]
    consts = {name: np.array(v, np.float32) for name, v in (("three", 3.0), ("zero", 0.0), ("six", 6.0),
                                                            ("f", factor))}
    model, feeds = _conv_chain(nodes, ["y"], consts)
    feeds["x"] *= 4
    graph = load_onnx(model).graph
    assert fuse_activations(graph) == 3
    assert [(n.op_type, n.inputs, n.outputs) for n in graph.nodes] == [("HardSwish", ["x"], ["y"])]
    assert_matches_ort(model, feeds)


@pytest.mark.parametrize("alpha,fused", [(1 / 6, True), (0.2, False)])
def test_x_times_its_hard_sigmoid_is_hard_swish(alpha: float, fused: bool) -> None:
    """PyTorch writes hardswish as x * HardSigmoid(x, alpha=1/6) before opset 14; with ONNX's default
    alpha 0.2 it is another function and stays two kernels."""
    nodes = [helper.make_node("HardSigmoid", ["x"], ["g"], alpha=alpha), helper.make_node("Mul", ["g", "x"], ["y"])]
    model, feeds = _conv_chain(nodes, ["y"], {})
    feeds["x"] *= 4
    graph = load_onnx(model).graph
    assert fuse_activations(graph) == int(fused)
    assert [n.op_type for n in graph.nodes] == (["HardSwish"] if fused else ["HardSigmoid", "Mul"])
    assert_matches_ort(model, feeds)


def test_near_hard_swish_is_left_alone() -> None:
    nodes = [helper.make_node("Add", ["x", "three"], ["a"]), helper.make_node("Clip", ["a", "zero", "six"], ["r"]),
             helper.make_node("Mul", ["x", "r"], ["m"]), helper.make_node("Div", ["m", "f"], ["y"])]
    for three, six, f in ((2.0, 6.0, 6.0), (3.0, 5.0, 6.0), (3.0, 6.0, 5.0)):
        consts = {name: np.array(v, np.float32) for name, v in (("three", three), ("zero", 0.0), ("six", six),
                                                                ("f", f))}
        model, feeds = _conv_chain(nodes, ["y"], consts)
        graph = load_onnx(model).graph
        fuse_activations(graph)
        assert "HardSwish" not in [n.op_type for n in graph.nodes]
        assert_matches_ort(model, feeds)


def test_ppocr_block_with_a_run_time_batch() -> None:
    """A PP-OCRv4-style block end to end with 3 samples of a run-time batch: depthwise Conv (padded),
    learnable affine, hard-swish as Paddle writes it, learnable affine, pointwise Conv, affine, SiLU.
    Every affine folds (the one before the padded depthwise Conv would not, so there is none), the
    hard-swish and the SiLU become one kernel each: four kernels in all, two of them the Convs."""
    rng = np.random.default_rng(9)
    normal = rng.standard_normal
    const = {"wd": normal((8, 1, 3, 3)).astype(np.float32), "bd": normal(8).astype(np.float32),
             "wp": normal((6, 8, 1, 1)).astype(np.float32), "bp": normal(6).astype(np.float32),
             "s1": np.array([1.4], np.float32), "t1": np.array([0.6], np.float32),
             "s2": np.array([0.2], np.float32), "t2": np.array([3e-5], np.float32),
             "s3": rng.uniform(0.5, 2, (6, 1, 1)).astype(np.float32), "t3": np.array([-0.1], np.float32),
             "three": np.array(3.0, np.float32), "zero": np.array(0.0, np.float32), "six": np.array(6.0, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "wd", "bd"], ["d"], group=8, pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["s1", "d"], ["d1"]), helper.make_node("Add", ["d1", "t1"], ["d2"]),
             helper.make_node("Add", ["d2", "three"], ["h1"]), helper.make_node("Clip", ["h1", "zero", "six"], ["h2"]),
             helper.make_node("Mul", ["d2", "h2"], ["h3"]), helper.make_node("Div", ["h3", "six"], ["h"]),
             helper.make_node("Mul", ["s2", "h"], ["a1"]), helper.make_node("Add", ["a1", "t2"], ["a"]),
             helper.make_node("Conv", ["a", "wp", "bp"], ["p"]),
             helper.make_node("Mul", ["p", "s3"], ["p1"]), helper.make_node("Add", ["t3", "p1"], ["p2"]),
             helper.make_node("Sigmoid", ["p2"], ["g"]), helper.make_node("Mul", ["p2", "g"], ["y"])]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 9, 11])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 9, 11])],
                              [numpy_helper.from_array(v, n) for n, v in const.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = (rng.standard_normal((3, 8, 9, 11)) * 2).astype(np.float32)
    assert_matches_ort(model, {"x": x}, max_batch=3)
    stats = convert_onnx(model, max_batch=3).stats
    assert stats["ops"] == ["Conv", "HardSwish", "Swish"] and stats["kernels"] == 4 and stats["affine_folded"] == 6


def test_affine_and_activation_passes_stay_linear_on_a_long_graph() -> None:
    """12,000 Mul/Add by scalars (unrolled loops reach 20,000 nodes): node lookups through an index, not a
    scan of the graph per node. Quadratic lookups took 50 s here; the bound is 5 s, 50x what it takes now."""
    nodes, prev = [], "x"
    for i in range(12_000):
        nodes.append(helper.make_node("Mul" if i % 2 else "Add", [prev, "c"], [f"v{i}"]))
        prev = f"v{i}"
    model = graph_model(nodes, {"x": np.zeros((1, 4, 3, 3), np.float32)}, [prev], {"c": np.array([1.5], np.float32)})
    graph = load_onnx(model).graph
    started = time.perf_counter()
    assert fold_conv_affine(graph) == 0 and fuse_activations(graph) == 0
    assert time.perf_counter() - started < 5.0
