"""ConvTranspose against ONNX Runtime: strides, pads, output_padding, dilations, groups,
output_shape and auto_pad, 1-D to 3-D, constant and run-time weights."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import wasinfer.lowering.conv_transpose as conv_transpose
import wasinfer.passes.fuse as fuse
from tests.parity import assert_matches_ort, single_op_model
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm import UnsupportedModel

rng = np.random.default_rng(0)


def rand(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def transpose_case(x_shape: tuple[int, ...], w_shape: tuple[int, ...], bias: bool = True, runtime: bool = False,
                   **attrs: object) -> None:
    x = rand(*x_shape)
    weights = {"w": rand(*w_shape)}
    if bias:
        weights["b"] = rand(w_shape[1] * int(attrs.get("group", 1)))  # type: ignore[call-overload]
    inputs = {"x": x, **weights} if runtime else {"x": x}
    model = single_op_model("ConvTranspose", inputs, constants={} if runtime else weights, **attrs)
    assert_matches_ort(model, inputs)


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 3, 4, 5), (3, 2, 3, 3), {}),
    ((1, 3, 4, 5), (3, 2, 3, 3), {"strides": [2, 2]}),
    ((2, 3, 4, 5), (3, 2, 3, 3), {"strides": [3, 2], "pads": [1, 0, 2, 1], "output_padding": [1, 1]}),
    ((1, 2, 5, 4), (2, 3, 2, 3), {"dilations": [2, 3], "pads": [1, 2, 0, 1]}),
    ((1, 4, 4, 5), (4, 3, 3, 2), {"group": 2, "dilations": [2, 1], "strides": [2, 3]}),
    ((1, 6, 5, 5), (6, 1, 3, 3), {"group": 6, "strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
    ((1, 8, 10, 12), (8, 4, 4, 4), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),  # the usual 2x upsampler
    ((1, 4, 6, 7), (4, 2, 2, 2), {"strides": [2, 2]}),  # kernel = stride: no overlap
    ((1, 3, 3, 40), (3, 2, 1, 3), {}),  # long unit-stride runs: looped v128 adds
    ((1, 3, 3, 30), (3, 2, 1, 3), {"strides": [1, 2]}),  # long strided runs
    ((1, 2, 4, 4), (2, 2, 3, 3), {"pads": [2, 2, 2, 2]}),  # most output cropped away
    ((1, 2, 2, 2), (2, 2, 3, 3), {"pads": [2, 2, 2, 2], "strides": [3, 3]}),  # a kernel offset that lands nowhere
])
def test_conv_transpose_2d(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, object]) -> None:
    transpose_case(x_shape, w_shape, **attrs)


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 3, 10), (3, 2, 4), {"strides": [2], "pads": [1, 1]}),
    ((2, 4, 7), (4, 3, 3), {"group": 2, "dilations": [2], "output_padding": [1], "strides": [2]}),
    ((1, 2, 3, 4, 3), (2, 2, 2, 3, 2), {"strides": [2, 1, 2], "pads": [0, 1, 0, 1, 0, 1]}),
    ((1, 2, 2, 3, 3), (2, 3, 3, 3, 3), {"strides": [2, 2, 2], "output_padding": [1, 0, 1]}),
])
def test_conv_transpose_1d_and_3d(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                                  attrs: dict[str, object]) -> None:
    transpose_case(x_shape, w_shape, **attrs)


@pytest.mark.parametrize("attrs", [
    {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
    {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
    {"auto_pad": "SAME_UPPER", "strides": [2, 3], "kernel_shape": [3, 3]},
    {"auto_pad": "VALID", "strides": [2, 1]},
    {"output_shape": [10, 12], "strides": [2, 2]},  # larger than computed: zero (bias) tail
    {"output_shape": [7, 9], "strides": [2, 2]},  # even total padding
    {"output_shape": [8, 10], "strides": [2, 2], "auto_pad": "SAME_LOWER"},
    {"output_shape": [8, 10], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
])
def test_conv_transpose_output_shape_and_auto_pad(attrs: dict[str, object]) -> None:
    transpose_case((1, 3, 4, 5), (3, 3, 3, 3), **attrs)


@pytest.mark.parametrize("group", [1, 2])
def test_conv_transpose_runtime_weights_and_no_bias(group: int) -> None:
    transpose_case((1, 4, 5, 4), (4, 3, 3, 3), runtime=True, group=group, strides=[2, 1], pads=[1, 0, 0, 1])
    transpose_case((2, 4, 5, 4), (4, 3, 3, 3), bias=False, group=group, strides=[1, 2])


@pytest.mark.parametrize("x_shape,w_shape,attrs,tile_rows", [
    ((1, 3, 11, 6), (3, 2, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, 3),  # edge tiles and a run
    ((1, 4, 9, 5), (4, 2, 4, 2), {"group": 2, "strides": [2, 1], "dilations": [1, 2], "pads": [2, 0, 3, 1]}, 2),
    ((2, 3, 13), (3, 2, 5), {"strides": [3], "pads": [4, 2], "output_padding": [1]}, 4),
    ((1, 2, 7, 4, 3), (2, 2, 3, 2, 2), {"strides": [2, 1, 2], "pads": [1, 0, 0, 1, 0, 1]}, 2),
])
def test_conv_transpose_tiles(monkeypatch: pytest.MonkeyPatch, x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                              attrs: dict[str, object], tile_rows: int) -> None:
    """Column buffers over budget go in tiles of input rows; interior tiles share code in a loop."""
    row_bytes = w_shape[1] * math.prod(w_shape[2:]) * math.prod(x_shape[3:]) * 4
    monkeypatch.setattr(conv_transpose, "COLUMN_BUDGET", row_bytes * tile_rows)
    transpose_case(x_shape, w_shape, **attrs)


@pytest.mark.parametrize("activation", ["Relu", "Sigmoid"])
def test_conv_transpose_fused_activation(monkeypatch: pytest.MonkeyPatch, activation: str) -> None:
    """Ready for fuse.py listing ConvTranspose as a producer: the activation runs after the last tile."""
    monkeypatch.setattr(fuse, "FUSING_PRODUCERS", fuse.FUSING_PRODUCERS | {"ConvTranspose"})
    monkeypatch.setattr(conv_transpose, "COLUMN_BUDGET", 2 * 3 * 9 * 5 * 4 * 2)  # tiles of two input rows
    x = rand(1, 3, 7, 5)
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node(activation, ["c"], ["y"])]
    graph = helper.make_graph(nodes, "ct_act", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(rand(3, 2, 3, 3), "w"), numpy_helper.from_array(rand(2), "b")])
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert convert_onnx(model).stats["activations_fused"] == 1
    assert_matches_ort(model, {"x": x})


def test_conv_transpose_declines_what_it_cannot_compute() -> None:
    x = rand(1, 3, 4, 5)
    odd = single_op_model("ConvTranspose", {"x": x}, constants={"w": rand(3, 2, 3, 3)}, strides=[2, 2],
                          output_shape=[8, 10])
    with pytest.raises(UnsupportedModel, match="odd padding"):
        convert_onnx(odd)
    doubles = single_op_model("ConvTranspose", {"x": x.astype(np.float64)},
                              constants={"w": rand(3, 2, 3, 3).astype(np.float64)})
    with pytest.raises(UnsupportedModel, match="only float32"):
        convert_onnx(doubles)
