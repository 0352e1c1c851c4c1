"""LRN, inference-mode BatchNormalization, LayerNormalization, InstanceNormalization and
LpNormalization (float32).

BatchNormalization is a per-channel affine y = x*s + t with s = scale/sqrt(var + eps) and
t = bias - mean*s: computed at compile time from constant parameters (the usual case:
BN after Concat, which passes/fuse.py cannot fold into a Conv), or at the start of the
run into scratch when a parameter is a run-time tensor. It applies a fused activation.

LRN: y = x * (bias + alpha/size * sum of x^2 over the channel window)^-beta, the power
taken as exp(-beta * log(.)) with the f32x4 helpers, four spatial positions per v128.

LayerNormalization and InstanceNormalization normalize contiguous lines (the axes from
`axis` on; one (sample, channel) plane) with `line_moments`, 16 floats at a time.
"""

from __future__ import annotations

import math
from functools import partial

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.emitters.activation import epilogue
from wasinfer.backends.wasm.emitters.binary import emit_broadcast
from wasinfer.backends.wasm.emitters.pool import for_lanes, load_lanes, store_lanes
from wasinfer.backends.wasm.emitters.reduce import (
    LANE0,
    STEP_VECTORS,
    Segment,
    horizontal,
    line_segments,
    reduce_view,
    walk_segments,
)
from wasinfer.backends.wasm.writer import F32, I32, V128, Func
from wasinfer.ir import Graph, Node
from wasinfer.lowering.norm import bn_params, bn_runtime, bn_scratch, bn_table

# ---------------------------------------------------------------- BatchNormalization


def _check_bn(node: Node, graph: Graph) -> list[str]:
    problems = only_float32(node, graph, [node.inputs[0], node.outputs[0], *bn_params(node)])
    if len(graph.info(node.inputs[0]).shape) < 2:
        problems.append("input must have N and C axes")
    if int(node.attr("training_mode", 0)):
        problems.append("training_mode=1 (batch statistics) is not supported; export the model in eval mode")
    if any(node.outputs[1:]):
        problems.append("the running mean/variance outputs (training mode) are not supported")
    channels = graph.info(node.inputs[0]).shape[1] if len(graph.info(node.inputs[0]).shape) > 1 else 0
    for name in bn_params(node):
        if graph.info(name).shape != (channels,):
            problems.append(f"parameter {name!r} has shape {graph.info(name).shape}, expected ({channels},)")
    return problems


@kernel("BatchNormalization", check=_check_bn, scratch=bn_scratch)
def emit_batchnorm(ctx: Ctx, node: Node) -> None:
    """y = x*s[c] + t[c]; s then t are `channels` floats each at `table`."""
    f = ctx.f
    shape = ctx.info(node.inputs[0]).shape
    batch, channels, size = shape[0], shape[1], math.prod(shape[2:])
    eps = float(node.attr("epsilon", 1e-5))
    if bn_runtime(node, ctx.graph):
        table = ctx.scratch_addr
        _emit_bn_affine(ctx, [ctx.addr(name) for name in bn_params(node)], eps, table, channels)
    else:
        scale, bias, mean, var = (ctx.graph.constants[name] for name in bn_params(node))
        table = ctx.data(bn_table(scale, bias, mean, var, eps))
    x, y = f.local(I32), f.local(I32)
    f.i32(ctx.addr(node.inputs[0])).set(x).i32(ctx.addr(node.outputs[0])).set(y)
    sample, channel, ps = f.local(I32), f.local(I32), f.local(I32)

    def affine(lanes: int, scale_bias: tuple[int, int] | None) -> None:
        """y = x*s + t (+ activation) on `lanes` floats; `scale_bias` holds splatted s, t locals."""
        f.get(y).get(x)
        load_lanes(f, lanes)
        if scale_bias is None:  # s, t run along with x (size == 1: one float per channel)
            f.get(ps)
            load_lanes(f, lanes)
            f.op("f32x4.mul").get(ps)
            load_lanes(f, lanes, 4 * channels)
        else:
            f.get(scale_bias[0]).op("f32x4.mul").get(scale_bias[1])
        f.op("f32x4.add")
        epilogue(ctx, node)
        store_lanes(f, lanes)
        f.inc(x, 4 * lanes).inc(y, 4 * lanes)
        if scale_bias is None:
            f.inc(ps, 4 * lanes)

    s_vec, t_vec = f.local(V128), f.local(V128)
    with f.for_range(sample, 0, batch):
        f.i32(table).set(ps)
        if size == 1:
            for_lanes(f, channels, lambda lanes: affine(lanes, None))
        else:
            with f.for_range(channel, 0, channels):
                f.get(ps).mem("f32.load").op("f32x4.splat").set(s_vec)
                f.get(ps).mem("f32.load", offset=4 * channels).op("f32x4.splat").set(t_vec)
                for_lanes(f, size, lambda lanes: affine(lanes, (s_vec, t_vec)))
                f.inc(ps, 4)


def _emit_bn_affine(ctx: Ctx, params: list[int], eps: float, table: int, channels: int) -> None:
    """table[c] = scale/sqrt(var + eps); table[C + c] = bias - mean * table[c], from run-time tensors."""
    f = ctx.f
    scale, bias, mean, var = params
    offset, s = f.local(I32), f.local(V128)
    f.i32(0).set(offset)

    def body(lanes: int) -> None:
        f.get(offset).get(offset).get(offset).get(offset)
        load_lanes(f, lanes, scale)
        f.get(offset)
        load_lanes(f, lanes, var)
        f.f32x4_const(eps).op("f32x4.add").op("f32x4.sqrt").op("f32x4.div").set(s)
        f.get(s)
        store_lanes(f, lanes, table)
        load_lanes(f, lanes, bias)
        f.get(offset)
        load_lanes(f, lanes, mean)
        f.get(s).op("f32x4.mul").op("f32x4.sub")
        store_lanes(f, lanes, table + 4 * channels)
        f.inc(offset, 4 * lanes)

    for_lanes(f, channels, body)


# ---------------------------------------------------------------- LRN


def _check_lrn(node: Node, graph: Graph) -> list[str]:
    problems = only_float32(node, graph)
    if len(graph.info(node.inputs[0]).shape) < 3:
        problems.append("input must have N, C and spatial axes")
    if node.attr("size") is None or int(node.attr("size")) < 1:
        problems.append("size must be a positive integer")
    return problems


@kernel("LRN", check=_check_lrn)
def emit_lrn(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    shape = ctx.info(node.inputs[0]).shape
    batch, channels, size = shape[0], shape[1], math.prod(shape[2:])
    width = int(node.attr("size"))
    alpha, beta, bias = float(node.attr("alpha", 1e-4)), float(node.attr("beta", 0.75)), float(node.attr("bias", 1.0))
    before = (width - 1) // 2  # the window is [c - before, c + width - 1 - before]
    plane = size * 4
    x, y = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    sample, channel, lo, count = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    px, py, pw, q, j = f.local(I32), f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    acc, v = f.local(V128), f.local(V128)

    def body(lanes: int) -> None:
        f.f32x4_const(0.0).set(acc)
        f.get(pw).set(q)
        with f.for_range(j, 0, ("local", count)):
            f.get(q)
            load_lanes(f, lanes)
            f.set(v)
            f.get(acc).get(v).get(v).op("f32x4.mul").op("f32x4.add").set(acc)
            f.inc(q, plane)
        f.get(py).get(px)
        load_lanes(f, lanes)
        f.get(acc).f32x4_const(alpha / width).op("f32x4.mul").f32x4_const(bias).op("f32x4.add")
        f.call(ctx.helper("log4")).f32x4_const(-beta).op("f32x4.mul").call(ctx.helper("exp4"))
        f.op("f32x4.mul")
        store_lanes(f, lanes)
        f.inc(px, 4 * lanes).inc(py, 4 * lanes).inc(pw, 4 * lanes)

    f.i32(x).set(px).i32(y).set(py)
    with f.for_range(sample, 0, batch), f.for_range(channel, 0, channels):
        # window [lo, lo + count): lo = max(0, channel - before), end = min(C, channel - before + size)
        f.get(channel).i32(before).op("i32.sub").set(lo)
        f.get(lo).i32(width).op("i32.add").set(count)
        f.get(count).i32(channels).get(count).i32(channels).op("i32.lt_s").op("select").set(count)
        f.get(lo).i32(0).get(lo).i32(0).op("i32.gt_s").op("select").set(lo)
        f.get(count).get(lo).op("i32.sub").set(count)
        f.get(lo).get(channel).op("i32.sub").i32(plane).op("i32.mul").get(px).op("i32.add").set(pw)
        for_lanes(f, size, body)


# ---------------------------------------------------------------- LayerNormalization / InstanceNormalization


def line_moments(ctx: Ctx, px: int, n: int, eps: float, mean: int, inv: int) -> None:
    """Splat into the v128 locals `mean` and `inv` the mean and 1/sqrt(var + eps) of the n
    contiguous floats at the pointer local `px`. The variance is a second pass over
    (x - mean)^2, which keeps its precision when the mean is large against the spread."""
    f = ctx.f
    p, v = f.local(I32), f.local(V128)
    acc = [f.local(V128) for _ in range(STEP_VECTORS)]

    def fold(centered: bool) -> None:
        for reg in acc:
            f.f32x4_const(0.0).set(reg)
        f.get(px).set(p)

        def step(seg: Segment) -> None:
            for k in range(seg.vectors):
                f.get(acc[k]).get(p)
                load_lanes(f, seg.width, 16 * k)
                if centered:
                    f.get(mean).op("f32x4.sub").tee(v).get(v).op("f32x4.mul")
                if seg.width == 1:  # a splatted element counts once
                    f.v128(LANE0).op("v128.and")
                f.op("f32x4.add").set(acc[k])

        walk_segments(f, line_segments(n), [p], step)
        horizontal(f, acc, "f32x4.add", "f32.add")

    fold(centered=False)
    f.get(acc[0]).f32x4_const(float(n)).op("f32x4.div").set(mean)
    fold(centered=True)
    f.f32x4_const(1.0).get(acc[0]).f32x4_const(float(n)).op("f32x4.div").f32x4_const(eps).op("f32x4.add")
    f.op("f32x4.sqrt").op("f32x4.div").set(inv)


def _layernorm_axis(node: Node, graph: Graph) -> int:
    rank = len(graph.info(node.inputs[0]).shape)
    return int(node.attr("axis", -1)) % max(rank, 1)


def _param_mode(param_shape: tuple[int, ...], shape: tuple[int, ...], axis: int) -> str:
    """How scale or bias lines up with X: "line" (one value per element of a normalized line),
    "scalar" (one value), else "broadcast" (applied after normalizing, by emit_broadcast)."""
    padded = (1,) * (len(shape) - len(param_shape)) + tuple(param_shape)
    if math.prod(param_shape) == math.prod(shape[axis:]) and all(d == 1 for d in padded[:axis]):
        return "line"
    return "scalar" if math.prod(param_shape) == 1 else "broadcast"


def _check_layernorm(node: Node, graph: Graph) -> list[str]:
    names = [n for n in node.inputs + node.outputs if n]
    problems = only_float32(node, graph, names)
    shape = graph.info(node.inputs[0]).shape
    axis = int(node.attr("axis", -1))
    if not -len(shape) <= axis < len(shape):
        problems.append(f"axis {axis} is out of range for rank {len(shape)}")
    if int(node.attr("stash_type", 1)) != 1:
        problems.append(f"stash_type={node.attr('stash_type')} is not supported (1: float32 statistics)")
    for name in [n for n in node.inputs[1:3] if n]:
        param = graph.info(name).shape
        padded = (1,) * (len(shape) - len(param)) + tuple(param)
        if len(param) > len(shape) or any(p not in (1, d) for p, d in zip(padded, shape, strict=True)):
            problems.append(f"{name!r} of shape {param} does not broadcast to X's shape {shape}")
    return problems


@kernel("LayerNormalization", check=_check_layernorm)
def emit_layernorm(ctx: Ctx, node: Node) -> None:
    """Each line (the axes from `axis` on, contiguous) is normalized in three passes: sum,
    squared deviations, then y = (x - mean) * inv_std * scale + bias. Mean and InvStdDev, when
    wanted, are one float per line. Scale and bias that broadcast within the line in other
    ways are applied afterwards with emit_broadcast."""
    f = ctx.f
    shape = ctx.info(node.inputs[0]).shape
    axis = _layernorm_axis(node, ctx.graph)
    outer, n = math.prod(shape[:axis]), math.prod(shape[axis:])
    if outer * n == 0:
        return
    params = [(name, _param_mode(ctx.info(name).shape, shape, axis)) for name in node.inputs[1:3] if name]
    if any(mode == "broadcast" for _, mode in params[:1]):
        inline: list[tuple[str, str]] = []  # y*scale must come before +bias
    else:
        inline = [(name, mode) for name, mode in params if mode != "broadcast"]
    later = [(name, mode) for name, mode in params if (name, mode) not in inline]
    x, y = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    o, px, py = f.local(I32), f.local(I32), f.local(I32)
    mean, inv = f.local(V128), f.local(V128)
    stats = [(name, reg) for name, reg in zip(node.outputs[1:3], (mean, inv), strict=False) if name]
    pointers = {name: f.local(I32) for name, mode in inline if mode == "line"}
    splats = {name: f.local(V128) for name, mode in inline if mode == "scalar"}
    for name, reg in splats.items():
        f.i32(ctx.addr(name)).mem("f32.load").op("f32x4.splat").set(reg)
    with f.for_range(o, 0, outer):
        f.get(o).i32(4 * n).op("i32.mul").tee(px).i32(y).op("i32.add").set(py)
        f.get(px).i32(x).op("i32.add").set(px)
        line_moments(ctx, px, n, float(node.attr("epsilon", 1e-5)), mean, inv)
        for name, reg in stats:
            f.get(o).i32(4).op("i32.mul").get(reg).lane("f32x4.extract_lane", 0)
            f.mem("f32.store", offset=ctx.addr(name))
        for name, reg in pointers.items():
            f.i32(ctx.addr(name)).set(reg)

        def step(seg: Segment) -> None:
            for k in range(seg.vectors):
                f.get(py).get(px)
                load_lanes(f, seg.width, 16 * k)
                f.get(mean).op("f32x4.sub").get(inv).op("f32x4.mul")
                for (name, _), opcode in zip(inline, ("f32x4.mul", "f32x4.add"), strict=False):
                    if name in splats:
                        f.get(splats[name])
                    else:
                        f.get(pointers[name])
                        load_lanes(f, seg.width, 16 * k)
                    f.op(opcode)
                store_lanes(f, seg.width, 16 * k)

        walk_segments(f, line_segments(n), [px, py, *pointers.values()], step)
    for name, _ in later:
        opcode = "f32x4.mul" if name == node.inputs[1] else "f32x4.add"
        emit_broadcast(ctx, y, shape, y, shape, ctx.addr(name), ctx.info(name).shape, partial(_apply, f, opcode), None)


def _apply(f: Func, opcode: str) -> None:
    f.op(opcode)


def _check_instancenorm(node: Node, graph: Graph) -> list[str]:
    problems = only_float32(node, graph)
    shape = graph.info(node.inputs[0]).shape
    if len(shape) < 2:
        problems.append("input must have N and C axes")
    else:
        for name in node.inputs[1:3]:
            if graph.info(name).shape != (shape[1],):
                problems.append(f"{name!r} has shape {graph.info(name).shape}, expected ({shape[1]},)")
    return problems


@kernel("InstanceNormalization", check=_check_instancenorm)
def emit_instancenorm(ctx: Ctx, node: Node) -> None:
    """Each (sample, channel) plane is a line: y = x*a + (bias - mean*a), a = scale * inv_std."""
    f = ctx.f
    shape = ctx.info(node.inputs[0]).shape
    batch, channels, size = shape[0], shape[1], math.prod(shape[2:])
    if batch * channels * size == 0:
        return
    scale, bias = ctx.addr(node.inputs[1]), ctx.addr(node.inputs[2])
    line, px, py, c4 = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    mean, inv = f.local(V128), f.local(V128)
    with f.for_range(line, 0, batch * channels):
        f.get(line).i32(4 * size).op("i32.mul").tee(px).i32(ctx.addr(node.outputs[0])).op("i32.add").set(py)
        f.get(px).i32(ctx.addr(node.inputs[0])).op("i32.add").set(px)
        f.get(line).i32(channels).op("i32.rem_u").i32(4).op("i32.mul").set(c4)
        line_moments(ctx, px, size, float(node.attr("epsilon", 1e-5)), mean, inv)
        f.get(c4).mem("f32.load", offset=scale).op("f32x4.splat").get(inv).op("f32x4.mul").set(inv)
        f.get(c4).mem("f32.load", offset=bias).op("f32x4.splat").get(mean).get(inv).op("f32x4.mul")
        f.op("f32x4.sub").set(mean)

        def step(seg: Segment) -> None:
            for k in range(seg.vectors):
                f.get(py).get(px)
                load_lanes(f, seg.width, 16 * k)
                f.get(inv).op("f32x4.mul").get(mean).op("f32x4.add")
                store_lanes(f, seg.width, 16 * k)

        walk_segments(f, line_segments(size), [px, py], step)


# ---------------------------------------------------------------- LpNormalization

def _check_lp(node: Node, graph: Graph) -> list[str]:
    problems = only_float32(node, graph)
    rank = len(graph.info(node.inputs[0]).shape)
    axis = int(node.attr("axis", -1))
    if not -rank <= axis < max(rank, 1) or not rank:
        problems.append(f"axis {axis} is out of range for rank {rank}")
    if int(node.attr("p", 2)) not in (1, 2):
        problems.append(f"p={node.attr('p')} is not 1 or 2")
    return problems


@kernel("LpNormalization", check=_check_lp)
def emit_lp_normalization(ctx: Ctx, node: Node) -> None:
    """y = x / |x|_p along `axis`, line by line (the sum of |x| or of x², in order, then its root);
    a line whose norm is 0 gives zeros, as in ONNX Runtime, rather than NaN."""
    f = ctx.f
    shape = ctx.info(node.inputs[0]).shape
    outer, n, inner = reduce_view(shape, int(node.attr("axis", -1)) % len(shape))
    if outer * n * inner == 0:
        return
    square = int(node.attr("p", 2)) == 2
    o, i, j, p, q = (f.local(I32) for _ in range(5))
    norm, value = f.local(F32), f.local(F32)
    step = inner * 4
    with f.for_range(o, 0, outer), f.for_range(i, 0, inner):
        f.get(o).i32(n * inner).op("i32.mul").get(i).op("i32.add").i32(4).op("i32.mul").set(q)
        f.get(q).i32(ctx.addr(node.inputs[0])).op("i32.add").set(p)
        f.f32(0.0).set(norm)
        with f.for_range(j, 0, n):
            f.get(norm).get(p).mem("f32.load")
            if square:
                f.tee(value).get(value).op("f32.mul")
            else:
                f.op("f32.abs")
            f.op("f32.add").set(norm)
            f.inc(p, step)
        if square:
            f.get(norm).op("f32.sqrt").set(norm)
        f.get(q).i32(ctx.addr(node.inputs[0])).op("i32.add").set(p)
        f.get(q).i32(ctx.addr(node.outputs[0])).op("i32.add").set(q)
        with f.for_range(j, 0, n):
            f.get(q).get(p).mem("f32.load").get(norm).op("f32.div").f32(0.0).get(norm).f32(0.0).op("f32.ne")
            f.op("select").mem("f32.store")
            f.inc(p, step).inc(q, step)


__all__ = ["emit_batchnorm", "emit_instancenorm", "emit_layernorm", "emit_lp_normalization", "emit_lrn",
           "line_moments"]
