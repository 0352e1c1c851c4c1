"""The int8 GEMM's plan: y[M, N] = requantize(A[M, K] (u)int8 @ W[K, N] int8 + bias) (QGemmInt8).

The products run on `i32x4.dot_i16x8_s`, which multiplies eight i16 pairs and sums adjacent
products into four i32 lanes. So K goes in pairs (KP = ceil(K/2) steps, an odd K padded with a
zero), and per k pair:
- A: the pair (a[m, 2p] - a_zero, a[m, 2p+1] - a_zero) as two i16, one i32, splatted to all four
  lanes. A is converted once per call into scratch (`a_scratch_bytes`): subtracting the zero
  point in 16 bits (uint8 - 255 .. int8 + 128 fit) makes every product exact with no correction
  term. Several rows go in panels of PANEL rows ([panels][KP][PANEL][2] i16): one v128 load gives
  a k pair for the whole tile, each row's splat a register shuffle (as the float GEMM's panels).
  A single row (batch 1, the per-sample run) is one row: [KP][2].
- W: constant, packed at compile time per column tile of WIDTH columns as [tiles][KP][WIDTH][2]
  int8 (`pack_weights`): four columns' pairs are eight bytes, which `v128.load8x8_s` widens to
  the eight i16 lanes the dot wants in the load itself. The weights stay one byte each.
The dot's i32 lanes then hold a_k0 * w[k0, n] + a_k1 * w[k1, n] for four columns n: exact (at
most 2 * 255 * 128 per pair), summed in i32 (exact up to K = 2^31 / 32640 ≈ 65000).

Tiles: PANEL rows x 8 columns (8 i32x4 accumulators, 2 weight vectors, the panel and a splat fit
the 16 SIMD registers of x86-64), a single row 16 columns. Column tiles start every WIDTH columns;
a last partial tile overlaps the one before (recomputing a few columns bit for bit), and a matrix
narrower than one tile is padded to it with zero weights, its extra columns never stored.
Per tile, the columns' int32 bias and float32 multiplier are tables of WIDTH entries
(`column_tables`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PANEL = 4  # rows of A per panel (and per register tile) when there are several rows


@dataclass(frozen=True)
class QGemmPlan:
    m_size: int
    n_size: int
    k_size: int
    panel: int  # rows per panel: PANEL, or 1 for a single row
    width: int  # columns per register tile
    starts: tuple[int, ...]  # each column tile's first column

    @property
    def k_pairs(self) -> int:
        return -(-self.k_size // 2)

    @property
    def regular(self) -> int:
        """Tiles that start at multiples of `width` (a run-time loop); the rest are `starts[regular:]`."""
        return sum(1 for i, s in enumerate(self.starts) if s == i * self.width)

    @property
    def stored(self) -> int:
        """Columns a tile stores: all of them, unless the matrix is narrower than one tile."""
        return min(self.width, self.n_size)


def qgemm_plan(m_size: int, n_size: int, k_size: int) -> QGemmPlan:
    panel = 1 if m_size == 1 else PANEL
    width = 16 if panel == 1 else 8
    if n_size <= width:
        starts: tuple[int, ...] = (0,)
    else:
        starts = tuple(range(0, n_size - width + 1, width))
        if n_size % width:
            starts += (n_size - width,)
    return QGemmPlan(m_size, n_size, k_size, panel, width, starts)


def pack_weights(w: np.ndarray, plan: QGemmPlan) -> np.ndarray:
    """W [K, N] int8 as [tiles][KP][WIDTH][2]: a tile's k pair is 2 * WIDTH consecutive bytes,
    each four columns' (w[2p, n], w[2p+1, n]) pairs one `v128.load8x8_s`."""
    k_pad = plan.k_pairs * 2
    columns = max(plan.n_size, plan.width)
    padded = np.zeros((k_pad, columns), np.int8)
    padded[:plan.k_size, :plan.n_size] = w
    tiles = [padded[:, s:s + plan.width].reshape(plan.k_pairs, 2, plan.width).transpose(0, 2, 1)
             for s in plan.starts]
    return np.ascontiguousarray(np.stack(tiles)).reshape(-1)


def column_tables(values: np.ndarray, plan: QGemmPlan) -> np.ndarray:
    """A per-column vector (bias or multiplier) as [tiles][WIDTH], padded with zeros."""
    padded = np.zeros(max(plan.n_size, plan.width), values.dtype)
    padded[:plan.n_size] = values
    return np.ascontiguousarray(np.stack([padded[s:s + plan.width] for s in plan.starts]))


def a_scratch_bytes(plan: QGemmPlan) -> int:
    """A as zero-point-shifted i16 pairs, in panels."""
    panels = -(-plan.m_size // plan.panel)
    return panels * plan.k_pairs * plan.panel * 4


def reference(a: np.ndarray, a_zero: int, w: np.ndarray, bias: np.ndarray, scale: np.ndarray, y_zero: int,
              y_dtype: np.dtype[np.integer]) -> np.ndarray:  # type: ignore[type-var]
    """What the kernel computes, in numpy (the plan's tests check the packing against it)."""
    acc = (a.astype(np.int64) - a_zero) @ w.astype(np.int64) + bias.astype(np.int64)
    info = np.iinfo(y_dtype)
    scaled = acc.astype(np.int32).astype(np.float32) * scale.astype(np.float32)
    clamped = np.clip(scaled, np.float32(info.min - y_zero), np.float32(info.max - y_zero))
    return (np.rint(clamped).astype(np.int32) + y_zero).astype(y_dtype)


__all__ = ["PANEL", "QGemmPlan", "a_scratch_bytes", "column_tables", "pack_weights", "qgemm_plan", "reference"]
