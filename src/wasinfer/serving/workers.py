"""A model version's own worker threads, and why a long run on one of them gives way to short ones.

Every model runs on threads of its own (models.py), so a slow or hostile model never takes another's
thread; but it could take the others' CPU. Two runs of a model that loops until its deadline kept
both cores of a 2-core machine busy for the whole deadline, and another model's 2 ms runs waited
for the kernel to give them a core in turn: their p99 was 4x what it was alone.

A `Demoter` watches the runs on these threads. Once a run has used `after_seconds` of CPU time (the
server's --demote-after-ms), it lowers its thread's priority to nice 19 (Linux keeps a nice value per
thread). The kernel then gives a core to any normal-priority thread that wants one first (a nice-19
thread weighs 15 against 1024 for nice 0): the short runs of every model, the event loop, health
checks and the gRPC threads go ahead of it. A long run on a machine with nothing else to do still
gets every core it can use, so nothing is lost when no one else waits. CPU time, not time since the
run started: a short run that other work kept off the cores (on a loaded machine a 2 ms run can take
10 ms and more) has taken nothing from anyone, and demoting it would only slow the victim further.

What a thread does for the process rather than for its run is not the run's either. Python's cyclic
garbage collector runs on whichever thread happens to allocate the object that crosses its threshold, and a
full collection of a serving process (70,000-120,000 tracked objects) takes 35-70 ms of CPU time; on a loaded
machine, with cold caches, more. One that lands inside a 0.5 ms run of a normal model demotes it (the likely
cause of the chaos suite's flake under the full test suite's load), so the demoter leaves out of a run the CPU time
its thread spends collecting (a `gc.callbacks` hook), as it leaves out building an instance (`not_counted`).

The alternatives fall short by design: a cap on the slots a busy model may hold acts only when a run
starts, and a run that loops holds its core until its deadline; throttling a model whose runs keep
hitting their deadline acts only after the first ones have had the cores for a whole deadline.

A process without CAP_SYS_NICE cannot lower a thread's nice value again, so a demoted thread ends
after its run and a fresh one, at normal priority, takes its place: a model whose one run was long
does not stay slow. A new thread inherits its creator's nice value, so the demoted thread cannot
start its successor itself: the demoter's own thread, never demoted, starts it. And that is why
models run only on threads of their own: a thread of grpcio's shared pool, once demoted, would
slow whatever call it served next.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("wasinfer.serving")

DEMOTED_NICE = 19  # the lowest priority a thread can have short of SCHED_IDLE
IDLE_EXIT_SECONDS = 5.0  # the watching thread ends after this long with no run to watch


@dataclass(eq=False)
class _Run:
    """A run being watched. Its own thread writes the pause fields (entering and leaving `not_counted()` or a
    collection) and the watching thread only reads them, in an order that can make it see less CPU time than
    the run used, never more: a pause ends by adding its time to `uncounted` before clearing `paused_at`."""

    thread_id: int  # the kernel's id of the thread running it
    clock: int  # the thread's CPU-time clock
    cpu_started: float  # that clock's reading when the run started
    due: float  # time.monotonic() at which it may first have used its allowance: look then
    demoted: bool = False
    uncounted: float = 0.0  # CPU time in pauses that have ended: not the run's
    paused_at: float | None = None  # the clock's reading when the pause in progress began
    depth: int = 0  # pauses in progress (a collection inside a build is one pause)

    def used(self) -> float:
        """CPU time the run has used so far, pauses left out (up to the current pause's start, during one)."""
        paused_at = self.paused_at
        return (time.clock_gettime(self.clock) if paused_at is None else paused_at) - self.cpu_started - self.uncounted

    def pause(self) -> None:
        if self.depth == 0:
            self.paused_at = time.clock_gettime(self.clock)
        self.depth += 1

    def resume(self) -> None:
        if self.depth == 0:  # a collection that began before the run did
            return
        self.depth -= 1
        if self.depth == 0 and self.paused_at is not None:
            self.uncounted += time.clock_gettime(self.clock) - self.paused_at
            self.paused_at = None


_current = threading.local()  # `run`: the watched run of the calling thread, if it has one


def _collecting(phase: str, info: dict[str, int]) -> None:
    """gc.callbacks: a collection is not the run of the thread it happens on (see the module docstring)."""
    run: _Run | None = getattr(_current, "run", None)
    if run is not None:
        if phase == "start":
            run.pause()
        else:
            run.resume()


gc.callbacks.append(_collecting)


class Demoter:
    """Lowers to nice 19 the priority of each thread whose current run has used `after_seconds` of CPU time.

    A run is what a thread does between `started()` and `finished()`; a thread whose run was demoted
    then calls `retire()` as it ends, with its successor. One thread watches the runs and starts those
    successors; it is started by a run (at normal priority: a demoted thread starts no run), sleeps until
    the oldest run is due, so that short runs cost it nothing but a dictionary entry (a Python thread
    that woke every few milliseconds would take the interpreter from the event loop that often), and
    ends after IDLE_EXIT_SECONDS with no run and no demoted thread left. A run cannot use CPU time
    faster than time passes, so one that has used less than its allowance when due is looked at again
    once it could have used the rest; a run in a pause (`not_counted()`, a collection) uses nothing that
    counts, and is looked at again an allowance later. Linux only: elsewhere setpriority() on a thread id is not per
    thread, and nothing is demoted."""

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
        clock = time.pthread_getcpuclockid(threading.get_ident())
        run = _Run(threading.get_native_id(), clock, time.clock_gettime(clock), time.monotonic() + self.after_seconds)
        _current.run = run
        with self._changed:
            self._runs[run.thread_id] = run
            if not self._watching:
                self._watching = True
                threading.Thread(target=self._watch, name="wasinfer-demoter", daemon=True).start()
            elif run.due < self._wakes_at:
                self._changed.notify()

    @contextmanager
    def not_counted(self) -> Iterator[None]:
        """CPU time the calling thread spends in this block is not its run's: building a model instance on a
        request's thread (compiling or deserialising, instantiating) is the model's cold start, not a long run,
        and must not demote a thread whose runs are short."""
        run: _Run | None = getattr(_current, "run", None) if self.enabled else None
        if run is None:
            yield
            return
        run.pause()
        try:
            yield
        finally:
            run.resume()

    def finished(self) -> bool:
        """The calling thread's run ended: whether it was demoted (the thread must then `retire`)."""
        _current.run = None
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
                    if run.paused_at is not None:  # it uses nothing countable until the pause ends: look again then
                        upcoming = min(upcoming, now + self.after_seconds)
                        continue
                    if run.due <= now:  # registered, so its thread is alive and its clock valid
                        left = self.after_seconds - run.used()
                        if left <= 0:
                            self._demote(run)
                            continue
                        run.due = now + left
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
    after it (a fresh one takes the calls still queued) and tells `on_demoted`. No explicit shutdown:
    once the pool is collected its threads end, as ThreadPoolExecutor's do, so a version dropped while
    requests still ran on it needs no one to close it."""

    def __init__(self, size: int, name: str, demoter: Demoter | None = None,
                 on_demoted: Callable[[], None] | None = None):
        self._shared = _Threads(max(1, size), name, demoter, on_demoted)
        weakref.finalize(self, self._shared.calls.put, None)  # wakes a waiting thread, which passes it on

    def submit(self, function: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._shared.calls.put(_Call(future, function, args))
        self._shared.add_thread()
        return future

    @property
    def threads(self) -> int:
        """Threads alive or starting."""
        return self._shared.threads


class _Threads:
    """What a pool's threads share with it; they hold this, never the pool, so that it can be collected.

    `waiting` counts the threads blocked for a call, exactly (under `lock`): a thread taking a long call
    stops counting at once, so a call queued behind it never waits for a thread that will not come."""

    def __init__(self, size: int, name: str, demoter: Demoter | None, on_demoted: Callable[[], None] | None):
        self.size, self.name, self.demoter, self.on_demoted = size, name, demoter, on_demoted
        self.calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.threads = self.waiting = self.started = 0

    def add_thread(self, heir: bool = False) -> None:
        """Start a thread if calls wait that no waiting thread will take and there is room for one; a demoted
        thread's heir (`heir`) through the demoter, which is not demoted (a thread inherits its creator's nice)."""
        with self.lock:
            needed = self.calls.qsize() > self.waiting and self.threads < self.size
            if needed:
                self.threads += 1
                number, self.started = self.started, self.started + 1
        if heir:
            assert self.demoter is not None
            self.demoter.retire(threading.Thread(target=self.work, name=f"wasinfer-model-{self.name}_{number}",
                                                 daemon=True) if needed else None)
        elif needed:
            threading.Thread(target=self.work, name=f"wasinfer-model-{self.name}_{number}", daemon=True).start()

    def work(self) -> None:
        """A worker thread's life: calls until its pool is collected, or until one of its runs is demoted."""
        while True:
            with self.lock:
                self.waiting += 1
            call = self.calls.get()
            with self.lock:
                self.waiting -= 1
            if call is None:  # the pool was collected: pass the word on to the next thread
                self.calls.put(None)
                with self.lock:
                    self.threads -= 1
                return
            if not call.future.set_running_or_notify_cancel():  # withdrawn while it was queued
                continue
            if self.demoter is not None:
                self.demoter.started()
            try:
                result = call.function(*call.args)
            except BaseException as exc:
                demoted = self.demoter is not None and self.demoter.finished()
                call.future.set_exception(exc)
            else:
                demoted = self.demoter is not None and self.demoter.finished()
                call.future.set_result(result)
            del call
            if demoted:  # this thread stays at nice 19: it ends, and an heir takes what is queued
                with self.lock:
                    self.threads -= 1
                self.add_thread(heir=True)
                if self.on_demoted is not None:
                    self.on_demoted()
                return
