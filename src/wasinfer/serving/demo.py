"""`wasinfer serve` with no repository: the built-in digits model, ready to curl.

The demo model (registry/demo.py: an MLP trained on scikit-learn's bundled digits) is built
in $WASINFER_HOME/demo, shared with `wasinfer demo`, and compiled once into the repository
$WASINFER_HOME/repository/digits/1/model.wasm; later starts reuse both.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

DEMO_MODEL = "digits"
DEMO_MAX_BATCH = 64


def prepare_demo_repository(home: Path) -> tuple[Path, dict[str, Any], int]:
    """The demo repository, an example request (one held-out digit, label only), and its true label."""
    from wasinfer.artifact import convert_onnx
    from wasinfer.fileio import atomic_write
    from wasinfer.registry.demo import ensure_demo_model, load_test_split

    source_dir = home / "demo"
    onnx_path = ensure_demo_model(source_dir)
    repository = home / "repository"
    target = repository / DEMO_MODEL / "1" / "model.wasm"
    if not target.exists() or target.stat().st_mtime_ns < onnx_path.stat().st_mtime_ns:
        wasm = convert_onnx(onnx_path, max_batch=DEMO_MAX_BATCH, name=DEMO_MODEL).wasm
        atomic_write(target, wasm)  # a server never sees half a module
    x_test, y_test = load_test_split(source_dir)
    pixels = [int(v) if float(v).is_integer() else float(v) for v in x_test[0]]
    request = {"inputs": [{"name": "input", "shape": [1, len(pixels)], "datatype": "FP32", "data": pixels}],
               "outputs": [{"name": "label"}]}
    return repository, request, int(y_test[0])


def curl_command(host: str, port: int, model: str, request: dict[str, Any], cacert: str | None = None,
                 token_file: str | None = None, token_env: bool = False) -> str:
    """A shell command that posts `request` to the server (a wildcard host is reached on loopback).

    With TLS it trusts the server's own certificate (`cacert`); with an inference token it reads
    the token from its file or variable when it runs, so the token itself is never printed.
    """
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    body = json.dumps(request, separators=(",", ":"))
    scheme = "https" if cacert else "http"
    options = f" --cacert {shlex.quote(cacert)}" if cacert else ""
    if token_file:
        options += f' -H "Authorization: Bearer $(cat {shlex.quote(token_file)})"'
    elif token_env:
        options += ' -H "Authorization: Bearer $WASINFER_INFERENCE_TOKEN"'
    return (f"curl -s -X POST {scheme}://{authority}/v2/models/{model}/infer{options} "
            f"-H 'Content-Type: application/json' -d {shlex.quote(body)}")
