"""`wasinfer run-guest`: run a WASI-NN guest program (a WasmEdge-style application) on wasinfer's host.

Kept apart from main.py so `add_commands` is the one hook; the host is wasinfer.runtime.wasi_nn.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

from wasinfer.cli.output import EXIT_BAD_INPUT, error

DEFAULT_MEMORY_MB = 1024


def parse_dir(spec: str) -> tuple[Path, str]:
    """`HOST[:GUEST]`: a host directory and the path the guest sees it at (the same path by default)."""
    host, sep, guest = spec.partition(":")
    if not host:
        raise ValueError(f"--dir {spec!r}: expected HOST[:GUEST]")
    return Path(host), guest if sep and guest else host


def cmd_run_guest(args: argparse.Namespace) -> int:
    from wasinfer.runtime.wasi_nn import GuestError, parse_preloads, run_guest

    split_rest(args)
    try:
        preloads = parse_preloads(args.nn_preload)
        dirs = [parse_dir(spec) for spec in args.dir]
        env = dict(item.partition("=")[::2] for item in args.env)
        if any(not key for key in env):
            raise ValueError("--env takes NAME=VALUE")
        if args.memory_mb < 0 or args.timeout_s < 0:
            raise ValueError("--memory-mb and --timeout-s must not be negative")
        wasm = Path(args.wasm)
        if not wasm.is_file():
            raise ValueError(f"{wasm}: no such file")
        stdin = b""
        if args.stdin == "-":
            stdin = sys.stdin.buffer.read()
        elif args.stdin is not None:
            stdin = Path(args.stdin).read_bytes()
        result = run_guest(wasm, args.args, preloads, stdin, dirs,
                           memory_limit_bytes=args.memory_mb << 20 if args.memory_mb else None,
                           deadline_seconds=args.timeout_s or None, env=env)
    except (GuestError, ValueError) as exc:
        error(str(exc))
        return EXIT_BAD_INPUT
    except OSError as exc:
        error(f'{exc.filename}: {exc.strerror}')
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps({"exit_code": result.exit_code,
                          "stdout": result.stdout.decode("utf-8", "replace"),
                          "stderr": result.stderr.decode("utf-8", "replace"),
                          "stdout_base64": base64.b64encode(result.stdout).decode()}))
        return result.exit_code
    sys.stdout.buffer.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(result.stderr)
    sys.stderr.flush()
    return result.exit_code


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nn-preload", action="append", default=[], metavar="ALIAS:ENCODING:TARGET:PATH",
                   help="a model the guest loads with load_by_name(ALIAS), as WasmEdge's --nn-preload: ENCODING "
                   "onnx, tensorflowlite, autodetect or wasinfer (a wasinfer .wasm module); TARGET cpu, gpu "
                   "(onnx with ONNX Runtime's CUDA provider), auto (cpu). Repeatable")
    p.add_argument("--dir", action="append", default=[], metavar="HOST[:GUEST]",
                   help="give the guest the host directory HOST, at path GUEST (default: the same path). Repeatable")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="an environment variable for the guest (it sees none of ours). Repeatable")
    p.add_argument("--stdin", metavar="FILE", help="the guest's standard input: FILE, or - for ours (default: empty)")
    p.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB, metavar="N",
                   help=f"cap on the guest's linear memory, and on each wasinfer model it loads (default "
                   f"{DEFAULT_MEMORY_MB}; 0: WebAssembly's own 4 GiB)")
    p.add_argument("--timeout-s", type=float, default=0.0, metavar="S",
                   help="stop the guest after S seconds, exit code 124 (default 0: no limit)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: exit_code, stdout and stderr (UTF-8, invalid bytes replaced), "
                   "stdout_base64")


def split_rest(args: argparse.Namespace) -> None:
    """Sort what follows APP.wasm: up to `--`, our options; after it, the guest's argv.

    argparse cannot tell our options from the guest's after a positional, so the tail comes here
    whole. Without `--`, our options are taken from it and everything else is the guest's.
    """
    command: list[str] = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    args.wasm, rest = command[0], command[1:]
    tail = argparse.ArgumentParser(prog="wasinfer run-guest APP.wasm", add_help=False)
    _add_options(tail)
    if "--" in rest:
        cut = rest.index("--")
        extra, args.args = tail.parse_args(rest[:cut], namespace=argparse.Namespace()), rest[cut + 1:]
    else:
        extra, args.args = tail.parse_known_args(rest, namespace=argparse.Namespace())
    for key, value in vars(extra).items():
        if isinstance(value, list):
            setattr(args, key, [*getattr(args, key), *value])
        elif value != tail.get_default(key):
            setattr(args, key, value)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run-guest", help="run a WASI-NN guest program (a WasmEdge-style application) with wasinfer's backends",
        description="Run APP.wasm, a WASI preview 1 command that imports wasi_ephemeral_nn (as WasmEdge's WASI-NN "
        "plug-in defines it), on wasmtime, with its models run by ONNX Runtime (onnx), LiteRT (tensorflowlite) "
        "or wasinfer modules. Prints the guest's stdout and stderr and exits with its exit code; a guest that "
        "traps exits 134, one stopped at --timeout-s exits 124. Options go before or after APP.wasm; the guest's "
        "own arguments go after --. See docs/wasi-nn.md.",
        usage="wasinfer run-guest APP.wasm [--nn-preload ALIAS:ENCODING:TARGET:PATH]... [--dir HOST[:GUEST]]... "
        "[--env NAME=VALUE]... [--stdin FILE] [--memory-mb N] [--timeout-s S] [--json] [-- ARGS...]",
        epilog="Example: wasinfer run-guest app.wasm --nn-preload default:onnx:cpu:model.onnx --dir . -- input.bin")
    _add_options(p)
    # APP.wasm and everything after it, `--` included (split_rest sorts it): a plain positional would eat
    # the `--` that says where the guest's arguments begin.
    p.add_argument("command", nargs=argparse.PARSER, metavar="APP.wasm [-- ARGS...]",
                   help="the guest program, then its arguments after --")
    p.set_defaults(func=cmd_run_guest)
