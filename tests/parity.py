"""The one way tests compare a compiled module with ONNX Runtime on the same inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from wasinfer.artifact import convert_onnx
from wasinfer.runtime import WasmModel


def ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return [np.asarray(o) for o in session.run(None, feeds)]


def wasm_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], max_batch: int = 1,
             input_shapes: dict[str, tuple[int, ...]] | None = None) -> list[np.ndarray]:
    result = convert_onnx(model, input_shapes=input_shapes, max_batch=max_batch)
    outputs = WasmModel(result.wasm).run(feeds)
    return [outputs[o.name] for o in model.graph.output]


def assert_matches_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray], rtol: float = 1e-4,
                       atol: float = 1e-5, max_batch: int = 1,
                       input_shapes: dict[str, tuple[int, ...]] | None = None) -> None:
    expected = ort_run(model, feeds)
    actual = wasm_run(model, feeds, max_batch, input_shapes)
    for name, want, got in zip([o.name for o in model.graph.output], expected, actual, strict=True):
        assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)


def graph_model(nodes: list[onnx.NodeProto], inputs: dict[str, np.ndarray], outputs: list[str],
                inits: dict[str, np.ndarray] | None = None, opset: int = 13, name: str = "model") -> onnx.ModelProto:
    """A model of `nodes`: `inputs` become graph inputs, `inits` initializers; output types come
    from ONNX shape inference (strict, so a test's malformed model fails here)."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for n, v in inputs.items()],
        [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in outputs],
        [onnx.numpy_helper.from_array(v, n) for n, v in (inits or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {v.name: v.type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for output in model.graph.output:
        output.type.CopyFrom(types[output.name])
    return model


def single_op_model(op: str, inputs: dict[str, np.ndarray], output_count: int = 1,
                    constants: dict[str, np.ndarray] | None = None, opset: int = 13,
                    **attrs: object) -> onnx.ModelProto:
    """A one-node model: `inputs` become graph inputs, `constants` initializers."""
    constants = constants or {}
    outputs = [f"y{i}" for i in range(output_count)]
    node = helper.make_node(op, list(inputs) + list(constants), outputs, **attrs)
    return graph_model([node], inputs, outputs, constants, opset, op)
