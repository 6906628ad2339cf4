// tests/integration/test_guarantees_ack_deadlines.c - ack deadlines over the raw wire protocol
// (docs/PROTOCOL.md 4.5, 6.5): a queue's or a consumer's ack_timeout revokes an unacked
// delivery and redelivers it; a late ack is refused. The tests wait for the revoke with a
// deadline and assert only lower bounds, never speed.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "guarantee_helpers.h"

#include <stdio.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// 11. Ack deadlines

// Waits for the revoked push on c; checks consumer and tag. Returns when it arrived.
static uint64_t
s_expect_revoked(raw_t *c, const char *consumer, uint64_t tag, int timeout_ms)
{
    raw_msg_t *m = raw_next(c, HOP_CMD_REVOKED, timeout_ms);
    if (!m)
        fail_msg("no revoked within %d ms", timeout_ms);
    uint64_t at = harness_now_ms();
    gx_expect_str(m->wire.consumer, consumer);
    assert_true(m->wire.has & HOP_F_TAG);
    assert_int_equal(m->wire.tag, tag);
    assert_true((m->wire.has & HOP_F_TEXT) && m->wire.text.len > 0);
    raw_msg_destroy(&m);
    return at;
}

// A late ack of a revoked tag: 406 saying it was revoked, carrying the ack's id.
static void
s_expect_late_ack_refused(raw_t *c, uint64_t tag)
{
    hop_enc_t *enc = raw_begin(c, HOP_CMD_ACK);
    hop_enc_uint(enc, "tag", tag);
    char text[512];
    assert_int_equal(gx_call(c, text, sizeof text), HOP_CODE_PRECONDITION_FAILED);
    if (!strstr(text, "revoked"))
        fail_msg("late ack of tag %llu: the error does not say it was revoked: %s",
                 (unsigned long long)tag, text);
}

static void
test_queue_ack_timeout_revokes_and_redelivers(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    enum { DEADLINE = 1000 };
    hop_enc_t *enc = gx_qdecl(a, "slow");
    hop_enc_uint(enc, "ack_timeout", DEADLINE);
    assert_int_equal(gx_call(a, NULL, 0), 0);
    assert_int_equal(gx_consume(a, "slow", "c1", 1, 0), 0);
    assert_int_equal(gx_consumer_ack_timeout(a, "c1"), DEADLINE);

    uint64_t t0 = harness_now_ms();
    raw_publish_text(b, "", "slow", "job", NULL);
    uint64_t tag1 = raw_expect_deliver(a, "job", false, 1);
    // Not acked: revoked after the deadline (never before), within 3 s of it.
    uint64_t at = s_expect_revoked(a, "c1", tag1, DEADLINE + 3000);
    if (at - t0 < DEADLINE)
        fail_msg("revoked %llu ms after publishing, before the %d ms deadline",
                 (unsigned long long)(at - t0), DEADLINE);
    // ... and delivered again, flagged, under a new tag.
    raw_msg_t *m = raw_deliver(a);
    raw_check_delivery(m, "job", true, 2);
    uint64_t tag2 = m->wire.tag;
    assert_true(tag2 > tag1);
    raw_msg_destroy(&m);
    // The late ack of the old tag cannot settle anything.
    s_expect_late_ack_refused(a, tag1);
    assert_int_equal(raw_qstat(a, "slow", "messages_unacked"), 1);
    raw_ack(a, tag2, false);
    raw_expect_no_error(a);
    raw_expect_no_delivery(a);
    assert_int_equal(raw_qstat(a, "slow", "messages"), 0);
    assert_int_equal(raw_qstat(a, "slow", "acked"), 1);
    assert_int_equal(raw_qstat(a, "slow", "delivered"), 2);
    assert_int_equal(raw_status_uint(a, "revoked"), 1);

    // get has no deadline.
    assert_int_equal(raw_cancel(a, "c1"), 0);
    raw_publish_text(b, "", "slow", "got", NULL);
    m = gx_get_ok(b, "slow", false);
    raw_check_delivery(m, "got", false, 1);
    uint64_t tag = m->wire.tag;
    raw_msg_destroy(&m);
    // Neither has a no-ack consumer.
    hop_enc_t *nenc = raw_begin(b, HOP_CMD_CONSUME);
    hop_enc_cstr(nenc, "queue", "slow");
    hop_enc_cstr(nenc, "consumer", "free");
    hop_enc_bool(nenc, "no_ack", true);
    assert_int_equal(gx_call(b, NULL, 0), 0);
    raw_publish_text(b, "", "slow", "fire and forget", NULL);
    raw_expect_deliver(b, "fire and forget", false, 1);
    harness_pause_ms(DEADLINE + 500);
    raw_sync(b);
    assert_int_equal(raw_pending(b, HOP_CMD_REVOKED), 0);
    raw_ack(b, tag, false);
    raw_expect_no_error(b);
    assert_int_equal(raw_status_uint(a, "revoked"), 1);
    assert_int_equal(raw_qstat(a, "slow", "messages"), 0);
}

static void
test_consumer_ack_timeout_overrides_the_queue(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    // Values under 1000 ms are refused, on the queue and on the consumer.
    hop_enc_t *enc = gx_qdecl(a, "bad");
    hop_enc_uint(enc, "ack_timeout", 999);
    assert_int_equal(gx_call(a, NULL, 0), HOP_CODE_SYNTAX_ERROR);
    assert_false(gx_queue_listed(a, "bad"));
    enc = gx_qdecl(a, "q2");
    hop_enc_uint(enc, "ack_timeout", 60000);
    assert_int_equal(gx_call(a, NULL, 0), 0);
    assert_int_equal(gx_consume(a, "q2", "too-short", 1, 999), HOP_CODE_SYNTAX_ERROR);

    assert_int_equal(raw_queue_declare(a, "plain", false, false, false, false), 0);
    assert_int_equal(gx_consume(b, "plain", "default", 1, 0), 0);
    assert_int_equal(gx_consume(b, "q2", "queue's", 1, 0), 0);
    assert_int_equal(gx_consume(a, "q2", "fast", 1, 1000), 0);
    assert_int_equal(gx_consumer_ack_timeout(a, "fast"), 1000);
    assert_int_equal(gx_consumer_ack_timeout(a, "queue's"), 60000);
    assert_int_equal(gx_consumer_ack_timeout(a, "default"), 30u * 60 * 1000);
    raw_msg_t *list = raw_list(a, "consumers");
    assert_non_null(list);
    assert_int_equal(harness_items_count(list->wire.items.ptr, list->wire.items.len), 3);
    raw_msg_destroy(&list); // "too-short" was never made
}

static void
test_consumer_ack_timeout_revokes_before_the_queue_deadline(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    hop_enc_t *enc = gx_qdecl(a, "q2");
    hop_enc_uint(enc, "ack_timeout", 60000);
    assert_int_equal(gx_call(a, NULL, 0), 0);
    assert_int_equal(gx_consume(a, "q2", "fast", 1, 1000), 0);
    assert_int_equal(gx_consumer_ack_timeout(a, "fast"), 1000);
    assert_int_equal(gx_consume(a, "q2", "too-short", 1, 999), HOP_CODE_SYNTAX_ERROR);

    uint64_t t0 = harness_now_ms();
    raw_publish_text(b, "", "q2", "job", NULL);
    uint64_t tag1 = raw_expect_deliver(a, "job", false, 1);
    uint64_t at = s_expect_revoked(a, "fast", tag1, 1000 + 3000);
    assert_true(at - t0 >= 1000);
    uint64_t tag2 = raw_expect_deliver(a, "job", true, 2);
    s_expect_late_ack_refused(a, tag1);
    raw_ack(a, tag2, false);
    raw_expect_no_error(a);
    assert_int_equal(raw_qstat(a, "q2", "messages"), 0);
    assert_int_equal(raw_status_uint(a, "revoked"), 1);

    // Upwards too: a consumer with 60 s on a queue with 1 s keeps its delivery past 1 s.
    enc = gx_qdecl(a, "q1s");
    hop_enc_uint(enc, "ack_timeout", 1000);
    assert_int_equal(gx_call(a, NULL, 0), 0);
    assert_int_equal(gx_consume(b, "q1s", "patient", 1, 60000), 0);
    assert_int_equal(gx_consumer_ack_timeout(a, "patient"), 60000);
    raw_publish_text(a, "", "q1s", "long job", NULL);
    uint64_t tag = raw_expect_deliver(b, "long job", false, 1);
    harness_pause_ms(1000 + 500);
    raw_sync(b);
    assert_int_equal(raw_pending(b, HOP_CMD_REVOKED), 0);
    raw_ack(b, tag, false);
    raw_expect_no_error(b);
    assert_int_equal(raw_qstat(a, "q1s", "acked"), 1);
    assert_int_equal(raw_status_uint(a, "revoked"), 1);
}

static void
test_revoked_delivery_is_offered_to_another_consumer_first(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    hop_enc_t *enc = gx_qdecl(a, "shared");
    hop_enc_uint(enc, "ack_timeout", 1000);
    assert_int_equal(gx_call(a, NULL, 0), 0);
    assert_int_equal(gx_consume(a, "shared", "stuck", 1, 0), 0);
    raw_publish_text(b, "", "shared", "job", NULL);
    uint64_t tag = raw_expect_deliver(a, "job", false, 1);
    assert_int_equal(gx_consume(b, "shared", "healthy", 1, 0), 0);
    s_expect_revoked(a, "stuck", tag, 1000 + 3000);
    // The other consumer gets it; the stuck one stays and gets nothing more.
    uint64_t tag2 = raw_expect_deliver(b, "job", true, 2);
    raw_ack(b, tag2, false);
    raw_expect_no_error(b);
    raw_expect_no_delivery(a);
    s_expect_late_ack_refused(a, tag);
    assert_int_equal(raw_qstat(a, "shared", "consumers"), 2);
    assert_int_equal(raw_qstat(a, "shared", "messages"), 0);
    // The stuck consumer still takes new work.
    raw_publish_text(b, "", "shared", "next", NULL);
    raw_publish_text(b, "", "shared", "after", NULL);
    raw_msg_t *m1 = raw_deliver(a);
    raw_msg_t *m2 = raw_deliver(b);
    assert_true((raw_body_is(m1, "next") && raw_body_is(m2, "after")) ||
                (raw_body_is(m1, "after") && raw_body_is(m2, "next")));
    raw_ack(a, m1->wire.tag, false);
    raw_ack(b, m2->wire.tag, false);
    raw_msg_destroy(&m1);
    raw_msg_destroy(&m2);
    raw_expect_no_error(a);
    raw_expect_no_error(b);
    assert_int_equal(raw_qstat(a, "shared", "acked"), 3);
}

static void
test_revoke_at_the_delivery_limit_dead_letters(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "lim.dead", false, false, false, false), 0);
    hop_enc_t *enc = gx_qdecl(a, "lim");
    hop_enc_uint(enc, "ack_timeout", 1000);
    hop_enc_uint(enc, "max_deliveries", 1);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "lim.dead");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    assert_int_equal(gx_consume(a, "lim", "c", 1, 0), 0);
    raw_publish_text(a, "", "lim", "stuck", NULL);
    uint64_t tag = raw_expect_deliver(a, "stuck", false, 1);
    s_expect_revoked(a, "c", tag, 1000 + 3000);
    raw_expect_no_delivery(a);
    s_expect_late_ack_refused(a, tag);
    assert_int_equal(raw_qstat(a, "lim", "messages"), 0);
    assert_int_equal(raw_qstat(a, "lim", "dead_lettered"), 1);
    raw_msg_t *m = gx_get_ok(a, "lim.dead", true);
    raw_check_delivery(m, "stuck", false, 1);
    gx_death_t d[DEATH_MAX];
    assert_int_equal(gx_deaths(m, d), 1);
    assert_string_equal(d[0].reason, "delivery-limit");
    assert_string_equal(d[0].queue, "lim");
    assert_int_equal(d[0].count, 1);
    raw_msg_destroy(&m);
}

static void
test_many_revoked_deliveries_each_come_back_once(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    enum { N = 12 };
    hop_enc_t *enc = gx_qdecl(a, "many");
    hop_enc_uint(enc, "ack_timeout", 1000);
    assert_int_equal(gx_call(a, NULL, 0), 0);
    assert_int_equal(gx_consume(a, "many", "stuck", N, 0), 0);
    char body[16];
    for (int i = 0; i < N; i++) {
        snprintf(body, sizeof body, "m%02d", i);
        raw_publish_text(b, "", "many", body, NULL);
    }
    uint64_t old[N];
    for (int i = 0; i < N; i++) {
        snprintf(body, sizeof body, "m%02d", i);
        old[i] = raw_expect_deliver(a, body, false, 1);
    }
    // Every one is revoked, once.
    bool revoked[N] = {false};
    for (int i = 0; i < N; i++) {
        raw_msg_t *m = raw_next(a, HOP_CMD_REVOKED, 1000 + 3000);
        if (!m)
            fail_msg("%d of %d deliveries revoked after 4 s", i, N);
        int k = 0;
        while (k < N && old[k] != m->wire.tag)
            k++;
        if (k == N || revoked[k])
            fail_msg("revoked tag %llu: %s", (unsigned long long)m->wire.tag,
                     k == N ? "never delivered" : "revoked twice");
        revoked[k] = true;
        raw_msg_destroy(&m);
    }
    // They come back in their original order, flagged, and the late acks of the old tags all
    // fail saying why.
    uint64_t fresh[N];
    for (int i = 0; i < N; i++) {
        snprintf(body, sizeof body, "m%02d", i);
        fresh[i] = raw_expect_deliver(a, body, true, 2);
    }
    for (int i = 0; i < N; i++)
        raw_ack(a, fresh[i], false);
    raw_expect_no_error(a);
    raw_expect_no_delivery(a);
    assert_int_equal(raw_qstat(a, "many", "messages"), 0);
    assert_int_equal(raw_qstat(a, "many", "acked"), N);
    assert_int_equal(raw_status_uint(a, "revoked"), N);
    for (int i = 0; i < N; i++)
        s_expect_late_ack_refused(a, old[i]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_queue_ack_timeout_revokes_and_redelivers, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_consumer_ack_timeout_overrides_the_queue, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_consumer_ack_timeout_revokes_before_the_queue_deadline,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_revoked_delivery_is_offered_to_another_consumer_first,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_revoke_at_the_delivery_limit_dead_letters,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_many_revoked_deliveries_each_come_back_once,
                                        raw_fx_setup, raw_fx_teardown),
        // Again with batching clients (the broker's batch path for deliveries).
        cmocka_unit_test_setup_teardown(test_queue_ack_timeout_revokes_and_redelivers,
                                        raw_fx_setup_batch, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_many_revoked_deliveries_each_come_back_once,
                                        raw_fx_setup_batch, raw_fx_teardown),
    };
    return cmocka_run_group_tests_name("integration.guarantees_ack_deadlines", tests, NULL, NULL);
}
