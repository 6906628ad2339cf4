// tests/integration/test_guarantees_queues.c - queue-level guarantees over the raw wire
// protocol (docs/PROTOCOL.md 4.3, 4.7): priorities, the checking and equivalence of queue
// arguments, and what list and status report about arguments and counters.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "guarantee_helpers.h"

#include <string.h>

// ---------------------------------------------------------------------------------------
// 12. Priorities

static void
test_priorities_deliver_highest_first_fifo_within(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    hop_enc_t *enc = gx_qdecl(a, "prio");
    hop_enc_uint(enc, "max_priority", 5);
    assert_int_equal(gx_call(a, NULL, 0), 0);
    static const struct {
        const char *body;
        uint64_t priority;
    } in[] = {{"p0", 0}, {"p3", 3}, {"p5a", 5}, {"p1", 1}, {"p5b", 5}, {"p9", 9}};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        raw_publish_text(a, "", "prio", in[i].body, &(raw_pub_t){.priority = in[i].priority});
    raw_sync(a);
    // 9 counts as 5 and came last among the fives.
    static const struct {
        const char *body;
        uint64_t priority;
    } out[] = {{"p5a", 5}, {"p5b", 5}, {"p9", 9}, {"p3", 3}, {"p1", 1}, {"p0", 0}};
    uint64_t tags[6];
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) {
        raw_msg_t *m = gx_get_ok(a, "prio", false);
        raw_check_delivery(m, out[i].body, false, 1);
        if (out[i].priority) {
            assert_true(m->wire.has & HOP_F_PRIORITY);
            assert_int_equal(m->wire.priority, out[i].priority);
        } else
            assert_false(m->wire.has & HOP_F_PRIORITY);
        assert_int_equal(m->wire.messages, sizeof out / sizeof out[0] - i - 1);
        tags[i] = m->wire.tag;
        raw_msg_destroy(&m);
    }
    gx_expect_empty(a, "prio");
    // Requeued, they go back to their places: the same order again.
    for (size_t i = 6; i-- > 0;)
        gx_settle(a, HOP_CMD_NACK, tags[i], 1, -1);
    assert_int_equal(raw_qstat(a, "prio", "messages_ready"), 6);
    // A consumer sees them in that order, priorities carried.
    assert_int_equal(gx_consume(a, "prio", "c", 0, 0), 0);
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) {
        raw_msg_t *m = raw_deliver(a);
        raw_check_delivery(m, out[i].body, true, 2);
        if (out[i].priority)
            assert_int_equal(m->wire.priority, out[i].priority);
        else
            assert_false(m->wire.has & HOP_F_PRIORITY);
        raw_ack(a, m->wire.tag, false);
        raw_msg_destroy(&m);
    }
    raw_expect_no_error(a);
    assert_int_equal(raw_qstat(a, "prio", "messages"), 0);
    assert_int_equal(raw_qstat(a, "prio", "acked"), 6);
    // The consume dispatched all six at once: a batching client got them as a batch.
    size_t records = 0;
    if (fx->batch)
        assert_true(raw_batches(a, &records) >= 1 && records >= 2);
    else
        assert_int_equal(raw_batches(a, &records), 0);
}

// ---------------------------------------------------------------------------------------
// 13. Queue arguments: validation and equivalence

static void
test_queue_arguments_are_checked_and_fixed_at_first_declare(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    char text[512];
    hop_enc_t *enc = gx_qdecl(a, "bad");
    hop_enc_cstr(enc, "overflow", "drop-tail");
    assert_int_equal(gx_call(a, text, sizeof text), HOP_CODE_SYNTAX_ERROR);
    assert_non_null(strstr(text, "overflow"));
    enc = gx_qdecl(a, "bad");
    hop_enc_cstr(enc, "dead_letter_key", "k");
    assert_int_equal(gx_call(a, text, sizeof text), HOP_CODE_PRECONDITION_FAILED);
    assert_non_null(strstr(text, "dead_letter_key"));
    enc = gx_qdecl(a, "bad");
    hop_enc_uint(enc, "max_priority", 0);
    assert_int_equal(gx_call(a, NULL, 0), HOP_CODE_SYNTAX_ERROR);
    enc = gx_qdecl(a, "bad");
    hop_enc_uint(enc, "max_priority", 256);
    assert_int_equal(gx_call(a, NULL, 0), HOP_CODE_SYNTAX_ERROR);
    enc = gx_qdecl(a, "bad");
    hop_enc_cstr(enc, "max_length", "ten"); // wrong type
    assert_int_equal(gx_call(a, NULL, 0), HOP_CODE_SYNTAX_ERROR);
    enc = gx_qdecl(a, "bad");
    hop_enc_uint(enc, "expires", 0); // a queue cannot expire before it is used
    assert_int_equal(gx_call(a, NULL, 0), HOP_CODE_SYNTAX_ERROR);
    enc = gx_qdecl(a, "bad");
    hop_enc_uint(enc, "retry_delay", 500);
    hop_enc_uint(enc, "retry_delay_max", 100); // a cap under the start
    assert_int_equal(gx_call(a, text, sizeof text), HOP_CODE_PRECONDITION_FAILED);
    assert_non_null(strstr(text, "retry_delay_max"));
    assert_false(gx_queue_listed(a, "bad")); // none of them made it

    enc = gx_qdecl(a, "eq");
    hop_enc_uint(enc, "max_length", 5);
    hop_enc_cstr(enc, "dead_letter_exchange", "dlx");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    // A different value: 406 naming the argument; the queue keeps its own.
    enc = gx_qdecl(a, "eq");
    hop_enc_uint(enc, "max_length", 6);
    assert_int_equal(gx_call(a, text, sizeof text), HOP_CODE_PRECONDITION_FAILED);
    if (!strstr(text, "max_length"))
        fail_msg("406 does not name max_length: %s", text);
    enc = gx_qdecl(a, "eq");
    hop_enc_cstr(enc, "dead_letter_exchange", "other");
    assert_int_equal(gx_call(a, text, sizeof text), HOP_CODE_PRECONDITION_FAILED);
    assert_non_null(strstr(text, "dead_letter_exchange"));
    enc = gx_qdecl(a, "eq");
    hop_enc_uint(enc, "message_ttl", 1000); // not set at first: different too
    assert_int_equal(gx_call(a, text, sizeof text), HOP_CODE_PRECONDITION_FAILED);
    assert_non_null(strstr(text, "message_ttl"));
    assert_int_equal(raw_qstat(a, "eq", "max_length"), 5);
    // The same values, or none at all: accepted.
    enc = gx_qdecl(a, "eq");
    hop_enc_uint(enc, "max_length", 5);
    assert_int_equal(gx_call(a, NULL, 0), 0);
    assert_int_equal(raw_queue_declare(a, "eq", false, false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "eq", false, false, false, true), 0);
    assert_int_equal(raw_qstat(a, "eq", "max_length"), 5);
    raw_expect_no_error(a);
}

// ---------------------------------------------------------------------------------------
// 14. list and status

static void
s_expect_listed_str(const void *item, size_t size, const char *key, const char *value)
{
    char buf[64];
    if (!harness_map_str(item, size, key, buf, sizeof buf))
        fail_msg("list queues: no string '%s'", key);
    assert_string_equal(buf, value);
}

static void
test_list_and_status_show_arguments_and_counters(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    gx_confirms_t *t = gx_confirms_reset();
    assert_int_equal(raw_queue_declare(a, "lq.dead", false, false, false, false), 0);
    hop_enc_t *enc = gx_qdecl(a, "lq");
    hop_enc_uint(enc, "max_length", 2);
    hop_enc_cstr(enc, "overflow", "reject-publish");
    hop_enc_uint(enc, "max_length_bytes", 4096);
    hop_enc_uint(enc, "message_ttl", 60000);
    hop_enc_uint(enc, "expires", 600000);
    hop_enc_uint(enc, "max_deliveries", 5);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "lq.dead");
    hop_enc_uint(enc, "retry_delay", 100);
    hop_enc_uint(enc, "retry_delay_max", 800);
    hop_enc_uint(enc, "max_priority", 3);
    hop_enc_uint(enc, "ack_timeout", 5000);
    assert_int_equal(gx_call(a, NULL, 0), 0);

    // rejected_publishes: 2 stored (confirmed), the third refused (it asked for no confirm).
    raw_publish_text(b, "", "lq", "one", &(raw_pub_t){.seq = gx_next_seq(t)});
    raw_publish_text(b, "", "lq", "two", &(raw_pub_t){.seq = gx_next_seq(t)});
    raw_publish_text(b, "", "lq", "three", NULL);
    raw_sync(b); // all three handled before anything is consumed
    gx_confirms_wait(b, t);
    assert_int_equal(t->acks, 2);
    gx_expect_no_confirm(b);
    // messages_delayed: one nacked with a long delay. dead_lettered: one rejected.
    assert_int_equal(gx_consume(a, "lq", "lc", 1, 0), 0);
    uint64_t tag = raw_expect_deliver(a, "one", false, 1);
    gx_settle(a, HOP_CMD_NACK, tag, -1, 60000);
    tag = raw_expect_deliver(a, "two", false, 1);
    gx_settle(a, HOP_CMD_REJECT, tag, 0, -1);
    raw_expect_no_delivery(a);
    // expired and dropped: a message that expires with no dead-letter exchange.
    enc = gx_qdecl(a, "lx");
    hop_enc_uint(enc, "message_ttl", 100);
    assert_int_equal(gx_call(a, NULL, 0), 0);
    raw_publish_text(b, "", "lx", "old", NULL);
    gx_wait_qfield(a, "lx", "expired", 1, 3000);
    // returned: a mandatory message with no route.
    raw_publish_text(b, "", "nowhere", "back", &(raw_pub_t){.mandatory = true});
    raw_msg_t *m = raw_next(b, HOP_CMD_RETURN, WAIT_MS);
    assert_non_null(m);
    raw_msg_destroy(&m);

    raw_msg_t *list = raw_list(a, "queues");
    assert_non_null(list);
    const void *item;
    size_t size;
    assert_true(
        harness_items_find(list->wire.items.ptr, list->wire.items.len, "name", "lq", &item, &size));
    static const struct {
        const char *key;
        uint64_t value;
    } nums[] = {
        {"max_length", 2},        {"max_length_bytes", 4096},
        {"message_ttl", 60000},   {"expires", 600000},
        {"max_deliveries", 5},    {"retry_delay", 100},
        {"retry_delay_max", 800}, {"max_priority", 3},
        {"ack_timeout", 5000},    {"messages_ready", 0},
        {"messages_unacked", 0},  {"messages_delayed", 1},
        {"messages", 1},          {"published", 2},
        {"delivered", 2},         {"acked", 0},
        {"dead_lettered", 1},     {"dropped", 0},
        {"expired", 0},           {"rejected_publishes", 1},
        {"consumers", 1},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        uint64_t v;
        if (!harness_map_uint(item, size, nums[i].key, &v))
            fail_msg("list queues: lq has no '%s'", nums[i].key);
        if (v != nums[i].value)
            fail_msg("list queues: lq %s is %llu, expected %llu", nums[i].key,
                     (unsigned long long)v, (unsigned long long)nums[i].value);
    }
    s_expect_listed_str(item, size, "overflow", "reject-publish");
    s_expect_listed_str(item, size, "dead_letter_exchange", "");
    s_expect_listed_str(item, size, "dead_letter_key", "lq.dead");
    // A queue without arguments lists none of them.
    assert_true(harness_items_find(list->wire.items.ptr, list->wire.items.len, "name", "lq.dead",
                                   &item, &size));
    static const char *const args[] = {"max_length",           "max_length_bytes", "overflow",
                                       "message_ttl",          "expires",          "max_deliveries",
                                       "dead_letter_exchange", "dead_letter_key",  "retry_delay",
                                       "retry_delay_max",      "max_priority",     "ack_timeout"};
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        hop_mp_t v;
        if (harness_map_find(item, size, args[i], &v))
            fail_msg("list queues: lq.dead lists '%s', which was never set", args[i]);
    }
    uint64_t v = 0;
    assert_true(harness_map_uint(item, size, "messages_ready", &v));
    assert_int_equal(v, 1);
    raw_msg_destroy(&list);
    assert_int_equal(raw_qstat(a, "lx", "expired"), 1);
    assert_int_equal(raw_qstat(a, "lx", "dropped"), 1);

    assert_int_equal(gx_consumer_ack_timeout(a, "lc"), 5000);

    static const struct {
        const char *key;
        uint64_t value;
    } totals[] = {
        {"returned", 1},         {"confirmed", 2},        {"rejected_publishes", 1},
        {"dead_lettered", 1},    {"dropped", 1},          {"expired", 1},
        {"revoked", 0},          {"messages_delayed", 1}, {"messages_ready", 1},
        {"messages_unacked", 0},
    };
    raw_msg_t *status = raw_status(a);
    assert_non_null(status);
    for (size_t i = 0; i < sizeof totals / sizeof totals[0]; i++) {
        if (!harness_map_uint(zmq_msg_data(&status->header), zmq_msg_size(&status->header),
                              totals[i].key, &v))
            fail_msg("status has no '%s'", totals[i].key);
        if (v != totals[i].value)
            fail_msg("status %s is %llu, expected %llu", totals[i].key, (unsigned long long)v,
                     (unsigned long long)totals[i].value);
    }
    raw_msg_destroy(&status);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_priorities_deliver_highest_first_fifo_within,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_queue_arguments_are_checked_and_fixed_at_first_declare,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_list_and_status_show_arguments_and_counters,
                                        raw_fx_setup, raw_fx_teardown),
        // Again with batching clients (the broker's batch path for deliveries).
        cmocka_unit_test_setup_teardown(test_priorities_deliver_highest_first_fifo_within,
                                        raw_fx_setup_batch, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_list_and_status_show_arguments_and_counters,
                                        raw_fx_setup_batch, raw_fx_teardown),
    };
    return cmocka_run_group_tests_name("integration.guarantees_queues", tests, NULL, NULL);
}
