// cli/bench_fleet.c - many light protocol connections in one process (see bench_fleet.h).
//
// Each worker thread owns one ROUTER socket and a contiguous range of the connections; it
// alone touches their state, so the only shared data are the counters (atomics, one writer
// each) and the first error (under a lock). A connection is a ZeroMQ pipe of that socket,
// named by the routing id given to zmq_connect: what the broker sends on it arrives with that
// id in front, and what the worker sends with that id in front goes out on it.
#include "bench_fleet.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "codec.h"
#include "hopper.h"

#define S_NS 1000000000LL
#define S_MS 1000000LL
// ZeroMQ I/O threads: idle connections need little, and the broker on the same machine needs
// the cores more than this process does.
#define S_IO_THREADS 1
// Connections being set up at once, over all workers. libzmq listens with a backlog of 100:
// a burst of connects beyond it loses SYNs, and a lost SYN is retried only after a second.
#define S_WINDOW   64
#define S_ID_SIZE  5           // routing id of a connection: 'c' then its index, big-endian
#define S_CHECK_NS (10 * S_MS) // timeouts, heartbeats and the end of closing: this often

// Request ids: a connection sends one request of each kind, so the id of a reply (or of an
// error) says which request it answers.
enum { S_ID_HELLO = 1, S_ID_DECLARE, S_ID_BIND, S_ID_CONSUME, S_ID_CLOSE };

static const char *s_request_names[] = {"a message",  "hello",   "queue.declare",
                                        "queue.bind", "consume", "close"};

// Where a connection stands.
enum {
    C_NONE = 0, // not started
    C_HELLO,    // connected; hello and queue.declare sent
    C_BIND,     // queue-ok came; queue.bind and consume sent
    C_READY,    // consume-ok came: consuming
    C_FAILED,   // a request failed or went unanswered
    C_CLOSING,  // close sent
    C_CLOSED,   // close-ok came
};

typedef struct {
    int64_t t_send; // when this side last sent on it (heartbeats are due from then)
    int64_t t_wait; // when the request being waited for was sent
    int64_t t_done; // when it had every broadcast message; 0 before
    uint32_t got;   // distinct broadcast messages received
    uint8_t state;  // C_*
    bool greeted;   // hello-ok came: the broker knows the connection and must hear close
} s_conn_t;

typedef struct {
    hop_fleet_t *fleet;
    pthread_t thread;
    bool running;        // the thread was started (and must be joined)
    long first, end;     // its connections: [first, end)
    long next;           // the next one to start
    int window;          // most connections it sets up at once
    int inflight;        // connections being set up (C_HELLO, C_BIND)
    void *sock;          // the ROUTER: one TCP connection per connection
    hop_enc_t enc;       // reused for every header it sends
    int64_t next_check;  // when timeouts and heartbeats are looked at next
    int64_t close_until; // closing: when to stop waiting for close-oks; 0 before closing
    atomic_long started, opened, failed, deliveries, complete, dup, bad, closed;
    atomic_bool opening; // still opening connections
} s_worker_t;

struct hop_fleet {
    hop_fleet_config_t config; // its strings point into the copies below
    char *endpoint, *exchange, *name;
    void *ctx;               // ZeroMQ context of every worker's socket
    s_conn_t *conns;         // config.count
    uint64_t *seen;          // words per connection: bitmap of broadcast sequence numbers
    size_t words;            // (messages + 63) / 64
    s_worker_t *workers;     // nworkers
    int nworkers;            //
    atomic_bool stop_open;   // open no more connections
    atomic_bool closing;     // close every connection, then end
    atomic_bool any_greeted; // some hello was answered: the broker is there
    bool closed;             // hop_fleet_close is done
    pthread_mutex_t lock;    // guards error and error_rc
    char error[512];         // the first error, "" if none
    int error_rc;            // its HOP_E* code
};

static int64_t
s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * S_NS + ts.tv_nsec;
}

static void
s_atomic_inc(atomic_long *counter)
{
    // One writer per counter: a relaxed load and store is enough, and cheaper than a RMW.
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static void
s_error(hop_fleet_t *self, int rc, const char *fmt, ...)
{
    pthread_mutex_lock(&self->lock);
    if (!self->error[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(self->error, sizeof self->error, fmt, ap);
        va_end(ap);
        self->error_rc = rc;
    }
    pthread_mutex_unlock(&self->lock);
}

static void
s_set_state(s_worker_t *w, s_conn_t *c, uint8_t state)
{
    bool was_setup = c->state == C_HELLO || c->state == C_BIND;
    bool is_setup = state == C_HELLO || state == C_BIND;
    w->inflight += (int)is_setup - (int)was_setup;
    c->state = state;
}

// Marks connection i failed; the first failure of the fleet stops the opening and is its error.
static void
s_fail(s_worker_t *w, long i, int rc, const char *fmt, ...)
{
    hop_fleet_t *f = w->fleet;
    s_conn_t *c = &f->conns[i];
    if (c->state == C_FAILED)
        return;
    if (c->state != C_CLOSING && c->state != C_CLOSED) { // closing: its close settles it
        s_set_state(w, c, C_FAILED);
        s_atomic_inc(&w->failed);
    }
    char text[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    s_error(f, rc, "%s", text);
    atomic_store(&f->stop_open, true);
}

// The routing id that names connection i on its worker's socket. It never starts with a zero
// byte: ZeroMQ keeps those for the ids it makes up itself.
static void
s_conn_id(uint8_t id[S_ID_SIZE], long i)
{
    id[0] = 'c';
    id[1] = (uint8_t)(i >> 24);
    id[2] = (uint8_t)(i >> 16);
    id[3] = (uint8_t)(i >> 8);
    id[4] = (uint8_t)i;
}

// Sends the header in w->enc to connection i. Returns 0, or -1 with errno set by ZeroMQ.
static int
s_send(s_worker_t *w, long i)
{
    uint8_t id[S_ID_SIZE];
    s_conn_id(id, i);
    size_t size;
    const void *header = hop_enc_end(&w->enc, &size);
    if (zmq_send(w->sock, id, sizeof id, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(w->sock, header, size, ZMQ_DONTWAIT) < 0)
        return -1;
    w->fleet->conns[i].t_send = s_now();
    return 0;
}

static void
s_send_or_fail(s_worker_t *w, long i, const char *what)
{
    if (s_send(w, i) < 0)
        s_fail(w, i, HOP_ECONNECT, "connection %ld: cannot send %s: %s", i, what,
               zmq_strerror(zmq_errno()));
}

static int
s_heartbeat(s_worker_t *w, long i)
{
    hop_enc_begin(&w->enc, HOP_CMD_HEARTBEAT);
    return s_send(w, i);
}

static void
s_send_close(s_worker_t *w, long i)
{
    hop_enc_begin(&w->enc, HOP_CMD_CLOSE);
    hop_enc_uint(&w->enc, "id", S_ID_CLOSE);
    // A connection that cannot take it is gone: nothing is left to close.
    s_set_state(w, &w->fleet->conns[i], s_send(w, i) == 0 ? C_CLOSING : C_CLOSED);
}

// Connects connection i and sends hello and queue.declare at once: the broker handles a
// connection's messages in order, so the declare needs no wait for hello-ok.
static void
s_start(s_worker_t *w, long i)
{
    hop_fleet_t *f = w->fleet;
    s_conn_t *c = &f->conns[i];
    uint8_t id[S_ID_SIZE];
    s_conn_id(id, i);
    s_atomic_inc(&w->started);
    s_set_state(w, c, C_HELLO);
    c->t_wait = s_now();
    // Without ZMQ_IMMEDIATE the pipe exists as soon as zmq_connect returns: what is sent now
    // leaves once the TCP connection is up.
    if (zmq_setsockopt(w->sock, ZMQ_CONNECT_ROUTING_ID, id, sizeof id) < 0 ||
        zmq_connect(w->sock, f->endpoint) < 0) {
        s_fail(w, i, HOP_ECONNECT, "connection %ld: cannot connect to %s: %s", i, f->endpoint,
               zmq_strerror(zmq_errno()));
        return;
    }
    hop_enc_begin(&w->enc, HOP_CMD_HELLO);
    hop_enc_uint(&w->enc, "id", S_ID_HELLO);
    hop_enc_uint(&w->enc, "version", 1);
    hop_enc_uint(&w->enc, "heartbeat", (uint64_t)f->config.heartbeat_ms);
    hop_enc_cstr(&w->enc, "name", f->name);
    hop_enc_bool(&w->enc, "batch", false); // one message per delivery: no batch to parse
    s_send_or_fail(w, i, "hello");
    if (c->state != C_HELLO)
        return;
    hop_enc_begin(&w->enc, HOP_CMD_QUEUE_DECLARE);
    hop_enc_uint(&w->enc, "id", S_ID_DECLARE);
    hop_enc_cstr(&w->enc, "queue", ""); // server-named, as hop_client_subscribe
    hop_enc_bool(&w->enc, "exclusive", true);
    hop_enc_bool(&w->enc, "auto_delete", true);
    s_send_or_fail(w, i, "queue.declare");
}

// The queue is there: bind it and consume it, again without waiting between the two.
static void
s_subscribe(s_worker_t *w, long i, const hop_str_t *queue)
{
    hop_fleet_t *f = w->fleet;
    s_set_state(w, &f->conns[i], C_BIND);
    f->conns[i].t_wait = s_now();
    hop_enc_begin(&w->enc, HOP_CMD_QUEUE_BIND);
    hop_enc_uint(&w->enc, "id", S_ID_BIND);
    hop_enc_str(&w->enc, "queue", queue->ptr, queue->len);
    hop_enc_cstr(&w->enc, "exchange", f->exchange);
    hop_enc_cstr(&w->enc, "key", "");
    s_send_or_fail(w, i, "queue.bind");
    if (f->conns[i].state != C_BIND)
        return;
    hop_enc_begin(&w->enc, HOP_CMD_CONSUME);
    hop_enc_uint(&w->enc, "id", S_ID_CONSUME);
    hop_enc_str(&w->enc, "queue", queue->ptr, queue->len);
    hop_enc_bool(&w->enc, "no_ack", true);
    s_send_or_fail(w, i, "consume");
}

static void
s_on_deliver(s_worker_t *w, long i, zmq_msg_t *body, bool has_body)
{
    hop_fleet_t *f = w->fleet;
    s_conn_t *c = &f->conns[i];
    int64_t seq = -1;
    if (has_body && zmq_msg_size(body) == f->config.body_size && f->config.body_size >= 16)
        memcpy(&seq, (const char *)zmq_msg_data(body) + 8, 8);
    if (seq < 0 || seq >= f->config.messages) {
        s_atomic_inc(&w->bad);
        return;
    }
    uint64_t *word = &f->seen[(size_t)i * f->words + (size_t)(seq >> 6)];
    uint64_t bit = 1ULL << (seq & 63);
    if (*word & bit) {
        s_atomic_inc(&w->dup);
        return;
    }
    *word |= bit;
    s_atomic_inc(&w->deliveries);
    if (++c->got == (uint32_t)f->config.messages) {
        c->t_done = s_now();
        s_atomic_inc(&w->complete);
    }
}

// Handles one message from the broker on connection i.
static void
s_handle(s_worker_t *w, long i, zmq_msg_t *header, zmq_msg_t *body, bool has_body)
{
    hop_fleet_t *f = w->fleet;
    s_conn_t *c = &f->conns[i];
    hop_wire_t wire;
    char err[256];
    if (hop_wire_decode(&wire, zmq_msg_data(header), zmq_msg_size(header), err, sizeof err) != 0) {
        s_fail(w, i, HOP_EPROTO, "connection %ld: undecodable frame from the broker: %s", i, err);
        return;
    }
    uint64_t rid = wire.has & HOP_F_ID ? wire.id : 0;
    bool closing = atomic_load_explicit(&f->closing, memory_order_relaxed);
    switch (wire.cmd) {
    case HOP_CMD_DELIVER:
        s_on_deliver(w, i, body, has_body);
        break;
    case HOP_CMD_HELLO_OK:
        c->greeted = true;
        atomic_store_explicit(&f->any_greeted, true, memory_order_relaxed);
        if (closing && c->state != C_CLOSING && c->state != C_CLOSED)
            s_send_close(w, i); // greeted after the others were closed
        break;
    case HOP_CMD_QUEUE_OK:
        if (c->state == C_HELLO)
            s_subscribe(w, i, &wire.queue);
        break;
    case HOP_CMD_CONSUME_OK:
        if (c->state == C_BIND) {
            s_set_state(w, c, C_READY);
            s_atomic_inc(&w->opened);
        }
        break;
    case HOP_CMD_CLOSE_OK:
        if (c->state == C_CLOSING) {
            c->state = C_CLOSED;
            s_atomic_inc(&w->closed);
        }
        break;
    case HOP_CMD_ERROR:
        s_fail(w, i, HOP_EBROKER, "connection %ld: the broker refused %s: %s (%llu): %.*s", i,
               s_request_names[rid <= S_ID_CLOSE ? rid : 0], hop_code_name((int)wire.code),
               (unsigned long long)wire.code, (int)wire.text.len,
               wire.text.ptr ? wire.text.ptr : "");
        break;
    case HOP_CMD_CANCELLED:
        s_fail(w, i, HOP_EBROKER, "connection %ld: the broker cancelled its consumer", i);
        break;
    default: // heartbeats, ok to queue.bind: nothing to do
        break;
    }
}

// Receives everything the socket holds.
static void
s_drain(s_worker_t *w)
{
    zmq_msg_t id, header, body;
    zmq_msg_init(&id);
    zmq_msg_init(&header);
    zmq_msg_init(&body);
    while (zmq_msg_recv(&id, w->sock, ZMQ_DONTWAIT) >= 0) {
        bool has_header = zmq_msg_more(&id) && zmq_msg_recv(&header, w->sock, 0) >= 0;
        bool has_body = has_header && zmq_msg_more(&header) && zmq_msg_recv(&body, w->sock, 0) >= 0;
        for (bool more = has_body && zmq_msg_more(&body); more;) {
            zmq_msg_t junk;
            zmq_msg_init(&junk);
            more = zmq_msg_recv(&junk, w->sock, 0) >= 0 && zmq_msg_more(&junk);
            zmq_msg_close(&junk);
        }
        const uint8_t *p = zmq_msg_data(&id);
        long i = -1;
        if (zmq_msg_size(&id) == S_ID_SIZE && p[0] == 'c')
            i = (long)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4]);
        if (has_header && i >= w->first && i < w->next)
            s_handle(w, i, &header, &body, has_body);
    }
    zmq_msg_close(&id);
    zmq_msg_close(&header);
    zmq_msg_close(&body);
}

// Fails requests that went unanswered, sends the heartbeats that are due, and says whether
// closing is over (every connection the broker knows has said close-ok, or failed before
// hello-ok).
static bool
s_check(s_worker_t *w, int64_t now)
{
    hop_fleet_t *f = w->fleet;
    int64_t timeout = (int64_t)f->config.timeout_ms * S_MS;
    int64_t beat = (int64_t)f->config.heartbeat_ms * S_MS / 2;
    bool settled = true;
    for (long i = w->first; i < w->next; i++) {
        s_conn_t *c = &f->conns[i];
        if ((c->state == C_HELLO || c->state == C_BIND) && now - c->t_wait > timeout) {
            const char *what = !c->greeted           ? "hello"
                               : c->state == C_HELLO ? "queue.declare"
                                                     : "queue.bind or consume";
            if (!atomic_load_explicit(&f->any_greeted, memory_order_relaxed))
                s_fail(w, i, HOP_ECONNECT,
                       "cannot connect to %s: no answer to hello within %d ms (is hopperd "
                       "running there?)",
                       f->endpoint, f->config.timeout_ms);
            else if (s_heartbeat(w, i) < 0) // its TCP connection is gone
                s_fail(w, i, HOP_ECONNECT,
                       "connection %ld: closed before %s was answered (hopperd stopped?)", i, what);
            else if (!c->greeted) // connected, but never read: the broker did not accept it
                s_fail(w, i, HOP_ETIMEOUT,
                       "connection %ld: no answer to hello within %d ms, though earlier "
                       "connections were answered: the broker may be out of file descriptors "
                       "(see its log and its ulimit -n)",
                       i, f->config.timeout_ms);
            else
                s_fail(w, i, HOP_ETIMEOUT, "connection %ld: no answer to %s within %d ms", i, what,
                       f->config.timeout_ms);
        }
        if (c->greeted && c->state != C_CLOSING && c->state != C_CLOSED &&
            now - c->t_send >= beat && s_heartbeat(w, i) < 0)
            s_fail(w, i, HOP_ECONNECT, "connection %ld: lost (hopperd closed it or stopped)", i);
        if (c->state != C_CLOSED && !(c->state == C_FAILED && !c->greeted))
            settled = false;
    }
    return settled;
}

static void *
s_worker_main(void *arg)
{
    s_worker_t *w = arg;
    hop_fleet_t *f = w->fleet;
    zmq_pollitem_t item = {.socket = w->sock, .events = ZMQ_POLLIN};
    for (;;) {
        bool closing = atomic_load(&f->closing);
        while (!closing && w->next < w->end && w->inflight < w->window &&
               !atomic_load_explicit(&f->stop_open, memory_order_relaxed))
            s_start(w, w->next++);
        atomic_store(&w->opening, w->inflight > 0 || (!closing && w->next < w->end &&
                                                      !atomic_load(&f->stop_open)));
        int64_t now = s_now();
        if (closing && !w->close_until) {
            w->close_until = now + (int64_t)f->config.timeout_ms * S_MS;
            for (long i = w->first; i < w->next; i++)
                if (f->conns[i].greeted && f->conns[i].state != C_CLOSED)
                    s_send_close(w, i);
            w->next_check = now; // all may be settled already
        }
        if (now >= w->next_check) {
            bool settled = s_check(w, now);
            w->next_check = now + S_CHECK_NS;
            if (closing && (settled || now >= w->close_until))
                break;
        }
        zmq_poll(&item, 1, closing ? 1 : 10);
        s_drain(w);
    }
    atomic_store(&w->opening, false);
    zmq_close(w->sock);
    w->sock = NULL;
    return NULL;
}

long
hop_fleet_fds(long count, int workers)
{
    // Per ZeroMQ context: the reaper's and each I/O thread's poller and mailbox, and the
    // context's own mailbox. Per socket: its mailbox. Per connection: its TCP socket.
    return count + workers + 3 + 2 * S_IO_THREADS;
}

static char *
s_strdup(const char *s)
{
    size_t len = strlen(s) + 1;
    char *copy = malloc(len);
    if (!copy)
        abort();
    return memcpy(copy, s, len);
}

hop_fleet_t *
hop_fleet_new(const hop_fleet_config_t *config, char *err, size_t err_size)
{
    assert(config && config->endpoint && config->exchange && config->name);
    assert(config->count > 0 && config->count <= 0x7fffffff);
    assert(config->workers >= 1 && config->messages >= 1 && config->timeout_ms > 0);
    hop_fleet_t *self = calloc(1, sizeof *self);
    if (!self)
        abort();
    self->config = *config;
    self->config.endpoint = self->endpoint = s_strdup(config->endpoint);
    self->config.exchange = self->exchange = s_strdup(config->exchange);
    self->config.name = self->name = s_strdup(config->name);
    pthread_mutex_init(&self->lock, NULL);
    self->nworkers = (int)(config->workers < config->count ? config->workers : config->count);
    self->words = ((size_t)config->messages + 63) / 64;
    self->conns = calloc((size_t)config->count, sizeof *self->conns);
    self->seen = calloc((size_t)config->count * self->words, sizeof *self->seen);
    self->workers = calloc((size_t)self->nworkers, sizeof *self->workers);
    if (!self->conns || !self->seen || !self->workers)
        abort();
    for (int k = 0; k < self->nworkers; k++)
        hop_enc_init(&self->workers[k].enc);
    self->ctx = zmq_ctx_new();
    if (!self->ctx) {
        snprintf(err, err_size, "cannot create a ZeroMQ context: %s", zmq_strerror(zmq_errno()));
        hop_fleet_destroy(&self);
        return NULL;
    }
    zmq_ctx_set(self->ctx, ZMQ_IO_THREADS, S_IO_THREADS);
    zmq_ctx_set(self->ctx, ZMQ_BLOCKY, 0);
    int window = S_WINDOW / self->nworkers;
    for (int k = 0; k < self->nworkers; k++) {
        s_worker_t *w = &self->workers[k];
        w->fleet = self;
        w->first = w->next = config->count * k / self->nworkers;
        w->end = config->count * (k + 1) / self->nworkers;
        w->window = window > 0 ? window : 1;
        // Created here so that a failure is reported at once; the thread start is the memory
        // barrier ZeroMQ asks for when a socket changes threads.
        w->sock = zmq_socket(self->ctx, ZMQ_ROUTER);
        int one = 1, zero = 0, never = -1;
        if (w->sock) {
            // A send to a connection that is gone fails instead of vanishing; no reconnect:
            // the broker would see a new connection, not this one.
            zmq_setsockopt(w->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
            zmq_setsockopt(w->sock, ZMQ_LINGER, &zero, sizeof zero);
            zmq_setsockopt(w->sock, ZMQ_RECONNECT_IVL, &never, sizeof never);
        }
        atomic_store(&w->opening, true); // before the thread, which alone clears it
        int err_no = w->sock ? pthread_create(&w->thread, NULL, s_worker_main, w) : 0;
        if (!w->sock || err_no) {
            snprintf(err, err_size, "cannot start worker %d: %s", k,
                     w->sock ? strerror(err_no) : zmq_strerror(zmq_errno()));
            hop_fleet_destroy(&self);
            return NULL;
        }
        w->running = true;
    }
    return self;
}

void
hop_fleet_close(hop_fleet_t *self)
{
    assert(self);
    if (self->closed)
        return;
    atomic_store(&self->closing, true);
    for (int k = 0; k < self->nworkers; k++) {
        s_worker_t *w = &self->workers[k];
        if (w->running)
            pthread_join(w->thread, NULL);
        w->running = false;
        if (w->sock) // never started
            zmq_close(w->sock);
        w->sock = NULL;
    }
    self->closed = true;
}

void
hop_fleet_destroy(hop_fleet_t **self_p)
{
    assert(self_p);
    hop_fleet_t *self = *self_p;
    if (!self)
        return;
    hop_fleet_close(self);
    for (int k = 0; k < self->nworkers; k++)
        hop_enc_fini(&self->workers[k].enc);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    pthread_mutex_destroy(&self->lock);
    free(self->workers);
    free(self->conns);
    free(self->seen);
    free(self->endpoint);
    free(self->exchange);
    free(self->name);
    free(self);
    *self_p = NULL;
}

void
hop_fleet_stats(hop_fleet_t *self, hop_fleet_stats_t *stats)
{
    assert(self);
    assert(stats);
    memset(stats, 0, sizeof *stats);
    for (int k = 0; k < self->nworkers; k++) {
        s_worker_t *w = &self->workers[k];
        stats->started += atomic_load(&w->started);
        stats->opened += atomic_load(&w->opened);
        stats->failed += atomic_load(&w->failed);
        stats->deliveries += atomic_load(&w->deliveries);
        stats->complete += atomic_load(&w->complete);
        stats->dup += atomic_load(&w->dup);
        stats->bad += atomic_load(&w->bad);
        stats->closed += atomic_load(&w->closed);
        stats->opening |= atomic_load(&w->opening);
    }
}

void
hop_fleet_stop_opening(hop_fleet_t *self)
{
    assert(self);
    atomic_store(&self->stop_open, true);
}

int64_t
hop_fleet_done_at(const hop_fleet_t *self, long i)
{
    assert(self);
    assert(i >= 0 && i < self->config.count);
    return self->conns[i].t_done;
}

int
hop_fleet_error(hop_fleet_t *self, char *buf, size_t size)
{
    assert(self);
    assert(buf && size > 0);
    pthread_mutex_lock(&self->lock);
    snprintf(buf, size, "%s", self->error);
    int rc = self->error_rc;
    pthread_mutex_unlock(&self->lock);
    return rc;
}
