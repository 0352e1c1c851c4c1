"""A model's worker threads and the demotion of long runs (workers.py), alone and in a live server.

Priorities are read back from the kernel (/proc/self/task/<tid>/stat, os.getpriority on a thread id),
so these tests show what the scheduler sees, not what our bookkeeping says.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.hostile import looping_module, spinning_module
from tests.serving.conftest import start_server
from wasinfer.serving.batching import Batcher, Tensors
from wasinfer.serving.workers import DEMOTED_NICE, Demoter, ModelWorkers

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="thread priorities are Linux's")

AFTER = 0.1  # the demoter's threshold here, in CPU time: far above what a short run uses
BOUND = 30.0  # seconds any wait here may take: only a hang comes near it
X = np.array([[1, 2, 3, 4]], np.float32)


def nice_of(thread_id: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, thread_id)


def base_nice() -> int:
    """What a new thread of this process starts with (threads inherit their creator's)."""
    return nice_of(threading.get_native_id())


def whoami(hold: float = 0.0) -> tuple[int, int]:
    """Use `hold` seconds of CPU time (busy, as a wasm run is), then (thread id, its nice)."""
    until = time.thread_time() + hold
    while time.thread_time() < until:
        pass
    me = threading.get_native_id()
    return me, nice_of(me)


def test_a_long_run_drops_to_nice_19_and_its_thread_gives_way_to_a_fresh_one() -> None:
    demoted: list[int] = []
    workers = ModelWorkers(1, "t", Demoter(AFTER), lambda: demoted.append(1))
    first, first_nice = workers.submit(whoami).result(BOUND)
    again, again_nice = workers.submit(whoami).result(BOUND)
    assert (again, first_nice, again_nice) == (first, base_nice(), base_nice())  # short runs: one thread, as it was
    long, long_nice = workers.submit(whoami, 3 * AFTER).result(BOUND)
    assert (long, long_nice) == (first, DEMOTED_NICE)
    after, after_nice = workers.submit(whoami).result(BOUND)
    assert after != long and after_nice == base_nice()  # a fresh thread: the next run is not slowed
    assert demoted == [1] and workers.threads == 1


def test_a_run_that_waits_rather_than_computes_is_not_demoted() -> None:
    """The allowance is CPU time: a run kept off the cores (here asleep; on a loaded machine, preempted) for
    longer than it has taken nothing from anyone, and demoting it would only slow the victim further."""
    workers = ModelWorkers(1, "t", Demoter(AFTER))
    first = workers.submit(whoami).result(BOUND)
    workers.submit(time.sleep, 3 * AFTER).result(BOUND)
    assert workers.submit(whoami).result(BOUND) == first == (first[0], base_nice())


def test_building_an_instance_on_a_request_s_thread_does_not_count_as_its_run() -> None:
    """An instance pool that grows builds the instance on the request's thread (the model's cold start): CPU time
    in Demoter.not_counted() is not the run's, so a short run behind a slow build keeps its thread's priority,
    while the same work outside it demotes the thread."""
    from wasinfer.serving.models import InstancePool

    demoter = Demoter(AFTER)

    class Slow:
        def __init__(self) -> None:
            whoami(3 * AFTER)  # a build that uses three allowances of CPU time

        def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {"thread": np.array(whoami())}

    pool = InstancePool(Slow, 2, demoter.not_counted)  # (the first instance is built here, outside any run)
    workers = ModelWorkers(2, "t", demoter)
    busy = pool._acquire()  # the first instance is taken: the next run builds the second on its thread
    nice = workers.submit(pool.run, {}).result(BOUND)["thread"][1]
    assert nice == base_nice() and demoter.demotions == 0
    pool._idle.put(busy)
    counted = InstancePool(Slow, 2)  # without the pause the same build demotes the run's thread
    taken = counted._acquire()
    assert workers.submit(counted.run, {}).result(BOUND)["thread"][1] == DEMOTED_NICE
    counted._idle.put(taken)


def test_a_garbage_collection_during_a_run_does_not_count_as_its_run() -> None:
    """Python's cyclic collector runs on whichever thread allocates past its threshold, and a full collection of a
    serving process takes 35-70 ms of CPU time: one that lands in the Python part of a normal model's 0.5 ms run,
    before its wasm call releases the interpreter to the demoter, demoted the run (the likely cause of the chaos
    suite's flake under the full suite's load). The collection is left out of the run; the same CPU time spent by
    the run itself counts."""
    garbage = [[] for _ in range(400_000)]  # tracked objects that every full collection visits
    started = time.thread_time()
    gc.collect()
    collection = time.thread_time() - started  # what one full collection costs here
    demoter = Demoter(collection / 4)

    def run(work: Callable[[], object]) -> int:
        work()
        time.sleep(collection)  # the wasm call: the interpreter is released, and the demoter looks
        return nice_of(threading.get_native_id())

    workers = ModelWorkers(1, "t", demoter)
    assert workers.submit(run, gc.collect).result(BOUND) == base_nice() and demoter.demotions == 0
    assert workers.submit(run, lambda: whoami(collection)).result(BOUND) == DEMOTED_NICE  # four allowances, counted
    del garbage


def test_a_demoted_thread_hands_queued_calls_to_its_successor() -> None:
    """The calls queued behind a long run all run (none is stranded when its thread ends), each at normal priority."""
    workers = ModelWorkers(1, "t", Demoter(AFTER))
    futures = [workers.submit(whoami, 2 * AFTER)] + [workers.submit(whoami) for _ in range(5)]
    results = [future.result(BOUND) for future in futures]
    assert results[0][1] == DEMOTED_NICE
    assert {nice for _, nice in results[1:]} == {base_nice()}
    assert len({thread for thread, _ in results[1:]}) == 1 and results[1][0] != results[0][0]


def test_a_call_after_a_demoted_thread_ended_gets_a_thread() -> None:
    """The thread took the long call straight after a short one, so it never waited in between: a count of
    idle threads that it had bumped after the short one said a thread was free when none was, and the next
    call waited for ever once the demoted thread had ended."""
    workers = ModelWorkers(1, "t", Demoter(AFTER))
    short, long = workers.submit(whoami), workers.submit(whoami, 3 * AFTER)
    assert short.result(BOUND)[1] == base_nice() and long.result(BOUND)[1] == DEMOTED_NICE
    assert workers.submit(whoami).result(10)[1] == base_nice()


def test_without_a_demoter_a_long_run_keeps_its_priority() -> None:
    workers = ModelWorkers(1, "t")
    assert workers.submit(whoami, 2 * AFTER).result(BOUND)[1] == base_nice()


def test_a_withdrawn_call_never_runs() -> None:
    ran = threading.Event()
    workers = ModelWorkers(1, "t", Demoter(AFTER))
    blocker = workers.submit(whoami, 2 * AFTER)
    queued = workers.submit(ran.set)
    assert queued.cancel()
    blocker.result(BOUND)
    workers.submit(whoami).result(BOUND)  # ran after the withdrawn one would have
    assert not ran.is_set()


def test_a_batcher_thread_whose_batch_was_demoted_is_replaced_at_normal_priority() -> None:
    seen: list[tuple[int, int]] = []
    demoted: list[int] = []

    def model(inputs: Tensors) -> Tensors:
        seen.append(whoami(3 * AFTER if (inputs["x"] < 0).any() else 0.0))
        return {"y": inputs["x"]}

    batcher = Batcher(model, max_batch=4, max_delay=0.0, workers=1, name="t", demoter=Demoter(AFTER),
                      on_demoted=lambda: demoted.append(1))
    for x in (1.0, -1.0, 1.0):
        batcher.submit({"x": np.full((1, 1), x, np.float32)}, 1).result(BOUND)
    batcher.close()
    assert [nice for _, nice in seen] == [base_nice(), DEMOTED_NICE, base_nice()]
    assert seen[0][0] == seen[1][0] != seen[2][0] and demoted == [1]


def model_threads_at(nice: int) -> list[int]:
    """This process's threads at `nice` (the server under test runs in it)."""
    found = []
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        if int(fields[16]) == nice:
            found.append(int(task.name))
    return found


def wait_for(condition: Callable[[], bool]) -> bool:
    until = time.monotonic() + BOUND
    while not condition() and time.monotonic() < until:
        time.sleep(0.01)
    return condition()


def test_a_grpc_call_that_loops_runs_demoted_on_its_models_thread(tmp_path: Path) -> None:
    """Issue 15's 2x target: a gRPC call used to run its model on grpcio's shared thread, which no one may
    demote; now it waits while the run goes to the model's own thread, which drops to nice 19 once the run
    passes --demote-after-ms (so a looping model no longer takes the cores from a normal one), and the
    model's next run is at normal priority again."""
    for name, wasm in (("loop", looping_module()), ("steady", spinning_module(100_000))):
        path = tmp_path / name / "1" / "model.wasm"
        path.parent.mkdir(parents=True)
        path.write_bytes(wasm)
    server = start_server(tmp_path, deadline_seconds=2.0, demote_after_seconds=AFTER)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        def infer(model: str, x: np.ndarray) -> np.ndarray:
            tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            output = client.infer(model, [tensor], client_timeout=BOUND).as_numpy("y")
            assert output is not None
            return output

        np.testing.assert_array_equal(infer("loop", X), X)
        assert model_threads_at(DEMOTED_NICE) == []
        failure: list[InferenceServerException] = []

        def hostile() -> None:
            try:
                infer("loop", -X)
            except InferenceServerException as exc:
                failure.append(exc)

        caller = threading.Thread(target=hostile)
        caller.start()
        assert wait_for(lambda: len(model_threads_at(DEMOTED_NICE)) == 1)  # while it loops
        for _ in range(20):  # meanwhile another model answers, and its runs are not demoted (the metrics below)
            np.testing.assert_array_equal(infer("steady", X), X)
        caller.join(BOUND)
        assert failure and failure[0].status() == "StatusCode.DEADLINE_EXCEEDED", failure
        assert wait_for(lambda: model_threads_at(DEMOTED_NICE) == [])  # the demoted thread ended after its run
        np.testing.assert_array_equal(infer("loop", X), X)
        assert model_threads_at(DEMOTED_NICE) == []
        metrics = server.metrics.exposition().decode()
        assert 'wasinfer_demoted_runs_total{model="loop",version="1"} 1.0' in metrics
        assert 'model="steady"' not in metrics.split("wasinfer_demoted_runs_total", 1)[1].split("# HELP", 1)[0]
    finally:
        client.close()
        server.stop(grace=2)
