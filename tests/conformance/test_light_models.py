"""The nine `light` architectures from onnx's backend suite compile and match onnx's expected output.

Inputs are what onnx's runner generates for them (arange(n)/n over the input shape), the
expected outputs are the shipped light_*_output_0.pb, the tolerances the case's data.json.

The light models' weights are uniform, so all 1000 logits are equal and eight of the nine
expected outputs are softmax's 0.001 everywhere: matching them shows only that the output is
finite and well shaped. The logits themselves still depend on every layer, so a second test
compares them with ONNX Runtime.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import helper
from onnx.backend.test.runner import Runner

from tests.conformance import harness
from tests.parity import ort_run
from wasinfer.runtime.onnx_backend import WasinferBackend

# Slow: the three with 60-140 M parameters (the big fully connected layers), 1-5 s and 1.5-2.5 GB
# each; the others compile and run in under a second.
SLOW = pytest.mark.slow
MODELS = [
    pytest.param("bvlc_alexnet", marks=SLOW),
    "densenet121",
    "inception_v1",
    "inception_v2",
    "resnet50",
    "shufflenet",
    "squeezenet",
    pytest.param("vgg19", marks=SLOW),
    pytest.param("zfnet512", marks=SLOW),
]


def test_the_suite_ships_nine_light_models() -> None:
    names = {case.test.model_name for case in harness().model_cases("real")}
    assert names == set(harness().LIGHT_MODELS)


def test_light_input_is_the_runners() -> None:
    """onnx's runner feeds arange(n)/n, not random data; a different input would test nothing."""
    case = light_case("squeezenet")
    _, [(inputs, _)] = harness().case_data(case)
    (x,) = inputs
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    np.testing.assert_array_equal(x.reshape(-1), (np.arange(x.size) / x.size).astype(np.float32))


def light_case(name: str) -> Any:
    return next(c for c in harness().model_cases("real") if c.test.model_name == name)


@pytest.mark.parametrize("name", MODELS)
def test_light_model_matches_onnx_expected_output(name: str) -> None:
    case = light_case(name)
    model, data_sets = harness().case_data(case)
    rep = WasinferBackend.prepare(model, "CPU")
    for inputs, expected in data_sets:
        outputs = list(rep.run(inputs))
        Runner.assert_similar_outputs(expected, outputs, rtol=case.test.rtol, atol=case.test.atol)


@pytest.mark.parametrize("name", [m for m in MODELS if m != "densenet121"])  # densenet121 has no softmax
def test_light_model_logits_match_onnxruntime(name: str) -> None:
    case = light_case(name)
    model, [(inputs, _)] = harness().case_data(case)
    logits = [node for node in model.graph.node if node.op_type == "Softmax"][-1].input[0]
    model.graph.output.append(helper.make_empty_tensor_value_info(logits))
    rep = WasinferBackend.prepare(model, "CPU")
    got = rep.run(inputs)[-1]
    want = ort_run(model, dict(zip(rep.input_names, inputs, strict=True)))[-1]
    np.testing.assert_allclose(got, want, rtol=case.test.rtol, atol=case.test.atol)
