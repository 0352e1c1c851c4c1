"""Rego policies in-process: the default set on good and bad models, custom sets, and broken policies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from wasinfer.artifact import convert_onnx
from wasinfer.registry.artifact import ANNOTATIONS, ModelArtifact
from wasinfer.registry.policy import (
    DEFAULT_POLICY_DIR,
    Decision,
    PolicyError,
    allowed,
    check,
    denials,
    evaluate,
    policy_dir_from_env,
    policy_input,
)
from wasinfer.registry.trust import KeyPair, TrustPolicy, generate_keys, sign, verify

DEFAULT_FILES = {"accuracy.rego", "format.rego", "signature.rego", "size.rego"}


def scale_onnx() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["m"]), helper.make_node("Relu", ["m"], ["y"])], "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.array([1, 2, 3, 4], np.float32), "scale")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.fixture(scope="module")
def wasm() -> bytes:
    return convert_onnx(scale_onnx(), max_batch=4, name="scale").wasm


def make(wasm: bytes, accuracy: float | None = None, source: bool = True) -> ModelArtifact:
    notes = {ANNOTATIONS["accuracy"]: str(accuracy)} if accuracy is not None else {}
    return ModelArtifact.from_module(wasm, "scale", "1.0.0", annotations=notes,
                                     source=scale_onnx().SerializeToString() if source else None)


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return generate_keys(tmp_path / "keys", "ci")


def by_file(decisions: list[Decision], rule: str = "deny") -> dict[str, Decision]:
    return {d.policy: d for d in decisions if d.rule == rule}


def test_input_document(wasm: bytes) -> None:
    doc = policy_input(make(wasm, accuracy=0.91))
    assert doc["name"] == "scale" and doc["version"] == "1.0.0" and doc["format"] == "wasm"
    assert doc["size_bytes"] == len(wasm) + doc["source_bytes"] > len(wasm)
    assert doc["ops"] == ["Mul", "Relu"]  # from the ONNX source layer
    assert doc["accuracy"] == pytest.approx(0.91)
    assert doc["signed"] is False and doc["signer"] is None
    assert doc["quantisation"] == "none" and doc["max_batch"] == 4
    assert doc["source_format"] == "onnx" and doc["source_digest"].startswith("sha256:")
    assert doc["inputs"] == [{"name": "x", "dtype": "float32", "shape": [1, 4]}]
    assert doc["outputs"] == [{"name": "y", "dtype": "float32", "shape": [1, 4]}]
    json.dumps(doc)  # JSON all the way down: it goes to Rego as is

    bare = policy_input(make(wasm, source=False))
    assert bare["ops"] == [] and bare["accuracy"] is None and bare["size_bytes"] == len(wasm)
    assert bare["source_digest"].startswith("sha256:")  # from the metadata's source_sha256


def test_input_signer_only_when_verified(tmp_path: Path, wasm: bytes, keys: KeyPair) -> None:
    signed = sign(make(wasm), keys.private_key)
    good = policy_input(signed, verify(signed, TrustPolicy.from_paths("require", [keys.public_key])))
    assert good["signed"] is True and good["signer"] == keys.key_id
    unknown = policy_input(signed, verify(signed, TrustPolicy("warn")))
    assert unknown["signed"] is False and unknown["signer"] is None


def test_junk_accuracy_is_refused_not_ignored(wasm: bytes) -> None:
    artifact = make(wasm)
    artifact.annotations[ANNOTATIONS["accuracy"]] = "excellent"
    with pytest.raises(PolicyError, match="not a number"):
        policy_input(artifact)


def test_default_policies_allow_a_good_model(wasm: bytes) -> None:
    decisions = check(make(wasm, accuracy=0.97), None, DEFAULT_POLICY_DIR)
    assert allowed(decisions) and denials(decisions) == []
    assert set(by_file(decisions)) == DEFAULT_FILES
    assert by_file(decisions, "warn")["signature.rego"].messages == ["unsigned: no trusted key has signed this model"]
    assert "accuracy.rego" not in by_file(decisions, "warn")  # an accuracy was recorded and checked


def test_oversize_is_denied(wasm: bytes) -> None:
    doc = policy_input(make(wasm))
    doc["size_bytes"] = 200 * 1024 * 1024
    decisions = evaluate(DEFAULT_POLICY_DIR, doc)
    assert not allowed(decisions)
    assert denials(decisions) == ["size.rego: model is 209715200 bytes (module + source), "
                                  "over the limit of 104857600 bytes"]
    # and on a real artifact, with the limit lowered through data
    small = check(make(wasm), None, DEFAULT_POLICY_DIR, data={"wasinfer": {"settings": {"max_size_bytes": 100}}})
    assert not by_file(small)["size.rego"].allowed and by_file(small)["accuracy.rego"].allowed


def test_low_accuracy_is_denied_and_missing_accuracy_only_warns(wasm: bytes) -> None:
    low = check(make(wasm, accuracy=0.3), None, DEFAULT_POLICY_DIR)
    assert not allowed(low)
    assert by_file(low)["accuracy.rego"].messages == ["accuracy 0.3 is below the floor of 0.5"]
    assert allowed(check(make(wasm, accuracy=0.5), None, DEFAULT_POLICY_DIR))  # the floor itself passes
    none = check(make(wasm), None, DEFAULT_POLICY_DIR)
    assert allowed(none) and "not checked" in by_file(none, "warn")["accuracy.rego"].messages[0]


def test_unsigned_denied_when_signatures_required(tmp_path: Path, wasm: bytes, keys: KeyPair) -> None:
    required = {"wasinfer": {"settings": {"require_signed": True}}}
    trust = TrustPolicy.from_paths("warn", [keys.public_key])
    unsigned = make(wasm, accuracy=0.9)
    decisions = check(unsigned, verify(unsigned, trust), DEFAULT_POLICY_DIR, data=required)
    assert denials(decisions) == ["signature.rego: unsigned: no trusted key has signed this model, "
                                  "and signatures are required"]
    signed = sign(unsigned, keys.private_key)
    assert allowed(check(signed, verify(signed, trust), DEFAULT_POLICY_DIR, data=required))
    # signed by a key nobody trusts counts as unsigned
    stranger = sign(unsigned, generate_keys(tmp_path / "x", "stranger").private_key)
    assert not allowed(check(stranger, verify(stranger, trust), DEFAULT_POLICY_DIR, data=required))


def test_unknown_format_is_denied(wasm: bytes) -> None:
    doc = policy_input(make(wasm))
    doc["format"], doc["source_format"] = "pickle", "pt"
    messages = by_file(evaluate(DEFAULT_POLICY_DIR, doc))["format.rego"].messages
    assert sorted(messages) == ['format pickle is not one of the allowed formats ["wasm"]',
                                'source format pt is not one of ["onnx", "tflite"]']


def test_settings_json_in_a_copied_directory(tmp_path: Path, wasm: bytes) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    settings = json.loads((policies / "settings.json").read_text())
    settings["wasinfer"]["settings"]["min_accuracy"] = 0.95
    (policies / "settings.json").write_text(json.dumps(settings))
    decisions = check(make(wasm, accuracy=0.9), None, policies)
    assert denials(decisions) == ["accuracy.rego: accuracy 0.9 is below the floor of 0.95"]
    assert allowed(check(make(wasm, accuracy=0.9), None, DEFAULT_POLICY_DIR))


def write(directory: Path, name: str, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(source)
    return path


def test_custom_policy_directory(tmp_path: Path, wasm: bytes) -> None:
    write(tmp_path, "ops.rego", 'package wasinfer.ops\nimport rego.v1\n'
          'deny contains sprintf("op %v is not allowed", [op]) if { some op in input.ops; op in {"Relu"} }\n'
          'warn contains "no ops known" if { count(input.ops) == 0 }\n')
    write(tmp_path, "batch.rego", 'package wasinfer.batch\nimport rego.v1\n'
          'deny contains "max_batch must be at least 8" if { input.max_batch < 8 }\n')
    decisions = check(make(wasm), None, tmp_path)
    assert decisions == [Decision("batch.rego", "deny", False, ["max_batch must be at least 8"]),
                         Decision("ops.rego", "deny", False, ["op Relu is not allowed"])]
    without_source = check(make(wasm, source=False), None, tmp_path)
    assert by_file(without_source)["ops.rego"].allowed
    assert by_file(without_source, "warn")["ops.rego"].messages == ["no ops known"]


def test_syntax_error_names_the_file_and_line(tmp_path: Path, wasm: bytes, capfd: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "good.rego", 'package wasinfer.good\nimport rego.v1\ndeny contains "x" if { false }\n')
    write(tmp_path, "broken.rego", 'package wasinfer.broken\nimport rego.v1\n\ndeny contains msg if { msg := }\n')
    with pytest.raises(PolicyError) as info:
        check(make(wasm), None, tmp_path)
    assert str(info.value).startswith("broken.rego: ")
    assert "line 4" in str(info.value)
    assert capfd.readouterr().out == ""  # rego-cpp's own error printout is off (it would corrupt --json)


@pytest.mark.parametrize(("source", "expected"), [
    ('package wasinfer.f\nimport rego.v1\ndeny contains "x" if { nope(input.ops) }\n', "Function not found: nope"),
    ('package wasinfer.f\nimport rego.v1\ndeny contains msg if { msg := sprintf("%d", 5) }\n', "evaluation failed"),
    ('package wasinfer.f\nimport rego.v1\ndeny := true\n', "deny must be a set of messages"),
    ('package wasinfer.f\nimport rego.v1\nallow := true\n', "defines neither deny nor warn"),
    ('package other.f\nimport rego.v1\ndeny contains "x" if { false }\n', "must be wasinfer.<name>"),
    ('# no package\n', "no package declaration"),
])
def test_broken_policies_fail_closed(tmp_path: Path, wasm: bytes, source: str, expected: str) -> None:
    write(tmp_path, "f.rego", source)
    with pytest.raises(PolicyError, match=expected) as info:
        check(make(wasm), None, tmp_path)
    assert str(info.value).startswith("f.rego: ")


def test_directory_errors(tmp_path: Path, wasm: bytes) -> None:
    with pytest.raises(PolicyError, match=r"no \.rego policy files"):
        check(make(wasm), None, tmp_path)
    with pytest.raises(PolicyError, match="not a directory"):
        check(make(wasm), None, tmp_path / "missing")
    write(tmp_path, "a.rego", 'package wasinfer.same\nimport rego.v1\ndeny contains "a" if { false }\n')
    write(tmp_path, "b.rego", 'package wasinfer.same\nimport rego.v1\nwarn contains "b" if { false }\n')
    with pytest.raises(PolicyError, match=r"also declared by a\.rego"):
        check(make(wasm), None, tmp_path)
    (tmp_path / "b.rego").unlink()
    write(tmp_path, "data.json", "[1, 2]")
    with pytest.raises(PolicyError, match=r"data\.json"):
        check(make(wasm), None, tmp_path)


def test_policy_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WASINFER_POLICY_DIR", raising=False)
    assert policy_dir_from_env() == DEFAULT_POLICY_DIR
    monkeypatch.setenv("WASINFER_POLICY_DIR", "off")
    assert policy_dir_from_env() is None
    monkeypatch.setenv("WASINFER_POLICY_DIR", str(tmp_path))
    assert policy_dir_from_env() == tmp_path
