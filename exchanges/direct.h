// exchanges/direct.h - private to exchanges/: direct exchange index, routing key -> bindings.
#ifndef HOP_DIRECT_H
#define HOP_DIRECT_H

#include "binding.h"
#include "xtable.h"

typedef struct hop_direct hop_direct_t;

// seed must be the one that hashed the key_hash of every binding added later.
hop_direct_t *hop_direct_new(const hop_xseed_t *seed);
// Frees the index, not the bindings; sets *self_p to NULL; accepts NULL.
void hop_direct_destroy(hop_direct_t **self_p);
// Indexes binding by its key; sets binding->owner.
void hop_direct_add(hop_direct_t *self, hop_binding_t *binding);
// Unindexes binding, which must have been added.
void hop_direct_remove(hop_direct_t *self, hop_binding_t *binding);
// Appends the queues bound with exactly key, skipping those stamped with stamp. Returns how many.
size_t hop_direct_route(const hop_direct_t *self, const char *key, size_t key_len, uint64_t stamp,
                        hop_route_t *route);

#endif
