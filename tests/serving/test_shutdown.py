"""Graceful shutdown: SIGTERM (REST, as a process) and Server.stop() (REST and gRPC, in-process) turn
readiness to 503 first, then refuse new connections and calls, and let the requests already in flight
finish, however long past the 5 s that uvicorn and grpcio were once given (the default grace outlasts
the per-call deadline).

A REST request is held in flight by the client itself: it sends the headers with `Expect:
100-continue` and waits for the server's "100 Continue" (the handler is running and waiting
for the body), the server is signalled, and the body goes only once the server has stopped
accepting connections (so the signal has certainly been handled; the body's time-out,
--header-timeout-s, is set well past the hold). A gRPC call is held inside
its handler (the model lookup waits for an event). No model has to be slow and nothing depends
on timing: the holds only last longer than the old grace period.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.hostile import looping_module
from tests.processes import output_lines, read_until
from tests.serving.conftest import health_check, start_server
from wasinfer.serving.grpc_api import SERVICE


def _refuses_connections(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except ConnectionRefusedError:
            return True
        time.sleep(0.05)
    return False


OLD_GRACE = 5.0  # what uvicorn and grpcio were given before the grace period outlasted the deadline
BODY = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}).encode()


def _hold_rest_request(port: int) -> socket.socket:
    """A connection whose infer request is in the handler, waiting for its body (see the module's docstring)."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn.sendall(b"POST /v2/models/scale/versions/1/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nX-Request-ID: in-flight\r\nExpect: 100-continue\r\n"
                 b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n")
    interim = b""
    while not interim.endswith(b"\r\n\r\n"):
        chunk = conn.recv(1)
        assert chunk, interim
        interim += chunk
    assert interim.startswith(b"HTTP/1.1 100"), interim  # the handler is now waiting for the body
    return conn


def _finish_rest_request(conn: socket.socket) -> None:
    """Send the held request's body; its answer must be the model's."""
    with conn:
        conn.sendall(BODY)
        response = b""
        while chunk := conn.recv(65536):  # the server closes the connection after this last answer
            response += chunk
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response
    assert b"x-request-id: in-flight" in head.lower()
    assert json.loads(payload)["outputs"][0]["data"] == [1, 4, 9, 16]


def _status(port: int, path: str) -> int | None:
    """The status of GET `path` on a new connection; None if the connection is refused."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            return int(conn.recv(65536).split(b" ", 2)[1])
    except ConnectionRefusedError:
        return None


def test_sigterm_turns_readiness_503_then_lets_an_in_flight_request_finish(repository: Path, tmp_path: Path) -> None:
    env = dict(os.environ, WASINFER_HOME=str(tmp_path / "home"), COLUMNS="200")
    process = subprocess.Popen(
        [sys.executable, "-m", "wasinfer.cli.main", "serve", "--model-repository", str(repository),
         "--http-port", "0", "--grpc-port", "0", "--drain-delay-s", "4", "--header-timeout-s", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        output = "".join(read_until(output_lines(process), "Press Ctrl+C", timeout=60))
        match = re.search(r"REST  http://127\.0\.0\.1:(\d+)/v2", output)
        assert match, output
        port = int(match[1])
        assert _status(port, "/v2/health/ready") == 200
        conn = _hold_rest_request(port)
        process.send_signal(signal.SIGTERM)
        # Readiness goes 503 while the port still accepts (the drain delay); liveness does not.
        seen, deadline = [], time.monotonic() + 20
        while time.monotonic() < deadline and (not seen or seen[-1] == 200):
            seen.append(_status(port, "/v2/health/ready"))
            time.sleep(0.05)
        assert seen[-1] == 503, seen  # None: the port closed with readiness never saying so
        assert _status(port, "/v2/health/live") in (200, None)  # None: the drain delay is over
        assert _refuses_connections(port, timeout=30), "the server never stopped accepting connections"
        time.sleep(OLD_GRACE + 1)  # past what the request in flight was once given
        assert process.poll() is None  # still finishing the request
        _finish_rest_request(conn)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_stop_lets_in_flight_rest_and_grpc_requests_finish_past_the_old_grace(repository: Path) -> None:
    """Server.stop() with the default grace: both ports refuse new work at once, and the REST request and gRPC
    call in flight are answered, not cut off, though they finish after the 5 s that stop() once allowed.

    The gRPC call is held inside the handler (the model lookup waits for an event), so it is certainly in
    flight when stop() starts; both are released only once new connections and calls are refused.
    """
    running = start_server(repository, header_timeout_seconds=60)  # a body held back 10 s is not cut off
    assert running.config.grace() == 35  # the 30 s deadline and 5 s
    entered, release = threading.Event(), threading.Event()
    lookup = running.manager.get

    def held(name: str, version: str = "") -> Any:
        entered.set()
        release.wait(60)
        return lookup(name, version)

    running.manager.get = held  # type: ignore[method-assign]
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{running.grpc_port}")
    x = grpcclient.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))
    answers: list[Any] = []
    call = threading.Thread(target=lambda: answers.append(client.infer("scale", [x], model_version="1")))
    stopper = threading.Thread(target=running.stop)
    conn = _hold_rest_request(running.http_port)
    try:
        call.start()
        assert entered.wait(30)
        stopper.start()
        assert _grpc_refuses_calls(running.grpc_port, timeout=20)
        assert _refuses_connections(running.http_port, timeout=20)
        time.sleep(OLD_GRACE + 1)
        assert call.is_alive() and stopper.is_alive()  # still waiting for their answers
    finally:
        release.set()
        _finish_rest_request(conn)
        call.join(30)
        stopper.join(40)
        client.close()
    [answer] = answers
    np.testing.assert_array_equal(answer.as_numpy("y"), [[1, 2, 3, 4]])
    assert not stopper.is_alive()


def _grpc_refuses_calls(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            probe.is_server_live(client_timeout=2)
        except InferenceServerException:
            return True
        finally:
            probe.close()
        time.sleep(0.05)
    return False


def test_a_request_still_running_when_the_grace_period_ends_gets_a_json_503(repository: Path) -> None:
    """Past --shutdown-grace-s the request is cut off, but answered in JSON like every other failure, not with
    uvicorn's bare text 500."""
    running = start_server(repository, shutdown_grace_seconds=1, header_timeout_seconds=60)
    conn = _hold_rest_request(running.http_port)  # never gets its body
    stopper = threading.Thread(target=running.stop)
    try:
        stopper.start()
        with conn:
            response = b""
            while chunk := conn.recv(65536):
                response += chunk
    finally:
        stopper.join(30)
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), response
    assert b"x-request-id: in-flight" in head.lower()
    assert "grace period (--shutdown-grace-s) ran out" in json.loads(payload)["error"]
    assert not stopper.is_alive()


def test_while_draining_readiness_is_503_and_keep_alive_connections_are_closed_after_their_answer(
        repository: Path) -> None:
    """During the drain delay everything is still served, but readiness says 503 / not ready, and each answer
    closes its connection, so no client's next request races the final close of an idle keep-alive connection."""
    running = start_server(repository, drain_delay_seconds=4)
    stopper = threading.Thread(target=running.stop, kwargs={"grace": 2})
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{running.grpc_port}")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=10) as http:
            assert http.get("/v2/health/live").headers.get("connection") != "close"  # kept alive
            assert client.is_server_ready()
            stopper.start()
            deadline = time.monotonic() + 20
            while _status(running.http_port, "/v2/health/ready") == 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            ready = http.get("/v2/health/ready")
            assert ready.status_code == 503 and "shutting down" in ready.json()["error"]
            assert ready.headers["connection"] == "close"
            assert not client.is_server_ready()  # gRPC says so too, and still answers meanwhile
            assert health_check(running.grpc_port, SERVICE) == "NOT_SERVING"  # and Kubernetes' gRPC probe
            inferred = http.post("/v2/models/scale/versions/1/infer", content=BODY)  # still served
            assert inferred.status_code == 200 and inferred.headers["connection"] == "close"
    finally:
        stopper.join(30)
        client.close()
    assert not stopper.is_alive()


def test_a_call_that_cannot_be_interrupted_does_not_keep_the_process_from_exiting(tmp_path: Path) -> None:
    """With --deadline-ms 0 nothing stops a looping wasm call, and Python waits for its worker thread before
    exiting: the process still ends a few seconds after the grace period, saying why, with exit code 1."""
    wasm = tmp_path / "repository" / "loop" / "1" / "model.wasm"
    wasm.parent.mkdir(parents=True)
    wasm.write_bytes(looping_module())
    process = subprocess.Popen(
        [sys.executable, "-m", "wasinfer.cli.main", "serve", "--model-repository", str(wasm.parents[2]),
         "--http-port", "0", "--grpc-port", "0", "--deadline-ms", "0", "--shutdown-grace-s", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, WASINFER_HOME=str(tmp_path / "home"), COLUMNS="200"))
    lines = output_lines(process)
    try:
        output = "".join(read_until(lines, "Press Ctrl+C", timeout=60))
        match = re.search(r"gRPC  127\.0\.0\.1:(\d+)", output)
        assert match, output
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{match[1]}")
        x = grpcclient.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(np.array([[-1, 0, 0, 0]], np.float32))  # a negative first element loops for ever
        errors: list[Exception] = []

        def call() -> None:
            try:
                client.infer("loop", [x], client_timeout=120)
            except InferenceServerException as exc:
                errors.append(exc)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        time.sleep(2)  # the call is loaded and looping (were it not yet, the exit would only be quicker)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 1  # before: never, until killed
        assert "exiting without it" in "".join(read_until(lines, "exiting without it", timeout=10))
        caller.join(30)
        assert errors  # the call was cut off, not answered
        client.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
