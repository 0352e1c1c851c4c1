"""The serving protocols' protobuf messages, compiled from proto/*.proto into a private descriptor pool.

The .protos (grpc_service.proto, with Triton's model configuration in model_config.proto, and
health.proto) are compiled when the package is built: `python scripts/compile_protos.py` writes
their descriptor set next to them as proto/grpc_service-<hash>.pb (the .protos' hash; a test
checks it is there and current), which the wheel ships, so a server never runs protoc and needs
no grpcio-tools. A source tree whose .protos changed since falls back to protoc (grpcio-tools, a
development dependency), keeping what it made in the compiled-code cache ($WASINFER_HOME/cache/proto).
The set is loaded into a descriptor pool of our own: no generated code, and nothing in the default
pool, where tritonclient registers the same `inference.*` names (a client and a server in one
process, as in the tests, would collide there).

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


def compiled_name() -> str:
    """The file name of these .protos' descriptor set: it changes with any byte of them."""
    source = b"".join(path.read_bytes() for path in _SOURCES)
    return f"grpc_service-{hashlib.sha256(source).hexdigest()[:16]}.pb"


def compile_protos() -> bytes:
    """The .protos as a serialised FileDescriptorSet, compiled by grpcio-tools' protoc (a development and build
    dependency: scripts/compile_protos.py runs this)."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory(prefix="wasinfer-proto-") as tmp:
        out = Path(tmp) / "grpc_service.pb"
        code = protoc.main(["protoc", f"-I{PROTO.parent}", f"--descriptor_set_out={out}",
                            *(path.name for path in _SOURCES)])
        if code != 0:
            raise RuntimeError(f"protoc failed ({code}) on {PROTO.parent}")
        return out.read_bytes()


def service_descriptor_set(cache_dir: Path | None = None) -> bytes:
    """The .protos as a serialised FileDescriptorSet: the one built with the package, else (a source tree whose
    .protos changed) one compiled before into `cache_dir`, else compiled now by protoc (and kept there)."""
    name = compiled_name()
    shipped = PROTO.with_name(name)
    if shipped.is_file():
        return shipped.read_bytes()
    cached = cache_dir / "proto" / name if cache_dir else None
    if cached is not None and cached.is_file():
        return cached.read_bytes()
    data = compile_protos()
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
