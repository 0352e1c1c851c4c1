"""Signatures: key files, signing, and verification that fails on any change after signing."""

from __future__ import annotations

import base64
import dataclasses
import stat
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from wasinfer.artifact import convert_onnx
from wasinfer.registry.artifact import ANNOTATIONS, ModelArtifact
from wasinfer.registry.trust import (
    KeyPair,
    TrustError,
    TrustPolicy,
    generate_keys,
    key_id,
    load_public_key,
    sign,
    signing_key_from_env,
    trust_policy_from_env,
    verify,
)


def scale_wasm() -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["y"])], "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.array([1, 2, 3, 4], np.float32), "scale")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return convert_onnx(model, max_batch=4, name="scale").wasm


@pytest.fixture(scope="module")
def wasm() -> bytes:
    return scale_wasm()


@pytest.fixture
def artifact(wasm: bytes) -> ModelArtifact:
    return ModelArtifact.from_module(wasm, "scale", "1.2.3", source=b"onnx bytes",
                                     annotations={ANNOTATIONS["accuracy"]: "0.91"})


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return generate_keys(tmp_path / "keys", "alice")


def trusting(*pairs: KeyPair, mode: str = "require") -> TrustPolicy:
    return TrustPolicy.from_paths(mode, [p.public_key for p in pairs])


def test_generate_writes_pem_files_with_private_key_private(keys: KeyPair) -> None:
    assert keys.private_key.name == "alice.key" and keys.public_key.name == "alice.pub"
    assert stat.S_IMODE(keys.private_key.stat().st_mode) == 0o600
    assert keys.private_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert keys.public_key.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert len(keys.key_id) == 16 and int(keys.key_id, 16) >= 0
    assert key_id(load_public_key(keys.public_key)) == keys.key_id


def test_generate_refuses_to_overwrite(keys: KeyPair) -> None:
    before = keys.private_key.read_bytes()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        generate_keys(keys.private_key.parent, "alice")
    assert keys.private_key.read_bytes() == before
    keys.private_key.unlink()  # the public half alone also blocks: the pair must stay a pair
    with pytest.raises(FileExistsError):
        generate_keys(keys.private_key.parent, "alice")
    assert not keys.private_key.exists()


def test_generate_refuses_path_like_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="key name"):
        generate_keys(tmp_path, "../escape")


def test_two_keys_have_different_ids(tmp_path: Path, keys: KeyPair) -> None:
    assert generate_keys(tmp_path, "bob").key_id != keys.key_id


def test_sign_then_verify(artifact: ModelArtifact, keys: KeyPair) -> None:
    signed = sign(artifact, keys.private_key)
    assert ANNOTATIONS["signature"] not in artifact.annotations  # the input is not changed
    assert signed.annotations[ANNOTATIONS["signer"]] == keys.key_id
    assert len(base64.b64decode(signed.annotations[ANNOTATIONS["signature"]])) == 64
    verdict = verify(signed, trusting(keys))
    assert verdict.ok and verdict.verified and verdict.signer == keys.key_id
    assert keys.key_id in verdict.reason


def test_signature_survives_the_manifest_round_trip(artifact: ModelArtifact, keys: KeyPair) -> None:
    signed = sign(artifact, keys.private_key)
    again = ModelArtifact.from_manifest(signed.manifest(), signed.blobs())
    assert verify(again, trusting(keys)).verified


def _tampered(signed: ModelArtifact) -> dict[str, ModelArtifact]:
    wasm = bytearray(signed.wasm)
    wasm[-1] ^= 1
    config = signed.config.replace(b'"max_batch":4', b'"max_batch":5')
    assert config != signed.config
    return {
        "wasm byte": dataclasses.replace(signed, wasm=bytes(wasm)),
        "config": dataclasses.replace(signed, config=config),
        "source": dataclasses.replace(signed, source=b"other onnx"),
        "source removed": dataclasses.replace(signed, source=None),
        "accuracy annotation": dataclasses.replace(
            signed, annotations={**signed.annotations, ANNOTATIONS["accuracy"]: "0.99"}),
        "version annotation": dataclasses.replace(
            signed, annotations={**signed.annotations, ANNOTATIONS["version"]: "1.2.4"}),
        "added annotation": dataclasses.replace(signed, annotations={**signed.annotations, "x.extra": "1"}),
    }


def test_any_change_after_signing_fails_with_the_reason(artifact: ModelArtifact, keys: KeyPair) -> None:
    signed = sign(artifact, keys.private_key)
    for what, changed in _tampered(signed).items():
        verdict = verify(changed, trusting(keys))
        assert not verdict.ok and not verdict.verified, what
        assert verdict.reason.startswith("signature does not match: the model was changed after signing"), what


def test_a_signature_from_another_artifact_does_not_verify(wasm: bytes, keys: KeyPair) -> None:
    one = sign(ModelArtifact.from_module(wasm, "scale", "1.0.0"), keys.private_key)
    other = ModelArtifact.from_module(wasm, "scale", "2.0.0")
    other.annotations.update({k: one.annotations[k] for k in (ANNOTATIONS["signer"], ANNOTATIONS["signature"])})
    assert "does not match" in verify(other, trusting(keys)).reason


def test_unknown_key_is_named(tmp_path: Path, artifact: ModelArtifact, keys: KeyPair) -> None:
    mallory = generate_keys(tmp_path / "other", "mallory")
    signed = sign(artifact, mallory.private_key)
    verdict = verify(signed, trusting(keys))
    assert not verdict.ok and not verdict.verified
    assert verdict.signer == mallory.key_id
    assert verdict.reason.startswith(f"signed by unknown key {mallory.key_id}: not among the 1 trusted key(s)")
    # one sentence where none are configured (it read "not among no trusted keys are configured")
    assert verify(signed, TrustPolicy("require")).reason == \
        f"signed by unknown key {mallory.key_id}: no trusted keys are configured (WASINFER_TRUST_KEYS)"


def test_swapping_the_signer_to_a_trusted_key_fails(tmp_path: Path, artifact: ModelArtifact, keys: KeyPair) -> None:
    mallory = generate_keys(tmp_path / "other", "mallory")
    signed = sign(artifact, mallory.private_key)
    signed.annotations[ANNOTATIONS["signer"]] = keys.key_id  # claim alice signed it
    verdict = verify(signed, trusting(keys, mallory))
    assert not verdict.ok and "does not match" in verdict.reason


def test_malformed_signatures(artifact: ModelArtifact, keys: KeyPair) -> None:
    signed = sign(artifact, keys.private_key)
    garbled = dataclasses.replace(signed, annotations={**signed.annotations, ANNOTATIONS["signature"]: "!!"})
    assert verify(garbled, trusting(keys)).reason == "malformed signature: not base64"
    no_signer = dataclasses.replace(signed, annotations={
        k: v for k, v in signed.annotations.items() if k != ANNOTATIONS["signer"]})
    assert "dev.wasinfer.signer annotation is missing" in verify(no_signer, trusting(keys)).reason


@pytest.mark.parametrize(("mode", "ok"), [("require", False), ("warn", True), ("off", True)])
def test_unsigned_under_each_mode(artifact: ModelArtifact, keys: KeyPair, mode: str, ok: bool) -> None:
    verdict = verify(artifact, trusting(keys, mode=mode))
    assert verdict.ok is ok
    assert not verdict.verified and verdict.signer is None
    assert verdict.reason.startswith("unsigned")


def test_tampered_model_is_accepted_but_not_verified_under_warn(artifact: ModelArtifact, keys: KeyPair) -> None:
    changed = _tampered(sign(artifact, keys.private_key))["wasm byte"]
    verdict = verify(changed, trusting(keys, mode="warn"))
    assert verdict.ok and not verdict.verified and "does not match" in verdict.reason


def test_bad_mode_and_bad_key_files(tmp_path: Path, keys: KeyPair) -> None:
    with pytest.raises(TrustError, match="trust mode"):
        TrustPolicy("sometimes")
    (tmp_path / "junk.pub").write_text("not a key")
    with pytest.raises(TrustError, match=r"junk\.pub.*not a PEM public key"):
        TrustPolicy.from_paths("require", [tmp_path])
    with pytest.raises(TrustError, match="signing key"):
        sign(ModelArtifact(b"{}", b""), keys.public_key)  # a public key is not a signing key


def test_key_directory_trusts_every_pub(tmp_path: Path, keys: KeyPair) -> None:
    bob = generate_keys(keys.public_key.parent, "bob")
    policy = TrustPolicy.from_paths("require", [keys.public_key.parent])
    assert set(policy.keys) == {keys.key_id, bob.key_id}


def test_environment(monkeypatch: pytest.MonkeyPatch, artifact: ModelArtifact, keys: KeyPair) -> None:
    for name in ("WASINFER_SIGNING_KEY", "WASINFER_TRUST_KEYS", "WASINFER_TRUST_MODE"):
        monkeypatch.delenv(name, raising=False)
    assert signing_key_from_env() is None
    assert trust_policy_from_env().mode == "warn" and not trust_policy_from_env().keys

    monkeypatch.setenv("WASINFER_SIGNING_KEY", str(keys.private_key))
    monkeypatch.setenv("WASINFER_TRUST_KEYS", str(keys.public_key.parent))
    key = signing_key_from_env()
    assert key == keys.private_key
    policy = trust_policy_from_env()
    assert policy.mode == "require" and keys.key_id in policy.keys
    assert verify(sign(artifact, key), policy).verified
    assert not verify(artifact, policy).ok

    monkeypatch.setenv("WASINFER_TRUST_MODE", "WARN")
    assert trust_policy_from_env().mode == "warn"
    monkeypatch.setenv("WASINFER_TRUST_MODE", "maybe")
    with pytest.raises(TrustError, match="WASINFER_TRUST_MODE"):
        trust_policy_from_env()
    monkeypatch.setenv("WASINFER_SIGNING_KEY", str(keys.private_key) + ".missing")
    with pytest.raises(TrustError, match="no such file"):
        signing_key_from_env()
