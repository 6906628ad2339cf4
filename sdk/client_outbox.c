// sdk/client_outbox.c - messages to the broker (the outbox) and messages from it that the I/O
// thread read for the user thread (the stash). Every function here runs with the socket lock
// held (client_io.h), on whichever thread holds it.
//
// A message is sent at once, as it is, when nothing waits before it and the previous one went
// at least HOP_IO_PACE_NS earlier. A caller that publishes faster than that fills the outbox:
// messages are appended to the newest chunk while it has room (up to 256 records / 64 KiB,
// bodies up to 4 KiB), and each chunk goes as one batch, written from its buffer without a
// copy: one message on the wire and one system call instead of one per message. A full chunk
// is written by the thread that filled it; the rest by the I/O thread once it is woken
// (client_io.h), or by the user thread before it waits.
#include "client_io.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// {cmd:"heartbeat"} in msgpack, to recognise the broker's heartbeats without a decode.
static const uint8_t s_heartbeat[] = {0x81, 0xa3, 'c', 'm', 'd', 0xa9, 'h', 'e',
                                      'a',  'r',  't', 'b', 'e', 'a',  't'};
// {cmd:"batch",count:N} with N as a uint16 in the last two bytes.
static const uint8_t s_batch_header[] = {0x82, 0xa3, 'c', 'm', 'd', 0xa5, 'b', 'a',  't', 'c',
                                         'h',  0xa5, 'c', 'o', 'u', 'n',  't', 0xcd, 0,   0};

#define S_BATCH_RECORDS 256        // user messages packed into one batch, at most
#define S_BATCH_BYTES   (64 << 10) // a batch is closed once its records reach this size
#define S_SPARE_CHUNKS  4          // chunks kept for reuse

// ---------------------------------------------------------------------------------------
// Outbox

// Whether a message goes into a batch: not marked alone, no large frame, and not an empty body
// frame (a record's body_len 0 means "no body"; such a message keeps its frame by travelling
// on its own).
static bool
s_batchable(size_t header_size, size_t body_size, bool has_body, bool alone)
{
    return !alone && header_size <= HOP_BATCH_BODY_MAX && body_size <= HOP_BATCH_BODY_MAX &&
           (!has_body || body_size > 0);
}

static void
s_frame_set(zmq_msg_t *frame, const void *data, size_t size)
{
    zmq_msg_close(frame);
    zmq_msg_init_size(frame, size);
    if (size)
        memcpy(zmq_msg_data(frame), data, size);
}

// Puts c's content into out (empty): its own message as it was written, a lone record as the
// plain message it stands for, or a batch. Leaves c empty for reuse.
static void
s_unpack(hop_client_io_t *self, hop_chunk_t *c)
{
    assert(self->out_frames == 0);
    if (c->count == 0) {
        for (int i = 0; i < c->frames; i++)
            zmq_msg_move(&self->out[i], &c->frame[i]);
        self->out_frames = c->frames;
        c->frames = 0;
        return;
    }
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
        s_frame_set(&self->out[0], head, head_size);
        self->out_frames = 1;
        if (body_size) {
            s_frame_set(&self->out[1], body, body_size);
            self->out_frames = 2;
        }
        void *hint; // an idle client holds no batch buffer
        void *data = hop_batch_buf_take(&c->records, &hint);
        hop_batch_buf_free(data, hint);
    } else {
        zmq_msg_close(&self->out[0]);
        zmq_msg_init_size(&self->out[0], sizeof s_batch_header);
        uint8_t *header = zmq_msg_data(&self->out[0]);
        memcpy(header, s_batch_header, sizeof s_batch_header);
        header[sizeof s_batch_header - 2] = (uint8_t)(c->count >> 8);
        header[sizeof s_batch_header - 1] = (uint8_t)c->count;
        // The buffer travels as it is; the chunk takes another from the pool when reused.
        size_t size = c->records.size;
        void *hint;
        void *data = hop_batch_buf_take(&c->records, &hint);
        zmq_msg_close(&self->out[1]);
        if (zmq_msg_init_data(&self->out[1], data, size, hop_batch_buf_free, hint))
            abort(); // out of memory
        self->out_frames = 2;
    }
    c->count = 0;
}

static void
s_chunk_destroy(hop_chunk_t **self_p)
{
    hop_chunk_t *self = *self_p;
    if (!self)
        return;
    zmq_msg_close(&self->frame[0]);
    zmq_msg_close(&self->frame[1]);
    msgpack_sbuffer_destroy(&self->records);
    free(self);
    *self_p = NULL;
}

// Takes the oldest chunk of the outbox into out. Returns whether there was one.
static bool
s_fill(hop_client_io_t *self)
{
    if (self->done) {
        if (self->box_spare < S_SPARE_CHUNKS) {
            self->done->next = self->box_free;
            self->box_free = self->done;
            self->box_spare++;
            self->done = NULL;
        } else
            s_chunk_destroy(&self->done);
    }
    hop_chunk_t *c = self->box_head;
    if (!c)
        return false;
    self->box_head = c->next;
    if (!self->box_head)
        self->box_tail = NULL;
    self->box_bytes -= c->bytes;
    c->bytes = 0;
    s_unpack(self, c);
    self->done = c;
    return true;
}

int
hop_io_flush(hop_client_io_t *self)
{
    int sent = 0;
    // Bytes of a message the kernel did not take all of go first.
    int rc = hop_zmtp_pending(self->conn) ? hop_zmtp_flush(self->conn) : 0;
    if (rc != 0) {
        if (rc < 0)
            hop_io_failed(self);
        return 0;
    }
    for (;;) {
        if (self->out_frames == 0 && !s_fill(self))
            break;
        struct iovec iov[2];
        for (int i = 0; i < self->out_frames; i++)
            iov[i] = (struct iovec){zmq_msg_data(&self->out[i]), zmq_msg_size(&self->out[i])};
        if (hop_zmtp_send(self->conn, iov, self->out_frames) < 0) {
            if (errno != EAGAIN)
                hop_io_failed(self);
            return sent; // would block, or no live connection: keep it for later
        }
        // Sent (or copied for the kernel): a batch's buffer goes back to its pool now.
        for (int i = 0; i < self->out_frames; i++) {
            zmq_msg_close(&self->out[i]);
            zmq_msg_init(&self->out[i]);
        }
        self->out_frames = 0;
        self->tx++;
        sent++;
    }
    return sent;
}

bool
hop_io_pending(const hop_client_io_t *self)
{
    return self->out_frames > 0 || self->box_head || hop_zmtp_pending(self->conn);
}

static hop_chunk_t *
s_chunk_take(hop_client_io_t *self)
{
    hop_chunk_t *c = self->box_free;
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

// The fast path: nothing waits, so the message goes straight to the socket. A message the
// socket cannot take now stays in out for later.
static void
s_send_now(hop_client_io_t *self, const void *header, size_t header_size, const void *body,
           size_t body_size, bool has_body)
{
    s_frame_set(&self->out[0], header, header_size);
    self->out_frames = 1;
    if (has_body) {
        s_frame_set(&self->out[1], body, body_size);
        self->out_frames = 2;
    }
    hop_io_flush(self);
}

void
hop_io_put(hop_client_io_t *self, const void *header, size_t header_size, const void *body,
           size_t body_size, bool has_body, bool alone)
{
    assert(self);
    assert(header_size > 0);
    uint64_t now = hop_io_now_ns();
    bool paced = now - self->put_at >= HOP_IO_PACE_NS;
    self->put_at = now;
    if (paced && !hop_io_pending(self)) {
        s_send_now(self, header, header_size, body, body_size, has_body);
        return;
    }
    if (!self->box_head)
        self->box_since = now;
    bool batchable = s_batchable(header_size, body_size, has_body, alone);
    hop_chunk_t *c = self->box_tail;
    bool full =
        c && c->count > 0 && (c->count >= S_BATCH_RECORDS || c->records.size >= S_BATCH_BYTES);
    if (!batchable || !c || c->count == 0 || full) {
        c = s_chunk_take(self);
        if (self->box_tail)
            self->box_tail->next = c;
        else
            self->box_head = c;
        self->box_tail = c;
    }
    c->bytes += header_size + body_size + 8;
    self->box_bytes += header_size + body_size + 8;
    if (batchable) {
        if (!c->records.data)
            hop_batch_buf_get(&c->records);
        hop_batch_append(&c->records, header, header_size, body, has_body ? body_size : 0);
        c->count++;
    } else {
        // Copied into frames now: they travel without another copy.
        s_frame_set(&c->frame[0], header, header_size);
        c->frames = 1;
        if (has_body) {
            s_frame_set(&c->frame[1], body, body_size);
            c->frames = 2;
        }
    }
    // A full chunk goes now (one system call for all of it), and so does an outbox whose oldest
    // message waited long enough; a message that travels on its own (a request, a large body)
    // takes what is queued before it along at once.
    if (!batchable || c->count >= S_BATCH_RECORDS || c->records.size >= S_BATCH_BYTES ||
        now - self->box_since >= HOP_IO_PACE_NS)
        hop_io_flush(self);
}

// ---------------------------------------------------------------------------------------
// Stash

// True when frame is exactly {cmd:"heartbeat"}, whatever width the map header was written in.
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

void
hop_io_read_ahead(hop_client_io_t *self)
{
    if (self->stash_count < HOP_IO_STASH_MAX)
        hop_io_stash_all(self);
    else
        self->rx++; // left unread (the stash is full), but a sign of life all the same
}

void
hop_io_stash_all(hop_client_io_t *self)
{
    while (self->stash_count < HOP_IO_STASH_MAX && !self->error) {
        hop_stashed_t *s = malloc(sizeof *s); // only while the user thread is away
        if (!s)
            abort();
        s->next = NULL;
        int extra = 0;
        int n = hop_zmtp_recv(self->conn, s->frame, 2, &extra);
        if (n <= 0) {
            if (n < 0)
                hop_io_failed(self);
            free(s);
            return;
        }
        self->rx++;
        s->frames = n;
        s->extra = extra > 0;
        if (n == 1 && !s->extra && s_is_heartbeat(&s->frame[0])) {
            // A sign of life and nothing more: a client that makes no call for hours does not
            // pile them up.
            zmq_msg_close(&s->frame[0]);
            free(s);
            continue;
        }
        if (n == 1)
            zmq_msg_init(&s->frame[1]);
        if (self->stash_tail)
            self->stash_tail->next = s;
        else
            self->stash_head = s;
        self->stash_tail = s;
        self->stash_count++;
    }
}

int
hop_io_unstash(hop_client_io_t *self, hop_inmsg_t *msg)
{
    hop_stashed_t *s = self->stash_head;
    if (!s)
        return -1;
    self->stash_head = s->next;
    if (!self->stash_head)
        self->stash_tail = NULL;
    self->stash_count--;
    zmq_msg_init(&msg->header);
    zmq_msg_init(&msg->body);
    zmq_msg_move(&msg->header, &s->frame[0]);
    msg->has_body = s->frames > 1;
    if (msg->has_body)
        zmq_msg_move(&msg->body, &s->frame[1]);
    msg->records = NULL;
    // After the moves: a small frame's bytes live inside the zmq_msg_t.
    msg->head = zmq_msg_data(&msg->header);
    msg->head_size = zmq_msg_size(&msg->header);
    msg->data = msg->has_body ? zmq_msg_data(&msg->body) : NULL;
    msg->data_size = msg->has_body ? zmq_msg_size(&msg->body) : 0;
    int rc = s->extra ? 1 : 0;
    zmq_msg_close(&s->frame[0]);
    zmq_msg_close(&s->frame[1]);
    free(s);
    return rc;
}

void
hop_io_free_queues(hop_client_io_t *self)
{
    for (int i = 0; i < 2; i++)
        zmq_msg_close(&self->out[i]);
    self->out_frames = 0;
    hop_chunk_t *lists[2] = {self->box_head, self->box_free};
    for (int l = 0; l < 2; l++)
        while (lists[l]) {
            hop_chunk_t *next = lists[l]->next;
            s_chunk_destroy(&lists[l]);
            lists[l] = next;
        }
    self->box_head = self->box_tail = self->box_free = NULL;
    self->box_bytes = 0;
    s_chunk_destroy(&self->done);
    while (self->stash_head) {
        hop_stashed_t *s = self->stash_head;
        self->stash_head = s->next;
        zmq_msg_close(&s->frame[0]);
        zmq_msg_close(&s->frame[1]);
        free(s);
    }
    self->stash_tail = NULL;
    self->stash_count = 0;
}
