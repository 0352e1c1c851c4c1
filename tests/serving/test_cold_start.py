"""Where a cold start runs: a small module whose compiled code the cache maps loads on the request's own thread.

On a load thread such a load took p99 24-44 ms under traffic where it takes 1-2 ms alone (each step hands the GIL
over and waits behind the event loop to get it back: docs/performance.md); a load that compiles, waits for another
request's load of the same version, or reads an ONNX model still goes to the load threads.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import onnx
import pytest

from tests.serving.conftest import SCALE, Repo, count_model, scale_model, start_server
from wasinfer.runtime import CompiledCache
from wasinfer.serving.metrics import Metrics
from wasinfer.serving.models import QUICK_LOAD_BYTES, ModelManager
from wasinfer.serving.repository import Repository

BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]}


class NoLoadThreads(ThreadPoolExecutor):
    """A load executor that refuses work: a request that needs it fails, so one that succeeds loaded elsewhere."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        raise RuntimeError(f"the load executor was asked to run {fn.__name__}")


def repository(tmp_path: Path) -> Repo:
    repo = Repo(tmp_path / "repo")
    repo.add_wasm("scale", 1, scale_model(SCALE[1]))
    repo.add_wasm("other", 1, scale_model(SCALE[2]))
    (repo.root / "count" / "1").mkdir(parents=True)
    onnx.save(count_model(), repo.root / "count" / "1" / "model.onnx")
    return repo


def test_a_cached_small_module_loads_quickly_and_the_others_do_not(tmp_path: Path) -> None:
    repo, cache = repository(tmp_path), CompiledCache(tmp_path / "cache")
    manager = ModelManager(Repository(repo.root), Metrics(), pool_size=1, cache=cache)
    assert not manager.loads_quickly("scale")  # not compiled yet: the load compiles
    manager.get("scale")
    assert not manager.loads_quickly("scale")  # loaded (or loading): its record answers
    assert manager.loads_quickly("other") is False  # compiled by nobody yet
    fresh = ModelManager(Repository(repo.root), Metrics(), pool_size=1, cache=cache)
    assert fresh.loads_quickly("scale")  # the cache maps its code: a millisecond or two
    assert not fresh.loads_quickly("count")  # ONNX Runtime builds a session: not quick
    assert fresh.loads_quickly("no-such-model")  # answered at once, 404
    (repo.root / "scale" / "1" / "model.wasm").write_bytes(b"\0" * QUICK_LOAD_BYTES)  # a big module, not cached
    assert not fresh.loads_quickly("scale")


def test_a_cold_start_from_the_cache_runs_on_the_request_s_thread(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    repo = repository(tmp_path)
    first = start_server(repo.root, cache_dir=tmp_path / "cache")
    try:  # fills the compiled-code cache, on the load threads (it compiles)
        for name in ("scale", "other"):
            assert httpx.post(f"http://127.0.0.1:{first.http_port}/v2/models/{name}/infer", json=BODY,
                              timeout=30).status_code == 200
    finally:
        first.stop(grace=2)
    server = start_server(repo.root, cache_dir=tmp_path / "cache")
    try:
        server.app.load_executor = NoLoadThreads()
        url = f"http://127.0.0.1:{server.http_port}/v2/models"
        answer = httpx.post(f"{url}/scale/infer", json=BODY, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == SCALE[1].tolist()
        assert httpx.post(f"{url}/other/infer", json=BODY, timeout=30).json()["outputs"][0]["data"] == \
            SCALE[2].tolist()
        assert "load executor" not in caplog.text
        # an ONNX model still loads on a load thread: here, none, so its request fails (500, logged)
        count = httpx.post(f"{url}/count/infer", json={"inputs": [{"name": "n", "shape": [1, 2], "datatype": "INT64",
                                                                     "data": [1, 2]}]}, timeout=30)
        assert count.status_code == 500 and "the load executor was asked to run get" in caplog.text
    finally:
        server.stop(grace=2)
