"""The float "islands" of a quantized graph moved onto the integers: tables, integer Add/Mul, pools, data movement.

Once passes/int8.py has fused the matrix products and convolutions, what a static QDQ model (or a
QOperator one, after passes/quantized.py) still computes in float is every element-wise island
between a DequantizeLinear and a QuantizeLinear: an activation (HardSwish, Sigmoid, LeakyRelu...),
a residual Add, an SE block's Mul, a pool, a Flatten. Each costs a dequantise and a quantise of the
whole tensor in float. `fuse_int8_islands` rewrites them, in this order:

1. Data movement. `DequantizeLinear → Reshape | Flatten | Transpose | Squeeze | Unsqueeze | Slice |
   Concat | Identity | Expand | Tile | DepthToSpace | SpaceToDepth | Gather | GatherElements | Pad |
   Resize (nearest) → QuantizeLinear`
   where every DequantizeLinear and the QuantizeLinear share one per-tensor scale and zero point
   (what the quantizer writes for them) moves the integers: the dequantised values are copied as
   they are, and quantising them again gives the integers back (q = round((q - z) * s / s) + z
   exactly: the float error is far below half a step). A Concat's parts of other parameters are
   requantised first, each by a table (as ONNX Runtime's QLinearConcat). Elsewhere a per-tensor
   DequantizeLinear moves after a one-input mover (or a MaxPool, of a positive scale) and a
   QuantizeLinear before one, both commuting with it (a DequantizeLinear also after a Split, one per
   output): a full-integer TFLite model's
   `DQ → Transpose → MaxPool → Transpose → Q` becomes `Transpose → DQ → MaxPool → Q → Transpose`,
   and a QuantizeLinear that meets a DequantizeLinear of its own parameters goes with it.
2. Unary islands as lookup tables (QLookupInt8). A QuantizeLinear whose input is computed, through
   element-wise float ops only, from DequantizeLinears of one (u)int8 tensor x (per-tensor constant
   scale and zero point; the path may pass through inner QuantizeLinear → DequantizeLinear pairs, as
   ORT's quantizer writes HardSwish: `DQ(x) → HardSigmoid → Q → DQ`, then `Mul(DQ(x), ·) → Q`) is
   a function of x's 8 bits: it is evaluated here, in float32 as ONNX Runtime computes it, on all
   256 values (`lookup_table`), and the island becomes one table lookup per element. Tables come
   before binary islands, and the last QuantizeLinear first, so HardSwish's Mul is in its table.
3. Binary islands (QAddInt8, QMulInt8): `DQ(a), DQ(b) → Add | Sub | Mul → Q` with per-tensor
   constant parameters, numpy broadcasting (an SE block's per-channel scale): one pass over the
   integers, in float32 lanes, no float tensor in memory; a Relu or a Clip of constant bounds
   before the QuantizeLinear (TFLite's fused activation) becomes the output's integer range.
4. Pools. `DQ(x) → GlobalAveragePool → Q` (QGlobalAveragePoolInt8): the sum in int32, requantised
   once per channel, as ONNX Runtime's QLinearGlobalAveragePool; a 2-D AveragePool sums its taps
   in integers and requantises each output once (QAveragePoolInt8). A 2-D MaxPool between a
   DequantizeLinear and a QuantizeLinear of one scale and zero point, or already on (u)int8 values
   (QOperator models run it so), pools the integers (QMaxPoolInt8).

DequantizeLinear nodes left without consumers go, with the constants only they read; one that
something else still reads (a float output, an op no rule covers) stays for it. The constants a
fusion adds are named after the tensor the island writes (unique, where node names need not be).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx

from wasinfer.ir import Graph, Node, TensorInfo
from wasinfer.ops.quantized import INT8_DOMAIN, MAX_SUMMED_ROWS
from wasinfer.passes.control import infer_types
from wasinfer.passes.int8 import QUANTIZED, drop_unused, index_of, integer_range, requantized_output

Params = tuple[np.ndarray, np.ndarray]  # (scale float32 0-d, zero point 0-d of the integer dtype)

# Ops that move or select elements without changing them: quantised values move as they are.
MOVERS = {"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Slice", "Concat", "Identity", "Expand", "Tile",
          "DepthToSpace", "SpaceToDepth", "Resize", "Upsample",  # Resize and Upsample in nearest mode only
          "Gather", "GatherElements", "Pad"}  # Pad's constant as the integer it quantizes to (`_integer_pad`)


def _arg(node: Node, index: int) -> str:
    return node.inputs[index] if len(node.inputs) > index else ""


def params(graph: Graph, node: Node) -> Params | None:
    """A DequantizeLinear's or QuantizeLinear's per-tensor constant (scale, zero point), when its
    integer side is (u)int8; None otherwise (per channel, blocked, run-time parameters...)."""
    if node.op_type not in ("DequantizeLinear", "QuantizeLinear") or node.domain not in ("", "ai.onnx"):
        return None
    integer = node.inputs[0] if node.op_type == "DequantizeLinear" else node.outputs[0]
    if integer not in graph.tensors or graph.info(integer).dtype not in QUANTIZED:
        return None
    if int(node.attr("block_size", 0)) or (node.op_type == "QuantizeLinear" and int(node.attr("precision", 0))):
        return None
    scale = graph.constants.get(_arg(node, 1))
    zero = graph.constants.get(_arg(node, 2)) if _arg(node, 2) else np.zeros((), graph.info(integer).dtype)
    if scale is None or zero is None or scale.size != 1 or zero.size != 1 or scale.dtype != np.float32:
        return None
    if not np.isfinite(scale).all() or float(scale.reshape(())) == 0.0:
        return None
    return scale.reshape(()).astype(np.float32), zero.reshape(()).astype(graph.info(integer).dtype)


def _same(a: Params, b: Params) -> bool:
    return a[0] == b[0] and a[1].dtype == b[1].dtype and a[1] == b[1]


def dequantize(q: np.ndarray, p: Params) -> np.ndarray:
    """DequantizeLinear in float32: (q - zero) * scale, the difference taken in integers."""
    return ((q.astype(np.int32) - int(p[1])).astype(np.float32) * p[0]).astype(np.float32)


def quantize(v: np.ndarray, p: Params) -> np.ndarray:
    """QuantizeLinear: saturate(round_half_to_even(v / scale) + zero), the division in float32."""
    info = np.iinfo(p[1].dtype)
    rounded = np.rint((v.astype(np.float32) / p[0]).astype(np.float32)).astype(np.float64) + int(p[1])
    return np.clip(rounded, info.min, info.max).astype(p[1].dtype)


def _dq_of(graph: Graph, name: str) -> tuple[Node, Params] | None:
    """The per-tensor (u)int8 DequantizeLinear writing `name` (not a graph output), and its parameters."""
    producer = graph.producer(name)
    if producer is None or producer.op_type != "DequantizeLinear" or name in graph.outputs:
        return None
    found = params(graph, producer)
    return (producer, found) if found is not None else None


def _only_quantize(graph: Graph, name: str) -> tuple[Node, Params] | None:
    """The QuantizeLinear that is `name`'s only consumer (`name` not a graph output), and its parameters."""
    consumers = graph.consumers(name)
    if len(consumers) != 1 or name in graph.outputs or consumers[0].op_type != "QuantizeLinear":
        return None
    found = params(graph, consumers[0])
    return (consumers[0], found) if found is not None and consumers[0].inputs[0] == name else None


def _at(graph: Graph, node: Node) -> int:
    at = index_of(graph, node)
    assert at is not None, node.name
    return at


def _remove(graph: Graph, quantize_node: Node, fused: Node, candidates: list[Node]) -> None:
    """Put `fused` where the QuantizeLinear was, then drop what no longer has a reader, consumers first."""
    graph.nodes[_at(graph, quantize_node)] = fused
    order = {id(n): i for i, n in enumerate(graph.nodes)}
    drop_unused(graph, sorted({id(n): n for n in candidates if id(n) in order}.values(),
                              key=lambda n: -order[id(n)]))


# 1. data movement ------------------------------------------------------------------------------------------

def _integer_pad(graph: Graph, node: Node, p: Params, exact: bool) -> bool:
    """Make a constant-mode Pad pad the integers with its value quantized by `p` (a new constant), as a mover on
    the integers needs; False when that value is not known now, or (`exact`: a DequantizeLinear moved after the
    Pad) when dequantizing it does not give the float value back. Anything but a Pad needs nothing."""
    if node.op_type != "Pad" or str(node.attr("mode", "constant")) != "constant":
        return True
    name = _arg(node, 2)
    value = graph.constants.get(name) if name else np.asarray(node.attr("value", 0.0), np.float32)
    if value is None or value.size != 1 or value.dtype != np.float32:
        return False
    value = value.reshape(())
    q = quantize(value, p)
    if exact and dequantize(q, p) != value:
        return False
    if len(node.inputs) < 2:  # before opset 11: pads and value are attributes
        node.attrs["value"] = int(q)
        return True
    padded = f"{node.outputs[0]}/int8/pad_value"
    graph.add_constant(padded, q.reshape(()))
    node.inputs = [*node.inputs[:2], padded, *node.inputs[3:]]
    return True

def _move(graph: Graph, node: Node) -> bool:
    """Run a mover on the integers where its DequantizeLinear inputs and its QuantizeLinear agree."""
    if node.op_type not in MOVERS or node.domain not in ("", "ai.onnx") or len(node.outputs) != 1:
        return False
    if node.op_type in ("Resize", "Upsample") and str(node.attr("mode", "nearest")) != "nearest":
        return False  # interpolation computes new values
    data = list(range(len(node.inputs))) if node.op_type == "Concat" else [0]
    found = [_dq_of(graph, node.inputs[i]) for i in data]
    quantized = _only_quantize(graph, node.outputs[0])
    if quantized is None or any(f is None for f in found):
        return False
    q, p = quantized
    dqs = [f for f in found if f is not None]
    if not all(_same(dq_p, p) or (node.op_type == "Concat" and dq_p[1].dtype == p[1].dtype) for _, dq_p in dqs):
        return False
    if not _integer_pad(graph, node, p, exact=True):
        return False
    for i, (dq, dq_p) in zip(data, dqs, strict=True):
        node.inputs[i] = dq.inputs[0]
        if not _same(dq_p, p):  # a Concat part of other parameters: requantised by a table first, as QLinearConcat
            x = np.arange(256, dtype=np.uint8).view(p[1].dtype)
            table, part = f"{q.outputs[0]}/int8/table{i}", f"{q.outputs[0]}/int8/part{i}"
            graph.add_constant(table, quantize(dequantize(x, dq_p), p))
            graph.tensors[part] = TensorInfo(part, p[1].dtype, graph.info(dq.inputs[0]).shape)
            graph.nodes.insert(_at(graph, node), Node("QLookupInt8", f"{part}/QLookupInt8", [dq.inputs[0], table],
                                                      [part], domain=INT8_DOMAIN, guards=node.guards))
            node.inputs[i] = part
    node.outputs = [q.outputs[0]]
    del graph.nodes[_at(graph, q)]
    drop_unused(graph, [dq for dq, _ in dqs])
    return True


def _movable(graph: Graph, node: Node, scale: np.ndarray) -> bool:
    """A one-input mover (Resize in nearest mode), or a 2-D MaxPool without Indices where the scale is
    positive: each commutes with a per-tensor (de)quantisation of that scale."""
    if node.domain not in ("", "ai.onnx") or any(node.outputs[1:]) or node.activation is not None:
        return False
    if node.op_type == "MaxPool":
        return float(scale) > 0 and node.inputs[0] in graph.tensors and len(graph.info(node.inputs[0]).shape) == 4
    if node.op_type in ("Resize", "Upsample") and str(node.attr("mode", "nearest")) != "nearest":
        return False
    return node.op_type in MOVERS and node.op_type not in ("Concat", "Identity")  # an Identity costs nothing


def _push_dequantize(graph: Graph, node: Node) -> bool:
    """M(DQ(x)) → DQ(M(x)) for a mover or MaxPool M (a Split: one DequantizeLinear per output): M then moves
    the integers, and what reads its output meets the DequantizeLinear (a QuantizeLinear, a pool, an island),
    as a full-integer TFLite model's `DQ → Transpose → MaxPool → Transpose → Q` needs."""
    split = node.op_type == "Split" and node.domain in ("", "ai.onnx")
    if (node.op_type not in MOVERS and node.op_type != "MaxPool" and not split) or not node.inputs \
            or not node.outputs:
        return False
    found = _dq_of(graph, node.inputs[0])
    outs = [o for o in node.outputs if o] if split else node.outputs[:1]
    if found is None or any(o not in graph.tensors for o in outs) \
            or not (split or _movable(graph, node, found[1][0])):
        return False
    dq, p = found
    if not _integer_pad(graph, node, p, exact=True):
        return False
    node.inputs[0] = dq.inputs[0]
    node.outputs = [f"{o}/int8" if o else "" for o in node.outputs] if split else [f"{outs[0]}/int8"]
    for at, out in enumerate(outs, start=_at(graph, node) + 1):
        moved = f"{out}/int8"
        graph.tensors[moved] = TensorInfo(moved, p[1].dtype, graph.info(out).shape)
        graph.nodes.insert(at, Node("DequantizeLinear", f"{moved}/DequantizeLinear", [moved, *dq.inputs[1:]],
                                    [out], dict(dq.attrs), guards=node.guards))
    drop_unused(graph, [dq])
    return True


def _pull_quantize(graph: Graph, q: Node) -> bool:
    """Q(M(v)) → M(Q(v)) for a mover or MaxPool M whose output only the QuantizeLinear reads."""
    p = params(graph, q) if q.op_type == "QuantizeLinear" else None
    node = graph.producer(q.inputs[0]) if p is not None else None
    if p is None or node is None or not node.inputs or not _movable(graph, node, p[0]) \
            or q.inputs[0] in graph.outputs or len(graph.consumers(q.inputs[0])) != 1:
        return False
    v = node.inputs[0]
    if v not in graph.tensors or graph.info(v).dtype != np.float32 or not _integer_pad(graph, node, p, exact=False):
        return False
    quantized = f"{q.outputs[0]}/before/{node.op_type}"
    graph.tensors[quantized] = TensorInfo(quantized, p[1].dtype, graph.info(v).shape)
    del graph.nodes[_at(graph, q)]
    graph.nodes.insert(_at(graph, node), Node("QuantizeLinear", f"{quantized}/QuantizeLinear", [v, *q.inputs[1:]],
                                              [quantized], dict(q.attrs), guards=q.guards))
    node.inputs[0], node.outputs = quantized, [q.outputs[0]]
    return True


def _drop_requantize(graph: Graph, q: Node) -> bool:
    """Q(DQ(x)) with the DequantizeLinear's own parameters is x: round((x - z) * s / s) + z = x. Its readers
    read x instead (a graph output, or a graph with If/Loop bodies that may read it by name, gets an
    Identity, which costs nothing)."""
    p = params(graph, q) if q.op_type == "QuantizeLinear" else None
    found = _dq_of(graph, q.inputs[0]) if p is not None else None
    if p is None or found is None or not _same(found[1], p) or q.guards:
        return False
    x, y = found[0].inputs[0], q.outputs[0]
    subgraphs = any(isinstance(v, onnx.GraphProto) for n in graph.nodes for v in n.attrs.values())
    if y in graph.outputs or subgraphs:  # a branch or loop body may name y from the outer scope
        graph.nodes[_at(graph, q)] = Node("Identity", f"{y}/Identity", [x], [y])
    else:
        del graph.nodes[_at(graph, q)]
        for node in graph.nodes:
            node.inputs = [x if name == y else name for name in node.inputs]
    drop_unused(graph, [found[0]])
    return True


# 2. lookup tables ------------------------------------------------------------------------------------------

MAX_ISLAND_VALUES = 128  # values one table's walk visits at most (its recursion depth)
MAX_ROUNDS = 4  # rounds of every rule over the graph
Unary = Callable[[np.ndarray, Node], np.ndarray]
F32 = np.float32


def _f(node: Node, name: str, default: float) -> np.float32:
    return F32(float(node.attr(name, default)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(F32(1) / (F32(1) + np.exp(-x)), F32)


def _gelu(x: np.ndarray, node: Node) -> np.ndarray:
    if str(node.attr("approximate", "none")) == "tanh":
        inner = F32(math.sqrt(2 / math.pi)) * (x + F32(0.044715) * x * x * x)
        return np.asarray(F32(0.5) * x * (F32(1) + np.tanh(inner)), F32)
    erf = np.vectorize(math.erf)(x.astype(np.float64) / math.sqrt(2)).astype(F32)
    return np.asarray(F32(0.5) * x * (F32(1) + erf), F32)


# Element-wise float ops of one input, in float32 as ONNX Runtime computes them (ulp-level differences in
# exp/tanh move a value across a rounding boundary rarely, and then by one step).
UNARY: dict[str, Unary] = {
    "Identity": lambda x, n: x,
    "Relu": lambda x, n: np.maximum(x, F32(0)),
    "LeakyRelu": lambda x, n: np.where(x >= 0, x, x * _f(n, "alpha", 0.01)),
    "HardSigmoid": lambda x, n: np.clip(x * _f(n, "alpha", 0.2) + _f(n, "beta", 0.5), F32(0), F32(1)),
    "HardSwish": lambda x, n: x * np.clip(x * F32(1 / 6) + F32(0.5), F32(0), F32(1)),
    "Sigmoid": lambda x, n: _sigmoid(x),
    "Tanh": lambda x, n: np.tanh(x),
    "Elu": lambda x, n: np.where(x >= 0, x, _f(n, "alpha", 1.0) * (np.exp(x) - F32(1))),
    "Selu": lambda x, n: _f(n, "gamma", 1.0507009873554805) * np.where(
        x > 0, x, _f(n, "alpha", 1.6732632423543772) * (np.exp(x) - F32(1))),
    "Softplus": lambda x, n: np.log1p(np.exp(x)),
    "Softsign": lambda x, n: x / (F32(1) + np.abs(x)),
    "ThresholdedRelu": lambda x, n: np.where(x > _f(n, "alpha", 1.0), x, F32(0)),
    "Gelu": _gelu,
    "Exp": lambda x, n: np.exp(x),
    "Neg": lambda x, n: -x,
    "Abs": lambda x, n: np.abs(x),
    "Floor": lambda x, n: np.floor(x),
    "Ceil": lambda x, n: np.ceil(x),
    "Round": lambda x, n: np.rint(x),
    "Sqrt": lambda x, n: np.sqrt(x),
    "Reciprocal": lambda x, n: F32(1) / x,
    "Erf": lambda x, n: np.vectorize(math.erf)(x.astype(np.float64)).astype(F32),
}
BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Max": np.maximum, "Min": np.minimum,
}


class _Island:
    """The element-wise float ops between DequantizeLinears of one (u)int8 tensor and a QuantizeLinear."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.nodes: dict[int, Node] = {}  # every node the island reads through, by id
        self._roots: dict[str, dict[str, int] | None] = {}

    def roots(self, name: str) -> dict[str, int] | None:
        """The (u)int8 tensors `name` is an element-wise function of, each with how many QuantizeLinear →
        DequantizeLinear pairs lie between; {} for a value of one element computed from constants (a quantized
        one dequantised); None: not a function of one tensor.
        Each value's answer is kept: a chain of diamonds (x * sigmoid(x) after x * sigmoid(x)...) reads
        every value twice. The walk stops after MAX_ISLAND_VALUES values (a chain of hundreds of islands
        would otherwise recurse past Python's stack): the table then stands for the islands nearest the
        QuantizeLinear."""
        if name not in self._roots:
            self._roots[name] = None  # while it is being found, and for good once the walk is too long
            if len(self._roots) <= MAX_ISLAND_VALUES:
                self._roots[name] = self._find_roots(name)
        return self._roots[name]

    def _find_roots(self, name: str) -> dict[str, int] | None:
        graph = self.graph
        constant = graph.constants.get(name)
        if constant is not None:
            return {} if constant.size == 1 and constant.dtype == np.float32 else None
        if name not in graph.tensors or graph.info(name).dtype != np.float32:
            return None
        dq = _dq_of(graph, name)
        if dq is not None and dq[0].inputs[0] in graph.constants:  # a quantized constant (TFLite's operands)
            return {} if graph.constants[dq[0].inputs[0]].size == 1 else None
        if dq is not None:
            found = {dq[0].inputs[0]: 0}
            inner = graph.producer(dq[0].inputs[0])
            if inner is not None and inner.op_type == "QuantizeLinear" and params(graph, inner) is not None:
                found.update({root: depth + 1 for root, depth in (self.roots(inner.inputs[0]) or {}).items()})
            return found
        node = graph.producer(name)
        if node is None or node.domain not in ("", "ai.onnx") or len(node.outputs) != 1:
            return None
        if node.op_type in BINARY:
            inputs = node.inputs
        elif node.op_type == "Clip":
            inputs = node.inputs[:1]
            if any(_arg(node, i) and graph.constants.get(_arg(node, i)) is None for i in (1, 2)):
                return None
        elif node.op_type in UNARY:
            inputs = node.inputs
        else:
            return None
        if len(inputs) not in (1, 2) or not all(inputs):
            return None
        common: dict[str, int] | None = None  # None while every operand is a constant
        for operand in inputs:
            reached = self.roots(operand)
            if reached is None:
                return None
            if reached:  # ({}: a constant, or a value computed from constants only)
                common = reached if common is None else {k: max(v, reached[k]) for k, v in common.items()
                                                         if k in reached}
                if not common:
                    return None  # functions of different tensors
        return common if common is not None else {}

    def evaluate(self, name: str, root: str, x: np.ndarray, memo: dict[str, np.ndarray]) -> np.ndarray:
        """`name`'s values for each of the root's 256 values `x`, recording the nodes read through."""
        if name in memo:
            return memo[name]
        graph = self.graph
        if name in graph.constants:
            return graph.constants[name].reshape(()).astype(F32)
        node = graph.producer(name)
        assert node is not None
        self.nodes[id(node)] = node
        if node.op_type == "DequantizeLinear":
            p = params(graph, node)
            assert p is not None
            if node.inputs[0] in graph.constants:  # a quantized constant of one element
                value = dequantize(graph.constants[node.inputs[0]].reshape(()), p)
            elif node.inputs[0] == root:
                value = dequantize(x, p)
            else:  # through an inner QuantizeLinear
                inner = graph.producer(node.inputs[0])
                assert inner is not None
                self.nodes[id(inner)] = inner
                inner_p = params(graph, inner)
                assert inner_p is not None
                value = dequantize(quantize(self.evaluate(inner.inputs[0], root, x, memo), inner_p), p)
        elif node.op_type in BINARY:
            a, b = (self.evaluate(i, root, x, memo) for i in node.inputs)
            value = BINARY[node.op_type](a, b)
        elif node.op_type == "Clip":
            value = self.evaluate(node.inputs[0], root, x, memo)
            bounds = [graph.constants[_arg(node, i)].reshape(()) if _arg(node, i) else None for i in (1, 2)]
            lo = F32(bounds[0]) if bounds[0] is not None else F32(node.attr("min", -np.inf))
            hi = F32(bounds[1]) if bounds[1] is not None else F32(node.attr("max", np.inf))
            value = np.minimum(np.maximum(value, lo), hi)
        else:
            value = UNARY[node.op_type](self.evaluate(node.inputs[0], root, x, memo), node)
        memo[name] = np.asarray(value, F32)
        return memo[name]


def lookup_table(graph: Graph, quantize_node: Node) -> tuple[str, np.ndarray, list[Node]] | None:
    """(x, table, nodes) when `quantize_node`'s input is an element-wise float function of one (u)int8 tensor
    x: table[b] is the QuantizeLinear's output for x's value of byte b (x & 255), computed as ONNX Runtime
    runs the ops (dequantise, each op in float32, quantise with ties to even, saturate); `nodes` are those
    the table stands for. None when it is not, or when the function is not finite at some value."""
    p = params(graph, quantize_node)
    if p is None:
        return None
    island = _Island(graph)
    roots = island.roots(quantize_node.inputs[0])
    if not roots:
        return None
    root = max(roots, key=lambda r: (roots[r], r))  # the deepest: one table for the longest chain
    dtype = graph.info(root).dtype
    if graph.info(root).shape != graph.info(quantize_node.outputs[0]).shape:
        return None  # a constant broadcast the values to more axes
    x = np.arange(256, dtype=np.uint8).view(dtype)  # entry b holds x's value of byte b
    with np.errstate(all="ignore"):
        values = island.evaluate(quantize_node.inputs[0], root, x, {})
    values = np.broadcast_to(values, x.shape)
    if np.isnan(values).any():  # ONNX Runtime's conversion of NaN to an integer is undefined: keep its path
        return None
    with np.errstate(all="ignore"):
        table = quantize(values, p)
    return root, table, list(island.nodes.values())


def _fuse_lookup(graph: Graph, q: Node) -> bool:
    if q.op_type != "QuantizeLinear" or q.inputs[0] in graph.constants:
        return False
    found = lookup_table(graph, q)
    if found is None:
        return False
    root, table, nodes = found
    name = f"{q.outputs[0]}/int8/table"
    graph.add_constant(name, table)
    fused = Node("QLookupInt8", f"{q.name}/int8", [root, name], [q.outputs[0]], domain=INT8_DOMAIN, guards=q.guards)
    _remove(graph, q, fused, nodes)
    return True


# 3. binary islands -----------------------------------------------------------------------------------------

def _fuse_binary(graph: Graph, node: Node) -> bool:
    """`DQ(a), DQ(b) → Add | Sub | Mul (→ Relu | Clip) → Q`: QAddInt8 (Sub is an Add of b's scale negated) or
    QMulInt8; a Relu or Clip of constant bounds (TFLite's fused activation) becomes the output's integer range."""
    if node.op_type not in ("Add", "Sub", "Mul") or node.domain not in ("", "ai.onnx") \
            or node.activation is not None or len(node.inputs) != 2:
        return False
    found = [_dq_of(graph, name) for name in node.inputs]
    output = requantized_output(graph, node)
    y_p = params(graph, output[0]) if output is not None else None
    if output is None or y_p is None or found[0] is None or found[1] is None:
        return False
    (a_dq, a_p), (b_dq, b_p), (q, clamp, bounds) = found[0], found[1], output
    if not a_p[1].dtype == b_p[1].dtype == y_p[1].dtype:
        return False
    if node.op_type == "Sub":
        b_p = (-b_p[0], b_p[1])
    inputs: list[str] = []
    for part, dq, p in (("a", a_dq, a_p), ("b", b_dq, b_p), ("y", None, y_p)):
        names = [f"{q.outputs[0]}/int8/{part}_scale", f"{q.outputs[0]}/int8/{part}_zero"]
        graph.add_constant(names[0], p[0])
        graph.add_constant(names[1], p[1])
        inputs += ([dq.inputs[0]] if dq is not None else []) + names
    if clamp is not None:
        for end, value in zip(("y_lo", "y_hi"), integer_range(bounds, *y_p), strict=True):
            graph.add_constant(f"{q.outputs[0]}/int8/{end}", value)
            inputs.append(f"{q.outputs[0]}/int8/{end}")
    fused = Node("QMulInt8" if node.op_type == "Mul" else "QAddInt8", f"{q.name}/int8", inputs, [q.outputs[0]],
                 domain=INT8_DOMAIN, guards=node.guards)
    _remove(graph, q, fused, [n for n in (clamp, node, a_dq, b_dq) if n is not None])
    return True


# 4. pools --------------------------------------------------------------------------------------------------

def _fuse_global_pool(graph: Graph, node: Node) -> bool:
    if node.op_type != "GlobalAveragePool" or node.domain not in ("", "ai.onnx"):
        return False
    found, quantized = _dq_of(graph, node.inputs[0]), _only_quantize(graph, node.outputs[0])
    if found is None or quantized is None or len(graph.info(node.inputs[0]).shape) < 3:
        return False
    (dq, x_p), (q, y_p) = found, quantized
    if x_p[1].dtype != y_p[1].dtype:
        return False
    names = [f"{q.outputs[0]}/int8/{part}" for part in ("x_scale", "x_zero", "y_scale", "y_zero")]
    for name, value in zip(names, (*x_p, *y_p), strict=True):
        graph.add_constant(name, value)
    fused = Node("QGlobalAveragePoolInt8", f"{q.name}/int8", [dq.inputs[0], *names], [q.outputs[0]],
                 domain=INT8_DOMAIN, guards=node.guards)
    _remove(graph, q, fused, [node, dq])
    return True


def _fuse_average_pool(graph: Graph, node: Node) -> bool:
    """A 2-D AveragePool between a DequantizeLinear and a QuantizeLinear (QLinearAveragePool once
    rewritten): the taps summed in integers, requantised once per output."""
    if node.op_type != "AveragePool" or node.domain not in ("", "ai.onnx") or node.activation is not None \
            or node.inputs[0] not in graph.tensors or len(graph.info(node.inputs[0]).shape) != 4 \
            or int((node.attr("kernel_shape") or [MAX_SUMMED_ROWS + 1])[0]) > MAX_SUMMED_ROWS:
        return False
    found, quantized = _dq_of(graph, node.inputs[0]), _only_quantize(graph, node.outputs[0])
    if found is None or quantized is None or found[1][1].dtype != quantized[1][1].dtype:
        return False
    (dq, x_p), (q, y_p) = found, quantized
    names = [f"{q.outputs[0]}/int8/{part}" for part in ("x_scale", "x_zero", "y_scale", "y_zero")]
    for name, value in zip(names, (*x_p, *y_p), strict=True):
        graph.add_constant(name, value)
    fused = Node("QAveragePoolInt8", f"{q.name}/int8", [dq.inputs[0], *names], [q.outputs[0]], dict(node.attrs),
                 INT8_DOMAIN, guards=node.guards)
    _remove(graph, q, fused, [node, dq])
    return True


def _fuse_max_pool(graph: Graph, node: Node) -> bool:
    """A 2-D MaxPool (no Indices) of (u)int8 values, as QOperator models write it, or between a DequantizeLinear
    and a QuantizeLinear of one scale and zero point: max commutes with the monotonic (de)quantisation."""
    if node.op_type != "MaxPool" or node.domain not in ("", "ai.onnx") or node.activation is not None \
            or any(node.outputs[1:]) or node.inputs[0] not in graph.tensors \
            or len(graph.info(node.inputs[0]).shape) != 4:
        return False
    if graph.info(node.inputs[0]).dtype in QUANTIZED:  # already on the integers
        graph.nodes[_at(graph, node)] = Node("QMaxPoolInt8", f"{node.name}/int8", [node.inputs[0]],
                                                    node.outputs[:1], dict(node.attrs), INT8_DOMAIN,
                                                    guards=node.guards)
        return True
    found, quantized = _dq_of(graph, node.inputs[0]), _only_quantize(graph, node.outputs[0])
    if found is None or quantized is None or not _same(found[1], quantized[1]):
        return False
    (dq, _), (q, _) = found, quantized
    fused = Node("QMaxPoolInt8", f"{q.name}/int8", [dq.inputs[0]], [q.outputs[0]], dict(node.attrs), INT8_DOMAIN,
                 guards=node.guards)
    _remove(graph, q, fused, [node, dq])
    return True


def fuse_int8_islands(graph: Graph) -> int:
    """Move every matching island onto the integers (the module's docstring says which); returns how many."""
    if not any(n.op_type == "DequantizeLinear" or (n.op_type == "MaxPool" and n.inputs[0] in graph.tensors
                                                   and graph.info(n.inputs[0]).dtype in QUANTIZED)
               for n in graph.nodes):
        return 0  # a float model: nothing to look for
    if any(o not in graph.tensors for n in graph.nodes for o in n.outputs if o):
        infer_types(graph)  # what passes/quantized.py wrote has no type yet (as in passes/int8.py)
    fused, rounds = 0, 0
    # whole sandwiches first (no QuantizeLinear left to drop), then the (de)quantisations moved past movers;
    # again while a round changed something (a DequantizeLinear moved past an Unsqueeze meets a Concat), a
    # few rounds at most: each rewrite takes a float op away or moves a (de)quantisation one op along
    while rounds < MAX_ROUNDS:
        fused_before, rounds = fused, rounds + 1
        for rule in (_move, _fuse_max_pool, _push_dequantize, _pull_quantize, _drop_requantize, _fuse_lookup,
                     _fuse_binary, _fuse_global_pool, _fuse_average_pool):
            changed = True
            while changed:  # one island's rewrite can complete the next one's pattern
                changed = False
                alive = {id(n) for n in graph.nodes}  # by identity: == on nodes compares every field
                # last node first: a table then stands for the longest chain (HardSwish's Mul before its HardSigmoid)
                for node in list(reversed(graph.nodes)) if rule is _fuse_lookup else list(graph.nodes):
                    if id(node) in alive and rule(graph, node):
                        fused += 1
                        changed = True
                        alive = {id(n) for n in graph.nodes}
        if fused == fused_before:
            break
    return fused


__all__ = ["MOVERS", "fuse_int8_islands", "lookup_table", "params"]
