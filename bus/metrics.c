// bus/metrics.c - the Prometheus endpoint (see metrics.h for why MHD runs on the reactor).
#include "metrics.h"
#include "broker_internal.h"
#include "config.h"
#include "util.h"

#include <arpa/inet.h>
#include <assert.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_CONNECTION_LIMIT 16 // scrapers are few; more are refused at accept
#define S_IDLE_TIMEOUT_S   10 // an idle or stuck HTTP client is dropped after this

struct hop_metrics {
    hop_broker_t *broker;      // borrowed; read only from the reactor thread
    struct MHD_Daemon *daemon; // no internal thread: MHD_run from hop_metrics_run
    int fd;                    // MHD's epoll descriptor, in the reactor's poll set
    uint64_t due;              // monotonic ms by which MHD must run again; 0: no deadline
    char url[96];              // http://HOST:PORT/metrics
    char mhd_error[256];       // MHD's last log line (why start failed)
};

// The exposition text ------------------------------------------------------------------------

typedef struct {
    char *data;
    size_t len, cap;
} s_buf_t;

static void
s_reserve(s_buf_t *b, size_t more)
{
    if (b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->len + more + 1)
        cap *= 2;
    b->data = hop_realloc(b->data, cap);
    b->cap = cap;
}

static void s_printf(s_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
s_printf(s_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    s_reserve(b, (size_t)n);
    if ((size_t)n < sizeof small) {
        memcpy(b->data + b->len, small, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

// A label value, escaped as the exposition format says: backslash, quote and newline.
static void
s_label(s_buf_t *b, const char *name, const char *value, size_t len)
{
    s_reserve(b, strlen(name) + 2 * len + 4);
    b->len += (size_t)sprintf(b->data + b->len, "%s=\"", name);
    for (size_t i = 0; i < len; i++) {
        char c = value[i];
        if (c == '\\' || c == '"' || c == '\n') {
            b->data[b->len++] = '\\';
            c = c == '\n' ? 'n' : c;
        }
        b->data[b->len++] = c;
    }
    b->data[b->len++] = '"';
    b->data[b->len] = '\0';
}

static void
s_family(s_buf_t *b, const char *name, const char *type, const char *help)
{
    s_printf(b, "# HELP hopper_%s %s\n# TYPE hopper_%s %s\n", name, help, name, type);
}

static void
s_uint(s_buf_t *b, const char *name, const char *type, const char *help, uint64_t value)
{
    s_family(b, name, type, help);
    s_printf(b, "hopper_%s %llu\n", name, (unsigned long long)value);
}

static void
s_seconds(s_buf_t *b, const char *name, const char *help, uint64_t micros)
{
    s_family(b, name, "gauge", help);
    s_printf(b, "hopper_%s %llu.%06llu\n", name, (unsigned long long)(micros / 1000000),
             (unsigned long long)(micros % 1000000));
}

// value (in units of per_second, which divides 1000000) in seconds, trailing zeros trimmed:
// "0.00025", "1", "0.5".
static void
s_decimal(char *out, size_t size, uint64_t value, uint64_t per_second)
{
    uint64_t frac = (value % per_second) * (1000000 / per_second);
    int n = snprintf(out, size, "%llu.%06llu", (unsigned long long)(value / per_second),
                     (unsigned long long)frac);
    while (n > 0 && out[n - 1] == '0')
        out[--n] = '\0';
    if (n > 0 && out[n - 1] == '.')
        out[--n] = '\0';
}

// A histogram family: cumulative _bucket{le} lines, +Inf last, then _sum and _count.
static void
s_histogram(s_buf_t *b, const char *name, const char *help, const hop_histogram_snapshot_t *h)
{
    char le[32];
    s_family(b, name, "histogram", help);
    for (uint32_t i = 0; i <= h->n; i++) {
        if (i < h->n)
            s_decimal(le, sizeof le, h->le[i], h->per_second);
        else
            snprintf(le, sizeof le, "+Inf");
        s_printf(b, "hopper_%s_bucket{le=\"%s\"} %llu\n", name, le,
                 (unsigned long long)h->cumulative[i]);
    }
    s_decimal(le, sizeof le, h->sum, h->per_second);
    s_printf(b, "hopper_%s_sum %s\nhopper_%s_count %llu\n", name, le, name,
             (unsigned long long)h->count);
}

// Per-queue families, in the order they are written; the value is picked by index.
static const struct {
    const char *name, *type, *help;
} s_queue_families[] = {
    {"queue_messages_ready", "gauge", "Messages ready for delivery."},
    {"queue_messages_unacked", "gauge", "Messages delivered and not yet acknowledged."},
    {"queue_messages_delayed", "gauge", "Messages waiting for a retry delay."},
    {"queue_bytes_ready", "gauge", "Body bytes of the ready messages."},
    {"queue_consumers", "gauge", "Consumers of the queue."},
    {"queue_oldest_ready_seconds", "gauge", "Age of the oldest ready message."},
    {"queue_published_total", "counter", "Messages stored in the queue."},
    {"queue_delivered_total", "counter", "Deliveries made from the queue."},
    {"queue_acked_total", "counter", "Deliveries acknowledged."},
    {"queue_dead_lettered_total", "counter", "Messages sent to the dead-letter exchange."},
    {"queue_dropped_total", "counter",
     "Messages dropped (expired, over length or rejected) with no dead-letter exchange."},
    {"queue_expired_total", "counter", "Messages that expired in the queue."},
    {"queue_rejected_publishes_total", "counter", "Publishes refused by a full queue."},
    {"queue_publish_rate", "gauge", "Messages stored per second, smoothed over about 2 s."},
    {"queue_deliver_rate", "gauge", "Deliveries per second, smoothed over about 2 s."},
    {"queue_ack_rate", "gauge", "Acknowledgements per second, smoothed over about 2 s."},
};

static void
s_queue_value(s_buf_t *b, hop_broker_t *broker, const hop_queue_t *q, size_t family)
{
    uint64_t v = 0;
    switch (family) {
    case 0:
        v = q->ready_count;
        break;
    case 1:
        v = q->unacked.size;
        break;
    case 2:
        v = q->delayed.size;
        break;
    case 3:
        v = q->ready_bytes;
        break;
    case 4:
        v = q->consumer_count;
        break;
    case 5: {
        hop_entry_t *oldest = hop_queue_oldest((hop_queue_t *)q);
        uint64_t ms = oldest && broker->now > oldest->at ? broker->now - oldest->at : 0;
        s_printf(b, " %llu.%03llu\n", (unsigned long long)(ms / 1000),
                 (unsigned long long)(ms % 1000));
        return;
    }
    case 6:
        v = q->published;
        break;
    case 7:
        v = q->delivered;
        break;
    case 8:
        v = q->acked;
        break;
    case 9:
        v = q->dead_lettered;
        break;
    case 10:
        v = q->dropped;
        break;
    case 11:
        v = q->expired;
        break;
    case 12:
        v = q->rejected_publishes;
        break;
    default: {
        // The rates `list queues` shows (bus/timers.c): families 13, 14, 15.
        double r = family == 13 ? q->publish_rate : family == 14 ? q->deliver_rate : q->ack_rate;
        s_printf(b, " %.3f\n", r);
        return;
    }
    }
    s_printf(b, " %llu\n", (unsigned long long)v);
}

static void
s_queues(s_buf_t *b, hop_broker_t *broker)
{
    for (size_t f = 0; f < sizeof s_queue_families / sizeof s_queue_families[0]; f++) {
        s_family(b, s_queue_families[f].name, s_queue_families[f].type, s_queue_families[f].help);
        size_t cursor = 0;
        void *value;
        while (hop_map_next(broker->queues, &cursor, NULL, NULL, &value)) {
            const hop_queue_t *q = value;
            s_printf(b, "hopper_%s{", s_queue_families[f].name);
            s_label(b, "queue", q->name, q->name_len);
            s_printf(b, "}");
            s_queue_value(b, broker, q, f);
        }
    }
}

static void
s_exchanges(s_buf_t *b, hop_broker_t *broker)
{
    for (int f = 0; f < 2; f++) {
        const char *name = f ? "exchange_unroutable_total" : "exchange_published_total";
        s_family(b, name, "counter",
                 f ? "Publishes to the exchange that matched no queue."
                   : "Messages published to the exchange.");
        size_t cursor = 0;
        void *value;
        while (hop_map_next(broker->exchanges, &cursor, NULL, NULL, &value)) {
            const hop_xchg_t *x = value;
            s_printf(b, "hopper_%s{", name);
            s_label(b, "exchange", x->name, x->name_len);
            s_printf(b, "} %llu\n", (unsigned long long)(f ? x->unroutable : x->published));
        }
    }
}

// The store's figures, as `status` reports them (hop_durable_status writes msgpack).
static void
s_store(s_buf_t *b, hop_broker_t *broker)
{
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_STATUS_OK);
    hop_durable_status(broker, &enc);
    size_t size;
    const void *data = hop_enc_end(&enc, &size);
    hop_mp_t mp;
    hop_mp_init(&mp, data, size);
    uint32_t count;
    struct {
        const char *key, *name, *type, *help;
        bool micros; // a duration in µs, written in seconds
    } fields[] = {
        {"disk_bytes", "store_disk_bytes", "gauge", "Bytes of the store's segment files.", false},
        {"disk_live_bytes", "store_live_bytes", "gauge", "Bytes of live records in the store.",
         false},
        {"segments", "store_segments", "gauge", "Segment files of the store.", false},
        {"fsyncs", "store_fsyncs_total", "counter", "Fsyncs done by the store's writer.", false},
        {"last_fsync_us", "store_last_fsync_seconds", "gauge", "Duration of the last fsync.", true},
        {"max_fsync_us", "store_max_fsync_seconds", "gauge", "Longest fsync since start.", true},
        {"confirms_waiting_for_disk", "confirms_waiting_for_disk", "gauge",
         "Publisher confirms held until their records are durable.", false},
        {"recovered_messages", "recovered_messages", "gauge",
         "Messages recovered from the store at start.", false},
    };
    if (hop_mp_map(&mp, &count) == 0) {
        for (uint32_t i = 0; i < count; i++) {
            const char *key;
            uint32_t key_len;
            uint64_t v;
            if (hop_mp_str(&mp, &key, &key_len) < 0)
                break;
            if (key_len == 11 && memcmp(key, "store_error", 11) == 0) {
                const char *text;
                uint32_t len;
                if (hop_mp_str(&mp, &text, &len) == 0)
                    s_uint(b, "store_error", "gauge",
                           "1 while the store cannot write (persistent publishes refused).",
                           len != 0);
                continue;
            }
            if (hop_mp_peek(&mp) != MSGPACK_OBJECT_POSITIVE_INTEGER || hop_mp_uint(&mp, &v) < 0) {
                if (hop_mp_skip(&mp) < 0)
                    break;
                continue;
            }
            for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
                if (strlen(fields[f].key) != key_len || memcmp(fields[f].key, key, key_len))
                    continue;
                if (fields[f].micros)
                    s_seconds(b, fields[f].name, fields[f].help, v);
                else
                    s_uint(b, fields[f].name, fields[f].type, fields[f].help, v);
            }
        }
    }
    hop_enc_fini(&enc);
}

char *
hop_metrics_render(hop_broker_t *broker, size_t *size)
{
    assert(broker);
    assert(size);
    s_buf_t b = {0};
    s_reserve(&b, 0);
    b.data[0] = '\0';
    uint64_t ready = 0, unacked = 0, delayed = 0, consumers = 0, paused = 0;
    size_t cursor = 0;
    void *value;
    while (hop_map_next(broker->queues, &cursor, NULL, NULL, &value)) {
        const hop_queue_t *q = value;
        ready += q->ready_count;
        unacked += q->unacked.size;
        delayed += q->delayed.size;
        consumers += q->consumer_count;
    }
    for (hop_conn_t *c = broker->blocked_head; c; c = c->blocked_next)
        paused++;
    s_family(&b, "build_info", "gauge", "Always 1; the labels name the build.");
    s_printf(&b, "hopper_build_info{version=\"%s\",protocol=\"%d\"} 1\n", HOP_VERSION,
             HOP_PROTOCOL_VERSION);
    uint64_t uptime = broker->now - broker->started_at;
    s_seconds(&b, "uptime_seconds", "Time since the broker started.", uptime * 1000);
    s_uint(&b, "rss_bytes", "gauge", "Resident memory of hopperd.", hop_rss_bytes());
    s_uint(&b, "connections", "gauge", "Client connections.", hop_map_size(broker->conns));
    s_uint(&b, "consumers", "gauge", "Consumers on every queue.", consumers);
    s_uint(&b, "queues", "gauge", "Queues.", hop_map_size(broker->queues));
    s_uint(&b, "exchanges", "gauge", "Exchanges.", hop_map_size(broker->exchanges));
    s_uint(&b, "messages_ready", "gauge", "Ready messages in every queue.", ready);
    s_uint(&b, "messages_unacked", "gauge", "Unacknowledged messages in every queue.", unacked);
    s_uint(&b, "messages_delayed", "gauge", "Delayed messages in every queue.", delayed);
    s_uint(&b, "paused_publishers", "gauge", "Connections asked to pause publishing.", paused);
    s_uint(&b, "published_total", "counter", "Messages published.", broker->published);
    s_uint(&b, "delivered_total", "counter", "Deliveries to consumers and get.", broker->delivered);
    s_uint(&b, "acked_total", "counter", "Deliveries acknowledged.", broker->acked);
    s_uint(&b, "unroutable_total", "counter", "Publishes that matched no queue.",
           broker->unroutable);
    s_uint(&b, "returned_total", "counter", "Mandatory publishes returned to the publisher.",
           broker->returned);
    s_uint(&b, "confirmed_total", "counter", "Publishes confirmed to the publisher.",
           broker->confirmed);
    s_uint(&b, "rejected_publishes_total", "counter", "Publishes refused (negative confirm).",
           broker->rejected_publishes);
    s_uint(&b, "dead_lettered_total", "counter", "Messages dead-lettered.", broker->dead_lettered);
    s_uint(&b, "dropped_total", "counter", "Messages dropped without a dead-letter exchange.",
           broker->dropped);
    s_uint(&b, "expired_total", "counter", "Messages expired.", broker->expired);
    s_uint(&b, "revoked_total", "counter", "Deliveries revoked past their ack deadline.",
           broker->revoked);
    s_uint(&b, "fd_limit", "gauge", "Open-file limit in force.", broker->fd_limit);
    s_uint(&b, "accept_failed_total", "counter",
           "Connections that could not be accepted (out of file descriptors).",
           broker->accept_failed);
    hop_histogram_snapshot_t h;
    hop_histogram_read(&broker->deliver_wait, &hop_histogram_wait_ms, &h);
    s_histogram(&b, "publish_to_deliver_seconds",
                "Time from entering a queue's ready list to the first delivery (ms clock).", &h);
    s_store(&b, broker);
    if (hop_durable_fsync_histogram(broker, &h))
        s_histogram(&b, "fsync_duration_seconds", "Durations of the store writer's fsyncs.", &h);
    s_queues(&b, broker);
    s_exchanges(&b, broker);
    *size = b.len;
    return b.data;
}

// HTTP -------------------------------------------------------------------------------------

static enum MHD_Result
s_reply(struct MHD_Connection *connection, unsigned status, const char *text)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(response, "Content-Type", "text/plain; charset=utf-8");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(response, "Allow", "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return rc;
}

static enum MHD_Result
s_request(void *cls, struct MHD_Connection *connection, const char *url, const char *method,
          const char *version, const char *upload, size_t *upload_size, void **state)
{
    (void)version, (void)upload, (void)state;
    hop_metrics_t *self = cls;
    bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
    if (!get && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        *upload_size = 0; // a body is not read: the reply goes out at once
        return s_reply(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET /metrics\n");
    }
    if (strcmp(url, "/metrics") != 0)
        return s_reply(connection, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n");
    size_t size;
    char *text = hop_metrics_render(self->broker, &size);
    struct MHD_Response *response =
        MHD_create_response_from_buffer_with_free_callback(size, text, free);
    MHD_add_response_header(response, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    enum MHD_Result rc = MHD_queue_response(connection, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    return rc;
}

static void
s_mhd_log(void *cls, const char *fmt, va_list ap)
{
    hop_metrics_t *self = cls;
    vsnprintf(self->mhd_error, sizeof self->mhd_error, fmt, ap);
    size_t len = strlen(self->mhd_error);
    while (len && (self->mhd_error[len - 1] == '\n' || self->mhd_error[len - 1] == '.'))
        self->mhd_error[--len] = '\0';
    hop_log(HOP_DEBUG, "metrics", "libmicrohttpd: %s", self->mhd_error);
}

hop_metrics_t *
hop_metrics_new(hop_broker_t *broker, const char *address, char *err, size_t err_size)
{
    assert(broker);
    assert(address);
    struct sockaddr_storage addr;
    socklen_t addr_len;
    bool loopback;
    if (hop_config_address(address, &addr, &addr_len, &loopback, err, err_size) < 0)
        return NULL;
    hop_metrics_t *self = hop_calloc(1, sizeof *self);
    self->broker = broker;
    self->fd = -1;
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG; // no MHD_USE_INTERNAL_POLLING_THREAD
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    self->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, s_request, self, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)S_CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)S_IDLE_TIMEOUT_S, MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, self, MHD_OPTION_END);
    if (!self->daemon) {
        snprintf(err, err_size, "cannot serve metrics on %s: %s", address,
                 self->mhd_error[0] ? self->mhd_error : "libmicrohttpd failed to start");
        hop_metrics_destroy(&self);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    self->fd = info ? info->epoll_fd : -1;
    info = MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = info ? info->port : 0;
    char host[INET6_ADDRSTRLEN] = "?";
    if (addr.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr)->sin6_addr, host, sizeof host);
        snprintf(self->url, sizeof self->url, "http://[%s]:%u/metrics", host, port);
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&addr)->sin_addr, host, sizeof host);
        snprintf(self->url, sizeof self->url, "http://%s:%u/metrics", host, port);
    }
    if (self->fd < 0) {
        snprintf(err, err_size, "cannot serve metrics on %s: no epoll descriptor", address);
        hop_metrics_destroy(&self);
        return NULL;
    }
    if (!loopback)
        hop_log(HOP_WARN, "metrics",
                "serving metrics on a non-loopback address url=%s: anyone who can reach it "
                "sees queue names and counts (there is no authentication); firewall it or "
                "use 127.0.0.1",
                self->url);
    return self;
}

void
hop_metrics_destroy(hop_metrics_t **self_p)
{
    assert(self_p);
    hop_metrics_t *self = *self_p;
    if (!self)
        return;
    if (self->daemon)
        MHD_stop_daemon(self->daemon);
    free(self);
    *self_p = NULL;
}

const char *
hop_metrics_url(const hop_metrics_t *self)
{
    assert(self);
    return self->url;
}

int
hop_metrics_fd(const hop_metrics_t *self)
{
    assert(self);
    return self->fd;
}

long
hop_metrics_wait(hop_metrics_t *self, long wait_ms)
{
    assert(self);
    MHD_UNSIGNED_LONG_LONG timeout;
    if (MHD_get_timeout(self->daemon, &timeout) != MHD_YES) {
        self->due = 0;
        return wait_ms;
    }
    // MHD says 0 when it has work queued already (data left to send on a writable socket).
    self->due = hop_now_ms() + timeout;
    return timeout < (MHD_UNSIGNED_LONG_LONG)wait_ms ? (long)timeout : wait_ms;
}

void
hop_metrics_run(hop_metrics_t *self, bool readable)
{
    assert(self);
    if (readable || (self->due && hop_now_ms() >= self->due)) {
        self->due = 0;
        MHD_run(self->daemon);
    }
}
