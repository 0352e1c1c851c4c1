"""Where registry credentials come from: flags, then the environment, then Docker's config.json.

The order is the one users expect from docker/oras: an explicit flag wins, CI sets the
environment, and a developer who already ran `docker login` needs to do nothing more.

config.json is read as Docker reads it, so cloud registry logins carry over:

- `credHelpers: {host: NAME}` names the helper for one registry, else `credsStore: NAME` the one
  for all. A helper is the program `docker-credential-NAME` on PATH, run as `... get` with the
  registry host on stdin; it prints `{"Username": ..., "Secret": ...}`. Its "credentials not
  found" answer means anonymous access, as in Docker; any other failure (not on PATH, a non-zero
  exit, no JSON, no answer within HELPER_TIMEOUT_S) is an error naming the helper, never a silent
  fallback to anonymous. Where a helper is configured, `auths` is not read for that registry
  (Docker keeps only empty placeholders there).
- else `auths: {host: {auth: base64(user:password)}}` (or `username`/`password`).

A username of `<token>` (IDENTITY_TOKEN_USERNAME) means the secret is an identity token (an OAuth2
refresh token, as Azure's and others' logins store): the registry client trades it for access
tokens at the token server instead of sending it as a password.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

USERNAME_ENV = "WASINFER_REGISTRY_USERNAME"
PASSWORD_ENV = "WASINFER_REGISTRY_PASSWORD"
IDENTITY_TOKEN_USERNAME = "<token>"
HELPER_TIMEOUT_S = 30.0
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_NOT_FOUND = "credentials not found"  # docker-credential-helpers' errCredentialsNotFound message


def docker_config_path() -> Path:
    """$DOCKER_CONFIG/config.json, else ~/.docker/config.json (Docker's own rule)."""
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _host(key: str) -> str:
    """`https://host:5000/v1/` and `host:5000` name the same registry in `auths`."""
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme):]
    return key.split("/", 1)[0].lower()


def credential_helper(helper: str, registry: str, config: Path) -> tuple[str | None, str | None]:
    """Ask `docker-credential-<helper>` for `registry`'s credentials (Docker's helper protocol); (None, None)
    when it has none. Any other failure raises ValueError naming the helper and the config that chose it."""
    program = f"docker-credential-{helper}"
    where = f"{program} (the credential helper {config} names for {registry})"
    if not _HELPER_NAME.fullmatch(helper):
        raise ValueError(f"{config}: {helper!r} is not a credential helper name")
    executable = shutil.which(program)
    if executable is None:
        raise ValueError(f"{where} is not on PATH")
    try:
        done = subprocess.run([executable, "get"], input=registry, capture_output=True, text=True,
                              timeout=HELPER_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ValueError(f"{where} did not answer within {HELPER_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise ValueError(f"{where} could not be run: {exc.strerror or exc}") from None
    if done.returncode != 0:
        said = (done.stdout.strip() or done.stderr.strip())[:300]
        if _NOT_FOUND in said.lower():
            return None, None
        raise ValueError(f"{where} failed with exit code {done.returncode}: {said or '(no output)'}")
    try:
        answer: Any = json.loads(done.stdout)
        username, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{where} did not print {{\"Username\": ..., \"Secret\": ...}} JSON") from None
    if not isinstance(username, str) or not isinstance(secret, str):
        raise ValueError(f"{where} printed a Username or Secret that is not a string")
    return (username or None), (secret or None)


def docker_config_credentials(registry: str, path: Path | None = None) -> tuple[str | None, str | None]:
    """`registry`'s credentials from a Docker config.json: its credential helper (credHelpers, else credsStore)
    when one is configured, else its `auths` entry; (None, None) when there are none.

    A file that exists but cannot be read as Docker's format raises ValueError naming it, so a
    broken login does not silently turn into anonymous access.
    """
    path = path or docker_config_path()
    if not path.is_file():
        return None, None
    try:
        config = json.loads(path.read_text())
        auths = config.get("auths") or {}
        helpers = {_host(key): name for key, name in (config.get("credHelpers") or {}).items()}
        store = config.get("credsStore")
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: not a Docker config file: {exc}") from None
    wanted = _host(registry)
    helper = helpers.get(wanted) or store
    if helper:
        if not isinstance(helper, str):
            raise ValueError(f"{path}: the credential helper for {wanted} is not a name: {helper!r}")
        return credential_helper(helper, wanted, path)
    for key, entry in auths.items():
        if _host(key) != wanted or not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise ValueError(f"{path}: the auth of {key!r} is not base64 'user:password': {exc}") from None
            if not sep:
                raise ValueError(f"{path}: the auth of {key!r} has no ':' between user and password")
            return user, password
        if entry.get("username"):
            return entry["username"], entry.get("password")
    return None, None


def load_credentials(registry: str, username: str | None, password: str | None) -> tuple[str | None, str | None]:
    """Username and password for `registry`: flags first, then the environment, then Docker's config.json."""
    username = username or os.environ.get(USERNAME_ENV) or None
    password = password or os.environ.get(PASSWORD_ENV) or None
    if username is None and password is None:
        return docker_config_credentials(registry)
    return username, password
