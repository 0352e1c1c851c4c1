"""What `wasinfer serve` of a compiled module keeps in its memory: the modules it imports.

The server's resident memory (docs/performance.md "Install size and server memory") is mostly the code
of what it imports. RSS itself is not asserted here (it depends on the machine and the versions
installed); what is asserted is that the cuts stay made: after serving a request for a .wasm model, with
REST and gRPC, the process has not imported the compiler's packages, nor what only other paths need.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.registry.registry_server import free_port

# The compiler (a .wasm model needs none), the WebSocket protocol (no route uses it), YAML (only a YAML
# desired state needs it), importlib.metadata (wasmtime's version is read from its .dist-info's name).
NOT_IMPORTED = ("onnx", "onnxruntime", "tflite", "ai_edge_litert", "websockets", "yaml", "importlib.metadata")

# Runs `wasinfer serve` through its CLI entry point; a thread waits for one answer from the model, then
# writes the imported modules' names and stops the server as SIGTERM does.
SCRIPT = """
import json, os, signal, sys, threading, time, urllib.request
from wasinfer.cli.main import main

http_port, grpc_port, repository, out, body = sys.argv[1:]

def probe():
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{http_port}/v2/models/scale/infer", data=body.encode())
            answer = json.loads(urllib.request.urlopen(request, timeout=10).read())
            break
        except OSError:
            time.sleep(0.2)
    else:
        answer = None
    with open(out, "w") as f:
        json.dump({"answer": answer, "modules": sorted(sys.modules)}, f)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=probe, daemon=True).start()
sys.exit(main(["serve", "--model-repository", repository, "--http-port", http_port, "--grpc-port", grpc_port]))
"""


def test_serving_a_wasm_model_imports_no_compiler_and_nothing_it_does_not_use(repository: Path,
                                                                                tmp_path: Path) -> None:
    out = tmp_path / "modules.json"
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]})
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(free_port()), str(free_port()), str(repository),
                           str(out), body], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "WASINFER_HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(out.read_text())
    assert seen["answer"] is not None and seen["answer"]["outputs"][0]["data"] == [10, 20, 30, 40]
    modules = set(seen["modules"])
    assert "grpc" in modules and "wasmtime" in modules  # it did serve gRPC and run the module
    assert sorted(modules.intersection(NOT_IMPORTED)) == []
    # the module was compiled into the server's cache
    assert list((tmp_path / "home" / "cache").glob("*.cwasm"))

