#!/usr/bin/env bash
# A hopperd whose open-file limit is too low says so: a warning at start naming the limit and
# the fix, an error in its log when accepts fail, and accept_failed / fd_limit in status.
# Usage: fd_limit.sh HOPPERD HOPPER
. "$(dirname "$0")/lib.sh" "$@"
(ulimit -n 64 && exec "$hopperd" --bind tcp://127.0.0.1:0 --data-dir "$dir/data" \
    --log-level warn) >"$dir/out" 2>"$dir/err" &
broker_pid=$!
wait_for "$dir/out" "listening on" || true
endpoint=$(awk '/listening on/ {print $4}' "$dir/out")
[ -n "$endpoint" ] || { echo "hopperd did not start:"; cat "$dir/err"; exit 1; }
grep -q "open-file limit is 64" "$dir/err" || { echo "no start-up warning:"; cat "$dir/err"; exit 1; }
# More connections than descriptors: the bench gives up on the ones never answered.
"$hopper" --broker "$endpoint" bench connections --count 100 >"$dir/bench.out" 2>&1 || true
"$hopper" --broker "$endpoint" status --json >"$dir/status.json"
grep -q '"fd_limit": 64' "$dir/status.json" || { cat "$dir/status.json"; exit 1; }
if grep -q '"accept_failed": 0' "$dir/status.json"; then
    echo "accept_failed stayed 0:"
    cat "$dir/status.json" "$dir/bench.out"
    exit 1
fi
grep -q "cannot accept connections" "$dir/err" || { echo "no error logged:"; cat "$dir/err"; exit 1; }
kill "$broker_pid"
wait "$broker_pid"
broker_pid=
echo "fd limit reported: ok"
