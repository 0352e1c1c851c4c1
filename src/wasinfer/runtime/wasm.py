"""Run wasinfer modules with wasmtime, with an on-disk cache of compiled machine code.

A module is compiled once per (module digest, wasmtime version, engine settings) and
serialised next to the store; later loads deserialise it (memory-mapped), so a cold start
is an mmap plus instantiation, not a compilation.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import wasmtime

from wasinfer.artifact.metadata import Metadata, TensorSpec, read_metadata
from wasinfer.runtime.base import InputError

WASMTIME_VERSION = version("wasmtime")
DEFAULT_CACHE = Path(os.environ.get("WASINFER_CACHE", Path.home() / ".cache" / "wasinfer" / "compiled"))


def make_engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.cranelift_opt_level = "speed"
    config.wasm_simd = True
    config.wasm_bulk_memory = True
    return wasmtime.Engine(config)


ENGINE_TAG = f"wasmtime {WASMTIME_VERSION}|speed|simd"


def _atomic_write(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)  # a crash never leaves a half-written cache entry


class CompiledCache:
    """Serialised wasmtime modules keyed by module digest and engine version.

    Files get a second, stat-keyed entry (path, size, mtime → digest + metadata), so a warm
    start from a file neither reads nor hashes the .wasm: it is one mmap plus instantiation.
    """

    def __init__(self, directory: Path | None = DEFAULT_CACHE):
        self.directory = directory

    def key(self, wasm: bytes) -> str:
        return hashlib.sha256(wasm + f"|{ENGINE_TAG}".encode()).hexdigest()

    def load(self, engine: wasmtime.Engine, wasm: bytes) -> wasmtime.Module:
        if self.directory is None:
            return wasmtime.Module(engine, wasm)
        path = self.directory / f"{self.key(wasm)}.cwasm"
        if path.exists():
            try:
                return wasmtime.Module.deserialize_file(engine, str(path))
            except wasmtime.WasmtimeError:
                path.unlink(missing_ok=True)  # stale or corrupt: recompile below
        module = wasmtime.Module(engine, wasm)
        self.directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, bytes(module.serialize()))
        return module

    def load_file(self, engine: wasmtime.Engine, path: Path) -> tuple[wasmtime.Module, Metadata]:
        if self.directory is not None:
            st = path.stat()
            stat_key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{ENGINE_TAG}".encode())
            entry = self.directory / f"file-{stat_key.hexdigest()}.json"
            if entry.exists():
                try:
                    record = json.loads(entry.read_text())
                    module = wasmtime.Module.deserialize_file(engine, str(self.directory / record["cwasm"]))
                    return module, Metadata.from_json(record["metadata"].encode())
                except (OSError, ValueError, KeyError, wasmtime.WasmtimeError):
                    entry.unlink(missing_ok=True)
        wasm = path.read_bytes()
        metadata = read_metadata(wasm)
        module = self.load(engine, wasm)
        if self.directory is not None:
            record = {"cwasm": f"{self.key(wasm)}.cwasm", "metadata": metadata.to_json().decode()}
            _atomic_write(entry, json.dumps(record).encode())
        return module, metadata


def instantiate(engine: wasmtime.Engine, store: wasmtime.Store, module: wasmtime.Module) -> wasmtime.Instance:
    """Instantiate for the ABI. A --wasi module imports fd_read/fd_write/proc_exit for its
    `_start`; the ABI never calls them, so they are satisfied with trapping stubs."""
    linker = wasmtime.Linker(engine)
    linker.define_unknown_imports_as_traps(module)
    return linker.instantiate(store, module)


class I32Call:
    """Call an exported `(i32) -> i32` function with little overhead.

    wasmtime-py's `Func.__call__` rebuilds the function type and converts every value on each
    call (~17 us here, more than a small model's whole inference). Our ABI's `wasinfer_run`
    has a fixed signature, so we call `wasmtime_func_call_unchecked` with one preallocated raw
    slot; traps still surface as `wasmtime.Trap` through wasmtime's own `enter_wasm`.
    """

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func):
        self.store, self.func = store, func
        try:
            from wasmtime import _ffi
            from wasmtime._func import enter_wasm

            self._ffi: Any = _ffi
            self._enter = enter_wasm
            self._slot = (_ffi.wasmtime_val_raw_t * 1)()
            self._func_ref = ctypes.byref(func._func)
        except (ImportError, AttributeError):  # a wasmtime-py whose internals moved: use the public call
            self._ffi = None

    def __call__(self, arg: int) -> int:
        if self._ffi is None:
            return int(self.func(self.store, arg))
        self._slot[0].i32 = arg
        with self._enter(self.store) as trap:
            error = self._ffi.wasmtime_func_call_unchecked(self.store._context(), self._func_ref, self._slot, 1, trap)
            if error:
                raise wasmtime.WasmtimeError._from_ptr(error)
        return int(self._slot[0].i32)


class WasmModel:
    """One instance of a compiled module; `run` takes and returns numpy arrays by name."""

    name = "wasm"

    def __init__(self, wasm: bytes, engine: wasmtime.Engine | None = None, cache: CompiledCache | None = None,
                 *, compiled: tuple[wasmtime.Module, Metadata] | None = None):
        self.engine = engine or make_engine()
        if compiled is None:
            module, self.metadata = (cache or CompiledCache(None)).load(self.engine, wasm), read_metadata(wasm)
        else:
            module, self.metadata = compiled
        self.store = wasmtime.Store(self.engine)
        self.instance = instantiate(self.engine, self.store, module)
        exports = self.instance.exports(self.store)
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        self.memory = memory
        run = exports["wasinfer_run"]
        assert isinstance(run, wasmtime.Func)
        self._run = I32Call(self.store, run)
        # Modules never grow their memory, so one byte view serves every call.
        size = memory.data_len(self.store)
        self._view = np.ctypeslib.as_array(memory.get_buffer_ptr(self.store), shape=(size,))
        self._inputs = [(spec, self._slot(spec)) for spec in self.metadata.inputs]
        self._outputs = [(spec, self._slot(spec)) for spec in self.metadata.outputs]

    @classmethod
    def from_file(cls, path: str | Path, cache: CompiledCache | None = None,
                  engine: wasmtime.Engine | None = None) -> WasmModel:
        engine = engine or make_engine()
        return cls(b"", engine, compiled=(cache or CompiledCache(None)).load_file(engine, Path(path)))

    def input_names(self) -> list[str]:
        return [t.name for t in self.metadata.inputs]

    def output_names(self) -> list[str]:
        return [t.name for t in self.metadata.outputs]

    def _slot(self, spec: TensorSpec) -> np.ndarray:
        """A typed numpy view of a tensor's slot in linear memory, [max_batch, ...] when batched."""
        dtype = np.dtype(spec.dtype)
        count = self.metadata.max_batch if spec.batch_axis == 0 else 1
        shape = (count, *spec.shape[1:]) if spec.batch_axis == 0 else tuple(spec.shape)
        return self._view[spec.offset:spec.offset + spec.sample_bytes * count].view(dtype).reshape(shape)

    def _batch_of(self, spec: TensorSpec, array: np.ndarray) -> int:
        expected = tuple(spec.shape)
        if spec.batch_axis == 0:
            if array.ndim != len(expected) or tuple(array.shape[1:]) != expected[1:]:
                raise InputError(f"input {spec.name!r}: expected shape [N, {', '.join(map(str, expected[1:]))}]"
                                 f" with N <= {self.metadata.max_batch}, got {list(array.shape)}")
            return int(array.shape[0])
        if tuple(array.shape) != expected:
            raise InputError(f"input {spec.name!r}: expected shape {list(expected)}, got {list(array.shape)}")
        return 1

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check every input against the metadata before touching memory, then run the batch."""
        if len(inputs) != len(self._inputs) or any(spec.name not in inputs for spec, _ in self._inputs):
            missing = [spec.name for spec, _ in self._inputs if spec.name not in inputs]
            extra = sorted(set(inputs) - {spec.name for spec, _ in self._inputs})
            raise InputError(f"inputs: missing {missing}, unexpected {extra}")
        arrays, batches = [], set()
        for spec, slot in self._inputs:
            array = inputs[spec.name]
            if not isinstance(array, np.ndarray):
                array = np.asarray(array)
            if array.dtype != slot.dtype:
                raise InputError(f"input {spec.name!r}: expected dtype {spec.dtype}, got {array.dtype}")
            if spec.batch_axis == 0:
                batches.add(self._batch_of(spec, array))
            else:
                self._batch_of(spec, array)
            arrays.append(array)
        if len(batches) > 1:
            raise InputError(f"inputs have different batch sizes: {sorted(batches)}")
        batch = batches.pop() if batches else 1
        if not 1 <= batch <= self.metadata.max_batch:
            raise InputError(f"batch {batch} is outside 1..{self.metadata.max_batch} (compiled --max-batch)")
        for (spec, slot), array in zip(self._inputs, arrays, strict=True):
            if spec.batch_axis == 0:
                slot[:batch] = array
            else:
                slot[...] = array
        status = self._run(batch)
        if status != 0:
            raise RuntimeError(f"wasinfer_run returned {status}")
        return {spec.name: (slot[:batch] if spec.batch_axis == 0 else slot).copy() for spec, slot in self._outputs}
