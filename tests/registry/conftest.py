"""Fixtures the registry tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.registry.registry_server import Registry, bcrypt_entry, run_registry


@pytest.fixture
def basic_registry(tmp_path: Path) -> Iterator[Registry]:
    entry = bcrypt_entry("alice", "s3cret")
    if entry is None:
        pytest.skip("no bcrypt hasher here (the bcrypt package, Python's crypt module, or apache2-utils' htpasswd)")
    (tmp_path / "htpasswd").write_text(entry + "\n")
    with run_registry(tmp_path / "registry",
                      {"htpasswd": {"realm": "wasinfer-test", "path": str(tmp_path / "htpasswd")}}) as running:
        yield running
