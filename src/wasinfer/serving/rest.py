"""The v2 REST front end: a plain ASGI app (no framework between the server and the handlers).

Routing is a split of the path, answers that do not change are encoded once, the JSON is
parsed by orjson, and a model runs on the inference executor so the event loop keeps
parsing the next request while wasm runs on another core. A model whose runs take less than
the hand-off to a thread and back (models.INLINE_SECONDS, judged from its recent runs) runs
on the event loop instead: for it, the hand-off would cost more than the parallelism gains.
Lazy loads go to a separate executor, so a cold start never holds a thread that a warm
model's inference needs.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Executor
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST

from wasinfer import __version__
from wasinfer.serving.errors import BadRequest, MethodNotAllowed, NotFound, ServingError, TooLarge, Unavailable
from wasinfer.serving.grpc_api import EXTENSIONS, check_load_parameters
from wasinfer.serving.metrics import Metrics
from wasinfer.serving.models import LoadedModel, ModelManager
from wasinfer.serving.protocol import encode_rest_response, parse_rest_request

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

JSON = b"application/json"
SERVER_METADATA = orjson.dumps({"name": "wasinfer", "version": __version__, "extensions": EXTENSIONS})


class RestApp:
    """ASGI application serving KServe v2 REST, the repository extension, OpenAPI and /metrics."""

    def __init__(self, manager: ModelManager, metrics: Metrics, executor: Executor, load_executor: Executor,
                 max_body_bytes: int, openapi: bytes):
        self.manager, self.metrics = manager, metrics
        self.executor, self.load_executor = executor, load_executor
        self.max_body_bytes, self.openapi = max_body_bytes, openapi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            await self._route(scope, receive, send)
        except ServingError as exc:
            await _error(send, exc)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, parts = scope["method"], scope["path"].split("/")
        if parts[-1] == "":
            parts.pop()
        if len(parts) < 2 or parts[0] != "":
            raise NotFound(f"no route {scope['path']}")
        root, rest = parts[1], parts[2:]
        if root == "metrics" and not rest:
            _allow(method, "GET")
            return await _send(send, 200, self.metrics.exposition(), CONTENT_TYPE_LATEST.encode())
        if root != "v2":
            raise NotFound(f"no route {scope['path']}")
        if not rest:
            _allow(method, "GET")
            return await _send(send, 200, SERVER_METADATA)
        head = rest[0]
        if head == "models" and len(rest) >= 2:
            return await self._model_route(scope, receive, send, rest[1], rest[2:])
        if head == "health" and len(rest) == 2 and rest[1] in ("live", "ready"):
            _allow(method, "GET")
            return await _send(send, 200, b"")
        if head == "repository":
            return await self._repository_route(scope, receive, send, rest[1:])
        if head == "openapi.json" and len(rest) == 1:
            _allow(method, "GET")
            return await _send(send, 200, self.openapi)
        raise NotFound(f"no route {scope['path']}")

    async def _model_route(self, scope: Scope, receive: Receive, send: Send, name: str, rest: list[str]) -> None:
        version = ""
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest = rest[1], rest[2:]
        action = rest[0] if len(rest) == 1 else "" if not rest else None
        if action == "infer":
            _allow(scope["method"], "POST")
            return await self._infer(scope, receive, send, name, version)
        if action == "":
            _allow(scope["method"], "GET")
            model = await self._model(name, version)
            return await _send(send, 200, model.metadata_json)
        if action == "ready":
            _allow(scope["method"], "GET")
            if not self.manager.is_ready(name, version):
                raise Unavailable(f"model {name!r}{f' version {version}' if version else ''} is not ready")
            return await _send(send, 200, b"")
        raise NotFound(f"no route {scope['path']}")

    async def _repository_route(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        if rest == ["index"]:
            _allow(scope["method"], "POST")
            options = await self._json_body(scope, receive)
            rows = self.manager.index(bool(options.get("ready", False)))
            return await _send(send, 200, orjson.dumps(rows))
        if len(rest) == 3 and rest[0] == "models" and rest[2] in ("load", "unload"):
            _allow(scope["method"], "POST")
            options = await self._json_body(scope, receive)
            parameters = options.get("parameters") or {}
            if not isinstance(parameters, dict):
                raise BadRequest("\"parameters\" must be a JSON object")
            loop = asyncio.get_running_loop()
            if rest[2] == "load":
                check_load_parameters(parameters)
                await loop.run_in_executor(self.load_executor, self.manager.load, rest[1])
            else:
                await loop.run_in_executor(self.load_executor, self.manager.unload, rest[1])
            return await _send(send, 200, b"")
        raise NotFound(f"no route {scope['path']}")

    async def _model(self, name: str, version: str) -> LoadedModel:
        model = self.manager.lookup(name, version)
        if model is None:  # not loaded yet: load it, and this request waits for the load
            model = await asyncio.get_running_loop().run_in_executor(self.load_executor, self.manager.get, name,
                                                                     version)
        return model

    async def _infer(self, scope: Scope, receive: Receive, send: Send, name: str, version: str) -> None:
        started = time.perf_counter()
        model: LoadedModel | None = None
        try:
            body, header_length = await self._body(scope, receive)
            model = self.manager.lookup(name, version) or await self._model(name, version)
            request = parse_rest_request(body, header_length)
            model.check(request)
            if model.is_quick(request.inputs):
                outputs = model.infer(request.inputs)
            else:
                outputs = await asyncio.get_running_loop().run_in_executor(self.executor, model.infer,
                                                                           request.inputs)
            payload, json_length = encode_rest_response(model.name, model.version, request, outputs)
        except ServingError as exc:
            self.metrics.request(model.name if model else "", model.version if model else "", "rest",
                                 exc.outcome, time.perf_counter() - started)
            return await _error(send, exc)
        self.metrics.request(model.name, model.version, "rest", "ok", time.perf_counter() - started)
        if json_length is None:
            return await _send(send, 200, payload)
        await _send(send, 200, payload, b"application/octet-stream",
                    [(b"inference-header-content-length", str(json_length).encode())])

    async def _body(self, scope: Scope, receive: Receive) -> tuple[bytes, int | None]:
        """The whole body (decompressed), and its Inference-Header-Content-Length if given."""
        length = header_length = encoding = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = value
            elif key == b"inference-header-content-length":
                header_length = value
            elif key == b"content-encoding":
                encoding = value.strip().lower()
        limit = self.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            raise TooLarge(f"the body is {int(length)} bytes; this server takes at most {limit} (--max-body-bytes)")
        body = await _read(receive, limit)
        if encoding not in (None, b"identity"):
            body = _decompress(body, encoding, limit)
        if header_length is None:
            return body, None
        if not header_length.isdigit():
            raise BadRequest(f"Inference-Header-Content-Length {header_length.decode(errors='replace')!r} "
                             "is not a number")
        return body, int(header_length)

    async def _json_body(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        """An optional JSON object (repository requests may come with no body at all)."""
        body, _ = await self._body(scope, receive)
        if not body.strip():
            return {}
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise BadRequest("the request body must be a JSON object")
        return value


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


def _decompress(body: bytes, encoding: bytes, limit: int) -> bytes:
    """gzip or deflate request bodies (tritonclient's request_compression_algorithm), bounded by the limit."""
    if encoding == b"gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == b"deflate":
        inflater = zlib.decompressobj()
    else:
        raise BadRequest(f"Content-Encoding {encoding.decode(errors='replace')!r} is not supported "
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


async def _send(send: Send, status: int, body: bytes, content_type: bytes = JSON,
                extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, exc: ServingError) -> None:
    extra = [(b"connection", b"close")] if isinstance(exc, TooLarge) else None  # the rest of the body is unread
    if isinstance(exc, MethodNotAllowed):
        extra = [(b"allow", exc.allowed.encode())]
    await _send(send, exc.http_status, orjson.dumps({"error": exc.message}), extra=extra)
