"""Loaded models and their lifecycle: lazy loads, explicit load/unload, per-model instance pools.

Everything here is blocking and thread-safe: the gRPC front end calls it from its worker
threads, the REST front end from its executors. A wasm run releases the GIL, so each model
keeps a pool of instances (one per core by default, created as concurrency needs them) and
two requests use two cores. An ONNX Runtime session is itself thread-safe, so its "pool"
hands out the one session.

Isolation: each loaded version has as many execution slots as instances (`instance_count`, by
default one per core): its own worker threads (workers.py), one per slot, on which every run
that is not short enough for the event loop runs, for REST and gRPC alike. A model whose runs
are slow or hostile fills its own slots and queue, never those of another model (Triton's
instance groups), and a run past --demote-after-ms gives way to shorter ones on the CPU (its
thread's priority is lowered: workers.py). A request carries a `Deadline` (the server's
--deadline-ms from when its model is ready, or a gRPC client's own if sooner): it waits for a
slot at most until then and is answered DEADLINE_EXCEEDED without running, and a wasm run that
starts gets only what is left of it. A version whose recent runs mostly fault (traps, stack, memory cap,
deadline) has its requests refused for a while by its fault breaker (breaker.py), which spares the
server (and every other model) the cost of running and rebuilding it over and over.

States per model version, as the repository index reports them: LOADING, READY, and
UNAVAILABLE with a reason (not loaded yet, unloaded, or its load failed). A request for a
version that is not loaded loads it and waits in the lazy model control mode, and is refused with
503 in the others, where only start-up, the repository API and the poller load (control.py);
one for a model unloaded through the repository API, or whose load failed, is refused with 503
until the next explicit load.
A model's default version is the highest on disk (of those its config's version_policy serves)
when it is first requested; a version added later becomes the default at the next explicit
load (which also reloads a version whose file was rewritten), as in Triton's explicit model
control mode.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

import numpy as np
import orjson

from wasinfer.artifact.metadata import Metadata
from wasinfer.extras import extra_needed
from wasinfer.runtime import (
    CompiledCache,
    InputError,
    MemoryLimitExceeded,
    ModelFault,
    ModelInfo,
    TensorSpec,
    WasmModel,
    make_engine,
    model_info,
)
from wasinfer.runtime import DeadlineExceeded as RunDeadlineExceeded
from wasinfer.serving.batching import Batcher
from wasinfer.serving.breaker import FaultBreaker
from wasinfer.serving.errors import (
    BadRequest,
    DeadlineExceeded,
    Internal,
    NotFound,
    ServingError,
    TooManyRequests,
    Unavailable,
)
from wasinfer.serving.metrics import Metrics, Phases
from wasinfer.serving.model_config import (
    LABELS_FILE,
    ConfigError,
    ModelConfig,
    ModelSettings,
    ServingDefaults,
    TensorConfig,
    check_tensors,
    config_type,
    load_model_config,
    settings_for,
)
from wasinfer.serving.protocol import InferRequest, classify, datatype_of
from wasinfer.serving.repository import ModelVersion, Repository
from wasinfer.serving.workers import Demoter, ModelWorkers

log = logging.getLogger("wasinfer.serving")

# Triton's names where it has one; it has no TFLite platform (its community TFLite backends are
# backend-only), so that one is named like its tensorflow_graphdef and tensorflow_savedmodel.
PLATFORMS = {"wasm": "wasinfer_wasm", "onnx": "onnxruntime_onnx", "tflite": "tensorflow_lite"}
BACKENDS = {"wasm": "wasinfer", "onnx": "onnxruntime", "tflite": "tflite"}  # Triton's backend names, and ours
# A run expected to take less than this is cheaper on the calling (event-loop) thread than the
# hand-off to a worker thread and back, which costs tens of microseconds of CPU on both sides.
INLINE_SECONDS = 100e-6
# A gRPC thread waits for its call's run anyway, so it runs the model itself when its runs are expected
# to take less than this (capped like the event loop's: INLINE_DEADLINE_SECONDS): the hand-off to the
# model's thread and back cost a 0.3 ms model a quarter of its gRPC throughput on 2 cores. Longer runs go
# to the model's threads, where a run that turns out long can be demoted (workers.py).
GRPC_INLINE_SECONDS = 0.001
# A run on the event loop stalls every other REST request while it runs, so a wasm model run
# there (or on a gRPC thread, which cannot be demoted: workers.py) gets this deadline instead of
# its own: a hostile input (or a model that became slow) costs the loop at most this long once,
# then the run is retried on a worker thread with the full deadline and the model never runs
# on the caller's thread again.
INLINE_DEADLINE_SECONDS = 0.010
# ...unless the run used less than PREEMPTED_CPU_SECONDS of its thread's CPU: the deadline is wall-clock time, and
# on a busy machine a 5 us run whose thread is preempted (or waits for the GIL) passes 10 ms with no fault of its
# own, while a run that computes past it uses its CPU (a quick run is expected to take under INLINE_SECONDS, and
# discarding the stopped instance costs up to a millisecond more; a looping input gets more than a fifth of a core
# on any machine that still serves). Such an overrun is retried on a worker thread like any other but keeps the
# model on the caller's thread, at most once per PREEMPTION_EXCUSE_SECONDS, so that a hostile input on an
# overloaded machine stalls the loop for at most one inline deadline a second before its model is moved off it.
# (Measured on the shared 2-core machine at load average 5-11: a `wasinfer serve` of the digits model was moved to
# its worker threads in most 5 s runs under wrk, and then cost 1.3-1.8x the CPU per request.)
PREEMPTED_CPU_SECONDS = 0.002
PREEMPTION_EXCUSE_SECONDS = 1.0
# A module under this size whose compiled code is cached loads on the request's thread (`loads_quickly`):
# mapping the code and instantiating take 1-2 ms there (the seed's models and our demos are well under it).
QUICK_LOAD_BYTES = 5 << 20


def refuse_lists(metadata: Metadata) -> None:
    """A module with a sequence- or optional-typed input or output fails its load, naming it: KServe v2 has tensors
    only, and serving the tensors that carry it (docs/abi.md) would hand clients a module's private layout."""
    for side, slots in (("input", metadata.list_inputs), ("output", metadata.list_outputs)):
        for slot in slots:
            what = "a sequence" if slot.kind == "sequence" else "an optional"
            raise ValueError(f"{side} {slot.name!r} is {what}, which KServe v2 has no datatype for (its tensors only): "
                             "such a module runs from Python (WasmModel.run), `wasinfer run` or its ABI, not served")


@dataclass(frozen=True)
class Deadline:
    """When a request must have its answer: `seconds` (said in messages) after its model was ready, at
    `expires_at`.

    One value travels with the request through every queue (its model's worker threads, the
    batcher) and into the wasm run, so a request is answered by its deadline wherever it waits.
    """

    seconds: float
    expires_at: float  # time.monotonic()

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(seconds, time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.expires_at - time.monotonic()


class Runner(Protocol):
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class TensorMeta:
    name: str
    datatype: str  # v2 name
    shape: list[int]  # v2 metadata shape: -1 for the batch and other run-time dims (KServe's "variable")
    spec: TensorSpec  # the backend's own: which -1 is the batch, and a symbolic dim's range

    @classmethod
    def of(cls, spec: TensorSpec) -> TensorMeta:
        """A backend's tensor (runtime/base.py: -1 already stands for the batch and run-time dims)."""
        return cls(spec.name, datatype_of(spec.dtype), list(spec.shape), spec)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


class InstancePool:
    """Instances of one model; grows to `size` only when every existing one is busy.

    An instance whose run raised a ModelFault (a trap, a deadline, its memory cap) may be left
    mid-run, so it is discarded rather than returned. Its place becomes a vacancy: a None in the
    idle queue, so that a request already waiting for an instance builds a fresh one instead of
    waiting for one that will never come back. `created` counts live instances (and those being
    built); live instances plus vacancies never exceed `size`.
    """

    def __init__(self, factory: Callable[[], Runner], size: int,
                 not_counted: Callable[[], AbstractContextManager[None]] = nullcontext):
        self._factory, self._size = factory, max(1, size)
        # around building an instance on a request's thread: the demoter does not count it (serving/workers.py)
        self._not_counted = not_counted
        self._idle: queue.SimpleQueue[Runner | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle.put(factory())  # the first is part of the cold start: a failing model fails its load
        self.created = 1
        self._vacant = 0  # Nones in _idle
        self.discarded = 0  # instances dropped after a fault, over the pool's life

    def run(self, inputs: dict[str, np.ndarray], deadline_seconds: float | None = None) -> dict[str, np.ndarray]:
        """Run on an idle instance; `deadline_seconds` (wasm instances only) replaces the instance's own."""
        instance, healthy = self._acquire(), True
        try:
            if deadline_seconds is not None:
                assert isinstance(instance, WasmModel)
                return instance.run(inputs, deadline_seconds)
            return instance.run(inputs)
        except ModelFault as exc:
            healthy = False
            with self._lock:
                self.discarded += 1
                discarded = self.discarded
            log.warning("discarded a model instance after a fault (%d so far in this pool): %s", discarded, exc)
            raise
        finally:
            if healthy:
                self._idle.put(instance)
            else:
                self._vacate()

    def has_idle(self) -> bool:
        """Whether a run could start now without waiting for another to end (a hint: others race for it)."""
        return not self._idle.empty() or self.created + self._vacant < self._size

    def _vacate(self) -> None:
        with self._lock:
            self.created -= 1
            self._vacant += 1
        self._idle.put(None)

    def _acquire(self) -> Runner:
        try:
            instance = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                grow = self.created + self._vacant < self._size
                if grow:
                    self.created += 1
            if grow:
                return self._build()
            instance = self._idle.get()
        if instance is not None:
            return instance
        with self._lock:  # a vacancy left by a discarded instance: fill it
            self._vacant -= 1
            self.created += 1
        return self._build()

    def _build(self) -> Runner:
        """A new instance for a slot already counted in `created`; on failure the slot becomes a vacancy."""
        try:
            with self._not_counted():
                return self._factory()
        except BaseException:
            self._vacate()
            raise


class LoadedModel:
    """One model version ready for requests, with its v2 metadata answer precomputed.

    Requests reach the pool in one of two ways: each alone in one of the version's execution slots
    (the default), or through a `Batcher` (whose threads are the version's too) when the model has
    dynamic batching and every tensor of it is batched along axis 0 (a model with an unbatched
    tensor cannot merge requests, so it runs them alone). Either way a version never has more
    runs going than it has instances, and never takes a thread another model needs.
    """

    def __init__(self, version: ModelVersion, all_versions: Sequence[str], inputs: list[TensorMeta],
                 outputs: list[TensorMeta], pool: InstancePool, metrics: Metrics, stamp: tuple[int, int],
                 settings: ModelSettings, instance_bytes: int = 0, inline_deadline: float | None = None,
                 interruptible: bool = False, demoter: Demoter | None = None, config: ModelConfig | None = None,
                 labels: dict[str, list[str]] | None = None):
        # `version` is the name clients use (a desired state's "1.1.0", else the directory's number), `number` the
        # directory's
        self.name, self.version, self.number = version.name, version.version_name, version.version
        self.path, self.platform = version.path, PLATFORMS[version.format]
        self.backend = BACKENDS[version.format]
        self.config = config or ModelConfig()  # as its config.json or config.pbtxt gave it
        self.labels = labels or {}  # output → its classes' labels (classification extension)
        self.stamp = stamp  # of the file as it was before it was read: a rewrite during the load shows
        self.inputs, self.outputs = inputs, outputs
        # Triton's reshape: name → (the other side's shape without the batch, whether a batch dim leads), for the
        # inputs (to the module's shape, before the run) and the outputs (to the client's dims, after it)
        leads = {t.name: t.spec.batch_axis == 0 for t in (*inputs, *outputs)}
        self._to_module = {t.name: (t.reshape, leads[t.name]) for t in self.config.inputs if t.reshape is not None}
        self._to_client = {t.name: (t.dims, leads[t.name]) for t in self.config.outputs if t.reshape is not None}
        self.versions = list(all_versions)
        self.pool, self.metrics, self.settings = pool, metrics, settings
        self._input_types = {t.name: t.datatype for t in inputs}
        self._input_specs = {t.name: t.spec for t in inputs}
        self._output_names = {t.name for t in outputs}
        self._output_types = {t.name: t.datatype for t in outputs}
        # The input whose leading dim is the batch; a leading symbolic dim (--input-shape x=2..8,4, ABI version 3)
        # is a size of the one run, not a batch of samples that requests could merge.
        self._batched = next((t.name for t in inputs if t.spec.batch_axis == 0), None)
        self.sample_seconds = float("inf")  # moving average of a run's time per sample; unknown at first
        # Symbolic dims: a run's cost grows with its sizes, so each input that has them counts its elements against
        # those at the ranges' smallest (_samples); the smallest sizes are one "sample".
        self._smallest = {t.name: math.prod(t.spec.ranges[a][0] if a in t.spec.ranges else d
                                            for a, d in enumerate(t.shape)) for t in inputs if t.spec.ranges}
        self.last_used = time.monotonic()  # for least-recently-used eviction under the memory budget
        self.inline, self.inline_deadline = True, inline_deadline  # see INLINE_DEADLINE_SECONDS
        self._excused_at = -math.inf  # when an inline overrun was last put down to preemption (monotonic)
        self.interruptible = interruptible  # a wasm run can be stopped at a request's deadline
        # Memory it holds: the model file (compiled code is mapped from the cache, weights sit in the
        # module's data) plus each instance's own memory.
        self._file_bytes, self._instance_bytes = _size_of(version.path), instance_bytes
        # --max-concurrency: requests in flight (running or waiting), past which more get 429
        self._in_flight = threading.BoundedSemaphore(settings.max_concurrency) if settings.max_concurrency else None
        # The version's execution slots: threads of its own, one per instance, started as requests need
        # them, for REST's requests (from the event loop) and gRPC's calls (whose threads wait here) alike,
        # so that a long run's thread can be demoted (workers.py). No explicit shutdown: requests that
        # looked the version up just before it was dropped still run here, and the threads end once the
        # version is collected.
        def demoted(name: str = self.name, version: str = self.version) -> None:  # holds no reference to self
            metrics.demotion(name, version)

        self._workers = ModelWorkers(settings.instance_count, f"{self.name}-{self.version}", demoter, demoted)

        def opened(name: str = self.name, version: str = self.version) -> None:
            metrics.breaker_opened(name, version)

        self.breaker = FaultBreaker(settings.fault_breaker, self.name, self.version, opened)
        self.batcher: Batcher | None = None
        can_batch = bool(inputs) and all(t.spec.batch_axis == 0 for t in (*inputs, *outputs))
        if settings.batching_delay_us is not None and can_batch and (settings.max_batch or 2) > 1:
            self.batcher = Batcher(self._run, settings.preferred_batch or settings.max_batch or 64,
                                   settings.batching_delay_us / 1e6,
                                   settings.instance_count, f"{self.name}-{self.version}",
                                   lambda size, waited: metrics.batch(self.name, self.version, size, waited),
                                   demoter, demoted)
        self.metadata = {"name": self.name, "versions": self.versions, "platform": self.platform,
                         "inputs": [t.as_json() for t in inputs], "outputs": [t.as_json() for t in outputs]}
        self.metadata_json = orjson.dumps(self.metadata)
        self.triton_config_json = orjson.dumps(self.triton_config())

    def triton_config(self) -> dict[str, Any]:
        """The configuration this version is served with, as Triton's model configuration extension answers it
        (its ModelConfig in JSON): what the module, its config file and the server's flags make of it, never
        a field we do not honour. Dims leave out the batch when max_batch_size > 0, as in Triton."""
        batched = bool(self.settings.max_batch) and self.config.max_batch_size != 0 and all(
            t.spec.batch_axis == 0 for t in (*self.inputs, *self.outputs))

        declared = {t.name: t for t in (*self.config.inputs, *self.config.outputs)}

        def tensor(meta: TensorMeta) -> dict[str, Any]:
            entry: dict[str, Any] = {"name": meta.name, "data_type": config_type(meta.datatype),
                                     "dims": meta.shape[1:] if batched else meta.shape}
            given = declared.get(meta.name)
            if given is not None and given.format not in ("", "FORMAT_NONE"):
                entry["format"] = given.format
            if given is not None and given.reshape is not None:
                entry["reshape"] = {"shape": list(given.reshape)}
            if meta.name in self.labels:
                entry["label_filename"] = self.config.labels_file(meta.name)
            return entry

        policy = self.config.version_policy
        config: dict[str, Any] = {
            "name": self.name, "platform": self.platform, "backend": self.backend,
            "version_policy": policy.as_json() if policy is not None else {"all": {}},
            "max_batch_size": self.settings.max_batch if batched else 0,
            "input": [tensor(t) for t in self.inputs], "output": [tensor(t) for t in self.outputs],
            "instance_group": [{"name": self.name, "kind": "KIND_CPU", "count": self.settings.instance_count}]}
        if self.batcher is not None:
            config["dynamic_batching"] = {
                "preferred_batch_size": [self.batcher.max_batch] if self.settings.preferred_batch else [],
                "max_queue_delay_microseconds": self.settings.batching_delay_us}
        return config

    def check(self, request: InferRequest) -> None:
        """Refuse, in v2 terms, what the backend would refuse in numpy terms (and what it would not see)."""
        if request.datatypes != self._input_types:  # one comparison where every input is there with its datatype
            self._check_inputs(request)
        for output in request.outputs or ():
            if output.name not in self._output_names:
                raise BadRequest(f"model {self.name!r} has no output {output.name!r}; its outputs are "
                                 f"{', '.join(repr(t.name) for t in self.outputs)}")
            if output.classification and self._output_types[output.name] == "BYTES":
                raise BadRequest(f"output {output.name!r}: classification needs a numeric output; model "
                                 f"{self.name!r} gives BYTES")
        limit, batches = self.settings.max_tensor_elements, set()
        for name, array in request.inputs.items():
            spec = self._input_specs[name]
            expected, shape = spec.shape, array.shape
            if len(shape) != len(expected):
                self._wrong_shape(name, spec, shape)
            for want, dim in zip(expected, shape, strict=True):  # a plain loop: any() over a generator costs more
                if want != dim and want != -1:
                    self._wrong_shape(name, spec, shape)
            if array.size > limit:
                raise BadRequest(f"input {name!r} has {array.size} elements; this server takes at most {limit} "
                                 "per tensor (--max-tensor-elements)")
            if spec.batch_axis == 0:
                batches.add(shape[0])
        if len(batches) > 1:
            raise BadRequest(f"model {self.name!r}: the inputs have different batch sizes {sorted(batches)}")
        max_batch = self.settings.max_batch
        if batches and max_batch is not None and not 1 <= max(batches) <= max_batch:
            raise BadRequest(f"model {self.name!r} version {self.version}: batch {max(batches)} is outside "
                             f"1..{max_batch} (its max_batch_size)")

    def _wrong_shape(self, name: str, spec: TensorSpec, shape: tuple[int, ...]) -> NoReturn:
        raise BadRequest(f"input {name!r}: expected shape {spec.shown()}{_legend(spec)} for model "
                         f"{self.name!r}, got {list(shape)}")

    def _check_inputs(self, request: InferRequest) -> None:
        """The request's inputs are not the model's, by name or datatype: say which."""
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

    def _batch(self, inputs: dict[str, np.ndarray]) -> int:
        array = inputs.get(self._batched) if self._batched else None
        return int(array.shape[0]) if array is not None and array.ndim else 1

    def _samples(self, inputs: dict[str, np.ndarray]) -> float:
        """A run's work in samples, what `sample_seconds` is per: its batch, or with symbolic dims how many times
        the smallest sizes' elements its inputs have (a run at the largest of widths 32..1280 is 40 at the
        smallest), so that a large size is not run on the event loop because small ones were quick there."""
        if not self._smallest:
            return self._batch(inputs)
        sizes = [inputs[name].size / max(1, smallest) for name, smallest in self._smallest.items() if name in inputs]
        return max([1.0, *sizes])

    def is_quick(self, inputs: dict[str, np.ndarray], limit: float = INLINE_SECONDS) -> bool:
        """Whether this run is expected to take under `limit`, short enough to run on the caller's thread (the
        event loop, a gRPC thread), and an instance is free for it at once."""
        return (self.inline and self.batcher is None and self.sample_seconds * self._samples(inputs) < limit
                and self.pool.has_idle())

    def _run_quick(self, inputs: dict[str, np.ndarray], caller: str, limit: float,
                   phases: Phases | None = None) -> dict[str, np.ndarray] | None:
        """A quick run on the caller's thread, stopped at the inline deadline; None when it must run on the
        version's threads instead (it is not quick, or it just ran past that deadline)."""
        if not self.is_quick(inputs, limit):
            return None
        cpu = time.thread_time() if self.inline_deadline is not None else 0.0
        try:
            return self._run(inputs, self.inline_deadline, phases, inline=True)
        except DeadlineExceeded:
            if self.inline_deadline is None:
                raise
            self._overran(caller, time.thread_time() - cpu)
        return None

    def _overran(self, caller: str, cpu_seconds: float) -> None:
        """A run on the caller's thread was stopped at the inline deadline, having used `cpu_seconds` of CPU: move
        the model to its worker threads for good, unless the overrun was the machine's (PREEMPTED_CPU_SECONDS)."""
        assert self.inline_deadline is not None
        now = time.monotonic()
        if cpu_seconds < PREEMPTED_CPU_SECONDS and now - self._excused_at >= PREEMPTION_EXCUSE_SECONDS:
            self._excused_at = now
            log.info("model %s version %s ran past %g ms on %s after %.3g ms of CPU (its thread was preempted or "
                     "waited for the GIL); this request runs on a worker thread, later ones still on %s",
                     self.name, self.version, self.inline_deadline * 1000, caller, cpu_seconds * 1000, caller)
            return
        self.inline = False
        log.warning("model %s version %s ran past %g ms on %s; it runs on worker threads from now on",
                    self.name, self.version, self.inline_deadline * 1000, caller)

    def footprint(self) -> int:
        """Bytes this version holds now (an estimate: see __init__)."""
        return self._file_bytes + self._instance_bytes * self.pool.created

    def _admit(self) -> bool:
        """Take the request in, or refuse it (its breaker, --max-concurrency); True when it is its breaker's trial."""
        self.last_used = time.monotonic()
        trial = self.breaker.admit()
        if self._in_flight is not None and not self._in_flight.acquire(blocking=False):
            if trial:
                self.breaker.trial_ended()
            raise TooManyRequests(f"model {self.name!r} version {self.version} has {self.settings.max_concurrency} "
                                  "requests in flight, its limit (--max-concurrency); retry later")
        return trial

    def _release(self, trial: bool = False) -> None:
        if self._in_flight is not None:
            self._in_flight.release()
        if trial:
            self.breaker.trial_ended()

    def infer(self, inputs: dict[str, np.ndarray], deadline: Deadline | None = None,
              phases: Phases | None = None) -> dict[str, np.ndarray]:
        """Run one request, batched with others when the model batches (blocking; gRPC's threads call it,
        run a model whose runs take under GRPC_INLINE_SECONDS themselves, and otherwise wait while the
        run goes to the version's threads or its batcher's).

        Still queued at its deadline, it is withdrawn and answered DEADLINE_EXCEEDED; once running,
        a wasm run is stopped at the deadline and other runs finish. `phases` gets the time it queued and the
        time of the run that served it."""
        trial = self._admit()
        try:
            outputs = self._run_quick(inputs, "a gRPC thread", GRPC_INLINE_SECONDS, phases)
            if outputs is not None:
                return outputs
            future = self._submit(inputs, deadline, phases, trial)
            if deadline is not None:
                try:
                    return future.result(timeout=max(0.0, deadline.remaining()))
                except TimeoutError:
                    if future.cancel():
                        raise self._expired(deadline) from None
            return future.result()
        finally:
            self._release(trial)

    async def infer_async(self, inputs: dict[str, np.ndarray], deadline: Deadline | None = None,
                          phases: Phases | None = None) -> dict[str, np.ndarray]:
        """The same for the event loop: short runs inline, the rest on the version's threads or its batcher."""
        trial = self._admit()
        try:
            outputs = self._run_quick(inputs, "the event loop", INLINE_SECONDS, phases)
            if outputs is not None:
                return outputs
            future = self._submit(inputs, deadline, phases, trial)
            if deadline is None:
                return await asyncio.wrap_future(future)
            # At the deadline, withdraw the run if it is still queued (a no-op once it runs): one timer,
            # cheaper on every request than asyncio.wait's waiter and callbacks.
            timer = asyncio.get_running_loop().call_later(max(0.0, deadline.remaining()), future.cancel)
            try:
                return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if future.cancelled() and (task is None or not task.cancelling()):  # the timer's, not the client's
                    raise self._expired(deadline) from None
                raise
            finally:
                timer.cancel()
        finally:
            self._release(trial)

    def _submit(self, inputs: dict[str, np.ndarray], deadline: Deadline | None,
                phases: Phases | None = None, trial: bool = False) -> Future[dict[str, np.ndarray]]:
        """Queue the run on the batcher or the version's own threads; the future can be cancelled while queued."""
        if self.batcher is not None:
            return self.batcher.submit(inputs, self._batch(inputs), phases)
        future: Future[dict[str, np.ndarray]] = self._workers.submit(self._run_in_slot, inputs, deadline, phases,
                                                                     time.perf_counter(), trial)
        return future

    def _run_in_slot(self, inputs: dict[str, np.ndarray], deadline: Deadline | None, phases: Phases | None = None,
                     queued_at: float = 0.0, trial: bool = False) -> dict[str, np.ndarray]:
        """Run on one of the version's threads (its slot); a wasm run gets only what is left of the deadline, and
        none if the version's fault breaker opened while the request queued (unless it is the breaker's trial)."""
        if phases is not None:
            phases.queue = time.perf_counter() - queued_at
        self.breaker.may_run(trial)
        if deadline is None:
            return self._run(inputs, None, phases)
        remaining = deadline.remaining()
        if remaining <= 0:  # its withdrawal lost the race with this thread by a hair
            raise self._expired(deadline)
        try:
            return self._run(inputs, remaining if self.interruptible else None, phases)
        except DeadlineExceeded:
            raise DeadlineExceeded(f"model {self.name!r} version {self.version} ran past its deadline of "
                                   f"{deadline.seconds * 1000:g} ms and was stopped") from None

    def _expired(self, deadline: Deadline) -> DeadlineExceeded:
        return DeadlineExceeded(f"model {self.name!r} version {self.version}: the request waited for a free "
                                f"instance until its deadline of {deadline.seconds * 1000:g} ms passed and was "
                                "not run (the model's instances are busy)")

    def close(self) -> None:
        """Called when the version is dropped; requests already queued still run."""
        if self.batcher is not None:
            self.batcher.close()

    def _run(self, inputs: dict[str, np.ndarray], deadline_seconds: float | None = None,
             phases: Phases | None = None, inline: bool = False) -> dict[str, np.ndarray]:
        """Run on a pooled instance (blocking); its time goes to `phases` (the batcher times its own runs). Its
        outcome goes to the version's fault breaker, except a run stopped at the event loop's short deadline
        (`inline`), which runs again on the version's threads."""
        started = time.perf_counter()
        try:
            outputs = self.pool.run(_reshaped(inputs, self._to_module) if self._to_module else inputs,
                                    deadline_seconds)
            if self._to_client:
                outputs = _reshaped(outputs, self._to_client)
        except InputError as exc:
            raise BadRequest(f"model {self.name!r} version {self.version}: {exc}") from None
        except ServingError:
            raise
        # The module's own failures: expected of untrusted code, already logged by the pool in one
        # line, and no traceback of ours would explain them.
        except RunDeadlineExceeded as exc:
            if not inline:
                self.breaker.faulted("ran past its deadline", str(exc))
            raise DeadlineExceeded(f"model {self.name!r} version {self.version} ran past its deadline of "
                                   f"{exc.deadline_seconds * 1000:g} ms and was stopped") from None
        except ModelFault as exc:
            self.breaker.faulted(_fault_kind(exc), str(exc))
            raise Internal(f"model {self.name!r} version {self.version} failed and its instance was discarded: "
                           f"{exc}") from None
        except Exception as exc:
            log.exception("model %s version %s failed", self.name, self.version)
            raise Internal(f"model {self.name!r} version {self.version} failed: {exc}") from None
        elapsed = time.perf_counter() - started
        self.breaker.succeeded()
        per_sample = elapsed / max(1, self._samples(inputs))
        previous = self.sample_seconds  # races between threads only blur the average
        self.sample_seconds = per_sample if previous == float("inf") else 0.8 * previous + 0.2 * per_sample
        self.metrics.inference(self.name, self.version, elapsed, self._batch(inputs))
        if phases is not None:
            phases.infer = elapsed
        return outputs

    def classified(self, request: InferRequest, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The classification extension: each output the request asks `classification: k` of becomes its top k
        classes as BYTES "value:index[:label]" (per sample when the output is batched), as Triton answers."""
        wanted = [o for o in request.outputs or () if o.classification]
        if not wanted:
            return outputs
        outputs = dict(outputs)
        batch_axes = {t.name: t.spec.batch_axis for t in self.outputs}
        for output in wanted:
            outputs[output.name] = classify(outputs[output.name], output.classification,
                                            self.labels.get(output.name), batch_axes[output.name] == 0)
        return outputs


@dataclass
class _Record:
    state: str  # LOADING, READY, UNAVAILABLE
    reason: str
    done: threading.Event
    model: LoadedModel | None = None


class ModelManager:
    """Which model versions are loaded, loading them on first use or on request.

    With a memory budget, loading a version that takes the loaded total over it evicts the
    least recently used other versions until it fits (the new one stays even if it alone is
    over). An evicted version is not "unloaded": its next request loads it again and waits.
    """

    def __init__(self, repository: Repository, metrics: Metrics, pool_size: int,
                 cache: CompiledCache | None = None, defaults: ServingDefaults | None = None,
                 memory_budget_bytes: int = 0, *, deadline_seconds: float | None = None,
                 memory_limit_bytes: int | None = None, demote_after_seconds: float | None = None,
                 lazy: bool = True, control_mode: str = "lazy"):
        self.repository, self.metrics, self.pool_size = repository, metrics, pool_size
        # lazy: a request for a version that is not loaded loads it (and waits); otherwise only start-up, the
        # repository API or the poller load (control.py), and such a request is 503 naming `control_mode`.
        self.lazy, self.control_mode = lazy, control_mode
        # Every model's runs that used this much CPU yield it to shorter ones (workers.py); None: never.
        self.demoter = Demoter(demote_after_seconds) if demote_after_seconds is not None else None
        # Per wasm call and per wasm instance (None: off); ONNX Runtime and LiteRT models have neither.
        self.deadline_seconds, self.memory_limit_bytes = deadline_seconds, memory_limit_bytes
        self.defaults = defaults or ServingDefaults(pool_size=pool_size)
        self.memory_budget_bytes = memory_budget_bytes  # 0: no budget
        metrics.memory_source = self.memory_by_model
        metrics.memory_budget_bytes = memory_budget_bytes
        self.cache = cache or CompiledCache(None)
        # Shared by every wasm model (compiled code is per engine); the interrupt checks a deadline
        # needs cost a few percent, so without a deadline they are left out.
        self.engine = make_engine(interruptible=deadline_seconds is not None)
        self._lock = threading.Lock()
        self._records: dict[tuple[str, int], _Record] = {}
        self._unloaded: set[str] = set()
        # The lock-free fast path: (name, version as requested, "" for the default) → ready model.
        self._ready: dict[tuple[str, str], LoadedModel] = {}
        self._canaries: dict[str, tuple[LoadedModel, float]] = {}  # name → (candidate, share of default traffic)

    def deadline(self, client_seconds: float | None = None) -> Deadline | None:
        """A request's deadline from now: --deadline-ms, or the client's own if sooner (a gRPC deadline).

        None when neither is set: the request then waits for its model however long that takes."""
        limits = [seconds for seconds in (self.deadline_seconds, client_seconds) if seconds is not None]
        return Deadline.after(min(limits)) if limits else None

    # --- lookups -------------------------------------------------------------------------------

    def lookup(self, name: str, version: str) -> LoadedModel | None:
        """The ready model for this request, without blocking; None when it needs `get`.

        During a canary, a request for the default version goes to the candidate with the
        canary's probability (requests naming a version get that version)."""
        if self._canaries and not version:
            canary = self._canaries.get(name)
            if canary is not None and random.random() < canary[1]:
                return canary[0]
        return self._ready.get((name, version))

    def start_canary(self, name: str, candidate: LoadedModel, fraction: float) -> None:
        self._canaries[name] = (candidate, fraction)

    def end_canary(self, name: str) -> None:
        self._canaries.pop(name, None)

    def _servable(self, name: str) -> dict[int, ModelVersion]:
        """The model's versions on disk that its config's version_policy serves (every one, without a policy).
        A config that cannot be read serves them all here: loading the version then fails, saying why."""
        versions = self.repository.versions(name)
        if not versions:
            return versions
        try:
            policy = load_model_config(self.repository.root / name, self.cache.directory).version_policy
        except ConfigError:
            return versions
        if policy is None:
            return versions
        served = set(policy.select(versions))
        return {number: found for number, found in versions.items() if number in served}

    def resolve(self, name: str, version: str) -> ModelVersion:
        on_disk = self.repository.versions(name)
        if not on_disk:
            raise NotFound(f"unknown model {name!r}")
        versions = self._servable(name)
        if not versions:
            raise NotFound(f"model {name!r}: its version_policy serves none of the versions on disk "
                           f"({', '.join(str(v) for v in on_disk)})")
        if not version:
            return versions[max(versions)]
        named = [found for found in versions.values() if found.named == version]
        if named:  # a version's name (its `version` file): the newest directory of that name
            return named[-1]
        # No version has more than 18 digits (int64); more than 4,300 would be a ValueError from int() itself.
        number = int(version) if version.isascii() and version.isdigit() and len(version) <= 18 else -1
        if number in on_disk and number not in versions:
            raise NotFound(f"model {name!r} version {version} is not served: its version_policy serves "
                           f"{', '.join(_names(versions.values()))}")
        if number not in versions:
            raise NotFound(f"model {name!r} has no version {version!r}; it has "
                           f"{', '.join(_names(versions.values()))}")
        return versions[number]

    def get(self, name: str, version: str = "") -> LoadedModel:
        """The ready model, loading it first if it is not (the caller waits for the load)."""
        model = self.lookup(name, version)
        if model is not None:
            return model
        if name in self._unloaded and self.repository.versions(name):
            raise Unavailable(f"model {name!r} is unloaded; load it with POST /v2/repository/models/{name}/load")
        target = self.resolve(name, version)
        if not self.lazy and (name, target.version) not in self._records:
            raise Unavailable(f"model {name!r} version {target.version_name} is not loaded (--model-control-mode "
                              f"{self.control_mode} loads models at start-up"
                              + (f"; load it with POST /v2/repository/models/{name}/load)" if
                                 self.control_mode == "explicit" else ")"))
        self.metrics.cache_miss()
        model = self._load(target)
        with self._lock:
            record = self._records.get((name, target.version))
            if record is not None and record.model is model:  # still current: remember the alias
                self._ready[(name, version)] = model
        return model

    def loads_quickly(self, name: str, version: str = "") -> bool:
        """Whether `get` would load this model in about a millisecond, without compiling or waiting for
        another request's load: a module under QUICK_LOAD_BYTES whose compiled code the cache maps.

        Such a load runs on the caller's thread. On a load thread it took p99 ~40 ms under traffic
        where it takes 1-2 ms alone: each of its steps releases the GIL (a stat, an mmap, a wasmtime
        call) and waits to get it back behind the event loop, which hands it over every 5 ms."""
        try:
            target = self.resolve(name, version)
        except NotFound:
            return True  # answered at once (404)
        if (target.format != "wasm" or (name, target.version) in self._records or not self.lazy
                or name in self._unloaded):
            return False
        try:
            small = target.path.stat().st_size < QUICK_LOAD_BYTES
        except OSError:
            return True  # the load fails at once, naming why
        return small and self.cache.has_file(self.engine, target.path)

    def is_ready(self, name: str, version: str = "") -> bool:
        """Readiness without loading: a probe must not trigger cold starts."""
        return not self.unready_reason(name, version)

    def unready_reason(self, name: str, version: str = "") -> str:
        """Why the version is not ready, "" when it is: not loaded (without loading it: a probe must not trigger
        cold starts), or its fault breaker refuses its requests."""
        model = self.lookup(name, version)
        if model is None:
            target = self.resolve(name, version)
            record = self._records.get((name, target.version))
            model = record.model if record is not None and record.state == "READY" else None
        if model is None:
            return "not loaded"
        return model.breaker.unready_reason()

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
            raise Unavailable(f"model {target.name!r} version {target.version_name} is not available: "
                              f"{record.reason}")
        return record.model

    def _build(self, target: ModelVersion, record: _Record) -> None:
        started = time.perf_counter()
        label = target.version_name
        evicted: list[tuple[tuple[str, int], LoadedModel]] = []
        try:
            model = self._open(target)
        except Exception as exc:  # any failure of a model file is that model's, not the server's
            log.warning("loading model %s version %s from %s failed: %s", target.name, label,
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
                    evicted = self._fit_budget(keep=(target.name, target.version))
        finally:
            record.done.set()
        # Only now, with the requests that waited for this load on their way: logging the evictions and freeing
        # the evicted versions (their instances' stores and memories go with the last reference, as this returns)
        # take system calls, each of which hands the GIL over and may wait for it behind the event loop.
        for key, dropped in evicted:
            log.info("evicted model %s version %s (%d bytes) to fit the memory budget of %d bytes", key[0], key[1],
                     dropped.footprint(), self.memory_budget_bytes)

    def _fit_budget(self, keep: tuple[str, int]) -> list[tuple[tuple[str, int], LoadedModel]]:
        """Evict least-recently-used ready versions (lock held) until the loaded total fits the budget; the
        evicted, for the caller to let go of (and log) once it has released the requests waiting for it."""
        if not self.memory_budget_bytes:
            return []
        loaded = {key: r.model for key, r in self._records.items() if r.model is not None}
        total = sum(model.footprint() for model in loaded.values())
        evicted = []
        for key, model in sorted(loaded.items(), key=lambda item: item[1].last_used):
            if total <= self.memory_budget_bytes:
                break
            if key == keep:
                continue
            total -= model.footprint()
            self._drop(key)
            self.metrics.eviction(key[0], model.version)
            evicted.append((key, model))
        return evicted

    def memory_by_model(self) -> dict[tuple[str, str], int]:
        """Bytes held per loaded (model, version), for the metrics."""
        return {(name, record.model.version): record.model.footprint() for (name, _), record
                in list(self._records.items()) if record.model is not None}

    def _open(self, target: ModelVersion) -> LoadedModel:
        info: ModelInfo
        stamp = file_stamp(target.path)
        config = load_model_config(target.path.parent.parent, self.cache.directory)
        compiled_max_batch: int | None = None
        instance_bytes = 0
        inline_deadline = None
        interruptible = False
        if target.format == "wasm":
            compiled = self.cache.load_file(self.engine, target.path)
            refuse_lists(compiled[1])
            compiled_max_batch, instance_bytes = compiled[1].max_batch, compiled[1].memory_bytes
            engine = self.engine
            if self.deadline_seconds is not None:
                inline_deadline = min(INLINE_DEADLINE_SECONDS, self.deadline_seconds)
                interruptible = True

            def factory() -> Runner:
                return WasmModel(b"", engine, compiled=compiled, deadline_seconds=self.deadline_seconds,
                                 memory_limit_bytes=self.memory_limit_bytes)

            info = model_info(compiled[1])
        elif target.format == "tflite":
            # a model whose backend is not installed fails its own load, naming the extra; the others carry on
            with extra_needed("litert", f"{target.path.name} of model {target.name!r}", RuntimeError):
                from wasinfer.runtime.litert import LiteRtModel

            # An interpreter is not thread-safe: each pooled instance gets its own (sharing the bytes).
            first = [LiteRtModel(target.path, name=target.name)]
            template = first[0]

            def factory() -> Runner:
                return first.pop() if first else template.spawn()

            info = template.info
        else:
            # a model whose backend is not installed fails its own load, naming the extra; the others carry on
            with extra_needed("compiler", f"{target.path.name} of model {target.name!r}", RuntimeError):
                from wasinfer.runtime.onnxruntime import OnnxRuntimeModel

            session = OnnxRuntimeModel(target.path, name=target.name)

            def factory() -> Runner:
                return session

            info = session.info
        settings = settings_for(config, self.defaults, compiled_max_batch)
        inputs, outputs = [TensorMeta.of(s) for s in info.inputs], [TensorMeta.of(s) for s in info.outputs]
        batched = bool(config.max_batch_size)  # Triton's dims leave the batch out then
        for kind, declared, tensors in (("input", config.inputs, inputs), ("output", config.outputs, outputs)):
            check_tensors(config, kind, declared, [(t.name, t.datatype, t.shape[1:] if batched and
                                                    t.spec.batch_axis == 0 else t.shape) for t in tensors], batched)
        # a reshaped tensor is served with the config's dims: what clients send and get (metadata, checks)
        reshaped = {t.name: t for t in (*config.inputs, *config.outputs) if t.reshape is not None}
        inputs, outputs = ([_as_client_sees(t, reshaped.get(t.name), batched) for t in tensors]
                           for tensors in (inputs, outputs))
        labels = _labels(target.path.parent.parent, config, [t.name for t in outputs])
        pool = InstancePool(factory, settings.instance_count,
                            self.demoter.not_counted if self.demoter is not None else nullcontext)
        versions = _names(self._servable(target.name).values()) or [target.version_name]
        return LoadedModel(target, versions, inputs, outputs, pool, self.metrics, stamp, settings,
                           instance_bytes, inline_deadline, interruptible, self.demoter, config, labels)

    # --- the repository extension --------------------------------------------------------------

    def load(self, name: str) -> LoadedModel:
        """Load (or reload, if its file changed) the model's highest version and make it the default. Without lazy
        loading, also every other version its version_policy serves (a request cannot load one), and versions it
        no longer serves are dropped. A version that fails is Unavailable, naming why."""
        target = self.resolve(name, "")
        servable = self._servable(name)
        others = [] if self.lazy else [found for number, found in servable.items() if number != target.version]
        with self._lock:
            self._unloaded.discard(name)
            for found in (*others, target):
                self._forget_if_stale(found)
            if not self.lazy:
                for key in [key for key in self._records if key[0] == name and key[1] not in servable]:
                    self._drop(key)
            self._ready.pop((name, ""), None)
        for found in others:
            self._load(found)
        model = self._load(target)
        with self._lock:
            self._ready[(name, "")] = model
        return model

    def _forget_if_stale(self, found: ModelVersion) -> None:
        """Drop a loaded version whose file was rewritten, forget a failed load (lock held): the next load is anew."""
        key = (found.name, found.version)
        record = self._records.get(key)
        if record is not None and record.model is not None and (
                record.model.path != found.path or record.model.stamp != file_stamp(found.path)
                or record.model.version != found.version_name):
            self._drop(key)
        elif record is not None and record.state == "UNAVAILABLE":
            del self._records[key]

    def check_repository_api(self, action: str, name: str) -> None:
        """The repository API's load and unload, refused where the control mode owns loading (as in Triton)."""
        if self.control_mode in ("none", "poll"):
            raise BadRequest(f"cannot {action} model {name!r}: with --model-control-mode {self.control_mode} the "
                             "server " + ("loads every model at start-up" if self.control_mode == "none" else
                                          "follows the repository on disk") + "; explicit load and unload need "
                             "--model-control-mode explicit (or lazy)")

    # --- updates: load a candidate beside the serving version, then swap in one step -------------

    def load_candidate(self, name: str, version: int) -> LoadedModel:
        """Load one version without making it the default (the caller warms it up first)."""
        return self._load(self.resolve(name, str(version)))

    def make_default(self, name: str, model: LoadedModel) -> None:
        """The swap: one dict assignment, so each request sees the old model or the new, never neither."""
        with self._lock:
            self._unloaded.discard(name)
            self._ready[(name, "")] = model

    def drop_version(self, name: str, version: int) -> None:
        """Forget a version; requests already running on it finish (they hold their model)."""
        with self._lock:
            if (name, version) in self._records:
                self._drop((name, version))

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
                      and model.number == key[1]]:
            del self._ready[alias]
        if record.model is not None:
            record.model.close()
            self.metrics.model_loaded(-1)

    def statistics(self, name: str = "", version: str = "") -> list[dict[str, Any]]:
        """Triton's statistics (metrics.Metrics.statistics) of every model version loaded or counted, of a model's,
        or of one version; from memory, never loading anything. An unknown model or version is NotFound."""
        with self._lock:
            known = {(n, record.model.version) for (n, _), record in self._records.items() if record.model is not None}
        known |= self.metrics.counted_versions()
        if name:
            known = {key for key in known if key[0] == name}
            if version:
                known = {(name, self.resolve(name, version).version_name)}
            elif not known and not self.repository.versions(name):
                raise NotFound(f"unknown model {name!r}")
        # numbers in order, then names ("1.1.0") in theirs
        return [self.metrics.statistics(n, v) for n, v in sorted(known, key=lambda key: (
            key[0], not key[1].isdigit(), int(key[1]) if key[1].isdigit() and len(key[1]) <= 18 else 0, key[1]))]

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """Every version on disk with its state; loaded versions whose files went away too."""
        entries: dict[tuple[str, int], dict[str, str]] = {}
        not_loaded = "not loaded yet (loads on first request)" if self.lazy else \
            f"not loaded (--model-control-mode {self.control_mode})"
        for name in self.repository.model_names():
            served = self._servable(name)
            for version, found in self.repository.versions(name).items():
                reason = "unloaded" if name in self._unloaded else not_loaded if \
                    version in served else "not served: its config's version_policy leaves it out"
                entries[(name, version)] = {"name": name, "version": found.version_name, "state": "UNAVAILABLE",
                                            "reason": reason}
        for (name, version), record in list(self._records.items()):
            shown = record.model.version if record.model is not None else entries.get(
                (name, version), {}).get("version", str(version))
            entries[(name, version)] = {"name": name, "version": shown, "state": record.state,
                                        "reason": record.reason}
        rows = [entries[key] for key in sorted(entries)]
        return [row for row in rows if row["state"] == "READY"] if ready_only else rows


def _fault_kind(fault: ModelFault) -> str:
    """A fault other than a deadline, in the words the fault breaker's refusals list faults by."""
    if isinstance(fault, MemoryLimitExceeded):
        return "hit its memory cap"
    if "stack" in str(fault).lower():  # wasmtime's "call stack exhausted"
        return "exhausted its stack"
    return "trapped"


def _as_client_sees(meta: TensorMeta, declared: TensorConfig | None, batched: bool) -> TensorMeta:
    """A tensor its config reshapes, as clients see it: the config's dims, after the batch when it has one."""
    if declared is None or declared.reshape is None:
        return meta
    lead = [-1] if batched and meta.spec.batch_axis == 0 else []
    shape = [*lead, *declared.dims]
    return TensorMeta(meta.name, meta.datatype, shape, TensorSpec(meta.name, meta.spec.dtype, shape,
                                                                  0 if lead else None))


def _reshaped(tensors: dict[str, np.ndarray], shapes: dict[str, tuple[tuple[int, ...], bool]]) -> dict[str, np.ndarray]:
    """Triton's reshape: each named tensor to its shape (after its batch dim when one leads); the rest as they are.
    The checks before the run made the sizes agree; a -1 in dims that does not divide is the request's error."""
    reshaped = dict(tensors)
    for name, (shape, lead) in shapes.items():
        array = tensors.get(name)
        if array is None:
            continue
        try:
            reshaped[name] = array.reshape((*array.shape[:1], *shape) if lead else shape)
        except ValueError:
            raise BadRequest(f"tensor {name!r} of shape {list(array.shape)} cannot be reshaped to "
                             f"{list(shape)} (its config's reshape)") from None
    return reshaped


def _names(versions: Iterable[ModelVersion]) -> list[str]:
    """The versions' names as clients see them, in the directories' order, each once."""
    return list(dict.fromkeys(found.version_name for found in versions))


def _legend(spec: TensorSpec) -> str:
    """What the letters in `spec.shown()` stand for, as far as it has them. (A size outside a symbolic dim's range,
    and sizes that disagree across inputs sharing a symbol, are the runtime's to refuse: InputError, a 400.)"""
    letters = [("N", "any batch size", spec.batch_axis is not None),
               ("?", "any size", any(d == -1 and a != spec.batch_axis and a not in spec.ranges
                                      for a, d in enumerate(spec.shape))),
               ("MIN..MAX", "a size in that range", bool(spec.ranges))]
    said = [f"{letter}: {meaning}" for letter, meaning, shown in letters if shown]
    return f" ({'; '.join(said)})" if said else ""


def _labels(model_dir: Path, config: ModelConfig, outputs: list[str]) -> dict[str, list[str]]:
    """Each output's class labels, one a line, from its label_filename (which must exist) or the model's labels.txt
    (if there is one): for the classification extension."""
    found = {}
    for output in outputs:
        name = config.labels_file(output)
        path = model_dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ConfigError(f"{config.source}: output {output!r} label_filename {name!r} must be a file in the "
                              "model's directory")
        try:
            found[output] = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            if name != LABELS_FILE:  # named by the config: it must be there
                raise ConfigError(f"{config.source}: output {output!r} label_filename {name!r}: no such file in "
                                  f"{model_dir}") from None
        except OSError as exc:
            raise ConfigError(f"{config.source}: output {output!r} labels {path}: cannot read it: {exc}") from None
    return found


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def file_stamp(path: Path) -> tuple[int, int]:
    """What tells a rewritten model file from the one that was loaded."""
    try:
        st = path.stat()
    except OSError:
        return (-1, -1)
    return (st.st_mtime_ns, st.st_size)
