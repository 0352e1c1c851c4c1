"""The Helm chart deploy/helm/wasinfer renders the same objects as `wasinfer deploy render`.

Two renderers of the templates: tests/deploy/gotemplate.py (a small Go-template subset, always
there) and the real `helm template` when a helm binary is on PATH or in $WASINFER_HELM (skipped
otherwise, with the reason). Both are compared with deploy render's objects as parsed data, for
several value sets and Kubernetes versions (.Capabilities.KubeVersion against `--kube-version`: each side
of every version boundary the objects have), and the chart's values.yaml / values.schema.json / appVersion are held to
wasinfer.deploy.values and wasinfer.__version__.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.gotemplate import render_chart
from wasinfer import __version__
from wasinfer.deploy.render import default_extras, parse_kube_version, render
from wasinfer.deploy.values import DEFAULTS, json_schema, load

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "wasinfer"
RELEASE = "edge"
# 1.20: v2beta2 HPA, v1beta1 PDB; 1.21: policy/v1; 1.23: autoscaling/v2; 1.29 vs 1.30: the preStop sleep action.
KUBE_VERSIONS = ("v1.20.2", "v1.21.0", "v1.23.0", "v1.29.3-k3s1", "v1.30.0")

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "everything": {
        "batch": {"enabled": True, "args": ["--verbose"], "nodeSelector": {"edge": "true"},
                  "image": {"digest": "sha256:" + "d" * 64}},
        "monitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True, "labels": {"role": "alert-rules"}},
        "imagePullSecrets": ["edge-registry", "mirror"],
        "nodeSelector": {"kubernetes.io/arch": "arm64"},
        "tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "wasm", "operator": "In", "values": ["wasmedge"]}]}]}}},
        "runtimeClass": {"nodeSelector": {"wasm.runtime/wasmedge": "true"}},
        "server": {"extraArgs": ["--canary-percent", "10"], "logFormat": "text"},
        "podAnnotations": {"example.com/team": "ml"}, "podLabels": {"tier": "edge"},
        "image": {"tag": "0.2.0", "pullPolicy": "Always"},
        "model": {"cacheEnabled": False, "version": "stable"},
        "podDisruptionBudget": {"maxUnavailable": 2},
        "config": {"watch": True},
    },
    "elsewhere": {
        "runtimeClass": {"create": False, "handler": "crun"},
        "monitor": {"enabled": True, "kind": "PodMonitor"},
        "dashboard": {"enabled": False},
        "autoscaling": {"enabled": False, "targetMemoryUtilizationPercentage": 0},
        "podDisruptionBudget": {"enabled": False},
        "modelVolume": {"source": {"hostPath": {"path": "/var/lib/wasinfer/models", "type": "Directory"}}},
        "preStopSleepSeconds": 0, "probes": {"startup": None}, "service": {"type": "NodePort"},
        "resources": {"limits": None},
    },
}


def _expected(values: dict[str, Any], kube_version: str = "v1.30.0") -> dict[tuple[str, str], Any]:
    return _keyed(render(load(overrides={**values, "instance": RELEASE}), default_extras(), managed_by="Helm",
                         kube=parse_kube_version(kube_version)))


def _keyed(objects: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    keyed = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert len(keyed) == len(objects), "two objects of the same kind and name"
    return keyed


def _chart_values(values: dict[str, Any]) -> dict[str, Any]:
    """What Helm hands the templates: the chart's values.yaml with the overrides coalesced in."""
    return load([CHART / "values.yaml"], {**values, "instance": RELEASE})


def test_values_yaml_holds_the_same_defaults_as_deploy_render() -> None:
    assert yaml.safe_load((CHART / "values.yaml").read_text()) == DEFAULTS


def test_values_schema_is_generated_from_the_defaults() -> None:
    assert json.loads((CHART / "values.schema.json").read_text()) == json_schema(), (
        "regenerate: python -c 'import json; from wasinfer.deploy.values import json_schema; "
        "print(json.dumps(json_schema(), indent=2))' > deploy/helm/wasinfer/values.schema.json")


def test_chart_app_version_is_the_wasinfer_version() -> None:
    assert str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]) == __version__


def test_monitoring_files_are_links_to_the_one_copy() -> None:
    for name, target in (("wasinfer-dashboard.json", ROOT / "deploy" / "grafana" / "wasinfer-dashboard.json"),
                         ("wasinfer-rules.yaml", ROOT / "deploy" / "prometheus" / "wasinfer-rules.yaml")):
        link = CHART / "files" / name
        assert link.is_symlink() and not Path(os.readlink(link)).is_absolute()
        assert link.resolve() == target.resolve()


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_the_templates_render_the_same_objects(name: str, kube_version: str) -> None:
    rendered = _keyed(render_chart(CHART, _chart_values(VALUE_SETS[name]), release=RELEASE,
                                   kube_version=kube_version))
    assert rendered == _expected(VALUE_SETS[name], kube_version)


def test_the_kube_versions_render_differently() -> None:
    """The versions above do reach both sides of each choice (else the equality above proves little)."""
    seen = {}
    for kube_version in KUBE_VERSIONS:
        objects = _expected({}, kube_version)
        [container] = objects[("Deployment", "ai-inference-service")]["spec"]["template"]["spec"]["containers"]
        seen[kube_version] = (objects[("HorizontalPodAutoscaler", "ai-inference-service")]["apiVersion"],
                              objects[("PodDisruptionBudget", "ai-inference-service")]["apiVersion"],
                              "lifecycle" in container, "--drain-delay-s" in container["args"])
    assert seen == {"v1.20.2": ("autoscaling/v2beta2", "policy/v1beta1", False, True),
                    "v1.21.0": ("autoscaling/v2beta2", "policy/v1", False, True),
                    "v1.23.0": ("autoscaling/v2", "policy/v1", False, True),
                    "v1.29.3-k3s1": ("autoscaling/v2", "policy/v1", False, True),
                    "v1.30.0": ("autoscaling/v2", "policy/v1", True, False)}


def test_the_subset_renderer_fails_loudly_outside_its_subset(tmp_path: Path) -> None:
    from tests.deploy.gotemplate import TemplateError

    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: t\nversion: 0.1.0\n")
    (chart / "templates" / "x.yaml").write_text("a: {{ .Values.a | upper }}\n")
    with pytest.raises(TemplateError, match="upper"):
        render_chart(chart, {"a": "b"})


# --- the real helm -----------------------------------------------------------------------------------

def _helm() -> str:
    helm = os.environ.get("WASINFER_HELM") or shutil.which("helm")
    if not helm or not Path(helm).is_file():
        pytest.skip("no helm binary: put one on PATH or name it in $WASINFER_HELM (docs/deploy.md, Kubernetes)")
    return helm


def _helm_template(helm: str, values: dict[str, Any], tmp_path: Path, kube_version: str = "v1.30.0"
                   ) -> subprocess.CompletedProcess[str]:
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps(values))
    env = dict(os.environ, HELM_CACHE_HOME=str(tmp_path / "cache"), HELM_CONFIG_HOME=str(tmp_path / "config"),
               HELM_DATA_HOME=str(tmp_path / "data"))
    return subprocess.run([helm, "template", RELEASE, str(CHART), "-f", str(values_file),
                           "--kube-version", kube_version],
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_template_renders_the_same_objects(name: str, kube_version: str, tmp_path: Path) -> None:
    result = _helm_template(_helm(), {**VALUE_SETS[name], "instance": RELEASE}, tmp_path, kube_version)
    assert result.returncode == 0, result.stderr
    objects = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert _keyed(objects) == _expected(VALUE_SETS[name], kube_version)


def test_helm_refuses_unknown_values_and_lints_clean(tmp_path: Path) -> None:
    helm = _helm()
    result = _helm_template(helm, {"replica": 3}, tmp_path)
    assert result.returncode != 0 and "replica" in result.stderr
    lint = subprocess.run([helm, "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, HELM_CACHE_HOME=str(tmp_path / "cache"),
                                   HELM_CONFIG_HOME=str(tmp_path / "config")))
    assert lint.returncode == 0, lint.stdout + lint.stderr
