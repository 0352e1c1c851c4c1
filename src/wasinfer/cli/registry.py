"""`wasinfer push`, `pull` and `models ...`: moving model versions between files, the local store
and OCI registries, and managing versions and aliases in the local store.

A REF is `[registry/]name[:tag][@digest]`. Without a registry host (a first component with a dot,
a port, or `localhost`) it names the local store ($WASINFER_HOME/store), so the same commands
work with no registry at all. The registry client is imported only when a REF names a host, so
local use needs no network stack.

Exit codes as elsewhere: 0 ok, 2 bad input (unknown model or version, a non-semver version, a
file that is not a wasinfer module, a corrupted blob, a registry refusal), with a one-line
message on stderr.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from wasinfer.cli.output import EXIT_BAD_INPUT, console, error, errors, signature, warning, wasinfer_home
from wasinfer.fileio import atomic_write
from wasinfer.registry.artifact import ANNOTATIONS, ModelArtifact, Reference, is_semver, semver_key
from wasinfer.registry.store import LocalStore, StoreError

if TYPE_CHECKING:
    from wasinfer.artifact.metadata import TensorSlot
    from wasinfer.registry.admission import Admission, Signed
    from wasinfer.registry.oci import OciClient

Command = Callable[[argparse.Namespace], int]
SOURCE_FORMATS = {".onnx": "onnx", ".tflite": "tflite"}


# --- hooks for the trust module ------------------------------------------------------------------

def _sign_and_admit(artifact: ModelArtifact) -> Signed:
    """Push: sign with $WASINFER_SIGNING_KEY when set, then the same gate as pull and load (admission.py)."""
    from wasinfer.registry.admission import admit, sign_if_configured

    signed = sign_if_configured(artifact)
    _warn(signed.warnings)
    _warn(admit(signed.artifact, signatures=signed.signatures).warnings)
    return signed


def _admit(artifact: ModelArtifact, mismatch: str | None = None, signatures: Sequence[bytes] = ()) -> Admission:
    """Pull: a digest-verified artifact must also pass the signature check (its model-signing bundles, else
    the legacy annotations) and the policies, and be what its reference asked for (`mismatch`:
    admission.reference_mismatch)."""
    from wasinfer.registry.admission import admit

    admission = admit(artifact, mismatch=mismatch, signatures=signatures)
    _warn(admission.warnings)
    return admission


def _warn(warnings: list[str]) -> None:
    for text in warnings:
        warning(text)


# --- plumbing ------------------------------------------------------------------------------------

def _store() -> LocalStore:
    return LocalStore(wasinfer_home() / "store")


def _is_user_error(exc: BaseException) -> bool:
    """Errors that mean 'your input or your data is wrong', reported in one line with exit 2.
    The registry client's error class is checked only when that module was loaded."""
    if isinstance(exc, StoreError | ValueError | OSError):
        return True
    for module, name in (("wasinfer.registry.trust", "TrustError"), ("wasinfer.registry.policy", "PolicyError")):
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(exc, getattr(loaded, name)):
            return True
    oci = sys.modules.get("wasinfer.registry.oci")
    return oci is not None and isinstance(exc, oci.RegistryError)


def _reports_errors(func: Command) -> Command:
    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except Exception as exc:
            if not _is_user_error(exc):
                raise
            error(str(exc))
            return EXIT_BAD_INPUT

    return wrapper


def _parse_ref(text: str) -> Reference:
    try:
        return Reference.parse(text)
    except ValueError as exc:
        raise ValueError(f"REF {exc}") from None


def _client(ref: Reference, args: argparse.Namespace) -> OciClient:
    """A registry client for REF's host, with credentials from the flags, the environment or
    Docker's config.json (in that order), and plain HTTP where --plain-http or $WASINFER_REGISTRY_PLAIN_HTTP
    asks for it (as `wasinfer serve` reads it)."""
    from wasinfer.registry.credentials import load_credentials
    from wasinfer.registry.fetch import plain_http_from_env
    from wasinfer.registry.oci import OciClient

    assert ref.registry is not None
    password = sys.stdin.readline().rstrip("\r\n") if getattr(args, "password_stdin", False) else None
    username, password = load_credentials(ref.registry, getattr(args, "username", None), password)
    plain_http = getattr(args, "plain_http", False) or plain_http_from_env()
    return OciClient(ref.registry, plain_http=plain_http, username=username, password=password)


@contextmanager
def _transfer_progress(description: str, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A byte progress bar on stderr (gone when done; none with --json or when stderr is not a
    terminal), fed by the client's `progress(done, total)` callback."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        console=errors, transient=True, disable=quiet or not errors.is_terminal)
    with progress:
        task = progress.add_task(description, total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total or None)

        yield report


def _emit(args: argparse.Namespace, document: dict[str, Any] | list[Any], text: str) -> None:
    if args.json:
        print(json.dumps(document))
    else:
        console.print(text, markup=False, highlight=False, soft_wrap=True)  # digests stay on one line


# --- push / pull ---------------------------------------------------------------------------------

@_reports_errors
def cmd_push(args: argparse.Namespace) -> int:
    path = Path(args.model)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    ref = _parse_ref(args.ref)
    if ref.digest or not ref.tag:
        raise ValueError(f"REF {args.ref!r} must name a version: [registry/]name:MAJOR.MINOR.PATCH")
    if not is_semver(ref.tag):
        raise ValueError(f"REF {args.ref!r}: push needs a semantic version tag (MAJOR.MINOR.PATCH), not {ref.tag!r}; "
                         "aliases are set with `wasinfer models promote`")
    annotations: dict[str, str] = {}
    if args.accuracy is not None:
        if not math.isfinite(args.accuracy):
            raise ValueError(f"--accuracy {args.accuracy}: expected a finite number")
        annotations[ANNOTATIONS["accuracy"]] = repr(args.accuracy)
    source, source_format = None, "onnx"
    if args.source:
        source_path = Path(args.source)
        source_format = SOURCE_FORMATS.get(source_path.suffix.lower(), "")
        if not source_format:
            raise ValueError(f"--source {source_path}: expected a {' or '.join(SOURCE_FORMATS)} file")
        source = source_path.read_bytes()
    try:
        artifact = ModelArtifact.from_module(path.read_bytes(), ref.repository, ref.tag, source, source_format,
                                             annotations)
    except ValueError as exc:
        raise ValueError(f"{path} is not a wasinfer module: {exc}") from None
    signed = _sign_and_admit(artifact)
    artifact = signed.artifact
    referrers: list[str] = []
    if ref.registry:
        from wasinfer.registry.modelsign import BUNDLE_MEDIA_TYPE

        with _client(ref, args) as client, _transfer_progress(f"pushing {ref}", args.json) as report:
            digest = client.push(ref.repository, ref.tag, artifact, report)
            # the model first, then its signatures: a referrer's subject must exist
            referrers = [client.push_referrer(ref.repository, digest, BUNDLE_MEDIA_TYPE, bundle)
                         for bundle in signed.signatures]
        where = ref.registry
    else:
        digest = _store().put(artifact, signed.signatures)
        where = "local store"
    _emit(args, {"reference": str(ref), "digest": digest, "store": where, "signatures": referrers,
                 "size": sum(len(b) for b in artifact.blobs().values()) + len(artifact.manifest())},
          (f"pushed {ref} to the {where}: {digest}" if not ref.registry else f"pushed {ref}: {digest}")
          + (f" (signed: model-signing bundle {', '.join(referrers)})" if referrers
             else " (signed: model-signing bundle)" if signed.signatures else ""))
    return 0


@_reports_errors
def cmd_pull(args: argparse.Namespace) -> int:
    from wasinfer.registry.fetch import pull_artifact, read_stored, registry_signatures, stored_signatures

    if args.destination is not None:
        if args.output:
            raise ValueError(f"pull: -o {args.output} and the directory {args.destination}: give one of them")
        args.output = args.destination.rstrip("/") + "/"
    ref = _parse_ref(args.ref)
    if ref.registry:
        with _client(ref, args) as client, _transfer_progress(f"pulling {ref}", args.json) as report:
            artifact, mismatch = pull_artifact(client, ref, progress=report)
            signatures = registry_signatures(client, ref.repository, artifact.digest())
    else:
        artifact, mismatch = read_stored(_store(), ref)
        signatures = stored_signatures(_store(), artifact)
    admission = _admit(artifact, mismatch, signatures)
    digest = artifact.digest()
    verdict = admission.verdict
    document: dict[str, Any] = {"reference": str(ref), "name": artifact.name, "version": artifact.version,
                                "digest": digest, "signature": {"verified": verdict.verified, "signer": verdict.signer,
                                                                "reason": verdict.reason}}
    if args.output and (args.output.endswith(("/", os.sep)) or Path(args.output).is_dir()):
        files = _write_model_directory(Path(args.output), artifact, admission.bundle)
        document["output"], document["files"] = args.output, files
        text = f"pulled {ref} ({artifact.version}, {digest}) into {args.output}: {', '.join(files)}"
    elif args.output:
        output = Path(args.output)
        atomic_write(output, artifact.wasm)
        document["output"] = str(output)
        text = f"pulled {ref} ({artifact.version}, {digest}) to {output}"
    elif ref.registry:
        if not artifact.name or not is_semver(artifact.version):
            raise ValueError(f"{ref}: the artifact has no wasinfer name/version annotations, so it cannot go "
                             "into the local store; use -o FILE")
        _store().put(artifact, signatures)
        document["store"] = "local store"
        text = f"pulled {ref} into the local store as {artifact.name}:{artifact.version} ({digest})"
    else:
        document["store"] = "local store"
        text = f"{artifact.name}:{artifact.version} is in the local store already ({digest}); -o FILE writes it out"
    _emit(args, document, text)
    return 0


def _write_model_directory(directory: Path, artifact: ModelArtifact, bundle: bytes | None) -> list[str]:
    """`pull -o DIR/`: the signed files (model.wasm, the source model) and the model-signing bundle as
    model.sig, which is what `model_signing verify ... DIR --signature DIR/model.sig` checks."""
    from wasinfer.registry.modelsign import SIGNATURE_FILE, model_files

    files = model_files(artifact)
    if bundle is not None:
        files[SIGNATURE_FILE] = bundle
    for name, data in files.items():
        atomic_write(directory / name, data)
    return list(files)


@_reports_errors
def cmd_sign(args: argparse.Namespace) -> int:
    """Attach a model-signing bundle to a version already published: how a version signed the legacy way (or
    not at all) gets the standard signature without new bytes, as versions are immutable."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from wasinfer.registry.fetch import pull_artifact, read_stored
    from wasinfer.registry.modelsign import BUNDLE_MEDIA_TYPE, sign_bundle
    from wasinfer.registry.trust import (
        ENV_SIGNING_KEY,
        load_any_private_key,
        signing_certificate_from_env,
        signing_key_from_env,
    )

    ref = _parse_ref(args.ref)
    key = signing_key_from_env()
    if key is None or isinstance(load_any_private_key(key), Ed25519PrivateKey):
        raise ValueError(f"sign needs {ENV_SIGNING_KEY} set to a model-signing (P-256) key: "
                         "`wasinfer keys generate --kind model-signing`")
    certificate = signing_certificate_from_env()
    if ref.registry:
        with _client(ref, args) as client:
            artifact, mismatch = pull_artifact(client, ref)
            if mismatch is not None:  # the bundle would vouch for the name and version the manifest claims
                raise ValueError(f"not signing {ref}: {mismatch}")
            referrer = client.push_referrer(ref.repository, artifact.digest(), BUNDLE_MEDIA_TYPE,
                                            sign_bundle(artifact, key, certificate))
    else:
        store = _store()
        artifact, mismatch = read_stored(store, ref)
        if mismatch is not None:
            raise ValueError(f"not signing {ref}: {mismatch}")
        store.put(artifact, [sign_bundle(artifact, key, certificate)])
        referrer = None
    _emit(args, {"reference": str(ref), "name": artifact.name, "version": artifact.version,
                 "digest": artifact.digest(), "signature": referrer},
          f"signed {artifact.name}:{artifact.version} ({artifact.digest()})"
          + (f": model-signing bundle {referrer}" if referrer else ": model-signing bundle in the local store"))
    return 0


# --- models --------------------------------------------------------------------------------------

def _summary(store: LocalStore, name: str, version: str) -> dict[str, Any]:
    """What `models show` says about one version: identity, size, aliases, and what its metadata
    and annotations tell without loading the module."""
    info, annotations, metadata = store.describe(name, version)
    accuracy = annotations.get(ANNOTATIONS["accuracy"])
    return {
        "version": info.version, "digest": info.digest, "size": info.size, "created": info.created,
        "inputs": [_tensor(t) for t in metadata.inputs], "outputs": [_tensor(t) for t in metadata.outputs],
        "signature": signature(metadata),
        "ops": metadata.stats.get("nodes_in"), "kernels": metadata.stats.get("kernels"),
        "params": metadata.stats.get("params"), "max_batch": metadata.max_batch,
        "accuracy": float(accuracy) if accuracy is not None else None,
        "signer": annotations.get(ANNOTATIONS["signer"]),
        "source_digest": annotations.get(ANNOTATIONS["source_digest"]),
    }


def _tensor(slot: TensorSlot) -> dict[str, Any]:
    """A tensor as `models show` reports it: its compiled shape (the largest, for a symbolic dim) and, where it has
    symbolic dims (ABI version 3), the range of each, by axis."""
    tensor: dict[str, Any] = {"name": slot.name, "dtype": slot.dtype, "shape": slot.shape}
    if slot.ranges:
        tensor["ranges"] = {str(axis): list(r) for axis, r in zip(slot.run_time_axes, slot.ranges, strict=False)}
    return tensor


@_reports_errors
def cmd_models_list(args: argparse.Namespace) -> int:
    store = _store()
    rows: list[dict[str, Any]] = []
    for name in store.models():
        versions = store.versions(name)
        rows.append({"name": name, "versions": [v.version for v in versions], "aliases": store.aliases(name),
                     "size": sum(v.size for v in versions)})
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        console.print("the local store is empty; `wasinfer push MODEL.wasm NAME:VERSION` adds a model")
        return 0
    table = Table(title=f"models in {store.root}")
    for column in ("name", "versions", "aliases"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], ", ".join(row["versions"]),
                      ", ".join(f"{a} → {v}" for a, v in row["aliases"].items()))
    console.print(table)
    return 0


def _registry_tags(client: OciClient, repository: str) -> tuple[dict[str, str], dict[str, str]]:
    """(semver tag → digest, alias tag → the version whose digest it shares, or its digest if none)."""
    digests = {tag: client.resolve(repository, tag) for tag in client.tags(repository)}
    versions = {tag: d for tag, d in digests.items() if is_semver(tag)}
    by_digest = {d: tag for tag, d in sorted(versions.items(), key=lambda item: semver_key(item[0]))}
    aliases = {tag: by_digest.get(d, d) for tag, d in digests.items() if not is_semver(tag)}
    return versions, aliases


@_reports_errors
def cmd_models_show(args: argparse.Namespace) -> int:
    ref = _parse_ref(args.name)
    if ref.registry:  # what a registry holds: its semver tags and where its alias tags point
        with _client(ref, args) as client:
            tags, alias_of = _registry_tags(client, ref.repository)
        entries = [(tag, digest, sorted(alias for alias, target in alias_of.items() if target == tag))
                   for tag, digest in sorted(tags.items(), key=lambda item: semver_key(item[0]))]
        if args.json:
            print(json.dumps({"name": str(ref), "aliases": alias_of, "versions": [
                {"version": tag, "digest": digest, "aliases": names} for tag, digest, names in entries]}))
            return 0
        listing = Table(title=str(ref))
        for column in ("version", "aliases", "digest"):
            listing.add_column(column, overflow="fold")
        for tag, digest, names in entries:
            listing.add_row(tag, ", ".join(names), digest)
        console.print(listing)
        return 0
    store = _store()
    aliases = store.aliases(args.name)
    versions = [_summary(store, args.name, v.version) for v in store.versions(args.name)]
    for version in versions:
        version["aliases"] = sorted(a for a, v in aliases.items() if v == version["version"])
    if args.json:
        print(json.dumps({"name": args.name, "aliases": aliases, "versions": versions}))
        return 0
    table = Table(title=args.name)
    for column in ("version", "aliases", "digest", "size", "inputs → outputs", "ops", "accuracy"):
        table.add_column(column, overflow="fold")
    for v in versions:
        table.add_row(v["version"], ", ".join(v["aliases"]), v["digest"].partition(":")[2][:12], f"{v['size']:,} B",
                      v["signature"], str(v["ops"]),
                      "" if v["accuracy"] is None else f"{v['accuracy']:.4g}")
    console.print(table)
    return 0


@_reports_errors
def cmd_models_promote(args: argparse.Namespace) -> int:
    ref = _parse_ref(args.name)
    if ref.registry:  # a registry's aliases are tags: point the alias tag at the version's manifest
        if ref.tag or ref.digest:
            raise ValueError(f"NAME {args.name!r}: give the version as its own argument, not in NAME")
        with _client(ref, args) as client:
            digest = client.resolve(ref.repository, args.version)
            client.tag(ref.repository, digest, args.alias)
        _emit(args, {"name": str(ref), "alias": args.alias, "version": args.version, "digest": digest},
              f"{ref}:{args.alias} → {args.version} ({digest})")
        return 0
    info = _store().promote(args.name, args.version, alias=args.alias)
    _emit(args, {"name": args.name, "alias": args.alias, "version": info.version, "digest": info.digest},
          f"{args.name}:{args.alias} → {info.version} ({info.digest})")
    return 0


@_reports_errors
def cmd_models_rollback(args: argparse.Namespace) -> int:
    ref = _parse_ref(args.name)
    if ref.registry:  # no history in a registry: the alias goes to the highest version below its current one
        with _client(ref, args) as client:
            versions, aliases = _registry_tags(client, ref.repository)
            current = aliases.get(args.alias)
            if current is None:
                raise ValueError(f"{ref} has no {args.alias!r} tag to roll back")
            if not is_semver(current):
                raise ValueError(f"{ref}:{args.alias} points at {current}, which no version tag names")
            older = sorted((v for v in versions if semver_key(v) < semver_key(current)), key=semver_key)
            if not older:
                raise ValueError(f"{ref}:{args.alias} is at {current}; there is no earlier version to roll back to")
            client.tag(ref.repository, versions[older[-1]], args.alias)
        _emit(args, {"name": str(ref), "alias": args.alias, "version": older[-1], "digest": versions[older[-1]],
                     "previous": current}, f"{ref}:{args.alias} rolled back from {current} to {older[-1]}")
        return 0
    info = _store().rollback(args.name, alias=args.alias)
    _emit(args, {"name": args.name, "alias": args.alias, "version": info.version, "digest": info.digest},
          f"{args.name}:{args.alias} rolled back to {info.version} ({info.digest})")
    return 0


@_reports_errors
def cmd_models_delete(args: argparse.Namespace) -> int:
    _store().delete(args.name, args.version, force=args.force)
    _emit(args, {"name": args.name, "version": args.version, "deleted": True},
          f"deleted {args.name}:{args.version}; `wasinfer models gc` frees its blobs")
    return 0


@_reports_errors
def cmd_models_gc(args: argparse.Namespace) -> int:
    removed, freed = _store().gc()
    _emit(args, {"files_removed": removed, "bytes_freed": freed},
          f"removed {removed} unreferenced file(s), {freed:,} bytes freed")
    return 0


# --- the parser ----------------------------------------------------------------------------------

REF_HELP = ("[registry/]name:version; without a registry host (a first component with a dot, a port, or "
            "localhost) the local store ($WASINFER_HOME/store)")


def _registry_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plain-http", action="store_true",
                   help="speak plain HTTP to the registry (for registries without TLS, e.g. on loopback; also "
                   "$WASINFER_REGISTRY_PLAIN_HTTP=1)")
    p.add_argument("--username", metavar="U", help="registry user (default: $WASINFER_REGISTRY_USERNAME, then "
                   "Docker's config.json)")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the registry password from the first line of stdin (never from a flag, so it stays "
                   "out of shell history and process listings)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register push, pull and models on the top-level `wasinfer` parser."""
    p = sub.add_parser("push", help="publish a module as a model version (local store or OCI registry)",
                       description="Publish MODEL.wasm as version VERSION of NAME: into the local store, or to "
                       "an OCI registry as an ORAS-style artifact (config = the module's metadata, layers = the "
                       "module and, with --source, the source model). Versions are semver and immutable: the "
                       "same bytes again is a no-op, different bytes under an existing version are refused.")
    p.add_argument("model", metavar="MODEL.wasm", help="a module made by `wasinfer convert`")
    p.add_argument("ref", metavar="REF", help=REF_HELP)
    p.add_argument("--source", metavar="MODEL.onnx", help="also store the source model (.onnx or .tflite) as a layer")
    p.add_argument("--accuracy", type=float, metavar="F",
                   help="record a measured accuracy in the manifest's annotations (policies can require one)")
    _registry_arguments(p)
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("pull", help="fetch a model version to a file or into the local store",
                       description="Fetch the version REF names (a version, an alias such as stable, or @digest; "
                       "default: the latest tag, else the highest release), verifying every blob's digest. With -o the "
                       "module is written to FILE "
                       "(atomically); without, a version from a registry goes into the local store.")
    p.add_argument("ref", metavar="REF", help=REF_HELP + "; the tag may be a version or an alias")
    p.add_argument("-o", "--output", metavar="FILE|DIR/",
                   help="write the .wasm module to FILE; or, to a directory (one that exists, or a path ending in /), "
                   "the signed files (model.wasm, the source model) and the model-signing bundle as model.sig, "
                   "which `model_signing verify` checks as it is")
    p.add_argument("destination", nargs="?", metavar="DIR",
                   help="the same as -o DIR/: how KServe calls a storage initializer (the storageUri, then "
                   "/mnt/models), so that `wasinfer pull` is one for oci:// (docs/deploy.md \"KServe\")")
    _registry_arguments(p)
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("sign", help="attach a model-signing bundle to a published version",
                       description="Sign the version REF names (in a registry or the local store) with "
                       "$WASINFER_SIGNING_KEY (a P-256 key; with $WASINFER_SIGNING_CERT, certificate-based) and "
                       "attach the bundle to it, as push does: a referrer in a registry, beside the version in the "
                       "local store. The version's bytes and digest do not change: this is how a version signed "
                       "the legacy way gets the standard signature.")
    p.add_argument("ref", metavar="REF", help=REF_HELP + "; the tag may be a version or an alias")
    _registry_arguments(p)
    p.set_defaults(func=cmd_sign)

    models = sub.add_parser("models", help="list, inspect, promote, roll back, delete models in the local store",
                            description="Manage the local store ($WASINFER_HOME/store): versions and aliases "
                            "(stable, canary, latest; latest is the highest release unless set). `show`, `promote` "
                            "and `rollback` also take registry/name: a registry's versions and alias tags.")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    p = msub.add_parser("list", help="every model with its versions and aliases",
                        description="List every model in the local store with its versions and aliases.")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=cmd_models_list)

    p = msub.add_parser("show", help="one model's versions, aliases, digests, sizes and metadata",
                        description="Show every version of NAME: digest, size, creation time, aliases, inputs "
                        "and outputs, op count and recorded accuracy (read from the manifest and config blob, "
                        "each verified against its digest).")
    p.add_argument("name", metavar="NAME", help="a model in the local store, or registry/name (its version and alias "
                   "tags)")
    _registry_arguments(p)
    p.set_defaults(func=cmd_models_show)

    p = msub.add_parser("promote", help="point an alias (default stable) at a version",
                        description="Point ALIAS at VERSION (a version, or another alias such as canary). In the "
                        "local store each change is recorded, so `models rollback` can undo it in one step. With "
                        "NAME as registry/name, the registry's ALIAS tag is pointed at VERSION's manifest instead "
                        "(a registry keeps no history, so rollback is local only).")
    p.add_argument("name", metavar="NAME", help="a model in the local store, or registry/name")
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--alias", default="stable", help="the alias to move (default stable)")
    _registry_arguments(p)
    p.set_defaults(func=cmd_models_promote)

    p = msub.add_parser("rollback", help="return an alias (default stable) to its previous version",
                        description="Point ALIAS back at the version it named before its last change; repeated "
                        "rollbacks walk further back. Fails, changing nothing, when there is no earlier version. "
                        "With NAME as registry/name (a registry keeps no history), ALIAS moves to the highest "
                        "version below the one it names.")
    p.add_argument("name", metavar="NAME", help="a model in the local store, or registry/name")
    p.add_argument("--alias", default="stable", help="the alias to roll back (default stable)")
    _registry_arguments(p)
    p.set_defaults(func=cmd_models_rollback)

    p = msub.add_parser("delete", help="remove a version (its blobs go at the next gc)",
                        description="Remove VERSION of NAME from the local store's index. Refused while an alias "
                        "points at it unless --force (which removes those aliases). `models gc` frees the space.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--force", action="store_true", help="delete even if aliases point at it (removing them)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_models_delete)

    p = msub.add_parser("gc", help="free blobs no version references",
                        description="Remove blobs that no version references (deleted versions, puts interrupted "
                        "by a crash) and leftover temporary files.")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(func=cmd_models_gc)
