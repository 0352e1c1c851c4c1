"""The compile pipeline: frontend → passes → backends/wasm → artifact (module + metadata section)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from wasinfer import __version__
from wasinfer.artifact.metadata import TENSOR_DTYPES, Metadata, TensorSlot, custom_section
from wasinfer.backends.wasm import ABI_VERSION, METADATA_SECTION, CompileOptions, compile_graph
from wasinfer.frontends import FrontendError, Loaded, load_onnx
from wasinfer.frontends.tflite import is_tflite, load_tflite
from wasinfer.ir import UnsupportedModel
from wasinfer.passes import fold_batchnorm, fold_constants, fold_conv_affine, fuse_activations
from wasinfer.passes.control import batch_mixing, settle, tensor_batch_axes
from wasinfer.passes.einsum import lower_einsums
from wasinfer.passes.int8 import fuse_int8_gemms
from wasinfer.passes.quantize import quantize_weights
from wasinfer.passes.quantized import decompose_quantized
from wasinfer.passes.shapes import fold_static_values


@dataclass
class ConvertResult:
    wasm: bytes
    metadata: Metadata
    stats: dict[str, object] = field(default_factory=dict)


def convert_model(
    source: str | Path | onnx.ModelProto,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    max_batch: int = 1,
    name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    wasi: bool = False,
    weights: str = "float32",
    source_format: str | None = None,
    relaxed_simd: bool = False,
) -> ConvertResult:
    """Compile an ONNX or TFLite model into a self-contained module. Raises before producing anything.

    `source_format` "onnx" or "tflite"; by default a file is TFLite when it has the flatbuffer
    identifier ("TFL3" at byte 4), whatever its name, and ONNX otherwise.

    With `wasi`, the module is also a WASI command (`_start`: .npy on stdin → .npy on stdout).
    `weights` "int8" or "fp16" stores the large weights compressed (passes/quantize.py).
    """
    if max_batch < 1:
        raise ValueError("--max-batch must be at least 1")
    started = time.perf_counter()
    if source_format is None:
        source_format = "tflite" if not isinstance(source, onnx.ModelProto) and is_tflite(source) else "onnx"
    if source_format not in ("onnx", "tflite") or (source_format == "tflite" and isinstance(source, onnx.ModelProto)):
        raise ValueError(f"source_format {source_format!r}: expected 'onnx' or a .tflite file for 'tflite'")
    loaded = _load(source, input_shapes, source_format)
    graph = loaded.graph
    nodes_in = len(graph.nodes)
    folded = fold_static_values(graph) + fold_constants(graph)
    folded += settle(graph)  # constant Ifs inlined, values typed once their shapes folded, refolded
    lower_einsums(graph)
    bn = fold_batchnorm(graph)
    affine = fold_conv_affine(graph)
    fused = fuse_activations(graph)
    encoding = quantize_weights(graph, weights)
    batch_axes = tensor_batch_axes(graph, loaded.batch_axes)
    options = CompileOptions(max_batch=max_batch, batch_axes=batch_axes, wasi=wasi, weights=encoding,
                             relaxed_simd=relaxed_simd)
    compiled = compile_graph(graph, options, progress)  # the kernels' own checks name most problems first
    carried = [f"tensor {name!r}: dtype {graph.info(name).dtype.name} cannot cross the module's ABI (it carries "
               f"{', '.join(TENSOR_DTYPES)})" for name in graph.inputs + graph.outputs
               if name in graph.tensors and graph.info(name).dtype.name not in TENSOR_DTYPES]
    if carried:
        raise UnsupportedModel(carried)

    def spec(tensor: str, slots: dict[str, int]) -> TensorSlot:
        info = graph.info(tensor)
        return TensorSlot(tensor, info.dtype.name, list(info.shape), batch_axes.get(tensor), slots[tensor])

    layout = compiled.layout
    stats: dict[str, object] = {
        "nodes_in": nodes_in, "kernels": len(graph.nodes), "folded": folded, "bn_folded": bn,
        "affine_folded": affine,
        "activations_fused": fused, "params": graph.param_count(),
        "arena_bytes": compiled.arena_size, "arena_bytes_without_reuse": compiled.naive_arena_size,
        "ops": sorted({n.op_type for n in graph.nodes}),
        **layout["weights"],  # type: ignore[dict-item]
    }
    source_name = name or (Path(source).stem if not isinstance(source, onnx.ModelProto) else graph.name)
    metadata = Metadata(
        name=source_name,
        inputs=[spec(n, layout["inputs"]) for n in graph.inputs],  # type: ignore[arg-type]
        outputs=[spec(n, layout["outputs"]) for n in graph.outputs],  # type: ignore[arg-type]
        max_batch=max_batch,
        abi_version=ABI_VERSION,
        source_sha256=loaded.source_sha256,
        source_format=source_format,
        producer=f"wasinfer {__version__}",
        arena_bytes=compiled.arena_size,
        memory_bytes=int(layout["memory_bytes"]),  # type: ignore[call-overload]
        compile_options={"max_batch": max_batch, "wasi": wasi, "weights": weights, "relaxed_simd": relaxed_simd,
                         "input_shapes": {k: list(v) for k, v in (input_shapes or {}).items()}},
        stats={k: v for k, v in stats.items() if k not in ("ops", "weight_encoding")},
        weight_encoding=weights,
    )
    wasm = compiled.wasm + custom_section(METADATA_SECTION, metadata.to_json())
    stats["seconds"] = time.perf_counter() - started
    stats["wasm_bytes"] = len(wasm)
    return ConvertResult(wasm, metadata, stats)


def _load(source: str | Path | onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]] | None,
          source_format: str) -> Loaded:
    """The frontend's IR, with a dynamic leading dim as the per-sample batch unless a node mixes
    samples along it (passes/control.py): then that dim must come from `input_shapes`."""
    def load(batch: bool) -> Loaded:
        if source_format == "tflite":
            loaded = load_tflite(source, input_shapes, batch=batch)  # type: ignore[arg-type]
        else:
            loaded = load_onnx(source, input_shapes, batch=batch)
        decompose_quantized(loaded.graph)  # before the batch analysis, which then sees what they compute
        fuse_int8_gemms(loaded.graph)  # before folding would dequantize the int8 weights
        return loaded

    loaded = load(batch=True)
    mixing = batch_mixing(loaded.graph, loaded.batch_axes) if loaded.batch_axes else []
    if not mixing:
        return loaded
    missing = [n for n in loaded.batch_axes if n not in (input_shapes or {})]
    if missing:
        raise FrontendError(f"the dynamic batch dim of {missing} cannot be a per-sample batch: "
                            f"{'; '.join(mixing[:3])}; give its size with --input-shape {missing[0]}=d0,d1,...")
    return load(batch=False)


def convert_onnx(source: str | Path | onnx.ModelProto, *args: Any, **kwargs: Any) -> ConvertResult:
    """`convert_model` for an ONNX model (a file's content is not sniffed)."""
    return convert_model(source, *args, **{**kwargs, "source_format": "onnx"})
