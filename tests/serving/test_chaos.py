"""The chaos suite: hostile models hammered beside a normal one, over REST and gRPC, while probes time
what the normal model's clients and the health checks see and sample what the server holds in memory.

One `wasinfer serve` process (so its RSS is the server's alone) serves `steady`, a well-behaved module
whose requests take about 2 ms (a run of 0.5 ms: a small real model's cost), beside hostile modules
from tests/hostile.py. Each `Scenario` names one, the request that provokes it and the answers that request may get. A
`phase` runs hostile clients (bounded in count and time, 127.0.0.1 only) against some scenarios
while the probes (processes of their own: `Probe`) run, then waits for every client; the tests assert
that

- the normal model's p99 while a model that loops until its deadline is hammered is at most issue 15's
  2x its p99 alone, or its p99 alone plus NOISE_S where that is more (see NOISE_S), and the looping
  runs were demoted (workers.py: without it they took both cores for their whole deadline, 4x);
- health (REST /v2/health/live and /ready, gRPC ServerLive and ServerReady) has a p99 under
  HEALTH_P99_S there and answers within HEALTH_S every time (a shared gRPC thread pool once made
  ServerLive wait for the looping runs);
- with every hostile model and client at once, the normal model's p99 is at most max(2x its p99 with the
  same probes and no hostile client, ZOO_FLOOR_S) and health answers within HEALTH_S: the hostile clients
  there (about 1,000 requests in 3 s) and their models' runs take the cores and the interpreter that the
  normal model's requests need (measured 37-120 ms, 3-14x, on a 2-core machine shared with other work),
  which no CPU share of a model's runs gives back (docs/serving.md has the profile);
- timing bounds get ATTEMPTS attempts, each with its own baseline (within_attempts); what is not timing
  (memory, answers, demotions) is asserted on every attempt;
- the server's RSS stays within RSS_GROWTH of where the phase started, and ends within RSS_RETAINED of it
  (the memory bomb writes every page it grows, so what a faulted instance held shows);
- every hostile request got one of its scenario's answers: no hang, no dropped connection.

Hostile clients are scenarios too (huge JSON bodies, strings for numbers, headers that never end).
"""

from __future__ import annotations

import functools
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.hostile import (
    bulk_copy_module,
    looping_module,
    memory_bomb_module,
    recursing_module,
    spinning_module,
    string_input_module,
    trapping_module,
)
from tests.processes import output_lines, read_until, stop

pytestmark = pytest.mark.chaos

DEADLINE_S = 10  # the server's --deadline-ms, in seconds: how long a looping run holds its instance
# What a 2-core machine shared with other work adds to a 2 ms request's p99 by itself, measured with the
# looping model demoted (other processes, at load averages of 6-12, preempt the probe's threads): 3-45 ms
# over its p99 alone, so 2x alone alone would fail now and then with nothing wrong in the server. The
# looping model's demotion is asserted directly (wasinfer_demoted_runs_total), which no noise can pass.
NOISE_S = 0.050
ATTEMPTS = 3  # a timing bound must be broken this many times running to fail the test: see within_attempts
# Every hostile model and client at once: measured 37-120 ms on a loaded 2-core machine, so 4x and more above
# today's worst, and a twentieth of what one shared executor gave (DEADLINE_S).
ZOO_FLOOR_S = 0.5
HEALTH_P99_S = 0.100  # issue 15's target for health while the looping model is hammered, for its answers' p99
HEALTH_S = 1.0  # every health answer under attack, at most (one of a few hundred may meet a loaded machine's stall)
CAP_MB = 64  # --instance-memory-mb: the memory bomb stops here
POOL = 2  # --pool-size: instances (and worker threads) per model
RSS_GROWTH = 512 << 20  # a phase's peak over its start: bombs at the cap on every instance, and slack
RSS_RETAINED = 192 << 20  # a phase's end over its start: what faulted instances grew is given back (row 1)
HOSTILE_CLIENTS = 12  # on one looping model: 6x its instances
WINDOW_S = 3.0  # how long hostile clients start new requests and the probes measure
MAX_REQUESTS = 2000  # per client and phase: every loop here is bounded in count as well as time
CLIENT_TIMEOUT_S = 60.0  # no answer within this is a hang, and fails the test
X = np.array([[1, 2, 3, 4]], np.float32)
HEADER_TIMEOUT_S = 2  # --header-timeout-s: a slow-header client is cut off after this
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class Scenario:
    """A hostile model: the module, the input that provokes it, and the answers that input may get.

    A hostile client (a scenario about requests rather than a module) gives `request`, which sends its
    request on the client's connection and returns (status, message) as `Client.provoke` does."""

    name: str
    module: Callable[[], bytes] | None  # None: a hostile client of `steady`
    rest: frozenset[int]  # HTTP statuses
    grpc: frozenset[str]  # gRPC status names
    provoke: np.ndarray = field(default_factory=lambda: X)
    loads: bool = True  # False: the module is refused at load, and every request with it
    request: Callable[[Client], tuple[str, str]] | None = None
    protocols: tuple[str, ...] = ("rest", "grpc")  # where it attacks

    def allows(self, protocol: str, status: str) -> bool:
        return status in ({str(code) for code in self.rest} if protocol == "rest" else self.grpc)


@functools.cache
def huge_json_body() -> bytes:
    """2.4 M values (4.8 MB), over the default --max-json-values of 1 Mi."""
    return (b'{"inputs":[{"name":"x","shape":[600000,4],"datatype":"FP32","data":[' + b",".join([b"0"] * 2_400_000)
            + b"]}]}")


def huge_json(client: Client) -> tuple[str, str]:
    """rel-http, row 5: more JSON values than --max-json-values, refused (413) before they are parsed."""
    response = client.http.post("/v2/models/steady/infer", content=huge_json_body(),
                                headers={"content-type": JSON_TYPE})
    return str(response.status_code), response.text


def strings_for_numbers(client: Client) -> tuple[str, str]:
    """rel-http, row 7: "nan" and "false" where FP32 numbers go (numpy once read them as NaN and True): 400."""
    response = client.http.post("/v2/models/steady/infer", json={"inputs": [
        {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ["nan", "false", 1, 2]}]})
    return str(response.status_code), response.text


def slow_headers(client: Client) -> tuple[str, str]:
    """rel-http, row 11: a client that starts a request and never finishes its headers gets 408 after
    --header-timeout-s, and the server its connection back."""
    with socket.create_connection(("127.0.0.1", client.http_port), timeout=CLIENT_TIMEOUT_S) as conn:
        conn.sendall(b"POST /v2/models/steady/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ")
        answer = conn.recv(4096)
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "no answer"
    return status, answer.decode("latin-1")


LOOP = Scenario("loop", looping_module, frozenset({504}), frozenset({"StatusCode.DEADLINE_EXCEEDED"}), provoke=-X)
# A hostile model whose runs fault has its requests refused by its fault breaker (breaker.py) once most of its
# recent runs faulted: 503 / UNAVAILABLE. Not `loop`'s: its config.json turns its breaker off (LOOP_CONFIG).
OPENED, UNAVAILABLE = 503, "StatusCode.UNAVAILABLE"
# The looping model's tests are about its runs' demotion, every one of which must run: with its breaker on, the
# runs of an attempt would open it for the next (two runs per attempt, five faults open it).
LOOP_CONFIG = '{"fault_breaker": false}'
SCENARIOS = [
    LOOP,
    Scenario("huge-json", None, frozenset({413}), frozenset(), request=huge_json, protocols=("rest",)),
    Scenario("strings-for-numbers", None, frozenset({400}), frozenset(), request=strings_for_numbers,
             protocols=("rest",)),
    Scenario("slow-headers", None, frozenset({408}), frozenset(), request=slow_headers, protocols=("rest",)),
    Scenario("bomb", lambda: memory_bomb_module(fill=True), frozenset({500, OPENED}),
             frozenset({"StatusCode.INTERNAL", UNAVAILABLE})),
    Scenario("trap", trapping_module, frozenset({500, OPENED}), frozenset({"StatusCode.INTERNAL", UNAVAILABLE})),
    Scenario("recurse", recursing_module, frozenset({500, OPENED}), frozenset({"StatusCode.INTERNAL", UNAVAILABLE})),
    Scenario("bulk", lambda: bulk_copy_module(256), frozenset({504, OPENED}),
             frozenset({"StatusCode.DEADLINE_EXCEEDED", UNAVAILABLE})),
    Scenario("strings", string_input_module, frozenset({503}), frozenset({"StatusCode.UNAVAILABLE"}), loads=False),
]


@dataclass
class Served:
    process: subprocess.Popen[str]
    http_port: int
    grpc_port: int

    def rss(self) -> int:
        """The server process's resident memory, in bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        assert match, status
        return int(match[1]) * 1024

    def client(self, protocol: str) -> Client:
        return Client(protocol, self.http_port, self.grpc_port)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("chaos")
    modules = {"steady": lambda: spinning_module(1_500_000),
               **{s.name: s.module for s in SCENARIOS if s.module is not None}}
    for name, module in modules.items():
        path = root / "repository" / name / "1" / "model.wasm"
        path.parent.mkdir(parents=True)
        path.write_bytes(module())
    if LOOP_CONFIG:  # (benchmarks/hostile_bench.py clears it to run a server from before the breaker)
        (root / "repository" / LOOP.name / "config.json").write_text(LOOP_CONFIG)
    env = dict(os.environ, WASINFER_HOME=str(root / "home"), COLUMNS="200")
    process = subprocess.Popen(
        [sys.executable, "-m", "wasinfer.cli.main", "serve", "--model-repository", str(root / "repository"),
         "--http-port", "0", "--grpc-port", "0", "--pool-size", str(POOL), "--deadline-ms", str(DEADLINE_S * 1000),
         "--instance-memory-mb", str(CAP_MB), "--header-timeout-s", str(HEADER_TIMEOUT_S), "--log-level", "error"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        output = "".join(read_until(output_lines(process), "Press Ctrl+C", timeout=120))
        rest, grpc = re.search(r"REST  http://127\.0\.0\.1:(\d+)/v2", output), re.search(r"gRPC  127\.0\.0\.1:(\d+)",
                                                                                       output)
        assert rest and grpc, output
        server = Served(process, int(rest[1]), int(grpc[1]))
        with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=CLIENT_TIMEOUT_S) as http:
            refused = {s.name for s in SCENARIOS if not s.loads}
            for name in modules:  # loads first: the phases are about runs, not cold starts
                status = http.post(f"/v2/repository/models/{name}/load").status_code
                assert status == (503 if name in refused else 200), name
        yield server
    finally:
        process.kill()
        process.wait(timeout=30)


# --- clients ---------------------------------------------------------------------------------------


def rest_infer(http: httpx.Client, model: str, x: np.ndarray) -> httpx.Response:
    return http.post(f"/v2/models/{model}/infer", json={"inputs": [{"name": "x", "shape": list(x.shape),
                                                                     "datatype": "FP32", "data": x.ravel().tolist()}]})


def grpc_infer(client: grpcclient.InferenceServerClient, model: str, x: np.ndarray,
               timeout: float = CLIENT_TIMEOUT_S) -> np.ndarray:
    tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    output = client.infer(model, [tensor], client_timeout=timeout).as_numpy("y")
    assert output is not None
    return output


class Client:
    """Either protocol, one connection: `steady()` and `provoke()` return what the caller must check."""

    def __init__(self, protocol: str, http_port: int, grpc_port: int):
        self.protocol, self.http_port = protocol, http_port
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=CLIENT_TIMEOUT_S)
        self.grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")

    def steady(self) -> None:
        """One normal request; fails the test unless answered correctly."""
        if self.protocol == "rest":
            response = rest_infer(self.http, "steady", X)
            assert response.status_code == 200, response.text
            assert response.json()["outputs"][0]["data"] == X.ravel().tolist()
        else:
            np.testing.assert_array_equal(grpc_infer(self.grpc, "steady", X), X)

    def provoke(self, scenario: Scenario, timeout: float = CLIENT_TIMEOUT_S) -> tuple[str, str]:
        """One hostile request: (its status, as Scenario.rest or .grpc names it, the error message)."""
        if scenario.request is not None:
            return scenario.request(self)
        if self.protocol == "rest":
            response = rest_infer(self.http, scenario.name, scenario.provoke)
            return str(response.status_code), response.text
        try:
            grpc_infer(self.grpc, scenario.name, scenario.provoke, timeout)
        except InferenceServerException as exc:
            return str(exc.status()), exc.message() or ""
        return "OK", ""

    def connect(self) -> None:
        """Open the connection its protocol uses (a liveness call), so that its first request does not pay for it."""
        if self.protocol == "rest":
            assert self.http.get("/v2/health/live").status_code == 200
        else:
            assert self.grpc.is_server_live(client_timeout=CLIENT_TIMEOUT_S)

    def health(self) -> None:
        if self.protocol == "rest":
            for path in ("/v2/health/live", "/v2/health/ready"):
                assert self.http.get(path).status_code == 200, path
        else:
            assert self.grpc.is_server_live(client_timeout=CLIENT_TIMEOUT_S)
            assert self.grpc.is_server_ready(client_timeout=CLIENT_TIMEOUT_S)

    def close(self) -> None:
        self.http.close()
        self.grpc.close()


def timed(calls: Callable[[], None], until: float, every: float = 0.0) -> list[float]:
    """Seconds each call took, calling again and again until `until` (time.monotonic()), a call at most `every`
    seconds (0: back to back); the last call started before it is always waited for and counted, so a stuck call
    shows as the time it took."""
    took: list[float] = []
    while time.monotonic() < until and len(took) < MAX_REQUESTS:
        started = time.perf_counter()
        calls()
        took.append(time.perf_counter() - started)
        if every:
            time.sleep(max(0.0, started + every - time.perf_counter()))
    return took


def p99(seconds: list[float]) -> float:
    assert seconds, "no requests were timed"
    return float(np.quantile(seconds, 0.99, method="higher"))


PROBES = {"steady": Client.steady, "health": Client.health}
# A health round (live and ready) every 10 ms: a hundred times a second, where a kubelet probes every few seconds,
# so a stall shows at once. Back to back, the health probe was itself the load: over REST its client process and the
# server's event loop, busy with its requests, raised the normal model's p99 3-5x with no hostile client at all
# (benchmarks/hostile_bench.py's `probes` baseline, 2026-12-08), which no hostile model can be judged against.
PROBE_EVERY_S = {"steady": 0.0, "health": 0.010}
PROBE_START_S = 120  # a probe process imports numpy, httpx and tritonclient, and warms its connection, within this


class Probe:
    """One probe (`PROBES[key]`: the normal model's requests or health checks) in a process of its own, as a real
    client of the server would be: in the test's process it would share the interpreter with the hostile
    clients' threads, so what it timed would include their Python work, not only the server's. (Measured on a
    loaded 2-core machine, the zoo's steady p99 was 50-90 ms either way: the server, not the test, is the
    bottleneck there; the separation keeps it that way.) It warms its connection, then times calls from
    `start(until)` until `until` (time.monotonic(), the same clock in every process on Linux)."""

    def __init__(self, served: Served, protocol: str, key: str):
        self.key = key
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.serving.test_chaos", protocol, str(served.http_port), str(served.grpc_port),
             key], cwd=Path(__file__).parents[2], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines = output_lines(self.process)

    def _line(self, timeout: float) -> list[str]:
        """The probe's next line, split: it prints only "ready", then "took" and its times, or "failed" and why."""
        return read_until(self.lines, "", timeout)[-1].split()

    def __enter__(self) -> Probe:
        try:
            line = self._line(PROBE_START_S)
            assert line == ["ready"], f"the {self.key} probe did not start: {' '.join(line)}"
        except BaseException:
            stop(self.process, grace=10)
            raise
        return self

    def start(self, until: float) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{until!r}\n")
        self.process.stdin.flush()

    def took(self) -> list[float]:
        """Seconds each call took; fails the test with the probe's error if one failed."""
        line = self._line(WINDOW_S + 2 * CLIENT_TIMEOUT_S)
        assert line[0] == "took", f"the {self.key} probe failed: {' '.join(line)}"
        return [float(t) for t in line[1:]]

    def __exit__(self, *exc: object) -> None:
        stop(self.process, grace=10)


def probe_main(protocol: str, http_port: int, grpc_port: int, key: str) -> None:
    """A probe process's life (`python -m tests.serving.test_chaos PROTOCOL HTTP_PORT GRPC_PORT KEY`)."""
    client = Client(protocol, http_port, grpc_port)
    call = PROBES[key]
    try:
        call(client)  # a warm connection before the attack starts
        print("ready", flush=True)
        until = float(sys.stdin.readline())
        took = timed(lambda: call(client), until, PROBE_EVERY_S[key])
        print("took", *took, flush=True)
    except BaseException as exc:  # the test reports it
        print("failed", repr(exc).replace("\n", " "), flush=True)
    finally:
        client.close()


@dataclass
class Observed:
    steady: list[float]  # seconds per normal request
    health: list[float]  # seconds per health round (live and ready)
    rss: list[int]  # samples, bytes, from before the phase to after it
    hostile: list[tuple[Scenario, str, str]]  # (scenario, status, message) per hostile request

    def unexpected(self, protocol: str) -> list[tuple[str, str, str]]:
        """Hostile requests answered with something their scenario does not allow."""
        return [(s.name, status, message) for s, status, message in self.hostile if not s.allows(protocol, status)]


def phase(served: Served, attack: list[Scenario], protocol: str, per_scenario: int,
          hostile_timeout: float = CLIENT_TIMEOUT_S, hostile_nice: int = 0) -> Observed:
    """Hammer `attack` (each by `per_scenario` clients) over `protocol` for WINDOW_S while the probes run over it.

    `hostile_nice`: the hostile clients' threads run at this nice value (Linux keeps one per thread). The suite
    keeps 0, so its clients' own CPU (1.2 ms per REST request in httpx, 0.5 ms over gRPC) competes with the probes
    and the server on the test machine's cores, as an attacker's does not; benchmarks/hostile_bench.py
    --hostile-nice 19 leaves them only what the probes and the server do not use (the server's work for their
    requests keeps its own priority)."""
    until = 0.0  # set once the probes' connections are warm
    rss, stop = [served.rss()], threading.Event()
    hostile: list[tuple[Scenario, str, str]] = []
    failures: list[BaseException] = []

    def run(target: Callable[[], None]) -> Callable[[], None]:
        def wrapped() -> None:
            try:
                target()
            except BaseException as exc:  # reported by the test below, not lost on a thread
                failures.append(exc)
        return wrapped

    def attacker(scenario: Scenario, client: Client) -> Callable[[], None]:
        def attack_loop() -> None:
            if hostile_nice:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), hostile_nice)
            for _ in range(MAX_REQUESTS):
                if time.monotonic() >= until:
                    break
                status, message = client.provoke(scenario, hostile_timeout)
                hostile.append((scenario, status, message))
        return attack_loop

    def sample() -> None:
        while not stop.wait(0.1):
            rss.append(served.rss())

    # The hostile clients are built and connected before the window, as the probes are: a client's httpx.Client
    # costs 50 ms of CPU (its TLS context), and twelve built inside the window took one of the 2 cores from the
    # probes and the server for its first 0.6 s, which no server could give back (benchmarks/hostile_bench.py).
    clients = [(s, served.client(protocol)) for s in attack if protocol in s.protocols for _ in range(per_scenario)]
    try:
        with Probe(served, protocol, "steady") as steady, Probe(served, protocol, "health") as health:
            for _, client in clients:  # once the probes are ready: within the server's keep-alive time-out
                client.connect()
            until = time.monotonic() + WINDOW_S
            attackers = [threading.Thread(target=run(attacker(s, client)), daemon=True) for s, client in clients]
            for thread in attackers:
                thread.start()
            time.sleep(0.3)  # the hostile requests are in before the probes start
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            for probe in (steady, health):
                probe.start(until)
            results = {probe.key: probe.took() for probe in (steady, health)}
            for thread in attackers:
                thread.join(WINDOW_S + 2 * CLIENT_TIMEOUT_S)
                assert not thread.is_alive(), "a client is still waiting: the server hangs"
    finally:
        for _, client in clients:
            client.close()
    stop.set()
    sampler.join(10)
    rss.append(served.rss())
    if failures:
        raise failures[0]
    return Observed(results["steady"], results["health"], rss, hostile)


def alone(served: Served, protocol: str) -> float:
    """The normal model's p99 with nothing else running."""
    client = served.client(protocol)
    try:
        client.steady()
        return p99(timed(client.steady, time.monotonic() + 1.5))
    finally:
        client.close()


def assert_sound(observed: Observed, protocol: str) -> None:
    """What no load on the machine excuses, checked on every attempt: memory, and every hostile request's answer."""
    growth, retained = max(observed.rss) - observed.rss[0], observed.rss[-1] - observed.rss[0]
    assert growth <= RSS_GROWTH, f"RSS grew by {growth >> 20} MiB"
    assert retained <= RSS_RETAINED, f"RSS kept {retained >> 20} MiB after the attack"
    assert not observed.unexpected(protocol), observed.unexpected(protocol)[:5]


def timing_misses(observed: Observed, baseline: float, protocol: str, bound: float, health_p99: float) -> list[str]:
    """The timing bounds `observed` breaks (printed with what it measured); `within_attempts` decides."""
    under = p99(observed.steady)
    print(f"{protocol}: steady p99 alone {baseline * 1000:.1f} ms, under attack {under * 1000:.1f} ms "
          f"({under / baseline:.1f}x; bound {bound * 1000:.0f} ms, {len(observed.steady)} requests); health p99 "
          f"{p99(observed.health) * 1000:.1f} ms, max {max(observed.health) * 1000:.1f} ms over "
          f"{len(observed.health)}; RSS {observed.rss[0] >> 20} → max {max(observed.rss) >> 20} → "
          f"{observed.rss[-1] >> 20} MiB; {len(observed.hostile)} hostile requests")
    misses = []
    if under > bound:
        misses.append(f"{protocol}: the normal model's p99 rose to {under:.3f} s ({under / baseline:.1f}x its p99 "
                      f"alone, {baseline:.3f} s; bound {bound:.3f} s)")
    if p99(observed.health) > health_p99:
        misses.append(f"{protocol}: health checks' p99 rose to {p99(observed.health):.3f} s")
    if max(observed.health) > HEALTH_S:
        misses.append(f"{protocol}: a health check took {max(observed.health):.3f} s")
    return misses


def within_attempts(attempt: Callable[[], list[str]]) -> None:
    """Run `attempt` (measure a baseline, then the attack, assert what is not timing, return the timing bounds
    it broke) until one keeps every bound, at most ATTEMPTS times. The other work on a loaded 2-core machine
    (the full suite beside this test, other sessions) can stall the probes for tens of milliseconds now and
    then, which nothing in the server causes or can prevent; a server that breaks the bounds breaks them on
    every attempt. Each attempt re-measures its baseline, so a bound is never checked against a calm moment."""
    misses: list[list[str]] = []
    for _ in range(ATTEMPTS):
        missed = attempt()
        if not missed:
            return
        misses.append(missed)
    pytest.fail(f"every one of {ATTEMPTS} attempts broke a timing bound: {misses}")


# --- the tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_a_model_looping_until_its_deadline_leaves_other_models_and_health_alone(served: Served,
                                                                                  protocol: str) -> None:
    """Issue 15 rows 2 and 3 and its 2x target: clients on a model that loops until its deadline, more than its
    instances and more than the gRPC threads one shared pool used to have (8 on 2 cores). Its runs are demoted
    once they pass --demote-after-ms, so they leave the cores to the normal model's runs."""

    def attempt() -> list[str]:
        baseline, demoted = alone(served, protocol), demoted_runs(served, "loop")
        observed = phase(served, [LOOP], protocol, per_scenario=HOSTILE_CLIENTS)
        assert_sound(observed, protocol)
        # Every run that started looped until its deadline, and each was demoted; the counter moves as its thread
        # ends. No run of the normal model was (workers.py: not even one a garbage collection landed in).
        assert wait_until(lambda: demoted_runs(served, "loop") - demoted >= POOL), \
            demoted_runs(served, "loop") - demoted
        assert demoted_runs(served, "steady") == 0
        return timing_misses(observed, baseline, protocol, max(2 * baseline, baseline + NOISE_S), HEALTH_P99_S)

    within_attempts(attempt)


def counter(served: Served, pattern: str) -> int:
    """The value of the one counter sample in /metrics that `pattern` (a regex of its name and labels) matches."""
    with httpx.Client(base_url=f"http://127.0.0.1:{served.http_port}", timeout=CLIENT_TIMEOUT_S) as http:
        metrics = http.get("/metrics").text
    match = re.search(pattern + r" ([\d.]+)", metrics)
    return int(float(match[1])) if match else 0


def deadlines_answered(served: Served) -> int:
    """How many loop requests over gRPC the server has answered DEADLINE_EXCEEDED so far."""
    return counter(served, r'wasinfer_requests_total\{model="loop",outcome="deadline",protocol="grpc",version="1"\}')


def demoted_runs(served: Served, model: str) -> int:
    """How many of the model's runs have been demoted (and have ended) so far."""
    return counter(served, rf'wasinfer_demoted_runs_total\{{model="{model}",version="1"\}}')


def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Whether `condition` holds within `seconds` (polled every 0.1 s: bounded)."""
    for _ in range(int(seconds * 10)):
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_a_grpc_call_queued_past_its_deadline_is_answered_then_not_run(served: Served) -> None:
    """Row 3: with a client deadline shorter than the server's, every call (running or still queued) is
    answered, and its work ends, at the client's deadline: nothing queued runs on after its client gave up."""
    client_deadline = 2.0
    before = deadlines_answered(served)
    observed = phase(served, [LOOP], "grpc", per_scenario=2 * POOL, hostile_timeout=client_deadline)
    assert observed.hostile and not observed.unexpected("grpc"), observed.hostile
    for _, _, message in observed.hostile:  # the server's answer, or the client library's if it came first
        stated = re.search(r"deadline of ([\d.]+) ms", message)
        assert stated is None or float(stated[1]) <= client_deadline * 1000, message
    # The server answers each call at its deadline, plus a stopped run's tick.
    assert wait_until(lambda: deadlines_answered(served) - before >= len(observed.hostile))
    assert deadlines_answered(served) - before == len(observed.hostile)
    client = served.client("grpc")  # the model's instances are free again: no stale call kept them
    try:
        np.testing.assert_array_equal(grpc_infer(client.grpc, "loop", X, timeout=DEADLINE_S / 2), X)
    finally:
        client.close()


def both_protocols(served: Served, attack: list[Scenario]) -> dict[str, Observed]:
    """A phase over REST and one over gRPC at the same time (each with its probes and its hostile clients)."""
    observed: dict[str, Observed] = {}
    errors: list[BaseException] = []

    def run(protocol: str) -> None:
        try:
            observed[protocol] = phase(served, attack, protocol, per_scenario=1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(protocol,), daemon=True) for protocol in ("rest", "grpc")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WINDOW_S + 3 * CLIENT_TIMEOUT_S)
        assert not thread.is_alive()
    if errors:
        raise errors[0]
    return observed


def test_every_hostile_model_at_once_over_rest_and_grpc(served: Served) -> None:
    """The whole zoo, both protocols at once: the normal model, health and memory as when it was alone. Its
    baseline is the same four probes (steady and health over REST and gRPC) with no hostile client: they share
    the 2 cores, so each alone would be a baseline that no attack is measured against."""

    def attempt() -> list[str]:
        baselines = {protocol: p99(seen.steady) for protocol, seen in both_protocols(served, []).items()}
        misses = []
        for protocol, seen in both_protocols(served, SCENARIOS).items():
            assert_sound(seen, protocol)
            provoked = {s.name for s in SCENARIOS if protocol in s.protocols}
            assert {s.name for s, _, _ in seen.hostile} == provoked  # every scenario was provoked
            misses += timing_misses(seen, baselines[protocol], protocol, max(2 * baselines[protocol], ZOO_FLOOR_S),
                                    HEALTH_S)
        return misses

    within_attempts(attempt)


if __name__ == "__main__":
    probe_main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
