"""`wasinfer keys generate` and `wasinfer policy test`: output and exit codes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from wasinfer.artifact import convert_onnx
from wasinfer.cli.main import main


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["y"])], "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.array([1, 2, 3, 4], np.float32), "scale")])
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path_factory.mktemp("model") / "scale.wasm"
    path.write_bytes(convert_onnx(onnx_model, max_batch=4, name="scale").wasm)
    return path


def test_keys_generate_defaults_to_wasinfer_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WASINFER_HOME", str(tmp_path))
    assert main(["keys", "generate", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["private_key"] == str(tmp_path / "keys" / "wasinfer.key")
    assert out["public_key"] == str(tmp_path / "keys" / "wasinfer.pub")
    assert len(out["key_id"]) == 16
    assert stat.S_IMODE((tmp_path / "keys" / "wasinfer.key").stat().st_mode) == 0o600

    assert main(["keys", "generate"]) == 2  # never overwrites
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["keys", "generate", "--dir", str(tmp_path / "other"), "--name", "ci"]) == 0
    text = capsys.readouterr().out
    assert str(tmp_path / "other" / "ci.key") in text and "key id" in text


def test_policy_test_allows_a_good_model(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "test", "default", str(model), "--accuracy", "0.9"]) == 0
    out = capsys.readouterr().out
    for name in ("size.rego", "accuracy.rego", "signature.rego", "format.rego"):
        assert name in out
    assert "allowed" in out and "unsigned" in out


def test_policy_test_denies_with_exit_1_and_says_why(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "test", "default", str(model), "--accuracy", "0.2"]) == 1
    out = capsys.readouterr().out
    assert "deny" in out and "accuracy 0.2 is below the floor of 0.5" in out and "denied" in out


def test_policy_test_json_and_signing(tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "require.json"
    data.write_text(json.dumps({"wasinfer": {"settings": {"require_signed": True}}}))
    assert main(["policy", "test", "default", str(model), "--data", str(data), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["allowed"] is False and result["signature"]["verified"] is False
    signature = next(d for d in result["decisions"] if d["policy"] == "signature.rego" and d["rule"] == "deny")
    assert signature["allowed"] is False and "signatures are required" in signature["messages"][0]
    assert result["input"]["name"] == "scale" and result["input"]["version"] == "0.0.0"

    assert main(["keys", "generate", "--dir", str(tmp_path / "k"), "--name", "ci", "--json"]) == 0
    kid = json.loads(capsys.readouterr().out)["key_id"]
    args = ["policy", "test", "default", str(model), "--data", str(data), "--json", "--name", "digits",
            "--version", "2.0.0", "--signing-key", str(tmp_path / "k" / "ci.key")]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["allowed"] is True and result["signature"]["verified"] is True
    assert result["input"]["signer"] == kid and result["input"]["name"] == "digits"


def test_policy_test_bad_input_exits_2(tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "test", "default", str(tmp_path / "missing.wasm")]) == 2
    not_wasm = tmp_path / "x.wasm"
    not_wasm.write_bytes(b"hello")
    assert main(["policy", "test", "default", str(not_wasm)]) == 2
    assert main(["policy", "test", str(tmp_path / "nowhere"), str(model)]) == 2
    assert "not a directory" in capsys.readouterr().err
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "bad.rego").write_text("package wasinfer.bad\nimport rego.v1\ndeny contains x if { x := }\n")
    assert main(["policy", "test", str(tmp_path / "p"), str(model), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "bad.rego" in captured.err
    assert main(["policy", "test", "default", str(model), "--version", "one"]) == 2
    assert "semantic version" in capsys.readouterr().err
