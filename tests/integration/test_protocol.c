// tests/integration/test_protocol.c - hopperd over the raw wire protocol (docs/PROTOCOL.md): a
// ZeroMQ DEALER and the codec, no SDK. This binary covers saying hello and malformed frames;
// test_protocol_*.c cover topology, consuming and limits, and protocol_helpers.h has the
// fixture and helpers they share. Each test starts its own broker on a free port.
//
// Ordering is what makes these tests deterministic without sleeping: the broker handles one
// connection's messages in order and routes and dispatches a publish while handling it, so once
// a request sent after a publish is answered, every delivery of that publish has been sent; a
// round trip on the consumer's own connection then proves whether it got one.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "protocol_helpers.h"

#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

// ---------------------------------------------------------------------------------------
// Connection: hello

static void
test_hello_handshake(void **state)
{
    fx_t *fx = *state;
    raw_t *c = raw_new(harness_broker_endpoint(fx->broker));
    assert_non_null(c);
    hop_enc_t *enc = raw_begin(c, HOP_CMD_HELLO);
    hop_enc_uint(enc, "version", 1);
    hop_enc_uint(enc, "heartbeat", 2000);
    hop_enc_cstr(enc, "name", "it-hello");
    hop_enc_cstr(enc, "future_key", "ignored"); // unknown keys are ignored
    raw_msg_t *m = raw_call(c);
    assert_non_null(m);
    assert_int_equal(m->wire.cmd, HOP_CMD_HELLO_OK);
    assert_int_equal(m->wire.id, raw_last_id(c));
    assert_int_equal(m->wire.version, 1);
    assert_int_equal(m->wire.heartbeat, 2000);
    assert_int_equal(m->wire.timeout, 5 * 2000);
    assert_int_equal(m->wire.max_message, 8u * 1024 * 1024);
    char server[64];
    raw_str(m->wire.server, server, sizeof server);
    assert_true(strncmp(server, "hopperd ", 8) == 0);
    raw_msg_destroy(&m);

    // A second hello on a live connection is answered again.
    assert_int_equal(raw_hello(c, 2000, "it-hello"), 0);
    raw_msg_t *list = raw_list(c, "connections");
    assert_non_null(list);
    uint64_t hb = 0;
    assert_true(harness_items_uint(list->wire.items.ptr, list->wire.items.len, "name", "it-hello",
                                   "heartbeat", &hb));
    assert_int_equal(hb, 2000);
    assert_int_equal(harness_items_count(list->wire.items.ptr, list->wire.items.len), 3);
    raw_msg_destroy(&list);

    // Without a heartbeat the broker's default (1000 ms) is in force.
    raw_t *d = raw_new(harness_broker_endpoint(fx->broker));
    enc = raw_begin(d, HOP_CMD_HELLO);
    hop_enc_uint(enc, "version", 1);
    m = raw_call(d);
    assert_non_null(m);
    assert_int_equal(m->wire.cmd, HOP_CMD_HELLO_OK);
    assert_int_equal(m->wire.heartbeat, 1000);
    assert_int_equal(m->wire.timeout, 5000);
    raw_msg_destroy(&m);
    // Close politely: close-ok carries the id.
    raw_begin(d, HOP_CMD_CLOSE);
    m = raw_call(d);
    assert_non_null(m);
    assert_int_equal(m->wire.cmd, HOP_CMD_CLOSE_OK);
    raw_msg_destroy(&m);
    raw_destroy(&d);
    raw_destroy(&c);
}

static void
test_hello_version_mismatch_540(void **state)
{
    fx_t *fx = *state;
    raw_t *c = raw_new(harness_broker_endpoint(fx->broker));
    hop_enc_t *enc = raw_begin(c, HOP_CMD_HELLO);
    hop_enc_uint(enc, "version", 2);
    raw_msg_t *m = raw_call(c);
    assert_non_null(m);
    assert_int_equal(m->wire.cmd, HOP_CMD_ERROR);
    assert_int_equal(m->wire.code, HOP_CODE_NOT_IMPLEMENTED);
    char text[512];
    raw_str(m->wire.text, text, sizeof text);
    assert_non_null(strstr(text, "1")); // names the version the broker speaks
    raw_msg_destroy(&m);

    // No version at all is no better.
    raw_begin(c, HOP_CMD_HELLO);
    px_call_error(c, HOP_CODE_NOT_IMPLEMENTED);
    // The failed hello opened nothing.
    raw_begin(c, HOP_CMD_STATUS);
    px_call_error(c, HOP_CODE_UNEXPECTED_FRAME);
    // The same socket can still say hello properly.
    assert_int_equal(raw_hello(c, HB_LONG, "late"), 0);
    raw_sync(c);
    raw_destroy(&c);
}

static void
test_command_before_hello_505(void **state)
{
    fx_t *fx = *state;
    raw_t *c = raw_new(harness_broker_endpoint(fx->broker));
    hop_enc_t *enc = raw_begin(c, HOP_CMD_QUEUE_DECLARE);
    hop_enc_cstr(enc, "queue", "early");
    px_call_error(c, HOP_CODE_UNEXPECTED_FRAME);
    raw_begin(c, HOP_CMD_STATUS);
    px_call_error(c, HOP_CODE_UNEXPECTED_FRAME);
    // Garbage from an unknown peer still gets an answer.
    const void *frame[1] = {"\xc1"};
    size_t size[1] = {1};
    raw_send_frames(c, frame, size, 1);
    px_expect_error(c, HOP_CODE_FRAME_ERROR);
    // Nothing was declared.
    assert_false(px_queue_exists(fx->a, "early"));
    assert_int_equal(raw_hello(c, HB_LONG, NULL), 0);
    assert_int_equal(raw_queue_declare(c, "early", false, false, false, false), 0);
    raw_destroy(&c);
}

// ---------------------------------------------------------------------------------------
// Malformed frames: every one gets an error with the right code, the sender's connection stays
// usable, another client keeps working in between, and the broker stays up.

typedef struct {
    const char *name;
    int code;         // expected error code
    bool echoes_id;   // the header decodes far enough that the reply must carry its id
    uint64_t sent_id; // filled by the builder
} s_bad_t;

// Sends bad case i on c. Returns false when i is past the last case.
static bool
s_send_bad(raw_t *c, int i, s_bad_t *bad)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t id = raw_next_id(c);
    const void *frames[3] = {NULL, "", ""};
    size_t sizes[3] = {0, 0, 0};
    int n = 1;
    char big_body[4 * SMALL_MAX];
    memset(big_body, 'B', sizeof big_body);
    memset(bad, 0, sizeof *bad);
    bad->sent_id = id;
    bad->echoes_id = true;
    // Most cases: a map whose first keys are cmd and id.
#define BEGIN(cmd, entries)                                                                        \
    do {                                                                                           \
        msgpack_pack_map(&pk, (entries));                                                          \
        px_pk_cstr(&pk, "cmd");                                                                    \
        px_pk_cstr(&pk, (cmd));                                                                    \
        px_pk_cstr(&pk, "id");                                                                     \
        msgpack_pack_uint64(&pk, id);                                                              \
    } while (0)
    switch (i) {
    case 0:
        bad->name = "empty header frame";
        bad->code = HOP_CODE_FRAME_ERROR;
        bad->echoes_id = false;
        break;
    case 1:
        bad->name = "not msgpack (0xc1)";
        bad->code = HOP_CODE_FRAME_ERROR;
        bad->echoes_id = false;
        msgpack_sbuffer_write(&sb, "\xc1", 1);
        break;
    case 2:
        bad->name = "array instead of map";
        bad->code = HOP_CODE_FRAME_ERROR;
        bad->echoes_id = false;
        msgpack_pack_array(&pk, 2);
        px_pk_cstr(&pk, "cmd");
        px_pk_cstr(&pk, "status");
        break;
    case 3:
        bad->name = "trailing bytes after the map";
        bad->code = HOP_CODE_FRAME_ERROR;
        bad->echoes_id = false;
        BEGIN("status", 2);
        msgpack_pack_nil(&pk);
        break;
    case 4:
        bad->name = "truncated map";
        bad->code = HOP_CODE_FRAME_ERROR;
        bad->echoes_id = false;
        BEGIN("status", 4); // two entries promised but missing
        break;
    case 5:
        bad->name = "wrong field type (queue: 42)";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        BEGIN("queue.declare", 3);
        px_pk_cstr(&pk, "queue");
        msgpack_pack_int(&pk, 42);
        break;
    case 6: {
        bad->name = "name over 255 bytes";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        char name[300];
        memset(name, 'n', sizeof name);
        BEGIN("queue.declare", 3);
        px_pk_cstr(&pk, "queue");
        msgpack_pack_str(&pk, sizeof name);
        msgpack_pack_str_body(&pk, name, sizeof name);
        break;
    }
    case 7:
        bad->name = "unknown command";
        bad->code = HOP_CODE_COMMAND_INVALID;
        BEGIN("frobnicate", 2);
        break;
    case 8:
        bad->name = "three frames";
        bad->code = HOP_CODE_FRAME_ERROR;
        BEGIN("status", 2);
        frames[1] = "one", sizes[1] = 3;
        frames[2] = "two", sizes[2] = 3;
        n = 3;
        break;
    case 9:
        bad->name = "body on a non-publish command";
        bad->code = HOP_CODE_FRAME_ERROR;
        BEGIN("queue.declare", 3);
        px_pk_cstr(&pk, "queue");
        px_pk_cstr(&pk, "bad-body");
        frames[1] = "body", sizes[1] = 4;
        n = 2;
        break;
    case 10: {
        bad->name = "header over 64 KiB";
        bad->code = HOP_CODE_CONTENT_TOO_LARGE;
        bad->echoes_id = false;
        static char pad[70000];
        memset(pad, 'p', sizeof pad);
        BEGIN("status", 3);
        px_pk_cstr(&pk, "pad");
        msgpack_pack_str(&pk, sizeof pad);
        msgpack_pack_str_body(&pk, pad, sizeof pad);
        break;
    }
    case 11:
        bad->name = "body over --max-message";
        bad->code = HOP_CODE_CONTENT_TOO_LARGE;
        // Aimed at the good client's queue: if the broker stored it, the good consumer would
        // receive it instead of its own message.
        BEGIN("publish", 4);
        px_pk_cstr(&pk, "exchange");
        px_pk_cstr(&pk, "");
        px_pk_cstr(&pk, "key");
        px_pk_cstr(&pk, "good");
        frames[1] = big_body, sizes[1] = sizeof big_body;
        n = 2;
        break;
    case 12:
        bad->name = "cmd not a string";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        bad->echoes_id = false;
        msgpack_pack_map(&pk, 2);
        px_pk_cstr(&pk, "id");
        msgpack_pack_uint64(&pk, id);
        px_pk_cstr(&pk, "cmd");
        msgpack_pack_int(&pk, 5);
        break;
    case 13:
        bad->name = "deeply nested value";
        bad->code = HOP_CODE_FRAME_ERROR;
        bad->echoes_id = false;
        BEGIN("status", 3);
        px_pk_cstr(&pk, "nest");
        for (int d = 0; d < 100; d++)
            msgpack_pack_array(&pk, 1);
        msgpack_pack_nil(&pk);
        break;
    case 14:
        bad->name = "missing required field (queue.bind without queue)";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        BEGIN("queue.bind", 3);
        px_pk_cstr(&pk, "exchange");
        px_pk_cstr(&pk, "amq.direct");
        break;
    case 15:
        bad->name = "unknown list subject";
        bad->code = HOP_CODE_COMMAND_INVALID;
        BEGIN("list", 3);
        px_pk_cstr(&pk, "what");
        px_pk_cstr(&pk, "bananas");
        break;
    case 16:
        bad->name = "props not a map";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        BEGIN("publish", 5);
        px_pk_cstr(&pk, "exchange");
        px_pk_cstr(&pk, "");
        px_pk_cstr(&pk, "key");
        px_pk_cstr(&pk, "good");
        px_pk_cstr(&pk, "props");
        px_pk_cstr(&pk, "text/plain");
        break;
    case 17:
        bad->name = "integer where a boolean is required";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        BEGIN("queue.declare", 4);
        px_pk_cstr(&pk, "queue");
        px_pk_cstr(&pk, "int-bool");
        px_pk_cstr(&pk, "durable");
        msgpack_pack_int(&pk, 1);
        break;
    case 18:
        bad->name = "bin where a string is required";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        BEGIN("queue.declare", 3);
        px_pk_cstr(&pk, "queue");
        msgpack_pack_bin(&pk, 3);
        msgpack_pack_bin_body(&pk, "bin", 3);
        break;
    case 19:
        bad->name = "map32 claiming 4 billion entries";
        bad->code = HOP_CODE_FRAME_ERROR;
        bad->echoes_id = false;
        msgpack_sbuffer_write(&sb,
                              "\xdf\xff\xff\xff\xff\xa3"
                              "cmd",
                              9);
        break;
    case 20:
        bad->name = "string longer than the frame";
        bad->code = HOP_CODE_FRAME_ERROR;
        bad->echoes_id = false;
        msgpack_sbuffer_write(&sb,
                              "\x81\xa3"
                              "cmd\xda\x03\xe8"
                              "sta",
                              11);
        break;
    case 21:
        bad->name = "negative id";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        bad->echoes_id = false;
        msgpack_pack_map(&pk, 2);
        px_pk_cstr(&pk, "cmd");
        px_pk_cstr(&pk, "status");
        px_pk_cstr(&pk, "id");
        msgpack_pack_int(&pk, -1);
        break;
    case 22:
        bad->name = "float id";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        bad->echoes_id = false;
        msgpack_pack_map(&pk, 2);
        px_pk_cstr(&pk, "cmd");
        px_pk_cstr(&pk, "status");
        px_pk_cstr(&pk, "id");
        msgpack_pack_double(&pk, 1.5);
        break;
    case 23:
        bad->name = "a broker-to-client command sent to the broker";
        bad->code = HOP_CODE_COMMAND_INVALID;
        BEGIN("deliver", 2);
        break;
    case 24:
        bad->name = "unknown exchange type";
        bad->code = HOP_CODE_COMMAND_INVALID;
        BEGIN("exchange.declare", 4);
        px_pk_cstr(&pk, "exchange");
        px_pk_cstr(&pk, "weird");
        px_pk_cstr(&pk, "type");
        px_pk_cstr(&pk, "headers");
        break;
    case 25:
        bad->name = "publish to a missing exchange";
        bad->code = HOP_CODE_NOT_FOUND;
        BEGIN("publish", 4);
        px_pk_cstr(&pk, "exchange");
        px_pk_cstr(&pk, "no-such-exchange");
        px_pk_cstr(&pk, "key");
        px_pk_cstr(&pk, "k");
        break;
    case 26:
        bad->name = "ack without a tag";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        BEGIN("ack", 2);
        break;
    case 27:
        bad->name = "ack of a tag never delivered";
        bad->code = HOP_CODE_PRECONDITION_FAILED;
        BEGIN("ack", 3);
        px_pk_cstr(&pk, "tag");
        msgpack_pack_uint64(&pk, 123456);
        break;
    case 28:
        bad->name = "second hello with another version";
        bad->code = HOP_CODE_NOT_IMPLEMENTED;
        BEGIN("hello", 3);
        px_pk_cstr(&pk, "version");
        msgpack_pack_uint64(&pk, 99);
        break;
    case 29:
        bad->name = "list without what";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        BEGIN("list", 2);
        break;
    case 30:
        bad->name = "queue.declare of a reserved amq. name";
        bad->code = HOP_CODE_ACCESS_REFUSED;
        BEGIN("queue.declare", 3);
        px_pk_cstr(&pk, "queue");
        px_pk_cstr(&pk, "amq.mine");
        break;
    case 31:
        bad->name = "consume of a missing queue";
        bad->code = HOP_CODE_NOT_FOUND;
        BEGIN("consume", 3);
        px_pk_cstr(&pk, "queue");
        px_pk_cstr(&pk, "no-such-queue");
        break;
    case 32:
        bad->name = "wrong type before the id";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        bad->echoes_id = false; // decoding stops at the bad key: the id is never seen
        msgpack_pack_map(&pk, 3);
        px_pk_cstr(&pk, "cmd");
        px_pk_cstr(&pk, "queue.declare");
        px_pk_cstr(&pk, "queue");
        msgpack_pack_int(&pk, 7);
        px_pk_cstr(&pk, "id");
        msgpack_pack_uint64(&pk, id);
        break;
    default:
        msgpack_sbuffer_destroy(&sb);
        return false;
    }
#undef BEGIN
    frames[0] = sb.data ? sb.data : "";
    sizes[0] = sb.size;
    assert_int_equal(raw_send_frames(c, frames, sizes, n), 0);
    msgpack_sbuffer_destroy(&sb);
    return true;
}

// Checks the error answering bad case on c.
static void
s_expect_bad_reply(raw_t *c, const s_bad_t *bad)
{
    raw_msg_t *m = raw_next(c, HOP_CMD_ERROR, WAIT_MS);
    if (!m)
        fail_msg("%s: no error reply within %d ms", bad->name, WAIT_MS);
    char text[512];
    raw_str(m->wire.text, text, sizeof text);
    if ((int)m->wire.code != bad->code)
        fail_msg("%s: expected error %d, got %d (%s)", bad->name, bad->code, (int)m->wire.code,
                 text);
    if (bad->echoes_id && m->wire.id != bad->sent_id)
        fail_msg("%s: error carries id %llu, the request had %llu", bad->name,
                 (unsigned long long)m->wire.id, (unsigned long long)bad->sent_id);
    if (!bad->echoes_id && m->wire.id != 0 && m->wire.id != bad->sent_id)
        fail_msg("%s: error carries a foreign id %llu", bad->name, (unsigned long long)m->wire.id);
    if (!text[0])
        fail_msg("%s: error without text", bad->name);
    raw_msg_destroy(&m);
}

// The good client's round: declare, publish, receive, ack.
static void
s_good_round(raw_t *good, int round)
{
    assert_int_equal(raw_queue_declare(good, "good", false, false, false, false), 0);
    char body[32];
    snprintf(body, sizeof body, "round-%d", round);
    raw_publish_text(good, "", "good", body, NULL);
    uint64_t tag = raw_expect_deliver(good, body, false, 1);
    assert_int_equal(raw_ack(good, tag, false), 0);
}

static void
test_malformed_frames_get_errors_while_others_work(void **state)
{
    fx_t *fx = *state;
    raw_t *bad = fx->a, *good = fx->b;
    assert_int_equal(raw_queue_declare(good, "good", false, false, false, false), 0);
    assert_int_equal(raw_consume(good, "good", "g", 10, false, NULL, 0), 0);

    s_bad_t bc;
    int cases = 0;
    for (int i = 0; s_send_bad(bad, i, &bc); i++, cases++) {
        s_expect_bad_reply(bad, &bc);
        // The sender's connection is still usable after any error.
        raw_sync(bad);
        s_good_round(good, i);
    }
    assert_true(cases >= 30);

    // The same from a peer that never said hello: each still gets an error.
    raw_t *stranger = raw_new(harness_broker_endpoint(fx->broker));
    for (int i = 0; i < 5; i++) {
        assert_true(s_send_bad(stranger, i, &bc));
        s_expect_bad_reply(stranger, &bc);
    }
    raw_destroy(&stranger);

    raw_expect_no_error(good);
    assert_int_equal(raw_qstat(good, "good", "messages"), 0);
    assert_int_equal(raw_qstat(good, "good", "acked"), (uint64_t)cases);

    // Many more rounds: the broker's memory must not grow with bad input (under ASan the
    // broker's leak check at exit covers this instead: its quarantine inflates RSS).
    int rounds = 40;
#ifndef UNDER_ASAN
    long rss_before = 0;
#endif
    for (int r = 0; r < rounds; r++) {
#ifndef UNDER_ASAN
        if (r == rounds / 4)
            rss_before = harness_broker_rss_kb(fx->broker);
#endif
        for (int i = 0; s_send_bad(bad, i, &bc); i++)
            s_expect_bad_reply(bad, &bc);
        s_good_round(good, r);
    }
    raw_sync(bad);
#ifndef UNDER_ASAN
    long rss_after = harness_broker_rss_kb(fx->broker);
    assert_true(rss_before > 0 && rss_after > 0);
    print_message("hopperd RSS %ld KiB -> %ld KiB over %d rounds of bad frames\n", rss_before,
                  rss_after, rounds - rounds / 4);
    if (rss_after - rss_before > 8 * 1024)
        fail_msg("hopperd RSS grew from %ld KiB to %ld KiB over %d rounds of bad frames",
                 rss_before, rss_after, rounds - rounds / 4);
#endif

    // Still up and answering.
    assert_true(harness_broker_alive(fx->broker));
    raw_msg_t *status = raw_status(good);
    assert_non_null(status);
    uint64_t published = 0;
    assert_true(harness_map_uint(zmq_msg_data(&status->header), zmq_msg_size(&status->header),
                                 "published", &published));
    assert_true(published >= (uint64_t)cases);
    raw_msg_destroy(&status);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hello_handshake, raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_hello_version_mismatch_540, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_command_before_hello_505, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_malformed_frames_get_errors_while_others_work,
                                        raw_fx_setup_small, raw_fx_teardown),
    };
    return cmocka_run_group_tests_name("integration.protocol", tests, NULL, NULL);
}
