"""A second engine keeps the ABI honest: the same .wasm bytes in V8 (Node) and wasmtime agree bit for bit.

Both engines implement the same deterministic Wasm semantics (SIMD128 without relaxed ops has
no implementation-defined results apart from NaN bits), so any difference is an ABI or
codegen bug, not rounding.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from tests.artifact.engines import CASES, JS, PLAIN, Case, node, requires_node
from wasinfer.artifact import convert_onnx
from wasinfer.artifact.metadata import Metadata, TensorSlot, read_custom_sections, read_metadata
from wasinfer.backends.wasm import ABI_VERSION, METADATA_SECTION
from wasinfer.runtime import WasmModel

DOCS = Path(__file__).resolve().parents[2] / "docs" / "abi.md"


def run_in_node(wasm: bytes, feeds: dict[str, np.ndarray], tmp_path: Path) -> list[bytes]:
    """tests/js/abi_run.mjs (the example of docs/abi.md) on raw input files; raw output bytes back."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "model.wasm").write_bytes(wasm)
    for index, array in enumerate(feeds.values()):
        (tmp_path / f"input{index}.bin").write_bytes(np.ascontiguousarray(array).tobytes())
    result = node("abi_run.mjs", "model.wasm", *[f"input{i}.bin" for i in range(len(feeds))], cwd=tmp_path)
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


@requires_node
@pytest.mark.parametrize("wasi", [False, True], ids=["plain", "wasi"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_node_sees_the_documented_abi(case: Case, wasi: bool, tmp_path: Path) -> None:
    """The export and import tables of docs/abi.md, as V8 sees them, and the run/ptr results they promise."""
    wasm = convert_onnx(case.model, max_batch=case.max_batch, wasi=wasi).wasm
    (tmp_path / "model.wasm").write_bytes(wasm)
    result = node("abi_contract.mjs", "model.wasm", cwd=tmp_path, stdout=tmp_path / "abi.json")
    assert result.returncode == 0, result.stderr.decode()
    seen = json.loads((tmp_path / "abi.json").read_text())
    meta = read_metadata(wasm)

    want = ABI_EXPORTS | ({"_start": ("function", 0)} if wasi else {})
    assert {e["name"]: (e["kind"], e["arity"]) for e in seen["exports"]} == want
    assert {(i["module"], i["name"], i["kind"]) for i in seen["imports"]} == (
        {("wasi_snapshot_preview1", name, "function") for name in WASI_IMPORTS} if wasi else set())
    assert seen["metadata"] == json.loads(read_custom_sections(wasm)[METADATA_SECTION])
    assert seen["abi_version"] == meta.abi_version == ABI_VERSION
    assert seen["max_batch"] == meta.max_batch == case.max_batch
    assert seen["input_ptrs"] == [t.offset for t in meta.inputs] + [0, 0]
    assert seen["output_ptrs"] == [t.offset for t in meta.outputs] + [0, 0]
    assert seen["run_status"] == {"0": 1, "-1": 1, str(case.max_batch + 1): 1, "1": 0}
    assert seen["memory_bytes"] == meta.memory_bytes and not seen["memory_grew"]
    for spec in meta.inputs + meta.outputs:
        assert spec.offset % 16 == 0, f"{spec.name}: slot not 16-byte aligned"
        assert spec.offset + meta.max_batch * spec.sample_bytes <= meta.memory_bytes


def test_docs_name_every_metadata_key() -> None:
    """The metadata table of docs/abi.md lists every key the schema writes, and every tensor-spec key."""
    text = DOCS.read_text()
    for key in [f.name for f in fields(Metadata)] + [f.name for f in fields(TensorSlot)]:
        assert f"`{key}`" in text, f"docs/abi.md does not describe metadata key {key!r}"
