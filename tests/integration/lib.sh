# tests/integration/lib.sh - what the shell integration tests share. Source it with the test's
# arguments: `. "$(dirname "$0")/lib.sh" "$@"` (HOPPERD HOPPER). It sets hopperd, hopper, a temp
# dir removed at exit, broker_pid (the broker a test starts, stopped at exit), fail and
# wait_for.
set -euo pipefail
hopperd=$1
hopper=$2
dir=$(mktemp -d)
broker_pid=
cleanup() {
    [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*"
    exit 1
}
# wait_for FILE PATTERN: waits up to 10 s for PATTERN in FILE, or for the broker to exit.
wait_for() {
    for _ in $(seq 1 200); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        [ -n "$broker_pid" ] && ! kill -0 "$broker_pid" 2>/dev/null && return 1
        sleep 0.05
    done
    return 1
}
