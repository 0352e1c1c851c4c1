"""The op definitions: every emitted op has one, they name real ONNX ops, defaults follow the
opset, the batch rules say what the compiler relies on, and docs/ops.md is what the code says."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import defs

from tests.scripts import load
from wasinfer.backends.wasm import supported_ops
from wasinfer.backends.wasm.context import kernel
from wasinfer.ir import Graph, Node, TensorInfo
from wasinfer.ops import (
    COMPILE_TIME_OPS,
    REGISTRY,
    VIEW_OPS,
    BatchView,
    Fusion,
    Role,
    activation_params,
    attr,
    batch_flow,
    define,
    with_fusion,
)
from wasinfer.ops.quantized import INT8_DOMAIN


def test_every_op_the_compiler_accepts_has_one_definition() -> None:
    missing = [key for key in supported_ops() if key not in REGISTRY]
    assert not missing


def test_every_model_op_that_runs_says_where_a_batch_goes() -> None:
    """No op of a model's domains runs without a batch rule: where a rule is missing, the batch analysis could not
    tell a node that mixes samples from one that does not (the compiler's own nodes come after it)."""
    missing = [key for key in supported_ops() if key in REGISTRY and key[0] != INT8_DOMAIN
               and REGISTRY[key].role in (Role.KERNEL, Role.VIEW) and REGISTRY[key].batch is None]
    assert not missing


def test_definitions_name_real_onnx_ops() -> None:
    """Every definition of the ONNX domains names an op ONNX's schemas know (ONNX Runtime's own
    com.microsoft ops have no schema in the onnx package, nor do the compiler's own ops, which
    passes create: the `wasinfer` domain's integer kernels)."""
    unknown = []
    for domain, op in REGISTRY:
        if domain in ("com.microsoft", INT8_DOMAIN):
            continue
        try:
            defs.get_schema(op, domain=domain)
        except defs.SchemaError:
            unknown.append((domain, op))
    assert not unknown


def test_an_op_is_defined_once_and_an_emitter_needs_a_definition() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        define("Conv")
    with pytest.raises(ValueError, match=r"no definition in wasinfer\.ops"):
        kernel("NoSuchOp")(lambda ctx, node: None)


def test_roles_and_fusion_sets() -> None:
    assert {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "BitCast"} == VIEW_OPS
    assert {"Constant", "ConstantOfShape", "Shape", "Size", "Range", "HannWindow", "HammingWindow", "BlackmanWindow",
            "MelWeightMatrix"} == COMPILE_TIME_OPS
    assert REGISTRY[("", "If")].role is Role.INLINED
    assert {"Relu", "Clip", "Gelu"} <= with_fusion(Fusion.ACTIVATION)
    assert "Sqrt" not in with_fusion(Fusion.ACTIVATION)
    assert {"Conv", "Gemm", "MatMul"} <= with_fusion(Fusion.PRODUCER)


@pytest.mark.parametrize(("opset", "axis"), [(11, 1), (13, -1)])
def test_attribute_defaults_follow_the_models_opset(opset: int, axis: int) -> None:
    node = Node("Softmax", "s", ["x"], ["y"])
    assert attr(node, "axis", opset) == axis
    assert attr(Node("Softmax", "s", ["x"], ["y"], {"axis": 0}), "axis", opset) == 0
    assert attr(Node("Conv", "c", ["x", "w"], ["y"]), "group", opset) == 1
    assert attr(Node("Conv", "c", ["x", "w"], ["y"]), "kernel_shape", opset) is None  # no default


def _graph(shapes: dict[str, tuple[int, ...]], constants: dict[str, np.ndarray] | None = None,
           opset: int = 17) -> Graph:
    graph = Graph("g", [], [], [], {n: TensorInfo(n, np.dtype(np.float32), s) for n, s in shapes.items()},
                  opset=opset)
    for name, value in (constants or {}).items():
        graph.add_constant(name, value)
    return graph


def _flow(node: Node, graph: Graph, *axes: int | None) -> tuple[tuple[int | None, ...], str | None]:
    flow = batch_flow(BatchView(graph, node, axes))
    return flow.outputs, flow.mixes


def test_batch_rules() -> None:
    g = _graph({"x": (4, 3, 8, 8), "w": (6, 3, 3, 3), "y": (4, 6, 6, 6), "t": (8, 4, 3, 8), "m": (4, 8),
                "k": (8, 5), "p": (4, 5), "r": (4, 1, 8, 8), "q": (4, 3, 64), "u": (1, 4, 8)},
               {"axes": np.array([1], np.int64), "front": np.array([0], np.int64)})
    assert _flow(Node("Conv", "c", ["x", "w"], ["y"]), g, 0, None) == ((0,), None)
    assert "slides over axis 1" in str(_flow(Node("Conv", "c", ["t", "w"], ["y"]), g, 1, None)[1])
    assert _flow(Node("Transpose", "t", ["x"], ["t"], {"perm": [2, 0, 1, 3]}), g, 0) == ((1,), None)
    assert _flow(Node("MatMul", "mm", ["m", "k"], ["p"]), g, 0, None) == ((0,), None)
    assert "contracts" in str(_flow(Node("MatMul", "mm", ["k", "p"], ["p"]), g, 1, None)[1])
    assert "second operand" in str(_flow(Node("MatMul", "mm", ["m", "k"], ["p"]), g, None, 0)[1])
    assert _flow(Node("ReduceMean", "r", ["x", "axes"], ["r"]), g, 0, None) == ((0,), None)
    assert "reduces axis 1" in str(_flow(Node("ReduceMean", "r", ["t", "axes"], ["r"]), g, 1, None)[1])
    assert _flow(Node("ReduceMean", "r", ["x", "axes"], ["q"], {"keepdims": 0}), g, 2, None) == ((1,), None)
    assert _flow(Node("Add", "a", ["x", "r"], ["y"]), g, 0, 0) == ((0,), None)
    assert "different axes" in str(_flow(Node("Add", "a", ["x", "r"], ["y"]), g, 0, 1)[1])
    assert _flow(Node("Unsqueeze", "u", ["m", "front"], ["u"]), g, 0, None) == ((1,), None)
    assert _flow(Node("Squeeze", "s", ["u", "front"], ["m"]), g, 1, None) == ((0,), None)
    assert "squeezes the batch" in str(_flow(Node("Squeeze", "s", ["u", "front"], ["m"]), g, 0, None)[1])
    assert _flow(Node("Softmax", "s", ["m"], ["p"]), g, 0) == ((0,), None)
    assert "normalises over axis 1" in str(_flow(Node("Softmax", "s", ["m"], ["p"]), g, 1)[1])
    old = _graph({"m": (4, 8), "p": (4, 8)}, opset=11)  # before 13: axes 1.. coerced to one
    assert "coerces" in str(_flow(Node("Softmax", "s", ["m"], ["p"]), old, 1)[1])
    # recurrent state [layers, batch, hidden]: the batch is on axis 1, never the leading one
    lstm = Node("LSTM", "l", ["q", "w", "r"], ["y", "h", "c"])
    seq = _graph({"q": (5, 4, 8)})
    assert _flow(lstm, seq, 1, None, None) == ((2, 1, 1), None)
    assert "time axis" in str(_flow(lstm, seq, 0, None, None)[1])
    assert _flow(Node("Tile", "t", ["x"], ["y"]), g, 0) == ((None,), None)


def test_batch_rules_of_the_spatial_ops() -> None:
    g = _graph({"x": (4, 3, 8, 8), "grid": (4, 5, 5, 2), "rois": (7, 4), "i": (7,), "cache": (4, 2, 9, 3),
                "upd": (4, 2, 1, 3), "mats": (4, 3, 3), "d": (4,)})
    assert _flow(Node("GridSample", "s", ["x", "grid"], ["y"]), g, 0, 0) == ((0,), None)
    assert "pick which sample" in str(_flow(Node("RoiAlign", "r", ["x", "rois", "i"], ["y"]), g, 0, None, None)[1])
    assert _flow(Node("RoiAlign", "r", ["x", "rois", "i"], ["y"]), g, None, None, None) == ((None,), None)
    assert _flow(Node("TensorScatter", "t", ["cache", "upd"], ["y"]), g, 0, 0) == ((0,), None)
    assert "axis 0, not axis 1" in str(_flow(Node("TensorScatter", "t", ["cache", "upd"], ["y"]), g, 1, 1)[1])
    assert _flow(Node("Det", "d", ["mats"], ["d"]), g, 0) == ((0,), None)
    assert "matrices run along axis 1" in str(_flow(Node("Det", "d", ["mats"], ["d"]), g, 1)[1])


def test_activation_parameters_come_from_the_definition() -> None:
    g = _graph({"x": (4,)}, {"lo": np.array(-1.0, np.float32)})
    assert activation_params(Node("LeakyRelu", "l", ["x"], ["y"]), g) == {"alpha": 0.01}
    assert activation_params(Node("Clip", "c", ["x", "lo"], ["y"]), g) == {"min": -1.0, "max": np.inf}
    assert activation_params(Node("Clip", "c", ["x", "hi"], ["y"]), g) is None  # bound computed at run time
    assert activation_params(Node("Relu", "r", ["x"], ["y"]), g) == {}
    g.tensors["i"] = TensorInfo("i", np.dtype(np.int32), (4,))
    assert activation_params(Node("Relu", "r", ["i"], ["y"]), g) is None  # integer: its own kernel


def test_docs_op_table_is_current() -> None:
    assert load("scripts/op_table.py").main(["--check"]) == 0, "docs/ops.md is stale: run python scripts/op_table.py"
