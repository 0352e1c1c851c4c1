"""Desired-state updates in a live server: swaps under load lose nothing, bad versions are refused, rollback."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.hostile import trapping_module
from tests.serving.conftest import SCALE, health_check, scale_model, start_server
from tests.serving.test_desired import mount
from wasinfer.artifact import convert_onnx
from wasinfer.registry.artifact import ANNOTATIONS, ModelArtifact
from wasinfer.registry.store import LocalStore
from wasinfer.serving import Server
from wasinfer.serving.desired import DesiredState
from wasinfer.serving.grpc_api import SERVICE
from wasinfer.serving.updater import ModelUpdater

X = [[1.0, 1.0, 1.0, 1.0]]
MODULES = {scale: convert_onnx(scale_model(SCALE[scale]), max_batch=8, name="m").wasm for scale in SCALE}


def place(path: Path, wasm: bytes) -> None:
    """Replace the file whole, as a deployment tool would (a reader never sees half of it)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(wasm)
    os.replace(tmp, path)


def infer(http: httpx.Client, model: str = "ai-model") -> list[float]:
    response = http.post(f"/v2/models/{model}/infer",
                         json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X}]})
    assert response.status_code == 200, response.text
    return list(response.json()["outputs"][0]["data"])


@pytest.fixture
def desired(tmp_path: Path) -> tuple[Path, Path]:
    module = tmp_path / "models" / "ai-model.wasm"
    module.parent.mkdir()
    place(module, MODULES[1])
    config = tmp_path / "desired.json"
    config.write_text(json.dumps({"model_path": str(module), "model_version": "v1.0.0",
                                  "model_update_interval": "1h"}))
    return module, config


def updater_of(server: Server) -> ModelUpdater:
    assert server.updates is not None
    return server.updates.updater


def test_successive_updates_under_load_fail_no_request(tmp_path: Path, desired: tuple[Path, Path]) -> None:
    module, config = desired
    server = start_server(tmp_path / "repository", desired_state=config)
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30)
        assert infer(http) == SCALE[1].tolist()
        answers: list[list[float]] = []
        failures: list[str] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as client:
                for _ in range(100_000):  # bounded; stopped by the test long before
                    if stop.is_set():
                        return
                    response = client.post("/v2/models/ai-model/infer", json={"inputs": [
                        {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X}]})
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text}")
                    else:
                        answers.append(response.json()["outputs"][0]["data"])

        threads = [threading.Thread(target=load) for _ in range(3)]
        for thread in threads:
            thread.start()
        updater = updater_of(server)
        for round_ in range(10):
            scale = 2 if round_ % 2 == 0 else 1
            place(module, MODULES[scale])
            status = updater.apply(DesiredState(str(module), f"v1.{round_ + 1}.0"))
            assert status.state == "serving" and status.label == f"v1.{round_ + 1}.0", status
            assert infer(http) == SCALE[scale].tolist()
        stop.set()
        for thread in threads:
            thread.join(60)
        assert failures == []
        assert answers and all(a in (SCALE[1].tolist(), SCALE[2].tolist()) for a in answers)
        assert len(list((tmp_path / "repository" / "ai-model").iterdir())) <= 3  # older versions pruned
        metrics = http.get("/metrics").text
        assert re.search(r'wasinfer_model_updates_total\{model="ai-model",outcome="ok"\} 11\.0', metrics)
        http.close()
    finally:
        server.stop(grace=2)


@pytest.mark.parametrize(("bad", "reason"), [(b"\x00asm not a module", "is not a wasinfer module"),
                                             (trapping_module(), "failed its warm-up")])
def test_a_bad_version_is_refused_and_the_old_one_keeps_serving(tmp_path: Path, desired: tuple[Path, Path],
                                                                 bad: bytes, reason: str) -> None:
    module, config = desired
    server = start_server(tmp_path / "repository", desired_state=config)
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30)
        updater = updater_of(server)
        before = updater.status
        place(module, bad)
        status = updater.apply(DesiredState(str(module), "v2.0.0"))
        assert status.state == "failed" and reason in status.reason
        assert status.version == before.version and status.digest == before.digest
        assert infer(http) == SCALE[1].tolist()
        assert sorted(p.name for p in (tmp_path / "repository" / "ai-model").iterdir()) == [str(before.version)]
        metrics = http.get("/metrics").text
        assert 'wasinfer_model_updates_total{model="ai-model",outcome="failed"} 1.0' in metrics
        # stuck on the old version: what it serves and what the desired state names differ
        assert (f'wasinfer_model_version_info{{desired_version="v2.0.0",model="ai-model",'
                f'serving_version="{before.label}"}} 1.0') in metrics
        assert "process_resident_memory_bytes" in metrics and "wasinfer_model_memory_budget_bytes 0.0" in metrics
        place(module, MODULES[2])  # the next good version goes through
        assert updater.apply(DesiredState(str(module), "v2.0.1")).state == "serving"
        assert infer(http) == SCALE[2].tolist()
        assert ('wasinfer_model_version_info{desired_version="v2.0.1",model="ai-model",serving_version="v2.0.1"} 1.0'
                in http.get("/metrics").text)
        http.close()
    finally:
        server.stop(grace=2)


def test_not_ready_until_the_desired_model_serves_and_live_throughout(tmp_path: Path,
                                                                      desired: tuple[Path, Path]) -> None:
    """Readiness is the seed's (and the Helm chart's readiness probe relies on it): a server whose desired
    model cannot be fetched serves nothing, so it is not ready, though it is live; it becomes ready once it serves."""
    module, config = desired
    module.unlink()  # model_path names nothing yet
    server = start_server(tmp_path / "repository", desired_state=config)
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as http:
            assert http.get("/v2/health/live").status_code == 200 and grpc.is_server_live()
            ready = http.get("/v2/health/ready")
            assert ready.status_code == 503, ready.text
            assert (f"not ready: model 'ai-model' is not served yet: cannot read model_path {module}"
                    in ready.json()["error"])
            assert not grpc.is_server_ready()
            # Kubernetes' gRPC probes: live ("") but not ready (the inference service)
            assert (health_check(server.grpc_port), health_check(server.grpc_port, SERVICE)) == ("SERVING",
                                                                                                 "NOT_SERVING")
            place(module, MODULES[1])  # the update loop's next retry (backoff from 1 s) fetches it
            for _ in range(600):  # bounded, 30 s
                if http.get("/v2/health/ready").status_code == 200:
                    break
                threading.Event().wait(0.05)
            assert http.get("/v2/health/ready").status_code == 200 and grpc.is_server_ready()
            assert health_check(server.grpc_port, SERVICE) == "SERVING"
            assert health_check(server.grpc_port, "no.such.Service") == "NOT_FOUND"
            assert infer(http) == SCALE[1].tolist()
            place(module, trapping_module())  # a later failed update leaves the serving version, and readiness
            assert updater_of(server).apply(DesiredState(str(module), "v2.0.0")).state == "failed"
            assert http.get("/v2/health/ready").status_code == 200 and grpc.is_server_ready()
    finally:
        grpc.close()
        server.stop(grace=2)


def test_a_desired_version_is_served_under_its_own_name(tmp_path: Path, desired: tuple[Path, Path]) -> None:
    """A desired model_version "1.1.0" is served as version "1.1.0" (metadata, routes, metrics, statistics, status),
    not as the repository directory's "1", which stays on disk with the name in its `version` file."""
    module, config = desired
    config.write_text(json.dumps({"model_path": str(module), "model_version": "1.1.0", "model_update_interval": "1h"}))
    server = start_server(tmp_path / "repository", desired_state=config)
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30)
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        updater = updater_of(server)
        assert updater.status.served_as == "1.1.0" and updater.status.version == 1
        directory = tmp_path / "repository" / "ai-model" / "1"
        assert (directory / "version").read_text() == "1.1.0\n"
        metadata = http.get("/v2/models/ai-model").json()
        print(metadata["versions"])
        assert metadata["versions"] == ["1.1.0"]
        assert client.get_model_metadata("ai-model", as_json=True)["versions"] == ["1.1.0"]
        assert http.get("/v2/models/ai-model/versions/1.1.0/ready").status_code == 200
        answer = http.post("/v2/models/ai-model/versions/1.1.0/infer",
                           json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X}]})
        print(answer.status_code, answer.json()["model_version"])
        assert answer.status_code == 200 and answer.json()["model_version"] == "1.1.0"
        assert infer(http) == SCALE[1].tolist()
        metrics = http.get("/metrics").text
        assert 'model="ai-model",protocol="rest",version="1.1.0"' in metrics.replace('outcome="ok",', "")
        stats = http.get("/v2/models/ai-model/versions/1.1.0/stats").json()["model_stats"]
        assert [(s["name"], s["version"]) for s in stats] == [("ai-model", "1.1.0")]
        assert [row["version"] for row in http.post("/v2/repository/index").json()] == ["1.1.0"]
        # the next desired version gets its own name; the same name for new bytes is told apart with "+N"
        place(module, MODULES[2])
        assert updater.apply(DesiredState(str(module), "1.2.0")).served_as == "1.2.0"
        assert http.get("/v2/models/ai-model").json()["versions"] == ["1.1.0", "1.2.0"]
        assert client.infer("ai-model", _grpc_x(), model_version="1.2.0").get_response().model_version == "1.2.0"
        place(module, MODULES[1])
        assert updater.apply(DesiredState(str(module), "1.2.0")).served_as == "1.2.0+3"
        assert infer(http) == SCALE[1].tolist()
        client.close()
        http.close()
    finally:
        server.stop(grace=2)


def _grpc_x() -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("x", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.asarray(X, np.float32))
    return [tensor]


def test_rollback_serves_the_previous_version_in_one_step(tmp_path: Path, desired: tuple[Path, Path]) -> None:
    module, config = desired
    server = start_server(tmp_path / "repository", desired_state=config)
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30)
        updater = updater_of(server)
        place(module, MODULES[2])
        updater.apply(DesiredState(str(module), "v2.0.0"))
        assert infer(http) == SCALE[2].tolist()
        status = updater.rollback()
        assert status.state == "serving" and infer(http) == SCALE[1].tolist()
        with pytest.raises(Exception, match="no earlier version"):
            updater.rollback()
        http.close()
    finally:
        server.stop(grace=2)


def test_an_in_place_configmap_update_is_applied_without_a_restart(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    place(models / "ai-model.wasm", MODULES[1])
    place(models / "ai-model-2.wasm", MODULES[2])
    volume = tmp_path / "config"
    mount(volume, {"model_path": str(models / "ai-model.wasm"), "model_version": "v1.0.0",
                   "model_update_interval": "1h"}, "gen1")
    server = start_server(tmp_path / "repository", desired_state=volume)
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30)
        assert infer(http) == SCALE[1].tolist()
        # The served name stays the one the server started with; the path now points at other bytes.
        place(models / "ai-model.wasm", MODULES[2])
        mount(volume, {"model_path": str(models / "ai-model.wasm"), "model_version": "v1.1.0",
                       "model_update_interval": "1h"}, "gen2")
        for _ in range(600):  # bounded: the loop polls every second
            if infer(http) == SCALE[2].tolist():
                break
            threading.Event().wait(0.05)
        assert infer(http) == SCALE[2].tolist() and updater_of(server).status.label == "v1.1.0"
        http.close()
    finally:
        server.stop(grace=2)


def test_serve_refuses_a_bad_desired_state_at_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wasinfer.cli.main import main

    config = tmp_path / "desired.json"
    config.write_text(json.dumps({"model_version": "v1.0.0"}))
    os.environ.pop("MODEL_PATH", None)
    code = main(["serve", "--desired-state", str(config), "--http-port", "0", "--grpc-port", "-1"])
    assert code == 2
    assert "no model_path" in " ".join(capsys.readouterr().err.split())


def test_a_missing_desired_state_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wasinfer.cli.main import main

    assert main(["serve", "--desired-state", str(tmp_path / "nope.yaml"), "--http-port", "0"]) == 2
    assert "no such file" in " ".join(capsys.readouterr().err.split())


def _artifact(scale: int, version: str, accuracy: str = "0.97") -> ModelArtifact:
    return ModelArtifact.from_module(MODULES[scale], "team/scale", version,
                                     annotations={ANNOTATIONS["accuracy"]: accuracy})


def test_versions_from_the_local_store_and_a_registry_are_admitted_before_they_serve(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.registry.registry_server import run_registry
    from wasinfer.registry.oci import OciClient
    from wasinfer.serving.cli import fetch_desired

    monkeypatch.setenv("WASINFER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WASINFER_TRUST_MODE", "off")
    store = LocalStore()
    store.put(_artifact(1, "1.0.0"))
    store.put(_artifact(2, "2.0.0"))
    store.put(_artifact(2, "3.0.0", accuracy="0.2"))  # the shipped accuracy policy denies it
    config = tmp_path / "desired.json"
    config.write_text(json.dumps({"model_path": "team/scale", "model_version": "v1.0.0"}))
    server = start_server(tmp_path / "repository", desired_state=config, fetcher=fetch_desired)
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30)

        def answer() -> list[float]:
            return infer(http, "scale")

        updater = updater_of(server)
        assert updater.status.state == "serving" and answer() == SCALE[1].tolist()
        assert updater.apply(DesiredState("team/scale", "2.0.0")).state == "serving" and answer() == SCALE[2].tolist()
        refused = updater.apply(DesiredState("team/scale", "3.0.0"))
        assert refused.state == "failed" and "by policy" in refused.reason and answer() == SCALE[2].tolist()
        with run_registry(tmp_path / "registry") as registry:
            monkeypatch.setenv("WASINFER_REGISTRY_PLAIN_HTTP", "1")
            with OciClient(registry.address, plain_http=True) as client:
                pinned = client.push("team/scale", "1.0.0", _artifact(1, "1.0.0"))
                client.push("team/scale", "2.0.0", _artifact(2, "2.0.0"))
            # The registry is down (nothing listens there): the update fails, the old version serves on.
            down = updater.apply(DesiredState("127.0.0.1:9/team/scale", "1.0.0"))
            assert down.state == "failed" and "127.0.0.1:9" in down.reason and answer() == SCALE[2].tolist()
            # Back up (the real address): the same desired version converges.
            up = updater.apply(DesiredState(f"{registry.address}/team/scale", "v1.0.0"))
            assert up.state == "serving" and answer() == SCALE[1].tolist()
            # A digest in model_path pins the content: the model_version tag beside it does not move it.
            assert updater.apply(DesiredState(f"{registry.address}/team/scale", "v2.0.0")).state == "serving"
            assert answer() == SCALE[2].tolist()
            assert updater.apply(DesiredState(f"{registry.address}/team/scale@{pinned}", "v2.0.0")).state == "serving"
            assert answer() == SCALE[1].tolist()
        http.close()
    finally:
        server.stop(grace=2)


def test_a_corrupted_blob_or_an_untrusted_signature_is_refused_and_the_old_version_serves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wasinfer.registry.trust import generate_keys, sign
    from wasinfer.serving.cli import fetch_desired

    monkeypatch.setenv("WASINFER_HOME", str(tmp_path / "home"))
    trusted, stranger = generate_keys(tmp_path / "keys", "ops"), generate_keys(tmp_path / "other", "someone")
    monkeypatch.setenv("WASINFER_TRUST_KEYS", str(trusted.public_key))
    monkeypatch.setenv("WASINFER_TRUST_MODE", "require")
    store = LocalStore()
    store.put(sign(_artifact(1, "1.0.0"), trusted.private_key))
    corrupt = sign(ModelArtifact.from_module(convert_onnx(scale_model(np.full(4, 5.0, np.float32)), max_batch=8,
                                                          name="m").wasm, "team/scale", "2.0.0",
                                             annotations={ANNOTATIONS["accuracy"]: "0.97"}), trusted.private_key)
    store.put(corrupt)
    store.put(sign(_artifact(2, "3.0.0"), stranger.private_key))
    blob = tmp_path / "home" / "store" / "blobs" / "sha256" / corrupt.layer_descriptors()[0].digest.split(":")[1]
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")  # one byte of the module flipped on disk
    config = tmp_path / "desired.json"
    config.write_text(json.dumps({"model_path": "team/scale", "model_version": "1.0.0"}))
    server = start_server(tmp_path / "repository", desired_state=config, fetcher=fetch_desired)
    try:
        updater = updater_of(server)
        assert updater.status.state == "serving"
        for version, reason in (("2.0.0", "corrupt"), ("3.0.0", "signed by unknown key")):
            status = updater.apply(DesiredState("team/scale", version))
            assert status.state == "failed" and reason in status.reason, status
            response = httpx.post(f"http://127.0.0.1:{server.http_port}/v2/models/scale/infer", json={
                "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X}]})
            assert response.json()["outputs"][0]["data"] == SCALE[1].tolist()
    finally:
        server.stop(grace=2)


def test_three_servers_watching_one_desired_state_converge(tmp_path: Path, desired: tuple[Path, Path]) -> None:
    module, config = desired
    config.write_text(json.dumps({"model_path": str(module), "model_version": "v1.0.0",
                                  "model_update_interval": "2s"}))
    servers = [start_server(tmp_path / f"repository-{i}", desired_state=config) for i in range(3)]
    try:
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{s.http_port}", timeout=30) for s in servers]
        assert all(infer(c) == SCALE[1].tolist() for c in clients)
        place(module, MODULES[2])  # the new version appears at the same path; the config names it
        config.write_text(json.dumps({"model_path": str(module), "model_version": "v2.0.0",
                                      "model_update_interval": "2s"}))
        pending = set(range(3))
        for _ in range(600):  # bounded (~30 s): each polls its source every second
            pending = {i for i in pending if infer(clients[i]) != SCALE[2].tolist()}
            if not pending:
                break
            threading.Event().wait(0.05)
        assert not pending, f"servers {sorted(pending)} did not converge"
        assert all(updater_of(s).status.label == "v2.0.0" for s in servers)
        for client in clients:
            client.close()
    finally:
        for server in servers:
            server.stop(grace=2)


def _post(port: int, x: list[list[float]]) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/v2/models/ai-model/infer", timeout=30,
                      json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": x}]})


def test_a_canary_that_fails_its_requests_is_rolled_back(tmp_path: Path, desired: tuple[Path, Path]) -> None:
    from tests.hostile import looping_module
    from wasinfer.serving.updater import CanaryPolicy

    module, config = desired
    server = start_server(tmp_path / "repository", desired_state=config, deadline_seconds=0.2,
                          canary=CanaryPolicy(percent=50, bake_seconds=3600, max_error_rate=0.01))
    try:
        updater = updater_of(server)
        place(module, looping_module())  # passes its warm-up (zeros), hangs on a negative input
        status = updater.apply(DesiredState(str(module), "v2.0.0"))
        assert status.state == "canary" and "50%" in status.reason
        codes = [_post(server.http_port, [[-1.0, 1.0, 1.0, 1.0]]).status_code for _ in range(12)]
        assert 504 in codes and 200 in codes  # half the traffic found the candidate, half the old version
        status = updater.tick()
        assert status.state == "failed" and "rolled back" in status.reason and "failed" in status.reason
        assert [_post(server.http_port, [[-1.0, 1.0, 1.0, 1.0]]).status_code for _ in range(10)] == [200] * 10
        assert status.version == 1 and sorted(p.name for p in (tmp_path / "repository" / "ai-model").iterdir()) == ["1"]
        again = updater.apply(DesiredState(str(module), "v2.0.0"))  # the same bytes are not tried again
        assert again.state == "failed" and "rolled back by its canary" in again.reason
    finally:
        server.stop(grace=2)


def test_a_canary_that_holds_through_its_bake_window_is_promoted(tmp_path: Path, desired: tuple[Path, Path]) -> None:
    from wasinfer.serving.updater import CanaryPolicy

    module, config = desired
    server = start_server(tmp_path / "repository", desired_state=config,
                          canary=CanaryPolicy(percent=50, bake_seconds=0.0))
    try:
        updater = updater_of(server)
        place(module, MODULES[2])
        assert updater.apply(DesiredState(str(module), "v2.0.0")).state == "canary"
        seen = {tuple(_post(server.http_port, X).json()["outputs"][0]["data"]) for _ in range(30)}
        assert seen == {tuple(SCALE[1].tolist()), tuple(SCALE[2].tolist())}  # both versions answered
        status = updater.tick()
        assert status.state == "serving" and status.label == "v2.0.0"
        assert {tuple(_post(server.http_port, X).json()["outputs"][0]["data"]) for _ in range(10)} == {
            tuple(SCALE[2].tolist())}
    finally:
        server.stop(grace=2)


def test_a_registry_outage_during_an_update_keeps_serving_and_converges_when_it_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.registry.registry_server import free_port, run_registry
    from wasinfer.registry.oci import OciClient
    from wasinfer.serving.cli import fetch_desired

    monkeypatch.setenv("WASINFER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WASINFER_TRUST_MODE", "off")
    monkeypatch.setenv("WASINFER_REGISTRY_PLAIN_HTTP", "1")
    port, storage = free_port(), tmp_path / "registry"
    config = tmp_path / "desired.json"

    def want(version: str) -> None:
        config.write_text(json.dumps({"model_path": f"127.0.0.1:{port}/team/scale", "model_version": version,
                                      "model_update_interval": "1h"}))  # only changes and retries fetch

    with run_registry(storage, port=port) as registry:
        with OciClient(registry.address, plain_http=True) as client:
            client.push("team/scale", "1.0.0", _artifact(1, "1.0.0"))
            client.push("team/scale", "2.0.0", _artifact(2, "2.0.0"))
        want("1.0.0")
        server = start_server(tmp_path / "repository", desired_state=config, fetcher=fetch_desired)
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30)

        def answer() -> list[float]:
            return infer(http, "scale")

        assert answer() == SCALE[1].tolist()
        want("2.0.0")  # while the registry is down
        updater = updater_of(server)
        for _ in range(600):  # bounded: the loop polls every second
            if updater.status.state == "failed":
                break
            threading.Event().wait(0.05)
        assert updater.status.state == "failed" and "cannot connect" in updater.status.reason
        assert answer() == SCALE[1].tolist()  # the old version serves on
        with run_registry(storage, port=port):  # back, with the same storage: the retry converges
            for _ in range(600):  # bounded (~30 s): retries back off from 1 s
                if answer() == SCALE[2].tolist():
                    break
                threading.Event().wait(0.05)
            assert answer() == SCALE[2].tolist() and updater.status.state == "serving"
        http.close()
    finally:
        server.stop(grace=2)
