"""ScatterND, ScatterElements and GatherND (emitters/scatter.py) against ONNX Runtime: indices at run
time (negative ones too), every reduction on every dtype it claims, duplicates, a KV-cache update, and
out-of-range indices that trap the run."""

from __future__ import annotations

import numpy as np
import pytest

from tests.parity import assert_matches_ort, single_op_model, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm.compiler import UnsupportedModel

rng = np.random.default_rng(18)
REDUCIBLE = [np.float32, np.float64, np.int32, np.int64]


def sample(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if dtype is np.bool_:
        return rng.random(shape) < 0.5
    return (rng.standard_normal(shape) * 10).astype(dtype)


def distinct_tuples(shape: tuple[int, ...], count: int, k: int) -> np.ndarray:
    """`count` distinct index tuples into the first k axes of `shape`, some written from the end."""
    flat = rng.choice(int(np.prod(shape[:k])), count, replace=False)
    tuples = np.stack(np.unravel_index(flat, shape[:k]), axis=-1).astype(np.int64)
    return np.where(rng.random(tuples.shape) < 0.3, tuples - np.array(shape[:k]), tuples)


# ---------------------------------------------------------------- ScatterND

@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8, np.int16, np.bool_, np.float64])
@pytest.mark.parametrize("shape,k,count", [((7,), 1, 3), ((4, 5, 3), 1, 2), ((4, 5, 3), 2, 5), ((4, 5, 3), 3, 9),
                                           ((2, 3, 4, 6), 2, 1)])
def test_scatter_nd_writes_blocks_at_run_time_indices(dtype: type, shape: tuple[int, ...], k: int,
                                                      count: int) -> None:
    data = sample(shape, dtype)
    indices = distinct_tuples(shape, count, k)
    updates = sample((count, *shape[k:]), dtype)
    feeds = {"data": data, "indices": indices, "updates": updates}
    assert_matches_ort(single_op_model("ScatterND", feeds, opset=13), feeds, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", REDUCIBLE)
@pytest.mark.parametrize("reduction", ["add", "mul", "max", "min"])
def test_scatter_nd_reductions_combine_duplicates(dtype: type, reduction: str) -> None:
    data = sample((5, 3), dtype)
    indices = np.array([[1], [3], [1], [-4], [0]], np.int64)  # row 1 three times (-4 is 1)
    updates = sample((5, 3), dtype)
    feeds = {"data": data, "indices": indices, "updates": updates}
    assert_matches_ort(single_op_model("ScatterND", feeds, opset=18, reduction=reduction), feeds, rtol=1e-6, atol=0)


def test_a_kv_cache_update_writes_the_new_step_at_its_position() -> None:
    """(batch, heads, positions, head_dim) cache; the new keys go to one position per batch entry."""
    cache = np.zeros((2, 4, 16, 8), np.float32)
    new = sample((2, 4, 1, 8), np.float32)
    position = 5
    indices = np.array([[[[b, h, position] for _ in range(1)] for h in range(4)] for b in range(2)], np.int64)
    feeds = {"cache": cache, "indices": indices, "new": new.reshape(2, 4, 1, 8)}
    got = wasm_run(single_op_model("ScatterND", feeds, opset=13), feeds)[0]
    np.testing.assert_array_equal(got[:, :, position], new[:, :, 0])
    assert not got[:, :, :position].any() and not got[:, :, position + 1:].any()
    assert_matches_ort(single_op_model("ScatterND", feeds, opset=13), feeds, rtol=0, atol=0)


@pytest.mark.parametrize("op", ["ScatterND", "GatherND"])
@pytest.mark.parametrize("bad", [4, -5, 2**40])
def test_an_index_outside_the_data_traps(op: str, bad: int) -> None:
    data = sample((4, 3), np.float32)
    indices = np.array([[0], [bad]], np.int64)
    feeds = {"data": data, "indices": indices}
    if op == "ScatterND":
        feeds["updates"] = sample((2, 3), np.float32)
    with pytest.raises(Exception, match=r"unreachable|trap"):
        wasm_run(single_op_model(op, feeds, opset=13), feeds)


def test_scatter_nd_refuses_an_unknown_reduction_by_name() -> None:
    feeds = {"data": sample((4,), np.uint8), "indices": np.array([[1]], np.int64), "updates": sample((1,), np.uint8)}
    with pytest.raises(UnsupportedModel, match="reduction='add' on uint8 is not supported"):
        convert_onnx(single_op_model("ScatterND", feeds, opset=18, reduction="add"))


# ---------------------------------------------------------------- ScatterElements

@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8, np.int32])
@pytest.mark.parametrize("shape,index_shape,axis", [((9,), (4,), 0), ((4, 6), (3, 6), 0), ((4, 6), (4, 2), 1),
                                                    ((3, 4, 5), (2, 3, 5), -1), ((3, 4, 5), (3, 2, 4), 1)])
def test_scatter_elements_matches_ort(dtype: type, shape: tuple[int, ...], index_shape: tuple[int, ...],
                                      axis: int) -> None:
    data = sample(shape, dtype)
    n = shape[axis]
    # distinct along the axis for each line, so the order of the writes does not matter
    a = axis % len(shape)
    indices = np.argsort(rng.random((*index_shape[:a], n, *index_shape[a + 1:])), axis=axis)
    indices = np.take(indices, np.arange(index_shape[axis]), axis=axis).astype(np.int32)
    indices = np.where(rng.random(indices.shape) < 0.3, indices - n, indices).astype(np.int32)
    updates = sample(index_shape, dtype)
    feeds = {"data": data, "indices": indices, "updates": updates}
    assert_matches_ort(single_op_model("ScatterElements", feeds, opset=13, axis=axis), feeds, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", REDUCIBLE)
@pytest.mark.parametrize("reduction", ["add", "mul", "max", "min"])
def test_scatter_elements_reductions_combine_duplicates(dtype: type, reduction: str) -> None:
    data = sample((3, 5), dtype)
    indices = np.array([[1, 1, -4, 0, 4], [2, 2, 2, 2, 2]], np.int64)
    updates = sample((2, 5), dtype)
    feeds = {"data": data, "indices": indices, "updates": updates}
    model = single_op_model("ScatterElements", feeds, opset=18, axis=1, reduction=reduction)
    assert_matches_ort(model, feeds, rtol=1e-6, atol=0)


def test_scatter_is_scatter_elements_before_opset_11() -> None:
    feeds = {"data": sample((3, 4), np.float32), "indices": np.array([[2, 0, 1, -1]], np.int64),
             "updates": sample((1, 4), np.float32)}
    assert_matches_ort(single_op_model("Scatter", feeds, opset=10, axis=0), feeds, rtol=0, atol=0)


def test_scatter_elements_traps_on_an_index_past_the_axis() -> None:
    feeds = {"data": sample((3, 5), np.float32), "indices": np.array([[5]], np.int64),
             "updates": sample((1, 1), np.float32)}
    with pytest.raises(Exception, match=r"unreachable|trap"):
        wasm_run(single_op_model("ScatterElements", feeds, opset=13, axis=1), feeds)


# ---------------------------------------------------------------- GatherND

@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8, np.bool_])
@pytest.mark.parametrize("shape,index_shape,batch_dims", [((7,), (3, 1), 0), ((4, 5, 3), (2, 2), 0),
                                                          ((4, 5, 3), (6, 3), 0), ((4, 5, 3), (2, 3, 1), 0),
                                                          ((2, 5, 3), (2, 4, 1), 1), ((2, 3, 5, 4), (2, 3, 2), 2),
                                                          ((2, 3, 5, 4), (2, 1, 2), 1)])
def test_gather_nd_matches_ort(dtype: type, shape: tuple[int, ...], index_shape: tuple[int, ...],
                               batch_dims: int) -> None:
    data = sample(shape, dtype)
    k = index_shape[-1]
    bounds = np.array(shape[batch_dims:batch_dims + k])
    indices = (rng.random(index_shape) * bounds).astype(np.int64)
    indices = np.where(rng.random(index_shape) < 0.3, indices - bounds, indices)
    feeds = {"data": data, "indices": indices}
    assert_matches_ort(single_op_model("GatherND", feeds, opset=13, batch_dims=batch_dims), feeds, rtol=0, atol=0)


def test_gather_nd_with_int32_indices() -> None:
    feeds = {"data": sample((4, 6), np.float32), "indices": np.array([[3, -1], [0, 2]], np.int32)}
    got = wasm_run(single_op_model("GatherND", feeds, opset=13), feeds)[0]
    np.testing.assert_array_equal(got, feeds["data"][[3, 0], [5, 2]])
