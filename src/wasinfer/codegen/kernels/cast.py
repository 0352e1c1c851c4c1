"""Cast between numeric dtypes, element by element, with ONNX's rules: float → int
truncates toward zero (saturating, where ONNX leaves overflow undefined), x → bool is x != 0."""

from __future__ import annotations

import numpy as np

from wasinfer.codegen.context import Ctx, kernel
from wasinfer.codegen.wasm import I32
from wasinfer.ir import Graph, Node

# dtype → (load op, value class on the stack, store op)
ACCESS = {
    np.dtype(np.float32): ("f32.load", "f32", "f32.store"),
    np.dtype(np.float64): ("f64.load", "f64", "f64.store"),
    np.dtype(np.int64): ("i64.load", "i64", "i64.store"),
    np.dtype(np.int32): ("i32.load", "i32", "i32.store"),
    np.dtype(np.uint8): ("i32.load8_u", "u8", "i32.store8"),
    np.dtype(np.int8): ("i32.load8_s", "i32", "i32.store8"),
    np.dtype(np.bool_): ("i32.load8_u", "u8", "i32.store8"),
}

# (from class, to class) → ops; "i32" targets also serve int8/uint8/bool stores.
CONVERT = {
    ("f32", "f64"): ["f64.promote_f32"], ("f32", "i64"): ["i64.trunc_sat_f32_s"],
    ("f32", "i32"): ["i32.trunc_sat_f32_s"],
    ("f64", "f32"): ["f32.demote_f64"], ("f64", "i64"): ["i64.trunc_sat_f64_s"],
    ("f64", "i32"): ["i32.trunc_sat_f64_s"],
    ("i64", "f32"): ["f32.convert_i64_s"], ("i64", "f64"): ["f64.convert_i64_s"], ("i64", "i32"): ["i32.wrap_i64"],
    ("i32", "f32"): ["f32.convert_i32_s"], ("i32", "f64"): ["f64.convert_i32_s"], ("i32", "i64"): ["i64.extend_i32_s"],
    ("u8", "f32"): ["f32.convert_i32_u"], ("u8", "f64"): ["f64.convert_i32_u"], ("u8", "i64"): ["i64.extend_i32_u"],
}


def _target_class(dtype: np.dtype) -> str:  # type: ignore[type-arg]
    return {"f32": "f32", "f64": "f64", "i64": "i64"}.get(ACCESS[dtype][1], "i32")


def _check_cast(node: Node, graph: Graph) -> list[str]:
    src, dst = graph.info(node.inputs[0]).dtype, graph.info(node.outputs[0]).dtype
    return [f"dtype {d} is not supported" for d in {src, dst} if d not in ACCESS]


@kernel("Cast", check=_check_cast)
def emit_cast(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    src_info, dst_info = ctx.info(node.inputs[0]), ctx.info(node.outputs[0])
    src, dst = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    if src_info.dtype == dst_info.dtype:
        f.i32(dst).i32(src).i32(src_info.nbytes).memory_copy()
        return
    load, cls, _ = ACCESS[src_info.dtype]
    store = ACCESS[dst_info.dtype][2]
    target = _target_class(dst_info.dtype)
    i = f.local(I32)
    with f.for_range(i, 0, src_info.size):
        f.addr(dst, i, dst_info.dtype.itemsize)
        f.addr(src, i, src_info.dtype.itemsize).mem(load)
        if dst_info.dtype == np.bool_:
            zero = {"f32": f.f32, "f64": f.f64, "i64": f.i64}.get(cls, f.i32)
            zero(0)
            f.op(f"{'i32' if cls == 'u8' else cls}.ne")
        elif cls != target and not (cls == "u8" and target == "i32"):
            f.ops(*CONVERT[(cls, target)])
        f.mem(store)
