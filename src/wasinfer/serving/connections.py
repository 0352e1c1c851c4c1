"""Connection limits that uvicorn's httptools protocol lacks: a deadline for a request's headers,
a cap on their size, and a cap on one client's open connections.

uvicorn closes a connection that stays idle after a response (its keep-alive timeout), but a
connection that sends nothing, or a request line and headers a byte at a time, is never timed
out: its first byte cancels the keep-alive timer and httptools has no deadline of its own. A
thousand such connections (slowloris) cost the server a file descriptor and a protocol object
each, for ever. `guarded_protocol` returns uvicorn's protocol class with a per-connection timer
from the connection's start (and from each later request's first byte) to the end of the
request's headers: past `header_timeout` the client gets 408 and the connection is closed. The
same time-out bounds a body that stops arriving: a pause of `header_timeout` between two of its
chunks ends the connection too (with a 408 if no answer has begun).
Headers larger than `max_header_bytes` end the connection with uvicorn's 400, and with
`max_per_client`, a client (an IP address) that already holds that many connections has the next
one answered 429 and closed at once. Everything here runs on the server's one event loop thread.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float | None = DEFAULT_HEADER_TIMEOUT  # seconds from connect (or a request's first byte)
    max_per_client: int = 0  # open connections per client address; 0: no cap
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES  # request line and headers of one request


class HeadersTooLarge(Exception):
    """Raised inside a parser callback: httptools turns it into the parser error uvicorn answers 400."""


def _answer(status: bytes, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """A protocol class for one server: its connection counts are its own."""
    open_by_client: Counter[str] = Counter()
    timeout = limits.header_timeout
    too_slow = _answer(b"408 Request Timeout", f"the request's headers did not arrive within {timeout:g} s "
                       "(--header-timeout-s)") if timeout else b""
    body_stalled = _answer(b"408 Request Timeout", f"the request's body stopped arriving for {timeout:g} s "
                           "(--header-timeout-s)") if timeout else b""
    too_many = _answer(b"429 Too Many Requests", f"this client already has {limits.max_per_client} connections "
                       "open (--max-connections-per-client)")

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _counted = False
        _header_timer: asyncio.TimerHandle | None = None
        _header_bytes = 0
        _body_timer: asyncio.TimerHandle | None = None
        _body_seen = 0.0  # loop time of the body's last chunk

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._peer = self.client[0] if self.client else ""
            if limits.max_per_client and open_by_client[self._peer] >= limits.max_per_client:
                transport.write(too_many)
                transport.close()
                return
            self._counted = True
            open_by_client[self._peer] += 1
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            self._stop_body_timer()
            if self._counted:
                self._counted = False
                open_by_client[self._peer] -= 1
                if open_by_client[self._peer] <= 0:
                    del open_by_client[self._peer]
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            if self._header_timer is None:  # a request after a response: its headers get the same deadline
                self._arm()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value))
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()
            if timeout and self._body_timer is None:  # until on_message_complete: the body's pauses are timed
                self._body_seen = self.loop.time()
                self._body_timer = self.loop.call_later(timeout, self._body_late)

        def on_body(self, body: bytes) -> None:
            self._body_seen = self.loop.time()  # the timer looks at this when it fires: no re-arming per chunk
            super().on_body(body)

        def on_message_complete(self) -> None:
            self._stop_body_timer()
            super().on_message_complete()

        def _count(self, size: int) -> None:
            self._header_bytes += size
            if self._header_bytes > limits.max_header_bytes:
                raise HeadersTooLarge(f"request headers over {limits.max_header_bytes} bytes")

        def _arm(self) -> None:
            if timeout:
                self._header_timer = self.loop.call_later(timeout, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _stop_body_timer(self) -> None:
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None

        def _body_late(self) -> None:
            assert timeout
            self._body_timer = None
            if self.transport.is_closing():
                return
            quiet = self.loop.time() - self._body_seen
            if quiet < timeout:
                self._body_timer = self.loop.call_later(timeout - quiet, self._body_late)
                return
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(body_stalled)
            self.transport.close()

        def _headers_late(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                self._arm()  # a response is still going out (pipelining): the next request's clock restarts
                return
            self.transport.write(too_slow)
            self.transport.close()

    return GuardedHttpToolsProtocol
