"""Graceful shutdown: SIGTERM (REST, as a process) and Server.stop() (gRPC, in-process) let a request
already in flight finish before the server goes away.

The request is held in flight by the client itself: it sends the headers with `Expect:
100-continue` and waits for the server's "100 Continue" (the handler is running and waiting
for the body), the server is signalled, and the body goes only once the server has stopped
accepting connections (so the signal has certainly been handled). No model has to be slow
and nothing depends on timing.
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

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.processes import output_lines, read_until
from tests.serving.conftest import start_server


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


def test_sigterm_lets_an_in_flight_request_finish(repository: Path, tmp_path: Path) -> None:
    env = dict(os.environ, WASINFER_HOME=str(tmp_path / "home"), COLUMNS="200")
    process = subprocess.Popen(
        [sys.executable, "-m", "wasinfer.cli.main", "serve", "--model-repository", str(repository),
         "--http-port", "0", "--grpc-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        output = "".join(read_until(output_lines(process), "Press Ctrl+C", timeout=60))
        match = re.search(r"REST  http://127\.0\.0\.1:(\d+)/v2", output)
        assert match, output
        port = int(match[1])
        body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                       "data": [1, 2, 3, 4]}]}).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"POST /v2/models/scale/versions/1/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nX-Request-ID: in-flight\r\nExpect: 100-continue\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
            interim = b""
            while not interim.endswith(b"\r\n\r\n"):
                chunk = conn.recv(1)
                assert chunk, interim
                interim += chunk
            assert interim.startswith(b"HTTP/1.1 100"), interim  # the handler is now waiting for the body
            process.send_signal(signal.SIGTERM)
            assert _refuses_connections(port, timeout=20), "the server never stopped accepting connections"
            assert process.poll() is None  # still finishing the request
            conn.sendall(body)
            response = b""
            while chunk := conn.recv(65536):  # the server closes the connection after this last answer
                response += chunk
        head, _, payload = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), response
        assert b"x-request-id: in-flight" in head.lower()
        assert json.loads(payload)["outputs"][0]["data"] == [1, 4, 9, 16]
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_stop_lets_an_in_flight_grpc_call_finish(repository: Path) -> None:
    """Server.stop(): gRPC refuses new calls at once but answers the one it is running (within `grace`).

    The call is held inside the handler (the model lookup waits for an event), so it is certainly in
    flight when stop() starts; it is released only once a new call has been refused.
    """
    running = start_server(repository)
    entered, release = threading.Event(), threading.Event()
    lookup = running.manager.get

    def held(name: str, version: str = "") -> Any:
        entered.set()
        release.wait(30)
        return lookup(name, version)

    running.manager.get = held  # type: ignore[method-assign]
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{running.grpc_port}")
    x = grpcclient.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))
    answers: list[Any] = []
    call = threading.Thread(target=lambda: answers.append(client.infer("scale", [x], model_version="1")))
    stopper = threading.Thread(target=running.stop, kwargs={"grace": 20})
    try:
        call.start()
        assert entered.wait(30)
        stopper.start()
        assert _grpc_refuses_calls(running.grpc_port, timeout=20)
        assert call.is_alive()  # still waiting for its answer
    finally:
        release.set()
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
