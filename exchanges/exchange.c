// exchanges/exchange.c - bindings common to all exchange types, and dispatch to the type index.
//
// The exchange owns every binding and keeps three views of them: a (key, queue) table for
// idempotent bind, unbind and foreach; a per-queue record listing the queue's bindings for
// unbind_queue and for deduping routes; and the type's routing index (direct.c, topic.c).
// Fanout needs no index of its own: its route is the dense array of queue records.
#include "exchange.h"
#include "binding.h"
#include "direct.h"
#include "topic.h"
#include "xtable.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct hop_exchange {
    hop_exchange_type_t type; // fixed at new: AMQP refuses to redeclare with another type
    hop_xseed_t seed;         // hash key shared by every table of this exchange
    hop_xtable_t bindings;    // (key, queue) -> hop_binding_t
    hop_xtable_t queues;      // queue -> hop_qrec_t
    hop_qrec_t **qrecs;       // every queue record, densely, for fanout routing
    size_t qrec_count;        // queues with at least one binding
    size_t qrec_capacity;     // allocated entries of qrecs
    hop_direct_t *direct;     // key index, for direct exchanges only
    hop_topic_t *topic;       // pattern trie, for topic exchanges only
    uint64_t stamp;           // bumped per route; qrec->stamp == stamp means "in this route"
};

// What a binding lookup compares against.
typedef struct {
    const char *key;
    size_t key_len;
    void *queue;
} binding_ref_t;

static const char *const s_type_names[] = {"direct", "fanout", "topic"};
#define S_TYPE_COUNT (sizeof s_type_names / sizeof s_type_names[0])

int
hop_exchange_type_parse(const char *name, hop_exchange_type_t *type)
{
    assert(name);
    assert(type);
    for (unsigned i = 0; i < S_TYPE_COUNT; i++) {
        if (strcmp(name, s_type_names[i]) == 0) {
            *type = (hop_exchange_type_t)i;
            return 0;
        }
    }
    return -1;
}

const char *
hop_exchange_type_name(hop_exchange_type_t type)
{
    assert((unsigned)type < S_TYPE_COUNT);
    return s_type_names[type];
}

void
hop_route_init(hop_route_t *self)
{
    assert(self);
    self->queues = NULL;
    self->size = 0;
    self->capacity = 0;
}

void
hop_route_clear(hop_route_t *self)
{
    assert(self);
    self->size = 0;
}

void
hop_route_fini(hop_route_t *self)
{
    assert(self);
    free(self->queues);
    hop_route_init(self);
}

static void
s_route_reserve(hop_route_t *self, size_t capacity)
{
    if (capacity <= self->capacity)
        return;
    size_t grown = self->capacity ? self->capacity : 16;
    while (grown < capacity)
        grown *= 2;
    self->queues = hop_xrealloc_array(self->queues, grown, sizeof *self->queues);
    self->capacity = grown;
}

void
hop_route_push(hop_route_t *self, void *queue)
{
    assert(self);
    if (self->size == self->capacity)
        s_route_reserve(self, self->size + 1);
    self->queues[self->size++] = queue;
}

hop_exchange_t *
hop_exchange_new(hop_exchange_type_t type)
{
    assert((unsigned)type < S_TYPE_COUNT);
    hop_exchange_t *self = hop_xmalloc(sizeof *self);
    self->type = type;
    hop_xseed_init(&self->seed, self);
    hop_xtable_init(&self->bindings);
    hop_xtable_init(&self->queues);
    self->qrecs = NULL;
    self->qrec_count = 0;
    self->qrec_capacity = 0;
    self->direct = type == HOP_EXCHANGE_DIRECT ? hop_direct_new(&self->seed) : NULL;
    self->topic = type == HOP_EXCHANGE_TOPIC ? hop_topic_new(&self->seed) : NULL;
    self->stamp = 0;
    return self;
}

void
hop_exchange_destroy(hop_exchange_t **self_p)
{
    assert(self_p);
    hop_exchange_t *self = *self_p;
    if (!self)
        return;
    // The indexes only borrow bindings and records, so free those wholesale.
    hop_direct_destroy(&self->direct);
    hop_topic_destroy(&self->topic);
    size_t cursor = 0;
    hop_binding_t *binding;
    while ((binding = hop_xtable_next(&self->bindings, &cursor)))
        free(binding);
    for (size_t i = 0; i < self->qrec_count; i++)
        free(self->qrecs[i]);
    free(self->qrecs);
    hop_xtable_fini(&self->bindings);
    hop_xtable_fini(&self->queues);
    free(self);
    *self_p = NULL;
}

hop_exchange_type_t
hop_exchange_type(const hop_exchange_t *self)
{
    assert(self);
    return self->type;
}

static uint64_t
s_queue_hash(const hop_exchange_t *self, const void *queue)
{
    return hop_xhash_mix((uint64_t)(uintptr_t)queue ^ self->seed.k0);
}

static bool
s_qrec_eq(const void *item, const void *key)
{
    return ((const hop_qrec_t *)item)->queue == key;
}

static hop_qrec_t *
s_qrec_find(const hop_exchange_t *self, const void *queue)
{
    return hop_xtable_find(&self->queues, s_queue_hash(self, queue), s_qrec_eq, queue);
}

// Returns queue's record, creating it.
static hop_qrec_t *
s_qrec_get(hop_exchange_t *self, void *queue)
{
    uint64_t hash = s_queue_hash(self, queue);
    hop_qrec_t *qrec = hop_xtable_find(&self->queues, hash, s_qrec_eq, queue);
    if (qrec)
        return qrec;
    qrec = hop_xmalloc(sizeof *qrec);
    qrec->queue = queue;
    qrec->hash = hash;
    qrec->bindings = NULL;
    qrec->binding_count = 0;
    qrec->stamp = 0; // route stamps start at 1
    if (self->qrec_count == self->qrec_capacity) {
        self->qrec_capacity = self->qrec_capacity ? self->qrec_capacity * 2 : 8;
        self->qrecs = hop_xrealloc_array(self->qrecs, self->qrec_capacity, sizeof *self->qrecs);
    }
    qrec->index = self->qrec_count;
    self->qrecs[self->qrec_count++] = qrec;
    hop_xtable_insert(&self->queues, hash, qrec);
    return qrec;
}

static void
s_qrec_destroy(hop_exchange_t *self, hop_qrec_t *qrec)
{
    hop_xtable_remove(&self->queues, qrec->hash, qrec);
    hop_qrec_t *last = self->qrecs[--self->qrec_count];
    self->qrecs[qrec->index] = last;
    last->index = qrec->index;
    free(qrec);
    if (self->qrec_capacity > 64 && self->qrec_count * 4 < self->qrec_capacity) {
        self->qrec_capacity /= 2;
        self->qrecs = hop_xrealloc_array(self->qrecs, self->qrec_capacity, sizeof *self->qrecs);
    }
}

static uint64_t
s_binding_hash(const hop_exchange_t *self, uint64_t key_hash, const void *queue)
{
    return hop_xhash_mix(key_hash ^ s_queue_hash(self, queue));
}

static bool
s_binding_eq(const void *item, const void *key)
{
    const hop_binding_t *binding = item;
    const binding_ref_t *ref = key;
    return binding->qrec->queue == ref->queue && binding->key_len == ref->key_len &&
           (ref->key_len == 0 || memcmp(binding->key, ref->key, ref->key_len) == 0);
}

static hop_binding_t *
s_binding_find(const hop_exchange_t *self, const char *key, size_t key_len, void *queue,
               uint64_t *key_hash_p, uint64_t *hash_p)
{
    uint64_t key_hash = hop_xhash_bytes(&self->seed, key, key_len);
    uint64_t hash = s_binding_hash(self, key_hash, queue);
    if (key_hash_p)
        *key_hash_p = key_hash;
    if (hash_p)
        *hash_p = hash;
    binding_ref_t ref = {key, key_len, queue};
    return hop_xtable_find(&self->bindings, hash, s_binding_eq, &ref);
}

static void
s_binding_destroy(hop_exchange_t *self, hop_binding_t *binding)
{
    if (self->direct)
        hop_direct_remove(self->direct, binding);
    if (self->topic)
        hop_topic_remove(self->topic, binding);
    hop_xtable_remove(&self->bindings, binding->hash, binding);

    hop_qrec_t *qrec = binding->qrec;
    if (binding->qprev)
        binding->qprev->qnext = binding->qnext;
    else
        qrec->bindings = binding->qnext;
    if (binding->qnext)
        binding->qnext->qprev = binding->qprev;
    if (--qrec->binding_count == 0)
        s_qrec_destroy(self, qrec);
    free(binding);
}

int
hop_exchange_bind(hop_exchange_t *self, const char *key, size_t key_len, void *queue)
{
    assert(self);
    assert(key || key_len == 0);
    assert(queue);
    if (key_len > HOP_EXCHANGE_KEY_MAX)
        return -1; // cannot come from AMQP 0-9-1, and bounds the trie depth
    uint64_t key_hash;
    uint64_t hash;
    if (s_binding_find(self, key, key_len, queue, &key_hash, &hash))
        return 1; // AMQP queue.bind is idempotent

    hop_qrec_t *qrec = s_qrec_get(self, queue);
    hop_binding_t *binding = hop_xmalloc(sizeof *binding + key_len + 1);
    binding->qrec = qrec;
    binding->qprev = NULL;
    binding->qnext = qrec->bindings;
    if (qrec->bindings)
        qrec->bindings->qprev = binding;
    qrec->bindings = binding;
    qrec->binding_count++;
    binding->owner = NULL;
    binding->owner_index = 0;
    binding->hash = hash;
    binding->key_hash = key_hash;
    binding->key_len = key_len;
    if (key_len)
        memcpy(binding->key, key, key_len);
    binding->key[key_len] = '\0';
    hop_xtable_insert(&self->bindings, hash, binding);

    if (self->direct)
        hop_direct_add(self->direct, binding);
    if (self->topic)
        hop_topic_add(self->topic, binding);
    return 0;
}

int
hop_exchange_unbind(hop_exchange_t *self, const char *key, size_t key_len, void *queue)
{
    assert(self);
    assert(key || key_len == 0);
    assert(queue);
    if (key_len > HOP_EXCHANGE_KEY_MAX)
        return 1; // bind refused it, so it cannot be bound
    hop_binding_t *binding = s_binding_find(self, key, key_len, queue, NULL, NULL);
    if (!binding)
        return 1;
    s_binding_destroy(self, binding);
    return 0;
}

size_t
hop_exchange_unbind_queue(hop_exchange_t *self, void *queue)
{
    assert(self);
    assert(queue);
    hop_qrec_t *qrec = s_qrec_find(self, queue);
    if (!qrec)
        return 0;
    // The last removal frees qrec, so count first and never touch it after.
    size_t count = qrec->binding_count;
    for (size_t i = 0; i < count; i++)
        s_binding_destroy(self, qrec->bindings);
    return count;
}

size_t
hop_exchange_binding_count(const hop_exchange_t *self)
{
    assert(self);
    return self->bindings.size;
}

static size_t
s_fanout_route(hop_exchange_t *self, uint64_t stamp, hop_route_t *route)
{
    // One reservation instead of log(n) doublings when fanning out to thousands of queues.
    s_route_reserve(route, route->size + self->qrec_count);
    size_t added = 0;
    for (size_t i = 0; i < self->qrec_count; i++) {
        hop_qrec_t *qrec = self->qrecs[i];
        if (qrec->stamp != stamp) {
            qrec->stamp = stamp;
            route->queues[route->size++] = qrec->queue;
            added++;
        }
    }
    return added;
}

size_t
hop_exchange_route(hop_exchange_t *self, const char *key, size_t key_len, hop_route_t *route)
{
    assert(self);
    assert(key || key_len == 0);
    assert(route);
    assert(route->size <= route->capacity);
    if (self->qrec_count == 0)
        return 0;
    uint64_t stamp = ++self->stamp;
    // route must stay distinct when it already holds queues (say, from another exchange): mark
    // those of ours it holds as routed. Costs nothing in the usual case of a cleared route.
    for (size_t i = 0; i < route->size; i++) {
        hop_qrec_t *qrec = s_qrec_find(self, route->queues[i]);
        if (qrec)
            qrec->stamp = stamp;
    }
    switch (self->type) {
    case HOP_EXCHANGE_DIRECT:
        return hop_direct_route(self->direct, key, key_len, stamp, route);
    case HOP_EXCHANGE_FANOUT:
        return s_fanout_route(self, stamp, route);
    case HOP_EXCHANGE_TOPIC:
        return hop_topic_route(self->topic, key, key_len, stamp, route);
    }
    abort(); // unreachable: hop_exchange_new only accepts the types above
}

int
hop_exchange_foreach(const hop_exchange_t *self, hop_binding_fn *fn, void *arg)
{
    assert(self);
    assert(fn);
    size_t cursor = 0;
    const hop_binding_t *binding;
    while ((binding = hop_xtable_next(&self->bindings, &cursor))) {
        int rc = fn(binding->key, binding->key_len, binding->qrec->queue, arg);
        if (rc)
            return rc;
    }
    return 0;
}
