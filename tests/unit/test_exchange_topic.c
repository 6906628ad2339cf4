// tests/unit/test_exchange_topic.c - topic exchange matching, checked against RabbitMQ's rules.
//
// RabbitMQ splits "" into no words at all (rabbit_db_topic_exchange:split_topic_key/1), so "*"
// does not match the empty routing key while "#" and "" do; its own topic test expects exactly
// that, and test_rabbitmq_topic_suite below replays it.
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

static char s_queues[QUEUE_MAX]; // addresses stand in for queues
#define Q(i) ((void *)&s_queues[(i)])

typedef struct {
    const char *pattern;
    const char *key;
    bool match;
} vector_t;

static int
s_bind(hop_exchange_t *exchange, const char *key, void *queue)
{
    return hop_exchange_bind(exchange, key, strlen(key), queue);
}

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

// --- reference matcher: the rules written as plainly as possible ----------------------------

#define WORDS_MAX 16

// Splits like RabbitMQ: "" is no words; otherwise n dots make n + 1 words. Returns the count.
static size_t
s_split(const char *text, char words[WORDS_MAX][16])
{
    if (!*text)
        return 0;
    size_t count = 0;
    const char *word = text;
    for (;;) {
        const char *dot = strchr(word, '.');
        size_t len = dot ? (size_t)(dot - word) : strlen(word);
        assert_true(count < WORDS_MAX && len < 16);
        memcpy(words[count], word, len);
        words[count++][len] = '\0';
        if (!dot)
            return count;
        word = dot + 1;
    }
}

static bool
s_reference_words(char (*pattern)[16], size_t patterns, char (*key)[16], size_t keys)
{
    if (patterns == 0)
        return keys == 0;
    if (strcmp(pattern[0], "#") == 0) {
        for (size_t skip = 0; skip <= keys; skip++)
            if (s_reference_words(pattern + 1, patterns - 1, key + skip, keys - skip))
                return true;
        return false;
    }
    if (keys == 0)
        return false;
    if (strcmp(pattern[0], "*") != 0 && strcmp(pattern[0], key[0]) != 0)
        return false;
    return s_reference_words(pattern + 1, patterns - 1, key + 1, keys - 1);
}

static bool
s_reference(const char *pattern, const char *key)
{
    char pattern_words[WORDS_MAX][16];
    char key_words[WORDS_MAX][16];
    size_t patterns = s_split(pattern, pattern_words);
    size_t keys = s_split(key, key_words);
    return s_reference_words(pattern_words, patterns, key_words, keys);
}

// Binds each vector's pattern alone in a fresh exchange and routes its key.
static void
s_check_vectors(const vector_t *vectors, size_t count)
{
    hop_route_t route;
    hop_route_init(&route);
    for (size_t i = 0; i < count; i++) {
        const vector_t *v = &vectors[i];
        hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_TOPIC);
        assert_int_equal(s_bind(exchange, v->pattern, Q(1)), 0);
        size_t added = s_route(exchange, v->key, &route);
        if (added != (v->match ? 1u : 0u) || s_reference(v->pattern, v->key) != v->match)
            fail_msg("pattern \"%s\" key \"%s\": expected %s, exchange %s, reference %s",
                     v->pattern, v->key, v->match ? "match" : "no match",
                     added ? "matched" : "did not",
                     s_reference(v->pattern, v->key) ? "matches" : "does not");
        hop_exchange_destroy(&exchange);
    }
    hop_route_fini(&route);
}

#define CHECK_VECTORS(vectors) s_check_vectors((vectors), sizeof(vectors) / sizeof((vectors)[0]))

// --- vectors -------------------------------------------------------------------------------

static void
test_literal_patterns_match_whole_key(void **state)
{
    (void)state;
    static const vector_t vectors[] = {
        {"a.b.c", "a.b.c", true},  {"a.b.c", "a.b", false},       {"a.b", "a.b.c", false},
        {"a.b.c", "a.b.d", false}, {"A.b", "a.b", false},         {"a.b", "a.bc", false},
        {"vodka", "vodka", true},  {"vodka", "vodka.gin", false},
    };
    CHECK_VECTORS(vectors);
}

static void
test_star_matches_exactly_one_word(void **state)
{
    (void)state;
    static const vector_t vectors[] = {
        {"*", "a", true},        {"*", "a.b", false},         {"a.*", "a.b", true},
        {"a.*", "a", false},     {"a.*", "a.b.c", false},     {"a.*.c", "a.b.c", true},
        {"a.*.c", "a.c", false}, {"a.*.c", "a.b.b.c", false}, {"*.*", "a.b", true},
        {"*.*.*", "a.b", false}, {"*.b.*", "a.b.c", true},    {"*.b.*", "a.c.b", false},
    };
    CHECK_VECTORS(vectors);
}

static void
test_hash_at_start_matches_zero_or_more_words(void **state)
{
    (void)state;
    static const vector_t vectors[] = {
        {"#.c", "c", true},    {"#.c", "a.b.c", true}, {"#.c", "a.b", false},
        {"#.c", "c.a", false}, {"#.b.c", "b.c", true}, {"#.b.c", "x.y.b.c", true},
    };
    CHECK_VECTORS(vectors);
}

static void
test_hash_in_middle_matches_zero_or_more_words(void **state)
{
    (void)state;
    static const vector_t vectors[] = {
        {"a.#.c", "a.c", true},       {"a.#.c", "a.b.c", true},
        {"a.#.c", "a.b.b.b.c", true}, {"a.#.c", "a.b.b", false},
        {"a.#.c", "b.a.c", false},    {"a.#.b", "a.b", true},
        {"#.b.#", "b", true},         {"#.b.#", "a.b.c", true},
        {"#.b.#", "a.c", false},      {"a.#.b.#.c", "a.b.c", true},
        {"a.#.b.#.c", "a.c", false},  {"a.#.b.#.c", "a.x.b.y.z.c", true},
    };
    CHECK_VECTORS(vectors);
}

static void
test_hash_at_end_matches_zero_or_more_words(void **state)
{
    (void)state;
    static const vector_t vectors[] = {
        {"a.#", "a", true},   {"a.#", "a.b", true}, {"a.#", "a.b.c.d", true}, {"a.#", "b.a", false},
        {"a.#", "ab", false}, {"#", "a", true},     {"#", "a.b.c", true},
    };
    CHECK_VECTORS(vectors);
}

static void
test_consecutive_hashes_act_as_one(void **state)
{
    (void)state;
    static const vector_t vectors[] = {
        {"#.#", "", true},
        {"#.#", "a", true},
        {"#.#", "a.b.c", true},
        {"#.#.#", "a", true},
        {"a.#.#", "a", true},
        {"a.#.#.b", "a.b", true},
        {"a.#.#.b", "a.x.y.b", true},
        {"a.#.#.b", "a.x", false},
        {"a.b.#.#", "a.b", true},
    };
    CHECK_VECTORS(vectors);
}

static void
test_hash_and_star_combine(void **state)
{
    (void)state;
    static const vector_t vectors[] = {
        {"#.*", "a", true},     {"#.*", "a.b.c", true}, {"*.#", "a", true},
        {"*.#", "a.b.c", true}, {"#.*.#", "x", true},   {"*.*.#", "a", false},
        {"#.*.*", "a.b", true}, {"#.*.*", "a", false},  {"*.#.*", "a.b", true},
        {"*.#.*", "a", false},
    };
    CHECK_VECTORS(vectors);
}

static void
test_empty_words_are_words(void **state)
{
    (void)state;
    // "a..b" is a, "", b; ".a" is "", a; "a." is a, ""; "." is "", "".
    static const vector_t vectors[] = {
        {"a.*.b", "a..b", true},  {"a.b", "a..b", false},  {"a..b", "a..b", true},
        {"a..b", "a.x.b", false}, {"a.#.b", "a..b", true}, {"*.a", ".a", true},
        {"a", ".a", false},       {"a.*", "a.", true},     {"a", "a.", false},
        {"a.#", "a.", true},      {"*.*", ".", true},      {"*", ".", false},
        {"#", ".", true},         {".", ".", true},        {"", ".", false},
        {"#.", "a.", true},       {".#", ".", true},       {"a.", "a.", true},
    };
    CHECK_VECTORS(vectors);
}

static void
test_empty_routing_key_has_no_words(void **state)
{
    (void)state;
    // As in RabbitMQ: only patterns whose words are all "#", and "" itself, match "".
    static const vector_t vectors[] = {
        {"#", "", true},   {"#.#", "", true},  {"#.#.#", "", true}, {"", "", true},
        {"*", "", false},  {"*.#", "", false}, {"#.*", "", false},  {"#.*.#", "", false},
        {"#.", "", false}, {".#", "", false},  {"a.#", "", false},  {"", "a", false},
    };
    CHECK_VECTORS(vectors);
}

static void
test_wildcards_count_only_as_whole_words(void **state)
{
    (void)state;
    static const vector_t vectors[] = {
        {"a*", "a*", true},   {"a*", "ab", false}, {"a*", "a", false},      {"a#", "a#", true},
        {"a#", "a.b", false}, {"#a", "a", false},  {"*a.b", "xa.b", false}, {"a.b", "a.*", false},
        {"*", "*", true},     {"#", "#", true},    {"a.#", "a.#", true},
    };
    CHECK_VECTORS(vectors);
}

// --- whole-exchange behaviour --------------------------------------------------------------

static void
test_rabbitmq_topic_suite(void **state)
{
    (void)state;
    // RabbitMQ's own topic matching test: 26 bindings t1..t26 (queue i is Q(i)), expected routes,
    // then the same after unbinding t1, t5, t11, t19 and t21.
    static const char *const patterns[] = {
        NULL,    "a.b.c",         "a.*.c", "a.#.b", "a.b.b.c", "#",     "#.#",   "#.b", "*.*",
        "a.*",   "*.b.c",         "a.#",   "a.#.#", "b.b.c",   "a.b.b", "a.b",   "b.c", "",
        "*.*.*", "vodka.martini", "a.b.c", "*.#",   "#.*.#",   "*.#.#", "#.#.#", "*",   "#.b.#",
    };
    typedef struct {
        const char *key;
        int queues[16]; // 0-terminated
    } expect_t;
    static const expect_t before[] = {
        {"a.b.c", {1, 2, 5, 6, 10, 11, 12, 18, 20, 21, 22, 23, 24, 26}},
        {"a.b", {3, 5, 6, 7, 8, 9, 11, 12, 15, 21, 22, 23, 24, 26}},
        {"a.b.b", {3, 5, 6, 7, 11, 12, 14, 18, 21, 22, 23, 24, 26}},
        {"", {5, 6, 17, 24}},
        {"b.c.c", {5, 6, 18, 21, 22, 23, 24, 26}},
        {"a.a.a.a.a", {5, 6, 11, 12, 21, 22, 23, 24}},
        {"vodka.gin", {5, 6, 8, 21, 22, 23, 24}},
        {"vodka.martini", {5, 6, 8, 19, 21, 22, 23, 24}},
        {"b.b.c", {5, 6, 10, 13, 18, 21, 22, 23, 24, 26}},
        {"nothing.here.at.all", {5, 6, 21, 22, 23, 24}},
        {"oneword", {5, 6, 21, 22, 23, 24, 25}},
    };
    static const expect_t after[] = {
        {"a.b.c", {2, 6, 10, 12, 18, 20, 22, 23, 24, 26}},
        {"a.b", {3, 6, 7, 8, 9, 12, 15, 22, 23, 24, 26}},
        {"a.b.b", {3, 6, 7, 12, 14, 18, 22, 23, 24, 26}},
        {"", {6, 17, 24}},
        {"b.c.c", {6, 18, 22, 23, 24, 26}},
        {"a.a.a.a.a", {6, 12, 22, 23, 24}},
        {"vodka.gin", {6, 8, 22, 23, 24}},
        {"vodka.martini", {6, 8, 22, 23, 24}},
        {"b.b.c", {6, 10, 13, 18, 22, 23, 24, 26}},
        {"nothing.here.at.all", {6, 22, 23, 24}},
        {"oneword", {6, 22, 23, 24, 25}},
    };
    static const int removed[] = {1, 5, 11, 19, 21};

    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_TOPIC);
    for (int t = 1; t <= 26; t++)
        assert_int_equal(s_bind(exchange, patterns[t], Q(t)), 0);
    hop_route_t route;
    hop_route_init(&route);
    for (int pass = 0; pass < 2; pass++) {
        const expect_t *expects = pass == 0 ? before : after;
        for (size_t e = 0; e < 11; e++) {
            size_t expected = 0;
            while (expects[e].queues[expected])
                expected++;
            if (s_route(exchange, expects[e].key, &route) != expected)
                fail_msg("key \"%s\": routed %zu queues, expected %zu", expects[e].key, route.size,
                         expected);
            for (size_t i = 0; i < expected; i++)
                if (!s_route_has(&route, Q(expects[e].queues[i])))
                    fail_msg("key \"%s\": t%d missing", expects[e].key, expects[e].queues[i]);
        }
        if (pass == 0)
            for (size_t r = 0; r < sizeof removed / sizeof removed[0]; r++)
                assert_int_equal(hop_exchange_unbind(exchange, patterns[removed[r]],
                                                     strlen(patterns[removed[r]]), Q(removed[r])),
                                 0);
    }
    for (int t = 1; t <= 26; t++)
        hop_exchange_unbind_queue(exchange, Q(t));
    assert_int_equal(hop_exchange_binding_count(exchange), 0);
    assert_int_equal(s_route(exchange, "a.b.c", &route), 0);
    assert_int_equal(s_route(exchange, "", &route), 0);
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_queue_matched_by_several_patterns_is_routed_once(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_TOPIC);
    const char *patterns[] = {"#", "a.*", "a.b", "*.b", "#.b", "a.#", "#.#"};
    for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++)
        assert_int_equal(s_bind(exchange, patterns[i], Q(1)), 0);
    assert_int_equal(s_bind(exchange, "a.b", Q(2)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(s_route(exchange, "a.b", &route), 2);
    assert_true(s_route_has(&route, Q(1)));
    assert_true(s_route_has(&route, Q(2)));
    assert_int_equal(s_route(exchange, "x", &route), 1); // "#" and "#.#" only
    assert_ptr_equal(route.queues[0], Q(1));
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_bind_pattern_twice_returns_1(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_TOPIC);
    assert_int_equal(s_bind(exchange, "a.*.#", Q(1)), 0);
    assert_int_equal(s_bind(exchange, "a.*.#", Q(1)), 1);
    assert_int_equal(s_bind(exchange, "a.*.#", Q(2)), 0);
    assert_int_equal(hop_exchange_binding_count(exchange), 2);
    hop_exchange_destroy(&exchange);
}

static void
test_unbind_stops_only_that_pattern(void **state)
{
    (void)state;
    // Patterns sharing trie prefixes: removing one must prune its branch and leave the others.
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_TOPIC);
    assert_int_equal(s_bind(exchange, "a.b.c", Q(1)), 0);
    assert_int_equal(s_bind(exchange, "a.b", Q(2)), 0);
    assert_int_equal(s_bind(exchange, "a.b.#", Q(3)), 0);
    assert_int_equal(s_bind(exchange, "a.*.c", Q(4)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(s_route(exchange, "a.b.c", &route), 3);

    assert_int_equal(hop_exchange_unbind(exchange, "a.b.c", 5, Q(1)), 0);
    assert_int_equal(s_route(exchange, "a.b.c", &route), 2);
    assert_false(s_route_has(&route, Q(1)));
    assert_int_equal(s_route(exchange, "a.b", &route), 2); // "a.b" and "a.b.#"

    assert_int_equal(hop_exchange_unbind(exchange, "a.b.#", 5, Q(3)), 0);
    assert_int_equal(s_route(exchange, "a.b", &route), 1);
    assert_ptr_equal(route.queues[0], Q(2));
    assert_int_equal(s_route(exchange, "a.b.c", &route), 1);
    assert_ptr_equal(route.queues[0], Q(4));

    // Rebinding after the branch was pruned rebuilds it.
    assert_int_equal(s_bind(exchange, "a.b.c", Q(1)), 0);
    assert_int_equal(s_route(exchange, "a.b.c", &route), 2);
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_unbind_queue_stops_all_its_patterns(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_TOPIC);
    assert_int_equal(s_bind(exchange, "#", Q(1)), 0);
    assert_int_equal(s_bind(exchange, "a.*", Q(1)), 0);
    assert_int_equal(s_bind(exchange, "a.b", Q(1)), 0);
    assert_int_equal(s_bind(exchange, "a.b", Q(2)), 0);
    assert_int_equal(hop_exchange_unbind_queue(exchange, Q(1)), 3);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(s_route(exchange, "a.b", &route), 1);
    assert_ptr_equal(route.queues[0], Q(2));
    assert_int_equal(s_route(exchange, "x", &route), 0);
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_bind_rejects_pattern_longer_than_255(void **state)
{
    (void)state;
    char pattern[HOP_EXCHANGE_KEY_MAX + 1];
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = i % 2 ? '.' : '#';
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_TOPIC);
    assert_int_equal(hop_exchange_bind(exchange, pattern, sizeof pattern, Q(1)), -1);
    assert_int_equal(hop_exchange_binding_count(exchange), 0);
    // 255 bytes of "#.#.#...#" is the deepest pattern allowed: 128 words.
    assert_int_equal(hop_exchange_bind(exchange, pattern, sizeof pattern - 1, Q(1)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(s_route(exchange, "", &route), 1);
    assert_int_equal(s_route(exchange, "a.b.c", &route), 1);
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_routing_key_longer_than_255_follows_the_rules(void **state)
{
    (void)state;
    // 5000 words: longer than any binding key, still routed by the rules, word by word.
    enum { WORDS = 5000 };
    char *key = malloc(2 * WORDS);
    assert_non_null(key);
    for (size_t i = 0; i < WORDS; i++) {
        key[2 * i] = 'w';
        key[2 * i + 1] = '.';
    }
    key[2 * WORDS - 2] = 'x'; // "w.w.....w.x", the final '.' left out by the length below
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_TOPIC);
    assert_int_equal(s_bind(exchange, "#", Q(1)), 0);
    assert_int_equal(s_bind(exchange, "w.#.x", Q(2)), 0);
    assert_int_equal(s_bind(exchange, "*.*", Q(3)), 0);
    assert_int_equal(s_bind(exchange, "#.w", Q(4)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(hop_exchange_route(exchange, key, 2 * WORDS - 1, &route), 2);
    assert_true(s_route_has(&route, Q(1)));
    assert_true(s_route_has(&route, Q(2)));
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
    free(key);
}

static void
test_pathological_hashes_finish(void **state)
{
    (void)state;
    // Backtracking tries every way to share 100 words among 8 "#"s: C(108, 8), about 4e11.
    // Stamped active sets make it 100 x 10 node visits. No timing assertion: it must just end.
    char key[256];
    size_t len = 0;
    for (int i = 0; i < 100; i++) {
        key[len++] = 'w';
        key[len++] = '.';
    }
    key[len - 1] = '\0'; // 100 words of "w"
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_TOPIC);
    assert_int_equal(s_bind(exchange, "#.#.#.#.#.#.#.#.x", Q(1)), 0);
    assert_int_equal(s_bind(exchange, "#.w.#.w.#.w.#.w.#.y", Q(2)), 0);
    assert_int_equal(s_bind(exchange, "#.#.#.#.#.#.#.#.w", Q(3)), 0);
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(s_route(exchange, key, &route), 1);
    assert_ptr_equal(route.queues[0], Q(3));
    key[len - 2] = 'x'; // last word now "x"
    assert_int_equal(s_route(exchange, key, &route), 1);
    assert_ptr_equal(route.queues[0], Q(1));
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

static void
test_hash_routes_to_10000_distinct_queues(void **state)
{
    (void)state;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_TOPIC);
    for (int q = 0; q < QUEUE_MAX; q++) {
        assert_int_equal(s_bind(exchange, "#", Q(q)), 0);
        assert_int_equal(s_bind(exchange, "*.b", Q(q)), 0); // a second match per queue
    }
    hop_route_t route;
    hop_route_init(&route);
    assert_int_equal(s_route(exchange, "a.b", &route), QUEUE_MAX);
    assert_int_equal(route.size, QUEUE_MAX);
    bool *seen = calloc(QUEUE_MAX, sizeof *seen);
    assert_non_null(seen);
    for (size_t i = 0; i < route.size; i++) {
        size_t index = (size_t)((char *)route.queues[i] - s_queues);
        assert_true(index < QUEUE_MAX);
        assert_false(seen[index]);
        seen[index] = true;
    }
    free(seen);
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

// xorshift64: deterministic, so a failure reproduces.
static uint64_t
s_random(uint64_t *seed)
{
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    return *seed;
}

// Writes 0..max_words random words from alphabet joined by dots.
static void
s_random_text(uint64_t *seed, const char *const *alphabet, size_t letters, size_t max_words,
              char *out)
{
    size_t words = s_random(seed) % (max_words + 1);
    out[0] = '\0';
    for (size_t i = 0; i < words; i++) {
        if (i)
            strcat(out, ".");
        strcat(out, alphabet[s_random(seed) % letters]);
    }
}

static void
test_agrees_with_reference_matcher(void **state)
{
    (void)state;
    // Many overlapping random patterns in one trie, then random keys: the exchange must route
    // exactly the queues whose pattern the plain recursive matcher accepts, before and after
    // unbinding half the patterns.
    enum { PATTERNS = 300, KEYS = 400 };
    static const char *const pattern_words[] = {"a", "b", "", "*", "#"};
    static const char *const key_words[] = {"a", "b", "", "*"};
    static char patterns[PATTERNS][32];
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    hop_exchange_t *exchange = hop_exchange_new(HOP_EXCHANGE_TOPIC);
    for (int p = 0; p < PATTERNS; p++) {
        s_random_text(&seed, pattern_words, 5, 5, patterns[p]);
        assert_int_equal(s_bind(exchange, patterns[p], Q(p)), 0);
    }
    hop_route_t route;
    hop_route_init(&route);
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < KEYS; k++) {
            char key[32];
            s_random_text(&seed, key_words, 4, 5, key);
            s_route(exchange, key, &route);
            size_t expected = 0;
            for (int p = pass; p < PATTERNS; p += pass + 1) {
                bool match = s_reference(patterns[p], key);
                expected += match;
                if (match != s_route_has(&route, Q(p)))
                    fail_msg("pattern \"%s\" key \"%s\": reference %d", patterns[p], key, match);
            }
            assert_int_equal(route.size, expected);
        }
        for (int p = 0; p < PATTERNS; p += 2) // keep the odd ones for the second pass
            assert_int_equal(hop_exchange_unbind(exchange, patterns[p], strlen(patterns[p]), Q(p)),
                             pass == 0 ? 0 : 1);
    }
    hop_route_fini(&route);
    hop_exchange_destroy(&exchange);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_patterns_match_whole_key),
        cmocka_unit_test(test_star_matches_exactly_one_word),
        cmocka_unit_test(test_hash_at_start_matches_zero_or_more_words),
        cmocka_unit_test(test_hash_in_middle_matches_zero_or_more_words),
        cmocka_unit_test(test_hash_at_end_matches_zero_or_more_words),
        cmocka_unit_test(test_consecutive_hashes_act_as_one),
        cmocka_unit_test(test_hash_and_star_combine),
        cmocka_unit_test(test_empty_words_are_words),
        cmocka_unit_test(test_empty_routing_key_has_no_words),
        cmocka_unit_test(test_wildcards_count_only_as_whole_words),
        cmocka_unit_test(test_rabbitmq_topic_suite),
        cmocka_unit_test(test_queue_matched_by_several_patterns_is_routed_once),
        cmocka_unit_test(test_bind_pattern_twice_returns_1),
        cmocka_unit_test(test_unbind_stops_only_that_pattern),
        cmocka_unit_test(test_unbind_queue_stops_all_its_patterns),
        cmocka_unit_test(test_bind_rejects_pattern_longer_than_255),
        cmocka_unit_test(test_routing_key_longer_than_255_follows_the_rules),
        cmocka_unit_test(test_pathological_hashes_finish),
        cmocka_unit_test(test_hash_routes_to_10000_distinct_queues),
        cmocka_unit_test(test_agrees_with_reference_matcher),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
