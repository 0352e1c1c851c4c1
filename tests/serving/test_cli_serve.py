"""`wasinfer serve` as a user runs it: a process, its printed addresses and curl line, Ctrl+C."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.processes import output_lines, read_until
from wasinfer.cli.main import main


def test_demo_server_prints_a_working_curl_command_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = dict(os.environ, WASINFER_HOME=str(tmp_path / "home"), COLUMNS="80")
    process = subprocess.Popen(
        [sys.executable, "-m", "wasinfer.cli.main", "serve", "--http-port", "0", "--grpc-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        output = read_until(output_lines(process), "Press Ctrl+C", timeout=60)
        [command] = [line for line in output if line.startswith("curl ")]
        args = shlex.split(command)
        url, body = args[args.index("-X") + 2], args[args.index("-d") + 1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v2/models/digits/infer")
        assert any("gRPC  127.0.0.1:" in line for line in output)
        request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        [label] = answer["outputs"]
        assert label["name"] == "label" and label["datatype"] == "INT64"
        said = next(line for line in output if "held-out handwritten" in line)
        assert f"handwritten {label['data'][0]};" in said  # the demo model gets this digit right
        if shutil.which("curl"):  # and the printed command itself, pasted into a shell, gets the same answer
            pasted = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30, check=True)
            assert json.loads(pasted.stdout)["outputs"] == answer["outputs"]
        assert (tmp_path / "home" / "repository" / "digits" / "1" / "model.wasm").is_file()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_serves_a_repository_and_stops_on_sigterm(repository: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = dict(os.environ, WASINFER_HOME=str(home), COLUMNS="200")
    process = subprocess.Popen(
        [sys.executable, "-m", "wasinfer.cli.main", "serve", "--model-repository", str(repository),
         "--http-port", "0", "--grpc-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        output = "".join(read_until(output_lines(process), "Press Ctrl+C", timeout=60))
        match = re.search(r"REST  (http://127\.0\.0\.1:\d+)/v2", output)
        assert match, output
        body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]})
        request = urllib.request.Request(f"{match[1]}/v2/models/scale/infer", data=body.encode())
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["outputs"][0]["data"] == [10, 20, 30, 40]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        # Compiled code is cached in $WASINFER_HOME for the next start; the gRPC descriptors ship compiled, so
        # nothing is compiled for them (descriptors.py)
        assert list((home / "cache").glob("*.cwasm")) and not (home / "cache" / "proto").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_missing_repository_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model-repository", str(tmp_path / "nowhere"), "--http-port", "0"]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_a_fault_breaker_that_is_not_one_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model-repository", str(tmp_path), "--http-port", "0", "--fault-breaker",
                 "faults=20,runs=10"]) == 2
    assert "--fault-breaker 'faults=20,runs=10': faults and runs must be integers with 1 <= faults <= runs" in \
        capsys.readouterr().err


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_port_in_use_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], protocol: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        ports = ["--http-port", port, "--grpc-port", "-1"] if protocol == "http" else [
            "--http-port", "0", "--grpc-port", port]
        code = main(["serve", "--model-repository", str(tmp_path), *ports])
    assert code == 2
    # one line naming the port taken (REST's said only `[Errno 98] Address already in use`; gRPC's broke the line)
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: cannot listen on 127.0.0.1 (") and f" port {port}" in line, line
