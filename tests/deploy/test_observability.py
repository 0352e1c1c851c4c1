"""The Grafana dashboard and the Prometheus alert rules, against Debian's real Prometheus 2.42.

`promtool` checks the rule file and runs its unit tests; then `wasinfer serve` (a process, on
loopback) gets a bounded burst of traffic while a Prometheus on loopback scrapes it every second
and evaluates the rules every second, and every dashboard query, with its template variables
filled in as Grafana would, is run through Prometheus' HTTP API.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from onnx import ModelProto, TensorProto, helper, numpy_helper

from tests.processes import output_lines, read_until
from wasinfer.artifact import convert_onnx
from wasinfer.deploy.observability import expand, load_dashboard, panels, problems, queries

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "wasinfer-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "wasinfer-rules.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "wasinfer-rules.test.yaml"
DOCS = ROOT / "docs" / "deploy.md"
PROMTOOL, PROMETHEUS = shutil.which("promtool"), shutil.which("prometheus")
SKIP_REASON = "needs Debian's prometheus package (prometheus and promtool); .ci/run installs it"

# (panel title, refId) of queries that may rightly return nothing after the test's traffic.
MAY_BE_EMPTY = {
    ("Evictions", "A"): "nothing is evicted: no memory budget is set, and the test's models (~70 kB each) "
                        "would not fill the smallest one (1 MB)",
    ("Memory per server", "B"): "container_memory_working_set_bytes comes from the kubelet (cAdvisor), which "
                                "this Prometheus does not scrape",
    ("Memory per server", "D"): "no --memory-budget-mb is set",
}
# Grafana's substitutions: "All" (the variables' allValue), then two values picked, as a multi-select sends them.
ALL = {"model": ".*", "version": ".*"}
PICKED = {"model": "(scale|ai-model)", "version": "(1|2)"}
COMMON = {"__rate_interval": "5s", "__interval": "1s", "container": "ai-inference-service"}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


# --- the files themselves -----------------------------------------------------------------------

def test_dashboard_is_a_grafana_dashboard_model() -> None:
    dashboard = load_dashboard(DASHBOARD)
    assert problems(dashboard) == []
    titles = {panel["title"] for panel in panels(dashboard) if panel["type"] != "row"}
    for wanted in ("Requests per second", "Error rate (server failures)", "Request latency p50 / p99 / p999",
                   "Cold starts / model loads", "Batch size", "Queue time p50 / p99 (dynamic batching)",
                   "Loaded models", "Memory per model version", "Memory per server", "Update events by outcome",
                   "Model cache hit ratio", "Evictions"):
        assert wanted in titles
    latency = next(p for p in panels(dashboard) if p["title"] == "Request latency p50 / p99 / p999")
    assert [t["expr"].split(",")[0] for t in latency["targets"]] == [
        "histogram_quantile(0.5", "histogram_quantile(0.99", "histogram_quantile(0.999"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert "label_values(" in variables["model"]["definition"] and "$model" in variables["version"]["definition"]


def test_structural_checks_catch_broken_dashboards() -> None:
    """The checks above could fail: each of these breakages is reported."""
    dashboard = load_dashboard(DASHBOARD)
    first, second = [p for p in dashboard["panels"] if p["type"] != "row"][:2]
    second["id"] = first["id"]
    first["gridPos"]["w"] = 30
    first["targets"][0]["expr"] = 'rate(wasinfer_requests_total{model=~"$modle"}[5m])'
    second["datasource"] = {"type": "prometheus", "uid": "prod"}
    dashboard["schemaVersion"] = 27
    found = "\n".join(problems(dashboard))
    for expected in ("used twice", "24-column grid", "unknown template variable $modle",
                     "datasource is not ${datasource}", "schemaVersion 27"):
        assert expected in found
    with pytest.raises(KeyError, match="modle"):
        expand(first["targets"][0]["expr"], {"model": ".*"})


def test_every_alert_has_severity_annotations_and_a_runbook_section() -> None:
    headings = {re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
                for line in DOCS.read_text().splitlines() if line.startswith("#")}
    rules = _rules()
    assert len(rules) >= 7
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert {"summary", "description", "runbook_url"} <= rule["annotations"].keys(), rule["alert"]
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert page == "docs/deploy.md" and anchor in headings, (rule["alert"], anchor)


@pytest.mark.skipif(PROMTOOL is None, reason=SKIP_REASON)
def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    assert PROMTOOL is not None
    checked = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in checked.stdout
    tested = subprocess.run([PROMTOOL, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                            timeout=120)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
    # Every alert has a case where it fires and one where it stays quiet.
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for rule in _rules():
        outcomes = {bool(case["exp_alerts"]) for case in cases if case["alertname"] == rule["alert"]}
        assert outcomes == {True, False}, rule["alert"]


# --- a real server, a real Prometheus ------------------------------------------------------------

def _scale_model(scale: Sequence[float]) -> ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["y"])], "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.array(scale, np.float32), "scale")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass(frozen=True)
class Stack:
    server: str  # http://127.0.0.1:port of wasinfer serve
    prometheus: str  # http://127.0.0.1:port of Prometheus

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10.0)
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


def _infer(client: httpx.Client, path: str, shape: list[int]) -> int:
    body = {"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": [1.0] * int(np.prod(shape))}]}
    return client.post(path, json=body).status_code


def _traffic(server: str, desired: Path, missing: Path) -> None:
    """A bounded burst that touches every metric family a loopback server can produce."""
    with httpx.Client(base_url=server, timeout=30.0) as client:
        for _ in range(20):
            assert _infer(client, "/v2/models/scale/infer", [2, 4]) == 200  # default version 2, lazy load
            assert _infer(client, "/v2/models/scale/versions/1/infer", [1, 4]) == 200
            assert _infer(client, "/v2/models/ai-model/infer", [1, 4]) == 200  # the desired-state model
        assert client.post("/v2/repository/models/other/load").status_code == 200  # a load through the API
        assert _infer(client, "/v2/models/other/infer", [1, 4]) == 200
        assert client.post("/v2/repository/models/broken/load").status_code >= 400  # a load that fails
        for _ in range(3):
            assert _infer(client, "/v2/models/scale/infer", [1, 3]) == 400  # bad_request, model known
            assert _infer(client, "/v2/models/nope/infer", [1, 4]) == 404  # not_found, empty labels
    # An update to a module that does not exist: refused, the current version serves on.
    desired.write_text(desired.read_text().replace('"v1.0.0"', '"v1.1.0"').replace(
        str(desired.parent / "ai-model.wasm"), str(missing)))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if PROMETHEUS is None:
        pytest.skip(SKIP_REASON)
    work = tmp_path_factory.mktemp("observability")
    repository = work / "repository"
    for name, version, scale in (("scale", 1, [1, 2, 3, 4]), ("scale", 2, [5, 6, 7, 8]), ("other", 1, [1] * 4)):
        path = repository / name / str(version) / "model.wasm"
        path.parent.mkdir(parents=True)
        path.write_bytes(convert_onnx(_scale_model(scale), max_batch=8, name=name).wasm)
    (repository / "broken" / "1").mkdir(parents=True)
    (repository / "broken" / "1" / "model.wasm").write_bytes(b"\0asm not a module")
    (work / "ai-model.wasm").write_bytes(convert_onnx(_scale_model([2] * 4), max_batch=8, name="ai-model").wasm)
    desired = work / "desired.yaml"
    desired.write_text(f'model_path: "{work / "ai-model.wasm"}"\nmodel_version: "v1.0.0"\n'
                       'model_update_interval: "5m"\ncache_enabled: "true"\n')
    env = dict(os.environ, WASINFER_HOME=str(work / "home"), COLUMNS="200")
    server = subprocess.Popen(
        [sys.executable, "-m", "wasinfer.cli.main", "serve", "--model-repository", str(repository),
         "--desired-state", str(desired), "--http-port", "0", "--grpc-port", "-1", "--batch-delay-us", "100"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    prometheus: subprocess.Popen[bytes] | None = None
    try:
        printed = "".join(read_until(output_lines(server), "Press Ctrl+C", 60))
        match = re.search(r"REST  (http://127\.0\.0\.1:(\d+))/v2", printed)
        assert match
        address = f"127.0.0.1:{_free_port()}"
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(RULES)],
                  "scrape_configs": [{"job_name": "wasinfer", "static_configs": [
                      {"targets": [f"127.0.0.1:{match[2]}"]}]}]}
        (work / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        log = (work / "prometheus.log").open("wb")
        prometheus = subprocess.Popen(
            [PROMETHEUS, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
             f"--web.listen-address={address}"], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        for _ in range(300):  # up to ~30 s
            assert prometheus.poll() is None, (work / "prometheus.log").read_text()
            try:
                if httpx.get(f"http://{address}/-/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError(f"Prometheus not ready:\n{(work / 'prometheus.log').read_text()}")
        stack = Stack(match[1], f"http://{address}")
        _traffic(stack.server, desired, work / "gone" / "ai-model.wasm")
        # Wait (bounded) until the last series the traffic made is in several scrapes and the refused
        # update has been counted, so every rate over 5 s has two samples.
        for _ in range(300):  # up to ~30 s
            seen = stack.query('count_over_time(wasinfer_requests_total{outcome="not_found"}[10s]) >= 3 '
                               'and on() wasinfer_model_updates_total{outcome="failed"}')
            if seen:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("Prometheus never scraped the traffic")
        yield stack
    finally:
        if prometheus is not None:
            _stop(prometheus)
        _stop(server)


@pytest.mark.parametrize("values", [ALL, PICKED], ids=["all", "picked"])
def test_every_dashboard_query_evaluates_against_the_scraped_server(stack: Stack, values: dict[str, str]) -> None:
    dashboard = load_dashboard(DASHBOARD)
    empty = []
    for query in queries(dashboard):
        result = stack.query(expand(query.expr, {**COMMON, **values}))  # a PromQL error fails here
        if not result:
            empty.append((query.panel_title, query.ref_id))
    assert set(empty) <= MAY_BE_EMPTY.keys(), f"empty panels: {empty}"


def test_dashboard_queries_show_what_the_traffic_did(stack: Stack) -> None:
    targets = {(q.panel_title, q.ref_id): expand(q.expr, {**COMMON, **ALL}) for q in queries(load_dashboard(DASHBOARD))}

    def labels(key: tuple[str, str]) -> list[dict[str, str]]:
        return [series["metric"] for series in stack.query(targets[key])]

    requests = labels(("Requests per second", "A"))
    for wanted in ({"model": "scale", "version": "1", "outcome": "ok"}, {"model": "scale", "version": "2",
                   "outcome": "ok"}, {"model": "scale", "version": "2", "outcome": "bad_request"},
                   {"outcome": "not_found"}):  # no known model: empty labels, which Prometheus drops
        assert any(wanted.items() <= series.items() for series in requests), (wanted, requests)
    loads = labels(("Cold starts / model loads", "A"))
    assert {"model": "broken", "version": "1", "outcome": "error"} in loads
    assert {"model": "other", "version": "1", "outcome": "ok"} in loads
    updates = labels(("Update events by outcome", "A"))
    assert {"model": "ai-model", "outcome": "ok"} in updates and {"model": "ai-model", "outcome": "failed"} in updates
    loaded = stack.query(targets[("Loaded models", "A")])
    assert float(loaded[0]["value"][1]) == 4  # scale 1 and 2, other, ai-model
    memory = {(s["metric"]["model"], s["metric"]["version"]): float(s["value"][1])
              for s in stack.query(targets[("Memory per model version", "A")])}
    # the desired model is served under its desired version's name
    assert memory.keys() == {("scale", "1"), ("scale", "2"), ("other", "1"), ("ai-model", "v1.0.0")}
    assert all(size > 0 for size in memory.values())
    ratio = stack.query(targets[("Model cache hit ratio", "B")])
    assert 0 < float(ratio[0]["value"][1]) < 1  # two lazy loads (scale 1 and 2) among the requests


def test_prometheus_loads_the_rules_and_fires_on_the_failures(stack: Stack) -> None:
    groups = httpx.get(f"{stack.prometheus}/api/v1/rules", timeout=10.0).json()["data"]["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert rules.keys() == {rule["alert"] for rule in _rules()}
    for _ in range(100):  # rules run every second; wait (bounded) for an evaluation after the traffic
        alerts = {(a["labels"]["alertname"], a["labels"].get("model")): a for a in
                  httpx.get(f"{stack.prometheus}/api/v1/alerts", timeout=10.0).json()["data"]["alerts"]}
        if ("WasinferModelUpdateFailed", "ai-model") in alerts and ("WasinferModelLoadFailures", "broken") in alerts:
            break
        time.sleep(0.1)
    rules = {rule["name"]: rule for group in httpx.get(f"{stack.prometheus}/api/v1/rules", timeout=10.0)
             .json()["data"]["groups"] for rule in group["rules"]}
    assert all(rule["health"] == "ok" for rule in rules.values()), rules
    assert ("WasinferModelLoadFailures", "broken") in alerts and ("WasinferModelUpdateFailed", "ai-model") in alerts, \
        alerts
    assert alerts[("WasinferModelLoadFailures", "broken")]["state"] == "firing"
    assert alerts[("WasinferModelUpdateFailed", "ai-model")]["labels"]["outcome"] == "failed"
    # Nothing was slow, failing in the server, or short of memory.
    assert not {name for name, _ in alerts} & {"WasinferHighP99Latency", "WasinferHighErrorRate",
                                                "WasinferMemoryNearLimit", "WasinferModelEvictionStorm"}
