"""A quick model that runs on the event loop stays there when its thread, not the model, made a run late.

The inline deadline (models.INLINE_DEADLINE_SECONDS) is wall-clock time. On a busy machine a run of a
tenth of a millisecond whose thread is preempted passes 10 ms with no fault of its own; before, that
moved the model to its worker threads for good, which costs every later request 1.3-1.8x the CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.hostile import spinning_module
from tests.serving.conftest import start_server
from wasinfer.serving.models import INLINE_SECONDS, PREEMPTED_CPU_SECONDS, LoadedModel

X = np.array([[1, 2, 3, 4]], np.float32)
SPIN = 100_000  # about 0.1 ms a run: most of a run's time is inside wasm, where a preemption trips the deadline
TRIES_SECONDS = 30.0  # bounded: on an idle core the starved thread is preempted inside a run within a second or two
SPINNER_SECONDS = TRIES_SECONDS + 10.0  # the spinner ends by itself even if the test is killed


def starved_runs(model: LoadedModel, cpu: int) -> tuple[int, int, float]:
    """Run `model` inline on a thread that gets `cpu` only when a spinner there lets it (SCHED_IDLE) until a run
    is cut short; (runs, overruns, that run's thread CPU seconds)."""
    found: list[tuple[int, int, float]] = []

    def starved() -> None:
        for _ in range(20):  # the pool's instances made, the code warm: a run costs only itself from here
            model._run_quick({"x": X}, "the test's thread", INLINE_SECONDS)
        os.sched_setaffinity(0, {cpu})
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # this thread only (Linux)
        runs, ends = 0, time.monotonic() + TRIES_SECONDS
        while time.monotonic() < ends and model.inline:
            started = time.thread_time()
            outputs = model._run_quick({"x": X}, "the test's thread", INLINE_SECONDS)
            runs += 1
            if outputs is None:  # stopped at the inline deadline: not answered here
                found.append((runs, 1, time.thread_time() - started))
                return
            np.testing.assert_array_equal(outputs["y"], X)
        found.append((runs, 0, 0.0))

    thread = threading.Thread(target=starved)
    thread.start()
    thread.join(TRIES_SECONDS + 30)
    assert not thread.is_alive() and found
    return found[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread SCHED_IDLE and affinity are Linux's")
def test_a_quick_model_preempted_past_the_inline_deadline_stays_on_the_callers_thread(tmp_path: Path) -> None:
    path = tmp_path / "spin" / "1" / "model.wasm"
    path.parent.mkdir(parents=True)
    path.write_bytes(spinning_module(SPIN))
    server = start_server(tmp_path, grpc_port=None)
    cpu = max(os.sched_getaffinity(0))
    spinner = subprocess.Popen([sys.executable, "-c", (
        f"import os, time\nos.sched_setaffinity(0, {{{cpu}}})\nends = time.monotonic() + {SPINNER_SECONDS}\n"
        "while time.monotonic() < ends:\n    pass\n")])
    try:
        model = server.manager.get("spin")
        model.sample_seconds = 0.0  # as after many fast runs: it runs on the caller's thread
        assert model.is_quick({"x": X}) and model.inline_deadline is not None
        time.sleep(0.2)  # the spinner holds the core
        runs, overruns, cpu_seconds = starved_runs(model, cpu)
        print(f"{runs} inline runs, {overruns} cut short at the inline deadline after {cpu_seconds * 1e3:.3f} ms "
              f"of the thread's CPU; model.inline={model.inline}")
        assert overruns == 1, f"no run was preempted past the inline deadline in {runs} runs"
        assert cpu_seconds < PREEMPTED_CPU_SECONDS
        assert model.inline  # before: moved to the worker threads for good
        # Of two overruns within PREEMPTION_EXCUSE_SECONDS the second is not excused: a hostile input on an
        # overloaded machine stalls the loop at most once a second before its model leaves it.
        model._overran("the test's thread", 0.0)
        model._overran("the test's thread", 0.0)
        assert not model.inline
    finally:
        spinner.kill()
        spinner.wait(10)
        server.stop(grace=2)


def test_an_inline_overrun_that_used_the_cpu_moves_the_model_off_the_callers_thread(tmp_path: Path) -> None:
    """The hostile case is kept: a run that computed past the deadline is the model's, whatever the machine did."""
    path = tmp_path / "spin" / "1" / "model.wasm"
    path.parent.mkdir(parents=True)
    path.write_bytes(spinning_module(SPIN))
    server = start_server(tmp_path, grpc_port=None)
    try:
        model = server.manager.get("spin")
        assert model.inline
        model._overran("the test's thread", PREEMPTED_CPU_SECONDS)
        assert not model.inline
    finally:
        server.stop(grace=2)
