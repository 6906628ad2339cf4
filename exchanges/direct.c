// exchanges/direct.c - direct exchange: one hash lookup per route, then the key's queues.
#include "direct.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

// All bindings sharing one key. Their queues are distinct, since (key, queue) pairs are unique.
typedef struct {
    hop_bvec_t bindings; // bindings with this key; the record goes when it empties
    uint64_t hash;       // key hash, as in the bindings' key_hash
    size_t key_len;
    char key[]; // own copy: bindings come and go while the record stays
} direct_key_t;

// What a lookup compares against.
typedef struct {
    const char *key;
    size_t key_len;
} key_ref_t;

struct hop_direct {
    hop_xseed_t seed;  // the exchange's, so binding->key_hash can be reused
    hop_xtable_t keys; // key -> direct_key_t
};

static bool
s_key_eq(const void *item, const void *key)
{
    const direct_key_t *record = item;
    const key_ref_t *ref = key;
    return record->key_len == ref->key_len &&
           (ref->key_len == 0 || memcmp(record->key, ref->key, ref->key_len) == 0);
}

hop_direct_t *
hop_direct_new(const hop_xseed_t *seed)
{
    assert(seed);
    hop_direct_t *self = hop_xmalloc(sizeof *self);
    self->seed = *seed;
    hop_xtable_init(&self->keys);
    return self;
}

void
hop_direct_destroy(hop_direct_t **self_p)
{
    assert(self_p);
    hop_direct_t *self = *self_p;
    if (!self)
        return;
    size_t cursor = 0;
    direct_key_t *record;
    while ((record = hop_xtable_next(&self->keys, &cursor))) {
        hop_bvec_fini(&record->bindings);
        free(record);
    }
    hop_xtable_fini(&self->keys);
    free(self);
    *self_p = NULL;
}

void
hop_direct_add(hop_direct_t *self, hop_binding_t *binding)
{
    assert(self);
    assert(binding);
    key_ref_t ref = {binding->key, binding->key_len};
    direct_key_t *record = hop_xtable_find(&self->keys, binding->key_hash, s_key_eq, &ref);
    if (!record) {
        record = hop_xmalloc(sizeof *record + binding->key_len + 1);
        hop_bvec_init(&record->bindings);
        record->hash = binding->key_hash;
        record->key_len = binding->key_len;
        memcpy(record->key, binding->key, binding->key_len + 1);
        hop_xtable_insert(&self->keys, record->hash, record);
    }
    hop_bvec_push(&record->bindings, binding);
    binding->owner = record;
}

void
hop_direct_remove(hop_direct_t *self, hop_binding_t *binding)
{
    assert(self);
    assert(binding && binding->owner);
    direct_key_t *record = binding->owner;
    hop_bvec_remove(&record->bindings, binding);
    binding->owner = NULL;
    if (record->bindings.size == 0) {
        hop_xtable_remove(&self->keys, record->hash, record);
        hop_bvec_fini(&record->bindings);
        free(record);
    }
}

size_t
hop_direct_route(const hop_direct_t *self, const char *key, size_t key_len, uint64_t stamp,
                 hop_route_t *route)
{
    assert(self);
    assert(key || key_len == 0);
    assert(route);
    if (self->keys.size == 0)
        return 0;
    key_ref_t ref = {key, key_len};
    uint64_t hash = hop_xhash_bytes(&self->seed, key, key_len);
    const direct_key_t *record = hop_xtable_find(&self->keys, hash, s_key_eq, &ref);
    if (!record)
        return 0;
    size_t added = 0;
    for (size_t i = 0; i < record->bindings.size; i++)
        added += hop_binding_emit(record->bindings.items[i], stamp, route);
    return added;
}
