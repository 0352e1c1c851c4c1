"""The inference server: KServe Open Inference Protocol v2 over REST and gRPC (`wasinfer serve`).

`Server` and `ServerConfig` are imported on first use (PEP 562), so that `wasinfer --help` and the other
commands, which read `serving.cli`'s flags, start without the server's dependencies (the `serve` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wasinfer.serving.server import Server, ServerConfig

__all__ = ["Server", "ServerConfig"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'wasinfer.serving' has no attribute {name!r}")
    from wasinfer.serving import server

    value = getattr(server, name)
    globals()[name] = value
    return value
