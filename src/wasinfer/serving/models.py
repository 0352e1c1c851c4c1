"""Loaded models and their lifecycle: lazy loads, explicit load/unload, per-model instance pools.

Everything here is blocking and thread-safe: the gRPC front end calls it from its worker
threads, the REST front end from its executors. A wasm run releases the GIL, so each model
keeps a pool of instances (one per core by default, created as concurrency needs them) and
two requests use two cores. An ONNX Runtime session is itself thread-safe, so its "pool"
hands out the one session.

States per model version, as the repository index reports them: LOADING, READY, and
UNAVAILABLE with a reason (not loaded yet, unloaded, or its load failed). A request for a
version that is not loaded loads it and waits; one for a model unloaded through the
repository API, or whose load failed, is refused with 503 until the next explicit load.
A model's default version is the highest on disk when it is first requested; a version
added later becomes the default at the next explicit load (which also reloads a version
whose file was rewritten), as in Triton's explicit model control mode.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson

from wasinfer.runtime import CompiledCache, InputError, WasmModel, make_engine
from wasinfer.serving.errors import BadRequest, Internal, NotFound, ServingError, Unavailable
from wasinfer.serving.metrics import Metrics
from wasinfer.serving.protocol import InferRequest, datatype_of
from wasinfer.serving.repository import ModelVersion, Repository

log = logging.getLogger("wasinfer.serving")

PLATFORMS = {"wasm": "wasinfer_wasm", "onnx": "onnxruntime_onnx"}
# A run expected to take less than this is cheaper on the calling (event-loop) thread than the
# hand-off to a worker thread and back, which costs tens of microseconds of CPU on both sides.
INLINE_SECONDS = 100e-6


class TensorDescription(Protocol):
    """What the server needs of a backend's tensor spec (WasmModel's and OnnxRuntimeModel's both fit)."""

    @property
    def name(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def shape(self) -> list[int]: ...
    @property
    def batch_axis(self) -> int | None: ...


class Runner(Protocol):
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class TensorMeta:
    name: str
    datatype: str  # v2 name
    shape: list[int]  # v2 metadata shape: -1 for the batch and other run-time dims

    @classmethod
    def of(cls, spec: TensorDescription) -> TensorMeta:
        shape = list(spec.shape)
        if spec.batch_axis == 0 and shape:
            shape[0] = -1
        return cls(spec.name, datatype_of(spec.dtype), shape)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


class InstancePool:
    """Instances of one model; grows to `size` only when every existing one is busy."""

    def __init__(self, factory: Callable[[], Runner], size: int):
        self._factory, self._size = factory, max(1, size)
        self._idle: queue.SimpleQueue[Runner] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle.put(factory())  # the first is part of the cold start: a failing model fails its load
        self.created = 1

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        instance = self._acquire()
        try:
            return instance.run(inputs)
        finally:
            self._idle.put(instance)

    def _acquire(self) -> Runner:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            grow = self.created < self._size
            if grow:
                self.created += 1
        if not grow:
            return self._idle.get()
        try:
            return self._factory()
        except BaseException:
            with self._lock:
                self.created -= 1
            raise


class LoadedModel:
    """One model version ready for requests, with its v2 metadata answer precomputed."""

    def __init__(self, version: ModelVersion, all_versions: Sequence[int], inputs: list[TensorMeta],
                 outputs: list[TensorMeta], pool: InstancePool, metrics: Metrics, stamp: tuple[int, int]):
        self.name, self.version = version.name, str(version.version)
        self.path, self.platform = version.path, PLATFORMS[version.format]
        self.stamp = stamp  # of the file as it was before it was read: a rewrite during the load shows
        self.inputs, self.outputs = inputs, outputs
        self.versions = [str(v) for v in all_versions]
        self.pool, self.metrics = pool, metrics
        self._input_types = {t.name: t.datatype for t in inputs}
        self._output_names = {t.name for t in outputs}
        self._batched = next((t.name for t in inputs if t.shape[:1] == [-1]), None)
        self.sample_seconds = float("inf")  # moving average of a run's time per sample; unknown at first
        self.metadata = {"name": self.name, "versions": self.versions, "platform": self.platform,
                         "inputs": [t.as_json() for t in inputs], "outputs": [t.as_json() for t in outputs]}
        self.metadata_json = orjson.dumps(self.metadata)

    def check(self, request: InferRequest) -> None:
        """Refuse, in v2 terms, what the backend would refuse in numpy terms (and what it would not see)."""
        missing = [name for name in self._input_types if name not in request.datatypes]
        extra = [name for name in request.datatypes if name not in self._input_types]
        if missing or extra:
            parts = ([f"missing input(s) {', '.join(map(repr, missing))}"] if missing else []) + (
                [f"unexpected input(s) {', '.join(map(repr, extra))}"] if extra else [])
            raise BadRequest(f"model {self.name!r} version {self.version}: {'; '.join(parts)}; it takes "
                             f"{', '.join(repr(n) for n in self._input_types)}")
        for name, datatype in request.datatypes.items():
            if datatype != self._input_types[name]:
                raise BadRequest(f"input {name!r}: model {self.name!r} expects datatype "
                                 f"{self._input_types[name]}, got {datatype}")
        for output in request.outputs or ():
            if output.name not in self._output_names:
                raise BadRequest(f"model {self.name!r} has no output {output.name!r}; its outputs are "
                                 f"{', '.join(repr(t.name) for t in self.outputs)}")

    def _batch(self, inputs: dict[str, np.ndarray]) -> int:
        array = inputs.get(self._batched) if self._batched else None
        return int(array.shape[0]) if array is not None and array.ndim else 1

    def is_quick(self, inputs: dict[str, np.ndarray]) -> bool:
        """Whether this run is expected to be short enough to run on the event loop itself."""
        return self.sample_seconds * self._batch(inputs) < INLINE_SECONDS

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on a pooled instance (blocking)."""
        started = time.perf_counter()
        try:
            outputs = self.pool.run(inputs)
        except InputError as exc:
            raise BadRequest(f"model {self.name!r} version {self.version}: {exc}") from None
        except ServingError:
            raise
        except Exception as exc:
            log.exception("model %s version %s failed", self.name, self.version)
            raise Internal(f"model {self.name!r} version {self.version} failed: {exc}") from None
        elapsed = time.perf_counter() - started
        per_sample = elapsed / max(1, self._batch(inputs))
        previous = self.sample_seconds  # races between threads only blur the average
        self.sample_seconds = per_sample if previous == float("inf") else 0.8 * previous + 0.2 * per_sample
        self.metrics.inference(self.name, self.version, elapsed)
        return outputs


@dataclass
class _Record:
    state: str  # LOADING, READY, UNAVAILABLE
    reason: str
    done: threading.Event
    model: LoadedModel | None = None


class ModelManager:
    """Which model versions are loaded, loading them on first use or on request."""

    def __init__(self, repository: Repository, metrics: Metrics, pool_size: int,
                 cache: CompiledCache | None = None):
        self.repository, self.metrics, self.pool_size = repository, metrics, pool_size
        self.cache = cache or CompiledCache(None)
        self.engine = make_engine()  # shared by every wasm model: compiled code is per engine
        self._lock = threading.Lock()
        self._records: dict[tuple[str, int], _Record] = {}
        self._unloaded: set[str] = set()
        # The lock-free fast path: (name, version as requested, "" for the default) → ready model.
        self._ready: dict[tuple[str, str], LoadedModel] = {}

    # --- lookups -------------------------------------------------------------------------------

    def lookup(self, name: str, version: str) -> LoadedModel | None:
        """The ready model for this request, without blocking; None when it needs `get`."""
        return self._ready.get((name, version))

    def resolve(self, name: str, version: str) -> ModelVersion:
        versions = self.repository.versions(name)
        if not versions:
            raise NotFound(f"unknown model {name!r}")
        if not version:
            return versions[max(versions)]
        number = int(version) if version.isascii() and version.isdigit() else -1
        if number not in versions:
            raise NotFound(f"model {name!r} has no version {version!r}; it has "
                           f"{', '.join(str(v) for v in versions)}")
        return versions[number]

    def get(self, name: str, version: str = "") -> LoadedModel:
        """The ready model, loading it first if it is not (the caller waits for the load)."""
        model = self.lookup(name, version)
        if model is not None:
            return model
        if name in self._unloaded and self.repository.versions(name):
            raise Unavailable(f"model {name!r} is unloaded; load it with POST /v2/repository/models/{name}/load")
        target = self.resolve(name, version)
        model = self._load(target)
        with self._lock:
            record = self._records.get((name, target.version))
            if record is not None and record.model is model:  # still current: remember the alias
                self._ready[(name, version)] = model
        return model

    def is_ready(self, name: str, version: str = "") -> bool:
        """Readiness without loading: a probe must not trigger cold starts."""
        if self.lookup(name, version) is not None:
            return True
        target = self.resolve(name, version)
        record = self._records.get((name, target.version))
        return record is not None and record.state == "READY"

    # --- loading -------------------------------------------------------------------------------

    def _load(self, target: ModelVersion) -> LoadedModel:
        key = (target.name, target.version)
        with self._lock:
            record = self._records.get(key)
            owner = record is None
            if owner:
                record = self._records[key] = _Record("LOADING", "", threading.Event())
        assert record is not None
        if owner:
            self._build(target, record)
        else:
            record.done.wait()
        if record.model is None:
            raise Unavailable(f"model {target.name!r} version {target.version} is not available: {record.reason}")
        return record.model

    def _build(self, target: ModelVersion, record: _Record) -> None:
        started = time.perf_counter()
        label = str(target.version)
        try:
            model = self._open(target)
        except Exception as exc:  # any failure of a model file is that model's, not the server's
            log.warning("loading model %s version %s from %s failed: %s", target.name, target.version,
                        target.path, exc)
            record.state, record.reason = "UNAVAILABLE", f"load failed: {exc}"
            self.metrics.cold_start(target.name, label, "error", time.perf_counter() - started)
        else:
            self.metrics.cold_start(target.name, label, "ok", time.perf_counter() - started)
            with self._lock:
                record.model, record.state = model, "READY"
                if self._records.get((target.name, target.version)) is record:  # not unloaded meanwhile
                    self._ready[(target.name, label)] = model
                    self.metrics.model_loaded(+1)
        finally:
            record.done.set()

    def _open(self, target: ModelVersion) -> LoadedModel:
        specs: tuple[Sequence[TensorDescription], Sequence[TensorDescription]]
        stamp = file_stamp(target.path)
        if target.format == "wasm":
            compiled = self.cache.load_file(self.engine, target.path)
            engine = self.engine

            def factory() -> Runner:
                return WasmModel(b"", engine, compiled=compiled)

            specs = compiled[1].inputs, compiled[1].outputs
        else:
            from wasinfer.runtime.onnxruntime import OnnxRuntimeModel

            session = OnnxRuntimeModel(target.path, name=target.name)

            def factory() -> Runner:
                return session

            specs = session.metadata.inputs, session.metadata.outputs
        pool = InstancePool(factory, self.pool_size)
        versions = sorted(self.repository.versions(target.name)) or [target.version]
        return LoadedModel(target, versions, [TensorMeta.of(s) for s in specs[0]],
                           [TensorMeta.of(s) for s in specs[1]], pool, self.metrics, stamp)

    # --- the repository extension --------------------------------------------------------------

    def load(self, name: str) -> LoadedModel:
        """Load (or reload, if its file changed) the model's highest version and make it the default."""
        target = self.resolve(name, "")
        key = (name, target.version)
        with self._lock:
            self._unloaded.discard(name)
            record = self._records.get(key)
            if record is not None and record.model is not None and (
                    record.model.path != target.path or record.model.stamp != file_stamp(target.path)):
                self._drop(key)
            elif record is not None and record.state == "UNAVAILABLE":
                del self._records[key]
            self._ready.pop((name, ""), None)
        model = self._load(target)
        with self._lock:
            self._ready[(name, "")] = model
        return model

    def unload(self, name: str) -> None:
        if not self.repository.versions(name) and not any(key[0] == name for key in self._records):
            raise NotFound(f"unknown model {name!r}")
        with self._lock:
            self._unloaded.add(name)
            for key in [key for key in self._records if key[0] == name]:
                self._drop(key)

    def _drop(self, key: tuple[str, int]) -> None:
        """Forget a version (lock held). Requests already running on it finish on their instances."""
        record = self._records.pop(key)
        for alias in [alias for alias, model in self._ready.items() if alias[0] == key[0]
                      and model.version == str(key[1])]:
            del self._ready[alias]
        if record.model is not None:
            self.metrics.model_loaded(-1)

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """Every version on disk with its state; loaded versions whose files went away too."""
        entries: dict[tuple[str, int], dict[str, str]] = {}
        for name in self.repository.model_names():
            for version in self.repository.versions(name):
                reason = "unloaded" if name in self._unloaded else "not loaded yet (loads on first request)"
                entries[(name, version)] = {"name": name, "version": str(version), "state": "UNAVAILABLE",
                                            "reason": reason}
        for (name, version), record in list(self._records.items()):
            entries[(name, version)] = {"name": name, "version": str(version), "state": record.state,
                                        "reason": record.reason}
        rows = [entries[key] for key in sorted(entries)]
        return [row for row in rows if row["state"] == "READY"] if ready_only else rows


def file_stamp(path: Path) -> tuple[int, int]:
    """What tells a rewritten model file from the one that was loaded."""
    try:
        st = path.stat()
    except OSError:
        return (-1, -1)
    return (st.st_mtime_ns, st.st_size)
