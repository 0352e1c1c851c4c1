"""Det (emitters/det.py) against ONNX Runtime and float64 numpy: stacks of odd-sized matrices, 1x1 and empty
ones, matrices that need row swaps, singular ones (exactly 0), and a float64 input refused (ONNX's shape
inference already refuses a non-square one)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.parity import assert_matches_ort, single_op_model, wasm_run
from wasinfer.backends.wasm.compiler import UnsupportedModel

rng = np.random.default_rng(19)


@pytest.mark.parametrize("shape", [(3, 3), (2, 4, 5, 5), (1, 1), (6, 7, 7), (2, 0, 0), (3, 16, 16)])
def test_det_matches_ort_and_float64(shape: tuple[int, ...]) -> None:
    x = rng.standard_normal(shape).astype(np.float32)
    model = single_op_model("Det", {"x": x}, opset=13)
    assert_matches_ort(model, {"x": x}, rtol=1e-4, atol=1e-5)
    got = wasm_run(model, {"x": x})[0]
    np.testing.assert_allclose(got, np.linalg.det(x.astype(np.float64)), rtol=1e-4, atol=1e-4)


def test_a_zero_first_pivot_swaps_rows_and_flips_the_sign() -> None:
    x = np.array([[[0, 2], [3, 4]]], np.float32)
    model = single_op_model("Det", {"x": x}, opset=13)
    np.testing.assert_array_equal(wasm_run(model, {"x": x})[0], [-6.0])
    permutation = np.eye(5, dtype=np.float32)[[4, 2, 0, 1, 3]] * 3  # det = sign(perm) * 3^5
    model = single_op_model("Det", {"x": permutation}, opset=13)
    np.testing.assert_allclose(wasm_run(model, {"x": permutation})[0], np.linalg.det(permutation), rtol=1e-6)


def test_singular_matrices_give_zero() -> None:
    x = np.array([[[1, 2, 3], [2, 4, 6], [1, 0, 1]], [[0, 0, 0], [1, 2, 3], [4, 5, 6]],
                  [[1, 1, 0], [1, 1, 0], [0, 0, 0]]], np.float32)
    model = single_op_model("Det", {"x": x}, opset=13)
    got = wasm_run(model, {"x": x})[0]
    np.testing.assert_array_equal(np.abs(got), [0, 0, 0])
    assert np.all(np.isfinite(got))


def test_a_float64_input_is_refused_by_name() -> None:
    doubles = rng.standard_normal((3, 3))
    model = single_op_model("Det", {"x": doubles}, opset=13)
    with pytest.raises(UnsupportedModel, match=r"'Det_0'.*only float32"):
        wasm_run(model, {"x": doubles})
