"""Model control as Triton's --model-control-mode: none, explicit and poll against real servers on loopback, with
tritonclient; lazy (the default) stays as it was."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.serving.conftest import SCALE, Repo, pair_model, scale_model, start_server
from wasinfer.cli.main import main
from wasinfer.serving.control import StartupError
from wasinfer.serving.repository import Repository


def _infer_scale(client: httpclient.InferenceServerClient, model: str = "scale") -> np.ndarray:
    tensor = httpclient.InferInput("x", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
    return np.asarray(client.infer(model, [tensor]).as_numpy("y"))


def test_none_mode_fails_the_start_naming_a_broken_model(repository: Path) -> None:
    with pytest.raises(StartupError) as refused:
        start_server(repository, model_control_mode="none")
    print(refused.value)
    assert "'broken'" in str(refused.value) and "failed to load" in str(refused.value)


def test_serve_exits_2_naming_the_broken_model(repository: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--model-repository", str(repository), "--http-port", "0", "--grpc-port", "-1",
                 "--model-control-mode", "none"])
    err = capsys.readouterr().err
    print(err)
    assert code == 2
    assert "model 'broken' failed to load" in " ".join(err.split())


def test_none_mode_loads_everything_before_the_ports_open(repository: Path) -> None:
    server = start_server(repository, model_control_mode="none", exit_on_error=False)
    try:
        assert set(server.load_failures) == {"broken"}
        http = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            # ready without any request having loaded them: the index says READY for every version served
            index = {(row["name"], row["version"]): row["state"] for row in http.get_model_repository_index()}
            print(index)
            assert index[("scale", "1")] == index[("scale", "2")] == index[("pair", "1")] == "READY"
            assert index[("count", "1")] == "READY" and index[("broken", "3")] == "UNAVAILABLE"
            assert http.is_model_ready("scale") and grpc.is_model_ready("scale", "1") and grpc.is_model_ready("count")
            assert not http.is_model_ready("broken") and not grpc.is_model_ready("broken")
            assert http.is_server_ready()
            np.testing.assert_array_equal(_infer_scale(http), SCALE[2][None])
            # the repository API cannot load or unload in this mode, as in Triton
            for action in (http.load_model, http.unload_model, grpc.load_model, grpc.unload_model):
                with pytest.raises(InferenceServerException, match="--model-control-mode none"):
                    action("scale")
            answer = httpx.post(f"http://127.0.0.1:{server.http_port}/v2/repository/models/scale/load")
            assert answer.status_code == 400
            assert http.is_model_ready("scale")
        finally:
            http.close()
            grpc.close()
    finally:
        server.stop(grace=2)


def test_explicit_mode_loads_only_the_named_models(writable_repo: Repo) -> None:
    writable_repo.add_wasm("pair", 1, pair_model(), max_batch=4)
    server = start_server(writable_repo.root, model_control_mode="explicit", load_models=("scale",))
    try:
        http = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        try:
            assert http.is_model_ready("scale") and not http.is_model_ready("pair")
            metadata = httpx.get(f"http://127.0.0.1:{server.http_port}/v2/models/pair")
            print(metadata.status_code, metadata.text)
            assert metadata.status_code == 503 and "not loaded" in metadata.text and "load" in metadata.text
            assert not http.is_model_ready("pair")  # a request did not load it
            http.load_model("pair")
            assert http.is_model_ready("pair")
            http.unload_model("scale")
            assert not http.is_model_ready("scale")
            http.load_model("scale")
            np.testing.assert_array_equal(_infer_scale(http), SCALE[1][None])
        finally:
            http.close()
    finally:
        server.stop(grace=2)


def test_explicit_mode_star_loads_all_and_an_unknown_name_stops_the_start(writable_repo: Repo) -> None:
    writable_repo.add_wasm("pair", 1, pair_model(), max_batch=4)
    with pytest.raises(StartupError, match="--load-model nope: no such model"):
        start_server(writable_repo.root, model_control_mode="explicit", load_models=("nope",))
    server = start_server(writable_repo.root, model_control_mode="explicit", load_models=("*",))
    try:
        assert server.manager.is_ready("scale") and server.manager.is_ready("pair")
    finally:
        server.stop(grace=2)


def test_poll_mode_follows_the_repository(writable_repo: Repo) -> None:
    server = start_server(writable_repo.root, model_control_mode="poll", repository_poll_seconds=0.1)
    try:
        http = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        try:
            assert http.is_model_ready("scale")
            writable_repo.add_wasm("scale", 2, scale_model(SCALE[2]))
            writable_repo.add_wasm("pair", 1, pair_model(), max_batch=4)
            ends = time.monotonic() + 30  # a poll every 0.1 s; the loads take well under a second
            while time.monotonic() < ends and not (http.is_model_ready("pair") and http.is_model_ready("scale", "2")):
                time.sleep(0.05)
            assert http.is_model_ready("pair") and http.is_model_ready("scale", "2")
            np.testing.assert_array_equal(_infer_scale(http), SCALE[2][None])  # the new default
            shutil.rmtree(writable_repo.root / "pair")
            while time.monotonic() < ends and http.is_model_ready("pair"):
                time.sleep(0.05)
            assert not http.is_model_ready("pair")
        finally:
            http.close()
    finally:
        server.stop(grace=2)


def test_lazy_mode_is_the_default_and_loads_on_first_request(writable_repo: Repo) -> None:
    server = start_server(writable_repo.root)
    try:
        assert not server.manager.is_ready("scale")
        http = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        try:
            np.testing.assert_array_equal(_infer_scale(http), SCALE[1][None])
            assert http.is_model_ready("scale")
        finally:
            http.close()
    finally:
        server.stop(grace=2)


def test_a_version_directory_that_is_not_a_number_is_reported(writable_repo: Repo,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    shutil.copytree(writable_repo.root / "scale" / "1", writable_repo.root / "scale" / "v1")
    (writable_repo.root / "scale" / ".incoming-x").mkdir()  # staging (updater.py): not reported
    repository = Repository(writable_repo.root)
    with caplog.at_level(logging.WARNING, logger="wasinfer.serving"):
        assert list(repository.versions("scale")) == [1]
        assert list(repository.versions("scale")) == [1]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    print(warnings)
    assert len(warnings) == 1  # once, not on every read
    assert str(writable_repo.root / "scale" / "v1") in warnings[0] and "is not a version" in warnings[0]


def test_serve_refuses_load_model_outside_explicit_and_a_bad_exit_on_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["serve", "--model-repository", str(tmp_path), "--http-port", "0", "--grpc-port", "-1"]
    assert main([*base, "--load-model", "scale"]) == 2
    assert "--load-model needs --model-control-mode explicit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--exit-on-error", "maybe"])
    assert "'maybe' is not true or false" in capsys.readouterr().err


def test_a_desired_state_s_model_is_left_to_its_updater(tmp_path: Path, writable_repo: Repo) -> None:
    """poll loads every model but the one a desired state keeps: its updater decides which version serves. A canary
    installed as a new directory must keep its share of the traffic, not become the default at the next poll."""
    from wasinfer.artifact import convert_onnx
    from wasinfer.serving.desired import DesiredState
    from wasinfer.serving.updater import CanaryPolicy

    module = tmp_path / "ai-model.wasm"
    module.write_bytes(convert_onnx(scale_model(SCALE[2]), max_batch=8, name="ai-model").wasm)
    desired = tmp_path / "desired.json"
    desired.write_text(f'{{"model_path": "{module}", "model_version": "2.0.0", "model_update_interval": "1h"}}')
    server = start_server(writable_repo.root, desired_state=desired, model_control_mode="poll",
                          repository_poll_seconds=0.05, canary=CanaryPolicy(percent=50, bake_seconds=600))
    try:
        http = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        try:
            assert http.is_model_ready("scale")  # loaded at start-up, as poll does
            np.testing.assert_array_equal(_infer_scale(http, "ai-model"), SCALE[2][None])
            third = np.array([5, 6, 7, 8], np.float32)
            module.write_bytes(convert_onnx(scale_model(third), max_batch=8, name="ai-model").wasm)
            assert server.updates is not None
            assert server.updates.updater.apply(DesiredState(str(module), "3.0.0")).state == "canary"
            time.sleep(0.5)  # ten polls
            seen = {tuple(_infer_scale(http, "ai-model")[0].tolist()) for _ in range(40)}
            print(seen)
            assert seen == {tuple(SCALE[2].tolist()), tuple(third.tolist())}  # half each, not all the canary's
        finally:
            http.close()
    finally:
        server.stop(grace=2)


def test_a_memory_budget_needs_the_lazy_mode(writable_repo: Repo) -> None:
    with pytest.raises(ValueError, match="needs --model-control-mode lazy"):
        start_server(writable_repo.root, model_control_mode="none", memory_budget_bytes=1 << 20)
