"""How a Conv runs: im2col + GEMM in tiles of output rows, a direct GEMM, a depthwise window, or Winograd (2-D or 1-D).

For each (sample, group) the column buffer B[K, P] (K = C/g * prod(kernel), P = output
positions) is built in scratch, then Y[Cout/g, P] = W[Cout/g, K] @ B. The buffer is built
and multiplied in tiles of output rows (spatial axis 0) of about COLUMN_BUDGET bytes, so the
GEMM reads it from cache; tiles that read no padding along that axis form runs that share one
copy of the code (`ConvPlan.tiles`). A 1x1, stride-1, unpadded conv needs no buffer (`direct`);
a depthwise conv (one input channel per group) has too little reuse for a GEMM and runs as a
weighted sliding window (`depthwise`, lowering/window.py); a 3x3 stride-1 conv with constant,
uncompressed weights and enough channels runs as Winograd F(2x2, 3x3), F(4x4, 3x3) or F(6x6, 3x3) by its map and
channels (`ConvPlan.winograd_plan`; a 3x3 stride-2 one as F(4x4, 3x3) over its even and odd inputs,
`Winograd44Plan(stride=2)`), and one along a single axis
with a kernel of 3 or 5 there (a sequence, a [1, 3] or [3, 1] kernel) as F(4, 3) / F(4, 5)
(`winograd_1d`; both in lowering/winograd.py). A 1-D conv whose constant filters are a window times the
DFT's cosines and sines (a spectrogram) runs as FFTs (`stft`, lowering/dft.py). A batch whose samples have
few output positions each (a short sequence, a small map) runs as one GEMM over all of their columns
(`merged_batch`), instead of a GEMM per sample too narrow for the register tiles.
Constant weights are packed in the GEMM's panels, once per group (`packed_weights`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from wasinfer.ir import Graph, Node
from wasinfer.lowering.dft import StftPlan, stft_plan
from wasinfer.lowering.gemm import pack_panels
from wasinfer.lowering.window import Window, make_window, window_scratch
from wasinfer.lowering.winograd import (
    Winograd1dPlan,
    Winograd44Plan,
    WinogradAxisPlan,
    WinogradPlan,
    fits,
    fits_1d,
    fits_4x4,
    fits_6x6,
    fits_strided,
    winograd_1d_plan,
    winograd_44_plan,
    winograd_plan,
)

COLUMN_BUDGET = 2**20  # column-buffer bytes per tile: about the size of L2
# Per-sample outputs below this many positions make GEMMs too narrow for the register tiles (8 columns): the
# samples' columns then go into one buffer and one GEMM (`merged_batch`). Measured on Silero VAD's 1-D convs
# of 2 and 4 positions over a batch of 32.
MERGE_POSITIONS = 16
MERGE_BUDGET = 2**21  # column buffer and product of a merged batch, bytes at most


@dataclass(frozen=True)
class ConvPlan:
    batch: int
    channels: int
    out_channels: int
    groups: int
    window: Window
    tile_rows: int  # output rows (spatial axis 0) per column-buffer tile
    winograd: bool = False  # 3x3 stride 1 or 2 with constant weights: lowering/winograd.py
    winograd_1d: bool = False  # along one axis, kernel 3 or 5, stride 1, constant weights: F(4, r)
    stft: StftPlan | None = None  # filters that are a windowed DFT: FFTs instead (lowering/dft.py)
    # every sample's columns in one buffer and one GEMM, its product then put in [batch, M, positions] order
    merged_batch: bool = False

    @property
    def k_size(self) -> int:
        return self.channels // self.groups * math.prod(self.window.kernel)

    @property
    def depthwise(self) -> bool:
        """One input channel per group (any channel multiplier): a weighted sliding window."""
        return self.groups == self.channels > 1

    @property
    def direct(self) -> bool:
        """1x1, stride 1, no padding: the input already is the column buffer."""
        w = self.window
        return all(k == 1 for k in w.kernel) and all(s == 1 for s in w.strides) \
            and not any(w.pad_begin) and not any(w.pad_end)

    @property
    def row_size(self) -> int:
        """Output positions per step of spatial axis 0."""
        return math.prod(self.window.out_dims[1:])

    def tiles(self) -> list[tuple[int, int, int]]:
        """(lo, hi, repeat): output rows [lo, hi) of a tile, and how many such tiles follow each
        other. Tiles whose every kernel row reads inside the input differ only by where they read,
        so a run of them shares one copy of the code in a run-time loop."""
        rows, size, win = self.window.out_dims[0], self.tile_rows, self.window
        runs: list[tuple[int, int, int, bool]] = []
        for lo in range(0, rows, size):
            hi = min(rows, lo + size)
            inside = hi - lo == size and all(win.valid(0, k, lo, hi) == (lo, hi) for k in range(win.kernel[0]))
            if inside and runs and runs[-1][3]:
                runs[-1] = (*runs[-1][:2], runs[-1][2] + 1, True)
            else:
                runs.append((lo, hi, 1, inside))
        return [(lo, hi, repeat) for lo, hi, repeat, _ in runs]

    def winograd_plan(self) -> WinogradPlan | Winograd44Plan:
        """F(4x4, 3x3) where rows are wide enough for its groups of 16 outputs or, on a small map, where it computes
        few enough products (`fits_4x4`; at stride 2 always), else F(2x2, 3x3); at stride 1, F(6x6, 3x3) on the same
        plan where its fewer products outweigh its larger transforms (`fits_6x6`)."""
        if self.window.strides != (1, 1) or fits_4x4(self.window, self.out_channels):
            tile = 6 if self.window.strides == (1, 1) and fits_6x6(self.window, self.channels, self.out_channels) else 4
            return winograd_44_plan(self.window, self.channels, self.out_channels, tile)
        return winograd_plan(self.window, self.channels, self.out_channels)

    def winograd_1d_plan(self) -> Winograd1dPlan | WinogradAxisPlan:
        return winograd_1d_plan(self.window, self.channels, self.out_channels)

    @property
    def merged_columns(self) -> int:
        """Columns of a merged batch's GEMM: every sample's output positions."""
        return self.batch * math.prod(self.window.out_dims)

    @property
    def scratch_bytes(self) -> int:
        if self.stft is not None:
            return self.stft.scratch_bytes
        if self.merged_batch:  # the column buffer [K, batch * positions], then the product [M, batch * positions]
            return (self.k_size + self.out_channels) * self.merged_columns * 4
        if self.winograd:
            return self.winograd_plan().scratch_bytes
        if self.winograd_1d:
            return self.winograd_1d_plan().scratch_bytes
        if self.depthwise:
            return window_scratch(self.window)
        return 0 if self.direct else self.k_size * self.tile_rows * self.row_size * 4


def conv_plan(node: Node, graph: Graph) -> ConvPlan:
    x_shape, w_shape = graph.info(node.inputs[0]).shape, graph.info(node.inputs[1]).shape
    kernel_dims = tuple(int(k) for k in node.attr("kernel_shape") or w_shape[2:])
    win = make_window(node, tuple(x_shape[2:]), kernel_dims)
    groups = int(node.attr("group", 1))
    k_size = x_shape[1] // groups * math.prod(kernel_dims)
    row_bytes = k_size * math.prod(win.out_dims[1:]) * 4
    # Winograd's transformed weights are float32: not for weights stored compressed (int8 / fp16)
    transformable = node.inputs[1] not in graph.compressed and node.inputs[1] in graph.constants
    plan = ConvPlan(x_shape[0], x_shape[1], w_shape[0], groups, win, win.out_dims[0],
                    transformable and (fits(win, x_shape[1], w_shape[0], groups, True)
                                       or fits_strided(win, x_shape[1], w_shape[0], groups, True)),
                    transformable and fits_1d(win, x_shape[1], w_shape[0], groups, True))
    if transformable and len(win.in_dims) == 1:
        plan = replace(plan, stft=stft_plan(tuple(x_shape), graph.constants[node.inputs[1]], win.strides,
                                            win.dilations, win.pad_begin + win.pad_end, groups, win.out_dims[0]))
        if plan.stft is not None:
            return plan
    positions = math.prod(win.out_dims)
    if (groups == 1 and node.inputs[1] in graph.constants and not plan.depthwise and not plan.winograd
            and not plan.winograd_1d and plan.batch > 1 and positions < MERGE_POSITIONS
            and plan.batch * positions >= 8 and (k_size + w_shape[0]) * plan.batch * positions * 4 <= MERGE_BUDGET):
        return replace(plan, merged_batch=True)
    if plan.direct:
        return plan
    whole = row_bytes * win.out_dims[0]
    if whole <= 2 * COLUMN_BUDGET and w_shape[0] * k_size * 4 >= whole:
        # Each tile streams all of the weights again: where they outweigh the whole column buffer, that costs more
        # than a buffer past L2, and the last tile of a split is often a few rows (a few columns of 8-wide register
        # tiles): ddddocr_det's 192 -> 384 and 192 -> 192 3x3 stride-2 convs at 13 x 13 (11 + 2 rows, 2.6 and
        # 1.3 MB of weights against a 1.1 MiB buffer) 10% faster alone as one tile.
        return replace(plan, tile_rows=win.out_dims[0])
    return replace(plan, tile_rows=max(1, min(win.out_dims[0], COLUMN_BUDGET // max(row_bytes, 1))))


def conv_scratch(node: Node, graph: Graph) -> int:
    return conv_plan(node, graph).scratch_bytes


def packed_weights(weights: np.ndarray, groups: int) -> np.ndarray:
    """Constant W [M, C/g, kernel] as [groups, ceil(M/g / PANEL), K, PANEL]: each group's
    [M/g, K] matrix in the GEMM's panels (lowering/gemm.py `pack_panels`)."""
    group_out = weights.shape[0] // groups
    return np.stack([pack_panels(g) for g in weights.astype(np.float32).reshape(groups, group_out, -1)])


__all__ = ["COLUMN_BUDGET", "ConvPlan", "conv_plan", "conv_scratch", "packed_weights"]
