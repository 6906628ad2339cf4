// tests/integration/guarantee_helpers.h - what the raw-protocol guarantee tests share
// (test_guarantees.c, test_guarantees_*.c): a fixture with a broker and two connections that
// said hello, and helpers to send requests, check what comes back, track publisher confirms
// and read death records. The helpers fail the running test with cmocka: main thread only.
//
// Determinism comes from round trips: the broker handles one connection's messages in order,
// so a reply proves what it did and sent before. What is about time is waited for with a
// deadline, and only lower bounds are asserted, never speed.
#ifndef HOP_GUARANTEE_HELPERS_H_INCLUDED
#define HOP_GUARANTEE_HELPERS_H_INCLUDED

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "hopper.h"
#include "raw.h"

#include <stdbool.h>

// The fixture (raw_fx_setup, raw_fx_setup_small, raw_fx_setup_batch, raw_fx_teardown) and the
// helpers to sync, publish (raw_publish_text), get, drain and check deliveries, errors and
// counters are raw.h's (raw_*); these are what only the guarantee tests use.

#define WAIT_MS   RAW_TIMEOUT_MS // longest wait for any single event
#define HB_LONG   RAW_HB_LONG    // heartbeat of test connections: they must never time out
#define SEQ_MAX   1024           // publisher sequence numbers a test may use
#define SMALL_MAX RAW_SMALL_MAX  // --max-message of the broker that refuses large bodies
#define DEATH_MAX 8              // death records a test reads from one message

typedef raw_fx_t fx_t;

// ---------------------------------------------------------------------------------------
// Requests

// Wall-clock ms since the epoch (death records carry such times).
uint64_t gx_wall_ms(void);
// Sends the request being built on c and waits for its reply. Returns 0 for a success reply or
// the error code; the reply's text (if any) goes to text (may be NULL).
int gx_call(raw_t *c, char *text, size_t size);
// Begins a queue.declare of queue; add arguments to the encoder, then gx_call.
hop_enc_t *gx_qdecl(raw_t *c, const char *queue);

// consume with a given tag, prefetch and (when not 0) ack_timeout. Returns 0 or the error code.
int gx_consume(raw_t *c, const char *queue, const char *tag, uint64_t prefetch,
               uint64_t ack_timeout);
// ack / nack / reject of tag without an id; requeue and delay are sent when >= 0.
void gx_settle(raw_t *c, hop_cmd_t cmd, uint64_t tag, int requeue, long delay);

// ---------------------------------------------------------------------------------------
// What comes back

// get that must answer get-ok.
raw_msg_t *gx_get_ok(raw_t *c, const char *queue, bool no_ack);
// get (no-ack) that must answer get-empty.
void gx_expect_empty(raw_t *c, const char *queue);
// The message carries props {content_type:"text/plain", message_id}.
void gx_expect_props(const raw_msg_t *m, const char *message_id);
void gx_expect_str(hop_str_t s, const char *text);
bool gx_queue_listed(raw_t *c, const char *queue);
// Waits until queue's field reaches value (at most timeout_ms); then it must equal value.
// Returns the monotonic ms at which it was seen. (list queues does not count as using a queue.)
uint64_t gx_wait_qfield(raw_t *c, const char *queue, const char *field, uint64_t value,
                        int timeout_ms);

// For harness_wait_until(gx_queue_gone, &(gx_gone_t){c, queue}, ms).
typedef struct {
    raw_t *c;
    const char *queue;
} gx_gone_t;
bool gx_queue_gone(void *arg);

// The ack_timeout of consumer in list consumers.
uint64_t gx_consumer_ack_timeout(raw_t *c, const char *consumer);

// ---------------------------------------------------------------------------------------
// Publisher confirms

typedef enum { GX_PENDING = 0, GX_ACK, GX_NACK } gx_cstate_t;

// What the broker confirmed, per sequence number.
typedef struct {
    uint8_t state[SEQ_MAX + 1]; // gx_cstate_t
    uint64_t code[SEQ_MAX + 1]; // of negative confirms
    uint64_t published;         // highest sequence published (they start at 1)
    size_t acks, nacks;
} gx_confirms_t;

// The confirms of the running test, cleared (one per test, static).
gx_confirms_t *gx_confirms_reset(void);
// The next sequence number to publish with.
uint64_t gx_next_seq(gx_confirms_t *t);
// Applies one confirm: it must name a published sequence no confirm covered yet; a multiple
// one covers every sequence up to it that was still pending (PROTOCOL.md 4.4).
void gx_confirm_apply(gx_confirms_t *t, const raw_msg_t *m);
// Waits until every published sequence is confirmed, one way or the other.
void gx_confirms_wait(raw_t *c, gx_confirms_t *t);
// After a round trip, no confirm is waiting on c.
void gx_expect_no_confirm(raw_t *c);

// ---------------------------------------------------------------------------------------
// Death records

typedef struct {
    char reason[32], queue[64], exchange[64], key[64];
    uint64_t time, count;
} gx_death_t;

// Reads the death records of a delivery into out (DEATH_MAX), newest first. Returns how many
// (0 when absent).
int gx_deaths(const raw_msg_t *m, gx_death_t *out);
// Checks one death record; its time must lie within wall_lo..wall_hi (ms since the epoch).
void gx_check_death(const gx_death_t *d, const char *reason, const char *queue,
                    const char *exchange, const char *key, uint64_t count, uint64_t wall_lo,
                    uint64_t wall_hi);

#endif
