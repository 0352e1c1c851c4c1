"""Fetch the module a desired state names: from an OCI registry or the local store, admitted on the way.

`model_path` in the seed's ConfigMap is either a file (the server reads it itself) or a
reference: `registry-host/repository[:tag]` or a local store name, with `model_version` (a
version or an alias) choosing the tag. Every fetched artifact passes `admission.admit` —
signature, then policy — before the server sees a byte of it, so a refused version never
replaces the one serving. Its signatures come with it: the registry's referrers of the
manifest (the referrers API, else the tag schema's index) or the store's signatures of the version.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from wasinfer.registry.admission import admit, reference_mismatch
from wasinfer.registry.artifact import ModelArtifact, Reference, canonical_version, is_semver, semver_key
from wasinfer.registry.store import LocalStore, NotFoundError

PLAIN_HTTP_ENV = "WASINFER_REGISTRY_PLAIN_HTTP"  # "1": speak plain HTTP to the registry (no TLS)

if TYPE_CHECKING:
    from wasinfer.registry.oci import OciClient, Progress


def plain_http_from_env() -> bool:
    """Whether $WASINFER_REGISTRY_PLAIN_HTTP asks for plain HTTP: the server and every CLI command read it."""
    return os.environ.get(PLAIN_HTTP_ENV, "").strip().lower() in ("1", "true", "yes")


def _spellings(version: str) -> list[str]:
    """A semver tag may be written with or without its "v" (the ConfigMap says v1.0.0, a push may say 1.0.0)."""
    if not is_semver(version):
        return [version]
    bare = canonical_version(version)
    return [version, bare] if version != bare else [version, f"v{version}"]


def registry_latest(client: OciClient, repository: str) -> str:
    """The tag a reference without one means: `latest` where the repository has that tag, else its highest
    release (the local store's rule). `wasinfer push` tags versions, never `latest`, so asking the registry
    for `latest` found nothing in a repository that only pushes filled."""
    tags = client.tags(repository)
    if "latest" in tags:
        return "latest"
    versions = [tag for tag in tags if is_semver(tag)]
    releases = [tag for tag in versions if "-" not in tag.partition("+")[0]]
    if not versions:
        raise NotFoundError(f"{client.registry}/{repository} has no version tag and no latest tag")
    return max(releases or versions, key=semver_key)


def pull_artifact(client: OciClient, ref: Reference, version: str | None = None,
                  progress: Progress | None = None) -> tuple[ModelArtifact, str | None]:
    """The artifact `ref` (or `version`, a tag, in its repository) names in a registry, and what
    `reference_mismatch` says of it (None: it is what was asked for). A digest in `ref` pins the content:
    `version` is then only a label, never what is pulled (Gatekeeper's pinned-models rule relies on this)."""
    from wasinfer.registry.oci import RegistryError

    spellings = _spellings(ref.digest or version or ref.tag or registry_latest(client, ref.repository))
    for tag in spellings:
        try:
            artifact = client.pull(ref.repository, tag, progress)
            break
        except RegistryError as exc:
            if exc.status != 404 or tag == spellings[-1]:
                raise
    if ref.digest and artifact.digest() != ref.digest:
        raise ValueError(f"{ref}: the registry returned {artifact.digest()}, not the digest asked for")
    mismatch = reference_mismatch(artifact, ref.repository, tag,
                                  lambda version: client.tag_digest(ref.repository, version))
    return artifact, mismatch


def registry_signatures(client: OciClient, repository: str, digest: str) -> list[bytes]:
    """The model-signing bundles attached to the manifest `digest` in `repository`, each blob digest-verified."""
    from wasinfer.registry.modelsign import BUNDLE_MEDIA_TYPE

    return [bundle for descriptor in client.referrers(repository, digest, BUNDLE_MEDIA_TYPE)
            for bundle in client.referrer_blobs(repository, descriptor, BUNDLE_MEDIA_TYPE)]


def stored_signatures(store: LocalStore, artifact: ModelArtifact) -> list[bytes]:
    """The bundles the local store keeps for `artifact`'s version ([] for one it does not hold)."""
    try:
        return store.signatures(artifact.name, artifact.version)
    except NotFoundError:
        return []


def read_stored(store: LocalStore, ref: Reference, version: str | None = None) -> tuple[ModelArtifact, str | None]:
    """The artifact `ref` (or `version`) names in the local store, and what `reference_mismatch` says of it."""
    wanted = ref.reference if ref.digest else (version or ref.reference)
    artifact = store.get(ref.repository, wanted)  # the store reads v1.2.3 as 1.2.3

    def version_digest(version: str) -> str | None:
        try:
            return store.resolve(ref.repository, version).digest
        except NotFoundError:
            return None

    return artifact, reference_mismatch(artifact, ref.repository, wanted, version_digest)


def fetch_artifact(model_path: str, version: str | None) -> ModelArtifact:
    """Pull (registry) or read (local store), then admit; raises ValueError (or a RegistryError) saying why not."""
    ref = Reference.parse(model_path)
    if ref.registry:
        from wasinfer.registry.credentials import load_credentials
        from wasinfer.registry.oci import OciClient

        username, password = load_credentials(ref.registry, None, None)
        with OciClient(ref.registry, plain_http=plain_http_from_env(), username=username,
                       password=password) as client:
            artifact, mismatch = pull_artifact(client, ref, version)
            signatures = registry_signatures(client, ref.repository, artifact.digest())
    else:
        store = LocalStore()
        artifact, mismatch = read_stored(store, ref, version)
        signatures = stored_signatures(store, artifact)
    admit(artifact, mismatch=mismatch, signatures=signatures)
    return artifact
