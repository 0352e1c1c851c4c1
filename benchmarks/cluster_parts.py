"""What both cluster simulations share (cluster_sim.py's mounted-directory nodes and control_plane_sim.py's nodes
behind a real API server): the network, the processes, the model's versions, the open-loop load and its figures.

- the network: one network namespace per node, joined to a bridge by a veth pair on a private 10.250.x.0/24
  subnet that exists only on this machine (the host's services on the bridge's address .1, node i on .(2+i)),
  or processes on 127.0.0.1 where namespaces are not available;
- processes: each in its own process group with a log file (serve_bench's ServerProcess), readiness checked on
  any address, stopped together (SIGTERM to every group first, so their drains overlap);
- the model: an MLP whose two versions have their own weights, so every answer tells which version gave it;
- load: open loop at a fixed rate, round-robin over the nodes, each answer checked against both versions;
- the registry fan-out: K clients pulling a version's module at once, each on its own connection, as K nodes do
  when a new version is named to all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from lifecycle_bench import (
    SAMPLE,
    Connection,
    event_loop_factory,
    mlp_reference,
    raw_post,
    registry_command,
    registry_env,
)
from serve_bench import ServerProcess, free_port

REPOSITORY = "edge/ai-model"  # served as "ai-model", the seed's /models/ai-model.wasm
SERVED = "ai-model"
OLD, NEW = "v1.0.0", "v1.1.0"  # the seed's spelling, in the ConfigMap and as the registry tags
WEIGHT_SEED = {OLD: 20_000, NEW: 20_001}


NETNS_PREFIX = "wasinfer-sim-"
NODE_PORT = 8000  # every node's port inside its own namespace, as pods all listen on the same port


# --- the network: one namespace per node, or loopback ---------------------------------------------------------------


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=False)
    if done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_namespaces() -> list[str]:
    """Namespaces (and bridges) an earlier run of this script left behind when it was killed: their pid is gone."""
    removed: list[str] = []
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=20, check=False)
    for line in done.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(NETNS_PREFIX):
            continue
        pid = name[len(NETNS_PREFIX):].split("-")[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                _ip("netns", "del", name)
                removed.append(name)
                with contextlib.suppress(OSError):
                    _ip("link", "del", f"wsb{pid}")
    return removed


@dataclass
class Network:
    """Where the nodes listen and where the host-side services (registry) listen, and how a node is started."""

    mode: str  # "netns" or "loopback"
    host_address: str
    node_addresses: list[str]
    reason: str = ""  # why loopback, when namespaces were asked for
    namespaces: list[str] = field(default_factory=list)
    bridge: str = ""
    subnet: str = ""

    def wrap(self, index: int, command: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[index], *command] if self.mode == "netns" else command

    def close(self) -> None:
        for name in self.namespaces:  # deleting a namespace deletes its end of the veth pair, and so the pair
            with contextlib.suppress(OSError):
                _ip("netns", "del", name)
        if self.bridge:
            with contextlib.suppress(OSError):
                _ip("link", "del", self.bridge)
        self.namespaces, self.bridge = [], ""


def _free_subnet() -> int:
    """A third octet X with 10.250.X.0/24 on no interface or route here."""
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, timeout=20, check=False).stdout
    used += subprocess.run(["ip", "route"], capture_output=True, text=True, timeout=20, check=False).stdout
    start = os.getpid() % 250
    for k in range(250):
        octet = (start + k) % 250 + 1
        if f"10.250.{octet}." not in used:
            return octet
    raise OSError("no free 10.250.x.0/24 subnet")


def namespace_network(nodes: int) -> Network:
    """A bridge with 10.250.X.1 for the host's services and one namespace per node at 10.250.X.(2+i).

    Only this machine sees the subnet: the bridge has no uplink and nothing routes it anywhere."""
    pid = os.getpid()
    octet = _free_subnet()
    net = Network("netns", f"10.250.{octet}.1", [f"10.250.{octet}.{2 + i}" for i in range(nodes)],
                  subnet=f"10.250.{octet}.0/24")
    try:
        net.bridge = f"wsb{pid}"[:15]
        _ip("link", "add", net.bridge, "type", "bridge")
        _ip("addr", "add", f"{net.host_address}/24", "dev", net.bridge)
        _ip("link", "set", net.bridge, "up")
        for i, address in enumerate(net.node_addresses):
            name, host_end, node_end = f"{NETNS_PREFIX}{pid}-{i}", f"wsv{pid}h{i}"[:15], f"wsv{pid}n{i}"[:15]
            _ip("netns", "add", name)
            net.namespaces.append(name)
            _ip("link", "add", host_end, "type", "veth", "peer", "name", node_end)
            _ip("link", "set", node_end, "netns", name)
            _ip("link", "set", host_end, "master", net.bridge)
            _ip("link", "set", host_end, "up")
            _ip("-n", name, "addr", "add", f"{address}/24", "dev", node_end)
            _ip("-n", name, "link", "set", node_end, "up")
            _ip("-n", name, "link", "set", "lo", "up")
    except OSError:
        net.close()
        raise
    return net


def loopback_network(nodes: int, reason: str = "") -> Network:
    return Network("loopback", "127.0.0.1", ["127.0.0.1"] * nodes, reason=reason)


def namespaces_problem() -> str:
    """Why this process cannot make network namespaces ("" when it can: root, and iproute2 installed)."""
    if os.geteuid() != 0:
        return "not root (network namespaces need CAP_NET_ADMIN)"
    if shutil.which("ip") is None:
        return "no `ip` (iproute2)"
    return ""


def make_network(nodes: int, wanted: str) -> Network:
    """Namespaces when asked for (or, with "auto", when root and iproute2 allow them); else loopback, saying why."""
    if wanted == "loopback":
        return loopback_network(nodes, "asked for (--network loopback)")
    problem = namespaces_problem()
    if not problem:
        remove_stale_namespaces()
        try:
            return namespace_network(nodes)
        except OSError as exc:
            problem = f"namespaces unavailable: {exc}"
    if wanted == "netns":
        raise SystemExit(f"error: --network netns: {problem}")
    return loopback_network(nodes, problem)


# --- processes ------------------------------------------------------------------------------------------------------


class HostProcess(ServerProcess):
    """serve_bench's ServerProcess (own process group, log file, group CPU), readiness checked on any address."""

    def __init__(self, name: str, command: list[str], host: str, port: int, ready_path: str, cwd: Path,
                 env: dict[str, str] | None = None):
        super().__init__(name, command, port, ready_path, cwd, cwd / f"{name}.log", env)
        self.host = host

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def wait_ready(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return f"{self.name} exited with code {self.proc.returncode}: {self.log_tail()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return None
            time.sleep(0.2)
        return f"{self.name} was not ready within {timeout:.0f} s: {self.log_tail()}"


def start_all(processes: list[HostProcess], timeout: float = 120) -> None:
    for process in processes:
        process.start(None)
    for process in processes:
        problem = process.wait_ready(timeout)
        if problem is not None:
            raise RuntimeError(problem)


def stop_all(processes: list[HostProcess], timeout: float = 30) -> None:
    """SIGTERM to every process group at once, so their drains overlap; then wait, and SIGKILL what is left."""
    running = [p for p in processes if p.proc is not None and p.proc.poll() is None]
    for process in running:
        assert process.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.proc.pid, signal.SIGTERM)  # the group this script created for it
    deadline = time.monotonic() + timeout
    for process in running:
        assert process.proc is not None
        try:
            process.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.proc.pid, signal.SIGKILL)
            process.proc.wait(5)


def registry_process(workdir: Path, host: str) -> HostProcess:
    """Debian's docker-registry on `host`, storage in the work directory (lifecycle_bench's configuration)."""
    directory, port = workdir / "registry", free_port()
    process = HostProcess("docker-registry", registry_command(directory, host, port), host, port, "/v2/", directory)
    process.env = registry_env()
    return process


def configmap(model_path: str, model_version: str, update_interval: str) -> dict[str, str]:
    """The seed's four ConfigMap keys."""
    return {"model_path": model_path, "model_version": model_version,
            "model_update_interval": update_interval, "cache_enabled": "true"}


# --- load -----------------------------------------------------------------------------------------------------------


class Versions:
    """Tells which version answered, by the output: each version has its own weights, so its own answer."""

    def __init__(self, labels: list[str]):
        self.labels = labels
        self.expected = np.stack([mlp_reference(WEIGHT_SEED[label], SAMPLE).reshape(-1) for label in labels])

    def of(self, body: bytes) -> int:
        """The index of the version whose output this is, or -1."""
        try:
            data = np.asarray(json.loads(body)["outputs"][0]["data"], dtype=np.float32).reshape(-1)
            close = np.all(np.abs(self.expected - data) <= 1e-4 + 1e-4 * np.abs(self.expected), axis=1)
        except (KeyError, IndexError, ValueError, TypeError):
            return -1
        hits = np.flatnonzero(close)
        return int(hits[0]) if len(hits) else -1


def _percentiles(latencies: list[float]) -> dict[str, float | None]:
    values = np.asarray(latencies) * 1000
    return {"p50_ms": float(np.percentile(values, 50)) if len(values) else None,
            "p99_ms": float(np.percentile(values, 99)) if len(values) else None}


async def _capacity(targets: list[tuple[str, int]], per_node: int, seconds: float) -> dict[str, Any]:
    """Closed-loop clients, `per_node` per node, each posting as fast as its node answers."""
    counts = [0] * len(targets)
    failures = [0] * len(targets)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(node: int) -> None:
        host, port = targets[node]
        connection, raw = Connection(port, timeout=30.0, host=host), raw_post(port, SERVED, host)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                status, _ = await connection.post(raw)
                latencies.append(time.perf_counter() - started)
                if status == 200:
                    counts[node] += 1
                else:
                    failures[node] += 1
        finally:
            connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(len(targets)) for _ in range(per_node)))
    elapsed = time.perf_counter() - began
    return {"seconds": elapsed, "per_node_rps": [c / elapsed for c in counts], "total_rps": sum(counts) / elapsed,
            "failed": sum(failures), "requests": sum(counts) + sum(failures), **_percentiles(latencies)}


def measure_capacity(targets: list[tuple[str, int]], per_node: int, seconds: float) -> dict[str, Any]:
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(_capacity(targets, per_node, seconds))


@dataclass
class Record:
    scheduled: float  # perf_counter time the request was due (open loop)
    done: float
    node: int
    status: int
    version: int  # Versions index, -1 for none (a failure)


class OpenLoad:
    """Requests at a fixed rate, round-robin over the nodes, on a thread of its own until stopped (bounded anyway).

    Open loop: request i is due at start + i / rate whatever happened to the ones before, and its latency counts
    from then, so a stall shows in the latencies instead of slowing the load down. Each node has a pool of
    keep-alive connections; a request that finds its node's queue full (the node is far behind) is counted as
    shed by the generator, apart from the server's failures."""

    def __init__(self, targets: list[tuple[str, int]], rate: float, versions: Versions, limit_s: float,
                 connections_per_node: int = 8, queue_limit: int = 512):
        self.targets, self.rate, self.versions, self.limit_s = targets, rate, versions, limit_s
        self.connections_per_node, self.queue_limit = connections_per_node, queue_limit
        self.records: list[Record] = []
        self.failures: Counter[str] = Counter()
        self.shed = 0
        self.latest = [-1] * len(targets)  # the version each node answered last
        self.started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="open-load", daemon=True)

    def _main(self) -> None:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(self._run())

    def start(self) -> OpenLoad:
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    async def _run(self) -> None:
        queues: list[asyncio.Queue[float]] = [asyncio.Queue(self.queue_limit) for _ in self.targets]

        async def worker(node: int) -> None:
            host, port = self.targets[node]
            connection, raw = Connection(port, timeout=30.0, host=host), raw_post(port, SERVED, host)
            try:
                while True:
                    due = await queues[node].get()
                    status, body = await connection.post(raw)
                    done = time.perf_counter()
                    seen = self.versions.of(body) if status == 200 else -1
                    if status != 200:
                        self.failures[f"node{node}: {status or 'transport'}: "
                                      f"{body[:100].decode(errors='replace')}"] += 1
                    elif seen < 0:
                        self.failures[f"node{node}: an answer that is no version's output"] += 1
                    else:
                        self.latest[node] = seen
                    self.records.append(Record(due, done, node, status, seen))
                    queues[node].task_done()
            finally:
                connection.close()

        workers = [asyncio.create_task(worker(n)) for n in range(len(self.targets))
                   for _ in range(self.connections_per_node)]
        deadline = self.started + self.limit_s
        for index in range(10**9):
            due = self.started + index / self.rate
            if self._stop.is_set() or due > deadline:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                queues[index % len(self.targets)].put_nowait(due)
            except asyncio.QueueFull:
                self.shed += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(q.join() for q in queues)), 30)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def wait_converged(load: OpenLoad, target: int, timeout: float) -> bool:
    """Until every node's latest answer is `target`'s output (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(v == target for v in load.latest):
            return True
        time.sleep(0.02)
    return False


def convergence(records: list[Record], nodes: int, since: float, until: float, target: int) -> dict[str, Any]:
    """Per node: seconds from `since` to its first answer with `target`'s output, and how many requests due after
    that answer (and before `until`, the next round) still got another version (0 when the swap is clean)."""
    per_node: list[float | None] = []
    stale = 0
    for node in range(nodes):
        mine = [r for r in records if r.node == node and since - 5 <= r.scheduled < until]
        first = min((r.done for r in mine if r.version == target and r.done >= since), default=None)
        per_node.append(None if first is None else first - since)
        if first is not None:
            stale += sum(1 for r in mine if r.scheduled > first and r.status == 200 and r.version != target)
    done = [t for t in per_node if t is not None]
    return {"per_node_s": per_node, "max_s": max(done) if len(done) == nodes else None,
            "first_s": min(done) if done else None, "converged": len(done) == nodes, "stale_answers": stale}


def window_stats(records: list[Record], nodes: int, start: float, end: float) -> dict[str, Any]:
    """Requests due inside [start, end): latency percentiles of the successful ones, failures, throughput."""
    rows = [r for r in records if start <= r.scheduled < end]
    seconds = max(end - start, 1e-9)
    ok = [r for r in rows if r.status == 200 and r.version >= 0]
    return {"seconds": end - start, "requests": len(rows), "failed": len(rows) - len(ok),
            "total_rps": len(ok) / seconds,
            "per_node_rps": [sum(1 for r in ok if r.node == n) / seconds for n in range(nodes)],
            **_percentiles([r.done - r.scheduled for r in ok])}


@contextlib.contextmanager
def terminated_cleanly() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks stop the nodes and remove the namespaces."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- metrics ----------------------------------------------------------------------------------------------------------


Samples = list[tuple[str, dict[str, str], float]]


def scrape(url: str) -> Samples:
    """A node's /metrics, parsed: (name, labels, value) per sample."""
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(url + "/metrics", timeout=30)
    response.raise_for_status()
    return [(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(response.text) for s in family.samples]


# --- the registry's fan-out: K nodes pulling one version at once ------------------------------------------------------

MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str,
               accept: str = "*/*") -> bytes:
    """One GET on a keep-alive HTTP/1.1 connection; the body (a status other than 200 raises)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\n\r\n".encode())
    lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
    if lines[0][9:12] != b"200":
        raise RuntimeError(f"GET {path}: {lines[0].decode(errors='replace')}")
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
    return await reader.readexactly(length)


async def _pull(host: str, port: int, repository: str, reference: str) -> tuple[float, int]:
    """What a node's pull asks of the registry, on a connection of its own: the manifest, then the config and every
    layer, each checked against its digest. (seconds, bytes of the module)."""
    began = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        authority = f"{host}:{port}"
        manifest = json.loads(await _get(reader, writer, authority, f"/v2/{repository}/manifests/{reference}",
                                         MANIFEST_TYPES))
        module = 0
        for descriptor in [manifest["config"], *manifest["layers"]]:
            blob = await _get(reader, writer, authority, f"/v2/{repository}/blobs/{descriptor['digest']}")
            if "sha256:" + hashlib.sha256(blob).hexdigest() != descriptor["digest"]:
                raise RuntimeError(f"blob {descriptor['digest']}: the bytes do not match the digest")
            module = max(module, len(blob))
    finally:
        writer.close()
    return time.perf_counter() - began, module


async def _pull_together(host: str, port: int, repository: str, reference: str, clients: int
                         ) -> dict[str, Any]:
    began = time.perf_counter()
    done = await asyncio.gather(*(_pull(host, port, repository, reference) for _ in range(clients)),
                                return_exceptions=True)
    elapsed = time.perf_counter() - began
    ok = [d for d in done if isinstance(d, tuple)]
    errors = Counter(str(d)[:200] for d in done if not isinstance(d, tuple))
    seconds = [s for s, _ in ok]
    return {"clients": clients, "pulled": len(ok), "failed": clients - len(ok), "errors": dict(errors),
            "all_s": elapsed, "p50_s": float(np.percentile(seconds, 50)) if seconds else None,
            "pulls_per_s": len(ok) / elapsed, "module_bytes": max((b for _, b in ok), default=0),
            "module_bytes_per_s": sum(b for _, b in ok) / elapsed}


def registry_fanout(registry: HostProcess, repository: str, reference: str, levels: list[int]) -> dict[str, Any]:
    """For each K in `levels`: K clients start one whole pull each at the same moment, each on its own connection
    (as K nodes told of a new version at once), from one asyncio client on this machine; the time until the last
    one has every byte checked, and the rate that makes. The client shares the cores with the registry, so the
    rates are lower bounds for a registry with cores of its own; the CPU seconds each side spent say which one
    bounded them."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(_pull_together(registry.host, registry.port, repository, reference, 1))  # the first read warm
        rounds = []
        for clients in levels:
            registry_cpu, client_cpu = registry.cpu_seconds(), time.process_time()
            level = runner.run(_pull_together(registry.host, registry.port, repository, reference, clients))
            rounds.append({**level, "registry_cpu_s": registry.cpu_seconds() - registry_cpu,
                           "client_cpu_s": time.process_time() - client_cpu})
    return {"repository": repository, "reference": reference, "levels": rounds}
