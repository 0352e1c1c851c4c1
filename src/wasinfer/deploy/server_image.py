"""The container image of `wasinfer serve` itself, built without a Docker daemon, the way distroless images are.

The Helm chart and `deploy render` run this image (docs/deploy.md, "The server image"). No daemon and
no base image are needed, so it builds wherever Python, pip and apt are (a CI runner, this repository's
test machine); the Dockerfile at the repository's root is the equivalent for people who have Docker.

Three layers, each a tar written here with every varying field fixed, so the same inputs always give
the same digest:

1. Debian bookworm's Python 3.11 runtime, taken from `.deb` files (`dpkg-deb --fsys-tarfile`, the
   tar that `dpkg-deb -x` extracts) of a locked package list, deploy/image/debian.lock. No maintainer
   script runs, so what they would have made is made here instead: /etc/passwd and /etc/group with
   the non-root user 65532, the CA bundle (update-ca-certificates' concatenation), and one
   /var/lib/dpkg/status.d/NAME per package, which image scanners read to know what is installed.
   Documentation other than the copyright files is left out.
2. The Python dependencies of `wasinfer[serve]`: cp311 manylinux x86_64 wheels installed by
   `pip install --target` with no index, into /usr/local/lib/python3.11/dist-packages (on Debian's
   sys.path).
3. The wasinfer wheel, and /usr/local/bin/wasinfer (the console script, with Debian's interpreter in
   its shebang: pip's would name the build machine's).

The build never fetches. `fetch` fills a cache directory of .debs and wheels first: the closure of the
runtime packages from `apt-cache depends`, downloaded at the lock's versions with `apt-get download`,
and the wheels with `pip download`. Packages that only maintainer scripts need (debconf, perl, the
openssl command, dpkg, install-info) are not in the closure: nothing runs those scripts.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wasinfer.deploy.image import (
    CONFIG_MEDIA_TYPE,
    DESCRIPTION,
    LAYER_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    PACKAGER,
    TITLE,
    VERSION,
    canonical_json,
)
from wasinfer.deploy.render import STATE_DIR
from wasinfer.fileio import atomic_write
from wasinfer.registry.artifact import sha256_digest
from wasinfer.version import __version__

IMAGE_NAME = "wasinfer-server"  # the repository name the docs and the chart's default use
# The packages the runtime needs by name; their dependency closure comes from apt. netbase gives
# /etc/services and /etc/protocols (getaddrinfo with service names); libstdc++6 is for wheels that
# link it rather than bundle it.
ROOTS = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "ca-certificates", "netbase",
         "libstdc++6", "libgcc-s1", "libuuid1", "libsqlite3-0", "libffi8", "libexpat1", "zlib1g", "libssl3",
         "libbz2-1.0", "liblzma5", "libc6")
# Needed only by maintainer scripts, which a daemonless build does not run.
SCRIPT_ONLY = frozenset({"debconf", "cdebconf", "perl", "perl-base", "openssl", "dpkg", "install-info"})
PYTHON = "/usr/bin/python3.11"
SITE_PACKAGES = "usr/local/lib/python3.11/dist-packages"
USER_ID = 65532  # distroless' nonroot, and the chart's runAsUser / runAsGroup / fsGroup
HTTP_PORT, GRPC_PORT = 8000, 8001
# The chart's container command is the same ["wasinfer", "serve"], with its own args; the Dockerfile has these too.
ENTRYPOINT = ("wasinfer", "serve")
CMD = ("--host", "0.0.0.0", "--model-repository", "/models")
ENV = ("PATH=/usr/local/bin:/usr/bin:/bin", f"HOME={STATE_DIR}", f"WASINFER_HOME={STATE_DIR}",
       "PYTHONDONTWRITEBYTECODE=1",  # the root filesystem is read-only in the pod, and bytecode would vary
       "PYTHONUNBUFFERED=1", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt")
# pip takes manylinux platforms literally: every glibc bookworm satisfies (2.36 down to 2.17), and the old names.
PLATFORMS = (*(f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)), "manylinux2014_x86_64",
             "manylinux2010_x86_64", "manylinux1_x86_64")
WHEEL_TARGET = ("--only-binary=:all:", *(arg for p in PLATFORMS for arg in ("--platform", p)),
                "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--abi", "abi3",
                "--abi", "none")
LEFT_OUT = ("usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/lintian/", "usr/share/locale/")

# Image labels of our own (OCI's keys come from deploy/image.py).
SOURCE = "org.opencontainers.image.source"
REVISION = "org.opencontainers.image.revision"
LOCK_DIGEST = "dev.wasinfer.debian.lock.digest"  # sha256:<hex> of deploy/image/debian.lock
DEBIAN_PACKAGES = "dev.wasinfer.debian.packages"  # name=version, comma-separated, in lock order
WHEELS = "dev.wasinfer.wheels"  # name-version of each wheel in layers 2 and 3, comma-separated

class ToolFailed(OSError):
    """apt, dpkg-deb or pip failed, or gave what the lock does not allow: the CLI prints it in one line."""


def _run_bytes(argv: Sequence[str], cwd: Path | None = None) -> bytes:
    """A build tool's stdout; its stderr in the error when it fails."""
    done = subprocess.run(list(argv), capture_output=True, check=False, cwd=cwd)
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()[-2000:]
        raise ToolFailed(f"{' '.join(argv[:3])} ... failed ({done.returncode}): {stderr}")
    return done.stdout


def _run(argv: Sequence[str], cwd: Path | None = None) -> str:
    return _run_bytes(argv, cwd).decode()


# --- the lock ------------------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class DebianPackage:
    """One line of the lock: a package pinned to the exact .deb (by its SHA-256)."""

    name: str
    version: str
    architecture: str
    sha256: str


LOCK_HEADER = ("# The Debian bookworm packages of the wasinfer server image (docs/deploy.md, \"The server image\").\n"
               "# Written by `wasinfer package --server --fetch --update-lock`; the build takes exactly these\n"
               "# .debs (checked by SHA-256). Columns: name version architecture sha256.\n")


def format_lock(packages: Iterable[DebianPackage]) -> str:
    return LOCK_HEADER + "".join(f"{p.name} {p.version} {p.architecture} {p.sha256}\n" for p in sorted(packages))


def parse_lock(text: str, where: str = "debian.lock") -> list[DebianPackage]:
    packages = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 4 or not re.fullmatch(r"[0-9a-f]{64}", fields[3]):
            raise ValueError(f"{where}:{number}: expected 'name version architecture sha256', got {line!r}")
        packages.append(DebianPackage(*fields))
    if not packages:
        raise ValueError(f"{where}: lists no packages")
    return sorted(packages)


# --- fetching the inputs (the only step that uses the network) --------------------------------------

def closure(roots: Sequence[str]) -> list[str]:
    """The runtime closure of `roots` as apt resolves it: Depends and Pre-Depends, first alternatives.

    `apt-cache depends --recurse` lists every alternative; apt installs the first one that exists, so
    the walk follows that one only (media-types, not mime-support and its perl). A virtual package
    stands for its first provider.
    """
    text = _run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                "--no-breaks", "--no-replaces", "--no-enhances", *roots])
    groups: dict[str, list[list[str]]] = {}
    providers: dict[str, list[str]] = {}
    current, dependency, alternatives = "", "", False
    for line in text.splitlines():
        if not line.startswith(" "):
            current, dependency, alternatives = line.strip(), "", False
            groups.setdefault(current, [])
            continue
        match = re.match(r"^ (\|| )(PreDepends|Depends): (\S+)", line)
        if match:
            dependency = match[3]
            if alternatives:
                groups[current][-1].append(dependency)
            else:
                groups[current].append([dependency])
            alternatives = match[1] == "|"
        elif line.startswith("    ") and dependency.startswith("<"):  # a virtual dependency's providers
            providers.setdefault(dependency, []).append(line.strip())
        else:
            dependency = ""  # Recommends and the like, when asked for, end a dependency's provider list

    def real(name: str) -> str | None:
        if name.startswith("<"):
            return next(iter(providers.get(name, [])), None)
        return name

    wanted: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in wanted or name in SCRIPT_ONLY:
            continue
        wanted.add(name)
        for group in groups.get(name, []):
            choice = next((r for r in map(real, group) if r is not None), None)
            if choice is not None:
                pending.append(choice)
    return sorted(wanted)


def _deb_fields(path: Path) -> tuple[str, str, str]:
    out = _run(["dpkg-deb", "--show", "--showformat=${Package} ${Version} ${Architecture}\n", str(path)])
    name, version, architecture = out.split()
    return name, version, architecture


def fetch(debs: Path, wheels: Path, lock: Path, source: Path, update_lock: bool = False) -> list[DebianPackage]:
    """Fill the cache: the lock's .debs into `debs`, the wheels of `wasinfer[serve]` and wasinfer's into `wheels`.

    With `update_lock` (or no lock yet) the closure is computed again and the lock rewritten with the
    versions apt has now; otherwise each package is downloaded at the lock's version and must match
    its SHA-256. The .deb and .whl files already in the directories are replaced.
    """
    if not (source / "pyproject.toml").is_file() or not (source / "src" / "wasinfer").is_dir():
        raise ValueError(f"--source {source}: not a wasinfer source tree (pyproject.toml and src/wasinfer/)")
    debs.mkdir(parents=True, exist_ok=True)
    wheels.mkdir(parents=True, exist_ok=True)
    for stale in [*debs.glob("*.deb"), *wheels.glob("*.whl")]:
        stale.unlink()
    pinned = None if update_lock or not lock.is_file() else parse_lock(lock.read_text(), str(lock))
    wanted = [f"{p.name}={p.version}" for p in pinned] if pinned else closure(ROOTS)
    try:
        _run(["apt-get", "download", "-q", *wanted], cwd=debs)
    except ToolFailed as exc:
        if pinned:
            raise ToolFailed(f"{exc}; the archive no longer has a locked version: run again with --update-lock "
                             f"to lock what apt has now, and commit {lock}") from None
        raise
    found = []
    for path in sorted(debs.glob("*.deb")):
        name, version, architecture = _deb_fields(path)
        found.append(DebianPackage(name, version, architecture, hashlib.sha256(path.read_bytes()).hexdigest()))
    if pinned:
        changed = sorted(set(pinned) - set(found))
        if changed:
            raise ToolFailed(f"downloaded .debs differ from {lock}: {', '.join(p.name for p in changed)}")
    else:
        atomic_write(lock, format_lock(found).encode())
    target = _build_wheel(source, wheels)
    _run([sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels), *WHEEL_TARGET, f"{target}[serve]"])
    return found


def _build_wheel(source: Path, wheels: Path) -> Path:
    """`pip wheel --no-deps` of a clean copy of the source (what the Dockerfile copies too).

    In the checkout itself setuptools would reuse its build/ directory, where a module deleted from
    src/ lives on and would go into the wheel; the copy also leaves the checkout as it was.
    """
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    with tempfile.TemporaryDirectory() as scratch:
        tree, out = Path(scratch) / "src-tree", Path(scratch) / "out"
        shutil.copytree(source / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        # the npm package's files, which the wheel carries as data files (`wasinfer demo --web` serves them)
        shutil.copytree(source / "js", tree / "js", ignore=shutil.ignore_patterns("node_modules", "test"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(source / name, tree / name)
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(out), str(tree)])
        (built,) = out.glob("wasinfer-*.whl")
        return Path(shutil.copy2(built, wheels / built.name))


# --- the layers ----------------------------------------------------------------------------------

@dataclass
class _Entry:
    info: tarfile.TarInfo
    data: bytes | None = None


def _normalised(info: tarfile.TarInfo, name: str, uid: int = 0) -> tarfile.TarInfo:
    out = tarfile.TarInfo(name)
    out.type, out.mode, out.linkname = info.type, info.mode & 0o7777, info.linkname
    out.size = info.size if info.isreg() else 0
    out.mtime, out.uid, out.gid, out.uname, out.gname = 0, uid, uid, "", ""
    return out


def _directory(name: str, mode: int = 0o755, uid: int = 0) -> _Entry:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return _Entry(_normalised(info, name, uid))


def _file(name: str, data: bytes, mode: int = 0o644) -> _Entry:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return _Entry(_normalised(info, name), data)


def _tar(entries: dict[str, _Entry]) -> bytes:
    """Sorted entries, each parent directory before its children, fixed mtime/owner: the same files, the same bytes."""
    for name in list(entries):
        parent = os.path.dirname(name)
        while parent and parent not in entries:
            entries[parent] = _directory(parent)
            parent = os.path.dirname(parent)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            entry = entries[name]
            tar.addfile(entry.info, io.BytesIO(entry.data) if entry.data is not None else None)
    return out.getvalue()


def _index_debs(debs: Path) -> dict[str, Path]:
    return {hashlib.sha256(path.read_bytes()).hexdigest(): path for path in sorted(debs.glob("*.deb"))}


def debian_layer(packages: Sequence[DebianPackage], debs: Path) -> bytes:
    """Layer 1: the locked packages' files, the user, the CA bundle and the dpkg status records."""
    by_digest = _index_debs(debs)
    entries: dict[str, _Entry] = {}
    for package in packages:
        path = by_digest.get(package.sha256)
        if path is None:
            raise ValueError(f"--debs {debs}: no .deb of {package.name} {package.version} (sha256 "
                             f"{package.sha256[:12]}...): run `wasinfer package --server --fetch` to fill the cache")
        control = _run(["dpkg-deb", "--field", str(path)])
        entries[f"var/lib/dpkg/status.d/{package.name}"] = _file(f"var/lib/dpkg/status.d/{package.name}",
                                                                 control.encode())
        data = _run_bytes(["dpkg-deb", "--fsys-tarfile", str(path)])
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                name = os.path.normpath(member.name).lstrip("./")
                if name in ("", ".") or (name.startswith(LEFT_OUT) and not name.endswith("/copyright")):
                    continue
                if member.islnk():  # a hard link becomes a copy: sorting may put it before its target
                    target = entries[os.path.normpath(member.linkname).lstrip("./")]
                    entries[name] = _Entry(_normalised(target.info, name), target.data)
                elif member.isdir():
                    entries.setdefault(name, _Entry(_normalised(member, name)))
                else:
                    extracted = tar.extractfile(member) if member.isreg() else None
                    entries[name] = _Entry(_normalised(member, name), extracted.read() if extracted else None)
    certificates = sorted(name for name in entries if name.startswith("usr/share/ca-certificates/")
                          and name.endswith(".crt"))
    bundle = b"".join((entries[name].data or b"").rstrip(b"\n") + b"\n" for name in certificates)
    entries["etc/ssl/certs/ca-certificates.crt"] = _file("etc/ssl/certs/ca-certificates.crt", bundle)
    entries["etc/passwd"] = _file("etc/passwd", f"root:x:0:0:root:/root:/sbin/nologin\n"
                                  f"nonroot:x:{USER_ID}:{USER_ID}:wasinfer:{STATE_DIR}:/sbin/nologin\n".encode())
    entries["etc/group"] = _file("etc/group", f"root:x:0:\nnonroot:x:{USER_ID}:\n".encode())
    entries["tmp"] = _directory("tmp", 0o1777)
    state = STATE_DIR.strip("/")
    entries[state] = _directory(state, 0o755, USER_ID)  # $HOME and $WASINFER_HOME; an emptyDir in the pod
    entries["models"] = _directory("models")  # the default --model-repository (Cmd); the chart mounts its volume here
    return _tar(entries)


def _tree_layer(root: Path) -> bytes:
    """A directory tree as a layer: owner root, mode 0755 for directories and executables, else 0644."""
    entries: dict[str, _Entry] = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_symlink():
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
            entries[name] = _Entry(_normalised(info, name))
        elif path.is_dir():
            entries[name] = _directory(name)
        else:
            executable = path.stat().st_mode & 0o111
            entries[name] = _file(name, path.read_bytes(), 0o755 if executable else 0o644)
    return _tar(entries)


def _wheel_requirement(wheel: Path) -> str:
    """name==version of a wheel file (PEP 427 names: distribution-version-...)."""
    name, version = wheel.name.split("-")[:2]
    return f"{name}=={version}"


def _pip_install(wheels: Sequence[Path], stage: Path) -> None:
    """Install wheels for the image's Python, not this one's; --isolated: no user config, no index, no bytecode.

    By name from --find-links, not by path: a wheel installed by path gets a direct_url.json naming
    the path and the wheel file's hash, which would make the image depend on where the cache is
    and on the zip's timestamps.
    """
    target = stage / SITE_PACKAGES
    _run([sys.executable, "-m", "pip", "--isolated", "install", "-q", "--no-index", "--no-deps", "--no-compile",
         "--disable-pip-version-check", "--find-links", str(wheels[0].parent), "--target", str(target),
         *WHEEL_TARGET, *map(_wheel_requirement, wheels)])
    scripts = target / "bin"  # pip's console scripts, with this machine's interpreter in their shebangs
    if scripts.is_dir():
        for script in scripts.iterdir():
            script.unlink()
        scripts.rmdir()


CONSOLE_SCRIPT = f"""#!{PYTHON}
import sys

from wasinfer.cli.main import main

sys.exit(main())
"""


def python_layers(wheels: Path) -> tuple[bytes, bytes, list[str]]:
    """Layers 2 (dependencies) and 3 (wasinfer and its console script), and the name-version of each wheel."""
    found = sorted(wheels.glob("*.whl"))
    own = [path for path in found if path.name.startswith("wasinfer-")]
    if len(own) != 1:
        raise ValueError(f"--wheels {wheels}: expected exactly one wasinfer-*.whl, found {len(own)}: run "
                         "`wasinfer package --server --fetch` to fill the cache")
    dependencies = [path for path in found if path not in own]
    if not dependencies:
        raise ValueError(f"--wheels {wheels}: no dependency wheels: run `wasinfer package --server --fetch`")
    with tempfile.TemporaryDirectory() as scratch:
        stage2, stage3 = Path(scratch) / "deps", Path(scratch) / "wasinfer"
        _pip_install(dependencies, stage2)
        _pip_install(own, stage3)
        script = stage3 / "usr" / "local" / "bin" / "wasinfer"
        script.parent.mkdir(parents=True)
        script.write_text(CONSOLE_SCRIPT)
        script.chmod(0o755)
        names = ["-".join(path.name.split("-")[:2]) for path in found]
        return _tree_layer(stage2), _tree_layer(stage3), names


# --- the image -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServerImage:
    """Config, layers (tar+gzip) and manifest of the server image; `digest` is what a tag names."""

    config: bytes
    layers: tuple[bytes, ...]
    manifest: bytes
    labels: dict[str, str]

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    def blobs(self) -> dict[str, bytes]:
        return {sha256_digest(self.config): self.config, **{sha256_digest(layer): layer for layer in self.layers}}

    @property
    def size(self) -> int:
        """Bytes a pull transfers (config, compressed layers, manifest)."""
        return len(self.config) + sum(map(len, self.layers)) + len(self.manifest)


def _git(source: Path, *argv: str) -> str | None:
    done = subprocess.run(["git", "-C", str(source), *argv], capture_output=True, text=True, check=False)
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def git_revision(source: Path) -> str | None:
    """The commit checked out in `source`, for the revision label; None outside a git checkout."""
    return _git(source, "rev-parse", "HEAD")


def git_origin(source: Path) -> str | None:
    """The `origin` remote's URL of `source`, for the source label; None when there is none (no URL is made up)."""
    return _git(source, "remote", "get-url", "origin")


def build_server_image(debs: Path, wheels: Path, lock: Path, version: str | None = None,
                       revision: str | None = None, source_url: str | None = None) -> ServerImage:
    """The image from the cache (never the network): the same cache, lock and labels, the same digest."""
    lock_bytes = lock.read_bytes() if lock.is_file() else None
    if lock_bytes is None:
        raise ValueError(f"{lock}: no such lock file: `wasinfer package --server --fetch --update-lock` writes it")
    packages = parse_lock(lock_bytes.decode(), str(lock))
    debian = debian_layer(packages, debs)
    dependencies, own, wheel_names = python_layers(wheels)
    tars = [debian, dependencies, own]
    own_version = next(name.split("-")[1] for name in wheel_names if name.startswith("wasinfer-"))
    labels = {
        TITLE: IMAGE_NAME,
        DESCRIPTION: "wasinfer serve: KServe v2 REST (8000) and gRPC (8001) inference server for WebAssembly models",
        VERSION: version or own_version,
        PACKAGER: f"wasinfer {__version__}",
        LOCK_DIGEST: sha256_digest(lock_bytes),
        DEBIAN_PACKAGES: ",".join(f"{p.name}={p.version}" for p in packages),
        WHEELS: ",".join(wheel_names),
    }
    if revision:
        labels[REVISION] = revision
    if source_url:
        labels[SOURCE] = source_url
    layers = tuple(gzip.compress(tar, compresslevel=6, mtime=0) for tar in tars)
    config = canonical_json({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": f"{USER_ID}:{USER_ID}",
            "Entrypoint": list(ENTRYPOINT),
            "Cmd": list(CMD),
            "Env": list(ENV),
            "ExposedPorts": {f"{HTTP_PORT}/tcp": {}, f"{GRPC_PORT}/tcp": {}},
            "WorkingDir": STATE_DIR,
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar) for tar in tars]},
        "history": [{"created_by": f"wasinfer {__version__} package --server: {what}"} for what in
                    ("Debian bookworm runtime from debian.lock", "wasinfer[serve] dependency wheels",
                     "the wasinfer wheel")],
    })
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": sha256_digest(layer), "size": len(layer)}
                   for layer in layers],
        "annotations": labels,
    })
    return ServerImage(config, layers, manifest, labels)
