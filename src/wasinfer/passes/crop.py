"""CenterCropPad (opset 18) lowered to a Slice and a Pad, the two kernels that already run it.

Preprocessing graphs crop or pad an image to a fixed size around its centre. Along each listed axis a larger
input is cropped to the window that starts (input - target) // 2 in, a smaller one padded with zeros,
(target - input) // 2 before and the rest after, as ONNX's reference places them. The target shape must be
a constant (it sets the output's shape); one computed at run time keeps the node, with the reason.
"""

from __future__ import annotations

import numpy as np

from wasinfer.ir import Graph, Node, TensorInfo
from wasinfer.passes.subgraph import lower_each


class CropError(ValueError):
    """Why a CenterCropPad stays in the graph (the compiler names it with this reason)."""


def center_window(size: int, target: int) -> tuple[int, int, int]:
    """(crop start, pad before, pad after) that take an axis of `size` to `target` around its centre."""
    if target <= size:
        return (size - target) // 2, 0, 0
    extra = target - size
    return 0, extra // 2, extra - extra // 2


def lower_center_crop_pad(graph: Graph, node: Node) -> list[Node]:
    info = graph.info(node.inputs[0])
    rank = len(info.shape)
    target = graph.constants.get(node.inputs[1])
    if target is None:
        raise CropError(f"its shape {node.inputs[1]!r} is computed at run time (a constant is needed: it sets "
                        "the output's shape)")
    sizes = [int(v) for v in np.asarray(target).reshape(-1)]
    axes = [int(a) % max(rank, 1) for a in node.attrs.get("axes", range(rank))]
    if len(axes) != len(sizes) or len(set(axes)) != len(axes) or any(s < 0 for s in sizes):
        raise CropError(f"shape {sizes} does not fit axes {axes} of an input of rank {rank}")
    starts, ends, pads = [0] * rank, list(info.shape), [0] * 2 * rank
    out_shape = list(info.shape)
    for axis, size in zip(axes, sizes, strict=True):
        start, before, after = center_window(info.shape[axis], size)
        starts[axis], ends[axis] = start, start + min(size, info.shape[axis])
        pads[axis], pads[rank + axis] = before, after
        out_shape[axis] = size
    nodes: list[Node] = []
    current = node.inputs[0]
    cropped = [a for a in range(rank) if (starts[a], ends[a]) != (0, info.shape[a])]
    padded = any(pads)
    if cropped:
        output = node.outputs[0] if not padded else f"{node.name}/cropped"
        if padded:
            graph.tensors[output] = TensorInfo(output, info.dtype, tuple(ends[a] - starts[a] for a in range(rank)))
        names = []
        for what, values in (("starts", [starts[a] for a in cropped]), ("ends", [ends[a] for a in cropped]),
                             ("axes", cropped)):
            names.append(f"{node.name}/{what}")
            graph.add_constant(names[-1], np.array(values, np.int64))
        nodes.append(Node("Slice", f"{node.name}/Slice", [current, *names], [output], guards=node.guards))
        current = output
    if padded:
        graph.add_constant(f"{node.name}/pads", np.array(pads, np.int64))
        nodes.append(Node("Pad", f"{node.name}/Pad", [current, f"{node.name}/pads"], [node.outputs[0]],
                          {"mode": "constant"}, guards=node.guards))
    if not nodes:
        nodes.append(Node("Identity", f"{node.name}/Identity", [current], [node.outputs[0]], guards=node.guards))
    graph.tensors[node.outputs[0]] = TensorInfo(node.outputs[0], info.dtype, tuple(out_shape))
    return nodes


def lower_crops(graph: Graph) -> int:
    """Replace every CenterCropPad by its Slice and Pad; one left in place carries the reason (`Node.declined`)."""
    return lower_each(graph, {"CenterCropPad": lower_center_crop_pad}, CropError)


__all__ = ["center_window", "lower_crops"]
