"""`wasinfer package --server`: the server's own image, built from the cache of .debs and wheels, read back by
Debian's `skopeo`, built twice to the same digest, and run: its layers unpacked into a root filesystem where
`wasinfer serve` starts under chroot as user 65532 and answers the host on loopback.

No container runtime runs here, so chroot stands in for one: a mount namespace (`unshare --mount`) with the
image's tree read-only, empty writable $WASINFER_HOME and /tmp (the Deployment's emptyDirs), /dev and /proc,
the image's user and its Env, nothing from the host's Python. The cache comes from
`wasinfer package --server --fetch`, which .ci/run runs; without it the image tests skip, saying so.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from tests.processes import output_lines, read_until, stop
from tests.registry.registry_server import run_registry
from wasinfer.artifact import convert_onnx
from wasinfer.cli.main import main
from wasinfer.deploy.render import STATE_DIR, deployment
from wasinfer.deploy.server_image import (
    CMD,
    ENTRYPOINT,
    ENV,
    IMAGE_NAME,
    ROOTS,
    SCRIPT_ONLY,
    USER_ID,
    closure,
    parse_lock,
)
from wasinfer.deploy.values import defaults

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "deploy" / "image" / "debian.lock"
CACHE = ROOT / ".cache" / "server-image"
DEBS, WHEELS = CACHE / "debs", CACHE / "wheels"
SKOPEO = shutil.which("skopeo")
CACHE_ABSENT = not (any(DEBS.glob("*.deb")) and any(WHEELS.glob("wasinfer-*.whl")))
requires_cache = pytest.mark.skipif(
    CACHE_ABSENT or shutil.which("dpkg-deb") is None,
    reason=f"needs the server image's cache in {CACHE} (`wasinfer package --server --fetch` fills it; .ci/run runs "
           "it) and dpkg-deb")
requires_skopeo = pytest.mark.skipif(SKOPEO is None, reason="needs Debian's skopeo package (.ci/run installs it)")
TAG = "test"
SOURCE_URL = "https://git.example.com/wasinfer.git"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _cache_args(cache: Path = CACHE) -> list[str]:
    return ["--debs", str(cache / "debs"), "--wheels", str(cache / "wheels"), "--lock", str(LOCK),
            "--revision", "0" * 40, "--source-url", SOURCE_URL]


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The image built by the CLI into an OCI layout: (the layout, the digest it printed)."""
    if CACHE_ABSENT:
        pytest.skip(f"no server image cache in {CACHE}: run `wasinfer package --server --fetch`")
    directory = tmp_path_factory.mktemp("server-image") / "layout"
    code = main(["package", "--server", "--output", str(directory), "--version", TAG, "--json", *_cache_args()])
    assert code == 0
    index = json.loads((directory / "index.json").read_bytes())
    (entry,) = index["manifests"]
    return directory, entry["digest"]


def _blob(layout_dir: Path, digest: str) -> bytes:
    return (layout_dir / "blobs" / "sha256" / digest.partition(":")[2]).read_bytes()


def _manifest(layout_dir: Path, digest: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(_blob(layout_dir, digest))
    return document


# --- without the cache -------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="needs apt-cache (a Debian machine)")
def test_the_closure_is_the_runtime_the_lock_pins_without_the_maintainer_script_tools() -> None:
    names = closure(ROOTS)
    for wanted in ("python3.11-minimal", "libpython3.11-stdlib", "libc6", "libssl3", "libffi8", "ca-certificates",
                   "media-types", "libstdc++6"):
        assert wanted in names
    assert not set(names) & (SCRIPT_ONLY | {"mime-support", "mailcap", "perl-modules-5.36", "cdebconf"})
    assert names == [package.name for package in parse_lock(LOCK.read_text())]


def test_the_lock_is_read_strictly(tmp_path: Path) -> None:
    packages = parse_lock(LOCK.read_text())
    assert all(len(p.sha256) == 64 for p in packages) and packages == sorted(packages)
    with pytest.raises(ValueError, match=r"debian\.lock:4: expected 'name version architecture sha256'"):
        parse_lock("# header\n\nlibc6 2.36 amd64 " + "0" * 64 + "\nlibc6 2.36 amd64\n")
    with pytest.raises(ValueError, match="lists no packages"):
        parse_lock("# only a comment\n")


@pytest.mark.parametrize(("argv", "message"), [
    (["package", "--server", "model.wasm", "--output", "x"], "--server builds the server's image, which holds no "
                                                              "model: leave out 'model.wasm'"),
    (["package", "--server"], "nothing to do: give --fetch to fill the cache"),
    (["package", "--fetch", "--output", "x"], "--fetch fills the --server image's cache: add --server"),
    (["package", "--server", "--update-lock", "--output", "x"], "--update-lock needs --fetch"),
    (["package", "--output", "x"], "give MODEL (a module or a source model), or --server"),
    (["package", "--server", "--max-batch", "4", "--output", "x"], "apply to a model's image, not to --server"),
])
def test_package_server_refuses_what_does_not_apply(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                    message: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in " ".join(err.split())


def test_an_empty_cache_is_refused_naming_the_missing_package_and_the_command_that_fills_it(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "debs").mkdir()
    code, _, err = run(capsys, "package", "--server", "--output", str(tmp_path / "out"), "--debs",
                       str(tmp_path / "debs"), "--wheels", str(tmp_path / "wheels"), "--lock", str(LOCK))
    err = " ".join(err.split())
    assert code == 2
    assert "no .deb of ca-certificates" in err and "wasinfer package --server --fetch" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (a Debian machine)")
def test_fetch_with_a_version_the_archive_no_longer_has_says_to_update_the_lock(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """apt refuses the version from its lists, before any download: the message names the way out."""
    lock = tmp_path / "debian.lock"
    lock.write_text(f"libc6 0.0-0 amd64 {'0' * 64}\n")
    code, _, err = run(capsys, "package", "--server", "--fetch", "--lock", str(lock), "--debs", str(tmp_path / "d"),
                       "--wheels", str(tmp_path / "w"), "--source", str(ROOT))
    err = " ".join(err.split())
    assert code == 2
    assert "Version '0.0-0' for 'libc6' was not found" in err and "run again with --update-lock" in err
    assert lock.read_text() == f"libc6 0.0-0 amd64 {'0' * 64}\n"  # only --update-lock rewrites it


def test_fetch_refuses_a_source_that_is_not_wasinfer_before_touching_the_cache(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "debs").mkdir()
    kept = tmp_path / "debs" / "kept.deb"
    kept.write_bytes(b"not fetched by this run")
    code, _, err = run(capsys, "package", "--server", "--fetch", "--source", str(tmp_path), "--debs",
                       str(tmp_path / "debs"), "--wheels", str(tmp_path / "wheels"), "--lock", str(LOCK))
    assert code == 2
    assert f"--source {tmp_path}: not a wasinfer source tree" in " ".join(err.split())
    assert kept.is_file()


def test_the_chart_and_render_run_this_image_as_its_user_with_its_entrypoint() -> None:
    values = defaults()
    assert values["image"]["repository"].endswith(f"/{IMAGE_NAME}")
    chart = yaml.safe_load((ROOT / "deploy" / "helm" / "wasinfer" / "values.yaml").read_text())
    assert chart["image"]["repository"] == values["image"]["repository"]
    pod = deployment(values, "wasinfer")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["wasinfer", "serve"]  # the image's Entrypoint, found on its PATH
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == USER_ID
    assert {"name": "WASINFER_HOME", "value": STATE_DIR} in container["env"]


def test_the_dockerfile_gives_the_same_entrypoint_user_env_and_ports_as_the_daemonless_build() -> None:
    """The Dockerfile cannot be built here (no daemon): its instructions are held to the same config instead."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    final = text.split("FROM gcr.io/distroless/python3-debian12:nonroot", 1)[1]  # the runtime stage
    instructions = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in final.splitlines()
                    if line and not line.startswith("#") and line.split(None, 1)[0].isupper()}
    assert json.loads(instructions["ENTRYPOINT"]) == list(ENTRYPOINT)
    assert json.loads(instructions["CMD"]) == list(CMD)
    assert instructions["ENV"].split() == list(ENV)
    assert instructions["USER"] == f"{USER_ID}:{USER_ID}" and instructions["WORKDIR"] == STATE_DIR
    assert instructions["EXPOSE"].split() == ["8000", "8001"]


# --- the image -------------------------------------------------------------------------------------

@requires_cache
@requires_skopeo
def test_skopeo_reads_the_config_user_entrypoint_ports_and_labels(layout: tuple[Path, str]) -> None:
    directory, digest = layout
    assert SKOPEO is not None
    inspected = json.loads(subprocess.run([SKOPEO, "inspect", "--config", f"oci:{directory}:{TAG}"],
                                          capture_output=True, text=True, check=True, timeout=120).stdout)
    summary = json.loads(subprocess.run([SKOPEO, "inspect", f"oci:{directory}:{TAG}"], capture_output=True,
                                        text=True, check=True, timeout=120).stdout)
    assert summary["Digest"] == digest and len(summary["Layers"]) == 3
    assert (summary["Architecture"], summary["Os"]) == ("amd64", "linux")
    config = inspected["config"]
    assert config["User"] == f"{USER_ID}:{USER_ID}"
    assert config["Entrypoint"] == ["wasinfer", "serve"]
    assert config["ExposedPorts"] == {"8000/tcp": {}, "8001/tcp": {}}
    assert f"WASINFER_HOME={STATE_DIR}" in config["Env"] and f"HOME={STATE_DIR}" in config["Env"]
    assert "created" not in inspected and all("created" not in step for step in inspected["history"])
    labels = config["Labels"]
    lock = LOCK.read_bytes()
    assert labels["org.opencontainers.image.version"] == TAG
    assert labels["org.opencontainers.image.revision"] == "0" * 40
    assert labels["org.opencontainers.image.source"] == SOURCE_URL
    assert labels["dev.wasinfer.debian.lock.digest"] == f"sha256:{hashlib.sha256(lock).hexdigest()}"
    assert labels["dev.wasinfer.debian.packages"].split(",") == [
        f"{p.name}={p.version}" for p in parse_lock(lock.decode())]
    assert any(name.startswith("wasinfer-") for name in labels["dev.wasinfer.wheels"].split(","))


@requires_cache
def test_the_layers_are_deterministic_tars_with_the_runtime_the_dependencies_and_wasinfer(
        layout: tuple[Path, str]) -> None:
    directory, digest = layout
    layers = _manifest(directory, digest)["layers"]
    contents = []
    for layer in layers:
        with tarfile.open(fileobj=io.BytesIO(_blob(directory, layer["digest"]))) as tar:
            members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        assert all(m.mtime == 0 and m.uname == m.gname == "" for m in members)
        owned = {m.name for m in members if (m.uid, m.gid) != (0, 0)}
        assert owned <= {STATE_DIR.strip("/")}
        contents.append({m.name: m for m in members})
    debian, dependencies, own = contents
    assert "usr/bin/python3.11" in debian and "usr/lib/python3.11/ssl.py" in debian
    assert (debian[STATE_DIR.strip("/")].uid, debian["tmp"].mode) == (USER_ID, 0o1777)
    docs = [name for name, m in debian.items() if name.startswith("usr/share/doc/") and not m.isdir()]
    assert docs and all(name.endswith("/copyright") for name in docs)  # the licences stay, the rest goes
    assert any(name.startswith("usr/local/lib/python3.11/dist-packages/uvicorn/") for name in dependencies)
    assert not any("/wasinfer/" in name for name in dependencies)
    assert "usr/local/lib/python3.11/dist-packages/wasinfer/serving/server.py" in own
    assert own["usr/local/bin/wasinfer"].mode == 0o755
    # no record of the build machine's paths (pip's direct_url.json names the wheel file it installed)
    assert not [name for name in [*dependencies, *own] if name.endswith("/direct_url.json")]


@requires_cache
@requires_skopeo
def test_the_same_inputs_build_the_same_digest_which_a_push_keeps(layout: tuple[Path, str],
                                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                                  ) -> None:
    """A second build, from a copy of the cache elsewhere (where the cache lies is no input), pushed to Debian's
    docker-registry on loopback: the registry holds the layout's digest."""
    _, digest = layout
    shutil.copytree(CACHE, tmp_path / "cache")
    with run_registry(tmp_path / "registry") as registry:
        ref = f"{registry.address}/{IMAGE_NAME}"  # no tag: the image's version, as the chart's default tag is
        code, out, _ = run(capsys, "package", "--server", "--image", ref, "--plain-http", "--version", TAG,
                           "--json", *_cache_args(tmp_path / "cache"))
        assert code == 0
        pushed = json.loads(out)
        assert (pushed["digest"], pushed["image"]) == (digest, f"{ref}:{TAG}")
        assert SKOPEO is not None
        raw = subprocess.run([SKOPEO, "inspect", "--tls-verify=false", "--raw", f"docker://{ref}:{TAG}"],
                             capture_output=True, check=True, timeout=120).stdout
        assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == digest


# --- the image, run ----------------------------------------------------------------------------------

def _double_model() -> bytes:
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "double",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              [numpy_helper.from_array(np.full(4, 2.0, np.float32), "two")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return convert_onnx(model, max_batch=4, name="double").wasm


@pytest.fixture(scope="module")
def rootfs(layout: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The image's layers unpacked in order, as a container runtime would, plus a one-model repository."""
    directory, digest = layout
    root = tmp_path_factory.mktemp("rootfs")
    root.chmod(0o755)  # the image's /, which user 65532 must traverse (pytest makes its directories 0700)
    for layer in _manifest(directory, digest)["layers"]:
        with tarfile.open(directory / "blobs" / "sha256" / layer["digest"].partition(":")[2]) as tar:
            tar.extractall(root, filter="fully_trusted")  # our own image: its owners and modes are the point
    model = root / "models" / "double" / "1" / "model.wasm"
    model.parent.mkdir(parents=True)
    model.write_bytes(_double_model())
    for name in ("dev", "proc"):
        (root / name).mkdir(exist_ok=True)
    yield root
    shutil.rmtree(root)  # a quarter of a GiB; nothing stays mounted in it (the mounts were the server's own)


@pytest.fixture()
def served(rootfs: Path, layout: tuple[Path, str]) -> Iterator[tuple[str, str, int]]:
    """`wasinfer serve` as the image's config starts it (Entrypoint, User, Env), on loopback: (REST, gRPC, pid)."""
    if os.geteuid() != 0:
        pytest.skip("chroot needs root (a container runtime would run the image; none is here)")
    tools = [shutil.which(tool) for tool in ("unshare", "sh", "mount", "chroot")]
    if None in tools:
        pytest.skip("needs util-linux's unshare and mount, sh and coreutils' chroot")
    unshare, sh, mount, chroot = map(str, tools)
    directory, digest = layout
    config = json.loads(_blob(directory, _manifest(directory, digest)["config"]["digest"]))["config"]
    env = dict(entry.split("=", 1) for entry in config["Env"])
    user = config["User"]
    # The pod's filesystem, in a mount namespace of the server's own (gone when it exits): the image's tree
    # read-only (readOnlyRootFilesystem), empty writable directories at $WASINFER_HOME and /tmp (the
    # Deployment's emptyDirs), /dev and /proc as a runtime mounts them. No --fork: sh, chroot and the server
    # are one process, the one the test stops. The host's tools by absolute path: the environment is the
    # image's, whose PATH has none of them.
    state = STATE_DIR.strip("/")
    script = (f'root=$1 && user=$2 && shift 2 && {mount} --bind "$root" "$root" && '
              f'{mount} -o remount,bind,ro "$root" && {mount} -t tmpfs -o mode=0777 state "$root/{state}" && '
              f'{mount} -t tmpfs -o mode=1777 tmp "$root/tmp" && {mount} --rbind /dev "$root/dev" && '
              f'{mount} -t proc proc "$root/proc" && exec {chroot} --userspec="$user" "$root" "$@"')
    server = subprocess.Popen(
        [unshare, "--mount", sh, "-c", script, "sh", str(rootfs), user, *config["Entrypoint"],
         "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", "--model-repository", "/models"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**env, "COLUMNS": "200"},
        cwd=str(rootfs))
    try:
        printed = "".join(read_until(output_lines(server), "Press Ctrl+C", 120))
        rest = re.search(r"REST  (http://127\.0\.0\.1:\d+)/v2", printed)
        grpc = re.search(r"gRPC  (127\.0\.0\.1:\d+)", printed)
        assert rest and grpc, printed
        yield rest[1], grpc[1], server.pid
    finally:
        stop(server, 30)


@requires_cache
def test_the_image_serves_a_model_as_its_non_root_user_under_chroot(served: tuple[str, str, int],
                                                                    rootfs: Path) -> None:
    rest, grpc, pid = served
    status = Path(f"/proc/{pid}/status").read_text()
    assert f"Uid:\t{USER_ID}\t{USER_ID}\t" in status and f"Gid:\t{USER_ID}\t{USER_ID}\t" in status
    assert Path(f"/proc/{pid}/root").resolve() == rootfs.resolve()  # chroot: the image's tree is its /
    with httpx.Client(base_url=rest, timeout=60) as client:
        assert client.get("/v2/health/ready").status_code == 200
        answer = client.post("/v2/models/double/infer", json={"inputs": [
            {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.5]}]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == [2.0, 4.0, 6.0, 9.0]
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(grpc)
    try:
        assert client.is_server_ready() and client.is_model_ready("double")
    finally:
        client.close()
    # The server wrote its compiled-code cache to $WASINFER_HOME (seen through its own root), as its user,
    # and nothing into the image's tree, which was read-only to it.
    state = Path(f"/proc/{pid}/root") / STATE_DIR.strip("/")
    written = list(state.rglob("*"))
    print("written to $WASINFER_HOME:", sorted(str(path.relative_to(state)) for path in written))
    assert any(path.suffix == ".cwasm" for path in written)
    assert all(path.stat().st_uid == USER_ID for path in written)
    assert not list((rootfs / STATE_DIR.strip("/")).iterdir())
