"""CenterCropPad lowered to Slice and Pad (passes/crop.py): against ONNX Runtime on odd and even differences,
crops and pads on different axes of one tensor, listed and negative axes, every whole-byte dtype; the window
arithmetic itself; a shape computed at run time refused by name, and one whose values are declared served by one
module."""

from __future__ import annotations

import numpy as np
import pytest

from tests.parity import assert_matches_ort, ort_run, single_op_model, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm.compiler import UnsupportedModel
from wasinfer.frontends import load_onnx
from wasinfer.ir.symbolic import evaluate, symbol
from wasinfer.passes.crop import center_window, centre_pads, lower_crops
from wasinfer.runtime import WasmModel
from wasinfer.runtime.base import InputError

rng = np.random.default_rng(18)


def test_center_window_keeps_the_extra_element_after_the_centre() -> None:
    assert center_window(8, 5) == (1, 0, 0)  # crop 3: one before, two after
    assert center_window(8, 6) == (1, 0, 0)
    assert center_window(5, 8) == (0, 1, 2)  # pad 3: one before, two after
    assert center_window(5, 5) == (0, 0, 0)


@pytest.mark.parametrize(("shape", "axes"), [([3, 11, 3], None), ([6, 5], [0, 1]), ([4, 9], [-1, 0]),
                                             ([5, 8, 3], None), ([1, 1, 1], None), ([10, 2, 7], None)])
def test_center_crop_pad_matches_ort(shape: list[int], axes: list[int] | None) -> None:
    x = rng.standard_normal((5, 8, 3)).astype(np.float32)
    attrs = {} if axes is None else {"axes": axes}
    model = single_op_model("CenterCropPad", {"x": x}, constants={"shape": np.array(shape, np.int64)}, opset=18,
                            **attrs)
    assert_matches_ort(model, {"x": x}, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8, np.int32, np.float64, np.bool_])
def test_center_crop_pad_moves_any_dtype_the_kernels_move(dtype: type) -> None:
    x = (rng.standard_normal((2, 7, 6)) * 50).astype(dtype)
    model = single_op_model("CenterCropPad", {"x": x}, constants={"shape": np.array([4, 9], np.int64)}, opset=18,
                            axes=[1, 2])
    want = np.zeros((2, 4, 9), dtype)
    want[:, :, 1:7] = x[:, 1:5, :]
    got = wasm_run(model, {"x": x})[0]
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("shape", "ops"), [([3, 10], ["Slice", "Pad"]), ([3, 8], ["Slice"]), ([5, 10], ["Pad"]),
                                            ([5, 8], ["Identity"])])
def test_the_lowering_is_a_slice_and_a_pad_where_each_is_needed(shape: list[int], ops: list[str]) -> None:
    x = rng.standard_normal((5, 8)).astype(np.float32)
    model = single_op_model("CenterCropPad", {"x": x}, constants={"shape": np.array(shape, np.int64)}, opset=18)
    graph = load_onnx(model).graph
    assert lower_crops(graph) == 1
    assert [n.op_type for n in graph.nodes] == ops
    assert graph.info("y0").shape == tuple(shape)


def test_a_shape_computed_at_run_time_is_refused_by_name() -> None:
    x = rng.standard_normal((5, 8)).astype(np.float32)
    shape = np.array([3, 10], np.int64)
    model = single_op_model("CenterCropPad", {"x": x, "shape": shape}, opset=18)
    with pytest.raises(UnsupportedModel, match=r"CenterCropPad.*its shape 'shape' is computed at run time"):
        wasm_run(model, {"x": x, "shape": shape})


def test_centre_pads_are_the_centre_window_for_every_target() -> None:
    """The symbolic pads evaluated at each target give the static lowering's window: a crop's start as a negative
    begin pad, a pad's split with the extra element after the centre."""
    target = symbol("t")
    begin, end = centre_pads(7, target)
    for t in range(0, 16):
        start, before, after = center_window(7, t)  # a crop: `start` off the front, the rest off the back
        assert (evaluate(begin, {"t": t}), evaluate(end, {"t": t})) == (before - start,
                                                                        after - (7 - start - min(t, 7)))
        assert evaluate(begin, {"t": t}) + 7 + evaluate(end, {"t": t}) == t


@pytest.mark.parametrize("axes", [None, [2, 0], [-1]])
def test_a_declared_shape_serves_every_target_from_one_module(axes: list[int] | None) -> None:
    """The shape an input, its values declared 0..12: one module crops, pads or both on each axis as each run asks,
    odd and even differences, as ONNX Runtime does (it was refused, and the backend suite's cases bound it); a value
    outside the range is refused naming the input."""
    x = rng.standard_normal((5, 8, 3)).astype(np.float32)
    count = 3 if axes is None else len(axes)
    attrs = {} if axes is None else {"axes": axes}
    model = single_op_model("CenterCropPad", {"x": x, "shape": np.zeros(count, np.int64)}, opset=18, **attrs)
    module = WasmModel(convert_onnx(model, input_values={"shape": (0, 12)}).wasm)
    targets = {3: [[3, 11, 3], [12, 1, 6], [5, 8, 3], [0, 7, 4], [10, 12, 1]], 2: [[4, 9], [12, 1], [5, 3], [0, 2]],
               1: [[1], [12], [3], [0]]}
    for target in targets[count]:
        feeds = {"x": x, "shape": np.array(target, np.int64)}
        got, want = module.run(feeds)["y0"], ort_run(model, feeds)[0]
        assert got.shape == want.shape, (target, got.shape, want.shape)
        np.testing.assert_array_equal(got, want)
    with pytest.raises(InputError, match=r"input 'shape': its values must lie in 0..12"):
        module.run({"x": x, "shape": np.array([13] * count, np.int64)})
