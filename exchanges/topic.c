// exchanges/topic.c - topic exchange: a trie of pattern words, matched like an NFA.
//
// A pattern is a path from the root, one edge per word, and its bindings sit on the last node.
// Matching keeps the set of nodes the key's words so far can have reached. For each word, a node
// passes on to its child for that literal word and to its "*" child, and a node reached by "#"
// stays (the "#" swallows the word). A node entering a set brings its "#" child along, since "#"
// may match no word at all. Nodes are stamped as they enter, so each enters a set at most once
// per word: matching costs O(words x nodes) even for "#.#.#.#.x", where naive backtracking over
// the ways to split the key between the "#"s would be exponential.
#include "topic.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

typedef struct topic_node topic_node_t;

struct topic_node {
    topic_node_t *parent; // NULL for the root; pruning climbs towards it
    topic_node_t *star;   // child for a "*" word: a pointer, so matching reaches it unhashed
    topic_node_t *hash;   // child for a "#" word, likewise
    size_t literals;      // children in the edge table; 0 lets matching skip the lookup
    hop_bvec_t bindings;  // bindings whose pattern ends here
    uint64_t id;          // names this node as a parent in edge hashes
    uint64_t edge_hash;   // hash of the edge from the parent, for literal nodes
    uint64_t stamp;       // step that last put this node in an active set
    size_t index;         // position in the topic's node array, for O(1) removal
    bool swallows;        // reached by "#": stays active across any number of words
    size_t word_len;      // the literal word; empty for the root and wildcard nodes
    char word[];
};

// What an edge lookup compares against.
typedef struct {
    const topic_node_t *parent;
    const char *word;
    size_t word_len;
} edge_ref_t;

struct hop_topic {
    hop_xseed_t seed;      // the exchange's hash key
    topic_node_t *root;    // end of the pattern "" (no words); never pruned
    hop_xtable_t edges;    // (parent, literal word) -> child node
    topic_node_t **nodes;  // every node, root included, so destroy needs no tree walk
    size_t node_count;     // nodes in use
    size_t node_capacity;  // allocated entries of nodes, active and next
    topic_node_t **active; // scratch for route: the nodes reached so far. Sized with nodes, as a
    topic_node_t **next;   // set never holds a node twice, so route never allocates
    uint64_t next_id;      // source of node ids
    uint64_t step;         // bumped per set built; node->stamp == step means "already in it"
};

// Cuts the word starting at *cursor off [*cursor, end): returns its length and moves *cursor
// past the dot that ends it, or sets *cursor to NULL after the last word. "a." is "a" and "".
static size_t
s_next_word(const char **cursor, const char *end)
{
    const char *word = *cursor;
    const char *dot = word < end ? memchr(word, '.', (size_t)(end - word)) : NULL;
    if (dot) {
        *cursor = dot + 1;
        return (size_t)(dot - word);
    }
    *cursor = NULL;
    return (size_t)(end - word);
}

static bool
s_is_word(const char *word, size_t word_len, char wildcard)
{
    return word_len == 1 && word[0] == wildcard;
}

static uint64_t
s_edge_hash(const topic_node_t *parent, uint64_t word_hash)
{
    return hop_xhash_mix(word_hash ^ parent->id);
}

static bool
s_edge_eq(const void *item, const void *key)
{
    const topic_node_t *node = item;
    const edge_ref_t *ref = key;
    return node->parent == ref->parent && node->word_len == ref->word_len &&
           (ref->word_len == 0 || memcmp(node->word, ref->word, ref->word_len) == 0);
}

static void
s_resize_nodes(hop_topic_t *self, size_t capacity)
{
    self->node_capacity = capacity;
    self->nodes = hop_xrealloc_array(self->nodes, capacity, sizeof *self->nodes);
    self->active = hop_xrealloc_array(self->active, capacity, sizeof *self->active);
    self->next = hop_xrealloc_array(self->next, capacity, sizeof *self->next);
}

static topic_node_t *
s_node_new(hop_topic_t *self, topic_node_t *parent, const char *word, size_t word_len,
           bool swallows)
{
    topic_node_t *node = hop_xmalloc(sizeof *node + word_len + 1);
    node->parent = parent;
    node->star = NULL;
    node->hash = NULL;
    node->literals = 0;
    hop_bvec_init(&node->bindings);
    node->id = hop_xhash_mix(self->seed.k1 + ++self->next_id);
    node->edge_hash = 0;
    node->stamp = 0; // steps start at 1
    node->swallows = swallows;
    node->word_len = word_len;
    if (word_len)
        memcpy(node->word, word, word_len);
    node->word[word_len] = '\0';
    if (self->node_count == self->node_capacity)
        s_resize_nodes(self, self->node_capacity ? self->node_capacity * 2 : 8);
    node->index = self->node_count;
    self->nodes[self->node_count++] = node;
    return node;
}

static void
s_node_destroy(hop_topic_t *self, topic_node_t *node)
{
    topic_node_t *last = self->nodes[--self->node_count];
    self->nodes[node->index] = last;
    last->index = node->index;
    hop_bvec_fini(&node->bindings);
    free(node);
    if (self->node_capacity > 64 && self->node_count * 4 < self->node_capacity)
        s_resize_nodes(self, self->node_capacity / 2);
}

hop_topic_t *
hop_topic_new(const hop_xseed_t *seed)
{
    assert(seed);
    hop_topic_t *self = hop_xmalloc(sizeof *self);
    self->seed = *seed;
    hop_xtable_init(&self->edges);
    self->nodes = NULL;
    self->node_count = 0;
    self->node_capacity = 0;
    self->active = NULL;
    self->next = NULL;
    self->next_id = 0;
    self->step = 0;
    self->root = s_node_new(self, NULL, NULL, 0, false);
    return self;
}

void
hop_topic_destroy(hop_topic_t **self_p)
{
    assert(self_p);
    hop_topic_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->node_count; i++) {
        hop_bvec_fini(&self->nodes[i]->bindings);
        free(self->nodes[i]);
    }
    free(self->nodes);
    free(self->active);
    free(self->next);
    hop_xtable_fini(&self->edges);
    free(self);
    *self_p = NULL;
}

// Returns parent's child for word, creating it.
static topic_node_t *
s_child_get(hop_topic_t *self, topic_node_t *parent, const char *word, size_t word_len)
{
    if (s_is_word(word, word_len, '*')) {
        if (!parent->star)
            parent->star = s_node_new(self, parent, NULL, 0, false);
        return parent->star;
    }
    if (s_is_word(word, word_len, '#')) {
        if (!parent->hash)
            parent->hash = s_node_new(self, parent, NULL, 0, true);
        return parent->hash;
    }
    uint64_t hash = s_edge_hash(parent, hop_xhash_bytes(&self->seed, word, word_len));
    edge_ref_t ref = {parent, word, word_len};
    topic_node_t *child = hop_xtable_find(&self->edges, hash, s_edge_eq, &ref);
    if (!child) {
        child = s_node_new(self, parent, word, word_len, false);
        child->edge_hash = hash;
        hop_xtable_insert(&self->edges, hash, child);
        parent->literals++;
    }
    return child;
}

void
hop_topic_add(hop_topic_t *self, hop_binding_t *binding)
{
    assert(self);
    assert(binding);
    topic_node_t *node = self->root;
    if (binding->key_len > 0) {
        const char *cursor = binding->key;
        const char *end = binding->key + binding->key_len;
        while (cursor) {
            const char *word = cursor;
            size_t word_len = s_next_word(&cursor, end);
            node = s_child_get(self, node, word, word_len);
        }
    }
    hop_bvec_push(&node->bindings, binding);
    binding->owner = node;
}

void
hop_topic_remove(hop_topic_t *self, hop_binding_t *binding)
{
    assert(self);
    assert(binding && binding->owner);
    topic_node_t *node = binding->owner;
    hop_bvec_remove(&node->bindings, binding);
    binding->owner = NULL;
    // Drop the branch that led only to this binding: a dead "#" branch would otherwise stay in
    // every active set and slow down every route.
    while (node != self->root && node->bindings.size == 0 && !node->star && !node->hash &&
           node->literals == 0) {
        topic_node_t *parent = node->parent;
        if (parent->star == node)
            parent->star = NULL;
        else if (parent->hash == node)
            parent->hash = NULL;
        else {
            hop_xtable_remove(&self->edges, node->edge_hash, node);
            parent->literals--;
        }
        s_node_destroy(self, node);
        node = parent;
    }
}

// Adds node to the set being built unless it is already there, then its "#" child, whose "#"
// may match no word, and so on down the chain. A node already in the set has brought its chain.
static void
s_activate(topic_node_t *node, uint64_t step, topic_node_t **set, size_t *count)
{
    for (; node && node->stamp != step; node = node->hash) {
        node->stamp = step;
        set[(*count)++] = node;
    }
}

size_t
hop_topic_route(hop_topic_t *self, const char *key, size_t key_len, uint64_t stamp,
                hop_route_t *route)
{
    assert(self);
    assert(key || key_len == 0);
    assert(route);
    topic_node_t **active = self->active;
    topic_node_t **next = self->next;
    size_t active_count = 0;
    s_activate(self->root, ++self->step, active, &active_count);

    // Like RabbitMQ, "" has no words: only patterns made of "#"s (and "") match it.
    const char *cursor = key_len > 0 ? key : NULL;
    const char *end = key_len > 0 ? key + key_len : NULL; // NULL + 0 is undefined
    while (cursor) {
        const char *word = cursor;
        size_t word_len = s_next_word(&cursor, end);
        uint64_t step = ++self->step;
        uint64_t word_hash = 0;
        bool hashed = false; // hash the word only if some node has literal children
        size_t next_count = 0;
        for (size_t i = 0; i < active_count; i++) {
            topic_node_t *node = active[i];
            if (node->swallows)
                s_activate(node, step, next, &next_count);
            if (node->star)
                s_activate(node->star, step, next, &next_count);
            if (node->literals > 0) {
                if (!hashed) {
                    word_hash = hop_xhash_bytes(&self->seed, word, word_len);
                    hashed = true;
                }
                edge_ref_t ref = {node, word, word_len};
                topic_node_t *child =
                    hop_xtable_find(&self->edges, s_edge_hash(node, word_hash), s_edge_eq, &ref);
                if (child)
                    s_activate(child, step, next, &next_count);
            }
        }
        topic_node_t **swap = active;
        active = next;
        next = swap;
        active_count = next_count;
        if (active_count == 0)
            return 0; // no pattern can match the rest of the key: stop reading it
    }

    size_t added = 0;
    for (size_t i = 0; i < active_count; i++) {
        const hop_bvec_t *bindings = &active[i]->bindings;
        for (size_t j = 0; j < bindings->size; j++)
            added += hop_binding_emit(bindings->items[j], stamp, route);
    }
    return added;
}
