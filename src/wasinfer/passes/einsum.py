"""Einsum lowered to ops the compiler already has: Transpose, Reshape, MatMul, ReduceSum.

Exporters emit Einsum for attention ("bhid,bhjd->bhij"), bilinear layers and plain
transposes. Every two-operand contraction is a batched matrix product once its indices are
sorted into four groups:
    batch    in both operands and the output      → MatMul's broadcast batch dims
    contract in both operands, not the output     → K
    free     in one operand and the output        → M (left) or N (right)
    summed   in one operand only                  → ReduceSum before the product
so each operand is transposed to [batch, free, contract] (or [batch, contract, free]),
reshaped to 3 groups, multiplied, reshaped back and transposed into the output order.
More than two operands are contracted left to right. A repeated index within one operand
(a diagonal, "ii->i") has no such form and is declined with a clear message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wasinfer.ir import Graph, Node, TensorInfo
from wasinfer.passes.subgraph import lower_each

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class EinsumError(ValueError):
    """An Einsum equation this lowering cannot express (the compiler reports it per node)."""


def parse_equation(equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """Operand index strings and the output's, with `...` spelled out as fresh capital letters
    (aligned from the right, as numpy broadcasts) and an implicit output made explicit."""
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise EinsumError(f"equation {equation!r} names {len(terms)} operands, the node has {len(ranks)}")
    used = set(equation)
    spare = [c for c in LETTERS if c not in used]
    ellipsis_rank = max((rank - len(t.replace("...", "")) for t, rank in zip(terms, ranks, strict=True)
                         if "..." in t), default=0)
    if ellipsis_rank > len(spare):
        raise EinsumError(f"equation {equation!r}: too many broadcast dims")
    fill = "".join(spare[:ellipsis_rank])
    spelled = []
    for term, rank in zip(terms, ranks, strict=True):
        if "..." in term:
            own = rank - len(term.replace("...", ""))
            term = term.replace("...", fill[ellipsis_rank - own:])
        if len(term) != rank:
            raise EinsumError(f"equation {equation!r}: term {term!r} does not match an operand of rank {rank}")
        spelled.append(term)
    if arrow:
        output = rhs.replace("...", fill)
    else:  # implicit: broadcast dims first, then the letters used once, sorted
        counts = {c: "".join(spelled).count(c) for c in "".join(spelled)}
        output = fill + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in fill))
    for term in spelled:
        if len(set(term)) != len(term):
            raise EinsumError(f"equation {equation!r}: repeated index in {term!r} (a diagonal) is not supported")
    return spelled, output


@dataclass
class _Builder:
    graph: Graph
    prefix: str
    nodes: list[Node]
    count: int = 0

    def fresh(self, what: str) -> str:
        self.count += 1
        return f"{self.prefix}/{what}_{self.count}"

    def add(self, op: str, inputs: list[str], shape: tuple[int, ...], dtype: np.dtype, **attrs: object) -> str:
        out = self.fresh(op.lower())
        self.graph.tensors[out] = TensorInfo(out, dtype, shape)
        self.nodes.append(Node(op, out, inputs, [out], dict(attrs)))
        return out

    def transpose(self, name: str, term: str, order: str) -> str:
        if term == order:
            return name
        info = self.graph.info(name)
        perm = [term.index(c) for c in order]
        return self.add("Transpose", [name], tuple(info.shape[p] for p in perm), info.dtype, perm=perm)

    def reshape(self, name: str, shape: tuple[int, ...]) -> str:
        info = self.graph.info(name)
        if info.shape == shape:
            return name
        target = self.fresh("shape")
        self.graph.add_constant(target, np.array(shape, np.int64))
        return self.add("Reshape", [name, target], shape, info.dtype)

    def reduce_sum(self, name: str, term: str, keep: str) -> tuple[str, str]:
        axes = [i for i, c in enumerate(term) if c not in keep]
        if not axes:
            return name, term
        info = self.graph.info(name)
        shape = tuple(d for i, d in enumerate(info.shape) if i not in axes)
        if self.graph.opset >= 13:
            axes_name = self.fresh("axes")
            self.graph.add_constant(axes_name, np.array(axes, np.int64))
            out = self.add("ReduceSum", [name, axes_name], shape, info.dtype, keepdims=0)
        else:
            out = self.add("ReduceSum", [name], shape, info.dtype, axes=axes, keepdims=0)
        return out, "".join(c for c in term if c in keep)


def _contract(b: _Builder, left: tuple[str, str], right: tuple[str, str], keep: str) -> tuple[str, str]:
    """left ⊗ right summed over the indices not in `keep`; returns (tensor, its index string)."""
    (x, xs), (y, ys) = left, right
    x, xs = b.reduce_sum(x, xs, ys + keep)
    y, ys = b.reduce_sum(y, ys, xs + keep)
    batch = "".join(c for c in xs if c in ys and c in keep)
    contract = "".join(c for c in xs if c in ys and c not in keep)
    free_x = "".join(c for c in xs if c not in ys)
    free_y = "".join(c for c in ys if c not in xs)
    sizes_x = dict(zip(xs, b.graph.info(x).shape, strict=True))
    sizes_y = dict(zip(ys, b.graph.info(y).shape, strict=True))
    for c in contract:
        if sizes_x[c] != sizes_y[c]:
            raise EinsumError(f"index {c!r} has size {sizes_x[c]} in one operand and {sizes_y[c]} in the other")
    dtype = b.graph.info(x).dtype
    x = b.transpose(x, xs, batch + free_x + contract)
    y = b.transpose(y, ys, batch + contract + free_y)
    m = math.prod(sizes_x[c] for c in free_x)
    n = math.prod(sizes_y[c] for c in free_y)
    k = math.prod(sizes_x[c] for c in contract)
    x = b.reshape(x, (*tuple(sizes_x[c] for c in batch), m, k))
    y = b.reshape(y, (*tuple(sizes_y[c] for c in batch), k, n))
    batch_shape = tuple(np.broadcast_shapes(tuple(sizes_x[c] for c in batch), tuple(sizes_y[c] for c in batch)))
    product = b.add("MatMul", [x, y], (*batch_shape, m, n), dtype)
    term = batch + free_x + free_y
    sizes = {**sizes_x, **sizes_y, **dict(zip(batch, batch_shape, strict=True))}
    return b.reshape(product, tuple(sizes[c] for c in term)), term


def lower_einsum(graph: Graph, node: Node) -> list[Node]:
    """The nodes that compute `node` (an Einsum); raises EinsumError when there is no such form."""
    operands = [n for n in node.inputs if n]
    terms, output = parse_equation(str(node.attr("equation", "")), [len(graph.info(n).shape) for n in operands])
    builder = _Builder(graph, node.name, [])
    current = (operands[0], terms[0])
    for index in range(1, len(operands)):
        later = "".join(terms[index + 1:]) + output
        current = _contract(builder, current, (operands[index], terms[index]), later)
    name, term = builder.reduce_sum(*current, output)
    if sorted(term) != sorted(output):
        raise EinsumError(f"output {output!r} names indices absent from the inputs")
    name = builder.transpose(name, term, output)
    result = node.outputs[0]
    if name == operands[0] or name in graph.constants:  # nothing to compute: a copy
        return [*builder.nodes, Node("Identity", f"{node.name}/identity", [name], [result])]
    last = builder.nodes[-1]
    last.outputs = [result]
    del graph.tensors[name]
    return builder.nodes


def lower_einsums(graph: Graph) -> int:
    """Replace every Einsum by its lowering; one left in place carries the reason (`Node.declined`), which the
    compiler's support check reports."""
    return lower_each(graph, {"Einsum": lower_einsum}, EinsumError)
