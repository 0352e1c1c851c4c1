"""ONNX Runtime's com.microsoft contrib ops and ONNX's composite ops of opset 23+ (passes/contrib.py): each against
ONNX Runtime, which runs the contrib ops natively (numpy where its CPU build has no kernel), the declined forms
refused by name, and a BERT encoder fused by ONNX Runtime's own optimisers."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.model_zoo import transformer_encoder
from tests.parity import assert_matches_ort, graph_model, ort_run, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.ir import UnsupportedModel
from wasinfer.passes.contrib import dequantize_nbits
from wasinfer.runtime import WasmModel

MS = "com.microsoft"
B, S, H, N = 2, 5, 16, 4


def _rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def contrib_model(nodes: list[onnx.NodeProto], inputs: dict[str, np.ndarray], outputs: list[str],
                  inits: dict[str, np.ndarray] | None = None, opset: int = 17) -> onnx.ModelProto:
    """A model of contrib nodes (ONNX's inference does not know them): its outputs typed by one ONNX Runtime run."""
    def make(types: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
        graph = helper.make_graph(
            nodes, "contrib",
            [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
             for n, v in inputs.items()],
            types, [numpy_helper.from_array(v, n) for n, v in (inits or {}).items()])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)])

    untyped = make([helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs])
    results = ort_run(untyped, inputs) if all(o for o in outputs) else []
    return make([helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                 for o, v in zip(outputs, results, strict=True)])


def _one(op: str, inputs: dict[str, np.ndarray], inits: dict[str, np.ndarray] | None = None, outputs: int = 1,
         opset: int = 17, domain: str = MS, **attrs: object) -> onnx.ModelProto:
    names = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, [*inputs, *(inits or {})], names, domain=domain, **attrs)
    return contrib_model([node], inputs, names, inits, opset)


def test_gelu_family() -> None:
    rng = np.random.default_rng(0)
    x, bias = _rand(rng, B, S, H), _rand(rng, H)
    for op in ("Gelu", "FastGelu", "QuickGelu"):
        assert_matches_ort(_one(op, {"x": x}), {"x": x})
    assert_matches_ort(_one("QuickGelu", {"x": x}, alpha=1.2), {"x": x})
    for op in ("FastGelu", "BiasGelu"):
        assert_matches_ort(_one(op, {"x": x}, {"bias": bias}), {"x": x})


def test_bias_add() -> None:
    """X + bias + skip (ONNX Runtime runs BiasAdd on CUDA only: numpy is the reference)."""
    rng = np.random.default_rng(1)
    x, skip, bias = _rand(rng, B, S, H), _rand(rng, B, S, H), _rand(rng, H)
    node = helper.make_node("BiasAdd", ["x", "bias", "skip"], ["y"], domain=MS)
    model = helper.make_model(helper.make_graph(
        [node], "bias_add", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [B, S, H]) for n in ("x", "skip")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [B, S, H])], [numpy_helper.from_array(bias, "bias")]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    got = wasm_run(model, {"x": x, "skip": skip}, input_shapes={"x": (B, S, H), "skip": (B, S, H)})[0]
    np.testing.assert_allclose(got, x + bias + skip, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("axis", "bias_shape", "inner"), [(3, (B, 1, 1, S), 1), (-1, (N, S, S), 0),
                                                          (2, (1, N, S, S), 0)])
def test_bias_softmax(axis: int, bias_shape: tuple[int, ...], inner: int) -> None:
    """Softmax(data + bias): a padding mask broadcast over heads and queries (inner), a bias without the batch
    (outer), and the axis before last, which softmaxes the last two axes together (ONNX Runtime runs BiasSoftmax
    on GPUs only: numpy is the reference)."""
    rng = np.random.default_rng(24)
    x, bias = _rand(rng, B, N, S, S), _rand(rng, *bias_shape)
    node = helper.make_node("BiasSoftmax", ["x", "bias"], ["y"], domain=MS, axis=axis, is_inner_broadcast=inner)
    model = helper.make_model(helper.make_graph(
        [node], "bias_softmax", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))],
        [numpy_helper.from_array(bias, "bias")]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    total = (x + bias).reshape(B, N, -1) if axis == 2 else x + bias
    want = np.exp(total - total.max(-1, keepdims=True))
    want = (want / want.sum(-1, keepdims=True)).reshape(x.shape)
    np.testing.assert_allclose(wasm_run(model, {"x": x})[0], want, rtol=1e-5, atol=1e-6)


def test_fused_matmul_and_gemm() -> None:
    rng = np.random.default_rng(2)
    a, b = _rand(rng, 3, 4, 6), _rand(rng, 3, 5, 4)
    assert_matches_ort(_one("FusedMatMul", {"a": a, "b": b}, transA=1, transB=1, alpha=0.5), {"a": a, "b": b})
    a2 = _rand(rng, 3, 8)
    assert_matches_ort(_one("FusedGemm", {"a": a2}, {"w": _rand(rng, 6, 8), "c": _rand(rng, 6)}, transB=1, alpha=0.7,
                            beta=0.5, activation="LeakyRelu", activation_alpha=0.2), {"a": a2})


@pytest.mark.parametrize(("activation", "params"), [("", None), ("Relu", None), ("Tanh", None), ("Sigmoid", None),
                                                    ("LeakyRelu", [0.2]), ("Clip", [-0.5, 0.5]),
                                                    ("HardSigmoid", [0.3, 0.4])])
def test_fused_conv(activation: str, params: list[float] | None) -> None:
    """Conv + Z (the sum input) + the activation."""
    rng = np.random.default_rng(3)
    x, z = _rand(rng, 1, 3, 8, 8), _rand(rng, 1, 4, 8, 8)
    attrs: dict[str, object] = {"activation": activation} if activation else {}
    if params:
        attrs["activation_params"] = params
    model = _one("FusedConv", {"x": x}, {"w": _rand(rng, 4, 3, 3, 3), "b": _rand(rng, 4)}, kernel_shape=[3, 3],
                 pads=[1, 1, 1, 1], **attrs)
    node = model.graph.node[0]
    node.input.append("z")  # Z is the fourth input, fed at run time
    model.graph.input.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, list(z.shape)))
    assert_matches_ort(model, {"x": x, "z": z})


@pytest.mark.parametrize("opset", [13, 17])
def test_layer_norms(opset: int) -> None:
    """SkipLayerNormalization (its sum output too), the RMS norms, at an opset without LayerNormalization (13)
    and with it (17)."""
    rng = np.random.default_rng(4)
    x, skip = _rand(rng, B, S, H), _rand(rng, B, S, H)
    gamma, beta, bias = _rand(rng, H), _rand(rng, H), _rand(rng, H)
    feeds = {"x": x, "skip": skip}
    for inits in ({"gamma": gamma, "beta": beta, "bias": bias}, {"gamma": gamma}):
        node = helper.make_node("SkipLayerNormalization", [*feeds, *inits], ["y", "", "", "sum"], domain=MS,
                                epsilon=1e-5)
        assert_matches_ort(contrib_model([node], feeds, ["y", "sum"], inits, opset), feeds)
    node = helper.make_node("SkipSimplifiedLayerNormalization", ["x", "skip2d", "gamma", "bias"],
                            ["y", "", "", "sum"], domain=MS)
    feeds2 = {"x": x, "skip2d": _rand(rng, S, H)}  # a skip without the batch, broadcast
    assert_matches_ort(contrib_model([node], feeds2, ["y", "sum"], {"gamma": gamma, "bias": bias}, opset), feeds2)
    # ONNX Runtime registers SimplifiedLayerNormalization, and LayerNormalization before opset 17, in the
    # default domain: the contrib LayerNormalization runs as ONNX's
    assert_matches_ort(_one("SimplifiedLayerNormalization", {"x": x}, {"gamma": gamma}, opset=opset, domain="",
                            epsilon=1e-6), {"x": x})
    assert_matches_ort(_one("LayerNormalization", {"x": x}, {"gamma": gamma, "beta": beta}, opset=opset, domain="",
                            epsilon=1e-6), {"x": x})


MASKS = {
    "none": None,
    "lengths": np.array([3, 5], np.int32),
    "raw 2-D": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32),
    "raw 3-D": (np.random.default_rng(5).random((B, S, S)) > 0.3).astype(np.int32),
    "ends and starts": np.array([5, 4, 1, 0], np.int32),
}


@pytest.mark.parametrize("unidirectional", [0, 1])
@pytest.mark.parametrize("mask", list(MASKS))
def test_attention_masks(mask: str, unidirectional: int) -> None:
    """ONNX Runtime's Attention (packed QKV weights and bias) with each mask_index form it documents but the
    Megatron 4-D one, bidirectional and causal."""
    rng = np.random.default_rng(6)
    feeds = {"x": _rand(rng, B, S, H)} | ({"mask": MASKS[mask]} if MASKS[mask] is not None else {})
    inputs = ["x", "w", "b"] + (["mask"] if "mask" in feeds else [])
    node = helper.make_node("Attention", inputs, ["y"], domain=MS, num_heads=N, unidirectional=unidirectional)
    inits = {"w": _rand(rng, H, 3 * H) * 0.3, "b": _rand(rng, 3 * H)}
    assert_matches_ort(contrib_model([node], feeds, ["y"], inits), feeds)


def test_attention_past_present_and_bias() -> None:
    """A key-value cache (past [2, B, N, P, D] in, present out), and Q, K, V of different sizes with an attention
    bias and a scale."""
    rng = np.random.default_rng(7)
    feeds = {"x": _rand(rng, B, S, H), "past": _rand(rng, 2, B, N, 3, H // N)}
    node = helper.make_node("Attention", ["x", "w", "b", "", "past"], ["y", "present"], domain=MS, num_heads=N,
                            unidirectional=1)
    inits = {"w": _rand(rng, H, 3 * H) * 0.3, "b": _rand(rng, 3 * H)}
    assert_matches_ort(contrib_model([node], feeds, ["y", "present"], inits), feeds)
    feeds = {"x": _rand(rng, B, S, H), "bias": _rand(rng, 1, N, S, S)}
    node = helper.make_node("Attention", ["x", "w", "", "", "", "bias"], ["y"], domain=MS, num_heads=N,
                            qkv_hidden_sizes=[8, 8, 16], scale=0.3)
    assert_matches_ort(contrib_model([node], feeds, ["y"], {"w": _rand(rng, H, 32)}), feeds)


@pytest.mark.parametrize("mask", ["none", "lengths", "raw"])
def test_multi_head_attention(mask: str) -> None:
    """Cross attention (keys longer than queries, values of another width) with the projections' bias."""
    rng = np.random.default_rng(8)
    masks = {"lengths": np.array([3, 7], np.int32), "raw": (rng.random((B, 7)) > 0.3).astype(np.int32)}
    feeds = {"q": _rand(rng, B, S, H), "k": _rand(rng, B, 7, H), "v": _rand(rng, B, 7, 8)}
    feeds |= {"mask": masks[mask]} if mask in masks else {}
    node = helper.make_node("MultiHeadAttention", ["q", "k", "v", "bias"] + (["mask"] if mask in masks else []),
                            ["y"], domain=MS, num_heads=N)
    assert_matches_ort(contrib_model([node], feeds, ["y"], {"bias": _rand(rng, 2 * H + 8)}), feeds)


def test_multi_head_attention_cache() -> None:
    rng = np.random.default_rng(9)
    feeds = {"q": _rand(rng, B, S, H), "k": _rand(rng, B, S, H), "v": _rand(rng, B, S, H),
             "past_k": _rand(rng, B, N, 2, H // N), "past_v": _rand(rng, B, N, 2, H // N)}
    node = helper.make_node("MultiHeadAttention", ["q", "k", "v", "", "", "", "past_k", "past_v"],
                            ["y", "present_k", "present_v"], domain=MS, num_heads=N, unidirectional=1)
    assert_matches_ort(contrib_model([node], feeds, ["y", "present_k", "present_v"]), feeds)


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("partial", [False, True])
def test_rotary_embedding(interleaved: int, partial: bool) -> None:
    """[B, S, N*D] with position ids [B, S], and [B, N, S, D] with one offset [1]; whole heads or their first R."""
    rng = np.random.default_rng(10)
    half = 1 if partial else 2
    caches = {"cos": _rand(rng, 10, half), "sin": _rand(rng, 10, half)}
    attrs = {"interleaved": interleaved, "num_heads": N} | ({"rotary_embedding_dim": 2} if partial else {})
    feeds = {"x": _rand(rng, B, S, H), "pos": np.array([[0, 1, 2, 3, 4], [2, 3, 4, 5, 6]], np.int64)}
    node = helper.make_node("RotaryEmbedding", ["x", "pos", "cos", "sin"], ["y"], domain=MS, **attrs)
    assert_matches_ort(contrib_model([node], feeds, ["y"], caches), feeds)
    feeds = {"x": _rand(rng, B, N, S, 4), "pos": np.array([3], np.int64)}
    assert_matches_ort(contrib_model([node], feeds, ["y"], caches), feeds)


GQA_D = 16  # ONNX Runtime's kernel wants heads of a multiple of 16 for rotary


def _gqa(rng: np.random.Generator, batch: int, length: int, past: int, kv_heads: int, packed: bool,
         rotary: bool, seqlens: list[int] | None = None, total: int | None = None,
         **attrs: object) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A GroupQueryAttention of N query heads over `kv_heads` key/value heads, typed by ONNX Runtime: a prompt
    (past 0: no past inputs) or `length` steps after a past of `past`; total_sequence_length a graph input."""
    width = N * GQA_D
    kv_width = kv_heads * GQA_D
    feeds = {"query": _rand(rng, batch, length, width + (2 * kv_width if packed else 0))}
    if not packed:
        feeds |= {"key": _rand(rng, batch, length, kv_width), "value": _rand(rng, batch, length, kv_width)}
    if past:
        feeds |= {"past_key": _rand(rng, batch, kv_heads, past, GQA_D),
                  "past_value": _rand(rng, batch, kv_heads, past, GQA_D)}
    total = past + length if total is None else total
    feeds |= {"seqlens_k": np.array(seqlens or [total - 1] * batch, np.int32),
              "total_sequence_length": np.array(total, np.int32)}
    inits = {"cos": np.cos(rng.random((32, 8)) * 3).astype(np.float32),
             "sin": np.sin(rng.random((32, 8)) * 3).astype(np.float32)} if rotary else {}
    names = ["query", "" if packed else "key", "" if packed else "value", "past_key" if past else "",
             "past_value" if past else "", "seqlens_k", "total_sequence_length", *inits]
    node = helper.make_node("GroupQueryAttention", names, ["y", "present_key", "present_value"],
                            name="gqa", domain=MS, num_heads=N, kv_num_heads=kv_heads, do_rotary=int(rotary),
                            **attrs)
    return contrib_model([node], feeds, ["y", "present_key", "present_value"], inits), feeds


@pytest.mark.parametrize("kv_heads", [2, 1])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("rotary", [False, True])
def test_group_query_attention_prompt_and_decode(kv_heads: int, packed: bool, rotary: bool) -> None:
    """A prompt of 5 (no past) and one decoding step after a past of 5; 4 query heads on 2 (or 1) key/value
    heads, packed QKV or not, with rotary embedding or not: output and present key/value as ONNX Runtime's."""
    rng = np.random.default_rng(21)
    model, feeds = _gqa(rng, B, S, 0, kv_heads, packed, rotary)
    assert_matches_ort(model, feeds)
    model, feeds = _gqa(rng, B, 1, S, kv_heads, packed, rotary)
    assert_matches_ort(model, feeds)


def test_group_query_attention_padded_batch_window_softcap() -> None:
    """A decoding step of a batch whose first row's past is shorter (seqlens_k 2 of a cache of 5: its step goes at
    2, zeros after), interleaved rotary at each row's position, also as a run-time batch; a local window of 2 and
    softcap on a prompt; smooth softmax on a next prompt (3 steps after a past of 4)."""
    rng = np.random.default_rng(22)
    model, feeds = _gqa(rng, B, 1, S, 2, False, True, seqlens=[2, 5], rotary_interleaved=1)
    assert_matches_ort(model, feeds)
    for value in [*model.graph.input, *model.graph.output]:  # the same as a run-time batch of up to 2
        if value.name != "total_sequence_length":
            value.type.tensor_type.shape.dim[0].dim_param = "batch"
    assert_matches_ort(model, feeds, max_batch=2)
    model, feeds = _gqa(rng, B, 7, 0, 2, True, False, local_window_size=2, softcap=2.0, scale=0.4)
    assert_matches_ort(model, feeds)
    model, feeds = _gqa(rng, 1, 3, 4, 1, False, True, smooth_softmax=1)
    assert_matches_ort(model, feeds)


def test_group_query_attention_one_module_for_every_cache_length() -> None:
    """A decoding step whose past is given as a range (--input-shape past_key=2,2,1..6,16): one module serves a
    cache of 3 and of 6 (rotary at each row's position, a padded row), present key/value at the run's length."""
    rng = np.random.default_rng(25)
    model, feeds = _gqa(rng, B, 1, 6, 2, False, True, seqlens=[4, 6])
    for value in [*model.graph.input[3:5], *model.graph.output[1:]]:
        value.type.tensor_type.shape.dim[2].dim_param = "P" if value.name.startswith("past") else "T"
    shapes = {name: (B, 2, 6, GQA_D) for name in ("past_key", "past_value")}
    module = WasmModel(convert_onnx(model, input_shapes=shapes,
                                    input_ranges={name: {2: (1, 6)} for name in shapes}).wasm)
    for past in (3, 6):
        run = feeds | {name: feeds[name][:, :, :past] for name in shapes} | {
            "seqlens_k": np.array([past - 2, past], np.int32), "total_sequence_length": np.array(past + 1, np.int32)}
        got = module.run(run)
        for name, want in zip(("y", "present_key", "present_value"), ort_run(model, run), strict=True):
            assert got[name].shape == want.shape, name
            np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5, err_msg=name)


def test_group_query_attention_prompt_with_a_sequence_range() -> None:
    """A prompt of packed QKV with rotary and the sequence given as a range (--input-shape query=1,1..7,128):
    one module for prompts of 3 and 7, its mask and positions at the run's length."""
    rng = np.random.default_rng(26)
    model, feeds = _gqa(rng, 1, 7, 0, 2, True, True)
    for value in [model.graph.input[0], model.graph.output[0]]:
        value.type.tensor_type.shape.dim[1].dim_param = "S"
    for value in model.graph.output[1:]:
        value.type.tensor_type.shape.dim[2].dim_param = "S"
    module = WasmModel(convert_onnx(model, input_shapes={"query": feeds["query"].shape},
                                    input_ranges={"query": {1: (1, 7)}}).wasm)
    for length in (3, 7):
        run = feeds | {"query": feeds["query"][:, :length], "seqlens_k": np.array([length - 1], np.int32),
                       "total_sequence_length": np.array(length, np.int32)}
        got = module.run(run)
        for name, want in zip(("y", "present_key", "present_value"), ort_run(model, run), strict=True):
            assert got[name].shape == want.shape, name
            np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5, err_msg=name)


def test_group_query_attention_refuses_another_present_at_run_time() -> None:
    """Compiled for a present of past + new steps, a run whose total_sequence_length asks for a shared buffer's
    (the past's own length) is refused naming the node; the same module serves the run it was compiled for."""
    rng = np.random.default_rng(23)
    model, feeds = _gqa(rng, B, 1, S, 2, False, False)
    module = WasmModel(convert_onnx(model).wasm)
    np.testing.assert_allclose(module.run(feeds)["y"], ort_run(model, feeds)[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"node 'gqa' \(GroupQueryAttention\).*total_sequence_length"):
        module.run(feeds | {"total_sequence_length": np.array(S, np.int32)})


def test_embed_layer_normalization() -> None:
    """Word, position and segment embeddings, LayerNormalization; mask_index and the sum before the norm."""
    rng = np.random.default_rng(11)
    feeds = {"ids": rng.integers(0, 30, (B, S)).astype(np.int32), "seg": rng.integers(0, 2, (B, S)).astype(np.int32),
             "mask": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32)}
    inits = {"word": _rand(rng, 30, H), "position": _rand(rng, 8, H), "segment": _rand(rng, 2, H),
             "gamma": _rand(rng, H), "beta": _rand(rng, H)}
    node = helper.make_node("EmbedLayerNormalization", ["ids", "seg", "word", "position", "segment", "gamma", "beta",
                                                        "mask"], ["y", "mask_index", "sum"], domain=MS)
    graph = helper.make_graph(
        [node], "embed", [helper.make_tensor_value_info(n, TensorProto.INT32, [B, S]) for n in feeds],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [B, S, H]),
         helper.make_tensor_value_info("mask_index", TensorProto.INT32, [B]),
         helper.make_tensor_value_info("sum", TensorProto.FLOAT, [B, S, H])],
        [numpy_helper.from_array(v, n) for n, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    assert_matches_ort(model, feeds)


@pytest.mark.parametrize(("bits", "zero_points"), [(4, "packed"), (4, None), (4, "float"), (8, "packed"),
                                                   (2, "packed")])
def test_matmul_nbits(bits: int, zero_points: str | None) -> None:
    """Block-wise N-bit weights (K not a multiple of the block), dequantized while compiling, then MatMul + bias."""
    rng = np.random.default_rng(12)
    k, n, block = 40, 6, 16
    blocks = -(-k // block)
    inits = {"b": rng.integers(0, 256, (n, blocks, block * bits // 8)).astype(np.uint8),
             "scales": (rng.random(n * blocks).astype(np.float32) + 0.1) * 0.1}
    if zero_points == "packed":
        inits["zero_points"] = rng.integers(0, 256, (n, -(-blocks * bits // 8))).astype(np.uint8)
    elif zero_points == "float":
        inits["zero_points"] = _rand(rng, n * blocks)
    names = list(inits) + ([""] if zero_points is None else []) + ["", "bias"]
    inits["bias"] = _rand(rng, n)
    feeds = {"a": _rand(rng, 2, 3, k)}
    node = helper.make_node("MatMulNBits", ["a", *names], ["y"], domain=MS, K=k, N=n, bits=bits, block_size=block)
    assert_matches_ort(contrib_model([node], feeds, ["y"], inits), feeds, atol=1e-4)


def test_dequantize_nbits_unpacks_low_bits_first() -> None:
    """Byte 0x21 holds the 4-bit values 1 then 2; with the default zero point 8 and scale 0.5: -3.5, -3."""
    packed = np.full((1, 1, 8), 0x21, np.uint8)
    weights = dequantize_nbits(packed, np.array([0.5], np.float32), None, k=16, n=1, bits=4, block_size=16)
    assert weights.shape == (16, 1)
    assert weights[:4, 0].tolist() == [-3.5, -3.0, -3.5, -3.0]


def test_group_query_attention_constant_total_for_another_present_is_refused_by_name() -> None:
    """A constant total_sequence_length that is not the past's length + the new steps (a shared past/present
    buffer of 8 with 3 steps in it) is refused while compiling, naming the node and the value."""
    rng = np.random.default_rng(28)
    model, _ = _gqa(rng, 1, 1, 8, 2, False, False)
    graph = model.graph
    total = next(i for i in graph.input if i.name == "total_sequence_length")
    graph.input.remove(total)
    graph.initializer.append(numpy_helper.from_array(np.array(4, np.int32), "total_sequence_length"))
    with pytest.raises(UnsupportedModel, match=r"node 'gqa'.*total_sequence_length=\[4\] is not the past's 8 \+"):
        convert_onnx(model)


# ---------------------------------------------------------------------------------------- ONNX's composite ops


def test_onnx_attention_rotary_rms_norm() -> None:
    """Opset 23's Attention (4-D, 3-D with grouped heads, causal with a float mask), RotaryEmbedding and
    RMSNormalization (over the last axes from 1), expanded into their function bodies."""
    rng = np.random.default_rng(13)
    q, k, v = _rand(rng, 2, 4, 5, 8), _rand(rng, 2, 4, 6, 8), _rand(rng, 2, 4, 6, 8)
    feeds = {"q": q, "k": k, "v": v}
    node = helper.make_node("Attention", ["q", "k", "v", "mask"], ["y"], is_causal=1)
    assert_matches_ort(graph_model([node], feeds, ["y"], {"mask": _rand(rng, 5, 6)}, opset=23), feeds)
    feeds = {"q": _rand(rng, 2, 5, 16), "k": _rand(rng, 2, 6, 8), "v": _rand(rng, 2, 6, 8)}
    node = helper.make_node("Attention", ["q", "k", "v"], ["y"], q_num_heads=4, kv_num_heads=2)
    assert_matches_ort(graph_model([node], feeds, ["y"], opset=23), feeds)
    feeds = {"x": _rand(rng, 2, 4, 5, 8), "pos": np.array([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]], np.int64)}
    node = helper.make_node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"], interleaved=1)
    assert_matches_ort(graph_model([node], feeds, ["y"], {"cos": _rand(rng, 10, 4), "sin": _rand(rng, 10, 4)},
                                   opset=23), feeds)
    feeds = {"x": _rand(rng, 2, 5, 16)}
    node = helper.make_node("RMSNormalization", ["x", "scale"], ["y"], axis=1, epsilon=1e-6)
    assert_matches_ort(graph_model([node], feeds, ["y"], {"scale": _rand(rng, 5, 16)}, opset=23), feeds)


def test_onnx_swiglu() -> None:
    """Opset 28's SwiGLU: Swish(A, alpha) * B (ONNX Runtime has no kernel for it yet: numpy is the reference)."""
    rng = np.random.default_rng(14)
    a, b = _rand(rng, 3, 8), _rand(rng, 3, 8)
    model = graph_model([helper.make_node("SwiGLU", ["a", "b"], ["y"], alpha=1.5)], {"a": a, "b": b}, ["y"], opset=28)
    got = wasm_run(model, {"a": a, "b": b})[0]
    np.testing.assert_allclose(got, a / (1 + np.exp(-1.5 * a)) * b, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------- what is declined


def _declared(op: str, inputs: dict[str, np.ndarray], inits: dict[str, np.ndarray], output: tuple[int, ...],
              **attrs: object) -> onnx.ModelProto:
    """A one-node contrib model whose output type is declared (ONNX Runtime may not run what is refused)."""
    node = helper.make_node(op, [*inputs, *inits], ["y"], name=f"{op.lower()}_node", domain=MS, **attrs)
    graph = helper.make_graph(
        [node], "m", [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                      for n, v in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(output))],
        [numpy_helper.from_array(v, n) for n, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])


X = np.zeros((1, S, H), np.float32)
W = {"w": np.zeros((H, 3 * H), np.float32)}
CACHES = {"cos": np.ones((8, 2), np.float32), "sin": np.ones((8, 2), np.float32)}
REFUSED = {
    "do_rotary=1 is not supported": ("Attention", {"x": X}, W, {"num_heads": N, "do_rotary": 1}),
    "a mask of shape [1, 1, 8, 8]": ("Attention", {"x": X}, W | {"bias": np.zeros(3 * H, np.float32),
                                                                 "mask": np.ones((1, 1, 8, 8), np.int32)},
                                     {"num_heads": N}),
    "transBatchA=1": ("FusedMatMul", {"a": np.zeros((2, 3, 4), np.float32), "b": np.zeros((2, 4, 5), np.float32)}, {},
                      {"transBatchA": 1}),
    "packed QKV": ("MultiHeadAttention", {"q": np.zeros((1, S, N, 3, 4), np.float32)}, {}, {"num_heads": N}),
    "is_packed_batching=1": ("RotaryEmbedding", {"x": X, "pos": np.zeros((1, S), np.int64)}, CACHES,
                             {"num_heads": N, "is_packed_batching": 1}),
    "activation='Elu'": ("FusedConv", {"x": np.zeros((1, 3, 8, 8), np.float32)}, {"w": np.zeros((4, 3, 3, 3),
                                                                                                   np.float32)},
                         {"activation": "Elu", "kernel_shape": [3, 3]}),
    "bits=3 is not supported": ("MatMulNBits", {"a": np.zeros((1, 16), np.float32)},
                                {"b": np.zeros((2, 1, 6), np.uint8), "scales": np.ones(2, np.float32)},
                                {"K": 16, "N": 2, "bits": 3, "block_size": 16}),
}


@pytest.mark.parametrize("reason", list(REFUSED))
def test_unsupported_forms_are_refused_by_name(reason: str) -> None:
    """What a rewrite does not support is refused with the node's name and the attribute or input, never run."""
    op, inputs, inits, attrs = REFUSED[reason]
    with pytest.raises(UnsupportedModel) as refused:
        convert_onnx(_declared(op, inputs, inits, (1, S, H), **attrs))
    assert f"node '{op.lower()}_node'" in str(refused.value) and reason in str(refused.value)


def test_matmul_nbits_refuses_run_time_weights() -> None:
    node = helper.make_node("MatMulNBits", ["a", "b", "scales"], ["y"], name="lm_head", domain=MS, K=16, N=2, bits=4,
                            block_size=16)
    graph = helper.make_graph(
        [node], "m", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 16]),
                      helper.make_tensor_value_info("b", TensorProto.UINT8, [2, 1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(np.ones(2, np.float32), "scales")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    with pytest.raises(UnsupportedModel, match=r"node 'lm_head'.*computed at run time"):
        convert_onnx(model)


# ---------------------------------------------------------------------------------------- real fused graphs


BERT_FEEDS = {"input_ids": np.random.default_rng(15).integers(0, 64, (2, 7)).astype(np.int64),
              "attention_mask": np.array([[1] * 7, [1] * 5 + [0] * 2], np.int64)}
BERT_SHAPES = {"input_ids": (1, 7), "attention_mask": (1, 7)}


def _compare_with_unfused(fused: onnx.ModelProto, original: onnx.ModelProto) -> None:
    """The fused graph compiled, run on a batch of two (one sample padded), against ONNX Runtime on the original."""
    want = ort_run(original, BERT_FEEDS)
    got = wasm_run(fused, BERT_FEEDS, max_batch=2, input_shapes=BERT_SHAPES)
    for expected, actual in zip(want, got, strict=True):
        assert actual.shape == expected.shape
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_bert_fused_by_the_transformer_optimizer() -> None:
    """onnxruntime.transformers.optimizer (model_type bert) fuses the encoder into EmbedLayerNormalization (with
    the mask), Attention (its mask_index), SkipLayerNormalization and BiasGelu; the result matches."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    original = transformer_encoder(fusable=True)
    options = FusionOptions("bert")
    options.enable_shape_inference = False  # symbolic shape inference needs sympy, which it may not have
    optimized = optimize_model(original, model_type="bert", num_heads=4, hidden_size=32, opt_level=0,
                               optimization_options=options)
    with tempfile.TemporaryDirectory() as folder:
        optimized.save_model_to_file(str(Path(folder) / "fused.onnx"))
        fused = onnx.load(str(Path(folder) / "fused.onnx"))
    ops = Counter(n.op_type for n in fused.graph.node if n.domain == MS)
    assert ops == {"EmbedLayerNormalization": 1, "Attention": 2, "SkipLayerNormalization": 4, "BiasGelu": 2}
    _compare_with_unfused(fused, original)


def test_bert_fused_by_onnx_runtime_sessions() -> None:
    """ONNX Runtime's own graph optimiser (extended level, as a session writes its optimised model) fuses
    FusedMatMul (the scaled scores), BiasGelu and FusedGemm (the pooler's Gemm + Tanh)."""
    original = transformer_encoder()
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(Path(folder) / "fused.onnx")
        ort.InferenceSession(original.SerializeToString(), options, providers=["CPUExecutionProvider"])
        fused = onnx.load(options.optimized_model_filepath)
    ops = Counter(n.op_type for n in fused.graph.node if n.domain == MS)
    assert ops == {"FusedMatMul": 2, "BiasGelu": 2, "FusedGemm": 1}
    _compare_with_unfused(fused, original)


def test_bias_gelu_then_matmul_at_opset_17() -> None:
    """The Gelu a BiasGelu becomes is unknown to ONNX's inference before opset 20: what follows it is still typed."""
    rng = np.random.default_rng(16)
    feeds = {"x": _rand(rng, 1, S, H)}
    nodes = [helper.make_node("BiasGelu", ["x", "bias"], ["g"], domain=MS),
             helper.make_node("MatMul", ["g", "w"], ["y"])]
    assert_matches_ort(contrib_model(nodes, feeds, ["y"], {"bias": _rand(rng, H), "w": _rand(rng, H, 8)}), feeds)


def test_fused_bert_with_a_sequence_range() -> None:
    """--input-shape input_ids=1,2..7: the masks and positions of the rewritten EmbedLayerNormalization and
    Attention follow the run's length (built from its shape, not at the largest); one module, two lengths."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    original = transformer_encoder(fusable=True)
    options = FusionOptions("bert")
    options.enable_shape_inference = False
    optimized = optimize_model(original, model_type="bert", num_heads=4, hidden_size=32, opt_level=0,
                               optimization_options=options)
    with tempfile.TemporaryDirectory() as folder:
        optimized.save_model_to_file(str(Path(folder) / "fused.onnx"))
        fused = onnx.load(str(Path(folder) / "fused.onnx"))
    ranges = {"input_ids": {1: (2, 7)}, "attention_mask": {1: (2, 7)}}
    module = WasmModel(convert_onnx(fused, input_shapes=BERT_SHAPES, input_ranges=ranges).wasm)
    for length in (3, 7):
        feeds = {"input_ids": BERT_FEEDS["input_ids"][:1, :length],
                 "attention_mask": np.array([[1] * (length - 1) + [0]], np.int64)}
        got = module.run(feeds)
        for name, want in zip(("hidden", "pooled"), ort_run(original, feeds), strict=True):
            assert got[name].shape == want.shape
            np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-4)


def test_causal_attention_with_a_sequence_range() -> None:
    """A unidirectional Attention with a lengths mask_index over a symbolic sequence: the causal mask is built at
    the run's length."""
    rng = np.random.default_rng(17)
    inits = {"w": _rand(rng, H, 3 * H) * 0.3, "b": _rand(rng, 3 * H)}
    feeds = {"x": _rand(rng, 1, 7, H), "lengths": np.array([6], np.int32)}
    node = helper.make_node("Attention", ["x", "w", "b", "lengths"], ["y"], domain=MS, num_heads=N, unidirectional=1)
    model = contrib_model([node], feeds, ["y"], inits)
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[1].dim_param = "S"
    module = WasmModel(convert_onnx(model, input_shapes={"x": (1, 7, H)}, input_ranges={"x": {1: (2, 7)}}).wasm)
    for length in (3, 7):
        run = {"x": feeds["x"][:, :length], "lengths": np.array([length - 1], np.int32)}
        np.testing.assert_allclose(module.run(run)["y"], ort_run(model, run)[0], rtol=1e-4, atol=1e-5)


def test_two_contrib_nodes_the_frontend_names_alike() -> None:
    """The values a rewrite adds (FusedMatMul's alpha) are named under its node's name: a node named
    "FusedMatMul_1" and an unnamed one at index 1 (which the frontend names "FusedMatMul_1") keep theirs apart."""
    rng = np.random.default_rng(18)
    feeds = {"a": _rand(rng, 4, 6)}
    nodes = [helper.make_node("FusedMatMul", ["a", "w1"], ["h"], name="FusedMatMul_1", domain=MS, alpha=0.5),
             helper.make_node("FusedMatMul", ["h", "w2"], ["y"], domain=MS, alpha=3.0)]
    assert_matches_ort(contrib_model(nodes, feeds, ["y"], {"w1": _rand(rng, 6, 5), "w2": _rand(rng, 5, 3)}), feeds)


def _nbits_model(k: int, n: int, block: int, zero_points: bool, rows: tuple[int, ...], seed: int = 19,
                 bias: bool = True) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    blocks = -(-k // block)
    inits = {"b": rng.integers(0, 256, (n, blocks, block // 2)).astype(np.uint8),
             "scales": (rng.random(n * blocks).astype(np.float32) + 0.1) * 0.1}
    names = ["b", "scales"]
    if zero_points:
        inits["zero_points"] = rng.integers(0, 256, (n, -(-blocks // 2))).astype(np.uint8)
        names.append("zero_points")
    if bias:
        names += [""] * (4 - len(names)) + ["bias"]  # zero_points and g_idx left out
        inits["bias"] = _rand(rng, n)
    feeds = {"a": _rand(rng, *rows, k)}
    node = helper.make_node("MatMulNBits", ["a", *names], ["y"], domain=MS, K=k, N=n, bits=4, block_size=block)
    return contrib_model([node], feeds, ["y"], inits), feeds


@pytest.mark.parametrize(("k", "n", "block", "zero_points", "rows"), [
    (40, 6, 16, True, (2, 3)), (64, 8, 32, False, (1,)), (256, 13, 64, True, (5,)), (128, 4, 128, False, (1, 1)),
    (96, 1, 32, True, (3,))])
def test_matmul_nbits_kernel_runs_4_bit_weights_packed(k: int, n: int, block: int, zero_points: bool,
                                                      rows: tuple[int, ...]) -> None:
    """The 4-bit kernel (lowering/nbits.py): K past whole blocks, N past whole groups of four (and one column),
    rows in batch dims, default or packed zero points; ONNX Runtime's results."""
    model, feeds = _nbits_model(k, n, block, zero_points, rows)
    result = convert_onnx(model)
    assert result.stats["ops"] == ["MatMulNBits"], result.stats["ops"]  # the kernel, no MatMul of floats
    assert_matches_ort(model, feeds, atol=1e-4)


def test_matmul_nbits_module_keeps_the_weights_at_4_bits() -> None:
    """1024 x 512 weights: 256 KiB at 4 bits, 2 MiB as float32; the module holds the former."""
    model, feeds = _nbits_model(1024, 512, 32, True, (1,), bias=False)
    result = convert_onnx(model)
    assert len(result.wasm) < 512 * 1024, len(result.wasm)
    got = WasmModel(result.wasm).run(feeds)["y"]
    np.testing.assert_allclose(got, ort_run(model, feeds)[0], rtol=1e-4, atol=1e-3)


def test_matmul_nbits_kernel_per_sample_batch() -> None:
    """A dynamic batch runs the 4-bit kernel once per sample (its batch rule: A's rows)."""
    model, _ = _nbits_model(64, 6, 32, True, (1, 3))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    feeds = {"a": _rand(np.random.default_rng(20), 2, 3, 64)}
    assert_matches_ort(model, feeds, atol=1e-4, max_batch=2)
