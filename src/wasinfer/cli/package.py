"""`wasinfer package`: a model as an OCI container image that crun+WasmEdge and containerd's Wasm
shims run on K3s nodes (deploy/image.py builds it; docs/deploy.md, "Wasm images", says how it runs).

The image needs the module's WASI command form. A `.wasm` without `_start` is refused with the
command that fixes it; a source model (`.onnx`/`.tflite`, told apart from a module by content) is
compiled here with `--wasi`, so one command goes from a trained model to a pushed image.

Pushing shares `wasinfer push`'s registry plumbing (cli/registry.py): the same REF syntax, the
same --plain-http/--username/--password-stdin flags and credential sources, the same progress bar
and one-line errors with exit 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wasinfer.cli.output import errors
from wasinfer.cli.registry import _client, _emit, _parse_ref, _registry_arguments, _reports_errors, _transfer_progress
from wasinfer.registry.artifact import Reference, is_semver


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


@_reports_errors
def cmd_package(args: argparse.Namespace) -> int:
    from wasinfer.deploy.image import MODULE_DIGEST, NotACommand, build_image, write_layout

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
    _emit(args, document, f"{', '.join(done)}: {image.digest}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `package` on the top-level `wasinfer` parser."""
    p = sub.add_parser("package", help="build an OCI container image of a model for crun+WasmEdge / Wasm shims",
                       description="Build a container image whose only file is the model's WASI command form "
                       "(/model.wasm, the entrypoint: .npy inputs on stdin, .npy outputs on stdout), for K3s nodes "
                       "that run Wasm with crun+WasmEdge or containerd's Wasm shims (RuntimeClass wasmedge), and "
                       "push it to a registry and/or write it as an OCI image layout. The image is reproducible: "
                       "the same module and tag give the same digest. docs/deploy.md describes the image.")
    p.add_argument("model", metavar="MODEL",
                   help="a module built with `wasinfer convert --wasi`, or a source model (.onnx/.tflite), which is "
                   "compiled with --wasi first; a module without the WASI _start is refused")
    p.add_argument("--image", metavar="REF", help="push to this registry reference, HOST[:PORT]/name[:tag] "
                   "(tag default: --version, else latest)")
    p.add_argument("--output", "-o", metavar="DIR", help="write an OCI image layout here (new, empty or an "
                   "existing layout; other tags are kept): `skopeo copy oci:DIR:TAG ...` reads it")
    p.add_argument("--version", metavar="V", help="the version recorded in the image's annotations (default: the "
                   "tag, when it is a semantic version)")
    p.add_argument("--name", help="the model name recorded in the annotations (default: the module's)")
    p.add_argument("--max-batch", type=int, metavar="N", help="for a source model: largest batch (default 1)")
    p.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,...",
                   help="for a source model: fix the shape of an input with dynamic dims (repeatable)")
    _registry_arguments(p)
    p.set_defaults(func=cmd_package)
