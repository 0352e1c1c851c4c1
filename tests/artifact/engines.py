"""What the second-engine and WASI tests share: small models built with onnx.helper, and Node."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from wasinfer.artifact import convert_onnx
from wasinfer.runtime import make_engine

JS = Path(__file__).resolve().parents[1] / "js"
# wasinfer's runtime on a module's plain SIMD128 code, which is what other engines run (they ignore the
# relaxed-SIMD variant it carries: artifact/variants.py), so that outputs can be compared bit for bit
PLAIN = make_engine(interruptible=False, relaxed_simd=False)
NODE = shutil.which("node")


def _node_problem() -> str | None:
    if NODE is None:
        return "node is not installed (.ci/run installs Debian's nodejs)"
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        return f"node {version} is older than 20, the first with node:wasi version 'preview1'"
    return None


NODE_PROBLEM = _node_problem()
requires_node = pytest.mark.skipif(NODE_PROBLEM is not None, reason=NODE_PROBLEM or "")


def node(script: str, *args: str | Path, cwd: Path | None = None, stdin: Path | None = None,
         stdout: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run tests/js/<script> (warnings off: node:wasi prints an ExperimentalWarning)."""
    assert NODE is not None
    with (open(stdin, "rb") if stdin else open("/dev/null", "rb")) as fin, \
            (open(stdout, "wb") if stdout else open("/dev/null", "wb")) as fout:
        return subprocess.run([NODE, "--no-warnings", str(JS / script), *map(str, args)], cwd=cwd,
                              stdin=fin, stdout=fout, stderr=subprocess.PIPE, timeout=60, check=False)


@dataclass
class Case:
    name: str
    model: onnx.ModelProto
    max_batch: int
    inputs: Callable[[int], dict[str, np.ndarray]]  # batch → feeds


rng = np.random.default_rng(7)


def _rand(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
           constants: dict[str, np.ndarray]) -> onnx.ModelProto:
    initializers = [numpy_helper.from_array(v, k) for k, v in constants.items()]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def mlp_case() -> Case:
    """Two batched inputs in metadata order, two outputs: Gemm → Relu → Gemm → Add."""
    model = _model(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h0"]), helper.make_node("Relu", ["h0"], ["h"]),
         helper.make_node("Gemm", ["h", "w2", "b2"], ["g"]), helper.make_node("Add", ["g", "skip"], ["z"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8]),
         helper.make_tensor_value_info("skip", TensorProto.FLOAT, ["N", 5])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 5]),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, ["N", 16])],
        {"w1": _rand(8, 16), "b1": _rand(16), "w2": _rand(16, 5), "b2": _rand(5)})
    return Case("mlp", model, 4, lambda n: {"x": _rand(n, 8), "skip": _rand(n, 5)})


def cnn_case() -> Case:
    """Conv → Relu → MaxPool → Flatten → Gemm → Softmax, and ArgMax: an int64 output of rank 1."""
    model = _model(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
         helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10]),
         helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])],
        {"w": _rand(4, 1, 3, 3), "b": _rand(4), "fw": _rand(64, 10), "fb": _rand(10)})
    return Case("cnn", model, 4, lambda n: {"x": _rand(n, 1, 8, 8)})


def fixed_case() -> Case:
    """No batch dimension (max_batch 1, inputs read in place): every header is fixed."""
    model = _model(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Tanh", ["m"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        {"w": _rand(3, 4)})
    return Case("fixed", model, 1, lambda n: {"x": _rand(2, 3)})


CASES = [mlp_case(), cnn_case(), fixed_case()]


@dataclass
class SymbolicCase:
    """A model compiled with symbolic dims (ABI version 3): x [1, 3, H, W] with H in 12..16 and W in 8..100,
    times a mask [1, 1, 1, W] (the same W: the model names both dims "W"), through a strided Conv to
    z [1, 4, (H - 1) // 2 + 1, (W - 1) // 2 + 1] (dims that follow the symbols) and its mean over both, s [1, 4]
    (static). Without the mask (`masked=False`) it has one input, as a one-input WASI-NN guest feeds."""

    masked: bool = True

    @property
    def model(self) -> onnx.ModelProto:
        nodes = [helper.make_node("Conv", ["xm" if self.masked else "x", "w"], ["c"], pads=[1, 1, 1, 1],
                                  strides=[2, 2]),
                 helper.make_node("Relu", ["c"], ["z"]), helper.make_node("ReduceMean", ["z"], ["s"], axes=[2, 3],
                                                                          keepdims=0)]
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "H", "W"])]
        if self.masked:
            nodes.insert(0, helper.make_node("Mul", ["x", "mask"], ["xm"]))
            inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, 1, "W"]))
        outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("z", "s")]
        weight = np.random.default_rng(17).standard_normal((4, 3, 3, 3)).astype(np.float32)
        return _model(nodes, inputs, outputs, {"w": weight})

    def convert(self, **options: object) -> bytes:
        shapes: dict[str, tuple[int, ...]] = {"x": (1, 3, 16, 100), "mask": (1, 1, 1, 100)}
        ranges: dict[str, dict[int, tuple[int, int]]] = {"x": {2: (12, 16), 3: (8, 100)}, "mask": {3: (8, 100)}}
        if not self.masked:
            del shapes["mask"], ranges["mask"]
        return convert_onnx(self.model, input_shapes=shapes, input_ranges=ranges, **options).wasm

    def inputs(self, height: int, width: int) -> dict[str, np.ndarray]:
        feeds = {"x": _rand(1, 3, height, width)}
        if self.masked:
            feeds["mask"] = _rand(1, 1, 1, width)
        return feeds
