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

Some kernels compute with the values themselves, not only size by them: a Resize's scales (floats) or sizes set
both its output's dims and where each output samples the input, a OneHot's depth (often a float) its new axis and
where negative indices count from, a Hann, Hamming or Blackman window's size its length and every value, an
AffineGrid's size its grid, a Col2Im's image and block shapes its output and where each column element goes. Such
an input (`READS_VALUES_AT_RUN_TIME`) stays a run-time input (`Graph.read_values`): no symbols, no constant; the
run checks its range the same way, and the op's own pass types its output at the largest the range allows, each
varying dim a symbol its kernel writes (passes/dynamic.py). Its range may be of floats (`scales=0.25..4`) where
the input is a float tensor.
"""

from __future__ import annotations

import numpy as np

from wasinfer.ir import Graph, Node, UnsupportedModel
from wasinfer.ir.symbolic import symbol
from wasinfer.passes.bounds import FOLLOWED

MAX_ELEMENTS = 16  # values per declared input: shapes and repeats, not data
# (op, input) that read an input's values as dims, which the extent rules follow (ops/extent.py); a value read
# anywhere else would be taken at its largest while compiling, so such a model is refused instead
READS_VALUES_AS_DIMS = {("ConstantOfShape", 0), ("Tile", 1), ("Expand", 1), ("Range", 1), ("Pad", 1),
                        ("CenterCropPad", 1)}  # passes/crop.py: one Pad of the pads the values give
# (op, input) whose kernel reads the values at run time and computes with them (roi, scales, sizes)
READS_VALUES_AT_RUN_TIME = {("Resize", 1), ("Resize", 2), ("Resize", 3), ("Upsample", 1), ("OneHot", 1),
                            ("Range", 0), ("Range", 2), ("Range", -1), ("Expand", -2),  # -1, -2, -3: _position
                            ("Pad", -3), ("Pad", 3),
                            ("HannWindow", 0), ("HammingWindow", 0), ("BlackmanWindow", 0), ("AffineGrid", 1),
                            ("Col2Im", 1), ("Col2Im", 2), *(("MelWeightMatrix", i) for i in range(5)),
                            ("STFT", 1), ("STFT", 3)}  # frame_step, frame_length: passes/spectral.py
FLOAT_VALUES = (np.dtype(np.float32), np.dtype(np.float64))
HALF_VALUES = ("float16", "bfloat16")  # declared only where Ranges alone read them
Range = tuple[int, int] | tuple[float, float]


def _number(text: str) -> int | float:
    """An integer where the text is one, else a float (a scale's bound)."""
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not np.isfinite(value):
            raise ValueError(text) from None
        return value


def parse_input_values(specs: list[str]) -> dict[str, Range]:
    """`NAME=MIN..MAX` strings (as given to --input-values) → {name: (MIN, MAX)}: integers, or floats where either
    bound is one (`scales=0.5..4`)."""
    ranges: dict[str, Range] = {}
    for spec in specs:
        name, sep, text = spec.rpartition("=")
        low, dots, high = text.partition("..")
        try:
            if not sep or not name or not dots:
                raise ValueError
            pair = (_number(low), _number(high))
            ranges[name] = pair if all(isinstance(v, int) for v in pair) else (float(pair[0]), float(pair[1]))
        except ValueError:
            raise ValueError(f"--input-values {spec!r}: expected NAME=MIN..MAX (integers, or numbers for a "
                             "float input)") from None
        if ranges[name][0] > ranges[name][1]:
            raise ValueError(f"--input-values {spec!r}: MIN must not be above MAX")
    return ranges


def value_symbol(name: str, index: int) -> str:
    return f"{name}[{index}]"


def _reads(graph: Graph, name: str) -> list[tuple[str, int, str, str]]:
    """(op, input position, node name, domain) of every node that reads `name` (`_position`)."""
    return [(node.op_type, _position(graph, node, index), node.name, node.domain)
            for node in graph.nodes for index, n in enumerate(node.inputs) if n == name]


def _position(graph: Graph, node: Node, index: int) -> int:
    """The input's position, or a negative one where the node's kernel reads a value that is otherwise a dim: -1 a
    Range's limit beside a run-time start or delta, -2 an Expand's shape against a dim other than 1 (the value must
    be 1 or that dim, which the kernel checks; the dims path would plan for the largest value there), -3 a Pad's
    pads beside an axes input."""
    if (node.op_type, index) == ("Range", 1) and any(n not in graph.constants for n in node.inputs[0:3:2]):
        return -1
    if (node.op_type, index) == ("Pad", 1) and len(node.inputs) > 3 and node.inputs[3]:
        return -3  # pads with an axes input: the kernel reads which axis each pad is for
    data = graph.tensors.get(node.inputs[0])
    if (node.op_type, index) == ("Expand", 1) and data is not None and any(d != 1 for d in data.shape):
        return -2
    return index


def declare_input_values(graph: Graph, ranges: dict[str, Range]) -> None:
    """Make each named input's elements symbols with its range, read by the nodes as a constant at the largest;
    or, where only kernels that compute with the values read it, keep it a run-time input whose range each run
    checks. Raises ValueError naming what cannot be declared (no such input, not integers, too many values), and
    UnsupportedModel naming each node that reads the values other than as dims."""
    for name, (low, high) in ranges.items():
        if name not in graph.inputs:
            raise ValueError(f"--input-values {name}: the model has no input {name!r} (inputs: {graph.inputs})")
        info = graph.info(name)
        reads = _reads(graph, name)
        if reads and name not in graph.outputs and all((op, i) in READS_VALUES_AT_RUN_TIME and not domain
                                                       for op, i, _, domain in reads):
            _declare_read_at_run_time(graph, name, (low, high))
            continue
        if any((op, i) in READS_VALUES_AT_RUN_TIME for op, i, _, _ in reads):  # and read elsewhere too
            elsewhere = [f"node {node!r} ({op}) reads it as input {i}" for op, i, node, domain in reads
                         if (op, i) not in READS_VALUES_AT_RUN_TIME or domain] or ["it is a graph output"]
            raise UnsupportedModel([f"--input-values {name}: a kernel reads its values at run time (a Resize's roi, "
                                    "scales or sizes, a OneHot's depth, a window's or an AffineGrid's size, a Col2Im's "
                                    "shapes, a Range's bounds, an Expand's shape against a dim other than 1), so it "
                                    f"can be read there only; {'; '.join(elsewhere)}"])
        if isinstance(low, float) or isinstance(high, float):
            raise ValueError(f"--input-values {name}={low}..{high}: expected NAME=MIN..MAX with integers, as input "
                             f"{name!r} sets dims")
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
                                    "a Pad's pads, a CenterCropPad's shape), a Loop's trip count, or where a kernel "
                                    "reads them (a Resize's roi, scales or sizes, a OneHot's depth, a window's or an "
                                    f"AffineGrid's size, a Col2Im's shapes, a Range's start and delta); {where}"])
        largest = f"{name}/largest"
        graph.add_constant(largest, np.full(info.shape, high, info.dtype))
        for node in graph.nodes:
            node.inputs = [largest if n == name else n for n in node.inputs]
        _forget_types_after(graph, largest)
        names = _declare_range(graph, name, low, high)
        graph.shape_values[largest] = tuple(symbol(element) for element in names)


def _declare_read_at_run_time(graph: Graph, name: str, span: Range) -> None:
    """Keep `name` a run-time input whose values each run checks against `span` (`Graph.read_values`). A float16 or
    bfloat16 input can be declared where only Ranges read it (their kernel decodes the bits: emitters/arange.py)."""
    info = graph.info(name)
    low, high = span
    half = info.dtype.name in HALF_VALUES and all(op == "Range" for op, _, _, _ in _reads(graph, name))
    if info.dtype not in (*FLOAT_VALUES, np.dtype(np.int64), np.dtype(np.int32)) and not half:
        raise ValueError(f"--input-values {name}: input {name!r} has dtype {info.dtype}; declared values are int32, "
                         "int64, float32 or float64 (float16 and bfloat16 too for a Range's bounds)")
    if info.dtype.kind == "i" and not (float(low).is_integer() and float(high).is_integer()):
        raise ValueError(f"--input-values {name}: {low}..{high} are not integers, as input {name!r} ({info.dtype}) is")
    if len(info.shape) > 1 or info.size > MAX_ELEMENTS:
        raise ValueError(f"--input-values {name}: input {name!r} has shape {list(info.shape)}; a scalar or up "
                         f"to {MAX_ELEMENTS} values in one axis can be declared")
    graph.run_errors.append(f"input {name!r}: its values must lie in {low}..{high} (declared with "
                            f"--input-values {name}={low}..{high})")
    graph.read_values[name] = (float(low), float(high), len(graph.run_errors) + 1)  # status: 2 + the error's index
    _forget_types_after(graph, name)


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


__all__ = ["READS_VALUES_AT_RUN_TIME", "Range", "declare_input_values", "parse_input_values", "value_symbol"]
