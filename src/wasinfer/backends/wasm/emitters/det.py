"""Det: the determinant of each square matrix of the last two axes, by LU decomposition with partial pivoting.

Each matrix is copied into scratch and eliminated in place, float32 throughout: at column k the row with the
largest magnitude below the diagonal becomes the pivot (a swap flips the sign), the determinant takes the
pivot as a factor, and the rows under it lose their multiple of the pivot row. A zero pivot column means a
singular matrix: the determinant is 0 and elimination stops there (no division by zero).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.writer import F32, I32, Func
from wasinfer.ir import Graph, Node


def _check_det(node: Node, graph: Graph) -> list[str]:
    problems = only_float32(node, graph)
    shape = graph.info(node.inputs[0]).shape
    if len(shape) < 2 or shape[-1] != shape[-2]:
        problems.append(f"input of shape {list(shape)} is not a stack of square matrices [..., M, M]")
    return problems


def _scratch_det(node: Node, graph: Graph) -> int:
    n = graph.info(node.inputs[0]).shape[-1]
    return n * n * 4


@contextmanager
def _rows_after(f: Func, var: int, first: int, stop: int) -> Iterator[None]:
    """for var in range(first + 1, stop), `first` a local."""
    f.get(first).i32(1).op("i32.add").set(var)
    with f.block(), f.block(b"\x03"):
        f.get(var).i32(stop).op("i32.ge_s").br_if(1)
        yield
        f.inc(var).br(0)


@kernel("Det", check=_check_det, scratch=_scratch_det)
def emit_det(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    shape = ctx.info(node.inputs[0]).shape
    n, count = shape[-1], math.prod(shape[:-2])
    if count == 0:
        return
    s, row_bytes = ctx.scratch_addr, n * 4
    m, k, i, j, pivot = (f.local(I32) for _ in range(5))
    pin, pout, pk, pi, address = (f.local(I32) for _ in range(5))
    det, best, value, factor = (f.local(F32) for _ in range(4))
    f.i32(ctx.addr(node.inputs[0])).set(pin).i32(ctx.addr(node.outputs[0])).set(pout)
    with f.for_range(m, 0, count):
        f.f32(1.0).set(det)
        if n:
            f.i32(s).get(pin).i32(n * row_bytes).memory_copy()
            with f.block(), f.for_range(k, 0, n):  # the block is left early for a singular matrix
                # pivot: the largest |S[i, k]| for i >= k
                f.get(k).set(pivot).i32(s).get(k).i32(row_bytes + 4).op("i32.mul").op("i32.add").set(pk)
                f.get(pk).mem("f32.load").op("f32.abs").set(best)
                with _rows_after(f, i, k, n):
                    f.i32(s).get(i).i32(row_bytes).op("i32.mul").op("i32.add").get(k).i32(4).op("i32.mul")
                    f.op("i32.add").mem("f32.load").op("f32.abs").tee(value).get(best).op("f32.gt")
                    with f.if_():
                        f.get(value).set(best).get(i).set(pivot)
                f.get(best).f32(0.0).op("f32.eq")
                with f.if_():
                    f.f32(0.0).set(det).br(2)  # out of the if, the k loop and the block
                f.get(pivot).get(k).op("i32.ne")
                with f.if_():  # swap rows k and pivot, columns k.. (the ones left to eliminate)
                    _swap_rows(f, s, row_bytes, n, k, pivot, j, value)
                    f.get(det).op("f32.neg").set(det)
                f.get(det).get(pk).mem("f32.load").op("f32.mul").set(det)
                with _rows_after(f, i, k, n):
                    f.i32(s).get(i).i32(row_bytes).op("i32.mul").op("i32.add").set(pi)
                    f.get(pi).get(k).i32(4).op("i32.mul").op("i32.add").mem("f32.load")
                    f.get(pk).mem("f32.load").op("f32.div").set(factor)
                    with _rows_after(f, j, k, n):  # S[i, j] -= factor * S[k, j]
                        f.get(pi).get(j).i32(4).op("i32.mul").op("i32.add").tee(address)
                        f.get(address).mem("f32.load").get(factor)
                        f.i32(s).get(k).i32(row_bytes).op("i32.mul").op("i32.add").get(j).i32(4)
                        f.op("i32.mul").op("i32.add").mem("f32.load").op("f32.mul").op("f32.sub").mem("f32.store")
        f.get(pout).get(det).mem("f32.store")
        f.inc(pin, n * row_bytes).inc(pout, 4)


def _swap_rows(f: Func, s: int, row_bytes: int, n: int, k: int, pivot: int, j: int, held: int) -> None:
    a, b = f.local(I32), f.local(I32)
    f.i32(s).get(k).i32(row_bytes).op("i32.mul").op("i32.add").set(a)
    f.i32(s).get(pivot).i32(row_bytes).op("i32.mul").op("i32.add").set(b)
    with f.for_range(j, 0, n):
        f.get(a).mem("f32.load").set(held)
        f.get(a).get(b).mem("f32.load").mem("f32.store")
        f.get(b).get(held).mem("f32.store")
        f.inc(a, 4).inc(b, 4)


__all__ = ["emit_det"]
