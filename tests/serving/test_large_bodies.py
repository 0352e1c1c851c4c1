"""Big requests cost bounded memory and never stall the server: the health check still answers at
once while two 56 MiB JSON bodies (28 million values each, under the default 64 MiB body limit) arrive
and are refused, or while a 48 MiB gRPC message of typed contents is decoded; and a body over the
limit gets its 413 rather than a reset connection.

The server runs as a process of its own, so its peak resident memory (VmHWM, reset through
/proc/PID/clear_refs just before the requests) is its alone, and the health client does not share
its interpreter. Parsed, each JSON body took a gigabyte and held the interpreter for seconds;
counted before parsing, it takes about twice its size (read and joined) and a few milliseconds at a
time. On a loaded 2-core machine the health check now takes at most 0.07-0.25 s and the server grows
by ~220 MiB, where it took 2.8-3.6 s and grew by ~1000 MiB before: the bounds below (1 s, 400 MiB)
sit between, well clear of both.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import numpy as np

from tests.processes import output_lines, read_until, stop
from tests.serving.conftest import MAX_BODY, start_server
from wasinfer.serving.descriptors import messages
from wasinfer.serving.grpc_api import SERVICE

VALUES = 28 * 1024 * 1024  # "1," each: 56 MiB
SMALL = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def _status_kib(pid: int, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match, field
    return int(match[1])


@contextmanager
def _serve(repository: Path, home: Path) -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    """`wasinfer serve` as a process, with `scale` loaded: (process, REST port, gRPC port)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "wasinfer.cli.main", "serve", "--model-repository", str(repository),
         "--http-port", "0", "--grpc-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, WASINFER_HOME=str(home), COLUMNS="200"))
    try:
        output = "".join(read_until(output_lines(process), "Press Ctrl+C", timeout=60))
        rest, grpc_port = re.search(r"REST  http://127\.0\.0\.1:(\d+)/v2", output), re.search(
            r"gRPC  127\.0\.0\.1:(\d+)", output)
        assert rest and grpc_port, output
        assert httpx.post(f"http://127.0.0.1:{rest[1]}/v2/models/scale/infer", json=SMALL,
                          timeout=60).status_code == 200
        yield process, int(rest[1]), int(grpc_port[1])
    finally:
        stop(process, grace=60)


def _health_while(port: int, busy: list[threading.Thread]) -> list[float]:
    """Start `busy`, and time GET /v2/health/ready back to back until they end (bounded in count and time)."""
    for thread in busy:
        thread.start()
    latencies: list[float] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as health:
        deadline = time.monotonic() + 120
        while any(t.is_alive() for t in busy) and time.monotonic() < deadline and len(latencies) < 20_000:
            started = time.perf_counter()
            assert health.get("/v2/health/ready").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.01)
    for thread in busy:
        thread.join(60)
    return latencies


def test_two_huge_json_bodies_are_refused_before_parsing_and_health_keeps_answering(repository: Path,
                                                                                      tmp_path: Path) -> None:
    with _serve(repository, tmp_path / "home") as (process, port, _):
        body = (b'{"inputs": [{"name": "x", "shape": [1, %d], "datatype": "FP32", "data": [' % VALUES
                + b"1," * (VALUES - 1) + b"1]}]}")
        request = (b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body)) + body
        answers: list[bytes] = []

        def send() -> None:  # one sendall, which lets go of the interpreter: the health client is not slowed
            with socket.create_connection(("127.0.0.1", port), timeout=120) as conn:
                conn.sendall(request)
                answer = b""
                while chunk := conn.recv(65536):  # a 413 closes the connection
                    answer += chunk
            answers.append(answer)

        Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        before = _status_kib(process.pid, "VmHWM")
        latencies = _health_while(port, [threading.Thread(target=send) for _ in range(2)])
        grown_mib = (_status_kib(process.pid, "VmHWM") - before) / 1024
        assert len(answers) == 2
        # Parsed, the two bodies grew the server by ~1000 MiB and held health up for 3.6 s; now ~220 MiB and 0.07 s.
        assert grown_mib < 400, f"the server grew by {grown_mib:.0f} MiB for two {len(body) >> 20} MiB bodies"
        assert len(latencies) >= 5, latencies
        assert max(latencies) < 1.0, sorted(latencies)[-10:]
        assert [a[:12] for a in answers] == [b"HTTP/1.1 413"] * 2, [a[:300] for a in answers]
        assert b"more than 1048576 values (commas; --max-json-values)" in answers[0]
        assert httpx.post(f"http://127.0.0.1:{port}/v2/models/scale/infer", json=SMALL, timeout=60).status_code == 200


def test_a_big_grpc_message_of_typed_contents_does_not_hold_up_health(repository: Path, tmp_path: Path) -> None:
    m = messages()
    values = 12 * 1024 * 1024  # 48 MiB of fp32_contents
    tensor = m["ModelInferRequest"].InferInputTensor(name="x", datatype="FP32", shape=[values // 4, 4])
    tensor.contents.fp32_contents.extend(np.ones(values, np.float32).tolist())
    message = m["ModelInferRequest"](model_name="scale", inputs=[tensor]).SerializeToString()
    with _serve(repository, tmp_path / "home") as (_, port, grpc_port):
        codes: list[str] = []

        def call() -> None:
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=[
                    ("grpc.max_send_message_length", -1)]) as channel:
                infer = channel.unary_unary(f"/{SERVICE}/ModelInfer", request_serializer=lambda raw: raw,
                                            response_deserializer=m["ModelInferResponse"].FromString)
                try:
                    infer(message, timeout=120)
                    codes.append("OK")
                except grpc.RpcError as exc:
                    codes.append(exc.code().name)  # type: ignore[attr-defined]

        latencies = _health_while(port, [threading.Thread(target=call)])
        # Decoded in one np.array() call, the contents held health up for seconds.
        assert len(latencies) >= 5, latencies
        assert max(latencies) < 1.0, sorted(latencies)[-10:]
        assert codes == ["INVALID_ARGUMENT"]  # decoded, then refused: 3 million rows is past the model's batch


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
