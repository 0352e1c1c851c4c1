"""The one gate a model version passes on push, pull and load: signature, then policy.

Push, pull and the server's update path all call `admit`, so a model refused by one is refused
by all, with the same reason. What is configured comes from the environment (trust.py and
policy.py say which variables): with nothing configured, unsigned models pass with a warning
and the shipped policy set applies.

Which signature counts: a model with model-signing bundles (modelsign.py; attached as referrers in
a registry, kept beside the version in the local store) is judged by them alone, whatever legacy
annotations it also carries; one bundle that a trusted key or CA verifies is enough. A model with
only the legacy Ed25519 annotation signature is still judged by it in this release, with a warning
naming its replacement (LEGACY_SIGNATURE_WARNING); the release after next refuses it as unsigned.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wasinfer.registry.artifact import ANNOTATIONS, ModelArtifact, canonical_version, is_semver
from wasinfer.registry.modelsign import sign_bundle, verify_bundle
from wasinfer.registry.policy import Decision, allowed, check, denials, policy_dir_from_env
from wasinfer.registry.trust import (
    ENV_SIGNING_CERT,
    ENV_SIGNING_KEY,
    TrustError,
    TrustPolicy,
    Verdict,
    load_any_private_key,
    sign,
    signing_certificate_from_env,
    signing_key_from_env,
    trust_policy_from_env,
    verify,
)

LEGACY_SIGNATURE_WARNING = (
    "signed only with the legacy Ed25519 annotation signature (dev.wasinfer.signature), which is read until "
    "wasinfer 0.2 and ignored from 0.3 (the model then counts as unsigned): re-sign with OpenSSF model signing "
    "(`wasinfer keys generate --kind model-signing`, then `wasinfer sign REF` with WASINFER_SIGNING_KEY set to "
    "that key; verifiers trust its .pub)")
LEGACY_SIGNING_KEY_WARNING = (
    f"{ENV_SIGNING_KEY} is an Ed25519 key: push made the legacy annotation signature, which verifiers ignore "
    "from wasinfer 0.3; generate a model-signing key (`wasinfer keys generate --kind model-signing`) instead")


class Refused(ValueError):
    """The signature or a policy refused the model; the message says which and why."""


@dataclass
class Admission:
    verdict: Verdict
    decisions: list[Decision]
    warnings: list[str] = field(default_factory=list)
    bundle: bytes | None = None  # the model-signing bundle that verified (else the first one), when any


@dataclass
class Signed:
    """What push publishes: the artifact (with legacy annotations when signed the legacy way) and its
    model-signing bundles (attached as referrers)."""

    artifact: ModelArtifact
    signatures: list[bytes] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def sign_if_configured(artifact: ModelArtifact) -> Signed:
    """Sign with $WASINFER_SIGNING_KEY when it is set (a set but missing key is an error, not an unsigned push):
    a P-256 key makes a model-signing bundle (certificate-based with $WASINFER_SIGNING_CERT), an Ed25519 key
    the deprecated legacy annotations."""
    key = signing_key_from_env()
    certificate = signing_certificate_from_env()
    if key is None:
        if certificate is not None:
            raise TrustError(f"{ENV_SIGNING_CERT} is set but {ENV_SIGNING_KEY} (its private key) is not")
        return Signed(artifact)
    if isinstance(load_any_private_key(key), Ed25519PrivateKey):
        if certificate is not None:
            raise TrustError(f"{ENV_SIGNING_CERT} needs a P-256 {ENV_SIGNING_KEY}, not an Ed25519 key")
        return Signed(sign(artifact, key), warnings=[LEGACY_SIGNING_KEY_WARNING])
    return Signed(artifact, [sign_bundle(artifact, key, certificate)])


def judge(artifact: ModelArtifact, signatures: Sequence[bytes],
          trust: TrustPolicy) -> tuple[Verdict, list[str], bytes | None]:
    """The verdict on `artifact`'s signatures under `trust`, the notes a caller should show, and the bundle
    the verdict rests on (the one that verified, else the first; None without bundles).

    Bundles decide when there are any (the legacy annotations are then ignored); else the legacy
    signature does, with LEGACY_SIGNATURE_WARNING when it is there.
    """
    if signatures:
        checks = [verify_bundle(artifact, bundle, trust) for bundle in signatures]
        good = next((i for i, c in enumerate(checks) if c.verified), None)
        if good is not None:
            check_ = checks[good]
            return Verdict(True, check_.signer, check_.reason, verified=True), [], signatures[good]
        reasons = list(dict.fromkeys(c.reason for c in checks))
        return Verdict(trust.mode != "require", checks[0].signer, "; ".join(reasons)), [], signatures[0]
    verdict = verify(artifact, trust)
    legacy = ANNOTATIONS["signature"] in artifact.annotations
    return verdict, [LEGACY_SIGNATURE_WARNING] if legacy and trust.mode != "off" else [], None


def reference_mismatch(artifact: ModelArtifact, repository: str, reference: str,
                       version_digest: Callable[[str], str | None]) -> str | None:
    """Why `artifact` is not what `repository:reference` names, or None when it is.

    A signature covers the name and version annotations, not the tag a manifest sits under: anyone who
    can write to a registry can copy a signed `team/signed:1.0.0` to `team/signed:2.0.0` or
    `team/other:3.1.4`, and the copy still verifies. So what was asked for must be what was signed: the
    repository is the signed name; a version tag is the signed version; an alias tag (stable, latest)
    must name the same manifest as the signed version's own tag, read through `version_digest`
    (version tag → the digest it names there, None when there is no such tag). A digest names the
    content itself, so only the name is checked.
    """
    if artifact.name != repository:
        return (f"the model is signed as {artifact.name or '(no name)'}:{artifact.version or '?'}, but was fetched "
                f"as {repository}:{reference} (a signed manifest copied to another name)")
    if re.fullmatch(r"sha256:[0-9a-f]{64}", reference):
        return None
    if is_semver(reference):
        if canonical_version(reference) == artifact.version:
            return None
        return (f"the model is signed as version {artifact.version or '(none)'}, but was fetched as "
                f"{repository}:{reference} (a signed manifest re-tagged as another version)")
    digest = artifact.digest()
    spellings = [artifact.version, f"v{artifact.version}"] if is_semver(artifact.version) else []
    if any(version_digest(tag) == digest for tag in spellings):
        return None
    return (f"{repository}:{reference} is not an alias of the signed version {artifact.version or '(none)'}: "
            f"no tag {artifact.version or '(none)'} names this manifest ({digest}) there")


def admit(artifact: ModelArtifact, trust: TrustPolicy | None = None, policy_dir: Path | None = None,
          use_env_policy: bool = True, *, mismatch: str | None = None,
          signatures: Sequence[bytes] = ()) -> Admission:
    """Verify the signatures (`signatures`: model-signing bundles; else the legacy annotations) under the
    trust policy, then evaluate the policies; raise Refused if either says no.

    The signing key configured here is trusted too, so what this node signs it also accepts. `mismatch`
    (from `reference_mismatch`, for what was fetched by a reference) counts as the trust mode says:
    refused under require, a warning under warn.
    """
    trust = trust or trust_policy_from_env()
    key = signing_key_from_env()
    if key is not None:
        trust.add_key(load_any_private_key(key).public_key())
    verdict, notes, bundle = judge(artifact, signatures, trust)
    label = f"{artifact.name or 'model'}:{artifact.version or '?'}"
    if not verdict.ok:
        raise Refused(f"refused {label}: {verdict.reason}")
    if mismatch is not None and trust.mode == "require":
        raise Refused(f"refused {label}: {mismatch}")
    warnings = [] if verdict.verified or trust.mode == "off" else [f"{label}: {verdict.reason}"]
    warnings += [f"{label}: {note}" for note in notes]
    if mismatch is not None and trust.mode == "warn":
        warnings.append(f"{label}: {mismatch}")
    directory = policy_dir if policy_dir is not None else (policy_dir_from_env() if use_env_policy else None)
    decisions = check(artifact, verdict, directory) if directory is not None else []
    if decisions and not allowed(decisions):
        raise Refused(f"refused {label} by policy: " + "; ".join(denials(decisions)))
    warnings += [f"{label}: {d.policy}: {message}" for d in decisions if d.rule == "warn" for message in d.messages]
    return Admission(verdict, decisions, warnings, bundle)
