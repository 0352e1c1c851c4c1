"""`wasinfer package`: the OCI image of a model's WASI command, pushed to a real registry (Debian's
docker-registry on loopback) and read back by a client no one here wrote, Debian's `skopeo`.

crun is not run: Debian's crun is built without WasmEdge, so it cannot run a module. The module
that comes out of the image is run instead by two WASI engines, Node's and wasmtime's, which must
write the same outputs as the ABI's wasmtime run.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from tests.artifact.engines import NODE_PROBLEM, PLAIN, mlp_case
from tests.artifact.test_wasi import npy_stream, read_npy_stream, run_node_wasi, run_wasmtime_wasi
from tests.registry.registry_server import Registry, bcrypt_entry, run_registry
from wasinfer.artifact import convert_onnx
from wasinfer.artifact.metadata import function_exports
from wasinfer.cli.main import main
from wasinfer.deploy.image import build_image
from wasinfer.runtime import WasmModel

SKOPEO = shutil.which("skopeo")
requires_skopeo = pytest.mark.skipif(SKOPEO is None, reason="needs Debian's skopeo package (.ci/run installs it)")
CASE = mlp_case()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The MLP as ONNX, compiled with --wasi (what goes into the image) and without (refused)."""
    root = tmp_path_factory.mktemp("models")
    onnx.save(CASE.model, root / "mlp.onnx")
    (root / "mlp.wasm").write_bytes(convert_onnx(CASE.model, max_batch=CASE.max_batch, name="mlp", wasi=True).wasm)
    (root / "plain.wasm").write_bytes(convert_onnx(CASE.model, max_batch=CASE.max_batch, name="mlp").wasm)
    return {"onnx": root / "mlp.onnx", "wasm": root / "mlp.wasm", "plain": root / "plain.wasm"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def package(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "package", *argv, "--json")
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def skopeo(*args: str) -> bytes:
    assert SKOPEO is not None
    done = subprocess.run([SKOPEO, *args], capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def layer_members(layer: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer)), mode="r:") as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else b"") for m in tar.getmembers()]  # type: ignore[union-attr]


def layout_blob(layout: Path, digest: str) -> bytes:
    data = (layout / "blobs" / "sha256" / digest.partition(":")[2]).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


@requires_skopeo
def test_pushed_image_as_skopeo_sees_it(files: dict[str, Path], registry: Registry,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    ref = f"{registry.address}/edge/mlp:1.0.0"
    pushed = package(capsys, str(files["wasm"]), "--image", ref, "--plain-http")
    assert pushed["image"] == ref and not pushed["compiled"]
    module_digest = "sha256:" + hashlib.sha256(files["wasm"].read_bytes()).hexdigest()
    assert pushed["module_digest"] == module_digest
    where = f"docker://{ref}"

    raw = skopeo("inspect", "--tls-verify=false", "--raw", where)
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == pushed["digest"], "the registry kept the exact bytes"
    manifest = json.loads(raw)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/vnd.oci.image.layer.v1.tar+gzip"]
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat-smart"
    assert manifest["annotations"]["dev.wasinfer.module.digest"] == module_digest

    config = json.loads(skopeo("inspect", "--tls-verify=false", "--config", where))
    assert (config["architecture"], config["os"]) == ("wasm", "wasip1")
    assert config["config"]["Entrypoint"] == ["/model.wasm"]
    assert len(config["rootfs"]["diff_ids"]) == 1

    summary = json.loads(skopeo("inspect", "--tls-verify=false", where))
    assert summary["Digest"] == pushed["digest"]
    assert (summary["Architecture"], summary["Os"]) == ("wasm", "wasip1")
    assert summary["Layers"] == [manifest["layers"][0]["digest"]]
    labels = summary["Labels"]
    assert labels["org.opencontainers.image.title"] == "mlp"
    assert labels["org.opencontainers.image.version"] == "1.0.0"
    assert labels["module.wasm.image/variant"] == "compat-smart"
    assert labels["dev.wasinfer.packager"].startswith("wasinfer ")
    assert labels["dev.wasinfer.source.digest"].startswith("sha256:")


@requires_skopeo
def test_copied_image_holds_only_the_module_and_it_runs_in_two_engines(
        files: dict[str, Path], registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = f"{registry.address}/edge/mlp:copy"
    package(capsys, str(files["wasm"]), "--image", ref, "--plain-http")
    copied = tmp_path / "copied"
    skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{copied}:copy")
    (entry,) = json.loads((copied / "index.json").read_text())["manifests"]
    manifest = json.loads(layout_blob(copied, entry["digest"]))
    (layer,) = manifest["layers"]
    members = layer_members(layout_blob(copied, layer["digest"]))
    assert [m.name for m, _ in members] == ["model.wasm"]
    info, module = members[0]
    assert module == files["wasm"].read_bytes()
    assert (info.mode, info.uid, info.gid, info.mtime) == (0o755, 0, 0, 0)

    feeds = CASE.inputs(3)
    want = WasmModel(convert_onnx(CASE.model, max_batch=CASE.max_batch).wasm, PLAIN).run(feeds)
    status, wasmtime_out, stderr = run_wasmtime_wasi(module, npy_stream(*feeds.values()), tmp_path / "wasmtime")
    assert status == 0, stderr
    for (name, expected), actual in zip(want.items(), read_npy_stream(wasmtime_out, len(want)), strict=True):
        assert actual.shape == expected.shape and np.array_equal(actual, expected), name
    if NODE_PROBLEM is not None:
        pytest.skip(f"the second engine: {NODE_PROBLEM}")
    status, node_out, stderr = run_node_wasi(module, npy_stream(*feeds.values()), tmp_path / "node")
    assert status == 0, stderr
    assert node_out == wasmtime_out


@requires_skopeo
def test_same_module_same_digest_in_layout_and_registry(files: dict[str, Path], registry: Registry, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Packaging is reproducible: two layouts, a push, and skopeo reading the layout all agree."""
    first = package(capsys, str(files["wasm"]), "--output", str(tmp_path / "a"), "--version", "2.0.0")
    second = package(capsys, str(files["wasm"]), "--output", str(tmp_path / "b"), "--version", "2.0.0")
    pushed = package(capsys, str(files["wasm"]), "--image", f"{registry.address}/edge/mlp:2.0.0", "--plain-http")
    assert first["digest"] == second["digest"] == pushed["digest"]
    assert first["tag"] == "2.0.0" and first["output"] == str(tmp_path / "a") and first["image"] is None
    for name in ("index.json", "oci-layout"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert json.loads(skopeo("inspect", f"oci:{tmp_path / 'a'}:2.0.0"))["Digest"] == first["digest"]

    other = package(capsys, str(files["wasm"]), "--output", str(tmp_path / "a"), "--version", "2.0.1")
    assert other["digest"] != first["digest"], "the version is part of the image's annotations"
    tags = [m["annotations"]["org.opencontainers.image.ref.name"]
            for m in json.loads((tmp_path / "a" / "index.json").read_text())["manifests"]]
    assert tags == ["2.0.0", "2.0.1"], "an existing layout keeps its other tags"


def test_a_module_without_wasi_is_refused(files: dict[str, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "package", str(files["plain"]), "--output", str(tmp_path / "layout"))
    assert code == 2 and out == ""
    assert "not a WASI command" in err and "wasinfer convert --wasi" in err
    assert not (tmp_path / "layout").exists()
    with pytest.raises(ValueError, match="no _start export"):
        build_image(files["plain"].read_bytes())


def test_a_source_model_is_compiled_with_wasi(files: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    made = package(capsys, str(files["onnx"]), "--output", str(tmp_path / "layout"), "--max-batch", "4",
                   "--name", "scorer")
    assert made["compiled"] and made["tag"] == "latest"
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    manifest = json.loads(layout_blob(tmp_path / "layout", index["manifests"][0]["digest"]))
    assert manifest["annotations"]["org.opencontainers.image.title"] == "scorer"
    assert "org.opencontainers.image.version" not in manifest["annotations"]  # "latest" is not a version
    ((_, module),) = layer_members(layout_blob(tmp_path / "layout", manifest["layers"][0]["digest"]))
    assert "_start" in function_exports(module)
    assert module == files["wasm"].read_bytes(), "the same bytes as `wasinfer convert --wasi --max-batch 4`"


@pytest.mark.parametrize(("argv", "message"), [
    (["--image", "edge/mlp:1.0.0"], "must name a registry host"),
    (["--image", "127.0.0.1:5000/edge/mlp@sha256:" + "0" * 64], "not a digest"),
    ([], "nothing to do"),
    (["--output", "{tmp}/layout", "--max-batch", "2"], "compiled already"),
    (["--output", "{tmp}/not-a-layout"], "not empty and not an OCI image layout"),
])
def test_bad_input_exits_2(argv: list[str], message: str, files: dict[str, Path], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "not-a-layout").mkdir()
    (tmp_path / "not-a-layout" / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "package", str(files["wasm"]), *(a.replace("{tmp}", str(tmp_path)) for a in argv))
    assert code == 2 and message in err, err
    assert [p.name for p in (tmp_path / "not-a-layout").iterdir()] == ["notes.txt"]


def test_not_a_wasinfer_module_or_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.wasm").write_bytes(b"\x00asm\x01\x00\x00\x00")
    (tmp_path / "notes.onnx").write_text("not a model")
    for name, message in (("empty.wasm", "not a wasinfer module"), ("notes.onnx", "not an ONNX model")):
        code, _, err = run(capsys, "package", str(tmp_path / name), "--output", str(tmp_path / "layout"))
        assert code == 2 and name in err and message in err, err
    assert not (tmp_path / "layout").exists()


@requires_skopeo
def test_push_with_credentials_like_wasinfer_push(files: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    entry = bcrypt_entry("alice", "s3cret")
    if entry is None:
        pytest.skip("no bcrypt hasher here (the bcrypt package, Python's crypt module, or apache2-utils' htpasswd)")
    (tmp_path / "htpasswd").write_text(entry + "\n")
    auth = {"htpasswd": {"realm": "wasinfer-test", "path": str(tmp_path / "htpasswd")}}
    with run_registry(tmp_path / "registry", auth) as secured:
        ref = f"{secured.address}/edge/mlp:1.0.0"
        monkeypatch.setattr("sys.stdin", io.StringIO("wrong\n"))
        code, _, err = run(capsys, "package", str(files["wasm"]), "--image", ref, "--plain-http",
                           "--username", "alice", "--password-stdin")
        assert code == 2 and "refused the credentials of user 'alice'" in err, err
        monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
        pushed = package(capsys, str(files["wasm"]), "--image", ref, "--plain-http", "--username", "alice",
                         "--password-stdin")
        summary = json.loads(skopeo("inspect", "--tls-verify=false", "--creds", "alice:s3cret", f"docker://{ref}"))
        assert summary["Digest"] == pushed["digest"]
