"""Fetch the module a desired state names: from an OCI registry or the local store, admitted on the way.

`model_path` in the seed's ConfigMap is either a file (the server reads it itself) or a
reference: `registry-host/repository[:tag]` or a local store name, with `model_version` (a
version or an alias) choosing the tag. Every fetched artifact passes `admission.admit` —
signature, then policy — before the server sees a byte of it, so a refused version never
replaces the one serving.
"""

from __future__ import annotations

import os

from wasinfer.registry.admission import admit, reference_mismatch
from wasinfer.registry.artifact import ModelArtifact, Reference, canonical_version, is_semver
from wasinfer.registry.store import LocalStore, NotFoundError

PLAIN_HTTP_ENV = "WASINFER_REGISTRY_PLAIN_HTTP"  # "1": speak plain HTTP to the registry (no TLS)


def _spellings(version: str) -> list[str]:
    """A semver tag may be written with or without its "v" (the ConfigMap says v1.0.0, a push may say 1.0.0)."""
    if not is_semver(version):
        return [version]
    bare = canonical_version(version)
    return [version, bare] if version != bare else [version, f"v{version}"]


def fetch_artifact(model_path: str, version: str | None) -> ModelArtifact:
    """Pull (registry) or read (local store), then admit; raises ValueError (or a RegistryError) saying why not."""
    ref = Reference.parse(model_path)
    # A digest in model_path pins the content: model_version (a tag) is then only a label, never
    # what is pulled (Gatekeeper's pinned-models rule relies on this).
    spellings = _spellings(ref.reference if ref.digest else (version or ref.reference))
    if ref.registry:
        from wasinfer.registry.credentials import load_credentials
        from wasinfer.registry.oci import OciClient, RegistryError

        username, password = load_credentials(ref.registry, None, None)
        plain = os.environ.get(PLAIN_HTTP_ENV, "").strip().lower() in ("1", "true", "yes")
        with OciClient(ref.registry, plain_http=plain, username=username, password=password) as client:
            for tag in spellings:
                try:
                    artifact = client.pull(ref.repository, tag)
                    break
                except RegistryError as exc:
                    if exc.status != 404 or tag == spellings[-1]:
                        raise
            mismatch = reference_mismatch(artifact, ref.repository, tag,
                                          lambda version: client.tag_digest(ref.repository, version))
    else:
        store = LocalStore()
        for tag in spellings:
            try:
                artifact = store.get(ref.repository, tag)
                break
            except NotFoundError:
                if tag == spellings[-1]:
                    raise

        def version_digest(version: str) -> str | None:
            try:
                return store.resolve(ref.repository, version).digest
            except NotFoundError:
                return None

        mismatch = reference_mismatch(artifact, ref.repository, tag, version_digest)
    admit(artifact, mismatch=mismatch)
    return artifact
