"""Recurrent plans: the configuration read from the node, the scratch layout and the weight layouts."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tests.parity import graph_model
from wasinfer.frontends import load_onnx
from wasinfer.ir import Graph
from wasinfer.lowering.recurrent import constant_biases, gate_columns, recurrent_scratch, recurrent_spec, scratch_layout

rng = np.random.default_rng(0)


def lstm_graph(runtime: tuple[str, ...] = (), inputs: tuple[str, ...] = ("x", "W", "R", "B"),
               **attrs: object) -> Graph:
    hidden, size, dirs = 5, 3, 2 if attrs.get("direction") == "bidirectional" else 1
    values = {"x": rng.standard_normal((4, 2, size)).astype(np.float32),
              "W": rng.standard_normal((dirs, 4 * hidden, size)).astype(np.float32),
              "R": rng.standard_normal((dirs, 4 * hidden, hidden)).astype(np.float32),
              "B": rng.standard_normal((dirs, 8 * hidden)).astype(np.float32),
              "lens": np.full(2, 4, np.int32)}
    feeds = {n: values[n] for n in inputs if n == "x" or n in runtime}
    inits = {n: values[n] for n in inputs if n and n != "x" and n not in runtime}
    node = helper.make_node("LSTM", list(inputs), ["y", "h", "c"], hidden_size=hidden, **attrs)
    return load_onnx(graph_model([node], feeds, ["y", "h", "c"], inits)).graph


def test_spec_reads_the_node() -> None:
    graph = lstm_graph(direction="bidirectional", clip=2.5, activations=["Sigmoid", "Tanh", "Relu"] * 2)
    spec = recurrent_spec(graph.nodes[0], graph)
    assert not spec.problems
    assert (spec.gates, spec.hidden, spec.seq, spec.batch, spec.input, spec.dirs) == (4, 5, 4, 2, 3, 2)
    assert spec.reverse == [False, True] and spec.clip == 2.5
    assert spec.activations[1] == [("Sigmoid", {}), ("Tanh", {}), ("Relu", {})]


def test_spec_names_every_problem() -> None:
    graph = lstm_graph(activations=["Sigmoid", "Swish", "Tanh"], layout=2)
    assert recurrent_spec(graph.nodes[0], graph).problems == [
        "layout 2 is not defined", "activation 'Swish' is not supported (supported: Sigmoid, Tanh, Relu, "
        "HardSigmoid, LeakyRelu, Elu, Softsign, Softplus)"]
    lens = lstm_graph(runtime=("lens",), inputs=("x", "W", "R", "B", "lens"))  # checked by each run instead
    assert not recurrent_spec(lens.nodes[0], lens).problems


@pytest.mark.parametrize("runtime", [(), ("W",), ("W", "R", "B")])
def test_scratch_regions_are_aligned_and_apart(runtime: tuple[str, ...]) -> None:
    graph = lstm_graph(runtime=runtime)
    node = graph.nodes[0]
    spec = recurrent_spec(node, graph)
    layout = scratch_layout(spec, node, graph)
    gh, hidden, batch = 4 * 5, 5, 2
    sizes = {"xw": spec.seq * batch * gh, "hr": batch * gh, "h": batch * hidden, "c": batch * hidden,
             "rh": batch * hidden, "wt": spec.input * gh if "W" in runtime else 0,
             "rt": hidden * gh if "R" in runtime else 0, "bias": gh if "B" in runtime else 0}
    regions = sorted((getattr(layout, key), 4 * count) for key, count in sizes.items())
    for (start, size), (following, _) in zip(regions, [*regions[1:], (layout.size, 0)], strict=True):
        assert start % 16 == 0 and start + size <= following  # 16-byte aligned, no overlap
    assert layout.size - regions[-1][0] < regions[-1][1] + 16
    assert recurrent_scratch(node, graph) == layout.size


def test_weight_layouts() -> None:
    w = rng.standard_normal((2, 12, 3)).astype(np.float32)  # [D, G*H, K]
    np.testing.assert_array_equal(gate_columns(w, 1, (4, 12)), w[1].T[:, 4:12])
    assert gate_columns(w, 1, (4, 12)).flags.c_contiguous
    b = rng.standard_normal((2, 24)).astype(np.float32)  # [D, Wb | Rb]
    summed, none = constant_biases(b, 1, split=False)
    np.testing.assert_array_equal(summed, b[1, :12] + b[1, 12:])
    assert none is None
    wb, rb = constant_biases(b, 0, split=True)
    assert rb is not None
    np.testing.assert_array_equal(wb, b[0, :12])
    np.testing.assert_array_equal(rb, b[0, 12:])
