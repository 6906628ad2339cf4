// tests/integration/sdk_helpers.h - what the SDK-driven integration tests share: a fixture with
// a broker and up to MAX_CLIENTS clients (destroyed at teardown), CHECK, and small helpers to
// publish, receive, sync and read list replies. cmocka asserts: main thread only.
#ifndef HOP_SDK_HELPERS_H_INCLUDED
#define HOP_SDK_HELPERS_H_INCLUDED

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "hopper.h"

#include <stdbool.h>

#define WAIT_MS     20000 // longest wait for any single event
#define MAX_CLIENTS 16
#define VOLUME      10000 // messages in the fan-out and work-queue tests

typedef struct {
    harness_broker_t *broker;
    hop_client_t *clients[MAX_CLIENTS];
} fx_t;

#define CHECK(client, expr)                                                                        \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != HOP_OK)                                                                         \
            fail_msg("%s -> %d (%s): %s", #expr, rc_, hop_strerror(rc_),                           \
                     hop_client_error(client));                                                    \
    } while (0)

// Fixture: a broker started with default options.
int sx_setup(void **state);
// The same with options (a setup function of the test calls it).
int sx_start(void **state, const harness_opts_t *opts);
int sx_teardown(void **state);
// A connected client named name (heartbeat_ms 0: the broker's), destroyed at teardown.
hop_client_t *sx_client(fx_t *fx, const char *name, int heartbeat_ms);
// The body as a decimal number, or -1.
long sx_body_seq(const hop_delivery_t *d);
bool sx_body_is(const hop_delivery_t *d, const char *text);
void sx_publish_text(hop_client_t *c, const char *exchange, const char *key, const char *text);
// The next delivery (fails the test after WAIT_MS).
hop_delivery_t *sx_receive(hop_client_t *c);
void sx_expect_body(hop_client_t *c, const char *text);
// A round trip: the broker handled everything c sent before, and c buffered everything the
// broker sent it before the reply.
void sx_sync(hop_client_t *c);
// Nothing more is delivered to c (after a sync).
void sx_expect_nothing(hop_client_t *c);
// A uint field of the list item whose key equals value.
bool sx_list_uint(hop_client_t *c, const char *what, const char *key, const char *value,
                  const char *field, uint64_t *out);
// A uint field of queue in list queues (fails the test when absent).
uint64_t sx_queue_stat(hop_client_t *c, const char *queue, const char *field);

#endif
