// tests/integration/test_flow.c - a consumer that stops reading: the broker must stop sending
// to it (its per-connection send limit, --sndhwm), keep the rest of the messages ready in the
// queue, and deliver every one of them, in order and exactly once, when the consumer reads
// again. This drives the path where a batch of deliveries cannot be sent and goes back to its
// queue as if never taken. And a no-ack subscriber that stops reading, with the broker's
// defaults: its backlog stays bounded (the publisher is paused), and nothing is lost.
#include "codec.h"
#include "harness.h"
#include "hopper.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include <cmocka.h>

#define N_MESSAGES 100000
#define BODY_SIZE  100

typedef struct {
    harness_broker_t *broker;
    void *ctx;
    void *sub; // raw DEALER that says batch:true and reads only when told
} fx_t;

static int
s_setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    // Publisher flow control off: this test floods a stalled consumer on purpose.
    harness_opts_t opts = {.sndhwm = 20, .log_level = "warn", .flow_messages = -1};
    fx->broker = harness_broker_start(&opts);
    assert_non_null(fx->broker);
    fx->ctx = zmq_ctx_new();
    *state = fx;
    return 0;
}

static int
s_teardown(void **state)
{
    fx_t *fx = *state;
    if (fx->sub)
        zmq_close(fx->sub);
    zmq_ctx_term(fx->ctx);
    assert_int_equal(harness_broker_finish(&fx->broker), 0);
    free(fx);
    return 0;
}

static void
s_send(void *sock, hop_enc_t *enc)
{
    size_t size;
    const void *data = hop_enc_end(enc, &size);
    assert_int_equal(zmq_send(sock, data, size, 0), (int)size);
}

// Receives one message; returns its frames (header, and body or records) into h and b.
static bool
s_recv(void *sock, zmq_msg_t *h, zmq_msg_t *b, int timeout_ms)
{
    zmq_pollitem_t item = {.socket = sock, .events = ZMQ_POLLIN};
    if (zmq_poll(&item, 1, timeout_ms) <= 0)
        return false;
    assert_true(zmq_msg_recv(h, sock, 0) >= 0);
    if (zmq_msg_more(h))
        assert_true(zmq_msg_recv(b, sock, 0) >= 0);
    return true;
}

// Reads the reply to a request on the raw socket (skipping heartbeats).
static hop_cmd_t
s_reply(void *sock)
{
    for (;;) {
        zmq_msg_t h, b;
        zmq_msg_init(&h);
        zmq_msg_init(&b);
        assert_true(s_recv(sock, &h, &b, 5000));
        hop_wire_t w;
        assert_int_equal(hop_wire_decode(&w, zmq_msg_data(&h), zmq_msg_size(&h), NULL, 0), 0);
        hop_cmd_t cmd = w.cmd;
        zmq_msg_close(&h);
        zmq_msg_close(&b);
        if (cmd != HOP_CMD_HEARTBEAT)
            return cmd;
    }
}

static uint64_t
s_ready(hop_client_t *admin, const char *queue)
{
    hop_client_t *c = admin;
    uint64_t messages = 0;
    assert_int_equal(hop_client_declare_queue_ex(c, queue, HOP_PASSIVE, NULL, 0, &messages, NULL),
                     HOP_OK);
    return messages;
}

// Checks one delivery's body: the sequence numbers must come in order, each once.
static void
s_take(uint64_t *next, const void *body, size_t size)
{
    assert_int_equal(size, BODY_SIZE);
    uint64_t seq;
    memcpy(&seq, body, sizeof seq);
    assert_int_equal(seq, *next);
    (*next)++;
}

// A raw DEALER that says hello (batch:true) and then reads only when told, with small buffers.
static void *
s_raw_client(fx_t *fx, hop_enc_t *enc)
{
    void *sock = zmq_socket(fx->ctx, ZMQ_DEALER);
    int small = 1, rcvbuf = 4096;
    zmq_setsockopt(sock, ZMQ_RCVHWM, &small, sizeof small);
    zmq_setsockopt(sock, ZMQ_RCVBUF, &rcvbuf, sizeof rcvbuf);
    assert_int_equal(zmq_connect(sock, harness_broker_endpoint(fx->broker)), 0);
    hop_enc_begin(enc, HOP_CMD_HELLO);
    hop_enc_uint(enc, "id", 1);
    hop_enc_uint(enc, "version", 1);
    hop_enc_uint(enc, "heartbeat", 60000);
    hop_enc_bool(enc, "batch", true);
    s_send(sock, enc);
    assert_int_equal(s_reply(sock), HOP_CMD_HELLO_OK);
    return sock;
}

// Receives one message within timeout_ms, decoded into w (frames in h and b, the caller's to
// close). Fails the test, saying what it waited for, when none comes.
static void
s_recv_wire(void *sock, zmq_msg_t *h, zmq_msg_t *b, hop_wire_t *w, int timeout_ms,
            const char *waiting_for, uint64_t at)
{
    zmq_msg_init(h);
    zmq_msg_init(b);
    if (!s_recv(sock, h, b, timeout_ms))
        fail_msg("no message: waiting for %s %llu", waiting_for, (unsigned long long)at);
    assert_int_equal(hop_wire_decode(w, zmq_msg_data(h), zmq_msg_size(h), NULL, 0), 0);
}

static void
test_stalled_consumer_gets_everything_in_order_once(void **state)
{
    fx_t *fx = *state;
    const char *ep = harness_broker_endpoint(fx->broker);

    // The consumer: a small receive buffer, and it will not read while the flood goes on.
    hop_enc_t enc;
    hop_enc_init(&enc);
    fx->sub = s_raw_client(fx, &enc);
    hop_enc_begin(&enc, HOP_CMD_QUEUE_DECLARE);
    hop_enc_uint(&enc, "id", 2);
    hop_enc_cstr(&enc, "queue", "flow");
    s_send(fx->sub, &enc);
    assert_int_equal(s_reply(fx->sub), HOP_CMD_QUEUE_OK);
    hop_enc_begin(&enc, HOP_CMD_CONSUME);
    hop_enc_uint(&enc, "id", 3);
    hop_enc_cstr(&enc, "queue", "flow");
    hop_enc_bool(&enc, "no_ack", true); // no prefetch: only the send limit holds it back
    s_send(fx->sub, &enc);
    assert_int_equal(s_reply(fx->sub), HOP_CMD_CONSUME_OK);

    // The flood.
    hop_client_t *admin = hop_client_new();
    hop_client_set_heartbeat(admin, 60000);
    assert_int_equal(hop_client_connect(admin, ep), HOP_OK);
    char body[BODY_SIZE] = {0};
    for (uint64_t i = 0; i < N_MESSAGES; i++) {
        memcpy(body, &i, sizeof i);
        assert_int_equal(hop_client_publish(admin, "", "flow", body, sizeof body, NULL), HOP_OK);
    }
    // Once every publish is in, the broker holds back what the consumer's pipe cannot take.
    uint64_t ready = s_ready(admin, "flow");
    assert_true(ready > 0);

    // The consumer reads again: everything arrives, in order, once.
    uint64_t next = 0;
    while (next < N_MESSAGES) {
        zmq_msg_t h, b;
        hop_wire_t w;
        s_recv_wire(fx->sub, &h, &b, &w, 10000, "message", next);
        if (w.cmd == HOP_CMD_DELIVER)
            s_take(&next, zmq_msg_data(&b), zmq_msg_size(&b));
        else if (w.cmd == HOP_CMD_BATCH) {
            hop_batch_t it;
            hop_batch_init(&it, zmq_msg_data(&b), zmq_msg_size(&b));
            const uint8_t *rh, *rb;
            uint32_t rhl, rbl;
            uint64_t records = 0;
            while (hop_batch_next(&it, &rh, &rhl, &rb, &rbl) == 1) {
                hop_wire_t r;
                assert_int_equal(hop_wire_decode(&r, rh, rhl, NULL, 0), 0);
                assert_int_equal(r.cmd, HOP_CMD_DELIVER);
                s_take(&next, rb, rbl);
                records++;
            }
            assert_int_equal(records, w.count);
        } else
            assert_int_equal(w.cmd, HOP_CMD_HEARTBEAT);
        zmq_msg_close(&h);
        zmq_msg_close(&b);
    }
    // Nothing more: no duplicate comes after the last one, and the queue is empty.
    zmq_msg_t h, b;
    zmq_msg_init(&h);
    zmq_msg_init(&b);
    while (s_recv(fx->sub, &h, &b, 300)) {
        hop_wire_t w;
        assert_int_equal(hop_wire_decode(&w, zmq_msg_data(&h), zmq_msg_size(&h), NULL, 0), 0);
        assert_int_equal(w.cmd, HOP_CMD_HEARTBEAT);
    }
    zmq_msg_close(&h);
    zmq_msg_close(&b);
    assert_int_equal(s_ready(admin, "flow"), 0);
    hop_client_destroy(&admin);
    hop_enc_fini(&enc);
}

// Publishes n one-byte messages with seq from..from+n-1 to the queue "full" (max_length 1,
// reject-publish: each after the first gets a negative confirm of its own).
static void
s_flood_full(void *sock, hop_enc_t *enc, uint64_t from, uint64_t n)
{
    for (uint64_t seq = from; seq < from + n; seq++) {
        hop_enc_begin(enc, HOP_CMD_PUBLISH);
        hop_enc_cstr(enc, "exchange", "");
        hop_enc_cstr(enc, "key", "full");
        hop_enc_uint(enc, "seq", seq);
        size_t size;
        const void *data = hop_enc_end(enc, &size);
        assert_int_equal(zmq_send(sock, data, size, ZMQ_SNDMORE), (int)size);
        assert_int_equal(zmq_send(sock, "x", 1, 0), 1);
    }
}

#define N_CONFIRMS 3000

// A publisher that does not read while the broker answers each publish (negative confirms,
// one message each) against a send limit of 20: what the pipe refuses waits in the
// connection's backlog and goes once the publisher reads, in order. Every confirm arrives:
// they were dropped before (the publisher then waited for them forever).
static void
test_confirms_to_a_publisher_that_does_not_read_are_kept(void **state)
{
    fx_t *fx = *state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_client_t *admin = hop_client_new();
    assert_int_equal(hop_client_connect(admin, harness_broker_endpoint(fx->broker)), HOP_OK);
    hop_queue_args_t args = {.max_length = 1, .overflow = "reject-publish"};
    assert_int_equal(hop_client_declare_queue_args(admin, "full", 0, &args, NULL, 0, NULL, NULL),
                     HOP_OK);
    fx->sub = s_raw_client(fx, &enc);
    s_flood_full(fx->sub, &enc, 1, N_CONFIRMS);
    // The broker answers all of them while nobody reads.
    nanosleep(&(struct timespec){.tv_nsec = 300 * 1000000L}, NULL);
    uint64_t next = 1; // the next seq a confirm must cover
    while (next <= N_CONFIRMS) {
        zmq_msg_t h, b;
        hop_wire_t w;
        s_recv_wire(fx->sub, &h, &b, &w, 5000, "the confirm of seq", next);
        if (w.cmd == HOP_CMD_CONFIRM) {
            assert_true(w.seq >= next);               // in order, none twice
            assert_true(w.multiple || w.seq == next); // none skipped
            assert_int_equal(w.nack, w.seq > 1);      // the first one fits, no other
            next = w.seq + 1;
        } else
            assert_int_equal(w.cmd, HOP_CMD_HEARTBEAT);
        zmq_msg_close(&h);
        zmq_msg_close(&b);
    }
    hop_client_destroy(&admin);
    hop_enc_fini(&enc);
}

static int
s_setup_defaults(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    harness_opts_t opts = {.log_level = "warn"}; // the default --sndhwm and flow control
    fx->broker = harness_broker_start(&opts);
    assert_non_null(fx->broker);
    fx->ctx = zmq_ctx_new();
    *state = fx;
    return 0;
}

#define S_FLOOD_MAX 3000000 // publishes tried, at most: far over what the defaults let through

// A no-ack subscriber stops reading while a publisher floods its exchange. No-ack deliveries
// leave the queue at once, so nothing but the connection's send limit (--sndhwm, counted in
// batches of up to 256 messages) keeps them from piling up in the broker: at 100,000 batches,
// 3M publishes to a stopped subscriber took the broker to 608 MB. With the default limit the
// subscriber's pipe fills, its queue grows past the flow watermark, and the publisher is
// paused (HOP_EFULL after its timeout) long before. Then the subscriber reads everything that
// was accepted, in order, once.
static void
test_stalled_subscriber_pauses_the_publisher(void **state)
{
    fx_t *fx = *state;
    const char *ep = harness_broker_endpoint(fx->broker);
    hop_client_t *sub = hop_client_new(), *pub = hop_client_new();
    assert_int_equal(hop_client_connect(sub, ep), HOP_OK);
    assert_int_equal(hop_client_connect(pub, ep), HOP_OK);
    hop_client_set_timeout(pub, 2000);
    assert_int_equal(hop_client_declare_exchange(pub, "flood", "fanout", 0), HOP_OK);
    assert_int_equal(hop_client_subscribe(sub, "flood", NULL, NULL, 0), HOP_OK);
    // The subscriber makes no call now: once its client has read ahead 1,024 messages, the
    // rest stays in the socket and then in the broker.
    uint8_t body[BODY_SIZE] = {0};
    uint64_t accepted = 0;
    int rc = HOP_OK;
    while (accepted < S_FLOOD_MAX) {
        memcpy(body, &accepted, sizeof accepted);
        rc = hop_client_publish(pub, "flood", "k", body, sizeof body, NULL);
        if (rc != HOP_OK)
            break;
        accepted++;
    }
    assert_int_equal(rc, HOP_EFULL);
    assert_non_null(strstr(hop_client_error(pub), "publishing paused by the broker"));
    uint64_t next = 0;
    hop_delivery_t *d = NULL;
    while (next < accepted && hop_client_receive(sub, &d, 5000) == HOP_OK) {
        s_take(&next, d->body, d->body_size);
        hop_delivery_destroy(&d);
    }
    assert_int_equal(next, accepted);
    assert_int_equal(hop_client_receive(sub, &d, 300), HOP_ETIMEOUT); // no duplicate
    // Caught up: publishing goes on.
    assert_int_equal(hop_client_publish(pub, "flood", "k", body, sizeof body, NULL), HOP_OK);
    hop_client_destroy(&pub);
    hop_client_destroy(&sub);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stalled_consumer_gets_everything_in_order_once,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_confirms_to_a_publisher_that_does_not_read_are_kept,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_stalled_subscriber_pauses_the_publisher,
                                        s_setup_defaults, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
