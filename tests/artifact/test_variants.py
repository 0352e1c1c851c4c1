"""The relaxed-SIMD code variant an artifact carries: the runtime runs it, other engines the plain code, and
the two agree within float32 tolerance (artifact/variants.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tests import model_zoo
from wasinfer.artifact import convert_onnx
from wasinfer.artifact.metadata import read_metadata, sections
from wasinfer.artifact.validate import random_inputs
from wasinfer.artifact.variants import RELAXED_CODE_SECTION, attach_relaxed_code, has_relaxed_code, select_code
from wasinfer.backends.wasm.emitters.gemm import RELAXED_MADD
from wasinfer.runtime import WasmModel, make_engine


def code_of(wasm: bytes) -> bytes:
    [code] = [payload for sid, payload in sections(wasm) if sid == 10]
    return code


def test_the_default_artifact_carries_both_codes_and_the_runtime_runs_the_relaxed_one() -> None:
    auto = convert_onnx(model_zoo.resnet_like(), max_batch=2).wasm
    plain = convert_onnx(model_zoo.resnet_like(), max_batch=2, simd="plain").wasm
    assert has_relaxed_code(auto) and not has_relaxed_code(plain)
    assert select_code(auto, relaxed=False) == auto
    assert RELAXED_MADD not in code_of(auto)  # what engines that ignore the section run
    swapped = select_code(auto, relaxed=True)
    assert RELAXED_MADD in code_of(swapped) and RELAXED_CODE_SECTION.encode() not in swapped
    assert read_metadata(swapped) == read_metadata(auto)  # everything but the code is the module's own
    inputs = random_inputs(read_metadata(auto), 2, np.random.default_rng(3))
    fused = WasmModel(auto).run(inputs)  # the default engine: relaxed code
    exact = WasmModel(auto, make_engine(interruptible=False, relaxed_simd=False)).run(inputs)
    same = WasmModel(plain, make_engine(interruptible=False, relaxed_simd=False)).run(inputs)
    for name in exact:
        np.testing.assert_array_equal(exact[name], same[name])  # the plain code is the plain build's, bit for bit
        np.testing.assert_allclose(fused[name], exact[name], rtol=1e-4, atol=1e-5)
    assert any(not np.array_equal(fused[name], exact[name]) for name in exact)  # FMA rounds once: it did run


def test_builds_that_differ_outside_their_code_are_not_combined() -> None:
    small = convert_onnx(model_zoo.resnet_like(), simd="plain").wasm
    other = convert_onnx(model_zoo.mobilenet_like(), simd="relaxed").wasm
    with pytest.raises(ValueError, match="differs from the plain one outside its code"):
        attach_relaxed_code(small, other)
