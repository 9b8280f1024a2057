#!/bin/sh
# Regenerate the checked-in stubs from echo.proto (needs grpcio-tools and protoc-gen-connectrpc).
set -e
cd "$(dirname "$0")"
python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
    --plugin=protoc-gen-connectrpc="$(command -v protoc-gen-connectrpc)" \
    --connectrpc_out=. --connectrpc_opt=protobuf=google echo.proto
# grpc_tools writes a top-level import; the stubs live in a package.
sed -i 's/^import echo_pb2 as echo__pb2$/from . import echo_pb2 as echo__pb2/' echo_pb2_grpc.py
