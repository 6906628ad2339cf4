#!/usr/bin/env bash
# hopperd --config FILE: settings from the file (metrics included), flags overriding them, and
# a bad line refused at start with the file, line number and reason (exit 2).
# Usage: metrics_config.sh HOPPERD HOPPER
. "$(dirname "$0")/lib.sh" "$@"
cat >"$dir/hopperd.conf" <<CONF
# hopperd settings
bind = tcp://127.0.0.1:0
data-dir = $dir/data   # the store
metrics = 127.0.0.1:0
flow-messages = 7
ack-timeout = 45000
fsync = every 50
log-level = warn
CONF

"$hopperd" --config "$dir/hopperd.conf" --ack-timeout 46000 >"$dir/out" 2>"$dir/err" &
broker_pid=$!
wait_for "$dir/out" "metrics on" || true
endpoint=$(awk '/listening on/ {print $4}' "$dir/out")
url=$(awk '/metrics on/ {print $4}' "$dir/out")
[ -n "$url" ] || { cat "$dir/err"; fail "hopperd did not start with the config"; }
"$hopper" --broker "$endpoint" status --json >"$dir/status.json"
grep -q '"flow_messages": 7,' "$dir/status.json" || fail "flow-messages from the file"
grep -q '"ack_timeout": 46000,' "$dir/status.json" || fail "the flag did not override the file"
grep -q '"fsync": "every",' "$dir/status.json" || fail "fsync from the file"
grep -q "\"data_dir\": \"$dir/data\"," "$dir/status.json" || fail "data-dir from the file"
curl -sS -o "$dir/scrape" "$url" || fail "curl $url"
grep -q '^hopper_queues 0$' "$dir/scrape" || fail "no metrics from the file's address"
grep -q ' info ' "$dir/err" && fail "log-level warn from the file was not applied"
kill "$broker_pid"
wait "$broker_pid"
broker_pid=

# A bad line: refused before anything starts, naming the file and the line.
printf 'bind = tcp://127.0.0.1:0\n\nheartbeat = soon\n' >"$dir/bad.conf"
rc=0
"$hopperd" --config "$dir/bad.conf" --data-dir "$dir/data2" >/dev/null 2>"$dir/bad.err" || rc=$?
[ "$rc" = 2 ] || fail "bad config exit $rc"
grep -q "$dir/bad.conf:3: heartbeat needs a number from 100 to 60000, got 'soon'" \
    "$dir/bad.err" || fail "bad config message: $(cat "$dir/bad.err")"
[ ! -e "$dir/data2" ] || fail "the broker started anyway"
printf 'metrics = 10.0.0.1\nwhatever = 1\n' >"$dir/bad2.conf"
rc=0
"$hopperd" --config "$dir/bad2.conf" 2>"$dir/bad2.err" || rc=$?
[ "$rc" = 2 ] || fail "unknown key exit $rc"
grep -q "bad2.conf:1: metrics address '10.0.0.1'" "$dir/bad2.err" ||
    fail "metrics address message: $(cat "$dir/bad2.err")"
rc=0
"$hopperd" --config "$dir/missing.conf" 2>"$dir/missing.err" || rc=$?
[ "$rc" = 2 ] || fail "missing config exit $rc"
grep -q "missing.conf: No such file" "$dir/missing.err" || fail "$(cat "$dir/missing.err")"
echo "config: ok"
