"""Bearer tokens: which endpoints each token guards, over plain HTTP, tritonclient HTTP and gRPC.

Health, /metrics and the OpenAPI document stay open whatever is set; a token that is not set
leaves its endpoints open; missing and wrong tokens are both 401 / UNAUTHENTICATED.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.serving.conftest import start_server
from wasinfer.cli.main import main
from wasinfer.serving import Server
from wasinfer.serving.auth import Tokens, check_bearer, read_token
from wasinfer.serving.errors import Unauthorized

INFERENCE = "inference-token-0123"
MANAGEMENT = "management-token-4567"
BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def guarded(repository: Path) -> Iterator[Server]:
    """Both tokens set. Tests load models on it but unload none (the state they leave is harmless)."""
    running = start_server(repository, inference_token=INFERENCE, management_token=MANAGEMENT)
    try:
        yield running
    finally:
        running.stop(grace=2)


def _http(server: Server) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=20)


def test_open_endpoints_need_no_token(guarded: Server) -> None:
    with _http(guarded) as http:
        for path in ("/v2/health/live", "/v2/health/ready", "/metrics", "/v2/openapi.json"):
            assert http.get(path).status_code == 200, path


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v2"), ("GET", "/v2/models/scale"), ("GET", "/v2/models/scale/versions/1"),
    ("GET", "/v2/models/scale/ready"), ("POST", "/v2/models/scale/infer"),
    ("POST", "/v2/models/scale/versions/2/infer")])
def test_inference_endpoints_need_the_inference_token(guarded: Server, method: str, path: str) -> None:
    body = BODY if method == "POST" else None
    with _http(guarded) as http:
        missing = http.request(method, path, json=body)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="wasinfer"'
        assert "requires a bearer token for its inference endpoints" in missing.json()["error"]
        assert "Authorization: Bearer" in missing.json()["error"]
        for wrong in (bearer(MANAGEMENT), bearer(INFERENCE + "x"), {"Authorization": f"Basic {INFERENCE}"}):
            refused = http.request(method, path, json=body, headers=wrong)
            assert refused.status_code == 401, wrong
            assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        allowed = http.request(method, path, json=body, headers={"Authorization": f"bearer {INFERENCE}"})
        assert allowed.status_code == 200, allowed.text  # the scheme is case-insensitive (RFC 7235)


@pytest.mark.parametrize("path", ["/v2/repository/index", "/v2/repository/models/scale/load",
                                  "/v2/repository/models/nosuch/unload"])
def test_repository_endpoints_need_the_management_token(guarded: Server, path: str) -> None:
    with _http(guarded) as http:
        missing = http.post(path)
        assert missing.status_code == 401 and "for its management endpoints" in missing.json()["error"]
        wrong = http.post(path, headers=bearer(INFERENCE))
        assert wrong.status_code == 401 and "not valid for management endpoints" in wrong.json()["error"]
        allowed = http.post(path, headers=bearer(MANAGEMENT))
        assert allowed.status_code == (404 if "nosuch" in path else 200), allowed.text


def test_refused_inferences_are_counted(guarded: Server) -> None:
    with _http(guarded) as http:
        before = http.get("/metrics").text
        assert http.post("/v2/models/scale/infer", json=BODY).status_code == 401
        after = http.get("/metrics").text
    series = 'wasinfer_requests_total{model="",outcome="unauthorized",protocol="rest",version=""}'

    def count(text: str) -> float:
        return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(series)), 0.0)

    assert count(after) == count(before) + 1


def test_openapi_document_declares_the_tokens_in_force(guarded: Server, repository: Path) -> None:
    with _http(guarded) as http:
        document = http.get("/v2/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["inferenceToken"] == {"type": "http", "scheme": "bearer", "description": schemes[
        "inferenceToken"]["description"]} and "managementToken" in schemes
    paths = document["paths"]
    assert paths["/v2/models/{model}/infer"]["post"]["security"] == [{"inferenceToken": []}]
    assert "401" in paths["/v2/models/{model}/infer"]["post"]["responses"]
    assert paths["/v2/repository/index"]["post"]["security"] == [{"managementToken": []}]
    assert "security" not in paths["/v2/health/ready"]["get"] and "security" not in paths["/metrics"]["get"]
    # A server with no tokens declares none.
    plain = start_server(repository)
    try:
        with _http(plain) as http:
            document = http.get("/v2/openapi.json").json()
        assert "securitySchemes" not in document["components"]
        assert "401" not in document["paths"]["/v2/models/{model}/infer"]["post"]["responses"]
    finally:
        plain.stop(grace=2)


def test_management_token_alone_leaves_inference_open(repository: Path) -> None:
    running = start_server(repository, management_token=MANAGEMENT)
    try:
        with _http(running) as http:
            assert http.post("/v2/models/scale/infer", json=BODY).status_code == 200
            assert http.get("/v2/models/scale").status_code == 200
            assert http.post("/v2/repository/index").status_code == 401
    finally:
        running.stop(grace=2)


def test_tritonclient_http_with_and_without_tokens(guarded: Server) -> None:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{guarded.http_port}", network_timeout=20.0)
    try:
        assert client.is_server_live() and client.is_server_ready()  # health: no token
        x = httpclient.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(np.ones((1, 4), np.float32))
        with pytest.raises(InferenceServerException, match="requires a bearer token") as error:
            client.infer("scale", [x])
        assert error.value.status() == "401"
        with pytest.raises(InferenceServerException, match="not valid for inference"):
            client.infer("scale", [x], headers=bearer(MANAGEMENT))
        result = client.infer("scale", [x], model_version="1", headers=bearer(INFERENCE))
        np.testing.assert_array_equal(result.as_numpy("y"), [[1, 2, 3, 4]])
        assert client.get_model_metadata("scale", headers=bearer(INFERENCE))["name"] == "scale"
        with pytest.raises(InferenceServerException, match="bearer token for its management endpoints"):
            client.get_model_repository_index()
        with pytest.raises(InferenceServerException, match="bearer token for its management endpoints"):
            client.load_model("scale")
        client.load_model("scale", headers=bearer(MANAGEMENT))
        names = [row["name"] for row in client.get_model_repository_index(headers=bearer(MANAGEMENT))]
        assert "scale" in names
    finally:
        client.close()


def test_tritonclient_grpc_with_and_without_tokens(guarded: Server) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{guarded.grpc_port}")
    try:
        assert client.is_server_live() and client.is_server_ready()  # health: no token
        x = grpcclient.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(np.ones((1, 4), np.float32))
        for headers, said in ((None, "requires a bearer token"),
                              ({"authorization": f"Bearer {MANAGEMENT}"}, "not valid for inference endpoints")):
            with pytest.raises(InferenceServerException) as error:
                client.infer("scale", [x], headers=headers)
            assert error.value.status() == "StatusCode.UNAUTHENTICATED"
            assert said in str(error.value.message())
        with pytest.raises(InferenceServerException) as error:
            client.get_model_metadata("scale")
        assert error.value.status() == "StatusCode.UNAUTHENTICATED"
        assert "requires a bearer token" in str(error.value.message())
        token = {"authorization": f"Bearer {INFERENCE}"}
        result = client.infer("scale", [x], model_version="2", headers=token)
        np.testing.assert_array_equal(result.as_numpy("y"), [[10, 20, 30, 40]])
        assert client.is_model_ready("scale", "2", headers=token)
        for call in (lambda: client.get_model_repository_index(), lambda: client.unload_model("nosuch"),
                     lambda: client.get_model_repository_index(headers=token)):
            with pytest.raises(InferenceServerException) as error:
                call()
            assert error.value.status() == "StatusCode.UNAUTHENTICATED"
        management = {"authorization": f"Bearer {MANAGEMENT}"}
        client.load_model("pair", headers=management)
        ready = client.get_model_repository_index(headers=management, as_json=True)["models"]
        assert ("pair", "READY") in [(m["name"], m["state"]) for m in ready]
    finally:
        client.close()


def test_check_bearer() -> None:
    check_bearer(b"abc", b"Bearer abc", "inference")
    check_bearer(b"abc", b"  BEARER   abc ", "inference")
    for value, invalid in ((None, False), (b"Bearer", True), (b"Bearer abcd", True), (b"Token abc", True)):
        with pytest.raises(Unauthorized) as error:
            check_bearer(b"abc", value, "inference")
        assert error.value.invalid is invalid and error.value.http_status == 401


def test_tokens_from_files_and_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    env = {"WASINFER_INFERENCE_TOKEN": "from-env"}
    assert read_token(token_file, "WASINFER_INFERENCE_TOKEN", env) == "from-file"  # the file wins
    assert read_token(None, "WASINFER_INFERENCE_TOKEN", env) == "from-env"
    assert read_token(None, "WASINFER_INFERENCE_TOKEN", {}) is None
    assert read_token(None, "WASINFER_INFERENCE_TOKEN", {"WASINFER_INFERENCE_TOKEN": " "}) is None
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        read_token(tmp_path / "empty", "X", {})
    with pytest.raises(ValueError, match="cannot read"):
        read_token(tmp_path / "absent", "X", {})
    with pytest.raises(ValueError, match="without spaces"):
        Tokens.of("two words", None)
    assert Tokens.of(None, "m") == Tokens(None, b"m")


def test_cli_refuses_unusable_token_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").write_text("")
    for flag, path in (("--inference-token-file", tmp_path / "absent"), ("--management-token-file",
                                                                          tmp_path / "empty")):
        assert main(["serve", "--model-repository", str(tmp_path), "--http-port", "0", "--grpc-port", "-1", flag,
                     str(path)]) == 2
        assert str(path) in capsys.readouterr().err
