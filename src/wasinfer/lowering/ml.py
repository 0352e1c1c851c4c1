"""Scratch of the ai.onnx.ml kernels: a float32 copy of a non-float input, then per-row scores.

The ML ops read an [N, F] (or [F]) input of any numeric dtype; a kernel converts a
non-float32 one into the start of its scratch once, so every later pass reads float32
(`float_scratch`). LinearClassifier keeps each row's class scores after that copy, the tree
ensembles 8 bytes of running score per target (regressor) or class (classifier) of one row.
"""

from __future__ import annotations

import numpy as np

from wasinfer.ir import Graph, Node


def feature_rows(graph: Graph, name: str) -> tuple[int, int]:
    """(rows, features) of an [N, F] or [F] input, as the ML ops read it."""
    shape = graph.info(name).shape
    return (1, shape[0]) if len(shape) == 1 else (shape[0], shape[1])


def float_scratch(node: Node, graph: Graph) -> int:
    """Bytes for a float32 copy of input 0 when it is not float32 already."""
    info = graph.info(node.inputs[0])
    return 0 if np.dtype(info.dtype) == np.float32 else info.size * 4


def linear_classifier_scratch(node: Node, graph: Graph) -> int:
    """The float32 copy, then N rows of class scores."""
    n, _ = feature_rows(graph, node.inputs[0])
    return float_scratch(node, graph) + n * len(node.attr("intercepts", [])) * 4


def tree_scratch(node: Node, graph: Graph) -> int:
    """The float32 copy, then 8 bytes of running score per target (regressor) or class (classifier)."""
    outputs = (len(node.attr("classlabels_int64s", []) or node.attr("classlabels_strings", []))
               if node.op_type == "TreeEnsembleClassifier" else int(node.attr("n_targets", 1)))
    return float_scratch(node, graph) + max(outputs, 1) * 8


def svm_vectors(node: Node) -> int:
    """Support vectors of an SVM node (0: the liblinear form, coefficients against the features)."""
    if node.op_type == "SVMRegressor":
        return int(node.attr("n_supports", 0))
    return sum(int(v) for v in node.attr("vectors_per_class", []))


def svm_scratch(node: Node, graph: Graph) -> int:
    """The float32 copy, the kernel values of every row ([N, vectors]), then for a classifier each
    row's pairwise decision values ([N, pairs]), its votes and, with probabilities, the pairwise
    probability matrix, libsvm's Q matrix and Q p (coupling the pairs into class probabilities)."""
    n, _ = feature_rows(graph, node.inputs[0])
    size = float_scratch(node, graph) + n * svm_vectors(node) * 4
    if node.op_type == "SVMClassifier":
        classes = len(node.attr("classlabels_ints", []) or node.attr("classlabels_strings", []))
        size += n * (classes * (classes - 1) // 2) * 4 + classes * 4
        if node.attr("prob_a"):
            size += (2 * classes * classes + classes) * 4
    return size


__all__ = ["feature_rows", "float_scratch", "linear_classifier_scratch", "svm_scratch", "svm_vectors", "tree_scratch"]
