// tests/unit/test_exchange.c - exchange bookkeeping, direct and fanout routing, hop_route_t.
// Topic matching is in test_exchange_topic.c.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exchange.h"

#define QUEUE_MAX 10000

// The exchange never dereferences queues: addresses in this array stand in for them, and an
// address maps back to an index for distinctness checks.
static char s_queues[QUEUE_MAX];
#define Q(i) ((void *)&s_queues[(i)])

static size_t
s_queue_index(const void *queue)
{
    assert_true((const char *)queue >= s_queues && (const char *)queue < s_queues + QUEUE_MAX);
    return (size_t)((const char *)queue - s_queues);
}

static int
s_bind(hop_exchange_t *exchange, const char *key, void *queue)
{
    return hop_exchange_bind(exchange, key, strlen(key), queue);
}

static int
s_unbind(hop_exchange_t *exchange, const char *key, void *queue)
{
    return hop_exchange_unbind(exchange, key, strlen(key), queue);
}

// Clears route, then routes key into it.
static size_t
s_route(hop_exchange_t *exchange, const char *key, hop_route_t *route)
{
    hop_route_clear(route);
    return hop_exchange_route(exchange, key, strlen(key), route);
}

static bool
s_route_has(const hop_route_t *route, const void *queue)
{
    for (size_t i = 0; i < route->size; i++)
        if (route->queues[i] == queue)
            return true;
    return false;
}

static void
s_assert_distinct(const hop_route_t *route)
{
    bool *seen = calloc(QUEUE_MAX, sizeof *seen);
    assert_non_null(seen);
    for (size_t i = 0; i < route->size; i++) {
        size_t index = s_queue_index(route->queues[i]);
        assert_false(seen[index]);
        seen[index] = true;
    }
    free(seen);
}

// --- types ---------------------------------------------------------------------------------

static void
test_type_parse_accepts_known_names(void **state)
{
    (void)state;
    hop_exchange_type_t type = HOP_EXCHANGE_TOPIC;
    assert_int_equal(hop_exchange_type_parse("direct", &type), 0);
    assert_int_equal(type, HOP_EXCHANGE_DIRECT);
    assert_int_equal(hop_exchange_type_parse("fanout", &type), 0);
    assert_int_equal(type, HOP_EXCHANGE_FANOUT);
    assert_int_equal(hop_exchange_type_parse("topic", &type), 0);
    assert_int_equal(type, HOP_EXCHANGE_TOPIC);
}

static void
test_type_parse_rejects_unknown_names(void **state)
{
    (void)state;
    hop_exchange_type_t type = HOP_EXCHANGE_FANOUT;
    assert_int_equal(hop_exchange_type_parse("headers", &type), -1);
    assert_int_equal(hop_exchange_type_parse("Direct", &type), -1);
    assert_int_equal(hop_exchange_type_parse("topic ", &type), -1);
    assert_int_equal(hop_exchange_type_parse("", &type), -1);
    assert_int_equal(type, HOP_EXCHANGE_FANOUT);
}

static void
test_type_name_round_trips(void **state)
{
    (void)state;
    assert_string_equal(hop_exchange_type_name(HOP_EXCHANGE_DIRECT), "direct");
    assert_string_equal(hop_exchange_type_name(HOP_EXCHANGE_FANOUT), "fanout");
    assert_string_equal(hop_exchange_type_name(HOP_EXCHANGE_TOPIC), "topic");
    for (int i = HOP_EXCHANGE_DIRECT; i <= HOP_EXCHANGE_TOPIC; i++) {
        hop_exchange_type_t type;
        assert_int_equal(hop_exchange_type_parse(hop_exchange_type_name(i), &type), 0);
        assert_int_equal(type, i);
    }
}

// --- lifecycle -----------------------------------------------------------------------------

static void
test_new_reports_type(void **state)
{
    (void)state;
    for (int i = HOP_EXCHANGE_DIRECT; i <= HOP_EXCHANGE_TOPIC; i++) {
        hop_exchange_t *exchange = hop_exchange_new(i);
        assert_non_null(exchange);
        assert_int_equal(hop_exchange_type(exchange), i);
        assert_int_equal(hop_exchange_binding_count(exchange), 0);
        hop_exchange_destroy(&exchange);
    }
}

static void
test_destroy_nulls_pointer_and_accepts_null(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_DIRECT);
    assert_int_equal(s_bind(exchange, "k", Q(1)), 0);
    hop_exchange_destroy(&exchange);
    assert_null(exchange);
    hop_exchange_destroy(&exchange);
    assert_null(exchange);
}

static void
test_destroy_frees_bindings_of_every_type(void **state)
{
    (void)state;
    // Run under ASan: leaks or double frees in any type's teardown fail here.
    for (int i = HOP_EXCHANGE_DIRECT; i <= HOP_EXCHANGE_TOPIC; i++) {
        hop_exchange_t *exchange = hop_exchange_new(i);
        for (int q = 0; q < 50; q++) {
            assert_int_equal(s_bind(exchange, "a.b", Q(q)), 0);
            assert_int_equal(s_bind(exchange, "a.*.#", Q(q)), 0);
            assert_int_equal(s_bind(exchange, "", Q(q)), 0);
        }
        hop_exchange_destroy(&exchange);
    }
}

// --- hop_route_t ---------------------------------------------------------------------------

static void
test_route_init_is_empty(void **state)
{
    (void)state;
    hop_route_t route;
    hop_route_init(&route);
    assert_null(route.queues);
    assert_int_equal(route.size, 0);
    assert_int_equal(route.capacity, 0);
    hop_route_fini(&route);
}

static void
test_route_clear_keeps_memory(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_FANOUT);
    for (int q = 0; q < 100; q++)
        assert_int_equal(s_bind(exchange, "", Q(q)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(s_route(exchange, "", &route), 100);
    void **queues = route.queues;
    size_t capacity = route.capacity;
    hop_route_clear(&route);
    assert_int_equal(route.size, 0);
    assert_ptr_equal(route.queues, queues);
    // Steady state: routing again into the cleared route does not reallocate it.
    assert_int_equal(hop_exchange_route(exchange, "", 0, &route), 100);
    assert_ptr_equal(route.queues, queues);
    assert_int_equal(route.capacity, capacity);
    hop_route_fini(&route);
    assert_null(route.queues);
    assert_int_equal(route.size, 0);
    assert_int_equal(route.capacity, 0);
    hop_exchange_destroy(&exchange);
}

static void
test_route_appends_without_clearing(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_DIRECT);
    assert_int_equal(s_bind(exchange, "a", Q(1)), 0);
    assert_int_equal(s_bind(exchange, "b", Q(2)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(hop_exchange_route(exchange, "a", 1, &route), 1);
    assert_int_equal(hop_exchange_route(exchange, "b", 1, &route), 1);
    assert_int_equal(route.size, 2);
    assert_ptr_equal(route.queues[0], Q(1));
    assert_ptr_equal(route.queues[1], Q(2));
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_route_skips_queues_already_in_route(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_DIRECT);
    assert_int_equal(s_bind(exchange, "a", Q(1)), 0);
    assert_int_equal(s_bind(exchange, "a", Q(2)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(hop_exchange_route(exchange, "a", 1, &route), 2);
    // Routing the same key again keeps route distinct and reports nothing added.
    assert_int_equal(hop_exchange_route(exchange, "a", 1, &route), 0);
    assert_int_equal(route.size, 2);
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_route_skips_queues_put_there_by_another_exchange(void **state)
{
    (void)state;
    hop_exchange_t *first = hop_exchange_new(HOP_EXCHANGE_FANOUT);
    hop_exchange_t *second = hop_exchange_new(HOP_EXCHANGE_TOPIC);
    assert_int_equal(s_bind(first, "", Q(1)), 0);
    assert_int_equal(s_bind(first, "", Q(2)), 0);
    assert_int_equal(s_bind(second, "#", Q(2)), 0);
    assert_int_equal(s_bind(second, "#", Q(3)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(hop_exchange_route(first, "k", 1, &route), 2);
    assert_int_equal(hop_exchange_route(second, "k", 1, &route), 1);
    assert_int_equal(route.size, 3);
    assert_true(s_route_has(&route, Q(3)));
    s_assert_distinct(&route);
    hop_route_fini(&route);
    hop_exchange_destroy(&first);
    hop_exchange_destroy(&second);
}

static void
test_route_on_empty_exchange_adds_nothing(void **state)
{
    (void)state;
    hop_route_t route;
    hop_route_init(&route);
    for (int i = HOP_EXCHANGE_DIRECT; i <= HOP_EXCHANGE_TOPIC; i++) {
        hop_exchange_t *exchange = hop_exchange_new(i);
        assert_int_equal(hop_exchange_route(exchange, NULL, 0, &route), 0);
        assert_int_equal(s_route(exchange, "a.b", &route), 0);
        hop_exchange_destroy(&exchange);
    }
    assert_int_equal(route.size, 0);
    hop_route_fini(&route);
}

// --- bind / unbind -------------------------------------------------------------------------

static void
test_bind_returns_1_when_binding_exists(void **state)
{
    (void)state;
    for (int i = HOP_EXCHANGE_DIRECT; i <= HOP_EXCHANGE_TOPIC; i++) {
        hop_exchange_t *exchange = hop_exchange_new(i);
        assert_int_equal(s_bind(exchange, "a.b", Q(1)), 0);
        assert_int_equal(s_bind(exchange, "a.b", Q(1)), 1);
        assert_int_equal(hop_exchange_binding_count(exchange), 1);
        hop_exchange_destroy(&exchange);
    }
}

static void
test_bind_same_queue_with_two_keys_makes_two_bindings(void **state)
{
    (void)state;
    for (int i = HOP_EXCHANGE_DIRECT; i <= HOP_EXCHANGE_TOPIC; i++) {
        hop_exchange_t *exchange = hop_exchange_new(i);
        assert_int_equal(s_bind(exchange, "a", Q(1)), 0);
        assert_int_equal(s_bind(exchange, "b", Q(1)), 0);
        assert_int_equal(s_bind(exchange, "a", Q(2)), 0);
        assert_int_equal(hop_exchange_binding_count(exchange), 3);
        hop_exchange_destroy(&exchange);
    }
}

static void
test_bind_rejects_key_longer_than_255(void **state)
{
    (void)state;
    char key[HOP_EXCHANGE_KEY_MAX + 2];
    memset(key, 'k', sizeof key);
    for (int i = HOP_EXCHANGE_DIRECT; i <= HOP_EXCHANGE_TOPIC; i++) {
        hop_exchange_t *exchange = hop_exchange_new(i);
        assert_int_equal(hop_exchange_bind(exchange, key, HOP_EXCHANGE_KEY_MAX + 1, Q(1)), -1);
        assert_int_equal(hop_exchange_binding_count(exchange), 0);
        assert_int_equal(hop_exchange_unbind(exchange, key, HOP_EXCHANGE_KEY_MAX + 1, Q(1)), 1);
        assert_int_equal(hop_exchange_bind(exchange, key, HOP_EXCHANGE_KEY_MAX, Q(1)), 0);
        assert_int_equal(hop_exchange_binding_count(exchange), 1);
        hop_exchange_destroy(&exchange);
    }
}

static void
test_bind_copies_key(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_DIRECT);
    char key[] = "orders";
    assert_int_equal(hop_exchange_bind(exchange, key, strlen(key), Q(1)), 0);
    memcpy(key, "XXXXXX", 6);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(s_route(exchange, "orders", &route), 1);
    assert_int_equal(s_route(exchange, "XXXXXX", &route), 0);
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_bind_uses_only_key_len_bytes(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_DIRECT);
    const char *buffer = "orders.eu"; // bind "orders", not NUL-terminated where it ends
    assert_int_equal(hop_exchange_bind(exchange, buffer, 6, Q(1)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(s_route(exchange, "orders", &route), 1);
    assert_int_equal(s_route(exchange, "orders.eu", &route), 0);
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_bind_accepts_empty_key(void **state)
{
    (void)state;
    for (int i = HOP_EXCHANGE_DIRECT; i <= HOP_EXCHANGE_TOPIC; i++) {
        hop_exchange_t *exchange = hop_exchange_new(i);
        assert_int_equal(hop_exchange_bind(exchange, NULL, 0, Q(1)), 0);
        assert_int_equal(hop_exchange_bind(exchange, "", 0, Q(1)), 1);
        hop_route_t route;
        hop_route_init(&route);
        assert_int_equal(hop_exchange_route(exchange, NULL, 0, &route), 1);
        assert_int_equal(hop_exchange_unbind(exchange, NULL, 0, Q(1)), 0);
        assert_int_equal(hop_exchange_binding_count(exchange), 0);
        hop_route_fini(&route);
        hop_exchange_destroy(&exchange);
    }
}

static void
test_unbind_removes_binding(void **state)
{
    (void)state;
    for (int i = HOP_EXCHANGE_DIRECT; i <= HOP_EXCHANGE_TOPIC; i++) {
        hop_exchange_t *exchange = hop_exchange_new(i);
        assert_int_equal(s_bind(exchange, "a", Q(1)), 0);
        assert_int_equal(s_bind(exchange, "a", Q(2)), 0);
        assert_int_equal(s_unbind(exchange, "a", Q(1)), 0);
        assert_int_equal(hop_exchange_binding_count(exchange), 1);
        hop_route_t route;
        hop_route_init(&route);
        assert_int_equal(s_route(exchange, "a", &route), 1);
        assert_ptr_equal(route.queues[0], Q(2));
        hop_route_fini(&route);
        hop_exchange_destroy(&exchange);
    }
}

static void
test_unbind_returns_1_when_no_such_binding(void **state)
{
    (void)state;
    for (int i = HOP_EXCHANGE_DIRECT; i <= HOP_EXCHANGE_TOPIC; i++) {
        hop_exchange_t *exchange = hop_exchange_new(i);
        assert_int_equal(s_unbind(exchange, "a", Q(1)), 1);
        assert_int_equal(s_bind(exchange, "a", Q(1)), 0);
        assert_int_equal(s_unbind(exchange, "b", Q(1)), 1); // other key
        assert_int_equal(s_unbind(exchange, "a", Q(2)), 1); // other queue
        assert_int_equal(s_unbind(exchange, "a", Q(1)), 0);
        assert_int_equal(s_unbind(exchange, "a", Q(1)), 1); // already gone
        assert_int_equal(hop_exchange_binding_count(exchange), 0);
        hop_exchange_destroy(&exchange);
    }
}

static void
test_unbind_queue_removes_all_its_bindings(void **state)
{
    (void)state;
    for (int i = HOP_EXCHANGE_DIRECT; i <= HOP_EXCHANGE_TOPIC; i++) {
        hop_exchange_t *exchange = hop_exchange_new(i);
        assert_int_equal(s_bind(exchange, "a", Q(1)), 0);
        assert_int_equal(s_bind(exchange, "b", Q(1)), 0);
        assert_int_equal(s_bind(exchange, "c.#", Q(1)), 0);
        assert_int_equal(s_bind(exchange, "a", Q(2)), 0);
        assert_int_equal(hop_exchange_unbind_queue(exchange, Q(1)), 3);
        assert_int_equal(hop_exchange_binding_count(exchange), 1);
        assert_int_equal(hop_exchange_unbind_queue(exchange, Q(1)), 0);
        hop_route_t route;
        hop_route_init(&route);
        assert_int_equal(s_route(exchange, "a", &route), 1);
        assert_ptr_equal(route.queues[0], Q(2));
        assert_int_equal(s_route(exchange, "b", &route), i == HOP_EXCHANGE_FANOUT ? 1 : 0);
        hop_route_fini(&route);
        hop_exchange_destroy(&exchange);
    }
}

static void
test_unbind_queue_of_unknown_queue_returns_0(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_TOPIC);
    assert_int_equal(hop_exchange_unbind_queue(exchange, Q(7)), 0);
    assert_int_equal(s_bind(exchange, "a", Q(1)), 0);
    assert_int_equal(hop_exchange_unbind_queue(exchange, Q(7)), 0);
    assert_int_equal(hop_exchange_binding_count(exchange), 1);
    hop_exchange_destroy(&exchange);
}

static void
test_rebind_after_unbind_queue_routes_again(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_DIRECT);
    assert_int_equal(s_bind(exchange, "a", Q(1)), 0);
    assert_int_equal(hop_exchange_unbind_queue(exchange, Q(1)), 1);
    assert_int_equal(s_bind(exchange, "a", Q(1)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(s_route(exchange, "a", &route), 1);
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

// --- direct --------------------------------------------------------------------------------

static void
test_direct_routes_exact_key(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_DIRECT);
    assert_int_equal(s_bind(exchange, "orders", Q(1)), 0);
    assert_int_equal(s_bind(exchange, "invoices", Q(2)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(s_route(exchange, "orders", &route), 1);
    assert_ptr_equal(route.queues[0], Q(1));
    assert_int_equal(s_route(exchange, "invoices", &route), 1);
    assert_ptr_equal(route.queues[0], Q(2));
    assert_int_equal(s_route(exchange, "Orders", &route), 0);
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_direct_does_not_match_prefix_or_pattern(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_DIRECT);
    assert_int_equal(s_bind(exchange, "ab", Q(1)), 0);
    assert_int_equal(s_bind(exchange, "#", Q(2)), 0);
    assert_int_equal(s_bind(exchange, "a.*", Q(3)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(s_route(exchange, "a", &route), 0);
    assert_int_equal(s_route(exchange, "abc", &route), 0);
    assert_int_equal(s_route(exchange, "a.b", &route), 0);
    assert_int_equal(s_route(exchange, "", &route), 0);
    assert_int_equal(s_route(exchange, "#", &route), 1); // only as a literal key
    assert_ptr_equal(route.queues[0], Q(2));
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_direct_routes_to_every_queue_of_key(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_DIRECT);
    for (int q = 0; q < 10; q++)
        assert_int_equal(s_bind(exchange, "k", Q(q)), 0);
    assert_int_equal(s_bind(exchange, "other", Q(10)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(s_route(exchange, "k", &route), 10);
    for (int q = 0; q < 10; q++)
        assert_true(s_route_has(&route, Q(q)));
    s_assert_distinct(&route);
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_direct_empty_key_is_a_key_like_any_other(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_DIRECT);
    assert_int_equal(s_bind(exchange, "", Q(1)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(s_route(exchange, "", &route), 1);
    assert_int_equal(s_route(exchange, " ", &route), 0);
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_direct_keys_may_hold_nul_bytes(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_DIRECT);
    assert_int_equal(hop_exchange_bind(exchange, "a\0b", 3, Q(1)), 0);
    assert_int_equal(hop_exchange_bind(exchange, "a\0c", 3, Q(2)), 0);
    assert_int_equal(hop_exchange_bind(exchange, "a", 1, Q(3)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(hop_exchange_route(exchange, "a\0b", 3, &route), 1);
    assert_ptr_equal(route.queues[0], Q(1));
    hop_route_clear(&route);
    assert_int_equal(hop_exchange_route(exchange, "a", 1, &route), 1);
    assert_ptr_equal(route.queues[0], Q(3));
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_direct_routes_key_longer_than_255_literally(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_DIRECT);
    char key[4096];
    memset(key, 'k', sizeof key);
    assert_int_equal(hop_exchange_bind(exchange, key, HOP_EXCHANGE_KEY_MAX, Q(1)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(hop_exchange_route(exchange, key, sizeof key, &route), 0);
    assert_int_equal(hop_exchange_route(exchange, key, HOP_EXCHANGE_KEY_MAX, &route), 1);
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_direct_survives_bind_unbind_churn(void **state)
{
    (void)state;
    // Thousands of keys grow and shrink the hash tables through many resizes and backward-shift
    // deletions; every surviving key must still route, every removed one must not.
    enum { KEYS = 5000 };
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_DIRECT);
    char key[32];
    for (int k = 0; k < KEYS; k++) {
        int len = snprintf(key, sizeof key, "key-%d", k);
        assert_int_equal(hop_exchange_bind(exchange, key, (size_t)len, Q(k % 97)), 0);
    }
    for (int k = 0; k < KEYS; k += 3) {
        int len = snprintf(key, sizeof key, "key-%d", k);
        assert_int_equal(hop_exchange_unbind(exchange, key, (size_t)len, Q(k % 97)), 0);
    }
    hop_route_t route;
    hop_route_init(&route);
    for (int k = 0; k < KEYS; k++) {
        int len = snprintf(key, sizeof key, "key-%d", k);
        hop_route_clear(&route);
        size_t added = hop_exchange_route(exchange, key, (size_t)len, &route);
        if (k % 3 == 0) {
            assert_int_equal(added, 0);
        } else {
            assert_int_equal(added, 1);
            assert_ptr_equal(route.queues[0], Q(k % 97));
        }
    }
    for (int q = 0; q < 97; q++)
        hop_exchange_unbind_queue(exchange, Q(q));
    assert_int_equal(hop_exchange_binding_count(exchange), 0);
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

// --- fanout --------------------------------------------------------------------------------

static void
test_fanout_ignores_key(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_FANOUT);
    assert_int_equal(s_bind(exchange, "x", Q(1)), 0);
    assert_int_equal(s_bind(exchange, "", Q(2)), 0);
    hop_route_t route;
    hop_route_init(&route);
    const char *keys[] = {"", "x", "y", "a.b.c", "#"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        assert_int_equal(s_route(exchange, keys[i], &route), 2);
        assert_true(s_route_has(&route, Q(1)));
        assert_true(s_route_has(&route, Q(2)));
    }
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_fanout_delivers_once_to_queue_bound_twice(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_FANOUT);
    assert_int_equal(s_bind(exchange, "a", Q(1)), 0);
    assert_int_equal(s_bind(exchange, "b", Q(1)), 0);
    assert_int_equal(hop_exchange_binding_count(exchange), 2);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(s_route(exchange, "whatever", &route), 1);
    assert_ptr_equal(route.queues[0], Q(1));
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_fanout_keeps_routing_while_queue_has_a_binding(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_FANOUT);
    assert_int_equal(s_bind(exchange, "a", Q(1)), 0);
    assert_int_equal(s_bind(exchange, "b", Q(1)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(s_unbind(exchange, "a", Q(1)), 0);
    assert_int_equal(s_route(exchange, "", &route), 1);
    assert_int_equal(s_unbind(exchange, "b", Q(1)), 0);
    assert_int_equal(s_route(exchange, "", &route), 0);
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_fanout_routes_to_10000_distinct_queues(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_FANOUT);
    for (int q = 0; q < QUEUE_MAX; q++) {
        assert_int_equal(s_bind(exchange, "", Q(q)), 0);
        assert_int_equal(s_bind(exchange, "again", Q(q)), 0);
    }
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(s_route(exchange, "k", &route), QUEUE_MAX);
    assert_int_equal(route.size, QUEUE_MAX);
    s_assert_distinct(&route);
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

// --- foreach -------------------------------------------------------------------------------

typedef struct {
    size_t calls;
    size_t stop_at; // return 42 on this call (1-based); 0 never stops
    char keys[8][16];
    void *queues[8];
} visit_t;

static int
s_visit(const char *key, size_t key_len, void *queue, void *arg)
{
    visit_t *visit = arg;
    assert_int_equal(strlen(key), key_len); // NUL-terminated at key_len
    if (visit->calls < 8) {
        assert_true(key_len < sizeof visit->keys[0]);
        memcpy(visit->keys[visit->calls], key, key_len + 1);
        visit->queues[visit->calls] = queue;
    }
    visit->calls++;
    return visit->calls == visit->stop_at ? 42 : 0;
}

static bool
s_visited(const visit_t *visit, const char *key, void *queue)
{
    for (size_t i = 0; i < visit->calls && i < 8; i++)
        if (strcmp(visit->keys[i], key) == 0 && visit->queues[i] == queue)
            return true;
    return false;
}

static void
test_foreach_visits_every_binding_once(void **state)
{
    (void)state;
    for (int i = HOP_EXCHANGE_DIRECT; i <= HOP_EXCHANGE_TOPIC; i++) {
        hop_exchange_t *exchange = hop_exchange_new(i);
        assert_int_equal(s_bind(exchange, "a", Q(1)), 0);
        assert_int_equal(s_bind(exchange, "b.#", Q(1)), 0);
        assert_int_equal(s_bind(exchange, "a", Q(2)), 0);
        assert_int_equal(hop_exchange_bind(exchange, "cdef", 1, Q(3)), 0); // key "c"
        assert_int_equal(s_bind(exchange, "", Q(4)), 0);
        visit_t visit = {0};
        assert_int_equal(hop_exchange_foreach(exchange, s_visit, &visit), 0);
        assert_int_equal(visit.calls, 5);
        assert_true(s_visited(&visit, "a", Q(1)));
        assert_true(s_visited(&visit, "b.#", Q(1)));
        assert_true(s_visited(&visit, "a", Q(2)));
        assert_true(s_visited(&visit, "c", Q(3)));
        assert_true(s_visited(&visit, "", Q(4)));
        hop_exchange_destroy(&exchange);
    }
}

static void
test_foreach_stops_and_returns_nonzero(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_TOPIC);
    for (int q = 0; q < 5; q++)
        assert_int_equal(s_bind(exchange, "k", Q(q)), 0);
    visit_t visit = {.stop_at = 2};
    assert_int_equal(hop_exchange_foreach(exchange, s_visit, &visit), 42);
    assert_int_equal(visit.calls, 2);
    hop_exchange_destroy(&exchange);
}

static void
test_foreach_order_is_stable_without_changes(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_DIRECT);
    for (int q = 0; q < 8; q++)
        assert_int_equal(s_bind(exchange, q % 2 ? "odd" : "even", Q(q)), 0);
    visit_t first = {0};
    visit_t second = {0};
    assert_int_equal(hop_exchange_foreach(exchange, s_visit, &first), 0);
    hop_route_t route;
    hop_route_init(&route);
    s_route(exchange, "odd", &route); // routing is not a change
    assert_int_equal(hop_exchange_foreach(exchange, s_visit, &second), 0);
    assert_int_equal(first.calls, 8);
    assert_memory_equal(first.queues, second.queues, sizeof first.queues);
    assert_memory_equal(first.keys, second.keys, sizeof first.keys);
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_foreach_on_empty_exchange_calls_nothing(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_FANOUT);
    visit_t visit = {.stop_at = 1};
    assert_int_equal(hop_exchange_foreach(exchange, s_visit, &visit), 0);
    assert_int_equal(visit.calls, 0);
    hop_exchange_destroy(&exchange);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_parse_accepts_known_names),
        cmocka_unit_test(test_type_parse_rejects_unknown_names),
        cmocka_unit_test(test_type_name_round_trips),
        cmocka_unit_test(test_new_reports_type),
        cmocka_unit_test(test_destroy_nulls_pointer_and_accepts_null),
        cmocka_unit_test(test_destroy_frees_bindings_of_every_type),
        cmocka_unit_test(test_route_init_is_empty),
        cmocka_unit_test(test_route_clear_keeps_memory),
        cmocka_unit_test(test_route_appends_without_clearing),
        cmocka_unit_test(test_route_skips_queues_already_in_route),
        cmocka_unit_test(test_route_skips_queues_put_there_by_another_exchange),
        cmocka_unit_test(test_route_on_empty_exchange_adds_nothing),
        cmocka_unit_test(test_bind_returns_1_when_binding_exists),
        cmocka_unit_test(test_bind_same_queue_with_two_keys_makes_two_bindings),
        cmocka_unit_test(test_bind_rejects_key_longer_than_255),
        cmocka_unit_test(test_bind_copies_key),
        cmocka_unit_test(test_bind_uses_only_key_len_bytes),
        cmocka_unit_test(test_bind_accepts_empty_key),
        cmocka_unit_test(test_unbind_removes_binding),
        cmocka_unit_test(test_unbind_returns_1_when_no_such_binding),
        cmocka_unit_test(test_unbind_queue_removes_all_its_bindings),
        cmocka_unit_test(test_unbind_queue_of_unknown_queue_returns_0),
        cmocka_unit_test(test_rebind_after_unbind_queue_routes_again),
        cmocka_unit_test(test_direct_routes_exact_key),
        cmocka_unit_test(test_direct_does_not_match_prefix_or_pattern),
        cmocka_unit_test(test_direct_routes_to_every_queue_of_key),
        cmocka_unit_test(test_direct_empty_key_is_a_key_like_any_other),
        cmocka_unit_test(test_direct_keys_may_hold_nul_bytes),
        cmocka_unit_test(test_direct_routes_key_longer_than_255_literally),
        cmocka_unit_test(test_direct_survives_bind_unbind_churn),
        cmocka_unit_test(test_fanout_ignores_key),
        cmocka_unit_test(test_fanout_delivers_once_to_queue_bound_twice),
        cmocka_unit_test(test_fanout_keeps_routing_while_queue_has_a_binding),
        cmocka_unit_test(test_fanout_routes_to_10000_distinct_queues),
        cmocka_unit_test(test_foreach_visits_every_binding_once),
        cmocka_unit_test(test_foreach_stops_and_returns_nonzero),
        cmocka_unit_test(test_foreach_order_is_stable_without_changes),
        cmocka_unit_test(test_foreach_on_empty_exchange_calls_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
