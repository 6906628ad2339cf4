// bus/durable.c - what survives a restart (issue 5): durable exchanges, durable queues with
// their arguments, bindings between durable things, and persistent messages in durable queues.
// They are records in the store (bus/store.h), written as they happen and replayed at start.
//
// Records (types in store.h; payloads are msgpack maps shaped like the wire requests, so that
// replay feeds them to the same handlers a client's declare goes through):
//   EXCHANGE     key: exchange id   {cmd:"exchange.declare", exchange, type, durable, auto_delete}
//   EXCHANGE_DEL key: exchange id   kills EXCHANGE
//   QUEUE        key: queue id      {cmd:"queue.declare", queue, durable, auto_delete, args...}
//   QUEUE_DEL    key: queue id      kills QUEUE
//   BIND         key: queue id      {cmd:"queue.bind", queue, exchange, key, id: exchange id}
//   UNBIND       key: queue id      kills BIND
//   MESSAGE      key: message id    {id: queue id, exchange, key, props?, priority?, entered,
//                                    expires?, death?} + body
//   ACK          key: queue id      kills MESSAGE (acked, dropped, expired, dead-lettered away)
//   UPDATE       key: queue id      {tag: MESSAGE position, count, delay?}
// (ACK and UPDATE records written before spilling existed have key 0: replay looks for them in
// every queue.)
// Ids are never reused (they start above the largest replayed), so a record left by a deleted
// queue can never be mistaken for one of a later queue of the same name.
//
// Confirms of persistent messages wait until the store says their records are durable (the
// --fsync policy); the confirms that follow them on the same connection wait behind them, so
// that a "multiple" confirm never covers a message that is not yet on disk.
#include "durable_internal.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t
s_new_id(hop_durable_t *d)
{
    return d->next_id++;
}

// Appends a record; on failure logs, remembers why and returns -1.
static int
s_append(hop_broker_t *self, uint8_t type, uint64_t key, const struct iovec *iov, int iovcnt,
         hop_store_pos_t kills, uint32_t kills_size, hop_drec_t *rec)
{
    hop_durable_t *d = self->durable;
    hop_store_pos_t pos = HOP_STORE_NOPOS;
    int rc = hop_store_appendv(d->store, type, key, iov, iovcnt, kills, kills_size, &pos);
    if (rc) {
        snprintf(d->error, sizeof d->error, "%s", hop_store_strerror(rc));
        hop_log(HOP_ERROR, "durable", "cannot write record type=%d: %s", type,
                hop_store_strerror(rc));
        return -1;
    }
    uint32_t size = 0;
    for (int i = 0; i < iovcnt; i++)
        size += (uint32_t)iov[i].iov_len;
    size = HOP_STORE_SIZE(size);
    if (rec)
        *rec = (hop_drec_t){.pos = pos, .size = size};
    d->last_end = pos + size;
    d->dirty = true;
    d->request_wrote = true;
    return 0;
}

static int
s_append_enc(hop_broker_t *self, uint8_t type, uint64_t key, hop_enc_t *enc, hop_store_pos_t kills,
             uint32_t kills_size, hop_drec_t *rec)
{
    size_t size = 0;
    const void *bytes = enc ? hop_enc_end(enc, &size) : NULL;
    struct iovec iov = {(void *)bytes, size};
    return s_append(self, type, key, &iov, size ? 1 : 0, kills, kills_size, rec);
}

// Topology ---------------------------------------------------------------------------------

void
hop_durable_exchange(hop_broker_t *self, hop_xchg_t *x, bool declared)
{
    hop_durable_t *d = self->durable;
    if (!d || d->replaying)
        return; // replay sets ids and positions itself
    if (declared) {
        if (!x->durable || x->builtin)
            return;
        hop_enc_t enc;
        hop_enc_init(&enc);
        hop_enc_begin(&enc, HOP_CMD_EXCHANGE_DECLARE);
        hop_enc_str(&enc, "exchange", x->name, x->name_len);
        hop_enc_cstr(&enc, "type", hop_exchange_type_name(x->type));
        hop_enc_bool(&enc, "durable", true);
        hop_enc_bool(&enc, "auto_delete", x->auto_delete);
        x->sid = s_new_id(d);
        hop_drec_t rec;
        if (s_append_enc(self, HOP_REC_EXCHANGE, x->sid, &enc, HOP_STORE_NOPOS, 0, &rec) == 0) {
            x->spos = rec.pos;
            x->ssize = rec.size;
        }
        hop_enc_fini(&enc);
        return;
    }
    if (!x->spos)
        return;
    s_append_enc(self, HOP_REC_EXCHANGE_DEL, x->sid, NULL, x->spos, x->ssize, NULL);
    x->spos = 0;
}

size_t
hop_durable_bind_key(char *out, size_t cap, uint64_t qid, uint64_t xid, const char *name,
                     size_t name_len, const char *key, size_t key_len)
{
    int n = snprintf(out, cap, "%llu %llu %.*s %.*s", (unsigned long long)qid,
                     (unsigned long long)xid, (int)name_len, name, (int)key_len, key);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

void
hop_durable_bind(hop_broker_t *self, hop_xchg_t *x, hop_queue_t *q, const char *key, size_t key_len,
                 bool bind)
{
    hop_durable_t *d = self->durable;
    if (!d || !q->sid || (!x->sid && !x->builtin))
        return;
    char k[HOP_NAME_MAX * 2 + 64];
    size_t klen =
        hop_durable_bind_key(k, sizeof k, q->sid, x->sid, x->name, x->name_len, key, key_len);
    hop_drec_t *have = hop_map_get(d->binds, k, klen);
    if (d->replaying)
        return; // replay keeps d->binds itself
    if (bind) {
        if (have)
            return; // binding twice is a no-op
        hop_enc_t enc;
        hop_enc_init(&enc);
        hop_enc_begin(&enc, HOP_CMD_QUEUE_BIND);
        hop_enc_str(&enc, "queue", q->name, q->name_len);
        hop_enc_str(&enc, "exchange", x->name, x->name_len);
        hop_enc_str(&enc, "key", key, key_len);
        hop_enc_uint(&enc, "id", x->sid);
        hop_drec_t rec;
        if (s_append_enc(self, HOP_REC_BIND, q->sid, &enc, HOP_STORE_NOPOS, 0, &rec) == 0) {
            hop_drec_t *r = hop_malloc(sizeof *r);
            *r = rec;
            hop_map_put(d->binds, k, klen, r);
        }
        hop_enc_fini(&enc);
    } else if (have) {
        hop_enc_t enc;
        hop_enc_init(&enc);
        hop_enc_begin(&enc, HOP_CMD_QUEUE_UNBIND);
        hop_enc_str(&enc, "queue", q->name, q->name_len);
        hop_enc_str(&enc, "exchange", x->name, x->name_len);
        hop_enc_str(&enc, "key", key, key_len);
        hop_enc_uint(&enc, "id", x->sid);
        s_append_enc(self, HOP_REC_UNBIND, q->sid, &enc, have->pos, have->size, NULL);
        hop_enc_fini(&enc);
        hop_map_remove(d->binds, k, klen);
        free(have);
    }
}

// Releases the binding records that name queue id qid or exchange id xid (0: any).
static void
s_release_binds(hop_broker_t *self, uint64_t qid, uint64_t xid)
{
    hop_durable_t *d = self->durable;
    bool again = true;
    while (again) {
        again = false;
        size_t cursor = 0;
        const void *key;
        size_t key_len;
        void *value;
        while (hop_map_next(d->binds, &cursor, &key, &key_len, &value)) {
            unsigned long long q = 0, x = 0;
            char buf[64];
            snprintf(buf, sizeof buf, "%.*s", (int)(key_len < 63 ? key_len : 63),
                     (const char *)key);
            if (sscanf(buf, "%llu %llu", &q, &x) != 2)
                continue;
            if ((qid && q == qid) || (xid && x == xid)) {
                hop_drec_t *r = value;
                hop_store_release(d->store, r->pos, r->size);
                hop_map_remove(d->binds, key, key_len);
                free(r);
                again = true; // the map changed under the cursor
                break;
            }
        }
    }
}

void
hop_durable_exchange_gone(hop_broker_t *self, hop_xchg_t *x)
{
    if (!self->durable || !x->sid)
        return;
    s_release_binds(self, 0, x->sid);
    hop_durable_exchange(self, x, false);
}

// Writes q's declare record (a QUEUE record keyed by its id) and makes it q's.
static void
s_queue_record(hop_broker_t *self, hop_queue_t *q)
{
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_QUEUE_DECLARE);
    hop_enc_str(&enc, "queue", q->name, q->name_len);
    hop_enc_bool(&enc, "durable", true);
    hop_enc_bool(&enc, "auto_delete", q->auto_delete);
    hop_inspect_write_args(&enc, &q->args);
    hop_drec_t rec;
    if (s_append_enc(self, HOP_REC_QUEUE, q->sid, &enc, HOP_STORE_NOPOS, 0, &rec) == 0) {
        q->spos = rec.pos;
        q->ssize = rec.size;
    }
    hop_enc_fini(&enc);
}

void
hop_durable_queue(hop_broker_t *self, hop_queue_t *q, bool declared)
{
    hop_durable_t *d = self->durable;
    if (!d || (declared && d->replaying))
        return;
    if (declared) {
        if (!q->durable || q->exclusive)
            return; // an exclusive queue dies with its connection: nothing to keep
        q->sid = s_new_id(d);
        q->stored = hop_map_new();
        hop_paging_enable(self, q);
        s_queue_record(self, q);
        return;
    }
    if (!q->sid)
        return;
    // Deleted: its messages and bindings die with it (released: a replay finds no queue for
    // them), its declare is killed.
    s_release_binds(self, q->sid, 0);
    hop_paging_release(self, q);
    size_t cursor = 0;
    void *value;
    while (hop_map_next(q->stored, &cursor, NULL, NULL, &value)) {
        hop_drec_t *r = value;
        hop_store_release(d->store, r->pos, r->size);
        free(r);
    }
    hop_map_destroy((hop_map_t **)&q->stored);
    if (q->spos && !d->replaying)
        s_append_enc(self, HOP_REC_QUEUE_DEL, q->sid, NULL, q->spos, q->ssize, NULL);
    q->sid = 0;
    q->spos = 0;
}

// Purge --------------------------------------------------------------------------------------
//
// A purge does not write an ACK per message (10M of them would take seconds and more than the
// store's write buffer): the queue's declare is written again, with the same id, and replay
// takes a QUEUE record for a queue it already has as "drop what it holds so far". The purged
// messages' records are released, the old declare too; the bindings are written again after
// the new declare (replay may find only it, once the old one is reclaimed), and so are the
// records of the queue's unacked messages, which the purge leaves alone.

// Releases the records of entry e (replaying: also forgets its position).
static void
s_drop_entry(hop_broker_t *self, hop_queue_t *q, const hop_entry_t *e)
{
    hop_durable_t *d = self->durable;
    hop_drec_t *r = hop_map_get(q->stored, &e->seq, sizeof e->seq);
    if (!r)
        return;
    hop_map_remove(q->stored, &e->seq, sizeof e->seq);
    hop_store_release(d->store, r->pos, r->size);
    if (r->upd_pos)
        hop_store_release(d->store, r->upd_pos, r->upd_size);
    if (d->replayed)
        hop_map_remove(d->replayed, &r->pos, sizeof r->pos);
    free(r);
}

static void
s_drop_list(hop_broker_t *self, hop_queue_t *q, const hop_list_t *list)
{
    for (const hop_entry_t *e = list->head; e; e = e->next)
        s_drop_entry(self, q, e);
}

// Releases the records of every ready and delayed message of q, spilled ones included.
static void
s_drop_ready(hop_broker_t *self, hop_queue_t *q)
{
    s_drop_list(self, q, &q->ready);
    s_drop_list(self, q, &q->delayed);
    for (uint32_t p = 0; q->levels && p < q->args.max_priority; p++)
        s_drop_list(self, q, &q->levels[p]);
    for (uint32_t l = 0; q->spills && l < hop_queue_nlevels(q); l++) {
        hop_spill_t *spill = q->spills[l];
        for (uint64_t i = hop_spill_begin(spill); i < hop_spill_end(spill); i++) {
            hop_slot_t *slot = hop_spill_at(spill, i);
            if (hop_slot_hole(slot))
                continue;
            if (hop_slot_on_disk(slot))
                hop_store_release(self->durable->store, slot->pos, slot->size);
            else
                s_drop_entry(self, q, slot->entry);
        }
    }
}

typedef struct {
    hop_queue_t *queue;
    char (*keys)[HOP_NAME_MAX + 1];
    size_t n, cap;
} s_binds_t;

static int
s_collect_bind(const char *key, size_t key_len, void *queue, void *arg)
{
    s_binds_t *b = arg;
    if (queue != b->queue || key_len > HOP_NAME_MAX)
        return 0;
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 8;
        b->keys = hop_realloc(b->keys, b->cap * sizeof *b->keys);
    }
    memcpy(b->keys[b->n], key, key_len);
    b->keys[b->n][key_len] = '\0';
    b->n++;
    return 0;
}

// Writes q's bindings again (after its new declare record), releasing the old records.
static void
s_rewrite_binds(hop_broker_t *self, hop_queue_t *q)
{
    hop_durable_t *d = self->durable;
    size_t cursor = 0;
    void *value;
    while (hop_map_next(self->exchanges, &cursor, NULL, NULL, &value)) {
        hop_xchg_t *x = value;
        if (!x->table || (!x->sid && !x->builtin))
            continue;
        s_binds_t b = {.queue = q};
        hop_exchange_foreach(x->table, s_collect_bind, &b);
        for (size_t i = 0; i < b.n; i++) {
            size_t len = strlen(b.keys[i]);
            char k[HOP_NAME_MAX * 2 + 64];
            size_t klen = hop_durable_bind_key(k, sizeof k, q->sid, x->sid, x->name, x->name_len,
                                               b.keys[i], len);
            hop_drec_t *have = hop_map_get(d->binds, k, klen);
            if (!have)
                continue;
            hop_store_release(d->store, have->pos, have->size);
            hop_map_remove(d->binds, k, klen);
            free(have);
            hop_durable_bind(self, x, q, b.keys[i], len, true);
        }
        free(b.keys);
    }
}

void
hop_durable_purge(hop_broker_t *self, hop_queue_t *q)
{
    hop_durable_t *d = self->durable;
    if (!d || !q->sid)
        return;
    s_drop_ready(self, q);
    if (d->replaying)
        return; // the record being replayed is the new declare
    hop_store_pos_t old = q->spos;
    uint32_t old_size = q->ssize;
    s_queue_record(self, q);
    if (old && q->spos != old)
        hop_store_release(d->store, old, old_size);
    s_rewrite_binds(self, q);
    // Unacked messages stay: their records go after the new declare too.
    for (hop_entry_t *e = q->unacked.head; e; e = e->next) {
        hop_drec_t *r = hop_map_get(q->stored, &e->seq, sizeof e->seq);
        if (!r)
            continue;
        hop_drec_t was = *r;
        hop_map_remove(q->stored, &e->seq, sizeof e->seq);
        free(r);
        hop_durable_message(self, q, e);
        hop_store_release(d->store, was.pos, was.size);
        if (was.upd_pos) {
            hop_store_release(d->store, was.upd_pos, was.upd_size);
            hop_durable_update(self, q, e);
        }
    }
}

// Messages ---------------------------------------------------------------------------------

void
hop_durable_message(hop_broker_t *self, hop_queue_t *q, hop_entry_t *e)
{
    hop_durable_t *d = self->durable;
    if (!d || d->replaying || !q->stored || !e->msg->persistent)
        return;
    const hop_msg_t *m = e->msg;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_PUBLISH);
    hop_enc_uint(&enc, "id", q->sid);
    hop_enc_str(&enc, "exchange", m->exchange ? m->exchange : "", m->exchange_len);
    hop_enc_str(&enc, "key", m->key ? m->key : "", m->key_len);
    if (m->props)
        hop_enc_raw(&enc, "props", m->props, m->props_len);
    if (m->priority)
        hop_enc_uint(&enc, "priority", m->priority);
    hop_enc_bool(&enc, "persistent", true);
    // Deadlines are kept as wall-clock times, so that a restart does not reset them.
    uint64_t wall = hop_wall_ms();
    hop_enc_uint(&enc, "entered", wall - (self->now > e->at ? self->now - e->at : 0));
    if (e->expires_at != UINT64_MAX)
        hop_enc_uint(&enc, "expires", wall + (e->expires_at - self->now));
    uint32_t death_len;
    const uint8_t *death = hop_msg_death(m, &death_len);
    if (death)
        hop_enc_raw(&enc, "death", death, death_len);
    size_t hsize;
    const void *header = hop_enc_end(&enc, &hsize);
    struct iovec iov[2] = {{(void *)header, hsize}, {(void *)m->body, m->body_len}};
    hop_drec_t rec;
    if (s_append(self, HOP_REC_MESSAGE, d->next_msg_id++, iov, m->body_len ? 2 : 1, HOP_STORE_NOPOS,
                 0, &rec) == 0) {
        hop_drec_t *r = hop_malloc(sizeof *r);
        *r = rec;
        hop_map_put(q->stored, &e->seq, sizeof e->seq, r);
        d->wrote = true;
    } else
        d->write_failed = true;
    hop_enc_fini(&enc);
}

void
hop_durable_forget(hop_broker_t *self, hop_queue_t *q, hop_entry_t *e)
{
    hop_durable_t *d = self->durable;
    if (!d || !q || !q->stored)
        return;
    hop_drec_t *r = hop_map_get(q->stored, &e->seq, sizeof e->seq);
    if (!r)
        return;
    hop_map_remove(q->stored, &e->seq, sizeof e->seq);
    if (r->upd_pos)
        hop_store_release(d->store, r->upd_pos, r->upd_size);
    if (!d->replaying)
        s_append_enc(self, HOP_REC_ACK, q->sid, NULL, r->pos, r->size, NULL);
    free(r);
}

void
hop_durable_update(hop_broker_t *self, hop_queue_t *q, hop_entry_t *e)
{
    hop_durable_t *d = self->durable;
    if (!d || d->replaying || !q->stored)
        return;
    hop_drec_t *r = hop_map_get(q->stored, &e->seq, sizeof e->seq);
    if (!r)
        return;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_NACK);
    hop_enc_uint(&enc, "tag", r->pos); // the message record this updates
    hop_enc_uint(&enc, "count", e->deliveries);
    if (e->delayed)
        hop_enc_uint(&enc, "delay", hop_wall_ms() + (e->at > self->now ? e->at - self->now : 0));
    hop_drec_t rec;
    if (s_append_enc(self, HOP_REC_UPDATE, q->sid, &enc, HOP_STORE_NOPOS, 0, &rec) == 0) {
        if (r->upd_pos)
            hop_store_release(d->store, r->upd_pos, r->upd_size);
        r->upd_pos = rec.pos;
        r->upd_size = rec.size;
    }
    hop_enc_fini(&enc);
}

// Confirms ---------------------------------------------------------------------------------

bool
hop_durable_publish_begin(hop_broker_t *self)
{
    if (self->durable)
        self->durable->wrote = self->durable->write_failed = false;
    return self->durable != NULL;
}

const char *
hop_durable_write_failed(const hop_broker_t *self)
{
    return self->durable && self->durable->write_failed ? self->durable->error : NULL;
}

// Queues a confirm or reply of conn until what was appended so far is durable.
static void
s_wait(hop_durable_t *d, hop_conn_t *conn, uint64_t seq, uint8_t *reply, size_t reply_len)
{
    if (d->waits_len == d->waits_cap) {
        size_t cap = d->waits_cap ? d->waits_cap * 2 : 256;
        hop_dwait_t *w = hop_malloc(cap * sizeof *w);
        for (size_t i = 0; i < d->waits_len; i++)
            w[i] = d->waits[(d->waits_head + i) % d->waits_cap];
        free(d->waits);
        d->waits = w;
        d->waits_cap = cap;
        d->waits_head = 0;
    }
    d->waits[(d->waits_head + d->waits_len++) % d->waits_cap] = (hop_dwait_t){
        .conn = conn, .seq = seq, .end = d->last_end, .reply = reply, .reply_len = reply_len};
    conn->confirms_waiting++;
}

bool
hop_durable_confirm(hop_broker_t *self, hop_conn_t *conn, uint64_t seq)
{
    hop_durable_t *d = self->durable;
    if (!d || (!d->wrote && conn->confirms_waiting == 0))
        return false;
    s_wait(d, conn, seq, NULL, 0);
    return true;
}

void
hop_durable_request_begin(hop_broker_t *self, hop_conn_t *conn, hop_cmd_t cmd)
{
    hop_durable_t *d = self->durable;
    if (!d)
        return;
    d->request_conn = cmd == HOP_CMD_HEARTBEAT ? NULL : conn;
    d->request_wrote = false;
}

bool
hop_durable_hold_reply(hop_broker_t *self, hop_conn_t *conn, const void *header, size_t size)
{
    hop_durable_t *d = self->durable;
    if (!d || !d->request_wrote || conn != d->request_conn || d->replaying)
        return false;
    uint8_t *copy = hop_malloc(size);
    memcpy(copy, header, size);
    s_wait(d, conn, 0, copy, size);
    return true;
}

void
hop_durable_forget_conn(hop_broker_t *self, hop_conn_t *conn)
{
    hop_durable_t *d = self->durable;
    for (size_t i = 0; d && conn->confirms_waiting && i < d->waits_len; i++) {
        hop_dwait_t *w = &d->waits[(d->waits_head + i) % d->waits_cap];
        if (w->conn == conn) {
            w->conn = NULL;
            conn->confirms_waiting--;
        }
    }
}

int
hop_durable_fd(const hop_broker_t *self)
{
    return self->durable ? hop_store_fd(self->durable->store) : -1;
}

void
hop_durable_progress(hop_broker_t *self)
{
    hop_durable_t *d = self->durable;
    if (!d)
        return;
    if (d->dirty) {
        hop_store_commit(d->store);
        d->dirty = false;
    }
    int rc = hop_store_poll(d->store);
    if (rc)
        snprintf(d->error, sizeof d->error, "%s", hop_store_strerror(rc));
    hop_store_pos_t durable = hop_store_durable(d->store);
    while (d->waits_len) {
        hop_dwait_t *w = &d->waits[d->waits_head];
        if (w->end > durable)
            break;
        if (w->conn) {
            w->conn->confirms_waiting--;
            if (w->reply)
                hop_broker_send_held(self, w->conn, w->reply, w->reply_len);
            else
                hop_deliver_confirm_ok(self, w->conn, w->seq);
        }
        free(w->reply);
        w->reply = NULL;
        d->waits_head = (d->waits_head + 1) % d->waits_cap;
        d->waits_len--;
    }
}

int
hop_durable_error(const hop_broker_t *self)
{
    return self->durable ? hop_store_error(self->durable->store) : 0;
}

void
hop_durable_status(hop_broker_t *self, hop_enc_t *enc)
{
    hop_durable_t *d = self->durable;
    if (!d)
        return;
    hop_store_stats_t st;
    hop_store_stats(d->store, &st);
    hop_enc_cstr(enc, "fsync", hop_store_fsync_name(self->config.fsync));
    if (self->config.fsync == HOP_FSYNC_EVERY)
        hop_enc_uint(enc, "fsync_ms", self->config.fsync_ms);
    hop_enc_uint(enc, "disk_bytes", st.disk_bytes);
    hop_enc_uint(enc, "disk_live_bytes", st.live_bytes);
    hop_enc_uint(enc, "segments", st.segments);
    hop_enc_uint(enc, "fsyncs", st.fsyncs);
    hop_enc_uint(enc, "last_fsync_us", st.last_fsync_us);
    hop_enc_uint(enc, "max_fsync_us", st.max_fsync_us);
    hop_enc_uint(enc, "confirms_waiting_for_disk", d->waits_len);
    hop_enc_uint(enc, "recovered_messages", d->recovered);
    // Larger than RAM (bus/paging.c): the window, and spilled messages written out / read back.
    uint32_t window = self->config.queue_window;
    hop_enc_uint(enc, "queue_window", window == UINT32_MAX ? 0 : window ? window : 4096);
    hop_enc_uint(enc, "paged_out", d->written_out);
    hop_enc_uint(enc, "paged_in", d->read_back);
    hop_enc_uint(enc, "page_errors", d->unreadable);
    hop_enc_cstr(enc, "store_error", st.error ? d->error : "");
}

bool
hop_durable_fsync_histogram(hop_broker_t *self, hop_histogram_snapshot_t *snap)
{
    if (!self->durable)
        return false;
    hop_store_fsync_histogram(self->durable->store, snap);
    return true;
}

int
hop_durable_open(hop_broker_t *self, char *err, size_t err_size)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", self->data_dir);
    hop_store_options_t opts = {.fsync = self->config.fsync,
                                .fsync_ms = self->config.fsync_ms,
                                .segment_size = self->config.segment_size};
    // Any message the broker accepts fits in one record (its header is at most 64 KiB).
    if (self->config.max_message + 65536 > (64u << 20)) {
        opts.max_record = (uint32_t)(self->config.max_message + 65536);
        opts.max_pending = 2 * (uint64_t)opts.max_record; // room for one while one is written
    }
    int rc = 0;
    char why[256] = "";
    hop_store_t *store = hop_store_new(dir, &opts, &rc, why, sizeof why);
    if (!store) {
        snprintf(err, err_size, "cannot open the message store in %s: %s", dir,
                 why[0] ? why : hop_store_strerror(rc));
        return -1;
    }
    // Testing only, not a setting (tests/integration/test_durability_disk.c): a full disk
    // simulated at this many bytes of segment files, where a test cannot mount a small one.
    const char *limit = getenv("HOPPER_TEST_DISK_LIMIT");
    if (limit && *limit) {
        hop_store_set_faults(store, &(hop_store_faults_t){.disk_limit = strtoull(limit, NULL, 10)});
        hop_log(HOP_WARN, "durable", "HOPPER_TEST_DISK_LIMIT: a full disk at %s bytes (tests only)",
                limit);
    }
    hop_durable_t *d = hop_calloc(1, sizeof *d);
    d->store = store;
    d->binds = hop_map_new();
    d->replayed = hop_map_new();
    d->next_id = 1;
    d->next_msg_id = 1;
    d->replay = hop_conn_new("replay", 6, 0, self->now);
    d->replay->dead = true; // replies to replayed requests go nowhere
    self->durable = d;
    d->replaying = true;
    hop_store_replay_t report;
    rc = hop_durable_replay(self, &report);
    d->replaying = false;
    hop_map_destroy(&d->replayed);
    if (rc == 0)
        hop_paging_replay_end(self);
    if (rc) {
        snprintf(err, err_size, "cannot replay the message store in %s: %s", dir,
                 hop_store_strerror(rc));
        return -1;
    }
    if (report.cut_bytes)
        hop_log(HOP_WARN, "durable",
                "the log ended in a torn or corrupt record: cut %llu bytes at segment %u offset "
                "%u (what was written there was never confirmed)",
                (unsigned long long)report.cut_bytes, HOP_STORE_POS_SEG(report.cut_at),
                HOP_STORE_POS_OFF(report.cut_at));
    hop_log(HOP_INFO, "durable",
            "replayed records=%llu segments=%u messages=%llu dropped=%llu corrupt=%llu "
            "elapsed_ms=%llu",
            (unsigned long long)report.records, report.segments, (unsigned long long)d->recovered,
            (unsigned long long)d->dropped_on_replay, (unsigned long long)report.corrupt,
            (unsigned long long)report.elapsed_ms);
    // Ids go on above everything replayed, and above the wall clock, so that they are never
    // reused even after the records that held the largest ones were reclaimed.
    uint64_t floor = hop_wall_ms() << 8;
    if (d->next_id < floor)
        d->next_id = floor;
    if (d->next_msg_id < floor)
        d->next_msg_id = floor;
    return 0;
}

void
hop_durable_close(hop_broker_t *self)
{
    hop_durable_t *d = self->durable;
    if (!d)
        return;
    if (d->dirty)
        hop_store_commit(d->store);
    hop_store_destroy(&d->store);
    // The queues forget their records: nothing more is written.
    size_t qc = 0;
    void *qv;
    while (hop_map_next(self->queues, &qc, NULL, NULL, &qv)) {
        hop_queue_t *q = qv;
        if (!q->stored)
            continue;
        size_t cursor = 0;
        void *value;
        while (hop_map_next(q->stored, &cursor, NULL, NULL, &value))
            free(value);
        hop_map_destroy((hop_map_t **)&q->stored);
    }
    size_t cursor = 0;
    void *value;
    while (hop_map_next(d->binds, &cursor, NULL, NULL, &value))
        free(value);
    hop_map_destroy(&d->binds);
    if (d->replayed)
        hop_map_destroy(&d->replayed);
    d->replay->dead = true;
    hop_conn_destroy(&d->replay);
    for (size_t i = 0; i < d->waits_len; i++)
        free(d->waits[(d->waits_head + i) % d->waits_cap].reply);
    free(d->waits);
    free(d);
    self->durable = NULL;
}
