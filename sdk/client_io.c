// sdk/client_io.c - the client's connection: the process-wide count of clients, errors,
// opening and closing connections, the user thread's socket operations (receive, wait, liveness)
// and the I/O thread that keeps a connection alive while the user thread is away. Who owns the
// socket when, and how publishes are batched, is client_io.h's header comment; the outbox itself is
// client_outbox.c.
//
// The user thread sends and receives on the socket itself (zmtp.h): a publish is a write on the
// caller's thread and a delivery is read by the thread that asked for it, with no hand-off
// between threads on the way (the hand-offs were most of a message's latency). The I/O thread
// is a watchdog and a flusher: it sends a heartbeat whenever nothing was sent for the
// negotiated interval (so a user thread busy for minutes in a handler keeps the connection
// alive), reads what arrives while nobody else does (so broker heartbeats count as signs of life
// and do not pile up), says the broker is lost when it was silent for longer than its timeout,
// and sends what a fast publisher left in the outbox.
#define _GNU_SOURCE // ppoll: the flusher naps for tens of microseconds
#include "client_io.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

// {cmd:"heartbeat"} in msgpack, written once by hand.
static const uint8_t s_heartbeat[] = {0x81, 0xa3, 'c', 'm', 'd', 0xa9, 'h', 'e',
                                      'a',  'r',  't', 'b', 'e', 'a',  't'};

// ---------------------------------------------------------------------------------------
// Process-wide

static pthread_mutex_t s_proc_lock = PTHREAD_MUTEX_INITIALIZER;
static int s_clients; // clients alive

uint64_t
hop_io_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t
hop_client_now(void)
{
    return (int64_t)(hop_io_now_ns() / 1000000u);
}

void
hop_io_failed(hop_client_io_t *self)
{
    if (!self->error)
        self->error = errno;
    self->lost = true;
}

void
hop_client_proc_ref(void)
{
    pthread_mutex_lock(&s_proc_lock);
    s_clients++;
    pthread_mutex_unlock(&s_proc_lock);
}

void
hop_client_proc_unref(void)
{
    pthread_mutex_lock(&s_proc_lock);
    assert(s_clients > 0);
    if (--s_clients == 0)
        hop_batch_buf_trim(); // an idle process keeps no batch buffers (valgrind and LSan see none)
    pthread_mutex_unlock(&s_proc_lock);
}

// ---------------------------------------------------------------------------------------
// Errors

static int
s_vfail(hop_client_t *self, int rc, int code, const char *fmt, va_list args)
{
    vsnprintf(self->error, sizeof self->error, fmt, args);
    self->error_code = code;
    return rc;
}

int
hop_client_fail(hop_client_t *self, int rc, int code, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    s_vfail(self, rc, code, fmt, args);
    va_end(args);
    return rc;
}

int
hop_client_map_code(uint64_t code)
{
    switch (code) {
    case HOP_CODE_NOT_FOUND:
        return HOP_ENOTFOUND;
    case HOP_CODE_ACCESS_REFUSED:
    case HOP_CODE_RESOURCE_LOCKED:
        return HOP_EREFUSED;
    case HOP_CODE_PRECONDITION_FAILED:
        return HOP_EPRECOND;
    default:
        return HOP_EBROKER;
    }
}

int
hop_client_broker_error(hop_client_t *self, const hop_wire_t *wire)
{
    int code = wire->code > 999 ? 999 : (int)wire->code;
    return hop_client_fail(self, hop_client_map_code(wire->code), code, "broker: %d %s: %.*s", code,
                           hop_code_name(code), (int)wire->text.len,
                           wire->text.ptr ? wire->text.ptr : "");
}

// Asynchronous errors: the broker's answer to a command that has no reply on success (publish,
// ack, nack, reject) or to a request we stopped waiting for. The first is kept until a call
// reports it (see "Asynchronous errors" in client.c); later ones only add to a count, because
// the first usually explains the rest.
void
hop_client_async(hop_client_t *self, int rc, int code, const char *fmt, ...)
{
    if (self->async_rc) {
        self->async_more++;
        return;
    }
    va_list args;
    va_start(args, fmt);
    vsnprintf(self->async_text, sizeof self->async_text, fmt, args);
    va_end(args);
    self->async_rc = rc;
    self->async_code = code;
    // Readable at once through hop_client_error, even before a call returns it.
    snprintf(self->error, sizeof self->error, "%s", self->async_text);
    self->error_code = code;
}

int
hop_client_take_async(hop_client_t *self)
{
    int rc = self->async_rc;
    if (!rc)
        return HOP_OK;
    if (self->async_more)
        hop_client_fail(self, rc, self->async_code, "%s (and %u more asynchronous errors)",
                        self->async_text, self->async_more);
    else
        hop_client_fail(self, rc, self->async_code, "%s", self->async_text);
    self->async_rc = 0;
    self->async_more = 0;
    return rc;
}

// ---------------------------------------------------------------------------------------
// Liveness, done by whichever thread holds the socket and has read the clock

static void
s_liveness(hop_client_io_t *self, int64_t now)
{
    if (self->rx != self->rx_seen) {
        self->rx_seen = self->rx;
        self->heard_at = now;
    }
    if (self->tx != self->tx_seen) {
        self->tx_seen = self->tx;
        self->sent_at = now;
    }
    // A message held back (no live connection, or the pipe full) goes first; a heartbeat could
    // not be sent then either.
    if (self->out_frames == 0 && now - self->sent_at >= self->heartbeat_ms) {
        // Not sendable (the socket is full or failed) counts as sent: retry next interval,
        // not in a busy loop.
        struct iovec hb = {(void *)s_heartbeat, sizeof s_heartbeat};
        hop_zmtp_send(self->conn, &hb, 1);
        self->sent_at = now;
    }
    if (now - self->heard_at >= self->timeout_ms)
        self->lost = true; // the user thread shuts the connection once it has read the rest
}

// Before the user thread lets go of the socket: messages left in the outbox are the I/O
// thread's to send (its wake-up is the batching window), unless the user thread comes back
// first.
static void
s_release(hop_client_io_t *self)
{
    if (hop_io_pending(self) && !atomic_load_explicit(&self->watching, memory_order_relaxed)) {
        atomic_store(&self->watching, true);
        char c = 0;
        if (write(self->wake[1], &c, 1) < 0) {
            // Full: the I/O thread has wake-ups waiting already.
        }
    }
    pthread_mutex_unlock(&self->lock);
}

// ---------------------------------------------------------------------------------------
// The I/O thread

// Half a heartbeat interval: how often the watchdog looks, and the longest a user thread
// waits in one poll while holding the socket.
static int
s_half(const hop_client_io_t *self)
{
    return self->heartbeat_ms > 1 ? self->heartbeat_ms / 2 : 1;
}

// The I/O thread's turn with the socket. Returns whether it wrote what a user thread that went
// away left in the outbox.
static bool
s_duties(hop_client_io_t *self)
{
    // Nobody read since the last look: the user thread is away (or only publishes). What
    // arrived is read now, so that broker heartbeats count and nothing piles up.
    if (self->rx == self->rx_seen)
        hop_io_read_ahead(self);
    // The outbox goes once its oldest message is older than a calling user thread lets it get
    // (so never while one is busy publishing), or when the socket could not take all of it.
    bool wrote = false;
    if (hop_io_pending(self) && (self->out_frames > 0 || hop_zmtp_pending(self->conn) ||
                                 hop_io_now_ns() - self->box_since >= HOP_IO_PACE_NS))
        wrote = hop_io_flush(self) > 0;
    s_liveness(self, hop_client_now());
    return wrote;
}

static void *
s_io_run(void *arg)
{
    hop_client_io_t *self = arg;
    // Naps of tens of microseconds mean nothing with the default 50 us timer slack.
    prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
    uint64_t nap = HOP_IO_PACE_NS; // while watching: until the next look at the outbox
    bool wait_out = false;         // the socket did not take everything: wait until it can
    while (!atomic_load(&self->term)) {
        bool watch = atomic_load(&self->watching);
        uint64_t wait = watch ? nap : (uint64_t)s_half(self) * 1000000u;
        struct timespec ts = {(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
        struct pollfd fds[2] = {{self->wake[0], POLLIN, 0}, {self->fd, POLLOUT, 0}};
        int n = ppoll(fds, wait_out ? 2 : 1, &ts, NULL);
        if (atomic_load(&self->term))
            break;
        if (n > 0 && (fds[0].revents & POLLIN)) {
            char buf[64];
            while (read(self->wake[0], buf, sizeof buf) > 0)
                ;
            if (!watch)
                nap = HOP_IO_PACE_NS; // woken for a new outbox: first look soon
        }
        uint64_t longer = nap * 2 < HOP_IO_NAP_MAX_NS ? nap * 2 : HOP_IO_NAP_MAX_NS;
        if (pthread_mutex_trylock(&self->lock) != 0) {
            // The user thread is in a call: it does the duties and writes the outbox itself.
            // Nor is the socket ours to wait on: a writable socket would end every nap at
            // once, and this thread would spin against a busy publisher (half a core).
            nap = longer;
            wait_out = false;
            continue;
        }
        bool wrote = s_duties(self);
        wait_out = (self->out_frames > 0 || hop_zmtp_pending(self->conn)) && !self->error;
        if (atomic_load(&self->watching)) {
            if (wrote || wait_out)
                nap = HOP_IO_PACE_NS; // the user thread is away: keep looking often
            else if (!hop_io_pending(self) && nap >= HOP_IO_NAP_MAX_NS)
                atomic_store(&self->watching, false); // nothing for a while: sleep until woken
            else
                nap = longer; // the user thread writes its outbox itself
        }
        pthread_mutex_unlock(&self->lock);
    }
    return NULL;
}

// Starts the I/O thread on an open connection. Takes the connection on success only.
static hop_client_io_t *
s_io_new(hop_zmtp_t *conn, int heartbeat_ms, int timeout_ms)
{
    hop_client_io_t *self = calloc(1, sizeof *self);
    if (!self)
        abort();
    self->conn = conn;
    self->fd = hop_zmtp_fd(conn);
    self->heartbeat_ms = heartbeat_ms;
    self->timeout_ms = timeout_ms;
    for (int i = 0; i < 2; i++)
        zmq_msg_init(&self->out[i]);
    self->heard_at = self->sent_at = hop_client_now();
    atomic_init(&self->term, false);
    atomic_init(&self->watching, false);
    pthread_mutex_init(&self->lock, NULL);
    if (pipe(self->wake) == 0) {
        for (int i = 0; i < 2; i++)
            fcntl(self->wake[i], F_SETFL, fcntl(self->wake[i], F_GETFL) | O_NONBLOCK);
        if (pthread_create(&self->thread, NULL, s_io_run, self) == 0)
            return self;
        close(self->wake[0]);
        close(self->wake[1]);
    }
    pthread_mutex_destroy(&self->lock);
    free(self);
    return NULL;
}

static void
s_io_destroy(hop_client_io_t **self_p)
{
    hop_client_io_t *self = *self_p;
    if (!self)
        return;
    atomic_store(&self->term, true);
    char c = 0;
    if (write(self->wake[1], &c, 1) < 0) {
        // Full: the thread wakes anyway.
    }
    pthread_join(self->thread, NULL);
    close(self->wake[0]);
    close(self->wake[1]);
    // What is still in the outbox is dropped with its connection.
    hop_io_free_queues(self);
    hop_zmtp_destroy(&self->conn);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

// ---------------------------------------------------------------------------------------
// The user thread's socket operations

// The outbox is full: writes what the socket takes until it is not, waiting for the socket in
// slices of half a heartbeat interval, and reading ahead meanwhile so that the broker's
// heartbeats count. Returns as hop_client_io_put.
static int
s_wait_room(hop_client_io_t *self, int timeout_ms)
{
    int64_t deadline = hop_client_now() + timeout_ms;
    for (;;) {
        hop_io_flush(self);
        if (self->box_bytes < HOP_IO_BOX_MAX)
            return 0;
        int64_t now = hop_client_now();
        s_liveness(self, now);
        if (self->lost)
            return -2;
        if (now >= deadline)
            return -1;
        long wait = s_half(self);
        if (deadline - now < wait)
            wait = (long)(deadline - now);
        struct pollfd item = {self->fd, POLLOUT | POLLIN, 0};
        if (poll(&item, 1, (int)wait) < 0 && errno != EINTR)
            return -3;
        if (item.revents & POLLIN)
            hop_io_read_ahead(self);
    }
}

int
hop_client_io_put(hop_client_io_t *self, const void *header, size_t header_size, const void *body,
                  size_t body_size, bool has_body, bool alone, int timeout_ms)
{
    pthread_mutex_lock(&self->lock);
    int rc = self->box_bytes < HOP_IO_BOX_MAX ? 0 : s_wait_room(self, timeout_ms);
    if (rc == 0)
        hop_io_put(self, header, header_size, body, body_size, has_body, alone);
    int err = errno;
    s_release(self);
    errno = err;
    return rc;
}

int
hop_client_io_recv(hop_client_io_t *self, hop_inmsg_t *msg)
{
    pthread_mutex_lock(&self->lock);
    int rc = hop_io_unstash(self, msg);
    if (rc < 0 && !self->error) {
        rc = hop_inmsg_recv(msg, self->conn);
        if (rc >= 0)
            self->rx++;
        else if (rc == -2)
            hop_io_failed(self);
    }
    if (rc == -1 && self->lost)
        rc = -2; // everything the broker sent before going silent (or closing) was read
    s_release(self);
    return rc;
}

int
hop_client_io_wait(hop_client_io_t *self, int64_t deadline)
{
    pthread_mutex_lock(&self->lock);
    int rc;
    for (;;) {
        if (self->stash_head) {
            rc = 1;
            break;
        }
        // About to wait: what the outbox holds goes now, nothing is gained by holding it. With
        // nothing left, the I/O thread stops looking at the outbox (it would wake every few
        // hundred microseconds for as long as we wait, finding the socket taken).
        if (hop_io_pending(self))
            hop_io_flush(self);
        if (!hop_io_pending(self))
            atomic_store(&self->watching, false);
        int64_t now = hop_client_now();
        s_liveness(self, now);
        if (self->lost) {
            rc = -2;
            break;
        }
        long wait = s_half(self);
        if (deadline >= 0 && deadline - now < wait)
            wait = deadline > now ? (long)(deadline - now) : 0;
        struct pollfd item = {self->fd, (short)(POLLIN | (hop_io_pending(self) ? POLLOUT : 0)), 0};
        int n = poll(&item, 1, (int)wait);
        if (n < 0) {
            rc = -3;
            break;
        }
        if (item.revents & POLLOUT)
            hop_io_flush(self);
        if (item.revents & (POLLIN | POLLHUP | POLLERR)) {
            rc = 1; // a message, or the news that the connection ended: the receive tells
            break;
        }
        if (deadline >= 0 && hop_client_now() >= deadline) {
            rc = 0;
            break;
        }
    }
    int err = errno;
    s_release(self);
    errno = err;
    return rc;
}

int
hop_client_io_error(hop_client_io_t *self)
{
    pthread_mutex_lock(&self->lock);
    int error = self->error;
    pthread_mutex_unlock(&self->lock);
    return error;
}

void
hop_client_io_tick(hop_client_io_t *self)
{
    pthread_mutex_lock(&self->lock);
    s_liveness(self, hop_client_now());
    s_release(self);
}

// ---------------------------------------------------------------------------------------
// Opening and closing

// Sends hello on a fresh connection and waits for hello-ok until deadline.
static int
s_hello(hop_client_t *self, hop_zmtp_t *conn, int64_t deadline)
{
    uint64_t id = self->next_id++;
    hop_enc_begin(&self->enc, HOP_CMD_HELLO);
    hop_enc_uint(&self->enc, "id", id);
    hop_enc_uint(&self->enc, "version", HOP_PROTOCOL_VERSION);
    if (self->heartbeat_ms > 0)
        hop_enc_uint(&self->enc, "heartbeat", (uint64_t)self->heartbeat_ms);
    if (self->name)
        hop_enc_cstr(&self->enc, "name", self->name);
    hop_enc_bool(&self->enc, "batch", true); // we unpack batches (PROTOCOL.md 2.1)
    hop_enc_bool(&self->enc, "flow", true);  // we pause publishing when asked (6.3)
    size_t size;
    const void *header = hop_enc_end(&self->enc, &size);
    struct iovec iov = {(void *)header, size};
    if (hop_zmtp_send(conn, &iov, 1) < 0)
        return hop_client_fail(self, HOP_ECONNECT, 0, "cannot send hello to %s: %s", self->endpoint,
                               strerror(errno));
    for (;;) {
        hop_inmsg_t msg;
        int got = hop_inmsg_recv(&msg, conn);
        if (got == -2)
            return hop_client_fail(self, HOP_ECONNECT, 0,
                                   "broker at %s closed the connection before answering hello: %s",
                                   self->endpoint, strerror(errno));
        if (got == -1) {
            int64_t left = deadline - hop_client_now();
            struct pollfd item = {hop_zmtp_fd(conn), POLLIN, 0};
            if (left <= 0 || (poll(&item, 1, (int)left) == 0 && hop_client_now() >= deadline))
                return hop_client_fail(self, HOP_ECONNECT, 0,
                                       "broker at %s did not answer hello within %d ms",
                                       self->endpoint, self->timeout_ms);
            continue;
        }
        char err[128];
        if (hop_inmsg_decode(&msg, err, sizeof err)) {
            hop_inmsg_close(&msg);
            return hop_client_fail(self, HOP_EPROTO, 0, "bad answer to hello from %s: %s",
                                   self->endpoint, err);
        }
        const hop_wire_t *w = &msg.wire;
        if (!hop_client_is_reply(w->cmd) || w->id != id) {
            hop_inmsg_close(&msg); // not ours: a new socket should see nothing else
            continue;
        }
        int rc = HOP_OK;
        if (w->cmd == HOP_CMD_ERROR)
            rc = hop_client_broker_error(self, w); // 540: the broker's text names its versions
        else if (w->cmd != HOP_CMD_HELLO_OK)
            rc = hop_client_fail(self, HOP_EPROTO, 0, "broker answered hello with '%s'",
                                 hop_cmd_name(w->cmd));
        else {
            // Fall back to the protocol's defaults when a field is missing or absurd.
            uint64_t hb = w->heartbeat ? w->heartbeat : 1000;
            hb = hb > 3600000 ? 3600000 : hb;
            uint64_t timeout = w->timeout ? w->timeout : 5 * hb;
            timeout = timeout > 36000000 ? 36000000 : timeout;
            self->broker_heartbeat = (int)hb;
            self->broker_timeout = (int)timeout;
            self->max_message = w->max_message;
            snprintf(self->server, sizeof self->server, "%.*s", (int)w->server.len,
                     w->server.ptr ? w->server.ptr : "");
        }
        hop_inmsg_close(&msg);
        return rc;
    }
}

int
hop_client_open(hop_client_t *self)
{
    assert(self);
    assert(self->endpoint);
    assert(!self->io);
    int64_t deadline = hop_client_now() + self->timeout_ms;
    char err[256];
    bool invalid;
    hop_zmtp_t *conn = hop_zmtp_connect(self->endpoint, deadline, err, sizeof err, &invalid);
    if (!conn && invalid)
        return hop_client_fail(self, HOP_EINVAL, 0, "invalid broker endpoint '%s': %s",
                               self->endpoint, err);
    if (!conn && errno == ETIMEDOUT)
        return hop_client_fail(self, HOP_ECONNECT, 0,
                               "cannot reach broker at %s within %d ms (is hopperd running?)",
                               self->endpoint, self->timeout_ms);
    if (!conn)
        return hop_client_fail(self, HOP_ECONNECT, 0, "cannot connect to broker at %s: %s",
                               self->endpoint, err);
    int rc = s_hello(self, conn, deadline);
    if (rc) {
        hop_zmtp_destroy(&conn);
        return rc;
    }
    self->io = s_io_new(conn, self->broker_heartbeat, self->broker_timeout);
    if (!self->io) {
        hop_zmtp_destroy(&conn);
        return hop_client_fail(self, HOP_ECONNECT, 0, "cannot start the I/O thread: %s",
                               strerror(errno));
    }
    self->gen = (uint64_t)(self->opens++ & 0xffff) << HOP_TAG_GEN_SHIFT;
    self->lost = false;
    self->paused = false; // a new connection starts unpaused
    return HOP_OK;
}

void
hop_client_shut(hop_client_t *self)
{
    s_io_destroy(&self->io);
    hop_client_batch_end(self); // the rest of a batch dies with its connection
    // Buffered deliveries die with their connection: the broker returns them to their queues
    // and their tags mean nothing on the next connection.
    hop_delivery_t *d;
    while ((d = hop_client_pop(self)))
        hop_delivery_destroy(&d);
    hop_delivery_destroy(&self->reply_slot);
    self->async_rc = 0;
    self->async_more = 0;
    // Revoked tags name deliveries of this connection; the generation check refuses them now.
    self->revoked_used = 0;
    self->revoked_next = 0;
}

int
hop_client_lost(hop_client_t *self, int code, const char *fmt, ...)
{
    // The text first: its arguments may point into a message that shutting frees (the
    // broker's text of a 505 inside a batch).
    va_list args;
    va_start(args, fmt);
    s_vfail(self, HOP_ECONNECT, code, fmt, args);
    va_end(args);
    hop_client_shut(self);
    self->lost = true;
    // Their confirms were lost with the connection: the publishes count as refused.
    hop_client_confirm_lost(self);
    return HOP_ECONNECT;
}
