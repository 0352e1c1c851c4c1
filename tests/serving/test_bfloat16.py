"""A model with bfloat16 inputs and outputs served as KServe v2's BF16: REST JSON, REST binary and gRPC (raw
contents), end to end through a compiled module (its bfloat16 tensors cross the ABI as 2-byte elements)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import ml_dtypes
import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
from onnx import TensorProto, helper

from tests.serving.conftest import Repo, grpc_client, start_server
from wasinfer.serving.server import Server

BF16 = np.dtype(ml_dtypes.bfloat16)
# bfloat16 values: a float32 holds each exactly, so JSON carries them as numbers; raw data carries infinities too
X = np.array([[1.5, -0.0078125, 3.0e38, 65280.0], [1e-30, -2.0, 0.1015625, -3.0]], np.float32).astype(BF16)
RAW = np.array([[1.5, -0.0078125, 3.0e38, 65280.0], [np.inf, -2.0, 0.1015625, -np.inf]], np.float32).astype(BF16)


def flip_model() -> onnx.ModelProto:
    """Transpose then Cast to float32 and back: y is x's transpose (bfloat16), z the same in float32."""
    nodes = [helper.make_node("Transpose", ["x"], ["y"]),
             helper.make_node("Cast", ["y"], ["z"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "flip", [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [4, 2]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, [4, 2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    repo = Repo(tmp_path / "repo")
    repo.add_wasm("flip", 1, flip_model(), max_batch=1)
    running = start_server(repo.root)
    try:
        yield running
    finally:
        running.stop(grace=2)


def test_model_metadata_names_bf16(server: Server) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=20) as http:
        meta = http.get("/v2/models/flip").json()
    assert meta["inputs"] == [{"name": "x", "datatype": "BF16", "shape": [2, 4]}]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [("y", "BF16"), ("z", "FP32")]


def test_bf16_over_rest_json_and_binary(server: Server) -> None:
    want = X.T.astype(np.float32)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=20) as http:
        as_json = http.post("/v2/models/flip/infer", content=json.dumps({"inputs": [
            {"name": "x", "shape": [2, 4], "datatype": "BF16", "data": X.astype(np.float32).reshape(-1).tolist()}]}))
        assert as_json.status_code == 200, as_json.text
        y, z = as_json.json()["outputs"]
        assert y["datatype"] == "BF16" and y["shape"] == [4, 2]
        np.testing.assert_array_equal(np.array(y["data"], np.float32).reshape(4, 2), want)
        np.testing.assert_array_equal(np.array(z["data"], np.float32).reshape(4, 2), want)
        header = json.dumps({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "BF16",
                                         "parameters": {"binary_data_size": RAW.nbytes}}],
                             "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
        binary = http.post("/v2/models/flip/infer", content=header + RAW.tobytes(),
                           headers={"Inference-Header-Content-Length": str(len(header))})
        assert binary.status_code == 200, binary.text
        length = int(binary.headers["inference-header-content-length"])
        assert json.loads(binary.content[:length])["outputs"][0]["parameters"] == {"binary_data_size": 16}
        got = np.frombuffer(binary.content[length:], BF16).reshape(4, 2)
        assert got.view(np.uint16).tolist() == RAW.T.view(np.uint16).tolist()  # bit for bit
        wrong = http.post("/v2/models/flip/infer", content=json.dumps({"inputs": [
            {"name": "x", "shape": [2, 4], "datatype": "BF16", "data": ["1.5"] * 8}]}))
        assert wrong.status_code == 400 and "strings are not BF16 values" in wrong.text


def test_bf16_over_grpc(server: Server) -> None:
    with grpc_client(server) as client:
        x = grpcclient.InferInput("x", [2, 4], "BF16")
        x.set_data_from_numpy(RAW)
        result = client.infer("flip", [x])
        assert result.as_numpy("y").astype(np.float32).tolist() == RAW.T.astype(np.float32).tolist()
        np.testing.assert_array_equal(result.as_numpy("z"), RAW.T.astype(np.float32))
        assert result.get_output("y").datatype == "BF16"


def test_a_float8_output_has_no_kserve_datatype_and_its_model_is_not_served(tmp_path: Path) -> None:
    """KServe v2 has no float8 datatype: the model's load fails naming the dtype, and requests get a 503 saying so."""
    graph = helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT8E4M3FN)], "f8",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT8E4M3FN, [2])])
    repo = Repo(tmp_path / "repo")
    repo.add_wasm("f8", 1, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), max_batch=1)
    running = start_server(repo.root)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=20) as http:
            answer = http.post("/v2/models/f8/infer", content=json.dumps({"inputs": [
                {"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]}]}))
        assert answer.status_code == 503
        assert "float8_e4m3fn has no KServe v2 datatype" in answer.json()["error"]
    finally:
        running.stop(grace=2)
