"""Recurrent layers. Their time axis comes first (layout 0) or second (layout 1): a batch on the
time axis would run the recurrence across samples."""

from __future__ import annotations

from wasinfer.ops import extent as ex
from wasinfer.ops.batch import per_sample
from wasinfer.ops.definition import BatchFlow, BatchView, define


@per_sample
def _recurrent(view: BatchView) -> BatchFlow:
    """The batch axis of X (1, or 0 with layout 1).

    X is [seq, batch, input] (layout 0) or [batch, seq, input]; Y and the states follow."""
    layout = int(view.attr("layout") or 0)
    if view.first != (1 if layout == 0 else 0):
        return view.mixes(f"its input has the batch on axis {view.first}, which is the time axis")
    y_axis, state_axis = (2, 1) if layout == 0 else (0, 0)
    return BatchFlow((y_axis,) + (state_axis,) * (len(view.node.outputs) - 1))


for op in ("LSTM", "GRU", "RNN"):
    define(op, batch=_recurrent, extent=ex.recurrent)
