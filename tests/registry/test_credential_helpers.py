"""Docker credential helpers (`credsStore`, `credHelpers`) against real registries on loopback.

The helper is a real executable on PATH that the test writes: a small Python script speaking Docker's
helper protocol (`docker-credential-NAME get`, the registry host on stdin, `{"Username", "Secret"}` on
stdout, "credentials not found" and exit 1 when it has none). It logs each host it is asked about.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.registry.registry_server import Registry, TokenServer, run_registry, run_token_server
from tests.serving.conftest import scale_model
from wasinfer.artifact import convert_onnx
from wasinfer.cli.main import main
from wasinfer.registry.credentials import IDENTITY_TOKEN_USERNAME, PASSWORD_ENV, USERNAME_ENV, load_credentials
from wasinfer.registry.oci import OciClient, RegistryError

HELPER = '''#!{python}
"""docker-credential-{name}: answers `get` from {store} (host -> [Username, Secret]); logs each host asked."""
import json, sys
from pathlib import Path
if sys.argv[1:] != ["get"]:
    sys.exit("unsupported: " + " ".join(sys.argv[1:]))
host = sys.stdin.read().strip()
with open({log!r}, "a") as log:
    log.write(host + "\\n")
known = json.loads(Path({store!r}).read_text())
if host not in known:
    print("credentials not found in native keychain")
    sys.exit(1)
user, secret = known[host]
print(json.dumps({{"ServerURL": host, "Username": user, "Secret": secret}}))
'''

BROKEN = '''#!/bin/sh
echo "the keychain is locked (run: unlock-keychain)" >&2
exit 3
'''


@pytest.fixture
def helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bin directory on PATH with docker-credential-wasitest (answers from store.json) and -broken; returns it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    store, log = bin_dir / "store.json", bin_dir / "asked.log"
    store.write_text("{}")
    helper = bin_dir / "docker-credential-wasitest"
    helper.write_text(HELPER.format(python=sys.executable, name="wasitest", store=str(store), log=str(log)))
    (bin_dir / "docker-credential-broken").write_text(BROKEN)
    for path in bin_dir.glob("docker-credential-*"):
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("WASINFER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WASINFER_TRUST_MODE", "off")
    for name in (USERNAME_ENV, PASSWORD_ENV, "WASINFER_SIGNING_KEY", "WASINFER_TRUST_KEYS", "WASINFER_TRUST_CA"):
        monkeypatch.delenv(name, raising=False)
    return bin_dir


def docker_config(tmp_path: Path, config: dict[str, object]) -> None:
    (tmp_path / "docker").mkdir(exist_ok=True)
    (tmp_path / "docker" / "config.json").write_text(json.dumps(config))


def helper_knows(bin_dir: Path, host: str, username: str, secret: str) -> None:
    (bin_dir / "store.json").write_text(json.dumps({host: [username, secret]}))


@pytest.fixture
def module(tmp_path: Path) -> Path:
    path = tmp_path / "scale.wasm"
    path.write_bytes(convert_onnx(scale_model(np.full(4, 1.0, np.float32)), max_batch=2, name="scale").wasm)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_creds_store_and_cred_helpers_log_in_to_a_basic_auth_registry(
        helpers: Path, basic_registry: Registry, module: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    host = basic_registry.address
    ref = f"{host}/team/scale"
    # No helper configured and no auths entry: anonymous, refused by the registry.
    docker_config(tmp_path, {"auths": {}})
    code, _, err = run(capsys, "push", str(module), f"{ref}:1.0.0", "--plain-http")
    assert code == 2 and "requires credentials" in err

    # credsStore: the helper answers for every registry; the push and pull log in with what it gives.
    helper_knows(helpers, host, "alice", "s3cret")
    docker_config(tmp_path, {"auths": {host: {}}, "credsStore": "wasitest"})  # Docker's empty placeholder
    code, _, err = run(capsys, "push", str(module), f"{ref}:1.0.0", "--plain-http")
    assert code == 0, err
    code, _, err = run(capsys, "pull", f"{ref}:1.0.0", "--plain-http", "-o", str(tmp_path / "pulled.wasm"))
    assert code == 0 and (tmp_path / "pulled.wasm").read_bytes() == module.read_bytes(), err
    assert (helpers / "asked.log").read_text().split() == [host, host]  # the host, as Docker passes it

    # credHelpers names the helper for this host and wins over credsStore (here a broken one).
    docker_config(tmp_path, {"credsStore": "broken", "credHelpers": {host: "wasitest"}})
    assert load_credentials(host, None, None) == ("alice", "s3cret")
    # A helper that fails is an error naming it and what it said, never a silent anonymous pull.
    docker_config(tmp_path, {"credsStore": "wasitest", "credHelpers": {host: "broken"}})
    code, _, err = run(capsys, "pull", f"{ref}:1.0.0", "--plain-http", "-o", str(tmp_path / "again.wasm"))
    with capsys.disabled():
        print("broken helper:", err.strip())
    assert code == 2 and "docker-credential-broken" in err and "exit code 3" in err and "keychain is locked" in err
    docker_config(tmp_path, {"credsStore": "absent"})
    code, _, err = run(capsys, "pull", f"{ref}:1.0.0", "--plain-http", "-o", str(tmp_path / "again.wasm"))
    assert code == 2 and "docker-credential-absent" in err and "not on PATH" in err
    assert not (tmp_path / "again.wasm").exists()
    # A wrong secret from the helper is the registry's refusal, naming the user.
    helper_knows(helpers, host, "alice", "wrong")
    docker_config(tmp_path, {"credsStore": "wasitest"})
    code, _, err = run(capsys, "pull", f"{ref}:1.0.0", "--plain-http", "-o", str(tmp_path / "again.wasm"))
    assert code == 2 and "refused the credentials of user 'alice'" in err
    # Flags and the environment still come first: the helper is not asked.
    asked = (helpers / "asked.log").read_text()
    assert load_credentials(host, "bob", "pw") == ("bob", "pw")
    assert (helpers / "asked.log").read_text() == asked


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[tuple[Registry, TokenServer]]:
    with run_token_server(tmp_path / "tokens", {"bob": "hunter2"}) as tokens, \
            run_registry(tmp_path / "registry", tokens.auth_config()) as running:
        tokens.identity_tokens["refresh-123"] = "bob"
        yield running, tokens


def test_a_token_username_is_an_identity_token_traded_at_the_token_server(
        helpers: Path, token_registry: tuple[Registry, TokenServer], module: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    registry, tokens = token_registry
    helper_knows(helpers, registry.address, IDENTITY_TOKEN_USERNAME, "refresh-123")
    docker_config(tmp_path, {"credHelpers": {registry.address: "wasitest"}})
    ref = f"{registry.address}/team/scale"
    code, _, err = run(capsys, "push", str(module), f"{ref}:1.0.0", "--plain-http")
    assert code == 0, err
    code, _, err = run(capsys, "pull", f"{ref}:1.0.0", "--plain-http", "-o", str(tmp_path / "pulled.wasm"))
    assert code == 0 and (tmp_path / "pulled.wasm").read_bytes() == module.read_bytes(), err
    assert tokens.grants and set(tokens.grants) == {"refresh_token"}  # OAuth2, never the token as a password
    assert {user for user, _ in tokens.requests} == {"bob"}

    helper_knows(helpers, registry.address, IDENTITY_TOKEN_USERNAME, "expired")
    with OciClient(registry.address, plain_http=True, username=IDENTITY_TOKEN_USERNAME, password="expired") as client, \
            pytest.raises(RegistryError, match="refused an identity token"):
        client.tags("team/scale")
