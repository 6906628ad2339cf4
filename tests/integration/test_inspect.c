// tests/integration/test_inspect.c - looking without touching (issue 7): `peek` shows the ready
// messages at a queue's head and changes nothing about them, `list unacked` shows exactly the
// deliveries waiting for an ack; both through the SDK and through the `hopper` CLI.
//
// Clients made with cx_client are destroyed at teardown, so a failed test leaves nothing open.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cli_helpers.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_MS 20000

static void
s_publish(hop_client_t *c, const char *queue, const char *body, uint8_t priority)
{
    hop_publish_opts_t opts = {.priority = priority};
    CX_CHECK(c, hop_client_publish_ex(c, "", queue, body, strlen(body), NULL, &opts, NULL));
}

static hop_delivery_t *
s_receive(hop_client_t *c)
{
    hop_delivery_t *d = NULL;
    CX_CHECK(c, hop_client_receive(c, &d, WAIT_MS));
    assert_non_null(d);
    return d;
}

static bool
s_body_is(const hop_delivery_t *d, const char *text)
{
    return d->body_size == strlen(text) && memcmp(d->body, text, d->body_size) == 0;
}

// A uint field of one queue in list queues.
static uint64_t
s_queue_stat(hop_client_t *c, const char *queue, const char *field)
{
    void *items;
    size_t size;
    uint64_t value = 0;
    CX_CHECK(c, hop_client_list(c, "queues", &items, &size));
    bool found = harness_items_uint(items, size, "name", queue, field, &value);
    free(items);
    if (!found)
        fail_msg("list queues: no %s of queue %s", field, queue);
    return value;
}

static uint64_t
s_status(hop_client_t *c, const char *field)
{
    void *map;
    size_t size;
    uint64_t value = 0;
    CX_CHECK(c, hop_client_status(c, &map, &size));
    bool found = harness_map_uint(map, size, field, &value);
    free(map);
    if (!found)
        fail_msg("status: no %s", field);
    return value;
}

// The broker's label (conn-N) of the connection named name.
static void
s_connection_of(hop_client_t *c, const char *name, char *out, size_t out_size)
{
    void *items;
    size_t size;
    const void *map;
    size_t map_size;
    CX_CHECK(c, hop_client_list(c, "connections", &items, &size));
    bool found = harness_items_find(items, size, "name", name, &map, &map_size) &&
                 harness_map_str(map, map_size, "connection", out, out_size);
    free(items);
    if (!found)
        fail_msg("list connections: no connection named %s", name);
}

// Waits until the monotonic clock has moved on by ms (deliveries then differ in age).
static void
s_let_time_pass(int ms)
{
    uint64_t until = harness_now_ms() + (uint64_t)ms;
    while (harness_now_ms() < until)
        harness_pause_ms(1);
}

// ---------------------------------------------------------------------------------------
// peek

static void
test_peek_changes_nothing(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = cx_client(fx, "peeker");
    CX_CHECK(c, hop_client_declare_queue(c, "pq", 0, NULL, 0));
    const char *bodies[] = {"m1", "m2", "m3", "m4", "m5"};
    for (int i = 0; i < 5; i++)
        s_publish(c, "pq", bodies[i], 0);
    // m1 was delivered once and came back: redelivered, count 1.
    hop_delivery_t *d = NULL;
    CX_CHECK(c, hop_client_get(c, "pq", 0, &d));
    assert_true(s_body_is(d, "m1"));
    CX_CHECK(c, hop_client_nack(c, d->tag, false, true));
    hop_delivery_destroy(&d);
    uint64_t delivered = s_status(c, "delivered");
    uint64_t q_delivered = s_queue_stat(c, "pq", "delivered");
    assert_int_equal(s_queue_stat(c, "pq", "messages_ready"), 5);

    for (int round = 0; round < 3; round++) {
        hop_delivery_t **items = NULL;
        size_t n = 0;
        CX_CHECK(c, hop_client_peek(c, "pq", 0, &items, &n));
        assert_int_equal(n, 5);
        for (size_t i = 0; i < n; i++) {
            assert_true(s_body_is(items[i], bodies[i]));
            assert_string_equal(items[i]->routing_key, "pq");
            assert_int_equal(items[i]->redelivered, i == 0);
            assert_int_equal(items[i]->delivery_count, i == 0 ? 1 : 0);
            assert_int_equal(items[i]->message_count, 5);
            assert_int_equal(items[i]->body_whole_size, items[i]->body_size);
            assert_int_equal(items[i]->tag, 0);
        }
        hop_client_peek_free(&items, n);
        assert_null(items);
        // and through the CLI
        json_t *lines = cx_parse_lines(CLI_OK(fx, "peek", "pq", "--json"));
        assert_int_equal(json_array_size(lines), 5);
        json_t *first = json_array_get(lines, 0);
        assert_string_equal(cx_str(first, "body"), "m1");
        assert_true(json_is_true(json_object_get(first, "redelivered")));
        assert_int_equal(cx_int(first, "delivery_count"), 1);
        assert_int_equal(cx_int(json_array_get(lines, 4), "delivery_count"), 0);
        assert_null(json_object_get(first, "delivery_tag"));
        json_decref(lines);
    }
    assert_int_equal(s_status(c, "delivered"), delivered);
    assert_int_equal(s_queue_stat(c, "pq", "delivered"), q_delivered);
    assert_int_equal(s_queue_stat(c, "pq", "messages_ready"), 5);
    assert_int_equal(s_queue_stat(c, "pq", "messages_unacked"), 0);

    // What get sees next is exactly what it would have seen without the peeks.
    for (int i = 0; i < 5; i++) {
        CX_CHECK(c, hop_client_get(c, "pq", HOP_NO_ACK, &d));
        assert_true(s_body_is(d, bodies[i]));
        assert_int_equal(d->redelivered, i == 0);
        assert_int_equal(d->delivery_count, i == 0 ? 2 : 1);
        hop_delivery_destroy(&d);
    }
    hop_delivery_t **items = NULL;
    size_t n = 7;
    CX_CHECK(c, hop_client_peek(c, "pq", 3, &items, &n));
    assert_int_equal(n, 0);
    hop_client_peek_free(&items, n);
}

static void
test_peek_follows_priority_order_and_count(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = cx_client(fx, "peeker");
    hop_queue_args_t args = {.max_priority = 5};
    CX_CHECK(c, hop_client_declare_queue_args(c, "prio", 0, &args, NULL, 0, NULL, NULL));
    s_publish(c, "prio", "low1", 0);
    s_publish(c, "prio", "hi", 5);
    s_publish(c, "prio", "low2", 0);
    s_publish(c, "prio", "mid", 3);
    s_publish(c, "prio", "top", 9); // over max_priority: counts as 5, after "hi"
    const char *order[] = {"hi", "top", "mid", "low1", "low2"};
    hop_delivery_t **items = NULL;
    size_t n = 0;
    CX_CHECK(c, hop_client_peek(c, "prio", 10, &items, &n));
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++)
        if (!s_body_is(items[i], order[i]))
            fail_msg("peek item %zu is '%.*s', expected '%s'", i, (int)items[i]->body_size,
                     (const char *)items[i]->body, order[i]);
    assert_int_equal(items[0]->priority, 5);
    assert_int_equal(items[2]->priority, 3);
    hop_client_peek_free(&items, n);

    json_t *lines = cx_parse_lines(CLI_OK(fx, "peek", "prio", "--count", "2", "--json"));
    assert_int_equal(json_array_size(lines), 2);
    assert_string_equal(cx_str(json_array_get(lines, 0), "body"), "hi");
    assert_string_equal(cx_str(json_array_get(lines, 1), "body"), "top");
    assert_int_equal(cx_int(json_array_get(lines, 1), "message_count"), 5);
    json_decref(lines);
    const char *out = CLI_OK(fx, "peek", "prio", "--count", "3");
    assert_non_null(strstr(out, "priority=5 hi\n"));
    assert_null(strstr(out, "low1"));
    assert_null(strstr(out, "tag="));
    assert_non_null(strstr(fx->last.err, "3 of 5"));

    // Deliveries come in the order peek showed.
    for (size_t i = 0; i < 5; i++) {
        hop_delivery_t *d = NULL;
        CX_CHECK(c, hop_client_get(c, "prio", HOP_NO_ACK, &d));
        assert_true(s_body_is(d, order[i]));
        hop_delivery_destroy(&d);
    }
}

static void
test_peek_cuts_a_body_too_large_for_one_answer(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = cx_client(fx, "peeker");
    CX_CHECK(c, hop_client_declare_queue(c, "big", 0, NULL, 0));
    size_t size = 300000;
    char *body = malloc(size);
    assert_non_null(body);
    for (size_t i = 0; i < size; i++)
        body[i] = (char)('a' + i % 26);
    CX_CHECK(c, hop_client_publish(c, "", "big", body, size, NULL));
    s_publish(c, "big", "small", 0);
    hop_delivery_t **items = NULL;
    size_t n = 0;
    CX_CHECK(c, hop_client_peek(c, "big", 10, &items, &n));
    assert_int_equal(n, 1); // the answer is full after the cut body
    assert_int_equal(items[0]->body_whole_size, size);
    assert_true(items[0]->body_size > 1000 && items[0]->body_size < HOP_HEADER_MAX);
    assert_memory_equal(items[0]->body, body, items[0]->body_size);
    assert_int_equal(items[0]->message_count, 2);
    hop_client_peek_free(&items, n);
    free(body);
    json_t *lines = cx_parse_lines(CLI_OK(fx, "peek", "big", "--json"));
    assert_int_equal(json_array_size(lines), 1);
    assert_true(json_is_true(json_object_get(json_array_get(lines, 0), "body_truncated")));
    assert_int_equal(cx_int(json_array_get(lines, 0), "body_size"), (json_int_t)size);
    json_decref(lines);
    assert_int_equal(s_queue_stat(c, "big", "messages_ready"), 2);
}

static void
test_peek_unknown_queue_and_usage(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = cx_client(fx, "peeker");
    hop_delivery_t **items = NULL;
    size_t n = 0;
    assert_int_equal(hop_client_peek(c, "nope", 1, &items, &n), HOP_ENOTFOUND);
    assert_int_equal(hop_client_error_code(c), HOP_CODE_NOT_FOUND);
    assert_null(items);
    CLI_EXIT(fx, 1, "peek", "nope");
    assert_non_null(strstr(fx->last.err, "no queue 'nope'"));
    assert_non_null(strstr(fx->last.err, "404"));
    CLI_EXIT(fx, 2, "peek");
    CLI_EXIT(fx, 2, "peek", "q", "--count", "0");
    CLI_EXIT(fx, 2, "peek", "q", "--count", "1001");
    CLI_EXIT(fx, 2, "peek", "q", "extra");
    assert_int_equal(PLAIN(fx, "peek", "--help"), 0);
    assert_non_null(strstr(fx->last.out, "Usage: hopper peek"));
    assert_int_equal(PLAIN(fx, "help", "peek"), 0);
    assert_non_null(strstr(fx->last.out, "--count"));
    // An empty queue is not an error.
    CX_CHECK(c, hop_client_declare_queue(c, "empty", 0, NULL, 0));
    assert_string_equal(CLI_OK(fx, "peek", "empty"), "");
    assert_non_null(strstr(fx->last.err, "no ready messages"));
}

// ---------------------------------------------------------------------------------------
// list unacked

static void
test_list_unacked_shows_a_consumers_five(void **state)
{
    fx_t *fx = *state;
    hop_client_t *pub = cx_client(fx, "publisher");
    hop_client_t *worker = cx_client(fx, "worker");
    CX_CHECK(pub, hop_client_declare_queue(pub, "jobs", 0, NULL, 0));
    CX_CHECK(pub, hop_client_declare_queue(pub, "other", 0, NULL, 0));
    char ctag[HOP_NAME_MAX + 1];
    CX_CHECK(worker, hop_client_consume(worker, "jobs", "w1", 10, 0, ctag, sizeof ctag));
    uint64_t tags[5];
    for (int i = 0; i < 5; i++) {
        char body[8];
        snprintf(body, sizeof body, "j%d", i);
        s_publish(pub, "jobs", body, 0);
        hop_delivery_t *d = s_receive(worker);
        assert_true(s_body_is(d, body));
        tags[i] = d->tag;
        hop_delivery_destroy(&d);
        s_let_time_pass(5);
    }
    // A get's delivery, held by the publisher's connection, on another queue.
    s_publish(pub, "other", "o1", 0);
    hop_delivery_t *got = NULL;
    CX_CHECK(pub, hop_client_get(pub, "other", 0, &got));
    char worker_conn[64], pub_conn[64];
    s_connection_of(pub, "worker", worker_conn, sizeof worker_conn);
    s_connection_of(pub, "publisher", pub_conn, sizeof pub_conn);

    void *items;
    size_t size, left_off = 9;
    CX_CHECK(pub, hop_client_list_unacked(pub, "jobs", &items, &size, &left_off));
    assert_int_equal(left_off, 0);
    assert_int_equal(harness_items_count(items, size), 5);
    free(items);

    json_t *list = cx_parse(CLI_OK(fx, "list", "unacked", "jobs", "--sort", "age", "--json"));
    assert_int_equal(json_array_size(list), 5);
    json_int_t last_age = -1;
    for (size_t i = 0; i < 5; i++) {
        json_t *item = json_array_get(list, 4 - i); // newest first here: ages increase
        assert_string_equal(cx_str(item, "queue"), "jobs");
        assert_string_equal(cx_str(item, "consumer"), "w1");
        assert_string_equal(cx_str(item, "connection"), worker_conn);
        assert_int_equal(cx_int(item, "tag"), (json_int_t)tags[4 - i]);
        assert_int_equal(cx_int(item, "count"), 1);
        json_int_t age = cx_int(item, "delivered_ms_ago");
        // delivered_at is the same moment on the wall clock (a second's slack for the run).
        json_int_t at = cx_int(item, "delivered_at");
        json_int_t wall = (json_int_t)time(NULL) * 1000;
        assert_true(at >= wall - age - 2000 && at <= wall - age + 2000);
        if (age <= last_age)
            fail_msg("delivery %zu is %lld ms old, the newer one %lld ms", 4 - i, (long long)age,
                     (long long)last_age);
        last_age = age;
    }
    json_decref(list);

    // Without a queue: the get's delivery too, oldest first, consumer "".
    list = cx_parse(CLI_OK(fx, "list", "unacked", "--json"));
    assert_int_equal(json_array_size(list), 6);
    json_t *last = json_array_get(list, 5);
    assert_string_equal(cx_str(last, "queue"), "other");
    assert_string_equal(cx_str(last, "consumer"), "");
    assert_string_equal(cx_str(last, "connection"), pub_conn);
    assert_int_equal(cx_int(last, "tag"), (json_int_t)got->tag);
    json_decref(list);
    const char *table = CLI_OK(fx, "list", "unacked");
    assert_non_null(strstr(table, "AGE_MS"));
    assert_non_null(strstr(table, "(get)"));
    list = cx_parse(CLI_OK(fx, "list", "unacked", "other", "--json"));
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);

    // Settled and returned deliveries leave the list; a redelivery counts 2.
    CX_CHECK(worker, hop_client_ack(worker, tags[0], false));
    CX_CHECK(worker, hop_client_nack(worker, tags[1], false, true));
    hop_delivery_t *again = s_receive(worker); // j1 again, the consumer has credit
    assert_true(s_body_is(again, "j1"));
    CX_CHECK(pub, hop_client_ack(pub, got->tag, false));
    hop_delivery_destroy(&got);
    assert_int_equal(s_queue_stat(pub, "other", "messages_unacked"), 0); // the ack is in
    list = cx_parse(CLI_OK(fx, "list", "unacked", "--sort", "consumer", "--json"));
    assert_int_equal(json_array_size(list), 4);
    json_t *redelivered = json_array_get(list, 3); // the newest delivery
    assert_int_equal(cx_int(redelivered, "tag"), (json_int_t)again->tag);
    assert_int_equal(cx_int(redelivered, "count"), 2);
    json_decref(list);
    hop_delivery_destroy(&again);
    // Inspection changed nothing.
    assert_int_equal(s_queue_stat(pub, "jobs", "messages_unacked"), 4);
}

static void
test_list_unacked_unknown_queue_and_usage(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = cx_client(fx, "lister");
    void *items = (void *)1;
    size_t size = 1;
    assert_int_equal(hop_client_list_unacked(c, "nope", &items, &size, NULL), HOP_ENOTFOUND);
    assert_null(items);
    CLI_EXIT(fx, 1, "list", "unacked", "nope");
    assert_non_null(strstr(fx->last.err, "no queue 'nope'"));
    assert_string_equal(CLI_OK(fx, "list", "unacked"),
                        "QUEUE  CONSUMER  CONNECTION  TAG  AGE_MS  COUNT\n");
    json_t *list = cx_parse(CLI_OK(fx, "list", "unacked", "--json"));
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    CLI_EXIT(fx, 2, "list", "unacked", "--sort", "size");
    CLI_EXIT(fx, 2, "list", "queues", "--sort", "age");
    CLI_EXIT(fx, 2, "list", "queues", "extra");
    CLI_EXIT(fx, 2, "list", "unacked", "a", "b");
    assert_int_equal(PLAIN(fx, "list", "unacked", "--help"), 0);
    assert_non_null(strstr(fx->last.out, "hopper list unacked [QUEUE]"));
    assert_non_null(strstr(fx->last.out, "delivered_ms_ago"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_peek_changes_nothing, cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_peek_follows_priority_order_and_count, cx_setup,
                                        cx_teardown),
        cmocka_unit_test_setup_teardown(test_peek_cuts_a_body_too_large_for_one_answer, cx_setup,
                                        cx_teardown),
        cmocka_unit_test_setup_teardown(test_peek_unknown_queue_and_usage, cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_list_unacked_shows_a_consumers_five, cx_setup,
                                        cx_teardown),
        cmocka_unit_test_setup_teardown(test_list_unacked_unknown_queue_and_usage, cx_setup,
                                        cx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
