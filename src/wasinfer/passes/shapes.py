"""Values that static shapes alone decide become constants, so shape subgraphs fold.

Every tensor has a static shape once the frontend is done, so `Shape` and `Size` of any
tensor are compile-time facts even when the tensor itself is computed at run time. Making
them constants lets `fold_constants` (which folds only nodes whose inputs are all
constants) evaluate the Shape → Gather → Concat → Reshape chains that exporters emit.
Dropout's mask in inference mode depends on the shape only, too.
"""

from __future__ import annotations

import numpy as np

from wasinfer.ir import Graph, Node


def _shape_value(graph: Graph, node: Node) -> np.ndarray | None:
    """Shape (with opset 15's start/end, which slice like Python) or Size of a known-shape tensor."""
    if node.inputs[0] not in graph.tensors:
        return None
    shape = graph.info(node.inputs[0]).shape
    if node.op_type == "Size":
        return np.array(int(np.prod(shape, dtype=np.int64)), np.int64)
    start, end = node.attr("start"), node.attr("end")
    return np.array(shape[slice(start, end)], np.int64)


def _dropout_mask(graph: Graph, node: Node) -> np.ndarray | None:
    """The mask of an inference-mode Dropout whose mask is used, as ONNX Runtime writes it.

    It has the input's shape; its type is bool from opset 10, the input's type before (ONNX's
    shape inference leaves that one unknown). From opset 12 it is all true: y = x * mask
    with nothing dropped (ONNX's reference agrees). Before, the spec leaves the test-mode
    mask unspecified and ONNX Runtime writes zeros; parity with it is the reference here.
    """
    if len(node.outputs) < 2 or not node.outputs[1] or node.inputs[0] not in graph.tensors:
        return None
    mask = node.outputs[1]
    if mask not in graph.outputs and not graph.consumers(mask):
        return None
    if len(node.inputs) > 2 and node.inputs[2]:
        training = graph.constants.get(node.inputs[2])
        if training is None or bool(training):
            return None  # training mode: check_support refuses the node
    data = graph.info(node.inputs[0])
    return np.full(data.shape, graph.opset >= 12, np.bool_ if graph.opset >= 10 else data.dtype)


def fold_static_values(graph: Graph) -> int:
    """Replace Shape/Size nodes by constants and give inference-mode Dropout masks their value;
    returns how many nodes changed."""
    changed = 0
    kept: list[Node] = []
    for node in graph.nodes:
        if node.op_type in ("Shape", "Size") and not node.domain:
            value = _shape_value(graph, node)
            if value is not None:
                graph.add_constant(node.outputs[0], value)
                changed += 1
                continue
        elif node.op_type == "Dropout" and not node.domain:
            mask = _dropout_mask(graph, node)
            if mask is not None:
                graph.add_constant(node.outputs[1], mask)
                node.outputs = node.outputs[:1]
                changed += 1
        kept.append(node)
    graph.nodes = kept
    return changed
