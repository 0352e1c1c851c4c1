"""OpenSSF model signing: a model version's files signed as a Sigstore bundle that other tools verify.

What is signed is what a push publishes, as the files a pull writes into a directory:

    model.wasm            the module
    model.onnx | .tflite  the source model, when it was pushed

The bundle (media type BUNDLE_MEDIA_TYPE) is model-signing's own format: a DSSE envelope over an
in-toto statement whose resources are the files' SHA-256 digests, signed with a P-256 key (the
bundle's `publicKey.hint` names it) or with a key and its certificate chain (the bundle carries the
chain; a verifier checks it against its trusted CAs). So `model_signing verify key DIR --signature
DIR/model.sig --public_key K.pub` (or the `model_signing.verifying` API) accepts what `wasinfer pull
-o DIR/` writes, and wasinfer accepts what `model_signing sign` made of the same files.

The statement's subject name is model-signing's "model name" (only informative to it). wasinfer
signs with `<name>:<version>` there (a "/" in the name written %2F, as the name is a directory's)
and, when a bundle's subject has that form, requires it to be the version it is attached to: the
files alone do not say which model and version they are, so without it a signature could be
moved to a manifest claiming another name or version. A bundle made by another tool names a
directory instead; it then vouches for the files only (the verdict says so).

Keyless signing (Sigstore's public Fulcio/Rekor with an OIDC identity) is what model-signing does
online (`model_signing sign sigstore`); wasinfer neither makes nor verifies such bundles, because a
verifier here must work offline: such a bundle is reported as not verifiable with keys or CAs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from wasinfer.registry.artifact import ModelArtifact
from wasinfer.registry.trust import ENV_TRUST_CA, ENV_TRUST_KEYS, CertificateSigner, TrustPolicy

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIGNATURE_FILE = "model.sig"  # where `pull -o DIR/` writes the bundle (model_signing's default name)
WASM_FILE = "model.wasm"


def model_files(artifact: ModelArtifact) -> dict[str, bytes]:
    """The files a signature covers, by the name they have in a pulled directory."""
    files = {WASM_FILE: artifact.wasm}
    if artifact.source is not None:
        files[f"model.{artifact.source_format}"] = artifact.source
    return files


def subject_name(artifact: ModelArtifact) -> str:
    """The statement's subject name wasinfer signs with: `name:version`, "/" written %2F (a directory name)."""
    return quote(f"{artifact.name}:{artifact.version}", safe=":")


def _write_files(artifact: ModelArtifact, directory: Path) -> None:
    directory.mkdir(parents=True)
    for name, data in model_files(artifact).items():
        (directory / name).write_bytes(data)


def sign_bundle(artifact: ModelArtifact, private_key: Path, certificate: CertificateSigner | None = None) -> bytes:
    """The model-signing bundle of `artifact`'s files, signed with a P-256 key (and its certificate, if given)."""
    from model_signing import hashing, signing

    config = signing.Config()  # type: ignore[no-untyped-call]  # model-signing 1.1's __init__ is untyped
    if certificate is None:
        config.use_elliptic_key_signer(private_key=private_key)
    else:
        # model-signing 1.1 cannot read an empty chain; the certificate itself then stands in (a verifier
        # builds the path from its CAs, and an extra copy of the leaf changes nothing)
        config.use_certificate_signer(private_key=private_key, signing_certificate=certificate.certificate,
                                      certificate_chain=list(certificate.chain or (certificate.certificate,)))
    config.set_hashing_config(hashing.Config().use_file_serialization())  # type: ignore[no-untyped-call]
    with tempfile.TemporaryDirectory(prefix="wasinfer-sign-") as tmp:
        model_dir = Path(tmp) / subject_name(artifact)  # model-signing names the subject after the directory
        _write_files(artifact, model_dir)
        bundle = Path(tmp) / SIGNATURE_FILE
        try:
            config.sign(model_dir, bundle)
        except ValueError as exc:  # e.g. a certificate that is not the key's
            raise ValueError(f"model signing failed: {exc}") from None
        return bundle.read_bytes()


@dataclass(frozen=True)
class BundleCheck:
    """What one bundle says: `verified` (a trusted key or CA signed exactly these files), the signer
    (a key id, or the certificate's subject) and why."""

    verified: bool
    signer: str | None
    reason: str


def _parse(bundle: bytes) -> dict[str, Any]:
    try:
        document = json.loads(bundle)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("verificationMaterial"), dict) \
            or not isinstance(document.get("dsseEnvelope"), dict):
        raise ValueError("not a model-signing bundle (no verificationMaterial or dsseEnvelope)")
    return document


def _statement_subject(document: dict[str, Any]) -> str | None:
    """The in-toto statement's first subject name (read after the envelope's signature verified)."""
    try:
        statement = json.loads(base64.b64decode(document["dsseEnvelope"]["payload"]))
        name = statement["subject"][0]["name"]
    except (KeyError, IndexError, TypeError, ValueError, binascii.Error):
        return None
    return name if isinstance(name, str) else None


def _changed_files(document: dict[str, Any], files: dict[str, bytes]) -> list[str]:
    """Which files differ from the digests the statement lists (added, removed or changed), by name."""
    try:
        statement = json.loads(base64.b64decode(document["dsseEnvelope"]["payload"]))
        signed = {str(r["name"]): str(r["digest"]) for r in statement["predicate"]["resources"]}
    except (KeyError, TypeError, ValueError, binascii.Error):
        return []
    actual = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    return sorted(name for name in signed.keys() | actual.keys() if signed.get(name) != actual.get(name))


def _certificate_subject(material: dict[str, Any]) -> str:
    try:
        raw = base64.b64decode(material["x509CertificateChain"]["certificates"][0]["rawBytes"])
        return x509.load_der_x509_certificate(raw).subject.rfc4514_string()
    except (KeyError, IndexError, TypeError, ValueError, binascii.Error):
        return "(unreadable certificate)"


def verify_bundle(artifact: ModelArtifact, bundle: bytes, policy: TrustPolicy) -> BundleCheck:
    """Check one bundle against `artifact`'s files and the policy's P-256 keys and CAs (model-signing's verifier)."""
    from model_signing import hashing, verifying
    from OpenSSL.crypto import X509StoreContextError

    try:
        document = _parse(bundle)
    except ValueError as exc:
        return BundleCheck(False, None, f"malformed model-signing bundle: {exc}")
    material = document["verificationMaterial"]
    config = verifying.Config().set_hashing_config(  # type: ignore[no-untyped-call]
        hashing.Config().use_file_serialization())  # type: ignore[no-untyped-call]
    with tempfile.TemporaryDirectory(prefix="wasinfer-verify-") as tmp:
        trusted = Path(tmp) / "trusted.pem"
        if isinstance(material.get("publicKey"), dict):
            hint = str(material["publicKey"].get("hint") or "")
            signer = hint[:16] or "(no key hint)"
            key = policy.ec_keys.get(hint)
            if key is None:
                known = (f"not among the {len(policy.ec_keys)} trusted P-256 key(s)" if policy.ec_keys
                         else f"no trusted P-256 keys are configured ({ENV_TRUST_KEYS})")
                return BundleCheck(False, signer, f"model signature: signed by unknown key {signer}: {known}")
            trusted.write_bytes(key.public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo))
            config.use_elliptic_key_verifier(public_key=trusted)
            who = f"trusted key {signer}"
        elif isinstance(material.get("x509CertificateChain"), dict):
            signer = _certificate_subject(material)
            if not policy.cas:
                return BundleCheck(False, signer, f"model signature by certificate {signer}: no trusted CA "
                                   f"certificates are configured ({ENV_TRUST_CA})")
            trusted.write_bytes(b"".join(ca.public_bytes(serialization.Encoding.PEM) for ca in policy.cas))
            config.use_certificate_verifier(certificate_chain=[trusted])
            who = f"certificate {signer}"
        else:
            return BundleCheck(False, None, "model signature made with Sigstore's keyless signing (an OIDC "
                               "identity): not verifiable offline with trusted keys or CAs")
        model_dir, signature = Path(tmp) / "model", Path(tmp) / SIGNATURE_FILE
        _write_files(artifact, model_dir)
        signature.write_bytes(bundle)
        try:
            config.verify(model_dir, signature)
        except ValueError as exc:
            changed = _changed_files(document, model_files(artifact))
            if str(exc).startswith("Signature mismatch") and changed:
                return BundleCheck(False, signer, f"model signature does not match the files: {', '.join(changed)} "
                                   "changed after signing")
            return BundleCheck(False, signer, f"model signature by {who} does not verify: {exc}")
        except X509StoreContextError as exc:
            return BundleCheck(False, signer, f"model signature by {who}: the certificate chain does not lead "
                               f"to a trusted CA ({ENV_TRUST_CA}): {exc}")
        except InvalidSignature:
            return BundleCheck(False, signer, f"model signature by {who} does not verify: the envelope's signature "
                               "is not that key's (a forged or altered bundle)")
        except Exception as exc:  # whatever else a malformed bundle makes model-signing raise: a refusal, not a crash
            return BundleCheck(False, signer, f"model signature by {who} does not verify: "
                               f"{type(exc).__name__} {exc}".rstrip())
    subject, expected = _statement_subject(document), subject_name(artifact)
    if subject is not None and ":" in subject and subject != expected:
        return BundleCheck(False, signer, f"model signature is for {subject.replace('%2F', '/')}, not "
                           f"{artifact.name}:{artifact.version} (a signature moved to another name or version)")
    scope = "" if subject == expected else " (the files only: its subject names no wasinfer version)"
    return BundleCheck(True, signer, f"model-signing bundle verified by {who}{scope}")
