"""TopK's scratch: k values and k int32 indices per line."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tests.parity import graph_model
from wasinfer.frontends import load_onnx
from wasinfer.lowering.scan import topk_axis, topk_scratch


@pytest.mark.parametrize("dtype,axis", [(np.float32, -1), (np.int64, 0), (np.int8, 1)])
def test_scratch_holds_k_values_and_k_int32_indices(dtype: type, axis: int) -> None:
    x = np.zeros((5, 7), dtype)
    node = helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=axis)
    graph = load_onnx(graph_model([node], {"x": x}, ["values", "indices"], {"k": np.array([3], np.int64)},
                                  opset=11)).graph
    assert topk_axis(graph.nodes[0], graph) == axis % 2
    assert topk_scratch(graph.nodes[0], graph) == 3 * (np.dtype(dtype).itemsize + 4)
