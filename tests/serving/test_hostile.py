"""Misbehaving models on a live server: each hostile request fails alone, everything else keeps answering.

The repository holds a normal model (scale) next to `loop` (answers, but loops forever on a
negative first element), `bomb` (grows its memory until the cap stops it) and `trap` (an
`unreachable` instruction), and `big` (a normal module with four pages of memory). The server runs
with a short deadline and a small memory cap.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.hostile import (
    PAGE,
    big_memory_module,
    looping_module,
    memory_bomb_module,
    spinning_module,
    string_input_module,
    trapping_module,
)
from tests.processes import output_lines, read_until
from tests.serving.conftest import SCALE, Repo, scale_model, start_server
from wasinfer.runtime import DeadlineExceeded, ModelFault
from wasinfer.serving import Server
from wasinfer.serving.models import InstancePool

DEADLINE_MS = 200
CAP = 8 << 20
ROUNDS = 3
X = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32)
NEGATIVE = -X


@pytest.fixture(scope="module")
def hostile_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = Repo(tmp_path_factory.mktemp("hostile"))
    repo.add_wasm("scale", 1, scale_model(SCALE[1]))
    for name, wasm in (("loop", looping_module()), ("bomb", memory_bomb_module()), ("trap", trapping_module()),
                       ("big", big_memory_module(4))):
        path = repo.root / name / "1" / "model.wasm"
        path.parent.mkdir(parents=True)
        path.write_bytes(wasm)
    return repo.root


@pytest.fixture
def server(hostile_repository: Path) -> Iterator[Server]:
    running = start_server(hostile_repository, deadline_seconds=DEADLINE_MS / 1000, instance_memory_bytes=CAP)
    try:
        yield running
    finally:
        running.stop(grace=2)


def rest_request(x: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}


def run_together(calls: list[Callable[[], None]]) -> None:
    """Every call at once on its own thread (a failed assertion in any fails the test)."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result(timeout=60)


def test_rest_hostile_requests_fail_alone(server: Server) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as http:
        def normal() -> None:
            for _ in range(5):
                response = http.post("/v2/models/scale/infer", json=rest_request(X))
                assert response.status_code == 200, response.text
                np.testing.assert_array_equal(np.reshape(response.json()["outputs"][0]["data"], (2, 4)), X * SCALE[1])

        def expect(model: str, x: np.ndarray, status: int, *messages: str) -> Callable[[], None]:
            """The call fails with `status` and one of `messages` in its error; or, where the model's instances were
            all busy failing (rebuilt after each fault) until the request's deadline, with that 504 (a loaded
            machine's answer, which never holds back another model's request)."""
            waited = f"model '{model}' version 1: the request waited for a free instance until its deadline of"

            def call() -> None:
                response = http.post(f"/v2/models/{model}/infer", json=rest_request(x))
                if response.status_code == 504 and waited in response.json()["error"]:
                    return
                assert response.status_code == status, response.text
                assert any(message in response.json()["error"] for message in messages), response.text
            return call

        for model in ("scale", "loop", "bomb", "trap"):  # loads first: the rounds below are about the runs
            assert http.post(f"/v2/repository/models/{model}/load").status_code == 200
        # Stopped mid-run, or (the third, while both instances loop) never run: answered at the deadline either way.
        deadline = f"model 'loop' version 1 ran past its deadline of {DEADLINE_MS} ms and was stopped"
        run_together([normal] * 3
                     + [expect("loop", NEGATIVE, 504, deadline)] * ROUNDS
                     + [expect("bomb", X, 500, f"up to the instance memory cap of {CAP} bytes")] * ROUNDS
                     + [expect("trap", X, 500, "wasm `unreachable` instruction executed")] * ROUNDS)

        assert http.get("/v2/health/live").status_code == 200
        assert http.get("/v2/health/ready").status_code == 200
        normal()
        response = http.post("/v2/models/loop/infer", json=rest_request(X))
        assert response.status_code == 200
        np.testing.assert_array_equal(np.reshape(response.json()["outputs"][0]["data"], (2, 4)), X)  # fresh instances
        metrics = http.get("/metrics").text
    assert f'wasinfer_requests_total{{model="loop",outcome="deadline",protocol="rest",version="1"}} {ROUNDS}.0' \
        in metrics
    assert f'wasinfer_requests_total{{model="bomb",outcome="error",protocol="rest",version="1"}} {ROUNDS}.0' in metrics
    assert f'wasinfer_requests_total{{model="trap",outcome="error",protocol="rest",version="1"}} {ROUNDS}.0' in metrics
    assert 'wasinfer_requests_total{model="scale",outcome="ok",protocol="rest",version="1"} 20.0' in metrics


def test_grpc_hostile_requests_fail_alone(server: Server) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        def infer(model: str, x: np.ndarray) -> np.ndarray:
            tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            output = client.infer(model, [tensor], client_timeout=30).as_numpy("y")
            assert output is not None
            return output

        def normal() -> None:
            for _ in range(5):
                np.testing.assert_array_equal(infer("scale", X), X * SCALE[1])

        def expect(model: str, x: np.ndarray, status: str, message: str) -> Callable[[], None]:
            """As over REST: `status` with `message`, or the deadline a request spent waiting for an instance."""
            def call() -> None:
                with pytest.raises(InferenceServerException) as error:
                    infer(model, x)
                if error.value.status() == "StatusCode.DEADLINE_EXCEEDED" and "waited for a free instance" in (
                        error.value.message() or ""):
                    return
                assert error.value.status() == status
                assert message in error.value.message()
            return call

        for model in ("scale", "loop", "bomb", "trap"):
            client.load_model(model)
        run_together([normal] * 3
                     + [expect("loop", NEGATIVE, "StatusCode.DEADLINE_EXCEEDED",
                               f"its deadline of {DEADLINE_MS} ms")] * ROUNDS
                     + [expect("bomb", X, "StatusCode.INTERNAL", "grew its memory")] * ROUNDS
                     + [expect("trap", X, "StatusCode.INTERNAL", "unreachable")] * ROUNDS)

        assert client.is_server_live() and client.is_model_ready("loop")
        normal()
        np.testing.assert_array_equal(infer("loop", X), X)
    finally:
        client.close()
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as http:
        metrics = http.get("/metrics").text
    assert f'wasinfer_requests_total{{model="loop",outcome="deadline",protocol="grpc",version="1"}} {ROUNDS}.0' \
        in metrics


def test_a_request_queued_behind_a_looping_run_is_answered_at_its_deadline(hostile_repository: Path) -> None:
    """One instance, two looping requests: the second waits for the instance no longer than its own deadline, and
    both are answered 504 at about that deadline (it used to wait for the first run's deadline, then loop for its
    own: 2 s). The first run is stopped at its deadline; whether the second then finds an instance with a few
    milliseconds left (and is stopped at the same deadline) or none depends on how fast the pool replaces the
    stopped instance, so either answer is right."""
    running = start_server(hostile_repository, deadline_seconds=1.0, pool_size=1)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=30) as http:
            assert http.post("/v2/repository/models/loop/load").status_code == 200
            answers: list[httpx.Response] = []
            started = time.monotonic()
            run_together([lambda: answers.append(http.post("/v2/models/loop/infer", json=rest_request(NEGATIVE)))] * 2)
            elapsed = time.monotonic() - started
        errors = sorted(answer.json()["error"] for answer in answers)
        assert [answer.status_code for answer in answers] == [504, 504]
        stopped = "model 'loop' version 1 ran past its deadline of 1000 ms and was stopped"
        not_run = ("model 'loop' version 1: the request waited for a free instance until its deadline of 1000 ms "
                   "passed and was not run (the model's instances are busy)")
        assert errors in ([stopped, stopped], [stopped, not_run])
        assert running.manager.get("loop").pool.discarded == errors.count(stopped)
        assert elapsed < 1.9, f"two requests with a 1 s deadline took {elapsed:.2f} s"
    finally:
        running.stop(grace=2)


def test_grpc_calls_without_any_deadline_wait_for_a_busy_model(tmp_path: Path) -> None:
    """No --deadline-ms and no client deadline: calls queue for the one instance as long as it takes (grpcio
    reports such a call's time left as ~9e18 s, which no wait may be given)."""
    path = tmp_path / "spin" / "1" / "model.wasm"
    path.parent.mkdir(parents=True)
    path.write_bytes(spinning_module(20_000_000))  # tens of milliseconds a run: the calls overlap
    running = start_server(tmp_path, deadline_seconds=None, pool_size=1)
    try:
        def call() -> None:
            client = grpcclient.InferenceServerClient(f"127.0.0.1:{running.grpc_port}")
            try:
                tensor = grpcclient.InferInput("x", list(X.shape), "FP32")
                tensor.set_data_from_numpy(X)
                np.testing.assert_array_equal(client.infer("spin", [tensor]).as_numpy("y"), X)
            finally:
                client.close()

        call()
        run_together([call] * 4)
    finally:
        running.stop(grace=2)


def test_a_model_over_the_memory_cap_fails_its_load(hostile_repository: Path) -> None:
    running = start_server(hostile_repository, instance_memory_bytes=2 * PAGE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=30) as http:
            response = http.post("/v2/models/big/infer", json=rest_request(X))
            assert response.status_code == 503
            assert (f"needs {4 * PAGE} bytes of linear memory at instantiation, more than the instance memory cap "
                    f"of {2 * PAGE} bytes") in response.json()["error"]
            assert http.get("/v2/health/live").status_code == 200
            loop = http.post("/v2/models/loop/infer", json=rest_request(X))  # a one-page module still fits
            assert loop.status_code == 200
    finally:
        running.stop(grace=2)


# --- the pool on its own ----------------------------------------------------------------------------


class Fake:
    """A runner that answers, or raises what it is told to once `release` is set."""

    def __init__(self, fault: Exception | None = None):
        self.fault, self.release = fault, threading.Event()
        self.release.set()

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.release.wait(30)
        if self.fault is not None:
            raise self.fault
        return {"y": inputs["x"]}


def test_the_pool_discards_a_faulted_instance_and_builds_another() -> None:
    made: list[Fake] = [Fake(DeadlineExceeded("stopped", 0.1)), Fake()]
    built: list[Fake] = []

    def factory() -> Fake:
        built.append(made.pop(0))
        return built[-1]

    pool = InstancePool(factory, 2)
    with pytest.raises(DeadlineExceeded):
        pool.run({"x": X})
    assert (pool.created, pool.discarded, len(built)) == (0, 1, 1)
    np.testing.assert_array_equal(pool.run({"x": X})["y"], X)
    np.testing.assert_array_equal(pool.run({"x": X})["y"], X)
    assert (pool.created, pool.discarded, len(built)) == (1, 1, 2)  # the fresh one is reused


def test_a_request_waiting_for_a_faulting_instance_gets_a_fresh_one() -> None:
    first = Fake(ModelFault("trapped"))
    first.release.clear()
    fresh = Fake()
    made = [first, fresh]
    pool = InstancePool(lambda: made.pop(0), 1)
    results: dict[str, Any] = {}

    def call(key: str) -> None:
        try:
            results[key] = pool.run({"x": X})
        except ModelFault as exc:
            results[key] = exc

    hostile = threading.Thread(target=call, args=("hostile",), daemon=True)
    hostile.start()
    waiter = threading.Thread(target=call, args=("waiter",), daemon=True)
    waiter.start()  # the pool is full (size 1, busy): it waits in the idle queue
    waiter.join(0.1)
    first.release.set()
    for thread in (hostile, waiter):
        thread.join(30)
        assert not thread.is_alive()
    assert isinstance(results["hostile"], ModelFault)
    np.testing.assert_array_equal(results["waiter"]["y"], X)
    assert (pool.created, pool.discarded, made) == (1, 1, [])


def test_a_failed_rebuild_leaves_the_vacancy_for_the_next_request() -> None:
    attempts: list[int] = []

    def factory() -> Fake:
        attempts.append(1)
        if len(attempts) == 1:
            return Fake(ModelFault("trapped"))
        if len(attempts) == 2:
            raise ModelFault("the start function trapped")
        return Fake()

    pool = InstancePool(factory, 1)
    with pytest.raises(ModelFault, match="trapped"):
        pool.run({"x": X})
    with pytest.raises(ModelFault, match="start function"):
        pool.run({"x": X})
    assert pool.created == 0
    np.testing.assert_array_equal(pool.run({"x": X})["y"], X)
    assert (pool.created, len(attempts)) == (1, 3)


def test_a_hostile_run_on_the_event_loop_is_cut_short_and_moved_off_it(tmp_path: Path) -> None:
    """A quick model runs on the event loop; a looping input there must not stall REST for the full deadline."""
    repo = Repo(tmp_path)
    path = repo.root / "loop" / "1" / "model.wasm"
    path.parent.mkdir(parents=True)
    path.write_bytes(looping_module())
    server = start_server(repo.root, deadline_seconds=3.0)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as http:
            assert http.post("/v2/models/loop/infer", json=rest_request(X)).status_code == 200
            model = server.manager.get("loop")
            model.sample_seconds = 0.0  # as after many fast runs (on a loaded machine they may not be fast)
            assert model.is_quick({"x": X}) and model.inline_deadline is not None  # it runs on the loop
            answers: list[httpx.Response] = []
            hostile = threading.Thread(target=lambda: answers.append(
                http.post("/v2/models/loop/infer", json=rest_request(NEGATIVE))))
            hostile.start()
            for _ in range(3000):  # bounded: the short inline deadline is 10 ms
                if not model.inline:
                    break
                hostile.join(0.01)
            assert not model.inline
            # The hostile request now runs on a worker thread for its full 3 s deadline; the loop answers meanwhile.
            with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as other:
                assert other.get("/v2/health/live").status_code == 200
                assert other.post("/v2/models/loop/infer", json=rest_request(X)).status_code == 200
            assert hostile.is_alive()
            hostile.join(30)
            assert answers[0].status_code == 504 and "deadline of 3000 ms" in answers[0].json()["error"]
            assert not model.is_quick({"x": X})
    finally:
        server.stop(grace=2)


def test_a_model_whose_metadata_declares_strings_fails_its_load_naming_the_field(tmp_path: Path) -> None:
    """Issue 15 row 10: a module whose metadata says input x is `<U1` loaded, and every request got a 500."""
    path = tmp_path / "strings" / "1" / "model.wasm"
    path.parent.mkdir(parents=True)
    path.write_bytes(string_input_module())
    server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as http:
            for _ in range(2):  # refused again, the same way, until the file is fixed: never a 500
                response = http.post("/v2/models/strings/infer", json=rest_request(X))
                assert response.status_code == 503, response.text
                assert "metadata field inputs[0].dtype ('x') is '<U1'" in response.json()["error"]
            load = http.post("/v2/repository/models/strings/load")
            assert load.status_code == 503 and "load failed: metadata field inputs[0].dtype" in load.text, load.text
            assert http.get("/v2/health/live").status_code == 200
    finally:
        server.stop(grace=2)


def resident_bytes(pid: int) -> int:
    """VmRSS of a process (Linux: /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads resident memory from /proc")
def test_a_served_memory_bomb_costs_at_most_its_cap_per_instance(tmp_path: Path) -> None:
    """Issue 15 row 1: `wasinfer serve` kept every faulted instance (and the memory it filled up to the cap) until
    Python's cycle collector happened to run: 8 calls grew the server from 1.19 to 4.61 GB at a 1 GiB cap."""
    cap_mb, instances, faults = 64, 2, 12
    path = tmp_path / "repository" / "bomb" / "1" / "model.wasm"
    path.parent.mkdir(parents=True)
    path.write_bytes(memory_bomb_module(fill=True))  # writes every byte it grows: all of it is resident
    env = dict(os.environ, WASINFER_HOME=str(tmp_path / "home"), COLUMNS="200",
               PYTHONPATH=os.pathsep.join(sys.path))
    process = subprocess.Popen(
        [sys.executable, "-m", "wasinfer.cli.main", "serve", "--model-repository", str(tmp_path / "repository"),
         "--http-port", "0", "--grpc-port", "0", "--instance-memory-mb", str(cap_mb), "--pool-size", str(instances),
         "--fault-breaker", "off"],  # every one of the faults must run (the breaker would refuse the 6th on)
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        output = "".join(read_until(output_lines(process), "Press Ctrl+C", timeout=60))
        match = re.search(r"REST  (http://127\.0\.0\.1:\d+)/v2", output)
        assert match, output
        with httpx.Client(base_url=match[1], timeout=60) as http:
            first = http.post("/v2/models/bomb/infer", json=rest_request(X))  # loads the model, then faults
            assert first.status_code == 500 and "instance memory cap" in first.json()["error"], first.text
            baseline = resident_bytes(process.pid)
            for _ in range(faults):
                response = http.post("/v2/models/bomb/infer", json=rest_request(X))
                assert response.status_code == 500 and "instance memory cap" in response.json()["error"]
            grown = resident_bytes(process.pid) - baseline
            assert http.get("/v2/health/live").status_code == 200
    finally:
        process.kill()
        process.wait(timeout=10)
    # Each fault's instance is freed as it fails: at most a cap per live instance may stay (measured: 0 MiB);
    # before, a fault's whole cap stayed until the collector ran (measured: 320 of the 12 x 64 MiB).
    assert grown < (cap_mb << 20) * instances, f"{faults} faults grew the server by {grown >> 20} MiB"


def test_a_module_with_a_sequence_input_fails_its_load_naming_it(tmp_path: Path) -> None:
    """KServe v2 has tensors only: a module whose input is a sequence (carried by its element and count tensors,
    docs/abi.md) fails its load with a 503 naming the input and why, never serving its private tensors."""
    from onnx import TensorProto, helper

    from wasinfer.artifact import convert_onnx

    elements = helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2]))
    graph = helper.make_graph([helper.make_node("SequenceLength", ["s"], ["n"])], "seq",
                              [helper.make_value_info("s", elements)],
                              [helper.make_tensor_value_info("n", TensorProto.INT64, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "lists" / "1" / "model.wasm"
    path.parent.mkdir(parents=True)
    path.write_bytes(convert_onnx(model, sequences={"s": (1, 3)}).wasm)
    server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as http:
            load = http.post("/v2/repository/models/lists/load")
            assert load.status_code == 503, load.text
            assert "load failed: input 's' is a sequence, which KServe v2 has no datatype for" in load.text
            response = http.post("/v2/models/lists/infer", json=rest_request(X))
            assert response.status_code == 503 and "input 's' is a sequence" in response.json()["error"]
    finally:
        server.stop(grace=2)
