"""Inputs whose *values* are dims: a parameter that sets an output's size (ConstantOfShape's shape, Tile's
repeats, Reshape's or Expand's shape) fed at run time, with the range of its values declared when compiling.

As TensorRT does for shape tensors: `--input-values repeats=1..8` says every element of `repeats` lies in
1..8 on every run. Each element becomes a symbol with that range (`repeats[0]`, `repeats[1]`, ...), as a range
of --input-shape is one (ir/symbolic.py), and the nodes read, while compiling, a constant holding the range's
largest in every element, whose symbolic values are those symbols (`Graph.shape_values`). The static passes
therefore type everything at the largest (what memory is planned for), and the extent rules
(passes/symbolic.py) follow the symbols to the dims they set: a ConstantOfShape folds at the largest and is
cut to the run's dims, a Tile copies into its largest layout, a Pad's kernel reads its pads from the symbols
(emitters/pad.py), and an output with such dims is returned at the run's (ABI version 2).

Each run reads the input's values, refuses the run with a clear error naming the input and its range where
one is outside it (`Graph.valued`: its status code, backends/wasm/compiler.py), and keeps each as its symbol's
value. Where a value decides something no rule can follow (a value computed with, rather than read as a dim),
the node is refused by name, as for any symbolic dim.

An input that sets a Loop's trip count (`--input-values steps=0..32`), directly or through arithmetic on the way
to it (a Cast, an Add, a Min...: passes/bounds.py's rules), is read as it is, as data, by every node that reads it:
its declared range is what bounds the count, which the Loop is unrolled to (passes/loops.py), and the run checks
it as above, its error naming the Loop.
"""

from __future__ import annotations

import numpy as np

from wasinfer.ir import Graph, UnsupportedModel
from wasinfer.ir.symbolic import symbol
from wasinfer.passes.bounds import FOLLOWED

MAX_ELEMENTS = 16  # values per declared input: shapes and repeats, not data
# (op, input) that read an input's values as dims, which the extent rules follow (ops/extent.py); a value read
# anywhere else would be taken at its largest while compiling, so such a model is refused instead
READS_VALUES_AS_DIMS = {("ConstantOfShape", 0), ("Tile", 1), ("Expand", 1), ("Range", 1), ("Pad", 1)}


def parse_input_values(specs: list[str]) -> dict[str, tuple[int, int]]:
    """`NAME=MIN..MAX` strings (as given to --input-values) → {name: (MIN, MAX)}."""
    ranges: dict[str, tuple[int, int]] = {}
    for spec in specs:
        name, sep, text = spec.rpartition("=")
        low, dots, high = text.partition("..")
        try:
            if not sep or not name or not dots:
                raise ValueError
            ranges[name] = (int(low), int(high))
        except ValueError:
            raise ValueError(f"--input-values {spec!r}: expected NAME=MIN..MAX (integers)") from None
        if ranges[name][0] > ranges[name][1]:
            raise ValueError(f"--input-values {spec!r}: MIN must not be above MAX")
    return ranges


def value_symbol(name: str, index: int) -> str:
    return f"{name}[{index}]"


def declare_input_values(graph: Graph, ranges: dict[str, tuple[int, int]]) -> None:
    """Make each named input's elements symbols with its range, read by the nodes as a constant at the largest.
    Raises ValueError naming what cannot be declared (no such input, not integers, too many values), and
    UnsupportedModel naming each node that reads the values other than as dims."""
    for name, (low, high) in ranges.items():
        if name not in graph.inputs:
            raise ValueError(f"--input-values {name}: the model has no input {name!r} (inputs: {graph.inputs})")
        info = graph.info(name)
        if info.dtype not in (np.dtype(np.int64), np.dtype(np.int32)):
            raise ValueError(f"--input-values {name}: input {name!r} has dtype {info.dtype}; its values can be dims "
                             "only where they are int32 or int64")
        if len(info.shape) > 1 or info.size > MAX_ELEMENTS:
            raise ValueError(f"--input-values {name}: input {name!r} has shape {list(info.shape)}; a scalar or up "
                             f"to {MAX_ELEMENTS} values in one axis can be declared")
        if not np.iinfo(info.dtype).min <= low <= high <= np.iinfo(info.dtype).max:
            raise ValueError(f"--input-values {name}: {low}..{high} does not fit {info.dtype}")
        loops = _trip_counts(graph, name)
        if loops:  # data that sets how often loops run: read as it is, its range bounds them (passes/bounds.py)
            _declare_range(graph, name, low, high, f"; it sets the trip count of Loop {', '.join(map(repr, loops))}")
            continue
        elsewhere = [f"node {node.name!r} ({node.op_type}) reads it as input {index}" for node in graph.nodes
                     for index, n in enumerate(node.inputs)
                     if n == name and ((node.op_type, index) not in READS_VALUES_AS_DIMS or node.domain)]
        if elsewhere or name in graph.outputs:
            where = "; ".join(elsewhere) or "it is a graph output"
            raise UnsupportedModel([f"--input-values {name}: its values can be declared where they set dims only (a "
                                    "ConstantOfShape's shape, a Tile's repeats, an Expand's shape, a Range's limit, "
                                    f"a Pad's pads) or a Loop's trip count; {where}"])
        largest = f"{name}/largest"
        graph.add_constant(largest, np.full(info.shape, high, info.dtype))
        for node in graph.nodes:
            node.inputs = [largest if n == name else n for n in node.inputs]
        _forget_types_after(graph, largest)
        names = _declare_range(graph, name, low, high)
        graph.shape_values[largest] = tuple(symbol(element) for element in names)


def _forget_types_after(graph: Graph, name: str) -> None:
    """Drop the types of everything computed from `name`, so that inference types them at the largest values: a
    type the model declares there (the backend suite's outputs) holds for one example's values only."""
    reached = {name}
    for node in graph.nodes:  # in order: a node's inputs come before it
        if any(n in reached for n in node.inputs):
            for output in node.outputs:
                if output:
                    reached.add(output)
                    graph.tensors.pop(output, None)


def _declare_range(graph: Graph, name: str, low: int, high: int, why: str = "") -> list[str]:
    """Each element of input `name` a symbol with the range, which each run checks (its error last in
    `Graph.run_errors`) and keeps as the symbol's value; returns the symbols."""
    names = [value_symbol(name, i) for i in range(graph.info(name).size)]
    for element in names:
        graph.symbols[element] = (low, high)
    graph.run_errors.append(f"input {name!r}: its values must lie in {low}..{high} (declared with "
                            f"--input-values {name}={low}..{high}{why})")
    graph.valued[name] = (low, high, len(graph.run_errors) + 1)  # its status code: 2 + its error's index
    return names


def _trip_counts(graph: Graph, name: str) -> list[str]:
    """The Loops whose trip count is computed from input `name`, directly or through the arithmetic
    passes/bounds.py follows (its other readers read it as the data it is)."""
    loops: list[str] = []
    seen, pending = {name}, [name]
    while pending:
        value = pending.pop()
        for node in graph.consumers(value):
            if node.domain:
                continue
            if node.op_type == "Loop" and node.inputs[0] == value and node.name not in loops:
                loops.append(node.name)
            elif node.op_type in FOLLOWED:
                fresh = [o for o in node.outputs if o and o not in seen]
                seen.update(fresh)
                pending += fresh
    return loops


__all__ = ["declare_input_values", "parse_input_values", "value_symbol"]
