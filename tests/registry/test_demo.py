"""The built-in demo model: accurate, deterministic, cached on disk, and compiled faithfully."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.parity import ort_run
from wasinfer.artifact import convert_onnx
from wasinfer.registry.demo import DemoModel, build_demo_model, ensure_demo_model, load_test_split
from wasinfer.runtime import WasmModel

pytest.importorskip("sklearn", reason="building the demo model needs scikit-learn")
pytest.importorskip("skl2onnx", reason="building the demo model needs skl2onnx")

MAX_BATCH = 64


@pytest.fixture(scope="module")
def demo() -> DemoModel:
    return build_demo_model()


def test_demo_model_is_accurate_and_shaped_as_documented(demo: DemoModel) -> None:
    assert demo.accuracy >= 0.95
    assert demo.x_test.dtype == np.float32 and demo.x_test.shape == (len(demo.y_test), 64)
    model = onnx.load_from_string(demo.onnx)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["label", "probabilities"]
    assert not any(n.op_type == "ZipMap" for n in model.graph.node)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 0  # dynamic batch


def test_demo_model_is_deterministic(demo: DemoModel) -> None:
    again = build_demo_model()
    assert again.onnx == demo.onnx
    np.testing.assert_array_equal(again.x_test, demo.x_test)


def test_compiled_demo_matches_onnxruntime_on_the_whole_test_split(demo: DemoModel) -> None:
    model = onnx.load_from_string(demo.onnx)
    module = WasmModel(convert_onnx(model, max_batch=MAX_BATCH).wasm)
    labels, probabilities = [], []
    for start in range(0, len(demo.x_test), MAX_BATCH):
        out = module.run({"input": demo.x_test[start:start + MAX_BATCH]})
        labels.append(out["label"])
        probabilities.append(out["probabilities"])
    want_labels, want_probabilities = ort_run(model, {"input": demo.x_test})
    np.testing.assert_array_equal(np.concatenate(labels), want_labels)
    np.testing.assert_allclose(np.concatenate(probabilities), want_probabilities, rtol=1e-4, atol=1e-5)
    assert np.mean(np.concatenate(labels) == demo.y_test) >= 0.95


def test_ensure_demo_model_writes_once_and_reuses(tmp_path: Path, demo: DemoModel,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import wasinfer.registry.demo as demo_module

    calls = []

    def counting_build(seed: int = 0) -> DemoModel:
        calls.append(seed)
        return demo

    monkeypatch.setattr(demo_module, "build_demo_model", counting_build)
    path = ensure_demo_model(tmp_path / "demo")
    assert path.read_bytes() == demo.onnx
    stamp = path.stat().st_mtime_ns
    assert ensure_demo_model(tmp_path / "demo") == path
    assert calls == [0] and path.stat().st_mtime_ns == stamp
    x_test, y_test = load_test_split(tmp_path / "demo")
    np.testing.assert_array_equal(x_test, demo.x_test)
    np.testing.assert_array_equal(y_test, demo.y_test)
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["demo.onnx", "demo_test_split.npz"]
