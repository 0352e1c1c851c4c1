"""`wasinfer package`: a model as an OCI container image that crun+WasmEdge and containerd's Wasm
shims run on K3s nodes (deploy/image.py builds it; docs/deploy.md, "Wasm images", says how it runs).

The image needs the module's WASI command form. A `.wasm` without `_start` is refused with the
command that fixes it; a source model (`.onnx`/`.tflite`, told apart from a module by content) is
compiled here with `--wasi`, so one command goes from a trained model to a pushed image.

Pushing shares `wasinfer push`'s registry plumbing (cli/registry.py): the same REF syntax, the
same --plain-http/--username/--password-stdin flags and credential sources, the same progress bar
and one-line errors with exit 2.

`--server` builds the other image, the server's own (deploy/server_image.py): from a cache of .debs
and wheels that `--fetch` fills, never from the network during the build.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wasinfer.cli.output import errors
from wasinfer.cli.registry import _client, _emit, _parse_ref, _registry_arguments, _reports_errors, _transfer_progress
from wasinfer.registry.artifact import Reference, is_semver

if TYPE_CHECKING:
    from wasinfer.deploy.image import OciImage

SERVER_CACHE = Path(".cache") / "server-image"  # --debs / --wheels default, relative to the working directory
SERVER_LOCK = Path("deploy") / "image" / "debian.lock"  # in the repository; --fetch --update-lock writes it


def _module(args: argparse.Namespace) -> tuple[bytes, bool]:
    """The module's bytes, compiled with --wasi first when MODEL is a source model; and whether it was."""
    path = Path(args.model)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    data = path.read_bytes()
    if data[:4] == b"\x00asm":
        if args.input_shape or args.max_batch is not None:
            raise ValueError(f"{path} is compiled already: --input-shape and --max-batch apply to a source model")
        return data, False
    from wasinfer.artifact.convert import convert_model
    from wasinfer.frontends import parse_shape_overrides

    progress = Progress(TextColumn("compiling {task.description} with --wasi"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=errors, transient=True,
                        disable=args.json or not errors.is_terminal)
    overrides = parse_shape_overrides(args.input_shape or [])
    with progress:
        task = progress.add_task(path.name, total=None)
        result = convert_model(path, overrides.shapes, max_batch=overrides.batch_limit(args.max_batch),
                               wasi=True, input_ranges=overrides.ranges,
                               progress=lambda done, total: progress.update(task, completed=done, total=total))
    return result.wasm, True


def _image_ref(text: str) -> Reference:
    ref = _parse_ref(text)
    if not ref.registry:
        raise ValueError(f"--image {text!r} must name a registry host: HOST[:PORT]/name[:tag] (a container image "
                         "lives in a registry, not in the local model store)")
    if ref.digest:
        raise ValueError(f"--image {text!r}: give a tag, not a digest (the digest is the result)")
    return ref


def _publish(args: argparse.Namespace, image: OciImage, ref: Reference | None, tag: str,
             document: dict[str, Any]) -> list[str]:
    """Write the layout and/or push, as asked; what was done, for the one-line summary."""
    from wasinfer.deploy.image import write_layout

    done = []
    if args.output:
        write_layout(image, Path(args.output), tag)
        document["output"] = str(args.output)
        done.append(f"wrote oci:{args.output}:{tag}")
    if ref is not None:
        with _client(ref, args) as client, _transfer_progress(f"pushing {ref}", args.json) as report:
            client.push_manifest(ref.repository, tag, image.manifest, image.blobs(), report)
        document["image"] = f"{ref.registry}/{ref.repository}:{tag}"
        done.append(f"pushed {document['image']}")
    return done


def _server_image(args: argparse.Namespace) -> int:
    """`package --server`: fill the cache (--fetch) and/or build the server image from it."""
    from wasinfer.deploy.image import VERSION
    from wasinfer.deploy.server_image import build_server_image, fetch, git_origin, git_revision

    if args.model is not None:
        raise ValueError(f"--server builds the server's image, which holds no model: leave out {args.model!r}")
    if args.input_shape or args.max_batch is not None or args.name:
        raise ValueError("--input-shape, --max-batch and --name apply to a model's image, not to --server")
    if args.update_lock and not args.fetch:
        raise ValueError("--update-lock needs --fetch: the lock is written from what apt downloads")
    if not (args.fetch or args.image or args.output):
        raise ValueError("nothing to do: give --fetch to fill the cache, --image REF to push the server image, "
                         "--output DIR to write an OCI layout, or a combination")
    ref = _image_ref(args.image) if args.image else None
    debs, wheels, lock = Path(args.debs), Path(args.wheels), Path(args.lock)
    document: dict[str, Any] = {"image": None, "output": None}
    if args.fetch:
        packages = fetch(debs, wheels, lock, Path(args.source), update_lock=args.update_lock)
        document["fetched"] = {"debs": len(packages), "wheels": len(list(wheels.glob("*.whl"))), "lock": str(lock)}
        if not (args.image or args.output):
            _emit(args, document, f"fetched {len(packages)} .debs into {debs} and "
                  f"{document['fetched']['wheels']} wheels into {wheels} ({lock})")
            return 0
    source = Path(args.source)
    image = build_server_image(debs, wheels, lock, version=args.version,
                               revision=args.revision or git_revision(source),
                               source_url=args.source_url or git_origin(source))
    tag = (ref.tag if ref else None) or image.labels[VERSION]
    document.update({"digest": image.digest, "size": image.size, "tag": tag})
    done = _publish(args, image, ref, tag, document)
    _emit(args, document, f"{', '.join(done)}: {image.digest} ({image.size / 2**20:.1f} MiB)")
    return 0


@_reports_errors
def cmd_package(args: argparse.Namespace) -> int:
    from wasinfer.deploy.image import MODULE_DIGEST, NotACommand, build_image

    if args.server:
        return _server_image(args)
    for flag in ("fetch", "update_lock"):
        if getattr(args, flag):
            raise ValueError(f"--{flag.replace('_', '-')} fills the --server image's cache: add --server")
    if args.model is None:
        raise ValueError("give MODEL (a module or a source model), or --server for the server's own image")
    if not args.image and not args.output:
        raise ValueError("nothing to do: give --image REF to push the image, --output DIR to write an OCI layout, "
                         "or both")
    ref = _image_ref(args.image) if args.image else None
    tag = (ref.tag if ref else None) or args.version or "latest"
    version = args.version or (tag if is_semver(tag) else None)
    wasm, compiled = _module(args)
    try:
        image = build_image(wasm, version=version, name=args.name)
    except NotACommand:
        raise
    except ValueError as exc:
        raise ValueError(f"{args.model}: {exc}") from None
    document: dict[str, Any] = {"digest": image.digest, "size": image.size, "tag": tag,
                                "module_digest": image.annotations[MODULE_DIGEST],
                                "compiled": compiled, "image": None, "output": None}
    done = _publish(args, image, ref, tag, document)
    _emit(args, document, f"{', '.join(done)}: {image.digest}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `package` on the top-level `wasinfer` parser."""
    p = sub.add_parser("package", help="build an OCI container image of a model for crun+WasmEdge / Wasm shims, "
                       "or (--server) of the server itself",
                       description="Build a container image whose only file is the model's WASI command form "
                       "(/model.wasm, the entrypoint: .npy inputs on stdin, .npy outputs on stdout), for K3s nodes "
                       "that run Wasm with crun+WasmEdge or containerd's Wasm shims (RuntimeClass wasmedge), and "
                       "push it to a registry and/or write it as an OCI image layout. The image is reproducible: "
                       "the same module and tag give the same digest. docs/deploy.md describes the image. With "
                       "--server, build the image of `wasinfer serve` itself instead, the one the Helm chart runs.")
    p.add_argument("model", metavar="MODEL", nargs="?",
                   help="a module built with `wasinfer convert --wasi`, or a source model (.onnx/.tflite), which is "
                   "compiled with --wasi first; a module without the WASI _start is refused (none with --server)")
    p.add_argument("--image", metavar="REF", help="push to this registry reference, HOST[:PORT]/name[:tag] "
                   "(tag default: --version, else latest)")
    p.add_argument("--output", "-o", metavar="DIR", help="write an OCI image layout here (new, empty or an "
                   "existing layout; other tags are kept): `skopeo copy oci:DIR:TAG ...` reads it")
    p.add_argument("--version", metavar="V", help="the version recorded in the image's annotations (default: the "
                   "tag, when it is a semantic version; with --server, the wasinfer wheel's version)")
    p.add_argument("--name", help="the model name recorded in the annotations (default: the module's)")
    p.add_argument("--max-batch", type=int, metavar="N", help="for a source model: largest batch (default 1)")
    p.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,...",
                   help="for a source model: fix the shape of an input with dynamic dims (repeatable)")
    server = p.add_argument_group("the server's own image (--server; docs/deploy.md, \"The server image\")")
    server.add_argument("--server", action="store_true",
                        help="build the image of `wasinfer serve` (Debian bookworm's Python 3.11 from .debs, the "
                        "wasinfer[serve] wheels, the wasinfer wheel; user 65532) from the --debs/--wheels cache, "
                        "reproducibly and without a Docker daemon; the tag defaults to the wasinfer version")
    server.add_argument("--fetch", action="store_true",
                        help="first fill the cache: apt-get download the packages of --lock, pip download the "
                        "wheels, and build the wasinfer wheel from --source (the only step that uses the network)")
    server.add_argument("--update-lock", action="store_true",
                        help="with --fetch: resolve the package closure with apt-cache again and rewrite --lock "
                        "with the versions apt has now")
    server.add_argument("--debs", metavar="DIR", default=str(SERVER_CACHE / "debs"),
                        help=f"the cache's .deb files (default {SERVER_CACHE / 'debs'})")
    server.add_argument("--wheels", metavar="DIR", default=str(SERVER_CACHE / "wheels"),
                        help=f"the cache's wheels (default {SERVER_CACHE / 'wheels'})")
    server.add_argument("--lock", metavar="FILE", default=str(SERVER_LOCK),
                        help="the pinned Debian packages (default deploy/image/debian.lock)")
    server.add_argument("--source", metavar="DIR", default=".",
                        help="the wasinfer source tree --fetch builds the wheel from (default .)")
    server.add_argument("--revision", metavar="REV",
                        help="the org.opencontainers.image.revision label (default: git rev-parse HEAD in --source)")
    server.add_argument("--source-url", metavar="URL",
                        help="the org.opencontainers.image.source label (default: the origin remote of --source; "
                        "none without one)")
    _registry_arguments(p)
    p.set_defaults(func=cmd_package)
