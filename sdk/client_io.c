// sdk/client_io.c - the client's plumbing: the I/O thread that owns the DEALER socket, opening
// and closing connections, and the user-thread receive pump that sorts what the broker sends
// (replies, deliveries, asynchronous errors, heartbeats).
//
// The I/O thread is deliberately thin: it moves frames between the broker and the user thread
// without decoding them, sends a heartbeat whenever it has sent nothing for the negotiated
// interval (so a user thread busy for minutes in a handler keeps the connection alive) and
// reports "LOST" when the broker has been silent for longer than its timeout. All protocol work
// happens on the user thread.
#include "client_internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

struct hop_client_io {
    void *dealer;     // the broker connection; owned by the I/O thread while it runs
    void *pipe;       // user end of the data pipe
    void *ctrl;       // user end of the control pipe
    void *pipe_io;    // I/O thread end of the data pipe
    void *ctrl_io;    // I/O thread end of the control pipe
    int heartbeat_ms; // send a heartbeat after this long without sending
    int timeout_ms;   // report LOST after this long without hearing the broker
    pthread_t thread; // runs s_io_run
    zmq_msg_t out[2]; // message taken from the pipe, not yet accepted by the DEALER
    int out_frames;   // frames in out (0 = none pending)
    int out_sent;     // frames of out already sent
};

// {cmd:"heartbeat"} in msgpack, written once by hand so the I/O thread needs no encoder.
static const uint8_t s_heartbeat[] = {0x81, 0xa3, 'c', 'm', 'd', 0xa9, 'h', 'e',
                                      'a',  'r',  't', 'b', 'e', 'a',  't'};

#define S_BATCH 1024 // messages moved per direction per loop turn, for fairness

// ---------------------------------------------------------------------------------------
// Process-wide context

static pthread_mutex_t s_ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static void *s_ctx;           // shared by every client of the process
static int s_ctx_refs;        // clients alive
static unsigned s_pipe_count; // makes inproc endpoint names unique

int64_t
hop_client_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void *
hop_client_ctx_ref(void)
{
    pthread_mutex_lock(&s_ctx_lock);
    if (s_ctx_refs++ == 0) {
        s_ctx = zmq_ctx_new();
        if (!s_ctx)
            abort(); // out of memory or file descriptors: nothing sensible to do
        // Never let a socket with unsent messages hang the last hop_client_destroy.
        zmq_ctx_set(s_ctx, ZMQ_BLOCKY, 0);
        // Each client holds five sockets (its DEALER and two inproc pipes): let the process
        // open as many clients as its file-descriptor limit allows, not libzmq's 1,023.
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 1024)
            zmq_ctx_set(s_ctx, ZMQ_MAX_SOCKETS, rl.rlim_cur > 1000000 ? 1000000 : (int)rl.rlim_cur);
    }
    void *ctx = s_ctx;
    pthread_mutex_unlock(&s_ctx_lock);
    return ctx;
}

void
hop_client_ctx_unref(void)
{
    pthread_mutex_lock(&s_ctx_lock);
    assert(s_ctx_refs > 0);
    if (--s_ctx_refs == 0) {
        // Terminated with the last client so that valgrind and LSan see no ZeroMQ threads or
        // buffers left behind.
        zmq_ctx_term(s_ctx);
        s_ctx = NULL;
    }
    pthread_mutex_unlock(&s_ctx_lock);
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

static int
s_map_code(uint64_t code)
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
    return hop_client_fail(self, s_map_code(wire->code), code, "broker: %d %s: %.*s", code,
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
// The I/O thread

// True when frame is exactly {cmd:"heartbeat"}, whatever width the map header was written in.
// A byte comparison on tiny frames, not a decode: the I/O thread stays thin.
static bool
s_is_heartbeat(zmq_msg_t *frame)
{
    const uint8_t *p = zmq_msg_data(frame);
    size_t size = zmq_msg_size(frame);
    size_t tail = sizeof s_heartbeat - 1; // the key/value pair after fixmap 0x81
    if (size <= tail || size > tail + 5 || memcmp(p + size - tail, s_heartbeat + 1, tail) != 0)
        return false;
    static const uint8_t map1[3][5] = {{0x81}, {0xde, 0, 1}, {0xdf, 0, 0, 0, 1}};
    static const size_t map1_size[3] = {1, 3, 5};
    for (int i = 0; i < 3; i++)
        if (size - tail == map1_size[i] && memcmp(p, map1[i], map1_size[i]) == 0)
            return true;
    return false;
}

// Moves one broker message after another into the pipe. Broker heartbeats count as signs of
// life but stop here, so a client that makes no call for hours does not pile them up in the
// pipe. Returns messages heard.
static int
s_io_from_broker(hop_client_io_t *self)
{
    int moved = 0;
    bool first = true; // the next frame starts a message
    while (moved < S_BATCH || !first) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, self->dealer, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&frame);
            break;
        }
        // Later frames of a multipart message are already here: ZeroMQ delivers it whole.
        bool more = zmq_msg_more(&frame);
        if (first && !more && s_is_heartbeat(&frame)) {
            zmq_msg_close(&frame);
            moved++;
            continue;
        }
        if (zmq_msg_send(&frame, self->pipe_io, more ? ZMQ_SNDMORE : 0) < 0)
            zmq_msg_close(&frame); // only when the context is ending
        first = !more;
        if (!more)
            moved++;
    }
    return moved;
}

// Moves user messages into the DEALER until it would block. A message the DEALER refuses
// (ZMQ_IMMEDIATE: no live connection) stays in out, and the pipe is not read until it goes:
// the pipe then buffers, and the broker-silence timeout decides. Returns messages sent.
static int
s_io_to_broker(hop_client_io_t *self)
{
    int sent = 0;
    while (sent < S_BATCH) {
        if (self->out_frames == 0) {
            if (zmq_msg_recv(&self->out[0], self->pipe_io, ZMQ_DONTWAIT) < 0)
                break;
            self->out_frames = 1;
            self->out_sent = 0;
            bool more = zmq_msg_more(&self->out[0]);
            if (more) {
                zmq_msg_recv(&self->out[1], self->pipe_io, 0);
                self->out_frames = 2;
                more = zmq_msg_more(&self->out[1]);
            }
            assert(!more); // the user side writes one or two frames, never more
        }
        while (self->out_sent < self->out_frames) {
            int i = self->out_sent;
            int flags = ZMQ_DONTWAIT | (i + 1 < self->out_frames ? ZMQ_SNDMORE : 0);
            if (zmq_msg_send(&self->out[i], self->dealer, flags) < 0)
                return sent; // would block: keep it for when the DEALER is writable
            self->out_sent++;
        }
        self->out_frames = 0;
        sent++;
    }
    return sent;
}

static void *
s_io_run(void *arg)
{
    hop_client_io_t *self = arg;
    int64_t now = hop_client_now();
    int64_t last_sent = now;  // heartbeat when nothing was sent for heartbeat_ms
    int64_t last_heard = now; // LOST when nothing was heard for timeout_ms
    bool lost = false;
    zmq_pollitem_t items[3] = {{self->ctrl_io, 0, ZMQ_POLLIN, 0},
                               {self->dealer, 0, ZMQ_POLLIN, 0},
                               {self->pipe_io, 0, ZMQ_POLLIN, 0}};
    while (true) {
        bool pending = self->out_frames > 0;
        // With a message held back, wait for the DEALER to become writable instead of reading
        // the pipe; no heartbeat is due then (one could not be sent either).
        items[1].events = ZMQ_POLLIN | (pending ? ZMQ_POLLOUT : 0);
        items[2].events = pending ? 0 : ZMQ_POLLIN;
        int64_t wake = -1;
        if (!pending)
            wake = last_sent + self->heartbeat_ms;
        if (!lost && (wake < 0 || last_heard + self->timeout_ms < wake))
            wake = last_heard + self->timeout_ms;
        long timeout = wake < 0 ? -1 : wake > now ? (long)(wake - now) : 0;
        int rc = zmq_poll(items, 3, timeout);
        if (rc < 0 && errno != EINTR)
            break; // the context is being terminated
        now = hop_client_now();
        if (rc > 0) {
            if (items[0].revents & ZMQ_POLLIN)
                break; // TERM is the only message the user side sends here
            if ((items[1].revents & ZMQ_POLLIN) && s_io_from_broker(self) > 0)
                last_heard = now;
            if (((items[1].revents & ZMQ_POLLOUT) || (items[2].revents & ZMQ_POLLIN)) &&
                s_io_to_broker(self) > 0)
                last_sent = now;
        }
        if (!lost && now - last_heard >= self->timeout_ms) {
            lost = true; // said once; the user side shuts the connection when it reads it
            zmq_send(self->ctrl_io, "LOST", 4, ZMQ_DONTWAIT);
        }
        if (self->out_frames == 0 && now - last_sent >= self->heartbeat_ms) {
            // Not sendable (no live connection) counts as sent: retry next interval, not in a
            // busy loop.
            zmq_send(self->dealer, s_heartbeat, sizeof s_heartbeat, ZMQ_DONTWAIT);
            last_sent = now;
        }
    }
    zmq_close(self->dealer);
    zmq_close(self->pipe_io);
    zmq_close(self->ctrl_io);
    return NULL;
}

// Creates a PAIR socket with unbounded buffers (the pipes are bounded by prefetch upstream)
// and no linger (whatever is left in a pipe at teardown is dropped on purpose).
static void *
s_pair(void *ctx)
{
    void *sock = zmq_socket(ctx, ZMQ_PAIR);
    if (!sock)
        return NULL;
    int zero = 0;
    zmq_setsockopt(sock, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    return sock;
}

// Connects two PAIR sockets over a fresh inproc endpoint. Returns 0 or -1.
static int
s_pipe(void *ctx, void **a_p, void **b_p)
{
    pthread_mutex_lock(&s_ctx_lock);
    unsigned n = s_pipe_count++;
    pthread_mutex_unlock(&s_ctx_lock);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://hopper-client-%u", n);
    void *a = s_pair(ctx), *b = s_pair(ctx);
    if (!a || !b || zmq_bind(a, endpoint) || zmq_connect(b, endpoint)) {
        if (a)
            zmq_close(a);
        if (b)
            zmq_close(b);
        return -1;
    }
    *a_p = a;
    *b_p = b;
    return 0;
}

// Starts the I/O thread on a connected DEALER. Takes the DEALER on success only.
static hop_client_io_t *
s_io_new(void *ctx, void *dealer, int heartbeat_ms, int timeout_ms)
{
    hop_client_io_t *self = calloc(1, sizeof *self);
    if (!self)
        abort();
    self->dealer = dealer;
    self->heartbeat_ms = heartbeat_ms;
    self->timeout_ms = timeout_ms;
    zmq_msg_init(&self->out[0]);
    zmq_msg_init(&self->out[1]);
    if (s_pipe(ctx, &self->pipe, &self->pipe_io) == 0) {
        if (s_pipe(ctx, &self->ctrl, &self->ctrl_io) == 0) {
            // The DEALER moves to the new thread; pthread_create is the full memory barrier
            // ZeroMQ asks for when a socket changes threads.
            if (pthread_create(&self->thread, NULL, s_io_run, self) == 0)
                return self;
            zmq_close(self->ctrl);
            zmq_close(self->ctrl_io);
        }
        zmq_close(self->pipe);
        zmq_close(self->pipe_io);
    }
    zmq_msg_close(&self->out[0]);
    zmq_msg_close(&self->out[1]);
    free(self);
    return NULL;
}

static void
s_io_destroy(hop_client_io_t **self_p)
{
    hop_client_io_t *self = *self_p;
    if (!self)
        return;
    zmq_send(self->ctrl, "TERM", 4, 0);
    pthread_join(self->thread, NULL);
    zmq_close(self->pipe);
    zmq_close(self->ctrl);
    zmq_msg_close(&self->out[0]);
    zmq_msg_close(&self->out[1]);
    free(self);
    *self_p = NULL;
}

// ---------------------------------------------------------------------------------------
// Messages on the user side

void
hop_inmsg_close(hop_inmsg_t *self)
{
    zmq_msg_close(&self->header);
    zmq_msg_close(&self->body);
}

// Receives one whole message from sock into msg (no wait). Returns 0, 1 when it had more
// than two frames (the extra frames are dropped), or -1 when nothing was there.
static int
s_inmsg_recv(hop_inmsg_t *msg, void *sock)
{
    zmq_msg_init(&msg->header);
    zmq_msg_init(&msg->body);
    msg->has_body = false;
    if (zmq_msg_recv(&msg->header, sock, ZMQ_DONTWAIT) < 0) {
        hop_inmsg_close(msg);
        return -1;
    }
    if (!zmq_msg_more(&msg->header))
        return 0;
    zmq_msg_recv(&msg->body, sock, 0);
    msg->has_body = true;
    if (!zmq_msg_more(&msg->body))
        return 0;
    bool more = true;
    while (more) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        zmq_msg_recv(&frame, sock, 0);
        more = zmq_msg_more(&frame);
        zmq_msg_close(&frame);
    }
    return 1;
}

static bool s_is_reply(hop_cmd_t cmd);

// Reads only cmd, id, code and text from a header that failed strict decoding. Returns 0 when
// that makes it a reply.
static int
s_wire_lenient(hop_wire_t *wire, const void *data, size_t size)
{
    memset(wire, 0, sizeof *wire);
    wire->requeue = true;
    hop_mp_t mp;
    hop_mp_init(&mp, data, size);
    uint32_t count;
    if (hop_mp_map(&mp, &count))
        return -1;
    for (uint32_t i = 0; i < count; i++) {
        const char *key, *str;
        uint32_t len, str_len;
        if (hop_mp_str(&mp, &key, &len)) {
            if (hop_mp_skip(&mp) || hop_mp_skip(&mp))
                return -1;
            continue;
        }
        if (len == 3 && memcmp(key, "cmd", 3) == 0 && hop_mp_str(&mp, &str, &str_len) == 0)
            wire->cmd = hop_cmd_parse(str, str_len);
        else if (len == 2 && memcmp(key, "id", 2) == 0 && hop_mp_uint(&mp, &wire->id) == 0)
            wire->has |= HOP_F_ID;
        else if (len == 4 && memcmp(key, "code", 4) == 0 && hop_mp_uint(&mp, &wire->code) == 0)
            wire->has |= HOP_F_CODE;
        else if (len == 4 && memcmp(key, "text", 4) == 0 &&
                 hop_mp_str(&mp, &wire->text.ptr, &wire->text.len) == 0)
            wire->has |= HOP_F_TEXT;
        else if (hop_mp_skip(&mp))
            return -1;
    }
    return hop_mp_at_end(&mp) && s_is_reply(wire->cmd) ? 0 : -1;
}

// Decodes msg's header. Returns 0 or -1 with a reason in err. A reply with a wrongly typed
// field (a broker newer or buggier than us) is still matched to its request by cmd and id, so
// that the request fails or succeeds on its own instead of timing out; callers then see only
// cmd, id, code and text.
static int
s_inmsg_decode(hop_inmsg_t *msg, char *err, size_t err_size)
{
    const void *data = zmq_msg_data(&msg->header);
    size_t size = zmq_msg_size(&msg->header);
    int code = hop_wire_decode(&msg->wire, data, size, err, err_size);
    if (code == HOP_CODE_SYNTAX_ERROR && s_wire_lenient(&msg->wire, data, size) == 0)
        return 0;
    return code ? -1 : 0;
}

static bool
s_is_reply(hop_cmd_t cmd)
{
    switch (cmd) {
    case HOP_CMD_HELLO_OK:
    case HOP_CMD_CLOSE_OK:
    case HOP_CMD_OK:
    case HOP_CMD_QUEUE_OK:
    case HOP_CMD_CONSUME_OK:
    case HOP_CMD_GET_OK:
    case HOP_CMD_GET_EMPTY:
    case HOP_CMD_LIST_OK:
    case HOP_CMD_STATUS_OK:
    case HOP_CMD_ERROR:
        return true;
    default:
        return false;
    }
}

// ---------------------------------------------------------------------------------------
// Opening and closing

// Sends hello on a fresh DEALER and waits for hello-ok until deadline.
static int
s_hello(hop_client_t *self, void *dealer, int64_t deadline)
{
    uint64_t id = self->next_id++;
    hop_enc_begin(&self->enc, HOP_CMD_HELLO);
    hop_enc_uint(&self->enc, "id", id);
    hop_enc_uint(&self->enc, "version", HOP_PROTOCOL_VERSION);
    if (self->heartbeat_ms > 0)
        hop_enc_uint(&self->enc, "heartbeat", (uint64_t)self->heartbeat_ms);
    if (self->name)
        hop_enc_cstr(&self->enc, "name", self->name);
    size_t size;
    const void *header = hop_enc_end(&self->enc, &size);
    if (zmq_send(dealer, header, size, ZMQ_DONTWAIT) < 0)
        return hop_client_fail(self, HOP_ECONNECT, 0, "cannot send hello to %s: %s", self->endpoint,
                               zmq_strerror(errno));
    zmq_pollitem_t item = {dealer, 0, ZMQ_POLLIN, 0};
    for (;;) {
        int64_t left = deadline - hop_client_now();
        if (left <= 0 || zmq_poll(&item, 1, (long)left) == 0)
            return hop_client_fail(self, HOP_ECONNECT, 0,
                                   "broker at %s did not answer hello within %d ms", self->endpoint,
                                   self->timeout_ms);
        hop_inmsg_t msg;
        if (s_inmsg_recv(&msg, dealer) < 0)
            continue; // EINTR or a spurious wake-up
        char err[128];
        if (s_inmsg_decode(&msg, err, sizeof err)) {
            hop_inmsg_close(&msg);
            return hop_client_fail(self, HOP_EPROTO, 0, "bad answer to hello from %s: %s",
                                   self->endpoint, err);
        }
        const hop_wire_t *w = &msg.wire;
        if (!s_is_reply(w->cmd) || w->id != id) {
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
    void *dealer = zmq_socket(self->ctx, ZMQ_DEALER);
    if (!dealer)
        return hop_client_fail(self, HOP_ECONNECT, 0, "cannot create a socket: %s",
                               zmq_strerror(errno));
    // LINGER 0: by the time we close, close-ok has confirmed everything we sent, or the
    // broker is gone. HWM 0: prefetch is the flow control. IMMEDIATE: nothing queues for a
    // broker we are not connected to, so an unreachable broker shows as a timeout.
    int zero = 0, one = 1;
    zmq_setsockopt(dealer, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(dealer, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(dealer, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt(dealer, ZMQ_IMMEDIATE, &one, sizeof one);
    if (zmq_connect(dealer, self->endpoint)) {
        int err = errno;
        zmq_close(dealer);
        return hop_client_fail(self, HOP_EINVAL, 0, "invalid broker endpoint '%s': %s",
                               self->endpoint, zmq_strerror(err));
    }
    // With ZMQ_IMMEDIATE the DEALER turns writable once the connection is up.
    zmq_pollitem_t item = {dealer, 0, ZMQ_POLLOUT, 0};
    int rc = 0;
    for (;;) {
        int64_t left = deadline - hop_client_now();
        if (left <= 0)
            break;
        rc = zmq_poll(&item, 1, (long)left);
        if (rc > 0 || (rc < 0 && errno != EINTR))
            break;
    }
    if (rc <= 0) {
        zmq_close(dealer);
        return hop_client_fail(self, HOP_ECONNECT, 0,
                               "cannot reach broker at %s within %d ms (is hopperd running?)",
                               self->endpoint, self->timeout_ms);
    }
    rc = s_hello(self, dealer, deadline);
    if (rc) {
        zmq_close(dealer);
        return rc;
    }
    self->io = s_io_new(self->ctx, dealer, self->broker_heartbeat, self->broker_timeout);
    if (!self->io) {
        zmq_close(dealer);
        return hop_client_fail(self, HOP_ECONNECT, 0, "cannot start the I/O thread: %s",
                               zmq_strerror(errno));
    }
    self->pipe = self->io->pipe;
    self->ctrl = self->io->ctrl;
    self->gen = (uint64_t)(self->opens++ & 0xffff) << HOP_TAG_GEN_SHIFT;
    self->lost = false;
    return HOP_OK;
}

void
hop_client_shut(hop_client_t *self)
{
    s_io_destroy(&self->io);
    self->pipe = NULL;
    self->ctrl = NULL;
    // Buffered deliveries die with their connection: the broker returns them to their queues
    // and their tags mean nothing on the next connection.
    hop_delivery_t *d;
    while ((d = hop_client_pop(self)))
        hop_delivery_destroy(&d);
    hop_delivery_destroy(&self->reply_slot);
    self->async_rc = 0;
    self->async_more = 0;
}

int
hop_client_lost(hop_client_t *self, int code, const char *fmt, ...)
{
    hop_client_shut(self);
    self->lost = true;
    va_list args;
    va_start(args, fmt);
    s_vfail(self, HOP_ECONNECT, code, fmt, args);
    va_end(args);
    return HOP_ECONNECT;
}

// ---------------------------------------------------------------------------------------
// Sending and receiving on the user thread

int
hop_client_send(hop_client_t *self, const void *header, size_t header_size, const void *body,
                size_t body_size, bool has_body)
{
    assert(self->pipe);
    // The pipe has no high-water mark, so these never block; zmq_send copies into a frame
    // that then travels to the broker without another copy.
    if (zmq_send(self->pipe, header, header_size, has_body ? ZMQ_SNDMORE : 0) < 0 ||
        (has_body && zmq_send(self->pipe, body_size ? body : "", body_size, 0) < 0))
        return hop_client_lost(self, 0, "cannot pass a message to the I/O thread: %s",
                               zmq_strerror(errno));
    return HOP_OK;
}

// Takes a delivery's tag into this connection's generation.
static uint64_t
s_tag(const hop_client_t *self, uint64_t tag)
{
    return (tag & HOP_TAG_MASK) | self->gen;
}

// Sorts one message that is not an awaited reply. Returns 0, or HOP_ECONNECT when it says
// the broker forgot this connection.
static int
s_absorb(hop_client_t *self, hop_inmsg_t *msg)
{
    const hop_wire_t *w = &msg->wire;
    switch (w->cmd) {
    case HOP_CMD_DELIVER: {
        hop_delivery_t *d = hop_delivery_parse(w, msg->has_body ? &msg->body : NULL);
        d->tag = s_tag(self, d->tag);
        if (self->reply_tag[0] && strcmp(d->consumer, self->reply_tag) == 0) {
            // A reply: the one hop_client_request waits for, or a late one it gave up on.
            const char *corr = d->props.correlation_id;
            if (self->await_corr && !self->reply_slot && corr &&
                strcmp(corr, self->await_corr) == 0)
                self->reply_slot = d;
            else
                hop_delivery_destroy(&d);
        } else
            hop_client_push(self, d);
        return 0;
    }
    case HOP_CMD_ERROR:
        if (w->code == HOP_CODE_UNEXPECTED_FRAME) {
            // The broker no longer knows our routing id: it restarted, or it declared us dead.
            return hop_client_lost(self, HOP_CODE_UNEXPECTED_FRAME,
                                   "connection to %s lost: the broker no longer knows this "
                                   "connection (restarted?): %.*s",
                                   self->endpoint, (int)w->text.len,
                                   w->text.ptr ? w->text.ptr : "");
        }
        hop_client_async(self, s_map_code(w->code), (int)(w->code > 999 ? 999 : w->code),
                         "broker: %d %s: %.*s", (int)(w->code > 999 ? 999 : w->code),
                         hop_code_name((int)w->code), (int)w->text.len,
                         w->text.ptr ? w->text.ptr : "");
        return 0;
    case HOP_CMD_CANCELLED:
        if (self->reply_tag[0] && w->consumer.len == strlen(self->reply_tag) &&
            memcmp(w->consumer.ptr, self->reply_tag, w->consumer.len) == 0) {
            self->reply_queue[0] = '\0'; // made again by the next request
            self->reply_tag[0] = '\0';
            return 0;
        }
        hop_client_forget(self, w->consumer.ptr, w->consumer.len);
        // Reported like an error so that a consumer loop learns why deliveries stopped.
        hop_client_async(self, HOP_ENOTFOUND, 0,
                         "consumer '%.*s' was cancelled by the broker (its queue was deleted)",
                         (int)w->consumer.len, w->consumer.ptr ? w->consumer.ptr : "");
        return 0;
    case HOP_CMD_GET_OK:
        // The answer to a get that timed out. Its message stays unacked until the connection
        // ends (then it is requeued): we cannot tell whether it was a no-ack get, and
        // rejecting a no-ack tag would earn a spurious 406.
        return 0;
    default:
        return 0; // heartbeats, replies to requests that timed out, newer commands
    }
}

int
hop_client_step(hop_client_t *self, int64_t deadline, const uint64_t *awaited, hop_inmsg_t *msg)
{
    if (!self->io)
        return hop_client_fail(self, HOP_ECLOSED, 0, "not connected");
    zmq_pollitem_t items[2] = {{self->ctrl, 0, ZMQ_POLLIN, 0}, {self->pipe, 0, ZMQ_POLLIN, 0}};
    int64_t now = hop_client_now();
    long wait = deadline < 0 ? -1 : deadline > now ? (long)(deadline - now) : 0;
    int rc = zmq_poll(items, 2, wait);
    if (rc < 0)
        return errno == EINTR ? 0
                              : hop_client_lost(self, 0, "cannot poll: %s", zmq_strerror(errno));
    if (rc == 0)
        return HOP_ETIMEOUT;
    if (items[0].revents & ZMQ_POLLIN)
        return hop_client_lost(self, 0,
                               "connection to %s lost: nothing heard from the broker for %d ms",
                               self->endpoint, self->broker_timeout);
    int frames = s_inmsg_recv(msg, self->pipe);
    if (frames < 0)
        return 0;
    char err[128];
    if (frames > 0 || s_inmsg_decode(msg, err, sizeof err)) {
        hop_client_async(self, HOP_EPROTO, 0, "the broker sent an undecodable message: %s",
                         frames > 0 ? "more than two frames" : err);
        hop_inmsg_close(msg);
        return 0;
    }
    if (awaited && s_is_reply(msg->wire.cmd) && msg->wire.id == *awaited)
        return 1; // a missing id reads as 0, which is what the broker uses for undecodable input
    rc = s_absorb(self, msg);
    hop_inmsg_close(msg);
    return rc;
}

// ZMQ_EVENTS reads a socket's state without a system call in the common case.
static bool
s_readable(void *sock)
{
    int events = 0;
    size_t size = sizeof events;
    return zmq_getsockopt(sock, ZMQ_EVENTS, &events, &size) == 0 && (events & ZMQ_POLLIN);
}

void
hop_client_drain(hop_client_t *self)
{
    // With deliveries already buffered, hand those out first: reading more now would let a
    // flood grow the buffer while the application sees one message per batch.
    if (self->head)
        return;
    // Bounded so that a fast stream of deliveries cannot keep a publish from returning.
    for (int i = 0; i < S_BATCH && self->io; i++) {
        if (!s_readable(self->ctrl) && !s_readable(self->pipe))
            break;
        hop_inmsg_t msg;
        if (hop_client_step(self, 0, NULL, &msg) < 0)
            break;
    }
}

// ---------------------------------------------------------------------------------------
// Delivery FIFO and consumer records

void
hop_client_push(hop_client_t *self, hop_delivery_t *delivery)
{
    hop_delivery_node_t *node = (hop_delivery_node_t *)delivery;
    node->next = NULL;
    if (self->tail)
        self->tail->next = node;
    else
        self->head = node;
    self->tail = node;
}

hop_delivery_t *
hop_client_pop(hop_client_t *self)
{
    hop_delivery_node_t *node = self->head;
    if (!node)
        return NULL;
    self->head = node->next;
    if (!self->head)
        self->tail = NULL;
    node->next = NULL;
    return &node->pub;
}

void
hop_client_forget(hop_client_t *self, const char *tag, size_t tag_len)
{
    for (hop_consumer_rec_t **at = &self->consumers; *at; at = &(*at)->next) {
        hop_consumer_rec_t *rec = *at;
        if (strlen(rec->tag) == tag_len && memcmp(rec->tag, tag, tag_len) == 0) {
            *at = rec->next;
            free(rec);
            return;
        }
    }
}
