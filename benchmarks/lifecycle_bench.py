"""Model lifecycle side by side: many models on one node, updates from a registry, memory against MLServer.

One run on one machine, every server in its own process on loopback (issue 4, "Measured"):

- many models: 200 small MLPs (64 → 128 → 128 → 10, distinct random weights, fixed seed), compiled with
  wasinfer.artifact.convert_onnx(max_batch=8) into a model repository. A priming server (no budget) loads each
  once, which fills the compiled-code cache and tells one model's footprint (`wasinfer_model_memory_bytes`);
  then `wasinfer serve --memory-budget-mb B` with B chosen so that 50 models fit takes Zipf traffic (s = 1.1)
  over the 200 names from a fixed number of concurrent asyncio clients for a fixed time. Reported: hit
  rate (1 - cold starts / requests, from /metrics deltas), cold-start p50/p99 from the server's
  `wasinfer_cold_start_duration_seconds` histogram, and, with fine resolution, the first request to a model
  that is not loaded timed by the client against a third request to it;
- updates: Debian's `docker-registry` on loopback, several `wasinfer serve --desired-state CONFIG.json` nodes
  pulling from it (`model_update_interval: 1s`), steady load on all of them. Each repetition pushes a new
  version with wasinfer.registry.oci.OciClient, rewrites the config (or, in the alias rounds, moves the
  `stable` tag in the registry and leaves the config alone), and polls every node until it answers with the
  new version's output: push-to-serving time for the first and for the last node, and every failed request;
- memory: resident memory (VmRSS of the server's whole process group, from /proc) of `wasinfer serve` after one
  request to each of 50 models, against MLServer (its own virtual environment, onnxruntime through a small
  model class, `parallel_workers: 0`) holding the same 50 models; and of each server with no model.

Writes benchmarks/results/lifecycle_bench.json and, on a full run, the "Model lifecycle" section of
docs/performance.md (only the text between its marker comments).

    python benchmarks/lifecycle_bench.py                       # everything (about 1.5 minutes on 2 cores)
    python benchmarks/lifecycle_bench.py --quick               # shorter phases, fewer repetitions (under a minute)
    python benchmarks/lifecycle_bench.py --only memory         # models, updates, memory: any subset
    python benchmarks/lifecycle_bench.py --render --doc        # redo the tables and section from the JSON

Setup: Debian's `docker-registry` (`apt-get install -y docker-registry`) for the update figures; MLServer's
environment (`python benchmarks/serve_bench.py --setup-mlserver`) for its memory column. Without either, that
figure reads n/a with the reason and the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import itertools
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

import wasinfer
from bench_report import add_output_arguments, fmt_ms, machine, md_table, publish, write_doc
from serve_bench import (
    DEFAULT_MLSERVER_VENV,
    HOST,
    MLSERVER_RUNTIME,
    MLSERVER_VENV_ENV,
    ServerProcess,
    free_port,
    mlserver_setup_hint,
    mlserver_versions,
    request,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "lifecycle_bench.json"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- lifecycle_bench:begin -->", "<!-- lifecycle_bench:end -->"
REGISTRY_BINARY = Path("/usr/bin/docker-registry")
GROUPS = ("models", "updates", "memory")
INPUTS, HIDDEN, OUTPUTS = 64, 128, 10
REPOSITORY = "team/mlp"  # in the registry; the served name is its last component
SERVED = "mlp"
# Targets: the seed's cold start, the project's moonshot (modules under 5 MB), the seed's update time, no failed
# request while updating, p99 during swaps within 2x the steady p99 (the fault list), memory ≤ 1/3.
COLD_P99_TARGET_MS, COLD_MOONSHOT_MS, MOONSHOT_MODULE_BYTES = 10.0, 1.0, 5 * 1024 * 1024
UPDATE_TARGET_S, SWAP_P99_FACTOR, MEMORY_TARGET = 300.0, 2.0, 1 / 3
console = Console(width=None if sys.stdout.isatty() else 200)


@dataclass(frozen=True)
class Settings:
    """How many models, how long and how hard each phase runs; recorded with the results."""

    models: int = 200
    resident: int = 50  # models the memory budget is sized to hold
    zipf_s: float = 1.1
    clients: int = 8  # concurrent load-generator clients (closed loop)
    zipf_warmup_s: float = 5.0  # Zipf traffic before the measured window: the node fills its budget
    zipf_s_measured: float = 30.0
    probe_models: int = 40  # unloaded models whose first request the client times
    nodes: int = 3
    update_clients: int = 4
    steady_s: float = 3.0
    config_updates: int = 5
    alias_updates: int = 3
    update_timeout_s: float = 60.0
    memory_models: int = 50
    seed: int = 0


FULL = Settings()
QUICK = Settings(zipf_warmup_s=2.0, zipf_s_measured=8.0, probe_models=15, steady_s=1.5, config_updates=2,
                 alias_updates=1)


# --- models ---------------------------------------------------------------------------------------------------------


def mlp_weights(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Three dense layers, He-scaled: distinct weights per seed, so no two models (or versions) answer alike."""
    rng = np.random.default_rng(seed)
    dims = [INPUTS, HIDDEN, HIDDEN, OUTPUTS]
    return [((rng.standard_normal((a, b)) * math.sqrt(2 / a)).astype(np.float32),
             (rng.standard_normal(b) * 0.1).astype(np.float32)) for a, b in itertools.pairwise(dims)]


def mlp_onnx(seed: int) -> Any:
    """input [N,64] → MatMul+Add → Relu → MatMul+Add → Relu → MatMul+Add → logits [N,10]."""
    from onnx import TensorProto, checker, helper, numpy_helper

    nodes, initializers, current = [], [], "input"
    layers = mlp_weights(seed)
    for i, (w, b) in enumerate(layers):
        initializers += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        last = i == len(layers) - 1
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"]))
        nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], ["logits" if last else f"a{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"a{i}"], [f"h{i}"]))
            current = f"h{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", INPUTS])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", OUTPUTS])],
                              initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    checker.check_model(model)
    return model


def mlp_reference(seed: int, x: np.ndarray) -> np.ndarray:
    """The model's answer in numpy: what tells one version's output from another's."""
    h = x.astype(np.float32)
    layers = mlp_weights(seed)
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return h


def model_name(index: int) -> str:
    return f"m{index:03d}"


def build_repository(directory: Path, count: int, seed: int) -> dict[str, Any]:
    """`<dir>/<name>/1/model.wasm` (and the .onnx beside the repository, for MLServer), built once per run."""
    from wasinfer.artifact import convert_onnx

    onnx_dir = directory.parent / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    started, sizes = time.perf_counter(), []
    for index in range(count):
        model = mlp_onnx(seed + index)
        wasm = convert_onnx(model, max_batch=8, name=model_name(index)).wasm
        (directory / model_name(index) / "1").mkdir(parents=True)
        (directory / model_name(index) / "1" / "model.wasm").write_bytes(wasm)
        (onnx_dir / f"{model_name(index)}.onnx").write_bytes(model.SerializeToString())
        sizes.append(len(wasm))
    return {"count": count, "seconds": time.perf_counter() - started, "wasm_bytes": int(np.median(sizes)),
            "onnx_bytes": (onnx_dir / f"{model_name(0)}.onnx").stat().st_size}


SAMPLE = np.random.default_rng(12345).random((1, INPUTS), dtype=np.float32)
BODY = json.dumps({"inputs": [{"name": "input", "shape": [1, INPUTS], "datatype": "FP32",
                               "data": SAMPLE.reshape(-1).tolist()}]}, separators=(",", ":")).encode()
JSON_HEADERS = {"Content-Type": "application/json"}


def answer_of(body: bytes) -> np.ndarray:
    return np.asarray(json.loads(body)["outputs"][0]["data"], dtype=np.float32).reshape(-1)


def matches(body: bytes, expected: np.ndarray) -> bool:
    try:
        return bool(np.allclose(answer_of(body), expected.reshape(-1), rtol=1e-4, atol=1e-4))
    except (KeyError, IndexError, ValueError):
        return False


# --- servers, metrics, memory ---------------------------------------------------------------------------------------


def wasinfer_server(name: str, port: int, workdir: Path, home: Path, *extra: str,
                   env: dict[str, str] | None = None) -> ServerProcess:
    return ServerProcess(name, [sys.executable, "-m", "wasinfer.cli.main", "serve", "--http-port", str(port),
                                "--grpc-port", "-1", *extra],
                         port, "/v2/health/ready", workdir, workdir / f"{name}.log",
                         {"WASINFER_HOME": str(home), "WASINFER_CACHE": str(home / "cache"), **(env or {})})


def start(server: ServerProcess, timeout: float = 120) -> None:
    server.start(None)
    problem = server.wait_ready(timeout)
    if problem is not None:
        server.stop()
        raise RuntimeError(problem)


Samples = list[tuple[str, dict[str, str], float]]


def scrape(port: int) -> Samples:
    """Every sample of the server's /metrics as (name, labels, value)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, _, body = request(port, "GET", "/metrics", b"", timeout=30)
    if status != 200:
        raise RuntimeError(f"/metrics answered HTTP {status}")
    return [(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(body.decode()) for s in family.samples]


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == w for k, w in labels.items()))


def histogram(samples: Samples, base: str) -> dict[str, Any]:
    """A histogram summed over every label set: cumulative counts per upper bound, sum and count."""
    buckets: dict[float, float] = {}
    for name, labels, value in samples:
        if name == f"{base}_bucket":
            bound = float(labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + value
    return {"buckets": dict(sorted(buckets.items())), "sum": total(samples, f"{base}_sum"),
            "count": total(samples, f"{base}_count")}


def histogram_delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    return {"buckets": {b: c - before["buckets"].get(b, 0.0) for b, c in after["buckets"].items()},
            "sum": after["sum"] - before["sum"], "count": after["count"] - before["count"]}


def quantile(hist: dict[str, Any], q: float) -> dict[str, float | None]:
    """The q-quantile of a histogram: the bucket bound it lies under, and a linear interpolation inside the bucket
    (as Prometheus' histogram_quantile does). Resolution is the bucket's: 1, 2.5, 5, 10 ms, ..."""
    count = hist["count"]
    if not count:
        return {"bound_ms": None, "interpolated_ms": None}
    rank, previous_bound, previous_count = q * count, 0.0, 0.0
    for bound, cumulative in hist["buckets"].items():
        if cumulative >= rank:
            if math.isinf(bound):
                return {"bound_ms": math.inf, "interpolated_ms": previous_bound * 1000}
            inside = (rank - previous_count) / (cumulative - previous_count) if cumulative > previous_count else 1
            return {"bound_ms": bound * 1000, "interpolated_ms": (previous_bound + (bound - previous_bound) * inside)
                    * 1000}
        previous_bound, previous_count = bound, cumulative
    return {"bound_ms": None, "interpolated_ms": None}


def share_under(hist: dict[str, Any], seconds: float) -> float | None:
    """Share of observations at or under a bucket bound (exact when `seconds` is one of the bounds)."""
    if not hist["count"]:
        return None
    return hist["buckets"].get(seconds, 0.0) / hist["count"]


def cold_start_summary(hist: dict[str, Any]) -> dict[str, Any]:
    return {"count": int(hist["count"]), "mean_ms": hist["sum"] / hist["count"] * 1000 if hist["count"] else None,
            "p50": quantile(hist, 0.5), "p99": quantile(hist, 0.99), "share_le_1ms": share_under(hist, 0.001),
            "share_le_10ms": share_under(hist, 0.01),
            "buckets": {("+Inf" if math.isinf(b) else f"{b:g}"): c for b, c in hist["buckets"].items()}}


def group_memory(pgid: int) -> dict[str, int]:
    """VmRSS (and its anonymous / file-backed / shared parts) summed over every process of a process group, kB → B.

    Summing RSS over processes counts pages they share twice; `processes` says how many were summed."""
    found = {"processes": 0, "VmRSS": 0, "RssAnon": 0, "RssFile": 0, "RssShmem": 0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            status = (entry / "status").read_text().splitlines()
        except (OSError, IndexError, ValueError):
            continue
        found["processes"] += 1
        for line in status:
            key, _, rest = line.partition(":")
            if key in found and rest.strip().endswith("kB"):
                found[key] += int(rest.split()[0]) * 1024
    return found


def settled_memory(server: ServerProcess, seconds: float = 1.0) -> dict[str, int]:
    """The group's memory after a short pause, so allocator work of the last request has finished."""
    time.sleep(seconds)
    assert server.proc is not None
    return group_memory(server.proc.pid)


# --- load -----------------------------------------------------------------------------------------------------------


def zipf_probabilities(n: int, s: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** s
    return weights / weights.sum()


def raw_post(port: int, name: str, host: str = HOST) -> bytes:
    """The exact bytes of one JSON infer request for a model, built once per model."""
    return (f"POST /v2/models/{name}/infer HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n").encode() + BODY


class Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams, one request at a time.

    Not httpx: its AsyncClient costs about 2.5 ms of CPU per request here, so on 2 cores the load generator, not
    the server, set the pace and the latencies. This costs a tenth of that. A request that fails in transport
    or takes longer than `timeout` is answered with status 0 and the connection is made again."""

    def __init__(self, port: int, timeout: float = 60.0, host: str = HOST):
        self.host, self.port, self.timeout = host, port, timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, raw: bytes) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._post(raw), self.timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            self.close()
            return 0, f"{type(exc).__name__}: {exc}".encode()

    async def _post(self, raw: bytes) -> tuple[int, bytes]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, length, close = int(head[9:12]), 0, False
        for line in head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            key = key.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"connection" and value.strip().lower() == b"close":
                close = True
        body = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def event_loop_factory() -> Any:
    """uvloop when installed (as the servers use), else asyncio's own."""
    try:
        import uvloop

        return uvloop.new_event_loop
    except ImportError:
        return None


async def _drive(port: int, names: list[str], clients: int, seconds: float) -> dict[str, Any]:
    """`clients` closed-loop clients post requests for names[0], names[1], ... until the time or the names run out."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    counter = itertools.count()
    raws = {name: raw_post(port, name) for name in set(names)}
    connections = [Connection(port) for _ in range(clients)]
    deadline = time.perf_counter() + seconds

    async def client(connection: Connection) -> None:
        while time.perf_counter() < deadline:
            index = next(counter)
            if index >= len(names):
                return
            started = time.perf_counter()
            status, _ = await connection.post(raws[names[index]])
            latencies.append(time.perf_counter() - started)
            statuses[status] += 1

    began = time.perf_counter()
    try:
        await asyncio.gather(*(client(c) for c in connections))
    finally:
        for connection in connections:
            connection.close()
    elapsed = time.perf_counter() - began
    lat = np.asarray(latencies) * 1000
    return {"requests": len(latencies), "ok": statuses.get(200, 0), "errors": len(latencies) - statuses.get(200, 0),
            "statuses": {str(k): v for k, v in statuses.items()}, "seconds": elapsed,
            "rps": len(latencies) / elapsed if elapsed > 0 else 0.0,
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None}


def drive(port: int, names: list[str], clients: int, seconds: float) -> dict[str, Any]:
    """_drive, with this process's CPU share (the generator shares the cores with the server)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        result = runner.run(_drive(port, names, clients, seconds))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["loadgen_cpu_share"] = cpu / result["seconds"] if result["seconds"] else None
    return result


class SteadyLoad:
    """Closed-loop clients on a thread of their own, round-robin over the nodes, until stopped (bounded anyway).

    Every request is kept as (start time, latency, status), so failures and latencies can be split by when they
    happened: before the first update (steady) or inside an update's window."""

    def __init__(self, ports: list[int], clients: int, limit_s: float):
        self.ports, self.clients, self.limit_s = ports, clients, limit_s
        self.records: list[tuple[float, float, int]] = []
        self.failures: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="steady-load", daemon=True)

    def _main(self) -> None:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(self._run())

    def start(self) -> SteadyLoad:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(90)

    async def _run(self) -> None:
        deadline = time.perf_counter() + self.limit_s
        raws = [raw_post(port, SERVED) for port in self.ports]

        async def client(offset: int) -> None:
            connections = [Connection(port, timeout=30) for port in self.ports]
            try:
                for n in itertools.count(offset):
                    if self._stop.is_set() or time.perf_counter() > deadline:
                        return
                    node = n % len(self.ports)
                    started = time.perf_counter()
                    status, body = await connections[node].post(raws[node])
                    if status != 200:
                        text = body[:120].decode(errors="replace")
                        self.failures[f"node {node}: {status or 'transport'}: {text}"] += 1
                    self.records.append((started, time.perf_counter() - started, status))
            finally:
                for connection in connections:
                    connection.close()

        await asyncio.gather(*(client(i) for i in range(self.clients)))


# --- phase 1: many models under a memory budget ---------------------------------------------------------------------


def run_models(settings: Settings, workdir: Path, repo: Path, build: dict[str, Any]) -> dict[str, Any]:
    home = workdir / "home-models"
    result: dict[str, Any] = {"build": build}
    names = [model_name(i) for i in range(settings.models)]

    # Priming: one request per model on a server without a budget. Fills the compiled-code cache (as a node that
    # has served every model once has it) and gives each model's footprint as the server counts it.
    port = free_port()
    prime = wasinfer_server("wasinfer-prime", port, workdir, home, "--model-repository", str(repo))
    console.print(f"[dim]priming: one request to each of {settings.models} models (compiles them)…[/dim]")
    start(prime)
    try:
        started = time.perf_counter()
        for index, name in enumerate(names):
            status, _, body = request(port, "POST", f"/v2/models/{name}/infer", BODY, JSON_HEADERS)
            if status != 200 or not matches(body, mlp_reference(settings.seed + index, SAMPLE)):
                raise RuntimeError(f"priming {name}: HTTP {status}, not the model's answer: {body[:200]!r}")
        result["prime_seconds"] = time.perf_counter() - started
        samples = scrape(port)
    finally:
        prime.stop()
    footprints = [v for n, _, v in samples if n == "wasinfer_model_memory_bytes"]
    footprint = int(min(footprints))
    result["first_load"] = cold_start_summary(histogram(samples, "wasinfer_cold_start_duration_seconds"))
    result["footprint_bytes"] = {"min": footprint, "median": int(np.median(footprints)), "max": int(max(footprints))}

    # A budget in whole MB (the server's unit) that holds as close to `resident` one-instance models as it can.
    mib = 1024 * 1024
    budget_mb = min(range(1, 100_000), key=lambda mb: (abs(mb * mib // footprint - settings.resident),
                                                       -(mb * mib // footprint)))
    result["budget_mb"], result["budget_holds"] = budget_mb, budget_mb * mib // footprint

    rng = np.random.default_rng(settings.seed)
    popularity = zipf_probabilities(settings.models, settings.zipf_s)
    by_rank = [names[i] for i in rng.permutation(settings.models)]  # rank 1 is not simply m000
    per_second = 4000  # an upper bound on this generator's rate here; the sequence must not run out first
    length = int((settings.zipf_warmup_s + settings.zipf_s_measured) * per_second) + 1000
    ranks = rng.choice(settings.models, size=length, p=popularity)
    sequence = [by_rank[r] for r in ranks]
    result["ideal_hit_rate"] = float(popularity[:result["budget_holds"]].sum())

    port = free_port()
    server = wasinfer_server("wasinfer-budget", port, workdir, home, "--model-repository", str(repo),
                             "--memory-budget-mb", str(budget_mb))
    console.print(f"[dim]Zipf traffic (s={settings.zipf_s}) over {settings.models} models, budget {budget_mb} MB "
                  f"(~{result['budget_holds']} models), {settings.clients} clients…[/dim]")
    start(server)
    try:
        warm = drive(port, sequence, settings.clients, settings.zipf_warmup_s)
        before, cpu_before = scrape(port), server.cpu_seconds()
        measured = drive(port, sequence[warm["requests"]:], settings.clients, settings.zipf_s_measured)
        after, cpu_after = scrape(port), server.cpu_seconds()
        measured["server_cpu_share"] = (cpu_after - cpu_before) / measured["seconds"]
        used = sequence[warm["requests"]:warm["requests"] + measured["requests"]]
        result["warmup"] = warm
        result["zipf"] = measured
        requests = total(after, "wasinfer_requests_total") - total(before, "wasinfer_requests_total")
        cold = (total(after, "wasinfer_cold_starts_total", outcome="ok")
                - total(before, "wasinfer_cold_starts_total", outcome="ok"))
        failed_loads = (total(after, "wasinfer_cold_starts_total", outcome="error")
                        - total(before, "wasinfer_cold_starts_total", outcome="error"))
        misses = (total(after, "wasinfer_model_cache_misses_total")
                  - total(before, "wasinfer_model_cache_misses_total"))
        result["zipf"].update({
            "server_requests": int(requests), "cold_starts": int(cold), "failed_loads": int(failed_loads),
            "cache_misses": int(misses), "hit_rate": 1 - misses / requests if requests else None,
            "evictions": int(total(after, "wasinfer_model_evictions_total")
                             - total(before, "wasinfer_model_evictions_total")),
            "loaded_at_end": int(total(after, "wasinfer_models_loaded")),
            "resident_bytes_at_end": int(total(after, "wasinfer_model_memory_bytes")),
            "distinct_models": len(set(used)),
            "top_share": float(sum(c for _, c in Counter(used).most_common(result["budget_holds"]))
                               / max(1, len(used))),
        })
        result["zipf_cold_start"] = cold_start_summary(histogram_delta(
            histogram(after, "wasinfer_cold_start_duration_seconds"),
            histogram(before, "wasinfer_cold_start_duration_seconds")))
        result["probe"] = probe_cold_starts(port, settings, names)
    finally:
        server.stop()
    return result


def probe_cold_starts(port: int, settings: Settings, names: list[str]) -> dict[str, Any]:
    """Time, from the client, the first request to models that are not loaded, then two more to each.

    Sequential, with nothing else running, on one keep-alive connection: first minus third is the cold start as a
    caller sees it, at a resolution the server's histogram buckets (1, 2.5, 5 ms, ...) do not have. The third,
    not the second, is the warm baseline: a model's first run after loading is itself slower (its instance's
    memory is touched for the first time, and the server has no timing yet to run it on the event loop)."""
    status, _, body = request(port, "POST", "/v2/repository/index", b'{"ready": true}', JSON_HEADERS)
    loaded = {row["name"] for row in json.loads(body)} if status == 200 else set()
    candidates = [n for n in names if n not in loaded]
    rng = np.random.default_rng(settings.seed + 1)
    chosen = [candidates[i] for i in rng.permutation(len(candidates))[:settings.probe_models]]
    before = scrape(port)
    times: list[list[float]] = [[], [], []]
    wrong = 0
    connection = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        for name in [names[0], *chosen]:
            for attempt in times:
                started = time.perf_counter()
                connection.request("POST", f"/v2/models/{name}/infer", body=BODY, headers=JSON_HEADERS)
                response = connection.getresponse()
                data = response.read()
                if name == names[0]:  # the connection's own warm-up
                    continue
                attempt.append((time.perf_counter() - started) * 1000)
                if response.status != 200 or not matches(data, mlp_reference(settings.seed + names.index(name),
                                                                              SAMPLE)):
                    wrong += 1
    finally:
        connection.close()
    after = scrape(port)
    first, second, third = (np.asarray(t) for t in times)
    extra = first - third

    def pct(values: np.ndarray, q: float) -> float | None:
        return float(np.percentile(values, q)) if len(values) else None

    return {"models": len(chosen), "loaded_before": len(loaded), "wrong_answers": wrong,
            "first_p50_ms": pct(first, 50), "first_p99_ms": pct(first, 99), "first_max_ms": pct(first, 100),
            "second_p50_ms": pct(second, 50), "third_p50_ms": pct(third, 50), "third_p99_ms": pct(third, 99),
            "extra_p50_ms": pct(extra, 50), "extra_p99_ms": pct(extra, 99),
            "server": cold_start_summary(histogram_delta(histogram(after, "wasinfer_cold_start_duration_seconds"),
                                                         histogram(before, "wasinfer_cold_start_duration_seconds")))}


# --- phase 2: updates from a registry under load --------------------------------------------------------------------


def write_config(path: Path, data: dict[str, str]) -> None:
    """Replace the desired-state file whole (a reader never sees half of it), as Kubernetes' ConfigMap swap does."""
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(data))
    os.replace(staging, path)


def registry_command(directory: Path, host: str, port: int) -> list[str]:
    """Debian's docker-registry listening on host:port, storage under `directory` (as tests/registry does);
    run it with `registry_env()`."""
    directory.mkdir(parents=True)
    config = {"version": "0.1", "log": {"level": "warn", "formatter": "text"},
              "storage": {"filesystem": {"rootdirectory": str(directory / "storage")}, "delete": {"enabled": True},
                          "maintenance": {"uploadpurging": {"enabled": False}}},
              "http": {"addr": f"{host}:{port}", "secret": uuid.uuid4().hex}}
    (directory / "config.yml").write_text(json.dumps(config))  # JSON is YAML to the registry's parser
    return [str(REGISTRY_BINARY), "serve", str(directory / "config.yml")]


def registry_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}  # they override the file


def registry_process(workdir: Path) -> tuple[ServerProcess, str]:
    """Debian's docker-registry on a free loopback port, storage in the work directory."""
    directory, port = workdir / "registry", free_port()
    process = ServerProcess("docker-registry", registry_command(directory, HOST, port), port, "/v2/", directory,
                            directory / "registry.log")
    process.env = registry_env()
    return process, f"{HOST}:{port}"


def wait_for_answer(ports: list[int], expected: np.ndarray, since: float, timeout: float) -> tuple[
        list[float | None], int]:
    """Poll every node (every 5 ms) until each answers `expected`: seconds from `since` per node, and non-200s seen."""
    found: list[float | None] = [None] * len(ports)
    failures = 0
    https = [httpx.Client(base_url=f"http://{HOST}:{port}", timeout=30) for port in ports]
    try:
        deadline = since + timeout
        while any(f is None for f in found) and time.perf_counter() < deadline:
            for k, http in enumerate(https):
                if found[k] is not None:
                    continue
                try:
                    response = http.post(f"/v2/models/{SERVED}/infer", content=BODY, headers=JSON_HEADERS)
                except httpx.HTTPError:
                    failures += 1
                    continue
                if response.status_code != 200:
                    failures += 1
                elif matches(response.content, expected):
                    found[k] = time.perf_counter() - since
            time.sleep(0.005)
    finally:
        for http in https:
            http.close()
    return found, failures


def run_updates(settings: Settings, workdir: Path) -> dict[str, Any]:
    if not REGISTRY_BINARY.exists():
        return {"status": "n/a", "reason": f"no {REGISTRY_BINARY}: install Debian's docker-registry package "
                "(apt-get install -y docker-registry)"}
    from wasinfer.artifact import convert_onnx
    from wasinfer.registry.artifact import ANNOTATIONS, ModelArtifact
    from wasinfer.registry.oci import OciClient

    base = 10_000  # weights of version i: seed base + i
    count = 1 + settings.config_updates + settings.alias_updates
    modules = {i: convert_onnx(mlp_onnx(base + i), max_batch=8, name=SERVED).wasm for i in range(count)}

    def artifact(i: int) -> ModelArtifact:
        return ModelArtifact.from_module(modules[i], REPOSITORY, f"1.{i}.0",
                                         annotations={ANNOTATIONS["accuracy"]: "0.97"})

    registry, address = registry_process(workdir)
    start(registry, timeout=30)
    nodes: list[ServerProcess] = []
    load: SteadyLoad | None = None
    try:
        client = OciClient(address, plain_http=True)
        digests = {0: client.push(REPOSITORY, "1.0.0", artifact(0))}
        config = workdir / "desired.json"
        model_path = f"{address}/{REPOSITORY}"
        write_config(config, {"model_path": model_path, "model_version": "1.0.0", "model_update_interval": "1s"})
        env = {"WASINFER_REGISTRY_PLAIN_HTTP": "1", "WASINFER_TRUST_MODE": "off"}
        for n in range(settings.nodes):
            nodes.append(wasinfer_server(f"wasinfer-node{n}", free_port(), workdir, workdir / f"home-node{n}",
                                         "--desired-state", str(config), env=env))
        console.print(f"[dim]updates: {settings.nodes} nodes on {model_path}, {settings.update_clients} clients of "
                      "steady load…[/dim]")
        for node in nodes:
            node.start(None)
        for node in nodes:
            problem = node.wait_ready(120)
            if problem is not None:
                raise RuntimeError(problem)
        ports = [node.port for node in nodes]
        first, _ = wait_for_answer(ports, mlp_reference(base, SAMPLE), time.perf_counter(), 30)
        if any(f is None for f in first):
            raise RuntimeError("a node never answered version 1.0.0's output")
        before = [scrape(p) for p in ports]
        limit = 60 + settings.steady_s + (count + 1) * (settings.update_timeout_s + 5)
        load = SteadyLoad(ports, settings.update_clients, limit).start()
        time.sleep(settings.steady_s)
        steady_end = time.perf_counter()
        rounds, windows, poll_failures = [], [], 0
        for i in range(1, count):
            trigger = "config" if i <= settings.config_updates else "alias"
            if trigger == "alias" and i == settings.config_updates + 1:
                # Switch the nodes to follow the `stable` tag, which names what they serve now: no new module, so
                # no update (the digest is the serving one). Not timed; the alias rounds start after it.
                client.tag(REPOSITORY, digests[i - 1], "stable")
                write_config(config, {"model_path": model_path, "model_version": "stable",
                                      "model_update_interval": "1s"})
                time.sleep(2.5)
            began = time.perf_counter()
            digests[i] = client.push(REPOSITORY, f"1.{i}.0", artifact(i))
            if trigger == "alias":
                client.tag(REPOSITORY, digests[i], "stable")
            pushed = time.perf_counter() - began
            if trigger == "config":
                write_config(config, {"model_path": model_path, "model_version": f"1.{i}.0",
                                      "model_update_interval": "1s"})
            times, failures = wait_for_answer(ports, mlp_reference(base + i, SAMPLE), began, settings.update_timeout_s)
            poll_failures += failures
            windows.append((began, time.perf_counter()))
            done = [t for t in times if t is not None]
            rounds.append({"version": f"1.{i}.0", "trigger": trigger, "push_s": pushed, "nodes_s": times,
                           "first_node_s": min(done) if done else None,
                           "all_nodes_s": max(done) if len(done) == len(times) else None})
            console.print(f"[dim]  1.{i}.0 ({trigger}): pushed in {pushed * 1000:.0f} ms, all nodes serving after "
                          + (f"{rounds[-1]['all_nodes_s']:.2f} s" if rounds[-1]["all_nodes_s"] is not None
                             else "timeout") + "[/dim]")
        time.sleep(0.5)
        load.stop()
        after = [scrape(p) for p in ports]
        client.close()
    finally:
        if load is not None:
            load.stop()
        for node in nodes:
            node.stop()
        registry.stop()
    records = np.asarray(load.records) if load.records else np.zeros((0, 3))
    failed = int((records[:, 2] != 200).sum()) if len(records) else 0
    start_time = records[0, 0] if len(records) else 0.0
    steady = records[(records[:, 0] > start_time + 0.5) & (records[:, 0] < steady_end)] if len(records) else records
    inside = np.zeros(len(records), dtype=bool)
    for a, b in windows:
        inside |= (records[:, 0] >= a) & (records[:, 0] <= b)
    during = records[inside]

    def p99(rows: np.ndarray) -> float | None:
        ok = rows[rows[:, 2] == 200][:, 1] if len(rows) else rows
        return float(np.percentile(ok, 99) * 1000) if len(ok) else None

    def p50(rows: np.ndarray) -> float | None:
        ok = rows[rows[:, 2] == 200][:, 1] if len(rows) else rows
        return float(np.percentile(ok, 50) * 1000) if len(ok) else None

    server_updates = {}
    for outcome in ("ok", "failed", "rollback"):
        server_updates[outcome] = int(sum(total(a, "wasinfer_model_updates_total", outcome=outcome)
                                          - total(b, "wasinfer_model_updates_total", outcome=outcome)
                                          for a, b in zip(after, before, strict=True)))
    update_sum = sum(total(a, "wasinfer_model_update_duration_seconds_sum")
                     - total(b, "wasinfer_model_update_duration_seconds_sum")
                     for a, b in zip(after, before, strict=True))
    all_nodes = [r["all_nodes_s"] for r in rounds if r["all_nodes_s"] is not None]
    by_trigger = {}
    for trigger in ("config", "alias"):
        values = [r["all_nodes_s"] for r in rounds if r["trigger"] == trigger and r["all_nodes_s"] is not None]
        if values:
            by_trigger[trigger] = {"p50_s": float(np.median(values)), "max_s": max(values), "count": len(values)}
    return {"status": "ok", "nodes": settings.nodes, "rounds": rounds, "timeouts": len(rounds) - len(all_nodes),
            "all_nodes_p50_s": float(np.median(all_nodes)) if all_nodes else None,
            "all_nodes_max_s": max(all_nodes) if all_nodes else None,
            "first_node_p50_s": float(np.median([r["first_node_s"] for r in rounds if r["first_node_s"] is not None]))
            if rounds else None,
            "push_p50_ms": float(np.median([r["push_s"] for r in rounds])) * 1000 if rounds else None,
            "by_trigger": by_trigger, "module_bytes": len(modules[0]),
            "load_requests": len(records), "failed_requests": failed, "poll_failures": poll_failures,
            "failure_kinds": dict(load.failures), "load_rps": len(records) / (records[-1, 0] - start_time)
            if len(records) > 1 else None,
            "steady_p50_ms": p50(steady), "steady_p99_ms": p99(steady), "steady_requests": len(steady),
            "during_p50_ms": p50(during), "during_p99_ms": p99(during), "during_requests": int(inside.sum()),
            "server_updates": server_updates,
            "server_update_mean_ms": update_sum / server_updates["ok"] * 1000 if server_updates["ok"] else None}


# --- phase 3: resident memory with 50 models, wasinfer and MLServer -------------------------------------------------


def write_mlserver_repository(directory: Path, onnx_dir: Path, names: list[str], port: int) -> None:
    """settings.json (loopback, debug off, parallel_workers 0) and one folder per model: its .onnx, its settings and
    serve_bench's model class (onnxruntime, one thread per session)."""
    directory.mkdir(parents=True)
    for name in names:
        model_dir = directory / name
        model_dir.mkdir()
        shutil.copyfile(onnx_dir / f"{name}.onnx", model_dir / "model.onnx")
        (model_dir / "onnx_runtime.py").write_text(MLSERVER_RUNTIME)
        (model_dir / "model-settings.json").write_text(json.dumps(
            {"name": name, "implementation": "onnx_runtime.OnnxRuntimeModel",
             "parameters": {"uri": "./model.onnx", "version": "1"}}))
    (directory / "settings.json").write_text(json.dumps(
        {"debug": False, "host": HOST, "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
         "parallel_workers": 0, "environments_dir": str(directory / ".envs"),
         "metrics_dir": str(directory / ".metrics")}))


def touch_models(port: int, names: list[str], seed: int) -> int:
    """One request to each model, sequentially; how many did not answer with the model's own output."""
    wrong = 0
    for name in names:
        status, _, body = request(port, "POST", f"/v2/models/{name}/infer", BODY, JSON_HEADERS, timeout=120)
        if status != 200 or not matches(body, mlp_reference(seed + int(name[1:]), SAMPLE)):
            wrong += 1
    return wrong


def run_memory(settings: Settings, workdir: Path, repo: Path, venv: Path) -> dict[str, Any]:
    names = [model_name(i) for i in range(settings.memory_models)]
    result: dict[str, Any] = {"models": len(names)}
    subset = workdir / "repository-memory"
    for name in names:
        shutil.copytree(repo / name, subset / name)
    # The compiled-code cache of phase 1 (when it ran): a node that has served these models before.
    port = free_port()
    server = wasinfer_server("wasinfer-memory", port, workdir, workdir / "home-models", "--model-repository",
                             str(subset))
    console.print(f"[dim]memory: wasinfer with {len(names)} models…[/dim]")
    start(server)
    try:
        idle = settled_memory(server)
        wrong = touch_models(port, names, settings.seed)
        loaded = settled_memory(server)
        samples = scrape(port)
    finally:
        server.stop()
    result["wasinfer"] = {"status": "ok", "idle": idle, "loaded": loaded, "wrong_answers": wrong,
                          "models_loaded": int(total(samples, "wasinfer_models_loaded")),
                          "model_memory_bytes": int(total(samples, "wasinfer_model_memory_bytes"))}
    if not (venv / "bin" / "mlserver").exists():
        result["mlserver"] = {"status": "n/a", "reason": f"no MLServer environment at {venv}: "
                              + mlserver_setup_hint(venv)}
        return result
    result["mlserver_versions"] = mlserver_versions(venv)
    found: dict[str, Any] = {"status": "ok"}
    for label, models in (("idle", []), ("loaded", names)):
        port = free_port()
        directory = workdir / f"mlserver-{label}"
        write_mlserver_repository(directory, repo.parent / "onnx", models, port)
        server = ServerProcess(f"mlserver-{label}", [str(venv / "bin" / "mlserver"), "start", str(directory)], port,
                               "/v2/health/ready", directory, workdir / f"mlserver-{label}.log")
        console.print(f"[dim]memory: MLServer with {len(models)} models…[/dim]")
        began = time.perf_counter()
        try:
            start(server, timeout=300)
            ready = [m for m in models if request(port, "GET", f"/v2/models/{m}/ready", b"")[0] == 200]
            found[f"{label}_start_s"] = time.perf_counter() - began
            if len(ready) != len(models):
                raise RuntimeError(f"MLServer has {len(ready)} of {len(models)} models ready: {server.log_tail()}")
            if models:
                found["wrong_answers"] = touch_models(port, models, settings.seed)
            found[label] = settled_memory(server)
        except (RuntimeError, OSError) as exc:
            result["mlserver"] = {"status": "n/a", "reason": f"MLServer ({label}): {exc}"[:400]}
            return result
        finally:
            server.stop()
    result["mlserver"] = found
    return result


# --- results --------------------------------------------------------------------------------------------------------


def dist(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def registry_version() -> str | None:
    if not REGISTRY_BINARY.exists():
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run([str(REGISTRY_BINARY), "--version"], capture_output=True, text=True, timeout=10,
                              check=False)
        words = (done.stdout or done.stderr).split()
        return next((w.lstrip("v") for w in words if w[:1].isdigit() or w[:2] == "v2"), None) or "unknown"
    return None


def versions(report: dict[str, Any]) -> dict[str, str | None]:
    ml = (report.get("memory") or {}).get("mlserver_versions") or {}
    return {"wasinfer": wasinfer.__version__, "wasmtime": dist("wasmtime"), "uvicorn": dist("uvicorn"),
            "httpx": dist("httpx"), "docker-registry": registry_version(), "MLServer": ml.get("mlserver"),
            "onnxruntime (MLServer's)": ml.get("onnxruntime")}


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MiB"


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def fmt_q(q: dict[str, float | None]) -> str:
    """A histogram quantile: the bucket bound it is under, and the interpolated estimate."""
    bound, guess = q.get("bound_ms"), q.get("interpolated_ms")
    if bound is None:
        return "-"
    if math.isinf(bound):
        return f"> {fmt_ms(guess)}"
    return f"≤ {fmt_ms(bound)} (~{fmt_ms(guess)})"


def targets(report: dict[str, Any]) -> list[dict[str, str]]:
    found = []

    def add(target: str, ok: bool | None, detail: str) -> None:
        found.append({"target": target, "status": "n/a" if ok is None else ("met" if ok else "not met"),
                      "detail": detail})

    models = report.get("models") or {}
    cold = models.get("zipf_cold_start")
    probe = models.get("probe") or {}
    module = (models.get("build") or {}).get("wasm_bytes")
    if cold and cold["count"]:
        bound = cold["p99"]["bound_ms"]
        client = f"; the client's first request to an unloaded model took p99 {fmt_ms(probe.get('first_p99_ms'))} " \
                 f"({fmt_ms(probe.get('extra_p99_ms'))} more than its third)" if probe else ""
        add(f"cold start p99 < {COLD_P99_TARGET_MS:g} ms (the seed's figure)", bound is not None
            and bound <= COLD_P99_TARGET_MS,
            f"p99 {fmt_q(cold['p99'])} over {cold['count']} cold starts under Zipf traffic (server histogram; "
            f"{fmt_pct(cold['share_le_10ms'])} ≤ 10 ms){client}")
        add(f"moonshot: cold start p99 < {COLD_MOONSHOT_MS:g} ms for modules under 5 MB",
            None if module is None or module >= MOONSHOT_MODULE_BYTES else bound is not None
            and bound <= COLD_MOONSHOT_MS,
            f"{fmt_pct(cold['share_le_1ms'])} of cold starts ≤ 1 ms; modules of {module / 1024:.0f} KiB"
            if module else "no module size")
    else:
        add(f"cold start p99 < {COLD_P99_TARGET_MS:g} ms (the seed's figure)", None, "not measured in this run")
    updates = report.get("updates") or {}
    if updates.get("status") == "ok":
        worst = updates["all_nodes_max_s"]
        add(f"update from push to every node serving < {UPDATE_TARGET_S / 60:g} min (the seed's)",
            worst is not None and updates["timeouts"] == 0 and worst < UPDATE_TARGET_S,
            f"max {fmt_s(worst)}, p50 {fmt_s(updates['all_nodes_p50_s'])} over {len(updates['rounds'])} updates on "
            f"{updates['nodes']} nodes" + (f", {updates['timeouts']} timed out" if updates["timeouts"] else ""))
        add("0 failed requests during updates under steady load", updates["failed_requests"] == 0
            and updates["poll_failures"] == 0,
            f"{updates['failed_requests']} of {updates['load_requests']} load requests failed"
            + (f", and {updates['poll_failures']} of the poller's" if updates["poll_failures"] else ""))
        steady, during = updates["steady_p99_ms"], updates["during_p99_ms"]
        add(f"p99 during updates ≤ {SWAP_P99_FACTOR:g}x the steady p99 (the issue's fault list)",
            None if steady is None or during is None else during <= SWAP_P99_FACTOR * steady,
            f"{fmt_ms(during)} during vs {fmt_ms(steady)} steady"
            + (f" ({during / steady:.2f}x)" if steady and during else ""))
    else:
        add("update from push to every node serving; 0 failed requests", None,
            updates.get("reason", "not measured in this run"))
    memory = report.get("memory") or {}
    ratio = report.get("ratios", {}).get("rss: wasinfer/mlserver")
    if ratio is not None:
        add("resident memory with 50 models ≤ 1/3 of MLServer's (the seed's resource and cost challenges)",
            ratio <= MEMORY_TARGET,
            f"wasinfer {mib(memory['wasinfer']['loaded']['VmRSS'])} vs MLServer "
            f"{mib(memory['mlserver']['loaded']['VmRSS'])}: {ratio:.2f}x")
    else:
        reason = ((memory.get("mlserver") or {}).get("reason") or "not measured in this run") if memory else \
            "not measured in this run"
        add("resident memory with 50 models ≤ 1/3 of MLServer's", None, reason)
    return found


def ratios(report: dict[str, Any]) -> dict[str, float]:
    memory = report.get("memory") or {}
    found = {}
    ml, wi = memory.get("mlserver") or {}, memory.get("wasinfer") or {}
    if ml.get("status") == "ok" and wi.get("status") == "ok":
        found["rss: wasinfer/mlserver"] = wi["loaded"]["VmRSS"] / ml["loaded"]["VmRSS"]
        grown_ml = ml["loaded"]["VmRSS"] - ml["idle"]["VmRSS"]
        if grown_ml > 0:
            found["rss per model: wasinfer/mlserver"] = (wi["loaded"]["VmRSS"] - wi["idle"]["VmRSS"]) / grown_ml
    return found


def notes_for(report: dict[str, Any]) -> list[str]:
    notes = []
    models = report.get("models") or {}
    if models:
        notes.append("Hit rate is 1 - (cache misses / requests) over the measured window, from the server's own "
                     "/metrics (`wasinfer_model_cache_misses_total`: requests that waited for their model's load, "
                     "also those that joined another request's load; `wasinfer_requests_total`); the server also "
                     "exports `wasinfer_model_cache_hit_ratio` since its start. `ideal` is the share of the Zipf "
                     "distribution on its most popular models that fit the budget: what a cache that always held "
                     "exactly those would get.")
        notes.append("Cold starts under traffic reload modules whose compiled code is in the on-disk cache (the "
                     "priming server filled it; a node compiles a version once). The first loads, which compile, are "
                     "shown apart. The server's histogram has buckets at 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25 ms, so its "
                     "quantiles are bucket bounds (≤) with a linear interpolation inside the bucket (~); the "
                     "client's probe (sequential, nothing else running) times each first request to an unloaded "
                     "model and two more right after, at full resolution, HTTP included.")
        zipf, probe = models.get("zipf") or {}, models.get("probe") or {}
        cold = models.get("zipf_cold_start") or {}
        if cold.get("count") and probe.get("server", {}).get("count"):
            notes.append(f"Cold starts under traffic: server p99 {fmt_q(cold['p99'])}, in the sequential probe "
                         f"{fmt_q(probe['server']['p99'])}. These reload modules under 5 MiB whose compiled code is "
                         "cached, which the server does on the request's own thread (ModelManager.loads_quickly): on "
                         "a load thread each step handed the GIL over and waited behind the busy event loop to get "
                         "it back (Python hands it over every 5 ms), p99 24-44 ms in the runs before it. The loop "
                         "is then busy for the load's 1-2 ms, which the other requests' latency carries.")
        if zipf.get("errors"):
            notes.append(f"{zipf['errors']} requests of the Zipf load failed: {zipf.get('statuses')}.")
    updates = report.get("updates") or {}
    if updates.get("status") == "ok":
        notes.append("Update time is from the start of the push (OciClient, plain HTTP to docker-registry on "
                     "loopback) to the moment every node answered with the new version's output (each node is "
                     "polled every 5 ms). Nodes look at the desired-state file once a second (a changed file is "
                     "applied at the next look) and at the registry every `model_update_interval` (1 s here: "
                     "the alias rounds move the `stable` tag and leave the file alone), so about a second of each "
                     "figure is waiting for the next look; the server's own fetch → check → compile → warm-up → swap "
                     f"averaged {fmt_ms(updates.get('server_update_mean_ms'))} "
                     "(`wasinfer_model_update_duration_seconds`). The nodes are server processes on this one machine, "
                     "not separate hosts.")
    memory = report.get("memory") or {}
    wi, ml = memory.get("wasinfer") or {}, memory.get("mlserver") or {}
    if wi.get("status") == "ok" and ml.get("status") == "ok":
        notes.append(f"Most of wasinfer's resident memory is there before any model loads: "
                     f"{mib(wi['idle']['VmRSS'])} of {mib(wi['loaded']['VmRSS'])} (the interpreter, numpy, wasmtime, "
                     "uvicorn; `wasinfer serve` imports neither onnx, the compiler nor grpcio unless it needs them); "
                     f"the 50 models add {mib(wi['loaded']['VmRSS'] - wi['idle']['VmRSS'])}, MLServer's "
                     f"{mib(ml['loaded']['VmRSS'] - ml['idle']['VmRSS'])}. A third of MLServer's total is less than "
                     "wasinfer's own process with no model, so at this model size the target is out of reach of any "
                     "change to how models are held; it needs a smaller server process.")
    if memory:
        notes.append("Memory is VmRSS from /proc/<pid>/status summed over the server's process group (MLServer runs "
                     "with `parallel_workers: 0`, so both are one process; `processes` says how many were summed), "
                     "read 1 s after the last request. `file` is the file-backed part (shared libraries, and "
                     "wasinfer's compiled code mapped from its cache), `anon` the heap. Both serve the same 50 "
                     "modules' source models: wasinfer the compiled .wasm, MLServer the .onnx through onnxruntime "
                     "(one intra-op and inter-op thread per session, as in serve_bench).")
    return notes


def finish(report: dict[str, Any]) -> None:
    report["versions"] = report.get("versions") or versions(report)
    report["ratios"] = ratios(report)
    report["targets"] = targets(report)
    report["notes"] = notes_for(report)


# --- tables ---------------------------------------------------------------------------------------------------------


def models_rows(report: dict[str, Any]) -> list[list[str]]:
    m = report.get("models")
    if not m:
        return []
    z, fp, probe, build = m["zipf"], m["footprint_bytes"], m["probe"], m["build"]
    cold, first, ps = m["zipf_cold_start"], m["first_load"], probe["server"]
    return [
        ["models in the repository", f"{build['count']} MLPs, module {build['wasm_bytes'] / 1024:.0f} KiB each"],
        ["footprint per loaded model (server's count)", f"{fp['min'] / 1024:.0f} KiB (max {fp['max'] / 1024:.0f} KiB)"],
        ["memory budget", f"{m['budget_mb']} MB: holds {m['budget_holds']} models of one instance"],
        ["load (measured window)", f"{z['requests']:,} requests in {z['seconds']:.0f} s = {z['rps']:,.0f}/s, "
         f"{z['distinct_models']} models requested, {z['errors']} failed"],
        ["client latency p50 / p99", f"{fmt_ms(z['p50_ms'])} / {fmt_ms(z['p99_ms'])}"],
        ["CPU: server / load generator", f"{z['server_cpu_share']:.2f} / {z['loadgen_cpu_share']:.2f} cores of "
         f"{report['machine']['nproc']} (closed loop: the node runs flat out)"],
        ["hit rate (ideal for the budget)", f"{fmt_pct(z['hit_rate'])} ({fmt_pct(m['ideal_hit_rate'])})"],
        ["cold starts / evictions",
         f"{z['cold_starts']:,} / {z['evictions']:,}; {z['loaded_at_end']} loaded at the end"],
        ["cold start under traffic p50", fmt_q(cold["p50"])],
        ["cold start under traffic p99", f"{fmt_q(cold['p99'])}; mean {fmt_ms(cold['mean_ms'])}"],
        ["first load (compiles) p50 / p99", f"{fmt_q(first['p50'])} / {fmt_q(first['p99'])}"],
        [f"probe: first request to an unloaded model ({probe['models']})",
         f"p50 {fmt_ms(probe['first_p50_ms'])}, p99 {fmt_ms(probe['first_p99_ms'])}"],
        ["probe: second / third request to it",
         f"p50 {fmt_ms(probe['second_p50_ms'])} / p50 {fmt_ms(probe['third_p50_ms'])}, "
         f"p99 {fmt_ms(probe['third_p99_ms'])}"],
        ["probe: first - third (the cold start a caller sees)",
         f"p50 {fmt_ms(probe['extra_p50_ms'])}, p99 {fmt_ms(probe['extra_p99_ms'])}; server histogram p99 "
         f"{fmt_q(ps['p99'])}"],
    ]


UPDATE_HEADER = ["version", "trigger", "push", "first node serving", "all nodes serving"]


def update_rows(report: dict[str, Any]) -> list[list[str]]:
    u = report.get("updates") or {}
    if u.get("status") != "ok":
        return []
    return [[r["version"], "config file" if r["trigger"] == "config" else "`stable` tag moved",
             fmt_ms(r["push_s"] * 1000), fmt_s(r["first_node_s"]), fmt_s(r["all_nodes_s"])] for r in u["rounds"]]


MEMORY_HEADER = ["server", "no model", "50 models loaded", "per model", "anon / file (50 models)", "processes",
                 "start with 50"]


def memory_rows(report: dict[str, Any]) -> list[list[str]]:
    mem = report.get("memory")
    if not mem:
        return []
    rows = []
    for key, label in (("wasinfer", "wasinfer serve (wasmtime)"), ("mlserver", "MLServer + onnxruntime")):
        e = mem.get(key) or {}
        if e.get("status") != "ok":
            rows.append([label, f"n/a: {e.get('reason', '')}"[:200], *["-"] * 5])
            continue
        idle, loaded = e["idle"], e["loaded"]
        per = (loaded["VmRSS"] - idle["VmRSS"]) / mem["models"]
        start_s = e.get("loaded_start_s")
        rows.append([label, mib(idle["VmRSS"]), mib(loaded["VmRSS"]), f"{per / 1024:.0f} KiB",
                     f"{mib(loaded['RssAnon'])} / {mib(loaded['RssFile'])}", str(loaded["processes"]),
                     "-" if start_s is None else fmt_s(start_s)])
    return rows


def print_tables(report: dict[str, Any]) -> None:
    for title, header, rows in (("Many models: Zipf traffic under a memory budget", ["figure", "value"],
                                 models_rows(report)),
                                ("Updates from the registry under load", UPDATE_HEADER, update_rows(report)),
                                ("Resident memory (VmRSS of the process group)", MEMORY_HEADER, memory_rows(report))):
        if not rows:
            continue
        table = Table(title=title, title_justify="left")
        for n, column in enumerate(header):
            table.add_column(column, justify="left" if n < 2 else "right", overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    u = report.get("updates") or {}
    if u.get("status") == "ok":
        console.print(f"updates: all nodes serving p50 {fmt_s(u['all_nodes_p50_s'])}, max "
                      f"{fmt_s(u['all_nodes_max_s'])}; "
                      f"{u['failed_requests']} failed of {u['load_requests']} load requests; p99 steady "
                      f"{fmt_ms(u['steady_p99_ms'])}, during updates {fmt_ms(u['during_p99_ms'])}", highlight=False)
    if report["ratios"]:
        console.print("ratios: " + ", ".join(f"{k} {v:.2f}x" for k, v in report["ratios"].items()), highlight=False)
    for target in report["targets"]:
        colour = {"met": "green", "not met": "yellow"}.get(target["status"], "dim")
        console.print(f"[{colour}]{target['status']}[/{colour}] {target['target']}: {target['detail']}",
                      highlight=False)
    for note in report["notes"]:
        console.print(f"note: {note}", highlight=False)


def render_section(report: dict[str, Any]) -> str:
    m, v, s = report["machine"], report["versions"], report["settings"]
    lines = [
        "## Model lifecycle",
        "",
        f"Generated by `python benchmarks/lifecycle_bench.py` on {report['date']} ({report['seconds']:.0f} s); do not "
        "edit between the markers. One run, one machine, every server in its own process on 127.0.0.1; the load "
        "generator shares the cores with the servers.",
        "",
        f"**Machine:** {m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, Python "
        f"{m['python']}; 1-minute load average {m['loadavg_1min']} before the run, {m['loadavg_1min_after']} after.",
        "",
        "**Versions:** " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
        "",
        f"**Settings.** {s['models']} MLPs (64 → {HIDDEN} → {HIDDEN} → 10, ReLU, random weights from a fixed seed, "
        "one per model) compiled with `convert_onnx(max_batch=8)` into `<repo>/<name>/1/model.wasm`. Many models: "
        f"`wasinfer serve --memory-budget-mb B` (defaults otherwise) with B sized from one model's "
        f"`wasinfer_model_memory_bytes` to hold {s['resident']}; Zipf traffic (s = {s['zipf_s']}) over the "
        f"{s['models']} names, {s['clients']} closed-loop clients (asyncio streams, keep-alive, JSON requests), "
        f"{s['zipf_warmup_s']:g} s of warm-up then {s['zipf_s_measured']:g} s measured; then a probe of "
        f"{s['probe_models']} unloaded models. Updates: docker-registry on loopback, {s['nodes']} "
        "`wasinfer serve --desired-state` nodes (`model_update_interval: 1s`, plain HTTP, trust mode off, the shipped "
        f"policies), {s['update_clients']} clients of steady load spread over them, {s['steady_s']:g} s steady "
        f"before {s['config_updates']} config-file updates and {s['alias_updates']} tag moves. Memory: "
        f"{s['memory_models']} of the models, one request each.",
        "",
    ]
    rows = models_rows(report)
    if rows:
        lines += ["### Many models under a memory budget", "", *md_table(["figure", "value"], rows), ""]
    u = report.get("updates") or {}
    if u.get("status") == "ok":
        lines += ["### Updates from push to serving", "", *md_table(UPDATE_HEADER, update_rows(report)), "",
                  f"Every node serving the new version: p50 **{fmt_s(u['all_nodes_p50_s'])}**, max "
                  f"**{fmt_s(u['all_nodes_max_s'])}** (first node p50 {fmt_s(u['first_node_p50_s'])}; push p50 "
                  f"{fmt_ms(u['push_p50_ms'])}). Steady load: {u['load_requests']:,} requests, "
                  f"**{u['failed_requests']} failed**; p50/p99 {fmt_ms(u['steady_p50_ms'])} / "
                  f"{fmt_ms(u['steady_p99_ms'])} before the first update, {fmt_ms(u['during_p50_ms'])} / "
                  f"{fmt_ms(u['during_p99_ms'])} inside the update windows. The servers counted "
                  f"{u['server_updates']['ok']} successful updates, {u['server_updates']['failed']} failed.", ""]
    elif u:
        lines += ["### Updates from push to serving", "", f"Not measured: {u.get('reason')}", ""]
    rows = memory_rows(report)
    if rows:
        r = report["ratios"]
        lines += ["### Resident memory with 50 models", "", *md_table(MEMORY_HEADER, rows), ""]
        if "rss: wasinfer/mlserver" in r:
            lines += [f"wasinfer/MLServer resident memory with 50 models: **{r['rss: wasinfer/mlserver']:.2f}x**"
                      + (f"; per model loaded: {r['rss per model: wasinfer/mlserver']:.2f}x"
                         if "rss per model: wasinfer/mlserver" in r else "") + ".", ""]
    lines += ["### Targets", "",
              *md_table(["target", "status", "this run"], [[t["target"], t["status"], t["detail"]]
                                                           for t in report["targets"]]), ""]
    if report["notes"]:
        lines += ["Notes:", "", *(f"- {n}" for n in report["notes"]), ""]
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(GROUPS)} (default: all). models = "
                        "Zipf traffic under a memory budget, updates = registry pushes under load, memory = RSS with "
                        "50 models against MLServer")
    parser.add_argument("--quick", action="store_true",
                        help="shorter traffic, fewer probes and updates: a smoke run (about half the time)")
    parser.add_argument("--models", type=int, help=f"models in the repository (default {FULL.models})")
    parser.add_argument("--resident", type=int, help=f"models the memory budget holds (default {FULL.resident})")
    parser.add_argument("--zipf-s", type=float, help=f"Zipf exponent of the traffic (default {FULL.zipf_s})")
    parser.add_argument("--clients", type=int, help=f"concurrent clients of the Zipf load (default {FULL.clients})")
    parser.add_argument("--duration", type=float,
                        help=f"measured seconds of Zipf traffic (default {FULL.zipf_s_measured:g}, quick "
                        f"{QUICK.zipf_s_measured:g})")
    parser.add_argument("--nodes", type=int, help=f"desired-state servers updated together (default {FULL.nodes})")
    parser.add_argument("--updates", type=int,
                        help=f"config-file updates (default {FULL.config_updates}, quick {QUICK.config_updates}); the "
                        f"alias rounds follow (default {FULL.alias_updates})")
    parser.add_argument("--mlserver-venv", type=Path,
                        default=Path(os.environ.get(MLSERVER_VENV_ENV, DEFAULT_MLSERVER_VENV)),
                        help=f"MLServer's virtual environment (default ${MLSERVER_VENV_ENV} or %(default)s); "
                        "`python benchmarks/serve_bench.py --setup-mlserver` makes it")
    add_output_arguments(parser, RESULTS, ROOT)
    args = parser.parse_args(argv)
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
    overrides = {"models": args.models, "resident": args.resident, "zipf_s": args.zipf_s, "clients": args.clients,
                 "zipf_s_measured": args.duration, "nodes": args.nodes, "config_updates": args.updates}
    settings = replace(QUICK if args.quick else FULL, **{k: v for k, v in overrides.items() if v is not None})
    if "memory" in groups and settings.models < settings.memory_models:
        settings = replace(settings, memory_models=settings.models)
    started, before = time.perf_counter(), machine()
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "quick": args.quick, "settings": asdict(settings)}
    with tempfile.TemporaryDirectory(prefix="lifecycle-bench-") as tmp:
        workdir = Path(tmp)
        repo = workdir / "repository"
        if groups & {"models", "memory"}:
            count = settings.models if "models" in groups else settings.memory_models
            console.print(f"[dim]building {count} models…[/dim]")
            build = build_repository(repo, count, settings.seed)
        if "models" in groups:
            report["models"] = run_models(settings, workdir, repo, build)
        if "updates" in groups:
            report["updates"] = run_updates(settings, workdir)
        if "memory" in groups:
            report["memory"] = run_memory(settings, workdir, repo, args.mlserver_venv.resolve())
    report["seconds"] = time.perf_counter() - started
    report["machine"] = {**before, "loadavg_1min_after": round(os.getloadavg()[0], 2)}
    finish(report)
    full = not args.quick and groups == set(GROUPS) and all(v is None for v in overrides.values())
    print_tables(report)
    written = publish(report, args.out, RESULTS, full, args.doc, render_section, BEGIN, END, DOC)
    console.print(written, markup=False, highlight=False, soft_wrap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
