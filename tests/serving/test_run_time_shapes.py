"""A served model whose output shape each run decides (ABI version 2): REST and gRPC answer with the run's shape,
and model metadata says -1 on the axis the data decides."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import onnx
import tritonclient.grpc as grpcclient
from onnx import TensorProto, helper

from tests.parity import ort_run
from tests.serving.conftest import start_server
from wasinfer.artifact import convert_onnx


def compress() -> onnx.ModelProto:
    """y = the columns of x [3, 5] where c [5] holds."""
    graph = helper.make_graph([helper.make_node("Compress", ["x", "c"], ["y"], axis=1)], "compress",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5]),
                               helper.make_tensor_value_info("c", TensorProto.BOOL, [5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_rest_and_grpc_answer_with_each_run_s_shape(tmp_path: Path) -> None:
    model = compress()
    path = tmp_path / "compress" / "1" / "model.wasm"
    path.parent.mkdir(parents=True)
    path.write_bytes(convert_onnx(model).wasm)
    server = start_server(tmp_path)
    x = np.arange(15, dtype=np.float32).reshape(3, 5)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as http:
            [output] = http.get("/v2/models/compress").json()["outputs"]
            assert output["shape"] == [3, -1]
            for condition in ([True, False, True, True, False], [False] * 5):
                body = {"inputs": [
                    {"name": "x", "shape": [3, 5], "datatype": "FP32", "data": x.ravel().tolist()},
                    {"name": "c", "shape": [5], "datatype": "BOOL", "data": condition}]}
                response = http.post("/v2/models/compress/infer", json=body)
                assert response.status_code == 200, response.text
                [y] = response.json()["outputs"]
                want = ort_run(model, {"x": x, "c": np.array(condition)})[0]
                assert y["shape"] == list(want.shape)
                np.testing.assert_array_equal(np.reshape(y["data"], want.shape), want)
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            inputs = [grpcclient.InferInput("x", [3, 5], "FP32"), grpcclient.InferInput("c", [5], "BOOL")]
            condition = np.array([False, True, False, False, True])
            inputs[0].set_data_from_numpy(x)
            inputs[1].set_data_from_numpy(condition)
            got = client.infer("compress", inputs).as_numpy("y")
            np.testing.assert_array_equal(got, ort_run(model, {"x": x, "c": condition})[0])
        finally:
            client.close()
    finally:
        server.stop(grace=2)
