"""Small but realistic models, built with onnx.helper and seeded random weights.

Each builder returns an `onnx.ModelProto` shaped like what exporters produce for the real
architecture (dynamic batch and sequence dims, shape subgraphs for reshape targets, BN
before folding, Clip as Relu6, ...), with well under 2 MB of weights. Weights come from
`numpy.random.default_rng(seed)`, so every call builds the same model.

    mobilenet_like()       image [N, 3, 32, 32] → probs [N, 10]
    resnet_like()          image [N, 3, 32, 32] → logits [N, 10]
    crnn()                 image [N, 1, 16, W] → log_probs [N, W/4, 11]
    transformer_encoder()  input_ids, attention_mask [B, S] int64 → hidden [B, S, 32], pooled [B, 32]
    if_model()             x [N, D] → y [N, D] (the branch taken depends on D)
    recurrent_model()      x [T, N, 8] (seq fixed) → GRU then LSTM states
    attention_block()      x [B, S, 16] → y [B, S, 16], one self-attention layer without shape subgraphs
    widths_model()         a, b [1, 2, W] → y [1, 4, (W + 1) // 2]: W a symbolic dim the inputs share (WIDTHS)
    rows_model()           x [R, 4] → y [R, 3]: R a leading symbolic dim, not a batch (ROWS)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class _Builder:
    """Collects nodes and initializers; `w` adds a seeded random initializer."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def w(self, shape: tuple[int, ...], scale: float | None = None, stem: str = "w") -> str:
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
        std = scale if scale is not None else 1.0 / math.sqrt(max(fan_in, 1))
        return self.const(np.asarray(self.rng.standard_normal(shape) * std, np.float32), stem)

    def const(self, value: np.ndarray, stem: str = "c") -> str:
        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], outputs: int = 1, **attrs: Any) -> str:
        """Add a node; returns its first output."""
        names = [self.name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=self.name(op_type), **attrs))
        return names[0]

    def ops(self, op_type: str, inputs: list[str], outputs: int, **attrs: Any) -> list[str]:
        names = [self.name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=self.name(op_type), **attrs))
        return names

    def conv_bn(self, x: str, c_in: int, c_out: int, kernel: int, stride: int = 1, group: int = 1) -> str:
        """Conv (no bias) then BatchNormalization with random statistics, as exported before folding."""
        w = self.w((c_out, c_in // group, kernel, kernel), scale=math.sqrt(2.0 / (c_in // group * kernel * kernel)))
        pad = kernel // 2
        y = self.op("Conv", [x, w], kernel_shape=[kernel, kernel], strides=[stride, stride],
                    pads=[pad] * 4, group=group)
        scale = self.const((self.rng.uniform(0.5, 1.5, c_out)).astype(np.float32))
        bias = self.const((self.rng.standard_normal(c_out) * 0.1).astype(np.float32))
        mean = self.const((self.rng.standard_normal(c_out) * 0.1).astype(np.float32))
        var = self.const(self.rng.uniform(0.5, 1.5, c_out).astype(np.float32))
        return self.op("BatchNormalization", [y, scale, bias, mean, var], epsilon=1e-5)

    def relu6(self, x: str) -> str:
        return self.op("Clip", [x, self.const(np.array(0.0, np.float32)), self.const(np.array(6.0, np.float32))])

    def linear(self, x: str, d_in: int, d_out: int) -> str:
        """MatMul + Add, as PyTorch exports nn.Linear on a 3-D input."""
        return self.op("Add", [self.op("MatMul", [x, self.w((d_in, d_out))]),
                               self.w((d_out,), scale=0.1)])

    def model(self, name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
              opset: int = OPSET) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def _float(name: str, shape: list[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def mobilenet_like(seed: int = 0) -> onnx.ModelProto:
    """A MobileNetV2/V3-flavoured classifier: 3x3 stride-2 stem, four depthwise-separable blocks
    (depthwise 3x3 + BN + Relu6 as Clip, pointwise 1x1 + BN + HardSwish), a residual on the
    stride-1 block with equal channels, global average pool, Flatten, Gemm, Softmax.
    Input `image` [N, 3, 32, 32] (N dynamic) → `probs` [N, 10]."""
    b = _Builder(seed)
    x = b.relu6(b.conv_bn("image", 3, 16, 3, stride=2))
    channels = 16
    for c_out, stride in ((16, 1), (24, 2), (32, 1), (48, 2)):
        dw = b.relu6(b.conv_bn(x, channels, channels, 3, stride=stride, group=channels))
        pw = b.op("HardSwish", [b.conv_bn(dw, channels, c_out, 1)])
        x = b.op("Add", [x, pw]) if stride == 1 and c_out == channels else pw
        channels = c_out
    pooled = b.op("Flatten", [b.op("GlobalAveragePool", [x])], axis=1)
    logits = b.op("Gemm", [pooled, b.w((10, channels)), b.w((10,), scale=0.1)], transB=1)
    b.nodes.append(helper.make_node("Softmax", [logits], ["probs"], axis=-1))
    return b.model("mobilenet_like", [_float("image", ["N", 3, 32, 32])], [_float("probs", ["N", 10])])


def resnet_like(seed: int = 1) -> onnx.ModelProto:
    """A ResNet-18-flavoured network: 3x3 conv stem + BN + Relu + MaxPool, two basic blocks
    (conv-BN-Relu-conv-BN, residual Add, Relu), the second strided with a 1x1 conv+BN
    shortcut, global average pool, Flatten, Gemm.
    Input `image` [N, 3, 32, 32] (N dynamic) → `logits` [N, 10]."""
    b = _Builder(seed)
    x = b.op("Relu", [b.conv_bn("image", 3, 16, 3)])
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    channels = 16
    for c_out, stride in ((16, 1), (32, 2)):
        y = b.op("Relu", [b.conv_bn(x, channels, c_out, 3, stride=stride)])
        y = b.conv_bn(y, c_out, c_out, 3)
        shortcut = x if stride == 1 and c_out == channels else b.conv_bn(x, channels, c_out, 1, stride=stride)
        x = b.op("Relu", [b.op("Add", [y, shortcut])])
        channels = c_out
    pooled = b.op("Flatten", [b.op("GlobalAveragePool", [x])], axis=1)
    b.nodes.append(helper.make_node("Gemm", [pooled, b.w((10, channels)), b.w((10,), scale=0.1)], ["logits"],
                                    transB=1))
    return b.model("resnet_like", [_float("image", ["N", 3, 32, 32])], [_float("logits", ["N", 10])])


def crnn(seed: int = 2, classes: int = 11, hidden: int = 16) -> onnx.ModelProto:
    """A text-line recogniser: conv+Relu+MaxPool twice (height 16 → 4, width W → W/4), the
    feature map turned into a sequence over the width (Transpose to [W/4, N, C, H], Reshape
    with a target computed from Shape like exporters do), a bidirectional LSTM, the two
    directions concatenated (Transpose + Reshape), MatMul + Add to the classes, LogSoftmax,
    and the result made batch-first. Input `image` [N, 1, 16, W] (N and W dynamic) →
    `log_probs` [N, W/4, classes]."""
    b = _Builder(seed)
    x = b.op("Relu", [b.op("Conv", ["image", b.w((8, 1, 3, 3)), b.w((8,), 0.1)], kernel_shape=[3, 3],
                           pads=[1, 1, 1, 1])])
    x = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = b.op("Relu", [b.op("Conv", [x, b.w((16, 8, 3, 3)), b.w((16,), 0.1)], kernel_shape=[3, 3],
                           pads=[1, 1, 1, 1])])
    x = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])  # [N, 16, 4, W/4]
    seq = b.op("Transpose", [x], perm=[3, 0, 1, 2])  # [T, N, 16, 4]
    shape = b.op("Shape", [seq])
    t_n = b.op("Slice", [shape, b.const(np.array([0], np.int64)), b.const(np.array([2], np.int64))])
    target = b.op("Concat", [t_n, b.const(np.array([-1], np.int64))], axis=0)
    features = b.op("Reshape", [seq, target])  # [T, N, 64]
    gates = 4 * hidden
    y, _, _ = b.ops("LSTM", [features, b.w((2, gates, 64)), b.w((2, gates, hidden)), b.w((2, 2 * gates), 0.1)],
                    3, hidden_size=hidden, direction="bidirectional")
    y = b.op("Transpose", [y], perm=[0, 2, 1, 3])  # [T, N, 2, hidden]
    y = b.op("Reshape", [y, b.const(np.array([0, 0, 2 * hidden], np.int64))])
    logits = b.linear(y, 2 * hidden, classes)
    log_probs = b.op("LogSoftmax", [logits], axis=-1)  # [T, N, classes]
    b.nodes.append(helper.make_node("Transpose", [log_probs], ["log_probs"], perm=[1, 0, 2]))
    return b.model("crnn", [_float("image", ["N", 1, 16, "W"])], [_float("log_probs", ["N", "T", classes])])


def transformer_encoder(seed: int = 3, vocab: int = 64, d_model: int = 32, heads: int = 4, layers: int = 2,
                        ffn: int = 64, max_len: int = 32, fusable: bool = False) -> onnx.ModelProto:
    """A BERT-style encoder as PyTorch exports it. Token embedding (Gather with int64 ids), a
    segment embedding of ConstantOfShape(Shape(ids)) zeros, position ids from Range(0,
    Shape(ids)[1]); LayerNormalization; `layers` blocks of multi-head self-attention whose
    reshape targets come from Shape → Gather → Unsqueeze → Concat, with the padding mask
    applied by Add of (1 - mask) * -10000 (even layers) or by Where (odd layers), Softmax,
    output projection, residual + LayerNormalization, an Erf-based GELU MLP, residual +
    LayerNormalization; a tanh pooler on the first token. Inputs `input_ids` and
    `attention_mask` [B, S] int64 (B and S dynamic) → `hidden` [B, S, d], `pooled` [B, d].
    `fusable`: the mask as PyTorch's BERT exports it (two Unsqueezes, the Add form in every layer), which
    ONNX Runtime's transformer optimiser fuses into EmbedLayerNormalization and Attention."""
    b = _Builder(seed)
    head_dim = d_model // heads

    def i64(*values: int) -> str:
        return b.const(np.array(values, np.int64))

    ids_shape = b.op("Shape", ["input_ids"])
    batch = b.op("Gather", [ids_shape, b.const(np.array(0, np.int64))], axis=0)
    length = b.op("Gather", [ids_shape, b.const(np.array(1, np.int64))], axis=0)
    positions = b.op("Unsqueeze", [b.op("Range", [b.const(np.array(0, np.int64)), length,
                                                  b.const(np.array(1, np.int64))]), i64(0)])
    segments = b.op("ConstantOfShape", [ids_shape], value=numpy_helper.from_array(np.zeros(1, np.int64)))
    x = b.op("Gather", [b.w((vocab, d_model), 0.5), "input_ids"], axis=0)
    x = b.op("Add", [x, b.op("Gather", [b.w((max_len, d_model), 0.5), positions], axis=0)])
    x = b.op("Add", [x, b.op("Gather", [b.w((2, d_model), 0.5), segments], axis=0)])

    def layer_norm(v: str) -> str:
        gamma = b.const(b.rng.uniform(0.8, 1.2, d_model).astype(np.float32))
        beta = b.const((b.rng.standard_normal(d_model) * 0.1).astype(np.float32))
        return b.op("LayerNormalization", [v, gamma, beta], axis=-1, epsilon=1e-12)

    x = layer_norm(x)
    if fusable:
        mask = b.op("Unsqueeze", [b.op("Unsqueeze", ["attention_mask", i64(1)]), i64(2)])  # [B, 1, 1, S]
    else:
        mask = b.op("Unsqueeze", ["attention_mask", i64(1, 2)])
    mask_f = b.op("Cast", [mask], to=TensorProto.FLOAT)
    additive = b.op("Mul", [b.op("Sub", [b.const(np.array(1.0, np.float32)), mask_f]),
                            b.const(np.array(-10000.0, np.float32))])
    padded = b.op("Equal", [mask, b.const(np.array(0, np.int64))])
    b_1, s_1 = b.op("Unsqueeze", [batch, i64(0)]), b.op("Unsqueeze", [length, i64(0)])
    split_shape = b.op("Concat", [b_1, s_1, i64(heads), i64(head_dim)], axis=0)
    merge_shape = b.op("Concat", [b_1, s_1, i64(d_model)], axis=0)
    for index in range(layers):
        def heads_of(v: str, perm: list[int]) -> str:
            return b.op("Transpose", [b.op("Reshape", [v, split_shape])], perm=perm)

        q = heads_of(b.linear(x, d_model, d_model), [0, 2, 1, 3])  # [B, h, S, dh]
        k = heads_of(b.linear(x, d_model, d_model), [0, 2, 3, 1])  # [B, h, dh, S]
        v = heads_of(b.linear(x, d_model, d_model), [0, 2, 1, 3])
        scores = b.op("Div", [b.op("MatMul", [q, k]), b.const(np.array(math.sqrt(head_dim), np.float32))])
        if index % 2 == 0 or fusable:
            scores = b.op("Add", [scores, additive])
        else:
            scores = b.op("Where", [padded, b.const(np.array(-10000.0, np.float32)), scores])
        context = b.op("MatMul", [b.op("Softmax", [scores], axis=-1), v])
        context = b.op("Reshape", [b.op("Transpose", [context], perm=[0, 2, 1, 3]), merge_shape])
        x = layer_norm(b.op("Add", [x, b.linear(context, d_model, d_model)]))
        h = b.linear(x, d_model, ffn)
        erf = b.op("Erf", [b.op("Div", [h, b.const(np.array(math.sqrt(2.0), np.float32))])])
        gelu = b.op("Mul", [b.op("Mul", [h, b.op("Add", [erf, b.const(np.array(1.0, np.float32))])]),
                            b.const(np.array(0.5, np.float32))])
        x = layer_norm(b.op("Add", [x, b.linear(gelu, ffn, d_model)]))
    b.nodes.append(helper.make_node("Identity", [x], ["hidden"]))
    first = b.op("Gather", [x, b.const(np.array(0, np.int64))], axis=1)  # [B, d]
    b.nodes.append(helper.make_node("Tanh", [b.op("Gemm", [first, b.w((d_model, d_model)),
                                                           b.w((d_model,), 0.1)])], ["pooled"]))
    ids = [helper.make_tensor_value_info(n, TensorProto.INT64, ["B", "S"]) for n in ("input_ids", "attention_mask")]
    outputs = [_float("hidden", ["B", "S", d_model]), _float("pooled", ["B", d_model])]
    return b.model("transformer_encoder", ids, outputs)


def _branch(name: str, nodes: list[onnx.NodeProto], output: str, inits: list[onnx.TensorProto] | None = None
            ) -> onnx.GraphProto:
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
                             inits or [])


def if_model(seed: int = 4) -> onnx.ModelProto:
    """An If on a shape fact, as exporters write `if x.shape[1] > 4:`: Greater(Shape(x)[1], 4).
    The then-branch scales by an initializer of its own and holds a nested If on
    Equal(Shape(x)[1], 8), computed inside the branch (Relu vs Abs); the else-branch is Sigmoid of x plus an outer
    initializer. Input `x` [N, D] (N and D dynamic) → `y` [N, D]."""
    rng = np.random.default_rng(seed)
    width = helper.make_node("Gather", ["x_shape", "one"], ["width"], axis=0)
    nodes = [helper.make_node("Shape", ["x"], ["x_shape"]), width,
             helper.make_node("Greater", ["width", "four"], ["wide"])]
    inner = helper.make_node(
        "If", ["is_eight"], ["inner_out"],
        then_branch=_branch("eight", [helper.make_node("Relu", ["scaled"], ["relu_out"])], "relu_out"),
        else_branch=_branch("not_eight", [helper.make_node("Abs", ["scaled"], ["abs_out"])], "abs_out"))
    then_branch = _branch("wide", [helper.make_node("Equal", ["width", "eight"], ["is_eight"]),
                                   helper.make_node("Mul", ["x", "scale"], ["scaled"]), inner,
                                   helper.make_node("Add", ["inner_out", "offset"], ["then_out"])], "then_out",
                          [numpy_helper.from_array(np.array(rng.uniform(1, 2), np.float32), "scale")])
    else_branch = _branch("narrow", [helper.make_node("Sigmoid", ["x"], ["sig"]),
                                     helper.make_node("Add", ["sig", "offset"], ["else_out"])], "else_out")
    nodes.append(helper.make_node("If", ["wide"], ["y"], then_branch=then_branch, else_branch=else_branch))
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("one", 1), ("four", 4), ("eight", 8))]
    inits.append(numpy_helper.from_array(np.array(rng.uniform(-1, 1), np.float32), "offset"))
    graph = helper.make_graph(nodes, "if_model", [_float("x", ["N", "D"])], [_float("y", ["N", "D"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def recurrent_model(seed: int = 5, seq: int = 6, hidden: int = 12) -> onnx.ModelProto:
    """GRU (linear_before_reset, reverse) feeding an LSTM with peepholes; the inputs of time
    step t are [T, N, 8] with T fixed (layout 0, so the batch is axis 1 and given by
    --input-shape). Outputs `y` [T, 1, N, hidden] and the LSTM's `h`, `c` [1, N, hidden]."""
    b = _Builder(seed)
    g = 3 * hidden
    gru_y = b.op("GRU", ["x", b.w((1, g, 8)), b.w((1, g, hidden)), b.w((1, 2 * g), 0.1)], hidden_size=hidden,
                 direction="reverse", linear_before_reset=1)
    features = b.op("Squeeze", [gru_y, b.const(np.array([1], np.int64))])
    lstm_w, lstm_r = b.w((1, 4 * hidden, hidden)), b.w((1, 4 * hidden, hidden))
    b.nodes.append(helper.make_node("LSTM", [features, lstm_w, lstm_r, b.w((1, 8 * hidden), 0.1), "", "", "",
                                             b.w((1, 3 * hidden), 0.3)], ["y", "h", "c"], hidden_size=hidden))
    outs = [_float("y", [seq, 1, "N", hidden]), _float("h", [1, "N", hidden]), _float("c", [1, "N", hidden])]
    return b.model("recurrent", [_float("x", [seq, "N", 8])], outs)


def attention_block(seed: int = 6, d_model: int = 16, heads: int = 2, seq: int = 10) -> onnx.ModelProto:
    """One self-attention layer with constant reshape targets ([0, 0, h, dh] and [0, 0, d]),
    scaled by a Mul, with a causal mask added as a constant, residual and LayerNormalization.
    Input `x` [B, S, d] (B dynamic, S fixed) → `y` [B, S, d]."""
    b = _Builder(seed)
    dh = d_model // heads
    split = b.const(np.array([0, 0, heads, dh], np.int64))

    def proj(perm: list[int]) -> str:
        return b.op("Transpose", [b.op("Reshape", [b.linear("x", d_model, d_model), split])], perm=perm)

    q, k, v = proj([0, 2, 1, 3]), proj([0, 2, 3, 1]), proj([0, 2, 1, 3])
    causal = np.triu(np.full((seq, seq), -1e9, np.float32), k=1)
    scores = b.op("Add", [b.op("Mul", [b.op("MatMul", [q, k]), b.const(np.array(dh ** -0.5, np.float32))]),
                          b.const(causal)])
    context = b.op("MatMul", [b.op("Softmax", [scores], axis=-1), v])
    context = b.op("Reshape", [b.op("Transpose", [context], perm=[0, 2, 1, 3]),
                               b.const(np.array([0, 0, d_model], np.int64))])
    residual = b.op("Add", ["x", b.linear(context, d_model, d_model)])
    b.nodes.append(helper.make_node("LayerNormalization", [residual, b.const(np.ones(d_model, np.float32)),
                                                           b.const(np.zeros(d_model, np.float32))], ["y"], axis=-1))
    return b.model("attention_block", [_float("x", ["B", seq, d_model])], [_float("y", ["B", seq, d_model])])


ZOO = {"mobilenet_like": mobilenet_like, "resnet_like": resnet_like, "crnn": crnn,
       "transformer_encoder": transformer_encoder, "if_model": if_model, "recurrent_model": recurrent_model,
       "attention_block": attention_block}


def stateful_recurrent(seed: int = 21, hidden: int = 5, features: int = 4) -> onnx.ModelProto:
    """A voice-activity-style model: x [batch, time, features] and a recurrent state [2, batch, hidden]
    in, a score [batch, hidden] and the next state [2, batch, hidden] out; the state's batch is axis 1."""
    rng = np.random.default_rng(seed)
    weights = {"W": rng.normal(0, 0.5, (1, 4 * hidden, features)).astype(np.float32),
               "R": rng.normal(0, 0.5, (1, 4 * hidden, hidden)).astype(np.float32),
               "starts": np.array([0], np.int64), "middle": np.array([1], np.int64), "ends": np.array([2], np.int64),
               "first": np.array([0], np.int64)}
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("Slice", ["state", "starts", "middle", "first"], ["h0"]),
             helper.make_node("Slice", ["state", "middle", "ends", "first"], ["c0"]),
             helper.make_node("LSTM", ["xt", "W", "R", "", "", "h0", "c0"], ["", "h", "c"], hidden_size=hidden),
             helper.make_node("Concat", ["h", "c"], ["next_state"], axis=0),
             helper.make_node("Squeeze", ["h", "first"], ["hs"]),
             helper.make_node("Sigmoid", ["hs"], ["score"])]
    graph = helper.make_graph(
        nodes, "stateful",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6, features]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", hidden])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", hidden]),
         helper.make_tensor_value_info("next_state", TensorProto.FLOAT, [2, "batch", hidden])],
        [onnx.numpy_helper.from_array(v, k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def widths_model(seed: int = 22) -> onnx.ModelProto:
    """Two inputs that share the symbolic dim W, as a model for symbolic input dims (ABI version 3):
    a, b [1, 2, W] → y = Conv1d(a + b, stride 2) [1, 4, (W + 1) // 2]. WIDTHS compiles it for W in 4..40."""
    b = _Builder(seed)
    total = b.op("Add", ["a", "b"])
    b.nodes.append(helper.make_node("Conv", [total, b.w((4, 2, 3)), b.w((4,), 0.1)], ["y"], kernel_shape=[3],
                                    pads=[1, 1], strides=[2]))
    return b.model("widths", [_float("a", [1, 2, "W"]), _float("b", [1, 2, "W"])], [_float("y", [1, 4, "T"])])


# widths_model()'s convert arguments: input shapes at the largest W, and the range of W on each input's axis 2
WIDTHS = ({"a": (1, 2, 40), "b": (1, 2, 40)}, {"a": {2: (4, 40)}, "b": {2: (4, 40)}})


def rows_model(seed: int = 23) -> onnx.ModelProto:
    """x [R, 4] → y = Relu(x @ w) [R, 3], whose leading dim compiled as a range (ROWS: 2..8) is a symbolic dim,
    not a batch: the module runs all R rows at once, with max_batch 1."""
    b = _Builder(seed)
    b.nodes.append(helper.make_node("Relu", [b.op("MatMul", ["x", b.w((4, 3))])], ["y"]))
    return b.model("rows", [_float("x", ["R", 4])], [_float("y", ["R", 3])])


ROWS = ({"x": (8, 4)}, {"x": {0: (2, 8)}})
