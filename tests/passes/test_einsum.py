"""Einsum lowered to Transpose/Reshape/MatMul/ReduceSum matches ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.parity import assert_matches_ort
from wasinfer.backends.wasm import UnsupportedModel
from wasinfer.frontends import load_onnx
from wasinfer.passes.einsum import lower_einsums

rng = np.random.default_rng(7)


def einsum_model(equation: str, shapes: list[tuple[int, ...]], constant: int | None = None) -> tuple:
    names = [f"x{i}" for i in range(len(shapes))]
    values = {n: rng.standard_normal(s).astype(np.float32) for n, s in zip(names, shapes, strict=True)}
    inits = [helper.make_tensor(n, TensorProto.FLOAT, values[n].shape, values[n].reshape(-1))
             for i, n in enumerate(names) if i == constant]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, values[n].shape)
              for i, n in enumerate(names) if i != constant]
    want = np.einsum(equation.replace(" ", ""), *values.values())
    graph = helper.make_graph([helper.make_node("Einsum", names, ["y"], equation=equation)], "einsum", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, want.shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    feeds = {n: v for i, (n, v) in enumerate(values.items()) if i != constant}
    return model, feeds


@pytest.mark.parametrize("equation,shapes,constant", [
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)], None),
    ("bhid,bhjd->bhij", [(2, 3, 5, 4), (2, 3, 6, 4)], None),   # attention scores
    ("bhij,bhjd->bhid", [(1, 2, 5, 6), (1, 2, 6, 4)], None),   # attention context
    ("ij->ji", [(3, 5)], None),
    ("ij,j->i", [(4, 6), (6,)], 1),
    ("i,i->", [(7,)] * 2, None),
    ("i,j->ij", [(3,), (4,)], None),                            # outer product
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (1, 5, 4, 2)], None),    # broadcast batch
    ("abc,cd->abd", [(2, 3, 8), (8, 5)], 1),                    # a dense layer on a sequence
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)], None),
    ("ij,jk", [(3, 4), (4, 2)], None),                          # implicit output
    ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)], 1),          # bilinear
])
def test_einsum_matches_onnxruntime(equation: str, shapes: list[tuple[int, ...]], constant: int | None) -> None:
    model, feeds = einsum_model(equation, shapes, constant)
    assert_matches_ort(model, feeds)


def test_einsum_leaves_no_einsum_node() -> None:
    model, _ = einsum_model("bhid,bhjd->bhij", [(2, 3, 5, 4), (2, 3, 6, 4)])
    graph = load_onnx(model).graph
    assert lower_einsums(graph) == 1
    assert "Einsum" not in {n.op_type for n in graph.nodes}
    assert "MatMul" in {n.op_type for n in graph.nodes}


def test_a_diagonal_is_declined_with_the_reason() -> None:
    model, feeds = einsum_model("ii->i", [(3, 3)])
    with pytest.raises(UnsupportedModel, match=r"Einsum.*repeated index"):
        assert_matches_ort(model, feeds)
