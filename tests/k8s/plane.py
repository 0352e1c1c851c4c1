"""A real Kubernetes control plane for the tests: etcd, kube-apiserver, controller-manager and scheduler
v1.20.2 on 127.0.0.1, with one fake Node whose pods a fake kubelet marks Running.

No package registry ships kube-apiserver, k3s or kwok; Debian bookworm's `kubernetes` source
package builds them with Debian's Go. build.sh (beside this file) does that once, into
$K8S_CACHE/bin (default ~/.cache/k8s-1.20, outside the repository), and every later run reuses the
binaries; kubectl comes from the same tree, so client and server are the same version. start.sh
and stop.sh run the processes (each under `timeout`, so none outlives a crashed test session by
more than K8S_LIFETIME seconds); fake_kubelet.py is the kubelet stand-in. docs/deploy.md, "A real
control plane in the tests", says how to run them by hand.

The tests never build or fetch anything themselves (the build downloads Debian's source package):
.ci/run runs build.sh before the suite, as it installs the Debian packages other tests need, and
`ensure_binaries` raises CannotBuild, which the tests turn into a skip naming the command, where the
binaries or etcd are absent. benchmarks/cluster_sim.py --control-plane builds them on first use
(`build=True`) and uses the same plane.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("K8S_CACHE", str(Path.home() / ".cache" / "k8s-1.20")))
BUILD_TIMEOUT = 3600  # ~8 min on 2 idle cores; several times that on a loaded machine
START_TIMEOUT = 240
LIFETIME = 1800  # no process of a plane lives longer than this, whatever happens to the test session
CANNOT_BUILD = 3  # build.sh's exit status when a prerequisite cannot be installed


def wait_for(what: str, condition: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    """`condition()`'s first truthy value, asked every `every` seconds; TimeoutError naming `what` after `timeout`
    (the API server's controllers, the fake kubelet and the servers all settle in their own time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:g} s")


class CannotBuild(RuntimeError):
    """build.sh cannot install what it needs here (the message has its reason)."""


BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


def ensure_binaries(build: bool = False) -> Path:
    """$K8S_CACHE/bin with the four binaries; with `build`, built first where missing (cached between runs)."""
    if not build:
        missing = [b for b in BINARIES if not os.access(CACHE / "bin" / b, os.X_OK)]
        if missing or not _on_path("etcd"):
            raise CannotBuild(f"no {', '.join(missing) or 'etcd'} (built into {CACHE}/bin by tests/k8s/build.sh, "
                              "which .ci/run runs before the suite; etcd from Debian's etcd-server)")
        return CACHE / "bin"
    log = CACHE / "build.log"
    CACHE.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        result = subprocess.run(["bash", str(HERE / "build.sh")], stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, K8S_CACHE=str(CACHE)), timeout=BUILD_TIMEOUT)
    tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
    if result.returncode == CANNOT_BUILD:
        raise CannotBuild(f"cannot build kube-apiserver here (tests/k8s/build.sh): {tail.strip()}")
    assert result.returncode == 0, f"tests/k8s/build.sh failed ({log}):\n{tail}"
    return CACHE / "bin"


def _on_path(command: str) -> bool:
    return any(os.access(Path(d) / command, os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep) if d)


def _free_port_run(count: int) -> int:
    """The first of `count` consecutive free loopback ports (start.sh takes the base port and the next ones)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count >= 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no {count} consecutive free loopback ports")


@dataclass(frozen=True)
class ControlPlane:
    """A running plane: its kubeconfig (admin, system:masters) and the matching kubectl."""

    run_dir: Path
    kubeconfig: Path
    kubectl_path: Path
    api_url: str
    etcd_url: str

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig), K8S_CACHE=str(CACHE), K8S_RUN=str(self.run_dir))

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 120,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(self.kubectl_path), *args], input=stdin, capture_output=True, text=True,
                                env=self.env, timeout=timeout)
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr or result.stdout}"
        return result

    def apply(self, objects: list[dict[str, Any]], namespace: str | None = None,
              check: bool = True) -> subprocess.CompletedProcess[str]:
        """`kubectl apply --server-side` of the objects (a v1 List), as `deploy render | kubectl apply` would."""
        args = ["apply", "--server-side", "--field-manager", "wasinfer-tests", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        return self.kubectl(*args, stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
                            check=check)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def namespace(self, name: str) -> str:
        self.kubectl("create", "namespace", name)
        return name

    def service_account_kubeconfig(self, namespace: str, account: str, path: Path, timeout: float = 60) -> Path:
        """A kubeconfig with the service account's token (what a pod's mounted token gives its server), written to
        `path`: the token controller's Secret, waited for (bounded)."""
        deadline = time.monotonic() + timeout
        while not (secrets := self.get("serviceaccount", account, "-n", namespace).get("secrets")):
            assert time.monotonic() < deadline, f"no token for {namespace}/{account} within {timeout} s"
            time.sleep(1)
        secret = self.get("secret", secrets[0]["name"], "-n", namespace)
        token = base64.b64decode(secret["data"]["token"]).decode()
        admin = yaml.safe_load(self.kubeconfig.read_text())
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"], "current-context": "server",
            "contexts": [{"name": "server", "context": {"cluster": admin["clusters"][0]["name"], "user": account,
                                                         "namespace": namespace}}],
            "users": [{"name": account, "user": {"token": token}}]}))
        return path

    def fake_kubelet(self, seconds: int, pod_ips: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Marks pods on fake-node-* Running for `seconds` seconds (fake_kubelet.py), then exits by itself;
        `pod_ips`: node name → the IP its pods get."""
        ips = [f"--pod-ip={node}={address}" for node, address in (pod_ips or {}).items()]
        return subprocess.Popen([sys.executable, str(HERE / "fake_kubelet.py"), "--seconds", str(seconds), *ips],
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@contextmanager
def control_plane(run_dir: Path, controllers: bool = True, apiserver_args: str = "",
                  address: str = "127.0.0.1") -> Iterator[ControlPlane]:
    """Start a plane with its state in `run_dir`; stop it (by PID) on leaving, however the block ends.
    Without `controllers`: etcd and the API server only (objects, watches; no pods). `address`: the one address
    the API server listens on (its certificate names it), e.g. a private bridge's for clients in namespaces."""
    bin_dir = ensure_binaries()
    base = _free_port_run(5)  # etcd client + peer, apiserver, controller-manager, scheduler
    env = dict(os.environ, K8S_CACHE=str(CACHE), K8S_RUN=str(run_dir), ETCD_PORT=str(base), API_PORT=str(base + 2),
               K8S_LIFETIME=str(LIFETIME), CONTROLLERS="1" if controllers else "0", K8S_APISERVER_ARGS=apiserver_args,
               API_ADDRESS=address)
    try:
        started = subprocess.run(["bash", str(HERE / "start.sh")], capture_output=True, text=True, env=env,
                                 timeout=START_TIMEOUT)
        assert started.returncode == 0, f"start.sh failed: {started.stderr}\n{_logs(run_dir)}"
        kubeconfig = run_dir / "kubeconfig"
        server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        yield ControlPlane(run_dir, kubeconfig, bin_dir / "kubectl", server, f"http://127.0.0.1:{base}")
    finally:
        subprocess.run(["bash", str(HERE / "stop.sh")], env=env, timeout=60, check=False)


def _logs(run_dir: Path) -> str:
    return "\n".join(f"--- {log.name}\n" + "".join(log.read_text(errors="replace").splitlines(keepends=True)[-10:])
                     for log in sorted(run_dir.glob("*.log")))
