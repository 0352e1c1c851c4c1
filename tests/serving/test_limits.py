"""Per-model concurrency, tensor size limits, and least-recently-used eviction under a memory budget."""

from __future__ import annotations

import re
import weakref
from pathlib import Path

import httpx
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.serving.conftest import SCALE, Repo, pair_model, scale_model, start_server
from wasinfer.serving.models import ModelManager


def _scale_body(rows: int = 1) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP32", "data": [1.0] * (4 * rows)}]}


def test_requests_over_the_per_model_concurrency_get_429_then_succeed(writable_repo: Repo) -> None:
    server = start_server(writable_repo.root, max_concurrency=1)
    try:
        url = f"http://127.0.0.1:{server.http_port}/v2/models/scale/infer"
        assert httpx.post(url, json=_scale_body()).status_code == 200
        model = server.manager.get("scale")
        model._admit()  # one request in flight: the limit is reached
        try:
            response = httpx.post(url, json=_scale_body())
            assert response.status_code == 429
            assert "1 requests in flight, its limit (--max-concurrency)" in response.json()["error"]
            client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
            tensor = grpcclient.InferInput("x", [1, 4], "FP32")
            tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
            try:
                client.infer("scale", [tensor])
                raise AssertionError("the gRPC request was not refused")
            except InferenceServerException as exc:
                assert exc.status() == "StatusCode.RESOURCE_EXHAUSTED" and "--max-concurrency" in exc.message()
            finally:
                client.close()
        finally:
            model._release()
        assert httpx.post(url, json=_scale_body()).status_code == 200
        metrics = httpx.get(f"http://127.0.0.1:{server.http_port}/metrics").text
        assert 'wasinfer_requests_total{model="scale",outcome="overloaded",protocol="rest",version="1"} 1.0' in metrics
    finally:
        server.stop(grace=2)


def test_a_tensor_over_max_tensor_elements_is_refused(writable_repo: Repo) -> None:
    server = start_server(writable_repo.root, max_tensor_elements=8)
    try:
        url = f"http://127.0.0.1:{server.http_port}/v2/models/scale/infer"
        assert httpx.post(url, json=_scale_body(2)).status_code == 200
        response = httpx.post(url, json=_scale_body(3))
        assert response.status_code == 400
        assert "input 'x' has 12 elements; this server takes at most 8" in response.json()["error"]
    finally:
        server.stop(grace=2)


def _state(server_port: int, name: str) -> str:
    rows = httpx.post(f"http://127.0.0.1:{server_port}/v2/repository/index", json={}).json()
    return next(row["state"] for row in rows if row["name"] == name)


def test_a_load_that_evicts_releases_its_waiting_requests_before_the_evicted_version_is_freed(
        tmp_path: Path) -> None:
    """Freeing an evicted version (its stores and memories) and logging it are system calls, each a GIL hand-over
    that may wait behind the event loop: they come after the requests waiting for the new load are released."""
    repo = Repo(tmp_path)
    for name in ("a", "b"):
        repo.add_wasm(name, 1, scale_model(SCALE[1]))
    server = start_server(tmp_path, pool_size=1, memory_budget_bytes=1)  # room for one model: each load evicts
    try:
        evicted = server.manager.get("a", "1")
        released_when_freed: list[bool] = []

        def freed(manager: ModelManager = server.manager) -> None:  # a's last reference went
            record = manager._records.get(("b", 1))
            released_when_freed.append(record is not None and record.done.is_set())

        weakref.finalize(evicted, freed)
        del evicted
        assert server.manager.get("b", "1").name == "b"  # loads b, evicting a
        assert released_when_freed == [True]
    finally:
        server.stop(grace=2)


def test_models_over_the_memory_budget_are_evicted_least_recently_used_first(tmp_path: Path) -> None:
    repo = Repo(tmp_path)
    for name in ("a", "b", "c"):
        repo.add_wasm(name, 1, scale_model(SCALE[1]))
    probe = start_server(tmp_path, pool_size=1)
    try:
        httpx.post(f"http://127.0.0.1:{probe.http_port}/v2/models/a/infer", json=_scale_body())
        one = probe.manager.memory_by_model()[("a", "1")]
    finally:
        probe.stop(grace=2)
    server = start_server(tmp_path, pool_size=1, memory_budget_bytes=2 * one + one // 2)  # room for two
    try:
        port = server.http_port

        def ask(name: str) -> None:
            response = httpx.post(f"http://127.0.0.1:{port}/v2/models/{name}/infer", json=_scale_body())
            assert response.status_code == 200, response.text
            np.testing.assert_array_equal(response.json()["outputs"][0]["data"], SCALE[1])

        ask("a")
        ask("b")
        ask("a")  # b is now the least recently used
        ask("c")
        assert (_state(port, "a"), _state(port, "b"), _state(port, "c")) == ("READY", "UNAVAILABLE", "READY")
        assert sorted(server.manager.memory_by_model()) == [("a", "1"), ("c", "1")]
        ask("b")  # waits for its reload, evicting a
        assert (_state(port, "a"), _state(port, "b")) == ("UNAVAILABLE", "READY")
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'wasinfer_model_evictions_total{model="b",version="1"} 1.0' in metrics
        assert 'wasinfer_model_evictions_total{model="a",version="1"} 1.0' in metrics
        assert re.search(r'wasinfer_model_memory_bytes\{model="c",version="1"\} \d', metrics)
        # five requests; a, b and c waited for their first loads and b for its reload: four misses
        assert "wasinfer_model_cache_misses_total 4.0" in metrics
        ratio = float(re.search(r"^wasinfer_model_cache_hit_ratio (\S+)$", metrics, re.M)[1])  # type: ignore[index]
        assert abs(ratio - (1 - 4 / 5)) < 1e-9
    finally:
        server.stop(grace=2)


def test_a_model_with_an_unbatched_tensor_runs_requests_alone(tmp_path: Path) -> None:
    repo = Repo(tmp_path)
    repo.add_wasm("pair", 1, pair_model(), max_batch=4)
    server = start_server(tmp_path, batch_delay_us=1000)
    try:
        assert server.manager.get("pair").batcher is not None  # every tensor batched: it can batch
    finally:
        server.stop(grace=2)
