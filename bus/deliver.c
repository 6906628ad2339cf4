// bus/deliver.c - the message path: publish, route, dispatch to consumers, get, and settle
// (ack, nack, reject), plus returning unacked messages when consumers go away.
#include "broker_internal.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { SETTLE_ACK, SETTLE_REQUEUE, SETTLE_DROP } s_settle_t;

// Re-points a span that borrowed the decoded frame to the same bytes in the kept frame:
// small frames live inside zmq_msg_t itself, so moving the frame moves the bytes.
static const void *
s_rebase(const void *ptr, const void *old_base, const void *new_base)
{
    return ptr ? (const char *)new_base + ((const char *)ptr - (const char *)old_base) : NULL;
}

// Publisher confirms ----------------------------------------------------------------------

static void
s_confirm_send(hop_broker_t *self, hop_conn_t *conn, uint64_t seq, bool multiple)
{
    hop_enc_begin(&self->enc, HOP_CMD_CONFIRM);
    hop_enc_uint(&self->enc, "seq", seq);
    hop_enc_bool(&self->enc, "multiple", multiple);
    hop_broker_send(self, conn, NULL);
}

void
hop_deliver_confirm_ok(hop_broker_t *self, hop_conn_t *conn, uint64_t seq)
{
    self->confirmed++;
    if (seq > conn->confirm_hi)
        conn->confirm_hi = seq;
    if (!conn->confirm_listed) {
        conn->confirm_listed = true;
        conn->confirm_next = self->confirm_head;
        self->confirm_head = conn;
    }
}

void
hop_deliver_nack(hop_broker_t *self, hop_conn_t *conn, uint64_t seq, int code, const char *fmt, ...)
{
    if (conn->confirm_hi) {
        s_confirm_send(self, conn, conn->confirm_hi, true);
        conn->confirm_hi = 0;
    }
    char text[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    hop_enc_begin(&self->enc, HOP_CMD_CONFIRM);
    hop_enc_uint(&self->enc, "seq", seq);
    hop_enc_bool(&self->enc, "multiple", false);
    hop_enc_bool(&self->enc, "nack", true);
    hop_enc_uint(&self->enc, "code", (uint64_t)code);
    hop_enc_cstr(&self->enc, "text", text);
    hop_broker_send(self, conn, NULL);
}

// Confirms seq positively, once the records it wrote (and those before it) are durable.
static void
s_confirm(hop_broker_t *self, hop_conn_t *conn, uint64_t seq)
{
    if (!hop_durable_confirm(self, conn, seq))
        hop_deliver_confirm_ok(self, conn, seq);
}

void
hop_deliver_flush_confirms(hop_broker_t *self)
{
    while (self->confirm_head) {
        hop_conn_t *conn = self->confirm_head;
        self->confirm_head = conn->confirm_next;
        conn->confirm_listed = false;
        conn->confirm_next = NULL;
        if (conn->confirm_hi && !conn->dead)
            s_confirm_send(self, conn, conn->confirm_hi, true);
        conn->confirm_hi = 0;
    }
}

void
hop_deliver_drop_confirms(hop_broker_t *self, hop_conn_t *conn)
{
    if (!conn->confirm_listed)
        return;
    hop_conn_t **at = &self->confirm_head;
    while (*at != conn)
        at = &(*at)->confirm_next;
    *at = conn->confirm_next;
    conn->confirm_listed = false;
    conn->confirm_hi = 0;
}

// Publisher flow control ---------------------------------------------------------------------

static bool
s_over(const hop_broker_t *self, const hop_queue_t *q, uint64_t div)
{
    const hop_broker_config_t *c = &self->config;
    return (c->flow_messages && q->ready_count > c->flow_messages / div) ||
           (c->flow_bytes && q->ready_bytes > c->flow_bytes / div);
}

static void
s_flow_send(hop_broker_t *self, hop_conn_t *conn, bool active, const hop_queue_t *q)
{
    hop_enc_begin(&self->enc, HOP_CMD_FLOW);
    hop_enc_bool(&self->enc, "active", active);
    hop_enc_str(&self->enc, "queue", q->name, q->name_len);
    char text[400];
    if (active)
        snprintf(text, sizeof text, "queue '%s' drained: publish again", q->name);
    else
        snprintf(text, sizeof text,
                 "queue '%s' holds %zu ready messages (%llu bytes), over the broker's flow "
                 "watermark: pause publishing until its consumers catch up",
                 q->name, q->ready_count, (unsigned long long)q->ready_bytes);
    hop_enc_cstr(&self->enc, "text", text);
    hop_broker_send(self, conn, NULL);
}

// Asks conn to pause when q is over the watermark (once; it resumes in hop_deliver_resume).
static void
s_maybe_pause(hop_broker_t *self, hop_conn_t *conn, hop_queue_t *q)
{
    // Only a queue whose consumers fall behind pauses its publishers: one without consumers
    // is a backlog kept on purpose ("delayed, not lost"), bounded by max-length if need be.
    // A queue with a length limit has its own bound: it fills up to it and then meets its
    // overflow policy, as its declare asked.
    if (!conn->flow || conn->blocked_on || !q->consumer_count || q->args.max_length ||
        q->args.max_length_bytes || !s_over(self, q, 1))
        return;
    conn->blocked_on = q;
    conn->blocked_next = self->blocked_head;
    self->blocked_head = conn;
    hop_log(HOP_DEBUG, "flow", "pause conn=%s queue=%s ready=%zu", conn->label, q->name,
            q->ready_count);
    s_flow_send(self, conn, false, q);
}

void
hop_deliver_resume(hop_broker_t *self, hop_queue_t *deleted)
{
    for (hop_conn_t **at = &self->blocked_head; *at;) {
        hop_conn_t *conn = *at;
        hop_queue_t *q = conn->blocked_on;
        // Hysteresis: resume under half the watermark, so that a publisher is not switched
        // on and off for every message; or when the queue has no consumer left to wait for.
        if (deleted ? q != deleted : (q->consumer_count && s_over(self, q, 2))) {
            at = &conn->blocked_next;
            continue;
        }
        *at = conn->blocked_next;
        conn->blocked_next = NULL;
        conn->blocked_on = NULL;
        if (!conn->dead)
            s_flow_send(self, conn, true, q);
    }
}

void
hop_deliver_forget_paused(hop_broker_t *self, hop_conn_t *conn)
{
    if (!conn->blocked_on)
        return;
    hop_conn_t **at = &self->blocked_head;
    while (*at != conn)
        at = &(*at)->blocked_next;
    *at = conn->blocked_next;
    conn->blocked_next = NULL;
    conn->blocked_on = NULL;
}

// Publishing -------------------------------------------------------------------------------

// Drops the oldest ready messages of queue while it is over its length limits (drop-head).
static void
s_drop_head(hop_broker_t *self, hop_queue_t *queue)
{
    const hop_qargs_t *a = &queue->args;
    while (queue->ready_count &&
           ((a->max_length && queue->ready_count > a->max_length) ||
            (a->max_length_bytes && queue->ready_bytes > a->max_length_bytes))) {
        hop_entry_t *e = hop_queue_oldest(queue);
        hop_queue_remove(queue, e);
        hop_deliver_dead_letter(self, queue, e, "maxlen");
    }
}

size_t
hop_deliver_enqueue(hop_broker_t *self, hop_route_t *route, hop_msg_t *msg, uint64_t ttl,
                    bool *rejected)
{
    size_t stored = 0;
    for (size_t i = 0; i < route->size; i++) {
        hop_queue_t *q = route->queues[i];
        if (q->args.reject_publish && hop_queue_full(q, msg->body_len)) {
            q->rejected_publishes++;
            self->rejected_publishes++;
            route->queues[i] = NULL;
            if (rejected)
                *rejected = true;
            continue;
        }
        hop_entry_t *e = hop_queue_push(q, msg, self->now, ttl);
        stored++;
        if (msg->persistent && q->stored)
            hop_durable_message(self, q, e);
        if (q->args.max_length || q->args.max_length_bytes)
            s_drop_head(self, q);
    }
    return stored;
}

// Sends a mandatory message that matched no queue back to its publisher.
static void
s_return(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w, const hop_msg_t *msg)
{
    self->returned++;
    hop_enc_begin(&self->enc, HOP_CMD_RETURN);
    hop_enc_uint(&self->enc, "code", HOP_CODE_NO_ROUTE);
    char text[600];
    snprintf(text, sizeof text, "no route: exchange '%.*s' has no binding matching key '%.*s'",
             (int)msg->exchange_len, msg->exchange ? msg->exchange : "", (int)msg->key_len,
             msg->key ? msg->key : "");
    hop_enc_cstr(&self->enc, "text", text);
    hop_enc_str(&self->enc, "exchange", msg->exchange ? msg->exchange : "", msg->exchange_len);
    hop_enc_str(&self->enc, "key", msg->key ? msg->key : "", msg->key_len);
    if (w->has & HOP_F_SEQ)
        hop_enc_uint(&self->enc, "seq", w->seq);
    if (msg->props)
        hop_enc_raw(&self->enc, "props", msg->props, msg->props_len);
    hop_broker_send(self, conn, msg);
}

// Refuses a publish: a negative confirm when it asked for one, else an error.
#define s_refuse(self, conn, w, code, ...)                                                         \
    do {                                                                                           \
        if ((w)->has & HOP_F_SEQ)                                                                  \
            hop_deliver_nack(self, conn, (w)->seq, code, __VA_ARGS__);                             \
        else                                                                                       \
            hop_broker_error(self, conn, (w)->id, code, __VA_ARGS__);                              \
    } while (0)

void
hop_deliver_publish(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w, hop_frames_t *batch,
                    zmq_msg_t *header, zmq_msg_t *body_frame, const void *body, size_t body_len)
{
    hop_durable_publish_begin(self);
    if ((w->has & HOP_F_SEQ) && w->seq == 0) {
        hop_broker_error(self, conn, w->id, HOP_CODE_SYNTAX_ERROR,
                         "publish 'seq' must be 1 or more (confirm sequence numbers start at 1)");
        return;
    }
    if (body_len > self->config.max_message) {
        s_refuse(self, conn, w, HOP_CODE_CONTENT_TOO_LARGE,
                 "message body of %zu bytes is over the broker's limit of %zu "
                 "(hopperd --max-message)",
                 body_len, self->config.max_message);
        return;
    }
    if (w->persistent && hop_durable_error(self)) {
        s_refuse(self, conn, w, HOP_CODE_RESOURCE_ERROR,
                 "the broker cannot write persistent messages: %s (free disk space in its "
                 "data directory; it retries by itself)",
                 hop_durable_error(self) == -103 ? "its disk is full" : "an I/O error");
        return;
    }
    if (w->priority > 255 || w->expiration > UINT32_MAX) {
        s_refuse(self, conn, w, HOP_CODE_SYNTAX_ERROR,
                 "publish %s is out of range (priority 0..255, expiration up to %u ms)",
                 w->priority > 255 ? "priority" : "expiration", UINT32_MAX);
        return;
    }
    hop_str_t xname = w->exchange;
    hop_xchg_t *x = hop_topology_exchange(self, &xname);
    if (!x) {
        s_refuse(self, conn, w, HOP_CODE_NOT_FOUND,
                 "no exchange '%.*s': declare it first (publish to \"\" routes to the "
                 "queue named by the key)",
                 (int)xname.len, xname.ptr ? xname.ptr : "");
        return;
    }
    const char *key = w->key.ptr ? w->key.ptr : "";
    hop_route_clear(&self->route);
    if (x->table)
        hop_exchange_route(x->table, key, w->key.len, &self->route);
    else {
        hop_queue_t *q = hop_map_get(self->queues, key, w->key.len);
        if (q)
            hop_route_push(&self->route, q);
    }
    x->published++;
    self->published++;
    if (self->tracing)
        hop_trace_publish(self, x, key, w->key.len, &self->route, body_len);
    if (self->route.size == 0) {
        x->unroutable++;
        self->unroutable++;
        if (!w->mandatory) {
            if (w->has & HOP_F_SEQ)
                s_confirm(self, conn, w->seq);
            return;
        }
    }
    // Keep the frames: the body is shared by every queue and delivery, never copied. A batch
    // record shares the batch's holder; a single publish gets a holder of its own.
    hop_msg_t *msg = hop_msg_new();
    const void *old_base, *base;
    if (batch) {
        hop_msg_attach(msg, batch);
        old_base = base = zmq_msg_data(&batch->header);
        msg->body = body_len ? body : NULL;
    } else {
        hop_frames_t *frames = hop_frames_new();
        old_base = zmq_msg_data(header);
        zmq_msg_move(&frames->header, header);
        if (body_frame)
            zmq_msg_move(&frames->body, body_frame);
        hop_msg_attach(msg, frames);
        base = zmq_msg_data(&frames->header);
        msg->body = body_len ? zmq_msg_data(&frames->body) : NULL;
    }
    msg->body_len = (uint32_t)body_len;
    hop_msg_names(msg, s_rebase(xname.ptr, old_base, base), xname.len,
                  s_rebase(w->key.ptr, old_base, base), w->key.len);
    msg->props = s_rebase(w->props.ptr, old_base, base);
    msg->props_len = w->props.len;
    msg->priority = (uint8_t)w->priority;
    msg->persistent = w->persistent;
    if (self->route.size == 0) {
        // Mandatory and unroutable: back to the publisher, then confirmed (as in AMQP).
        s_return(self, conn, w, msg);
        msg->refs = 1;
        hop_msg_release(msg);
        if (w->has & HOP_F_SEQ)
            s_confirm(self, conn, w->seq);
        return;
    }
    // Enqueue everywhere before dispatching anywhere: a no-ack delivery may release the
    // message's first reference while other queues still need it.
    bool rejected = false;
    msg->refs++; // held while enqueueing: a full drop-head queue may drop it at once
    hop_deliver_enqueue(self, &self->route, msg,
                        (w->has & HOP_F_EXPIRATION) ? w->expiration : HOP_TTL_NONE, &rejected);
    hop_msg_release(msg);
    if (w->has & HOP_F_SEQ) {
        if (rejected)
            hop_deliver_nack(self, conn, w->seq, HOP_CODE_RESOURCE_ERROR,
                             "a queue bound to exchange '%.*s' with key '%.*s' is full "
                             "(overflow reject-publish): the message was not stored there",
                             (int)xname.len, xname.ptr ? xname.ptr : "", (int)w->key.len, key);
        else if (w->persistent && hop_durable_write_failed(self))
            hop_deliver_nack(self, conn, w->seq, HOP_CODE_RESOURCE_ERROR,
                             "the broker could not write this persistent message to disk (%s): "
                             "it is not confirmed and would not survive a restart",
                             hop_durable_write_failed(self));
        else
            s_confirm(self, conn, w->seq);
    }
    for (size_t i = 0; i < self->route.size; i++)
        if (self->route.queues[i]) {
            hop_deliver_dispatch(self, self->route.queues[i]);
            s_maybe_pause(self, conn, self->route.queues[i]);
        }
}

// Writes the fields every delivery carries (deliver and get-ok).
static void
s_encode_delivery(hop_broker_t *self, const hop_entry_t *e, uint64_t tag)
{
    const hop_msg_t *m = e->msg;
    hop_enc_uint(&self->enc, "tag", tag);
    hop_enc_str(&self->enc, "exchange", m->exchange ? m->exchange : "", m->exchange_len);
    hop_enc_str(&self->enc, "key", m->key ? m->key : "", m->key_len);
    hop_enc_bool(&self->enc, "redelivered", e->redelivered);
    hop_enc_uint(&self->enc, "count", e->deliveries);
    if (m->props)
        hop_enc_raw(&self->enc, "props", m->props, m->props_len);
    if (m->priority)
        hop_enc_uint(&self->enc, "priority", m->priority);
    uint32_t death_len;
    const uint8_t *death = hop_msg_death(m, &death_len);
    if (death)
        hop_enc_raw(&self->enc, "death", death, death_len);
}

// Removes expired messages from the head of queue (what would be delivered next). Returns the
// head that is not expired, or NULL.
static hop_entry_t *
s_live_head(hop_broker_t *self, hop_queue_t *queue)
{
    hop_entry_t *e;
    while ((e = hop_queue_head(queue)) && e->expires_at < self->now) {
        hop_queue_remove(queue, e);
        hop_deliver_dead_letter(self, queue, e, "expired");
    }
    return e;
}

// Counts a first delivery's wait in the publish-to-deliver histogram. ready_at is the entry's
// `at` before hop_queue_take (when it entered the ready list); take overwrites it.
static inline void
s_first_delivery(hop_broker_t *self, const hop_entry_t *e, uint64_t ready_at)
{
    if (e->deliveries == 1)
        hop_histogram_record(&self->deliver_wait, &hop_histogram_wait_ms,
                             self->now > ready_at ? self->now - ready_at : 0);
}

// Batches go out when they reach this many records or bytes, or at the end of the turn.
#define BATCH_RECORDS 256
#define BATCH_BYTES   (64 * 1024)

static bool
s_batchable(const hop_conn_t *conn, const hop_msg_t *msg)
{
    return conn->batch && msg->body_len <= HOP_BATCH_BODY_MAX;
}

// Appends the delivery header in self->enc and e's body to conn's batch. e is already tracked.
static void
s_batch_add(hop_broker_t *self, hop_conn_t *conn, hop_entry_t *e)
{
    if (conn->out_count == 0) {
        conn->out_first_tag = e->tag;
        if (!conn->out_listed) {
            conn->out_listed = true;
            conn->out_next = self->out_head;
            self->out_head = conn;
        }
    }
    if (conn->out_count == conn->out_entries_cap) {
        conn->out_entries_cap = conn->out_entries_cap ? conn->out_entries_cap * 2 : 16;
        conn->out_entries =
            hop_realloc(conn->out_entries, conn->out_entries_cap * sizeof *conn->out_entries);
    }
    conn->out_entries[conn->out_count++] = e;
    if (!conn->out.data)
        hop_batch_buf_get(&conn->out);
    size_t size;
    const void *header = hop_enc_end(&self->enc, &size);
    hop_batch_append(&conn->out, header, size, e->msg->body, e->msg->body_len);
    if (conn->out_count >= BATCH_RECORDS || conn->out.size >= BATCH_BYTES)
        hop_deliver_flush(self, conn);
}

void
hop_deliver_dispatch(hop_broker_t *self, hop_queue_t *queue)
{
    if (queue->dispatching || queue->deleting)
        return;
    queue->dispatching = true;
    while (queue->ready_count) {
        hop_consumer_t *c = hop_queue_next_consumer(queue);
        hop_entry_t *head = c ? s_live_head(self, queue) : NULL;
        if (!head)
            break;
        uint64_t ready_at = head->at;
        hop_entry_t *e = hop_queue_take(queue, self->now);
        hop_conn_t *conn = c->conn;
        uint64_t tag = conn->next_tag;
        hop_enc_begin(&self->enc, HOP_CMD_DELIVER);
        hop_enc_cstr(&self->enc, "consumer", c->tag);
        s_encode_delivery(self, e, tag);
        if (s_batchable(conn, e->msg)) {
            // Tracked now, sent at the end of the turn; a failed send undoes it (flush).
            e->consumer = c;
            hop_conn_track(conn, e);
            if (c->no_ack)
                e->noack = true;
            else
                c->unacked++;
            c->delivered++;
            self->delivered++;
            // Counted now: a batch whose send fails puts e back, to be counted again.
            s_first_delivery(self, e, ready_at);
            s_batch_add(self, conn, e);
            continue;
        }
        if (hop_broker_send_delivery(self, conn, e->msg) < 0) {
            // The peer's pipe is full (retry on the next tick) or the peer is gone.
            hop_queue_untake(queue, e);
            hop_broker_stall(self, c);
            continue;
        }
        c->delivered++;
        self->delivered++;
        s_first_delivery(self, e, ready_at);
        if (c->no_ack) {
            hop_conn_skip_tag(conn);
            hop_durable_forget(self, queue, e);
            hop_queue_settle(queue, e, false);
        } else {
            e->consumer = c;
            hop_conn_track(conn, e);
            c->unacked++;
        }
    }
    queue->dispatching = false;
}

static void
s_batch_reset(hop_conn_t *conn)
{
    conn->out_count = 0;
    if (conn->out.data) { // a batch sent whole took it already; an idle connection holds none
        void *hint;
        void *data = hop_batch_buf_take(&conn->out, &hint);
        hop_batch_buf_free(data, hint);
    }
}

int
hop_deliver_flush(hop_broker_t *self, hop_conn_t *conn)
{
    uint32_t n = conn->out_count;
    if (n == 0)
        return 0;
    int rc, err = 0;
    if (conn->backlog_head && hop_broker_drain_backlog(self, conn) < 0) {
        rc = -1; // what waits before the batch could not all go: the batch waits too
        err = EAGAIN;
    } else if (n == 1 || conn->dead) {
        // One delivery goes as a plain message: clients that batch nothing see nothing new.
        hop_batch_t it;
        hop_batch_init(&it, conn->out.data, conn->out.size);
        const uint8_t *h, *b;
        uint32_t hl, bl;
        hop_batch_next(&it, &h, &hl, &b, &bl);
        rc = conn->dead ? -1
                        : hop_broker_send_raw(self, conn->id, conn->id_len, h, hl,
                                              conn->out_entries[0]->msg, &err);
    } else {
        hop_enc_begin(&self->batch_enc, HOP_CMD_BATCH);
        hop_enc_uint(&self->batch_enc, "count", n);
        size_t hsize;
        const void *header = hop_enc_end(&self->batch_enc, &hsize);
        rc = zmq_send(self->router, conn->id, conn->id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        if (rc < 0)
            err = zmq_errno();
        else {
            zmq_send(self->router, header, hsize, ZMQ_SNDMORE | ZMQ_DONTWAIT);
            // The records buffer is handed to ZeroMQ as it is: no copy; the connection takes
            // another from the pool next time, so an idle connection holds no batch memory.
            size_t size = conn->out.size;
            void *hint;
            void *data = hop_batch_buf_take(&conn->out, &hint);
            zmq_msg_t records;
            zmq_msg_init_data(&records, data, size, hop_batch_buf_free, hint);
            if (zmq_msg_send(&records, self->router, ZMQ_DONTWAIT) < 0)
                zmq_msg_close(&records);
            rc = 0;
        }
    }
    if (rc == 0) {
        conn->last_send = self->now;
        for (uint32_t i = 0; i < n; i++) {
            hop_entry_t *e = conn->out_entries[i];
            if (!e->noack)
                continue;
            // No-ack deliveries are settled once they are on their way.
            e->noack = false;
            hop_conn_untrack(conn, e->tag);
            hop_durable_forget(self, e->queue, e);
            if (e->queue)
                hop_queue_settle(e->queue, e, false);
            else
                hop_entry_destroy(&e);
        }
    } else {
        // Not sent: every delivery goes back as if never taken, newest first to keep order.
        for (uint32_t i = n; i-- > 0;) {
            hop_entry_t *e = conn->out_entries[i];
            hop_conn_untrack(conn, e->tag);
            if (e->consumer) {
                if (!e->noack)
                    e->consumer->unacked--;
                e->consumer->delivered--;
                hop_broker_stall(self, e->consumer);
            }
            e->noack = false;
            self->delivered--;
            if (e->queue)
                hop_queue_unsend(e->queue, e);
            else
                hop_entry_destroy(&e);
        }
        if (err && err != EAGAIN)
            hop_broker_mark_dead(self, conn);
    }
    s_batch_reset(conn);
    return rc;
}

void
hop_deliver_flush_all(hop_broker_t *self)
{
    while (self->out_head) {
        hop_conn_t *conn = self->out_head;
        self->out_head = conn->out_next;
        conn->out_listed = false;
        conn->out_next = NULL;
        hop_deliver_flush(self, conn);
    }
}

void
hop_deliver_drop_batch(hop_broker_t *self, hop_conn_t *conn)
{
    // Its entries stay tracked; closing returns them. No-ack ones were never sent: they are
    // returned too, as any unacked delivery would be.
    for (uint32_t i = 0; i < conn->out_count; i++)
        conn->out_entries[i]->noack = false;
    s_batch_reset(conn);
    if (conn->out_listed) {
        hop_conn_t **at = &self->out_head;
        while (*at != conn)
            at = &(*at)->out_next;
        *at = conn->out_next;
        conn->out_listed = false;
    }
}

void
hop_deliver_return(hop_broker_t *self, hop_queue_t *queue, hop_entry_t *entry, uint64_t delay_ms)
{
    if (queue->args.max_deliveries && entry->deliveries >= queue->args.max_deliveries) {
        hop_queue_unlink(queue, entry);
        hop_deliver_dead_letter(self, queue, entry, "delivery-limit");
    } else {
        if (delay_ms)
            hop_queue_delay(queue, entry, self->now + delay_ms);
        else
            hop_queue_requeue(queue, entry);
        hop_durable_update(self, queue, entry); // its delivery count and delay, if persistent
    }
}

// The queue's retry backoff for an entry delivered `deliveries` times: retry_delay doubled
// per earlier delivery, capped at retry_delay_max (default: retry_delay).
static uint64_t
s_backoff(const hop_queue_t *queue, uint32_t deliveries)
{
    uint64_t delay = queue->args.retry_delay;
    uint64_t cap = queue->args.retry_delay_max ? queue->args.retry_delay_max : delay;
    for (uint32_t i = 1; i < deliveries && delay < cap; i++)
        delay *= 2;
    return delay < cap ? delay : cap;
}

// Settles one unacked entry of conn. Returns its queue (NULL if the queue is gone). w is the
// nack/reject that asked for a requeue (its delay applies), or NULL (the consumer went away).
static hop_queue_t *
s_settle_entry(hop_broker_t *self, hop_conn_t *conn, hop_entry_t *e, s_settle_t how,
               const hop_wire_t *w)
{
    hop_conn_untrack(conn, e->tag);
    if (e->consumer && !e->noack)
        e->consumer->unacked--;
    e->noack = false;
    hop_queue_t *q = e->queue;
    if (!q) {
        hop_entry_destroy(&e); // its queue was deleted while it was out
        return NULL;
    }
    if (how == SETTLE_REQUEUE) {
        uint64_t delay = 0;
        if (w && (w->has & HOP_F_DELAY))
            delay = w->delay;
        else if (w && q->args.retry_delay)
            delay = s_backoff(q, e->deliveries);
        hop_deliver_return(self, q, e, delay);
    } else if (how == SETTLE_DROP) {
        hop_queue_unlink(q, e);
        hop_deliver_dead_letter(self, q, e, "rejected");
    } else {
        hop_durable_forget(self, q, e);
        hop_queue_settle(q, e, true);
        self->acked++;
    }
    return q;
}

void
hop_deliver_settle(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w)
{
    const char *verb = hop_cmd_name(w->cmd);
    if (!(w->has & HOP_F_TAG)) {
        hop_broker_error(self, conn, w->id, HOP_CODE_SYNTAX_ERROR, "'%s' needs field 'tag'", verb);
        return;
    }
    if ((w->has & HOP_F_DELAY) && w->delay > UINT32_MAX) {
        hop_broker_error(self, conn, w->id, HOP_CODE_SYNTAX_ERROR,
                         "'%s' delay %llu ms is too long (at most %u)", verb,
                         (unsigned long long)w->delay, UINT32_MAX);
        return;
    }
    s_settle_t how = w->cmd == HOP_CMD_ACK                    ? SETTLE_ACK
                     : (w->requeue || (w->has & HOP_F_DELAY)) ? SETTLE_REQUEUE
                                                              : SETTLE_DROP;
    bool multiple = w->cmd != HOP_CMD_REJECT && w->multiple;
    uint64_t last = w->tag;
    // A tag in conn's unsent batch, or "everything" (multiple, tag 0): send the batch first, so
    // that the settle means what it would mean had the deliveries already gone out.
    if (conn->out_count && (last >= conn->out_first_tag || (multiple && last == 0)))
        hop_deliver_flush(self, conn);
    if (multiple && last == 0)
        last = conn->next_tag - 1; // AMQP: multiple with tag 0 means everything outstanding
    if (last >= conn->next_tag || (!multiple && !hop_conn_lookup(conn, last))) {
        if (!multiple && hop_conn_was_revoked(conn, last))
            hop_broker_error(self, conn, w->id, HOP_CODE_PRECONDITION_FAILED,
                             "delivery tag %llu was revoked: it was not settled within its ack "
                             "deadline, so the broker returned it to its queue (raise the "
                             "consumer's or queue's ack_timeout for long jobs)",
                             (unsigned long long)w->tag);
        else
            hop_broker_error(self, conn, w->id, HOP_CODE_PRECONDITION_FAILED,
                             "unknown delivery tag %llu: never delivered on this connection, "
                             "already settled, or returned to its queue",
                             (unsigned long long)w->tag);
        return;
    }
    if (!multiple) {
        hop_queue_t *q = s_settle_entry(self, conn, hop_conn_lookup(conn, last), how, w);
        if (q)
            hop_deliver_dispatch(self, q);
        return;
    }
    // Requeues go newest first: each entry then lands at the head in O(1), in order. Acks and
    // drops go oldest first, so that dead letters keep the order of their messages.
    size_t settled = 0;
    hop_queue_t *touched = NULL;
    uint64_t first = hop_conn_first_tag(conn);
    bool newest_first = how == SETTLE_REQUEUE;
    for (uint64_t i = 0, n = last + 1 > first ? last + 1 - first : 0; i < n; i++) {
        uint64_t tag = newest_first ? last - i : first + i;
        hop_entry_t *e = hop_conn_lookup(conn, tag);
        if (!e)
            continue;
        hop_queue_t *q = s_settle_entry(self, conn, e, how, w);
        settled++;
        if (q && q != touched) {
            if (touched)
                hop_deliver_dispatch(self, touched);
            touched = q;
        }
    }
    if (touched)
        hop_deliver_dispatch(self, touched);
    if (!settled)
        hop_broker_error(self, conn, w->id, HOP_CODE_PRECONDITION_FAILED,
                         "unknown delivery tag %llu: nothing unacked up to it",
                         (unsigned long long)w->tag);
}

void
hop_deliver_consume(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w)
{
    hop_queue_t *q = hop_topology_use_queue(self, conn, w);
    if (!q)
        return;
    if (w->prefetch > UINT32_MAX) {
        hop_broker_error(self, conn, w->id, HOP_CODE_SYNTAX_ERROR,
                         "prefetch %llu is too large (at most %u; 0 means unlimited)",
                         (unsigned long long)w->prefetch, UINT32_MAX);
        return;
    }
    if ((w->has & HOP_F_ACK_TIMEOUT) && (w->ack_timeout < 1000 || w->ack_timeout > UINT32_MAX)) {
        hop_broker_error(self, conn, w->id, HOP_CODE_SYNTAX_ERROR,
                         "ack_timeout %llu ms is out of range (1000 to %u)",
                         (unsigned long long)w->ack_timeout, UINT32_MAX);
        return;
    }
    char tag[HOP_NAME_MAX + 1];
    if (w->consumer.len) {
        memcpy(tag, w->consumer.ptr, w->consumer.len);
        tag[w->consumer.len] = '\0';
        if (hop_conn_find_consumer(conn, tag, w->consumer.len)) {
            hop_broker_error(self, conn, w->id, HOP_CODE_PRECONDITION_FAILED,
                             "consumer tag '%s' is already in use on this connection", tag);
            return;
        }
    } else {
        do
            snprintf(tag, sizeof tag, "ctag-%llu", (unsigned long long)conn->next_ctag++);
        while (hop_conn_find_consumer(conn, tag, strlen(tag)));
    }
    if (q->exclusive_consumer || (w->exclusive && q->consumer_count)) {
        hop_broker_error(self, conn, w->id, HOP_CODE_ACCESS_REFUSED, "queue '%s' %s", q->name,
                         q->exclusive_consumer ? "has an exclusive consumer"
                                               : "has consumers: cannot consume exclusively");
        return;
    }
    hop_consumer_t *c = hop_calloc(1, sizeof *c);
    c->tag = hop_strndup(tag, strlen(tag));
    c->prefetch = (uint32_t)w->prefetch;
    c->no_ack = w->no_ack;
    c->exclusive = w->exclusive;
    c->ack_timeout = w->ack_timeout;
    hop_conn_add_consumer(conn, c);
    hop_queue_add_consumer(q, c);
    hop_broker_reply(self, HOP_CMD_CONSUME_OK, w->id);
    hop_enc_cstr(&self->enc, "consumer", c->tag);
    hop_broker_send(self, conn, NULL);
    hop_deliver_dispatch(self, q);
}

void
hop_deliver_end_consumer(hop_broker_t *self, hop_consumer_t *consumer, bool notify)
{
    hop_conn_t *conn = consumer->conn;
    hop_queue_t *q = consumer->queue;
    // Return what it holds, newest first so that the queue keeps its order.
    for (uint64_t tag = conn->next_tag; consumer->unacked && tag-- > hop_conn_first_tag(conn);) {
        hop_entry_t *e = hop_conn_lookup(conn, tag);
        if (e && e->consumer == consumer)
            s_settle_entry(self, conn, e, SETTLE_REQUEUE, NULL);
    }
    if (notify) {
        hop_enc_begin(&self->enc, HOP_CMD_CANCELLED);
        hop_enc_cstr(&self->enc, "consumer", consumer->tag);
        hop_broker_send(self, conn, NULL);
    }
    hop_conn_remove_consumer(conn, consumer);
    hop_queue_remove_consumer(q, consumer);
    free(consumer->tag);
    free(consumer);
    if (q->deleting)
        return;
    q->last_used = self->now;
    if (q->auto_delete && q->consumer_count == 0)
        hop_topology_delete_queue(self, q);
    else
        hop_deliver_dispatch(self, q);
}

void
hop_deliver_cancel(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w)
{
    hop_consumer_t *c =
        w->consumer.len ? hop_conn_find_consumer(conn, w->consumer.ptr, w->consumer.len) : NULL;
    if (!c) {
        hop_broker_error(self, conn, w->id, HOP_CODE_NOT_FOUND,
                         "no consumer '%.*s' on this connection", (int)w->consumer.len,
                         w->consumer.ptr ? w->consumer.ptr : "");
        return;
    }
    hop_deliver_end_consumer(self, c, false);
    hop_broker_reply(self, HOP_CMD_OK, w->id);
    hop_broker_send(self, conn, NULL);
}

void
hop_deliver_requeue_conn(hop_broker_t *self, hop_conn_t *conn)
{
    hop_queue_t *touched[32];
    size_t n = 0;
    for (uint64_t tag = conn->next_tag; conn->unacked && tag-- > hop_conn_first_tag(conn);) {
        hop_entry_t *e = hop_conn_lookup(conn, tag);
        if (!e)
            continue;
        hop_queue_t *q = s_settle_entry(self, conn, e, SETTLE_REQUEUE, NULL);
        if (!q)
            continue;
        bool seen = false;
        for (size_t i = 0; i < n && !seen; i++)
            seen = touched[i] == q;
        if (seen)
            continue;
        if (n == sizeof touched / sizeof touched[0]) {
            // Many queues: dispatch the oldest batch now rather than remember them all.
            for (size_t i = 0; i < n; i++)
                hop_deliver_dispatch(self, touched[i]);
            n = 0;
        }
        touched[n++] = q;
    }
    for (size_t i = 0; i < n; i++)
        hop_deliver_dispatch(self, touched[i]);
}

void
hop_deliver_get(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w)
{
    hop_queue_t *q = hop_topology_use_queue(self, conn, w);
    if (!q)
        return;
    q->last_used = self->now;
    hop_entry_t *head = s_live_head(self, q);
    uint64_t ready_at = head ? head->at : 0;
    hop_entry_t *e = head ? hop_queue_take(q, self->now) : NULL;
    if (!e) {
        hop_broker_reply(self, HOP_CMD_GET_EMPTY, w->id);
        hop_broker_send(self, conn, NULL);
        return;
    }
    hop_broker_reply(self, HOP_CMD_GET_OK, w->id);
    s_encode_delivery(self, e, conn->next_tag);
    hop_enc_uint(&self->enc, "messages", q->ready_count);
    if (hop_broker_send(self, conn, e->msg) < 0) {
        hop_queue_untake(q, e);
        return;
    }
    self->delivered++;
    s_first_delivery(self, e, ready_at);
    if (w->no_ack) {
        hop_conn_skip_tag(conn);
        hop_durable_forget(self, q, e);
        hop_queue_settle(q, e, false);
    } else
        hop_conn_track(conn, e);
}
