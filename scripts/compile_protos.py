"""Compile the serving .protos into the descriptor set the package ships (src/wasinfer/serving/proto/).

    python scripts/compile_protos.py           # write proto/grpc_service-<hash>.pb, remove stale ones
    python scripts/compile_protos.py --check   # exit 1 if the shipped set is missing or not what protoc makes

Run it after editing a .proto: the server loads the shipped set and never runs protoc, so a wheel needs no
grpcio-tools (serving/descriptors.py). Needs grpcio-tools (a development dependency).
"""

from __future__ import annotations

import argparse
import sys

from google.protobuf import descriptor_pb2

from wasinfer.serving.descriptors import PROTO, compile_protos, compiled_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the shipped set is stale")
    args = parser.parse_args(argv)
    target = PROTO.with_name(compiled_name())
    fresh = compile_protos()
    stale = sorted(p for p in PROTO.parent.glob("grpc_service-*.pb") if p != target)
    if args.check:
        shipped = descriptor_pb2.FileDescriptorSet.FromString(target.read_bytes()) if target.is_file() else None
        if shipped != descriptor_pb2.FileDescriptorSet.FromString(fresh) or stale:
            print(f"{target} is missing or stale (or old sets remain: {[p.name for p in stale]}): "
                  "run python scripts/compile_protos.py", file=sys.stderr)
            return 1
        return 0
    for old in stale:
        old.unlink()
    target.write_bytes(fresh)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
