"""The loop nest of an elementwise walk: per-operand strides over the output's axes, merged.

Each operand of an elementwise op (and of a strided copy) is walked in the output's order
with a stride per output axis, 0 where it broadcasts. Neighbouring axes that every operand
walks contiguously (or not at all) merge into one, and size-1 axes drop, so the common cases
(same shape, scalar, per-channel) become one or two loops, whatever the ranks.
"""

from __future__ import annotations


def broadcast_strides(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> list[int]:
    """Element strides of `shape` walked as `out_shape` (0 on broadcast axes)."""
    padded = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    strides, step = [0] * len(out_shape), 1
    for axis in reversed(range(len(out_shape))):
        strides[axis] = step if padded[axis] != 1 else 0
        step *= padded[axis]
    return strides


def merge_axes(out_shape: tuple[int, ...], strides: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """Merge neighbouring axes that every operand walks contiguously; drop size-1 axes."""
    dims: list[int] = []
    merged: list[list[int]] = [[] for _ in strides]
    for axis, size in enumerate(out_shape):
        if size == 1:
            continue
        if dims and all(s[axis] * size == m[-1] or (s[axis] == 0 and m[-1] == 0)
                        for s, m in zip(strides, merged, strict=True)):
            dims[-1] *= size
            for s, m in zip(strides, merged, strict=True):
                m[-1] = s[axis]
            continue
        dims.append(size)
        for s, m in zip(strides, merged, strict=True):
            m.append(s[axis])
    if not dims:
        return [1], [[0] for _ in strides]
    return dims, merged


__all__ = ["broadcast_strides", "merge_axes"]
