"""NonMaxSuppression, ONNX's semantics as ONNX Runtime computes them.

For each batch and class: the boxes whose score is above `score_threshold` (all of them without
one) are visited from the highest score down (equal scores: the lower box index first), and a box
is selected unless its intersection over union with a box already selected for that class is above
`iou_threshold`; at most `max_output_boxes_per_class` per class (none when it is 0 or absent). The
selected (batch, class, box) rows are written as int64, in that order, and their count as the
output's run-time dim (ABI version 2, passes/dynamic.py). A box whose area or overlap is not
positive never suppresses another. Boxes are [y1, x1, y2, x2] with any two opposite corners, or
with `center_point_box` 1, [x_center, y_center, width, height].

Each visit scans the remaining scores for the highest (no sort, no heap): O(N^2) per class, which
suits the few hundred candidates detection heads leave after their own score filter.
"""

from __future__ import annotations

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.emitters.indexing import check_run_time_shaped, write_run_time_dims
from wasinfer.backends.wasm.writer import F32, I32, Func
from wasinfer.ir import Graph, Node


def _arg(node: Node, index: int) -> str:
    return node.inputs[index] if len(node.inputs) > index else ""


def _check(node: Node, graph: Graph) -> list[str]:
    problems = check_run_time_shaped(node, graph)
    boxes, scores = graph.info(node.inputs[0]), graph.info(node.inputs[1])
    if boxes.dtype.name != "float32" or scores.dtype.name != "float32":
        problems.append("boxes and scores must be float32")
    if len(boxes.shape) != 3 or boxes.shape[2] != 4 or len(scores.shape) != 3 or \
            scores.shape[0] != boxes.shape[0] or scores.shape[2] != boxes.shape[1]:
        problems.append(f"boxes {list(boxes.shape)} and scores {list(scores.shape)} are not [B, N, 4] and [B, C, N]")
    if int(node.attr("center_point_box", 0)) not in (0, 1):
        problems.append("center_point_box must be 0 or 1")
    return problems


def _scratch(node: Node, graph: Graph) -> int:
    boxes = graph.info(node.inputs[0]).shape[1]
    return 5 * boxes + 16  # a visited flag (byte) and a selected index (i32) per box


def _edges(f: Func, box: int, low: int, high: int, first: int, second: int, centered: bool) -> None:
    """low, high = the box's extent along one axis (coordinates `first` and `second` of its four)."""
    if centered:  # centre first, then the size along the axis
        f.get(box).mem("f32.load", first * 4).get(box).mem("f32.load", second * 4).f32(0.5).op("f32.mul")
        f.op("f32.sub").set(low)
        f.get(box).mem("f32.load", first * 4).get(box).mem("f32.load", second * 4).f32(0.5).op("f32.mul")
        f.op("f32.add").set(high)
    else:
        f.get(box).mem("f32.load", first * 4).get(box).mem("f32.load", second * 4).op("f32.min").set(low)
        f.get(box).mem("f32.load", first * 4).get(box).mem("f32.load", second * 4).op("f32.max").set(high)


def _suppresses(ctx: Ctx, centered: bool) -> int:
    """A function (box_a, box_b, iou_threshold) -> 1 when the boxes overlap by more than the threshold."""
    index, f = ctx.module.reserve([I32, I32, F32], [I32], name="nms_suppresses")
    a, b, threshold = 0, 1, 2
    ax0, ax1, bx0, bx1, ay0, ay1, by0, by1, iw, ih, inter, union = (f.local(F32) for _ in range(12))
    x_first, x_second = (0, 2) if centered else (1, 3)
    y_first, y_second = (1, 3) if centered else (0, 2)
    _edges(f, a, ax0, ax1, x_first, x_second, centered)
    _edges(f, b, bx0, bx1, x_first, x_second, centered)
    _edges(f, a, ay0, ay1, y_first, y_second, centered)
    _edges(f, b, by0, by1, y_first, y_second, centered)
    f.get(ax1).get(bx1).op("f32.min").get(ax0).get(bx0).op("f32.max").op("f32.sub").tee(iw)
    f.f32(0.0).op("f32.le")
    with f.if_():
        f.i32(0).op("return")
    f.get(ay1).get(by1).op("f32.min").get(ay0).get(by0).op("f32.max").op("f32.sub").tee(ih)
    f.f32(0.0).op("f32.le")
    with f.if_():
        f.i32(0).op("return")
    f.get(iw).get(ih).op("f32.mul").set(inter)
    f.get(ax1).get(ax0).op("f32.sub").get(ay1).get(ay0).op("f32.sub").op("f32.mul")  # area a
    f.get(bx1).get(bx0).op("f32.sub").get(by1).get(by0).op("f32.sub").op("f32.mul")  # area b
    f.op("f32.add").get(inter).op("f32.sub").set(union)
    # a box of no area, or no union, never suppresses (areas are checked through the union and the intersection)
    f.get(ax1).get(ax0).op("f32.sub").get(ay1).get(ay0).op("f32.sub").op("f32.mul").f32(0.0).op("f32.le")
    f.get(bx1).get(bx0).op("f32.sub").get(by1).get(by0).op("f32.sub").op("f32.mul").f32(0.0).op("f32.le")
    f.op("i32.or").get(union).f32(0.0).op("f32.le").op("i32.or")
    with f.if_():
        f.i32(0).op("return")
    f.get(inter).get(union).op("f32.div").get(threshold).op("f32.gt")
    return index


@kernel("NonMaxSuppression", check=_check, scratch=_scratch)
def non_max_suppression(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    batches, boxes, _ = ctx.info(node.inputs[0]).shape
    classes = ctx.info(node.inputs[1]).shape[1]
    suppresses = _suppresses(ctx, int(node.attr("center_point_box", 0)) == 1)
    box_addr, score_addr, out = ctx.addr(node.inputs[0]), ctx.addr(node.inputs[1]), ctx.addr(node.outputs[0])
    visited, chosen = ctx.scratch_addr, ctx.scratch_addr + boxes + (-boxes % 4)
    limit, iou, floor = f.local(I32), f.local(F32), f.local(F32)
    b, c, i, best, kept, s, count, row, box = (f.local(I32) for _ in range(9))
    best_score = f.local(F32)
    if _arg(node, 2):  # max_output_boxes_per_class, an int64 scalar: clamped to [0, boxes]
        f.i32(ctx.addr(_arg(node, 2))).mem("i64.load", align=0).tee(limit_wide := f.local(0x7E))
        f.i64(0).op("i64.lt_s")
        with f.if_():
            f.i64(0).set(limit_wide)
        f.get(limit_wide).i64(boxes).op("i64.gt_s")
        with f.if_():
            f.i64(boxes).set(limit_wide)
        f.get(limit_wide).op("i32.wrap_i64").set(limit)
    else:
        f.i32(0).set(limit)
    if _arg(node, 3):
        f.i32(ctx.addr(_arg(node, 3))).mem("f32.load", align=0).set(iou)
    else:
        f.f32(0.0).set(iou)
    if _arg(node, 4):
        f.i32(ctx.addr(_arg(node, 4))).mem("f32.load", align=0).set(floor)
    f.i32(0).set(count)
    with f.for_range(b, 0, batches), f.for_range(c, 0, classes):
        # row = the scores of (b, c); every box visited if no box may be selected
        f.get(b).i32(classes).op("i32.mul").get(c).op("i32.add").i32(boxes * 4).op("i32.mul").i32(score_addr)
        f.op("i32.add").set(row)
        with f.for_range(i, 0, boxes):
            f.i32(visited).get(i).op("i32.add")
            if _arg(node, 4):  # only scores above the threshold are candidates
                f.get(row).get(i).i32(4).op("i32.mul").op("i32.add").mem("f32.load", align=0).get(floor)
                f.op("f32.gt").op("i32.eqz")
            else:
                f.i32(0)
            f.mem("i32.store8", align=0)
        f.i32(0).set(kept)
        with f.block(), f.block(b"\x03"):  # one visit per iteration, the highest score left
            f.get(kept).get(limit).op("i32.ge_s").br_if(1)
            f.i32(-1).set(best)
            with f.for_range(i, 0, boxes):
                f.i32(visited).get(i).op("i32.add").mem("i32.load8_u", align=0).op("i32.eqz")
                with f.if_():
                    f.get(row).get(i).i32(4).op("i32.mul").op("i32.add").mem("f32.load", align=0)
                    f.get(best_score).op("f32.gt").get(best).i32(0).op("i32.lt_s").op("i32.or")
                    with f.if_():
                        f.get(i).set(best)
                        f.get(row).get(i).i32(4).op("i32.mul").op("i32.add").mem("f32.load", align=0).set(best_score)
            f.get(best).i32(0).op("i32.lt_s").br_if(1)
            f.i32(visited).get(best).op("i32.add").i32(1).mem("i32.store8", align=0)
            # box = the address of the best box of batch b
            f.get(b).i32(boxes * 16).op("i32.mul").get(best).i32(16).op("i32.mul").op("i32.add").i32(box_addr)
            f.op("i32.add").set(box)
            with f.block():  # suppressed by a box already selected: next visit
                with f.for_range(s, 0, ("local", kept)):
                    f.get(b).i32(boxes * 16).op("i32.mul")
                    f.i32(chosen).get(s).i32(4).op("i32.mul").op("i32.add").mem("i32.load").i32(16).op("i32.mul")
                    f.op("i32.add").i32(box_addr).op("i32.add")
                    f.get(box).get(iou).call(suppresses).br_if(2)
                f.i32(chosen).get(kept).i32(4).op("i32.mul").op("i32.add").get(best).mem("i32.store")
                f.inc(kept)
                f.get(count).i32(24).op("i32.mul").i32(out).op("i32.add").tee(s)
                f.get(b).op("i64.extend_i32_u").mem("i64.store", align=0)
                f.get(s).get(c).op("i64.extend_i32_u").mem("i64.store", 8, align=0)
                f.get(s).get(best).op("i64.extend_i32_u").mem("i64.store", 16, align=0)
                f.inc(count)
            f.br(0)
    write_run_time_dims(ctx, node, count)
