#!/usr/bin/env bash
# Builds everything (installing missing packages) and starts hopperd on its embedded defaults:
# tcp://127.0.0.1:5680, data in ./var/hopper. Extra arguments go to hopperd.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset dev >/dev/null
cmake --build --preset dev -j "$(nproc)"
echo "hopper: built build/dev/bus/hopperd and build/dev/cli/hopper" >&2
exec build/dev/bus/hopperd "$@"
