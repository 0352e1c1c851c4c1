"""The values of `wasinfer deploy render` and of the Helm chart: defaults, files, and their checks.

One set of names for both: deploy/helm/wasinfer/values.yaml holds the same defaults as `DEFAULTS`
(a test keeps them equal), so a values file works unchanged with `wasinfer deploy render --values`
and with `helm install -f`. Unknown keys are refused rather than ignored: a misspelt `replica`
would otherwise deploy the default silently, which on 50 edge nodes is an expensive typo.

Some values are Kubernetes objects passed through as they are (resources, probes, the model
volume's source, node selectors...): any key goes there, and their content is Kubernetes' to check
(the tests validate the rendered objects). They merge as Helm merges values, so both tools give
the same objects: mappings key by key, lists and scalars replaced whole, and null removes a key.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

Values = dict[str, Any]


class ValuesError(ValueError):
    """A values file is unreadable, has a key we do not know, or a value of the wrong type."""


# The seed's figures: runtimeClassName wasmedge, 50 replicas, requests 500m/512Mi, limits 2000m/2Gi,
# MODEL_PATH /models/ai-model.wasm, and the ConfigMap ai-model-config (model_version v1.0.0,
# model_update_interval 5m, cache_enabled true); the HPA's targets are its CPU 60% / memory 70%.
DEFAULTS: Values = {
    "name": "ai-inference-service",
    "instance": "wasinfer",
    "runtimeClass": {"create": True, "name": "wasmedge", "handler": "wasmedge", "nodeSelector": {}},
    "image": {"repository": "registry.example.com/wasinfer-server", "tag": "", "digest": "",
              "pullPolicy": "IfNotPresent"},
    "imagePullSecrets": [],
    "replicas": 50,
    "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "2000m", "memory": "2Gi"}},
    "model": {"path": "/models/ai-model.wasm", "version": "v1.0.0", "updateInterval": "5m", "cacheEnabled": True},
    "modelVolume": {"mountPath": "/models", "claimName": "ai-models", "source": {}},
    "config": {"name": "ai-model-config", "mountPath": "/etc/wasinfer/desired", "watch": False},
    "server": {"httpPort": 8000, "grpcPort": 8001, "logFormat": "json", "extraArgs": []},
    "podAnnotations": {},
    "podLabels": {},
    "nodeSelector": {},
    "tolerations": [],
    "affinity": {},
    # the preStop sleep (5), then the server's default drain (--shutdown-grace-s: the 30 s deadline + 5), + 5
    "terminationGracePeriodSeconds": 45,
    "preStopSleepSeconds": 5,
    "probes": {
        "startup": {"httpGet": {"path": "/v2/health/live", "port": "http"}, "periodSeconds": 2,
                    "failureThreshold": 30},
        "liveness": {"httpGet": {"path": "/v2/health/live", "port": "http"}, "periodSeconds": 10,
                     "failureThreshold": 3},
        "readiness": {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5,
                      "failureThreshold": 3},
    },
    "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                           "seccompProfile": {"type": "RuntimeDefault"}},
    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]}},
    "service": {"type": "ClusterIP"},
    "autoscaling": {"enabled": True, "minReplicas": 50, "maxReplicas": 200, "targetCPUUtilizationPercentage": 60,
                    "targetMemoryUtilizationPercentage": 70},
    "podDisruptionBudget": {"enabled": True, "maxUnavailable": "10%"},
    "monitor": {"enabled": False, "kind": "ServiceMonitor", "interval": "15s", "labels": {}},
    "dashboard": {"enabled": True, "labels": {"grafana_dashboard": "1"}},
    "prometheusRule": {"enabled": False, "labels": {}},
    "batch": {
        "enabled": False,
        "name": "ai-model-batch",
        "image": {"repository": "registry.example.com/ai-model", "tag": "v1.0.0", "digest": "",
                  "pullPolicy": "IfNotPresent"},
        "args": [],
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "2000m", "memory": "1Gi"}},
        "backoffLimit": 0,
        "activeDeadlineSeconds": 3600,
        "ttlSecondsAfterFinished": 86400,
        "nodeSelector": {},
        "tolerations": [],
    },
}

# Values that are Kubernetes objects (or free-form maps) taken as they are, replaced whole.
OPAQUE = frozenset({
    "runtimeClass.nodeSelector", "imagePullSecrets", "resources", "modelVolume.source", "server.extraArgs",
    "podAnnotations", "podLabels", "nodeSelector", "tolerations", "affinity", "probes.startup", "probes.liveness",
    "probes.readiness", "podSecurityContext", "securityContext", "monitor.labels", "dashboard.labels",
    "prometheusRule.labels", "batch.args", "batch.resources", "batch.nodeSelector", "batch.tolerations",
})
INT_OR_STRING = frozenset({"podDisruptionBudget.maxUnavailable"})  # Kubernetes' IntOrString: 1 or "10%"
MONITOR_KINDS = ("ServiceMonitor", "PodMonitor")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")


def defaults() -> Values:
    return copy.deepcopy(DEFAULTS)


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping", type(None): "null"}.get(type(value), type(value).__name__)


def _coalesce(base: Any, override: Any) -> Any:
    """Helm's merge of a value over its default: mappings key by key, a null removes a key."""
    if not (isinstance(base, dict) and isinstance(override, Mapping)):
        return copy.deepcopy(override)
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _coalesce(merged.get(key), value)
    return merged


def merge(base: Values, override: Mapping[str, Any], prefix: str = "") -> Values:
    """`override` laid over `base`, refusing keys `base` lacks and values of another type."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        path = f"{prefix}{key}"
        if key not in base:
            close = difflib.get_close_matches(str(key), list(base), n=1)
            hint = f"did you mean '{prefix}{close[0]}'? " if close else ""
            known = ", ".join(sorted(base))
            raise ValuesError(f"unknown value {path!r} ({hint}known{' under ' + prefix[:-1] if prefix else ''}: "
                              f"{known})")
        default = base[key]
        if path in OPAQUE:
            if value is not None and not isinstance(value, type(default)):
                raise ValuesError(f"{path}: expected {_type_name(default)}, got {_type_name(value)}")
            merged[key] = type(default)() if value is None else _coalesce(default, value)
        elif value is None:
            raise ValuesError(f"{path}: expected {_type_name(default)}, got null")
        elif isinstance(default, dict):
            if not isinstance(value, Mapping):
                raise ValuesError(f"{path}: expected a mapping, got {_type_name(value)}")
            merged[key] = merge(default, value, f"{path}.")
        elif isinstance(default, bool) or isinstance(value, bool):
            if not (isinstance(default, bool) and isinstance(value, bool)):
                raise ValuesError(f"{path}: expected {_type_name(default)}, got {_type_name(value)}")
            merged[key] = value
        elif (isinstance(default, int) and isinstance(value, int)) or (isinstance(default, str) and isinstance(
                value, str)) or (path in INT_OR_STRING and isinstance(value, int)):
            merged[key] = value
        else:
            raise ValuesError(f"{path}: expected {_type_name(default)}, got {_type_name(value)}")
    return merged


def check(values: Values) -> None:
    """What the types alone cannot say; Kubernetes would refuse these later, with less context."""
    if values["monitor"]["kind"] not in MONITOR_KINDS:
        raise ValuesError(f"monitor.kind: {values['monitor']['kind']!r} is not one of {', '.join(MONITOR_KINDS)}")
    if values["service"]["type"] not in SERVICE_TYPES:
        raise ValuesError(f"service.type: {values['service']['type']!r} is not one of {', '.join(SERVICE_TYPES)}")
    for key in ("name", "instance", "runtimeClass.name", "config.name", "batch.name"):
        head, _, tail = key.partition(".")
        text = values[head][tail] if tail else values[head]
        if not text:
            raise ValuesError(f"{key} must not be empty")
    for image in ("image", "batch.image"):
        head, _, tail = image.partition(".")
        spec = values[head][tail] if tail else values[head]
        if not spec["repository"]:
            raise ValuesError(f"{image}.repository must not be empty")
        if spec["digest"] and not spec["digest"].startswith("sha256:"):
            raise ValuesError(f"{image}.digest: expected sha256:<hex>, got {spec['digest']!r}")
    if values["replicas"] < 0 or values["terminationGracePeriodSeconds"] < 0 or values["preStopSleepSeconds"] < 0:
        raise ValuesError("replicas, terminationGracePeriodSeconds and preStopSleepSeconds must not be negative")
    if values["preStopSleepSeconds"] and values["preStopSleepSeconds"] >= values["terminationGracePeriodSeconds"]:
        raise ValuesError("preStopSleepSeconds must be shorter than terminationGracePeriodSeconds, "
                          "or the server is killed before it drains")
    scaling = values["autoscaling"]
    if scaling["enabled"] and not 1 <= scaling["minReplicas"] <= scaling["maxReplicas"]:
        raise ValuesError("autoscaling: need 1 <= minReplicas <= maxReplicas")
    if scaling["enabled"] and not (scaling["targetCPUUtilizationPercentage"]
                                   or scaling["targetMemoryUtilizationPercentage"]):
        raise ValuesError("autoscaling: give targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage, "
                          "or set enabled: false")
    # Keys the chart sets itself: a user's copy would be a duplicate YAML key in the chart's output.
    for key in ("podLabels", "monitor.labels", "dashboard.labels", "prometheusRule.labels"):
        head, _, tail = key.partition(".")
        taken = [k for k in (values[head][tail] if tail else values[head]) if k.startswith("app.kubernetes.io/")]
        if taken:
            raise ValuesError(f"{key}: {taken} are set by the chart (the recommended app.kubernetes.io/* labels)")
    taken = [k for k in values["podAnnotations"] if k in ("prometheus.io/scrape", "prometheus.io/port",
                                                           "prometheus.io/path")]
    if taken:
        raise ValuesError(f"podAnnotations: {taken} are set by the chart (from server.httpPort)")
    for name in ("imagePullSecrets",):
        if not all(isinstance(item, str) and item for item in values[name]):
            raise ValuesError(f"{name}: expected a list of Secret names (the Secrets themselves stay out of "
                              "the values: create them with kubectl)")


def read_file(path: Path) -> Mapping[str, Any]:
    """A YAML or JSON values file (JSON is told by the .json suffix; an empty file is no values)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValuesError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        document = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValuesError(f"{path}: not valid {kind}: {exc}") from None
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise ValuesError(f"{path}: expected a mapping of values at the top, got {_type_name(document)}")
    return document


def load(paths: list[Path] | None = None, overrides: Mapping[str, Any] | None = None) -> Values:
    """The defaults with each file laid over them in order (as `helm -f a -f b`), then `overrides`."""
    values = defaults()
    for path in paths or []:
        try:
            values = merge(values, read_file(path))
        except ValuesError as exc:
            raise ValuesError(f"{path}: {exc}" if not str(exc).startswith(str(path)) else str(exc)) from None
    if overrides:
        values = merge(values, overrides)
    check(values)
    return values


def _set_value(text: str) -> Any:
    """Helm's --set typing: true/false, null, base-10 integers; anything else is a string (1.2 and 010 too)."""
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    return text


def parse_set(assignments: list[str]) -> Values:
    """`--set a.b=c` as Helm reads it, for scalars (dotted keys; no list indexes)."""
    result: Values = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key or "" in key.split("."):
            raise ValuesError(f"--set {assignment!r}: expected KEY=VALUE (KEY dotted, as a.b.c)")
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValuesError(f"--set {assignment!r}: {part} is set twice, as a value and as a mapping")
            node = child
        node[parts[-1]] = _set_value(text)
    return result


def json_schema() -> dict[str, Any]:
    """The chart's values.schema.json, so `helm install` refuses unknown keys as `deploy render` does."""
    return {"$schema": "https://json-schema.org/draft-07/schema#", "title": "wasinfer chart values",
            **_schema_of(DEFAULTS, "")}


def _schema_of(value: Any, path: str) -> dict[str, Any]:
    if path in INT_OR_STRING:
        return {"type": ["integer", "string"]}
    if path == "monitor.kind":
        return {"type": "string", "enum": list(MONITOR_KINDS)}
    if path == "service.type":
        return {"type": "string", "enum": list(SERVICE_TYPES)}
    if path in OPAQUE:
        return {"type": "array"} if isinstance(value, list) else {"type": "object"}
    if isinstance(value, dict):
        return {"type": "object", "additionalProperties": False,
                "properties": {key: _schema_of(item, f"{path}.{key}" if path else key) for key, item in value.items()}}
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    return {"type": "string"}
