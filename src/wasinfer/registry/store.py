"""The local store: the embedded default home of model versions, with the registry's operations.

Layout under `root` (default `$WASINFER_HOME/store`):

    blobs/sha256/<hex>   content-addressed blobs: the config, the .wasm, the source model and the
                         manifest itself, byte for byte what an OCI registry holds for the same
                         version (so one digest names a version here and there)
    index.db             SQLite: models, versions (manifest digest, size, created), the blobs each
                         version references, its signatures (model-signing bundles, kept as blobs:
                         what a registry attaches as referrers), aliases and the history of every
                         alias change
    lock                 an advisory file lock: puts hold it shared, `gc` exclusive

Why it is shaped this way:

- A crash must never leave a half-visible version. Every blob (and the manifest) is written to a
  temporary file in its final directory, fsynced, renamed into place, and the directory fsynced;
  only then is the version's index row inserted, in one transaction. A crash before the commit
  leaves unreferenced blobs and perhaps temp files, which nothing can see and `gc` removes.
- Versions are immutable: the same name and version with other bytes is refused, the same bytes
  again is a no-op, so retried pushes and pulls are safe.
- Reads verify every blob against its digest, so a flipped bit on disk gives a clear error and
  never a wrong model.
- Several processes (servers, the CLI) may use one store at once: SQLite serialises index writes
  (with a busy timeout, so writers wait instead of failing), blob writes are idempotent
  (same name, same bytes), and the shared/exclusive lock keeps `gc` from deleting the blobs of a
  put that has not committed yet.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wasinfer.artifact.metadata import Metadata
from wasinfer.fileio import atomic_write, file_lock, fsync_dir
from wasinfer.registry.artifact import (
    ANNOTATIONS,
    ModelArtifact,
    canonical_version,
    is_semver,
    semver_key,
    sha256_digest,
)

BUSY_TIMEOUT_S = 30.0
_TEMP_PREFIX = ".tmp-"
_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")
_ALIAS = re.compile(r"[A-Za-z_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL REFERENCES models(name),
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS version_blobs (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (name, version, digest)
);
CREATE TABLE IF NOT EXISTS signatures (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (name, version, digest)
);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (name, alias)
);
CREATE TABLE IF NOT EXISTS alias_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version TEXT NOT NULL,
    changed TEXT NOT NULL
);
"""


class StoreError(Exception):
    """Anything the store refuses or cannot do; the message is meant for the user as is."""


class NotFoundError(StoreError):
    """An unknown model, version or alias."""


class ImmutableVersionError(StoreError):
    """A different artifact under a version that already exists."""


class CorruptedBlobError(StoreError):
    """A blob on disk that is missing or does not hash to its digest."""


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    digest: str  # the manifest's digest: names this version here and in any registry
    size: int  # bytes of the manifest and every blob it references
    created: str  # RFC 3339, UTC: when the version entered this store


def default_store_root() -> Path:
    return Path(os.environ.get("WASINFER_HOME", Path.home() / ".wasinfer")) / "store"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _before_index_commit() -> None:
    """Called after every blob is durable and before the index transaction; tests replace it to
    simulate a crash at the worst moment."""


class LocalStore:
    """Model versions on local disk: `put`, `get`, aliases with history, `delete`, `gc`."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_store_root()
        self.blob_dir = self.root / "blobs" / "sha256"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.root / "lock"
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
            db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")

    # --- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection per operation: safe across threads and processes, and cheap for SQLite."""
        db = sqlite3.connect(self.root / "index.db", timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            db.execute("PRAGMA synchronous=FULL")  # a committed version survives a power loss
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock up front, so read-then-write checks cannot race."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _file_lock(self, exclusive: bool) -> Iterator[None]:
        """Puts share it, gc takes it alone; the kernel drops it when a process dies."""
        with file_lock(self._lock_path, exclusive):
            yield

    def _blob_path(self, digest: str) -> Path:
        if not _DIGEST.fullmatch(digest):
            raise StoreError(f"{digest!r} is not a sha256 digest")
        return self.blob_dir / digest.partition(":")[2]

    def _write_blob(self, digest: str, data: bytes) -> None:
        """Temp file in the same directory, fsync, rename, fsync the directory. A blob already
        present with the right bytes is kept (concurrent writers of one blob write the same
        bytes, so whichever rename wins is right); a damaged one is replaced."""
        path = self._blob_path(digest)
        if path.exists():
            try:
                if sha256_digest(path.read_bytes()) == digest:
                    return
            except OSError:
                pass
        atomic_write(path, data, prefix=_TEMP_PREFIX)

    def _read_blob(self, digest: str) -> bytes:
        path = self._blob_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CorruptedBlobError(f"blob {digest} is missing from the store ({path})") from None
        actual = sha256_digest(data)
        if actual != digest:
            raise CorruptedBlobError(f"blob {digest} is corrupted: {path} hashes to {actual}; "
                                     "put or pull the same version again to repair it") from None
        return data

    @staticmethod
    def _check_name(name: str) -> None:
        if not _NAME.fullmatch(name):
            raise StoreError(f"{name!r} is not a valid model name (lowercase letters, digits and . _ - /)")

    # --- writing --------------------------------------------------------------------------------

    def put(self, artifact: ModelArtifact, signatures: Sequence[bytes] = ()) -> str:
        """Store a version (name and version from its annotations) and its `signatures` (model-signing
        bundles); returns the manifest digest.

        The same artifact again changes nothing in the index but rewrites any blob that is missing or
        damaged (the repair for a CorruptedBlobError), and adds signatures it did not have (a version
        may be signed after it was published, as a registry's referrers may be added); a different
        artifact under an existing version is refused.
        """
        name, version = artifact.name, artifact.version
        self._check_name(name)
        if not is_semver(version):
            raise StoreError(f"version {version!r} of {name!r} is not a semantic version (MAJOR.MINOR.PATCH)")
        manifest = artifact.manifest()
        digest = sha256_digest(manifest)
        existing = self._version_row(name, version)
        if existing is not None:
            self._same_or_refuse(existing, digest)
        blobs = artifact.blobs()
        size = len(manifest) + sum(len(b) for b in blobs.values())
        created = artifact.annotations.get(ANNOTATIONS["created"]) or _now()
        signature_digests = [sha256_digest(bundle) for bundle in signatures]
        with self._file_lock(exclusive=False):
            for blob_digest, data in [*blobs.items(), *zip(signature_digests, signatures, strict=True)]:
                self._write_blob(blob_digest, data)
            self._write_blob(digest, manifest)
            if existing is not None:  # the same version again: the writes above repaired any damaged blob
                if signature_digests:
                    with self._transaction() as db:
                        self._add_signatures(db, name, version, signature_digests)
                return digest
            _before_index_commit()
            with self._transaction() as db:
                row = db.execute("SELECT name, version, digest, size, created FROM versions "
                                 "WHERE name=? AND version=?", (name, version)).fetchone()
                if row is not None:  # another process put this version since the check above
                    return self._same_or_refuse(VersionInfo(*row), digest)
                db.execute("INSERT OR IGNORE INTO models (name, created) VALUES (?, ?)", (name, _now()))
                db.execute("INSERT INTO versions (name, version, digest, size, created) VALUES (?, ?, ?, ?, ?)",
                           (name, version, digest, size, created))
                db.executemany("INSERT OR IGNORE INTO version_blobs (name, version, digest) VALUES (?, ?, ?)",
                               [(name, version, d) for d in [digest, *blobs]])
                self._add_signatures(db, name, version, signature_digests)
        return digest

    @staticmethod
    def _add_signatures(db: sqlite3.Connection, name: str, version: str, digests: list[str]) -> None:
        """Index signature blobs (already written) for a version; version_blobs keeps them from `gc`."""
        rows = [(name, version, d) for d in digests]
        db.executemany("INSERT OR IGNORE INTO signatures (name, version, digest) VALUES (?, ?, ?)", rows)
        db.executemany("INSERT OR IGNORE INTO version_blobs (name, version, digest) VALUES (?, ?, ?)", rows)

    def signatures(self, name: str, version_or_alias: str) -> list[bytes]:
        """The signature bundles stored for a version (each verified against its digest), in digest order."""
        info = self.resolve(name, version_or_alias)
        with self._db() as db:
            digests = [d for (d,) in db.execute("SELECT digest FROM signatures WHERE name=? AND version=? "
                                                "ORDER BY digest", (name, info.version))]
        return [self._read_blob(d) for d in digests]

    @staticmethod
    def _same_or_refuse(existing: VersionInfo, digest: str) -> str:
        if existing.digest != digest:
            raise ImmutableVersionError(
                f"{existing.name}:{existing.version} already exists with digest {existing.digest} "
                f"(this artifact is {digest}); versions are immutable, publish a new version")
        return digest

    def set_alias(self, name: str, alias: str, version: str) -> VersionInfo:
        """Point `alias` at a version (or at what another alias points at now), recording the
        change so `rollback` can undo it."""
        if not _ALIAS.fullmatch(alias) or is_semver(alias):
            raise StoreError(f"{alias!r} is not a valid alias (a tag that is not a version, e.g. stable)")
        with self._transaction() as db:
            info = self._resolve(db, name, version)
            current = db.execute("SELECT version FROM aliases WHERE name=? AND alias=?", (name, alias)).fetchone()
            if current is None or current[0] != info.version:
                db.execute("INSERT OR REPLACE INTO aliases (name, alias, version) VALUES (?, ?, ?)",
                           (name, alias, info.version))
                db.execute("INSERT INTO alias_history (name, alias, version, changed) VALUES (?, ?, ?, ?)",
                           (name, alias, info.version, _now()))
        return info

    def promote(self, name: str, version: str, alias: str = "stable") -> VersionInfo:
        """`set_alias` under the name operators use: make `version` the `alias` (stable by default)."""
        return self.set_alias(name, alias, version)

    def remove_alias(self, name: str, alias: str) -> None:
        with self._transaction() as db:
            if db.execute("DELETE FROM aliases WHERE name=? AND alias=?", (name, alias)).rowcount == 0:
                raise NotFoundError(f"{name} has no alias {alias!r}")
            db.execute("DELETE FROM alias_history WHERE name=? AND alias=?", (name, alias))

    def rollback(self, name: str, alias: str = "stable") -> VersionInfo:
        """Point `alias` back at the version it pointed at before its last change, in one step.

        The history is a stack: each rollback pops one change, so repeated rollbacks walk further
        back. Entries for versions deleted since are skipped. With no earlier target, nothing
        changes and the error says so.
        """
        with self._transaction() as db:
            current = db.execute("SELECT version FROM aliases WHERE name=? AND alias=?", (name, alias)).fetchone()
            if current is None:
                self._require_model(db, name)
                raise NotFoundError(f"{name} has no alias {alias!r} to roll back")
            history = db.execute("SELECT id, version FROM alias_history WHERE name=? AND alias=? ORDER BY id DESC",
                                 (name, alias)).fetchall()
            existing = {v for (v,) in db.execute("SELECT version FROM versions WHERE name=?", (name,))}
            popped = []
            target = None
            for entry_id, version in history:
                if version != current[0] and version in existing:
                    target = version
                    break
                popped.append(entry_id)
            if target is None:
                raise StoreError(f"{name}:{alias} has no previous version to roll back to "
                                 f"(it points at {current[0]})")
            db.executemany("DELETE FROM alias_history WHERE id=?", [(i,) for i in popped])
            db.execute("UPDATE aliases SET version=? WHERE name=? AND alias=?", (target, name, alias))
            return self._resolve(db, name, target)

    def delete(self, name: str, version: str, force: bool = False) -> None:
        """Remove a version from the index (its blobs go at the next `gc`). Refused while an alias
        points at it, unless `force`, which removes those aliases too."""
        if not is_semver(version):
            raise StoreError(f"{version!r} is not a version; delete takes the version itself, not an alias")
        version = canonical_version(version)
        with self._transaction() as db:
            self._resolve(db, name, version)
            pointing = [a for (a,) in db.execute("SELECT alias FROM aliases WHERE name=? AND version=? ORDER BY alias",
                                                 (name, version))]
            if pointing and not force:
                raise StoreError(f"{name}:{version} is the target of alias(es) {', '.join(pointing)}; "
                                 "move them first or force the delete")
            db.execute("DELETE FROM aliases WHERE name=? AND version=?", (name, version))
            db.execute("DELETE FROM alias_history WHERE name=? AND version=?", (name, version))
            db.execute("DELETE FROM version_blobs WHERE name=? AND version=?", (name, version))
            db.execute("DELETE FROM signatures WHERE name=? AND version=?", (name, version))
            db.execute("DELETE FROM versions WHERE name=? AND version=?", (name, version))
            if db.execute("SELECT 1 FROM versions WHERE name=?", (name,)).fetchone() is None:
                db.execute("DELETE FROM aliases WHERE name=?", (name,))
                db.execute("DELETE FROM alias_history WHERE name=?", (name,))
                db.execute("DELETE FROM models WHERE name=?", (name,))

    def gc(self) -> tuple[int, int]:
        """Remove blobs no version references and temp files left by crashed writes; returns
        (files removed, bytes freed). Holds the store lock exclusively, so no put is mid-way."""
        removed = freed = 0
        with self._file_lock(exclusive=True):
            with self._db() as db:
                referenced = {d for (d,) in db.execute("SELECT digest FROM version_blobs")}
                referenced |= {d for (d,) in db.execute("SELECT digest FROM versions")}
            for path in self.blob_dir.iterdir():
                if path.name.startswith(_TEMP_PREFIX) or f"sha256:{path.name}" not in referenced:
                    size = path.stat().st_size
                    path.unlink(missing_ok=True)
                    removed += 1
                    freed += size
            if removed:
                fsync_dir(self.blob_dir)
        return removed, freed

    # --- reading --------------------------------------------------------------------------------

    def _version_row(self, name: str, version: str) -> VersionInfo | None:
        with self._db() as db:
            row = db.execute("SELECT name, version, digest, size, created FROM versions WHERE name=? AND version=?",
                             (name, version)).fetchone()
        return VersionInfo(*row) if row else None

    @staticmethod
    def _require_model(db: sqlite3.Connection, name: str) -> None:
        if db.execute("SELECT 1 FROM models WHERE name=?", (name,)).fetchone() is None:
            raise NotFoundError(f"no model {name!r} in the local store")

    def _resolve(self, db: sqlite3.Connection, name: str, ref: str) -> VersionInfo:
        columns = "SELECT name, version, digest, size, created FROM versions"
        self._require_model(db, name)
        if is_semver(ref):  # v1.2.3 is 1.2.3, as push stores it
            row = db.execute(f"{columns} WHERE name=? AND version=?", (name, canonical_version(ref))).fetchone()
        elif _DIGEST.fullmatch(ref):
            row = db.execute(f"{columns} WHERE name=? AND digest=?", (name, ref)).fetchone()
        else:
            alias = db.execute("SELECT version FROM aliases WHERE name=? AND alias=?", (name, ref)).fetchone()
            if alias is not None:
                row = db.execute(f"{columns} WHERE name=? AND version=?", (name, alias[0])).fetchone()
            elif ref == "latest":
                versions = [VersionInfo(*r) for r in db.execute(f"{columns} WHERE name=?", (name,))]
                return _latest(versions)
            else:
                raise NotFoundError(f"{name} has no version or alias {ref!r}")
        if row is None:
            raise NotFoundError(f"{name} has no version {ref!r}")
        return VersionInfo(*row)

    def resolve(self, name: str, version_or_alias: str) -> VersionInfo:
        """A version, an alias (stable, canary, ...), `latest` or a manifest digest → the version."""
        with self._db() as db:
            return self._resolve(db, name, version_or_alias)

    def manifest(self, name: str, version_or_alias: str) -> tuple[VersionInfo, bytes]:
        """The version and its manifest bytes, verified against the digest the index holds."""
        info = self.resolve(name, version_or_alias)
        return info, self._read_blob(info.digest)

    def get(self, name: str, version_or_alias: str) -> ModelArtifact:
        """The whole artifact, every blob verified; a damaged store raises CorruptedBlobError."""
        info, manifest = self.manifest(name, version_or_alias)
        digests = _manifest_blob_digests(manifest)
        blobs = {d: self._read_blob(d) for d in digests}
        try:
            return ModelArtifact.from_manifest(manifest, blobs)
        except ValueError as exc:
            raise CorruptedBlobError(f"{name}:{info.version}: {exc}") from None

    def describe(self, name: str, version_or_alias: str) -> tuple[VersionInfo, dict[str, str], Metadata]:
        """The version, its annotations and its metadata, reading only the manifest and the config
        blob (not the module), for listings."""
        info, manifest = self.manifest(name, version_or_alias)
        document = _parse_manifest(manifest)
        config = self._read_blob(document["config"]["digest"])
        try:
            metadata = Metadata.from_json(config)
        except (ValueError, TypeError) as exc:
            raise CorruptedBlobError(f"{name}:{info.version}: the config blob is not wasinfer metadata: "
                                     f"{exc}") from None
        return info, dict(document.get("annotations") or {}), metadata

    def models(self) -> list[str]:
        with self._db() as db:
            return [n for (n,) in db.execute("SELECT name FROM models ORDER BY name")]

    def versions(self, name: str) -> list[VersionInfo]:
        """Every version of a model, lowest semver first."""
        with self._db() as db:
            self._require_model(db, name)
            rows = db.execute("SELECT name, version, digest, size, created FROM versions WHERE name=?", (name,))
            return sorted((VersionInfo(*r) for r in rows), key=lambda v: semver_key(v.version))

    def aliases(self, name: str) -> dict[str, str]:
        """Alias → version, with `latest` filled in (the highest version) unless set explicitly."""
        with self._db() as db:
            self._require_model(db, name)
            out = dict(db.execute("SELECT alias, version FROM aliases WHERE name=? ORDER BY alias", (name,)).fetchall())
            if "latest" not in out:
                out["latest"] = self._resolve(db, name, "latest").version
            return out


def _latest(versions: list[VersionInfo]) -> VersionInfo:
    """The highest release; the highest pre-release only when there is no release at all."""
    if not versions:
        raise NotFoundError("the model has no versions")
    releases = [v for v in versions if "-" not in v.version.partition("+")[0]]
    return max(releases or versions, key=lambda v: semver_key(v.version))


def _parse_manifest(manifest: bytes) -> dict[str, Any]:
    try:
        document = json.loads(manifest)
        if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
            raise ValueError("no config descriptor")
        return document
    except ValueError as exc:
        raise CorruptedBlobError(f"the manifest is not a wasinfer model manifest: {exc}") from None


def _manifest_blob_digests(manifest: bytes) -> list[str]:
    document = _parse_manifest(manifest)
    return [document["config"]["digest"], *(layer["digest"] for layer in document.get("layers") or [])]


__all__ = ["CorruptedBlobError", "ImmutableVersionError", "LocalStore", "NotFoundError", "StoreError",
           "VersionInfo", "default_store_root"]
