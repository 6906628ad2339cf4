// exchanges/binding.h - private to exchanges/: the binding and queue records that exchange.c
// owns and the per-type indexes (direct.c, topic.c) point at.
#ifndef HOP_BINDING_H
#define HOP_BINDING_H

#include "exchange.h"

#include <stdint.h>

typedef struct hop_binding hop_binding_t;
typedef struct hop_qrec hop_qrec_t;

// One per queue with at least one binding in an exchange.
struct hop_qrec {
    void *queue;             // the caller's opaque queue
    uint64_t hash;           // hash of queue in the exchange's queue table
    hop_binding_t *bindings; // this queue's bindings, so deleting a queue is O(its bindings)
    size_t binding_count;    // length of that list; the record goes when it reaches 0
    size_t index;            // position in the exchange's dense queue array, for O(1) removal
    uint64_t stamp;          // route that last appended this queue: dedupes with no set to clear
};

// One per (key, queue) pair. Created and freed by exchange.c; the type index only links it.
struct hop_binding {
    hop_qrec_t *qrec;     // the bound queue
    hop_binding_t *qprev; // neighbours in qrec's list
    hop_binding_t *qnext;
    void *owner;        // direct key record or topic trie node holding this binding
    size_t owner_index; // position in the owner's hop_bvec_t, for O(1) removal
    uint64_t hash;      // hash of (key, queue) in the exchange's binding table
    uint64_t key_hash;  // hash of key alone, with the exchange's seed
    size_t key_len;     // bytes in key, not counting the NUL
    char key[];         // copy of the key, NUL-terminated
};

// Array of bindings that keeps each binding's owner_index current, so removal is a swap.
typedef struct {
    hop_binding_t **items;
    size_t size;
    size_t capacity;
} hop_bvec_t;

void hop_bvec_init(hop_bvec_t *self);
void hop_bvec_fini(hop_bvec_t *self);
void hop_bvec_push(hop_bvec_t *self, hop_binding_t *binding);
// Removes binding, which must be in self; order is not kept.
void hop_bvec_remove(hop_bvec_t *self, hop_binding_t *binding);

// Appends the binding's queue unless the route stamped stamp already holds it. Returns 1 if
// appended, else 0.
static inline size_t
hop_binding_emit(const hop_binding_t *self, uint64_t stamp, hop_route_t *route)
{
    hop_qrec_t *qrec = self->qrec;
    if (qrec->stamp == stamp)
        return 0;
    qrec->stamp = stamp;
    hop_route_push(route, qrec->queue);
    return 1;
}

#endif
