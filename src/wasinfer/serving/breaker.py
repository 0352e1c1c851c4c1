"""A model version's fault breaker: a model whose recent runs mostly fault is refused for a while, cheaply.

A run that traps, exhausts its stack, grows past its memory cap or is stopped at its deadline fails its own
request (models.py), and its instance is discarded and rebuilt: 0.8-1.7 ms of the interpreter for a trap or a
recursion, the whole deadline of a core for a loop (demoted, but still taken). A client that sends such
requests as fast as it is answered makes the server do that work over and over, and the normal model beside
it waits for the interpreter and the cores in between: its p99 rose 7-21x under a trapping model's clients and
9-15x under a recursing one's on 2 cores (docs/serving.md). No priority of the faulting runs gives that back,
because most of their cost is Python (checking, discarding, rebuilding) that holds the interpreter.

So, as Envoy's outlier detection ejects a host whose recent requests failed: once `faults` of a version's last
`runs` runs have faulted, its breaker opens and the version's requests are refused without running, before
their bodies are parsed, with 503 / UNAVAILABLE naming the model and the faults that opened it (and a
Retry-After), for `open_seconds`. A refusal is answered after `hold_seconds` (100 ms), which costs the server
nothing but slows a client that retries in a closed loop to ten requests a second (see BreakerOpen).
Then it half-opens: the next request is let through as a trial. If the trial's run succeeds the breaker
closes (and forgets the faults); if it faults, the breaker opens again for twice as long, up to
`max_open_seconds`. A request that had already queued for a slot when the breaker opened is refused when
its turn comes, so a backlog of hostile requests does not run either. A replaced version (a new file, an
update) starts with a closed breaker of its own.

Why by a share of recent runs rather than consecutive faults: a model that faults on half of its inputs is
as costly to run as one that always does, and an attacker could interleave one good request with each bad
one. Why a window this short: the breaker is about a flood; a model that faults now and then never opens it.
Runs, not requests: a request refused for a bad tensor or withdrawn at its deadline before it ran says
nothing about the model. A run stopped at the short deadline of the event loop (models.py) is not a fault:
it runs again on the model's threads, where its outcome counts.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wasinfer.serving.errors import Unavailable

log = logging.getLogger("wasinfer.serving")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
_KEYS = {"faults": "faults", "runs": "runs", "open-ms": "open_ms", "max-open-ms": "max_open_ms",
         "hold-ms": "hold_ms"}  # flag → JSON


class BreakerConfigError(ValueError):
    """A --fault-breaker value or a config.json "fault_breaker" that is not one."""


@dataclass(frozen=True)
class BreakerSettings:
    """When a version's breaker opens, and for how long. `faults` 0: never (the breaker is off)."""

    faults: int = 5  # faulted runs among the last `runs` that open it
    runs: int = 10
    open_seconds: float = 1.0  # the first opening; each failed trial doubles it
    max_open_seconds: float = 30.0
    hold_seconds: float = 0.1  # a refusal is answered after this long (see BreakerOpen)

    @property
    def enabled(self) -> bool:
        return self.faults > 0

    def shown(self) -> str:
        """As --fault-breaker takes it."""
        if not self.enabled:
            return "off"
        return (f"faults={self.faults},runs={self.runs},open-ms={self.open_seconds * 1000:g},"
                f"max-open-ms={self.max_open_seconds * 1000:g},hold-ms={self.hold_seconds * 1000:g}")

    @classmethod
    def parse(cls, text: str) -> BreakerSettings:
        """--fault-breaker: "off", or any of faults=N,runs=N,open-ms=MS,max-open-ms=MS,hold-ms=MS (the rest as by
        default)."""
        if text.strip().lower() == "off":
            return OFF
        fields: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key.strip() not in _KEYS:
                raise BreakerConfigError(f"--fault-breaker {text!r}: {item!r} is not KEY=VALUE with KEY one of "
                                         f"{', '.join(_KEYS)} (or the whole value 'off')")
            try:
                fields[_KEYS[key.strip()]] = int(value) if value.strip().isdigit() else float(value)
            except ValueError:
                raise BreakerConfigError(f"--fault-breaker {text!r}: {key.strip()} must be a number, got "
                                         f"{value!r}") from None
        return cls.of(fields, f"--fault-breaker {text!r}")

    @classmethod
    def from_json(cls, value: Any, where: str) -> BreakerSettings:
        """config.json's "fault_breaker": false or "off", or an object of faults, runs, open_ms, max_open_ms,
        hold_ms."""
        if value is False or value == "off":
            return OFF
        if not isinstance(value, dict):
            raise BreakerConfigError(f"{where}: \"fault_breaker\" must be false, \"off\" or an object such as "
                                     "{\"faults\": 5, \"runs\": 10, \"open_ms\": 1000, \"max_open_ms\": 30000}")
        unknown = sorted(set(value) - set(_KEYS.values()))
        if unknown:
            raise BreakerConfigError(f"{where}: unknown fault_breaker field(s) {', '.join(map(repr, unknown))}; "
                                     f"known: {', '.join(_KEYS.values())}")
        return cls.of(value, f"{where}: \"fault_breaker\"")

    @classmethod
    def of(cls, fields: dict[str, Any], where: str) -> BreakerSettings:
        """Settings from faults, runs, open_ms, max_open_ms, hold_ms (each optional), checked."""
        default = cls()
        faults, runs = fields.get("faults", default.faults), fields.get("runs", default.runs)
        open_ms = fields.get("open_ms", default.open_seconds * 1000)
        max_open_ms = fields.get("max_open_ms", max(open_ms, default.max_open_seconds * 1000))
        hold_ms = fields.get("hold_ms", default.hold_seconds * 1000)
        if type(faults) is not int or type(runs) is not int or not 1 <= faults <= runs <= 1000:
            raise BreakerConfigError(f"{where}: faults and runs must be integers with 1 <= faults <= runs <= 1000, "
                                     f"got faults={faults!r}, runs={runs!r} (off turns the breaker off)")
        for key, ms in (("open_ms", open_ms), ("max_open_ms", max_open_ms)):
            if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms) or ms <= 0:
                raise BreakerConfigError(f"{where}: {key.replace('_', '-')} must be a positive number of "
                                         f"milliseconds, got {ms!r}")
        if max_open_ms < open_ms:
            raise BreakerConfigError(f"{where}: max-open-ms ({max_open_ms:g}) is less than open-ms ({open_ms:g})")
        if isinstance(hold_ms, bool) or not isinstance(hold_ms, int | float) or not 0 <= hold_ms <= 10_000:
            raise BreakerConfigError(f"{where}: hold-ms must be a number of milliseconds from 0 to 10000, got "
                                     f"{hold_ms!r}")
        return cls(faults, runs, open_ms / 1000, max_open_ms / 1000, hold_ms / 1000)


DEFAULT_BREAKER = BreakerSettings()
OFF = BreakerSettings(faults=0)


class BreakerOpen(Unavailable):
    """A request refused while its model's fault breaker is open; `retry_after` seconds until the next trial.

    The front ends answer it after `hold` seconds (--fault-breaker hold-ms, default 100 ms), on REST's event loop
    a timer and over gRPC a thread of the model's share of the pool: a client that retries in a closed loop,
    as a hostile one does whatever Retry-After says, then sends ten requests a second instead of a thousand.
    Answered at once, refusals cost the server little each (0.2-0.6 ms), but the flood of them took the
    interpreter and the cores from the normal model as the faults had: its p99 still rose 2.7-14x on 2 cores
    under a trapping model's 12 clients, against 0.7-2.0x with the hold (docs/performance.md)."""

    def __init__(self, message: str, retry_after: float, hold: float):
        super().__init__(message)
        self.retry_after, self.hold = retry_after, hold


class FaultBreaker:
    """One model version's breaker (see the module docstring). Thread-safe: REST's event loop, gRPC's threads
    and the version's worker threads call it; a closed breaker costs a request one attribute read."""

    def __init__(self, settings: BreakerSettings, model: str, version: str,
                 on_open: Callable[[], None] | None = None):
        self.settings, self.model, self.version = settings, model, version
        self.on_open = on_open  # called each time it opens: the metrics' counter
        self.state = CLOSED
        self.openings = 0
        self._lock = threading.Lock()
        self._recent: deque[str | None] = deque(maxlen=max(1, settings.runs))  # each run: its fault's kind, or None
        self._open_for = settings.open_seconds  # the length of the next opening
        self._until = 0.0  # time.monotonic() when an open breaker half-opens
        self._trial = False  # half-open: a trial request has been let through and has not ended
        self._reason = ""  # what opened it, for refusals

    # --- requests ------------------------------------------------------------------------------

    def check(self) -> None:
        """Refuse (BreakerOpen) a request while the breaker is open, or half-open with its trial under way. Claims
        nothing, so the front ends call it before parsing a request: refusals cost next to nothing."""
        if self.state == CLOSED:
            return
        with self._lock:
            if (self.state == OPEN and time.monotonic() < self._until) or (self.state == HALF_OPEN and self._trial):
                raise self._refusal()

    def admit(self) -> bool:
        """Admit a request or refuse it (BreakerOpen); True when it is the trial of a half-open breaker, which
        the caller ends with `trial_ended()` however it goes."""
        if self.state == CLOSED:
            return False
        with self._lock:
            if self.state == OPEN and time.monotonic() >= self._until:
                self.state, self._trial = HALF_OPEN, False
            if self.state == HALF_OPEN and not self._trial:
                self._trial = True
                return True
            if self.state == CLOSED:
                return False
            raise self._refusal()

    def may_run(self, trial: bool) -> None:
        """A queued request's turn has come: refused (BreakerOpen) unless the breaker is closed or it is the trial,
        so that a backlog queued before the breaker opened does not run its faults after all."""
        if self.state != CLOSED and not trial:
            with self._lock:
                if self.state != CLOSED:
                    raise self._refusal()

    def trial_ended(self) -> None:
        """The trial's request ended; if no run of it was recorded (refused as bad input, withdrawn at its deadline
        while queued), the next request becomes the trial."""
        with self._lock:
            if self.state == HALF_OPEN:
                self._trial = False

    # --- runs ----------------------------------------------------------------------------------

    def succeeded(self) -> None:
        """A run of the version ended well."""
        if self.state == CLOSED and not self._recent:
            return  # the common case: nothing to forget, no lock
        with self._lock:
            if self.state == CLOSED:
                self._recent.append(None)
            elif self.state == HALF_OPEN:  # the trial (an open breaker's stale runs say nothing new)
                self.state, self._trial, self._open_for = CLOSED, False, self.settings.open_seconds
                self._recent.clear()
                log.info("model %s version %s: a trial run succeeded; its fault breaker is closed", self.model,
                         self.version)

    def faulted(self, kind: str, fault: str) -> None:
        """A run of the version faulted: `kind` as a refusal lists it ("trapped", "ran past its deadline"),
        `fault` the runtime's message."""
        if not self.settings.enabled:
            return
        with self._lock:
            if self.state == CLOSED:
                self._recent.append(kind)
                kinds = Counter(k for k in self._recent if k is not None)
                if sum(kinds.values()) < self.settings.faults:
                    return
                said = ", ".join(f"{count} {k}" for k, count in kinds.most_common())
                self._open(f"{sum(kinds.values())} of its last {len(self._recent)} runs faulted ({said}); the "
                           f"last: {fault}")
            elif self.state == HALF_OPEN:
                self._open_for = min(2 * self._open_for, self.settings.max_open_seconds)
                self._open(f"its trial run {kind} after {self._reason.split('; the last: ')[0]}; the last: {fault}")

    def _open(self, reason: str) -> None:
        """(lock held)"""
        self.state, self._trial, self._reason = OPEN, False, reason
        self._until = time.monotonic() + self._open_for
        self._recent.clear()
        self.openings += 1
        log.warning("model %s version %s: fault breaker open for %g s: %s", self.model, self.version,
                    self._open_for, reason)
        if self.on_open is not None:
            self.on_open()

    def _refusal(self) -> BreakerOpen:
        """(lock held)"""
        left = max(0.0, self._until - time.monotonic())
        when = (f"a trial request is let through in {left:.3g} s" if self.state == OPEN else
                "a trial request is running")
        return BreakerOpen(f"model {self.model!r} version {self.version} is refused by its fault breaker "
                           f"(--fault-breaker): {self._reason}; {when}", left or self._open_for,
                           self.settings.hold_seconds)

    def unready_reason(self) -> str:
        """Why the version is not ready while its breaker refuses requests ("" when it takes them)."""
        if self.state == CLOSED:
            return ""
        with self._lock:
            if self.state == CLOSED:
                return ""
            return self._refusal().message
