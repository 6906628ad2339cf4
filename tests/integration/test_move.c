// tests/integration/test_move.c - operating on stored messages (issue 7): `hopper replay` sends
// dead letters back where they first came from and empties the dead-letter queue, `hopper move`
// with --key and --filter moves exactly the matching messages, counts are exact (nothing lost,
// nothing duplicated) even when a replay is interrupted, and persistent messages moved between
// durable queues survive a restart. Driven through the `hopper` CLI and the SDK.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cli_helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 20000

// Ready messages of queue (a passive declare answers with them, after everything sent before).
static uint64_t
s_ready(hop_client_t *c, const char *queue)
{
    uint64_t messages = 0;
    CX_CHECK(c, hop_client_declare_queue_ex(c, queue, HOP_PASSIVE, NULL, 0, &messages, NULL));
    return messages;
}

// Publishes n messages "i" (from first) to exchange/key, with header tenant=acme for even i
// and tenant=other for odd i.
static void
s_publish(hop_client_t *c, const char *exchange, const char *key, int first, int n, bool persistent)
{
    for (int i = first; i < first + n; i++) {
        char body[32];
        snprintf(body, sizeof body, "%d", i);
        hop_header_t h = {"tenant", i % 2 ? "other" : "acme"};
        hop_props_t props = {.headers = &h, .header_count = 1};
        hop_publish_opts_t opts = {.persistent = persistent};
        CX_CHECK(c,
                 hop_client_publish_ex(c, exchange, key, body, strlen(body), &props, &opts, NULL));
    }
}

// Takes every ready message of queue (no-ack); marks seen[i] for body "i" and fails on a
// duplicate or a body out of range. Returns how many.
static size_t
s_drain(hop_client_t *c, const char *queue, bool *seen, size_t n)
{
    size_t got = 0;
    for (;;) {
        hop_delivery_t *d = NULL;
        int rc = hop_client_get(c, queue, HOP_NO_ACK, &d);
        if (rc == HOP_EEMPTY)
            return got;
        CX_CHECK(c, rc);
        char body[32] = {0};
        memcpy(body, d->body, d->body_size < 31 ? d->body_size : 31);
        size_t i = strtoul(body, NULL, 10);
        assert_true(i < n);
        if (seen[i])
            fail_msg("message %zu twice in %s", i, queue);
        seen[i] = true;
        got++;
        hop_delivery_destroy(&d);
    }
}

// Queue work (bound to direct exchange orders with key new) dead-letters through the default
// exchange into work.dead.
static void
s_declare_work(hop_client_t *c)
{
    CX_CHECK(c, hop_client_declare_exchange(c, "orders", "direct", 0));
    hop_queue_args_t args = {.dead_letter_exchange = "", .dead_letter_key = "work.dead"};
    CX_CHECK(c, hop_client_declare_queue_args(c, "work", 0, &args, NULL, 0, NULL, NULL));
    CX_CHECK(c, hop_client_declare_queue(c, "work.dead", 0, NULL, 0));
    CX_CHECK(c, hop_client_bind(c, "work", "orders", "new"));
}

// ---------------------------------------------------------------------------------------
// replay

static void
test_replay_returns_dead_letters_home(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = cx_client(fx, "replayer");
    s_declare_work(c);
    s_publish(c, "orders", "new", 0, 20, false);
    for (int i = 0; i < 20; i++) {
        hop_delivery_t *d = NULL;
        CX_CHECK(c, hop_client_get(c, "work", 0, &d));
        CX_CHECK(c, hop_client_reject(c, d->tag, false));
        hop_delivery_destroy(&d);
    }
    assert_int_equal(s_ready(c, "work.dead"), 20);
    assert_int_equal(s_ready(c, "work"), 0);
    // Not a dead letter: it has no death record and stays.
    CX_CHECK(c, hop_client_publish(c, "", "work.dead", "stray", 5, NULL));
    assert_int_equal(s_ready(c, "work.dead"), 21);

    const char *out = CLI_OK(fx, "replay", "work.dead");
    assert_string_equal(out, "moved 20, skipped 1, left 1\n");
    assert_int_equal(s_ready(c, "work"), 20);
    assert_int_equal(s_ready(c, "work.dead"), 1);
    // In their order, through the original exchange and key, with no death records left.
    for (int i = 0; i < 20; i++) {
        hop_delivery_t *d = NULL;
        CX_CHECK(c, hop_client_get(c, "work", HOP_NO_ACK, &d));
        char body[32];
        snprintf(body, sizeof body, "%d", i);
        assert_int_equal(d->body_size, strlen(body));
        assert_memory_equal(d->body, body, d->body_size);
        assert_string_equal(d->exchange, "orders");
        assert_string_equal(d->routing_key, "new");
        assert_int_equal(d->death_count, 0);
        assert_string_equal(hop_delivery_header(d, "tenant"), i % 2 ? "other" : "acme");
        hop_delivery_destroy(&d);
    }
    // Nothing left to replay: the stray stays.
    out = CLI_OK(fx, "replay", "work.dead", "--json");
    json_t *j = cx_parse(out);
    assert_int_equal(cx_int(j, "moved"), 0);
    assert_int_equal(cx_int(j, "skipped"), 1);
    assert_int_equal(cx_int(j, "left"), 1);
    json_decref(j);
}

static void
test_replay_in_steps_and_interrupted_loses_nothing(void **state)
{
    fx_t *fx = *state;
    enum { N = 20000 };
    hop_client_t *c = cx_client(fx, "replayer");
    // src holds one message: every other publish is dropped from its head into big.dead.
    CX_CHECK(c, hop_client_declare_exchange(c, "orders", "direct", 0));
    hop_queue_args_t args = {
        .max_length = 1, .dead_letter_exchange = "", .dead_letter_key = "big.dead"};
    CX_CHECK(c, hop_client_declare_queue_args(c, "src", 0, &args, NULL, 0, NULL, NULL));
    CX_CHECK(c, hop_client_declare_queue(c, "big.dead", 0, NULL, 0));
    CX_CHECK(c, hop_client_bind(c, "src", "orders", "big"));
    s_publish(c, "orders", "big", 0, N + 1, false);
    assert_int_equal(s_ready(c, "big.dead"), N);
    // Their way home now leads to target.
    CX_CHECK(c, hop_client_delete_queue(c, "src", 0, NULL));
    CX_CHECK(c, hop_client_declare_queue(c, "target", 0, NULL, 0));
    CX_CHECK(c, hop_client_bind(c, "target", "orders", "big"));

    // In steps.
    const char *out = CLI_OK(fx, "replay", "big.dead", "--count", "1500");
    assert_string_equal(out, "moved 1500, skipped 0, left 18500\n");
    hop_move_opts_t mo = {.replay = true, .count = 500};
    hop_move_result_t r;
    CX_CHECK(c, hop_client_move(c, "big.dead", &mo, &r));
    assert_int_equal(r.moved, 500);
    assert_int_equal(r.left, N - 2000);
    assert_int_equal(s_ready(c, "target"), 2000);

    // Interrupted: kill -9 the CLI at some point of its run; whatever it did, every message is
    // in exactly one of the two queues.
    char *argv[] = {(char *)harness_cli_path(),
                    "--broker",
                    (char *)harness_broker_endpoint(fx->broker),
                    "replay",
                    "big.dead",
                    NULL};
    int pid = harness_spawn(argv);
    assert_true(pid > 0);
    uint64_t deadline = harness_now_ms() + WAIT_MS;
    while (s_ready(c, "target") == 2000 && harness_now_ms() < deadline)
        ;
    harness_kill9(pid);
    uint64_t in_target = s_ready(c, "target"), in_dead = s_ready(c, "big.dead");
    assert_int_equal(in_target + in_dead, N);

    // The rest, then every message exactly once.
    out = CLI_OK(fx, "replay", "big.dead");
    assert_int_equal(s_ready(c, "big.dead"), 0);
    assert_int_equal(s_ready(c, "target"), N);
    bool *seen = calloc(N + 1, sizeof *seen);
    assert_int_equal(s_drain(c, "target", seen, N + 1), N);
    free(seen);
}

// ---------------------------------------------------------------------------------------
// move

static void
test_move_with_key_and_filter_moves_exactly_the_matching(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = cx_client(fx, "mover");
    CX_CHECK(c, hop_client_declare_queue(c, "mixed", 0, NULL, 0));
    CX_CHECK(c, hop_client_declare_queue(c, "acme", 0, NULL, 0));
    CX_CHECK(c, hop_client_declare_exchange(c, "tenants", "topic", 0));
    CX_CHECK(c, hop_client_declare_queue(c, "audit", 0, NULL, 0));
    CX_CHECK(c, hop_client_bind(c, "acme", "tenants", "acme.#"));
    CX_CHECK(c, hop_client_bind(c, "audit", "tenants", "#"));
    s_publish(c, "", "mixed", 0, 10, false);

    const char *out =
        CLI_OK(fx, "move", "mixed", "tenants", "--key", "acme.moved", "--filter", "tenant=acme");
    assert_string_equal(out, "moved 5, skipped 5, left 5\n");
    assert_int_equal(s_ready(c, "mixed"), 5);
    assert_int_equal(s_ready(c, "acme"), 5);
    assert_int_equal(s_ready(c, "audit"), 5); // one move, stored in every queue it routes to
    for (int i = 0; i < 5; i++) {
        hop_delivery_t *d = NULL;
        CX_CHECK(c, hop_client_get(c, "acme", HOP_NO_ACK, &d));
        assert_string_equal(hop_delivery_header(d, "tenant"), "acme");
        assert_string_equal(d->exchange, "tenants");
        assert_string_equal(d->routing_key, "acme.moved");
        char body[32];
        snprintf(body, sizeof body, "%d", 2 * i);
        assert_memory_equal(d->body, body, strlen(body));
        hop_delivery_destroy(&d);
    }
    // The others, two of them, with their own key ("mixed") through the default exchange: back
    // into mixed itself, at its tail, never moved round twice.
    out = CLI_OK(fx, "move", "mixed", "", "--count", "2");
    assert_string_equal(out, "moved 2, skipped 0, left 5\n");
    out = CLI_OK(fx, "move", "mixed", "");
    assert_string_equal(out, "moved 5, skipped 0, left 5\n");
    // Routed nowhere: all stay.
    out = CLI_OK(fx, "move", "mixed", "", "--key", "nobody");
    assert_string_equal(out, "moved 0, skipped 5, left 5\n");
    // A filter that matches nothing.
    out = CLI_OK(fx, "move", "mixed", "", "--key", "acme", "--filter", "tenant=zzz");
    assert_string_equal(out, "moved 0, skipped 5, left 5\n");
    assert_int_equal(s_ready(c, "mixed"), 5);
}

static void
test_move_unknown_queue_or_exchange_exits_1(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = cx_client(fx, "mover");
    CX_CHECK(c, hop_client_declare_queue(c, "q", 0, NULL, 0));
    CLI_EXIT(fx, 1, "move", "nope", "");
    assert_non_null(strstr(fx->last.err, "no queue 'nope'"));
    CLI_EXIT(fx, 1, "move", "q", "nope");
    assert_non_null(strstr(fx->last.err, "no exchange 'nope'"));
    CLI_EXIT(fx, 1, "replay", "nope");
    assert_non_null(strstr(fx->last.err, "no queue 'nope'"));
    assert_int_equal(PLAIN(fx, "move", "q"), 2);
    assert_int_equal(PLAIN(fx, "move", "q", "x", "--filter", "novalue"), 2);
    assert_int_equal(PLAIN(fx, "move", "--help"), 0);
    assert_non_null(strstr(fx->last.out, "Usage: hopper move"));
    assert_int_equal(PLAIN(fx, "replay", "--help"), 0);
    assert_non_null(strstr(fx->last.out, "death"));
}

static void
test_move_keeps_persistent_messages_durable(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = cx_client(fx, "mover");
    CX_CHECK(c, hop_client_declare_queue(c, "d.src", HOP_DURABLE, NULL, 0));
    CX_CHECK(c, hop_client_declare_queue(c, "d.dst", HOP_DURABLE, NULL, 0));
    s_publish(c, "", "d.src", 0, 10, true);
    assert_int_equal(s_ready(c, "d.src"), 10);
    const char *out = CLI_OK(fx, "move", "d.src", "", "--key", "d.dst", "--filter", "tenant=acme");
    assert_string_equal(out, "moved 5, skipped 5, left 5\n");
    hop_client_destroy(&fx->clients[0]);

    assert_int_equal(harness_broker_restart(fx->broker), 0);
    c = cx_client(fx, "after");
    assert_int_equal(s_ready(c, "d.src"), 5);
    assert_int_equal(s_ready(c, "d.dst"), 5);
    bool seen[10] = {0};
    assert_int_equal(s_drain(c, "d.dst", seen, 10), 5);
    for (int i = 0; i < 10; i++)
        assert_int_equal(seen[i], i % 2 == 0);
    assert_int_equal(s_drain(c, "d.src", seen, 10), 5);
    hop_client_destroy(&fx->clients[0]);

    // What was taken is gone for good, and nothing moved comes back twice.
    assert_int_equal(harness_broker_restart(fx->broker), 0);
    c = cx_client(fx, "again");
    assert_int_equal(s_ready(c, "d.src"), 0);
    assert_int_equal(s_ready(c, "d.dst"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replay_returns_dead_letters_home, cx_setup,
                                        cx_teardown),
        cmocka_unit_test_setup_teardown(test_replay_in_steps_and_interrupted_loses_nothing,
                                        cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_move_with_key_and_filter_moves_exactly_the_matching,
                                        cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_move_unknown_queue_or_exchange_exits_1, cx_setup,
                                        cx_teardown),
        cmocka_unit_test_setup_teardown(test_move_keeps_persistent_messages_durable, cx_setup,
                                        cx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
