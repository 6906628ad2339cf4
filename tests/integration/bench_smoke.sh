#!/usr/bin/env bash
# Runs `hopper bench smoke` against a real hopperd on a free port, so that the benchmark
# itself never rots. It asserts no speed, only that every workload ran and lost nothing.
# Usage: bench_smoke.sh HOPPERD HOPPER
. "$(dirname "$0")/lib.sh" "$@"
"$hopperd" --bind tcp://127.0.0.1:0 --data-dir "$dir/data" --log-level warn \
    >"$dir/out" 2>"$dir/err" &
broker_pid=$!
wait_for "$dir/out" "listening on" || true
endpoint=$(awk '/listening on/ {print $4}' "$dir/out")
[ -n "$endpoint" ] || { echo "hopperd did not start:"; cat "$dir/err"; exit 1; }
"$hopper" --broker "$endpoint" bench smoke --json >"$dir/result.json"
cat "$dir/result.json"
grep -q '"lost"' "$dir/result.json" || grep -q 'lost' "$dir/result.json"
# connections with several broadcast messages: each connection gets each exactly once.
"$hopper" --broker "$endpoint" bench connections --count 300 --messages 3 --json >"$dir/conns.json"
grep -q '"ok": true' "$dir/conns.json" || { cat "$dir/conns.json"; exit 1; }
# A count that cannot fit the open-file limit is refused, with the fix, before anything opens.
rc=0
(ulimit -n 128 && exec "$hopper" --broker "$endpoint" bench connections --count 1000) \
    >"$dir/fd.out" 2>"$dir/fd.err" || rc=$?
if [ "$rc" != 2 ] || ! grep -q "ulimit -Hn" "$dir/fd.err"; then
    echo "expected exit 2 and a message naming ulimit -Hn, got $rc:"
    cat "$dir/fd.err"
    exit 1
fi
kill "$broker_pid"
wait "$broker_pid"
broker_pid=
