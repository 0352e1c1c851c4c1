"""Loop and Scan unrolled at compile time (passes/loops.py), checked against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.parity import assert_matches_ort
from wasinfer.artifact import convert_onnx
from wasinfer.ir import UnsupportedModel

rng = np.random.default_rng(11)
FLOAT = TensorProto.FLOAT


def _model(nodes: list[onnx.NodeProto], inputs: dict[str, list[int | str]], outputs: list[str],
           constants: dict[str, np.ndarray] | None = None, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "loops", [helper.make_tensor_value_info(n, FLOAT, s) for n, s in inputs.items()],
                              [helper.make_tensor_value_info(n, FLOAT, None) for n in outputs],
                              [numpy_helper.from_array(v, n) for n, v in (constants or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _body(nodes: list[onnx.NodeProto], inputs: list[tuple[str, int]], outputs: list[tuple[str, int]],
          constants: dict[str, np.ndarray] | None = None) -> onnx.GraphProto:
    scalar = (TensorProto.INT64, TensorProto.BOOL)  # a Loop's iteration number and condition: ORT wants shape []
    return helper.make_graph(nodes, "body",
                             [helper.make_tensor_value_info(n, t, [] if t in scalar else None) for n, t in inputs],
                             [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
                             [numpy_helper.from_array(v, n) for n, v in (constants or {}).items()])


def test_scan_with_states_reversed_inputs_and_output_axes() -> None:
    """Two states (a running sum and a running max), two scan inputs (one read backwards, one
    along axis 1), two scan outputs (one stacked on axis 1, one in reverse order)."""
    body = _body([helper.make_node("Add", ["s_in", "a"], ["s_out"]), helper.make_node("Max", ["m_in", "b"], ["m_out"]),
                  helper.make_node("Mul", ["s_out", "m_out"], ["prod"]),
                  helper.make_node("Sub", ["a", "scale"], ["diff"])],
                 [("s_in", FLOAT), ("m_in", FLOAT), ("a", FLOAT), ("b", FLOAT)],
                 [("s_out", FLOAT), ("m_out", FLOAT), ("prod", FLOAT), ("diff", FLOAT)])
    scan = helper.make_node("Scan", ["s0", "m0", "xa", "xb"], ["s", "m", "p", "d"], body=body, num_scan_inputs=2,
                            scan_input_directions=[1, 0], scan_input_axes=[0, 1], scan_output_axes=[1, 0],
                            scan_output_directions=[0, 1])
    model = _model([scan], {"s0": [3], "m0": [3], "xa": [5, 3], "xb": [3, 5]}, ["s", "m", "p", "d"],
                   {"scale": np.array(0.5, np.float32)})
    feeds = {"s0": rng.normal(size=3), "m0": rng.normal(size=3), "xa": rng.normal(size=(5, 3)),
             "xb": rng.normal(size=(3, 5))}
    assert_matches_ort(model, {k: v.astype(np.float32) for k, v in feeds.items()})
    assert "Scan" not in convert_onnx(model).stats["ops"]  # type: ignore[operator]


def test_loop_with_a_constant_trip_count_and_scan_outputs() -> None:
    body = _body([helper.make_node("Cast", ["i"], ["f"], to=FLOAT), helper.make_node("Mul", ["v_in", "f"], ["t"]),
                  helper.make_node("Add", ["t", "x"], ["v_out"]), helper.make_node("Identity", ["c_in"], ["c_out"]),
                  helper.make_node("Relu", ["v_out"], ["each"])],
                 [("i", TensorProto.INT64), ("c_in", TensorProto.BOOL), ("v_in", FLOAT)],
                 [("c_out", TensorProto.BOOL), ("v_out", FLOAT), ("each", FLOAT)])
    loop = helper.make_node("Loop", ["trips", "", "v0"], ["v", "stacked"], body=body)
    model = _model([loop], {"x": [2, 3], "v0": [2, 3]}, ["v", "stacked"], {"trips": np.array(4, np.int64)})
    assert_matches_ort(model, {"x": rng.normal(size=(2, 3)).astype(np.float32),
                               "v0": rng.normal(size=(2, 3)).astype(np.float32)})


def _halving_loop(trips: np.ndarray | None, scan_output: bool = False) -> onnx.ModelProto:
    """v = v / 2 while sum(v) > limit, at most `trips` times: it stops when the data says so."""
    nodes = [helper.make_node("Div", ["v_in", "two"], ["v_out"]), helper.make_node("ReduceSum", ["v_out"], ["s"],
                                                                                     keepdims=0),
             helper.make_node("Greater", ["s", "limit"], ["c_out"])]
    outputs = [("c_out", TensorProto.BOOL), ("v_out", FLOAT)]
    if scan_output:
        nodes.append(helper.make_node("Identity", ["v_out"], ["each"]))
        outputs.append(("each", FLOAT))
    body = _body(nodes, [("i", TensorProto.INT64), ("c_in", TensorProto.BOOL), ("v_in", FLOAT)], outputs)
    outer = ["v", "each"] if scan_output else ["v"]
    constants = {"two": np.array(2.0, np.float32), "limit": np.array(1.0, np.float32)}
    inputs: dict[str, list[int | str]] = {"v0": [4]}
    if trips is not None:
        constants["trips"] = trips
    else:
        inputs["trips_in"] = []
    nodes_out = [helper.make_node("ReduceSum", ["v0"], ["s0"], keepdims=0),
                 helper.make_node("Greater", ["s0", "limit"], ["c0"]),
                 helper.make_node("Loop", ["trips" if trips is not None else "trips_cast", "c0", "v0"], outer,
                                  body=body, name="halve")]
    if trips is None:
        nodes_out.insert(0, helper.make_node("Cast", ["trips_in"], ["trips_cast"], to=TensorProto.INT64))
    return _model(nodes_out, inputs, outer, constants)


@pytest.mark.parametrize("start", [0.5, 3.0, 20.0, 1000.0])
def test_loop_that_stops_at_a_run_time_condition(start: float) -> None:
    """0.5: no iteration; 3: two; 20: five; 1000: all eight (the trip count wins)."""
    model = _halving_loop(np.array(8, np.int64))
    assert_matches_ort(model, {"v0": np.full(4, start / 4, np.float32)})


def test_loops_that_need_run_time_shapes_are_refused_with_the_reason() -> None:
    with pytest.raises(UnsupportedModel, match=r"'halve'.*trip count .* computed at run time"):
        convert_onnx(_halving_loop(None))
    with pytest.raises(UnsupportedModel, match=r"'halve'.*run-time condition and has scan outputs"):
        convert_onnx(_halving_loop(np.array(8, np.int64), scan_output=True))


def test_loop_whose_trip_count_static_shapes_fold() -> None:
    """PyTorch-style: the trip count is Shape(x)[0], a constant once shapes are static."""
    body = _body([helper.make_node("Add", ["v_in", "v_in"], ["v_out"]), helper.make_node("Identity", ["c_in"],
                                                                                       ["c_out"])],
                 [("i", TensorProto.INT64), ("c_in", TensorProto.BOOL), ("v_in", FLOAT)],
                 [("c_out", TensorProto.BOOL), ("v_out", FLOAT)])
    nodes = [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Gather", ["shape", "zero"], ["n"]),
             helper.make_node("Loop", ["n", "", "x"], ["y"], body=body)]
    model = _model(nodes, {"x": [3, 2]}, ["y"], {"zero": np.array(0, np.int64)})
    assert_matches_ort(model, {"x": rng.normal(size=(3, 2)).astype(np.float32)})
