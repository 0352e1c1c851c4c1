"""One Backend interface: a module, its ONNX source under ONNX Runtime, and a TFLite model under LiteRT
describe their tensors the same way (runtime/base.py) and run by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from tests import model_zoo
from wasinfer.artifact import convert_onnx
from wasinfer.runtime import Backend, ModelInfo, TensorSpec, WasmModel
from wasinfer.runtime.litert import LiteRtModel
from wasinfer.runtime.onnxruntime import OnnxRuntimeModel

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _run(backend: Backend, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch)
    feeds = {spec.name: rng.random([batch if d == -1 else d for d in spec.shape]).astype(spec.dtype)
             for spec in backend.info.inputs}
    return backend.run(feeds)


def test_a_module_and_its_source_describe_the_same_tensors(tmp_path: Path) -> None:
    model = model_zoo.mobilenet_like()
    onnx.save(model, tmp_path / "m.onnx")
    module = WasmModel(convert_onnx(model, max_batch=4).wasm)
    source = OnnxRuntimeModel(tmp_path / "m.onnx")
    backends: list[Backend] = [module, source]
    for backend in backends:
        assert isinstance(backend.info, ModelInfo)
    assert module.info.inputs == source.info.inputs == [TensorSpec("image", "float32", [-1, 3, 32, 32], 0)]
    assert [(s.dtype, s.shape, s.batch_axis) for s in module.info.outputs] == \
           [(s.dtype, s.shape, s.batch_axis) for s in source.info.outputs]
    assert module.info.max_batch == 4 and source.info.max_batch is None
    ours, theirs = _run(module, 3), _run(source, 3)
    for name, value in ours.items():
        np.testing.assert_allclose(value, theirs[name], rtol=1e-4, atol=1e-5)


def test_a_litert_model_is_a_backend_too() -> None:
    model = LiteRtModel(FIXTURES / "dense_softmax.tflite")
    assert model.info.inputs[0].batch_axis == 0 and model.info.inputs[0].shape[0] == -1
    outputs = _run(model, 2)
    assert set(outputs) == {s.name for s in model.info.outputs}
    assert all(array.shape[0] == 2 for array in outputs.values())
