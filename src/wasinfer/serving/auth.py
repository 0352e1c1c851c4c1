"""Bearer tokens for the server's two planes, and the TLS files both front ends share.

Two tokens, each optional and independent, as Triton splits its restricted APIs:

- the *inference* token guards the data plane: server metadata, model metadata and readiness,
  inference (REST `/v2`, `/v2/models/...`; gRPC ServerMetadata, ModelMetadata, ModelReady,
  ModelInfer);
- the *management* token guards the repository extension: index, load, unload.

Health (`/v2/health/live|ready`, gRPC ServerLive/ServerReady), `/metrics` and
`/v2/openapi.json` stay open whatever is set: orchestrator probes and Prometheus scrapers carry
no credentials, and none of them runs a model or changes state. A token that is not set leaves
its plane open, so setting only the management token locks the repository API and nothing else.

A missing token and a wrong one are both 401 / UNAUTHENTICATED (RFC 6750's `invalid_token` for
a wrong one), compared with hmac.compare_digest so the time taken says nothing about the token.
Tokens come from files or the environment, never from the command line, where `ps` shows them.
"""

from __future__ import annotations

import hmac
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from wasinfer.serving.errors import Unauthorized

INFERENCE_TOKEN_ENV = "WASINFER_INFERENCE_TOKEN"
MANAGEMENT_TOKEN_ENV = "WASINFER_MANAGEMENT_TOKEN"


@dataclass(frozen=True)
class Tokens:
    """The tokens in force, as bytes (what the REST headers and the comparison use); None: that plane is open."""

    inference: bytes | None = None
    management: bytes | None = None

    @classmethod
    def of(cls, inference: str | None, management: str | None) -> Tokens:
        return cls(_token(inference, "inference"), _token(management, "management"))


def _token(value: str | None, plane: str) -> bytes | None:
    if value is None:
        return None
    if not value or not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        # gRPC metadata and HTTP headers carry printable ASCII only; a space would split "Bearer <token>".
        raise ValueError(f"the {plane} token must be printable ASCII without spaces, and not empty")
    return value.encode()


def read_token(path: str | Path | None, env: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The token in `path` (surrounding whitespace, e.g. the file's final newline, dropped) when a file is
    given, else the environment variable `env` when it is set and not empty, else None (no token)."""
    if path is not None:
        try:
            text = Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the token file {path}: {exc}") from None
        token = text.strip()
        if not token:
            raise ValueError(f"the token file {path} is empty")
        return token
    value = (os.environ if environ is None else environ).get(env, "").strip()
    return value or None


def check_bearer(expected: bytes, authorization: bytes | None, plane: str) -> None:
    """Refuse the request unless its Authorization value is `Bearer <expected>` (the scheme in any case)."""
    if authorization is None:
        raise Unauthorized(f"this server requires a bearer token for its {plane} endpoints: send "
                           "'Authorization: Bearer <token>'")
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        raise Unauthorized(f"the Authorization header must use the Bearer scheme ('Authorization: Bearer <token>'), "
                           f"not {scheme.decode('latin-1')!r}", invalid=True)
    if not hmac.compare_digest(token.strip(), expected):
        raise Unauthorized(f"the bearer token is not valid for {plane} endpoints", invalid=True)


def challenge(exc: Unauthorized) -> bytes:
    """The WWW-Authenticate value of a 401 (RFC 6750 section 3)."""
    return b'Bearer realm="wasinfer", error="invalid_token"' if exc.invalid else b'Bearer realm="wasinfer"'


def check_tls_files(cert: str | Path, key: str | Path) -> None:
    """Fail at start-up, with the file named, when the certificate chain or its key cannot be used.

    uvicorn would load them only on its own thread, where a bad file ends the thread with a
    traceback; grpcio would refuse them with no reason at all.
    """
    for path, what in ((cert, "certificate"), (key, "key")):
        if not Path(path).is_file():
            raise ValueError(f"the TLS {what} file {path} does not exist")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"cannot use the TLS certificate {cert} with the key {key}: {exc}") from None
