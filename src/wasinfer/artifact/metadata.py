"""The JSON metadata custom section every wasinfer module carries (schema below is versioned)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import ml_dtypes  # noqa: F401  # registers bfloat16, the float8 types, int4... by name with numpy

from wasinfer.backends.wasm import METADATA_SECTION
from wasinfer.backends.wasm.writer import name_bytes, uleb

SCHEMA_VERSION = 1


@dataclass
class TensorSlot:
    """An input's or output's slot in the module's linear memory, as the metadata section writes it (a
    "tensor spec" in docs/abi.md). Callers see tensors through the runtime's TensorSpec instead
    (runtime/base.py, with -1 for the batch), which every backend shares."""

    name: str
    dtype: str  # numpy name: float32, int64, ...
    shape: list[int]  # one sample's (1 at batch_axis) when batched; the full shape otherwise
    batch_axis: int | None  # the axis that carries the run-time batch (0, or 1 for a recurrent state), or None
    offset: int  # byte address of the slot in linear memory
    # ABI version 2: axes whose size each run decides (the shape above is then the largest), and the byte
    # address where each run writes the actual dims (int32 each); none in version-1 modules
    run_time_axes: list[int] = field(default_factory=list)
    dims_offset: int | None = None
    # ABI version 3, symbolic dims: [smallest, largest] of each run-time axis, and its expression of the
    # symbols (an input's run-time axes are its symbols; the host writes its actual dims at dims_offset)
    ranges: list[list[int]] = field(default_factory=list)
    symbolic_dims: list[str] = field(default_factory=list)
    # an input's run-time axes that take only multiples of a step (--input-shape x=...,320..960:32); empty: 1
    steps: list[int] = field(default_factory=list)

    @property
    def sample_bytes(self) -> int:
        import numpy as np

        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def slot_samples(self, max_batch: int) -> int:
        """How many samples the tensor's slot holds: max_batch when it carries the batch, else one.
        The slot is laid out [outer, n, inner] around the batch axis for a run of n samples."""
        return max_batch if self.batch_axis is not None else 1

    def shape_for(self, count: int) -> list[int]:
        """The tensor's shape in a run of `count` samples."""
        shape = list(self.shape)
        if self.batch_axis is not None:
            shape[self.batch_axis] = count
        return shape


@dataclass
class ListSlot:
    """A sequence- or optional-typed input or output (ir.ListValue), as the metadata writes it: the names of the
    tensors that carry it, each an ordinary input or output slot (docs/abi.md, "Sequences and optionals")."""

    name: str
    kind: str  # "sequence", "optional" (of a tensor) or "optional_sequence"
    elements: list[str]  # a sequence's element tensors, at most as many as it holds (an optional's one)
    count: str | None = None  # the int64 scalar tensor of a sequence's count each run; None: len(elements)
    present: str | bool | None = None  # an optional's bool scalar tensor, or true / false where it is known
    counts: list[int] | None = None  # an input sequence's [smallest, largest] count


LIST_KINDS = ("sequence", "optional", "optional_sequence")


@dataclass
class Metadata:
    name: str
    inputs: list[TensorSlot]
    outputs: list[TensorSlot]
    max_batch: int
    abi_version: int
    source_sha256: str
    source_format: str
    producer: str
    arena_bytes: int
    memory_bytes: int
    compile_options: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    weight_encoding: str = "float32"  # or int8 / fp16: stored compressed, expanded to float32 at start-up
    # wasinfer_run's status 2 + i means run_errors[i] (a branch that cannot run at the compiled shapes)
    run_errors: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    # sequence- and optional-typed inputs and outputs, by the tensors that carry them; absent when none (a module of
    # tensors only writes the same metadata as before they existed)
    list_inputs: list[ListSlot] = field(default_factory=list)
    list_outputs: list[ListSlot] = field(default_factory=list)

    def to_json(self) -> bytes:
        data = asdict(self)
        for key in ("list_inputs", "list_outputs"):
            if not data[key]:
                del data[key]
        return json.dumps(data, sort_keys=True, indent=None, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Metadata:
        """Parse and check the section; a field a runtime could not use is refused here, by its name.

        The section is the module author's word, and a hostile or broken one must fail the load with
        a message, not every request later (a tensor of dtype `<U1` once loaded and answered 500)."""
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"metadata: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"metadata: expected a JSON object, got {type(data).__name__}")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"metadata schema {data.get('schema_version')} is not {SCHEMA_VERSION}")
        _check_fields(data)
        data["inputs"] = [TensorSlot(**{k: t[k] for k in _TENSOR_FIELDS + _OPTIONAL_TENSOR_FIELDS if k in t})
                          for t in data["inputs"]]
        data["outputs"] = [TensorSlot(**{k: t[k] for k in _TENSOR_FIELDS + _OPTIONAL_TENSOR_FIELDS if k in t})
                           for t in data["outputs"]]
        for key, tensors in (("list_inputs", data["inputs"]), ("list_outputs", data["outputs"])):
            data[key] = _list_slots(data.get(key, []), key, {t.name for t in tensors})
        known = {f.name for f in fields(cls)}
        metadata = cls(**{k: v for k, v in data.items() if k in known})  # readers ignore unknown keys
        _check_slots(metadata)
        return metadata


# The element types a module's tensors may have, with their bytes per element: numpy's names (ml_dtypes' for
# bfloat16 and the narrow types), each with a fixed size in linear memory. Strings and objects have none. The
# narrow types take one byte per element, as ml_dtypes holds them: an int4/uint4/int2/uint2 byte is the value's
# low bits, a float8/float4 byte its bit pattern (docs/abi.md). KServe v2 has datatypes for the first 13 only.
TENSOR_DTYPES = {"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "float16": 2, "bfloat16": 2,
                 "int32": 4, "uint32": 4, "float32": 4, "int64": 8, "uint64": 8, "float64": 8,
                 "float8_e4m3fn": 1, "float8_e4m3fnuz": 1, "float8_e5m2": 1, "float8_e5m2fnuz": 1, "float8_e8m0fnu": 1,
                 "float4_e2m1fn": 1, "int4": 1, "uint4": 1, "int2": 1, "uint2": 1}
_TENSOR_FIELDS = ("name", "dtype", "shape", "batch_axis", "offset")
_OPTIONAL_TENSOR_FIELDS = ("run_time_axes", "dims_offset", "ranges", "symbolic_dims", "steps")  # ABI versions 2 and 3


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_fields(data: dict[str, Any]) -> None:
    """The fields a runtime reads, each of the type and range it needs (ValueError naming the first that is not)."""
    def bad(field: str, value: Any, wanted: str) -> ValueError:
        return ValueError(f"metadata field {field} is {value!r}: expected {wanted}")

    for key, wanted in (("name", "a string"), ("max_batch", "an integer >= 1"), ("abi_version", "an integer"),
                        ("memory_bytes", "an integer >= 0"), ("arena_bytes", "an integer >= 0"),
                        ("inputs", "a list of tensors"), ("outputs", "a list of tensors")):
        if key not in data:
            raise ValueError(f"metadata field {key} is missing")
        value = data[key]
        ok = {"name": isinstance(value, str), "abi_version": isinstance(value, int) and not isinstance(value, bool),
              "max_batch": _is_count(value) and value >= 1, "memory_bytes": _is_count(value),
              "arena_bytes": _is_count(value), "inputs": isinstance(value, list), "outputs": isinstance(value, list)}
        if not ok[key]:
            raise bad(key, value, wanted)
    run_errors = data.get("run_errors", [])
    if not isinstance(run_errors, list) or not all(isinstance(e, str) for e in run_errors):
        raise bad("run_errors", run_errors, "a list of strings")
    for group in ("inputs", "outputs"):
        for index, tensor in enumerate(data[group]):
            where = f"{group}[{index}]"
            if not isinstance(tensor, dict):
                raise bad(where, tensor, "an object with " + ", ".join(_TENSOR_FIELDS))
            missing = [key for key in _TENSOR_FIELDS if key not in tensor]
            if missing:
                raise ValueError(f"metadata field {where}.{missing[0]} is missing")
            name, dtype, shape = tensor["name"], tensor["dtype"], tensor["shape"]
            if not isinstance(name, str) or not name:
                raise bad(f"{where}.name", name, "a non-empty string")
            if dtype not in TENSOR_DTYPES:
                raise bad(f"{where}.dtype ({name!r})", dtype, f"one of {', '.join(TENSOR_DTYPES)}")
            if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
                raise bad(f"{where}.shape ({name!r})", shape, "a list of integers >= 0")
            axis = tensor["batch_axis"]
            if axis is not None and (not _is_count(axis) or axis >= max(len(shape), 1)):
                raise bad(f"{where}.batch_axis ({name!r})", axis, f"null or an axis of its shape {shape}")
            if axis is not None and shape[axis] != 1:
                raise bad(f"{where}.shape ({name!r})", shape, f"one sample's shape, with 1 at batch_axis {axis}")
            if not _is_count(tensor["offset"]):
                raise bad(f"{where}.offset ({name!r})", tensor["offset"], "an integer >= 0")
            varying, dims = tensor.get("run_time_axes", []), tensor.get("dims_offset")
            if not isinstance(varying, list) or not all(_is_count(a) and a < len(shape) for a in varying):
                raise bad(f"{where}.run_time_axes ({name!r})", varying, f"a list of axes of its shape {shape}")
            if (dims is None) != (not varying) or (dims is not None and not _is_count(dims)):
                raise bad(f"{where}.dims_offset ({name!r})", dims,
                          "an integer >= 0 exactly when run_time_axes lists some axis")
            ranges = tensor.get("ranges", [])
            if ranges and (not isinstance(ranges, list) or len(ranges) != len(varying) or not all(
                    isinstance(r, list) and len(r) == 2 and all(_is_count(v) for v in r)
                    and r[0] <= r[1] <= shape[a] for r, a in zip(ranges, varying, strict=False))):
                raise bad(f"{where}.ranges ({name!r})", ranges, "one [min, max] per run-time axis, max at most "
                          "the shape's dim there")
            steps = tensor.get("steps", [])
            if steps and (not isinstance(steps, list) or len(steps) != len(varying)
                          or not all(_is_count(s) and s >= 1 for s in steps)):
                raise bad(f"{where}.steps ({name!r})", steps, "one step >= 1 per run-time axis")
            if varying and axis is not None:
                raise bad(f"{where}.run_time_axes ({name!r})", varying, "no run-time axes on batched tensors")
            if varying and group == "inputs" and not ranges:
                raise bad(f"{where}.ranges ({name!r})", ranges, "a [min, max] for each run-time axis of an input")


def _list_slots(value: Any, key: str, tensors: set[str]) -> list[ListSlot]:
    """A list_inputs / list_outputs field, each naming tensors of its side (ValueError naming what is wrong)."""
    if not isinstance(value, list):
        raise ValueError(f"metadata field {key} is {value!r}: expected a list of objects")
    slots = []
    for index, item in enumerate(value):
        where = f"{key}[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or item.get("kind") not in LIST_KINDS:
            raise ValueError(f"metadata field {where} is {item!r}: expected an object with a name and a kind "
                             f"({', '.join(LIST_KINDS)})")
        elements, count, present = item.get("elements"), item.get("count"), item.get("present")
        named = [*(elements if isinstance(elements, list) else [None]),
                 *([count] if count is not None else []), *([present] if isinstance(present, str) else [])]
        if not all(isinstance(n, str) and n in tensors for n in named) or not isinstance(present, (str, bool,
                                                                                                  type(None))):
            raise ValueError(f"metadata field {where} ({item['name']!r}): its elements, count and present must name "
                             f"tensors of the module's {key.removeprefix('list_')}")
        counts = item.get("counts")
        if counts is not None and (not isinstance(counts, list) or len(counts) != 2
                                   or not all(_is_count(c) for c in counts) or counts[0] > counts[1]):
            raise ValueError(f"metadata field {where}.counts ({item['name']!r}) is {counts!r}: expected [min, max]")
        slots.append(ListSlot(item["name"], item["kind"], list(elements), count, present, counts))  # type: ignore[arg-type]
    return slots


def _check_slots(metadata: Metadata) -> None:
    """Each tensor's slot (max_batch samples when batched) lies inside the declared linear memory."""
    for group, specs in (("inputs", metadata.inputs), ("outputs", metadata.outputs)):
        for index, spec in enumerate(specs):
            sample_bytes = math.prod(spec.shape) * TENSOR_DTYPES[spec.dtype]  # Python ints: no overflow to hide behind
            end = spec.offset + sample_bytes * spec.slot_samples(metadata.max_batch)
            if end > metadata.memory_bytes:
                raise ValueError(f"metadata field {group}[{index}].offset ({spec.name!r}): its slot "
                                 f"[{spec.offset}, {end}) ends past memory_bytes {metadata.memory_bytes}")


def custom_section(name: str, payload: bytes) -> bytes:
    body = name_bytes(name) + payload
    return b"\x00" + uleb(len(body)) + body


def sections(wasm: bytes) -> Iterator[tuple[int, bytes]]:
    """(section id, payload) of each section, read straight from the binary (no engine needed)."""
    if wasm[:4] != b"\x00asm":
        raise ValueError("not a WebAssembly binary (bad magic)")
    pos = 8
    while pos < len(wasm):
        sid = wasm[pos]
        size, pos = _read_uleb(wasm, pos + 1)
        end = pos + size
        if end > len(wasm):
            raise ValueError("truncated WebAssembly binary")
        yield sid, wasm[pos:end]
        pos = end


def read_custom_sections(wasm: bytes) -> dict[str, bytes]:
    """Custom sections by name."""
    found = {}
    for sid, payload in sections(wasm):
        if sid == 0:
            name_len, npos = _read_uleb(payload, 0)
            found[payload[npos:npos + name_len].decode()] = payload[npos + name_len:]
    return found


def function_exports(wasm: bytes) -> set[str]:
    """Names of the exported functions."""
    names = set()
    for sid, payload in sections(wasm):
        if sid == 7:  # the export section: name, kind (0: function), index
            count, p = _read_uleb(payload, 0)
            for _ in range(count):
                length, p = _read_uleb(payload, p)
                name, kind = payload[p:p + length].decode(), payload[p + length]
                _, p = _read_uleb(payload, p + length + 1)
                if kind == 0:
                    names.add(name)
    return names


def _read_uleb(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated WebAssembly binary")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def read_metadata(wasm: bytes) -> Metadata:
    sections = read_custom_sections(wasm)
    if METADATA_SECTION not in sections:
        raise ValueError(f"no {METADATA_SECTION!r} custom section: not a wasinfer module")
    return Metadata.from_json(sections[METADATA_SECTION])
