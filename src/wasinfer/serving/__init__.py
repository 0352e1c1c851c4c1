"""The inference server: KServe Open Inference Protocol v2 over REST and gRPC (`wasinfer serve`)."""

from wasinfer.serving.server import Server, ServerConfig

__all__ = ["Server", "ServerConfig"]
