#!/usr/bin/env bash
# Regenerate sparkplug_b_pb2.py from sparkplug_b.proto.
#
# Needs grpcio-tools (bundles protoc and the well-known protos). Uses $PYTHON if set,
# else the repository's .venv, else `python3`. The generated module's gencode version
# must not be newer than the installed protobuf runtime; regenerate after upgrading
# grpcio-tools and check that `python -c "import mfg_assets.uns.sparkplug_b_pb2"` works.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"

if [[ -n "${PYTHON:-}" ]]; then
    py="$PYTHON"
elif [[ -x "$repo_root/.venv/bin/python" ]]; then
    py="$repo_root/.venv/bin/python"
else
    py="python3"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --proto_path is this folder so the descriptor is registered as "sparkplug_b.proto".
"$py" -m grpc_tools.protoc --proto_path="$here" --python_out="$tmp" "$here/sparkplug_b.proto"

protoc_version="$("$py" -m grpc_tools.protoc --version)"
{
    echo "# Generated from sparkplug_b.proto by mfg_assets/uns/gen_proto.sh"
    echo "# (python -m grpc_tools.protoc --python_out, ${protoc_version}). Do not edit by hand."
    echo "# ruff: noqa"
    cat "$tmp/sparkplug_b_pb2.py"
} > "$here/sparkplug_b_pb2.py"

"$py" -c "import importlib.util, sys; \
spec = importlib.util.spec_from_file_location('sparkplug_b_pb2', sys.argv[1]); \
spec.loader.exec_module(importlib.util.module_from_spec(spec))" "$here/sparkplug_b_pb2.py"
echo "wrote $here/sparkplug_b_pb2.py"
