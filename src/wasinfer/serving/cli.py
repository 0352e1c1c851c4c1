"""`wasinfer serve`: start the server, say where it listens, run until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from rich.console import Console

EXIT_BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-repository", metavar="DIR",
                        help="models as DIR/<name>/<version>/model.wasm (or model.onnx); default: the built-in "
                        "digits demo, compiled into $WASINFER_HOME/repository")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, default=8000, metavar="PORT",
                        help="REST port (default 8000; 0 picks a free one)")
    parser.add_argument("--grpc-port", type=int, default=8001, metavar="PORT",
                        help="gRPC port (default 8001; 0 picks a free one; -1 turns gRPC off)")
    parser.add_argument("--max-body-bytes", type=int, default=64 * 1024 * 1024, metavar="N",
                        help="largest request body (REST) or message (gRPC) accepted; larger get 413 / "
                        "RESOURCE_EXHAUSTED (default 64 MiB)")
    parser.add_argument("--pool-size", type=int, default=0, metavar="N",
                        help="instances per model, i.e. concurrent inferences per model (default: one per core)")


def run(args: argparse.Namespace, home: Path, console: Console, errors: Console) -> int:
    from wasinfer.serving.demo import DEMO_MODEL, curl_command, prepare_demo_repository
    from wasinfer.serving.server import Server, ServerConfig

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    example = None
    if args.model_repository:
        repository = Path(args.model_repository)
        if not repository.is_dir():
            errors.print(f"[red]error:[/] {repository}: not a directory", markup=True)
            return EXIT_BAD_INPUT
    else:
        with console.status("preparing the demo model (trained and compiled on first use)"):
            repository, request, label = prepare_demo_repository(home)
        example = (request, label)
    config = ServerConfig(repository, host=args.host, http_port=args.http_port,
                          grpc_port=None if args.grpc_port < 0 else args.grpc_port,
                          max_body_bytes=args.max_body_bytes, pool_size=args.pool_size, cache_dir=home / "cache")
    server = Server(config)
    try:
        server.start()
    except OSError as exc:
        errors.print(f"[red]error:[/] cannot listen on {args.host}: {exc}", markup=True)
        return EXIT_BAD_INPUT
    authority = f"[{args.host}]" if ":" in args.host else args.host
    console.print(f"wasinfer serving {repository}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"  REST  http://{authority}:{server.http_port}/v2  (OpenAPI: /v2/openapi.json, metrics: "
                  "/metrics)", markup=False, highlight=False, soft_wrap=True)
    if config.grpc_port is not None:
        console.print(f"  gRPC  {authority}:{server.grpc_port}  (inference.GRPCInferenceService)", markup=False,
                      highlight=False, soft_wrap=True)
    if example is not None:
        request, label = example
        console.print(f"\nTry it (a held-out handwritten {label}; the answer's \"data\" is the predicted digit):",
                      markup=False, highlight=False, soft_wrap=True)
        print(curl_command(args.host, server.http_port, DEMO_MODEL, request), flush=True)
    console.print("Press Ctrl+C to stop.", markup=False, highlight=False, soft_wrap=True)
    _wait_for_signal()
    server.stop()
    return 0


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
