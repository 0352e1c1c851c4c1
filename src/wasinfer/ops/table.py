"""The op table of docs/ops.md, rendered from the definitions (scripts/op_table.py writes it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import onnx

from wasinfer.ops.definition import REGISTRY, OpDef, Role, schema_defaults

FAMILIES = {
    "elementwise": "Element by element",
    "shape": "Views and compile-time ops",
    "nn": "Convolutions, pools, normalisations",
    "linalg": "Matrix products",
    "reduce": "Reductions and ops along an axis",
    "layout": "Moving and picking elements",
    "recurrent": "Recurrent layers",
    "control": "Control flow",
    "sequence": "Sequences and optionals, folded while compiling",
    "ml": "Classical ML (ai.onnx.ml)",
    "contrib": "Transformer ops: ONNX Runtime's com.microsoft contrib ops, ONNX's composite ops",
    "quantized": "Quantized operators (QOperator, dynamic, com.microsoft) and the int8 kernels (wasinfer)",
}


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def _batch(op: OpDef) -> str:
    if op.batch is None:
        return "not followed"
    return (op.batch.__doc__ or op.batch.__name__).strip().splitlines()[0].rstrip(".")


def _extent(op: OpDef) -> str:
    if op.extent is None:
        return "not yet"
    return (op.extent.__doc__ or op.extent.__name__).strip().splitlines()[0].rstrip(".")


def render(emitters: Mapping[tuple[str, str], str]) -> str:
    """Markdown: one table per ops/ module, one row per op; `emitters` maps (domain, op) to the
    file of the wasm emitter that runs it."""
    lines = [
        "# Ops",
        "",
        "Generated from `src/wasinfer/ops/` by `python scripts/op_table.py`; do not edit by hand.",
        "",
        "Each op has one definition in `src/wasinfer/ops/` (role, fusion, batch rule; attribute defaults are",
        "ONNX's own at the model's opset) and, where it runs, one emitter in `src/wasinfer/backends/wasm/emitters/`.",
        "*role*: `kernel` (an emitter runs it), `view` (its output aliases its input: no code, no copy),",
        "`compile-time` (shapes are static, so it is always evaluated while compiling), `inlined` (replaced",
        "by a subgraph), `lowered` (rewritten into other ops by a pass). *fusion*: `activation` (applied in",
        "the epilogue of the kernel that produces its",
        "input), `producer` (applies such an activation). *batch*: where the samples of a run-time batch go",
        "through the op (docs/compiler.md, \"Dynamic dimensions\"). *symbolic dims*: how a dim given as a range",
        "(`--input-shape x=1,3,48,32..1280`) goes through the op (`src/wasinfer/ops/extent.py`); `not yet`: a",
        "symbolic dim reaching it is refused by name. Defaults are those of ONNX "
        f"{onnx.__version__}'s newest opset.",
    ]
    for family, title in FAMILIES.items():
        ops = sorted((op for op in REGISTRY.values() if op.family == family), key=lambda o: o.key)
        if not ops:
            continue
        lines += ["", f"## {title}", "",
                  "| op | role | fusion | emitter (or what replaces it) | batch | symbolic dims | attribute defaults |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for op in ops:
            defaults = schema_defaults(op.op_type, op.domain, onnx.defs.onnx_opset_version())
            shown = ", ".join(f"{k}={_value(v)}" for k, v in sorted(defaults.items()) if _value(v) != "[]")
            emitter = emitters.get(op.key)
            where = f"`{emitter}`" if emitter else ((op.summary or "—") if op.role is not Role.KERNEL else "none yet")
            lines.append(f"| {op.op_type} | {op.role.value} | {op.fusion.value or '—'} | {where} | {_batch(op)} | "
                         f"{_extent(op)} | {shown or '—'} |")
    return "\n".join(lines) + "\n"
