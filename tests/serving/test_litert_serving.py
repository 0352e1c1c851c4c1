"""model.tflite in a repository, served by LiteRT through both protocols, against TensorFlow's outputs.

The models and reference outputs are the committed fixtures from `tests/fixtures/make_tflite.py`.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient

from tests.serving.conftest import count_model, start_server
from wasinfer.runtime.litert import LiteRtModel
from wasinfer.serving import Server
from wasinfer.serving.repository import Repository

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "tflite_reference.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def tflite_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dense (dynamic batch), conv (batch fixed at 1), both (model.onnx next to model.tflite)."""
    root = tmp_path_factory.mktemp("tflite-repository")
    for name, fixture in (("dense", "dense_softmax"), ("conv", "conv_fixed"), ("both", "dense_softmax")):
        (root / name / "1").mkdir(parents=True)
        shutil.copyfile(FIXTURES / f"{fixture}.tflite", root / name / "1" / "model.tflite")
    onnx.save(count_model(), root / "both" / "1" / "model.onnx")
    return root


@pytest.fixture(scope="module")
def server(tflite_repository: Path) -> Iterator[Server]:
    running = start_server(tflite_repository)
    try:
        yield running
    finally:
        running.stop(grace=2)


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=20) as client:
        yield client


def _tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    return {"name": name, "shape": list(array.shape), "datatype": "FP32", "data": array.ravel().tolist()}


def test_the_file_name_picks_the_backend(tflite_repository: Path) -> None:
    versions = Repository(tflite_repository).versions
    assert versions("dense")[1].format == "tflite" and versions("conv")[1].path.name == "model.tflite"
    assert versions("both")[1].format == "onnx"  # wasm, onnx, tflite: in that order of preference


def test_metadata_shows_platform_and_batch(http: httpx.Client) -> None:
    dense = http.get("/v2/models/dense").json()
    assert dense == {"name": "dense", "versions": ["1"], "platform": "tensorflow_lite",
                     "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                     "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]}
    conv = http.get("/v2/models/conv/versions/1").json()
    assert conv["platform"] == "tensorflow_lite"
    assert conv["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [1, 8, 8, 1]}]
    assert conv["outputs"] == [{"name": "features", "datatype": "FP32", "shape": [1, 6, 6, 2]},
                               {"name": "logits", "datatype": "FP32", "shape": [1, 3]}]
    assert http.get("/v2/models/both").json()["platform"] == "onnxruntime_onnx"


@pytest.mark.parametrize("batch", [1, 3])
def test_rest_json_infer(http: httpx.Client, reference: dict[str, np.ndarray], batch: int) -> None:
    response = http.post("/v2/models/dense/infer", json={"inputs": [_tensor("x", reference[f"dense_x_{batch}"])]})
    assert response.status_code == 200, response.text
    [output] = response.json()["outputs"]
    assert output["name"] == "probabilities" and output["datatype"] == "FP32" and output["shape"] == [batch, 3]
    np.testing.assert_allclose(np.array(output["data"], np.float32).reshape(batch, 3),
                               reference[f"dense_probabilities_{batch}"], RTOL, ATOL)


def test_grpc_infer_with_tritonclient(server: Server, reference: dict[str, np.ndarray]) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        image = grpcclient.InferInput("image", [1, 8, 8, 1], "FP32")
        image.set_data_from_numpy(reference["conv_image"])
        result = client.infer("conv", [image], outputs=[grpcclient.InferRequestedOutput("logits"),
                                                        grpcclient.InferRequestedOutput("features")])
        np.testing.assert_allclose(result.as_numpy("logits"), reference["conv_logits"], RTOL, ATOL)
        np.testing.assert_allclose(result.as_numpy("features"), reference["conv_features"], RTOL, ATOL)
        x = grpcclient.InferInput("x", [3, 4], "FP32")
        x.set_data_from_numpy(reference["dense_x_3"])
        probabilities = client.infer("dense", [x]).as_numpy("probabilities")
        np.testing.assert_allclose(probabilities, reference["dense_probabilities_3"], RTOL, ATOL)
    finally:
        client.close()


@pytest.mark.parametrize(("model", "tensor"), [
    ("dense", _tensor("x", np.zeros((2, 5), np.float32))),
    ("conv", _tensor("image", np.zeros((2, 8, 8, 1), np.float32))),  # its batch is fixed at 1
    ("conv", _tensor("image", np.zeros((64,), np.float32))),
])
def test_wrong_shapes_are_400(http: httpx.Client, model: str, tensor: dict[str, Any]) -> None:
    response = http.post(f"/v2/models/{model}/infer", json={"inputs": [tensor]})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "shape" in error and str(tensor["shape"]) in error


def test_each_pooled_instance_has_its_own_interpreter(server: Server) -> None:
    """A LiteRT interpreter is not thread-safe: unlike ONNX Runtime's session, instances are not shared."""
    pool = server.manager.get("dense").pool
    assert pool._size >= 2  # start_server's pool_size; with 1 the second acquire would wait forever
    first, second = pool._acquire(), pool._acquire()  # both held: the second must be a new instance
    try:
        assert isinstance(first, LiteRtModel) and isinstance(second, LiteRtModel) and first is not second
        assert first.info is second.info  # parsed once, at load
    finally:
        pool._idle.put(first)
        pool._idle.put(second)


def test_concurrent_grpc_requests_with_mixed_batches(server: Server, reference: dict[str, np.ndarray]) -> None:
    """gRPC runs requests on worker threads, so concurrent ones run on different pooled instances."""
    x3, p3 = reference["dense_x_3"], reference["dense_probabilities_3"]
    failures: list[str] = []

    def work(worker: int) -> None:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            for i in range(20):
                batch = 1 + (worker + i) % 3
                x = grpcclient.InferInput("x", [batch, 4], "FP32")
                x.set_data_from_numpy(x3[:batch])
                data = client.infer("dense", [x]).as_numpy("probabilities")
                if data is None or not np.allclose(data, p3[:batch], RTOL, ATOL):
                    failures.append(f"batch {batch}: {data} != {p3[:batch].tolist()}")
        except Exception as exc:  # reported below, not lost in the thread
            failures.append(repr(exc))
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures[:3]
