"""The built-in demo model: a small MLP that reads handwritten digits.

It is trained, not downloaded: scikit-learn's bundled `load_digits` (1,797 8x8 images, pixel
intensities 0-16), a fixed train/test split, an MLPClassifier with one hidden layer of 64,
exported with skl2onnx (input "input", float32 [batch, 64]; outputs "label" int64 [batch]
and "probabilities" float32 [batch, 10]; no ZipMap). Building it needs scikit-learn and
skl2onnx, which are imported only when a model has to be built; `ensure_demo_model`
builds once per directory and reuses the files afterwards.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wasinfer.fileio import atomic_write

ONNX_FILE = "demo.onnx"
SPLIT_FILE = "demo_test_split.npz"
HIDDEN = (64,)
TEST_FRACTION = 0.25
MAX_ITER = 500  # the default seed converges in ~160 iterations


@dataclass(frozen=True)
class DemoModel:
    onnx: bytes  # the serialized ONNX model
    x_test: np.ndarray  # float32 [n, 64]: the held-out digits, as the model takes them
    y_test: np.ndarray  # int64 [n]: their true labels
    accuracy: float  # scikit-learn's own accuracy on the test split


def build_demo_model(seed: int = 0) -> DemoModel:
    """Train and export the digits MLP; the same seed gives the same model and split."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x.astype(np.float32), y.astype(np.int64), test_size=TEST_FRACTION, random_state=seed, stratify=y)
    model = MLPClassifier(HIDDEN, max_iter=MAX_ITER, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a seed that needs more epochs still works
        model.fit(x_train, y_train)
    onnx_model = convert_sklearn(model, name="digits", initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
                                 options={id(model): {"zipmap": False}}, target_opset={"": 15, "ai.onnx.ml": 3})
    return DemoModel(onnx_model.SerializeToString(), x_test, y_test, float(model.score(x_test, y_test)))


def ensure_demo_model(directory: Path, seed: int = 0) -> Path:
    """The path of demo.onnx in `directory`, building it (and the test split) the first time."""
    directory = Path(directory)
    onnx_path = directory / ONNX_FILE
    if onnx_path.exists() and (directory / SPLIT_FILE).exists():
        return onnx_path
    directory.mkdir(parents=True, exist_ok=True)
    demo = build_demo_model(seed)
    buffer = io.BytesIO()
    np.savez(buffer, x_test=demo.x_test, y_test=demo.y_test, accuracy=np.float64(demo.accuracy))
    atomic_write(directory / SPLIT_FILE, buffer.getvalue())
    atomic_write(onnx_path, demo.onnx)  # last: its presence means both files are complete
    return onnx_path


def load_test_split(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """(x_test float32 [n, 64], y_test int64 [n]) written by `ensure_demo_model`."""
    with np.load(Path(directory) / SPLIT_FILE) as data:
        return data["x_test"], data["y_test"]


__all__ = ["DemoModel", "build_demo_model", "ensure_demo_model", "load_test_split"]
