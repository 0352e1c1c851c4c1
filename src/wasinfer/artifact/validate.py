"""`wasinfer validate`: is this file a well-formed wasinfer module, and does it compute what
its source model computes?

Checks, in order: the binary validates in wasmtime; the metadata section parses; the ABI
exports exist with the documented signatures and agree with the metadata; and, given the
source model, outputs match ONNX Runtime on random (or given) inputs. A module with symbolic
input dims (ABI version 3) serves every size in their ranges, so it is compared at several:
each symbol at its range's smallest, at one size between and at its largest, each reported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import wasmtime

from wasinfer.artifact.calibrate import accuracy_drop
from wasinfer.artifact.metadata import Metadata, read_metadata
from wasinfer.backends.wasm.abi import SUPPORTED_ABI_VERSIONS

RTOL, ATOL = 1e-4, 1e-5

EXPECTED_EXPORTS: dict[str, tuple[list[str], list[str]]] = {
    "wasinfer_abi_version": ([], ["i32"]),
    "wasinfer_max_batch": ([], ["i32"]),
    "wasinfer_input_ptr": (["i32"], ["i32"]),
    "wasinfer_output_ptr": (["i32"], ["i32"]),
    "wasinfer_run": (["i32"], ["i32"]),
}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    metadata: Metadata | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok


def random_inputs(metadata: Metadata, batch: int, rng: np.random.Generator,
                  sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Random inputs for a run of `batch` samples; a symbolic dim takes its size in `sizes` (by symbol), or
    without one its largest (the compiled shape). Integers are 0..7, or the first 8 values of an input's
    declared range (--input-values: any other would be refused); a float input with a declared range is uniform
    in it."""
    feeds = {}
    declared = metadata.compile_options.get("input_values", {})
    for spec in metadata.inputs:
        shape = spec.shape_for(batch)
        for axis, symbol in zip(spec.run_time_axes, spec.symbolic_dims, strict=False):
            shape[axis] = (sizes or {}).get(symbol, shape[axis])
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f" and spec.name in declared:  # a Resize's scales: inside their range
            low, high = declared[spec.name]
            feeds[spec.name] = rng.uniform(float(low), float(high), shape).astype(dtype)
        elif dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[spec.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            low, high = declared.get(spec.name, (0, 7))
            feeds[spec.name] = rng.integers(low, min(high, low + 7) + 1, shape).astype(dtype)
    return feeds


def symbol_ranges(metadata: Metadata) -> dict[str, tuple[int, int, int]]:
    """Each symbol of a version-3 module's inputs with its range and step (where inputs that share it disagree, the
    sizes every one of them takes); empty for a module without symbolic dims."""
    ranges: dict[str, tuple[int, int, int]] = {}
    for spec in metadata.inputs:
        steps = spec.steps or [1] * len(spec.ranges)
        for symbol, (low, high), step in zip(spec.symbolic_dims, spec.ranges, steps, strict=False):
            known = ranges.get(symbol, (low, high, step))
            ranges[symbol] = (max(low, known[0]), min(high, known[1]), step)
    return ranges


def sizes_to_compare(metadata: Metadata) -> list[dict[str, int]]:
    """The symbols' sizes parity is checked at: all at their smallest, all between (a multiple of the step from the
    smallest), all at their largest (fewer
    where a range has fewer sizes); one empty set (the compiled shapes) for a module without symbolic dims."""
    ranges = symbol_ranges(metadata)
    sets: list[dict[str, int]] = []
    for position in range(3):  # smallest, between, largest
        sizes = {symbol: (low, low + (high - low) // 2 // step * step, high)[position]
                 for symbol, (low, high, step) in ranges.items()}
        if sizes not in sets:
            sets.append(sizes)
    return sets


def _valtype_names(types: list[wasmtime.ValType]) -> list[str]:
    return [str(t) for t in types]


Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def validate(wasm_path: str | Path, reference: str | Path | None = None, samples: int = 8,
             given: dict[str, np.ndarray] | None = None, seed: int = 0, runner: Runner | None = None,
             reference_runner: Runner | None = None) -> Report:
    """Check the module; with `reference` (the source model's path), `runner` (a runtime backend's `run`
    for the module) and `reference_runner` (one for the source model), check parity too."""
    report = Report()
    wasm = Path(wasm_path).read_bytes()
    engine = wasmtime.Engine()
    try:
        module = wasmtime.Module(engine, wasm)
        report.add("wasm binary validates", True, f"{len(wasm):,} bytes")
    except wasmtime.WasmtimeError as exc:
        report.add("wasm binary validates", False, str(exc).splitlines()[0])
        return report
    try:
        metadata = read_metadata(wasm)
        report.metadata = metadata
        report.add("metadata section", True, f"schema {metadata.schema_version}, model {metadata.name!r}")
    except (ValueError, TypeError, KeyError) as exc:
        report.add("metadata section", False, str(exc))
        return report

    exports = {e.name: e.type for e in module.exports}
    problems: list[str] = []
    if not isinstance(exports.get("memory"), wasmtime.MemoryType):
        problems.append("memory is not exported")
    for name, (params, results) in EXPECTED_EXPORTS.items():
        export_type = exports.get(name)
        if not isinstance(export_type, wasmtime.FuncType):
            problems.append(f"{name} is not an exported function")
        elif (_valtype_names(export_type.params), _valtype_names(export_type.results)) != (params, results):
            problems.append(f"{name} has signature {export_type}, expected {params} -> {results}")
    if not report.add("ABI exports", not problems, "; ".join(problems) or "memory, wasinfer_* present"):
        return report

    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    linker.define_unknown_imports_as_traps(module)  # a --wasi module's imports serve only _start
    instance = linker.instantiate(store, module)
    ex = instance.exports(store)
    memory = ex["memory"]
    assert isinstance(memory, wasmtime.Memory)
    abi = ex["wasinfer_abi_version"](store)  # type: ignore[operator]
    max_batch = ex["wasinfer_max_batch"](store)  # type: ignore[operator]
    mismatches = []
    if abi != metadata.abi_version or abi not in SUPPORTED_ABI_VERSIONS:
        mismatches.append(f"ABI version export {abi}, metadata {metadata.abi_version}, runtime "
                          f"{' or '.join(map(str, SUPPORTED_ABI_VERSIONS))}")
    if max_batch != metadata.max_batch:
        mismatches.append(f"max batch export {max_batch} != metadata {metadata.max_batch}")
    memory_bytes = memory.data_len(store)
    for kind, specs in (("input", metadata.inputs), ("output", metadata.outputs)):
        for i, spec in enumerate(specs):
            ptr = ex[f"wasinfer_{kind}_ptr"](store, i)  # type: ignore[operator]
            if ptr != spec.offset:
                mismatches.append(f"{kind} {spec.name!r}: export says {ptr}, metadata {spec.offset}")
            end = spec.offset + spec.sample_bytes * spec.slot_samples(metadata.max_batch)
            if end > memory_bytes:
                mismatches.append(f"{kind} {spec.name!r} slot ends past linear memory ({end} > {memory_bytes})")
            dims_end = None if spec.dims_offset is None else spec.dims_offset + 4 * len(spec.shape)
            if dims_end is not None and dims_end > memory_bytes:
                mismatches.append(f"{kind} {spec.name!r} dims end past linear memory ({dims_end} > {memory_bytes})")
    if not report.add("ABI agrees with metadata", not mismatches, "; ".join(mismatches) or
                      f"ABI v{abi}, max batch {max_batch}, {memory_bytes:,} bytes of memory"):
        return report
    run_status = ex["wasinfer_run"](store, metadata.max_batch + 1)  # type: ignore[operator]
    report.add("run rejects a batch above the maximum", run_status != 0, f"wasinfer_run returned {run_status}")
    if any(spec.ranges for spec in metadata.inputs):
        status, detail = _run_past_a_range(store, memory, ex["wasinfer_run"], metadata)  # type: ignore[arg-type]
        report.add("run rejects a symbolic dim outside its range", status == 1,
                   f"{detail}: wasinfer_run returned {status}")

    if reference is not None and runner is not None and reference_runner is not None:
        _check_parity(report, runner, reference_runner, metadata, Path(reference), samples, given, seed)
    return report


def _run_past_a_range(store: wasmtime.Store, memory: wasmtime.Memory, run: wasmtime.Func,
                      metadata: Metadata) -> tuple[int, str]:
    """wasinfer_run(1)'s status with every input's dims written at their largest but the first symbolic dim one
    past its range, which docs/abi.md says returns 1 (nothing run); and what was written, for the report."""
    first = next(spec for spec in metadata.inputs if spec.ranges)
    for spec in metadata.inputs:
        if spec.dims_offset is None:
            continue
        dims = list(spec.shape)
        if spec is first:
            dims[spec.run_time_axes[0]] = spec.ranges[0][1] + 1
        memory.write(store, np.asarray(dims, "<i4").tobytes(), spec.dims_offset)
    axis = first.run_time_axes[0]
    status = run(store, 1)
    return int(status), f"input {first.name!r} axis {axis} at {first.ranges[0][1] + 1}, past {first.ranges[0][1]}"


def _check_parity(report: Report, runner: Runner, reference_runner: Runner, metadata: Metadata, reference: Path,
                  samples: int, given: dict[str, np.ndarray] | None, seed: int) -> None:
    digest = hashlib.sha256(reference.read_bytes()).hexdigest()
    report.add("reference is the source model", digest == metadata.source_sha256,
               "sha256 matches" if digest == metadata.source_sha256 else
               f"sha256 {digest[:12]}… != source {metadata.source_sha256[:12]}…")
    rng = np.random.default_rng(seed)
    groups: list[tuple[str, list[dict[str, np.ndarray]]]] = [("", [given])] if given else []
    for sizes in [] if given else sizes_to_compare(metadata):  # one group, the compiled shapes, without symbols
        batches = [random_inputs(metadata, 1, rng, sizes) for _ in range(samples)]
        if metadata.max_batch > 1:
            batches.append(random_inputs(metadata, metadata.max_batch, rng, sizes))
        groups.append((" at " + ", ".join(f"{symbol}={size}" for symbol, size in sizes.items()) if sizes else "",
                       batches))
    quantized = metadata.compile_options.get("quantize")
    if quantized:  # --quantize int8: the float model is the reference, and the question is how far it moved
        names = [spec.name for spec in metadata.outputs]
        batches = [feeds for _, group in groups for feeds in group]
        drops = accuracy_drop(runner, lambda feeds: [reference_runner(feeds)[name] for name in names], names,
                              batches)
        report.add(f"{quantized} module against the float model on {len(batches)} input sets (its accuracy drop; "
                   "a quantized module is not held to float32 parity)", True,
                   "; ".join(drop.describe() for drop in drops))
        return
    for where, batches in groups:
        _compare(report, runner, reference_runner, batches, where)


def _compare(report: Report, runner: Runner, reference_runner: Runner, batches: list[dict[str, np.ndarray]],
             where: str) -> None:
    """One parity check: the module's outputs against the reference's on `batches`, `where` saying at which
    symbolic sizes (empty: the compiled shapes, or the given inputs)."""
    worst: dict[str, float] = {}
    failures = []
    for feeds in batches:
        ours = runner(feeds)
        theirs = reference_runner(feeds)
        for name, got in ours.items():
            want = np.asarray(theirs[name])
            err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if got.size else 0.0
            worst[name] = max(worst.get(name, 0.0), err)
            if got.shape != want.shape or not np.allclose(got, want, rtol=RTOL, atol=ATOL):
                failures.append(f"{name}: max abs error {err:.3g} (shape {list(got.shape)} vs {list(want.shape)})")
    detail = ", ".join(f"{n} max|err| {e:.2g}" for n, e in worst.items())
    report.add(f"parity with ONNX Runtime{where} on {len(batches)} input sets (rtol {RTOL}, atol {ATOL})",
               not failures, "; ".join(failures[:5]) or detail)
