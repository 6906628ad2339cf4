// bus/spill.c - a durable queue's spilled tail, as a ring of fixed-size chunks of slots.
#include "spill.h"
#include "util.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_SLOTS 4096 // 96 KiB per chunk: a 10M-message tail is 2,442 chunks

struct hop_spill {
    hop_slot_t **ring; // chunks, ring[first] holds slot begin; ring_cap is a power of two
    size_t ring_cap;   // room in ring
    size_t first;      // ring index of the chunk holding slot `begin`
    size_t chunks;     // chunks in use from first on
    uint64_t begin;    // number of the first slot held
    uint64_t end;      // number of the next slot pushed
    size_t live;       // slots that are not holes
    size_t in_memory;  // of them, slots holding an entry
    hop_slot_t *spare; // one free chunk kept back, so a tail at a chunk edge does not churn
    uint64_t seen;     // bus/paging.c's cursor
};

hop_spill_t *
hop_spill_new(void)
{
    hop_spill_t *self = hop_calloc(1, sizeof *self);
    self->ring_cap = 8;
    self->ring = hop_calloc(self->ring_cap, sizeof *self->ring);
    return self;
}

void
hop_spill_destroy(hop_spill_t **self_p)
{
    assert(self_p);
    hop_spill_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->chunks; i++)
        free(self->ring[(self->first + i) & (self->ring_cap - 1)]);
    free(self->ring);
    free(self->spare);
    free(self);
    *self_p = NULL;
}

size_t
hop_spill_size(const hop_spill_t *self)
{
    return self->live;
}

size_t
hop_spill_in_memory(const hop_spill_t *self)
{
    return self->in_memory;
}

uint64_t
hop_spill_begin(const hop_spill_t *self)
{
    return self->begin;
}

uint64_t
hop_spill_end(const hop_spill_t *self)
{
    return self->end;
}

hop_slot_t *
hop_spill_at(const hop_spill_t *self, uint64_t i)
{
    assert(self);
    assert(i >= self->begin && i < self->end);
    size_t chunk = (size_t)(i / CHUNK_SLOTS - self->begin / CHUNK_SLOTS);
    return &self->ring[(self->first + chunk) & (self->ring_cap - 1)][i % CHUNK_SLOTS];
}

// Room for slot `end`: a new chunk at a chunk edge, and a larger ring when it is full.
static hop_slot_t *
s_grow(hop_spill_t *self)
{
    if (self->end % CHUNK_SLOTS == 0) {
        if (self->chunks == self->ring_cap) {
            size_t cap = self->ring_cap * 2;
            hop_slot_t **ring = hop_calloc(cap, sizeof *ring);
            for (size_t i = 0; i < self->chunks; i++)
                ring[i] = self->ring[(self->first + i) & (self->ring_cap - 1)];
            free(self->ring);
            self->ring = ring;
            self->ring_cap = cap;
            self->first = 0;
        }
        hop_slot_t *chunk = self->spare;
        self->spare = NULL;
        if (!chunk)
            chunk = hop_malloc(CHUNK_SLOTS * sizeof *chunk);
        self->ring[(self->first + self->chunks) & (self->ring_cap - 1)] = chunk;
        self->chunks++;
    }
    uint64_t i = self->end++;
    return hop_spill_at(self, i);
}

hop_slot_t *
hop_spill_push_disk(hop_spill_t *self, uint64_t seq, uint64_t pos, uint32_t size, uint32_t flags)
{
    assert(self);
    assert(size > 0);
    assert(self->begin == self->end || hop_spill_at(self, self->end - 1)->seq < seq);
    hop_slot_t *slot = s_grow(self);
    slot->seq = seq;
    slot->pos = pos;
    slot->size = size;
    slot->flags = flags & ~HOP_SLOT_HOLE;
    self->live++;
    return slot;
}

hop_slot_t *
hop_spill_push_entry(hop_spill_t *self, uint64_t seq, hop_entry_t *entry, uint32_t body_len)
{
    assert(entry);
    hop_slot_t *slot = hop_spill_push_disk(self, seq, 0, 1, body_len & HOP_SLOT_LEN_MASK);
    slot->size = 0;
    slot->entry = entry;
    self->in_memory++;
    return slot;
}

void
hop_spill_pop(hop_spill_t *self)
{
    assert(self);
    assert(self->begin < self->end);
    hop_slot_t *slot = hop_spill_at(self, self->begin);
    if (!hop_slot_hole(slot)) {
        self->live--;
        if (!hop_slot_on_disk(slot))
            self->in_memory--;
    }
    self->begin++;
    // Past a chunk's last slot: the chunk is done with (the tail has moved on, or the spill is
    // empty and the next push starts a new chunk).
    if (self->begin % CHUNK_SLOTS == 0) {
        hop_slot_t *chunk = self->ring[self->first];
        if (!self->spare)
            self->spare = chunk;
        else
            free(chunk);
        self->first = (self->first + 1) & (self->ring_cap - 1);
        self->chunks--;
    }
}

hop_slot_t *
hop_spill_front(hop_spill_t *self)
{
    assert(self);
    while (self->begin < self->end) {
        hop_slot_t *slot = hop_spill_at(self, self->begin);
        if (!hop_slot_hole(slot))
            return slot;
        hop_spill_pop(self);
    }
    return NULL;
}

void
hop_spill_hole(hop_spill_t *self, hop_slot_t *slot)
{
    assert(self && slot);
    assert(!hop_slot_hole(slot));
    self->live--;
    if (!hop_slot_on_disk(slot)) {
        self->in_memory--;
        slot->entry = NULL;
    }
    slot->flags |= HOP_SLOT_HOLE;
}

void
hop_spill_set_entry(hop_spill_t *self, hop_slot_t *slot, hop_entry_t *entry)
{
    assert(self && slot && entry);
    assert(hop_slot_on_disk(slot) && !hop_slot_hole(slot));
    slot->size = 0;
    slot->entry = entry;
    self->in_memory++;
}

void
hop_spill_set_disk(hop_spill_t *self, hop_slot_t *slot, uint64_t pos, uint32_t size)
{
    assert(self && slot && size > 0);
    assert(!hop_slot_on_disk(slot) && !hop_slot_hole(slot));
    slot->pos = pos;
    slot->size = size;
    self->in_memory--;
}

// Binary search over [begin, end) for the first slot whose key is >= want.
static hop_slot_t *
s_search(const hop_spill_t *self, uint64_t want, bool by_pos)
{
    uint64_t lo = self->begin, hi = self->end;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const hop_slot_t *slot = hop_spill_at(self, mid);
        uint64_t key = by_pos ? slot->pos : slot->seq;
        if (key < want)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == self->end)
        return NULL;
    hop_slot_t *slot = hop_spill_at(self, lo);
    return (by_pos ? slot->pos : slot->seq) == want ? slot : NULL;
}

hop_slot_t *
hop_spill_find_seq(const hop_spill_t *self, uint64_t seq)
{
    assert(self);
    return s_search(self, seq, false);
}

hop_slot_t *
hop_spill_find_pos(const hop_spill_t *self, uint64_t pos)
{
    assert(self);
    hop_slot_t *slot = s_search(self, pos, true);
    return slot && hop_slot_on_disk(slot) ? slot : NULL;
}

uint64_t
hop_spill_seen(const hop_spill_t *self)
{
    return self->seen;
}

void
hop_spill_set_seen(hop_spill_t *self, uint64_t seen)
{
    self->seen = seen;
}

size_t
hop_spill_memory(const hop_spill_t *self)
{
    return sizeof *self + self->ring_cap * sizeof *self->ring +
           (self->chunks + (self->spare != NULL)) * CHUNK_SLOTS * sizeof(hop_slot_t);
}
