"""Batch rules shared by several ops: where the samples of a run-time batch go through a node.

The compiler runs a graph once per sample of a dynamic leading dim only where no node mixes
samples along it (passes/control.py `batch_mixing`). Each op's definition names its rule; a
rule sees the batch axis of each input and says where it is in each output, or why the node
mixes samples (it reduces, slides, normalises or contracts along the batch axis).
"""

from __future__ import annotations

from wasinfer.ops.definition import BatchFlow, BatchRule, BatchView


def per_sample(rule: BatchRule) -> BatchRule:
    """The rule applies where the first input carries the batch and its rank is known; elsewhere
    the batch is not followed through the node."""
    def guarded(view: BatchView) -> BatchFlow:
        if view.first is None or view.in_rank is None:
            return view.none()
        return rule(view)
    guarded.__doc__ = rule.__doc__
    return guarded


def elementwise(view: BatchView) -> BatchFlow:
    """Keeps its axis (counted from the end).

    Element by element with numpy broadcasting; inputs batched on different axes mix samples."""
    out_rank = view.out_rank() or 0
    placed = {a + out_rank - (view.rank(n) or 0) for a, n in zip(view.axes, view.node.inputs, strict=True)
              if a is not None}
    if len(placed) > 1:
        return view.mixes("its inputs carry the batch on different axes")
    return BatchFlow((placed.pop() if placed else None,) + (None,) * (len(view.node.outputs) - 1))


@per_sample
def spatial(view: BatchView) -> BatchFlow:
    """Axis 0 only.

    Slides or normalises over the axes after the first two, so the batch must be axis 0."""
    if view.first != 0:
        return view.mixes(f"it slides over axis {view.first}, the batch")
    return BatchFlow((0,) + (None,) * (len(view.node.outputs) - 1))


@per_sample
def normalise_axis(view: BatchView) -> BatchFlow:
    """Any axis but the normalised one(s).

    Normalises along `axis` (LayerNormalization: axes `axis`..; Softmax before opset 13: axes
    `axis`.. coerced to one, so the batch must come before `axis`)."""
    rank, first = view.in_rank or 1, view.first or 0
    axis = int(view.attr("axis")) % max(rank, 1)
    if view.graph.opset < 13 and view.node.op_type in ("Softmax", "LogSoftmax", "Hardmax"):
        if first < axis:
            return view.same(first)
        return view.mixes(f"it coerces axes {axis}.. (with the batch) to one")
    if first == axis or (view.node.op_type == "LayerNormalization" and first > axis):
        return view.mixes(f"it normalises over axis {first}, the batch")
    return BatchFlow((first,) + (None,) * (len(view.node.outputs) - 1))


def along_axis(default: int) -> BatchRule:
    """Any axis but `axis`.

    Works along one `axis` attribute (`default` where the op has none)."""
    @per_sample
    def rule(view: BatchView) -> BatchFlow:
        found = view.attr("axis")
        axis = int(default if found is None else found) % max(view.in_rank or 1, 1)
        if axis == view.first:
            return view.mixes(f"it works along axis {axis}, the batch")
        return view.same(view.first)
    rule.__doc__ = along_axis.__doc__
    return rule


@per_sample
def reduce(view: BatchView) -> BatchFlow:
    """Any axis not reduced.

    Reduces the listed axes (all where none are listed); without keepdims the batch moves down."""
    rank, first = view.in_rank or 1, view.first or 0
    listed = view.node.attrs.get("axes")
    if listed is None:
        listed = view.ints(1)
        if listed is None and len(view.node.inputs) > 1 and view.node.inputs[1]:
            return view.none()  # axes computed at run time: not followed
    reduced = {int(a) % max(rank, 1) for a in (listed or [])}
    if not reduced and not int(view.attr("noop_with_empty_axes") or 0):
        reduced = set(range(rank))
    if first in reduced:
        return view.mixes(f"it reduces axis {first}, the batch")
    keep = int(view.attr("keepdims"))
    return view.same(first if keep else first - sum(a < first for a in reduced))


def not_followed(view: BatchView) -> BatchFlow:
    """Not followed (the node is trusted)."""
    return view.none()


__all__ = ["BatchRule", "along_axis", "elementwise", "normalise_axis", "not_followed", "per_sample", "reduce",
           "spatial"]
