"""When a convolution runs as Winograd F(2x2, 3x3), and the plan it runs by.

Each 2x2 block of outputs ("tile") is A^T [(G g G^T) . (B^T d B)] A (Lavin & Gray, 2016): per
sample, the zero-padded input P [C, Hp, Wp], the transformed input V [16, C, tiles] and the
16 GEMM results M [16, M, tiles] live in scratch, tile rows in chunks so V and M stay within
CHUNK_BYTES. The weights are transformed (U = G g G^T) and packed in the GEMM's panels at
compile time, which is why compressed (int8 / fp16) weights rule it out: U (16/9 as many
values) would have to be stored as float32. Rendering: backends/wasm/emitters/conv_winograd.py.

Rows of at least 16 outputs run as F(4x4, 3x3) instead (`Winograd44Plan`, 36 GEMMs for 4x4 tiles: 2.25
multiplies per output instead of 4; its U is 36/9 = 4x the weights, which the module stores); wide maps with
enough channels as F(6x6, 3x3) on the same plan (`tile=6`, `fits_6x6`: 64 GEMMs for 6x6 tiles, 1.78 multiplies
per output, U 64/9 = 7.1x the weights, points 0, +-1, +-2, +-1/2 and infinity to keep float32 error near
F(4x4)'s), and
convolutions along one axis as F(4, 3) / F(4, 5)
(`Winograd1dPlan`, `WinogradAxisPlan`); their transforms come from `toom_cook`.

A 3x3 stride-2 conv runs on the same plan with `stride=2` (`strided_matrices`): along each axis its 4
outputs read 9 inputs, the even ones through the kernel's taps 0 and 2 (F(4, 2): 5 products) and the odd
ones through tap 1 (4 products), so a tile is 9 x 9 = 81 products per channel where im2col makes 16 x 9 =
144. Of its 81 transformed weight matrices only 36 differ (tap 1's rows repeat), which the module stores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wasinfer.lowering.gemm import pack_panels
from wasinfer.lowering.window import Window

# Below these sizes the transforms cost more than the multiplies they save: with fewer than 4 output channels
# the GEMMs run on short row tiles; measured on Cranelift's x86-64 output, 2 input and 4 output channels are
# already 1.1-1.7x faster than im2col (a 12 -> 24 channel 3x3 conv on 208x208: 7.1 -> 3.9 ms).
MIN_CHANNELS = 2
MIN_OUT_CHANNELS = 4
MIN_TILE_COLUMNS = 4  # a tile row needs one whole group of 4 tiles
CHUNK_BYTES = 2**21  # transformed input and output of one chunk of tile rows
# A stride-2 plan's chunks: its 81 products per tile make 2.25x the V and M of F(4x4, 3x3); chunks within L2-sized
# budgets measured 4-7% faster than within CHUNK_BYTES on ddddocr_det's 48 -> 96 and 96 -> 192 channel convs.
STRIDED_CHUNK_BYTES = 2**19
# Fewer input channels leave the stride-2 plan's transforms (81 values in and out per tile and channel) costing more
# than the products they save: 3-channel stems (orientation, ppocr_det, ppocr_cls) measured 2-4% slower whole.
MIN_STRIDED_CHANNELS = 16
# Tiles (GEMM columns) per sample below which a stride-2 plan's transformed weights, 4x the conv's, are read for too
# few columns: ddddocr_det's 13 x 13-output convs (16 tiles; 384 x 192 x 36 floats of U, 10.6 MB) measured 0.8-0.9x
# im2col alone but nothing in the whole model, where U comes from memory rather than cache, and 12 MB more module.
MIN_STRIDED_TILES = 32
# Output channels from which a small map (`fits_4x4`) takes F(4x4, 3x3) for its fewer products: with 24 and 32 its
# larger transforms ate the gain (1.00-1.02x F(2x2, 3x3) alone on 10 x 15 and 14 x 14), from 48 on 0.65-0.83x.
SMALL_MAP_OUT_CHANNELS = 48
# F(6x6, 3x3) (`fits_6x6`) where the share of products it saves times C M / (C + M) is at least this (measured
# 3.7-8.8 at 0.77-0.95x F(4x4, 3x3)'s time, 1.3-1.8 at 1.02-1.4x), and C M at most SIX_BY_SIX_WEIGHTS: its 64 C M
# transformed weights (4 MiB at 128 x 128) are read again for every chunk of tile rows, and 128 -> 256 or 256 -> 256
# channels measured 1.06-1.10x.
SIX_BY_SIX_GAIN = 3.0
SIX_BY_SIX_WEIGHTS = 128 * 128

G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


def fits(win: Window, channels: int, out_channels: int, groups: int, constant_weights: bool) -> bool:
    """3x3, stride 1, undilated, one group, constant weights, enough channels and tile columns."""
    return (win.rank == 2 and win.kernel == (3, 3) and win.strides == (1, 1) and win.dilations == (1, 1)
            and groups == 1 and constant_weights and channels >= MIN_CHANNELS and out_channels >= MIN_OUT_CHANNELS
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


@dataclass(frozen=True)
class Winograd44Plan:
    """F(4x4, 3x3) (Lavin & Gray's F(2x2, 3x3) with tiles of 4x4 outputs from 6x6 inputs: 36 multiplies per 16
    outputs instead of 16 per 4), per sample. Tile columns are rounded up to groups of 4 (one tile per lane). P
    [C, padded rows, step, phase_length] holds the zero-padded input de-interleaved by column phase
    (padded[step * j + p] at [p, j]), so element (a, b) of a group's 4 patches is one v128 load; V [alpha^2, C,
    chunk] and M [alpha^2, M, chunk] hold one chunk of tile rows; R is one row of a last group's 16 outputs.
    With `stride` 2, tiles are 9x9 patches 8 inputs apart (`strided_matrices`)."""

    channels: int
    out_channels: int
    out_dims: tuple[int, int]
    chunk_rows: int  # tile rows per chunk
    stride: int = 1
    tile: int = 4  # outputs per tile side: 4, or 6 for F(6x6, 3x3) (stride 1 only; `fits_6x6`)

    @property
    def step(self) -> int:
        """Input rows (and columns) from one tile to the next: the column phases of P."""
        return self.tile * self.stride

    @property
    def alpha(self) -> int:
        """Patch side: tile + 2 inputs at stride 1 (6, or 8 for F(6x6, 3x3)), 9 at stride 2."""
        return self.tile + 2 if self.stride == 1 else 9

    @property
    def group_columns(self) -> int:
        """Output columns of a group of 4 tiles: 16, or 24 for F(6x6, 3x3)."""
        return 4 * self.tile

    @property
    def points(self) -> int:
        """Transform points, one GEMM each."""
        return self.alpha * self.alpha

    @property
    def tile_rows(self) -> int:
        return -(-self.out_dims[0] // self.tile)

    @property
    def groups(self) -> int:
        """Groups of 4 tiles (group_columns output columns) per tile row."""
        return -(-self.out_dims[1] // self.group_columns)

    @property
    def last_columns(self) -> int:
        return self.out_dims[1] - self.group_columns * (self.groups - 1)

    @property
    def last_rows(self) -> int:
        return self.out_dims[0] - self.tile * (self.tile_rows - 1)

    @property
    def padded_rows(self) -> int:
        return self.step * (self.tile_rows - 1) + self.alpha

    @property
    def phase_length(self) -> int:
        return 4 * self.groups + (self.alpha - 1) // self.step

    @property
    def v_offset(self) -> int:
        return 4 * self.channels * self.padded_rows * self.step * self.phase_length

    @property
    def chunk_columns(self) -> int:
        """GEMM columns of a whole chunk: its tiles."""
        return self.chunk_rows * 4 * self.groups

    @property
    def m_offset(self) -> int:
        return self.v_offset + 4 * self.points * self.channels * self.chunk_columns

    @property
    def r_offset(self) -> int:
        return self.m_offset + 4 * self.points * self.out_channels * self.chunk_columns

    @property
    def scratch_bytes(self) -> int:
        return self.r_offset + 4 * self.group_columns

    def runs(self) -> list[tuple[int, int, int]]:
        """(first tile row, tile rows per chunk, chunks): whole chunks in a loop, then the tile rows left."""
        whole, rest = divmod(self.tile_rows, self.chunk_rows)
        runs = [(0, self.chunk_rows, whole)] if whole else []
        return [*runs, (whole * self.chunk_rows, rest, 1)] if rest else runs

    def matrices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.stride == 2:
            return strided_matrices()
        return toom_cook(self.tile, 3, POINTS_1D[3] if self.tile == 4 else POINTS_6X6)

    def transformed_weights(self, weights: np.ndarray) -> np.ndarray:
        """U[alpha i + j] = (G g G^T)[i, j], each [M, C] in the GEMM's panels, stacked."""
        g = self.matrices()[1]
        u = np.einsum("ia,mcab,jb->ijmc", g, weights.astype(np.float64), g).astype(np.float32)
        return np.stack([pack_panels(u[i, j]) for i in range(self.alpha) for j in range(self.alpha)])


def strided_matrices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A^T [4, 9], G [9, 3], B^T [9, 9] of 4 outputs of a 3-tap, stride-2 correlation y[j] = sum_k g[k] d[2j + k]
    from 9 inputs d: points 0-4 are F(4, 2) (points 0, +-1, 2) on the even inputs with taps 0 and 2, points 5-8
    the odd inputs d[2j + 1] with tap 1 (no transform): y = A^T [(G g) . (B^T d)] as for F(n, r)."""
    at2, g2, bt2 = toom_cook(4, 2, STRIDED_POINTS)
    at, g, bt = np.zeros((4, 9)), np.zeros((9, 3)), np.zeros((9, 9))
    at[:, :5], at[:, 5:] = at2, np.eye(4)
    g[:5, 0], g[:5, 2], g[5:, 1] = g2[:, 0], g2[:, 1], 1.0
    bt[:5, 0::2] = bt2
    bt[5:, 1::2] = np.eye(4)
    return at, g, bt


def fits_4x4(win: Window, out_channels: int) -> bool:
    """Where F(2x2, 3x3) fits, F(4x4, 3x3) too when rows are at least 16 outputs wide and rounding them up to
    groups of 16 computes at most a third more than they keep. On a small map (rows of 12 to 15 outputs, or wider
    ones that round up by more), with SMALL_MAP_OUT_CHANNELS or more, also where its products (36 per tile of 4x4,
    rows and columns rounded up to tiles and groups) are at most 3/4 of F(2x2)'s (16 per tile of 2x2), the ratio the
    column rule allows: alone, 13 x 13 (16 x 16 computed, 0.73 of F(2x2)'s products) at 96 and 192 channels in 0.76-
    0.83x F(2x2)'s time (ddddocr_det's SPP-side and head convs), 14 x 14 256 -> 256 0.65x, 12 x 12 512 -> 512
    0.83x; with 24 or 32 output channels, 1.00-1.02x."""
    rows, columns = win.out_dims
    if rows < 4:
        return False
    if columns >= 16 and 3 * 16 * -(-columns // 16) <= 4 * columns:
        return True
    products_44 = 36 * -(-rows // 4) * 4 * -(-columns // 16)
    products_22 = 16 * -(-rows // 2) * -(-columns // 2)
    return columns >= 12 and out_channels >= SMALL_MAP_OUT_CHANNELS and 4 * products_44 <= 3 * products_22


def fits_strided(win: Window, channels: int, out_channels: int, groups: int, constant_weights: bool) -> bool:
    """3x3, stride 2, undilated, one group, constant weights, enough channels, rows that rounding up to groups of
    16 outputs grows by at most a third (12 outputs and up) and enough tiles of 4x4 outputs."""
    if not (win.rank == 2 and win.kernel == (3, 3) and win.strides == (2, 2) and win.dilations == (1, 1)
            and groups == 1 and constant_weights and channels >= MIN_STRIDED_CHANNELS
            and out_channels >= MIN_OUT_CHANNELS):
        return False
    groups_of_16 = -(-win.out_dims[1] // 16)
    return 3 * 16 * groups_of_16 <= 4 * win.out_dims[1] and -(-win.out_dims[0] // 4) * 4 * groups_of_16 >= \
        MIN_STRIDED_TILES


def fits_6x6(win: Window, channels: int, out_channels: int) -> bool:
    """Where F(4x4, 3x3) fits at stride 1, F(6x6, 3x3) instead where the share of products it saves (64 per tile of
    6x6 against 36 per tile of 4x4, rows and columns rounded up to tiles and to groups of 24 and 16 columns) times
    C M / (C + M) (the GEMMs' work per unit of transform work) is at least SIX_BY_SIX_GAIN, and its transformed
    weights (64 C M floats) are at most SIX_BY_SIX_WEIGHTS. Measured alone (least thread CPU time per run, F(6x6) /
    F(4x4), several runs on a loaded 2-core machine): 52 x 52 96 -> 96 (saves 7.7%, gain 3.7) 0.77-0.93x, 80 x 120
    96 -> 24 (22%, 4.2) 0.83-0.88x, 104 x 104 64 -> 64 (12%, 3.9) 0.89-0.95x, 112 x 112 128 -> 128 (14%, 8.8) 0.89x,
    224 x 224 64 -> 64 (14%, 4.4) 0.87-0.92x, 52 x 52 128 -> 128 (7.7%, 4.9) 0.87-1.03x; but 52 x 52 48 -> 48 (7.7%,
    1.8) 1.02-1.08x, 40 x 60 96 -> 24 (7%, 1.3) 1.1-1.4x, 104 x 104 24 -> 24 (12%, 1.5) 1.15-1.3x, 208 x 208
    12 -> 24 (17%, 1.3) 1.07-1.2x; 56 x 56 128 -> 256 and 256 -> 256 (gain 4.1 and 6.1, 8 and 16 MiB of
    transformed weights, read again for every chunk) 1.06-1.10x; maps whose rows are too short for groups of 24
    (26 x 26, 20 x 30: more products) 1.3-2.7x."""
    rows, columns = win.out_dims
    products_66 = 64 * -(-rows // 6) * 4 * -(-columns // 24)
    products_44 = 36 * -(-rows // 4) * 4 * -(-columns // 16)
    saved = 1 - products_66 / products_44
    return (saved * channels * out_channels / (channels + out_channels) >= SIX_BY_SIX_GAIN
            and channels * out_channels <= SIX_BY_SIX_WEIGHTS)


def winograd_44_plan(win: Window, channels: int, out_channels: int, tile: int = 4) -> Winograd44Plan:
    """F(4x4, 3x3) at the window's stride (1 or 2), or F(6x6, 3x3) (`tile` 6, stride 1), chunks of tile rows
    within CHUNK_BYTES."""
    stride = win.strides[0]
    points, budget = ((tile + 2) ** 2, CHUNK_BYTES) if stride == 1 else (81, STRIDED_CHUNK_BYTES)
    groups = -(-win.out_dims[1] // (4 * tile))
    chunk = max(1, min(-(-win.out_dims[0] // tile), budget // (4 * points * (channels + out_channels) * 4 * groups)))
    return Winograd44Plan(channels, out_channels, (win.out_dims[0], win.out_dims[1]), chunk, stride, tile)


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




# ---- 1-D: F(n, r) along the one spatial axis of a convolution whose other spatial dims are 1

# Outputs per tile and the finite interpolation points per kernel size (infinity is the last point): F(4, 3)
# and F(4, 5), 6 and 8 multiplies per 4 outputs instead of 12 and 20. Points 0, +-1, +-2, +-1/2 keep the
# transforms' coefficients small, so results stay within float32 rounding of the direct sum's tolerance.
TILE_1D = 4
POINTS_1D: dict[int, tuple[float, ...]] = {3: (0, 1, -1, 2, -2), 5: (0, 1, -1, 2, -2, 0.5, -0.5)}
STRIDED_POINTS = (0, 1, -1, 2)  # F(4, 2) of a stride-2 conv's even taps (`strided_matrices`)
# F(6x6, 3x3)'s points (Lavin & Gray's): the smallest-magnitude set for 8 points, the same as F(4, 5)'s
POINTS_6X6 = (0, 1, -1, 2, -2, 0.5, -0.5)


def toom_cook(n: int, r: int, points: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A^T [n, a], G [a, r], B^T [a, a] (a = n + r - 1) of F(n, r): y = A^T [(G g) . (B^T d)] is the
    correlation y[j] = sum_k g[k] d[j + k] of a tile's a inputs d with the kernel g. It is the transpose of
    Toom-Cook's polynomial product c = V^-1 [(V_r g) . (V_n h)] (V: evaluation at the points, infinity
    giving the leading coefficient), so A^T = V_n^T, G = V_r, B^T = V^-T."""
    a = n + r - 1
    assert len(points) == a - 1

    def evaluation(columns: int) -> np.ndarray:
        rows = [[float(p) ** k for k in range(columns)] for p in points]
        return np.array([*rows, [0.0] * (columns - 1) + [1.0]])

    bt, g = np.linalg.inv(evaluation(a)).T, evaluation(r)
    # each row of B^T scaled to small integers (and G's row by the inverse): B^T runs on the data in float32 at
    # run time, exactly; G runs once on the weights in float64
    for i, row in enumerate(bt):
        scale = next(k for k in range(1, 10_000) if np.allclose(row * k, np.round(row * k), atol=1e-9))
        bt[i], g[i] = np.round(row * scale), g[i] / scale
    return evaluation(n).T, g, bt


def chunk_runs(total: int, per_chunk: int) -> list[tuple[int, int, int]]:
    """(first, per chunk, chunks) runs covering `total` items: whole chunks of `per_chunk` (one loop), then the rest."""
    whole, rest = divmod(total, per_chunk)
    runs = [(0, per_chunk, whole)] if whole else []
    return [*runs, (whole * per_chunk, rest, 1)] if rest else runs


class _ToomCook1d:
    """What the two 1-D plans share: F(TILE_1D, kernel)'s points, matrices and transformed weights."""

    kernel: int

    @property
    def alpha(self) -> int:
        return TILE_1D + self.kernel - 1

    def matrices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return toom_cook(TILE_1D, self.kernel, POINTS_1D[self.kernel])

    def transformed_weights(self, weights: np.ndarray) -> np.ndarray:
        return transformed_weights_1d(weights, self.kernel)


@dataclass(frozen=True)
class Winograd1dPlan(_ToomCook1d):
    """F(4, r) along the last spatial axis, per sample: `pre` rows (1 for a sequence) of `length` inputs, each
    zero-padded by `pad` in front and cut into tiles of TILE_1D outputs, a row's tiles rounded up to whole groups of
    4 (one tile per lane). Scratch holds P [C, pre, TILE_1D, phase_length] (each row's padded inputs de-interleaved
    by phase, x_pad[j * TILE_1D + p] at [p, j], so a tile element of 4 tiles is one v128 load), and for one chunk of
    `chunk_groups` groups V [a, C, 4 x chunk], M [a, M, 4 x chunk] and R, the 16 outputs of a row's last group."""

    channels: int
    out_channels: int
    length: int
    out_length: int
    pad: int
    kernel: int
    pre: int
    chunk_groups: int

    @property
    def row_groups(self) -> int:
        """Groups of 4 tiles per row."""
        return -(-self.out_length // (4 * TILE_1D))

    @property
    def groups(self) -> int:
        return self.pre * self.row_groups

    @property
    def last_outputs(self) -> int:
        """Outputs of a row's last group that exist (1 to 16)."""
        return self.out_length - 4 * TILE_1D * (self.row_groups - 1)

    @property
    def phase_length(self) -> int:
        return 4 * self.row_groups + (self.alpha - 1) // TILE_1D

    @property
    def v_offset(self) -> int:
        return 4 * self.channels * self.pre * TILE_1D * self.phase_length

    @property
    def m_offset(self) -> int:
        return self.v_offset + 16 * self.alpha * self.channels * self.chunk_groups

    @property
    def r_offset(self) -> int:
        return self.m_offset + 16 * self.alpha * self.out_channels * self.chunk_groups

    @property
    def scratch_bytes(self) -> int:
        return self.r_offset + 4 * 4 * TILE_1D

    def chunks(self) -> list[tuple[int, int, int]]:
        """Runs of chunks: (first group, groups per chunk, chunks); whole chunks in a loop, then the groups left."""
        return chunk_runs(self.groups, self.chunk_groups)



@dataclass(frozen=True)
class WinogradAxisPlan(_ToomCook1d):
    """F(4, r) along a spatial axis followed by `post` >= 4 positions (a [3, 1] kernel over [H, W]): per sample,
    `pre` x `length` x `post` inputs per channel, zero-padded along the axis into P [C, pre, padded_length, post].
    A unit is one (pre index, tile) pair with its `post` columns, 4 columns per v128, so a tile element of 4
    columns is one v128 load from P and 4 outputs one v128 store into Y (no transposes); V [a, C, chunk x post]
    and M [a, M, chunk x post] hold one chunk of `chunk_units` units."""

    channels: int
    out_channels: int
    length: int
    out_length: int
    pad: int
    kernel: int
    pre: int
    post: int
    chunk_units: int
    # along the last axis with `post` rows before it (rows too short for Winograd1dPlan's groups): P holds the
    # input transposed, [C, 1, padded_length, rows], and each v128 of outputs goes to 4 rows, lane by lane
    transposed: bool = False

    @property
    def tiles(self) -> int:
        return -(-self.out_length // TILE_1D)

    @property
    def units(self) -> int:
        return self.pre * self.tiles

    @property
    def padded_length(self) -> int:
        """Rows of P per pre index: the last tile reads up to row TILE_1D * (tiles - 1) + alpha."""
        return TILE_1D * (self.tiles - 1) + self.alpha

    @property
    def v_offset(self) -> int:
        return 4 * self.channels * self.pre * self.padded_length * self.post

    @property
    def m_offset(self) -> int:
        return self.v_offset + 4 * self.alpha * self.channels * self.chunk_units * self.post

    @property
    def scratch_bytes(self) -> int:
        return self.m_offset + 4 * self.alpha * self.out_channels * self.chunk_units * self.post

    def chunks(self) -> list[tuple[int, int, int]]:
        """Runs of chunks: (first unit, units per chunk, chunks); whole chunks in a loop, then the units left."""
        return chunk_runs(self.units, self.chunk_units)



def transformed_weights_1d(weights: np.ndarray, kernel: int) -> np.ndarray:
    """U[xi] = (G g)[xi] for each point of F(4, kernel), each [M, C] in the GEMM's panels, stacked."""
    g = weights.astype(np.float64).reshape(weights.shape[0], weights.shape[1], kernel)
    u = np.einsum("xk,mck->xmc", toom_cook(TILE_1D, kernel, POINTS_1D[kernel])[1], g).astype(np.float32)
    return np.stack([pack_panels(ux) for ux in u])


def conv_axis(win: Window) -> int | None:
    """The one spatial axis a 1-D convolution runs along; every other axis passes through (kernel 1, stride 1,
    unpadded). A window with no kernel axis longer than 1 is a pointwise conv, not this."""
    axes = [a for a in range(win.rank) if win.kernel[a] > 1]
    if len(axes) != 1:
        return None
    through = all(win.in_dims[a] == win.out_dims[a] and win.strides[a] == 1 and not win.pad_begin[a]
                  and not win.pad_end[a] for a in range(win.rank) if a != axes[0])
    return axes[0] if through else None


def fits_1d(win: Window, channels: int, out_channels: int, groups: int, constant_weights: bool) -> bool:
    """A 1-D convolution (conv_axis) with a kernel of 3 or 5, stride 1, undilated, one group, constant weights and
    enough channels: along the last spatial axis (rows of outputs long enough that rounding them up to groups of
    16 wastes at most a quarter, or at least 4 rows), or along an axis followed by at least 4 positions (at
    least 2 tiles)."""
    a = conv_axis(win)
    if a is None or not (win.kernel[a] in POINTS_1D and win.strides[a] == 1 and win.dilations[a] == 1
                         and groups == 1 and constant_weights and channels >= MIN_CHANNELS
                         and out_channels >= MIN_OUT_CHANNELS):
        return False
    pre, post, out_length = math.prod(win.in_dims[:a]), math.prod(win.in_dims[a + 1:]), win.out_dims[a]
    if post == 1 and _whole_groups(out_length):
        return True
    return (post >= 4 or (post == 1 and pre >= 4)) and out_length > TILE_1D


def _whole_groups(out_length: int) -> bool:
    """Rows rounded up to groups of 16 outputs (Winograd1dPlan) compute at most a third more than they keep."""
    return 3 * 4 * TILE_1D * -(-out_length // (4 * TILE_1D)) <= 4 * out_length


def winograd_1d_plan(win: Window, channels: int, out_channels: int) -> Winograd1dPlan | WinogradAxisPlan:
    a = conv_axis(win)
    assert a is not None
    alpha = TILE_1D + win.kernel[a] - 1
    pre, post = math.prod(win.in_dims[:a]), math.prod(win.in_dims[a + 1:])
    transposed = post == 1 and not _whole_groups(win.out_dims[a])
    if transposed:  # the rows before the axis take the trailing positions' place
        pre, post = 1, pre
    if post > 1:
        units = pre * -(-win.out_dims[a] // TILE_1D)
        chunk = max(1, min(units, CHUNK_BYTES // (4 * alpha * (channels + out_channels) * post)))
        return WinogradAxisPlan(channels, out_channels, win.in_dims[a], win.out_dims[a], win.pad_begin[a],
                                win.kernel[a], pre, post, chunk, transposed)
    groups = pre * -(-win.out_dims[a] // (4 * TILE_1D))
    chunk = max(1, min(groups, CHUNK_BYTES // (16 * alpha * (channels + out_channels))))
    return Winograd1dPlan(channels, out_channels, win.in_dims[a], win.out_dims[a], win.pad_begin[a], win.kernel[a],
                          pre, chunk)


__all__ = ["CHUNK_BYTES", "MIN_CHANNELS", "MIN_OUT_CHANNELS", "MIN_STRIDED_CHANNELS", "MIN_STRIDED_TILES",
           "MIN_TILE_COLUMNS", "POINTS_1D", "POINTS_6X6", "SIX_BY_SIX_GAIN", "SIX_BY_SIX_WEIGHTS",
           "STRIDED_CHUNK_BYTES", "STRIDED_POINTS", "TILE_1D", "Winograd1dPlan", "Winograd44Plan", "WinogradAxisPlan",
           "WinogradPlan", "conv_axis", "fits", "fits_1d", "fits_4x4", "fits_6x6", "fits_strided", "strided_matrices",
           "tile_groups", "toom_cook", "transformed_weights", "transformed_weights_1d", "winograd_1d_plan",
           "winograd_44_plan", "winograd_plan"]
