"""Window geometry against brute force: output sizes, valid ranges, padded buffers, tap nests, divisors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from wasinfer.ir import Node
from wasinfer.lowering.layout import row_major
from wasinfer.lowering.window import (
    MAX_UNROLL,
    Window,
    average_divisors,
    make_window,
    padded_dims,
    padding_rows,
    tap_nest,
    tap_offsets,
    window_scratch,
)

# (input dims, kernel, attributes): strides, dilations, asymmetric pads, auto_pad, ceil_mode
WINDOWS = [
    ((7, 9), (3, 3), {}),
    ((7, 9), (3, 3), {"pads": [1, 1, 1, 1]}),
    ((11, 12), (3, 2), {"strides": [2, 1], "pads": [1, 0, 1, 1]}),
    ((10, 13), (3, 3), {"dilations": [2, 3], "pads": [2, 0, 1, 4]}),
    ((9, 8), (5, 5), {"strides": [2, 2], "pads": [2, 2, 2, 2]}),
    ((12, 10), (3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 3]}),
    ((12, 10), (4, 2), {"auto_pad": "SAME_LOWER", "dilations": [1, 2]}),
    ((8, 8), (3, 3), {"auto_pad": "VALID", "strides": [3, 2]}),
    ((20,), (9,), {"pads": [4, 4], "strides": [3]}),
    ((5, 6, 7), (2, 3, 3), {"pads": [1, 0, 1, 0, 1, 1]}),
]


def window(in_dims: tuple[int, ...], kernel: tuple[int, ...], attrs: dict[str, object],
           ceil_mode: bool = False) -> Window:
    return make_window(Node("Conv", "n", ["x", "w"], ["y"], attrs=dict(attrs)), in_dims, kernel, ceil_mode)


def sources(win: Window, axis: int, offset: int) -> np.ndarray:
    """Input index read by every output along `axis` for kernel `offset`."""
    return np.arange(win.out_dims[axis]) * win.strides[axis] + offset * win.dilations[axis] - win.pad_begin[axis]


@pytest.mark.parametrize("in_dims,kernel,attrs", WINDOWS)
def test_output_sizes_follow_the_onnx_formula(in_dims: tuple[int, ...], kernel: tuple[int, ...],
                                              attrs: dict[str, object]) -> None:
    win = window(in_dims, kernel, attrs)
    for a in range(win.rank):
        span = (kernel[a] - 1) * win.dilations[a] + 1
        if attrs.get("auto_pad") in ("SAME_UPPER", "SAME_LOWER"):
            assert win.out_dims[a] == math.ceil(in_dims[a] / win.strides[a])
            total = win.pad_begin[a] + win.pad_end[a]
            assert total == max(0, (win.out_dims[a] - 1) * win.strides[a] + span - in_dims[a])
            smaller = win.pad_begin[a] if attrs["auto_pad"] == "SAME_UPPER" else win.pad_end[a]
            assert smaller == total // 2
        else:
            padded = in_dims[a] + win.pad_begin[a] + win.pad_end[a]
            assert win.out_dims[a] == (padded - span) // win.strides[a] + 1


def test_ceil_mode_keeps_a_partial_window_but_not_one_starting_in_the_end_padding() -> None:
    assert window((7,), (2,), {"strides": [2]}).out_dims == (3,)
    assert window((7,), (2,), {"strides": [2]}, ceil_mode=True).out_dims == (4,)  # last window half outside
    # with pads [0, 2], a fifth window would start at 8, inside the end padding: dropped as ONNX Runtime does
    assert window((7,), (2,), {"strides": [2], "pads": [0, 2]}, ceil_mode=True).out_dims == (4,)


@pytest.mark.parametrize("in_dims,kernel,attrs", WINDOWS)
def test_valid_is_exactly_the_outputs_that_read_inside(in_dims: tuple[int, ...], kernel: tuple[int, ...],
                                                       attrs: dict[str, object]) -> None:
    win = window(in_dims, kernel, attrs)
    for a in range(win.rank):
        for offset in range(kernel[a]):
            inside = (sources(win, a, offset) >= 0) & (sources(win, a, offset) < in_dims[a])
            for lo, hi in [(0, win.out_dims[a]), (1, win.out_dims[a]), (0, max(1, win.out_dims[a] // 2))]:
                first, end = win.valid(a, offset, lo, hi)
                expected = [o for o in range(lo, hi) if inside[o]]
                assert list(range(first, end)) == expected, (a, offset, lo, hi)
                assert lo <= first <= max(end, lo) and end <= max(hi, first)
                for o in range(first, end):
                    assert win.source(a, offset, o) == sources(win, a, offset)[o]


@pytest.mark.parametrize("in_dims,kernel,attrs", WINDOWS)
def test_padded_buffer_holds_every_read(in_dims: tuple[int, ...], kernel: tuple[int, ...],
                                        attrs: dict[str, object]) -> None:
    win = window(in_dims, kernel, attrs)
    dims = padded_dims(win)
    for a in range(win.rank):
        reads = np.concatenate([sources(win, a, k) for k in range(kernel[a])])
        if dims is None:  # read in place: no padding, every read inside the input
            assert reads.min() >= 0 and reads.max() < in_dims[a]
        else:  # the input sits at pad_begin; every read (shifted by it) lies inside the buffer
            assert (reads + win.pad_begin[a]).min() >= 0
            assert (reads + win.pad_begin[a]).max() < dims[a]
            assert win.pad_begin[a] + in_dims[a] <= dims[a]
    assert window_scratch(win) == (math.prod(dims) * 4 if dims else 0)


def test_unpadded_windows_read_in_place() -> None:
    assert padded_dims(window((7, 9), (3, 3), {})) is None
    assert window_scratch(window((7, 9), (3, 3), {})) == 0
    assert padded_dims(window((7, 9), (3, 3), {"pads": [0, 0, 0, 1]})) == (7, 10)


@pytest.mark.parametrize("kernel,looped", [((3, 3), 0), ((8, 8), 0), ((9, 9), 1), ((3, 5, 5), 1), ((9, 9, 9), 2)])
def test_tap_nest_unrolls_at_most_max_unroll_taps(kernel: tuple[int, ...], looped: int) -> None:
    in_dims = tuple(k + 4 for k in kernel)
    dilations = tuple(range(1, len(kernel) + 1))
    win = Window(in_dims, (2,) * len(kernel), kernel, (1,) * len(kernel), dilations, (0,) * len(kernel),
                 (0,) * len(kernel))
    index_steps = tuple(10 ** a for a in range(len(kernel)))
    nest = tap_nest(win, index_steps)
    assert len(nest.loops) == looped
    assert len(nest.unrolled) == math.prod(kernel[looped:]) <= MAX_UNROLL
    # every tap's byte offset and index, rebuilt from the loops and the unrolled list, appears once
    strides = row_major(padded_dims(win) or in_dims)
    expected = {(sum(t * d * s * 4 for t, d, s in zip(tap, dilations, strides, strict=True)),
                 sum(t * i for t, i in zip(tap, index_steps, strict=True)))
                for tap in itertools.product(*(range(k) for k in kernel))}
    got = set()
    for outer in itertools.product(*(range(count) for count, _, _ in nest.loops)):
        base = sum(i * step for i, (_, step, _) in zip(outer, nest.loops, strict=True))
        index = sum(i * step for i, (_, _, step) in zip(outer, nest.loops, strict=True))
        got |= {(base + offset, index + tap_index) for offset, tap_index in nest.unrolled}
    assert got == expected


@pytest.mark.parametrize("in_dims,kernel,attrs", WINDOWS)
def test_tap_offsets_address_each_tap_in_the_buffer_read(in_dims: tuple[int, ...], kernel: tuple[int, ...],
                                                         attrs: dict[str, object]) -> None:
    """Tap t of the window at output 0 reads buffer element (sum over axes of t * dilation * row stride):
    the table lists them in row-major kernel order, the order of a depthwise weight's taps."""
    win = window(in_dims, kernel, attrs)
    buffer = np.arange(math.prod(padded_dims(win) or in_dims)).reshape(padded_dims(win) or in_dims)
    starts = tuple(slice(0, (k - 1) * d + 1, d) for k, d in zip(kernel, win.dilations, strict=True))
    expected = buffer[starts].reshape(-1) * 4
    offsets = tap_offsets(win)
    assert offsets.dtype == np.int32
    np.testing.assert_array_equal(offsets, expected)


@pytest.mark.parametrize("in_dims,kernel,attrs,expected", [
    ((2, 9), (5, 5), {"pads": [2, 2, 2, 2]}, 6),  # each of the 2 rows: 3 of 5 kernel rows in the padding
    ((7, 9), (3, 3), {}, 0),
    ((12, 10), (3, 3), {"pads": [1, 1, 1, 1]}, 2),  # the first and last rows' outer kernel rows
    ((10, 13), (3, 3), {"dilations": [2, 3], "pads": [2, 0, 1, 4]}, 3),  # rows 0, 1 above, row 8 below
    ((9, 8), (5, 5), {"strides": [2, 2], "pads": [2, 2, 2, 2]}, 4),  # 2 for the first row, 2 for the last
])
def test_padding_rows_count_kernel_rows_reading_padding(in_dims: tuple[int, ...], kernel: tuple[int, ...],
                                                        attrs: dict[str, object], expected: int) -> None:
    assert padding_rows(window(in_dims, kernel, attrs)) == expected


@pytest.mark.parametrize("include_pad", [False, True])
@pytest.mark.parametrize("in_dims,kernel,attrs", [w for w in WINDOWS if len(w[0]) == 2])
def test_average_divisors_count_the_taps_inside(in_dims: tuple[int, ...], kernel: tuple[int, ...],
                                                attrs: dict[str, object], include_pad: bool) -> None:
    win = window(in_dims, kernel, attrs)
    divisors = average_divisors(win, include_pad)
    expected = np.zeros(win.out_dims)
    for out in np.ndindex(*win.out_dims):
        for tap in np.ndindex(*kernel):
            src = [win.source(a, tap[a], out[a]) for a in range(2)]
            lo = [-win.pad_begin[a] if include_pad else 0 for a in range(2)]
            hi = [in_dims[a] + (win.pad_end[a] if include_pad else 0) for a in range(2)]
            expected[out] += all(lo[a] <= src[a] < hi[a] for a in range(2))
    got = np.full(win.out_dims, divisors.uniform) if divisors.uniform is not None \
        else np.outer(divisors.rows, divisors.cols)
    np.testing.assert_array_equal(got, expected)
    assert (divisors.uniform is not None) == bool(np.all(expected == expected.flat[0]))
