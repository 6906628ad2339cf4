// tests/integration/protocol_helpers.c - what the raw-protocol tests share (see
// protocol_helpers.h).
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "protocol_helpers.h"

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

// ---------------------------------------------------------------------------------------
// Helpers

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

bool
px_queue_exists(raw_t *c, const char *queue)
{
    int code = raw_queue_declare(c, queue, false, false, false, true);
    assert_true(code == 0 || code == HOP_CODE_NOT_FOUND);
    return code == 0;
}

// ---------------------------------------------------------------------------------------
// Building frames by hand

void
px_pk_cstr(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}
