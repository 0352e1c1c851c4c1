"""LSTM, GRU and RNN against ONNX Runtime: directions, layouts, optional inputs and outputs,
activations with alpha/beta, clip, peepholes, input_forget, linear_before_reset, and
weights given as constants or at run time."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.parity import assert_matches_ort, ort_run, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm.compiler import UnsupportedModel
from wasinfer.frontends import load_onnx
from wasinfer.lowering.gemm import gemm_plan
from wasinfer.lowering.recurrent import projection_panel_bytes, recurrent_spec
from wasinfer.runtime import ModelFault, WasmModel

rng = np.random.default_rng(11)
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def rand(*shape: int, scale: float = 1.0) -> np.ndarray:
    return np.asarray(rng.standard_normal(shape) * scale, np.float32)


def recurrent_model(op: str, seq: int = 5, batch: int = 2, input_size: int = 3, hidden: int = 6,
                    direction: str = "forward", layout: int = 0, bias: bool = True, initial: bool = False,
                    peepholes: bool = False, runtime_weights: bool = False, outputs: tuple[bool, ...] = (True,) * 3,
                    seq_lens: np.ndarray | None = None, **attrs: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """One recurrent node; the optional inputs are initializers unless `runtime_weights`."""
    gates, dirs = GATES[op], 2 if direction == "bidirectional" else 1
    x_shape = (seq, batch, input_size) if layout == 0 else (batch, seq, input_size)
    state_shape = (dirs, batch, hidden) if layout == 0 else (batch, dirs, hidden)
    feeds = {"X": rand(*x_shape)}
    consts = {"W": rand(dirs, gates * hidden, input_size, scale=0.5),
              "R": rand(dirs, gates * hidden, hidden, scale=0.5)}
    if bias:
        consts["B"] = rand(dirs, 2 * gates * hidden, scale=0.5)
    if seq_lens is not None:
        consts["L"] = seq_lens
    if initial:
        consts["H0"] = rand(*state_shape)
        if op == "LSTM":
            consts["C0"] = rand(*state_shape)
    if peepholes:
        consts["P"] = rand(dirs, 3 * hidden, scale=0.5)
    order = ["X", "W", "R", "B", "L", "H0", "C0", "P"][:8 if op == "LSTM" else 6]
    names = [n if n in feeds or n in consts else "" for n in order]
    while names and not names[-1]:
        names.pop()
    out_names = [n if keep else "" for n, keep in zip(["Y", "Y_h", "Y_c"], outputs, strict=False)]
    out_names = out_names[:3 if op == "LSTM" else 2]
    while out_names and not out_names[-1]:
        out_names.pop()
    node = helper.make_node(op, names, out_names, hidden_size=hidden, direction=direction, layout=layout, **attrs)
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)]
    initializers = []
    for name, value in consts.items():
        if runtime_weights and name != "L":
            feeds[name] = value
            inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype),
                                                        value.shape))
        else:
            initializers.append(numpy_helper.from_array(value, name))
    y_shape = (seq, dirs, batch, hidden) if layout == 0 else (batch, seq, dirs, hidden)
    shapes = {"Y": y_shape, "Y_h": state_shape, "Y_c": state_shape}
    graph = helper.make_graph([node], op, inputs,
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n]) for n in out_names if n],
                              initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), feeds


def layout0_twin(model: Any) -> Any:
    """The same computation with layout 0 inside Transposes: ONNX Runtime refuses layout 1."""
    twin = helper.make_model(model.graph, opset_imports=model.opset_import)
    graph = twin.graph
    node = graph.node[0]
    for attr in node.attribute:
        if attr.name == "layout":
            attr.i = 0
    perms = {0: [1, 0, 2], 5: [1, 0, 2], 6: [1, 0, 2]}
    extra = []
    for index, perm in perms.items():
        if index < len(node.input) and node.input[index]:
            name = node.input[index]
            extra.append(helper.make_node("Transpose", [name], [name + "_t"], perm=perm))
            node.input[index] = name + "_t"
    for index, perm in {0: [2, 0, 1, 3], 1: [1, 0, 2], 2: [1, 0, 2]}.items():
        if index < len(node.output) and node.output[index]:
            name = node.output[index]
            node.output[index] = name + "_t"
            extra.append(helper.make_node("Transpose", [name + "_t"], [name], perm=perm))
    graph.node.extend(extra)
    return twin


def assert_layout1_matches(model: Any, feeds: dict[str, np.ndarray], atol: float = 1e-5) -> None:
    expected = ort_run(layout0_twin(model), feeds)
    actual = wasm_run(model, feeds)
    for want, got in zip(expected, actual, strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=atol)


def check(model: Any, feeds: dict[str, np.ndarray], layout: int, **tolerance: Any) -> None:
    if layout == 1:
        assert_layout1_matches(model, feeds, tolerance.get("atol", 1e-5))
    else:
        assert_matches_ort(model, feeds, **tolerance)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_directions_and_layouts(op: str, direction: str, layout: int) -> None:
    model, feeds = recurrent_model(op, direction=direction, layout=layout, initial=layout == 1)
    check(model, feeds, layout)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_weights_at_run_time_and_no_bias(op: str) -> None:
    model, feeds = recurrent_model(op, direction="bidirectional", runtime_weights=True, initial=True,
                                   peepholes=op == "LSTM", hidden=5)
    assert_matches_ort(model, feeds)
    model, feeds = recurrent_model(op, bias=False, hidden=7, batch=1, seq=3)
    assert_matches_ort(model, feeds)


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("runtime", [False, True])
def test_gru_linear_before_reset(lbr: int, runtime: bool) -> None:
    model, feeds = recurrent_model("GRU", direction="bidirectional", linear_before_reset=lbr,
                                   runtime_weights=runtime, initial=True, hidden=9)
    assert_matches_ort(model, feeds)


def test_lstm_peepholes_input_forget_and_clip() -> None:
    model, feeds = recurrent_model("LSTM", peepholes=True, initial=True, input_forget=1, hidden=4)
    assert_matches_ort(model, feeds)
    model, feeds = recurrent_model("LSTM", peepholes=True, direction="reverse", clip=0.7, hidden=8)
    assert_matches_ort(model, feeds)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_activations_with_alpha_and_beta(op: str) -> None:
    per = {"LSTM": 3, "GRU": 2, "RNN": 1}[op]
    chosen = ["HardSigmoid", "LeakyRelu", "Elu", "Softsign", "Softplus", "Relu"]
    acts = (chosen * 2)[:2 * per]
    model, feeds = recurrent_model(op, direction="bidirectional", activations=acts,
                                   activation_alpha=[0.3, 0.05, 0.8], activation_beta=[0.4], clip=3.0)
    assert_matches_ort(model, feeds, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("outputs", [(True, False, False), (False, True, False), (False, False, True),
                                     (False, True, True)])
def test_optional_outputs(outputs: tuple[bool, ...]) -> None:
    model, feeds = recurrent_model("LSTM", outputs=outputs, layout=1, direction="bidirectional", initial=True)
    check(model, feeds, 1)
    if any(outputs[:2]):  # GRU has no Y_c
        model, feeds = recurrent_model("GRU", outputs=outputs, direction="bidirectional")
        check(model, feeds, 0)


def test_full_sequence_lens_and_long_sequence() -> None:
    model, feeds = recurrent_model("GRU", seq=40, batch=3, seq_lens=np.full(3, 40, np.int32), hidden=16,
                                   input_size=10)
    assert_matches_ort(model, feeds, atol=1e-4)


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_run_time_sequence_lens_are_checked_by_each_run(op: str) -> None:
    """sequence_lens fed at run time compiles as it is (no binding): lengths of seq_length for every batch entry
    run as without them, against ONNX Runtime; shorter ones (padded sequences, which a constant may not hold
    either) trap the run."""
    model, feeds = recurrent_model(op, seq_lens=np.full(2, 5, np.int32))
    lens = model.graph.initializer.pop(next(i for i, t in enumerate(model.graph.initializer) if t.name == "L"))
    model.graph.input.append(helper.make_tensor_value_info("L", TensorProto.INT32, [2]))
    feeds["L"] = numpy_helper.to_array(lens)
    module = WasmModel(convert_onnx(model).wasm)
    want = ort_run(model, feeds)
    got = module.run(feeds)
    for output, expected in zip([o.name for o in model.graph.output], want, strict=True):
        np.testing.assert_allclose(got[output], expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ModelFault, match="unreachable"):
        module.run({**feeds, "L": np.array([5, 3], np.int32)})


def test_unsupported_configurations_are_declined() -> None:
    model, _ = recurrent_model("LSTM", seq_lens=np.array([5, 3], np.int32))
    with pytest.raises(UnsupportedModel, match="sequence_lens"):
        convert_onnx(model)
    model, _ = recurrent_model("GRU", activations=["Sigmoid", "ScaledTanh"])
    with pytest.raises(UnsupportedModel, match="ScaledTanh"):
        convert_onnx(model)


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
@pytest.mark.parametrize("layout", [0, 1])
def test_input_projection_with_x_in_panels(op: str, layout: int) -> None:
    """The input projection walks W's columns outermost with X packed in panels in scratch: 7 x 2 rows (a
    short last row tile), 322 hidden (W^T of 70 x 966 for GRU is past the L2 budget; its last column tile
    overlapping the one before), both directions packing X in turn."""
    model, feeds = recurrent_model(op, seq=7, batch=2, input_size=70, hidden=322, direction="bidirectional",
                                   layout=layout, initial=True)
    graph = load_onnx(model).graph
    spec = recurrent_spec(graph.nodes[0], graph)
    assert gemm_plan(14, spec.gates * 322, 70, constant_b=True).columns_outer
    assert projection_panel_bytes(spec, graph.nodes[0], graph) == 16 * 70 * 4
    # sums of 70 and 322 terms of weights at 0.5: GRU differs from ONNX Runtime by up to 1.7e-4 with X in panels
    # or without (the same outputs bit for bit), and by 5.1e-4 once with the module's rng drawn in another order
    check(model, feeds, layout, rtol=1e-4, atol=1e-3)
