"""The serving protocols' protobuf messages, compiled from proto/*.proto into a private descriptor pool.

The .protos (grpc_service.proto, with Triton's model configuration in model_config.proto, and
health.proto) are compiled by grpcio-tools' protoc at first use into a descriptor set, kept in
the compiled-code cache ($WASINFER_HOME/cache/proto, keyed by the .protos' hash: protoc takes a
third of a second, a cached set a millisecond), and loaded into a descriptor pool of our own. No
generated code is committed, and none is imported into the default pool, where tritonclient
registers the same `inference.*` names (a client and a server in one process, as in the tests,
would collide there).

Its own module, below both the gRPC front end and the model configuration (which parses
Triton's config.pbtxt against the same `inference.ModelConfig`), so neither imports the other.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from wasinfer.fileio import atomic_write

log = logging.getLogger("wasinfer.serving")

PROTO = Path(__file__).parent / "proto" / "grpc_service.proto"
MODEL_CONFIG_PROTO = PROTO.with_name("model_config.proto")
HEALTH_PROTO = PROTO.with_name("health.proto")
_SOURCES = (MODEL_CONFIG_PROTO, PROTO, HEALTH_PROTO)  # in import order


def service_descriptor_set(cache_dir: Path | None = None) -> bytes:
    """The .protos as a serialised FileDescriptorSet: from `cache_dir` when these .protos were compiled before,
    else compiled by grpcio-tools' protoc (and kept there)."""
    source = b"".join(path.read_bytes() for path in _SOURCES)
    cached = cache_dir / "proto" / f"grpc_service-{hashlib.sha256(source).hexdigest()[:16]}.pb" if cache_dir else None
    if cached is not None and cached.is_file():
        return cached.read_bytes()
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory(prefix="wasinfer-proto-") as tmp:
        out = Path(tmp) / "grpc_service.pb"
        code = protoc.main(["protoc", f"-I{PROTO.parent}", f"--descriptor_set_out={out}",
                            *(path.name for path in _SOURCES)])
        if code != 0:
            raise RuntimeError(f"protoc failed ({code}) on {PROTO.parent}")
        data = out.read_bytes()
    if cached is not None:
        try:
            atomic_write(cached, data)  # two servers starting at once never read half a file
        except OSError as exc:  # a read-only cache costs the next start a protoc run, nothing more
            log.warning("cannot cache the gRPC descriptors in %s: %s", cached.parent, exc)
    return data


@functools.cache
def _pool(cache_dir: Path | None = None) -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(service_descriptor_set(cache_dir)).file:
        pool.Add(file)
    return pool


def messages(cache_dir: Path | None = None, proto: Path = PROTO) -> dict[str, Any]:
    """The message classes of the service (or of `proto`'s), by unqualified name, from the private pool."""
    package = _pool(cache_dir).FindFileByName(proto.name)
    return {name: message_factory.GetMessageClass(desc) for name, desc in package.message_types_by_name.items()}
