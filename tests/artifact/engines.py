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
