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
A window computed at run time makes the filters a run-time product (a Conv with run-time weights). What is
left out (a complex STFT signal, a frame step or length computed at run time) keeps the node, with the reason.
"""

from __future__ import annotations

import numpy as np

from wasinfer.ir import Graph, Node, TensorInfo
from wasinfer.passes.subgraph import lower_each


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
    """The nodes of one lowering, named after the node they replace."""

    def __init__(self, graph: Graph, node: Node):
        self.graph, self.node, self.nodes = graph, node, list[Node]()

    def add(self, op: str, inputs: list[str], shape: tuple[int, ...], output: str = "", **attrs: object) -> str:
        name = output or f"{self.node.name}/{op.lower()}_{len(self.nodes)}"
        if not output:
            self.graph.tensors[name] = TensorInfo(name, np.dtype(np.float32), shape)
        self.nodes.append(Node(op, f"{self.node.name}/{op}_{len(self.nodes)}", inputs, [name], dict(attrs),
                               guards=self.node.guards))
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


def lower_dft(graph: Graph, node: Node) -> list[Node]:
    x = graph.info(node.inputs[0])
    rank = len(x.shape)
    if x.dtype != np.float32 or rank < 2 or x.shape[-1] not in (1, 2):
        raise SpectralError(f"its input {list(x.shape)} {x.dtype} is not float32 [..., n, 1 or 2]")
    axis_input = _scalar(graph, node, 2, "axis") if graph.opset >= 20 else None
    axis = (axis_input if axis_input is not None else int(node.attr("axis", 1 if graph.opset < 20 else -2))) % rank
    if axis == rank - 1:
        raise SpectralError("its axis is the last one (the real and imaginary parts)")
    inverse, onesided = bool(node.attr("inverse", 0)), bool(node.attr("onesided", 0))
    n_in = x.shape[axis]
    given = _scalar(graph, node, 1, "dft_length")
    size = given if given is not None else (2 * (n_in - 1) if inverse and onesided else n_in)
    n_out = size // 2 + 1 if onesided and not inverse else size
    parts = 1 if inverse and onesided else 2
    out = graph.info(node.outputs[0]).shape if node.outputs[0] in graph.tensors else None
    b = _Nodes(graph, node)
    perm = [a for a in range(rank - 1) if a != axis] + [axis, rank - 1]
    moved = b.transpose(node.inputs[0], perm)
    outer = tuple(x.shape[a] for a in perm[:-2])
    flat = b.reshape(moved, (*outer, n_in * x.shape[-1]))
    product = b.add("MatMul", [flat, b.constant("dft", dft_matrix(n_in, x.shape[-1] == 2, size, n_out, inverse,
                                                                  onesided))], (*outer, n_out * parts))
    spectrum = b.reshape(product, (*outer, n_out, parts))
    back = [perm.index(a) for a in range(rank)]
    b.transpose(spectrum, back, output=node.outputs[0])
    expected = (*(n_out if a == axis else d for a, d in enumerate(x.shape[:-1])), parts)
    if out is not None and out != expected:
        raise SpectralError(f"its output {list(out)} differs from the computed {list(expected)}")
    graph.tensors[node.outputs[0]] = TensorInfo(node.outputs[0], np.dtype(np.float32), expected)
    return b.nodes


def lower_stft(graph: Graph, node: Node) -> list[Node]:
    x = graph.info(node.inputs[0])
    if x.dtype != np.float32 or len(x.shape) != 3 or x.shape[2] != 1:
        raise SpectralError(f"its signal {list(x.shape)} {x.dtype} is not a real float32 [batch, length, 1]")
    step = _scalar(graph, node, 1, "frame_step")
    window_name = node.inputs[2] if len(node.inputs) > 2 else ""
    length = _scalar(graph, node, 3, "frame_length")
    size = length if length is not None else (graph.info(window_name).size if window_name else 0)
    if step is None or step < 1 or size < 1 or (window_name and graph.info(window_name).size != size):
        raise SpectralError("its frame_step, window and frame_length do not give one frame length and a step")
    bins = size // 2 + 1 if int(node.attr("onesided", 1)) else size
    batch, signal = x.shape[0], x.shape[1]
    frames = (signal - size) // step + 1
    angle = 2 * np.pi * np.outer(np.arange(bins), np.arange(size)) / size
    rows = np.concatenate([np.cos(angle), -np.sin(angle)])[:, None, :]
    b = _Nodes(graph, node)
    window = graph.constants.get(window_name) if window_name else np.ones(size)
    if window is not None:  # the filters are constants: a power-of-two frame length then runs as FFTs
        filters = b.constant("filters", (np.asarray(window, np.float64).reshape(-1) * rows).astype(np.float32))
    else:  # a window computed at run time: the filters are, too (a Conv with run-time weights)
        filters = b.add("Mul", [b.reshape(window_name, (1, 1, size)), b.constant("rows", rows.astype(np.float32))],
                        rows.shape)
    wave = b.reshape(node.inputs[0], (batch, 1, signal))
    conv = b.add("Conv", [wave, filters], (batch, 2 * bins, frames), kernel_shape=[size], strides=[step])
    parts = b.reshape(conv, (batch, 2, bins, frames))
    b.transpose(parts, [0, 3, 2, 1], output=node.outputs[0])
    graph.tensors[node.outputs[0]] = TensorInfo(node.outputs[0], np.dtype(np.float32), (batch, frames, bins, 2))
    return b.nodes


def lower_spectral(graph: Graph) -> int:
    """Replace every DFT and STFT by its lowering; one left in place carries the reason (`Node.declined`)."""
    return lower_each(graph, {"DFT": lower_dft, "STFT": lower_stft}, SpectralError)


__all__ = ["dft_matrix", "lower_spectral"]
