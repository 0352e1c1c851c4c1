"""What a server should be serving, in the seed's ConfigMap keys, and a watch that notices changes.

The seed configures model version management with a ConfigMap:

    data:
      model_path: "/models/ai-model.wasm"     # a module file, or a model reference (store name or registry REF)
      model_version: "v1.0.0"                 # a version or an alias (stable, canary, latest); optional
      model_update_interval: "5m"             # how often to look for a new version
      cache_enabled: "true"                   # keep compiled code on disk between loads

and its Deployment sets `MODEL_PATH` in the environment, which wins over `model_path`. The source
may be the ConfigMap as Kubernetes mounts it (a directory with one file per key, swapped
atomically through its `..data` symlink), the ConfigMap manifest itself (YAML), or a plain YAML
or JSON mapping of the same keys. Kubernetes updates a mounted ConfigMap in place, so the watch
polls a cheap fingerprint of the source and applies a change without a restart; a source that
becomes unreadable or invalid keeps the last good state (and says why in the log).

The kubelet refreshes a mounted ConfigMap on its own sync period (a minute or more), so
`k8s://NAMESPACE/NAME` names the ConfigMap itself, watched through the API server
(serving/kube_source.py): a change reaches every server within a second. Both sources are a
`DesiredSource`: the update loop polls `check()` and reads `current`, whatever the source is.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("wasinfer.serving")

KEYS = ("model_path", "model_version", "model_update_interval", "cache_enabled")
DEFAULT_UPDATE_INTERVAL = 300.0  # the seed's "5m"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
KUBE_SCHEME = "k8s://"
# A namespace is a DNS-1123 label, a ConfigMap's name a DNS-1123 subdomain (what the API server accepts).
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class DesiredStateError(ValueError):
    """The desired-state source is unreadable or holds a value we do not accept."""


@dataclass(frozen=True)
class DesiredState:
    model_path: str
    model_version: str | None = None
    update_interval: float = DEFAULT_UPDATE_INTERVAL  # seconds
    cache_enabled: bool = True


@dataclass(frozen=True)
class ConfigMapRef:
    """`k8s://NAMESPACE/NAME`: a ConfigMap read and watched through the Kubernetes API."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{KUBE_SCHEME}{self.namespace}/{self.name}"


def desired_source(text: str) -> Path | ConfigMapRef:
    """--desired-state's argument: `k8s://NAMESPACE/NAME`, else a path (checked when it is read)."""
    if not text.startswith(KUBE_SCHEME):
        return Path(text)
    namespace, _, name = text[len(KUBE_SCHEME):].partition("/")
    if not _NAMESPACE.fullmatch(namespace) or not _OBJECT_NAME.fullmatch(name):
        raise DesiredStateError(f"{text!r}: expected {KUBE_SCHEME}NAMESPACE/CONFIGMAP, both lower-case DNS names "
                                "(as ai-serving/ai-model-config)")
    return ConfigMapRef(namespace, name)


def parse_duration(text: str) -> float:
    """Go-style durations as Kubernetes users write them: "5m", "90s", "1h30m", "250ms"; a bare number is seconds."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION_PART.findall(value)
        if not parts or "".join(number + unit for number, unit in parts) != value:
            raise DesiredStateError(f"model_update_interval {text!r} is not a duration (like 30s, 5m, 1h30m)") from None
        scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        seconds = sum(float(number) * scale[unit] for number, unit in parts)
    if seconds <= 0:
        raise DesiredStateError(f"model_update_interval {text!r} must be positive")
    return seconds


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise DesiredStateError(f"cache_enabled {text!r} is not a boolean (true or false)")


def desired_from_mapping(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> DesiredState:
    """Check the keys (unknown ones are refused: a typo must not silently change nothing)."""
    environ = os.environ if environ is None else environ
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise DesiredStateError(f"unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(KEYS)}")
    values = {key: str(value).strip() for key, value in data.items() if value is not None}
    path = environ.get("MODEL_PATH") or values.get("model_path", "")
    if not path:
        raise DesiredStateError("no model_path (and no MODEL_PATH in the environment)")
    return DesiredState(
        model_path=path,
        model_version=values.get("model_version") or None,
        update_interval=parse_duration(values["model_update_interval"]) if "model_update_interval" in values
        else DEFAULT_UPDATE_INTERVAL,
        cache_enabled=_boolean(values["cache_enabled"]) if "cache_enabled" in values else True)


def _read_mapping(source: Path) -> dict[str, Any]:
    if source.is_dir():  # a mounted ConfigMap: one file per key; Kubernetes' own entries start with ".."
        return {entry.name: entry.read_text() for entry in sorted(source.iterdir())
                if not entry.name.startswith(".") and entry.is_file()}
    import yaml  # here, not at the top: a server without a YAML desired state never needs it (~0.7 MiB resident)

    text, kind = source.read_text(), "JSON" if source.suffix == ".json" else "YAML"
    try:
        document = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise DesiredStateError(f"{source}: not valid {kind}: {exc}") from None
    if isinstance(document, dict) and document.get("kind") == "ConfigMap":
        document = document.get("data") or {}
    if not isinstance(document, dict):
        raise DesiredStateError(f"{source}: expected a mapping of {', '.join(KEYS)} (or a ConfigMap)")
    return document


def load_desired(source: Path, environ: Mapping[str, str] | None = None) -> DesiredState:
    try:
        data = _read_mapping(source)
    except OSError as exc:
        raise DesiredStateError(f"{source}: cannot read it: {exc}") from None
    try:
        return desired_from_mapping(data, environ)
    except DesiredStateError as exc:
        raise DesiredStateError(f"{source}: {exc}") from None


def fingerprint(source: Path) -> tuple[Any, ...]:
    """Changes whenever the content may have: inode, size and mtime of every file (symlinks followed)."""
    try:
        paths = sorted(p for p in source.iterdir() if not p.name.startswith(".")) if source.is_dir() else [source]
        if source.is_dir() and (source / "..data").exists():
            paths.append(source / "..data")
        stamps = []
        for path in paths:
            st = path.stat()
            stamps.append((path.name, st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(stamps)
    except OSError as exc:
        return (("unreadable", str(exc)),)


class DesiredSource:
    """Where the desired state comes from: `current` is the last good state, `check` one cheap poll.

    A source whose new content is invalid keeps the last good state and says why, once per reason.
    """

    poll_seconds = 1.0  # how often the update loop calls check()
    current: DesiredState
    last_error: str | None = None

    def check(self) -> bool:
        """True when the source changed into a new valid state, now `current`; an invalid one keeps the last good."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop watching (the update loop's stop() calls it)."""

    def _offer(self, read: Callable[[], DesiredState]) -> bool:
        """Adopt what `read` returns when it is valid and new (check()'s common end)."""
        try:
            state = read()
        except DesiredStateError as exc:
            if str(exc) != self.last_error:
                log.warning("desired state not applied, keeping the last good one: %s", exc)
            self.last_error = str(exc)
            return False
        self.last_error = None
        if state == self.current:
            return False
        log.info("desired state changed: %s", state)
        self.current = state
        return True


class DesiredStateWatcher(DesiredSource):
    """A file or a mounted ConfigMap directory, polled.

    Polling, not inotify: a ConfigMap update is a symlink swap of a directory, which inotify
    watches of the files miss, and the poll costs a few stat calls.
    """

    def __init__(self, source: Path, environ: Mapping[str, str] | None = None):
        self.source, self.environ = source, environ
        self.current = load_desired(source, environ)  # a bad source at start is the caller's error to report
        self._stamp = fingerprint(source)

    def check(self) -> bool:
        stamp = fingerprint(self.source)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return self._offer(lambda: load_desired(self.source, self.environ))
