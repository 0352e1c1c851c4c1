"""The desired state from a ConfigMap watched through the Kubernetes API (`--desired-state k8s://NS/NAME`).

A mounted ConfigMap reaches a pod when the kubelet next syncs its volumes (a minute or more, plus
its cache's TTL), so 50 servers take up to minutes to agree on a new version. A watch on the
object itself hears of a change as soon as etcd has it: one GET at start (the state, and the
resourceVersion to watch from), then a watch of that one object (a field selector on its name).

The watch is a long-lived request the API server ends on its own (--min-request-timeout, about 30
minutes; here at most `watch_seconds`), and then resumes from the last resourceVersion seen.
When that version has been compacted away the server answers 410 Gone: the watcher GETs the
object again (which also picks up whatever changed meanwhile) and watches from there. Any other
failure (the API server restarting, a network cut) is retried with exponential backoff, from half
a second up to 30 s, each time from a fresh GET. Throughout, the last good state keeps serving; a
deleted ConfigMap or one with invalid content is logged and ignored, as for a mounted one.

Credentials: in a pod, its service account (KUBERNETES_SERVICE_HOST and the mounted token; the
chart's Role grants get/list/watch on the one ConfigMap); elsewhere $KUBECONFIG or ~/.kube/config.
The `kubernetes` client comes with the serve extra and is imported only for this source.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasinfer.extras import missing_extra
from wasinfer.serving.desired import (
    ConfigMapRef,
    DesiredSource,
    DesiredState,
    DesiredStateError,
    DesiredStateWatcher,
    desired_from_mapping,
)

if TYPE_CHECKING:
    from kubernetes.client import CoreV1Api, V1ConfigMap

log = logging.getLogger("wasinfer.serving")

FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 30.0
WATCH_SECONDS = 300  # one watch request's lifetime (the server may end it sooner); then it resumes
REQUEST_TIMEOUT_SECONDS = 10.0  # the GET, and connecting for a watch
_NOTHING = object()  # no event since the last check (a deleted ConfigMap offers None)


def open_source(source: Path | ConfigMapRef, environ: Mapping[str, str] | None = None) -> DesiredSource:
    """The source --desired-state names: a ConfigMap through the API, or a file or mounted directory."""
    if isinstance(source, ConfigMapRef):
        return ConfigMapWatcher(source, environ)
    return DesiredStateWatcher(source, environ)


def core_api(environ: Mapping[str, str] | None = None) -> CoreV1Api:
    """A client with the pod's service account inside a cluster, else the kubeconfig ($KUBECONFIG, ~/.kube/config)."""
    try:
        from kubernetes import client, config
    except ModuleNotFoundError as exc:
        raise DesiredStateError(missing_extra(exc, "serve") or str(exc)) from None
    environ = os.environ if environ is None else environ
    configuration = client.Configuration()
    try:
        if environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(config_file=environ.get("KUBECONFIG") or None,  # type: ignore[no-untyped-call]
                                    client_configuration=configuration)
    except Exception as exc:  # ConfigException, or a kubeconfig that is not YAML / misses a key
        raise DesiredStateError(f"no Kubernetes credentials (in-cluster service account, $KUBECONFIG or "
                                f"~/.kube/config): {exc}") from None
    return client.CoreV1Api(client.ApiClient(configuration))


def _resource_version(found: V1ConfigMap, otherwise: str) -> str:
    return (found.metadata.resource_version if found.metadata is not None else None) or otherwise


class ConfigMapWatcher(DesiredSource):
    """The ConfigMap `ref`, kept current by a watch on a thread of its own; check() only reads memory."""

    poll_seconds = 0.05  # check() costs a lock; the update starts within this of the event's arrival

    def __init__(self, ref: ConfigMapRef, environ: Mapping[str, str] | None = None, api: CoreV1Api | None = None,
                 watch_seconds: int = WATCH_SECONDS):
        self.ref, self.environ, self.watch_seconds = ref, environ, watch_seconds
        self.api = api if api is not None else core_api(environ)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._latest: object = _NOTHING  # the newest event's data, not yet checked
        self._watch: Any = None  # the kubernetes Watch in progress (close() stops it)
        self.watch_requests = 0  # watches ended so far (expired, 410, failed or closed): for tests
        self.gone = 0  # of which ended with 410 Gone (the object read again)
        found = self._get()  # unreachable, forbidden or missing at start: the caller's error to report
        self.current = self._state(found.data)
        self._version = _resource_version(found, "")
        self._thread = threading.Thread(target=self._run, name=f"wasinfer-watch-{ref.name}", daemon=True)
        self._thread.start()

    def _state(self, data: Mapping[str, Any] | None) -> DesiredState:
        try:
            return desired_from_mapping(data or {}, self.environ)
        except DesiredStateError as exc:
            raise DesiredStateError(f"{self.ref}: {exc}") from None

    def _get(self) -> V1ConfigMap:
        from kubernetes.client.exceptions import ApiException

        try:
            found: V1ConfigMap = self.api.read_namespaced_config_map(
                self.ref.name, self.ref.namespace, _request_timeout=REQUEST_TIMEOUT_SECONDS)
        except ApiException as exc:
            raise DesiredStateError(self._refusal(exc)) from None
        except Exception as exc:  # urllib3's connection and TLS errors
            raise DesiredStateError(f"{self.ref}: cannot reach the Kubernetes API server: {exc}") from None
        return found

    def _refusal(self, exc: Any) -> str:
        if exc.status == 404:
            return f"{self.ref}: there is no ConfigMap {self.ref.name!r} in namespace {self.ref.namespace!r}"
        if exc.status in (401, 403):
            return (f"{self.ref}: the API server refused ({exc.status} {exc.reason}): the credentials need get, list "
                    "and watch on configmaps in that namespace (the chart's Role, docs/deploy.md)")
        return f"{self.ref}: the API server answered {exc.status} {exc.reason}"

    def check(self) -> bool:
        with self._lock:
            data, self._latest = self._latest, _NOTHING
        if data is _NOTHING:
            return False
        if not isinstance(data, dict):  # None: the ConfigMap was deleted
            return self._offer(self._deleted)
        return self._offer(lambda: self._state(data))

    def _deleted(self) -> DesiredState:
        raise DesiredStateError(f"{self.ref} was deleted")

    def close(self) -> None:
        """Ends the watch: its thread leaves at the next event or when the open request is cut here."""
        self._stopped.set()
        watch = self._watch
        if watch is not None:
            watch.stop()
            response = getattr(watch, "_resp", None)  # unblock the read now, rather than at the next event
            if response is not None and hasattr(response, "shutdown"):
                with contextlib.suppress(Exception):  # already closed by the watch's own thread
                    response.shutdown()
        self._thread.join(2.0)

    def _publish(self, data: Mapping[str, Any] | None) -> None:
        with self._lock:
            self._latest = dict(data) if data is not None else None

    def _run(self) -> None:
        backoff, failed, last_failure, gone_again = FIRST_RETRY_SECONDS, False, "", False
        while not self._stopped.is_set():
            try:
                if failed:  # events may have been missed: start again from the object as it is now
                    found = self._get()
                    self._publish(found.data or {})
                    self._version = _resource_version(found, self._version)
                    failed = False
                self._watch_once()
                backoff, last_failure, gone_again = FIRST_RETRY_SECONDS, "", False
            except Exception as exc:
                if self._stopped.is_set():
                    return
                status = getattr(exc, "status", None)
                failed = True
                if status == 410 and not gone_again:  # our version was compacted away: GET and watch again, at once
                    self.gone += 1
                    gone_again = True  # a second 410 in a row backs off like any failure
                    log.info("%s: watch expired (410 Gone); reading the ConfigMap again", self.ref)
                    continue
                reason = self._refusal(exc) if status is not None else str(exc)
                if reason != last_failure:
                    log.warning("%s: watch failed, retrying in %.1f s (the last good state keeps serving): %s",
                                self.ref, backoff, reason)
                last_failure = reason
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, MAX_RETRY_SECONDS)
            finally:
                self.watch_requests += 1

    def _watch_once(self) -> None:
        """One watch request from the last resourceVersion, until the server ends it (or close())."""
        from kubernetes import watch

        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in self._watch.stream(
                    self.api.list_namespaced_config_map, self.ref.namespace,
                    field_selector=f"metadata.name={self.ref.name}", resource_version=self._version,
                    allow_watch_bookmarks=True, timeout_seconds=self.watch_seconds,
                    _request_timeout=(REQUEST_TIMEOUT_SECONDS, self.watch_seconds + 30)):
                kind, found = event["type"], event["object"]
                self._version = _resource_version(found, self._version)
                if kind in ("ADDED", "MODIFIED"):
                    self._publish(found.data or {})
                elif kind == "DELETED":
                    self._publish(None)
                if self._stopped.is_set():
                    return
        finally:
            self._watch = None
