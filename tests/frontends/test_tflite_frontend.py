"""The TFLite frontend: the committed `.tflite` fixtures (tests/fixtures/make_tflite.py) compile and
match LiteRT, unsupported and dynamic-range quantized models are declined with every problem listed,
damaged files fail clearly, and `wasinfer convert` takes a `.tflite` file. Op by op:
test_tflite_builtins.py; full-integer (int8/uint8) models, dense_int8.tflite among them: test_tflite_int8.py."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.tflite_builder import Quant, TfliteBuilder
from wasinfer.artifact.convert import convert_model, convert_onnx
from wasinfer.backends.wasm import UnsupportedModel
from wasinfer.cli.main import main
from wasinfer.frontends import FrontendError
from wasinfer.frontends.tflite import is_tflite, load_tflite, tflite_to_onnx
from wasinfer.runtime.litert import LiteRtModel
from wasinfer.runtime.wasm import WasmModel

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# fixture → (batch to run, whether the model leaves the batch to run time)
MODELS = {"dense_softmax": (3, True), "conv_fixed": (1, False), "misc_ops": (1, False), "more_ops": (1, False),
          "extra_ops": (1, False), "cumsum_topk": (1, False), "mobilenet_mini": (2, True),
          "mobilenet_mini_fp16": (2, True)}


def feeds_for(model: LiteRtModel, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {spec.name: rng.normal(size=[batch if d == -1 else d for d in spec.shape]).astype(np.float32)
            for spec in model.info.inputs}


@pytest.mark.parametrize("fixture", sorted(MODELS))
def test_fixture_matches_litert(fixture: str) -> None:
    path = FIXTURES / f"{fixture}.tflite"
    batch, dynamic = MODELS[fixture]
    result = convert_model(path, max_batch=4 if dynamic else 1)
    reference = LiteRtModel(path)
    assert result.metadata.source_format == "tflite"
    assert result.metadata.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # Same names, order and per-sample shapes as LiteRT serves the model with.
    assert [t.name for t in result.metadata.inputs] == reference.input_names()
    assert [t.name for t in result.metadata.outputs] == reference.output_names()
    for ours, theirs in zip(result.metadata.outputs, reference.info.outputs, strict=True):
        assert ours.shape[1:] == theirs.shape[1:] and (ours.batch_axis == 0) == dynamic
    feeds = feeds_for(reference, batch)
    expected, got = reference.run(feeds), WasmModel(result.wasm).run(feeds)
    for name, want in expected.items():
        assert got[name].shape == want.shape
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5, err_msg=f"{fixture}: {name}")


def test_mobilenet_matches_tensorflow_too() -> None:
    """The converter's source function, not only LiteRT: checks the fixture's own reference outputs."""
    with np.load(FIXTURES / "tflite_reference.npz") as data:
        image, features, probabilities = (data[f"mobilenet_{k}"] for k in ("image", "features", "probabilities"))
    module = WasmModel(convert_model(FIXTURES / "mobilenet_mini.tflite", max_batch=2).wasm)
    got = module.run({"image": image})
    np.testing.assert_allclose(got["features"], features, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["probabilities"], probabilities, rtol=1e-4, atol=1e-6)


def test_layout_transposes_only_at_the_boundaries() -> None:
    """Convs, pools, elementwise ops and the concat between them stay channels-first: the MobileNet
    has one Transpose for its NHWC input and one before the RESHAPE/output of its NHWC features."""
    graph = load_tflite(FIXTURES / "mobilenet_mini.tflite").graph
    ops = [n.op_type for n in graph.nodes]
    assert ops.count("Transpose") == 2 and ops.count("Conv") == 6
    assert "Pad" not in ops  # the zero PAD became the next conv's pads
    # The model's own TRANSPOSE and the relayout for the conv after it are one Transpose.
    misc = [n.op_type for n in load_tflite(FIXTURES / "misc_ops.tflite").graph.nodes]
    assert misc.count("Transpose") == 1


def test_fp16_weights_are_float32_constants() -> None:
    graph = load_tflite(FIXTURES / "mobilenet_mini_fp16.tflite").graph
    assert not any(n.op_type in ("Cast", "DequantizeLinear") for n in graph.nodes)
    assert all(value.dtype != np.float16 for value in graph.constants.values())


def unsupported_model(path: Path) -> Path:
    """x → ATAN2 → BITCAST: two builtins the compiler has no kernel for."""
    b = TfliteBuilder()
    x = b.input([1, 8], name="x")
    angle = b.op("ATAN2", [x, x])
    b.tensors[angle].name = "Atan2"
    bits = b.op("BITCAST", [angle])
    b.tensors[bits].name = "Bitcast"
    path.write_bytes(b.build([bits]))
    return path


def test_unsupported_ops_are_all_listed(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModel) as caught:
        convert_model(unsupported_model(tmp_path / "unsupported_ops.tflite"))
    problems = caught.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("operator 0 (ATAN2, output 'Atan2')") and "not supported" in problems[0]
    assert problems[1].startswith("operator 1 (BITCAST, output 'Bitcast')") and "not supported" in problems[1]


def test_dynamic_range_model_is_declined(tmp_path: Path) -> None:
    """int8 weights read by a float32 input: LiteRT's hybrid kernel quantizes the input at run time, which
    "dequantize, compute, quantize" does not reproduce, so it is declined, naming the operator."""
    b = TfliteBuilder()
    x = b.input([2, 8], name="x")
    w = b.const(np.ones((4, 8), np.int8), quant=Quant([0.02] * 4, [0] * 4))
    y = b.op("FULLY_CONNECTED", [x, w])
    b.tensors[y].name = "y"
    path = tmp_path / "hybrid.tflite"
    path.write_bytes(b.build([y]))
    with pytest.raises(UnsupportedModel) as caught:
        load_tflite(path)
    assert caught.value.problems[0].startswith("operator 0 (FULLY_CONNECTED, output 'y')")
    assert "'x' (float32)" in caught.value.problems[0] and "dynamic-range" in caught.value.problems[0]


@pytest.mark.parametrize("damage", ["truncated", "no_identifier", "garbage"])
def test_corrupt_file_is_a_frontend_error(tmp_path: Path, damage: str) -> None:
    raw = (FIXTURES / "mobilenet_mini.tflite").read_bytes()
    content = {"truncated": raw[:200], "no_identifier": raw[:4] + b"XXXX" + raw[8:],
               "garbage": raw[:8] + bytes(range(256)) * 4}[damage]
    if damage == "no_identifier":
        with pytest.raises(FrontendError, match="not a TensorFlow Lite model"):
            tflite_to_onnx(content, "model.tflite")
        return
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    assert is_tflite(path)
    with pytest.raises(FrontendError, match="not a valid TensorFlow Lite model"):
        convert_model(path)


def test_format_is_told_by_content(tmp_path: Path) -> None:
    renamed = tmp_path / "model.bin"
    shutil.copy(FIXTURES / "dense_softmax.tflite", renamed)
    assert convert_model(renamed).metadata.source_format == "tflite"
    with pytest.raises(FrontendError):  # the ONNX entry point does not sniff
        convert_onnx(renamed)


def test_cli_converts_tflite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "conv_fixed.tflite"
    shutil.copy(FIXTURES / "conv_fixed.tflite", source)
    assert main(["convert", str(source)]) == 0
    wasm = tmp_path / "conv_fixed.wasm"
    feeds = feeds_for(LiteRtModel(source), 1)
    got, want = WasmModel(wasm.read_bytes()).run(feeds), LiteRtModel(source).run(feeds)
    np.testing.assert_allclose(got["logits"], want["logits"], rtol=1e-4, atol=1e-5)
    assert "tflite" in capsys.readouterr().out

    bad = unsupported_model(tmp_path / "unsupported_ops.tflite")
    assert main(["convert", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "ATAN2" in err and "BITCAST" in err and not (tmp_path / "unsupported_ops.wasm").exists()
