"""MatMulNBits (com.microsoft) with 4-bit weights, run on the packed weights (lowering/nbits.py plans it).

Per row of A: the row copied into scratch (zeros after it up to whole blocks) and its block sums; then per
group of four columns, per block, per pair of k's: one 32-bit load of four bytes (two codes of each column),
widened to i32 lanes, the low and high nibbles converted to float32 and multiplied by a[k] and a[k + 1]
splatted; at the block's end the block's f32x4 is scaled by the columns' scales and the scale * zero point
times the row's block sum subtracted. 16 weights per 4 columns x 4 k's cost about 14 instructions.
Other bit widths, float zero points and weights computed at run time are dequantized to float32 while
compiling instead (passes/contrib.py), as is every MatMulNBits of a model with symbolic dims.
"""

from __future__ import annotations

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.writer import F32, I32, V128
from wasinfer.ir import Graph, Node
from wasinfer.lowering.nbits import LANES, Int4Plan, pack_int4, scratch_bytes
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
    group_bytes = plan.blocks * plan.block // 2 * LANES
    m, g, b, p, pa, pc, pt, py = (f.local(I32) for _ in range(8))
    acc, part, word = (f.local(V128) for _ in range(3))
    total = f.local(F32)

    if plan.padded_k > plan.k:  # the padding after the row, zero for every row
        f.i32(row + 4 * plan.k).i32(0).i32(4 * (plan.padded_k - plan.k)).memory_fill()

    def group(lanes: int) -> None:
        """Columns 4g .. 4g + 3 of row m (g, m locals): `lanes` of them stored."""
        f.v128(ZERO).set(acc)
        f.get(g).i32(group_bytes).op("i32.mul").i32(codes_at).op("i32.add").set(pc)
        f.get(g).i32(plan.blocks * 16).op("i32.mul").set(pt)
        f.i32(row).set(pa)
        with f.for_range(b, 0, plan.blocks):
            f.v128(ZERO).set(part)
            with f.for_range(p, 0, plan.block // 2):
                f.get(pc).mem("v128.load32_zero").ops("i16x8.extend_low_i8x16_u", "i32x4.extend_low_i16x8_u")
                f.set(word).get(part)
                f.get(word).i32(15).op("i32x4.splat").ops("v128.and", "f32x4.convert_i32x4_s")
                f.get(pa).mem("f32.load").ops("f32x4.splat", "f32x4.mul", "f32x4.add")
                f.get(word).i32(4).ops("i32x4.shr_u", "f32x4.convert_i32x4_s")
                f.get(pa).mem("f32.load", 4).ops("f32x4.splat", "f32x4.mul", "f32x4.add").set(part)
                f.inc(pc, 4).inc(pa, 8)
            f.get(acc).get(part).get(pt).mem("v128.load", scales_at).ops("f32x4.mul", "f32x4.add")
            f.get(pt).mem("v128.load", zeros_at).get(b).i32(4).op("i32.mul").mem("f32.load", sums)
            f.ops("f32x4.splat", "f32x4.mul", "f32x4.sub").set(acc)
            f.inc(pt, 16)
        f.get(acc).get(g).i32(16).op("i32.mul").mem("v128.load", bias_at).op("f32x4.add").set(acc)
        # py: y[m, 4g]
        f.get(m).i32(plan.n).op("i32.mul").get(g).i32(LANES).op("i32.mul").op("i32.add").i32(4).op("i32.mul")
        f.i32(y_at).op("i32.add").set(py)
        if lanes == LANES:
            f.get(py).get(acc).mem("v128.store")
        else:
            for lane in range(lanes):
                f.get(py).get(acc).lane("f32x4.extract_lane", lane).mem("f32.store", 4 * lane)

    full, rest = divmod(plan.n, LANES)
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
                group(LANES)
        if rest:
            f.i32(full).set(g)
            group(rest)

