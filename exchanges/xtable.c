// exchanges/xtable.c - allocation, hashing and the open-addressing table behind every index.
#include "xtable.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// Smallest table worth allocating: one or two cache lines of slots.
#define S_MIN_CAPACITY 8

static void
s_out_of_memory(size_t size)
{
    fprintf(stderr, "hopper: out of memory allocating %zu bytes\n", size);
    abort();
}

void *
hop_xmalloc(size_t size)
{
    void *ptr = malloc(size ? size : 1);
    if (!ptr)
        s_out_of_memory(size);
    return ptr;
}

void *
hop_xcalloc(size_t count, size_t size)
{
    void *ptr = calloc(count ? count : 1, size ? size : 1);
    if (!ptr)
        s_out_of_memory(count * size);
    return ptr;
}

void *
hop_xrealloc_array(void *ptr, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        s_out_of_memory(SIZE_MAX);
    size_t bytes = count * size;
    void *grown = realloc(ptr, bytes ? bytes : 1);
    if (!grown)
        s_out_of_memory(bytes);
    return grown;
}

uint64_t
hop_xhash_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

void
hop_xseed_init(hop_xseed_t *seed, const void *salt)
{
    // Addresses of heap (salt), stack and static data each carry ASLR entropy; the clock separates
    // runs and exchanges created at the same address.
    static const char s_anchor = 0;
    struct timespec now = {0, 0};
    (void)timespec_get(&now, TIME_UTC);
    uint64_t when = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    uint64_t heap = (uint64_t)(uintptr_t)salt;
    uint64_t stack = (uint64_t)(uintptr_t)&now;
    uint64_t data = (uint64_t)(uintptr_t)&s_anchor;
    seed->k0 = hop_xhash_mix(heap ^ hop_xhash_mix(when));
    seed->k1 = hop_xhash_mix(stack ^ hop_xhash_mix(data + (uint64_t)clock() + when));
}

static uint64_t
s_rotl(uint64_t x, int bits)
{
    return (x << bits) | (x >> (64 - bits));
}

static void
s_sipround(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = s_rotl(v[1], 13);
    v[1] ^= v[0];
    v[0] = s_rotl(v[0], 32);
    v[2] += v[3];
    v[3] = s_rotl(v[3], 16);
    v[3] ^= v[2];
    v[0] += v[3];
    v[3] = s_rotl(v[3], 21);
    v[3] ^= v[0];
    v[2] += v[1];
    v[1] = s_rotl(v[1], 17);
    v[1] ^= v[2];
    v[2] = s_rotl(v[2], 32);
}

static uint64_t
s_load64(const unsigned char *p)
{
    // Byte by byte: keys are unaligned, and this gives the same hash on any endianness.
    uint64_t word = 0;
    for (int i = 7; i >= 0; i--)
        word = (word << 8) | p[i];
    return word;
}

uint64_t
hop_xhash_bytes(const hop_xseed_t *seed, const void *data, size_t len)
{
    assert(seed);
    assert(data || len == 0);
    const unsigned char *bytes = data;
    uint64_t v[4] = {seed->k0 ^ 0x736f6d6570736575ULL, seed->k1 ^ 0x646f72616e646f6dULL,
                     seed->k0 ^ 0x6c7967656e657261ULL, seed->k1 ^ 0x7465646279746573ULL};
    size_t whole = len & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = s_load64(bytes + i);
        v[3] ^= m;
        s_sipround(v);
        v[0] ^= m;
    }
    uint64_t last = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        last |= (uint64_t)bytes[whole + i] << (8 * i);
    v[3] ^= last;
    s_sipround(v);
    v[0] ^= last;
    v[2] ^= 0xff;
    s_sipround(v);
    s_sipround(v);
    s_sipround(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

void
hop_xtable_init(hop_xtable_t *self)
{
    assert(self);
    self->slots = NULL;
    self->mask = 0;
    self->size = 0;
}

void
hop_xtable_fini(hop_xtable_t *self)
{
    assert(self);
    free(self->slots);
    hop_xtable_init(self);
}

static size_t
s_capacity(const hop_xtable_t *self)
{
    return self->slots ? self->mask + 1 : 0;
}

static void
s_place(hop_xtable_t *self, hop_xslot_t slot)
{
    size_t i = slot.hash & self->mask;
    while (self->slots[i].item)
        i = (i + 1) & self->mask;
    self->slots[i] = slot;
}

static void
s_resize(hop_xtable_t *self, size_t capacity)
{
    hop_xslot_t *old = self->slots;
    size_t old_capacity = s_capacity(self);
    self->slots = hop_xcalloc(capacity, sizeof *self->slots);
    self->mask = capacity - 1;
    for (size_t i = 0; i < old_capacity; i++)
        if (old[i].item)
            s_place(self, old[i]);
    free(old);
}

void *
hop_xtable_find(const hop_xtable_t *self, uint64_t hash, hop_xtable_eq_fn *eq, const void *key)
{
    assert(self);
    assert(eq);
    if (self->size == 0)
        return NULL;
    // Terminates: the load limit guarantees an empty slot.
    for (size_t i = hash & self->mask;; i = (i + 1) & self->mask) {
        const hop_xslot_t *slot = &self->slots[i];
        if (!slot->item)
            return NULL;
        if (slot->hash == hash && eq(slot->item, key))
            return slot->item;
    }
}

void
hop_xtable_insert(hop_xtable_t *self, uint64_t hash, void *item)
{
    assert(self);
    assert(item);
    size_t capacity = s_capacity(self);
    // Grow at 3/4 full: beyond that, linear probing's miss chains get long.
    if ((self->size + 1) * 4 > capacity * 3)
        s_resize(self, capacity ? capacity * 2 : S_MIN_CAPACITY);
    s_place(self, (hop_xslot_t){hash, item});
    self->size++;
}

void
hop_xtable_remove(hop_xtable_t *self, uint64_t hash, const void *item)
{
    assert(self);
    assert(item);
    assert(self->size > 0);
    size_t hole = hash & self->mask;
    while (self->slots[hole].item != item) {
        assert(self->slots[hole].item); // item must be present
        hole = (hole + 1) & self->mask;
    }
    // Backward shift: pull later entries of the cluster into the hole when the hole lies on
    // their probe path, so lookups never need tombstones.
    for (size_t j = (hole + 1) & self->mask; self->slots[j].item; j = (j + 1) & self->mask) {
        size_t home = self->slots[j].hash & self->mask;
        if (((j - home) & self->mask) >= ((j - hole) & self->mask)) {
            self->slots[hole] = self->slots[j];
            hole = j;
        }
    }
    self->slots[hole].item = NULL;
    self->size--;
    // Give memory back after mass unbinds (a deleted queue with thousands of bindings), with
    // enough hysteresis that bind/unbind at the boundary does not resize every time.
    size_t capacity = s_capacity(self);
    if (capacity > S_MIN_CAPACITY && self->size * 8 < capacity)
        s_resize(self, capacity / 2);
}

void *
hop_xtable_next(const hop_xtable_t *self, size_t *cursor)
{
    assert(self);
    assert(cursor);
    size_t capacity = s_capacity(self);
    while (*cursor < capacity) {
        void *item = self->slots[(*cursor)++].item;
        if (item)
            return item;
    }
    return NULL;
}
