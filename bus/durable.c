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
//   MESSAGE      key: message id    {id: queue id, exchange, key, props?, priority?} + body
//   ACK          key: message id    kills MESSAGE (acked, dropped, expired, dead-lettered away)
// Ids are never reused (they start above the largest replayed), so a record left by a deleted
// queue can never be mistaken for one of a later queue of the same name.
//
// Confirms of persistent messages wait until the store says their records are durable (the
// --fsync policy); the confirms that follow them on the same connection wait behind them, so
// that a "multiple" confirm never covers a message that is not yet on disk.
#include "broker_internal.h"
#include "store.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Where a record is. For a message record, also its latest UPDATE record (delivery count and
// delay), released when a newer one is written or the message goes.
typedef struct {
    hop_store_pos_t pos;
    uint32_t size;
    hop_store_pos_t upd_pos;
    uint32_t upd_size;
} s_rec_t;

// A confirm waiting for the store.
typedef struct {
    hop_conn_t *conn; // NULL once the connection closed
    uint64_t seq;
    hop_store_pos_t end; // durable once the store's durable position reaches this
} s_wait_t;

struct hop_durable {
    hop_store_t *store;
    hop_conn_t *replay; // the pseudo-connection replayed declares run as (dead: no replies)
    bool replaying;
    bool dirty;               // appended since the last commit
    bool wrote;               // the publish being handled wrote a message record
    hop_store_pos_t last_end; // end of the last record appended
    uint64_t next_id;         // exchange and queue ids
    uint64_t next_msg_id;
    hop_map_t *binds;    // "queue id, exchange id, key" -> s_rec_t
    hop_map_t *replayed; // during replay: message record position -> hop_entry_t
    s_wait_t *waits;     // ring of confirms waiting for the store
    size_t waits_head, waits_len, waits_cap;
    uint64_t recovered, dropped_on_replay;
    char error[256]; // the store's last error, for status and logs
};

static uint64_t
s_new_id(hop_durable_t *d)
{
    return d->next_id++;
}

// Appends a record; on failure logs, remembers why and returns -1.
static int
s_append(hop_broker_t *self, uint8_t type, uint64_t key, const struct iovec *iov, int iovcnt,
         hop_store_pos_t kills, uint32_t kills_size, s_rec_t *rec)
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
        *rec = (s_rec_t){.pos = pos, .size = size};
    d->last_end = pos + size;
    d->dirty = true;
    return 0;
}

static int
s_append_enc(hop_broker_t *self, uint8_t type, uint64_t key, hop_enc_t *enc, hop_store_pos_t kills,
             uint32_t kills_size, s_rec_t *rec)
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
        s_rec_t rec;
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

// The binding's key in d->binds.
static size_t
s_bind_key(char *out, size_t cap, uint64_t qid, uint64_t xid, const char *name, size_t name_len,
           const char *key, size_t key_len)
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
    size_t klen = s_bind_key(k, sizeof k, q->sid, x->sid, x->name, x->name_len, key, key_len);
    s_rec_t *have = hop_map_get(d->binds, k, klen);
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
        s_rec_t rec;
        if (s_append_enc(self, HOP_REC_BIND, q->sid, &enc, HOP_STORE_NOPOS, 0, &rec) == 0) {
            s_rec_t *r = hop_malloc(sizeof *r);
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
                s_rec_t *r = value;
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

void
hop_durable_queue(hop_broker_t *self, hop_queue_t *q, bool declared)
{
    hop_durable_t *d = self->durable;
    if (!d || (declared && d->replaying))
        return;
    if (declared) {
        if (!q->durable || q->exclusive)
            return; // an exclusive queue dies with its connection: nothing to keep
        hop_enc_t enc;
        hop_enc_init(&enc);
        hop_enc_begin(&enc, HOP_CMD_QUEUE_DECLARE);
        hop_enc_str(&enc, "queue", q->name, q->name_len);
        hop_enc_bool(&enc, "durable", true);
        hop_enc_bool(&enc, "auto_delete", q->auto_delete);
        hop_inspect_write_args(&enc, &q->args);
        q->sid = s_new_id(d);
        q->stored = hop_map_new();
        s_rec_t rec;
        if (s_append_enc(self, HOP_REC_QUEUE, q->sid, &enc, HOP_STORE_NOPOS, 0, &rec) == 0) {
            q->spos = rec.pos;
            q->ssize = rec.size;
        }
        hop_enc_fini(&enc);
        return;
    }
    if (!q->sid)
        return;
    // Deleted: its messages and bindings die with it (released: a replay finds no queue for
    // them), its declare is killed.
    s_release_binds(self, q->sid, 0);
    size_t cursor = 0;
    void *value;
    while (hop_map_next(q->stored, &cursor, NULL, NULL, &value)) {
        s_rec_t *r = value;
        hop_store_release(d->store, r->pos, r->size);
        free(r);
    }
    hop_map_destroy((hop_map_t **)&q->stored);
    if (q->spos && !d->replaying)
        s_append_enc(self, HOP_REC_QUEUE_DEL, q->sid, NULL, q->spos, q->ssize, NULL);
    q->sid = 0;
    q->spos = 0;
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
    if (e->expires_at != UINT64_MAX)
        hop_enc_uint(&enc, "expires", hop_wall_ms() + (e->expires_at - self->now));
    uint32_t death_len;
    const uint8_t *death = hop_msg_death(m, &death_len);
    if (death)
        hop_enc_raw(&enc, "death", death, death_len);
    size_t hsize;
    const void *header = hop_enc_end(&enc, &hsize);
    struct iovec iov[2] = {{(void *)header, hsize}, {(void *)m->body, m->body_len}};
    s_rec_t rec;
    if (s_append(self, HOP_REC_MESSAGE, d->next_msg_id++, iov, m->body_len ? 2 : 1, HOP_STORE_NOPOS,
                 0, &rec) == 0) {
        s_rec_t *r = hop_malloc(sizeof *r);
        *r = rec;
        hop_map_put(q->stored, &e->seq, sizeof e->seq, r);
        d->wrote = true;
    }
    hop_enc_fini(&enc);
}

void
hop_durable_forget(hop_broker_t *self, hop_queue_t *q, hop_entry_t *e)
{
    hop_durable_t *d = self->durable;
    if (!d || !q || !q->stored)
        return;
    s_rec_t *r = hop_map_get(q->stored, &e->seq, sizeof e->seq);
    if (!r)
        return;
    hop_map_remove(q->stored, &e->seq, sizeof e->seq);
    if (r->upd_pos)
        hop_store_release(d->store, r->upd_pos, r->upd_size);
    if (!d->replaying)
        s_append_enc(self, HOP_REC_ACK, 0, NULL, r->pos, r->size, NULL);
    free(r);
}

void
hop_durable_update(hop_broker_t *self, hop_queue_t *q, hop_entry_t *e)
{
    hop_durable_t *d = self->durable;
    if (!d || d->replaying || !q->stored)
        return;
    s_rec_t *r = hop_map_get(q->stored, &e->seq, sizeof e->seq);
    if (!r)
        return;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_NACK);
    hop_enc_uint(&enc, "tag", r->pos); // the message record this updates
    hop_enc_uint(&enc, "count", e->deliveries);
    if (e->delayed)
        hop_enc_uint(&enc, "delay", hop_wall_ms() + (e->at > self->now ? e->at - self->now : 0));
    s_rec_t rec;
    if (s_append_enc(self, HOP_REC_UPDATE, 0, &enc, HOP_STORE_NOPOS, 0, &rec) == 0) {
        if (r->upd_pos)
            hop_store_release(d->store, r->upd_pos, r->upd_size);
        r->upd_pos = rec.pos;
        r->upd_size = rec.size;
    }
    hop_enc_fini(&enc);
}

void
hop_durable_forget_list(hop_broker_t *self, hop_queue_t *q, const hop_list_t *list)
{
    if (!self->durable || !q->stored)
        return;
    for (hop_entry_t *e = list->head; e; e = e->next)
        hop_durable_forget(self, q, e);
}

// Confirms ---------------------------------------------------------------------------------

bool
hop_durable_publish_begin(hop_broker_t *self)
{
    if (self->durable)
        self->durable->wrote = false;
    return self->durable != NULL;
}

bool
hop_durable_confirm(hop_broker_t *self, hop_conn_t *conn, uint64_t seq)
{
    hop_durable_t *d = self->durable;
    if (!d || (!d->wrote && conn->confirms_waiting == 0))
        return false;
    if (d->waits_len == d->waits_cap) {
        size_t cap = d->waits_cap ? d->waits_cap * 2 : 256;
        s_wait_t *w = hop_malloc(cap * sizeof *w);
        for (size_t i = 0; i < d->waits_len; i++)
            w[i] = d->waits[(d->waits_head + i) % d->waits_cap];
        free(d->waits);
        d->waits = w;
        d->waits_cap = cap;
        d->waits_head = 0;
    }
    d->waits[(d->waits_head + d->waits_len++) % d->waits_cap] =
        (s_wait_t){.conn = conn, .seq = seq, .end = d->last_end};
    conn->confirms_waiting++;
    return true;
}

void
hop_durable_forget_conn(hop_broker_t *self, hop_conn_t *conn)
{
    hop_durable_t *d = self->durable;
    for (size_t i = 0; d && conn->confirms_waiting && i < d->waits_len; i++) {
        s_wait_t *w = &d->waits[(d->waits_head + i) % d->waits_cap];
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
        s_wait_t *w = &d->waits[d->waits_head];
        if (w->end > durable)
            break;
        if (w->conn) {
            w->conn->confirms_waiting--;
            hop_deliver_confirm_ok(self, w->conn, w->seq);
        }
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

// Replay -----------------------------------------------------------------------------------

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
        hop_topology_queue_declare(self, d->replay, &w);
        hop_queue_t *q = hop_topology_queue(self, &w.queue);
        if (!q)
            return -1;
        q->sid = rec->key;
        q->spos = rec->pos;
        q->ssize = rec->size;
        if (!q->stored)
            q->stored = hop_map_new();
    } else {
        // A binding: only between the very queue and exchange it was made for.
        hop_queue_t *q = hop_topology_queue(self, &w.queue);
        hop_xchg_t *x = hop_topology_exchange(self, &w.exchange);
        if (!q || !x || q->sid != rec->key || x->sid != w.id)
            return -1;
        char k[HOP_NAME_MAX * 2 + 64];
        size_t klen = s_bind_key(k, sizeof k, q->sid, x->sid, x->name, x->name_len,
                                 w.key.ptr ? w.key.ptr : "", w.key.len);
        s_rec_t *have = hop_map_get(d->binds, k, klen);
        if (have) {
            hop_map_remove(d->binds, k, klen);
            free(have);
        }
        hop_topology_bind(self, d->replay, &w, rec->type == HOP_REC_BIND);
        if (rec->type == HOP_REC_BIND) {
            s_rec_t *r = hop_malloc(sizeof *r);
            r->pos = rec->pos;
            r->size = rec->size;
            hop_map_put(d->binds, k, klen, r);
        }
    }
    return 0;
}

static hop_queue_t *
s_queue_by_id(hop_broker_t *self, uint64_t id)
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
    hop_mp_t mp;
    hop_mp_init(&mp, rec->payload, rec->len);
    if (hop_mp_skip(&mp))
        return -1;
    size_t hsize = (size_t)(mp.p - (const uint8_t *)rec->payload);
    hop_wire_t w;
    if (hop_wire_decode(&w, rec->payload, hsize, NULL, 0))
        return -1;
    hop_queue_t *q = *last_q && (*last_q)->sid == w.id ? *last_q : s_queue_by_id(self, w.id);
    if (!q)
        return -1;
    *last_q = q;
    hop_msg_t *msg = hop_msg_new();
    hop_frames_t *frames = hop_frames_new();
    zmq_msg_init_size(&frames->header, rec->len);
    uint8_t *base = zmq_msg_data(&frames->header);
    memcpy(base, rec->payload, rec->len);
    hop_msg_attach(msg, frames);
    const uint8_t *old = rec->payload;
    msg->exchange = w.exchange.ptr ? (const char *)base + (w.exchange.ptr - (const char *)old) : "";
    msg->exchange_len = w.exchange.len;
    msg->key = w.key.ptr ? (const char *)base + (w.key.ptr - (const char *)old) : "";
    msg->key_len = w.key.len;
    if (w.props.ptr) {
        msg->props = base + (w.props.ptr - old);
        msg->props_len = w.props.len;
    }
    msg->body_len = (uint32_t)(rec->len - hsize);
    msg->body = msg->body_len ? base + hsize : NULL;
    msg->priority = (uint8_t)(w.priority > 255 ? 255 : w.priority);
    msg->persistent = true;
    if (w.death.ptr) {
        // A dead letter: its death records live in bytes of its own, as deadletter.c lays
        // them out ([u32 death_len][exchange][key][death]).
        uint32_t dl = w.death.len;
        uint8_t *own = hop_malloc(sizeof dl + msg->exchange_len + msg->key_len + dl);
        memcpy(own, &dl, sizeof dl);
        memcpy(own + sizeof dl, msg->exchange, msg->exchange_len);
        memcpy(own + sizeof dl + msg->exchange_len, msg->key, msg->key_len);
        memcpy(own + sizeof dl + msg->exchange_len + msg->key_len, w.death.ptr, dl);
        msg->own = own;
        msg->exchange = (const char *)own + sizeof dl;
        msg->key = msg->exchange + msg->exchange_len;
    }
    uint64_t ttl = HOP_TTL_NONE;
    if (w.has & HOP_F_EXPIRES) {
        uint64_t wall = hop_wall_ms();
        ttl = w.expires > wall ? w.expires - wall : 0;
    }
    msg->refs++; // held while pushing
    hop_entry_t *e = hop_queue_push(q, msg, self->now, ttl);
    e->redelivered = true;
    hop_msg_release(msg);
    s_rec_t *r = hop_calloc(1, sizeof *r);
    r->pos = rec->pos;
    r->size = rec->size;
    hop_map_put(q->stored, &e->seq, sizeof e->seq, r);
    hop_map_put(self->durable->replayed, &rec->pos, sizeof rec->pos, e);
    self->durable->recovered++;
    return 0;
}

// An ACK in the log: the message it kills leaves its queue.
static void
s_replay_ack(hop_broker_t *self, const hop_store_record_t *rec)
{
    hop_durable_t *d = self->durable;
    hop_entry_t *e = hop_map_get(d->replayed, &rec->kills, sizeof rec->kills);
    if (!e)
        return;
    hop_map_remove(d->replayed, &rec->kills, sizeof rec->kills);
    hop_queue_t *q = e->queue;
    s_rec_t *r = hop_map_get(q->stored, &e->seq, sizeof e->seq);
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
        return -1; // its message is gone: the update is dead too
    hop_queue_t *q = e->queue;
    s_rec_t *r = hop_map_get(q->stored, &e->seq, sizeof e->seq);
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
        hop_queue_t *q = s_queue_by_id(self, rec->key);
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
hop_durable_open(hop_broker_t *self, char *err, size_t err_size)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", self->data_dir);
    hop_store_options_t opts = {.fsync = self->config.fsync, .fsync_ms = self->config.fsync_ms};
    int rc = 0;
    char why[256] = "";
    hop_store_t *store = hop_store_new(dir, &opts, &rc, why, sizeof why);
    if (!store) {
        snprintf(err, err_size, "cannot open the message store in %s: %s", dir,
                 why[0] ? why : hop_store_strerror(rc));
        return -1;
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
    s_replay_t state = {.broker = self};
    hop_store_replay_t report;
    rc = hop_store_replay(store, s_replay_one, &state, &report);
    d->replaying = false;
    hop_map_destroy(&d->replayed);
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
    free(d->waits);
    free(d);
    self->durable = NULL;
}
