"""Conv plans: which way a conv runs, its tiles of output rows, scratch and packed weights."""

from __future__ import annotations

import numpy as np
import pytest

import wasinfer.lowering.conv as conv
from tests.parity import single_op_model
from wasinfer.frontends import load_onnx
from wasinfer.ir import Graph
from wasinfer.lowering.conv import conv_plan, conv_scratch, packed_weights
from wasinfer.lowering.gemm import PANEL
from wasinfer.lowering.window import window_scratch

rng = np.random.default_rng(0)


def conv_graph(x_shape: tuple[int, ...], w_shape: tuple[int, ...], weights_at_run_time: bool = False,
               **attrs: object) -> Graph:
    x = np.zeros(x_shape, np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    inputs, constants = ({"x": x, "w": w}, {}) if weights_at_run_time else ({"x": x}, {"w": w})
    return load_onnx(single_op_model("Conv", inputs, constants=constants, **attrs)).graph


def test_pointwise_conv_is_a_direct_gemm_without_scratch() -> None:
    graph = conv_graph((1, 8, 6, 6), (4, 8, 1, 1))
    plan = conv_plan(graph.nodes[0], graph)
    assert plan.direct and not plan.depthwise and not plan.winograd
    assert plan.tile_rows == 6 and plan.tiles() == [(0, 6, 1)]
    assert conv_scratch(graph.nodes[0], graph) == 0
    padded = conv_graph((1, 8, 6, 6), (4, 8, 1, 1), pads=[1, 1, 1, 1])
    assert not conv_plan(padded.nodes[0], padded).direct


@pytest.mark.parametrize("w_shape,group,depthwise", [((6, 1, 3, 3), 6, True), ((12, 1, 3, 3), 6, True),
                                                     ((6, 2, 3, 3), 3, False), ((1, 1, 3, 3), 1, False)])
def test_depthwise_is_one_input_channel_per_group(w_shape: tuple[int, ...], group: int, depthwise: bool) -> None:
    channels = w_shape[1] * group
    graph = conv_graph((1, channels, 9, 9), w_shape, group=group, pads=[1, 1, 1, 1])
    plan = conv_plan(graph.nodes[0], graph)
    assert plan.depthwise == depthwise
    if depthwise:  # a padded plane buffer, not a column buffer
        assert plan.scratch_bytes == window_scratch(plan.window) == 11 * 11 * 4


def test_winograd_needs_constant_uncompressed_3x3_stride_1_weights_and_channels() -> None:
    graph = conv_graph((1, 32, 14, 14), (48, 32, 3, 3), pads=[1, 1, 1, 1])
    node = graph.nodes[0]
    plan = conv_plan(node, graph)
    assert plan.winograd and plan.scratch_bytes == plan.winograd_plan().scratch_bytes
    graph.compressed = {node.inputs[1]}  # int8 / fp16 storage: U would have to be stored as float32
    assert not conv_plan(node, graph).winograd
    runtime = conv_graph((1, 32, 14, 14), (48, 32, 3, 3), weights_at_run_time=True, pads=[1, 1, 1, 1])
    assert not conv_plan(runtime.nodes[0], runtime).winograd
    for attrs in ({"strides": [2, 2]}, {"dilations": [2, 2]}):
        other = conv_graph((1, 32, 14, 14), (48, 32, 3, 3), **attrs)
        assert not conv_plan(other.nodes[0], other).winograd
    for x_shape, w_shape in (((1, 1, 14, 14), (48, 1, 3, 3)), ((1, 32, 14, 14), (3, 32, 3, 3)),
                             ((1, 32, 14, 7), (48, 32, 3, 3)), ((1, 32, 14, 14), (48, 32, 5, 5))):
        other = conv_graph(x_shape, w_shape)  # too few channels or tile columns, or not 3x3
        assert not conv_plan(other.nodes[0], other).winograd


@pytest.mark.parametrize("x_shape,w_shape,attrs,tile_rows", [
    ((1, 3, 19, 20), (3, 3, 3, 3), {"pads": [1, 1, 2, 1]}, 3),  # 3 output channels: not Winograd
    ((1, 3, 23, 20), (4, 3, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 1]}, 2),
    ((1, 4, 17, 9), (6, 2, 3, 3), {"pads": [2, 0, 2, 0], "dilations": [2, 1], "group": 2}, 4),
    ((1, 3, 40), (5, 3, 9), {"pads": [2, 3]}, 7),
])
def test_tiles_cover_the_rows_and_share_code_only_when_inside(monkeypatch: pytest.MonkeyPatch,
                                                              x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                                                              attrs: dict[str, object], tile_rows: int) -> None:
    graph = conv_graph(x_shape, w_shape, **attrs)
    full = conv_plan(graph.nodes[0], graph)
    row_bytes = full.k_size * full.row_size * 4
    monkeypatch.setattr(conv, "COLUMN_BUDGET", row_bytes * tile_rows)
    plan = conv_plan(graph.nodes[0], graph)
    win = plan.window
    assert plan.tile_rows == tile_rows
    assert plan.scratch_bytes == plan.k_size * tile_rows * plan.row_size * 4
    covered = []
    for lo, hi, repeat in plan.tiles():
        for t in range(repeat):
            start, end = lo + t * (hi - lo), hi + t * (hi - lo)
            covered += range(start, end)
            if repeat > 1:  # one copy of code for every tile of the run: none may read padding on axis 0
                assert end - start == tile_rows
                assert all(win.valid(0, k, start, end) == (start, end) for k in range(win.kernel[0]))
    assert covered == list(range(win.out_dims[0]))
    assert any(repeat > 1 for _, _, repeat in plan.tiles())  # the inner tiles do share code


@pytest.mark.parametrize("out_channels,one_tile", [(56, True), (48, False)])
def test_weights_that_outweigh_the_column_buffer_make_one_tile(monkeypatch: pytest.MonkeyPatch, out_channels: int,
                                                               one_tile: bool) -> None:
    """Up to twice the budget, a conv whose weights are at least its whole column buffer (K x 49 positions here:
    56 output channels, not 48) builds it in one tile instead of streaming the weights once per tile; ddddocr_det's
    3x3 stride-2 convs at 13 x 13 split 11 + 2 rows before."""
    graph = conv_graph((1, 24, 13, 13), (out_channels, 24, 3, 3), pads=[1, 1, 1, 1], strides=[2, 2])
    whole = 24 * 9 * 49 * 4
    monkeypatch.setattr(conv, "COLUMN_BUDGET", whole * 3 // 5)  # 4 of the 7 output rows
    plan = conv_plan(graph.nodes[0], graph)
    assert plan.tiles() == ([(0, 7, 1)] if one_tile else [(0, 4, 1), (4, 7, 1)])
    assert plan.scratch_bytes == (whole if one_tile else whole * 4 // 7)
    monkeypatch.setattr(conv, "COLUMN_BUDGET", whole // 2 - 1)  # over twice the budget: tiles again
    assert conv_plan(graph.nodes[0], graph).tile_rows < 7


@pytest.mark.parametrize("out_channels,groups", [(6, 1), (8, 2), (9, 3)])
def test_packed_weights_are_per_group_panels(out_channels: int, groups: int) -> None:
    w = rng.standard_normal((out_channels, 2, 3, 3)).astype(np.float32)
    packed = packed_weights(w, groups)
    group_out = out_channels // groups
    assert packed.shape == (groups, -(-group_out // PANEL), 18, PANEL)
    for g in range(groups):
        for m in range(group_out):
            np.testing.assert_array_equal(packed[g, m // PANEL, :, m % PANEL], w[g * group_out + m].reshape(-1))
