"""Triton's own example repositories serve unchanged: densenet_onnx's and simple's config.pbtxt, word for word as
Triton's examples have them, over small ONNX models with the same tensor names and shapes, through tritonclient
over REST and gRPC, classification with labels included, with Triton's default model control (load at start-up)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper, numpy_helper

from tests.serving.conftest import start_server
from wasinfer.serving import Server

# Triton's server/docs/examples/model_repository/densenet_onnx/config.pbtxt
DENSENET_CONFIG = """\
name: "densenet_onnx"
platform: "onnxruntime_onnx"
max_batch_size : 0
input [
  {
    name: "data_0"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 224, 224 ]
    reshape { shape: [ 1, 3, 224, 224 ] }
  }
]
output [
  {
    name: "fc6_1"
    data_type: TYPE_FP32
    dims: [ 1000 ]
    reshape { shape: [ 1, 1000, 1, 1 ] }
    label_filename: "densenet_labels.txt"
  }
]
"""

# Triton's simple model's config.pbtxt (its example is a GraphDef; the same config over an ONNX model)
SIMPLE_CONFIG = """\
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "INPUT0"
    data_type: TYPE_INT32
    dims: [ 16 ]
  },
  {
    name: "INPUT1"
    data_type: TYPE_INT32
    dims: [ 16 ]
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_INT32
    dims: [ 16 ]
  },
  {
    name: "OUTPUT1"
    data_type: TYPE_INT32
    dims: [ 16 ]
  }
]
"""

CLASSES = 1000
WEIGHTS = np.random.default_rng(16).standard_normal((CLASSES, 3)).astype(np.float32)
LABELS = [f"class {k} (n{k:08d})" for k in range(CLASSES)]


def densenet_like() -> onnx.ModelProto:
    """data_0 FP32 [1, 3, 224, 224] → fc6_1 FP32 [1, 1000, 1, 1], as densenet-121's ONNX export: the channels'
    means through a 1x1 convolution to 1000 classes (a stand-in that is cheap to run)."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["data_0"], ["pooled"]),
         helper.make_node("Conv", ["pooled", "weights"], ["fc6_1"])], "densenet_like",
        [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("fc6_1", TensorProto.FLOAT, [1, CLASSES, 1, 1])],
        [numpy_helper.from_array(WEIGHTS.reshape(CLASSES, 3, 1, 1), "weights")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def simple_like() -> onnx.ModelProto:
    """Triton's simple model: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1, INT32 [N, 16]."""
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT32, ["N", 16]) for n in ("INPUT0", "INPUT1")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.INT32, ["N", 16]) for n in ("OUTPUT0", "OUTPUT1")]
    nodes = [helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
             helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"])]
    return helper.make_model(helper.make_graph(nodes, "simple", inputs, outputs),
                             opset_imports=[helper.make_opsetid("", 13)])


def triton_repository(root: Path) -> Path:
    """The layout of Triton's examples: <model>/config.pbtxt, <model>/1/model.onnx, labels beside the config."""
    for name, config, model in (("densenet_onnx", DENSENET_CONFIG, densenet_like()),
                                ("simple", SIMPLE_CONFIG, simple_like())):
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(config)
        onnx.save(model, root / name / "1" / "model.onnx")
    (root / "densenet_onnx" / "densenet_labels.txt").write_text("".join(f"{label}\n" for label in LABELS))
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(triton_repository(tmp_path_factory.mktemp("triton")), model_control_mode="none",
                           max_body_bytes=8 << 20)  # a 3x224x224 image is 600 KB
    try:
        yield running
    finally:
        running.stop(grace=2)


def _clients(server: Server) -> list[Any]:
    return [(httpclient, httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")),
            (grpcclient, grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}"))]


def _image() -> np.ndarray:
    """An "image" whose channel means pick the classes: mean of channel c is c + 1 with some texture."""
    image = np.random.default_rng(7).standard_normal((3, 224, 224)).astype(np.float32)
    return image - image.mean(axis=(1, 2), keepdims=True) + np.arange(1, 4, dtype=np.float32)[:, None, None]


def _expected_scores(image: np.ndarray) -> np.ndarray:
    return (WEIGHTS @ image.mean(axis=(1, 2))).astype(np.float32)


def test_densenet_onnx_classifies_as_triton_s_image_client_asks(server: Server) -> None:
    image = _image()
    scores = _expected_scores(image)
    top = np.argsort(-scores, kind="stable")[:3]
    for module, client in _clients(server):
        try:
            assert client.is_model_ready("densenet_onnx")  # loaded at start-up, before any request
            tensor = module.InferInput("data_0", [3, 224, 224], "FP32")  # dims, not the model's reshape
            tensor.set_data_from_numpy(image)
            result = client.infer("densenet_onnx", [tensor],
                                  outputs=[module.InferRequestedOutput("fc6_1", class_count=3)])
            classes = [item.decode() if isinstance(item, bytes) else item for item in result.as_numpy("fc6_1")]
            print(module.__name__, classes)
            assert [c.split(":", 2)[1:] for c in classes] == [[str(k), LABELS[k]] for k in top]
            np.testing.assert_allclose([float(c.split(":")[0]) for c in classes], scores[top], rtol=1e-4, atol=1e-5)
            raw = client.infer("densenet_onnx", [tensor]).as_numpy("fc6_1")  # the whole output: its dims
            assert raw.shape == (CLASSES,)
            np.testing.assert_allclose(raw, scores, rtol=1e-4, atol=1e-5)
        finally:
            client.close()


def test_densenet_onnx_metadata_and_config_are_the_client_s_dims(server: Server) -> None:
    http = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        metadata = http.get_model_metadata("densenet_onnx")
        assert metadata["platform"] == "onnxruntime_onnx"
        assert [(t["name"], t["shape"]) for t in metadata["inputs"]] == [("data_0", [3, 224, 224])]
        assert [(t["name"], t["shape"]) for t in metadata["outputs"]] == [("fc6_1", [CLASSES])]
        for config in (http.get_model_config("densenet_onnx"), grpc.get_model_config("densenet_onnx",
                                                                                     as_json=True)["config"]):
            print(config)
            assert config.get("max_batch_size", 0) == 0
            (given,), (taken,) = config["input"], config["output"]
            assert given["format"] == "FORMAT_NCHW"
            assert [int(d) for d in given["dims"]] == [3, 224, 224]
            assert [int(d) for d in given["reshape"]["shape"]] == [1, 3, 224, 224]
            assert [int(d) for d in taken["dims"]] == [CLASSES]
            assert [int(d) for d in taken["reshape"]["shape"]] == [1, CLASSES, 1, 1]
            assert taken["label_filename"] == "densenet_labels.txt"
        bad = httpclient.InferInput("data_0", [1, 3, 224, 224], "FP32")  # the model's shape is not the client's
        bad.set_data_from_numpy(np.zeros((1, 3, 224, 224), np.float32))
        with pytest.raises(Exception, match=r"expected shape \[3, 224, 224\]"):
            http.infer("densenet_onnx", [bad])
    finally:
        http.close()
        grpc.close()


def test_simple_adds_and_subtracts_as_triton_s_simple_clients_check(server: Server) -> None:
    first = np.arange(16, dtype=np.int32)[None]
    second = np.ones((1, 16), np.int32)
    for module, client in _clients(server):
        try:
            tensors = [module.InferInput("INPUT0", [1, 16], "INT32"), module.InferInput("INPUT1", [1, 16], "INT32")]
            tensors[0].set_data_from_numpy(first)
            tensors[1].set_data_from_numpy(second)
            result = client.infer("simple", tensors)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), first + second)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), first - second)
            config = client.get_model_config("simple")
            config = config if module is httpclient else client.get_model_config("simple", as_json=True)["config"]
            assert int(config["max_batch_size"]) == 8
        finally:
            client.close()


def test_reshape_keeps_the_batch_when_the_model_batches(writable_repo: Any) -> None:
    """max_batch_size > 0: dims and reshape leave the batch out, and the request's batch is kept through both."""
    (writable_repo.root / "scale" / "config.pbtxt").write_text("""\
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 100 }
input [ { name: "x" data_type: TYPE_FP32 format: FORMAT_NONE dims: [ 2, 2 ] reshape { shape: [ 4 ] } } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2, 2 ] reshape { shape: [ 4 ] } } ]
""")
    running = start_server(writable_repo.root, model_control_mode="explicit", load_models=("scale",))
    try:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{running.http_port}")
        try:
            assert [t["shape"] for t in client.get_model_metadata("scale")["inputs"]] == [[-1, 2, 2]]
            rows = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
            tensor = httpclient.InferInput("x", [3, 2, 2], "FP32")
            tensor.set_data_from_numpy(rows)
            out = client.infer("scale", [tensor]).as_numpy("y")
            assert out.shape == (3, 2, 2)
            np.testing.assert_array_equal(out, (rows.reshape(3, 4) * np.array([1, 2, 3, 4], np.float32)).reshape(
                3, 2, 2))
        finally:
            client.close()
    finally:
        running.stop(grace=2)
