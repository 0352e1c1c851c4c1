"""A model version as an OCI artifact (ORAS style), and the references that name one.

One manifest per model version: a config blob holding the module's metadata (what policy and
the server need without reading the module), the `.wasm` as the first layer and, optionally,
the source model as a second. The local store keeps exactly these blobs, so a version moves
between the store and any registry byte for byte, and one digest names it everywhere.

    manifest (application/vnd.oci.image.manifest.v1+json, artifactType MODEL_ARTIFACT_TYPE)
      config   application/vnd.wasinfer.model.config.v1+json   the metadata JSON
      layers   application/vnd.wasinfer.model.wasm.v1          model.wasm
               application/vnd.wasinfer.model.source.onnx.v1   model.onnx (optional)
      annotations  org.opencontainers.image.title/version/created, dev.wasinfer.* (see ANNOTATIONS)
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from wasinfer.artifact.metadata import Metadata, read_metadata

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
MODEL_ARTIFACT_TYPE = "application/vnd.wasinfer.model.v1"
CONFIG_MEDIA_TYPE = "application/vnd.wasinfer.model.config.v1+json"
WASM_MEDIA_TYPE = "application/vnd.wasinfer.model.wasm.v1"
SOURCE_MEDIA_TYPES = {"onnx": "application/vnd.wasinfer.model.source.onnx.v1",
                      "tflite": "application/vnd.wasinfer.model.source.tflite.v1"}

# Annotation keys, documented here once: the store, the registry client, signing and policy use these names.
ANNOTATIONS = {
    "title": "org.opencontainers.image.title",  # the model name
    "version": "org.opencontainers.image.version",  # semver
    "created": "org.opencontainers.image.created",  # RFC 3339
    "accuracy": "dev.wasinfer.accuracy",  # a float as text, when the producer measured one
    "source_digest": "dev.wasinfer.source.digest",  # sha256:<hex> of the source model file
    "signer": "dev.wasinfer.signer",  # key id of the signature's key
    "signature": "dev.wasinfer.signature",  # base64 Ed25519 signature of `signed_payload()`
}

# A leading "v" is accepted, as tags are often written (the seed's ConfigMap says "v1.0.0"); the
# stored version is the canonical form without it.
_SEMVER = re.compile(r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")
ALIASES = ("stable", "canary", "latest")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_semver(tag: str) -> bool:
    return _SEMVER.fullmatch(tag) is not None


def canonical_version(version: str) -> str:
    """"v1.2.3" → "1.2.3"; anything that is not a semantic version is refused."""
    if not is_semver(version):
        raise ValueError(f"version {version!r} is not a semantic version (MAJOR.MINOR.PATCH, optionally v-prefixed)")
    return version[1:] if version.startswith("v") else version


def semver_key(version: str) -> tuple[int, int, int, int, str]:
    """Sort key: numeric parts, then a release after its pre-releases (1.0.0-rc1 < 1.0.0)."""
    match = _SEMVER.fullmatch(version)
    if match is None:
        raise ValueError(f"{version!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    rest = version.partition("+")[0].partition("-")[2]
    return (int(match[1]), int(match[2]), int(match[3]), 0 if rest else 1, rest)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def of(cls, media_type: str, data: bytes, annotations: dict[str, str] | None = None) -> Descriptor:
        return cls(media_type, sha256_digest(data), len(data), annotations or {})


@dataclass
class ModelArtifact:
    """The blobs of one model version and the annotations of its manifest."""

    config: bytes  # the module's metadata JSON
    wasm: bytes
    source: bytes | None = None
    source_format: str = "onnx"
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_module(cls, wasm: bytes, name: str, version: str, source: bytes | None = None,
                    source_format: str = "onnx", annotations: dict[str, str] | None = None) -> ModelArtifact:
        """An artifact for a module (its metadata becomes the config blob); refuses what is not a wasinfer module."""
        version = canonical_version(version)
        metadata = read_metadata(wasm)
        notes = {ANNOTATIONS["title"]: name, ANNOTATIONS["version"]: version, **(annotations or {})}
        if source is not None:
            notes.setdefault(ANNOTATIONS["source_digest"], sha256_digest(source))
        return cls(metadata.to_json(), wasm, source, source_format, notes)

    @property
    def metadata(self) -> Metadata:
        return Metadata.from_json(self.config)

    @property
    def name(self) -> str:
        return self.annotations.get(ANNOTATIONS["title"], "")

    @property
    def version(self) -> str:
        return self.annotations.get(ANNOTATIONS["version"], "")

    def config_descriptor(self) -> Descriptor:
        return Descriptor.of(CONFIG_MEDIA_TYPE, self.config)

    def layer_descriptors(self) -> list[Descriptor]:
        layers = [Descriptor.of(WASM_MEDIA_TYPE, self.wasm, {ANNOTATIONS["title"]: "model.wasm"})]
        if self.source is not None:
            layers.append(Descriptor.of(SOURCE_MEDIA_TYPES[self.source_format], self.source,
                                        {ANNOTATIONS["title"]: f"model.{self.source_format}"}))
        return layers

    def blobs(self) -> dict[str, bytes]:
        """Every blob by digest (what a push uploads and a store keeps)."""
        out = {self.config_descriptor().digest: self.config, sha256_digest(self.wasm): self.wasm}
        if self.source is not None:
            out[sha256_digest(self.source)] = self.source
        return out

    def manifest(self) -> bytes:
        """The manifest's bytes: deterministic (sorted keys, no spaces), so its digest is stable."""
        document = {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "artifactType": MODEL_ARTIFACT_TYPE,
                    "config": self.config_descriptor().as_json(),
                    "layers": [d.as_json() for d in self.layer_descriptors()],
                    "annotations": dict(sorted(self.annotations.items()))}
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    def digest(self) -> str:
        return sha256_digest(self.manifest())

    def signed_payload(self) -> bytes:
        """What a signature covers: name, version and every blob digest (not the manifest, which carries it)."""
        unsigned = {k: v for k, v in self.annotations.items() if k not in (ANNOTATIONS["signature"],
                                                                          ANNOTATIONS["signer"])}
        document = {"config": self.config_descriptor().digest,
                    "layers": [d.digest for d in self.layer_descriptors()], "annotations": unsigned}
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_manifest(cls, manifest: bytes, blobs: dict[str, bytes]) -> ModelArtifact:
        """Rebuild from a manifest and its blobs, checking every blob against its digest and size."""
        try:
            document = json.loads(manifest)
            config_ref = document["config"]
            layers = document["layers"]
            annotations = dict(document.get("annotations") or {})
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a wasinfer model manifest: {exc}") from None
        if config_ref.get("mediaType") != CONFIG_MEDIA_TYPE:
            raise ValueError(f"not a wasinfer model: config media type {config_ref.get('mediaType')!r}")

        def blob(ref: dict[str, Any]) -> bytes:
            data = blobs.get(ref["digest"])
            if data is None:
                raise ValueError(f"blob {ref['digest']} is missing")
            if sha256_digest(data) != ref["digest"] or len(data) != ref["size"]:
                raise ValueError(f"blob {ref['digest']} does not match its digest or size: corrupted")
            return data

        by_type = {layer.get("mediaType"): layer for layer in layers}
        if WASM_MEDIA_TYPE not in by_type:
            raise ValueError("the manifest has no model.wasm layer")
        source, source_format = None, "onnx"
        for fmt, media_type in SOURCE_MEDIA_TYPES.items():
            if media_type in by_type:
                source, source_format = blob(by_type[media_type]), fmt
        return cls(blob(config_ref), blob(by_type[WASM_MEDIA_TYPE]), source, source_format, annotations)


@dataclass(frozen=True)
class Reference:
    """`[oci://][registry/]repository[:tag][@digest]`; no registry host means the local store. The `oci://`
    scheme (KServe's storageUri for OCI artifacts) names the same thing as the reference without it."""

    registry: str | None
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        scheme, found, unscheme = text.partition("://")
        if found and scheme.lower() != "oci":
            raise ValueError(f"{text!r}: {scheme}:// is not a registry reference (oci://host/repository:tag is)")
        rest, _, digest = (unscheme if found else text).partition("@")
        registry = None
        first, slash, remainder = rest.partition("/")
        # Docker's rule: the first component names a host if it has a dot or a port, or is localhost.
        if slash and ("." in first or ":" in first or first == "localhost"):
            registry, rest = first, remainder
        repository, colon, tag = rest.rpartition(":") if ":" in rest.rpartition("/")[2] else (rest, "", "")
        if not repository or not re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*",
                                              repository):
            raise ValueError(f"{text!r}: the repository part must be lowercase letters, digits and . _ - / "
                             "(as OCI names are)")
        if colon and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}", tag):
            raise ValueError(f"{text!r}: {tag!r} is not a valid tag")
        if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise ValueError(f"{text!r}: {digest!r} is not a sha256 digest")
        return cls(registry, repository, tag or None, digest or None)

    @property
    def reference(self) -> str:
        """What names the manifest: the digest when given, else the tag, else `latest`."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}" if self.registry else self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text
