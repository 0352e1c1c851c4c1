"""WASI-NN guest programs served over REST: `POST /v2/guests/{name}/run`, one fresh guest per request.

The request body is the guest's stdin; the answer is its stdout (application/octet-stream) with its
exit code in `X-Guest-Exit-Code`. A guest that exits 0 answers 200. One that exits with another
code refused or failed on what it was given (a command line's convention: 2 is a usage error), so
it answers 422 with the code in the header and the end of its stderr in the usual JSON
{"error": ...}: an empty 200 said "success" to every client that checks only the status. One the
host had to stop answers like a model that did: 504 past its deadline, 500 after a trap or at its
memory cap. Each guest's command line (after its program name) is the one `--guest` gives it. An
unknown name is 404, a body over --max-body-bytes 413, and more guests in flight than `max_in_flight` 429.

Why a fresh instance per request: a guest is a program with global state (and it may have died
at its cap), so nothing of one request may reach the next; an instance costs little next to the
models it runs, which the host keeps loaded (wasi_nn's preload cache) across requests. Guests run
on an executor of their own so that a slow program never holds a thread that model inference needs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from wasinfer.runtime.wasi_nn import GuestResult, Preload, compile_guest, run_guest

log = logging.getLogger("wasinfer.serving")

EXIT_CODE_HEADER = b"x-guest-exit-code"
STDERR_TAIL = 2048  # bytes of a failed guest's stderr that go into its error answer


@dataclass(frozen=True)
class GuestConfig:
    """What `wasinfer serve --guest NAME=APP.wasm --nn-preload ...` asks for."""

    guests: tuple[tuple[str, Path], ...] = ()
    preloads: tuple[Preload, ...] = ()
    memory_limit_bytes: int | None = 1 << 30
    deadline_seconds: float | None = 30.0
    workers: int = 2
    max_in_flight: int = 64  # running or queued; more are refused with 429
    arguments: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # a guest's argv after its name


class GuestBusy(Exception):
    """More guest runs in flight than the server takes."""


class Guests:
    """The served guests, compiled at start-up (a bad module stops the server from starting)."""

    def __init__(self, config: GuestConfig):
        self.config = config
        self.programs: dict[str, bytes] = {}
        for name, path in config.guests:
            if name in self.programs:
                raise ValueError(f"guest {name!r} is given twice")
            content = Path(path).read_bytes()
            compile_guest(content)  # GuestError (a ValueError) for what cannot run
            self.programs[name] = content
        self.executor = ThreadPoolExecutor(max_workers=max(1, config.workers), thread_name_prefix="wasinfer-guest")
        self._in_flight = threading.BoundedSemaphore(max(1, config.max_in_flight))

    def names(self) -> list[str]:
        return sorted(self.programs)

    def run(self, name: str, stdin: bytes) -> GuestResult:
        """Run guest `name` (it must exist) with `stdin`; called on the guest executor."""
        return run_guest(self.programs[name], self.config.arguments.get(name, ()), self.config.preloads, stdin,
                         memory_limit_bytes=self.config.memory_limit_bytes,
                         deadline_seconds=self.config.deadline_seconds, program_name=f"{name}.wasm")

    def submit(self, name: str, stdin: bytes) -> Future[GuestResult]:
        """Start a run on the guest executor, or raise GuestBusy when too many are in flight. The place is
        given back when the future is done, however it ends (a run cancelled before it started included)."""
        if not self._in_flight.acquire(blocking=False):
            raise GuestBusy(f"{self.config.max_in_flight} guest runs are already in flight")
        try:
            future = self.executor.submit(self.run, name, stdin)
        except BaseException:
            self._in_flight.release()
            raise
        future.add_done_callback(lambda _: self._in_flight.release())
        return future

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def stderr_tail(result: GuestResult) -> str:
    text = result.stderr[-STDERR_TAIL:].decode("utf-8", "replace").strip()
    return text if len(result.stderr) <= STDERR_TAIL else "..." + text
