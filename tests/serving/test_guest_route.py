"""`POST /v2/guests/{name}/run`: a WASI-NN guest per request, on a real server on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.nn_guests import X, argv_preopen_guest, dense_onnx, echo_guest, looping_guest, nn_guest, wat_guest
from tests.serving.conftest import MAX_BODY, start_server
from wasinfer.cli.main import main
from wasinfer.runtime.onnxruntime import OnnxRuntimeModel
from wasinfer.runtime.wasi_nn import Preload
from wasinfer.serving import Server
from wasinfer.serving.guests import GuestConfig


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("guests")
    (directory / "dense.onnx").write_bytes(dense_onnx().SerializeToString())
    # Reads its input tensor from stdin, runs the preloaded model, writes the output to stdout.
    (directory / "classify.wasm").write_bytes(nn_guest(name="dense", dims=X.shape, data=X.tobytes(), read_stdin=True))
    (directory / "echo.wasm").write_bytes(echo_guest())
    (directory / "loop.wasm").write_bytes(looping_guest())
    (directory / "trap.wasm").write_bytes(wat_guest("unreachable"))
    (directory / "three.wasm").write_bytes(wat_guest("(call $exit (i32.const 3))"))
    return directory


def guest_config(programs: Path, **overrides: object) -> GuestConfig:
    names = ("classify", "echo", "loop", "trap", "three")
    config = GuestConfig(tuple((n, programs / f"{n}.wasm") for n in names),
                         (Preload.parse(f"dense:onnx:cpu:{programs / 'dense.onnx'}"),),
                         memory_limit_bytes=64 << 20, deadline_seconds=0.5, workers=2)
    return GuestConfig(**{**config.__dict__, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server(repository: Path, programs: Path) -> Iterator[Server]:
    running = start_server(repository, guests=guest_config(programs))
    try:
        yield running
    finally:
        running.stop(grace=2)


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as http:
        yield http


def test_a_guest_runs_its_model_on_the_request_body(client: httpx.Client, programs: Path) -> None:
    answer = client.post("/v2/guests/classify/run", content=X.tobytes())
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["x-guest-exit-code"] == "0"
    expected = OnnxRuntimeModel(programs / "dense.onnx").run({"x": X})["y"]
    np.testing.assert_allclose(np.frombuffer(answer.content, np.float32).reshape(2, 3), expected, rtol=1e-6)
    assert client.post("/v2/guests/echo/run", content=b"\x00hi\xff").content == b"\x00hi\xff"


def test_a_guest_that_exits_with_another_code_than_0_is_422_with_the_code(client: httpx.Client) -> None:
    """It was 200 with an empty body: success, to every client that checks only the status."""
    answer = client.post("/v2/guests/three/run", content=b"")
    assert answer.status_code == 422 and answer.headers["x-guest-exit-code"] == "3"
    assert "guest 'three' exited with code 3" in answer.json()["error"]


def test_a_guest_gets_the_command_line_its_flag_gives(repository: Path, programs: Path, tmp_path: Path) -> None:
    """`--guest 'NAME=APP.wasm ARG...'`: the guest's argv is its name then the arguments (it had its name only).
    argv.wasm exits 10 * argc + 8 (8: no preopened directory)."""
    import argparse

    from wasinfer.serving.cli import _guest_config, add_arguments

    (tmp_path / "argv.wasm").write_bytes(argv_preopen_guest())
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--model-repository", str(repository), "--guest",
                                      f"argv={tmp_path / 'argv.wasm'} --top '5 7'", "--guest",
                                      f"bare={tmp_path / 'argv.wasm'}"])
    running = start_server(repository, guests=_guest_config(args, workers=1))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=30) as http:
            assert http.post("/v2/guests/argv/run", content=b"").headers["x-guest-exit-code"] == "38"  # 3 args
            assert http.post("/v2/guests/bare/run", content=b"").headers["x-guest-exit-code"] == "18"  # its name
    finally:
        running.stop(grace=2)


def test_refusals(client: httpx.Client) -> None:
    missing = client.post("/v2/guests/nobody/run", content=b"")
    assert missing.status_code == 404 and "no guest 'nobody'" in missing.json()["error"]
    assert "classify" in missing.json()["error"]  # says which guests there are
    assert client.get("/v2/guests/echo/run").status_code == 405
    assert client.post("/v2/guests/echo/run", content=b"x" * (MAX_BODY + 1)).status_code == 413
    assert client.post("/v2/guests/echo/other", content=b"").status_code == 404


def test_a_guest_the_host_stops_fails_alone(client: httpx.Client) -> None:
    stopped = client.post("/v2/guests/loop/run", content=b"")
    assert stopped.status_code == 504 and "ran past its deadline" in stopped.json()["error"]
    trapped = client.post("/v2/guests/trap/run", content=b"")
    assert trapped.status_code == 500 and "the guest trapped" in trapped.json()["error"]
    assert client.post("/v2/guests/echo/run", content=b"next").content == b"next"


def test_more_guests_in_flight_than_allowed_get_429(repository: Path, programs: Path) -> None:
    running = start_server(repository, guests=guest_config(programs, max_in_flight=1, deadline_seconds=3.0))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=30) as http:
            first = threading.Thread(target=lambda: http.post("/v2/guests/loop/run", content=b""), daemon=True)
            first.start()
            assert running.guests is not None
            deadline = time.monotonic() + 10
            while running.guests._in_flight._value != 0 and time.monotonic() < deadline:  # type: ignore[attr-defined]
                time.sleep(0.01)
            assert http.post("/v2/guests/echo/run", content=b"").status_code == 429
            first.join(30)
            assert http.post("/v2/guests/echo/run", content=b"ok").content == b"ok"
    finally:
        running.stop(grace=2)


def test_servers_without_guests_have_no_guest_routes(shared_server: Server) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{shared_server.http_port}", timeout=30) as http:
        assert http.post("/v2/guests/echo/run", content=b"").status_code == 404


def test_serve_refuses_bad_guest_flags(tmp_path: Path, programs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "not.wasm").write_bytes(b"nope")
    for flags, says in ((["--guest", "echo"], "expected NAME=APP.wasm"),
                        (["--guest", f"e={programs / 'echo.wasm'} 'unclosed"], "No closing quotation"),
                        (["--guest", f"x={tmp_path / 'absent.wasm'}"], "no such file"),
                        (["--guest", f"x={tmp_path / 'not.wasm'}"], "not a WebAssembly module"),
                        (["--nn-preload", f"a:onnx:cpu:{programs / 'dense.onnx'}"], "--nn-preload is for guests"),
                        (["--guest", f"e={programs / 'echo.wasm'}", "--nn-preload", "a:onnx:cpu"], "ALIAS:ENCODING")):
        assert main(["serve", "--model-repository", str(tmp_path), "--http-port", "0", "--grpc-port", "-1",
                     *flags]) == 2
        assert says in capsys.readouterr().err
