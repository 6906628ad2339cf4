// bus/inspect.c - what operators see: `list` (queues, exchanges, bindings, consumers,
// connections) and `status` (PROTOCOL.md 4.7).
#include "broker_internal.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

// Inspection ------------------------------------------------------------------------------

// Writes the queue arguments that are set (as queue.declare names them).
void
hop_inspect_write_args(hop_enc_t *enc, const hop_qargs_t *a)
{
    if (a->max_length)
        hop_enc_uint(enc, "max_length", a->max_length);
    if (a->max_length_bytes)
        hop_enc_uint(enc, "max_length_bytes", a->max_length_bytes);
    if (a->max_length || a->max_length_bytes)
        hop_enc_cstr(enc, "overflow", a->reject_publish ? "reject-publish" : "drop-head");
    if (a->has_ttl)
        hop_enc_uint(enc, "message_ttl", a->message_ttl);
    if (a->expires)
        hop_enc_uint(enc, "expires", a->expires);
    if (a->max_deliveries)
        hop_enc_uint(enc, "max_deliveries", a->max_deliveries);
    if (a->dlx)
        hop_enc_cstr(enc, "dead_letter_exchange", a->dlx);
    if (a->dlk)
        hop_enc_cstr(enc, "dead_letter_key", a->dlk);
    if (a->retry_delay)
        hop_enc_uint(enc, "retry_delay", a->retry_delay);
    if (a->retry_delay_max)
        hop_enc_uint(enc, "retry_delay_max", a->retry_delay_max);
    if (a->max_priority)
        hop_enc_uint(enc, "max_priority", a->max_priority);
    if (a->ack_timeout)
        hop_enc_uint(enc, "ack_timeout", a->ack_timeout);
}

static void
s_list_queues(hop_broker_t *self)
{
    hop_enc_array_begin(&self->enc, "items", (uint32_t)hop_map_size(self->queues));
    size_t cursor = 0;
    void *value;
    while (hop_map_next(self->queues, &cursor, NULL, NULL, &value)) {
        hop_queue_t *q = value;
        hop_enc_map_begin(&self->enc, NULL);
        hop_enc_str(&self->enc, "name", q->name, q->name_len);
        hop_enc_bool(&self->enc, "durable", q->durable);
        hop_enc_bool(&self->enc, "exclusive", q->exclusive);
        hop_enc_bool(&self->enc, "auto_delete", q->auto_delete);
        hop_enc_uint(&self->enc, "messages_ready", q->ready_count);
        hop_enc_uint(&self->enc, "messages_unacked", q->unacked.size);
        hop_enc_uint(&self->enc, "messages_delayed", q->delayed.size);
        hop_enc_uint(&self->enc, "messages", q->ready_count + q->unacked.size + q->delayed.size);
        hop_enc_uint(&self->enc, "bytes_ready", q->ready_bytes);
        hop_entry_t *oldest = hop_queue_oldest(q);
        // Age since it was published (or last delivered, or due, if it came back).
        hop_enc_uint(&self->enc, "oldest_ready_ms", oldest ? self->now - oldest->at : 0);
        hop_enc_uint(&self->enc, "consumers", q->consumer_count);
        hop_enc_uint(&self->enc, "published", q->published);
        hop_enc_uint(&self->enc, "delivered", q->delivered);
        hop_enc_uint(&self->enc, "acked", q->acked);
        hop_enc_uint(&self->enc, "dead_lettered", q->dead_lettered);
        hop_enc_uint(&self->enc, "dropped", q->dropped);
        hop_enc_uint(&self->enc, "expired", q->expired);
        hop_enc_uint(&self->enc, "rejected_publishes", q->rejected_publishes);
        hop_inspect_write_args(&self->enc, &q->args);
        hop_enc_map_end(&self->enc);
    }
}

static void
s_list_exchanges(hop_broker_t *self)
{
    hop_enc_array_begin(&self->enc, "items", (uint32_t)hop_map_size(self->exchanges));
    size_t cursor = 0;
    void *value;
    while (hop_map_next(self->exchanges, &cursor, NULL, NULL, &value)) {
        hop_xchg_t *x = value;
        hop_enc_map_begin(&self->enc, NULL);
        hop_enc_str(&self->enc, "name", x->name, x->name_len);
        hop_enc_cstr(&self->enc, "type", hop_exchange_type_name(x->type));
        hop_enc_bool(&self->enc, "durable", x->durable);
        hop_enc_bool(&self->enc, "auto_delete", x->auto_delete);
        hop_enc_uint(&self->enc, "bindings", x->table ? hop_exchange_binding_count(x->table) : 0);
        hop_enc_uint(&self->enc, "published", x->published);
        hop_enc_uint(&self->enc, "unroutable", x->unroutable);
        hop_enc_map_end(&self->enc);
    }
}

typedef struct {
    hop_broker_t *broker;
    hop_xchg_t *exchange;
    uint32_t count;
} s_bindings_t;

static int
s_count_binding(const char *key, size_t key_len, void *queue, void *arg)
{
    (void)key, (void)key_len, (void)queue;
    ((s_bindings_t *)arg)->count++;
    return 0;
}

static int
s_write_binding(const char *key, size_t key_len, void *queue, void *arg)
{
    s_bindings_t *ctx = arg;
    hop_enc_t *enc = &ctx->broker->enc;
    hop_enc_map_begin(enc, NULL);
    hop_enc_str(enc, "exchange", ctx->exchange->name, ctx->exchange->name_len);
    hop_enc_str(enc, "queue", ((hop_queue_t *)queue)->name, ((hop_queue_t *)queue)->name_len);
    hop_enc_str(enc, "key", key, key_len);
    hop_enc_map_end(enc);
    return 0;
}

static void
s_list_bindings(hop_broker_t *self)
{
    s_bindings_t ctx = {.broker = self};
    size_t cursor = 0;
    void *value;
    while (hop_map_next(self->exchanges, &cursor, NULL, NULL, &value))
        if (((hop_xchg_t *)value)->table)
            hop_exchange_foreach(((hop_xchg_t *)value)->table, s_count_binding, &ctx);
    hop_enc_array_begin(&self->enc, "items", ctx.count);
    cursor = 0;
    while (hop_map_next(self->exchanges, &cursor, NULL, NULL, &value)) {
        ctx.exchange = value;
        if (ctx.exchange->table)
            hop_exchange_foreach(ctx.exchange->table, s_write_binding, &ctx);
    }
}

static void
s_list_consumers(hop_broker_t *self)
{
    uint32_t count = 0;
    size_t cursor = 0;
    void *value;
    while (hop_map_next(self->conns, &cursor, NULL, NULL, &value))
        count += (uint32_t)((hop_conn_t *)value)->consumer_count;
    hop_enc_array_begin(&self->enc, "items", count);
    cursor = 0;
    while (hop_map_next(self->conns, &cursor, NULL, NULL, &value)) {
        hop_conn_t *conn = value;
        for (hop_consumer_t *c = conn->consumers; c; c = c->conn_next) {
            hop_enc_map_begin(&self->enc, NULL);
            hop_enc_str(&self->enc, "queue", c->queue->name, c->queue->name_len);
            hop_enc_cstr(&self->enc, "consumer", c->tag);
            hop_enc_cstr(&self->enc, "connection", conn->label);
            hop_enc_uint(&self->enc, "prefetch", c->prefetch);
            hop_enc_bool(&self->enc, "no_ack", c->no_ack);
            hop_enc_bool(&self->enc, "exclusive", c->exclusive);
            hop_enc_uint(&self->enc, "unacked", c->unacked);
            hop_enc_uint(&self->enc, "delivered", c->delivered);
            hop_enc_uint(&self->enc, "ack_timeout",
                         c->ack_timeout               ? c->ack_timeout
                         : c->queue->args.ack_timeout ? c->queue->args.ack_timeout
                                                      : self->config.ack_timeout_ms);
            hop_enc_map_end(&self->enc);
        }
    }
}

static void
s_list_connections(hop_broker_t *self)
{
    hop_enc_array_begin(&self->enc, "items", (uint32_t)hop_map_size(self->conns));
    size_t cursor = 0;
    void *value;
    while (hop_map_next(self->conns, &cursor, NULL, NULL, &value)) {
        hop_conn_t *conn = value;
        hop_enc_map_begin(&self->enc, NULL);
        hop_enc_cstr(&self->enc, "connection", conn->label);
        hop_enc_cstr(&self->enc, "name", conn->name);
        hop_enc_cstr(&self->enc, "peer", conn->peer);
        hop_enc_uint(&self->enc, "heartbeat", conn->heartbeat);
        hop_enc_uint(&self->enc, "last_seen_ms", self->now - conn->last_recv);
        hop_enc_uint(&self->enc, "consumers", conn->consumer_count);
        hop_enc_uint(&self->enc, "unacked", conn->unacked);
        hop_enc_uint(&self->enc, "connected_ms", self->now - conn->connected_at);
        hop_enc_bool(&self->enc, "paused", conn->blocked_on != NULL);
        if (conn->blocked_on)
            hop_enc_cstr(&self->enc, "paused_by", conn->blocked_on->name);
        hop_enc_map_end(&self->enc);
    }
}

void
hop_inspect_list(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w)
{
    static const struct {
        const char *what;
        void (*fn)(hop_broker_t *);
    } subjects[] = {{"queues", s_list_queues},
                    {"exchanges", s_list_exchanges},
                    {"bindings", s_list_bindings},
                    {"consumers", s_list_consumers},
                    {"connections", s_list_connections}};
    for (size_t i = 0; i < sizeof subjects / sizeof subjects[0]; i++) {
        if (w->what.len == strlen(subjects[i].what) &&
            memcmp(w->what.ptr, subjects[i].what, w->what.len) == 0) {
            hop_broker_reply(self, HOP_CMD_LIST_OK, w->id);
            subjects[i].fn(self);
            hop_broker_send(self, conn, NULL);
            return;
        }
    }
    hop_broker_error(self, conn, w->id, HOP_CODE_COMMAND_INVALID,
                     "cannot list '%.*s': use queues, exchanges, bindings, consumers or "
                     "connections",
                     (int)w->what.len, w->what.ptr ? w->what.ptr : "");
}

void
hop_inspect_status(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w)
{
    uint64_t ready = 0, unacked = 0, delayed = 0, consumers = 0;
    size_t cursor = 0;
    void *value;
    while (hop_map_next(self->queues, &cursor, NULL, NULL, &value)) {
        hop_queue_t *q = value;
        ready += q->ready_count;
        unacked += q->unacked.size;
        delayed += q->delayed.size;
        consumers += q->consumer_count;
    }
    hop_broker_reply(self, HOP_CMD_STATUS_OK, w->id);
    hop_enc_uint(&self->enc, "version", HOP_PROTOCOL_VERSION);
    hop_enc_cstr(&self->enc, "server", "hopperd " HOP_VERSION);
    hop_enc_uint(&self->enc, "uptime_ms", self->now - self->started_at);
    hop_enc_cstr(&self->enc, "endpoint", self->endpoint);
    hop_enc_cstr(&self->enc, "data_dir", self->data_dir);
    hop_enc_uint(&self->enc, "connections", hop_map_size(self->conns));
    hop_enc_uint(&self->enc, "consumers", consumers);
    hop_enc_uint(&self->enc, "queues", hop_map_size(self->queues));
    hop_enc_uint(&self->enc, "exchanges", hop_map_size(self->exchanges));
    hop_enc_uint(&self->enc, "messages_ready", ready);
    hop_enc_uint(&self->enc, "messages_unacked", unacked);
    hop_enc_uint(&self->enc, "messages_delayed", delayed);
    hop_enc_uint(&self->enc, "published", self->published);
    hop_enc_uint(&self->enc, "delivered", self->delivered);
    hop_enc_uint(&self->enc, "acked", self->acked);
    hop_enc_uint(&self->enc, "unroutable", self->unroutable);
    hop_enc_uint(&self->enc, "returned", self->returned);
    hop_enc_uint(&self->enc, "confirmed", self->confirmed);
    hop_enc_uint(&self->enc, "rejected_publishes", self->rejected_publishes);
    hop_enc_uint(&self->enc, "dead_lettered", self->dead_lettered);
    hop_enc_uint(&self->enc, "dropped", self->dropped);
    hop_enc_uint(&self->enc, "expired", self->expired);
    hop_enc_uint(&self->enc, "revoked", self->revoked);
    hop_enc_uint(&self->enc, "ack_timeout", self->config.ack_timeout_ms);
    uint64_t paused = 0;
    for (hop_conn_t *c = self->blocked_head; c; c = c->blocked_next)
        paused++;
    hop_enc_uint(&self->enc, "paused_publishers", paused);
    hop_durable_status(self, &self->enc);
    hop_enc_uint(&self->enc, "fd_limit", self->fd_limit);
    hop_enc_uint(&self->enc, "accept_failed", self->accept_failed);
    hop_enc_uint(&self->enc, "flow_messages", self->config.flow_messages);
    hop_enc_uint(&self->enc, "flow_bytes", self->config.flow_bytes);
    hop_enc_uint(&self->enc, "rss_bytes", hop_rss_bytes());
    hop_broker_send(self, conn, NULL);
}
