"""Sliding-window geometry, shared by Conv, the pools and depthwise Conv.

`Window` is the plan of one windowed op along its spatial axes: strides, dilations, the
explicit pads that auto_pad / ceil_mode resolve to, and the output sizes, as the ONNX spec
defines them. From it follow the facts a kernel needs before it writes a loop: which
outputs read inside the input for a kernel offset (`Window.valid`, so copies carry no
bounds checks), the padded buffer every window can read from (`padded_dims`, the scratch),
which kernel axes are unrolled and which loop (`tap_nest`), and AveragePool's divisors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wasinfer.ir import Graph, Node
from wasinfer.lowering.layout import row_major

MAX_UNROLL = 64  # window taps unrolled; larger windows loop over their leading kernel axes


@dataclass(frozen=True)
class Window:
    """Per spatial axis: input i = o*stride + offset*dilation - pad_begin for output o."""

    in_dims: tuple[int, ...]
    out_dims: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pad_begin: tuple[int, ...]
    pad_end: tuple[int, ...]

    @property
    def rank(self) -> int:
        return len(self.in_dims)

    def valid(self, axis: int, offset: int, lo: int, hi: int) -> tuple[int, int]:
        """The outputs in [lo, hi) whose input index for kernel `offset` lies inside the input."""
        stride, shift = self.strides[axis], offset * self.dilations[axis] - self.pad_begin[axis]
        first = -(shift // stride)  # ceil(-shift / stride)
        last = (self.in_dims[axis] - 1 - shift) // stride
        start = max(lo, first)
        return start, max(start, min(hi, last + 1))

    def source(self, axis: int, offset: int, out: int) -> int:
        return out * self.strides[axis] + offset * self.dilations[axis] - self.pad_begin[axis]


def _ints(node: Node, key: str, rank: int, default: int) -> tuple[int, ...]:
    value = node.attr(key)
    return tuple(int(v) for v in value) if value else (default,) * rank


def window_problems(node: Node, rank: int) -> list[str]:
    """Attribute lists whose length does not match the spatial rank (read by `make_window`)."""
    problems = []
    for key, length in (("strides", rank), ("dilations", rank), ("pads", 2 * rank), ("kernel_shape", rank)):
        value = node.attr(key)
        if value and len(value) != length:
            problems.append(f"{key} has {len(value)} values, expected {length}")
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        problems.append(f"auto_pad={auto_pad!r} is not a valid value")
    return problems


def make_window(node: Node, in_dims: tuple[int, ...], kernel_dims: tuple[int, ...], ceil_mode: bool = False) -> Window:
    """Output sizes and explicit pads from strides/dilations/pads/auto_pad, as the ONNX spec defines them.

    With ceil_mode, a last window that would start in the end padding is dropped, as ONNX
    Runtime (and ONNX's reference tests) do; ONNX 1.23's shape inference keeps it, and the
    kernels' checks report that disagreement rather than pick a side. SAME_* pads use the
    dilated kernel span, as the spec says (ONNX Runtime's pools use the undilated one).
    """
    rank = len(in_dims)
    strides, dilations = _ints(node, "strides", rank, 1), _ints(node, "dilations", rank, 1)
    auto_pad = node.attr("auto_pad", "NOTSET")
    spans = [(k - 1) * d + 1 for k, d in zip(kernel_dims, dilations, strict=True)]
    begin, end, out = [], [], []
    for size, stride, span, axis in zip(in_dims, strides, spans, range(rank), strict=True):
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            count = -(-size // stride)
            total = max(0, (count - 1) * stride + span - size)
            head = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            begin.append(head)
            end.append(total - head)
            out.append(count)
            continue
        pads = _ints(node, "pads", 2 * rank, 0) if auto_pad == "NOTSET" else (0,) * (2 * rank)
        head, tail = pads[axis], pads[axis + rank]
        room = size + head + tail - span
        count = (-(-room // stride) if ceil_mode else room // stride) + 1
        if ceil_mode and (count - 1) * stride >= size + head:
            count -= 1
        begin.append(head)
        end.append(tail)
        out.append(count)
    return Window(tuple(in_dims), tuple(out), tuple(kernel_dims), strides, dilations, tuple(begin), tuple(end))


def padded_dims(win: Window) -> tuple[int, ...] | None:
    """Dims of the padded copy of one plane that every window can read without bounds checks;
    None when the windows stay inside the input (read in place)."""
    extents = [(o - 1) * s + (k - 1) * d + 1
               for o, s, k, d in zip(win.out_dims, win.strides, win.kernel, win.dilations, strict=True)]
    if not any(win.pad_begin) and all(e <= size for e, size in zip(extents, win.in_dims, strict=True)):
        return None
    return tuple(max(e, p + size) for e, p, size in zip(extents, win.pad_begin, win.in_dims, strict=True))


def window_scratch(win: Window) -> int:
    """Bytes of the padded plane buffer (float32), 0 when windows read the input in place."""
    dims = padded_dims(win)
    return math.prod(dims) * 4 if dims else 0


@dataclass(frozen=True)
class TapNest:
    """How a window's taps are visited: run-time loops over the leading kernel axes, then the
    rest unrolled. `loops`: per looped axis (count, byte step, index step); `unrolled`: per
    unrolled tap (byte offset, index offset) from the window's first tap. Byte steps are in the
    buffer the windows read (the padded copy, or the input itself); the index is the sum over
    kernel axes of tap position x `index_steps` (flat input indices for MaxPool's Indices,
    weight offsets for depthwise Conv)."""

    loops: tuple[tuple[int, int, int], ...]
    unrolled: tuple[tuple[int, int], ...]


def tap_nest(win: Window, index_steps: tuple[int, ...] | None = None) -> TapNest:
    """Unroll up to MAX_UNROLL taps; loop over as few leading kernel axes as that takes."""
    reads = padded_dims(win) or win.in_dims
    byte_steps = [d * s * 4 for d, s in zip(win.dilations, row_major(reads), strict=True)]
    steps = index_steps or (0,) * win.rank
    looped = 0
    while math.prod(win.kernel[looped:]) > MAX_UNROLL:
        looped += 1
    loops = tuple((win.kernel[a], byte_steps[a], steps[a]) for a in range(looped))
    unrolled = tuple((sum(i * s for i, s in zip(tap, byte_steps[looped:], strict=True)),
                      sum(i * s for i, s in zip(tap, steps[looped:], strict=True)))
                     for tap in np.ndindex(*win.kernel[looped:]))
    return TapNest(loops, unrolled)


def tap_offsets(win: Window) -> np.ndarray:
    """Byte offset of every tap from the window's first, in the buffer the windows read (the padded
    copy, or the input itself), taps in row-major kernel order (a depthwise weight's order): the table
    a kernel that loops over taps at run time reads."""
    reads = padded_dims(win) or win.in_dims
    byte_steps = [d * s * 4 for d, s in zip(win.dilations, row_major(reads), strict=True)]
    return np.array([sum(i * s for i, s in zip(tap, byte_steps, strict=True)) for tap in np.ndindex(*win.kernel)],
                    dtype=np.int32)


def padding_rows(win: Window) -> int:
    """(output row, kernel row) pairs along axis 0 whose input row lies in the padding: the kernel rows a
    kernel may skip, over the whole plane."""
    return sum(not 0 <= r * win.strides[0] - win.pad_begin[0] + k * win.dilations[0] < win.in_dims[0]
               for r in range(win.out_dims[0]) for k in range(win.kernel[0]))


# ---------------------------------------------------------------- pools

def pool_window(node: Node, graph: Graph) -> Window:
    shape = graph.info(node.inputs[0]).shape
    return make_window(node, tuple(shape[2:]), tuple(int(k) for k in node.attr("kernel_shape")),
                       bool(node.attr("ceil_mode", 0)))


def pool_scratch(node: Node, graph: Graph) -> int:
    return window_scratch(pool_window(node, graph))


def tap_counts(win: Window, axis: int, include_pad: bool) -> np.ndarray:
    """Per output along `axis`: taps inside the input (or inside input + explicit pads)."""
    lo, hi = (-win.pad_begin[axis], win.in_dims[axis] + win.pad_end[axis]) if include_pad \
        else (0, win.in_dims[axis])
    taps = np.add.outer(np.arange(win.out_dims[axis]) * win.strides[axis],
                        np.arange(win.kernel[axis]) * win.dilations[axis]) - win.pad_begin[axis]
    inside: np.ndarray = ((taps >= lo) & (taps < hi)).sum(axis=1).astype(np.float32)
    return inside


@dataclass(frozen=True)
class Divisors:
    """AveragePool's divisor per output, as a product of per-axis tap counts: one constant when
    every output has the same, else a table per output row (all leading axes) and one per column
    (the last axis), computed as ONNX Runtime does."""

    uniform: float | None
    rows: np.ndarray  # float32 [prod(out_dims[:-1])]
    cols: np.ndarray  # float32 [out_dims[-1]]


def average_divisors(win: Window, include_pad: bool) -> Divisors:
    counts = [tap_counts(win, a, include_pad) for a in range(win.rank)]
    rows = np.ones(1, np.float32)
    for c in counts[:-1]:
        rows = np.multiply.outer(rows, c).reshape(-1)
    cols = counts[-1]
    uniform = float(rows[0] * cols[0]) if np.all(rows == rows[0]) and np.all(cols == cols[0]) else None
    return Divisors(uniform, rows.astype(np.float32), cols)


__all__ = ["MAX_UNROLL", "Divisors", "TapNest", "Window", "average_divisors", "make_window", "padded_dims",
           "padding_rows", "pool_scratch", "pool_window", "tap_counts", "tap_nest", "tap_offsets", "window_problems",
           "window_scratch"]
