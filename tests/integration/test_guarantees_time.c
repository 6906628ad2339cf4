// tests/integration/test_guarantees_time.c - hopperd's guarantees that are about time, over
// the raw wire protocol (docs/PROTOCOL.md 4.6, 6.5): message TTL, queue expiry and delayed
// retries. These tests wait for the event with a deadline and assert only lower bounds ("not
// before the delay"), never speed.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "guarantee_helpers.h"

// ---------------------------------------------------------------------------------------
// 6. Message TTL

static void
test_message_ttl_expired_messages_are_never_delivered(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    enum { TTL = 200 };
    hop_enc_t *enc = gx_qdecl(a, "ttl");
    hop_enc_uint(enc, "message_ttl", TTL);
    assert_int_equal(gx_call(a, NULL, 0), 0);

    // Before its TTL it is there (unless that much time passed: no assumption about speed).
    uint64_t expired = 0;
    uint64_t t0 = harness_now_ms();
    raw_publish_text(a, "", "ttl", "fresh", NULL);
    raw_msg_t *m = raw_get(a, "ttl", true);
    if (m->wire.cmd == HOP_CMD_GET_OK)
        assert_true(raw_body_is(m, "fresh"));
    else {
        assert_int_equal(m->wire.cmd, HOP_CMD_GET_EMPTY);
        assert_true(harness_now_ms() - t0 >= TTL);
        expired++;
    }
    raw_msg_destroy(&m);

    // After it, never.
    raw_publish_text(a, "", "ttl", "stale", NULL);
    harness_pause_ms(TTL + 300);
    gx_expect_empty(a, "ttl");
    expired++;
    assert_int_equal(raw_qstat(a, "ttl", "expired"), expired);
    assert_int_equal(raw_qstat(a, "ttl", "dropped"), expired); // no dead-letter exchange
    assert_int_equal(raw_qstat(a, "ttl", "messages"), 0);

    // A long TTL ahead of a short one delays the short one's removal, never its expiry.
    assert_int_equal(raw_queue_declare(a, "mixed", false, false, false, false), 0);
    raw_publish_text(a, "", "mixed", "long",
                     &(raw_pub_t){.has_expiration = true, .expiration = 60000});
    raw_publish_text(a, "", "mixed", "short",
                     &(raw_pub_t){.has_expiration = true, .expiration = TTL});
    harness_pause_ms(TTL + 300);
    char bodies[64];
    assert_string_equal(raw_drain(a, "mixed", bodies, sizeof bodies), "long");
    assert_int_equal(raw_qstat(a, "mixed", "expired"), 1);
    // A consumer that comes later gets nothing either.
    assert_int_equal(gx_consume(a, "ttl", "late", 0, 0), 0);
    raw_expect_no_delivery(a);
    assert_int_equal(raw_status_uint(a, "expired"), expired + 1);

    // Expired while unacked, then requeued: it is not delivered again.
    raw_publish_text(a, "", "ttl", "held", NULL);
    uint64_t tag = raw_expect_deliver(a, "held", false, 1);
    harness_pause_ms(TTL + 300);
    gx_settle(a, HOP_CMD_NACK, tag, 1, -1);
    raw_expect_no_delivery(a);
    assert_int_equal(raw_qstat(a, "ttl", "messages"), 0);
    assert_int_equal(raw_qstat(a, "ttl", "expired"), expired + 1);

    // Expiry is checked at the head of every priority level, not only the highest one.
    enc = gx_qdecl(a, "pttl");
    hop_enc_uint(enc, "max_priority", 3);
    assert_int_equal(gx_call(a, NULL, 0), 0);
    raw_publish_text(a, "", "pttl", "hi", &(raw_pub_t){.priority = 3});
    raw_publish_text(a, "", "pttl", "lo", &(raw_pub_t){.has_expiration = true, .expiration = TTL});
    gx_wait_qfield(a, "pttl", "expired", 1, 3000);
    assert_string_equal(raw_drain(a, "pttl", bodies, sizeof bodies), "hi");
}

static void
test_message_ttl_dead_letters_with_reason_expired(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    enum { TTL = 200 };
    assert_int_equal(raw_queue_declare(a, "dead", false, false, false, false), 0);
    hop_enc_t *enc = gx_qdecl(a, "td");
    hop_enc_uint(enc, "message_ttl", TTL);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "dead");
    assert_int_equal(gx_call(a, NULL, 0), 0);

    uint64_t wall_lo = gx_wall_ms();
    uint64_t t0 = harness_now_ms();
    raw_publish_text(a, "", "td", "e1", &(raw_pub_t){.message_id = "id-e1", .priority = 7});
    uint64_t at = gx_wait_qfield(a, "dead", "messages_ready", 1, 3000);
    uint64_t wall_hi = gx_wall_ms();
    if (at - t0 < TTL)
        fail_msg("dead-lettered %llu ms after publishing, before its TTL of %d ms",
                 (unsigned long long)(at - t0), TTL);
    raw_msg_t *m = gx_get_ok(a, "dead", true);
    raw_check_delivery(m, "e1", false, 1);
    gx_expect_str(m->wire.exchange, "");
    gx_expect_str(m->wire.key, "dead");
    gx_expect_props(m, "id-e1");
    assert_int_equal(m->wire.priority, 7); // kept (PROTOCOL.md 6.4)
    gx_death_t d[DEATH_MAX];
    assert_int_equal(gx_deaths(m, d), 1);
    gx_check_death(&d[0], "expired", "td", "", "td", 1, wall_lo, wall_hi);
    raw_msg_destroy(&m);
    assert_int_equal(raw_qstat(a, "td", "expired"), 1);
    assert_int_equal(raw_qstat(a, "td", "dead_lettered"), 1);
    assert_int_equal(raw_qstat(a, "td", "dropped"), 0);
    assert_int_equal(raw_qstat(a, "td", "messages"), 0);
    assert_int_equal(raw_status_uint(a, "expired"), 1);
}

static void
test_per_message_expiration_and_the_shorter_ttl_applies(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    enum { SHORT = 200 };
    // Per-message expiration on a queue without TTL.
    assert_int_equal(raw_queue_declare(a, "pm", false, false, false, false), 0);
    uint64_t t0 = harness_now_ms();
    raw_publish_text(a, "", "pm", "short",
                     &(raw_pub_t){.has_expiration = true, .expiration = SHORT});
    raw_publish_text(a, "", "pm", "keep", NULL);
    uint64_t at = gx_wait_qfield(a, "pm", "expired", 1, 3000);
    assert_true(at - t0 >= SHORT);
    char bodies[64];
    assert_string_equal(raw_drain(a, "pm", bodies, sizeof bodies), "keep");

    // Queue TTL 10 s, message 200 ms: the message's applies (well before 10 s).
    assert_int_equal(raw_queue_declare(a, "dead", false, false, false, false), 0);
    hop_enc_t *enc = gx_qdecl(a, "qlong");
    hop_enc_uint(enc, "message_ttl", 10000);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "dead");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    t0 = harness_now_ms();
    raw_publish_text(a, "", "qlong", "a",
                     &(raw_pub_t){.has_expiration = true, .expiration = SHORT});
    at = gx_wait_qfield(a, "dead", "messages_ready", 1, 3000);
    assert_true(at - t0 >= SHORT);
    raw_msg_t *m = gx_get_ok(a, "dead", true);
    raw_check_delivery(m, "a", false, 1);
    gx_death_t d[DEATH_MAX];
    assert_int_equal(gx_deaths(m, d), 1);
    assert_string_equal(d[0].reason, "expired");
    assert_string_equal(d[0].queue, "qlong");
    raw_msg_destroy(&m);

    // Queue TTL 200 ms, message 60 s: the queue's applies.
    enc = gx_qdecl(a, "qshort");
    hop_enc_uint(enc, "message_ttl", SHORT);
    assert_int_equal(gx_call(a, NULL, 0), 0);
    t0 = harness_now_ms();
    raw_publish_text(a, "", "qshort", "b",
                     &(raw_pub_t){.has_expiration = true, .expiration = 60000});
    at = gx_wait_qfield(a, "qshort", "expired", 1, 3000);
    assert_true(at - t0 >= SHORT);
    gx_expect_empty(a, "qshort");

    // A dead letter's expiration is removed: it does not expire again where it went.
    assert_int_equal(raw_queue_declare(a, "dead2", false, false, false, false), 0);
    enc = gx_qdecl(a, "q3");
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "dead2");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    raw_publish_text(a, "", "q3", "c", &(raw_pub_t){.has_expiration = true, .expiration = SHORT});
    gx_wait_qfield(a, "dead2", "messages_ready", 1, 3000);
    harness_pause_ms(SHORT + 300);
    assert_int_equal(raw_qstat(a, "dead2", "expired"), 0);
    assert_string_equal(raw_drain(a, "dead2", bodies, sizeof bodies), "c");

    assert_int_equal(raw_status_uint(a, "expired"), 4);
}

// ---------------------------------------------------------------------------------------
// 7. Queue expiry

static void
test_queue_expires_when_unused(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    enum { EXPIRES = 500 };
    uint64_t t0 = harness_now_ms();
    hop_enc_t *enc = gx_qdecl(a, "idle");
    hop_enc_uint(enc, "expires", EXPIRES);
    assert_int_equal(gx_call(a, NULL, 0), 0);
    enc = gx_qdecl(a, "busy");
    hop_enc_uint(enc, "expires", EXPIRES);
    assert_int_equal(gx_call(a, NULL, 0), 0);
    assert_int_equal(gx_consume(b, "busy", "keeper", 0, 0), 0);
    // Publishing is no use: the idle queue goes anyway (with its message).
    raw_publish_text(a, "", "idle", "m", NULL);

    // Polled with list (not a passive declare, which would count as a use).
    gx_gone_t gone = {a, "idle"};
    if (!harness_wait_until(gx_queue_gone, &gone, 3000))
        fail_msg("queue 'idle' (expires %d) still there after 3 s", EXPIRES);
    assert_true(harness_now_ms() - t0 >= EXPIRES);
    // The one with a consumer stays, well past its expiry.
    uint64_t elapsed = harness_now_ms() - t0;
    if (elapsed < 2 * EXPIRES + 200)
        harness_pause_ms((int)(2 * EXPIRES + 200 - elapsed));
    assert_true(gx_queue_listed(a, "busy"));

    // Unused from the moment its last consumer goes.
    uint64_t t1 = harness_now_ms(); // before the cancel: the broker's clock starts after it
    assert_int_equal(raw_cancel(b, "keeper"), 0);
    gone.queue = "busy";
    if (!harness_wait_until(gx_queue_gone, &gone, 3000))
        fail_msg("queue 'busy' still there 3 s after its consumer went");
    assert_true(harness_now_ms() - t1 >= EXPIRES);
    raw_expect_no_error(b);
}

// ---------------------------------------------------------------------------------------
// 10. Delayed retry

static void
test_nack_with_delay_holds_the_message_back(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    enum { DELAY = 500 };
    assert_int_equal(raw_queue_declare(a, "dq", false, false, false, false), 0);
    assert_int_equal(gx_consume(a, "dq", "c", 1, 0), 0); // a delayed message frees its credit
    raw_publish_text(b, "", "dq", "m1", NULL);
    uint64_t tag = raw_expect_deliver(a, "m1", false, 1);

    uint64_t t0 = harness_now_ms();
    gx_settle(a, HOP_CMD_NACK, tag, -1, DELAY); // delay implies requeue
    // Waiting: delayed, neither ready nor unacked.
    assert_int_equal(raw_qstat(a, "dq", "messages_delayed"), 1);
    assert_int_equal(raw_qstat(a, "dq", "messages_ready"), 0);
    assert_int_equal(raw_qstat(a, "dq", "messages_unacked"), 0);
    assert_int_equal(raw_qstat(a, "dq", "messages"), 1);
    assert_int_equal(raw_status_uint(a, "messages_delayed"), 1);
    // Others keep flowing meanwhile: m2, published after the nack, comes first.
    raw_publish_text(b, "", "dq", "m2", NULL);
    raw_msg_t *m = raw_deliver(a);
    if (!raw_body_is(m, "m2"))
        fail_msg("the delayed message came back before a later one (after %llu ms)",
                 (unsigned long long)(harness_now_ms() - t0));
    raw_check_delivery(m, "m2", false, 1);
    raw_ack(a, m->wire.tag, false);
    raw_msg_destroy(&m);

    m = raw_deliver(a);
    uint64_t elapsed = harness_now_ms() - t0;
    raw_check_delivery(m, "m1", true, 2);
    if (elapsed < DELAY)
        fail_msg("redelivered %llu ms after a nack with delay %d", (unsigned long long)elapsed,
                 DELAY);
    raw_ack(a, m->wire.tag, false);
    raw_msg_destroy(&m);
    raw_expect_no_error(a);
    assert_int_equal(raw_qstat(a, "dq", "messages_delayed"), 0);
    assert_int_equal(raw_qstat(a, "dq", "messages"), 0);
    assert_int_equal(raw_qstat(a, "dq", "acked"), 2);

    // reject takes a delay too; delay 0 requeues at once.
    raw_publish_text(b, "", "dq", "m3", NULL);
    tag = raw_expect_deliver(a, "m3", false, 1);
    t0 = harness_now_ms();
    gx_settle(a, HOP_CMD_REJECT, tag, 1, 300);
    tag = raw_expect_deliver(a, "m3", true, 2);
    assert_true(harness_now_ms() - t0 >= 300);
    gx_settle(a, HOP_CMD_NACK, tag, 1, 0);
    assert_int_equal(raw_qstat(a, "dq", "messages_delayed"), 0);
    tag = raw_expect_deliver(a, "m3", true, 3);
    raw_ack(a, tag, false);
    raw_expect_no_error(a);
    assert_int_equal(raw_qstat(a, "dq", "messages"), 0);
}

static void
test_delayed_messages_are_not_ready(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    gx_confirms_t *t = gx_confirms_reset();
    // They do not count toward max_length: with one delayed, one more is accepted.
    hop_enc_t *enc = gx_qdecl(a, "full");
    hop_enc_uint(enc, "max_length", 1);
    hop_enc_cstr(enc, "overflow", "reject-publish");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    raw_publish_text(b, "", "full", "first", &(raw_pub_t){.seq = gx_next_seq(t)});
    gx_confirms_wait(b, t); // stored: the get on the other connection finds it
    raw_msg_t *m = gx_get_ok(a, "full", false);
    gx_settle(a, HOP_CMD_NACK, m->wire.tag, -1, 60000);
    raw_msg_destroy(&m);
    assert_int_equal(raw_qstat(a, "full", "messages_delayed"), 1);
    raw_publish_text(b, "", "full", "second", &(raw_pub_t){.seq = gx_next_seq(t)});
    raw_publish_text(b, "", "full", "third", &(raw_pub_t){.seq = gx_next_seq(t)});
    gx_confirms_wait(b, t);
    assert_int_equal(t->state[1], GX_ACK);
    assert_int_equal(t->state[2], GX_ACK);
    assert_int_equal(t->state[3], GX_NACK);
    assert_int_equal(t->code[3], HOP_CODE_RESOURCE_ERROR);
    char bodies[64];
    assert_string_equal(raw_drain(a, "full", bodies, sizeof bodies), "second");
    assert_int_equal(raw_qstat(a, "full", "messages"), 1); // "first", still delayed

    // A message whose TTL passes while it is delayed is never delivered again.
    enc = gx_qdecl(a, "short");
    hop_enc_uint(enc, "message_ttl", 300);
    assert_int_equal(gx_call(a, NULL, 0), 0);
    assert_int_equal(gx_consume(a, "short", "c", 0, 0), 0);
    raw_publish_text(b, "", "short", "doomed", NULL);
    uint64_t tag = raw_expect_deliver(a, "doomed", false, 1);
    gx_settle(a, HOP_CMD_NACK, tag, -1, 600);
    gx_wait_qfield(a, "short", "expired", 1, 3000);
    raw_expect_no_delivery(a);
    assert_int_equal(raw_qstat(a, "short", "messages"), 0);
}

static void
test_queue_retry_delay_backs_off_exponentially_up_to_its_cap(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    hop_enc_t *enc = gx_qdecl(a, "bo");
    hop_enc_uint(enc, "retry_delay", 200);
    hop_enc_uint(enc, "retry_delay_max", 400);
    assert_int_equal(gx_call(a, NULL, 0), 0);
    assert_int_equal(gx_consume(a, "bo", "c", 0, 0), 0);
    raw_publish_text(a, "", "bo", "flaky", NULL);
    uint64_t tag = raw_expect_deliver(a, "flaky", false, 1);
    // 200 ms, then doubled to 400, then capped at 400.
    const uint64_t spacing[] = {200, 400, 400};
    for (int i = 0; i < 3; i++) {
        uint64_t t0 = harness_now_ms();
        gx_settle(a, HOP_CMD_REJECT, tag, -1, -1); // requeue by default
        assert_int_equal(raw_qstat(a, "bo", "messages_delayed"), 1);
        tag = raw_expect_deliver(a, "flaky", true, (uint64_t)i + 2);
        uint64_t elapsed = harness_now_ms() - t0;
        if (elapsed < spacing[i])
            fail_msg("retry %d came after %llu ms, before the backoff of %llu ms", i + 1,
                     (unsigned long long)elapsed, (unsigned long long)spacing[i]);
    }
    // An explicit delay:0 overrides the queue's backoff: requeued at once.
    gx_settle(a, HOP_CMD_NACK, tag, 1, 0);
    assert_int_equal(raw_qstat(a, "bo", "messages_delayed"), 0);
    tag = raw_expect_deliver(a, "flaky", true, 5);
    raw_ack(a, tag, false);
    raw_expect_no_error(a);
    assert_int_equal(raw_qstat(a, "bo", "messages"), 0);
    assert_int_equal(raw_qstat(a, "bo", "acked"), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_message_ttl_expired_messages_are_never_delivered,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_message_ttl_dead_letters_with_reason_expired,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_per_message_expiration_and_the_shorter_ttl_applies,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_queue_expires_when_unused, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_nack_with_delay_holds_the_message_back, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_delayed_messages_are_not_ready, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_queue_retry_delay_backs_off_exponentially_up_to_its_cap, raw_fx_setup,
            raw_fx_teardown),
        // Again with batching clients (the broker's batch path for deliveries).
        cmocka_unit_test_setup_teardown(test_nack_with_delay_holds_the_message_back,
                                        raw_fx_setup_batch, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_delayed_messages_are_not_ready, raw_fx_setup_batch,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_queue_retry_delay_backs_off_exponentially_up_to_its_cap, raw_fx_setup_batch,
            raw_fx_teardown),
    };
    return cmocka_run_group_tests_name("integration.guarantees_time", tests, NULL, NULL);
}
