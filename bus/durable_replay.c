// bus/durable_replay.c - replay at start (issue 5): every record of the store, in log order,
// rebuilds what it recorded. Declares and bindings go through the very handlers a client's
// request goes through (as a dead pseudo-connection); messages are rebuilt in their queues, or
// left on disk as spilled slots past a queue's window (bus/paging.c); ACKs, UPDATEs and
// deletions apply to what came before them. Record formats: bus/durable.c.
#include "durable_internal.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Feeds a declare/bind record to the handler a client's request goes through.
static int
s_replay_request(hop_broker_t *self, const hop_store_record_t *rec)
{
    hop_wire_t w;
    char err[256];
    if (hop_wire_decode(&w, rec->payload, rec->len, err, sizeof err)) {
        hop_log(HOP_ERROR, "durable", "unreadable record at %llu:%u: %s (skipped)",
                (unsigned long long)HOP_STORE_POS_SEG(rec->pos), HOP_STORE_POS_OFF(rec->pos), err);
        return -1;
    }
    hop_durable_t *d = self->durable;
    if (rec->type == HOP_REC_EXCHANGE) {
        hop_topology_exchange_declare(self, d->replay, &w);
        hop_xchg_t *x = hop_topology_exchange(self, &w.exchange);
        if (!x)
            return -1;
        x->sid = rec->key;
        x->spos = rec->pos;
        x->ssize = rec->size;
    } else if (rec->type == HOP_REC_QUEUE) {
        // The same id again: the queue was purged (hop_durable_purge).
        hop_queue_t *purged = hop_durable_queue_by_id(self, rec->key);
        if (purged) {
            hop_durable_purge(self, purged);
            hop_queue_purge(purged);
            hop_store_release(d->store, purged->spos, purged->ssize);
        }
        hop_topology_queue_declare(self, d->replay, &w);
        hop_queue_t *q = hop_topology_queue(self, &w.queue);
        if (!q)
            return -1;
        q->sid = rec->key;
        q->spos = rec->pos;
        q->ssize = rec->size;
        if (!q->stored)
            q->stored = hop_map_new();
        hop_paging_enable(self, q);
    } else {
        // A binding: only between the very queue and exchange it was made for.
        hop_queue_t *q = hop_topology_queue(self, &w.queue);
        hop_xchg_t *x = hop_topology_exchange(self, &w.exchange);
        if (!q || !x || q->sid != rec->key || x->sid != w.id)
            return -1;
        char k[HOP_NAME_MAX * 2 + 64];
        size_t klen = hop_durable_bind_key(k, sizeof k, q->sid, x->sid, x->name, x->name_len,
                                           w.key.ptr ? w.key.ptr : "", w.key.len);
        hop_drec_t *have = hop_map_get(d->binds, k, klen);
        if (have) {
            hop_map_remove(d->binds, k, klen);
            free(have);
        }
        hop_topology_bind(self, d->replay, &w, rec->type == HOP_REC_BIND);
        if (rec->type == HOP_REC_BIND) {
            hop_drec_t *r = hop_malloc(sizeof *r);
            r->pos = rec->pos;
            r->size = rec->size;
            hop_map_put(d->binds, k, klen, r);
        }
    }
    return 0;
}

hop_queue_t *
hop_durable_queue_by_id(hop_broker_t *self, uint64_t id)
{
    size_t cursor = 0;
    void *value;
    while (hop_map_next(self->queues, &cursor, NULL, NULL, &value))
        if (((hop_queue_t *)value)->sid == id)
            return value;
    return NULL;
}

// Rebuilds a persistent message in its queue, ready and flagged redelivered (it may have been
// delivered before the restart: consumers of durable queues must be idempotent anyway).
static int
s_replay_message(hop_broker_t *self, const hop_store_record_t *rec, hop_queue_t **last_q)
{
    hop_wire_t w;
    size_t hsize;
    if (hop_paging_decode(rec->payload, rec->len, &w, &hsize))
        return -1;
    hop_queue_t *q =
        *last_q && (*last_q)->sid == w.id ? *last_q : hop_durable_queue_by_id(self, w.id);
    if (!q)
        return -1;
    *last_q = q;
    self->durable->recovered++;
    if (hop_paging_replay_message(self, q, rec, hsize,
                                  (uint8_t)(w.priority > 255 ? 255 : w.priority)))
        return 0; // past the queue's window: stays on disk
    hop_frames_t *frames = hop_frames_new();
    zmq_msg_init_size(&frames->header, rec->len);
    memcpy(zmq_msg_data(&frames->header), rec->payload, rec->len);
    hop_paging_decode(zmq_msg_data(&frames->header), rec->len, &w, &hsize); // spans into the copy
    uint64_t at, expires_at;
    hop_msg_t *msg = hop_paging_build(self, frames, &w, hsize, &at, &expires_at);
    msg->refs++; // held while pushing
    hop_entry_t *e = hop_queue_push(q, msg, self->now, HOP_TTL_NONE);
    e->redelivered = true;
    e->at = at;
    if (expires_at < e->expires_at)
        e->expires_at = expires_at;
    hop_msg_release(msg);
    hop_drec_t *r = hop_calloc(1, sizeof *r);
    r->pos = rec->pos;
    r->size = rec->size;
    hop_map_put(q->stored, &e->seq, sizeof e->seq, r);
    hop_map_put(self->durable->replayed, &rec->pos, sizeof rec->pos, e);
    return 0;
}

// An ACK in the log: the message it kills leaves its queue.
static void
s_replay_ack(hop_broker_t *self, const hop_store_record_t *rec)
{
    hop_durable_t *d = self->durable;
    hop_entry_t *e = hop_map_get(d->replayed, &rec->kills, sizeof rec->kills);
    if (!e) {
        hop_paging_replay_ack(self, rec);
        return;
    }
    hop_map_remove(d->replayed, &rec->kills, sizeof rec->kills);
    hop_queue_t *q = e->queue;
    hop_drec_t *r = hop_map_get(q->stored, &e->seq, sizeof e->seq);
    if (r) {
        hop_map_remove(q->stored, &e->seq, sizeof e->seq);
        if (r->upd_pos)
            hop_store_release(d->store, r->upd_pos, r->upd_size);
        free(r);
    }
    if (e->delayed)
        hop_queue_undelay(q, e);
    hop_queue_remove(q, e);
    hop_entry_destroy(&e);
    d->recovered--;
}

// An UPDATE in the log: the message's delivery count and delay, as of that moment.
static int
s_replay_update(hop_broker_t *self, const hop_store_record_t *rec)
{
    hop_durable_t *d = self->durable;
    hop_wire_t w;
    if (hop_wire_decode(&w, rec->payload, rec->len, NULL, 0))
        return -1;
    hop_entry_t *e = hop_map_get(d->replayed, &w.tag, sizeof w.tag);
    if (!e)
        return hop_paging_replay_update(self, rec, &w) ? 0 : -1; // else its message is gone
    hop_queue_t *q = e->queue;
    hop_drec_t *r = hop_map_get(q->stored, &e->seq, sizeof e->seq);
    if (r) {
        if (r->upd_pos)
            hop_store_release(d->store, r->upd_pos, r->upd_size);
        r->upd_pos = rec->pos;
        r->upd_size = rec->size;
    }
    e->deliveries = (uint32_t)(w.count > UINT32_MAX ? UINT32_MAX : w.count);
    if (e->delayed)
        hop_queue_undelay(q, e);
    uint64_t wall = hop_wall_ms();
    if ((w.has & HOP_F_DELAY) && w.delay > wall)
        hop_queue_delay_ready(q, e, self->now + (w.delay - wall));
    return 0;
}

typedef struct {
    hop_broker_t *broker;
    hop_queue_t *last_q;
} s_replay_t;

static int
s_replay_one(void *arg, const hop_store_record_t *rec)
{
    s_replay_t *r = arg;
    hop_broker_t *self = r->broker;
    hop_durable_t *d = self->durable;
    if (rec->key >= d->next_id && rec->type != HOP_REC_MESSAGE && rec->type != HOP_REC_ACK)
        d->next_id = rec->key + 1;
    if (rec->type == HOP_REC_MESSAGE && rec->key >= d->next_msg_id)
        d->next_msg_id = rec->key + 1;
    if (rec->corrupt) {
        if (rec->kills)
            hop_store_release(d->store, rec->kills, rec->kills_size);
        return 0;
    }
    int rc = 0;
    switch (rec->type) {
    case HOP_REC_EXCHANGE:
    case HOP_REC_QUEUE:
    case HOP_REC_BIND:
        rc = s_replay_request(self, rec);
        break;
    case HOP_REC_MESSAGE:
        rc = s_replay_message(self, rec, &r->last_q);
        break;
    case HOP_REC_ACK:
        s_replay_ack(self, rec);
        break;
    case HOP_REC_UPDATE:
        rc = s_replay_update(self, rec);
        break;
    case HOP_REC_EXCHANGE_DEL: {
        size_t cursor = 0;
        void *value;
        while (hop_map_next(self->exchanges, &cursor, NULL, NULL, &value)) {
            hop_xchg_t *x = value;
            if (x->sid == rec->key) {
                x->spos = 0; // the record is dead already
                hop_topology_exchange_remove(self, x);
                break;
            }
        }
        break;
    }
    case HOP_REC_QUEUE_DEL: {
        hop_queue_t *q = hop_durable_queue_by_id(self, rec->key);
        if (q) {
            q->spos = 0;
            hop_topology_delete_queue(self, q);
        }
        r->last_q = NULL;
        break;
    }
    case HOP_REC_UNBIND:
        s_replay_request(self, rec); // an unbind that finds nothing is a no-op
        break;
    default:
        break;
    }
    // A record that no longer applies (its queue or exchange is gone) is dead.
    if (rc && rec->type == HOP_REC_MESSAGE)
        d->dropped_on_replay++;
    if (rc)
        hop_store_release(d->store, rec->pos, rec->size);
    return 0;
}

int
hop_durable_replay(hop_broker_t *self, hop_store_replay_t *report)
{
    s_replay_t state = {.broker = self};
    return hop_store_replay(self->durable->store, s_replay_one, &state, report);
}
