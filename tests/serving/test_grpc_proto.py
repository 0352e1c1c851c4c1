"""The repo's grpc_service.proto against the descriptors tritonclient ships: same wire format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc
from tritonclient.grpc import service_pb2

from wasinfer.serving.descriptors import _pool, service_descriptor_set
from wasinfer.serving.errors import TooManyRequests
from wasinfer.serving.grpc_api import SERVICE, client_address, service_methods, thread_shares


def _fields(message: Any) -> dict[str, tuple[int, int, int, str]]:
    proto = descriptor_pb2.DescriptorProto()
    message.CopyToProto(proto)
    return {f.name: (f.number, f.type, f.label, f.type_name.rsplit(".", 1)[-1]) for f in proto.field}


def _walk(message: Any) -> dict[str, Any]:
    """Every message type reachable from `message` (nested types and field types), by full name."""
    found = {message.full_name: message}
    for field in message.fields:
        if field.message_type is not None and field.message_type.full_name not in found:
            found.update(_walk(field.message_type))
    return found


# The model configuration and statistics extensions declare only the fields wasinfer fills (and, for config.pbtxt,
# honours): each of those is Triton's, number, type and name; Triton's others are left out.
SUBSET_METHODS = {"ModelConfig", "ModelStatistics"}


def _enums(message: Any) -> dict[str, dict[str, int]]:
    """The enums of `message`'s fields by full name: value name → number."""
    return {f.enum_type.full_name: {v.name: v.number for v in f.enum_type.values} for f in message.fields
            if f.enum_type is not None}


def test_every_message_matches_triton_field_for_field() -> None:
    ours = _pool().FindServiceByName(SERVICE)
    theirs = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert ours.full_name == theirs.full_name == "inference.GRPCInferenceService"
    checked = 0
    for method in ours.methods:
        triton = theirs.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            triton.input_type.full_name, triton.output_type.full_name)
        assert not method.server_streaming and not method.client_streaming
        for side in ("input_type", "output_type"):
            our_types, their_types = _walk(getattr(method, side)), _walk(getattr(triton, side))
            if method.name in SUBSET_METHODS:
                assert set(our_types) <= set(their_types), method.name
            else:
                assert set(our_types) == set(their_types), method.name
            for name, message in our_types.items():
                if method.name in SUBSET_METHODS:
                    assert _fields(message).items() <= _fields(their_types[name]).items(), name
                    assert _enums(message).items() <= _enums(their_types[name]).items(), name
                else:
                    assert _fields(message) == _fields(their_types[name]), name
                checked += 1
    assert checked > 30


def test_the_service_has_the_v2_methods() -> None:
    assert set(service_methods()) == {
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
        "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload", "ModelConfig", "ModelStatistics"}


def test_the_server_never_runs_protoc_on_the_shipped_protos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_protoc(args: list[str]) -> int:
        raise AssertionError("protoc ran although the package ships the compiled descriptors")

    monkeypatch.setattr(protoc, "main", no_protoc)
    assert service_descriptor_set(tmp_path) and not (tmp_path / "proto").exists()


def test_changed_protos_are_compiled_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A source tree whose .protos changed since scripts/compile_protos.py ran (no shipped set by their hash)."""
    import wasinfer.serving.descriptors as descriptors

    monkeypatch.setattr(descriptors, "compiled_name", lambda: "grpc_service-edited.pb")
    compiled = service_descriptor_set(tmp_path)
    [cached] = (tmp_path / "proto").iterdir()
    assert cached.name == "grpc_service-edited.pb" and cached.read_bytes() == compiled

    def no_protoc(args: list[str]) -> int:
        raise AssertionError("protoc ran although the descriptors were cached")

    monkeypatch.setattr(protoc, "main", no_protoc)
    assert service_descriptor_set(tmp_path) == compiled


def test_one_model_holds_at_most_its_share_of_the_grpc_threads() -> None:
    """A call keeps its thread while it waits for its model: past its share a model's calls are refused at
    once, and other models keep theirs."""
    shares = thread_shares(2)
    with shares.hold("loop"), shares.hold("loop"):
        with pytest.raises(TooManyRequests, match="model 'loop' already has 2 calls in progress"), shares.hold("loop"):
            pass
        with shares.hold("steady"), shares.hold("steady"):
            pass
    with shares.hold("loop"), shares.hold("loop"):  # given back when the calls end
        pass


@pytest.mark.parametrize(("peer", "client"), [
    ("ipv4:127.0.0.1:50123", "127.0.0.1"), ("ipv6:[::1]:50123", "::1"), ("unix:/tmp/s", "unix:/tmp/s")])
def test_a_client_is_its_address_whatever_its_port(peer: str, client: str) -> None:
    assert client_address(peer) == client


def test_the_shipped_descriptor_set_is_what_the_protos_compile_to() -> None:
    """The server loads proto/grpc_service-<hash>.pb and never runs protoc (a wheel needs no grpcio-tools): it
    must be there for these .protos, and be what protoc makes of them (scripts/compile_protos.py writes it)."""
    from tests.scripts import load
    from wasinfer.serving.descriptors import PROTO, compiled_name, service_descriptor_set

    assert load("scripts/compile_protos.py").main(["--check"]) == 0
    assert service_descriptor_set(None) == PROTO.with_name(compiled_name()).read_bytes()
