"""A real OCI registry on loopback for tests: Debian's `docker-registry` (Docker Distribution 2.8).

Each registry gets a config file and a storage root in a temp directory and a free port on
127.0.0.1; the fixture waits (bounded) until /v2/ answers and stops the process (bounded) at
the end. Auth variants, each the registry's own implementation:

- `htpasswd`: Distribution accepts only bcrypt entries. The hash comes from the `bcrypt`
  package when installed, else from Python's `crypt` module (3.11/3.12 with a libc/libxcrypt
  that does `$2b$`, which Debian's does), else from `htpasswd -B` (apache2-utils); the test
  skips, saying so, when none is available. Cost 4 keeps each request's check cheap.
- `token`: the registry trusts a certificate made here with `openssl`; a small token server
  (http.server, loopback) checks basic credentials (GET) or an identity token (POST, the OAuth2
  refresh-token grant Docker uses for `<token>` logins) and issues RS256 JWTs, signed with
  `openssl dgst`, whose `kid` is the libtrust fingerprint of that key, as Distribution expects.

The config is written as JSON, which the registry's YAML parser reads, so no YAML library is needed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.processes import stop

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
SKIP_REASON = "needs Debian's docker-registry package (/usr/bin/docker-registry); .ci/run installs it"
SERVICE = "wasinfer-test-registry"
ISSUER = "wasinfer-test-issuer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bcrypt_entry(username: str, password: str) -> str | None:
    """An htpasswd line with a bcrypt hash (cost 4), or None when nothing here can make one."""
    try:
        import bcrypt

        hashed: str = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        return f"{username}:{hashed}"
    except ImportError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # removed in Python 3.13

            hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
        if hashed and hashed.startswith("$2"):
            return f"{username}:{hashed}"
    except (ImportError, AttributeError, OSError):
        pass
    htpasswd = shutil.which("htpasswd")
    if htpasswd:
        done = subprocess.run([htpasswd, "-nbB", "-C", "4", username, password], capture_output=True, text=True,
                              timeout=30, check=False)
        if done.returncode == 0 and ":$2" in done.stdout:
            return done.stdout.strip()
    return None


@dataclass
class Registry:
    """A running docker-registry: its address (`127.0.0.1:port`), storage root and log file."""

    address: str
    root: Path
    log: Path

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes."""
        algorithm, hexdigest = digest.split(":")
        return self.root / "docker/registry/v2/blobs" / algorithm / hexdigest[:2] / hexdigest / "data"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def served(self, method: str, path_part: str) -> int:
        """How many requests the access log shows for `method` on a path containing `path_part`.

        The log line is written after the response, so a GET of /v2/?<marker> is sent and awaited
        in the log (bounded) first: every earlier request's line is there by then.
        """
        marker = uuid.uuid4().hex
        httpx.get(f"http://{self.address}/v2/?{marker}", timeout=5.0)
        for _ in range(200):
            text = self.log_text()
            if marker in text:
                break
            time.sleep(0.02)
        else:
            raise RuntimeError(f"the registry never logged the marker request:\n{text}")
        return sum(1 for line in text.splitlines() if f'"{method} ' in line and path_part in line)


@contextmanager
def run_registry(directory: Path, auth: dict[str, Any] | None = None, delete: bool = True,
                 port: int | None = None) -> Iterator[Registry]:
    """Start docker-registry with its files under `directory`; stop it when the block ends.

    The same `directory` and `port` again bring back the same registry, as after an outage."""
    if not REGISTRY_BINARY.exists():
        pytest.skip(SKIP_REASON)
    directory.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{port or free_port()}"
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text"},
        "storage": {"filesystem": {"rootdirectory": str(directory / "storage")}, "delete": {"enabled": delete},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": address, "secret": uuid.uuid4().hex},
    }
    if auth:
        config["auth"] = auth
    (directory / "config.yml").write_text(json.dumps(config, indent=1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}  # they override the file
    log = directory / "registry.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen([str(REGISTRY_BINARY), "serve", str(directory / "config.yml")],
                                   stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        for _ in range(400):  # up to ~20 s
            if process.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"http://{address}/v2/", timeout=1.0).status_code in (200, 401):
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError(f"docker-registry did not answer on {address}:\n{log.read_text()}")
        yield Registry(address, directory / "storage", log)
    finally:
        stop(process, grace=10)


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(spki_der: bytes) -> str:
    """Distribution's key id: base32 of SHA-256(SubjectPublicKeyInfo)[:30], in groups of 4 joined by ':'."""
    text = base64.b32encode(hashlib.sha256(spki_der).digest()[:30]).decode().rstrip("=")
    return ":".join(text[i:i + 4] for i in range(0, len(text), 4))


@dataclass
class TokenServer:
    """Issues JWTs for Distribution's token auth; `requests` records each (user, scopes) asked for."""

    directory: Path
    users: dict[str, str]
    realm: str = ""
    requests: list[tuple[str | None, list[str]]] = field(default_factory=list)
    identity_tokens: dict[str, str] = field(default_factory=dict)  # OAuth2 refresh token → user
    grants: list[str] = field(default_factory=list)  # the grant_type of each POST (OAuth2) token request

    def __post_init__(self) -> None:
        self.key = self.directory / "token.key"
        self.cert = self.directory / "token.crt"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key), "-out", str(self.cert),
                 "-days", "2", "-subj", "/CN=wasinfer-test-token")
        self.kid = libtrust_key_id(_openssl("pkey", "-in", str(self.key), "-pubout", "-outform", "DER"))

    def sign(self, subject: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + 600, "nbf": now - 60, "iat": now,
                  "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = _openssl("dgst", "-sha256", "-sign", str(self.key), stdin=signing_input.encode())
        return f"{signing_input}.{_b64url(signature)}"

    def auth_config(self) -> dict[str, Any]:
        return {"token": {"realm": self.realm, "service": SERVICE, "issuer": ISSUER,
                          "rootcertbundle": str(self.cert)}}


@contextmanager
def run_paginating_proxy(upstream: str) -> Iterator[tuple[str, list[str]]]:
    """A loopback front for a registry that pages `GET /v2/<name>/tags/list?n=&last=` as the spec says.

    Docker Distribution 2.8 ignores `n` on tag lists (it pages only the catalog), so the client's
    Link-following is checked through this: it takes the real registry's full list, sorts it,
    and returns one page with a `Link: <…>; rel="next"` header. Yields its address and the
    request paths it served.
    """
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            url = urlparse(self.path)
            query = parse_qs(url.query)
            response = httpx.get(f"http://{upstream}{url.path}", timeout=10.0)
            body, headers = response.content, {"Content-Type": response.headers.get("Content-Type", "")}
            if url.path.endswith("/tags/list") and response.status_code == 200 and "n" in query:
                document = response.json()
                tags = sorted(document["tags"])
                if "last" in query:
                    tags = [t for t in tags if t > query["last"][0]]
                n = int(query["n"][0])
                if len(tags) > n:
                    headers["Link"] = f'<{url.path}?n={n}&last={tags[n - 1]}>; rel="next"'
                body = json.dumps({"name": document["name"], "tags": tags[:n]}).encode()
            self.send_response(response.status_code)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with _serving(Handler) as address:
        yield address, seen


@contextmanager
def run_token_server(directory: Path, users: dict[str, str]) -> Iterator[TokenServer]:
    """A token server on loopback; users (name → password) must authenticate, anonymous gets no access."""
    directory.mkdir(parents=True, exist_ok=True)
    tokens = TokenServer(directory, users)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query)
            scopes = query.get("scope", [])
            user: str | None = None
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                if tokens.users.get(name) != password:
                    tokens.requests.append((name, scopes))
                    self._answer(401, {"details": "wrong username or password"})
                    return
                user = name
            tokens.requests.append((user, scopes))
            if query.get("service") != [SERVICE]:
                self._answer(400, {"details": f"unknown service {query.get('service')}"})
                return
            # Anonymous callers get a token with no access, as Docker Hub-like servers do.
            token = tokens.sign(user or "", scopes if user is not None else [])
            self._answer(200, {"token": token, "access_token": token, "expires_in": 600})

        def do_POST(self) -> None:
            form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
            grant = form.get("grant_type", [""])[0]
            tokens.grants.append(grant)
            scopes = form.get("scope", [""])[0].split()
            user = tokens.identity_tokens.get(form.get("refresh_token", [""])[0])
            tokens.requests.append((user, scopes))
            if grant != "refresh_token" or user is None:
                self._answer(401, {"error": "invalid_grant"})
                return
            if form.get("service") != [SERVICE]:
                self._answer(400, {"error": f"unknown service {form.get('service')}"})
                return
            self._answer(200, {"access_token": tokens.sign(user, scopes), "expires_in": 600})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tokens.realm = f"http://127.0.0.1:{server.server_address[1]}/token"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield tokens
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def run_referrers_proxy(upstream: str) -> Iterator[tuple[str, list[str]]]:
    """A loopback front for a registry that adds the OCI 1.1 referrers API it lacks (as registries that have it
    answer): a manifest put with a `subject` gets the `OCI-Subject` header back and is recorded, and
    `GET /v2/<name>/referrers/<digest>` answers an image index of the recorded referrers (filtered by
    `artifactType`, saying so in OCI-Filters-Applied). Every other request goes through unchanged. Yields its
    address and the "METHOD path" of each request it served."""
    seen: list[str] = []
    referrers: dict[tuple[str, str], list[dict[str, Any]]] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _forward(self, method: str) -> None:
            seen.append(f"{method} {self.path}")
            url = urlparse(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method in ("PUT", "POST",
                                                                                            "PATCH") else b""
            parts = url.path.split("/")
            if method == "GET" and len(parts) > 4 and parts[-2] == "referrers":
                name, digest = "/".join(parts[2:-2]), parts[-1]
                wanted = parse_qs(url.query).get("artifactType", [None])[0]
                found = [d for d in referrers.get((name, digest), []) if wanted is None or d["artifactType"] == wanted]
                index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                    "manifests": found}).encode()
                extra = {"Content-Type": "application/vnd.oci.image.index.v1+json",
                         **({"OCI-Filters-Applied": "artifactType"} if wanted else {})}
                self._answer(200, extra, index)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            response = httpx.request(method, f"http://{upstream}{self.path}", headers=headers, content=body,
                                     timeout=10.0)
            out = {k: v for k, v in response.headers.items()
                   if k.lower() in ("content-type", "docker-content-digest", "location", "range", "www-authenticate")}
            if method == "PUT" and "/manifests/" in url.path and response.status_code == 201:
                document = json.loads(body)
                if isinstance(document.get("subject"), dict):
                    name = "/".join(parts[2:parts.index("manifests")])
                    subject = document["subject"]["digest"]
                    referrers.setdefault((name, subject), []).append({
                        "mediaType": document["mediaType"], "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
                        "size": len(body), "artifactType": document.get("artifactType")})
                    out["OCI-Subject"] = subject
            self._answer(response.status_code, out, b"" if method == "HEAD" else response.content,
                         len(response.content) if method == "HEAD" else None)

        def _answer(self, status: int, headers: dict[str, str], body: bytes, length: int | None = None) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._forward("GET")

        def do_HEAD(self) -> None:
            self._forward("HEAD")

        def do_PUT(self) -> None:
            self._forward("PUT")

        def do_POST(self) -> None:
            self._forward("POST")

        def do_PATCH(self) -> None:
            self._forward("PATCH")

    with _serving(Handler) as address:
        yield address, seen


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` answering on 127.0.0.1 from a thread of its own, at the address the block gets; stopped on leaving."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
