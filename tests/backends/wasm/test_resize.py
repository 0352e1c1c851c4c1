"""Resize and Upsample against ONNX Runtime, and against ONNX's own backend cases.

ONNX Runtime places samples by the integer output length where the specification (and its
reference evaluator) uses the real-valued scale * input length; the two agree whenever that
product is a whole number, so ORT cases with align_corners / tf_crop_and_resize keep it so,
and the non-integer ones are checked against the reference evaluator instead.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.backend.test.case.node as onnx_cases
import onnx.backend.test.case.node.resize
import onnx.backend.test.case.node.upsample  # registers the Upsample cases
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from tests.parity import assert_matches_ort, single_op_model, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm import UnsupportedModel

rng = np.random.default_rng(0)


def rand(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def resize_model(x: np.ndarray, scales: list[float] | None = None, sizes: list[int] | None = None,
                 roi: list[float] | None = None, opset: int = 19, **attrs: object) -> onnx.ModelProto:
    constants = {"roi": np.array(roi or [], np.float32), "scales": np.array(scales or [], np.float32)}
    if sizes is not None:
        constants["sizes"] = np.array(sizes, np.int64)
    return single_op_model("Resize", {"x": x}, constants=constants, opset=opset, **attrs)


def resize_case(shape: tuple[int, ...], **kwargs: object) -> None:
    x = rand(*shape)
    assert_matches_ort(resize_model(x, **kwargs), {"x": x})  # type: ignore[arg-type]


# ---------------------------------------------------------------- ONNX's backend cases

def _backend_cases() -> list[onnx_cases.TestCase]:
    return [case for case in onnx_cases._NodeTestCases
            if case.name.startswith(("test_resize_", "test_upsample_")) and not case.name.endswith("_expanded")]


@pytest.mark.parametrize("case", _backend_cases(), ids=lambda case: case.name)
def test_onnx_backend_cases_with_constant_inputs(case: onnx_cases.TestCase) -> None:
    """Every Resize/Upsample case of ONNX's suite, its scales/sizes/roi made initializers (the
    conformance run feeds them at run time, which the kernel declines)."""
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    inputs, outputs = case.data_sets[0]
    graph = model.graph
    for value, array in list(zip(graph.input, inputs, strict=True))[1:]:
        graph.initializer.append(numpy_helper.from_array(array, value.name))
    feeds = {graph.input[0].name: inputs[0]}
    got = wasm_run(model, feeds)[0]
    assert got.shape == outputs[0].shape
    np.testing.assert_allclose(got, outputs[0], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- against ONNX Runtime

@pytest.mark.parametrize("coordinate", ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "asymmetric",
                                        "align_corners"])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("scales", [[1, 1, 2, 2], [1, 1, 0.5, 1.5], [1, 1, 1.75, 0.6], [1, 1, 3, 1]])
def test_modes_and_coordinates(coordinate: str, mode: str, scales: list[float]) -> None:
    shape = (1, 2, 4, 5)
    if coordinate == "align_corners" and any(not float(s * n).is_integer() for s, n in zip(scales, shape, strict=True)):
        scales = [1, 1, 2.5, 0.4]  # ORT's align_corners needs whole scale * length (see the module doc)
    resize_case(shape, scales=scales, mode=mode, coordinate_transformation_mode=coordinate)


@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
@pytest.mark.parametrize("coordinate,sizes", [("half_pixel", [1, 1, 7, 3]), ("asymmetric", [1, 1, 9, 12]),
                                              ("align_corners", [1, 1, 3, 8]), ("pytorch_half_pixel", [1, 1, 1, 5])])
def test_nearest_modes_with_sizes(nearest_mode: str, coordinate: str, sizes: list[int]) -> None:
    resize_case((1, 1, 5, 6), sizes=sizes, mode="nearest", nearest_mode=nearest_mode,
                coordinate_transformation_mode=coordinate)


@pytest.mark.parametrize("shape,scales", [
    ((3, 7), [1, 2]),  # the innermost repeat: four inputs, eight outputs per shuffle, then a tail
    ((2, 3, 9), [1, 1, 3]),  # repeat by 3: one splat, three stores
    ((2, 2, 3, 5), [1, 1, 2, 5]),  # repeat by 5: a v128 and a lane store per input
    ((1, 3, 6, 10), [1, 1, 2, 2]),  # 2x on both axes: row copies after the innermost repeat
    ((1, 1, 2, 3, 4), [1, 1, 2, 2, 2]),  # 3-D volumes
    ((2, 3, 4), [2, 1, 1]),  # the outermost axis: whole-block copies
])
def test_nearest_integer_upscale(shape: tuple[int, ...], scales: list[float]) -> None:
    resize_case(shape, scales=scales, mode="nearest", coordinate_transformation_mode="asymmetric",
                nearest_mode="floor")
    resize_case(shape, scales=scales, mode="nearest")


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.float16])
def test_nearest_moves_any_dtype(dtype: type) -> None:
    """Bit-for-bit moves; ONNX Runtime has no int64 or float16 Resize, so those go by the reference."""
    x = rng.integers(0, 100, (1, 2, 3, 5)).astype(dtype)
    for scales in ([1, 1, 2, 2], [1, 1, 1.5, 0.7], [1, 1, 1, 3]):
        model = resize_model(x, scales=scales, mode="nearest")
        if dtype in (np.uint8, np.int32):
            assert_matches_ort(model, {"x": x})
            continue
        got, want = wasm_run(model, {"x": x})[0], ReferenceEvaluator(model).run(None, {"x": x})[0]
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("scales", [[1, 1, 2, 3], [1, 1, 0.6, 1.5]])
def test_tf_half_pixel_for_nn(scales: list[float]) -> None:
    resize_case((1, 2, 5, 7), scales=scales, opset=11, mode="nearest",
                coordinate_transformation_mode="tf_half_pixel_for_nn")


@pytest.mark.parametrize("shape,scales,mode", [
    ((2, 3, 5), [1, 1, 1.6], "linear"),
    ((3, 5, 4), [1, 0.6, 2], "linear"),
    ((2, 2, 4, 3, 5), [1, 1, 2, 1.5, 0.8], "linear"),
    ((1, 1, 9, 10), [1, 1, 0.5, 0.3], "linear"),
    ((1, 1, 9, 10), [1, 1, 0.5, 0.3], "cubic"),
    ((2, 3, 6), [1, 1, 0.5], "nearest"),
])
def test_ranks_and_downscales(shape: tuple[int, ...], scales: list[float], mode: str) -> None:
    resize_case(shape, scales=scales, mode=mode)


def test_cubic_coefficient_and_exclude_outside() -> None:
    resize_case((1, 2, 5, 7), scales=[1, 1, 1.6, 0.7], mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1)
    resize_case((1, 2, 5, 7), scales=[1, 1, 2, 2], mode="cubic", cubic_coeff_a=-0.6,
                coordinate_transformation_mode="asymmetric")


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("scales", [[1, 1, 0.6, 0.5], [1, 1, 0.3, 2.0]])
def test_antialias(mode: str, scales: list[float]) -> None:
    resize_case((1, 2, 10, 9), scales=scales, mode=mode, antialias=1)


@pytest.mark.parametrize("policy,sizes,axes", [("stretch", [9, 4], [2, 3]), ("not_larger", [9, 4], [2, 3]),
                                               ("not_smaller", [9, 4], [3, 2]), ("stretch", [3], [-1])])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_axes_and_aspect_policy(policy: str, sizes: list[int], axes: list[int], mode: str) -> None:
    resize_case((1, 2, 5, 7), sizes=sizes, axes=axes, keep_aspect_ratio_policy=policy, mode=mode)


def test_scales_with_axes() -> None:
    resize_case((1, 2, 5, 7), scales=[2.5, 0.5], axes=[3, 2], mode="nearest", nearest_mode="ceil")
    resize_case((1, 2, 5, 7), scales=[1.5, 0.8], axes=[2, 3], mode="linear")


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("roi,extrapolation", [([0, 0, 0.35, 0.55, 1, 1, 1.15, 0.95], 10.0),
                                               ([0, 0, -0.1, 0.2, 1, 1, 0.8, 1.4], 0.0)])
def test_tf_crop_and_resize(mode: str, roi: list[float], extrapolation: float) -> None:
    resize_case((1, 2, 5, 6), sizes=[1, 2, 3, 4], roi=roi, mode=mode, extrapolation_value=extrapolation,
                coordinate_transformation_mode="tf_crop_and_resize")


@pytest.mark.parametrize("opset,op,scales,mode", [
    (10, "Resize", [1, 1, 2, 2], "nearest"), (10, "Resize", [1, 1, 0.5, 0.7], "nearest"),
    (10, "Resize", [1, 1, 2.5, 1.3], "linear"), (10, "Resize", [1, 1, 0.6, 0.5], "linear"),
    (9, "Upsample", [1, 1, 2, 3], "nearest"), (9, "Upsample", [1, 1, 2.5, 1.5], "nearest"),
    (9, "Upsample", [1, 1, 2.5, 1.5], "linear"),
])
def test_resize_10_and_upsample(opset: int, op: str, scales: list[float], mode: str) -> None:
    x = rand(1, 2, 5, 7)
    model = single_op_model(op, {"x": x}, constants={"scales": np.array(scales, np.float32)}, opset=opset, mode=mode)
    assert_matches_ort(model, {"x": x})


def test_identity_is_a_copy() -> None:
    resize_case((1, 2, 3, 4), scales=[1, 1, 1, 1], mode="linear")


@pytest.mark.parametrize("attrs", [
    {"scales": [1, 1, 1.7], "mode": "linear", "coordinate_transformation_mode": "align_corners"},
    {"scales": [1, 2.5, 1.5], "mode": "nearest", "coordinate_transformation_mode": "tf_crop_and_resize",
     "roi": [0, 0.1, -0.2, 1, 0.8, 1.3]},
])
def test_spec_where_ort_differs(attrs: dict[str, object]) -> None:
    """Non-integer scale * length: ONNX Runtime uses the integer output length, the spec the real one."""
    x = rand(2, 5, 7)
    model = resize_model(x, **attrs)  # type: ignore[arg-type]
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(wasm_run(model, {"x": x})[0], want, rtol=1e-4, atol=1e-5)


def test_declines_what_it_cannot_compute() -> None:
    x = rand(1, 1, 4, 4)
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear")
    graph = helper.make_graph([node], "r", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape),
                                            helper.make_tensor_value_info("s", onnx.TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 1, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(UnsupportedModel, match="scales must be a compile-time constant"):
        convert_onnx(model)
    ints = rng.integers(0, 9, (1, 1, 4, 4)).astype(np.int32)
    with pytest.raises(UnsupportedModel, match="linear mode supports float32 only"):
        convert_onnx(resize_model(ints, scales=[1, 1, 2, 2], mode="linear"))
