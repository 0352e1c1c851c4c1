"""What wasinfer gives a cluster, checked by a real Kubernetes control plane (v1.20.2: tests/k8s/plane.py).

- `deploy render --kube-version 1.20` and the chart under `helm template --kube-version 1.20` apply with
  `kubectl apply --server-side`; the Deployment's ReplicaSet and pods appear, scheduled onto the fake node
  and marked Running by the fake kubelet, and the PodDisruptionBudget counts them. The default render (for
  1.30) is refused there, which is what --kube-version is for.
- The Gatekeeper ConstraintTemplates install (under Gatekeeper's ConstraintTemplate CRD), the constraint
  CRD Gatekeeper would derive from each is accepted as a structural schema, and each shipped constraint
  is accepted by it (a mistyped parameter is refused).
- `--desired-state k8s://NAMESPACE/CONFIGMAP`: the watch resumes after the server ends it, after a 410
  (a compacted resourceVersion) and after the ConfigMap was deleted; three `wasinfer serve` processes,
  with the rendered Role's service account as their only credentials, serve a new version within 2 s of
  the ConfigMap's update under load, with no failed request.

Marked `k8s`: the binaries are built on first use (tests/k8s/build.sh, about 8 minutes, then cached in
~/.cache/k8s-1.20); the module skips only where that build is impossible. One plane serves the module
(one xdist group, so one worker runs it all).
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from tests.deploy.gotemplate import render_chart
from tests.k8s.plane import CannotBuild, ControlPlane, control_plane, ensure_binaries, wait_for
from tests.processes import output_lines, read_until, stop
from wasinfer.deploy.gatekeeper import load_constraints, load_templates
from wasinfer.deploy.render import default_extras, parse_kube_version, render
from wasinfer.deploy.values import load
from wasinfer.serving.desired import ConfigMapRef

pytestmark = [pytest.mark.k8s, pytest.mark.xdist_group("k8s")]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "wasinfer"
KUBE = "v1.20.2"
# A workload the fake node can hold (8 CPUs): 3 replicas, a model volume that needs no PersistentVolume.
WORKLOAD = {"replicas": 3, "autoscaling": {"minReplicas": 3, "maxReplicas": 6},
            "modelVolume": {"source": {"hostPath": {"path": "/var/lib/wasinfer/models", "type": "Directory"}}},
            "batch": {"enabled": True}, "config": {"watch": True}}
SETTLE_S = 300  # the longest wait for controllers, scheduler and fake kubelet (seconds; ~5 s when idle, over 120 s
# once under the full suite with other work on the 2 cores)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    try:
        with control_plane(tmp_path_factory.mktemp("k8s")) as running:
            yield running
    except CannotBuild as exc:
        pytest.skip(str(exc))


def _wait(what: str, condition: Any, timeout: float = SETTLE_S) -> Any:
    return wait_for(what, condition, timeout)


def _running_workload(plane: ControlPlane, namespace: str, replicas: int) -> None:
    """The Deployment's ReplicaSet, its pods on the fake node and Running, and the PDB counting them."""
    kubelet = plane.fake_kubelet(SETTLE_S)
    try:
        _wait("the Deployment's pods ready", lambda: plane.get("deployment", "ai-inference-service", "-n", namespace)
              ["status"].get("readyReplicas") == replicas)
        [replica_set] = plane.get("replicasets", "-n", namespace)["items"]
        assert replica_set["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
        pods = [p for p in plane.get("pods", "-n", namespace)["items"]
                if p["metadata"]["labels"]["app.kubernetes.io/component"] == "server"]
        assert len(pods) == replicas
        assert {p["spec"]["nodeName"] for p in pods} == {"fake-node-1"}
        assert {p["status"]["phase"] for p in pods} == {"Running"}
        assert {p["spec"]["runtimeClassName"] for p in pods} == {"wasmedge"}
        _wait("the PodDisruptionBudget counts the pods", lambda: plane.get(
            "pdb", "ai-inference-service", "-n", namespace).get("status", {}).get("currentHealthy") == replicas)
    finally:
        stop(kubelet, 5)


def test_render_for_1_20_applies_server_side_and_its_pods_run(plane: ControlPlane) -> None:
    namespace = plane.namespace("render")
    objects = render(load(overrides=WORKLOAD), default_extras(), kube=parse_kube_version(KUBE))
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job", "Role"} <= kinds
    plane.apply(objects, namespace)
    _running_workload(plane, namespace, 3)
    hpa = plane.get("hpa.v2beta2.autoscaling", "ai-inference-service", "-n", namespace)
    assert {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"]} == {
        "cpu": 60, "memory": 70}


def test_the_default_render_is_refused_by_1_20(plane: ControlPlane) -> None:
    """What --kube-version is for: the newest forms (preStop sleep, autoscaling/v2, policy/v1) do not exist there."""
    namespace = plane.namespace("default-render")
    newest = {o["kind"]: o for o in render(load(overrides=WORKLOAD), default_extras())}
    refused = plane.apply([newest["Deployment"]], namespace, check=False)
    assert refused.returncode != 0 and "sleep" in refused.stderr, refused.stderr
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
        refused = plane.apply([newest[kind]], namespace, check=False)
        assert refused.returncode != 0 and newest[kind]["apiVersion"] in refused.stderr, refused.stderr


def _chart_objects(values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    """`helm template --kube-version 1.20` where helm is installed, else the chart through tests/deploy/gotemplate."""
    helm = os.environ.get("WASINFER_HELM") or shutil.which("helm")
    if not helm:
        return render_chart(CHART, load([CHART / "values.yaml"], values), release="edge", kube_version=KUBE)
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps(values))
    result = subprocess.run([helm, "template", "edge", str(CHART), "-f", str(values_file), "--kube-version", KUBE],
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, HELM_CACHE_HOME=str(tmp_path / "cache"),
                                     HELM_CONFIG_HOME=str(tmp_path / "config")))
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_the_chart_for_1_20_applies_server_side_and_its_pods_run(plane: ControlPlane, tmp_path: Path) -> None:
    namespace = plane.namespace("chart")
    # the RuntimeClass is the render test's (one cluster-wide object, applied there)
    objects = _chart_objects({**WORKLOAD, "instance": "edge", "runtimeClass": {"create": False}}, tmp_path)
    assert {o["apiVersion"] for o in objects if o["kind"] == "PodDisruptionBudget"} == {"policy/v1beta1"}
    plane.apply(objects, namespace)
    _running_workload(plane, namespace, 3)


# --- Gatekeeper --------------------------------------------------------------------------------------

PRESERVE = {"x-kubernetes-preserve-unknown-fields": True}


def _crd(group: str, kind: str, plural: str, version: str, scope: str, spec_schema: dict[str, Any]
         ) -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": scope, "names": {"kind": kind, "plural": plural,
                                                                "singular": kind.lower(), "listKind": f"{kind}List"},
                     "versions": [{"name": version, "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                       "spec": spec_schema, "status": {"type": "object", **PRESERVE}}}}}]}}


def template_crd() -> dict[str, Any]:
    """Gatekeeper's ConstraintTemplate CRD (templates.gatekeeper.sh/v1), with its schema for the fields ours use."""
    return _crd("templates.gatekeeper.sh", "ConstraintTemplate", "constrainttemplates", "v1", "Cluster", {
        "type": "object", "properties": {
            "crd": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
                "names": {"type": "object", "properties": {
                    "kind": {"type": "string"}, "shortNames": {"type": "array", "items": {"type": "string"}}}},
                "validation": {"type": "object", "properties": {
                    "legacySchema": {"type": "boolean"},
                    "openAPIV3Schema": {"type": "object", **PRESERVE}}}}}}},
            "targets": {"type": "array", "items": {"type": "object", "properties": {
                "target": {"type": "string"}, "rego": {"type": "string"},
                "libs": {"type": "array", "items": {"type": "string"}},
                "code": {"type": "array", "items": {"type": "object", "required": ["engine", "source"], "properties": {
                    "engine": {"type": "string"}, "source": {**PRESERVE}}}}}}}}})


def constraint_crd(kind: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """The CRD Gatekeeper's controller makes from a template: its parameter schema under spec.parameters."""
    return _crd("constraints.gatekeeper.sh", kind, kind.lower(), "v1beta1", "Cluster", {
        "type": "object", "properties": {"enforcementAction": {"type": "string"},
                                         "match": {"type": "object", **PRESERVE},
                                         "parameters": parameters}})


def test_gatekeeper_templates_install_and_every_constraint_is_accepted(plane: ControlPlane) -> None:
    templates = load_templates()
    plane.apply([template_crd()])
    _wait("the ConstraintTemplate CRD established", lambda: plane.kubectl(
        "get", "constrainttemplates", check=False).returncode == 0, 30)
    documents = [yaml.safe_load(t.path.read_text()) for t in templates.values() if t.path is not None]
    plane.apply(documents)
    installed = {item["metadata"]["name"] for item in plane.get("constrainttemplates")["items"]}
    assert installed == {t.name for t in templates.values()}
    plane.apply([constraint_crd(t.kind, t.schema) for t in templates.values()])  # refused if not structural
    for template in templates.values():
        _wait(f"{template.kind} served", lambda t=template: plane.kubectl(
            "get", t.kind.lower(), check=False).returncode == 0, 30)
    constraints = load_constraints()
    assert {c.kind for c in constraints} == {t.kind for t in templates.values()}
    plane.apply([yaml.safe_load(c.path.read_text()) for c in constraints if c.path is not None])
    for constraint in constraints:
        got = plane.get(constraint.kind.lower(), constraint.name)
        assert got["spec"].get("parameters", {}) == constraint.parameters
    # the parameter schemas are enforced: a list where the template says string (or int) is refused
    resources = yaml.safe_load((ROOT / "deploy/gatekeeper/constraints/wasinfer-resources.yaml").read_text())
    wrong = copy.deepcopy(resources)
    wrong["metadata"]["name"] = "wrong-types"
    wrong["spec"]["parameters"]["maxCpuLimit"] = ["2"]
    refused = plane.apply([wrong], check=False)
    assert refused.returncode != 0 and "maxCpuLimit" in refused.stderr, refused.stderr


# --- the desired state through the API ------------------------------------------------------------------

def _scale_model(path: Path, scale: float) -> None:
    """ai-model: y = x * scale, so an answer tells which version served it."""
    from wasinfer.artifact import convert_onnx

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["y"])], "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.full(4, scale, np.float32), "scale")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(convert_onnx(model, max_batch=4, name="ai-model").wasm)


def _set_configmap(plane: ControlPlane, namespace: str, data: dict[str, str]) -> None:
    from wasinfer.serving.kube_source import core_api

    core_api({"KUBECONFIG": str(plane.kubeconfig)}).patch_namespaced_config_map(
        "ai-model-config", namespace, {"data": data})


def _watch_namespace(plane: ControlPlane, name: str, model: Path) -> None:
    """The ConfigMap and the servers' ServiceAccount, Role and RoleBinding, as deploy render makes them."""
    plane.namespace(name)
    values = load(overrides={"config": {"watch": True}, "model": {"path": str(model), "version": "v1.0.0",
                                                                  "updateInterval": "5m"}})
    objects = [o for o in render(values) if o["kind"] in ("ConfigMap", "ServiceAccount", "Role", "RoleBinding")
               and o["metadata"]["name"] != "ai-inference-service-dashboard"]
    plane.apply(objects, name)


def _compact_etcd(etcd_url: str) -> None:
    """What the API server does every 5 minutes: etcd forgets every revision before the current one."""
    status = subprocess.run(["etcdctl", "--endpoints", etcd_url, "endpoint", "status", "-w", "json"],
                            capture_output=True, text=True, timeout=30, env=dict(os.environ, ETCDCTL_API="3"),
                            check=True)
    revision = json.loads(status.stdout)[0]["Status"]["header"]["revision"]
    subprocess.run(["etcdctl", "--endpoints", etcd_url, "compact", str(revision)], capture_output=True, timeout=30,
                   env=dict(os.environ, ETCDCTL_API="3"), check=True)


def test_the_configmap_watcher_follows_updates_across_expiry_410_and_deletion(tmp_path: Path) -> None:
    """On a plane of its own whose ConfigMap watches go to etcd (no watch cache), so that a compaction of
    etcd makes the API server answer a resumed watch with 410 Gone, as after a long disconnection."""
    from wasinfer.serving.kube_source import ConfigMapWatcher

    try:
        ensure_binaries()
    except CannotBuild as exc:
        pytest.skip(str(exc))
    v1, v2 = tmp_path / "v1.0.0" / "ai-model.wasm", tmp_path / "v1.1.0" / "ai-model.wasm"
    with control_plane(tmp_path / "plane", controllers=False,
                       apiserver_args="--watch-cache-sizes=configmaps#0") as plane:
        _watch_namespace(plane, "watcher", v1)
        watcher = ConfigMapWatcher(ConfigMapRef("watcher", "ai-model-config"),
                                   {"KUBECONFIG": str(plane.kubeconfig)}, watch_seconds=1)
        try:
            assert watcher.current.model_path == str(v1) and watcher.current.model_version == "v1.0.0"
            assert not watcher.check()

            def sees(version: str) -> bool:
                return _wait(f"the watcher on {version}", lambda: watcher.check() or
                             watcher.current.model_version == version, 30)

            _set_configmap(plane, "watcher", {"model_path": str(v2), "model_version": "v1.1.0"})
            assert sees("v1.1.0") and watcher.current.model_path == str(v2)
            # the server ends each watch after 1 s: later updates still arrive
            time.sleep(2.5)
            assert watcher.watch_requests >= 2
            _set_configmap(plane, "watcher", {"model_version": "v1.2.0"})
            assert sees("v1.2.0")
            # the next watch resumes from a version etcd has compacted away: 410, a fresh GET, then on
            stale = watcher._version  # fault injection: what a watcher disconnected for a while would hold
            for n in range(3):
                plane.apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "churn"},
                              "data": {"n": str(n)}}], "watcher")
            _compact_etcd(plane.etcd_url)
            watcher._version = stale
            _wait("a watch ended with 410 Gone", lambda: watcher.gone >= 1, 30)
            _set_configmap(plane, "watcher", {"model_version": "v1.3.0"})
            assert sees("v1.3.0")
            # invalid content and deletion keep the last good state; a re-created ConfigMap is followed again
            _set_configmap(plane, "watcher", {"model_update_interval": "often"})
            _wait("the invalid content reported", lambda: (watcher.check(), watcher.last_error)[1], 30)
            assert "often" in (watcher.last_error or "") and watcher.current.model_version == "v1.3.0"
            plane.kubectl("delete", "configmap", "ai-model-config", "-n", "watcher")
            _wait("the deletion reported", lambda: (watcher.check(), watcher.last_error)[1] and "deleted" in str(
                watcher.last_error), 30)
            assert watcher.current.model_version == "v1.3.0"
            plane.apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ai-model-config"},
                          "data": {"model_path": str(v2), "model_version": "v1.4.0"}}], "watcher")
            assert sees("v1.4.0")
        finally:
            watcher.close()


@dataclass
class _Answers:
    """What one server answered, in order: (time, "old" | "new" | an error)."""

    seen: list[tuple[float, str]] = field(default_factory=list)


def _load(port: int, answers: _Answers, until: threading.Event, limit_s: float, old: list[float],
          new: list[float]) -> None:
    """Inference requests one after another on a keep-alive connection, until `until` or `limit_s` (bounded)."""
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]})
    deadline = time.monotonic() + limit_s
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while not until.is_set() and time.monotonic() < deadline:
        try:
            connection.request("POST", "/v2/models/ai-model/infer", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                answers.seen.append((time.monotonic(), f"HTTP {response.status}: {payload[:200]!r}"))
                continue
            data = json.loads(payload)["outputs"][0]["data"]
            kind = "old" if data == old else "new" if data == new else f"unexpected {data}"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            kind = f"{type(exc).__name__}: {exc}"
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        answers.seen.append((time.monotonic(), kind))
        time.sleep(0.005)
    connection.close()


def test_servers_watching_one_configmap_serve_its_update_within_2_s_without_a_failed_request(
        plane: ControlPlane, tmp_path: Path) -> None:
    v1, v2 = tmp_path / "models" / "v1.0.0" / "ai-model.wasm", tmp_path / "models" / "v1.1.0" / "ai-model.wasm"
    _scale_model(v1, 1.0)
    _scale_model(v2, 2.0)
    _watch_namespace(plane, "serving", v1)
    kubeconfig = plane.service_account_kubeconfig("serving", "ai-inference-service", tmp_path / "sa.kubeconfig")
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_PATH", "WASINFER_DESIRED_STATE")}
    env.update(KUBECONFIG=str(kubeconfig), COLUMNS="200")

    def serve(index: int, source: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "wasinfer.cli.main", "serve", "--desired-state", source, "--host", "127.0.0.1",
             "--http-port", "0", "--grpc-port", "-1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=dict(env, WASINFER_HOME=str(tmp_path / f"home{index}")))

    # the Role allows this one ConfigMap and nothing else: another is refused at start, with the reason
    refused = serve(9, "k8s://serving/another-config")
    assert refused.wait(timeout=120) == 2
    assert refused.stdout is not None and "403" in refused.stdout.read()

    servers = [serve(index, "k8s://serving/ai-model-config") for index in range(3)]
    stop_load, threads = threading.Event(), []
    try:
        ports = []
        for server in servers:
            seen = "".join(read_until(output_lines(server), "Press Ctrl+C", 120))
            match = re.search(r"REST  http://127\.0\.0\.1:(\d+)/v2", seen)
            assert match and "serving v1.0.0" in seen, seen
            ports.append(int(match[1]))
        answers = [_Answers() for _ in servers]
        threads = [threading.Thread(target=_load, args=(port, answer, stop_load, 120.0, [1.0] * 4, [2.0] * 4),
                                    daemon=True) for port, answer in zip(ports, answers, strict=True)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # load on the old version first
        updated = time.monotonic()
        _set_configmap(plane, "serving", {"model_path": str(v2), "model_version": "v1.1.0"})
        _wait("every server answering with v1.1.0", lambda: all(
            any(kind == "new" for _, kind in list(a.seen)) for a in answers), 30)
        time.sleep(1.0)  # and load on the new one after
    finally:
        stop_load.set()
        for thread in threads:
            thread.join(15)
        for server in servers:
            stop(server, 45)
    for index, answer in enumerate(answers):
        first = next((t for t, kind in answer.seen if kind == "new"), None)
        print(f"server {index}: {len(answer.seen)} requests, v1.1.0 served "
              f"{'never' if first is None else f'{first - updated:.3f} s'} after the update")
        kinds = [kind for _, kind in answer.seen]
        failed = [kind for kind in kinds if kind not in ("old", "new")]
        assert not failed, f"server {index}: {len(failed)} failed requests, e.g. {failed[:3]}"
        first_new = next(t for t, kind in answer.seen if kind == "new")
        assert first_new - updated <= 2.0, f"server {index} served v1.1.0 {first_new - updated:.2f} s after the update"
        assert "old" not in kinds[kinds.index("new"):], f"server {index} went back to v1.0.0"
        assert kinds.count("old") > 0 and kinds.count("new") > 0
