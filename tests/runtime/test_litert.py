"""The LiteRT backend against TensorFlow's own outputs for the committed .tflite fixtures.

`tests/fixtures/make_tflite.py` wrote the models and, from the tf.functions they were converted
from, the reference outputs in `tflite_reference.npz`; LiteRT must reproduce them.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from wasinfer.runtime import InputError
from wasinfer.runtime.litert import LiteRtModel

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
DENSE, CONV = FIXTURES / "dense_softmax.tflite", FIXTURES / "conv_fixed.tflite"
# float32 kernels (XNNPACK) against TensorFlow's: the same maths in a different order
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "tflite_reference.npz") as data:
        return {key: data[key] for key in data.files}


def test_describes_a_dynamic_batch_with_signature_names() -> None:
    model = LiteRtModel(DENSE)
    assert model.info.name == "dense_softmax" and model.info.max_batch is None
    assert model.input_names() == ["x"] and model.output_names() == ["probabilities"]
    [x], [probabilities] = model.info.inputs, model.info.outputs
    assert (x.dtype, x.shape, x.batch_axis) == ("float32", [-1, 4], 0)
    assert (probabilities.dtype, probabilities.shape, probabilities.batch_axis) == ("float32", [-1, 3], 0)


def test_describes_a_fixed_batch() -> None:
    model = LiteRtModel(CONV.read_bytes(), name="conv")
    assert model.info.name == "conv"
    [image] = model.info.inputs
    assert (image.name, image.shape, image.batch_axis) == ("image", [1, 8, 8, 1], None)
    # the interpreter lists the outputs as logits, features; the signature names them
    assert [(t.name, t.shape, t.batch_axis) for t in model.info.outputs] == [
        ("features", [1, 6, 6, 2], None), ("logits", [1, 3], None)]


@pytest.mark.parametrize("batch", [1, 3])
def test_dense_matches_tensorflow(reference: dict[str, np.ndarray], batch: int) -> None:
    out = LiteRtModel(DENSE).run({"x": reference[f"dense_x_{batch}"]})
    assert list(out) == ["probabilities"] and out["probabilities"].shape == (batch, 3)
    np.testing.assert_allclose(out["probabilities"], reference[f"dense_probabilities_{batch}"], RTOL, ATOL)


def test_conv_matches_tensorflow_output_by_output(reference: dict[str, np.ndarray]) -> None:
    out = LiteRtModel(CONV).run({"image": reference["conv_image"]})
    assert sorted(out) == ["features", "logits"]
    np.testing.assert_allclose(out["features"], reference["conv_features"], RTOL, ATOL)
    np.testing.assert_allclose(out["logits"], reference["conv_logits"], RTOL, ATOL)


def test_batch_sizes_alternate_on_one_instance(reference: dict[str, np.ndarray]) -> None:
    """More batch sizes than the instance keeps allocated: recycled interpreters must be resized right."""
    model = LiteRtModel(DENSE, shape_cache=2)
    x3, p3 = reference["dense_x_3"], reference["dense_probabilities_3"]
    for batch in (3, 1, 2, 3, 1, 2, 2, 3):
        out = model.run({"x": x3[:batch]})["probabilities"]
        assert out.shape == (batch, 3)
        np.testing.assert_allclose(out, p3[:batch], RTOL, ATOL)


def test_outputs_are_copies(reference: dict[str, np.ndarray]) -> None:
    """A result must survive the next run on the same interpreter (the server encodes it later)."""
    model = LiteRtModel(DENSE)
    first = model.run({"x": reference["dense_x_1"]})["probabilities"]
    model.run({"x": np.zeros((1, 4), np.float32)})
    np.testing.assert_allclose(first, reference["dense_probabilities_1"], RTOL, ATOL)


def test_spawned_instances_run_concurrently(reference: dict[str, np.ndarray]) -> None:
    """What the server's instance pool does: one instance per thread, each with its own interpreters."""
    template = LiteRtModel(DENSE)
    results: dict[int, list[np.ndarray]] = {}
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        instance = template.spawn()
        batch = 1 + worker % 3
        try:
            results[worker] = [instance.run({"x": reference["dense_x_3"][:batch]})["probabilities"] for _ in range(50)]
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors and len(results) == 6
    for worker, outs in results.items():
        for out in outs:
            np.testing.assert_allclose(out, reference["dense_probabilities_3"][:1 + worker % 3], RTOL, ATOL)


@pytest.mark.parametrize(("path", "feeds", "message"), [
    (DENSE, {}, r"missing \['x'\], unexpected \[\]"),
    (DENSE, {"x": np.zeros((1, 4), np.float32), "y": np.zeros(1)}, r"unexpected \['y'\]"),
    (DENSE, {"x": np.zeros((1, 4), np.float64)}, "input 'x': expected dtype float32, got float64"),
    (DENSE, {"x": np.zeros((2, 5), np.float32)}, r"input 'x': expected shape \[N, 4\], got \[2, 5\]$"),
    (DENSE, {"x": np.zeros((4,), np.float32)}, r"input 'x': expected shape \[N, 4\], got \[4\]$"),
    (CONV, {"image": np.zeros((2, 8, 8, 1), np.float32)},
     r"expected shape \[1, 8, 8, 1\], got \[2, 8, 8, 1\] \(this model's batch size is fixed\)"),
    (CONV, {"image": np.zeros((1, 8, 8, 3), np.float32)}, r"expected shape \[1, 8, 8, 1\], got \[1, 8, 8, 3\]$"),
])
def test_refuses_bad_inputs_in_its_own_words(path: Path, feeds: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(InputError, match=message):
        LiteRtModel(path).run(feeds)


def test_a_refused_request_leaves_the_instance_usable(reference: dict[str, np.ndarray]) -> None:
    model = LiteRtModel(CONV)
    with pytest.raises(InputError):
        model.run({"image": np.zeros((2, 8, 8, 1), np.float32)})
    np.testing.assert_allclose(model.run({"image": reference["conv_image"]})["logits"], reference["conv_logits"],
                               RTOL, ATOL)


def test_a_file_that_is_not_a_model_fails_the_load(tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(b"TFL3 but not really a flatbuffer")
    with pytest.raises(ValueError):
        LiteRtModel(path)
