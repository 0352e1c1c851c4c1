"""Ops that write values back into an image: MaxUnpool (a segmentation decoder's unpooling) and Col2Im (fold,
the inverse of an unfold or im2col).

MaxUnpool zeroes its output and writes each input element where its index says, the index read at run time
over the whole output tensor, as MaxPool's Indices count (batch and channels included); any whole-byte
dtype moves as bits. With an output_shape (the pool's input had an odd size) the indices count over that
shape, as ONNX Runtime and PyTorch count them: the pool's input's layout. (ONNX's reference counts them over
the shape the pool's attributes infer and pastes that into the output's corner, which no exported pool
produces.) The output_shape must be a constant: exported models compute it from the pool's input's Shape,
which folds. An index outside the output traps.

Col2Im sums each column element into the image position its block offset and block position give, positions
in the padding skipped: per axis a constant table of image index (or -1) for every (block offset, block
position), and nested loops over the offsets and positions; the column walks in order, one element per step.
Where a run gives image_shape or block_shape (declared with --input-values, passes/values.py), the kernel reads
them, checks that the block divides the columns and that the blocks' positions are the input's count (the run
traps otherwise, as ONNX Runtime fails it), writes the channel and image dims to their symbols (the output laid
out for the largest: all the columns as channels, the range's largest image), and computes each image index
from the run's geometry in the same nested loops, their counts the run's.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.emitters.layout import LOAD_STORE
from wasinfer.backends.wasm.writer import I32, Func
from wasinfer.ir import Graph, Node
from wasinfer.ir.symbolic import Expr
from wasinfer.lowering.layout import movable_problems

# ---------------------------------------------------------------- MaxUnpool


def _check_max_unpool(node: Node, graph: Graph) -> list[str]:
    problems = movable_problems(node, graph)
    size = graph.info(node.inputs[0]).dtype.itemsize
    if size not in LOAD_STORE or size > 8:
        problems.append(f"elements of {size} bytes are not supported")
    indices = graph.info(node.inputs[1]).dtype
    if indices != np.int64:
        problems.append(f"indices have dtype {indices}; int64 expected")
    if graph.info(node.inputs[1]).shape != graph.info(node.inputs[0]).shape:
        problems.append(f"indices of shape {list(graph.info(node.inputs[1]).shape)} do not match the input's "
                        f"{list(graph.info(node.inputs[0]).shape)}")
    shape_input = node.inputs[2] if len(node.inputs) > 2 else ""
    if shape_input:  # exported models compute it from the pool's input's Shape, which folds
        value = graph.constants.get(shape_input)
        out = list(graph.info(node.outputs[0]).shape)
        if value is None:
            problems.append(f"output_shape {shape_input!r} is computed at run time; it sets the output's shape, "
                            "so it must be a constant")
        elif [int(v) for v in np.asarray(value).reshape(-1)] != out:
            problems.append(f"output_shape {np.asarray(value).tolist()} differs from the output's shape {out}")
    return problems


@kernel("MaxUnpool", check=_check_max_unpool)
def emit_max_unpool(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    x_info, out_info = ctx.info(node.inputs[0]), ctx.info(node.outputs[0])
    size, total = x_info.dtype.itemsize, math.prod(out_info.shape)
    out = ctx.addr(node.outputs[0])
    f.i32(out).i32(0).i32(total * size).memory_fill()
    if x_info.size == 0:
        return
    load, store = LOAD_STORE[size]
    i, pin, pindex, target = (f.local(I32) for _ in range(4))
    f.i32(ctx.addr(node.inputs[0])).set(pin).i32(ctx.addr(node.inputs[1])).set(pindex)
    with f.for_range(i, 0, x_info.size):
        # one index past the output (or negative: huge as unsigned) traps before the 32-bit wrap could hide it
        f.get(pindex).mem("i64.load").i64(total).op("i64.ge_u")
        with f.if_():
            f.op("unreachable")
        f.get(pindex).mem("i64.load").op("i32.wrap_i64").i32(size).op("i32.mul").i32(out).op("i32.add").set(target)
        f.get(target).get(pin).mem(load, align=0).mem(store, align=0)
        f.inc(pin, size).inc(pindex, 8)


# ---------------------------------------------------------------- Col2Im

def _constants(node: Node, graph: Graph) -> tuple[list[int], list[int]] | None:
    image = graph.constants.get(node.inputs[1])
    block = graph.constants.get(node.inputs[2])
    if image is None or block is None:
        return None
    return [int(v) for v in np.asarray(image).reshape(-1)], [int(v) for v in np.asarray(block).reshape(-1)]


def _col2im_geometry(node: Node, image: list[int], block: list[int]) -> tuple[list[int], list[int], list[int],
                                                                                list[int]]:
    """Dilations, begin pads, strides, and the block positions along each axis."""
    rank = len(image)
    dilations = list(node.attr("dilations", [1] * rank))
    pads = list(node.attr("pads", [0] * 2 * rank))
    strides = list(node.attr("strides", [1] * rank))
    positions = [(image[a] + pads[a] + pads[rank + a] - dilations[a] * (block[a] - 1) - 1) // strides[a] + 1
                 for a in range(rank)]
    return dilations, pads[:rank], strides, positions


def _run_time_shapes(node: Node, graph: Graph) -> bool:
    """image_shape or block_shape read by each run (declared), the other a constant or declared too."""
    given = node.inputs[1:3]
    return (any(n in graph.read_values for n in given)
            and all(n in graph.read_values or n in graph.constants for n in given))


def _check_col2im(node: Node, graph: Graph) -> list[str]:
    problems = only_float32(node, graph, [node.inputs[0], node.outputs[0]])
    if _run_time_shapes(node, graph):
        rank = graph.info(node.inputs[1]).size
        problems += [f"{name!r} has dtype {graph.info(name).dtype}, not int64" for name in node.inputs[1:3]
                     if graph.info(name).dtype != np.int64]
        if graph.info(node.inputs[2]).size != rank or len(graph.info(node.inputs[0]).shape) != 3:
            problems.append("block_shape must have image_shape's length, and the input be [N, C * block, L]")
        for name in ("dilations", "pads", "strides"):
            value = node.attr(name)
            if value is not None and len(value) != (2 * rank if name == "pads" else rank):
                problems.append(f"{name} {list(value)} does not match image_shape's {rank} dims")
        return problems
    found = _constants(node, graph)
    if found is None:
        return [*problems, "image_shape and block_shape are computed at run time; they must be constants, or "
                           "run-time inputs with their values' range declared (--input-values NAME=MIN..MAX)"]
    image, block = found
    rank = len(image)
    for name in ("dilations", "pads", "strides"):
        value = node.attr(name)
        if value is not None and len(value) != (2 * rank if name == "pads" else rank):
            problems.append(f"{name} {list(value)} does not match image_shape {image}")
    if problems or len(block) != rank:
        return problems + ([f"block_shape {block} does not match image_shape {image}"] if len(block) != rank else [])
    _, _, _, positions = _col2im_geometry(node, image, block)
    x_shape = graph.info(node.inputs[0]).shape
    if len(x_shape) != 3 or x_shape[1] % max(math.prod(block), 1) or x_shape[2] != math.prod(positions):
        problems.append(f"input of shape {list(x_shape)} is not [N, C * {math.prod(block)}, {math.prod(positions)}] "
                        f"for image_shape {image} and block_shape {block}")
    return problems


@kernel("Col2Im", check=_check_col2im)
def emit_col2im(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    if _run_time_shapes(node, ctx.graph):
        _emit_col2im_run_time(ctx, node)
        return
    found = _constants(node, ctx.graph)
    assert found is not None
    image, block = found
    dilations, pads, strides, positions = _col2im_geometry(node, image, block)
    batch, columns, _ = ctx.info(node.inputs[0]).shape
    channels = columns // max(math.prod(block), 1)
    out = ctx.addr(node.outputs[0])
    f.i32(out).i32(0).i32(batch * channels * math.prod(image) * 4).memory_fill()
    if batch * columns * math.prod(positions) == 0:
        return
    # tables[a][k, p]: the image index of block offset k at block position p along axis a, -1 in the padding
    tables = []
    for a in range(len(image)):
        index = (np.arange(positions[a])[None, :] * strides[a] - pads[a]
                 + np.arange(block[a])[:, None] * dilations[a])
        tables.append(ctx.data(np.where((index >= 0) & (index < image[a]), index, -1).astype(np.int32)))
    plane = f.local(I32)
    pcol, nc = f.local(I32), f.local(I32)
    f.i32(ctx.addr(node.inputs[0])).set(pcol).i32(out).set(plane)
    with f.for_range(nc, 0, batch * channels):
        offsets = [f.local(I32) for _ in image]
        _block_offsets(f, offsets, block, 0,
                       lambda: _block_positions(f, tables, offsets, image, block, positions, plane, pcol, 0, None))
        f.inc(plane, math.prod(image) * 4)


def _block_offsets(f: Func, offsets: list[int], block: list[int], axis: int, inner: Callable[[], None]) -> None:
    """Nested loops over the block's offsets, axis by axis; `inner` writes the innermost body."""
    if axis == len(block):
        inner()
        return
    with f.for_range(offsets[axis], 0, block[axis]):
        _block_offsets(f, offsets, block, axis + 1, inner)


def _add_column_value(f: Func, index: int, plane: int, pcol: int) -> None:
    """image[plane + index] += the column value at pcol where `index` is inside the image (it is -1 in the
    padding), then on to the next column value."""
    f.get(index).i32(0).op("i32.ge_s")
    with f.if_():
        f.get(index).i32(4).op("i32.mul").get(plane).op("i32.add").tee(index)
        f.get(index).mem("f32.load").get(pcol).mem("f32.load").op("f32.add").mem("f32.store")
    f.inc(pcol, 4)


def _block_positions(f: Func, tables: list[int], offsets: list[int], image: list[int], block: list[int],
                     positions: list[int], plane: int, pcol: int, axis: int, above: int | None) -> None:
    """Nested loops over the block positions: each axis's image index from its table (skipped at -1), the
    image offset built up as axes go in; the column element is the next one whichever way it goes."""
    position, index = f.local(I32), f.local(I32)
    with f.for_range(position, 0, positions[axis]):
        # index = tables[axis][offset * positions + position]
        f.get(offsets[axis]).i32(positions[axis]).op("i32.mul").get(position).op("i32.add").i32(4).op("i32.mul")
        f.i32(tables[axis]).op("i32.add").mem("i32.load").set(index)
        if above is not None:  # the flat image index so far, this axis's index added in
            f.get(above).i32(image[axis]).op("i32.mul").get(index).op("i32.add").i32(-1)
            f.get(index).i32(0).op("i32.ge_s").get(above).i32(0).op("i32.ge_s").op("i32.and")
            f.op("select").set(index)  # -1 once any axis so far is in the padding
        if axis == len(image) - 1:
            _add_column_value(f, index, plane, pcol)
        else:
            _block_positions(f, tables, offsets, image, block, positions, plane, pcol, axis + 1, index)


def _push_shape_value(ctx: Ctx, name: str, index: int) -> None:
    """Push element `index` of image_shape or block_shape as an i32: a constant's, or read from the input."""
    value = ctx.graph.constants.get(name)
    if value is not None:
        ctx.f.i32(int(np.asarray(value).reshape(-1)[index]))
    else:
        ctx.f.i32(ctx.addr(name) + 8 * index).mem("i64.load").op("i32.wrap_i64")


def _trap_if(f: Func) -> None:
    with f.if_():
        f.op("unreachable")


def _emit_col2im_run_time(ctx: Ctx, node: Node) -> None:
    """Col2Im with the run's image_shape and block_shape (see the module's docstring)."""
    f = ctx.f
    batch, columns, count = ctx.info(node.inputs[0]).shape
    out_shape = ctx.info(node.outputs[0]).shape  # [N, columns, *the largest image]
    largest = list(out_shape[2:])
    rank = len(largest)
    extent = ctx.graph.decided.get(node.outputs[0], out_shape)
    dilations = list(node.attr("dilations", [1] * rank))
    pads = list(node.attr("pads", [0] * 2 * rank))
    strides = list(node.attr("strides", [1] * rank))
    image, block, positions = ([f.local(I32) for _ in range(rank)] for _ in range(3))
    area, channels = f.local(I32), f.local(I32)
    f.i32(1).set(area)
    for a in range(rank):
        _push_shape_value(ctx, node.inputs[1], a)
        f.tee(image[a]).i32(0).op("i32.lt_s").get(image[a]).i32(largest[a]).op("i32.gt_s").op("i32.or")
        _push_shape_value(ctx, node.inputs[2], a)
        f.tee(block[a]).i32(1).op("i32.lt_s").op("i32.or")
        _trap_if(f)
        # (image + pads - dilation (block - 1) - 1) // stride + 1 blocks along the axis (floor: may be below 0)
        f.get(image[a]).i32(pads[a] + pads[rank + a] - 1 + dilations[a]).op("i32.add")
        f.get(block[a]).i32(dilations[a]).op("i32.mul").op("i32.sub").set(positions[a])
        f.get(positions[a]).i32(strides[a]).op("i32.div_s")
        f.get(positions[a]).i32(strides[a]).op("i32.rem_s").i32(0).op("i32.ne")
        f.get(positions[a]).i32(0).op("i32.lt_s").op("i32.and").op("i32.sub").i32(1).op("i32.add").set(positions[a])
        f.get(area).get(block[a]).op("i32.mul").set(area)
    # the block divides the columns, and the blocks' positions are the input's count
    f.i32(columns).get(area).op("i32.rem_u").i32(0).op("i32.ne").i32(1)
    for a in range(rank):
        f.get(positions[a]).op("i32.mul")
    f.i32(count).op("i32.ne").op("i32.or")
    for a in range(rank):
        f.get(positions[a]).i32(0).op("i32.lt_s").op("i32.or")
    _trap_if(f)
    f.i32(columns).get(area).op("i32.div_u").set(channels)
    for dim, value in ((extent[1], channels), *zip(extent[2:], image, strict=True)):
        if isinstance(dim, Expr):
            f.i32(ctx.symbols[str(dim)]).get(value).mem("i32.store")
    out = ctx.addr(node.outputs[0])
    f.i32(out).i32(0).i32(math.prod(out_shape) * 4).memory_fill()
    image_strides = [math.prod(largest[a + 1:]) for a in range(rank)]
    n, c, plane, pcol = (f.local(I32) for _ in range(4))
    offsets = [f.local(I32) for _ in range(rank)]
    f.i32(ctx.addr(node.inputs[0])).set(pcol)
    with f.for_range(n, 0, batch), f.for_range(c, 0, ("local", channels)):
        f.get(n).i32(columns).op("i32.mul").get(c).op("i32.add").i32(math.prod(largest) * 4).op("i32.mul")
        f.i32(out).op("i32.add").set(plane)

        def positions_loop(axis: int = 0, above: int | None = None) -> None:
            position, index = f.local(I32), f.local(I32)
            with f.for_range(position, 0, ("local", positions[axis])):
                f.get(position).i32(strides[axis]).op("i32.mul").i32(pads[axis]).op("i32.sub")
                f.get(offsets[axis]).i32(dilations[axis]).op("i32.mul").op("i32.add").set(index)
                # -1 where this axis's index (or an earlier one's) is in the padding
                f.get(index).i32(image_strides[axis]).op("i32.mul")
                if above is not None:
                    f.get(above).op("i32.add")
                f.i32(-1)
                f.get(index).i32(0).op("i32.ge_s").get(index).get(image[axis]).op("i32.lt_s").op("i32.and")
                if above is not None:
                    f.get(above).i32(0).op("i32.ge_s").op("i32.and")
                f.op("select").set(index)
                if axis == rank - 1:
                    _add_column_value(f, index, plane, pcol)
                else:
                    positions_loop(axis + 1, index)

        def offsets_loop(axis: int = 0) -> None:
            if axis == rank:
                positions_loop()
                return
            with f.for_range(offsets[axis], 0, ("local", block[axis])):
                offsets_loop(axis + 1)

        offsets_loop()


__all__ = ["emit_col2im", "emit_max_unpool"]
