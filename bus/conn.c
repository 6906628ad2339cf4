// bus/conn.c - connection records and their unacked-tag rings.
#include "conn.h"
#include "util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

hop_conn_t *
hop_conn_new(const void *id, size_t id_len, uint64_t seq, uint64_t now)
{
    assert(id && id_len <= HOP_ID_MAX);
    hop_conn_t *self = hop_calloc(1, sizeof *self);
    memcpy(self->id, id, id_len);
    self->id_len = id_len;
    snprintf(self->label, sizeof self->label, "conn-%llu", (unsigned long long)seq);
    self->connected_at = self->last_recv = self->last_send = now;
    self->next_tag = self->ring_base = 1;
    self->next_ctag = 1;
    msgpack_sbuffer_init(&self->out);
    return self;
}

void
hop_conn_destroy(hop_conn_t **self_p)
{
    assert(self_p);
    hop_conn_t *self = *self_p;
    if (!self)
        return;
    assert(self->unacked == 0 && self->consumer_count == 0);
    free(self->ring);
    free(self->name);
    msgpack_sbuffer_destroy(&self->out);
    free(self->out_entries);
    free(self->revoked);
    while (self->backlog_head) {
        hop_backlog_t *b = self->backlog_head;
        self->backlog_head = b->next;
        zmq_msg_close(&b->header);
        zmq_msg_close(&b->body);
        free(b);
    }
    free(self);
    *self_p = NULL;
}

static size_t
s_slot(const hop_conn_t *self, uint64_t tag)
{
    return (self->ring_head + (size_t)(tag - self->ring_base)) & (self->ring_cap - 1);
}

// Makes room for one more tag in the ring: grows by doubling and unrolls the ring so that
// base sits at slot 0 again.
static void
s_reserve(hop_conn_t *self)
{
    size_t span = (size_t)(self->next_tag - self->ring_base);
    if (span < self->ring_cap)
        return;
    size_t cap = self->ring_cap ? self->ring_cap * 2 : 64;
    hop_entry_t **ring = hop_calloc(cap, sizeof *ring);
    for (size_t i = 0; i < span; i++)
        ring[i] = self->ring[(self->ring_head + i) & (self->ring_cap - 1)];
    free(self->ring);
    self->ring = ring;
    self->ring_cap = cap;
    self->ring_head = 0;
}

uint64_t
hop_conn_track(hop_conn_t *self, hop_entry_t *entry)
{
    assert(self);
    assert(entry);
    s_reserve(self);
    uint64_t tag = self->next_tag++;
    self->ring[s_slot(self, tag)] = entry;
    entry->tag = tag;
    self->unacked++;
    return tag;
}

void
hop_conn_skip_tag(hop_conn_t *self)
{
    assert(self);
    if (self->unacked)
        s_reserve(self);
    self->next_tag++;
    // With nothing unacked the ring can restart at the new tag; otherwise the hole is passed
    // over when the older tags are settled.
    if (self->unacked == 0) {
        self->ring_base = self->next_tag;
        self->ring_head = 0;
    }
}

hop_entry_t *
hop_conn_lookup(const hop_conn_t *self, uint64_t tag)
{
    assert(self);
    if (tag < self->ring_base || tag >= self->next_tag)
        return NULL;
    return self->ring[s_slot(self, tag)];
}

void
hop_conn_untrack(hop_conn_t *self, uint64_t tag)
{
    assert(self);
    assert(tag >= self->ring_base && tag < self->next_tag);
    size_t slot = s_slot(self, tag);
    assert(self->ring[slot]);
    self->ring[slot] = NULL;
    self->unacked--;
    // Advance the base past settled tags so the ring only spans live ones.
    while (self->ring_base < self->next_tag && !self->ring[self->ring_head]) {
        self->ring_base++;
        self->ring_head = (self->ring_head + 1) & (self->ring_cap - 1);
    }
}

uint64_t
hop_conn_first_tag(const hop_conn_t *self)
{
    return self->ring_base;
}

hop_consumer_t *
hop_conn_find_consumer(const hop_conn_t *self, const char *tag, size_t len)
{
    for (hop_consumer_t *c = self->consumers; c; c = c->conn_next)
        if (strlen(c->tag) == len && memcmp(c->tag, tag, len) == 0)
            return c;
    return NULL;
}

void
hop_conn_add_consumer(hop_conn_t *self, hop_consumer_t *consumer)
{
    consumer->conn = self;
    consumer->conn_prev = NULL;
    consumer->conn_next = self->consumers;
    if (self->consumers)
        self->consumers->conn_prev = consumer;
    self->consumers = consumer;
    self->consumer_count++;
}

void
hop_conn_remove_consumer(hop_conn_t *self, hop_consumer_t *consumer)
{
    if (consumer->conn_prev)
        consumer->conn_prev->conn_next = consumer->conn_next;
    else
        self->consumers = consumer->conn_next;
    if (consumer->conn_next)
        consumer->conn_next->conn_prev = consumer->conn_prev;
    consumer->conn_prev = consumer->conn_next = NULL;
    self->consumer_count--;
}

void
hop_conn_revoke(hop_conn_t *self, uint64_t tag)
{
    if (!self->revoked)
        self->revoked = hop_calloc(HOP_REVOKED_MAX, sizeof *self->revoked);
    self->revoked[self->revoked_next++ % HOP_REVOKED_MAX] = tag;
}

bool
hop_conn_was_revoked(const hop_conn_t *self, uint64_t tag)
{
    for (size_t i = 0; self->revoked && tag && i < HOP_REVOKED_MAX; i++)
        if (self->revoked[i] == tag)
            return true;
    return false;
}
