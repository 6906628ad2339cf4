// bus/ops.c - operating on stored messages: `move` republishes ready messages of a queue to an
// exchange (`hopper move`), or with replay:true to the exchange and key they were first
// published to, read from their oldest death record (`hopper replay`) (PROTOCOL.md 4.8).
//
// Each message is moved within one reactor step: it is routed, stored in the queues it matched
// (written to the store where it is persistent and they are durable) and only then taken out of
// its source, whose store record dies in the same commit. No client can see it in both places
// or in neither, whatever happens to the client that asked.
//
// The moved message is a new record sharing the original's frames (body and props are never
// copied), like a dead letter; its exchange, key and death records are bytes of its own.
#include "broker_internal.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

// The options of a move beyond what hop_wire_t decodes: they are read here from the header
// itself, so that the shared codec only learns the command's name.
typedef struct {
    hop_str_t filter_header, filter_value; // only messages with this header (or prop) value
    bool replay;                           // to where the oldest death record says
} s_opts_t;

// Reads the move-only keys of a header. Returns 0, or -1 with the reason in err.
static int
s_opts_read(const uint8_t *hdr, size_t hdr_len, s_opts_t *o, char *err, size_t err_size)
{
    memset(o, 0, sizeof *o);
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
        hop_str_t *s = NULL;
        if (kl == 13 && memcmp(k, "filter_header", 13) == 0)
            s = &o->filter_header;
        else if (kl == 12 && memcmp(k, "filter_value", 12) == 0)
            s = &o->filter_value;
        if (s && hop_mp_str(&mp, &s->ptr, &s->len)) {
            snprintf(err, err_size, "field '%.*s' must be a string", (int)kl, k);
            return -1;
        }
        if (s)
            continue;
        if (kl == 6 && memcmp(k, "replay", 6) == 0) {
            if (hop_mp_bool(&mp, &o->replay)) {
                snprintf(err, err_size, "field 'replay' must be a boolean");
                return -1;
            }
            continue;
        }
        if (hop_mp_skip(&mp))
            return -1;
    }
    return 0;
}

// True when the next value of mp (a str, integer or boolean) reads as text.
static bool
s_value_is(hop_mp_t *mp, const hop_str_t *text)
{
    int t = hop_mp_peek(mp);
    char num[32];
    const char *v = NULL;
    uint32_t vl = 0;
    if (t == MSGPACK_OBJECT_STR) {
        if (hop_mp_str(mp, &v, &vl))
            return false;
    } else if (t == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        uint64_t u;
        if (hop_mp_uint(mp, &u))
            return false;
        vl = (uint32_t)snprintf(num, sizeof num, "%llu", (unsigned long long)u);
        v = num;
    } else if (t == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        int64_t s;
        if (hop_mp_int(mp, &s))
            return false;
        vl = (uint32_t)snprintf(num, sizeof num, "%lld", (long long)s);
        v = num;
    } else if (t == MSGPACK_OBJECT_BOOLEAN) {
        bool b;
        if (hop_mp_bool(mp, &b))
            return false;
        v = b ? "true" : "false";
        vl = (uint32_t)strlen(v);
    } else
        return false;
    return vl == text->len && memcmp(v, text->ptr, vl) == 0;
}

// Looks name up in the msgpack map at mp: 1 and mp at its value when found, 0 when not, -1
// when malformed.
static int
s_map_find(hop_mp_t *mp, const hop_str_t *name)
{
    uint32_t n;
    if (hop_mp_map(mp, &n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (hop_mp_str(mp, &k, &kl))
            return -1;
        if (kl == name->len && memcmp(k, name->ptr, kl) == 0)
            return 1;
        if (hop_mp_skip(mp))
            return -1;
    }
    return 0;
}

// The filter: header (in props.headers, else a props key such as `type`) equals value.
static bool
s_filter_match(const hop_msg_t *m, const s_opts_t *o)
{
    if (!m->props)
        return false;
    static const hop_str_t headers = {"headers", 7};
    hop_mp_t mp;
    hop_mp_init(&mp, m->props, m->props_len);
    if (s_map_find(&mp, &headers) == 1 && hop_mp_peek(&mp) == MSGPACK_OBJECT_MAP &&
        s_map_find(&mp, &o->filter_header) == 1)
        return s_value_is(&mp, &o->filter_value);
    hop_mp_init(&mp, m->props, m->props_len);
    return s_map_find(&mp, &o->filter_header) == 1 && s_value_is(&mp, &o->filter_value);
}

// Reads the exchange and key of the last (oldest) death record of m: where it first came from.
// Returns 0, or -1 when it has none (it was never dead-lettered).
static int
s_first_death(const hop_msg_t *m, hop_str_t *exchange, hop_str_t *key)
{
    uint32_t death_len, n;
    const uint8_t *death = hop_msg_death(m, &death_len);
    if (!death)
        return -1;
    hop_mp_t mp;
    hop_mp_init(&mp, death, death_len);
    if (hop_mp_array(&mp, &n) || n == 0)
        return -1;
    for (uint32_t i = 0; i + 1 < n; i++)
        if (hop_mp_skip(&mp))
            return -1;
    static const hop_str_t xk = {"exchange", 8}, kk = {"key", 3};
    hop_mp_t at = mp;
    if (s_map_find(&at, &xk) != 1 || hop_mp_str(&at, &exchange->ptr, &exchange->len))
        return -1;
    at = mp;
    if (s_map_find(&at, &kk) != 1 || hop_mp_str(&at, &key->ptr, &key->len))
        return -1;
    return 0;
}

// A copy of m (sharing its frames) published to exchange x with key; its death records are
// kept (a move) or dropped (a replay starts afresh).
static hop_msg_t *
s_remake(const hop_msg_t *m, const hop_xchg_t *x, const hop_str_t *key, bool keep_death)
{
    uint32_t death_len = 0;
    const uint8_t *death = keep_death ? hop_msg_death(m, &death_len) : NULL;
    if (!death)
        death_len = 0;
    uint8_t *own = hop_malloc(sizeof death_len + x->name_len + key->len + death_len);
    memcpy(own, &death_len, sizeof death_len);
    memcpy(own + sizeof death_len, x->name, x->name_len);
    if (key->len)
        memcpy(own + sizeof death_len + x->name_len, key->ptr, key->len);
    if (death_len)
        memcpy(own + sizeof death_len + x->name_len + key->len, death, death_len);

    hop_msg_t *nm = hop_msg_new();
    if (m->frames)
        hop_msg_attach(nm, m->frames);
    nm->props = m->props;
    nm->props_len = m->props_len;
    nm->body = m->body;
    nm->body_len = m->body_len;
    nm->priority = m->priority;
    nm->persistent = m->persistent;
    hop_msg_own(nm, own, x->name_len, key->len);
    return nm;
}

// Routes through x with key into route, leaving out queues being deleted. Returns whether at
// least one queue will store a message of body_len bytes (a full reject-publish queue won't).
static bool
s_route(hop_broker_t *self, hop_xchg_t *x, const hop_str_t *key, size_t body_len,
        hop_route_t *route)
{
    hop_route_clear(route);
    if (x->table)
        hop_exchange_route(x->table, key->len ? key->ptr : "", key->len, route);
    else {
        hop_queue_t *q = hop_map_get(self->queues, key->ptr ? key->ptr : "", key->len);
        if (q)
            hop_route_push(route, q);
    }
    size_t n = 0;
    bool takes = false;
    for (size_t i = 0; i < route->size; i++) {
        hop_queue_t *q = route->queues[i];
        if (q->deleting)
            continue;
        route->queues[n++] = q;
        if (!(q->args.reject_publish && hop_queue_full(q, body_len)))
            takes = true;
    }
    route->size = n;
    return takes;
}

// Puts a ready entry taken out with hop_queue_remove back at its place: through the unacked
// list, whose untake restores it uncounted (the queue module's only sorted insert).
static void
s_put_back(hop_queue_t *q, hop_entry_t *e)
{
    hop_list_append(&q->unacked, e);
    e->unacked = true;
    e->deliveries++;
    q->delivered++;
    hop_queue_untake(q, e);
}

void
hop_ops_move(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w, const uint8_t *hdr,
             size_t hdr_len)
{
    s_opts_t o;
    if (s_opts_read(hdr, hdr_len, &o, self->err, sizeof self->err)) {
        hop_broker_error(self, conn, w->id, HOP_CODE_SYNTAX_ERROR, "%s", self->err);
        return;
    }
    if (!o.filter_header.ptr != !o.filter_value.ptr) {
        hop_broker_error(self, conn, w->id, HOP_CODE_SYNTAX_ERROR,
                         "move: 'filter_header' and 'filter_value' go together");
        return;
    }
    hop_queue_t *q = hop_topology_use_queue(self, conn, w);
    if (!q)
        return;
    hop_xchg_t *dest = NULL;
    if (o.replay && (w->has & (HOP_F_EXCHANGE | HOP_F_KEY))) {
        hop_broker_error(self, conn, w->id, HOP_CODE_SYNTAX_ERROR,
                         "move with replay takes no 'exchange' or 'key': each message goes where "
                         "its oldest death record says");
        return;
    }
    if (!o.replay) {
        if (!(w->has & HOP_F_EXCHANGE)) {
            hop_broker_error(self, conn, w->id, HOP_CODE_SYNTAX_ERROR,
                             "'move' needs field 'exchange' (or replay:true)");
            return;
        }
        dest = hop_topology_exchange(self, &w->exchange);
        if (!dest) {
            hop_broker_error(self, conn, w->id, HOP_CODE_NOT_FOUND, "no exchange '%.*s'",
                             (int)w->exchange.len, w->exchange.ptr ? w->exchange.ptr : "");
            return;
        }
    }
    uint64_t want = w->count ? w->count : UINT64_MAX;
    uint64_t moved = 0, skipped = 0;
    uint64_t limit_seq = q->next_seq; // later entries arrived during this move (a loop back)
    hop_route_t route;
    hop_route_init(&route);
    bool stop = false;
    for (hop_entry_t *e = hop_queue_next_ready(q, NULL), *next; e && moved < want && !stop;
         e = next) {
        next = hop_queue_next_ready(q, e);
        if (e->seq >= limit_seq || e->expires_at < self->now)
            continue; // moved in here just now, or expired and waiting for removal
        const hop_msg_t *m = e->msg;
        if (o.filter_header.ptr && !s_filter_match(m, &o)) {
            skipped++;
            continue;
        }
        hop_xchg_t *x = dest;
        hop_str_t key = {m->key, m->key_len};
        if (o.replay) {
            hop_str_t xname;
            x = s_first_death(m, &xname, &key) == 0 ? hop_topology_exchange(self, &xname) : NULL;
        } else if (w->has & HOP_F_KEY)
            key = w->key;
        // A persistent message is not moved while the store cannot write: it would survive a
        // restart nowhere.
        if (!x || (m->persistent && hop_durable_error(self)) ||
            !s_route(self, x, &key, m->body_len, &route)) {
            skipped++;
            continue;
        }
        // Out of the source first, so that a route back into it sees the queue without it.
        hop_queue_remove(q, e);
        size_t ready = q->ready_count;
        uint64_t published = q->published;
        uint64_t ttl = HOP_TTL_NONE; // a replay starts afresh; a move keeps its deadline
        if (!o.replay && e->expires_at != UINT64_MAX)
            ttl = e->expires_at - self->now;
        hop_msg_t *nm = s_remake(m, x, &key, !o.replay);
        x->published++;
        nm->refs++; // held while enqueueing, so that an overflow cannot free it under us
        size_t stored = hop_deliver_enqueue(self, &route, nm, ttl, NULL);
        hop_msg_release(nm);
        if (stored == 0) {
            s_put_back(q, e); // every queue refused it after all: it stays
            skipped++;
        } else {
            hop_durable_forget(self, q, e); // after the new records: never on disk nowhere
            hop_entry_destroy(&e);
            moved++;
        }
        for (size_t i = 0; i < route.size; i++)
            if (route.queues[i] && route.queues[i] != q)
                hop_deliver_dispatch(self, route.queues[i]);
        // Anything that took ready entries out of the source meanwhile (its own overflow when
        // the route loops back, a cascade of dead letters dispatching it) may have taken next:
        // stop here; the reply's `left` says what remains.
        if (q->ready_count != ready + (q->published - published) + (stored == 0))
            stop = true;
    }
    hop_route_fini(&route);
    hop_deliver_dispatch(self, q);
    hop_broker_reply(self, HOP_CMD_MOVE_OK, w->id);
    hop_enc_uint(&self->enc, "moved", moved);
    hop_enc_uint(&self->enc, "skipped", skipped);
    hop_enc_uint(&self->enc, "left", q->ready_count);
    hop_broker_send(self, conn, NULL);
}
