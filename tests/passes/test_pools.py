"""passes/pools.py: same-padded stride-1 max pools of one input run as a cascade of smaller ones, with the same
results as ONNX Runtime's pools of the full kernels."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from tests.parity import assert_matches_ort, graph_model
from wasinfer.frontends import load_onnx
from wasinfer.passes.pools import cascade_max_pools


def _pool(x: str, y: str, kernel: list[int], **attrs: object) -> onnx.NodeProto:
    pads = [(k - 1) // 2 for k in kernel] * 2
    return helper.make_node("MaxPool", [x], [y], name=y, kernel_shape=kernel, pads=attrs.pop("pads", pads), **attrs)


def _spp(x: np.ndarray, kernels: list[list[int]], **attrs: object) -> onnx.ModelProto:
    """YOLO's SPP block: the input and its max pools of each kernel, concatenated along the channels."""
    names = [f"p{i}" for i in range(len(kernels))]
    nodes = [_pool("x", name, kernel, **dict(attrs)) for name, kernel in zip(names, kernels, strict=True)]
    nodes.append(helper.make_node("Concat", ["x", *names], ["y"], axis=1))
    return graph_model(nodes, {"x": x}, ["y"])


def _data(shape: tuple[int, ...], holes: bool = True) -> np.ndarray:
    """Random values, every 7th -inf where `holes` (the cascade's inner pools then hold -inf too). Not where a window
    could hold nothing but -inf: ONNX Runtime's max starts from the lowest float, not -inf, and answers that."""
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    if holes:
        x.flat[::7] = -np.inf
    return x


def test_spp_pools_run_as_a_cascade_of_fives_and_match_onnxruntime() -> None:
    """5, 9 and 13 over one map (ddddocr_det's SPP at 13 x 13, here odd and unequal sides at batch 2) become 5 over
    the input, 5 over the 5 and 5 over the 9, bit for bit ORT's maxima of the full windows."""
    x = _data((2, 5, 13, 11))
    model = _spp(x, [[5, 5], [9, 9], [13, 13]])
    graph = load_onnx(model).graph
    assert cascade_max_pools(graph) == 2
    pools = [(n.inputs[0], n.attrs["kernel_shape"], n.attrs["pads"]) for n in graph.nodes if n.op_type == "MaxPool"]
    assert pools == [("x", [5, 5], [2, 2, 2, 2]), ("p0", [5, 5], [2, 2, 2, 2]), ("p1", [5, 5], [2, 2, 2, 2])]
    assert_matches_ort(model, {"x": x}, rtol=0, atol=0)


@pytest.mark.parametrize("kernels", [
    [[3, 5], [7, 9]],  # unequal axes: 7x9 is 5x5 over the 3x5
    [[3, 3], [5, 5], [15, 15]],  # kernels wider than the map, the largest earlier pool (5) taken
    [[1, 1], [3, 3]],  # a 1x1 pool (a copy) under a 3x3
])
def test_cascades_of_other_kernels_match_onnxruntime(kernels: list[list[int]]) -> None:
    x = _data((1, 3, 6, 9))
    model = _spp(x, kernels)
    assert cascade_max_pools(load_onnx(model).graph) == len(kernels) - 1
    assert_matches_ort(model, {"x": x}, rtol=0, atol=0)


@pytest.mark.parametrize("attrs", [
    {"strides": [2, 2]},  # a strided pool is not the union of a smaller one's windows
    {"pads": [0, 0, 0, 0]},  # unpadded: the outputs shrink
    {"pads": [2, 2, 1, 1]},  # uneven padding
    {"dilations": [2, 2]},
    {"ceil_mode": 1, "strides": [2, 2]},
])
def test_pools_that_are_not_same_padded_unit_stride_stay_as_they_are(attrs: dict[str, object]) -> None:
    x = _data((1, 2, 9, 9), holes=False)
    model = graph_model([_pool("x", "p3", [3, 3], **dict(attrs)), _pool("x", "p5", [5, 5], **dict(attrs))], {"x": x},
                        ["p3", "p5"])
    graph = load_onnx(model).graph
    assert cascade_max_pools(graph) == 0
    assert [n.inputs[0] for n in graph.nodes if n.op_type == "MaxPool"] == ["x", "x"]
    assert_matches_ort(model, {"x": x}, rtol=0, atol=0)


def test_a_larger_pool_before_the_smaller_one_and_pools_of_other_inputs_stay() -> None:
    """Only an earlier pool (in graph order) of the same input is read: the 9 before the 5 and the 5 of another
    tensor are left alone; the pool with Indices too."""
    x = _data((1, 2, 9, 9))
    nodes = [_pool("x", "p9", [9, 9]), _pool("x", "p5", [5, 5]), helper.make_node("Neg", ["x"], ["n"]),
             _pool("n", "q5", [5, 5]), helper.make_node("MaxPool", ["x"], ["i7", "idx"], kernel_shape=[7, 7],
                                                        pads=[3, 3, 3, 3]),
             helper.make_node("Concat", ["p9", "p5", "q5", "i7"], ["y"], axis=1)]
    model = graph_model(nodes, {"x": x}, ["y", "idx"])
    graph = load_onnx(model).graph
    assert cascade_max_pools(graph) == 0
    assert_matches_ort(model, {"x": x}, rtol=0, atol=0)
