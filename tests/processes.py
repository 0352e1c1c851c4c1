"""A server process started by a test: reading what it prints, and stopping it, each with a bound on the wait."""

from __future__ import annotations

import queue
import subprocess
import threading
import time


def output_lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process's stdout, line by line, read on a daemon thread (a blocking read never stalls the test)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def read_until(lines: queue.Queue[str], marker: str, timeout: float) -> list[str]:
    """The lines up to and including the first that holds `marker`; fails the test after `timeout` seconds."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if marker in line:
            return seen
    raise AssertionError(f"no {marker!r} within {timeout} s; got {''.join(seen)!r}")


def stop(process: subprocess.Popen[str] | subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, up to `grace` seconds to exit, then SIGKILL: a test's server never outlives the test."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
