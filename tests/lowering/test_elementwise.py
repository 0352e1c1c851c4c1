"""Elementwise loop nests: the merged walk visits exactly the elements numpy broadcasting pairs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from wasinfer.lowering.elementwise import broadcast_strides, merge_axes


def walk(dims: list[int], strides: list[int]) -> list[int]:
    """Element offsets a loop nest with these dims and strides visits, in order."""
    return [sum(i * s for i, s in zip(index, strides, strict=True))
            for index in itertools.product(*(range(d) for d in dims))]


@pytest.mark.parametrize("out_shape,shapes,levels", [
    ((2, 3, 4), [(2, 3, 4), (2, 3, 4)], 1),  # same shape: one loop
    ((2, 3, 4), [(2, 3, 4), ()], 1),  # a scalar: one loop, stride 0
    ((2, 8, 5, 5), [(2, 8, 5, 5), (8, 1, 1)], 3),  # per channel: the spatial axes merge
    ((3, 1, 4), [(3, 1, 4), (1, 1, 4)], 2),  # the size-1 axis drops
    ((4, 3, 2), [(4, 1, 2), (3, 1)], 3),
    ((1, 1), [(1,), (1, 1)], 1),
])
def test_merged_nest_pairs_the_elements_numpy_pairs(out_shape: tuple[int, ...], shapes: list[tuple[int, ...]],
                                                    levels: int) -> None:
    strides = [broadcast_strides(shape, out_shape) for shape in shapes]
    dims, merged = merge_axes(out_shape, strides)
    assert len(dims) == levels
    for shape, operand in zip(shapes, merged, strict=True):
        # numpy: the flat index of the element of `shape` that each output element reads
        source = np.broadcast_to(np.arange(int(np.prod(shape))).reshape(shape), out_shape).reshape(-1)
        assert walk(dims, operand) == source.tolist()
