"""Matrix products: Gemm, MatMul (batched, broadcast), and the GEMM routine Conv lowers to.

C[m, n] = alpha * sum_k A[m, k] * B[k, n] + bias[m, n], then the fused activation.
B must be contiguous along n; A may have any strides (so transA is free), or be packed in
4-row panels (constant Conv weights, lowering/gemm.py's `pack_panels`). The tiling is planned in
lowering/gemm.py (`gemm_plan`): C in register tiles of 4 rows x 8 columns (8 f32x4 accumulators),
the last rows as one shorter tile; a single row takes 16 columns. A last partial column tile
overlaps the previous one instead of falling back to narrow tiles. Long K runs in blocks
(K_BLOCK) that keep the tile's A in L1 and B's block in L2. A few rows against a constant B too
large for L2 (a classifier) go over column tiles outermost, A packed in panels in scratch, so B
comes from memory once. This module renders that plan.

What the micro-kernel costs was measured on Cranelift's x86-64 output (wasmtime 50):
- f32.load + f32x4.splat is two instructions (vmovss, vbroadcastss): Cranelift cannot fold the
  load into the broadcast, since it emits a loop body's loads first and their arithmetic after;
  v128.load32_splat is worse (an integer load, vmovd, vpbroadcastd). Packed A panels give a
  k step's four A values in one v128.load, splatted by a register shuffle (vpshufd).
- Unrolling k makes every load of the unrolled body live at once (for the same reason) and
  spills; a loop that ends on a pointer compare has one add less than a counted one.
- Per k step a 4x8 tile then issues 3 loads, 4 shuffles, 8 mul + 8 add and 4 loop instructions:
  it runs at about 90% of what the 128-bit FP pipes allow, ~3x ONNX Runtime's AVX2 FMA kernels
  (8 lanes, fused). With CompileOptions.relaxed_simd each mul + add is one f32x4.relaxed_madd,
  an FMA on hosts that have one (about 10% faster: Cranelift's vfmadd213 form costs a register
  copy per accumulator).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.emitters.activation import epilogue
from wasinfer.backends.wasm.emitters.layout import emit_permute
from wasinfer.backends.wasm.writer import I32, V128, uleb
from wasinfer.ir import Node
from wasinfer.lowering.gemm import (
    PANEL,
    bias_strides,
    column_block,
    constant_bias,
    gemm_plan,
    gemm_scratch,
    matmul_batches,
    matmul_scratch,
    pack_columns,
)

# A base address: a constant, or ("local", index) for one computed at run time.
Base = int | tuple[str, int]


@dataclass
class Operand:
    base: Base
    row: int  # element stride between rows (m for A and C, k for B)
    col: int  # element stride between columns (k for A, n for B and C)
    scale: float = 1.0  # applied on load (Gemm's beta on a run-time C)
    panels: bool = False  # A only: packed by `pack_panels`, [M/PANEL][K][PANEL], `row` = K, `col` unused


def _push(ctx: Ctx, base: Base) -> None:
    if isinstance(base, int):
        ctx.f.i32(base)
    else:
        ctx.f.get(base[1])


def emit_gemm(ctx: Ctx, m_size: int, n_size: int, k_size: int, a: Operand, b: Operand | np.ndarray, c: Operand,
              bias: Operand | None = None, alpha: float = 1.0, node: Node | None = None,
              a_scratch: int | None = None) -> None:
    """Emit C = alpha*A@B + bias (+ activation). A constant B (a [K, N] array) is packed at
    compile time into panels [N/width][K][width], so the k loop reads B contiguously.

    Where the plan walks columns outermost and `a_scratch` has room (`a_panel_bytes`), a run-time
    A is first packed there in panels: every column tile reads all of A again, and its rows, one
    row length apart, would compete for the same L1 sets (4 KiB apart for K = 1024) and take a
    load and a broadcast per row and k where a panel takes one load and a shuffle.

    A long K is cut into blocks of at most K_BLOCK (a run-time loop outside the row and column
    loops): a tile's A values for one block stay in L1 and the block of B in L2 while every
    row block passes over it. Tiles of the first block start from zero, later ones from the C
    they stored before; only the last block adds the bias and applies the activation."""
    f = ctx.f
    m, n, k = f.local(I32), f.local(I32), f.local(I32)
    pa, pb, pc, pbias = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    plan = gemm_plan(m_size, n_size, k_size, constant_b=isinstance(b, np.ndarray))
    if plan.columns_outer and a_scratch is not None and not a.panels:
        _pack_a(ctx, a, m_size, k_size, a_scratch)
        a = Operand(a_scratch, k_size, 1, panels=True)
    regions, k_len = plan.regions, plan.k_len
    if isinstance(b, np.ndarray):
        packed, starts = pack_columns(b, regions)
        base = ctx.data(packed)
        b_sources = [base + start * 4 for start in starts]
    else:
        assert b.col == 1, "a run-time B must be contiguous along n"
    assert c.col == 1, "C must be contiguous along n"
    kb = KBlock(f.local(I32), f.local(I32)) if plan.blocks > 1 else None
    with f.for_range(kb.start, 0, k_size, k_len) if kb else nullcontext():
        if kb:  # the last block may be shorter
            f.i32(k_len).i32(k_size).get(kb.start).op("i32.sub").get(kb.start).i32(k_size - k_len)
            f.op("i32.lt_s").op("select").set(kb.length)
        def tile(index: int, lo: int, rows: int, width: int) -> None:
            if isinstance(b, np.ndarray):
                # pb = region + (n - lo) * K * 4 ; next k is one panel row further
                f.get(n).i32(lo).op("i32.sub").i32(k_size * 4).op("i32.mul").i32(b_sources[index])
                f.op("i32.add").set(pb)
                b_step = width
            else:
                _push(ctx, b.base)
                f.get(n).i32(4).op("i32.mul").op("i32.add").set(pb)
                b_step = b.row
            _tile(ctx, Tile(rows, width, k_size, b_step, kb), m, n, k, pa, pb, pc, pbias, a, c, bias, alpha, node)

        row_tiles = [(m_lo, m_hi, rows) for m_lo, m_hi, rows in plan.row_tiles if m_hi > m_lo]
        if plan.columns_outer:  # each B tile once from memory, then from L1 for every row tile
            for index, (lo, count, width) in enumerate(regions):
                with f.for_range(n, lo, lo + count * width, width):
                    for m_lo, m_hi, rows in row_tiles:
                        with f.for_range(m, m_lo, m_hi, rows):
                            tile(index, lo, rows, width)
        else:
            for m_lo, m_hi, rows in row_tiles:
                with f.for_range(m, m_lo, m_hi, rows):
                    for index, (lo, count, width) in enumerate(regions):
                        with f.for_range(n, lo, lo + count * width, width):
                            tile(index, lo, rows, width)


def _pack_a(ctx: Ctx, a: Operand, m_size: int, k_size: int, dst: int) -> None:
    """A (any strides) → dst as [ceil(M/PANEL)][K][PANEL]: element (m, k) at ((m/4)*K + k)*4 + m%4.
    Padding rows are left as they are: no tile reads their lanes."""
    f = ctx.f
    m, k, src, out = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    with f.for_range(m, 0, m_size):
        _push(ctx, a.base)
        f.get(m).i32(a.row * 4).op("i32.mul").op("i32.add").set(src)
        f.get(m).i32(2).op("i32.shr_u").i32(k_size * PANEL * 4).op("i32.mul")
        f.get(m).i32(PANEL - 1).op("i32.and").i32(4).op("i32.mul").op("i32.add").i32(dst).op("i32.add").set(out)
        with f.for_range(k, 0, k_size):
            f.get(out).get(src).mem("f32.load").mem("f32.store")
            f.inc(src, a.col * 4).inc(out, PANEL * 4)


# Register tiles (lowering/gemm.py): ROWS x 8 (8 accumulators, 2 B vectors, the A values and a
# splat) fit the 16 SIMD registers of x86-64; a single row takes 16 columns (4 accumulators, 4 B vectors).
RELAXED_MADD = b"\xfd" + uleb(0x105)  # f32x4.relaxed_madd(a, b, c) = a * b + c, fused or not: its bytes


@dataclass(frozen=True)
class KBlock:
    """The run-time loop over blocks of K: locals holding the block's first k and its length."""

    start: int
    length: int


@dataclass(frozen=True)
class Tile:
    rows: int
    width: int
    k_size: int
    b_step: int  # elements between B's rows
    kb: KBlock | None


def _madd(ctx: Ctx, acc: int, x: int, y: int) -> None:
    """acc += x * y: f32x4.relaxed_madd (one FMA where the host has one) when allowed, else mul + add."""
    f = ctx.f
    if ctx.relaxed_simd:
        f.get(x).get(y).get(acc).op("f32x4.relaxed_madd")
    else:
        f.get(acc).get(x).get(y).op("f32x4.mul").op("f32x4.add")
    f.set(acc)


def _tile(ctx: Ctx, t: Tile, m: int, n: int, k: int, pa: int, pb: int, pc: int, pbias: int, a: Operand,
          c: Operand, bias: Operand | None, alpha: float, node: Node | None) -> None:
    """One register tile; pb already points at B[0, n] and advances by `b_step` elements per k.

    The k loop is not unrolled: Cranelift keeps a loop body's loads in program order but places
    the arithmetic that uses them at the end of the body, so every value an unrolled body loads
    would be live at once, and with 8 accumulators that spills."""
    f = ctx.f
    vectors = max(t.width // 4, 1)
    scalar = t.width == 1
    acc = [[f.local(V128) for _ in range(vectors)] for _ in range(t.rows)]
    bvec = [f.local(V128) for _ in range(vectors)]
    avec, splat = f.local(V128), f.local(V128)
    a_step = PANEL if a.panels else a.col
    # pc = C + m*row*4 + n*4
    _push(ctx, c.base)
    f.get(m).i32(c.row * 4).op("i32.mul").op("i32.add").get(n).i32(4).op("i32.mul").op("i32.add").set(pc)
    _push(ctx, a.base)
    f.get(m).i32(a.row * 4).op("i32.mul").op("i32.add").set(pa)

    def zero() -> None:
        for row in acc:
            for v in row:
                f.f32x4_const(0.0).set(v)

    if t.kb is None:
        zero()
    else:  # later blocks go on from the partial sums in C
        f.get(pa).get(t.kb.start).i32(a_step * 4).op("i32.mul").op("i32.add").set(pa)
        f.get(pb).get(t.kb.start).i32(t.b_step * 4).op("i32.mul").op("i32.add").set(pb)
        f.get(t.kb.start).op("i32.eqz")
        with f.if_():
            zero()
            f.else_()
            for r, row in enumerate(acc):
                for v, local in enumerate(row):
                    f.get(pc)
                    if scalar:
                        f.mem("f32.load", offset=r * c.row * 4).op("f32x4.splat")
                    else:
                        f.mem("v128.load", offset=r * c.row * 4 + v * 16)
                    f.set(local)
    # the loop runs until pb reaches its end (k holds that address): no separate counter
    f.get(pb)
    if t.kb is None:
        f.i32(t.k_size * t.b_step * 4)
    else:
        f.get(t.kb.length).i32(t.b_step * 4).op("i32.mul")
    f.op("i32.add").set(k)
    with f.block(), f.block(b"\x03"):
        if t.k_size == 0:
            f.br(1)
        for v in range(vectors):
            f.get(pb)
            if scalar:
                f.mem("f32.load").op("f32x4.splat")
            else:
                f.mem("v128.load", offset=16 * v)
            f.set(bvec[v])
        if a.panels:
            f.get(pa).mem("v128.load").set(avec)
        for r in range(t.rows):
            if a.panels:
                f.get(avec).get(avec).shuffle32((r, r, r, r))
            else:
                f.get(pa).mem("f32.load", offset=r * a.row * 4).op("f32x4.splat")
            f.set(splat)
            for v in range(vectors):
                _madd(ctx, acc[r][v], splat, bvec[v])
        f.inc(pa, a_step * 4).inc(pb, t.b_step * 4)
        f.get(pb).get(k).op("i32.lt_u").br_if(0)

    def store(final: bool) -> None:
        for r in range(t.rows):
            for v in range(vectors):
                f.get(pc)
                f.get(acc[r][v])
                if final:
                    _finish(ctx, r, v, scalar, pbias, bias, alpha, node)
                if scalar:
                    f.lane("f32x4.extract_lane", 0).mem("f32.store", offset=r * c.row * 4)
                else:
                    f.mem("v128.store", offset=r * c.row * 4 + v * 16)

    if bias is not None:
        _push(ctx, bias.base)
        f.get(m).i32(bias.row * 4).op("i32.mul").op("i32.add")
        f.get(n).i32(bias.col * 4).op("i32.mul").op("i32.add").set(pbias)
    if t.kb is None:
        store(True)
        return
    f.get(t.kb.start).get(t.kb.length).op("i32.add").i32(t.k_size).op("i32.eq")
    with f.if_():
        store(True)
        f.else_()
        store(False)


def _finish(ctx: Ctx, r: int, v: int, scalar: bool, pbias: int, bias: Operand | None, alpha: float,
            node: Node | None) -> None:
    """alpha, the bias and the fused activation on the accumulator on the stack."""
    f = ctx.f
    if alpha != 1.0:
        f.f32x4_const(alpha).op("f32x4.mul")
    if bias is not None:
        offset = r * bias.row * 4 + v * 16 * bias.col
        f.get(pbias)
        if bias.col == 1 and not scalar:
            f.mem("v128.load", offset=offset)
        else:
            f.mem("f32.load", offset=offset).op("f32x4.splat")
        if bias.scale != 1.0:
            f.f32x4_const(bias.scale).op("f32x4.mul")
        f.op("f32x4.add")
    if node is not None:
        epilogue(ctx, node)


def emit_blocked_gemm(ctx: Ctx, m_size: int, n_size: int, k_size: int, a: Operand, b: Operand, c: Operand,
                      bias: Operand | None, node: Node | None) -> None:
    """emit_gemm over blocks of `column_block(k_size)` columns, so that B's block stays in cache
    while every row block of A passes over it (the GEMM walks rows outermost); Conv and
    Winograd's products."""
    f = ctx.f
    block = column_block(k_size)
    if n_size <= block:
        emit_gemm(ctx, m_size, n_size, k_size, a, b, c, bias, node=node)
        return
    full, rest = divmod(n_size, block)
    counter, pb, pc = f.local(I32), f.local(I32), f.local(I32)
    b_start, c_start = f.local(I32), f.local(I32)
    for start, local in ((b.base, b_start), (c.base, c_start)):
        if isinstance(start, int):
            f.i32(start)
        else:
            f.get(start[1])
        f.set(local)
    with f.for_range(counter, 0, full):
        f.get(counter).i32(block * 4).op("i32.mul").set(pb)
        f.get(pb).get(c_start).op("i32.add").set(pc)
        f.get(pb).get(b_start).op("i32.add").set(pb)
        emit_gemm(ctx, m_size, block, k_size, a, Operand(("local", pb), b.row, 1), Operand(("local", pc), c.row, 1),
                  bias, node=node)
    if rest:
        f.get(b_start).i32(full * block * 4).op("i32.add").set(pb)
        f.get(c_start).i32(full * block * 4).op("i32.add").set(pc)
        emit_gemm(ctx, m_size, rest, k_size, a, Operand(("local", pb), b.row, 1), Operand(("local", pc), c.row, 1),
                  bias, node=node)


@kernel("Gemm", check=lambda node, graph: only_float32(node, graph), scratch=gemm_scratch)
def emit_gemm_op(ctx: Ctx, node: Node) -> None:
    a_name, b_name = node.inputs[0], node.inputs[1]
    a_shape = ctx.info(a_name).shape
    trans_a, trans_b = int(node.attr("transA", 0)), int(node.attr("transB", 0))
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    m_size, k_size = (a_shape[1], a_shape[0]) if trans_a else a_shape
    a = Operand(ctx.addr(a_name), 1, a_shape[1]) if trans_a else Operand(ctx.addr(a_name), a_shape[1], 1)
    weights = ctx.const(b_name)
    if weights is not None:
        packed = (weights.T if trans_b else weights).astype(np.float32)
        n_size = packed.shape[1]
        b: Operand | np.ndarray = packed
    elif trans_b:
        n_size, k_rows = ctx.info(b_name).shape
        emit_permute(ctx.f, ctx.scratch_addr, ctx.addr(b_name), (n_size, k_rows), [1, 0], 4)
        b = Operand(ctx.scratch_addr, n_size, 1)
    else:
        n_size = ctx.info(b_name).shape[1]
        b = Operand(ctx.addr(b_name), n_size, 1)
    bias = None
    if len(node.inputs) > 2 and node.inputs[2]:
        c_name = node.inputs[2]
        c_shape = ctx.info(c_name).shape
        c_value = ctx.const(c_name)
        if c_value is not None:
            values, row, col = constant_bias(c_value, beta, m_size, n_size)
            bias = Operand(ctx.data(values), row, col)
        else:
            bias = Operand(ctx.addr(c_name), *bias_strides(c_shape), beta)
    out = Operand(ctx.addr(node.outputs[0]), n_size, 1)
    emit_gemm(ctx, m_size, n_size, k_size, a, b, out, bias, alpha, node,
              a_scratch=ctx.scratch_addr if weights is not None else None)


@kernel("MatMul", check=lambda node, graph: only_float32(node, graph), scratch=matmul_scratch)
def emit_matmul(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    a_name, b_name = node.inputs
    pairs, m_size, n_size, k_size = matmul_batches(ctx.info(a_name).shape, ctx.info(b_name).shape)
    a_addr, c_addr = ctx.addr(a_name), ctx.addr(node.outputs[0])
    b_addr = ctx.addr(b_name) if ctx.const(b_name) is None or len(pairs) > 1 else 0
    if len(pairs) == 1:
        weights = ctx.const(b_name)
        b: Operand | np.ndarray = (Operand(b_addr + pairs[0][1] * 4, n_size, 1) if weights is None
                                   else weights.astype(np.float32).reshape(k_size, n_size))
        emit_gemm(ctx, m_size, n_size, k_size, Operand(a_addr + pairs[0][0] * 4, k_size, 1), b,
                  Operand(c_addr, n_size, 1), node=node, a_scratch=ctx.scratch_addr if weights is not None else None)
        return
    # One GEMM body in a run-time loop; a table gives each batch's A and B offsets (bytes).
    table = ctx.data(np.array([(a_addr + i * 4, b_addr + j * 4) for i, j in pairs], dtype=np.int32))
    t, pa, pb, pc = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    with f.for_range(t, 0, len(pairs)):
        f.get(t).i32(8).op("i32.mul").mem("i32.load", offset=table).set(pa)
        f.get(t).i32(8).op("i32.mul").mem("i32.load", offset=table + 4).set(pb)
        f.get(t).i32(m_size * n_size * 4).op("i32.mul").i32(c_addr).op("i32.add").set(pc)
        emit_gemm(ctx, m_size, n_size, k_size, Operand(("local", pa), k_size, 1),
                  Operand(("local", pb), n_size, 1), Operand(("local", pc), n_size, 1), node=node)
