"""Run wasinfer modules with wasmtime, with an on-disk cache of compiled machine code.

A module is compiled once per (module digest, wasmtime version, engine settings) and
serialised next to the store; later loads deserialise it (memory-mapped), so a cold start
is an mmap plus instantiation, not a compilation.

A module is untrusted code: each instance may get a deadline per call (an interrupt flag the
module checks in every loop, set by the process's watchdog: interrupt.py) and a cap on its linear
memory, and whatever the module does wrong surfaces as a `ModelFault` from that instance's `run`,
never as a crash or a hang of the process.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import math
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import wasmtime

from wasinfer.artifact.metadata import Metadata, TensorSlot, read_metadata
from wasinfer.artifact.variants import select_code
from wasinfer.fileio import atomic_write, file_lock
from wasinfer.runtime.base import (
    DeadlineExceeded,
    InputError,
    MemoryLimitExceeded,
    ModelFault,
    ModelInfo,
    TensorSpec,
)
from wasinfer.runtime.interrupt import (
    INTERRUPT_EXPORT,
    REWRITE_TAG,
    WATCHDOG,
    Alarm,
    interrupt_flag,
    interruptible,
    run_start,
)
from wasinfer.runtime.lists import pack, unpack

T = TypeVar("T")


def wasmtime_version() -> str:
    """wasmtime's version, from the name of its .dist-info directory beside the package (where a wheel puts it).

    importlib.metadata.version says the same, but importing importlib.metadata (email, zipfile, csv, ...) is
    about 3 MiB of a server's resident memory, imported for nothing else; it answers only where the
    directory is not found (an unusual install)."""
    site = Path(wasmtime.__file__).resolve().parent.parent
    for info in site.glob("wasmtime-*.dist-info"):
        found = info.name.removeprefix("wasmtime-").removesuffix(".dist-info")
        if found and (info / "METADATA").is_file():
            return found
    from importlib.metadata import version

    return version("wasmtime")


WASMTIME_VERSION = wasmtime_version()
DEFAULT_CACHE = Path(os.environ.get("WASINFER_CACHE", Path.home() / ".cache" / "wasinfer" / "compiled"))


def model_info(metadata: Metadata) -> ModelInfo:
    """A module's tensors as every backend describes them (runtime/base.py): the batch's dim as -1, and each run-time
    dim as -1 too, with its range where it has one (a symbolic dim, ABI version 3)."""
    def caller(slot: TensorSlot) -> TensorSpec:
        shape = slot.shape_for(-1)
        for axis in slot.run_time_axes:  # decided by each run (ABI version 2) or a symbol's size (version 3)
            shape[axis] = -1
        ranges = {axis: (low, high) for axis, (low, high) in zip(slot.run_time_axes, slot.ranges, strict=False)}
        steps = {axis: step for axis, step in zip(slot.run_time_axes, slot.steps, strict=False) if step > 1}
        return TensorSpec(slot.name, slot.dtype, shape, slot.batch_axis, ranges, steps)

    return ModelInfo(metadata.name, [caller(s) for s in metadata.inputs], [caller(s) for s in metadata.outputs],
                     metadata.max_batch)


def check_symbolic_dims(spec: TensorSlot, dims: tuple[int, ...]) -> None:
    """An input with symbolic dims (ABI version 3): InputError unless `dims` are within its ranges on its run-time
    axes and its compiled shape elsewhere. Every host of wasinfer modules asks this before it copies the values
    (WasmModel.run, the WASI-NN host's set_input), so a wrong size is named, never run."""
    ranges = dict(zip(spec.run_time_axes, spec.ranges, strict=False))
    if len(dims) != len(spec.shape) or any(
            a != e for i, (a, e) in enumerate(zip(dims, spec.shape, strict=True)) if i not in ranges):
        wanted = ", ".join(f"{ranges[i][0]}..{ranges[i][1]}" if i in ranges else str(d)
                           for i, d in enumerate(spec.shape))
        raise InputError(f"input {spec.name!r}: expected shape [{wanted}], got {list(dims)}")
    steps = dict(zip(spec.run_time_axes, spec.steps or [1] * len(spec.run_time_axes), strict=False))
    for axis, (low, high) in ranges.items():
        if not low <= dims[axis] <= high:
            raise InputError(f"input {spec.name!r}: axis {axis} is {dims[axis]}, outside its range {low}..{high}")
        if dims[axis] % steps[axis]:
            raise InputError(f"input {spec.name!r}: axis {axis} is {dims[axis]}, not a multiple of {steps[axis]} "
                             f"(its range is {low}..{high}:{steps[axis]})")


def engine_tag(interruptible: bool = True, relaxed_simd: bool = True) -> str:
    """What compiled code depends on; part of every cache key, so code compiled with interrupt checks is never
    deserialised for an engine without them, nor code from before a change of the rewrite, nor one code
    variant for an engine that runs the other (artifact/variants.py)."""
    return (f"wasmtime {WASMTIME_VERSION}|speed|simd" + ("|relaxed" if relaxed_simd else "")
            + (f"|{REWRITE_TAG}" if interruptible else ""))


ENGINE_TAG = engine_tag()
_ENGINE_TAGS: weakref.WeakKeyDictionary[wasmtime.Engine, str] = weakref.WeakKeyDictionary()


def make_engine(interruptible: bool = True, relaxed_simd: bool = True) -> wasmtime.Engine:
    """The engine wasinfer modules are compiled for.

    `interruptible` has every module compiled for it rewritten with interrupt checks (interrupt.py), which is
    what lets a deadline stop a module that never returns; they cost 0-7% on real models, so hosts that
    set no deadline can leave them out. `relaxed_simd` runs a module's relaxed-SIMD code variant where it
    carries one (artifact/variants.py: fused multiply-add, results different in the last bits); without
    it the plain code runs, bit for bit what every engine computes. The wasmtime settings are the same.
    """
    config = wasmtime.Config()
    config.cranelift_opt_level = "speed"
    config.wasm_simd = True
    config.wasm_bulk_memory = True
    config.wasm_relaxed_simd = True  # relaxed-SIMD code (convert --simd auto|relaxed); wasmtime's default too
    config.wasm_multi_memory = True  # the interrupt flag's memory beside the module's own
    config.wasm_threads = interruptible  # the checks load the flag atomically (interrupt.py); modules may not
    engine = wasmtime.Engine(config)
    _ENGINE_TAGS[engine] = engine_tag(interruptible, relaxed_simd)
    return engine


def tag_of(engine: wasmtime.Engine) -> str:
    """The engine's tag; an engine not made by `make_engine` is assumed to be configured like its default."""
    return _ENGINE_TAGS.get(engine, ENGINE_TAG)


def is_interruptible(engine: wasmtime.Engine) -> bool:
    return tag_of(engine).endswith(f"|{REWRITE_TAG}")


def compile_module(engine: wasmtime.Engine, wasm: bytes) -> wasmtime.Module:
    """Compile `wasm` for `engine`: its relaxed-SIMD code variant in place of the plain code where the engine
    runs it (artifact/variants.py); for an interruptible engine checked valid, then rewritten with interrupt
    checks (interrupt.py; UnverifiableModule, a ValueError, when it cannot be decoded for that)."""
    wasm = select_code(wasm, relaxed="|relaxed" in tag_of(engine))
    if is_interruptible(engine):
        wasmtime.Module.validate(engine, wasm)  # bytes that are not a valid module: wasmtime's error says why
        wasm = interruptible(wasm)
    return wasmtime.Module(engine, wasm)


WASM_PAGE = 65536
# Table elements one store may hold. wasinfer modules have no tables and compiled programs' function tables
# hold hundreds to thousands of entries, but without a cap a module's table.grow takes host memory outside
# its linear-memory cap (8 bytes an element: 100M elements grew a process by 0.8 GB in 0.6 s, one
# instruction) and table.fill / table.copy over them run as single steps no deadline splits.
TABLE_ELEMENTS_CAP = 1 << 20


def set_store_limits(store: wasmtime.Store, memory_limit_bytes: int | None) -> None:
    """Cap the store's linear memory (None: no cap) and, always, its table elements (TABLE_ELEMENTS_CAP)."""
    store.set_limits(memory_size=-1 if memory_limit_bytes is None else memory_limit_bytes,
                     table_elements=TABLE_ELEMENTS_CAP)


class CompiledCache:
    """Serialised wasmtime modules keyed by module digest and engine version.

    Files get a second, stat-keyed entry (path, size, mtime → digest + metadata), so a warm
    start from a file neither reads nor hashes the .wasm: it is one mmap plus instantiation.
    """

    def __init__(self, directory: Path | None = DEFAULT_CACHE):
        self.directory = directory

    def key(self, wasm: bytes, tag: str = ENGINE_TAG) -> str:
        return hashlib.sha256(wasm + f"|{tag}".encode()).hexdigest()

    def load(self, engine: wasmtime.Engine, wasm: bytes) -> wasmtime.Module:
        if self.directory is None:
            return compile_module(engine, wasm)
        path = self.directory / f"{self.key(wasm, tag_of(engine))}.cwasm"
        module = self._deserialize(engine, path)
        if module is not None:
            return module
        # Worker processes of one node (serve --workers) start the same models at once: the first compiles,
        # the others wait for its file and map it, so a module is compiled once per node, not once per worker.
        with file_lock(path.with_suffix(".lock")):
            module = self._deserialize(engine, path)
            if module is not None:
                return module
            module = compile_module(engine, wasm)
            atomic_write(path, bytes(module.serialize()))
        return module

    @staticmethod
    def _deserialize(engine: wasmtime.Engine, path: Path) -> wasmtime.Module | None:
        """The cached module, mapped from its file; None when there is none (a stale or corrupt one is removed)."""
        if not path.exists():
            return None
        try:
            return wasmtime.Module.deserialize_file(engine, str(path))
        except wasmtime.WasmtimeError:
            path.unlink(missing_ok=True)
            return None

    def _file_entry(self, engine: wasmtime.Engine, path: Path) -> Path:
        """The stat-keyed record of a module file (its digest and metadata), valid while the file is unchanged."""
        assert self.directory is not None
        st = path.stat()
        stat_key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{tag_of(engine)}".encode())
        return self.directory / f"file-{stat_key.hexdigest()}.json"

    def has_file(self, engine: wasmtime.Engine, path: Path) -> bool:
        """Whether `load_file` would map compiled code rather than compile (a stat and an exists: no reading)."""
        try:
            return self.directory is not None and self._file_entry(engine, path).exists()
        except OSError:
            return False

    def load_file(self, engine: wasmtime.Engine, path: Path) -> tuple[wasmtime.Module, Metadata]:
        if self.directory is not None:
            entry = self._file_entry(engine, path)
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
            record = {"cwasm": f"{self.key(wasm, tag_of(engine))}.cwasm", "metadata": metadata.to_json().decode()}
            atomic_write(entry, json.dumps(record).encode())
        return module, metadata


def instantiate(engine: wasmtime.Engine, store: wasmtime.Store, module: wasmtime.Module) -> wasmtime.Instance:
    """Instantiate for the ABI. A --wasi module imports fd_read/fd_write/proc_exit for its
    `_start`; the ABI never calls them, so they are satisfied with trapping stubs."""
    linker = wasmtime.Linker(engine)
    linker.define_unknown_imports_as_traps(module)
    return linker.instantiate(store, module)


def _quick_call(symbol: str, restype: Any, *argtypes: Any) -> Any:
    """A libwasmtime function called with untyped pointers and without releasing the GIL.

    For calls that return at once (a memory's size, setting a deadline) this is less than half
    the cost of wasmtime-py's wrapper, which converts its arguments and releases the GIL.
    """
    from wasmtime import _ffi

    address = ctypes.cast(getattr(_ffi.dll, symbol), ctypes.c_void_p).value
    if address is None:
        raise AttributeError(f"libwasmtime has no {symbol}")
    return ctypes.PYFUNCTYPE(restype, *argtypes)(address)


class I32Call:
    """Call an exported `(i32) -> i32` function with little overhead.

    wasmtime-py's `Func.__call__` rebuilds the function type and converts every value on each
    call (~17 us here, more than a small model's whole inference). Our ABI's `wasinfer_run`
    has a fixed signature, so we call `wasmtime_func_call_unchecked` with one preallocated raw
    slot. Not through wasmtime-py's own binding of it either: that one converts its five pointer
    arguments on every call and enters a context manager (`enter_wasm`) to catch the trap, which
    together cost more than an empty module's call (3.2 us against 1.4 us here). Every argument is
    converted once, here, and the trap and error pointers are looked at only when set; they then
    surface as wasmtime-py's own `Trap` and `WasmtimeError`, as from its public call. The call still
    releases the GIL (ctypes' CFUNCTYPE), so other threads run while a module does.
    """

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func):
        self.store, self.func = store, func
        self._raw: Callable[..., int | None] | None = None
        try:
            from wasmtime import _ffi

            address = ctypes.cast(_ffi.dll.wasmtime_func_call_unchecked, ctypes.c_void_p).value
            slot = (_ffi.wasmtime_val_raw_t * 1)()
            context = ctypes.cast(store._context(), ctypes.c_void_p).value
        except (ImportError, AttributeError):  # a wasmtime-py whose internals moved: use the public call
            return
        if address is None or context is None:
            return
        pointer = ctypes.c_void_p
        call = ctypes.CFUNCTYPE(pointer, pointer, pointer, pointer, ctypes.c_size_t, pointer)(address)
        self._slot = slot  # the argument in, the result out; i32 is its first four bytes
        self._value = ctypes.c_int32.from_address(ctypes.addressof(slot))
        self._trap = pointer()  # set by libwasmtime when the call traps; owned by the Trap made of it then
        self._raw = functools.partial(call, pointer(context), pointer(ctypes.addressof(func._func)),
                                      pointer(ctypes.addressof(slot)), 1, pointer(ctypes.addressof(self._trap)))

    def __call__(self, arg: int) -> int:
        if self._raw is None:
            return int(self.func(self.store, arg))
        self._value.value = arg
        error = self._raw()
        if error or self._trap.value:
            self._raise(error)
        return self._value.value

    def _raise(self, error: int | None) -> None:
        """Raise what wasmtime-py's `enter_wasm` would for this error or trap (and clear the trap's pointer, which
        the Trap now owns); an exception that a host function raised during the call comes first, as there."""
        from wasmtime import _ffi
        from wasmtime._func import maybe_raise_last_exn

        trap, self._trap.value = self._trap.value or 0, None
        exc: wasmtime.WasmtimeError | wasmtime.Trap = (
            wasmtime.WasmtimeError._from_ptr(ctypes.cast(error, ctypes.POINTER(_ffi.wasmtime_error_t))) if error
            else wasmtime.Trap._from_ptr(ctypes.cast(trap, ctypes.POINTER(_ffi.wasm_trap_t))))
        maybe_raise_last_exn()
        raise exc


def initial_memory_bytes(module: wasmtime.Module) -> int:
    """The largest linear memory an instance of `module` starts with (its declared minimum)."""
    types = [item.type for item in module.exports] + [item.type for item in module.imports]
    return max((t.limits.min * WASM_PAGE for t in types if isinstance(t, wasmtime.MemoryType)), default=0)


def _trap_reason(message: str) -> str:
    """The cause of a wasmtime trap without its backtrace ("wasm trap: integer divide by zero")."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "trap"


class RunPlan:
    """What a run with one set of input shapes does, worked out once by `WasmModel.run` and reused while the
    shapes repeat (a server's or a stream's inputs rarely change shape from call to call).

    For a small model the host's side of a call was a third of it (oww_hey_jarvis: 26.7 us through `run`
    against 20.5 us for the wasm call): each call re-derived every input's expected shape, sliced and
    reshaped views of linear memory and flattened its inputs into them. A plan holds, per input, its name,
    dtype and shape, a view of its slot in that shape (one assignment writes it, whatever the array's
    strides) and the dims a symbolic input writes beside it; per output, a view of its slot in the run's
    shape (None where each run writes the shape: read after every run, from the whole slot kept beside). A
    call whose inputs are ndarrays of exactly these dtypes and shapes has passed every check the plan was made
    under."""

    __slots__ = ("batch", "inputs", "outputs")

    def __init__(self, batch: int, inputs: list[tuple[str, np.dtype[Any], tuple[int, ...], np.ndarray,
                                                      tuple[np.ndarray, np.ndarray] | None]],
                 outputs: list[tuple[str, TensorSlot, np.ndarray, np.ndarray | None]]):
        self.batch, self.inputs, self.outputs = batch, inputs, outputs

    def fits(self, inputs: dict[str, np.ndarray]) -> bool:
        """Whether `inputs` are this plan's names (no more), as ndarrays of its dtypes and shapes."""
        if len(inputs) != len(self.inputs):
            return False
        for name, dtype, shape, _, _ in self.inputs:
            array = inputs.get(name)
            if type(array) is not np.ndarray or array.shape != shape or array.dtype != dtype:
                return False
        return True


class WasmModel:
    """One instance of a compiled module; `run` takes and returns numpy arrays by name.

    `deadline_seconds` bounds every call (and the module's start function, at instantiation);
    `memory_limit_bytes` caps the instance's linear memory. A deadline needs a module compiled
    for an engine from `make_engine()` (interrupt checks in); without `engine`, one is made with the
    checks only when there is a deadline. Whatever the module
    does wrong (a trap, a call past its deadline, growing its memory) raises a `ModelFault`,
    after which this instance refuses every call: build another from the same compiled module.
    """

    name = "wasm"

    def __init__(self, wasm: bytes, engine: wasmtime.Engine | None = None, cache: CompiledCache | None = None,
                 *, compiled: tuple[wasmtime.Module, Metadata] | None = None,
                 deadline_seconds: float | None = None, memory_limit_bytes: int | None = None):
        if deadline_seconds is not None and not deadline_seconds > 0:
            raise ValueError(f"deadline_seconds must be positive (or None for no deadline), got {deadline_seconds}")
        if memory_limit_bytes is not None and memory_limit_bytes <= 0:
            raise ValueError(f"memory_limit_bytes must be positive (or None for no cap), got {memory_limit_bytes}")
        self.engine = engine or make_engine(interruptible=deadline_seconds is not None)
        if compiled is None:
            module, self.metadata = (cache or CompiledCache(None)).load(self.engine, wasm), read_metadata(wasm)
        else:
            module, self.metadata = compiled
        if deadline_seconds is not None and not any(e.name == INTERRUPT_EXPORT for e in module.exports):
            raise ValueError("a deadline needs a module compiled with interrupt checks: compile it for an engine "
                             "from make_engine() (interruptible=True)")
        self.deadline_seconds, self.memory_limit_bytes = deadline_seconds, memory_limit_bytes
        self._fault: str | None = None  # why this instance is spent (see `_retire`)
        self.memory_bytes_at_fault: int | None = None
        self.store = wasmtime.Store(self.engine)
        if memory_limit_bytes is not None:
            needed = initial_memory_bytes(module)
            if needed > memory_limit_bytes:  # wasmtime's own refusal names neither size
                raise MemoryLimitExceeded(
                    f"model {self.metadata.name!r} needs {needed} bytes of linear memory at instantiation, more "
                    f"than the instance memory cap of {memory_limit_bytes} bytes")
        set_store_limits(self.store, memory_limit_bytes)
        self._flag: ctypes.c_int32 | None = None
        self._alarm: Alarm | None = None  # the flag's, armed for each call under a deadline
        self._fired = False
        try:
            self.instance = instantiate(self.engine, self.store, module)  # a start function runs here if not rewritten
            exports = self.instance.exports(self.store)
            self._flag = interrupt_flag(exports, self.store)
            self._alarm = None if self._flag is None else Alarm(self._flag)
            self._call_with_deadline(deadline_seconds, run_start, exports, self.store)
        except wasmtime.Trap as exc:  # the start function trapped or ran past the deadline
            self.store.close()  # what the start function allocated goes now, whoever keeps the exception
            raise self._fault_of(exc, "instantiation", deadline_seconds if self._fired else None) from exc
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        self.memory = memory
        run = exports["wasinfer_run"]
        assert isinstance(run, wasmtime.Func)
        self._run = I32Call(self.store, run)
        # Modules never grow their memory, so one byte view serves every call; `run` checks the
        # size after each call, since a grown memory would also leave this view stale.
        size = self._memory_bytes = memory.data_len(self.store)
        self._memory_len = self._memory_len_call(memory)
        self._view = np.ctypeslib.as_array(memory.get_buffer_ptr(self.store), shape=(size,))
        self._inputs = [(spec, self._slot(spec)) for spec in self.metadata.inputs]
        self._outputs = [(spec, self._slot(spec)) for spec in self.metadata.outputs]
        self._plan: RunPlan | None = None  # the last call's, for the next call with the same shapes
        self._carries_lists = bool(self.metadata.list_inputs or self.metadata.list_outputs)

    @classmethod
    def from_file(cls, path: str | Path, cache: CompiledCache | None = None, engine: wasmtime.Engine | None = None,
                  *, deadline_seconds: float | None = None, memory_limit_bytes: int | None = None) -> WasmModel:
        engine = engine or make_engine(interruptible=deadline_seconds is not None)
        return cls(b"", engine, compiled=(cache or CompiledCache(None)).load_file(engine, Path(path)),
                   deadline_seconds=deadline_seconds, memory_limit_bytes=memory_limit_bytes)

    def _memory_len_call(self, memory: wasmtime.Memory) -> Callable[[], int]:
        """The memory's current byte size, read after every call, so as cheaply as ctypes allows."""
        try:
            data_size = _quick_call("wasmtime_memory_data_size", ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p)
            return functools.partial(data_size, ctypes.cast(self.store._context(), ctypes.c_void_p),
                                     ctypes.c_void_p(ctypes.addressof(memory._memory)))
        except (ImportError, AttributeError):
            return functools.partial(memory.data_len, self.store)

    def _call_with_deadline(self, seconds: float | None, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` with the watchdog armed for `seconds` (None: no deadline); `_fired` then says whether
        the flag was set, so that a trap is known to be the deadline's (the check's `unreachable`)."""
        self._fired = False
        if seconds is None or self._alarm is None:
            return call(*args)
        WATCHDOG.arm(self._alarm, seconds)
        try:
            return call(*args)
        finally:
            self._fired = WATCHDOG.disarm(self._alarm)  # before anything may close the store

    def _fault_of(self, exc: wasmtime.Trap | wasmtime.WasmtimeError, during: str,
                  deadline: float | None = None) -> ModelFault:
        """A DeadlineExceeded when `deadline` is given (the call's flag was set), else what the trap says."""
        if deadline is not None:
            return DeadlineExceeded(f"model {self.metadata.name!r} ran past its deadline of "
                                    f"{deadline * 1000:g} ms ({during}) and was stopped", deadline)
        message = exc.message if isinstance(exc, wasmtime.Trap) else str(exc)
        return ModelFault(f"model {self.metadata.name!r} trapped ({during}): {_trap_reason(message)}")

    def _grown(self) -> ModelFault:
        size, cap = self._memory_len(), self.memory_limit_bytes
        text = (f"model {self.metadata.name!r} grew its memory from {self._memory_bytes} to {size} bytes "
                "(wasinfer modules never grow their memory)")
        if cap is not None and size + WASM_PAGE > cap:
            return MemoryLimitExceeded(f"{text}, up to the instance memory cap of {cap} bytes")
        return ModelFault(text)

    def _retire(self, fault: ModelFault) -> ModelFault:
        """Spend this instance after `fault`: keep only its message, and free the instance's memory now.

        Why not keep the exception: its traceback holds the frames of the failed call, and they hold
        this instance, so the instance (and a linear memory grown up to its cap) would live until
        Python's cycle collector happened to run; eight faults at a 1 GiB cap grew a server by 3.4 GB.
        Closing the store frees the linear memory at once, whoever still holds the instance or the
        exception; the views into it go first, and `run` refuses every later call before touching them.
        """
        self._fault = str(fault)
        self.memory_bytes_at_fault = self._memory_len()
        self._view = np.empty(0, np.uint8)
        self._inputs, self._outputs, self._plan = [], [], None
        self.store.close()
        return fault

    @functools.cached_property
    def info(self) -> ModelInfo:
        return model_info(self.metadata)

    @property
    def inputs(self) -> list[TensorSpec]:
        """Each input's name, dtype and shape (-1 where each run decides a dim, with its range)."""
        return self.info.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self.info.outputs

    def input_names(self) -> list[str]:
        return [t.name for t in self.metadata.inputs]

    def output_names(self) -> list[str]:
        return [t.name for t in self.metadata.outputs]

    def _slot(self, spec: TensorSlot) -> np.ndarray:
        """A flat typed view of a tensor's slot in linear memory (max_batch samples when batched); a run
        of n samples uses its first n samples' worth, laid out as the tensor is for n."""
        dtype = np.dtype(spec.dtype)
        end = spec.offset + spec.sample_bytes * spec.slot_samples(self.metadata.max_batch)
        if end > self._memory_bytes:  # the metadata checked itself against its memory_bytes, which may not be true
            raise ValueError(f"tensor {spec.name!r}: its slot [{spec.offset}, {end}) in the metadata ends past the "
                             f"module's linear memory of {self._memory_bytes} bytes")
        dims_end = None if spec.dims_offset is None else spec.dims_offset + 4 * len(spec.shape)
        if dims_end is not None and dims_end > self._memory_bytes:  # each run writes or reads its dims there
            raise ValueError(f"tensor {spec.name!r}: its dims [{spec.dims_offset}, {dims_end}) in the metadata end "
                             f"past the module's linear memory of {self._memory_bytes} bytes")
        return self._view[spec.offset:end].view(dtype)

    def _batch_of(self, spec: TensorSlot, array: np.ndarray) -> int:
        expected = tuple(spec.shape)
        axis = spec.batch_axis
        if spec.run_time_axes:  # symbolic dims (ABI version 3): each in its range, the others as compiled
            check_symbolic_dims(spec, array.shape)
            return 1
        if axis is not None:
            if array.ndim != len(expected) or any(
                    a != e for i, (a, e) in enumerate(zip(array.shape, expected, strict=True)) if i != axis):
                wanted = ", ".join("N" if i == axis else str(d) for i, d in enumerate(expected))
                raise InputError(f"input {spec.name!r}: expected shape [{wanted}] with N <= "
                                 f"{self.metadata.max_batch}, got {list(array.shape)}")
            return int(array.shape[axis])
        if tuple(array.shape) != expected:
            raise InputError(f"input {spec.name!r}: expected shape {list(expected)}, got {list(array.shape)}")
        return 1

    def _check_symbols_agree(self, arrays: list[np.ndarray]) -> None:
        """Dims that are one symbol (inputs whose model names a dim alike) must be equal in a run."""
        seen: dict[str, tuple[str, int, int]] = {}
        for (spec, _), array in zip(self._inputs, arrays, strict=True):
            for axis, name in zip(spec.run_time_axes, spec.symbolic_dims, strict=False):
                size = int(array.shape[axis])  # (two dims that are one symbol have one step)
                first = seen.setdefault(name, (spec.name, axis, size))
                if first[2] != size:
                    raise InputError(f"input {spec.name!r}: axis {axis} is {size}, but it is the dim {name!r} "
                                     f"that input {first[0]!r} has as {first[2]} (axis {first[1]})")

    def run(self, inputs: dict[str, Any], deadline_seconds: float | None = None, *,
            tensors: bool = False) -> dict[str, Any]:
        """Check every input against the metadata before touching memory, then run the batch.

        A sequence input or output (docs/abi.md, "Sequences and optionals") is a list of arrays, an optional one
        an array (or a list) or None: runtime/lists.py puts them into the tensors that carry them and back; with
        `tensors`, the inputs and outputs are those tensors themselves, each by its own name (`x.0`, `x.count`).

        `deadline_seconds` replaces the instance's deadline for this call, where it has one (the
        server gives runs on its event loop a short one). Inputs of the last call's names, dtypes and
        shapes take its plan (RunPlan) and skip the checks they passed then; the outputs are copies,
        never views of linear memory, so a later run leaves them as they were."""
        if self._carries_lists and not tensors:
            return unpack(self.metadata, self.run(pack(self.metadata, inputs), deadline_seconds, tensors=True))
        if self._fault is not None:
            raise ModelFault(f"this instance is unusable after an earlier fault: {self._fault}")
        plan = self._plan
        if plan is None or not plan.fits(inputs):
            plan, inputs = self._plan_for(inputs)  # raises InputError before anything is written
            self._plan = plan
        for name, _, _, view, dims in plan.inputs:
            view[...] = inputs[name]
            if dims is not None:  # symbolic dims: the run reads them here (on every run: the module may write there)
                dims[0][...] = dims[1]
        seconds = self.deadline_seconds if deadline_seconds is None or self.deadline_seconds is None \
            else deadline_seconds
        batch = plan.batch
        try:
            status = self._run(batch) if seconds is None else self._call_with_deadline(seconds, self._run, batch)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            raise self._retire(self._fault_of(exc, "wasinfer_run", seconds if self._fired else None)) from exc
        if self._memory_len() != self._memory_bytes:
            raise self._retire(self._grown())
        if status != 0:
            errors = self.metadata.run_errors
            if 2 <= status < 2 + len(errors):  # the module refused these inputs (docs/abi.md, status codes)
                raise InputError(f"model {self.metadata.name!r}: {errors[status - 2]}")
            raise RuntimeError(f"wasinfer_run returned {status}")
        outputs = {}
        for name, spec, slot, shaped in plan.outputs:
            if shaped is None:  # a shape this run decided
                shape = self._run_time_shape(spec)
                outputs[name] = slot[:math.prod(shape)].reshape(shape).copy()
            else:
                outputs[name] = shaped.copy()
        return outputs

    def _plan_for(self, inputs: dict[str, np.ndarray]) -> tuple[RunPlan, dict[str, np.ndarray]]:
        """The plan for `inputs` and the inputs as ndarrays, after every check a call gets (InputError naming
        what is wrong)."""
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
            if spec.batch_axis is not None:
                batches.add(self._batch_of(spec, array))
            else:
                self._batch_of(spec, array)
            arrays.append(array)
        if len(batches) > 1:
            raise InputError(f"inputs have different batch sizes: {sorted(batches)}")
        batch = batches.pop() if batches else 1
        if not 1 <= batch <= self.metadata.max_batch:
            raise InputError(f"batch {batch} is outside 1..{self.metadata.max_batch} (compiled --max-batch)")
        self._check_symbols_agree(arrays)
        planned = []
        for (spec, slot), array in zip(self._inputs, arrays, strict=True):
            shape = tuple(array.shape)
            dims = None
            if spec.dims_offset is not None:  # symbolic dims: written beside the slot on every run
                dims = (self._view[spec.dims_offset:spec.dims_offset + 4 * len(shape)],
                        np.asarray(shape, np.int32).view(np.uint8))
            planned.append((spec.name, slot.dtype, shape, slot[:math.prod(shape)].reshape(shape), dims))
        outputs = []
        for spec, slot in self._outputs:
            size = spec.shape_for(batch)
            outputs.append((spec.name, spec, slot,
                            None if spec.dims_offset is not None else slot[:math.prod(size)].reshape(size)))
        return RunPlan(batch, planned, outputs), {spec.name: array for (spec, _), array in
                                                 zip(self._inputs, arrays, strict=True)}

    def _run_time_shape(self, spec: TensorSlot) -> list[int]:
        """The dims this run wrote for an output whose shape it decides; a dim past the metadata's largest is the
        module's fault (a hostile one could claim any), so this instance is spent, never read past its slot."""
        assert spec.dims_offset is not None
        dims = self._view[spec.dims_offset:spec.dims_offset + 4 * len(spec.shape)].view(np.int32).tolist()
        if any(not 0 <= d <= largest for d, largest in zip(dims, spec.shape, strict=True)):
            raise self._retire(ModelFault(f"model {self.metadata.name!r} wrote dims {dims} for output {spec.name!r}, "
                                          f"outside its largest shape {spec.shape}"))
        return [int(d) for d in dims]
