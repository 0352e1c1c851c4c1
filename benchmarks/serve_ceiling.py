"""The bare-ASGI ceiling for serve_bench.py: what one uvicorn process answers with no model at all.

It runs uvicorn the way wasinfer's server does (httptools, uvloop when installed, no lifespan,
access log or Server header), reads the whole body, parses the v2 JSON request with orjson,
checks that each input's data fits its shape, and answers a v2-shaped JSON response with one
INT64 "label" per batch row. Every server in the benchmark does at least this much per request,
so wasinfer's requests per second against this app's is how much of the framework's ceiling it
keeps. Not a server for anything else.

    python benchmarks/serve_ceiling.py --port 8100
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
import uvicorn

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]


async def respond(send: Send, status: int, body: bytes) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    parts = scope["path"].strip("/").split("/")
    if scope["method"] == "GET":  # readiness probes: /v2/health/ready and the like
        return await respond(send, 200, b"")
    if len(parts) != 4 or parts[:2] != ["v2", "models"] or parts[3] != "infer":
        return await respond(send, 404, b'{"error":"no route"}')
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    try:
        request = orjson.loads(b"".join(chunks))
        rows = 1
        for tensor in request["inputs"]:
            shape, data = tensor["shape"], tensor["data"]
            if not isinstance(data, list) or len(data) != math.prod(shape):
                raise ValueError(f"input {tensor['name']!r}: data does not fit shape {shape}")
            rows = shape[0]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return await respond(send, 400, orjson.dumps({"error": str(exc)}))
    answer = {"model_name": parts[2], "model_version": "1",
              "outputs": [{"name": "label", "datatype": "INT64", "shape": [rows], "data": [0] * rows}]}
    await respond(send, 200, orjson.dumps(answer))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, http="httptools", loop="auto", lifespan="off",
                access_log=False, proxy_headers=False, server_header=False, log_level="warning")


if __name__ == "__main__":
    main()
