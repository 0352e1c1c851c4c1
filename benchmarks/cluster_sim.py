"""A cluster on one machine: three serving nodes, a registry and Prometheus; a rollout and a rollback under load.

What the seed runs on 500 K3s nodes, shrunk to what one machine can show for real (issue "Edge deployment on
K3s", "A cluster on one machine"):

- nodes: three `wasinfer serve --desired-state DIR` processes. Where this runs as root and `ip netns` works,
  each node has a network namespace of its own, joined to a bridge by a veth pair on a private 10.250.x.0/24
  subnet that exists only on this machine, and listens on port 8000 of its own address, as pods do; elsewhere
  they are processes on 127.0.0.1 (the report says which ran, and why);
- desired state: each node's ConfigMap as the kubelet mounts it (a directory of key files swapped atomically
  through its `..data` symlink), holding the seed's keys: model_path (a registry reference), model_version
  ("v1.0.0"), model_update_interval ("5m", as the seed writes it: a change of the mount is seen by the node's
  1 s poll, not by the interval) and cache_enabled ("true");
- registry: Debian's `docker-registry` (as tests/registry/registry_server.py starts it), on the bridge's address
  (or loopback); the versions are pushed to it with wasinfer.registry.oci.OciClient;
- Prometheus (Debian's `prometheus`, optional): scrapes the three nodes every second; the per-node request
  rates and the model version that served the traffic are read back from its HTTP API. Without it, the
  nodes' /metrics are read directly and the Prometheus figures read n/a;
- load: a client-side round-robin over the nodes (request i goes to node i mod 3, no retries), open loop at a
  fixed rate (a share of the capacity measured first with closed-loop clients), so a slow answer delays no later
  request's clock; each answer is checked against both versions' outputs.

The run: capacity (closed loop), then steady load before, during and after a rollout of v1.1.0 (push, then every
node's ConfigMap rewritten at once), then a rollback to v1.0.0 the same way; then the registry's pull throughput
with nothing else running. Reported: each node's time from the ConfigMap write to serving the new version (the
first answer with the new version's output; also as Prometheus saw it), failed requests (target 0), p50/p99
latency per window, per-node and total throughput, and the extrapolation to the seed's 500 nodes, written out as
arithmetic from these figures (labelled as such: nothing at that scale is measured here).

Writes benchmarks/results/cluster_sim.json and, on a full run, the "A cluster on one machine" section of
docs/performance.md (only the text between its marker comments).

    python benchmarks/cluster_sim.py                    # the full run (about 1.5 minutes on 2 cores)
    python benchmarks/cluster_sim.py --quick            # shorter windows (under a minute); writes *.partial.json
    python benchmarks/cluster_sim.py --network loopback # processes on 127.0.0.1 even where namespaces work
    python benchmarks/cluster_sim.py --render --doc     # measure nothing: redo the tables and section from the JSON
    python benchmarks/cluster_sim.py --control-plane --nodes 6  # the cluster on a real API server (below)

`--control-plane` (control_plane_sim.py) runs the cluster on a real Kubernetes control plane (kube-apiserver,
etcd, controller-manager and scheduler v1.20.2: tests/k8s's, built once, ~8 minutes, cached in
~/.cache/k8s-1.20) instead of mounted directories: N fake Nodes, the rendered Deployment's pods bound one to
each, each pod's container run as a `wasinfer serve --desired-state k8s://sim/ai-model-config` process in its
node's network namespace (the API server and the registry on the bridge's address), the fake kubelet marking
the pods Running; ConfigMap patches under open-loop load (per-node convergence, failed requests, the pods as the
API server sees them); then the fan-out at the seed's scale, simulated: 500 watch streams on the ConfigMap and
up to 500 concurrent pulls of the new module from the one registry. The figures join the stored full run's JSON
and its section ("Through a real API server"), and the 500-node arithmetic uses them. Needs root and `ip netns`
(it says why and measures nothing otherwise); Ctrl+C or SIGTERM stops every process and removes every namespace.

Setup: Debian's `docker-registry` (required) and `prometheus` (optional): `apt-get install -y docker-registry
prometheus`. Namespaces need root and iproute2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from bench_report import add_output_arguments, fmt_ms, machine, md_table, publish, write_doc
from cluster_parts import (
    NEW,
    NODE_PORT,
    OLD,
    REPOSITORY,
    SERVED,
    WEIGHT_SEED,
    HostProcess,
    Network,
    OpenLoad,
    Versions,
    configmap,
    convergence,
    make_network,
    measure_capacity,
    registry_process,
    scrape,
    start_all,
    terminated_cleanly,
    wait_converged,
    window_stats,
)
from lifecycle_bench import (
    REGISTRY_BINARY,
    event_loop_factory,
    mlp_onnx,
    total,
)
from serve_bench import free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "cluster_sim.json"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- cluster_sim:begin -->", "<!-- cluster_sim:end -->"
PROMETHEUS_BINARY = Path("/usr/bin/prometheus")
SEED_NODES, SEED_PODS, SEED_DAILY_INFERENCES, SEED_POD_CPU_LIMIT = 500, 5000, 100_000_000, 2.0
SEED_LATENCY_MS = 100.0  # the seed: "延迟 < 100ms"
SWAP_P99_FACTOR = 2.0  # as lifecycle_bench judges updates: p99 while swapping within 2x the steady p99
console = Console(width=None if sys.stdout.isatty() else 200)


@dataclass(frozen=True)
class Settings:
    """How long and how hard each phase runs; recorded with the results."""

    nodes: int = 3
    capacity_clients_per_node: int = 3  # closed-loop connections per node while measuring capacity
    capacity_s: float = 8.0
    load_share: float = 0.4  # the rollout's offered rate, as a share of the measured capacity
    max_rate: float = 1000.0  # requests/s, whatever the capacity
    window_s: float = 8.0  # steady load before the rollout, after it and after the rollback
    converge_timeout_s: float = 60.0
    pulls: int = 64  # registry pull throughput: this many pulls of the module ...
    pull_threads: int = 8  # ... from this many threads (and as many connections for the raw blob GETs)
    blob_get_s: float = 3.0
    scrape_interval_s: float = 1.0
    update_interval: str = "5m"  # the seed's model_update_interval
    seed: int = 0  # of the pauses' jitter


FULL = Settings()
QUICK = Settings(capacity_s=3.0, window_s=3.0, pulls=16, blob_get_s=1.0)



def prometheus_process(workdir: Path, targets: list[str], interval_s: float) -> HostProcess:
    """Prometheus on loopback scraping the nodes; each target labelled node="node<i>"."""
    directory = workdir / "prometheus"
    directory.mkdir(parents=True)
    port = free_port()
    interval = f"{int(interval_s * 1000)}ms"
    config = {"global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
              "scrape_configs": [{"job_name": "wasinfer", "metrics_path": "/metrics", "static_configs": [
                  {"targets": [target], "labels": {"node": f"node{i}"}} for i, target in enumerate(targets)]}]}
    (directory / "prometheus.yml").write_text(json.dumps(config))
    return HostProcess("prometheus", [str(PROMETHEUS_BINARY), f"--config.file={directory / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={directory / 'data'}",
                                      f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                       "127.0.0.1", port, "/-/ready", directory)


def node_process(net: Network, index: int, workdir: Path, config_dir: Path) -> HostProcess:
    host = net.node_addresses[index]
    port = NODE_PORT if net.mode == "netns" else free_port()
    home = workdir / f"home-node{index}"  # its own compiled-code cache, as each node has
    command = net.wrap(index, [sys.executable, "-m", "wasinfer.cli.main", "serve", "--desired-state", str(config_dir),
                               "--host", host, "--http-port", str(port), "--grpc-port", "-1"])
    env = {"WASINFER_HOME": str(home), "WASINFER_CACHE": str(home / "cache"), "WASINFER_REGISTRY_PLAIN_HTTP": "1",
           "WASINFER_TRUST_MODE": "off"}
    process = HostProcess(f"node{index}", command, host, port, "/v2/health/ready", workdir, env)
    process.env.pop("MODEL_PATH", None)  # it would win over the ConfigMap's model_path
    return process


# --- the desired state, as the kubelet mounts a ConfigMap -----------------------------------------------------------


def mount_configmap(directory: Path, data: dict[str, str]) -> None:
    """The kubelet's layout: a timestamped dir of key files, `..data` → it (one rename swaps it), key → `..data/key`."""
    directory.mkdir(parents=True, exist_ok=True)
    generation = directory / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{uuid.uuid4().hex[:8]}"
    generation.mkdir()
    for key, value in data.items():
        (generation / key).write_text(value)
    old = os.readlink(directory / "..data") if (directory / "..data").is_symlink() else None
    staging = directory / "..data_tmp"
    staging.symlink_to(generation.name)
    os.replace(staging, directory / "..data")
    for key in data:
        link = directory / key
        if not link.is_symlink():
            link.symlink_to(Path("..data") / key)
    if old:
        shutil.rmtree(directory / old, ignore_errors=True)



# --- metrics: the nodes' own, and Prometheus --------------------------------------------------------------------------


class Prometheus:
    """The few queries this report needs, against Prometheus' HTTP API."""

    def __init__(self, url: str):
        self.url = url

    def _get(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        response = httpx.get(self.url + path, params=params, timeout=30)
        response.raise_for_status()
        document = response.json()
        if document.get("status") != "success":
            raise RuntimeError(f"Prometheus: {document.get('error')}")
        result: list[dict[str, Any]] = document["data"]["result"]
        return result

    def instant(self, query: str, at: float) -> list[dict[str, Any]]:
        return self._get("/api/v1/query", {"query": query, "time": f"{at:.3f}"})

    def series(self, query: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return self._get("/api/v1/query_range", {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                 "step": f"{step:g}"})

    def targets_up(self) -> int:
        return sum(1 for r in self.instant("up", time.time()) if r["value"][1] == "1")


def wait_scraped(prometheus: Prometheus, nodes: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, RuntimeError, KeyError):
            if prometheus.targets_up() >= nodes:
                return True
        time.sleep(0.25)
    return False


# --- the run --------------------------------------------------------------------------------------------------------


@dataclass
class Marks:
    """Wall-clock (for Prometheus) and perf_counter (for the load's records) times of the run's events."""

    perf: dict[str, float] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.perf[name], self.wall[name] = time.perf_counter(), time.time()



async def _blob_gets(host: str, port: int, path: str, connections: int, seconds: float) -> tuple[int, int, float]:
    """Keep-alive GETs of one blob from `connections` connections for `seconds`: (GETs, bytes, elapsed)."""
    raw = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    gets = received = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal gets, received
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
                if head[9:12] != b"200":
                    raise RuntimeError(f"GET {path}: {head[:60]!r}")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                received += len(await reader.readexactly(length))
                gets += 1
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return gets, received, time.perf_counter() - began


def measure_pulls(address: str, settings: Settings, reference: str) -> dict[str, Any]:
    """What the registry serves here: whole pulls as a node makes them (OciClient: manifest, config, module, every
    digest checked), one at a time and from several threads; and raw GETs of the module's blob, the registry's own
    throughput, which the fan-out arithmetic uses."""
    from concurrent.futures import ThreadPoolExecutor

    from wasinfer.registry.oci import OciClient

    def pull(_: int) -> int:
        with OciClient(address, plain_http=True) as client:
            return len(client.pull(REPOSITORY, reference).wasm)

    single = []
    for _ in range(5):
        began = time.perf_counter()
        size = pull(0)
        single.append(time.perf_counter() - began)
    began = time.perf_counter()
    with ThreadPoolExecutor(settings.pull_threads) as pool:
        sizes = list(pool.map(pull, range(settings.pulls)))
    elapsed = time.perf_counter() - began
    manifest = httpx.get(f"http://{address}/v2/{REPOSITORY}/manifests/{reference}", timeout=30,
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    manifest.raise_for_status()
    layer = max(manifest.json()["layers"], key=lambda d: int(d["size"]))
    host, port = address.rsplit(":", 1)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        gets, received, raw_s = runner.run(_blob_gets(host, int(port), f"/v2/{REPOSITORY}/blobs/{layer['digest']}",
                                                      settings.pull_threads, settings.blob_get_s))
    return {"module_bytes": size, "single_pull_p50_s": float(np.median(single)), "pulls": settings.pulls,
            "threads": settings.pull_threads, "seconds": elapsed, "pulls_per_s": settings.pulls / elapsed,
            "pull_bytes_per_s": sum(sizes) / elapsed, "blob_gets": gets, "blob_gets_s": raw_s,
            "bytes_per_s": received / raw_s}


def read_prometheus(prometheus: Prometheus, marks: Marks, nodes: int, labels: dict[str, str]) -> dict[str, Any]:
    """Per-node request rates per window, and the version that served each node's traffic over time."""
    selector = f'model="{SERVED}"'
    rates: dict[str, list[float | None]] = {}
    for window, (a, b) in WINDOWS.items():
        start, end = marks.wall.get(a), marks.wall.get(b)
        seconds = int(end - start) if start is not None and end is not None else 0
        if end is None or seconds < 2:  # rate() needs two scrapes inside the range
            rates[window] = [None] * nodes
            continue
        result = prometheus.instant(f'sum by (node) (rate(wasinfer_requests_total{{{selector},outcome="ok"}}'
                                    f'[{seconds}s]))', end)
        by_node = {r["metric"].get("node"): float(r["value"][1]) for r in result}
        rates[window] = [by_node.get(f"node{n}") for n in range(nodes)]
    # The nodes' counters by repository version, as scraped: when a version's counter first moves after a round
    # starts, Prometheus has seen that node serve it (scrape lag included, so within one scrape interval).
    step = 0.25
    series = prometheus.series(f'sum by (node, version) (wasinfer_requests_total{{{selector},outcome="ok"}})',
                               marks.wall["load"] - 2, marks.wall["end"], step)
    counters: dict[int, dict[str, dict[float, float]]] = {n: {} for n in range(nodes)}
    for row in series:
        node = int(row["metric"].get("node", "node-1")[4:])
        counters.setdefault(node, {})[row["metric"].get("version", "?")] = {
            float(at): float(value) for at, value in row["values"]}

    def value(node: int, label: str, at: float) -> float:
        """The counter's last value at or before `at` (0 before it exists)."""
        points = counters.get(node, {}).get(label, {})
        return max(((t, v) for t, v in points.items() if t <= at), default=(0.0, 0.0))[1]

    def serving(node: int, at: float) -> str | None:
        """The version whose counter grew most over the 2 s before `at`."""
        growth = {label: value(node, label, at) - value(node, label, at - 2) for label in counters.get(node, {})}
        moving = {label: g for label, g in growth.items() if g > 0}
        return max(moving, key=lambda label: moving[label]) if moving else None

    def switched(node: int, since: float, until: float, old: str | None) -> float | None:
        """Seconds from `since` to the first scrape at which another version's counter than `old` had moved."""
        others = [label for label in counters.get(node, {}) if label != old]
        steps = sorted({t for label in others for t in counters[node][label] if since < t <= until})
        for t in steps:
            if any(value(node, label, t) > value(node, label, since) for label in others):
                return t - since
        return None

    versions, switch = {}, {}
    phases = {"rollout": ("rollout", "rollback"), "rollback": ("rollback", "end")}
    for phase, (event, next_event) in phases.items():
        before = [serving(n, marks.wall[event]) for n in range(nodes)]
        versions[f"before_{phase}"] = before
        versions[f"after_{phase}"] = [serving(n, marks.wall[next_event]) for n in range(nodes)]
        switch[phase] = [switched(n, marks.wall[event], marks.wall[next_event], before[n]) for n in range(nodes)]
    end = marks.wall["end"]
    updates = prometheus.instant('sum by (node, outcome) (wasinfer_model_updates_total)', end)
    return {"status": "ok", "rates_rps": rates, "serving_version": versions, "traffic_switched_s": switch,
            "updates": {f"{r['metric'].get('node')}/{r['metric'].get('outcome')}": int(float(r["value"][1]))
                        for r in updates},
            "version_labels": labels, "model_version_info": read_version_info(prometheus, marks, nodes, step)}


def read_version_info(prometheus: Prometheus, marks: Marks, nodes: int, step: float) -> dict[str, Any]:
    """The servers' own `wasinfer_model_version_info{serving_version}` (the ConfigMap's label, e.g. v1.1.0), where
    the server exports it: per round, when Prometheus first saw each node serve the round's version, and the label
    each node served when the round ended."""
    series = prometheus.series(f'max by (node, serving_version) (wasinfer_model_version_info{{model="{SERVED}"}})',
                               marks.wall["load"] - 2, marks.wall["end"], step)
    if not series:
        return {"status": "n/a", "reason": "the servers export no wasinfer_model_version_info"}
    seen: dict[int, dict[float, str]] = {n: {} for n in range(nodes)}
    for row in series:
        node = int(row["metric"].get("node", "node-1")[4:])
        for at, _ in row["values"]:
            seen.setdefault(node, {})[float(at)] = row["metric"].get("serving_version", "?")

    def label_at(node: int, at: float) -> str | None:
        steps = [t for t in seen.get(node, {}) if t <= at]
        return seen[node][max(steps)] if steps else None

    def first(node: int, label: str, since: float, until: float) -> float | None:
        times = sorted(t for t, v in seen.get(node, {}).items() if since < t <= until and v == label)
        return times[0] - since if times else None

    rounds = {"rollout": (NEW, "rollout", "rollback"), "rollback": (OLD, "rollback", "end")}
    return {"status": "ok",
            "switched_s": {phase: [first(n, label, marks.wall[a], marks.wall[b]) for n in range(nodes)]
                           for phase, (label, a, b) in rounds.items()},
            "serving": {phase: [label_at(n, marks.wall[b]) for n in range(nodes)]
                        for phase, (_, _, b) in rounds.items()}}


# windows of the steady load: name → (start mark, end mark)
WINDOWS = {"before": ("steady", "rollout"), "rollout": ("rollout", "after"), "after": ("after", "rollback"),
           "rollback": ("rollback", "after_rollback"), "after_rollback": ("after_rollback", "end")}


def run(settings: Settings, workdir: Path, network: str = "auto", with_prometheus: bool = True) -> dict[str, Any]:
    """Start the cluster, roll out and roll back under load, stop everything; the figures as a JSON-able dict."""
    if not REGISTRY_BINARY.exists():
        raise FileNotFoundError(f"no {REGISTRY_BINARY}: install Debian's docker-registry package")
    from wasinfer.artifact import convert_onnx
    from wasinfer.registry.artifact import ModelArtifact
    from wasinfer.registry.oci import OciClient

    versions = Versions([OLD, NEW])
    modules = {label: convert_onnx(mlp_onnx(WEIGHT_SEED[label]), max_batch=8, name=SERVED).wasm
               for label in (OLD, NEW)}
    net = make_network(settings.nodes, network)
    report: dict[str, Any] = {"network": {"mode": net.mode, "reason": net.reason, "subnet": net.subnet,
                                          "host_address": net.host_address, "nodes": net.node_addresses}}
    console.print(f"[dim]network: {net.mode}" + (f" ({net.reason})" if net.reason else f", {net.subnet}") + "[/dim]")
    processes: list[HostProcess] = []
    load: OpenLoad | None = None
    try:
        registry = registry_process(workdir, net.host_address)
        processes.append(registry)
        start_all([registry], timeout=30)
        address = f"{registry.host}:{registry.port}"
        client = OciClient(address, plain_http=True)
        client.push(REPOSITORY, OLD, ModelArtifact.from_module(modules[OLD], REPOSITORY, OLD))
        model_path = f"{address}/{REPOSITORY}"
        config_dirs = [workdir / f"configmap-node{i}" for i in range(settings.nodes)]
        for directory in config_dirs:
            mount_configmap(directory, configmap(model_path, OLD, settings.update_interval))
        nodes = [node_process(net, i, workdir, config_dirs[i]) for i in range(settings.nodes)]
        processes += nodes
        started = time.perf_counter()
        start_all(nodes)
        report["nodes_ready_s"] = time.perf_counter() - started
        targets = [(node.host, node.port) for node in nodes]
        prometheus: Prometheus | None = None
        if with_prometheus and PROMETHEUS_BINARY.exists():
            process = prometheus_process(workdir, [f"{h}:{p}" for h, p in targets], settings.scrape_interval_s)
            processes.append(process)
            start_all([process], timeout=60)
            prometheus = Prometheus(process.url)
            if not wait_scraped(prometheus, settings.nodes):
                raise RuntimeError("Prometheus never scraped every node")
        report["prometheus"] = {"status": "running" if prometheus else "n/a", "reason": "" if prometheus else (
            "not asked for" if not with_prometheus else f"no {PROMETHEUS_BINARY}: install Debian's prometheus")}

        console.print(f"[dim]capacity: {settings.capacity_clients_per_node} closed-loop clients per node for "
                      f"{settings.capacity_s:g} s…[/dim]")
        capacity = measure_capacity(targets, settings.capacity_clients_per_node, settings.capacity_s)
        report["capacity"] = capacity
        rate = max(10.0, min(settings.max_rate, capacity["total_rps"] * settings.load_share))
        report["rate_rps"] = rate
        node_cpu = [node.cpu_seconds() for node in nodes]
        before = [scrape(node.url) for node in nodes]
        marks = Marks()
        limit = 4 * settings.window_s + 2 * settings.converge_timeout_s + 30
        console.print(f"[dim]open-loop load at {rate:.0f} requests/s, round-robin; rollout to {NEW}, rollback to "
                      f"{OLD}…[/dim]")
        load = OpenLoad(targets, rate, versions, limit).start()
        marks.mark("load")
        time.sleep(0.5)  # connections made; the steady window starts here
        marks.mark("steady")
        # Each window lasts window_s plus a jitter under 1 s: the writes then fall at any phase of the nodes' 1 s
        # polls, not always just after one (a whole number of seconds after a convergence would lock them to it).
        jitter = np.random.default_rng(settings.seed).random(3)
        time.sleep(settings.window_s + jitter[0])
        rounds = {}
        for phase, label, settled in (("rollout", NEW, "after"), ("rollback", OLD, "after_rollback")):
            push_s = None
            if label == NEW:
                began = time.perf_counter()
                client.push(REPOSITORY, NEW, ModelArtifact.from_module(modules[NEW], REPOSITORY, NEW))
                push_s = time.perf_counter() - began
            marks.mark(phase)
            for directory in config_dirs:  # every node's mount at once, as if the kubelets all synced together
                mount_configmap(directory, configmap(model_path, label, settings.update_interval))
            converged = wait_converged(load, versions.labels.index(label), settings.converge_timeout_s)
            marks.mark(settled)
            rounds[phase] = {"version": label, "push_s": push_s, "converged_before_timeout": converged}
            console.print(f"[dim]  {phase} to {label}: "
                          + ("every node serving it" if converged else "timed out") + "[/dim]")
            time.sleep(settings.window_s + jitter[1 if phase == "rollout" else 2])
        load.stop()
        marks.mark("end")
        after = [scrape(node.url) for node in nodes]
        node_cpu = [node.cpu_seconds() - cpu for node, cpu in zip(nodes, node_cpu, strict=True)]
        if prometheus is not None:
            time.sleep(settings.scrape_interval_s * 2.5)  # the last window's scrapes
            try:
                report["prometheus"] = read_prometheus(prometheus, marks, settings.nodes,
                                                       {"1": OLD, "2": NEW, "3": f"{OLD} (reinstalled)"})
            except (httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:
                report["prometheus"] = {"status": "n/a", "reason": f"query failed: {exc}"}
        console.print(f"[dim]registry pulls: {settings.pulls} from {settings.pull_threads} threads…[/dim]")
        report["registry"] = measure_pulls(address, settings, NEW)
        client.close()
    finally:
        if load is not None:
            load.stop()
        for process in reversed(processes):
            process.stop()
        net.close()

    records = load.records
    for phase, (label, event, until) in {"rollout": (NEW, "rollout", "rollback"),
                                         "rollback": (OLD, "rollback", "end")}.items():
        rounds[phase].update(convergence(records, settings.nodes, marks.perf[event], marks.perf[until],
                                         versions.labels.index(label)))
    report["rounds"] = rounds
    report["windows"] = {name: window_stats(records, settings.nodes, marks.perf[a], marks.perf[b])
                         for name, (a, b) in WINDOWS.items()}
    measured = [r for r in records if r.scheduled >= marks.perf["steady"]]
    report["load"] = {"requests": len(records), "failed": sum(1 for r in records if r.status != 200 or r.version < 0),
                      "shed": load.shed, "failure_kinds": dict(load.failures),
                      "seconds": marks.perf["end"] - marks.perf["steady"], "measured_requests": len(measured),
                      "node_cpu_share": [c / (marks.perf["end"] - marks.perf["load"]) for c in node_cpu]}

    def node_updates(outcome: str) -> list[int]:
        return [int(total(a, "wasinfer_model_updates_total", outcome=outcome)
                    - total(b, "wasinfer_model_updates_total", outcome=outcome)) for a, b in zip(after, before,
                                                                                                 strict=True)]

    durations = [(total(a, "wasinfer_model_update_duration_seconds_sum")
                  - total(b, "wasinfer_model_update_duration_seconds_sum"),
                  total(a, "wasinfer_model_update_duration_seconds_count")
                  - total(b, "wasinfer_model_update_duration_seconds_count")) for a, b in zip(after, before,
                                                                                               strict=True)]
    report["server_updates"] = {"ok": node_updates("ok"), "failed": node_updates("failed"),
                                "mean_update_s": [s / c if c else None for s, c in durations]}
    return report


# --- the report -----------------------------------------------------------------------------------------------------


def finish(report: dict[str, Any]) -> None:
    """Targets and the extrapolation to the seed's scale, from the measured figures (and the notes)."""
    load, rounds, reg, cap = report["load"], report["rounds"], report["registry"], report["capacity"]
    nodes = len(report["network"]["nodes"])
    nproc = report["machine"]["nproc"]
    converged = all(r["converged"] for r in rounds.values())
    windows = report["windows"]
    worst_p99 = max((w["p99_ms"] for w in windows.values() if w["p99_ms"] is not None), default=None)
    swap_p99 = [(windows["rollout"]["p99_ms"], windows["before"]["p99_ms"]),
                (windows["rollback"]["p99_ms"], windows["after"]["p99_ms"])]
    report["targets"] = [
        {"target": "no failed request during the rollout and the rollback", "status": "met" if load["failed"] == 0
         and load["shed"] == 0 else "not met", "detail": f"{load['failed']} failed, {load['shed']} shed, of "
         f"{load['requests']:,}"},
        {"target": "every node converges, both ways", "status": "met" if converged else "not met",
         "detail": "; ".join(f"{phase}: max {fmt_s(r['max_s'])}" for phase, r in rounds.items())},
        {"target": "p99 under 100 ms (the seed's inference latency) in every window", "status": "met" if all(
            w["p99_ms"] is not None and w["p99_ms"] < SEED_LATENCY_MS for w in windows.values()) else "not met",
         "detail": f"worst {fmt_ms(worst_p99)}"},
        {"target": f"p99 during a round within {SWAP_P99_FACTOR:g}x the p99 before it", "status": "met" if all(
            during is not None and steady is not None and during <= SWAP_P99_FACTOR * steady
            for during, steady in swap_p99) else "not met",
         "detail": "; ".join(f"{phase} {fmt_ms(d)} vs {fmt_ms(b)}" for phase, (d, b) in zip(
             ("rollout", "rollback"), swap_p99, strict=True))},
        {"target": "no stale answer after a node's swap", "status": "met" if all(
            r["stale_answers"] == 0 for r in rounds.values()) else "not met",
         "detail": ", ".join(f"{phase} {r['stale_answers']}" for phase, r in rounds.items())},
    ]
    # Arithmetic, not measurements: each line says what it multiplies.
    per_node = cap["total_rps"] / nodes
    per_core = cap["total_rps"] / nproc
    per_pod = per_core * SEED_POD_CPU_LIMIT
    daily_rps = SEED_DAILY_INFERENCES / 86400
    module = reg["module_bytes"]
    fan_out = module * SEED_NODES / reg["bytes_per_s"]
    five_mb = 5 * 1024 * 1024
    fan_out_5mb = five_mb * SEED_NODES / reg["bytes_per_s"]
    update_means = [u for u in report["server_updates"]["mean_update_s"] if u is not None]
    update_s = max(update_means) if update_means else None
    rollout_max = rounds["rollout"]["max_s"]
    report["extrapolation"] = [
        {"what": f"throughput of {SEED_NODES} nodes like these",
         "arithmetic": f"{per_node:,.0f} req/s per node (capacity here {cap['total_rps']:,.0f} / {nodes} nodes, "
         f"each with {nproc / nodes:.2g} of a core) x {SEED_NODES} = {per_node * SEED_NODES:,.0f} req/s",
         "value": per_node * SEED_NODES},
        {"what": f"throughput of the seed's {SEED_PODS} pods at their 2-core limit",
         "arithmetic": f"{per_core:,.0f} req/s per core ({cap['total_rps']:,.0f} / {nproc} cores, load generator "
         f"included) x {SEED_POD_CPU_LIMIT:g} cores x {SEED_PODS} pods = {per_pod * SEED_PODS:,.0f} req/s",
         "value": per_pod * SEED_PODS},
        {"what": "the seed's 100 million inferences a day",
         "arithmetic": f"{SEED_DAILY_INFERENCES:,} / 86,400 s = {daily_rps:,.0f} req/s on average = "
         f"{daily_rps / per_node:.2f} nodes' worth of this capacity ({daily_rps / per_node / SEED_NODES:.2%} of "
         f"{SEED_NODES})", "value": daily_rps / per_node},
        {"what": f"registry fan-out: every one of {SEED_NODES} nodes pulls the new module at once",
         "arithmetic": f"{module / 1024:.0f} KiB x {SEED_NODES} / {reg['bytes_per_s'] / 2**20:.0f} MiB/s (this "
         f"registry's blob throughput here, {reg['threads']} connections) = {fan_out:.2f} s; a 5 MiB module: "
         f"{fan_out_5mb:.1f} s. Whole pulls as a node makes them ran at {reg['pulls_per_s']:.0f}/s here from "
         f"{reg['threads']} threads of one Python client: {SEED_NODES} / {reg['pulls_per_s']:.0f} = "
         f"{SEED_NODES / reg['pulls_per_s']:.1f} s if one client did them all. One registry like this one; "
         "replicas or a pull-through cache per site divide it",
         "value": fan_out},
        {"what": "convergence of every node after a ConfigMap change",
         "arithmetic": "the kubelet's ConfigMap propagation (not measured here, no kubelet; Kubernetes documents "
         "it as up to the kubelet's sync period, 1 min by default, plus its ConfigMap cache's delay) + the node's "
         f"1 s poll + pull + compile and warm-up = 60 s + 1 s + {fan_out:.1f} s (fan-out above, every node at "
         f"once) + {fmt_s(update_s)} (slowest node's mean server-side update here, fetch included) = "
         f"{61 + fan_out + (update_s or 0.0):.0f} s plus the cache's delay, inside the seed's 5 min update "
         f"interval; three nodes here, without a kubelet: {fmt_s(rollout_max)} at most",
         "value": 61 + fan_out + (update_s or 0.0)},
        *_watch_extrapolation(report, fan_out, update_s),
        {"what": "convergence after a tag moves in the registry (no ConfigMap change)",
         "arithmetic": f"up to model_update_interval ({report['settings']['update_interval']}) + {fan_out:.1f} s "
         f"+ {fmt_s(update_s)}: the interval dominates; nodes poll at independent phases, so the registry sees "
         f"{SEED_NODES} pulls spread over the interval, not at once", "value": None},
    ]
    notes = [f"The load generator, the {nodes} nodes, the registry and Prometheus share {nproc} cores (other work on "
             "the machine too: see the load average): per-node figures are this machine's capacity split "
             f"{nodes} ways, not one node's own."]
    short = [name for name in ("rollout", "rollback") if windows[name]["requests"] < 5000]
    if short:
        counts = ", ".join(f"{windows[n]['requests']:,}" for n in short)
        notes.append(f"The {' and '.join(short)} window(s) last about as long as the slowest node takes to swap, "
                     f"so their p99 is one of their few slowest requests ({counts} requests); each node fetches, "
                     "compiles (or loads from its cache) and warms up the new version on the same cores that serve.")
    if report["network"]["mode"] == "loopback":
        notes.append(f"Nodes ran as processes on 127.0.0.1: {report['network']['reason']}.")
    if report["prometheus"].get("status") != "ok":
        notes.append(f"Prometheus: n/a ({report['prometheus'].get('reason')}); rates and versions come from the "
                     "load generator and the nodes' /metrics only.")
    if load["failure_kinds"]:
        notes.append("failures: " + "; ".join(f"{k} x{v}" for k, v in load["failure_kinds"].items())[:600])
    report["notes"] = notes


def _pull_fanout(plane: dict[str, Any]) -> dict[str, Any] | None:
    """The largest concurrent-pull round of --control-plane's registry fan-out in which every pull succeeded."""
    levels = [level for level in (plane.get("registry_fanout") or {}).get("levels", []) if level["failed"] == 0]
    return max(levels, key=lambda level: level["clients"], default=None)


def _watch_extrapolation(report: dict[str, Any], fan_out: float, update_s: float | None) -> list[dict[str, Any]]:
    """With --control-plane's figures: the registry fan-out as measured with concurrent pulls, and the convergence
    through the API watch instead of the kubelet."""
    plane = report.get("control_plane") or {}
    if plane.get("status") != "ok" or "cluster" not in plane or plane["fanout"]["all_delivered"]["p50_s"] is None:
        return []
    lines = []
    pulls = _pull_fanout(plane)
    pull_s, pull_how = fan_out, f"{fan_out:.2f} s, the raw-GET arithmetic above"
    if pulls is not None:
        if pulls["clients"] >= SEED_NODES:
            pull_s = pulls["all_s"] * SEED_NODES / pulls["clients"]
            pull_how = f"{fmt_s(pull_s)}, measured with {pulls['clients']} concurrent pulls"
        else:
            pull_s = SEED_NODES / pulls["pulls_per_s"]
            pull_how = f"{fmt_s(pull_s)}: {SEED_NODES} / {pulls['pulls_per_s']:,.0f} pulls/s at {pulls['clients']}"
        lines.append({
            "what": f"registry fan-out, simulated: {pulls['clients']} nodes pull the new version at once",
            "arithmetic": f"measured (--control-plane): {pulls['clients']} clients, each on its own connection, each "
            f"a whole pull with its digests checked, started together: the last done after {fmt_s(pulls['all_s'])} "
            f"({pulls['pulls_per_s']:,.0f} pulls/s, {pulls['module_bytes_per_s'] / 2**20:,.0f} MiB/s of module, one "
            f"registry sharing {plane.get('nproc', '?')} cores with its clients and the machine's other work; the "
            f"registry's CPU for them: {pulls.get('registry_cpu_s', 0):.2f} s, "
            f"{pulls.get('registry_cpu_s', 0) / pulls['clients'] * 1000:.1f} ms per pull)"
            + ("" if pulls["clients"] >= SEED_NODES else f"; {SEED_NODES} nodes at that rate: "
               f"{SEED_NODES} / {pulls['pulls_per_s']:,.0f} = {fmt_s(pull_s)}"),
            "value": pull_s})
    watch = plane["fanout"]["all_delivered"]["p50_s"]
    server = plane["servers"]["latency"]["max_s"] or 0.0
    lines.append({
        "what": "convergence of every node after a ConfigMap change, through the API watch (config.watch)",
        "arithmetic": f"the watch event at all {plane['fanout']['watchers']} watchers (measured: {fmt_s(watch)} "
        f"p50, one API server and its watchers on {report['machine']['nproc']} cores) + the registry fan-out to "
        f"{SEED_NODES} nodes ({pull_how}) + the slowest node's update ({fmt_s(update_s)}, the mounted nodes' mean; "
        f"through the API on {len(plane['cluster']['nodes'])} nodes, watch and pull over the bridge included: "
        f"{fmt_s(server)} at most) = {fmt_s(watch + pull_s + (update_s or 0.0))}, instead of the kubelet's minute",
        "value": watch + pull_s + (update_s or 0.0)})
    return lines


def fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_rps(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}/s" if value >= 10 else f"{value:.1f}/s"


WINDOW_LABELS = {"before": "before the rollout", "rollout": f"rollout to {NEW} (until every node serves it)",
                 "after": "after the rollout", "rollback": f"rollback to {OLD} (until every node serves it)",
                 "after_rollback": "after the rollback"}


def window_rows(report: dict[str, Any]) -> list[list[str]]:
    prom = report["prometheus"].get("rates_rps", {}) if report["prometheus"].get("status") == "ok" else {}
    rows = []
    for name, w in report["windows"].items():
        per_node = " / ".join(fmt_rps(v) for v in w["per_node_rps"])
        seen = prom.get(name)
        rows.append([WINDOW_LABELS[name], fmt_s(w["seconds"]), f"{w['requests']:,}", str(w["failed"]),
                     fmt_ms(w["p50_ms"]), fmt_ms(w["p99_ms"]), fmt_rps(w["total_rps"]), per_node,
                     " / ".join(fmt_rps(v) for v in seen) if seen and any(v is not None for v in seen) else "-"])
    return rows


WINDOW_HEADER = ["window", "length", "requests", "failed", "p50", "p99", "total", "per node (client)",
                 "per node (Prometheus)"]


def convergence_rows(report: dict[str, Any]) -> list[list[str]]:
    prom = report["prometheus"]
    rows = []
    info = prom.get("model_version_info", {}) if prom.get("status") == "ok" else {}
    for phase, r in report["rounds"].items():
        if info.get("status") == "ok":  # the servers' own version label
            seen, after = info["switched_s"][phase], info["serving"][phase]
        else:  # which repository version's request counter moved
            seen = prom.get("traffic_switched_s", {}).get(phase) if prom.get("status") == "ok" else None
            after = prom.get("serving_version", {}).get(f"after_{phase}") if prom.get("status") == "ok" else None
        rows.append([f"{phase} to {r['version']}", "-" if r["push_s"] is None else fmt_s(r["push_s"]),
                     " / ".join(fmt_s(t) for t in r["per_node_s"]), f"**{fmt_s(r['max_s'])}**",
                     " / ".join(fmt_s(t) for t in seen) if seen else "-",
                     " / ".join(v or "-" for v in after) if after else "-", str(r["stale_answers"])])
    return rows


CONVERGENCE_HEADER = ["round", "push", "per node (first new answer)", "max", "per node (Prometheus)",
                      "model version after (Prometheus)", "stale answers"]


def print_tables(report: dict[str, Any]) -> None:
    for title, header, rows in (("Convergence (from the ConfigMap write)", CONVERGENCE_HEADER,
                                 convergence_rows(report)),
                                ("Steady load, round-robin, open loop", WINDOW_HEADER, window_rows(report))):
        table = Table(title=title, title_justify="left")
        for n, column in enumerate(header):
            table.add_column(column, justify="left" if n < 1 else "right", overflow="fold")
        for row in rows:
            table.add_row(*(cell.replace("**", "") for cell in row))
        console.print(table)
    cap, reg = report["capacity"], report["registry"]
    console.print(f"capacity: {fmt_rps(cap['total_rps'])} total ("
                  + " / ".join(fmt_rps(v) for v in cap["per_node_rps"]) + f" per node); load {report['rate_rps']:.0f}"
                  f"/s; registry: blobs at {reg['bytes_per_s'] / 2**20:.0f} MiB/s, {reg['pulls_per_s']:.0f} whole "
                  f"pulls/s of {reg['module_bytes'] / 1024:.0f} KiB", highlight=False)
    for target in report["targets"]:
        colour = {"met": "green", "not met": "yellow"}.get(target["status"], "dim")
        console.print(f"[{colour}]{target['status']}[/{colour}] {target['target']}: {target['detail']}",
                      highlight=False)
    for line in report["extrapolation"]:
        console.print(f"arithmetic, not measured: {line['what']}: {line['arithmetic']}", highlight=False)
    for note in report["notes"]:
        console.print(f"note: {note}", highlight=False)


def render_section(report: dict[str, Any]) -> str:
    m, s, net, cap, reg = (report["machine"], report["settings"], report["network"], report["capacity"],
                           report["registry"])
    where = (f"each node in its own network namespace, joined to a bridge by a veth pair on the private subnet "
             f"{net['subnet']} (nothing outside this machine sees it), listening on port {NODE_PORT} of its own "
             f"address; the registry on the bridge's address {net['host_address']}"
             if net["mode"] == "netns" else f"every node a process on 127.0.0.1 ({net['reason']})")
    prom = report["prometheus"]
    lines = [
        "## A cluster on one machine",
        "",
        f"Generated by `python benchmarks/cluster_sim.py` on {report['date']} ({report['seconds']:.0f} s); do not edit "
        f"between the markers. **The load generator, the {len(net['nodes'])} nodes, the registry and Prometheus share "
        f"{m['nproc']} cores** (and the machine with other work: 1-minute load average {m['loadavg_1min']} before the "
        f"run, {m['loadavg_1min_after']} after), so every per-node figure is this machine's capacity split "
        f"{len(net['nodes'])} ways.",
        "",
        f"**Machine:** {m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, Python "
        f"{m['python']}. **Versions:** " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v) + ".",
        "",
        f"**Setup.** {len(net['nodes'])} `wasinfer serve --desired-state DIR` nodes, {where}. Each node's DIR is a "
        "ConfigMap volume as the kubelet lays it out (key files behind a `..data` symlink swapped in one rename) "
        f"holding the seed's keys: `model_path` = the registry reference, `model_version` {OLD}, "
        f"`model_update_interval` \"{s['update_interval']}\", `cache_enabled` \"true\"; each node has its own compiled-"
        "code cache. Registry: Debian's docker-registry, plain HTTP. Prometheus: "
        + (f"Debian's prometheus scraping every node each {s['scrape_interval_s']:g} s."
           if prom.get("status") == "ok" else f"n/a ({prom.get('reason')}).")
        + f" Model: an MLP (64 → 128 → 128 → 10, {reg['module_bytes'] / 1024:.0f} KiB module), each version with its "
        "own weights, so every answer tells which version gave it.",
        "",
        f"**Load.** A client-side round-robin (request i to node i mod {len(net['nodes'])}, no retries). Capacity "
        "first: "
        f"{s['capacity_clients_per_node']} closed-loop keep-alive clients per node for {s['capacity_s']:g} s: "
        f"**{fmt_rps(cap['total_rps'])}** in total (" + " / ".join(fmt_rps(v) for v in cap["per_node_rps"])
        + f" per node), p50 {fmt_ms(cap['p50_ms'])}, p99 {fmt_ms(cap['p99_ms'])}, {cap['failed']} failed. Then open "
        f"loop at {report['rate_rps']:.0f} requests/s ({s['load_share']:.0%} of that, at most {s['max_rate']:g}/s): "
        f"{s['window_s']:g} s steady, the rollout ({NEW} pushed, then every node's ConfigMap rewritten at once), "
        f"{s['window_s']:g} s, the rollback (every ConfigMap back to {OLD}), {s['window_s']:g} s; each window gets a "
        "random extra under 1 s, so the writes fall at any phase of the nodes' 1 s polls. Latency counts from each "
        "request's due time.",
        "",
        "### Convergence: ConfigMap write to the node serving the version",
        "",
        *md_table(CONVERGENCE_HEADER, convergence_rows(report)),
        "",
        "Per node: the first answer with the new version's output, from the write (node0 / node1 / node2); it "
        "includes the wait for the node's next 1 s poll of its mount (0 to 1 s). "
        + (f"Prometheus's columns: from the write to the first scrape (every {s['scrape_interval_s']:g} s, read back "
           "in 0.25 s steps) at which the node's `wasinfer_model_version_info` said `serving_version` = the round's "
           "version, and that label when the round ended. "
           if prom.get("model_version_info", {}).get("status") == "ok" else
           f"Prometheus's columns: from the write to the first scrape (every {s['scrape_interval_s']:g} s, read back "
           "in 0.25 s steps) at which the node's request counter of another version had moved (scrape lag "
           "included), and the version with the most requests when the round ended: the node's repository "
           f"versions (1 = {OLD}, 2 = {NEW}, 3 = {OLD} installed again by the rollback, its compiled code from the "
           "node's cache). " if prom.get("status") == "ok" else "")
        + "Stale answers: requests due after a node's first new answer that still got the old version. The nodes "
        "counted " + ", ".join(f"node{i}: {ok} updates ok, {bad} failed" for i, (ok, bad) in enumerate(zip(
            report["server_updates"]["ok"], report["server_updates"]["failed"], strict=True)))
        + "; mean server-side update (fetch, check, compile, warm-up, swap): "
        + " / ".join(fmt_s(u) for u in report["server_updates"]["mean_update_s"]) + ".",
        "",
        "### Latency and throughput under the rollout",
        "",
        *md_table(WINDOW_HEADER, window_rows(report)),
        "",
        f"Failed requests: **{report['load']['failed']}** of {report['load']['requests']:,} (shed by the generator: "
        f"{report['load']['shed']}). Registry, with nothing else running: one pull (manifest, config, module, every "
        f"digest checked, by `OciClient` in Python) {fmt_s(reg['single_pull_p50_s'])} (p50); {reg['pulls']} pulls "
        f"from {reg['threads']} threads at {reg['pulls_per_s']:.0f} pulls/s ({reg['pull_bytes_per_s'] / 2**20:.1f} "
        f"MiB/s of module, the client's pace); raw keep-alive GETs of the module's blob from {reg['threads']} "
        f"connections: {reg['blob_gets']:,} in {reg['blob_gets_s']:.1f} s = **{reg['bytes_per_s'] / 2**20:.0f} "
        "MiB/s**, the registry's pace here.",
        "",
        "### Targets",
        "",
        *md_table(["target", "status", "this run"], [[t["target"], t["status"], t["detail"]]
                                                     for t in report["targets"]]),
        "",
        *control_plane_lines(report),
        f"### The seed's {SEED_NODES} nodes: arithmetic, not measured",
        "",
        "Nothing below ran at that scale: each line multiplies this run's figures, and says what it leaves out.",
        "",
        *md_table(["what", "arithmetic"], [[e["what"], e["arithmetic"]] for e in report["extrapolation"]]),
        "",
    ]
    if report["notes"]:
        lines += ["Notes:", "", *(f"- {n}" for n in report["notes"]), ""]
    return "\n".join(lines)


def _updates_counted(ok: list[int], failed: list[int]) -> str:
    """What the nodes' update counters said, in one phrase when they all agree."""
    if len(set(ok)) == 1 and len(set(failed)) == 1:
        return f"Every node counted {ok[0]} updates ok, {failed[0]} failed."
    return "The nodes counted " + " / ".join(f"{a} ok, {b} failed" for a, b in zip(ok, failed, strict=True)) + \
        " updates."


def control_plane_lines(report: dict[str, Any]) -> list[str]:
    """The "Through a real API server" subsection, when --control-plane has run (else nothing)."""
    plane = report.get("control_plane")
    if not plane:
        return []
    if plane.get("status") != "ok":
        return ["### Through a real API server", "", f"Not run: {plane.get('reason')}.", ""]
    if "cluster" not in plane:
        return ["### Through a real API server", "", "The stored figures come from an earlier form of "
                "`--control-plane` (servers on 127.0.0.1): run `python benchmarks/cluster_sim.py --control-plane` "
                "again.", ""]
    cluster, servers, fanout, pulls = plane["cluster"], plane["servers"], plane["fanout"], plane["registry_fanout"]
    settings, net = plane["settings"], plane["network"]
    nodes = len(cluster["nodes"])
    lat, every, window = servers["latency"], fanout["all_delivered"], servers["window"]
    per_round = [r["all_s"] for r in fanout["rounds"]]
    met = servers["converged"] and (lat["max_s"] or 99) <= 2
    after = {p["name"]: p for p in cluster["pods_after"]}
    pod_rows = [[p["name"], p["node"], f"{p['phase']}, {'ready' if p['ready'] else 'not ready'}",
                 f"{after.get(p['name'], {}).get('phase', 'gone')}, "
                 f"{'ready' if after.get(p['name'], {}).get('ready') else 'not ready'}", str(p["pod_ip"])]
                for p in cluster["pods_before"]]
    round_rows = [[f"{number + 1}: to {r['to']}", " / ".join(fmt_s(t) for t in r["per_node_s"]),
                   f"**{fmt_s(r['max_s'])}**", str(r["stale_answers"])]
                  for number, r in enumerate(servers["rounds"])]
    pull_rows = [[str(level["clients"]), f"{level['pulled']} / {level['failed']}", fmt_s(level["all_s"]),
                  fmt_s(level["p50_s"]), f"{level['pulls_per_s']:,.0f}/s",
                  f"{level['module_bytes_per_s'] / 2**20:,.0f} MiB/s",
                  f"{level.get('registry_cpu_s', 0):.2f} s / {level.get('client_cpu_s', 0):.2f} s"]
                 for level in pulls["levels"]]
    module_kib = max((level["module_bytes"] for level in pulls["levels"]), default=0) / 1024
    return [
        "### Through a real API server",
        "",
        f"`python benchmarks/cluster_sim.py --control-plane --nodes {nodes}` ({plane.get('date', report['date'])}, "
        f"{plane.get('seconds', 0):.0f} s): a real Kubernetes control plane ({plane.get('kube_version') or 'v1.20.2'}"
        ": kube-apiserver, etcd, controller-manager and scheduler built from Debian's source package, tests/k8s), the "
        f"API server listening on the bridge's address {net['host_address']}, sharing this machine's cores with "
        f"everything else below (and with other work: 1-minute load average {plane.get('loadavg_1min', '?')} "
        f"before, {plane.get('loadavg_1min_after', '?')} after).",
        "",
        f"**Cluster.** {nodes} Node objects (`fake-node-1` … `fake-node-{nodes}`: Ready, {cluster['nodes'][0]['cpu']} "
        f"CPUs, {cluster['nodes'][0]['memory']}, {cluster['nodes'][0]['pods']} pods; each with its network "
        f"namespace's address on {net['subnet']} as InternalIP). `deploy render --kube-version 1.20` of the "
        f"Deployment ({nodes} replicas, `config.watch`, the model a reference to the registry on the bridge, a "
        "required pod anti-affinity on the hostname) with its ConfigMap, ServiceAccount, Role, RoleBinding, Service "
        "and PodDisruptionBudget, applied with `kubectl apply --server-side`: the ReplicaSet's pods were bound one "
        f"to each node {fmt_s(cluster['scheduled_s'])} after the apply. Each pod's container (command, arguments "
        "and environment as the API server holds them) runs as a `wasinfer serve --desired-state "
        "k8s://sim/ai-model-config` process in the network namespace of the pod's node, on port 8000 of the node's "
        "address, with the rendered Role's service-account token as its only credentials, and pulls the module "
        "from Debian's docker-registry on the bridge's address; every server was ready "
        f"{fmt_s(cluster['servers_ready_s'])} after the apply. The fake kubelet then marked the pods Running, each "
        f"with its node's address as pod IP (every pod ready {fmt_s(cluster['running_s'])} after the apply); the "
        "Service's endpoints: " + ", ".join(cluster["endpoints"]) + ". The pods as the API server sees them, before "
        "and after the updates:",
        "",
        *md_table(["pod", "node", "before", "after", "pod IP"], pod_rows),
        "",
        f"**Updates.** {len(servers['rounds'])} patches of the ConfigMap's `model_version` through the API server, "
        f"alternating {NEW} and {OLD} (both pushed to the registry beforehand), under an open-loop round-robin load "
        f"from the host side of the bridge at {servers['rate_rps']:.0f} requests/s ({settings['rate_per_node']:g} "
        "per node), each answer checked against both versions' outputs. Per node (fake-node-1 / … ), from the "
        "patch to its first answer with the new version's output: the watch event, the pull over the bridge, "
        "compile, warm-up and swap:",
        "",
        *md_table(["round", "per node (first new answer)", "max", "stale answers"], round_rows),
        "",
        f"Over {nodes} nodes x {len(servers['rounds'])} rounds: p50 {fmt_s(lat['p50_s'])}, p90 "
        f"{fmt_s(lat['p90_s'])}, max **{fmt_s(lat['max_s'])}** (target: every node within 2 s: "
        f"{'met' if met else 'not met'}). Failed requests: **{servers['failed']}** of {servers['requests']:,} "
        f"(shed by the generator: {servers['shed']}); latency over the rounds p50 {fmt_ms(window['p50_ms'])}, p99 "
        f"{fmt_ms(window['p99_ms'])} (every node pulls, compiles and warms up the new version at the same moment, "
        f"{nodes} nodes, the load generator and the plane on {plane.get('nproc', '?')} cores). "
        + _updates_counted(servers["updates_ok"], servers["updates_failed"]),
        "",
        f"**Watch fan-out.** {fanout['watchers']} watch streams on the ConfigMap (as {fanout['watchers']} nodes' "
        f"servers would hold), from one asyncio client on the host side, opened in {fanout['connect_s']:.1f} s; "
        f"{len(fanout['rounds'])} patches. From each patch to its arrival at the last of the {fanout['watchers']} "
        f"watchers: p50 **{fmt_s(every['p50_s'])}**, max {fmt_s(every['max_s'])} ({fanout['complete_rounds']} of "
        f"{len(fanout['rounds'])} rounds reached every watcher; per round: "
        + ", ".join(fmt_s(v) for v in per_round) + f"). The client that reads the {fanout['watchers']} streams runs on "
        "the same cores as the API server and etcd, so this is an upper bound for the API server's own fan-out.",
        "",
        f"**Registry fan-out.** K clients each start one whole pull of {NEW} ({module_kib:.0f} KiB module) at the "
        "same moment, each on a connection of its own as K nodes would (the manifest, then the config and the "
        "module, every digest checked), from one asyncio client on the host side of the bridge; the registry is "
        "the one above, on the bridge's address, with the servers and the plane stopped:",
        "",
        *md_table(["concurrent pulls", "pulled / failed", "all done in", "p50 per pull", "pulls", "module bytes",
                   "CPU: registry / puller"], pull_rows),
        "",
        "The puller and the registry share the cores (and the machine's other work), so these rates are lower "
        "bounds for a registry with cores of its own; the CPU column says how much of the round each side spent "
        "computing.",
        "",
    ]


def package_versions() -> dict[str, str | None]:
    import wasinfer

    found: dict[str, str | None] = {"wasinfer": wasinfer.__version__}
    for name in ("wasmtime", "uvicorn"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    for key, command in (("docker-registry", [str(REGISTRY_BINARY), "--version"]),
                         ("prometheus", [str(PROMETHEUS_BINARY), "--version"])):
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
            text = (out.stdout or out.stderr).split("\n")[0]
            found[key] = (text.split("version")[-1].strip().split()[0] if "version" in text
                          else text.split()[-1] if text.split() else None)
        except (OSError, subprocess.TimeoutExpired, IndexError):
            found[key] = None
    return found




def control_plane_main(args: argparse.Namespace) -> int:
    from control_plane_sim import QUICK_PLANE, PlaneSettings, modules_of
    from control_plane_sim import run as run_plane

    settings = QUICK_PLANE if args.quick else PlaneSettings()
    overrides = {"nodes": args.nodes, "watchers": args.watchers,
                 "pull_clients": tuple(args.pull_clients) if args.pull_clients else None}
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    load_before, started = round(os.getloadavg()[0], 2), time.perf_counter()
    try:
        with terminated_cleanly(), tempfile.TemporaryDirectory(prefix="cluster-sim-k8s-") as tmp:
            result = run_plane(settings, Path(tmp), modules_of([OLD, NEW]), Versions([OLD, NEW]))
    except KeyboardInterrupt:
        console.print("interrupted: every node, namespace and plane process stopped", markup=False)
        return 130
    if result["status"] != "ok":
        console.print(f"skipped: {result['reason']}", markup=False, highlight=False, soft_wrap=True)
        return 0
    result.update(date=time.strftime("%Y-%m-%d"), seconds=time.perf_counter() - started, loadavg_1min=load_before,
                  loadavg_1min_after=round(os.getloadavg()[0], 2))
    stored_path = args.out or RESULTS
    if not stored_path.exists():
        console.print(json.dumps(result, indent=1, default=float), markup=False, highlight=False, soft_wrap=True)
        console.print(f"no full run in {stored_path} to join: printed only", markup=False)
        return 0
    report: dict[str, Any] = json.loads(stored_path.read_text())
    report["control_plane"] = result
    finish(report)
    print_tables(report)
    console.print("\n".join(control_plane_lines(report)), markup=False, highlight=False, soft_wrap=True)
    full = not args.quick and not args.watchers and not args.pull_clients and not report.get("quick")
    written = publish(report, args.out, RESULTS, full, args.doc, render_section, BEGIN, END, DOC)
    console.print(written, markup=False, highlight=False, soft_wrap=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter windows and fewer pulls: a smoke run")
    parser.add_argument("--network", choices=("auto", "netns", "loopback"), default="auto",
                        help="auto (default): a network namespace per node where root and `ip netns` allow it, "
                        "else processes on 127.0.0.1; netns: namespaces or an error; loopback: always 127.0.0.1")
    parser.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus even when installed")
    parser.add_argument("--window", type=float, help=f"seconds of steady load before/after each round (default "
                        f"{FULL.window_s:g}, quick {QUICK.window_s:g})")
    parser.add_argument("--load-share", type=float, help=f"offered rate as a share of the measured capacity "
                        f"(default {FULL.load_share:g})")
    parser.add_argument("--control-plane", action="store_true",
                        help="run the cluster on a real kube-apiserver instead (control_plane_sim.py): --nodes fake "
                        "Nodes, the rendered Deployment's pods run as servers in the nodes' network namespaces, "
                        "updates by ConfigMap patches under load, and the fan-out to --watchers watch streams and "
                        "--pull-clients registry pulls; the figures join the stored full run's JSON and doc section")
    parser.add_argument("--nodes", type=int, help="--control-plane: nodes, one server pod each (default 3, quick 2)")
    parser.add_argument("--watchers", type=int, help="--control-plane: watch streams for the fan-out (default 500, "
                        "quick 100)")
    parser.add_argument("--pull-clients", type=int, nargs="+", metavar="K",
                        help="--control-plane: concurrent registry pulls, one round per K (default 1 10 50 100 250 "
                        "500, quick 1 10 50)")
    add_output_arguments(parser, RESULTS, ROOT)
    args = parser.parse_args(argv)
    if args.control_plane:
        if args.nodes is not None and not 1 <= args.nodes <= 200:
            parser.error("--nodes must be in 1..200 (one /24 holds the nodes' addresses)")
        if any(k < 1 for k in args.pull_clients or []) or (args.watchers is not None and args.watchers < 1):
            parser.error("--watchers and --pull-clients must be positive")
        return control_plane_main(args)
    if args.window is not None and args.window <= 0:
        parser.error("--window must be positive")
    if args.load_share is not None and not 0 < args.load_share <= 1:
        parser.error("--load-share must be in (0, 1]")
    if args.render:
        args.out = args.out or RESULTS
        if not args.out.exists():
            parser.error(f"--render: no {args.out}")
        stored: dict[str, Any] = json.loads(args.out.read_text())
        finish(stored)
        print_tables(stored)
        if args.doc:
            write_doc(render_section(stored), BEGIN, END, DOC)
        return 0
    if not REGISTRY_BINARY.exists():
        print(f"error: no {REGISTRY_BINARY}: install Debian's docker-registry package", file=sys.stderr)
        return 2
    overrides = {"window_s": args.window, "load_share": args.load_share}
    settings = replace(QUICK if args.quick else FULL, **{k: v for k, v in overrides.items() if v is not None})
    full = not args.quick and all(v is None for v in overrides.values()) and not args.no_prometheus
    started, before = time.perf_counter(), machine()
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "quick": args.quick, "settings": asdict(settings),
                              "versions": package_versions()}
    with terminated_cleanly(), tempfile.TemporaryDirectory(prefix="cluster-sim-") as tmp:
        report.update(run(settings, Path(tmp), args.network, not args.no_prometheus))
    report["seconds"] = time.perf_counter() - started
    report["machine"] = {**before, "loadavg_1min_after": round(os.getloadavg()[0], 2)}
    finish(report)
    print_tables(report)
    written = publish(report, args.out, RESULTS, full, args.doc, render_section, BEGIN, END, DOC)
    console.print(written, markup=False, highlight=False, soft_wrap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
