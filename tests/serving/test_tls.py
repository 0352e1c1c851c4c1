"""TLS from certificate files: REST over https and gRPC over TLS on the same certificate.

The certificate is self-signed for 127.0.0.1 and localhost, made by `openssl req` at test time
(the `cryptography` package is not a dependency); without openssl these tests are skipped.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.serving.conftest import start_server
from wasinfer.cli.main import main
from wasinfer.serving import Server
from wasinfer.serving.auth import check_tls_files
from wasinfer.serving.grpc_api import SERVICE

BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def make_certificate(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed EC certificate for 127.0.0.1 and localhost, and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: no certificate to test TLS with")
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_server(repository: Path, certificate: tuple[Path, Path]) -> Iterator[Server]:
    cert, key = certificate
    running = start_server(repository, tls_cert=cert, tls_key=key)
    try:
        yield running
    finally:
        running.stop(grace=2)


def test_rest_over_https(tls_server: Server, certificate: tuple[Path, Path]) -> None:
    cert, _ = certificate
    trust = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(base_url=f"https://127.0.0.1:{tls_server.http_port}", verify=trust, timeout=20) as http:
        assert http.get("/v2/health/ready").status_code == 200
        response = http.post("/v2/models/scale/versions/1/infer", json=BODY)
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [1, 4, 9, 16]
    with httpx.Client(base_url=f"https://localhost:{tls_server.http_port}", verify=trust, timeout=20) as http:
        assert http.get("/v2/health/live").status_code == 200


def test_plain_http_to_the_tls_port_fails(tls_server: Server, certificate: tuple[Path, Path]) -> None:
    with httpx.Client(timeout=10) as http, pytest.raises(httpx.TransportError):
        http.get(f"http://127.0.0.1:{tls_server.http_port}/v2/health/ready")
    # An https client that does not trust the certificate refuses it.
    with httpx.Client(timeout=10) as http, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        http.get(f"https://127.0.0.1:{tls_server.http_port}/v2/health/ready")


def test_grpc_over_tls(tls_server: Server, certificate: tuple[Path, Path]) -> None:
    cert, _ = certificate
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{tls_server.grpc_port}", ssl=True,
                                              root_certificates=str(cert))
    try:
        assert client.is_server_live()
        x = grpcclient.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(np.ones((1, 4), np.float32))
        np.testing.assert_array_equal(client.infer("scale", [x], model_version="2").as_numpy("y"),
                                      [[10, 20, 30, 40]])
    finally:
        client.close()
    plain = grpcclient.InferenceServerClient(f"127.0.0.1:{tls_server.grpc_port}")
    try:
        with pytest.raises(InferenceServerException) as error:
            plain.is_server_live(client_timeout=10)
        assert error.value.status() == "StatusCode.UNAVAILABLE"
    finally:
        plain.close()
    with grpc.secure_channel(f"127.0.0.1:{tls_server.grpc_port}", grpc.ssl_channel_credentials()) as channel:
        live = channel.unary_unary(f"/{SERVICE}/ServerLive", request_serializer=bytes, response_deserializer=bytes)
        with pytest.raises(grpc.RpcError) as failed:  # a client that does not trust the certificate
            live(b"", timeout=10)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_unusable_certificate_files_are_refused(tmp_path: Path, certificate: tuple[Path, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    cert, key = certificate
    _, other_key = make_certificate(tmp_path, "other")
    with pytest.raises(ValueError, match="cannot use the TLS certificate"):
        check_tls_files(cert, other_key)
    with pytest.raises(ValueError, match="does not exist"):
        check_tls_files(tmp_path / "absent.crt", key)
    base = ["serve", "--model-repository", str(tmp_path), "--http-port", "0", "--grpc-port", "-1"]
    assert main([*base, "--tls-cert", str(cert)]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err
    assert main([*base, "--tls-cert", str(cert), "--tls-key", str(other_key)]) == 2
    assert "cannot use the TLS certificate" in capsys.readouterr().err
