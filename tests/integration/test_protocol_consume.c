// tests/integration/test_protocol_consume.c - consuming over the raw wire protocol
// (docs/PROTOCOL.md): get, ack, nack and requeue, prefetch, round robin, consumer tags, and
// what happens to queues, consumers and unacked messages when they or their connection go
// away.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "protocol_helpers.h"

#include <stdio.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// Getting, acking, requeueing

static void
test_get_and_get_empty(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "g", false, false, false, false), 0);
    raw_msg_t *m = raw_get(a, "g", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_EMPTY);
    assert_int_equal(m->wire.id, raw_last_id(a));
    raw_msg_destroy(&m);

    raw_publish_text(a, "", "g", "first", NULL);
    raw_publish_text(a, "", "g", "second", NULL);
    m = raw_get(a, "g", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    assert_int_equal(m->wire.id, raw_last_id(a));
    assert_true(raw_body_is(m, "first"));
    assert_int_equal(m->wire.messages, 1);
    assert_false(m->wire.redelivered);
    assert_int_equal(m->wire.count, 1);
    uint64_t tag = m->wire.tag;
    raw_msg_destroy(&m);
    assert_int_equal(raw_qstat(a, "g", "messages_unacked"), 1);

    // no_ack: settled as it is sent.
    m = raw_get(a, "g", true);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    assert_true(raw_body_is(m, "second"));
    assert_int_equal(m->wire.messages, 0);
    assert_true(m->wire.tag > tag);
    raw_msg_destroy(&m);
    assert_int_equal(raw_qstat(a, "g", "messages_unacked"), 1);
    assert_int_equal(raw_qstat(a, "g", "messages_ready"), 0);

    // An unacked get returns to the queue when rejected with requeue.
    hop_enc_t *enc = raw_begin_noid(a, HOP_CMD_REJECT);
    hop_enc_uint(enc, "tag", tag);
    raw_send_enc(a, NULL, 0);
    m = raw_get(a, "g", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    assert_true(raw_body_is(m, "first"));
    assert_true(m->wire.redelivered);
    assert_int_equal(m->wire.count, 2);
    raw_ack(a, m->wire.tag, false);
    raw_msg_destroy(&m);
    m = raw_get(a, "g", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_EMPTY);
    raw_msg_destroy(&m);
    // get of a missing queue
    m = raw_get(a, "missing", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_ERROR);
    assert_int_equal(m->wire.code, HOP_CODE_NOT_FOUND);
    raw_msg_destroy(&m);
    raw_expect_no_error(a);
}

static void
test_ack_unknown_tag_406(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_ack(a, 4242, false);
    px_expect_error(a, HOP_CODE_PRECONDITION_FAILED);
    // An ack with an id gets the error under that id, naming the tag.
    hop_enc_t *enc = raw_begin(a, HOP_CMD_ACK);
    hop_enc_uint(enc, "tag", 777);
    raw_msg_t *m = raw_call(a);
    assert_non_null(m);
    assert_int_equal(m->wire.code, HOP_CODE_PRECONDITION_FAILED);
    char text[512];
    assert_non_null(strstr(raw_str(m->wire.text, text, sizeof text), "777"));
    raw_msg_destroy(&m);
    // Double ack.
    assert_int_equal(raw_queue_declare(a, "acks", false, false, false, false), 0);
    raw_publish_text(a, "", "acks", "x", NULL);
    m = raw_get(a, "acks", false);
    uint64_t tag = m->wire.tag;
    raw_msg_destroy(&m);
    raw_ack(a, tag, false);
    raw_expect_no_error(a);
    raw_ack(a, tag, false);
    px_expect_error(a, HOP_CODE_PRECONDITION_FAILED);
    // Another connection's tag is unknown here.
    raw_publish_text(a, "", "acks", "y", NULL);
    raw_sync(a);
    m = raw_get(fx->b, "acks", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    uint64_t btag = m->wire.tag;
    raw_msg_destroy(&m);
    raw_ack(a, btag + 1000, false);
    px_expect_error(a, HOP_CODE_PRECONDITION_FAILED);
    assert_int_equal(raw_qstat(a, "acks", "messages_unacked"), 1);
    raw_ack(fx->b, btag, false);
    raw_expect_no_error(fx->b);
    assert_int_equal(raw_qstat(a, "acks", "acked"), 2);
}

static void
test_nack_requeue_redelivers_with_count(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "n", false, false, false, false), 0);
    assert_int_equal(raw_consume(a, "n", NULL, 1, false, NULL, 0), 0);
    raw_publish_text(fx->b, "", "n", "again", NULL);
    uint64_t t1 = raw_expect_deliver(a, "again", false, 1);
    raw_nack(a, t1, false, true);
    uint64_t t2 = raw_expect_deliver(a, "again", true, 2);
    assert_true(t2 > t1);
    raw_nack(a, t2, false, true);
    uint64_t t3 = raw_expect_deliver(a, "again", true, 3);
    raw_ack(a, t3, false);
    raw_expect_no_error(a);
    assert_int_equal(raw_qstat(a, "n", "messages"), 0);
    assert_int_equal(raw_qstat(a, "n", "acked"), 1);

    // requeue:false drops it.
    raw_publish_text(fx->b, "", "n", "drop-me", NULL);
    uint64_t t4 = raw_expect_deliver(a, "drop-me", false, 1);
    raw_nack(a, t4, false, false);
    raw_expect_no_delivery(a);
    assert_int_equal(raw_qstat(a, "n", "messages"), 0);
    // The late ack of a requeued tag is unknown.
    raw_ack(a, t1, false);
    px_expect_error(a, HOP_CODE_PRECONDITION_FAILED);
}

static void
test_nack_multiple_requeues_in_order_at_head(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "order", false, false, false, false), 0);
    for (int i = 0; i < 6; i++) {
        char body[8];
        snprintf(body, sizeof body, "m%d", i);
        raw_publish_text(a, "", "order", body, NULL);
    }
    uint64_t tags[3];
    for (int i = 0; i < 3; i++) {
        raw_msg_t *m = raw_get(a, "order", false);
        assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
        tags[i] = m->wire.tag;
        raw_msg_destroy(&m);
    }
    raw_nack(a, tags[2], true, true);
    char got[256];
    // Requeued messages go ahead of those never delivered, in their original order.
    assert_string_equal(raw_drain(a, "order", got, sizeof got), "m0,m1,m2,m3,m4,m5");
}

static void
test_multiple_ack(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "multi", false, false, false, false), 0);
    assert_int_equal(raw_consume(a, "multi", NULL, 0, false, NULL, 0), 0);
    for (int i = 0; i < 5; i++)
        raw_publish_text(fx->b, "", "multi", "x", NULL);
    uint64_t tags[5];
    for (int i = 0; i < 5; i++)
        tags[i] = raw_expect_deliver(a, "x", false, 1);
    for (int i = 1; i < 5; i++)
        assert_true(tags[i] > tags[i - 1]);
    raw_ack(a, tags[2], true);
    assert_int_equal(raw_qstat(a, "multi", "messages_unacked"), 2);
    assert_int_equal(raw_qstat(a, "multi", "acked"), 3);
    raw_ack(a, tags[4], true);
    assert_int_equal(raw_qstat(a, "multi", "messages_unacked"), 0);
    assert_int_equal(raw_qstat(a, "multi", "acked"), 5);
    raw_expect_no_error(a);
    // Nothing left up to that tag.
    raw_ack(a, tags[4], true);
    px_expect_error(a, HOP_CODE_PRECONDITION_FAILED);
}

static void
test_prefetch_bounds_unacked(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "pf", false, false, false, false), 0);
    assert_int_equal(raw_consume(a, "pf", "pf", 2, false, NULL, 0), 0);
    for (int i = 0; i < 5; i++)
        raw_publish_text(fx->b, "", "pf", "x", NULL);
    raw_sync(fx->b);
    raw_sync(a);
    assert_int_equal(raw_pending(a, HOP_CMD_DELIVER), 2);
    assert_int_equal(raw_qstat(a, "pf", "messages_ready"), 3);
    assert_int_equal(raw_qstat(a, "pf", "messages_unacked"), 2);
    uint64_t t = raw_expect_deliver(a, "x", false, 1);
    raw_ack(a, t, false);
    raw_sync(a);
    assert_int_equal(raw_pending(a, HOP_CMD_DELIVER), 2);
    assert_int_equal(raw_qstat(a, "pf", "messages_ready"), 2);
}

static void
test_round_robin_between_consumers(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a, *b = fx->b;
    assert_int_equal(raw_queue_declare(a, "rr", false, false, false, false), 0);
    assert_int_equal(raw_consume(a, "rr", NULL, 0, true, NULL, 0), 0);
    assert_int_equal(raw_consume(b, "rr", NULL, 0, true, NULL, 0), 0);
    for (int i = 0; i < 100; i++)
        raw_publish_text(a, "", "rr", "x", NULL);
    raw_sync(a);
    raw_sync(b);
    size_t na = raw_pending(a, HOP_CMD_DELIVER), nb = raw_pending(b, HOP_CMD_DELIVER);
    assert_int_equal(na + nb, 100);
    assert_true(na >= 45 && nb >= 45);
}

static void
test_consumer_tags(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "tags", false, false, false, false), 0);
    char tag[256];
    assert_int_equal(raw_consume(a, "tags", NULL, 0, false, tag, sizeof tag), 0);
    assert_true(strlen(tag) > 0);
    assert_int_equal(raw_consume(a, "tags", "mine", 0, false, tag, sizeof tag), 0);
    assert_string_equal(tag, "mine");
    assert_int_equal(raw_consume(a, "tags", "mine", 0, false, NULL, 0),
                     HOP_CODE_PRECONDITION_FAILED);
    // The same tag on another connection is fine.
    assert_int_equal(raw_consume(fx->b, "tags", "mine", 0, false, NULL, 0), 0);
    assert_int_equal(raw_cancel(a, "no-such-consumer"), HOP_CODE_NOT_FOUND);
    assert_int_equal(raw_cancel(a, "mine"), 0);
    assert_int_equal(raw_cancel(a, "mine"), HOP_CODE_NOT_FOUND);
    // Exclusive consumers: 403 while others consume, and they lock others out.
    hop_enc_t *enc = raw_begin(a, HOP_CMD_CONSUME);
    hop_enc_cstr(enc, "queue", "tags");
    hop_enc_bool(enc, "exclusive", true);
    px_call_error(a, HOP_CODE_ACCESS_REFUSED);
    assert_int_equal(raw_queue_declare(a, "solo", false, false, false, false), 0);
    enc = raw_begin(a, HOP_CMD_CONSUME);
    hop_enc_cstr(enc, "queue", "solo");
    hop_enc_bool(enc, "exclusive", true);
    raw_msg_t *m = raw_call(a);
    assert_int_equal(m->wire.cmd, HOP_CMD_CONSUME_OK);
    raw_msg_destroy(&m);
    assert_int_equal(raw_consume(fx->b, "solo", NULL, 0, false, NULL, 0), HOP_CODE_ACCESS_REFUSED);
}

// ---------------------------------------------------------------------------------------
// Queues and consumers that go away

static void
test_auto_delete_queue_removed_after_last_cancel(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "auto", false, false, true, false), 0);
    // Not deleted before it ever had a consumer.
    assert_true(px_queue_exists(a, "auto"));
    assert_int_equal(raw_consume(a, "auto", "c1", 0, false, NULL, 0), 0);
    assert_int_equal(raw_consume(fx->b, "auto", "c2", 0, false, NULL, 0), 0);
    assert_int_equal(raw_cancel(a, "c1"), 0);
    assert_true(px_queue_exists(a, "auto"));
    assert_int_equal(raw_cancel(fx->b, "c2"), 0);
    assert_false(px_queue_exists(a, "auto"));
    // The client that cancelled is not told 'cancelled' for its own cancel.
    raw_sync(fx->b);
    assert_int_equal(raw_pending(fx->b, HOP_CMD_CANCELLED), 0);
}

static void
test_exclusive_queue_removed_when_connection_closes(void **state)
{
    fx_t *fx = *state;
    raw_t *c = px_connect(fx, HB_LONG, "owner");
    assert_int_equal(raw_queue_declare(c, "excl", false, true, false, false), 0);
    raw_publish_text(c, "", "excl", "x", NULL);
    raw_begin(c, HOP_CMD_CLOSE);
    raw_msg_t *m = raw_call(c);
    assert_non_null(m);
    assert_int_equal(m->wire.cmd, HOP_CMD_CLOSE_OK);
    raw_msg_destroy(&m);
    assert_false(px_queue_exists(fx->a, "excl"));
    raw_destroy(&c);
}

static bool
s_queue_gone(void *arg)
{
    return !px_queue_exists(arg, "silent-excl");
}

static void
test_exclusive_queue_removed_when_connection_dies(void **state)
{
    fx_t *fx = *state;
    raw_t *c = px_connect(fx, HB_SHORT, "silent-owner");
    assert_int_equal(raw_queue_declare(c, "silent-excl", false, true, false, false), 0);
    raw_destroy(&c); // no close: the broker notices the silence
    assert_true(harness_wait_until(s_queue_gone, fx->a, WAIT_MS));
}

static void
test_consumer_on_deleted_queue_gets_cancelled(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a, *b = fx->b;
    assert_int_equal(raw_queue_declare(a, "doomed", false, false, false, false), 0);
    assert_int_equal(raw_consume(a, "doomed", "watcher", 0, false, NULL, 0), 0);
    raw_publish_text(b, "", "doomed", "held", NULL);
    uint64_t tag = raw_expect_deliver(a, "held", false, 1);
    raw_publish_text(b, "", "doomed", "ready", NULL);
    raw_msg_t *m = raw_deliver(a);
    raw_msg_destroy(&m);
    hop_enc_t *enc = raw_begin(b, HOP_CMD_QUEUE_DELETE);
    hop_enc_cstr(enc, "queue", "doomed");
    m = raw_call(b);
    assert_int_equal(m->wire.cmd, HOP_CMD_OK);
    assert_int_equal(m->wire.messages, 2); // both unacked went with it
    raw_msg_destroy(&m);
    m = raw_next(a, HOP_CMD_CANCELLED, WAIT_MS);
    assert_non_null(m);
    assert_true(raw_str_is(m->wire.consumer, "watcher"));
    raw_msg_destroy(&m);
    // Its deliveries were dropped with the queue: an ack now is harmless (ok or 406), and the
    // consumer tag is gone.
    raw_ack(a, tag, false);
    raw_sync(a);
    while ((m = raw_pending(a, HOP_CMD_ERROR) ? raw_next(a, HOP_CMD_ERROR, 0) : NULL)) {
        assert_int_equal(m->wire.code, HOP_CODE_PRECONDITION_FAILED);
        raw_msg_destroy(&m);
    }
    assert_int_equal(raw_cancel(a, "watcher"), HOP_CODE_NOT_FOUND);
    assert_true(harness_broker_alive(fx->broker));
}

static void
test_cancel_returns_unacked_to_queue(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a, *b = fx->b;
    assert_int_equal(raw_queue_declare(a, "cq", false, false, false, false), 0);
    assert_int_equal(raw_consume(a, "cq", "first", 0, false, NULL, 0), 0);
    raw_publish_text(b, "", "cq", "one", NULL);
    raw_publish_text(b, "", "cq", "two", NULL);
    uint64_t t1 = raw_expect_deliver(a, "one", false, 1);
    raw_expect_deliver(a, "two", false, 1);
    assert_int_equal(raw_cancel(a, "first"), 0);
    assert_int_equal(raw_qstat(a, "cq", "messages_ready"), 2);
    raw_ack(a, t1, false);
    px_expect_error(a, HOP_CODE_PRECONDITION_FAILED);
    assert_int_equal(raw_consume(b, "cq", NULL, 0, false, NULL, 0), 0);
    raw_ack(b, raw_expect_deliver(b, "one", true, 2), false);
    raw_ack(b, raw_expect_deliver(b, "two", true, 2), false);
    raw_expect_no_error(b);
}

static void
test_close_returns_unacked_to_queue(void **state)
{
    fx_t *fx = *state;
    raw_t *c = px_connect(fx, HB_LONG, "closer");
    assert_int_equal(raw_queue_declare(fx->a, "close-q", false, false, false, false), 0);
    assert_int_equal(raw_consume(c, "close-q", NULL, 0, false, NULL, 0), 0);
    raw_publish_text(fx->a, "", "close-q", "held", NULL);
    raw_expect_deliver(c, "held", false, 1);
    raw_begin(c, HOP_CMD_CLOSE);
    raw_msg_t *m = raw_call(c);
    assert_int_equal(m->wire.cmd, HOP_CMD_CLOSE_OK);
    raw_msg_destroy(&m);
    raw_destroy(&c);
    assert_int_equal(raw_consume(fx->b, "close-q", NULL, 0, false, NULL, 0), 0);
    raw_ack(fx->b, raw_expect_deliver(fx->b, "held", true, 2), false);
    raw_expect_no_error(fx->b);
}

static void
test_silent_consumer_declared_dead_and_messages_redelivered(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    // A heartbeat long enough that dying is sure to get its deliveries before it is declared
    // dead, short enough to keep the test quick.
    raw_t *dying = px_connect(fx, 400, "dying");
    assert_int_equal(raw_queue_declare(a, "work", false, false, false, false), 0);
    assert_int_equal(raw_consume(dying, "work", NULL, 3, false, NULL, 0), 0);
    for (int i = 0; i < 5; i++) {
        char body[8];
        snprintf(body, sizeof body, "w%d", i);
        raw_publish_text(a, "", "work", body, NULL);
    }
    for (int i = 0; i < 3; i++) {
        char body[8];
        snprintf(body, sizeof body, "w%d", i);
        raw_expect_deliver(dying, body, false, 1);
    }
    // dying now says nothing more; a second consumer gets the rest at once and, once the broker
    // has declared dying dead, the three it held, flagged as redelivered.
    assert_int_equal(raw_consume(a, "work", NULL, 0, false, NULL, 0), 0);
    raw_ack(a, raw_expect_deliver(a, "w3", false, 1), false);
    raw_ack(a, raw_expect_deliver(a, "w4", false, 1), false);
    for (int i = 0; i < 3; i++) {
        char body[8];
        snprintf(body, sizeof body, "w%d", i);
        raw_ack(a, raw_expect_deliver(a, body, true, 2), false);
    }
    raw_expect_no_error(a);
    assert_int_equal(raw_qstat(a, "work", "acked"), 5);
    assert_int_equal(raw_qstat(a, "work", "consumers"), 1);
    raw_destroy(&dying);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_and_get_empty, raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_ack_unknown_tag_406, raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_nack_requeue_redelivers_with_count, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_nack_multiple_requeues_in_order_at_head, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_multiple_ack, raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_prefetch_bounds_unacked, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_round_robin_between_consumers, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_consumer_tags, raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_auto_delete_queue_removed_after_last_cancel,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_exclusive_queue_removed_when_connection_closes,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_exclusive_queue_removed_when_connection_dies,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_consumer_on_deleted_queue_gets_cancelled, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_returns_unacked_to_queue, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_close_returns_unacked_to_queue, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_silent_consumer_declared_dead_and_messages_redelivered,
                                        raw_fx_setup, raw_fx_teardown),
    };
    return cmocka_run_group_tests_name("integration.protocol_consume", tests, NULL, NULL);
}
