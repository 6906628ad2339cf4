// bus/inspect.c - what operators see: `list` (queues, exchanges, bindings, consumers,
// connections, unacked deliveries), `peek` and `status` (PROTOCOL.md 4.7).
#include "broker_internal.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
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

// Writes a rate per second as a msgpack float, rounded to 0.01 (a display figure: the
// counters beside it are exact).
static void
s_enc_rate(hop_enc_t *enc, const char *key, double rate)
{
    msgpack_packer *pk = hop_enc_packer(enc);
    size_t len = strlen(key);
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, key, len);
    msgpack_pack_double(pk, rate > 0 ? (double)(uint64_t)(rate * 100 + 0.5) / 100 : 0);
    hop_enc_count(enc);
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
        // Ready messages whose bytes are on disk only (bus/paging.c).
        hop_enc_uint(&self->enc, "messages_paged", hop_queue_paged(q));
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
        s_enc_rate(&self->enc, "publish_rate", q->publish_rate);
        s_enc_rate(&self->enc, "deliver_rate", q->deliver_rate);
        s_enc_rate(&self->enc, "ack_rate", q->ack_rate);
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

// Unacked deliveries (`list unacked`) -------------------------------------------------------

// Items of `list unacked` stop short of this many bytes so that the reply stays under the
// header limit every client enforces (HOP_HEADER_MAX); the oldest deliveries are kept.
#define S_LIST_BYTES 60000
#define S_ITEM_BYTES 128 // keys and numbers of one unacked item, at most

typedef struct {
    hop_conn_t *conn;
    hop_entry_t *entry;
} s_held_t;

// Oldest delivery first; the same age by connection, then tag.
static int
s_held_cmp(const void *a, const void *b)
{
    const s_held_t *x = a, *y = b;
    if (x->entry->at != y->entry->at)
        return x->entry->at < y->entry->at ? -1 : 1;
    if (x->conn != y->conn)
        return strcmp(x->conn->label, y->conn->label);
    return x->entry->tag < y->entry->tag ? -1 : x->entry->tag > y->entry->tag;
}

// Every delivery waiting for an ack, from the connections' tag rings (a get's delivery has no
// consumer to find it by), only those of queue when it is not NULL.
static void
s_list_unacked(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w)
{
    uint64_t wall = hop_wall_ms(); // delivered_at: wall clock, ages: monotonic
    hop_queue_t *queue = NULL;
    if (w->has & HOP_F_QUEUE) {
        queue = hop_topology_queue(self, &w->queue);
        if (!queue) {
            hop_broker_error(self, conn, w->id, HOP_CODE_NOT_FOUND, "no queue '%.*s'",
                             (int)w->queue.len, w->queue.ptr);
            return;
        }
    }
    size_t total = 0;
    size_t cursor = 0;
    void *value;
    while (hop_map_next(self->conns, &cursor, NULL, NULL, &value))
        total += ((hop_conn_t *)value)->unacked;
    s_held_t *held = hop_malloc((total ? total : 1) * sizeof *held);
    size_t n = 0;
    cursor = 0;
    while (hop_map_next(self->conns, &cursor, NULL, NULL, &value)) {
        hop_conn_t *c = value;
        for (uint64_t tag = hop_conn_first_tag(c); tag < c->next_tag && n < total; tag++) {
            hop_entry_t *e = hop_conn_lookup(c, tag);
            // noack: sent to a no-ack consumer, only waiting in this turn's batch
            if (e && !e->noack && (!queue || e->queue == queue))
                held[n++] = (s_held_t){c, e};
        }
    }
    qsort(held, n, sizeof *held, s_held_cmp);
    size_t fit = 0, bytes = 0;
    for (; fit < n; fit++) {
        const hop_entry_t *e = held[fit].entry;
        bytes += S_ITEM_BYTES + (e->queue ? e->queue->name_len : 0) +
                 (e->consumer ? strlen(e->consumer->tag) : 0);
        if (bytes > S_LIST_BYTES)
            break;
    }
    hop_broker_reply(self, HOP_CMD_LIST_OK, w->id);
    hop_enc_array_begin(&self->enc, "items", (uint32_t)fit);
    for (size_t i = 0; i < fit; i++) {
        const hop_entry_t *e = held[i].entry;
        hop_enc_map_begin(&self->enc, NULL);
        // An orphan's queue was deleted while it was out: it can still be settled.
        hop_enc_str(&self->enc, "queue", e->queue ? e->queue->name : "",
                    e->queue ? e->queue->name_len : 0);
        hop_enc_cstr(&self->enc, "consumer", e->consumer ? e->consumer->tag : "");
        hop_enc_cstr(&self->enc, "connection", held[i].conn->label);
        hop_enc_uint(&self->enc, "tag", e->tag);
        hop_enc_uint(&self->enc, "delivered_at", wall - (self->now - e->at));
        hop_enc_uint(&self->enc, "delivered_ms_ago", self->now - e->at);
        hop_enc_uint(&self->enc, "count", e->deliveries);
        hop_enc_map_end(&self->enc);
    }
    if (fit < n)
        hop_enc_uint(&self->enc, "left_off", n - fit);
    free(held);
    hop_broker_send(self, conn, NULL);
}

// Peek ------------------------------------------------------------------------------------

#define S_PEEK_DEFAULT 10
#define S_PEEK_MAX     1000
#define S_PEEK_ITEM    192 // keys, lengths and numbers of one peek item, at most

void
hop_inspect_peek(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w)
{
    // Inspection, not use: last_used (the queue's `expires`) is left alone.
    hop_queue_t *q = hop_topology_use_queue(self, conn, w);
    if (!q)
        return;
    uint64_t want = w->count ? w->count : S_PEEK_DEFAULT;
    if (want > S_PEEK_MAX)
        want = S_PEEK_MAX;
    // Pass 1: how many fit. Expired entries are skipped (they will never be delivered); a body
    // that would take the reply over the budget is cut, and the reply ends with it.
    uint32_t n = 0;
    size_t left = S_LIST_BYTES;
    uint32_t cut_at = UINT32_MAX; // the item whose body is cut
    size_t cut_len = 0;
    bool bare = false; // the cut item is shown without props and death (they alone are too big)
    for (hop_entry_t *e = hop_queue_next_ready(q, NULL); e && n < want;
         e = hop_queue_next_ready(q, e)) {
        if (e->expires_at < self->now)
            continue;
        const hop_msg_t *m = e->msg;
        uint32_t death_len = 0;
        hop_msg_death(m, &death_len);
        size_t meta = S_PEEK_ITEM + m->exchange_len + m->key_len + m->props_len + death_len;
        if (meta + m->body_len <= left) {
            left -= meta + m->body_len;
            n++;
            continue;
        }
        if (meta <= left || n == 0) {
            bare = meta > left;
            meta = bare ? S_PEEK_ITEM + (size_t)m->exchange_len + m->key_len : meta;
            cut_at = n++;
            cut_len = left > meta ? left - meta : 0;
        }
        break;
    }
    // Pass 2: write them.
    hop_broker_reply(self, HOP_CMD_PEEK_OK, w->id);
    hop_enc_uint(&self->enc, "messages", q->ready_count);
    hop_enc_array_begin(&self->enc, "items", n);
    msgpack_packer *pk = hop_enc_packer(&self->enc);
    uint32_t i = 0;
    for (hop_entry_t *e = hop_queue_next_ready(q, NULL); e && i < n;
         e = hop_queue_next_ready(q, e)) {
        if (e->expires_at < self->now)
            continue;
        const hop_msg_t *m = e->msg;
        bool cut = i == cut_at;
        hop_enc_map_begin(&self->enc, NULL);
        hop_enc_str(&self->enc, "exchange", m->exchange ? m->exchange : "", m->exchange_len);
        hop_enc_str(&self->enc, "key", m->key ? m->key : "", m->key_len);
        hop_enc_bool(&self->enc, "redelivered", e->redelivered);
        hop_enc_uint(&self->enc, "count", e->deliveries);
        if (m->priority)
            hop_enc_uint(&self->enc, "priority", m->priority);
        if (m->props && !(cut && bare))
            hop_enc_raw(&self->enc, "props", m->props, m->props_len);
        uint32_t death_len;
        const uint8_t *death = hop_msg_death(m, &death_len);
        if (death && !(cut && bare))
            hop_enc_raw(&self->enc, "death", death, death_len);
        size_t body_len = cut && cut_len < m->body_len ? cut_len : m->body_len;
        msgpack_pack_str(pk, 4);
        msgpack_pack_str_body(pk, "body", 4);
        msgpack_pack_bin(pk, body_len);
        if (body_len)
            msgpack_pack_bin_body(pk, m->body, body_len);
        hop_enc_count(&self->enc);
        hop_enc_uint(&self->enc, "size", m->body_len);
        if (cut)
            hop_enc_bool(&self->enc, "truncated", true);
        hop_enc_map_end(&self->enc);
        i++;
    }
    hop_broker_send(self, conn, NULL);
}

void
hop_inspect_list(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w)
{
    if (w->what.len == 7 && memcmp(w->what.ptr, "unacked", 7) == 0) {
        s_list_unacked(self, conn, w);
        return;
    }
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
                     "cannot list '%.*s': use queues, exchanges, bindings, consumers, "
                     "connections or unacked",
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
    // What the broker knows it holds, against RSS: bodies (each once) and message records.
    hop_enc_uint(&self->enc, "messages_bytes", hop_msg_held_bytes());
    hop_enc_uint(&self->enc, "message_records", hop_msg_live());
    s_enc_rate(&self->enc, "publish_rate", self->publish_rate);
    s_enc_rate(&self->enc, "deliver_rate", self->deliver_rate);
    s_enc_rate(&self->enc, "ack_rate", self->ack_rate);
    hop_broker_send(self, conn, NULL);
}
