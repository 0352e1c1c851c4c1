"""A model repository of small models built with onnx.helper, and in-process servers on loopback.

Each test that changes server state gets a server of its own (starting one takes tens of
milliseconds); servers listen on 127.0.0.1 with ports the OS picks, and are stopped, with
bounded waits, when the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
from onnx import TensorProto, helper, numpy_helper

from wasinfer.artifact import convert_onnx
from wasinfer.serving import Server, ServerConfig

MAX_BODY = 256 * 1024
SCALE = {1: np.array([1, 2, 3, 4], np.float32), 2: np.array([10, 20, 30, 40], np.float32)}


def scale_model(scale: np.ndarray) -> onnx.ModelProto:
    """y = x * scale: FP32 [N, 4] → FP32 [N, 4]."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["y"])], "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(scale, "scale")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def write_scale_versions(directory: Path) -> dict[str, Path]:
    """Two versions of the scale model (x * 1 and x * 2: different module bytes), each as `vN.wasm` and its
    source `vN.onnx` in `directory`: what the registry and signing tests push, pull and compare."""
    out = {}
    for key, scale in (("v1", 1.0), ("v2", 2.0)):
        model = scale_model(np.full(4, scale, np.float32))
        onnx.save(model, directory / f"{key}.onnx")
        (directory / f"{key}.wasm").write_bytes(convert_onnx(model, max_batch=2, name="scale").wasm)
        out[key], out[f"{key}_onnx"] = directory / f"{key}.wasm", directory / f"{key}.onnx"
    return out


def pair_model() -> onnx.ModelProto:
    """Two inputs, two outputs: sum = a + b, product = a * b (FP32 [N, 3])."""
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3]) for n in ("a", "b")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3]) for n in ("sum", "product")]
    nodes = [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["a", "b"], ["product"])]
    return helper.make_model(helper.make_graph(nodes, "pair", inputs, outputs),
                             opset_imports=[helper.make_opsetid("", 13)])


def count_model() -> onnx.ModelProto:
    """INT64 [N, 2] + 1, served by ONNX Runtime (no model.wasm in its directory)."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["n", "one"], ["next"])], "count",
        [helper.make_tensor_value_info("n", TensorProto.INT64, ["N", 2])],
        [helper.make_tensor_value_info("next", TensorProto.INT64, ["N", 2])],
        [numpy_helper.from_array(np.array(1, np.int64), "one")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@dataclass(frozen=True)
class Repo:
    root: Path

    def add_wasm(self, name: str, version: int, model: onnx.ModelProto, max_batch: int = 8) -> Path:
        path = self.root / name / str(version) / "model.wasm"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(convert_onnx(model, max_batch=max_batch, name=name).wasm)
        return path


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scale (versions 1 and 2), pair, count (ONNX), broken (not a module). Tests must not change it."""
    repo = Repo(tmp_path_factory.mktemp("repository"))
    for version, scale in SCALE.items():
        repo.add_wasm("scale", version, scale_model(scale))
    repo.add_wasm("pair", 1, pair_model(), max_batch=4)
    (repo.root / "count" / "1").mkdir(parents=True)
    onnx.save(count_model(), repo.root / "count" / "1" / "model.onnx")
    (repo.root / "broken" / "3").mkdir(parents=True)
    (repo.root / "broken" / "3" / "model.wasm").write_bytes(b"\x00asm not really")
    (repo.root / "README.txt").write_text("not a model")
    return repo.root


@contextmanager
def grpc_client(server: Server) -> Iterator[grpcclient.InferenceServerClient]:
    """tritonclient's gRPC client on the server's loopback port, closed afterwards."""
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        yield client
    finally:
        client.close()


def start_server(root: Path, **overrides: object) -> Server:
    config = ServerConfig(root, host="127.0.0.1", http_port=0, grpc_port=0, max_body_bytes=MAX_BODY, pool_size=2)
    for key, value in overrides.items():
        setattr(config, key, value)
    server = Server(config)
    server.start(timeout=20)
    return server


@pytest.fixture
def server(repository: Path) -> Iterator[Server]:
    running = start_server(repository)
    try:
        yield running
    finally:
        running.stop(grace=2)


@pytest.fixture(scope="module")
def shared_server(repository: Path) -> Iterator[Server]:
    """For tests whose requests leave nothing behind that another test could see (errors, lazy loads)."""
    running = start_server(repository)
    try:
        yield running
    finally:
        running.stop(grace=2)


@pytest.fixture
def writable_repo(tmp_path: Path) -> Repo:
    """A repository a test may change: starts with scale version 1."""
    repo = Repo(tmp_path / "repo")
    repo.add_wasm("scale", 1, scale_model(SCALE[1]))
    return repo


def health_check(grpc_port: int, service: str = "") -> str:
    """grpc.health.v1.Health/Check as Kubernetes' gRPC probe sends it: the status's name, or the gRPC error code's."""
    from wasinfer.serving.descriptors import HEALTH_PROTO, messages

    classes = messages(None, HEALTH_PROTO)
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                    request_serializer=classes["HealthCheckRequest"].SerializeToString,
                                    response_deserializer=classes["HealthCheckResponse"].FromString)
        try:
            response = check(classes["HealthCheckRequest"](service=service), timeout=10)
        except grpc.RpcError as exc:
            return str(exc.code().name)
    return str(classes["HealthCheckResponse"].ServingStatus.Name(response.status))
