"""The JSON metadata custom section every wasinfer module carries (schema below is versioned)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from wasinfer.backends.wasm import METADATA_SECTION
from wasinfer.backends.wasm.writer import name_bytes, uleb

SCHEMA_VERSION = 1


@dataclass
class TensorSpec:
    name: str
    dtype: str  # numpy name: float32, int64, ...
    shape: list[int]  # per sample when batch_axis is 0; the full shape otherwise
    batch_axis: int | None  # 0 when the leading dim is the run-time batch
    offset: int  # byte address of the slot in linear memory

    @property
    def sample_bytes(self) -> int:
        import numpy as np

        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass
class Metadata:
    name: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
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
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, indent=None, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Metadata:
        data = json.loads(raw)
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"metadata schema {data.get('schema_version')} is not {SCHEMA_VERSION}")
        data["inputs"] = [TensorSpec(**t) for t in data["inputs"]]
        data["outputs"] = [TensorSpec(**t) for t in data["outputs"]]
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})  # readers ignore unknown keys


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
