"""BatchNormalization (inference) as one affine map per channel: y = x * s[c] + t[c].

With s = scale / sqrt(var + eps) and t = bias - mean * s. Constant parameters give the table
[s | t] at compile time (`bn_table`); parameters computed at run time are combined into the
same table in scratch first (`bn_scratch`: 2 floats per channel), so the loop over x is the same.
"""

from __future__ import annotations

import numpy as np

from wasinfer.ir import Graph, Node


def bn_params(node: Node) -> list[str]:
    """scale, bias, mean, var."""
    return node.inputs[1:5]


def bn_runtime(node: Node, graph: Graph) -> bool:
    """Some parameter is computed at run time: the table is built in scratch."""
    return not all(name in graph.constants for name in bn_params(node))


def bn_scratch(node: Node, graph: Graph) -> int:
    return 8 * graph.info(node.inputs[0]).shape[1] if bn_runtime(node, graph) else 0


def bn_table(scale: np.ndarray, bias: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float) -> np.ndarray:
    """[s | t] as float32, computed in float64."""
    s = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    return np.concatenate([s, bias.astype(np.float64) - mean.astype(np.float64) * s]).astype(np.float32)


__all__ = ["bn_params", "bn_runtime", "bn_scratch", "bn_table"]
