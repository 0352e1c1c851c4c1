"""MatMulNBits (com.microsoft) with 4-bit weights, run on the packed weights (lowering/nbits.py plans it).

Per row of A: the row copied into scratch (zeros after it up to whole blocks) and its block sums; then per
group of sixteen columns, per block, per pair of k's: one v128 load of sixteen bytes (two codes of each
column), the low and high nibbles split with one and and one shift of all sixteen, each widened to four i32x4,
converted to float32 and multiplied by a[k] or a[k + 1] splatted, into four f32x4 partial sums; at the
block's end each partial sum is scaled by its columns' scales and the scale * zero point times the row's
block sum subtracted. 32 weights cost about 45 instructions.
Other bit widths, float zero points and weights computed at run time are dequantized to float32 while
compiling instead (passes/contrib.py), as is every MatMulNBits of a model with symbolic dims.
"""

from __future__ import annotations

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.writer import F32, I32, V128
from wasinfer.ir import Graph, Node
from wasinfer.lowering.nbits import LANES, WIDTH, Int4Plan, pack_int4, scratch_bytes
from wasinfer.ops.contrib import MS, int4_problems

ZERO = bytes(16)


def _plan(node: Node) -> Int4Plan:
    return Int4Plan(int(node.attr("K", 0)), int(node.attr("N", 0)), int(node.attr("block_size", 0)))


def _input(node: Node, index: int) -> str:
    return node.inputs[index] if len(node.inputs) > index else ""


def _check(node: Node, graph: Graph) -> list[str]:
    if node.declined:  # passes/contrib.py could neither leave it to this kernel nor dequantize its weights
        return [node.declined]
    problems = only_float32(node, graph, [node.inputs[0], node.outputs[0]])
    return problems + int4_problems(node, graph)


def _scratch(node: Node, graph: Graph) -> int:
    return scratch_bytes(_plan(node))


@kernel("MatMulNBits", domain=MS, check=_check, scratch=_scratch)
def emit_matmul_nbits(ctx: Ctx, node: Node) -> None:
    f, graph = ctx.f, ctx.graph
    plan = _plan(node)
    zero_points = graph.constants[_input(node, 3)] if _input(node, 3) else None
    bias = graph.constants[_input(node, 5)] if _input(node, 5) else None
    codes, scales, scaled_zeros, biases = pack_int4(plan, graph.constants[node.inputs[1]],
                                                    graph.constants[node.inputs[2]], zero_points, bias)
    codes_at, scales_at, zeros_at, bias_at = (ctx.data(t) for t in (codes, scales, scaled_zeros, biases))
    a_at, y_at = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    rows = ctx.info(node.inputs[0]).size // plan.k
    row, sums = ctx.scratch_addr, ctx.scratch_addr + 4 * plan.padded_k
    group_bytes = plan.blocks * plan.block // 2 * WIDTH
    vectors = WIDTH // LANES
    m, g, b, p, pa, pc, pt, py = (f.local(I32) for _ in range(8))
    acc = [f.local(V128) for _ in range(vectors)]
    part = [f.local(V128) for _ in range(vectors)]
    codes_v, nibbles, a_k, half = (f.local(V128) for _ in range(4))
    total = f.local(F32)

    if plan.padded_k > plan.k:  # the padding after the row, zero for every row
        f.i32(row + 4 * plan.k).i32(0).i32(4 * (plan.padded_k - plan.k)).memory_fill()

    def accumulate(offset: int) -> None:
        """part[v] += float(the four codes v of `nibbles`) * a[k + offset] (splatted into a_k)."""
        f.get(pa).mem("f32.load", 4 * offset).op("f32x4.splat").set(a_k)
        for v in range(vectors):
            f.get(nibbles).op("i16x8.extend_low_i8x16_u" if v < 2 else "i16x8.extend_high_i8x16_u").set(half)
            f.get(part[v]).get(half).op("i32x4.extend_low_i16x8_u" if v % 2 == 0 else "i32x4.extend_high_i16x8_u")
            f.ops("f32x4.convert_i32x4_s").get(a_k).ops("f32x4.mul", "f32x4.add").set(part[v])

    def group(columns: int) -> None:
        """Columns 16g .. 16g + 15 of row m (g, m locals): the first `columns` of them stored."""
        for v in range(vectors):
            f.v128(ZERO).set(acc[v])
        f.get(g).i32(group_bytes).op("i32.mul").i32(codes_at).op("i32.add").set(pc)
        f.get(g).i32(plan.blocks * WIDTH * 4).op("i32.mul").set(pt)
        f.i32(row).set(pa)
        with f.for_range(b, 0, plan.blocks):
            for v in range(vectors):
                f.v128(ZERO).set(part[v])
            with f.for_range(p, 0, plan.block // 2):
                f.get(pc).mem("v128.load").set(codes_v)
                f.get(codes_v).v128(bytes([15] * 16)).op("v128.and").set(nibbles)
                accumulate(0)
                f.get(codes_v).i32(4).op("i8x16.shr_u").set(nibbles)
                accumulate(1)
                f.inc(pc, WIDTH).inc(pa, 8)
            for v in range(vectors):
                f.get(acc[v]).get(part[v]).get(pt).mem("v128.load", scales_at + 16 * v).ops("f32x4.mul", "f32x4.add")
                f.get(pt).mem("v128.load", zeros_at + 16 * v).get(b).i32(4).op("i32.mul").mem("f32.load", sums)
                f.ops("f32x4.splat", "f32x4.mul", "f32x4.sub").set(acc[v])
            f.inc(pt, WIDTH * 4)
        # py: y[m, 16g]
        f.get(m).i32(plan.n).op("i32.mul").get(g).i32(WIDTH).op("i32.mul").op("i32.add").i32(4).op("i32.mul")
        f.i32(y_at).op("i32.add").set(py)
        for v in range(vectors):
            f.get(acc[v]).get(g).i32(WIDTH * 4).op("i32.mul").mem("v128.load", bias_at + 16 * v).op("f32x4.add")
            f.set(acc[v])
            stored = min(LANES, columns - LANES * v)
            if stored == LANES:
                f.get(py).get(acc[v]).mem("v128.store", 16 * v)
                continue
            for lane in range(max(stored, 0)):  # the last group's columns below N
                f.get(py).get(acc[v]).lane("f32x4.extract_lane", lane).mem("f32.store", 16 * v + 4 * lane)

    full, rest = divmod(plan.n, WIDTH)
    with f.for_range(m, 0, rows):
        # the row into scratch, then its block sums
        f.i32(row).get(m).i32(4 * plan.k).op("i32.mul").i32(a_at).op("i32.add").i32(4 * plan.k).memory_copy()
        f.i32(row).set(pa)
        with f.for_range(b, 0, plan.blocks):
            f.f32(0.0).set(total)
            with f.for_range(p, 0, plan.block):
                f.get(total).get(pa).mem("f32.load").op("f32.add").set(total)
                f.inc(pa, 4)
            f.get(b).i32(4).op("i32.mul").get(total).mem("f32.store", sums)
        if full:
            with f.for_range(g, 0, full):
                group(WIDTH)
        if rest:
            f.i32(full).set(g)
            group(rest)
