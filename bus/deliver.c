// bus/deliver.c - the message path: publish, route, dispatch to consumers, get, and settle
// (ack, nack, reject), plus returning unacked messages when consumers go away.
#include "broker_internal.h"
#include "util.h"

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

void
hop_deliver_publish(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w, zmq_msg_t *header,
                    zmq_msg_t *body)
{
    hop_str_t xname = w->exchange;
    hop_xchg_t *x = hop_topology_exchange(self, &xname);
    if (!x) {
        hop_broker_error(self, conn, w->id, HOP_CODE_NOT_FOUND,
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
    if (self->route.size == 0) {
        x->unroutable++;
        self->unroutable++;
        return;
    }
    // Keep both frames: the body is shared by every queue and delivery, never copied.
    hop_msg_t *msg = hop_msg_new();
    const void *old_base = zmq_msg_data(header);
    zmq_msg_move(&msg->header, header);
    if (body)
        zmq_msg_move(&msg->body, body);
    const void *base = zmq_msg_data(&msg->header);
    msg->exchange = s_rebase(xname.ptr, old_base, base);
    msg->exchange_len = xname.len;
    msg->key = s_rebase(w->key.ptr, old_base, base);
    msg->key_len = w->key.len;
    msg->props = s_rebase(w->props.ptr, old_base, base);
    msg->props_len = w->props.len;
    // Enqueue everywhere before dispatching anywhere: a no-ack delivery may release the
    // message's first reference while other queues still need it.
    for (size_t i = 0; i < self->route.size; i++)
        hop_queue_push(self->route.queues[i], msg);
    if (msg->refs == 0) {
        hop_msg_release(msg);
        return;
    }
    for (size_t i = 0; i < self->route.size; i++)
        hop_deliver_dispatch(self, self->route.queues[i]);
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
}

void
hop_deliver_dispatch(hop_broker_t *self, hop_queue_t *queue)
{
    if (queue->dispatching || queue->deleting)
        return;
    queue->dispatching = true;
    while (queue->ready.head) {
        hop_consumer_t *c = hop_queue_next_consumer(queue);
        if (!c)
            break;
        hop_entry_t *e = hop_queue_take(queue);
        hop_conn_t *conn = c->conn;
        uint64_t tag = conn->next_tag;
        hop_enc_begin(&self->enc, HOP_CMD_DELIVER);
        hop_enc_cstr(&self->enc, "consumer", c->tag);
        s_encode_delivery(self, e, tag);
        if (hop_broker_send(self, conn, &e->msg->body) < 0) {
            // The peer's pipe is full (retry on the next tick) or the peer is gone.
            hop_queue_untake(queue, e);
            c->stalled = true;
            continue;
        }
        c->delivered++;
        self->delivered++;
        if (c->no_ack) {
            hop_conn_skip_tag(conn);
            hop_queue_settle(queue, e, false);
        } else {
            e->consumer = c;
            hop_conn_track(conn, e);
            c->unacked++;
        }
    }
    queue->dispatching = false;
}

// Settles one unacked entry of conn. Returns its queue (NULL if the queue is gone).
static hop_queue_t *
s_settle_entry(hop_broker_t *self, hop_conn_t *conn, hop_entry_t *e, s_settle_t how)
{
    hop_conn_untrack(conn, e->tag);
    if (e->consumer)
        e->consumer->unacked--;
    hop_queue_t *q = e->queue;
    if (!q) {
        hop_entry_destroy(&e); // its queue was deleted while it was out
        return NULL;
    }
    if (how == SETTLE_REQUEUE)
        hop_queue_requeue(q, e);
    else {
        hop_queue_settle(q, e, how == SETTLE_ACK);
        if (how == SETTLE_ACK)
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
    s_settle_t how = w->cmd == HOP_CMD_ACK ? SETTLE_ACK : w->requeue ? SETTLE_REQUEUE : SETTLE_DROP;
    bool multiple = w->cmd != HOP_CMD_REJECT && w->multiple;
    uint64_t last = w->tag;
    if (multiple && last == 0)
        last = conn->next_tag - 1; // AMQP: multiple with tag 0 means everything outstanding
    if (last >= conn->next_tag || (!multiple && !hop_conn_lookup(conn, last))) {
        hop_broker_error(self, conn, w->id, HOP_CODE_PRECONDITION_FAILED,
                         "unknown delivery tag %llu: never delivered on this connection, "
                         "already settled, or returned to its queue",
                         (unsigned long long)w->tag);
        return;
    }
    if (!multiple) {
        hop_queue_t *q = s_settle_entry(self, conn, hop_conn_lookup(conn, last), how);
        if (q)
            hop_deliver_dispatch(self, q);
        return;
    }
    // Newest first: requeued entries then each land at the head in O(1), in order.
    size_t settled = 0;
    hop_queue_t *touched = NULL;
    for (uint64_t tag = last + 1; tag-- > hop_conn_first_tag(conn);) {
        hop_entry_t *e = hop_conn_lookup(conn, tag);
        if (!e)
            continue;
        hop_queue_t *q = s_settle_entry(self, conn, e, how);
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
    if (!(w->has & HOP_F_QUEUE)) {
        hop_broker_error(self, conn, w->id, HOP_CODE_SYNTAX_ERROR, "'consume' needs field 'queue'");
        return;
    }
    hop_queue_t *q = hop_topology_queue(self, &w->queue);
    if (!q) {
        hop_broker_error(self, conn, w->id, HOP_CODE_NOT_FOUND, "no queue '%.*s'",
                         (int)w->queue.len, w->queue.ptr);
        return;
    }
    if (hop_topology_access(self, conn, q, w->id))
        return;
    if (w->prefetch > UINT32_MAX) {
        hop_broker_error(self, conn, w->id, HOP_CODE_SYNTAX_ERROR,
                         "prefetch %llu is too large (at most %u; 0 means unlimited)",
                         (unsigned long long)w->prefetch, UINT32_MAX);
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
            s_settle_entry(self, conn, e, SETTLE_REQUEUE);
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
        hop_queue_t *q = s_settle_entry(self, conn, e, SETTLE_REQUEUE);
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
    if (!(w->has & HOP_F_QUEUE)) {
        hop_broker_error(self, conn, w->id, HOP_CODE_SYNTAX_ERROR, "'get' needs field 'queue'");
        return;
    }
    hop_queue_t *q = hop_topology_queue(self, &w->queue);
    if (!q) {
        hop_broker_error(self, conn, w->id, HOP_CODE_NOT_FOUND, "no queue '%.*s'",
                         (int)w->queue.len, w->queue.ptr);
        return;
    }
    if (hop_topology_access(self, conn, q, w->id))
        return;
    hop_entry_t *e = hop_queue_take(q);
    if (!e) {
        hop_broker_reply(self, HOP_CMD_GET_EMPTY, w->id);
        hop_broker_send(self, conn, NULL);
        return;
    }
    hop_broker_reply(self, HOP_CMD_GET_OK, w->id);
    s_encode_delivery(self, e, conn->next_tag);
    hop_enc_uint(&self->enc, "messages", q->ready.size);
    if (hop_broker_send(self, conn, &e->msg->body) < 0) {
        hop_queue_untake(q, e);
        return;
    }
    self->delivered++;
    if (w->no_ack) {
        hop_conn_skip_tag(conn);
        hop_queue_settle(q, e, false);
    } else
        hop_conn_track(conn, e);
}

void
hop_deliver_tick(hop_broker_t *self)
{
    // Consumers whose pipes were full get another chance every tick.
    size_t cursor = 0;
    void *value;
    while (hop_map_next(self->queues, &cursor, NULL, NULL, &value)) {
        hop_queue_t *q = value;
        if (!q->ready.head || !q->consumers)
            continue;
        bool any = false;
        hop_consumer_t *c = q->consumers;
        do {
            if (c->stalled && !c->conn->dead) {
                c->stalled = false;
                any = true;
            }
            c = c->next;
        } while (c != q->consumers);
        if (any)
            hop_deliver_dispatch(self, q);
    }
}
