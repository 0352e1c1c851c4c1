"""The v2 REST front end: a plain ASGI app (no framework between the server and the handlers).

Routing is a split of the path, answers that do not change are encoded once, the JSON is
parsed by orjson, and a model runs on worker threads of its own (models.py) so the event loop
keeps parsing the next request while wasm runs on another core, and a slow model's queue never
holds another model's requests. A model whose runs take less than the hand-off to a thread and
back (models.INLINE_SECONDS, judged from its recent runs) runs on the event loop instead: for
it, the hand-off would cost more than the parallelism gains (LoadedModel.infer_async decides,
and hands batched models to their batcher). A request must be answered by its deadline
(--deadline-ms, counted once its model is loaded): one still queued then gets 504 without running.
Health, readiness and /metrics are answered on the event loop itself, never queued behind
inference.
Lazy loads go to a separate executor, so a cold start never holds a thread that a warm
model's inference needs. A body over PARSE_INLINE_BYTES is parsed on a parse thread of its own,
one at a time, so the event loop keeps answering (health checks above all) while it is; and
protocol.check_json_values refuses, before parsing, JSON with more values than
--max-json-values, whose parse would cost seconds and gigabytes.

Every /v2 answer carries X-Request-ID (logs.py says where the id comes from). Bearer tokens
(auth.py) are checked only when one is set: with none, a request pays one attribute test.
Every failure, expected (a ServingError) or not (a bug), is answered with a JSON
{"error": ...} and logged with the request's id; a bug never leaves the client with uvicorn's
bare 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST

from wasinfer.serving.auth import Tokens, challenge, check_bearer
from wasinfer.serving.breaker import BreakerOpen
from wasinfer.serving.console import console_file, is_console_path
from wasinfer.serving.errors import (
    BadRequest,
    DeadlineExceeded,
    GuestRefused,
    Internal,
    MethodNotAllowed,
    NotFound,
    NotImplementedExtension,
    ServingError,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from wasinfer.serving.guests import EXIT_CODE_HEADER, GuestBusy, Guests, stderr_tail
from wasinfer.serving.logs import accept_request_id, access_log, new_request_id
from wasinfer.serving.metrics import Metrics, Phases
from wasinfer.serving.models import LoadedModel, ModelManager
from wasinfer.serving.protocol import (
    DEFAULT_MAX_JSON_VALUES,
    EXTENSIONS,
    UNSUPPORTED_EXTENSIONS,
    check_load_parameters,
    encode_rest_response,
    parse_rest_request,
    unsupported_extension,
)
from wasinfer.version import __version__

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

log = logging.getLogger("wasinfer.serving")

JSON = b"application/json"
SERVER_METADATA = orjson.dumps({"name": "wasinfer", "version": __version__, "extensions": EXTENSIONS})
PARSE_INLINE_BYTES = 256 * 1024  # bodies up to this parse on the event loop (a few ms); bigger, on the parse thread
REPOSITORY_BODY_BYTES = 64 * 1024  # a repository request is a small JSON object
# A body refused by its Content-Length is still read (and dropped), up to this much more than the limit and for at
# most DISCARD_SECONDS: closing a connection with unread data makes the kernel reset it, and the reset throws the
# 413 away from the client's receive buffer, so a client still sending saw a broken connection instead.
DISCARD_BYTES = 64 * 1024 * 1024
DISCARD_SECONDS = 10.0
# What a request's headers say, in one pass: Content-Length, Inference-Header-Content-Length,
# Content-Encoding, Authorization, and the client's request id (already vetted).
Head = tuple[bytes | None, bytes | None, bytes | None, bytes | None, str | None]


class RestApp:
    """ASGI application serving KServe v2 REST, the repository extension, OpenAPI and /metrics."""

    def __init__(self, manager: ModelManager, metrics: Metrics, load_executor: Executor, max_body_bytes: int,
                 openapi: bytes, tokens: Tokens | None = None, access_log: bool = False,
                 guests: Guests | None = None, not_ready: Callable[[], str] = lambda: "",
                 max_json_values: int = DEFAULT_MAX_JSON_VALUES):
        self.manager, self.metrics = manager, metrics
        self.guests = guests  # WASI-NN guest programs (guests.py); None: no /v2/guests routes
        self.load_executor = load_executor
        self.not_ready = not_ready  # why the server must not take traffic yet ("" when it may): /v2/health/ready
        self.max_body_bytes, self.openapi = max_body_bytes, openapi
        tokens = tokens or Tokens()
        self.inference_token, self.management_token = tokens.inference, tokens.management
        self.access_log = access_log
        self.max_json_values = max_json_values
        # One thread: big bodies parse one at a time, so their parses' memory is never more than one's.
        self.parse_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wasinfer-parse")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if self.access_log:
            return await self._logged(scope, receive, send)
        try:
            await self._route(scope, receive, send)
        except Exception as exc:  # every failure gets a JSON answer and a log line
            await self._fail(scope, send, exc)
        except asyncio.CancelledError:  # still running when the shutdown's grace period ran out
            await self._cut_off(scope, send)
            raise

    async def _cut_off(self, scope: Scope, send: Send) -> None:
        """A JSON 503 for a request the shutdown cancels (uvicorn's own answer is a bare text 500), unless its
        answer had already begun."""
        with contextlib.suppress(Exception):
            await self._fail(scope, send, Unavailable("the server shut down before this request finished: its "
                                                      "grace period (--shutdown-grace-s) ran out"))

    async def _fail(self, scope: Scope, send: Send, exc: Exception) -> None:
        """Answer and log a failure outside inference (which does its own, to count it in the metrics)."""
        request_id = _scan(scope)[4] or new_request_id()
        failure = _serving_error(exc, request_id)
        _log_failure(failure, exc, request_id, scope, None, None, None)
        await _error(send, failure, request_id)

    async def _logged(self, scope: Scope, receive: Receive, send: Send) -> None:
        """__call__ with one access-log line per request (--access-log)."""
        started = time.perf_counter()
        status, request_id = 0, ""

        async def capture(message: MutableMapping[str, Any]) -> None:
            nonlocal status, request_id
            if message["type"] == "http.response.start":
                status = message["status"]
                request_id = next((v.decode() for k, v in message["headers"] if k == b"x-request-id"), "")
            await send(message)

        try:
            await self._route(scope, receive, capture)
        except Exception as exc:
            await self._fail(scope, capture, exc)
        except asyncio.CancelledError:
            await self._cut_off(scope, capture)
            raise
        finally:
            model, version = _path_model(scope["path"])
            access_log.info("%s %s %s", scope["method"], scope["path"], status or "-", extra={
                "request_id": request_id or None, "protocol": "rest", "method": scope["method"],
                "path": scope["path"], "model": model, "version": version, "status": status or None,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3)})

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, parts = scope["method"], scope["path"].split("/")
        if is_console_path(scope["path"]):  # the web console: static, as open as /metrics (console/)
            _allow(method, "GET")
            body, content_type = console_file(scope["path"])
            return await _send(send, 200, body, "", content_type)
        if parts[-1] == "":
            parts.pop()
        if len(parts) < 2 or parts[0] != "":
            raise NotFound(f"no route {scope['path']}")
        root, rest = parts[1], parts[2:]
        if root == "metrics" and not rest:
            _allow(method, "GET")
            return await _send(send, 200, self.metrics.exposition(), "", CONTENT_TYPE_LATEST.encode())
        if root != "v2":
            raise NotFound(f"no route {scope['path']}")
        if not rest:
            _allow(method, "GET")
            head = _scan(scope)
            if self.inference_token is not None:
                check_bearer(self.inference_token, head[3], "inference")
            return await _send(send, 200, SERVER_METADATA, head[4])
        first = rest[0]
        if rest == ["models", "stats"]:  # every model's (a model named "stats" keeps /versions/N/stats)
            return await self._statistics(scope, send, "", "")
        if first == "models" and len(rest) >= 2:
            return await self._model_route(scope, receive, send, rest[1], rest[2:])
        if first == "health" and len(rest) == 2 and rest[1] in ("live", "ready"):
            _allow(method, "GET")
            reason = self.not_ready() if rest[1] == "ready" else ""
            if reason:
                raise Unavailable(f"not ready: {reason}")
            return await _send(send, 200, b"", _scan(scope)[4])
        if first == "repository":
            return await self._repository_route(scope, receive, send, rest[1:])
        if first == "openapi.json" and len(rest) == 1:
            _allow(method, "GET")
            return await _send(send, 200, self.openapi, _scan(scope)[4])
        if first == "guests" and self.guests is not None and len(rest) == 3 and rest[2] == "run":
            return await self._guest(scope, receive, send, rest[1])
        for extension, (_, routes) in UNSUPPORTED_EXTENSIONS.items():
            if first in routes:
                raise NotImplementedExtension(unsupported_extension(extension))
        raise NotFound(f"no route {scope['path']}")

    async def _guest(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        """POST /v2/guests/{name}/run: the body is the guest's stdin, the answer its stdout (guests.py)."""
        assert self.guests is not None
        _allow(scope["method"], "POST")
        head = _scan(scope)
        if self.inference_token is not None:
            check_bearer(self.inference_token, head[3], "inference")
        if name not in self.guests.programs:
            raise NotFound(f"no guest {name!r} (served: {', '.join(self.guests.names()) or 'none'})")
        body, _ = await self._body(receive, head)
        try:
            future = self.guests.submit(name, body)
        except GuestBusy as exc:
            raise TooManyRequests(str(exc)) from None
        result = await asyncio.wrap_future(future)
        if result.fault == "deadline":
            raise DeadlineExceeded(f"guest {name!r} ran past its deadline and was stopped: {stderr_tail(result)}")
        if result.fault is not None:
            raise Internal(f"guest {name!r} failed: {stderr_tail(result)}")
        if result.exit_code != 0:
            raise GuestRefused(f"guest {name!r} exited with code {result.exit_code}: {stderr_tail(result)}",
                               result.exit_code)
        await _send(send, 200, result.stdout, head[4], b"application/octet-stream",
                    [(EXIT_CODE_HEADER, str(result.exit_code).encode())])

    async def _model_route(self, scope: Scope, receive: Receive, send: Send, name: str, rest: list[str]) -> None:
        version = ""
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest = rest[1], rest[2:]
        action = rest[0] if len(rest) == 1 else "" if not rest else None
        if action == "infer":
            _allow(scope["method"], "POST")
            return await self._infer(scope, receive, send, name, version)
        if action == "stats":
            return await self._statistics(scope, send, name, version)
        if action is None or action not in ("", "ready", "config"):
            raise NotFound(f"no route {scope['path']}")
        _allow(scope["method"], "GET")
        head = _scan(scope)
        if self.inference_token is not None:
            check_bearer(self.inference_token, head[3], "inference")
        if action == "":
            model = await self._model(name, version)
            return await _send(send, 200, model.metadata_json, head[4])
        if action == "config":  # the model configuration extension
            model = await self._model(name, version)
            return await _send(send, 200, model.triton_config_json, head[4])
        reason = self.manager.unready_reason(name, version)
        if reason:
            raise Unavailable(f"model {name!r}{f' version {version}' if version else ''} is not ready: {reason}")
        return await _send(send, 200, b"", head[4])

    async def _statistics(self, scope: Scope, send: Send, name: str, version: str) -> None:
        """GET /v2/models[/{name}[/versions/{v}]]/stats: Triton's statistics extension, from memory (no load)."""
        _allow(scope["method"], "GET")
        head = _scan(scope)
        if self.inference_token is not None:
            check_bearer(self.inference_token, head[3], "inference")
        stats = self.manager.statistics(name, version)
        return await _send(send, 200, orjson.dumps({"model_stats": stats}), head[4])

    async def _repository_route(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        index = rest == ["index"]
        if not index and not (len(rest) == 3 and rest[0] == "models" and rest[2] in ("load", "unload")):
            raise NotFound(f"no route {scope['path']}")
        _allow(scope["method"], "POST")
        head = _scan(scope)
        if self.management_token is not None:
            check_bearer(self.management_token, head[3], "management")
        options = await self._json_body(receive, head)
        if index:
            rows = self.manager.index(bool(options.get("ready", False)))
            return await _send(send, 200, orjson.dumps(rows), head[4])
        parameters = options.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise BadRequest("\"parameters\" must be a JSON object")
        loop = asyncio.get_running_loop()
        self.manager.check_repository_api(rest[2], rest[1])
        if rest[2] == "load":
            check_load_parameters(parameters)
            await loop.run_in_executor(self.load_executor, self.manager.load, rest[1])
        else:
            await loop.run_in_executor(self.load_executor, self.manager.unload, rest[1])
        return await _send(send, 200, b"", head[4])

    async def _model(self, name: str, version: str) -> LoadedModel:
        model = self.manager.lookup(name, version)
        if model is None and self.manager.loads_quickly(name, version):
            model = self.manager.get(name, version)  # a millisecond or two, here rather than behind the GIL
        if model is None:  # not loaded yet: load it, and this request waits for the load
            model = await asyncio.get_running_loop().run_in_executor(self.load_executor, self.manager.get, name,
                                                                     version)
        return model

    async def _infer(self, scope: Scope, receive: Receive, send: Send, name: str, version: str) -> None:
        started = time.perf_counter()
        model: LoadedModel | None = None
        request_id: str | None = None
        try:
            head = _scan(scope)
            request_id = head[4]
            if self.inference_token is not None:
                check_bearer(self.inference_token, head[3], "inference")
            body, header_length = await self._body(receive, head)
            model = self.manager.lookup(name, version) or await self._model(name, version)
            model.breaker.check()  # a model refused by its fault breaker: before the body is parsed
            deadline = self.manager.deadline()  # from here: a cold start is not the request's to pay for
            decoding = time.perf_counter()
            if len(body) <= PARSE_INLINE_BYTES:
                request = parse_rest_request(body, header_length, self.max_json_values)
            else:
                request = await asyncio.get_running_loop().run_in_executor(
                    self.parse_executor, parse_rest_request, body, header_length, self.max_json_values)
            if request_id is None and request.id:
                request_id = accept_request_id(request.id)
            model.check(request)
            phases = Phases(input=time.perf_counter() - decoding)
            outputs = await model.infer_async(request.inputs, deadline, phases)
            encoding = time.perf_counter()
            payload, json_length = encode_rest_response(model.name, model.version, request,
                                                        model.classified(request, outputs))
            phases.output = time.perf_counter() - encoding
        except Exception as exc:  # answered and logged with the request's id
            request_id = request_id or new_request_id()
            failure = _serving_error(exc, request_id)
            if isinstance(failure, BreakerOpen):
                await asyncio.sleep(failure.hold)
            self.metrics.request(model.name if model else "", model.version if model else "", "rest",
                                 failure.outcome, time.perf_counter() - started)
            _log_failure(failure, exc, request_id, scope, model.name if model else name,
                         model.version if model else version or None, started)
            return await _error(send, failure, request_id)
        self.metrics.request(model.name, model.version, "rest", "ok", time.perf_counter() - started, phases)
        if json_length is None:
            return await _send(send, 200, payload, request_id)
        await _send(send, 200, payload, request_id, b"application/octet-stream",
                    [(b"inference-header-content-length", str(json_length).encode())])

    async def _body(self, receive: Receive, head: Head, limit: int | None = None) -> tuple[bytes, int | None]:
        """The whole body (decompressed), and its Inference-Header-Content-Length if given; over `limit` (default
        --max-body-bytes) it is refused, by its Content-Length when it has one, before a byte of it is kept."""
        length, header_length, encoding = head[0], head[1], head[2]
        limit = self.max_body_bytes if limit is None else limit
        if length is not None and length.isdigit() and int(length) > limit:
            if int(length) <= limit + DISCARD_BYTES:
                await _discard(receive)
            raise TooLarge(f"the body is {int(length)} bytes; this server takes at most {limit}"
                           f"{' (--max-body-bytes)' if limit == self.max_body_bytes else ' here'}")
        body = await _read(receive, limit)
        if encoding is not None:
            encoding = encoding.strip().lower()
            if encoding != b"identity":
                body = _decompress(body, encoding, limit)
        if header_length is None:
            return body, None
        if not header_length.isdigit():
            raise BadRequest(f"Inference-Header-Content-Length {header_length.decode('latin-1')[:40]!r} "
                             "is not a number")
        if len(header_length.lstrip(b"0")) > len(str(len(body))):  # past the body (and int() stops at 4,300 digits)
            raise BadRequest(f"Inference-Header-Content-Length of {len(header_length)} digits is outside the body's "
                             f"{len(body)} bytes")
        return body, int(header_length)

    async def _json_body(self, receive: Receive, head: Head) -> dict[str, Any]:
        """An optional JSON object (repository requests may come with no body at all)."""
        body, _ = await self._body(receive, head, min(REPOSITORY_BODY_BYTES, self.max_body_bytes))
        if not body.strip():
            return {}
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise BadRequest("the request body must be a JSON object")
        return value


def _scan(scope: Scope) -> Head:
    """The headers a handler needs, in one pass over the (short) header list."""
    length = header_length = encoding = authorization = None
    request_id: str | None = None
    for key, value in scope["headers"]:
        if key == b"content-length":
            length = value
        elif key == b"inference-header-content-length":
            header_length = value
        elif key == b"content-encoding":
            encoding = value
        elif key == b"authorization":
            authorization = value
        elif key == b"x-request-id":
            request_id = accept_request_id(value)
    return length, header_length, encoding, authorization, request_id


def _path_model(path: str) -> tuple[str | None, str | None]:
    """The model and version a /v2/models/... path names (for log lines), else Nones."""
    parts = path.split("/")
    if len(parts) < 4 or parts[1] != "v2" or parts[2] != "models" or not parts[3]:
        return None, None
    return parts[3], parts[5] if len(parts) > 5 and parts[4] == "versions" and parts[5] else None


def _serving_error(exc: Exception, request_id: str) -> ServingError:
    """`exc` as the answer to send: a ServingError as it is, anything else (a bug) as a 500 that names the id."""
    if isinstance(exc, ServingError):
        return exc
    return Internal(f"internal server error (request id {request_id}; the server log has the details)")


def _log_failure(failure: ServingError, cause: Exception, request_id: str, scope: Scope, model: str | None,
                 version: str | None, started: float | None) -> None:
    """One line per refused or failed request: INFO for the client's errors, WARNING or ERROR for ours
    (with the traceback when the cause was not a ServingError, i.e. a bug)."""
    status = failure.http_status
    # a fault breaker's refusals are refused requests (its opening was logged once, as a warning)
    level = logging.INFO if status < 500 or isinstance(failure, BreakerOpen) else logging.WARNING if status == 503 \
        else logging.ERROR
    if not log.isEnabledFor(level):
        return
    if model is None:
        model, version = _path_model(scope["path"])
    log.log(level, "%s %s: %d %s", scope["method"], scope["path"], status, failure.message,
            exc_info=cause if cause is not failure else None, extra={
                "request_id": request_id, "protocol": "rest", "method": scope["method"], "path": scope["path"],
                "model": model, "version": version, "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3) if started is not None else None})


async def _read(receive: Receive, limit: int) -> bytes:
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):  # the common case: one chunk
        if len(body) > limit:
            raise TooLarge(f"the body is over {limit} bytes (--max-body-bytes)")
        return bytes(body)
    chunks, size = [body], len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is over {limit} bytes (--max-body-bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def _discard(receive: Receive) -> None:
    """Read and drop a refused body (see DISCARD_BYTES), for at most DISCARD_SECONDS."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DISCARD_SECONDS):
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return


def _decompress(body: bytes, encoding: bytes, limit: int) -> bytes:
    """gzip or deflate request bodies (tritonclient's request_compression_algorithm), bounded by the limit."""
    if encoding == b"gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == b"deflate":
        inflater = zlib.decompressobj()
    else:
        raise BadRequest(f"Content-Encoding {encoding.decode('latin-1')!r} is not supported "
                         "(use gzip, deflate or none)")
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"the {encoding.decode()} body cannot be decompressed: {exc}") from None
    if len(data) > limit:
        raise TooLarge(f"the decompressed body is over {limit} bytes (--max-body-bytes)")
    return data


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise MethodNotAllowed(method, allowed)


async def _send(send: Send, status: int, body: bytes, request_id: str | None, content_type: bytes = JSON,
                extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """One whole response; `request_id` None: the client sent none, so one is made (not for /metrics: "")."""
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if request_id is None:
        request_id = new_request_id()
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, exc: ServingError, request_id: str) -> None:
    extra = None
    if isinstance(exc, TooLarge):
        extra = [(b"connection", b"close")]  # the rest of the body is unread
    elif isinstance(exc, MethodNotAllowed):
        extra = [(b"allow", exc.allowed.encode())]
    elif isinstance(exc, Unauthorized):
        extra = [(b"www-authenticate", challenge(exc))]
    elif isinstance(exc, GuestRefused):
        extra = [(EXIT_CODE_HEADER, str(exc.exit_code).encode())]
    elif isinstance(exc, BreakerOpen):
        extra = [(b"retry-after", str(math.ceil(exc.retry_after)).encode())]
    await _send(send, exc.http_status, orjson.dumps({"error": exc.message}), request_id, extra=extra)
