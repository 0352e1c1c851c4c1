"""`wasinfer run-guest`: the guest's stdout and stderr on ours, its exit code as ours, exit 2 for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.nn_guests import X, argv_preopen_guest, dense_onnx, echo_guest, looping_guest, nn_guest, wat_guest
from wasinfer.cli.main import main
from wasinfer.runtime.onnxruntime import OnnxRuntimeModel
from wasinfer.runtime.wasi_nn import EXIT_DEADLINE


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("run-guest")
    (directory / "dense.onnx").write_bytes(dense_onnx().SerializeToString())
    (directory / "classify.wasm").write_bytes(nn_guest(name="default", dims=X.shape, data=X.tobytes()))
    (directory / "echo.wasm").write_bytes(echo_guest())
    (directory / "loop.wasm").write_bytes(looping_guest())
    (directory / "argv.wasm").write_bytes(argv_preopen_guest())  # exits 10 * argc + 0 with a preopen, 8 without
    (directory / "three.wasm").write_bytes(wat_guest("(call $exit (i32.const 3))"))
    return directory


def test_run_guest_prints_the_guest_s_output_and_exits_with_its_code(
        files: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    code = main(["run-guest", str(files / "classify.wasm"), "--nn-preload",
                 f"default:onnx:cpu:{files / 'dense.onnx'}"])
    assert code == 0
    expected = OnnxRuntimeModel(files / "dense.onnx").run({"x": X})["y"]
    out = capfdbinary.readouterr().out
    np.testing.assert_allclose(np.frombuffer(out, np.float32).reshape(2, 3), expected, rtol=1e-6)
    assert main(["run-guest", str(files / "three.wasm")]) == 3


def test_json_stdin_args_and_dirs(files: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in.bin").write_bytes(b"hello guest")
    assert main(["run-guest", str(files / "echo.wasm"), "--stdin", str(tmp_path / "in.bin"), "--json"]) == 0
    report = json.loads(capfd.readouterr().out)
    assert report["exit_code"] == 0 and report["stdout"] == "hello guest"
    # Options after APP.wasm are ours up to --; after it, the guest's own (even ones that look like ours).
    assert main(["run-guest", str(files / "argv.wasm"), "--dir", f"{tmp_path}:/data", "--", "--json", "x"]) == 30
    assert main(["run-guest", "--memory-mb", "64", str(files / "argv.wasm")]) == 18  # argv: the program alone


def test_deadline_and_bad_input(files: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run-guest", str(files / "loop.wasm"), "--timeout-s", "0.2"]) == EXIT_DEADLINE
    assert "ran past its deadline" in capfd.readouterr().err
    for argv, says in (([str(files / "absent.wasm")], "no such file"),
                       ([str(files / "echo.wasm"), "--nn-preload", "x:onnx"], "ALIAS:ENCODING:TARGET:PATH"),
                       ([str(files / "echo.wasm"), "--nn-preload", "x:onnx:cpu:/nonexistent.onnx"], "no such file"),
                       ([str(files / "dense.onnx")], "not a WebAssembly module"),
                       ([str(files / "echo.wasm"), "--dir", "/nonexistent-dir"], "not a directory")):
        assert main(["run-guest", *argv]) == 2, argv
        assert says in capfd.readouterr().err


def busy_loop(seconds: float) -> subprocess.Popen[bytes]:
    """A process that keeps one core busy for `seconds`, then exits by itself (the test's CPU load)."""
    return subprocess.Popen([sys.executable, "-c", f"import time\nend = time.monotonic() + {seconds}\n"
                             "while time.monotonic() < end: pass"])


def test_run_guest_exits_with_the_guest_s_code_under_cpu_load(files: Path) -> None:
    """Issue 15 row 12: a guest that wrote to stdout made the process abort (a Rust panic in a tokio worker,
    exit 134) about half the time on a loaded machine, after the guest had succeeded: wasmtime released the
    guest's output streams on a tokio thread, which called back into Python while the interpreter exited."""
    load = [busy_loop(60.0) for _ in range(2)]
    try:
        codes = []
        for round in range(12):
            data = f"round {round}".encode()
            done = subprocess.run([sys.executable, "-m", "wasinfer.cli.main", "run-guest", str(files / "echo.wasm"),
                                   "--stdin", "-"], input=data, capture_output=True, timeout=60, check=False,
                                  env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
            assert done.stdout == data, done.stderr
            assert b"panicked" not in done.stderr, done.stderr
            codes.append(done.returncode)
        assert codes == [0] * 12
    finally:
        for process in load:
            process.kill()
            process.wait()
