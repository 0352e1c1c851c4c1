"""CenterCropPad (opset 18) lowered to a Slice and a Pad, the two kernels that already run it.

Preprocessing graphs crop or pad an image to a fixed size around its centre. Along each listed axis a larger
input is cropped to the window that starts (input - target) // 2 in, a smaller one padded with zeros,
(target - input) // 2 before and the rest after, as ONNX's reference places them. The target shape sets the
output's shape, so it must be a constant, or an input whose values' range is declared (--input-values
shape=1..224: passes/values.py makes each element a symbol): then the crop and the pad are one Pad whose begin
and end pads are those expressions of the symbols (a negative pad crops), which the Pad's run-time kernel reads
(emitters/pad.py), so one module serves every target shape in the range. One computed at run time otherwise
keeps the node, with the reason.
"""

from __future__ import annotations

import numpy as np

from wasinfer.ir import Graph, Node, TensorInfo
from wasinfer.ir.symbolic import Dim, Expr, add, affine, evaluate, floordiv, from_affine, maximum
from wasinfer.passes.subgraph import lower_each


class CropError(ValueError):
    """Why a CenterCropPad stays in the graph (the compiler names it with this reason)."""


def center_window(size: int, target: int) -> tuple[int, int, int]:
    """(crop start, pad before, pad after) that take an axis of `size` to `target` around its centre."""
    if target <= size:
        return (size - target) // 2, 0, 0
    extra = target - size
    return 0, extra // 2, extra - extra // 2


def _negated(dim: Dim) -> Dim:
    coeffs, constant = affine(dim)
    return from_affine({atom: -k for atom, k in coeffs.items()}, -constant)


def centre_pads(size: int, target: Dim) -> tuple[Dim, Dim]:
    """(begin, end) pads that take an axis of `size` to a `target` the run gives, around its centre: `center_window`
    as one Pad, a crop being negative pads. begin = (t - n) // 2 when growing, -((n - t) // 2) when cropping; end
    the rest of t - n. Both are nondecreasing in t, so the largest target gives the largest output."""
    change = add(target, -size)
    begin = add(floordiv(maximum(change, 0), 2), _negated(floordiv(maximum(_negated(change), 0), 2)))
    return begin, add(target, -size, _negated(begin))


def _lower_declared(graph: Graph, node: Node, targets: tuple[Dim, ...], axes: list[int]) -> list[Node]:
    """CenterCropPad to a target shape whose values each run gives (declared): one Pad of symbolic pads."""
    info = graph.info(node.inputs[0])
    rank = len(info.shape)
    begins: list[Dim] = [0] * rank
    ends: list[Dim] = [0] * rank
    for axis, target in zip(axes, targets, strict=True):
        begins[axis], ends[axis] = centre_pads(info.shape[axis], target)
    pads = (*begins, *ends)
    at_largest = {name: high for name, (_, high) in graph.symbols.items()}
    name = f"{node.name}/pads"
    graph.add_constant(name, np.array([evaluate(p, at_largest) for p in pads], np.int64))
    graph.shape_values[name] = pads
    shape = tuple(d + evaluate(b, at_largest) + evaluate(e, at_largest)
                  for d, b, e in zip(info.shape, begins, ends, strict=True))
    graph.tensors[node.outputs[0]] = TensorInfo(node.outputs[0], info.dtype, shape)
    return [Node("Pad", f"{node.name}/Pad", [node.inputs[0], name], [node.outputs[0]], {"mode": "constant"},
                 guards=node.guards)]


def lower_center_crop_pad(graph: Graph, node: Node) -> list[Node]:
    info = graph.info(node.inputs[0])
    rank = len(info.shape)
    declared = graph.shape_values.get(node.inputs[1])
    if declared is not None and any(isinstance(v, Expr) for v in declared):
        axes = [int(a) % max(rank, 1) for a in node.attrs.get("axes", range(rank))]
        if len(axes) != len(declared) or len(set(axes)) != len(axes):
            raise CropError(f"shape of {len(declared)} values does not fit axes {axes} of an input of rank {rank}")
        return _lower_declared(graph, node, declared, axes)
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


__all__ = ["center_window", "centre_pads", "lower_crops"]
