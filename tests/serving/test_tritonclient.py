"""Compatibility: tritonclient's HTTP and gRPC clients, used unchanged, against the server."""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.serving.conftest import SCALE, Repo, grpc_client, scale_model, start_server
from wasinfer.serving import Server


@pytest.fixture
def http(server: Server) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}", network_timeout=20.0)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def grpc(server: Server) -> Iterator[grpcclient.InferenceServerClient]:
    with grpc_client(server) as client:
        yield client


def _pair_inputs(module: Any, a: np.ndarray, b: np.ndarray, binary: bool | None) -> list[Any]:
    """InferInputs of the pair model for either client module (gRPC's has no binary_data: always binary)."""
    inputs = [module.InferInput("a", list(a.shape), "FP32"), module.InferInput("b", list(b.shape), "FP32")]
    for tensor, value in zip(inputs, (a, b), strict=True):
        if binary is None:
            tensor.set_data_from_numpy(value)
        else:
            tensor.set_data_from_numpy(value, binary_data=binary)
    return inputs


def test_http_health_and_metadata(http: httpclient.InferenceServerClient) -> None:
    assert http.is_server_live() and http.is_server_ready()
    meta = http.get_server_metadata()
    assert meta["name"] == "wasinfer" and "model_repository" in meta["extensions"]
    assert not http.is_model_ready("scale")
    model = http.get_model_metadata("scale", "1")
    assert model["versions"] == ["1", "2"] and model["inputs"][0]["shape"] == [-1, 4]
    assert http.is_model_ready("scale", "1") and not http.is_model_ready("scale", "2")
    with pytest.raises(InferenceServerException, match="unknown model"):
        http.get_model_metadata("nosuch")


@pytest.mark.parametrize("binary", [False, True])
def test_http_infer_json_and_binary(http: httpclient.InferenceServerClient, binary: bool) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((3, 3)).astype(np.float32), rng.standard_normal((3, 3)).astype(np.float32)
    outputs = [httpclient.InferRequestedOutput("sum", binary_data=binary),
               httpclient.InferRequestedOutput("product", binary_data=not binary)]
    result = http.infer("pair", _pair_inputs(httpclient, a, b, binary), outputs=outputs, request_id="r1")
    np.testing.assert_allclose(result.as_numpy("sum"), a + b, rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("product"), a * b, rtol=1e-6)
    assert result.get_response()["id"] == "r1"
    every = http.infer("pair", _pair_inputs(httpclient, a, b, binary))  # no outputs named: all, as JSON
    np.testing.assert_allclose(every.as_numpy("sum"), a + b, rtol=1e-6)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    scaled = httpclient.InferInput("x", [2, 4], "FP32")
    scaled.set_data_from_numpy(x, binary_data=binary)
    np.testing.assert_array_equal(http.infer("scale", [scaled], model_version="1").as_numpy("y"), x * SCALE[1])


def test_http_compressed_request(http: httpclient.InferenceServerClient) -> None:
    a = np.ones((1, 3), np.float32)
    for algorithm in ("gzip", "deflate"):
        result = http.infer("pair", _pair_inputs(httpclient, a, a, True), request_compression_algorithm=algorithm)
        np.testing.assert_array_equal(result.as_numpy("sum"), a + a)


def test_http_errors_raise_with_server_message(http: httpclient.InferenceServerClient) -> None:
    wrong = httpclient.InferInput("x", [1, 4], "INT32")
    wrong.set_data_from_numpy(np.ones((1, 4), np.int32))
    with pytest.raises(InferenceServerException, match="expects datatype FP32, got INT32") as error:
        http.infer("scale", [wrong])
    assert error.value.status() == "400"
    with pytest.raises(InferenceServerException, match="unknown model"):
        http.infer("nosuch", [wrong])


def test_grpc_health_metadata_and_infer(grpc: grpcclient.InferenceServerClient) -> None:
    assert grpc.is_server_live() and grpc.is_server_ready()
    meta = grpc.get_server_metadata()
    assert meta.name == "wasinfer" and "binary_tensor_data" in meta.extensions
    assert not grpc.is_model_ready("pair")
    model = grpc.get_model_metadata("pair", as_json=True)
    assert model["platform"] == "wasinfer_wasm"
    assert [t["name"] for t in model["outputs"]] == ["sum", "product"]
    assert [int(d) for d in model["inputs"][0]["shape"]] == [-1, 3]
    assert grpc.is_model_ready("pair")

    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    result = grpc.infer("pair", _pair_inputs(grpcclient, a, b, None), request_id="g1",
                        outputs=[grpcclient.InferRequestedOutput("product")])
    np.testing.assert_allclose(result.as_numpy("product"), a * b, rtol=1e-6)
    assert result.as_numpy("sum") is None and result.get_response().id == "g1"
    every = grpc.infer("pair", _pair_inputs(grpcclient, a, b, None))
    np.testing.assert_allclose(every.as_numpy("sum"), a + b, rtol=1e-6)

    n = grpcclient.InferInput("n", [2, 2], "INT64")
    n.set_data_from_numpy(np.array([[1, 2], [3, 4]], np.int64))
    counted = grpc.infer("count", [n], model_version="1")
    np.testing.assert_array_equal(counted.as_numpy("next"), [[2, 3], [4, 5]])


GRPC_ERRORS = [
    ("unknown model", "nosuch", "x", [1, 4], "FP32", "StatusCode.NOT_FOUND", "unknown model"),
    ("unknown version", "scale", "x", [1, 4], "FP32", "StatusCode.NOT_FOUND", "has no version '9'"),
    ("wrong datatype", "scale", "x", [1, 4], "FP64", "StatusCode.INVALID_ARGUMENT", "expects datatype FP32"),
    ("wrong shape", "scale", "x", [2, 2], "FP32", "StatusCode.INVALID_ARGUMENT", "expected shape [N, 4]"),
    ("unexpected input", "scale", "z", [1, 4], "FP32", "StatusCode.INVALID_ARGUMENT", "unexpected input(s) 'z'"),
    ("load fails", "broken", "x", [1, 4], "FP32", "StatusCode.UNAVAILABLE", "load failed"),
]


@pytest.mark.parametrize(("model", "name", "shape", "datatype", "status", "message"),
                         [case[1:] for case in GRPC_ERRORS], ids=[case[0] for case in GRPC_ERRORS])
def test_grpc_error_codes(shared_server: Server, model: str, name: str, shape: list[int], datatype: str, status: str,
                          message: str) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{shared_server.grpc_port}")
    try:
        tensor = grpcclient.InferInput(name, shape, datatype)
        tensor.set_data_from_numpy(np.ones(shape, np.dtype("float64" if datatype == "FP64" else "float32")))
        with pytest.raises(InferenceServerException) as error:
            client.infer(model, [tensor], model_version="9" if "version" in message else "")
        assert error.value.status() == status
        assert message in error.value.message()
    finally:
        client.close()


def test_grpc_oversized_message_is_refused(shared_server: Server) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{shared_server.grpc_port}")
    try:
        tensor = grpcclient.InferInput("x", [8, 4 * 4096], "FP32")
        tensor.set_data_from_numpy(np.ones((8, 4 * 4096), np.float32))  # 512 KiB > the 256 KiB limit
        with pytest.raises(InferenceServerException) as error:
            client.infer("scale", [tensor])
        assert error.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    finally:
        client.close()


def test_repository_extension_over_both_clients(writable_repo: Repo) -> None:
    writable_repo.add_wasm("other", 1, scale_model(SCALE[2]))
    running = start_server(writable_repo.root)
    http = httpclient.InferenceServerClient(f"127.0.0.1:{running.http_port}", network_timeout=20.0)
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{running.grpc_port}")
    try:
        index = http.get_model_repository_index()
        assert [(m["name"], m["state"]) for m in index] == [("other", "UNAVAILABLE"), ("scale", "UNAVAILABLE")]
        http.load_model("scale")
        assert http.is_model_ready("scale") and grpc.is_model_ready("scale")
        grpc.load_model("other")
        ready = grpc.get_model_repository_index(as_json=True)["models"]
        assert [(m["name"], m["version"], m["state"]) for m in ready] == [("other", "1", "READY"),
                                                                          ("scale", "1", "READY")]
        grpc.unload_model("scale")
        assert not http.is_model_ready("scale")
        x = grpcclient.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(np.ones((1, 4), np.float32))
        with pytest.raises(InferenceServerException) as error:
            grpc.infer("scale", [x])
        assert error.value.status() == "StatusCode.UNAVAILABLE"
        http.unload_model("other")
        with pytest.raises(InferenceServerException, match="unknown model"):
            grpc.load_model("nosuch")
        writable_repo.add_wasm("scale", 2, scale_model(SCALE[2]))
        grpc.load_model("scale")
        np.testing.assert_array_equal(grpc.infer("scale", [x]).as_numpy("y"), [SCALE[2]])
        with pytest.raises(InferenceServerException, match="not supported"):
            http.load_model("scale", config="{}")
    finally:
        grpc.close()
        http.close()
        running.stop(grace=2)


def test_both_protocols_report_metrics(repository: Path) -> None:
    running = start_server(repository)
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{running.grpc_port}")
    http = httpclient.InferenceServerClient(f"127.0.0.1:{running.http_port}", network_timeout=20.0)
    try:
        x = grpcclient.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(np.ones((1, 4), np.float32))
        grpc.infer("scale", [x])
        hx = httpclient.InferInput("x", [1, 4], "FP32")
        hx.set_data_from_numpy(np.ones((1, 4), np.float32))
        http.infer("scale", [hx])
        with urllib.request.urlopen(f"http://127.0.0.1:{running.http_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        for protocol in ("grpc", "rest"):
            series = f'wasinfer_requests_total{{model="scale",outcome="ok",protocol="{protocol}",version="2"}}'
            assert f"{series} 1.0" in text
    finally:
        http.close()
        grpc.close()
        running.stop(grace=2)


# Every public method of both tritonclient.InferenceServerClient classes, and how this test calls it. A method
# tritonclient adds later fails test_every_client_method_is_audited until it is listed here.
EXTENSION_CALLS: dict[str, Any] = {
    "get_trace_settings": lambda c: c.get_trace_settings(),
    "update_trace_settings": lambda c: c.update_trace_settings(settings={"trace_level": ["OFF"]}),
    "get_log_settings": lambda c: c.get_log_settings(),
    "update_log_settings": lambda c: c.update_log_settings(settings={"log_verbose_level": 0}),
    "get_system_shared_memory_status": lambda c: c.get_system_shared_memory_status(),
    "register_system_shared_memory": lambda c: c.register_system_shared_memory("region", "/wasinfer", 16),
    "unregister_system_shared_memory": lambda c: c.unregister_system_shared_memory(),
    "get_cuda_shared_memory_status": lambda c: c.get_cuda_shared_memory_status(),
    "register_cuda_shared_memory": lambda c: c.register_cuda_shared_memory("region", b"\0" * 64, 0, 16),
    "unregister_cuda_shared_memory": lambda c: c.unregister_cuda_shared_memory(),
}
WORKING = {"is_server_live", "is_server_ready", "is_model_ready", "get_server_metadata", "get_model_metadata",
           "get_model_config", "get_model_repository_index", "get_inference_statistics", "load_model",
           "unload_model", "infer", "async_infer"}  # tested above and in test_triton_extensions.py
LOCAL = {"close", "plugin", "register_plugin", "unregister_plugin", "generate_request_body", "parse_response_body",
         "start_stream", "stop_stream", "async_stream_infer"}  # no request of their own (streams: below)


@pytest.mark.parametrize("module", [grpcclient, httpclient], ids=["grpc", "http"])
def test_every_client_method_is_audited(module: Any) -> None:
    import inspect

    methods = {name for name, _ in inspect.getmembers(module.InferenceServerClient, inspect.isfunction)
               if not name.startswith("_")}
    assert methods <= WORKING | LOCAL | set(EXTENSION_CALLS), methods - WORKING - LOCAL - set(EXTENSION_CALLS)


@pytest.mark.parametrize("method", sorted(EXTENSION_CALLS))
def test_an_extension_wasinfer_lacks_is_unimplemented_by_name_over_both_protocols(
        method: str, http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient) -> None:
    """Triton's trace, logging and shared-memory extensions: perf_analyzer and tritonclient users get
    UNIMPLEMENTED (gRPC) / 501 (REST) saying which extension wasinfer lacks and which it has, not "Method not
    found!" or a 404 for a route. The CUDA registration is refused by the client itself without a GPU."""
    for client, unimplemented in ((grpc, "StatusCode.UNIMPLEMENTED"), (http, "501")):
        with pytest.raises(Exception) as caught:
            EXTENSION_CALLS[method](client)
        text = str(caught.value)
        if method == "register_cuda_shared_memory" and unimplemented not in text:
            continue  # tritonclient checks the raw handle before it sends anything
        assert unimplemented in text and "extension is not supported by wasinfer" in text, text
        assert "model_configuration" in text  # and it lists the extensions there are


def test_a_stream_is_unimplemented_by_name(grpc: grpcclient.InferenceServerClient) -> None:
    import time

    answers: list[Any] = []
    grpc.start_stream(callback=lambda result, error: answers.append(error))
    tensor = grpcclient.InferInput("x", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
    # the server may end the stream before the request goes out: the callback says why
    with contextlib.suppress(InferenceServerException):
        grpc.async_stream_infer("scale", [tensor])
    deadline = time.monotonic() + 20
    while not answers and time.monotonic() < deadline:
        time.sleep(0.05)
    grpc.stop_stream()
    assert answers and "UNIMPLEMENTED" in str(answers[0]) and "streaming (ModelStreamInfer)" in str(answers[0])
