#!/usr/bin/env bash
# Builds and runs the whole test suite twice: a normal build and an ASan+UBSan build.
# Usage: scripts/test.sh [dev|asan]...   (default: dev asan)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
presets=("$@")
[ ${#presets[@]} -eq 0 ] && presets=(dev asan)
jobs=$(nproc)
for p in "${presets[@]}"; do
    echo "=== $p: configure and build ===" >&2
    cmake --preset "$p" >/dev/null
    cmake --build --preset "$p" -j "$jobs"
    if command -v clang-format >/dev/null && [ "$p" = dev ]; then
        echo "=== clang-format check ===" >&2
        git ls-files '*.c' '*.h' | xargs -r clang-format --dry-run --Werror
    fi
    echo "=== $p: tests ===" >&2
    ctest --preset "$p" -j "$jobs" --timeout 300
done
echo "=== all tests passed (${presets[*]}) ===" >&2
