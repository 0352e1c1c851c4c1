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
Headers larger than `max_header_bytes` end the connection with a 431, and with
`max_per_client`, a client (an IP address) that already holds that many connections has the next
one answered 429 and closed at once. Everything here runs on the server's one event loop thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
# A connection's phase: waiting for (the rest of) a request's headers, for its body, or for the next request.
HEADERS, BODY, IDLE = "headers", "body", "idle"


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float | None = DEFAULT_HEADER_TIMEOUT  # seconds from connect (or a request's first byte)
    max_per_client: int = 0  # open connections per client address; 0: no cap
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES  # request line and headers of one request


def _answer(status: bytes, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


def guarded_protocol(limits: ConnectionLimits, draining: threading.Event | None = None) -> type[HttpToolsProtocol]:
    """A protocol class for one server: its connection counts are its own. Once `draining` is set (the server
    is stopping), every answer closes its connection, so that clients open new ones (elsewhere, behind a load
    balancer) instead of racing the final close of an idle keep-alive connection with their next request.

    One watchdog timer per connection, armed when it opens and re-armed by itself, reads what the
    parser callbacks note (the phase, and when it last made progress): a request costs a few
    attribute writes, never a timer of its own.
    """
    open_by_client: Counter[str] = Counter()
    stopping = draining or threading.Event()
    timeout = limits.header_timeout
    headers_late = _answer(b"408 Request Timeout", f"the request's headers did not arrive within {timeout:g} s "
                           "(--header-timeout-s)") if timeout else b""
    body_stalled = _answer(b"408 Request Timeout", f"the request's body stopped arriving for {timeout:g} s "
                           "(--header-timeout-s)") if timeout else b""
    too_large = _answer(b"431 Request Header Fields Too Large", f"the request's headers are over "
                        f"{limits.max_header_bytes} bytes")
    too_many = _answer(b"429 Too Many Requests", f"this client already has {limits.max_per_client} connections "
                       "open (--max-connections-per-client)")

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _counted = False
        _watchdog: asyncio.TimerHandle | None = None
        _phase = HEADERS
        _since = 0.0  # loop time the phase began (HEADERS) or the body last moved (BODY)
        _header_bytes = 0  # read while in HEADERS: a bound on the headers' size, exact unless a read ends them
        _refused = False  # answered (431) and closing: the parser's further callbacks are ignored

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._peer = self.client[0] if self.client else ""
            if limits.max_per_client and open_by_client[self._peer] >= limits.max_per_client:
                transport.write(too_many)
                transport.close()
                return
            self._counted = True
            open_by_client[self._peer] += 1
            self._since = self.loop.time()
            if timeout:
                self._watchdog = self.loop.call_later(timeout, self._watch)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
            if self._counted:
                self._counted = False
                open_by_client[self._peer] -= 1
                if open_by_client[self._peer] <= 0:
                    del open_by_client[self._peer]
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._phase is not HEADERS:
                return super().data_received(data)
            self._header_bytes += len(data)
            super().data_received(data)
            if self._phase is HEADERS and self._header_bytes > limits.max_header_bytes:
                self._refuse()  # still inside the headers: they are too large, whatever follows

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._phase is IDLE:  # the first request's deadline runs from the connection's start
                self._phase, self._since, self._header_bytes = HEADERS, self.loop.time(), 0

        def on_headers_complete(self) -> None:
            if self._refused:
                return
            if self._header_bytes > limits.max_header_bytes and len(self.url) + sum(
                    len(name) + len(value) for name, value in self.headers) > limits.max_header_bytes:
                return self._refuse()  # they came in one read with what follows them: counted exactly here
            self._phase, self._since = BODY, self.loop.time()
            super().on_headers_complete()
            if stopping.is_set() and self.cycle is not None:
                self.cycle.keep_alive = False  # uvicorn answers with `connection: close` and closes after it

        def on_body(self, body: bytes) -> None:
            if self._refused:
                return
            self._since = self.loop.time()
            super().on_body(body)

        def on_message_complete(self) -> None:
            if self._refused:
                return
            self._phase = IDLE
            super().on_message_complete()

        def _refuse(self) -> None:
            if not self._refused and not self.transport.is_closing():
                self.transport.write(too_large)
                self.transport.close()
            self._refused = True

        def _watch(self) -> None:
            assert timeout
            self._watchdog = None
            if self.transport.is_closing():
                return
            waited = self.loop.time() - self._since
            cut_off = self._phase is not IDLE and waited >= timeout
            if cut_off and self._phase is HEADERS and self.cycle is not None and not self.cycle.response_complete:
                cut_off = False  # a response is still going out (pipelining): the next request's clock restarts
                self._since = self.loop.time()
            if not cut_off:
                left = timeout - waited if self._phase is not IDLE and waited < timeout else timeout
                self._watchdog = self.loop.call_later(left, self._watch)
                return
            if self._phase is HEADERS:
                self.transport.write(headers_late)
            elif self.cycle is None or not self.cycle.response_started:
                self.transport.write(body_stalled)
            self.transport.close()

    return GuardedHttpToolsProtocol
