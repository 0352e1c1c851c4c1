"""The onnx Backend API over the compiler, and the backend-suite cases that must keep passing.

expected_pass.txt is written by `scripts/conformance.py --write-expected` from a full run, so
a kernel regression fails here by case name. Regenerate it when a new kernel makes more cases
pass; never hand-edit it to hide a failure.
"""

from __future__ import annotations

import unittest
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.backend.test import BackendTest

from tests.conformance import harness
from wasinfer.backends.wasm import UnsupportedModel
from wasinfer.runtime.onnx_backend import WasinferBackend

EXPECTED = Path(__file__).with_name("expected_pass.txt")
KEYS = [line.strip() for line in EXPECTED.read_text().splitlines() if line.strip()] if EXPECTED.exists() else []


@cache
def cases_by_key() -> dict[str, Any]:
    kinds = {key.split("/", 1)[0] for key in KEYS}
    return {case.key: case for case in harness().load_cases(kinds)}


def test_cpu_is_the_only_device() -> None:
    assert WasinferBackend.supports_device("CPU")
    assert not WasinferBackend.supports_device("CUDA")
    assert not WasinferBackend.supports_device("CUDA:1")


def test_run_node_compiles_a_one_node_model() -> None:
    x = np.array([[-1.5, 2.0], [0.0, -0.25]], np.float32)
    (y,) = WasinferBackend.run_node(helper.make_node("Relu", ["x"], ["y"]), [x])
    np.testing.assert_array_equal(y, np.maximum(x, 0))


def test_dynamic_dims_are_pinned_per_input_shape() -> None:
    """A dynamic leading dim is a real dim, not a per-sample batch: Gemm(A^T, B) sums over it."""
    graph = helper.make_graph([helper.make_node("Gemm", ["a", "b"], ["y"], transA=1)], "gemm_at",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])])
    rep = WasinferBackend.prepare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    rng = np.random.default_rng(0)
    for rows in (4, 2, 4):
        a, b = rng.standard_normal((rows, 3), np.float32), rng.standard_normal((rows, 2), np.float32)
        (y,) = rep.run([a, b])
        np.testing.assert_allclose(y, a.T @ b, rtol=1e-5, atol=1e-6)
    assert len(rep.modules) == 2  # one module per input-shape signature


def test_unsupported_ops_raise_in_prepare() -> None:
    graph = helper.make_graph([helper.make_node("RandomUniformLike", ["x"], ["y"])], "random",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 3])])
    with pytest.raises(UnsupportedModel, match="RandomUniformLike"):
        WasinferBackend.prepare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # from onnx's case generators, when they load here
def test_onnx_runner_drives_the_backend() -> None:
    """onnx's own runner (not our harness) runs cases through WasinferBackend: the API is the standard one."""
    suite = BackendTest(WasinferBackend, __name__).include(r"^test_(relu|abs|gemm_default_no_bias)_cpu$").test_suite
    outcome = unittest.TextTestRunner(verbosity=0).run(suite)
    assert outcome.wasSuccessful(), outcome.failures + outcome.errors
    assert outcome.testsRun - len(outcome.skipped) == 3


def test_expected_list_is_present_and_known() -> None:
    assert KEYS, f"{EXPECTED} is missing or empty; run scripts/conformance.py --write-expected"
    unknown = sorted(set(KEYS) - set(cases_by_key()))
    assert not unknown, f"cases not in this onnx's backend suite: {unknown[:10]}"


@pytest.mark.parametrize("key", KEYS)
def test_case_still_passes(key: str) -> None:
    conformance = harness()
    case = cases_by_key().get(key)
    if case is None:
        pytest.fail(f"{key} is not in this onnx's backend suite")
    result = conformance.run_case(case)
    registered = case.kind != "node" or case.op in conformance.registered_ops()
    note = "" if registered else f" (op {case.op} has no kernel: a view, or folded at compile time)"
    assert result.status == "passed", f"{key}{note}: {result.status}: {result.reason}"


def test_sequences_with_0d_tensors_are_compared_element_by_element() -> None:
    """onnx's own comparison calls len() on a sequence's 0-d tensors and raises TypeError (test_loop16_seq_none);
    the harness's `similar` compares what it cannot, with the same tolerances, and still tells a difference."""
    similar = harness().similar
    sequence = [np.array(0.0, np.float32), np.array([1.0, 2.0], np.float32)]
    assert similar([sequence], [[s.copy() for s in sequence]], 1e-3, 1e-7)
    assert not similar([sequence], [[np.array(0.5, np.float32), sequence[1]]], 1e-3, 1e-7)
    assert not similar([sequence], [sequence[:1]], 1e-3, 1e-7)
    assert not similar([sequence], [[sequence[0], sequence[1].astype(np.float64)]], 1e-3, 1e-7)
    assert similar([None], [None], 1e-3, 1e-7) and not similar([None], [sequence[0]], 1e-3, 1e-7)
