// exchanges/topic.h - private to exchanges/: AMQP topic matching over a trie of pattern words.
// "*" matches one word, "#" zero or more; "" has no words (see exchange.h).
#ifndef HOP_TOPIC_H
#define HOP_TOPIC_H

#include "binding.h"
#include "xtable.h"

typedef struct hop_topic hop_topic_t;

hop_topic_t *hop_topic_new(const hop_xseed_t *seed);
// Frees the trie, not the bindings; sets *self_p to NULL; accepts NULL.
void hop_topic_destroy(hop_topic_t **self_p);
// Adds binding under its key as a pattern; sets binding->owner.
void hop_topic_add(hop_topic_t *self, hop_binding_t *binding);
// Removes binding, which must have been added, and prunes trie branches left empty.
void hop_topic_remove(hop_topic_t *self, hop_binding_t *binding);
// Appends the queues of bindings whose pattern matches key, skipping those stamped with stamp.
// Time is O(words in key x trie nodes alive at once), never exponential; allocates nothing.
size_t hop_topic_route(hop_topic_t *self, const char *key, size_t key_len, uint64_t stamp,
                       hop_route_t *route);

#endif
