// tests/integration/test_protocol_edges.c - limits and edges of the raw wire protocol
// (docs/PROTOCOL.md): inclusive limits, heartbeat clamping, ids, delivery tags, auto-delete
// exchanges, many connections, unacked messages that outlive what they belonged to, counters,
// and headers without cmd.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "protocol_helpers.h"

#include <msgpack.h>
#include <stdio.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// Limits and edges

static void
test_limits_are_inclusive(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    char name[257];
    memset(name, 'q', 256);
    name[256] = '\0';
    assert_int_equal(raw_queue_declare(a, name, false, false, false, false), HOP_CODE_SYNTAX_ERROR);
    name[255] = '\0'; // 255 bytes is allowed
    assert_int_equal(raw_queue_declare(a, name, false, false, false, false), 0);
    raw_publish_text(a, "", name, "long name", NULL);
    raw_msg_t *m = raw_get(a, name, true);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    assert_int_equal(m->wire.key.len, 255);
    raw_msg_destroy(&m);

    // A body of exactly --max-message bytes is accepted, one more byte is not.
    static char body[SMALL_MAX + 1];
    memset(body, 'b', sizeof body);
    assert_int_equal(raw_queue_declare(a, "sized", false, false, false, false), 0);
    assert_int_equal(raw_publish(a, "", "sized", body, SMALL_MAX), 0);
    hop_enc_t *enc = raw_begin(a, HOP_CMD_PUBLISH);
    hop_enc_cstr(enc, "exchange", "");
    hop_enc_cstr(enc, "key", "sized");
    raw_send_enc(a, body, SMALL_MAX + 1);
    uint64_t id = raw_last_id(a);
    assert_int_equal(px_expect_error(a, HOP_CODE_CONTENT_TOO_LARGE), id);
    m = raw_get(a, "sized", true);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    assert_int_equal(zmq_msg_size(&m->body), SMALL_MAX);
    raw_msg_destroy(&m);
    m = raw_get(a, "sized", true);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_EMPTY);
    raw_msg_destroy(&m);

    // hello-ok reports the limit in force.
    raw_t *c = raw_new(harness_broker_endpoint(fx->broker));
    enc = raw_begin(c, HOP_CMD_HELLO);
    hop_enc_uint(enc, "version", 1);
    m = raw_call(c);
    assert_int_equal(m->wire.cmd, HOP_CMD_HELLO_OK);
    assert_int_equal(m->wire.max_message, SMALL_MAX);
    raw_msg_destroy(&m);
    raw_destroy(&c);
}

static void
test_heartbeat_is_clamped(void **state)
{
    fx_t *fx = *state;
    const uint64_t asked[] = {1, 99, 100, 60000, 60001, 1000000};
    const uint64_t given[] = {100, 100, 100, 60000, 60000, 60000};
    for (int i = 0; i < 6; i++) {
        raw_t *c = raw_new(harness_broker_endpoint(fx->broker));
        hop_enc_t *enc = raw_begin(c, HOP_CMD_HELLO);
        hop_enc_uint(enc, "version", 1);
        hop_enc_uint(enc, "heartbeat", asked[i]);
        raw_msg_t *m = raw_call(c);
        assert_non_null(m);
        assert_int_equal(m->wire.cmd, HOP_CMD_HELLO_OK);
        if (m->wire.heartbeat != given[i])
            fail_msg("hello with heartbeat %llu: hello-ok says %llu, expected %llu",
                     (unsigned long long)asked[i], (unsigned long long)m->wire.heartbeat,
                     (unsigned long long)given[i]);
        assert_int_equal(m->wire.timeout, 5 * given[i]);
        raw_msg_destroy(&m);
        raw_destroy(&c);
    }
}

static void
test_heartbeat_from_unknown_peer_gets_505(void **state)
{
    fx_t *fx = *state;
    raw_t *c = raw_new(harness_broker_endpoint(fx->broker));
    raw_heartbeat(c);
    px_expect_error(c, HOP_CODE_UNEXPECTED_FRAME);
    raw_destroy(&c);
    // A known peer's heartbeat gets no answer.
    raw_heartbeat(fx->a);
    raw_sync(fx->a);
    raw_msg_t *m = raw_any(fx->a, 0);
    assert_null(m);
}

static void
test_publish_with_id_has_no_reply_on_success(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "quiet", false, false, false, false), 0);
    hop_enc_t *enc = raw_begin(a, HOP_CMD_PUBLISH);
    hop_enc_cstr(enc, "exchange", "");
    hop_enc_cstr(enc, "key", "quiet");
    raw_send_enc(a, "x", 1);
    uint64_t id = raw_last_id(a);
    raw_sync(a);
    raw_msg_t *m = raw_reply(a, id, 0);
    assert_null(m);
    assert_int_equal(raw_qstat(a, "quiet", "messages"), 1);
}

static void
test_delivery_tags_are_per_connection_and_increasing(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "t1", false, false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "t2", false, false, false, false), 0);
    for (int i = 0; i < 3; i++) {
        raw_publish_text(a, "", "t1", "x", NULL);
        raw_publish_text(a, "", "t2", "y", NULL);
    }
    assert_int_equal(raw_consume(a, "t1", "c1", 0, false, NULL, 0), 0);
    assert_int_equal(raw_consume(a, "t2", "c2", 0, true, NULL, 0), 0); // no-ack uses tags too
    raw_sync(a);
    raw_msg_t *m = raw_get(a, "t1", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_EMPTY); // all went to the consumer
    raw_msg_destroy(&m);
    uint64_t last = 0;
    int n = 0;
    while ((m = raw_pending(a, HOP_CMD_DELIVER) ? raw_next(a, HOP_CMD_DELIVER, 0) : NULL)) {
        assert_true(m->wire.tag > last);
        last = m->wire.tag;
        n++;
        raw_msg_destroy(&m);
    }
    assert_int_equal(n, 6);
    // Multiple ack with tag 0: everything outstanding (AMQP).
    raw_ack(a, 0, true);
    raw_expect_no_error(a);
    assert_int_equal(raw_qstat(a, "t1", "messages"), 0);
    assert_int_equal(raw_qstat(a, "t1", "acked"), 3);
}

static void
test_auto_delete_exchange_and_bindings_of_deleted_queues(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_exchange_declare(a, "ax", "fanout", false, true, false), 0);
    // Not deleted before it had a binding.
    assert_int_equal(raw_exchange_declare(a, "ax", NULL, false, false, true), 0);
    assert_int_equal(raw_queue_declare(a, "aq1", false, false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "aq2", false, false, false, false), 0);
    assert_int_equal(raw_bind(a, "aq1", "ax", ""), 0);
    assert_int_equal(raw_bind(a, "aq2", "ax", ""), 0);
    // Deleting a queue removes its bindings.
    assert_int_equal(raw_queue_delete(a, "aq1", false, false), 0);
    raw_msg_t *list = raw_list(a, "bindings");
    const void *item;
    size_t item_size;
    assert_false(harness_items_find(list->wire.items.ptr, list->wire.items.len, "queue", "aq1",
                                    &item, &item_size));
    assert_true(harness_items_find(list->wire.items.ptr, list->wire.items.len, "queue", "aq2",
                                   &item, &item_size));
    raw_msg_destroy(&list);
    assert_int_equal(raw_exchange_declare(a, "ax", NULL, false, false, true), 0);
    // The last binding goes: so does the auto-delete exchange.
    hop_enc_t *enc = raw_begin(a, HOP_CMD_QUEUE_UNBIND);
    hop_enc_cstr(enc, "queue", "aq2");
    hop_enc_cstr(enc, "exchange", "ax");
    hop_enc_cstr(enc, "key", "");
    raw_msg_t *m = raw_call(a);
    assert_int_equal(m->wire.cmd, HOP_CMD_OK);
    raw_msg_destroy(&m);
    assert_int_equal(raw_exchange_declare(a, "ax", NULL, false, false, true), HOP_CODE_NOT_FOUND);
    // Unbinding what is not bound is a no-op.
    enc = raw_begin(a, HOP_CMD_QUEUE_UNBIND);
    hop_enc_cstr(enc, "queue", "aq2");
    hop_enc_cstr(enc, "exchange", "amq.direct");
    hop_enc_cstr(enc, "key", "never");
    m = raw_call(a);
    assert_int_equal(m->wire.cmd, HOP_CMD_OK);
    raw_msg_destroy(&m);

    // The same when the last bound queue is deleted.
    assert_int_equal(raw_exchange_declare(a, "ax2", "topic", false, true, false), 0);
    assert_int_equal(raw_bind(a, "aq2", "ax2", "a.#"), 0);
    assert_int_equal(raw_queue_delete(a, "aq2", false, false), 0);
    assert_int_equal(raw_exchange_declare(a, "ax2", NULL, false, false, true), HOP_CODE_NOT_FOUND);
}

static void
test_many_connections_come_and_go(void **state)
{
    fx_t *fx = *state;
    // Connections that close politely and ones that just vanish (heartbeat 100 ms) are all
    // forgotten, with their consumers and exclusive queues.
    enum { N = 50 };
    assert_int_equal(raw_queue_declare(fx->a, "shared", false, false, false, false), 0);
    for (int round = 0; round < 2; round++) {
        raw_t *c[N];
        for (int i = 0; i < N; i++) {
            c[i] = px_connect(fx, HB_SHORT, "churn");
            char q[32];
            snprintf(q, sizeof q, "own-%d-%d", round, i);
            assert_int_equal(raw_queue_declare(c[i], q, false, true, false, false), 0);
            assert_int_equal(raw_consume(c[i], "shared", NULL, 1, false, NULL, 0), 0);
        }
        for (int i = 0; i < N; i++) {
            if (round == 0) {
                raw_begin(c[i], HOP_CMD_CLOSE);
                raw_msg_t *m = raw_call(c[i]);
                assert_non_null(m);
                raw_msg_destroy(&m);
            }
            raw_destroy(&c[i]);
        }
    }
    // Only a and b remain, eventually (the vanished ones time out).
    uint64_t deadline = harness_now_ms() + WAIT_MS;
    uint64_t connections = 0, queues = 0;
    while (harness_now_ms() < deadline) {
        raw_msg_t *status = raw_status(fx->a);
        assert_non_null(status);
        const void *map = zmq_msg_data(&status->header);
        size_t size = zmq_msg_size(&status->header);
        assert_true(harness_map_uint(map, size, "connections", &connections));
        assert_true(harness_map_uint(map, size, "queues", &queues));
        raw_msg_destroy(&status);
        if (connections == 2 && queues == 1)
            break;
        harness_pause_ms(20);
    }
    assert_int_equal(connections, 2);
    assert_int_equal(queues, 1);
    assert_int_equal(raw_qstat(fx->a, "shared", "consumers"), 0);
}

// Unacked messages whose queue, consumer or connection goes away in every order: the broker
// must stay up and exit cleanly (under ASan: no use after free, no leak).
static void
test_unacked_messages_outlive_their_queue_consumer_or_connection(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    for (int round = 0; round < 4; round++) {
        raw_t *c = px_connect(fx, HB_LONG, "lifecycle");
        bool exclusive = round == 1, auto_delete = round == 2;
        assert_int_equal(raw_queue_declare(c, "life", false, exclusive, auto_delete, false), 0);
        assert_int_equal(raw_queue_declare(c, "life2", false, false, false, false), 0);
        for (int i = 0; i < 4; i++) {
            raw_publish_text(c, "", "life", "l", NULL);
            raw_publish_text(c, "", "life2", "m", NULL);
        }
        assert_int_equal(raw_consume(c, "life", "k", 2, false, NULL, 0), 0);
        raw_msg_t *g = raw_get(c, "life2", false); // a get holds one too
        assert_int_equal(g->wire.cmd, HOP_CMD_GET_OK);
        uint64_t get_tag = g->wire.tag;
        raw_msg_destroy(&g);
        uint64_t t1 = raw_expect_deliver(c, "l", false, 1);
        raw_expect_deliver(c, "l", false, 1);
        switch (round) {
        case 0: // the queue is deleted while its messages are out, then acks arrive
            assert_int_equal(raw_queue_delete(c, "life", false, false), 0);
            raw_ack(c, t1, false);
            raw_nack(c, get_tag, true, true);
            break;
        case 1: // exclusive: the connection closes with everything out
        case 2: // auto-delete: the cancel requeues, then deletes the queue
            if (round == 2)
                assert_int_equal(raw_cancel(c, "k"), 0);
            break;
        case 3: // the other queue goes while its get is unacked, then the connection vanishes
            assert_int_equal(raw_queue_delete(a, "life2", false, false), 0);
            raw_ack(c, get_tag, false);
            break;
        }
        raw_sync(c);
        raw_begin(c, HOP_CMD_CLOSE);
        raw_msg_t *m = raw_call(c);
        assert_non_null(m);
        assert_int_equal(m->wire.cmd, HOP_CMD_CLOSE_OK);
        raw_msg_destroy(&m);
        raw_destroy(&c);
        if (round != 0 && px_queue_exists(a, "life"))
            assert_int_equal(raw_queue_delete(a, "life", false, false), 0);
        if (px_queue_exists(a, "life2"))
            assert_int_equal(raw_queue_delete(a, "life2", false, false), 0);
        assert_false(px_queue_exists(a, "life"));
    }
    assert_true(harness_broker_alive(fx->broker));
}

// `acked` counts acks, in list queues as in status: messages dropped by nack/reject or
// delivered no-ack were not acked.
static void
test_queue_acked_counts_only_acks(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "ackstat", false, false, false, false), 0);
    for (int i = 0; i < 4; i++)
        raw_publish_text(a, "", "ackstat", "x", NULL);
    uint64_t tags[3];
    for (int i = 0; i < 3; i++) {
        raw_msg_t *m = raw_get(a, "ackstat", false);
        assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
        tags[i] = m->wire.tag;
        raw_msg_destroy(&m);
    }
    raw_msg_t *m = raw_get(a, "ackstat", true); // no-ack
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    raw_msg_destroy(&m);
    raw_ack(a, tags[0], false);
    raw_nack(a, tags[1], false, false);
    hop_enc_t *enc = raw_begin_noid(a, HOP_CMD_REJECT);
    hop_enc_uint(enc, "tag", tags[2]);
    hop_enc_bool(enc, "requeue", false);
    raw_send_enc(a, NULL, 0);
    raw_expect_no_error(a);
    assert_int_equal(raw_qstat(a, "ackstat", "messages"), 0);
    assert_int_equal(raw_status_uint(a, "acked"), 1);
    assert_int_equal(raw_qstat(a, "ackstat", "acked"), 1);
}

// PROTOCOL.md: every header has cmd; a required field missing is 502 syntax-error, and 503 is
// for a cmd the broker does not know.
static void
test_header_without_cmd_is_a_syntax_error(void **state)
{
    fx_t *fx = *state;
    // Hand-made: {id: N} only.
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t id = raw_next_id(fx->a);
    msgpack_pack_map(&pk, 1);
    px_pk_cstr(&pk, "id");
    msgpack_pack_uint64(&pk, id);
    const void *frame[1] = {sb.data};
    size_t size[1] = {sb.size};
    raw_send_frames(fx->a, frame, size, 1);
    msgpack_sbuffer_destroy(&sb);
    raw_msg_t *m = raw_reply(fx->a, id, WAIT_MS);
    assert_non_null(m);
    assert_int_equal(m->wire.cmd, HOP_CMD_ERROR);
    char text[256];
    raw_str(m->wire.text, text, sizeof text);
    int code = (int)m->wire.code;
    raw_msg_destroy(&m);
    if (code != HOP_CODE_SYNTAX_ERROR)
        fail_msg("a header without cmd got %d (%s), expected 502 naming the missing 'cmd'", code,
                 text);
}

// status-ok must be readable by the codec every client shares (PROTOCOL.md section 3 types
// every key; `version` is a uint).
static void
test_status_ok_decodes_with_the_codec(void **state)
{
    fx_t *fx = *state;
    raw_msg_t *status = raw_status(fx->a);
    assert_non_null(status);
    hop_wire_t w;
    char err[256];
    int rc = hop_wire_decode(&w, zmq_msg_data(&status->header), zmq_msg_size(&status->header), err,
                             sizeof err);
    hop_cmd_t cmd = w.cmd;
    raw_msg_destroy(&status);
    if (rc)
        fail_msg("hop_wire_decode rejects status-ok with %d: %s", rc, err);
    assert_int_equal(cmd, HOP_CMD_STATUS_OK);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_limits_are_inclusive, raw_fx_setup_small,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_is_clamped, raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_from_unknown_peer_gets_505, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_publish_with_id_has_no_reply_on_success, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_delivery_tags_are_per_connection_and_increasing,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_auto_delete_exchange_and_bindings_of_deleted_queues,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_many_connections_come_and_go, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_unacked_messages_outlive_their_queue_consumer_or_connection, raw_fx_setup,
            raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_queue_acked_counts_only_acks, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_status_ok_decodes_with_the_codec, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_header_without_cmd_is_a_syntax_error, raw_fx_setup,
                                        raw_fx_teardown),
    };
    return cmocka_run_group_tests_name("integration.protocol_edges", tests, NULL, NULL);
}
