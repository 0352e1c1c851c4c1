"""The int8 convolution's plan: y = requantize(conv(x (u)int8, w int8) + bias) (QConvInt8).

Per (sample, group), the convolution is the product Y[M/g, P] = W[M/g, K] @ B[K, P] (K = C/g x
kernel taps, P = output positions, NCHW so Y's rows are the output planes) of the constant
weights and a column buffer B of raw activation bytes, one row of P per (input channel, tap),
padding written as x_zero (the value 0 in x's quantization). A 1x1, stride-1, unpadded conv
reads the input itself as B (`direct`). 1-D convs run as 2-D ones of height 1. A depthwise conv
(undilated, stride 1 or 2 along the width, 8 outputs or more per row) has no column buffer: it
slides over a padded copy of each input plane (`SlidingPlan`).

The products run on `i32x4.dot_i16x8_s`, so K goes in pairs. The rows are then interleaved per
position tile into blocks of [KP][width][2] bytes (`block_bytes`): for each k pair, the tile's
positions' (x[k, p], x[k+1, p]) byte pairs, which the kernel reads in order, eight bytes at a
time widened to i16 by `v128.load8x8_s`/`_u` (signed or not as x is): four positions' pairs,
the dot's operand as it stands. Each is multiplied by a splat of an output channel's weight
pair (w[m, k], w[m, k+1]), packed at compile time as i16 pairs in panels of PANEL channels
([groups][panels][KP][PANEL] i32, `pack_weights`); an odd K's last pair repeats row K-1 against
a zero weight. The activations are multiplied raw, not shifted by x_zero: the correction
-x_zero * sum_k w[m, k] is folded into the bias at compile time (`folded_bias`), which leaves the
inner loop nothing to subtract. Raw uint8 values and int8 weights make i16 pair sums of at most
2 x 255 x 128, summed exactly in i32 for K < 65000 (QCONV_MAX_K).

In the relaxed code variant, weights that fit 7 bits after a per-channel shift (`narrow_weights`:
ONNX Runtime's `reduce_range` weights, mostly) run on relaxed SIMD's
`i32x4.relaxed_dot_i8x16_i7x16_add_s` (four signed bytes times four 7-bit bytes per i32 lane,
added to the lane) with the activations as the signed operand: one dot per four products,
measured 1.06-1.56x the plain kernel on x86-64 (`NarrowWeights` has the algebra). Any other
weights may take a second relaxed kernel (emitters/qconv.py RELAXED_DOT, off by default).
Both make the weights into byte quads from the same packed i16 pairs, once per call in scratch
(`quad_weight_bytes`: two k pairs' sixteen bytes per panel become the panel's k quads in one
shuffle), so that the data section stays the plain variant's, as attach_relaxed_code requires,
and a channel's quad is splatted in its load. In the second kernel the weights are the signed
operand and the activations the 7-bit one: each byte split when its tile's block is interleaved,
x = l + 128 h (uint8) or l - 128 h (int8, two's complement), l = x & 127 and h = x >> 7 (0 or 1),
so the block holds per k quad [2][width][4] bytes (the l bytes, then the h bytes) and every
product is exact; the kernel sums l and h apart and joins them once per tile
(acc_l +/- acc_h << 7). `block_bytes` and `scratch_bytes` make room for either kernel, so both
builds have one memory layout (the narrow kernel's per-channel tables are placed by both builds
too). Two dots per four products is why the second kernel is off by default: where the
engine lowers the dot to pmaddubsw + pmaddwd + paddd (wasmtime on x86-64), it does twice the
multiplies of `i32x4.dot_i16x8_s` (docs/compiler.md "int8 on relaxed SIMD").

Tiles: PANEL output channels x 8 positions (8 i32x4 accumulators), or 1 channel x 32 positions
where a group has one output channel (a depthwise conv the sliding kernel does not take: K is
small, so a wide tile spreads the tile's setup over more positions). Position tiles start every `width` positions;
a last partial tile overlaps the one before (recomputing a few positions bit for bit); fewer
positions than one tile are padded in the column buffer and only P are stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wasinfer.ir import Graph, Node
from wasinfer.lowering.window import Window, make_window
from wasinfer.ops.quantized import QCONV_MAX_K, QCONV_MAX_TAPS

PANEL = 4  # output channels per register tile


@dataclass(frozen=True)
class QConvPlan:
    batch: int
    channels: int
    out_channels: int
    groups: int
    window: Window  # always 2-D: a 1-D conv is one of height 1

    @property
    def group_in(self) -> int:
        return self.channels // self.groups

    @property
    def group_out(self) -> int:
        return self.out_channels // self.groups

    @property
    def taps(self) -> int:
        return math.prod(self.window.kernel)

    @property
    def k_size(self) -> int:
        return self.group_in * self.taps

    @property
    def k_pairs(self) -> int:
        return -(-self.k_size // 2)

    @property
    def panel(self) -> int:
        return 1 if self.group_out == 1 else PANEL

    @property
    def width(self) -> int:
        """Output positions per register tile."""
        return 32 if self.panel == 1 else 8

    @property
    def positions(self) -> int:
        return math.prod(self.window.out_dims)

    @property
    def in_positions(self) -> int:
        return math.prod(self.window.in_dims)

    @property
    def direct(self) -> bool:
        """1x1, stride 1, no padding, at least one tile of positions: the input is the column buffer."""
        w = self.window
        return (w.kernel == (1, 1) and w.strides == (1, 1) and not any(w.pad_begin) and not any(w.pad_end)
                and self.positions >= self.width)

    @property
    def row_bytes(self) -> int:
        """Bytes between rows k and k+1 of the column buffer (or of the input, when direct)."""
        return self.in_positions if self.direct else max(self.positions, self.width)

    @property
    def starts(self) -> tuple[int, ...]:
        """Each position tile's first position; the last one overlaps when P is not a multiple of width."""
        if self.positions <= self.width:
            return (0,)
        starts = tuple(range(0, self.positions - self.width + 1, self.width))
        if self.positions % self.width:
            starts += (self.positions - self.width,)
        return starts

    @property
    def regular(self) -> int:
        """Tiles that start at multiples of `width` (a run-time loop); the rest are `starts[regular:]`."""
        return sum(1 for i, s in enumerate(self.starts) if s == i * self.width)

    @property
    def stored(self) -> int:
        """Positions a tile stores: all of them, unless there are fewer than one tile."""
        return min(self.width, self.positions)

    @property
    def panels(self) -> int:
        return -(-self.group_out // self.panel)

    @property
    def group_weight_bytes(self) -> int:
        return self.panels * self.k_pairs * self.panel * 4

    @property
    def sliding(self) -> bool:
        """Depthwise (one input channel per group), undilated, stride 1 or 2 along the width and at
        least 8 outputs per row: the sliding kernel (`SlidingPlan`), with no column buffer."""
        w = self.window
        return (self.group_in == 1 and self.groups > 1 and w.dilations == (1, 1) and w.strides[1] in (1, 2)
                and w.out_dims[1] >= 8)

    @property
    def sliding_plan(self) -> SlidingPlan:
        w = self.window
        (kh, kw), (sh, sw) = w.kernel, w.strides
        width = max(w.pad_begin[1] + w.in_dims[1], (w.out_dims[1] - 1) * sw + kw) + 16  # + one load's reach
        height = max(w.pad_begin[0] + w.in_dims[0], (w.out_dims[0] - 1) * sh + kh)
        return SlidingPlan(height, width, -(-kw // 2))

    @property
    def rows_bytes(self) -> int:
        """Scratch for the column buffer's rows (none when direct)."""
        return 0 if self.direct else self.k_size * self.row_bytes

    @property
    def k_quads(self) -> int:
        """Steps of the relaxed-SIMD kernel: four k at a time (its last one may hold a single pair)."""
        return -(-self.k_pairs // 2)

    @property
    def block_bytes(self) -> int:
        """Room for one position tile's interleaved columns in either code variant: the plain
        kernel's [KP][width][2] bytes, or the relaxed kernel's [KQ][2][width][4] (each k quad's
        low seven bits, then its top bits), the larger. One size for both, so that the two
        builds share one memory layout (artifact/variants.py)."""
        return max(self.k_pairs * self.width * 2, self.k_quads * self.width * 8)

    @property
    def quad_weight_bytes(self) -> int:
        """The relaxed kernel's copy of the weights, made once per call from the packed i16 pairs:
        [groups][panels][KQ][PANEL][4] bytes, each channel's k quad one `v128.load32_splat`."""
        return self.groups * self.panels * self.k_quads * self.panel * 4

    @property
    def scratch_bytes(self) -> int:
        """Column buffer, blocks and the relaxed kernel's weight quads: the same in both code
        variants (the plain one leaves the quads' room unused)."""
        if self.sliding:
            plane = self.sliding_plan
            return plane.height * plane.width
        return self.rows_bytes + len(self.starts) * self.block_bytes + self.quad_weight_bytes


@dataclass(frozen=True)
class SlidingPlan:
    """A depthwise conv's sliding kernel: each input plane copied into a padded plane of
    height x width bytes (padding x_zero, written once per call; `width` leaves room for the
    last load of a row), then every eight outputs of a row summed over the kernel's rows and
    its taps in pairs, (w[i, j], w[i, j+1]) against adjacent input bytes:

    - stride 1: `v128.load8x8` at the tap widens x[c+j .. c+j+7], whose lane pairs are
      (x[c+j+2q], x[c+j+2q+1]): the dot gives outputs c, c+2, c+4, c+6; the same load one byte
      on gives the odd outputs; the two are interleaved once, after the sums;
    - stride 2: the pairs (x[2(c+q)+j], x[2(c+q)+j+1]) are adjacent already: two loads give
      outputs c .. c+3 and c+4 .. c+7.

    No column buffer and no shuffle in the sums; a kernel row of odd width pairs its last tap
    with a zero weight. Weights: [M][kernel rows][pairs] i16 pairs (`pack_sliding_weights`)."""

    height: int
    width: int
    pairs: int  # tap pairs per kernel row


def pack_sliding_weights(w: np.ndarray, plan: QConvPlan) -> np.ndarray:
    """W [M, 1, kh, kw] int8 as i16 [M][kh][pairs][2], an odd row's last pair (w, 0)."""
    kh, kw = plan.window.kernel
    pairs = plan.sliding_plan.pairs
    padded = np.zeros((w.shape[0], kh, pairs * 2), np.int16)
    padded[:, :, :kw] = w.reshape(w.shape[0], kh, kw)
    return np.ascontiguousarray(padded).reshape(-1)


def _plane(win: Window) -> Window:
    """A 1-D window as a 2-D one of height 1."""
    if win.rank == 2:
        return win
    return Window((1, *win.in_dims), (1, *win.out_dims), (1, *win.kernel), (1, *win.strides),
                  (1, *win.dilations), (0, *win.pad_begin), (0, *win.pad_end))


def qconv_plan(node: Node, graph: Graph) -> QConvPlan:
    x_shape, w_shape = graph.info(node.inputs[0]).shape, graph.info(node.inputs[1]).shape
    kernel_dims = tuple(int(k) for k in node.attr("kernel_shape") or w_shape[2:])
    win = make_window(node, tuple(x_shape[2:]), kernel_dims)
    return QConvPlan(x_shape[0], x_shape[1], w_shape[0], int(node.attr("group", 1)), _plane(win))


def pack_weights(w: np.ndarray, plan: QConvPlan) -> np.ndarray:
    """W [M, C/g, *kernel] int8 as i16 [groups][panels][KP][PANEL][2]: per k pair, the PANEL
    channels' (w[m, 2p], w[m, 2p+1]) pairs, each one i32 that `v128.load32_splat` spreads."""
    per_group = w.reshape(plan.groups, plan.group_out, plan.k_size).astype(np.int16)
    padded = np.zeros((plan.groups, plan.panels * plan.panel, plan.k_pairs * 2), np.int16)
    padded[:, :plan.group_out, :plan.k_size] = per_group
    shaped = padded.reshape(plan.groups, plan.panels, plan.panel, plan.k_pairs, 2).transpose(0, 1, 3, 2, 4)
    return np.ascontiguousarray(shaped).reshape(-1)


def folded_bias(w: np.ndarray, bias: np.ndarray, x_zero: int) -> np.ndarray:
    """bias[m] - x_zero * sum_k w[m, k]: the zero point's share of the sum, so the kernel can
    multiply raw activations (int32, exact: |x_zero * sum| < 255 x 128 x K)."""
    sums = w.reshape(w.shape[0], -1).astype(np.int64).sum(axis=1)
    folded: np.ndarray = (bias.astype(np.int64) - x_zero * sums).astype(np.int32)
    return folded


@dataclass(frozen=True)
class NarrowWeights:
    """Weights that fit relaxed SIMD's 7-bit operand after a per-channel shift: b = w - offset[m]
    in 0..127 for every weight and for the zero padding (offset[m] = min(0, min_k w[m, k])), as
    ONNX Runtime's `reduce_range` weights (-64..64) do unless a channel holds both -64 and 64.
    The relaxed kernel then takes the activations as the signed operand (uint8 shifted to int8 by
    x ^ 0x80, s = x - 128) and needs one dot per four products:
        sum_k w x = sum_k b s + offset[m] * sum_k s + (128 * sum_k w for uint8)
    `offsets` and `biases` (the folded bias plus that last term) are int32 per channel; `quad_offsets`
    repeats each channel's offset four times per panel ([groups][panels][PANEL x 4] int8), what
    `_weight_quads` subtracts from a panel's weight quads."""

    offsets: np.ndarray
    biases: np.ndarray
    quad_offsets: np.ndarray


def narrow_weights(w: np.ndarray, folded: np.ndarray, signed_x: bool, plan: QConvPlan) -> NarrowWeights | None:
    """The shift that makes every channel's weights 7-bit, or None where a channel spans more than 128 values."""
    flat = w.reshape(w.shape[0], -1).astype(np.int64)
    offsets = np.minimum(flat.min(axis=1), 0)
    if (np.maximum(flat.max(axis=1), 0) - offsets).max() > 127:
        return None
    biases = folded.astype(np.int64) + (0 if signed_x else 128 * flat.sum(axis=1))
    padded = np.zeros((plan.groups, plan.panels * plan.panel), np.int8)
    padded[:, :plan.group_out] = offsets.reshape(plan.groups, plan.group_out)
    quad_offsets = np.repeat(padded, 4, axis=1).reshape(-1)
    return NarrowWeights(offsets.astype(np.int32), biases.astype(np.int32), np.ascontiguousarray(quad_offsets))


def fits(plan: QConvPlan) -> bool:
    """Whether the kernel runs this conv exactly (ops/quantized.py: QCONV_MAX_TAPS, QCONV_MAX_K)."""
    return plan.taps <= QCONV_MAX_TAPS and plan.k_size < QCONV_MAX_K and plan.positions > 0


def reference(x: np.ndarray, x_zero: int, w: np.ndarray, bias: np.ndarray, scale: np.ndarray, y_zero: int,
              y_dtype: np.dtype[np.integer], strides: tuple[int, int] = (1, 1),  # type: ignore[type-var]
              pads: tuple[int, int, int, int] = (0, 0, 0, 0), dilations: tuple[int, int] = (1, 1),
              groups: int = 1) -> np.ndarray:
    """What the kernel computes for a 2-D conv, in numpy (int64 sums, float32 requantisation)."""
    n, _, h, wd = x.shape
    m, cg, kh, kw = w.shape
    padded = np.pad(x.astype(np.int64) - x_zero, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (h + pads[0] + pads[2] - (kh - 1) * dilations[0] - 1) // strides[0] + 1
    ow = (wd + pads[1] + pads[3] - (kw - 1) * dilations[1] - 1) // strides[1] + 1
    acc = np.zeros((n, m, oh, ow), np.int64)
    mg = m // groups
    for i in range(kh):
        for j in range(kw):
            window = padded[:, :, i * dilations[0]:i * dilations[0] + (oh - 1) * strides[0] + 1:strides[0],
                            j * dilations[1]:j * dilations[1] + (ow - 1) * strides[1] + 1:strides[1]]
            for g in range(groups):
                acc[:, g * mg:(g + 1) * mg] += np.einsum(
                    "nchw,mc->nmhw", window[:, g * cg:(g + 1) * cg], w[g * mg:(g + 1) * mg, :, i, j].astype(np.int64))
    acc += bias.astype(np.int64).reshape(1, -1, 1, 1)
    info = np.iinfo(y_dtype)
    scaled = acc.astype(np.int32).astype(np.float32) * scale.astype(np.float32).reshape(1, -1, 1, 1)
    clamped = np.clip(scaled, np.float32(info.min - y_zero), np.float32(info.max - y_zero))
    out: np.ndarray = (np.rint(clamped).astype(np.int32) + y_zero).astype(y_dtype)
    return out


__all__ = ["PANEL", "NarrowWeights", "QConvPlan", "SlidingPlan", "fits", "folded_bias", "narrow_weights",
           "pack_sliding_weights", "pack_weights", "qconv_plan", "reference"]
