"""Range whose start or delta (and limit) each run gives.

Exported models compute a Range's bounds from shapes, and it folds while compiling (ops/shape.py); a symbolic
limit alone is followed by its extent rule. Where the start or the delta is a run-time input with its range
declared (--input-values, passes/values.py), passes/dynamic.py plans the output for the most values the ranges
allow and this kernel reads the three, counts max(ceil((limit - start) / delta), 0) — in integers for an integer
Range, in float64 as numpy's arange does for a float one — writes the count to the output's symbol and the
values start + i * delta. A delta of 0, or a count past the plan, traps the run, as ONNX Runtime fails it.
A float16 or bfloat16 Range computes in float64 too, each value rounded once to its type, as ONNX's reference
computes it (numpy's arange over the bounds as Python floats); there is no float16 load or store in Wasm, so its
bounds are decoded from their bits and its values encoded (backends/wasm/minifloat.py).
"""

from __future__ import annotations

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.minifloat import FORMATS, emit_load_f64, emit_store_f64
from wasinfer.backends.wasm.writer import F64, I32, I64
from wasinfer.ir import Graph, Node
from wasinfer.ir.symbolic import Expr

LOADS = {"int32": ("i32.load", "i64.extend_i32_s"), "int64": ("i64.load", ""),
         "float32": ("f32.load", "f64.promote_f32"), "float64": ("f64.load", "")}
STORES = {"int32": ("i32.wrap_i64", "i32.store"), "int64": ("", "i64.store"),
          "float32": ("f32.demote_f64", "f32.store"), "float64": ("", "f64.store")}


def _check_range(node: Node, graph: Graph) -> list[str]:
    if node.outputs[0] not in graph.decided:  # every other Range folds while compiling
        return ["it is evaluated at compile time when start, limit and delta are constants; here they are run-time "
                "values, and its output length depends on them: declare their ranges (--input-values NAME=MIN..MAX) "
                "for one module that serves every value"]
    dtype = graph.info(node.inputs[0]).dtype
    known = dtype.name in LOADS or dtype.name in ("float16", "bfloat16")
    problems = [] if known else [f"dtype {dtype} with run-time bounds: int32, int64, float16, bfloat16, float32 "
                                 "or float64 only"]
    return problems + [f"{name!r} has dtype {graph.info(name).dtype}, not the start's {dtype}"
                       for name in node.inputs[1:3] if graph.info(name).dtype != dtype]


def _push(ctx: Ctx, name: str) -> None:
    """Push a bound as an i64 (integer Range) or f64 (float Range): a constant's, or read from the input."""
    dtype = ctx.info(name).dtype
    value = ctx.graph.constants.get(name)
    if value is not None:
        number = np.asarray(value).reshape(-1)[0]
        if dtype.kind in "iu":
            ctx.f.i64(int(number))
        else:
            ctx.f.f64(float(number))
        return
    if dtype in FORMATS:  # float16, bfloat16
        emit_load_f64(ctx.f.i32(ctx.addr(name)), dtype)
        return
    load, widen = LOADS[dtype.name]
    ctx.f.i32(ctx.addr(name)).mem(load, align=0)
    if widen:
        ctx.f.op(widen)


@kernel("Range", check=_check_range)
def emit_range(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    out = ctx.info(node.outputs[0])
    integer = out.dtype.kind in "iu"
    kind = I64 if integer else F64
    start, limit, delta = f.local(kind), f.local(kind), f.local(kind)
    for local, name in zip((start, limit, delta), node.inputs[:3], strict=True):
        _push(ctx, name)
        f.set(local)
    count, index, wide = f.local(I32), f.local(I32), f.local(I64)
    if integer:  # ceil((limit - start) / delta) where it is positive, in integers
        f.get(delta).op("i64.eqz")
        with f.if_():
            f.op("unreachable")
        difference = f.local(I64)
        f.get(limit).get(start).op("i64.sub").set(difference)
        f.get(delta).i64(0).op("i64.gt_s")
        with f.if_(blocktype=I64):
            f.get(difference).get(delta).op("i64.add").i64(1).op("i64.sub").get(delta).op("i64.div_s")
            f.i64(0).get(difference).i64(0).op("i64.gt_s").op("select")
            f.else_()
            f.get(difference).get(delta).op("i64.add").i64(1).op("i64.add").get(delta).op("i64.div_s")
            f.i64(0).get(difference).i64(0).op("i64.lt_s").op("select")
        f.set(wide)
    else:  # max(ceil((limit - start) / delta), 0) in float64; a delta of 0 (or NaN) traps
        f.get(delta).f64(0.0).op("f64.ne").op("i32.eqz")
        with f.if_():
            f.op("unreachable")
        f.get(limit).get(start).op("f64.sub").get(delta).op("f64.div").op("f64.ceil").f64(0.0).op("f64.max")
        f.op("i64.trunc_sat_f64_s").set(wide)
    f.get(wide).i64(out.shape[0]).op("i64.gt_s")
    with f.if_():
        f.op("unreachable")
    f.get(wide).op("i32.wrap_i64").set(count)
    dim = ctx.graph.decided[node.outputs[0]][0]
    if isinstance(dim, Expr):
        f.i32(ctx.symbols[str(dim)]).get(count).mem("i32.store")
    half = out.dtype in FORMATS
    narrow, store = ("", "") if half else STORES[out.dtype.name]
    size = out.dtype.itemsize
    with f.for_range(index, 0, ("local", count)):
        f.get(index).i32(size).op("i32.mul").i32(ctx.addr(node.outputs[0])).op("i32.add")
        f.get(start).get(index)
        f.op("i64.extend_i32_s" if integer else "f64.convert_i32_s").get(delta)
        f.op("i64.mul" if integer else "f64.mul").op("i64.add" if integer else "f64.add")
        if half:
            emit_store_f64(f, out.dtype)
        else:
            if narrow:
                f.op(narrow)
            f.mem(store, align=0)


__all__ = ["emit_range"]
