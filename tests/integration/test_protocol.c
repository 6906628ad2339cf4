// tests/integration/test_protocol.c - hopperd over the raw wire protocol (docs/PROTOCOL.md):
// a ZeroMQ DEALER and the codec, no SDK. Each test starts its own broker on a free port.
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

#include "harness.h"
#include "hopper.h"
#include "raw.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS   10000 // longest wait for any single event
#define HB_LONG   60000 // heartbeat of test connections that must never time out
#define HB_SHORT  100   // heartbeat of connections that are meant to go silent and die
#define SMALL_MAX 1024  // --max-message of the malformed-frames broker

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

// ---------------------------------------------------------------------------------------
// Fixture: a broker and two connections that said hello.

typedef struct {
    harness_broker_t *broker;
    raw_t *a;
    raw_t *b;
} fx_t;

static raw_t *
s_connect(fx_t *fx, uint64_t heartbeat, const char *name)
{
    raw_t *c = raw_new(harness_broker_endpoint(fx->broker));
    assert_non_null(c);
    assert_int_equal(raw_hello(c, heartbeat, name), 0);
    return c;
}

static int
s_setup_with(void **state, const harness_opts_t *opts)
{
    fx_t *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    fx->broker = harness_broker_start(opts);
    if (!fx->broker) {
        free(fx);
        return -1;
    }
    fx->a = raw_new(harness_broker_endpoint(fx->broker));
    fx->b = raw_new(harness_broker_endpoint(fx->broker));
    if (!fx->a || !fx->b || raw_hello(fx->a, HB_LONG, "a") || raw_hello(fx->b, HB_LONG, "b")) {
        fprintf(stderr, "setup: hello failed\n");
        return -1;
    }
    *state = fx;
    return 0;
}

static int
setup(void **state)
{
    return s_setup_with(state, NULL);
}

static int
setup_small(void **state)
{
    harness_opts_t opts = {.max_message = SMALL_MAX};
    return s_setup_with(state, &opts);
}

static int
teardown(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return 0;
    raw_destroy(&fx->a);
    raw_destroy(&fx->b);
    // The broker must still be up, and must exit cleanly (under ASan: without leaks).
    int rc = harness_broker_finish(&fx->broker);
    free(fx);
    *state = NULL;
    return rc;
}

// ---------------------------------------------------------------------------------------
// Helpers

// A round trip on c: everything the broker sent c before it is then buffered.
static void
s_sync(raw_t *c)
{
    assert_int_equal(raw_exchange_declare(c, "amq.direct", NULL, false, false, true), 0);
}

static raw_msg_t *
s_deliver(raw_t *c)
{
    raw_msg_t *m = raw_next(c, HOP_CMD_DELIVER, WAIT_MS);
    if (!m)
        fail_msg("no delivery within %d ms", WAIT_MS);
    return m;
}

// Waits for a delivery with body text and checks its flags; returns its tag.
static uint64_t
s_expect_deliver(raw_t *c, const char *text, bool redelivered, uint64_t count)
{
    raw_msg_t *m = s_deliver(c);
    char buf[256];
    if (!raw_body_is(m, text))
        fail_msg("expected delivery '%s', got '%s'", text, raw_body(m, buf, sizeof buf));
    assert_true(m->wire.has & HOP_F_TAG);
    assert_int_equal(m->wire.redelivered, redelivered);
    assert_int_equal(m->wire.count, count);
    uint64_t tag = m->wire.tag;
    raw_msg_destroy(&m);
    return tag;
}

// Waits for an error message on c and checks its code; returns its id.
static uint64_t
s_expect_error(raw_t *c, int code)
{
    raw_msg_t *m = raw_next(c, HOP_CMD_ERROR, WAIT_MS);
    if (!m)
        fail_msg("no error reply within %d ms (expected %d)", WAIT_MS, code);
    char text[512];
    raw_str(m->wire.text, text, sizeof text);
    if ((int)m->wire.code != code)
        fail_msg("expected error %d, got %d: %s", code, (int)m->wire.code, text);
    assert_true(m->wire.has & HOP_F_TEXT);
    assert_true(strlen(text) > 0);
    uint64_t id = m->wire.id;
    raw_msg_destroy(&m);
    return id;
}

// Sends the request being built on c; expects an error with code and the request's id.
static void
s_call_error(raw_t *c, int code)
{
    raw_msg_t *m = raw_call(c);
    assert_non_null(m);
    char text[512];
    raw_str(m->wire.text, text, sizeof text);
    if (m->wire.cmd != HOP_CMD_ERROR || (int)m->wire.code != code)
        fail_msg("expected error %d, got %s %d: %s", code, hop_cmd_name(m->wire.cmd),
                 (int)m->wire.code, text);
    assert_int_equal(m->wire.id, raw_last_id(c));
    raw_msg_destroy(&m);
}

static void
s_expect_no_delivery(raw_t *c)
{
    s_sync(c);
    assert_int_equal(raw_pending(c, HOP_CMD_DELIVER), 0);
}

static void
s_expect_no_error(raw_t *c)
{
    s_sync(c);
    raw_msg_t *m = raw_pending(c, HOP_CMD_ERROR) ? raw_next(c, HOP_CMD_ERROR, 0) : NULL;
    if (m) {
        char text[512];
        fail_msg("unexpected error %d: %s", (int)m->wire.code,
                 raw_str(m->wire.text, text, sizeof text));
    }
}

static uint64_t
s_qstat(raw_t *c, const char *queue, const char *field)
{
    uint64_t value = 0;
    if (!raw_queue_stat(c, queue, field, &value))
        fail_msg("queue '%s' not listed (or no field '%s')", queue, field);
    return value;
}

static bool
s_queue_exists(raw_t *c, const char *queue)
{
    int code = raw_queue_declare(c, queue, false, false, false, true);
    assert_true(code == 0 || code == HOP_CODE_NOT_FOUND);
    return code == 0;
}

// get: returns the reply (get-ok, get-empty or error).
static raw_msg_t *
s_get(raw_t *c, const char *queue, bool no_ack)
{
    hop_enc_t *enc = raw_begin(c, HOP_CMD_GET);
    hop_enc_cstr(enc, "queue", queue);
    hop_enc_bool(enc, "no_ack", no_ack);
    raw_msg_t *m = raw_call(c);
    assert_non_null(m);
    return m;
}

// Gets every ready message of queue (no-ack) and returns their bodies joined by ','.
static char *
s_drain(raw_t *c, const char *queue, char *out, size_t size)
{
    out[0] = '\0';
    while (true) {
        raw_msg_t *m = s_get(c, queue, true);
        if (m->wire.cmd == HOP_CMD_GET_EMPTY) {
            raw_msg_destroy(&m);
            return out;
        }
        assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
        char body[256];
        raw_body(m, body, sizeof body);
        size_t len = strlen(out);
        snprintf(out + len, size - len, "%s%s", len ? "," : "", body);
        raw_msg_destroy(&m);
    }
}

static void
s_publish(raw_t *c, const char *exchange, const char *key, const char *body)
{
    assert_int_equal(raw_publish(c, exchange, key, body, strlen(body)), 0);
}

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
    s_call_error(c, HOP_CODE_NOT_IMPLEMENTED);
    // The failed hello opened nothing.
    raw_begin(c, HOP_CMD_STATUS);
    s_call_error(c, HOP_CODE_UNEXPECTED_FRAME);
    // The same socket can still say hello properly.
    assert_int_equal(raw_hello(c, HB_LONG, "late"), 0);
    s_sync(c);
    raw_destroy(&c);
}

static void
test_command_before_hello_505(void **state)
{
    fx_t *fx = *state;
    raw_t *c = raw_new(harness_broker_endpoint(fx->broker));
    hop_enc_t *enc = raw_begin(c, HOP_CMD_QUEUE_DECLARE);
    hop_enc_cstr(enc, "queue", "early");
    s_call_error(c, HOP_CODE_UNEXPECTED_FRAME);
    raw_begin(c, HOP_CMD_STATUS);
    s_call_error(c, HOP_CODE_UNEXPECTED_FRAME);
    // Garbage from an unknown peer still gets an answer.
    const void *frame[1] = {"\xc1"};
    size_t size[1] = {1};
    raw_send_frames(c, frame, size, 1);
    s_expect_error(c, HOP_CODE_FRAME_ERROR);
    // Nothing was declared.
    assert_false(s_queue_exists(fx->a, "early"));
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

static void
s_pk_cstr(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

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
        s_pk_cstr(&pk, "cmd");                                                                     \
        s_pk_cstr(&pk, (cmd));                                                                     \
        s_pk_cstr(&pk, "id");                                                                      \
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
        s_pk_cstr(&pk, "cmd");
        s_pk_cstr(&pk, "status");
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
        s_pk_cstr(&pk, "queue");
        msgpack_pack_int(&pk, 42);
        break;
    case 6: {
        bad->name = "name over 255 bytes";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        char name[300];
        memset(name, 'n', sizeof name);
        BEGIN("queue.declare", 3);
        s_pk_cstr(&pk, "queue");
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
        s_pk_cstr(&pk, "queue");
        s_pk_cstr(&pk, "bad-body");
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
        s_pk_cstr(&pk, "pad");
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
        s_pk_cstr(&pk, "exchange");
        s_pk_cstr(&pk, "");
        s_pk_cstr(&pk, "key");
        s_pk_cstr(&pk, "good");
        frames[1] = big_body, sizes[1] = sizeof big_body;
        n = 2;
        break;
    case 12:
        bad->name = "cmd not a string";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        bad->echoes_id = false;
        msgpack_pack_map(&pk, 2);
        s_pk_cstr(&pk, "id");
        msgpack_pack_uint64(&pk, id);
        s_pk_cstr(&pk, "cmd");
        msgpack_pack_int(&pk, 5);
        break;
    case 13:
        bad->name = "deeply nested value";
        bad->code = HOP_CODE_FRAME_ERROR;
        bad->echoes_id = false;
        BEGIN("status", 3);
        s_pk_cstr(&pk, "nest");
        for (int d = 0; d < 100; d++)
            msgpack_pack_array(&pk, 1);
        msgpack_pack_nil(&pk);
        break;
    case 14:
        bad->name = "missing required field (queue.bind without queue)";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        BEGIN("queue.bind", 3);
        s_pk_cstr(&pk, "exchange");
        s_pk_cstr(&pk, "amq.direct");
        break;
    case 15:
        bad->name = "unknown list subject";
        bad->code = HOP_CODE_COMMAND_INVALID;
        BEGIN("list", 3);
        s_pk_cstr(&pk, "what");
        s_pk_cstr(&pk, "bananas");
        break;
    case 16:
        bad->name = "props not a map";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        BEGIN("publish", 5);
        s_pk_cstr(&pk, "exchange");
        s_pk_cstr(&pk, "");
        s_pk_cstr(&pk, "key");
        s_pk_cstr(&pk, "good");
        s_pk_cstr(&pk, "props");
        s_pk_cstr(&pk, "text/plain");
        break;
    case 17:
        bad->name = "integer where a boolean is required";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        BEGIN("queue.declare", 4);
        s_pk_cstr(&pk, "queue");
        s_pk_cstr(&pk, "int-bool");
        s_pk_cstr(&pk, "durable");
        msgpack_pack_int(&pk, 1);
        break;
    case 18:
        bad->name = "bin where a string is required";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        BEGIN("queue.declare", 3);
        s_pk_cstr(&pk, "queue");
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
        s_pk_cstr(&pk, "cmd");
        s_pk_cstr(&pk, "status");
        s_pk_cstr(&pk, "id");
        msgpack_pack_int(&pk, -1);
        break;
    case 22:
        bad->name = "float id";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        bad->echoes_id = false;
        msgpack_pack_map(&pk, 2);
        s_pk_cstr(&pk, "cmd");
        s_pk_cstr(&pk, "status");
        s_pk_cstr(&pk, "id");
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
        s_pk_cstr(&pk, "exchange");
        s_pk_cstr(&pk, "weird");
        s_pk_cstr(&pk, "type");
        s_pk_cstr(&pk, "headers");
        break;
    case 25:
        bad->name = "publish to a missing exchange";
        bad->code = HOP_CODE_NOT_FOUND;
        BEGIN("publish", 4);
        s_pk_cstr(&pk, "exchange");
        s_pk_cstr(&pk, "no-such-exchange");
        s_pk_cstr(&pk, "key");
        s_pk_cstr(&pk, "k");
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
        s_pk_cstr(&pk, "tag");
        msgpack_pack_uint64(&pk, 123456);
        break;
    case 28:
        bad->name = "second hello with another version";
        bad->code = HOP_CODE_NOT_IMPLEMENTED;
        BEGIN("hello", 3);
        s_pk_cstr(&pk, "version");
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
        s_pk_cstr(&pk, "queue");
        s_pk_cstr(&pk, "amq.mine");
        break;
    case 31:
        bad->name = "consume of a missing queue";
        bad->code = HOP_CODE_NOT_FOUND;
        BEGIN("consume", 3);
        s_pk_cstr(&pk, "queue");
        s_pk_cstr(&pk, "no-such-queue");
        break;
    case 32:
        bad->name = "wrong type before the id";
        bad->code = HOP_CODE_SYNTAX_ERROR;
        bad->echoes_id = false; // decoding stops at the bad key: the id is never seen
        msgpack_pack_map(&pk, 3);
        s_pk_cstr(&pk, "cmd");
        s_pk_cstr(&pk, "queue.declare");
        s_pk_cstr(&pk, "queue");
        msgpack_pack_int(&pk, 7);
        s_pk_cstr(&pk, "id");
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
    s_publish(good, "", "good", body);
    uint64_t tag = s_expect_deliver(good, body, false, 1);
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
        s_sync(bad);
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

    s_expect_no_error(good);
    assert_int_equal(s_qstat(good, "good", "messages"), 0);
    assert_int_equal(s_qstat(good, "good", "acked"), (uint64_t)cases);

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
    s_sync(bad);
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

// ---------------------------------------------------------------------------------------
// Exchanges end to end

static void
test_direct_exchange_exact_key(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_exchange_declare(a, "dx", "direct", false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "d1", false, false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "d2", false, false, false, false), 0);
    assert_int_equal(raw_bind(a, "d1", "dx", "red"), 0);
    assert_int_equal(raw_bind(a, "d2", "dx", "green"), 0);
    assert_int_equal(raw_bind(a, "d2", "dx", "green"), 0); // binding twice is a no-op
    s_publish(a, "dx", "red", "r1");
    s_publish(a, "dx", "green", "g1");
    s_publish(a, "dx", "re", "prefix-not-a-match");
    s_publish(a, "dx", "red.x", "suffix-not-a-match");
    s_publish(a, "dx", "RED", "case-matters");
    s_publish(a, "dx", "red", "r2");
    char got[512];
    assert_string_equal(s_drain(a, "d1", got, sizeof got), "r1,r2");
    assert_string_equal(s_drain(a, "d2", got, sizeof got), "g1");

    // A delivery names the exchange and routing key it came through.
    assert_int_equal(raw_consume(fx->b, "d1", "c", 0, false, NULL, 0), 0);
    s_publish(a, "dx", "red", "r3");
    raw_msg_t *m = s_deliver(fx->b);
    assert_true(raw_str_is(m->wire.exchange, "dx"));
    assert_true(raw_str_is(m->wire.key, "red"));
    assert_true(raw_str_is(m->wire.consumer, "c"));
    assert_true(raw_body_is(m, "r3"));
    raw_msg_destroy(&m);

    // The three misses were counted as unroutable.
    raw_msg_t *list = raw_list(a, "exchanges");
    assert_non_null(list);
    uint64_t unroutable = 0, published = 0;
    assert_true(harness_items_uint(list->wire.items.ptr, list->wire.items.len, "name", "dx",
                                   "unroutable", &unroutable));
    assert_true(harness_items_uint(list->wire.items.ptr, list->wire.items.len, "name", "dx",
                                   "published", &published));
    assert_int_equal(unroutable, 3);
    assert_int_equal(published, 7);
    raw_msg_destroy(&list);
}

static void
test_fanout_exchange_two_queues(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a, *b = fx->b;
    assert_int_equal(raw_exchange_declare(a, "fx", "fanout", false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "f1", false, false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "f2", false, false, false, false), 0);
    assert_int_equal(raw_bind(a, "f1", "fx", "ignored"), 0);
    assert_int_equal(raw_bind(a, "f2", "fx", ""), 0);
    assert_int_equal(raw_consume(a, "f1", NULL, 0, false, NULL, 0), 0);
    assert_int_equal(raw_consume(b, "f2", NULL, 0, false, NULL, 0), 0);
    for (int i = 0; i < 20; i++) {
        char body[16];
        snprintf(body, sizeof body, "e%d", i);
        s_publish(a, "fx", i % 2 ? "any.key" : "", body);
    }
    for (int i = 0; i < 20; i++) {
        char body[16];
        snprintf(body, sizeof body, "e%d", i);
        raw_ack(a, s_expect_deliver(a, body, false, 1), false);
        raw_ack(b, s_expect_deliver(b, body, false, 1), false);
    }
    s_expect_no_error(a);
    s_expect_no_error(b);
    assert_int_equal(s_qstat(a, "f1", "acked"), 20);
    assert_int_equal(s_qstat(a, "f2", "acked"), 20);
}

static void
test_topic_exchange_wildcards(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_exchange_declare(a, "tx", "topic", false, false, false), 0);
    const char *queues[] = {"t-star", "t-hash", "t-all", "t-mid", "t-exact"};
    const char *patterns[] = {"stock.*.nyse", "stock.#", "#", "*.*.eur", "stock.ibm.nyse"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(raw_queue_declare(a, queues[i], false, false, false, false), 0);
        assert_int_equal(raw_bind(a, queues[i], "tx", patterns[i]), 0);
    }
    const char *keys[] = {"stock.ibm.nyse",   "stock.ibm",   "stock",
                          "stock.ibm.nyse.x", "bond.x.nyse", "fx.usd.eur",
                          "stockx",           "stock..nyse", "stock.a.b.eur"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        s_publish(a, "tx", keys[i], keys[i]);
    char got[1024];
    assert_string_equal(s_drain(a, "t-star", got, sizeof got), "stock.ibm.nyse,stock..nyse");
    assert_string_equal(s_drain(a, "t-hash", got, sizeof got),
                        "stock.ibm.nyse,stock.ibm,stock,stock.ibm.nyse.x,stock..nyse,"
                        "stock.a.b.eur");
    assert_string_equal(s_drain(a, "t-all", got, sizeof got),
                        "stock.ibm.nyse,stock.ibm,stock,stock.ibm.nyse.x,bond.x.nyse,fx.usd.eur,"
                        "stockx,stock..nyse,stock.a.b.eur");
    assert_string_equal(s_drain(a, "t-mid", got, sizeof got), "fx.usd.eur");
    assert_string_equal(s_drain(a, "t-exact", got, sizeof got), "stock.ibm.nyse");

    // amq.topic is predeclared and behaves the same.
    assert_int_equal(raw_bind(a, "t-mid", "amq.topic", "a.#.z"), 0);
    s_publish(a, "amq.topic", "a.z", "a.z");
    s_publish(a, "amq.topic", "a.b.c.z", "a.b.c.z");
    s_publish(a, "amq.topic", "a.b.c", "a.b.c");
    assert_string_equal(s_drain(a, "t-mid", got, sizeof got), "a.z,a.b.c.z");
}

static void
test_default_exchange_routes_by_queue_name(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "by-name", false, false, false, false), 0);
    s_publish(a, "", "by-name", "hello");
    s_publish(a, "", "no-such-queue", "lost");
    raw_msg_t *m = s_get(a, "by-name", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    assert_true(raw_body_is(m, "hello"));
    assert_true(raw_str_is(m->wire.exchange, ""));
    assert_true(raw_str_is(m->wire.key, "by-name"));
    raw_ack(a, m->wire.tag, false);
    raw_msg_destroy(&m);
    raw_msg_t *status = raw_status(a);
    assert_non_null(status);
    uint64_t unroutable = 0;
    assert_true(harness_map_uint(zmq_msg_data(&status->header), zmq_msg_size(&status->header),
                                 "unroutable", &unroutable));
    assert_int_equal(unroutable, 1);
    raw_msg_destroy(&status);

    // The default exchange cannot be bound, declared or deleted; amq.* are reserved.
    hop_enc_t *enc = raw_begin(a, HOP_CMD_QUEUE_BIND);
    hop_enc_cstr(enc, "queue", "by-name");
    hop_enc_cstr(enc, "exchange", "");
    hop_enc_cstr(enc, "key", "x");
    s_call_error(a, HOP_CODE_ACCESS_REFUSED);
    assert_int_equal(raw_exchange_declare(a, "", "direct", false, false, false),
                     HOP_CODE_ACCESS_REFUSED);
    assert_int_equal(raw_exchange_declare(a, "amq.mine", "direct", false, false, false),
                     HOP_CODE_ACCESS_REFUSED);
    enc = raw_begin(a, HOP_CMD_EXCHANGE_DELETE);
    hop_enc_cstr(enc, "exchange", "");
    s_call_error(a, HOP_CODE_ACCESS_REFUSED);
    enc = raw_begin(a, HOP_CMD_EXCHANGE_DELETE);
    hop_enc_cstr(enc, "exchange", "amq.fanout");
    s_call_error(a, HOP_CODE_ACCESS_REFUSED);
    // The predeclared exchanges exist (passive) and route.
    assert_int_equal(raw_exchange_declare(a, "amq.direct", NULL, false, false, true), 0);
    assert_int_equal(raw_exchange_declare(a, "amq.fanout", NULL, false, false, true), 0);
    assert_int_equal(raw_bind(a, "by-name", "amq.fanout", ""), 0);
    s_publish(a, "amq.fanout", "whatever", "fanned");
    char got[256];
    assert_string_equal(s_drain(a, "by-name", got, sizeof got), "fanned");
}

// ---------------------------------------------------------------------------------------
// Declares and deletes

static void
test_redeclare_with_other_properties_406(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "q", false, false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "q", false, false, false, false), 0); // idempotent
    assert_int_equal(raw_queue_declare(a, "q", true, false, false, false),
                     HOP_CODE_PRECONDITION_FAILED);
    assert_int_equal(raw_queue_declare(a, "q", false, false, true, false),
                     HOP_CODE_PRECONDITION_FAILED);
    assert_int_equal(raw_queue_declare(a, "q", false, true, false, false),
                     HOP_CODE_PRECONDITION_FAILED);
    assert_int_equal(raw_exchange_declare(a, "x", "direct", false, false, false), 0);
    assert_int_equal(raw_exchange_declare(a, "x", "direct", false, false, false), 0);
    assert_int_equal(raw_exchange_declare(a, "x", "fanout", false, false, false),
                     HOP_CODE_PRECONDITION_FAILED);
    assert_int_equal(raw_exchange_declare(a, "x", "direct", true, false, false),
                     HOP_CODE_PRECONDITION_FAILED);
    assert_int_equal(raw_exchange_declare(a, "x", "direct", false, true, false),
                     HOP_CODE_PRECONDITION_FAILED);
    // The error names the property.
    hop_enc_t *enc = raw_begin(a, HOP_CMD_QUEUE_DECLARE);
    hop_enc_cstr(enc, "queue", "q");
    hop_enc_bool(enc, "durable", true);
    raw_msg_t *m = raw_call(a);
    assert_non_null(m);
    char text[512];
    assert_non_null(strstr(raw_str(m->wire.text, text, sizeof text), "durable"));
    raw_msg_destroy(&m);
    // Nothing changed.
    uint64_t durable = 1;
    raw_msg_t *list = raw_list(a, "queues");
    const void *item;
    size_t item_size;
    assert_true(harness_items_find(list->wire.items.ptr, list->wire.items.len, "name", "q", &item,
                                   &item_size));
    bool b = true;
    assert_true(harness_map_bool(item, item_size, "durable", &b));
    durable = b;
    assert_int_equal(durable, 0);
    raw_msg_destroy(&list);
}

static void
test_passive_declare_of_missing_404(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "nope", false, false, false, true), HOP_CODE_NOT_FOUND);
    assert_int_equal(raw_exchange_declare(a, "nope", NULL, false, false, true), HOP_CODE_NOT_FOUND);
    // Passive declares create nothing.
    assert_int_equal(raw_queue_declare(a, "nope", false, false, false, true), HOP_CODE_NOT_FOUND);
    // Once declared, passive succeeds and reports counts.
    assert_int_equal(raw_queue_declare(a, "nope", false, false, false, false), 0);
    s_publish(a, "", "nope", "one");
    hop_enc_t *enc = raw_begin(a, HOP_CMD_QUEUE_DECLARE);
    hop_enc_cstr(enc, "queue", "nope");
    hop_enc_bool(enc, "passive", true);
    hop_enc_bool(enc, "durable", true); // ignored with passive
    raw_msg_t *m = raw_call(a);
    assert_non_null(m);
    assert_int_equal(m->wire.cmd, HOP_CMD_QUEUE_OK);
    assert_true(raw_str_is(m->wire.queue, "nope"));
    assert_int_equal(m->wire.messages, 1);
    assert_int_equal(m->wire.consumers, 0);
    raw_msg_destroy(&m);
}

static void
test_exclusive_queue_used_by_another_connection_405(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a, *b = fx->b;
    assert_int_equal(raw_queue_declare(a, "mine", false, true, false, false), 0);
    assert_int_equal(raw_consume(a, "mine", NULL, 0, false, NULL, 0), 0);
    assert_int_equal(raw_consume(b, "mine", NULL, 0, false, NULL, 0), HOP_CODE_RESOURCE_LOCKED);
    raw_msg_t *m = s_get(b, "mine", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_ERROR);
    assert_int_equal(m->wire.code, HOP_CODE_RESOURCE_LOCKED);
    raw_msg_destroy(&m);
    assert_int_equal(raw_queue_declare(b, "mine", false, true, false, false),
                     HOP_CODE_RESOURCE_LOCKED);
    assert_int_equal(raw_bind(b, "mine", "amq.direct", "k"), HOP_CODE_RESOURCE_LOCKED);
    assert_int_equal(raw_queue_delete(b, "mine", false, false), HOP_CODE_RESOURCE_LOCKED);
    hop_enc_t *enc = raw_begin(b, HOP_CMD_QUEUE_PURGE);
    hop_enc_cstr(enc, "queue", "mine");
    s_call_error(b, HOP_CODE_RESOURCE_LOCKED);
    // The owner is unaffected.
    assert_true(s_queue_exists(a, "mine"));
    assert_int_equal(raw_bind(a, "mine", "amq.direct", "k"), 0);
    s_publish(b, "amq.direct", "k", "from-b");
    raw_ack(a, s_expect_deliver(a, "from-b", false, 1), false);
    s_expect_no_error(a);
}

static void
test_delete_if_empty_if_unused_406(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a, *b = fx->b;
    assert_int_equal(raw_queue_declare(a, "full", false, false, false, false), 0);
    s_publish(a, "", "full", "m");
    assert_int_equal(raw_queue_delete(a, "full", false, true), HOP_CODE_PRECONDITION_FAILED);
    assert_true(s_queue_exists(a, "full"));

    // Unacked counts as not empty.
    raw_msg_t *m = s_get(a, "full", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    uint64_t tag = m->wire.tag;
    raw_msg_destroy(&m);
    assert_int_equal(raw_queue_delete(a, "full", false, true), HOP_CODE_PRECONDITION_FAILED);
    raw_ack(a, tag, false);
    assert_int_equal(raw_queue_delete(a, "full", false, true), 0);
    assert_false(s_queue_exists(a, "full"));

    assert_int_equal(raw_queue_declare(a, "used", false, false, false, false), 0);
    assert_int_equal(raw_consume(b, "used", "u", 0, false, NULL, 0), 0);
    assert_int_equal(raw_queue_delete(a, "used", true, false), HOP_CODE_PRECONDITION_FAILED);
    assert_int_equal(raw_cancel(b, "u"), 0);
    assert_int_equal(raw_queue_delete(a, "used", true, false), 0);

    // Exchanges: if_unused refuses while bindings exist.
    assert_int_equal(raw_exchange_declare(a, "xb", "direct", false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "qb", false, false, false, false), 0);
    assert_int_equal(raw_bind(a, "qb", "xb", "k"), 0);
    hop_enc_t *enc = raw_begin(a, HOP_CMD_EXCHANGE_DELETE);
    hop_enc_cstr(enc, "exchange", "xb");
    hop_enc_bool(enc, "if_unused", true);
    s_call_error(a, HOP_CODE_PRECONDITION_FAILED);
    enc = raw_begin(a, HOP_CMD_EXCHANGE_DELETE);
    hop_enc_cstr(enc, "exchange", "xb");
    m = raw_call(a);
    assert_int_equal(m->wire.cmd, HOP_CMD_OK);
    raw_msg_destroy(&m);
    assert_int_equal(raw_exchange_declare(a, "xb", NULL, false, false, true), HOP_CODE_NOT_FOUND);
    // Deleting what is not there: 404.
    assert_int_equal(raw_queue_delete(a, "never", false, false), HOP_CODE_NOT_FOUND);

    // A plain delete reports how many messages went with the queue.
    assert_int_equal(raw_queue_declare(a, "three", false, false, false, false), 0);
    for (int i = 0; i < 3; i++)
        s_publish(a, "", "three", "x");
    enc = raw_begin(a, HOP_CMD_QUEUE_DELETE);
    hop_enc_cstr(enc, "queue", "three");
    m = raw_call(a);
    assert_int_equal(m->wire.cmd, HOP_CMD_OK);
    assert_int_equal(m->wire.messages, 3);
    raw_msg_destroy(&m);
}

static void
test_purge_drops_ready_not_unacked(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "p", false, false, false, false), 0);
    for (int i = 0; i < 5; i++)
        s_publish(a, "", "p", "x");
    raw_msg_t *m = s_get(a, "p", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    uint64_t tag = m->wire.tag;
    raw_msg_destroy(&m);
    hop_enc_t *enc = raw_begin(a, HOP_CMD_QUEUE_PURGE);
    hop_enc_cstr(enc, "queue", "p");
    m = raw_call(a);
    assert_int_equal(m->wire.cmd, HOP_CMD_OK);
    assert_int_equal(m->wire.messages, 4);
    raw_msg_destroy(&m);
    assert_int_equal(s_qstat(a, "p", "messages_ready"), 0);
    assert_int_equal(s_qstat(a, "p", "messages_unacked"), 1);
    raw_nack(a, tag, false, true);
    assert_int_equal(s_qstat(a, "p", "messages_ready"), 1);
}

// ---------------------------------------------------------------------------------------
// Getting, acking, requeueing

static void
test_get_and_get_empty(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "g", false, false, false, false), 0);
    raw_msg_t *m = s_get(a, "g", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_EMPTY);
    assert_int_equal(m->wire.id, raw_last_id(a));
    raw_msg_destroy(&m);

    s_publish(a, "", "g", "first");
    s_publish(a, "", "g", "second");
    m = s_get(a, "g", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    assert_int_equal(m->wire.id, raw_last_id(a));
    assert_true(raw_body_is(m, "first"));
    assert_int_equal(m->wire.messages, 1);
    assert_false(m->wire.redelivered);
    assert_int_equal(m->wire.count, 1);
    uint64_t tag = m->wire.tag;
    raw_msg_destroy(&m);
    assert_int_equal(s_qstat(a, "g", "messages_unacked"), 1);

    // no_ack: settled as it is sent.
    m = s_get(a, "g", true);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    assert_true(raw_body_is(m, "second"));
    assert_int_equal(m->wire.messages, 0);
    assert_true(m->wire.tag > tag);
    raw_msg_destroy(&m);
    assert_int_equal(s_qstat(a, "g", "messages_unacked"), 1);
    assert_int_equal(s_qstat(a, "g", "messages_ready"), 0);

    // An unacked get returns to the queue when rejected with requeue.
    hop_enc_t *enc = raw_begin_noid(a, HOP_CMD_REJECT);
    hop_enc_uint(enc, "tag", tag);
    raw_send_enc(a, NULL, 0);
    m = s_get(a, "g", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    assert_true(raw_body_is(m, "first"));
    assert_true(m->wire.redelivered);
    assert_int_equal(m->wire.count, 2);
    raw_ack(a, m->wire.tag, false);
    raw_msg_destroy(&m);
    m = s_get(a, "g", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_EMPTY);
    raw_msg_destroy(&m);
    // get of a missing queue
    m = s_get(a, "missing", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_ERROR);
    assert_int_equal(m->wire.code, HOP_CODE_NOT_FOUND);
    raw_msg_destroy(&m);
    s_expect_no_error(a);
}

static void
test_ack_unknown_tag_406(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_ack(a, 4242, false);
    s_expect_error(a, HOP_CODE_PRECONDITION_FAILED);
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
    s_publish(a, "", "acks", "x");
    m = s_get(a, "acks", false);
    uint64_t tag = m->wire.tag;
    raw_msg_destroy(&m);
    raw_ack(a, tag, false);
    s_expect_no_error(a);
    raw_ack(a, tag, false);
    s_expect_error(a, HOP_CODE_PRECONDITION_FAILED);
    // Another connection's tag is unknown here.
    s_publish(a, "", "acks", "y");
    s_sync(a);
    m = s_get(fx->b, "acks", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    uint64_t btag = m->wire.tag;
    raw_msg_destroy(&m);
    raw_ack(a, btag + 1000, false);
    s_expect_error(a, HOP_CODE_PRECONDITION_FAILED);
    assert_int_equal(s_qstat(a, "acks", "messages_unacked"), 1);
    raw_ack(fx->b, btag, false);
    s_expect_no_error(fx->b);
    assert_int_equal(s_qstat(a, "acks", "acked"), 2);
}

static void
test_nack_requeue_redelivers_with_count(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "n", false, false, false, false), 0);
    assert_int_equal(raw_consume(a, "n", NULL, 1, false, NULL, 0), 0);
    s_publish(fx->b, "", "n", "again");
    uint64_t t1 = s_expect_deliver(a, "again", false, 1);
    raw_nack(a, t1, false, true);
    uint64_t t2 = s_expect_deliver(a, "again", true, 2);
    assert_true(t2 > t1);
    raw_nack(a, t2, false, true);
    uint64_t t3 = s_expect_deliver(a, "again", true, 3);
    raw_ack(a, t3, false);
    s_expect_no_error(a);
    assert_int_equal(s_qstat(a, "n", "messages"), 0);
    assert_int_equal(s_qstat(a, "n", "acked"), 1);

    // requeue:false drops it.
    s_publish(fx->b, "", "n", "drop-me");
    uint64_t t4 = s_expect_deliver(a, "drop-me", false, 1);
    raw_nack(a, t4, false, false);
    s_expect_no_delivery(a);
    assert_int_equal(s_qstat(a, "n", "messages"), 0);
    // The late ack of a requeued tag is unknown.
    raw_ack(a, t1, false);
    s_expect_error(a, HOP_CODE_PRECONDITION_FAILED);
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
        s_publish(a, "", "order", body);
    }
    uint64_t tags[3];
    for (int i = 0; i < 3; i++) {
        raw_msg_t *m = s_get(a, "order", false);
        assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
        tags[i] = m->wire.tag;
        raw_msg_destroy(&m);
    }
    raw_nack(a, tags[2], true, true);
    char got[256];
    // Requeued messages go ahead of those never delivered, in their original order.
    assert_string_equal(s_drain(a, "order", got, sizeof got), "m0,m1,m2,m3,m4,m5");
}

static void
test_multiple_ack(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "multi", false, false, false, false), 0);
    assert_int_equal(raw_consume(a, "multi", NULL, 0, false, NULL, 0), 0);
    for (int i = 0; i < 5; i++)
        s_publish(fx->b, "", "multi", "x");
    uint64_t tags[5];
    for (int i = 0; i < 5; i++)
        tags[i] = s_expect_deliver(a, "x", false, 1);
    for (int i = 1; i < 5; i++)
        assert_true(tags[i] > tags[i - 1]);
    raw_ack(a, tags[2], true);
    assert_int_equal(s_qstat(a, "multi", "messages_unacked"), 2);
    assert_int_equal(s_qstat(a, "multi", "acked"), 3);
    raw_ack(a, tags[4], true);
    assert_int_equal(s_qstat(a, "multi", "messages_unacked"), 0);
    assert_int_equal(s_qstat(a, "multi", "acked"), 5);
    s_expect_no_error(a);
    // Nothing left up to that tag.
    raw_ack(a, tags[4], true);
    s_expect_error(a, HOP_CODE_PRECONDITION_FAILED);
}

static void
test_prefetch_bounds_unacked(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "pf", false, false, false, false), 0);
    assert_int_equal(raw_consume(a, "pf", "pf", 2, false, NULL, 0), 0);
    for (int i = 0; i < 5; i++)
        s_publish(fx->b, "", "pf", "x");
    s_sync(fx->b);
    s_sync(a);
    assert_int_equal(raw_pending(a, HOP_CMD_DELIVER), 2);
    assert_int_equal(s_qstat(a, "pf", "messages_ready"), 3);
    assert_int_equal(s_qstat(a, "pf", "messages_unacked"), 2);
    uint64_t t = s_expect_deliver(a, "x", false, 1);
    raw_ack(a, t, false);
    s_sync(a);
    assert_int_equal(raw_pending(a, HOP_CMD_DELIVER), 2);
    assert_int_equal(s_qstat(a, "pf", "messages_ready"), 2);
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
        s_publish(a, "", "rr", "x");
    s_sync(a);
    s_sync(b);
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
    s_call_error(a, HOP_CODE_ACCESS_REFUSED);
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
    assert_true(s_queue_exists(a, "auto"));
    assert_int_equal(raw_consume(a, "auto", "c1", 0, false, NULL, 0), 0);
    assert_int_equal(raw_consume(fx->b, "auto", "c2", 0, false, NULL, 0), 0);
    assert_int_equal(raw_cancel(a, "c1"), 0);
    assert_true(s_queue_exists(a, "auto"));
    assert_int_equal(raw_cancel(fx->b, "c2"), 0);
    assert_false(s_queue_exists(a, "auto"));
    // The client that cancelled is not told 'cancelled' for its own cancel.
    s_sync(fx->b);
    assert_int_equal(raw_pending(fx->b, HOP_CMD_CANCELLED), 0);
}

static void
test_exclusive_queue_removed_when_connection_closes(void **state)
{
    fx_t *fx = *state;
    raw_t *c = s_connect(fx, HB_LONG, "owner");
    assert_int_equal(raw_queue_declare(c, "excl", false, true, false, false), 0);
    s_publish(c, "", "excl", "x");
    raw_begin(c, HOP_CMD_CLOSE);
    raw_msg_t *m = raw_call(c);
    assert_non_null(m);
    assert_int_equal(m->wire.cmd, HOP_CMD_CLOSE_OK);
    raw_msg_destroy(&m);
    assert_false(s_queue_exists(fx->a, "excl"));
    raw_destroy(&c);
}

static bool
s_queue_gone(void *arg)
{
    return !s_queue_exists(arg, "silent-excl");
}

static void
test_exclusive_queue_removed_when_connection_dies(void **state)
{
    fx_t *fx = *state;
    raw_t *c = s_connect(fx, HB_SHORT, "silent-owner");
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
    s_publish(b, "", "doomed", "held");
    uint64_t tag = s_expect_deliver(a, "held", false, 1);
    s_publish(b, "", "doomed", "ready");
    raw_msg_t *m = s_deliver(a);
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
    s_sync(a);
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
    s_publish(b, "", "cq", "one");
    s_publish(b, "", "cq", "two");
    uint64_t t1 = s_expect_deliver(a, "one", false, 1);
    s_expect_deliver(a, "two", false, 1);
    assert_int_equal(raw_cancel(a, "first"), 0);
    assert_int_equal(s_qstat(a, "cq", "messages_ready"), 2);
    raw_ack(a, t1, false);
    s_expect_error(a, HOP_CODE_PRECONDITION_FAILED);
    assert_int_equal(raw_consume(b, "cq", NULL, 0, false, NULL, 0), 0);
    raw_ack(b, s_expect_deliver(b, "one", true, 2), false);
    raw_ack(b, s_expect_deliver(b, "two", true, 2), false);
    s_expect_no_error(b);
}

static void
test_close_returns_unacked_to_queue(void **state)
{
    fx_t *fx = *state;
    raw_t *c = s_connect(fx, HB_LONG, "closer");
    assert_int_equal(raw_queue_declare(fx->a, "close-q", false, false, false, false), 0);
    assert_int_equal(raw_consume(c, "close-q", NULL, 0, false, NULL, 0), 0);
    s_publish(fx->a, "", "close-q", "held");
    s_expect_deliver(c, "held", false, 1);
    raw_begin(c, HOP_CMD_CLOSE);
    raw_msg_t *m = raw_call(c);
    assert_int_equal(m->wire.cmd, HOP_CMD_CLOSE_OK);
    raw_msg_destroy(&m);
    raw_destroy(&c);
    assert_int_equal(raw_consume(fx->b, "close-q", NULL, 0, false, NULL, 0), 0);
    raw_ack(fx->b, s_expect_deliver(fx->b, "held", true, 2), false);
    s_expect_no_error(fx->b);
}

static void
test_silent_consumer_declared_dead_and_messages_redelivered(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    // A heartbeat long enough that dying is sure to get its deliveries before it is declared
    // dead, short enough to keep the test quick.
    raw_t *dying = s_connect(fx, 400, "dying");
    assert_int_equal(raw_queue_declare(a, "work", false, false, false, false), 0);
    assert_int_equal(raw_consume(dying, "work", NULL, 3, false, NULL, 0), 0);
    for (int i = 0; i < 5; i++) {
        char body[8];
        snprintf(body, sizeof body, "w%d", i);
        s_publish(a, "", "work", body);
    }
    for (int i = 0; i < 3; i++) {
        char body[8];
        snprintf(body, sizeof body, "w%d", i);
        s_expect_deliver(dying, body, false, 1);
    }
    // dying now says nothing more; a second consumer gets the rest at once and, once the broker
    // has declared dying dead, the three it held, flagged as redelivered.
    assert_int_equal(raw_consume(a, "work", NULL, 0, false, NULL, 0), 0);
    raw_ack(a, s_expect_deliver(a, "w3", false, 1), false);
    raw_ack(a, s_expect_deliver(a, "w4", false, 1), false);
    for (int i = 0; i < 3; i++) {
        char body[8];
        snprintf(body, sizeof body, "w%d", i);
        raw_ack(a, s_expect_deliver(a, body, true, 2), false);
    }
    s_expect_no_error(a);
    assert_int_equal(s_qstat(a, "work", "acked"), 5);
    assert_int_equal(s_qstat(a, "work", "consumers"), 1);
    raw_destroy(&dying);
}

// ---------------------------------------------------------------------------------------
// Naming, properties, inspection

static void
test_server_named_queue(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    hop_enc_t *enc = raw_begin(a, HOP_CMD_QUEUE_DECLARE);
    hop_enc_cstr(enc, "queue", "");
    hop_enc_bool(enc, "exclusive", true);
    raw_msg_t *m = raw_call(a);
    assert_int_equal(m->wire.cmd, HOP_CMD_QUEUE_OK);
    char name[256];
    raw_str(m->wire.queue, name, sizeof name);
    raw_msg_destroy(&m);
    assert_true(strncmp(name, "amq.gen-", 8) == 0);
    // Reachable by its name, passive works on amq. names.
    assert_true(s_queue_exists(a, name));
    s_publish(a, "", name, "to-generated");
    char got[64];
    assert_string_equal(s_drain(a, name, got, sizeof got), "to-generated");
    // Two server-named queues differ.
    enc = raw_begin(a, HOP_CMD_QUEUE_DECLARE);
    hop_enc_cstr(enc, "queue", "");
    m = raw_call(a);
    char other[256];
    raw_str(m->wire.queue, other, sizeof other);
    raw_msg_destroy(&m);
    assert_string_not_equal(name, other);
}

static void
test_props_pass_through_byte_for_byte(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a, *b = fx->b;
    assert_int_equal(raw_queue_declare(a, "props", false, false, false, false), 0);
    assert_int_equal(raw_consume(b, "props", NULL, 0, true, NULL, 0), 0);
    // props as a hand-packed map with odd but valid content.
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    s_pk_cstr(&pk, "content_type");
    s_pk_cstr(&pk, "text/plain");
    s_pk_cstr(&pk, "timestamp");
    msgpack_pack_uint64(&pk, 1700000000123ull);
    s_pk_cstr(&pk, "headers");
    msgpack_pack_map(&pk, 2);
    s_pk_cstr(&pk, "n");
    msgpack_pack_int(&pk, -7);
    s_pk_cstr(&pk, "f");
    msgpack_pack_double(&pk, 2.5);
    s_pk_cstr(&pk, "x-custom");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_true(&pk);
    msgpack_pack_nil(&pk);
    hop_enc_t *enc = raw_begin_noid(a, HOP_CMD_PUBLISH);
    hop_enc_cstr(enc, "exchange", "");
    hop_enc_cstr(enc, "key", "props");
    hop_enc_raw(enc, "props", sb.data, sb.size);
    static const char body[] = "\x00\x01binary\xff body";
    raw_send_enc(a, body, sizeof body);
    // And one without a body frame at all: an empty body.
    enc = raw_begin_noid(a, HOP_CMD_PUBLISH);
    hop_enc_cstr(enc, "exchange", "");
    hop_enc_cstr(enc, "key", "props");
    raw_send_enc(a, NULL, 0);

    raw_msg_t *m = s_deliver(b);
    assert_true(m->wire.has & HOP_F_PROPS);
    assert_int_equal(m->wire.props.len, sb.size);
    assert_memory_equal(m->wire.props.ptr, sb.data, sb.size);
    assert_true(m->has_body);
    assert_int_equal(zmq_msg_size(&m->body), sizeof body);
    assert_memory_equal(zmq_msg_data(&m->body), body, sizeof body);
    raw_msg_destroy(&m);
    m = s_deliver(b);
    assert_false(m->wire.has & HOP_F_PROPS);
    assert_int_equal(m->has_body ? zmq_msg_size(&m->body) : 0, 0);
    raw_msg_destroy(&m);
    msgpack_sbuffer_destroy(&sb);
}

static bool
s_items_have(const raw_msg_t *list, const char *const *keys)
{
    hop_mp_t mp;
    hop_mp_init(&mp, list->wire.items.ptr, list->wire.items.len);
    uint32_t count;
    if (hop_mp_array(&mp, &count) || count == 0)
        return false;
    const uint8_t *start = mp.p;
    if (hop_mp_skip(&mp))
        return false;
    for (; *keys; keys++) {
        hop_mp_t v;
        if (!harness_map_find(start, (size_t)(mp.p - start), *keys, &v)) {
            fprintf(stderr, "list item has no key '%s'\n", *keys);
            return false;
        }
    }
    return true;
}

static void
test_list_and_status(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a, *b = fx->b;
    assert_int_equal(raw_exchange_declare(a, "lx", "topic", false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "lq", false, false, false, false), 0);
    assert_int_equal(raw_bind(a, "lq", "lx", "a.#"), 0);
    assert_int_equal(raw_consume(b, "lq", "lc", 1, false, NULL, 0), 0);
    for (int i = 0; i < 3; i++)
        s_publish(a, "lx", "a.b", "x");
    s_sync(a);

    static const char *const queue_keys[] = {
        "name",     "durable",   "exclusive", "auto_delete", "messages_ready", "messages_unacked",
        "messages", "consumers", "published", "delivered",   "acked",          NULL};
    static const char *const exchange_keys[] = {
        "name", "type", "durable", "auto_delete", "bindings", "published", "unroutable", NULL};
    static const char *const binding_keys[] = {"exchange", "queue", "key", NULL};
    static const char *const consumer_keys[] = {"queue",    "consumer",  "connection",
                                                "prefetch", "no_ack",    "exclusive",
                                                "unacked",  "delivered", NULL};
    static const char *const connection_keys[] = {"connection", "name",         "peer",
                                                  "heartbeat",  "last_seen_ms", "consumers",
                                                  "unacked",    "connected_ms", NULL};
    struct {
        const char *what;
        const char *const *keys;
    } subjects[] = {{"queues", queue_keys},
                    {"exchanges", exchange_keys},
                    {"bindings", binding_keys},
                    {"consumers", consumer_keys},
                    {"connections", connection_keys}};
    for (size_t i = 0; i < sizeof subjects / sizeof subjects[0]; i++) {
        raw_msg_t *list = raw_list(a, subjects[i].what);
        assert_non_null(list);
        assert_int_equal(list->wire.id, raw_last_id(a));
        if (!s_items_have(list, subjects[i].keys))
            fail_msg("list %s lacks keys", subjects[i].what);
        raw_msg_destroy(&list);
    }
    assert_int_equal(s_qstat(a, "lq", "messages_ready"), 2);
    assert_int_equal(s_qstat(a, "lq", "messages_unacked"), 1);
    assert_int_equal(s_qstat(a, "lq", "messages"), 3);
    assert_int_equal(s_qstat(a, "lq", "consumers"), 1);
    assert_int_equal(s_qstat(a, "lq", "published"), 3);
    assert_int_equal(s_qstat(a, "lq", "delivered"), 1);
    raw_msg_t *list = raw_list(a, "consumers");
    uint64_t unacked = 0, prefetch = 0;
    assert_true(harness_items_uint(list->wire.items.ptr, list->wire.items.len, "consumer", "lc",
                                   "unacked", &unacked));
    assert_true(harness_items_uint(list->wire.items.ptr, list->wire.items.len, "consumer", "lc",
                                   "prefetch", &prefetch));
    assert_int_equal(unacked, 1);
    assert_int_equal(prefetch, 1);
    raw_msg_destroy(&list);
    list = raw_list(a, "bindings");
    const void *item;
    size_t item_size;
    assert_true(harness_items_find(list->wire.items.ptr, list->wire.items.len, "queue", "lq", &item,
                                   &item_size));
    char key[64];
    assert_true(harness_map_str(item, item_size, "key", key, sizeof key));
    assert_string_equal(key, "a.#");
    raw_msg_destroy(&list);

    raw_msg_t *status = raw_status(a);
    assert_non_null(status);
    const void *map = zmq_msg_data(&status->header);
    size_t size = zmq_msg_size(&status->header);
    static const char *const status_keys[] = {
        "version",        "uptime_ms",        "endpoint",  "data_dir",
        "connections",    "consumers",        "queues",    "exchanges",
        "messages_ready", "messages_unacked", "published", "delivered",
        "acked",          "unroutable",       "rss_bytes", NULL};
    for (const char *const *k = status_keys; *k; k++) {
        hop_mp_t v;
        if (!harness_map_find(map, size, *k, &v))
            fail_msg("status lacks '%s'", *k);
    }
    char endpoint[256];
    assert_true(harness_map_str(map, size, "endpoint", endpoint, sizeof endpoint));
    assert_string_equal(endpoint, harness_broker_endpoint(fx->broker));
    uint64_t connections = 0, ready = 0;
    assert_true(harness_map_uint(map, size, "connections", &connections));
    assert_true(harness_map_uint(map, size, "messages_ready", &ready));
    assert_int_equal(connections, 2);
    assert_int_equal(ready, 2);
    raw_msg_destroy(&status);
}

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
    s_publish(a, "", name, "long name");
    raw_msg_t *m = s_get(a, name, true);
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
    assert_int_equal(s_expect_error(a, HOP_CODE_CONTENT_TOO_LARGE), id);
    m = s_get(a, "sized", true);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    assert_int_equal(zmq_msg_size(&m->body), SMALL_MAX);
    raw_msg_destroy(&m);
    m = s_get(a, "sized", true);
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
    s_expect_error(c, HOP_CODE_UNEXPECTED_FRAME);
    raw_destroy(&c);
    // A known peer's heartbeat gets no answer.
    raw_heartbeat(fx->a);
    s_sync(fx->a);
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
    s_sync(a);
    raw_msg_t *m = raw_reply(a, id, 0);
    assert_null(m);
    assert_int_equal(s_qstat(a, "quiet", "messages"), 1);
}

static void
test_delivery_tags_are_per_connection_and_increasing(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "t1", false, false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "t2", false, false, false, false), 0);
    for (int i = 0; i < 3; i++) {
        s_publish(a, "", "t1", "x");
        s_publish(a, "", "t2", "y");
    }
    assert_int_equal(raw_consume(a, "t1", "c1", 0, false, NULL, 0), 0);
    assert_int_equal(raw_consume(a, "t2", "c2", 0, true, NULL, 0), 0); // no-ack uses tags too
    s_sync(a);
    raw_msg_t *m = s_get(a, "t1", false);
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
    s_expect_no_error(a);
    assert_int_equal(s_qstat(a, "t1", "messages"), 0);
    assert_int_equal(s_qstat(a, "t1", "acked"), 3);
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
            c[i] = s_connect(fx, HB_SHORT, "churn");
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
    assert_int_equal(s_qstat(fx->a, "shared", "consumers"), 0);
}

// Unacked messages whose queue, consumer or connection goes away in every order: the broker
// must stay up and exit cleanly (under ASan: no use after free, no leak).
static void
test_unacked_messages_outlive_their_queue_consumer_or_connection(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    for (int round = 0; round < 4; round++) {
        raw_t *c = s_connect(fx, HB_LONG, "lifecycle");
        bool exclusive = round == 1, auto_delete = round == 2;
        assert_int_equal(raw_queue_declare(c, "life", false, exclusive, auto_delete, false), 0);
        assert_int_equal(raw_queue_declare(c, "life2", false, false, false, false), 0);
        for (int i = 0; i < 4; i++) {
            s_publish(c, "", "life", "l");
            s_publish(c, "", "life2", "m");
        }
        assert_int_equal(raw_consume(c, "life", "k", 2, false, NULL, 0), 0);
        raw_msg_t *g = s_get(c, "life2", false); // a get holds one too
        assert_int_equal(g->wire.cmd, HOP_CMD_GET_OK);
        uint64_t get_tag = g->wire.tag;
        raw_msg_destroy(&g);
        uint64_t t1 = s_expect_deliver(c, "l", false, 1);
        s_expect_deliver(c, "l", false, 1);
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
        s_sync(c);
        raw_begin(c, HOP_CMD_CLOSE);
        raw_msg_t *m = raw_call(c);
        assert_non_null(m);
        assert_int_equal(m->wire.cmd, HOP_CMD_CLOSE_OK);
        raw_msg_destroy(&m);
        raw_destroy(&c);
        if (round != 0 && s_queue_exists(a, "life"))
            assert_int_equal(raw_queue_delete(a, "life", false, false), 0);
        if (s_queue_exists(a, "life2"))
            assert_int_equal(raw_queue_delete(a, "life2", false, false), 0);
        assert_false(s_queue_exists(a, "life"));
    }
    assert_true(harness_broker_alive(fx->broker));
}

static uint64_t
s_status_uint(raw_t *c, const char *key)
{
    raw_msg_t *status = raw_status(c);
    assert_non_null(status);
    uint64_t value = 0;
    if (!harness_map_uint(zmq_msg_data(&status->header), zmq_msg_size(&status->header), key,
                          &value))
        fail_msg("status lacks '%s'", key);
    raw_msg_destroy(&status);
    return value;
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
        s_publish(a, "", "ackstat", "x");
    uint64_t tags[3];
    for (int i = 0; i < 3; i++) {
        raw_msg_t *m = s_get(a, "ackstat", false);
        assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
        tags[i] = m->wire.tag;
        raw_msg_destroy(&m);
    }
    raw_msg_t *m = s_get(a, "ackstat", true); // no-ack
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    raw_msg_destroy(&m);
    raw_ack(a, tags[0], false);
    raw_nack(a, tags[1], false, false);
    hop_enc_t *enc = raw_begin_noid(a, HOP_CMD_REJECT);
    hop_enc_uint(enc, "tag", tags[2]);
    hop_enc_bool(enc, "requeue", false);
    raw_send_enc(a, NULL, 0);
    s_expect_no_error(a);
    assert_int_equal(s_qstat(a, "ackstat", "messages"), 0);
    assert_int_equal(s_status_uint(a, "acked"), 1);
    assert_int_equal(s_qstat(a, "ackstat", "acked"), 1);
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
    s_pk_cstr(&pk, "id");
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
        cmocka_unit_test_setup_teardown(test_hello_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_version_mismatch_540, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_before_hello_505, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_frames_get_errors_while_others_work,
                                        setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_direct_exchange_exact_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fanout_exchange_two_queues, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topic_exchange_wildcards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_exchange_routes_by_queue_name, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_redeclare_with_other_properties_406, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passive_declare_of_missing_404, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exclusive_queue_used_by_another_connection_405, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_delete_if_empty_if_unused_406, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_drops_ready_not_unacked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_and_get_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_unknown_tag_406, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nack_requeue_redelivers_with_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nack_multiple_requeues_in_order_at_head, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_multiple_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefetch_bounds_unacked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_robin_between_consumers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consumer_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auto_delete_queue_removed_after_last_cancel, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_exclusive_queue_removed_when_connection_closes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_exclusive_queue_removed_when_connection_dies, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_consumer_on_deleted_queue_gets_cancelled, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancel_returns_unacked_to_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_returns_unacked_to_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_consumer_declared_dead_and_messages_redelivered,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_named_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_props_pass_through_byte_for_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_and_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits_are_inclusive, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_is_clamped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_from_unknown_peer_gets_505, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_with_id_has_no_reply_on_success, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_delivery_tags_are_per_connection_and_increasing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_auto_delete_exchange_and_bindings_of_deleted_queues,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_connections_come_and_go, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_unacked_messages_outlive_their_queue_consumer_or_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_acked_counts_only_acks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_ok_decodes_with_the_codec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_without_cmd_is_a_syntax_error, setup, teardown),
    };
    return cmocka_run_group_tests_name("integration.protocol", tests, NULL, NULL);
}
