"""The command line end to end: convert, validate, run, info, and the error paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.parity import ort_run
from wasinfer.cli.main import main


def mlp(path: Path) -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    w1 = numpy_helper.from_array(rng.standard_normal((6, 8)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((8, 3)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, path)
    return model


def test_convert_validate_run_roundtrip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = mlp(tmp_path / "mlp.onnx")
    wasm = tmp_path / "mlp.wasm"
    assert main(["convert", str(tmp_path / "mlp.onnx"), "-o", str(wasm), "--max-batch", "4"]) == 0
    assert wasm.read_bytes()[:4] == b"\x00asm"
    assert main(["validate", str(wasm), "--reference", str(tmp_path / "mlp.onnx"), "--samples", "3"]) == 0
    out = capsys.readouterr().out
    assert "parity with ONNX Runtime" in out and "FAILED" not in out

    x = np.random.default_rng(2).standard_normal((3, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(wasm), "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", str(tmp_path / "out")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "out" / "y.npy"), ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-5)

    assert main(["info", str(wasm)]) == 0
    assert '"max_batch": 4' in capsys.readouterr().out


def test_unsupported_ops_exit_2_list_all_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="ok_relu"),
             helper.make_node("Shrink", ["a"], ["b"], name="first_bad"),
             helper.make_node("RandomUniformLike", ["b"], ["c"], name="second_bad"),
             helper.make_node("Bernoulli", ["c"], ["y"], name="third_bad")]
    graph = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "bad.onnx")
    out = tmp_path / "bad.wasm"
    out.write_bytes(b"previous good module")
    assert main(["convert", str(tmp_path / "bad.onnx"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    for name, op in (("first_bad", "Shrink"), ("second_bad", "RandomUniformLike"), ("third_bad", "Bernoulli")):
        assert f"'{name}'" in err and op in err
    assert "ok_relu" not in err
    assert out.read_bytes() == b"previous good module"


def test_unsupported_attribute_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = helper.make_node("Gelu", ["x"], ["y"], name="gelu_fast", approximate="fast")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), tmp_path / "g.onnx")
    assert main(["convert", str(tmp_path / "g.onnx"), "-o", str(tmp_path / "g.wasm")]) == 2
    err = capsys.readouterr().err
    assert "gelu_fast" in err and "approximate='fast'" in err
    assert not (tmp_path / "g.wasm").exists()


def test_dynamic_dim_needs_input_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "L"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "L"])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "d.onnx")
    assert main(["convert", str(tmp_path / "d.onnx")]) == 2
    assert "--input-shape x=" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "d.onnx"), "--input-shape", "x=1,5"]) == 0
    assert (tmp_path / "d.wasm").exists()


def test_bad_files_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert main(["convert", str(tmp_path / "junk.onnx")]) == 2
    assert main(["convert", str(tmp_path / "missing.onnx")]) == 2
    (tmp_path / "junk.wasm").write_bytes(b"\x00asm\x01\x00\x00\x00garbage")
    assert main(["validate", str(tmp_path / "junk.wasm")]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_run_and_info_name_a_missing_file_or_a_source_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`run`/`info` said `[Errno 2] No such file or directory` and `not a WebAssembly binary (bad magic)` without the
    path: a new user who passed model.onnx instead of model.wasm was not told which file or what to do."""
    model = tmp_path / "mlp.onnx"
    mlp(model)
    for command in ("run", "info"):
        assert main([command, str(tmp_path / "missing.wasm")]) == 2
        assert main([command, str(model)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {tmp_path / 'missing.wasm'}: no such file",
                   f"error: {model}: not a WebAssembly module (a source model? compile it first: wasinfer convert "
                   f"{model})"] * 2


@pytest.mark.parametrize(("argv", "usage"), [
    (["run", "m.wasm", "x.npy"], "usage: wasinfer run [-h] [--input NAME=FILE.npy]"),
    (["models", "show", "digits", "--nope"], "usage: wasinfer models show")])
def test_a_stray_argument_is_refused_with_the_command_s_own_usage(
        argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`wasinfer run m.wasm x.npy` (the input without --input) printed the top-level `usage: wasinfer COMMAND ...`,
    which does not say how the command takes its inputs."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith(usage), err
    assert f"error: unrecognized arguments: {argv[-1]}" in err


def test_brackets_in_paths_are_printed_as_they_are(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rich read `[v2]` in a path as markup and printed `/data/.onnx`: a user could not tell which file was meant."""
    folder = tmp_path / "[v2]"
    assert main(["convert", str(folder / "model.onnx")]) == 2
    assert main(["validate", str(folder / "m.wasm")]) == 2
    assert main(["run", str(folder / "m.wasm")]) == 2
    err = capsys.readouterr().err
    assert err.count(f"{folder}{'/'}") == 3 and err.count("error:") == 3, err
    mlp(tmp_path / "mlp.onnx")
    assert main(["convert", str(tmp_path / "mlp.onnx"), "-o", str(folder / "m.wasm")]) == 0
    assert "[v2]" in capsys.readouterr().out  # the summary table's title names the output as it is


def test_validate_input_needs_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--input gives the parity check's inputs: without --reference it was ignored without a word."""
    mlp(tmp_path / "mlp.onnx")
    assert main(["convert", str(tmp_path / "mlp.onnx"), "-o", str(tmp_path / "m.wasm")]) == 0
    np.save(tmp_path / "x.npy", np.zeros((1, 6), np.float32))
    capsys.readouterr()
    assert main(["validate", str(tmp_path / "m.wasm"), "--input", f"x={tmp_path / 'x.npy'}"]) == 2
    assert "needs --reference" in capsys.readouterr().err


def test_a_sequence_model_through_convert_and_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--sequence s=1..3: run takes the sequence as an .npz of its tensors, prints and saves the returned sequence
    (DIR/NAME.npz) and its length; a count outside the range is refused naming the input (exit 2)."""
    elements = helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2]))
    graph = helper.make_graph([helper.make_node("SequenceLength", ["s"], ["n"]),
                               helper.make_node("Identity", ["s"], ["back"])], "seq",
                              [helper.make_value_info("s", elements)],
                              [helper.make_tensor_value_info("n", TensorProto.INT64, []),
                               helper.make_value_info("back", elements)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "seq.onnx")
    wasm = tmp_path / "seq.wasm"
    assert main(["convert", str(tmp_path / "seq.onnx"), "-o", str(wasm)]) == 2
    assert "give the most tensors it may hold with --sequence s=MAX" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "seq.onnx"), "-o", str(wasm), "--sequence", "s=1..3"]) == 0
    tensors = [np.array([1, 2], np.float32), np.array([3, 4], np.float32)]
    np.savez(tmp_path / "s.npz", *tensors)
    assert main(["run", str(wasm), "--input", f"s={tmp_path / 's.npz'}", "--output-dir", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "back: a sequence of 2" in out and "back[1]: float32 [2] [3., 4.]" in out
    with np.load(tmp_path / "o" / "back.npz") as saved:
        assert [saved[k].tolist() for k in saved.files] == [[1, 2], [3, 4]]
    assert np.load(tmp_path / "o" / "n.npy") == 2
    np.savez(tmp_path / "s.npz", *tensors, *tensors)
    assert main(["run", str(wasm), "--input", f"s={tmp_path / 's.npz'}"]) == 2
    assert "input 's': a sequence of 1..3 tensors" in capsys.readouterr().err


def test_run_rejects_wrong_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mlp(tmp_path / "mlp.onnx")
    assert main(["convert", str(tmp_path / "mlp.onnx"), "-o", str(tmp_path / "m.wasm")]) == 0
    np.save(tmp_path / "x.npy", np.zeros((1, 5), np.float32))
    assert main(["run", str(tmp_path / "m.wasm"), "--input", f"x={tmp_path / 'x.npy'}"]) == 2
    assert "expected shape" in capsys.readouterr().err
    np.save(tmp_path / "x.npy", np.zeros((2, 6), np.float32))  # batch 2 > compiled max 1
    assert main(["run", str(tmp_path / "m.wasm"), "--input", f"x={tmp_path / 'x.npy'}"]) == 2
    assert "max-batch" in capsys.readouterr().err


def test_wasi_module_still_serves_the_abi(tmp_path: Path) -> None:
    model = mlp(tmp_path / "mlp.onnx")
    wasm = tmp_path / "mlp.wasm"
    assert main(["convert", str(tmp_path / "mlp.onnx"), "-o", str(wasm), "--wasi", "--max-batch", "2"]) == 0
    assert main(["validate", str(wasm), "--reference", str(tmp_path / "mlp.onnx"), "--samples", "2"]) == 0
    x = np.random.default_rng(5).standard_normal((2, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(wasm), "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", str(tmp_path / "o")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "o" / "y.npy"), ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-5)


def test_transformer_with_dynamic_dims_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The exporter-shaped encoder (symbolic batch and sequence, shape subgraphs) compiles with
    --input-shape for the sequence, batches at run time, and validate finds it matches ONNX Runtime."""
    from tests import model_zoo

    onnx.save(model_zoo.transformer_encoder(), tmp_path / "encoder.onnx")
    wasm = tmp_path / "encoder.wasm"
    assert main(["convert", str(tmp_path / "encoder.onnx"), "-o", str(wasm), "--max-batch", "2",
                 "--input-shape", "input_ids=1,12", "--input-shape", "attention_mask=1,12"]) == 0
    assert main(["validate", str(wasm), "--reference", str(tmp_path / "encoder.onnx"), "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "parity with ONNX Runtime" in out and "FAILED" not in out


def test_run_reads_and_writes_bfloat16_npy_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """np.save writes a bfloat16 array as raw '<V2' bytes: run reads such an input as the model's bfloat16 (a
    float16 one, the wrong type, is still refused) and saves its outputs the same way."""
    import ml_dtypes

    graph = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "neg",
                              [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [2, 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "neg.onnx")
    assert main(["convert", str(tmp_path / "neg.onnx"), "-o", str(tmp_path / "neg.wasm")]) == 0
    x = np.array([[1.5, -2.0, 0.0], [3e38, -0.125, 7.0]], np.float32).astype(ml_dtypes.bfloat16)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(tmp_path / "neg.wasm"), "--input", f"x={tmp_path / 'x.npy'}", "--output-dir",
                 str(tmp_path / "out")]) == 0
    assert "y: bfloat16 [2, 3]" in capsys.readouterr().out
    y = np.load(tmp_path / "out" / "y.npy")
    assert y.tobytes() == (-x.astype(np.float32)).astype(ml_dtypes.bfloat16).tobytes()
    np.save(tmp_path / "h.npy", x.astype(np.float16))
    assert main(["run", str(tmp_path / "neg.wasm"), "--input", f"x={tmp_path / 'h.npy'}"]) == 2
    assert "expected dtype bfloat16, got float16" in capsys.readouterr().err
