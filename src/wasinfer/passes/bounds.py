"""The range of values a tensor computed at run time can hold: interval arithmetic over the nodes that compute it.

A Loop whose trip count the data decides (ONNX's Range as its function body, `ceil((limit - start) / delta)`; a
count of the elements a mask keeps) can still be unrolled when that count has a largest value (passes/loops.py).
This walks back from the count through the nodes that compute it and bounds each value from what the compiler
knows: a constant's values, a symbolic dim's range (`Graph.shape_values`, a `Dims` node), an input's declared range
(`Graph.valued`, --input-values: passes/values.py), a bool's 0..1, a small integer type's own range, an index's
axis (ArgMax); and the ops between them (Add, Sub, Mul, Div, Ceil, Floor, Cast, Relu, Max, Min, Clip, Where,
ReduceSum...) combine those ranges as interval arithmetic does. A value it cannot bound (a float input, a division
by a range holding 0, an op without a rule here) has none: the caller then refuses, naming what to declare.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from onnx import helper

from wasinfer.ir import Graph, Node
from wasinfer.ir.symbolic import largest, smallest

Interval = tuple[float, float]  # smallest and largest value, either may be infinite
UNKNOWN: Interval = (-math.inf, math.inf)

# ops whose output's values are some of input 0's (moved, repeated, picked, or its largest or smallest)
_PICKS = {"Identity", "Squeeze", "Unsqueeze", "Reshape", "Flatten", "Expand", "Tile", "Transpose", "Gather",
          "GatherElements", "GatherND", "Slice", "ReduceMax", "ReduceMin", "Compress"}
_BOOLEAN = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN",
            "IsInf"}
_MONOTONE: dict[str, Callable[[float], float]] = {"Ceil": math.ceil, "Floor": math.floor, "Round": round,
                                                   "Relu": lambda v: max(v, 0.0)}
# every op with a rule here (Dims, in the compiler's own domain, aside): what a declared input may be read by on the
# way to a trip count (passes/values.py)
FOLLOWED = frozenset(_PICKS | _BOOLEAN | set(_MONOTONE) | {
    "ArgMax", "ArgMin", "Where", "Cast", "Neg", "Abs", "Sqrt", "Clip", "ReduceSum", "Concat", "Mean", "Max", "Min",
    "Add", "Sum", "Sub", "Mul", "Div"})
_DEPTH = 200  # nodes walked back from one value; a longer chain is not a count's arithmetic


def value_range(graph: Graph, name: str) -> Interval | None:
    """The smallest and largest value `name` can hold on any run (either may be infinite), or None where nothing is
    known of it."""
    producers = {o: n for n in graph.nodes for o in n.outputs if o}
    memo: dict[str, Interval] = {}

    def of(value: str, depth: int) -> Interval:
        if value not in memo:
            memo[value] = UNKNOWN if depth > _DEPTH else _range(graph, producers, value, lambda v: of(v, depth + 1))
        return memo[value]

    found = of(name, 0)
    return None if found == UNKNOWN else found


def inputs_it_reads(graph: Graph, name: str) -> list[str]:
    """The graph inputs `name` is computed from, in the graph's order (for a message saying what to declare)."""
    producers = {o: n for n in graph.nodes for o in n.outputs if o}
    seen, pending = set(), [name]
    while pending:
        value = pending.pop()
        if value in seen:
            continue
        seen.add(value)
        producer = producers.get(value)
        if producer is not None:
            pending.extend(i for i in producer.inputs if i)
    return [n for n in graph.inputs if n in seen]


def _leaf(graph: Graph, name: str) -> Interval | None:
    """What is known of `name` without looking at how it is computed."""
    if name in graph.shape_values:  # before its constant, which holds the ranges' largest only
        dims = graph.shape_values[name]
        return (float(min(smallest(d, graph.symbols) for d in dims)),
                float(max(largest(d, graph.symbols) for d in dims)))
    if name in graph.constants:
        value = np.asarray(graph.constants[name])
        if value.size == 0 or value.dtype.kind not in "biuf" or (value.dtype.kind == "f" and np.isnan(value).any()):
            return None
        return float(value.min()), float(value.max())
    if name in graph.valued:
        low, high, _ = graph.valued[name]
        return float(low), float(high)
    return None


def _type_range(graph: Graph, name: str) -> Interval | None:
    """The range of `name`'s own type, where that is small enough to bound a count (bool, 8- and 16-bit ints)."""
    info = graph.tensors.get(name)
    if info is None:
        return None
    if info.dtype == np.bool_:
        return 0.0, 1.0
    if info.dtype.kind in "iu" and info.dtype.itemsize <= 2:
        limits = np.iinfo(info.dtype)
        return float(limits.min), float(limits.max)
    return None


def _range(graph: Graph, producers: dict[str, Node], name: str, of: Callable[[str], Interval]) -> Interval:
    known = _leaf(graph, name)
    producer = producers.get(name)
    if known is None and producer is not None and producer.outputs[0] == name:
        known = _rule(graph, producer, of)
    if known is None or known == UNKNOWN:
        known = _type_range(graph, name)
    return known if known is not None else UNKNOWN


def _hull(values: list[float]) -> Interval:
    """The smallest interval holding `values`; nothing known where one is NaN (inf - inf, 0 * inf)."""
    return UNKNOWN if any(math.isnan(v) for v in values) else (min(values), max(values))


def _rule(graph: Graph, node: Node, of: Callable[[str], Interval]) -> Interval | None:
    """The range of the node's first output from its inputs' ranges (None: no rule for the op)."""
    if node.domain == "wasinfer" and node.op_type == "Dims":
        dims = node.attrs["dims"]
        return (float(min(smallest(d, graph.symbols) for d in dims)),
                float(max(largest(d, graph.symbols) for d in dims)))
    if node.domain:
        return None
    op = node.op_type
    if op in _BOOLEAN:
        return 0.0, 1.0
    if op in ("ArgMax", "ArgMin"):
        shape = graph.tensors[node.inputs[0]].shape if node.inputs[0] in graph.tensors else None
        return None if not shape else (0.0, float(shape[int(node.attr("axis", 0)) % len(shape)] - 1))
    given = [n for n in node.inputs if n]
    if op == "Where":
        given = given[1:]
    elif op in _PICKS or op in _MONOTONE or op in ("Cast", "Neg", "Abs", "ReduceSum", "Sqrt"):
        given = given[:1]
    ranges = [of(n) for n in given]
    if not ranges:
        return None
    first = ranges[0]
    low, high = first
    if op in _PICKS:
        return first
    if op in _MONOTONE:
        rule = _MONOTONE[op]
        return (rule(low) if math.isfinite(low) else low), (rule(high) if math.isfinite(high) else high)
    if op == "Cast":
        return _cast(node, first)
    if op == "Neg":
        return -high, -low
    if op == "Abs":
        return (0.0 if low <= 0 <= high else min(abs(low), abs(high))), max(abs(low), abs(high))
    if op == "Sqrt":
        return (math.sqrt(low), math.sqrt(high)) if low >= 0 else UNKNOWN
    if op == "Clip":
        return _clip(node, first, of)
    if op == "ReduceSum":
        out = graph.tensors.get(node.outputs[0])
        source = graph.tensors.get(node.inputs[0])
        if out is None or source is None:
            return UNKNOWN
        count = source.size // max(out.size, 1)
        return _hull([count * low, count * high])
    if op in ("Where", "Concat", "Mean"):
        return _hull([v for r in ranges for v in r])
    if op in ("Max", "Min"):
        pick = max if op == "Max" else min
        return pick(r[0] for r in ranges), pick(r[1] for r in ranges)
    if op in ("Add", "Sum"):
        return _hull([sum(r[0] for r in ranges), sum(r[1] for r in ranges)])
    if len(ranges) != 2:
        return None
    other_low, other_high = ranges[1]
    if op == "Sub":
        return _hull([low - other_high, high - other_low])
    if op == "Mul":
        return _hull([low * other_low, low * other_high, high * other_low, high * other_high])
    if op == "Div":
        if other_low <= 0 <= other_high:
            return UNKNOWN
        quotients = _hull([low / other_low, low / other_high, high / other_low, high / other_high])
        info = graph.tensors.get(node.outputs[0])
        if quotients == UNKNOWN or info is None or info.dtype.kind == "f" or any(map(math.isinf, quotients)):
            return quotients
        return float(math.trunc(quotients[0])), float(math.trunc(quotients[1]))  # an integer division truncates
    return None


def _cast(node: Node, source: Interval) -> Interval:
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(int(node.attrs["to"])))
    low, high = source
    if dtype == np.bool_:
        return 0.0, 1.0
    if dtype.kind == "f":
        return source
    if math.isinf(low) or math.isinf(high):
        return UNKNOWN
    low, high = float(math.trunc(low)), float(math.trunc(high))  # toward zero, as the float-to-integer casts are
    limits = np.iinfo(dtype)
    return (low, high) if limits.min <= low and high <= limits.max else UNKNOWN  # outside it wraps


def _clip(node: Node, source: Interval, of: Callable[[str], Interval]) -> Interval:
    """min(max(x, lower), upper), with the bounds as attributes (before opset 11) or inputs (any, run-time too)."""
    if "min" in node.attrs or "max" in node.attrs:
        floor, ceiling = float(node.attrs.get("min", -math.inf)), float(node.attrs.get("max", math.inf))
        lower, upper = (floor, floor), (ceiling, ceiling)
    else:
        given = [*node.inputs[1:3], "", ""][:2]
        lower = of(given[0]) if given[0] else (-math.inf, -math.inf)
        upper = of(given[1]) if given[1] else (math.inf, math.inf)
    return min(max(source[0], lower[0]), upper[0]), min(max(source[1], lower[1]), upper[1])


__all__ = ["FOLLOWED", "UNKNOWN", "Interval", "inputs_it_reads", "value_range"]
