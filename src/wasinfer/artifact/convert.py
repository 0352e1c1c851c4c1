"""The compile pipeline: frontend → passes → backends/wasm → artifact (module + metadata section)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import onnx

from wasinfer.artifact.calibrate import Feeds, quantize_static
from wasinfer.artifact.metadata import TENSOR_DTYPES, ListSlot, Metadata, TensorSlot, custom_section
from wasinfer.artifact.module import ConvertResult
from wasinfer.artifact.variants import attach_relaxed_code
from wasinfer.backends.wasm import METADATA_SECTION, CompileOptions, compile_graph, kernel_takes
from wasinfer.backends.wasm.compiler import abi_version, input_symbol, symbolic_axes
from wasinfer.frontends import FrontendError, Loaded, load_onnx
from wasinfer.frontends.tflite import is_tflite, load_tflite
from wasinfer.ir import ListValue, UnsupportedModel
from wasinfer.ir.symbolic import largest, smallest
from wasinfer.passes import fold_batchnorm, fold_constants, fold_conv_affine, fuse_activations
from wasinfer.passes.contrib import decompose_contrib
from wasinfer.passes.control import batch_mixing, infer_types, settle, tensor_batch_axes
from wasinfer.passes.crop import lower_crops
from wasinfer.passes.dynamic import bound_run_time_shapes
from wasinfer.passes.einsum import lower_einsums
from wasinfer.passes.int8 import fuse_int8_gemms
from wasinfer.passes.int8_islands import fuse_int8_islands
from wasinfer.passes.losses import lower_losses
from wasinfer.passes.pools import cascade_max_pools
from wasinfer.passes.quantize import quantize_weights
from wasinfer.passes.quantized import decompose_quantized
from wasinfer.passes.shapes import fold_static_values
from wasinfer.passes.spectral import lower_spectral
from wasinfer.passes.symbolic import record_shape_values
from wasinfer.passes.values import Range, declare_input_values
from wasinfer.passes.widen import widen_half_floats
from wasinfer.version import __version__

SIMD_CHOICES = ("auto", "plain", "relaxed")


def convert_model(
    source: str | Path | onnx.ModelProto,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    max_batch: int = 1,
    name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    wasi: bool = False,
    weights: str = "float32",
    source_format: str | None = None,
    simd: str = "auto",
    quantize: str | None = None,
    calibration: Sequence[Feeds] = (),
    input_ranges: dict[str, dict[int, tuple[int, ...]]] | None = None,
    input_values: dict[str, Range] | None = None,
    max_iterations: int | None = None,
    sequences: dict[str, tuple[int, int]] | None = None,
) -> ConvertResult:
    """Compile an ONNX or TFLite model into a self-contained module. Raises before producing anything.

    `source_format` "onnx" or "tflite"; by default a file is TFLite when it has the flatbuffer
    identifier ("TFL3" at byte 4), whatever its name, and ONNX otherwise.

    With `wasi`, the module is also a WASI command (`_start`: .npy on stdin → .npy on stdout).
    `weights` "int8" or "fp16" stores the large weights compressed (passes/quantize.py).
    `simd` "auto" carries both plain-SIMD code and relaxed-SIMD (FMA) code that a host with relaxed SIMD
    swaps in (artifact/variants.py); "plain" only the first, "relaxed" only the second (the module then
    needs an engine with relaxed SIMD).
    `quantize` "int8" quantizes an ONNX model statically first, calibrated on the `calibration` samples
    (artifact/calibrate.py: ONNX Runtime's quantizer), so that its layers run on the integer kernels; the
    metadata's source_sha256 stays the float model's.
    `input_ranges` gives an input's axes a range each run may take (--input-shape x=1,3,48,32..1280:
    {"x": {3: (32, 1280)}}; (MIN, MAX, STEP) for the multiples of STEP); `input_shapes` then holds MAX there.
    One module serves every size in the ranges (ABI version 3, passes/symbolic.py).
    `input_values` gives the range of an integer input's values where they set dims (--input-values
    repeats=1..8: {"repeats": (1, 8)}; a ConstantOfShape's shape, a Tile's repeats), or of the values a kernel
    computes with (a Resize's scales, floats: {"scales": (0.5, 4.0)}): memory is planned for the largest, and a
    run with a value outside the range is refused naming the input (passes/values.py); where a Loop's trip count
    is computed from them, the range bounds the count it is unrolled to (passes/loops.py).
    `max_iterations` is the most iterations a Loop whose trip count has no bound the compiler can find may run
    (ONNX's Range as its function body, with a float delta): it is unrolled to that many, and a run whose trip
    count is above it is refused naming the Loop.
    `sequences` gives a sequence input's count, (MIN, MAX) tensors (--sequence x=MIN..MAX; (N, N) for exactly N):
    its elements are MAX tensor inputs, with an int64 count each run gives where MIN < MAX (frontends/lists.py).
    """
    if simd not in SIMD_CHOICES:
        raise ValueError(f"simd {simd!r}: expected one of {', '.join(SIMD_CHOICES)}")
    if max_batch < 1:
        raise ValueError("--max-batch must be at least 1")
    if max_iterations is not None and max_iterations < 1:
        raise ValueError("--max-iterations must be at least 1")
    started = time.perf_counter()
    if source_format is None:
        source_format = "tflite" if not isinstance(source, onnx.ModelProto) and is_tflite(source) else "onnx"
    if source_format not in ("onnx", "tflite") or (source_format == "tflite" and isinstance(source, onnx.ModelProto)):
        raise ValueError(f"source_format {source_format!r}: expected 'onnx' or a .tflite file for 'tflite'")
    source_sha256 = None
    if quantize is not None:
        source, source_sha256 = _quantized(source, source_format, quantize, calibration)
    loaded, max_batch, input_ranges = _load(source, input_shapes, source_format, input_ranges, max_batch, sequences)
    if source_sha256 is not None:
        loaded = dataclasses.replace(loaded, source_sha256=source_sha256)
    graph = loaded.graph
    graph.max_iterations = max_iterations
    nodes_in = len(graph.nodes)
    folded = 0
    if graph.symbols or input_values:  # shape arithmetic on symbolic dims, recorded before it folds at the largest
        folded += fold_constants(graph)
        if input_values:  # each value a symbol; the nodes read a constant at the largest from here on
            declare_input_values(graph, input_values)
        record_shape_values(graph)
    folded += fold_static_values(graph) + fold_constants(graph)
    folded += settle(graph)  # constant Ifs inlined, values typed once their shapes folded, refolded
    if bound_run_time_shapes(graph):  # NonZero, Compress...: their largest shape, and a symbol each run decides
        infer_types(graph)  # what follows them, at that largest shape (passes/symbolic.py follows the symbol)
    lower_einsums(graph)
    lower_spectral(graph)
    lower_crops(graph)
    lower_losses(graph)
    bn = fold_batchnorm(graph)
    affine = fold_conv_affine(graph)
    fused = fuse_activations(graph)
    cascade_max_pools(graph)  # SPP's 5/9/13 max pools as 5, 5 over it, 5 over that
    widen_half_floats(graph, kernel_takes)  # float16/bfloat16 ops the kernels take only in float32
    encoding = quantize_weights(graph, weights)
    try:
        batch_axes = tensor_batch_axes(graph, loaded.batch_axes)
    except UnsupportedModel:
        if max_batch > 1:
            raise
        batch_axes = {}  # one sample per run: every tensor keeps the shape it was compiled at, no batch axis
    if graph.symbols and max_batch == 1:
        batch_axes = {}  # symbolic dims: a batch comes as a range of its own axis (--input-shape x=1..8,...)
    options = CompileOptions(max_batch=max_batch, batch_axes=batch_axes, wasi=wasi, weights=encoding,
                             relaxed_simd=simd == "relaxed")
    variant_graph = copy.deepcopy(graph) if simd == "auto" else None  # compiling may change a graph's records
    simd_note = simd
    compiled = compile_graph(graph, options, progress)  # the kernels' own checks name most problems first
    code = compiled.wasm
    if variant_graph is not None:
        relaxed = compile_graph(variant_graph, dataclasses.replace(options, relaxed_simd=True))
        try:
            code = attach_relaxed_code(compiled.wasm, relaxed.wasm)
        except ValueError as exc:  # a kernel whose layout depends on the variant: ship the plain code only
            simd_note = f"plain only: {exc}"
        else:
            simd_note = "auto"
    carried = [f"tensor {name!r}: dtype {graph.info(name).dtype.name} cannot cross the module's ABI (it carries "
               f"{', '.join(TENSOR_DTYPES)})" for name in graph.inputs + graph.outputs
               if name in graph.tensors and graph.info(name).dtype.name not in TENSOR_DTYPES]
    if carried:
        raise UnsupportedModel(carried)

    def spec(tensor: str, slots: dict[str, int]) -> TensorSlot:
        info = graph.info(tensor)
        dims = layout["dims"]
        assert isinstance(dims, dict)
        symbolic = symbolic_axes(graph, tensor)
        extent = graph.extents.get(tensor, ())
        ranges = [[smallest(extent[a], graph.symbols), largest(extent[a], graph.symbols)] for a in symbolic]
        if tensor in graph.inputs:  # an input's dim is a symbol (times a step): hosts match inputs by symbol
            named = [input_symbol(extent[a]) for a in symbolic]
            names, steps = [n for n, _ in named], [s for _, s in named] if any(s > 1 for _, s in named) else []
        else:
            names, steps = [str(extent[a]) for a in symbolic], []
        return TensorSlot(tensor, info.dtype.name, list(info.shape), batch_axes.get(tensor), slots[tensor],
                          symbolic, dims.get(tensor), ranges, names,
                          steps)

    layout = compiled.layout
    stats: dict[str, object] = {
        "nodes_in": nodes_in, "kernels": len(graph.nodes), "folded": folded, "bn_folded": bn,
        "affine_folded": affine,
        "activations_fused": fused, "params": graph.param_count(),
        "arena_bytes": compiled.arena_size, "arena_bytes_without_reuse": compiled.naive_arena_size,
        "ops": sorted({n.op_type for n in graph.nodes}),
        "op_counts": dict(sorted(Counter(n.op_type for n in graph.nodes).items())),  # what each op kind became
        **layout["weights"],  # type: ignore[dict-item]
    }
    source_name = name or (Path(source).stem if not isinstance(source, onnx.ModelProto) else graph.name)
    metadata = Metadata(
        name=source_name,
        inputs=[spec(n, layout["inputs"]) for n in graph.inputs],  # type: ignore[arg-type]
        outputs=[spec(n, layout["outputs"]) for n in graph.outputs],  # type: ignore[arg-type]
        max_batch=max_batch,
        abi_version=abi_version(graph),
        source_sha256=loaded.source_sha256,
        source_format=source_format,
        producer=f"wasinfer {__version__}",
        arena_bytes=compiled.arena_size,
        memory_bytes=int(layout["memory_bytes"]),  # type: ignore[call-overload]
        compile_options={"max_batch": max_batch, "wasi": wasi, "weights": weights, "simd": simd_note,
                         "quantize": quantize, "calibration_samples": len(calibration) if quantize else 0,
                         "input_shapes": {k: list(v) for k, v in (input_shapes or {}).items()},
                         "input_ranges": {k: {str(a): list(r) for a, r in v.items()} for k, v in
                                          (input_ranges or {}).items()},
                         **({"input_values": {k: list(v) for k, v in input_values.items()}} if input_values else {}),
                         **({"max_iterations": max_iterations} if max_iterations is not None else {})},
        stats={k: v for k, v in stats.items() if k not in ("ops", "op_counts", "weight_encoding")},
        weight_encoding=weights,
        run_errors=list(graph.run_errors),
        list_inputs=[list_slot(v) for v in graph.list_inputs],
        list_outputs=[list_slot(v) for v in graph.list_outputs],
    )
    wasm = code + custom_section(METADATA_SECTION, metadata.to_json())
    stats["seconds"] = time.perf_counter() - started
    stats["wasm_bytes"] = len(wasm)
    return ConvertResult(wasm, metadata, stats)


def _quantized(source: str | Path | onnx.ModelProto, source_format: str, quantize: str,
               calibration: Sequence[Feeds]) -> tuple[onnx.ModelProto, str]:
    """The statically quantized model, and the float model's sha256 (what the module was made from)."""
    if quantize != "int8":
        raise ValueError(f"--quantize {quantize!r}: only int8 is supported")
    if source_format != "onnx":
        raise ValueError("--quantize int8 quantizes ONNX models; a TensorFlow Lite model is quantized by its own "
                         "converter (full-integer .tflite files compile as they are)")
    if not calibration:
        raise ValueError("--quantize int8 needs calibration samples: --calibration DIR, a directory of .npy "
                         "(one input) or .npz files (one array per input) that look like real inputs; for "
                         "smaller weights alone, use --weights int8")
    raw = source.SerializeToString() if isinstance(source, onnx.ModelProto) else Path(source).read_bytes()
    try:
        quantized = quantize_static(onnx.load_from_string(raw), calibration)
    except Exception as exc:  # ONNX Runtime's quantizer and its sessions raise many kinds
        raise ValueError(f"--quantize int8: ONNX Runtime's quantizer failed: {str(exc).splitlines()[0]}") from exc
    return quantized, hashlib.sha256(raw).hexdigest()


def _load(source: str | Path | onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]] | None,
          source_format: str, input_ranges: dict[str, dict[int, tuple[int, ...]]] | None = None,
          max_batch: int = 1, sequences: dict[str, tuple[int, int]] | None = None,
          ) -> tuple[Loaded, int, dict[str, dict[int, tuple[int, ...]]] | None]:
    """The frontend's IR (and the max_batch and ranges it is compiled with), with a dynamic leading dim as the
    per-sample batch unless a node mixes samples along it (passes/control.py). Then, with a batch above 1 asked
    for, the whole batch runs at once, its size a symbolic dim 1..max_batch (passes/symbolic.py follows it, or
    names the node it cannot go through); without, that dim must come from `input_shapes`. Beside other symbolic
    dims (--input-shape ranges) a batch above 1 runs the same way, as one more symbolic dim."""
    def load(batch: bool) -> Loaded:
        if source_format == "tflite":
            if sequences:
                raise FrontendError(f"--sequence {sorted(sequences)[0]}: a TFLite model has no sequence inputs")
            loaded = load_tflite(source, input_shapes, batch=batch, input_ranges=input_ranges)  # type: ignore[arg-type]
        else:
            loaded = load_onnx(source, input_shapes, batch=batch, input_ranges=input_ranges, sequences=sequences)
        decompose_quantized(loaded.graph)  # before the batch analysis, which then sees what they compute
        decompose_contrib(loaded.graph)  # the same for ONNX Runtime's contrib ops and ONNX's composite ops
        fuse_int8_gemms(loaded.graph)  # before folding would dequantize the int8 weights
        fuse_int8_islands(loaded.graph)  # what lies between the products, once they are integer kernels
        return loaded

    loaded = load(batch=True)
    mixing = batch_mixing(loaded.graph, loaded.batch_axes) if loaded.batch_axes else []
    if not mixing and not (max_batch > 1 and input_ranges and loaded.batch_axes):
        return loaded, max_batch, input_ranges
    if max_batch > 1:  # the batch as a symbolic dim (beside other ranges too): the graph runs once over all of it
        shapes, ranges = dict(input_shapes or {}), {k: dict(v) for k, v in (input_ranges or {}).items()}
        for name, axis in loaded.batch_axes.items():
            dims = list(loaded.graph.info(name).shape)
            dims[axis] = max_batch
            shapes[name] = tuple(dims)
            ranges.setdefault(name, {})[axis] = (1, max_batch)
        input_shapes, input_ranges = shapes, ranges
        return load(batch=False), 1, ranges
    missing = [n for n in loaded.batch_axes if n not in (input_shapes or {})]
    if missing:
        raise FrontendError(f"the dynamic batch dim of {missing} cannot be a per-sample batch: "
                            f"{'; '.join(mixing[:3])}; give its size with --input-shape {missing[0]}=d0,d1,...")
    return load(batch=False), max_batch, input_ranges


def list_slot(value: ListValue) -> ListSlot:
    return ListSlot(value.name, value.kind, list(value.elements), value.count, value.present,
                    None if value.counts is None else list(value.counts))


def convert_onnx(source: str | Path | onnx.ModelProto, *args: Any, **kwargs: Any) -> ConvertResult:
    """`convert_model` for an ONNX model (a file's content is not sniffed)."""
    return convert_model(source, *args, **{**kwargs, "source_format": "onnx"})
