// tests/integration/raw.h - a bare protocol client for tests: one ZeroMQ DEALER and the wire
// codec, no SDK. It sends whatever frames a test builds (well formed or not) and sorts what the
// broker sends back: replies by request id, deliveries and other pushes in arrival order.
// Broker heartbeats are dropped on receipt; the raw client sends none (say hello with a long
// heartbeat, or call raw_heartbeat, to stay alive).
#ifndef HOP_RAW_H_INCLUDED
#define HOP_RAW_H_INCLUDED

#include "codec.h"
#include "harness.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#define RAW_TIMEOUT_MS 10000 // default wait for a reply

// One message from the broker. wire borrows header's bytes: heap-allocated so it never moves.
typedef struct raw_msg {
    zmq_msg_t header;
    zmq_msg_t body;
    bool has_body;
    int frames;      // as received (header + body + extra)
    int decode_rc;   // hop_wire_decode result; 0 = wire is valid
    hop_wire_t wire; // decoded header
    struct raw_msg *next;
} raw_msg_t;

typedef struct raw raw_t;

// Connects a DEALER (with its own ZeroMQ context) to endpoint; nothing is sent yet.
raw_t *raw_new(const char *endpoint);
// Closes the socket at once (linger 0) without saying close: the broker sees silence.
void raw_destroy(raw_t **self_p);

// Says hello (version 1, the given heartbeat in ms, 0 = omit; name may be NULL) and waits for
// hello-ok. Returns 0, or the error code the broker answered, or -1 on timeout.
int raw_hello(raw_t *self, uint64_t heartbeat_ms, const char *name);

// raw_hello with batch:true: the broker may then send batches (PROTOCOL.md 2.1). The client
// splits each batch it receives into its records, kept in order as messages of their own, so a
// test reads them exactly as it would read single messages.
int raw_hello_batch(raw_t *self, uint64_t heartbeat_ms, const char *name);
// Batches received so far (after draining what the socket holds, without waiting), and the
// records they carried.
size_t raw_batches(raw_t *self, size_t *records);

// Builds a request: begins cmd with a fresh id (unless with_id is false) and returns the
// encoder to add fields to; send it with raw_send_enc. raw_last_id is the id used.
hop_enc_t *raw_begin(raw_t *self, hop_cmd_t cmd);
hop_enc_t *raw_begin_noid(raw_t *self, hop_cmd_t cmd);
uint64_t raw_last_id(const raw_t *self);
uint64_t raw_next_id(raw_t *self); // reserves an id, for hand-made headers
// Sends the encoder's header, plus a body frame when body is not NULL. Returns 0 or -1.
int raw_send_enc(raw_t *self, const void *body, size_t body_size);
// Sends n raw frames as one message. Returns 0 or -1.
int raw_send_frames(raw_t *self, const void *const *frames, const size_t *sizes, int n);
// Sends a heartbeat.
void raw_heartbeat(raw_t *self);

// Waits for the reply carrying id (any command with that id that is not a delivery or a push),
// keeping other messages for later. NULL on timeout. Free with raw_msg_destroy.
raw_msg_t *raw_reply(raw_t *self, uint64_t id, int timeout_ms);
// raw_send_enc then raw_reply for the last id, with RAW_TIMEOUT_MS.
raw_msg_t *raw_call(raw_t *self);
// Waits for the next message of cmd (e.g. HOP_CMD_DELIVER, HOP_CMD_CANCELLED, HOP_CMD_ERROR),
// keeping the others. NULL on timeout.
raw_msg_t *raw_next(raw_t *self, hop_cmd_t cmd, int timeout_ms);
// Waits for the next message of any kind (heartbeats excluded). NULL on timeout.
raw_msg_t *raw_any(raw_t *self, int timeout_ms);
// Number of buffered messages of cmd (after draining what the socket holds, without waiting).
size_t raw_pending(raw_t *self, hop_cmd_t cmd);
void raw_msg_destroy(raw_msg_t **msg_p);

// Shorthands: each sends one request and waits for its reply (RAW_TIMEOUT_MS). They return the
// reply's code: 0 for a success reply, the error code for an error, -1 on timeout.
int raw_queue_declare(raw_t *self, const char *queue, bool durable, bool exclusive,
                      bool auto_delete, bool passive);
int raw_exchange_declare(raw_t *self, const char *exchange, const char *type, bool durable,
                         bool auto_delete, bool passive);
int raw_bind(raw_t *self, const char *queue, const char *exchange, const char *key);
int raw_queue_delete(raw_t *self, const char *queue, bool if_unused, bool if_empty);
// consume: the broker's tag is copied to tag_out (may be NULL).
int raw_consume(raw_t *self, const char *queue, const char *tag, uint64_t prefetch, bool no_ack,
                char *tag_out, size_t tag_out_size);
int raw_cancel(raw_t *self, const char *tag);
// Publishes (no reply expected) with an optional body.
int raw_publish(raw_t *self, const char *exchange, const char *key, const void *body,
                size_t body_size);
// ack / nack / reject without an id (no reply on success).
int raw_ack(raw_t *self, uint64_t tag, bool multiple);
int raw_nack(raw_t *self, uint64_t tag, bool multiple, bool requeue);
// Returns the list-ok reply for what (items in msg->wire.items), or NULL.
raw_msg_t *raw_list(raw_t *self, const char *what);
// Returns the status-ok reply, or NULL.
raw_msg_t *raw_status(raw_t *self);
// A uint field of the queue named queue in list queues; false when the queue is not listed.
bool raw_queue_stat(raw_t *self, const char *queue, const char *field, uint64_t *out);

// The body of a message as a NUL-terminated copy in buf (truncated). Returns buf.
const char *raw_body(const raw_msg_t *msg, char *buf, size_t size);
// Compares the body with a NUL-terminated string.
bool raw_body_is(const raw_msg_t *msg, const char *text);
// Copies a wire string (not NUL-terminated) into buf. Returns buf.
const char *raw_str(hop_str_t s, char *buf, size_t size);
bool raw_str_is(hop_str_t s, const char *text);

// ---------------------------------------------------------------------------------------
// Test helpers shared by the raw-protocol tests (guarantee_helpers, protocol_helpers). Unlike
// the calls above they fail the running cmocka test when the broker does not answer as
// expected: main thread only.

#define RAW_HB_LONG   60000 // heartbeat of test connections: they must never time out
#define RAW_SMALL_MAX 1024  // --max-message of the broker started by raw_fx_setup_small

// Fixture: a broker and two connections that said hello (heartbeat RAW_HB_LONG).
typedef struct {
    harness_broker_t *broker;
    raw_t *a;
    raw_t *b;
    bool batch; // both said batch:true: deliveries made in one loop turn come as batches
} raw_fx_t;

// cmocka setups: a broker with default options; with --max-message RAW_SMALL_MAX; with default
// options and clients that take batches (deliveries then take the broker's batch path).
int raw_fx_setup(void **state);
int raw_fx_setup_small(void **state);
int raw_fx_setup_batch(void **state);
// Closes both connections; the broker must still be up and exit cleanly (under ASan: without
// leaks).
int raw_fx_teardown(void **state);

// A round trip on c: everything the broker sent c before it is then buffered.
void raw_sync(raw_t *c);

// Options of one raw_publish_text; zero values are not sent.
typedef struct {
    uint64_t seq; // asks for a confirm
    bool mandatory;
    bool has_expiration;
    uint64_t expiration;
    uint64_t priority;
    const char *message_id; // sends props {content_type:"text/plain", message_id}
} raw_pub_t;

// Publishes a text body (no reply expected); o may be NULL.
void raw_publish_text(raw_t *c, const char *exchange, const char *key, const char *body,
                      const raw_pub_t *o);

// The next delivery (fails the test after RAW_TIMEOUT_MS). Free with raw_msg_destroy.
raw_msg_t *raw_deliver(raw_t *c);
// Checks a delivery's body, that it has a tag, and its redelivered flag and count.
void raw_check_delivery(const raw_msg_t *m, const char *text, bool redelivered, uint64_t count);
// Waits for a delivery of text with these flags; returns its tag.
uint64_t raw_expect_deliver(raw_t *c, const char *text, bool redelivered, uint64_t count);
// After a round trip, nothing is delivered to c.
void raw_expect_no_delivery(raw_t *c);
// After a round trip, no error is waiting on c.
void raw_expect_no_error(raw_t *c);

// get: returns the reply (get-ok, get-empty or error).
raw_msg_t *raw_get(raw_t *c, const char *queue, bool no_ack);
// Gets every ready message of queue (no-ack) and returns their bodies joined by ',' in out.
char *raw_drain(raw_t *c, const char *queue, char *out, size_t size);
// A uint field of queue in list queues (fails the test when there is none).
uint64_t raw_qstat(raw_t *c, const char *queue, const char *field);
// A uint field of status (fails the test when there is none).
uint64_t raw_status_uint(raw_t *c, const char *field);

#endif
