"""The cluster simulation on a real Kubernetes control plane (`cluster_sim.py --control-plane --nodes N`).

cluster_sim.py's nodes read their ConfigMap from a directory laid out as the kubelet mounts it; here the
cluster is a real one as far as the control plane goes: etcd, kube-apiserver, controller-manager and
scheduler v1.20.2 (tests/k8s: built once from Debian's source package), with

- nodes: N Node objects (fake-node-1..N: Ready, 2 CPUs, 4 GiB, 110 pods, each with the address of its
  network namespace as InternalIP), and for each a network namespace on a private bridge (cluster_parts);
- the workload: `deploy render --kube-version 1.20` of the project's Deployment with N replicas, the
  ConfigMap watched through the API (`config.watch`: `--desired-state k8s://sim/ai-model-config`, its
  ServiceAccount, Role and RoleBinding), the model a registry reference, and a required pod anti-affinity
  on the hostname, applied with `kubectl apply --server-side`: the ReplicaSet's scheduler puts one pod on
  each node;
- the pods' containers: for each pod, its container's command, arguments and environment as the API server
  holds them, run as a real `wasinfer serve` process in the namespace of the node the pod is bound to
  (listening on the pod's port 8000 of the node's address), with the rendered Role's service-account token as
  its only credentials; the fake kubelet (tests/k8s/fake_kubelet.py) then marks the pods Running with the
  node's address as their IP, so the Service's endpoints are the servers;
- the API server and the registry (Debian's docker-registry) listen on the bridge's address, where the
  servers reach them: the module is pulled over the bridge;
- updates: the ConfigMap patched through the API server (`model_version` to the other version, pushed to the
  registry beforehand), R rounds, under an open-loop round-robin load from the host side; per node, the time
  from the patch to its first answer with the new version's output; failed requests (target 0); the pods as
  the API server sees them before and after;
- fan-out at the seed's scale, simulated: W watch streams on the ConfigMap (500 by default, as 500 nodes'
  servers would hold) and the time for each patch to reach all of them; and K clients pulling the new
  version's module from the one registry at the same moment (up to 500 by default), each on its own
  connection, with every digest checked: the time until the last has it.

Everything shares this machine's cores (API server, etcd, controllers, servers, load, watchers, pullers), so
the figures are upper bounds for a cluster whose parts have cores of their own. Needs root and `ip netns`
(the report says n/a, and why, where either is missing), and the tests/k8s binaries (built on first use).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import ssl
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from cluster_parts import (
    NEW,
    OLD,
    REPOSITORY,
    SERVED,
    WEIGHT_SEED,
    HostProcess,
    Network,
    OpenLoad,
    Versions,
    convergence,
    namespace_network,
    namespaces_problem,
    registry_fanout,
    registry_process,
    remove_stale_namespaces,
    scrape,
    start_all,
    stop_all,
    wait_converged,
    window_stats,
)
from lifecycle_bench import mlp_onnx, total

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the plane lives with the tests that use it: tests/k8s/plane.py

from tests.k8s.plane import CannotBuild, ControlPlane, control_plane, ensure_binaries, wait_for  # noqa: E402

NAMESPACE, CONFIGMAP, DEPLOYMENT = "sim", "ai-model-config", "ai-inference-service"
NODE_PREFIX = "fake-node-"  # the nodes whose pods the fake kubelet marks Running
NODE_CAPACITY = {"cpu": "2", "memory": "4Gi", "pods": "110"}  # the seed's pod limit is 2 cores
SERVER_SELECTOR = "app.kubernetes.io/component=server"


@dataclass(frozen=True)
class PlaneSettings:
    nodes: int = 3
    rounds: int = 4  # ConfigMap patches, alternating between the two versions
    rate_per_node: float = 50.0  # the open-loop load, requests/s per node
    settle_s: float = 2.0  # load between rounds (plus a jitter under 1 s)
    watchers: int = 500
    fanout_rounds: int = 10
    pull_clients: tuple[int, ...] = (1, 10, 50, 100, 250, 500)
    converge_timeout_s: float = 30.0
    settle_timeout_s: float = 300.0  # scheduler, controllers, servers' start, fake kubelet (2 loaded cores)
    seed: int = 0


QUICK_PLANE = PlaneSettings(nodes=2, rounds=2, watchers=100, fanout_rounds=3, pull_clients=(1, 10, 50))


def _distribution(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50_s": None, "p90_s": None, "p99_s": None, "max_s": None, "mean_s": None}
    values = np.asarray(seconds)
    return {"p50_s": float(np.percentile(values, 50)), "p90_s": float(np.percentile(values, 90)),
            "p99_s": float(np.percentile(values, 99)), "max_s": float(values.max()), "mean_s": float(values.mean())}


_wait = functools.partial(wait_for, every=0.25)  # the plane settles in seconds: look four times a second


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

    def server_pods(self) -> list[Any]:
        return list(self.api.list_namespaced_pod(NAMESPACE, label_selector=SERVER_SELECTOR).items)

    def pod_views(self) -> list[dict[str, Any]]:
        """The server pods as the API server sees them (sorted by node)."""
        views = []
        for pod in self.server_pods():
            conditions = {c.type: c.status for c in pod.status.conditions or []}
            views.append({"name": pod.metadata.name, "node": pod.spec.node_name, "phase": pod.status.phase,
                          "ready": conditions.get("Ready") == "True", "pod_ip": pod.status.pod_ip})
        return sorted(views, key=lambda v: str(v["node"]))

    def endpoints(self) -> list[str]:
        """The Service's ready addresses (the endpoints controller's view of the Running pods); none before the
        controller has made the object."""
        from kubernetes.client.exceptions import ApiException

        try:
            found = self.api.read_namespaced_endpoints(DEPLOYMENT, NAMESPACE)
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise
        return sorted(a.ip for subset in found.subsets or [] for a in subset.addresses or [])


def node_object(name: str, address: str) -> dict[str, Any]:
    """A Node as a kubelet registers it: Ready, with capacity, its address the node's namespace's."""
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"capacity": NODE_CAPACITY, "allocatable": NODE_CAPACITY,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "message": "fake: the node's server runs in a network namespace"}],
                       "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname",
                                                                                   "address": name}]}}


def register_nodes(client: _Client, net: Network) -> list[dict[str, str]]:
    """The plane's one fake node replaced by N, one per namespace; the not-ready taint the admission plugin puts on
    a new node removed (no node lifecycle controller runs to remove it)."""
    from kubernetes.client.exceptions import ApiException

    existing = {n.metadata.name for n in client.api.list_node().items}
    for name in existing:
        if name.startswith(NODE_PREFIX):
            client.api.delete_node(name)
    _wait("the plane's fake node deleted", lambda: not any(
        n.metadata.name.startswith(NODE_PREFIX) for n in client.api.list_node().items), 60)
    nodes = []
    for index, address in enumerate(net.node_addresses):
        name = f"{NODE_PREFIX}{index + 1}"
        client.api.create_node(node_object(name, address))
        try:
            client.api.patch_node(name, {"spec": {"taints": None}})
        except ApiException as exc:
            raise RuntimeError(f"node {name}: removing its taints: {exc.status} {exc.reason}") from None
        nodes.append({"name": name, "address": address, **NODE_CAPACITY})
    return nodes


def workload(replicas: int, model_path: str) -> list[dict[str, Any]]:
    """`deploy render --kube-version 1.20` of the Deployment (N replicas, one per node), watching its ConfigMap."""
    from wasinfer.deploy.render import default_extras, parse_kube_version, render
    from wasinfer.deploy.values import load

    one_per_node = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "server"}}}]}}
    values = load(overrides={"replicas": replicas, "autoscaling": {"enabled": False}, "config": {"watch": True},
                             "model": {"path": model_path, "version": OLD, "updateInterval": "5m"},
                             "modelVolume": {"source": {"emptyDir": {}}}, "affinity": one_per_node})
    return [o for o in render(values, default_extras(), kube=parse_kube_version("v1.20.2"))
            if o["metadata"]["name"] != "ai-inference-service-dashboard"]


def pod_server(pod: Any, net: Network, index: int, workdir: Path, kubeconfig: Path) -> HostProcess:
    """The pod's container (command, arguments, environment as the API server holds them) as a `wasinfer serve`
    process in the namespace of node `index`; the pod's state volume a directory of its own."""
    container = pod.spec.containers[0]
    env: dict[str, str] = {}
    for variable in container.env or []:
        if variable.value is not None:
            env[variable.name] = variable.value
        elif variable.value_from is not None and variable.value_from.field_ref is not None:
            fields = {"metadata.namespace": pod.metadata.namespace, "metadata.name": pod.metadata.name,
                      "spec.nodeName": pod.spec.node_name, "status.podIP": net.node_addresses[index]}
            env[variable.name] = fields[variable.value_from.field_ref.field_path]
    words = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), word)
             for word in [*(container.command or []), *(container.args or [])]]
    if words[:1] != ["wasinfer"]:
        raise RuntimeError(f"pod {pod.metadata.name}: its container runs {words[:2]}, not wasinfer")
    port = next(p.container_port for p in container.ports or [] if p.name == "http")
    home = workdir / f"state-node{index}"
    env.update(WASINFER_HOME=str(home), WASINFER_CACHE=str(home / "cache"), KUBECONFIG=str(kubeconfig),
               PYTHONPATH=str(ROOT / "src"), WASINFER_REGISTRY_PLAIN_HTTP="1", WASINFER_TRUST_MODE="off")
    command = net.wrap(index, [sys.executable, "-m", "wasinfer.cli.main", *words[1:]])
    return HostProcess(f"node{index}", command, net.node_addresses[index], port, "/v2/health/ready", workdir, env)


def measure_rounds(client: _Client, servers: list[HostProcess], settings: PlaneSettings, versions: Versions
                   ) -> dict[str, Any]:
    """Open-loop load over the nodes; R patches of the ConfigMap, each timed to every node's first new answer."""
    targets = [(s.host, s.port) for s in servers]
    rate = settings.rate_per_node * len(servers)
    limit = settings.rounds * (settings.converge_timeout_s + settings.settle_s + 1) + 2 * settings.settle_s + 30
    before = [scrape(s.url) for s in servers]
    jitter = np.random.default_rng(settings.seed).random(settings.rounds)
    load = OpenLoad(targets, rate, versions, limit).start()
    marks: list[tuple[str, float, bool]] = []
    try:
        time.sleep(settings.settle_s)
        started = time.perf_counter()
        for number in range(settings.rounds):
            label = versions.labels[(number + 1) % len(versions.labels)]
            since = time.perf_counter()
            client.patch({"model_version": label})
            converged = wait_converged(load, versions.labels.index(label), settings.converge_timeout_s)
            marks.append((label, since, converged))
            time.sleep(settings.settle_s + jitter[number])
    finally:
        load.stop()
    ended = time.perf_counter()
    after = [scrape(s.url) for s in servers]
    rounds = []
    for number, (label, since, _) in enumerate(marks):
        until = marks[number + 1][1] if number + 1 < len(marks) else ended
        rounds.append({"to": label, **convergence(load.records, len(servers), since, until,
                                                  versions.labels.index(label))})

    def counted(outcome: str) -> list[int]:
        return [int(total(a, "wasinfer_model_updates_total", outcome=outcome)
                    - total(b, "wasinfer_model_updates_total", outcome=outcome)) for a, b in zip(after, before,
                                                                                                 strict=True)]

    every = [t for r in rounds for t in r["per_node_s"] if t is not None]
    failed = sum(1 for r in load.records if r.status != 200 or r.version < 0)
    return {"servers": len(servers), "rate_rps": rate, "rounds": rounds,
            "converged": all(r["converged"] for r in rounds), "requests": len(load.records), "failed": failed,
            "shed": load.shed, "failure_kinds": dict(load.failures), "latency": _distribution(every),
            "window": window_stats(load.records, len(servers), started, ended),
            "updates_ok": counted("ok"), "updates_failed": counted("failed")}


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
                                 headers={"Authorization": f"Bearer {client.token}"}, trust_env=False) as http:
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


def _one_per_node(pods: list[Any], nodes: int) -> list[Any] | None:
    """The pods, once `nodes` of them are bound to `nodes` different nodes; else None."""
    bound = [p for p in pods if p.spec.node_name]
    return bound if len(bound) == nodes and len({p.spec.node_name for p in bound}) == nodes else None


def _every_endpoint(client: _Client, nodes: int) -> list[str] | None:
    """The Service's addresses, once there are `nodes` of them; else None."""
    found = client.endpoints()
    return found if len(found) == nodes else None


def _stop_kubelet(kubelet: subprocess.Popen[str] | None) -> None:
    if kubelet is not None and kubelet.poll() is None:
        kubelet.terminate()
        try:
            kubelet.wait(10)
        except subprocess.TimeoutExpired:
            kubelet.kill()
            kubelet.wait(5)


def run(settings: PlaneSettings, workdir: Path, modules: dict[str, bytes], versions: Versions) -> dict[str, Any]:
    """The cluster on the plane, the rounds under load, the fan-outs; every process and namespace gone on return,
    however it returns. Where the plane or namespaces are impossible here: {"status": "n/a", "reason": ...}."""
    from wasinfer.registry.artifact import ModelArtifact
    from wasinfer.registry.oci import OciClient

    problem = namespaces_problem()
    if problem:
        return {"status": "n/a", "reason": f"the nodes need network namespaces: {problem}"}
    try:
        ensure_binaries(build=True)  # a benchmark may build (and fetch Debian's source package); tests never do
    except CannotBuild as exc:
        return {"status": "n/a", "reason": str(exc)}
    remove_stale_namespaces()
    try:
        net = namespace_network(settings.nodes)
    except OSError as exc:
        return {"status": "n/a", "reason": f"the nodes need network namespaces: {exc}"}
    result: dict[str, Any] = {"status": "ok", "settings": asdict(settings), "nproc": os.cpu_count(), "network": {
        "subnet": net.subnet, "host_address": net.host_address, "nodes": net.node_addresses}}
    processes: list[HostProcess] = []
    servers: list[HostProcess] = []
    kubelet: subprocess.Popen[str] | None = None
    try:
        registry = registry_process(workdir, net.host_address)
        processes.append(registry)
        start_all([registry], timeout=30)
        address = f"{registry.host}:{registry.port}"
        with OciClient(address, plain_http=True) as oci:
            for label, module in modules.items():
                oci.push(REPOSITORY, label, ModelArtifact.from_module(module, REPOSITORY, label))
        with control_plane(workdir / "plane", address=net.host_address) as plane:
            client = _Client(plane)
            cluster: dict[str, Any] = {"nodes": register_nodes(client, net)}
            plane.namespace(NAMESPACE)
            applied = time.perf_counter()
            plane.apply(workload(settings.nodes, f"{address}/{REPOSITORY}"), NAMESPACE)
            pods = _wait("one pod bound to each node", lambda: _one_per_node(client.server_pods(), settings.nodes),
                         settings.settle_timeout_s)
            cluster["scheduled_s"] = time.perf_counter() - applied
            node_index = {f"{NODE_PREFIX}{i + 1}": i for i in range(settings.nodes)}
            kubeconfig = plane.service_account_kubeconfig(NAMESPACE, DEPLOYMENT, workdir / "sa.kubeconfig")
            servers = [pod_server(pod, net, node_index[pod.spec.node_name], workdir, kubeconfig)
                       for pod in sorted(pods, key=lambda p: node_index[p.spec.node_name])]
            processes += servers
            start_all(servers, timeout=settings.settle_timeout_s)
            cluster["servers_ready_s"] = time.perf_counter() - applied
            kubelet = plane.fake_kubelet(int(settings.settle_timeout_s) + 600, dict(zip(
                node_index, net.node_addresses, strict=True)))
            _wait("the Deployment's pods Running and ready", lambda: plane.get(
                "deployment", DEPLOYMENT, "-n", NAMESPACE)["status"].get("readyReplicas") == settings.nodes,
                settings.settle_timeout_s)
            cluster["running_s"] = time.perf_counter() - applied
            cluster["pods_before"] = client.pod_views()
            cluster["endpoints"] = _wait("the Service's endpoints", lambda: _every_endpoint(client, settings.nodes),
                                         60)
            result["servers"] = measure_rounds(client, servers, settings, versions)
            cluster["pods_after"] = client.pod_views()
            result["cluster"] = cluster
            stop_all(servers)
            _stop_kubelet(kubelet)
            result["fanout"] = asyncio.run(_fanout(client, settings))
            version = subprocess.run([str(plane.kubectl_path), "version", "--short"], capture_output=True,
                                     text=True, env=plane.env, timeout=30).stdout.strip().splitlines()
            result["kube_version"] = version[-1].split(":")[-1].strip() if version else None
        result["registry_fanout"] = registry_fanout(registry, REPOSITORY, NEW, list(settings.pull_clients))
    finally:
        stop_all(servers)
        _stop_kubelet(kubelet)
        stop_all(processes)
        net.close()
    return result


def modules_of(versions: list[str]) -> dict[str, bytes]:
    """Each version's module: the MLP with that version's weights, as cluster_sim.py serves it."""
    from wasinfer.artifact import convert_onnx

    return {label: convert_onnx(mlp_onnx(WEIGHT_SEED[label]), max_batch=8, name=SERVED).wasm for label in versions}
