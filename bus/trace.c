// bus/trace.c - message tracing (`hopper trace`): while on, the broker publishes one route event
// per traced message to the built-in topic exchange amq.hopper.trace, saying where a publish
// went or why a message was dropped (PROTOCOL.md 4.9).
//
// Off, tracing costs the hot path one branch on self->tracing at each hook (deliver.c,
// deadletter.c); everything here runs only while it is on, so it may allocate: it is a
// debugging tool, not the message path. Events about the trace exchange itself (a publish to
// it, an event message that expires or overflows, a dead letter that came from it) are never
// traced, and nothing is traced while an event is being published: tracing cannot loop.
#include "broker_internal.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_EXCHANGE     "amq.hopper.trace"
#define S_EXCHANGE_LEN (sizeof S_EXCHANGE - 1)

// An event's props: {content_type: "application/msgpack"}, so that consumers know the body.
static const uint8_t s_props[] = "\x81\xac"
                                 "content_type"
                                 "\xb3"
                                 "application/msgpack";
#define S_PROPS_LEN (sizeof s_props - 1)

// True while an event is being published: whatever it causes is not traced.
static bool s_emitting;

// One route event, as PROTOCOL.md 4.9 lays it out.
typedef struct {
    const char *event;                // "publish", "drop", "expired", "dead-letter"
    const char *detail;               // second word of the routing key
    size_t detail_len;                //
    hop_str_t exchange;               // the exchange the message was published to
    hop_str_t key;                    // its routing key
    hop_queue_t **queues;             // queues that matched (NULL entries skipped)
    size_t queue_count;               //
    hop_queue_t **refused;            // publish: queues that refused it (reject-publish, full)
    size_t refused_count;             //
    const char *dropped;              // why it was dropped, or NULL
    const char *reason;               // a message leaving a queue: why (the dead-letter reason)
    const hop_queue_t *from;          // and which queue it left
    const struct s_binding *bindings; // publish: the bindings that matched its key
    size_t binding_count;             //
} s_event_t;

// One binding that matched a traced publish.
typedef struct s_binding {
    const hop_queue_t *queue;
    char *key; // the binding key (owned)
    size_t key_len;
} s_binding_t;

// Collects, through hop_exchange_foreach, the bindings whose key matches a routing key. Each
// binding is tried on a scratch exchange of the same type holding it alone: the matching rules
// stay those of exchanges/ (this runs only while tracing, so its cost does not matter).
typedef struct {
    hop_exchange_type_t type;
    const char *key;
    size_t key_len;
    s_binding_t *found;
    size_t count, cap;
} s_match_t;

static int
s_match_binding(const char *key, size_t key_len, void *queue, void *arg)
{
    s_match_t *m = arg;
    hop_exchange_t *one = hop_exchange_new(m->type);
    hop_route_t route;
    hop_route_init(&route);
    bool hit = hop_exchange_bind(one, key, key_len, queue) == 0 &&
               hop_exchange_route(one, m->key, m->key_len, &route) > 0;
    hop_route_fini(&route);
    hop_exchange_destroy(&one);
    if (!hit)
        return 0;
    if (m->count == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 8;
        m->found = hop_realloc(m->found, m->cap * sizeof *m->found);
    }
    m->found[m->count++] =
        (s_binding_t){.queue = queue, .key = hop_strndup(key, key_len), .key_len = key_len};
    return 0;
}

static bool
s_is_trace(const char *name, size_t len)
{
    return name && len == S_EXCHANGE_LEN && memcmp(name, S_EXCHANGE, len) == 0;
}

static bool
s_str_is(const hop_str_t *s, const char *text, size_t len)
{
    return s->len == len && (len == 0 || memcmp(s->ptr, text, len) == 0);
}

// Reads the exchange and key of the newest death record of msg (where it was before its last
// death). Returns false when it has none. *from_trace is set when any record names the trace
// exchange.
static bool
s_death(const hop_msg_t *msg, hop_str_t *exchange, hop_str_t *key, bool *from_trace)
{
    *from_trace = false;
    uint32_t len, n;
    const uint8_t *death = hop_msg_death(msg, &len);
    if (!death)
        return false;
    hop_mp_t mp;
    hop_mp_init(&mp, death, len);
    if (hop_mp_array(&mp, &n))
        return false;
    bool found = false;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t fields;
        if (hop_mp_map(&mp, &fields))
            return found;
        for (uint32_t f = 0; f < fields; f++) {
            const char *k;
            uint32_t kl;
            hop_str_t v = {NULL, 0};
            if (hop_mp_str(&mp, &k, &kl))
                return found;
            bool is_x = kl == 8 && memcmp(k, "exchange", 8) == 0;
            bool is_k = kl == 3 && memcmp(k, "key", 3) == 0;
            if (is_x || is_k) {
                if (hop_mp_str(&mp, &v.ptr, &v.len))
                    return found;
            } else if (hop_mp_skip(&mp))
                return found;
            if (is_x && s_is_trace(v.ptr, v.len))
                *from_trace = true;
            if (i == 0 && is_x)
                *exchange = v;
            if (i == 0 && is_k)
                *key = v;
        }
        found = true;
    }
    return found;
}

// True when msg is (or descends from) a trace event: it is not traced.
static bool
s_from_trace(const hop_msg_t *msg)
{
    if (s_is_trace(msg->exchange, msg->exchange_len))
        return true;
    hop_str_t x = {NULL, 0}, k = {NULL, 0};
    bool from_trace;
    s_death(msg, &x, &k, &from_trace);
    return from_trace;
}

// The --exchange filter in force lets an event about exchange through.
static bool
s_wanted(const hop_broker_t *self, const hop_str_t *exchange)
{
    return !self->trace_filter ||
           s_str_is(exchange, self->trace_only, (size_t)self->trace_only_len);
}

static void
s_pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str_with_body(pk, len ? s : "", len);
}

static void
s_pack_queues(msgpack_packer *pk, hop_queue_t **queues, size_t count)
{
    uint32_t n = 0;
    for (size_t i = 0; i < count; i++)
        n += queues[i] != NULL;
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < count; i++)
        if (queues[i])
            s_pack_str(pk, queues[i]->name, queues[i]->name_len);
}

// Writes the event's body (a msgpack map) into buf.
static void
s_pack_event(msgpack_sbuffer *buf, const s_event_t *ev)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5 + (ev->dropped != NULL) + (ev->reason != NULL) + (ev->from != NULL) +
                              (ev->refused_count != 0) + (ev->binding_count != 0));
    s_pack_str(&pk, "event", 5);
    s_pack_str(&pk, ev->event, strlen(ev->event));
    s_pack_str(&pk, "exchange", 8);
    s_pack_str(&pk, ev->exchange.ptr, ev->exchange.len);
    s_pack_str(&pk, "key", 3);
    s_pack_str(&pk, ev->key.ptr, ev->key.len);
    s_pack_str(&pk, "queues", 6);
    s_pack_queues(&pk, ev->queues, ev->queue_count);
    if (ev->binding_count) {
        s_pack_str(&pk, "bindings", 8);
        msgpack_pack_array(&pk, (uint32_t)ev->binding_count);
        for (size_t i = 0; i < ev->binding_count; i++) {
            msgpack_pack_map(&pk, 2);
            s_pack_str(&pk, "queue", 5);
            s_pack_str(&pk, ev->bindings[i].queue->name, ev->bindings[i].queue->name_len);
            s_pack_str(&pk, "key", 3);
            s_pack_str(&pk, ev->bindings[i].key, ev->bindings[i].key_len);
        }
    }
    if (ev->refused_count) {
        s_pack_str(&pk, "refused", 7);
        s_pack_queues(&pk, ev->refused, ev->refused_count);
    }
    if (ev->dropped) {
        s_pack_str(&pk, "dropped", 7);
        s_pack_str(&pk, ev->dropped, strlen(ev->dropped));
    }
    if (ev->reason) {
        s_pack_str(&pk, "reason", 6);
        s_pack_str(&pk, ev->reason, strlen(ev->reason));
    }
    if (ev->from) {
        s_pack_str(&pk, "queue", 5);
        s_pack_str(&pk, ev->from->name, ev->from->name_len);
    }
    s_pack_str(&pk, "time", 4);
    msgpack_pack_uint64(&pk, hop_wall_ms());
}

// Publishes ev to the trace exchange with routing key "<event>.<detail>". Nothing is built when
// no queue is bound to hear it.
static void
s_emit(hop_broker_t *self, const s_event_t *ev)
{
    hop_xchg_t *tx = self->trace_x;
    char rkey[HOP_NAME_MAX + 1];
    int n = snprintf(rkey, sizeof rkey, "%s.%.*s", ev->event, (int)ev->detail_len,
                     ev->detail ? ev->detail : "");
    size_t rkey_len = n < 0 ? 0 : (size_t)n >= sizeof rkey ? sizeof rkey - 1 : (size_t)n;
    tx->published++;
    hop_route_t route;
    hop_route_init(&route);
    hop_exchange_route(tx->table, rkey, rkey_len, &route);
    size_t live = 0;
    for (size_t i = 0; i < route.size; i++)
        if (!((hop_queue_t *)route.queues[i])->deleting)
            route.queues[live++] = route.queues[i];
    route.size = live;
    if (route.size == 0) {
        tx->unroutable++;
        hop_route_fini(&route);
        return;
    }
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    s_pack_event(&body, ev);

    // One frame holds the exchange name, routing key, props and body.
    hop_msg_t *msg = hop_msg_new();
    hop_frames_t *frames = hop_frames_new();
    size_t size = S_EXCHANGE_LEN + rkey_len + S_PROPS_LEN + body.size;
    zmq_msg_init_size(&frames->header, size);
    char *base = zmq_msg_data(&frames->header);
    memcpy(base, S_EXCHANGE, S_EXCHANGE_LEN);
    memcpy(base + S_EXCHANGE_LEN, rkey, rkey_len);
    memcpy(base + S_EXCHANGE_LEN + rkey_len, s_props, S_PROPS_LEN);
    memcpy(base + S_EXCHANGE_LEN + rkey_len + S_PROPS_LEN, body.data, body.size);
    hop_msg_attach(msg, frames);
    hop_msg_names(msg, base, S_EXCHANGE_LEN, base + S_EXCHANGE_LEN, rkey_len);
    msg->props = (const uint8_t *)msg->key + rkey_len;
    msg->props_len = (uint32_t)S_PROPS_LEN;
    msg->body = msg->props + S_PROPS_LEN;
    msg->body_len = (uint32_t)body.size;
    msgpack_sbuffer_destroy(&body);

    s_emitting = true;
    msg->refs++; // held while enqueueing, as a publish does
    hop_deliver_enqueue(self, &route, msg, HOP_TTL_NONE, NULL);
    hop_msg_release(msg);
    for (size_t i = 0; i < route.size; i++)
        if (route.queues[i])
            hop_deliver_dispatch(self, route.queues[i]);
    s_emitting = false;
    hop_route_fini(&route);
}

void
hop_trace_publish(hop_broker_t *self, const hop_xchg_t *x, const char *key, size_t key_len,
                  const hop_route_t *route, size_t body_len)
{
    hop_str_t xname = {x->name, (uint32_t)x->name_len};
    if (s_emitting || x == self->trace_x || !s_wanted(self, &xname))
        return;
    // Which queues will refuse it: hop_deliver_enqueue applies this very test, and storing
    // the message in one queue cannot fill another.
    size_t n = route->size;
    hop_queue_t **split = hop_malloc((n ? n : 1) * 2 * sizeof *split);
    hop_queue_t **stored = split, **refused = split + n;
    size_t n_stored = 0, n_refused = 0;
    for (size_t i = 0; i < n; i++) {
        hop_queue_t *q = route->queues[i];
        if (q->args.reject_publish && hop_queue_full(q, body_len))
            refused[n_refused++] = q;
        else
            stored[n_stored++] = q;
    }
    s_event_t ev = {.exchange = xname, .key = {key, (uint32_t)key_len}};
    if (n == 0 || n_stored == 0) {
        ev.event = "drop";
        ev.dropped = n == 0 ? "unroutable" : "overflow";
        ev.queues = refused;
        ev.queue_count = n_refused;
    } else {
        ev.event = "publish";
        ev.queues = stored;
        ev.queue_count = n_stored;
        ev.refused = refused;
        ev.refused_count = n_refused;
        if (n_refused)
            ev.dropped = "overflow";
    }
    ev.detail = ev.dropped && n_stored == 0 ? ev.dropped : x->name;
    ev.detail_len = ev.dropped && n_stored == 0 ? strlen(ev.dropped) : x->name_len;
    // The default exchange has no bindings: it routes by queue name.
    s_match_t match = {.key = key, .key_len = key_len};
    if (x->table) {
        match.type = hop_exchange_type(x->table);
        hop_exchange_foreach(x->table, s_match_binding, &match);
        ev.bindings = match.found;
        ev.binding_count = match.count;
    }
    s_emit(self, &ev);
    for (size_t i = 0; i < match.count; i++)
        free(match.found[i].key);
    free(match.found);
    free(split);
}

// The event of a message leaving queue for reason: dropped there (dropped names why), or
// dead-lettered.
static void
s_leave(hop_broker_t *self, const hop_queue_t *queue, hop_str_t exchange, hop_str_t key,
        const char *reason, const char *dropped)
{
    hop_queue_t *q = (hop_queue_t *)queue;
    s_event_t ev = {.event = strcmp(reason, "expired") == 0 ? "expired" : "drop",
                    .detail = dropped,
                    .detail_len = strlen(dropped),
                    .exchange = exchange,
                    .key = key,
                    .queues = &q,
                    .queue_count = 1,
                    .dropped = dropped,
                    .reason = reason};
    s_emit(self, &ev);
}

void
hop_trace_drop(hop_broker_t *self, const hop_queue_t *queue, const hop_msg_t *msg,
               const char *reason)
{
    hop_str_t x = {msg->exchange ? msg->exchange : "", msg->exchange_len};
    if (s_emitting || s_from_trace(msg) || !s_wanted(self, &x))
        return;
    hop_str_t key = {msg->key ? msg->key : "", msg->key_len};
    s_leave(self, queue, x, key, reason, strcmp(reason, "expired") == 0 ? "ttl" : reason);
}

void
hop_trace_dead_letter(hop_broker_t *self, const hop_queue_t *queue, const hop_msg_t *dl,
                      const char *reason, const hop_route_t *route, size_t stored)
{
    hop_str_t dlx = {dl->exchange ? dl->exchange : "", dl->exchange_len};
    hop_str_t x = {"", 0}, key = {"", 0};
    bool from_trace;
    s_death(dl, &x, &key, &from_trace); // the newest record: where it was before
    if (s_emitting || from_trace || s_is_trace(dlx.ptr, dlx.len) ||
        (!s_wanted(self, &x) && !s_wanted(self, &dlx)))
        return;
    s_leave(self, queue, x, key, reason, "dead-lettered");
    s_event_t ev = {.event = "dead-letter",
                    .detail = dlx.ptr,
                    .detail_len = dlx.len,
                    .exchange = dlx,
                    .key = {dl->key ? dl->key : "", dl->key_len},
                    .queues = (hop_queue_t **)route->queues,
                    .queue_count = route->size,
                    .reason = reason,
                    .from = queue};
    if (stored == 0)
        ev.dropped = route->size == 0 ? "unroutable" : "overflow";
    s_emit(self, &ev);
}

// Reads the request's `on` (only trace has it). Returns 0, or -1 when absent or not a boolean.
static int
s_read_on(const uint8_t *hdr, size_t hdr_len, bool *on)
{
    hop_mp_t mp;
    hop_mp_init(&mp, hdr, hdr_len);
    uint32_t n;
    if (hop_mp_map(&mp, &n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (hop_mp_str(&mp, &k, &kl)) {
            if (hop_mp_skip(&mp) || hop_mp_skip(&mp))
                return -1;
            continue;
        }
        if (kl == 2 && memcmp(k, "on", 2) == 0)
            return hop_mp_bool(&mp, on);
        if (hop_mp_skip(&mp))
            return -1;
    }
    return -1;
}

void
hop_trace_command(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w, const uint8_t *hdr,
                  size_t hdr_len)
{
    bool on;
    if (s_read_on(hdr, hdr_len, &on)) {
        hop_broker_error(self, conn, w->id, HOP_CODE_SYNTAX_ERROR,
                         "trace needs 'on' (a boolean): true to start tracing, false to stop");
        return;
    }
    if (on && w->exchange.ptr) {
        hop_str_t name = w->exchange;
        if (!hop_topology_exchange(self, &name)) {
            hop_broker_error(self, conn, w->id, HOP_CODE_NOT_FOUND,
                             "no exchange '%.*s' to trace (see hopper list exchanges)",
                             (int)name.len, name.ptr);
            return;
        }
        if (s_is_trace(name.ptr, name.len)) {
            hop_broker_error(self, conn, w->id, HOP_CODE_PRECONDITION_FAILED,
                             "the trace exchange itself is never traced");
            return;
        }
    }
    self->tracing = on;
    self->trace_filter = on && w->exchange.ptr;
    self->trace_only_len = self->trace_filter ? w->exchange.len : 0;
    if (self->trace_only_len)
        memcpy(self->trace_only, w->exchange.ptr, self->trace_only_len);
    hop_log(HOP_INFO, "trace", "tracing %s%s%.*s%s by conn=%s", on ? "on" : "off",
            self->trace_filter ? " (exchange '" : "", (int)self->trace_only_len, self->trace_only,
            self->trace_filter ? "')" : "", conn->label);
    hop_broker_reply(self, HOP_CMD_OK, w->id);
    hop_broker_send(self, conn, NULL);
}
