// cli/bench_common.c - what the workloads of `hopper bench` share (see bench_common.h).
#include "bench_common.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

volatile sig_atomic_t hop_bench_interrupted;

// ---------------------------------------------------------------------------------------
// Small helpers: clocks, formatting, output, /proc

int64_t
hop_bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * HOP_BENCH_NS + ts.tv_nsec;
}

void
hop_bench_sleep_until(int64_t t)
{
    struct timespec ts = {.tv_sec = t / HOP_BENCH_NS, .tv_nsec = t % HOP_BENCH_NS};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

void
hop_bench_sleep(int64_t ns)
{
    hop_bench_sleep_until(hop_bench_now() + ns);
}

double
hop_bench_secs(int64_t ns)
{
    return (double)ns / 1e9;
}

double
hop_bench_per_sec(double count, int64_t ns)
{
    return ns > 0 ? count / hop_bench_secs(ns) : 0;
}

// Formats a number rounded to an integer with thousands separators. The result lives in a
// small ring of buffers: up to 8 may appear in one printf. Main thread only.
const char *
hop_bench_num(double value)
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

const char *
hop_bench_mib(int64_t bytes)
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

void
hop_bench_result(const hop_bench_opts_t *o, const char *label, const char *metric, double value)
{
    if (!o->result_lines || s_results_len >= sizeof s_results)
        return;
    int n = snprintf(s_results + s_results_len, sizeof s_results - s_results_len,
                     "RESULT hopper %s %s %.1f\n", label, metric, value);
    if (n > 0)
        s_results_len += (size_t)n;
}

void
hop_bench_results_flush(void)
{
    fputs(s_results, stdout);
    s_results[0] = '\0';
    s_results_len = 0;
}

void
hop_bench_jint(json_t *obj, const char *key, long long value)
{
    json_object_set_new(obj, key, json_integer(value));
}

void
hop_bench_jreal(json_t *obj, const char *key, double value)
{
    json_object_set_new(obj, key, json_real(round(value * 1000) / 1000));
}

void
hop_bench_jstr(json_t *obj, const char *key, const char *value)
{
    json_object_set_new(obj, key, json_string(value));
}

// A unique name per run, so that runs never share (or clean up) each other's resources.
void
hop_bench_unique(char *buf, size_t size, const char *prefix)
{
    static atomic_int counter;
    snprintf(buf, size, "%s.%ld.%d", prefix, (long)getpid(), atomic_fetch_add(&counter, 1) + 1);
}

void
hop_bench_progress_init(hop_bench_progress_t *p)
{
    memset(p, 0, sizeof *p);
    p->tty = isatty(STDERR_FILENO);
    p->start = p->last_t = hop_bench_now();
    p->next = p->start + 3 * HOP_BENCH_NS;
}

// Returns the rate of value since the last line when a line is due, else -1.
double
hop_bench_progress_due(hop_bench_progress_t *p, double value)
{
    int64_t now = hop_bench_now();
    if (now < p->next)
        return -1;
    p->next = now + (p->tty ? 1 : 5) * HOP_BENCH_NS;
    double rate = hop_bench_per_sec(value - p->last_val, now - p->last_t);
    p->last_t = now;
    p->last_val = value;
    return rate;
}

void
hop_bench_progress_print(hop_bench_progress_t *p, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    double elapsed = hop_bench_secs(hop_bench_now() - p->start);
    if (p->tty) {
        fprintf(stderr, "\r[%3.0fs] %s\033[K", elapsed, line);
        p->shown = true;
    } else {
        fprintf(stderr, "[%3.0fs] %s\n", elapsed, line);
    }
}

void
hop_bench_progress_end(hop_bench_progress_t *p)
{
    if (p->shown)
        fprintf(stderr, "\r\033[K");
    p->shown = false;
}

void
hop_bench_usage(hop_bench_usage_t *u)
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

void
hop_bench_ctl_init(hop_bench_ctl_t *ctl, const char *endpoint, int timeout_ms)
{
    memset(ctl, 0, sizeof *ctl);
    ctl->endpoint = endpoint;
    ctl->timeout_ms = timeout_ms;
    atomic_init(&ctl->stop, false);
    pthread_mutex_init(&ctl->lock, NULL);
}

bool
hop_bench_stopped(hop_bench_ctl_t *ctl)
{
    return atomic_load_explicit(&ctl->stop, memory_order_relaxed);
}

static void
s_vnote(hop_bench_ctl_t *ctl, int rc, const char *fmt, va_list ap)
{
    pthread_mutex_lock(&ctl->lock);
    if (ctl->error[0] == '\0') {
        vsnprintf(ctl->error, sizeof ctl->error, fmt, ap);
        ctl->exit_code = rc == HOP_ECONNECT || rc == HOP_ETIMEOUT || rc == HOP_ECLOSED
                             ? HOP_BENCH_EXIT_UNREACHABLE
                             : HOP_BENCH_EXIT_LOST;
    }
    pthread_mutex_unlock(&ctl->lock);
}

// Records the first error (rc: the SDK code, which picks the exit code); the run goes on.
void
hop_bench_note(hop_bench_ctl_t *ctl, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vnote(ctl, rc, fmt, ap);
    va_end(ap);
}

// Records the first error and stops the run.
void
hop_bench_fail(hop_bench_ctl_t *ctl, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vnote(ctl, rc, fmt, ap);
    va_end(ap);
    atomic_store(&ctl->stop, true);
}

const char *
hop_bench_errtext(hop_client_t *client, int rc)
{
    const char *text = client ? hop_client_error(client) : NULL;
    return text && *text ? text : hop_strerror(rc);
}

const char *
hop_bench_endpoint_text(const hop_bench_ctl_t *ctl)
{
    const char *env = getenv("HOPPER_BROKER");
    return ctl->endpoint ? ctl->endpoint : env && *env ? env : HOP_DEFAULT_ENDPOINT;
}

// Creates and connects a client named name. On failure returns NULL with *rc_p set and the
// reason in err.
static hop_client_t *
s_client_open(const hop_bench_ctl_t *ctl, const char *name, int *rc_p, char *err, size_t err_size)
{
    hop_client_t *client = hop_client_new();
    if (ctl->timeout_ms > 0)
        hop_client_set_timeout(client, ctl->timeout_ms);
    // A lost connection must fail the run, not be papered over by a reconnect.
    hop_client_set_reconnect(client, false);
    hop_client_set_name(client, name);
    int rc = hop_client_connect(client, ctl->endpoint);
    if (rc != HOP_OK) {
        snprintf(err, err_size, "%s: cannot connect to %s: %s", name, hop_bench_endpoint_text(ctl),
                 hop_bench_errtext(client, rc));
        hop_client_destroy(&client);
    }
    *rc_p = rc;
    return client;
}

// As s_client_open, but a failure fails the run.
hop_client_t *
hop_bench_client_open_or_fail(hop_bench_ctl_t *ctl, const char *name)
{
    char err[400];
    int rc;
    hop_client_t *client = s_client_open(ctl, name, &rc, err, sizeof err);
    if (!client)
        hop_bench_fail(ctl, rc, "%s", err);
    return client;
}

bool
hop_bench_key_is(const msgpack_object *key, const char *name)
{
    size_t len = strlen(name);
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == len &&
           memcmp(key->via.str.ptr, name, len) == 0;
}

bool
hop_bench_status_each(hop_client_t *admin, hop_bench_status_fn *fn, void *arg)
{
    void *map = NULL;
    size_t size = 0;
    if (!admin || hop_client_status(admin, &map, &size) != HOP_OK)
        return false;
    msgpack_unpacked msg;
    msgpack_unpacked_init(&msg);
    bool ok = msgpack_unpack_next(&msg, map, size, NULL) == MSGPACK_UNPACK_SUCCESS &&
              msg.data.type == MSGPACK_OBJECT_MAP;
    for (uint32_t i = 0; ok && i < msg.data.via.map.size; i++)
        fn(&msg.data.via.map.ptr[i].key, &msg.data.via.map.ptr[i].val, arg);
    msgpack_unpacked_destroy(&msg);
    free(map);
    return ok;
}

typedef struct {
    int64_t *rss_p, *connections_p;
} s_status_t;

static void
s_status_one(const msgpack_object *k, const msgpack_object *v, void *arg)
{
    s_status_t *st = arg;
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return;
    // 0 is no RSS but a broker that could not read it (out of file descriptors).
    if (hop_bench_key_is(k, "rss_bytes") && v->via.u64 > 0)
        *st->rss_p = (int64_t)v->via.u64;
    if (st->connections_p && hop_bench_key_is(k, "connections"))
        *st->connections_p = (int64_t)v->via.u64;
}

// Reads rss_bytes and connections from the broker's status; -1 when unknown.
void
hop_bench_broker_status(hop_client_t *admin, int64_t *rss_p, int64_t *connections_p)
{
    *rss_p = -1;
    if (connections_p)
        *connections_p = -1;
    s_status_t st = {rss_p, connections_p};
    hop_bench_status_each(admin, s_status_one, &st);
}

// ---------------------------------------------------------------------------------------
// Sorting

int
hop_bench_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}
