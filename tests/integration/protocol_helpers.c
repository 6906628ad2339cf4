// tests/integration/protocol_helpers.c - what the raw-protocol tests share (see
// protocol_helpers.h).
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "protocol_helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// Fixture

raw_t *
px_connect(fx_t *fx, uint64_t heartbeat, const char *name)
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

int
px_setup(void **state)
{
    return s_setup_with(state, NULL);
}

int
px_setup_small(void **state)
{
    harness_opts_t opts = {.max_message = SMALL_MAX};
    return s_setup_with(state, &opts);
}

int
px_teardown(void **state)
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
void
px_sync(raw_t *c)
{
    assert_int_equal(raw_exchange_declare(c, "amq.direct", NULL, false, false, true), 0);
}

raw_msg_t *
px_deliver(raw_t *c)
{
    raw_msg_t *m = raw_next(c, HOP_CMD_DELIVER, WAIT_MS);
    if (!m)
        fail_msg("no delivery within %d ms", WAIT_MS);
    return m;
}

// Waits for a delivery with body text and checks its flags; returns its tag.
uint64_t
px_expect_deliver(raw_t *c, const char *text, bool redelivered, uint64_t count)
{
    raw_msg_t *m = px_deliver(c);
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
uint64_t
px_expect_error(raw_t *c, int code)
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
void
px_call_error(raw_t *c, int code)
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

void
px_expect_no_delivery(raw_t *c)
{
    px_sync(c);
    assert_int_equal(raw_pending(c, HOP_CMD_DELIVER), 0);
}

void
px_expect_no_error(raw_t *c)
{
    px_sync(c);
    raw_msg_t *m = raw_pending(c, HOP_CMD_ERROR) ? raw_next(c, HOP_CMD_ERROR, 0) : NULL;
    if (m) {
        char text[512];
        fail_msg("unexpected error %d: %s", (int)m->wire.code,
                 raw_str(m->wire.text, text, sizeof text));
    }
}

uint64_t
px_qstat(raw_t *c, const char *queue, const char *field)
{
    uint64_t value = 0;
    if (!raw_queue_stat(c, queue, field, &value))
        fail_msg("queue '%s' not listed (or no field '%s')", queue, field);
    return value;
}

bool
px_queue_exists(raw_t *c, const char *queue)
{
    int code = raw_queue_declare(c, queue, false, false, false, true);
    assert_true(code == 0 || code == HOP_CODE_NOT_FOUND);
    return code == 0;
}

// get: returns the reply (get-ok, get-empty or error).
raw_msg_t *
px_get(raw_t *c, const char *queue, bool no_ack)
{
    hop_enc_t *enc = raw_begin(c, HOP_CMD_GET);
    hop_enc_cstr(enc, "queue", queue);
    hop_enc_bool(enc, "no_ack", no_ack);
    raw_msg_t *m = raw_call(c);
    assert_non_null(m);
    return m;
}

// Gets every ready message of queue (no-ack) and returns their bodies joined by ','.
char *
px_drain(raw_t *c, const char *queue, char *out, size_t size)
{
    out[0] = '\0';
    while (true) {
        raw_msg_t *m = px_get(c, queue, true);
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

void
px_publish(raw_t *c, const char *exchange, const char *key, const char *body)
{
    assert_int_equal(raw_publish(c, exchange, key, body, strlen(body)), 0);
}

// ---------------------------------------------------------------------------------------
// Building frames by hand

void
px_pk_cstr(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}
