"""Model control, as Triton's `--model-control-mode`: which models load when, and what a broken one does.

- `lazy` (wasinfer's default): nothing loads at start-up; a model loads on its first request
  (which waits) and through the repository API. The server starts at once however large the
  repository, and a model nobody asks for costs nothing; a broken model is found by its first caller.
- `none` (Triton's default): every model in the repository loads at start-up, each version its
  version_policy serves, before the ports open; the repository API cannot load or unload.
- `explicit`: only the `--load-model` names load at start-up (`*`: all); the others load and
  unload through the repository API.
- `poll`: as `none`, then the repository is read again every `--repository-poll-secs`: a model
  that appears or whose files change is (re)loaded, one that goes away is unloaded.

In every mode but `lazy`, a request never loads a model: one that is not loaded is 503 naming the
mode, and `/v2/models/X/ready` is true once its load has finished. A model that fails its
start-up load stops the start (`StartupError`, which `wasinfer serve` turns into exit 2 naming the
model and the reason) unless `exit_on_error` is off (Triton's `--exit-on-error=false`): the server
then starts, and the model is UNAVAILABLE with its reason in the repository index.

The model a `--desired-state` keeps (updater.py) is left to its updater in every mode: it decides
which of its versions serves (after a warm-up, maybe through a canary), so neither start-up nor
the poller loads it. A memory budget evicts models that their next request loads again, so it
needs the lazy mode (server.py refuses it with the others).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from wasinfer.serving.errors import ServingError

if TYPE_CHECKING:  # `wasinfer serve --help` reads MODES without the serve extra's modules (models.py needs them)
    from wasinfer.serving.models import ModelManager

log = logging.getLogger("wasinfer.serving")

MODES = ("lazy", "none", "explicit", "poll")
DEFAULT_MODE = "lazy"
DEFAULT_POLL_SECONDS = 15.0  # Triton's --repository-poll-secs
ALL_MODELS = "*"


class StartupError(Exception):
    """A model that must load at start-up did not (or a --load-model names no model)."""


def startup_models(manager: ModelManager, mode: str, load_models: tuple[str, ...],
                   skip: frozenset[str] = frozenset()) -> list[str]:
    """The models the mode loads at start-up, in order, but those in `skip` (a desired state's); StartupError for a
    --load-model that names none."""
    if mode == "lazy":
        return []
    available = [name for name in manager.repository.model_names() if name not in skip]
    if mode in ("none", "poll") or ALL_MODELS in load_models:
        return available
    unknown = [name for name in load_models if name not in available]
    if unknown:
        raise StartupError(f"--load-model {', '.join(unknown)}: no such model in {manager.repository.root} "
                           f"(it has {', '.join(available) or 'none'})")
    return list(dict.fromkeys(load_models))


def load_at_startup(manager: ModelManager, mode: str, load_models: tuple[str, ...] = (),
                    exit_on_error: bool = True, skip: frozenset[str] = frozenset()) -> dict[str, str]:
    """Load what the mode says, one model after the other; returns the failures (model → reason). With
    `exit_on_error`, the first failure is a StartupError naming the model and the reason instead."""
    failed: dict[str, str] = {}
    for name in startup_models(manager, mode, load_models, skip):
        try:
            manager.load(name)
        except ServingError as exc:
            if exit_on_error:
                raise StartupError(f"model {name!r} failed to load: {exc}") from None
            log.error("model %s failed to load at start-up (it stays unavailable): %s", name, exc)
            failed[name] = str(exc)
        else:
            log.info("model %s loaded", name)
    return failed


def snapshot(manager: ModelManager, name: str) -> tuple[tuple[int, str, tuple[int, int], str], ...]:
    """What tells that a model's versions changed: each version's number, file, the file's stamp, and name."""
    from wasinfer.serving.models import file_stamp

    return tuple((v.version, v.path.name, file_stamp(v.path), v.version_name)
                 for v in manager.repository.versions(name).values())


class RepositoryPoller:
    """`--model-control-mode poll`: every `seconds`, loads a model whose versions changed (one added or removed, a
    model file rewritten: ModelManager.load reloads what changed) and unloads one that is gone. An edit of a
    config file alone takes effect with the next such change, as for an explicit load.

    One daemon thread; a model that fails to load is logged once per change of its files (not retried on
    every poll), and keeps whatever version served before only if its files did not change."""

    def __init__(self, manager: ModelManager, seconds: float = DEFAULT_POLL_SECONDS,
                 skip: frozenset[str] = frozenset()):
        self.manager, self.seconds, self.skip = manager, seconds, skip  # skip: a desired state's model
        self._seen = self._current()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wasinfer-poll", daemon=True)

    def start(self) -> RepositoryPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _current(self) -> dict[str, tuple[tuple[int, str, tuple[int, int], str], ...]]:
        return {name: snapshot(self.manager, name) for name in self.manager.repository.model_names()
                if name not in self.skip}

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self.poll()
            except Exception:  # a bug here must not end polling for good
                log.exception("polling the model repository failed")

    def poll(self) -> None:
        """One pass: what changed since the last is loaded or unloaded now."""
        current = self._current()
        for name in sorted(set(self._seen) - set(current)):
            try:
                self.manager.unload(name)
                log.info("model %s left the repository: unloaded", name)
            except ServingError:
                pass
        for name, seen in sorted(current.items()):
            if self._seen.get(name) == seen:
                continue
            try:
                self.manager.load(name)
                log.info("model %s (re)loaded: its files changed", name)
            except ServingError as exc:
                log.error("model %s failed to load after its files changed: %s", name, exc)
        self._seen = current
