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

#define WAIT_MS   10000 // longest wait for any single event
#define HB_LONG   60000 // heartbeat of test connections that must never time out
#define HB_SHORT  100   // heartbeat of connections that are meant to go silent and die
#define SMALL_MAX 1024  // --max-message of the broker started by px_setup_small

// Fixture: a broker and two connections that said hello (heartbeat HB_LONG).
typedef struct {
    harness_broker_t *broker;
    raw_t *a;
    raw_t *b;
} fx_t;

// A broker with default options.
int px_setup(void **state);
// A broker with --max-message SMALL_MAX.
int px_setup_small(void **state);
// Closes both connections; the broker must still be up and exit cleanly (under ASan: without
// leaks).
int px_teardown(void **state);
// One more connection to fx's broker that said hello with heartbeat (ms) and name.
raw_t *px_connect(fx_t *fx, uint64_t heartbeat, const char *name);

// A round trip on c: everything the broker sent c before it is then buffered.
void px_sync(raw_t *c);
// The next delivery (fails the test after WAIT_MS). Free with raw_msg_destroy.
raw_msg_t *px_deliver(raw_t *c);
// Waits for a delivery with body text and checks its flags; returns its tag.
uint64_t px_expect_deliver(raw_t *c, const char *text, bool redelivered, uint64_t count);
// Waits for an error message on c and checks its code; returns its id.
uint64_t px_expect_error(raw_t *c, int code);
// Sends the request being built on c; expects an error with code and the request's id.
void px_call_error(raw_t *c, int code);
// After a round trip, nothing is delivered to c / no error is waiting on c.
void px_expect_no_delivery(raw_t *c);
void px_expect_no_error(raw_t *c);
// A uint field of queue in list queues.
uint64_t px_qstat(raw_t *c, const char *queue, const char *field);
// Whether queue exists (a passive declare).
bool px_queue_exists(raw_t *c, const char *queue);
// get: returns the reply (get-ok, get-empty or error).
raw_msg_t *px_get(raw_t *c, const char *queue, bool no_ack);
// Gets every ready message of queue (no-ack) and returns their bodies joined by ','.
char *px_drain(raw_t *c, const char *queue, char *out, size_t size);
// Publishes a text body (no reply expected).
void px_publish(raw_t *c, const char *exchange, const char *key, const char *body);

// Packs a NUL-terminated string, for frames built by hand.
void px_pk_cstr(msgpack_packer *pk, const char *s);

#endif
