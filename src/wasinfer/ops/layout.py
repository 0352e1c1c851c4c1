"""Ops that move or pick elements: transposes, joins and splits, slices, gathers, padding, tiling."""

from __future__ import annotations

from wasinfer.ops import extent as ex
from wasinfer.ops.batch import along_axis, not_followed, per_sample
from wasinfer.ops.definition import BatchFlow, BatchView, Role, define


@per_sample
def _transpose(view: BatchView) -> BatchFlow:
    """Where the permutation puts it."""
    rank = view.in_rank or 0
    perm = list(view.node.attrs.get("perm", list(reversed(range(rank)))))
    return view.same(perm.index(view.first))


def _gather(view: BatchView) -> BatchFlow:
    """Data: any axis but `axis`; indices: where they land.

    Batched data: along `axis` mixes, elsewhere the indices' axes replace `axis`. Batched
    indices into constant data (an embedding lookup): the batch lands where the indices go."""
    axis_attr = int(view.attr("axis") or 0)
    if view.first is None:
        if len(view.axes) > 1 and view.axes[1] is not None:
            return view.same(axis_attr % max(view.in_rank or 1, 1) + view.axes[1])
        return view.none()
    if view.in_rank is None:
        return view.none()
    axis = axis_attr % max(view.in_rank, 1)
    if axis == view.first:
        return view.mixes(f"it works along axis {axis}, the batch")
    indices = view.rank(view.node.inputs[1]) or 0
    return view.same(view.first if view.first < axis else view.first + indices - 1)


@per_sample
def _slice(view: BatchView) -> BatchFlow:
    """Any axis not sliced.

    Slicing the batch axis (anything but all of it) mixes samples; constant bounds are needed to tell."""
    starts, ends, listed, steps = view.ints(1), view.ints(2), view.ints(3), view.ints(4)
    if starts is None or ends is None:
        return view.none()
    rank = view.in_rank or 1
    for k, axis in enumerate(listed if listed is not None else range(len(starts))):
        whole = starts[k] == 0 and ends[k] >= 2**31 - 1 and (steps is None or steps[k] == 1)
        if int(axis) % rank == view.first and not whole:
            return view.mixes("it slices the batch axis")
    return view.same(view.first)


define("Transpose", batch=_transpose, extent=ex.transpose)
define("Concat", batch=along_axis(0), extent=ex.concat)
define("Split", batch=along_axis(0), extent=ex.split)
define("Gather", batch=_gather, extent=ex.gather)
define("GatherElements", batch=along_axis(0))
define("Slice", batch=_slice, extent=ex.slice_)
define("Tile", batch=not_followed, extent=ex.tile)


@per_sample
def _trilu(view: BatchView) -> BatchFlow:
    """Any axis but the last two.

    Keeps or zeroes by row and column, the last two axes."""
    if view.first is not None and view.first >= (view.in_rank or 0) - 2:
        return view.mixes(f"its mask runs along axis {view.first}, the batch")
    return view.same(view.first)


def _one_hot(view: BatchView) -> BatchFlow:
    """Where the indices have it, moved past the new axis.

    The new depth axis goes in at `axis` of the output."""
    if view.first is None:
        return view.none()
    out_rank = view.out_rank() or 0
    axis = int(view.attr("axis")) % max(out_rank, 1)
    return view.same(view.first + (axis <= view.first))


def _addressed(view: BatchView) -> BatchFlow:
    """Never.

    The indices address the data's leading axes (or a whole tensor), so a batch there mixes."""
    if view.first is None and not any(a is not None for a in view.axes[1:]):
        return view.none()
    return view.mixes("its indices address the batch axis of the data")


def _reverse_sequence(view: BatchView) -> BatchFlow:
    """Never.

    One length per entry of `batch_axis` reverses the steps of `time_axis`: samples on either mix."""
    if all(a is None for a in view.axes):
        return view.none()
    return view.mixes("its sequence lengths go with the entries of its batch axis")


@per_sample
def _eye_like(view: BatchView) -> BatchFlow:
    """Never.

    Its output is the identity of the input's whole shape, rows and columns together."""
    return view.mixes(f"its diagonal runs across axis {view.first}, the batch")


define("Trilu", batch=_trilu)
define("OneHot", batch=_one_hot)
define("EyeLike", batch=_eye_like)
define("ReverseSequence", batch=_reverse_sequence)
for op in ("GatherND", "ScatterND", "ScatterElements"):
    define(op, batch=_addressed)
define("Scatter", batch=_addressed, summary="ScatterElements under its name before opset 11")


@per_sample
def _cache_update(view: BatchView) -> BatchFlow:
    """Axis 0 only.

    Each sample's write index places its own update in its own cache."""
    if view.first != 0:
        return view.mixes(f"its write indices go with axis 0, not axis {view.first}")
    return view.same(0)


define("TensorScatter", batch=_cache_update,
       summary="a KV cache's update written at each sample's run-time write index, linear or circular")
@per_sample
def _pad(view: BatchView) -> BatchFlow:
    """Any axis not padded.

    Padding the batch axis adds samples; constant pads are needed to tell."""
    pads = view.node.attrs.get("pads") or view.ints(1)
    rank = view.in_rank or 1
    if pads is None:
        return view.none()
    axes = view.ints(3) if len(view.node.inputs) > 3 and view.node.inputs[3] else list(range(rank))
    if axes is None:
        return view.none()
    for k, axis in enumerate(axes):
        if axis % rank == view.first and (pads[k] or pads[len(axes) + k]):
            return view.mixes("it pads the batch axis")
    return view.same(view.first)


define("Pad", batch=_pad, extent=ex.pad)
define("CenterCropPad", role=Role.LOWERED,
       summary="a Slice and a zero Pad around the centre of each listed axis; the shape a constant (passes/crop.py)")


def _data_decides_size(view: BatchView) -> BatchFlow:
    """How many elements come out depends on every sample's values together."""
    if view.first is None:
        return view.none()
    return view.mixes("how many elements it outputs depends on the values of the whole batch")


define("NonZero", batch=_data_decides_size,
       summary="the indices of the nonzero elements, [rank, count]; count is decided at run time (ABI v2)")
define("NonMaxSuppression", batch=_data_decides_size,
       summary="[selected, 3] (batch, class, box) rows; how many are selected is decided at run time (ABI v2)")
define("Unique", batch=_data_decides_size,
       summary="the distinct slices along an axis (elements without one), sorted; how many is decided at run time")
define("Compress", batch=_data_decides_size,
       summary="the slices where the condition holds; their count is decided at run time (ABI v2)")
