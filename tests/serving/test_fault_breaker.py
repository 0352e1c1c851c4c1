"""The fault breaker (serving/breaker.py): a model whose recent runs mostly fault is refused at once, cheaply.

On a live server, `trap` (every run traps) and `loop` (loops until its deadline on a negative first element,
answers otherwise) sit beside `scale`, a normal model. The breaker's refusals are checked by what they spare
the server (no instance discarded and rebuilt after the breaker opened), never by how fast they are.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.hostile import echo_module, looping_module, trapping_module
from tests.serving.conftest import SCALE, Repo, scale_model, start_server
from wasinfer.serving import Server
from wasinfer.serving.breaker import OFF, BreakerConfigError, BreakerOpen, BreakerSettings, FaultBreaker
from wasinfer.serving.model_config import ConfigError, parse_model_config

DEADLINE_MS = 200
X = np.array([[1, 2, 3, 4]], np.float32)
# Long enough that no test here sees it half-open unless it waits for it.
NEVER_HALF_OPENS = BreakerSettings(faults=5, runs=10, open_seconds=600, max_open_seconds=600)


def rest_request(x: np.ndarray) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}


def add_module(root: Path, name: str, version: int, wasm: bytes) -> None:
    path = root / name / str(version) / "model.wasm"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wasm)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    repo = Repo(tmp_path)
    repo.add_wasm("scale", 1, scale_model(SCALE[1]))
    add_module(repo.root, "trap", 1, trapping_module())
    add_module(repo.root, "loop", 1, looping_module())
    return repo.root


@pytest.fixture
def server(repository: Path) -> Iterator[Server]:
    running = start_server(repository, deadline_seconds=DEADLINE_MS / 1000, fault_breaker=NEVER_HALF_OPENS)
    try:
        yield running
    finally:
        running.stop(grace=2)


def discarded(server: Server, model: str) -> int:
    """Instances of the model's version 1 discarded after a fault: one per faulting run that started."""
    return server.manager.get(model, "1").pool.discarded


def test_a_trapping_model_is_refused_at_once_after_five_faults_and_its_neighbour_is_not(server: Server) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as http:
        for _ in range(5):
            response = http.post("/v2/models/trap/infer", json=rest_request(X))
            assert response.status_code == 500, response.text
            assert "unreachable" in response.json()["error"]
        assert discarded(server, "trap") == 5
        # The 6th and later: refused before they run, naming the model and the faults that opened the breaker.
        for _ in range(20):
            response = http.post("/v2/models/trap/infer", json=rest_request(X))
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert "model 'trap' version 1 is refused by its fault breaker" in error, error
            assert "5 of its last 5 runs faulted (5 trapped)" in error and "unreachable" in error, error
            assert 1 <= int(response.headers["retry-after"]) <= 600
        assert discarded(server, "trap") == 5  # nothing ran, nothing was rebuilt
        # Its neighbour and the server are unaffected; the trapping model's readiness says why it is not ready.
        response = http.post("/v2/models/scale/infer", json=rest_request(X))
        assert response.status_code == 200
        np.testing.assert_array_equal(response.json()["outputs"][0]["data"], (X * SCALE[1]).ravel())
        with grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}") as client:
            tensor = grpcclient.InferInput("x", [1, 4], "FP32")
            tensor.set_data_from_numpy(X)
            with pytest.raises(InferenceServerException) as refused:
                client.infer("trap", [tensor])
            assert refused.value.status() == "StatusCode.UNAVAILABLE"
            assert "fault breaker" in (refused.value.message() or "")
            assert not client.is_model_ready("trap")
            assert client.is_model_ready("scale")
            assert client.is_server_ready()
        assert http.get("/v2/health/ready").status_code == 200
        ready = http.get("/v2/models/trap/ready")
        assert ready.status_code == 503 and "fault breaker" in ready.json()["error"], ready.text
        assert http.get("/v2/models/scale/ready").status_code == 200
        metrics = http.get("/metrics").text
        assert 'wasinfer_fault_breaker_openings_total{model="trap",version="1"} 1.0' in metrics
        assert 'wasinfer_requests_total{model="trap",outcome="unavailable",protocol="rest",version="1"} 20.0' \
            in metrics

        # A good version replaces it: a breaker of its own, closed.
        add_module(server.config.model_repository, "trap", 2, echo_module())
        assert http.post("/v2/repository/models/trap/load").status_code == 200
        assert http.get("/v2/models/trap/ready").status_code == 200
        response = http.post("/v2/models/trap/infer", json=rest_request(X))
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == "2"


def test_the_breaker_half_opens_for_one_trial_and_closes_when_it_succeeds(repository: Path) -> None:
    """`loop` faults (ran past its deadline) on negative inputs only: its trial can fail, then succeed."""
    settings = BreakerSettings(faults=3, runs=4, open_seconds=1.0, max_open_seconds=2.0, hold_seconds=0)
    server = start_server(repository, deadline_seconds=DEADLINE_MS / 1000, fault_breaker=settings)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as http:
            def infer(x: np.ndarray) -> httpx.Response:
                return http.post("/v2/models/loop/infer", json=rest_request(x))

            assert infer(X).status_code == 200
            for _ in range(3):
                assert infer(-X).status_code == 504
            refused = infer(X)  # even a good request: the breaker refuses the model, not the input
            assert refused.status_code == 503
            assert "3 of its last 3 runs faulted (3 ran past its deadline)" in refused.json()["error"], refused.text
            time.sleep(settings.open_seconds + 0.1)
            # Half-open: one trial; it faults, so the breaker opens again, for twice as long.
            assert infer(-X).status_code == 504
            refused = infer(X)
            assert refused.status_code == 503
            assert "its trial run ran past its deadline after 3 of its last 3 runs faulted" in refused.json()["error"]
            time.sleep(settings.open_seconds)
            assert infer(X).status_code == 503, "open for twice as long after a failed trial"
            time.sleep(settings.open_seconds + 0.2)
            trial = infer(X)  # this trial succeeds: closed, the faults forgotten
            assert trial.status_code == 200, trial.text
            assert http.get("/v2/models/loop/ready").status_code == 200
            assert infer(-X).status_code == 504  # one fault is not "mostly"
            assert infer(X).status_code == 200
            metrics = http.get("/metrics").text
        assert 'wasinfer_fault_breaker_openings_total{model="loop",version="1"} 2.0' in metrics
    finally:
        server.stop(grace=2)


def test_the_breaker_is_off_with_off_and_per_model_in_config_json(repository: Path) -> None:
    (repository / "loop" / "config.json").write_text('{"fault_breaker": {"faults": 2, "runs": 2, "open_ms": 60000}}')
    server = start_server(repository, deadline_seconds=DEADLINE_MS / 1000, fault_breaker=OFF)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as http:
            for _ in range(8):  # off for trap: every request runs, and fails on its own
                assert http.post("/v2/models/trap/infer", json=rest_request(X)).status_code == 500
            for _ in range(2):  # on for loop, whose config.json asks for it
                assert http.post("/v2/models/loop/infer", json=rest_request(-X)).status_code == 504
            assert http.post("/v2/models/loop/infer", json=rest_request(X)).status_code == 503
        assert discarded(server, "trap") == 8
    finally:
        server.stop(grace=2)


def test_breaker_settings_are_checked_and_named_in_errors() -> None:
    assert BreakerSettings.parse("off") == OFF and not OFF.enabled
    assert BreakerSettings.parse("faults=3,open-ms=500,hold-ms=0") == BreakerSettings(3, 10, 0.5, 30.0, 0.0)
    assert BreakerSettings.parse(BreakerSettings().shown()) == BreakerSettings()
    for wrong, said in (("faults=0", "1 <= faults <= runs"), ("faults=11", "1 <= faults <= runs"),
                        ("open-ms=-1", "open-ms must be a positive"), ("open-ms=9,max-open-ms=3", "less than open-ms"),
                        ("hold-ms=20000", "hold-ms must be a number of milliseconds from 0 to 10000"),
                        ("window=3", "KEY=VALUE with KEY one of faults, runs"),
                        ("faults=x", "faults must be a number")):
        with pytest.raises(BreakerConfigError, match=said):
            BreakerSettings.parse(wrong)
    assert parse_model_config({"fault_breaker": False}).fault_breaker == OFF
    assert parse_model_config({"fault_breaker": {"runs": 4, "faults": 2}}).fault_breaker == BreakerSettings(2, 4)
    with pytest.raises(ConfigError, match="unknown fault_breaker field"):
        parse_model_config({"fault_breaker": {"fault": 2}})
    with pytest.raises(ConfigError, match='"fault_breaker" must be false'):
        parse_model_config({"fault_breaker": 3})


def test_a_trial_that_never_ran_lets_the_next_request_try_and_a_queued_backlog_is_refused() -> None:
    breaker = FaultBreaker(BreakerSettings(faults=2, runs=3, open_seconds=0.05, max_open_seconds=0.05), "m", "1")
    breaker.faulted("trapped", "boom")
    breaker.succeeded()
    assert breaker.admit() is False  # 1 of 2 runs: closed
    breaker.faulted("trapped", "boom")
    with pytest.raises(BreakerOpen, match="2 of its last 3 runs faulted"):
        breaker.admit()
    with pytest.raises(BreakerOpen):
        breaker.may_run(trial=False)  # queued before it opened: not run
    time.sleep(0.06)
    assert breaker.admit() is True  # the trial
    with pytest.raises(BreakerOpen, match="a trial request is running"):
        breaker.admit()
    breaker.may_run(trial=True)
    breaker.trial_ended()  # it never ran (withdrawn at its deadline): the next request is the trial
    assert breaker.admit() is True
    breaker.succeeded()
    assert breaker.admit() is False and breaker.unready_reason() == ""
