"""The local store: round trips, immutability, aliases and rollback, gc, corruption, crashes, and
two processes at once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from tests.serving.conftest import scale_model
from wasinfer.artifact import convert_onnx
from wasinfer.registry import store as store_module
from wasinfer.registry.artifact import ANNOTATIONS, ModelArtifact, sha256_digest
from wasinfer.registry.store import (
    CorruptedBlobError,
    ImmutableVersionError,
    LocalStore,
    NotFoundError,
    StoreError,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@cache
def module(scale: float) -> bytes:
    """A tiny compiled module (y = x * scale), distinct bytes per scale."""
    return convert_onnx(scale_model(np.full(4, scale, np.float32)), max_batch=2, name="scale").wasm


def artifact(version: str, scale: float = 1.0, name: str = "scale", source: bytes | None = None) -> ModelArtifact:
    return ModelArtifact.from_module(module(scale), name, version, source=source,
                                     annotations={ANNOTATIONS["accuracy"]: "0.5"})


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def blob_files(store: LocalStore) -> set[str]:
    return {p.name for p in store.blob_dir.iterdir()}


def test_put_get_round_trip_is_byte_identical(store: LocalStore) -> None:
    original = artifact("1.0.0", source=b"onnx bytes")
    digest = store.put(original)
    assert digest == original.digest()
    back = store.get("scale", "1.0.0")
    assert back.manifest() == original.manifest()
    assert (back.wasm, back.config, back.source) == (original.wasm, original.config, b"onnx bytes")
    # the blobs on disk are exactly the OCI blobs plus the manifest, named by their digests
    assert blob_files(store) == {d.partition(":")[2] for d in [digest, *original.blobs()]}
    info = store.resolve("scale", "1.0.0")
    assert info.digest == digest
    assert info.size == len(original.manifest()) + sum(len(b) for b in original.blobs().values())
    assert store.resolve("scale", digest).version == "1.0.0"
    assert store.models() == ["scale"]


def test_versions_are_immutable_and_puts_idempotent(store: LocalStore) -> None:
    digest = store.put(artifact("1.0.0", 1.0))
    assert store.put(artifact("1.0.0", 1.0)) == digest  # same bytes: a no-op
    with pytest.raises(ImmutableVersionError, match="immutable"):
        store.put(artifact("1.0.0", 2.0))
    assert store.get("scale", "1.0.0").wasm == module(1.0)
    assert [v.version for v in store.versions("scale")] == ["1.0.0"]


def test_put_refuses_non_semver_and_bad_names(store: LocalStore) -> None:
    bad_version = artifact("1.0.0")
    bad_version.annotations[ANNOTATIONS["version"]] = "v1"
    with pytest.raises(StoreError, match="semantic version"):
        store.put(bad_version)
    with pytest.raises(StoreError, match="model name"):
        store.put(artifact("1.0.0", name="Scale"))
    assert store.models() == []


def test_versions_sorted_by_semver_and_latest_prefers_releases(store: LocalStore) -> None:
    for i, version in enumerate(["1.10.0", "1.2.0", "2.0.0-rc.1", "1.9.3"]):
        store.put(artifact(version, float(i + 1)))
    assert [v.version for v in store.versions("scale")] == ["1.2.0", "1.9.3", "1.10.0", "2.0.0-rc.1"]
    assert store.resolve("scale", "latest").version == "1.10.0"
    assert store.aliases("scale") == {"latest": "1.10.0"}
    store.set_alias("scale", "latest", "2.0.0-rc.1")  # set explicitly, latest is what it says
    assert store.get("scale", "latest").wasm == module(3.0)


def test_unknown_model_version_alias(store: LocalStore) -> None:
    with pytest.raises(NotFoundError, match="no model 'nope'"):
        store.get("nope", "1.0.0")
    store.put(artifact("1.0.0"))
    with pytest.raises(NotFoundError, match=re.escape("no version '9.9.9'")):
        store.get("scale", "9.9.9")
    with pytest.raises(NotFoundError, match="'canary'"):
        store.resolve("scale", "canary")
    with pytest.raises(StoreError, match="not a valid alias"):
        store.set_alias("scale", "2.0.0", "1.0.0")


def test_promote_and_rollback_one_step(store: LocalStore) -> None:
    for i, version in enumerate(["1.0.0", "1.1.0", "1.2.0"]):
        store.put(artifact(version, float(i + 1)))
    store.promote("scale", "1.0.0")
    with pytest.raises(StoreError, match="no previous version"):
        store.rollback("scale")
    assert store.aliases("scale")["stable"] == "1.0.0"  # a failed rollback changes nothing

    store.promote("scale", "1.1.0")
    store.promote("scale", "1.1.0")  # no change, no history entry
    store.promote("scale", "1.2.0")
    assert store.rollback("scale").version == "1.1.0"
    assert store.get("scale", "stable").wasm == module(2.0)
    assert store.rollback("scale").version == "1.0.0"
    with pytest.raises(StoreError, match="no previous version"):
        store.rollback("scale")

    # aliases are independent; an alias may be promoted from another alias
    store.promote("scale", "1.2.0", alias="canary")
    store.promote("scale", "canary")
    assert store.aliases("scale") == {"canary": "1.2.0", "latest": "1.2.0", "stable": "1.2.0"}
    assert store.rollback("scale").version == "1.0.0"
    with pytest.raises(NotFoundError, match="no alias 'beta'"):
        store.rollback("scale", alias="beta")


def test_rollback_skips_deleted_versions(store: LocalStore) -> None:
    for i, version in enumerate(["1.0.0", "1.1.0", "1.2.0"]):
        store.put(artifact(version, float(i + 1)))
        store.promote("scale", version)
    store.promote("scale", "1.0.0", alias="canary")  # keeps 1.0.0 from the force-less delete below
    store.delete("scale", "1.1.0")
    assert store.rollback("scale").version == "1.0.0"


def test_delete_refuses_aliased_version_unless_forced(store: LocalStore) -> None:
    store.put(artifact("1.0.0", 1.0))
    store.put(artifact("1.1.0", 2.0))
    store.promote("scale", "1.1.0")
    with pytest.raises(StoreError, match="alias"):
        store.delete("scale", "1.1.0")
    store.delete("scale", "1.1.0", force=True)
    assert [v.version for v in store.versions("scale")] == ["1.0.0"]
    assert store.aliases("scale") == {"latest": "1.0.0"}
    store.delete("scale", "1.0.0")
    assert store.models() == []
    with pytest.raises(StoreError, match="not a version"):
        store.delete("scale", "stable")


def test_gc_removes_only_unreferenced_blobs(store: LocalStore) -> None:
    keep = artifact("1.0.0", 1.0)
    drop = artifact("1.1.0", 2.0, source=b"source of 1.1.0")
    store.put(keep)
    store.put(drop)
    assert store.gc() == (0, 0)
    store.delete("scale", "1.1.0")
    # a blob both versions share (none here, but the count must not depend on it) stays
    keep_files = {d.partition(":")[2] for d in [keep.digest(), *keep.blobs()]}
    drop_files = {d.partition(":")[2] for d in [drop.digest(), *drop.blobs()]} - keep_files
    expected_bytes = sum((store.blob_dir / f).stat().st_size for f in drop_files)
    assert store.gc() == (len(drop_files), expected_bytes)
    assert blob_files(store) == keep_files
    assert store.get("scale", "1.0.0").wasm == keep.wasm


def test_corrupted_blob_is_detected_on_get(store: LocalStore) -> None:
    original = artifact("1.0.0")
    store.put(original)
    path = store.blob_dir / sha256_digest(original.wasm).partition(":")[2]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptedBlobError, match="corrupted"):
        store.get("scale", "1.0.0")
    path.unlink()
    with pytest.raises(CorruptedBlobError, match="missing"):
        store.get("scale", "1.0.0")
    # a later put of the same version repairs the blob (same digest, idempotent write)
    store.put(original)
    assert store.get("scale", "1.0.0").wasm == original.wasm


def test_corrupted_manifest_is_detected(store: LocalStore) -> None:
    digest = store.put(artifact("1.0.0"))
    (store.blob_dir / digest.partition(":")[2]).write_bytes(b"{}")
    with pytest.raises(CorruptedBlobError, match=digest):
        store.get("scale", "1.0.0")


def test_failure_before_the_index_commit_leaves_nothing_visible(store: LocalStore,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def crash() -> None:
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(store_module, "_before_index_commit", crash)
    with pytest.raises(RuntimeError):
        store.put(artifact("1.0.0"))
    assert blob_files(store)  # the blobs were written ...
    assert store.models() == []  # ... but no version is visible
    with pytest.raises(NotFoundError):
        store.resolve("scale", "1.0.0")
    removed, freed = store.gc()
    assert removed == 3 and freed > 0 and blob_files(store) == set()  # config, wasm, manifest


CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from tests.registry.test_store import artifact
    from wasinfer.registry import store as store_module
    from wasinfer.registry.store import LocalStore

    root, version, scale, crash = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "crash"
    if crash:
        store_module._before_index_commit = lambda: os.kill(os.getpid(), signal.SIGKILL)
    print(LocalStore(Path(root)).put(artifact(version, scale)))
""")


def run_child(root: Path, version: str, scale: float, crash: bool) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(root), version, str(scale), "crash" if crash else "ok"],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def test_sigkill_mid_put_leaves_no_partial_version(store: LocalStore) -> None:
    store.put(artifact("1.0.0", 1.0))
    child = run_child(store.root, "1.1.0", 2.0, crash=True)
    _, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err
    assert [v.version for v in store.versions("scale")] == ["1.0.0"]
    assert len(blob_files(store)) > 3  # 1.1.0's wasm, config and manifest are on disk, unreferenced
    (store.blob_dir / ".tmp-left-by-a-crash").write_bytes(b"partial")
    removed, _ = store.gc()
    assert removed == 4  # 1.1.0's manifest, config, wasm, and the temp file
    assert len(blob_files(store)) == 3
    assert store.get("scale", "1.0.0").wasm == module(1.0)


def test_two_processes_put_concurrently(store: LocalStore) -> None:
    children = [run_child(store.root, f"1.{i}.0", float(i + 1), crash=False) for i in range(2)]
    results = [child.communicate(timeout=120) for child in children]
    for child, (out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
        assert out.strip().startswith("sha256:")
    assert [v.version for v in store.versions("scale")] == ["1.0.0", "1.1.0"]
    for i in range(2):
        assert store.get("scale", f"1.{i}.0").wasm == module(float(i + 1))
