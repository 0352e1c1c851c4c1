"""GEMM tiling and weight layouts: C[M, N] = A[M, K] @ B[K, N] in register tiles and K blocks.

The plan of one product (`gemm_plan`): rows of C in tiles of ROWS (the last rows as one shorter
tile), columns in runs of equal-width tiles (`column_tiles`: 8 wide, 16 for a single row, a last
partial tile overlapping the one before), and K in blocks of at most K_BLOCK (one block where the
column tiles go outermost and all of A stays in L2). Constant operands
are laid out at compile time so the inner loop reads them contiguously: A in panels of PANEL
rows (`pack_panels`), B per column run (`pack_columns`). Conv-sized products go over blocks of
columns small enough to keep B's block in L2 (`column_block`); a few rows against a constant B
too large for L2 go over column tiles outermost (`columns_outer`), so B is read once.

The numbers were measured on Cranelift's x86-64 output (see backends/wasm/emitters/gemm.py):
ROWS x 8 accumulators fit the 16 SIMD registers of x86-64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wasinfer.ir import Graph, Node

PANEL = 4  # rows of A per packed panel: one v128 load gives a k step's A values for a whole tile
ROWS = 4  # rows of C per register tile
K_BLOCK = 512  # k steps per block: a tile's A panel (ROWS x K_BLOCK floats) stays in L1
GEMM_B_BUDGET = 256 * 1024  # bytes of B per GEMM column block: stays in L2 across all row blocks of A
GEMM_MIN_COLUMNS = 64


def pack_panels(a: np.ndarray) -> np.ndarray:
    """A [M, K] as [ceil(M/PANEL), K, PANEL]: a tile's A values for one k are one v128, splatted
    lane by lane (a register shuffle) instead of a load + broadcast per row. The padding rows
    repeat the last row (no tile reads them): uniform weights stay uniform, so they are still
    written at start-up instead of stored."""
    m_size = a.shape[0]
    padded = np.pad(a.astype(np.float32), ((0, -m_size % PANEL), (0, 0)), mode="edge")
    return np.ascontiguousarray(padded.reshape(-1, PANEL, a.shape[1]).transpose(0, 2, 1))


def column_tiles(n_size: int, rows: int, overlap: bool = True) -> list[tuple[int, int, int]]:
    """(first column, tiles, width) runs covering [0, n_size). A last partial tile is not done
    column by column: a full-width tile ending at n_size recomputes a few columns the previous
    tile already wrote (bit for bit the same values), which costs far less than narrow tiles.
    Not when K is cut into blocks: a tile then adds to what C holds, so no column may be done twice."""
    widest = 16 if rows == 1 else 8
    full = n_size // widest
    regions = [(0, full, widest)] if full else []
    rest = n_size - full * widest
    if not rest:
        return regions
    if not overlap:
        fours = rest // 4
        if fours:
            regions.append((full * widest, fours, 4))
        if rest % 4:
            regions.append((full * widest + fours * 4, rest % 4, 1))
        return regions
    if full and rest > 4:
        return [*regions, (n_size - widest, 1, widest)]
    if n_size >= 4:
        fours = rest // 4
        if fours:
            regions.append((full * widest, fours, 4))
        if rest % 4:
            regions.append((n_size - 4, 1, 4))
        return regions
    return [*regions, (0, n_size, 1)]


@dataclass(frozen=True)
class GemmPlan:
    """How C = A @ B is walked: K blocks outermost (a run-time loop), then row tiles, then the
    column runs. Tiles of the first K block start from zero, later ones from the C they stored."""

    m_size: int
    n_size: int
    k_size: int
    blocks: int  # K blocks
    k_len: int  # k steps per block (the last may be shorter)
    regions: tuple[tuple[int, int, int], ...]  # column runs: (first column, tiles, width)
    # column tiles outside the row tiles: each tile of a constant B is read from memory once and every
    # row tile reuses it from L1 (`columns_outer`)
    columns_outer: bool = False

    @property
    def row_tiles(self) -> tuple[tuple[int, int, int], ...]:
        """(first row, end, rows per tile): full tiles of ROWS, then the rest as one tile."""
        m_block = self.m_size // ROWS * ROWS
        return (0, m_block, ROWS), (m_block, self.m_size, self.m_size - m_block)


def gemm_plan(m_size: int, n_size: int, k_size: int, constant_b: bool = False) -> GemmPlan:
    if constant_b and k_size > K_BLOCK and columns_outer(m_size, n_size, k_size):
        # Columns outermost with all of A in L2, K blocks buy nothing: they only made each block read half of
        # every B tile (16 KiB runs with 16 KiB gaps through a classifier's 33.6 MB) and store and reload C's
        # partial sums. One block: each B tile is one sequential run, from L2 for the row tiles after the
        # first (ddddocr_rec's 20 x 1024 x 8210 Gemm: 11.2 -> 9.5 ms).
        return GemmPlan(m_size, n_size, k_size, 1, k_size,
                        tuple(column_tiles(n_size, 1 if m_size == 1 else ROWS)), columns_outer=True)
    blocks = max(1, -(-k_size // K_BLOCK))
    regions = column_tiles(n_size, 1 if m_size == 1 else ROWS, overlap=blocks == 1)
    k_len = -(-k_size // blocks)
    return GemmPlan(m_size, n_size, k_size, blocks, k_len, tuple(regions),
                    constant_b and columns_outer(m_size, n_size, k_len))


def columns_outer(m_size: int, n_size: int, k_len: int) -> bool:
    """Whether a product with constant B walks column tiles outermost (inside the K blocks).

    Rows outermost, every row tile streams B's whole block: from memory again for each tile once
    the block is larger than L2 (a classifier's 1024 x 8210 weights, 16 MiB per K block, went
    through 5 times for 20 rows: 6x ONNX Runtime, memory-bound). Columns outermost, B's tile
    (k_len x 8 floats) is read once and stays in L1 while the row tiles pass over it; A's block
    (every row, k_len columns) must then stay in L2 instead, so this is for a few rows and many
    columns, the shape of a classifier or of a projection over a short sequence. Where all of A fits
    that budget, `gemm_plan` does not cut K at all."""
    row_tiles = -(-m_size // ROWS)
    return row_tiles > 1 and k_len * n_size * 4 > GEMM_B_BUDGET and m_size * k_len * 4 <= GEMM_B_BUDGET


def pack_columns(b: np.ndarray, regions: tuple[tuple[int, int, int], ...]) -> tuple[np.ndarray, list[int]]:
    """A constant B [K, N] as, per column run, [tiles][K][width]: a tile's k step is `width`
    consecutive floats. Returns the float32 array and each run's first element in it."""
    k_size = b.shape[0]
    packed = [b[:, lo:lo + count * w].reshape(k_size, count, w).transpose(1, 0, 2).reshape(-1)
              for lo, count, w in regions]
    starts: list[int] = np.cumsum([0] + [p.size for p in packed]).tolist()
    return np.concatenate(packed).astype(np.float32), starts[:len(regions)]


def column_block(k_size: int) -> int:
    """Columns per block of a blocked GEMM: B's block (up to K_BLOCK rows of it) stays in L2 while
    every row block of A passes over it (the GEMM walks rows outermost); a multiple of 8."""
    return max(GEMM_MIN_COLUMNS, GEMM_B_BUDGET // (min(k_size, K_BLOCK) * 4) // 8 * 8)


def constant_bias(c: np.ndarray, beta: float, m_size: int, n_size: int) -> tuple[np.ndarray, int, int]:
    """Gemm's constant C times beta in its cheapest broadcast form: (values, row stride, column
    stride) — per column, per row, or the full [M, N]."""
    full = np.broadcast_to(c.astype(np.float32) * np.float32(beta), (m_size, n_size))
    if np.all(full == full[:1]):
        return full[0].copy(), 0, 1
    if np.all(full == full[:, :1]):
        return full[:, 0].copy(), 1, 0
    return np.ascontiguousarray(full), n_size, 1


def bias_strides(c_shape: tuple[int, ...]) -> tuple[int, int]:
    """(row stride, column stride) of a run-time C of this shape broadcast to [M, N]."""
    padded = (1,) * (2 - len(c_shape)) + tuple(c_shape)
    return padded[1] if padded[0] != 1 else 0, 1 if padded[1] != 1 else 0


def a_panel_bytes(m_size: int, k_size: int) -> int:
    """Scratch for a run-time A packed in panels (`pack_panels`' layout), padding rows included."""
    return -(-m_size // PANEL) * PANEL * k_size * 4


def gemm_scratch(node: Node, graph: Graph) -> int:
    """A run-time B with transB=1 is transposed into scratch first, so B is contiguous along n; a
    product that walks columns outermost packs its run-time A in panels there (`columns_outer`)."""
    a_shape = graph.info(node.inputs[0]).shape
    m_size, k_size = (a_shape[1], a_shape[0]) if node.attr("transA", 0) else a_shape
    if node.inputs[1] in graph.constants:
        n_size = graph.constants[node.inputs[1]].shape[0 if node.attr("transB", 0) else 1]
        return a_panel_bytes(m_size, k_size) if gemm_plan(m_size, n_size, k_size, True).columns_outer else 0
    if not node.attr("transB", 0):
        return 0
    return graph.info(node.inputs[1]).nbytes


def matmul_scratch(node: Node, graph: Graph) -> int:
    """MatMul's A packed in panels where one product with a constant B walks columns outermost."""
    pairs, m_size, n_size, k_size = matmul_batches(graph.info(node.inputs[0]).shape, graph.info(node.inputs[1]).shape)
    if node.inputs[1] not in graph.constants or len(pairs) != 1:
        return 0
    return a_panel_bytes(m_size, k_size) if gemm_plan(m_size, n_size, k_size, True).columns_outer else 0


def matmul_batches(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> tuple[list[tuple[int, int]], int, int, int]:
    """Per output batch: (element offset into A, into B); and M, N, K, with numpy matmul rules."""
    a2 = (1, *a_shape) if len(a_shape) == 1 else a_shape
    b2 = (*b_shape, 1) if len(b_shape) == 1 else b_shape
    m_size, k_size, n_size = a2[-2], a2[-1], b2[-1]
    batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    a_index = np.broadcast_to(np.arange(int(np.prod(a2[:-2], dtype=np.int64))).reshape(a2[:-2]), batch)
    b_index = np.broadcast_to(np.arange(int(np.prod(b2[:-2], dtype=np.int64))).reshape(b2[:-2]), batch)
    pairs = [(int(i) * m_size * k_size, int(j) * k_size * n_size)
             for i, j in zip(a_index.reshape(-1), b_index.reshape(-1), strict=True)]
    return pairs, m_size, n_size, k_size


__all__ = ["GEMM_B_BUDGET", "GEMM_MIN_COLUMNS", "K_BLOCK", "PANEL", "ROWS", "GemmPlan", "a_panel_bytes", "bias_strides",
           "column_block", "column_tiles", "columns_outer", "constant_bias", "gemm_plan", "gemm_scratch",
           "matmul_batches", "matmul_scratch", "pack_columns", "pack_panels"]
