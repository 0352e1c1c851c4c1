"""Keeps one served model at its desired version: fetch → check → compile (cached) → warm up → swap → drain.

The new version is written into the model repository as the next integer version (a temp
directory renamed into place, so the repository never shows half a module), with the desired
state's version in its `version` file (repository.py), so that it is served under that name
("1.1.0", not "2"); loaded beside the
serving one, and warmed up with a smoke inference. Only then does it become the default, in one
step (`ModelManager.make_default`); the old version is dropped after the swap, and requests
already running on it finish there. Any failure before the swap leaves the old version serving,
removes the candidate, and is reported (log, `wasinfer_model_updates_total{outcome="failed"}`,
`status`). The last `keep` versions stay on disk, so `rollback` is one load and one swap.

The worker processes of one node (`serve --workers`) each run an updater over the same repository
directory: an update runs under a file lock there, and a state one worker has fetched and installed
is served by the others from disk (one fetch and one install per version for the node).

Where the bytes come from is a `Fetcher`: a module file today (the seed's `model_path:
/models/ai-model.wasm`); the local store and OCI registries plug in the same way.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wasinfer.artifact.metadata import read_metadata
from wasinfer.fileio import atomic_write, file_lock
from wasinfer.registry.artifact import sha256_digest
from wasinfer.runtime import TensorSpec
from wasinfer.serving.desired import DesiredSource, DesiredState
from wasinfer.serving.metrics import Metrics, quantile
from wasinfer.serving.models import LoadedModel, ModelManager
from wasinfer.serving.protocol import numpy_dtype
from wasinfer.serving.repository import VERSION_FILE, VERSION_NAME

log = logging.getLogger("wasinfer.serving")

# Beside the model's directory (".NAME" + these; the repository lists no dot names): the lock the node's worker
# processes take to update it one at a time, and the last fetch (which state, when, by which process, installed as
# which version), for the others to reuse (ModelUpdater._fetch_once).
NODE_LOCK = ".update.lock"
FETCH_RECORD = ".fetched.json"


@dataclass(frozen=True)
class Fetched:
    wasm: bytes
    digest: str  # sha256:<hex> of the module
    label: str  # what the operator asked for, for logs and status ("v1.0.0", a file name)
    version: str = ""  # the version's name to serve it under (the desired or the registry's version); "": none


Fetcher = Callable[[DesiredState], Fetched]


class UpdateError(Exception):
    """An update that was refused or failed; the serving version is untouched."""


def fetch_file(state: DesiredState) -> Fetched:
    """`model_path` names a module file on this node (a volume, as in the seed's Deployment)."""
    path = Path(state.model_path)
    try:
        wasm = path.read_bytes()
    except OSError as exc:
        raise UpdateError(f"cannot read model_path {path}: {exc}") from None
    try:
        read_metadata(wasm)
    except ValueError as exc:
        raise UpdateError(f"{path} is not a wasinfer module: {exc}") from None
    return Fetched(wasm, sha256_digest(wasm), state.model_version or path.name, state.model_version or "")


def model_name_of(model_path: str) -> str:
    """The served name: the file's stem (ai-model.wasm → ai-model), or a reference's last path component."""
    last = model_path.rstrip("/").rsplit("/", 1)[-1]
    stem = last.rsplit(".", 1)[0] if last.endswith((".wasm", ".onnx")) else last.split("@")[0].split(":")[0]
    return stem or "model"


@dataclass(frozen=True)
class CanaryPolicy:
    """How a new version earns the default: a share of the traffic for a bake window, judged against the old one.

    It is rolled back at once when, over the window so far, the share of its requests that the
    model failed (500s and deadlines, not clients' mistakes) exceeds `max_error_rate`, or its p99
    latency exceeds `max_p99_factor` times the serving version's over the same window (once each
    has `min_requests`); it is promoted when the window ends without a breach.
    """

    percent: float = 10.0
    bake_seconds: float = 60.0
    max_error_rate: float = 0.01
    max_p99_factor: float = 2.0
    min_requests: int = 20


@dataclass
class _Canary:
    model: LoadedModel
    version: int
    digest: str
    label: str
    started: float
    candidate_base: tuple[int, int, list[int]]
    stable_base: tuple[int, int, list[int]]


@dataclass
class UpdateStatus:
    state: str = "starting"  # serving, canary (a candidate takes a share), failed (the old version serves), starting
    version: int | None = None  # repository version serving now
    digest: str = ""
    label: str = ""
    reason: str = ""
    served_as: str = ""  # the serving version's name as clients see it ("1.1.0"; its number without a name)


def smoke_inputs(model: LoadedModel) -> dict[str, np.ndarray]:
    """Zeros of every input's shape, batch 1 and each symbolic dim at its smallest (1 may be outside its range):
    enough to instantiate and run every kernel once."""
    def size(spec: TensorSpec, axis: int, d: int) -> int:
        return d if d >= 0 else spec.ranges[axis][0] if axis in spec.ranges else 1

    return {t.name: np.zeros([size(t.spec, axis, d) for axis, d in enumerate(t.shape)],
                             numpy_dtype(t.datatype, t.name)) for t in model.inputs}


class ModelUpdater:
    def __init__(self, manager: ModelManager, metrics: Metrics, name: str, fetch: Fetcher = fetch_file,
                 keep: int = 3, canary: CanaryPolicy | None = None):
        self.manager, self.metrics, self.name, self.fetch, self.keep = manager, metrics, name, fetch, max(2, keep)
        self.canary_policy = canary
        self.directory = manager.repository.root / name
        self.node_lock = manager.repository.root / f".{name}{NODE_LOCK}"
        self.fetch_record = manager.repository.root / f".{name}{FETCH_RECORD}"
        self.status = UpdateStatus()
        self._lock = threading.Lock()  # one update at a time
        self._canary: _Canary | None = None
        self._rejected: set[str] = set()  # digests a canary rolled back: not tried again
        self._desired = ""  # the version label the latest desired state names

    def _versions(self) -> list[int]:
        return sorted(self.manager.repository.versions(self.name))

    def _served_as(self, version: int | None) -> str:
        """A repository version's name as clients and the metrics see it (repository.py's `version` file)."""
        found = self.manager.repository.versions(self.name).get(version) if version is not None else None
        return found.version_name if found is not None else str(version)

    def _name_for(self, fetched: Fetched, version: int) -> str:
        """The name to serve a new version under: the desired one. Another version on disk of that name with other
        bytes (the same version name for a new module) makes it "NAME+N" (N its directory's number, semver's build
        metadata), so that two different modules are never one version in the metrics a canary is judged by; the
        same bytes again (a rollback by desired state) keep the name. "" for no name or an unusable one."""
        if not fetched.version or VERSION_NAME.fullmatch(fetched.version) is None:
            if fetched.version:
                log.warning("model %s: desired version %r is not a version name; version %d is served as its "
                            "number", self.name, fetched.version, version)
            return ""
        for found in self.manager.repository.versions(self.name).values():
            if found.version_name == fetched.version:
                try:
                    same = sha256_digest(found.path.read_bytes()) == fetched.digest
                except OSError:
                    same = False
                if not same:
                    return f"{fetched.version[:56]}+{version}"
        return fetched.version

    def apply(self, state: DesiredState) -> UpdateStatus:
        """Bring the model to `state`; a no-op when the fetched module is the one serving."""
        with self._lock:
            # until a fetch names it (the registry's version for an untagged reference), the state's own words
            self._desired = state.model_version or Path(state.model_path).name
            try:
                return self._apply(state)
            finally:
                self.metrics.model_version(self.name, self.status.label, self._desired)

    def _apply(self, state: DesiredState) -> UpdateStatus:
        started = time.perf_counter()
        try:
            with file_lock(self.node_lock):  # one worker process of the node at a time
                return self._apply_locked(state, started)
        except OSError as exc:
            self._failed(f"cannot lock {self.node_lock}: {exc}")
            return self.status

    def _fetch_once(self, state: DesiredState) -> tuple[Fetched, int | None]:
        """The desired module and the repository version already holding it (None: not installed yet).

        The worker processes of a node (serve --workers) each keep the model at its desired state; the first to
        apply a state fetches and installs it and notes that in the fetch record, and the others, within the state's
        update interval, serve what it installed instead of fetching the same bytes again. A process never reuses its
        own record: alone, it fetches as often as it did before workers existed."""
        try:
            record = json.loads(self.fetch_record.read_text())
            fresh = time.time() - float(record["fetched_at"]) < state.update_interval
            if fresh and record["pid"] != os.getpid() and record["state"] == [state.model_path, state.model_version]:
                version = int(record["version"])
                wasm = (self.directory / str(version) / "model.wasm").read_bytes()
                if sha256_digest(wasm) == record["digest"]:
                    return Fetched(wasm, record["digest"], record["label"], record["name"]), version
        except (OSError, ValueError, KeyError, TypeError):
            pass  # none yet, or its version pruned or refused since: fetch
        fetched = self.fetch(state)
        self.metrics.fetch(self.name)
        return fetched, None

    def _record_fetch(self, state: DesiredState, fetched: Fetched, version: int) -> None:
        record = {"state": [state.model_path, state.model_version], "fetched_at": time.time(), "pid": os.getpid(),
                  "version": version,
                  "digest": fetched.digest, "label": fetched.label, "name": fetched.version}
        atomic_write(self.fetch_record, json.dumps(record).encode())

    def _apply_locked(self, state: DesiredState, started: float) -> UpdateStatus:
        try:
            fetched, installed = self._fetch_once(state)
            self._desired = fetched.label
            if fetched.digest == self.status.digest and self.status.state == "serving":
                return self.status
            if self._canary is not None and fetched.digest == self._canary.digest:
                return self.status  # already baking
            if fetched.digest in self._rejected:
                raise UpdateError(f"{fetched.label} ({fetched.digest}) was rolled back by its canary; the "
                                  "desired state has to name another version")
            self._abandon_canary()
            version = installed if installed is not None else self._install(fetched)
            if installed is None:
                self._record_fetch(state, fetched, version)
            if self.canary_policy is not None and self.status.version is not None:
                self._start_canary(version, fetched)
                return self.status
            self._swap_to(version, fetched.digest, fetched.label)
        except UpdateError as exc:
            self._failed(str(exc))
        else:
            self.metrics.update(self.name, "ok", time.perf_counter() - started)
            log.info("model %s now serves %s (version %d, %s)", self.name, fetched.label, version, fetched.digest)
        return self.status

    # --- canary -------------------------------------------------------------------------------

    def _start_canary(self, version: int, fetched: Fetched) -> None:
        policy = self.canary_policy
        assert policy is not None
        model = self._warmed(version, fetched.label)
        stable = self._served_as(self.status.version)
        self._canary = _Canary(model, version, fetched.digest, fetched.label, time.monotonic(),
                               self.metrics.health(self.name, model.version), self.metrics.health(self.name, stable))
        self.manager.start_canary(self.name, model, policy.percent / 100)
        self.status = UpdateStatus("canary", self.status.version, self.status.digest, self.status.label,
                                   f"{fetched.label} (version {version}) takes {policy.percent:g}% of the traffic",
                                   self.status.served_as)
        log.info("model %s: canary %s (version %d) takes %g%% of the traffic for %g s", self.name, fetched.label,
                 version, policy.percent, policy.bake_seconds)

    def tick(self) -> UpdateStatus:
        """Judge a running canary: roll it back on a breach, promote it when its bake window ends."""
        with self._lock:
            canary, policy = self._canary, self.canary_policy
            if canary is None or policy is None:
                return self.status
            breach = self._breach(canary, policy)
            if breach:
                self._rejected.add(canary.digest)
                self._abandon_canary()
                self._failed(f"canary {canary.label} (version {canary.version}) rolled back: {breach}")
                self.metrics.update(self.name, "rollback", 0.0)
            elif time.monotonic() - canary.started >= policy.bake_seconds:
                self.manager.end_canary(self.name)
                self._canary = None
                try:
                    self._swap_to(canary.version, canary.digest, canary.label)
                except UpdateError as exc:  # it held its traffic but fails now: the old version stays
                    self._failed(str(exc))
                else:
                    self.metrics.update(self.name, "ok", time.monotonic() - canary.started)
                    log.info("model %s: canary %s promoted", self.name, canary.label)
            self.metrics.model_version(self.name, self.status.label, self._desired)
            return self.status

    def _breach(self, canary: _Canary, policy: CanaryPolicy) -> str:
        """Why the canary must go, or "" while it holds (both measured since it started)."""
        def since(now: tuple[int, int, list[int]], base: tuple[int, int, list[int]]) -> tuple[int, int, list[int]]:
            return now[0] - base[0], now[1] - base[1], [a - b for a, b in zip(now[2], base[2], strict=True)]

        requests, failures, buckets = since(self.metrics.health(self.name, canary.model.version), canary.candidate_base)
        if failures > policy.max_error_rate * max(requests, policy.min_requests):
            return (f"it failed {failures} of {requests} requests, over the {policy.max_error_rate:.1%} allowed "
                    f"(over at least {policy.min_requests})")
        stable = since(self.metrics.health(self.name, self._served_as(self.status.version)), canary.stable_base)
        if sum(buckets) >= policy.min_requests and sum(stable[2]) >= policy.min_requests:
            mine, theirs = quantile(buckets, 0.99), quantile(stable[2], 0.99)
            if mine > policy.max_p99_factor * theirs:
                return (f"its p99 latency (≤ {mine * 1000:g} ms) is over {policy.max_p99_factor:g}x the serving "
                        f"version's (≤ {theirs * 1000:g} ms)")
        return ""

    def _abandon_canary(self) -> None:
        canary, self._canary = self._canary, None
        if canary is not None:
            self.manager.end_canary(self.name)
            self.manager.drop_version(self.name, canary.version)
            shutil.rmtree(self.directory / str(canary.version), ignore_errors=True)

    def resume(self) -> UpdateStatus:
        """After a restart (a crash included): serve the newest version on disk that passes its warm-up.

        An update killed midway leaves at most a staging directory (removed here) or a version that
        was never warmed up (tried here like any other, and removed if it fails), never half a module.
        """
        with self._lock, file_lock(self.node_lock):  # not another worker's staging in progress
            if self.directory.is_dir():
                for stale in self.directory.glob(".incoming-*"):
                    shutil.rmtree(stale, ignore_errors=True)
            for version in reversed(self._versions()):
                wasm = (self.directory / str(version) / "model.wasm").read_bytes()
                try:
                    self._swap_to(version, sha256_digest(wasm), f"version {version} (resumed)")
                except UpdateError as exc:
                    log.warning("model %s: not resuming %s", self.name, exc)
                    shutil.rmtree(self.directory / str(version), ignore_errors=True)
                    continue
                log.info("model %s resumed on version %d", self.name, version)
                break
            return self.status

    def rollback(self) -> UpdateStatus:
        """Serve the version before the current one again, and forget the current one."""
        with self._lock:
            versions = self._versions()
            current = self.status.version
            older = [v for v in versions if current is None or v < current]
            if not older:
                raise UpdateError(f"model {self.name!r} has no earlier version to roll back to")
            target = older[-1]
            wasm = (self.directory / str(target) / "model.wasm").read_bytes()
            self._swap_to(target, sha256_digest(wasm), f"rollback to version {target}")
            if current is not None:
                shutil.rmtree(self.directory / str(current), ignore_errors=True)
            self.metrics.update(self.name, "rollback", 0.0)
            return self.status

    def _install(self, fetched: Fetched) -> int:
        """The module as the next repository version, renamed into place whole."""
        version = max(self._versions(), default=0) + 1
        self.directory.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.directory))
        try:
            atomic_write(staging / "model.wasm", fetched.wasm)
            named = self._name_for(fetched, version)
            if named:
                atomic_write(staging / VERSION_FILE, f"{named}\n".encode())
            os.rename(staging, self.directory / str(version))
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise UpdateError(f"cannot write version {version} of {self.name!r}: {exc}") from None
        return version

    def _warmed(self, version: int, label: str) -> LoadedModel:
        """The version loaded and run once; one that cannot load or run is dropped (and removed if new)."""
        try:
            model = self.manager.load_candidate(self.name, version)
            model.infer(smoke_inputs(model))
        except Exception as exc:  # a candidate that cannot load or run is refused, whatever the cause
            self.manager.drop_version(self.name, version)
            if version != self.status.version and version == max(self._versions(), default=0):
                shutil.rmtree(self.directory / str(version), ignore_errors=True)
            raise UpdateError(f"version {version} ({label}) failed its warm-up: {exc}") from None
        return model

    def _swap_to(self, version: int, digest: str, label: str) -> None:
        previous = self.status.version
        model = self._warmed(version, label)
        self.manager.make_default(self.name, model)
        if previous is not None and previous != version:
            self.manager.drop_version(self.name, previous)  # drain: requests on it finish there
        self.status = UpdateStatus("serving", version, digest, label, served_as=model.version)
        self._prune()

    def _prune(self) -> None:
        for old in self._versions()[:-self.keep]:
            shutil.rmtree(self.directory / str(old), ignore_errors=True)

    def _failed(self, reason: str) -> None:
        log.error("update of model %s refused; %s: %s", self.name,
                  f"version {self.status.version} keeps serving" if self.status.version else "nothing is served",
                  reason)
        self.metrics.update(self.name, "failed", 0.0)
        self.status = UpdateStatus("failed", self.status.version, self.status.digest, self.status.label, reason,
                                   self.status.served_as)


class DesiredStateLoop:
    """Applies the desired state at start, on every change of its source, and every `model_update_interval`.

    A failed update (a registry down, a refused version) is retried with exponential backoff, from
    one second up to the update interval, so an outage costs a few requests to the registry, and
    the server converges soon after it returns.
    """

    FIRST_RETRY_SECONDS = 1.0

    def __init__(self, watcher: DesiredSource, updater: ModelUpdater, poll_seconds: float | None = None):
        self.watcher, self.updater = watcher, updater
        self.poll_seconds = watcher.poll_seconds if poll_seconds is None else poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wasinfer-updates", daemon=True)
        self._due = 0.0
        self._backoff = self.FIRST_RETRY_SECONDS

    def start(self) -> DesiredStateLoop:
        self.updater.resume()  # the last good version serves at once, before any fetch
        self._apply()
        self._thread.start()
        return self

    def _apply(self) -> None:
        interval = self.watcher.current.update_interval
        if self.updater.apply(self.watcher.current).state == "failed":
            self._due = time.monotonic() + min(self._backoff, interval)
            self._backoff = min(self._backoff * 2, interval)
        else:
            self._due = time.monotonic() + interval
            self._backoff = self.FIRST_RETRY_SECONDS

    def stop(self) -> None:
        self._stop.set()
        self.watcher.close()
        if self._thread.is_alive():
            self._thread.join(self.poll_seconds + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.updater.tick()
                if self.watcher.check() or time.monotonic() >= self._due:
                    self._apply()
            except Exception:  # an update's failure is reported by apply; this keeps the loop alive regardless
                log.exception("the update loop of model %s failed", self.updater.name)
