"""Dynamic batching: requests for one model that arrive close together run as one batch.

A wasinfer module takes its batch size at run time and loops over the samples in one call,
so one call for eight samples costs one entry into wasm, one copy per tensor and one slot of
the instance pool instead of eight. The win is largest for conv models, whose per-call work
(weights packed, arena set up) is shared across the batch.

One worker thread per model instance takes the oldest waiting request, then waits until the
batch is full (`max_batch` samples) or the oldest request has waited `max_delay` seconds,
whichever is first, and runs what it has. With a delay of 0 it never waits: it batches
only what queued up while the instances were busy, so batching costs nothing at low load.
A request is never split across batches. If a batch fails, each of its requests is run
again alone, so one bad request fails by itself and its neighbours still get their answers.
A request whose future is cancelled while it waits (its caller's deadline passed) is dropped
when a worker reaches it, never run. A worker whose batch ran long enough to be demoted
(workers.py) hands its place to a fresh thread at normal priority and ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from wasinfer.serving.metrics import Phases
from wasinfer.serving.workers import Demoter

log = logging.getLogger("wasinfer.serving")

Tensors = dict[str, np.ndarray]


@dataclass
class _Pending:
    inputs: Tensors
    samples: int
    future: Future[Tensors]
    phases: Phases | None = None  # its queue and the run that serves it, for the statistics
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    """Collects requests for one model and runs them in batches on `run` (blocking, thread-safe)."""

    def __init__(self, run: Callable[[Tensors], Tensors], max_batch: int, max_delay: float, workers: int,
                 name: str, observe: Callable[[int, float], None] | None = None, demoter: Demoter | None = None,
                 on_demoted: Callable[[], None] | None = None):
        self._run, self.max_batch, self.max_delay = run, max_batch, max_delay
        self._name, self._demoter, self._on_demoted = name, demoter, on_demoted
        self._observe = observe  # (batch size in samples, seconds the oldest request waited)
        self._pending: deque[_Pending] = deque()
        self._queued_samples = 0
        self._ready = threading.Condition()
        self._closed = False
        for number in range(max(1, workers)):
            self._start_worker(number)

    def _start_worker(self, number: int, demoted: bool = False) -> None:
        """Start worker `number`; the successor of a demoted one through the demoter (which is not)."""
        thread = threading.Thread(target=self._work, args=(number,), name=f"wasinfer-batch-{self._name}-{number}",
                                  daemon=True)
        if demoted and self._demoter is not None:
            self._demoter.retire(thread)
        else:
            thread.start()

    def submit(self, inputs: Tensors, samples: int, phases: Phases | None = None) -> Future[Tensors]:
        """Queue one request of `samples` samples (at most max_batch); its outputs arrive on the future, and
        the time it queued and the time of the run that served it in `phases`."""
        future: Future[Tensors] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("the model was unloaded")
            self._pending.append(_Pending(inputs, samples, future, phases))
            self._queued_samples += samples
            self._ready.notify()
        return future

    def close(self) -> None:
        """Stop the workers once the queue is empty (requests already queued still run)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def _work(self, number: int) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if self._demoter is None:
                self._execute(batch)
                continue
            self._demoter.started()
            try:
                self._execute(batch)
            finally:
                demoted = self._demoter.finished()
            if demoted:  # this thread stays at nice 19: a fresh one takes its place
                self._start_worker(number, demoted=True)
                if self._on_demoted is not None:
                    self._on_demoted()
                return

    def _next_batch(self) -> list[_Pending] | None:
        with self._ready:
            batch: list[_Pending] = []
            while not batch:  # empty again when every request taken had been withdrawn
                while True:
                    while not self._pending:
                        if self._closed:
                            return None
                        self._ready.wait()
                    if self._queued_samples >= self.max_batch or self._closed:
                        break
                    # The oldest request sets the deadline; another worker may take it meanwhile.
                    remaining = self._pending[0].queued_at + self.max_delay - time.perf_counter()
                    if remaining <= 0:
                        break
                    self._ready.wait(remaining)
                samples = 0
                while self._pending and (not batch or samples + self._pending[0].samples <= self.max_batch):
                    item = self._pending.popleft()
                    self._queued_samples -= item.samples
                    if item.future.set_running_or_notify_cancel():  # False: withdrawn by its caller
                        batch.append(item)
                        samples += item.samples
                if self._pending:
                    self._ready.notify()  # leftovers: wake another worker instead of making them wait for us
            return batch

    def _execute(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        if self._observe is not None:
            self._observe(sum(item.samples for item in batch), started - batch[0].queued_at)
        for item in batch:
            if item.phases is not None:
                item.phases.queue = started - item.queued_at
        if len(batch) == 1:
            self._settle(batch[0], lambda: self._run(batch[0].inputs))
            return
        try:
            merged = {name: np.concatenate([item.inputs[name] for item in batch]) for name in batch[0].inputs}
            outputs = self._run(merged)
        except Exception:  # one of them is at fault: let each fail (or succeed) on its own
            log.debug("a batch of %d requests failed; running them one by one", len(batch), exc_info=True)
            for item in batch:
                self._settle(item, lambda item=item: self._run(item.inputs))  # type: ignore[misc]
            return
        ran = time.perf_counter() - started
        start = 0
        for item in batch:
            end = start + item.samples
            if item.phases is not None:
                item.phases.infer = ran
            item.future.set_result({name: array[start:end] for name, array in outputs.items()})
            start = end

    @staticmethod
    def _settle(item: _Pending, compute: Callable[[], Tensors]) -> None:
        started = time.perf_counter()
        try:
            outputs = compute()
        except BaseException as exc:
            item.future.set_exception(exc)
            return
        if item.phases is not None:
            item.phases.infer = time.perf_counter() - started
        item.future.set_result(outputs)
