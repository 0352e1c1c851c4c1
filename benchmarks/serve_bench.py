"""Serving side by side: `wasinfer serve` vs MLServer (onnxruntime) vs a bare-ASGI ceiling, under one load.

One run on one machine starts each server in its own process on loopback and drives every one
with the same load, taking turns:
- wasinfer serving the digits demo (an MLP, 64 FP32 inputs), with JSON requests and with the
  binary tensor data extension (Inference-Header-Content-Length);
- MLServer serving the same ONNX model through onnxruntime, by a small custom model class this
  script writes (MLServer has no ONNX runtime of its own). MLServer lives in its own virtual
  environment (--mlserver-venv); without one its column says so and how to make one;
- the ceiling: benchmarks/serve_ceiling.py, one uvicorn + httptools + orjson process that parses
  the same v2 JSON request and answers a v2-shaped response with no model;
- dynamic batching: a small conv net (3x32x32 → two convs → pool → Gemm 10) compiled with
  max_batch 16 and served twice by one wasinfer, as `conv_batched` (config.json with
  "dynamic_batching") and `conv_single` (no config.json: each request runs alone), under more
  connections, binary requests of one sample each.

Closed loop: wrk (Debian's `wrk`; benchmarks/serve_bench.lua posts the body) at a fixed number of
connections for a fixed time after a warm-up, in rounds; req/s, p50 and p99 of the best round.
Open loop: wrk cannot hold a rate and Debian has no wrk2, so this script sends at a fixed rate
itself (asyncio, keep-alive connections) and measures each latency from the request's scheduled
send time, so a stalled server cannot hide its queue (no coordinated omission); the rate is 70%
of wasinfer's closed-loop peak. The load generators share the machine's cores with the servers.

Writes benchmarks/results/serve_bench.json and, on a full run, the "Serving" section of
docs/performance.md (only the text between its marker comments).

    python benchmarks/serve_bench.py                         # everything (about 4 minutes on 2 cores)
    python benchmarks/serve_bench.py --quick --only wasinfer,ceiling
    python benchmarks/serve_bench.py --render --doc          # redo the tables and section from the JSON

Setup: `apt-get install -y wrk`; for the MLServer column, `python benchmarks/serve_bench.py
--setup-mlserver` (a virtual environment at benchmarks/mlserver/.venv, git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

import wasinfer
from bench_report import add_output_arguments, fmt_ms, machine, md_table, publish, write_doc

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "serve_bench.json"
DOC = ROOT / "docs" / "performance.md"
LUA = ROOT / "benchmarks" / "serve_bench.lua"
CEILING_APP = ROOT / "benchmarks" / "serve_ceiling.py"
DEFAULT_MLSERVER_VENV = ROOT / "benchmarks" / "mlserver" / ".venv"  # a `.venv/` folder: .gitignore covers it
MLSERVER_VENV_ENV = "SERVE_BENCH_MLSERVER_VENV"
MLSERVER_VERSION = "1.7.1"
# MLServer 1.7.1's inference workers call asyncio.get_event_loop(), which uvloop >= 0.22 refuses
# (upstream issue SeldonIO/MLServer#2286); the pin keeps --mlserver-workers >= 1 working.
MLSERVER_UVLOOP = "uvloop<0.22"
BEGIN, END = "<!-- serve_bench:begin -->", "<!-- serve_bench:end -->"
HOST = "127.0.0.1"  # everything stays on loopback
DIGITS, CONV_BATCHED, CONV_SINGLE = "digits", "conv_batched", "conv_single"
CONV_MAX_BATCH, CONV_DELAY_US = 16, 2000
GROUPS = ("wasinfer", "binary", "mlserver", "ceiling", "batching")
CEILING_TARGET, MLSERVER_TARGET, P99_TARGET_MS, BATCHING_TARGET = 0.5, 5.0, 10.0, 3.0
console = Console(width=None if sys.stdout.isatty() else 200)


@dataclass(frozen=True)
class Settings:
    """How long and how hard each column is driven; recorded with the results."""

    connections: int = 32
    batch_connections: int = 64
    threads: int = 2  # wrk threads: one per core of this 2-core machine, as wrk advises
    # Three turns of 6 s rather than one of 18: on a shared 2-core machine other work comes and goes, and
    # more, shorter turns give every server the same chances at a quiet moment (the best round is reported).
    duration_s: float = 6.0
    warmup_s: float = 1.5
    rounds: int = 3
    rate_fraction: float = 0.7
    rate_s: float = 5.0  # per open-loop round; the open loop has as many rounds as the closed one
    rate_warmup_s: float = 1.0
    pin: bool = False
    mlserver_workers: int = 0
    wrk_timeout_s: float = 5.0
    workers: int = 1  # wasinfer serve --workers (worker processes)


FULL = Settings()
QUICK = Settings(duration_s=3.0, warmup_s=1.0, rounds=1, rate_s=3.0, rate_warmup_s=0.5)


@dataclass
class Column:
    """One load: a server, a model route and the exact request body every connection posts."""

    key: str
    group: str
    server: str
    label: str
    request: str  # how the request is encoded, for the table
    model: str
    body: bytes
    header_length: int | None  # binary tensor data extension: the JSON header's length
    connections: int
    status: str = "ok"  # ok | n/a
    reason: str = ""
    rounds: list[dict[str, Any]] = field(default_factory=list)
    fixed_rate: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"/v2/models/{self.model}/infer"


# --- servers --------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server in its own process group (so MLServer's workers go with it), logging to a file."""

    def __init__(self, name: str, command: list[str], port: int, ready_path: str, cwd: Path, log: Path,
                 env: dict[str, str] | None = None):
        self.name, self.command, self.port, self.ready_path = name, command, port, ready_path
        self.cwd, self.log, self.env = cwd, log, {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, cpus: set[int] | None) -> None:
        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=pin if cpus else None)

    def wait_ready(self, timeout: float) -> str | None:
        """None once GET ready_path answers 200; else why not (the process died, or the time ran out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return f"{self.name} exited with code {self.proc.returncode}: {self.log_tail()}"
            try:
                status, _, _ = request(self.port, "GET", self.ready_path, b"", timeout=2)
                if status == 200:
                    return None
            except OSError:
                pass
            time.sleep(0.2)
        return f"{self.name} was not ready within {timeout:.0f} s: {self.log_tail()}"

    def log_tail(self) -> str:
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        return " / ".join(lines[-3:])[-400:] or "(no output)"

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in the server's group (MLServer forks workers)."""
        if self.proc is None:
            return 0.0
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid:  # process group id
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group this script created for this server
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        except ProcessLookupError:
            pass


def request(port: int, method: str, path: str, body: bytes, headers: dict[str, str] | None = None,
            timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, path, body=body or None, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


# --- models and requests --------------------------------------------------------------------------------------------


def binary_body(name: str, array: np.ndarray, output: str) -> tuple[bytes, int]:
    """A request in the binary tensor data extension: JSON header, then the raw little-endian tensor."""
    raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
    header = json.dumps({"inputs": [{"name": name, "shape": list(array.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "outputs": [{"name": output, "parameters": {"binary_data": True}}]},
                        separators=(",", ":")).encode()
    return header + raw, len(header)


def decode_binary_output(headers: dict[str, str], body: bytes) -> np.ndarray:
    """The first output of a binary-extension response."""
    length = int(headers["inference-header-content-length"])
    tensor = json.loads(body[:length])["outputs"][0]
    dtype = {"FP32": "<f4", "INT64": "<i8"}[tensor["datatype"]]
    size = tensor["parameters"]["binary_data_size"]
    return np.frombuffer(body[length:length + size], dtype=dtype).reshape(tensor["shape"])


def conv_model() -> Any:
    """Input [N,3,32,32] → Conv 16 3x3 → Relu → Conv 32 3x3 stride 2 → Relu → GlobalAveragePool → Flatten → Gemm 10.

    Random He-scaled weights, fixed seed: the numbers do not matter, the shape of the work does (two
    convolutions of ~1.3 M multiply-adds per sample, then a tiny head).
    """
    from onnx import TensorProto, checker, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weight(name: str, shape: list[int]) -> Any:
        std = math.sqrt(2 / math.prod(shape[1:]))
        return numpy_helper.from_array((rng.standard_normal(shape) * std).astype(np.float32), name)

    def zeros(name: str, n: int) -> Any:
        return numpy_helper.from_array(np.zeros(n, np.float32), name)

    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "w3", "b3"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [weight("w1", [16, 3, 3, 3]), zeros("b1", 16), weight("w2", [32, 16, 3, 3]), zeros("b2", 32),
         weight("w3", [10, 32]), zeros("b3", 10)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    checker.check_model(model)
    return model


def compute_per_sample(wasm: bytes, sample: np.ndarray) -> dict[str, float]:
    """In-process ms per sample of the conv module at batch 1 and at the full batch: what batching can save
    in the model itself, apart from per-request costs (best of a few timed loops, bounded)."""
    from wasinfer.runtime.wasm import WasmModel, make_engine

    model = WasmModel(wasm, make_engine())
    found = {}
    for batch in (1, CONV_MAX_BATCH):
        feeds = {"input": np.ascontiguousarray(np.repeat(sample, batch, axis=0))}
        model.run(feeds)
        best = math.inf
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(max(1, 32 // batch)):
                model.run(feeds)
            best = min(best, (time.perf_counter() - started) / (max(1, 32 // batch) * batch))
        found[str(batch)] = best * 1000
    return found


MLSERVER_RUNTIME = '''"""MLServer model class for serve_bench.py: onnxruntime, one thread per session."""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxRuntimeModel(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        path = await get_model_uri(self._settings)
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i).astype(np.float32, copy=False) for i in payload.inputs}
        names = [o.name for o in payload.outputs] if payload.outputs else self.output_names
        results = self.session.run(names, feeds)
        return InferenceResponse(model_name=self.name, model_version=self.version, id=payload.id,
                                 outputs=[NumpyCodec.encode_output(n, a) for n, a in zip(names, results)])
'''


def mlserver_setup_hint(venv: Path) -> str:
    return (f"create it with `python benchmarks/serve_bench.py --setup-mlserver` (or: python3 -m venv {venv} && "
            f"{venv}/bin/pip install mlserver=={MLSERVER_VERSION} onnxruntime=={dist('onnxruntime')} "
            f"'{MLSERVER_UVLOOP}'), or point --mlserver-venv / ${MLSERVER_VENV_ENV} at one")


def setup_mlserver(venv: Path) -> int:
    """Create MLServer's own virtual environment with pip (kept apart: its pins clash with wasinfer's)."""
    console.print(f"creating {venv} (MLServer {MLSERVER_VERSION}, onnxruntime {dist('onnxruntime')})")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", f"mlserver=={MLSERVER_VERSION}",
                           f"onnxruntime=={dist('onnxruntime')}", MLSERVER_UVLOOP], timeout=1800, check=False)
    return done.returncode


def mlserver_versions(venv: Path) -> dict[str, str | None]:
    code = ("import json; from importlib.metadata import version as v\n"
            "out = {}\n"
            "for n in ('mlserver', 'onnxruntime', 'uvloop', 'fastapi', 'uvicorn'):\n"
            "    try: out[n] = v(n)\n"
            "    except Exception: out[n] = None\n"
            "print(json.dumps(out))")
    try:
        done = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True,
                              timeout=60, check=True)
        return dict(json.loads(done.stdout))
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}


def write_mlserver_repository(directory: Path, onnx_path: Path, settings: Settings, port: int) -> None:
    """settings.json (loopback, debug off, the chosen parallel_workers) and the digits model folder."""
    model_dir = directory / DIGITS
    model_dir.mkdir(parents=True)
    shutil.copyfile(onnx_path, model_dir / "model.onnx")
    (model_dir / "onnx_runtime.py").write_text(MLSERVER_RUNTIME)
    (model_dir / "model-settings.json").write_text(json.dumps(
        {"name": DIGITS, "implementation": "onnx_runtime.OnnxRuntimeModel",
         "parameters": {"uri": "./model.onnx", "version": "1"}}))
    (directory / "settings.json").write_text(json.dumps(
        {"debug": False, "host": HOST, "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
         "parallel_workers": settings.mlserver_workers, "environments_dir": str(directory / ".envs"),
         "metrics_dir": str(directory / ".metrics")}))


# --- load: wrk (closed loop) ----------------------------------------------------------------------------------------


def wrk_version() -> str | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10, check=False)
    words = (done.stdout + done.stderr).split()
    return words[1] if len(words) > 1 and words[0] == "wrk" else "unknown"


def run_wrk(column: Column, port: int, body_file: Path, seconds: float, settings: Settings) -> dict[str, Any]:
    """One wrk run at the column's connections; its Lua done() prints the numbers as JSON."""
    command = ["wrk", f"-t{min(settings.threads, column.connections)}", f"-c{column.connections}",
               f"-d{max(1, round(seconds))}s", "--latency", f"--timeout={settings.wrk_timeout_s:g}s", "-s", str(LUA),
               f"http://{HOST}:{port}{column.path}", "--", str(body_file)]
    if column.header_length is not None:
        command.append(str(column.header_length))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("SERVE_BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk exited {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}")
    raw = json.loads(line.split(" ", 1)[1])
    seconds_run = raw["duration_us"] / 1e6
    errors = sum(v for k, v in raw.items() if k.startswith("errors_"))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"requests": raw["requests"], "seconds": seconds_run, "rps": raw["requests"] / seconds_run,
            "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
            "mean_ms": raw["mean_us"] / 1000, "max_ms": raw["max_us"] / 1000, "errors": errors,
            "error_kinds": {k.removeprefix("errors_"): v for k, v in raw.items() if k.startswith("errors_") and v},
            "loadgen_cpu_share": cpu / seconds_run}


# --- load: open loop at a fixed rate --------------------------------------------------------------------------------


class _Client(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the open-loop generator, one request in flight at a time."""

    def __init__(self, load: OpenLoop):
        import httptools

        self.load = load
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses
        self.parser = httptools.HttpResponseParser(self)
        self.scheduled = 0.0
        self.busy = self.dead = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception:  # httptools.HttpParserError and its kin: the connection is no use any more
            self.load.broken(self)
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:  # httptools callback
        self.busy = False
        self.load.answered(self, self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.broken(self)


TICK_S = 0.001


class OpenLoop:
    """Sends `count` requests at `rate` per second over a fixed set of connections, each latency timed from
    its scheduled send time: a request that waits for a free connection is late on the server's account."""

    def __init__(self, request: bytes, rate: float, count: int):
        self.request, self.rate, self.count = request, rate, count
        self.idle: list[_Client] = []
        self.waiting: deque[float] = deque()
        self.latencies: list[float] = []
        self.lateness: list[float] = []  # per request, release time - scheduled time: the generator's own lag
        self.statuses: Counter[int] = Counter()
        self.lost = self.finished = self.next = 0
        self.start = self.last_answer = 0.0
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()

    def due(self, index: int) -> float:
        return self.start + index / self.rate

    def tick(self) -> None:
        """Release every request now due. Ticks are at least TICK_S apart: uvloop rounds a shorter timer down
        to 0 ms, and the loop would spin, taking from the servers the CPU it is measuring them with."""
        now = time.perf_counter()
        while self.next < self.count and self.due(self.next) <= now:
            self.waiting.append(self.due(self.next))
            self.lateness.append(now - self.due(self.next))
            self.next += 1
        self.dispatch()
        if self.next < self.count:
            self.loop.call_later(max(TICK_S, self.due(self.next) - time.perf_counter()), self.tick)

    def dispatch(self) -> None:
        while self.waiting and self.idle:
            client = self.idle.pop()
            client.scheduled, client.busy = self.waiting.popleft(), True
            client.transport.write(self.request)

    def answered(self, client: _Client, status: int) -> None:
        now = time.perf_counter()
        self.latencies.append(now - client.scheduled)
        self.statuses[status] += 1
        self.last_answer = now
        self._one_more()
        self.idle.append(client)
        self.dispatch()

    def broken(self, client: _Client) -> None:
        if client.dead:
            return
        client.dead = True
        if client in self.idle:
            self.idle.remove(client)
        if client.busy:
            client.busy = False
            self.lost += 1
            self._one_more()

    def _one_more(self) -> None:
        self.finished += 1
        if self.finished >= self.count and not self.done.done():
            self.done.set_result(None)


async def _open_loop(port: int, request: bytes, rate: float, seconds: float, connections: int) -> dict[str, Any]:
    count = max(1, round(rate * seconds))
    load = OpenLoop(request, rate, count)
    clients = []
    for _ in range(connections):
        _, client = await load.loop.create_connection(lambda: _Client(load), HOST, port)
        clients.append(client)
        load.idle.append(client)
    load.start = time.perf_counter() + 0.02
    load.loop.call_later(0.02, load.tick)
    drain = max(5.0, seconds)  # a server that fell behind gets this long to answer what was sent
    with contextlib.suppress(TimeoutError):  # what is still unanswered then counts as unanswered
        await asyncio.wait_for(asyncio.shield(load.done), seconds + drain)
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    answered = len(load.latencies)
    latencies = np.asarray(load.latencies) * 1000
    lateness = np.asarray(load.lateness) * 1000
    ok = load.statuses.get(200, 0)
    elapsed = (load.last_answer - load.start) if answered else 0.0
    return {"target_rps": rate, "requests": count, "answered": answered, "ok": ok,
            "errors": (answered - ok) + load.lost + (count - load.finished),
            "unanswered": count - load.finished, "achieved_rps": answered / elapsed if elapsed > 0 else 0.0,
            **{f"p{q}_ms": float(np.percentile(latencies, q)) if answered else None for q in (50, 90, 99)},
            "max_ms": float(latencies.max()) if answered else None,
            "timer_lateness_p50_ms": float(np.percentile(lateness, 50)) if len(lateness) else None,
            "timer_lateness_p99_ms": float(np.percentile(lateness, 99)) if len(lateness) else None}


def open_loop(port: int, request: bytes, rate: float, seconds: float, connections: int) -> dict[str, Any]:
    """_open_loop on uvloop when it is installed (as the servers use), with this process's CPU share."""
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:
        factory = None
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(_open_loop(port, request, rate, seconds, connections))
    after = resource.getrusage(resource.RUSAGE_SELF)
    result["wall_s"] = time.perf_counter() - started
    result["loadgen_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["loadgen_cpu_share"] = result["loadgen_cpu_s"] / result["wall_s"]
    result["sustained"] = result["unanswered"] == 0 and result["achieved_rps"] >= 0.99 * rate
    return result


def raw_request(column: Column, port: int) -> bytes:
    headers = [f"POST {column.path} HTTP/1.1", f"Host: {HOST}:{port}", f"Content-Length: {len(column.body)}"]
    if column.header_length is None:
        headers.append("Content-Type: application/json")
    else:
        headers += ["Content-Type: application/octet-stream",
                    f"Inference-Header-Content-Length: {column.header_length}"]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + column.body


# --- the run --------------------------------------------------------------------------------------------------------


def check_column(column: Column, port: int, expect: dict[str, Any]) -> str | None:
    """One request before any load: None when the answer is right, else what is wrong with it."""
    headers = {"Content-Type": "application/json" if column.header_length is None else "application/octet-stream"}
    if column.header_length is not None:
        headers["Inference-Header-Content-Length"] = str(column.header_length)
    try:
        status, got_headers, body = request(port, "POST", column.path, column.body, headers, timeout=120)
    except OSError as exc:
        return f"the check request failed: {exc}"
    if status != 200:
        return f"the check request got HTTP {status}: {body[:200].decode(errors='replace')}"
    try:
        if column.header_length is not None:
            output = decode_binary_output(got_headers, body)
        else:
            output = np.asarray(json.loads(body)["outputs"][0]["data"])
    except (KeyError, IndexError, ValueError) as exc:
        return f"the answer is not a v2 response: {exc}: {body[:200]!r}"
    if "label" in expect and int(output.reshape(-1)[0]) != expect["label"]:
        return f"predicted {output.reshape(-1).tolist()}, expected {expect['label']}"
    if "logits" in expect and not np.allclose(output.reshape(-1), expect["logits"].reshape(-1), rtol=1e-3, atol=1e-4):
        return f"logits differ from onnxruntime's by up to {np.abs(output.reshape(-1) - expect['logits']).max():.3g}"
    return None


def batch_metrics(port: int, model: str) -> tuple[float, float] | None:
    """(sum, count) of wasinfer_batch_size for a model from /metrics; None when the server has no such series."""
    try:
        status, _, body = request(port, "GET", "/metrics", b"", timeout=10)
    except OSError:
        return None
    if status != 200:
        return None
    found: dict[str, float] = {}
    for line in body.decode(errors="replace").splitlines():
        for part in ("sum", "count"):
            if line.startswith(f"wasinfer_batch_size_{part}{{") and f'model="{model}"' in line:
                found[part] = found.get(part, 0.0) + float(line.rsplit(" ", 1)[1])
    return (found["sum"], found["count"]) if "sum" in found and "count" in found else None


def run(settings: Settings, groups: set[str], fixed_rate: float | None, do_rate: bool, venv: Path,
        workdir: Path) -> tuple[list[Column], dict[str, Any]]:
    from wasinfer.artifact import convert_onnx
    from wasinfer.serving.demo import prepare_demo_repository

    extra: dict[str, Any] = {"mlserver_versions": {}}
    home = workdir / "home"
    env = {"WASINFER_HOME": str(home), "WASINFER_CACHE": str(home / "cache")}
    python = sys.executable
    cpus_server = cpus_load = None
    if settings.pin:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            raise SystemExit("--pin needs at least 2 cores")
        cpus_server, cpus_load = set(cores[:-1]), {cores[-1]}
        os.sched_setaffinity(0, cpus_load)  # wrk and the open-loop generator inherit it

    console.print("[dim]preparing the digits demo (trained and compiled on first use)…[/dim]")
    _, demo_request, label = prepare_demo_repository(home)
    demo_onnx = home / "demo" / "demo.onnx"
    pixels = np.asarray(demo_request["inputs"][0]["data"], dtype=np.float32).reshape(1, -1)
    json_body = json.dumps(demo_request, separators=(",", ":")).encode()
    bin_body, bin_length = binary_body("input", pixels, "label")

    columns: list[Column] = []
    servers: dict[str, ServerProcess] = {}
    expect: dict[str, dict[str, Any]] = {}
    if groups & {"wasinfer", "binary"}:
        port = free_port()
        servers["wasinfer"] = ServerProcess(
            "wasinfer", [python, "-m", "wasinfer.cli.main", "serve", "--http-port", str(port), "--grpc-port", "-1",
                         "--workers", str(settings.workers)],
            port, "/v2/health/ready", workdir, workdir / "wasinfer.log", env)
        if "wasinfer" in groups:
            columns.append(Column("wasinfer", "wasinfer", "wasinfer", "wasinfer", "JSON", DIGITS, json_body, None,
                                  settings.connections))
        if "binary" in groups:
            columns.append(Column("wasinfer-binary", "binary", "wasinfer", "wasinfer", "binary tensors", DIGITS,
                                  bin_body, bin_length, settings.connections))
    if "mlserver" in groups:
        column = Column("mlserver", "mlserver", "mlserver", "MLServer + onnxruntime", "JSON", DIGITS, json_body,
                        None, settings.connections)
        columns.append(column)
        if not (venv / "bin" / "mlserver").exists():
            column.status, column.reason = "n/a", f"no MLServer environment at {venv}: {mlserver_setup_hint(venv)}"
        else:
            port = free_port()
            repo = workdir / "mlserver"
            write_mlserver_repository(repo, demo_onnx, settings, port)
            servers["mlserver"] = ServerProcess("mlserver", [str(venv / "bin" / "mlserver"), "start", str(repo)],
                                                port, f"/v2/models/{DIGITS}/ready", repo, workdir / "mlserver.log")
            extra["mlserver_versions"] = mlserver_versions(venv)
    if "ceiling" in groups:
        port = free_port()
        servers["ceiling"] = ServerProcess("ceiling", [python, str(CEILING_APP), "--host", HOST, "--port", str(port)],
                                           port, "/v2/health/ready", workdir, workdir / "ceiling.log")
        columns.append(Column("ceiling", "ceiling", "ceiling", "bare ASGI ceiling", "JSON", DIGITS, json_body, None,
                              settings.connections))
    for column in columns:  # the ceiling has no model: it answers 0 whatever it gets
        expect[column.key] = {} if column.server == "ceiling" else {"label": label}
    if "batching" in groups:
        import onnxruntime as ort

        console.print("[dim]compiling the conv model (max_batch 16)…[/dim]")
        model = conv_model()
        wasm = convert_onnx(model, max_batch=CONV_MAX_BATCH, name="conv").wasm
        repo = workdir / "conv-repository"
        for name in (CONV_BATCHED, CONV_SINGLE):
            (repo / name / "1").mkdir(parents=True)
            (repo / name / "1" / "model.wasm").write_bytes(wasm)
        (repo / CONV_BATCHED / "config.json").write_text(json.dumps(
            {"max_batch_size": CONV_MAX_BATCH, "dynamic_batching": {"max_queue_delay_microseconds": CONV_DELAY_US}}))
        sample = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        logits = session.run(None, {"input": sample})[0]
        body, length = binary_body("input", sample, "logits")
        port = free_port()
        servers["wasinfer-conv"] = ServerProcess(
            "wasinfer (conv)", [python, "-m", "wasinfer.cli.main", "serve", "--model-repository", str(repo),
                                "--http-port", str(port), "--grpc-port", "-1"],
            port, "/v2/health/ready", workdir, workdir / "wasinfer-conv.log", env)
        for key, name, text in (("conv-batched", CONV_BATCHED, "dynamic batching"),
                                ("conv-single", CONV_SINGLE, "each request alone")):
            columns.append(Column(key, "batching", "wasinfer-conv", f"wasinfer {name} ({text})", "binary tensors",
                                  name, body, length, settings.batch_connections))
            expect[key] = {"logits": logits}
        extra["conv"] = {"wasm_bytes": len(wasm), "compute_ms_per_sample": compute_per_sample(wasm, sample)}

    try:
        for server in servers.values():
            server.start(cpus_server)
        for key, server in servers.items():
            timeout = 180 if key == "mlserver" else 60
            problem = server.wait_ready(timeout)
            if problem is not None:
                for column in columns:
                    if column.server == key:
                        column.status, column.reason = "n/a", problem
        for column in columns:
            if column.status == "ok":
                problem = check_column(column, servers[column.server].port, expect[column.key])
                if problem is not None:
                    column.status, column.reason = "n/a", problem
        measure(columns, servers, settings, workdir)
        if do_rate:
            extra["rate"] = measure_rate(columns, servers, settings, fixed_rate)
        for name, server in servers.items():
            if server.proc is not None and server.proc.poll() is not None:
                for column in columns:
                    if column.server == name and column.status == "ok":
                        column.reason = f"the server exited during the run: {server.log_tail()}"
    finally:
        for server in servers.values():
            server.stop()
    extra["pinning"] = (f"servers on CPU {sorted(cpus_server)}, load generators on CPU {sorted(cpus_load)}"
                        if cpus_server and cpus_load else "none: servers and load generators share every core "
                        "(Linux schedules them)")
    return columns, extra


def cpu_clock() -> tuple[float, float]:
    """Seconds every core has spent busy, and stolen by the hypervisor, since boot (/proc/stat): for what other
    work on this machine, and other machines on its host, took during a run."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def measure(columns: list[Column], servers: dict[str, ServerProcess], settings: Settings, workdir: Path) -> None:
    """Rounds of warm-up + measured wrk runs, the columns taking turns within each round.

    Each measured run also records the server's CPU time and what the rest of the machine used meanwhile
    (every core's busy time less the server's and wrk's): on a shared machine that tells a disturbed run.
    """
    for n, column in enumerate(columns):
        column.extra["body_file"] = str(workdir / f"body-{n}.bin")
        Path(column.extra["body_file"]).write_bytes(column.body)
    for round_no in range(settings.rounds):
        for column in columns:
            if column.status != "ok":
                continue
            server = servers[column.server]
            console.print(f"[dim]round {round_no + 1}/{settings.rounds}: {column.key} "
                          f"({column.connections} connections)…[/dim]", highlight=False)
            body_file = Path(column.extra["body_file"])
            try:
                run_wrk(column, server.port, body_file, settings.warmup_s, settings)
                batches = batch_metrics(server.port, column.model) if column.key == "conv-batched" else None
                cpu_before, (busy_before, steal_before) = server.cpu_seconds(), cpu_clock()
                result = run_wrk(column, server.port, body_file, settings.duration_s, settings)
                result["server_cpu_s"] = server.cpu_seconds() - cpu_before
                busy, steal = cpu_clock()
                others = busy - busy_before - result["server_cpu_s"] - result["loadgen_cpu_share"] * result["seconds"]
                result["others_cpu_share"] = max(0.0, others / result["seconds"])
                result["steal_share"] = (steal - steal_before) / result["seconds"]
                result["server_cpu_us_per_request"] = (result["server_cpu_s"] / result["requests"] * 1e6
                                                       if result["requests"] else None)
                if batches is not None:
                    after = batch_metrics(server.port, column.model)
                    if after is not None and after[1] > batches[1]:
                        result["mean_batch"] = (after[0] - batches[0]) / (after[1] - batches[1])
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                column.status, column.reason = "n/a", str(exc)[:300]
                continue
            column.rounds.append(result)


def best(column: Column) -> dict[str, Any] | None:
    return max(column.rounds, key=lambda r: r["rps"]) if column.rounds else None


def best_fixed(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The least disturbed open-loop round: one that held the rate, then the lowest p99."""
    done = [r for r in results if r.get("p99_ms") is not None]
    return min(done, key=lambda r: (not r["sustained"], r["p99_ms"])) if done else None


def measure_rate(columns: list[Column], servers: dict[str, ServerProcess], settings: Settings,
                 fixed: float | None) -> dict[str, Any]:
    """Open-loop rounds of the digits columns, taking turns: at --rate, else at rate_fraction of wasinfer's JSON
    peak; a column whose own peak is below that rate runs at rate_fraction of its own peak instead (marked)."""
    peak = next((best(c) for c in columns if c.key == "wasinfer" and c.rounds), None)
    rate = fixed if fixed else (settings.rate_fraction * peak["rps"] if peak else None)
    plan = []
    for column in columns:
        own = best(column)
        if column.group == "batching" or column.status != "ok" or own is None:
            continue
        target, basis = (rate, "common") if rate and own["rps"] >= rate else (
            settings.rate_fraction * own["rps"], "own peak")
        plan.append((column, target, basis))
    results: dict[str, list[dict[str, Any]]] = {column.key: [] for column, _, _ in plan}
    for round_no in range(settings.rounds):
        for column, target, basis in plan:
            console.print(f"[dim]open loop {round_no + 1}/{settings.rounds}: {column.key} at {target:.0f} "
                          "req/s…[/dim]", highlight=False)
            server = servers[column.server]
            data = raw_request(column, server.port)
            try:
                open_loop(server.port, data, target, settings.rate_warmup_s, column.connections)
                cpu_before, (busy_before, steal_before) = server.cpu_seconds(), cpu_clock()
                result = open_loop(server.port, data, target, settings.rate_s, column.connections)
                server_cpu = server.cpu_seconds() - cpu_before
                busy, steal = cpu_clock()
                others = busy - busy_before - server_cpu - result["loadgen_cpu_s"]
                result["others_cpu_share"] = max(0.0, others / result["wall_s"])
                result["steal_share"] = (steal - steal_before) / result["wall_s"]
            except OSError as exc:
                column.fixed_rate = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            results[column.key].append({**result, "basis": basis})
    for column, _, _ in plan:
        chosen = best_fixed(results[column.key])
        if chosen is not None:
            column.fixed_rate = {**chosen, "rounds": [{k: r[k] for k in ("achieved_rps", "p50_ms", "p99_ms",
                                                                         "sustained", "others_cpu_share")}
                                                      for r in results[column.key]]}
    return {"rate": rate, "basis": "--rate" if fixed else f"{settings.rate_fraction:g} x wasinfer JSON peak"}


# --- results --------------------------------------------------------------------------------------------------------


def dist(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def git_state() -> str:
    """The commit measured, and whether src/ differed from it (others edit it while benchmarks run)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{', src/ modified' if dirty else ''}"



def versions(extra: dict[str, Any]) -> dict[str, str | None]:
    ml = extra.get("mlserver_versions") or {}
    return {"wasinfer": f"{wasinfer.__version__} ({git_state()})", "uvicorn": dist("uvicorn"),
            "httptools": dist("httptools"), "uvloop": dist("uvloop"), "orjson": dist("orjson"),
            "wasmtime (py)": dist("wasmtime"), "onnxruntime (reference)": dist("onnxruntime"),
            "mlserver": ml.get("mlserver"), "onnxruntime (MLServer's)": ml.get("onnxruntime"),
            "uvloop (MLServer's)": ml.get("uvloop"), "fastapi (MLServer's)": ml.get("fastapi"),
            "uvicorn (MLServer's)": ml.get("uvicorn"), "wrk": wrk_version()}


def summarise(columns: list[Column]) -> dict[str, Any]:
    out = {}
    for column in columns:
        out[column.key] = {"label": column.label, "group": column.group, "request": column.request,
                           "model": column.model, "connections": column.connections,
                           "body_bytes": len(column.body), "status": column.status, "reason": column.reason,
                           "rounds": column.rounds, "best": best(column), "fixed_rate": column.fixed_rate}
    return out


def rps(report: dict[str, Any], key: str) -> float | None:
    entry = report["columns"].get(key)
    return entry["best"]["rps"] if entry and entry.get("best") else None


def ratios(report: dict[str, Any]) -> dict[str, float | None]:
    def over(a: str, b: str) -> float | None:
        x, y = rps(report, a), rps(report, b)
        return x / y if x is not None and y else None

    def cpu(key: str) -> float | None:
        entry = report["columns"].get(key)
        values = [r["server_cpu_us_per_request"] for r in (entry or {}).get("rounds", [])
                  if r.get("server_cpu_us_per_request")]
        return float(np.median(values)) if values else None

    def cheaper(a: str, b: str) -> float | None:  # b's CPU per request over a's: how many of a's per b's
        x, y = cpu(a), cpu(b)
        return y / x if x and y else None

    return {"wasinfer/ceiling": over("wasinfer", "ceiling"), "wasinfer/mlserver": over("wasinfer", "mlserver"),
            "binary/json": over("wasinfer-binary", "wasinfer"), "batched/single": over("conv-batched", "conv-single"),
            "cpu: wasinfer/ceiling": cheaper("wasinfer", "ceiling"),
            "cpu: wasinfer/mlserver": cheaper("wasinfer", "mlserver"),
            "cpu: batched/single": cheaper("conv-batched", "conv-single")}


def targets(report: dict[str, Any]) -> list[dict[str, str]]:
    """The four serving targets, each judged on this run's numbers only."""
    r = report["ratios"]
    cols = report["columns"]

    def why_not(*keys: str) -> str:
        missing = [f"{k}: {cols[k]['reason'] or cols[k]['status']}" for k in keys if k in cols and not cols[k]["best"]]
        absent = [k for k in keys if k not in cols]
        return "; ".join(missing + ([f"not selected: {', '.join(absent)}"] if absent else []))

    def judge(value: float | None, ok: bool, detail: str, *keys: str) -> tuple[str, str]:
        if value is None:
            return "not measured", why_not(*keys) or "not measured"
        return ("met" if ok else "not met"), detail

    found = []
    value = r["wasinfer/ceiling"]
    status, detail = judge(value, value is not None and value >= CEILING_TARGET,
                           f"{value or 0:.0%} ({fmt_rps(rps(report, 'wasinfer'))} vs {fmt_rps(rps(report, 'ceiling'))}"
                           " req/s, JSON)", "wasinfer", "ceiling")
    found.append({"target": f"wasinfer ≥ {CEILING_TARGET:.0%} of the bare-ASGI ceiling (req/s)", "status": status,
                  "detail": detail})
    value = r["wasinfer/mlserver"]
    status, detail = judge(value, value is not None and value >= MLSERVER_TARGET,
                           f"{value or 0:.2f}x ({fmt_rps(rps(report, 'wasinfer'))} vs "
                           f"{fmt_rps(rps(report, 'mlserver'))} req/s, JSON)", "wasinfer", "mlserver")
    found.append({"target": f"wasinfer ≥ {MLSERVER_TARGET:g}x MLServer's req/s", "status": status, "detail": detail})
    ours = cols.get("wasinfer", {}).get("best")
    p99 = ours["p99_ms"] if ours else None
    binary = cols.get("wasinfer-binary", {}).get("best")
    status, detail = judge(p99, p99 is not None and p99 < P99_TARGET_MS,
                           f"p99 {fmt_ms(p99)} at {cols.get('wasinfer', {}).get('connections')} connections (JSON)"
                           + (f"; binary tensors {fmt_ms(binary['p99_ms'])}" if binary else ""), "wasinfer")
    found.append({"target": f"p99 < {P99_TARGET_MS:g} ms at 32 connections", "status": status, "detail": detail})
    value = r["batched/single"]
    status, detail = judge(value, value is not None and value >= BATCHING_TARGET,
                           f"{value or 0:.2f}x ({fmt_rps(rps(report, 'conv-batched'))} vs "
                           f"{fmt_rps(rps(report, 'conv-single'))} inferences/s)", "conv-batched", "conv-single")
    found.append({"target": f"dynamic batching ≥ {BATCHING_TARGET:g}x inferences/s (conv)", "status": status,
                  "detail": detail})
    return found


def notes_for(report: dict[str, Any]) -> list[str]:
    notes = []
    cols = report["columns"]
    for key, entry in cols.items():
        if entry["status"] != "ok" and entry["reason"]:
            notes.append(f"{entry['label']} ({entry['request']}): not measured: {entry['reason']}")
        elif entry["reason"]:
            notes.append(f"{entry['label']} ({entry['request']}): {entry['reason']}")
        errors = sum(r["errors"] for r in entry["rounds"])
        if errors:
            notes.append(f"{key}: {errors} requests failed under wrk (non-2xx, timeouts or socket errors).")
    spread = [f"{k} {min(r['rps'] for r in e['rounds']):,.0f} to {max(r['rps'] for r in e['rounds']):,.0f}"
              for k, e in cols.items() if len(e["rounds"]) > 1
              and max(r["rps"] for r in e["rounds"]) > 1.2 * min(r["rps"] for r in e["rounds"])]
    if spread:
        notes.append("Rounds of the same load differed by more than 20% (req/s, slowest to fastest): "
                     f"{', '.join(spread)}; the best rounds are compared. Where `others' CPU` stayed low the "
                     "spread is the servers' own (and the machine's), not other work.")
    # The load average before the run also counts a benchmark that just ended; what other processes used during
    # each measured run is the better witness.
    disturbed = [f"{k} {e['best']['others_cpu_share']:.2f} cores" for k, e in cols.items()
                 if e["best"] and (e["best"].get("others_cpu_share") or 0) > 0.1]
    if disturbed:
        notes.append("Other work competed with these reported runs (others' CPU above 0.1 cores): "
                     f"{', '.join(disturbed)}. Those columns are slower than on a quiet machine, and not all by the "
                     "same amount; the CPU-per-request ratios are the steadier comparison.")
    stolen = [f"{k} {e['best']['steal_share']:.2f}" for k, e in cols.items()
              if e["best"] and (e["best"].get("steal_share") or 0) > 0.1]
    if stolen:
        notes.append("The hypervisor took CPU from this machine during these reported runs (steal, in cores): "
                     f"{', '.join(stolen)}; other machines on the same host slowed them.")
    if (cols.get("mlserver") or {}).get("best"):
        notes.append("MLServer gets JSON requests only: its REST front end does not take the binary tensor data "
                     "extension. Its model class (written by this script) decodes with MLServer's NumpyCodec and "
                     "runs an onnxruntime session on one thread.")
    batched = (cols.get("conv-batched") or {}).get("best")
    if batched is not None and batched.get("mean_batch") is None:
        notes.append("The conv server reported no dynamic batches (no wasinfer_batch_size series for conv_batched "
                      "in /metrics): this build does not batch yet, so the two conv rows measure the same thing.")
    conv = report.get("conv")
    if conv:
        per = conv["compute_ms_per_sample"]
        notes.append(f"The conv module alone (in-process WasmModel.run, best of 5) costs {fmt_ms(per['1'])} per "
                     f"sample at batch 1 and {fmt_ms(per[str(CONV_MAX_BATCH)])} at batch {CONV_MAX_BATCH}: "
                     "what batching can save inside the model; the rest of any gain is per-request work "
                     "(thread hand-offs, pool slots, wasm entries) shared by a batch.")
    rate = report.get("rate") or {}
    lag = [c["fixed_rate"] for c in cols.values() if c.get("fixed_rate") and c["fixed_rate"].get("p50_ms")]
    if lag:
        notes.append("The open-loop generator is Python (asyncio on uvloop, whose timers tick in whole "
                     "milliseconds): it released requests for sending "
                     f"{max(f['timer_lateness_p50_ms'] for f in lag):.2f} ms (p50) / "
                     f"{max(f['timer_lateness_p99_ms'] for f in lag):.2f} ms (p99) after their scheduled times at "
                     "worst. That lag is inside the open-loop latencies, which are measured from the scheduled time "
                     "as wrk2 does, so they err high by about as much.")
    unsustained = [k for k, c in cols.items() if c.get("fixed_rate") and c["fixed_rate"].get("sustained") is False]
    if unsustained and rate.get("rate"):
        notes.append(f"Rate not held in any round (answers below 99% of the target rate, or some unanswered): "
                     f"{', '.join(unsustained)}; their open-loop latencies include a growing queue.")
    return notes


# --- rendering ------------------------------------------------------------------------------------------------------



def fmt_rps(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


LOAD_HEADER = ["server", "encoding", "conns", "req/s best (worst)", "p50", "p99", "server CPU/req", "others' CPU",
               "open loop: rate", "p50", "p99"]


def load_rows(report: dict[str, Any], group: str) -> list[list[str]]:
    rows = []
    for entry in report["columns"].values():
        if (entry["group"] == "batching") != (group == "batching"):
            continue
        head = [entry["label"], entry["request"], str(entry["connections"])]
        b = entry["best"]
        if b is None:
            rows.append([*head, f"n/a: {entry['reason'] or entry['status']}"[:160], *["-"] * 7])
            continue
        worst = min(r["rps"] for r in entry["rounds"])
        spread = f" ({fmt_rps(worst)})" if len(entry["rounds"]) > 1 else ""
        errors = sum(r["errors"] for r in entry["rounds"])
        mark = f" ⚠ {errors} errors" if errors else ""
        cpu = b.get("server_cpu_us_per_request")
        fixed = entry.get("fixed_rate") or {}
        if fixed.get("p50_ms") is not None:
            own = " (70% of own peak)" if fixed.get("basis") == "own peak" else ""
            held = "" if fixed.get("sustained") else f", got {fmt_rps(fixed['achieved_rps'])}/s ⚠"
            rate_cells = [f"{fmt_rps(fixed['target_rps'])}/s{own}{held}", fmt_ms(fixed["p50_ms"]),
                          fmt_ms(fixed["p99_ms"])]
        elif fixed.get("error"):
            rate_cells = [f"n/a: {fixed['error']}"[:120], "-", "-"]
        else:
            rate_cells = ["-", "-", "-"]
        others = b.get("others_cpu_share")
        rows.append([*head, f"{fmt_rps(b['rps'])}{spread}{mark}", fmt_ms(b["p50_ms"]), fmt_ms(b["p99_ms"]),
                     "-" if cpu is None else f"{cpu:.0f} µs", "-" if others is None else f"{others:.2f} cores",
                     *rate_cells])
    return rows


BATCH_HEADER = ["model", "encoding", "conns", "inferences/s best (worst)", "p50", "p99", "server CPU/req",
                "others' CPU", "mean batch"]


def batch_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for row in load_rows(report, "batching"):
        key = next(k for k, e in report["columns"].items() if e["label"] == row[0])
        b = report["columns"][key]["best"]
        mean = b.get("mean_batch") if b else None
        rows.append([*row[:8], "-" if mean is None else f"{mean:.1f}"])
    return rows


def print_tables(report: dict[str, Any]) -> None:
    for title, header, rows in (("Digits MLP: closed loop (wrk) and open loop (fixed rate)", LOAD_HEADER,
                                 load_rows(report, "digits")),
                                ("Dynamic batching: conv model", BATCH_HEADER, batch_rows(report))):
        if not rows:
            continue
        table = Table(title=title, title_justify="left")
        for n, column in enumerate(header):
            table.add_column(column, justify="left" if n < 2 else "right", overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    console.print("ratios: " + ", ".join(f"{k} {fmt_ratio(v)}" for k, v in report["ratios"].items()))
    for target in report["targets"]:
        colour = "green" if target["status"] == "met" else "yellow"
        console.print(f"[{colour}]{target['status']}[/{colour}] {target['target']}: {target['detail']}",
                      highlight=False)
    for note in report["notes"]:
        console.print(f"note: {note}", highlight=False)



def render_section(report: dict[str, Any]) -> str:
    m, v, s = report["machine"], report["versions"], report["settings"]
    r = report["ratios"]
    rate = report.get("rate") or {}
    ml_workers = s["mlserver_workers"]
    lines = [
        "## Serving",
        "",
        f"Generated by `python benchmarks/serve_bench.py` on {report['date']} ({report['seconds']:.0f} s); do not "
        "edit between the markers. One run, one machine, the servers taking turns under the same load; absolute "
        "numbers hold only within this run, so read the ratios.",
        "",
        f"**Machine:** {m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, Python "
        f"{m['python']}; 1-minute load average {m['loadavg_1min']} before the run, {m['loadavg_1min_after']} after. "
        "The load generators run on the same cores as the servers.",
        "",
        "**Versions:** " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
        "",
        f"**Settings.** Closed loop: wrk, {s['threads']} threads, {s['connections']} connections "
        f"({s['batch_connections']} for the conv model), keep-alive, {s['warmup_s']:g} s warm-up then "
        f"{s['duration_s']:g} s measured, in {s['rounds']} round(s) with the servers taking turns; the table shows "
        "the round with the most requests per second (the slowest round's rate in brackets) and that round's p50 "
        "and p99 as wrk's `--latency` reports them. Open loop (this script's generator; Debian has no wrk2): a "
        f"fixed rate for {s['rate_s']:g} s after {s['rate_warmup_s']:g} s at the same rate, over as many "
        "connections, in as many rounds (the round that held the rate with the lowest p99 is shown), latency from "
        f"each request's scheduled send time; rate {fmt_rps(rate.get('rate'))}/s = {rate.get('basis', '-')} "
        f"(a server whose peak is below it runs at {s['rate_fraction']:.0%} of its own). Pinning: "
        f"{report['pinning']}. Every server runs in its own process on 127.0.0.1. `server CPU/req` is the "
        "server's process group's user + system CPU time over the measured run divided by its requests; "
        "`others' CPU` is what the rest of the machine used meanwhile (all cores' busy time less the server's and "
        "the load generator's), in cores: above ~0.1, other work competed with that run.",
        "",
        "**Servers.** wasinfer: `wasinfer serve` (REST only, `--grpc-port -1`), its defaults (one instance per core; "
        "runs this small model on the event loop), the demo repository. MLServer: `mlserver start` with "
        f"`parallel_workers: {ml_workers}`"
        + (" (inference in the server process; faster here than its default of 1, which adds a worker process and "
           "a queue between them)" if ml_workers == 0 else "")
        + ", `debug: false`, a model class that runs onnxruntime (one thread) on the same `.onnx` file. Ceiling: "
        "`benchmarks/serve_ceiling.py`, one uvicorn process configured as wasinfer's (httptools, uvloop, no "
        "access log), that parses the request with orjson and answers a v2 JSON response without a model. "
        "Every answer is checked once before the load (the predicted digit; the conv logits against onnxruntime's).",
        "",
        "### Digits MLP (64 FP32 inputs → label)",
        "",
        *md_table(LOAD_HEADER, load_rows(report, "digits")),
        "",
        f"Requests per second: wasinfer/ceiling **{fmt_ratio(r['wasinfer/ceiling'])}**, wasinfer/MLServer "
        f"**{fmt_ratio(r['wasinfer/mlserver'])}**, binary/JSON {fmt_ratio(r['binary/json'])}. By server CPU per "
        "request (median of the rounds; less sensitive to other work on the machine, and a fair proxy here because "
        "each of these servers keeps about one core busy): wasinfer serves "
        f"{fmt_ratio(r.get('cpu: wasinfer/ceiling'))} as many requests per CPU-second as the ceiling and "
        f"{fmt_ratio(r.get('cpu: wasinfer/mlserver'))} as many as MLServer.",
        "",
    ]
    batch = batch_rows(report)
    if batch:
        lines += [
            "### Dynamic batching (conv model)",
            "",
            "A conv net on 3x32x32 (Conv 16 3x3 → Relu → Conv 32 3x3 stride 2 → Relu → GlobalAveragePool → "
            f"Gemm 10, random weights) compiled with `max_batch={CONV_MAX_BATCH}` and served by one wasinfer as two "
            f"models: `{CONV_BATCHED}` with `config.json` {{\"max_batch_size\": {CONV_MAX_BATCH}, "
            f"\"dynamic_batching\": {{\"max_queue_delay_microseconds\": {CONV_DELAY_US}}}}}, and `{CONV_SINGLE}` "
            "without one. Each request is one sample in binary tensors; `mean batch` is samples per run from the "
            "server's `wasinfer_batch_size` histogram over the measured run.",
            "",
            *md_table(BATCH_HEADER, batch),
            "",
            f"batched/single **{fmt_ratio(r['batched/single'])}** inferences/s "
            f"({fmt_ratio(r.get('cpu: batched/single'))} by server CPU per request).",
            "",
        ]
    lines += ["### Targets", "",
              *md_table(["target", "status", "this run"], [[t["target"], t["status"], t["detail"]]
                                                           for t in report["targets"]]), ""]
    if report["notes"]:
        lines += ["Notes:", "", *(f"- {n}" for n in report["notes"]), ""]
    return "\n".join(lines)



def finish(report: dict[str, Any]) -> None:
    report["ratios"] = ratios(report)
    report["targets"] = targets(report)
    report["notes"] = notes_for(report)


# --- main -----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(GROUPS)} (default: all). wasinfer = "
                        "JSON requests, binary = binary tensor requests, batching = the two conv models")
    parser.add_argument("--quick", action="store_true", help="one round of 3 s per column, 3 s open loop: a smoke run")
    parser.add_argument("--duration", type=float,
                        help=f"measured seconds per column and round (default {FULL.duration_s:g})")
    parser.add_argument("--warmup", type=float,
                        help=f"warm-up seconds before each measured run (default {FULL.warmup_s:g})")
    parser.add_argument("--rounds", type=int,
                        help=f"rounds of every column, taking turns; the best is reported (default {FULL.rounds})")
    parser.add_argument("--connections", type=int, help="wrk connections for the digits columns (default 32)")
    parser.add_argument("--threads", type=int, help="wrk threads (default 2, one per core here)")
    parser.add_argument("--batch-connections", type=int, help="connections for the conv columns (default 64)")
    parser.add_argument("--rate", type=float, help="open-loop rate in req/s (default: 70%% of wasinfer's JSON peak)")
    parser.add_argument("--no-rate", action="store_true", help="skip the open-loop (fixed-rate) runs")
    parser.add_argument("--pin", action="store_true",
                        help="servers on all cores but the last, wrk and the open-loop generator on the last "
                        "(default: no pinning, everything shares every core)")
    parser.add_argument("--workers", type=int, default=1,
                        help="wasinfer's worker processes (serve --workers; default 1). On a machine with as many "
                        "cores as workers the load generator shares their cores unless --pin")
    parser.add_argument("--mlserver-workers", type=int, default=0,
                        help="MLServer's parallel_workers (default 0: inference in its server process, its fastest "
                        "here; MLServer's own default is 1)")
    parser.add_argument("--mlserver-venv", type=Path,
                        default=Path(os.environ.get(MLSERVER_VENV_ENV, DEFAULT_MLSERVER_VENV)),
                        help=f"MLServer's virtual environment (default ${MLSERVER_VENV_ENV} or %(default)s)")
    parser.add_argument("--setup-mlserver", action="store_true",
                        help=f"create --mlserver-venv with pip (mlserver=={MLSERVER_VERSION}, onnxruntime, "
                        f"{MLSERVER_UVLOOP}) and exit")
    add_output_arguments(parser, RESULTS, ROOT)
    args = parser.parse_args(argv)
    if args.setup_mlserver:
        return setup_mlserver(args.mlserver_venv)
    if args.render:
        args.out = args.out or RESULTS
        report = json.loads(args.out.read_text())
        finish(report)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print_tables(report)
        if args.doc:
            write_doc(render_section(report), BEGIN, END, DOC)
        return 0
    groups = set(GROUPS) if not args.only else {g.strip() for g in args.only.split(",") if g.strip()}
    unknown = groups - set(GROUPS)
    if unknown:
        parser.error(f"unknown --only name(s) {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}")
    if shutil.which("wrk") is None:
        console.print("wrk is not installed: it drives every column. Install it with `apt-get install -y wrk` "
                      "(Debian's package).")
        return 2
    settings = replace(QUICK if args.quick else FULL, mlserver_workers=args.mlserver_workers, pin=args.pin,
                       workers=args.workers)
    overrides = {"duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds,
                 "connections": args.connections, "threads": args.threads, "batch_connections": args.batch_connections}
    settings = replace(settings, **{k: val for k, val in overrides.items() if val is not None})
    started, before = time.perf_counter(), machine()
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        columns, extra = run(settings, groups, args.rate, not args.no_rate, args.mlserver_venv.resolve(), Path(tmp))
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "seconds": time.perf_counter() - started, "quick": args.quick,
        "machine": {**before, "loadavg_1min_after": round(os.getloadavg()[0], 2)}, "versions": versions(extra),
        "settings": asdict(settings), "pinning": extra["pinning"], "rate": extra.get("rate"),
        "conv": extra.get("conv"), "columns": summarise(columns),
    }
    finish(report)
    full = (not args.quick and groups == set(GROUPS) and all(x is None for x in overrides.values())
            and args.workers == 1 and args.rate is None and not args.no_rate)
    print_tables(report)
    written = publish(report, args.out, RESULTS, full, args.doc, render_section, BEGIN, END, DOC)
    console.print(written, markup=False, highlight=False, soft_wrap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
