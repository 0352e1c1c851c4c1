"""Connections that never finish a request (slowloris) are closed, and one client's connections can be capped.

Each test opens raw sockets to a server on loopback with a one-second header deadline, so a
connection the server never closes fails the test after BOUND seconds, an order of magnitude
later, instead of hanging it. Every loop is bounded in count and time.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.hostile import spinning_module
from tests.serving.conftest import Repo, start_server

BOUND = 30.0  # seconds a connection may take to be closed here: 30 times the deadline the tests set
PARTIAL = b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty"


def _until_closed(conn: socket.socket, deadline: float) -> bytes:
    """Everything the server sends until it closes the connection; fails if it is still open at `deadline`."""
    received = b""
    while True:
        conn.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            raise AssertionError(f"the server left the connection open (got {received!r})") from None
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def test_silent_and_partial_header_connections_are_closed_at_the_header_deadline(writable_repo: Repo) -> None:
    server = start_server(writable_repo.root, header_timeout_seconds=1)
    connections: list[socket.socket] = []
    try:
        for index in range(200):  # half send nothing, half stop inside the headers
            conn = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
            connections.append(conn)
            if index % 2:
                conn.sendall(PARTIAL)
        ready = httpx.get(f"http://127.0.0.1:{server.http_port}/v2/health/ready", timeout=10)
        assert ready.status_code == 200  # served meanwhile
        deadline = time.monotonic() + BOUND
        for conn in connections:
            answer = _until_closed(conn, deadline)
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert "did not arrive within 1 s (--header-timeout-s)" in json.loads(answer.split(b"\r\n\r\n")[1])[
                "error"]
    finally:
        for conn in connections:
            conn.close()
        server.stop(grace=2)


def test_headers_sent_a_byte_at_a_time_do_not_extend_the_deadline(writable_repo: Repo) -> None:
    server = start_server(writable_repo.root, header_timeout_seconds=1)
    try:
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as conn:
            closed = False
            for byte in (PARTIAL + b"pe: application/json\r\nX-Padding: " + b"a" * 200)[:int(BOUND / 0.2)]:
                try:
                    conn.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                if select.select([conn], [], [], 0.2)[0]:  # the server said something: its 408, then EOF
                    assert _until_closed(conn, time.monotonic() + BOUND).startswith(b"HTTP/1.1 408 ")
                    closed = True
                    break
            assert closed, "a byte every 0.2 s kept the connection open"
    finally:
        server.stop(grace=2)


def test_a_body_that_stops_arriving_is_cut_off(writable_repo: Repo) -> None:
    server = start_server(writable_repo.root, header_timeout_seconds=1)
    try:
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as conn:
            conn.sendall(b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                         b"application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\": ")  # and no more
            answer = _until_closed(conn, time.monotonic() + BOUND)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"body stopped arriving for 1 s (--header-timeout-s)" in answer
    finally:
        server.stop(grace=2)


def test_a_keep_alive_connection_is_closed_after_the_idle_timeout(writable_repo: Repo) -> None:
    server = start_server(writable_repo.root, idle_timeout_seconds=1)
    try:
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as conn:
            conn.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = _until_closed(conn, time.monotonic() + BOUND)
        assert answer.startswith(b"HTTP/1.1 200 ")
    finally:
        server.stop(grace=2)


def test_headers_over_64_kib_are_refused(writable_repo: Repo) -> None:
    server = start_server(writable_repo.root)
    try:
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as conn:
            conn.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (100 * 1024)
                         + b"\r\n\r\n")
            answer = _until_closed(conn, time.monotonic() + BOUND)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b"headers are over 65536 bytes" in answer
        # Headers that never end, in pieces: refused once past the limit, long before any time-out.
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as conn:
            conn.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            refused = False
            for index in range(200):  # up to 800 KiB
                try:
                    conn.sendall(b"X-Pad-%d: %s\r\n" % (index, b"a" * 4096))
                except (BrokenPipeError, ConnectionResetError):
                    refused = True
                    break
                if select.select([conn], [], [], 0.01)[0]:
                    refused = _until_closed(conn, time.monotonic() + BOUND).startswith(b"HTTP/1.1 431 ")
                    break
            assert refused
    finally:
        server.stop(grace=2)


def test_connections_over_the_per_client_cap_get_429(writable_repo: Repo) -> None:
    server = start_server(writable_repo.root, max_connections_per_client=3)
    held = [socket.create_connection(("127.0.0.1", server.http_port), timeout=10) for _ in range(3)]
    try:
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as fourth:
            answer = _until_closed(fourth, time.monotonic() + BOUND)
        assert answer.startswith(b"HTTP/1.1 429 "), answer
        assert b"already has 3 connections open (--max-connections-per-client)" in answer
        held.pop().close()
        deadline = time.monotonic() + BOUND  # the server counts the close when it sees it: retry until then
        response = httpx.get(f"http://127.0.0.1:{server.http_port}/v2/health/live", timeout=10)
        while response.status_code == 429 and time.monotonic() < deadline:
            time.sleep(0.05)
            response = httpx.get(f"http://127.0.0.1:{server.http_port}/v2/health/live", timeout=10)
        assert response.status_code == 200
    finally:
        for conn in held:
            conn.close()
        server.stop(grace=2)


def test_grpc_connections_without_a_handshake_are_closed(writable_repo: Repo) -> None:
    server = start_server(writable_repo.root, header_timeout_seconds=1)
    try:
        with socket.create_connection(("127.0.0.1", server.grpc_port), timeout=10) as conn:
            answer = _until_closed(conn, time.monotonic() + BOUND)  # the server's SETTINGS, then its GOAWAY
        assert b"handshake timeout" in answer, answer
    finally:
        server.stop(grace=2)


def test_grpc_calls_over_the_per_client_cap_get_resource_exhausted(tmp_path: Path) -> None:
    """grpcio admits connections in its core, so the cap counts a client's calls in progress: with two slow calls
    running, the client's third call (even a health check) is refused at once, and once they end it is served."""
    path = tmp_path / "spin" / "1" / "model.wasm"
    path.parent.mkdir(parents=True)
    path.write_bytes(spinning_module(2_000_000_000))  # seconds a run: the two calls are surely in progress
    server = start_server(tmp_path, max_connections_per_client=2, pool_size=2)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        def slow() -> None:
            x = np.ones((1, 4), np.float32)
            tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            client.infer("spin", [tensor], client_timeout=BOUND)

        assert client.is_server_live()
        runs = [threading.Thread(target=slow, daemon=True) for _ in range(2)]
        for run in runs:
            run.start()
        refused = None
        deadline = time.monotonic() + BOUND
        while refused is None and time.monotonic() < deadline and all(run.is_alive() for run in runs):
            try:
                client.is_server_live()
                time.sleep(0.02)  # the two calls have not both reached the server yet
            except InferenceServerException as exc:
                refused = exc
        assert refused is not None and refused.status() == "StatusCode.RESOURCE_EXHAUSTED", refused
        assert "this client already has 2 calls in progress" in refused.message()
        for run in runs:
            run.join(BOUND)
        assert client.is_server_live()  # the calls ended: the client is under its cap again
    finally:
        client.close()
        server.stop(grace=2)
