"""DFT and STFT (opset 17+) lowered to the ops that run them: a matrix product, or a convolution.

Audio models exported with `torch.stft` at opset 17 carry ONNX's STFT op (older exports carry the same
transform as a Conv whose filters are a window times the DFT's cosines and sines). A real signal's STFT
with constant frame step, window and frame length is exactly that Conv, so it is lowered to one:

    signal [B, L, 1] → Reshape [B, 1, L] → Conv (filters [2F, 1, N]: window · cos, then window · -sin;
    stride frame_step) → [B, 2F, T] → Reshape [B, 2, F, T] → Transpose → [B, T, F, 2]

and lowering/dft.py then runs that Conv as FFTs where N is a power of two. A DFT along any axis, real or
complex, forward or inverse, full or one-sided (ONNX's `onesided`: an rfft, or an irfft from the bins
0..N/2), is one matrix product with a [n_in · c, n_out · 2] matrix of cosines and sines built here
(c = 1 for a real input, 2 for a complex one), the axis moved next to the complex one first and back after.
A window computed at run time makes the filters a run-time product (a Conv with run-time weights), and an axis
computed at run time one such product per axis it may name, each guarded by the run's axis (`_dft_run_time_axis`);
a frame step computed at run time runs the Conv at stride 1 and keeps every step-th frame (`_steps`), and a frame
length whose range is declared one Conv per length, each guarded by the run's length (`_every_length`). What is left
out (a complex STFT signal, an undeclared frame length, a dft_length computed at run time: they set the transform's
size) keeps the node, with the reason.
"""

from __future__ import annotations

import numpy as np

from wasinfer.ir import Graph, Node, TensorInfo
from wasinfer.passes.dynamic import type_run_time_slice
from wasinfer.passes.subgraph import choose, lower_each, refusal


class SpectralError(ValueError):
    """Why a DFT or STFT stays in the graph (the compiler names it with this reason)."""


def _scalar(graph: Graph, node: Node, index: int, what: str) -> int | None:
    name = node.inputs[index] if len(node.inputs) > index else ""
    if not name:
        return None
    if name not in graph.constants:
        raise SpectralError(f"its {what} is computed at run time (a constant is needed)")
    return int(np.asarray(graph.constants[name]).reshape(-1)[0])


class _Nodes:
    """The nodes of one lowering, named after the node they replace; each runs under `guards` (the node's own, and a
    run-time axis's condition for the nodes of the DFT along that axis)."""

    def __init__(self, graph: Graph, node: Node):
        self.graph, self.node, self.nodes = graph, node, list[Node]()
        self.guards = node.guards

    def add(self, op: str, inputs: list[str], shape: tuple[int, ...], output: str = "",
            dtype: type = np.float32, **attrs: object) -> str:
        name = output or f"{self.node.name}/{op.lower()}_{len(self.nodes)}"
        if not output:
            self.graph.tensors[name] = TensorInfo(name, np.dtype(dtype), shape)
        self.nodes.append(Node(op, f"{self.node.name}/{op}_{len(self.nodes)}", inputs, [name], dict(attrs),
                               guards=self.guards))
        return name

    def constant(self, what: str, value: np.ndarray) -> str:
        name = f"{self.node.name}/{what}"
        self.graph.add_constant(name, value)
        return name

    def reshape(self, name: str, shape: tuple[int, ...], output: str = "") -> str:
        return self.add("Reshape", [name, self.constant(f"shape_{len(self.nodes)}", np.array(shape, np.int64))],
                        shape, output)

    def transpose(self, name: str, perm: list[int], output: str = "") -> str:
        shape = self.graph.info(name).shape
        if perm == list(range(len(perm))):
            return self.add("Identity", [name], shape, output) if output else name
        return self.add("Transpose", [name], tuple(shape[p] for p in perm), output, perm=perm)


def dft_matrix(n_in: int, complex_in: bool, size: int, n_out: int, inverse: bool, onesided: bool) -> np.ndarray:
    """M [n_in * c, n_out * p] with y = x @ M for one line: x's n_in values (re, im pairs when complex) along the
    axis, y's n_out values (p = 2: complex; 1: an irfft's real output). An inverse one-sided input holds bins
    0..N/2 of a Hermitian spectrum: bin m also stands for bin N - m, conjugated."""
    sign = 1.0 if inverse else -1.0
    k = np.arange(n_out)[None, :]
    rows = np.zeros((n_in, 2, n_out, 2))
    sources = [(m, m, 1.0) for m in range(min(n_in, size))]  # (input bin, spectrum bin, conjugated: -1)
    if inverse and onesided:
        sources += [(m, size - m, -1.0) for m in range(1, min(n_in, size)) if size - m > m and size - m < size]
    for m, n, conj in sources:
        angle = 2 * np.pi * n * k[0] / size
        cos, sin = np.cos(angle), sign * np.sin(angle)
        # X = xr + i conj xi; X e^{i sign angle} = (xr cos - conj xi sin) + i (xr sin + conj xi cos)
        rows[m, 0, :, 0] += cos
        rows[m, 0, :, 1] += sin
        rows[m, 1, :, 0] += -conj * sin
        rows[m, 1, :, 1] += conj * cos
    parts = 1 if inverse and onesided else 2  # an irfft's output is real: its real parts only
    matrix = rows[:, :2 if complex_in else 1, :, :parts].reshape(n_in * (2 if complex_in else 1), n_out * parts)
    return (matrix / size if inverse else matrix).astype(np.float32)


def _dft_along(graph: Graph, node: Node, b: _Nodes, axis: int, output: str) -> tuple[str, tuple[int, ...]]:
    """The node's DFT along one axis as b's nodes, into `output` (a new tensor where it is ""): (its name, shape)."""
    x = graph.info(node.inputs[0])
    rank = len(x.shape)
    inverse, onesided = bool(node.attr("inverse", 0)), bool(node.attr("onesided", 0))
    n_in = x.shape[axis]
    given = _scalar(graph, node, 1, "dft_length")
    size = given if given is not None else (2 * (n_in - 1) if inverse and onesided else n_in)
    n_out = size // 2 + 1 if onesided and not inverse else size
    parts = 1 if inverse and onesided else 2
    perm = [a for a in range(rank - 1) if a != axis] + [axis, rank - 1]
    moved = b.transpose(node.inputs[0], perm)
    outer = tuple(x.shape[a] for a in perm[:-2])
    flat = b.reshape(moved, (*outer, n_in * x.shape[-1]))
    product = b.add("MatMul", [flat, b.constant(f"dft_{axis}", dft_matrix(n_in, x.shape[-1] == 2, size, n_out,
                                                                          inverse, onesided))],
                    (*outer, n_out * parts))
    spectrum = b.reshape(product, (*outer, n_out, parts))
    back = [perm.index(a) for a in range(rank)]
    result = b.transpose(spectrum, back, output=output)
    return result, (*(n_out if a == axis else d for a, d in enumerate(x.shape[:-1])), parts)


def lower_dft(graph: Graph, node: Node) -> list[Node]:
    x = graph.info(node.inputs[0])
    rank = len(x.shape)
    if x.dtype != np.float32 or rank < 2 or x.shape[-1] not in (1, 2):
        raise SpectralError(f"its input {list(x.shape)} {x.dtype} is not float32 [..., n, 1 or 2]")
    if graph.opset >= 20 and len(node.inputs) > 2 and node.inputs[2] and node.inputs[2] not in graph.constants:
        return _dft_run_time_axis(graph, node)
    axis_input = _scalar(graph, node, 2, "axis") if graph.opset >= 20 else None
    axis = (axis_input if axis_input is not None else int(node.attr("axis", 1 if graph.opset < 20 else -2))) % rank
    if axis == rank - 1:
        raise SpectralError("its axis is the last one (the real and imaginary parts)")
    out = graph.info(node.outputs[0]).shape if node.outputs[0] in graph.tensors else None
    b = _Nodes(graph, node)
    _, expected = _dft_along(graph, node, b, axis, node.outputs[0])
    if out is not None and out != expected:
        raise SpectralError(f"its output {list(out)} differs from the computed {list(expected)}")
    graph.tensors[node.outputs[0]] = TensorInfo(node.outputs[0], np.dtype(np.float32), expected)
    return b.nodes


def _dft_run_time_axis(graph: Graph, node: Node) -> list[Node]:
    """A DFT whose axis each run gives (opset 20's axis input): the DFT along every axis it may name (0..r - 2, or
    -r..-2), each guarded by the run's axis being that one, so only that one runs, and the output chosen by the run
    (`_chosen`). Any other axis stops the run with an error naming the node (`Graph.run_errors`)."""
    x = graph.info(node.inputs[0])
    rank = len(x.shape)
    axis = graph.info(node.inputs[2])
    if axis.dtype not in (np.dtype(np.int64), np.dtype(np.int32)) or axis.size != 1:
        raise SpectralError(f"its axis is a run-time {axis.dtype} {list(axis.shape)}, not one int32 or int64")
    b = _Nodes(graph, node)
    takes = [b.add("Or", [_equals(b, node.inputs[2], k), _equals(b, node.inputs[2], k - rank)], axis.shape,
                   dtype=np.bool_) for k in range(rank - 1)]
    b.nodes.append(refusal(graph, f"{node.name}/refuse", f"node {node.name!r} (DFT): its axis must lie in -{rank}..-2 "
                           f"or 0..{rank - 2} for an input of rank {rank}", (*node.guards, (_any(b, takes), False))))
    spectra = []
    for k, taken in enumerate(takes):
        b.guards = (*node.guards, (taken, True))
        spectra.append(_dft_along(graph, node, b, k, ""))
    b.guards = node.guards
    return _chosen(graph, node, b, spectra, takes)


def _equals(b: _Nodes, name: str, value: int) -> str:
    """A bool: whether the run's one-element int `name` is `value`."""
    info = b.graph.info(name)
    constant = b.constant(f"{name}_is_{value}", np.full(info.shape, value, info.dtype))
    return b.add("Equal", [name, constant], info.shape, dtype=np.bool_)


def _any(b: _Nodes, flags: list[str]) -> str:
    found = flags[0]
    for flag in flags[1:]:
        found = b.add("Or", [found, flag], b.graph.info(flag).shape, dtype=np.bool_)
    return found


def _chosen(graph: Graph, node: Node, b: _Nodes, results: list[tuple[str, tuple[int, ...]]], takes: list[str],
            steps: str = "") -> list[Node]:
    """The node's output: the one of `results` (name, shape) whose condition in `takes` held in the run (each
    computed under it), chosen by Where. Where they differ in shape (an rfft's bins along each axis, each frame
    length's frames and bins), each is padded to the largest and the choice cut to the run's shape by a Slice whose
    ends are chosen the same way, dims the run decides (passes/dynamic.py); `steps`, an int64 [1] tensor, is that
    Slice's run-time step along axis 1 (an STFT's frame_step over frames taken at every sample)."""
    shapes = [shape for _, shape in results]
    rank = len(shapes[0])
    full = tuple(max(dims) for dims in zip(*shapes, strict=True))
    varying = [a for a in range(rank) if len({shape[a] for shape in shapes}) > 1]
    cut_axes = sorted({*varying, *([1] if steps else [])})
    names = [name for name, _ in results]
    if varying:  # each padded to the largest, where it runs
        for k, (name, shape) in enumerate(results):
            b.guards = (*node.guards, (takes[k], True))
            pads = np.array([0] * rank + [f - d for f, d in zip(full, shape, strict=True)], np.int64)
            names[k] = b.add("Pad", [name, b.constant(f"pads_{k}", pads)], full, mode="constant")
        b.guards = node.guards
    chosen = names[0]
    for k in range(1, len(names)):
        target = node.outputs[0] if k == len(names) - 1 and not cut_axes else f"{node.name}/chosen_{k}"
        graph.tensors[target] = TensorInfo(target, np.dtype(np.float32), full)
        b.nodes += choose(graph, takes[k], names[k], chosen, target, f"{node.name}/choose_{k}", node.guards)
        chosen = target
    if not cut_axes:
        return b.nodes
    ends = b.constant("ends_0", np.array([shapes[0][a] for a in cut_axes], np.int64))
    for k in range(1, len(shapes)):
        target = f"{node.name}/ends_chosen_{k}"
        graph.tensors[target] = TensorInfo(target, np.dtype(np.int64), (len(cut_axes),))
        each = b.constant(f"ends_{k}", np.array([shapes[k][a] for a in cut_axes], np.int64))
        b.nodes += choose(graph, takes[k], each, ends, target, f"{node.name}/choose_ends_{k}", node.guards)
        ends = target
    bounds = [chosen, b.constant("starts", np.zeros(len(cut_axes), np.int64)), ends,
              b.constant("axes", np.array(cut_axes, np.int64))]
    if steps:  # the run's step along axis 1, 1 along the others
        parts = [steps if a == 1 else b.constant(f"step_{a}", np.ones(1, np.int64)) for a in cut_axes]
        bounds.append(parts[0] if len(parts) == 1 else
                      b.add("Concat", parts, (len(parts),), dtype=np.int64, axis=0))
    cut = Node("Slice", f"{node.name}/Slice", bounds, [node.outputs[0]], guards=node.guards)
    type_run_time_slice(graph, cut)
    return [*b.nodes, cut]


MAX_FRAME_LENGTHS = 64  # transforms one STFT with a run-time frame_length may carry, one per length in its range


def lower_stft(graph: Graph, node: Node) -> list[Node]:
    x = graph.info(node.inputs[0])
    if x.dtype != np.float32 or len(x.shape) != 3 or x.shape[2] != 1:
        raise SpectralError(f"its signal {list(x.shape)} {x.dtype} is not a real float32 [batch, length, 1]")
    run_time_step = bool(node.inputs[1]) and node.inputs[1] not in graph.constants
    step = 1 if run_time_step else _scalar(graph, node, 1, "frame_step")
    window_name = node.inputs[2] if len(node.inputs) > 2 else ""
    if len(node.inputs) > 3 and node.inputs[3] and node.inputs[3] not in graph.constants:
        return _every_length(graph, node, step)
    length = _scalar(graph, node, 3, "frame_length")
    size = length if length is not None else (graph.info(window_name).size if window_name else 0)
    if step is None or step < 1 or size < 1 or (window_name and graph.info(window_name).size != size):
        raise SpectralError("its frame_step, window and frame_length do not give one frame length and a step")
    if size > x.shape[1]:
        raise SpectralError(f"its frame of {size} is longer than the signal's {x.shape[1]} samples")
    b = _Nodes(graph, node)
    if run_time_step:
        return _chosen(graph, node, b, [_framed(graph, node, b, size, 1, window_name)], [], _steps(graph, node, b))
    _, shape = _framed(graph, node, b, size, step, window_name, output=node.outputs[0])
    graph.tensors[node.outputs[0]] = TensorInfo(node.outputs[0], np.dtype(np.float32), shape)
    return b.nodes


def _framed(graph: Graph, node: Node, b: _Nodes, size: int, step: int, window_name: str,
            output: str = "") -> tuple[str, tuple[int, ...]]:
    """The STFT of frames of `size` every `step` samples as b's nodes, [B, T, F, 2]: (its name, its shape)."""
    x = graph.info(node.inputs[0])
    bins = size // 2 + 1 if int(node.attr("onesided", 1)) else size
    batch, signal = x.shape[0], x.shape[1]
    frames = (signal - size) // step + 1
    angle = 2 * np.pi * np.outer(np.arange(bins), np.arange(size)) / size
    rows = np.concatenate([np.cos(angle), -np.sin(angle)])[:, None, :]
    window = graph.constants.get(window_name) if window_name else np.ones(size)
    if window is not None:  # the filters are constants: a power-of-two frame length then runs as FFTs
        filters = b.constant(f"filters_{size}", (np.asarray(window, np.float64).reshape(-1) * rows)
                             .astype(np.float32))
    else:  # a window computed at run time: the filters are, too (a Conv with run-time weights)
        filters = b.add("Mul", [b.reshape(window_name, (1, 1, size)),
                                b.constant(f"rows_{size}", rows.astype(np.float32))], rows.shape)
    wave = b.reshape(node.inputs[0], (batch, 1, signal))
    conv = b.add("Conv", [wave, filters], (batch, 2 * bins, frames), kernel_shape=[size], strides=[step])
    parts = b.reshape(conv, (batch, 2, bins, frames))
    return b.transpose(parts, [0, 3, 2, 1], output=output), (batch, frames, bins, 2)


def _steps(graph: Graph, node: Node, b: _Nodes) -> str:
    """An STFT's run-time frame_step as an int64 [1] Slice step over frames taken at every sample (the Conv at
    stride 1: step times the strided one's work, in exchange for one module for every step); a step below 1 stops
    the run with an error naming the node."""
    step = graph.info(node.inputs[1])
    if step.dtype not in (np.dtype(np.int64), np.dtype(np.int32)) or step.size != 1:
        raise SpectralError(f"its frame_step is a run-time {step.dtype} {list(step.shape)}, not one int32 or int64")
    one = b.constant("step_1", np.full(step.shape, 1, step.dtype))
    below = b.add("Less", [node.inputs[1], one], step.shape, dtype=np.bool_)
    b.nodes.append(refusal(graph, f"{node.name}/refuse_step", f"node {node.name!r} (STFT): its frame_step must be at "
                           "least 1", (*node.guards, (below, True))))
    steps = b.add("Reshape", [node.inputs[1], b.constant("step_shape", np.array([1], np.int64))], (1,),
                  dtype=step.dtype.type)
    return steps if step.dtype == np.int64 else b.add("Cast", [steps], (1,), dtype=np.int64, to=7)


def _every_length(graph: Graph, node: Node, step: int | None) -> list[Node]:
    """An STFT whose frame_length each run gives, its range declared (--input-values length=MIN..MAX:
    `Graph.read_values`, checked by each run): the length sets the transform's size, so there is one Conv per length
    in the range (at most `MAX_FRAME_LENGTHS`), each guarded by the run's length being that one, as a run-time DFT
    axis is, and the output, frames and bins, chosen by the run (`_chosen`). A length no frame of the signal fits
    stops the run naming the node."""
    x = graph.info(node.inputs[0])
    signal, name = x.shape[1], node.inputs[3]
    if name not in graph.read_values:
        raise SpectralError("its frame_length is computed at run time: it sets the transform's size, so declare its "
                            "range (--input-values NAME=MIN..MAX) for one transform per length in it")
    if len(node.inputs) > 2 and node.inputs[2]:
        raise SpectralError("its frame_length is computed at run time beside a window, whose size is the frame length: "
                            "give the window alone")
    length = graph.info(name)
    if length.dtype not in (np.dtype(np.int64), np.dtype(np.int32)) or length.size != 1:
        raise SpectralError(f"its frame_length is a run-time {length.dtype} {list(length.shape)}, not one int")
    if step is None or step < 1:
        raise SpectralError("its frame_step is not a positive constant or a run-time input")
    low, high = graph.read_values[name][:2]
    sizes = list(range(max(int(low), 1), min(int(high), signal) + 1))
    if not sizes or len(sizes) > MAX_FRAME_LENGTHS:
        raise SpectralError(f"its frame_length's declared range {low:g}..{high:g} gives {len(sizes)} lengths that fit "
                            f"the signal's {signal} samples: one to {MAX_FRAME_LENGTHS} transforms can be compiled")
    b = _Nodes(graph, node)
    takes = [_equals(b, name, size) for size in sizes]
    b.nodes.append(refusal(graph, f"{node.name}/refuse_length", f"node {node.name!r} (STFT): its frame_length must "
                           f"lie in {sizes[0]}..{sizes[-1]} (a frame of at most the signal's {signal} samples)",
                           (*node.guards, (_any(b, takes), False))))
    run_time_step = node.inputs[1] not in graph.constants
    results = []
    for size, taken in zip(sizes, takes, strict=True):
        b.guards = (*node.guards, (taken, True))
        results.append(_framed(graph, node, b, size, step, ""))
    b.guards = node.guards
    return _chosen(graph, node, b, results, takes, _steps(graph, node, b) if run_time_step else "")


def lower_spectral(graph: Graph) -> int:
    """Replace every DFT and STFT by its lowering; one left in place carries the reason (`Node.declined`)."""
    return lower_each(graph, {"DFT": lower_dft, "STFT": lower_stft}, SpectralError)


__all__ = ["dft_matrix", "lower_spectral"]
