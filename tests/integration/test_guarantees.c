// tests/integration/test_guarantees.c - what hopperd promises about each published message,
// over the raw wire protocol (docs/PROTOCOL.md 4.3, 4.4): publisher confirms, mandatory returns
// and bounded queues. The other guarantees have binaries of their own (test_guarantees_*.c);
// guarantee_helpers.h has the fixture and helpers they share. Each test starts its own broker
// and checks exact counts and values: no message lost, none duplicated except flagged
// redeliveries.
//
// Everything here is made deterministic by round trips: the broker handles one connection's
// messages in order, so a reply proves what it did and sent before.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "guarantee_helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// 1. Publisher confirms

static void
test_confirms_cover_every_publish_exactly_once(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    gx_confirms_t *t = gx_confirms_reset();
    enum { N = 300 };
    assert_int_equal(raw_queue_declare(a, "cq", false, false, false, false), 0);
    char body[32];
    for (int i = 1; i <= N; i++) {
        snprintf(body, sizeof body, "c%d", i);
        raw_publish_text(a, "", "cq", body, &(raw_pub_t){.seq = gx_next_seq(t)});
    }
    gx_confirms_wait(a, t);
    assert_int_equal(t->acks, N);
    assert_int_equal(t->nacks, 0);
    gx_expect_no_confirm(a);
    assert_int_equal(raw_status_uint(a, "confirmed"), N);
    // Confirmed means stored: every one of them is in the queue, in order.
    assert_int_equal(raw_qstat(a, "cq", "messages_ready"), N);
    for (int i = 1; i <= N; i++) {
        raw_msg_t *m = gx_get_ok(a, "cq", true);
        snprintf(body, sizeof body, "c%d", i);
        raw_check_delivery(m, body, false, 1);
        raw_msg_destroy(&m);
    }
    gx_expect_empty(a, "cq");

    // An unknown exchange: a negative confirm 404, and no error (the confirm is the answer).
    uint64_t seq = gx_next_seq(t);
    raw_publish_text(a, "no-such-exchange", "k", "lost", &(raw_pub_t){.seq = seq});
    gx_confirms_wait(a, t);
    assert_int_equal(t->state[seq], GX_NACK);
    assert_int_equal(t->code[seq], HOP_CODE_NOT_FOUND);
    raw_expect_no_error(a);

    // After a negative confirm, later publishes are confirmed as before.
    seq = gx_next_seq(t);
    raw_publish_text(a, "", "cq", "after", &(raw_pub_t){.seq = seq});
    gx_confirms_wait(a, t);
    assert_int_equal(t->state[seq], GX_ACK);

    // seq 0 is no sequence number: error 502 with the publish's id, no confirm, not stored.
    hop_enc_t *enc = raw_begin(a, HOP_CMD_PUBLISH);
    hop_enc_cstr(enc, "exchange", "");
    hop_enc_cstr(enc, "key", "cq");
    hop_enc_uint(enc, "seq", 0);
    assert_int_equal(raw_send_enc(a, "zero", 4), 0);
    raw_msg_t *m = raw_reply(a, raw_last_id(a), WAIT_MS);
    assert_non_null(m);
    assert_int_equal(m->wire.cmd, HOP_CMD_ERROR);
    assert_int_equal(m->wire.code, HOP_CODE_SYNTAX_ERROR);
    raw_msg_destroy(&m);
    gx_expect_no_confirm(a);
    char bodies[64];
    assert_string_equal(raw_drain(a, "cq", bodies, sizeof bodies), "after");
}

static void
test_refused_publish_with_seq_gets_a_negative_confirm_not_an_error(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    gx_confirms_t *t = gx_confirms_reset();
    assert_int_equal(raw_queue_declare(a, "rq", false, false, false, false), 0);
    // A body over --max-message: 311.
    static char big[SMALL_MAX + 1];
    memset(big, 'b', sizeof big);
    uint64_t seq_big = gx_next_seq(t);
    hop_enc_t *enc = raw_begin_noid(a, HOP_CMD_PUBLISH);
    hop_enc_cstr(enc, "exchange", "");
    hop_enc_cstr(enc, "key", "rq");
    hop_enc_uint(enc, "seq", seq_big);
    assert_int_equal(raw_send_enc(a, big, SMALL_MAX + 1), 0);
    // A priority out of range: 502.
    uint64_t seq_prio = gx_next_seq(t);
    raw_publish_text(a, "", "rq", "loud", &(raw_pub_t){.seq = seq_prio, .priority = 300});
    // A field of the wrong type: 502.
    uint64_t seq_type = gx_next_seq(t);
    enc = raw_begin_noid(a, HOP_CMD_PUBLISH);
    hop_enc_cstr(enc, "exchange", "");
    hop_enc_cstr(enc, "key", "rq");
    hop_enc_uint(enc, "seq", seq_type);
    hop_enc_cstr(enc, "expiration", "soon");
    assert_int_equal(raw_send_enc(a, "typo", 4), 0);
    // And one that is fine.
    uint64_t seq_ok = gx_next_seq(t);
    raw_publish_text(a, "", "rq", "fine", &(raw_pub_t){.seq = seq_ok});

    raw_sync(a);
    char errors[1024] = "";
    raw_msg_t *err;
    while (raw_pending(a, HOP_CMD_ERROR) && (err = raw_next(a, HOP_CMD_ERROR, 0))) {
        char text[256];
        size_t len = strlen(errors);
        snprintf(errors + len, sizeof errors - len, "%s%d (%s)", len ? "; " : "",
                 (int)err->wire.code, raw_str(err->wire.text, text, sizeof text));
        raw_msg_destroy(&err);
    }
    if (errors[0])
        fail_msg("publishes with seq answered with error instead of a negative confirm: %s",
                 errors);
    gx_confirms_wait(a, t);
    assert_int_equal(t->state[seq_big], GX_NACK);
    assert_int_equal(t->code[seq_big], HOP_CODE_CONTENT_TOO_LARGE);
    assert_int_equal(t->state[seq_prio], GX_NACK);
    assert_int_equal(t->code[seq_prio], HOP_CODE_SYNTAX_ERROR);
    assert_int_equal(t->state[seq_type], GX_NACK);
    assert_int_equal(t->code[seq_type], HOP_CODE_SYNTAX_ERROR);
    assert_int_equal(t->state[seq_ok], GX_ACK);
    char bodies[64];
    assert_string_equal(raw_drain(a, "rq", bodies, sizeof bodies), "fine");
}

static void
test_close_right_after_publishing_still_confirms(void **state)
{
    fx_t *fx = *state;
    raw_t *c = raw_new(harness_broker_endpoint(fx->broker));
    assert_non_null(c);
    assert_int_equal(raw_hello(c, HB_LONG, "closer"), 0);
    assert_int_equal(raw_queue_declare(c, "cc", false, false, false, false), 0);
    gx_confirms_t *t = gx_confirms_reset();
    enum { N = 3 };
    // N publishes and the close in one batch: the broker handles them in one turn.
    msgpack_sbuffer records;
    msgpack_sbuffer_init(&records);
    hop_enc_t enc;
    hop_enc_init(&enc);
    size_t size;
    const void *header;
    for (int i = 0; i < N; i++) {
        hop_enc_begin(&enc, HOP_CMD_PUBLISH);
        hop_enc_cstr(&enc, "exchange", "");
        hop_enc_cstr(&enc, "key", "cc");
        hop_enc_uint(&enc, "seq", gx_next_seq(t));
        header = hop_enc_end(&enc, &size);
        hop_batch_append(&records, header, size, "x", 1);
    }
    hop_enc_begin(&enc, HOP_CMD_CLOSE);
    uint64_t close_id = raw_next_id(c);
    hop_enc_uint(&enc, "id", close_id);
    header = hop_enc_end(&enc, &size);
    hop_batch_append(&records, header, size, NULL, 0);
    hop_enc_begin(&enc, HOP_CMD_BATCH);
    hop_enc_uint(&enc, "count", N + 1);
    header = hop_enc_end(&enc, &size);
    const void *frames[2] = {header, records.data};
    size_t sizes[2] = {size, records.size};
    assert_int_equal(raw_send_frames(c, frames, sizes, 2), 0);
    hop_enc_fini(&enc);
    msgpack_sbuffer_destroy(&records);

    // Everything the broker says before close-ok: the confirms must be among it.
    raw_msg_t *m;
    while ((m = raw_any(c, WAIT_MS)) && m->wire.cmd != HOP_CMD_CLOSE_OK) {
        if (m->wire.cmd == HOP_CMD_CONFIRM)
            gx_confirm_apply(t, m);
        else
            fail_msg("unexpected %s before close-ok", hop_cmd_name(m->wire.cmd));
        raw_msg_destroy(&m);
    }
    if (!m)
        fail_msg("no close-ok within %d ms", WAIT_MS);
    assert_int_equal(m->wire.id, close_id);
    raw_msg_destroy(&m);
    raw_destroy(&c);
    // The messages were stored...
    assert_int_equal(raw_qstat(fx->a, "cc", "messages_ready"), N);
    // ... and their publisher must have been told.
    if (t->acks != N)
        fail_msg("close-ok came after %zu confirms of %d stored publishes: the publisher never "
                 "learns they were stored",
                 t->acks, N);
}

// ---------------------------------------------------------------------------------------
// 2. Mandatory publishes and unroutable messages

static void
test_mandatory_unroutable_is_returned_then_confirmed(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    gx_confirms_t *t = gx_confirms_reset();
    assert_int_equal(raw_exchange_declare(a, "mx", "direct", false, false, false), 0);

    uint64_t seq = gx_next_seq(t);
    raw_publish_text(a, "mx", "nowhere", "lost",
                     &(raw_pub_t){.seq = seq, .mandatory = true, .message_id = "m-1"});
    // The return comes first, then the positive confirm.
    raw_msg_t *m = raw_any(a, WAIT_MS);
    assert_non_null(m);
    if (m->wire.cmd != HOP_CMD_RETURN)
        fail_msg("expected return first, got %s", hop_cmd_name(m->wire.cmd));
    assert_int_equal(m->wire.code, HOP_CODE_NO_ROUTE);
    assert_true((m->wire.has & HOP_F_TEXT) && m->wire.text.len > 0);
    gx_expect_str(m->wire.exchange, "mx");
    gx_expect_str(m->wire.key, "nowhere");
    assert_true(m->wire.has & HOP_F_SEQ);
    assert_int_equal(m->wire.seq, seq);
    gx_expect_props(m, "m-1");
    assert_true(raw_body_is(m, "lost"));
    raw_msg_destroy(&m);
    m = raw_any(a, WAIT_MS);
    assert_non_null(m);
    if (m->wire.cmd != HOP_CMD_CONFIRM)
        fail_msg("expected the confirm after the return, got %s", hop_cmd_name(m->wire.cmd));
    gx_confirm_apply(t, m);
    raw_msg_destroy(&m);
    assert_int_equal(t->state[seq], GX_ACK);

    // Without seq: returned (no seq in it), never confirmed.
    raw_publish_text(a, "mx", "nowhere", "lost too", &(raw_pub_t){.mandatory = true});
    m = raw_next(a, HOP_CMD_RETURN, WAIT_MS);
    assert_non_null(m);
    assert_false(m->wire.has & HOP_F_SEQ);
    assert_false(m->wire.has & HOP_F_PROPS);
    assert_true(raw_body_is(m, "lost too"));
    raw_msg_destroy(&m);
    gx_expect_no_confirm(a);
    assert_int_equal(raw_status_uint(a, "returned"), 2);

    // Not mandatory: no return, confirmed all the same, counted as unroutable.
    assert_int_equal(raw_exchange_declare(a, "mx2", "direct", false, false, false), 0);
    uint64_t unroutable = raw_status_uint(a, "unroutable");
    seq = gx_next_seq(t);
    raw_publish_text(a, "mx2", "nowhere", "dropped", &(raw_pub_t){.seq = seq});
    gx_confirms_wait(a, t);
    assert_int_equal(t->state[seq], GX_ACK);
    raw_sync(a);
    assert_int_equal(raw_pending(a, HOP_CMD_RETURN), 0);
    assert_int_equal(raw_status_uint(a, "unroutable"), unroutable + 1);
    raw_msg_t *list = raw_list(a, "exchanges");
    assert_non_null(list);
    uint64_t n = 0;
    assert_true(harness_items_uint(list->wire.items.ptr, list->wire.items.len, "name", "mx2",
                                   "unroutable", &n));
    assert_int_equal(n, 1);
    assert_true(harness_items_uint(list->wire.items.ptr, list->wire.items.len, "name", "mx2",
                                   "published", &n));
    assert_int_equal(n, 1);
    raw_msg_destroy(&list);

    // Mandatory and routable: stored, confirmed, not returned.
    assert_int_equal(raw_queue_declare(a, "mq", false, false, false, false), 0);
    assert_int_equal(raw_bind(a, "mq", "mx", "here"), 0);
    seq = gx_next_seq(t);
    raw_publish_text(a, "mx", "here", "kept", &(raw_pub_t){.seq = seq, .mandatory = true});
    gx_confirms_wait(a, t);
    assert_int_equal(t->state[seq], GX_ACK);
    raw_sync(a);
    assert_int_equal(raw_pending(a, HOP_CMD_RETURN), 0);
    assert_int_equal(raw_status_uint(a, "returned"), 2);
    char bodies[64];
    assert_string_equal(raw_drain(a, "mq", bodies, sizeof bodies), "kept");
    gx_expect_no_confirm(a);
}

// ---------------------------------------------------------------------------------------
// 3-5. Bounded queues

static void
test_max_length_drop_head_keeps_newest_and_dead_letters_the_rest(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_exchange_declare(a, "ex", "direct", false, false, false), 0);
    assert_int_equal(raw_exchange_declare(a, "dlx", "fanout", false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "dlq", false, false, false, false), 0);
    assert_int_equal(raw_bind(a, "dlq", "dlx", ""), 0);
    hop_enc_t *enc = gx_qdecl(a, "q");
    hop_enc_uint(enc, "max_length", 3);
    hop_enc_cstr(enc, "dead_letter_exchange", "dlx");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    enc = gx_qdecl(a, "plain"); // the same limit, no dead-letter exchange: drops are counted
    hop_enc_uint(enc, "max_length", 3);
    hop_enc_cstr(enc, "overflow", "drop-head");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    assert_int_equal(raw_bind(a, "q", "ex", "k"), 0);
    assert_int_equal(raw_bind(a, "plain", "ex", "k"), 0);

    uint64_t wall_lo = gx_wall_ms();
    char body[16];
    for (int i = 0; i < 10; i++) {
        snprintf(body, sizeof body, "m%d", i);
        raw_publish_text(a, "ex", "k", body, &(raw_pub_t){.message_id = body});
    }
    raw_sync(a);
    uint64_t wall_hi = gx_wall_ms();
    assert_int_equal(raw_qstat(a, "q", "messages_ready"), 3);
    assert_int_equal(raw_qstat(a, "q", "dead_lettered"), 7);
    assert_int_equal(raw_qstat(a, "q", "dropped"), 0);
    assert_int_equal(raw_qstat(a, "plain", "dropped"), 7);
    assert_int_equal(raw_qstat(a, "plain", "dead_lettered"), 0);
    assert_int_equal(raw_qstat(a, "dlq", "messages_ready"), 7);
    char bodies[256];
    assert_string_equal(raw_drain(a, "q", bodies, sizeof bodies), "m7,m8,m9");
    assert_string_equal(raw_drain(a, "plain", bodies, sizeof bodies), "m7,m8,m9");

    // The 7 dropped arrive in the dead-letter queue, oldest first, each with one death record.
    for (int i = 0; i < 7; i++) {
        raw_msg_t *m = gx_get_ok(a, "dlq", true);
        snprintf(body, sizeof body, "m%d", i);
        raw_check_delivery(m, body, false, 1);
        gx_expect_str(m->wire.exchange, "dlx");
        gx_expect_str(m->wire.key, "k"); // no dead_letter_key: its own key
        gx_expect_props(m, body);
        gx_death_t d[DEATH_MAX];
        assert_int_equal(gx_deaths(m, d), 1);
        gx_check_death(&d[0], "maxlen", "q", "ex", "k", 1, wall_lo, wall_hi);
        raw_msg_destroy(&m);
    }
    gx_expect_empty(a, "dlq");
    assert_int_equal(raw_status_uint(a, "dead_lettered"), 7);
    assert_int_equal(raw_status_uint(a, "dropped"), 7);
}

static void
test_max_length_bytes_counts_ready_bodies(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    gx_confirms_t *t = gx_confirms_reset();
    hop_enc_t *enc = gx_qdecl(a, "qb");
    hop_enc_uint(enc, "max_length_bytes", 10);
    assert_int_equal(gx_call(a, NULL, 0), 0);
    raw_publish_text(a, "", "qb", "aaaa", NULL);
    raw_publish_text(a, "", "qb", "bbbb", NULL);
    raw_publish_text(a, "", "qb", "cccc", NULL); // 12 bytes: the oldest goes
    raw_sync(a);
    assert_int_equal(raw_qstat(a, "qb", "bytes_ready"), 8);
    assert_int_equal(raw_qstat(a, "qb", "dropped"), 1);
    raw_publish_text(a, "", "qb", "dd", NULL); // exactly 10: nothing goes
    raw_sync(a);
    assert_int_equal(raw_qstat(a, "qb", "bytes_ready"), 10);
    assert_int_equal(raw_qstat(a, "qb", "messages_ready"), 3);
    assert_int_equal(raw_qstat(a, "qb", "dropped"), 1);
    // Unacked bodies do not count: take one, and there is room for 4 bytes again.
    raw_msg_t *m = gx_get_ok(a, "qb", false);
    uint64_t tag = m->wire.tag;
    raw_check_delivery(m, "bbbb", false, 1);
    raw_msg_destroy(&m);
    raw_publish_text(a, "", "qb", "eeee", NULL);
    raw_sync(a);
    assert_int_equal(raw_qstat(a, "qb", "dropped"), 1);
    assert_int_equal(raw_qstat(a, "qb", "bytes_ready"), 10);
    raw_ack(a, tag, false);
    char bodies[64];
    assert_string_equal(raw_drain(a, "qb", bodies, sizeof bodies), "cccc,dd,eeee");

    // reject-publish by bytes: what does not fit is refused (506), what fits is stored.
    enc = gx_qdecl(a, "qr");
    hop_enc_uint(enc, "max_length_bytes", 10);
    hop_enc_cstr(enc, "overflow", "reject-publish");
    assert_int_equal(gx_call(a, NULL, 0), 0);
    const char *bodies_in[] = {"aaaa", "bbbb", "cccc", "dd", "x"};
    const gx_cstate_t expect[] = {GX_ACK, GX_ACK, GX_NACK, GX_ACK, GX_NACK};
    for (int i = 0; i < 5; i++)
        raw_publish_text(a, "", "qr", bodies_in[i], &(raw_pub_t){.seq = gx_next_seq(t)});
    gx_confirms_wait(a, t);
    for (int i = 0; i < 5; i++) {
        if (t->state[i + 1] != expect[i])
            fail_msg("'%s' (seq %d): expected %s", bodies_in[i], i + 1,
                     expect[i] == GX_ACK ? "ack" : "nack 506");
        if (expect[i] == GX_NACK)
            assert_int_equal(t->code[i + 1], HOP_CODE_RESOURCE_ERROR);
    }
    assert_int_equal(raw_qstat(a, "qr", "rejected_publishes"), 2);
    assert_int_equal(raw_qstat(a, "qr", "bytes_ready"), 10);
    assert_string_equal(raw_drain(a, "qr", bodies, sizeof bodies), "aaaa,bbbb,dd");
}

static void
test_reject_publish_bounded_buffer_loses_and_duplicates_nothing(void **state)
{
    fx_t *fx = *state;
    raw_t *p = fx->a; // producer
    raw_t *c = fx->b; // consumer
    gx_confirms_t *t = gx_confirms_reset();
    enum { N = 40, CAP = 5, FIRST = 10, TAKE = 3, WINDOW = 8 };
    hop_enc_t *enc = gx_qdecl(p, "bq");
    hop_enc_uint(enc, "max_length", CAP);
    hop_enc_cstr(enc, "overflow", "reject-publish");
    assert_int_equal(gx_call(p, NULL, 0), 0);

    static int body_of[SEQ_MAX + 1]; // which body each sequence carried
    bool stored[N] = {false};
    int seen[N] = {0};
    char body[16];
    // A first burst into the empty queue: the first CAP are stored, the rest refused.
    for (int i = 0; i < FIRST; i++) {
        uint64_t seq = gx_next_seq(t);
        body_of[seq] = i;
        snprintf(body, sizeof body, "b%02d", i);
        raw_publish_text(p, "", "bq", body, &(raw_pub_t){.seq = seq});
    }
    gx_confirms_wait(p, t);
    for (uint64_t s = 1; s <= FIRST; s++) {
        if (s <= CAP)
            assert_int_equal(t->state[s], GX_ACK);
        else {
            assert_int_equal(t->state[s], GX_NACK);
            assert_int_equal(t->code[s], HOP_CODE_RESOURCE_ERROR);
        }
        if (t->state[s] == GX_ACK)
            stored[body_of[s]] = true;
    }
    assert_int_equal(raw_qstat(p, "bq", "messages_ready"), CAP);
    assert_int_equal(raw_qstat(p, "bq", "rejected_publishes"), FIRST - CAP);

    // Then the producer retries what was refused (and goes on with new bodies) while the
    // consumer takes a few each round, until every body was stored and consumed.
    int next_new = FIRST, consumed = 0, rounds = 0;
    while (consumed < N) {
        if (++rounds > 500)
            fail_msg("no progress: %d of %d consumed", consumed, N);
        for (int k = 0; k < TAKE; k++) {
            raw_msg_t *m = raw_get(c, "bq", false);
            if (m->wire.cmd == HOP_CMD_GET_EMPTY) {
                raw_msg_destroy(&m);
                break;
            }
            assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
            assert_false(m->wire.redelivered);
            raw_body(m, body, sizeof body);
            int i = atoi(body + 1);
            assert_true(i >= 0 && i < N);
            if (!stored[i])
                fail_msg("consumed '%s', which was never confirmed as stored", body);
            seen[i]++;
            consumed++;
            raw_ack(c, m->wire.tag, false);
            raw_msg_destroy(&m);
        }
        uint64_t from = t->published + 1;
        int sent = 0;
        for (int i = 0; i < next_new && sent < WINDOW; i++)
            if (!stored[i]) {
                uint64_t seq = gx_next_seq(t);
                body_of[seq] = i;
                snprintf(body, sizeof body, "b%02d", i);
                raw_publish_text(p, "", "bq", body, &(raw_pub_t){.seq = seq});
                sent++;
            }
        while (next_new < N && sent < WINDOW) {
            uint64_t seq = gx_next_seq(t);
            body_of[seq] = next_new;
            snprintf(body, sizeof body, "b%02d", next_new++);
            raw_publish_text(p, "", "bq", body, &(raw_pub_t){.seq = seq});
            sent++;
        }
        gx_confirms_wait(p, t);
        for (uint64_t s = from; s <= t->published; s++) {
            if (t->state[s] == GX_NACK)
                assert_int_equal(t->code[s], HOP_CODE_RESOURCE_ERROR);
            else if (stored[body_of[s]])
                fail_msg("body b%02d stored twice (seq %llu)", body_of[s], (unsigned long long)s);
            else
                stored[body_of[s]] = true;
        }
        assert_true(raw_qstat(p, "bq", "messages_ready") <= CAP);
    }
    for (int i = 0; i < N; i++)
        if (seen[i] != 1)
            fail_msg("body b%02d consumed %d times", i, seen[i]);
    gx_expect_empty(c, "bq");
    raw_expect_no_error(c);
    gx_expect_no_confirm(p);
    assert_int_equal(t->acks, N);
    assert_int_equal(raw_qstat(p, "bq", "published"), N);
    assert_int_equal(raw_qstat(p, "bq", "acked"), N);
    assert_int_equal(raw_qstat(p, "bq", "messages"), 0);
    assert_int_equal(raw_qstat(p, "bq", "rejected_publishes"), t->nacks);
    assert_int_equal(raw_status_uint(p, "rejected_publishes"), t->nacks);
    assert_int_equal(raw_status_uint(p, "confirmed"), N);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_confirms_cover_every_publish_exactly_once,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_refused_publish_with_seq_gets_a_negative_confirm_not_an_error, raw_fx_setup_small,
            raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_close_right_after_publishing_still_confirms,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_mandatory_unroutable_is_returned_then_confirmed,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_max_length_drop_head_keeps_newest_and_dead_letters_the_rest, raw_fx_setup,
            raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_max_length_bytes_counts_ready_bodies, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_reject_publish_bounded_buffer_loses_and_duplicates_nothing, raw_fx_setup,
            raw_fx_teardown),
        // Again with batching clients (the broker's batch path for deliveries).
        cmocka_unit_test_setup_teardown(test_mandatory_unroutable_is_returned_then_confirmed,
                                        raw_fx_setup_batch, raw_fx_teardown),
    };
    return cmocka_run_group_tests_name("integration.guarantees", tests, NULL, NULL);
}
