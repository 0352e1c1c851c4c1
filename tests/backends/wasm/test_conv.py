"""Conv against ONNX Runtime: every attribute, 1-D to 3-D, groups, tiling and fused activations."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import helper

import wasinfer.lowering.conv as conv
import wasinfer.lowering.gemm as gemm
import wasinfer.lowering.winograd as winograd
from tests.parity import assert_matches_ort, ort_run, single_op_model
from wasinfer.artifact import convert_onnx, read_metadata
from wasinfer.backends.wasm import UnsupportedModel
from wasinfer.backends.wasm.emitters.conv import SKIP_WORTH
from wasinfer.backends.wasm.emitters.gemm import RELAXED_MADD
from wasinfer.frontends import load_onnx
from wasinfer.lowering.window import padding_rows
from wasinfer.runtime import WasmModel

rng = np.random.default_rng(0)


def rand(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def conv_case(x_shape: tuple[int, ...], w_shape: tuple[int, ...], bias: bool = True, **attrs: object) -> None:
    x = rand(*x_shape)
    constants = {"w": rand(*w_shape)}
    if bias:
        constants["b"] = rand(w_shape[0])
    # each output sums K = (channels per group) x taps products, in another order than ONNX Runtime's: the
    # rounding grows as sqrt(K) (K = 576 missed atol 1e-5 once, with the module's rng drawn in another order)
    taps = int(np.prod(w_shape[1:]))
    assert_matches_ort(single_op_model("Conv", {"x": x}, constants=constants, **attrs), {"x": x},
                       atol=1e-5 * max(1.0, (taps / 64) ** 0.5))


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
    ((1, 2, 4, 70), (3, 2, 3, 3), {"strides": [1, 2]}),  # stride-2 rows of 34: a loop of 4, then 4 overlapping
    ((1, 3, 7, 40), (4, 3, 3, 3), {"pads": [1, 1, 1, 1], "strides": [1, 2]}),  # rows of 19 and 20 inside
    ((1, 2, 5, 11), (3, 2, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),  # rows of 5 and 6: unrolled
    ((1, 2, 6, 9), (3, 2, 1, 1), {"strides": [2, 2]}),  # 1x1 stride 2: rows of 5
    ((1, 2, 3, 8), (3, 2, 1, 2), {"strides": [1, 2]}),  # rows of exactly 4
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
    ((1, 3, 19, 20), (3, 3, 3, 3), {"pads": [1, 1, 2, 1]}, 3),  # 3 output channels: not Winograd
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
    monkeypatch.setattr(gemm, "GEMM_B_BUDGET", k_size * 4 * 24)
    monkeypatch.setattr(gemm, "GEMM_MIN_COLUMNS", 8)
    conv_case(x_shape, w_shape, **attrs)


@pytest.mark.parametrize("k_block", [100, 512])
def test_conv_one_tile_where_the_weights_outweigh_the_buffer(monkeypatch: pytest.MonkeyPatch, k_block: int) -> None:
    """The whole column buffer in one tile (weights of 56 x 216 against 216 x 49 positions, budget below the buffer):
    batch 2, stride 2, odd sizes, 49 columns (6 register tiles and a last column; with K in blocks of 100 no tile
    may overlap another), a fused Sigmoid in the last block only."""
    monkeypatch.setattr(conv, "COLUMN_BUDGET", 24 * 9 * 49 * 4 * 3 // 5)
    monkeypatch.setattr(gemm, "K_BLOCK", k_block)
    x, w, b = rand(2, 24, 13, 13), rand(56, 24, 3, 3), rand(56)
    graph = load_onnx(conv_then("Sigmoid", x, w, b, pads=[1, 1, 1, 1], strides=[2, 2])).graph
    assert conv.conv_plan(graph.nodes[0], graph).tile_rows == 7
    conv_case((2, 24, 13, 13), (56, 24, 3, 3), pads=[1, 1, 1, 1], strides=[2, 2])
    assert_matches_ort(conv_then("Sigmoid", x, w, b, pads=[1, 1, 1, 1], strides=[2, 2]), {"x": x})


def assert_fused_and_matching_in_both_variants(model: onnx.ModelProto, x: np.ndarray) -> None:
    """The conv's activation fused into it, and the plain and relaxed-SIMD code both within 1e-4 of ONNX Runtime."""
    assert convert_onnx(model).stats["activations_fused"] == 1
    assert_matches_ort(model, {"x": x}, atol=1e-4)
    relaxed = convert_onnx(model, simd="relaxed").wasm
    np.testing.assert_allclose(WasmModel(relaxed).run({"x": x})["y"], ort_run(model, {"x": x})[0],
                               rtol=1e-4, atol=1e-4)


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


# ---- the GEMM's register tiles, packed weight panels, K blocks and relaxed SIMD

@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 8, 7, 7), (7, 8, 3, 3), {"pads": [1, 1, 1, 1]}),  # 49 columns: an overlapping last tile; 4 + 3 rows
    ((1, 5, 13, 1), (5, 5, 1, 1), {}),  # 13 columns (8 + overlapping 8), 1x1 read in place
    ((1, 6, 2, 3), (2, 6, 1, 1), {}),  # 6 columns: 4 + overlapping 4; 2 rows only
    ((1, 3, 3, 1), (9, 3, 1, 1), {}),  # 3 columns: one at a time
    ((1, 4, 1, 1), (1, 4, 1, 1), {}),  # a dot product
    ((1, 6, 8, 9), (10, 3, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2], "group": 2}),  # 5 rows per group
    ((1, 8, 9, 9), (12, 8, 3, 3), {"strides": [2, 2]}),  # 3x3 stride 2, 16 columns
])
def test_conv_gemm_tiles(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, object]) -> None:
    conv_case(x_shape, w_shape, **attrs)


@pytest.mark.parametrize("k_block", [16, 50])
@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 12, 5, 7), (7, 12, 3, 3), {"pads": [1, 1, 1, 1]}),  # K = 108: equal blocks or a short last one
    ((1, 37, 3, 5), (6, 37, 1, 1), {}),  # 15 columns, K = 37
    ((1, 8, 6, 6), (10, 4, 3, 3), {"pads": [1, 1, 1, 1], "group": 2}),
])
def test_conv_k_blocks(monkeypatch: pytest.MonkeyPatch, k_block: int, x_shape: tuple[int, ...],
                       w_shape: tuple[int, ...], attrs: dict[str, object]) -> None:
    """A long K runs in blocks that add to C; only the last adds the bias and the activation."""
    monkeypatch.setattr(gemm, "K_BLOCK", k_block)
    conv_case(x_shape, w_shape, **attrs)
    x = rand(*x_shape)
    model = conv_then("Sigmoid", x, rand(*w_shape), rand(w_shape[0]), **attrs)
    assert_matches_ort(model, {"x": x})


def test_conv_k_blocks_at_the_default_size() -> None:
    conv_case((1, 64, 5, 6), (9, 64, 3, 3), pads=[1, 1, 1, 1])  # K = 576 > K_BLOCK


def test_pack_panels_keeps_uniform_weights_uniform() -> None:
    a = rand(6, 3)
    packed = gemm.pack_panels(a)
    assert packed.shape == (2, 3, gemm.PANEL)
    np.testing.assert_array_equal(packed[0], a[:4].T)
    np.testing.assert_array_equal(packed[1, :, :2], a[4:].T)
    assert np.unique(gemm.pack_panels(np.full((5, 7), 0.25, np.float32))).tolist() == [0.25]


@pytest.mark.parametrize("n_size,overlap,expected", [
    (16, True, [(0, 2, 8)]),
    (13, True, [(0, 1, 8), (5, 1, 8)]),
    (12, True, [(0, 1, 8), (8, 1, 4)]),
    (6, True, [(0, 1, 4), (2, 1, 4)]),
    (3, True, [(0, 3, 1)]),
    (15, False, [(0, 1, 8), (8, 1, 4), (12, 3, 1)]),
])
def test_column_tiles_cover_every_column(n_size: int, overlap: bool, expected: list[tuple[int, int, int]]) -> None:
    tiles = gemm.column_tiles(n_size, gemm.ROWS, overlap)
    assert tiles == expected
    covered = [lo + t * w + i for lo, count, w in tiles for t in range(count) for i in range(w)]
    assert set(covered) == set(range(n_size))
    assert overlap or len(covered) == n_size


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 8, 7, 7), (7, 8, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 6, 8, 9), (10, 3, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2], "group": 2}),
    ((1, 64, 5, 6), (9, 64, 3, 3), {"pads": [1, 1, 1, 1]}),
])
def test_conv_relaxed_simd(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, object]) -> None:
    """--simd relaxed: f32x4.relaxed_madd in the GEMM, within float32 tolerance of ONNX Runtime."""
    x = rand(*x_shape)
    model = conv_then("Relu", x, rand(*w_shape), rand(w_shape[0]), **attrs)
    plain, relaxed = convert_onnx(model, simd="plain").wasm, convert_onnx(model, simd="relaxed").wasm
    assert RELAXED_MADD in relaxed and RELAXED_MADD not in plain
    assert json.loads(read_metadata(relaxed).to_json())["compile_options"]["simd"] == "relaxed"
    got = WasmModel(relaxed).run({"x": x})["y"]
    np.testing.assert_allclose(got, ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 4, 11, 21), (4, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 4, "strides": [2, 2]}),  # 11 outputs: 4+4+3
    ((1, 4, 9, 17), (8, 1, 3, 3), {"group": 4, "strides": [2, 2]}),  # read in place, up to the row's last input
    ((1, 2, 13, 30), (2, 1, 3, 3), {"pads": [2, 2, 2, 2], "group": 2, "strides": [1, 2], "dilations": [2, 2]}),
    ((1, 2, 12, 27), (2, 1, 9, 9), {"pads": [4, 4, 4, 4], "group": 2, "strides": [2, 2]}),  # looped taps
    ((1, 3, 8, 19), (3, 1, 2, 4), {"pads": [0, 1, 1, 2], "group": 3, "strides": [2, 2]}),
])
def test_conv_depthwise_stride_2_vectorised(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                                            attrs: dict[str, object]) -> None:
    """Four outputs per v128 at stride 2: each tap's inputs come from two overlapping loads."""
    conv_case(x_shape, w_shape, **attrs)
    x = rand(*x_shape)
    assert_matches_ort(conv_then("Clip", x, rand(*w_shape), rand(w_shape[0]), **attrs), {"x": x})


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 3, 4, 24), (3, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 3}),  # 6 v128s a row: a block of 4, one of 2
    ((1, 2, 3, 61), (2, 1, 5, 5), {"pads": [2, 2, 2, 2], "group": 2}),  # 3 blocks, then 3 v128s + 1 overlapping
    ((1, 2, 5, 7), (4, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 2}),  # 2 overlapping v128s a row, multiplier 2
    ((1, 2, 5, 3), (2, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 2}),  # rows of 3: one output at a time
    ((1, 2, 6, 40), (2, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 2, "strides": [2, 2]}),  # stride 2: 16 + 4
    ((1, 2, 5, 45), (2, 1, 5, 5), {"pads": [2, 2, 2, 2], "group": 2, "strides": [2, 2]}),  # 23: 16, 4, overlap
    ((1, 3, 9, 33), (3, 1, 3, 3), {"pads": [2, 2, 2, 2], "group": 3, "dilations": [2, 2]}),
    ((1, 4, 50), (4, 1, 7), {"pads": [3, 3], "group": 4}),  # 1-D
    ((2, 2, 4, 30), (2, 1, 1, 9), {"pads": [0, 4, 0, 4], "group": 2}),  # batch 2, one kernel row
    ((1, 2, 3, 90), (2, 1, 9, 9), {"pads": [4, 4, 4, 4], "group": 2}),  # 81 taps: more than unrolled
    ((1, 2, 6, 27), (2, 1, 3, 3), {"group": 2, "strides": [1, 3]}),  # stride 3: one output at a time
    ((1, 2, 4, 18), (2, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 2}),  # 16 + 2: the last block backs up 2
    ((1, 3, 9, 7), (3, 1, 5, 5), {"pads": [2, 2, 2, 2], "group": 3}),  # rows of 2 v128s: 2 rows a block, 1 left
    ((1, 2, 11, 4), (4, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 2}),  # rows of 1 v128: 4 rows a block, 3 left
    ((1, 2, 5, 12), (2, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 2}),  # rows of 3 v128s: one row a block
    ((1, 2, 2, 5), (2, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 2}),  # 2 rows, fewer than a block holds
    ((1, 2, 11, 17), (2, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 2, "strides": [2, 2]}),  # stride 2: 9 wide
    ((1, 2, 3, 6, 6), (2, 1, 3, 3, 3), {"pads": [1, 1, 1, 1, 1, 1], "group": 2}),  # 3-D: row blocks per plane
])
def test_conv_depthwise_blocks(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, object]) -> None:
    """Rows in blocks of v128s with a run-time loop over the taps: full blocks, then the v128s left, the last
    one overlapping the one before; narrow rows several to a block; rows too short for a v128 and strides
    above 2 keep one output per step."""
    conv_case(x_shape, w_shape, **attrs)
    conv_case(x_shape, w_shape, bias=False, **attrs)
    x = rand(*x_shape)
    assert_matches_ort(conv_then("Clip", x, rand(*w_shape), rand(w_shape[0]), **attrs), {"x": x})


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 64, 1, 1), (40, 64, 1, 1), {}),  # 40 outputs: 2 tiles of 16 and one overlapping
    ((1, 37, 1, 1), (3, 37, 1, 1), {}),  # fewer outputs than a v128
    ((2, 24, 1, 1), (21, 24, 1, 1), {}),  # batch 2
    ((1, 1100, 1, 1), (20, 1100, 1, 1), {}),  # K in blocks: no overlapping tile
    ((1, 16, 1), (33, 16, 1), {}),  # 1-D
    ((1, 8, 1, 1, 1), (17, 8, 1, 1, 1), {}),  # 3-D
    ((1, 16, 3, 3), (40, 16, 3, 3), {}),  # a 3x3 kernel over a 3x3 input: its im2col column
    ((2, 8, 1, 1), (24, 8, 3, 3), {"pads": [1, 1, 1, 1]}),  # batch 2, every tap but the centre in the padding
    ((3, 64, 1), (20, 64, 3), {"pads": [1, 1]}),  # a sequence of one step (Silero VAD's)
    ((1, 8, 5, 5), (12, 8, 3, 3), {"strides": [3, 3]}),
    ((1, 4, 5, 5), (6, 4, 3, 3), {"dilations": [2, 2]}),
])
def test_conv_of_one_position_is_one_gemm_row(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                                              attrs: dict[str, object]) -> None:
    """A conv with one output position (squeeze-excite, classifier heads) runs as col^T @ W^T, output channels as
    columns, col the input itself or its one im2col column."""
    conv_case(x_shape, w_shape, **attrs)
    conv_case(x_shape, w_shape, bias=False, **attrs)
    x = rand(*x_shape)
    assert_matches_ort(conv_then("Sigmoid", x, rand(*w_shape), rand(w_shape[0]), **attrs), {"x": x})


@pytest.mark.parametrize("weights", ["fp16", "int8"])
def test_conv_of_one_position_keeps_compressed_weights_compressed(weights: str) -> None:
    x = rand(1, 256, 1, 1)
    model = single_op_model("Conv", {"x": x}, constants={"w": rand(300, 256, 1, 1), "b": rand(300)})
    plain, small = convert_onnx(model), convert_onnx(model, weights=weights)
    assert len(small.wasm) < len(plain.wasm) * 0.7  # W^T packed per column run compresses like W
    got, want = WasmModel(small.wasm).run({"x": x})["y0"], ort_run(model, {"x": x})[0]
    assert np.max(np.abs(got - want)) < (0.02 if weights == "fp16" else 0.2) * np.max(np.abs(want))


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 3, 2, 30), (3, 1, 5, 5), {"pads": [2, 2, 2, 2], "group": 3}),  # 2 rows: 3 of 5 kernel rows skipped
    ((1, 2, 1, 9), (2, 1, 5, 5), {"pads": [2, 2, 2, 2], "group": 2}),  # 1 row
    ((1, 2, 3, 7), (4, 1, 5, 5), {"pads": [2, 2, 2, 2], "group": 2}),  # rows of 2 v128s: 2 rows a block, 1 left
    ((1, 2, 5, 12), (2, 1, 3, 3), {"pads": [4, 1, 0, 1], "group": 2}),  # padding only above; whole padding rows
    ((1, 2, 4, 16), (2, 1, 3, 3), {"pads": [1, 1, 6, 1], "group": 2}),  # whole padding rows below
    ((1, 2, 4, 20), (2, 1, 3, 3), {"pads": [3, 1, 3, 1], "group": 2, "dilations": [2, 1]}),
    ((1, 2, 6, 24), (2, 1, 5, 3), {"pads": [3, 1, 3, 1], "group": 2, "strides": [2, 1]}),
    ((1, 2, 5, 33), (2, 1, 3, 3), {"pads": [2, 1, 2, 1], "group": 2, "strides": [2, 2]}),
])
def test_conv_depthwise_skips_padding_rows(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                                           attrs: dict[str, object]) -> None:
    """Blocks skip the kernel rows that read only padding for all their rows, none when every row reads padding."""
    graph = load_onnx(single_op_model("Conv", {"x": rand(*x_shape)}, constants={"w": rand(*w_shape)}, **attrs)).graph
    win = conv.conv_plan(graph.nodes[0], graph).window
    assert padding_rows(win) >= SKIP_WORTH * win.out_dims[0] * win.kernel[0]
    conv_case(x_shape, w_shape, **attrs)
    x = rand(*x_shape)
    assert_matches_ort(conv_then("Clip", x, rand(*w_shape), rand(w_shape[0]), **attrs), {"x": x})


# ---- Winograd F(2x2, 3x3)

WINOGRAD_CASES = [
    ((1, 4, 8, 8), (5, 4, 3, 3), {"pads": [1, 1, 1, 1]}),  # 4x4 tiles: one group per tile row
    ((1, 3, 9, 11), (6, 3, 3, 3), {"pads": [1, 1, 1, 1]}),  # odd output: cropped row and column, overlap
    ((1, 5, 10, 19), (4, 5, 3, 3), {}),  # no padding, 17 columns: 9 tiles, groups 0, 4 and 5
    ((2, 3, 7, 13), (7, 3, 3, 3), {"pads": [0, 2, 1, 0]}),  # batch 2, asymmetric padding
    ((1, 2, 5, 16), (3, 2, 3, 3), {"pads": [2, 1, 2, 1]}),  # padding beyond one
    ((1, 3, 12, 10), (4, 3, 3, 3), {"auto_pad": "SAME_UPPER"}),
    ((1, 2, 21, 8), (3, 2, 3, 3), {"pads": [1, 1, 1, 1]}),  # 11 tile rows, the last one cropped
    ((1, 2, 6, 9), (3, 2, 3, 3), {}),  # 7 columns: the only group writes 7 of its 8
    ((1, 2, 6, 17), (3, 2, 3, 3), {}),  # 15 columns: 8 tiles, the second group cropped
    ((1, 2, 4, 34), (3, 2, 3, 3), {"pads": [0, 1, 0, 1]}),  # 34 columns: 17 tiles, 4 looped groups + overlap
]


@pytest.mark.parametrize("x_shape,w_shape,attrs", WINOGRAD_CASES)
@pytest.mark.parametrize("bias,chunk_rows", [(True, None), (False, None), (True, 2), (False, 3)])
def test_conv_winograd(monkeypatch: pytest.MonkeyPatch, x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                       attrs: dict[str, object], bias: bool, chunk_rows: int | None) -> None:
    """Odd sizes, padding, batch; tile rows in chunks (a run-time loop, a shorter last chunk, a cropped row)."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "MIN_OUT_CHANNELS", 1)
    if chunk_rows:
        tile_columns = -(-(x_shape[3] - 2 + sum(attrs.get("pads", [0, 0, 0, 0])[1::2])) // 2)  # type: ignore[index]
        monkeypatch.setattr(winograd, "CHUNK_BYTES", 64 * (x_shape[1] + w_shape[0]) * tile_columns * chunk_rows)
    x = rand(*x_shape)
    constants = {"w": rand(*w_shape), **({"b": rand(w_shape[0])} if bias else {})}
    model = single_op_model("Conv", {"x": x}, constants=constants, **attrs)
    graph = load_onnx(model).graph
    assert conv.conv_plan(graph.nodes[0], graph).winograd
    assert_matches_ort(model, {"x": x}, atol=1e-4)


WINOGRAD_44_CASES = [
    ((1, 4, 10, 16), (5, 4, 3, 3), {"pads": [1, 1, 1, 1]}),  # 10 rows: a last tile row of 2; one whole group
    ((1, 5, 11, 32), (6, 5, 3, 3), {}),  # 9 rows: a last tile row of 1; 30 columns: a last group of 14
    ((2, 3, 8, 24), (7, 3, 3, 3), {"pads": [0, 2, 1, 0]}),  # batch 2, asymmetric padding, a last group of 8
    ((1, 2, 6, 47), (4, 2, 3, 3), {"pads": [2, 1, 2, 1]}),  # padding beyond one, 47 columns
    ((1, 3, 12, 24), (4, 3, 3, 3), {"auto_pad": "SAME_UPPER"}),
]


@pytest.mark.parametrize("x_shape,w_shape,attrs", WINOGRAD_44_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_winograd_4x4(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, object],
                           bias: bool) -> None:
    """F(4x4, 3x3) where rows are 16 outputs or more: partial last tile rows and groups, padding, batch."""
    plan = winograd_44_case(x_shape, w_shape, attrs, bias)
    assert plan.stride == 1


WINOGRAD_44_SMALL_MAP_CASES = [
    ((1, 4, 13, 13), (5, 4, 3, 3), {"pads": [1, 1, 1, 1]}),  # 13 x 13: a last tile row of 1, one group writing 13
    ((2, 3, 14, 14), (6, 3, 3, 3), {"pads": [1, 1, 1, 1]}),  # batch 2, 14 x 14
    ((1, 3, 14, 14), (4, 3, 3, 3), {}),  # 12 x 12: 12 of the group's 16 columns
    ((1, 2, 10, 15), (4, 2, 3, 3), {"pads": [1, 0, 1, 2]}),  # 10 x 15, asymmetric padding: a last tile row of 2
    ((1, 3, 6, 17), (4, 3, 3, 3), {}),  # 4 x 15: one tile row
]


@pytest.mark.parametrize("x_shape,w_shape,attrs", WINOGRAD_44_SMALL_MAP_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_winograd_4x4_on_small_maps(monkeypatch: pytest.MonkeyPatch, x_shape: tuple[int, ...],
                                         w_shape: tuple[int, ...], attrs: dict[str, object], bias: bool) -> None:
    """F(4x4, 3x3) on maps under 16 columns wide, where its products are at most 3/4 of F(2x2)'s (`fits_4x4`; the
    output-channel floor lowered so that small cases take it): partial tile rows and the one partial group."""
    monkeypatch.setattr(winograd, "SMALL_MAP_OUT_CHANNELS", 1)
    assert winograd_44_case(x_shape, w_shape, attrs, bias).stride == 1


@pytest.mark.parametrize("activation", ["Relu", "Sigmoid"])
def test_conv_winograd_4x4_at_13_by_13_with_its_activation(activation: str) -> None:
    """ddddocr_det's head conv shape (96 -> 96 at 13 x 13) takes F(4x4, 3x3) by default, its activation fused."""
    x = rand(1, 96, 13, 13)
    model = conv_then(activation, x, rand(96, 96, 3, 3) / 10, rand(96), pads=[1, 1, 1, 1])
    graph = load_onnx(model).graph
    assert isinstance(conv.conv_plan(graph.nodes[0], graph).winograd_plan(), winograd.Winograd44Plan)
    assert convert_onnx(model).stats["activations_fused"] == 1
    assert_matches_ort(model, {"x": x}, atol=1e-4)


def winograd_44_case(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, object],
                     bias: bool) -> winograd.Winograd44Plan:
    """A Conv that must take F(4x4, 3x3), checked against ONNX Runtime; its plan."""
    x = rand(*x_shape)
    constants = {"w": rand(*w_shape), **({"b": rand(w_shape[0])} if bias else {})}
    model = single_op_model("Conv", {"x": x}, constants=constants, **attrs)
    graph = load_onnx(model).graph
    plan = conv.conv_plan(graph.nodes[0], graph)
    found = plan.winograd_plan() if plan.winograd else None
    assert isinstance(found, winograd.Winograd44Plan)
    assert found == winograd.winograd_44_plan(plan.window, x_shape[1], w_shape[0])
    assert_matches_ort(model, {"x": x}, atol=1e-4)
    return found


def test_conv_winograd_4x4_chunks_activation_and_k_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """3 tile rows in chunks of 2 (a loop of one, then the row left); 40 channels: the GEMMs run in K blocks."""
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 4 * 36 * (40 + 6) * 4 * 2 * 2)
    monkeypatch.setattr(gemm, "K_BLOCK", 16)
    x = rand(1, 40, 12, 30)
    model = conv_then("Clip", x, rand(6, 40, 3, 3) * 0.2, rand(6), pads=[1, 1, 1, 1])
    graph = load_onnx(model).graph
    plan = conv.conv_plan(graph.nodes[0], graph).winograd_plan()
    assert isinstance(plan, winograd.Winograd44Plan) and plan.chunk_rows == 2 and len(plan.runs()) == 2
    assert convert_onnx(model).stats["activations_fused"] == 1
    assert_matches_ort(model, {"x": x}, atol=1e-4)


@pytest.mark.parametrize("activation", ["Relu", "LeakyRelu", "Sigmoid", "Clip"])
def test_conv_winograd_fused_activation_and_k_blocks(monkeypatch: pytest.MonkeyPatch, activation: str) -> None:
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "MIN_OUT_CHANNELS", 1)
    monkeypatch.setattr(gemm, "K_BLOCK", 16)  # 40 channels: the 16 GEMMs run in K blocks
    x = rand(1, 40, 9, 10)
    model = conv_then(activation, x, rand(6, 40, 3, 3) * 0.2, rand(6), pads=[1, 1, 1, 1])
    assert_fused_and_matching_in_both_variants(model, x)


def test_conv_winograd_at_its_default_sizes() -> None:
    """F(2x2, 3x3) at the default thresholds: 14 x 14 with fewer output channels than F(4x4, 3x3) takes on a small map
    (whose sums of 288 unit-variance products, ~17 in size, round differently, past this atol on cancelling outputs)."""
    x = rand(1, 32, 14, 14)
    model = single_op_model("Conv", {"x": x}, constants={"w": rand(40, 32, 3, 3), "b": rand(40)}, pads=[1, 1, 1, 1])
    graph = load_onnx(model).graph
    assert isinstance(conv.conv_plan(graph.nodes[0], graph).winograd_plan(), winograd.WinogradPlan)
    assert_matches_ort(model, {"x": x}, atol=1e-4)


@pytest.mark.parametrize("w_shape,attrs", [
    ((16, 16, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((16, 16, 3, 3), {"dilations": [2, 2], "pads": [2, 2, 2, 2]}),
    ((16, 8, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),
    ((16, 16, 3, 1), {"pads": [1, 0, 1, 0]}),
])
def test_conv_winograd_only_where_it_applies(w_shape: tuple[int, ...], attrs: dict[str, object]) -> None:
    x = rand(1, 16, 12, 12)
    model = single_op_model("Conv", {"x": x}, constants={"w": rand(*w_shape)}, **attrs)
    graph = load_onnx(model).graph
    assert not conv.conv_plan(graph.nodes[0], graph).winograd
    small = single_op_model("Conv", {"x": rand(1, 16, 12, 5)}, constants={"w": rand(16, 16, 3, 3)})  # 2 tile columns
    graph = load_onnx(small).graph
    assert not conv.conv_plan(graph.nodes[0], graph).winograd


@pytest.mark.parametrize("weights", ["fp16", "int8"])
def test_conv_winograd_not_with_compressed_weights(weights: str) -> None:
    """Compressed weights keep their layout (the transformed ones would be stored as float32)."""
    x = rand(1, 16, 10, 10)
    model = single_op_model("Conv", {"x": x}, constants={"w": rand(16, 16, 3, 3), "b": rand(16)}, pads=[1, 1, 1, 1])
    plain, small = convert_onnx(model), convert_onnx(model, weights=weights)
    assert len(small.wasm) < len(plain.wasm) * 0.7  # Winograd's float32 U would not shrink
    got, want = WasmModel(small.wasm).run({"x": x})["y0"], ort_run(model, {"x": x})[0]
    assert np.max(np.abs(got - want)) < (0.02 if weights == "fp16" else 0.2) * np.max(np.abs(want))


# ---- 1-D Winograd F(4, 3), F(4, 5)

WINOGRAD_1D_CASES = [
    ((1, 16, 40), (16, 16, 3), {}),  # 38 outputs: 10 tiles, rounded up to 12; the last group's 6 outputs
    ((1, 16, 61), (20, 16, 5), {"pads": [2, 2]}),  # 61 outputs, 16 tiles
    ((2, 17, 40), (18, 17, 5), {"pads": [4, 1]}),  # batch 2, odd channels, padding beyond the kernel's half
    ((1, 16, 64, 1), (16, 16, 5, 1), {}),  # [C, L, 1]: magika's layout
    ((1, 16, 1, 50), (24, 16, 1, 3), {"pads": [0, 1, 0, 0]}),  # along the last axis, padded in front only
    ((1, 16, 24), (16, 16, 5), {"auto_pad": "SAME_UPPER"}),  # 24 outputs: 6 tiles, one group of 8
    ((1, 16, 5, 32), (16, 16, 1, 3), {"pads": [0, 1, 0, 1]}),  # rows of 32 outputs: whole groups only
    ((1, 16, 3, 40), (16, 16, 1, 5), {"pads": [0, 2, 0, 2]}),  # rows of 40: each row's last group writes 8
    ((1, 16, 2, 3, 24), (16, 16, 1, 1, 3), {"pads": [0, 0, 0, 0, 0, 2]}),  # 3-D: 6 rows of 24 outputs
]


@pytest.mark.parametrize("x_shape,w_shape,attrs", WINOGRAD_1D_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_winograd_1d(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, object],
                          bias: bool) -> None:
    """Lengths that leave partial tiles and groups, padding on either side, batch, [C, L, 1] and [C, 1, L]."""
    x = rand(*x_shape)
    constants = {"w": rand(*w_shape), **({"b": rand(w_shape[0])} if bias else {})}
    model = single_op_model("Conv", {"x": x}, constants=constants, **attrs)
    graph = load_onnx(model).graph
    assert conv.conv_plan(graph.nodes[0], graph).winograd_1d
    assert_matches_ort(model, {"x": x}, atol=1e-4)


WINOGRAD_AXIS_CASES = [
    ((1, 16, 18, 8), (16, 16, 3, 1), {}),  # 16 outputs along H: 4 whole tiles, 8 columns
    ((1, 16, 19, 6), (20, 16, 3, 1), {"pads": [1, 0, 0, 0]}),  # 18 outputs: a last tile of 2; 6 columns: overlap
    ((2, 17, 13, 5), (16, 17, 5, 1), {"pads": [2, 0, 3, 0]}),  # batch 2, 14 outputs, 5 columns, asymmetric pads
    ((1, 16, 3, 11, 4), (16, 16, 1, 5, 1), {"pads": [0, 2, 0, 0, 2, 0]}),  # 3-D: 3 leading rows, 4 columns
    ((1, 16, 9, 2, 3), (16, 16, 3, 1, 1), {}),  # 3-D: 6 positions after the axis
    # along the last axis, rows too short for groups of 16 outputs: the rows take the trailing positions' place
    ((1, 16, 8, 8), (16, 16, 1, 3), {"pads": [0, 1, 0, 1]}),  # 8 rows of 8 outputs
    ((2, 17, 5, 9), (20, 17, 1, 5), {"pads": [0, 2, 0, 0]}),  # batch 2, 5 rows (overlap), 7 outputs (partial)
    ((1, 16, 6, 22), (16, 16, 1, 3), {}),  # 20 outputs: 5 tiles
    ((1, 16, 2, 3, 8), (16, 16, 1, 1, 3), {"pads": [0, 0, 1, 0, 0, 1]}),  # 3-D: 6 rows
]


@pytest.mark.parametrize("x_shape,w_shape,attrs", WINOGRAD_AXIS_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_winograd_along_an_axis(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, object],
                                     bias: bool) -> None:
    """F(4, r) along an axis followed by 4 or more positions: whole and partial last tiles, overlapping columns,
    padding, batch, leading rows."""
    x = rand(*x_shape)
    constants = {"w": rand(*w_shape), **({"b": rand(w_shape[0])} if bias else {})}
    model = single_op_model("Conv", {"x": x}, constants=constants, **attrs)
    graph = load_onnx(model).graph
    assert isinstance(conv.conv_plan(graph.nodes[0], graph).winograd_1d_plan(), winograd.WinogradAxisPlan)
    assert_matches_ort(model, {"x": x}, atol=1e-4)


def test_conv_winograd_along_the_last_axis_transposed_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 4 * 6 * (16 + 16) * 8)  # 1 unit (a tile of 8 rows) per chunk
    x = rand(1, 16, 8, 9)  # 9 outputs a row: 3 tiles, one per chunk
    model = conv_then("Relu", x, rand(16, 16, 1, 3), rand(16), pads=[0, 1, 0, 1])
    graph = load_onnx(model).graph
    plan = conv.conv_plan(graph.nodes[0], graph).winograd_1d_plan()
    assert isinstance(plan, winograd.WinogradAxisPlan) and plan.transposed and plan.chunk_units == 1
    assert_matches_ort(model, {"x": x}, atol=1e-4)


@pytest.mark.parametrize("chunk_units", [1, 4])
def test_conv_winograd_along_an_axis_in_chunks(monkeypatch: pytest.MonkeyPatch, chunk_units: int) -> None:
    """3 rows x 5 tiles = 15 units: whole chunks in a loop (units crossing rows), then the units left."""
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 4 * 6 * (16 + 16) * 4 * chunk_units)
    x = rand(1, 16, 3, 19, 4)
    model = conv_then("Relu", x, rand(16, 16, 1, 3, 1), rand(16), pads=[0, 1, 0, 0, 0, 0])
    graph = load_onnx(model).graph
    plan = conv.conv_plan(graph.nodes[0], graph).winograd_1d_plan()
    assert isinstance(plan, winograd.WinogradAxisPlan) and plan.chunk_units == chunk_units and plan.units == 15
    assert convert_onnx(model).stats["activations_fused"] == 1
    assert_matches_ort(model, {"x": x}, atol=1e-4)


@pytest.mark.parametrize("x_shape,w_shape,chunk_groups", [
    ((2, 16, 150), (20, 16, 5), 4),  # 10 groups: 2 whole chunks, then 2 groups; the last group writes 6 outputs
    ((2, 16, 150), (20, 16, 5), 3),
    ((1, 16, 3, 40), (20, 16, 1, 5), 2),  # 3 rows of 3 groups: chunks cross rows
])
def test_conv_winograd_1d_chunks(monkeypatch: pytest.MonkeyPatch, x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                                 chunk_groups: int) -> None:
    """Whole chunks in a loop, then the groups left in a chunk of their own."""
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 16 * 8 * (16 + 20) * chunk_groups)
    x = rand(*x_shape)
    pads = [0] * (len(x_shape) - 3) + [2]
    model = single_op_model("Conv", {"x": x}, constants={"w": rand(*w_shape), "b": rand(20)}, pads=pads + pads)
    graph = load_onnx(model).graph
    plan = conv.conv_plan(graph.nodes[0], graph).winograd_1d_plan()
    assert isinstance(plan, winograd.Winograd1dPlan) and plan.chunk_groups == chunk_groups
    assert len(plan.chunks()) == 2
    assert_matches_ort(model, {"x": x}, atol=1e-4)


@pytest.mark.parametrize("activation", ["Relu", "Sigmoid", "Clip"])
def test_conv_winograd_1d_fused_activation_and_k_blocks(monkeypatch: pytest.MonkeyPatch, activation: str) -> None:
    monkeypatch.setattr(gemm, "K_BLOCK", 16)  # 40 channels: the GEMMs run in K blocks
    x = rand(1, 40, 37)
    model = conv_then(activation, x, rand(24, 40, 5) * 0.2, rand(24), pads=[2, 2])
    assert convert_onnx(model).stats["activations_fused"] == 1
    assert_matches_ort(model, {"x": x}, atol=1e-4)


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 16, 40), (16, 16, 3), {"strides": [2]}),
    ((1, 16, 40), (16, 16, 3), {"dilations": [2]}),
    ((1, 16, 40), (16, 8, 3), {"group": 2}),
    ((1, 16, 40), (16, 16, 7), {}),  # no points for 7 taps
    ((1, 1, 40), (16, 1, 3), {}),  # one input channel
    ((1, 16, 40), (3, 16, 3), {}),  # 3 output channels
    ((1, 16, 10), (16, 16, 3), {}),  # 8 outputs: a group of 16 would waste half
    ((1, 16, 40, 3), (16, 16, 3, 1), {}),  # 3 positions after the axis
    ((1, 16, 40, 8), (16, 16, 3, 3), {}),  # two kernel axes
    ((1, 16, 40, 8), (16, 16, 3, 1), {"strides": [1, 2]}),  # the other axis strided
    ((1, 16, 40, 8), (16, 16, 3, 1), {"pads": [1, 1, 1, 1]}),  # the other axis padded
])
def test_conv_winograd_1d_only_where_it_applies(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                                                attrs: dict[str, object]) -> None:
    x = rand(*x_shape)
    model = single_op_model("Conv", {"x": x}, constants={"w": rand(*w_shape)}, **attrs)
    graph = load_onnx(model).graph
    assert not conv.conv_plan(graph.nodes[0], graph).winograd_1d
    assert_matches_ort(model, {"x": x})


def test_conv_winograd_1d_not_with_compressed_weights() -> None:
    x = rand(1, 16, 40)
    model = single_op_model("Conv", {"x": x}, constants={"w": rand(32, 16, 5), "b": rand(32)}, pads=[2, 2])
    plain, small = convert_onnx(model), convert_onnx(model, weights="int8")
    assert len(small.wasm) < len(plain.wasm) * 0.7
    got, want = WasmModel(small.wasm).run({"x": x})["y0"], ort_run(model, {"x": x})[0]
    assert np.max(np.abs(got - want)) < 0.2 * np.max(np.abs(want))


def dft_conv(size: int, bins: int, layout: str) -> np.ndarray:
    """Conv weights [C, 1, N] that are a Hann window times DFT rows (tests/lowering/test_dft.py's `dft_filters`)."""
    from tests.lowering.test_dft import dft_filters
    return dft_filters(size, bins, layout)


@pytest.mark.parametrize("x_shape,size,bins,layout,hop,bias", [
    ((1, 1, 16000), 512, 257, "real", 160, False),  # openWakeWord's mel front end: 97 frames, a partial group
    ((1, 1, 16000), 512, 257, "imag", 160, False),
    ((3, 1, 640), 256, 129, "both", 128, True),  # Silero VAD: real then imaginary parts, a batch
    ((2, 1, 1000), 64, 40, "both", 16, False),  # fewer bins than N/2 + 1
    ((1, 1, 300), 32, 32, "real", 7, True),  # bins past N/2 read the conjugate; stride not dividing anything
    ((1, 1, 300), 16, 16, "imag", 3, False),  # the shortest frame that runs as an FFT
    ((1, 1, 64), 64, 33, "real", 64, False),  # one frame
])
def test_conv_whose_filters_are_a_windowed_dft_runs_as_ffts_and_matches(
        x_shape: tuple[int, ...], size: int, bins: int, layout: str, hop: int, bias: bool) -> None:
    x = rand(*x_shape) * 1000  # audio at int16 scale, as openWakeWord feeds it
    constants = {"w": dft_conv(size, bins, layout)}
    if bias:
        constants["b"] = rand(constants["w"].shape[0])
    model = single_op_model("Conv", {"x": x}, constants=constants, strides=[hop])
    graph = load_onnx(model).graph
    node = next(n for n in graph.nodes if n.op_type == "Conv")
    assert conv.conv_plan(node, graph).stft is not None
    scale = float(np.abs(ort_run(model, {"x": x})[0]).max())
    assert_matches_ort(model, {"x": x}, rtol=1e-5, atol=2e-6 * scale)


def test_a_dft_conv_s_fused_activation_and_a_symbolic_length_follow() -> None:
    """A Relu fused into the FFT's stores, and one module for every signal length in a range (one FFT kernel per
    bucket of lengths)."""
    x = rand(1, 1, 2000) * 100
    model = conv_then("Relu", x, dft_conv(128, 65, "both"), rand(130), strides=[32])
    assert convert_onnx(model).stats["activations_fused"] == 1
    assert_matches_ort(model, {"x": x}, rtol=1e-5, atol=1e-3)
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "L"
    for value in [*model.graph.value_info, *model.graph.output]:
        value.type.tensor_type.ClearField("shape")
    result = convert_onnx(model, {"x": (1, 1, 2000)}, input_ranges={"x": {2: (128, 2000)}})
    wasm = WasmModel(result.wasm)
    for length in (2000, 128, 777, 1500):
        x = rand(1, 1, length) * 100
        np.testing.assert_allclose(wasm.run({"x": x})["y"], ort_run(model, {"x": x})[0], rtol=1e-5, atol=1e-3,
                                   err_msg=str(length))


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((32, 128, 4), (64, 128, 3), {"pads": [1, 1], "strides": [2]}),  # Silero VAD's windows: 2 positions each
    ((32, 129, 4), (128, 129, 3), {"pads": [1, 1]}),
    ((8, 16, 3, 3), (24, 16, 3, 3), {"pads": [1, 1, 1, 1]}),  # small maps
    ((16, 32, 1, 1), (20, 32, 1, 1), {}),  # one position each: a GEMM of 16 columns, not 16 GEMM rows
    ((3, 5, 7), (6, 5, 3), {}),  # 5 positions x 3 samples: 15 columns, a partial tile
])
def test_a_batch_of_samples_with_few_positions_each_runs_as_one_gemm(x_shape: tuple[int, ...],
                                                                     w_shape: tuple[int, ...],
                                                                     attrs: dict[str, object]) -> None:
    x = rand(*x_shape)
    model = conv_then("Relu", x, rand(*w_shape), rand(w_shape[0]), **attrs)
    graph = load_onnx(model).graph
    node = next(n for n in graph.nodes if n.op_type == "Conv")
    assert conv.conv_plan(node, graph).merged_batch
    assert convert_onnx(model).stats["activations_fused"] == 1
    assert_matches_ort(model, {"x": x})


STRIDED_CASES = [
    ((1, 16, 66, 26), (8, 16, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),  # 33 x 13: a last tile row of 1
    ((1, 17, 33, 49), (6, 17, 3, 3), {"pads": [0, 1, 1, 0], "strides": [2, 2]}),  # odd sizes, asymmetric: 16 x 24
    ((1, 16, 34, 50), (5, 16, 3, 3), {"strides": [2, 2]}),  # unpadded: the last input row and column read by no patch
    ((2, 16, 64, 32), (4, 16, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),  # batch of two, 32 x 16
    ((1, 16, 24, 46), (6, 16, 3, 3), {"pads": [2, 2, 2, 2], "strides": [2, 2]}),  # padding beyond one
    ((1, 16, 26, 48), (7, 16, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),  # pads (0, 1): 13 x 24
]


@pytest.mark.parametrize("x_shape,w_shape,attrs", STRIDED_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_stride_2_winograd(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, object],
                                bias: bool) -> None:
    """3x3 stride-2 convs as F(4x4, 3x3) over even and odd inputs: odd and even sizes, padding 0 to 2, batch."""
    assert winograd_44_case(x_shape, w_shape, attrs, bias).stride == 2


@pytest.mark.parametrize("activation", ["Relu", "Sigmoid", "Clip"])
def test_conv_stride_2_winograd_chunks_activation_and_k_blocks(monkeypatch: pytest.MonkeyPatch,
                                                               activation: str) -> None:
    """7 tile rows in chunks of 2 (a loop of 3, then the row left); 40 channels: the 81 GEMMs run in K blocks; the
    activation fused into the output transform; the relaxed-SIMD variant too."""
    monkeypatch.setattr(winograd, "STRIDED_CHUNK_BYTES", 4 * 81 * (40 + 6) * 4 * 2 * 2)
    monkeypatch.setattr(gemm, "K_BLOCK", 16)
    x = rand(1, 40, 55, 60)
    model = conv_then(activation, x, rand(6, 40, 3, 3) * 0.2, rand(6), pads=[1, 1, 1, 1], strides=[2, 2])
    graph = load_onnx(model).graph
    plan = conv.conv_plan(graph.nodes[0], graph).winograd_plan()
    assert isinstance(plan, winograd.Winograd44Plan) and plan.stride == 2
    assert plan.chunk_rows == 2 and [repeat for _, _, repeat in plan.runs()] == [3, 1]
    assert_fused_and_matching_in_both_variants(model, x)


def test_conv_stride_2_stems_and_depthwise_keep_their_paths() -> None:
    """A 3-channel stem stays on im2col and a depthwise stride-2 conv on its window; both still match."""
    for x_shape, w_shape, group in [((1, 3, 64, 64), (16, 3, 3, 3), 1), ((1, 16, 32, 32), (16, 1, 3, 3), 16)]:
        x = rand(*x_shape)
        model = single_op_model("Conv", {"x": x}, constants={"w": rand(*w_shape), "b": rand(w_shape[0])},
                                pads=[1, 1, 1, 1], strides=[2, 2], group=group)
        graph = load_onnx(model).graph
        assert not conv.conv_plan(graph.nodes[0], graph).winograd
        assert_matches_ort(model, {"x": x}, atol=1e-4)


WINOGRAD_66_CASES = [
    ((1, 4, 14, 26), (5, 4, 3, 3), {"pads": [1, 1, 1, 1]}),  # 14 rows: a last tile row of 2; 26: a last group of 2
    ((1, 5, 15, 50), (6, 5, 3, 3), {}),  # 13 rows: a last tile row of 1; 48 columns: two whole groups
    ((2, 3, 8, 31), (7, 3, 3, 3), {"pads": [0, 2, 1, 0]}),  # batch 2, asymmetric padding, a last group of 7
    ((1, 2, 6, 47), (4, 2, 3, 3), {"pads": [2, 1, 2, 1]}),  # padding beyond one, 49 columns: a last group of 1
    ((1, 3, 12, 24), (4, 3, 3, 3), {"auto_pad": "SAME_UPPER"}),  # 12 x 24: whole tiles, one whole group
    ((1, 3, 9, 25), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}),  # 9 rows: a last tile row of 3; 25 columns
]


@pytest.mark.parametrize("x_shape,w_shape,attrs", WINOGRAD_66_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_winograd_6x6(monkeypatch: pytest.MonkeyPatch, x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                           attrs: dict[str, object], bias: bool) -> None:
    """F(6x6, 3x3) (the chooser opened to every size): partial last tile rows (1 to 5 of 6) and groups of 24
    columns (1 to 23 of them), padding, batch."""
    monkeypatch.setattr(winograd, "SIX_BY_SIX_GAIN", -1e9)
    x = rand(*x_shape)
    constants = {"w": rand(*w_shape), **({"b": rand(w_shape[0])} if bias else {})}
    model = single_op_model("Conv", {"x": x}, constants=constants, **attrs)
    graph = load_onnx(model).graph
    plan = conv.conv_plan(graph.nodes[0], graph)
    found = plan.winograd_plan() if plan.winograd else None
    assert isinstance(found, winograd.Winograd44Plan) and (found.tile, found.alpha, found.stride) == (6, 8, 1)
    assert_matches_ort(model, {"x": x}, atol=1e-4)


@pytest.mark.parametrize("activation", ["Relu", "Sigmoid"])
def test_conv_winograd_6x6_at_52_by_52_with_its_activation(activation: str) -> None:
    """ddddocr_det's 96 -> 96 conv at 52 x 52 takes F(6x6, 3x3) by default (`fits_6x6`), its activation fused, within
    the parity tolerance of ONNX Runtime; its 48 -> 48 conv at the same size keeps F(4x4, 3x3). The weights are
    He-scaled (std sqrt(2 / 9C)), as a trained layer's are: outputs up to about 8, errors 0.45-0.53 of the tolerance
    (F(4x4) 0.27-0.38); with twice that std (outputs up to 15) F(6x6)'s reach 0.8-1.05 of atol = rtol = 1e-4, F(4x4)'s
    0.55-0.75 (docs/performance.md)."""
    x = rand(1, 96, 52, 52)
    he = np.float32(np.sqrt(2 / (9 * 96)))
    model = conv_then(activation, x, rand(96, 96, 3, 3) * he, rand(96), pads=[1, 1, 1, 1])
    graph = load_onnx(model).graph
    found = conv.conv_plan(graph.nodes[0], graph).winograd_plan()
    assert isinstance(found, winograd.Winograd44Plan) and found.tile == 6
    assert convert_onnx(model).stats["activations_fused"] == 1
    assert_matches_ort(model, {"x": x}, atol=1e-4)
    narrow = conv_then(activation, rand(1, 48, 52, 52), rand(48, 48, 3, 3) / 10, rand(48), pads=[1, 1, 1, 1])
    graph = load_onnx(narrow).graph
    kept = conv.conv_plan(graph.nodes[0], graph).winograd_plan()
    assert isinstance(kept, winograd.Winograd44Plan) and kept.tile == 4
