#!/usr/bin/env bash
# Runs `hopper bench` on the peers' workloads (../shared/peers) against a fresh hopperd,
# RUNS times each (default 3), and prints the RESULT lines and their medians.
# Usage: scripts/bench.sh [preset]   (default: release; needs the preset built)
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-release}
runs=${RUNS:-3}
bin=build/$preset
[ -x "$bin/bus/hopperd" ] || { echo "build first: cmake --preset $preset && cmake --build --preset $preset" >&2; exit 2; }
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
"$bin/bus/hopperd" --bind tcp://127.0.0.1:0 --data-dir "$dir/data" --log-level warn >"$dir/out" 2>"$dir/err" &
pid=$!
for _ in $(seq 1 100); do grep -q listening "$dir/out" && break; sleep 0.05; done
ep=$(awk '/listening/ {print $4}' "$dir/out")
h() { "$bin/cli/hopper" --broker "$ep" bench "$@" --result-lines 2>/dev/null | grep '^RESULT' || true; }
h pubsub --count 200000 >/dev/null # warm-up
rss() { "$bin/cli/hopper" --broker "$ep" status --json | sed -n 's/.*"rss_bytes": *\([0-9]*\).*/\1/p'; }
{
    for _ in $(seq 1 "$runs"); do h pubsub --count 5000000; done
    echo "RESULT hopper after-W1 rss_kib $(( $(rss) / 1024 ))"
    for _ in $(seq 1 "$runs"); do h pubsub --subscribers 4 --count 2000000; done
    for _ in $(seq 1 "$runs"); do h queue --count 1000000 --prefetch 1000; done
    for _ in $(seq 1 "$runs"); do h queue --count 1000000 --prefetch 1000 --ack-every 100; done
    echo "RESULT hopper after-W3 rss_kib $(( $(rss) / 1024 ))"
    for _ in $(seq 1 "$runs"); do h latency --rate 5000 --duration 10; done
    h connections --count 1000
} | tee "$dir/results"
echo "# medians"
# Sorted by workload, metric, then value: the median is the middle line of each group.
awk '$1=="RESULT" {print $3, $4, $5}' "$dir/results" | sort -k1,1 -k2,2 -k3,3g |
    awk '{k=$1" "$2; n[k]++; v[k, n[k]]=$3; if (!(k in seen)) {seen[k]=1; order[++m]=k}}
         END {for (i=1; i<=m; i++) {k=order[i]; printf "%-36s %s\n", k, v[k, int((n[k]+1)/2)]}}'
