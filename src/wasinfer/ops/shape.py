"""Ops that move no data: views (their output aliases their input) and ops that shapes alone decide,
always evaluated at compile time."""

from __future__ import annotations

from wasinfer.ops import extent as ex
from wasinfer.ops.batch import elementwise, per_sample
from wasinfer.ops.definition import BatchFlow, BatchView, Role, define


@per_sample
def _reshape(view: BatchView) -> BatchFlow:
    """Axis 0 stays axis 0.

    The target shape keeps the leading dim per sample; a batch elsewhere is not followed."""
    if view.node.op_type == "Flatten" and int(view.attr("axis")) % max((view.in_rank or 0) + 1, 1) == 0:
        return view.mixes("Flatten with axis 0 merges the batch into the inner axis")
    return view.same(0) if view.first == 0 else view.none()


@per_sample
def _squeeze(view: BatchView) -> BatchFlow:
    """Moves by the axes removed or inserted before it.

    Squeezing the batch axis itself mixes samples."""
    listed = view.node.attrs.get("axes")
    if listed is None:
        listed = view.ints(1)
    if listed is None:
        return view.none()
    first, rank = view.first or 0, view.in_rank or 1
    if view.node.op_type == "Squeeze":
        dropped = {int(a) % rank for a in listed}
        if first in dropped:
            return view.mixes("it squeezes the batch axis")
        return view.same(first - sum(a < first for a in dropped))
    total = view.out_rank() or 0
    position = first
    for added in sorted(int(a) % total for a in listed):
        if added <= position:
            position += 1
    return view.same(position)


define("Reshape", role=Role.VIEW, batch=_reshape, extent=ex.reshape)
define("Flatten", role=Role.VIEW, batch=_reshape, extent=ex.flatten)
define("Squeeze", role=Role.VIEW, batch=_squeeze, extent=ex.squeeze)
define("Unsqueeze", role=Role.VIEW, batch=_squeeze, extent=ex.squeeze)
define("Identity", role=Role.VIEW, batch=elementwise, extent=ex.identity)
# inference mode: the identity (and a constant mask)
define("Dropout", role=Role.VIEW, batch=elementwise, extent=ex.identity)
define("BitCast", role=Role.VIEW, batch=elementwise, extent=ex.identity,
       summary="the same bytes read as another type of the same width: no code, the output aliases the input")

define("Constant", role=Role.COMPILE_TIME)
define("Range", role=Role.COMPILE_TIME, extent=ex.range_,
       summary="folded when its inputs are; a symbolic limit (a sequence's length) folds at its largest, each "
               "value set by its position, and its dims follow the limit; a run-time start or delta with its "
               "range declared (--input-values) runs a kernel")
define("ConstantOfShape", role=Role.COMPILE_TIME, extent=ex.from_values)
for op in ("Shape", "Size"):
    define(op, role=Role.COMPILE_TIME, extent=ex.shape_of)
