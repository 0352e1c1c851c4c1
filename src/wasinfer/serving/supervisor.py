"""`wasinfer serve --workers N`: N worker processes behind a small supervisor, for the cores one process cannot use.

One server process answers every request on one core at most: its event loop, the JSON parsing and
the encoding hold the GIL. The workers are separate processes, started fresh (`python -m
wasinfer.serving.worker_process`, never a fork of a process that already has threads), each a whole
`Server` over the same repository and the same $WASINFER_HOME:

- REST: the supervisor binds and listens, and every worker accepts from that one inherited socket, so a
  connection waits in one queue for whichever worker takes it first (an idle worker wins the race more
  often than a busy one), and the connections queued when a worker exits (a crash, a rolling restart)
  stay for the others.
- gRPC: grpcio serves only sockets it binds itself, so each worker binds the port with SO_REUSEPORT and
  the kernel spreads new connections over them; the supervisor keeps the port bound (not listening, so
  it takes no connection) so that a port picked as 0 stays the node's while workers come and go.
- Compiled code: the on-disk cache (CompiledCache), mapped by each worker, so the pages are shared; a
  module is compiled once for the node, under a file lock.
- Desired state: every worker runs the updater; a file lock and a fetch record make it one fetch and one
  install per version for the node (updater.py).
- Metrics: each worker shares its counts through a private directory, and /metrics and the statistics
  report the node whichever worker answers (metrics.py).
- Readiness is each worker's own, which is the node's: a worker only accepts once its start-up loads are
  done, and the supervisor reports the server started only once every worker is ready.
- --memory-budget-mb is the node's: each worker, which holds its own instances, gets an even share.

Signals: SIGTERM (or SIGINT) drains every worker at once, as one process drains. SIGHUP restarts the
workers one at a time: a new one serves before the old one is retired (it keeps answering for
RETIRE_SECONDS, each answer closing its keep-alive connection so its clients reconnect to another
worker, then drains as on SIGTERM). A worker that exits unasked is logged and restarted, after a
backoff that doubles from FIRST_BACKOFF to MAX_BACKOFF while restarts keep failing.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from wasinfer.serving.server import ServerConfig, bind_socket, default_pool_size

log = logging.getLogger("wasinfer.serving")

READY_LINE = b"ready\n"  # what a worker writes to its stdout once it serves
RETIRE_SECONDS = 1.0  # a retired worker's answers close their connections this long before it stops accepting
FIRST_BACKOFF, MAX_BACKOFF = 0.5, 30.0  # between restarts of a worker that keeps exiting
STEADY_SECONDS = 30.0  # a worker that ran this long before it exited is restarted at once again
EXIT_SLACK = 10.0  # past the drain delay and grace: a worker still running then is killed
CLEAN_EXIT_WAIT = 2.0  # a worker that exited 0 unasked is restarted only if the supervisor is not stopping by then


def workers_for(value: str) -> int:
    """--workers: a number from 1, or "auto", one per core this process may run on."""
    if value == "auto":
        return default_pool_size()
    try:
        workers = int(value)
    except ValueError:
        raise ValueError(f"--workers {value!r}: a number of processes, or auto") from None
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    return workers


def worker_config(config: ServerConfig, workers: int) -> ServerConfig:
    """The node's config as each of `workers` processes runs it: the memory budget split between them, and
    (unless set) a share of the cores' instances per model, so the node holds as many as one process would."""
    return replace(config, memory_budget_bytes=config.memory_budget_bytes // workers,
                   pool_size=config.pool_size or max(1, default_pool_size() // workers))


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process reads from its stdin (pickled): its config and how it logs."""

    config: ServerConfig
    index: int
    log_format: str = "text"
    log_level: str = "info"


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    started: float
    ready: threading.Event = field(default_factory=threading.Event)
    retired: bool = False  # asked to go by a rolling restart: its exit is no crash


class StartupFailed(Exception):
    """A worker exited, or did not get ready, while the node started; `code` is its exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class Supervisor:
    def __init__(self, config: ServerConfig, workers: int, log_format: str = "text", log_level: str = "info"):
        self.config, self.count, self.log_format, self.log_level = config, workers, log_format, log_level
        self.http_port = self.grpc_port = 0
        self._http: socket.socket | None = None
        self._grpc_hold: socket.socket | None = None
        self._metrics_dir: Path | None = None
        self._workers: dict[int, _Worker] = {}
        self._lock = threading.Lock()  # _workers, and one rolling restart at a time
        self._rolling = threading.Lock()
        self._stopping = threading.Event()
        self._monitors: list[threading.Thread] = []

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [worker.process.pid for _, worker in sorted(self._workers.items())]

    def start(self, timeout: float = 120.0) -> None:
        """Bind the ports, start every worker, return once all serve; StartupFailed (with the worker's exit code)
        or OSError (a port) if they cannot."""
        config = self.config
        self._http = bind_socket(config.host, config.http_port)
        self._http.listen(2048)  # connections queue here while no worker accepts (a start, a restart)
        self.http_port = self._http.getsockname()[1]
        if config.grpc_port is not None:
            try:
                self._grpc_hold = _hold_port(config.host, config.grpc_port)
            except OSError:
                self._http.close()
                raise
            self.grpc_port = self._grpc_hold.getsockname()[1]
        self._metrics_dir = Path(tempfile.mkdtemp(prefix="wasinfer-metrics-"))
        starting = [self._spawn(index) for index in range(self.count)]
        deadline = time.monotonic() + timeout
        try:
            for worker in starting:
                self._wait_ready(worker, deadline)
        except StartupFailed:
            self._stopping.set()
            for worker in starting:
                _signal(worker.process, signal.SIGTERM)
            for worker in starting:
                _wait(worker.process, 30)
            self._close()
            raise
        with self._lock:
            self._workers = {worker.index: worker for worker in starting}
        for worker in starting:
            self._monitor(worker)
        log.info("%d worker processes serving (pids %s)", self.count, " ".join(map(str, self.pids)))

    def _spawn(self, index: int) -> _Worker:
        """A worker process, in the supervisor's process group (tools that account for or signal the group see the
        node); it ignores SIGINT and SIGHUP, which a terminal sends the whole group: the supervisor decides."""
        assert self._http is not None and self._metrics_dir is not None
        fd = self._http.fileno()
        config = replace(worker_config(self.config, self.count), http_fd=fd, grpc_port=self.grpc_port or None,
                         grpc_reuse_port=True, metrics_dir=self._metrics_dir)
        if self.config.grpc_port is None:
            config = replace(config, grpc_port=None)
        process = subprocess.Popen([sys.executable, "-m", "wasinfer.serving.worker_process"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, pass_fds=(fd,))
        worker = _Worker(index, process, time.monotonic())
        assert process.stdin is not None and process.stdout is not None
        # The pipe stays open: its end (the supervisor gone, however it went) tells the worker to stop.
        try:
            process.stdin.write(pickle.dumps(WorkerSpec(config, index, self.log_format, self.log_level)))
            process.stdin.flush()
        except BrokenPipeError:
            pass  # it died at once: _wait_ready reports its exit code
        threading.Thread(target=_read_ready, args=(process.stdout, worker.ready), daemon=True,
                         name=f"wasinfer-worker-{index}-ready").start()
        return worker

    def _wait_ready(self, worker: _Worker, deadline: float) -> None:
        while not worker.ready.wait(0.05):
            code = worker.process.poll()
            if code is not None:
                raise StartupFailed(f"worker {worker.index} (pid {worker.process.pid}) exited with code {code} "
                                    "while starting", code)
            if time.monotonic() > deadline:
                _signal(worker.process, signal.SIGKILL)
                raise StartupFailed(f"worker {worker.index} (pid {worker.process.pid}) did not get ready in time", 1)

    def _monitor(self, worker: _Worker) -> None:
        thread = threading.Thread(target=self._watch, args=(worker,), daemon=True,
                                  name=f"wasinfer-worker-{worker.index}-watch")
        self._monitors.append(thread)
        thread.start()

    def _watch(self, worker: _Worker) -> None:
        """Wait for the worker's exit; unless the node stops or retired it, start another in its place."""
        backoff = FIRST_BACKOFF
        while True:
            code = worker.process.wait()
            self._bury(worker)
            if self._stopping.is_set() or worker.retired:
                return
            # A clean exit nobody asked for here is a SIGTERM sent to the whole process group (`kill -TERM -PGID`,
            # a tool stopping the server's group): the supervisor has it too, and is about to stop.
            if code == 0 and self._stopping.wait(CLEAN_EXIT_WAIT):
                return
            lived = time.monotonic() - worker.started
            if lived >= STEADY_SECONDS:
                backoff = FIRST_BACKOFF
            log.error("worker %d (pid %d) exited with code %d after %.1f s; starting another in %g s", worker.index,
                      worker.process.pid, code, lived, backoff)
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, MAX_BACKOFF)
            try:
                replacement = self._spawn(worker.index)
            except OSError as exc:  # no process to be had (out of memory, of pids): try again after the backoff
                log.error("cannot start worker %d: %s", worker.index, exc)
                continue
            try:
                self._wait_ready(replacement, time.monotonic() + 120)
            except StartupFailed as exc:
                log.error("%s", exc)
                worker = replacement
                continue
            with self._lock:
                if self._stopping.is_set():
                    _signal(replacement.process, signal.SIGTERM)
                    return
                self._workers[worker.index] = replacement
            log.info("worker %d restarted (pid %d)", worker.index, replacement.process.pid)
            worker = replacement

    def _bury(self, worker: _Worker) -> None:
        """A worker that has exited keeps its counts in the node's metrics, and no longer its gauges."""
        if self._metrics_dir is None:
            return
        shared = self._metrics_dir / f"{worker.process.pid}.json"
        with contextlib.suppress(OSError):
            shared.rename(self._metrics_dir / f"dead-{worker.process.pid}.json")

    def rolling_restart(self) -> bool:
        """Replace every worker, one at a time, each only once its replacement serves; False (logged) if a
        replacement failed to start (the old worker then serves on, and the restart stops there)."""
        if not self._rolling.acquire(blocking=False):
            log.info("a rolling restart is already under way")
            return False
        try:
            log.info("rolling restart of %d workers", self.count)
            for index in range(self.count):
                if self._stopping.is_set():
                    return False
                with self._lock:
                    old = self._workers[index]
                new = self._spawn(index)
                try:
                    self._wait_ready(new, time.monotonic() + 120)
                except StartupFailed as exc:
                    log.error("rolling restart stopped: %s; worker %d (pid %d) serves on", exc, index,
                              old.process.pid)
                    self._bury(new)
                    return False
                with self._lock:
                    if self._stopping.is_set():
                        _signal(new.process, signal.SIGTERM)
                        return False
                    old.retired = True
                    self._workers[index] = new
                self._monitor(new)
                _signal(old.process, signal.SIGUSR1)
                _wait(old.process, self._exit_seconds() + RETIRE_SECONDS)
                log.info("worker %d: pid %d retired, pid %d serves", index, old.process.pid, new.process.pid)
            return True
        finally:
            self._rolling.release()

    def _exit_seconds(self) -> float:
        return self.config.drain_delay_seconds + self.config.grace() + EXIT_SLACK

    def stop(self) -> int:
        """Drain every worker at once (SIGTERM: see Server.stop); 0 when each exited cleanly, else 1."""
        with self._lock:  # a worker being started now (a restart) is stopped by its starter, which sees this
            self._stopping.set()
            workers = list(self._workers.values())
        # The supervisor's copies go first: once the workers' are closed too, the ports refuse connections.
        self._close_sockets()
        for worker in workers:
            _signal(worker.process, signal.SIGTERM)
        clean = True
        ends = time.monotonic() + self._exit_seconds()
        for worker in workers:
            code = _wait(worker.process, max(0.0, ends - time.monotonic()))
            clean = clean and code == 0
        for thread in self._monitors:
            thread.join(5)
        self._close()
        return 0 if clean else 1

    def _close_sockets(self) -> None:
        for sock in (self._http, self._grpc_hold):
            if sock is not None:
                sock.close()
        self._http = self._grpc_hold = None

    def _close(self) -> None:
        self._close_sockets()
        if self._metrics_dir is not None:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
            self._metrics_dir = None


def _hold_port(host: str, port: int) -> socket.socket:
    """The gRPC port, bound with SO_REUSEPORT and not listening: the workers' listening sockets share it, and it
    stays the node's (port 0 picks one) while they come and go."""
    return bind_socket(host, port, socket.SO_REUSEPORT, inheritable=False)


def _read_ready(stdout: IO[bytes], ready: threading.Event) -> None:
    for line in stdout:
        if line == READY_LINE:
            ready.set()


def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        if process.poll() is None:
            process.send_signal(signum)


def _wait(process: subprocess.Popen[bytes], seconds: float) -> int:
    """The process's exit code, killing it if it has not exited within `seconds`."""
    try:
        return process.wait(seconds)
    except subprocess.TimeoutExpired:
        log.error("worker pid %d still running %g s after it was asked to stop; killing it", process.pid, seconds)
        _signal(process, signal.SIGKILL)
        return process.wait()
