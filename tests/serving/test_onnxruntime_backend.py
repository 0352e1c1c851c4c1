"""The ONNX Runtime backend: same interface and input checks as WasmModel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.serving.conftest import count_model
from wasinfer.runtime import InputError
from wasinfer.runtime.onnxruntime import OnnxRuntimeModel


def test_runs_and_describes_its_tensors() -> None:
    model = OnnxRuntimeModel(count_model().SerializeToString(), name="count")
    assert model.input_names() == ["n"] and model.output_names() == ["next"]
    [spec] = model.info.inputs
    assert (spec.name, spec.dtype, spec.shape, spec.batch_axis) == ("n", "int64", [-1, 2], 0)
    assert model.info.name == "count" and model.info.max_batch is None
    out = model.run({"n": np.array([[1, 2], [3, 4], [5, 6]], np.int64)})
    np.testing.assert_array_equal(out["next"], [[2, 3], [4, 5], [6, 7]])


@pytest.mark.parametrize(("feeds", "message"), [
    ({}, r"missing \['n'\]"),
    ({"n": np.zeros((1, 2), np.int64), "m": np.zeros(1)}, r"unexpected \['m'\]"),
    ({"n": np.zeros((1, 2), np.float32)}, "expected dtype int64, got float32"),
    ({"n": np.zeros((1, 3), np.int64)}, r"expected shape \[N, 2\], got \[1, 3\]"),
    ({"n": np.zeros((2,), np.int64)}, r"expected shape \[N, 2\], got \[2\]"),
])
def test_refuses_bad_inputs_in_its_own_words(feeds: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(InputError, match=message):
        OnnxRuntimeModel(count_model().SerializeToString()).run(feeds)


def test_string_tensors_and_files(tmp_path: object) -> None:
    graph = helper.make_graph([helper.make_node("Identity", ["s"], ["t"])], "strings",
                              [helper.make_tensor_value_info("s", TensorProto.STRING, [2])],
                              [helper.make_tensor_value_info("t", TensorProto.STRING, [2])])
    path = f"{tmp_path}/strings.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    model = OnnxRuntimeModel(path)
    assert model.info.name == "strings" and model.info.inputs[0].dtype == "object"
    assert model.info.inputs[0].batch_axis is None
    assert model.run({"s": np.array(["a", "b"], dtype=object)})["t"].tolist() == ["a", "b"]


def strings_model() -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Identity", ["s"], ["t"])], "strings",
                              [helper.make_tensor_value_info("s", TensorProto.STRING, [2])],
                              [helper.make_tensor_value_info("t", TensorProto.STRING, [2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_bytes_elements_are_text_not_their_repr() -> None:
    """The protocols hand BYTES tensors over as bytes; ONNX Runtime turned b"hello" into "b'hello'"."""
    model = OnnxRuntimeModel(strings_model().SerializeToString())
    assert model.run({"s": np.array([b"hello", "w\u00f6rld".encode()], dtype=object)})["t"].tolist() == [
        "hello", "w\u00f6rld"]
    assert model.run({"s": np.array([b"a", b"bc"])})["t"].tolist() == ["a", "bc"]  # numpy's fixed-size bytes
    with pytest.raises(InputError, match="input 's': a string tensor holds UTF-8 text"):
        model.run({"s": np.array([b"\xff", b"x"], dtype=object)})


def test_a_served_string_model_answers_the_strings_it_was_given(tmp_path: Path) -> None:
    """Triton's simple_identity, over REST (JSON) and gRPC (tritonclient) through a real server."""
    import httpx
    import tritonclient.grpc as grpcclient

    from tests.serving.conftest import start_server

    (tmp_path / "identity" / "1").mkdir(parents=True)
    onnx.save(strings_model(), tmp_path / "identity" / "1" / "model.onnx")
    server = start_server(tmp_path)
    try:
        body = {"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES", "data": ["hello", "x y"]}]}
        answer = httpx.post(f"http://127.0.0.1:{server.http_port}/v2/models/identity/infer", json=body, timeout=30)
        assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == ["hello", "x y"], answer.text
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        tensor = grpcclient.InferInput("s", [2], "BYTES")
        tensor.set_data_from_numpy(np.array([b"hello", b"again"], dtype=object))
        result = client.infer("identity", [tensor]).as_numpy("t")
        assert result is not None and result.tolist() == [b"hello", b"again"]
        client.close()
    finally:
        server.stop(grace=2)


def test_non_tensor_outputs_are_refused_at_load() -> None:
    graph = helper.make_graph([helper.make_node("SequenceConstruct", ["x"], ["seq"])], "seq",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(ValueError, match="only tensors"):
        OnnxRuntimeModel(model.SerializeToString())
