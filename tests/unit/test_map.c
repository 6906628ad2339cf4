// tests/unit/test_map.c - the byte-string hash map: lookups, binary keys, growth, and
// backward-shift deletion checked against a reference under random churn.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"

#define V(n) ((void *)(uintptr_t)(n)) // values are borrowed and never dereferenced

// Seeded xorshift64: the same sequence on every libc.
static uint64_t s_rng;

static uint64_t
s_rand(void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}

static void
s_put(hop_map_t *map, const char *key, void *value)
{
    hop_map_put(map, key, strlen(key), value);
}

static void *
s_get(const hop_map_t *map, const char *key)
{
    return hop_map_get(map, key, strlen(key));
}

// Binary key for id: its 4 bytes little-endian (so small ids hold NULs), then id % 4 bytes
// of 0x00/0xff so that keys differ in length too. Returns the length.
static size_t
s_key(uint32_t id, uint8_t *key)
{
    for (int i = 0; i < 4; i++)
        key[i] = (uint8_t)(id >> (8 * i));
    size_t len = 4 + id % 4;
    for (size_t i = 4; i < len; i++)
        key[i] = i % 2 ? 0xff : 0x00;
    return len;
}

// Basics -----------------------------------------------------------------------------------

static void
test_new_map_is_empty(void **state)
{
    (void)state;
    hop_map_t *map = hop_map_new();
    assert_int_equal(hop_map_size(map), 0);
    assert_null(s_get(map, "a"));
    assert_null(hop_map_remove(map, "a", 1));
    size_t cursor = 0;
    assert_int_equal(hop_map_next(map, &cursor, NULL, NULL, NULL), 0);
    hop_map_destroy(&map);
    assert_null(map);
    hop_map_destroy(&map); // accepts NULL
}

static void
test_put_then_get(void **state)
{
    (void)state;
    hop_map_t *map = hop_map_new();
    s_put(map, "orders", V(1));
    s_put(map, "invoices", V(2));
    assert_int_equal(hop_map_size(map), 2);
    assert_ptr_equal(s_get(map, "orders"), V(1));
    assert_ptr_equal(s_get(map, "invoices"), V(2));
    assert_null(s_get(map, "order"));
    assert_null(s_get(map, "orders2"));
    assert_null(s_get(map, "Orders"));
    hop_map_destroy(&map);
}

static void
test_put_replaces_value(void **state)
{
    (void)state;
    hop_map_t *map = hop_map_new();
    s_put(map, "k", V(1));
    s_put(map, "k", V(2));
    assert_int_equal(hop_map_size(map), 1);
    assert_ptr_equal(s_get(map, "k"), V(2));
    assert_ptr_equal(hop_map_remove(map, "k", 1), V(2));
    assert_int_equal(hop_map_size(map), 0);
    assert_null(s_get(map, "k"));
    hop_map_destroy(&map);
}

static void
test_remove_returns_value_and_forgets_key(void **state)
{
    (void)state;
    hop_map_t *map = hop_map_new();
    s_put(map, "a", V(1));
    s_put(map, "b", V(2));
    assert_ptr_equal(hop_map_remove(map, "a", 1), V(1));
    assert_int_equal(hop_map_size(map), 1);
    assert_null(s_get(map, "a"));
    assert_ptr_equal(s_get(map, "b"), V(2));
    assert_null(hop_map_remove(map, "a", 1)); // twice: nothing left to remove
    assert_null(hop_map_remove(map, "zzz", 3));
    assert_int_equal(hop_map_size(map), 1);
    s_put(map, "a", V(3)); // and back again
    assert_ptr_equal(s_get(map, "a"), V(3));
    hop_map_destroy(&map);
}

static void
test_keys_are_copied(void **state)
{
    (void)state;
    hop_map_t *map = hop_map_new();
    char key[] = "queue-1";
    s_put(map, key, V(1));
    key[6] = '2';
    assert_null(s_get(map, key));
    assert_ptr_equal(s_get(map, "queue-1"), V(1));
    size_t cursor = 0;
    const void *stored;
    size_t len;
    assert_int_equal(hop_map_next(map, &cursor, &stored, &len, NULL), 1);
    assert_ptr_not_equal(stored, key);
    assert_int_equal(len, 7);
    assert_memory_equal(stored, "queue-1", 7);
    hop_map_destroy(&map);
}

static void
test_binary_keys_with_nul_bytes(void **state)
{
    (void)state;
    hop_map_t *map = hop_map_new();
    // ROUTER ids: five bytes, the first a zero. Every prefix and variant is a different key.
    const uint8_t id1[] = {0x00, 0x6b, 0x8b, 0x45, 0x67};
    const uint8_t id2[] = {0x00, 0x6b, 0x8b, 0x45, 0x68};
    const uint8_t nul2[] = {0x00, 0x00};
    hop_map_put(map, id1, sizeof id1, V(1));
    hop_map_put(map, id2, sizeof id2, V(2));
    hop_map_put(map, "a\0b", 3, V(3));
    hop_map_put(map, "a\0c", 3, V(4));
    hop_map_put(map, "a", 1, V(5));
    hop_map_put(map, "a\0", 2, V(6));
    hop_map_put(map, nul2, 1, V(7));
    hop_map_put(map, nul2, 2, V(8));
    assert_int_equal(hop_map_size(map), 8);
    assert_ptr_equal(hop_map_get(map, id1, sizeof id1), V(1));
    assert_ptr_equal(hop_map_get(map, id2, sizeof id2), V(2));
    assert_ptr_equal(hop_map_get(map, "a\0b", 3), V(3));
    assert_ptr_equal(hop_map_get(map, "a\0c", 3), V(4));
    assert_ptr_equal(hop_map_get(map, "a", 1), V(5));
    assert_ptr_equal(hop_map_get(map, "a\0", 2), V(6));
    assert_ptr_equal(hop_map_get(map, nul2, 1), V(7));
    assert_ptr_equal(hop_map_get(map, nul2, 2), V(8));
    assert_null(hop_map_get(map, id1, 4));
    assert_null(hop_map_get(map, nul2, 0));
    assert_ptr_equal(hop_map_remove(map, "a\0b", 3), V(3));
    assert_ptr_equal(hop_map_get(map, "a\0c", 3), V(4)); // not confused by the shared "a\0"
    assert_ptr_equal(hop_map_get(map, "a", 1), V(5));
    hop_map_destroy(&map);
}

static void
test_key_is_only_len_bytes(void **state)
{
    (void)state;
    hop_map_t *map = hop_map_new();
    hop_map_put(map, "abcdef", 3, V(1)); // a span of a longer buffer, as in a header frame
    assert_ptr_equal(s_get(map, "abc"), V(1));
    assert_ptr_equal(hop_map_get(map, "abcxyz", 3), V(1));
    assert_null(s_get(map, "abcdef"));
    hop_map_destroy(&map);
}

static void
test_empty_key(void **state)
{
    (void)state;
    hop_map_t *map = hop_map_new();
    s_put(map, "", V(1)); // the default exchange is named ""
    s_put(map, "x", V(2));
    assert_int_equal(hop_map_size(map), 2);
    assert_ptr_equal(s_get(map, ""), V(1));
    assert_ptr_equal(hop_map_get(map, "ignored", 0), V(1));
    size_t cursor = 0, len = 99, seen = 0;
    void *value;
    while (hop_map_next(map, &cursor, NULL, &len, &value))
        if (value == V(1)) {
            assert_int_equal(len, 0);
            seen++;
        }
    assert_int_equal(seen, 1);
    assert_ptr_equal(hop_map_remove(map, "", 0), V(1));
    assert_null(s_get(map, ""));
    assert_ptr_equal(s_get(map, "x"), V(2));
    hop_map_destroy(&map);
}

static void
test_hash_is_stable(void **state)
{
    (void)state;
    // A function of the bytes alone: same value on every call, from any address.
    uint8_t key[8], copy[8];
    size_t len = s_key(12345, key);
    memcpy(copy, key, len);
    uint64_t h = hop_hash(key, len);
    for (int i = 0; i < 3; i++)
        assert_int_equal(hop_hash(key, len), h);
    assert_int_equal(hop_hash(copy, len), h);
    assert_int_equal(hop_hash("a", 1), hop_hash("ab", 1)); // only len bytes
    assert_true(hop_hash("a", 1) != hop_hash("a\0", 2));   // NULs count
    assert_true(hop_hash("", 0) != hop_hash("\0", 1));
}

static void
test_hash_matches_fnv1a_vectors(void **state)
{
    (void)state;
    // map.h promises FNV-1a for "other tables": published 64-bit vectors (offset basis
    // 14695981039346656037, prime 1099511628211).
    assert_int_equal(hop_hash("", 0), 0xcbf29ce484222325ull);
    assert_int_equal(hop_hash("a", 1), 0xaf63dc4c8601ec8cull);
    assert_int_equal(hop_hash("foobar", 6), 0x85944171f73967e8ull);
}

// Growth and deletion ------------------------------------------------------------------------

static void
test_grows_to_100000_keys(void **state)
{
    (void)state;
    enum { N = 100000 };
    hop_map_t *map = hop_map_new();
    char key[32];
    for (uint32_t i = 0; i < N; i++) {
        int len = snprintf(key, sizeof key, "queue.%u", i);
        hop_map_put(map, key, (size_t)len, V(i + 1));
        assert_int_equal(hop_map_size(map), i + 1);
    }
    for (uint32_t i = 0; i < N; i++) {
        int len = snprintf(key, sizeof key, "queue.%u", i);
        assert_ptr_equal(hop_map_get(map, key, (size_t)len), V(i + 1));
    }
    assert_null(s_get(map, "queue.100000"));
    for (uint32_t i = 0; i < N; i += 2) { // remove every other key, then check the rest
        int len = snprintf(key, sizeof key, "queue.%u", i);
        assert_ptr_equal(hop_map_remove(map, key, (size_t)len), V(i + 1));
    }
    assert_int_equal(hop_map_size(map), N / 2);
    for (uint32_t i = 0; i < N; i++) {
        int len = snprintf(key, sizeof key, "queue.%u", i);
        assert_ptr_equal(hop_map_get(map, key, (size_t)len), i % 2 ? V(i + 1) : NULL);
    }
    hop_map_destroy(&map); // frees the 50,000 keys left (LSan)
}

// Finds ids whose keys share one home slot among the 16 slots of a new map (before it grows;
// should the initial size change, the test still passes, it just probes less).
static void
s_colliding_ids(uint64_t home, uint32_t *ids, size_t n)
{
    size_t found = 0;
    uint8_t key[8];
    for (uint32_t id = 0; found < n; id++) {
        size_t len = s_key(id, key);
        if ((hop_hash(key, len) & 15) == home)
            ids[found++] = id;
    }
}

static void
test_remove_from_probe_run_that_wraps(void **state)
{
    (void)state;
    // Four keys at home 14 and four at home 15 fill 14, 15, 0..5: a run across the end of the
    // table. Removing each position in turn must keep every other key reachable.
    uint32_t ids[8];
    s_colliding_ids(14, ids, 4);
    s_colliding_ids(15, ids + 4, 4);
    uint8_t key[8];
    for (size_t victim = 0; victim < 8; victim++) {
        hop_map_t *map = hop_map_new();
        for (size_t i = 0; i < 8; i++) {
            size_t len = s_key(ids[(i * 5 + victim) % 8], key); // vary insertion order too
            hop_map_put(map, key, len, V(ids[(i * 5 + victim) % 8] + 1));
        }
        size_t len = s_key(ids[victim], key);
        assert_ptr_equal(hop_map_remove(map, key, len), V(ids[victim] + 1));
        assert_int_equal(hop_map_size(map), 7);
        for (size_t i = 0; i < 8; i++) {
            len = s_key(ids[i], key);
            assert_ptr_equal(hop_map_get(map, key, len), i == victim ? NULL : V(ids[i] + 1));
        }
        for (size_t i = 0; i < 8; i++) { // then drain it completely, one key at a time
            if (i == victim)
                continue;
            len = s_key(ids[i], key);
            assert_ptr_equal(hop_map_remove(map, key, len), V(ids[i] + 1));
            for (size_t j = i + 1; j < 8; j++) {
                if (j == victim)
                    continue;
                len = s_key(ids[j], key);
                assert_ptr_equal(hop_map_get(map, key, len), V(ids[j] + 1));
            }
        }
        assert_int_equal(hop_map_size(map), 0);
        hop_map_destroy(&map);
    }
}

// Random puts and removes over a key space of n ids, checked against ref[id] (NULL = absent).
static void
s_churn(uint32_t n, int ops, uint64_t seed)
{
    s_rng = seed;
    hop_map_t *map = hop_map_new();
    void **ref = calloc(n, sizeof *ref);
    size_t size = 0;
    uint8_t key[8];
    for (int op = 0; op < ops; op++) {
        uint32_t id = (uint32_t)(s_rand() % n);
        size_t len = s_key(id, key);
        unsigned r = (unsigned)(s_rand() % 100);
        if (r < 40) { // remove-heavy: the map keeps shrinking and regrowing its runs
            void *value = V((uint64_t)op + 1);
            size += ref[id] == NULL;
            ref[id] = value;
            hop_map_put(map, key, len, value);
        } else if (r < 85) {
            assert_ptr_equal(hop_map_remove(map, key, len), ref[id]);
            size -= ref[id] != NULL;
            ref[id] = NULL;
        } else
            assert_ptr_equal(hop_map_get(map, key, len), ref[id]);
        assert_int_equal(hop_map_size(map), size);
        if (op % 1000 == 999)
            for (uint32_t i = 0; i < n; i++) {
                len = s_key(i, key);
                assert_ptr_equal(hop_map_get(map, key, len), ref[i]);
            }
    }
    for (uint32_t i = 0; i < n; i++) {
        size_t len = s_key(i, key);
        assert_ptr_equal(hop_map_get(map, key, len), ref[i]);
    }
    free(ref);
    hop_map_destroy(&map);
}

static void
test_churn_small_table_against_reference(void **state)
{
    (void)state;
    s_churn(24, 200000, 0x9e3779b97f4a7c15ull); // stays within 32-64 slots: runs wrap often
}

static void
test_churn_large_table_against_reference(void **state)
{
    (void)state;
    s_churn(20000, 400000, 0xbf58476d1ce4e5b9ull);
}

static void
test_remove_everything_then_reuse(void **state)
{
    (void)state;
    hop_map_t *map = hop_map_new();
    uint8_t key[8];
    for (int round = 0; round < 3; round++) {
        for (uint32_t i = 0; i < 1000; i++)
            hop_map_put(map, key, s_key(i, key), V(i + 1 + (uint32_t)round));
        assert_int_equal(hop_map_size(map), 1000);
        for (uint32_t i = 0; i < 1000; i++)
            assert_ptr_equal(hop_map_remove(map, key, s_key(999 - i, key)),
                             V(999 - i + 1 + (uint32_t)round));
        assert_int_equal(hop_map_size(map), 0);
        size_t cursor = 0;
        assert_int_equal(hop_map_next(map, &cursor, NULL, NULL, NULL), 0);
    }
    hop_map_destroy(&map);
}

// Iteration --------------------------------------------------------------------------------

static void
test_next_visits_each_key_exactly_once(void **state)
{
    (void)state;
    enum { N = 5000 };
    hop_map_t *map = hop_map_new();
    uint8_t key[8];
    for (uint32_t i = 0; i < N; i++)
        hop_map_put(map, key, s_key(i, key), V(i + 1));
    for (uint32_t i = 0; i < N; i += 3) // holes left by removals are skipped
        hop_map_remove(map, key, s_key(i, key));
    unsigned char *seen = calloc(N, 1);
    size_t cursor = 0, visits = 0, len;
    const void *k;
    void *value;
    while (hop_map_next(map, &cursor, &k, &len, &value)) {
        uint32_t id = (uint32_t)((uintptr_t)value - 1);
        assert_true(id < N);
        assert_true(id % 3 != 0);
        assert_int_equal(seen[id], 0);
        seen[id] = 1;
        uint8_t expect[8];
        assert_int_equal(len, s_key(id, expect)); // key, len and value belong together
        assert_memory_equal(k, expect, len);
        visits++;
    }
    assert_int_equal(visits, hop_map_size(map));
    assert_int_equal(visits, N - (N + 2) / 3);
    assert_int_equal(hop_map_next(map, &cursor, &k, &len, &value), 0); // stays at the end
    free(seen);
    hop_map_destroy(&map);
}

static void
test_next_accepts_null_outputs(void **state)
{
    (void)state;
    hop_map_t *map = hop_map_new();
    s_put(map, "a", V(1));
    s_put(map, "b", V(2));
    size_t cursor = 0, n = 0;
    while (hop_map_next(map, &cursor, NULL, NULL, NULL))
        n++;
    assert_int_equal(n, 2);
    hop_map_destroy(&map);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_map_is_empty),
        cmocka_unit_test(test_put_then_get),
        cmocka_unit_test(test_put_replaces_value),
        cmocka_unit_test(test_remove_returns_value_and_forgets_key),
        cmocka_unit_test(test_keys_are_copied),
        cmocka_unit_test(test_binary_keys_with_nul_bytes),
        cmocka_unit_test(test_key_is_only_len_bytes),
        cmocka_unit_test(test_empty_key),
        cmocka_unit_test(test_hash_is_stable),
        cmocka_unit_test(test_hash_matches_fnv1a_vectors),
        cmocka_unit_test(test_grows_to_100000_keys),
        cmocka_unit_test(test_remove_from_probe_run_that_wraps),
        cmocka_unit_test(test_churn_small_table_against_reference),
        cmocka_unit_test(test_churn_large_table_against_reference),
        cmocka_unit_test(test_remove_everything_then_reuse),
        cmocka_unit_test(test_next_visits_each_key_exactly_once),
        cmocka_unit_test(test_next_accepts_null_outputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
