"""Execution providers of the ONNX Runtime backend: CUDA first where the wheel has it, CPU on request.

The CUDA comparison needs the onnxruntime-gpu wheel and a GPU; elsewhere it skips and says
why. The choice of providers itself is checked everywhere.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from wasinfer.runtime.onnxruntime import CPU, CUDA, PROVIDERS_ENV, OnnxRuntimeModel, choose_providers


def softmax_model() -> bytes:
    """probabilities = softmax(x W + b): FP32 [N, 4] → FP32 [N, 3]."""
    rng = np.random.default_rng(7)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)], "softmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "w"),
         numpy_helper.from_array(rng.normal(size=(3,)).astype(np.float32), "b")])
    model: onnx.ModelProto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return model.SerializeToString()


@pytest.fixture(autouse=True)
def no_provider_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says what it wants; a WASINFER_ORT_PROVIDERS in the caller's shell must not decide."""
    monkeypatch.delenv(PROVIDERS_ENV, raising=False)


def test_cuda_matches_cpu() -> None:
    if CUDA not in ort.get_available_providers():
        pytest.skip(f"onnxruntime has no {CUDA} here (CPU-only wheel; it has "
                    f"{', '.join(ort.get_available_providers())})")
    model = OnnxRuntimeModel(softmax_model(), name="softmax")
    if model.info.providers[:1] != (CUDA,):
        pytest.skip(f"onnxruntime has {CUDA} but could not start it (no GPU or CUDA libraries?); "
                    f"the session runs on {model.info.providers}")
    assert model.info.providers == (CUDA, CPU)
    x = np.random.default_rng(1).normal(size=(64, 4)).astype(np.float32)
    on_gpu = model.run({"x": x})["probabilities"]
    on_cpu = OnnxRuntimeModel(softmax_model(), providers="cpu").run({"x": x})["probabilities"]
    assert on_gpu.shape == (64, 3) and on_gpu.dtype == np.float32
    # MatMul may run in TF32 on recent GPUs: about 3 decimal digits
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=2e-3, atol=1e-4)


def test_forcing_cpu_by_argument() -> None:
    model = OnnxRuntimeModel(softmax_model(), providers=["CPUExecutionProvider"])
    assert model.info.providers == ("CPUExecutionProvider",)
    assert model.session.get_providers() == ["CPUExecutionProvider"]
    probabilities = model.run({"x": np.ones((2, 4), np.float32)})["probabilities"]
    np.testing.assert_allclose(probabilities.sum(axis=1), [1, 1], rtol=1e-6)


def test_forcing_cpu_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROVIDERS_ENV, " cpu ")
    assert OnnxRuntimeModel(softmax_model()).info.providers == ("CPUExecutionProvider",)


def test_cuda_comes_first_when_the_wheel_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert choose_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("cpu") == ["CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["AzureExecutionProvider", "CPUExecutionProvider"])
    assert choose_providers() == ["CPUExecutionProvider"]


def test_asking_for_a_provider_that_is_not_there_is_an_error() -> None:
    missing = CUDA if CUDA not in ort.get_available_providers() else "NoSuchExecutionProvider"
    with pytest.raises(ValueError, match=f"{missing}.*not available here.*{CPU}"):
        OnnxRuntimeModel(softmax_model(), providers=[missing, CPU])
    with pytest.raises(ValueError, match="no ONNX Runtime execution provider named in ' , '"):
        choose_providers(" , ")
