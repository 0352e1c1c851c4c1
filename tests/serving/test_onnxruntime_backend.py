"""The ONNX Runtime backend: same interface and input checks as WasmModel."""

from __future__ import annotations

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


def test_non_tensor_outputs_are_refused_at_load() -> None:
    graph = helper.make_graph([helper.make_node("SequenceConstruct", ["x"], ["seq"])], "seq",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(ValueError, match="only tensors"):
        OnnxRuntimeModel(model.SerializeToString())
