// sdk/client_io.c - the client's plumbing: the I/O thread that owns the DEALER socket, and
// opening and closing connections, and the outbox the user thread queues messages in. The user
// thread's side of the data pipe is client_recv.c.
//
// The I/O thread is deliberately thin: it moves frames from the broker to the user thread
// without decoding them, takes what the user thread queued in the outbox to the broker, sends a
// heartbeat whenever it has sent nothing for the negotiated interval (so a user thread busy for
// minutes in a handler keeps the connection alive) and reports "LOST" when the broker has been
// silent for longer than its timeout. All protocol work happens on the user thread. Messages the
// user thread queues faster than the I/O thread takes them pile up in one chunk of the outbox and
// go to the broker as one batch (PROTOCOL.md 2.1): one ZeroMQ message and far fewer system calls
// instead of one per message, and on the user thread a lock and a copy instead of two ZeroMQ
// messages (two mallocs) per message.
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

// What the user thread queued for the broker, in order (the outbox): a run of records that
// may go as one batch (count > 0), or one message that travels on its own (count 0: marked
// alone, a large body, or an empty body frame).
typedef struct s_chunk {
    struct s_chunk *next;
    msgpack_sbuffer records; // count > 0: the records, back to back (PROTOCOL.md 2.1)
    uint32_t count;          // records in it; 0 for a message of its own
    zmq_msg_t frame[2];      // count 0: header, body
    int frames;              // count 0: frames in use
} s_chunk_t;

// The message (or batch) the I/O thread is sending.
typedef struct {
    zmq_msg_t frame[2]; // header, body
    int frames;         // 0 = none
} s_outmsg_t;

struct hop_client_io {
    void *dealer;     // the broker connection; owned by the I/O thread while it runs
    void *pipe;       // user end of the data pipe
    void *ctrl;       // user end of the control pipe
    void *pipe_io;    // I/O thread end of the data pipe
    void *ctrl_io;    // I/O thread end of the control pipe
    int heartbeat_ms; // send a heartbeat after this long without sending
    int timeout_ms;   // report LOST after this long without hearing the broker
    pthread_t thread; // runs s_io_run

    // The outbox, shared by both threads under lock. The user thread appends a message to the
    // newest chunk while it has room (one lock, one copy: no ZeroMQ message and no malloc per
    // message); the I/O thread takes the oldest. The pipe then only carries a wake-up (an
    // empty frame), sent when the I/O thread said it found the outbox empty (idle).
    pthread_mutex_t lock;
    s_chunk_t *box_head; // oldest
    s_chunk_t *box_tail; // newest, the one appended to
    s_chunk_t *box_free; // chunks to reuse
    unsigned box_spare;  // chunks in box_free
    bool idle;           // the I/O thread waits for a wake-up before it looks again

    // I/O thread, towards the broker
    s_outmsg_t out;  // the message (or batch) not yet accepted by the DEALER
    int out_sent;    // frames of out already sent
    int out_count;   // user messages in out
    bool box_more;   // the outbox may hold more: look again before waiting
    s_chunk_t *done; // the last chunk taken, back to box_free at the next take
};

// {cmd:"heartbeat"} in msgpack, written once by hand so the I/O thread needs no encoder.
static const uint8_t s_heartbeat[] = {0x81, 0xa3, 'c', 'm', 'd', 0xa9, 'h', 'e',
                                      'a',  'r',  't', 'b', 'e', 'a',  't'};
// {cmd:"batch",count:N} with N as a uint16 in the last two bytes, likewise.
static const uint8_t s_batch_header[] = {0x82, 0xa3, 'c', 'm', 'd', 0xa5, 'b', 'a',  't', 'c',
                                         'h',  0xa5, 'c', 'o', 'u', 'n',  't', 0xcd, 0,   0};

#define S_BATCH         1024       // messages moved per direction per loop turn, for fairness
#define S_BATCH_RECORDS 256        // user messages packed into one batch, at most
#define S_BATCH_BYTES   (64 << 10) // a batch is closed once its records reach this size

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
        hop_batch_buf_trim(); // ZeroMQ gave every batch buffer back by now
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

#define S_SPARE_CHUNKS 4 // chunks kept for reuse

// Puts c's content into m (empty): its own message as it was written, a lone record as the
// plain message it stands for, or a batch. Leaves c empty for reuse.
static void
s_io_unpack(hop_client_io_t *self, s_chunk_t *c, s_outmsg_t *m)
{
    assert(m->frames == 0);
    self->out_count = c->count ? (int)c->count : 1;
    if (c->count == 0) {
        for (int i = 0; i < c->frames; i++)
            zmq_msg_move(&m->frame[i], &c->frame[i]);
        m->frames = c->frames;
        c->frames = 0;
        return;
    }
    zmq_msg_close(&m->frame[0]);
    zmq_msg_close(&m->frame[1]);
    if (c->count == 1) {
        // Nothing came behind it: it goes as if never batched (a record without a body is a
        // message without a body frame; an empty body frame never becomes a record).
        hop_batch_t at;
        const uint8_t *head, *body;
        uint32_t head_size, body_size;
        hop_batch_init(&at, c->records.data, c->records.size);
        int more = hop_batch_next(&at, &head, &head_size, &body, &body_size);
        assert(more > 0);
        (void)more;
        zmq_msg_init_size(&m->frame[0], head_size);
        memcpy(zmq_msg_data(&m->frame[0]), head, head_size);
        m->frames = 1;
        if (body_size) {
            zmq_msg_init_size(&m->frame[1], body_size);
            memcpy(zmq_msg_data(&m->frame[1]), body, body_size);
            m->frames = 2;
        } else
            zmq_msg_init(&m->frame[1]);
        void *hint; // an idle client holds no batch buffer
        void *data = hop_batch_buf_take(&c->records, &hint);
        hop_batch_buf_free(data, hint);
    } else {
        zmq_msg_init_size(&m->frame[0], sizeof s_batch_header);
        uint8_t *header = zmq_msg_data(&m->frame[0]);
        memcpy(header, s_batch_header, sizeof s_batch_header);
        header[sizeof s_batch_header - 2] = (uint8_t)(c->count >> 8);
        header[sizeof s_batch_header - 1] = (uint8_t)c->count;
        // The buffer travels as it is; the chunk takes another from the pool when reused.
        size_t size = c->records.size;
        void *hint;
        void *data = hop_batch_buf_take(&c->records, &hint);
        if (zmq_msg_init_data(&m->frame[1], data, size, hop_batch_buf_free, hint))
            abort(); // out of memory
        m->frames = 2;
    }
    c->count = 0;
}

// Takes the oldest chunk of the outbox into out. Says idle (the user thread then wakes us
// on its next message) when there is none. Returns whether there was one.
static bool
s_io_fill(hop_client_io_t *self)
{
    pthread_mutex_lock(&self->lock);
    if (self->done) {
        if (self->box_spare < S_SPARE_CHUNKS) {
            self->done->next = self->box_free;
            self->box_free = self->done;
            self->box_spare++;
            self->done = NULL;
        }
    }
    s_chunk_t *c = self->box_head;
    if (c) {
        self->box_head = c->next;
        if (!self->box_head)
            self->box_tail = NULL;
    } else
        self->idle = true;
    pthread_mutex_unlock(&self->lock);
    self->box_more = c != NULL;
    if (self->done) { // more spare chunks than we keep
        msgpack_sbuffer_destroy(&self->done->records);
        free(self->done);
        self->done = NULL;
    }
    if (!c)
        return false;
    s_io_unpack(self, c, &self->out);
    self->done = c;
    return true;
}

// Moves user messages into the DEALER until it would block. A message the DEALER refuses
// (ZMQ_IMMEDIATE: no live connection) stays in out, and the outbox is not looked at until it
// goes: the outbox then buffers, and the broker-silence timeout decides. Returns messages
// sent (a batch counts its records).
static int
s_io_to_broker(hop_client_io_t *self)
{
    int sent = 0;
    while (sent < S_BATCH) {
        if (self->out.frames == 0) {
            if (!s_io_fill(self))
                break;
            self->out_sent = 0;
        }
        while (self->out_sent < self->out.frames) {
            int i = self->out_sent;
            int flags = ZMQ_DONTWAIT | (i + 1 < self->out.frames ? ZMQ_SNDMORE : 0);
            if (zmq_msg_send(&self->out.frame[i], self->dealer, flags) < 0)
                return sent; // would block: keep it for when the DEALER is writable
            self->out_sent++;
        }
        self->out.frames = 0;
        sent += self->out_count;
    }
    return sent;
}

// Empties the pipe of the user thread's wake-ups.
static void
s_io_woken(hop_client_io_t *self)
{
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    while (zmq_msg_recv(&frame, self->pipe_io, ZMQ_DONTWAIT) >= 0)
        ;
    zmq_msg_close(&frame);
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
        // A message held back in out: wait for the DEALER to become writable instead of
        // looking at the outbox (a held message must go first); no heartbeat is due then (one
        // could not be sent either).
        bool pending = self->out.frames > 0;
        items[1].events = ZMQ_POLLIN | (pending ? ZMQ_POLLOUT : 0);
        items[2].events = pending ? 0 : ZMQ_POLLIN;
        int64_t wake = -1;
        if (!pending)
            wake = self->box_more ? now : last_sent + self->heartbeat_ms;
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
            if (items[2].revents & ZMQ_POLLIN)
                s_io_woken(self);
        }
        if ((pending ? (rc > 0 && (items[1].revents & ZMQ_POLLOUT))
                     : (self->box_more || (rc > 0 && (items[2].revents & ZMQ_POLLIN)))) &&
            s_io_to_broker(self) > 0)
            last_sent = now;
        if (!lost && now - last_heard >= self->timeout_ms) {
            lost = true; // said once; the user side shuts the connection when it reads it
            zmq_send(self->ctrl_io, "LOST", 4, ZMQ_DONTWAIT);
        }
        if (self->out.frames == 0 && now - last_sent >= self->heartbeat_ms) {
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

static void
s_chunk_destroy(s_chunk_t **self_p)
{
    s_chunk_t *self = *self_p;
    if (!self)
        return;
    zmq_msg_close(&self->frame[0]);
    zmq_msg_close(&self->frame[1]);
    msgpack_sbuffer_destroy(&self->records);
    free(self);
    *self_p = NULL;
}

// Frees the messages and buffers of an I/O thread that is not running (what is still in the
// outbox is dropped with its connection).
static void
s_io_free(hop_client_io_t *self)
{
    for (int i = 0; i < 2; i++)
        zmq_msg_close(&self->out.frame[i]);
    s_chunk_t *lists[2] = {self->box_head, self->box_free};
    for (int l = 0; l < 2; l++)
        while (lists[l]) {
            s_chunk_t *next = lists[l]->next;
            s_chunk_destroy(&lists[l]);
            lists[l] = next;
        }
    s_chunk_destroy(&self->done);
    pthread_mutex_destroy(&self->lock);
    free(self);
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
    for (int i = 0; i < 2; i++)
        zmq_msg_init(&self->out.frame[i]);
    pthread_mutex_init(&self->lock, NULL);
    self->idle = true; // the first message wakes the thread
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
    s_io_free(self);
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
    s_io_free(self);
    *self_p = NULL;
}

// ---------------------------------------------------------------------------------------
// The user thread's side of the outbox

// Whether a message goes into a batch: not marked alone, no large frame, and not an empty body
// frame (a record's body_len 0 means "no body"; such a message keeps its frame by travelling
// on its own).
static bool
s_batchable(size_t header_size, size_t body_size, bool has_body, bool alone)
{
    return !alone && header_size <= HOP_BATCH_BODY_MAX && body_size <= HOP_BATCH_BODY_MAX &&
           (!has_body || body_size > 0);
}

static s_chunk_t *
s_chunk_take(hop_client_io_t *self)
{
    s_chunk_t *c = self->box_free;
    if (c) {
        self->box_free = c->next;
        self->box_spare--;
    } else {
        c = calloc(1, sizeof *c);
        if (!c)
            abort();
        msgpack_sbuffer_init(&c->records);
        zmq_msg_init(&c->frame[0]);
        zmq_msg_init(&c->frame[1]);
    }
    c->next = NULL;
    c->count = 0;
    c->frames = 0;
    return c;
}

int
hop_client_io_put(hop_client_io_t *self, const void *header, size_t header_size, const void *body,
                  size_t body_size, bool has_body, bool alone)
{
    assert(self);
    assert(header_size > 0);
    bool batchable = s_batchable(header_size, body_size, has_body, alone);
    pthread_mutex_lock(&self->lock);
    s_chunk_t *c = self->box_tail;
    if (!batchable || !c || c->count == 0 || c->count >= S_BATCH_RECORDS ||
        c->records.size >= S_BATCH_BYTES) {
        c = s_chunk_take(self);
        if (self->box_tail)
            self->box_tail->next = c;
        else
            self->box_head = c;
        self->box_tail = c;
    }
    if (batchable) {
        if (!c->records.data)
            hop_batch_buf_get(&c->records);
        hop_batch_append(&c->records, header, header_size, body, has_body ? body_size : 0);
        c->count++;
    } else {
        // Copied into frames now, the way zmq_send would: they travel without another copy.
        zmq_msg_close(&c->frame[0]);
        zmq_msg_init_size(&c->frame[0], header_size);
        memcpy(zmq_msg_data(&c->frame[0]), header, header_size);
        c->frames = 1;
        if (has_body) {
            zmq_msg_close(&c->frame[1]);
            zmq_msg_init_size(&c->frame[1], body_size);
            if (body_size)
                memcpy(zmq_msg_data(&c->frame[1]), body, body_size);
            c->frames = 2;
        }
    }
    bool wake = self->idle;
    self->idle = false;
    pthread_mutex_unlock(&self->lock);
    // One wake-up per run of messages, not per message. The pipe has no high-water mark.
    if (wake && zmq_send(self->pipe, "", 0, ZMQ_DONTWAIT) < 0)
        return -1;
    return 0;
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
    hop_enc_bool(&self->enc, "batch", true); // we unpack batches (PROTOCOL.md 2.1)
    hop_enc_bool(&self->enc, "flow", true);  // we pause publishing when asked (6.3)
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
        if (hop_inmsg_recv(&msg, dealer) < 0)
            continue; // EINTR or a spurious wake-up
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
    self->paused = false; // a new connection starts unpaused
    return HOP_OK;
}

void
hop_client_shut(hop_client_t *self)
{
    s_io_destroy(&self->io);
    self->pipe = NULL;
    self->ctrl = NULL;
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
