"""OpenSSF model signing end to end: push signs, the bundle travels as an OCI referrer, pull and the server verify.

Everything runs against a real registry on loopback (Debian's docker-registry 2.8, which has no referrers
API, so the tag schema's fallback index is what carries the signatures) and through `wasinfer` itself;
the pulled files are also checked with model-signing's own API and CLI, as someone without wasinfer would.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.cli.test_registry_cli import run, run_json
from tests.registry.registry_server import Registry, run_referrers_proxy, run_registry
from tests.serving.conftest import write_scale_versions
from wasinfer.registry.admission import LEGACY_SIGNATURE_WARNING, Refused, admit
from wasinfer.registry.artifact import ANNOTATIONS, ModelArtifact
from wasinfer.registry.fetch import PLAIN_HTTP_ENV, fetch_artifact
from wasinfer.registry.modelsign import BUNDLE_MEDIA_TYPE, sign_bundle
from wasinfer.registry.oci import INDEX_MEDIA_TYPE, OciClient
from wasinfer.registry.store import LocalStore
from wasinfer.registry.trust import TrustPolicy, generate_keys, sign

model_signing = pytest.importorskip("model_signing")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WASINFER_HOME", str(tmp_path / "home"))
    for name in ("WASINFER_SIGNING_KEY", "WASINFER_SIGNING_CERT", "WASINFER_SIGNING_CHAIN", "WASINFER_TRUST_KEYS",
                 "WASINFER_TRUST_CA", "WASINFER_TRUST_MODE", "WASINFER_POLICY_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(PLAIN_HTTP_ENV, "1")
    return tmp_path / "home"


@pytest.fixture
def modules(tmp_path: Path) -> dict[str, Path]:
    out = write_scale_versions(tmp_path)
    return out


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with run_registry(tmp_path / "registry") as running:
        yield running


# -- a test CA, made with cryptography ----------------------------------------------------------------

def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(directory: Path, common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    """A self-signed CA certificate (and its key), written as `<common name>.pem`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=True, crl_sign=True, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{common_name.replace(' ', '-')}.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key, certificate, path


def issue_signing_certificate(directory: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate,
                              common_name: str) -> tuple[Path, Path]:
    """A P-256 key and a code-signing certificate for it from `ca`: (key path, certificate path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=False, crl_sign=False, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .sign(ca_key, hashes.SHA256()))
    key_path, cert_path = directory / "signer.key", directory / "signer.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def show(capsys: pytest.CaptureFixture[str], *parts: object) -> None:
    """Print past capsys (which the CLI's output goes through), so `pytest -s` shows what was refused and why."""
    with capsys.disabled():
        print(*parts)


def model_signing_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """model-signing's own command line (`python -m model_signing`), as a user without wasinfer runs it."""
    return subprocess.run([sys.executable, "-m", "model_signing", *argv], capture_output=True, text=True,
                          timeout=120, check=False)


# -- tests ------------------------------------------------------------------------------------------------

def test_a_key_signed_push_is_a_referrer_that_pull_and_model_signing_itself_verify(
        home: Path, modules: dict[str, Path], registry: Registry, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys"
    generated = run_json(capsys, "keys", "generate", "--dir", str(keys), "--name", "ci", "--kind", "model-signing")
    assert b"BEGIN PUBLIC KEY" in (keys / "ci.pub").read_bytes() and (keys / "ci.key").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("WASINFER_SIGNING_KEY", str(keys / "ci.key"))
    monkeypatch.setenv("WASINFER_TRUST_KEYS", str(keys / "ci.pub"))
    ref = f"{registry.address}/team/scale"
    pushed = run_json(capsys, "push", str(modules["v1"]), f"{ref}:1.0.0", "--source", str(modules["v1_onnx"]))
    [referrer] = pushed["signatures"]
    monkeypatch.delenv("WASINFER_SIGNING_KEY")

    # What the registry holds: the model manifest untouched (no wasinfer annotations of a signature), and, as
    # Distribution 2.8 has no referrers API, the tag schema's index under sha256-<hex> listing the bundle.
    with OciClient(registry.address, plain_http=True) as client:
        model = client.pull("team/scale", "1.0.0")
        assert ANNOTATIONS["signature"] not in model.annotations
        index = json.loads(client._get_manifest("team/scale", pushed["digest"].replace(":", "-"), INDEX_MEDIA_TYPE))
        assert [(d["digest"], d["artifactType"]) for d in index["manifests"]] == [(referrer, BUNDLE_MEDIA_TYPE)]
        signature_manifest = json.loads(client._get_manifest("team/scale", referrer))
        assert signature_manifest["subject"]["digest"] == pushed["digest"]
        assert signature_manifest["artifactType"] == BUNDLE_MEDIA_TYPE
        assert client.referrers("team/scale", pushed["digest"], BUNDLE_MEDIA_TYPE) == index["manifests"]
        assert client.tags("team/scale") == ["1.0.0"]  # the index's tag is not a version

    monkeypatch.setenv("WASINFER_TRUST_MODE", "require")
    out = tmp_path / "pulled"
    pulled = run_json(capsys, "pull", f"{ref}:1.0.0", "-o", f"{out}/")
    assert pulled["files"] == ["model.wasm", "model.onnx", "model.sig"]
    assert (out / "model.wasm").read_bytes() == modules["v1"].read_bytes()
    assert (out / "model.onnx").read_bytes() == modules["v1_onnx"].read_bytes()
    assert fetch_artifact(ref, "1.0.0").digest() == pushed["digest"]  # the server's path admits it too
    run_json(capsys, "pull", f"{ref}:1.0.0")  # into the local store, the signature with it
    assert fetch_artifact("team/scale", "1.0.0").digest() == pushed["digest"]

    # model-signing's own API and CLI verify the pulled directory, knowing nothing of wasinfer.
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=keys / "ci.pub").set_hashing_config(
        model_signing.hashing.Config().set_ignored_paths(paths=["model.sig"])).verify(out, out / "model.sig")
    cli = model_signing_cli("verify", "key", str(out), "--signature", str(out / "model.sig"),
                            "--public_key", str(keys / "ci.pub"))
    show(capsys, "model_signing verify key:", cli.returncode, cli.stdout.strip(), cli.stderr.strip()[-300:])
    assert cli.returncode == 0 and "succeeded" in cli.stdout.lower(), cli.stdout + cli.stderr
    (out / "model.wasm").write_bytes(modules["v2"].read_bytes())  # and refuse a changed file
    cli = model_signing_cli("verify", "key", str(out), "--signature", str(out / "model.sig"),
                            "--public_key", str(keys / "ci.pub"))
    assert cli.returncode != 0
    assert pulled["signature"] == {"verified": True, "signer": generated["key_id"],
                                   "reason": f"model-signing bundle verified by trusted key {generated['key_id']}"}


def test_a_certificate_signed_model_verifies_against_its_ca_and_no_other(
        home: Path, modules: dict[str, Path], registry: Registry, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    ca_key, ca, ca_path = make_ca(tmp_path / "pki", "wasinfer test CA")
    _, _, other_ca_path = make_ca(tmp_path / "pki", "another CA")
    key_path, cert_path = issue_signing_certificate(tmp_path / "pki", ca_key, ca, "release pipeline")
    monkeypatch.setenv("WASINFER_SIGNING_KEY", str(key_path))
    monkeypatch.setenv("WASINFER_SIGNING_CERT", str(cert_path))
    monkeypatch.setenv("WASINFER_TRUST_CA", str(ca_path))  # sets the mode to require
    ref = f"{registry.address}/team/scale"
    run_json(capsys, "push", str(modules["v1"]), f"{ref}:1.0.0")
    monkeypatch.delenv("WASINFER_SIGNING_KEY")
    monkeypatch.delenv("WASINFER_SIGNING_CERT")

    out = tmp_path / "pulled"
    run_json(capsys, "pull", f"{ref}:1.0.0", "-o", f"{out}/")
    cli = model_signing_cli("verify", "certificate", str(out), "--signature", str(out / "model.sig"),
                            "--certificate_chain", str(ca_path))
    show(capsys, "model_signing verify certificate:", cli.returncode, cli.stdout.strip())
    assert cli.returncode == 0, cli.stdout + cli.stderr

    monkeypatch.setenv("WASINFER_TRUST_CA", str(other_ca_path))
    code, _, err = run(capsys, "pull", f"{ref}:1.0.0", "-o", str(tmp_path / "refused.wasm"))
    show(capsys, err)
    assert code == 2 and "CN=release pipeline" in err and "does not lead to a trusted CA" in err
    assert not (tmp_path / "refused.wasm").exists()
    monkeypatch.delenv("WASINFER_TRUST_CA")
    monkeypatch.setenv("WASINFER_TRUST_MODE", "require")
    code, _, err = run(capsys, "pull", f"{ref}:1.0.0", "-o", str(tmp_path / "refused.wasm"))
    assert code == 2 and "no trusted CA certificates are configured (WASINFER_TRUST_CA)" in err


def test_a_changed_module_a_moved_signature_or_an_untrusted_key_is_refused_naming_why(
        home: Path, modules: dict[str, Path], registry: Registry, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    trusted = generate_keys(tmp_path / "keys", "ci", kind="model-signing")
    stranger = generate_keys(tmp_path / "strangers", "someone", kind="model-signing")
    monkeypatch.setenv("WASINFER_TRUST_KEYS", str(trusted.public_key))
    monkeypatch.setenv("WASINFER_TRUST_MODE", "require")
    ref = f"{registry.address}/team/scale"
    monkeypatch.setenv("WASINFER_SIGNING_KEY", str(trusted.private_key))
    pushed = run_json(capsys, "push", str(modules["v1"]), f"{ref}:1.0.0")
    monkeypatch.delenv("WASINFER_SIGNING_KEY")

    # What someone with write access to the registry, and no trusted key, can do.
    with OciClient(registry.address, plain_http=True) as client:
        signed = client.pull("team/scale", "1.0.0")
        [bundle] = client.referrer_blobs("team/scale", client.referrers("team/scale", pushed["digest"])[0],
                                         BUNDLE_MEDIA_TYPE)
        wasm = bytearray(signed.wasm)
        wasm[len(wasm) // 2] ^= 0x01
        changed = dataclasses.replace(signed, wasm=bytes(wasm))  # one module byte, the bundle copied to it
        client.push("team/scale", "1.0.1", changed)
        client.push_referrer("team/scale", changed.digest(), BUNDLE_MEDIA_TYPE, bundle)
        client.tag("team/scale", pushed["digest"], "2.0.0")  # the signed manifest re-tagged as another version
        moved = dataclasses.replace(signed, annotations={**signed.annotations, ANNOTATIONS["version"]: "3.0.0"})
        client.push("team/scale", "3.0.0", moved)  # a manifest claiming 3.0.0 with the 1.0.0 signature attached
        client.push_referrer("team/scale", moved.digest(), BUNDLE_MEDIA_TYPE, bundle)
        stranger_signed = ModelArtifact.from_module(modules["v2"].read_bytes(), "team/scale", "4.0.0")
        client.push("team/scale", "4.0.0", stranger_signed)
        client.push_referrer("team/scale", stranger_signed.digest(), BUNDLE_MEDIA_TYPE,
                             sign_bundle(stranger_signed, stranger.private_key))
        client.push("team/scale", "5.0.0", ModelArtifact.from_module(modules["v2"].read_bytes(), "team/scale", "5.0.0"))

    for tag, says in (("1.0.1", "model signature does not match the files: model.wasm changed after signing"),
                      ("2.0.0", "signed as version 1.0.0, but was fetched as team/scale:2.0.0"),
                      ("3.0.0", "model signature is for team/scale:1.0.0, not team/scale:3.0.0"),
                      ("4.0.0", f"signed by unknown key {stranger.key_id}"),
                      ("5.0.0", "unsigned: the model carries no signature")):
        code, _, err = run(capsys, "pull", f"{ref}:{tag}", "-o", str(tmp_path / "refused.wasm"))
        show(capsys, tag, err.strip())
        assert code == 2 and says in err, err
        assert not (tmp_path / "refused.wasm").exists()
        with pytest.raises(Refused, match=says):  # the server's desired-state fetch: the same gate
            fetch_artifact(ref, tag)
    assert LocalStore(home / "store").models() == []

    # Under warn they are accepted, and the warning still says why.
    monkeypatch.setenv("WASINFER_TRUST_MODE", "warn")
    code, _, err = run(capsys, "pull", f"{ref}:1.0.1", "-o", str(tmp_path / "warned.wasm"))
    assert code == 0 and "model.wasm changed after signing" in err


def test_a_signature_made_by_model_signing_itself_and_attached_by_another_tool_is_verified(
        home: Path, modules: dict[str, Path], registry: Registry, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    keys = generate_keys(tmp_path / "keys", "theirs", kind="model-signing")
    artifact = ModelArtifact.from_module(modules["v1"].read_bytes(), "team/scale", "1.0.0")
    model_dir = tmp_path / "their-model"
    model_dir.mkdir()
    (model_dir / "model.wasm").write_bytes(artifact.wasm)
    model_signing.signing.Config().use_elliptic_key_signer(private_key=keys.private_key).sign(
        model_dir, tmp_path / "their.sig")
    with OciClient(registry.address, plain_http=True) as client:
        digest = client.push("team/scale", "1.0.0", artifact)
        client.push_referrer("team/scale", digest, BUNDLE_MEDIA_TYPE, (tmp_path / "their.sig").read_bytes())
    monkeypatch.setenv("WASINFER_TRUST_KEYS", str(keys.public_key))
    pulled = run_json(capsys, "pull", f"{registry.address}/team/scale:1.0.0", "-o", str(tmp_path / "m.wasm"))
    assert pulled["digest"] == digest and (tmp_path / "m.wasm").read_bytes() == artifact.wasm
    stored = LocalStore(home / "store")
    admission = admit(artifact, TrustPolicy.from_paths("require", [keys.public_key]),
                      signatures=[(tmp_path / "their.sig").read_bytes()], use_env_policy=False)
    assert admission.verdict.verified and "the files only" in admission.verdict.reason
    assert stored.models() == []


def test_legacy_signatures_are_read_with_a_warning_and_a_model_with_both_is_judged_by_the_bundle(
        home: Path, modules: dict[str, Path], registry: Registry, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    legacy = generate_keys(tmp_path / "keys", "old", kind="ed25519")
    current = generate_keys(tmp_path / "keys", "new", kind="model-signing")
    stranger = generate_keys(tmp_path / "strangers", "someone", kind="model-signing")
    monkeypatch.setenv("WASINFER_TRUST_KEYS", str(tmp_path / "keys"))  # both trusted keys, from the directory
    monkeypatch.setenv("WASINFER_TRUST_MODE", "require")
    ref = f"{registry.address}/team/scale"

    monkeypatch.setenv("WASINFER_SIGNING_KEY", str(legacy.private_key))
    code, _, err = run(capsys, "push", str(modules["v1"]), f"{ref}:1.0.0")
    assert code == 0 and "legacy annotation signature" in err
    monkeypatch.delenv("WASINFER_SIGNING_KEY")
    code, _, err = run(capsys, "pull", f"{ref}:1.0.0", "-o", str(tmp_path / "legacy.wasm"))
    show(capsys, err.strip())
    assert code == 0 and (tmp_path / "legacy.wasm").exists()
    assert LEGACY_SIGNATURE_WARNING.split(":")[0] in " ".join(err.split())
    assert "wasinfer keys generate --kind model-signing" in " ".join(err.split())

    # Both: the bundle decides. A trusted legacy signature does not save an untrusted bundle ...
    both = sign(ModelArtifact.from_module(modules["v2"].read_bytes(), "team/scale", "2.0.0"), legacy.private_key)
    with OciClient(registry.address, plain_http=True) as client:
        digest = client.push("team/scale", "2.0.0", both)
        client.push_referrer("team/scale", digest, BUNDLE_MEDIA_TYPE, sign_bundle(both, stranger.private_key))
    code, _, err = run(capsys, "pull", f"{ref}:2.0.0", "-o", str(tmp_path / "both.wasm"))
    assert code == 2 and f"signed by unknown key {stranger.key_id}" in err and not (tmp_path / "both.wasm").exists()
    # ... and a trusted bundle is enough beside a legacy signature from an unknown key, with no legacy warning.
    unknown_legacy = generate_keys(tmp_path / "strangers", "old", kind="ed25519")
    both = sign(ModelArtifact.from_module(modules["v2"].read_bytes(), "team/scale", "3.0.0"),
                unknown_legacy.private_key)
    with OciClient(registry.address, plain_http=True) as client:
        digest = client.push("team/scale", "3.0.0", both)
        client.push_referrer("team/scale", digest, BUNDLE_MEDIA_TYPE, sign_bundle(both, current.private_key))
    code, _, err = run(capsys, "pull", f"{ref}:3.0.0", "-o", str(tmp_path / "both.wasm"))
    assert code == 0 and "legacy" not in err, err


def test_a_registry_with_the_referrers_api_gets_no_fallback_tag_and_is_asked_through_the_api(
        home: Path, modules: dict[str, Path], registry: Registry, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    keys = generate_keys(tmp_path / "keys", "ci", kind="model-signing")
    monkeypatch.setenv("WASINFER_SIGNING_KEY", str(keys.private_key))
    monkeypatch.setenv("WASINFER_TRUST_KEYS", str(keys.public_key))
    with run_referrers_proxy(registry.address) as (address, seen):
        pushed = run_json(capsys, "push", str(modules["v1"]), f"{address}/team/scale:1.0.0")
        monkeypatch.delenv("WASINFER_SIGNING_KEY")
        pulled = run_json(capsys, "pull", f"{address}/team/scale:1.0.0", "-o", str(tmp_path / "m.wasm"))
    assert pulled["signature"]["verified"] and pulled["digest"] == pushed["digest"]
    assert f"GET /v2/team/scale/referrers/{pushed['digest']}?artifactType=" \
           f"{BUNDLE_MEDIA_TYPE.replace('/', '%2F').replace('+', '%2B')}" in seen
    with OciClient(registry.address, plain_http=True) as client:
        assert client.tags("team/scale", referrers=True) == ["1.0.0"]  # the registry indexes; no sha256-<hex> tag


def test_the_local_store_keeps_a_version_s_signatures_until_the_version_goes(
        home: Path, modules: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    keys = generate_keys(tmp_path / "keys", "ci", kind="model-signing")
    monkeypatch.setenv("WASINFER_SIGNING_KEY", str(keys.private_key))
    monkeypatch.setenv("WASINFER_TRUST_KEYS", str(keys.public_key))
    run_json(capsys, "push", str(modules["v1"]), "scale:1.0.0", "--source", str(modules["v1_onnx"]))
    monkeypatch.delenv("WASINFER_SIGNING_KEY")
    store = LocalStore(home / "store")
    [bundle] = store.signatures("scale", "1.0.0")
    pulled = run_json(capsys, "pull", "scale:1.0.0", "-o", str(tmp_path / "out") + "/")
    assert pulled["signature"]["verified"] and (tmp_path / "out" / "model.sig").read_bytes() == bundle
    assert fetch_artifact("scale", "1.0.0").version == "1.0.0"  # the server's path reads them from the store

    artifact = store.get("scale", "1.0.0")  # a second signature added to the same version later, as referrers are
    other = generate_keys(tmp_path / "keys", "other", kind="model-signing")
    store.put(artifact, [sign_bundle(artifact, other.private_key)])
    assert len(store.signatures("scale", "1.0.0")) == 2
    assert store.gc() == (0, 0)  # signatures are referenced blobs
    store.delete("scale", "1.0.0")
    assert store.gc()[0] == 6  # manifest, config, module, source, two signatures


def test_sign_attaches_the_standard_signature_to_a_legacy_signed_version_without_changing_it(
        home: Path, modules: dict[str, Path], registry: Registry, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    legacy = generate_keys(tmp_path / "old", "old", kind="ed25519")
    current = generate_keys(tmp_path / "new", "new", kind="model-signing")
    ref = f"{registry.address}/team/scale"
    monkeypatch.setenv("WASINFER_SIGNING_KEY", str(legacy.private_key))
    pushed = run_json(capsys, "push", str(modules["v1"]), f"{ref}:1.0.0")
    local = run_json(capsys, "push", str(modules["v1"]), "scale:1.0.0")
    code, _, err = run(capsys, "sign", f"{ref}:1.0.0")
    assert code == 2 and "a model-signing (P-256) key" in err  # the legacy key cannot make a bundle

    monkeypatch.setenv("WASINFER_SIGNING_KEY", str(current.private_key))
    signed = run_json(capsys, "sign", f"{ref}:1.0.0")
    assert signed["digest"] == pushed["digest"] and signed["signature"].startswith("sha256:")
    assert run_json(capsys, "sign", "scale:1.0.0")["digest"] == local["digest"]
    monkeypatch.delenv("WASINFER_SIGNING_KEY")
    # Verifiers that trust only the new key now accept both, judged by the bundle: no legacy warning.
    monkeypatch.setenv("WASINFER_TRUST_KEYS", str(current.public_key))
    for reference in (f"{ref}:1.0.0", "scale:1.0.0"):
        code, out, err = run(capsys, "pull", reference, "-o", str(tmp_path / "m.wasm"), "--json")
        assert code == 0 and "legacy" not in err, err
        assert json.loads(out)["signature"]["verified"] is True
    with OciClient(registry.address, plain_http=True) as client:  # the manifest kept its bytes and its tag
        assert client.resolve("team/scale", "1.0.0") == pushed["digest"]


def test_keyless_and_malformed_bundles_are_refused_naming_why_not_crashed(modules: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    keys = generate_keys(tmp_path / "keys", "ci", kind="model-signing")
    artifact = ModelArtifact.from_module(modules["v1"].read_bytes(), "team/scale", "1.0.0")
    bundle = json.loads(sign_bundle(artifact, keys.private_key))
    # A keyless (Sigstore Fulcio) bundle carries a short-lived certificate and transparency log entries instead.
    keyless = {**bundle, "verificationMaterial": {"certificate": {"rawBytes": "MIIB"}, "tlogEntries": []}}
    forged = {**bundle, "dsseEnvelope": {**bundle["dsseEnvelope"],
                                         "signatures": [{"sig": bundle["dsseEnvelope"]["signatures"][0]["sig"][:-8]
                                                         + "AAAAAAA=", "keyid": ""}]}}
    trust = TrustPolicy.from_paths("require", [keys.public_key])
    for document, says in ((keyless, "Sigstore's keyless signing (an OIDC identity): not verifiable offline"),
                           (forged, "model signature by trusted key"),
                           (b"{not json", "malformed model-signing bundle: not JSON"),
                           ({"mediaType": "x"}, "malformed model-signing bundle: not a model-signing bundle")):
        raw = document if isinstance(document, bytes) else json.dumps(document).encode()
        with pytest.raises(Refused, match=re.escape(says)) as refused:
            admit(artifact, trust, signatures=[raw], use_env_policy=False)
        print(refused.value)
    # A key nobody trusts, with no trusted keys configured at all: one sentence saying so (it read "not among no
    # trusted P-256 keys are configured").
    untrusted = admit(artifact, TrustPolicy("warn"), signatures=[json.dumps(bundle).encode()], use_env_policy=False)
    assert untrusted.verdict.reason == (f"model signature: signed by unknown key {keys.key_id}: no trusted P-256 "
                                        "keys are configured (WASINFER_TRUST_KEYS)")
    # Under warn the same bundles are accepted, and the reason says why they did not verify.
    assert not admit(artifact, TrustPolicy.from_paths("warn", [keys.public_key]), signatures=[b"{not json"],
                     use_env_policy=False).verdict.verified
