"""ai.onnx.ml OneHotEncoder and LabelEncoder on numbers: what scikit-learn's OneHotEncoder and
LabelEncoder become through skl2onnx when the categories are integers.

A compiled module has no string tensors (its ABI moves numbers only), so string categories,
keys and values are refused by name, as CategoryMapper (strings to integers and back) is: map
categories to integers before the model. Lookups are a linear search over a constant table of
the categories or keys: what exporters write holds tens of them, and a search needs no hash
function that would have to agree with ONNX Runtime's.
"""

from __future__ import annotations

import numpy as np

from wasinfer.backends.wasm.context import UNSUPPORTED_HINTS, Ctx, kernel
from wasinfer.backends.wasm.emitters.ml import check_output
from wasinfer.backends.wasm.writer import F32, I32, I64
from wasinfer.ir import Graph, Node

ML = "ai.onnx.ml"
NO_STRINGS = "a compiled module has no string tensors"
UNSUPPORTED_HINTS[(ML, "CategoryMapper")] = (
    f"it maps strings to integers or back, and {NO_STRINGS}: map the categories to integers before the model "
    "(integer keys and values run as LabelEncoder)")

LOADS = {np.dtype(np.int64): "i64.load", np.dtype(np.int32): "i32.load", np.dtype(np.float32): "f32.load",
         np.dtype(np.float64): "f64.load"}
TO_INT64 = {np.dtype(np.int32): "i64.extend_i32_s", np.dtype(np.float32): "i64.trunc_sat_f32_s",
            np.dtype(np.float64): "i64.trunc_sat_f64_s"}


def _dtype(graph: Graph, name: str) -> np.dtype:
    return np.dtype(graph.info(name).dtype)


def _duplicates(values: np.ndarray) -> list[float]:
    """Values given more than once (NaN counts as one value)."""
    seen, repeated = set(), []
    for value in values.tolist():
        key = "nan" if value != value else value
        if key in seen:
            repeated.append(value)
        seen.add(key)
    return repeated


# ---------------------------------------------------------------- OneHotEncoder

def _check_one_hot_encoder(node: Node, graph: Graph) -> list[str]:
    if node.attr("cats_strings"):
        return [f"string categories (cats_strings) are not supported: {NO_STRINGS}; encode the categories as "
                "integers (cats_int64s) before the model"]
    dtype = _dtype(graph, node.inputs[0])
    if dtype not in LOADS:
        return [f"input dtype {graph.info(node.inputs[0]).dtype} is not supported (int64, int32, float32, float64)"]
    categories = np.asarray(node.attr("cats_int64s", []) or [], dtype=np.int64)
    if not categories.size:
        return ["cats_int64s must list at least one category"]
    repeated = _duplicates(categories)
    if repeated:
        return [f"cats_int64s lists {repeated} more than once"]
    return check_output(graph, node.outputs[0], graph.info(node.inputs[0]).size * categories.size, np.float32)


@kernel("OneHotEncoder", domain=ML, check=_check_one_hot_encoder)
def emit_one_hot_encoder(ctx: Ctx, node: Node) -> None:
    """Y[..., k] = 1 where X (cast to int64, as ONNX Runtime truncates) is category k, else 0; a
    value in no category traps when zeros is 0, as ONNX Runtime fails the run."""
    f = ctx.f
    name = node.inputs[0]
    dtype = _dtype(ctx.graph, name)
    categories = np.asarray(node.attr("cats_int64s"), dtype=np.int64)
    count = categories.size
    table = ctx.data(categories)
    x, out = ctx.addr(name), ctx.addr(node.outputs[0])
    size = ctx.info(name).size
    f.i32(out).i32(0).i32(size * count * 4).memory_fill()
    i, k, row = f.local(I32), f.local(I32), f.local(I32)
    value = f.local(I64)
    strict = int(node.attr("zeros", 1)) == 0
    f.i32(out).set(row)
    with f.for_range(i, 0, size * dtype.itemsize, dtype.itemsize):
        f.get(i).mem(LOADS[dtype], offset=x)
        if dtype in TO_INT64:
            f.op(TO_INT64[dtype])
        f.set(value)
        with f.block():
            with f.for_range(k, 0, count * 8, 8):
                f.get(k).mem("i64.load", offset=table).get(value).op("i64.eq")
                with f.if_():
                    f.get(k).i32(1).op("i32.shr_u").get(row).op("i32.add").f32(1.0).mem("f32.store")
                    f.br(2)  # out of the if, the loop and the block: found
            if strict:
                f.op("unreachable")
        f.inc(row, count * 4)


# ---------------------------------------------------------------- LabelEncoder

# the dtypes LabelEncoder's numbers come in, each with its list attributes and default
NUMERIC = {np.dtype(np.int64): ("int64s", -1), np.dtype(np.float32): ("floats", -0.0)}


def _encoder_table(node: Node, side: str, dtype: np.dtype) -> np.ndarray | None:
    """The keys or values (side) as `dtype`: the typed list attribute, or opset 4's tensor one."""
    tensor = node.attr(f"{side}_tensor")
    if tensor is not None:
        return np.asarray(tensor).reshape(-1)
    suffix = NUMERIC[dtype][0] if dtype in NUMERIC else None
    found = node.attr(f"{side}_{suffix}") if suffix else None
    return None if found is None else np.asarray(found, dtype=dtype).reshape(-1)


def _encoder_default(node: Node, dtype: np.dtype) -> float | int:
    tensor = node.attr("default_tensor")
    if tensor is not None:
        return np.asarray(tensor).reshape(-1)[0].item()  # type: ignore[no-any-return]
    suffix, fallback = NUMERIC[dtype]
    found = node.attr(f"default_{'float' if suffix == 'floats' else 'int64'}")
    return fallback if found is None else found  # type: ignore[no-any-return]


def _check_label_encoder(node: Node, graph: Graph) -> list[str]:
    if any(node.attr(f"{side}_strings") for side in ("keys", "values")) or node.attr("default_string") not in (
            None, "_Unused"):
        return [f"string keys or values (keys_strings, values_strings) are not supported: {NO_STRINGS}; map the "
                "categories to integers before the model"]
    problems = []
    dtypes = {"keys": _dtype(graph, node.inputs[0]), "values": _dtype(graph, node.outputs[0])}
    for side, dtype in dtypes.items():
        if dtype not in NUMERIC:
            name = "input" if side == "keys" else "output"
            problems.append(f"{name} dtype {dtype} is not supported (int64 or float32; {NO_STRINGS})")
    if problems:
        return problems
    tables = {side: _encoder_table(node, side, dtype) for side, dtype in dtypes.items()}
    for side, table in tables.items():
        if table is None or not table.size:
            problems.append(f"no {side} for the {dtypes[side]} {'input' if side == 'keys' else 'output'} "
                            f"({side}_{NUMERIC[dtypes[side]][0]} or {side}_tensor)")
        elif table.dtype != dtypes[side]:
            problems.append(f"{side}_tensor is {table.dtype}, expected {dtypes[side]}")
    if problems:
        return problems
    keys, values = tables["keys"], tables["values"]
    assert keys is not None and values is not None
    if keys.size != values.size:
        problems.append(f"{keys.size} keys but {values.size} values")
    repeated = _duplicates(keys)
    if repeated:
        problems.append(f"keys {repeated} are given more than once")
    if node.attr("keys_tensor") is None and keys.dtype.kind == "f" and np.isnan(keys).any():
        problems.append("a NaN key in keys_floats is not supported: ONNX Runtime matches it to NaN from ai.onnx.ml "
                        "opset 4 on and never before; give the keys as keys_tensor (opset 4)")
    return problems


@kernel("LabelEncoder", domain=ML, check=_check_label_encoder)
def emit_label_encoder(ctx: Ctx, node: Node) -> None:
    """Each element becomes the value of its key, else the default. A NaN key (keys_tensor, opset
    4) matches a NaN, as ONNX Runtime's opset 4 kernel does."""
    f = ctx.f
    key_type, value_type = _dtype(ctx.graph, node.inputs[0]), _dtype(ctx.graph, node.outputs[0])
    keys, values = _encoder_table(node, "keys", key_type), _encoder_table(node, "values", value_type)
    assert keys is not None and values is not None
    key_table, value_table = ctx.data(keys), ctx.data(values)
    default = _encoder_default(node, value_type)
    x, out = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    size = ctx.info(node.inputs[0]).size
    floats = key_type == np.float32
    i, k = f.local(I32), f.local(I32)
    value = f.local(F32 if floats else I64)
    result = f.local(F32 if value_type == np.float32 else I64)
    key_width, value_width = key_type.itemsize, value_type.itemsize
    with f.for_range(i, 0, size):
        f.get(i).i32(key_width).op("i32.mul").mem(LOADS[key_type], offset=x).set(value)
        if value_type == np.float32:
            f.f32(float(default))
        else:
            f.i64(int(default))
        f.set(result)
        with f.block(), f.for_range(k, 0, keys.size):
            f.get(k).i32(key_width).op("i32.mul").mem(LOADS[key_type], offset=key_table)
            f.get(value).op("f32.eq" if floats else "i64.eq")
            if floats:  # NaN == NaN here
                f.get(k).i32(4).op("i32.mul").mem("f32.load", offset=key_table)
                f.get(k).i32(4).op("i32.mul").mem("f32.load", offset=key_table).op("f32.ne")
                f.get(value).get(value).op("f32.ne").op("i32.and").op("i32.or")
            with f.if_():
                f.get(k).i32(value_width).op("i32.mul").mem(LOADS[value_type], offset=value_table).set(result)
                f.br(2)
        f.get(i).i32(value_width).op("i32.mul").get(result)
        f.mem("f32.store" if value_type == np.float32 else "i64.store", offset=out)


__all__ = ["emit_label_encoder", "emit_one_hot_encoder"]
