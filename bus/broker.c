// bus/broker.c - the reactor: one thread, one ROUTER socket, never blocks.
//
// Each loop turn waits on the socket (zmq_poll, bounded by the next tick), drains up to a
// batch of messages without blocking, handles each, and on every tick checks liveness
// (heartbeats out, silent peers closed) and retries stalled consumers. Connections found dead
// while handling are closed at the end of the turn, never in the middle of a dispatch.
#include "broker_internal.h"
#include "metrics.h"
#include "util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define TICK_MS     100  // liveness and stall-retry period
#define DRAIN_BATCH 4096 // messages handled per turn before checking timers again
#define HB_MIN      100
#define HB_MAX      60000
#define HB_MISSES   5 // a peer silent for this many intervals is dead
// Messages kept for a peer whose pipe is full, at most: a client that stops reading while it
// keeps asking (a publisher with confirms that never reads them) is closed beyond it, as a
// slow consumer is in NATS, instead of growing the broker without end.
#define BACKLOG_MAX 100000
// While a consumer is stalled on a full pipe or a backlog waits, the loop looks again after
// this long (ms): ZeroMQ says nothing when a peer's pipe drains, and a tick (100 ms) is long
// enough for a fast consumer to sit idle. The interval doubles, up to a tick, while retries
// move nothing (a stopped subscriber must not cost a walk of every queue every 2 ms).
#define RETRY_MS 2

static volatile sig_atomic_t s_interrupted;

static void
s_on_signal(int sig)
{
    (void)sig;
    s_interrupted = 1;
}

// Creates every directory of path, like mkdir -p.
static int
s_mkdirs(const char *path)
{
    char buf[4096];
    if (strlen(path) >= sizeof buf)
        return -1;
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

// Takes an exclusive lock on DIR/LOCK so two brokers never share a data directory.
static int
s_lock_data_dir(hop_broker_t *self, char *err, size_t err_size)
{
    if (s_mkdirs(self->data_dir) < 0) {
        snprintf(err, err_size, "cannot create data directory %s: %s", self->data_dir,
                 strerror(errno));
        return -1;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/LOCK", self->data_dir);
    self->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (self->lock_fd < 0) {
        snprintf(err, err_size, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(self->lock_fd, F_SETLK, &fl) < 0) {
        snprintf(err, err_size,
                 "data directory %s is in use by another hopperd (lock %s is held); stop it "
                 "or pass --data-dir",
                 self->data_dir, path);
        return -1;
    }
    return 0;
}

// Raises the open-file limit to the hard limit: every connection is a file descriptor.
// Returns the limit in force.
static uint64_t
s_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            hop_log(HOP_WARN, "broker", "cannot raise open-file limit: %s", strerror(errno));
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    if (rl.rlim_cur < 16384)
        hop_log(HOP_WARN, "broker",
                "open-file limit is %llu (already raised to the hard limit): at most about that "
                "many connections; raise the hard limit (LimitNOFILE= in the service, "
                "/etc/security/limits.conf, or ulimit -Hn as root) and restart",
                (unsigned long long)rl.rlim_cur);
    else
        hop_log(HOP_INFO, "broker", "open-file limit %llu (about that many connections)",
                (unsigned long long)rl.rlim_cur);
    return rl.rlim_cur;
}

// Watches the listening socket for accepts that fail (out of file descriptors): libzmq keeps
// retrying them silently, so the broker must say it. Returns the PAIR socket to poll, or NULL.
static void *
s_accept_monitor(hop_broker_t *self)
{
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://hopperd-monitor-%p", (void *)self);
    if (zmq_socket_monitor(self->router, endpoint, ZMQ_EVENT_ACCEPT_FAILED) < 0)
        return NULL;
    void *pair = zmq_socket(self->ctx, ZMQ_PAIR);
    if (pair && zmq_connect(pair, endpoint) == 0)
        return pair;
    if (pair)
        zmq_close(pair);
    return NULL;
}

// Reads one monitor event: a frame with the event (u16) and its value (errno, i32), then the
// address.
static void
s_accept_event(hop_broker_t *self)
{
    zmq_msg_t event, address;
    zmq_msg_init(&event);
    zmq_msg_init(&address);
    if (zmq_msg_recv(&event, self->monitor, ZMQ_DONTWAIT) < 0 ||
        zmq_msg_recv(&address, self->monitor, 0) < 0 || zmq_msg_size(&event) < 6) {
        zmq_msg_close(&event);
        zmq_msg_close(&address);
        return;
    }
    int32_t err;
    memcpy(&err, (const uint8_t *)zmq_msg_data(&event) + 2, sizeof err);
    zmq_msg_close(&event);
    zmq_msg_close(&address);
    self->accept_failed++;
    if (self->now - self->accept_logged_at < 10000 && self->accept_logged_at)
        return;
    self->accept_logged_at = self->now;
    hop_log(HOP_ERROR, "broker",
            "cannot accept connections: %s (connections=%zu fd_limit=%llu failed_accepts=%llu); "
            "new clients hang until descriptors free up: raise the hard open-file limit "
            "(LimitNOFILE=, limits.conf) and restart",
            strerror(err), hop_map_size(self->conns), (unsigned long long)self->fd_limit,
            (unsigned long long)self->accept_failed);
}

hop_broker_t *
hop_broker_new(const hop_broker_config_t *config, char *err, size_t err_size)
{
    assert(config);
    // Handlers first: a SIGTERM that arrives as soon as the broker says it is listening must
    // still shut it down cleanly, not kill it.
    struct sigaction sa = {.sa_handler = s_on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    hop_broker_t *self = hop_calloc(1, sizeof *self);
    self->config = *config;
    if (!self->config.bind)
        self->config.bind = HOP_DEFAULT_BIND;
    if (!self->config.heartbeat_ms)
        self->config.heartbeat_ms = HOP_DEFAULT_HEARTBEAT;
    if (!self->config.max_message)
        self->config.max_message = HOP_DEFAULT_MAX_MESSAGE;
    if (!self->config.sndhwm)
        self->config.sndhwm = HOP_DEFAULT_SNDHWM;
    if (!self->config.ack_timeout_ms)
        self->config.ack_timeout_ms = HOP_DEFAULT_ACK_TIMEOUT;
    // Flow watermarks: UINT64_MAX from the command line means "off" (0 means "default").
    if (!self->config.flow_messages)
        self->config.flow_messages = HOP_DEFAULT_FLOW_MESSAGES;
    if (!self->config.flow_bytes)
        self->config.flow_bytes = HOP_DEFAULT_FLOW_BYTES;
    if (self->config.flow_messages == UINT64_MAX)
        self->config.flow_messages = 0;
    if (self->config.flow_bytes == UINT64_MAX)
        self->config.flow_bytes = 0;
    self->data_dir =
        hop_strndup(config->data_dir ? config->data_dir : HOP_DEFAULT_DATA_DIR,
                    strlen(config->data_dir ? config->data_dir : HOP_DEFAULT_DATA_DIR));
    self->lock_fd = -1;
    self->now = self->started_at = hop_now_ms();
    hop_enc_init(&self->enc);
    hop_enc_init(&self->batch_enc);
    hop_route_init(&self->route);
    self->conns = hop_map_new();
    self->queues = hop_map_new();
    self->exchanges = hop_map_new();
    hop_topology_init(self);

    if (s_lock_data_dir(self, err, err_size) < 0 || hop_durable_open(self, err, err_size) < 0) {
        hop_broker_destroy(&self);
        return NULL;
    }
    self->fd_limit = s_raise_fd_limit();
    self->ctx = zmq_ctx_new();
    self->router = zmq_socket(self->ctx, ZMQ_ROUTER);
    // Mandatory routing: a send to a full or vanished peer fails instead of being dropped
    // silently, so a delivery is never lost in the socket.
    int one = 1, zero = 0, sndhwm = self->config.sndhwm, rcvhwm = 100;
    zmq_setsockopt(self->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(self->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(self->router, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm);
    zmq_setsockopt(self->router, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
    // Port 0 means "any free port", as for any other server.
    char bind[512];
    snprintf(bind, sizeof bind, "%s", self->config.bind);
    size_t blen = strlen(bind);
    if (blen > 2 && strcmp(bind + blen - 2, ":0") == 0)
        strcpy(bind + blen - 1, "*");
    if (zmq_bind(self->router, bind) < 0) {
        snprintf(err, err_size, "cannot listen on %s: %s%s", self->config.bind,
                 zmq_strerror(zmq_errno()),
                 zmq_errno() == EADDRINUSE ? " (another hopperd running? pass --bind)" : "");
        hop_broker_destroy(&self);
        return NULL;
    }
    size_t len = sizeof self->endpoint;
    zmq_getsockopt(self->router, ZMQ_LAST_ENDPOINT, self->endpoint, &len);
    self->monitor = s_accept_monitor(self);
    if (self->config.metrics) {
        self->metrics = hop_metrics_new(self, self->config.metrics, err, err_size);
        if (!self->metrics) {
            hop_broker_destroy(&self);
            return NULL;
        }
    }
    return self;
}

static void s_conn_close(hop_broker_t *self, hop_conn_t *conn, const char *why);

void
hop_broker_destroy(hop_broker_t **self_p)
{
    assert(self_p);
    hop_broker_t *self = *self_p;
    if (!self)
        return;
    // Nothing the shutdown itself does (consumers cancelled, auto-delete queues going) is a
    // change to remember: close the store first.
    hop_durable_close(self);
    hop_metrics_destroy(&self->metrics); // no scrape sees the broker half torn down
    // Close every connection first: that settles their entries and consumers.
    while (hop_map_size(self->conns)) {
        size_t cursor = 0;
        void *value;
        hop_map_next(self->conns, &cursor, NULL, NULL, &value);
        s_conn_close(self, value, NULL);
    }
    hop_topology_fini(self);
    hop_map_destroy(&self->conns);
    hop_map_destroy(&self->queues);
    hop_map_destroy(&self->exchanges);
    hop_route_fini(&self->route);
    hop_enc_fini(&self->enc);
    hop_enc_fini(&self->batch_enc);
    if (self->monitor) {
        zmq_socket_monitor(self->router, NULL, 0); // stops the monitor
        zmq_close(self->monitor);
    }
    if (self->router)
        zmq_close(self->router);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    if (self->lock_fd >= 0)
        close(self->lock_fd);
    hop_records_trim();
    free(self->data_dir);
    free(self);
    *self_p = NULL;
}

const char *
hop_broker_endpoint(const hop_broker_t *self)
{
    return self->endpoint;
}

const char *
hop_broker_metrics_url(const hop_broker_t *self)
{
    return self->metrics ? hop_metrics_url(self->metrics) : NULL;
}

// Sending ---------------------------------------------------------------------------------

void
hop_broker_reply(hop_broker_t *self, hop_cmd_t cmd, uint64_t id)
{
    hop_enc_begin(&self->enc, cmd);
    hop_enc_uint(&self->enc, "id", id);
}

int
hop_broker_send_raw(hop_broker_t *self, const void *peer, size_t peer_len, const void *header,
                    size_t header_size, const hop_msg_t *msg, int *err)
{
    bool has_body = msg && msg->body_len;
    if (zmq_send(self->router, peer, peer_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        *err = zmq_errno();
        return -1;
    }
    // Once the first frame is accepted the rest of the message always is.
    zmq_send(self->router, header, header_size, (has_body ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
    zmq_msg_t *own = msg && msg->frames ? &msg->frames->body : NULL;
    if (has_body && own && zmq_msg_size(own)) {
        zmq_msg_t copy; // shares the body's buffer: no copy of the bytes
        zmq_msg_init(&copy);
        zmq_msg_copy(&copy, own);
        if (zmq_msg_send(&copy, self->router, ZMQ_DONTWAIT) < 0)
            zmq_msg_close(&copy);
    } else if (has_body)
        zmq_send(self->router, msg->body, msg->body_len, ZMQ_DONTWAIT);
    return 0;
}

static int
s_send_to(hop_broker_t *self, const void *peer, size_t peer_len, const hop_msg_t *msg, int *err)
{
    size_t size;
    const void *header = hop_enc_end(&self->enc, &size);
    return hop_broker_send_raw(self, peer, peer_len, header, size, msg, err);
}

// Keeps header (and msg's body) at the end of conn's backlog.
static void
s_backlog_add(hop_broker_t *self, hop_conn_t *conn, const void *header, size_t size,
              const hop_msg_t *msg)
{
    if (conn->backlog_count >= BACKLOG_MAX) {
        hop_log(HOP_WARN, "conn",
                "peer not reading conn=%s name=%s backlog=%zu: closing, its unacked messages "
                "return to their queues",
                conn->label, conn->name ? conn->name : "", conn->backlog_count);
        hop_broker_mark_dead(self, conn);
        return;
    }
    hop_backlog_t *b = hop_malloc(sizeof *b);
    b->next = NULL;
    zmq_msg_init_size(&b->header, size);
    memcpy(zmq_msg_data(&b->header), header, size);
    zmq_msg_init(&b->body);
    b->has_body = msg && msg->body_len;
    const zmq_msg_t *own = msg && msg->frames ? &msg->frames->body : NULL;
    if (b->has_body && own && zmq_msg_size((zmq_msg_t *)own))
        zmq_msg_copy(&b->body, (zmq_msg_t *)own); // shares the body's buffer
    else if (b->has_body) {
        zmq_msg_init_size(&b->body, msg->body_len);
        memcpy(zmq_msg_data(&b->body), msg->body, msg->body_len);
    }
    if (conn->backlog_tail)
        conn->backlog_tail->next = b;
    else
        conn->backlog_head = b;
    conn->backlog_tail = b;
    conn->backlog_count++;
    self->retry_soon = true;
}

int
hop_broker_drain_backlog(hop_broker_t *self, hop_conn_t *conn)
{
    while (conn->backlog_head && !conn->dead) {
        hop_backlog_t *b = conn->backlog_head;
        if (zmq_send(self->router, conn->id, conn->id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            if (zmq_errno() != EAGAIN)
                hop_broker_mark_dead(self, conn); // EHOSTUNREACH: the peer's socket is gone
            return -1;
        }
        // Once the first frame is accepted the rest of the message always is.
        if (zmq_msg_send(&b->header, self->router, (b->has_body ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) <
            0)
            zmq_msg_close(&b->header);
        if (!b->has_body || zmq_msg_send(&b->body, self->router, ZMQ_DONTWAIT) < 0)
            zmq_msg_close(&b->body); // a sent frame is left empty: nothing to close
        conn->backlog_head = b->next;
        if (!conn->backlog_head)
            conn->backlog_tail = NULL;
        conn->backlog_count--;
        free(b);
        conn->last_send = self->now;
    }
    return conn->dead ? -1 : 0;
}

// Sends header (and msg's body) to conn, after what was batched for it and what waits in its
// backlog. A delivery the peer's pipe refuses fails (its entry goes back to its queue); any
// other message is kept in the backlog and sent once the pipe drains: a reply, a confirm or
// an error is never dropped.
static int
s_send_conn(hop_broker_t *self, hop_conn_t *conn, const void *header, size_t size,
            const hop_msg_t *msg, bool delivery)
{
    if (conn->dead)
        return -1;
    // Whatever was batched for conn goes first, so the peer sees everything in order.
    if (conn->out_count && hop_deliver_flush(self, conn) < 0 && conn->dead)
        return -1;
    int err = EAGAIN;
    if ((!conn->backlog_head || hop_broker_drain_backlog(self, conn) == 0) &&
        hop_broker_send_raw(self, conn->id, conn->id_len, header, size, msg, &err) == 0) {
        conn->last_send = self->now;
        return 0;
    }
    if (conn->dead)
        return -1;
    if (err != EAGAIN) {
        hop_broker_mark_dead(self, conn); // EHOSTUNREACH: the peer's socket is gone
        return -1;
    }
    if (delivery)
        return -1;
    s_backlog_add(self, conn, header, size, msg);
    return conn->dead ? -1 : 0;
}

int
hop_broker_send(hop_broker_t *self, hop_conn_t *conn, const hop_msg_t *msg)
{
    size_t size;
    const void *header = hop_enc_end(&self->enc, &size);
    // The reply to a request that wrote records waits until they are durable (bus/durable.c).
    if (!msg && !conn->dead && hop_durable_hold_reply(self, conn, header, size))
        return 0;
    return s_send_conn(self, conn, header, size, msg, false);
}

int
hop_broker_send_delivery(hop_broker_t *self, hop_conn_t *conn, const hop_msg_t *msg)
{
    size_t size;
    const void *header = hop_enc_end(&self->enc, &size);
    return s_send_conn(self, conn, header, size, msg, true);
}

void
hop_broker_send_held(hop_broker_t *self, hop_conn_t *conn, const void *header, size_t size)
{
    s_send_conn(self, conn, header, size, NULL, false);
}

static void
s_error_v(hop_broker_t *self, const void *peer, size_t peer_len, hop_conn_t *conn, uint64_t id,
          int code, const char *fmt, va_list ap)
{
    char text[512];
    vsnprintf(text, sizeof text, fmt, ap);
    hop_broker_reply(self, HOP_CMD_ERROR, id);
    hop_enc_uint(&self->enc, "code", (uint64_t)code);
    hop_enc_cstr(&self->enc, "text", text);
    hop_log(HOP_DEBUG, "broker", "error conn=%s id=%llu code=%d text=\"%s\"",
            conn ? conn->label : "-", (unsigned long long)id, code, text);
    if (conn)
        hop_broker_send(self, conn, NULL);
    else {
        int err;
        s_send_to(self, peer, peer_len, NULL, &err);
    }
}

void
hop_broker_error(hop_broker_t *self, hop_conn_t *conn, uint64_t id, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_error_v(self, NULL, 0, conn, id, code, fmt, ap);
    va_end(ap);
}

static void s_error_peer(hop_broker_t *self, const void *peer, size_t peer_len, uint64_t id,
                         int code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void
s_error_peer(hop_broker_t *self, const void *peer, size_t peer_len, uint64_t id, int code,
             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_error_v(self, peer, peer_len, NULL, id, code, fmt, ap);
    va_end(ap);
}

void
hop_broker_stall(hop_broker_t *self, hop_consumer_t *c)
{
    c->stalled = true;
    self->retry_soon = true;
}

void
hop_broker_mark_dead(hop_broker_t *self, hop_conn_t *conn)
{
    if (conn->dead)
        return;
    conn->dead = true;
    // Its consumers must get nothing more: stall them until the connection is closed.
    for (hop_consumer_t *c = conn->consumers; c; c = c->conn_next)
        c->stalled = true;
    self->has_dead = true;
}

// Connections -----------------------------------------------------------------------------

static void
s_conn_close(hop_broker_t *self, hop_conn_t *conn, const char *why)
{
    size_t unacked = conn->unacked;
    for (hop_consumer_t *c = conn->consumers; c; c = c->conn_next)
        c->stalled = true;
    hop_deliver_drop_batch(self, conn);
    hop_deliver_drop_confirms(self, conn);
    hop_deliver_forget_paused(self, conn);
    hop_durable_forget_conn(self, conn);
    hop_deliver_requeue_conn(self, conn);
    while (conn->consumers)
        hop_deliver_end_consumer(self, conn->consumers, false);
    while (conn->exclusive)
        hop_topology_delete_queue(self, conn->exclusive);
    if (why)
        hop_log(HOP_INFO, "conn", "closed conn=%s name=%s peer=%s reason=\"%s\" requeued=%zu",
                conn->label, conn->name ? conn->name : "", conn->peer, why, unacked);
    hop_map_remove(self->conns, conn->id, conn->id_len);
    hop_conn_destroy(&conn);
    // ZeroMQ frees the connection's buffers a moment later, on its own thread: trim after it.
    self->trimmed = false;
    self->trim_not_before = self->now + 1000;
}

static void
s_close_dead(hop_broker_t *self)
{
    if (!self->has_dead)
        return;
    self->has_dead = false;
    // Collect first: closing changes the map.
    hop_conn_t *dead[64];
    size_t n;
    do {
        n = 0;
        size_t cursor = 0;
        void *value;
        while (n < 64 && hop_map_next(self->conns, &cursor, NULL, NULL, &value))
            if (((hop_conn_t *)value)->dead)
                dead[n++] = value;
        for (size_t i = 0; i < n; i++)
            s_conn_close(self, dead[i], "peer unreachable or silent");
    } while (n == 64);
}

static void
s_hello(hop_broker_t *self, hop_conn_t *conn, const void *id, size_t id_len, const hop_wire_t *w,
        zmq_msg_t *header)
{
    if (!(w->has & HOP_F_VERSION) || w->version != HOP_PROTOCOL_VERSION) {
        s_error_peer(self, id, id_len, w->id, HOP_CODE_NOT_IMPLEMENTED,
                     "protocol version %llu is not supported: this broker speaks version %d",
                     (unsigned long long)w->version, HOP_PROTOCOL_VERSION);
        return;
    }
    if (!conn) {
        conn = hop_conn_new(id, id_len, ++self->conn_seq, self->now);
        const char *addr = zmq_msg_gets(header, "Peer-Address");
        if (addr)
            snprintf(conn->peer, sizeof conn->peer, "%s", addr);
        hop_map_put(self->conns, id, id_len, conn);
    }
    uint64_t hb = w->has & HOP_F_HEARTBEAT ? w->heartbeat : self->config.heartbeat_ms;
    if (hb < HB_MIN)
        hb = HB_MIN;
    if (hb > HB_MAX)
        hb = HB_MAX;
    conn->heartbeat = (uint32_t)hb;
    conn->timeout = (uint32_t)hb * HB_MISSES;
    conn->batch = w->batch;
    conn->flow = w->flow;
    if (w->has & HOP_F_NAME) {
        free(conn->name);
        conn->name = hop_strndup(w->name.ptr, w->name.len);
    }
    hop_log(HOP_INFO, "conn", "opened conn=%s name=%s peer=%s heartbeat=%u batch=%d", conn->label,
            conn->name ? conn->name : "", conn->peer, conn->heartbeat, conn->batch);
    hop_broker_reply(self, HOP_CMD_HELLO_OK, w->id);
    hop_enc_uint(&self->enc, "version", HOP_PROTOCOL_VERSION);
    hop_enc_cstr(&self->enc, "server", "hopperd " HOP_VERSION);
    hop_enc_uint(&self->enc, "heartbeat", conn->heartbeat);
    hop_enc_uint(&self->enc, "timeout", conn->timeout);
    hop_enc_uint(&self->enc, "max_message", self->config.max_message);
    hop_broker_send(self, conn, NULL);
}

// Dispatch of one protocol message --------------------------------------------------------

// Handles one command. hdr/hdr_len are its header bytes inside frame; the body is body_frame
// (a frame of its own) or the span body/body_len inside frame (a batch record). Returns -1
// when a batch record is not allowed in a batch (the rest of the batch is then skipped).
static int
s_command(hop_broker_t *self, hop_conn_t *conn, const void *id, size_t id_len, const uint8_t *hdr,
          size_t hdr_len, hop_frames_t *batch, zmq_msg_t *frame, zmq_msg_t *body_frame,
          const void *body, size_t body_len, bool has_body, int extra, bool in_batch)
{
    hop_wire_t w;
    int rc = hop_wire_decode(&w, hdr, hdr_len, self->err, sizeof self->err);
    uint64_t rid = w.has & HOP_F_ID ? w.id : 0;
    if (rc == 0 && extra)
        rc = HOP_CODE_FRAME_ERROR, snprintf(self->err, sizeof self->err,
                                            "a message has one header frame and at most one "
                                            "body frame; got %d frames",
                                            2 + extra);
    if (rc == 0 && in_batch && (w.cmd == HOP_CMD_HELLO || w.cmd == HOP_CMD_BATCH)) {
        hop_broker_error(self, conn, rid, HOP_CODE_FRAME_ERROR,
                         "'%s' is not allowed inside a batch; the rest of the batch is skipped",
                         hop_cmd_name(w.cmd));
        return -1;
    }
    if (rc == 0 && has_body && w.cmd != HOP_CMD_PUBLISH && w.cmd != HOP_CMD_BATCH)
        rc = HOP_CODE_FRAME_ERROR,
        snprintf(self->err, sizeof self->err, "'%s' takes no body frame", hop_cmd_name(w.cmd));
    if (rc == 0 && !w.cmd_name.ptr)
        rc = HOP_CODE_SYNTAX_ERROR,
        snprintf(self->err, sizeof self->err, "header has no 'cmd' field%s", "");
    if (rc == 0 && w.cmd == HOP_CMD_UNKNOWN)
        rc = HOP_CODE_COMMAND_INVALID,
        snprintf(self->err, sizeof self->err, "unknown command '%.*s'",
                 w.cmd_name.ptr ? (int)w.cmd_name.len : 0, w.cmd_name.ptr ? w.cmd_name.ptr : "");
    // Even a heartbeat from an unknown peer is answered: it tells a client whose connection
    // was closed (timeout, broker restart) to reconnect at once, not after its own timeout.
    if (rc == 0 && !conn && w.cmd != HOP_CMD_HELLO)
        rc = HOP_CODE_UNEXPECTED_FRAME,
        snprintf(self->err, sizeof self->err,
                 "'%s' before hello: this connection is unknown to the broker (new, or closed "
                 "after %s); send hello first",
                 hop_cmd_name(w.cmd), "a timeout");
    if (rc) {
        // A publish that asked for a confirm learns of its refusal from the confirm.
        if (conn && w.cmd == HOP_CMD_PUBLISH && (w.has & HOP_F_SEQ) && w.seq)
            hop_deliver_nack(self, conn, w.seq, rc, "%s", self->err);
        else if (conn)
            hop_broker_error(self, conn, rid, rc, "%s", self->err);
        else
            s_error_peer(self, id, id_len, rid, rc, "%s", self->err);
        return 0;
    }
    // Batched deliveries must reach their clients before anything that could change what
    // those deliveries mean (cancel, delete, close, ...). Publishes and heartbeats cannot;
    // acks check for themselves (hop_deliver_settle).
    if (w.cmd != HOP_CMD_PUBLISH && w.cmd != HOP_CMD_HEARTBEAT && w.cmd != HOP_CMD_ACK &&
        w.cmd != HOP_CMD_NACK && w.cmd != HOP_CMD_REJECT && w.cmd != HOP_CMD_BATCH)
        hop_deliver_flush_all(self);
    hop_durable_request_begin(self, conn, w.cmd);

    switch (w.cmd) {
    case HOP_CMD_BATCH: {
        if (!has_body) {
            hop_broker_error(self, conn, rid, HOP_CODE_FRAME_ERROR,
                             "a batch needs its records frame");
            break;
        }
        // The records frame goes into a holder that publishes in it will share. The loop holds
        // a reference of its own: a no-ack delivery may release every message's reference
        // while the rest of the batch is still being read.
        hop_frames_t *holder = hop_frames_new();
        zmq_msg_move(&holder->header, body_frame);
        holder->refs = 1;
        hop_batch_t it;
        hop_batch_init(&it, zmq_msg_data(&holder->header), zmq_msg_size(&holder->header));
        const uint8_t *rh, *rb;
        uint32_t rhl, rbl;
        uint64_t n = 0;
        bool stop = false;
        while (!stop && (rc = hop_batch_next(&it, &rh, &rhl, &rb, &rbl)) == 1) {
            n++;
            stop = s_command(self, conn, id, id_len, rh, rhl, holder, NULL, NULL, rb, rbl, rbl > 0,
                             0, true) < 0 ||
                   conn->dead;
        }
        hop_frames_release(holder);
        if (stop)
            return 0;
        if (rc < 0)
            hop_broker_error(self, conn, rid, HOP_CODE_FRAME_ERROR,
                             "batch record %llu runs past the end of the frame; the rest of "
                             "the batch is skipped",
                             (unsigned long long)n + 1);
        else if ((w.has & HOP_F_COUNT) && w.count != n)
            hop_broker_error(self, conn, rid, HOP_CODE_FRAME_ERROR,
                             "batch says count %llu but holds %llu records",
                             (unsigned long long)w.count, (unsigned long long)n);
        break;
    }
    case HOP_CMD_PUBLISH:
        hop_deliver_publish(self, conn, &w, batch, frame, body_frame, body, body_len);
        break;
    case HOP_CMD_ACK:
    case HOP_CMD_NACK:
    case HOP_CMD_REJECT:
        hop_deliver_settle(self, conn, &w);
        break;
    case HOP_CMD_HEARTBEAT:
        break;
    case HOP_CMD_HELLO:
        s_hello(self, conn, id, id_len, &w, frame);
        break;
    case HOP_CMD_CLOSE: {
        // Settle everything before confirming, then answer on the raw routing id.
        uint8_t peer_id[HOP_ID_MAX];
        memcpy(peer_id, id, id_len);
        hop_deliver_flush_confirms(self); // what was stored is confirmed before close-ok
        s_conn_close(self, conn, "closed by client");
        hop_broker_reply(self, HOP_CMD_CLOSE_OK, rid);
        int err;
        s_send_to(self, peer_id, id_len, NULL, &err);
        return -1; // conn is gone: nothing after close in a batch applies to it
    }
    case HOP_CMD_EXCHANGE_DECLARE:
        hop_topology_exchange_declare(self, conn, &w);
        break;
    case HOP_CMD_EXCHANGE_DELETE:
        hop_topology_exchange_delete(self, conn, &w);
        break;
    case HOP_CMD_QUEUE_DECLARE:
        hop_topology_queue_declare(self, conn, &w);
        break;
    case HOP_CMD_QUEUE_DELETE:
        hop_topology_queue_delete(self, conn, &w);
        break;
    case HOP_CMD_QUEUE_PURGE:
        hop_topology_queue_purge(self, conn, &w);
        break;
    case HOP_CMD_QUEUE_BIND:
    case HOP_CMD_QUEUE_UNBIND:
        hop_topology_bind(self, conn, &w, w.cmd == HOP_CMD_QUEUE_BIND);
        break;
    case HOP_CMD_CONSUME:
        hop_deliver_consume(self, conn, &w);
        break;
    case HOP_CMD_CANCEL:
        hop_deliver_cancel(self, conn, &w);
        break;
    case HOP_CMD_GET:
        hop_deliver_get(self, conn, &w);
        break;
    case HOP_CMD_LIST:
        if (!(w.has & HOP_F_WHAT))
            hop_broker_error(self, conn, rid, HOP_CODE_SYNTAX_ERROR,
                             "list needs 'what' (queues, exchanges, bindings, consumers or "
                             "connections)");
        else
            hop_inspect_list(self, conn, &w);
        break;
    case HOP_CMD_STATUS:
        hop_inspect_status(self, conn, &w);
        break;
    case HOP_CMD_PEEK:
        hop_inspect_peek(self, conn, &w);
        break;
    case HOP_CMD_MOVE:
        hop_ops_move(self, conn, &w, hdr, hdr_len);
        break;
    case HOP_CMD_TRACE:
        hop_trace_command(self, conn, &w, hdr, hdr_len);
        break;
    default:
        // Replies and broker-to-client commands are not requests.
        hop_broker_error(self, conn, rid, HOP_CODE_COMMAND_INVALID,
                         "'%s' is sent by the broker, not to it", hop_cmd_name(w.cmd));
        break;
    }
    // Only the request's own replies wait: confirms flushed later go as they always did.
    hop_durable_request_begin(self, NULL, HOP_CMD_HEARTBEAT);
    return 0;
}

static void
s_handle(hop_broker_t *self, zmq_msg_t *peer, zmq_msg_t *header, zmq_msg_t *body, int extra)
{
    const void *id = zmq_msg_data(peer);
    size_t id_len = zmq_msg_size(peer);
    hop_conn_t *conn = hop_map_get(self->conns, id, id_len);
    if (conn)
        conn->last_recv = self->now;
    s_command(self, conn, id, id_len, zmq_msg_data(header), zmq_msg_size(header), NULL, header,
              body, body ? zmq_msg_data(body) : NULL, body ? zmq_msg_size(body) : 0, body != NULL,
              extra, false);
}

// Receives and handles up to DRAIN_BATCH messages without blocking.
static void
s_drain(hop_broker_t *self)
{
    for (int n = 0; n < DRAIN_BATCH; n++) {
        zmq_msg_t peer, header, body;
        zmq_msg_init(&peer);
        if (zmq_msg_recv(&peer, self->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&peer);
            return;
        }
        zmq_msg_init(&header);
        zmq_msg_init(&body);
        bool has_body = false;
        int extra = 0;
        if (zmq_msg_more(&peer) && zmq_msg_recv(&header, self->router, 0) >= 0 &&
            zmq_msg_more(&header)) {
            has_body = zmq_msg_recv(&body, self->router, 0) >= 0;
            // Frames beyond the body: drain and count them, the reply is a frame-error.
            bool more = has_body && zmq_msg_more(&body);
            while (more) {
                zmq_msg_t junk;
                zmq_msg_init(&junk);
                more = zmq_msg_recv(&junk, self->router, 0) >= 0 && zmq_msg_more(&junk);
                zmq_msg_close(&junk);
                extra++;
            }
        }
        s_handle(self, &peer, &header, has_body ? &body : NULL, extra);
        zmq_msg_close(&body);
        zmq_msg_close(&header);
        zmq_msg_close(&peer);
    }
}

// Between ticks: backlogs sent and stalled consumers retried, every RETRY_MS while any is left.
static void
s_retry(hop_broker_t *self)
{
    self->retry_soon = false; // set again by whatever stalls again
    uint64_t delivered = self->delivered;
    bool moved = false;
    size_t cursor = 0;
    void *value;
    while (hop_map_next(self->conns, &cursor, NULL, NULL, &value)) {
        hop_conn_t *conn = value;
        if (!conn->backlog_head || conn->dead)
            continue;
        size_t before = conn->backlog_count;
        if (hop_broker_drain_backlog(self, conn) < 0)
            self->retry_soon = !conn->dead;
        moved |= conn->backlog_count < before;
    }
    cursor = 0;
    while (hop_map_next(self->queues, &cursor, NULL, NULL, &value)) {
        hop_queue_t *q = value;
        if (!q->deleting && hop_deliver_unstall(self, q))
            hop_deliver_dispatch(self, q);
    }
    moved |= self->delivered != delivered;
    self->retry_ms = moved || !self->retry_ms       ? RETRY_MS
                     : self->retry_ms * 2 < TICK_MS ? self->retry_ms * 2
                                                    : TICK_MS;
    self->retry_at = self->now + self->retry_ms;
}

// Liveness: close silent peers, keep quiet ones informed that we are alive.
static void
s_tick(hop_broker_t *self)
{
    size_t cursor = 0;
    void *value;
    while (hop_map_next(self->conns, &cursor, NULL, NULL, &value)) {
        hop_conn_t *conn = value;
        if (conn->dead)
            continue;
        if (conn->backlog_head && hop_broker_drain_backlog(self, conn) < 0)
            self->retry_soon = !conn->dead; // its pipe is still full: look again soon
        if (self->now - conn->last_recv > conn->timeout) {
            hop_log(HOP_WARN, "conn",
                    "peer silent conn=%s name=%s silent_ms=%llu unacked=%zu: closing, its "
                    "unacked messages return to their queues",
                    conn->label, conn->name ? conn->name : "",
                    (unsigned long long)(self->now - conn->last_recv), conn->unacked);
            hop_broker_mark_dead(self, conn);
        } else if (self->now - conn->last_send >= conn->heartbeat) {
            hop_enc_begin(&self->enc, HOP_CMD_HEARTBEAT);
            hop_broker_send(self, conn, NULL);
        }
    }
    hop_deliver_tick(self);
    // After a burst, give freed memory back to the system: glibc keeps freed heap otherwise,
    // and a drained backlog would hold the broker's RSS at its peak. Trimming walks the heap,
    // so it runs once when the broker goes idle, or at most once a second while busy when
    // the messages held fell under a quarter of their peak.
    size_t live = hop_msg_live();
    if (live > self->live_peak)
        self->live_peak = live;
    bool drained = self->live_peak >= 65536 && live < self->live_peak / 4 &&
                   self->now - self->trimmed_at >= 1000;
    if (self->busy && !drained)
        self->trimmed = false;
    else if ((!self->trimmed && self->now >= self->trim_not_before) || drained) {
        if (!self->busy)
            hop_batch_buf_trim();
        malloc_trim(0);
        self->trimmed = true;
        self->trimmed_at = self->now;
        self->live_peak = live;
    }
    self->busy = false;
}

int
hop_broker_run(hop_broker_t *self)
{
    // The ROUTER, then the store's progress pipe, the accept monitor and the metrics server
    // (MHD's epoll descriptor), each when present.
    zmq_pollitem_t items[4] = {{.socket = self->router, .events = ZMQ_POLLIN}};
    int n_items = 1, metrics_at = -1;
    if (hop_durable_fd(self) >= 0)
        items[n_items++] = (zmq_pollitem_t){.fd = hop_durable_fd(self), .events = ZMQ_POLLIN};
    if (self->monitor)
        items[n_items++] = (zmq_pollitem_t){.socket = self->monitor, .events = ZMQ_POLLIN};
    if (self->metrics) {
        metrics_at = n_items;
        items[n_items++] =
            (zmq_pollitem_t){.fd = hop_metrics_fd(self->metrics), .events = ZMQ_POLLIN};
    }
    self->next_tick = hop_now_ms() + TICK_MS;
    while (!s_interrupted) {
        self->now = hop_now_ms();
        long wait = self->next_tick > self->now ? (long)(self->next_tick - self->now) : 0;
        if (self->retry_soon) {
            long retry = self->retry_at > self->now ? (long)(self->retry_at - self->now) : 0;
            wait = retry < wait ? retry : wait;
        }
        if (self->metrics)
            wait = hop_metrics_wait(self->metrics, wait);
        int rc = zmq_poll(items, n_items, wait);
        if (rc < 0 && zmq_errno() != EINTR) {
            hop_log(HOP_ERROR, "broker", "poll failed: %s", zmq_strerror(zmq_errno()));
            break;
        }
        self->now = hop_now_ms();
        for (int i = 1; rc > 0 && i < n_items; i++)
            if (i != metrics_at && (items[i].revents & ZMQ_POLLIN)) {
                if (items[i].socket == self->monitor && self->monitor)
                    s_accept_event(self);
                else
                    hop_durable_progress(self);
            }
        // Scrapes are answered here, on the reactor thread: they read the state directly.
        if (self->metrics)
            hop_metrics_run(self->metrics, rc > 0 && (items[metrics_at].revents & ZMQ_POLLIN));
        if (rc > 0 && (items[0].revents & ZMQ_POLLIN)) {
            s_drain(self);
            self->busy = true;
        }
        if (self->now >= self->next_tick) {
            self->retry_soon = false; // the tick retries everything
            self->retry_ms = RETRY_MS;
            self->retry_at = self->now + RETRY_MS;
            s_tick(self);
            self->next_tick = self->now + TICK_MS;
        } else if (self->retry_soon && self->now >= self->retry_at)
            s_retry(self);
        // Deliveries batched during this turn go out now: batching never waits for more.
        hop_deliver_flush_all(self);
        hop_durable_progress(self); // commits this turn's records; confirms what is on disk
        hop_deliver_flush_confirms(self);
        if (self->blocked_head)
            hop_deliver_resume(self, NULL);
        s_close_dead(self);
    }
    hop_log(HOP_INFO, "broker", "shutting down: connections=%zu queues=%zu",
            hop_map_size(self->conns), hop_map_size(self->queues));
    return 0;
}
