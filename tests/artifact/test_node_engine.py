"""A second engine keeps the ABI honest: the same .wasm bytes in V8 (Node) and wasmtime agree bit for bit.

Both engines implement the same deterministic Wasm semantics (SIMD128 without relaxed ops has
no implementation-defined results apart from NaN bits), so any difference is an ABI or
codegen bug, not rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.artifact.engines import CASES, JS, Case, node, requires_node
from wasinfer.artifact import convert_onnx
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
    reference = WasmModel(plain)
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
