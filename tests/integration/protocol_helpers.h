// tests/integration/protocol_helpers.h - what the raw-protocol tests share (test_protocol.c,
// test_protocol_*.c): a fixture with a broker and two connections that said hello, and small
// helpers to sync, publish, and check deliveries, errors and queue counters. The helpers fail
// the running test with cmocka: main thread only.
//
// A round trip proves order: the broker handles one connection's messages in order and routes
// and dispatches a publish while handling it, so once a request sent after a publish is
// answered, every delivery of that publish has been sent.
#ifndef HOP_PROTOCOL_HELPERS_H_INCLUDED
#define HOP_PROTOCOL_HELPERS_H_INCLUDED

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "hopper.h"
#include "raw.h"

#include <msgpack.h>
#include <stdbool.h>

// The fixture (raw_fx_setup, raw_fx_setup_small, raw_fx_teardown) and the helpers to sync,
// publish, get, drain and check deliveries, errors and counters are raw.h's (raw_*); these are
// what only the protocol tests use.

#define WAIT_MS   RAW_TIMEOUT_MS // longest wait for any single event
#define HB_LONG   RAW_HB_LONG    // heartbeat of test connections that must never time out
#define HB_SHORT  100            // heartbeat of connections that are meant to go silent and die
#define SMALL_MAX RAW_SMALL_MAX  // --max-message of the broker started by raw_fx_setup_small

typedef raw_fx_t fx_t;

// One more connection to fx's broker that said hello with heartbeat (ms) and name.
raw_t *px_connect(fx_t *fx, uint64_t heartbeat, const char *name);

// Waits for an error message on c and checks its code; returns its id.
uint64_t px_expect_error(raw_t *c, int code);
// Sends the request being built on c; expects an error with code and the request's id.
void px_call_error(raw_t *c, int code);
// Whether queue exists (a passive declare).
bool px_queue_exists(raw_t *c, const char *queue);

// Packs a NUL-terminated string, for frames built by hand.
void px_pk_cstr(msgpack_packer *pk, const char *s);

#endif
