"""Signatures on model versions: keys, the legacy Ed25519 annotation signature, and the trust policy.

Two kinds of signature exist. The standard one is an OpenSSF model-signing bundle (modelsign.py),
made with a P-256 key (`wasinfer keys generate --kind model-signing`) or a key and its certificate,
and attached to the model through the OCI referrers API; other tools (`model_signing verify`,
cosign-style referrer discovery) read it too. The legacy one, described next, is wasinfer's own and
is read for one more release only (admission.py warns where it is all a model has).

The legacy signature covers `ModelArtifact.signed_payload()` — the config and layer digests plus every
annotation except `signer` and `signature` — so changing any blob (module, metadata, source) or
any other annotation (name, version, accuracy, source digest, ...) after signing makes the
signature fail. It is verifiable offline: all a verifier needs is the signer's public key.

Keys are plain PEM files, so they can be mounted from a Kubernetes Secret or kept in a vault
without any wasinfer tooling:

    <name>.key   the private key, PKCS#8 PEM, mode 0600 (never leaves the machine that signs)
    <name>.pub   the public key, SubjectPublicKeyInfo PEM (what verifiers trust)

The same files hold either an Ed25519 key (legacy) or a P-256 key (model signing); the key in the
file says which. An Ed25519 key id is the first 16 hex digits of the SHA-256 of the raw 32-byte
public key (what the `signer` annotation carries); a P-256 key is found by the SHA-256 of its PEM,
the `hint` model-signing writes into a bundle's verification material, and shown by its first 16
hex digits; so in both cases a verifier picks the right trusted key without trying them all.

Configuration (read by `signing_key_from_env` and `trust_policy_from_env`, used by push, pull
and load):

    WASINFER_SIGNING_KEY  path of a private key: push signs with it (unset: push does not sign).
                          A P-256 key makes a model-signing bundle; an Ed25519 key the legacy
                          annotation signature (deprecated).
    WASINFER_SIGNING_CERT the certificate of WASINFER_SIGNING_KEY (PEM): the bundle then carries it
                          and verifiers check it against their trusted CAs instead of a key
    WASINFER_SIGNING_CHAIN intermediate certificates (PEM files, os.pathsep separated) that lead
                          from WASINFER_SIGNING_CERT to a CA; they travel in the bundle
    WASINFER_TRUST_KEYS   trusted public keys: a directory (every *.pub in it) or a .pub file,
                          several separated by os.pathsep (":" on Linux); Ed25519 or P-256
    WASINFER_TRUST_CA     trusted CA certificates (PEM files, each may hold several), os.pathsep
                          separated: a certificate-signed bundle verifies when its chain ends at one
    WASINFER_TRUST_MODE   require | warn | off. require: an unsigned model, one signed by a key
                          or certificate that is not trusted, or one whose signature does not
                          match is refused.
                          warn: it is accepted and the reason is reported. off: accepted silently.
                          Default: require when WASINFER_TRUST_KEYS or WASINFER_TRUST_CA is set
                          (configuring trust means you want it enforced), else warn (so an
                          unconfigured install still runs unsigned models, but says so).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from wasinfer.registry.artifact import ANNOTATIONS, ModelArtifact

ENV_SIGNING_KEY = "WASINFER_SIGNING_KEY"
ENV_TRUST_KEYS = "WASINFER_TRUST_KEYS"
ENV_TRUST_MODE = "WASINFER_TRUST_MODE"
ENV_TRUST_CA = "WASINFER_TRUST_CA"
ENV_SIGNING_CERT = "WASINFER_SIGNING_CERT"
ENV_SIGNING_CHAIN = "WASINFER_SIGNING_CHAIN"
MODES = ("require", "warn", "off")
KEY_KINDS = ("model-signing", "ed25519")  # the first is the default of `keys generate`
KEY_ID_HEX_DIGITS = 16
_KEY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


class TrustError(Exception):
    """A key or trust setting that cannot be used (unreadable, not Ed25519 or P-256, bad mode); the message
    says which."""



@dataclass(frozen=True)
class KeyPair:
    private_key: Path
    public_key: Path
    key_id: str


def key_id(public_key: Ed25519PublicKey) -> str:
    """The short, stable name of a key: what the `signer` annotation records."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX_DIGITS]


def ec_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """A P-256 key's id: the SHA-256 of its SubjectPublicKeyInfo PEM, as model-signing's bundle `hint` is."""
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def generate_keys(directory: Path, name: str = "wasinfer", kind: str = "ed25519") -> KeyPair:
    """Write a new key pair as `<name>.key` (0600) and `<name>.pub` in `directory`.

    `kind` "model-signing" makes a P-256 key (what model-signing's key-based bundles use), "ed25519"
    the legacy kind.

    Refuses to overwrite either file: replacing a signing key by accident would orphan every
    model signed with it, and nothing could tell the new key from the old one by its file name.
    """
    if not _KEY_NAME.fullmatch(name):
        raise ValueError(f"key name {name!r}: use letters, digits and . _ - (no path separators)")
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / f"{name}.key", directory / f"{name}.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path} already exists; refusing to overwrite a key (choose another --name)")
    if kind not in KEY_KINDS:
        raise ValueError(f"key kind {kind!r}: use one of {', '.join(KEY_KINDS)}")
    private: Ed25519PrivateKey | ec.EllipticCurvePrivateKey = (
        Ed25519PrivateKey.generate() if kind == "ed25519" else ec.generate_private_key(ec.SECP256R1()))
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    # O_EXCL: a file that appeared since the check above is not overwritten; the mode is set at creation
    # so the private key is never readable by others, not even for an instant.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask can only remove bits; make the mode exact
        os.write(fd, private_pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, public_pem)
    finally:
        os.close(fd)
    public = private.public_key()
    return KeyPair(private_path, public_path,
                   key_id(public) if isinstance(public, Ed25519PublicKey) else ec_key_id(public)[:KEY_ID_HEX_DIGITS])


Loaded = TypeVar("Loaded")


def _load_pem_key(path: Path, what: str, loader: Callable[[bytes], Loaded], form: str) -> Loaded:
    """The key in a PEM file, read by `loader`; unreadable or malformed is a TrustError naming the file."""
    try:
        return loader(path.read_bytes())
    except OSError as exc:
        raise TrustError(f"{what} {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise TrustError(f"{what} {path}: not {form} ({exc})") from None


def _is_p256(key: object) -> bool:
    curve = getattr(key, "curve", None)
    return isinstance(curve, ec.SECP256R1)


def load_any_private_key(path: Path) -> Ed25519PrivateKey | ec.EllipticCurvePrivateKey:
    """An Ed25519 (legacy) or P-256 (model signing) private key; anything else is a TrustError naming the file."""
    key = _load_pem_key(path, "signing key", lambda data: serialization.load_pem_private_key(data, password=None),
                        "an unencrypted PEM private key")
    if isinstance(key, Ed25519PrivateKey) or (isinstance(key, ec.EllipticCurvePrivateKey) and _is_p256(key)):
        return key
    raise TrustError(f"signing key {path}: a {type(key).__name__}, not an Ed25519 or P-256 key")


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key (the legacy signature's); a P-256 key here is refused, naming the file."""
    key = load_any_private_key(path)
    if not isinstance(key, Ed25519PrivateKey):
        raise TrustError(f"signing key {path}: a P-256 key (model signing), not an Ed25519 key")
    return key


def load_any_public_key(path: Path) -> Ed25519PublicKey | ec.EllipticCurvePublicKey:
    """An Ed25519 (legacy) or P-256 (model signing) public key; anything else is a TrustError naming the file."""
    key = _load_pem_key(path, "public key", serialization.load_pem_public_key, "a PEM public key")
    if isinstance(key, Ed25519PublicKey) or (isinstance(key, ec.EllipticCurvePublicKey) and _is_p256(key)):
        return key
    raise TrustError(f"public key {path}: a {type(key).__name__}, not an Ed25519 or P-256 key")


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = load_any_public_key(path)
    if not isinstance(key, Ed25519PublicKey):
        raise TrustError(f"public key {path}: a P-256 key (model signing), not an Ed25519 key")
    return key


def load_certificates(path: Path, what: str) -> list[x509.Certificate]:
    """Every certificate in a PEM file (a CA bundle may hold several); none, or unreadable, is a TrustError."""
    return _load_pem_key(path, what, x509.load_pem_x509_certificates, "PEM certificates")


def sign(artifact: ModelArtifact, private_key_path: Path) -> ModelArtifact:
    """A copy of `artifact` carrying the `signer` and `signature` annotations (the input is not changed).

    Signing changes the manifest (and so its digest) but not the payload it signs, so re-signing
    with another key replaces the previous signature rather than nesting it.
    """
    private = load_private_key(private_key_path)
    signature = private.sign(artifact.signed_payload())
    annotations = {**artifact.annotations, ANNOTATIONS["signer"]: key_id(private.public_key()),
                   ANNOTATIONS["signature"]: base64.b64encode(signature).decode("ascii")}
    return dataclasses.replace(artifact, annotations=annotations)


@dataclass
class TrustPolicy:
    """Which keys are trusted and what happens to a model that no trusted key verifies."""

    mode: str = "require"
    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)  # legacy Ed25519 keys, by key id
    ec_keys: dict[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)  # P-256 keys, by ec_key_id
    cas: list[x509.Certificate] = field(default_factory=list)  # trusted CAs for certificate-signed bundles

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise TrustError(f"trust mode {self.mode!r} is not one of {', '.join(MODES)}")

    @classmethod
    def from_paths(cls, mode: str = "require", paths: Iterable[Path] = (), cas: Iterable[Path] = ()) -> TrustPolicy:
        """A policy trusting every key in `paths` (directories: each *.pub in them; files: that key) and
        every CA certificate in the PEM files `cas`."""
        policy = cls(mode)
        for path in paths:
            policy.trust(path)
        for path in cas:
            policy.cas += load_certificates(path, "trusted CA")
        return policy

    def trust(self, path: Path) -> None:
        """Add a public key file, or every *.pub in a directory. A bad key file is an error, not skipped:
        a silently ignored key would turn into "unknown key" refusals that are hard to trace."""
        if path.is_dir():
            for pub in sorted(path.glob("*.pub")):
                self.add_key(load_any_public_key(pub))
        elif path.is_file():
            self.add_key(load_any_public_key(path))
        else:
            raise TrustError(f"trusted keys: {path} is neither a directory nor a file")

    def add_key(self, public_key: Ed25519PublicKey | ec.EllipticCurvePublicKey) -> str:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            kid = ec_key_id(public_key)
            self.ec_keys[kid] = public_key
            return kid
        kid = key_id(public_key)
        self.keys[kid] = public_key
        return kid


@dataclass(frozen=True)
class Verdict:
    """The result of checking a signature under a trust policy.

    `ok` says whether the model may be used: under `warn` and `off` it is even when `verified` is
    false, and under `warn` callers then log `reason` (e.g. "unsigned: ...") and go on.
    `verified` says a trusted key's signature matched.
    `signer` is the key id the model claims (None when unsigned) — trust it only when `verified`.
    """

    ok: bool
    signer: str | None
    reason: str
    verified: bool = False


def _check(artifact: ModelArtifact, keys: dict[str, Ed25519PublicKey]) -> tuple[bool, str | None, str]:
    signer = artifact.annotations.get(ANNOTATIONS["signer"])
    signature = artifact.annotations.get(ANNOTATIONS["signature"])
    if signer is None and signature is None:
        return False, None, "unsigned: the model carries no signature"
    if signer is None or signature is None:
        missing = "signer" if signer is None else "signature"
        return False, signer, f"malformed signature: the {ANNOTATIONS[missing]} annotation is missing"
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False, signer, "malformed signature: not base64"
    public = keys.get(signer)
    if public is None:
        known = (f"not among the {len(keys)} trusted key(s)" if keys
                 else f"no trusted keys are configured ({ENV_TRUST_KEYS})")
        return False, signer, f"signed by unknown key {signer}: {known}"
    try:
        public.verify(raw, artifact.signed_payload())
    except InvalidSignature:
        return False, signer, f"signature does not match: the model was changed after signing (key {signer})"
    return True, signer, f"signed by trusted key {signer}"


def verify(artifact: ModelArtifact, policy: TrustPolicy) -> Verdict:
    """Check the artifact's signature against the policy's keys; the mode decides what a failure means.

    The signature is checked in every mode (it is cheap), so `verified` is true whenever it holds —
    a Rego policy can then require signatures even where the trust mode only warns.
    """
    verified, signer, reason = _check(artifact, policy.keys)
    if verified:
        return Verdict(True, signer, reason, verified=True)
    # the reason stays the bare finding; callers under warn say themselves that they went ahead anyway
    return Verdict(policy.mode != "require", signer, reason)


def signing_key_from_env() -> Path | None:
    """The private key push should sign with ($WASINFER_SIGNING_KEY), or None when unset.

    A set but missing file is an error here, so a push fails before uploading rather than
    publishing an unsigned model the operator meant to sign.
    """
    value = os.environ.get(ENV_SIGNING_KEY, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise TrustError(f"{ENV_SIGNING_KEY}={value}: no such file")
    return path


def _env_paths(name: str) -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get(name, "").split(os.pathsep) if p.strip()]


@dataclass(frozen=True)
class CertificateSigner:
    """A certificate-based model-signing identity: the certificate of the signing key and the chain to a CA."""

    certificate: Path
    chain: tuple[Path, ...] = ()


def signing_certificate_from_env() -> CertificateSigner | None:
    """$WASINFER_SIGNING_CERT (and $WASINFER_SIGNING_CHAIN), or None when unset; a missing file is an error."""
    value = os.environ.get(ENV_SIGNING_CERT, "").strip()
    if not value:
        return None
    certificate = Path(value).expanduser()
    chain = tuple(_env_paths(ENV_SIGNING_CHAIN))
    for path, name in [(certificate, ENV_SIGNING_CERT), *((p, ENV_SIGNING_CHAIN) for p in chain)]:
        if not path.is_file():
            raise TrustError(f"{name}: {path}: no such file")
    return CertificateSigner(certificate, chain)


def trust_policy_from_env() -> TrustPolicy:
    """The trust policy from $WASINFER_TRUST_KEYS, $WASINFER_TRUST_CA and $WASINFER_TRUST_MODE (module docstring)."""
    keys, cas = _env_paths(ENV_TRUST_KEYS), _env_paths(ENV_TRUST_CA)
    mode = os.environ.get(ENV_TRUST_MODE, "").strip().lower() or ("require" if keys or cas else "warn")
    if mode not in MODES:
        raise TrustError(f"{ENV_TRUST_MODE}={mode}: use one of {', '.join(MODES)}")
    return TrustPolicy.from_paths(mode, keys, cas)
