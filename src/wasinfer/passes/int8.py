"""Quantized matrix products and convolutions fused into integer kernels: QDQ patterns → QGemmInt8, QConvInt8.

ONNX Runtime's static QDQ models (and, after passes/quantized.py, its QOperator ones) compute a
quantized layer as

    DequantizeLinear(a_q) , DequantizeLinear(w_q constant) → MatMul | Gemm (+ bias) → QuantizeLinear(y)

which, run as written, is a float32 product between a dequantize and a quantize. ONNX Runtime
itself fuses the pattern into QLinearMatMul / QGemm: int32 accumulation of the integer
products, then one float multiplier per output column. `fuse_int8_gemms` does the same, into
the `wasinfer` domain's QGemmInt8 (ops/quantized.py) with inputs

    a (int8 or uint8, the quantized activation), w (int8 [K, N]), bias (int32 [N]),
    scale (float32 [N]: float32(a_scale * w_scale[n]) / y_scale, ONNX Runtime's order),
    a_zero (a's dtype, scalar), y_zero (y's dtype, scalar)

and y = saturate(round_half_to_even(float32(sum_k (a[m, k] - a_zero) * w[k, n] + bias[n]) *
scale[n]) + y_zero), as MLAS requantizes (emitters/qgemm.py runs it).

What matches, and why the rest keeps the float path:
- a per-tensor activation scale and zero point (constants): the kernel subtracts one zero
  point; per-row activation scales would need a scale per row, which no quantizer writes;
- a constant int8 weight, 2-D, with zero zero points (symmetric, onnxruntime.quantization's
  default), scales per tensor or per output column: a nonzero weight zero point would need a
  per-row correction term the kernel does not compute; uint8 weights are rare (the quantizer
  writes them only on request) and keep the float path;
- MatMul with A of any rank ≥ 2 (its leading dims are rows) and a 2-D weight; Gemm with
  transA = 0, alpha = 1 and beta = 1 (transB is free: the weight is a constant);
- a bias that is a DequantizeLinear of an int32 constant with zero zero point whose scale is
  a_scale * w_scale (what the quantizer writes): its integers are added exactly; a float
  constant bias (or one with another scale) is rounded to those integers, an error of at
  most half a unit of a_scale * w_scale, far below an output step;
- the product's only consumer is the QuantizeLinear, whose scale and zero point are constants
  of size one and whose output is int8 or uint8; or a Relu or a Clip of constant bounds whose only
  consumer is (TFLite's fused activations): its bounds become an integer range, [Q(lo), Q(hi)],
  which QConvInt8 saturates to and a QGemmInt8 is followed by as a clamping table (QLookupInt8).

Convolutions, `DequantizeLinear(x_q) , DequantizeLinear(w_q) → Conv (+ bias) → QuantizeLinear`,
fuse into QConvInt8 (ops/quantized.py; lowering/qconv.py) on the same terms: a per-tensor (u)int8
activation, a constant symmetric int8 weight [M, C/group, *kernel] (1-D or 2-D) with scales per
tensor or per output channel (axis 0), the int32 bias. Two more shapes of the pattern fuse,
as the TFLite frontend writes a full-integer model's convs: a Transpose between the activation's
DequantizeLinear and the Conv (NHWC → NCHW) moves onto the integers, and a Relu or a Clip of
constant bounds between the Conv and the QuantizeLinear (TFLite's fused activation) becomes the
output's integer range, [Q(lo), Q(hi)] (Q the QuantizeLinear's own rounding: quantizing a clamped
value is clamping the quantized one, Q being monotonic). Kernels of more than QCONV_MAX_TAPS taps
keep the float path.
"""

from __future__ import annotations

import numpy as np

from wasinfer.ir import Graph, Node, TensorInfo
from wasinfer.ops.quantized import INT8_DOMAIN, QCONV_MAX_K, QCONV_MAX_TAPS
from wasinfer.passes.control import infer_types

QUANTIZED = (np.dtype(np.int8), np.dtype(np.uint8))


def _arg(node: Node, index: int) -> str:
    return node.inputs[index] if len(node.inputs) > index else ""


def _scalar(graph: Graph, name: str) -> np.ndarray | None:
    """A constant of one element, as a 0-d array; None otherwise."""
    value = graph.constants.get(name) if name else None
    return value.reshape(()) if value is not None and value.size == 1 else None


class _Match:
    """The parts of one DequantizeLinear → MatMul/Gemm → QuantizeLinear pattern."""

    def __init__(self, graph: Graph, product: Node):
        self.graph, self.product = graph, product
        self.removed: list[Node] = []
        self.transpose: Node | None = None  # a Transpose between the activation's DequantizeLinear and a Conv
        self.clamp: Node | None = None  # a Relu or Clip between a Conv and its QuantizeLinear
        self.bounds = (-np.inf, np.inf)  # the clamp's range

    def dequantize_of(self, name: str) -> Node | None:
        producer = self.graph.producer(name)
        if producer is None or producer.op_type != "DequantizeLinear" or name in self.graph.outputs:
            return None
        return producer

    def activation(self) -> tuple[str, np.ndarray, np.ndarray] | None:
        """(a_q, a_scale, a_zero) of input 0: a per-tensor (u)int8 DequantizeLinear; for a Conv also
        one behind a Transpose (TFLite's NHWC → NCHW, which then moves to the integers)."""
        dq = self.dequantize_of(self.product.inputs[0])
        if dq is None and self.product.op_type == "Conv":
            transpose = self.graph.producer(self.product.inputs[0])
            if transpose is not None and transpose.op_type == "Transpose" \
                    and transpose.outputs[0] not in self.graph.outputs:
                dq = self.dequantize_of(transpose.inputs[0])
                self.transpose = transpose if dq is not None else None
        if dq is None:
            return None
        a_q = dq.inputs[0]
        scale, zero = _scalar(self.graph, _arg(dq, 1)), _scalar(self.graph, _arg(dq, 2))
        dtype = self.graph.info(a_q).dtype if a_q in self.graph.tensors else None
        if dtype not in QUANTIZED or scale is None or (_arg(dq, 2) and zero is None):
            return None
        self.removed.append(dq)
        return a_q, scale.astype(np.float32), (zero if zero is not None else np.zeros((), dtype)).astype(dtype)

    def _symmetric_int8_weight(self, ranks: tuple[int, ...]) -> tuple[Node, np.ndarray, np.ndarray] | None:
        """(its DequantizeLinear, w, scale) where input 1 is an int8 constant of one of `ranks`, dequantized with
        zero point 0 and no blocks; the scale's shape is for the caller to check."""
        dq = self.dequantize_of(self.product.inputs[1])
        if dq is None:
            return None
        w = self.graph.constants.get(dq.inputs[0])
        scale = self.graph.constants.get(_arg(dq, 1))
        zero = self.graph.constants.get(_arg(dq, 2)) if _arg(dq, 2) else np.zeros(1, np.int8)
        if w is None or w.dtype != np.int8 or w.ndim not in ranks or scale is None or zero is None \
                or np.any(zero != 0) or int(dq.attr("block_size", 0)):
            return None
        return dq, w, scale

    def weight(self, trans_b: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """(w [K, N] int8, w_scale [N] float32) of input 1: a symmetric int8 constant, per tensor or per column."""
        found = self._symmetric_int8_weight((2,))
        if found is None:
            return None
        dq, w, scale = found
        w = w.T if trans_b else w
        n_size = w.shape[1]
        if scale.size != 1:  # per channel: the channel must be the output column
            axis = int(dq.attr("axis", 1)) % 2
            if scale.size != n_size or axis != (0 if trans_b else 1):
                return None
        self.removed.append(dq)
        return np.ascontiguousarray(w), np.broadcast_to(scale.astype(np.float32).reshape(-1), (n_size,)).copy()

    def conv_weight(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(w [M, C/g, *kernel] int8, w_scale [M] float32) of a Conv's input 1: a symmetric int8
        constant, per tensor or per output channel (axis 0)."""
        found = self._symmetric_int8_weight((3, 4))
        if found is None:
            return None
        dq, w, scale = found
        if scale.size != 1 and (scale.size != w.shape[0] or int(dq.attr("axis", 1)) % w.ndim != 0):
            return None
        self.removed.append(dq)
        return w, np.broadcast_to(scale.astype(np.float32).reshape(-1), (w.shape[0],)).copy()

    def requantization(self, bias_name: str, a_scale: np.ndarray, w_scale: np.ndarray, y_scale: np.ndarray,
                       channels: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The int32 bias (zeros without one) and the float32 multiplier per output channel, float32(a_scale *
        w_scale) / y_scale as ONNX Runtime forms it; None when the bias does not fit or a multiplier is not finite."""
        unit = (a_scale * w_scale).astype(np.float32)  # float32 products, as ONNX Runtime forms them
        bias = np.zeros(channels, np.int32)
        if bias_name:
            found = self.bias(bias_name, unit)
            if found is None:
                return None
            bias = found
        scale = (unit / y_scale).astype(np.float32)
        return (bias, scale) if np.all(np.isfinite(scale)) else None

    def bias(self, name: str, unit: np.ndarray) -> np.ndarray | None:
        """The bias as int32 multiples of `unit` (a_scale * w_scale, per column)."""
        n_size = unit.size
        dq = self.dequantize_of(name)
        if dq is not None:
            q = self.graph.constants.get(dq.inputs[0])
            scale = self.graph.constants.get(_arg(dq, 1))
            zero = self.graph.constants.get(_arg(dq, 2)) if _arg(dq, 2) else np.zeros(1, np.int32)
            if q is None or scale is None or zero is None or q.dtype != np.int32 or np.any(zero != 0):
                return None
            if q.size not in (1, n_size) or scale.size not in (1, n_size):
                return None
            ints = np.broadcast_to(q.reshape(-1), (n_size,)).astype(np.int64)
            scale = np.broadcast_to(scale.astype(np.float32).reshape(-1), (n_size,))
            self.removed.append(dq)
            if np.array_equal(scale, unit):
                return ints.astype(np.int32)
            values = ints.astype(np.float64) * scale.astype(np.float64)
        else:
            value = self.graph.constants.get(name)
            if value is None or value.size not in (1, n_size) or value.dtype != np.float32:
                return None
            values = np.broadcast_to(value.reshape(-1), (n_size,)).astype(np.float64)
        rounded = np.rint(values / unit.astype(np.float64))
        if np.any(np.abs(rounded) >= 2**30):  # no headroom left for the products
            return None
        return rounded.astype(np.int32)

    def only_consumer(self, name: str) -> Node | None:
        consumers = self.graph.consumers(name)
        return consumers[0] if len(consumers) == 1 and name not in self.graph.outputs else None

    def clamp_bounds(self, node: Node) -> tuple[float, float] | None:
        """A Relu's range, or a Clip's (constant min/max inputs, or attributes before opset 11)."""
        if node.op_type == "Relu":
            return 0.0, float(np.inf)
        lo, hi = (_scalar(self.graph, _arg(node, i)) for i in (1, 2))
        if (_arg(node, 1) and lo is None) or (_arg(node, 2) and hi is None):
            return None
        return (float(lo) if lo is not None else float(node.attr("min", -np.inf)),
                float(hi) if hi is not None else float(node.attr("max", np.inf)))

    def quantize(self) -> tuple[Node, np.ndarray, np.ndarray] | None:
        """(the QuantizeLinear, y_scale, y_zero) consuming the product, its only consumer; also one
        behind a Relu or a Clip of constant bounds (TFLite's fused activations), whose range `bounds`
        holds."""
        q = self.only_consumer(self.product.outputs[0])
        if q is not None and q.op_type in ("Relu", "Clip"):
            bounds = self.clamp_bounds(q)
            if bounds is None:
                return None
            self.clamp, self.bounds = q, bounds
            q = self.only_consumer(q.outputs[0])
        if q is None or q.op_type != "QuantizeLinear":
            return None
        scale, zero = _scalar(self.graph, _arg(q, 1)), _scalar(self.graph, _arg(q, 2))
        y = q.outputs[0]
        if scale is None or (_arg(q, 2) and zero is None) or int(q.attr("precision", 0)):
            return None
        if y not in self.graph.tensors or self.graph.info(y).dtype not in QUANTIZED:
            return None
        dtype = self.graph.info(y).dtype
        return q, scale.astype(np.float32), (zero if zero is not None else np.zeros((), dtype)).astype(dtype)


def integer_range(bounds: tuple[float, float], y_scale: np.ndarray,
                  y_zero: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A Relu's or Clip's bounds as the integers the QuantizeLinear after it maps them to: quantizing a
    clamped value is clamping the quantized one (the QuantizeLinear is monotonic)."""
    info = np.iinfo(y_zero.dtype)
    lo, hi = (np.array(np.clip(np.rint(np.float32(bound) / y_scale) + int(y_zero), info.min, info.max), y_zero.dtype)
              for bound in bounds)
    return lo, hi


def requantized_output(graph: Graph, product: Node) -> tuple[Node, Node | None, tuple[float, float]] | None:
    """The QuantizeLinear that is `product`'s only consumer, possibly behind a Relu or a Clip of constant
    bounds (which then comes second, with its bounds): where a fused kernel writes its integers."""
    match = _Match(graph, product)
    found = match.quantize()
    return (found[0], match.clamp, match.bounds) if found is not None else None


def _fuse(graph: Graph, node: Node) -> Node | None:
    """The QGemmInt8 node replacing `node` and its QuantizeLinear, or None: the pattern does not match."""
    is_gemm = node.op_type == "Gemm"
    if node.op_type not in ("MatMul", "Gemm") or node.domain not in ("", "ai.onnx") or node.activation is not None:
        return None
    if is_gemm and (int(node.attr("transA", 0)) or float(node.attr("alpha", 1.0)) != 1.0
                    or float(node.attr("beta", 1.0)) != 1.0):
        return None
    a_name = node.inputs[0]
    rank = len(graph.info(a_name).shape) if a_name in graph.tensors else 0
    if rank < 2 or (is_gemm and rank != 2):
        return None
    match = _Match(graph, node)
    activation = match.activation()
    weight = match.weight(bool(is_gemm and int(node.attr("transB", 0))))
    requantize = match.quantize()
    if activation is None or weight is None or requantize is None:
        return None
    a_q, a_scale, a_zero = activation
    w, w_scale = weight
    q, y_scale, y_zero = requantize
    if graph.info(a_name).shape[-1] != w.shape[0]:
        return None
    requantized = match.requantization(_arg(node, 2) if is_gemm else "", a_scale, w_scale, y_scale, w.shape[1])
    if requantized is None:
        return None
    bias, scale = requantized
    names = [f"{node.name}/int8/{part}" for part in ("w", "bias", "scale", "a_zero", "y_zero")]
    for name, value in zip(names, (w, bias, scale, a_zero, y_zero), strict=True):
        graph.add_constant(name, value)
    y = q.outputs[0]
    written = y if match.clamp is None else f"{y}/unclamped"
    fused = Node("QGemmInt8", f"{node.name}/int8", [a_q, *names], [written], domain=INT8_DOMAIN, guards=node.guards)
    graph.nodes[_at(graph, node)] = fused
    del graph.nodes[_at(graph, q)]
    if match.clamp is not None:  # the Relu/Clip as a table that clamps the integers (QGemmInt8 has no range)
        lo, hi = integer_range(match.bounds, y_scale, y_zero)
        graph.tensors[written] = TensorInfo(written, y_zero.dtype, graph.info(y).shape)
        graph.add_constant(f"{y}/clamp", np.clip(np.arange(256, dtype=np.uint8).view(y_zero.dtype), lo, hi))
        clamp = Node("QLookupInt8", f"{y}/clamp/QLookupInt8", [written, f"{y}/clamp"], [y], domain=INT8_DOMAIN,
                     guards=node.guards)
        graph.nodes.insert(_at(graph, fused) + 1, clamp)
        del graph.nodes[_at(graph, match.clamp)]
    drop_unused(graph, match.removed)
    return fused


def _fuse_conv(graph: Graph, node: Node) -> Node | None:
    """The QConvInt8 node replacing Conv `node` and its QuantizeLinear, or None: the pattern does
    not match, or the kernel cannot run it (more than QCONV_MAX_TAPS taps, K of QCONV_MAX_K or more)."""
    if node.op_type != "Conv" or node.domain not in ("", "ai.onnx") or node.activation is not None:
        return None
    x_name = node.inputs[0]
    rank = len(graph.info(x_name).shape) if x_name in graph.tensors else 0
    if rank not in (3, 4):
        return None
    match = _Match(graph, node)
    activation, weight, requantize = match.activation(), match.conv_weight(), match.quantize()
    if activation is None or weight is None or requantize is None:
        return None
    x_q, x_scale, x_zero = activation
    w, w_scale = weight
    q, y_scale, y_zero = requantize
    groups = int(node.attr("group", 1))
    kernel = node.attr("kernel_shape")
    if w.ndim != rank or groups < 1 or graph.info(x_name).shape[1] != w.shape[1] * groups or w.shape[0] % groups \
            or (kernel and tuple(kernel) != w.shape[2:]):
        return None
    taps = int(np.prod(w.shape[2:]))
    if taps > QCONV_MAX_TAPS or w.shape[1] * taps >= QCONV_MAX_K:
        return None
    requantized = match.requantization(_arg(node, 2), x_scale, w_scale, y_scale, w.shape[0])
    if requantized is None:
        return None
    bias, scale = requantized
    parts: dict[str, np.ndarray] = {"w": w, "bias": bias, "scale": scale, "x_zero": x_zero, "y_zero": y_zero}
    if match.clamp is not None:  # the Relu/Clip as the integer range its bounds quantize to
        parts["y_lo"], parts["y_hi"] = integer_range(match.bounds, y_scale, y_zero)
    names = [f"{node.name}/int8/{part}" for part in parts]
    for name, value in zip(names, parts.values(), strict=True):
        graph.add_constant(name, value)
    at = _at(graph, node)
    if match.transpose is not None:  # transpose the integers instead
        x_t = f"{match.transpose.outputs[0]}/int8"
        graph.tensors[x_t] = TensorInfo(x_t, graph.info(x_q).dtype, graph.info(x_name).shape)
        graph.nodes.insert(at, Node("Transpose", f"{x_t}/Transpose", [x_q], [x_t], dict(match.transpose.attrs),
                                    guards=node.guards))
        x_q, at = x_t, at + 1
        match.removed.insert(0, match.transpose)
    fused = Node("QConvInt8", f"{node.name}/int8", [x_q, *names], [q.outputs[0]], dict(node.attrs),
                 domain=INT8_DOMAIN, guards=node.guards)
    graph.nodes[at] = fused
    del graph.nodes[_at(graph, q)]
    if match.clamp is not None:
        del graph.nodes[_at(graph, match.clamp)]
    drop_unused(graph, match.removed)
    return fused


def index_of(graph: Graph, node: Node) -> int | None:
    """Where `node` itself is in the graph (None: gone). By identity: a dataclass's == compares every
    field, which made a long quantized graph's passes quadratic in their slowest part."""
    return next((i for i, n in enumerate(graph.nodes) if n is node), None)


def _at(graph: Graph, node: Node) -> int:
    at = index_of(graph, node)
    assert at is not None, node.name
    return at


def drop_unused(graph: Graph, nodes: list[Node]) -> None:
    """Remove the DequantizeLinear nodes the fusion left without consumers, and the constants
    only they read (the fused node holds its own copies: stats count parameters once)."""
    for node in nodes:
        at = index_of(graph, node)
        if at is not None and not any(o in graph.outputs or graph.consumers(o) for o in node.outputs if o):
            del graph.nodes[at]
            for name in node.inputs:
                if name in graph.constants and name not in graph.outputs and not graph.consumers(name):
                    del graph.constants[name]
                    del graph.tensors[name]


def fuse_int8_gemms(graph: Graph) -> int:
    """Fuse every matching quantized MatMul/Gemm into QGemmInt8 and Conv into QConvInt8; returns how many.

    It runs before constant folding (which would dequantize the int8 weights), so the values
    passes/quantized.py just wrote, and those of ONNX Runtime's contrib ops, may have no type
    yet: ONNX's shape inference gives them one first, where there is a candidate to fuse."""
    def dequantized(name: str, through_transpose: bool) -> bool:
        producer = graph.producer(name)
        if producer is not None and producer.op_type == "Transpose" and through_transpose:
            return dequantized(producer.inputs[0], False)
        return producer is not None and producer.op_type == "DequantizeLinear"

    candidates = [n for n in graph.nodes if n.op_type in ("MatMul", "Gemm", "Conv") and n.inputs
                  and dequantized(n.inputs[0], n.op_type == "Conv")]
    if not candidates:
        return 0
    if any(o not in graph.tensors for n in graph.nodes for o in n.outputs if o):
        infer_types(graph)
    fused = 0
    for node in list(graph.nodes):
        if index_of(graph, node) is not None and (_fuse(graph, node) or _fuse_conv(graph, node)) is not None:
            fused += 1
    return fused


__all__ = ["QUANTIZED", "drop_unused", "fuse_int8_gemms", "index_of", "integer_range", "requantized_output"]
