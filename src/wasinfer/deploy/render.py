"""The Kubernetes objects of a wasinfer deployment on K3s, from values (values.py).

The Helm chart in deploy/helm/wasinfer renders the same objects from the same values (a test
renders both and compares them as data), so this module is the reference for what the chart
means, and `wasinfer deploy render` serves clusters that are managed without Helm (kubectl apply,
Flux/Argo plain manifests, air-gapped edge sites).

Why the objects look as they do:

- The server reads its model version from the mounted ConfigMap directory (`--desired-state`),
  which Kubernetes updates in place by swapping the `..data` symlink; the server polls it and
  swaps models without a restart, so no checksum annotation forces a rollout on a config change.
  The kubelet refreshes that volume only on its sync period (a minute or more), so `config.watch`
  has the server watch the ConfigMap through the API instead (`k8s://NAMESPACE/NAME`, the namespace
  from the downward API): a ServiceAccount whose Role may get, list and watch that one ConfigMap.
- The pod runs under the `wasmedge` RuntimeClass (the seed's runtimeClassName). crun with WasmEdge
  runs an ordinary image as an ordinary container, so the Python server image runs there too, and a
  Wasm image (the batch Job's) runs as Wasm.
- The root filesystem is read-only: $WASINFER_HOME (the fetched versions and the compiled-code
  cache) and /tmp are emptyDirs, so the cache survives container restarts within a pod.
- On SIGTERM the server stops listening and drains in-flight requests; the preStop sleep runs first
  so that endpoints controllers and kube-proxy stop sending traffic before the listener closes.
- The objects are rendered for one Kubernetes version (`--kube-version`, Helm's
  .Capabilities.KubeVersion in the chart), because an API server refuses what it does not serve:
  1.20-1.22 serve the HorizontalPodAutoscaler only as autoscaling/v2beta2, 1.20 the
  PodDisruptionBudget only as policy/v1beta1, and before 1.30 the preStop `sleep` action does not
  exist (alpha behind a gate in 1.29). There the server drains itself (`--drain-delay-s`, the same
  seconds: readiness answers 503 while it keeps serving), rather than a preStop `exec` of `sleep`,
  which would need a shell and a sleep binary in the server's image.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wasinfer.deploy.values import Values
from wasinfer.version import __version__

APP = "wasinfer"
MANAGED_BY = "wasinfer"  # the chart says "Helm" (.Release.Service)
STATE_DIR = "/var/lib/wasinfer"  # $WASINFER_HOME: fetched model versions and the compiled-code cache
DASHBOARD_KEY = "wasinfer-dashboard.json"
NAMESPACE_ENV = "POD_NAMESPACE"  # config.watch: the pod's namespace (downward API), for k8s://NAMESPACE/NAME
VARIANT_ANNOTATION = "module.wasm.image/variant"
VARIANT = "compat-smart"  # crun: Wasm only for a .wasm entrypoint; the image of `wasinfer package` carries it too
Manifest = dict[str, Any]
KubeVersion = tuple[int, int]  # (major, minor)

OLDEST_KUBE_VERSION: KubeVersion = (1, 20)  # RuntimeClass node.k8s.io/v1 and startupProbe are GA from 1.20
# The default: the oldest version that serves everything below in its newest form (the preStop sleep action).
CURRENT_KUBE_VERSION: KubeVersion = (1, 30)
HPA_V2_FROM: KubeVersion = (1, 23)  # autoscaling/v2 GA; v2beta2 is gone from 1.26
PDB_V1_FROM: KubeVersion = (1, 21)  # policy/v1 GA; v1beta1 is gone from 1.25
SLEEP_ACTION_FROM: KubeVersion = (1, 30)  # lifecycle.preStop.sleep on by default (PodLifecycleSleepAction beta)
_KUBE_VERSION = re.compile(r"v?(\d+)\.(\d+)\+?(?:\.\d+)?(?:[-+].*)?")


class KubeVersionError(ValueError):
    """--kube-version is not a version, or one older than the objects can be rendered for."""


def parse_kube_version(text: str) -> KubeVersion:
    """"1.20", "v1.20.2", "1.27+" (as EKS/GKE report their minor) or "v1.29.3-k3s1": the major and minor."""
    match = _KUBE_VERSION.fullmatch(text.strip())
    if match is None:
        raise KubeVersionError(f"--kube-version {text!r} is not a Kubernetes version (like 1.20 or v1.29.3)")
    version = (int(match[1]), int(match[2]))
    if version < OLDEST_KUBE_VERSION:
        raise KubeVersionError(f"--kube-version {text}: the objects need Kubernetes "
                               f"{'.'.join(map(str, OLDEST_KUBE_VERSION))} or later (RuntimeClass node.k8s.io/v1)")
    return version


@dataclass(frozen=True)
class Extras:
    """The files of the monitoring helpers, taken as they are (None: not there, not rendered)."""

    dashboard: str | None = None  # Grafana dashboard JSON
    rules: str | None = None  # Prometheus rule file (groups: ...)


def repository_deploy_dir() -> Path:
    """deploy/ of a source checkout (the package sits at src/wasinfer/deploy); absent in an installed wheel."""
    return Path(__file__).resolve().parents[3] / "deploy"


def default_extras(deploy_dir: Path | None = None) -> Extras:
    base = deploy_dir if deploy_dir is not None else repository_deploy_dir()
    dashboard, rules = base / "grafana" / "wasinfer-dashboard.json", base / "prometheus" / "wasinfer-rules.yaml"
    return Extras(dashboard.read_text() if dashboard.is_file() else None,
                  rules.read_text() if rules.is_file() else None)


def labels(values: Values, component: str, managed_by: str = MANAGED_BY) -> dict[str, str]:
    """The recommended app.kubernetes.io/* set."""
    return {**selector(values, component), "app.kubernetes.io/version": __version__,
            "app.kubernetes.io/part-of": APP, "app.kubernetes.io/managed-by": managed_by}


def selector(values: Values, component: str) -> dict[str, str]:
    """The labels that never change across upgrades (a Deployment's selector is immutable)."""
    return {"app.kubernetes.io/name": APP, "app.kubernetes.io/instance": values["instance"],
            "app.kubernetes.io/component": component}


def image_reference(image: Values) -> str:
    """repository@digest when a digest is given (what runs is then exactly what was tested), else :tag."""
    if image["digest"]:
        return f"{image['repository']}@{image['digest']}"
    return f"{image['repository']}:{image['tag'] or __version__}"


def _meta(name: str, values: Values, component: str, managed_by: str, extra: dict[str, str] | None = None
          ) -> Manifest:
    return {"name": name, "labels": {**labels(values, component, managed_by), **(extra or {})}}


def runtime_class(values: Values, managed_by: str) -> Manifest:
    spec = values["runtimeClass"]
    manifest: Manifest = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                          "metadata": _meta(spec["name"], values, "runtime", managed_by), "handler": spec["handler"]}
    if spec["nodeSelector"]:
        manifest["scheduling"] = {"nodeSelector": copy.deepcopy(spec["nodeSelector"])}
    return manifest


def config_map(values: Values, managed_by: str) -> Manifest:
    """The seed's ai-model-config, in the keys the server's desired-state watcher reads."""
    model = values["model"]
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(values["config"]["name"], values, "config", managed_by),
            "data": {"model_path": model["path"], "model_version": model["version"],
                     "model_update_interval": model["updateInterval"],
                     "cache_enabled": "true" if model["cacheEnabled"] else "false"}}


def desired_state_arg(values: Values) -> str:
    """The mounted ConfigMap's directory, or with config.watch the ConfigMap through the API (the kubelet
    expands $(POD_NAMESPACE) from the container's env)."""
    config = values["config"]
    return f"k8s://$({NAMESPACE_ENV})/{config['name']}" if config["watch"] else config["mountPath"]


def server_args(values: Values, kube: KubeVersion = CURRENT_KUBE_VERSION) -> list[str]:
    """The server's flags; where the cluster has no preStop sleep action, the server's own drain delay instead."""
    server = values["server"]
    drain = ["--drain-delay-s", str(values["preStopSleepSeconds"])] if (
        values["preStopSleepSeconds"] and kube < SLEEP_ACTION_FROM) else []
    return ["--host", "0.0.0.0", "--http-port", str(server["httpPort"]), "--grpc-port", str(server["grpcPort"]),
            "--desired-state", desired_state_arg(values), "--log-format", server["logFormat"],
            *drain, *server["extraArgs"]]


def _pull_secrets(values: Values) -> list[dict[str, str]]:
    return [{"name": name} for name in values["imagePullSecrets"]]


def _model_volume(values: Values) -> Manifest:
    spec = values["modelVolume"]
    source = copy.deepcopy(spec["source"]) or {"persistentVolumeClaim": {"claimName": spec["claimName"],
                                                                         "readOnly": True}}
    return {"name": "models", **source}


def deployment(values: Values, managed_by: str, kube: KubeVersion = CURRENT_KUBE_VERSION) -> Manifest:
    server = values["server"]
    container: Manifest = {
        "name": values["name"],
        "image": image_reference(values["image"]),
        "imagePullPolicy": values["image"]["pullPolicy"],
        "command": ["wasinfer", "serve"],
        "args": server_args(values, kube),
        "ports": [{"name": "http", "containerPort": server["httpPort"], "protocol": "TCP"},
                  {"name": "grpc", "containerPort": server["grpcPort"], "protocol": "TCP"}],
        "env": [{"name": "MODEL_PATH", "value": values["model"]["path"]},
                {"name": "WASINFER_HOME", "value": STATE_DIR}],
        "resources": copy.deepcopy(values["resources"]),
    }
    for probe in ("startup", "liveness", "readiness"):
        if values["probes"][probe]:
            container[f"{probe}Probe"] = copy.deepcopy(values["probes"][probe])
    if values["preStopSleepSeconds"] and kube >= SLEEP_ACTION_FROM:
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": values["preStopSleepSeconds"]}}}
    watch = values["config"]["watch"]
    if watch:
        container["env"].append({"name": NAMESPACE_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}})
    container["securityContext"] = copy.deepcopy(values["securityContext"])
    config_mount = [] if watch else [{"name": "model-config", "mountPath": values["config"]["mountPath"],
                                      "readOnly": True}]
    container["volumeMounts"] = [
        *config_mount,
        {"name": "models", "mountPath": values["modelVolume"]["mountPath"], "readOnly": True},
        {"name": "state", "mountPath": STATE_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    pod: Manifest = {"runtimeClassName": values["runtimeClass"]["name"]}
    if watch:
        pod["serviceAccountName"] = values["name"]
    if values["imagePullSecrets"]:
        pod["imagePullSecrets"] = _pull_secrets(values)
    pod["securityContext"] = copy.deepcopy(values["podSecurityContext"])
    pod["terminationGracePeriodSeconds"] = values["terminationGracePeriodSeconds"]
    for key in ("nodeSelector", "tolerations", "affinity"):
        if values[key]:
            pod[key] = copy.deepcopy(values[key])
    pod["containers"] = [container]
    config_volume = [] if watch else [{"name": "model-config", "configMap": {"name": values["config"]["name"]}}]
    pod["volumes"] = [*config_volume, _model_volume(values), {"name": "state", "emptyDir": {}},
                      {"name": "tmp", "emptyDir": {}}]
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(server["httpPort"]),
                   "prometheus.io/path": "/metrics", **values["podAnnotations"]}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(values["name"], values, "server", managed_by),
        "spec": {
            "replicas": values["replicas"],
            "selector": {"matchLabels": selector(values, "server")},
            # a new version only replaces a pod once its replacement is ready: no capacity dip
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {**labels(values, "server", managed_by), **values["podLabels"]},
                             "annotations": annotations},
                "spec": pod,
            },
        },
    }


def access(values: Values, managed_by: str) -> list[Manifest]:
    """config.watch: the servers' ServiceAccount, allowed to get, list and watch the one ConfigMap (nothing else)."""
    name, meta = values["name"], _meta(values["name"], values, "server", managed_by)
    return [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": copy.deepcopy(meta),
             "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [values["config"]["name"]],
                        "verbs": ["get", "list", "watch"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": copy.deepcopy(meta),
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
             "subjects": [{"kind": "ServiceAccount", "name": name}]}]


def service(values: Values, managed_by: str) -> Manifest:
    """http carries REST, the OpenAPI document and /metrics (one port); grpc the v2 gRPC service."""
    server = values["server"]
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(values["name"], values, "server", managed_by),
            "spec": {"type": values["service"]["type"], "selector": selector(values, "server"),
                     "ports": [{"name": "http", "port": server["httpPort"], "targetPort": "http", "protocol": "TCP",
                                "appProtocol": "http"},
                               {"name": "grpc", "port": server["grpcPort"], "targetPort": "grpc", "protocol": "TCP",
                                "appProtocol": "kubernetes.io/h2c"}]}}


def autoscaler(values: Values, managed_by: str, kube: KubeVersion = CURRENT_KUBE_VERSION) -> Manifest:
    """autoscaling/v2beta2 where v2 is not served yet: the same fields for Resource metrics."""
    scaling = values["autoscaling"]
    metrics = []
    for resource, key in (("cpu", "targetCPUUtilizationPercentage"), ("memory", "targetMemoryUtilizationPercentage")):
        if scaling[key]:
            metrics.append({"type": "Resource", "resource": {"name": resource, "target": {
                "type": "Utilization", "averageUtilization": scaling[key]}}})
    return {"apiVersion": "autoscaling/v2" if kube >= HPA_V2_FROM else "autoscaling/v2beta2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(values["name"], values, "server", managed_by),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": values["name"]},
                     "minReplicas": scaling["minReplicas"], "maxReplicas": scaling["maxReplicas"],
                     "metrics": metrics}}


def disruption_budget(values: Values, managed_by: str, kube: KubeVersion = CURRENT_KUBE_VERSION) -> Manifest:
    """policy/v1beta1 on 1.20: the same fields (an empty selector means no pods there, all pods in v1; ours
    is never empty)."""
    return {"apiVersion": "policy/v1" if kube >= PDB_V1_FROM else "policy/v1beta1", "kind": "PodDisruptionBudget",
            "metadata": _meta(values["name"], values, "server", managed_by),
            "spec": {"maxUnavailable": values["podDisruptionBudget"]["maxUnavailable"],
                     "selector": {"matchLabels": selector(values, "server")}}}


def monitor(values: Values, managed_by: str) -> Manifest:
    """Prometheus Operator's scrape of /metrics on the http port (ServiceMonitor or PodMonitor)."""
    spec = values["monitor"]
    endpoint = {"port": "http", "path": "/metrics", "interval": spec["interval"]}
    endpoints_key = "endpoints" if spec["kind"] == "ServiceMonitor" else "podMetricsEndpoints"
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": spec["kind"],
            "metadata": _meta(values["name"], values, "monitoring", managed_by, spec["labels"]),
            "spec": {"selector": {"matchLabels": selector(values, "server")}, endpoints_key: [endpoint]}}


def dashboard(values: Values, managed_by: str, text: str) -> Manifest:
    """A ConfigMap that Grafana's dashboard sidecar picks up by its label (grafana_dashboard: "1")."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(f"{values['name']}-dashboard", values, "monitoring", managed_by,
                              values["dashboard"]["labels"]),
            "data": {DASHBOARD_KEY: text}}


def prometheus_rule(values: Values, managed_by: str, text: str) -> Manifest:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": _meta(f"{values['name']}-rules", values, "monitoring", managed_by,
                              values["prometheusRule"]["labels"]),
            "spec": yaml.safe_load(text)}


def batch_job(values: Values, managed_by: str) -> Manifest:
    """The model's WASI command form as a Wasm container: crun hands /model.wasm to WasmEdge.

    The module reads its inputs (.npy) on stdin and writes its outputs on stdout (docs/abi.md).
    Kubernetes cannot redirect a file to a container's stdin, and crun's WasmEdge handler gives
    the module the container's own stdio, so the container keeps stdin open for one attach
    (`kubectl attach -i ... < inputs.npy`) and its outputs are its log.
    """
    batch = values["batch"]
    container: Manifest = {"name": "model", "image": image_reference(batch["image"]),
                           "imagePullPolicy": batch["image"]["pullPolicy"]}
    if batch["args"]:
        container["args"] = list(batch["args"])
    container.update({"stdin": True, "stdinOnce": True, "resources": copy.deepcopy(batch["resources"]),
                      "securityContext": copy.deepcopy(values["securityContext"])})
    pod: Manifest = {"runtimeClassName": values["runtimeClass"]["name"], "restartPolicy": "Never"}
    if values["imagePullSecrets"]:
        pod["imagePullSecrets"] = _pull_secrets(values)
    pod["securityContext"] = copy.deepcopy(values["podSecurityContext"])
    for key in ("nodeSelector", "tolerations"):
        if batch[key]:
            pod[key] = copy.deepcopy(batch[key])
    pod["containers"] = [container]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(batch["name"], values, "batch", managed_by),
            "spec": {"backoffLimit": batch["backoffLimit"], "activeDeadlineSeconds": batch["activeDeadlineSeconds"],
                     "ttlSecondsAfterFinished": batch["ttlSecondsAfterFinished"],
                     "template": {"metadata": {"labels": labels(values, "batch", managed_by),
                                               "annotations": {VARIANT_ANNOTATION: VARIANT}},
                                  "spec": pod}}}


def render(values: Values, extras: Extras | None = None, managed_by: str = MANAGED_BY,
           kube: KubeVersion = CURRENT_KUBE_VERSION) -> list[Manifest]:
    """Every object the values enable, in the order `kubectl apply` wants them (classes and config first),
    in the API versions and fields Kubernetes `kube` serves."""
    extras = extras if extras is not None else Extras()
    return list(_objects(values, extras, managed_by, kube))


def _objects(values: Values, extras: Extras, managed_by: str, kube: KubeVersion) -> Iterator[Manifest]:
    if values["runtimeClass"]["create"]:
        yield runtime_class(values, managed_by)
    yield config_map(values, managed_by)
    if values["config"]["watch"]:
        yield from access(values, managed_by)
    if values["dashboard"]["enabled"] and extras.dashboard is not None:
        yield dashboard(values, managed_by, extras.dashboard)
    yield service(values, managed_by)
    yield deployment(values, managed_by, kube)
    if values["autoscaling"]["enabled"]:
        yield autoscaler(values, managed_by, kube)
    if values["podDisruptionBudget"]["enabled"]:
        yield disruption_budget(values, managed_by, kube)
    if values["monitor"]["enabled"]:
        yield monitor(values, managed_by)
    if values["prometheusRule"]["enabled"] and extras.rules is not None:
        yield prometheus_rule(values, managed_by, extras.rules)
    if values["batch"]["enabled"]:
        yield batch_job(values, managed_by)


def file_name(manifest: Manifest) -> str:
    """One file per object: kind-name.yaml, e.g. deployment-ai-inference-service.yaml."""
    return f"{manifest['kind'].lower()}-{manifest['metadata']['name']}.yaml"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the dashboard JSON) as literal blocks, readable in a diff."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    if "\n" in text and not any(line != line.rstrip() for line in text.splitlines()):
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", text)


_Dumper.add_representer(str, _represent_str)


def to_yaml(manifests: list[Manifest]) -> str:
    """Multi-document YAML, keys in the order built (apiVersion, kind, metadata first, as people write them)."""
    return "".join("---\n" + yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                                        allow_unicode=True, width=120) for manifest in manifests)
