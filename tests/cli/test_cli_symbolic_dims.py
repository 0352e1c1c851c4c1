"""The command line with symbolic input dims (ABI version 3): convert shows the range, run takes any size in it,
validate compares with ONNX Runtime at its smallest, a size between and its largest, and `models show` shows it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.model_zoo import widths_model
from tests.parity import ort_run
from wasinfer.artifact.metadata import METADATA_SECTION, custom_section, read_custom_sections
from wasinfer.cli.main import main

SHAPES = ["--input-shape", "a=1,2,4..40", "--input-shape", "b=1,2,4..40"]


@pytest.fixture
def module(tmp_path: Path) -> tuple[onnx.ModelProto, Path, Path]:
    """widths_model() saved as ONNX and converted by the CLI with W in 4..40: (model, .onnx, .wasm)."""
    model = widths_model()
    source, wasm = tmp_path / "widths.onnx", tmp_path / "widths.wasm"
    onnx.save(model, source)
    assert main(["convert", str(source), "-o", str(wasm), *SHAPES]) == 0
    return model, source, wasm


def test_convert_shows_the_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx.save(widths_model(), tmp_path / "widths.onnx")
    assert main(["convert", str(tmp_path / "widths.onnx"), *SHAPES]) == 0
    out = capsys.readouterr().out
    assert "4..40]" in out and "2..20]" in out  # the tensors row: a, b [1, 2, 4..40] → y [1, 4, 2..20]


def _feeds(tmp_path: Path, width_a: int, width_b: int) -> tuple[dict[str, np.ndarray], list[str]]:
    rng = np.random.default_rng(width_a)
    feeds = {"a": rng.standard_normal((1, 2, width_a)).astype(np.float32),
             "b": rng.standard_normal((1, 2, width_b)).astype(np.float32)}
    arguments = []
    for name, array in feeds.items():
        np.save(tmp_path / f"{name}.npy", array)
        arguments += ["--input", f"{name}={tmp_path / f'{name}.npy'}"]
    return feeds, arguments


def test_run_takes_every_size_in_the_range(module: tuple[onnx.ModelProto, Path, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    model, _, wasm = module
    for width in (4, 17, 40):
        feeds, arguments = _feeds(tmp_path, width, width)
        out = tmp_path / f"out{width}"
        assert main(["run", str(wasm), *arguments, "--output-dir", str(out)]) == 0
        got, want = np.load(out / "y.npy"), ort_run(model, feeds)[0]
        assert got.shape == want.shape == (1, 4, (width + 1) // 2)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        assert f"y: float32 [1, 4, {(width + 1) // 2}]" in capsys.readouterr().out
    for width_a, width_b, message in ((41, 41, "input 'a': axis 2 is 41, outside its range 4..40"),
                                      (8, 9, "input 'b': axis 2 is 9, but it is the dim 'W' that input 'a' has as 8")):
        _, arguments = _feeds(tmp_path, width_a, width_b)
        assert main(["run", str(wasm), *arguments]) == 2
        assert message in " ".join(capsys.readouterr().err.split())


def test_validate_compares_at_the_smallest_a_middle_and_the_largest_size(
        module: tuple[onnx.ModelProto, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, source, wasm = module
    assert main(["validate", str(wasm), "--reference", str(source), "--samples", "2", "--json"]) == 0
    checks = {check["name"]: check for check in json.loads(capsys.readouterr().out)["checks"]}
    parity = [name for name in checks if name.startswith("parity with ONNX Runtime")]
    assert parity == [f"parity with ONNX Runtime at W={width} on 2 input sets (rtol 0.0001, atol 1e-05)"
                      for width in (4, 22, 40)]
    assert all(checks[name]["ok"] for name in parity)
    rejected = checks["run rejects a symbolic dim outside its range"]
    assert rejected["ok"] and rejected["detail"] == "input 'a' axis 2 at 41, past 40: wasinfer_run returned 1"


def test_validate_moves_every_symbol_through_its_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two symbols (H and W of one image): each at its smallest, a middle and its largest size; H's middle a
    multiple of its step where its range has one (8..32:8 takes 16, not 20)."""
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((2, 1, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
                              "image", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, "H", "W"])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "image.onnx")
    wasm = tmp_path / "image.wasm"
    for shape, middle in (("x=1,1,3..9,5..30", "H=6, W=17"), ("x=1,1,8..32:8,5..30", "H=16, W=17")):
        assert main(["convert", str(tmp_path / "image.onnx"), "-o", str(wasm), "--input-shape", shape]) == 0
        capsys.readouterr()
        assert main(["validate", str(wasm), "--reference", str(tmp_path / "image.onnx"), "--samples", "1",
                     "--json"]) == 0
        checks = json.loads(capsys.readouterr().out)["checks"]
        smallest, largest = shape.split(",")[2].split(":")[0].split("..")
        assert [(c["name"].split(" on ")[0], c["ok"]) for c in checks if c["name"].startswith("parity")] == [
            (f"parity with ONNX Runtime at H={smallest}, W=5", True), (f"parity with ONNX Runtime at {middle}", True),
            (f"parity with ONNX Runtime at H={largest}, W=30", True)]


def test_validate_with_given_inputs_of_any_size_in_range(module: tuple[onnx.ModelProto, Path, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    _, source, wasm = module
    _, arguments = _feeds(tmp_path, 9, 9)
    assert main(["validate", str(wasm), "--reference", str(source), *arguments, "--json"]) == 0
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert [c["ok"] for c in checks if c["name"].startswith("parity")] == [True]
    _, arguments = _feeds(tmp_path, 50, 50)  # outside the range: exit 2 saying so (was a traceback)
    assert main(["validate", str(wasm), "--reference", str(source), *arguments]) == 2
    assert "the module refuses the inputs: input 'a': axis 2 is 50, outside its range 4..40" in " ".join(
        capsys.readouterr().err.split())


def test_models_show_gives_a_symbolic_dim_as_its_range(module: tuple[onnx.ModelProto, Path, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    _, _, wasm = module
    monkeypatch.setenv("WASINFER_HOME", str(tmp_path / "home"))
    assert main(["push", str(wasm), "widths:1.0.0", "--json"]) == 0
    capsys.readouterr()
    assert main(["models", "show", "widths", "--json"]) == 0
    [version] = json.loads(capsys.readouterr().out)["versions"]
    assert version["signature"] == "a float32 [1, 2, 4..40], b float32 [1, 2, 4..40] → y float32 [1, 4, 2..20]"
    assert version["inputs"][0] == {"name": "a", "dtype": "float32", "shape": [1, 2, 40], "ranges": {"2": [4, 40]}}
    assert main(["models", "show", "widths"]) == 0
    assert "4..40]" in capsys.readouterr().out


def test_dims_past_the_module_s_memory_are_refused_by_name(module: tuple[onnx.ModelProto, Path, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The metadata is the module author's word: with dims_offset past the linear memory every run failed on numpy's
    "could not broadcast" (a 500 when served) instead of the load saying why; validate reports it, never writes
    there."""
    _, _, wasm = module
    data = wasm.read_bytes()
    raw = read_custom_sections(data)[METADATA_SECTION]
    fields = json.loads(raw)
    fields["inputs"][0]["dims_offset"] = 1 << 20
    lying = tmp_path / "lying.wasm"
    lying.write_bytes(data.replace(custom_section(METADATA_SECTION, raw),
                                   custom_section(METADATA_SECTION, json.dumps(fields).encode()), 1))
    assert main(["validate", str(lying), "--json"]) == 1
    checks = {check["name"]: check for check in json.loads(capsys.readouterr().out)["checks"]}
    agrees = checks["ABI agrees with metadata"]
    assert not agrees["ok"] and "input 'a' dims end past linear memory (1048588 > 65536)" in agrees["detail"]
    _, arguments = _feeds(tmp_path, 8, 8)
    assert main(["run", str(lying), *arguments]) == 2
    assert ("tensor 'a': its dims [1048576, 1048588) in the metadata end past the module's linear memory of 65536 "
            "bytes") in " ".join(capsys.readouterr().err.split())
