"""Resize and Upsample whose scales, sizes or roi each run gives (emitters/resize_run_time.py): ONE module, compiled
with the values' range declared (--input-values), against ONNX Runtime — or ONNX's reference evaluator where ORT
places samples by the integer output length (align_corners, tf_crop_and_resize and half_pixel_symmetric at
non-integer products, as tests/backends/wasm/test_resize.py explains) — at several values, so nothing is bound.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from tests.parity import ort_run
from wasinfer.artifact import convert_onnx
from wasinfer.cli.main import main
from wasinfer.ir import UnsupportedModel
from wasinfer.runtime import WasmModel
from wasinfer.runtime.base import InputError, ModelFault
from wasinfer.runtime.onnx_backend import WasinferBackend

rng = np.random.default_rng(14)
SCALES = (0.25, 4.0)  # the declared range: memory is planned for 4x on every resized axis


def resize(x_shape: tuple[int, ...], parameter: str, count: int, opset: int = 19, op: str = "Resize",
           dtype: int = TensorProto.FLOAT, roi: bool = False, declared: list[int] | None = None,
           **attrs: object) -> onnx.ModelProto:
    """One Resize (or Upsample) whose `parameter` ("scales" or "sizes", and the roi with `roi`) is a graph input;
    the output's shape left to the compiler, as a model exported with run-time scales declares none (or
    `declared`, one example's, as ONNX's backend cases declare it)."""
    kind = TensorProto.INT64 if parameter == "sizes" else TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("x", dtype, list(x_shape)),
              helper.make_tensor_value_info(parameter, kind, [count])]
    if op == "Upsample" or opset < 11:
        names = ["x", parameter]
    else:
        names = ["x", "roi" if roi else "", parameter if parameter == "scales" else "", "sizes" if parameter == "sizes"
                 else ""]
        names = names[:4] if parameter == "sizes" else names[:3]
        if roi:
            inputs.append(helper.make_tensor_value_info("roi", TensorProto.FLOAT, [2 * count]))
    node = helper.make_node(op, names, ["y"], **attrs)
    graph = helper.make_graph([node], op, inputs, [helper.make_tensor_value_info("y", dtype, declared)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def compiled(model: onnx.ModelProto, **ranges: tuple[float, float]) -> WasmModel:
    return WasmModel(convert_onnx(model, input_values=dict(ranges)).wasm)


def check(module: WasmModel, model: onnx.ModelProto, feeds: dict[str, np.ndarray], by_reference: bool = False,
          atol: float = 1e-5) -> None:
    want = (ReferenceEvaluator(model).run(None, feeds)[0] if by_reference else ort_run(model, feeds)[0])
    got = module.run(feeds)["y"]
    assert got.shape == want.shape, f"{ {k: v.tolist() for k, v in feeds.items() if k != 'x'} }: {got.shape}"
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=atol, err_msg=str(feeds.get("scales", feeds.get("sizes"))))


@pytest.mark.parametrize(("mode", "coordinate"), [
    ("nearest", "half_pixel"), ("nearest", "asymmetric"), ("linear", "half_pixel"), ("linear", "asymmetric"),
    ("linear", "pytorch_half_pixel"), ("cubic", "half_pixel"), ("cubic", "asymmetric"),
    ("linear", "align_corners"), ("cubic", "align_corners"), ("linear", "half_pixel_symmetric")])
def test_one_module_serves_every_scale(mode: str, coordinate: str) -> None:
    """Upscales, downscales, fractional and mixed scales, and 1 (identity), all through one module."""
    model = resize((2, 3, 5, 6), "scales", 4, mode=mode, coordinate_transformation_mode=coordinate)
    module = compiled(model, scales=SCALES)
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    by_reference = coordinate in ("align_corners", "half_pixel_symmetric")
    for scales in ([1, 1, 2, 2], [1, 1, 0.5, 0.75], [1, 1, 3, 1.5], [1, 1, 1, 1], [1, 1, 0.4, 4], [1, 1, 1.7, 0.6]):
        check(module, model, {"x": x, "scales": np.array(scales, np.float32)}, by_reference)


@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
def test_nearest_modes_move_any_dtype(nearest_mode: str) -> None:
    """Nearest moves elements bit for bit: uint8 through the same kernel, at several scales. By the reference, as
    the static kernel is: at 0.6 ORT rounds x = 1.5 / 0.6 - 0.5 in float32 to 2.0, the spec's float64 to just
    under it (floor: 1)."""
    model = resize((1, 2, 4, 5), "scales", 4, dtype=TensorProto.UINT8, mode="nearest", nearest_mode=nearest_mode)
    module = compiled(model, scales=SCALES)
    x = rng.integers(0, 255, (1, 2, 4, 5), dtype=np.uint8)
    for scales in ([1, 1, 2, 3], [1, 1, 0.6, 0.5], [1, 1, 1.5, 2.5]):
        feeds = {"x": x, "scales": np.array(scales, np.float32)}
        np.testing.assert_array_equal(module.run(feeds)["y"], ReferenceEvaluator(model).run(None, feeds)[0])


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_antialias_widens_the_filter_by_each_runs_scale(mode: str) -> None:
    model = resize((1, 1, 12, 16), "scales", 4, mode=mode, antialias=1)
    module = compiled(model, scales=SCALES)
    x = rng.standard_normal((1, 1, 12, 16)).astype(np.float32)
    for scales in ([1, 1, 0.5, 0.25], [1, 1, 0.75, 0.3], [1, 1, 2, 1]):
        check(module, model, {"x": x, "scales": np.array(scales, np.float32)}, by_reference=True)


def test_cubic_coefficient_and_exclude_outside() -> None:
    model = resize((1, 1, 6, 6), "scales", 4, mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1)
    module = compiled(model, scales=SCALES)
    x = rng.standard_normal((1, 1, 6, 6)).astype(np.float32)
    for scales in ([1, 1, 0.8, 0.8], [1, 1, 1.5, 2], [1, 1, 0.5, 3]):
        check(module, model, {"x": x, "scales": np.array(scales, np.float32)})


@pytest.mark.parametrize(("policy", "axes"), [("stretch", None), ("not_larger", [2, 3]), ("not_smaller", [2, 3]),
                                              ("stretch", [3, 1])])
def test_run_time_sizes_with_aspect_policy_and_axes(policy: str, axes: list[int] | None) -> None:
    """sizes declared 1..16: each run's sizes set the output dims, the policy's common scale rounds them."""
    count = 4 if axes is None else len(axes)
    attrs: dict[str, object] = {"mode": "linear", "keep_aspect_ratio_policy": policy}
    if axes is not None:
        attrs["axes"] = axes
    model = resize((1, 2, 4, 6), "sizes", count, opset=19, **attrs)
    module = compiled(model, sizes=(1, 16))
    x = rng.standard_normal((1, 2, 4, 6)).astype(np.float32)
    full = {None: ([1, 2, 8, 3], [1, 2, 2, 12], [1, 2, 4, 6]), (2, 3): ([8, 8], [3, 16], [2, 2]),
            (3, 1): ([9, 1], [2, 2], [16, 3])}[None if axes is None else tuple(axes)]
    for sizes in full:
        check(module, model, {"x": x, "sizes": np.array(sizes, np.int64)}, by_reference=True)


@pytest.mark.parametrize("mode", ["linear", "nearest"])
def test_tf_crop_and_resize_with_run_time_roi_and_sizes(mode: str) -> None:
    model = resize((1, 1, 5, 5), "sizes", 2, roi=True, axes=[2, 3], mode=mode,
                   coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=10.0)
    module = compiled(model, sizes=(1, 12), roi=(-2, 2))
    x = rng.standard_normal((1, 1, 5, 5)).astype(np.float32)
    for roi, sizes in (([0.4, 0.6, 0.6, 0.8], [3, 3]), ([-0.5, 0.0, 1.5, 1.2], [7, 4]), ([0, 0, 1, 1], [5, 5])):
        feeds = {"x": x, "roi": np.array(roi, np.float32), "sizes": np.array(sizes, np.int64)}
        check(module, model, feeds, by_reference=True)


@pytest.mark.parametrize(("op", "opset"), [("Upsample", 9), ("Resize", 10)])
def test_upsample_and_resize_10_take_run_time_scales(op: str, opset: int) -> None:
    """Their nearest rounds as ONNX Runtime does (floor up, ceil down): checked against it."""
    model = resize((1, 2, 3, 4), "scales", 4, opset=opset, op=op, mode="nearest")
    module = compiled(model, scales=(1, 4))
    x = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
    for scales in ([1, 1, 2, 2], [1, 1, 2, 3], [1, 2, 1, 1.5]):
        check(module, model, {"x": x, "scales": np.array(scales, np.float32)})


def test_a_value_outside_the_declared_range_is_refused_naming_the_input() -> None:
    model = resize((1, 1, 2, 2), "scales", 4, mode="linear")
    module = compiled(model, scales=(0.5, 4))
    x = np.ones((1, 1, 2, 2), np.float32)
    for bad in ([1, 1, 5, 2], [1, 1, 0.25, 1], [1, 1, np.nan, 1]):
        with pytest.raises(InputError, match=r"input 'scales': its values must lie in 0.5..4"):
            module.run({"x": x, "scales": np.array(bad, np.float32)})
    assert module.run({"x": x, "scales": np.array([1, 1, 4, 4], np.float32)})["y"].shape == (1, 1, 8, 8)


def test_undeclared_run_time_scales_are_refused_saying_how_to_declare_them() -> None:
    with pytest.raises(UnsupportedModel, match=r"scales must be a compile-time constant, or .*--input-values"):
        convert_onnx(resize((1, 1, 2, 2), "scales", 4, mode="linear", declared=[1, 1, 4, 4]))


def test_declared_values_read_as_data_elsewhere_are_refused() -> None:
    """A float range only serves inputs that kernels read; one also read as data is refused by node."""
    model = resize((1, 1, 2, 2), "scales", 4, mode="linear")
    model.graph.node.append(helper.make_node("Neg", ["scales"], ["z"]))
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    with pytest.raises(UnsupportedModel, match=r"--input-values scales: .*node 'Neg_1' \(Neg\) reads it as input 0"):
        convert_onnx(model, input_values={"scales": (0.5, 4.0)})


def test_the_backend_compiles_run_time_scales_once() -> None:
    """The ONNX backend declares its fixed range for the scales: one module for every case's values, nothing
    bound (the conformance doc's `bound` column)."""
    model = resize((1, 1, 4, 4), "scales", 4, mode="cubic")
    rep = WasinferBackend.prepare(model)
    assert rep.valued == {"scales"} and not rep.bound
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    for scales in ([1, 1, 0.8, 0.8], [1, 1, 2, 3], [1, 1, 1.5, 0.5]):
        feeds = {"x": x, "scales": np.array(scales, np.float32)}
        np.testing.assert_allclose(rep.run(feeds)[0], ort_run(model, feeds)[0], rtol=1e-4, atol=1e-5)
    assert len(rep.modules) == 1 and not rep.by_value


def test_the_command_line_declares_float_scales_and_validate_draws_them(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`--input-values scales=0.5..2` from the command line; validate's random scales stay inside that range (a
    standard normal draw would be refused) and the module matches ONNX Runtime on them."""
    onnx.save(resize((1, 3, 4, 4), "scales", 4, mode="nearest"), tmp_path / "resize.onnx")
    assert main(["convert", str(tmp_path / "resize.onnx"), "--input-values", "scales=0.5..2"]) == 0
    capsys.readouterr()
    assert main(["validate", str(tmp_path / "resize.wasm"), "--reference", str(tmp_path / "resize.onnx"),
                 "--samples", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and all(check["ok"] for check in report["checks"])


@pytest.mark.parametrize(("mode", "coordinate", "extra"), [
    ("linear", "half_pixel_symmetric", {}), ("cubic", "half_pixel_symmetric", {"antialias": 1}),
    ("nearest", "half_pixel", {"nearest_mode": "round_prefer_ceil"}), ("cubic", "pytorch_half_pixel", {}),
    ("linear", "align_corners", {"exclude_outside": 1}), ("nearest", "asymmetric", {"nearest_mode": "floor"})])
def test_run_time_scales_give_what_the_static_kernel_gives(mode: str, coordinate: str,
                                                           extra: dict[str, object]) -> None:
    """The run-time kernel picks the taps as ONNX's reference does, as the static kernel's tables hold them, also
    where a coordinate is a rounding away from a whole number (7 -> 9 at 1.4036785 with half_pixel_symmetric: x =
    3.0000000000000004, whose neighbours the reference takes as 2 and 3): against a module compiled with each
    scale as a constant, and the reference."""
    model = resize((2, 3, 5, 7), "scales", 4, mode=mode, coordinate_transformation_mode=coordinate, **extra)
    module = compiled(model, scales=SCALES)
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    draws = np.random.default_rng(21).uniform(0.3, 3.5, (3, 2))
    for scales in ([1, 1, 1, 1.4036785364151], *([1, 1, *pair] for pair in draws)):
        s = np.array(scales, np.float32)
        static = onnx.ModelProto()
        static.CopyFrom(model)
        del static.graph.input[1]
        static.graph.initializer.append(onnx.numpy_helper.from_array(s, "scales"))
        want = WasmModel(convert_onnx(static).wasm).run({"x": x})["y"]
        got = module.run({"x": x, "scales": s})["y"]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=str(scales))
        check(module, model, {"x": x, "scales": s}, by_reference=True)


def test_undeclared_run_time_sizes_must_be_the_declared_output_shape() -> None:
    """Without a declared range, run-time sizes are read from the model's static output shape (as ONNX's backend
    cases declare it): a run whose sizes differ traps, where it silently got that shape's output."""
    model = resize((1, 1, 2, 2), "sizes", 4, mode="nearest", declared=[1, 1, 4, 4])
    module = WasmModel(convert_onnx(model).wasm)
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    feeds = {"x": x, "sizes": np.array([1, 1, 4, 4], np.int64)}
    np.testing.assert_array_equal(module.run(feeds)["y"], ort_run(model, feeds)[0])
    with pytest.raises(ModelFault, match="unreachable"):
        module.run({"x": x, "sizes": np.array([1, 1, 6, 6], np.int64)})
