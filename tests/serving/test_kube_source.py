"""`--desired-state k8s://NAMESPACE/CONFIGMAP` without a cluster: what the argument may be, and what a server says
when it cannot read the ConfigMap (the watch itself runs against a real API server in tests/k8s)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wasinfer.serving.desired import ConfigMapRef, DesiredStateError, desired_source
from wasinfer.serving.kube_source import core_api, open_source


def test_k8s_references_and_paths() -> None:
    assert desired_source("k8s://edge-site/ai-model-config") == ConfigMapRef("edge-site", "ai-model-config")
    assert str(ConfigMapRef("edge-site", "ai-model-config")) == "k8s://edge-site/ai-model-config"
    assert desired_source("/etc/wasinfer/desired") == Path("/etc/wasinfer/desired")
    for bad in ("k8s://", "k8s://edge-site", "k8s://edge-site/", "k8s:///ai-model-config", "k8s://Edge/config",
                "k8s://edge/ai_model", "k8s://edge/a/b"):
        with pytest.raises(DesiredStateError, match="NAMESPACE/CONFIGMAP"):
            desired_source(bad)


def test_no_credentials_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DesiredStateError, match="no Kubernetes credentials"):
        core_api({"KUBECONFIG": str(tmp_path / "missing")})


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "users": [{"name": "u", "user": {}}]}))
    return path


def test_an_unreachable_api_server_is_named_at_start(tmp_path: Path) -> None:
    with pytest.raises(DesiredStateError, match="cannot reach the Kubernetes API server"):
        open_source(ConfigMapRef("edge", "ai-model-config"),
                    {"KUBECONFIG": str(_kubeconfig(tmp_path / "config", "http://127.0.0.1:1"))})


def test_serve_refuses_a_bad_reference_and_an_unreachable_cluster_with_exit_2(tmp_path: Path) -> None:
    env = dict(os.environ, WASINFER_HOME=str(tmp_path / "home"), COLUMNS="200",
               KUBECONFIG=str(_kubeconfig(tmp_path / "config", "http://127.0.0.1:1")))
    for source, message in (("k8s://Edge/x", "NAMESPACE/CONFIGMAP"),
                            ("k8s://edge/ai-model-config", "cannot reach the Kubernetes API server")):
        result = subprocess.run([sys.executable, "-m", "wasinfer.cli.main", "serve", "--desired-state", source,
                                 "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "-1"],
                                capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 2, result.stdout + result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
