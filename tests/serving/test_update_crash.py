"""A server SIGKILLed in the middle of updates restarts onto a good version; nothing half-written stays."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.processes import output_lines, read_until
from tests.registry.registry_server import run_registry
from tests.serving.conftest import SCALE
from tests.serving.test_updates import MODULES
from wasinfer.artifact.metadata import read_metadata
from wasinfer.registry.artifact import ModelArtifact
from wasinfer.registry.oci import OciClient

X = [[1.0, 1.0, 1.0, 1.0]]
ANSWERS = {"1.0.0": SCALE[1].tolist(), "2.0.0": SCALE[2].tolist()}


def start(config: Path, home: Path) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ, WASINFER_HOME=str(home), WASINFER_REGISTRY_PLAIN_HTTP="1", WASINFER_TRUST_MODE="off",
               COLUMNS="200")
    process = subprocess.Popen([sys.executable, "-m", "wasinfer.cli.main", "serve", "--desired-state", str(config),
                                "--http-port", "0", "--grpc-port", "-1"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output = "".join(read_until(output_lines(process), "Press Ctrl+C", timeout=60))
    match = re.search(r"REST  http://127\.0\.0\.1:(\d+)/v2", output)
    assert match, output
    return process, int(match[1])


def answer(port: int) -> list[float]:
    response = httpx.post(f"http://127.0.0.1:{port}/v2/models/scale/infer", timeout=30,
                          json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X}]})
    assert response.status_code == 200, response.text
    return list(response.json()["outputs"][0]["data"])


def test_sigkill_during_updates_restarts_onto_a_good_version(tmp_path: Path) -> None:
    with run_registry(tmp_path / "registry") as registry:
        with OciClient(registry.address, plain_http=True) as client:
            for scale, version in ((1, "1.0.0"), (2, "2.0.0")):
                client.push("team/scale", version, ModelArtifact.from_module(MODULES[scale], "team/scale", version))
        config, home = tmp_path / "desired.json", tmp_path / "home"
        desired = "1.0.0"

        def want(version: str) -> None:
            config.write_text(json.dumps({"model_path": f"{registry.address}/team/scale", "model_version": version,
                                          "model_update_interval": "1s"}))

        want(desired)
        model_dir = home / "desired" / "scale"
        for delay in (0.0, 0.4, 0.9, 1.4):  # the kill lands before, during or after the pull and the swap
            process, port = start(config, home)
            try:
                assert answer(port) in ANSWERS.values()  # resumed on a good version at once
                assert not list(model_dir.glob(".incoming-*"))
                for version_dir in model_dir.iterdir():
                    read_metadata((version_dir / "model.wasm").read_bytes())  # every version on disk is whole
                desired = "2.0.0" if desired == "1.0.0" else "1.0.0"
                want(desired)
                time.sleep(delay)
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=20)
        process, port = start(config, home)
        try:
            for _ in range(600):  # bounded (~30 s): it converges on the desired version after the crashes
                if answer(port) == ANSWERS[desired]:
                    break
                time.sleep(0.05)
            assert answer(port) == ANSWERS[desired]
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
