"""CenterCropPad lowered to Slice and Pad (passes/crop.py): against ONNX Runtime on odd and even differences,
crops and pads on different axes of one tensor, listed and negative axes, every whole-byte dtype; the window
arithmetic itself; a shape computed at run time refused by name."""

from __future__ import annotations

import numpy as np
import pytest

from tests.parity import assert_matches_ort, single_op_model, wasm_run
from wasinfer.backends.wasm.compiler import UnsupportedModel
from wasinfer.frontends import load_onnx
from wasinfer.passes.crop import center_window, lower_crops

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
