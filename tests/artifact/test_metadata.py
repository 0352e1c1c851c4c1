"""The metadata section is checked when it is read: a field no runtime could use fails the load, by name."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.hostile import echo_module, string_input_module
from wasinfer.artifact.metadata import METADATA_SECTION, Metadata, read_custom_sections, read_metadata


def echo_fields() -> dict[str, Any]:
    fields: dict[str, Any] = json.loads(read_custom_sections(echo_module())[METADATA_SECTION])
    return fields


def test_a_string_dtype_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"metadata field inputs\[0\]\.dtype \('x'\) is '<U1': expected one of "
                                         r"bool, int8, .*float32"):
        read_metadata(string_input_module())


def edit(change: Callable[[dict[str, Any]], None]) -> bytes:
    fields = echo_fields()
    change(fields)
    return json.dumps(fields).encode()


@pytest.mark.parametrize(("change", "says"), [
    (lambda m: m["outputs"][0].update(dtype="object"), r"outputs\[0\]\.dtype \('y'\) is 'object'"),
    (lambda m: m["inputs"][0].update(dtype="float32x"), r"inputs\[0\]\.dtype \('x'\) is 'float32x'"),
    (lambda m: m["inputs"][0].update(shape=[1, -4]), r"inputs\[0\]\.shape \('x'\) is \[1, -4\]"),
    (lambda m: m["inputs"][0].update(shape="1x4"), r"inputs\[0\]\.shape \('x'\) is '1x4'"),
    (lambda m: m["inputs"][0].update(batch_axis=2), r"inputs\[0\]\.batch_axis \('x'\) is 2: expected null or an axis"),
    (lambda m: m["inputs"][0].update(batch_axis=1), r"inputs\[0\]\.shape \('x'\) is \[1, 4\]: expected one sample's"),
    (lambda m: m["inputs"][0].update(offset=-64), r"inputs\[0\]\.offset \('x'\) is -64"),
    (lambda m: m["inputs"][0].update(offset=65530), r"inputs\[0\]\.offset \('x'\): its slot \[65530, 65594\) ends "
                                                    r"past memory_bytes 65536"),
    (lambda m: m["outputs"][0].update(shape=[1, 1 << 62, 1 << 62]), r"outputs\[0\]\.offset \('y'\): its slot"),
    (lambda m: m["inputs"][0].pop("name"), r"inputs\[0\]\.name is missing"),
    (lambda m: m["inputs"][0].update(name=""), r"inputs\[0\]\.name is ''"),
    (lambda m: m.update(max_batch=0), r"max_batch is 0: expected an integer >= 1"),
    (lambda m: m.update(memory_bytes="64k"), r"memory_bytes is '64k'"),
    (lambda m: m.update(inputs={"x": 1}), r"inputs is \{'x': 1\}: expected a list"),
    (lambda m: m.pop("outputs"), r"field outputs is missing"),
    (lambda m: m.update(run_errors=["ok", 3]), r"run_errors is \['ok', 3\]: expected a list of strings"),
    (lambda m: m.update(list_inputs=[{"name": "s", "kind": "sequence", "elements": ["x", "nowhere"]}]),
     r"list_inputs\[0\] \('s'\): its elements, count and present must name tensors of the module's inputs"),
    (lambda m: m.update(list_outputs=[{"name": "o", "kind": "map", "elements": ["y"]}]),
     r"list_outputs\[0\] is .*expected an object with a name and a kind"),
], ids=["object-dtype", "unknown-dtype", "negative-dim", "shape-string", "batch-axis", "batch-axis-not-1",
        "negative-offset",
        "slot-past-memory", "overflowing-shape", "no-name", "empty-name", "max-batch", "memory-bytes", "inputs-dict",
        "no-outputs", "run-errors", "list-element-unknown", "list-kind"])
def test_each_unusable_field_is_named(change: Callable[[dict[str, Any]], None], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Metadata.from_json(edit(change))


def test_well_formed_metadata_reads_back_unchanged() -> None:
    metadata = read_metadata(echo_module())
    assert Metadata.from_json(metadata.to_json()) == metadata
    assert b"list_inputs" not in metadata.to_json()  # a module of tensors only writes no list keys (bytes unchanged)
    listed = json.loads(metadata.to_json())
    listed["list_outputs"] = [{"name": "ys", "kind": "sequence", "elements": ["y"], "count": None, "present": None,
                               "counts": None}]
    sequences = Metadata.from_json(json.dumps(listed).encode())
    assert [s.elements for s in sequences.list_outputs] == [["y"]]
    assert Metadata.from_json(sequences.to_json()) == sequences
    with pytest.raises(ValueError, match="not JSON"):
        Metadata.from_json(b"{")
    with pytest.raises(ValueError, match="expected a JSON object, got list"):
        Metadata.from_json(b"[]")


def test_metadata_that_claims_more_memory_than_the_module_has_fails_the_load() -> None:
    """Checked against the module itself: memory_bytes is the author's claim, the instance's memory is not."""
    from wasinfer.artifact.metadata import custom_section
    from wasinfer.runtime import WasmModel

    wasm = echo_module()
    fields = echo_fields()
    fields.update(memory_bytes=1 << 30, max_batch=1 << 20)  # 1 Mi samples of 16 bytes "fit" in 1 GiB
    section = custom_section(METADATA_SECTION, json.dumps(fields).encode())
    original = custom_section(METADATA_SECTION, read_custom_sections(wasm)[METADATA_SECTION])
    assert wasm.endswith(original)
    lying = wasm[:-len(original)] + section
    with pytest.raises(ValueError, match=r"tensor 'x': its slot \[64, 16777280\) in the metadata ends past the "
                                         r"module's linear memory of 65536 bytes"):
        WasmModel(lying)


def test_docs_abi_describes_every_metadata_key_and_compile_option() -> None:
    """docs/abi.md is the contract other hosts read: a key the compiler writes and the page does not describe
    (source_format's tflite, compile_options' weights and simd were) is a contract nobody can keep."""
    import dataclasses
    import re
    from pathlib import Path

    from tests.serving.conftest import scale_model
    from wasinfer.artifact import convert_onnx
    from wasinfer.artifact.metadata import Metadata, TensorSlot

    page = (Path(__file__).parents[2] / "docs" / "abi.md").read_text()
    table_keys = set(re.findall(r"^\| `(\w+)`(?:, `(\w+)`)? \|", page, re.M))
    documented = {key for pair in table_keys for key in pair if key}
    assert {f.name for f in dataclasses.fields(Metadata)} <= documented
    for slot_field in dataclasses.fields(TensorSlot):
        assert f'"{slot_field.name}"' in page, f"tensor spec field {slot_field.name} is not in docs/abi.md"
    options = convert_onnx(scale_model(np.ones(4, np.float32)), max_batch=2).metadata.compile_options
    row = next(line for line in page.splitlines() if line.startswith("| `compile_options` |"))
    assert not [key for key in options if f"`{key}`" not in row], row
    assert "tflite" in next(line for line in page.splitlines() if line.startswith("| `source_format` |"))
