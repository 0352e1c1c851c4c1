"""A second engine keeps the ABI honest: the same .wasm bytes in V8 (Node) and wasmtime agree bit for bit.

Both engines implement the same deterministic Wasm semantics (SIMD128 without relaxed ops has
no implementation-defined results apart from NaN bits), so any difference is an ABI or
codegen bug, not rounding.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.artifact.engines import CASES, JS, PLAIN, Case, SymbolicCase, node, requires_node
from tests.parity import ort_run
from wasinfer.artifact import convert_onnx
from wasinfer.artifact.metadata import Metadata, TensorSlot, read_custom_sections, read_metadata
from wasinfer.backends.wasm import ABI_VERSION, METADATA_SECTION
from wasinfer.backends.wasm.abi import SYMBOLIC_DIMS_ABI_VERSION
from wasinfer.runtime import WasmModel

DOCS = Path(__file__).resolve().parents[2] / "docs" / "abi.md"


def run_in_node(wasm: bytes, feeds: dict[str, np.ndarray], tmp_path: Path, with_dims: bool = False) -> list[bytes]:
    """tests/js/abi_run.mjs (the example of docs/abi.md) on raw input files; raw output bytes back. `with_dims`: each
    file named with its array's dims (input0.bin:1,3,16,40), as an input with run-time dims (ABI 3) is given."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "model.wasm").write_bytes(wasm)
    names = []
    for index, array in enumerate(feeds.values()):
        (tmp_path / f"input{index}.bin").write_bytes(np.ascontiguousarray(array).tobytes())
        names.append(f"input{index}.bin" + (":" + ",".join(map(str, array.shape)) if with_dims else ""))
    result = node("abi_run.mjs", "model.wasm", *names, cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    return [path.read_bytes() for path in sorted(tmp_path.glob("output*.bin"), key=lambda p: int(p.stem[6:]))]


@requires_node
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_node_and_wasmtime_agree_bitwise(case: Case, tmp_path: Path) -> None:
    """Node runs the plain module and the --wasi build (same code, WASI imports unused) through the ABI."""
    plain = convert_onnx(case.model, max_batch=case.max_batch).wasm
    wasi = convert_onnx(case.model, max_batch=case.max_batch, wasi=True).wasm
    reference = WasmModel(plain, PLAIN)
    for batch in sorted({1, case.max_batch - 1, case.max_batch} - {0}):
        feeds = case.inputs(batch)
        want = reference.run(feeds)
        for label, wasm in (("plain", plain), ("wasi", wasi)):
            got = run_in_node(wasm, feeds, tmp_path / f"{label}-{batch}")
            assert len(got) == len(want)
            for (name, array), raw in zip(want.items(), got, strict=True):
                assert len(raw) == array.nbytes, f"{name}: {len(raw)} bytes from node, {array.nbytes} expected"
                assert np.array_equal(np.frombuffer(raw, np.uint8), array.reshape(-1).view(np.uint8)), \
                    f"{case.name} ({label} build) {name} batch {batch}: node and wasmtime differ"


@pytest.mark.parametrize("script", ["abi_run.mjs", "wasi_run.mjs"])
def test_docs_show_the_tested_scripts(script: str) -> None:
    """docs/abi.md quotes these scripts verbatim, so the examples there are the ones run here."""
    assert (JS / script).read_text() in DOCS.read_text()


ABI_EXPORTS = {"memory": ("memory", None), "wasinfer_abi_version": ("function", 0),
               "wasinfer_max_batch": ("function", 0), "wasinfer_input_ptr": ("function", 1),
               "wasinfer_output_ptr": ("function", 1), "wasinfer_run": ("function", 1)}
WASI_IMPORTS = {"fd_read", "fd_write", "proc_exit"}


def node_sees(wasm: bytes, wasi: bool, tmp_path: Path) -> dict[str, Any]:
    """What tests/js/abi_contract.mjs reports of `wasm` in V8, checked against what docs/abi.md promises of every
    module: the export and import tables, the metadata, the pointers, and the memory; the report, for more."""
    (tmp_path / "model.wasm").write_bytes(wasm)
    result = node("abi_contract.mjs", "model.wasm", cwd=tmp_path, stdout=tmp_path / "abi.json")
    assert result.returncode == 0, result.stderr.decode()
    seen: dict[str, Any] = json.loads((tmp_path / "abi.json").read_text())
    meta = read_metadata(wasm)

    want = ABI_EXPORTS | ({"_start": ("function", 0)} if wasi else {})
    assert {e["name"]: (e["kind"], e["arity"]) for e in seen["exports"]} == want
    assert {(i["module"], i["name"], i["kind"]) for i in seen["imports"]} == (
        {("wasi_snapshot_preview1", name, "function") for name in WASI_IMPORTS} if wasi else set())
    assert seen["metadata"] == json.loads(read_custom_sections(wasm)[METADATA_SECTION])
    assert seen["abi_version"] == meta.abi_version
    assert seen["max_batch"] == meta.max_batch
    assert seen["input_ptrs"] == [t.offset for t in meta.inputs] + [0, 0]
    assert seen["output_ptrs"] == [t.offset for t in meta.outputs] + [0, 0]
    assert seen["run_status"] == {"0": 1, "-1": 1, str(meta.max_batch + 1): 1, "1": 0}
    assert seen["memory_bytes"] == meta.memory_bytes and not seen["memory_grew"]
    for spec in meta.inputs + meta.outputs:
        assert spec.offset % 16 == 0, f"{spec.name}: slot not 16-byte aligned"
        assert spec.offset + meta.max_batch * spec.sample_bytes <= meta.memory_bytes
    return seen


@requires_node
@pytest.mark.parametrize("wasi", [False, True], ids=["plain", "wasi"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_node_sees_the_documented_abi(case: Case, wasi: bool, tmp_path: Path) -> None:
    """The export and import tables of docs/abi.md, as V8 sees them, and the run/ptr results they promise."""
    seen = node_sees(convert_onnx(case.model, max_batch=case.max_batch, wasi=wasi).wasm, wasi, tmp_path)
    assert seen["abi_version"] == ABI_VERSION
    assert seen["max_batch"] == case.max_batch
    assert seen["range_status"] == []


@requires_node
@pytest.mark.parametrize("wasi", [False, True], ids=["plain", "wasi"])
def test_node_sees_the_documented_abi_of_a_version_3_module(wasi: bool, tmp_path: Path) -> None:
    """Symbolic dims: the version, a run at the largest dims (0), and 1 for each run-time dim one below or one above
    its range, as the wasinfer_run row of docs/abi.md promises."""
    seen = node_sees(SymbolicCase().convert(wasi=wasi), wasi, tmp_path)
    assert seen["abi_version"] == SYMBOLIC_DIMS_ABI_VERSION and seen["max_batch"] == 1
    assert seen["range_status"] == [{"input": "x", "axis": 2, "below": 1, "above": 1},
                                    {"input": "x", "axis": 3, "below": 1, "above": 1},
                                    {"input": "mask", "axis": 3, "below": 1, "above": 1}]


@requires_node
def test_node_runs_a_version_3_module_bit_for_bit_as_wasmtime(tmp_path: Path) -> None:
    """docs/abi.md's example writes each input's dims at its dims_offset and reads the run's output dims: at two
    sizes V8's bytes are wasmtime's, and as many as ONNX Runtime's output holds."""
    case = SymbolicCase()
    wasm = case.convert(simd="plain")
    reference = WasmModel(wasm, PLAIN)
    for height, width in ((12, 9), (15, 64)):
        feeds = case.inputs(height, width)
        got = run_in_node(wasm, feeds, tmp_path / str(width), with_dims=True)
        for raw, want, onnx in zip(got, reference.run(feeds).values(), ort_run(case.model, feeds), strict=True):
            assert want.shape == onnx.shape
            assert raw == want.tobytes(), f"{height}x{width}: node and wasmtime differ"


def test_docs_name_every_metadata_key() -> None:
    """The metadata table of docs/abi.md lists every key the schema writes, and every tensor-spec key."""
    text = DOCS.read_text()
    for key in [f.name for f in fields(Metadata)] + [f.name for f in fields(TensorSlot)]:
        assert f"`{key}`" in text, f"docs/abi.md does not describe metadata key {key!r}"
