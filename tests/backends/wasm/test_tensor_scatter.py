"""TensorScatter (emitters/tensor_scatter.py) against ONNX Runtime and ONNX's reference implementation: linear
and circular writes at per-sample indices, without indices (prefill), other axes, several dtypes; a linear write
past the cache traps; an unknown mode is refused."""

from __future__ import annotations

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

from tests.parity import assert_matches_ort, single_op_model, wasm_run
from wasinfer.backends.wasm.compiler import UnsupportedModel
from wasinfer.runtime import ModelFault

rng = np.random.default_rng(24)


def _assert_matches_reference(feeds: dict[str, np.ndarray], **attrs: object) -> None:
    """Bit for bit what ONNX's reference writes, and ONNX Runtime where it has the dtype."""
    model = single_op_model("TensorScatter", feeds, opset=24, **attrs)
    (want,) = ReferenceEvaluator(model).run(None, feeds)
    got = wasm_run(model, feeds)[0]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    if got.dtype in (np.float32, np.float16, np.int64):
        assert_matches_ort(model, feeds, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["linear", "circular"])
@pytest.mark.parametrize(("cache", "steps", "axis"), [((2, 3, 8, 5), 3, -2), ((3, 9, 4), 2, 1), ((2, 2, 6, 1, 3), 4, 2),
                                                       ((2, 7), 7, 1)])
def test_writes_each_samples_update_at_its_index(mode: str, cache: tuple[int, ...], steps: int, axis: int) -> None:
    length = cache[axis]
    update_shape = list(cache)
    update_shape[axis] = steps
    feeds = {"past": rng.standard_normal(cache).astype(np.float32),
             "update": rng.standard_normal(update_shape).astype(np.float32)}
    top = length - steps if mode == "linear" else 3 * length
    for indices in (np.zeros(cache[0], np.int64), rng.integers(0, top + 1, cache[0]).astype(np.int64)):
        _assert_matches_reference({**feeds, "indices": indices}, mode=mode, axis=axis)
    _assert_matches_reference(feeds, mode=mode, axis=axis)  # no write_indices: from 0 (prefill)


@pytest.mark.parametrize("dtype", [np.float16, np.int64, np.uint8, np.bool_])
def test_any_whole_byte_dtype_moves(dtype: type) -> None:
    past = (rng.standard_normal((2, 2, 6, 3)) * 9).astype(dtype)
    update = (rng.standard_normal((2, 2, 2, 3)) * 9).astype(dtype)
    _assert_matches_reference({"past": past, "update": update, "indices": np.array([4, 1], np.int64)})


@pytest.mark.parametrize("index", [5, -1])
def test_a_linear_write_past_the_cache_traps(index: int) -> None:
    feeds = {"past": np.zeros((2, 6, 2), np.float32), "update": np.ones((2, 2, 2), np.float32),
             "indices": np.array([0, index], np.int64)}
    model = single_op_model("TensorScatter", feeds, opset=24, axis=1)
    with pytest.raises(ModelFault, match="unreachable"):
        wasm_run(model, feeds)


def test_an_unknown_mode_is_refused_by_name() -> None:
    feeds = {"past": np.zeros((2, 4), np.float32), "update": np.ones((2, 1), np.float32)}
    with pytest.raises(UnsupportedModel, match=r"'TensorScatter_0'.*mode 'wrap'"):
        wasm_run(single_op_model("TensorScatter", feeds, opset=24, axis=1, mode="wrap"), feeds)
