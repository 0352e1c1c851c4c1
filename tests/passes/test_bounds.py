"""The range of a run-time value from the nodes that compute it (passes/bounds.py): what a Loop's trip count is
unrolled to."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wasinfer.ir import Graph, Node, TensorInfo
from wasinfer.ir.symbolic import symbol
from wasinfer.passes.bounds import inputs_it_reads, value_range


def _graph(nodes: list[Node], inputs: dict[str, tuple[type, tuple[int, ...]]],
           constants: dict[str, np.ndarray] | None = None) -> Graph:
    tensors = {n: TensorInfo(n, np.dtype(t), s) for n, (t, s) in inputs.items()}
    graph = Graph("bounds", list(inputs), [nodes[-1].outputs[0]], nodes, tensors)
    for name, value in (constants or {}).items():
        graph.add_constant(name, value)
    return graph


def _range_count(start: tuple[int, int], limit: tuple[int, int], delta: tuple[int, int]) -> Graph:
    """ONNX's Range body: Relu(Ceil((limit - start) / delta)) as int64, with the inputs' declared ranges."""
    nodes = [Node("Sub", "sub", ["limit", "start"], ["diff"]), Node("Cast", "f", ["diff"], ["diff_f"], {"to": 1}),
             Node("Cast", "g", ["delta"], ["delta_f"], {"to": 1}), Node("Div", "div", ["diff_f", "delta_f"], ["q"]),
             Node("Ceil", "ceil", ["q"], ["c"]), Node("Relu", "relu", ["c"], ["r"]),
             Node("Cast", "m", ["r"], ["m"], {"to": 7})]
    graph = _graph(nodes, {n: (np.int32, ()) for n in ("start", "limit", "delta")})
    for name, (low, high) in {"start": start, "limit": limit, "delta": delta}.items():
        graph.valued[name] = (low, high, 2)
    return graph


def test_range_s_count_is_bounded_by_its_inputs_declared_ranges() -> None:
    assert value_range(_range_count((0, 10), (0, 20), (1, 4)), "m") == (0, 20)
    assert value_range(_range_count((-10, 10), (-10, 10), (-3, -1)), "m") == (0, 20)
    assert value_range(_range_count((0, 10), (0, 20), (2, 4)), "m") == (0, 10)


def test_a_division_by_a_range_holding_zero_or_an_input_without_a_range_has_no_bound() -> None:
    assert value_range(_range_count((0, 10), (0, 20), (-1, 4)), "m") is None
    graph = _range_count((0, 10), (0, 20), (1, 4))
    del graph.valued["limit"]
    assert value_range(graph, "m") is None
    assert inputs_it_reads(graph, "m") == ["start", "limit", "delta"]
    assert inputs_it_reads(graph, "diff") == ["start", "limit"]


def test_counts_and_indices_are_bounded_by_the_shapes_they_come_from() -> None:
    """A count of a mask's true values is at most its size; an ArgMax at most its axis's last index; a Min or Clip by
    a constant caps anything; a cast to int32 of what may not fit it has no bound (it would wrap)."""
    nodes = [Node("Greater", "gt", ["x", "zero"], ["mask"]), Node("Cast", "ints", ["mask"], ["ones"], {"to": 7}),
             Node("ReduceSum", "count", ["ones"], ["count"], {"keepdims": 0}),
             Node("ArgMax", "arg", ["x"], ["arg"], {"axis": 1, "keepdims": 0}),
             Node("Min", "capped", ["big", "eight"], ["capped"]),
             Node("Clip", "clipped", ["big", "", "eight"], ["clipped"]),
             Node("Mul", "square", ["capped", "capped"], ["square"]),
             Node("Cast", "narrow", ["big"], ["narrow"], {"to": 6})]
    graph = _graph(nodes, {"x": (np.float32, (4, 6)), "big": (np.int64, ())},
                   {"zero": np.array(0, np.float32), "eight": np.array(8, np.int64)})
    for name, dtype, shape in (("ones", np.int64, (4, 6)), ("count", np.int64, ()), ("arg", np.int64, (4,))):
        graph.tensors[name] = TensorInfo(name, np.dtype(dtype), shape)
    assert value_range(graph, "count") == (0, 24)
    assert value_range(graph, "arg") == (0, 5)
    assert value_range(graph, "big") is None
    assert value_range(graph, "capped") == (-math.inf, 8)
    assert value_range(graph, "clipped") == (-math.inf, 8)
    assert value_range(graph, "square") is None  # an unbounded factor (its product is NaN at -inf * 0)
    assert value_range(graph, "narrow") is None


@pytest.mark.parametrize(("high", "expected"), [(12, (2, 7)), (3, (2, 2))])
def test_a_symbolic_dim_s_range_bounds_the_arithmetic_on_it(high: int, expected: tuple[int, int]) -> None:
    """(T + 2) // 2 for a sequence of 2..high steps, T written by each run (a Dims node)."""
    nodes = [Node("Dims", "t", [], ["t"], {"dims": (symbol("T"),)}, domain="wasinfer"),
             Node("Add", "plus", ["t", "two"], ["plus"]), Node("Div", "half", ["plus", "two"], ["half"])]
    graph = _graph(nodes, {}, {"two": np.array(2, np.int64)})
    graph.tensors.update({n: TensorInfo(n, np.dtype(np.int64), (1,)) for n in ("t", "plus", "half")})
    graph.symbols["T"] = (2, high)
    assert value_range(graph, "half") == expected
