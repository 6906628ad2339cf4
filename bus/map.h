// bus/map.h - a hash map from byte strings (names, routing ids) to pointers.
// Keys are copied; values are borrowed. Open addressing with linear probing and
// backward-shift deletion, so there are no tombstones and lookups stay short.
#ifndef HOP_MAP_H_INCLUDED
#define HOP_MAP_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct hop_map hop_map_t;

hop_map_t *hop_map_new(void);
void hop_map_destroy(hop_map_t **self_p);
// Returns the value stored under key, or NULL.
void *hop_map_get(const hop_map_t *self, const void *key, size_t len);
// Stores value under key (replacing any previous value).
void hop_map_put(hop_map_t *self, const void *key, size_t len, void *value);
// Removes key; returns its value or NULL.
void *hop_map_remove(hop_map_t *self, const void *key, size_t len);
size_t hop_map_size(const hop_map_t *self);

// Iteration: for (size_t i = 0; hop_map_next(m, &i, &k, &l, &v); ) ... Do not put or remove
// while iterating; collect first.
int hop_map_next(const hop_map_t *self, size_t *cursor, const void **key, size_t *len,
                 void **value);

// FNV-1a, exposed for tests and other tables.
uint64_t hop_hash(const void *data, size_t len);

#endif
