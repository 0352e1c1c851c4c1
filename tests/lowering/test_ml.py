"""Scratch of the ai.onnx.ml kernels."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from wasinfer.frontends import load_onnx
from wasinfer.ir import Graph
from wasinfer.lowering.ml import feature_rows, float_scratch, linear_classifier_scratch, tree_scratch


def ml_graph(op: str, x: np.ndarray, outputs: list[str], **attrs: object) -> Graph:
    """One ML node; its outputs declared float32 [rows, 3] (most ML ops have no shape inference)."""
    node = helper.make_node(op, ["x"], outputs, domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph([node], op, [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(x.dtype),
                                                                         x.shape)],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, [x.shape[0], 3]) for o in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15), helper.make_opsetid("ai.onnx.ml", 3)])
    return load_onnx(model).graph


def test_a_non_float_input_is_copied_to_float32_first() -> None:
    floats = ml_graph("Scaler", np.zeros((3, 4), np.float32), ["y"], scale=[2.0])
    ints = ml_graph("Scaler", np.zeros((3, 4), np.int64), ["y"], scale=[2.0])
    assert float_scratch(floats.nodes[0], floats) == 0
    assert float_scratch(ints.nodes[0], ints) == 3 * 4 * 4
    assert feature_rows(ints, "x") == (3, 4)
    vector = ml_graph("Scaler", np.zeros(5, np.float32), ["y"], scale=[2.0])
    assert feature_rows(vector, "x") == (1, 5)


def test_classifier_and_tree_scores_follow_the_copy() -> None:
    x = np.zeros((3, 2), np.int32)
    linear = ml_graph("LinearClassifier", x, ["label", "scores"], coefficients=[1.0] * 6, intercepts=[0.0] * 3,
                      classlabels_ints=[0, 1, 2])
    assert linear_classifier_scratch(linear.nodes[0], linear) == 3 * 2 * 4 + 3 * 3 * 4
    tree = ml_graph("TreeEnsembleRegressor", x, ["y"], n_targets=2, nodes_treeids=[0], nodes_nodeids=[0],
                    nodes_featureids=[0], nodes_values=[0.0], nodes_modes=["LEAF"], nodes_truenodeids=[0],
                    nodes_falsenodeids=[0], target_treeids=[0], target_nodeids=[0], target_ids=[1],
                    target_weights=[1.0])
    assert tree_scratch(tree.nodes[0], tree) == 3 * 2 * 4 + 2 * 8
