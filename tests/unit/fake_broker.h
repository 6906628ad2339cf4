// tests/unit/fake_broker.h - a scripted fake broker for the libhopper unit tests: a ROUTER
// socket on a thread of the test, speaking just enough of the protocol to drive the client.
//
// It answers hello, declares (the queue name picks an error or a batch), publish to exchange
// "nope" (an asynchronous 404) and to exchange "c" (confirms and returns, see s_fake_confirm in
// fake_broker.c), consume, get and close; sends heartbeats unless silent. It unpacks the
// client's batches, keeps the last header of each command for the tests to decode, and checks
// the order of a burst (see test_burst_is_sent_in_batches_in_order).
//
// Use fb_setup and fb_teardown as a cmocka test's setup and teardown: the test's state is then
// the fb_broker_t. The struct is open: tests read its counters and kept headers, and set
// silent, paused, deaf and max_message to change how it behaves.
#ifndef HOP_TESTS_FAKE_BROKER_H
#define HOP_TESTS_FAKE_BROKER_H

#include "client_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FB_BURST     3000    // messages in the burst test
#define FB_BURST_TAG 1000000 // acks of the burst carry FB_BURST_TAG + their sequence number
#define FB_PUBS      256     // publishes to exchange "c" kept

typedef struct {
    void *ctx;
    void *router;
    char endpoint[64];
    pthread_t thread;
    atomic_bool stop;
    atomic_bool silent; // answer nothing, send nothing
    atomic_bool paused; // read nothing, send nothing
    atomic_bool deaf;   // read nothing, send heartbeats (a broker too busy to read)
    atomic_int hellos;
    atomic_int heartbeats;
    atomic_int closes;
    char name[64];        // the client name of the last hello
    bool hello_batch;     // the last hello said batch:true
    uint64_t max_message; // for hello-ok (set before connecting)
    // The burst: publishes to exchange "burst" (sequence number in the body's first 4 bytes,
    // big-endian) and acks with tags from FB_BURST_TAG.
    atomic_int seen;         // burst messages seen
    atomic_int out_of_order; // ... whose sequence number was not the next one
    atomic_int batches;      // batches received
    uint8_t how[FB_BURST];   // per sequence number: 1 alone, 2 in a batch
    uint32_t body_size[FB_BURST];
    // Headers as the client sent them: the last of each command (counted once stored), and
    // each publish to exchange "c" with whether it came in a batch.
    atomic_int count[HOP_CMD_COUNT_];
    uint8_t last[HOP_CMD_COUNT_][1024];
    size_t last_size[HOP_CMD_COUNT_];
    atomic_int pubs;
    uint8_t pub_head[FB_PUBS][256];
    size_t pub_size[FB_PUBS];
    bool pub_batched[FB_PUBS];
} fb_broker_t;

// {cmd:"heartbeat"} as a fixmap, the body of the message in queue "hb": as a body it must reach
// the user untouched.
extern const char fb_heartbeat_bytes[];

// cmocka fixtures: start a fake broker on a free port (*state becomes its fb_broker_t), and
// stop and free it. fb_setup returns -1 when it cannot bind.
#define FB_FLOOD 20000 // deliveries a publish to exchange "c" with key "flood" gets

int fb_setup(void **state);
int fb_teardown(void **state);

// Returns a client named "unit" with a 1000 ms timeout, connected to fake (asserts it is).
hop_client_t *fb_connect(fb_broker_t *fake);

// Decodes publish i to exchange "c" as the fake broker received it (asserts there is one).
void fb_pub(fb_broker_t *fake, int i, hop_wire_t *wire);

// Decodes the last header of cmd the fake broker received, once it has seen at least n (asserts
// it does within 5 s).
void fb_last(fb_broker_t *fake, hop_cmd_t cmd, int n, hop_wire_t *wire);

// Encodes the death array of get "dead" and of the parsing tests into enc: two records, newest
// first, with an entry that is not a map between them.
void fb_enc_deaths(hop_enc_t *enc);

// Returns whether str is exactly value.
bool fb_wire_is(hop_str_t str, const char *value);

void fb_sleep_ms(int ms);

// Waits up to deadline_ms for *counter to reach at least want; returns whether it did.
bool fb_wait_for(atomic_int *counter, int want, int deadline_ms);

#endif
