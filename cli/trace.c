// cli/trace.c - `hopper trace on [--exchange X]`, `hopper trace off` and `hopper trace show`:
// turn the broker's route events on or off (hop_client_trace), and print them as they come by
// subscribing to the trace exchange amq.hopper.trace (PROTOCOL.md 4.9).
//
// An event prints as one line:
//   human:  TIME EVENT exchange=X key=K queues=Q1,Q2 [refused=...] [dropped=R] [reason=R]
//           [queue=Q]
//   --json: the event as one JSON object per line (JSON Lines).
#include "cli.h"
#include "json.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define S_TRACE_EXCHANGE "amq.hopper.trace"
#define S_POLL_MS        200 // how often show looks at Ctrl-C while waiting

enum { S_OPT_EXCHANGE = 1, S_OPT_COUNT };

static volatile sig_atomic_t s_stop;

static void
s_on_signal(int signum)
{
    (void)signum;
    s_stop = 1;
}

// Prints a string field as key=value (quoted when empty or when it holds a space).
static void
s_print_str(json_t *event, const char *key)
{
    const char *v = json_string_value(json_object_get(event, key));
    if (!v)
        return;
    if (*v && !strchr(v, ' '))
        printf(" %s=%s", key, v);
    else
        printf(" %s=\"%s\"", key, v);
}

static void
s_print_list(json_t *event, const char *key, bool always)
{
    json_t *list = json_object_get(event, key);
    if (!json_is_array(list) || (!always && json_array_size(list) == 0))
        return;
    printf(" %s=", key);
    if (json_array_size(list) == 0)
        fputs("-", stdout);
    size_t i;
    json_t *q;
    json_array_foreach(list, i, q) printf("%s%s", i ? "," : "", json_string_value(q));
}

static void
s_print_event(const hop_cli_t *cli, json_t *event)
{
    if (cli->json) {
        char *text = json_dumps(event, JSON_COMPACT);
        if (text)
            puts(text);
        free(text);
        return;
    }
    json_int_t ms = json_integer_value(json_object_get(event, "time"));
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&secs, &tm);
    printf("%02d:%02d:%02d.%03d %s", tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000),
           json_string_value(json_object_get(event, "event")));
    s_print_str(event, "exchange");
    s_print_str(event, "key");
    s_print_list(event, "queues", true);
    s_print_list(event, "refused", false);
    s_print_str(event, "dropped");
    s_print_str(event, "reason");
    s_print_str(event, "queue");
    putchar('\n');
}

// `hopper trace show`: prints events until count (0: no limit) or Ctrl-C.
static int
s_show(hop_cli_t *cli, long count)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);

    hop_client_t *client;
    int exit_code = hop_cli_connect(cli, &client);
    if (exit_code != HOP_EXIT_OK)
        return exit_code;
    int rc = hop_client_subscribe(client, S_TRACE_EXCHANGE, "#", NULL, 0);
    if (rc != HOP_OK) {
        exit_code = hop_cli_fail(cli, client, rc, "Is the broker older than tracing?",
                                 "subscribe to %s", S_TRACE_EXCHANGE);
        hop_client_destroy(&client);
        return exit_code;
    }
    fprintf(stderr,
            "hopper: showing route events from %s (Ctrl-C to stop; start them with: hopper "
            "trace on)\n",
            S_TRACE_EXCHANGE);
    long shown = 0;
    while (!s_stop && (count == 0 || shown < count)) {
        hop_delivery_t *d = NULL;
        rc = hop_client_receive(client, &d, S_POLL_MS);
        if (rc == HOP_ETIMEOUT)
            continue;
        if (rc != HOP_OK) {
            if (!s_stop)
                exit_code = hop_cli_fail(cli, client, rc, NULL, "receive route events");
            break;
        }
        json_t *event = hop_json_from_msgpack(d->body, d->body_size);
        hop_delivery_destroy(&d);
        if (!event)
            continue; // not an event: someone else published to the trace exchange
        s_print_event(cli, event);
        json_decref(event);
        shown++;
        if (fflush(stdout) != 0)
            break;
    }
    hop_client_destroy(&client);
    return exit_code;
}

int
hop_cli_trace(hop_cli_t *cli, int argc, char **argv)
{
    static const hop_cli_opt_t opts[] = {
        {"--exchange", true, S_OPT_EXCHANGE},
        {"--count", true, S_OPT_COUNT},
        {NULL, false, 0},
    };
    hop_cli_parsed_t parsed;
    if (hop_cli_parse(cli, argc, argv, opts, 1, 1, "on, off or show", &parsed) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    const char *what = parsed.positional[0];
    bool on = strcmp(what, "on") == 0, off = strcmp(what, "off") == 0;
    if (strcmp(what, "show") == 0) {
        if (parsed.set[S_OPT_EXCHANGE])
            return hop_cli_usage(cli, "--exchange goes with 'trace on' (what the broker traces), "
                                      "not with 'trace show'");
        long count = 0;
        if (parsed.set[S_OPT_COUNT] && hop_cli_number(cli, "--count", parsed.value[S_OPT_COUNT], 1,
                                                      2147483647L, &count) != HOP_EXIT_OK)
            return HOP_EXIT_USAGE;
        return s_show(cli, count);
    }
    if (!on && !off)
        return hop_cli_usage(cli, "trace takes on, off or show, not '%s'", what);
    if (parsed.set[S_OPT_COUNT])
        return hop_cli_usage(cli, "--count goes with 'trace show'");
    if (off && parsed.set[S_OPT_EXCHANGE])
        return hop_cli_usage(cli, "'trace off' takes no --exchange: it stops all tracing");
    const char *exchange = parsed.set[S_OPT_EXCHANGE] ? parsed.value[S_OPT_EXCHANGE] : NULL;

    hop_client_t *client;
    int exit_code = hop_cli_connect(cli, &client);
    if (exit_code != HOP_EXIT_OK)
        return exit_code;
    int rc = hop_client_trace(client, on, exchange);
    if (rc != HOP_OK) {
        const char *h = hop_client_error_code(client) == HOP_CODE_NOT_FOUND
                            ? "See the exchanges with: hopper list exchanges"
                            : NULL;
        exit_code = hop_cli_fail(cli, client, rc, h, "turn tracing %s", on ? "on" : "off");
    } else if (cli->json) {
        printf("{\"tracing\":%s}\n", on ? "true" : "false");
    } else if (on) {
        printf("tracing on%s%s%s: read the events with: hopper trace show\n",
               exchange ? " for exchange '" : "", exchange ? exchange : "", exchange ? "'" : "");
    } else {
        printf("tracing off\n");
    }
    hop_client_destroy(&client);
    return exit_code;
}
