"""BatchNormalization's per-channel affine table, and when it needs scratch."""

from __future__ import annotations

import numpy as np
from onnx import helper

from tests.parity import graph_model
from wasinfer.frontends import load_onnx
from wasinfer.lowering.norm import bn_scratch, bn_table

rng = np.random.default_rng(0)


def test_table_is_the_affine_form_of_the_normalisation() -> None:
    channels, eps = 6, 1e-3
    scale, bias, mean = (rng.standard_normal(channels).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.1, 2, channels).astype(np.float32)
    x = rng.standard_normal((2, channels, 5)).astype(np.float32)
    table = bn_table(scale, bias, mean, var, eps)
    assert table.dtype == np.float32 and table.shape == (2 * channels,)
    s, t = table[:channels, None], table[channels:, None]
    want = (x - mean[:, None]) / np.sqrt(var[:, None] + eps) * scale[:, None] + bias[:, None]
    np.testing.assert_allclose(x * s + t, want, rtol=1e-5, atol=1e-5)


def test_scratch_only_for_parameters_computed_at_run_time() -> None:
    x = np.zeros((1, 4, 3, 3), np.float32)
    params = {name: np.ones(4, np.float32) for name in ("s", "b", "m", "v")}
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])
    constant = load_onnx(graph_model([node], {"x": x}, ["y"], params)).graph
    assert bn_scratch(constant.nodes[0], constant) == 0
    runtime = load_onnx(graph_model([node], {"x": x, "m": params.pop("m")}, ["y"], params)).graph
    assert bn_scratch(runtime.nodes[0], runtime) == 8 * 4  # s and t per channel
