"""The cluster simulation through a real Kubernetes API server (`cluster_sim.py --control-plane`).

cluster_sim.py's nodes read their ConfigMap from a directory laid out as the kubelet mounts it; here
the same update goes through a real kube-apiserver v1.20.2 (tests/k8s: built once from Debian's
source package, etcd beside it, on 127.0.0.1):

- servers: N `wasinfer serve --desired-state k8s://sim/ai-model-config` processes, each watching the
  ConfigMap through the API server, under a closed-loop load of one request at a time per server;
  R rounds each patch the ConfigMap (model_version and model_path to the other version's module file)
  and time, per server, the first answer with the new version's output. Failed requests are counted.
- fan-out: W watch connections (500 by default: the seed's node count) on the same ConfigMap, as W
  servers' watches would be, from one asyncio client; R rounds each patch the ConfigMap and time the
  arrival of the change at every watcher: how long the API server takes to tell 500 nodes.

Everything shares this machine's cores (API server, etcd, servers, load, 500 watch streams), so the
figures are upper bounds for a server with cores of its own. Registry pulls at 500 nodes are not
measured here: cluster_sim.py's registry figures estimate them (arithmetic, labelled as such).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the plane lives with the tests that use it: tests/k8s/plane.py

from tests.k8s.plane import CannotBuild, ControlPlane, control_plane, ensure_binaries  # noqa: E402

NAMESPACE, CONFIGMAP = "sim", "ai-model-config"


@dataclass(frozen=True)
class PlaneSettings:
    servers: int = 3
    rounds: int = 6
    watchers: int = 500
    fanout_rounds: int = 10
    converge_timeout_s: float = 30.0


QUICK_PLANE = PlaneSettings(servers=2, rounds=2, watchers=100, fanout_rounds=3)


def _distribution(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50_s": None, "p90_s": None, "p99_s": None, "max_s": None, "mean_s": None}
    values = np.asarray(seconds)
    return {"p50_s": float(np.percentile(values, 50)), "p90_s": float(np.percentile(values, 90)),
            "p99_s": float(np.percentile(values, 99)), "max_s": float(values.max()), "mean_s": float(values.mean())}


class _Client:
    """The admin's view of the plane: the ConfigMap's patches, and what a raw watch needs (URL, token, CA)."""

    def __init__(self, plane: ControlPlane):
        from wasinfer.serving.kube_source import core_api

        self.api = core_api({"KUBECONFIG": str(plane.kubeconfig)})
        config = yaml.safe_load(plane.kubeconfig.read_text())
        self.server = config["clusters"][0]["cluster"]["server"]
        self.token = config["users"][0]["user"]["token"]
        self.ca = plane.run_dir / "pki" / "ca.crt"

    def patch(self, data: dict[str, str]) -> str:
        """Patch the ConfigMap; its new resourceVersion."""
        found = self.api.patch_namespaced_config_map(CONFIGMAP, NAMESPACE, {"data": data})
        return str(found.metadata.resource_version)


def _serve_loop(port: int, body: bytes, versions: Any, seen: list[tuple[float, int]], stop: threading.Event,
                limit_s: float) -> None:
    """One request at a time on a keep-alive connection, until `stop` or `limit_s`: (time, version index; -1 failed)."""
    deadline = time.monotonic() + limit_s
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            connection.request("POST", "/v2/models/ai-model/infer", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            seen.append((time.monotonic(), versions.of(payload) if response.status == 200 else -1))
        except (OSError, http.client.HTTPException):
            seen.append((time.monotonic(), -1))
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.close()


def measure_servers(plane: ControlPlane, client: _Client, settings: PlaneSettings, workdir: Path,
                    modules: dict[str, Path], versions: Any, body: bytes) -> dict[str, Any]:
    labels = list(modules)
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_PATH", "WASINFER_DESIRED_STATE")}
    env.update(KUBECONFIG=str(plane.kubeconfig), COLUMNS="200", PYTHONPATH=str(ROOT / "src"))
    processes, ports = [], []
    for index in range(settings.servers):
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "wasinfer.cli.main", "serve", "--desired-state", f"k8s://{NAMESPACE}/{CONFIGMAP}",
             "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "-1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=dict(env, WASINFER_HOME=str(workdir / f"server{index}"))))
    stop, threads = threading.Event(), []
    seen: list[list[tuple[float, int]]] = [[] for _ in processes]
    rounds: list[dict[str, Any]] = []
    try:
        for process in processes:
            assert process.stdout is not None
            deadline = time.monotonic() + 120
            for line in process.stdout:
                if "REST  http://127.0.0.1:" in line:
                    ports.append(int(line.split("127.0.0.1:")[1].split("/")[0]))
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("a server did not start within 120 s")
            else:
                raise RuntimeError(f"a server exited with {process.wait()}")
            threading.Thread(target=lambda p=process: [None for _ in p.stdout or []], daemon=True).start()
        threads = [threading.Thread(target=_serve_loop, args=(port, body, versions, record, stop, 600.0), daemon=True)
                   for port, record in zip(ports, seen, strict=True)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        for number in range(settings.rounds):
            label = labels[(number + 1) % len(labels)]
            target = labels.index(label)
            started = time.monotonic()
            client.patch({"model_path": str(modules[label]), "model_version": label})
            latencies: list[float | None] = []
            for record in seen:
                end = started + settings.converge_timeout_s
                first = None
                while first is None and time.monotonic() < end:
                    first = next((t for t, v in list(record) if t >= started and v == target), None)
                    time.sleep(0.01)
                latencies.append(None if first is None else first - started)
            rounds.append({"to": label, "per_server_s": latencies})
            time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=45)
            except subprocess.TimeoutExpired:
                process.kill()
    every = [s for r in rounds for s in r["per_server_s"] if s is not None]
    requests = sum(len(r) for r in seen)
    failed = sum(1 for r in seen for _, v in r if v < 0)
    return {"servers": settings.servers, "rounds": rounds, "converged": all(
        s is not None for r in rounds for s in r["per_server_s"]), "requests": requests, "failed": failed,
        "latency": _distribution(every)}


async def _fanout(client: _Client, settings: PlaneSettings) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(client.ca))
    limits = httpx.Limits(max_connections=settings.watchers + 10, max_keepalive_connections=0)
    url = f"{client.server}/api/v1/namespaces/{NAMESPACE}/configmaps"
    arrivals: list[dict[str, float]] = [{} for _ in range(settings.watchers)]
    connected = asyncio.Semaphore(0)
    version = client.api.read_namespaced_config_map(CONFIGMAP, NAMESPACE).metadata.resource_version

    async def watch(index: int, http: httpx.AsyncClient) -> None:
        params = {"watch": "1", "fieldSelector": f"metadata.name={CONFIGMAP}", "resourceVersion": version,
                  "timeoutSeconds": "600"}
        async with http.stream("GET", url, params=params) as response:
            connected.release()
            async for line in response.aiter_lines():
                if line:
                    marker = (json.loads(line)["object"].get("data") or {}).get("fanout_round")
                    if marker is not None:
                        arrivals[index][marker] = time.monotonic()

    async with httpx.AsyncClient(verify=context, limits=limits, timeout=httpx.Timeout(30, read=None),
                                 headers={"Authorization": f"Bearer {client.token}"}) as http:
        started = time.monotonic()
        tasks = [asyncio.create_task(watch(i, http)) for i in range(settings.watchers)]
        for _ in range(settings.watchers):
            await asyncio.wait_for(connected.acquire(), 120)
        connect_s = time.monotonic() - started
        rounds = []
        for number in range(settings.fanout_rounds):
            marker = str(number)
            sent = time.monotonic()
            await asyncio.to_thread(client.patch, {"fanout_round": marker})
            deadline = sent + settings.converge_timeout_s
            while time.monotonic() < deadline and not all(marker in a for a in arrivals):
                await asyncio.sleep(0.005)
            got = [a[marker] - sent for a in arrivals if marker in a]
            rounds.append({"delivered": len(got), "all_s": max(got) if len(got) == settings.watchers else None,
                           **_distribution(got)})
            await asyncio.sleep(0.3)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    every_all = [r["all_s"] for r in rounds if r["all_s"] is not None]
    return {"watchers": settings.watchers, "connect_s": connect_s, "rounds": rounds,
            "all_delivered": _distribution(every_all),
            "complete_rounds": len(every_all)}


def run(settings: PlaneSettings, workdir: Path, modules: dict[str, Path], versions: Any, body: bytes
        ) -> dict[str, Any]:
    """Both measurements on one plane (etcd and the API server only: no pods are needed); or why not."""
    try:
        ensure_binaries(build=True)  # a benchmark may build (and fetch Debian's source package); tests never do
        with control_plane(workdir / "plane", controllers=False) as plane:
            client = _Client(plane)
            first = next(iter(modules))
            plane.namespace(NAMESPACE)
            plane.apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIGMAP},
                          "data": {"model_path": str(modules[first]), "model_version": first,
                                   "model_update_interval": "5m", "cache_enabled": "true"}}], NAMESPACE)
            servers = measure_servers(plane, client, settings, workdir, modules, versions, body)
            fanout = asyncio.run(_fanout(client, settings))
            apiserver = subprocess.run([str(plane.kubectl_path), "version", "--short"], capture_output=True,
                                       text=True, env=plane.env, timeout=30).stdout.strip().splitlines()
    except CannotBuild as exc:
        return {"status": "n/a", "reason": str(exc)}
    return {"status": "ok", "settings": asdict(settings), "kube_version": apiserver[-1] if apiserver else None,
            "servers": servers, "fanout": fanout}
