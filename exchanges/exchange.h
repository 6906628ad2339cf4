// exchanges/exchange.h - AMQP exchanges as pure routing tables: direct, fanout and topic.
//
// An exchange maps bindings (key, queue) to the queues a routing key reaches. Queues are opaque
// pointers to this module; it never dereferences them. No I/O, no locking: an exchange belongs
// to one thread at a time.
#ifndef HOP_EXCHANGE_H
#define HOP_EXCHANGE_H

#include <stddef.h>

// Longest binding key, as for an AMQP 0-9-1 shortstr.
#define HOP_EXCHANGE_KEY_MAX 255

typedef enum {
    HOP_EXCHANGE_DIRECT = 0,
    HOP_EXCHANGE_FANOUT = 1,
    HOP_EXCHANGE_TOPIC = 2
} hop_exchange_type_t;

typedef struct hop_exchange hop_exchange_t;

// Routing result: a reusable growable vector of distinct queue pointers. Caller owns it; reuse it
// across routes (hop_route_clear) so routing does no malloc in steady state.
typedef struct {
    void **queues;   // queues[0..size) are distinct
    size_t size;     // queues in use
    size_t capacity; // queues allocated
} hop_route_t;

// Sets an empty route; allocates nothing.
void hop_route_init(hop_route_t *self);
// Empties the route and keeps its memory for the next route.
void hop_route_clear(hop_route_t *self);
// Frees the route's memory and leaves it empty, ready for reuse or to be dropped.
void hop_route_fini(hop_route_t *self);
// Appends queue, growing the vector as needed. The caller keeps the queues distinct.
void hop_route_push(hop_route_t *self, void *queue);

// Returns a new exchange with no bindings. Aborts when out of memory.
hop_exchange_t *hop_exchange_new(hop_exchange_type_t type);
// Frees the exchange and its bindings (never the queues) and sets *self_p to NULL; accepts NULL.
void hop_exchange_destroy(hop_exchange_t **self_p);
hop_exchange_type_t hop_exchange_type(const hop_exchange_t *self);

// Parses "direct", "fanout" or "topic" (case-sensitive, as AMQP) into *type: returns 0, or -1
// for any other name, "headers" included, leaving *type alone.
int hop_exchange_type_parse(const char *name, hop_exchange_type_t *type);
// Returns the static name of type, as hop_exchange_type_parse accepts it.
const char *hop_exchange_type_name(hop_exchange_type_t type);

// Binds queue with key (key_len bytes, need not be NUL-terminated; NULL allowed when key_len is
// 0). The exchange copies the key. Topic keys are patterns; fanout ignores keys for routing but
// records them so that unbind and foreach behave as in RabbitMQ.
// Returns 0 if added, 1 if that exact (key, queue) binding already existed, -1 if key_len
// exceeds HOP_EXCHANGE_KEY_MAX (nothing changes).
int hop_exchange_bind(hop_exchange_t *self, const char *key, size_t key_len, void *queue);
// Returns 0 if the (key, queue) binding was removed, 1 if there was no such binding.
int hop_exchange_unbind(hop_exchange_t *self, const char *key, size_t key_len, void *queue);
// Removes every binding of queue, as when the queue is deleted. Returns how many were removed.
size_t hop_exchange_unbind_queue(hop_exchange_t *self, void *queue);
size_t hop_exchange_binding_count(const hop_exchange_t *self);

// Appends to route every queue that a binding matching the routing key (key_len bytes, any
// length) reaches, each at most once, and skips queues route already holds, so route stays
// distinct. Does not clear route first. Returns how many queues it appended. Allocates nothing
// except to grow route.
//   direct: bindings whose key is byte-equal to the routing key.
//   fanout: every bound queue, whatever the key.
//   topic:  bindings whose pattern matches the key, as RabbitMQ does. Keys and patterns are
//           '.'-separated words; "" has no words, otherwise n dots make n + 1 words, some maybe
//           empty ("a..b", ".a", "a."). A pattern word "*" matches exactly one word, empty or
//           not; "#" matches zero or more words; any other word, "a*" included, matches itself.
size_t hop_exchange_route(hop_exchange_t *self, const char *key, size_t key_len,
                          hop_route_t *route);

// Called with each binding; key is borrowed and NUL-terminated at key_len (it may also contain
// NUL bytes). Returning non-zero stops the iteration.
typedef int(hop_binding_fn)(const char *key, size_t key_len, void *queue, void *arg);
// Calls fn for every binding, in an order that is unspecified but the same between calls while
// the bindings do not change. fn must not bind or unbind on this exchange. Returns the first
// non-zero value fn returns, or 0.
int hop_exchange_foreach(const hop_exchange_t *self, hop_binding_fn *fn, void *arg);

#endif
