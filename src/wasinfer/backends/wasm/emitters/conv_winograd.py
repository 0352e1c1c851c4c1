"""3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3), F(4x4, 3x3) or F(6x6, 3x3); 1-D ones by
F(4, r).

Each 2x2 block of outputs ("tile") is A^T [(G g G^T) . (B^T d B)] A, with d the tile's 4x4
input patch and g the 3x3 kernel (Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks", 2016). Summed over input channels, the 16 elementwise products become 16
independent GEMMs, U[xi] [M, C] @ V[xi] [C, tiles], which run on the shared GEMM (weights
transformed and packed in its panels at compile time). Per sample:

1. the input, zero-padded, into scratch P [C, Hp, Wp] (Hp, Wp: 2 x tiles + 2);
2. input transform: V[xi, c, t] for 4 tiles at once, one per lane: a tile row's patches start
   2 columns apart, so each patch element of 4 tiles comes from two overlapping v128 loads and
   one shuffle; the transform itself is adds and subtracts on whole vectors;
3. the 16 GEMMs, in a run-time loop over xi;
4. output transform, bias, the fused activation, and the two output columns of 4 tiles
   interleaved into 8 consecutive outputs (two v128 stores per output row).

A tile row whose tile count is not a multiple of 4 ends with a group overlapping the previous
one (identical values written twice); an odd output width or height crops the last column or row.
F(2x2, 3x3)'s transforms use only 0, +-1 and +-0.5, so results stay within float32 rounding
of the direct sum (ONNX Runtime's own tolerance tests hold).

Rows of at least 16 outputs run as F(4x4, 3x3) (`emit_winograd_44`): 6x6 patches, 36 GEMMs, 2.25
multiplies per output instead of F(2x2, 3x3)'s 4, the input de-interleaved by column phase so a patch
element of 4 tiles is one v128 load. Its B^T holds small integers (4, 5) and G the fractions (applied
to the weights in float64), which puts results about 1e-5 of the largest output from the direct sum.
F(6x6, 3x3) runs on the same emitter (8x8 patches 6 inputs apart, 64 GEMMs, groups of 24 output columns: each
output row's 6 v128s shuffled into 24 consecutive outputs); its B^T rows and A^T columns for the points +-p come
in pairs, computed as e + o and e - o (`_paired_rows`, `_column_pairs`), and its results lie about 1e-5 of the
largest output from the direct sum.
A 3x3 stride-2 conv runs on the same emitter with 9x9 patches 8 inputs apart (8 column phases, 81 GEMMs):
along each axis the even inputs go through F(4, 2) with taps 0 and 2, the odd ones straight to tap 1's
points (lowering/winograd.py `strided_matrices`); those rows of B^T copy an input row, so the input
transform loads such a row where it stores it instead of holding it through the column pass.

When a conv qualifies, its tiles and chunks, the scratch layout and the transformed weights are
planned in lowering/winograd.py; this module renders that plan.

Convolutions along one axis (audio and byte sequences, [1, 3] and [3, 1] kernels) with 3 or 5 taps run
as F(4, 3) / F(4, 5) (`emit_winograd_1d`): tiles of 4 outputs from 6 / 8 inputs, 6 / 8 GEMMs instead of
im2col's one with 3 / 5 times the depth. Along the last axis 4 tiles share a v128 (their outputs
transposed on the way out); along an earlier axis 4 trailing positions do, and so do 4 rows of a
last axis too short for groups of tiles (the input transposed on the way in). Their transforms come
from the points 0, +-1, +-2, +-1/2 (lowering/winograd.py `toom_cook`); coefficients such as 2/3 and
21/4 are not exact in float32, which puts results a few float32 roundings of the sum's magnitude from
the direct sum (3e-6 of the largest output on magika's 256 -> 512 channel, 5-tap conv), well inside
ONNX Runtime's own tolerances.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from functools import partial

import numpy as np

from wasinfer.backends.wasm.context import Ctx
from wasinfer.backends.wasm.emitters.activation import epilogue
from wasinfer.backends.wasm.emitters.gemm import Operand, emit_blocked_gemm
from wasinfer.backends.wasm.emitters.pool import emit_copy
from wasinfer.backends.wasm.writer import I32, V128
from wasinfer.ir import Node
from wasinfer.lowering.window import Window
from wasinfer.lowering.winograd import (
    TILE_1D,
    Winograd1dPlan,
    Winograd44Plan,
    WinogradAxisPlan,
    WinogradPlan,
    tile_groups,
    transformed_weights,
)


def emit_winograd(ctx: Ctx, node: Node, win: Window, batch: int, plan: WinogradPlan) -> None:
    f = ctx.f
    weights = ctx.const(node.inputs[1])
    assert weights is not None
    channels, out_channels = plan.channels, plan.out_channels
    tw = plan.tile_columns
    hp, wp = plan.padded
    (h, w), (ho, wo) = win.in_dims, win.out_dims
    p_base = ctx.scratch_addr
    v_base = p_base + plan.v_offset
    m_base = p_base + plan.m_offset
    # each U[xi] placed on its own, so that uniform weights (ConstantOfShape) stay uniform
    # blocks, written at start-up rather than stored; a table holds their addresses
    table = ctx.data(np.array([ctx.data(u) for u in transformed_weights(weights)], np.int32))
    x, y = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    bias = ctx.addr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    sample, c, row, src, dst, chunk, row0 = (f.local(I32) for _ in range(7))
    xi, pu, pv, pm = (f.local(I32) for _ in range(4))
    runs = plan.runs(ho)

    with f.for_range(sample, 0, batch):
        # 1. zero-padded copy of the input
        f.i32(p_base).i32(0).i32(4 * channels * hp * wp).memory_fill()
        with f.for_range(c, 0, channels):
            f.get(c).i32(4 * h * w).op("i32.mul").get(sample).i32(4 * channels * h * w).op("i32.mul")
            f.op("i32.add").i32(x).op("i32.add").set(src)
            f.get(c).i32(4 * hp * wp).op("i32.mul").i32(p_base + 4 * (win.pad_begin[0] * wp + win.pad_begin[1]))
            f.op("i32.add").set(dst)
            with f.for_range(row, 0, h):
                f.get(dst).get(src).i32(4 * w).memory_copy()
                f.inc(dst, 4 * wp).inc(src, 4 * w)
        for n_rows, repeat, first, out_rows in runs:
            if not n_rows or not repeat:
                continue
            tiles = n_rows * tw
            with f.for_range(chunk, 0, repeat):
                f.get(chunk).i32(n_rows).op("i32.mul").i32(first).op("i32.add").set(row0)
                _input_transform(ctx, channels, n_rows, tw, hp, wp, row0, p_base, v_base)
                # 3. the 16 GEMMs: M[xi] = U[xi] @ V[xi]
                with f.for_range(xi, 0, 16):
                    f.get(xi).i32(4).op("i32.mul").mem("i32.load", offset=table).set(pu)
                    f.get(xi).i32(4 * channels * tiles).op("i32.mul").i32(v_base).op("i32.add").set(pv)
                    f.get(xi).i32(4 * out_channels * tiles).op("i32.mul").i32(m_base).op("i32.add").set(pm)
                    emit_blocked_gemm(ctx, out_channels, tiles, channels,
                                  Operand(("local", pu), channels, 1, panels=True), Operand(("local", pv), tiles, 1),
                                  Operand(("local", pm), tiles, 1), None, None)
                # dst: Y[sample, 0, 2 * row0, 0]
                f.get(sample).i32(4 * out_channels * ho * wo).op("i32.mul").get(row0).i32(4 * 2 * wo)
                f.op("i32.mul").op("i32.add").i32(y).op("i32.add").set(dst)
                _output_transform(ctx, node, out_channels, n_rows, out_rows, tw, ho, wo, m_base, dst, bias)


def _input_transform(ctx: Ctx, channels: int, n_rows: int, tw: int, hp: int, wp: int, row0: int, p_base: int,
                     v_base: int) -> None:
    """V[4i + j, c, t] = (B^T d B)[i, j] for every channel and tile of the chunk, 4 tiles per v128."""
    f = ctx.f
    tiles = n_rows * tw
    c, trow, ps, pd, group, qs, qd = (f.local(I32) for _ in range(7))
    x = [[f.local(V128) for _ in range(4)] for _ in range(4)]
    t = [[f.local(V128) for _ in range(4)] for _ in range(4)]

    def four_tiles(src: int, dst: int, start: int) -> None:
        for a in range(4):
            for b in range(4):  # patch element (a, b) of tiles start..start+3: columns 2j + b
                offset = 4 * (a * wp + 2 * start + b)
                f.get(src).mem("v128.load", offset=offset).get(src).mem("v128.load", offset=offset + 12)
                f.shuffle32((0, 2, 5, 7)).set(x[a][b])
        for b in range(4):  # t = B^T x, column by column
            for i, push in enumerate(_bt_terms(ctx, [x[a][b] for a in range(4)])):
                push()
                f.set(t[i][b])
        for i in range(4):  # v = t B (columns)
            for j, push in enumerate(_bt_terms(ctx, [t[i][k] for k in range(4)])):
                f.get(dst)
                push()
                f.mem("v128.store", offset=4 * ((4 * i + j) * channels * tiles + start))

    looped, rest = tile_groups(tw)
    with f.for_range(c, 0, channels), f.for_range(trow, 0, n_rows):
        # ps: P[c, 2 * (row0 + trow), 0], patch row 0 of the row's first tile; pd: V[0, c, trow * tw]
        f.get(c).i32(hp * wp).op("i32.mul").get(trow).get(row0).op("i32.add").i32(2 * wp).op("i32.mul")
        f.op("i32.add").i32(4).op("i32.mul").i32(p_base).op("i32.add").tee(ps).set(qs)
        f.get(c).i32(tiles).op("i32.mul").get(trow).i32(tw).op("i32.mul").op("i32.add")
        f.i32(4).op("i32.mul").i32(v_base).op("i32.add").tee(pd).set(qd)
        with f.for_range(group, 0, looped):
            four_tiles(qs, qd, 0)
            f.inc(qs, 4 * 8).inc(qd, 4 * 4)
        for start in rest:
            four_tiles(ps, pd, start)


def _bt_terms(ctx: Ctx, d: list[int]) -> list[Callable[[], object]]:
    """B^T d for one line of 4 values (locals): d0 - d2, d1 + d2, d2 - d1, d1 - d3, as emitters."""
    f = ctx.f
    pairs = [(d[0], d[2], "f32x4.sub"), (d[1], d[2], "f32x4.add"), (d[2], d[1], "f32x4.sub"),
             (d[1], d[3], "f32x4.sub")]

    def term(p: int, q: int, op: str) -> Callable[[], object]:
        return lambda: f.get(p).get(q).op(op)

    return [term(p, q, op) for p, q, op in pairs]


def _output_transform(ctx: Ctx, node: Node, out_channels: int, n_rows: int, out_rows: int, tw: int, ho: int,
                      wo: int, m_base: int, y: int, bias: int | None) -> None:
    """Y (2x2 per tile) = A^T m A + bias, activation, for the chunk's tile rows (`y`: the first one's
    output row of channel 0); 4 tiles' outputs stored as 8 consecutive columns; `out_rows` output rows
    per tile row (1 for the last tile row of an odd output height)."""
    f = ctx.f
    tiles = n_rows * tw
    mch, trow, pm, py = (f.local(I32) for _ in range(4))
    m = [[f.local(V128) for _ in range(4)] for _ in range(4)]
    s = [[f.local(V128) for _ in range(4)] for _ in range(2)]
    out = [[f.local(V128) for _ in range(2)] for _ in range(2)]
    bias_v = f.local(V128)
    looped, rest = tile_groups(tw, wo)
    group, qm, qy = (f.local(I32) for _ in range(3))
    with f.for_range(mch, 0, out_channels):
        _splat_bias(ctx, bias, mch, bias_v)

        def four_tiles(src: int, dst: int, start: int, rows: int, last: bool) -> None:
            """Tiles start..start+3 of a tile row; `rows` (1 or 2) output rows of it are inside the output;
            a group ending past an odd output width writes 7 columns, not 8."""
            for i in range(4):
                for j in range(4):
                    f.get(src).mem("v128.load", offset=4 * ((4 * i + j) * out_channels * tiles + start))
                    f.set(m[i][j])
            for j in range(4):  # s = A^T m: m0 + m1 + m2, m1 - m2 - m3
                f.get(m[0][j]).get(m[1][j]).op("f32x4.add").get(m[2][j]).op("f32x4.add").set(s[0][j])
                f.get(m[1][j]).get(m[2][j]).op("f32x4.sub").get(m[3][j]).op("f32x4.sub").set(s[1][j])
            for r in range(2):  # y = s A, + bias, activation
                f.get(s[r][0]).get(s[r][1]).op("f32x4.add").get(s[r][2]).op("f32x4.add")
                f.get(bias_v).op("f32x4.add")
                epilogue(ctx, node)
                f.set(out[r][0])
                f.get(s[r][1]).get(s[r][2]).op("f32x4.sub").get(s[r][3]).op("f32x4.sub")
                f.get(bias_v).op("f32x4.add")
                epilogue(ctx, node)
                f.set(out[r][1])
            for r in range(rows):
                base = 4 * (r * wo + 2 * start)
                f.get(dst).get(out[r][0]).get(out[r][1]).shuffle32((0, 4, 1, 5)).mem("v128.store", offset=base)
                f.get(out[r][0]).get(out[r][1]).shuffle32((2, 6, 3, 7))
                if last:
                    high = f.local(V128)
                    f.set(high)
                    for lane in range(3):
                        f.get(dst).get(high).lane("f32x4.extract_lane", lane)
                        f.mem("f32.store", offset=base + 16 + 4 * lane)
                else:
                    f.set(out[r][0]).get(dst).get(out[r][0]).mem("v128.store", offset=base + 16)

        # pm: M[0, mch, 0]; py: Y[mch, 2 * row0, 0]
        f.get(mch).i32(4 * tiles).op("i32.mul").i32(m_base).op("i32.add").set(pm)
        f.get(mch).i32(4 * ho * wo).op("i32.mul").get(y).op("i32.add").set(py)
        with f.for_range(trow, 0, n_rows):
            f.get(pm).set(qm).get(py).set(qy)
            with f.for_range(group, 0, looped):
                four_tiles(qm, qy, 0, out_rows, False)
                f.inc(qm, 4 * 4).inc(qy, 4 * 8)
            for start in rest:
                four_tiles(pm, py, start, out_rows, 2 * start + 8 > wo)
            f.inc(pm, 4 * tw).inc(py, 4 * 2 * wo)


__all__ = ["emit_winograd"]


def _splat_bias(ctx: Ctx, bias: int | None, channel: int, into: int) -> None:
    """`into` = the output channel's bias (the local `channel`) in every lane, or zeros without a bias."""
    f = ctx.f
    if bias is None:
        f.f32x4_const(0.0).set(into)
    else:
        f.get(channel).i32(4).op("i32.mul").mem("f32.load", offset=bias).op("f32x4.splat").set(into)


def _point_products(ctx: Ctx, points: int, table: int, v_base: int, m_base: int, channels: int, out_channels: int,
                    columns: int, locals_: tuple[int, int, int, int]) -> None:
    """M[xi] = U[xi] @ V[xi] for every transform point xi: U's panels found through `table`, V and M laid out
    [point, channel, column] from `v_base` and `m_base`. `locals_`: the xi counter and the three pointers."""
    f = ctx.f
    xi, pu, pv, pm = locals_
    with f.for_range(xi, 0, points):
        f.get(xi).i32(4).op("i32.mul").mem("i32.load", offset=table).set(pu)
        f.get(xi).i32(4 * channels * columns).op("i32.mul").i32(v_base).op("i32.add").set(pv)
        f.get(xi).i32(4 * out_channels * columns).op("i32.mul").i32(m_base).op("i32.add").set(pm)
        emit_blocked_gemm(ctx, out_channels, columns, channels, Operand(("local", pu), channels, 1, panels=True),
                          Operand(("local", pv), columns, 1), Operand(("local", pm), columns, 1), None, None)


def _place_each(ctx: Ctx, matrices: np.ndarray) -> int:
    """The address of a table of each matrix's address: every matrix placed on its own, so that uniform weights
    (ConstantOfShape) stay uniform blocks, written at start-up rather than stored; equal ones placed once (a
    stride-2 plan's tap-1 points repeat)."""
    placed: dict[bytes, int] = {}
    for u in matrices:
        if u.tobytes() not in placed:
            placed[u.tobytes()] = ctx.data(u)
    return ctx.data(np.array([placed[u.tobytes()] for u in matrices], np.int32))


def _combine(ctx: Ctx, coefficients: np.ndarray, values: list[int]) -> None:
    """Push sum_i coefficients[i] * values[i] (float32 coefficients; zeros skipped, +-1 as add/sub)."""
    f = ctx.f
    first = True
    for coefficient, value in zip(coefficients.astype(np.float32).tolist(), values, strict=True):
        if coefficient == 0:
            continue
        f.get(value)
        if abs(coefficient) != 1 or (first and coefficient < 0):
            f.f32x4_const(coefficient).op("f32x4.mul")
            if not first:
                f.op("f32x4.add")
        elif not first:
            f.op("f32x4.add" if coefficient > 0 else "f32x4.sub")
        first = False
    if first:
        f.f32x4_const(0.0)


def _paired_rows(ctx: Ctx, matrix: np.ndarray, values: list[int], put: Callable[[int, Callable[[], object]], None],
                 spare: list[int]) -> None:
    """put(i, push) for each row i of matrix @ values, `push` leaving that row's value on the stack. Two adjacent
    rows u, w whose halves e = (u + w) / 2 and o = (u - w) / 2 have no coefficient in common (F(6x6)'s B^T rows 1-2,
    3-4, 5-6: the even and odd powers of +-p) are computed as e + o and e - o, e and o once each in `spare`: about
    half the multiplies and adds of the rows one by one."""
    f = ctx.f
    i = 0
    while i < len(matrix):
        if i + 1 < len(matrix):
            even, odd = (matrix[i] + matrix[i + 1]) / 2, (matrix[i] - matrix[i + 1]) / 2
            if np.any(even) and np.any(odd) and not np.any(even * odd):
                _combine(ctx, even, values)
                f.set(spare[0])
                _combine(ctx, odd, values)
                f.set(spare[1])
                put(i, lambda: f.get(spare[0]).get(spare[1]).op("f32x4.add"))
                put(i + 1, lambda: f.get(spare[0]).get(spare[1]).op("f32x4.sub"))
                i += 2
                continue
        put(i, partial(_combine, ctx, matrix[i], values))
        i += 1


def _column_pairs(matrix: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Adjacent columns (a, a + 1) whose coefficients are equal or opposite in every row (F(6x6)'s A^T: points +-p),
    by their first column, and the matrix over (sum, difference) values in their place (`_pair_up`)."""
    paired, pairs, a = matrix.copy(), [], 0
    while a + 1 < matrix.shape[1]:
        u, w = matrix[:, a], matrix[:, a + 1]
        same, opposite = u == w, u == -w
        if np.all(same | opposite) and np.any(u[same]) and np.any(u[opposite & ~same]):
            pairs.append(a)
            paired[:, a], paired[:, a + 1] = np.where(same, u, 0), np.where(same, 0, u)
            a += 2
        else:
            a += 1
    return pairs, paired


def _pair_up(ctx: Ctx, pairs: list[int], values: list[int]) -> None:
    """values[a], values[a + 1] = their sum and difference, in place, for each pair from `_column_pairs`."""
    f = ctx.f
    for a in pairs:
        f.get(values[a]).get(values[a + 1]).op("f32x4.add")
        f.get(values[a]).get(values[a + 1]).op("f32x4.sub")
        f.set(values[a + 1]).set(values[a])


def emit_winograd_1d(ctx: Ctx, node: Node, batch: int, plan: Winograd1dPlan | WinogradAxisPlan) -> None:
    if isinstance(plan, WinogradAxisPlan):
        _emit_winograd_axis(ctx, node, batch, plan)
    else:
        _emit_winograd_sequence(ctx, node, batch, plan)


def _emit_winograd_sequence(ctx: Ctx, node: Node, batch: int, plan: Winograd1dPlan) -> None:
    """F(4, 3) or F(4, 5) along the last spatial axis (lowering/winograd.py `Winograd1dPlan`), per sample:

    1. each row's padded inputs de-interleaved by phase into P (a strided copy per channel, row and phase), so
       that tile element i of 4 consecutive tiles is one v128 load;
    then per chunk of groups of 4 tiles (a group's row and first tile found by division):
    2. input transform, V[xi, c, 4g..4g+3] = (B^T d)[xi], 4 tiles per v128;
    3. a GEMM per point, M[xi] = U[xi] @ V[xi], in a run-time loop over the points;
    4. per output channel and group: output transform, bias, the fused activation, the 4 outputs of 4 tiles
       transposed into 16 consecutive ones, stored into Y; a row's last group, when fewer of its outputs exist,
       into R, whose first outputs are then copied (a run-time test on the group).
    Tiles past a row's end (its tiles are rounded up to whole groups) read zeros or inputs no output needs."""
    f = ctx.f
    weights = ctx.const(node.inputs[1])
    assert weights is not None
    at, _, bt = plan.matrices()
    channels, out_channels, alpha, phases = plan.channels, plan.out_channels, plan.alpha, TILE_1D
    span, row_groups, rows = plan.phase_length, plan.row_groups, plan.pre
    p_base = ctx.scratch_addr
    v_base, m_base, r_base = p_base + plan.v_offset, p_base + plan.m_offset, p_base + plan.r_offset
    table = ctx.data(np.array([ctx.data(u) for u in plan.transformed_weights(weights)], np.int32))
    x, y = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    bias = ctx.addr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    sample, c, group, src, dst, xi, pu, pv, pm, chunk, group0, row, tile, line = (f.local(I32) for _ in range(14))
    d = [f.local(V128) for _ in range(alpha)]
    r = [f.local(V128) for _ in range(TILE_1D)]
    bias_v = f.local(V128)

    def locate() -> None:
        """row = (group0 + group) div row_groups, tile = 4 x its group within the row."""
        f.get(group0).get(group).op("i32.add").i32(row_groups).op("i32.div_u").set(row)
        f.get(group0).get(group).op("i32.add").get(row).i32(row_groups).op("i32.mul").op("i32.sub")
        f.i32(4).op("i32.mul").set(tile)

    def outputs(at_y: int, columns: int) -> None:
        """Output transform of the group whose M columns (of `columns`) `src` points at; its 16 outputs stored
        from `at_y`."""
        for i in range(alpha):
            f.get(src).mem("v128.load", offset=4 * i * out_channels * columns).set(d[i])
        for j in range(TILE_1D):
            _combine(ctx, at[j], d)
            f.get(bias_v).op("f32x4.add")
            epilogue(ctx, node)
            f.set(r[j])
        # r[j] holds output j of 4 tiles: transposed into their 16 outputs
        for half, (lo, hi) in enumerate(((0, 1), (2, 3))):
            f.get(r[0]).get(r[1]).shuffle32((lo, lo + 4, hi, hi + 4)).set(d[0])
            f.get(r[2]).get(r[3]).shuffle32((lo, lo + 4, hi, hi + 4)).set(d[1])
            for k, lanes in enumerate(((0, 1, 4, 5), (2, 3, 6, 7))):
                f.get(at_y).get(d[0]).get(d[1]).shuffle32(lanes).mem("v128.store", offset=16 * (2 * half + k))

    def run_chunk(groups: int) -> None:
        """The chunk of `groups` groups from group `group0` (a local): steps 2-4."""
        columns = 4 * groups
        # 2. V[xi, c, 4g..4g+3] = sum_i B^T[xi, i] d_i, d_i = P[c, row, i % 4, tile + i // 4 ...]
        with f.for_range(c, 0, channels), f.for_range(group, 0, groups):
            locate()
            f.get(c).i32(rows).op("i32.mul").get(row).op("i32.add").i32(4 * phases * span).op("i32.mul")
            f.get(tile).i32(4).op("i32.mul").op("i32.add").i32(p_base).op("i32.add").set(src)
            f.get(c).i32(columns).op("i32.mul").get(group).i32(4).op("i32.mul").op("i32.add").i32(4).op("i32.mul")
            f.i32(v_base).op("i32.add").set(dst)
            for i in range(alpha):
                f.get(src).mem("v128.load", offset=4 * ((i % phases) * span + i // phases)).set(d[i])
            for point in range(alpha):
                f.get(dst)
                _combine(ctx, bt[point], d)
                f.mem("v128.store", offset=4 * point * channels * columns)
        # 3. M[xi] = U[xi] @ V[xi]
        _point_products(ctx, alpha, table, v_base, m_base, channels, out_channels, columns, (xi, pu, pv, pm))
        # 4. Y[sample, m, row, tile * 4 ...]
        with f.for_range(c, 0, out_channels):
            _splat_bias(ctx, bias, c, bias_v)
            with f.for_range(group, 0, groups):
                locate()
                f.get(c).i32(columns).op("i32.mul").get(group).i32(4).op("i32.mul").op("i32.add").i32(4).op("i32.mul")
                f.i32(m_base).op("i32.add").set(src)
                f.get(sample).i32(out_channels).op("i32.mul").get(c).op("i32.add").i32(rows).op("i32.mul")
                f.get(row).op("i32.add").i32(plan.out_length).op("i32.mul").get(tile).i32(TILE_1D).op("i32.mul")
                f.op("i32.add").i32(4).op("i32.mul").i32(y).op("i32.add").set(dst)
                if plan.last_outputs == 4 * TILE_1D:
                    outputs(dst, columns)
                else:
                    f.get(tile).i32(4 * (row_groups - 1)).op("i32.eq")
                    with f.if_():  # a row's last group: only its first outputs exist
                        f.i32(r_base).set(line)
                        outputs(line, columns)
                        emit_copy(f, (dst, 0), (line, 0), plan.last_outputs)
                        f.else_()
                        outputs(dst, columns)

    with f.for_range(sample, 0, batch):
        # 1. P[c, row, p, j] = x_pad[c, row, j * 4 + p]: zeros, then each phase's inputs inside the input
        f.i32(p_base).i32(0).i32(plan.v_offset).memory_fill()
        with f.for_range(line, 0, channels * rows):
            f.get(sample).i32(channels * rows).op("i32.mul").get(line).op("i32.add").i32(4 * plan.length)
            f.op("i32.mul").i32(x).op("i32.add").set(src)
            f.get(line).i32(4 * phases * span).op("i32.mul").i32(p_base).op("i32.add").set(dst)
            for p in range(phases):
                # j with 0 <= j * 4 + p - pad < length
                lo = max(0, -(-(plan.pad - p) // phases))
                hi = min(span, -(-(plan.length + plan.pad - p) // phases))
                if hi > lo:
                    emit_copy(f, (dst, 4 * (p * span + lo)), (src, 4 * (lo * phases + p - plan.pad)), hi - lo, phases)
        for first, groups, repeat in plan.chunks():
            with f.for_range(chunk, 0, repeat):
                f.get(chunk).i32(groups).op("i32.mul").i32(first).op("i32.add").set(group0)
                run_chunk(groups)


def _emit_winograd_axis(ctx: Ctx, node: Node, batch: int, plan: WinogradAxisPlan) -> None:
    """F(4, r) along an axis followed by `post` >= 4 positions (lowering/winograd.py `WinogradAxisPlan`), per sample:

    1. P = the input zero-padded along the axis (one copy per channel and pre index);
    then per chunk of units (a pre index and a tile, with their `post` columns):
    2. input transform, V[xi, c, unit, w] = (B^T d)[xi], 4 columns per v128 (d_i: one load from P);
    3. a GEMM per point, M[xi] = U[xi] @ V[xi];
    4. output transform, bias and the fused activation, stored straight into Y: output j of a unit's 4 columns is 4
       consecutive outputs. The last tile of each pre index stores only the outputs that exist (a run-time test).
    A `post` that is not a multiple of 4 ends each unit with 4 columns overlapping the ones before (the same values
    written twice). Transposed (a last axis with `post` rows before it): P is filled by a strided copy per input
    position, and each v128 of outputs is stored one float per row."""
    f = ctx.f
    weights = ctx.const(node.inputs[1])
    assert weights is not None
    at, _, bt = plan.matrices()
    channels, out_channels, alpha, post, tiles = plan.channels, plan.out_channels, plan.alpha, plan.post, plan.tiles
    lp = plan.padded_length
    p_base = ctx.scratch_addr
    v_base, m_base = p_base + plan.v_offset, p_base + plan.m_offset
    table = ctx.data(np.array([ctx.data(u) for u in plan.transformed_weights(weights)], np.int32))
    x, y = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    bias = ctx.addr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    sample, c, row, unit, src, dst, xi, pu, pv, pm, chunk, unit0, tile, last, column = (f.local(I32) for _ in range(15))
    d = [f.local(V128) for _ in range(alpha)]
    bias_v, result = f.local(V128), f.local(V128)
    columns = [4 * g for g in range(post // 4)] + ([post - 4] if post % 4 else [])  # first column of each v128
    partial = plan.out_length - TILE_1D * (tiles - 1)  # outputs of each pre index's last tile

    def locate(u: int) -> None:
        """row = unit0 + u div tiles (the pre index), tile = unit0 + u mod tiles, last = tile is the last one."""
        f.get(unit0).get(u).op("i32.add").i32(tiles).op("i32.div_u").set(row)
        f.get(unit0).get(u).op("i32.add").get(row).i32(tiles).op("i32.mul").op("i32.sub").set(tile)
        f.get(tile).i32(tiles - 1).op("i32.eq").set(last)

    def run_chunk(units: int) -> None:
        width = units * post  # GEMM columns
        # 2. V[xi, c, u, w..w+3] from d_i = P[c, row, 4 * tile + i, w..w+3]
        with f.for_range(c, 0, channels), f.for_range(unit, 0, units):
            locate(unit)
            f.get(c).i32(plan.pre).op("i32.mul").get(row).op("i32.add").i32(lp).op("i32.mul")
            f.get(tile).i32(TILE_1D).op("i32.mul").op("i32.add").i32(4 * post).op("i32.mul")
            f.i32(p_base).op("i32.add").set(src)
            f.get(c).i32(units).op("i32.mul").get(unit).op("i32.add").i32(4 * post).op("i32.mul")
            f.i32(v_base).op("i32.add").set(dst)
            for w in columns:
                for i in range(alpha):
                    f.get(src).mem("v128.load", offset=4 * (i * post + w)).set(d[i])
                for point in range(alpha):
                    f.get(dst)
                    _combine(ctx, bt[point], d)
                    f.mem("v128.store", offset=4 * (point * channels * width + w))
        # 3. M[xi] = U[xi] @ V[xi]
        _point_products(ctx, alpha, table, v_base, m_base, channels, out_channels, width, (xi, pu, pv, pm))
        # 4. Y[sample, m, row, 4 * tile + j, w..w+3] = (A^T m)[j] + bias
        with f.for_range(c, 0, out_channels):
            _splat_bias(ctx, bias, c, bias_v)
            with f.for_range(unit, 0, units):
                locate(unit)
                f.get(c).i32(units).op("i32.mul").get(unit).op("i32.add").i32(4 * post).op("i32.mul")
                f.i32(m_base).op("i32.add").set(src)
                # (sample, m, row) -> Y[sample, m, row, 4 * tile, 0]; transposed (1 row): Y[sample, m, 0, 4 * tile]
                f.get(sample).i32(out_channels).op("i32.mul").get(c).op("i32.add").i32(plan.pre).op("i32.mul")
                f.get(row).op("i32.add").i32(plan.out_length * (post if plan.transposed else 1)).op("i32.mul")
                f.get(tile).i32(TILE_1D).op("i32.mul").op("i32.add").i32(4 if plan.transposed else 4 * post)
                f.op("i32.mul").i32(y).op("i32.add").set(dst)
                for w in columns:
                    for i in range(alpha):
                        f.get(src).mem("v128.load", offset=4 * (i * out_channels * width + w)).set(d[i])
                    for j in range(TILE_1D):
                        if j >= partial:  # output 4 * tile + j exists unless this is the last tile
                            f.get(last).op("i32.eqz")
                        with f.if_() if j >= partial else nullcontext():
                            _combine(ctx, at[j], d)
                            f.get(bias_v).op("f32x4.add")
                            epilogue(ctx, node)
                            f.set(result)
                            if plan.transposed:  # output j of rows w..w+3: one float per row
                                for lane in range(4):
                                    f.get(dst).get(result).lane("f32x4.extract_lane", lane)
                                    f.mem("f32.store", offset=4 * ((w + lane) * plan.out_length + j))
                            else:
                                f.get(dst).get(result).mem("v128.store", offset=4 * (j * post + w))

    with f.for_range(sample, 0, batch):
        # 1. P[c, row, pad + i, :] = x[sample, c, row, i, :]; transposed: P[c, 0, pad + i, q] = x[sample, c, q, i]
        f.i32(p_base).i32(0).i32(plan.v_offset).memory_fill()
        with f.for_range(column, 0, channels * plan.pre):
            f.get(sample).i32(channels * plan.pre).op("i32.mul").get(column).op("i32.add")
            f.i32(4 * plan.length * post).op("i32.mul").i32(x).op("i32.add").set(src)
            f.get(column).i32(4 * lp * post).op("i32.mul").i32(p_base + 4 * plan.pad * post).op("i32.add").set(dst)
            if plan.transposed:
                with f.for_range(unit, 0, min(plan.length, lp - plan.pad)):
                    emit_copy(f, (dst, 0), (src, 0), post, plan.length)
                    f.inc(dst, 4 * post).inc(src, 4)
            else:
                emit_copy(f, (dst, 0), (src, 0), min(plan.length, lp - plan.pad) * post)
        for first, units, repeat in plan.chunks():
            with f.for_range(chunk, 0, repeat):
                f.get(chunk).i32(units).op("i32.mul").i32(first).op("i32.add").set(unit0)
                run_chunk(units)


def emit_winograd_44(ctx: Ctx, node: Node, win: Window, batch: int, plan: Winograd44Plan) -> None:
    """F(4x4, 3x3), or F(n x n, 3x3) for the plan's tile n (6: 8x8 patches, 64 GEMMs, 24 outputs per group)
    (lowering/winograd.py `Winograd44Plan`), per sample:

    1. the zero-padded input de-interleaved by column phase into P (a stride-4 copy per channel, row and phase;
       stride 8 at a conv stride of 2), so that patch element (a, b) of a group of 4 tiles is one v128 load;
    then per chunk of tile rows:
    2. input transform, V[alpha i + j, c, t] = (B^T d B)[i, j], 4 tiles per v128 (B^T's entries are small
       integers), a column of patches at a time;
    3. the 36 (81) GEMMs, M[xi] = U[xi] @ V[xi], in a run-time loop over xi;
    4. per output channel, tile row and group: (A^T m A) + bias and the fused activation, 4x4 outputs of 4 tiles;
       each output row's 4 v128s transposed into 16 consecutive outputs, stored into Y. A last tile row stores
       only the rows that exist and a last group, when fewer of its columns exist, goes through R and a short
       copy (run-time tests)."""
    f = ctx.f
    weights = ctx.const(node.inputs[1])
    assert weights is not None
    at, _, bt = plan.matrices()
    channels, out_channels, groups = plan.channels, plan.out_channels, plan.groups
    (h, w), (ho, wo) = win.in_dims, win.out_dims
    hp, span, alpha, step, n = plan.padded_rows, plan.phase_length, plan.alpha, plan.step, plan.tile
    p_base = ctx.scratch_addr
    v_base, m_base, r_base = p_base + plan.v_offset, p_base + plan.m_offset, p_base + plan.r_offset
    table = _place_each(ctx, plan.transformed_weights(weights))
    x, y = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    bias = ctx.addr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    sample, c, row, group, src, dst, xi, pu, pv, pm, chunk, row0, line = (f.local(I32) for _ in range(13))
    d = [[f.local(V128) for _ in range(alpha)] for _ in range(alpha)]
    t = [[f.local(V128) for _ in range(alpha)] for _ in range(alpha)]
    bias_v, out = f.local(V128), [[f.local(V128) for _ in range(n)] for _ in range(n)]
    spare = [f.local(V128), f.local(V128)] if alpha == 8 else []  # e and o of `_paired_rows`
    top, left = win.pad_begin
    # rows of B^T that pick one input row as it is (stride 2's odd rows): no column pass for them
    copied = {i: int(np.flatnonzero(row)[0]) for i, row in enumerate(bt)
              if np.count_nonzero(row) == 1 and row[np.flatnonzero(row)[0]] == 1}

    def run_chunk(rows: int) -> None:
        """The chunk of `rows` tile rows from tile row `row0` (a local): steps 2-4."""
        columns = rows * 4 * groups  # GEMM columns: the chunk's tiles
        # 2. V[xi, c, (row, 4g..4g+3)]: d[a][b] = P[c, step * (row0 + row) + a, b % step, 4g + b // step ...]
        with f.for_range(c, 0, channels), f.for_range(row, 0, rows):
            f.get(c).i32(hp).op("i32.mul").get(row0).get(row).op("i32.add").i32(step).op("i32.mul").op("i32.add")
            f.i32(4 * step * span).op("i32.mul").i32(p_base).op("i32.add").set(src)
            f.get(c).i32(columns).op("i32.mul").get(row).i32(4 * groups).op("i32.mul").op("i32.add")
            f.i32(4).op("i32.mul").i32(v_base).op("i32.add").set(dst)
            with f.for_range(group, 0, groups):
                def load(a: int, b: int) -> None:
                    f.get(src).mem("v128.load", offset=4 * ((step * a + b % step) * span + b // step)).set(d[a][b])

                if alpha == 8:  # F(6x6): t = B^T d column by column, then V = t B row by row, rows paired
                    for b in range(alpha):
                        for a in range(alpha):
                            load(a, b)

                        def keep(i: int, push: Callable[[], object], b: int = b) -> None:
                            push()
                            f.set(t[i][b])
                        _paired_rows(ctx, bt, [d[a][b] for a in range(alpha)], keep, spare)
                    for i in range(alpha):
                        def put(j: int, push: Callable[[], object], i: int = i) -> None:
                            f.get(dst)
                            push()
                            f.mem("v128.store", offset=4 * (alpha * i + j) * channels * columns)
                        _paired_rows(ctx, bt, t[i], put, spare)
                elif alpha == 6:  # every element loaded, then t = B^T d (the order measured fastest here)
                    for a in range(alpha):
                        for b in range(alpha):
                            load(a, b)
                    for i in range(alpha):
                        for b in range(alpha):
                            _combine(ctx, bt[i], [d[a][b] for a in range(alpha)])
                            f.set(t[i][b])
                else:  # t = B^T d column by column as each column is loaded: 81 values would not stay in registers
                    needed = sorted({int(a) for i in range(alpha) if i not in copied for a in np.flatnonzero(bt[i])})
                    for b in range(alpha):
                        for a in needed:
                            load(a, b)
                        for i in range(alpha):
                            if i not in copied:
                                _combine(ctx, bt[i], [d[a][b] for a in range(alpha)])
                                f.set(t[i][b])
                for i in range(alpha):  # V = t B, row by row; a row of B^T that copies an input row loads it here
                    if i in copied:
                        for b in range(alpha):
                            load(copied[i], b)
                    for j in range(alpha):
                        f.get(dst)
                        _combine(ctx, bt[j], d[copied[i]] if i in copied else t[i])
                        f.mem("v128.store", offset=4 * (alpha * i + j) * channels * columns)
                f.inc(src, 16).inc(dst, 16)
        # 3. M[xi] = U[xi] @ V[xi]
        _point_products(ctx, plan.points, table, v_base, m_base, channels, out_channels, columns, (xi, pu, pv, pm))
        # 4. Y[sample, m, n * (row0 + row) + j, 4n g ...]
        with f.for_range(c, 0, out_channels):
            _splat_bias(ctx, bias, c, bias_v)
            with f.for_range(row, 0, rows):
                f.get(c).i32(columns).op("i32.mul").get(row).i32(4 * groups).op("i32.mul").op("i32.add")
                f.i32(4).op("i32.mul").i32(m_base).op("i32.add").set(src)
                f.get(sample).i32(out_channels).op("i32.mul").get(c).op("i32.add").i32(ho).op("i32.mul")
                f.get(row0).get(row).op("i32.add").i32(n).op("i32.mul").op("i32.add").i32(4 * wo).op("i32.mul")
                f.i32(y).op("i32.add").set(dst)
                with f.for_range(group, 0, groups):
                    _output_tiles_44(ctx, node, plan, at, src, bias_v, d, t, out, columns)
                    for j in range(n):
                        _store_row_44(ctx, plan, out[j], d[0][:6], j, dst, row0, row, group, line, r_base)
                    f.inc(src, 16).inc(dst, 4 * plan.group_columns)

    with f.for_range(sample, 0, batch):
        # 1. P[c, top + i, p, j] = x[sample, c, i, step * j + p - left] inside the input, zeros elsewhere (at
        # stride 2 the input's last row and column may lie past every patch: not copied)
        f.i32(p_base).i32(0).i32(plan.v_offset).memory_fill()
        with f.for_range(c, 0, channels), f.for_range(row, 0, min(h, hp - top)):
            f.get(sample).i32(channels).op("i32.mul").get(c).op("i32.add").i32(h).op("i32.mul").get(row)
            f.op("i32.add").i32(4 * w).op("i32.mul").i32(x).op("i32.add").set(src)
            f.get(c).i32(hp).op("i32.mul").get(row).op("i32.add").i32(4 * step * span).op("i32.mul")
            f.i32(p_base + 4 * top * step * span).op("i32.add").set(dst)
            for p in range(step):
                lo = max(0, -(-(left - p) // step))  # j with 0 <= step * j + p - left < w
                hi = min(span, -(-(w + left - p) // step))
                if hi > lo:
                    emit_copy(f, (dst, 4 * (p * span + lo)), (src, 4 * (step * lo + p - left)), hi - lo, step)
        for first, rows, repeat in plan.runs():
            with f.for_range(chunk, 0, repeat):
                f.get(chunk).i32(rows).op("i32.mul").i32(first).op("i32.add").set(row0)
                run_chunk(rows)


def _output_tiles_44(ctx: Ctx, node: Node, plan: Winograd44Plan, at: np.ndarray, src: int, bias_v: int,
                     m: list[list[int]], s: list[list[int]], out: list[list[int]], columns: int) -> None:
    """out[j][k] = (A^T M A)[j, k] + bias, activated, for the 4 tiles whose M columns `src` points at."""
    f = ctx.f
    alpha = plan.alpha

    def load(a: int, b: int) -> None:
        f.get(src).mem("v128.load", offset=4 * (alpha * a + b) * plan.out_channels * columns).set(m[a][b])

    n = plan.tile
    if alpha == 8:  # F(6x6): A^T's columns in pairs of equal or opposite coefficients, summed and subtracted first
        pairs, at = _column_pairs(at)
        for b in range(alpha):
            for a in range(alpha):
                load(a, b)
            _pair_up(ctx, pairs, [m[a][b] for a in range(alpha)])
            for j in range(n):
                _combine(ctx, at[j], [m[a][b] for a in range(alpha)])
                f.set(s[j][b])
        for j in range(n):
            _pair_up(ctx, pairs, s[j])
    elif alpha == 6:  # all of M's 36 values loaded first (measured 1-2% faster on ppocr_det than by column)
        for a in range(alpha):
            for b in range(alpha):
                load(a, b)
        for j in range(n):
            for b in range(alpha):
                _combine(ctx, at[j], [m[a][b] for a in range(alpha)])
                f.set(s[j][b])
    else:  # F(6x6)'s 64 and stride 2's 81: s = A^T M a column at a time
        for b in range(alpha):
            for a in range(alpha):
                load(a, b)
            for j in range(n):
                _combine(ctx, at[j], [m[a][b] for a in range(alpha)])
                f.set(s[j][b])
    for j in range(n):
        for k in range(n):
            _combine(ctx, at[k], s[j])
            f.get(bias_v).op("f32x4.add")
            epilogue(ctx, node)
            f.set(out[j][k])


def _store_row_44(ctx: Ctx, plan: Winograd44Plan, row: list[int], spare: list[int], j: int, dst: int, row0: int,
                  tile_row: int, group: int, line: int, r_base: int) -> None:
    """Output row j of 4 tiles (row[k]: column k of each tile) transposed into 16 (24) consecutive outputs from
    `dst` + j rows; only where that row exists, and only the existing columns of a last group. `spare`: 6 locals."""
    f = ctx.f
    wo = plan.out_dims[1]

    def store(at: int, offset: int) -> None:
        if plan.tile == 4:
            pair = spare[:2]
            for half, (lo, hi) in enumerate(((0, 1), (2, 3))):
                f.get(row[0]).get(row[1]).shuffle32((lo, lo + 4, hi, hi + 4)).set(pair[0])
                f.get(row[2]).get(row[3]).shuffle32((lo, lo + 4, hi, hi + 4)).set(pair[1])
                for k, lanes in enumerate(((0, 1, 4, 5), (2, 3, 6, 7))):
                    f.get(at).get(pair[0]).get(pair[1]).shuffle32(lanes)
                    f.mem("v128.store", offset=offset + 16 * (2 * half + k))
            return
        # F(6x6): columns 0-3 of the 4 tiles transposed into each tile's first 4 outputs (q[t]), columns 4-5
        # paired (e: tiles 0 and 1, o: tiles 2 and 3); the 24 outputs are q0, e0 q1, q1 e1, q2, ...
        q, e, o = spare[:4], spare[4], spare[5]
        f.get(row[0]).get(row[1]).shuffle32((0, 4, 1, 5)).set(q[0])  # t0c0 t0c1 t1c0 t1c1
        f.get(row[2]).get(row[3]).shuffle32((0, 4, 1, 5)).set(q[1])  # t0c2 t0c3 t1c2 t1c3
        f.get(row[0]).get(row[1]).shuffle32((2, 6, 3, 7)).set(q[2])  # t2c0 t2c1 t3c0 t3c1
        f.get(row[2]).get(row[3]).shuffle32((2, 6, 3, 7)).set(q[3])  # t2c2 t2c3 t3c2 t3c3
        f.get(row[4]).get(row[5]).shuffle32((0, 4, 1, 5)).set(e)  # t0c4 t0c5 t1c4 t1c5
        f.get(row[4]).get(row[5]).shuffle32((2, 6, 3, 7)).set(o)  # t2c4 t2c5 t3c4 t3c5
        for k, (first, second, lanes) in enumerate((
                (q[0], q[1], (0, 1, 4, 5)), (e, q[0], (0, 1, 6, 7)), (q[1], e, (2, 3, 6, 7)),
                (q[2], q[3], (0, 1, 4, 5)), (o, q[2], (0, 1, 6, 7)), (q[3], o, (2, 3, 6, 7)))):
            f.get(at).get(first).get(second).shuffle32(lanes)
            f.mem("v128.store", offset=offset + 16 * k)

    if j >= plan.last_rows:  # row n * tile row + j exists unless this is the last tile row
        f.get(row0).get(tile_row).op("i32.add").i32(plan.tile_rows - 1).op("i32.ne")
    with f.if_() if j >= plan.last_rows else nullcontext():
        if plan.last_columns == plan.group_columns:
            store(dst, 4 * j * wo)
        else:
            f.get(group).i32(plan.groups - 1).op("i32.eq")
            with f.if_():  # a last group: only its first columns exist
                f.i32(r_base).set(line)
                store(line, 0)
                emit_copy(f, (dst, 4 * j * wo), (line, 0), plan.last_columns)
                f.else_()
                store(dst, 4 * j * wo)
