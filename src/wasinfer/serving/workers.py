"""A model version's own worker threads, and why a long run on one of them gives way to short ones.

Every model runs on threads of its own (models.py), so a slow or hostile model never takes another's
thread; but it could take the others' CPU. Two runs of a model that loops until its deadline kept
both cores of a 2-core machine busy for the whole deadline, and another model's 2 ms runs waited
for the kernel to give them a core in turn: their p99 was 4x what it was alone.

A `Demoter` watches the runs on these threads. Once a run has lasted `after_seconds` (the server's
--demote-after-ms), it lowers its thread's priority to nice 19 (Linux keeps a nice value per thread).
The kernel then gives a core to any normal-priority thread that wants one first (a nice-19 thread
weighs 15 against 1024 for nice 0): the short runs of every model, the event loop, health checks and
the gRPC threads go ahead of it. A long run on a machine with nothing else to do still gets every
core it can use, so nothing is lost when no one else waits. The alternatives measured worse: a cap on
the slots a busy model may hold only acts when a run starts, and a run that loops holds its core
until its deadline; throttling a model whose runs keep hitting their deadline acts only after the
first ones have taken their cores for the whole deadline.

A process without CAP_SYS_NICE cannot lower a thread's nice value again, so a demoted thread ends
after its run and a fresh one, at normal priority, takes its place: a model whose one run was long
does not stay slow. A new thread inherits its creator's nice value, so the demoted thread cannot
start its successor itself: the demoter's own thread, never demoted, starts it. And that is why
models run only on threads of their own: a thread of grpcio's shared pool, once demoted, would
slow whatever call it served next.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("wasinfer.serving")

DEMOTED_NICE = 19  # the lowest priority a thread can have short of SCHED_IDLE
IDLE_EXIT_SECONDS = 5.0  # the watching thread ends after this long with no run to watch


@dataclass(eq=False)
class _Run:
    thread_id: int  # the kernel's id of the thread running it
    due: float  # time.monotonic() at which it is demoted
    demoted: bool = False


class Demoter:
    """Lowers to nice 19 the priority of each thread whose current run has lasted `after_seconds`.

    A run is what a thread does between `started()` and `finished()`; a thread whose run was demoted
    then calls `retire()` as it ends, with its successor. One thread watches the runs and starts those
    successors; it is started by a run (at normal priority: a demoted thread starts no run), sleeps until
    the oldest run is due, so that short runs cost it nothing but a dictionary entry (a Python thread
    that woke every few milliseconds would take the interpreter from the event loop that often), and
    ends after IDLE_EXIT_SECONDS with no run and no demoted thread left. Linux only: elsewhere
    setpriority() on a thread id is not per thread, and nothing is demoted."""

    def __init__(self, after_seconds: float):
        self.after_seconds = after_seconds
        self.enabled = sys.platform == "linux"
        self.demotions = 0  # runs demoted over the demoter's life
        self._changed = threading.Condition(threading.Lock())
        self._runs: dict[int, _Run] = {}  # by thread id: at most one run per thread at a time
        self._demoted_threads = 0  # demoted and not yet retired: each may need a successor
        self._successors: list[threading.Thread] = []  # to start at normal priority
        self._watching = False
        self._wakes_at = math.inf  # when the watching thread looks next

    def started(self) -> None:
        """The calling thread starts a run."""
        if not self.enabled:
            return
        run = _Run(threading.get_native_id(), time.monotonic() + self.after_seconds)
        with self._changed:
            self._runs[run.thread_id] = run
            if not self._watching:
                self._watching = True
                threading.Thread(target=self._watch, name="wasinfer-demoter", daemon=True).start()
            elif run.due < self._wakes_at:
                self._changed.notify()

    def finished(self) -> bool:
        """The calling thread's run ended: whether it was demoted (the thread must then `retire`)."""
        with self._changed:  # after this, the watching thread no longer knows the thread
            run = self._runs.pop(threading.get_native_id(), None)
        return run is not None and run.demoted

    def retire(self, successor: threading.Thread | None) -> None:
        """A demoted thread ends; `successor` (not started yet), if any, takes its place at normal priority."""
        with self._changed:
            self._demoted_threads -= 1
            if successor is None:
                return
            if self._watching:  # it is, unless setpriority failed since (then no priority is lower anyway)
                self._successors.append(successor)
                self._changed.notify()
                return
        successor.start()

    def _watch(self) -> None:
        with self._changed:
            while self.enabled:
                for successor in self._successors:
                    successor.start()
                self._successors.clear()
                now = time.monotonic()
                upcoming = math.inf
                for run in self._runs.values():
                    if run.demoted:
                        continue
                    if run.due <= now:
                        self._demote(run)
                    else:
                        upcoming = min(upcoming, run.due)
                self._wakes_at = upcoming
                if upcoming < math.inf:
                    self._changed.wait(upcoming - now)
                elif not self._changed.wait(IDLE_EXIT_SECONDS) and not self._runs and not self._demoted_threads:
                    break  # nothing to watch for a while: a later run starts a new watcher
            self._watching = False
            self._wakes_at = math.inf

    def _demote(self, run: _Run) -> None:
        """With the lock held, so the run cannot finish (and its thread end) meanwhile."""
        try:
            os.setpriority(os.PRIO_PROCESS, run.thread_id, DEMOTED_NICE)
        except OSError as exc:  # a sandbox that forbids it: runs are then not demoted at all
            self.enabled = False
            log.warning("cannot lower a model thread's priority (%s): long runs share the CPU equally with "
                        "short ones", exc)
            return
        run.demoted = True
        self._demoted_threads += 1
        self.demotions += 1


@dataclass(eq=False)
class _Call:
    future: Future[Any]
    function: Callable[..., Any]
    args: tuple[Any, ...]


class ModelWorkers:
    """A model version's threads: at most `size` (its execution slots), started as calls need them.

    `submit` queues a call and returns its future, which `cancel()` withdraws while the call is still
    queued. With a `Demoter`, each call is a run it watches, and a thread whose run was demoted ends
    after it (the next call starts a fresh one) and tells `on_demoted`. No explicit shutdown: once the
    pool is collected its threads end, as ThreadPoolExecutor's do, so a version dropped while requests
    still ran on it needs no one to close it."""

    def __init__(self, size: int, name: str, demoter: Demoter | None = None,
                 on_demoted: Callable[[], None] | None = None):
        self._size, self._name, self._demoter, self._on_demoted = max(1, size), name, demoter, on_demoted
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # released by a thread that waits for a call
        self._lock = threading.Lock()
        self._threads = 0
        self._started = 0  # threads started over the pool's life, for their names
        weakref.finalize(self, self._calls.put, None)  # wakes a waiting thread, which finds the pool gone

    def submit(self, function: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._calls.put(_Call(future, function, args))
        if not self._idle.acquire(blocking=False):
            self._add_thread()
        return future

    @property
    def threads(self) -> int:
        """Threads alive or starting."""
        return self._threads

    def _add_thread(self, demoted: bool = False) -> bool:
        """Start a thread if there is room (whether there was); a demoted thread's successor, through the
        demoter as the thread retires."""
        with self._lock:
            if self._threads >= self._size:
                return False
            self._threads += 1
            number = self._started
            self._started += 1
        thread = threading.Thread(target=_work, args=(weakref.ref(self), self._calls, self._demoter),
                                  name=f"wasinfer-model-{self._name}_{number}", daemon=True)
        if demoted and self._demoter is not None:
            self._demoter.retire(thread)
        else:
            thread.start()
        return True

    def _retire(self) -> None:
        """A demoted thread ends: if calls wait that no other thread will take, its successor takes them."""
        with self._lock:
            self._threads -= 1
        if self._calls.empty() or not self._add_thread(demoted=True):
            assert self._demoter is not None
            self._demoter.retire(None)


def _work(pool_ref: weakref.ref[ModelWorkers], calls: queue.SimpleQueue[_Call | None],
          demoter: Demoter | None) -> None:
    """A worker thread: holds its pool only between calls, so that the pool can be collected."""
    while True:
        call = calls.get()
        if call is None:  # the pool was collected: pass the word on to the next thread
            calls.put(None)
            return
        demoted = False
        if call.future.set_running_or_notify_cancel():  # False: withdrawn while it was queued
            if demoter is not None:
                demoter.started()
            try:
                result = call.function(*call.args)
            except BaseException as exc:
                if demoter is not None:
                    demoted = demoter.finished()
                call.future.set_exception(exc)
            else:
                if demoter is not None:
                    demoted = demoter.finished()
                call.future.set_result(result)
        del call
        pool = pool_ref()
        if pool is None:
            calls.put(None)
            if demoted:
                assert demoter is not None
                demoter.retire(None)
            return
        if demoted:
            pool._retire()
            if pool._on_demoted is not None:
                pool._on_demoted()
            return
        pool._idle.release()
        del pool
