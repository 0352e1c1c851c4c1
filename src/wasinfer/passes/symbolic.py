"""Symbolic dims through the graph: every tensor's dims as expressions of --input-shape's ranges.

Two walks over the nodes, in order, with each op's extent rule (ops/extent.py):

- `record_shape_values`, before Shape nodes are folded: the symbolic *values* of the integer tensors
  that hold dims (Shape → Gather → Concat → Reshape chains), kept in `Graph.shape_values` by name, so
  that they survive the folding that turns them into constants at the largest dims;
- `infer_extents`, after the other passes: the dims of every tensor (`Graph.extents`), the fills the
  kernels that read across a symbolic axis need (inserted as `Mask` nodes just before them), and,
  for every node a symbolic dim cannot go through yet, why (listed together by `check_support`).

Each dim found is also checked against what the static passes computed: its largest value must be the
tensor's shape (so memory planned for the largest holds it), and its smallest at least 1.
"""

from __future__ import annotations

import numpy as np

from wasinfer.ir import Graph, Node, TensorInfo
from wasinfer.ir.symbolic import Expr, Extent, is_static, largest, show, smallest
from wasinfer.ops import lookup
from wasinfer.ops.definition import ExtentFlow, ExtentView, Role

MASK = ("wasinfer", "Mask")  # fill a tensor past its actual dim on one axis (attrs: axis, fill)
DIMS = ("wasinfer", "Dims")  # a tensor holding dims that depend on the symbols, written by each run (attrs: dims)

# (op, input) pairs that read symbolic values as the dims of their output (ops/extent.py)
_READS_DIMS = {("Reshape", 1), ("Expand", 1), ("ConstantOfShape", 0), ("Squeeze", 1), ("Unsqueeze", 1), ("Range", 1),
               ("Slice", 2), ("Tile", 1), ("Pad", 1)}


def _touched(graph: Graph, node: Node) -> bool:
    return any(n and (n in graph.extents or n in graph.shape_values) for n in node.inputs)


def _computes_with(graph: Graph, node: Node, flow: ExtentFlow) -> list[int]:
    """The inputs holding symbolic dims that the node computes with, rather than carrying them on as dims."""
    if any(v is not None for v in flow.values):
        return []
    return [index for index, name in enumerate(node.inputs)
            if name in graph.shape_values and (node.op_type, index) not in _READS_DIMS]


def _rule(graph: Graph, node: Node) -> ExtentFlow:
    """The op's extent rule applied, or why it cannot be."""
    op = lookup(node)
    if op is None or op.extent is None:
        return ExtentFlow(refused="a symbolic dim cannot go through this op yet")
    try:
        return op.extent(ExtentView(graph, node))
    except (ValueError, IndexError, KeyError, TypeError) as exc:  # a shape the rule does not know how to read
        return ExtentFlow(refused=f"its dims could not be followed ({exc})")


def _apply(graph: Graph, node: Node) -> ExtentFlow:
    flow = _rule(graph, node)
    if flow.refused:
        return flow
    for index in _computes_with(graph, node, flow):
        return ExtentFlow(refused=f"it computes with {node.inputs[index]!r}, which holds dims decided by each run")
    return flow


def _materialise(graph: Graph, node: Node, index: int, values: Extent | None = None) -> Node:
    """A Dims node that writes input `index`'s symbolic values (or `values`) at run time, which the node then
    reads instead (a width cast to float to scale by, a sequence length in arithmetic the extent rules do not
    carry, an index counted from the end of a symbolic axis)."""
    name = node.inputs[index]
    values = graph.shape_values[name] if values is None else values
    known = graph.tensors.get(name)
    extent = graph.extents.get(name)
    shape = known.shape if known is not None else tuple(largest(d, graph.symbols) for d in extent or (len(values),))
    dtype = known.dtype if known is not None else np.dtype(np.int64)
    fresh = f"{name}/run_time/{node.name}"
    graph.tensors[fresh] = TensorInfo(fresh, dtype, tuple(shape))
    node.inputs[index] = fresh
    return Node(DIMS[1], f"{node.name}/dims_{index}", [], [fresh], {"dims": values}, domain=DIMS[0])


def _record(graph: Graph, node: Node, flow: ExtentFlow, static: bool = False) -> None:
    """Keep what the flow found; with `static` also the static dims (before folding some tensors have no
    type yet, and a later rule needs their dims)."""
    for name, extent in zip(node.outputs, flow.outputs, strict=False):
        if name and extent is not None and (static or not is_static(extent)):
            graph.extents[name] = extent
    for name, values in zip(node.outputs, flow.values, strict=False):
        if name and values is not None:  # static ones too, until record_shape_values is done: folding has
            graph.shape_values[name] = values  # not made those constants yet


def record_shape_values(graph: Graph) -> None:
    """Follow the symbols as far as the rules go, to keep the symbolic values of shape arithmetic; where a node
    computes with such values (rather than carrying them on as dims), it reads them from a Dims node instead,
    written at run time, so that folding never bakes in their values at the largest dims."""
    kept: list[Node] = []
    folds = set(graph.constants)  # what folding will make constants: evaluated once, at the largest dims
    graph.fold_hazards = []
    for node in graph.nodes:
        folded = node.op_type in ("Shape", "Size") or all(n in folds for n in node.inputs if n)
        if _touched(graph, node):
            flow = _rule(graph, node)
            computed = [] if flow.refused else _computes_with(graph, node, flow)
            for index in computed:
                kept.append(_materialise(graph, node, index))
                folded = False
            if computed:  # the node now reads those from the Dims nodes: its rule again
                flow = _rule(graph, node)
            op = lookup(node)
            if flow.refused and folded and (op is None or op.role is not Role.INLINED):
                # its value, folded at the ranges' largest, would hold for those only (control flow is unrolled)
                graph.fold_hazards.append(f"node {node.name!r} ({node.op_type}): {flow.refused}")
            if not flow.refused:
                _record(graph, node, flow, static=True)
                if folded and (flow.masks or flow.run_time_inputs):  # its value would be the largest dims' only
                    graph.fold_hazards.append(f"node {node.name!r} ({node.op_type}): it reads across a symbolic dim "
                                              "of values known while compiling, which are folded at the ranges' "
                                              "largest only")
        if folded:
            folds.update(o for o in node.outputs if o)
        kept.append(node)
    graph.nodes = kept
    # the extents are found again after the other passes; until then the symbolic ones say where a symbol goes
    # (a Scan over one is declined: passes/loops.py)
    graph.extents = {n: e for n, e in graph.extents.items() if not is_static(e)}
    graph.shape_values = {n: v for n, v in graph.shape_values.items() if not is_static(v)}


def infer_extents(graph: Graph) -> list[str]:
    """Fill `Graph.extents`, insert the Mask nodes, and return the problems (empty when every node can run)."""
    if not graph.symbols:
        return []
    graph.nodes = [n for n in graph.nodes if (n.domain, n.op_type) != MASK]  # again from scratch
    # the inputs' dims, the data's counts, and the constants folded at the largest dims whose every value is set
    # by its position alone (a Range to a symbolic limit, a ConstantOfShape), which each bucket cuts to its size
    graph.extents = ({n: graph.extents[n] for n in graph.inputs if n in graph.extents} | graph.decided
                     | {n: e for n, e in graph.extents.items() if n in graph.constants})
    problems: list[str] = list(graph.fold_hazards)
    kept: list[Node] = []
    pending = list(reversed(graph.nodes))
    while pending:
        node = pending.pop()
        if not _touched(graph, node):
            kept.append(node)
            continue
        parts = decompose_norm(graph, node)
        if parts:  # its parts follow the symbols with their own rules
            pending.extend(reversed(parts))
            continue
        flow = _apply(graph, node)
        if flow.refused:
            reads = [n for n in node.inputs if n in graph.extents]
            where = f"reads {reads[0]!r} {show(graph.extents[reads[0]])}; " if reads else ""
            problems.append(f"node {node.name!r} ({node.op_type}): {where}{flow.refused}")
            kept.append(node)
            continue
        _record(graph, node, flow)
        for index, values in flow.run_time_inputs:
            kept.append(_materialise(graph, node, index, values))
        for index, axis, fill in flow.masks + flow.index_masks:
            name = node.inputs[index]
            if name in graph.extents and isinstance(graph.extents[name][axis], Expr):
                kept.append(Node(MASK[1], f"{node.name}/mask_{index}_{axis}", [name], [],
                                 {"axis": axis, "fill": fill}, domain=MASK[0], guards=node.guards))
        kept.append(node)
    graph.nodes = kept
    for name, extent in graph.extents.items():
        problems += _check(graph, name, extent)
    return problems


def normalised_axes(graph: Graph, node: Node) -> list[int] | None:
    """The axes InstanceNormalization or LayerNormalization normalises over; None for other ops, and for a
    LayerNormalization whose Mean or InvStdDev output is read (its parts would not give those)."""
    if node.domain or node.op_type not in ("InstanceNormalization", "LayerNormalization"):
        return None
    rank = len(graph.info(node.inputs[0]).shape)
    if node.op_type == "InstanceNormalization":
        return list(range(2, rank))
    if any(o and (o in graph.outputs or graph.consumers(o)) for o in node.outputs[1:]):
        return None
    return list(range(int(node.attr("axis", -1)) % rank, rank))


def decompose_norm(graph: Graph, node: Node) -> list[Node]:
    """A normalisation over a symbolic axis as the ops it is made of, each with an extent rule:

        mean = ReduceMean(x), d = x - mean, var = ReduceMean(d * d), y = d / sqrt(var + eps) * scale + bias

    (the means over the normalised axes, kept). Each ReduceMean has the part past the run's dims filled with 0
    and divides by the run's count, and the variance stays a second pass over the deviations, as the kernel's
    is (emitters/norm.py). Empty where the node is anything else, or normalises over static axes only."""
    axes = normalised_axes(graph, node)
    extent = graph.extents.get(node.inputs[0])
    if axes is None or extent is None or not any(isinstance(extent[a], Expr) for a in axes):
        return []
    x = graph.info(node.inputs[0])
    reduced = tuple(1 if a in axes else d for a, d in enumerate(x.shape))
    nodes: list[Node] = []

    def add(op: str, inputs: list[str], shape: tuple[int, ...], output: str = "", **attrs: object) -> str:
        name = output or f"{node.name}/{op.lower()}_{len(nodes)}"
        if not output:
            graph.tensors[name] = TensorInfo(name, x.dtype, shape)
        nodes.append(Node(op, f"{node.name}/{op}_{len(nodes)}", inputs, [name], dict(attrs), guards=node.guards))
        return name

    def constant(what: str, value: np.ndarray) -> str:
        name = f"{node.name}/{what}"
        graph.add_constant(name, value)
        return name

    def mean(name: str) -> str:
        if graph.opset >= 18:
            return add("ReduceMean", [name, constant(f"axes_{len(nodes)}", np.array(axes, np.int64))], reduced,
                       keepdims=1)
        return add("ReduceMean", [name], reduced, axes=axes, keepdims=1)

    def parameter(index: int) -> str:
        """InstanceNormalization's [C] scale or bias as [C, 1, ...] (LayerNormalization's broadcast as given)."""
        name = node.inputs[index]
        if node.op_type == "LayerNormalization":
            return name
        shape = (graph.info(name).shape[0], *[1] * (len(x.shape) - 2))
        value = graph.constants.get(name)
        if value is not None:
            return constant(f"param_{index}", value.reshape(shape))
        return add("Reshape", [name, constant(f"shape_{index}", np.array(shape, np.int64))], shape)

    deviation = add("Sub", [node.inputs[0], mean(node.inputs[0])], x.shape)
    variance = mean(add("Mul", [deviation, deviation], x.shape))
    eps = constant("epsilon", np.array(node.attr("epsilon", 1e-5), x.dtype))
    std = add("Sqrt", [add("Add", [variance, eps], reduced)], reduced)
    present = [i for i in (1, 2) if len(node.inputs) > i and node.inputs[i]]
    y = add("Div", [deviation, std], x.shape, output=node.outputs[0] if not present else "")
    for i in present:
        y = add("Mul" if i == 1 else "Add", [y, parameter(i)], x.shape,
                output=node.outputs[0] if i == present[-1] else "")
    return nodes


def _check(graph: Graph, name: str, extent: Extent) -> list[str]:
    shape = graph.info(name).shape if name in graph.tensors else None
    largest_dims = tuple(largest(d, graph.symbols) for d in extent)
    if shape is not None and largest_dims != tuple(shape):
        return [f"tensor {name!r}: its dims {show(extent)} are {list(largest_dims)} at the ranges' largest, but "
                f"{list(shape)} when compiled there (a rule in wasinfer/ops/extent.py disagrees with shape inference)"]
    decided = {name for name, (low, _) in graph.symbols.items() if low == 0}  # the data's counts may be 0
    empty = [str(d) for d in extent
             if smallest(d, graph.symbols) < (0 if isinstance(d, Expr) and d.symbols() & decided else 1)]
    if empty:
        low = ", ".join(f"{s}={lo}" for s, (lo, _) in sorted(graph.symbols.items()))
        return [f"tensor {name!r}: at the ranges' smallest ({low}) its dims {show(extent)} would be empty "
                f"({', '.join(empty)}); raise the range's MIN"]
    return []


__all__ = ["DIMS", "MASK", "infer_extents", "record_shape_values"]
