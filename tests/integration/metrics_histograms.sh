#!/usr/bin/env bash
# hopperd --metrics: the latency histograms. hopper_publish_to_deliver_seconds counts first
# deliveries only (consume and get; not a redelivery), hopper_fsync_duration_seconds the store
# writer's fsyncs; both have cumulative _bucket{le} lines ending in +Inf == _count.
# Usage: metrics_histograms.sh HOPPERD HOPPER
. "$(dirname "$0")/lib.sh" "$@"

"$hopperd" --bind tcp://127.0.0.1:0 --data-dir "$dir/data" --metrics 127.0.0.1:0 \
    >"$dir/out" 2>"$dir/err" &
broker_pid=$!
wait_for "$dir/out" "metrics on" || true
endpoint=$(awk '/listening on/ {print $4}' "$dir/out")
url=$(awk '/metrics on/ {print $4}' "$dir/out")
[ -n "$url" ] || { cat "$dir/err"; fail "hopperd did not start"; }
cli() { "$hopper" --broker "$endpoint" "$@"; }
scrape() { curl -sS -o "$dir/scrape" "$url" || fail "curl $url"; }
metric() {
    local v
    v=$(M="$1" awk '$1 == ENVIRON["M"] {print $2}' "$dir/scrape")
    [ -n "$v" ] || fail "no sample $1 in the scrape"
    echo "$v"
}
# histogram NAME: checks the family's shape; prints its _count.
histogram() {
    local name=hopper_$1
    grep -q "^# HELP $name " "$dir/scrape" || fail "no HELP for $name"
    grep -q "^# TYPE $name histogram$" "$dir/scrape" || fail "no histogram TYPE for $name"
    metric "${name}_sum" >/dev/null
    N="$name" awk '
        index($1, ENVIRON["N"] "_bucket{le=\"") == 1 {
            le = $1; sub(/^[^"]*"/, "", le); sub(/"}$/, "", le)
            if (inf) { print "bucket after +Inf: " le; bad = 1 }
            if (le == "+Inf") inf = 1
            else if (n && le + 0 <= last_le + 0) { print "le not increasing: " le; bad = 1 }
            if (n && $2 + 0 < last) { print "not cumulative at le=" le; bad = 1 }
            last_le = le; last = $2; n++
        }
        END { if (!inf) { print "no +Inf bucket"; bad = 1 } else print "inf " last; exit bad }' \
        "$dir/scrape" >"$dir/shape" || fail "$name: $(cat "$dir/shape")"
    local inf count
    inf=$(awk '{print $2}' "$dir/shape")
    count=$(metric "${name}_count")
    [ "$inf" = "$count" ] || fail "$name: +Inf bucket $inf, _count $count"
    echo "$count"
}

scrape
[ "$(histogram publish_to_deliver_seconds)" = 0 ] || fail "deliveries counted before any"
metric 'hopper_publish_to_deliver_seconds_bucket{le="0.001"}' >/dev/null
metric 'hopper_publish_to_deliver_seconds_bucket{le="60"}' >/dev/null
metric 'hopper_fsync_duration_seconds_bucket{le="0.0001"}' >/dev/null
metric 'hopper_fsync_duration_seconds_bucket{le="0.00025"}' >/dev/null
metric 'hopper_fsync_duration_seconds_bucket{le="1"}' >/dev/null

# Persistent messages, confirmed (so fsynced): 6 consumed (as many as the queue holds, so the
# consumer takes no extra one to hand back), 2 got, and 1 rejected back to the queue (its
# first delivery) and then got (a redelivery: not counted). 9 first deliveries in all.
cli declare queue jobs --durable >/dev/null
seq 1 6 | cli publish "" jobs --lines --confirm --persistent
cli consume jobs --count 6 >/dev/null
scrape
count=$(histogram publish_to_deliver_seconds)
[ "$count" = 6 ] || fail "publish_to_deliver _count $count after consuming 6"
seq 1 2 | cli publish "" jobs --lines --confirm --persistent
cli get jobs >/dev/null
cli get jobs >/dev/null
cli publish "" jobs again --confirm --persistent
cli consume jobs --count 1 --reject --requeue >/dev/null
cli get jobs >/dev/null
scrape
delivered=$(metric hopper_delivered_total)
[ "$delivered" -ge 10 ] || fail "delivered_total $delivered: the redelivery did not happen"
count=$(histogram publish_to_deliver_seconds)
[ "$count" = 9 ] || fail "publish_to_deliver _count $count, 9 first deliveries made"
fsyncs=$(histogram fsync_duration_seconds)
[ "$fsyncs" -ge 1 ] || fail "no fsync in the histogram after a confirmed persistent publish"
[ "$fsyncs" -le "$(metric hopper_store_fsyncs_total)" ] || fail "more fsyncs timed than done"
echo "ok: publish_to_deliver_count=$count fsync_count=$fsyncs"
