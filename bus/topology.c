// bus/topology.c - exchanges, queues and bindings: declare, delete, purge, bind, unbind.
#include "broker_internal.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool
s_reserved(const char *name, size_t len)
{
    return len >= 4 && memcmp(name, "amq.", 4) == 0;
}

static hop_xchg_t *
s_exchange_new(hop_broker_t *self, const char *name, size_t len, hop_exchange_type_t type)
{
    hop_xchg_t *x = hop_calloc(1, sizeof *x);
    x->name = hop_strndup(name, len);
    x->name_len = len;
    x->type = type;
    x->table = hop_exchange_new(type);
    hop_map_put(self->exchanges, name, len, x);
    return x;
}

static void
s_exchange_destroy(hop_broker_t *self, hop_xchg_t *x)
{
    hop_durable_exchange_gone(self, x);
    hop_map_remove(self->exchanges, x->name, x->name_len);
    hop_exchange_destroy(&x->table);
    free(x->name);
    free(x);
}

void
hop_topology_init(hop_broker_t *self)
{
    // The default exchange routes by queue name itself; it has no table.
    hop_xchg_t *def = s_exchange_new(self, "", 0, HOP_EXCHANGE_DIRECT);
    hop_exchange_destroy(&def->table);
    static const struct {
        const char *name;
        hop_exchange_type_t type;
    } builtin[] = {{"", HOP_EXCHANGE_DIRECT},
                   {"amq.direct", HOP_EXCHANGE_DIRECT},
                   {"amq.fanout", HOP_EXCHANGE_FANOUT},
                   {"amq.topic", HOP_EXCHANGE_TOPIC},
                   {"amq.hopper.trace", HOP_EXCHANGE_TOPIC}}; // route events (bus/trace.c)
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++) {
        hop_xchg_t *x =
            i ? s_exchange_new(self, builtin[i].name, strlen(builtin[i].name), builtin[i].type)
              : def;
        x->builtin = true;
        x->durable = true;
        self->trace_x = x; // the last one
    }
}

void
hop_topology_fini(hop_broker_t *self)
{
    while (hop_map_size(self->queues)) {
        size_t cursor = 0;
        void *value;
        hop_map_next(self->queues, &cursor, NULL, NULL, &value);
        hop_topology_delete_queue(self, value);
    }
    while (hop_map_size(self->exchanges)) {
        size_t cursor = 0;
        void *value;
        hop_map_next(self->exchanges, &cursor, NULL, NULL, &value);
        s_exchange_destroy(self, value);
    }
}

hop_queue_t *
hop_topology_queue(hop_broker_t *self, const hop_str_t *name)
{
    return hop_map_get(self->queues, name->ptr ? name->ptr : "", name->len);
}

hop_xchg_t *
hop_topology_exchange(hop_broker_t *self, const hop_str_t *name)
{
    return hop_map_get(self->exchanges, name->ptr ? name->ptr : "", name->len);
}

int
hop_topology_access(hop_broker_t *self, hop_conn_t *conn, hop_queue_t *queue, uint64_t id)
{
    if (queue->exclusive && queue->owner != conn) {
        hop_broker_error(self, conn, id, HOP_CODE_RESOURCE_LOCKED,
                         "queue '%s' is exclusive to another connection", queue->name);
        return -1;
    }
    return 0;
}

// Field checks: a missing required name is a syntax error naming the field.
static int
s_need(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w, uint32_t bit, const char *field)
{
    if (w->has & bit)
        return 0;
    hop_broker_error(self, conn, w->id, HOP_CODE_SYNTAX_ERROR, "'%s' needs field '%s'",
                     hop_cmd_name(w->cmd), field);
    return -1;
}

static void
s_not_found(hop_broker_t *self, hop_conn_t *conn, uint64_t id, const char *what,
            const hop_str_t *name)
{
    hop_broker_error(self, conn, id, HOP_CODE_NOT_FOUND, "no %s '%.*s'", what, (int)name->len,
                     name->ptr ? name->ptr : "");
}

static void
s_ok(hop_broker_t *self, hop_conn_t *conn, uint64_t id)
{
    hop_broker_reply(self, HOP_CMD_OK, id);
    hop_broker_send(self, conn, NULL);
}

// Reports the first property that differs from what was declared before.
static int
s_equivalent(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w, const char *what,
             const char *name, const char *prop, bool have, bool want)
{
    if (have == want)
        return 0;
    hop_broker_error(self, conn, w->id, HOP_CODE_PRECONDITION_FAILED,
                     "inequivalent arg '%s' for %s '%s': received %s but current is %s", prop, what,
                     name, want ? "true" : "false", have ? "true" : "false");
    return -1;
}

hop_queue_t *
hop_topology_use_queue(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w)
{
    if (s_need(self, conn, w, HOP_F_QUEUE, "queue"))
        return NULL;
    hop_queue_t *q = hop_topology_queue(self, &w->queue);
    if (!q) {
        s_not_found(self, conn, w->id, "queue", &w->queue);
        return NULL;
    }
    return hop_topology_access(self, conn, q, w->id) ? NULL : q;
}

void
hop_topology_exchange_declare(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w)
{
    if (s_need(self, conn, w, HOP_F_EXCHANGE, "exchange"))
        return;
    hop_xchg_t *x = hop_topology_exchange(self, &w->exchange);
    if (w->passive) {
        if (!x)
            s_not_found(self, conn, w->id, "exchange", &w->exchange);
        else
            s_ok(self, conn, w->id);
        return;
    }
    if (w->exchange.len == 0 || s_reserved(w->exchange.ptr, w->exchange.len)) {
        hop_broker_error(self, conn, w->id, HOP_CODE_ACCESS_REFUSED,
                         "exchange name '%.*s' is reserved (the default exchange and amq.* "
                         "are predeclared)",
                         (int)w->exchange.len, w->exchange.ptr);
        return;
    }
    char type_name[16] = "";
    if (w->type.len < sizeof type_name)
        memcpy(type_name, w->type.ptr ? w->type.ptr : "", w->type.len);
    hop_exchange_type_t type;
    if (!(w->has & HOP_F_TYPE) || w->type.len >= sizeof type_name ||
        hop_exchange_type_parse(type_name, &type) < 0) {
        hop_broker_error(self, conn, w->id, HOP_CODE_COMMAND_INVALID,
                         "unknown exchange type '%.*s': use direct, fanout or topic",
                         (int)w->type.len, w->type.ptr ? w->type.ptr : "");
        return;
    }
    if (x) {
        if (x->type != type) {
            hop_broker_error(self, conn, w->id, HOP_CODE_PRECONDITION_FAILED,
                             "inequivalent arg 'type' for exchange '%s': received '%s' but "
                             "current is '%s'",
                             x->name, type_name, hop_exchange_type_name(x->type));
            return;
        }
        if (s_equivalent(self, conn, w, "exchange", x->name, "durable", x->durable, w->durable) ||
            s_equivalent(self, conn, w, "exchange", x->name, "auto_delete", x->auto_delete,
                         w->auto_delete))
            return;
    } else {
        x = s_exchange_new(self, w->exchange.ptr, w->exchange.len, type);
        x->durable = w->durable;
        x->auto_delete = w->auto_delete;
        hop_durable_exchange(self, x, true);
        hop_log(HOP_DEBUG, "topology", "exchange declared name=%s type=%s", x->name, type_name);
    }
    s_ok(self, conn, w->id);
}

void
hop_topology_exchange_remove(hop_broker_t *self, hop_xchg_t *x)
{
    s_exchange_destroy(self, x);
}

void
hop_topology_exchange_delete(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w)
{
    if (s_need(self, conn, w, HOP_F_EXCHANGE, "exchange"))
        return;
    hop_xchg_t *x = hop_topology_exchange(self, &w->exchange);
    if (!x) {
        s_not_found(self, conn, w->id, "exchange", &w->exchange);
        return;
    }
    if (x->builtin) {
        hop_broker_error(self, conn, w->id, HOP_CODE_ACCESS_REFUSED,
                         "exchange '%s' is predeclared and cannot be deleted", x->name);
        return;
    }
    if (w->if_unused && hop_exchange_binding_count(x->table) > 0) {
        hop_broker_error(self, conn, w->id, HOP_CODE_PRECONDITION_FAILED,
                         "exchange '%s' has %zu bindings (if_unused)", x->name,
                         hop_exchange_binding_count(x->table));
        return;
    }
    s_exchange_destroy(self, x);
    s_ok(self, conn, w->id);
}

// A server-chosen queue name, as RabbitMQ does: amq.gen- and 22 random characters.
static void
s_generate_name(char *out, size_t size)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    static uint64_t state;
    if (!state)
        state = hop_wall_ms() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
    int n = snprintf(out, size, "amq.gen-");
    for (int i = 0; i < 22 && (size_t)n + 1 < size; i++) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        out[n++] = alphabet[state & 63];
    }
    out[n] = '\0';
}

// Queue arguments --------------------------------------------------------------------------

static void
s_args_free(hop_qargs_t *a)
{
    free(a->dlx);
    free(a->dlk);
    a->dlx = a->dlk = NULL;
}

// Checks that a number argument is within lo..hi; sends 502 and returns -1 if not.
static int
s_arg_range(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w, uint64_t bit,
            const char *name, uint64_t value, uint64_t lo, uint64_t hi)
{
    if (!(w->has & bit) || (value >= lo && value <= hi))
        return 0;
    hop_broker_error(self, conn, w->id, HOP_CODE_SYNTAX_ERROR,
                     "queue argument '%s' is %llu: it must be from %llu to %llu", name,
                     (unsigned long long)value, (unsigned long long)lo, (unsigned long long)hi);
    return -1;
}

// Reads and checks the arguments of a queue.declare into a (owned strings). Returns 0, or -1
// with the error sent.
static int
s_queue_args(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w, hop_qargs_t *a)
{
    memset(a, 0, sizeof *a);
    if (s_arg_range(self, conn, w, HOP_F_MESSAGE_TTL, "message_ttl", w->message_ttl, 0,
                    UINT32_MAX) ||
        s_arg_range(self, conn, w, HOP_F_EXPIRES, "expires", w->expires, 1, UINT32_MAX) ||
        s_arg_range(self, conn, w, HOP_F_RETRY_DELAY, "retry_delay", w->retry_delay, 0,
                    UINT32_MAX) ||
        s_arg_range(self, conn, w, HOP_F_RETRY_DELAY_MAX, "retry_delay_max", w->retry_delay_max, 0,
                    UINT32_MAX) ||
        s_arg_range(self, conn, w, HOP_F_MAX_PRIORITY, "max_priority", w->max_priority, 1, 255) ||
        s_arg_range(self, conn, w, HOP_F_ACK_TIMEOUT, "ack_timeout", w->ack_timeout, 1000,
                    UINT32_MAX))
        return -1;
    bool reject = false;
    if (w->has & HOP_F_OVERFLOW) {
        const hop_str_t *o = &w->overflow;
        reject = o->len == 14 && memcmp(o->ptr, "reject-publish", 14) == 0;
        if (!reject && !(o->len == 9 && memcmp(o->ptr, "drop-head", 9) == 0)) {
            hop_broker_error(self, conn, w->id, HOP_CODE_SYNTAX_ERROR,
                             "queue argument 'overflow' is '%.*s': it must be drop-head or "
                             "reject-publish",
                             (int)o->len, o->ptr ? o->ptr : "");
            return -1;
        }
    }
    if ((w->has & HOP_F_DLK) && !(w->has & HOP_F_DLX)) {
        hop_broker_error(self, conn, w->id, HOP_CODE_PRECONDITION_FAILED,
                         "queue argument 'dead_letter_key' needs 'dead_letter_exchange' too");
        return -1;
    }
    if ((w->has & HOP_F_RETRY_DELAY_MAX) && w->retry_delay_max < w->retry_delay) {
        hop_broker_error(self, conn, w->id, HOP_CODE_PRECONDITION_FAILED,
                         "queue argument 'retry_delay_max' (%llu) is below 'retry_delay' (%llu)",
                         (unsigned long long)w->retry_delay_max,
                         (unsigned long long)w->retry_delay);
        return -1;
    }
    a->max_length = w->max_length;
    a->max_length_bytes = w->max_length_bytes;
    a->reject_publish = reject;
    a->has_ttl = (w->has & HOP_F_MESSAGE_TTL) != 0;
    a->message_ttl = w->message_ttl;
    a->expires = w->expires;
    a->max_deliveries = w->max_deliveries;
    if (w->has & HOP_F_DLX)
        a->dlx = hop_strndup(w->dead_letter_exchange.ptr ? w->dead_letter_exchange.ptr : "",
                             w->dead_letter_exchange.len);
    if (w->has & HOP_F_DLK)
        a->dlk = hop_strndup(w->dead_letter_key.ptr ? w->dead_letter_key.ptr : "",
                             w->dead_letter_key.len);
    a->retry_delay = w->retry_delay;
    a->retry_delay_max = w->retry_delay_max;
    a->max_priority = (uint32_t)w->max_priority;
    a->ack_timeout = w->ack_timeout;
    return 0;
}

// Compares the arguments a redeclare names with those in force; sends 406 and returns -1 on
// the first difference. Arguments the redeclare leaves out are not compared.
static int
s_args_equivalent(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w, const hop_queue_t *q,
                  const hop_qargs_t *a)
{
    const hop_qargs_t *h = &q->args;
    struct {
        uint64_t bit;
        const char *name;
        uint64_t have, want;
    } nums[] = {
        {HOP_F_MAX_LENGTH, "max_length", h->max_length, a->max_length},
        {HOP_F_MAX_LENGTH_BYTES, "max_length_bytes", h->max_length_bytes, a->max_length_bytes},
        {HOP_F_OVERFLOW, "overflow (0 drop-head, 1 reject-publish)", h->reject_publish,
         a->reject_publish},
        {HOP_F_MESSAGE_TTL, "message_ttl", h->has_ttl ? h->message_ttl : UINT64_MAX,
         a->message_ttl},
        {HOP_F_EXPIRES, "expires", h->expires, a->expires},
        {HOP_F_MAX_DELIVERIES, "max_deliveries", h->max_deliveries, a->max_deliveries},
        {HOP_F_RETRY_DELAY, "retry_delay", h->retry_delay, a->retry_delay},
        {HOP_F_RETRY_DELAY_MAX, "retry_delay_max", h->retry_delay_max, a->retry_delay_max},
        {HOP_F_MAX_PRIORITY, "max_priority", h->max_priority, a->max_priority},
        {HOP_F_ACK_TIMEOUT, "ack_timeout", h->ack_timeout, a->ack_timeout},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        if (!(w->has & nums[i].bit) || nums[i].have == nums[i].want)
            continue;
        hop_broker_error(
            self, conn, w->id, HOP_CODE_PRECONDITION_FAILED,
            "inequivalent arg '%s' for queue '%s': received %llu but current is %s%llu",
            nums[i].name, q->name, (unsigned long long)nums[i].want,
            nums[i].have == UINT64_MAX ? "unset " : "",
            nums[i].have == UINT64_MAX ? 0ull : (unsigned long long)nums[i].have);
        return -1;
    }
    struct {
        uint64_t bit;
        const char *name, *have, *want;
    } strs[] = {
        {HOP_F_DLX, "dead_letter_exchange", h->dlx, a->dlx},
        {HOP_F_DLK, "dead_letter_key", h->dlk, a->dlk},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        if (!(w->has & strs[i].bit) || (strs[i].have && strcmp(strs[i].have, strs[i].want) == 0))
            continue;
        hop_broker_error(
            self, conn, w->id, HOP_CODE_PRECONDITION_FAILED,
            "inequivalent arg '%s' for queue '%s': received '%s' but current is %s%s%s",
            strs[i].name, q->name, strs[i].want, strs[i].have ? "'" : "unset",
            strs[i].have ? strs[i].have : "", strs[i].have ? "'" : "");
        return -1;
    }
    return 0;
}

void
hop_topology_queue_declare(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w)
{
    hop_str_t name = w->queue;
    if (!name.ptr)
        name.ptr = "";
    hop_queue_t *q = name.len ? hop_topology_queue(self, &name) : NULL;
    hop_qargs_t args;
    if (!w->passive && s_queue_args(self, conn, w, &args))
        return;
    if (w->passive) {
        if (!q) {
            s_not_found(self, conn, w->id, "queue", &name);
            return;
        }
    } else if (q) {
        int rc = hop_topology_access(self, conn, q, w->id) ||
                 s_equivalent(self, conn, w, "queue", q->name, "durable", q->durable, w->durable) ||
                 s_equivalent(self, conn, w, "queue", q->name, "exclusive", q->exclusive,
                              w->exclusive) ||
                 s_equivalent(self, conn, w, "queue", q->name, "auto_delete", q->auto_delete,
                              w->auto_delete) ||
                 s_args_equivalent(self, conn, w, q, &args);
        s_args_free(&args);
        if (rc)
            return;
    } else {
        char generated[32];
        if (name.len == 0) {
            do
                s_generate_name(generated, sizeof generated);
            while (hop_map_get(self->queues, generated, strlen(generated)));
            name.ptr = generated;
            name.len = (uint32_t)strlen(generated);
        } else if (s_reserved(name.ptr, name.len)) {
            hop_broker_error(self, conn, w->id, HOP_CODE_ACCESS_REFUSED,
                             "queue name '%.*s' is reserved: names starting with amq. are "
                             "chosen by the broker (declare with an empty name)",
                             (int)name.len, name.ptr);
            s_args_free(&args);
            return;
        }
        q = hop_queue_new(name.ptr, name.len);
        hop_queue_set_args(q, &args);
        q->durable = w->durable;
        q->exclusive = w->exclusive;
        q->auto_delete = w->auto_delete;
        if (q->exclusive) {
            q->owner = conn;
            q->owner_next = conn->exclusive;
            conn->exclusive = q;
        }
        hop_map_put(self->queues, q->name, q->name_len, q);
        hop_durable_queue(self, q, true);
        hop_log(HOP_DEBUG, "topology", "queue declared name=%s conn=%s", q->name, conn->label);
    }
    q->last_used = self->now;
    hop_broker_reply(self, HOP_CMD_QUEUE_OK, w->id);
    hop_enc_str(&self->enc, "queue", q->name, q->name_len);
    hop_enc_uint(&self->enc, "messages", q->ready_count);
    hop_enc_uint(&self->enc, "consumers", q->consumer_count);
    hop_broker_send(self, conn, NULL);
}

void
hop_topology_delete_queue(hop_broker_t *self, hop_queue_t *queue)
{
    // Consumers first: each gets 'cancelled'; their unacked entries become orphans below.
    queue->deleting = true;
    while (queue->consumers)
        hop_deliver_end_consumer(self, queue->consumers, true);
    // Bindings: every exchange may hold some. Auto-delete exchanges left empty go too.
    bool again;
    do {
        again = false;
        size_t cursor = 0;
        void *value;
        hop_xchg_t *empty = NULL;
        while (hop_map_next(self->exchanges, &cursor, NULL, NULL, &value)) {
            hop_xchg_t *x = value;
            if (!x->table)
                continue;
            hop_exchange_unbind_queue(x->table, queue);
            if (x->auto_delete && x->had_binding && hop_exchange_binding_count(x->table) == 0)
                empty = x;
        }
        if (empty) {
            s_exchange_destroy(self, empty);
            again = true; // the map changed under the cursor: walk again
        }
    } while (again);
    if (queue->owner) {
        hop_queue_t **at = &queue->owner->exclusive;
        while (*at && *at != queue)
            at = &(*at)->owner_next;
        if (*at)
            *at = queue->owner_next;
    }
    hop_map_remove(self->queues, queue->name, queue->name_len);
    hop_durable_queue(self, queue, false);
    if (self->blocked_head)
        hop_deliver_resume(self, queue); // its paused publishers wait no more
    hop_log(HOP_DEBUG, "topology", "queue deleted name=%s", queue->name);
    hop_queue_destroy(&queue);
}

void
hop_topology_queue_delete(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w)
{
    hop_queue_t *q = hop_topology_use_queue(self, conn, w);
    if (!q)
        return;
    if (w->if_unused && q->consumer_count) {
        hop_broker_error(self, conn, w->id, HOP_CODE_PRECONDITION_FAILED,
                         "queue '%s' has %zu consumers (if_unused)", q->name, q->consumer_count);
        return;
    }
    size_t messages = q->ready_count + q->unacked.size + q->delayed.size;
    if (w->if_empty && messages) {
        hop_broker_error(self, conn, w->id, HOP_CODE_PRECONDITION_FAILED,
                         "queue '%s' has %zu messages (if_empty)", q->name, messages);
        return;
    }
    hop_topology_delete_queue(self, q);
    hop_broker_reply(self, HOP_CMD_OK, w->id);
    hop_enc_uint(&self->enc, "messages", messages);
    hop_broker_send(self, conn, NULL);
}

void
hop_topology_queue_purge(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w)
{
    hop_queue_t *q = hop_topology_use_queue(self, conn, w);
    if (!q)
        return;
    hop_durable_purge(self, q); // before the entries go: their records are released
    size_t n = hop_queue_purge(q);
    hop_broker_reply(self, HOP_CMD_OK, w->id);
    hop_enc_uint(&self->enc, "messages", n);
    hop_broker_send(self, conn, NULL);
}

void
hop_topology_bind(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w, bool bind)
{
    if (s_need(self, conn, w, HOP_F_EXCHANGE, "exchange"))
        return;
    hop_queue_t *q = hop_topology_use_queue(self, conn, w);
    if (!q)
        return;
    hop_xchg_t *x = hop_topology_exchange(self, &w->exchange);
    if (!x) {
        s_not_found(self, conn, w->id, "exchange", &w->exchange);
        return;
    }
    if (!x->table) {
        hop_broker_error(self, conn, w->id, HOP_CODE_ACCESS_REFUSED,
                         "the default exchange cannot be bound or unbound: every queue is "
                         "reachable through it by its name");
        return;
    }
    const char *key = w->key.ptr ? w->key.ptr : "";
    if (bind) {
        if (hop_exchange_bind(x->table, key, w->key.len, q) < 0) {
            hop_broker_error(self, conn, w->id, HOP_CODE_SYNTAX_ERROR,
                             "binding key '%.*s' is invalid", (int)w->key.len, key);
            return;
        }
        x->had_binding = true;
        hop_durable_bind(self, x, q, key, w->key.len, true);
    } else {
        hop_exchange_unbind(x->table, key, w->key.len, q);
        hop_durable_bind(self, x, q, key, w->key.len, false);
        if (x->auto_delete && hop_exchange_binding_count(x->table) == 0) {
            s_exchange_destroy(self, x);
        }
    }
    s_ok(self, conn, w->id);
}
