"""`wasinfer push`, `pull` and `models ...` against the local store, end to end through main()."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.serving.conftest import write_scale_versions
from wasinfer.cli.main import main
from wasinfer.registry.artifact import sha256_digest
from wasinfer.registry.store import LocalStore


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WASINFER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def modules(tmp_path: Path) -> dict[str, Path]:
    """Two versions' worth of modules (different bytes), the source model, and a non-module."""
    out = write_scale_versions(tmp_path)
    (tmp_path / "junk.wasm").write_bytes(b"\x00asm\x01\x00\x00\x00")
    out["junk"] = tmp_path / "junk.wasm"
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_push_list_show_pull(home: Path, modules: dict[str, Path], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    pushed = run_json(capsys, "push", str(modules["v1"]), "scale:1.0.0", "--source", str(modules["v1_onnx"]),
                      "--accuracy", "0.93")
    assert pushed["store"] == "local store" and pushed["digest"].startswith("sha256:")
    run_json(capsys, "push", str(modules["v2"]), "scale:1.1.0")

    listed = run_json(capsys, "models", "list")
    assert listed == [{"name": "scale", "versions": ["1.0.0", "1.1.0"], "aliases": {"latest": "1.1.0"},
                       "size": listed[0]["size"]}]
    assert listed[0]["size"] > modules["v1"].stat().st_size + modules["v2"].stat().st_size

    shown = run_json(capsys, "models", "show", "scale")
    first, second = shown["versions"]
    assert first["digest"] == pushed["digest"] and first["accuracy"] == pytest.approx(0.93)
    assert first["inputs"] == [{"name": "x", "dtype": "float32", "shape": [1, 4]}]
    assert first["outputs"][0]["name"] == "y" and first["ops"] == 1
    assert first["source_digest"] == sha256_digest(modules["v1_onnx"].read_bytes())
    assert second["accuracy"] is None and second["aliases"] == ["latest"]

    out_file = tmp_path / "out" / "model.wasm"
    pulled = run_json(capsys, "pull", "scale:1.0.0", "-o", str(out_file))
    assert pulled["digest"] == pushed["digest"]
    assert out_file.read_bytes() == modules["v1"].read_bytes()
    run_json(capsys, "pull", "scale", "-o", str(out_file))  # no tag: latest
    assert out_file.read_bytes() == modules["v2"].read_bytes()
    assert [p.name for p in out_file.parent.iterdir()] == ["model.wasm"]  # no temp file left

    code, out, _ = run(capsys, "models", "show", "scale")  # the human table too
    assert code == 0 and "1.0.0" in out and "0.93" in out


def test_promote_rollback_delete_gc(home: Path, modules: dict[str, Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    run_json(capsys, "push", str(modules["v1"]), "scale:1.0.0")
    run_json(capsys, "push", str(modules["v2"]), "scale:2.0.0")
    assert run_json(capsys, "models", "promote", "scale", "1.0.0")["version"] == "1.0.0"
    assert run_json(capsys, "models", "promote", "scale", "2.0.0")["version"] == "2.0.0"
    out_file = tmp_path / "stable.wasm"
    run_json(capsys, "pull", "scale:stable", "-o", str(out_file))
    assert out_file.read_bytes() == modules["v2"].read_bytes()

    assert run_json(capsys, "models", "rollback", "scale")["version"] == "1.0.0"
    run_json(capsys, "pull", "scale:stable", "-o", str(out_file))
    assert out_file.read_bytes() == modules["v1"].read_bytes()
    code, _, err = run(capsys, "models", "rollback", "scale")
    assert code == 2 and "no previous version" in err

    code, _, err = run(capsys, "models", "delete", "scale", "1.0.0")
    assert code == 2 and "stable" in err
    run_json(capsys, "models", "promote", "scale", "2.0.0", "--alias", "canary")
    assert run_json(capsys, "models", "delete", "scale", "1.0.0", "--force")["deleted"] is True
    collected = run_json(capsys, "models", "gc")
    assert collected["files_removed"] == 3 and collected["bytes_freed"] > modules["v1"].stat().st_size
    assert run_json(capsys, "models", "show", "scale")["aliases"] == {"canary": "2.0.0", "latest": "2.0.0"}


def test_push_is_idempotent_and_versions_immutable(home: Path, modules: dict[str, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    first = run_json(capsys, "push", str(modules["v1"]), "scale:1.0.0")
    assert run_json(capsys, "push", str(modules["v1"]), "scale:1.0.0") == first
    code, _, err = run(capsys, "push", str(modules["v2"]), "scale:1.0.0")
    assert code == 2 and "immutable" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["push", "{v1}", "scale:latest"], "semantic version"),
    (["push", "{v1}", "scale"], "must name a version"),
    (["push", "{v1}", "Scale:1.0.0"], "lowercase"),
    (["pull", "https://host/scale:1.0.0", "-o", "{out}"], "https:// is not a registry reference"),
    (["push", "{junk}", "scale:1.0.0"], "not a wasinfer module"),
    (["push", "{missing}", "scale:1.0.0"], "no such file"),
    (["push", "{v1}", "scale:1.0.0", "--source", "{v1}"], "--source"),
    (["pull", "nope:1.0.0", "-o", "{out}"], "no model 'nope'"),
    (["pull", "scale:9.9.9", "-o", "{out}"], "no version '9.9.9'"),
    (["models", "show", "nope"], "no model 'nope'"),
    (["models", "promote", "scale", "3.0.0"], "no version '3.0.0'"),
    (["models", "promote", "scale", "1.0.0", "--alias", "2.0.0"], "not a valid alias"),
    (["models", "delete", "scale", "stable"], "not a version"),
])
def test_errors_exit_2_with_one_line(home: Path, modules: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    run_json(capsys, "push", str(modules["v1"]), "scale:1.0.0")
    paths = {**{k: str(v) for k, v in modules.items()}, "missing": str(tmp_path / "missing.wasm"),
             "out": str(tmp_path / "out.wasm")}
    code, out, err = run(capsys, *[a.format(**paths) for a in argv])
    assert code == 2, (out, err)
    assert message in err and err.startswith("error:") and err.count("\n") == 1, err
    assert not (tmp_path / "out.wasm").exists()


def test_corrupted_blob_is_an_error_not_a_model(home: Path, modules: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run_json(capsys, "push", str(modules["v1"]), "scale:1.0.0")
    blob = LocalStore(home / "store").blob_dir / sha256_digest(modules["v1"].read_bytes()).partition(":")[2]
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    code, _, err = run(capsys, "pull", "scale:1.0.0", "-o", str(tmp_path / "out.wasm"))
    assert code == 2 and "corrupted" in err
    assert not (tmp_path / "out.wasm").exists()
    # pushing the same version again repairs it
    run_json(capsys, "push", str(modules["v1"]), "scale:1.0.0")
    run_json(capsys, "pull", "scale:1.0.0", "-o", str(tmp_path / "out.wasm"))
    assert (tmp_path / "out.wasm").read_bytes() == modules["v1"].read_bytes()


def test_pull_without_output_from_local_store_is_a_no_op(home: Path, modules: dict[str, Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    run_json(capsys, "push", str(modules["v1"]), "scale:1.0.0")
    pulled = run_json(capsys, "pull", "scale:1.0.0")
    assert pulled["store"] == "local store" and pulled["version"] == "1.0.0"


def test_empty_store_and_help(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_json(capsys, "models", "list") == []
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and "empty" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["push", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "immutable" in help_text and "--plain-http" in help_text and "--password-stdin" in help_text


def test_push_pull_promote_with_a_real_registry(home: Path, modules: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Through Debian's docker-registry on loopback (skipped, saying why, when it is not installed)."""
    from tests.registry.registry_server import run_registry

    with run_registry(tmp_path / "registry") as registry:
        ref = f"{registry.address}/team/scale"
        pushed = run_json(capsys, "push", str(modules["v1"]), f"{ref}:1.0.0", "--plain-http",
                          "--source", str(modules["v1_onnx"]))
        assert pushed["store"] == registry.address
        assert registry.blob_path(sha256_digest(modules["v1"].read_bytes())).read_bytes() == modules["v1"].read_bytes()

        out_file = tmp_path / "pulled.wasm"
        pulled = run_json(capsys, "pull", f"{ref}:1.0.0", "-o", str(out_file), "--plain-http")
        assert pulled["digest"] == pushed["digest"] and out_file.read_bytes() == modules["v1"].read_bytes()
        # KServe's storageUri form names the same artifact
        by_uri = run_json(capsys, "pull", f"oci://{ref}:1.0.0", "-o", str(tmp_path / "by_uri.wasm"), "--plain-http")
        assert by_uri["digest"] == pushed["digest"] and (tmp_path / "by_uri.wasm").read_bytes() == out_file.read_bytes()

        promoted = run_json(capsys, "models", "promote", ref, "1.0.0", "--alias", "stable", "--plain-http")
        assert promoted["digest"] == pushed["digest"]
        # into the local store, by the alias tag: the same manifest digest, byte for byte
        into_store = run_json(capsys, "pull", f"{ref}:stable", "--plain-http")
        assert into_store["store"] == "local store" and into_store["digest"] == pushed["digest"]
        assert LocalStore(home / "store").resolve("team/scale", "1.0.0").digest == pushed["digest"]

        code, _, err = run(capsys, "pull", f"{ref}:9.9.9", "--plain-http", "-o", str(tmp_path / "none.wasm"))
        assert code == 2 and err.startswith("error:") and err.count("\n") == 1, err


def test_a_v_prefixed_version_is_the_same_version_everywhere(home: Path, modules: dict[str, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`push scale:v2.0.0` stores 2.0.0 (the seed's ConfigMap writes v1.0.0); pull, promote and delete of v2.0.0
    then find it too (they said "no version 'v2.0.0'")."""
    run_json(capsys, "push", str(modules["v1"]), "scale:v1.0.0")
    run_json(capsys, "push", str(modules["v2"]), "scale:v2.0.0")
    out_file = tmp_path / "v2.wasm"
    assert run_json(capsys, "pull", "scale:v2.0.0", "-o", str(out_file))["version"] == "2.0.0"
    assert out_file.read_bytes() == modules["v2"].read_bytes()
    assert run_json(capsys, "models", "promote", "scale", "v1.0.0")["version"] == "1.0.0"
    assert run_json(capsys, "models", "delete", "scale", "v2.0.0")["deleted"] is True
    assert [v["version"] for v in run_json(capsys, "models", "show", "scale")["versions"]] == ["1.0.0"]


def test_a_registry_pull_without_a_tag_takes_the_highest_release_and_the_env_asks_for_plain_http(
        home: Path, modules: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A push tags versions, never `latest`: a pull without a tag asked the registry for `latest` and found nothing.
    It now takes `latest` where the repository has it, else the highest release. And $WASINFER_REGISTRY_PLAIN_HTTP,
    which `serve` honoured, is honoured by push and pull too (they failed on TLS against a plain registry)."""
    from tests.registry.registry_server import run_registry

    with run_registry(tmp_path / "registry") as registry:
        ref = f"{registry.address}/team/scale"
        code, _, err = run(capsys, "push", str(modules["v1"]), f"{ref}:1.0.0")
        last = err.splitlines()[-1]  # TLS to a plain-HTTP registry: refused, saying how to ask for plain HTTP
        assert code == 2 and last.startswith("error:") and "WASINFER_REGISTRY_PLAIN_HTTP=1" in last, err
        monkeypatch.setenv("WASINFER_REGISTRY_PLAIN_HTTP", "1")
        run_json(capsys, "push", str(modules["v1"]), f"{ref}:1.0.0")
        run_json(capsys, "push", str(modules["v2"]), f"{ref}:1.1.0")
        run_json(capsys, "push", str(modules["v1"]), f"{ref}:2.0.0-rc1")
        pulled = run_json(capsys, "pull", ref, "-o", str(tmp_path / "newest.wasm"))
        assert pulled["version"] == "1.1.0" and (tmp_path / "newest.wasm").read_bytes() == modules["v2"].read_bytes()
        run_json(capsys, "models", "promote", ref, "1.0.0", "--alias", "latest")
        assert run_json(capsys, "pull", ref, "-o", str(tmp_path / "latest.wasm"))["version"] == "1.0.0"


def test_signed_push_and_verified_pull_through_a_real_registry(home: Path, modules: dict[str, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Acceptance: push signs, pull verifies; unsigned, wrongly signed and policy-denied versions are refused."""
    from tests.registry.registry_server import run_registry

    keys, strangers = tmp_path / "keys", tmp_path / "strangers"
    run_json(capsys, "keys", "generate", "--dir", str(keys), "--name", "ci")
    run_json(capsys, "keys", "generate", "--dir", str(strangers), "--name", "someone")
    with run_registry(tmp_path / "registry") as registry:
        ref = f"{registry.address}/team/scale"
        monkeypatch.setenv("WASINFER_TRUST_KEYS", str(keys / "ci.pub"))
        monkeypatch.setenv("WASINFER_TRUST_MODE", "require")
        # Signed with the trusted key: pushed, then pulled and verified.
        monkeypatch.setenv("WASINFER_SIGNING_KEY", str(keys / "ci.key"))
        signed = run_json(capsys, "push", str(modules["v1"]), f"{ref}:1.0.0", "--plain-http", "--accuracy", "0.97")
        monkeypatch.delenv("WASINFER_SIGNING_KEY")
        pulled = run_json(capsys, "pull", f"{ref}:1.0.0", "-o", str(tmp_path / "ok.wasm"), "--plain-http")
        assert pulled["digest"] == signed["digest"]
        assert (tmp_path / "ok.wasm").read_bytes() == modules["v1"].read_bytes()
        # Unsigned: refused at push under "require", and at pull when someone else put it there.
        code, _, err = run(capsys, "push", str(modules["v2"]), f"{ref}:2.0.0", "--plain-http")
        assert code == 2 and "unsigned" in err
        monkeypatch.setenv("WASINFER_TRUST_MODE", "off")
        assert run(capsys, "push", str(modules["v2"]), f"{ref}:2.0.0", "--plain-http")[0] == 0
        monkeypatch.setenv("WASINFER_TRUST_MODE", "require")
        code, _, err = run(capsys, "pull", f"{ref}:2.0.0", "-o", str(tmp_path / "unsigned.wasm"), "--plain-http")
        assert code == 2 and "unsigned" in err and not (tmp_path / "unsigned.wasm").exists()
        # Signed by a key this node does not trust.
        monkeypatch.setenv("WASINFER_TRUST_MODE", "off")
        monkeypatch.setenv("WASINFER_SIGNING_KEY", str(strangers / "someone.key"))
        assert run(capsys, "push", str(modules["v2"]), f"{ref}:3.0.0", "--plain-http")[0] == 0
        monkeypatch.delenv("WASINFER_SIGNING_KEY")
        monkeypatch.setenv("WASINFER_TRUST_MODE", "require")
        code, _, err = run(capsys, "pull", f"{ref}:3.0.0", "-o", str(tmp_path / "stranger.wasm"), "--plain-http")
        assert code == 2 and "signed by unknown key" in err and not (tmp_path / "stranger.wasm").exists()
        # Signed and trusted, but the shipped accuracy policy denies it.
        monkeypatch.setenv("WASINFER_SIGNING_KEY", str(keys / "ci.key"))
        code, _, err = run(capsys, "push", str(modules["v2"]), f"{ref}:4.0.0", "--plain-http", "--accuracy", "0.2")
        assert code == 2 and "by policy" in err and "accuracy" in err
        tags = json.loads(httpx_get(f"http://{registry.address}/v2/team/scale/tags/list"))["tags"]
        assert "4.0.0" not in tags and {"1.0.0", "2.0.0", "3.0.0"} <= set(tags)
        # On the registry itself: list what it holds, promote, and roll the alias back one version.
        monkeypatch.setenv("WASINFER_SIGNING_KEY", str(keys / "ci.key"))
        run_json(capsys, "push", str(modules["v2"]), f"{ref}:1.1.0", "--plain-http", "--accuracy", "0.98")
        run_json(capsys, "models", "promote", ref, "1.1.0", "--plain-http")
        shown = run_json(capsys, "models", "show", ref, "--plain-http")
        assert shown["aliases"] == {"stable": "1.1.0"}
        assert [v["version"] for v in shown["versions"]] == ["1.0.0", "1.1.0", "2.0.0", "3.0.0"]
        rolled = run_json(capsys, "models", "rollback", ref, "--plain-http")
        assert (rolled["previous"], rolled["version"]) == ("1.1.0", "1.0.0")
        assert run_json(capsys, "models", "show", ref, "--plain-http")["aliases"] == {"stable": "1.0.0"}
        code, _, err = run(capsys, "models", "rollback", ref, "--plain-http")
        assert code == 2 and "no earlier version" in err
        # The verified version goes through promote and rollback in the local store as well.
        monkeypatch.delenv("WASINFER_SIGNING_KEY")
        assert run_json(capsys, "pull", f"{ref}:1.0.0", "--plain-http")["store"] == "local store"
        run_json(capsys, "models", "promote", "team/scale", "1.0.0")
        shown = run_json(capsys, "models", "show", "team/scale")
        assert shown["aliases"]["stable"] == "1.0.0"


def httpx_get(url: str) -> str:
    import httpx

    return httpx.get(url, timeout=10).text


def test_a_signed_manifest_re_tagged_in_the_registry_is_refused(home: Path, modules: dict[str, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15 row 8: a signature covers the name and version, not the tag; a copy of a signed manifest under
    another tag or repository verified, and was pulled and stored as accepted."""
    from tests.registry.registry_server import run_registry
    from wasinfer.registry.admission import Refused
    from wasinfer.registry.artifact import ModelArtifact
    from wasinfer.registry.fetch import PLAIN_HTTP_ENV, fetch_artifact
    from wasinfer.registry.oci import OciClient
    from wasinfer.registry.trust import sign

    keys = tmp_path / "keys"
    # the legacy annotation signature (read for one more release); tests/registry/test_model_signing.py does
    # the same with model-signing bundles
    run_json(capsys, "keys", "generate", "--dir", str(keys), "--name", "ci", "--kind", "ed25519")
    monkeypatch.setenv("WASINFER_TRUST_KEYS", str(keys / "ci.pub"))
    monkeypatch.setenv("WASINFER_TRUST_MODE", "require")
    monkeypatch.setenv(PLAIN_HTTP_ENV, "1")
    with run_registry(tmp_path / "registry") as registry:
        signed_ref = f"{registry.address}/team/signed"
        monkeypatch.setenv("WASINFER_SIGNING_KEY", str(keys / "ci.key"))
        pushed = run_json(capsys, "push", str(modules["v1"]), f"{signed_ref}:1.0.0", "--plain-http")
        monkeypatch.delenv("WASINFER_SIGNING_KEY")
        run_json(capsys, "models", "promote", signed_ref, "1.0.0", "--alias", "stable", "--plain-http")
        # What someone with write access to the registry (and no key) can do: copy the manifest elsewhere.
        edge = sign(ModelArtifact.from_module(modules["v2"].read_bytes(), "team/signed", "5.0.0"), keys / "ci.key")
        with OciClient(registry.address, plain_http=True) as client:
            client.tag("team/signed", pushed["digest"], "2.0.0")
            artifact = client.pull("team/signed", "1.0.0")
            client.push_manifest("team/other", "3.1.4", artifact.manifest(), artifact.blobs())
            client.push("team/signed", "edge", edge)  # signed as 5.0.0, but no 5.0.0 tag names it

        for reference, says in (
                (f"{signed_ref}:2.0.0", "signed as version 1.0.0, but was fetched as team/signed:2.0.0"),
                (f"{registry.address}/team/other:3.1.4", "signed as team/signed:1.0.0, but was fetched as "
                                                          "team/other:3.1.4"),
                (f"{signed_ref}:edge", "team/signed:edge is not an alias of the signed version 5.0.0")):
            code, _, err = run(capsys, "pull", reference, "--plain-http")
            assert code == 2 and says in err, err
            code, _, err = run(capsys, "pull", reference, "--plain-http", "-o", str(tmp_path / "copy.wasm"))
            assert code == 2 and says in err and not (tmp_path / "copy.wasm").exists(), err
            repository, _, tag = reference.rpartition(":")
            with pytest.raises(Refused, match=says):  # the server's desired-state fetch: the same gate
                fetch_artifact(repository, tag)
        assert LocalStore(home / "store").models() == []  # nothing was stored

        # What the signature names is still pulled: by its version, by an alias that points at it, by digest.
        for reference in (f"{signed_ref}:1.0.0", f"{signed_ref}:stable", f"{signed_ref}@{pushed['digest']}"):
            pulled = run_json(capsys, "pull", reference, "--plain-http")
            assert (pulled["name"], pulled["version"], pulled["digest"]) == ("team/signed", "1.0.0", pushed["digest"])
        assert fetch_artifact(signed_ref, "stable").version == "1.0.0"
        store = LocalStore(home / "store")
        assert store.models() == ["team/signed"] and [v.version for v in store.versions("team/signed")] == ["1.0.0"]

        # Under warn the copy is accepted, and the warning says what it is.
        monkeypatch.setenv("WASINFER_TRUST_MODE", "warn")
        code, _, err = run(capsys, "pull", f"{signed_ref}:2.0.0", "--plain-http", "-o", str(tmp_path / "warned.wasm"))
        assert code == 0 and "signed as version 1.0.0" in err
