"""Structured logs and request ids: `wasinfer serve --log-format json` as a process, and the pieces in-process."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from tests.processes import output_lines, read_until
from tests.serving.conftest import start_server
from wasinfer.serving import Server
from wasinfer.serving.descriptors import messages
from wasinfer.serving.grpc_api import SERVICE
from wasinfer.serving.logs import JsonFormatter, TextFormatter, accept_request_id, configure, new_request_id

WRONG_DATATYPE = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT32", "data": [1, 2, 3, 4]}]}
GOOD = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}



def test_json_logs_carry_request_ids(repository: Path, tmp_path: Path) -> None:
    env = dict(os.environ, WASINFER_HOME=str(tmp_path / "home"), COLUMNS="200")
    process = subprocess.Popen(
        [sys.executable, "-m", "wasinfer.cli.main", "serve", "--model-repository", str(repository),
         "--http-port", "0", "--grpc-port", "0", "--log-format", "json", "--log-level", "info", "--access-log"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        output = "".join(read_until(output_lines(process), "Press Ctrl+C", timeout=60))
        rest = re.search(r"REST  (http://127\.0\.0\.1:\d+)/v2", output)
        grpc_port = re.search(r"gRPC  127\.0\.0\.1:(\d+)", output)
        assert rest and grpc_port, output
        with httpx.Client(base_url=rest[1], timeout=30) as http:
            by_header = http.post("/v2/models/scale/infer", json=WRONG_DATATYPE,
                                  headers={"X-Request-ID": "client-id-1"})
            assert by_header.status_code == 400 and by_header.headers["x-request-id"] == "client-id-1"
            by_body = http.post("/v2/models/scale/infer", json={**WRONG_DATATYPE, "id": "body-id-7"})
            assert by_body.headers["x-request-id"] == "body-id-7"
            made = http.post("/v2/models/nosuch/infer", json=GOOD)
            assert made.status_code == 404
            made_id = made.headers["x-request-id"]
            assert made_id and made_id not in ("client-id-1", "body-id-7")
            ok = http.post("/v2/models/scale/versions/1/infer", json=GOOD, headers={"X-Request-ID": "fine-1"})
            assert ok.status_code == 200 and ok.headers["x-request-id"] == "fine-1"
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port[1]}") as channel:
            infer = channel.unary_unary(f"/{SERVICE}/ModelInfer", request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=messages()["ModelInferResponse"].FromString)
            with pytest.raises(grpc.RpcError) as error:
                infer(messages()["ModelInferRequest"](model_name="nosuch"), metadata=[("x-request-id", "grpc-id-3")],
                      timeout=30)
            assert dict(error.value.trailing_metadata())["x-request-id"] == "grpc-id-3"  # type: ignore[attr-defined]
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    lines = [line for line in stderr.splitlines() if line.strip()]
    entries: list[dict[str, Any]] = [json.loads(line) for line in lines]  # every line is one JSON object
    for entry in entries:
        assert {"timestamp", "level", "logger", "message"} <= set(entry)
    by_id = {entry.get("request_id"): entry for entry in entries if entry["logger"] == "wasinfer.serving"}
    refused = by_id["client-id-1"]
    assert refused["level"] == "INFO" and refused["status"] == 400 and refused["protocol"] == "rest"
    assert refused["model"] == "scale" and refused["version"] == "2"
    assert "expects datatype FP32, got INT32" in refused["message"] and refused["duration_ms"] >= 0
    assert by_id["body-id-7"]["status"] == 400
    assert by_id[made_id]["status"] == 404 and "unknown model 'nosuch'" in by_id[made_id]["message"]
    assert by_id["grpc-id-3"]["protocol"] == "grpc" and by_id["grpc-id-3"]["status"] == "NOT_FOUND"
    assert "fine-1" not in by_id  # a success is not an error line...
    access = {entry["request_id"]: entry for entry in entries if entry["logger"] == "wasinfer.access"}
    assert access["fine-1"]["status"] == 200 and access["fine-1"]["path"] == "/v2/models/scale/versions/1/infer"
    assert access["fine-1"]["model"] == "scale" and access["fine-1"]["version"] == "1"  # ...but an access line
    assert access["client-id-1"]["status"] == 400


def test_an_unexpected_error_is_a_logged_500_with_the_request_id(repository: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    running = start_server(repository)
    try:
        def broken(name: str, version: str) -> Any:
            raise RuntimeError("a bug in the lookup")

        running.manager.lookup = broken  # type: ignore[method-assign]
        with caplog.at_level(logging.INFO, logger="wasinfer.serving"), \
                httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=20) as http:
            response = http.post("/v2/models/scale/infer", json=GOOD, headers={"X-Request-ID": "bug-1"})
            metadata = http.get("/v2/models/scale", headers={"X-Request-ID": "bug-2"})
    finally:
        running.stop(grace=2)
    for answer, request_id in ((response, "bug-1"), (metadata, "bug-2")):
        assert answer.status_code == 500
        assert answer.json() == {"error": f"internal server error (request id {request_id}; the server log has "
                                          "the details)"}
        [record] = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
        assert record.levelno == logging.ERROR and record.exc_info is not None
        assert "a bug in the lookup" in str(record.exc_info[1])


def test_grpc_bug_is_internal_not_unknown(server: Server) -> None:
    def broken(name: str) -> Any:
        raise RuntimeError("a bug in the index")

    server.manager.index = broken  # type: ignore[method-assign,assignment]
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        index = channel.unary_unary(f"/{SERVICE}/RepositoryIndex", request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=messages()["RepositoryIndexResponse"].FromString)
        with pytest.raises(grpc.RpcError) as error:
            index(messages()["RepositoryIndexRequest"](), timeout=20)
    failure: Any = error.value
    request_id = dict(failure.trailing_metadata())["x-request-id"]
    assert failure.code() == grpc.StatusCode.INTERNAL
    assert failure.details() == f"internal server error (request id {request_id}; the server log has the details)"
    assert "a bug" not in failure.details()  # the exception's text stays in the server's log


def test_formatters() -> None:
    record = logging.LogRecord("wasinfer.serving", logging.INFO, __file__, 1, "refused %s", ("x",), None)
    record.request_id, record.status, record.model = "r-1", 400, "scale"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "refused x" and entry["level"] == "INFO" and entry["logger"] == "wasinfer.serving"
    assert entry["request_id"] == "r-1" and entry["status"] == 400 and entry["model"] == "scale"
    assert entry["timestamp"].endswith("+00:00") and "version" not in entry
    text = TextFormatter().format(record)
    assert text.endswith("INFO wasinfer.serving: refused x request_id=r-1 model=scale")
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(failed))["exception"]


def test_configure_replaces_its_own_handler_only() -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    others = [h for h in saved if h.get_name() != "wasinfer"]  # pytest's, say
    stream = io.StringIO()
    try:
        configure("json", "warning", stream=stream)
        configure("json", "info", stream=stream)
        ours = [h for h in root.handlers if h.get_name() == "wasinfer"]
        assert len(ours) == 1 and all(h in root.handlers for h in others)
        logging.getLogger("wasinfer.test").info("hello", extra={"request_id": "abc"})
        assert json.loads(stream.getvalue())["request_id"] == "abc"
        with pytest.raises(ValueError, match="unknown log format"):
            configure("xml")
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def test_request_ids() -> None:
    first, second = new_request_id(), new_request_id()
    assert first != second and first.rsplit("-", 1)[0] == second.rsplit("-", 1)[0]
    assert accept_request_id("abc-123") == "abc-123" and accept_request_id(b"abc") == "abc"
    for unsafe in ("two\nlines", "x" * 129, "caf\u00e9", "", None, b"\xff"):
        assert accept_request_id(unsafe) is None, unsafe
