"""Matrix products: Gemm, MatMul (batched, broadcast), and the GEMM routine Conv lowers to.

C[m, n] = alpha * sum_k A[m, k] * B[k, n] + bias[m, n], then the fused activation.
B must be contiguous along n; A may have any strides (so transA is free). The routine
walks C in register tiles of 4 rows x 8 columns (8 f32x4 accumulators), then 1-row and
4-column and scalar remainders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wasinfer.codegen.context import Ctx, kernel, only_float32
from wasinfer.codegen.kernels.layout import emit_permute
from wasinfer.codegen.kernels.unary import epilogue
from wasinfer.codegen.wasm import I32, V128
from wasinfer.ir import Graph, Node

# A base address: a constant, or ("local", index) for one computed at run time.
Base = int | tuple[str, int]


@dataclass
class Operand:
    base: Base
    row: int  # element stride between rows (m for A and C, k for B)
    col: int  # element stride between columns (k for A, n for B and C)
    scale: float = 1.0  # applied on load (Gemm's beta on a run-time C)


def _push(ctx: Ctx, base: Base) -> None:
    if isinstance(base, int):
        ctx.f.i32(base)
    else:
        ctx.f.get(base[1])


def emit_gemm(ctx: Ctx, m_size: int, n_size: int, k_size: int, a: Operand, b: Operand | np.ndarray, c: Operand,
              bias: Operand | None = None, alpha: float = 1.0, node: Node | None = None) -> None:
    """Emit C = alpha*A@B + bias (+ activation). A constant B (a [K, N] array) is packed at
    compile time into panels [N/width][K][width], so the k loop reads B contiguously."""
    f = ctx.f
    m, n, k = f.local(I32), f.local(I32), f.local(I32)
    pa, pb, pc, pbias = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    widths = WIDTHS[ROWS] if m_size >= ROWS else WIDTHS[1]
    regions = []  # (n_lo, n_hi, width)
    n_lo = 0
    for width in widths:
        n_hi = n_size // width * width
        if n_hi > n_lo:
            regions.append((n_lo, n_hi, width))
            n_lo = n_hi
    if isinstance(b, np.ndarray):
        packed = [b[:, lo:hi].reshape(k_size, (hi - lo) // w, w).transpose(1, 0, 2).reshape(-1)
                  for lo, hi, w in regions]
        base = ctx.data(np.concatenate(packed).astype(np.float32))
        starts = np.cumsum([0] + [p.size for p in packed]).tolist()
        b_sources = [(base + starts[i] * 4, w) for i, (_, _, w) in enumerate(regions)]
    else:
        assert b.col == 1, "a run-time B must be contiguous along n"
    assert c.col == 1, "C must be contiguous along n"
    m_block = m_size // ROWS * ROWS
    for m_lo, m_hi, rows in ((0, m_block, ROWS), (m_block, m_size, 1)):
        if m_hi <= m_lo:
            continue
        with f.for_range(m, m_lo, m_hi, rows):
            for index, (lo, hi, width) in enumerate(regions):
                with f.for_range(n, lo, hi, width):
                    if isinstance(b, np.ndarray):
                        region_base, step = b_sources[index]
                        # pb = region + (n - lo) * K * 4 ; next k is one panel row further
                        f.get(n).i32(lo).op("i32.sub").i32(k_size * 4).op("i32.mul").i32(region_base)
                        f.op("i32.add").set(pb)
                        b_step = step
                    else:
                        _push(ctx, b.base)
                        f.get(n).i32(4).op("i32.mul").op("i32.add").set(pb)
                        b_step = b.row
                    _tile(ctx, rows, width, k_size, b_step, m, n, k, pa, pb, pc, pbias, a, c, bias, alpha, node)


# Register tiles: ROWS x width. 4 x 8 keeps 8 accumulators + 2 B vectors + 1 splat in the
# 16 SIMD registers of x86-64; a single row can afford 4 B vectors per step.
ROWS = 4
WIDTHS = {ROWS: (8, 4, 1), 1: (16, 4, 1)}


def _tile(ctx: Ctx, rows: int, width: int, k_size: int, b_step: int, m: int, n: int, k: int, pa: int, pb: int,
          pc: int, pbias: int, a: Operand, c: Operand, bias: Operand | None, alpha: float,
          node: Node | None) -> None:
    """One register tile; pb already points at B[0, n] and advances by `b_step` elements per k."""
    f = ctx.f
    vectors = width // 4
    scalar = width == 1
    acc = [[f.local(V128) for _ in range(max(vectors, 1))] for _ in range(rows)]
    bvec = [f.local(V128) for _ in range(max(vectors, 1))]
    for row in acc:
        for v in row:
            f.f32x4_const(0.0).set(v)
    _push(ctx, a.base)
    f.get(m).i32(a.row * 4).op("i32.mul").op("i32.add").set(pa)
    with f.for_range(k, 0, k_size):
        for v in range(max(vectors, 1)):
            f.get(pb)
            if scalar:
                f.mem("f32.load").op("f32x4.splat")
            else:
                f.mem("v128.load", offset=16 * v)
            f.set(bvec[v])
        for r in range(rows):
            f.get(pa).mem("f32.load", offset=r * a.row * 4).op("f32x4.splat")
            splat = f.local(V128)
            f.set(splat)
            for v in range(max(vectors, 1)):
                f.get(acc[r][v]).get(splat).get(bvec[v]).op("f32x4.mul").op("f32x4.add").set(acc[r][v])
        f.inc(pa, a.col * 4).inc(pb, b_step * 4)
    # pc = C + m*row*4 + n*4
    _push(ctx, c.base)
    f.get(m).i32(c.row * 4).op("i32.mul").op("i32.add").get(n).i32(4).op("i32.mul").op("i32.add").set(pc)
    if bias is not None:
        _push(ctx, bias.base)
        f.get(m).i32(bias.row * 4).op("i32.mul").op("i32.add")
        f.get(n).i32(bias.col * 4).op("i32.mul").op("i32.add").set(pbias)
    for r in range(rows):
        for v in range(max(vectors, 1)):
            f.get(pc)
            f.get(acc[r][v])
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
            if scalar:
                f.lane("f32x4.extract_lane", 0).mem("f32.store", offset=r * c.row * 4)
            else:
                f.mem("v128.store", offset=r * c.row * 4 + v * 16)


def _gemm_scratch(node: Node, graph: Graph) -> int:
    """A run-time B with transB=1 is transposed into scratch first, so B is contiguous along n."""
    if node.inputs[1] in graph.constants or not node.attr("transB", 0):
        return 0
    return graph.info(node.inputs[1]).nbytes


@kernel("Gemm", check=lambda node, graph: only_float32(node, graph), scratch=_gemm_scratch)
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
            full = np.broadcast_to(c_value.astype(np.float32) * np.float32(beta), (m_size, n_size))
            # keep the cheapest broadcast form: per column, per row, or full
            if np.all(full == full[:1]):
                bias = Operand(ctx.data(full[0].copy()), 0, 1)
            elif np.all(full == full[:, :1]):
                bias = Operand(ctx.data(full[:, 0].copy()), 1, 0)
            else:
                bias = Operand(ctx.data(np.ascontiguousarray(full)), n_size, 1)
        else:
            padded = (1,) * (2 - len(c_shape)) + tuple(c_shape)
            bias = Operand(ctx.addr(c_name), padded[1] if padded[0] != 1 else 0, 1 if padded[1] != 1 else 0, beta)
    out = Operand(ctx.addr(node.outputs[0]), n_size, 1)
    emit_gemm(ctx, m_size, n_size, k_size, a, b, out, bias, alpha, node)


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


@kernel("MatMul", check=lambda node, graph: only_float32(node, graph))
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
                  Operand(c_addr, n_size, 1), node=node)
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
