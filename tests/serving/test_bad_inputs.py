"""The bad-input table over both protocols: each row is one mistake, sent over REST and over gRPC.

Each case asserts the status (HTTP) or code (gRPC) and that the message names what is wrong.
The gRPC side uses a raw channel with the server's own message classes, so it can send what
tritonclient never would: bytes that are not a message, contents that do not match the shape.
test_rest.py keeps the longer REST-only table (binary extension, compression, parameters).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from tests.serving.conftest import MAX_BODY, start_server
from wasinfer.serving import Server
from wasinfer.serving.descriptors import messages
from wasinfer.serving.grpc_api import SERVICE

MANAGEMENT_TOKEN = "table-management-token"
M = messages()


@pytest.fixture(scope="module")
def table_server(repository: Path) -> Iterator[Server]:
    """A server with only a management token (inference stays open) and the `count` model unloaded."""
    running = start_server(repository, management_token=MANAGEMENT_TOKEN)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=20) as http:
            response = http.post("/v2/repository/models/count/unload",
                                 headers={"Authorization": f"Bearer {MANAGEMENT_TOKEN}"})
            assert response.status_code == 200, response.text
        yield running
    finally:
        running.stop(grace=2)


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: list[int]
    datatype: str = "FP32"
    values: int | None = None  # how many values to send; default: as many as the shape needs

    def data(self) -> list[float]:
        count = self.values if self.values is not None else int(np.prod(self.shape))
        return [1.0] * count

    def rest(self) -> dict[str, Any]:
        return {"name": self.name, "shape": self.shape, "datatype": self.datatype, "data": self.data()}

    def raw(self) -> bytes:
        dtype = {"FP32": np.float32, "INT32": np.int32, "INT64": np.int64}[self.datatype]
        return np.array(self.data(), dtype=dtype).tobytes()


@dataclass(frozen=True)
class Case:
    model: str
    tensors: list[Tensor] = field(default_factory=list)
    version: str = ""
    rest_body: bytes | None = None  # sent as it is instead of the tensors
    grpc_body: bytes | None = None
    method: str = "infer"  # or "index": the repository API


X = [Tensor("x", [1, 4])]
# (id, case, HTTP status, gRPC code, what the message says: one text, or (REST's, gRPC's))
CASES: list[tuple[str, Case, int, str, str | tuple[str, str]]] = [
    ("malformed body", Case("scale", rest_body=b'{"inputs": [', grpc_body=b"\xff"), 400, "INVALID_ARGUMENT",
     "not valid"),
    ("missing input", Case("pair", [Tensor("a", [1, 3])]), 400, "INVALID_ARGUMENT", "missing input(s) 'b'"),
    ("extra input", Case("scale", [*X, Tensor("z", [1, 4])]), 400, "INVALID_ARGUMENT", "unexpected input(s) 'z'"),
    ("wrong datatype", Case("scale", [Tensor("x", [1, 4], "INT32")]), 400, "INVALID_ARGUMENT",
     "expects datatype FP32, got INT32"),
    ("wrong shape", Case("scale", [Tensor("x", [1, 5])]), 400, "INVALID_ARGUMENT", "expected shape [N, 4]"),
    ("mismatched shapes", Case("pair", [Tensor("a", [1, 3]), Tensor("b", [2, 3])]), 400, "INVALID_ARGUMENT",
     "different batch sizes"),
    ("data length not matching shape", Case("scale", [Tensor("x", [2, 4], values=4)]), 400, "INVALID_ARGUMENT",
     "but shape [2, 4]"),
    ("oversized body", Case("scale", [Tensor("x", [2, MAX_BODY // 8 + 8])]), 413, "RESOURCE_EXHAUSTED",
     (f"this server takes at most {MAX_BODY}", "larger than max")),  # gRPC's words are grpcio's
    ("unknown model", Case("nosuch", X), 404, "NOT_FOUND", "unknown model 'nosuch'"),
    ("unknown version", Case("scale", X, version="9"), 404, "NOT_FOUND", "has no version '9'"),
    # Longer than a file name may be (ENAMETOOLONG), and more digits than Python's int() takes (4,300).
    ("model name of 300 characters", Case("a" * 300, X), 404, "NOT_FOUND", "unknown model 'aaaa"),
    ("version of 4,400 digits", Case("scale", X, version="1" * 4400), 404, "NOT_FOUND", "has no version '1111"),
    ("model not ready (unloaded)", Case("count", [Tensor("n", [1, 2], "INT64")]), 503, "UNAVAILABLE",
     "model 'count' is unloaded"),
    ("management call without token", Case("", method="index"), 401, "UNAUTHENTICATED",
     "requires a bearer token for its management endpoints"),
]
IDS = [case[0] for case in CASES]


def _serialize(message: Any) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()  # bytes: sent as they are


def _message(said: str | tuple[str, str], protocol: int) -> str:
    return said if isinstance(said, str) else said[protocol]


@pytest.mark.parametrize(("case", "status", "message"), [(c[1], c[2], _message(c[4], 0)) for c in CASES], ids=IDS)
def test_rest(table_server: Server, case: Case, status: int, message: str) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{table_server.http_port}", timeout=20) as http:
        if case.method == "index":
            response = http.post("/v2/repository/index")
        else:
            body = case.rest_body or json.dumps({"inputs": [t.rest() for t in case.tensors]}).encode()
            version = f"/versions/{case.version}" if case.version else ""
            response = http.post(f"/v2/models/{case.model}{version}/infer", content=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(("case", "code", "message"), [(c[1], c[3], _message(c[4], 1)) for c in CASES], ids=IDS)
def test_grpc(table_server: Server, case: Case, code: str, message: str) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{table_server.grpc_port}") as channel:
        if case.method == "index":
            call = channel.unary_unary(f"/{SERVICE}/RepositoryIndex",
                                       request_serializer=_serialize,
                                       response_deserializer=M["RepositoryIndexResponse"].FromString)
            request: Any = M["RepositoryIndexRequest"]()
        else:
            call = channel.unary_unary(f"/{SERVICE}/ModelInfer",
                                       request_serializer=_serialize,
                                       response_deserializer=M["ModelInferResponse"].FromString)
            tensor = M["ModelInferRequest"].InferInputTensor
            request = case.grpc_body or M["ModelInferRequest"](
                model_name=case.model, model_version=case.version,
                inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in case.tensors],
                raw_input_contents=[t.raw() for t in case.tensors])
        with pytest.raises(grpc.RpcError) as raised:
            call(request, timeout=20)
    error: Any = raised.value
    assert error.code().name == code, error.details()
    assert message in error.details()
    if code != "RESOURCE_EXHAUSTED":  # grpcio refuses oversized messages before any handler runs
        assert dict(error.trailing_metadata())["x-request-id"]
