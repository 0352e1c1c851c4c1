"""TopK's scratch: per line, a sorted list of the k best values, then their int32 indices."""

from __future__ import annotations

from wasinfer.ir import Graph, Node


def topk_axis(node: Node, graph: Graph) -> int:
    rank = len(graph.info(node.inputs[0]).shape)
    return int(node.attr("axis", -1)) % max(rank, 1)


def topk_scratch(node: Node, graph: Graph) -> int:
    """k values of the input's dtype, then k int32 indices (widened to int64 on the way out)."""
    info = graph.info(node.inputs[0])
    k = graph.info(node.outputs[0]).shape[topk_axis(node, graph)]
    return k * (info.dtype.itemsize + 4)


__all__ = ["topk_axis", "topk_scratch"]
