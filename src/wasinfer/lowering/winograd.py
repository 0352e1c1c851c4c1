"""When a convolution runs as Winograd F(2x2, 3x3), and the plan it runs by.

Each 2x2 block of outputs ("tile") is A^T [(G g G^T) . (B^T d B)] A (Lavin & Gray, 2016): per
sample, the zero-padded input P [C, Hp, Wp], the transformed input V [16, C, tiles] and the
16 GEMM results M [16, M, tiles] live in scratch, tile rows in chunks so V and M stay within
CHUNK_BYTES. The weights are transformed (U = G g G^T) and packed in the GEMM's panels at
compile time, which is why compressed (int8 / fp16) weights rule it out: U (16/9 as many
values) would have to be stored as float32. Rendering: backends/wasm/emitters/conv_winograd.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wasinfer.lowering.gemm import pack_panels
from wasinfer.lowering.window import Window

# Below these sizes the transforms cost more than the multiplies they save.
MIN_CHANNELS = 16
MIN_TILE_COLUMNS = 4  # a tile row needs one whole group of 4 tiles
CHUNK_BYTES = 2**21  # transformed input and output of one chunk of tile rows

G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


def fits(win: Window, channels: int, out_channels: int, groups: int, constant_weights: bool) -> bool:
    """3x3, stride 1, undilated, one group, constant weights, enough channels and tile columns."""
    return (win.rank == 2 and win.kernel == (3, 3) and win.strides == (1, 1) and win.dilations == (1, 1)
            and groups == 1 and constant_weights and channels >= MIN_CHANNELS and out_channels >= MIN_CHANNELS
            and -(-win.out_dims[1] // 2) >= MIN_TILE_COLUMNS)


@dataclass(frozen=True)
class WinogradPlan:
    """Tiles, chunks and scratch layout of one Winograd convolution (per sample)."""

    channels: int
    out_channels: int
    tile_rows: int  # th: ceil(output height / 2)
    tile_columns: int  # tw: ceil(output width / 2)
    chunk_rows: int  # tile rows per chunk

    @property
    def padded(self) -> tuple[int, int]:
        """(Hp, Wp) of the zero-padded input copy: every tile's 4x4 patch lies inside it."""
        return 2 * self.tile_rows + 2, 2 * self.tile_columns + 2

    @property
    def v_offset(self) -> int:
        """Byte offset of V (after P) in the scratch."""
        hp, wp = self.padded
        return 4 * self.channels * hp * wp

    @property
    def m_offset(self) -> int:
        """Byte offset of M (after V, sized for a whole chunk) in the scratch."""
        return self.v_offset + 4 * 16 * self.channels * self.chunk_rows * self.tile_columns

    @property
    def scratch_bytes(self) -> int:
        return self.v_offset + 4 * 16 * (self.channels + self.out_channels) * self.chunk_rows * self.tile_columns

    def runs(self, out_height: int) -> list[tuple[int, int, int, int]]:
        """Runs of chunks: (tile rows per chunk, chunks, first tile row, output rows per tile row).
        An odd output height leaves a last tile row with one output row, in a chunk of its own;
        empty runs (no rows or no chunks) are listed too and skipped by the renderer."""
        rows, body = self.chunk_rows, self.tile_rows - out_height % 2
        return [(rows, body // rows, 0, 2), (body % rows, 1, body // rows * rows, 2), (1, out_height % 2, body, 1)]


def winograd_plan(win: Window, channels: int, out_channels: int) -> WinogradPlan:
    """Tile rows per chunk: V and M of a chunk (16 x (C + M) x tiles floats) within CHUNK_BYTES, so
    the scratch stays bounded on big images and a chunk's V is still in cache when the GEMMs read it."""
    th, tw = -(-win.out_dims[0] // 2), -(-win.out_dims[1] // 2)
    chunk = max(1, min(th, CHUNK_BYTES // (64 * (channels + out_channels) * tw)))
    return WinogradPlan(channels, out_channels, th, tw, chunk)


def tile_groups(tw: int, wo: int | None = None) -> tuple[int, list[int]]:
    """Groups of 4 tiles in a tile row: how many lead it with the same code (a run-time loop), and the
    first tiles of the rest: a last partial group overlapping the one before, or (with `wo`, an odd
    output width) the group whose last column must not be written."""
    looped = tw // 4
    if wo is not None and 8 * looped > wo:
        looped -= 1
    rest = list(range(4 * looped, tw - 3, 4))
    if tw % 4:
        rest.append(tw - 4)
    return looped, rest


def transformed_weights(weights: np.ndarray) -> np.ndarray:
    """U[xi] = (G g G^T)[xi] for xi = 4i + j, each [M, C] packed in the GEMM's panels, stacked."""
    u = np.einsum("ia,mcab,jb->ijmc", G, weights.astype(np.float64), G).astype(np.float32)
    return np.stack([pack_panels(u[i, j]) for i in range(4) for j in range(4)])


__all__ = ["CHUNK_BYTES", "MIN_CHANNELS", "MIN_TILE_COLUMNS", "WinogradPlan", "fits", "tile_groups",
           "transformed_weights", "winograd_plan"]
