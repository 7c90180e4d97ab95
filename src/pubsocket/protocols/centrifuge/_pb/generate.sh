#!/bin/sh
# Regenerates pubsocket_centrifuge_pb2.py(i) from client.proto (`make proto`).
#
# client.proto is centrifugal/protocol's client.proto as published (commit
# a578daf7f6d99b6e968893a61f26cd9cfc2b4bf4), unchanged. Only the generated copy gets
# another file name and package: centrifuge-python registers its own client.proto
# (package centrifugal.centrifuge.protocol) in protobuf's default descriptor pool, and
# two files defining the same names cannot both load in one process. The package name
# is not on the wire, so the bytes are the protocol's.
#
# Needs grpcio-tools (its protoc): pip install grpcio-tools
set -eu
here=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed 's/^package centrifugal\.centrifuge\.protocol;/package pubsocket.centrifuge;/' \
    "$here/client.proto" > "$tmp/pubsocket_centrifuge.proto"
"$PYTHON" -m grpc_tools.protoc -I"$tmp" --python_out="$here" --pyi_out="$here" \
    "$tmp/pubsocket_centrifuge.proto"
