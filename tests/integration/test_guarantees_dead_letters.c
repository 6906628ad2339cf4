// tests/integration/test_guarantees_dead_letters.c - dead letters over the raw wire protocol
// (docs/PROTOCOL.md 4.6, 6.4): rejected and nacked messages, fan-out of dead letters, death
// records and their counts, loops that are dropped, and the delivery limit that dead-letters a
// poison message.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "guarantee_helpers.h"

#include <string.h>

// ---------------------------------------------------------------------------------------
// 8. Dead letters on reject / nack

static void
test_reject_and_nack_without_requeue_dead_letter(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_exchange_declare(a, "work.x", "direct", false, false, false), 0);
    assert_int_equal(raw_exchange_declare(a, "dlx.x", "direct", false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "failed", false, false, false, false), 0);
    assert_int_equal(raw_bind(a, "failed", "dlx.x", "failed"), 0);
    hop_enc_t *enc = gx_qdecl(a, "work");
    hop_enc_cstr(enc, "dead_letter_exchange", "dlx.x");
    hop_enc_cstr(enc, "dead_letter_key", "failed");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    assert_int_equal(raw_bind(a, "work", "work.x", "job"), 0);
    assert_int_equal(gx_consume(a, "work", "w", 0, 0), 0);

    uint64_t wall_lo = gx_wall_ms();
    raw_publish_text(a, "work.x", "job", "j1", &(raw_pub_t){.message_id = "id-j1"});
    raw_publish_text(a, "work.x", "job", "j2", &(raw_pub_t){.message_id = "id-j2"});
    uint64_t t1 = raw_expect_deliver(a, "j1", false, 1);
    uint64_t t2 = raw_expect_deliver(a, "j2", false, 1);
    gx_settle(a, HOP_CMD_REJECT, t1, 0, -1);
    gx_settle(a, HOP_CMD_NACK, t2, 0, -1);
    raw_expect_no_delivery(a); // not requeued
    uint64_t wall_hi = gx_wall_ms();
    assert_int_equal(raw_qstat(a, "work", "messages"), 0);
    assert_int_equal(raw_qstat(a, "work", "dead_lettered"), 2);
    assert_int_equal(raw_qstat(a, "work", "dropped"), 0);
    assert_int_equal(raw_qstat(a, "work", "acked"), 0);

    const char *names[] = {"j1", "j2"}, *ids[] = {"id-j1", "id-j2"};
    for (int i = 0; i < 2; i++) {
        raw_msg_t *m = gx_get_ok(a, "failed", true);
        raw_check_delivery(m, names[i], false, 1);
        gx_expect_str(m->wire.exchange, "dlx.x");
        gx_expect_str(m->wire.key, "failed"); // dead_letter_key overrides "job"
        gx_expect_props(m, ids[i]);
        gx_death_t d[DEATH_MAX];
        assert_int_equal(gx_deaths(m, d), 1);
        gx_check_death(&d[0], "rejected", "work", "work.x", "job", 1, wall_lo, wall_hi);
        raw_msg_destroy(&m);
    }
    gx_expect_empty(a, "failed");

    // Without a dead-letter exchange a rejected message is dropped and counted.
    assert_int_equal(raw_queue_declare(a, "nodlx", false, false, false, false), 0);
    raw_publish_text(a, "", "nodlx", "gone", NULL);
    raw_msg_t *m = gx_get_ok(a, "nodlx", false);
    gx_settle(a, HOP_CMD_REJECT, m->wire.tag, 0, -1);
    raw_msg_destroy(&m);
    raw_expect_no_error(a);
    assert_int_equal(raw_qstat(a, "nodlx", "dropped"), 1);
    assert_int_equal(raw_qstat(a, "nodlx", "dead_lettered"), 0);
    assert_int_equal(raw_qstat(a, "nodlx", "messages"), 0);
    assert_int_equal(raw_status_uint(a, "dead_lettered"), 2);
    assert_int_equal(raw_status_uint(a, "dropped"), 1);
}

// Checks a dead letter's body byte for byte (the large one is 'L' x LARGE).
static void
s_check_body(const raw_msg_t *m, const char *small, size_t large)
{
    if (small) {
        assert_true(raw_body_is(m, small));
        return;
    }
    assert_true(m->has_body);
    assert_int_equal(zmq_msg_size((zmq_msg_t *)&m->body), large);
    const char *p = zmq_msg_data((zmq_msg_t *)&m->body);
    for (size_t i = 0; i < large; i++)
        if (p[i] != 'L')
            fail_msg("large body differs at byte %zu", i);
}

static void
test_dead_letters_fan_out_and_keep_their_bodies(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    enum { LARGE = 10000 };
    assert_int_equal(raw_exchange_declare(a, "fan.dlx", "fanout", false, false, false), 0);
    hop_enc_t *enc = gx_qdecl(a, "src");
    hop_enc_cstr(enc, "dead_letter_exchange", "fan.dlx");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    enc = gx_qdecl(a, "d1");
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "d3");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    assert_int_equal(raw_queue_declare(a, "d2", false, false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "d3", false, false, false, false), 0);
    assert_int_equal(raw_bind(a, "d1", "fan.dlx", ""), 0);
    assert_int_equal(raw_bind(a, "d2", "fan.dlx", ""), 0);

    // Two small ones in one client batch (they share its frame), a large one on its own.
    msgpack_sbuffer records;
    msgpack_sbuffer_init(&records);
    hop_enc_t henc;
    hop_enc_init(&henc);
    size_t size;
    const void *header;
    const char *small[] = {"s1", "s2"};
    for (int i = 0; i < 2; i++) {
        hop_enc_begin(&henc, HOP_CMD_PUBLISH);
        hop_enc_cstr(&henc, "exchange", "");
        hop_enc_cstr(&henc, "key", "src");
        hop_enc_map_begin(&henc, "props");
        hop_enc_cstr(&henc, "content_type", "text/plain");
        hop_enc_cstr(&henc, "message_id", small[i]);
        hop_enc_map_end(&henc);
        header = hop_enc_end(&henc, &size);
        hop_batch_append(&records, header, size, small[i], 2);
    }
    hop_enc_begin(&henc, HOP_CMD_BATCH);
    hop_enc_uint(&henc, "count", 2);
    header = hop_enc_end(&henc, &size);
    const void *frames[2] = {header, records.data};
    size_t sizes[2] = {size, records.size};
    assert_int_equal(raw_send_frames(a, frames, sizes, 2), 0);
    hop_enc_fini(&henc);
    msgpack_sbuffer_destroy(&records);
    static char large[LARGE + 1];
    memset(large, 'L', LARGE);
    raw_publish_text(a, "", "src", large, &(raw_pub_t){.message_id = "big"});

    // Rejected from src: each lands in d1 and d2.
    const char *ids[] = {"s1", "s2", "big"};
    for (int i = 0; i < 3; i++) {
        raw_msg_t *m = gx_get_ok(a, "src", false);
        s_check_body(m, i < 2 ? small[i] : NULL, LARGE);
        gx_settle(a, HOP_CMD_REJECT, m->wire.tag, 0, -1);
        raw_msg_destroy(&m);
    }
    raw_expect_no_error(a);
    assert_int_equal(raw_qstat(a, "src", "messages"), 0);
    assert_int_equal(raw_qstat(a, "d1", "messages_ready"), 3);
    assert_int_equal(raw_qstat(a, "d2", "messages_ready"), 3);
    // Rejected again from d1 while d2 still holds its copies: they go on to d3.
    for (int i = 0; i < 3; i++) {
        raw_msg_t *m = gx_get_ok(a, "d1", false);
        s_check_body(m, i < 2 ? small[i] : NULL, LARGE);
        gx_expect_props(m, ids[i]);
        gx_settle(a, HOP_CMD_REJECT, m->wire.tag, 0, -1);
        raw_msg_destroy(&m);
    }
    raw_expect_no_error(a);
    for (int i = 0; i < 3; i++) {
        raw_msg_t *m = gx_get_ok(a, "d3", true);
        s_check_body(m, i < 2 ? small[i] : NULL, LARGE);
        gx_expect_props(m, ids[i]);
        gx_expect_str(m->wire.key, "d3");
        gx_death_t d[DEATH_MAX];
        assert_int_equal(gx_deaths(m, d), 2);
        assert_string_equal(d[0].queue, "d1");
        assert_string_equal(d[0].exchange, "fan.dlx");
        assert_string_equal(d[0].key, "src");
        assert_string_equal(d[1].queue, "src");
        assert_string_equal(d[1].exchange, "");
        assert_string_equal(d[1].key, "src");
        raw_msg_destroy(&m);
    }
    for (int i = 0; i < 3; i++) {
        raw_msg_t *m = gx_get_ok(a, "d2", true);
        s_check_body(m, i < 2 ? small[i] : NULL, LARGE);
        gx_expect_props(m, ids[i]);
        gx_expect_str(m->wire.exchange, "fan.dlx");
        gx_expect_str(m->wire.key, "src");
        gx_death_t d[DEATH_MAX];
        assert_int_equal(gx_deaths(m, d), 1);
        gx_check_death(&d[0], "rejected", "src", "", "src", 1, 0, UINT64_MAX);
        raw_msg_destroy(&m);
    }
    gx_expect_empty(a, "d2");
    gx_expect_empty(a, "d3");
}

static void
test_nack_multiple_without_requeue_dead_letters_in_order(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "mdl.dead", false, false, false, false), 0);
    hop_enc_t *enc = gx_qdecl(a, "mdl");
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "mdl.dead");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    assert_int_equal(gx_consume(a, "mdl", "c", 0, 0), 0);
    const char *bodies[] = {"n1", "n2", "n3", "n4", "n5"};
    uint64_t last = 0;
    for (int i = 0; i < 5; i++)
        raw_publish_text(a, "", "mdl", bodies[i], NULL);
    for (int i = 0; i < 5; i++)
        last = raw_expect_deliver(a, bodies[i], false, 1);
    hop_enc_t *nack = raw_begin_noid(a, HOP_CMD_NACK);
    hop_enc_uint(nack, "tag", last);
    hop_enc_bool(nack, "multiple", true);
    hop_enc_bool(nack, "requeue", false);
    assert_int_equal(raw_send_enc(a, NULL, 0), 0);
    raw_expect_no_delivery(a);
    assert_int_equal(raw_qstat(a, "mdl", "dead_lettered"), 5);
    char out[64];
    assert_string_equal(raw_drain(a, "mdl.dead", out, sizeof out), "n1,n2,n3,n4,n5");
}

static void
test_dead_lettered_again_from_the_same_queue_counts_up(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    // w rejects into d; d's messages expire back into w: a cycle that includes a rejection,
    // so it is allowed (PROTOCOL.md 6.4).
    hop_enc_t *enc = gx_qdecl(a, "w");
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "d");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    enc = gx_qdecl(a, "d");
    hop_enc_uint(enc, "message_ttl", 100);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "w");
    assert_int_equal(gx_call(a, NULL, 0), 0);

    uint64_t wall_lo = gx_wall_ms();
    raw_publish_text(a, "", "w", "boomerang", &(raw_pub_t){.message_id = "id-b"});
    raw_msg_t *m = gx_get_ok(a, "w", false);
    raw_check_delivery(m, "boomerang", false, 1);
    assert_int_equal(gx_deaths(m, (gx_death_t[DEATH_MAX]){0}), 0);
    for (uint64_t round = 1; round <= 3; round++) {
        gx_settle(a, HOP_CMD_REJECT, m->wire.tag, 0, -1);
        raw_msg_destroy(&m);
        gx_wait_qfield(a, "w", "messages_ready", 1, 3000);
        uint64_t wall_hi = gx_wall_ms();
        m = gx_get_ok(a, "w", false);
        // A new message each time it comes back (dead letters are republished).
        raw_check_delivery(m, "boomerang", false, 1);
        gx_expect_str(m->wire.key, "w");
        gx_expect_props(m, "id-b");
        gx_death_t d[DEATH_MAX];
        // Two records however often it goes round: each one counted up, newest first.
        assert_int_equal(gx_deaths(m, d), 2);
        gx_check_death(&d[0], "expired", "d", "", "d", round, wall_lo, wall_hi);
        gx_check_death(&d[1], "rejected", "w", "", "w", round, wall_lo, wall_hi);
        assert_true(d[0].time >= d[1].time);
    }
    gx_settle(a, HOP_CMD_ACK, m->wire.tag, -1, -1);
    raw_msg_destroy(&m);
    raw_expect_no_error(a);
    assert_int_equal(raw_qstat(a, "w", "dead_lettered"), 3);
    assert_int_equal(raw_qstat(a, "d", "dead_lettered"), 3);
    assert_int_equal(raw_qstat(a, "d", "expired"), 3);
    assert_int_equal(raw_qstat(a, "w", "messages"), 0);
    assert_int_equal(raw_qstat(a, "d", "messages"), 0);

    // A cycle without a rejection is cut: c1 expires into c2, c2 would expire back into c1.
    const char *pairs[2][2] = {{"c1", "c2"}, {"c2", "c1"}};
    for (int i = 0; i < 2; i++) {
        enc = gx_qdecl(a, pairs[i][0]);
        hop_enc_uint(enc, "message_ttl", 100);
        hop_enc_cstr(enc, "dead_letter_exchange", "");
        hop_enc_cstr(enc, "dead_letter_key", pairs[i][1]);
        assert_int_equal(gx_call(a, NULL, 0), 0);
    }
    raw_publish_text(a, "", "c1", "loop", NULL);
    gx_wait_qfield(a, "c2", "expired", 1, 3000);
    assert_int_equal(raw_qstat(a, "c2", "dropped"), 1);
    assert_int_equal(raw_qstat(a, "c1", "expired"), 1);
    assert_int_equal(raw_qstat(a, "c1", "messages"), 0);
    assert_int_equal(raw_qstat(a, "c2", "messages"), 0);
    assert_int_equal(raw_qstat(a, "c1", "published"), 1); // never came back
}

static void
test_dead_letter_back_into_the_queue_it_left_is_dropped(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    enum { TTL = 100 };
    // A queue whose expired messages would go back into itself: the first expiry drops them.
    hop_enc_t *enc = gx_qdecl(a, "self");
    hop_enc_uint(enc, "message_ttl", TTL);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "self");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    raw_publish_text(a, "", "self", "fresh", NULL);
    gx_wait_qfield(a, "self", "expired", 1, 3000);
    harness_pause_ms(5 * TTL); // time for it to go round, were it to
    assert_int_equal(raw_qstat(a, "self", "expired"), 1);
    assert_int_equal(raw_qstat(a, "self", "dropped"), 1);
    assert_int_equal(raw_qstat(a, "self", "messages"), 0);

    // The same for a message that was rejected somewhere else before: that rejection is not
    // part of this cycle (self2 -> self2, reason expired), so the cycle is still cut.
    enc = gx_qdecl(a, "self2");
    hop_enc_uint(enc, "message_ttl", TTL);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "self2");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    enc = gx_qdecl(a, "inbox");
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "self2");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    raw_publish_text(a, "", "inbox", "refused", NULL);
    raw_msg_t *m = gx_get_ok(a, "inbox", false);
    gx_settle(a, HOP_CMD_REJECT, m->wire.tag, 0, -1);
    raw_msg_destroy(&m);
    gx_wait_qfield(a, "self2", "expired", 1, 3000);
    harness_pause_ms(5 * TTL);
    uint64_t expired = raw_qstat(a, "self2", "expired");
    if (expired != 1)
        fail_msg("a dead letter expired %llu times going round self2 -> self2 (the earlier "
                 "rejection in 'inbox' is not part of that cycle): expected 1, then dropped",
                 (unsigned long long)expired);
    assert_int_equal(raw_qstat(a, "self2", "published"), 1);
    assert_int_equal(raw_qstat(a, "self2", "messages"), 0);
}

static void
test_dead_letters_to_a_missing_exchange_or_no_queue_are_dropped(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    hop_enc_t *enc = gx_qdecl(a, "nox");
    hop_enc_cstr(enc, "dead_letter_exchange", "no-such-exchange");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    enc = gx_qdecl(a, "noq");
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "no-such-queue");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    const char *queues[] = {"nox", "noq"};
    for (int i = 0; i < 2; i++) {
        raw_publish_text(a, "", queues[i], "x", NULL);
        raw_msg_t *m = gx_get_ok(a, queues[i], false);
        gx_settle(a, HOP_CMD_REJECT, m->wire.tag, 0, -1);
        raw_msg_destroy(&m);
        raw_expect_no_error(a);
        assert_int_equal(raw_qstat(a, queues[i], "dropped"), 1);
        assert_int_equal(raw_qstat(a, queues[i], "messages"), 0);
    }
    assert_int_equal(raw_status_uint(a, "dropped"), 2);
}

// ---------------------------------------------------------------------------------------
// 9. Delivery limit

static void
test_max_deliveries_dead_letters_a_poison_message(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    enum { LIMIT = 3 };
    assert_int_equal(raw_queue_declare(a, "graveyard", false, false, false, false), 0);
    hop_enc_t *enc = gx_qdecl(a, "poison");
    hop_enc_uint(enc, "max_deliveries", LIMIT);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "graveyard");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    assert_int_equal(gx_consume(a, "poison", "picky", 1, 0), 0);

    uint64_t wall_lo = gx_wall_ms();
    raw_publish_text(a, "", "poison", "bad", NULL);
    for (uint64_t n = 1; n <= LIMIT; n++) {
        uint64_t tag = raw_expect_deliver(a, "bad", n > 1, n);
        gx_settle(a, HOP_CMD_REJECT, tag, 1, -1); // always back to the queue
    }
    // The LIMIT-th return sends it to the graveyard instead: no delivery LIMIT + 1.
    raw_expect_no_delivery(a);
    uint64_t wall_hi = gx_wall_ms();
    assert_int_equal(raw_qstat(a, "poison", "messages"), 0);
    assert_int_equal(raw_qstat(a, "poison", "delivered"), LIMIT);
    assert_int_equal(raw_qstat(a, "poison", "dead_lettered"), 1);
    raw_msg_t *m = gx_get_ok(a, "graveyard", true);
    raw_check_delivery(m, "bad", false, 1);
    gx_death_t d[DEATH_MAX];
    assert_int_equal(gx_deaths(m, d), 1);
    gx_check_death(&d[0], "delivery-limit", "poison", "", "poison", 1, wall_lo, wall_hi);
    raw_msg_destroy(&m);
    gx_expect_empty(a, "graveyard");

    // Other messages keep flowing to the same consumer.
    raw_publish_text(a, "", "poison", "good", NULL);
    uint64_t tag = raw_expect_deliver(a, "good", false, 1);
    raw_ack(a, tag, false);
    raw_expect_no_error(a);
    assert_int_equal(raw_qstat(a, "poison", "acked"), 1);

    // A nack with requeue counts the same way (limit 1: the first return is the last).
    assert_int_equal(raw_queue_declare(a, "graveyard2", false, false, false, false), 0);
    enc = gx_qdecl(a, "once");
    hop_enc_uint(enc, "max_deliveries", 1);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "graveyard2");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    raw_publish_text(a, "", "once", "single", NULL);
    m = gx_get_ok(a, "once", false);
    gx_settle(a, HOP_CMD_NACK, m->wire.tag, 1, -1);
    raw_msg_destroy(&m);
    gx_expect_empty(a, "once");
    m = gx_get_ok(a, "graveyard2", true);
    assert_int_equal(gx_deaths(m, d), 1);
    assert_string_equal(d[0].reason, "delivery-limit");
    raw_msg_destroy(&m);

    // So does a consumer that goes away holding it (here: its connection closes).
    raw_t *c = raw_new(harness_broker_endpoint(fx->broker));
    assert_non_null(c);
    assert_int_equal(raw_hello(c, HB_LONG, "leaver"), 0);
    assert_int_equal(gx_consume(c, "once", "leaver", 1, 0), 0);
    raw_publish_text(a, "", "once", "abandoned", NULL);
    raw_expect_deliver(c, "abandoned", false, 1);
    raw_begin(c, HOP_CMD_CLOSE);
    assert_int_equal(gx_call(c, NULL, 0), 0);
    raw_destroy(&c);
    gx_expect_empty(a, "once");
    m = gx_get_ok(a, "graveyard2", true);
    raw_check_delivery(m, "abandoned", false, 1);
    assert_int_equal(gx_deaths(m, d), 1);
    assert_string_equal(d[0].reason, "delivery-limit");
    raw_msg_destroy(&m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reject_and_nack_without_requeue_dead_letter,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_dead_letters_fan_out_and_keep_their_bodies,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_nack_multiple_without_requeue_dead_letters_in_order,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_dead_lettered_again_from_the_same_queue_counts_up,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_dead_letter_back_into_the_queue_it_left_is_dropped,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_dead_letters_to_a_missing_exchange_or_no_queue_are_dropped, raw_fx_setup,
            raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_max_deliveries_dead_letters_a_poison_message,
                                        raw_fx_setup, raw_fx_teardown),
        // Again with batching clients (the broker's batch path for deliveries).
        cmocka_unit_test_setup_teardown(test_reject_and_nack_without_requeue_dead_letter,
                                        raw_fx_setup_batch, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_dead_letters_fan_out_and_keep_their_bodies,
                                        raw_fx_setup_batch, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_max_deliveries_dead_letters_a_poison_message,
                                        raw_fx_setup_batch, raw_fx_teardown),
    };
    return cmocka_run_group_tests_name("integration.guarantees_dead_letters", tests, NULL, NULL);
}
