"""Where registry credentials come from: flags, then the environment, then Docker's config.json.

The order is the one users expect from docker/oras: an explicit flag wins, CI sets the
environment, and a developer who already ran `docker login` needs to do nothing more. Only
the plain `auths` → `auth` form is read; credential helpers (`credsStore`, `credHelpers`)
run external programs and are not supported.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

USERNAME_ENV = "WASINFER_REGISTRY_USERNAME"
PASSWORD_ENV = "WASINFER_REGISTRY_PASSWORD"


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


def docker_config_credentials(registry: str, path: Path | None = None) -> tuple[str | None, str | None]:
    """The `auths` entry for `registry` in a Docker config.json; (None, None) when there is none.

    A file that exists but cannot be read as Docker's format raises ValueError naming it, so a
    broken login does not silently turn into anonymous access.
    """
    path = path or docker_config_path()
    if not path.is_file():
        return None, None
    try:
        auths = json.loads(path.read_text()).get("auths") or {}
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: not a Docker config file: {exc}") from None
    wanted = _host(registry)
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
