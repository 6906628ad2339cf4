// bus/paging.c - durable queues larger than RAM (issue 5): what of a durable queue is past its
// in-memory window lives in its spill (bus/spill.h), where a persistent message whose record is
// durable is kept as the record's position and size only (24 bytes), and is read back from
// the store when the queue's head comes near it.
//
//   write out  on the tick, spilled entries whose record the store counts as durable give up
//              their memory (an entry that was delivered or delayed keeps it: its state is more
//              than its record says);
//   read back  hop_queue_fill asks s_load for the record and rebuilds the message from it, as
//              replay does;
//   replay     past the window, a MESSAGE record becomes a slot without its bytes being kept;
//              an ACK finds its slot by position (slots are in log order), an UPDATE is kept
//              aside and applied once the log is read, by reading its message back.
// docs/ARCHITECTURE.md ("Larger than RAM") has the figures and the trade-offs.
#include "durable_internal.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_DEFAULT_WINDOW 4096 // ready messages a durable queue keeps in memory

// An UPDATE replayed for a spilled message: applied when the log is read.
typedef struct {
    hop_queue_t *queue;
    hop_store_pos_t upd_pos; // the UPDATE record (live)
    uint32_t upd_size;
    uint32_t count;      // delivery count
    uint64_t delay;      // wall ms until which it is delayed; 0: none
    hop_store_pos_t pos; // the message record
    hop_spill_t *spill;  // the spill of its level
    hop_slot_t *slot;    // its slot (found before any slot turns into an entry)
} s_pending_t;

static hop_msg_t *s_load(void *arg, hop_queue_t *q, const hop_slot_t *slot, uint64_t *at,
                         uint64_t *expires_at);

void
hop_paging_enable(hop_broker_t *self, hop_queue_t *q)
{
    uint32_t window = self->config.queue_window ? self->config.queue_window : S_DEFAULT_WINDOW;
    if (!self->durable || window == UINT32_MAX || q->spills)
        return;
    hop_queue_set_loader(s_load, self);
    hop_queue_enable_spill(q, window);
}

// Monotonic ms of a wall-clock ms (0 when it is further back than the monotonic clock goes).
static uint64_t
s_mono(const hop_broker_t *self, uint64_t wall_ms, uint64_t wall_now)
{
    if (wall_ms >= wall_now)
        return self->now + (wall_ms - wall_now);
    uint64_t ago = wall_now - wall_ms;
    return ago < self->now ? self->now - ago : 0;
}

hop_msg_t *
hop_paging_build(hop_broker_t *self, hop_frames_t *frames, const hop_wire_t *w, size_t hsize,
                 uint64_t *at, uint64_t *expires_at)
{
    const uint8_t *base = zmq_msg_data(&frames->header);
    size_t len = zmq_msg_size(&frames->header);
    hop_msg_t *msg = hop_msg_new();
    hop_msg_attach(msg, frames);
    // w borrows the same bytes: its spans point into base.
    hop_msg_names(msg, w->exchange.ptr ? w->exchange.ptr : "", w->exchange.len,
                  w->key.ptr ? w->key.ptr : "", w->key.len);
    if (w->props.ptr) {
        msg->props = w->props.ptr;
        msg->props_len = w->props.len;
    }
    msg->body_len = (uint32_t)(len - hsize);
    msg->body = msg->body_len ? base + hsize : NULL;
    msg->priority = (uint8_t)(w->priority > 255 ? 255 : w->priority);
    msg->persistent = true;
    if (w->death.ptr) {
        // A dead letter: its death records live in bytes of its own, as deadletter.c lays
        // them out ([u32 death_len][exchange][key][death]).
        uint32_t dl = w->death.len;
        uint8_t *own = hop_malloc(sizeof dl + msg->exchange_len + msg->key_len + dl);
        memcpy(own, &dl, sizeof dl);
        memcpy(own + sizeof dl, msg->exchange, msg->exchange_len);
        memcpy(own + sizeof dl + msg->exchange_len, msg->key, msg->key_len);
        memcpy(own + sizeof dl + msg->exchange_len + msg->key_len, w->death.ptr, dl);
        hop_msg_own(msg, own, msg->exchange_len, msg->key_len);
    }
    uint64_t wall = hop_wall_ms();
    *at = (w->has & HOP_F_ENTERED) ? s_mono(self, w->entered, wall) : self->now;
    *expires_at = (w->has & HOP_F_EXPIRES) ? s_mono(self, w->expires, wall) : UINT64_MAX;
    return msg;
}

// Decodes a message record's header; its size in *hsize. -1 when it is not one.
int
hop_paging_decode(const void *payload, size_t len, hop_wire_t *w, size_t *hsize)
{
    hop_mp_t mp;
    hop_mp_init(&mp, payload, len);
    if (hop_mp_skip(&mp))
        return -1;
    *hsize = (size_t)(mp.p - (const uint8_t *)payload);
    return hop_wire_decode(w, payload, *hsize, NULL, 0) ? -1 : 0;
}

// The queue's loader (hop_queue_fill): reads a spilled message's record back.
static hop_msg_t *
s_load(void *arg, hop_queue_t *q, const hop_slot_t *slot, uint64_t *at, uint64_t *expires_at)
{
    hop_broker_t *self = arg;
    hop_durable_t *d = self->durable;
    uint32_t len = slot->size - HOP_STORE_HEADER;
    hop_frames_t *frames = hop_frames_new();
    zmq_msg_init_size(&frames->header, len);
    int64_t rc =
        hop_store_read(d->store, slot->pos, slot->size, zmq_msg_data(&frames->header), len);
    hop_wire_t w;
    size_t hsize = 0;
    if (rc != (int64_t)len || hop_paging_decode(zmq_msg_data(&frames->header), len, &w, &hsize) ||
        len - hsize != hop_slot_body_len(slot)) {
        hop_log(HOP_ERROR, "durable",
                "queue '%s': the message record at %u:%u cannot be read back (%s): the message "
                "is lost",
                q->name, HOP_STORE_POS_SEG(slot->pos), HOP_STORE_POS_OFF(slot->pos),
                rc < 0 ? hop_store_strerror((int)rc) : "not a message record");
        if (rc != HOP_STORE_ENOTFOUND)
            hop_store_release(d->store, slot->pos, slot->size);
        hop_frames_release(frames);
        d->unreadable++;
        return NULL;
    }
    hop_msg_t *msg = hop_paging_build(self, frames, &w, hsize, at, expires_at);
    hop_drec_t *r = hop_calloc(1, sizeof *r);
    r->pos = slot->pos;
    r->size = slot->size;
    hop_map_put(q->stored, &slot->seq, sizeof slot->seq, r);
    d->read_back++;
    return msg;
}

// Writes out one level's spill from where the last call stopped.
static void
s_write_out(hop_durable_t *d, hop_queue_t *q, hop_spill_t *spill, hop_store_pos_t durable)
{
    uint64_t seen = hop_spill_seen(spill);
    uint64_t i = seen > hop_spill_begin(spill) ? seen : hop_spill_begin(spill);
    for (; i < hop_spill_end(spill); i++) {
        hop_slot_t *slot = hop_spill_at(spill, i);
        if (hop_slot_hole(slot) || hop_slot_on_disk(slot))
            continue;
        hop_entry_t *e = slot->entry;
        if (!e->msg->persistent || e->deliveries || e->redelivered)
            continue; // a transient message, or one whose state is more than its record
        hop_drec_t *r = hop_map_get(q->stored, &e->seq, sizeof e->seq);
        if (!r || r->upd_pos)
            continue; // not written (the store was failing), or updated since
        if (!HOP_STORE_COVERS(durable, r->pos, r->size))
            break; // records of one queue are in log order: the rest are not durable either
        hop_spill_set_disk(spill, slot, r->pos, r->size);
        hop_map_remove(q->stored, &e->seq, sizeof e->seq);
        free(r);
        e->spilled = false;
        hop_entry_destroy(&e);
        d->written_out++;
    }
    hop_spill_set_seen(spill, i);
}

void
hop_paging_write_out(hop_broker_t *self, hop_queue_t *q)
{
    hop_durable_t *d = self->durable;
    if (!d || !q->spills || !q->stored)
        return;
    hop_store_pos_t durable = hop_store_durable(d->store);
    for (uint32_t l = 0; l < hop_queue_nlevels(q); l++)
        s_write_out(d, q, q->spills[l], durable);
}

void
hop_paging_release(hop_broker_t *self, hop_queue_t *q)
{
    hop_durable_t *d = self->durable;
    for (uint32_t l = 0; d && q->spills && l < hop_queue_nlevels(q); l++) {
        hop_spill_t *spill = q->spills[l];
        for (uint64_t i = hop_spill_begin(spill); i < hop_spill_end(spill); i++) {
            hop_slot_t *slot = hop_spill_at(spill, i);
            if (!hop_slot_hole(slot) && hop_slot_on_disk(slot))
                hop_store_release(d->store, slot->pos, slot->size);
            // In-memory ones are in q->stored: hop_durable_queue releases those.
        }
    }
}

// Replay ---------------------------------------------------------------------------------------

bool
hop_paging_replay_message(hop_broker_t *self, hop_queue_t *q, const hop_store_record_t *rec,
                          size_t hsize, uint8_t priority)
{
    (void)self;
    uint32_t level = hop_queue_level_of(q, priority);
    hop_spill_t *spill = hop_queue_spill(q, level);
    if (!spill || (!hop_spill_size(spill) && hop_queue_list(q, level)->size < q->window))
        return false;
    uint32_t body_len = (uint32_t)(rec->len - hsize);
    hop_spill_push_disk(spill, q->next_seq++, rec->pos, rec->size,
                        (body_len & HOP_SLOT_LEN_MASK) | HOP_SLOT_RECOVERED);
    q->ready_count++;
    q->ready_bytes += body_len;
    q->published++;
    return true;
}

// The spilled slot of the message record at pos in q (any level), and its spill; NULL when
// it is not spilled.
static hop_slot_t *
s_find_in(hop_queue_t *q, hop_store_pos_t pos, hop_spill_t **spill_p)
{
    for (uint32_t l = 0; q->spills && l < hop_queue_nlevels(q); l++) {
        hop_slot_t *slot = hop_spill_find_pos(q->spills[l], pos);
        if (slot) {
            *spill_p = q->spills[l];
            return slot;
        }
    }
    return NULL;
}

// The queue of an ACK or UPDATE (keyed by queue id), and the spilled slot of the message record
// at pos in it (and its spill); NULL when it is not spilled.
static hop_slot_t *
s_replayed_slot(hop_broker_t *self, uint64_t qid, hop_store_pos_t pos, hop_queue_t **q_p,
                hop_spill_t **spill_p)
{
    hop_durable_t *d = self->durable;
    if (qid && d->last_q && d->last_q->sid == qid) {
        *q_p = d->last_q;
        return s_find_in(d->last_q, pos, spill_p);
    }
    size_t cursor = 0;
    void *value;
    while (hop_map_next(self->queues, &cursor, NULL, NULL, &value)) {
        hop_queue_t *q = value;
        if (!q->spills || (qid && q->sid != qid))
            continue;
        hop_slot_t *slot = s_find_in(q, pos, spill_p);
        if (slot || qid) {
            d->last_q = q;
            *q_p = q;
            return slot;
        }
    }
    return NULL; // records written before ACKs had a queue id (key 0) land here too
}

bool
hop_paging_replay_ack(hop_broker_t *self, const hop_store_record_t *rec)
{
    hop_durable_t *d = self->durable;
    hop_queue_t *q = NULL;
    hop_spill_t *spill = NULL;
    hop_slot_t *slot = s_replayed_slot(self, rec->key, rec->kills, &q, &spill);
    if (!slot || hop_slot_hole(slot))
        return false;
    s_pending_t *p = d->pending ? hop_map_get(d->pending, &rec->kills, sizeof rec->kills) : NULL;
    if (p) {
        hop_store_release(d->store, p->upd_pos, p->upd_size);
        hop_map_remove(d->pending, &rec->kills, sizeof rec->kills);
        free(p);
    }
    q->ready_count--;
    q->ready_bytes -= hop_slot_body_len(slot);
    hop_spill_hole(spill, slot);
    d->recovered--;
    return true;
}

bool
hop_paging_replay_update(hop_broker_t *self, const hop_store_record_t *rec, const hop_wire_t *w)
{
    hop_durable_t *d = self->durable;
    hop_queue_t *q = NULL;
    hop_spill_t *spill = NULL;
    hop_slot_t *slot = s_replayed_slot(self, rec->key, w->tag, &q, &spill);
    if (!slot || hop_slot_hole(slot))
        return false;
    if (!d->pending)
        d->pending = hop_map_new();
    s_pending_t *p = hop_map_get(d->pending, &w->tag, sizeof w->tag);
    if (p)
        hop_store_release(d->store, p->upd_pos, p->upd_size);
    else {
        p = hop_calloc(1, sizeof *p);
        p->pos = w->tag;
        hop_map_put(d->pending, &p->pos, sizeof p->pos, p);
    }
    p->queue = q;
    p->spill = spill;
    p->upd_pos = rec->pos;
    p->upd_size = rec->size;
    p->count = (uint32_t)(w->count > UINT32_MAX ? UINT32_MAX : w->count);
    p->delay = (w->has & HOP_F_DELAY) ? w->delay : 0;
    return true;
}

void
hop_paging_replay_end(hop_broker_t *self)
{
    hop_durable_t *d = self->durable;
    if (!d->pending)
        return;
    // Lookups by position first: a slot that holds an entry has no position any more.
    size_t cursor = 0;
    void *value;
    while (hop_map_next(d->pending, &cursor, NULL, NULL, &value)) {
        s_pending_t *p = value;
        p->slot = hop_spill_find_pos(p->spill, p->pos);
    }
    cursor = 0;
    uint64_t wall = hop_wall_ms();
    while (hop_map_next(d->pending, &cursor, NULL, NULL, &value)) {
        s_pending_t *p = value;
        hop_queue_t *q = p->queue;
        hop_slot_t *slot = p->slot;
        uint64_t at, expires_at;
        hop_msg_t *msg = slot ? s_load(self, q, slot, &at, &expires_at) : NULL;
        if (!msg) {
            hop_store_release(d->store, p->upd_pos, p->upd_size);
            if (slot) {
                q->ready_count--;
                q->ready_bytes -= hop_slot_body_len(slot);
                hop_spill_hole(p->spill, slot);
            }
            free(p);
            continue;
        }
        // In memory from now on, at its place in the spill: its state is more than its record.
        hop_entry_t *e = hop_entry_new(msg);
        e->queue = q;
        e->seq = slot->seq;
        e->at = at;
        e->expires_at = expires_at;
        e->redelivered = true;
        e->deliveries = p->count;
        e->spilled = true;
        hop_spill_set_entry(p->spill, slot, e);
        hop_drec_t *r = hop_map_get(q->stored, &e->seq, sizeof e->seq);
        r->upd_pos = p->upd_pos;
        r->upd_size = p->upd_size;
        if (p->delay > wall)
            hop_queue_delay_ready(q, e, self->now + (p->delay - wall));
        free(p);
    }
    hop_map_destroy(&d->pending);
}
