"""int8 vs float32: an MLP and small CNNs quantized by onnxruntime.quantization (static QDQ), three ways.

    python benchmarks/int8_bench.py [--sizes 256,512,512,10] [--batches 1,8] [--seconds 3] [--uninterruptible]
                                    [--cnns mobilenet_like,resnet_like] [--images 32,96]

For each batch size of the MLP (a fixed leading dim, so the module runs the whole batch as one
product), and for each CNN at each image size (batch 1; the convs run as QConvInt8, the Gemm as
QGemmInt8; uint8 activations, ONNX Runtime's choice for CNNs on x86; the models first go through
ONNX Runtime's quant_pre_process, as its quantization guide advises): mobilenet_v1_like (below:
conv + Relu only) and tests/model_zoo.py's mobilenet_like and resnet_like (whose HardSwish,
residual Adds and pools run on passes/int8_islands.py's integer kernels):
- wasinfer int8: the QDQ model compiled (its products fused into QGemmInt8, passes/int8.py);
- wasinfer float32: the float model it was quantized from;
- ONNX Runtime on the same QDQ model (1 thread; it fuses the pattern into its own int8 kernels).
Each prints the median of `WasmModel.run` / `InferenceSession.run` calls in microseconds, taken
in interleaved rounds so that a noisy, shared machine slows all three alike; and the ratios
float32 / int8 (the int8 kernels' speed-up) and int8 / ONNX Runtime.

`--uninterruptible` runs the modules compiled without interrupt checks (the serving engine
compiles them in, for deadlines: docs/sandbox.md).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from wasinfer.artifact import convert_onnx
from wasinfer.runtime import WasmModel
from wasinfer.runtime.wasm import make_engine

ROOT = Path(__file__).resolve().parent.parent


class _Samples(CalibrationDataReader):
    def __init__(self, samples: list[dict[str, np.ndarray]]):
        self.left = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.left, None)


def mlp(sizes: list[int], batch: int, rng: np.random.Generator) -> onnx.ModelProto:
    """Gemm (transB=1, bias) + Relu per hidden layer, the last Gemm without Relu."""
    nodes, inits, x = [], [], "x"
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        w = rng.normal(0, 1 / np.sqrt(fan_in), (fan_out, fan_in)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"),
                  numpy_helper.from_array(rng.normal(0, 0.1, fan_out).astype(np.float32), f"b{i}")]
        last = i == len(sizes) - 2
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], ["y" if last else f"h{i}"], transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [f"h{i}"], [f"r{i}"]))
            x = f"r{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, sizes[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, sizes[-1]])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def mobilenet_v1_like(image: int, rng: np.random.Generator) -> onnx.ModelProto:
    """MobileNetV1's shape at width 0.5, shortened: a 3x3 stride-2 stem, then depthwise 3x3 (stride
    1 or 2) + pointwise 1x1 blocks, each conv with a bias and Relu, global average pool, Gemm.
    Every conv is quantized and the quantizer absorbs each Relu, so the int8 module is the int8
    convolution kernels end to end, with no element-wise island between them."""
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def conv(x: str, c_in: int, c_out: int, kernel: int, stride: int, group: int) -> str:
        name = f"c{len(nodes)}"
        fan_in = c_in // group * kernel * kernel
        inits.extend([numpy_helper.from_array(rng.normal(0, np.sqrt(2 / fan_in), (c_out, c_in // group, kernel, kernel))
                                              .astype(np.float32), f"{name}_w"),
                      numpy_helper.from_array(rng.normal(0, 0.1, c_out).astype(np.float32), f"{name}_b")])
        nodes.append(helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [name], kernel_shape=[kernel, kernel],
                                      strides=[stride, stride], pads=[kernel // 2] * 4, group=group))
        nodes.append(helper.make_node("Relu", [name], [f"{name}_r"]))
        return f"{name}_r"

    x, channels = conv("image", 3, 16, 3, 2, 1), 16
    for c_out, stride in ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2)):
        x = conv(conv(x, channels, channels, 3, stride, channels), channels, c_out, 1, 1, 1)
        channels = c_out
    inits += [numpy_helper.from_array(rng.normal(0, 0.1, (10, channels)).astype(np.float32), "fc_w"),
              numpy_helper.from_array(np.zeros(10, np.float32), "fc_b")]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["f"]),
              helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "mobilenet_v1_like",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, image, image])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def cnn(name: str, image: int) -> onnx.ModelProto:
    """A CNN with its input fixed to [1, 3, image, image]: mobilenet_v1_like above, or a
    tests/model_zoo.py one (fully convolutional up to a global pool, so any size runs)."""
    if name == "mobilenet_v1_like":
        return mobilenet_v1_like(image, np.random.default_rng(5))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests import model_zoo

    model: onnx.ModelProto = getattr(model_zoo, name)()
    for dim, size in zip(model.graph.input[0].type.tensor_type.shape.dim, (1, 3, image, image), strict=True):
        dim.dim_value = size
    return model


def quantized(model: onnx.ModelProto, samples: list[dict[str, np.ndarray]], workdir: Path,
              activations: QuantType = QuantType.QInt8) -> onnx.ModelProto:
    onnx.save(model, workdir / "float.onnx")
    logging.disable(logging.WARNING)
    quantize_static(workdir / "float.onnx", workdir / "qdq.onnx", _Samples(samples), per_channel=True,
                    quant_format=QuantFormat.QDQ, activation_type=activations, weight_type=QuantType.QInt8)
    logging.disable(logging.NOTSET)
    return onnx.load(workdir / "qdq.onnx")


def medians(runs: dict[str, Callable[[], object]], seconds: float, rounds: int = 20) -> dict[str, float]:
    """Median microseconds per call of each run, over `rounds` interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm up
        for _ in range(20):
            run()
    per_round = seconds / rounds / len(runs)
    for _ in range(rounds):
        for name, run in runs.items():
            count, started = 0, time.perf_counter()
            while True:
                run()
                count += 1
                elapsed = time.perf_counter() - started
                if elapsed >= per_round or count >= 100_000:
                    break
            times[name].append(elapsed / count * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512,512,10")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per batch size")
    parser.add_argument("--uninterruptible", action="store_true", help="modules compiled without interrupt checks")
    parser.add_argument("--cnns", default="mobilenet_v1_like,mobilenet_like,resnet_like",
                        help="mobilenet_v1_like and tests/model_zoo.py CNNs ('' for none)")
    parser.add_argument("--images", default="32,96", help="the CNNs' image sizes")
    args = parser.parse_args()
    engine = make_engine(interruptible=not args.uninterruptible)
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    print(f"MLP {'x'.join(map(str, sizes))}, static QDQ (int8 activations, per-channel int8 weights), "
          f"median us per call{' (no interrupt checks)' if args.uninterruptible else ''}")
    print(f"{'batch':>5} {'wasm int8':>10} {'wasm f32':>10} {'ORT int8':>10} {'f32/int8':>9} {'int8/ORT':>9} "
          f"{'max diff (steps)':>16}")
    for batch in [int(b) for b in args.batches.split(",") if b]:
        print(one_batch(sizes, batch, rng, engine, args.seconds))
    cnns = [name for name in args.cnns.split(",") if name]
    if cnns:
        print("\nCNNs, static QDQ (uint8 activations, per-channel int8 weights), batch 1")
        print(f"{'model':>14} {'image':>5} {'wasm int8':>10} {'wasm f32':>10} {'ORT int8':>10} {'f32/int8':>9} "
              f"{'int8/ORT':>9} {'max diff (steps)':>16}")
    for name in cnns:
        for image in [int(i) for i in args.images.split(",")]:
            print(one_cnn(name, image, rng, engine, args.seconds))


def one_batch(sizes: list[int], batch: int, rng: np.random.Generator, engine: Any, seconds: float) -> str:
    """The table's row for one batch size."""
    with tempfile.TemporaryDirectory() as tmp:
        model = mlp(sizes, batch, rng)
        samples = [{"x": rng.random((batch, sizes[0]), np.float32) * 2 - 1} for _ in range(8)]
        qdq = quantized(model, samples, Path(tmp))
    got, steps = compare(model, qdq, samples[0], engine, seconds, "QGemmInt8")
    return (f"{batch:>5} {got['int8']:>10.1f} {got['f32']:>10.1f} {got['ort']:>10.1f} "
            f"{got['f32'] / got['int8']:>9.2f} {got['int8'] / got['ort']:>9.2f} {steps:>16.1f}")


def one_cnn(name: str, image: int, rng: np.random.Generator, engine: Any, seconds: float) -> str:
    """The CNN table's row for one model and image size."""
    model = cnn(name, image)
    samples = [{model.graph.input[0].name: rng.random((1, 3, image, image), np.float32)} for _ in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(model, Path(tmp) / "exported.onnx")
        logging.disable(logging.WARNING)
        # ONNX Runtime's advised pre-processing (BatchNormalization folded into Conv, shapes): as users quantize
        quant_pre_process(Path(tmp) / "exported.onnx", Path(tmp) / "prepared.onnx", skip_symbolic_shape=True)
        model = onnx.load(Path(tmp) / "prepared.onnx")
        qdq = quantized(model, samples, Path(tmp), QuantType.QUInt8)
    got, steps = compare(model, qdq, samples[0], engine, seconds, "QConvInt8")
    return (f"{name:>14} {image:>5} {got['int8']:>10.1f} {got['f32']:>10.1f} {got['ort']:>10.1f} "
            f"{got['f32'] / got['int8']:>9.2f} {got['int8'] / got['ort']:>9.2f} {steps:>16.1f}")


def compare(model: onnx.ModelProto, qdq: onnx.ModelProto, feeds: dict[str, np.ndarray], engine: Any,
            seconds: float, fused: str) -> tuple[dict[str, float], float]:
    """Median microseconds of the int8 module, the float32 module and ONNX Runtime on the QDQ
    model (1 thread), and the int8 module's largest difference from ONNX Runtime in steps of the
    output's quantization (the scale of the DequantizeLinear that writes it)."""
    int8 = convert_onnx(qdq)
    assert fused in int8.stats["ops"], int8.stats["ops"]  # type: ignore[operator]
    wasm_int8, wasm_f32 = WasmModel(int8.wasm, engine), WasmModel(convert_onnx(model).wasm, engine)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(qdq.SerializeToString(), options, providers=["CPUExecutionProvider"])
    output = qdq.graph.output[0].name
    last = next(n for n in qdq.graph.node if output in n.output)
    dq = last if last.op_type == "DequantizeLinear" else next(
        n for n in qdq.graph.node if n.op_type == "DequantizeLinear" and last.input[0] in n.output)
    y_scale = float(numpy_helper.to_array(next(i for i in qdq.graph.initializer if i.name == dq.input[1])))
    steps = float(np.abs(wasm_int8.run(feeds)[output] - session.run(None, feeds)[0]).max()) / y_scale
    got = medians({"int8": lambda: wasm_int8.run(feeds), "f32": lambda: wasm_f32.run(feeds),
                   "ort": lambda: session.run(None, feeds)}, seconds)
    return got, steps

if __name__ == "__main__":
    main()
