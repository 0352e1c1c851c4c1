"""Resize plans against ONNX's reference evaluator: the per-axis tap tables reproduce its output."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

from tests.parity import graph_model
from wasinfer.frontends import load_onnx
from wasinfer.lowering.resize import AxisPass, ResizePlan, plan_problems, resize_plan, tap_table

rng = np.random.default_rng(0)


def resize_model(x: np.ndarray, scales: list[float] | None = None, sizes: list[int] | None = None,
                 roi: list[float] | None = None, **attrs: object) -> onnx.ModelProto:
    inits = {"roi": np.array(roi or [], np.float32)} if roi else {}
    names = ["x", "roi" if roi else ""]
    if scales is not None:
        inits["scales"] = np.array(scales, np.float32)
        names.append("scales")
    if sizes is not None:
        inits["sizes"] = np.array(sizes, np.int64)
        names += ["", "sizes"] if scales is None else ["sizes"]
    return graph_model([helper.make_node("Resize", names, ["y"], **attrs)], {"x": x}, ["y"], inits, opset=19)


def plan_of(model: onnx.ModelProto) -> ResizePlan:
    graph = load_onnx(model).graph
    return resize_plan(graph.nodes[0], graph)


def apply(plan: ResizePlan, x: np.ndarray) -> np.ndarray:
    """Run the plan in numpy: out[o] = bias[o] + sum_t weight[o, t] * in[index[o, t]] per pass."""
    for p in plan.passes:
        moved = np.moveaxis(x, p.axis, -1)
        out = (moved[..., p.index] * p.weight).sum(axis=-1)
        if p.bias is not None:
            out = out + p.bias
        x = np.moveaxis(out, -1, p.axis)
    return x


CASES = [
    ({"scales": [1, 1, 2.5, 0.5]}, {"mode": "linear"}),
    ({"scales": [1, 1, 0.6, 0.5]}, {"mode": "cubic", "antialias": 1}),
    ({"scales": [1, 1, 0.6, 0.5]}, {"mode": "linear", "antialias": 1}),
    ({"scales": [1, 1, 1.7, 3.0]}, {"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1}),
    ({"scales": [1, 1, 2, 2]}, {"mode": "nearest"}),
    ({"scales": [1, 1, 0.7, 1.3]}, {"mode": "nearest", "nearest_mode": "ceil",
                                    "coordinate_transformation_mode": "asymmetric"}),
    ({"sizes": [1, 2, 9, 4]}, {"mode": "linear", "coordinate_transformation_mode": "align_corners"}),
    ({"sizes": [1, 2, 3, 11]}, {"mode": "cubic", "coordinate_transformation_mode": "pytorch_half_pixel"}),
    ({"sizes": [1, 2, 9, 4], "roi": [0, 0, -0.2, 0.1, 1, 1, 1.3, 0.9]},
     {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize", "extrapolation_value": 5.0}),
]


@pytest.mark.parametrize("inputs,attrs", CASES)
def test_plan_reproduces_the_reference(inputs: dict[str, list[float]], attrs: dict[str, object]) -> None:
    x = rng.standard_normal((1, 2, 6, 7)).astype(np.float32)
    model = resize_model(x, **inputs, **attrs)  # type: ignore[arg-type]
    (want,) = ReferenceEvaluator(model).run(None, {"x": x})
    got = apply(plan_of(model), x.astype(np.float64))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_shrinking_passes_come_first_and_identity_axes_are_skipped() -> None:
    x = np.zeros((1, 3, 8, 8), np.float32)
    plan = plan_of(resize_model(x, scales=[1, 1, 2, 0.5], mode="linear"))
    assert [(p.axis, p.n_in, p.n_out) for p in plan.passes] == [(3, 8, 4), (2, 8, 16)]
    assert plan.shapes() == [(1, 3, 8, 8), (1, 3, 8, 4), (1, 3, 16, 4)]
    # one intermediate (between the two passes): the first buffer only
    assert plan.buffers() == (1 * 3 * 8 * 4 * 4, 0)


def test_nearest_integer_upscale_is_a_repeat_of_copies() -> None:
    plan = plan_of(resize_model(np.zeros((1, 1, 3, 5), np.float32), scales=[1, 1, 1, 3], mode="nearest"))
    (p,) = plan.passes
    assert p.copies and p.repeat == 3


def test_tap_table_layout() -> None:
    index = np.array([[0, 1], [1, 2]])
    weight = np.array([[0.25, 0.75], [0.5, 0.5]], np.float32)
    bias = np.array([0.0, 5.0], np.float32)
    table = tap_table(AxisPass(0, 3, 2, index, weight, bias), row_bytes=12)
    assert table.dtype == np.int32 and table.shape == (2, 5)
    np.testing.assert_array_equal(table[:, 0:4:2], index * 12)  # source rows as byte offsets
    np.testing.assert_array_equal(table[:, 1:4:2].view(np.float32), weight)  # interleaved with weights
    np.testing.assert_array_equal(table[:, 4].view(np.float32), bias)  # the extrapolation value last
    copies = tap_table(AxisPass(0, 3, 2, index[:, :1], np.ones((2, 1), np.float32), None), row_bytes=8)
    np.testing.assert_array_equal(copies, index[:, :1] * 8)  # a copy needs the offset only


def test_a_mode_the_plan_cannot_build_is_declined_with_its_name() -> None:
    x = np.zeros((1, 1, 4, 4), np.float32)
    graph = load_onnx(resize_model(x, scales=[1, 1, 2, 2], mode="linear")).graph
    node = graph.nodes[0]
    node.attrs["coordinate_transformation_mode"] = "sideways"
    node.attrs["keep_aspect_ratio_policy"] = "fill"
    problems, plan = plan_problems(node, graph)
    assert plan is None
    assert problems == ["coordinate_transformation_mode='sideways' is not supported",
                        "keep_aspect_ratio_policy='fill' is not supported"]
