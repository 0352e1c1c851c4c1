"""`wasinfer serve --workers 2` as a process: the two workers share the ports, /metrics and the statistics report the
node, a killed worker is replaced, SIGTERM drains every worker and SIGHUP replaces them one at a time, with no
failed request, and a desired version is fetched and installed once for the node.

Every server listens on 127.0.0.1 with ports the OS picks; every loop is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from queue import Queue

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.processes import output_lines, read_until, stop
from tests.serving.conftest import SCALE, scale_model
from wasinfer.artifact import convert_onnx

BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
WORKER = "x-wasinfer-worker"


@dataclass
class Node:
    process: subprocess.Popen[str]
    lines: Queue[str]
    http_port: int
    grpc_port: int
    pids: list[int]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"


@contextmanager
def serve(home: Path, *args: str, workers: int = 2) -> Iterator[Node]:
    env = dict(os.environ, WASINFER_HOME=str(home), COLUMNS="200", TMPDIR=str(home.parent))  # the metrics dir
    process = subprocess.Popen(
        [sys.executable, "-m", "wasinfer.cli.main", "serve", "--workers", str(workers), "--http-port", "0",
         "--grpc-port", "0", "--pool-size", "1", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = output_lines(process)
        output = "".join(read_until(lines, "Press Ctrl+C", timeout=120))
        rest = re.search(r"REST  http://127\.0\.0\.1:(\d+)/v2", output)
        grpc_port = re.search(r"gRPC  127\.0\.0\.1:(\d+)", output)
        pids = re.search(r"with \d+ worker processes \(pids ([\d ]+);", output)
        assert rest and grpc_port and pids, output
        yield Node(process, lines, int(rest[1]), int(grpc_port[1]), [int(p) for p in pids[1].split()])
    finally:
        stop(process, grace=60)


def infer_on_a_new_connection(node: Node) -> tuple[int, str]:
    """(status, the answering worker's X-Wasinfer-Worker) of one inference on a connection of its own."""
    response = httpx.post(node.url("/v2/models/scale/versions/1/infer"), json=BODY, timeout=30)
    if response.status_code == 200:
        assert response.json()["outputs"][0]["data"] == [1, 4, 9, 16]
    return response.status_code, response.headers.get(WORKER, "")


def metric(text: str, pattern: str) -> float:
    found = re.search(pattern + r" ([0-9.e+]+)\n", text)
    return float(found[1]) if found else 0.0


def node_requests(node: Node, protocol: str = "rest") -> float:
    return metric(httpx.get(node.url("/metrics"), timeout=10).text,
                  rf'wasinfer_requests_total\{{model="scale",outcome="ok",protocol="{protocol}",version="1"\}}')


def wait_for(check: object, seconds: float) -> bool:
    """Poll `check` (a callable returning a truth value) every 0.1 s for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def connections_to(pid: int, port: int) -> int:
    """Established TCP connections on local `port` whose socket the process `pid` holds (/proc; grpcio's accepted
    sockets are IPv6 ones with v4-mapped addresses, so tcp6 too)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for line in (Path("/proc/net/tcp").read_text().splitlines()[1:]
                 + Path("/proc/net/tcp6").read_text().splitlines()[1:]):
        fields = line.split()
        local_port, state, inode = int(fields[1].split(":")[1], 16), fields[3], fields[9]
        count += local_port == port and state == "01" and inode in inodes  # 01: ESTABLISHED
    return count


def test_requests_spread_over_both_workers_and_metrics_count_the_node(repository: Path, tmp_path: Path) -> None:
    with serve(tmp_path / "home", "--model-repository", str(repository)) as node:
        answered: dict[str, int] = {}
        for _ in range(200):  # bounded: stops once both workers have answered a few
            status, worker = infer_on_a_new_connection(node)
            assert status == 200
            answered[worker] = answered.get(worker, 0) + 1
            if len(answered) == 2 and min(answered.values()) >= 3:
                break
        print("REST requests per worker:", answered)
        assert {int(tag.split("/")[1]) for tag in answered} == set(node.pids)  # index/pid of each worker
        sent = sum(answered.values())
        # gRPC: SO_REUSEPORT spreads connections (not calls); channels of their own, each its own connection (grpcio
        # otherwise shares one between channels to the same address), held open until both workers have some.
        clients = []
        try:
            for _ in range(16):
                client = grpcclient.InferenceServerClient(f"127.0.0.1:{node.grpc_port}",
                                                          channel_args=[("grpc.use_local_subchannel_pool", 1)])
                clients.append(client)
                x = grpcclient.InferInput("x", [1, 4], "FP32")
                x.set_data_from_numpy(np.array([[1, 2, 3, 4]], np.float32))
                assert client.infer("scale", [x], model_version="1").as_numpy("y").tolist() == [[1, 4, 9, 16]]
            spread = {pid: connections_to(pid, node.grpc_port) for pid in node.pids}
            print("gRPC connections per worker:", spread)
            assert sum(spread.values()) == 16 and all(spread.values()), spread  # all on one: 1 in 32768
        finally:
            for client in clients:
                client.close()
        # Whichever worker answers /metrics, it reports both workers' requests (the other's within SHARE_SECONDS).
        assert wait_for(lambda: node_requests(node) == sent and node_requests(node, "grpc") == 16, 10), \
            httpx.get(node.url("/metrics")).text
        for _ in range(4):
            text = httpx.get(node.url("/metrics"), timeout=10).text
            assert node_requests(node) == sent
            assert metric(text, "wasinfer_workers") == 2
            assert metric(text, "wasinfer_models_loaded") == 2  # the model, once in each worker
        stats = httpx.get(node.url("/v2/models/scale/versions/1/stats"), timeout=10).json()["model_stats"]
        assert stats[0]["inference_stats"]["success"]["count"] == sent + 16


def test_a_killed_worker_is_replaced_and_the_server_keeps_answering(repository: Path, tmp_path: Path) -> None:
    with serve(tmp_path / "home", "--model-repository", str(repository)) as node:
        for _ in range(10):
            assert infer_on_a_new_connection(node)[0] == 200
        assert wait_for(lambda: node_requests(node) == 10, 10)
        victim = node.pids[0]
        os.kill(victim, signal.SIGKILL)
        # The other worker answers everything meanwhile: the connections queue on the supervisor's socket.
        statuses = [infer_on_a_new_connection(node) for _ in range(20)]
        assert [status for status, _ in statuses] == [200] * 20
        assert all(not tag.endswith(f"/{victim}") for _, tag in statuses[1:])
        read_until(node.lines, f"worker 0 (pid {victim}) exited with code -9", timeout=30)
        restarted = read_until(node.lines, "worker 0 restarted (pid", timeout=60)[-1]
        new_pid = int(re.search(r"restarted \(pid (\d+)\)", restarted)[1])  # type: ignore[index]
        seen = set()
        for _ in range(200):  # bounded: until the new worker has answered
            seen.add(infer_on_a_new_connection(node)[1])
            if f"0/{new_pid}" in seen:
                break
        assert f"0/{new_pid}" in seen, seen
        # The dead worker's counts stay in the node's counters (they never go down).
        assert wait_for(lambda: node_requests(node) >= 30, 10)


def _hold_request(port: int) -> socket.socket:
    """An infer request whose handler is running, waiting for its body (test_shutdown.py's hold)."""
    body = json.dumps(BODY).encode()
    conn = socket.create_connection(("127.0.0.1", port), timeout=60)
    conn.sendall(b"POST /v2/models/scale/versions/1/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    interim = b""
    while not interim.endswith(b"\r\n\r\n"):
        chunk = conn.recv(1)
        assert chunk, interim
        interim += chunk
    assert interim.startswith(b"HTTP/1.1 100"), interim
    return conn


def _finish_request(conn: socket.socket) -> bytes:
    """Send the held request's body; the whole answer."""
    with conn:
        conn.sendall(json.dumps(BODY).encode())
        response = b""
        while chunk := conn.recv(65536):
            response += chunk
    return response


def test_sigterm_drains_every_worker_and_fails_no_request_in_flight(repository: Path, tmp_path: Path) -> None:
    with serve(tmp_path / "home", "--model-repository", str(repository), "--drain-delay-s", "2",
               "--header-timeout-s", "60") as node:
        held = [_hold_request(node.http_port) for _ in range(6)]  # on both workers, as the accepts fall
        node.process.send_signal(signal.SIGTERM)
        assert wait_for(lambda: httpx.get(node.url("/v2/health/ready"), timeout=5).status_code == 503, 10)

        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", node.http_port), timeout=1).close()
            except ConnectionRefusedError:
                return True
            return False

        assert wait_for(refused, 30), "the port still accepts after every worker stopped accepting"
        assert node.process.poll() is None  # the workers still hold the requests in flight
        answers = [_finish_request(conn) for conn in held]
        assert all(answer.startswith(b"HTTP/1.1 200") for answer in answers), answers
        tags = {re.search(rb"x-wasinfer-worker: (\S+)", answer)[1] for answer in answers}  # type: ignore[index]
        print("held requests answered by", tags)
        assert node.process.wait(timeout=30) == 0


def test_sighup_replaces_the_workers_one_at_a_time_and_fails_no_rest_request(repository: Path, tmp_path: Path) -> None:
    with serve(tmp_path / "home", "--model-repository", str(repository)) as node:
        failures: list[str] = []
        answered: list[str] = []
        grpc_failures: list[str] = []
        grpc_answers: list[float] = []
        done = threading.Event()

        def rest_load() -> None:
            with httpx.Client(timeout=30) as client:  # keep-alive: moved off a retired worker by Connection: close
                for _ in range(20_000):  # bounded; stopped by the test long before
                    if done.is_set():
                        return
                    try:
                        response = client.post(node.url("/v2/models/scale/versions/1/infer"), json=BODY)
                    except httpx.HTTPError as exc:
                        failures.append(f"rest: {exc!r}")
                        continue
                    if response.status_code != 200:
                        failures.append(f"rest: {response.status_code} {response.text}")
                    answered.append(response.headers.get(WORKER, ""))

        def grpc_load() -> None:
            with grpcclient.InferenceServerClient(f"127.0.0.1:{node.grpc_port}") as client:
                x = grpcclient.InferInput("x", [1, 4], "FP32")
                x.set_data_from_numpy(np.array([[1, 2, 3, 4]], np.float32))
                for _ in range(20_000):
                    if done.is_set():
                        return
                    try:
                        client.infer("scale", [x], model_version="1", client_timeout=30)
                    except Exception as exc:  # see grpc_failures below
                        grpc_failures.append(f"grpc: {exc}")
                    else:
                        grpc_answers.append(time.monotonic())

        threads = [threading.Thread(target=rest_load) for _ in range(3)] + [threading.Thread(target=grpc_load)]
        for thread in threads:
            thread.start()
        try:
            assert wait_for(lambda: len(answered) >= 50, 30)
            node.process.send_signal(signal.SIGHUP)
            read_until(node.lines, "worker 0: pid", timeout=120)
            read_until(node.lines, "worker 1: pid", timeout=120)
            rolled = time.monotonic()
            before = len(answered)
            assert wait_for(lambda: len(answered) >= before + 50 and grpc_answers[-1] > rolled + 0.5, 30)
        finally:
            done.set()
            for thread in threads:
                thread.join(60)
        assert failures == []  # REST: not one request failed
        # gRPC: the channel reconnects to the new workers and serves on. A call that reaches a retiring worker's
        # grpcio just as its server shuts down may be CANCELLED (grpcio cancels calls it has taken in but not
        # started; docs/serving.md): a few at most, never a broken channel.
        print(f"{len(grpc_answers)} gRPC calls answered, failed: {grpc_failures}")
        assert len(grpc_failures) <= 2 and all("CANCELLED" in failure for failure in grpc_failures), grpc_failures
        old = {f"{index}/{pid}" for index, pid in enumerate(node.pids)}
        late = set(answered[-20:])
        print(f"{len(answered)} REST requests; answered last by {late}, first by {set(answered[:20])}")
        assert late and not late & old  # the last answers all came from new workers
        assert node.process.poll() is None


@pytest.fixture
def desired(tmp_path: Path) -> tuple[Path, Path]:
    module = tmp_path / "models" / "ai-model.wasm"
    module.parent.mkdir()
    module.write_bytes(convert_onnx(scale_model(SCALE[1]), max_batch=8, name="ai-model").wasm)
    config = tmp_path / "desired.json"
    config.write_text(json.dumps({"model_path": str(module), "model_version": "1.0.0",
                                  "model_update_interval": "1h"}))
    return module, config


def test_a_desired_version_is_fetched_and_installed_once_for_the_node(tmp_path: Path,
                                                                      desired: tuple[Path, Path]) -> None:
    module, config = desired
    home = tmp_path / "home"
    with serve(home, "--desired-state", str(config), workers=2) as node:
        fetches = r'wasinfer_model_fetches_total\{model="ai-model"\}'
        for _ in range(4):  # whichever worker answers (each publishes its counts once it is ready)
            text = httpx.get(node.url("/metrics"), timeout=10).text
            assert metric(text, fetches) == 1, text
        assert sorted(p.name for p in (home / "desired" / "ai-model").iterdir()) == ["1"]
        # An update: one more fetch and one more version directory, and both workers serve it.
        module.write_bytes(convert_onnx(scale_model(SCALE[2]), max_batch=8, name="ai-model").wasm)
        config.write_text(json.dumps({"model_path": str(module), "model_version": "2.0.0",
                                      "model_update_interval": "1h"}))

        def both_updated() -> bool:
            answers = {}
            for _ in range(40):
                response = httpx.post(node.url("/v2/models/ai-model/infer"), json=BODY, timeout=30)
                answers[response.headers[WORKER]] = response.json()["model_version"]
                if len(answers) == 2:
                    break
            return set(answers.values()) == {"2.0.0"} and len(answers) == 2

        assert wait_for(both_updated, 30)
        def counted() -> bool:  # the other worker's counts reach the node within SHARE_SECONDS
            text = httpx.get(node.url("/metrics"), timeout=10).text
            return metric(text, r'wasinfer_model_updates_total\{model="ai-model",outcome="ok"\}') == 3

        assert wait_for(counted, 10)  # the first worker's start (the second resumed what it installed), both to 2.0.0
        assert metric(httpx.get(node.url("/metrics"), timeout=10).text, fetches) == 2
        assert sorted(p.name for p in (home / "desired" / "ai-model").iterdir()) == ["1", "2"]


def test_workers_stop_when_their_supervisor_is_killed(repository: Path, tmp_path: Path) -> None:
    with serve(tmp_path / "home", "--model-repository", str(repository)) as node:
        node.process.send_signal(signal.SIGKILL)  # no drain, no signal to the workers: only their stdin ends
        node.process.wait(timeout=10)

        def gone() -> bool:
            return not any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in node.pids)

        assert wait_for(gone, 60), f"workers {node.pids} outlived their supervisor"


def _state(pid: int) -> str:
    """The process's state letter from /proc (Z: a zombie, exited and waiting for its parent to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.mark.parametrize(("workers", "said"), [("0", "--workers must be at least 1, got 0"),
                                               ("many", "--workers 'many': a number of processes, or auto")])
def test_a_bad_worker_count_is_refused_naming_it(repository: Path, tmp_path: Path, workers: str, said: str) -> None:
    done = subprocess.run([sys.executable, "-m", "wasinfer.cli.main", "serve", "--model-repository", str(repository),
                           "--workers", workers, "--http-port", "0", "--grpc-port", "-1"],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, WASINFER_HOME=str(tmp_path / "home"), COLUMNS="200"))
    assert done.returncode == 2
    assert said in done.stderr


def test_a_worker_that_cannot_start_stops_the_start_with_its_reason(repository: Path, tmp_path: Path) -> None:
    """--model-control-mode none loads every model before the ports open; `broken` is not a module."""
    done = subprocess.run([sys.executable, "-m", "wasinfer.cli.main", "serve", "--model-repository", str(repository),
                           "--workers", "2", "--model-control-mode", "none", "--http-port", "0", "--grpc-port", "0"],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, WASINFER_HOME=str(tmp_path / "home"), COLUMNS="200"))
    assert done.returncode == 2, done.stderr
    assert "broken" in done.stderr and "while starting" in done.stderr, done.stderr


def test_the_node_s_memory_budget_and_instances_are_split_between_the_workers(repository: Path) -> None:
    from wasinfer.serving import ServerConfig
    from wasinfer.serving.server import default_pool_size
    from wasinfer.serving.supervisor import worker_config, workers_for

    node = ServerConfig(repository, memory_budget_bytes=1000 << 20, pool_size=0)
    each = worker_config(node, 4)
    assert each.memory_budget_bytes == 250 << 20
    assert each.pool_size == max(1, default_pool_size() // 4)
    assert worker_config(ServerConfig(repository, pool_size=3), 4).pool_size == 3  # --pool-size is per worker
    assert workers_for("auto") == default_pool_size() and workers_for("3") == 3
