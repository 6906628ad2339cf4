#!/usr/bin/env bash
# examples/demo.sh NAME - runs one example end to end in this terminal: coffee, pipeline, chat,
# tasks or events. It needs a running broker: scripts/run.sh in another terminal (or set
# $HOPPER_BROKER), and the examples built (scripts/run.sh builds them into build/dev; set
# $HOPPER_BUILD to use another build directory).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${HOPPER_BUILD:-build/dev}
ex=$build/examples

usage() {
    echo "usage: examples/demo.sh coffee|pipeline|chat|tasks|events" >&2
    exit 2
}
[ $# -eq 1 ] || usage
if [ ! -x "$ex/coffee/barista" ]; then
    echo "demo: no examples in $ex: build them first (scripts/run.sh)" >&2
    exit 1
fi
if ! "$build/cli/hopper" status >/dev/null 2>&1; then
    echo "demo: no broker at ${HOPPER_BROKER:-tcp://127.0.0.1:5680}: start one with scripts/run.sh" >&2
    exit 1
fi

# Background programs, stopped (SIGTERM: they leave cleanly) when the demo ends.
pids=()
start() {
    "$@" &
    pids+=($!)
}
stop_all() {
    [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
    wait
}
trap stop_all EXIT

case "$1" in
coffee)
    # Three baristas share the orders queue; six customers order at once.
    for name in anna ben cleo; do start "$ex/coffee/barista" --name "$name" --brew-ms 500; done
    sleep 0.5
    customers=()
    for order in "ada 1 2" "bob 3" "cy 2 9" "dee 1" "eve 3 1" "fox 2"; do
        "$ex/coffee/customer" $order &
        customers+=($!)
    done
    wait "${customers[@]}"
    ;;
pipeline)
    "$ex/pipeline/pipeline"
    ;;
chat)
    # Alice and bob in room "lobby", carol in room "attic": lines only reach their own room.
    # (Interactively: examples/chat/chat lobby YOURNAME, in two terminals.)
    say() { # say "DELAY LINE"...: each line after its delay (seconds), then a pause, then EOF
        for item in "$@"; do
            sleep "${item%% *}"
            echo "${item#* }"
        done
        sleep 1
    }
    say "1 hi, anyone here?" "1 how are you?" | "$ex/chat/chat" lobby alice |
        sed -u 's/^/[alice sees] /' &
    sleep 0.3
    say "1.2 hello alice" "1 fine, bye" | "$ex/chat/chat" lobby bob | sed -u 's/^/[bob sees]   /' &
    say "1 is this the lobby?" | "$ex/chat/chat" attic carol | sed -u 's/^/[carol sees] /' &
    wait
    ;;
tasks)
    # The HTTP front and two workers; three jobs, one of which always fails.
    port=${PORT:-8080}
    start "$ex/tasks/tasks-api" --port "$port"
    start "$ex/tasks/tasks-worker" --name w1 --job-ms 2000
    start "$ex/tasks/tasks-worker" --name w2 --job-ms 2000
    sleep 0.5
    ids=()
    for input in "hello world" "make me loud" "fail: nothing can save this job"; do
        echo "\$ curl -s -d '$input' localhost:$port/jobs"
        answer=$(curl -s -d "$input" "localhost:$port/jobs")
        echo "$answer"
        ids+=("$(echo "$answer" | sed 's/.*"id":"\([^"]*\)".*/\1/')")
    done
    for id in "${ids[@]}"; do
        echo "\$ curl -s 'localhost:$port/jobs/$id?wait=30'"
        curl -s "localhost:$port/jobs/$id?wait=30"
    done
    ;;
events)
    # Three services bind their patterns; then the orders service publishes 3 orders.
    start "$ex/events/billing"
    start "$ex/events/shipping"
    start "$ex/events/audit"
    sleep 0.5
    "$ex/events/orders" --count 3 --interval-ms 300
    sleep 0.5
    ;;
*)
    usage
    ;;
esac
