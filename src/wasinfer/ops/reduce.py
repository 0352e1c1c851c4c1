"""Reductions and ops along one axis: softmax, arg-max, scans and top-k."""

from __future__ import annotations

from wasinfer.ops import extent as ex
from wasinfer.ops.batch import along_axis, normalise_axis, per_sample, reduce
from wasinfer.ops.definition import BatchFlow, BatchView, Role, define

for op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
           "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"):
    define(op, batch=reduce, extent=ex.reduce)

for op in ("Softmax", "LogSoftmax"):
    define(op, batch=normalise_axis, extent=ex.along_axis(ex.NEG_INF))


@per_sample
def _hardmax(view: BatchView) -> BatchFlow:
    """Any axis but `axis`.

    As Softmax before opset 13 (axes `axis`.. coerced to one); along `axis` from then on."""
    return (normalise_axis if view.graph.opset < 13 else along_axis(-1))(view)


@per_sample
def _arg(view: BatchView) -> BatchFlow:
    """Any axis but `axis`.

    Without keepdims the batch moves down where the reduced axis was before it."""
    axis = int(view.attr("axis")) % max(view.in_rank or 1, 1)
    first = view.first or 0
    if axis == first:
        return view.mixes(f"it works along axis {axis}, the batch")
    return view.same(first - (axis < first) if not int(view.attr("keepdims")) else first)


@per_sample
def _cumsum(view: BatchView) -> BatchFlow:
    """Any axis but the scanned one.

    The axis is the second input; computed at run time, it may be the batch's."""
    found = view.ints(1)
    if found is None:
        return view.mixes("its axis is computed at run time and may be the batch axis")
    axis = found[0] % max(view.in_rank or 1, 1)
    if axis == view.first:
        return view.mixes(f"it works along axis {axis}, the batch")
    return view.same(view.first)


define("Hardmax", batch=_hardmax)
define("ArgMax", batch=_arg, extent=ex.arg)
define("ArgMin", batch=_arg, extent=ex.arg)
define("CumSum", batch=_cumsum)
define("CumProd", batch=_cumsum)
define("LpNormalization", batch=along_axis(-1))
define("TopK", batch=along_axis(-1))
for op in ("NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"):
    define(op, role=Role.LOWERED, summary="the picked log-probabilities (after a LogSoftmax for the cross entropy) "
                                          "weighted, ignore_index masked, summed or averaged (passes/losses.py)")
