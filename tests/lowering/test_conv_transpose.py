"""ConvTranspose plans: output size and pads as ONNX defines them, valid input ranges, tiles."""

from __future__ import annotations

import numpy as np
import pytest

import wasinfer.lowering.conv_transpose as conv_transpose
from tests.parity import single_op_model
from wasinfer.frontends import load_onnx
from wasinfer.ir import Graph
from wasinfer.lowering.conv_transpose import plan_problems, transpose_plan, transpose_scratch


def graph_of(x_shape: tuple[int, ...], w_shape: tuple[int, ...], **attrs: object) -> Graph:
    model = single_op_model("ConvTranspose", {"x": np.zeros(x_shape, np.float32)},
                            constants={"w": np.zeros(w_shape, np.float32)}, **attrs)
    return load_onnx(model).graph


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((1, 8, 10, 10), (8, 4, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
    ((2, 4, 9), (4, 3, 4), {"group": 2, "auto_pad": "SAME_LOWER", "strides": [2]}),
    ((1, 2, 5, 6), (2, 3, 3, 2), {"dilations": [2, 1], "strides": [1, 3], "pads": [0, 1, 2, 0]}),
    ((1, 2, 5, 6), (2, 3, 3, 3), {"output_shape": [11, 13], "strides": [2, 2]}),
])
def test_valid_is_exactly_the_inputs_landing_inside(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                                                    attrs: dict[str, object]) -> None:
    graph = graph_of(x_shape, w_shape, **attrs)
    plan = transpose_plan(graph.nodes[0], graph)
    assert (plan.batch, plan.out_channels, *plan.out_dims) == graph.info(graph.nodes[0].outputs[0]).shape
    for a in range(len(plan.in_dims)):
        for k in range(plan.kernel[a]):
            outs = np.arange(plan.in_dims[a]) * plan.strides[a] + k * plan.dilations[a] - plan.pad_begin[a]
            lo, hi = plan.valid(a, k)
            assert list(range(lo, hi)) == [i for i, o in enumerate(outs) if 0 <= o < plan.out_dims[a]]


def test_tiles_cover_the_input_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = graph_of((1, 3, 9, 5), (3, 2, 3, 3), strides=[2, 1], pads=[1, 1, 1, 1])
    node = graph.nodes[0]
    monkeypatch.setattr(conv_transpose, "COLUMN_BUDGET", 2 * 9 * 5 * 4 * 2)  # two input rows per tile
    plan = transpose_plan(node, graph)
    assert plan.tile_rows == 2
    covered = [row for lo, hi, repeat in plan.tiles() for t in range(repeat)
               for row in range(lo + t * (hi - lo), hi + t * (hi - lo))]
    assert covered == list(range(9))
    assert any(repeat > 1 for _, _, repeat in plan.tiles())
    assert transpose_scratch(node, graph) == plan.scratch_bytes == 2 * 9 * 2 * 5 * 4


def test_odd_padding_from_output_shape_is_declined() -> None:
    """Spec and ONNX Runtime put the odd element on opposite sides: the plan refuses to pick one."""
    graph = graph_of((1, 1, 3, 3), (1, 1, 3, 3), output_shape=[4, 4])
    problems, plan = plan_problems(graph.nodes[0], graph)
    assert plan is None and "needs odd padding" in problems[0]
