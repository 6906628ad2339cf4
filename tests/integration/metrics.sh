#!/usr/bin/env bash
# hopperd --metrics: GET /metrics (scraped with curl) in the Prometheus text format, with the
# values `hopper list queues --json` and `hopper status --json` report; other paths are 404;
# label values are escaped; a name instead of an IP address is refused, 0.0.0.0 warned about.
# Usage: metrics.sh HOPPERD HOPPER
. "$(dirname "$0")/lib.sh" "$@"

# start NAME ARGS...: starts hopperd (output in $dir/NAME.out, .err); sets endpoint and url.
start() {
    local name=$1
    shift
    "$hopperd" --bind tcp://127.0.0.1:0 --data-dir "$dir/$name.data" "$@" \
        >"$dir/$name.out" 2>"$dir/$name.err" &
    broker_pid=$!
    wait_for "$dir/$name.out" "metrics on" || true
    endpoint=$(awk '/listening on/ {print $4}' "$dir/$name.out")
    url=$(awk '/metrics on/ {print $4}' "$dir/$name.out")
    [ -n "$url" ] || { cat "$dir/$name.err"; fail "hopperd $name did not start"; }
}
stop() {
    kill "$broker_pid"
    wait "$broker_pid"
    broker_pid=
}
cli() { "$hopper" --broker "$endpoint" "$@"; }

# metric NAME: the value of the sample whose name-and-labels is exactly NAME.
metric() {
    local v
    v=$(M="$1" awk '$1 == ENVIRON["M"] {print $2}' "$dir/scrape") # -v would unescape
    [ -n "$v" ] || fail "no sample $1 in the scrape"
    echo "$v"
}
# json FILE [QUEUE] KEY: a number from the pretty-printed JSON of status (or the item of list
# queues named QUEUE).
json() {
    local file=$1 queue= key
    if [ $# -eq 3 ]; then queue=$2; key=$3; else key=$2; fi
    Q="$queue" awk -v k="\"$key\":" 'BEGIN { q = ENVIRON["Q"] }
        q == "" && $1 == k { sub(/,$/, "", $2); print $2; exit }
        /^ *"name": / { n = substr($0, index($0, ":") + 3); sub(/",?$/, "", n); gsub(/\\"/, "\"", n); gsub(/\\\\/, "\\", n) }
        q != "" && n == q && $1 == k { sub(/,$/, "", $2); print $2; exit }' "$file"
}
same() { # LABEL METRIC_VALUE JSON_VALUE
    [ "$2" = "$3" ] || fail "$1: metrics say '$2', hopper says '$3'"
}

start main --metrics 127.0.0.1:0
case "$url" in http://127.0.0.1:*/metrics) ;; *) fail "metrics url $url" ;; esac

# Some state: a durable queue with persistent messages (so the store fsyncs), one taken and
# acked, one held unacked by nobody (get --no-ack), a queue whose name needs escaping, an
# unroutable publish.
weird='we"ird\q'
cli declare queue jobs --durable >/dev/null
cli declare queue "$weird" >/dev/null
seq 1 7 | cli publish "" jobs --lines --confirm --persistent
cli publish "" "$weird" one
cli publish "" "$weird" two
cli get jobs >/dev/null
cli get jobs --no-ack >/dev/null
cli publish amq.direct nowhere lost

curl -sS -D "$dir/headers" -o "$dir/scrape" "$url" || fail "curl $url"
cli list queues --json >"$dir/queues.json"
cli status --json >"$dir/status.json"

grep -qi '^content-type: text/plain; version=0.0.4' "$dir/headers" || fail "content type"
for family in queue_messages_ready queue_published_total exchange_published_total \
    connections uptime_seconds rss_bytes store_fsyncs_total store_last_fsync_seconds; do
    grep -q "^# HELP hopper_$family " "$dir/scrape" || fail "no HELP for hopper_$family"
    grep -q "^# TYPE hopper_$family " "$dir/scrape" || fail "no TYPE for hopper_$family"
done
grep -q '^# TYPE hopper_queue_published_total counter$' "$dir/scrape" || fail "counter type"
grep -q '^# TYPE hopper_queue_messages_ready gauge$' "$dir/scrape" || fail "gauge type"
for rate in publish deliver ack; do
    grep -q "^# TYPE hopper_queue_${rate}_rate gauge$" "$dir/scrape" || fail "no ${rate} rate"
    grep -Eq "^hopper_queue_${rate}_rate\{queue=\"jobs\"\} [0-9]+\.[0-9]{3}$" "$dir/scrape" ||
        fail "no ${rate} rate for jobs"
done

for q in jobs "$weird"; do
    label=$(printf '%s' "$q" | sed 's/\\/\\\\/g; s/"/\\"/g')
    for key in messages_ready messages_unacked messages_delayed bytes_ready consumers; do
        same "$q $key" "$(metric "hopper_queue_$key{queue=\"$label\"}")" \
            "$(json "$dir/queues.json" "$q" "$key")"
    done
    for key in published delivered acked dead_lettered dropped expired rejected_publishes; do
        same "$q $key" "$(metric "hopper_queue_${key}_total{queue=\"$label\"}")" \
            "$(json "$dir/queues.json" "$q" "$key")"
    done
done
same "jobs ready" "$(metric 'hopper_queue_messages_ready{queue="jobs"}')" 5
same "jobs delivered" "$(metric 'hopper_queue_delivered_total{queue="jobs"}')" 2
same "weird ready" "$(metric 'hopper_queue_messages_ready{queue="we\"ird\\q"}')" 2

for key in queues exchanges messages_ready messages_unacked messages_delayed; do
    same "status $key" "$(metric "hopper_$key")" "$(json "$dir/status.json" "$key")"
done
for key in published delivered acked unroutable returned confirmed rejected_publishes \
    dead_lettered dropped expired revoked accept_failed; do
    same "status $key" "$(metric "hopper_${key}_total")" "$(json "$dir/status.json" "$key")"
done
same "status fsyncs" "$(metric hopper_store_fsyncs_total)" "$(json "$dir/status.json" fsyncs)"
[ "$(metric hopper_store_fsyncs_total)" -gt 0 ] || fail "no fsync counted"
same "status disk" "$(metric hopper_store_disk_bytes)" "$(json "$dir/status.json" disk_bytes)"
same "status fd_limit" "$(metric hopper_fd_limit)" "$(json "$dir/status.json" fd_limit)"
max_us=$(json "$dir/status.json" max_fsync_us)
same "max fsync" "$(metric hopper_store_max_fsync_seconds)" \
    "$(printf '%d.%06d' $((max_us / 1000000)) $((max_us % 1000000)))"
same "unroutable amq.direct" "$(metric 'hopper_exchange_unroutable_total{exchange="amq.direct"}')" 1
same "published default" "$(metric 'hopper_exchange_published_total{exchange=""}')" 9
[ "$(metric hopper_rss_bytes)" -gt 0 ] || fail "rss"
metric hopper_connections >/dev/null

# Only GET /metrics.
code=$(curl -s -o /dev/null -w '%{http_code}' "${url%/metrics}/")
[ "$code" = 404 ] || fail "GET / gave $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d x "$url")
[ "$code" = 405 ] || fail "POST gave $code"
# Scrapes keep working alongside the protocol (the reactor serves both).
for _ in 1 2 3; do
    curl -sS -o /dev/null "$url" || fail "scrape again"
    cli status >/dev/null
done
stop

# Addresses: names are refused at start (exit 2); 0.0.0.0 is served with a warning.
rc=0
"$hopperd" --data-dir "$dir/x" --metrics example.com:15680 2>"$dir/bad.err" || rc=$?
[ "$rc" = 2 ] || fail "--metrics example.com exit $rc"
grep -q "no name lookups" "$dir/bad.err" || fail "$(cat "$dir/bad.err")"
start open --metrics 0.0.0.0:0 --log-level warn
grep -q "non-loopback" "$dir/open.err" || fail "no warning for 0.0.0.0: $(cat "$dir/open.err")"
port=${url##*:}
port=${port%/metrics}
curl -sS -o /dev/null "http://127.0.0.1:$port/metrics" || fail "scrape 0.0.0.0"
stop
echo "metrics: ok"
