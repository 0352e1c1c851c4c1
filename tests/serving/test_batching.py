"""Dynamic batching: the Batcher on its own, and a model with config.json batching in a server."""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.serving.conftest import SCALE, Repo, scale_model, start_server
from wasinfer.serving.batching import Batcher, Tensors
from wasinfer.serving.model_config import ConfigError, ModelConfig, ServingDefaults, parse_model_config, settings_for


class Recorder:
    """A model that doubles its input and records each batch it was given; `gate` can hold it inside a run."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.entered, self.gate = threading.Event(), threading.Event()
        self.gate.set()

    def __call__(self, inputs: Tensors) -> Tensors:
        self.sizes.append(len(inputs["x"]))
        self.entered.set()
        assert self.gate.wait(30)
        if (inputs["x"] < 0).any():
            raise ValueError("negative input")
        return {"y": inputs["x"] * 2}


def rows(start: int, count: int) -> np.ndarray:
    return np.arange(start, start + count, dtype=np.float32).reshape(count, 1)


def test_a_full_batch_runs_at_once_and_each_request_gets_its_own_rows() -> None:
    model = Recorder()
    batcher = Batcher(model, max_batch=8, max_delay=30.0, workers=1, name="t")  # only a full batch can start early
    futures = [batcher.submit({"x": rows(10 * i, 1)}, 1) for i in range(8)]
    results = [f.result(timeout=30) for f in futures]
    assert model.sizes == [8]
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], rows(10 * i, 1) * 2)
    batcher.close()


def test_with_no_delay_only_what_queued_while_busy_is_batched() -> None:
    model = Recorder()
    batcher = Batcher(model, max_batch=16, max_delay=0.0, workers=1, name="t")
    model.gate.clear()
    first = batcher.submit({"x": rows(0, 1)}, 1)
    assert model.entered.wait(30)  # the first runs alone: nothing else was waiting
    later = [batcher.submit({"x": rows(i, 2)}, 2) for i in range(5)]
    model.gate.set()
    np.testing.assert_array_equal(first.result(timeout=30)["y"], rows(0, 1) * 2)
    for i, future in enumerate(later):
        np.testing.assert_array_equal(future.result(timeout=30)["y"], rows(i, 2) * 2)
    assert model.sizes == [1, 10]
    batcher.close()


def test_a_request_is_never_split_and_the_batch_never_exceeds_max_batch() -> None:
    model = Recorder()
    batcher = Batcher(model, max_batch=8, max_delay=0.001, workers=1, name="t")
    model.gate.clear()
    blocker = batcher.submit({"x": rows(0, 1)}, 1)
    assert model.entered.wait(30)
    threes = [batcher.submit({"x": rows(3 * i, 3)}, 3) for i in range(3)]
    model.gate.set()
    blocker.result(timeout=30)
    for i, future in enumerate(threes):
        np.testing.assert_array_equal(future.result(timeout=30)["y"], rows(3 * i, 3) * 2)
    assert model.sizes == [1, 6, 3]
    batcher.close()


def test_a_bad_request_fails_alone_and_its_batch_mates_still_get_answers() -> None:
    model = Recorder()
    batcher = Batcher(model, max_batch=4, max_delay=30.0, workers=1, name="t")
    inputs = [rows(1, 1), np.array([[-1.0]], np.float32), rows(2, 1), rows(3, 1)]
    futures = [batcher.submit({"x": x}, 1) for x in inputs]
    with pytest.raises(ValueError, match="negative input"):
        futures[1].result(timeout=30)
    for i in (0, 2, 3):
        np.testing.assert_array_equal(futures[i].result(timeout=30)["y"], inputs[i] * 2)
    assert model.sizes[0] == 4 and sorted(model.sizes[1:]) == [1, 1, 1, 1]  # the batch, then each alone
    batcher.close()


def test_close_lets_queued_requests_finish_and_refuses_new_ones() -> None:
    model = Recorder()
    batcher = Batcher(model, max_batch=4, max_delay=30.0, workers=2, name="t")
    queued: Future[Tensors] = batcher.submit({"x": rows(5, 1)}, 1)
    batcher.close()
    np.testing.assert_array_equal(queued.result(timeout=30)["y"], rows(5, 1) * 2)
    with pytest.raises(RuntimeError, match="unloaded"):
        batcher.submit({"x": rows(0, 1)}, 1)


def test_a_request_withdrawn_while_queued_is_never_run() -> None:
    """A caller whose deadline passes cancels its queued future (LoadedModel.infer): no batch takes it."""
    model = Recorder()
    model.gate.clear()
    batcher = Batcher(model, max_batch=1, max_delay=0.0, workers=1, name="t")
    running = batcher.submit({"x": rows(0, 1)}, 1)
    assert model.entered.wait(30)
    withdrawn = batcher.submit({"x": rows(1, 1)}, 1)
    kept = batcher.submit({"x": rows(2, 1)}, 1)
    assert withdrawn.cancel()
    model.gate.set()
    np.testing.assert_array_equal(kept.result(timeout=10)["y"], rows(2, 1) * 2)
    np.testing.assert_array_equal(running.result(timeout=10)["y"], rows(0, 1) * 2)
    assert model.sizes == [1, 1]  # the first request and the kept one: the withdrawn one never ran


# --- config.json ---------------------------------------------------------------------------------


def test_config_fields_are_checked_and_merged_over_the_defaults() -> None:
    config = parse_model_config({"max_batch_size": 4, "dynamic_batching": {"max_queue_delay_microseconds": 500}})
    settings = settings_for(config, ServingDefaults(pool_size=3, max_concurrency=7), compiled_max_batch=8)
    assert (settings.max_batch, settings.batching_delay_us, settings.instance_count, settings.max_concurrency) == (
        4, 500, 3, 7)
    assert parse_model_config({"dynamic_batching": {}}).batching_delay_us == 0
    assert settings_for(ModelConfig(), ServingDefaults(), compiled_max_batch=8).batching_delay_us is None
    with pytest.raises(ConfigError, match=r"unknown field.*'max_batch'"):
        parse_model_config({"max_batch": 4})
    with pytest.raises(ConfigError, match=r"unknown dynamic_batching field.*'max_queue_delay_us'"):
        parse_model_config({"dynamic_batching": {"max_queue_delay_us": 1}})
    with pytest.raises(ConfigError, match="'instance_count' must be an integer >= 1, got 0"):
        parse_model_config({"instance_count": 0})
    with pytest.raises(ConfigError, match="max_batch_size 16 is over the module's compiled --max-batch 8"):
        settings_for(parse_model_config({"max_batch_size": 16}), ServingDefaults(), compiled_max_batch=8)


# --- in a server -----------------------------------------------------------------------------------


def _metric(text: str, name: str, labels: str) -> float:
    found = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    assert found, f"{name}{{{labels}}} not in the metrics"
    return float(found.group(1))


def test_a_batching_model_merges_concurrent_requests(tmp_path: Path) -> None:
    repo = Repo(tmp_path)
    repo.add_wasm("scale", 1, scale_model(SCALE[1]), max_batch=8)
    (tmp_path / "scale" / "config.json").write_text(json.dumps(
        {"max_batch_size": 8, "dynamic_batching": {"max_queue_delay_microseconds": 20_000_000}}))
    server = start_server(tmp_path, pool_size=2)
    try:
        def ask(i: int) -> list[float]:
            body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [i, i, i, i]}]}
            with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=60) as http:
                response = http.post("/v2/models/scale/infer", json=body)
            assert response.status_code == 200, response.text
            return list(response.json()["outputs"][0]["data"])

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(ask, range(16)))
        assert answers == [[i * 1.0, i * 2.0, i * 3.0, i * 4.0] for i in range(16)]
        metrics = httpx.get(f"http://127.0.0.1:{server.http_port}/metrics").text
        labels = 'model="scale",version="1"'
        # The delay is far longer than the requests take to arrive: full batches of 8 start at once. (On a
        # machine so loaded that arrivals spread over the delay, a partial batch may start: still fewer
        # runs than requests.)
        assert _metric(metrics, "wasinfer_batch_size_sum", labels) == 16
        assert _metric(metrics, "wasinfer_batch_size_count", labels) <= 8
        too_big = {"inputs": [{"name": "x", "shape": [9, 4], "datatype": "FP32", "data": [0.0] * 36}]}
        response = httpx.post(f"http://127.0.0.1:{server.http_port}/v2/models/scale/infer", json=too_big)
        assert response.status_code == 400 and "batch 9 is outside 1..8" in response.json()["error"]
    finally:
        server.stop(grace=2)


def test_a_bad_config_fails_the_load_with_its_reason(tmp_path: Path) -> None:
    repo = Repo(tmp_path)
    repo.add_wasm("scale", 1, scale_model(SCALE[1]), max_batch=4)
    (tmp_path / "scale" / "config.json").write_text(json.dumps({"max_batch_size": 16}))
    server = start_server(tmp_path)
    try:
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
        response = httpx.post(f"http://127.0.0.1:{server.http_port}/v2/models/scale/infer", json=body)
        assert response.status_code == 503
        assert "max_batch_size 16 is over the module's compiled --max-batch 4" in response.json()["error"]
    finally:
        server.stop(grace=2)
