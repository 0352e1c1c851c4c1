"""Extent rules: a node's output dims as expressions of the symbols of --input-shape's ranges.

A symbolic dim (ir/symbolic.py) is decided by each run. Every buffer is laid out for its largest
shape, and a kernel runs over that largest shape, so only the part of a buffer inside its actual
dims is meaningful: the rest holds what earlier runs or kernels left there. That is enough for a
kernel that computes each output element from input elements at the same position (element by
element, a matrix product's rows, a transpose). A kernel that reads *across* a symbolic axis needs
the part past the actual dim filled first: with 0 where it adds (a convolution's right padding, a
sum, the contraction of a matrix product), with -inf where it takes a maximum (max pooling, softmax).
A rule asks for that fill (`ExtentFlow.masks`), and the compiler writes it just before the node runs.

An op without a rule is refused by name when a symbolic dim reaches it, as is a rule's `refused`:
what is refused here would compute something wrong, never something slow.

Shape arithmetic follows the same rules: `Shape` of a tensor with symbolic dims has symbolic
*values* (`ExtentFlow.values`), which Gather, Concat, Unsqueeze, Cast and integer arithmetic carry on
to the Reshape, Expand or ConstantOfShape that reads them, as exporters write `x.view(b, c * h, w)`.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import helper

from wasinfer.ir.symbolic import Dim, Expr, Extent, add, floordiv, is_static, largest, minimum, mul, show, smallest
from wasinfer.ops.definition import EDGE, ExtentFlow, ExtentRule, ExtentView

NEG_INF = float("-inf")


def same(view: ExtentView) -> ExtentFlow:
    """Every output has the first input's dims (element by element, or a normalisation over the channel)."""
    return view.out(*(view.extent(0),) * len(view.node.outputs))


def _broadcast(extents: list[Extent]) -> Extent | str:
    rank = max(len(e) for e in extents)
    result: list[Dim] = []
    for axis in range(rank):
        dims = {e[axis - rank + len(e)] for e in extents if axis - rank + len(e) >= 0}
        dims.discard(1)
        if len(dims) > 1:
            return f"axis {axis} is {' and '.join(sorted(map(str, dims)))} in its inputs"
        result.append(dims.pop() if dims else 1)
    return tuple(result)


def _arithmetic(view: ExtentView) -> Extent | None:
    """Integer Add/Sub/Mul/Div of symbolic values (shape arithmetic), element by element."""
    op = view.node.op_type
    left, right = view.values(0), view.values(1)
    if op not in ("Add", "Sub", "Mul", "Div") or left is None or right is None:
        return None
    size = max(len(left), len(right))
    if len(left) not in (1, size) or len(right) not in (1, size):
        return None
    found: list[Dim] = []
    for i in range(size):
        a, b = left[i % len(left)], right[i % len(right)]
        if op == "Add":
            found.append(add(a, b))
        elif op == "Sub" and isinstance(b, int):
            found.append(add(a, -b))
        elif op == "Mul" and (isinstance(a, int) or isinstance(b, int)):
            found.append(mul(a, b))
        elif op == "Div" and isinstance(b, int) and b > 0:
            found.append(floordiv(a, b))
        else:
            return None
    return tuple(found)


def broadcast(view: ExtentView) -> ExtentFlow:
    """numpy broadcasting: a symbolic dim meets 1 or the same expression."""
    divisor = view.graph.tensors.get(view.node.inputs[1]) if len(view.node.inputs) > 1 else None
    if view.node.op_type in ("Div", "Mod") and any(view.symbolic(i) for i in range(len(view.node.inputs))) \
            and divisor is not None and np.issubdtype(divisor.dtype, np.integer):
        return view.refuse("an integer division where the part past the run's dims may hold 0")
    extents = [view.extent(i) for i, name in enumerate(view.node.inputs) if name]
    found = _broadcast(extents)
    if isinstance(found, str):
        return view.refuse(found)
    values = _arithmetic(view) if len(view.node.inputs) == 2 else None
    flow = view.out(found, *(None,) * (len(view.node.outputs) - 1))
    return ExtentFlow(flow.outputs, (values,) if values else ())


def _filled(fill: float | None) -> str:
    return {0.0: " (filled with 0 past the run's dim)", NEG_INF: " (filled with -inf past the run's dim)"}.get(
        fill, "" if fill is not None else " (no padding after a symbolic axis)")  # type: ignore[arg-type]


def _static_window(size: int, reach: int, stride: int, begin: int, end: int, auto_pad: str, ceil: bool) -> int:
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return -(-size // stride)
    if auto_pad == "VALID":
        begin = end = 0
    span = size + begin + end - reach
    return (-(-span // stride) if ceil else span // stride) + 1


def window(fill: float | None) -> ExtentRule:
    """Conv and the pools over axes 2..: out = (x + pads - dilation * (k - 1) - 1) // stride + 1.

    `fill` is what the part past a symbolic dim must hold where the window reaches past it (the right
    padding): 0 for a convolution or an average counting the padding, -inf for a maximum; None where no
    fill gives the right answer (an average that leaves the padding out of its count)."""
    def rule(view: ExtentView) -> ExtentFlow:
        extent = view.extent(0)
        spatial = len(extent) - 2
        if any(isinstance(d, Expr) for d in extent[1:2]):
            return view.refuse("its channel axis is symbolic")
        weights = view.graph.info(view.node.inputs[1]).shape if view.node.op_type == "Conv" else None
        kernel = list(view.attr("kernel_shape") or (weights[2:] if weights is not None else []))
        strides = list(view.attr("strides") or [1] * spatial)
        dilations = list(view.attr("dilations") or [1] * spatial)
        pads = list(view.attr("pads") or [0] * (2 * spatial))
        auto_pad = str(view.attr("auto_pad") or "NOTSET")
        if int(view.attr("ceil_mode") or 0) and not is_static(extent[2:]):
            return view.refuse("ceil_mode over a symbolic axis (its last window depends on the run's size)")
        dims: list[Dim] = [extent[0], weights[0] if weights is not None else extent[1]]
        masks: list[tuple[int, int, float]] = []
        for i in range(spatial):
            size, reach = extent[2 + i], dilations[i] * (kernel[i] - 1) + 1
            if not isinstance(size, Expr):
                dims.append(_static_window(size, reach, strides[i], pads[i], pads[spatial + i], auto_pad,
                                           bool(int(view.attr("ceil_mode") or 0))))
                continue
            if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                if strides[i] != 1:
                    return view.refuse(f"auto_pad {auto_pad} with stride {strides[i]} over a symbolic axis (its "
                                       "padding depends on the run's size)")
                begin, end = ((reach - 1) // 2, reach - 1 - (reach - 1) // 2)
                if auto_pad == "SAME_LOWER":
                    begin, end = end, begin
            elif auto_pad == "VALID":
                begin = end = 0
            else:
                begin, end = pads[i], pads[spatial + i]
            dims.append(add(floordiv(add(size, begin + end - reach), strides[i]), 1))
            if end > 0:
                if fill is None:
                    return view.refuse("an average that leaves the padding out of its count, with padding after a "
                                       "symbolic axis")
                masks.append((0, 2 + i, fill))
        return ExtentFlow((tuple(dims),) * len(view.node.outputs), masks=tuple(masks))
    rule.__doc__ = f"Spatial axes symbolic: out = (x + pads - reach) // stride + 1{_filled(fill)}."
    return rule


def conv_transpose(view: ExtentView) -> ExtentFlow:
    """Spatial axes symbolic: out = (x - 1) * stride + reach - pads + output_padding (filled with 0 past it)."""
    extent = view.extent(0)
    weights = view.graph.info(view.node.inputs[1]).shape  # [C_in, C_out / group, k...]
    spatial = len(extent) - 2
    if isinstance(extent[1], Expr):
        return view.refuse("its channel axis is symbolic")
    if view.node.attrs.get("output_shape") is not None or str(view.attr("auto_pad") or "NOTSET") != "NOTSET":
        return view.refuse("output_shape or auto_pad over a symbolic axis (its padding depends on the run's size)")
    kernel = list(view.attr("kernel_shape") or weights[2:])
    strides = list(view.attr("strides") or [1] * spatial)
    dilations = list(view.attr("dilations") or [1] * spatial)
    pads = list(view.attr("pads") or [0] * (2 * spatial))
    extra = list(view.attr("output_padding") or [0] * spatial)
    dims: list[Dim] = [extent[0], weights[1] * int(view.attr("group") or 1)]
    for i in range(spatial):
        reach = dilations[i] * (kernel[i] - 1) + 1
        dims.append(add(mul(add(extent[2 + i], -1), strides[i]), reach - pads[i] - pads[spatial + i] + extra[i]))
    masks = tuple((0, 2 + i, 0.0) for i in range(spatial) if isinstance(extent[2 + i], Expr))
    return ExtentFlow((tuple(dims),), masks=masks)


def average_pool(view: ExtentView) -> ExtentFlow:
    """AveragePool: as `window`, filling with 0 where the padding counts (count_include_pad)."""
    counted = int(view.attr("count_include_pad") or 0)
    return window(0.0 if counted else None)(view)


def arg(view: ExtentView) -> ExtentFlow:
    """ArgMax, ArgMin: the axis goes (or becomes 1); over a symbolic axis the part past it cannot win."""
    extent = view.extent(0)
    axis = int(view.attr("axis") or 0) % max(len(extent), 1)
    keep = int(view.attr("keepdims"))
    dims = tuple(1 if a == axis else d for a, d in enumerate(extent) if keep or a != axis)
    fill = NEG_INF if view.node.op_type == "ArgMax" else float("inf")
    return ExtentFlow(view.out(dims).outputs, masks=((0, axis, fill),) if isinstance(extent[axis], Expr) else ())


def global_pool(fill: float) -> ExtentRule:
    """One value per channel: the spatial axes are reduced, with `fill` past their actual dims (a mean
    divides by the run's count)."""
    def rule(view: ExtentView) -> ExtentFlow:
        extent = view.extent(0)
        if isinstance(extent[1], Expr):
            return view.refuse("its channel axis is symbolic")
        symbolic = [a for a in range(2, len(extent)) if isinstance(extent[a], Expr)]
        return ExtentFlow(view.out((extent[0], extent[1]) + (1,) * (len(extent) - 2)).outputs,
                          masks=tuple((0, a, fill) for a in symbolic))
    rule.__doc__ = f"Spatial axes symbolic, reduced{_filled(fill)}."
    return rule


def along_axis(fill: float) -> ExtentRule:
    """Softmax, LogSoftmax: the dims stay; the normalised axes get `fill` past a symbolic dim."""
    def rule(view: ExtentView) -> ExtentFlow:
        extent = view.extent(0)
        axis = int(view.attr("axis")) % max(len(extent), 1)
        axes = range(axis, len(extent)) if view.graph.opset < 13 else (axis,)
        masks = tuple((0, a, fill) for a in axes if isinstance(extent[a], Expr))
        return ExtentFlow(view.out(extent).outputs, masks=masks)
    rule.__doc__ = f"Any axis; the normalised one{_filled(fill)}."
    return rule


def layer_norm(view: ExtentView) -> ExtentFlow:
    """Any axis; over a symbolic one it runs as the ops it is made of (passes/symbolic.py `decompose_norm`),
    unless its Mean or InvStdDev output is read."""
    extent = view.extent(0)
    axis = int(view.attr("axis")) % max(len(extent), 1)
    outputs = [o for o in view.node.outputs[1:] if o]
    if any(isinstance(d, Expr) for d in extent[axis:]) and any(
            o in view.graph.outputs or view.graph.consumers(o) for o in outputs):
        return view.refuse("it normalises over a symbolic axis, and its Mean or InvStdDev output is read")
    stats = tuple(1 if a >= axis else d for a, d in enumerate(extent))
    return view.out(extent, *(stats,) * len(outputs))


def instance_norm(view: ExtentView) -> ExtentFlow:
    """Any axis but the channels; over symbolic spatial axes it runs as the ops it is made of
    (passes/symbolic.py `decompose_norm`)."""
    extent = view.extent(0)
    if len(extent) > 1 and isinstance(extent[1], Expr):
        return view.refuse("its channel axis is symbolic")
    return view.out(extent)


def reduce(view: ExtentView) -> ExtentFlow:
    """Reductions: the reduced axes go (or become 1); Sum/Max/Min over a symbolic axis fill first."""
    extent = view.extent(0)
    listed = view.node.attrs.get("axes")
    if listed is None and len(view.node.inputs) > 1 and view.node.inputs[1]:
        listed = view.ints(1)
        if listed is None:
            return view.refuse("its axes are computed at run time")
    axes = {int(a) % max(len(extent), 1) for a in (listed or [])}
    if not axes and not int(view.attr("noop_with_empty_axes") or 0):
        axes = set(range(len(extent)))
    fills = {"ReduceSum": 0.0, "ReduceMean": 0.0, "ReduceMax": NEG_INF, "ReduceMin": float("inf"),
             "ReduceSumSquare": 0.0, "ReduceL1": 0.0, "ReduceL2": 0.0, "ReduceLogSumExp": NEG_INF, "ReduceLogSum": 0.0}
    masks = []
    for a in sorted(axes):
        if isinstance(extent[a], Expr):
            if view.node.op_type not in fills:
                return view.refuse(f"{view.node.op_type} over a symbolic axis (its count is decided by the run)")
            masks.append((0, a, fills[view.node.op_type]))
    keep = int(view.attr("keepdims"))
    dims = tuple(1 if a in axes else d for a, d in enumerate(extent) if keep or a not in axes)
    return ExtentFlow(view.out(dims).outputs, masks=tuple(masks))


def matmul(view: ExtentView) -> ExtentFlow:
    """[..., M, K] x [..., K, N]: M and N may be symbolic; a symbolic K is filled with 0 on both sides."""
    a, b = view.extent(0), view.extent(1)
    if len(a) < 2 or len(b) < 2:
        return view.refuse("a symbolic dim in a matrix-vector product")
    if a[-1] != b[-2]:
        return view.refuse(f"its contracted dims are {a[-1]} and {b[-2]}")
    batch = _broadcast([a[:-2], b[:-2]]) if len(a) > 2 or len(b) > 2 else ()
    if isinstance(batch, str):
        return view.refuse(batch)
    masks = ((0, len(a) - 1, 0.0), (1, len(b) - 2, 0.0)) if isinstance(a[-1], Expr) else ()
    return ExtentFlow(view.out((*tuple(batch), a[-2], b[-1])).outputs, masks=masks)


def gemm(view: ExtentView) -> ExtentFlow:
    """M and N may be symbolic; a symbolic K is filled with 0 on both sides."""
    a, b = view.extent(0), view.extent(1)
    trans_a, trans_b = int(view.attr("transA") or 0), int(view.attr("transB") or 0)
    m, k = (a[1], a[0]) if trans_a else (a[0], a[1])
    k2, n = (b[1], b[0]) if trans_b else (b[0], b[1])
    if k != k2:
        return view.refuse(f"its contracted dims are {k} and {k2}")
    masks = ((0, 1 - trans_a, 0.0), (1, trans_b, 0.0)) if isinstance(k, Expr) else ()
    return ExtentFlow(view.out((m, n)).outputs, masks=masks)


def transpose(view: ExtentView) -> ExtentFlow:
    """Any axis: the dims move with the permutation."""
    extent = view.extent(0)
    perm = list(view.node.attrs.get("perm", list(reversed(range(len(extent))))))
    return view.out(tuple(extent[p] for p in perm))


def _groups(extent: Extent) -> list[Dim] | None:
    """The dims as alternating static products and symbolic dims (units dropped): [static, sym, static, ...]."""
    groups: list[Dim] = [1]
    for d in extent:
        if isinstance(d, Expr):
            groups += [d, 1]
        else:
            groups[-1] = groups[-1] * d  # type: ignore[operator]
    return groups


def _as_view(view: ExtentView, target: Extent) -> ExtentFlow:
    """`target` as the output's dims, where the largest layout of the input read as the largest of the output
    keeps every meaningful element in place: the same symbolic dims in the same order, with the same
    static product between them."""
    if _groups(view.extent(0)) != _groups(target):
        return view.refuse(f"it reshapes {show(view.extent(0))} to {show(target)}, which moves elements across a "
                           "symbolic axis")
    return view.out(target)


def reshape(view: ExtentView) -> ExtentFlow:
    """Target from symbolic values or constants; each symbolic dim keeps its place between the static ones."""
    extent = view.extent(0)
    given = view.values(1)
    if given is None:
        return view.refuse("its target shape is computed at run time")
    target: list[Dim | None] = []
    for i, d in enumerate(given):
        if d == 0 and not int(view.attr("allowzero") or 0):
            target.append(extent[i])
        elif d == -1:
            target.append(None)
        else:
            target.append(d)
    if None in target:
        known = [d for d in target if d is not None]
        exprs = [d for d in extent if isinstance(d, Expr)]
        for d in known:
            if isinstance(d, Expr):
                if d not in exprs:
                    return view.refuse(f"it reshapes {show(extent)} to {list(map(str, given))}")
                exprs.remove(d)
        statics = math.prod(d for d in extent if isinstance(d, int))
        other = math.prod(d for d in known if isinstance(d, int))
        if other == 0 or statics % other:
            return view.refuse(f"it reshapes {show(extent)} to {list(map(str, given))}")
        target[target.index(None)] = mul(statics // other, *exprs)
    return _as_view(view, tuple(d for d in target if d is not None))


def flatten(view: ExtentView) -> ExtentFlow:
    """As Reshape to [outer, inner]."""
    extent = view.extent(0)
    axis = int(view.attr("axis")) % (len(extent) + 1)
    return _as_view(view, (mul(*extent[:axis]), mul(*extent[axis:])))


def squeeze(view: ExtentView) -> ExtentFlow:
    """Any axis: unit axes go or come; symbolic values pass through."""
    extent = view.extent(0)
    listed = view.node.attrs.get("axes")
    if listed is None:
        listed = view.ints(1) if len(view.node.inputs) > 1 and view.node.inputs[1] else None
    if view.node.op_type == "Squeeze":
        axes = {int(a) % len(extent) for a in listed} if listed else {a for a, d in enumerate(extent) if d == 1}
        dims = tuple(d for a, d in enumerate(extent) if a not in axes)
    else:
        if listed is None:
            return view.refuse("its axes are computed at run time")
        total = len(extent) + len(listed)
        added = {int(a) % total for a in listed}
        rest = iter(extent)
        dims = tuple(1 if a in added else next(rest) for a in range(total))
    values = view.values(0) if view.node.inputs[0] in view.graph.shape_values else None
    return ExtentFlow(view.out(dims).outputs, (values,) if values else ())


def identity(view: ExtentView) -> ExtentFlow:
    """The dims and the symbolic values pass through (Identity, Dropout, a Cast to an integer type)."""
    to = view.node.attrs.get("to")
    to_integer = to is None or np.issubdtype(helper.tensor_dtype_to_np_dtype(int(to)), np.integer)
    values = view.values(0) if view.node.inputs[0] in view.graph.shape_values and to_integer else None
    flow = view.out(view.extent(0), *(None,) * (len(view.node.outputs) - 1))
    return ExtentFlow(flow.outputs, (values,) if values else ())


def shape_of(view: ExtentView) -> ExtentFlow:
    """Shape's values are its input's dims (from opset 15, sliced by start and end); Size's their product."""
    extent = view.extent(0)
    if view.node.op_type == "Size":
        return ExtentFlow(((),), ((mul(*extent),),))
    start, end = view.node.attrs.get("start"), view.node.attrs.get("end")
    values = tuple(extent[slice(start, end)])
    return ExtentFlow(((len(values),),), (values,))


def gather(view: ExtentView) -> ExtentFlow:
    """Picking dims from symbolic values (constant indices), or rows along a static axis of a tensor."""
    data, indices = view.extent(0), view.extent(1)
    axis = int(view.attr("axis") or 0) % max(len(data), 1)
    if view.node.inputs[0] in view.graph.shape_values:
        values, picked = view.values(0), view.ints(1)
        if values is None or picked is None:
            return view.refuse("it picks dims at indices computed at run time")
        found = tuple(values[i] for i in picked)
        return ExtentFlow((indices,), (found,))
    dims = view.out((*data[:axis], *indices, *data[axis + 1:])).outputs
    if isinstance(data[axis], Expr):  # constant indices, each inside every run's dim (a negative one from its end)
        picked = view.ints(1)
        if picked is None:
            return view.refuse("it gathers along a symbolic axis at indices computed at run time")
        low = smallest(data[axis], view.graph.symbols)
        beyond = [k for k in picked if k >= low or -k > low]
        if beyond and not view.node.guards:  # (in a guarded branch, such as a loop's later iterations, it may run)
            return view.refuse(f"it gathers index {beyond[0]} along a symbolic axis as small as {low}")
        if any(k < 0 for k in picked):
            return ExtentFlow(dims, run_time_inputs=((1, tuple(add(data[axis], k) if k < 0 else k for k in picked)),))
        return ExtentFlow(dims)
    masks = tuple((1, a, 0.0) for a, d in enumerate(indices) if isinstance(d, Expr))  # no index out of bounds
    return ExtentFlow(dims, index_masks=masks)


def concat(view: ExtentView) -> ExtentFlow:
    """Joins along any axis (the others must agree): along a symbolic one, each part where the run's last ends."""
    names = [n for n in view.node.inputs if n]
    if any(n in view.graph.shape_values for n in names):
        parts = [view.values(i) for i, n in enumerate(view.node.inputs) if n]
        if any(p is None for p in parts):
            return view.refuse("it joins dims with values computed at run time")
        joined = tuple(d for p in parts for d in p)  # type: ignore[union-attr]
        return ExtentFlow(((len(joined),),), (joined,))
    extents = [view.extent(i) for i, n in enumerate(view.node.inputs) if n]
    axis = int(view.attr("axis")) % len(extents[0])
    others = {tuple(d for a, d in enumerate(e) if a != axis) for e in extents}
    if len(others) > 1:
        return view.refuse(f"its inputs' dims differ: {', '.join(show(e) for e in extents)}")
    first = list(extents[0])
    first[axis] = add(*(e[axis] for e in extents))  # along a symbolic axis each part starts where the run's ends
    return view.out(tuple(first))


def slice_(view: ExtentView) -> ExtentFlow:
    """Constant bounds; a symbolic axis from a start >= 0 (to the end, to an end from the end, or to a fixed end), or
    from a start counted from its end (to the end or to an end counted from the end: a static length)."""
    starts, ends, listed, steps = (view.ints(i) for i in range(1, 5))
    if view.node.inputs[0] in view.graph.shape_values:
        values = view.values(0)
        if values is None or starts is None or ends is None:
            return view.refuse("it slices dims at bounds computed at run time")
        picked = values[slice(starts[0], ends[0], steps[0] if steps else 1)]
        return ExtentFlow(((len(picked),),), (picked,))
    extent = view.extent(0)
    run_ends: dict[int, Expr] = {}  # slice k ends at a symbolic dim: x[:, :y.shape[1]] (a position table)
    if "starts" in view.node.attrs:  # before opset 10: attributes
        starts, ends = list(view.node.attrs["starts"]), list(view.node.attrs["ends"])
        listed, steps = view.node.attrs.get("axes"), None
    elif ends is None and starts is not None and view.values(2) is not None:
        found = view.values(2)
        assert found is not None
        run_ends = {k: e for k, e in enumerate(found) if isinstance(e, Expr)}
        ends = [largest(e, view.graph.symbols) if isinstance(e, Expr) else e for e in found]
    if starts is None or ends is None:
        return view.refuse("its bounds are computed at run time")
    axes = [a % len(extent) for a in (listed or range(len(starts)))]
    dims = list(extent)
    for k, a in enumerate(axes):
        start, end, step = starts[k], ends[k], steps[k] if steps else 1
        size = dims[a]
        if k in run_ends:
            if not isinstance(size, int) or start != 0 or step != 1 or end > size:
                return view.refuse(f"it slices {show(extent)} on axis {a} to {run_ends[k]} (only from 0, in steps of "
                                   "1, of a static dim at least as long)")
            dims[a] = run_ends[k]
        elif isinstance(size, int):
            dims[a] = len(range(*slice(start, end, step).indices(size)))
        elif start == 0 and end >= 2**31 - 1 and step == 1:
            continue  # all of it
        elif step == 1 and start < 0 and (end >= 2**31 - 1 or start < end < 0):
            # the last -start elements, or those between two positions counted from the end: a static length that
            # the kernel reads from where the run's dim ends, when every run has that many
            length = (0 if end >= 2**31 - 1 else end) - start
            low = smallest(size, view.graph.symbols)
            if low < -start:
                return view.refuse(f"it slices from {start} along a symbolic axis as small as {low} (fewer elements "
                                   "than the slice's start reaches back)")
            dims[a] = length
        elif step != 1 or start < 0:
            return view.refuse(f"it slices a symbolic axis from {start} to {end} (step {step}): its length depends "
                               "on the run's dim")
        else:  # from a fixed start to the end, to an end counted from the end, or to a fixed end
            stop = size if end >= 2**31 - 1 else add(size, end) if end < 0 else minimum(size, end)
            dims[a] = add(stop, -start)
    return view.out(tuple(dims))


def pad(view: ExtentView) -> ExtentFlow:
    """Constant padding (along a symbolic axis the part past the run's dim is filled with the pad value first), and
    reflect or edge padding of a symbolic axis (its end reflects from where the run's dim ends: emitters/pad.py)."""
    extent = view.extent(0)
    rank = len(extent)
    pads = view.node.attrs.get("pads") or view.ints(1)
    declared = view.values(1) if "pads" not in view.node.attrs else None
    if pads is None and declared is not None and is_static(extent) and len(declared) == 2 * rank \
            and not (len(view.node.inputs) > 3 and view.node.inputs[3]):
        # pads whose values each run gives (--input-values): any mode, read by the kernel (emitters/pad.py)
        return view.out(tuple(add(d, b, e) for d, b, e in zip(extent, declared[:rank], declared[rank:], strict=True)))
    if pads is None:
        return view.refuse("its pads are computed at run time")
    axes = view.ints(3) if len(view.node.inputs) > 3 and view.node.inputs[3] else None
    axes = [a % rank for a in axes] if axes is not None else list(range(rank))
    mode = str(view.attr("mode") or "constant")
    value = view.graph.constants.get(view.node.inputs[2]) if len(view.node.inputs) > 2 and view.node.inputs[2] \
        else np.asarray(view.node.attrs.get("value", 0.0))
    if value is None:
        return view.refuse("its value is computed at run time")
    dims, masks = list(extent), []
    for k, a in enumerate(axes):
        begin, end = int(pads[k]), int(pads[len(axes) + k])
        dims[a] = add(extent[a], begin + end)
        if isinstance(extent[a], Expr) and (begin or end):
            if mode not in ("constant", "reflect", "edge") or begin < 0 or end < 0:
                return view.refuse(f"{mode} padding (or cropping) of a symbolic axis")
            low = smallest(extent[a], view.graph.symbols)
            if mode != "constant" and low <= max(begin, end):
                return view.refuse(f"{mode} padding of {max(begin, end)} along a symbolic axis as small as {low} "
                                   "(it would reflect more than the run holds)")
            if end and mode == "constant":
                masks.append((0, a, float(np.asarray(value).reshape(-1)[0]) if np.asarray(value).size else 0.0))
    return ExtentFlow(view.out(tuple(dims)).outputs, masks=tuple(masks))


def split(view: ExtentView) -> ExtentFlow:
    """Splits along a static axis (the other dims, symbolic or not, go to every part)."""
    extent = view.extent(0)
    axis = int(view.attr("axis") or 0) % len(extent)
    if isinstance(extent[axis], Expr):
        return view.refuse("it splits a symbolic axis")
    given = view.node.attrs.get("split") or (view.ints(1) if len(view.node.inputs) > 1 and view.node.inputs[1]
                                               else None)
    count = len(view.node.outputs)
    size = extent[axis]
    assert isinstance(size, int)
    parts = list(given) if given else [-(-size // count)] * (count - 1) + [size - -(-size // count) * (count - 1)]
    return view.out(*((*extent[:axis], part, *extent[axis + 1:]) for part in parts))


def from_values(view: ExtentView) -> ExtentFlow:
    """ConstantOfShape and Expand: the output's dims are (broadcast with) the symbolic values of a shape input."""
    index = 0 if view.node.op_type == "ConstantOfShape" else 1
    target = view.values(index)
    if target is None:
        return view.refuse("its shape is computed at run time")
    if view.node.op_type == "ConstantOfShape":
        return view.out(target)
    found = _broadcast([view.extent(0), target])
    return view.refuse(found) if isinstance(found, str) else view.out(found)


def tile(view: ExtentView) -> ExtentFlow:
    """Tile(x, repeats): each dim times its repeat; x may be symbolic where its repeat is 1, a repeat symbolic (a
    value of --input-values) where x's dim is static. Every element of the largest layout is x's at its index
    modulo x's dim, so the kernel's copy at the largest holds each run's tiling in its corner."""
    extent, repeats = view.extent(0), view.values(1)
    if repeats is None:
        return view.refuse("its repeats are computed at run time")
    if any(isinstance(d, Expr) and r != 1 for d, r in zip(extent, repeats, strict=True)):
        return view.refuse("a symbolic axis tiled more than once (its copies would start where each run's ends)")
    return view.out(tuple(mul(d, r) for d, r in zip(extent, repeats, strict=True)))


RESIZE_COORDINATES = ("half_pixel", "pytorch_half_pixel", "asymmetric", "tf_half_pixel_for_nn")


def resize(view: ExtentView) -> ExtentFlow:
    """Upsampling by whole factors k, nearest, linear or cubic: output i's source coordinate is a function of i and
    k alone in these coordinate modes, never of the dim (align_corners' is). Only where a source index is clamped
    to the input's last element does the run's dim matter; the part past it is filled with that element first
    (EDGE), so the kernel's reads past the run's edge get what clamping would. Nearest, asymmetric, floor
    (out[i] = x[i // k]) never reads past it."""
    extent = view.extent(0)
    mode = (view.attr("mode") or "nearest", view.attr("coordinate_transformation_mode") or "half_pixel",
            view.attr("nearest_mode") or "round_prefer_floor")
    if mode[1] not in RESIZE_COORDINATES:
        return view.refuse(f"coordinate_transformation_mode {mode[1]} over a symbolic axis (its source coordinates "
                           "depend on the run's size)")
    scales = view.graph.constants.get(view.node.inputs[2]) if len(view.node.inputs) > 2 and view.node.inputs[2] \
        else None
    factors: list[int] = []
    if scales is not None and scales.size:
        if not np.all(scales == np.round(scales)) or np.any(scales < 1):
            return view.refuse(f"scales {scales.tolist()} that are not whole factors")
        factors = [int(v) for v in scales]
    else:
        sizes = view.values(3)
        if sizes is None:
            return view.refuse("its sizes are computed at run time")
        for d, size in zip(extent, sizes, strict=True):
            factor = next((k for k in range(1, 65) if mul(d, k) == size), None)
            if factor is None:
                return view.refuse(f"size {size} that is not a whole multiple of {d}")
            factors.append(factor)
    clamps = mode != ("nearest", "asymmetric", "floor")
    masks = tuple((0, a, EDGE) for a, (d, k) in enumerate(zip(extent, factors, strict=True))
                  if clamps and k > 1 and isinstance(d, Expr))
    return ExtentFlow(view.out(tuple(mul(d, k) for d, k in zip(extent, factors, strict=True))).outputs, masks=masks)


def range_(view: ExtentView) -> ExtentFlow:
    """Range(start, limit, delta), limit symbolic: ceil((limit - start) / delta) values, each set by its position."""
    start, limit, delta = view.ints(0), view.values(1), view.ints(2)
    if start is None or limit is None or delta is None or delta[0] < 1:
        return view.refuse("only a symbolic limit, with a constant start and a positive constant step, is followed")
    return view.out((floordiv(add(limit[0], -start[0] + delta[0] - 1), delta[0]),))


def recurrent(view: ExtentView) -> ExtentFlow:
    """LSTM, GRU, RNN: the sequence axis may be symbolic (the recurrence runs for the run's length)."""
    x = view.extent(0)
    layout = int(view.attr("layout") or 0)
    seq, batch = (x[0], x[1]) if layout == 0 else (x[1], x[0])
    if isinstance(batch, Expr) or isinstance(x[2], Expr):
        return view.refuse("only its sequence axis may be symbolic")
    if len(view.node.inputs) > 4 and view.node.inputs[4]:
        return view.refuse("sequence_lens with a symbolic sequence axis")
    recurrence = view.graph.info(view.node.inputs[2]).shape  # R: [directions, gates * hidden, hidden]
    dirs, hidden = recurrence[0], recurrence[2]
    y: Extent = (seq, dirs, batch, hidden) if layout == 0 else (batch, seq, dirs, hidden)
    state: Extent = (dirs, batch, hidden) if layout == 0 else (batch, dirs, hidden)
    outputs = [y, state, state][:len(view.node.outputs)]
    return view.out(*outputs)


__all__ = ["along_axis", "arg", "average_pool", "broadcast", "concat", "conv_transpose", "flatten", "from_values",
           "gather", "gemm", "global_pool", "identity", "layer_norm", "matmul", "pad", "recurrent", "reduce", "reshape",
           "range_", "resize", "same", "shape_of", "slice_", "split", "squeeze", "tile", "transpose", "window"]
