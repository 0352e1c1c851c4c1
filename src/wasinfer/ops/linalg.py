"""Matrix products. The batch may ride along any axis but the contracted one."""

from __future__ import annotations

from wasinfer.ops import extent as ex
from wasinfer.ops.batch import per_sample
from wasinfer.ops.definition import BatchFlow, BatchView, Fusion, Role, define


def _matmul(view: BatchView) -> BatchFlow:
    """Any axis of A but the contracted one.

    Broadcast batched product: a batch in A keeps its place counted from the end; one in B or
    on A's contracted (last) axis mixes samples."""
    if view.first is None:
        return view.mixes("the batch is in its second operand") if view.axes[1:2] != (None,) else view.none()
    rank = view.in_rank
    if rank is None:
        return view.none()
    if view.first == rank - 1:
        return view.mixes("it contracts over the batch axis")
    return view.same(view.first + (view.out_rank() or 0) - rank)


def _gemm(view: BatchView) -> BatchFlow:
    """A's rows.

    A's rows are samples unless A is transposed: then the batch is contracted."""
    if view.first is None:
        return view.mixes("the batch is in its second operand") if view.axes[1:2] != (None,) else view.none()
    if view.in_rank is None:
        return view.none()
    return view.same(0) if view.first == int(view.attr("transA")) else view.mixes("it contracts over the batch axis")


define("MatMul", fusion=Fusion.PRODUCER, batch=_matmul, extent=ex.matmul)
define("Gemm", fusion=Fusion.PRODUCER, batch=_gemm, extent=ex.gemm)


@per_sample
def _det(view: BatchView) -> BatchFlow:
    """Any axis but the last two, which drop out.

    One determinant per matrix of the last two axes."""
    rank = view.in_rank or 0
    if view.first is not None and view.first >= rank - 2:
        return view.mixes(f"its matrices run along axis {view.first}, the batch")
    return view.same(view.first)


define("Det", batch=_det, summary="float32, LU decomposition with partial pivoting per matrix")
define("Einsum", role=Role.LOWERED,
       summary="lowered to Transpose, Reshape, batched MatMul and ReduceSum (passes/einsum.py)")
define("DFT", role=Role.LOWERED,
       summary="one MatMul with a matrix of cosines and sines along its axis, real or complex, forward or inverse, "
               "full or one-sided (passes/spectral.py)")
define("STFT", role=Role.LOWERED,
       summary="a real signal's frames as a Conv whose filters are the window times the DFT's rows, which runs as "
               "FFTs for a power-of-two frame length (passes/spectral.py, lowering/dft.py)")
for op in ("HannWindow", "HammingWindow", "BlackmanWindow"):
    define(op, role=Role.COMPILE_TIME, summary="evaluated while compiling (its size is a constant in exported "
                                               "models); a run-time size with its range declared (--input-values) "
                                               "runs a kernel")
define("MelWeightMatrix", role=Role.COMPILE_TIME, summary="evaluated while compiling: its parameters (bins, a DFT "
                                                          "length, a sample rate) are constants in exported models; "
                                                          "run-time ones with their ranges declared (--input-values) "
                                                          "run a kernel")
