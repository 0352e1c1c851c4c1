"""gRPC server reflection, as grpcurl uses it: grpcio-reflection's own client against a real server on loopback."""

from __future__ import annotations

from pathlib import Path

import grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.serving.conftest import start_server


def test_reflection_lists_the_services_and_resolves_model_infer(repository: Path) -> None:
    server = start_server(repository)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            database = ProtoReflectionDescriptorDatabase(channel)
            services = sorted(database.get_services())
            print("services:", services)
            assert services == ["grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                                "inference.GRPCInferenceService"]
            from google.protobuf.descriptor_pool import DescriptorPool

            pool = DescriptorPool(database)  # what grpcurl does: descriptors fetched from the server on demand
            method = pool.FindServiceByName("inference.GRPCInferenceService").methods_by_name["ModelInfer"]
            print("ModelInfer:", method.input_type.full_name, "->", method.output_type.full_name)
            assert method.input_type.full_name == "inference.ModelInferRequest"
            assert method.output_type.full_name == "inference.ModelInferResponse"
            assert "raw_input_contents" in method.input_type.fields_by_name
            # Triton's model configuration comes with it (grpc_service.proto imports model_config.proto)
            config = pool.FindMessageTypeByName("inference.ModelConfig")
            assert "max_batch_size" in config.fields_by_name
            check = pool.FindServiceByName("grpc.health.v1.Health").methods_by_name["Check"]
            assert check.output_type.full_name == "grpc.health.v1.HealthCheckResponse"
    finally:
        server.stop(grace=2)
