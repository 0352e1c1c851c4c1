"""Logging of `wasinfer serve`: text or JSON lines on stderr, and the request ids that tie lines to requests.

JSON lines carry `timestamp`, `level`, `logger`, `message`, and — where the line is about a
request — `request_id`, `model`, `version`, `status`, `duration_ms`, `protocol`, `method` and
`path`; a log collector needs no parsing rules. Text lines say the method, path and status in
the message and the request id, model, version and duration as key=value after it.

A request's id is the client's own when it sends one (REST `X-Request-ID` header, gRPC
`x-request-id` metadata, or else the v2 request's "id"), so its logs and the server's share a
key; otherwise the server makes one: a random per-process prefix and a counter, far cheaper
than a UUID on a path that takes tens of microseconds. REST answers carry it in `X-Request-ID`,
gRPC answers in `x-request-id` trailing metadata.

Nothing is logged per successful request unless --access-log asks for it: a log line costs
more than a small model's inference. Refused requests (4xx) log at INFO, unavailable models
(503) at WARNING, failures (500) at ERROR with the traceback.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import IO, Any

# The fields a request's log lines may carry (logging's `extra`), in the order JSON lines give them.
REQUEST_FIELDS = ("request_id", "protocol", "method", "path", "model", "version", "status", "duration_ms")
# Text lines' messages already say the method, path and status: only the rest follows them.
TEXT_FIELDS = ("request_id", "model", "version", "duration_ms")
FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
MAX_REQUEST_ID = 128

access_log = logging.getLogger("wasinfer.access")

_PREFIX = os.urandom(6).hex() + "-"
_COUNTER = itertools.count(1)  # next() on it is atomic under the GIL: ids are unique across threads


def new_request_id() -> str:
    """A fresh id, unique in this process and (by its random prefix) across processes."""
    return _PREFIX + str(next(_COUNTER))


def accept_request_id(value: str | bytes | None) -> str | None:
    """The client's id if it is safe to log and to echo in a header: printable ASCII, at most 128 characters.

    The v2 body "id" is any JSON string, and a newline in it would split a text log line or
    forge a response header; such an id is replaced, not refused (it is the client's label,
    not part of the request's meaning).
    """
    if not value:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if len(text) > MAX_REQUEST_ID or not text.isascii() or not text.isprintable():
        return None
    return text


def request_fields(record: logging.LogRecord, keys: tuple[str, ...] = REQUEST_FIELDS) -> dict[str, Any]:
    fields = record.__dict__
    return {key: fields[key] for key in keys if fields.get(key) is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
            **request_fields(record)}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ...` — the request's id, model, version, duration after the message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = request_fields(record, TEXT_FIELDS)
        if fields:
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        return line


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to sys.stderr as it is at each line, not as it was when configured (as logging.lastResort
    does): a caller that swaps sys.stderr, as test runners do, never leaves the handler on a closed stream."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> IO[str]:  # type: ignore[override]
        return sys.stderr


def configure(log_format: str = "text", level: str = "info", stream: IO[str] | None = None) -> None:
    """Route every logger (wasinfer's, uvicorn's, grpc's) to one handler on `stream` (default stderr).

    Called again, it replaces its own handler and leaves any other on the root logger alone.
    uvicorn's own loggers propagate here because the server starts it with no logging config of
    its own (server.py), at WARNING: its INFO lines repeat what `wasinfer serve` prints itself.
    httpx's request lines are held at WARNING for the same reason.
    """
    if log_format not in FORMATS:
        raise ValueError(f"unknown log format {log_format!r}; expected one of {', '.join(FORMATS)}")
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.set_name("wasinfer")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "wasinfer"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx (registry pulls) logs every HTTP request at INFO: a line per blob is noise in a server's log.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
