// exchanges/binding.c - the binding vector shared by the direct and topic indexes.
#include "binding.h"
#include "xtable.h"

#include <assert.h>
#include <stdlib.h>

void
hop_bvec_init(hop_bvec_t *self)
{
    assert(self);
    self->items = NULL;
    self->size = 0;
    self->capacity = 0;
}

void
hop_bvec_fini(hop_bvec_t *self)
{
    assert(self);
    free(self->items);
    hop_bvec_init(self);
}

void
hop_bvec_push(hop_bvec_t *self, hop_binding_t *binding)
{
    assert(self);
    assert(binding);
    if (self->size == self->capacity) {
        self->capacity = self->capacity ? self->capacity * 2 : 4;
        self->items = hop_xrealloc_array(self->items, self->capacity, sizeof *self->items);
    }
    binding->owner_index = self->size;
    self->items[self->size++] = binding;
}

void
hop_bvec_remove(hop_bvec_t *self, hop_binding_t *binding)
{
    assert(self);
    assert(binding);
    assert(binding->owner_index < self->size && self->items[binding->owner_index] == binding);
    hop_binding_t *last = self->items[--self->size];
    self->items[binding->owner_index] = last;
    last->owner_index = binding->owner_index;
    // A node or key that once held thousands of bindings should not keep their memory.
    if (self->capacity > 16 && self->size * 4 < self->capacity) {
        self->capacity /= 2;
        self->items = hop_xrealloc_array(self->items, self->capacity, sizeof *self->items);
    }
}
