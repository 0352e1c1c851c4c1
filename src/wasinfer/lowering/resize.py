"""The plan of a Resize (opsets 10-19) or Upsample (opset 9), separable like ONNX's reference evaluator.

Interpolation weights depend only on the output position along each axis, so for every
resized axis a small table is built at compile time, in numpy, exactly as the reference
(onnx/reference/ops/op_resize.py) derives them: per output position the source indices
(edge-clamped) and their weights — nearest one tap of weight 1, linear two, cubic four,
antialias as many as the filter spans — plus an extrapolation value for tf_crop_and_resize
outputs whose source lies outside the input (`AxisPass`). A kernel then resizes one axis at
a time, with scratch buffers between passes (`ResizePlan.buffers`), shrinking axes first so
later passes touch less data. Nearest copies move elements bit for bit (`AxisPass.copies`),
so they serve any dtype; an integer nearest upscale is a repeat (`AxisPass.repeat`).

Resize-10 and Upsample have no coordinate or rounding attributes: ONNX Runtime maps them
to `asymmetric` coordinates and picks floor when upsampling, ceil when downsampling; that
is followed here (the reference evaluator only defines Upsample's integer nearest case,
where both agree), as is its formula for Resize-11's tf_half_pixel_for_nn.

The tables need scales (and roi, for tf_crop_and_resize) at compile time. Scales or sizes that
arrive at run time with a declared range (--input-values scales=0.5..4: passes/dynamic.py types the
output at the largest the range allows, each resized dim a symbol the run writes), or a roi that
arrives at run time, take `RunTimeResize` instead: the kernel reads them and computes each output's
source coordinate and taps itself (emitters/resize_run_time.py), one axis at a time, outermost first.
Undeclared run-time scales are declined; undeclared run-time sizes must equal the static output
shape, so with the default keep_aspect_ratio_policy they are read from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wasinfer.ir import Graph, Node
from wasinfer.ir.symbolic import Extent
from wasinfer.lowering.layout import movable_problems
from wasinfer.passes import align
from wasinfer.passes.dynamic import resize_parameters

MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_crop_and_resize", "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")
SCALES_AT_RUN_TIME = ("scales must be a compile-time constant, or a run-time input with its values' range declared "
                      "(--input-values NAME=MIN..MAX): the output's size depends on its values")


# ---------------------------------------------------------------- coefficients (as the reference)

def _nearest_coeffs(ratio: float, mode: str) -> np.ndarray:
    if float(ratio).is_integer():
        return np.array([0.0, 1.0])
    if mode == "round_prefer_floor":
        return np.array([ratio <= 0.5, ratio > 0.5], dtype=np.float64)
    if mode == "round_prefer_ceil":
        return np.array([ratio < 0.5, ratio >= 0.5], dtype=np.float64)
    return np.array([1.0, 0.0]) if mode == "floor" else np.array([0.0, 1.0])


def _linear_coeffs(ratio: float, scale: float, antialias: bool) -> np.ndarray:
    if not antialias:
        return np.array([1 - ratio, ratio])
    scale = min(scale, 1.0)  # antialias only widens the filter when downsampling
    start = int(np.floor(-1 / scale) + 1)
    args = (np.arange(start, 2 - start) - ratio) * scale
    coeffs = np.clip(1 - np.abs(args), 0, 1)
    return coeffs / coeffs.sum()  # type: ignore[no-any-return]


def _cubic_kernel(x: float, a: float) -> float:
    x = abs(x)
    if x <= 1:
        return (a + 2) * x**3 - (a + 3) * x**2 + 1
    if x < 2:
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    return 0.0


def _cubic_coeffs(ratio: float, scale: float, a: float, antialias: bool) -> np.ndarray:
    if not antialias:
        return np.array([_cubic_kernel(ratio + 1, a), _cubic_kernel(ratio, a), _cubic_kernel(1 - ratio, a),
                         _cubic_kernel(2 - ratio, a)])
    scale = min(scale, 1.0)
    start = int(np.floor(-2 / scale) + 1)
    coeffs = np.array([_cubic_kernel(scale * (i - ratio), a) for i in range(start, 2 - start)])
    return coeffs / coeffs.sum()  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Interp:
    """The node's interpolation settings, opset defaults filled in."""

    mode: str
    coordinate: str
    nearest: str  # one of NEAREST_MODES, or "simple" (Resize-10, Upsample)
    cubic_a: float
    exclude_outside: bool
    antialias: bool
    extrapolation: float


def source_coords(interp: Interp, n_in: int, n_out: int, scale: float, roi: tuple[float, float]) -> np.ndarray:
    """x_ori: where each output position samples the input, in input index units."""
    y = np.arange(n_out, dtype=np.float64)
    width = scale * n_in  # the real-valued output length the scale implies
    mode = interp.coordinate
    if mode == "align_corners":
        return np.zeros(n_out) if width == 1 else y * (n_in - 1) / (width - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_half_pixel_for_nn":  # Resize-11 and -12 only; as ONNX Runtime computes it
        return (y + 0.5) / scale  # type: ignore[no-any-return]
    if mode == "tf_crop_and_resize":
        start, end = roi
        x = (np.full(n_out, (end - start) * (n_in - 1) / 2) if width == 1
             else y * (end - start) * (n_in - 1) / (width - 1))
        return x + start * (n_in - 1)  # type: ignore[no-any-return]
    if mode == "pytorch_half_pixel":
        return np.full(n_out, -0.5) if width == 1 else (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        return offset + (y + 0.5) / scale - 0.5  # type: ignore[no-any-return]
    return (y + 0.5) / scale - 0.5  # type: ignore[no-any-return]


def axis_matrix(interp: Interp, n_in: int, n_out: int, scale: float,
                roi: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Dense weights [n_out, n_in] and the mask of outputs that take the extrapolation value."""
    x_ori = source_coords(interp, n_in, n_out, scale, roi)
    matrix = np.zeros((n_out, n_in))
    outside = np.zeros(n_out, dtype=bool)
    if interp.coordinate == "tf_crop_and_resize":
        outside = (x_ori < 0) | (x_ori > n_in - 1)
    if interp.nearest == "simple" and interp.mode == "nearest":
        pick = np.ceil(x_ori) if scale < 1 else np.trunc(x_ori)
        matrix[np.arange(n_out), np.clip(pick.astype(np.int64), 0, n_in - 1)] = 1.0
        return matrix, outside
    for o, x in enumerate(x_ori):
        if outside[o]:
            continue
        base = math.floor(x)
        ratio = 1.0 if x == base else x - base  # ratio in (0, 1]: the left pixel is preferred
        if interp.mode == "nearest":
            coeffs = _nearest_coeffs(ratio, interp.nearest)
        elif interp.mode == "linear":
            coeffs = _linear_coeffs(ratio, scale, interp.antialias)
        else:
            coeffs = _cubic_coeffs(ratio, scale, interp.cubic_a, interp.antialias)
        n = len(coeffs)
        # the n indices nearest x, ties to the smaller one (the reference's _get_neighbor_idxes)
        pad = math.ceil(n / 2)
        padded = x + pad
        p = math.floor(padded)
        frac = padded - p
        if n % 2 == 0:
            start = p - n // 2 if frac == 0 else p - n // 2 + 1
        else:
            start = p - (n - 1) // 2 + (0 if frac <= 0.5 else 1)
        index = np.arange(start, start + n) - pad
        if interp.exclude_outside:
            coeffs = np.where((index < 0) | (index >= n_in), 0.0, coeffs)
            total = coeffs.sum()
            coeffs = coeffs / (total if total != 0 else 1.0)
        np.add.at(matrix[o], np.clip(index, 0, n_in - 1), coeffs)
    return matrix, outside


@dataclass(frozen=True)
class AxisPass:
    """Resize one axis: out[o] = bias[o] + sum_t weight[o, t] * in[index[o, t]]."""

    axis: int
    n_in: int
    n_out: int
    index: np.ndarray  # [n_out, taps] int64
    weight: np.ndarray  # [n_out, taps] float32
    bias: np.ndarray | None  # [n_out] float32: the extrapolation value, or None when never used

    @property
    def copies(self) -> bool:
        """Nearest: every output is one input element, moved bit for bit."""
        return self.index.shape[1] == 1 and self.bias is None and bool(np.all(self.weight == 1))

    @property
    def repeat(self) -> int | None:
        """k when the pass repeats each element k times (a nearest integer upscale)."""
        if not self.copies or self.n_out % self.n_in:
            return None
        k = self.n_out // self.n_in
        return k if np.array_equal(self.index[:, 0], np.arange(self.n_out) // k) else None


def sparse_pass(axis: int, matrix: np.ndarray, outside: np.ndarray, extrapolation: float) -> AxisPass | None:
    """The table form of a dense axis matrix; None when the axis is left as it is."""
    n_out, n_in = matrix.shape
    if n_out == n_in and not outside.any() and np.array_equal(matrix, np.eye(n_in)):
        return None
    taps = max(1, int((matrix != 0).sum(axis=1).max()))
    index = np.zeros((n_out, taps), dtype=np.int64)
    weight = np.zeros((n_out, taps), dtype=np.float32)
    for o in range(n_out):
        nonzero = np.flatnonzero(matrix[o])
        index[o, :len(nonzero)] = nonzero
        index[o, len(nonzero):] = nonzero[0] if len(nonzero) else 0
        weight[o, :len(nonzero)] = matrix[o, nonzero]
    bias = np.where(outside, extrapolation, 0.0).astype(np.float32) if outside.any() else None
    return AxisPass(axis, n_in, n_out, index, weight, bias)


# ---------------------------------------------------------------- reading the node

@dataclass(frozen=True)
class ResizePlan:
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    passes: tuple[AxisPass, ...]
    itemsize: int

    def shapes(self) -> list[tuple[int, ...]]:
        """The tensor shape before each pass, then the output's."""
        shapes = [self.in_shape]
        for p in self.passes:
            shape = list(shapes[-1])
            shape[p.axis] = p.n_out
            shapes.append(tuple(shape))
        return shapes

    def buffers(self) -> tuple[int, int]:
        """Bytes of the two scratch buffers that intermediate results alternate between."""
        sizes = [math.prod(s) * self.itemsize for s in self.shapes()[1:-1]]
        even = max(sizes[0::2], default=0)
        odd = max(sizes[1::2], default=0)
        return align(even), align(odd)


def _const(graph: Graph, node: Node, position: int) -> np.ndarray | None:
    """A present, compile-time-known optional input; an empty array when absent."""
    if len(node.inputs) <= position or not node.inputs[position]:
        return np.zeros(0)
    return graph.constants.get(node.inputs[position])


def _interp(node: Node, graph: Graph) -> Interp:
    legacy = node.op_type == "Upsample" or graph.opset < 11
    return Interp(
        mode=str(node.attr("mode", "nearest")),
        coordinate="asymmetric" if legacy else str(node.attr("coordinate_transformation_mode", "half_pixel")),
        nearest="simple" if legacy else str(node.attr("nearest_mode", "round_prefer_floor")),
        cubic_a=float(node.attr("cubic_coeff_a", -0.75)),
        exclude_outside=bool(node.attr("exclude_outside", 0)),
        antialias=bool(node.attr("antialias", 0)),
        extrapolation=float(node.attr("extrapolation_value", 0.0)),
    )


def _mode_problems(node: Node, graph: Graph, interp: Interp) -> list[str]:
    """What neither path supports: modes, dtypes, the policy."""
    problems = []
    if interp.mode not in MODES:
        problems.append(f"mode={interp.mode!r} is not one of {', '.join(MODES)}")
    if interp.coordinate not in COORDINATE_MODES:
        problems.append(f"coordinate_transformation_mode={interp.coordinate!r} is not supported")
    if interp.nearest not in (*NEAREST_MODES, "simple"):
        problems.append(f"nearest_mode={interp.nearest!r} is not supported")
    if interp.antialias and interp.mode == "nearest":
        problems.append("antialias applies to linear and cubic modes only")
    if interp.mode == "nearest":
        problems += movable_problems(node, graph)[:1]
    else:
        problems += [f"tensor {n!r} has dtype {graph.info(n).dtype}; {interp.mode} mode supports float32 only"
                     for n in (node.inputs[0], node.outputs[0]) if graph.info(n).dtype != np.float32]
    policy = str(node.attr("keep_aspect_ratio_policy", "stretch"))
    if policy not in ASPECT_POLICIES:
        problems.append(f"keep_aspect_ratio_policy={policy!r} is not supported")
    return problems


def plan_problems(node: Node, graph: Graph) -> tuple[list[str], ResizePlan | None]:
    x_info = graph.info(node.inputs[0])
    rank = len(x_info.shape)
    if rank == 0:
        return ["a scalar input has no axes to resize"], None
    if takes_run_time_path(node, graph):
        return run_time_problems(node, graph), None
    interp = _interp(node, graph)
    problems = _mode_problems(node, graph, interp)
    policy = str(node.attr("keep_aspect_ratio_policy", "stretch"))
    axes = [int(a) % rank for a in node.attr("axes")] if node.attr("axes") is not None else list(range(rank))
    if len(set(axes)) != len(axes):
        problems.append(f"axes {node.attr('axes')} repeat an axis")

    roi: np.ndarray = np.zeros(0)
    scales: np.ndarray | None
    sizes: np.ndarray | None
    if node.op_type == "Upsample" or graph.opset < 11:
        scales, sizes = _const(graph, node, 1), np.zeros(0)
        if scales is None or scales.size == 0:
            if node.attr("scales") is not None:  # Upsample-7 kept them in an attribute
                scales = np.asarray(node.attr("scales"), np.float32)
            else:
                problems.append(SCALES_AT_RUN_TIME)
    else:
        roi_value, scales, sizes = _const(graph, node, 1), _const(graph, node, 2), _const(graph, node, 3)
        if interp.coordinate == "tf_crop_and_resize":
            if roi_value is None or roi_value.size != 2 * len(axes):
                problems.append(f"tf_crop_and_resize needs a compile-time constant roi of {2 * len(axes)} values")
            else:
                roi = roi_value.astype(np.float64)
        if scales is not None and scales.size == 0 and sizes is None and policy == "stretch":
            # sizes known only at run time must equal the static output shape: take them from it
            sizes = np.array([graph.info(node.outputs[0]).shape[a] for a in axes], np.int64)
        if scales is None:
            problems.append(SCALES_AT_RUN_TIME)
        elif sizes is None:
            problems.append(f"sizes must be a compile-time constant with keep_aspect_ratio_policy={policy!r}")
        elif (scales.size == 0) == (sizes.size == 0):
            problems.append("exactly one of scales and sizes must be given")
    if problems or scales is None or sizes is None:
        return problems, None
    given = scales if scales.size else sizes
    if given.size != len(axes):
        return [f"{'scales' if scales.size else 'sizes'} has {given.size} values for {len(axes)} axes"], None

    in_shape = x_info.shape
    scale = [1.0] * rank
    out_shape = list(in_shape)
    if scales.size:
        for i, a in enumerate(axes):
            scale[a] = float(scales[i])
        if any(s <= 0 for s in scale):
            return [f"scales {scales.tolist()} must be positive"], None
        out_shape = [int(s * n) for s, n in zip(scale, in_shape, strict=True)]
    else:
        for i, a in enumerate(axes):
            out_shape[a] = int(sizes[i])
        if any(n == 0 for n in in_shape):
            return ["resizing an empty tensor is not supported"], None
        scale = [o / n for o, n in zip(out_shape, in_shape, strict=True)]
        if policy != "stretch":
            pick = min if policy == "not_larger" else max
            common = pick(scale[a] for a in axes)
            scale = [common if a in axes else 1.0 for a in range(rank)]
            out_shape = [int(common * in_shape[a] + 0.5) if a in axes else in_shape[a] for a in range(rank)]
    if tuple(out_shape) != graph.info(node.outputs[0]).shape:
        return [f"output shape {graph.info(node.outputs[0]).shape} differs from the computed {tuple(out_shape)}"], None

    passes = []
    for position, a in enumerate(axes):
        window = (float(roi[position]), float(roi[position + len(axes)])) if roi.size else (0.0, 1.0)
        if math.isclose(scale[a], 1.0) and out_shape[a] == in_shape[a] and window == (0.0, 1.0):
            continue  # the reference skips identity axes
        if out_shape[a] == 0:
            continue
        matrix, outside = axis_matrix(interp, in_shape[a], out_shape[a], scale[a], window)
        found = sparse_pass(a, matrix, outside, interp.extrapolation)
        if found is not None:
            passes.append(found)
    # shrink first, so later passes move less data; among equals the innermost (scalar) pass goes first
    passes.sort(key=lambda p: (p.n_out / p.n_in, -p.axis))
    return [], ResizePlan(tuple(in_shape), tuple(out_shape), tuple(passes), x_info.dtype.itemsize)


def resize_plan(node: Node, graph: Graph) -> ResizePlan:
    problems, plan = plan_problems(node, graph)
    assert plan is not None, problems
    return plan


def tap_table(p: AxisPass, row_bytes: int) -> np.ndarray:
    """The pass's table as a kernel reads it, one int32 row per output position: each tap's source
    row as a byte offset (`row_bytes` per index), interleaved with its float32 weight (bits) unless
    the pass only copies, then the extrapolation value when the pass has one."""
    taps = p.index.shape[1]
    offsets = (p.index * row_bytes).astype(np.int32)
    if p.copies:
        table = offsets
    else:
        columns = [offsets.view(np.float32), p.weight]
        table = np.stack(columns, axis=2).reshape(p.n_out, 2 * taps).view(np.int32)
        if p.bias is not None:
            table = np.concatenate([table, p.bias.view(np.int32)[:, None]], axis=1)
    return np.ascontiguousarray(table, dtype=np.int32)


def resize_scratch(node: Node, graph: Graph) -> int:
    """The two buffers between axis passes (none with a single pass)."""
    if graph.info(node.inputs[0]).shape and takes_run_time_path(node, graph):
        return sum(run_time_resize(node, graph).buffers()) if not run_time_problems(node, graph) else 0
    plan = plan_problems(node, graph)[1]
    return sum(plan.buffers()) if plan is not None else 0


# ---------------------------------------------------------------- parameters read at run time

@dataclass(frozen=True)
class Parameter:
    """Where a kernel finds a parameter's values: a run-time input (`name`, read with `dtype`), or `values` known
    while compiling."""

    name: str | None
    dtype: np.dtype | None
    values: tuple[float, ...] = ()


@dataclass(frozen=True)
class RunTimeResize:
    """A Resize whose roi, scales or sizes some run gives: each resized axis's scale and output dim are computed by
    the kernel, then its source coordinates and taps, per output position."""

    interp: Interp
    axes: tuple[int, ...]  # as the node lists them: the order of the scales, sizes and roi values
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]  # the largest (what memory is planned for)
    out_extent: Extent  # the output's dims: a symbol the kernel writes on each axis a run decides
    itemsize: int
    scales: Parameter | None  # one of scales and sizes
    sizes: Parameter | None
    roi: Parameter | None  # tf_crop_and_resize only
    policy: str

    def order(self) -> list[int]:
        """The axes in the order the passes resize them: outermost first, so every pass moves whole rows of the
        axes not resized yet, whose dims are static."""
        return sorted(self.axes)

    def layouts(self) -> list[tuple[int, ...]]:
        """The (largest) shape of the tensor before each pass, then the output's."""
        shapes = [self.in_shape]
        for axis in self.order():
            shape = list(shapes[-1])
            shape[axis] = self.out_shape[axis]
            shapes.append(tuple(shape))
        return shapes

    def buffers(self) -> tuple[int, int]:
        """Bytes of the two scratch buffers that intermediate results alternate between."""
        sizes = [math.prod(s) * self.itemsize for s in self.layouts()[1:-1]]
        return align(max(sizes[0::2], default=0)), align(max(sizes[1::2], default=0))


def takes_run_time_path(node: Node, graph: Graph) -> bool:
    """Scales or sizes declared run-time inputs, or a run-time roi for tf_crop_and_resize."""
    if resize_parameters(graph, node) is not None:
        return True
    legacy = node.op_type == "Upsample" or graph.opset < 11
    roi = node.inputs[1] if not legacy and len(node.inputs) > 1 else ""
    return (bool(roi) and roi not in graph.constants and _interp(node, graph).coordinate == "tf_crop_and_resize"
            and roi in graph.tensors)


def _parameter(graph: Graph, name: str) -> Parameter:
    if name in graph.constants:
        return Parameter(None, None, tuple(float(v) for v in np.asarray(graph.constants[name]).reshape(-1)))
    return Parameter(name, graph.info(name).dtype)


def run_time_problems(node: Node, graph: Graph) -> list[str]:
    """Why `run_time_resize` cannot be built (empty when it can)."""
    x_info = graph.info(node.inputs[0])
    interp = _interp(node, graph)
    problems = _mode_problems(node, graph, interp)
    if node.inputs[0] in graph.extents:
        problems.append("run-time scales, sizes or roi need a static input")
    if 0 in x_info.shape:
        problems.append("resizing an empty tensor is not supported")
    if interp.coordinate == "tf_crop_and_resize" and x_info.dtype != np.float32:
        problems.append(f"tf_crop_and_resize with a run-time roi, scales or sizes supports float32 only, "
                        f"not {x_info.dtype}")
    if problems:
        return problems
    try:
        run_time_resize(node, graph)
    except ValueError as exc:
        return [str(exc)]
    return []


def run_time_resize(node: Node, graph: Graph) -> RunTimeResize:
    """The node's run-time form; ValueError naming what does not fit."""
    x_info = graph.info(node.inputs[0])
    rank = len(x_info.shape)
    interp = _interp(node, graph)
    axes = tuple(int(a) % rank for a in node.attr("axes")) if node.attr("axes") is not None else tuple(range(rank))
    if len(set(axes)) != len(axes):
        raise ValueError(f"axes {node.attr('axes')} repeat an axis")
    legacy = node.op_type == "Upsample" or graph.opset < 11
    given = {kind: node.inputs[i] for kind, i in ((("scales", 1),) if legacy else
                                                   (("roi", 1), ("scales", 2), ("sizes", 3)))
             if len(node.inputs) > i and node.inputs[i]}
    out = graph.info(node.outputs[0])
    declared = resize_parameters(graph, node)
    scales = _parameter(graph, given["scales"]) if "scales" in given else None
    sizes = _parameter(graph, given["sizes"]) if "sizes" in given else None
    if scales is not None and scales.name is None and not scales.values:
        scales = None  # an empty constant: sizes are given instead
    if declared is None and sizes is not None and sizes.name is not None:  # undeclared: the output's static dims
        if str(node.attr("keep_aspect_ratio_policy", "stretch")) != "stretch":
            raise ValueError("sizes must be a compile-time constant, or a run-time input with its values' range "
                             "declared (--input-values NAME=MIN..MAX), with keep_aspect_ratio_policy="
                             f"{node.attr('keep_aspect_ratio_policy')!r}")
        sizes = Parameter(None, None, tuple(float(out.shape[a]) for a in axes))
    if (scales is None) == (sizes is None):
        raise ValueError("exactly one of scales and sizes must be given")
    if scales is not None and scales.name is not None and declared is None:
        raise ValueError(SCALES_AT_RUN_TIME)
    for kind, parameter, dtypes in (("scales", scales, ("float32", "float64")), ("sizes", sizes, ("int64", "int32"))):
        if parameter is None:
            continue
        count = graph.info(parameter.name).size if parameter.name is not None else len(parameter.values)
        if count != len(axes):
            raise ValueError(f"{kind} has {count} values for {len(axes)} axes")
        if parameter.dtype is not None and parameter.dtype.name not in dtypes:
            raise ValueError(f"{kind} has dtype {parameter.dtype}; a run-time {kind} is one of {', '.join(dtypes)}")
    roi = None
    if interp.coordinate == "tf_crop_and_resize":
        if "roi" not in given:
            raise ValueError(f"tf_crop_and_resize needs a roi of {2 * len(axes)} values")
        roi = _parameter(graph, given["roi"])
        count = graph.info(roi.name).size if roi.name is not None else len(roi.values)
        if count != 2 * len(axes):
            raise ValueError(f"tf_crop_and_resize needs a roi of {2 * len(axes)} values, not {count}")
        if roi.dtype is not None and roi.dtype.name not in ("float32", "float64"):
            raise ValueError(f"roi has dtype {roi.dtype}; a run-time roi is float32 or float64")
    extent = graph.decided.get(node.outputs[0], tuple(out.shape))
    return RunTimeResize(interp, axes, tuple(x_info.shape), tuple(out.shape), extent, x_info.dtype.itemsize,
                         scales, sizes, roi, str(node.attr("keep_aspect_ratio_policy", "stretch")))


__all__ = ["AxisPass", "Interp", "Parameter", "ResizePlan", "RunTimeResize", "axis_matrix", "plan_problems",
           "resize_plan", "resize_scratch", "run_time_problems", "run_time_resize", "source_coords", "sparse_pass",
           "tap_table", "takes_run_time_path"]
