"""MelWeightMatrix whose parameters each run gives.

Exported models hold the bins, the DFT length, the sample rate and the edges as constants, and the matrix folds
while compiling (ops/linalg.py). Where they are run-time inputs with their ranges declared (--input-values,
passes/values.py), the output is laid out for the largest [dft_length // 2 + 1, num_mel_bins] and this kernel
computes what ONNX's reference computes, in float64: the edges on the mel scale (2595 log10(1 + hz / 700)),
num_mel_bins + 2 points evenly spaced between them, back in hertz, each as a spectrogram bin
floor((dft_length + 1) hz / sample_rate), then each mel bin's triangle over the spectrogram bins. float64's log
and exp are not Wasm instructions: `push_log` and `push_exp` reduce the argument by powers of two and sum a short
series (within a few units in the last place, far below the spacing of the bins' floors). Bins that land outside
the spectrogram, or a negative count, trap the run, as the reference fails them.
"""

from __future__ import annotations

import math

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.writer import F64, I32, I64, Func
from wasinfer.ir import Graph, Node
from wasinfer.ir.symbolic import Expr
from wasinfer.passes import align

LOADS = {"int32": ("i32.load", "f64.convert_i32_s"), "int64": ("i64.load", "f64.convert_i64_s"),
         "float32": ("f32.load", "f64.promote_f32"), "float64": ("f64.load", "")}
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # ln 2 in two parts (fdlibm's)
EXP_TERMS = 14  # exp r = sum r^k / k! for |r| <= ln2 / 2: the 14th term is below 1e-18
LOG_TERMS = 12  # log m = 2 atanh s = 2 sum s^(2k+1) / (2k+1), |s| <= 0.1716: the 12th below 1e-19


def push_exp(f: Func, x: int) -> None:
    """Push exp(x) (f64) for |x| < 700: x = k ln2 + r, exp x = 2^k exp r."""
    k, r, p = f.local(F64), f.local(F64), f.local(F64)
    f.get(x).f64(1 / math.log(2)).op("f64.mul").op("f64.nearest").set(k)
    f.get(x).get(k).f64(LN2_HI).op("f64.mul").op("f64.sub").get(k).f64(LN2_LO).op("f64.mul").op("f64.sub").set(r)
    f.f64(1 / math.factorial(EXP_TERMS - 1)).set(p)
    for n in range(EXP_TERMS - 2, -1, -1):  # Horner: p = p r + 1 / n!
        f.get(p).get(r).op("f64.mul").f64(1 / math.factorial(n)).op("f64.add").set(p)
    f.get(p).get(k).op("i64.trunc_sat_f64_s").i64(1023).op("i64.add").i64(52).op("i64.shl")
    f.op("f64.reinterpret_i64").op("f64.mul")


def push_log(f: Func, y: int) -> None:
    """Push log(y) (f64) for a normal y > 0: y = m 2^e with m in [sqrt(1/2), sqrt(2)), log y = e ln2 + log m."""
    bits, e, m, s, z, p = f.local(I64), f.local(F64), f.local(F64), f.local(F64), f.local(F64), f.local(F64)
    f.get(y).op("i64.reinterpret_f64").set(bits)
    f.get(bits).i64(52).op("i64.shr_u").i64(0x7FF).op("i64.and").i64(1023).op("i64.sub").op("f64.convert_i64_s")
    f.set(e)
    f.get(bits).i64(0xFFFFFFFFFFFFF).op("i64.and").i64(0x3FF0000000000000).op("i64.or").op("f64.reinterpret_i64")
    f.set(m)
    f.get(m).f64(math.sqrt(2)).op("f64.gt")
    with f.if_():
        f.get(m).f64(0.5).op("f64.mul").set(m).get(e).f64(1.0).op("f64.add").set(e)
    f.get(m).f64(1.0).op("f64.sub").get(m).f64(1.0).op("f64.add").op("f64.div").set(s)
    f.get(s).get(s).op("f64.mul").set(z)
    f.f64(1 / (2 * LOG_TERMS - 1)).set(p)
    for n in range(LOG_TERMS - 2, -1, -1):  # Horner in s²: p = p z + 1 / (2n + 1)
        f.get(p).get(z).op("f64.mul").f64(1 / (2 * n + 1)).op("f64.add").set(p)
    f.get(p).get(s).op("f64.mul").f64(2.0).op("f64.mul")
    f.get(e).f64(LN2_LO).op("f64.mul").op("f64.add").get(e).f64(LN2_HI).op("f64.mul").op("f64.add")


def _parameters_declared(node: Node, graph: Graph) -> bool:
    given = node.inputs[:5]
    return (any(n in graph.read_values for n in given)
            and all(n in graph.read_values or n in graph.constants for n in given))


def mel_scratch(node: Node, graph: Graph) -> int:
    """The spectrogram bin of each of the num_mel_bins + 2 points (int32)."""
    return align(4 * (graph.info(node.outputs[0]).shape[1] + 2)) if _parameters_declared(node, graph) else 0


def _check_mel(node: Node, graph: Graph) -> list[str]:
    if not _parameters_declared(node, graph):
        return ["its parameters are computed at run time; constants (folded while compiling), or run-time inputs "
                "with their values' ranges declared (--input-values NAME=MIN..MAX), are supported (they set the "
                "output's shape)"]
    problems = [f"{name!r} has dtype {graph.info(name).dtype}; {', '.join(LOADS)} are supported"
                for name in node.inputs[:5] if graph.info(name).dtype.name not in LOADS]
    if graph.info(node.outputs[0]).dtype != np.float32:
        problems.append(f"output_datatype {graph.info(node.outputs[0]).dtype} with run-time parameters: float32 only")
    return problems


def _push(ctx: Ctx, name: str) -> None:
    """Push a parameter as an f64: a constant's, or read from the input."""
    value = ctx.graph.constants.get(name)
    if value is not None:
        ctx.f.f64(float(np.asarray(value).reshape(-1)[0]))
        return
    load, widen = LOADS[ctx.info(name).dtype.name]
    ctx.f.i32(ctx.addr(name)).mem(load, align=0)
    if widen:
        ctx.f.op(widen)


def _trap_if(f: Func) -> None:
    with f.if_():
        f.op("unreachable")


@kernel("MelWeightMatrix", check=_check_mel, scratch=mel_scratch)
def emit_mel_weight_matrix(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    out = ctx.info(node.outputs[0])
    rows_largest, columns_largest = out.shape
    bins, dft, rate, lower, upper = (f.local(F64) for _ in range(5))
    for local, name in zip((bins, dft, rate, lower, upper), node.inputs[:5], strict=True):
        _push(ctx, name)
        f.set(local)
    count, rows = f.local(I32), f.local(I32)
    f.get(bins).op("i32.trunc_sat_f64_s").tee(count).i32(0).op("i32.lt_s")
    f.get(count).i32(columns_largest).op("i32.gt_s").op("i32.or")
    f.get(dft).op("i32.trunc_sat_f64_s").i32(1).op("i32.shr_s").i32(1).op("i32.add").tee(rows)
    f.i32(rows_largest).op("i32.gt_s").op("i32.or").get(dft).f64(0.0).op("f64.lt").op("i32.or")
    f.get(rate).f64(0.0).op("f64.le").op("i32.or")
    _trap_if(f)
    extent = ctx.graph.decided.get(node.outputs[0], out.shape)
    for dim, value in zip(extent, (rows, count), strict=True):
        if isinstance(dim, Expr):
            f.i32(ctx.symbols[str(dim)]).get(value).mem("i32.store")
    # the edges on the mel scale: 2595 log1p(hz / 700) / ln 10
    low, high, step, argument = f.local(F64), f.local(F64), f.local(F64), f.local(F64)
    for edge, mel in ((lower, low), (upper, high)):
        f.get(edge).f64(700.0).op("f64.div").f64(1.0).op("f64.add").set(argument)
        f.f64(2595.0)
        push_log(f, argument)
        f.op("f64.mul").f64(math.log(10)).op("f64.div").set(mel)
    f.get(high).get(low).op("f64.sub").get(count).i32(2).op("i32.add").op("f64.convert_i32_s").op("f64.div").set(step)
    table, points = ctx.scratch_addr, f.local(I32)
    k, point = f.local(I32), f.local(F64)
    f.get(count).i32(2).op("i32.add").set(points)
    with f.for_range(k, 0, ("local", points)):  # num_mel_bins + 2 points, evenly spaced in mel
        f.get(k).op("f64.convert_i32_s").get(step).op("f64.mul").get(low).op("f64.add")
        f.f64(2595.0).op("f64.div").f64(math.log(10)).op("f64.mul").set(argument)
        f.f64(700.0)
        push_exp(f, argument)
        f.f64(1.0).op("f64.sub").op("f64.mul").set(point)  # back in hertz: 700 expm1(mel / 2595 ln 10)
        # its spectrogram bin: floor((dft_length + 1) hz / sample_rate)
        f.get(k).i32(4).op("i32.mul").i32(table).op("i32.add")
        f.get(dft).f64(1.0).op("f64.add").get(point).op("f64.mul").get(rate).op("f64.div").op("f64.floor")
        f.op("i32.trunc_sat_f64_s").mem("i32.store")
    _triangles(f, (ctx.addr(node.outputs[0]), out.size, columns_largest), table, count, rows)


def _triangles(f: Func, output: tuple[int, int, int], table: int, count: int, rows: int) -> None:
    """Zeros, then mel bin i's triangle between the spectrogram bins of points i, i + 1 and i + 2: rising from the
    left one to 1 at the centre (only the centre's 1 where the two meet), falling to the right one (excluded)."""
    out, size, columns = output
    i, j, left, centre, right = (f.local(I32) for _ in range(5))
    f.i32(out).i32(0).i32(size * 4).memory_fill()

    with f.for_range(i, 0, ("local", count)):
        for local, offset in ((left, 0), (centre, 4), (right, 8)):
            f.get(i).i32(4).op("i32.mul").i32(table + offset).op("i32.add").mem("i32.load").set(local)
        # every row written must be inside the spectrogram: 0 <= left, centre < rows, right <= rows
        f.get(left).i32(0).op("i32.lt_s").get(centre).get(rows).op("i32.ge_s").op("i32.or")
        f.get(right).get(rows).op("i32.gt_s").op("i32.or")
        with f.if_():
            f.op("unreachable")
        f.get(centre).get(left).op("i32.eq")
        with f.if_():
            f.get(centre).set(j)
            f.get(j).i32(columns).op("i32.mul").get(i).op("i32.add").i32(4).op("i32.mul").i32(out).op("i32.add")
            f.f32(1.0).mem("f32.store")
            f.else_()
            f.get(left).set(j)
            with f.block(), f.block(b"\x03"):  # j from left to centre, inclusive: (j - left) / (centre - left)
                f.get(j).get(centre).op("i32.gt_s").br_if(1)
                f.get(j).i32(columns).op("i32.mul").get(i).op("i32.add").i32(4).op("i32.mul").i32(out).op("i32.add")
                f.get(j).get(left).op("i32.sub").op("f64.convert_i32_s")
                f.get(centre).get(left).op("i32.sub").op("f64.convert_i32_s").op("f64.div")
                f.op("f32.demote_f64").mem("f32.store")
                f.inc(j, 1).br(0)
        f.get(centre).set(j)
        with f.block(), f.block(b"\x03"):  # j from centre to right, exclusive: (right - j) / (right - centre)
            f.get(j).get(right).op("i32.ge_s").br_if(1)
            f.get(j).i32(columns).op("i32.mul").get(i).op("i32.add").i32(4).op("i32.mul").i32(out).op("i32.add")
            f.get(right).get(j).op("i32.sub").op("f64.convert_i32_s")
            f.get(right).get(centre).op("i32.sub").op("f64.convert_i32_s").op("f64.div")
            f.op("f32.demote_f64").mem("f32.store")
            f.inc(j, 1).br(0)


__all__ = ["emit_mel_weight_matrix", "push_exp", "push_log"]
