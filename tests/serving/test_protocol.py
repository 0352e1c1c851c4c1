"""Tensor codecs (JSON, raw, gRPC contents), the REST body parser, and the instance pool."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wasinfer.serving.descriptors import messages
from wasinfer.serving.errors import BadRequest
from wasinfer.serving.grpc_api import decode_infer_request
from wasinfer.serving.metrics import Metrics
from wasinfer.serving.models import INLINE_SECONDS, InstancePool, ModelManager
from wasinfer.serving.protocol import (
    DATATYPES,
    InferRequest,
    RequestedOutput,
    datatype_of,
    decode_json,
    decode_raw,
    encode_raw,
    encode_rest_response,
    parse_rest_request,
)
from wasinfer.serving.repository import Repository

NUMERIC = [name for name in DATATYPES if name != "BYTES"]


@pytest.mark.parametrize("datatype", NUMERIC)
def test_raw_and_json_roundtrip_every_numeric_datatype(datatype: str) -> None:
    array = (np.arange(6) % 2 == 1) if datatype == "BOOL" else np.arange(6).astype(DATATYPES[datatype])
    array = array.reshape(2, 3)
    assert datatype_of(array.dtype) == datatype
    np.testing.assert_array_equal(decode_raw("t", datatype, [2, 3], encode_raw(array)), array)
    decoded = decode_json("t", datatype, [2, 3], array.reshape(-1).tolist())
    assert decoded.dtype == DATATYPES[datatype]
    np.testing.assert_array_equal(decoded, array)


@pytest.mark.parametrize(("datatype", "data", "said"), [
    ("BOOL", ["false", "no", "0"], "strings are not BOOL values"),  # numpy reads every non-empty string as True
    ("FP32", ["nan", "1.5", "-inf"], "strings are not FP32 values"),  # and parses numbers out of strings
    ("INT32", ["7", 8, 9], "strings are not INT32 values"),
    ("FP64", [[1.0, None, 3.0]], "FP64 data must be JSON numbers; got null"),  # numpy makes None a NaN
    ("UINT8", [1, {"a": 1}, 3], "UINT8 data must be JSON numbers; got an object"),
])
def test_json_data_must_be_numbers_or_booleans(datatype: str, data: list[Any], said: str) -> None:
    with pytest.raises(BadRequest, match=said):
        decode_json("t", datatype, [3], data)


def test_json_booleans_and_numbers_convert_as_before() -> None:
    np.testing.assert_array_equal(decode_json("t", "BOOL", [4], [True, False, 1, 0]), [True, False, True, False])
    np.testing.assert_array_equal(decode_json("t", "FP32", [3], [True, 2, 2.5]), np.array([1, 2, 2.5], np.float32))
    np.testing.assert_array_equal(decode_json("t", "INT64", [2], [2**62, -1]), [2**62, -1])
    with pytest.raises(BadRequest, match="UINT8 values"):
        decode_json("t", "UINT8", [1], [300])  # out of range: refused, never wrapped
    with pytest.raises(BadRequest, match="INT32 values"):
        decode_json("t", "INT32", [1], [2**70])


def test_bytes_tensors() -> None:
    array = np.array([b"", b"wasm", "\u00e9t\u00e9".encode()], dtype=object)
    raw = encode_raw(array)
    assert raw[:4] == b"\x00\x00\x00\x00" and raw[4:8] == b"\x04\x00\x00\x00"
    assert list(decode_raw("s", "BYTES", [3], raw)) == list(array)
    assert list(decode_json("s", "BYTES", [1, 3], ["", "wasm", "\u00e9t\u00e9"]).reshape(-1)) == list(array)
    with pytest.raises(BadRequest, match="ends inside"):
        decode_raw("s", "BYTES", [1], b"\x01\x00")
    with pytest.raises(BadRequest, match="runs past"):
        decode_raw("s", "BYTES", [1], b"\x09\x00\x00\x00abc")
    with pytest.raises(BadRequest, match="2 BYTES elements"):
        decode_raw("s", "BYTES", [3], encode_raw(array[:2]))
    with pytest.raises(BadRequest, match="must be strings"):
        decode_json("s", "BYTES", [1], [3])


def test_parse_rest_request_with_binary_inputs_and_outputs() -> None:
    a = np.arange(4, dtype=np.int32)
    header = json.dumps({"id": 5, "inputs": [
        {"name": "a", "datatype": "INT32", "shape": [4], "parameters": {"binary_data_size": 16}},
        {"name": "b", "datatype": "FP64", "shape": [1], "data": 2.5}],
        "outputs": [{"name": "y"}, {"name": "z", "parameters": {"binary_data": True}}],
        "parameters": {"binary_data_output": False}}).encode()
    request = parse_rest_request(header + a.tobytes(), len(header))
    np.testing.assert_array_equal(request.inputs["a"], a)
    assert request.inputs["b"].tolist() == [2.5] and request.datatypes == {"a": "INT32", "b": "FP64"}
    assert request.outputs == [RequestedOutput("y", False), RequestedOutput("z", True)]
    assert request.id == "5"
    body, json_length = encode_rest_response("m", "3", request, {"y": np.ones(2, np.float32),
                                                                  "z": np.arange(3, dtype=np.int64)})
    assert json_length is not None
    document = json.loads(body[:json_length])
    assert document["outputs"][0] == {"name": "y", "datatype": "FP32", "shape": [2], "data": [1.0, 1.0]}
    assert document["outputs"][1]["parameters"] == {"binary_data_size": 24}
    np.testing.assert_array_equal(np.frombuffer(body[json_length:], np.int64), [0, 1, 2])


def test_json_response_without_binary_has_no_header_length() -> None:
    request = InferRequest({}, {}, None, binary_outputs=False)
    body, json_length = encode_rest_response("m", "1", request, {"s": np.array([b"hi"], dtype=object)})
    assert json_length is None
    assert json.loads(body)["outputs"] == [{"name": "s", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]


def _grpc_request(**fields: Any) -> Any:
    return messages()["ModelInferRequest"](**fields)


def test_grpc_contents_and_raw_contents() -> None:
    tensor = messages()["ModelInferRequest"].InferInputTensor
    contents = messages()["InferTensorContents"]
    request = _grpc_request(model_name="m", id="7", inputs=[
        tensor(name="i", datatype="INT16", shape=[2], contents=contents(int_contents=[-3, 4])),
        tensor(name="f", datatype="FP32", shape=[1, 2], contents=contents(fp32_contents=[0.5, 1.5])),
        tensor(name="s", datatype="BYTES", shape=[1], contents=contents(bytes_contents=[b"ab"]))])
    decoded = decode_infer_request(request)
    assert decoded.inputs["i"].dtype == np.int16 and decoded.inputs["i"].tolist() == [-3, 4]
    assert decoded.inputs["f"].shape == (1, 2) and decoded.inputs["s"].tolist() == [b"ab"]
    assert decoded.outputs is None and decoded.id == "7"
    raw = _grpc_request(inputs=[tensor(name="h", datatype="FP16", shape=[2])],
                        raw_input_contents=[np.array([1, 2], np.float16).tobytes()])
    assert decode_infer_request(raw).inputs["h"].tolist() == [1.0, 2.0]
    with pytest.raises(BadRequest, match="1 raw_input_contents for 2 inputs"):
        decode_infer_request(_grpc_request(inputs=[tensor(name="a"), tensor(name="b")], raw_input_contents=[b""]))
    with pytest.raises(BadRequest, match="only be sent in raw_input_contents"):
        decode_infer_request(_grpc_request(inputs=[tensor(name="h", datatype="FP16", shape=[1])]))
    with pytest.raises(BadRequest, match="1 values in contents, but shape"):
        decode_infer_request(_grpc_request(inputs=[
            tensor(name="f", datatype="FP32", shape=[2], contents=contents(fp32_contents=[1]))]))
    with pytest.raises(BadRequest, match="does not fit INT8"):
        decode_infer_request(_grpc_request(inputs=[
            tensor(name="i", datatype="INT8", shape=[1], contents=contents(int_contents=[300]))]))


class _Blocking:
    """A model instance whose run waits until the test lets it go."""

    def __init__(self, release: threading.Event, running: threading.Semaphore):
        self.release, self.running = release, running

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.running.release()
        assert self.release.wait(10)
        return inputs


def test_pool_grows_only_under_concurrency_and_never_past_its_size() -> None:
    release, running = threading.Event(), threading.Semaphore(0)
    created: list[_Blocking] = []

    def factory() -> _Blocking:
        created.append(_Blocking(release, running))
        return created[-1]

    pool = InstancePool(factory, size=2)
    release.set()
    pool.run({})
    pool.run({})
    assert len(created) == 1  # sequential requests reuse the first instance
    while running.acquire(blocking=False):
        pass
    release.clear()
    threads = [threading.Thread(target=pool.run, args=({},)) for _ in range(3)]
    try:
        for thread in threads:
            thread.start()
        assert running.acquire(timeout=10) and running.acquire(timeout=10)  # two run at once
        assert not running.acquire(timeout=0.2)  # the third waits for a free instance
        assert len(created) == 2
    finally:
        release.set()
        for thread in threads:
            thread.join(10)
    assert len(created) == 2 and pool.created == 2


def test_quick_models_run_inline_and_slow_batches_do_not(repository: Path) -> None:
    model = ModelManager(Repository(repository), Metrics(), pool_size=1).get("scale")
    x = {"x": np.ones((1, 4), np.float32)}
    assert not model.is_quick(x)  # never run: its cost is unknown
    model.infer(x)
    assert 0 < model.sample_seconds < float("inf")
    model.sample_seconds = INLINE_SECONDS / 2
    assert model.is_quick(x) and not model.is_quick({"x": np.ones((4, 4), np.float32)})
