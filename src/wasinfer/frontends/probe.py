"""Shapes that ONNX's shape inference leaves unknown, found by running the node once.

Most ai.onnx.ml ops (TreeEnsemble*, Scaler, Normalizer, ...) have no shape-inference
function, and ArrayFeatureExtractor's gives no shape, so a value between two of them has
no static shape. Their output shapes never depend on the input values, so one run of the
node on zeros (with the real initializers) through ONNX's reference implementation gives
them; inference is then re-run so the ops downstream (Reshape, Cast, ...) get theirs.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

PROBED_DOMAINS = ("ai.onnx.ml", "com.microsoft")


def _known(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    graph = model.graph
    known: dict[str, onnx.TypeProto] = {}
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        tensor = value.type.tensor_type
        if (value.type.HasField("tensor_type") and tensor.elem_type and tensor.HasField("shape")
                and all(d.HasField("dim_value") for d in tensor.shape.dim)):
            known[value.name] = value.type
    for init in graph.initializer:
        known[init.name] = helper.make_tensor_type_proto(init.data_type, list(init.dims))
    return known


def _declared(model: onnx.ModelProto) -> set[str]:
    """Graph outputs declared with every dim but the leading (batch) one; the frontend fills those."""
    names = set()
    for value in model.graph.output:
        dims = value.type.tensor_type.shape.dim
        if value.type.HasField("tensor_type") and dims and all(d.HasField("dim_value") for d in dims[1:]):
            names.add(value.name)
    return names


def _zeros(type_proto: onnx.TypeProto) -> np.ndarray:
    tensor = type_proto.tensor_type
    dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
    return np.zeros([d.dim_value for d in tensor.shape.dim], dtype=dtype)


def _run_node(model: onnx.ModelProto, node: onnx.NodeProto, known: dict[str, onnx.TypeProto]) -> list[object]:
    initializers = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    feeds = {name: initializers[name] if name in initializers else _zeros(known[name])
             for name in node.input if name}
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
              for name, value in feeds.items()]
    outputs = [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None) for name in node.output if name]
    single = helper.make_model(helper.make_graph([node], "probe", inputs, outputs),
                               opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return list(ReferenceEvaluator(single).run(None, feeds))


def probe_missing_shapes(model: onnx.ModelProto, rounds: int = 8) -> onnx.ModelProto:
    """Add value_info for the outputs of probed-domain nodes that inference left unknown."""
    declared = _declared(model)
    for _ in range(rounds):
        known = _known(model)
        added = False
        for node in model.graph.node:
            if node.domain not in PROBED_DOMAINS:
                continue
            missing = [o for o in node.output if o and o not in known]
            if not missing or set(missing) <= declared or not all(i in known for i in node.input if i):
                continue
            try:
                results = _run_node(model, node, known)
            except Exception:  # the compiler reports the unknown shape with the node's name
                continue
            for name, value in zip([o for o in node.output if o], results, strict=False):
                if name in missing and isinstance(value, np.ndarray):
                    elem = (onnx.TensorProto.STRING if value.dtype == object
                            else helper.np_dtype_to_tensor_dtype(value.dtype))
                    model.graph.value_info.append(helper.make_tensor_value_info(name, elem, value.shape))
                    added = True
        if not added:
            return model
        model = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    return model
