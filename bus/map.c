// bus/map.c - open-addressing hash map from byte strings to pointers.
#include "map.h"
#include "util.h"

#include <assert.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

typedef struct {
    char *key;     // owned copy, NULL for an empty slot
    uint32_t len;  // key length
    uint64_t hash; // cached so growing never rehashes keys
    void *value;   // borrowed
} s_slot_t;

struct hop_map {
    s_slot_t *slots; // capacity slots, a power of two
    size_t capacity;
    size_t size; // occupied slots
};

uint64_t
hop_hash(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = 14695981039346656037ull; // FNV-1a 64 offset basis
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

hop_map_t *
hop_map_new(void)
{
    hop_map_t *self = hop_calloc(1, sizeof *self);
    self->capacity = 16;
    self->slots = hop_calloc(self->capacity, sizeof *self->slots);
    return self;
}

void
hop_map_destroy(hop_map_t **self_p)
{
    assert(self_p);
    hop_map_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->capacity; i++)
        free(self->slots[i].key);
    free(self->slots);
    free(self);
    *self_p = NULL;
}

static size_t
s_find(const hop_map_t *self, const void *key, size_t len, uint64_t hash)
{
    size_t mask = self->capacity - 1;
    size_t i = hash & mask;
    while (self->slots[i].key) {
        const s_slot_t *s = &self->slots[i];
        if (s->hash == hash && s->len == len && memcmp(s->key, key, len) == 0)
            return i;
        i = (i + 1) & mask;
    }
    return i; // the empty slot where the key would go
}

static void
s_grow(hop_map_t *self)
{
    s_slot_t *old = self->slots;
    size_t old_capacity = self->capacity;
    self->capacity *= 2;
    self->slots = hop_calloc(self->capacity, sizeof *self->slots);
    size_t mask = self->capacity - 1;
    for (size_t i = 0; i < old_capacity; i++) {
        if (!old[i].key)
            continue;
        size_t j = old[i].hash & mask;
        while (self->slots[j].key)
            j = (j + 1) & mask;
        self->slots[j] = old[i];
    }
    free(old);
}

void *
hop_map_get(const hop_map_t *self, const void *key, size_t len)
{
    assert(self);
    size_t i = s_find(self, key, len, hop_hash(key, len));
    return self->slots[i].key ? self->slots[i].value : NULL;
}

void
hop_map_put(hop_map_t *self, const void *key, size_t len, void *value)
{
    assert(self);
    uint64_t hash = hop_hash(key, len);
    size_t i = s_find(self, key, len, hash);
    if (self->slots[i].key) {
        self->slots[i].value = value;
        return;
    }
    // Keep the load under 3/4 so probe runs stay short.
    if ((self->size + 1) * 4 > self->capacity * 3) {
        s_grow(self);
        i = s_find(self, key, len, hash);
    }
    self->slots[i].key = hop_strndup(key, len);
    self->slots[i].len = (uint32_t)len;
    self->slots[i].hash = hash;
    self->slots[i].value = value;
    self->size++;
}

void *
hop_map_remove(hop_map_t *self, const void *key, size_t len)
{
    assert(self);
    size_t i = s_find(self, key, len, hop_hash(key, len));
    if (!self->slots[i].key)
        return NULL;
    void *value = self->slots[i].value;
    free(self->slots[i].key);
    self->slots[i].key = NULL;
    self->size--;
    // Backward-shift: pull later members of the probe run into the hole.
    size_t mask = self->capacity - 1;
    size_t hole = i;
    size_t j = (i + 1) & mask;
    while (self->slots[j].key) {
        size_t home = self->slots[j].hash & mask;
        // Move j into the hole when its home is not in the cyclic range (hole, j].
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            self->slots[hole] = self->slots[j];
            self->slots[j].key = NULL;
            hole = j;
        }
        j = (j + 1) & mask;
    }
    return value;
}

size_t
hop_map_size(const hop_map_t *self)
{
    return self->size;
}

int
hop_map_next(const hop_map_t *self, size_t *cursor, const void **key, size_t *len, void **value)
{
    while (*cursor < self->capacity) {
        const s_slot_t *s = &self->slots[(*cursor)++];
        if (s->key) {
            if (key)
                *key = s->key;
            if (len)
                *len = s->len;
            if (value)
                *value = s->value;
            return 1;
        }
    }
    return 0;
}
