"""`wasinfer deploy render`: the seed's objects, valid for Kubernetes, and a server that runs as rendered.

Core kinds are validated (strict: unknown fields are errors) against the Kubernetes schemas that
PyPI's kubernetes-validate ships; the Prometheus Operator kinds against minimal hand-written
schemas (crd_schemas.py says why), with jsonschema. No network either way.
The last test starts `wasinfer serve` exactly as the Deployment's container would (its command,
args and env; only the host, ports and paths moved to this machine) on a ConfigMap laid out as the
kubelet mounts it, probes it on the rendered probe paths and stops it with SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import numpy as np
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from tests.deploy.crd_schemas import SCHEMAS
from tests.processes import output_lines, read_until
from tests.serving.test_desired import mount
from wasinfer import __version__
from wasinfer.cli.main import build_parser, main
from wasinfer.deploy.render import Extras, KubeVersionError, default_extras, parse_kube_version, render, to_yaml
from wasinfer.deploy.values import DEFAULTS, ValuesError, load, merge, parse_set
from wasinfer.serving.desired import ConfigMapRef, DesiredState, DesiredStateWatcher, desired_source, load_desired

# Oldest supported (the preStop sleep action is on by default from 1.30) and newest the package ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
EVERYTHING = {"batch": {"enabled": True}, "monitor": {"enabled": True}, "prometheusRule": {"enabled": True},
              "imagePullSecrets": ["edge-registry"], "nodeSelector": {"kubernetes.io/arch": "arm64"},
              "tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}],
              "runtimeClass": {"nodeSelector": {"wasm.runtime/wasmedge": "true"}},
              "server": {"extraArgs": ["--canary-percent", "10"]}, "config": {"watch": True}}


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["kind"] if m["kind"] != "ConfigMap" else f"ConfigMap/{m['metadata']['name']}": m for m in manifests}


def pod_spec(manifests: list[dict[str, Any]], kind: str = "Deployment") -> dict[str, Any]:
    spec: dict[str, Any] = by_kind(manifests)[kind]["spec"]["template"]["spec"]
    return spec


def test_defaults_are_the_seeds_deployment_and_configmap() -> None:
    objects = by_kind(render(load()))
    assert set(objects) == {"RuntimeClass", "ConfigMap/ai-model-config", "Service", "Deployment",
                            "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    deployment = objects["Deployment"]
    assert deployment["metadata"]["name"] == "ai-inference-service" and deployment["spec"]["replicas"] == 50
    pod = deployment["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "wasmedge" == objects["RuntimeClass"]["metadata"]["name"]
    assert objects["RuntimeClass"]["handler"] == "wasmedge"
    [container] = pod["containers"]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"},
                                      "limits": {"cpu": "2000m", "memory": "2Gi"}}
    assert {"name": "MODEL_PATH", "value": "/models/ai-model.wasm"} in container["env"]
    assert container["image"] == f"registry.example.com/wasinfer-server:{__version__}"
    assert objects["ConfigMap/ai-model-config"]["data"] == {
        "model_path": "/models/ai-model.wasm", "model_version": "v1.0.0", "model_update_interval": "5m",
        "cache_enabled": "true"}
    # the seed's CPU 60% / memory 70%, from the seed's 50 replicas up
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert hpa["minReplicas"] == 50 and [m["resource"]["target"]["averageUtilization"] for m in hpa["metrics"]] == [
        60, 70]


def test_the_recommended_labels_on_every_object_and_selectors_that_match() -> None:
    manifests = render(load(overrides=EVERYTHING), default_extras())
    for manifest in manifests:
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "wasinfer" and labels["app.kubernetes.io/part-of"] == "wasinfer"
        assert labels["app.kubernetes.io/version"] == __version__ and labels["app.kubernetes.io/instance"] == "wasinfer"
        assert labels["app.kubernetes.io/managed-by"] == "wasinfer" and labels["app.kubernetes.io/component"]
    objects = by_kind(manifests)
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for selector in (objects["Deployment"]["spec"]["selector"]["matchLabels"], objects["Service"]["spec"]["selector"],
                     objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
                     objects["ServiceMonitor"]["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= pod_labels.items()
    # the batch Job's pods are not the server's: no Service or PDB selects them
    job_labels = objects["Job"]["spec"]["template"]["metadata"]["labels"]
    assert not objects["Service"]["spec"]["selector"].items() <= job_labels.items()


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_core_object_validates_against_the_kubernetes_schemas(version: str) -> None:
    for overrides in ({}, EVERYTHING, {"modelVolume": {"source": {"hostPath": {"path": "/var/lib/wasinfer/models",
                                                                               "type": "Directory"}}},
                                       "image": {"digest": "sha256:" + "a" * 64}, "preStopSleepSeconds": 0,
                                       "podDisruptionBudget": {"maxUnavailable": 1}, "service": {"type": "NodePort"}}):
        manifests = render(load(overrides=overrides), default_extras())
        core = [m for m in manifests if not m["apiVersion"].startswith("monitoring.coreos.com/")]
        assert len(core) >= 6
        for manifest in core:
            kubernetes_validate.validate(manifest, version, strict=True)  # raises on any error


def test_everything_rendered_is_admitted_by_the_gatekeeper_constraints() -> None:
    gatekeeper = pytest.importorskip("wasinfer.deploy.gatekeeper", reason="wasinfer.deploy.gatekeeper is not there")
    manifests = render(load(overrides=EVERYTHING), default_extras())
    assert {"Deployment", "Job"} <= {m["kind"] for m in manifests}
    assert gatekeeper.audit(manifests, namespace_labels={"wasinfer.io/inference": "enabled"}) == []


def test_an_older_cluster_gets_the_api_versions_it_serves_and_the_servers_own_drain() -> None:
    """1.25 is the oldest the schema package ships: no preStop sleep action there (from 1.30), so the server
    drains itself for the same seconds; 1.20 (checked by a real API server in tests/deploy/test_k8s_apiserver.py)
    gets the beta HPA and PDB."""
    for overrides in ({}, EVERYTHING):
        old = render(load(overrides=overrides), default_extras(), kube=parse_kube_version("v1.25.16"))
        [container] = pod_spec(old)["containers"]
        assert "lifecycle" not in container
        args = build_parser().parse_args(container["command"][1:] + container["args"])
        assert args.drain_delay_s == DEFAULTS["preStopSleepSeconds"] == 5
        for manifest in (m for m in old if not m["apiVersion"].startswith("monitoring.coreos.com/")):
            kubernetes_validate.validate(manifest, "1.25.0", strict=True)
    objects = by_kind(render(load(), kube=parse_kube_version("1.20")))
    assert objects["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2beta2"
    assert objects["PodDisruptionBudget"]["apiVersion"] == "policy/v1beta1"
    # no sleep asked for, no drain added
    [container] = pod_spec(render(load(overrides={"preStopSleepSeconds": 0}), kube=(1, 20)))["containers"]
    assert "--drain-delay-s" not in container["args"] and "lifecycle" not in container


def test_config_watch_reads_the_configmap_through_the_api_with_a_role_for_it_alone() -> None:
    objects = by_kind(render(load(overrides={"config": {"watch": True}})))
    [container] = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["command"][1:] + container["args"])
    # the kubelet expands $(POD_NAMESPACE) from the env the container declares
    [namespace] = [e for e in container["env"] if e["name"] == "POD_NAMESPACE"]
    assert namespace["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    expanded = args.desired_state.replace("$(POD_NAMESPACE)", "edge-site")
    assert desired_source(expanded) == ConfigMapRef("edge-site", "ai-model-config")
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == objects["ServiceAccount"]["metadata"]["name"]
    assert "model-config" not in {v["name"] for v in pod["volumes"]}  # no mounted copy to disagree with
    [rule] = objects["Role"]["rules"]
    assert rule == {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["ai-model-config"],
                    "verbs": ["get", "list", "watch"]}
    assert objects["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": "ai-inference-service"}]
    assert not {"ServiceAccount", "Role", "RoleBinding"} & set(by_kind(render(load())))


def test_kube_versions_are_read_as_kubectl_prints_them() -> None:
    assert [parse_kube_version(text) for text in ("1.20", "v1.20.2", "1.27+", "v1.29.3-k3s1", "v1.30.0+k3s1")] == [
        (1, 20), (1, 20), (1, 27), (1, 29), (1, 30)]
    for bad, match in (("banana", "not a Kubernetes version"), ("1", "not a Kubernetes version"),
                       ("1.19", "1.20 or later")):
        with pytest.raises(KubeVersionError, match=match):
            parse_kube_version(bad)


def test_the_validator_would_catch_a_mistake() -> None:
    deployment = by_kind(render(load()))["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # a typo'd field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def _check_custom_resource(manifest: dict[str, Any]) -> None:
    jsonschema.validate(manifest, SCHEMAS[manifest["kind"]])  # raises on any error


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PodMonitor"])
def test_monitors_validate_against_the_prometheus_operator_crds(kind: str) -> None:
    objects = by_kind(render(load(overrides={"monitor": {"enabled": True, "kind": kind,
                                                         "labels": {"release": "kube-prometheus-stack"}}})))
    monitor = objects[kind]
    _check_custom_resource(monitor)
    service_ports = {port["name"] for port in objects["Service"]["spec"]["ports"]}
    container_ports = {port["name"] for port in pod_spec(list(objects.values()))["containers"][0]["ports"]}
    [endpoint] = monitor["spec"]["endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"]
    assert endpoint["port"] in (service_ports if kind == "ServiceMonitor" else container_ports)
    assert endpoint["path"] == "/metrics" and monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_a_misspelt_monitor_field_is_caught() -> None:
    monitor = by_kind(render(load(overrides={"monitor": {"enabled": True}})))["ServiceMonitor"]
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        _check_custom_resource(monitor)


def test_prometheus_rule_and_dashboard_wrap_the_monitoring_files() -> None:
    extras = default_extras()
    if extras.rules is None or extras.dashboard is None:
        pytest.skip("deploy/prometheus/wasinfer-rules.yaml or deploy/grafana/wasinfer-dashboard.json is missing")
    objects = by_kind(render(load(overrides={"prometheusRule": {"enabled": True}}), extras))
    rule = objects["PrometheusRule"]
    assert rule["spec"] == yaml.safe_load(extras.rules) and rule["spec"]["groups"]
    _check_custom_resource(rule)
    dashboard = objects["ConfigMap/ai-inference-service-dashboard"]
    assert json.loads(dashboard["data"]["wasinfer-dashboard.json"]) == json.loads(extras.dashboard)
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    kubernetes_validate.validate(dashboard, KUBERNETES_VERSIONS[-1], strict=True)
    # no files, no objects: a wheel install has no deploy/ directory
    bare = by_kind(render(load(overrides={"prometheusRule": {"enabled": True}}), Extras()))
    assert "PrometheusRule" not in bare and "ConfigMap/ai-inference-service-dashboard" not in bare


def test_security_probes_and_graceful_termination() -> None:
    manifests = render(load(overrides={"imagePullSecrets": ["edge-registry"]}))
    pod = pod_spec(manifests)
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert pod["imagePullSecrets"] == [{"name": "edge-registry"}]  # by reference: no credentials in manifests
    assert "Secret" not in {m["kind"] for m in manifests}
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < sleep < pod["terminationGracePeriodSeconds"]
    # the read-only root filesystem leaves $WASINFER_HOME and /tmp writable, on emptyDirs
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    home = next(e["value"] for e in container["env"] if e["name"] == "WASINFER_HOME")
    assert volumes[mounts[home]] == {"name": "state", "emptyDir": {}} and "emptyDir" in volumes[mounts["/tmp"]]
    assert volumes[mounts["/etc/wasinfer/desired"]]["configMap"] == {"name": "ai-model-config"}
    annotations = by_kind(manifests)["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"]) == "8000"


def test_the_container_command_is_what_wasinfer_serve_accepts() -> None:
    [container] = pod_spec(render(load()))["containers"]
    assert container["command"] == ["wasinfer", "serve"]
    args = build_parser().parse_args(container["command"][1:] + container["args"])
    assert args.desired_state == "/etc/wasinfer/desired" and args.host == "0.0.0.0"
    assert (args.http_port, args.grpc_port) == (8000, 8001)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": args.http_port, "grpc": args.grpc_port}


def test_the_configmap_as_the_kubelet_mounts_it_is_what_the_watcher_reads(tmp_path: Path) -> None:
    objects = by_kind(render(load()))
    volume = tmp_path / "desired"
    mount(volume, objects["ConfigMap/ai-model-config"]["data"], "2026_12_01_00_00_00.1")
    [container] = pod_spec(list(objects.values()))["containers"]
    environ = {e["name"]: e["value"] for e in container["env"]}
    watcher = DesiredStateWatcher(volume, environ)
    assert watcher.current == DesiredState("/models/ai-model.wasm", "v1.0.0", 300.0, True)
    # `deploy render` again with a new version, and the kubelet's atomic ..data swap: applied live
    newer = by_kind(render(load(overrides={"model": {"version": "v1.1.0", "updateInterval": "30s"}})))
    mount(volume, newer["ConfigMap/ai-model-config"]["data"], "2026_12_01_00_05_00.2")
    assert watcher.check() and watcher.current == DesiredState("/models/ai-model.wasm", "v1.1.0", 30.0, True)
    assert load_desired(volume, environ) == watcher.current


def test_runtime_class_switches() -> None:
    crun = by_kind(render(load(overrides={"runtimeClass": {"handler": "crun"}})))
    assert crun["RuntimeClass"]["handler"] == "crun" and pod_spec(list(crun.values()))["runtimeClassName"] == "wasmedge"
    existing = by_kind(render(load(overrides={"runtimeClass": {"create": False, "name": "wasmedge"},
                                             "batch": {"enabled": True}})))
    assert "RuntimeClass" not in existing
    assert pod_spec(list(existing.values()))["runtimeClassName"] == "wasmedge"
    assert pod_spec(list(existing.values()), "Job")["runtimeClassName"] == "wasmedge"


def test_the_batch_job_runs_the_packaged_wasm_image() -> None:
    digest = "sha256:" + "b" * 64
    objects = by_kind(render(load(overrides={"batch": {"enabled": True, "image": {
        "repository": "registry.example.com/models/digits", "digest": digest}}})))
    job = objects["Job"]
    template = job["spec"]["template"]
    assert template["metadata"]["annotations"] == {"module.wasm.image/variant": "compat-smart"}
    pod = template["spec"]
    assert pod["runtimeClassName"] == "wasmedge" and pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    assert container["image"] == f"registry.example.com/models/digits@{digest}"
    assert "command" not in container  # the image's entrypoint is the module
    assert container["stdin"] is True and container["stdinOnce"] is True  # .npy in on stdin, once
    assert job["spec"]["backoffLimit"] == 0  # a failed batch is not silently rerun on the same input


def test_values_refuse_unknown_keys_and_wrong_types(tmp_path: Path) -> None:
    with pytest.raises(ValuesError, match=r"unknown value 'replica' \(did you mean 'replicas'\?"):
        load(overrides={"replica": 3})
    with pytest.raises(ValuesError, match=r"unknown value 'image.tags' \(did you mean 'image.tag'\?"):
        load(overrides={"image": {"tags": "1"}})
    with pytest.raises(ValuesError, match="replicas: expected an integer, got a string"):
        load(overrides={"replicas": "50"})
    with pytest.raises(ValuesError, match=r"monitor\.kind"):
        load(overrides={"monitor": {"kind": "Probe"}})
    with pytest.raises(ValuesError, match="digest"):
        load(overrides={"image": {"digest": "latest"}})
    with pytest.raises(ValuesError, match="Secret names"):
        load(overrides={"imagePullSecrets": [{"name": "x"}]})
    # keys the chart sets itself would be duplicate YAML keys in its output, so render refuses them too
    with pytest.raises(ValuesError, match=r"podAnnotations: \['prometheus.io/port'\] are set by the chart"):
        load(overrides={"podAnnotations": {"prometheus.io/port": "9000"}})
    with pytest.raises(ValuesError, match=r"podLabels: \['app.kubernetes.io/name'\] are set by the chart"):
        load(overrides={"podLabels": {"app.kubernetes.io/name": "x"}})
    with pytest.raises(ValuesError, match="targetCPUUtilizationPercentage or targetMemory"):
        load(overrides={"autoscaling": {"targetCPUUtilizationPercentage": 0, "targetMemoryUtilizationPercentage": 0}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("replicas: [1\n")
    with pytest.raises(ValuesError, match="not valid YAML"):
        load([bad])


def test_values_files_merge_as_helm_does(tmp_path: Path) -> None:
    first, second = tmp_path / "site.yaml", tmp_path / "pin.json"
    first.write_text("replicas: 3\nresources:\n  limits:\n    cpu: '1'\nmodelVolume:\n  source:\n"
                     "    hostPath: {path: /srv/models}\n")
    second.write_text(json.dumps({"image": {"digest": "sha256:" + "c" * 64}, "resources": {"requests": None}}))
    values = load([first, second], parse_set(["model.version=v2.0.0", "autoscaling.enabled=false",
                                              "image.tag=1.2", "autoscaling.maxReplicas=010"]))
    assert values["image"]["tag"] == "1.2" and values["autoscaling"]["maxReplicas"] == 10  # as Helm's --set
    assert values["replicas"] == 3 and values["model"]["version"] == "v2.0.0" and not values["autoscaling"]["enabled"]
    # maps merge key by key, null removes a key, lists and scalars are replaced (Helm's coalescing)
    assert values["resources"] == {"limits": {"cpu": "1", "memory": "2Gi"}}
    assert values["image"]["digest"].endswith("c" * 64)
    models = next(v for v in pod_spec(render(values))["volumes"] if v["name"] == "models")
    assert models == {"name": "models", "hostPath": {"path": "/srv/models"}}
    assert merge(DEFAULTS, {"tolerations": [{"key": "a"}]})["tolerations"] == [{"key": "a"}]


def test_cli_prints_multi_document_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "render", "--set", "batch.enabled=true"]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in documents][-1] == "Job" and "Deployment" in [d["kind"] for d in documents]
    assert documents == render(load(overrides={"batch": {"enabled": True}}), default_extras())


def test_cli_writes_one_file_per_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("replicas: 5\nmonitor:\n  enabled: true\n")
    out = tmp_path / "manifests"
    assert main(["deploy", "render", "--values", str(values), "--output", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "deployment-ai-inference-service.yaml" in names and "servicemonitor-ai-inference-service.yaml" in names
    assert "configmap-ai-model-config.yaml" in names and "runtimeclass-wasmedge.yaml" in names
    assert yaml.safe_load((out / "deployment-ai-inference-service.yaml").read_text())["spec"]["replicas"] == 5
    assert len(capsys.readouterr().out.splitlines()) == len(names)
    assert main(["deploy", "render", "--json", "--output", str(tmp_path / "json")]) == 0
    written = json.loads(capsys.readouterr().out)["files"]
    assert all(name.endswith(".json") for name in written)
    assert json.loads(Path(written[0]).read_text())["kind"] == "RuntimeClass"


def test_cli_bad_input_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("batch:\n  enable: true\n")
    assert main(["deploy", "render", "-f", str(values)]) == 2
    err = capsys.readouterr().err
    assert "unknown value 'batch.enable'" in err and "did you mean 'batch.enabled'" in err
    assert main(["deploy", "render", "-f", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read it" in capsys.readouterr().err
    assert main(["deploy", "render", "--set", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["deploy", "render", "--rules", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    assert main(["deploy", "render", "--kube-version", "1.16"]) == 2
    assert "1.20 or later" in capsys.readouterr().err


def test_cli_renders_for_the_kube_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "render", "--kube-version", "v1.20.2"]) == 0
    objects = by_kind(list(yaml.safe_load_all(capsys.readouterr().out)))
    assert objects["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2beta2"
    assert "--drain-delay-s" in objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]


def test_to_yaml_round_trips_multiline_strings() -> None:
    manifests = render(load(), Extras(dashboard='{\n  "title": "wasinfer — servers"\n}\n'))
    text = to_yaml(manifests)
    assert "wasinfer-dashboard.json: |" in text and list(yaml.safe_load_all(text)) == manifests


# --- the rendered container, run on this machine ---------------------------------------------------

def _scale_model_wasm(path: Path) -> None:
    from wasinfer.artifact import convert_onnx

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["y"])], "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.array([1, 2, 3, 4], np.float32), "scale")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(convert_onnx(model, max_batch=4, name="ai-model").wasm)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_rendered_container_serves_probes_metrics_and_drains_on_sigterm(tmp_path: Path) -> None:
    manifests = render(load())
    pod = pod_spec(manifests)
    [container] = pod["containers"]
    # The pod's paths, moved under tmp_path; loopback and OS-picked ports (appended flags win in argparse).
    model = tmp_path / "models" / "ai-model.wasm"
    _scale_model_wasm(model)
    volume = tmp_path / "desired"
    mount(volume, by_kind(manifests)["ConfigMap/ai-model-config"]["data"], "2026_12_01_00_00_00.1")
    env = {e["name"]: e["value"] for e in container["env"]}
    env.update(MODEL_PATH=str(model), WASINFER_HOME=str(tmp_path / "state"))
    args = [a if a != "/etc/wasinfer/desired" else str(volume) for a in container["args"]]
    command = [sys.executable, "-m", "wasinfer.cli.main", *container["command"][1:], *args,
               "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, COLUMNS="200", **env))
    try:
        seen = "".join(read_until(output_lines(process), "Press Ctrl+C", 90))
        match = re.search(r"REST  (http://127\.0\.0\.1:\d+)/v2", seen)
        assert match, seen
        assert "serving v1.0.0" in seen or "version v1.0.0" in seen, seen
        base = match[1]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert _get(base + container[probe]["httpGet"]["path"])[0] == 200, probe
        annotations = by_kind(manifests)["Deployment"]["spec"]["template"]["metadata"]["annotations"]
        status, body = _get(base + annotations["prometheus.io/path"])
        assert status == 200 and b"wasinfer_" in body
        request = urllib.request.Request(f"{base}/v2/models/ai-model/infer", data=json.dumps({"inputs": [
            {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]}).encode())
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["outputs"][0]["data"] == [1, 2, 3, 4]
        process.send_signal(signal.SIGTERM)
        # the kubelet's budget after the preStop sleep: the server must be gone by then
        budget = pod["terminationGracePeriodSeconds"] - container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert process.wait(timeout=budget) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
