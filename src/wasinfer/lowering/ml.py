"""Scratch of the ai.onnx.ml kernels: a float32 copy of a non-float input, then per-row scores.

The ML ops read an [N, F] (or [F]) input of any numeric dtype; a kernel converts a
non-float32 one into the start of its scratch once, so every later pass reads float32
(`float_scratch`). LinearClassifier keeps each row's class scores after that copy, the tree
ensembles 8 bytes of running score per target (regressor) or class (classifier) of one row.
"""

from __future__ import annotations

from typing import Any

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


def tree_ensemble_scratch(node: Node, graph: Graph) -> int:
    """TreeEnsemble's: the tree kernel's, then float32 scores to widen when the output is float64."""
    output = graph.info(node.outputs[0])
    return tree_scratch(node, graph) + (output.size * 4 if np.dtype(output.dtype) == np.float64 else 0)


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


# TreeEnsemble (ai.onnx.ml opset 5) numbers its enums; the older ops name them
V5_MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ", "BRANCH_MEMBER")
V5_AGGREGATES = ("AVERAGE", "SUM", "MIN", "MAX")
V5_TRANSFORMS = ("NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT")
MEMBER = V5_MODES.index("BRANCH_MEMBER")
MAX_UNROLLED = 1 << 22  # nodes after unrolling member sets: 64 MiB of 16-byte node records


def _flat(value: Any, dtype: type) -> np.ndarray:
    return np.asarray(value if value is not None else [], dtype=dtype).reshape(-1)


def _members(modes: np.ndarray, values: np.ndarray) -> list[list[float]]:
    """Each node's set (empty but for BRANCH_MEMBER nodes): membership_values holds the sets of the
    member nodes in node order, each ended by a NaN."""
    sets: list[list[float]] = []
    at = 0
    for mode in modes.tolist():
        sets.append([])
        if mode != MEMBER:
            continue
        while at < values.size and not np.isnan(values[at]):
            sets[-1].append(float(values[at]))
            at += 1
        at += 1
    return sets


def tree_ensemble_as_regressor(node: Node) -> Node:
    """TreeEnsemble (opset 5) rewritten as the TreeEnsembleRegressor it means, as ONNX Runtime
    converts it: each tree numbered in preorder (true subtree first), a leaf a LEAF node with its
    one target weight, and a BRANCH_MEMBER node unrolled into a chain of BRANCH_EQ nodes, one per
    value of its set, whose false branches lead down the chain and the last one's to the node's
    false child. So opset 5's forests run on the tree kernel the older ops use.

    ValueError says what is malformed (an index out of range, a set missing, a cycle, which would
    unroll forever)."""
    modes = _flat(node.attr("nodes_modes"), np.int64)
    count = modes.size
    splits = _flat(node.attr("nodes_splits"), np.float32)
    columns = {key: _flat(node.attr(f"nodes_{key}"), np.int64)
               for key in ("featureids", "truenodeids", "falsenodeids", "trueleafs", "falseleafs")}
    tracks = _flat(node.attr("nodes_missing_value_tracks_true"), np.int64)
    targets, weights = _flat(node.attr("leaf_targetids"), np.int64), _flat(node.attr("leaf_weights"), np.float32)
    roots = _flat(node.attr("tree_roots"), np.int64)
    if not count or splits.size != count or any(c.size != count for c in columns.values()):
        raise ValueError("nodes_modes, nodes_splits and the other nodes_* attributes must be non-empty and of "
                         "equal length")
    if tracks.size not in (0, count):
        raise ValueError("nodes_missing_value_tracks_true must have one value per node")
    if targets.size != weights.size or not targets.size:
        raise ValueError("leaf_targetids and leaf_weights must be non-empty and of equal length")
    if np.any((modes < 0) | (modes > MEMBER)):
        raise ValueError(f"nodes_modes must be 0 to {MEMBER} ({', '.join(V5_MODES)})")
    if not roots.size or np.any((roots < 0) | (roots >= count)):
        raise ValueError(f"tree_roots must be non-empty node indices below {count}")
    members = _members(modes, _flat(node.attr("membership_values"), np.float32))
    if any(m == MEMBER and not s for m, s in zip(modes.tolist(), members, strict=True)):
        raise ValueError("a BRANCH_MEMBER node has no values in membership_values")
    out: dict[str, list[Any]] = {key: [] for key in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes", "nodes_truenodeids",
        "nodes_falsenodeids", "nodes_missing_value_tracks_true", "target_treeids", "target_nodeids", "target_ids",
        "target_weights")}
    for tree, root in enumerate(roots.tolist()):
        _unroll_tree(tree, root, columns, modes, splits, members, tracks, targets, weights, out)
    if tracks.size == 0:
        del out["nodes_missing_value_tracks_true"]
    attrs = out | {"n_targets": int(node.attr("n_targets", 1)),
                   "aggregate_function": V5_AGGREGATES[int(node.attr("aggregate_function", 1))],
                   "post_transform": V5_TRANSFORMS[int(node.attr("post_transform", 0))]}
    return Node("TreeEnsembleRegressor", node.name, list(node.inputs), list(node.outputs), attrs, node.domain)


def _unroll_tree(tree: int, root: int, columns: dict[str, np.ndarray], modes: np.ndarray, splits: np.ndarray,
                 members: list[list[float]], tracks: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                 out: dict[str, list[Any]]) -> None:
    """Append one tree's nodes in ONNX Runtime's preorder (an explicit stack: deep trees and long
    member chains would exhaust Python's recursion). Each element of a member chain has the node's
    whole true subtree below it again, as there; a node below itself is a cycle."""
    nodes, leaves = modes.size, targets.size
    # (index, position in its member set, a leaf, the output row whose false child this is, depth)
    stack: list[tuple[int, int, bool, int | None, int]] = [
        (root, 0, bool(columns["falsenodeids"][root] == columns["truenodeids"][root]), None, 0)]
    path: list[int] = []  # the node index at each depth above the one popped
    number = 0
    while stack:
        index, member, leaf, parent, depth = stack.pop()
        del path[depth:]
        if parent is not None:
            out["nodes_falsenodeids"][parent] = number
        if not 0 <= index < (leaves if leaf else nodes):
            raise ValueError(f"tree {tree} names {'leaf' if leaf else 'node'} {index}, out of range")
        if not leaf and member == 0 and index in path:
            raise ValueError(f"tree {tree} has a cycle through node {index}")
        if len(out["nodes_modes"]) >= MAX_UNROLLED:
            raise ValueError(f"the trees unroll to more than {MAX_UNROLLED} nodes (member sets repeat the "
                             "subtrees below them)")
        path.append(-1 if leaf else index)
        out["nodes_treeids"].append(tree)
        out["nodes_nodeids"].append(number)
        out["nodes_missing_value_tracks_true"].append(0 if leaf or not tracks.size else int(tracks[index]))
        if leaf:
            out["nodes_featureids"].append(0)
            out["nodes_values"].append(0.0)
            out["nodes_modes"].append("LEAF")
            out["nodes_truenodeids"].append(0)
            out["nodes_falsenodeids"].append(0)
            for key, value in (("target_treeids", tree), ("target_nodeids", number),
                               ("target_ids", int(targets[index])), ("target_weights", float(weights[index]))):
                out[key].append(value)
            number += 1
            continue
        mode = int(modes[index])
        out["nodes_featureids"].append(int(columns["featureids"][index]))
        out["nodes_values"].append(members[index][member] if mode == MEMBER else float(splits[index]))
        out["nodes_modes"].append("BRANCH_EQ" if mode == MEMBER else V5_MODES[mode])
        out["nodes_truenodeids"].append(number + 1)
        out["nodes_falsenodeids"].append(0)  # set when the false child is numbered
        row = len(out["nodes_falsenodeids"]) - 1
        number += 1
        if mode == MEMBER and member + 1 < len(members[index]):
            stack.append((index, member + 1, False, row, depth + 1))
        else:
            stack.append((int(columns["falsenodeids"][index]), 0, bool(columns["falseleafs"][index]), row, depth + 1))
        stack.append((int(columns["truenodeids"][index]), 0, bool(columns["trueleafs"][index]), None, depth + 1))


__all__ = ["feature_rows", "float_scratch", "linear_classifier_scratch", "svm_scratch", "svm_vectors",
           "tree_ensemble_as_regressor", "tree_ensemble_scratch", "tree_scratch"]
