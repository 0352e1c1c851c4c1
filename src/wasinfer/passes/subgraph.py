"""Moving a subgraph (an If branch, a Loop or Scan body) into the outer graph, and replacing a node by the nodes
it is lowered to (`lower_each`).

Its own values and initializers get a prefix (so two branches, or two inlined copies of one
body, never clash), the values it reads from outer scopes keep their names, its formal inputs
(a body's) read the outer values given for them, and its outputs take the names asked for.
Nested subgraphs that read a renamed value are renamed too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from wasinfer.frontends.onnx import attr_value
from wasinfer.ir import Graph, Node, TensorInfo
from wasinfer.ops.control import REFUSE


def _rename_subgraph(graph: onnx.GraphProto, rename: dict[str, str]) -> None:
    """Rename outer-scope reads inside a nested graph (in place), minding its own names."""
    local = {v.name for v in graph.input} | {i.name for i in graph.initializer}
    local |= {o for n in graph.node for o in n.output}
    visible = {k: v for k, v in rename.items() if k not in local}
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name in visible:
                node.input[index] = visible[name]
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                _rename_subgraph(sub, visible)
    for output in graph.output:
        if output.name in visible:
            output.name = visible[output.name]


def inline_subgraph(node: Node, graph: Graph, branch: onnx.GraphProto, prefix: str | None = None,
                    targets: list[str] | None = None, inputs: dict[str, str] | None = None) -> list[Node]:
    """The subgraph's nodes, renamed under `prefix` (default: the node's name), its outputs
    written to `targets` (default: the node's outputs), its formal inputs (a Loop or Scan body's)
    read from the outer values `inputs` maps them to. Its initializers become constants."""
    prefix = prefix if prefix is not None else f"{node.name}/"
    targets = targets if targets is not None else node.outputs
    produced = [o for n in branch.node for o in n.output if o]
    rename = {name: prefix + name for name in produced + [i.name for i in branch.initializer]}
    rename.update(inputs or {})
    identities: list[Node] = []
    for index, (value, target) in enumerate(zip(branch.output, targets, strict=False)):
        if not target:
            continue
        if value.name in produced and rename[value.name] == prefix + value.name:
            rename[value.name] = target
        else:  # an outer value, an initializer, or a value returned twice
            identities.append(Node("Identity", f"{prefix}output{index}", [value.name], [target]))
    for init in branch.initializer:
        graph.add_constant(rename[init.name], numpy_helper.to_array(init))
    nodes: list[Node] = []
    for index, proto in enumerate(branch.node):
        attrs = {}
        for attr in proto.attribute:
            if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                attr = onnx.AttributeProto.FromString(attr.SerializeToString())
                for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                    _rename_subgraph(sub, rename)
            attrs[attr.name] = attr_value(attr)
        nodes.append(Node(proto.op_type, prefix + (proto.name or f"{proto.op_type}_{index}"),
                          [rename.get(i, i) for i in proto.input], [rename.get(o, o) for o in proto.output],
                          attrs, proto.domain if proto.domain != "ai.onnx" else ""))
    for identity in identities:
        identity.inputs = [rename.get(i, i) for i in identity.inputs]
    return nodes + identities


def choose(graph: Graph, condition: str, when_true: str, when_false: str, output: str, name: str,
           guards: tuple[tuple[str, bool], ...] = ()) -> list[Node]:
    """`output` = Where(condition, when_true, when_false) for a one-element bool condition, viewed
    first at the output's rank (all ones) so that Where broadcasts it like a scalar, and so that a
    condition that is one element per sample lines up with the samples' axis (batch analysis)."""
    typed = next(n for n in (output, when_true, when_false) if n in graph.tensors)
    rank = len(graph.info(typed).shape)
    shape, view = f"{name}/rank{rank}", f"{name}/condition{rank}"
    graph.add_constant(shape, np.ones(rank, np.int64))
    graph.tensors[view] = TensorInfo(view, np.dtype(np.bool_), (1,) * rank)
    return [Node("Reshape", f"{name}/view", [condition, shape], [view], guards=guards),
            Node("Where", f"{name}/choose", [view, when_true, when_false], [output], guards=guards)]


def refusal(graph: Graph, name: str, message: str, guards: tuple[tuple[str, bool], ...]) -> Node:
    """A Refuse node that stops the run where its guards hold, with status 2 + i and `message` as the metadata's
    `run_errors[i]` (an InputError, a 400 when served): an If's branch, a Loop's iteration, or an op's parameter that
    cannot run at the compiled shapes (passes/control.py, loops.py, spectral.py)."""
    graph.run_errors.append(message)
    code = len(graph.run_errors) + 1  # status 0 is success, 1 a batch out of range
    return Node(REFUSE[1], name, [], [], {"code": code}, domain=REFUSE[0], guards=guards)


def lower_each(graph: Graph, lowerings: Mapping[str, Callable[[Graph, Node], list[Node]]],
               declined: type[Exception]) -> int:
    """Replace every default-domain node whose op has a lowering (once its inputs are typed) by the nodes the
    lowering returns; returns how many. One whose lowering raises `declined` stays, carrying the reason
    (`Node.declined`), which the compiler's support check reports."""
    lowered, nodes = 0, []
    for node in graph.nodes:
        lower = None if node.domain else lowerings.get(node.op_type)
        if lower is None or not all(n in graph.tensors for n in node.inputs if n):
            nodes.append(node)
            continue
        try:
            nodes.extend(lower(graph, node))
            lowered += 1
        except declined as exc:
            node.declined = str(exc)
            nodes.append(node)
    graph.nodes = nodes
    return lowered
