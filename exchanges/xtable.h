// exchanges/xtable.h - private to exchanges/: aborting allocation, keyed hashing, and an
// open-addressing table of item pointers. Every index in this module is one of these tables.
#ifndef HOP_XTABLE_H
#define HOP_XTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Out of memory aborts, as hop_malloc does: a half-applied bind cannot be reported sanely, and
// this module may depend on nothing but libc.
void *hop_xmalloc(size_t size);
void *hop_xcalloc(size_t count, size_t size);
// realloc(ptr, count * size), aborting on overflow or out of memory.
void *hop_xrealloc_array(void *ptr, size_t count, size_t size);

// Hash key. Each exchange draws its own so that clients cannot precompute keys that collide.
typedef struct {
    uint64_t k0;
    uint64_t k1;
} hop_xseed_t;

// Seeds from ASLR'd addresses and the clock: not cryptographic, but unknown to clients.
void hop_xseed_init(hop_xseed_t *seed, const void *salt);
// SipHash-1-3 of len bytes; data may be NULL when len is 0.
uint64_t hop_xhash_bytes(const hop_xseed_t *seed, const void *data, size_t len);
// Bijective 64-bit mixer (splitmix64 finalizer), for combining hashes and hashing pointers.
uint64_t hop_xhash_mix(uint64_t x);

// Returns true if item is the one key describes.
typedef bool(hop_xtable_eq_fn)(const void *item, const void *key);

typedef struct {
    uint64_t hash; // cached: probes compare it before calling eq, and resizing needs no rehash
    void *item;    // NULL marks an empty slot
} hop_xslot_t;

// Linear probing with backward-shift deletion, so there are no tombstones to degrade lookups
// after many unbinds. Items are borrowed: fini frees the slots, never the items.
typedef struct {
    hop_xslot_t *slots; // power-of-two capacity; NULL until the first insert
    size_t mask;        // capacity - 1 when slots is set
    size_t size;        // items stored
} hop_xtable_t;

void hop_xtable_init(hop_xtable_t *self);
void hop_xtable_fini(hop_xtable_t *self);
// Returns the item whose hash is hash and that eq matches with key, or NULL.
void *hop_xtable_find(const hop_xtable_t *self, uint64_t hash, hop_xtable_eq_fn *eq,
                      const void *key);
// Adds item under hash; the caller has checked that no equal item is present.
void hop_xtable_insert(hop_xtable_t *self, uint64_t hash, void *item);
// Removes item, which must be present under hash.
void hop_xtable_remove(hop_xtable_t *self, uint64_t hash, const void *item);
// Iterates: start with *cursor = 0; returns NULL at the end. Order is stable while the table is
// unchanged; inserting or removing during an iteration invalidates it.
void *hop_xtable_next(const hop_xtable_t *self, size_t *cursor);

#endif
