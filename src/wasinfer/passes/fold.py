"""Constant folding: a node whose inputs are all constants is evaluated once, at compile time.

The evaluation uses ONNX's own reference implementation, so folded values have the
spec's semantics by construction. The reference implements some ops only from a later opset
than the model's (DequantizeLinear before 19, as ONNX Runtime's quantizer writes it at opset
13): such a node is evaluated by ONNX Runtime, which implements every opset and is the
module's parity reference anyway. A node neither can evaluate is left in the graph, for its
kernel to run or the compiler to decline by name: folding only ever removes work.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from wasinfer.ir import Graph, Node
from wasinfer.passes.sequences import OPTIONAL_OPS, SEQUENCE_OPS

# Ops that are views or metadata: folding them would copy weights for nothing. A small constant (shape
# arithmetic: a function body's axis passed through an Identity) is folded, so what reads it folds too.
NEVER_FOLD = {"Identity", "Dropout"}
LISTS = SEQUENCE_OPS | OPTIONAL_OPS  # their values are lists (passes/sequences.py), which the evaluator gives as such
SMALL_VIEW = 64  # elements


def _proto_attr(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return numpy_helper.from_array(value)
    return value


def node_proto(node: Node) -> onnx.NodeProto:
    """The IR node as ONNX again (its attributes; what passes learnt lives in typed fields, left out). The
    compiler's own nodes (domain wasinfer: Mask, Dims...) keep only their op: no ONNX tool knows them."""
    attrs = {} if node.domain == "wasinfer" else node.attrs
    return helper.make_node(node.op_type, node.inputs, node.outputs, name=node.name or None,
                            domain=node.domain or None, **{k: _proto_attr(v) for k, v in attrs.items()})


def opset_ids(opset: int, domains: set[str]) -> list[onnx.OperatorSetIdProto]:
    """The default opset, and the version each other domain's ops are read at."""
    return [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 3 if d == "ai.onnx.ml" else 1)
                                                for d in sorted(domains) if d]


def evaluate(node: Node, inputs: list[np.ndarray | None], opset: int) -> list[np.ndarray]:
    proto = node_proto(node)
    opsets = opset_ids(opset, {node.domain})
    feeds = {name: value for name, value in zip(node.inputs, inputs, strict=True) if name and value is not None}
    model_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                    for n, v in feeds.items()]
    model_outputs = [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in node.outputs if n]
    model = helper.make_model(helper.make_graph([proto], "fold", model_inputs, model_outputs), opset_imports=opsets)
    try:
        results = ReferenceEvaluator(model).run(None, feeds)
    except RuntimeError as exc:
        if "No implementation for operator" not in str(exc):
            raise
        import onnxruntime  # only for these nodes: the import costs start-up

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        typed = onnx.shape_inference.infer_shapes(model, strict_mode=True)  # ONNX Runtime wants output types
        session = onnxruntime.InferenceSession(typed.SerializeToString(), options, providers=["CPUExecutionProvider"])
        results = session.run(None, feeds)
    return [np.asarray(r) for r in results]


def fold_constants(graph: Graph) -> int:
    """Fold every constant-only node (Constant, shape subgraphs, ConstantOfShape weights)."""
    folded = 0
    kept: list[Node] = []
    for node in graph.nodes:
        present = [name for name in node.inputs if name]
        has_subgraph = any(isinstance(v, onnx.GraphProto) for v in node.attrs.values())
        large = any(graph.constants[name].size > SMALL_VIEW for name in present if name in graph.constants)
        if (node.op_type in NEVER_FOLD and large) or has_subgraph or node.op_type in LISTS or \
                not all(name in graph.constants for name in present):
            kept.append(node)
            continue
        if node.op_type == "Constant":
            values = [constant_value(node)]
        else:
            try:
                values = evaluate(node, [graph.constants.get(n) if n else None for n in node.inputs], graph.opset)
            except Exception:  # neither evaluator can: the node stays, for its kernel or a named refusal
                kept.append(node)
                continue
        for name, value in zip([o for o in node.outputs if o], values, strict=False):
            graph.add_constant(name, value)
        folded += 1
    graph.nodes = kept
    return folded


def constant_value(node: Node) -> np.ndarray:
    attrs = node.attrs
    if "value" in attrs:
        return np.asarray(attrs["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return np.asarray(attrs[key], dtype=dtype)
    raise ValueError(f"Constant node {node.name}: unsupported attribute {sorted(attrs)}")
