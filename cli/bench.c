// cli/bench.c - `hopper bench`: load generator and benchmark, built on the SDK.
//
// The workloads reproduce shared/peers (bench_rabbit.c, bench_nats.c) so that figures compare:
// clients are threads of this process, each with its own hop_client_t (except the thousands
// of connections of `connections`, which bench_fleet.c holds); rates are taken with
// CLOCK_MONOTONIC from the first publish to the last delivery; latency pacing uses
// absolute-deadline clock_nanosleep. Every payload carries a sequence number, so every run
// also checks that no message was lost or delivered twice.
//
// This file parses the command line and runs the workloads: bench_flow.c holds pubsub, queue
// and latency, bench_connections.c holds connections, bench_persistent.c holds persistent;
// bench_common.h is what they share.
#include "bench.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bench_common.h"

// Where an option applies.
#define S_RUNS                                                                                     \
    (HOP_BENCH_PUBSUB | HOP_BENCH_QUEUE | HOP_BENCH_LATENCY | HOP_BENCH_CONNECTIONS |              \
     HOP_BENCH_PERSISTENT)
#define S_COUNTED                                                                                  \
    (HOP_BENCH_PUBSUB | HOP_BENCH_QUEUE | HOP_BENCH_CONNECTIONS | HOP_BENCH_PERSISTENT)
#define S_ALL (S_RUNS | HOP_BENCH_SMOKE)

// ---------------------------------------------------------------------------------------
// Options

typedef struct {
    const char *name; // without the leading "--"
    char type;        // 'l' long, 'd' double, 's' string, 'b' flag
    size_t offset;    // of the field in hop_bench_opts_t
    int workloads;    // where it is accepted
    double min, max;  // numbers: accepted range
} s_optdef_t;

#define S_OPT(name, type, field, where, min, max)                                                  \
    {                                                                                              \
        name, type, offsetof(hop_bench_opts_t, field), where, min, max                             \
    }
static const s_optdef_t s_optdefs[] = {
    S_OPT("count", 'l', count, S_COUNTED, 1, 1e9),
    S_OPT("n", 'l', count, S_COUNTED, 1, 1e9), // as in shared/peers
    S_OPT("size", 'l', size,
          HOP_BENCH_PUBSUB | HOP_BENCH_QUEUE | HOP_BENCH_LATENCY | HOP_BENCH_PERSISTENT |
              HOP_BENCH_SMOKE,
          HOP_BENCH_HEAD, 8 << 20),
    S_OPT("subscribers", 'l', subscribers, HOP_BENCH_PUBSUB, 1, 1024),
    S_OPT("subs", 'l', subscribers, HOP_BENCH_PUBSUB, 1, 1024),
    S_OPT("producers", 'l', producers, HOP_BENCH_QUEUE, 1, 1024),
    S_OPT("consumers", 'l', consumers, HOP_BENCH_QUEUE, 1, 1024),
    S_OPT("prefetch", 'l', prefetch, HOP_BENCH_QUEUE | HOP_BENCH_PERSISTENT, 0, 1e7),
    S_OPT("window", 'l', window, HOP_BENCH_PERSISTENT, 1, 1e6),
    S_OPT("ack-every", 'l', ack_every, HOP_BENCH_QUEUE, 1, 1e7),
    S_OPT("workers", 'l', workers, HOP_BENCH_CONNECTIONS, 1, 256),
    S_OPT("messages", 'l', messages, HOP_BENCH_CONNECTIONS, 1, 10000),
    S_OPT("rate", 'd', rate, HOP_BENCH_LATENCY, 1, 1e7),
    S_OPT("duration", 'd', duration, HOP_BENCH_LATENCY, 0.2, 86400),
    S_OPT("secs", 'd', duration, HOP_BENCH_LATENCY, 0.2, 86400),
    S_OPT("curve", 'b', curve, HOP_BENCH_LATENCY, 0, 0),
    S_OPT("max-rate", 'd', max_rate, HOP_BENCH_LATENCY, 10, 1e8),
    S_OPT("name", 's', name, S_RUNS, 0, 0),
    S_OPT("json", 'b', json, S_ALL, 0, 0),
    S_OPT("result-lines", 'b', result_lines, S_ALL, 0, 0),
    S_OPT("help", 'b', help, S_ALL, 0, 0),
};

static const char *s_help_top =
    "usage: hopper [--broker E] [--timeout MS] bench WORKLOAD [options]\n"
    "\n"
    "Load generator and benchmark. Every client is its own connection used by its own\n"
    "thread (connections: many per thread); every message carries a sequence number and\n"
    "every run checks that none was lost or duplicated. The workloads match shared/peers\n"
    "(RabbitMQ, NATS) so figures compare.\n"
    "\n"
    "workloads:\n"
    "  pubsub        fanout exchange, 1 publisher -> N subscribers (W1: N=1, W2: N=4)\n"
    "  queue         work queue with manual acks, P producers -> C consumers (W3)\n"
    "  persistent    durable queue: confirmed persistent publishing, then a drain with acks (W4)\n"
    "  latency       fixed-rate publishing, receive - send percentiles (W5)\n"
    "  connections   N subscribed connections: time for a broadcast to reach all, broker RSS\n"
    "  smoke         a few seconds of every workload with small counts (for CI)\n"
    "\n"
    "options of every workload:\n"
    "  --json            one JSON object with the figures on stdout instead of the table\n"
    "  --result-lines    also print `RESULT hopper <label> <metric> <value>` lines\n"
    "  --name LABEL      label of the RESULT lines and the JSON (default W1, W2, W3-ack1, ...)\n"
    "\n"
    "Progress goes to stderr. Exit status: 0 ok, 1 messages lost or duplicated (or the broker\n"
    "refused a request), 2 usage error, 3 broker unreachable, 130 interrupted.\n"
    "`hopper bench WORKLOAD --help` shows the options of one workload; docs/BENCH.md has more.\n";

static const char *s_help_pubsub =
    "usage: hopper bench pubsub [--subscribers N] [--count M] [--size B]\n"
    "\n"
    "W1 (N=1) / W2 (N=4): declares the fanout exchange bench.fanout.<pid>.<n>; N subscribers\n"
    "(hop_client_subscribe: exclusive server-named queue, no-ack) bind to it, then one\n"
    "publisher sends M messages without confirms. Figure: deliveries / (last delivery -\n"
    "first publish).\n"
    "\n"
    "  --subscribers N   subscribers, each its own connection (default 1)\n"
    "  --count M         messages published (default 1000000)\n"
    "  --size B          payload bytes, at least 16 (default 100)\n";

static const char *s_help_queue =
    "usage: hopper bench queue [--producers P] [--consumers C] [--prefetch N] [--ack-every K]\n"
    "                          [--count M] [--size B]\n"
    "\n"
    "W3: declares the queue bench.queue.<pid>.<n>; C consumers with prefetch N and manual\n"
    "acks, P producers publishing M messages in all through the default exchange, all\n"
    "concurrently. The queue is deleted afterwards. Figure: consumed / (last consumed -\n"
    "first publish).\n"
    "\n"
    "  --producers P     publishing connections (default 1)\n"
    "  --consumers C     consuming connections (default 1)\n"
    "  --prefetch N      unacked deliveries per consumer, 0 = unlimited (default 1000)\n"
    "  --ack-every K     1 = ack each message; K > 1 = ack(multiple) every K (default 1)\n"
    "  --count M         messages published in all (default 500000)\n"
    "  --size B          payload bytes, at least 16 (default 100)\n";

static const char *s_help_latency =
    "usage: hopper bench latency [--rate R] [--duration S] [--size B] [--curve [--max-rate M]]\n"
    "\n"
    "W5: a publisher sends R messages/s for S seconds to amq.direct, paced by absolute\n"
    "deadlines; a consumer (its own connection, exclusive auto-delete queue, no-ack) records\n"
    "receive - send, both CLOCK_MONOTONIC. The first 0.1 s is dropped as warm-up.\n"
    "Reports p50/p90/p99/p99.9/max in microseconds.\n"
    "\n"
    "  --rate R          messages per second (default 5000)\n"
    "  --duration S      seconds (default 10)\n"
    "  --size B          payload bytes, at least 16 (default 100)\n"
    "  --curve           the latency curve instead: first the maximum throughput (a W1 pubsub\n"
    "                    run of 2,000,000 messages), then a latency run of S seconds at 10 %,\n"
    "                    50 % and 90 % of it; a table of the three (RESULT labels W5-10pct...)\n"
    "  --max-rate M      with --curve: take M msgs/s as the maximum instead of measuring it\n";

static const char *s_help_persistent =
    "usage: hopper bench persistent [--count N] [--size B] [--window W] [--prefetch P]\n"
    "\n"
    "W4: declares the durable queue bench.durable.<pid>.<n>. Produce phase: one connection in\n"
    "confirm mode publishes N persistent messages to it, at most W unconfirmed at a time;\n"
    "figure: N / (last confirm - first publish). Consume phase: a new connection consumes the\n"
    "queue (prefetch P) and acks each message; figure: N / (last consumed - consumer start).\n"
    "Also reports the broker's fsync policy and its fsyncs per second in each phase (status\n"
    "fsyncs). The queue is deleted afterwards.\n"
    "\n"
    "  --count N         messages (default 100000)\n"
    "  --size B          payload bytes, at least 16 (default 100)\n"
    "  --window W        unconfirmed publishes in flight, at most (default 1000)\n"
    "  --prefetch P      unacked deliveries of the consumer, 0 = unlimited (default 1000)\n";

static const char *s_help_connections =
    "usage: hopper bench connections [--count N] [--messages M] [--workers T]\n"
    "\n"
    "Opens N connections, each consuming its own exclusive server-named queue bound to the\n"
    "fanout exchange bench.conns.<pid>.<n> (like N chat clients); one publisher then\n"
    "broadcasts M messages and the run measures until every connection has each of them,\n"
    "exactly once. Reports the time for the broadcast to reach all, the broker's RSS (status\n"
    "rss_bytes) before, with N open and after closing, and its RSS per connection.\n"
    "The connections speak the protocol directly (no hop_client_t each): T threads hold them,\n"
    "one file descriptor per connection. The soft open-file limit is raised to the hard\n"
    "limit; when N does not fit even so, the run says so before opening anything.\n"
    "\n"
    "  --count N         connections (default 1000)\n"
    "  --messages M      messages broadcast (default 1)\n"
    "  --workers T       threads that hold the connections (default 2)\n"
    "\n"
    "The global --timeout bounds each setup request and the close (default 5000 ms).\n";

static const char *s_help_smoke =
    "usage: hopper bench smoke [--size B]\n"
    "\n"
    "A few seconds of every workload with small counts: pubsub 1 and 4 subscribers, queue\n"
    "(ack each, ack every 100, 2 producers x 2 consumers) of 20000 messages, 1 s of latency\n"
    "at 5000/s, 200 connections, persistent (W4) of 10000 messages. Prints the figures and\n"
    "asserts nothing about speed; exits non-zero only when a message was lost or duplicated\n"
    "or something failed.\n";

static void
s_opts_default(hop_bench_opts_t *o, int workload)
{
    memset(o, 0, sizeof *o);
    o->count = workload == HOP_BENCH_PUBSUB       ? 1000000
               : workload == HOP_BENCH_QUEUE      ? 500000
               : workload == HOP_BENCH_PERSISTENT ? 100000
                                                  : 1000;
    o->size = 100;
    o->subscribers = o->producers = o->consumers = o->ack_every = 1;
    o->prefetch = 1000;
    o->window = 1000;
    o->workers = 2;
    o->messages = 1;
    o->rate = 5000;
    o->duration = 10;
}

// Parses argv (the words after the workload) into o. Reports and returns -1 on bad input.
static int
s_opts_parse(hop_bench_opts_t *o, int workload, const char *wname, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0) {
            o->help = true;
            continue;
        }
        const s_optdef_t *def = NULL;
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        for (size_t k = 0; strncmp(arg, "--", 2) == 0 && k < sizeof s_optdefs / sizeof *s_optdefs;
             k++)
            if (strlen(s_optdefs[k].name) == len - 2 &&
                strncmp(s_optdefs[k].name, arg + 2, len - 2) == 0)
                def = &s_optdefs[k];
        if (!def || !(def->workloads & workload)) {
            fprintf(stderr, "hopper bench %s: unknown option '%.*s' (see hopper bench %s --help)\n",
                    wname, (int)len, arg, wname);
            return -1;
        }
        void *field = (char *)o + def->offset;
        if (def->type == 'b') {
            if (eq) {
                fprintf(stderr, "hopper bench %s: --%s takes no value\n", wname, def->name);
                return -1;
            }
            *(bool *)field = true;
            continue;
        }
        const char *value = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
        if (!value) {
            fprintf(stderr, "hopper bench %s: --%s needs a value\n", wname, def->name);
            return -1;
        }
        if (def->type == 's') {
            *(const char **)field = value;
            continue;
        }
        char *end = NULL;
        errno = 0;
        double number = def->type == 'l' ? (double)strtol(value, &end, 10) : strtod(value, &end);
        if (errno || end == value || *end || !(number >= def->min && number <= def->max)) {
            fprintf(stderr, "hopper bench %s: --%s wants a number from %.*f to %.0f, not '%s'\n",
                    wname, def->name, def->type == 'l' ? 0 : 1, def->min, def->max, value);
            return -1;
        }
        if (def->type == 'l')
            *(long *)field = (long)number;
        else
            *(double *)field = number;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------
// Entry point

// Ctrl-C: wind down, clean up, exit 130 (see hop_bench_interrupted).
static void
s_on_signal(int sig)
{
    (void)sig;
    hop_bench_interrupted = 1;
}

static int
s_run(int workload, const hop_bench_opts_t *o, const char *endpoint, int timeout_ms, json_t *obj)
{
    int code = workload == HOP_BENCH_CONNECTIONS
                   ? hop_bench_run_connections(o, endpoint, timeout_ms, obj)
               : workload == HOP_BENCH_PERSISTENT
                   ? hop_bench_run_persistent(o, endpoint, timeout_ms, obj)
                   : hop_bench_run_flow(workload, o, endpoint, timeout_ms, obj);
    hop_bench_results_flush();
    return code;
}

// The latency curve: the maximum throughput (measured, or --max-rate), then latency runs at
// 10, 50 and 90 % of it, and a table of the three.
static int
s_run_curve(const hop_bench_opts_t *o, const char *endpoint, int timeout_ms, json_t *obj)
{
    double max = o->max_rate;
    int code = HOP_BENCH_EXIT_OK;
    if (max <= 0) {
        hop_bench_opts_t w;
        s_opts_default(&w, HOP_BENCH_PUBSUB);
        w.count = 2000000;
        w.size = o->size;
        w.json = o->json;
        w.result_lines = o->result_lines;
        w.name = "W5-max";
        json_t *one = json_object();
        code = s_run(HOP_BENCH_PUBSUB, &w, endpoint, timeout_ms, one);
        max = json_real_value(json_object_get(one, "delivered_msgs_s"));
        json_object_set_new(obj, "max_run", one);
        if (code != HOP_BENCH_EXIT_OK || max <= 0)
            return code != HOP_BENCH_EXIT_OK ? code : HOP_BENCH_EXIT_LOST;
        if (!o->json)
            printf("\n");
    }
    static const int pcts[] = {10, 50, 90};
    json_t *points = json_array();
    struct {
        double rate, sent, p[5];
    } row[3] = {{0}};
    static const char *keys[5] = {"p50_us", "p90_us", "p99_us", "p99_9_us", "max_us"};
    for (int i = 0; i < 3 && !hop_bench_interrupted; i++) {
        hop_bench_opts_t w = *o;
        char label[32];
        snprintf(label, sizeof label, "%s-%dpct", o->name ? o->name : "W5", pcts[i]);
        w.name = label;
        w.rate = max * pcts[i] / 100;
        if (w.rate * w.duration > 1e8)
            w.duration = 1e8 / w.rate;
        json_t *one = json_object();
        int rc = s_run(HOP_BENCH_LATENCY, &w, endpoint, timeout_ms, one);
        code = rc > code ? rc : code;
        row[i].rate = w.rate;
        row[i].sent = json_real_value(json_object_get(one, "publish_msgs_s"));
        for (int k = 0; k < 5; k++)
            row[i].p[k] = json_real_value(json_object_get(one, keys[k]));
        hop_bench_jint(one, "percent_of_max", pcts[i]);
        json_array_append_new(points, one);
        if (!o->json)
            printf("\n");
    }
    hop_bench_jstr(obj, "workload", "latency-curve");
    hop_bench_jreal(obj, "max_msgs_s", max);
    json_object_set_new(obj, "points", points);
    if (!o->json) {
        printf("latency curve: maximum %s msgs/s%s\n", hop_bench_num(max),
               o->max_rate > 0 ? " (given)" : " (W1, measured)");
        printf("  %-6s %12s %12s %9s %9s %9s %9s %9s\n", "load", "rate", "achieved", "p50", "p90",
               "p99", "p99.9", "max us");
        for (int i = 0; i < 3; i++)
            printf("  %4d %% %12s %12s %9.1f %9.1f %9.1f %9.1f %9.1f\n", pcts[i],
                   hop_bench_num(row[i].rate), hop_bench_num(row[i].sent), row[i].p[0], row[i].p[1],
                   row[i].p[2], row[i].p[3], row[i].p[4]);
    }
    json_object_set_new(obj, "ok", json_boolean(code == HOP_BENCH_EXIT_OK));
    return code;
}

static int
s_run_smoke(const hop_bench_opts_t *o, const char *endpoint, int timeout_ms, json_t *obj)
{
    static const struct {
        int workload;
        long count, subscribers, producers, consumers, ack_every;
        double duration;
    } runs[] = {
        {HOP_BENCH_PUBSUB, 20000, 1, 1, 1, 1, 0},    {HOP_BENCH_PUBSUB, 20000, 4, 1, 1, 1, 0},
        {HOP_BENCH_QUEUE, 20000, 1, 1, 1, 1, 0},     {HOP_BENCH_QUEUE, 20000, 1, 1, 1, 100, 0},
        {HOP_BENCH_QUEUE, 20000, 1, 2, 2, 10, 0},    {HOP_BENCH_LATENCY, 0, 1, 1, 1, 1, 1.0},
        {HOP_BENCH_CONNECTIONS, 200, 1, 1, 1, 1, 0}, {HOP_BENCH_PERSISTENT, 10000, 1, 1, 1, 1, 0},
    };
    json_t *list = json_array();
    int code = HOP_BENCH_EXIT_OK;
    for (size_t i = 0; i < sizeof runs / sizeof *runs && !hop_bench_interrupted; i++) {
        hop_bench_opts_t w;
        s_opts_default(&w, runs[i].workload);
        w.size = runs[i].workload == HOP_BENCH_CONNECTIONS ? w.size : o->size;
        w.json = o->json;
        w.result_lines = o->result_lines;
        w.count = runs[i].count ? runs[i].count : w.count;
        w.subscribers = runs[i].subscribers;
        w.producers = runs[i].producers;
        w.consumers = runs[i].consumers;
        w.ack_every = runs[i].ack_every;
        w.duration = runs[i].duration ? runs[i].duration : w.duration;
        json_t *one = json_object();
        int rc = s_run(runs[i].workload, &w, endpoint, timeout_ms, one);
        json_array_append_new(list, one);
        code = rc > code ? rc : code;
        if (!o->json)
            printf("\n");
        fflush(stdout);
    }
    if (hop_bench_interrupted)
        code = HOP_BENCH_EXIT_INTERRUPTED;
    hop_bench_jstr(obj, "workload", "smoke");
    json_object_set_new(obj, "ok", json_boolean(code == HOP_BENCH_EXIT_OK));
    json_object_set_new(obj, "runs", list);
    if (!o->json)
        printf("smoke: %s\n", code == HOP_BENCH_EXIT_OK ? "ok" : "FAILED");
    return code;
}

int
hop_bench_main(int argc, char **argv, const char *endpoint, int timeout_ms)
{
    static const struct {
        const char *name;
        int workload;
        const char **help;
    } workloads[] = {
        {"pubsub", HOP_BENCH_PUBSUB, &s_help_pubsub},
        {"queue", HOP_BENCH_QUEUE, &s_help_queue},
        {"latency", HOP_BENCH_LATENCY, &s_help_latency},
        {"connections", HOP_BENCH_CONNECTIONS, &s_help_connections},
        {"persistent", HOP_BENCH_PERSISTENT, &s_help_persistent},
        {"smoke", HOP_BENCH_SMOKE, &s_help_smoke},
    };
    const char *word = argc > 1 ? argv[1] : NULL;
    bool help = word && (strcmp(word, "help") == 0 || strcmp(word, "--help") == 0 ||
                         strcmp(word, "-h") == 0);
    if (help && argc > 2)
        word = argv[2]; // `hopper bench help queue`
    int w = -1;
    for (size_t i = 0; word && i < sizeof workloads / sizeof *workloads; i++)
        if (strcmp(word, workloads[i].name) == 0)
            w = (int)i;
    if (w < 0) {
        if (help && argc <= 2) {
            fputs(s_help_top, stdout);
            return HOP_BENCH_EXIT_OK;
        }
        if (word)
            fprintf(stderr, "hopper bench: unknown workload '%s'\n\n", word);
        fputs(s_help_top, stderr);
        return HOP_BENCH_EXIT_USAGE;
    }
    hop_bench_opts_t o;
    s_opts_default(&o, workloads[w].workload);
    if (!help && s_opts_parse(&o, workloads[w].workload, word, argc - 2, argv + 2) != 0)
        return HOP_BENCH_EXIT_USAGE;
    if (help || o.help) {
        fputs(*workloads[w].help, stdout);
        fputs(workloads[w].workload == HOP_BENCH_SMOKE
                  ? "\nAlso: --json, --result-lines (see hopper bench --help).\n"
                  : "\nAlso: --json, --result-lines, --name LABEL (see hopper bench --help).\n",
              stdout);
        return HOP_BENCH_EXIT_OK;
    }
    if (workloads[w].workload == HOP_BENCH_QUEUE && o.prefetch > 0 && o.ack_every > o.prefetch) {
        fprintf(stderr,
                "hopper bench queue: --ack-every %ld exceeds --prefetch %ld: the consumer "
                "would wait forever for deliveries the broker holds back\n",
                o.ack_every, o.prefetch);
        return HOP_BENCH_EXIT_USAGE;
    }
    if (workloads[w].workload == HOP_BENCH_LATENCY && o.rate * o.duration > 1e8) {
        fprintf(stderr, "hopper bench latency: rate x duration is over 100,000,000 messages\n");
        return HOP_BENCH_EXIT_USAGE;
    }

    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sa.sa_flags = SA_RESETHAND; // a second Ctrl-C kills at once
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    hop_bench_interrupted = 0;

    json_t *obj = json_object();
    int code = workloads[w].workload == HOP_BENCH_SMOKE ? s_run_smoke(&o, endpoint, timeout_ms, obj)
               : workloads[w].workload == HOP_BENCH_LATENCY && o.curve
                   ? s_run_curve(&o, endpoint, timeout_ms, obj)
                   : s_run(workloads[w].workload, &o, endpoint, timeout_ms, obj);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (o.json) {
        char *text = json_dumps(obj, JSON_INDENT(2) | JSON_REAL_PRECISION(12));
        if (text)
            printf("%s\n", text);
        free(text);
    }
    json_decref(obj);
    fflush(stdout);
    return code;
}