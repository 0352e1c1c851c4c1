"""The digits demo as a TensorFlow Lite model, written with flatbuffers from the ONNX model's weights.

TensorFlow is not a dependency, so there is no converter here; the demo is only two dense layers,
which TFLite expresses directly: FULLY_CONNECTED (fused RELU), FULLY_CONNECTED, SOFTMAX. The same
weights then reach the guest through ONNX, TFLite and a wasinfer module, so all three must give one
answer. Input "input" float32 [1, 64]; the only output, "probabilities", float32 [1, 10].
"""

from __future__ import annotations

import flatbuffers  # type: ignore[import-untyped]
import numpy as np
import onnx
import tflite  # type: ignore[import-untyped]
from onnx import numpy_helper

SCHEMA_VERSION = 3
BUFFER_ALIGN = 16  # LiteRT maps constant buffers in place; keep them aligned for its kernels


def _vector(builder: flatbuffers.Builder, start: object, items: list[int], prepend: object) -> int:
    start(builder, len(items))  # type: ignore[operator]
    for item in reversed(items):
        prepend(item)  # type: ignore[operator]
    return int(builder.EndVector())


def _bytes(builder: flatbuffers.Builder, data: bytes) -> int:
    builder.StartVector(1, len(data), BUFFER_ALIGN)
    builder.head = builder.head - len(data)
    builder.Bytes[builder.head:builder.head + len(data)] = data
    return int(builder.EndVector())


def _ints(builder: flatbuffers.Builder, values: list[int]) -> int:
    return int(builder.CreateNumpyVector(np.array(values, np.int32)))


def digits_tflite(onnx_model: bytes) -> bytes:
    """The skl2onnx digits MLP (MatMul/Add/Relu/MatMul/Add/Softmax) as a .tflite flatbuffer."""
    weights = {init.name: numpy_helper.to_array(init) for init in onnx.load_from_string(onnx_model).graph.initializer}
    # FULLY_CONNECTED takes its weights as [out, in]; ONNX's MatMul has them as [in, out]
    constants = [np.ascontiguousarray(weights["coefficient"].T), weights["intercepts"].reshape(-1),
                 np.ascontiguousarray(weights["coefficient1"].T), weights["intercepts1"].reshape(-1)]
    hidden, classes = constants[1].size, constants[3].size
    # tensors: 0 input, 1..4 constants, 5 hidden, 6 logits, 7 probabilities; buffer i+1 holds constant i
    tensors: list[tuple[str, list[int], int]] = [("input", [1, 64], 0)]
    tensors += [(name, list(c.shape), i + 1) for i, (name, c) in enumerate(zip(("w1", "b1", "w2", "b2"), constants,
                                                                              strict=True))]
    tensors += [("hidden", [1, hidden], 0), ("logits", [1, classes], 0), ("probabilities", [1, classes], 0)]

    b = flatbuffers.Builder(1 << 16)
    buffers = []
    for data in [b"", *(c.astype("<f4").tobytes() for c in constants)]:
        payload = _bytes(b, data) if data else None
        tflite.BufferStart(b)
        if payload is not None:
            tflite.BufferAddData(b, payload)
        buffers.append(tflite.BufferEnd(b))

    tensor_offsets = []
    for name, shape, buffer in tensors:
        name_offset, shape_offset = b.CreateString(name), _ints(b, shape)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape_offset)
        tflite.TensorAddType(b, tflite.TensorType.FLOAT32)
        tflite.TensorAddBuffer(b, buffer)
        tflite.TensorAddName(b, name_offset)
        tensor_offsets.append(tflite.TensorEnd(b))

    def fully_connected(activation: int) -> int:
        tflite.FullyConnectedOptionsStart(b)
        tflite.FullyConnectedOptionsAddFusedActivationFunction(b, activation)
        return int(tflite.FullyConnectedOptionsEnd(b))

    def softmax() -> int:
        tflite.SoftmaxOptionsStart(b)
        tflite.SoftmaxOptionsAddBeta(b, 1.0)
        return int(tflite.SoftmaxOptionsEnd(b))

    # (opcode index, inputs, outputs, options type, options)
    ops = [(0, [0, 1, 2], [5], tflite.BuiltinOptions.FullyConnectedOptions,
            fully_connected(tflite.ActivationFunctionType.RELU)),
           (0, [5, 3, 4], [6], tflite.BuiltinOptions.FullyConnectedOptions,
            fully_connected(tflite.ActivationFunctionType.NONE)),
           (1, [6], [7], tflite.BuiltinOptions.SoftmaxOptions, softmax())]
    operators = []
    for opcode, inputs, outputs, options_type, options in ops:
        inputs_offset, outputs_offset = _ints(b, inputs), _ints(b, outputs)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, opcode)
        tflite.OperatorAddInputs(b, inputs_offset)
        tflite.OperatorAddOutputs(b, outputs_offset)
        tflite.OperatorAddBuiltinOptionsType(b, options_type)
        tflite.OperatorAddBuiltinOptions(b, options)
        operators.append(tflite.OperatorEnd(b))

    codes = []
    for builtin in (tflite.BuiltinOperator.FULLY_CONNECTED, tflite.BuiltinOperator.SOFTMAX):
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, builtin)
        tflite.OperatorCodeAddBuiltinCode(b, builtin)
        tflite.OperatorCodeAddVersion(b, 1)
        codes.append(tflite.OperatorCodeEnd(b))

    subgraph_tensors = _vector(b, tflite.SubGraphStartTensorsVector, tensor_offsets, b.PrependUOffsetTRelative)
    subgraph_ops = _vector(b, tflite.SubGraphStartOperatorsVector, operators, b.PrependUOffsetTRelative)
    subgraph_inputs, subgraph_outputs = _ints(b, [0]), _ints(b, [7])
    subgraph_name = b.CreateString("main")
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, subgraph_tensors)
    tflite.SubGraphAddInputs(b, subgraph_inputs)
    tflite.SubGraphAddOutputs(b, subgraph_outputs)
    tflite.SubGraphAddOperators(b, subgraph_ops)
    tflite.SubGraphAddName(b, subgraph_name)
    subgraph = tflite.SubGraphEnd(b)

    model_codes = _vector(b, tflite.ModelStartOperatorCodesVector, codes, b.PrependUOffsetTRelative)
    model_subgraphs = _vector(b, tflite.ModelStartSubgraphsVector, [subgraph], b.PrependUOffsetTRelative)
    model_buffers = _vector(b, tflite.ModelStartBuffersVector, buffers, b.PrependUOffsetTRelative)
    description = b.CreateString("wasinfer digits demo (tests/guests/digits_tflite.py)")
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, SCHEMA_VERSION)
    tflite.ModelAddOperatorCodes(b, model_codes)
    tflite.ModelAddSubgraphs(b, model_subgraphs)
    tflite.ModelAddDescription(b, description)
    tflite.ModelAddBuffers(b, model_buffers)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


__all__ = ["digits_tflite"]
