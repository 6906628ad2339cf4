// cli/bench.c - `hopper bench`: load generator and benchmark, built on the SDK.
//
// The workloads reproduce shared/peers (bench_rabbit.c, bench_nats.c) so that figures compare:
// clients are threads of this process, each with its own hop_client_t (except the thousands
// of connections of `connections`, which bench_fleet.c holds); rates are taken with
// CLOCK_MONOTONIC from the first publish to the last delivery; latency pacing uses
// absolute-deadline clock_nanosleep. Every payload carries a sequence number, so every run
// also checks that no message was lost or delivered twice.
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <msgpack.h>

#include "bench_fleet.h"
#include "hopper.h"

#define S_NS            1000000000LL
#define S_MS            1000000LL
#define S_SILENCE_NS    (3 * S_NS)   // after the last publish, this much silence ends a run
#define S_POLL_MS       100          // consumers re-check their stop conditions this often
#define S_HEAD          16           // payload bytes 0-7: send time (ns), 8-15: sequence number
#define S_DUP_WINDOW_NS (200 * S_MS) // connections: how long to watch for a second copy

enum {
    S_EXIT_OK = 0,
    S_EXIT_LOST = 1, // lost/duplicated messages, or the broker refused a request
    S_EXIT_USAGE = 2,
    S_EXIT_UNREACHABLE = 3,
    S_EXIT_INTERRUPTED = 130,
};

// Workloads, as bits so that an option can list where it applies.
enum {
    S_PUBSUB = 1 << 0,
    S_QUEUE = 1 << 1,
    S_LATENCY = 1 << 2,
    S_CONNECTIONS = 1 << 3,
    S_SMOKE = 1 << 4,
};
#define S_RUNS (S_PUBSUB | S_QUEUE | S_LATENCY | S_CONNECTIONS)
#define S_ALL  (S_RUNS | S_SMOKE)

// ---------------------------------------------------------------------------------------
// Options

typedef struct {
    long count;        // messages (pubsub, queue) or clients (connections)
    long size;         // payload bytes
    long subscribers;  // pubsub
    long producers;    // queue
    long consumers;    // queue
    long prefetch;     // queue: unacked deliveries per consumer (0 = unlimited)
    long ack_every;    // queue: 1 = ack each message, K = ack(multiple) every K
    long workers;      // connections: threads that hold the connections
    long messages;     // connections: messages broadcast
    double rate;       // latency: messages per second
    double duration;   // latency: seconds
    const char *name;  // label in RESULT lines and JSON (default W1, W2, W3-ack1, ...)
    bool json;         // one JSON object on stdout instead of the table
    bool result_lines; // also "RESULT hopper <label> <metric> <value>" lines
    bool help;
} s_opts_t;

typedef struct {
    const char *name; // without the leading "--"
    char type;        // 'l' long, 'd' double, 's' string, 'b' flag
    size_t offset;    // of the field in s_opts_t
    int workloads;    // where it is accepted
    double min, max;  // numbers: accepted range
} s_optdef_t;

#define S_OPT(name, type, field, where, min, max)                                                  \
    {                                                                                              \
        name, type, offsetof(s_opts_t, field), where, min, max                                     \
    }
static const s_optdef_t s_optdefs[] = {
    S_OPT("count", 'l', count, S_PUBSUB | S_QUEUE | S_CONNECTIONS, 1, 1e9),
    S_OPT("n", 'l', count, S_PUBSUB | S_QUEUE | S_CONNECTIONS, 1, 1e9), // as in shared/peers
    S_OPT("size", 'l', size, S_PUBSUB | S_QUEUE | S_LATENCY | S_SMOKE, S_HEAD, 8 << 20),
    S_OPT("subscribers", 'l', subscribers, S_PUBSUB, 1, 1024),
    S_OPT("subs", 'l', subscribers, S_PUBSUB, 1, 1024),
    S_OPT("producers", 'l', producers, S_QUEUE, 1, 1024),
    S_OPT("consumers", 'l', consumers, S_QUEUE, 1, 1024),
    S_OPT("prefetch", 'l', prefetch, S_QUEUE, 0, 1e7),
    S_OPT("ack-every", 'l', ack_every, S_QUEUE, 1, 1e7),
    S_OPT("workers", 'l', workers, S_CONNECTIONS, 1, 256),
    S_OPT("messages", 'l', messages, S_CONNECTIONS, 1, 10000),
    S_OPT("rate", 'd', rate, S_LATENCY, 1, 1e7),
    S_OPT("duration", 'd', duration, S_LATENCY, 0.2, 86400),
    S_OPT("secs", 'd', duration, S_LATENCY, 0.2, 86400),
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
    "usage: hopper bench latency [--rate R] [--duration S] [--size B]\n"
    "\n"
    "W5: a publisher sends R messages/s for S seconds to amq.direct, paced by absolute\n"
    "deadlines; a consumer (its own connection, exclusive auto-delete queue, no-ack) records\n"
    "receive - send, both CLOCK_MONOTONIC. The first 0.1 s is dropped as warm-up.\n"
    "Reports p50/p90/p99/p99.9/max in microseconds.\n"
    "\n"
    "  --rate R          messages per second (default 5000)\n"
    "  --duration S      seconds (default 10)\n"
    "  --size B          payload bytes, at least 16 (default 100)\n";

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
    "at 5000/s, 200 connections. Prints the figures and asserts nothing about speed; exits\n"
    "non-zero only when a message was lost or duplicated or something failed.\n";

static void
s_opts_default(s_opts_t *o, int workload)
{
    memset(o, 0, sizeof *o);
    o->count = workload == S_PUBSUB ? 1000000 : workload == S_QUEUE ? 500000 : 1000;
    o->size = 100;
    o->subscribers = o->producers = o->consumers = o->ack_every = 1;
    o->prefetch = 1000;
    o->workers = 2;
    o->messages = 1;
    o->rate = 5000;
    o->duration = 10;
}

// Parses argv (the words after the workload) into o. Reports and returns -1 on bad input.
static int
s_opts_parse(s_opts_t *o, int workload, const char *wname, int argc, char **argv)
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
// Small helpers: clocks, formatting, output, /proc

static volatile sig_atomic_t s_interrupted; // Ctrl-C: wind down, clean up, exit 130

static void
s_on_signal(int sig)
{
    (void)sig;
    s_interrupted = 1;
}

static int64_t
s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * S_NS + ts.tv_nsec;
}

static void
s_sleep_until(int64_t t)
{
    struct timespec ts = {.tv_sec = t / S_NS, .tv_nsec = t % S_NS};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void
s_sleep(int64_t ns)
{
    s_sleep_until(s_now() + ns);
}

static double
s_secs(int64_t ns)
{
    return (double)ns / 1e9;
}

static double
s_per_sec(double count, int64_t ns)
{
    return ns > 0 ? count / s_secs(ns) : 0;
}

// Formats a number rounded to an integer with thousands separators. The result lives in a
// small ring of buffers: up to 8 may appear in one printf. Main thread only.
static const char *
s_num(double value)
{
    static char ring[8][32];
    static int next;
    char *buf = ring[next++ % 8];
    char digits[32];
    long long n = llround(value);
    snprintf(digits, sizeof digits, "%lld", n < 0 ? -n : n);
    size_t len = strlen(digits), o = 0;
    if (n < 0)
        buf[o++] = '-';
    for (size_t i = 0; i < len; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

static const char *
s_mib(int64_t bytes)
{
    static char ring[4][32];
    static int next;
    char *buf = ring[next++ % 4];
    if (bytes < 0)
        snprintf(buf, 32, "unknown");
    else
        snprintf(buf, 32, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
    return buf;
}

// RESULT lines wait here until the table of their run is printed. Main thread only.
static char s_results[4096];
static size_t s_results_len;

static void
s_result(const s_opts_t *o, const char *label, const char *metric, double value)
{
    if (!o->result_lines || s_results_len >= sizeof s_results)
        return;
    int n = snprintf(s_results + s_results_len, sizeof s_results - s_results_len,
                     "RESULT hopper %s %s %.1f\n", label, metric, value);
    if (n > 0)
        s_results_len += (size_t)n;
}

static void
s_results_flush(void)
{
    fputs(s_results, stdout);
    s_results[0] = '\0';
    s_results_len = 0;
}

static void
s_jint(json_t *obj, const char *key, long long value)
{
    json_object_set_new(obj, key, json_integer(value));
}

static void
s_jreal(json_t *obj, const char *key, double value)
{
    json_object_set_new(obj, key, json_real(round(value * 1000) / 1000));
}

static void
s_jstr(json_t *obj, const char *key, const char *value)
{
    json_object_set_new(obj, key, json_string(value));
}

// A unique name per run, so that runs never share (or clean up) each other's resources.
static void
s_unique(char *buf, size_t size, const char *prefix)
{
    static atomic_int counter;
    snprintf(buf, size, "%s.%ld.%d", prefix, (long)getpid(), atomic_fetch_add(&counter, 1) + 1);
}

// Progress on stderr: from the third second, once a second on a tty (overwriting the line),
// else one line every 5 s so that logs stay readable.
typedef struct {
    bool tty;
    bool shown;      // a tty line is on screen
    int64_t next;    // when the next line is due
    int64_t start;   // when the phase started
    int64_t last_t;  // for rates between two lines
    double last_val; // value at last_t
} s_progress_t;

static void
s_progress_init(s_progress_t *p)
{
    memset(p, 0, sizeof *p);
    p->tty = isatty(STDERR_FILENO);
    p->start = p->last_t = s_now();
    p->next = p->start + 3 * S_NS;
}

// Returns the rate of value since the last line when a line is due, else -1.
static double
s_progress_due(s_progress_t *p, double value)
{
    int64_t now = s_now();
    if (now < p->next)
        return -1;
    p->next = now + (p->tty ? 1 : 5) * S_NS;
    double rate = s_per_sec(value - p->last_val, now - p->last_t);
    p->last_t = now;
    p->last_val = value;
    return rate;
}

static void
s_progress_print(s_progress_t *p, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    double elapsed = s_secs(s_now() - p->start);
    if (p->tty) {
        fprintf(stderr, "\r[%3.0fs] %s\033[K", elapsed, line);
        p->shown = true;
    } else {
        fprintf(stderr, "[%3.0fs] %s\n", elapsed, line);
    }
}

static void
s_progress_end(s_progress_t *p)
{
    if (p->shown)
        fprintf(stderr, "\r\033[K");
    p->shown = false;
}

// What this process uses, for the per-client cost of the connections workload.
typedef struct {
    long fds;     // open file descriptors
    long threads; // threads of this process
    long rss_kib; // resident set
} s_usage_t;

static void
s_usage(s_usage_t *u)
{
    memset(u, 0, sizeof *u);
    DIR *dir = opendir("/proc/self/fd");
    if (dir) {
        while (readdir(dir))
            u->fds++;
        closedir(dir);
        u->fds -= 3; // ".", ".." and the directory itself
    }
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "Threads:", 8) == 0)
            u->threads = strtol(line + 8, NULL, 10);
        else if (strncmp(line, "VmRSS:", 6) == 0)
            u->rss_kib = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
}

// ---------------------------------------------------------------------------------------
// What every thread of a run shares: where the broker is, and the first error.

typedef struct {
    const char *endpoint; // NULL: the SDK default
    int timeout_ms;       // <= 0: the SDK default
    atomic_bool stop;     // set on the first error or on Ctrl-C: every thread winds down
    pthread_mutex_t lock; // guards error and exit_code
    char error[512];      // the first error, "" if none
    int exit_code;        // what the first error deserves
} s_ctl_t;

static void
s_ctl_init(s_ctl_t *ctl, const char *endpoint, int timeout_ms)
{
    memset(ctl, 0, sizeof *ctl);
    ctl->endpoint = endpoint;
    ctl->timeout_ms = timeout_ms;
    atomic_init(&ctl->stop, false);
    pthread_mutex_init(&ctl->lock, NULL);
}

static bool
s_stopped(s_ctl_t *ctl)
{
    return atomic_load_explicit(&ctl->stop, memory_order_relaxed);
}

static void
s_vnote(s_ctl_t *ctl, int rc, const char *fmt, va_list ap)
{
    pthread_mutex_lock(&ctl->lock);
    if (ctl->error[0] == '\0') {
        vsnprintf(ctl->error, sizeof ctl->error, fmt, ap);
        ctl->exit_code = rc == HOP_ECONNECT || rc == HOP_ETIMEOUT || rc == HOP_ECLOSED
                             ? S_EXIT_UNREACHABLE
                             : S_EXIT_LOST;
    }
    pthread_mutex_unlock(&ctl->lock);
}

// Records the first error (rc: the SDK code, which picks the exit code); the run goes on.
static void
s_note(s_ctl_t *ctl, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vnote(ctl, rc, fmt, ap);
    va_end(ap);
}

// Records the first error and stops the run.
static void
s_fail(s_ctl_t *ctl, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vnote(ctl, rc, fmt, ap);
    va_end(ap);
    atomic_store(&ctl->stop, true);
}

static const char *
s_errtext(hop_client_t *client, int rc)
{
    const char *text = client ? hop_client_error(client) : NULL;
    return text && *text ? text : hop_strerror(rc);
}

static const char *
s_endpoint_text(const s_ctl_t *ctl)
{
    const char *env = getenv("HOPPER_BROKER");
    return ctl->endpoint ? ctl->endpoint : env && *env ? env : HOP_DEFAULT_ENDPOINT;
}

// Creates and connects a client named name. On failure returns NULL with *rc_p set and the
// reason in err.
static hop_client_t *
s_client_open(const s_ctl_t *ctl, const char *name, int *rc_p, char *err, size_t err_size)
{
    hop_client_t *client = hop_client_new();
    if (ctl->timeout_ms > 0)
        hop_client_set_timeout(client, ctl->timeout_ms);
    // A lost connection must fail the run, not be papered over by a reconnect.
    hop_client_set_reconnect(client, false);
    hop_client_set_name(client, name);
    int rc = hop_client_connect(client, ctl->endpoint);
    if (rc != HOP_OK) {
        snprintf(err, err_size, "%s: cannot connect to %s: %s", name, s_endpoint_text(ctl),
                 s_errtext(client, rc));
        hop_client_destroy(&client);
    }
    *rc_p = rc;
    return client;
}

// As s_client_open, but a failure fails the run.
static hop_client_t *
s_client_open_or_fail(s_ctl_t *ctl, const char *name)
{
    char err[400];
    int rc;
    hop_client_t *client = s_client_open(ctl, name, &rc, err, sizeof err);
    if (!client)
        s_fail(ctl, rc, "%s", err);
    return client;
}

// Reads rss_bytes and connections from the broker's status; -1 when unknown.
static void
s_broker_status(hop_client_t *admin, int64_t *rss_p, int64_t *connections_p)
{
    *rss_p = -1;
    if (connections_p)
        *connections_p = -1;
    void *map = NULL;
    size_t size = 0;
    if (!admin || hop_client_status(admin, &map, &size) != HOP_OK)
        return;
    msgpack_unpacked msg;
    msgpack_unpacked_init(&msg);
    if (msgpack_unpack_next(&msg, map, size, NULL) == MSGPACK_UNPACK_SUCCESS &&
        msg.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_map *m = &msg.data.via.map;
        for (uint32_t i = 0; i < m->size; i++) {
            const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
            if (k->type != MSGPACK_OBJECT_STR || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                continue;
            // 0 is no RSS but a broker that could not read it (out of file descriptors).
            if (k->via.str.size == 9 && memcmp(k->via.str.ptr, "rss_bytes", 9) == 0 &&
                v->via.u64 > 0)
                *rss_p = (int64_t)v->via.u64;
            if (connections_p && k->via.str.size == 11 &&
                memcmp(k->via.str.ptr, "connections", 11) == 0)
                *connections_p = (int64_t)v->via.u64;
        }
    }
    msgpack_unpacked_destroy(&msg);
    free(map);
}

// ---------------------------------------------------------------------------------------
// Flow runs (pubsub, queue, latency): publisher and consumer threads around one exchange.

typedef struct s_flow s_flow_t;

// One client thread of a flow run: a publisher or a consumer.
typedef struct {
    s_flow_t *flow; // the run
    int index;      // among the publishers or among the consumers
    bool publisher;
    pthread_t thread;
    bool running;           // the thread was started (and must be joined)
    long first;             // publisher: first sequence number it sends
    long count;             // publisher: how many it sends
    atomic_long sent;       // publisher: sent so far (updated every 1024)
    long stalls;            // publisher: publishes refused with HOP_EFULL and retried
    int64_t t_end;          // publisher: after its last publish
    long expect;            // consumer: distinct messages it should get (pubsub, latency)
    uint64_t *seen;         // pubsub consumer: bitmap of sequence numbers received
    atomic_long got;        // consumer: distinct messages received
    long dup, bad;          // consumer: second copies; wrong size or sequence number
    long reordered;         // pubsub consumer: sequence numbers that went backwards
    long redelivered;       // consumer: deliveries flagged redelivered
    long next_seq;          // pubsub consumer: the sequence number expected next
    _Atomic int64_t t_last; // consumer: when the last delivery arrived
    uint64_t ack_tag;       // queue consumer: last delivery tag not yet acked
    long unacked;           // queue consumer: deliveries since the last ack
} s_actor_t;

struct s_flow {
    s_ctl_t ctl;
    const s_opts_t *o;
    int workload;                    // S_PUBSUB, S_QUEUE or S_LATENCY
    char label[64];                  // W1, W2, W3-ack1, W5, ...
    char exchange[HOP_NAME_MAX + 1]; // where publishers publish
    char key[HOP_NAME_MAX + 1];      // routing key; also the subscribers' pattern
    char queue[HOP_NAME_MAX + 1];    // queue: the work queue
    long total;                      // messages published in all
    size_t size;                     // payload bytes
    atomic_int ready;                // threads connected (and subscribed) or failed
    atomic_int finished;             // threads done
    atomic_int publishing;           // publishers not done yet
    atomic_bool go;                  // start publishing
    _Atomic int64_t t_pub_done;      // when the last publisher finished; 0 before
    int64_t t0;                      // just before the first publish
    _Atomic uint64_t *shared_seen;   // queue: bitmap shared by every consumer
    atomic_long shared_got;          // queue: distinct messages received by all consumers
    int64_t *lat;                    // latency: receive - send per sequence number, -1 = none
    s_actor_t *actors;               // npub publishers, then ncons consumers
    int npub, ncons;
};

static void
s_wait_go(s_flow_t *flow)
{
    while (!atomic_load(&flow->go) && !s_stopped(&flow->ctl))
        s_sleep(200 * 1000);
}

static void
s_count(atomic_long *counter)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

// The consumer has everything it waits for (or the run stopped).
static bool
s_consumer_done(s_actor_t *a)
{
    s_flow_t *flow = a->flow;
    if (s_stopped(&flow->ctl))
        return true;
    if (flow->workload == S_QUEUE)
        return atomic_load_explicit(&flow->shared_got, memory_order_relaxed) >= flow->total;
    return atomic_load_explicit(&a->got, memory_order_relaxed) >= a->expect;
}

// Publishing is over and no consumer heard anything for S_SILENCE_NS: the rest is lost.
static bool
s_flow_silent(s_flow_t *flow)
{
    int64_t last = atomic_load(&flow->t_pub_done);
    if (last == 0)
        return false;
    for (int i = flow->npub; i < flow->npub + flow->ncons; i++) {
        int64_t t = atomic_load_explicit(&flow->actors[i].t_last, memory_order_relaxed);
        last = t > last ? t : last;
    }
    return s_now() - last > S_SILENCE_NS;
}

static int
s_on_delivery(hop_client_t *client, const hop_delivery_t *d, void *arg)
{
    s_actor_t *a = arg;
    s_flow_t *flow = a->flow;
    int64_t now = s_now(), sent, seq;
    atomic_store_explicit(&a->t_last, now, memory_order_relaxed);
    if (d->redelivered)
        a->redelivered++;
    if (d->body_size != flow->size || !d->body) {
        a->bad++;
    } else {
        memcpy(&sent, d->body, 8);
        memcpy(&seq, (const char *)d->body + 8, 8);
        uint64_t bit = 1ULL << (seq & 63);
        if (seq < 0 || seq >= flow->total) {
            a->bad++;
        } else if (flow->workload == S_PUBSUB) {
            if (a->seen[seq >> 6] & bit) {
                a->dup++;
            } else {
                a->seen[seq >> 6] |= bit;
                a->reordered += seq < a->next_seq;
                a->next_seq = seq + 1;
                s_count(&a->got);
            }
        } else if (flow->workload == S_QUEUE) {
            if (atomic_fetch_or_explicit(&flow->shared_seen[seq >> 6], bit, memory_order_relaxed) &
                bit) {
                a->dup++;
            } else {
                s_count(&a->got);
                atomic_fetch_add_explicit(&flow->shared_got, 1, memory_order_relaxed);
            }
        } else if (flow->lat[seq] >= 0) {
            a->dup++;
        } else {
            flow->lat[seq] = now - sent;
            s_count(&a->got);
        }
    }
    if (flow->workload == S_QUEUE) {
        a->ack_tag = d->tag;
        if (++a->unacked >= flow->o->ack_every) {
            int rc = hop_client_ack(client, d->tag, flow->o->ack_every > 1);
            a->unacked = 0;
            if (rc != HOP_OK)
                s_fail(&flow->ctl, rc, "consumer %d: ack: %s", a->index, s_errtext(client, rc));
        }
    }
    return s_consumer_done(a);
}

static void *
s_consumer_main(void *arg)
{
    s_actor_t *a = arg;
    s_flow_t *flow = a->flow;
    char name[64];
    snprintf(name, sizeof name, "bench-consumer-%d", a->index);
    hop_client_t *client = s_client_open_or_fail(&flow->ctl, name);
    if (client) {
        int rc =
            flow->workload == S_QUEUE
                ? hop_client_consume(client, flow->queue, NULL, (int)flow->o->prefetch, 0, NULL, 0)
                : hop_client_subscribe(client, flow->exchange, flow->key, NULL, 0);
        if (rc != HOP_OK) {
            s_fail(&flow->ctl, rc, "%s: cannot %s %s: %s", name,
                   flow->workload == S_QUEUE ? "consume" : "subscribe to",
                   flow->workload == S_QUEUE ? flow->queue : flow->exchange, s_errtext(client, rc));
            hop_client_destroy(&client);
        }
    }
    atomic_fetch_add(&flow->ready, 1);
    if (client) {
        s_wait_go(flow);
        while (!s_consumer_done(a) && !s_flow_silent(flow)) {
            int rc = hop_client_dispatch(client, s_on_delivery, a, S_POLL_MS);
            if (rc != HOP_OK && rc != HOP_ETIMEOUT) {
                s_fail(&flow->ctl, rc, "%s: %s", name, s_errtext(client, rc));
                break;
            }
        }
        if (a->unacked > 0 && !s_stopped(&flow->ctl)) {
            int rc = hop_client_ack(client, a->ack_tag, true);
            if (rc != HOP_OK)
                s_fail(&flow->ctl, rc, "%s: ack: %s", name, s_errtext(client, rc));
        }
        hop_client_destroy(&client);
    }
    atomic_fetch_add(&flow->finished, 1);
    return NULL;
}

// Publishes one message, retrying while the client's queue is full.
static int
s_publish(s_actor_t *a, hop_client_t *client, const char *body)
{
    s_flow_t *flow = a->flow;
    int rc;
    while ((rc = hop_client_publish(client, flow->exchange, flow->key, body, flow->size, NULL)) ==
               HOP_EFULL &&
           !s_stopped(&flow->ctl)) {
        a->stalls++;
        s_sleep(20 * 1000);
    }
    if (rc != HOP_OK)
        s_fail(&flow->ctl, rc, "publisher %d: publish: %s", a->index, s_errtext(client, rc));
    return rc;
}

static void *
s_publisher_main(void *arg)
{
    s_actor_t *a = arg;
    s_flow_t *flow = a->flow;
    char name[64];
    snprintf(name, sizeof name, "bench-publisher-%d", a->index);
    hop_client_t *client = s_client_open_or_fail(&flow->ctl, name);
    char *body = calloc(1, flow->size);
    if (!body)
        abort();
    atomic_fetch_add(&flow->ready, 1);
    long i = 0;
    if (client) {
        s_wait_go(flow);
        if (flow->workload == S_LATENCY) {
            // As shared/peers W5: absolute deadlines, so one late wake-up does not shift the
            // rest; the timestamp is taken right before the publish call.
            int64_t period = (int64_t)(S_NS / flow->o->rate), next = s_now() + S_MS;
            for (i = 0; i < a->count && !s_stopped(&flow->ctl); i++) {
                s_sleep_until(next);
                next += period;
                int64_t t = s_now(), seq = a->first + i;
                memcpy(body, &t, 8);
                memcpy(body + 8, &seq, 8);
                if (s_publish(a, client, body) != HOP_OK)
                    break;
                atomic_store_explicit(&a->sent, i + 1, memory_order_relaxed);
            }
        } else {
            for (i = 0; i < a->count; i++) {
                int64_t seq = a->first + i;
                memcpy(body + 8, &seq, 8);
                if (s_publish(a, client, body) != HOP_OK)
                    break;
                if ((i & 1023) == 1023) {
                    atomic_store_explicit(&a->sent, i + 1, memory_order_relaxed);
                    if (s_stopped(&flow->ctl))
                        break;
                }
            }
        }
    }
    a->t_end = s_now();
    atomic_store(&a->sent, i);
    if (atomic_fetch_sub(&flow->publishing, 1) == 1)
        atomic_store(&flow->t_pub_done, s_now());
    if (client && !s_stopped(&flow->ctl)) {
        // One round trip after the last publish: the broker has read every publish before it
        // answers, and an asynchronous refusal (unknown exchange) surfaces here. A timeout
        // only means the broker is still working through a backlog.
        void *map = NULL;
        size_t size = 0;
        int rc = hop_client_status(client, &map, &size);
        free(map);
        if (rc != HOP_OK && rc != HOP_ETIMEOUT)
            s_fail(&flow->ctl, rc, "%s: %s", name, s_errtext(client, rc));
    }
    hop_client_destroy(&client);
    free(body);
    atomic_fetch_add(&flow->finished, 1);
    return NULL;
}

static bool
s_start(s_flow_t *flow, s_actor_t *a)
{
    int err =
        pthread_create(&a->thread, NULL, a->publisher ? s_publisher_main : s_consumer_main, a);
    if (err) {
        s_fail(&flow->ctl, HOP_ENOMEM, "cannot start a thread: %s", strerror(err));
        return false;
    }
    a->running = true;
    return true;
}

// Consumers first (they must be subscribed before the first publish), then publishers; go;
// progress until every thread is done.
static void
s_flow_run(s_flow_t *flow)
{
    int started = 0;
    for (int i = flow->npub; i < flow->npub + flow->ncons && !s_stopped(&flow->ctl); i++)
        started += s_start(flow, &flow->actors[i]);
    while (atomic_load(&flow->ready) < started)
        s_sleep(S_MS);
    for (int i = 0; i < flow->npub && !s_stopped(&flow->ctl); i++)
        started += s_start(flow, &flow->actors[i]);
    while (atomic_load(&flow->ready) < started)
        s_sleep(S_MS);

    flow->t0 = s_now();
    atomic_store(&flow->go, true);
    s_progress_t progress;
    s_progress_init(&progress);
    const char *verb = flow->workload == S_QUEUE ? "consumed" : "delivered";
    long expected = flow->workload == S_PUBSUB ? flow->total * flow->ncons : flow->total;
    while (atomic_load(&flow->finished) < started) {
        s_sleep(50 * S_MS);
        if (s_interrupted && !s_stopped(&flow->ctl))
            s_fail(&flow->ctl, HOP_OK, "interrupted");
        long sent = 0, got = 0;
        for (int i = 0; i < flow->npub + flow->ncons; i++)
            if (i < flow->npub)
                sent += atomic_load_explicit(&flow->actors[i].sent, memory_order_relaxed);
            else
                got += atomic_load_explicit(&flow->actors[i].got, memory_order_relaxed);
        double rate = s_progress_due(&progress, (double)got);
        if (rate >= 0)
            s_progress_print(&progress, "%s: published %s/%s, %s %s/%s, %s msgs/s", flow->label,
                             s_num(sent), s_num(flow->total), verb, s_num(got), s_num(expected),
                             s_num(rate));
    }
    s_progress_end(&progress);
    for (int i = 0; i < flow->npub + flow->ncons; i++)
        if (flow->actors[i].running)
            pthread_join(flow->actors[i].thread, NULL);
}

static int
s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double
s_pct_us(const int64_t *sorted, size_t n, double p)
{
    return n ? (double)sorted[(size_t)(p * (double)(n - 1))] / 1000.0 : 0;
}

// Prints the figures of a latency run; returns the JSON fields through obj.
static void
s_report_latency(s_flow_t *flow, json_t *obj, long got)
{
    const s_opts_t *o = flow->o;
    long warm = (long)(o->rate / 10); // the first 0.1 s, as shared/peers
    if (warm >= flow->total)
        warm = 0;
    size_t n = 0;
    for (long i = warm; i < flow->total; i++)
        if (flow->lat[i] >= 0)
            flow->lat[n++] = flow->lat[i];
    qsort(flow->lat, n, sizeof *flow->lat, s_cmp_i64);
    static const struct {
        const char *name, *metric, *json;
        double p;
    } pcts[] = {{"p50", "p50_us", "p50_us", 0.50},
                {"p90", "p90_us", "p90_us", 0.90},
                {"p99", "p99_us", "p99_us", 0.99},
                {"p99.9", "p99.9_us", "p99_9_us", 0.999},
                {"max", "max_us", "max_us", 1.0}};
    if (!o->json)
        printf("  samples    %s (first %s dropped as warm-up)\n  latency  ", s_num((double)n),
               s_num((double)warm));
    for (size_t k = 0; k < sizeof pcts / sizeof *pcts; k++) {
        double us = s_pct_us(flow->lat, n, pcts[k].p);
        if (!o->json)
            printf("  %s %.1f", pcts[k].name, us);
        s_jreal(obj, pcts[k].json, us);
        if (n)
            s_result(o, flow->label, pcts[k].metric, us);
    }
    if (!o->json)
        printf(" µs\n");
    s_jint(obj, "received", got);
    s_jint(obj, "samples", (long long)n);
    s_jint(obj, "warmup_dropped", warm);
}

static const char *
s_flow_name(int workload)
{
    return workload == S_PUBSUB ? "pubsub" : workload == S_QUEUE ? "queue" : "latency";
}

// Prints the figures of a flow run and fills obj; returns the exit code.
static int
s_flow_report(s_flow_t *flow, int64_t rss, int64_t left, json_t *obj)
{
    const s_opts_t *o = flow->o;
    long sent = 0, got = 0, dup = 0, bad = 0, reordered = 0, redelivered = 0, stalls = 0;
    int64_t t_pub = flow->t0, t_last = flow->t0;
    for (int i = 0; i < flow->npub + flow->ncons; i++) {
        s_actor_t *a = &flow->actors[i];
        if (a->publisher) {
            sent += atomic_load(&a->sent);
            stalls += a->stalls;
            t_pub = a->t_end > t_pub ? a->t_end : t_pub;
            continue;
        }
        got += atomic_load(&a->got);
        dup += a->dup;
        bad += a->bad;
        reordered += a->reordered;
        redelivered += a->redelivered;
        int64_t t = atomic_load(&a->t_last);
        t_last = t > t_last ? t : t_last;
    }
    // Against what was really published: a run cut short by an error loses nothing unsent.
    long expected = flow->workload == S_PUBSUB ? sent * flow->ncons : sent;
    long lost = expected - got;
    bool is_queue = flow->workload == S_QUEUE;
    const char *verb = is_queue ? "consumed" : "delivered";
    if (!o->json && flow->workload != S_LATENCY) {
        printf("  published  %13s msgs in %7.3f s  %11s msgs/s\n", s_num(sent),
               s_secs(t_pub - flow->t0), s_num(s_per_sec(sent, t_pub - flow->t0)));
        printf("  %-9s  %13s msgs in %7.3f s  %11s msgs/s  (first publish -> last %s)\n", verb,
               s_num(got), s_secs(t_last - flow->t0), s_num(s_per_sec(got, t_last - flow->t0)),
               is_queue ? "consumed" : "delivery");
    } else if (!o->json) {
        printf("  sent       %s at %s msgs/s for %.1f s\n", s_num(sent), s_num(o->rate),
               o->duration);
    }
    if (flow->workload == S_LATENCY) {
        s_jint(obj, "sent", sent);
        s_report_latency(flow, obj, got);
    } else {
        s_jint(obj, "published", sent);
        s_jreal(obj, "publish_seconds", s_secs(t_pub - flow->t0));
        s_jreal(obj, "publish_msgs_s", s_per_sec(sent, t_pub - flow->t0));
        s_jint(obj, verb, got);
        s_jreal(obj, "seconds", s_secs(t_last - flow->t0));
        s_jreal(obj, is_queue ? "consumed_msgs_s" : "delivered_msgs_s",
                s_per_sec(got, t_last - flow->t0));
        s_result(o, flow->label, is_queue ? "consumed_msgs_s" : "delivered_msgs_s",
                 s_per_sec(got, t_last - flow->t0));
        s_result(o, flow->label, "publish_msgs_s", s_per_sec(sent, t_pub - flow->t0));
    }
    if (!o->json) {
        printf("  lost %s, duplicated %s", s_num(lost), s_num(dup));
        if (bad)
            printf(", corrupt %s", s_num(bad));
        if (reordered)
            printf(", out of order %s", s_num(reordered));
        if (redelivered)
            printf(", redelivered %s", s_num(redelivered));
        if (left > 0)
            printf(", left in the queue %s", s_num(left));
        printf("\n");
        if (stalls)
            printf("  publisher  %s publishes refused (client queue full) and retried\n",
                   s_num(stalls));
        printf("  broker     RSS %s after the run\n", s_mib(rss));
    }
    s_jint(obj, "lost", lost);
    s_jint(obj, "duplicated", dup);
    s_jint(obj, "corrupt", bad);
    if (flow->workload == S_PUBSUB)
        s_jint(obj, "out_of_order", reordered);
    if (is_queue) {
        s_jint(obj, "redelivered", redelivered);
        s_jint(obj, "left_in_queue", left);
    }
    s_jint(obj, "publish_stalls", stalls);
    s_jint(obj, "broker_rss_bytes", rss);
    s_result(o, flow->label, "lost_msgs", (double)lost);
    s_result(o, flow->label, "dup_msgs", (double)dup);
    if (rss >= 0)
        s_result(o, flow->label, "broker_rss_kib", (double)rss / 1024);
    return lost || dup || bad ? S_EXIT_LOST : S_EXIT_OK;
}

// Runs pubsub, queue or latency with options o; fills obj; returns the exit code.
static int
s_run_flow(int workload, const s_opts_t *o, const char *endpoint, int timeout_ms, json_t *obj)
{
    s_flow_t *flow = calloc(1, sizeof *flow);
    if (!flow)
        abort();
    s_ctl_init(&flow->ctl, endpoint, timeout_ms);
    flow->o = o;
    flow->workload = workload;
    flow->size = (size_t)o->size;
    if (workload == S_PUBSUB) {
        flow->npub = 1;
        flow->ncons = (int)o->subscribers;
        flow->total = o->count;
        s_unique(flow->exchange, sizeof flow->exchange, "bench.fanout");
        if (o->subscribers == 1 || o->subscribers == 4)
            snprintf(flow->label, sizeof flow->label, "W%d", o->subscribers == 1 ? 1 : 2);
        else
            snprintf(flow->label, sizeof flow->label, "W2-subs%ld", o->subscribers);
    } else if (workload == S_QUEUE) {
        flow->npub = (int)o->producers;
        flow->ncons = (int)o->consumers;
        flow->total = o->count;
        s_unique(flow->queue, sizeof flow->queue, "bench.queue");
        snprintf(flow->key, sizeof flow->key, "%s", flow->queue); // via the default exchange
        int n = snprintf(flow->label, sizeof flow->label, "W3");
        if (o->producers != 1 || o->consumers != 1)
            n += snprintf(flow->label + n, sizeof flow->label - n, "-p%ldc%ld", o->producers,
                          o->consumers);
        n += snprintf(flow->label + n, sizeof flow->label - n, "-ack%ld", o->ack_every);
        if (o->prefetch != 1000)
            snprintf(flow->label + n, sizeof flow->label - n, "-pf%ld", o->prefetch);
    } else {
        flow->npub = flow->ncons = 1;
        flow->total = (long)(o->rate * o->duration);
        snprintf(flow->exchange, sizeof flow->exchange, "amq.direct");
        s_unique(flow->key, sizeof flow->key, "bench.lat");
        snprintf(flow->label, sizeof flow->label, "W5");
    }
    if (o->name)
        snprintf(flow->label, sizeof flow->label, "%s", o->name);
    atomic_init(&flow->publishing, flow->npub);
    flow->actors = calloc((size_t)(flow->npub + flow->ncons), sizeof *flow->actors);
    size_t words = ((size_t)flow->total + 63) / 64;
    if (workload == S_QUEUE)
        flow->shared_seen = calloc(words, sizeof *flow->shared_seen);
    if (workload == S_LATENCY) {
        flow->lat = malloc((size_t)flow->total * sizeof *flow->lat);
        for (long i = 0; flow->lat && i < flow->total; i++)
            flow->lat[i] = -1;
    }
    if (!flow->actors || (workload == S_QUEUE && !flow->shared_seen) ||
        (workload == S_LATENCY && !flow->lat))
        abort();
    for (int i = 0; i < flow->npub + flow->ncons; i++) {
        s_actor_t *a = &flow->actors[i];
        a->flow = flow;
        a->publisher = i < flow->npub;
        a->index = a->publisher ? i : i - flow->npub;
        if (a->publisher) {
            a->first = flow->total * a->index / flow->npub;
            a->count = flow->total * (a->index + 1) / flow->npub - a->first;
        } else {
            a->expect = flow->total;
            if (workload == S_PUBSUB && !(a->seen = calloc(words, sizeof *a->seen)))
                abort();
        }
    }

    s_jstr(obj, "workload", s_flow_name(workload));
    s_jstr(obj, "label", flow->label);
    s_jint(obj, "size", o->size);
    if (!o->json) {
        if (workload == S_PUBSUB)
            printf("pubsub %s: 1 publisher -> %d subscriber%s on fanout %s, %s msgs of %ld B\n",
                   flow->label, flow->ncons, flow->ncons > 1 ? "s" : "", flow->exchange,
                   s_num(flow->total), o->size);
        else if (workload == S_QUEUE)
            printf("queue %s: %d producer%s -> queue %s -> %d consumer%s (prefetch %ld, ack %s%s), "
                   "%s msgs of %ld B\n",
                   flow->label, flow->npub, flow->npub > 1 ? "s" : "", flow->queue, flow->ncons,
                   flow->ncons > 1 ? "s" : "", o->prefetch,
                   o->ack_every > 1 ? "multiple every " : "each",
                   o->ack_every > 1 ? s_num(o->ack_every) : "", s_num(flow->total), o->size);
        else
            printf("latency %s: %s msgs/s for %.1f s of %ld B, amq.direct -> exclusive queue\n",
                   flow->label, s_num(o->rate), o->duration, o->size);
        fflush(stdout);
    }
    if (workload == S_PUBSUB) {
        s_jint(obj, "subscribers", flow->ncons);
        s_jint(obj, "count", flow->total);
    } else if (workload == S_QUEUE) {
        s_jint(obj, "producers", flow->npub);
        s_jint(obj, "consumers", flow->ncons);
        s_jint(obj, "prefetch", o->prefetch);
        s_jint(obj, "ack_every", o->ack_every);
        s_jint(obj, "count", flow->total);
    } else {
        s_jreal(obj, "rate", o->rate);
        s_jreal(obj, "duration", o->duration);
    }

    // The admin connection sets up and tears down the topology and reads the broker's RSS.
    hop_client_t *admin = s_client_open_or_fail(&flow->ctl, "bench-admin");
    int rc = HOP_OK;
    if (admin && workload == S_PUBSUB)
        rc = hop_client_declare_exchange(admin, flow->exchange, "fanout", 0);
    if (admin && workload == S_QUEUE &&
        (rc = hop_client_declare_queue(admin, flow->queue, 0, NULL, 0)) == HOP_OK)
        rc = hop_client_purge_queue(admin, flow->queue, NULL);
    if (rc != HOP_OK)
        s_fail(&flow->ctl, rc, "cannot declare %s: %s",
               workload == S_QUEUE ? flow->queue : flow->exchange, s_errtext(admin, rc));
    if (!s_stopped(&flow->ctl))
        s_flow_run(flow);
    int64_t rss = -1;
    uint64_t left = 0;
    s_broker_status(admin, &rss, NULL);
    if (admin && workload == S_PUBSUB)
        hop_client_delete_exchange(admin, flow->exchange, 0);
    if (admin && workload == S_QUEUE)
        hop_client_delete_queue(admin, flow->queue, 0, &left);
    hop_client_destroy(&admin);

    // A run that never started has no figures, only its error.
    int code = flow->t0 ? s_flow_report(flow, rss, (int64_t)left, obj) : S_EXIT_OK;
    if (flow->ctl.error[0]) {
        fprintf(stderr, "hopper bench %s: %s\n", s_flow_name(workload), flow->ctl.error);
        s_jstr(obj, "error", flow->ctl.error);
        code = s_interrupted ? S_EXIT_INTERRUPTED : flow->ctl.exit_code;
    }
    json_object_set_new(obj, "ok", json_boolean(code == S_EXIT_OK));
    for (int i = 0; i < flow->npub + flow->ncons; i++)
        free(flow->actors[i].seen);
    free(flow->actors);
    free(flow->shared_seen);
    free(flow->lat);
    pthread_mutex_destroy(&flow->ctl.lock);
    free(flow);
    return code;
}

// ---------------------------------------------------------------------------------------
// Connections: many idle subscribed connections, one broadcast. bench_fleet.c holds the
// connections: raw protocol over a few ROUTER sockets, one file descriptor per connection.

#define S_CONN_HEARTBEAT_MS 60000 // the longest the broker grants: idle connections stay idle
#define S_CONN_TIMEOUT_MS   5000  // per setup request, unless --timeout says otherwise

// Raises this process's soft limit of open files to the hard limit, and checks that need
// files fit. Returns 0, or -1 with the numbers and the remedies in why.
static int
s_fds_reserve(long need, long count, char *why, size_t why_size)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0; // nothing known: let the opening find out
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit raised = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            rl = raised;
    }
    if (rl.rlim_cur == RLIM_INFINITY || need <= (long)rl.rlim_cur)
        return 0;
    long fit = count - (need - (long)rl.rlim_cur);
    snprintf(why, why_size,
             "%s connections need about %s open files in this process (one per connection "
             "and %s more), but it may open only %s (ulimit -n, already raised to the hard "
             "limit %s, ulimit -Hn). Raise the hard limit (as root: `ulimit -Hn %ld` in the "
             "shell that runs hopper; LimitNOFILE= for a service; nofile in "
             "/etc/security/limits.conf), ask for at most --count %s, or run several bench "
             "processes at once",
             s_num(count), s_num(need), s_num(need - count), s_num(rl.rlim_cur),
             rl.rlim_max == RLIM_INFINITY ? "unlimited" : s_num(rl.rlim_max), need,
             s_num(fit > 0 ? fit : 0));
    return -1;
}

static int
s_run_connections(const s_opts_t *o, const char *endpoint, int timeout_ms, json_t *obj)
{
    s_ctl_t ctl;
    s_ctl_init(&ctl, endpoint, timeout_ms);
    const char *label = o->name ? o->name : "CONN";
    char exchange[HOP_NAME_MAX + 1];
    s_unique(exchange, sizeof exchange, "bench.conns");
    s_jstr(obj, "workload", "connections");
    s_jstr(obj, "label", label);
    s_jint(obj, "requested", o->count);
    s_jint(obj, "messages", o->messages);
    s_jint(obj, "workers", o->workers);
    if (!o->json) {
        printf("connections %s: %s connections, each consuming its own queue bound to fanout "
               "%s; %s broadcast message%s\n",
               label, s_num(o->count), exchange, s_num(o->messages), o->messages > 1 ? "s" : "");
        fflush(stdout);
    }

    int64_t rss_before = -1, rss_open = -1, rss_after = -1, conns_open = -1;
    int64_t t_open = 0, t_opened = 0, t0 = 0, t_close = 0, t_closed = 0;
    s_usage_t u0 = {0}, u2 = {0};
    hop_fleet_stats_t st = {0};
    hop_fleet_t *fleet = NULL;
    int64_t *done = NULL;
    size_t ndone = 0;
    long fd_limit = -1, expected = 0;
    bool usage_error = false;
    char err[800];
    hop_client_t *admin = s_client_open_or_fail(&ctl, "bench-admin");
    int rc = admin ? hop_client_declare_exchange(admin, exchange, "fanout", 0) : HOP_OK;
    if (rc != HOP_OK)
        s_fail(&ctl, rc, "cannot declare %s: %s", exchange, s_errtext(admin, rc));
    if (s_stopped(&ctl))
        goto report;
    s_broker_status(admin, &rss_before, NULL);

    // Every file this run needs is counted before the first connection: running out midway
    // would leave half a fleet and no clear reason.
    s_usage(&u0);
    long need = u0.fds + hop_fleet_fds(o->count, (int)o->workers) + 16;
    if (s_fds_reserve(need, o->count, err, sizeof err) < 0) {
        s_fail(&ctl, HOP_OK, "%s", err);
        usage_error = true;
        goto report;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        fd_limit = rl.rlim_cur == RLIM_INFINITY ? -1 : (long)rl.rlim_cur;

    hop_fleet_config_t config = {
        .endpoint = s_endpoint_text(&ctl),
        .exchange = exchange,
        .name = "bench-conn",
        .count = o->count,
        .workers = (int)o->workers,
        .messages = o->messages,
        .body_size = S_HEAD,
        .timeout_ms = timeout_ms > 0 ? timeout_ms : S_CONN_TIMEOUT_MS,
        .heartbeat_ms = S_CONN_HEARTBEAT_MS,
    };
    t_open = s_now();
    fleet = hop_fleet_new(&config, err, sizeof err);
    if (!fleet) {
        s_fail(&ctl, HOP_ENOMEM, "%s", err);
        goto report;
    }
    s_progress_t progress;
    s_progress_init(&progress);
    do {
        s_sleep(10 * S_MS);
        if (s_interrupted && !s_stopped(&ctl)) {
            s_fail(&ctl, HOP_OK, "interrupted");
            hop_fleet_stop_opening(fleet);
        }
        hop_fleet_stats(fleet, &st);
        double rate = s_progress_due(&progress, (double)st.opened);
        if (rate >= 0)
            s_progress_print(&progress, "%s: opened %s/%s connections, %s/s", label,
                             s_num(st.opened), s_num(o->count), s_num(rate));
    } while (st.opening);
    s_progress_end(&progress);
    t_opened = s_now();
    s_usage(&u2);
    s_broker_status(admin, &rss_open, &conns_open);
    // A failed opening is the run's error, but the connections that did open still get the
    // broadcast: with the broker out of file descriptors, they show what it still does.
    char fleet_error[512];
    int fleet_rc = hop_fleet_error(fleet, fleet_error, sizeof fleet_error);
    if (fleet_error[0] && !s_stopped(&ctl)) {
        fprintf(stderr, "hopper bench connections: opened only %s of %s\n", s_num(st.opened),
                s_num(o->count));
        s_note(&ctl, fleet_rc, "%s", fleet_error);
    }

    // The broadcast: the admin connection publishes, every connection counts what it gets.
    expected = st.opened * o->messages;
    if (!s_stopped(&ctl) && st.opened > 0) {
        char body[S_HEAD] = {0};
        t0 = s_now();
        for (int64_t seq = 0; seq < o->messages && !s_stopped(&ctl); seq++) {
            memcpy(body + 8, &seq, 8);
            while ((rc = hop_client_publish(admin, exchange, "", body, S_HEAD, NULL)) == HOP_EFULL)
                s_sleep(20 * 1000);
            if (rc != HOP_OK)
                s_fail(&ctl, rc, "publish: %s", s_errtext(admin, rc));
        }
        // One round trip: once status answers, the broker has routed the broadcast and
        // handed every delivery to ZeroMQ (it handles a connection's messages in order), and
        // a refused publish has surfaced. The silence that ends the wait counts from here,
        // so a busy broker or machine is not mistaken for lost messages.
        void *map = NULL;
        size_t size = 0;
        rc = s_stopped(&ctl) ? HOP_OK : hop_client_status(admin, &map, &size);
        free(map);
        if (rc != HOP_OK && rc != HOP_ETIMEOUT)
            s_fail(&ctl, rc, "after the broadcast: %s", s_errtext(admin, rc));
        s_progress_init(&progress);
        long last = -1;
        int64_t last_change = s_now();
        while (!s_stopped(&ctl)) {
            hop_fleet_stats(fleet, &st);
            int64_t now = s_now();
            if (st.deliveries != last) {
                last = st.deliveries;
                last_change = now;
            }
            if (st.complete >= st.opened || now - last_change > S_SILENCE_NS)
                break;
            if (s_interrupted)
                s_fail(&ctl, HOP_OK, "interrupted");
            double rate = s_progress_due(&progress, (double)st.deliveries);
            if (rate >= 0)
                s_progress_print(&progress, "%s: %s/%s deliveries, %s/s", label,
                                 s_num(st.deliveries), s_num(expected), s_num(rate));
            s_sleep(200 * 1000);
        }
        s_progress_end(&progress);
        s_sleep(S_DUP_WINDOW_NS); // a second copy would arrive about as fast as the first
    }
    t_close = s_now();
    hop_fleet_close(fleet);
    t_closed = s_now();
    hop_fleet_stats(fleet, &st);
    if (!(done = malloc((size_t)o->count * sizeof *done)))
        abort();
    for (long i = 0; t0 && i < o->count; i++) {
        int64_t t = hop_fleet_done_at(fleet, i);
        if (t)
            done[ndone++] = t - t0;
    }
    qsort(done, ndone, sizeof *done, s_cmp_i64);
    fleet_rc = hop_fleet_error(fleet, fleet_error, sizeof fleet_error); // or a later one
    if (fleet_error[0])
        s_note(&ctl, fleet_rc, "%s", fleet_error);
    // The broker gives freed memory back on its first idle tick (100 ms) after a request, but
    // its ZeroMQ I/O thread frees the buffers of the closed TCP connections some time after
    // the last close-ok: ask again until the RSS stops falling.
    for (int k = 0; k < 12; k++) {
        int64_t prev = rss_after;
        s_sleep(250 * S_MS);
        s_broker_status(admin, &rss_after, NULL);
        if (k > 0 && (rss_after < 0 || rss_after >= prev - prev / 100))
            break;
    }

report:
    if (admin)
        hop_client_delete_exchange(admin, exchange, 0);
    hop_client_destroy(&admin);
    hop_fleet_destroy(&fleet);
    long opened = st.opened;
    long lost = t0 ? expected - st.deliveries : 0;
    double first_ms = ndone ? (double)done[0] / 1e6 : 0;
    double median_ms = ndone ? (double)done[(ndone - 1) / 2] / 1e6 : 0;
    double all_ms = ndone ? (double)done[ndone - 1] / 1e6 : 0;
    double per_conn = opened > 0 && rss_open >= 0 && rss_before >= 0
                          ? (double)(rss_open - rss_before) / (double)opened
                          : -1;
    double client_kib = opened > 0 ? (double)(u2.rss_kib - u0.rss_kib) / (double)opened : 0;
    double fds_per = opened > 0 ? (double)(u2.fds - u0.fds) / (double)opened : 0;
    if (!o->json && t_opened) {
        printf("  opened     %s in %.2f s (%s/s) by %ld worker%s\n", s_num(opened),
               s_secs(t_opened - t_open), s_num(s_per_sec(opened, t_opened - t_open)), o->workers,
               o->workers > 1 ? "s" : "");
        if (t0 && !ndone)
            printf("  broadcast  none of %s connections got it\n", s_num(opened));
        else if (t0 && o->messages == 1)
            printf("  broadcast  %s of %s connections got it: all in %.2f ms (first %.2f, median "
                   "%.2f)\n",
                   s_num(st.complete), s_num(opened), all_ms, first_ms, median_ms);
        else if (t0)
            printf("  broadcast  %s of %s connections got all %s: all in %.2f ms (first %.2f, "
                   "median %.2f); %s deliveries/s\n",
                   s_num(st.complete), s_num(opened), s_num(o->messages), all_ms, first_ms,
                   median_ms, s_num(all_ms > 0 ? (double)st.deliveries / all_ms * 1e3 : 0));
        printf("  broker     RSS %s before, %s with %s open (%s connections), %s after closing\n",
               s_mib(rss_before), s_mib(rss_open), s_num(opened),
               conns_open < 0 ? "?" : s_num(conns_open), s_mib(rss_after));
        if (per_conn >= 0)
            printf("  broker     %.1f KiB RSS per connection%s\n", per_conn / 1024,
                   per_conn < 1024 ? " (memory freed by earlier runs was reused: measure on a "
                                     "freshly started hopperd)"
                                   : "");
        printf("  bench      %s fds open (limit %s), %.2f per connection; %.1f KiB RSS per "
               "connection; %ld threads; closed all in %.2f s\n",
               s_num(u2.fds), fd_limit < 0 ? "none" : s_num(fd_limit), fds_per, client_kib,
               u2.threads, s_secs(t_closed - t_close));
        printf("  lost %s, duplicated %s", s_num(lost), s_num(st.dup));
        if (st.bad)
            printf(", corrupt %s", s_num(st.bad));
        printf("\n");
    }
    s_jint(obj, "opened", opened);
    s_jreal(obj, "open_seconds", s_secs(t_opened - t_open));
    s_jreal(obj, "open_conns_s", s_per_sec(opened, t_opened - t_open));
    s_jint(obj, "received", st.deliveries);
    s_jint(obj, "complete", st.complete);
    s_jreal(obj, "broadcast_first_ms", first_ms);
    s_jreal(obj, "broadcast_median_ms", median_ms);
    s_jreal(obj, "broadcast_ms", all_ms);
    s_jint(obj, "broker_connections", conns_open);
    s_jint(obj, "broker_rss_before_bytes", rss_before);
    s_jint(obj, "broker_rss_open_bytes", rss_open);
    s_jint(obj, "broker_rss_after_bytes", rss_after);
    s_jreal(obj, "broker_rss_per_conn_bytes", per_conn);
    s_jint(obj, "client_fds", u2.fds);
    s_jint(obj, "client_fd_limit", fd_limit);
    s_jreal(obj, "client_fds_per_conn", fds_per);
    s_jreal(obj, "client_rss_per_conn_kib", client_kib);
    s_jint(obj, "client_threads", u2.threads);
    s_jreal(obj, "close_seconds", s_secs(t_closed - t_close));
    s_jint(obj, "lost", lost);
    s_jint(obj, "duplicated", st.dup);
    s_jint(obj, "corrupt", st.bad);
    if (t_opened) {
        s_result(o, label, "connections", (double)opened);
        s_result(o, label, "open_conns_s", s_per_sec(opened, t_opened - t_open));
        if (ndone)
            s_result(o, label, "broadcast_ms", all_ms);
        if (per_conn >= 0)
            s_result(o, label, "broker_rss_per_conn_kib", per_conn / 1024);
        s_result(o, label, "lost_msgs", (double)lost);
        s_result(o, label, "dup_msgs", (double)st.dup);
    }
    int code = lost || st.dup || st.bad ? S_EXIT_LOST : S_EXIT_OK;
    if (ctl.error[0]) {
        fprintf(stderr, "hopper bench connections: %s\n", ctl.error);
        s_jstr(obj, "error", ctl.error);
        code = s_interrupted ? S_EXIT_INTERRUPTED : usage_error ? S_EXIT_USAGE : ctl.exit_code;
    }
    json_object_set_new(obj, "ok", json_boolean(code == S_EXIT_OK));
    free(done);
    pthread_mutex_destroy(&ctl.lock);
    return code;
}

// ---------------------------------------------------------------------------------------
// Entry point

static int
s_run(int workload, const s_opts_t *o, const char *endpoint, int timeout_ms, json_t *obj)
{
    int code = workload == S_CONNECTIONS ? s_run_connections(o, endpoint, timeout_ms, obj)
                                         : s_run_flow(workload, o, endpoint, timeout_ms, obj);
    s_results_flush();
    return code;
}

static int
s_run_smoke(const s_opts_t *o, const char *endpoint, int timeout_ms, json_t *obj)
{
    static const struct {
        int workload;
        long count, subscribers, producers, consumers, ack_every;
        double duration;
    } runs[] = {
        {S_PUBSUB, 20000, 1, 1, 1, 1, 0},    {S_PUBSUB, 20000, 4, 1, 1, 1, 0},
        {S_QUEUE, 20000, 1, 1, 1, 1, 0},     {S_QUEUE, 20000, 1, 1, 1, 100, 0},
        {S_QUEUE, 20000, 1, 2, 2, 10, 0},    {S_LATENCY, 0, 1, 1, 1, 1, 1.0},
        {S_CONNECTIONS, 200, 1, 1, 1, 1, 0},
    };
    json_t *list = json_array();
    int code = S_EXIT_OK;
    for (size_t i = 0; i < sizeof runs / sizeof *runs && !s_interrupted; i++) {
        s_opts_t w;
        s_opts_default(&w, runs[i].workload);
        w.size = runs[i].workload == S_CONNECTIONS ? w.size : o->size;
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
    if (s_interrupted)
        code = S_EXIT_INTERRUPTED;
    s_jstr(obj, "workload", "smoke");
    json_object_set_new(obj, "ok", json_boolean(code == S_EXIT_OK));
    json_object_set_new(obj, "runs", list);
    if (!o->json)
        printf("smoke: %s\n", code == S_EXIT_OK ? "ok" : "FAILED");
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
        {"pubsub", S_PUBSUB, &s_help_pubsub},
        {"queue", S_QUEUE, &s_help_queue},
        {"latency", S_LATENCY, &s_help_latency},
        {"connections", S_CONNECTIONS, &s_help_connections},
        {"smoke", S_SMOKE, &s_help_smoke},
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
            return S_EXIT_OK;
        }
        if (word)
            fprintf(stderr, "hopper bench: unknown workload '%s'\n\n", word);
        fputs(s_help_top, stderr);
        return S_EXIT_USAGE;
    }
    s_opts_t o;
    s_opts_default(&o, workloads[w].workload);
    if (!help && s_opts_parse(&o, workloads[w].workload, word, argc - 2, argv + 2) != 0)
        return S_EXIT_USAGE;
    if (help || o.help) {
        fputs(*workloads[w].help, stdout);
        fputs(workloads[w].workload == S_SMOKE
                  ? "\nAlso: --json, --result-lines (see hopper bench --help).\n"
                  : "\nAlso: --json, --result-lines, --name LABEL (see hopper bench --help).\n",
              stdout);
        return S_EXIT_OK;
    }
    if (workloads[w].workload == S_QUEUE && o.prefetch > 0 && o.ack_every > o.prefetch) {
        fprintf(stderr,
                "hopper bench queue: --ack-every %ld exceeds --prefetch %ld: the consumer "
                "would wait forever for deliveries the broker holds back\n",
                o.ack_every, o.prefetch);
        return S_EXIT_USAGE;
    }
    if (workloads[w].workload == S_LATENCY && o.rate * o.duration > 1e8) {
        fprintf(stderr, "hopper bench latency: rate x duration is over 100,000,000 messages\n");
        return S_EXIT_USAGE;
    }

    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sa.sa_flags = SA_RESETHAND; // a second Ctrl-C kills at once
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    s_interrupted = 0;

    json_t *obj = json_object();
    int code = workloads[w].workload == S_SMOKE
                   ? s_run_smoke(&o, endpoint, timeout_ms, obj)
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
