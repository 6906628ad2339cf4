// bus/deadletter.c - dead letters: a message that leaves a queue without being consumed
// (rejected, expired, dropped by max-length, over its delivery limit) is republished to the
// queue's dead-letter exchange with a death record, or dropped and counted
// (PROTOCOL.md 6.4).
//
// The dead letter is a new message record that shares the original's frames (body and props
// are never copied); only its exchange, routing key and death records are bytes of its own.
#include "broker_internal.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

// Dead letters can cascade (a dead-letter queue that overflows into another one); past this
// depth they are dropped rather than risk the stack.
#define DEPTH_MAX 16

static int s_depth;

// What one death record says, read from the message's death array.
typedef struct {
    const uint8_t *start, *end; // the record's raw bytes
    hop_str_t queue, reason;
    uint64_t count;
} s_record_t;

// Reads the next record of a death array. Returns 0, or -1 when malformed (the broker wrote
// every death array itself, so this only guards against bugs).
static int
s_record_next(hop_mp_t *mp, s_record_t *r)
{
    memset(r, 0, sizeof *r);
    r->start = mp->p;
    uint32_t n;
    if (hop_mp_map(mp, &n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (hop_mp_str(mp, &k, &kl))
            return -1;
        if (kl == 5 && memcmp(k, "queue", 5) == 0) {
            if (hop_mp_str(mp, &r->queue.ptr, &r->queue.len))
                return -1;
        } else if (kl == 6 && memcmp(k, "reason", 6) == 0) {
            if (hop_mp_str(mp, &r->reason.ptr, &r->reason.len))
                return -1;
        } else if (kl == 5 && memcmp(k, "count", 5) == 0) {
            if (hop_mp_uint(mp, &r->count))
                return -1;
        } else if (hop_mp_skip(mp))
            return -1;
    }
    r->end = mp->p;
    return 0;
}

static bool
s_str_eq(const hop_str_t *s, const char *text, size_t len)
{
    return s->ptr && s->len == len && memcmp(s->ptr, text, len) == 0;
}

// Writes the death array of a message leaving queue for reason: a fresh record first (or the
// old record for the same queue and reason, counted once more), then the other old records.
static void
s_write_death(msgpack_sbuffer *buf, const hop_msg_t *msg, const hop_queue_t *queue,
              const char *reason)
{
    size_t reason_len = strlen(reason);
    uint64_t count = 1;
    uint32_t kept = 0;
    hop_mp_t mp;
    uint32_t n = 0, death_len;
    const uint8_t *death = hop_msg_death(msg, &death_len);
    if (death) {
        hop_mp_init(&mp, death, death_len);
        if (hop_mp_array(&mp, &n))
            n = 0;
        hop_mp_t scan = mp;
        for (uint32_t i = 0; i < n; i++) {
            s_record_t r;
            if (s_record_next(&scan, &r)) {
                n = i;
                break;
            }
            if (s_str_eq(&r.queue, queue->name, queue->name_len) &&
                s_str_eq(&r.reason, reason, reason_len))
                count = r.count + 1;
            else
                kept++;
        }
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, kept + 1);
    msgpack_pack_map(&pk, 6);
    msgpack_pack_str_with_body(&pk, "reason", 6);
    msgpack_pack_str_with_body(&pk, reason, reason_len);
    msgpack_pack_str_with_body(&pk, "queue", 5);
    msgpack_pack_str_with_body(&pk, queue->name, queue->name_len);
    msgpack_pack_str_with_body(&pk, "exchange", 8);
    msgpack_pack_str_with_body(&pk, msg->exchange ? msg->exchange : "", msg->exchange_len);
    msgpack_pack_str_with_body(&pk, "key", 3);
    msgpack_pack_str_with_body(&pk, msg->key ? msg->key : "", msg->key_len);
    msgpack_pack_str_with_body(&pk, "time", 4);
    msgpack_pack_uint64(&pk, hop_wall_ms());
    msgpack_pack_str_with_body(&pk, "count", 5);
    msgpack_pack_uint64(&pk, count);
    for (uint32_t i = 0; i < n; i++) {
        s_record_t r;
        if (s_record_next(&mp, &r))
            break;
        if (!(s_str_eq(&r.queue, queue->name, queue->name_len) &&
              s_str_eq(&r.reason, reason, reason_len)))
            msgpack_sbuffer_write(buf, (const char *)r.start, (size_t)(r.end - r.start));
    }
}

// True when routing the dead letter msg to target would close a cycle: it was dead-lettered
// from target before and no rejection happened since (RabbitMQ's rule: a cycle made only of
// expiries, overflows and delivery limits would go round forever without anyone acting).
// Records are newest first and one per (queue, reason), so "since" is the records in front of
// target's newest one, the current death included.
static bool
s_cycle(const hop_msg_t *msg, const hop_queue_t *target)
{
    hop_mp_t mp;
    uint32_t n, death_len;
    const uint8_t *death = hop_msg_death(msg, &death_len);
    hop_mp_init(&mp, death, death_len);
    if (hop_mp_array(&mp, &n))
        return false;
    for (uint32_t i = 0; i < n; i++) {
        s_record_t r;
        if (s_record_next(&mp, &r))
            return false;
        if (s_str_eq(&r.reason, "rejected", 8))
            return false;
        if (s_str_eq(&r.queue, target->name, target->name_len))
            return true;
    }
    return false;
}

// Builds the dead letter of msg leaving queue: same frames, new exchange, key and deaths.
static hop_msg_t *
s_dead_letter(const hop_msg_t *msg, const hop_queue_t *queue, const char *reason)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    const char *x = queue->args.dlx;
    size_t x_len = strlen(x);
    const char *key = queue->args.dlk ? queue->args.dlk : msg->key;
    size_t key_len = queue->args.dlk ? strlen(queue->args.dlk) : msg->key_len;
    uint32_t death_len = 0; // patched below
    msgpack_sbuffer_write(&buf, (const char *)&death_len, sizeof death_len);
    if (x_len)
        msgpack_sbuffer_write(&buf, x, x_len);
    if (key_len)
        msgpack_sbuffer_write(&buf, key, key_len);
    size_t death_at = buf.size;
    s_write_death(&buf, msg, queue, reason);
    death_len = (uint32_t)(buf.size - death_at);
    memcpy(buf.data, &death_len, sizeof death_len);

    hop_msg_t *dl = hop_msg_new();
    hop_msg_attach(dl, msg->frames);
    dl->props = msg->props;
    dl->props_len = msg->props_len;
    dl->body = msg->body;
    dl->body_len = msg->body_len;
    dl->priority = msg->priority; // the expiration is removed: it would only expire again
    dl->persistent = msg->persistent;
    hop_msg_own(dl, (uint8_t *)msgpack_sbuffer_release(&buf), x_len, key_len);
    return dl;
}

void
hop_deliver_dead_letter(hop_broker_t *self, hop_queue_t *queue, hop_entry_t *entry,
                        const char *reason)
{
    hop_durable_forget(self, queue, entry); // it leaves this queue for good
    if (strcmp(reason, "expired") == 0) {
        queue->expired++;
        self->expired++;
    }
    hop_xchg_t *x = NULL;
    if (queue->args.dlx) {
        hop_str_t name = {queue->args.dlx, (uint32_t)strlen(queue->args.dlx)};
        x = hop_topology_exchange(self, &name);
    }
    if (!x || s_depth >= DEPTH_MAX) {
        if (queue->args.dlx && !x)
            hop_log(HOP_DEBUG, "deadletter",
                    "dead-letter exchange missing queue=%s dlx=%s reason=%s: dropped", queue->name,
                    queue->args.dlx, reason);
        queue->dropped++;
        self->dropped++;
        if (self->tracing)
            hop_trace_drop(self, queue, entry->msg, reason);
        hop_entry_destroy(&entry);
        return;
    }
    hop_msg_t *dl = s_dead_letter(entry->msg, queue, reason);
    hop_entry_destroy(&entry); // the dead letter holds the frames now
    queue->dead_lettered++;
    self->dead_lettered++;
    x->published++;

    s_depth++;
    hop_route_t route;
    hop_route_init(&route);
    if (x->table)
        hop_exchange_route(x->table, dl->key_len ? dl->key : "", dl->key_len, &route);
    else {
        hop_queue_t *q = hop_map_get(self->queues, dl->key, dl->key_len);
        if (q)
            hop_route_push(&route, q);
    }
    // Drop the targets that would close a cycle, then enqueue everywhere before dispatching.
    size_t n = 0;
    for (size_t i = 0; i < route.size; i++) {
        hop_queue_t *q = route.queues[i];
        if (!s_cycle(dl, q) && !q->deleting)
            route.queues[n++] = q;
    }
    route.size = n;
    dl->refs++; // held while enqueueing, so that an overflow cannot free it under us
    size_t stored = hop_deliver_enqueue(self, &route, dl, HOP_TTL_NONE, NULL);
    if (self->tracing)
        hop_trace_dead_letter(self, queue, dl, reason, &route, stored);
    hop_msg_release(dl);
    if (route.size == 0) {
        x->unroutable++;
        self->unroutable++;
    }
    if (stored == 0) {
        queue->dropped++;
        self->dropped++;
    }
    for (size_t i = 0; i < route.size; i++)
        if (route.queues[i])
            hop_deliver_dispatch(self, route.queues[i]);
    hop_route_fini(&route);
    s_depth--;
}
