"""One worker process of `wasinfer serve --workers N` (supervisor.py): `python -m wasinfer.serving.worker_process`.

It reads its WorkerSpec (pickled) from stdin, serves as one `Server` would, and writes READY_LINE to stdout once
it does. SIGTERM drains it as it drains a single-process server (SIGINT and SIGHUP, which a terminal sends the
whole process group, are left to the supervisor); SIGUSR1 retires it for a rolling
restart (it keeps answering for RETIRE_SECONDS with every answer closing its connection, readiness unchanged,
then drains). The end of stdin means the supervisor is gone, however it went: the worker then drains too, so a
killed supervisor never leaves workers serving on their own.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
from dataclasses import replace
from types import FrameType

from rich.console import Console
from rich.markup import escape

from wasinfer.serving.cli import EXIT_BAD_INPUT, exit_even_if_work_is_stuck
from wasinfer.serving.control import StartupError
from wasinfer.serving.desired import DesiredStateError
from wasinfer.serving.logs import configure as configure_logs
from wasinfer.serving.server import Server
from wasinfer.serving.supervisor import READY_LINE, RETIRE_SECONDS, WorkerSpec


def main() -> int:
    spec: WorkerSpec = pickle.load(sys.stdin.buffer)
    errors = Console(stderr=True)
    configure_logs(spec.log_format, spec.log_level)
    stop, retire = threading.Event(), threading.Event()

    def retired(signum: int, frame: FrameType | None) -> None:
        retire.set()
        stop.set()

    # Caught from before the ports open, as in a single-process server; handlers stay until the process exits.
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGUSR1, retired)
    for sent_to_the_group in (signal.SIGINT, signal.SIGHUP):  # Ctrl+C, a hang-up: the supervisor's to act on
        signal.signal(sent_to_the_group, signal.SIG_IGN)
    threading.Thread(target=_stop_when_orphaned, args=(stop,), name="wasinfer-supervisor-watch", daemon=True).start()
    server = Server(replace(spec.config, worker_tag=f"{spec.index}/{os.getpid()}"))
    try:
        server.start(timeout=60)
    except (OSError, DesiredStateError, StartupError, RuntimeError) as exc:
        errors.print(f"[red]error:[/] worker {spec.index}: {escape(str(exc))}", highlight=False, soft_wrap=True)
        server.metrics.unshare()
        return EXIT_BAD_INPUT
    server.metrics.publish()
    sys.stdout.buffer.write(READY_LINE)
    sys.stdout.buffer.flush()
    while not stop.wait(0.5):
        pass
    if retire.is_set():
        server.stop(drain_delay=RETIRE_SECONDS, keep_ready=True)
    else:
        server.stop()
    exit_even_if_work_is_stuck(errors)
    return 0


def _stop_when_orphaned(stop: threading.Event) -> None:
    """Block on stdin, which the supervisor holds open; its end is the supervisor's. (os.read: a daemon thread
    blocked in the buffered reader would hold its lock while the interpreter exits, which aborts the exit.)"""
    while os.read(sys.stdin.fileno(), 65536):
        pass
    stop.set()


if __name__ == "__main__":
    sys.exit(main())
