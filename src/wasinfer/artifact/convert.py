"""The compile pipeline: frontend → passes → codegen → artifact (module + metadata section)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from wasinfer import __version__
from wasinfer.artifact.metadata import Metadata, TensorSpec, custom_section
from wasinfer.codegen import ABI_VERSION, METADATA_SECTION, CompileOptions, compile_graph
from wasinfer.frontends import load_onnx
from wasinfer.passes import fold_batchnorm, fold_constants, fuse_activations
from wasinfer.passes.shapes import fold_static_values


@dataclass
class ConvertResult:
    wasm: bytes
    metadata: Metadata
    stats: dict[str, object] = field(default_factory=dict)


def convert_onnx(
    source: str | Path | onnx.ModelProto,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    max_batch: int = 1,
    name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    wasi: bool = False,
) -> ConvertResult:
    """Compile an ONNX model into a self-contained module. Raises before producing anything.

    With `wasi`, the module is also a WASI command (`_start`: .npy on stdin → .npy on stdout).
    """
    if max_batch < 1:
        raise ValueError("--max-batch must be at least 1")
    started = time.perf_counter()
    loaded = load_onnx(source, input_shapes)
    graph = loaded.graph
    nodes_in = len(graph.nodes)
    folded = fold_static_values(graph) + fold_constants(graph)
    bn = fold_batchnorm(graph)
    fused = fuse_activations(graph)
    options = CompileOptions(max_batch=max_batch, batch_inputs=loaded.batch_inputs, wasi=wasi)
    compiled = compile_graph(graph, options, progress)

    def spec(tensor: str, slots: dict[str, int]) -> TensorSpec:
        info = graph.info(tensor)
        # The graph runs once per sample, so outputs are batched whenever inputs are.
        batched = tensor in loaded.batch_inputs or (tensor in graph.outputs and bool(loaded.batch_inputs))
        return TensorSpec(tensor, info.dtype.name, list(info.shape), 0 if batched else None, slots[tensor])

    layout = compiled.layout
    stats: dict[str, object] = {
        "nodes_in": nodes_in, "kernels": len(graph.nodes), "folded": folded, "bn_folded": bn,
        "activations_fused": fused, "params": graph.param_count(),
        "arena_bytes": compiled.arena_size, "arena_bytes_without_reuse": compiled.naive_arena_size,
        "ops": sorted({n.op_type for n in graph.nodes}),
    }
    source_name = name or (Path(source).stem if not isinstance(source, onnx.ModelProto) else graph.name)
    metadata = Metadata(
        name=source_name,
        inputs=[spec(n, layout["inputs"]) for n in graph.inputs],  # type: ignore[arg-type]
        outputs=[spec(n, layout["outputs"]) for n in graph.outputs],  # type: ignore[arg-type]
        max_batch=max_batch,
        abi_version=ABI_VERSION,
        source_sha256=loaded.source_sha256,
        source_format="onnx",
        producer=f"wasinfer {__version__}",
        arena_bytes=compiled.arena_size,
        memory_bytes=int(layout["memory_bytes"]),  # type: ignore[call-overload]
        compile_options={"max_batch": max_batch, "wasi": wasi,
                         "input_shapes": {k: list(v) for k, v in (input_shapes or {}).items()}},
        stats={k: v for k, v in stats.items() if k != "ops"},
    )
    wasm = compiled.wasm + custom_section(METADATA_SECTION, metadata.to_json())
    stats["seconds"] = time.perf_counter() - started
    stats["wasm_bytes"] = len(wasm)
    return ConvertResult(wasm, metadata, stats)

