"""Run wasinfer modules with wasmtime, with an on-disk cache of compiled machine code.

A module is compiled once per (module digest, wasmtime version, engine settings) and
serialised next to the store; later loads deserialise it (memory-mapped), so a cold start
is an mmap plus instantiation, not a compilation.

A module is untrusted code: each instance may get a deadline per call (epoch interruption,
advanced by an `EpochTicker` thread) and a cap on its linear memory, and whatever the module
does wrong surfaces as a `ModelFault` from that instance's `run`, never as a crash or a hang
of the process.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import math
import os
import sys
import threading
import weakref
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import wasmtime

from wasinfer.artifact.metadata import Metadata, TensorSpec, read_metadata
from wasinfer.fileio import atomic_write
from wasinfer.runtime.base import DeadlineExceeded, InputError, MemoryLimitExceeded, ModelFault
from wasinfer.runtime.bulk import REWRITE_TAG, UnverifiableModule, interruptible_bulk_memory

WASMTIME_VERSION = version("wasmtime")
DEFAULT_CACHE = Path(os.environ.get("WASINFER_CACHE", Path.home() / ".cache" / "wasinfer" / "compiled"))


def engine_tag(interruptible: bool = True) -> str:
    """What the compiled code depends on; part of every cache key, so code compiled with one
    setting is never deserialised into an engine with the other."""
    return f"wasmtime {WASMTIME_VERSION}|speed|simd" + ("|epoch" if interruptible else "")


ENGINE_TAG = engine_tag()
_ENGINE_TAGS: weakref.WeakKeyDictionary[wasmtime.Engine, str] = weakref.WeakKeyDictionary()


def make_engine(interruptible: bool = True) -> wasmtime.Engine:
    """The engine wasinfer modules are compiled for.

    `interruptible` turns on epoch interruption: compiled code then checks the epoch at every
    function entry and loop back-edge, which is what lets a deadline stop a module that never
    returns. The checks cost speed in tight kernel loops (1.7-1.8x on a 3x3 convolution, 2.5x on the
    demo MLP, measured with wasmtime 50), so hosts that set no deadline can turn them off.
    """
    config = wasmtime.Config()
    config.cranelift_opt_level = "speed"
    config.wasm_simd = True
    config.wasm_bulk_memory = True
    config.wasm_relaxed_simd = True  # modules compiled with --relaxed-simd (FMA); wasmtime's default, made explicit
    config.epoch_interruption = interruptible
    engine = wasmtime.Engine(config)
    _ENGINE_TAGS[engine] = engine_tag(interruptible)
    return engine


def tag_of(engine: wasmtime.Engine) -> str:
    """The engine's tag; an engine not made by `make_engine` is assumed to be configured like its default."""
    return _ENGINE_TAGS.get(engine, ENGINE_TAG)


def code_tag(engine: wasmtime.Engine) -> str:
    """What code compiled for `engine` depends on besides the module: the engine's tag, and on an
    interruptible engine the rewrite that makes bulk-memory instructions interruptible (bulk.py)."""
    tag = tag_of(engine)
    return f"{tag}|{REWRITE_TAG}" if tag.endswith("|epoch") else tag


def compile_module(engine: wasmtime.Engine, wasm: bytes) -> wasmtime.Module:
    """Compile `wasm` for `engine`; on an interruptible engine its memory.fill and memory.copy are chunked
    first, so a deadline also stops one that covers a gigabyte (UnverifiableModule, a ValueError, when the
    module cannot be decoded for that)."""
    if code_tag(engine) != tag_of(engine):
        try:
            wasm = interruptible_bulk_memory(wasm)
        except UnverifiableModule:
            wasmtime.Module.validate(engine, wasm)  # bytes that are not a valid module: wasmtime's error says why
            raise
    return wasmtime.Module(engine, wasm)


WASM_PAGE = 65536
# How often an EpochTicker advances its engine's epoch. A deadline of d seconds interrupts a
# call no sooner than d and, on an idle machine, within about d + 2 ticks; a late tick only
# makes deadlines later, never earlier.
TICK_SECONDS = 0.010
# The deadline of a store without one: an engine with epoch interruption traps at once at the
# default deadline 0, and this many ticks is centuries even for a ticking engine.
NO_DEADLINE_TICKS = 1 << 40


class _Sigval(ctypes.Union):
    _fields_ = [("sival_int", ctypes.c_int), ("sival_ptr", ctypes.c_void_p)]


class _SigevThread(ctypes.Structure):
    _fields_ = [("function", ctypes.c_void_p), ("attribute", ctypes.c_void_p)]


class _SigevUnion(ctypes.Union):
    _fields_ = [("pad", ctypes.c_int * 12), ("tid", ctypes.c_int), ("thread", _SigevThread)]


class _Sigevent(ctypes.Structure):
    """Linux's struct sigevent (64 bytes)."""

    _fields_ = [("value", _Sigval), ("signo", ctypes.c_int), ("notify", ctypes.c_int), ("un", _SigevUnion)]


class _Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("interval", _Timespec), ("value", _Timespec)]


_SIGEV_THREAD, _CLOCK_MONOTONIC = 2, 1


def _libc() -> Any:
    """glibc, where its POSIX timers can run a native function; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.timer_create.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        libc.timer_settime.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        libc.timer_delete.argtypes = [ctypes.c_void_p]
        return libc
    except (OSError, AttributeError):
        return None


class _NativeClock:
    """A kernel timer whose every expiry calls `wasmtime_engine_increment_epoch` on a native thread.

    Why not a Python thread: a Python thread that wakes every few milliseconds costs the event
    loop's thread a third of its throughput here (measured: ~70 us per small-model request
    without one, ~110 us with one), as each wake-up makes it give up and win back the GIL.
    glibc's SIGEV_THREAD timers call a C function directly, with no Python and no GIL; their
    `union sigval` argument is passed as a pointer would be, so the function can be wasmtime's
    own. The timer ticks an engine handle of its own (`wasmtime_engine_clone`), which is never
    deleted: an expiry already under way when the timer is deleted may still use it.
    Expiries that come late are merged by the kernel (overruns), never replayed in a burst.
    """

    def __init__(self, engine: wasmtime.Engine, tick_seconds: float, libc: Any):
        from wasmtime import _ffi

        self._libc = libc
        handle = _ffi.wasmtime_engine_clone(engine.ptr())
        event = _Sigevent()
        event.notify = _SIGEV_THREAD
        event.value.sival_ptr = ctypes.cast(handle, ctypes.c_void_p).value
        event.un.thread.function = ctypes.cast(_ffi.dll.wasmtime_engine_increment_epoch, ctypes.c_void_p).value
        self._timer = ctypes.c_void_p()
        if libc.timer_create(_CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(self._timer)) != 0:
            raise OSError(ctypes.get_errno(), "timer_create failed")
        seconds, fraction = divmod(tick_seconds, 1.0)
        period = _Timespec(int(seconds), int(fraction * 1e9))
        spec = _Itimerspec(period, period)
        if libc.timer_settime(self._timer, 0, ctypes.byref(spec), None) != 0:
            libc.timer_delete(self._timer)
            raise OSError(ctypes.get_errno(), "timer_settime failed")
        self.alive = True

    def stop(self) -> None:
        if self.alive:
            self.alive = False
            self._libc.timer_delete(self._timer)


class _ThreadClock:
    """The portable fallback: a daemon thread that holds the engine weakly and ends with it."""

    def __init__(self, engine: wasmtime.Engine, tick_seconds: float):
        self._engine, self._tick_seconds = weakref.ref(engine), tick_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="wasinfer-epoch", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1.0)

    def _tick(self) -> None:
        while not self._stop.wait(self._tick_seconds):
            engine = self._engine()
            if engine is None:
                return
            engine.increment_epoch()
            del engine  # hold the engine only while ticking it


class EpochTicker:
    """Advances one engine's epoch every `tick_seconds`, which is what makes epoch deadlines fire.

    One per engine (`for_engine` always hands out the same ticker), started only when some
    instance asks for a deadline, so engines without deadlines cost nothing. On Linux a kernel
    timer ticks the engine from native code (`_NativeClock`, about 1% of a core at 10 ms);
    elsewhere, or with `native=False`, a Python thread does. Either stops when the engine is
    collected.
    """

    def __init__(self, engine: wasmtime.Engine, tick_seconds: float = TICK_SECONDS, native: bool = True):
        if tick_seconds <= 0:
            raise ValueError(f"tick_seconds must be positive, got {tick_seconds}")
        self.tick_seconds = tick_seconds
        self._engine = weakref.ref(engine)
        self._libc = _libc() if native else None
        self._lock = threading.Lock()
        self._clock: _NativeClock | _ThreadClock | None = None

    @classmethod
    def for_engine(cls, engine: wasmtime.Engine) -> EpochTicker:
        with _TICKERS_LOCK:
            ticker = _TICKERS.get(engine)
            if ticker is None:
                ticker = _TICKERS[engine] = cls(engine)
        return ticker

    @property
    def running(self) -> bool:
        clock = self._clock
        return clock is not None and clock.alive

    @property
    def native(self) -> bool:
        return isinstance(self._clock, _NativeClock)

    def ticks_for(self, seconds: float) -> int:
        """Epoch ticks for a deadline of `seconds`; one extra since the first tick may come at once."""
        return max(1, math.ceil(seconds / self.tick_seconds)) + 1

    def start(self) -> EpochTicker:
        with self._lock:
            engine = self._engine()
            if not self.running and engine is not None:
                clock: _NativeClock | _ThreadClock | None = None
                if self._libc is not None:
                    try:
                        clock = _NativeClock(engine, self.tick_seconds, self._libc)
                        weakref.finalize(engine, clock.stop)
                    except (OSError, AttributeError):  # no timers here, or a wasmtime-py without these symbols
                        self._libc = None
                self._clock = clock or _ThreadClock(engine, self.tick_seconds)
        return self

    def stop(self) -> None:
        """Stop ticking: deadlines already set on this engine's stores then never fire."""
        with self._lock:
            clock, self._clock = self._clock, None
        if clock is not None:
            clock.stop()


_TICKERS: weakref.WeakKeyDictionary[wasmtime.Engine, EpochTicker] = weakref.WeakKeyDictionary()
_TICKERS_LOCK = threading.Lock()


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
        path = self.directory / f"{self.key(wasm, code_tag(engine))}.cwasm"
        if path.exists():
            try:
                return wasmtime.Module.deserialize_file(engine, str(path))
            except wasmtime.WasmtimeError:
                path.unlink(missing_ok=True)  # stale or corrupt: recompile below
        module = compile_module(engine, wasm)
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(path, bytes(module.serialize()))
        return module

    def load_file(self, engine: wasmtime.Engine, path: Path) -> tuple[wasmtime.Module, Metadata]:
        if self.directory is not None:
            st = path.stat()
            stat_key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{code_tag(engine)}".encode())
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
            record = {"cwasm": f"{self.key(wasm, code_tag(engine))}.cwasm", "metadata": metadata.to_json().decode()}
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
    slot; traps still surface as `wasmtime.Trap` through wasmtime's own `enter_wasm`.

    With `deadline_ticks`, every call first sets the store's epoch deadline that many ticks
    ahead (an epoch deadline is relative to the epoch when it is set, so once per call), with
    a direct foreign call of about 0.3 us.
    """

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func, deadline_ticks: int | None = None):
        self.store, self.func, self.deadline_ticks = store, func, deadline_ticks
        self._set_deadline: Callable[[], None] | None = None
        self._set_deadline_to: Callable[[int], None] = store.set_epoch_deadline
        try:
            from wasmtime import _ffi
            from wasmtime._func import enter_wasm

            self._ffi: Any = _ffi
            self._enter = enter_wasm
            self._slot = (_ffi.wasmtime_val_raw_t * 1)()
            self._func_ref = ctypes.byref(func._func)
            self._context = store._context()
            if deadline_ticks is not None:
                set_deadline = _quick_call("wasmtime_context_set_epoch_deadline", None, ctypes.c_void_p,
                                           ctypes.c_uint64)
                context = ctypes.cast(self._context, ctypes.c_void_p)
                self._set_deadline = functools.partial(set_deadline, context, ctypes.c_uint64(deadline_ticks))
                self._set_deadline_to = functools.partial(set_deadline, context)
        except (ImportError, AttributeError):  # a wasmtime-py whose internals moved: use the public call
            self._ffi = None

    def __call__(self, arg: int, ticks: int | None = None) -> int:
        """Call with the instance's deadline, or with `ticks` instead (only where it has one)."""
        if self._ffi is None:
            if self.deadline_ticks is not None:
                self.store.set_epoch_deadline(ticks or self.deadline_ticks)
            return int(self.func(self.store, arg))
        if ticks is not None and self.deadline_ticks is not None:
            self._set_deadline_to(ticks)
        elif self._set_deadline is not None:
            self._set_deadline()
        self._slot[0].i32 = arg
        with self._enter(self.store) as trap:
            error = self._ffi.wasmtime_func_call_unchecked(self._context, self._func_ref, self._slot, 1, trap)
            if error:
                raise wasmtime.WasmtimeError._from_ptr(error)
        return int(self._slot[0].i32)


def initial_memory_bytes(module: wasmtime.Module) -> int:
    """The largest linear memory an instance of `module` starts with (its declared minimum)."""
    types = [item.type for item in module.exports] + [item.type for item in module.imports]
    return max((t.limits.min * WASM_PAGE for t in types if isinstance(t, wasmtime.MemoryType)), default=0)


def _trap_reason(message: str) -> str:
    """The cause of a wasmtime trap without its backtrace ("wasm trap: integer divide by zero")."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "trap"


class WasmModel:
    """One instance of a compiled module; `run` takes and returns numpy arrays by name.

    `deadline_seconds` bounds every call (and the module's start function, at instantiation);
    `memory_limit_bytes` caps the instance's linear memory. A deadline needs an engine from
    `make_engine()` (epoch interruption on); without `engine`, one is made with the checks only
    when there is a deadline, since they slow compute-heavy models. Whatever the module
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
        if deadline_seconds is not None and tag_of(self.engine) != ENGINE_TAG:
            raise ValueError("a deadline needs an engine with epoch interruption: make it with make_engine()")
        if compiled is None:
            module, self.metadata = (cache or CompiledCache(None)).load(self.engine, wasm), read_metadata(wasm)
        else:
            module, self.metadata = compiled
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
            self.store.set_limits(memory_size=memory_limit_bytes)
        ticks = None
        self._ticker: EpochTicker | None = None
        if deadline_seconds is not None:
            self._ticker = EpochTicker.for_engine(self.engine).start()
            ticks = self._ticker.ticks_for(deadline_seconds)
        self.store.set_epoch_deadline(NO_DEADLINE_TICKS if ticks is None else ticks)
        try:
            self.instance = instantiate(self.engine, self.store, module)
        except wasmtime.Trap as exc:  # the start function trapped or ran past the deadline
            self.store.close()  # what the start function allocated goes now, whoever keeps the exception
            raise self._fault_of(exc, "instantiation") from exc
        exports = self.instance.exports(self.store)
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        self.memory = memory
        run = exports["wasinfer_run"]
        assert isinstance(run, wasmtime.Func)
        self._run = I32Call(self.store, run, ticks)
        # Modules never grow their memory, so one byte view serves every call; `run` checks the
        # size after each call, since a grown memory would also leave this view stale.
        size = self._memory_bytes = memory.data_len(self.store)
        self._memory_len = self._memory_len_call(memory)
        self._view = np.ctypeslib.as_array(memory.get_buffer_ptr(self.store), shape=(size,))
        self._inputs = [(spec, self._slot(spec)) for spec in self.metadata.inputs]
        self._outputs = [(spec, self._slot(spec)) for spec in self.metadata.outputs]

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

    def _fault_of(self, exc: wasmtime.Trap | wasmtime.WasmtimeError, during: str,
                  deadline: float | None = None) -> ModelFault:
        message = exc.message if isinstance(exc, wasmtime.Trap) else str(exc)
        code = exc.trap_code if isinstance(exc, wasmtime.Trap) else None
        deadline = deadline or self.deadline_seconds
        if deadline is not None and (
                code is wasmtime.TrapCode.INTERRUPT or (code is None and "interrupt" in message)):
            return DeadlineExceeded(f"model {self.metadata.name!r} ran past its deadline of "
                                    f"{deadline * 1000:g} ms ({during}) and was stopped", deadline)
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
        self._inputs, self._outputs = [], []
        self.store.close()
        return fault

    def input_names(self) -> list[str]:
        return [t.name for t in self.metadata.inputs]

    def output_names(self) -> list[str]:
        return [t.name for t in self.metadata.outputs]

    def _slot(self, spec: TensorSpec) -> np.ndarray:
        """A typed numpy view of a tensor's slot in linear memory, [max_batch, ...] when batched."""
        dtype = np.dtype(spec.dtype)
        count = self.metadata.max_batch if spec.batch_axis == 0 else 1
        shape = (count, *spec.shape[1:]) if spec.batch_axis == 0 else tuple(spec.shape)
        end = spec.offset + spec.sample_bytes * count
        if end > self._memory_bytes:  # the metadata checked itself against its memory_bytes, which may not be true
            raise ValueError(f"tensor {spec.name!r}: its slot [{spec.offset}, {end}) in the metadata ends past the "
                             f"module's linear memory of {self._memory_bytes} bytes")
        return self._view[spec.offset:end].view(dtype).reshape(shape)

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

    def run(self, inputs: dict[str, np.ndarray], deadline_seconds: float | None = None) -> dict[str, np.ndarray]:
        """Check every input against the metadata before touching memory, then run the batch.

        `deadline_seconds` replaces the instance's deadline for this call, where it has one (the
        server gives runs on its event loop a short one)."""
        if self._fault is not None:
            raise ModelFault(f"this instance is unusable after an earlier fault: {self._fault}")
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
        ticks = None
        if deadline_seconds is not None and self._ticker is not None:
            ticks = self._ticker.ticks_for(deadline_seconds)
        try:
            status = self._run(batch, ticks)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            raise self._retire(self._fault_of(exc, "wasinfer_run", deadline_seconds if ticks is not None else None)) \
                from exc
        if self._memory_len() != self._memory_bytes:
            raise self._retire(self._grown())
        if status != 0:
            raise RuntimeError(f"wasinfer_run returned {status}")
        return {spec.name: (slot[:batch] if spec.batch_axis == 0 else slot).copy() for spec, slot in self._outputs}
