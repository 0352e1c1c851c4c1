"""MaxRoiPool (emitters/roi_pool.py) against ONNX Runtime: regions inside, across and outside the map, corners
at halves (rounded away from zero), one-pixel and inverted regions, scales, pooled shapes larger than a region;
a batch index outside the input traps."""

from __future__ import annotations

import numpy as np
import pytest

from tests.parity import assert_matches_ort, single_op_model, wasm_run
from wasinfer.runtime import ModelFault

rng = np.random.default_rng(5)
X = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
ROIS = np.array([[0, 0, 0, 10, 8], [1, 1.5, 2.5, 6.5, 7.5], [1, -3, -2, 15, 20], [0, 4, 4, 4, 4], [1, 7, 3, 2, 1],
                 [0, 10.5, 8.5, 12, 9.9], [1, -9, -9, -5, -6], [0, 0.2, 0.3, 30.7, 21.1], [1, -0.5, -1.5, 2.5, 3.5]],
                np.float32)


@pytest.mark.parametrize(("pooled", "scale"), [((3, 4), 1.0), ((2, 2), 0.5), ((7, 7), 1.0), ((1, 1), 0.25),
                                               ((5, 3), 2.0)])
def test_max_roi_pool_matches_ort(pooled: tuple[int, int], scale: float) -> None:
    feeds = {"x": X, "rois": ROIS}
    model = single_op_model("MaxRoiPool", feeds, opset=13, pooled_shape=list(pooled), spatial_scale=scale)
    assert_matches_ort(model, feeds, rtol=0, atol=0)


def test_a_batch_index_outside_the_input_traps() -> None:
    feeds = {"x": X, "rois": np.array([[2, 0, 0, 3, 3]], np.float32)}
    model = single_op_model("MaxRoiPool", feeds, opset=13, pooled_shape=[2, 2])
    with pytest.raises(ModelFault, match="unreachable"):
        wasm_run(model, feeds)
