"""The one gate a model version passes on push, pull and load: signature, then policy.

Push, pull and the server's update path all call `admit`, so a model refused by one is refused
by all, with the same reason. What is configured comes from the environment (trust.py and
policy.py say which variables): with nothing configured, unsigned models pass with a warning
and the shipped policy set applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from wasinfer.registry.artifact import ModelArtifact
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


def admit(artifact: ModelArtifact, trust: TrustPolicy | None = None, policy_dir: Path | None = None,
          use_env_policy: bool = True) -> Admission:
    """Verify the signature under the trust policy, then evaluate the policies; raise Refused if either says no.

    The signing key configured here is trusted too, so what this node signs it also accepts.
    """
    trust = trust or trust_policy_from_env()
    key = signing_key_from_env()
    if key is not None:
        trust.add_key(load_private_key(key).public_key())
    verdict = verify(artifact, trust)
    label = f"{artifact.name or 'model'}:{artifact.version or '?'}"
    if not verdict.ok:
        raise Refused(f"refused {label}: {verdict.reason}")
    warnings = [] if verdict.verified or trust.mode == "off" else [f"{label}: {verdict.reason}"]
    directory = policy_dir if policy_dir is not None else (policy_dir_from_env() if use_env_policy else None)
    decisions = check(artifact, verdict, directory) if directory is not None else []
    if decisions and not allowed(decisions):
        raise Refused(f"refused {label} by policy: " + "; ".join(denials(decisions)))
    warnings += [f"{label}: {d.policy}: {message}" for d in decisions if d.rule == "warn" for message in d.messages]
    return Admission(verdict, decisions, warnings)
