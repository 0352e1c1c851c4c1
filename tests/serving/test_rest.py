"""The REST front end with a plain HTTP client: answers, the bad-input table, OpenAPI, metrics."""

from __future__ import annotations

import gzip
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.serving.conftest import MAX_BODY, SCALE, Repo, scale_model, start_server
from wasinfer.serving import Server


def client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=20)


def scale_request(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": "FP32",
                        "data": [v for row in rows for v in row]}], **extra}


def test_health_server_metadata_and_model_metadata(server: Server) -> None:
    with client(server) as http:
        assert http.get("/v2/health/live").status_code == 200
        assert http.get("/v2/health/ready").status_code == 200
        meta = http.get("/v2").json()
        assert meta["name"] == "wasinfer" and "binary_tensor_data" in meta["extensions"]
        assert "model_repository" in meta["extensions"]
        assert http.get("/v2/models/scale/ready").status_code == 503  # not loaded yet: a probe never loads
        model = http.get("/v2/models/scale").json()  # metadata loads it
        assert model == {"name": "scale", "versions": ["1", "2"], "platform": "wasinfer_wasm",
                         "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                         "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]}
        assert http.get("/v2/models/scale/ready").status_code == 200
        assert http.get("/v2/models/scale/versions/2/ready").status_code == 200  # 2 is the default
        assert http.get("/v2/models/scale/versions/1/ready").status_code == 503
        onnx_meta = http.get("/v2/models/count/versions/1").json()
        assert onnx_meta["platform"] == "onnxruntime_onnx"
        assert onnx_meta["inputs"] == [{"name": "n", "datatype": "INT64", "shape": [-1, 2]}]


def test_infer_json_default_and_explicit_versions(server: Server) -> None:
    x = [[1, 1, 1, 1], [0.5, 0, -1, 2]]
    with client(server) as http:
        for path, version in (("/v2/models/scale/infer", 2), ("/v2/models/scale/versions/1/infer", 1),
                              ("/v2/models/scale/versions/2/infer", 2)):
            response = http.post(path, json=scale_request(x, id="req-7"))
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["model_name"] == "scale" and body["model_version"] == str(version)
            assert body["id"] == "req-7"
            [output] = body["outputs"]
            assert output["name"] == "y" and output["datatype"] == "FP32" and output["shape"] == [2, 4]
            np.testing.assert_allclose(np.array(output["data"]).reshape(2, 4), np.array(x) * SCALE[version])
        # A dimension written 1.0 is the integer 1 (JSON, and JSON Schema's "integer", say so).
        assert http.post("/v2/models/scale/infer", json={"inputs": [
            {"name": "x", "shape": [1.0, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}).status_code == 200
        # Nested data is row-major data too.
        nested = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": x}]}
        assert http.post("/v2/models/scale/infer", json=nested).json()["outputs"][0]["shape"] == [2, 4]
        counted = http.post("/v2/models/count/infer", json={"inputs": [
            {"name": "n", "shape": [1, 2], "datatype": "INT64", "data": [41, -1]}]}).json()
        assert counted["outputs"][0]["data"] == [42, 0] and counted["outputs"][0]["datatype"] == "INT64"


def test_infer_binary_tensor_data_both_ways(server: Server) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.full((2, 3), 0.5, np.float32)
    header = json.dumps({
        "inputs": [{"name": "a", "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": 24}},
                   {"name": "b", "shape": [2, 3], "datatype": "FP32", "data": b.reshape(-1).tolist()}],
        "outputs": [{"name": "product", "parameters": {"binary_data": True}}, {"name": "sum"}],
    }).encode()
    with client(server) as http:
        response = http.post("/v2/models/pair/infer", content=header + a.tobytes(),
                             headers={"Inference-Header-Content-Length": str(len(header))})
        assert response.status_code == 200, response.text
        json_length = int(response.headers["inference-header-content-length"])
        body = json.loads(response.content[:json_length])
        product, total = body["outputs"]
        assert product["name"] == "product" and product["parameters"] == {"binary_data_size": 24}
        np.testing.assert_array_equal(np.frombuffer(response.content[json_length:], np.float32).reshape(2, 3), a * b)
        np.testing.assert_array_equal(np.array(total["data"]).reshape(2, 3), a + b)
        # binary_data_output asks for every output in binary.
        everything = http.post("/v2/models/pair/infer", json={
            "inputs": [{"name": n, "shape": [2, 3], "datatype": "FP32", "data": v.reshape(-1).tolist()}
                       for n, v in (("a", a), ("b", b))], "parameters": {"binary_data_output": True}})
        assert len(everything.content) - int(everything.headers["inference-header-content-length"]) == 48


def test_gzip_request_body(server: Server) -> None:
    body = gzip.compress(json.dumps(scale_request([[1, 2, 3, 4]])).encode())
    with client(server) as http:
        response = http.post("/v2/models/scale/versions/1/infer", content=body, headers={"Content-Encoding": "gzip"})
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [1, 4, 9, 16]
        refused = http.post("/v2/models/scale/infer", content=b"{}", headers={"Content-Encoding": "br"})
        assert refused.status_code == 400 and "Content-Encoding" in refused.json()["error"]


def _x(shape: list[int], data: Any, datatype: str = "FP32", name: str = "x") -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def _binary(size: int, blob: bytes) -> tuple[bytes, dict[str, str]]:
    """A binary-extension body whose input x declares `size` bytes, followed by `blob`."""
    header = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": size}}]}).encode()
    return header + blob, {"Inference-Header-Content-Length": str(len(header))}


OK_X = _x([1, 4], [1, 2, 3, 4])
BAD_REQUESTS: list[tuple[str, str, bytes | dict[str, Any], dict[str, str], int, str]] = [
    ("malformed JSON", "scale", b'{"inputs": [', {}, 400, "not valid JSON"),
    ("body not an object", "scale", b"[1, 2]", {}, 400, "must be a JSON object"),
    ("no inputs", "scale", {"inputs": []}, {}, 400, "non-empty list"),
    ("input without name", "scale", {"inputs": [{"shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]}, {}, 400,
     "\"name\" must be a string"),
    ("missing input", "pair", {"inputs": [_x([1, 3], [1, 2, 3], name="a")]}, {}, 400, "missing input(s) 'b'"),
    ("extra input", "scale", {"inputs": [OK_X, _x([1, 4], [1] * 4, name="z")]}, {}, 400,
     "unexpected input(s) 'z'"),
    ("duplicate input", "scale", {"inputs": [OK_X, OK_X]}, {}, 400, "given twice"),
    ("wrong datatype", "scale", {"inputs": [_x([1, 4], [1, 2, 3, 4], "INT32")]}, {}, 400,
     "expects datatype FP32, got INT32"),
    ("unknown datatype", "scale", {"inputs": [_x([1, 4], [1, 2, 3, 4], "FP33")]}, {}, 400, "unknown datatype"),
    ("wrong shape", "scale", {"inputs": [_x([1, 5], [1, 2, 3, 4, 5])]}, {}, 400, "expected shape [N, 4]"),
    ("batch over max", "scale", {"inputs": [_x([9, 4], [1] * 36)]}, {}, 400, "outside 1..8"),
    ("negative dim", "scale", {"inputs": [_x([-1, 4], [1] * 4)]}, {}, 400, "non-negative integers"),
    ("fractional dim", "scale", {"inputs": [_x([1.5, 4], [1] * 4)]}, {}, 400, "non-negative integers"),
    ("data shorter than shape", "scale", {"inputs": [_x([2, 4], [1, 2, 3, 4])]}, {}, 400,
     "4 values of data, but shape [2, 4] needs 8"),
    ("nested data not matching shape", "scale", {"inputs": [_x([2, 4], [[1, 2, 3, 4, 5, 6, 7, 8]])]}, {}, 400,
     "nested as [1, 8], but shape is [2, 4]"),
    ("ragged data", "scale", {"inputs": [_x([2, 2], [[1, 2], [3]])]}, {}, 400, "regular"),
    ("data of strings", "scale", {"inputs": [_x([1, 4], ["a", "b", "c", "d"])]}, {}, 400, "FP32 values"),
    ("no data", "scale", {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32"}]}, {}, 400,
     "neither \"data\" nor a binary_data_size"),
    ("unknown output", "scale", {"inputs": [OK_X], "outputs": [{"name": "nope"}]}, {}, 400, "has no output 'nope'"),
    ("binary size past the body", "scale", *_binary(16, b"1234"), 400, "does not fit"),
    ("binary size not matching shape", "scale", *_binary(8, b"12345678"), 400,
     "8 bytes of data, but shape [1, 4] of FP32 needs 16"),
    ("binary bytes left over", "scale", *_binary(16, bytes(20)), 400, "4 bytes of binary data"),
    ("header length past the body", "scale", b"{}", {"Inference-Header-Content-Length": "99"}, 400,
     "outside the body"),
    ("header length not a number", "scale", b"{}", {"Inference-Header-Content-Length": "x"}, 400, "not a number"),
    ("header length of 4,400 digits", "scale", b"{}", {"Inference-Header-Content-Length": "1" * 4400}, 400,
     "of 4400 digits is outside the body's 2 bytes"),
    ("data of strings that numpy would parse", "scale", {"inputs": [_x([1, 4], ["nan", "1", "2", "inf"])]}, {},
     400, "strings are not FP32 values"),
    ("data of nulls", "scale", {"inputs": [_x([1, 4], [None, 1, 2, 3])]}, {}, 400,
     "FP32 data must be JSON numbers; got null"),
    ("unknown model", "nosuch", {"inputs": [OK_X]}, {}, 404, "unknown model 'nosuch'"),
    ("path-walking model name", "%2E%2E", {"inputs": [OK_X]}, {}, 404, "unknown model"),
    ("oversized body", "scale", b"[" + b"1," * MAX_BODY + b"1]", {}, 413, "at most"),
    ("model whose load fails", "broken", {"inputs": [OK_X]}, {}, 503, "load failed"),
]


@pytest.mark.parametrize(("model", "body", "headers", "status", "message"),
                         [case[1:] for case in BAD_REQUESTS], ids=[case[0] for case in BAD_REQUESTS])
def test_bad_requests(shared_server: Server, model: str, body: bytes | dict[str, Any], headers: dict[str, str],
                      status: int, message: str) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with client(shared_server) as http:
        response = http.post(f"/v2/models/{model}/infer", content=content, headers=headers)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_unknown_versions_routes_and_methods(shared_server: Server) -> None:
    with client(shared_server) as http:
        for path in ("/v2/models/scale/versions/3/infer", "/v2/models/scale/versions/x/infer"):
            response = http.post(path, json=scale_request([[1, 2, 3, 4]]))
            assert response.status_code == 404 and "has no version" in response.json()["error"]
        assert http.get("/v2/models/scale/versions/7").status_code == 404
        assert http.get("/v2/models/nosuch/ready").status_code == 404
        assert http.get("/v2/nowhere").status_code == 404
        assert http.get("/elsewhere").status_code == 404
        wrong = http.get("/v2/models/scale/infer")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
        assert http.post("/v2/health/live").status_code == 405
        failed = http.post("/v2/repository/models/broken/load")
        assert failed.status_code == 503 and "load failed" in failed.json()["error"]


def test_unload_gives_503_until_load(writable_repo: Repo) -> None:
    running = start_server(writable_repo.root)
    try:
        with client(running) as http:
            assert http.post("/v2/models/scale/infer", json=scale_request([[1, 1, 1, 1]])).status_code == 200
            assert http.post("/v2/repository/models/scale/unload").status_code == 200
            refused = http.post("/v2/models/scale/infer", json=scale_request([[1, 1, 1, 1]]))
            assert refused.status_code == 503 and "unloaded" in refused.json()["error"]
            assert http.get("/v2/models/scale/ready").status_code == 503
            index = http.post("/v2/repository/index").json()
            assert index == [{"name": "scale", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}]
            # A new version on disk becomes the default with the next load.
            writable_repo.add_wasm("scale", 2, scale_model(SCALE[2]))
            assert http.post("/v2/repository/models/scale/load", json={}).status_code == 200
            answer = http.post("/v2/models/scale/infer", json=scale_request([[1, 1, 1, 1]])).json()
            assert answer["model_version"] == "2" and answer["outputs"][0]["data"] == [10, 20, 30, 40]
            ready = http.post("/v2/repository/index", json={"ready": True}).json()
            assert ready == [{"name": "scale", "version": "2", "state": "READY", "reason": ""}]
            # A rewritten file reloads on the next load; an unchanged one is not loaded again.
            path = writable_repo.add_wasm("scale", 2, scale_model(SCALE[1]))
            os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
            assert http.post("/v2/repository/models/scale/load").status_code == 200
            assert http.post("/v2/repository/models/scale/load").status_code == 200
            answer = http.post("/v2/models/scale/infer", json=scale_request([[1, 1, 1, 1]])).json()
            assert answer["outputs"][0]["data"] == [1, 2, 3, 4]
            starts = re.findall(r'wasinfer_cold_starts_total\{model="scale",outcome="ok",version="2"\} (\S+)',
                                http.get("/metrics").text)
            assert starts == ["2.0"]
            assert http.post("/v2/repository/models/nosuch/load").status_code == 404
            assert http.post("/v2/repository/models/nosuch/unload").status_code == 404
            refused = http.post("/v2/repository/models/scale/load", json={"parameters": {"config": "{}"}})
            assert refused.status_code == 400 and "not supported" in refused.json()["error"]
    finally:
        running.stop(grace=2)


def test_concurrent_first_requests_share_one_cold_start(repository: Path) -> None:
    running = start_server(repository)
    try:
        results: list[int] = []

        def call() -> None:
            with client(running) as http:
                results.append(http.post("/v2/models/pair/infer", json={"inputs": [
                    {"name": n, "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]} for n in ("a", "b")]}
                ).status_code)

        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert results == [200] * 4
        with client(running) as http:
            metrics = http.get("/metrics").text
        assert 'wasinfer_cold_starts_total{model="pair",outcome="ok",version="1"} 1.0' in metrics
    finally:
        running.stop(grace=2)


def test_metrics_count_requests_by_outcome(server: Server) -> None:
    with client(server) as http:
        assert http.post("/v2/models/scale/infer", json=scale_request([[1, 2, 3, 4]])).status_code == 200
        assert http.post("/v2/models/scale/infer", json={"inputs": [_x([1, 3], [1, 2, 3])]}).status_code == 400
        assert http.post("/v2/models/nosuch/infer", json=scale_request([[1, 2, 3, 4]])).status_code == 404
        response = http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'wasinfer_requests_total{model="scale",outcome="ok",protocol="rest",version="2"} 1.0' in text
    assert 'wasinfer_requests_total{model="scale",outcome="bad_request",protocol="rest",version="2"} 1.0' in text
    assert 'wasinfer_requests_total{model="",outcome="not_found",protocol="rest",version=""} 1.0' in text
    assert 'wasinfer_request_duration_seconds_count{model="scale",protocol="rest",version="2"} 1.0' in text
    assert 'wasinfer_inference_duration_seconds_count{model="scale",version="2"} 1.0' in text
    assert "wasinfer_models_loaded 1.0" in text
    assert re.search(r'wasinfer_cold_start_duration_seconds_count\{model="scale",version="2"\} 1\.0', text)
    names = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    assert names and all(name.startswith(("wasinfer_", "process_")) for name in names)  # process_*: the alerts'
    assert "process_resident_memory_bytes" in names


def _route_pattern(path: str) -> str:
    return "^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"


def test_openapi_describes_every_route(server: Server) -> None:
    with client(server) as http:
        document = http.get("/v2/openapi.json").json()
        assert document["openapi"].startswith("3.")
        paths = document["paths"]
        # Every documented path and method is answered (with anything but 404 / 405 on a real model).
        for path, item in paths.items():
            concrete = path.replace("{model}", "scale").replace("{version}", "1")
            for method in ("get", "post"):
                if method in item:
                    response = http.request(method.upper(), concrete)
                    assert response.status_code not in (404, 405), (method, path, response.text)
        # Every answered route is documented.
        answered = ["/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/m", "/v2/models/m/versions/1",
                    "/v2/models/m/ready", "/v2/models/m/versions/1/ready", "/v2/models/m/infer",
                    "/v2/models/m/versions/1/infer", "/v2/repository/index", "/v2/repository/models/m/load",
                    "/v2/repository/models/m/unload", "/v2/openapi.json", "/metrics", "/v2/models/m/config",
                    "/v2/models/m/versions/1/config", "/v2/models/stats", "/v2/models/m/stats",
                    "/v2/models/m/versions/1/stats"]
        for route in answered:
            assert any(re.match(_route_pattern(p), route) for p in paths), route
        refs = re.findall(r'"\$ref":"#/components/schemas/([^"]+)"', json.dumps(document, separators=(",", ":")))
        assert refs and set(refs) <= set(document["components"]["schemas"])
