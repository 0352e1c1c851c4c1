"""An OCI container image of a model's WASI command form, for crun+WasmEdge and containerd's Wasm shims.

On a K3s node a pod runs a Wasm module when its low-level runtime knows to hand the entrypoint to
a Wasm engine instead of exec'ing it. Two such runtimes exist, and they look at different things,
so the image is built to satisfy both (docs/deploy.md, "Wasm images", cites the sources):

- crun built with WasmEdge decides from the *OCI runtime spec's* annotations: `run.oci.handler:
  wasm` or `module.wasm.image/variant: compat`, or their `-smart` forms, which switch to Wasm only
  when the entrypoint ends in `.wasm`/`.wat` (so sidecars in the same pod still run as
  containers). The annotation reaches that spec from the pod (CRI-O copies pod annotations;
  containerd those its runtime entry allows); the image carries `compat-smart` too, where the
  compat variant puts it, and its entrypoint is `/model.wasm`.
- containerd's runwasi shims (containerd-shim-wasmedge-v1, ...) look at the image *config*: with
  `architecture: wasm` they take layers of Wasm media types straight from the content store, and
  otherwise run the entrypoint file from the container's root filesystem, calling `_start`.

So the image is a "compat" image, the variant that ordinary registries, skopeo, Podman and
containerd handle as any other: one `tar+gzip` layer holding exactly `model.wasm`, a config with
`architecture: wasm`, `os: wasip1` (the platform runwasi's own image builder writes) and
`Entrypoint: ["/model.wasm"]`, and the model's identity in the manifest annotations and config
labels. The module must be a WASI command (`wasinfer convert --wasi`): the runtimes call `_start`.

Reproducible by construction: the tar entry has mtime 0, uid/gid 0, no user names and mode 0755,
gzip's header mtime is 0, the config has no `created` time and every JSON document is written with
sorted keys and no spaces, so the same module packaged under the same tag by the same wasinfer
gives the same manifest digest on any machine (with the same zlib).
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from wasinfer.artifact.metadata import Metadata, function_exports, read_metadata
from wasinfer.fileio import atomic_write
from wasinfer.registry.artifact import sha256_digest
from wasinfer.version import __version__

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"

MODULE_NAME = "model.wasm"  # the layer's only file; the entrypoint is /model.wasm
ENTRYPOINT = f"/{MODULE_NAME}"
ARCHITECTURE, OS = "wasm", "wasip1"
VARIANT_ANNOTATION = "module.wasm.image/variant"
VARIANT = "compat-smart"  # crun: Wasm only for a .wasm/.wat entrypoint, so sidecars keep working

# The same keys as registry/artifact.py's ANNOTATIONS where they mean the same thing (deploy does
# not import registry: they are parts at the same level).
TITLE = "org.opencontainers.image.title"
VERSION = "org.opencontainers.image.version"
DESCRIPTION = "org.opencontainers.image.description"
MODULE_DIGEST = "dev.wasinfer.module.digest"  # sha256:<hex> of model.wasm (the layer digest is of the tar.gz)
SOURCE_DIGEST = "dev.wasinfer.source.digest"  # sha256:<hex> of the source model
PRODUCER = "dev.wasinfer.producer"  # the compiler that built the module, from its metadata
PACKAGER = "dev.wasinfer.packager"  # the wasinfer that built the image
REF_NAME = "org.opencontainers.image.ref.name"  # an OCI layout's tag, in index.json

WASI_HINT = ("compile it with `wasinfer convert --wasi`, or give `wasinfer package` the source model "
             "(.onnx/.tflite) and it compiles it with --wasi itself")


class NotACommand(ValueError):
    """The module has no WASI `_start`: a container runtime would have nothing to call."""


def canonical_json(document: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces: the same document is always the same bytes, so the same digest."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def check_command(wasm: bytes) -> Metadata:
    """The module's metadata, when it is a wasinfer module with a WASI `_start`; ValueError otherwise."""
    metadata = read_metadata(wasm)
    if "_start" not in function_exports(wasm):
        raise NotACommand(f"model {metadata.name!r} is not a WASI command (no _start export), so a container "
                          f"runtime cannot run it: {WASI_HINT}")
    return metadata


def module_tar(wasm: bytes) -> bytes:
    """An uncompressed tar holding only model.wasm, with every varying header field fixed."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(MODULE_NAME)
        info.size, info.mtime, info.mode = len(wasm), 0, 0o755
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    return out.getvalue()


@dataclass(frozen=True)
class WasmImage:
    """The three documents of one image; `manifest` is what a tag names and `digest` identifies."""

    config: bytes
    layer: bytes  # tar+gzip
    manifest: bytes
    annotations: dict[str, str]

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    def blobs(self) -> dict[str, bytes]:
        """Config and layer by digest: what a push uploads before the manifest."""
        return {sha256_digest(self.config): self.config, sha256_digest(self.layer): self.layer}

    @property
    def size(self) -> int:
        return len(self.config) + len(self.layer) + len(self.manifest)


def build_image(wasm: bytes, version: str | None = None, name: str | None = None) -> WasmImage:
    """The image of a WASI-command module; `name` defaults to the model's name, `version` is recorded when given."""
    metadata = check_command(wasm)
    tar = module_tar(wasm)
    layer = gzip.compress(tar, compresslevel=9, mtime=0)
    annotations = {
        TITLE: name or metadata.name,
        DESCRIPTION: f"wasinfer model {name or metadata.name} as a WASI command: .npy inputs on stdin, "
                     ".npy outputs on stdout (docs/abi.md)",
        MODULE_DIGEST: sha256_digest(wasm),
        PRODUCER: metadata.producer,
        PACKAGER: f"wasinfer {__version__}",
        VARIANT_ANNOTATION: VARIANT,
    }
    if metadata.source_sha256:
        annotations[SOURCE_DIGEST] = f"sha256:{metadata.source_sha256}"
    if version:
        annotations[VERSION] = version
    config = canonical_json({
        "architecture": ARCHITECTURE,
        "os": OS,
        "config": {"Entrypoint": [ENTRYPOINT], "Labels": annotations},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar)]},
        "history": [{"created_by": f"wasinfer {__version__} package"}],
    })
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": sha256_digest(layer), "size": len(layer)}],
        "annotations": annotations,
    })
    return WasmImage(config, layer, manifest, annotations)


class OciImage(Protocol):
    """What a layout or a push needs of an image: this module's WasmImage and server_image.ServerImage."""

    @property
    def digest(self) -> str: ...

    @property
    def manifest(self) -> bytes: ...

    def blobs(self) -> dict[str, bytes]: ...


def write_layout(image: OciImage, directory: Path, tag: str) -> None:
    """Write (or add to) an OCI image layout, which `skopeo copy oci:DIR:TAG ...` and Podman read.

    An existing layout keeps its other tags; the entry for `tag` is replaced. A directory that is
    neither empty nor a layout is refused, so a mistyped path cannot litter someone's files.
    """
    directory = Path(directory)
    index_path, marker = directory / "index.json", directory / "oci-layout"
    manifests: list[dict[str, Any]] = []
    if directory.exists():
        if not directory.is_dir():
            raise ValueError(f"--output {directory}: not a directory")
        if any(directory.iterdir()):
            if not marker.is_file() or not index_path.is_file():
                raise ValueError(f"--output {directory}: not empty and not an OCI image layout; give an empty or "
                                 "new directory")
            try:
                manifests = list(json.loads(index_path.read_bytes()).get("manifests") or [])
            except (ValueError, AttributeError) as exc:
                raise ValueError(f"--output {directory}: index.json is not an OCI index: {exc}") from None
    for digest, data in {**image.blobs(), image.digest: image.manifest}.items():
        path = directory / "blobs" / "sha256" / digest.partition(":")[2]
        if not path.is_file() or sha256_digest(path.read_bytes()) != digest:
            atomic_write(path, data)
    entry = {"mediaType": MANIFEST_MEDIA_TYPE, "digest": image.digest, "size": len(image.manifest),
             "annotations": {REF_NAME: tag}}
    manifests = [m for m in manifests if (m.get("annotations") or {}).get(REF_NAME) != tag] + [entry]
    atomic_write(marker, canonical_json({"imageLayoutVersion": "1.0.0"}))
    atomic_write(index_path, canonical_json({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE,
                                              "manifests": manifests}))

