// sdk/client_recv.c - the user thread's side of the connection: sending messages (through
// client_io.c), and the receive pump that sorts what the broker sends (replies, deliveries,
// asynchronous errors, confirms, returns, revocations, heartbeats), unpacking its batches
// (PROTOCOL.md 2.1) record by record.
#include "client_internal.h"
#include "zmtp.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_DRAIN 1024 // messages hop_client_drain absorbs at most, so that a publish returns

// ---------------------------------------------------------------------------------------
// Messages from the broker

void
hop_inmsg_close(hop_inmsg_t *self)
{
    zmq_msg_close(&self->header);
    zmq_msg_close(&self->body);
}

// Receives one whole message from conn into msg (no wait). Returns 0, 1 when it had more
// than two frames (the extra frames are dropped), -1 when no whole message was there, or -2
// when the connection is closed or failed (errno says why).
int
hop_inmsg_recv(hop_inmsg_t *msg, struct hop_zmtp *conn)
{
    msg->records = NULL;
    int extra = 0;
    zmq_msg_t frames[2];
    int n = hop_zmtp_recv(conn, frames, 2, &extra);
    if (n <= 0)
        return n < 0 ? -2 : -1;
    zmq_msg_init(&msg->header);
    zmq_msg_init(&msg->body);
    zmq_msg_move(&msg->header, &frames[0]);
    zmq_msg_close(&frames[0]);
    msg->has_body = n > 1;
    if (msg->has_body) {
        zmq_msg_move(&msg->body, &frames[1]);
        zmq_msg_close(&frames[1]);
    }
    // After the moves: a small frame's bytes live inside the zmq_msg_t.
    msg->head = zmq_msg_data(&msg->header);
    msg->head_size = zmq_msg_size(&msg->header);
    msg->data = msg->has_body ? zmq_msg_data(&msg->body) : NULL;
    msg->data_size = msg->has_body ? zmq_msg_size(&msg->body) : 0;
    return extra ? 1 : 0;
}

// Decodes msg's header. Returns 0 or -1 with a reason in err. A reply with a wrongly typed
// field (a broker newer or buggier than us) is still matched to its request by cmd and id, so
// that the request fails or succeeds on its own instead of timing out: the codec decodes past
// such a field and leaves it out of wire.has.
int
hop_inmsg_decode(hop_inmsg_t *msg, char *err, size_t err_size)
{
    int code = hop_wire_decode(&msg->wire, msg->head, msg->head_size, err, err_size);
    if (code == HOP_CODE_SYNTAX_ERROR && hop_client_is_reply(msg->wire.cmd))
        return 0;
    return code ? -1 : 0;
}

bool
hop_client_is_reply(hop_cmd_t cmd)
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
    case HOP_CMD_PEEK_OK:
    case HOP_CMD_MOVE_OK:
    case HOP_CMD_ERROR:
        return true;
    default:
        return false;
    }
}

// ---------------------------------------------------------------------------------------
// Sending and receiving on the user thread

// The socket failed or the broker was silent past its timeout: says which, and shuts.
static int
s_lost(hop_client_t *self)
{
    int error = hop_client_io_error(self->io);
    if (error)
        return hop_client_lost(self, 0, "connection to %s lost: %s", self->endpoint,
                               error == ECONNRESET ? "the broker closed it" : strerror(error));
    return hop_client_lost(self, 0,
                           "connection to %s lost: nothing heard from the broker for %d ms",
                           self->endpoint, self->broker_timeout);
}

int
hop_client_send(hop_client_t *self, const void *header, size_t header_size, const void *body,
                size_t body_size, bool has_body, bool alone)
{
    assert(self->io);
    assert(header_size > 0);
    int rc = hop_client_io_put(self->io, header, header_size, body, body_size, has_body, alone,
                               self->timeout_ms);
    if (rc == -1)
        return hop_client_fail(self, HOP_ETIMEOUT, 0,
                               "not sent: the broker at %s read nothing more for %d ms while %u "
                               "MiB waited to be sent to it (is it overloaded or stopped?)",
                               self->endpoint, self->timeout_ms, HOP_IO_BOX_MAX >> 20);
    if (rc == -2)
        return s_lost(self);
    if (rc == -3)
        return hop_client_lost(self, 0, "cannot poll: %s", strerror(errno));
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
        hop_delivery_t *d = hop_inmsg_delivery(msg, &self->spare);
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
        hop_client_async(self, hop_client_map_code(w->code), (int)(w->code > 999 ? 999 : w->code),
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
    case HOP_CMD_CONFIRM:
        hop_client_take_confirm(self, w);
        return 0;
    case HOP_CMD_RETURN:
        hop_client_take_return(self, msg);
        return 0;
    case HOP_CMD_REVOKED:
        hop_client_take_revoked(self, w);
        return 0;
    case HOP_CMD_FLOW:
        self->paused = !w->active;
        snprintf(self->paused_why, sizeof self->paused_why, "%.*s", (int)w->text.len,
                 w->text.ptr ? w->text.ptr : "");
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

// Batches from the broker (PROTOCOL.md 2.1). The records frame stays in the client while its
// records are handled one by one, exactly as if each had come alone; a record borrows the
// frame, and only the reply handed to a caller takes a reference of its own.

void
hop_client_batch_end(hop_client_t *self)
{
    zmq_msg_close(&self->in_records);
    zmq_msg_init(&self->in_records);
    self->in_batch = false;
}

// A malformed batch is an undecodable message: reported, and the rest of it dropped (the
// records before the fault were handled).
static void
s_batch_fail(hop_client_t *self, const char *why)
{
    hop_client_async(self, HOP_EPROTO, 0, "the broker sent an undecodable message: batch: %s", why);
    hop_client_batch_end(self);
}

// Starts handing out the batch msg (decoded): its records frame moves into the client. Closes
// msg.
static void
s_batch_begin(hop_client_t *self, hop_inmsg_t *msg)
{
    bool counted = msg->wire.has & HOP_F_COUNT;
    self->in_left = msg->wire.count;
    zmq_msg_move(&self->in_records, &msg->body); // stays empty when there was no records frame
    hop_inmsg_close(msg);
    // After the move: a small frame's bytes live inside the zmq_msg_t.
    hop_batch_init(&self->in_at, zmq_msg_data(&self->in_records), zmq_msg_size(&self->in_records));
    self->in_batch = true;
    if (!counted)
        s_batch_fail(self, "no count");
}

// Sets msg up as a record that borrows frame.
static void
s_inmsg_record(hop_inmsg_t *msg, zmq_msg_t *frame, const uint8_t *head, uint32_t head_size,
               const uint8_t *body, uint32_t body_size)
{
    zmq_msg_init(&msg->header);
    zmq_msg_init(&msg->body);
    msg->has_body = body_size > 0;
    msg->records = frame;
    msg->head = head;
    msg->head_size = head_size;
    msg->data = body;
    msg->data_size = body_size;
}

// Gives a record that goes to a caller its own reference to the batch's frame: it may outlive
// the batch, even the connection (hop_client_wait reads a 505's text after shutting).
static void
s_inmsg_keep(hop_inmsg_t *msg)
{
    const uint8_t *was = zmq_msg_data(msg->records);
    zmq_msg_copy(&msg->header, msg->records);
    msg->records = &msg->header;
    const uint8_t *now = zmq_msg_data(&msg->header);
    if (now != was) {
        // A small frame is copied, not shared: point into the copy and decode it again.
        msg->head = now + (msg->head - was);
        if (msg->data)
            msg->data = now + (msg->data - was);
        hop_inmsg_decode(msg, NULL, 0); // it decoded from the same bytes a moment ago
    }
}

// Handles the records of the batch being handed out, in order, up to the reply to *awaited.
// Returns as hop_client_step: 1 with that reply in msg, 0 at the end of the batch, or
// HOP_ECONNECT (the connection is shut then).
static int
s_batch_run(hop_client_t *self, const uint64_t *awaited, hop_inmsg_t *msg)
{
    while (self->in_batch) {
        const uint8_t *head, *body;
        uint32_t head_size, body_size;
        int more = hop_batch_next(&self->in_at, &head, &head_size, &body, &body_size);
        if (more == 0 && self->in_left == 0) {
            hop_client_batch_end(self);
            return 0;
        }
        char err[128];
        const char *why = NULL;
        if (more < 0)
            why = "a record runs past the end of the frame";
        else if (more == 0)
            why = "fewer records than its count";
        else if (self->in_left == 0)
            why = "more records than its count";
        else {
            s_inmsg_record(msg, &self->in_records, head, head_size, body, body_size);
            if (hop_inmsg_decode(msg, err, sizeof err))
                why = err;
            else if (msg->wire.cmd == HOP_CMD_BATCH || msg->wire.cmd == HOP_CMD_HELLO)
                why = "a record is a batch or a hello";
        }
        if (why) {
            s_batch_fail(self, why);
            return 0;
        }
        self->in_left--;
        if (awaited && hop_client_is_reply(msg->wire.cmd) && msg->wire.id == *awaited) {
            s_inmsg_keep(msg);
            if (self->in_left == 0 && self->in_at.p == self->in_at.end)
                hop_client_batch_end(self);
            return 1;
        }
        int rc = s_absorb(self, msg);
        if (rc)
            return rc;
        // One delivery at a time: the rest of the batch is read as the application takes
        // them, so a delivery's allocation is freed (or recycled) before the next is made,
        // and what follows it in the batch is heard of after it, not before.
        if (msg->wire.cmd == HOP_CMD_DELIVER)
            return 0;
    }
    return 0;
}

int
hop_client_step(hop_client_t *self, int64_t deadline, const uint64_t *awaited, hop_inmsg_t *msg)
{
    if (!self->io)
        return hop_client_fail(self, HOP_ECLOSED, 0, "not connected");
    if (self->in_batch)
        return s_batch_run(self, awaited, msg);
    // A message already waiting needs no poll (a system call). A silent broker is reported
    // once everything it sent before going silent was read.
    int frames = hop_client_io_recv(self->io, msg);
    if (frames == -1 && deadline == 0)
        return HOP_ETIMEOUT; // hop_client_drain: nothing more without waiting
    if (frames == -1) {
        int rc = hop_client_io_wait(self->io, deadline);
        if (rc == -3)
            return errno == EINTR ? 0
                                  : hop_client_lost(self, 0, "cannot poll: %s", strerror(errno));
        if (rc == 0)
            return HOP_ETIMEOUT;
        frames = rc == 1 ? hop_client_io_recv(self->io, msg) : -2;
        if (frames == -1)
            return 0;
    }
    if (frames == -2)
        return s_lost(self);
    char err[128];
    if (frames > 0 || hop_inmsg_decode(msg, err, sizeof err)) {
        hop_client_async(self, HOP_EPROTO, 0, "the broker sent an undecodable message: %s",
                         frames > 0 ? "more than two frames" : err);
        hop_inmsg_close(msg);
        return 0;
    }
    if (msg->wire.cmd == HOP_CMD_BATCH) {
        s_batch_begin(self, msg);
        return s_batch_run(self, awaited, msg);
    }
    if (awaited && hop_client_is_reply(msg->wire.cmd) && msg->wire.id == *awaited)
        return 1; // a missing id reads as 0, which is what the broker uses for undecodable input
    int rc = s_absorb(self, msg);
    hop_inmsg_close(msg);
    return rc;
}

void
hop_client_drain(hop_client_t *self)
{
    hop_client_io_tick(self->io); // heartbeats and a silent broker, for a busy publisher too
    // With deliveries buffered, hand those out first: reading more now would let a flood grow
    // the buffer while the application sees one message per batch. Bounded too, so that a
    // fast stream of other messages cannot keep a publish from returning.
    for (int i = 0; i < S_DRAIN && self->io && !self->head; i++) {
        hop_inmsg_t msg;
        if (hop_client_step(self, 0, NULL, &msg) < 0)
            break; // nothing more without waiting, or the connection is gone
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
