"""The element-wise islands of quantized graphs moved onto the integers (passes/int8_islands.py): the
lookup-table builder against ONNX Runtime's own QLinearSigmoid / QLinearLeakyRelu, and the quantized
zoo CNNs compiled with no DequantizeLinear / QuantizeLinear left but at the model's input and output."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from tests.model_zoo import mobilenet_like, resnet_like
from tests.parity import graph_model, ort_run
from wasinfer.artifact import convert_onnx
from wasinfer.frontends.onnx import load_onnx
from wasinfer.passes.control import infer_types
from wasinfer.passes.int8_islands import lookup_table
from wasinfer.passes.quantized import decompose_quantized
from wasinfer.runtime import WasmModel

rng = np.random.default_rng(13)


class _Samples(CalibrationDataReader):
    def __init__(self, samples: list[dict[str, np.ndarray]]):
        self.left = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.left, None)


def _qlinear_model(op: str, dtype: type, x_scale: float, x_zero: int, y_scale: float, y_zero: int,
                   **attrs: float) -> onnx.ModelProto:
    """x [256] → com.microsoft.QLinear<op> → y, its parameters constants."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inits = [helper.make_tensor("xs", TensorProto.FLOAT, [], [x_scale]), helper.make_tensor("xz", elem, [], [x_zero]),
             helper.make_tensor("ys", TensorProto.FLOAT, [], [y_scale]), helper.make_tensor("yz", elem, [], [y_zero])]
    node = helper.make_node(f"QLinear{op}", ["x", "xs", "xz", "ys", "yz"], ["y"], domain="com.microsoft", **attrs)
    graph = helper.make_graph([node], op, [helper.make_tensor_value_info("x", elem, [256])],
                              [helper.make_tensor_value_info("y", elem, [256])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                   helper.make_opsetid("com.microsoft", 1)])


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("op,attrs", [("Sigmoid", {}), ("LeakyRelu", {"alpha": 0.1}), ("LeakyRelu", {"alpha": 0.01})],
                         ids=["sigmoid", "leaky_relu_0.1", "leaky_relu_0.01"])
def test_the_table_builder_matches_onnx_runtime_s_own_qlinear_ops(op: str, attrs: dict[str, float],
                                                                  dtype: type) -> None:
    """`lookup_table` on the DequantizeLinear → op → QuantizeLinear that passes/quantized.py writes for
    QLinearSigmoid / QLinearLeakyRelu, against ONNX Runtime running the contrib op on all 256 inputs
    (ONNX Runtime builds its own table, with MLAS's sigmoid): within one step everywhere, and equal
    almost everywhere."""
    zero = 7 if dtype == np.int8 else 131
    model = _qlinear_model(op, dtype, 0.043, zero, 1 / 255 if op == "Sigmoid" else 0.031, -128 if dtype == np.int8
                           and op == "Sigmoid" else zero // 2, **attrs)
    x = np.arange(256, dtype=np.uint8).view(dtype)
    want, = ort_run(model, {"x": x})
    loaded = load_onnx(model)
    decompose_quantized(loaded.graph)
    infer_types(loaded.graph)  # what the rewrite wrote, typed (as fuse_int8_islands does)
    q = next(n for n in loaded.graph.nodes if n.op_type == "QuantizeLinear")
    found = lookup_table(loaded.graph, q)
    assert found is not None
    root, table, nodes = found
    assert root == "x" and {n.op_type for n in nodes} == {"DequantizeLinear", op}
    got = table[x.view(np.uint8)]  # the table is indexed by x's byte
    differ = np.abs(got.astype(np.int32) - want.astype(np.int32))
    print(f"{op}{attrs} {np.dtype(dtype).name}: {int((differ == 0).sum())}/256 equal, worst {int(differ.max())} step")
    assert differ.max() <= 1 and (differ == 0).sum() >= 250
    result = convert_onnx(model)  # and the module runs the table
    assert result.stats["ops"] == ["QLookupInt8"]
    np.testing.assert_array_equal(WasmModel(result.wasm).run({"x": x})["y"], got)


def _quantize(model: onnx.ModelProto, samples: list[dict[str, np.ndarray]], tmp: Path, quant_format: QuantFormat,
              activations: QuantType) -> onnx.ModelProto:
    onnx.save(model, tmp / "exported.onnx")
    logging.disable(logging.WARNING)
    try:  # as benchmarks/int8_bench.py: ONNX Runtime's advised pre-processing, then static quantization
        quant_pre_process(tmp / "exported.onnx", tmp / "float.onnx", skip_symbolic_shape=True)
        quantize_static(tmp / "float.onnx", tmp / "q.onnx", _Samples(samples), per_channel=True,
                        quant_format=quant_format, activation_type=activations, weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    return onnx.load(tmp / "q.onnx")


def _output_scale(model: onnx.ModelProto) -> float:
    output = model.graph.output[0].name
    dq = next(n for n in model.graph.node if output in n.output)
    init = next(i for i in model.graph.initializer if i.name == dq.input[1])
    return float(onnx.numpy_helper.to_array(init))


@pytest.mark.parametrize("quant_format", [QuantFormat.QDQ, QuantFormat.QOperator], ids=["qdq", "qoperator"])
@pytest.mark.parametrize("name", ["mobilenet_like", "resnet_like"])
def test_quantized_zoo_cnns_run_int8_end_to_end(name: str, quant_format: QuantFormat, tmp_path: Path) -> None:
    """tests/model_zoo.py's CNNs quantized static (uint8 activations, per-channel weights): after the
    products, the HardSwish (HardSigmoid → Q → DQ → Mul), Relu6, residual Adds, MaxPool, global pool and
    Flatten run on the integers too: one QuantizeLinear (the float input's) and one DequantizeLinear (the
    output's) are left, besides a Softmax over the 10 logits; the output is within one step of ONNX Runtime's."""
    model = {"mobilenet_like": mobilenet_like, "resnet_like": resnet_like}[name]()
    for dim, size in zip(model.graph.input[0].type.tensor_type.shape.dim, (1, 3, 32, 32), strict=True):
        dim.dim_value = size
    samples = [{"image": rng.random((1, 3, 32, 32), np.float32)} for _ in range(6)]
    quantized = _quantize(model, samples, tmp_path, quant_format, QuantType.QUInt8)
    result = convert_onnx(quantized)
    counts = result.stats["op_counts"]
    assert isinstance(counts, dict)
    floats = {op: n for op, n in counts.items() if not op.startswith("Q") or op in ("QuantizeLinear",)}
    softmax = 1 if name == "mobilenet_like" else 0  # its float island at the output: DQ → Softmax → Q → DQ
    print(name, quant_format.name, counts)
    assert counts.get("QuantizeLinear") == 1 + softmax and counts.get("DequantizeLinear") == 1 + softmax, counts
    assert set(floats) <= {"QuantizeLinear", "DequantizeLinear", "Softmax", "Flatten", "MaxPool"}, counts
    module = WasmModel(result.wasm)
    for feeds in samples[:2]:
        want, = ort_run(quantized, feeds)
        got = module.run(feeds)[quantized.graph.output[0].name]
        assert np.rint(np.abs(got - want).max() / _output_scale(quantized)) <= 1


def test_a_long_chain_of_swish_islands_becomes_one_table() -> None:
    """30 islands x * sigmoid(x), each quantized again (DQ → Sigmoid, Mul(DQ, ·) → Q → DQ → ...): every
    Mul reads its island's input twice, so a walk that did not keep what it found would take 2^30 steps.
    The chain is one function of the first tensor's 8 bits: one QLookupInt8, within one step of ONNX
    Runtime on every value."""
    nodes, inits = [], {"s": np.array(0.05, np.float32), "z": np.array(3, np.int8)}
    x = "x"
    for i in range(30):
        nodes += [helper.make_node("DequantizeLinear", [x, "s", "z"], [f"f{i}"]),
                  helper.make_node("Sigmoid", [f"f{i}"], [f"g{i}"]),
                  helper.make_node("Mul", [f"f{i}", f"g{i}"], [f"m{i}"]),
                  helper.make_node("QuantizeLinear", [f"m{i}", "s", "z"], [x := ("y" if i == 29 else f"q{i}")])]
    values = np.arange(256, dtype=np.uint8).view(np.int8)
    model = graph_model(nodes, {"x": values}, ["y"], inits)
    result = convert_onnx(model)
    assert result.stats["op_counts"] == {"QLookupInt8": 1}
    got = WasmModel(result.wasm).run({"x": values})["y"]
    want, = ort_run(model, {"x": values})
    assert np.abs(got.astype(np.int32) - want).max() <= 1


def test_islands_whose_nodes_share_a_name_keep_their_own_tables() -> None:
    """The frontend keeps node names as the model gives them, and they need not be unique (ONNX Runtime
    refuses such a model; the compiler takes it): two islands whose QuantizeLinear nodes are both named
    "q" (x → Sigmoid → y1, x → Tanh → y2) each keep their own table, named after the tensor they write."""
    inits = {"s": np.array(0.05, np.float32), "z": np.array(0, np.int8), "t": np.array(1 / 128, np.float32)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["f"], name="dq"),
             helper.make_node("Sigmoid", ["f"], ["g"], name="op"), helper.make_node("Tanh", ["f"], ["h"], name="op"),
             helper.make_node("QuantizeLinear", ["g", "t", "z"], ["y1"], name="q"),
             helper.make_node("QuantizeLinear", ["h", "t", "z"], ["y2"], name="q")]
    values = np.arange(256, dtype=np.uint8).view(np.int8)
    model = graph_model(nodes, {"x": values}, ["y1", "y2"], inits)
    result = convert_onnx(model)
    assert result.stats["op_counts"] == {"QLookupInt8": 2}
    got = WasmModel(result.wasm).run({"x": values})
    f = values.astype(np.float32) * np.float32(0.05)  # ONNX Runtime refuses the model: numpy says what it computes
    for name, value in (("y1", 1 / (1 + np.exp(-f))), ("y2", np.tanh(f))):
        want = np.clip(np.rint(value.astype(np.float32) * 128), -128, 127)
        assert np.abs(got[name].astype(np.int32) - want).max() <= 1, name


def test_hundreds_of_islands_in_a_row_compile_into_a_few_tables() -> None:
    """300 islands in a row (DQ → Neg | Abs | LeakyRelu → Q each): the walk that builds a table stops after
    MAX_ISLAND_VALUES values (it recursed past Python's stack, a RecursionError, before), so a few tables
    stand for them all, equal to ONNX Runtime's result on every 8-bit value."""
    nodes, inits = [], {"s": np.array(0.05, np.float32), "z": np.array(3, np.int8)}
    x = "x"
    for i in range(300):
        op = ("Neg", "Abs", "LeakyRelu")[i % 3]
        nodes += [helper.make_node("DequantizeLinear", [x, "s", "z"], [f"f{i}"]),
                  helper.make_node(op, [f"f{i}"], [f"g{i}"]),
                  helper.make_node("QuantizeLinear", [f"g{i}", "s", "z"], [x := ("y" if i == 299 else f"q{i}")])]
    values = np.arange(256, dtype=np.uint8).view(np.int8)
    model = graph_model(nodes, {"x": values}, ["y"], inits)
    result = convert_onnx(model)
    counts = result.stats["op_counts"]
    assert isinstance(counts, dict) and set(counts) == {"QLookupInt8"} and counts["QLookupInt8"] <= 10, counts
    got = WasmModel(result.wasm).run({"x": values})["y"]
    np.testing.assert_array_equal(got, ort_run(model, {"x": values})[0])


def test_a_requantisation_read_inside_an_if_branch_keeps_its_name() -> None:
    """y = Q(DQ(x)) of one scale and zero point is x itself; its readers read x instead, except where an
    If branch names y from the outer scope: there y stays, an Identity of x, and each branch still finds
    what it reads (ONNX Runtime aborts on this model: both branches must give x, as requantising x with
    its own parameters does)."""
    s, z = np.array(0.05, np.float32), np.array(3, np.int8)

    def branch(name: str, read: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node("Identity", [read], [name])], name, [],
                                 [helper.make_tensor_value_info(name, TensorProto.INT8, [4, 5])])

    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["f"]),
             helper.make_node("QuantizeLinear", ["f", "s", "z"], ["y"]),
             helper.make_node("DequantizeLinear", ["y", "s", "z"], ["y_f"]),
             helper.make_node("QuantizeLinear", ["y_f", "s", "z"], ["y2"]),
             helper.make_node("If", ["c"], ["o"], then_branch=branch("t", "y"), else_branch=branch("e", "y2"))]
    x = rng.integers(-128, 128, (4, 5)).astype(np.int8)
    feeds = {"x": x, "c": np.array(True)}
    module = WasmModel(convert_onnx(graph_model(nodes, feeds, ["o"], {"s": s, "z": z})).wasm)
    for condition in (True, False):
        feeds["c"] = np.array(condition)
        np.testing.assert_array_equal(module.run(feeds)["o"], x)
