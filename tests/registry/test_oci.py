"""The OCI client against a real registry (Debian's docker-registry on loopback): no auth, htpasswd, tokens."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.registry.registry_server import (
    Registry,
    TokenServer,
    free_port,
    run_paginating_proxy,
    run_registry,
    run_token_server,
)
from tests.serving.conftest import scale_model
from wasinfer.artifact import convert_onnx
from wasinfer.registry.artifact import MANIFEST_MEDIA_TYPE, ModelArtifact, sha256_digest
from wasinfer.registry.credentials import PASSWORD_ENV, USERNAME_ENV, load_credentials
from wasinfer.registry.oci import OciClient, RegistryError

REPO = "models/scale"


@pytest.fixture(scope="module")
def module_bytes() -> tuple[bytes, bytes]:
    """A compiled scale model and its ONNX source."""
    model = scale_model(np.array([1, 2, 3, 4], np.float32))
    return convert_onnx(model, max_batch=4, name="scale").wasm, model.SerializeToString()


def make_artifact(module_bytes: tuple[bytes, bytes], version: str) -> ModelArtifact:
    wasm, source = module_bytes
    return ModelArtifact.from_module(wasm, "scale", version, source=source,
                                     annotations={"dev.wasinfer.accuracy": "0.98"})


@pytest.fixture
def artifact(module_bytes: tuple[bytes, bytes]) -> ModelArtifact:
    return make_artifact(module_bytes, "1.0.0")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with run_registry(tmp_path / "registry") as running:
        yield running


@pytest.fixture
def client(registry: Registry) -> Iterator[OciClient]:
    with OciClient(registry.address, plain_http=True) as oci:
        yield oci


def assert_same(pulled: ModelArtifact, pushed: ModelArtifact) -> None:
    assert pulled.manifest() == pushed.manifest()
    assert pulled.blobs() == pushed.blobs()
    assert (pulled.wasm, pulled.source, pulled.config) == (pushed.wasm, pushed.source, pushed.config)


# -- no auth ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [8 * 1024 * 1024, 500], ids=["monolithic", "chunked"])
def test_push_then_pull_by_tag_and_digest_gives_the_same_bytes(registry: Registry, artifact: ModelArtifact,
                                                               chunk_size: int) -> None:
    calls: list[tuple[int, int]] = []
    with OciClient(registry.address, plain_http=True, chunk_size=chunk_size) as oci:
        digest = oci.push(REPO, "1.0.0", artifact, progress=lambda done, total: calls.append((done, total)))
        assert digest == artifact.digest()
        total = sum(len(b) for b in artifact.blobs().values())
        assert calls[-1] == (total, total)
        assert [done for done, _ in calls] == sorted(done for done, _ in calls)
        if chunk_size < len(artifact.wasm):
            assert len(calls) > len(artifact.blobs())  # one call per chunk
            assert registry.served("PATCH", "/blobs/uploads/") >= len(artifact.wasm) // chunk_size
        else:
            assert registry.served("PATCH", "/blobs/uploads/") == 0
        # The registry keeps our bytes: its digest is ours and a raw GET returns them unchanged.
        raw = httpx.get(f"http://{registry.address}/v2/{REPO}/manifests/1.0.0",
                        headers={"Accept": MANIFEST_MEDIA_TYPE})
        assert raw.content == artifact.manifest() and raw.headers["Docker-Content-Digest"] == digest
        assert oci.resolve(REPO, "1.0.0") == digest
        pulled_calls: list[tuple[int, int]] = []
        by_tag = oci.pull(REPO, "1.0.0", progress=lambda done, total: pulled_calls.append((done, total)))
        by_digest = oci.pull(REPO, digest)
    assert_same(by_tag, artifact)
    assert_same(by_digest, artifact)
    assert by_tag.annotations["dev.wasinfer.accuracy"] == "0.98" and by_tag.version == "1.0.0"
    assert pulled_calls[-1] == (total, total)


def test_pushing_twice_uploads_nothing_the_second_time(registry: Registry, client: OciClient,
                                                       artifact: ModelArtifact) -> None:
    first = client.push(REPO, "1.0.0", artifact)
    uploads = registry.served("POST", "/blobs/uploads/")
    assert uploads == len(artifact.blobs())
    calls: list[tuple[int, int]] = []
    second = client.push(REPO, "1.0.0", artifact, progress=lambda done, total: calls.append((done, total)))
    assert second == first
    assert calls == []
    assert registry.served("POST", "/blobs/uploads/") == uploads
    # A new version with the same module shares every blob: only its manifest goes up.
    client.push(REPO, "1.0.1", ModelArtifact(artifact.config, artifact.wasm, artifact.source,
                                             annotations={**artifact.annotations,
                                                          "org.opencontainers.image.version": "1.0.1"}))
    assert registry.served("POST", "/blobs/uploads/") == uploads


def test_tags_list_versions_and_an_alias_resolves_to_the_same_digest(
        client: OciClient, module_bytes: tuple[bytes, bytes]) -> None:
    digests = {v: client.push(REPO, v, make_artifact(module_bytes, v)) for v in ("1.0.0", "1.1.0", "2.0.0-rc1")}
    assert len(set(digests.values())) == 3
    client.tag(REPO, digests["1.1.0"], "stable")
    assert client.resolve(REPO, "stable") == digests["1.1.0"]
    assert sorted(client.tags(REPO)) == ["1.0.0", "1.1.0", "2.0.0-rc1", "stable"]
    # Distribution 2.8 ignores n on tag lists; the client still gets everything.
    assert sorted(client.tags(REPO, page_size=2)) == ["1.0.0", "1.1.0", "2.0.0-rc1", "stable"]
    assert client.pull(REPO, "stable").version == "1.1.0"
    client.tag(REPO, digests["2.0.0-rc1"], "stable")  # moving an alias
    assert client.resolve(REPO, "stable") == digests["2.0.0-rc1"]
    with pytest.raises(ValueError, match="not a sha256 digest"):
        client.tag(REPO, "1.0.0", "stable")


def test_tags_follow_link_pagination(registry: Registry, client: OciClient,
                                     module_bytes: tuple[bytes, bytes]) -> None:
    versions = [f"1.0.{i}" for i in range(7)]
    for version in versions:
        client.push(REPO, version, make_artifact(module_bytes, version))
    with run_paginating_proxy(registry.address) as (address, seen), \
            OciClient(address, plain_http=True) as paged:
        assert paged.tags(REPO, page_size=2) == versions
    assert len(seen) == 4  # 2 + 2 + 2 + 1
    assert seen[0] == f"/v2/{REPO}/tags/list?n=2" and "last=1.0.5" in seen[-1]


def test_delete_removes_the_version(client: OciClient, artifact: ModelArtifact,
                                    module_bytes: tuple[bytes, bytes]) -> None:
    digest = client.push(REPO, "1.0.0", artifact)
    other = client.push(REPO, "1.0.1", make_artifact(module_bytes, "1.0.1"))
    client.delete(REPO, "1.0.0")  # a tag: resolved to its digest first
    for reference in ("1.0.0", digest):
        with pytest.raises(RegistryError, match="no such tag/digest") as failure:
            client.pull(REPO, reference)
        assert failure.value.status == 404 and REPO in str(failure.value)
    with pytest.raises(RegistryError, match="no such tag/digest"):
        client.resolve(REPO, "1.0.0")
    assert client.tags(REPO) == ["1.0.1"]
    client.delete(REPO, other)  # a digest
    assert client.tags(REPO) == []
    with pytest.raises(RegistryError, match="no such tag/digest"):
        client.delete(REPO, other)


def test_deletion_disabled_is_explained(tmp_path: Path, artifact: ModelArtifact) -> None:
    with run_registry(tmp_path / "r", delete=False) as registry, \
            OciClient(registry.address, plain_http=True) as oci:
        oci.push(REPO, "1.0.0", artifact)
        with pytest.raises(RegistryError, match=r"storage\.delete\.enabled") as failure:
            oci.delete(REPO, "1.0.0")
        assert failure.value.status == 405
        assert oci.resolve(REPO, "1.0.0") == artifact.digest()


@pytest.mark.parametrize("which", ["wasm", "manifest"])
def test_a_corrupted_blob_in_the_registry_is_refused(registry: Registry, client: OciClient,
                                                     artifact: ModelArtifact, which: str) -> None:
    digest = client.push(REPO, "1.0.0", artifact)
    path = registry.blob_path(sha256_digest(artifact.wasm) if which == "wasm" else digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(data))
    for reference in ("1.0.0", digest):
        with pytest.raises(RegistryError, match="corrupted"):
            client.pull(REPO, reference)


def test_a_manifest_that_is_not_a_model_is_refused(registry: Registry, client: OciClient) -> None:
    config = b"{}"
    start = httpx.post(f"http://{registry.address}/v2/{REPO}/blobs/uploads/")
    location = httpx.URL(start.headers["Location"]).copy_merge_params({"digest": sha256_digest(config)})
    httpx.put(location, content=config).raise_for_status()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "layers": [],
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha256_digest(config), "size": len(config)}}).encode()
    httpx.put(f"http://{registry.address}/v2/{REPO}/manifests/image", content=manifest,
              headers={"Content-Type": MANIFEST_MEDIA_TYPE}).raise_for_status()
    with pytest.raises(RegistryError, match="not a wasinfer model"):
        client.pull(REPO, "image")


def test_unreachable_registry_and_https_to_a_plain_http_registry(registry: Registry) -> None:
    with OciClient(f"127.0.0.1:{free_port()}", plain_http=True, timeout=5) as down, \
            pytest.raises(RegistryError, match=r"cannot connect to registry 127\.0\.0\.1:.*is the registry running"):
        down.tags(REPO)
    with OciClient(registry.address, timeout=5) as tls, pytest.raises(RegistryError, match="--plain-http"):
        tls.tags(REPO)
    with OciClient(registry.address, plain_http=True) as oci, \
            pytest.raises(RegistryError, match="no such repository") as failure:
        oci.tags("models/absent")
    assert failure.value.status == 404 and failure.value.code == "NAME_UNKNOWN"


# -- htpasswd (basic auth) --------------------------------------------------------------------------


def test_basic_auth(basic_registry: Registry, artifact: ModelArtifact) -> None:
    with OciClient(basic_registry.address, plain_http=True, username="alice", password="s3cret") as oci:
        digest = oci.push(REPO, "1.0.0", artifact)
        assert_same(oci.pull(REPO, "1.0.0"), artifact)
        assert oci.tags(REPO) == ["1.0.0"]
        oci.delete(REPO, digest)
    with OciClient(basic_registry.address, plain_http=True, username="alice", password="wrong") as wrong, \
            pytest.raises(RegistryError, match=r"refused the credentials of user 'alice'.*HTTP 401") as failure:
        wrong.pull(REPO, "1.0.0")
    assert failure.value.status == 401
    with OciClient(basic_registry.address, plain_http=True) as anonymous, \
            pytest.raises(RegistryError, match="requires credentials"):
        anonymous.push(REPO, "1.0.0", artifact)


# -- the bearer-token flow --------------------------------------------------------------------------


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[tuple[Registry, TokenServer]]:
    with run_token_server(tmp_path / "tokens", {"bob": "hunter2"}) as tokens, \
            run_registry(tmp_path / "registry", tokens.auth_config()) as running:
        yield running, tokens


def test_bearer_token_flow(token_registry: tuple[Registry, TokenServer], artifact: ModelArtifact) -> None:
    registry, tokens = token_registry
    with OciClient(registry.address, plain_http=True, username="bob", password="hunter2") as oci:
        digest = oci.push(REPO, "1.0.0", artifact)
        oci.tag(REPO, digest, "stable")
        assert_same(oci.pull(REPO, "stable"), artifact)
        assert sorted(oci.tags(REPO)) == ["1.0.0", "stable"]
        oci.delete(REPO, "stable")
        assert oci.tags(REPO) == []
    # Tokens are cached per scope: one for pull, one for pull+push, one for delete, however many requests.
    # (The registry names a scope's actions in no fixed order: "pull,push" or "push,pull".)
    def actions(scope: str) -> tuple[str, frozenset[str]]:
        resource, _, names = scope.rpartition(":")
        return resource, frozenset(names.split(","))

    asked = [(user, [actions(scope) for scope in scopes]) for user, scopes in tokens.requests]
    assert asked == [("bob", [(f"repository:{REPO}", frozenset({"pull"}))]),
                     ("bob", [(f"repository:{REPO}", frozenset({"pull", "push"}))]),
                     ("bob", [(f"repository:{REPO}", frozenset({"delete"}))])]
    with OciClient(registry.address, plain_http=True, username="bob", password="wrong") as wrong, \
            pytest.raises(RegistryError, match=r"token server http://127\.0\.0\.1:.* refused user 'bob'.*401"):
        wrong.tags(REPO)
    with OciClient(registry.address, plain_http=True) as anonymous, \
            pytest.raises(RegistryError, match="requires credentials") as failure:
        anonymous.tags(REPO)  # the anonymous token grants nothing
    assert failure.value.status == 401
    assert tokens.requests[-1] == (None, [f"repository:{REPO}:pull"])


# -- credentials --------------------------------------------------------------------------------------


def test_credentials_come_from_flags_then_environment_then_docker_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(USERNAME_ENV, raising=False)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert load_credentials("reg.example:5000", None, None) == (None, None)  # no config.json
    auth = base64.b64encode(b"carol:pa:ss").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"https://reg.example:5000/v1/": {"auth": auth},
                                                                "other.example": {"auth": "eDp5"}}}))
    assert load_credentials("reg.example:5000", None, None) == ("carol", "pa:ss")
    assert load_credentials("unknown.example", None, None) == (None, None)
    monkeypatch.setenv(USERNAME_ENV, "dave")
    monkeypatch.setenv(PASSWORD_ENV, "env-pw")
    assert load_credentials("reg.example:5000", None, None) == ("dave", "env-pw")
    assert load_credentials("reg.example:5000", "erin", "flag-pw") == ("erin", "flag-pw")
    assert load_credentials("reg.example:5000", "erin", None) == ("erin", "env-pw")
    monkeypatch.delenv(USERNAME_ENV)
    monkeypatch.delenv(PASSWORD_ENV)
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"reg.example:5000": {"auth": "not base64!"}}}))
    with pytest.raises(ValueError, match=r"config\.json"):
        load_credentials("reg.example:5000", None, None)
