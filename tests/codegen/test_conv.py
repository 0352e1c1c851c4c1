"""Conv against ONNX Runtime: every attribute, 1-D to 3-D, groups, tiling and fused activations."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import helper

import wasinfer.codegen.kernels.conv as conv
from tests.parity import assert_matches_ort, single_op_model
from wasinfer.artifact import convert_onnx
from wasinfer.codegen import UnsupportedModel

rng = np.random.default_rng(0)


def rand(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def conv_case(x_shape: tuple[int, ...], w_shape: tuple[int, ...], bias: bool = True, **attrs: object) -> None:
    x = rand(*x_shape)
    constants = {"w": rand(*w_shape)}
    if bias:
        constants["b"] = rand(w_shape[0])
    assert_matches_ort(single_op_model("Conv", {"x": x}, constants=constants, **attrs), {"x": x})


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 3, 8, 8), (4, 3, 3, 3), {}),
    ((1, 3, 8, 8), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 3, 9, 7), (5, 3, 3, 3), {"pads": [2, 0, 1, 3], "strides": [2, 1]}),  # asymmetric, odd sizes
    ((1, 2, 11, 13), (3, 2, 5, 3), {"pads": [3, 2, 3, 2], "strides": [3, 2]}),  # pad larger than 1
    ((1, 3, 10, 9), (4, 3, 3, 3), {"pads": [2, 2, 2, 2], "dilations": [2, 2]}),
    ((1, 3, 10, 9), (4, 3, 2, 3), {"dilations": [3, 1], "strides": [1, 2]}),
    ((1, 4, 9, 7), (6, 2, 3, 3), {"pads": [1, 1, 1, 1], "group": 2}),
    ((1, 4, 9, 7), (6, 2, 3, 3), {"pads": [1, 1, 1, 1], "group": 2, "dilations": [2, 2]}),
    ((1, 6, 9, 7), (6, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 6}),  # depthwise
    ((1, 5, 9, 8), (10, 1, 3, 3), {"pads": [1, 0, 1, 2], "group": 5, "strides": [2, 2]}),  # depthwise x2
    ((1, 8, 6, 6), (5, 8, 1, 1), {}),  # 1x1: the input is the column buffer
    ((1, 8, 6, 6), (5, 8, 1, 1), {"strides": [2, 2]}),
    ((1, 8, 6, 6), (4, 4, 1, 1), {"group": 2}),
    ((1, 8, 5, 6), (3, 8, 1, 1), {"pads": [1, 0, 2, 1]}),  # 1x1 with padding: zero rows and columns
    ((1, 3, 5, 5), (2, 3, 7, 7), {"pads": [3, 3, 3, 3]}),  # kernel larger than the input
    ((1, 3, 4, 4), (2, 3, 3, 3), {"pads": [5, 5, 5, 5], "strides": [2, 2]}),  # all-padding rows
    ((2, 3, 6, 5), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}),  # batch of two
    ((1, 3, 224, 5), (2, 3, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 1]}),  # long unit-stride rows
    ((1, 3, 5, 70), (2, 3, 3, 3), {"pads": [1, 1, 1, 1], "strides": [1, 3]}),  # long strided rows
])
def test_conv_2d(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, object]) -> None:
    conv_case(x_shape, w_shape, **attrs)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("kernel,strides", [((3, 3), (1, 1)), ((2, 4), (2, 3)), ((1, 1), (2, 2))])
def test_conv_auto_pad(auto_pad: str, kernel: tuple[int, int], strides: tuple[int, int]) -> None:
    conv_case((1, 3, 9, 8), (4, 3, *kernel), auto_pad=auto_pad, strides=list(strides))


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 3, 10), (5, 3, 3), {"pads": [1, 2]}),
    ((2, 4, 17), (6, 2, 4), {"strides": [3], "dilations": [2], "group": 2}),
    ((1, 3, 9), (4, 3, 3), {"auto_pad": "SAME_LOWER", "strides": [2]}),
    ((1, 3, 5, 6, 7), (2, 3, 3, 2, 3), {"pads": [1, 0, 1, 1, 1, 0]}),
    ((1, 4, 5, 6, 5), (4, 2, 2, 3, 2), {"strides": [2, 1, 2], "dilations": [1, 2, 1], "group": 2}),
])
def test_conv_1d_and_3d(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, object]) -> None:
    conv_case(x_shape, w_shape, **attrs)


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((2, 4, 9, 10), (4, 1, 3, 3), {"pads": [2, 2, 2, 2], "dilations": [2, 2], "group": 4}),
    ((1, 3, 12, 13), (3, 1, 9, 9), {"pads": [4, 4, 4, 4], "group": 3}),  # more taps than unrolled
    ((1, 3, 12, 13), (6, 1, 5, 5), {"pads": [1, 2, 3, 0], "strides": [1, 2], "group": 3}),
    ((1, 4, 16), (8, 1, 3), {"pads": [1, 1], "group": 4}),
    ((1, 2, 5, 6, 7), (2, 1, 3, 3, 3), {"pads": [1, 1, 1, 1, 1, 1], "group": 2}),
    ((1, 3, 9, 9), (3, 1, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2], "group": 3}),
    ((2, 3, 7, 8), (6, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 3}),  # multiplier 2, batch 2
    ((1, 4, 6, 7), (4, 1, 3, 3), {"group": 4}),  # no padding: the input is read in place
])
def test_conv_depthwise(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, object]) -> None:
    conv_case(x_shape, w_shape, **attrs)
    conv_case(x_shape, w_shape, bias=False, **attrs)


def test_conv_without_bias_and_explicit_kernel_shape() -> None:
    conv_case((1, 3, 7, 7), (2, 3, 3, 2), bias=False, kernel_shape=[3, 2], pads=[1, 0, 1, 0])


@pytest.mark.parametrize("group,w_shape", [(2, (6, 2, 3, 3)), (4, (8, 1, 3, 3))])
def test_conv_runtime_weights_and_bias(group: int, w_shape: tuple[int, ...]) -> None:
    x, w, b = rand(1, 4, 7, 6), rand(*w_shape), rand(w_shape[0])
    model = single_op_model("Conv", {"x": x, "w": w, "b": b}, group=group, pads=[1, 1, 1, 1], strides=[2, 1])
    assert_matches_ort(model, {"x": x, "w": w, "b": b})


@pytest.mark.parametrize("x_shape,w_shape,attrs,tile_rows", [
    ((1, 3, 19, 20), (5, 3, 3, 3), {"pads": [1, 1, 2, 1]}, 3),
    ((1, 3, 23, 20), (4, 3, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 1]}, 2),
    ((1, 4, 17, 9), (6, 2, 3, 3), {"pads": [2, 0, 2, 0], "dilations": [2, 1], "group": 2}, 4),
    ((1, 3, 40), (5, 3, 9), {"pads": [2, 3]}, 7),
])
def test_conv_tiles_and_column_blocks(monkeypatch: pytest.MonkeyPatch, x_shape: tuple[int, ...],
                                      w_shape: tuple[int, ...], attrs: dict[str, object], tile_rows: int) -> None:
    """Column buffers over budget are built in tiles of output rows (the inner ones in a run-time
    loop); wide GEMMs run in column blocks."""
    k_size = math.prod(w_shape[1:])
    row_size = math.prod(x_shape[3:])  # an upper bound on output positions per row
    monkeypatch.setattr(conv, "COLUMN_BUDGET", k_size * 4 * tile_rows * row_size)
    monkeypatch.setattr(conv, "GEMM_B_BUDGET", k_size * 4 * 24)
    monkeypatch.setattr(conv, "GEMM_MIN_COLUMNS", 8)
    conv_case(x_shape, w_shape, **attrs)


def conv_then(activation: str, x: np.ndarray, w: np.ndarray, b: np.ndarray, **attrs: object) -> onnx.ModelProto:
    act_inputs = ["c"]
    constants = [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(b, "b")]
    if activation == "Clip":
        constants += [onnx.numpy_helper.from_array(np.array(-0.5, np.float32), "lo"),
                      onnx.numpy_helper.from_array(np.array(0.7, np.float32), "hi")]
        act_inputs += ["lo", "hi"]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs),
             helper.make_node(activation, act_inputs, ["y"])]
    graph = helper.make_graph(nodes, "conv_act", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


@pytest.mark.parametrize("activation", ["Relu", "LeakyRelu", "Sigmoid", "Clip"])
@pytest.mark.parametrize("attrs", [{"pads": [1, 1, 1, 1]}, {}, {"group": 3, "strides": [2, 2]}])
def test_conv_fused_activation(activation: str, attrs: dict[str, object]) -> None:
    x = rand(1, 3, 9, 10)
    kernel = (1, 1) if not attrs else (3, 3)
    channels = 1 if attrs.get("group") else 3
    model = conv_then(activation, x, rand(6, channels, *kernel), rand(6), **attrs)
    assert convert_onnx(model).stats["activations_fused"] == 1
    assert_matches_ort(model, {"x": x})


def test_conv_rejects_what_it_cannot_compute() -> None:
    x = rand(1, 3, 5, 5).astype(np.float64)
    model = single_op_model("Conv", {"x": x}, constants={"w": rand(2, 3, 3, 3).astype(np.float64)})
    with pytest.raises(UnsupportedModel, match="only float32"):
        convert_onnx(model)
