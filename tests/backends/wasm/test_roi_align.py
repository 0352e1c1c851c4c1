"""RoiAlign (emitters/roi_align.py) against ONNX Runtime: avg and max, both coordinate modes (and opset 10's
default), fixed and adaptive sampling, regions inside, across and outside the map, empty and inverted ones,
int32 batch indices, and the refusals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.parity import assert_matches_ort, single_op_model, wasm_run
from wasinfer.backends.wasm.compiler import UnsupportedModel
from wasinfer.runtime import ModelFault

rng = np.random.default_rng(10)
X = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
ROIS = np.array([[0, 0, 8, 10], [1.5, 2.2, 6.1, 7.7], [-3, -2, 15, 20], [4, 4, 4, 4], [7, 3, 2, 1],
                 [10.5, 8.5, 12, 9.9], [-9, -9, -5, -6], [0.2, 0.3, 30.7, 21.1]], np.float32)
BATCH = np.array([0, 1, 1, 0, 1, 0, 1, 0], np.int64)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(("mode", "coordinates", "ratio", "scale"),
                         list(itertools.product(["avg", "max"], ["half_pixel", "output_half_pixel"], [0, 1, 3],
                                                [1.0, 0.5])))
def test_roi_align_matches_ort(mode: str, coordinates: str, ratio: int, scale: float) -> None:
    feeds = {"x": X, "rois": ROIS, "batch": BATCH}
    model = single_op_model("RoiAlign", feeds, opset=16, mode=mode, coordinate_transformation_mode=coordinates,
                            sampling_ratio=ratio, spatial_scale=scale, output_height=3, output_width=5)
    assert_matches_ort(model, feeds, rtol=1e-5, atol=1e-6)


def test_opset_10_pools_with_output_half_pixel_coordinates() -> None:
    """Opset 10 has no coordinate_transformation_mode; its regions are output_half_pixel's."""
    feeds = {"x": X, "rois": ROIS, "batch": BATCH}
    model = single_op_model("RoiAlign", feeds, opset=10, output_height=2, output_width=2, spatial_scale=0.7)
    assert_matches_ort(model, feeds, rtol=1e-5, atol=1e-6)
    explicit = single_op_model("RoiAlign", feeds, opset=16, output_height=2, output_width=2, spatial_scale=0.7,
                               coordinate_transformation_mode="output_half_pixel")
    np.testing.assert_array_equal(wasm_run(model, feeds)[0], wasm_run(explicit, feeds)[0])


def test_int32_batch_indices_pool_as_int64_ones() -> None:
    feeds = {"x": X, "rois": ROIS, "batch": BATCH}
    model = single_op_model("RoiAlign", feeds, opset=16, output_height=4, output_width=3)
    narrow = {**feeds, "batch": BATCH.astype(np.int32)}
    model32 = single_op_model("RoiAlign", narrow, opset=16, output_height=4, output_width=3)
    np.testing.assert_array_equal(wasm_run(model32, narrow)[0], wasm_run(model, feeds)[0])


def test_a_batch_index_outside_the_input_traps() -> None:
    feeds = {"x": X, "rois": ROIS[:2], "batch": np.array([0, 2], np.int64)}
    model = single_op_model("RoiAlign", feeds, opset=16)
    with pytest.raises(ModelFault, match="unreachable"):
        wasm_run(model, feeds)


def test_unsupported_attributes_are_refused_by_name() -> None:
    feeds = {"x": X, "rois": ROIS, "batch": BATCH}
    model = single_op_model("RoiAlign", feeds, opset=16, coordinate_transformation_mode="align_corners")
    with pytest.raises(UnsupportedModel, match=r"'RoiAlign_0'.*coordinate_transformation_mode 'align_corners'"):
        wasm_run(model, feeds)
    model = single_op_model("RoiAlign", feeds, opset=16, mode="sum")
    with pytest.raises(UnsupportedModel, match="mode 'sum'"):
        wasm_run(model, feeds)
