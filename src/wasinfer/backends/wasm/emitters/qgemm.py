"""QGemmInt8: the int8 GEMM with requantisation (passes/int8.py fuses it; lowering/qgemm.py plans it).

    acc[m, n] = sum_k (a[m, k] - a_zero) * w[k, n] + bias[n]           (exact, i32)
    y[m, n]   = saturate(nearest(float32(acc) * scale[n]) + y_zero)    (MLAS's requantisation)

The requantisation follows MLAS (`MlasRequantizeOutput`): the i32 converted to float32, one
multiply by the column's multiplier, clamped to [qmin - y_zero, qmax - y_zero], rounded to the
nearest integer with ties to even (f32x4.nearest; x86's cvtps2dq in MLAS), then y_zero added.
The same float32 operations in the same order, so the outputs equal ONNX Runtime's wherever its
integer accumulation is exact too.

The micro-kernel, per k pair of a PANEL x 8 tile: one v128 load of the A panel, 4 shuffles (a
row's pair splatted), 2 `v128.load8x8_s` (eight weight bytes widened to i16 in the load),
8 `i32x4.dot_i16x8_s` + 8 `i32x4.add`: 64 multiply-adds where the float GEMM's k step does 32 in
as many instructions. A single row takes 16 columns.
"""

from __future__ import annotations

import struct

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.writer import I32, V128
from wasinfer.ir import Graph, Node
from wasinfer.lowering.qgemm import QGemmPlan, a_scratch_bytes, column_tables, pack_weights, qgemm_plan
from wasinfer.ops.quantized import INT8_DOMAIN

QUANTIZED = (np.dtype(np.int8), np.dtype(np.uint8))


def _sizes(node: Node, graph: Graph) -> tuple[int, int, int]:
    a_shape = graph.info(node.inputs[0]).shape
    m_size = int(np.prod(a_shape[:-1], dtype=np.int64))
    k_size, n_size = graph.info(node.inputs[1]).shape
    return m_size, n_size, k_size


def _plan(node: Node, graph: Graph) -> QGemmPlan:
    return qgemm_plan(*_sizes(node, graph))


def _check(node: Node, graph: Graph) -> list[str]:
    if len(node.inputs) != 6 or not all(node.inputs) or len(node.outputs) != 1:
        return ["expects inputs (a, w, bias, scale, a_zero, y_zero) and one output, as passes/int8.py writes it"]
    a, w, bias, scale, a_zero, y_zero = node.inputs
    y = node.outputs[0]
    problems = []
    if graph.info(a).dtype not in QUANTIZED or graph.info(y).dtype not in QUANTIZED:
        problems.append("A and Y must be int8 or uint8")
    for name, dtype in ((w, np.int8), (bias, np.int32), (scale, np.float32)):
        if name not in graph.constants or graph.constants[name].dtype != dtype:
            problems.append(f"{name!r} must be a {np.dtype(dtype).name} constant")
    if w in graph.constants and graph.constants[w].ndim != 2:
        problems.append("the weight must be 2-D [K, N]")
    for zero, of in ((a_zero, a), (y_zero, y)):
        value = graph.constants.get(zero)
        if value is None or value.size != 1 or value.dtype != graph.info(of).dtype:
            problems.append(f"zero point {zero!r} must be one constant of {of!r}'s dtype")
    if not problems and graph.info(a).shape[-1] != graph.constants[w].shape[0]:
        problems.append(f"A's last dim {graph.info(a).shape[-1]} is not W's K {graph.constants[w].shape[0]}")
    return problems


def _scratch(node: Node, graph: Graph) -> int:
    return a_scratch_bytes(_plan(node, graph))


def _i32x4(value: int) -> bytes:
    return struct.pack("<4i", value, value, value, value)


@kernel("QGemmInt8", domain=INT8_DOMAIN, check=_check, scratch=_scratch)
def emit_qgemm(ctx: Ctx, node: Node) -> None:
    f, graph = ctx.f, ctx.graph
    plan = _plan(node, graph)
    a_name, w_name, bias_name, scale_name, a_zero_name, y_zero_name = node.inputs
    a_dtype, y_dtype = ctx.info(a_name).dtype, ctx.info(node.outputs[0]).dtype
    a_zero = int(graph.constants[a_zero_name].reshape(()))
    y_zero = int(graph.constants[y_zero_name].reshape(()))
    weights = ctx.data(pack_weights(graph.constants[w_name], plan))
    biases = ctx.data(column_tables(graph.constants[bias_name].astype(np.int32), plan))
    scales = ctx.data(column_tables(graph.constants[scale_name].astype(np.float32), plan))
    scratch = ctx.scratch_addr
    _convert_a(ctx, plan, ctx.addr(a_name), scratch, a_zero, "s" if a_dtype.kind == "i" else "u")

    info = np.iinfo(y_dtype)
    out = ctx.addr(node.outputs[0])
    tile_bytes = plan.k_pairs * plan.width * 2
    panel_bytes = plan.k_pairs * plan.panel * 4
    full_panels, rest_rows = divmod(plan.m_size, plan.panel)
    panel, tile, pa, pb, pc, pt, end = (f.local(I32) for _ in range(7))
    requant = _Requant(float(info.min - y_zero), float(info.max - y_zero), y_zero, y_dtype.kind == "i",
                       biases, scales)

    def row_block(rows: int) -> None:
        """Every column tile of the panel `panel` (a local), `rows` of its rows stored."""
        def tile_at(first_column: int | None) -> None:
            # pb: this tile's packed weights; pt: its tables' byte offset; pc: y[panel * PANEL, column]
            if first_column is None:  # the run-time loop's tile `tile`
                f.get(tile).i32(tile_bytes).op("i32.mul").i32(weights).op("i32.add").set(pb)
                f.get(tile).i32(plan.width * 4).op("i32.mul").set(pt)
                f.get(tile).i32(plan.width).op("i32.mul")
            else:
                index = plan.starts.index(first_column)
                f.i32(weights + index * tile_bytes).set(pb).i32(index * plan.width * 4).set(pt)
                f.i32(first_column)
            f.get(panel).i32(plan.panel * plan.n_size).op("i32.mul").op("i32.add").i32(out).op("i32.add").set(pc)
            f.get(panel).i32(panel_bytes).op("i32.mul").i32(scratch).op("i32.add").set(pa)
            _tile(ctx, plan, rows, pa, pb, pc, pt, end, requant)

        with f.for_range(tile, 0, plan.regular):
            tile_at(None)
        for start in plan.starts[plan.regular:]:
            tile_at(start)

    if full_panels:
        with f.for_range(panel, 0, full_panels):
            row_block(plan.panel)
    if rest_rows:
        f.i32(full_panels).set(panel)
        row_block(rest_rows)


def _convert_a(ctx: Ctx, plan: QGemmPlan, a: int, scratch: int, a_zero: int, sign: str) -> None:
    """A [M, K] (u)int8 → scratch, (a - a_zero) as i16 in pairs per panel row; an odd K's pad is 0."""
    f = ctx.f
    m, src, dst, k = (f.local(I32) for _ in range(4))
    pair_step = plan.panel * 4  # bytes between a row's consecutive k pairs
    load = f"i32.load8_{sign}"
    with f.for_range(m, 0, plan.m_size):
        f.get(m).i32(plan.k_size).op("i32.mul").i32(a).op("i32.add").set(src)
        # dst = scratch + (m / panel) * KP * panel * 4 + (m % panel) * 4
        f.get(m).i32(plan.panel).op("i32.div_u").i32(plan.k_pairs * pair_step).op("i32.mul")
        f.get(m).i32(plan.panel).op("i32.rem_u").i32(4).op("i32.mul").op("i32.add").i32(scratch).op("i32.add").set(dst)
        vector = plan.k_size // 8 * 8 if plan.panel == 1 else 0
        if vector:  # a single row is contiguous: eight at a time, widened in the load
            zero = f.local(V128)
            f.i32(a_zero).op("i16x8.splat").set(zero)
            with f.for_range(k, 0, vector, 8):
                f.get(dst).get(src).mem(f"v128.load8x8_{sign}", align=0).get(zero).op("i16x8.sub")
                f.mem("v128.store", align=0)
                f.inc(src, 8).inc(dst, 16)
        pairs = (plan.k_size - vector) // 2
        if pairs:
            with f.for_range(k, 0, pairs):
                for half in range(2):
                    f.get(dst).get(src).mem(load, offset=half).i32(a_zero).op("i32.sub")
                    f.mem("i32.store16", offset=2 * half)
                f.inc(src, 2).inc(dst, pair_step)
        if plan.k_size % 2:
            f.get(dst).get(src).mem(load).i32(a_zero).op("i32.sub").mem("i32.store16")
            f.get(dst).i32(0).mem("i32.store16", offset=2)


class _Requant:
    """The requantisation's constants: the clamp (shifted by y_zero), y_zero, the narrowing's
    signedness, and the column tables' addresses."""

    def __init__(self, lo: float, hi: float, y_zero: int, signed: bool, biases: int, scales: int):
        self.lo, self.hi, self.y_zero, self.signed = lo, hi, y_zero, signed
        self.biases, self.scales = biases, scales


def _tile(ctx: Ctx, plan: QGemmPlan, rows: int, pa: int, pb: int, pc: int, pt: int, end: int,
          rq: _Requant) -> None:
    """One register tile: `rows` rows of the panel at pa, the `width` columns whose weights are at pb."""
    f = ctx.f
    vectors = plan.width // 4
    acc = [[f.local(V128) for _ in range(vectors)] for _ in range(rows)]
    wvec = [f.local(V128) for _ in range(vectors)]
    avec, splat = f.local(V128), f.local(V128)
    for row in acc:
        for v in row:
            f.v128(bytes(16)).set(v)
    f.get(pb).i32(plan.k_pairs * plan.width * 2).op("i32.add").set(end)
    with f.block(), f.block(b"\x03"):
        if plan.panel == 1:
            f.get(pa).mem("v128.load32_splat", align=0).set(splat)
        else:
            f.get(pa).mem("v128.load").set(avec)
        for v in range(vectors):
            f.get(pb).mem("v128.load8x8_s", offset=8 * v, align=0).set(wvec[v])
        for r in range(rows):
            if plan.panel != 1:
                f.get(avec).get(avec).shuffle32((r, r, r, r)).set(splat)
            for v in range(vectors):
                f.get(acc[r][v]).get(splat).get(wvec[v]).op("i32x4.dot_i16x8_s").op("i32x4.add").set(acc[r][v])
        f.inc(pa, plan.panel * 4).inc(pb, plan.width * 2)
        f.get(pb).get(end).op("i32.lt_u").br_if(0)
    narrow = "i8x16.narrow_i16x8_s" if rq.signed else "i8x16.narrow_i16x8_u"
    for r in range(rows):
        for v in range(vectors):  # requantise in place
            f.get(acc[r][v]).get(pt).mem("v128.load", offset=rq.biases + 16 * v, align=0).op("i32x4.add")
            f.op("f32x4.convert_i32x4_s").get(pt).mem("v128.load", offset=rq.scales + 16 * v, align=0)
            f.op("f32x4.mul").f32x4_const(rq.lo).op("f32x4.max").f32x4_const(rq.hi).op("f32x4.min")
            f.op("f32x4.nearest").op("i32x4.trunc_sat_f32x4_s").v128(_i32x4(rq.y_zero)).op("i32x4.add")
            f.set(acc[r][v])
        halves = []
        for v in range(0, vectors, 2):  # i32 → i16 (in range: no saturation)
            f.get(acc[r][v]).get(acc[r][v + 1]).op("i16x8.narrow_i32x4_s").set(acc[r][v])
            halves.append(acc[r][v])
        if len(halves) == 2:
            f.get(halves[0]).get(halves[1]).op(narrow).set(splat)
        else:
            f.get(halves[0]).get(halves[0]).op(narrow).set(splat)
        offset = r * plan.n_size
        if plan.stored == 16:
            f.get(pc).get(splat).mem("v128.store", offset=offset, align=0)
        elif plan.stored == 8:
            f.get(pc).get(splat).lane("i64x2.extract_lane", 0).mem("i64.store", offset=offset, align=0)
        else:  # a matrix narrower than one tile
            for column in range(plan.stored):
                f.get(pc).get(splat).lane("i8x16.extract_lane_u", column).mem("i32.store8", offset=offset + column)
