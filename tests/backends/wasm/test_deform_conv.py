"""DeformConv (emitters/deform_conv.py) against ONNX Runtime: with and without mask and bias, groups and offset
groups, strides, pads and dilations, odd sizes, offsets reaching outside the input; zero offsets are a plain
Conv; the refusals."""

from __future__ import annotations

import numpy as np
import pytest

from tests.parity import assert_matches_ort, single_op_model, wasm_run
from wasinfer.backends.wasm.compiler import UnsupportedModel

rng = np.random.default_rng(19)

CASES = [  # channels, out channels, group, offset_group, kernel, strides, pads, dilations, mask, bias
    (2, 3, 1, 1, (2, 2), (1, 1), (0, 0, 0, 0), (1, 1), False, False),
    (4, 6, 2, 2, (3, 3), (2, 1), (1, 1, 1, 0), (1, 2), True, True),
    (3, 3, 3, 1, (1, 2), (1, 1), (0, 1, 0, 1), (1, 1), True, False),
    (6, 4, 1, 3, (3, 2), (1, 2), (2, 0, 1, 1), (2, 1), False, True),
    (1, 5, 1, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), True, True),
]


def _feeds(case: tuple, reach: float) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    channels, out_channels, group, offset_group, kernel, strides, pads, dilations, mask, bias = case
    height, width = 7, 6
    out_h = (height + pads[0] + pads[2] - dilations[0] * (kernel[0] - 1) - 1) // strides[0] + 1
    out_w = (width + pads[1] + pads[3] - dilations[1] * (kernel[1] - 1) - 1) // strides[1] + 1
    feeds = {"x": rng.standard_normal((2, channels, height, width)).astype(np.float32),
             "w": rng.standard_normal((out_channels, channels // group, *kernel)).astype(np.float32),
             "offset": (rng.standard_normal((2, offset_group * 2 * kernel[0] * kernel[1], out_h, out_w))
                        * reach).astype(np.float32)}
    if bias or mask:
        feeds["b"] = rng.standard_normal(out_channels).astype(np.float32) if bias else np.zeros(out_channels,
                                                                                                   np.float32)
    if mask:
        feeds["mask"] = rng.random((2, offset_group * kernel[0] * kernel[1], out_h, out_w)).astype(np.float32)
    attrs = {"group": group, "offset_group": offset_group, "kernel_shape": list(kernel), "strides": list(strides),
             "pads": list(pads), "dilations": list(dilations)}
    return feeds, attrs


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("reach", [0.7, 4.0])
def test_deform_conv_matches_ort(case: tuple, reach: float) -> None:
    feeds, attrs = _feeds(case, reach)
    model = single_op_model("DeformConv", feeds, opset=19, **attrs)
    assert_matches_ort(model, feeds, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_zero_offsets_without_mask_are_a_conv(case: tuple) -> None:
    feeds, attrs = _feeds(case, 0.0)
    feeds.pop("mask", None)
    model = single_op_model("DeformConv", feeds, opset=19, **attrs)
    conv_feeds = {k: v for k, v in feeds.items() if k != "offset"}
    conv = single_op_model("Conv", conv_feeds, opset=19, **{k: v for k, v in attrs.items() if k != "offset_group"})
    np.testing.assert_allclose(wasm_run(model, feeds)[0], wasm_run(conv, conv_feeds)[0], rtol=1e-5, atol=1e-5)


def test_unsupported_ranks_and_dtypes_are_refused_by_name() -> None:
    x = rng.standard_normal((1, 2, 9)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3)).astype(np.float32)
    offset = rng.standard_normal((1, 6, 7)).astype(np.float32)
    model = single_op_model("DeformConv", {"x": x, "w": w, "offset": offset}, opset=19)
    with pytest.raises(UnsupportedModel, match=r"'DeformConv_0'.*only 2-D DeformConv"):
        wasm_run(model, {"x": x, "w": w, "offset": offset})
