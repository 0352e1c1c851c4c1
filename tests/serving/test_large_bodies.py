"""Big bodies cost bounded memory and never stall the server: the health check still answers
at once while two 56 MiB JSON bodies (28 million values each, under the default 64 MiB body limit)
arrive and are refused, and a body over the limit gets its 413 rather than a reset connection.

The server runs as a process of its own, so its peak resident memory (VmHWM, reset through
/proc/PID/clear_refs just before the requests) is its alone. Parsed, each body took a gigabyte
and held the interpreter for seconds; counted before parsing, it takes about twice its size
(read and joined) and a few milliseconds at a time.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.processes import output_lines, read_until
from tests.serving.conftest import MAX_BODY, start_server

VALUES = 28 * 1024 * 1024  # "1," each: 56 MiB


def _status_kib(pid: int, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match, field
    return int(match[1])


def test_two_huge_json_bodies_are_refused_before_parsing_and_health_keeps_answering(repository: Path,
                                                                                      tmp_path: Path) -> None:
    env = dict(os.environ, WASINFER_HOME=str(tmp_path / "home"), COLUMNS="200")
    process = subprocess.Popen(
        [sys.executable, "-m", "wasinfer.cli.main", "serve", "--model-repository", str(repository),
         "--http-port", "0", "--grpc-port", "-1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        output = "".join(read_until(output_lines(process), "Press Ctrl+C", timeout=60))
        match = re.search(r"REST  http://127\.0\.0\.1:(\d+)/v2", output)
        assert match, output
        base = f"http://127.0.0.1:{match[1]}"
        small = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
        assert httpx.post(f"{base}/v2/models/scale/infer", json=small, timeout=60).status_code == 200
        body = (b'{"inputs": [{"name": "x", "shape": [1, %d], "datatype": "FP32", "data": [' % VALUES
                + b"1," * (VALUES - 1) + b"1]}]}")
        Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        before = _status_kib(process.pid, "VmHWM")
        request = (b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body)) + body
        answers: list[bytes] = []

        def send() -> None:  # one sendall, which lets go of the interpreter: the health client is not slowed
            with socket.create_connection(("127.0.0.1", int(match[1])), timeout=120) as conn:
                conn.sendall(request)
                answer = b""
                while chunk := conn.recv(65536):  # a 413 closes the connection
                    answer += chunk
            answers.append(answer)

        senders = [threading.Thread(target=send) for _ in range(2)]
        for sender in senders:
            sender.start()
        latencies: list[float] = []
        with httpx.Client(base_url=base, timeout=30) as health:
            deadline = time.monotonic() + 120
            while any(s.is_alive() for s in senders) and time.monotonic() < deadline and len(latencies) < 20_000:
                started = time.perf_counter()
                assert health.get("/v2/health/ready").status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.01)
        for sender in senders:
            sender.join(60)
        grown_mib = (_status_kib(process.pid, "VmHWM") - before) / 1024
        assert len(answers) == 2
        assert grown_mib < 400, f"the server grew by {grown_mib:.0f} MiB for two {len(body) >> 20} MiB bodies"
        # Parsed, each body held the interpreter for seconds and grew the server by a gigabyte.
        assert len(latencies) >= 5, latencies
        assert max(latencies) < 1.0, sorted(latencies)[-10:]  # 0.1 s on an idle machine
        assert [a[:12] for a in answers] == [b"HTTP/1.1 413"] * 2, [a[:300] for a in answers]
        assert b"more than 1048576 values (commas; --max-json-values)" in answers[0]
        assert httpx.post(f"{base}/v2/models/scale/infer", json=small, timeout=60).status_code == 200
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_a_body_over_the_limit_is_answered_413_not_reset(repository: Path) -> None:
    """The server refuses by Content-Length, then reads and drops the body: had it closed with the body unread,
    the kernel would reset the connection, and a client still sending would see that instead of the 413."""
    server = start_server(repository)
    try:
        body = b" " * (8 * 1024 * 1024)  # 32 times the test servers' limit, more than the socket buffers hold
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=60) as conn:
            conn.sendall(b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                         b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
        assert f"this server takes at most {MAX_BODY} (--max-body-bytes)".encode() in answer
    finally:
        server.stop(grace=2)
