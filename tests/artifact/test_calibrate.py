"""`convert --quantize int8 --calibration DIR`: ONNX Runtime's static quantization on the user's samples, the
quantized layers on wasinfer's integer kernels, and the effect on the outputs measured against the float model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.parity import ort_run
from wasinfer.artifact import convert_onnx
from wasinfer.artifact.calibrate import quantize_static, read_samples
from wasinfer.cli.main import main
from wasinfer.runtime import WasmModel


def mlp() -> onnx.ModelProto:
    """x [N, 32] → Gemm 64 → Relu → Gemm 10 → Softmax: trained-looking weights (seeded), a classifier's shape."""
    rng = np.random.default_rng(11)
    w1, w2 = rng.standard_normal((32, 64)) / 6, rng.standard_normal((64, 10)) / 8
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])],
                              [numpy_helper.from_array(w1.astype(np.float32), "w1"),
                               numpy_helper.from_array(np.full(64, 0.05, np.float32), "b1"),
                               numpy_helper.from_array(w2.astype(np.float32), "w2"),
                               numpy_helper.from_array(np.zeros(10, np.float32), "b2")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def samples(count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, 32)).astype(np.float32)} for _ in range(count)]


def test_the_quantized_module_runs_int8_products_and_computes_what_onnx_runtime_computes() -> None:
    model, calibration = mlp(), samples(16)
    result = convert_onnx(model, quantize="int8", calibration=calibration)
    assert "QGemmInt8" in result.stats["ops"] and "Gemm" not in result.stats["ops"]  # both layers in int8
    assert result.metadata.compile_options["quantize"] == "int8"
    assert result.metadata.compile_options["calibration_samples"] == 16
    quantized = quantize_static(model, calibration)  # the same quantizer, the same samples: the same model
    [last] = [n for n in quantized.graph.node if n.output[0] == "probs"]  # the output's DequantizeLinear
    step = float(numpy_helper.to_array(next(t for t in quantized.graph.initializer if t.name == last.input[1])))
    module = WasmModel(result.wasm)
    for feeds in samples(8, seed=1):
        got, want = module.run(feeds)["probs"], ort_run(quantized, feeds)[0]
        np.testing.assert_allclose(got, want, atol=step * 1.001)  # within one quantization step of ORT's
        float_probs = ort_run(model, feeds)[0]
        assert np.abs(got - float_probs).max() < 0.05 and got.argmax() == float_probs.argmax()


def test_samples_are_read_by_name_and_refused_saying_why(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no \.npy or \.npz files"):
        read_samples(tmp_path, ["x"])
    np.save(tmp_path / "a.npy", np.zeros((1, 32), np.float32))
    assert [sorted(s) for s in read_samples(tmp_path, ["x"])] == [["x"]]
    with pytest.raises(ValueError, match=r"has 2 inputs .*give each sample as an \.npz"):
        read_samples(tmp_path, ["x", "y"])
    (tmp_path / "a.npy").unlink()
    np.savez(tmp_path / "b.npz", x=np.zeros(3), z=np.zeros(3))
    with pytest.raises(ValueError, match=r"b.npz: holds \['x', 'z'\], the model's inputs are \['x', 'y'\]"):
        read_samples(tmp_path, ["x", "y"])


def test_the_cli_quantizes_and_reports_the_drop_against_the_float_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx.save(mlp(), tmp_path / "m.onnx")
    (tmp_path / "cal").mkdir()
    for index, feeds in enumerate(samples(6)):
        np.save(tmp_path / "cal" / f"{index}.npy", feeds["x"])
    args = ["convert", str(tmp_path / "m.onnx"), "--input-shape", "x=1,32", "--quantize", "int8"]
    assert main([*args, "--calibration", str(tmp_path / "cal"), "--json"]) == 0
    [drop] = json.loads(capsys.readouterr().out)["quantization"]
    assert drop["name"] == "probs" and 0 < drop["max_abs"] < 0.05 and drop["argmax_agreement"] == 1.0
    assert main(args) == 2  # no samples
    assert "--quantize int8 needs --calibration DIR" in capsys.readouterr().err
    assert main([*args[:-2], "--calibration", str(tmp_path / "cal")]) == 2
    assert "--calibration is for --quantize int8" in capsys.readouterr().err


def test_validate_reports_the_drop_against_the_float_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`validate --reference float.onnx` on a quantized module measures how far it moved instead of failing
    float32 parity (which a quantized module cannot hold)."""
    onnx.save(mlp(), tmp_path / "m.onnx")
    (tmp_path / "cal").mkdir()
    for index, feeds in enumerate(samples(6)):
        np.save(tmp_path / "cal" / f"{index}.npy", feeds["x"])
    assert main(["convert", str(tmp_path / "m.onnx"), "--input-shape", "x=1,32", "--quantize", "int8",
                 "--calibration", str(tmp_path / "cal"), "--json"]) == 0
    capsys.readouterr()
    assert main(["validate", str(tmp_path / "m.wasm"), "--reference", str(tmp_path / "m.onnx"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [check] = [c for c in report["checks"] if "against the float model" in c["name"]]
    assert check["ok"] and "probs: max |diff|" in check["detail"] and "argmax agrees" in check["detail"]
    assert not any("parity with ONNX Runtime" in c["name"] for c in report["checks"])
