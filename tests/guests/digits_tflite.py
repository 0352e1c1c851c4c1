"""The digits demo as a TensorFlow Lite model, written with flatbuffers from the ONNX model's weights.

TensorFlow is not a dependency, so there is no converter here; the demo is only two dense layers,
which TFLite expresses directly: FULLY_CONNECTED (fused RELU), FULLY_CONNECTED, SOFTMAX. The same
weights then reach the guest through ONNX, TFLite and a wasinfer module, so all three must give one
answer. Input "input" float32 [1, 64]; the only output, "probabilities", float32 [1, 10].
"""

from __future__ import annotations

import numpy as np
import onnx
import tflite  # type: ignore[import-untyped]
from onnx import numpy_helper

from tests.tflite_builder import TfliteBuilder


def digits_tflite(onnx_model: bytes) -> bytes:
    """The skl2onnx digits MLP (MatMul/Add/Relu/MatMul/Add/Softmax) as a .tflite flatbuffer."""
    weights = {init.name: numpy_helper.to_array(init) for init in onnx.load_from_string(onnx_model).graph.initializer}
    b = TfliteBuilder()
    x = b.input([1, 64], name="input")
    # FULLY_CONNECTED takes its weights as [out, in]; ONNX's MatMul has them as [in, out]
    layers = [(weights["coefficient"], weights["intercepts"], tflite.ActivationFunctionType.RELU, "hidden"),
              (weights["coefficient1"], weights["intercepts1"], tflite.ActivationFunctionType.NONE, "logits")]
    for index, (w, bias, activation, name) in enumerate(layers, start=1):
        out = b.tensor([1, w.shape[1]], name=name)
        x = b.op("FULLY_CONNECTED", [x, b.const(np.ascontiguousarray(w.T), np.float32, f"w{index}"),
                                     b.const(bias.reshape(-1), np.float32, f"b{index}")], [out],
                 options={"FusedActivationFunction": activation})
    probabilities = b.tensor([1, weights["intercepts1"].size], name="probabilities")
    b.op("SOFTMAX", [x], [probabilities], options={"Beta": 1.0})
    return b.build(outputs=[probabilities])
