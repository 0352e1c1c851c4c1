"""float16 and bfloat16 compute through float32: a node whose kernel does not take its half-precision tensors runs
on float32 copies, its results rounded back.

The kernels compute in float32 (and move any whole-byte type). ONNX leaves the precision of a float16 or
bfloat16 op's arithmetic to the runtime, and ONNX Runtime itself computes most of them in float32, so an
element-wise node (one whose definition computes each output element from its inputs' alone: IsNaN, Max, Mod,
Relu, Add... on float16) is rewritten, one node at a time:

    x (float16) → Cast(float32) → the node → Cast(float16) → y (float16)

Each result is rounded back to its type where the model has it, so every later node sees the values the model
means. For the basic operations (add, subtract, multiply, divide, square root) the float32 result rounded to
float16 or bfloat16 is the correctly rounded one (float32's 24 bits are at least twice the narrow type's
precision plus two), so those match an op computed in the narrow type exactly; the transcendental ones are
within one unit in the last place of it. Ops that accumulate (MatMul, Conv, reductions, Softmax,
normalisations) are not widened: summed in float32 and rounded once, their results differ from a model's
float16 arithmetic by more than the narrow type's rounding (ONNX's own fp16 Attention cases then fail by 2
ulps), so those are declined by dtype as before. A constant input is widened once, at compile time; a tensor
several such nodes read is widened once. Nodes whose kernels take the types as they are (Cast, the
quantizers, data movement: `runs_as_is`) are left alone, as are tensors whose size the data decides at run
time (their extents belong to their producer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import ml_dtypes
import numpy as np
from onnx import TensorProto

from wasinfer.ir import Graph, Node, TensorInfo
from wasinfer.ops import lookup
from wasinfer.ops.batch import elementwise

HALF = {np.dtype(np.float16): TensorProto.FLOAT16, np.dtype(ml_dtypes.bfloat16): TensorProto.BFLOAT16}
FLOAT32 = np.dtype(np.float32)


def widen_half_floats(graph: Graph, runs_as_is: Callable[[Node, Graph], bool]) -> int:
    """Rewrite every node with a float16/bfloat16 input or output that `runs_as_is` refuses as it is and takes
    in float32 (one it refuses either way is left as it is, for the compiler to name); returns how many."""
    nodes: list[Node] = []
    wide: dict[str, str] = {}  # a half-precision tensor → its float32 copy
    rewritten = 0

    def half(name: str) -> bool:
        return bool(name) and name in graph.tensors and graph.info(name).dtype in HALF and name not in graph.decided

    for node in graph.nodes:
        definition = lookup(node)
        if (not any(half(n) for n in node.inputs + node.outputs) or definition is None
                or definition.batch is not elementwise or runs_as_is(node, graph)):
            nodes.append(node)
            continue
        added: dict[str, str] = {}  # float32 copies made for this node: half tensor → copy
        for name in [n for n in node.inputs + node.outputs if half(n) and n not in wide and n not in added]:
            copy = _fresh(graph, f"{name}/float32")
            if name in graph.constants and name in node.inputs:
                graph.add_constant(copy, np.asarray(graph.constants[name]).astype(np.float32))
            else:
                graph.tensors[copy] = TensorInfo(copy, FLOAT32, graph.info(name).shape)
            added[name] = copy
        copies = {**wide, **added}
        trial = dataclasses.replace(node, inputs=[copies.get(n, n) if half(n) else n for n in node.inputs],
                                    outputs=[added.get(n, n) if half(n) else n for n in node.outputs])
        if not runs_as_is(trial, graph):  # float32 does not help: the compiler names the node as the model has it
            for copy in added.values():
                graph.tensors.pop(copy)
                graph.constants.pop(copy, None)
            nodes.append(node)
            continue
        rewritten += 1
        for index, name in enumerate(node.inputs):
            if half(name) and name not in wide:
                if name not in graph.constants:
                    nodes.append(Node("Cast", f"{node.name}/widen_{index}", [name], [copies[name]],
                                      {"to": TensorProto.FLOAT}, guards=node.guards))
                wide[name] = copies[name]
        nodes.append(trial)
        nodes.extend(Node("Cast", f"{node.name}/narrow_{index}", [added[name]], [name],
                          {"to": HALF[graph.info(name).dtype]}, guards=node.guards)
                     for index, name in enumerate(node.outputs) if half(name))
    graph.nodes = nodes
    return rewritten


def _fresh(graph: Graph, name: str) -> str:
    """`name`, or with a number after it where the graph already has that name."""
    candidate, number = name, 1
    while candidate in graph.tensors:
        candidate, number = f"{name}_{number}", number + 1
    return candidate


__all__ = ["HALF", "widen_half_floats"]
