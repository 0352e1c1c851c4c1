"""The one gate a model version passes on push, pull and load: signature, then policy.

Push, pull and the server's update path all call `admit`, so a model refused by one is refused
by all, with the same reason. What is configured comes from the environment (trust.py and
policy.py say which variables): with nothing configured, unsigned models pass with a warning
and the shipped policy set applies.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wasinfer.registry.artifact import ModelArtifact, canonical_version, is_semver
from wasinfer.registry.policy import Decision, allowed, check, denials, policy_dir_from_env
from wasinfer.registry.trust import (
    TrustPolicy,
    Verdict,
    load_private_key,
    sign,
    signing_key_from_env,
    trust_policy_from_env,
    verify,
)


class Refused(ValueError):
    """The signature or a policy refused the model; the message says which and why."""


@dataclass
class Admission:
    verdict: Verdict
    decisions: list[Decision]
    warnings: list[str] = field(default_factory=list)


def sign_if_configured(artifact: ModelArtifact) -> ModelArtifact:
    """Sign with $WASINFER_SIGNING_KEY when it is set (a set but missing key is an error, not an unsigned push)."""
    key = signing_key_from_env()
    return sign(artifact, key) if key is not None else artifact


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
          use_env_policy: bool = True, *, mismatch: str | None = None) -> Admission:
    """Verify the signature under the trust policy, then evaluate the policies; raise Refused if either says no.

    The signing key configured here is trusted too, so what this node signs it also accepts. `mismatch`
    (from `reference_mismatch`, for what was fetched by a reference) counts as the trust mode says:
    refused under require, a warning under warn.
    """
    trust = trust or trust_policy_from_env()
    key = signing_key_from_env()
    if key is not None:
        trust.add_key(load_private_key(key).public_key())
    verdict = verify(artifact, trust)
    label = f"{artifact.name or 'model'}:{artifact.version or '?'}"
    if not verdict.ok:
        raise Refused(f"refused {label}: {verdict.reason}")
    if mismatch is not None and trust.mode == "require":
        raise Refused(f"refused {label}: {mismatch}")
    warnings = [] if verdict.verified or trust.mode == "off" else [f"{label}: {verdict.reason}"]
    if mismatch is not None and trust.mode == "warn":
        warnings.append(f"{label}: {mismatch}")
    directory = policy_dir if policy_dir is not None else (policy_dir_from_env() if use_env_policy else None)
    decisions = check(artifact, verdict, directory) if directory is not None else []
    if decisions and not allowed(decisions):
        raise Refused(f"refused {label} by policy: " + "; ".join(denials(decisions)))
    warnings += [f"{label}: {d.policy}: {message}" for d in decisions if d.rule == "warn" for message in d.messages]
    return Admission(verdict, decisions, warnings)
