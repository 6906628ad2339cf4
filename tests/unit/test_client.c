// tests/unit/test_client.c - libhopper without hopperd: argument checks, error names, delivery
// parsing, connect failures, and the client's protocol behaviour against a scripted fake
// broker (a ROUTER socket on a thread of this test).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "client_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// ---------------------------------------------------------------------------------------
// Helpers

static void
s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

// Waits up to deadline_ms for *counter to reach at least want.
static bool
s_wait_for(atomic_int *counter, int want, int deadline_ms)
{
    for (int waited = 0; waited < deadline_ms; waited += 10) {
        if (atomic_load(counter) >= want)
            return true;
        s_sleep_ms(10);
    }
    return atomic_load(counter) >= want;
}

// ---------------------------------------------------------------------------------------
// Error names and argument checks

static void
test_strerror_names_every_code(void **state)
{
    (void)state;
    for (int err = HOP_ENACKED; err <= HOP_OK; err++) {
        const char *name = hop_strerror(err);
        assert_non_null(name);
        assert_string_not_equal(name, "unknown error");
        for (int other = HOP_ENACKED; other < err; other++)
            assert_string_not_equal(name, hop_strerror(other));
    }
    assert_string_equal(hop_strerror(-100), "unknown error");
    assert_string_equal(hop_strerror(7), "unknown error");
}

static void
test_new_client_is_unconnected_without_error(void **state)
{
    (void)state;
    hop_client_t *client = hop_client_new();
    assert_false(hop_client_connected(client));
    assert_string_equal(hop_client_error(client), "");
    assert_int_equal(hop_client_error_code(client), 0);
    hop_client_destroy(&client);
    assert_null(client);
    hop_client_destroy(&client); // accepts NULL
}

static void
test_calls_before_connect_say_not_connected(void **state)
{
    (void)state;
    hop_client_t *client = hop_client_new();
    assert_int_equal(hop_client_declare_queue(client, "jobs", 0, NULL, 0), HOP_ECLOSED);
    assert_string_equal(hop_client_error(client), "not connected");
    assert_int_equal(hop_client_publish(client, "", "jobs", "x", 1, NULL), HOP_ECLOSED);
    assert_int_equal(hop_client_ack(client, 1, false), HOP_ECLOSED);
    hop_delivery_t *delivery = (hop_delivery_t *)&delivery;
    assert_int_equal(hop_client_receive(client, &delivery, 0), HOP_ECLOSED);
    assert_null(delivery);
    hop_client_destroy(&client);
}

static void
test_bad_arguments_are_einval_with_a_message(void **state)
{
    (void)state;
    hop_client_t *client = hop_client_new();
    char long_name[HOP_NAME_MAX + 2];
    memset(long_name, 'q', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    char max_name[HOP_NAME_MAX + 1];
    memset(max_name, 'q', sizeof max_name - 1);
    max_name[sizeof max_name - 1] = '\0';

    assert_int_equal(hop_client_declare_queue(client, NULL, 0, NULL, 0), HOP_EINVAL);
    assert_non_null(strstr(hop_client_error(client), "queue name is NULL"));
    assert_int_equal(hop_client_declare_queue(client, long_name, 0, NULL, 0), HOP_EINVAL);
    assert_non_null(strstr(hop_client_error(client), "256 bytes"));
    // 255 bytes is fine: it gets as far as the connection check.
    assert_int_equal(hop_client_declare_queue(client, max_name, 0, NULL, 0), HOP_ECLOSED);
    assert_int_equal(hop_client_declare_queue(client, "q", HOP_NO_ACK, NULL, 0), HOP_EINVAL);
    assert_int_equal(hop_client_declare_exchange(client, "x", NULL, 0), HOP_EINVAL);
    assert_int_equal(hop_client_declare_exchange(client, NULL, "topic", 0), HOP_EINVAL);
    assert_int_equal(hop_client_delete_exchange(client, "x", HOP_IF_EMPTY), HOP_EINVAL);
    assert_int_equal(hop_client_delete_queue(client, long_name, 0, NULL), HOP_EINVAL);
    assert_int_equal(hop_client_purge_queue(client, NULL, NULL), HOP_EINVAL);
    assert_int_equal(hop_client_bind(client, "q", NULL, "k"), HOP_EINVAL);
    assert_int_equal(hop_client_bind(client, "q", "x", long_name), HOP_EINVAL);
    assert_int_equal(hop_client_unbind(client, NULL, "x", "k"), HOP_EINVAL);
    assert_int_equal(hop_client_publish(client, NULL, "k", "x", 1, NULL), HOP_EINVAL);
    assert_int_equal(hop_client_publish(client, "", long_name, "x", 1, NULL), HOP_EINVAL);
    assert_int_equal(hop_client_publish(client, "", "k", NULL, 3, NULL), HOP_EINVAL);
    hop_props_t props = {.header_count = 1};
    assert_int_equal(hop_client_publish(client, "", "k", "x", 1, &props), HOP_EINVAL);
    hop_header_t headers[] = {{NULL, "v"}};
    props.headers = headers;
    assert_int_equal(hop_client_publish(client, "", "k", "x", 1, &props), HOP_EINVAL);
    assert_non_null(strstr(hop_client_error(client), "NULL key"));
    assert_int_equal(hop_client_consume(client, NULL, NULL, 0, 0, NULL, 0), HOP_EINVAL);
    assert_int_equal(hop_client_consume(client, "q", NULL, -1, 0, NULL, 0), HOP_EINVAL);
    assert_int_equal(hop_client_consume(client, "q", NULL, 0, HOP_DURABLE, NULL, 0), HOP_EINVAL);
    assert_int_equal(hop_client_cancel(client, NULL), HOP_EINVAL);
    assert_int_equal(hop_client_subscribe(client, NULL, "#", NULL, 0), HOP_EINVAL);
    assert_int_equal(hop_client_receive(client, NULL, 0), HOP_EINVAL);
    hop_delivery_t *delivery;
    assert_int_equal(hop_client_receive(client, &delivery, -2), HOP_EINVAL);
    assert_int_equal(hop_client_dispatch(client, NULL, NULL, 0), HOP_EINVAL);
    assert_int_equal(hop_client_get(client, "q", 0, NULL), HOP_EINVAL);
    assert_int_equal(hop_client_get(client, "q", HOP_EXCLUSIVE, &delivery), HOP_EINVAL);
    assert_int_equal(hop_client_request(client, "", "k", "x", 1, NULL, 10, NULL), HOP_EINVAL);
    assert_int_equal(hop_client_reply(client, NULL, "x", 1, NULL), HOP_EINVAL);
    hop_delivery_t no_reply_to = {0};
    assert_int_equal(hop_client_reply(client, &no_reply_to, "x", 1, NULL), HOP_EINVAL);
    assert_non_null(strstr(hop_client_error(client), "reply_to"));
    void *items;
    size_t size;
    assert_int_equal(hop_client_list(client, NULL, &items, &size), HOP_EINVAL);
    assert_int_equal(hop_client_list(client, "queues", NULL, &size), HOP_EINVAL);
    assert_int_equal(hop_client_status(client, NULL, &size), HOP_EINVAL);
    assert_int_equal(hop_client_call_raw(client, NULL, 0, NULL, 0, NULL, NULL), HOP_EINVAL);
    assert_int_equal(hop_client_error_code(client), 0);

    hop_client_set_name(client, long_name);
    assert_int_equal(hop_client_connect(client, "tcp://127.0.0.1:1"), HOP_EINVAL);
    assert_non_null(strstr(hop_client_error(client), "client name"));
    hop_client_destroy(&client);
}

// ---------------------------------------------------------------------------------------
// Connect failures

static void
test_unreachable_broker_is_econnect_within_timeout(void **state)
{
    (void)state;
    hop_client_t *client = hop_client_new();
    hop_client_set_timeout(client, 300);
    int64_t start = hop_client_now();
    assert_int_equal(hop_client_connect(client, "tcp://127.0.0.1:1"), HOP_ECONNECT);
    // Generous bound: this checks that connect gives up, not how precisely.
    assert_true(hop_client_now() - start < 5000);
    assert_string_equal(hop_client_error(client), "cannot reach broker at tcp://127.0.0.1:1 "
                                                  "within 300 ms (is hopperd running?)");
    assert_false(hop_client_connected(client));
    assert_int_equal(hop_client_declare_queue(client, "q", 0, NULL, 0), HOP_ECLOSED);
    hop_client_destroy(&client);
}

static void
test_null_endpoint_uses_hopper_broker_variable(void **state)
{
    (void)state;
    setenv("HOPPER_BROKER", "tcp://127.0.0.1:2", 1);
    hop_client_t *client = hop_client_new();
    hop_client_set_timeout(client, 100);
    assert_int_equal(hop_client_connect(client, NULL), HOP_ECONNECT);
    assert_non_null(strstr(hop_client_error(client), "tcp://127.0.0.1:2"));
    unsetenv("HOPPER_BROKER");
    hop_client_destroy(&client);
}

static void
test_malformed_endpoint_is_einval(void **state)
{
    (void)state;
    hop_client_t *client = hop_client_new();
    assert_int_equal(hop_client_connect(client, "not-an-endpoint"), HOP_EINVAL);
    assert_non_null(strstr(hop_client_error(client), "not-an-endpoint"));
    hop_client_destroy(&client);
}

// ---------------------------------------------------------------------------------------
// Delivery parsing

static void
s_pack_key(msgpack_packer *pk, const char *key)
{
    msgpack_pack_str(pk, strlen(key));
    msgpack_pack_str_body(pk, key, strlen(key));
}

// Encodes a deliver header with every property and one header of each msgpack type.
static const void *
s_deliver_header(hop_enc_t *enc, size_t *size)
{
    hop_enc_begin(enc, HOP_CMD_DELIVER);
    hop_enc_cstr(enc, "consumer", "ctag-1");
    hop_enc_uint(enc, "tag", 42);
    hop_enc_cstr(enc, "exchange", "amq.topic");
    hop_enc_cstr(enc, "key", "a.b");
    hop_enc_bool(enc, "redelivered", true);
    hop_enc_uint(enc, "count", 3);
    hop_enc_map_begin(enc, "props");
    hop_enc_cstr(enc, "content_type", "text/plain");
    hop_enc_cstr(enc, "content_encoding", "gzip");
    hop_enc_cstr(enc, "message_id", "m-1");
    hop_enc_cstr(enc, "correlation_id", "c-1");
    hop_enc_cstr(enc, "reply_to", "replies");
    hop_enc_cstr(enc, "type", "order");
    hop_enc_cstr(enc, "app_id", "shop");
    hop_enc_uint(enc, "timestamp", 1700000000000);
    hop_enc_uint(enc, "unknown_prop", 1);
    hop_enc_map_begin(enc, "headers");
    msgpack_packer *pk = hop_enc_packer(enc);
    hop_enc_cstr(enc, "s", "text");
    hop_enc_uint(enc, "u", 7);
    hop_enc_int(enc, "i", -5);
    hop_enc_bool(enc, "t", true);
    hop_enc_bool(enc, "f", false);
    s_pack_key(pk, "n");
    msgpack_pack_nil(pk);
    hop_enc_count(enc);
    s_pack_key(pk, "d");
    msgpack_pack_double(pk, 1.5);
    hop_enc_count(enc);
    s_pack_key(pk, "b");
    msgpack_pack_bin(pk, 2);
    msgpack_pack_bin_body(pk, "\x01\x02", 2);
    hop_enc_count(enc);
    s_pack_key(pk, "a");
    msgpack_pack_array(pk, 1);
    msgpack_pack_int(pk, 1);
    hop_enc_count(enc);
    hop_enc_map_begin(enc, "m");
    hop_enc_map_end(enc);
    hop_enc_map_end(enc); // headers
    hop_enc_map_end(enc); // props
    return hop_enc_end(enc, size);
}

static void
test_delivery_parse_reads_every_field(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    size_t size;
    const void *header = s_deliver_header(&enc, &size);
    hop_wire_t wire;
    char err[128];
    assert_int_equal(hop_wire_decode(&wire, header, size, err, sizeof err), 0);
    zmq_msg_t body;
    zmq_msg_init_size(&body, 100);
    memset(zmq_msg_data(&body), 'x', 100);
    hop_delivery_t *d = hop_delivery_parse(&wire, &body);
    hop_enc_fini(&enc); // the delivery must own everything it points to
    zmq_msg_close(&body);

    assert_string_equal(d->consumer, "ctag-1");
    assert_string_equal(d->exchange, "amq.topic");
    assert_string_equal(d->routing_key, "a.b");
    assert_int_equal(d->tag, 42);
    assert_true(d->redelivered);
    assert_int_equal(d->delivery_count, 3);
    assert_int_equal(d->body_size, 100);
    assert_memory_equal(d->body, "xxxxxxxxxx", 10);
    assert_string_equal(d->props.content_type, "text/plain");
    assert_string_equal(d->props.content_encoding, "gzip");
    assert_string_equal(d->props.message_id, "m-1");
    assert_string_equal(d->props.correlation_id, "c-1");
    assert_string_equal(d->props.reply_to, "replies");
    assert_string_equal(d->props.type, "order");
    assert_string_equal(d->props.app_id, "shop");
    assert_int_equal(d->props.timestamp, 1700000000000);
    assert_int_equal(d->props.header_count, 10);
    assert_string_equal(hop_delivery_header(d, "s"), "text");
    assert_string_equal(hop_delivery_header(d, "u"), "7");
    assert_string_equal(hop_delivery_header(d, "i"), "-5");
    assert_string_equal(hop_delivery_header(d, "t"), "true");
    assert_string_equal(hop_delivery_header(d, "f"), "false");
    assert_string_equal(hop_delivery_header(d, "n"), "");
    assert_string_equal(hop_delivery_header(d, "d"), "1.5");
    assert_string_equal(hop_delivery_header(d, "b"), "<binary>");
    assert_string_equal(hop_delivery_header(d, "a"), "<array>");
    assert_string_equal(hop_delivery_header(d, "m"), "<map>");
    assert_null(hop_delivery_header(d, "missing"));
    assert_null(hop_delivery_header(d, NULL));
    assert_null(hop_delivery_header(NULL, "s"));

    // The raw spans are the props and headers maps exactly as sent.
    hop_mp_t mp;
    hop_mp_init(&mp, d->props_raw, d->props_raw_size);
    assert_int_equal(hop_mp_skip(&mp), 0);
    assert_true(hop_mp_at_end(&mp));
    assert_non_null(d->headers_raw);
    assert_true((const uint8_t *)d->headers_raw > (const uint8_t *)d->props_raw);
    hop_mp_init(&mp, d->headers_raw, d->headers_raw_size);
    uint32_t count;
    assert_int_equal(hop_mp_map(&mp, &count), 0);
    assert_int_equal(count, 10);
    hop_delivery_destroy(&d);
    assert_null(d);
    hop_delivery_destroy(&d);
}

static void
test_delivery_parse_without_props_or_body(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_GET_OK);
    hop_enc_uint(&enc, "id", 9);
    hop_enc_uint(&enc, "tag", 1);
    hop_enc_uint(&enc, "messages", 12);
    size_t size;
    const void *header = hop_enc_end(&enc, &size);
    hop_wire_t wire;
    assert_int_equal(hop_wire_decode(&wire, header, size, NULL, 0), 0);
    hop_delivery_t *d = hop_delivery_parse(&wire, NULL);
    assert_string_equal(d->consumer, "");
    assert_string_equal(d->exchange, "");
    assert_string_equal(d->routing_key, "");
    assert_int_equal(d->message_count, 12);
    assert_int_equal(d->body_size, 0);
    assert_non_null(d->body);
    assert_null(d->props.content_type);
    assert_null(d->props.headers);
    assert_int_equal(d->props.header_count, 0);
    assert_null(d->props_raw);
    assert_null(d->headers_raw);
    hop_delivery_destroy(&d);
    hop_enc_fini(&enc);
}

static void
test_delivery_parse_ignores_mistyped_props(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_DELIVER);
    hop_enc_cstr(&enc, "consumer", "c");
    hop_enc_map_begin(&enc, "props");
    hop_enc_uint(&enc, "content_type", 5);        // not a string: ignored
    hop_enc_cstr(&enc, "timestamp", "yesterday"); // not an integer: ignored
    hop_enc_cstr(&enc, "headers", "nope");        // not a map: ignored
    hop_enc_cstr(&enc, "type", "kept");
    size_t size;
    const void *header = hop_enc_end(&enc, &size);
    hop_wire_t wire;
    assert_int_equal(hop_wire_decode(&wire, header, size, NULL, 0), 0);
    hop_delivery_t *d = hop_delivery_parse(&wire, NULL);
    assert_null(d->props.content_type);
    assert_int_equal(d->props.timestamp, 0);
    assert_int_equal(d->props.header_count, 0);
    assert_null(d->headers_raw);
    assert_string_equal(d->props.type, "kept");
    assert_non_null(d->props_raw);
    hop_delivery_destroy(&d);
    hop_enc_fini(&enc);
}

// ---------------------------------------------------------------------------------------
// A scripted fake broker: answers hello, declares (the queue name picks an error or a batch),
// publish to exchange "nope" (an asynchronous 404) and to exchange "c" (confirms and returns,
// see s_fake_confirm), consume, get and close; sends heartbeats unless silent. It unpacks the
// client's batches, keeps the last header of each command for the tests to decode, and checks
// the order of a burst (see test_burst_...).

#define S_BURST     3000    // messages in the burst test
#define S_BURST_TAG 1000000 // acks of the burst carry S_BURST_TAG + their sequence number
#define S_PUBS      256     // publishes to exchange "c" kept

typedef struct {
    void *ctx;
    void *router;
    char endpoint[64];
    pthread_t thread;
    atomic_bool stop;
    atomic_bool silent; // answer nothing, send nothing
    atomic_bool paused; // read nothing, send nothing
    atomic_int hellos;
    atomic_int heartbeats;
    atomic_int closes;
    char name[64];        // the client name of the last hello
    bool hello_batch;     // the last hello said batch:true
    uint64_t max_message; // for hello-ok (set before connecting)
    // The burst: publishes to exchange "burst" (sequence number in the body's first 4 bytes,
    // big-endian) and acks with tags from S_BURST_TAG.
    atomic_int seen;         // burst messages seen
    atomic_int out_of_order; // ... whose sequence number was not the next one
    atomic_int batches;      // batches received
    uint8_t how[S_BURST];    // per sequence number: 1 alone, 2 in a batch
    uint32_t body_size[S_BURST];
    // Headers as the client sent them: the last of each command (counted once stored), and
    // each publish to exchange "c" with whether it came in a batch.
    atomic_int count[HOP_CMD_COUNT_];
    uint8_t last[HOP_CMD_COUNT_][1024];
    size_t last_size[HOP_CMD_COUNT_];
    atomic_int pubs;
    uint8_t pub_head[S_PUBS][256];
    size_t pub_size[S_PUBS];
    bool pub_batched[S_PUBS];
} s_fake_t;

// {cmd:"heartbeat"} as a fixmap: as a body it must reach the user untouched.
static const char s_heartbeat_bytes[] = "\x81\xa3"
                                        "cmd"
                                        "\xa9"
                                        "heartbeat";

static void
s_fake_send_n(s_fake_t *self, zmq_msg_t *rid, hop_enc_t *enc, const void *body, size_t body_size)
{
    size_t size;
    const void *header = hop_enc_end(enc, &size);
    zmq_send(self->router, zmq_msg_data(rid), zmq_msg_size(rid), ZMQ_SNDMORE);
    zmq_send(self->router, header, size, body ? ZMQ_SNDMORE : 0);
    if (body)
        zmq_send(self->router, body, body_size, 0);
}

static void
s_fake_send(s_fake_t *self, zmq_msg_t *rid, hop_enc_t *enc, const char *body)
{
    s_fake_send_n(self, rid, enc, body, body ? strlen(body) : 0);
}

// Appends the header in enc and body as one record to records.
static void
s_record(msgpack_sbuffer *records, uint32_t *count, hop_enc_t *enc, const void *body,
         size_t body_size)
{
    size_t size;
    const void *header = hop_enc_end(enc, &size);
    hop_batch_append(records, header, size, body, body_size);
    (*count)++;
}

// Sends the records as a batch announcing count of them.
static void
s_fake_send_batch(s_fake_t *self, zmq_msg_t *rid, hop_enc_t *enc, msgpack_sbuffer *records,
                  uint32_t count)
{
    hop_enc_begin(enc, HOP_CMD_BATCH);
    hop_enc_uint(enc, "count", count);
    size_t size;
    const void *header = hop_enc_end(enc, &size);
    zmq_send(self->router, zmq_msg_data(rid), zmq_msg_size(rid), ZMQ_SNDMORE);
    zmq_send(self->router, header, size, ZMQ_SNDMORE);
    zmq_send(self->router, records->data, records->size, 0);
}

static void
s_enc_deliver(hop_enc_t *enc, uint64_t tag)
{
    hop_enc_begin(enc, HOP_CMD_DELIVER);
    hop_enc_cstr(enc, "consumer", "ctag-b");
    hop_enc_uint(enc, "tag", tag);
    hop_enc_cstr(enc, "exchange", "ex");
    hop_enc_cstr(enc, "key", "k");
    hop_enc_uint(enc, "count", 1);
}

// Answers queue.declare "batch" with one batch: three deliveries (the second with a body too
// large to be copied), a heartbeat, the reply, a fourth delivery and an asynchronous error.
static void
s_fake_batch_reply(s_fake_t *self, zmq_msg_t *rid, const hop_wire_t *w, hop_enc_t *enc)
{
    msgpack_sbuffer records;
    msgpack_sbuffer_init(&records);
    uint32_t count = 0;
    s_enc_deliver(enc, 1);
    hop_enc_map_begin(enc, "props");
    hop_enc_cstr(enc, "content_type", "text/plain");
    hop_enc_map_end(enc);
    s_record(&records, &count, enc, "one", 3);
    s_enc_deliver(enc, 2);
    static char big[HOP_BATCH_BODY_MAX + 1000];
    memset(big, 'b', sizeof big);
    s_record(&records, &count, enc, big, sizeof big);
    hop_enc_begin(enc, HOP_CMD_HEARTBEAT);
    s_record(&records, &count, enc, NULL, 0);
    hop_enc_begin(enc, HOP_CMD_QUEUE_OK);
    hop_enc_uint(enc, "id", w->id);
    hop_enc_cstr(enc, "queue", "batch");
    s_record(&records, &count, enc, NULL, 0);
    s_enc_deliver(enc, 3);
    s_record(&records, &count, enc, "three", 5);
    hop_enc_begin(enc, HOP_CMD_ERROR);
    hop_enc_uint(enc, "id", 0);
    hop_enc_uint(enc, "code", 404);
    hop_enc_cstr(enc, "text", "no exchange 'gone'");
    s_record(&records, &count, enc, NULL, 0);
    s_fake_send_batch(self, rid, enc, &records, count);
    msgpack_sbuffer_destroy(&records);
}

// Answers queue.declare "badbatch" with a batch that announces 3 records and holds 2
// deliveries, then the reply on its own.
static void
s_fake_bad_batch_reply(s_fake_t *self, zmq_msg_t *rid, const hop_wire_t *w, hop_enc_t *enc)
{
    msgpack_sbuffer records;
    msgpack_sbuffer_init(&records);
    uint32_t count = 0;
    s_enc_deliver(enc, 1);
    s_record(&records, &count, enc, "x", 1);
    s_enc_deliver(enc, 2);
    s_record(&records, &count, enc, "y", 1);
    s_fake_send_batch(self, rid, enc, &records, count + 1);
    msgpack_sbuffer_destroy(&records);
    hop_enc_begin(enc, HOP_CMD_QUEUE_OK);
    hop_enc_uint(enc, "id", w->id);
    s_fake_send(self, rid, enc, NULL);
}

// Answers get "bget" with a batch: a delivery, then the get-ok.
static void
s_fake_batch_get(s_fake_t *self, zmq_msg_t *rid, const hop_wire_t *w, hop_enc_t *enc)
{
    msgpack_sbuffer records;
    msgpack_sbuffer_init(&records);
    uint32_t count = 0;
    s_enc_deliver(enc, 5);
    s_record(&records, &count, enc, "d", 1);
    hop_enc_begin(enc, HOP_CMD_GET_OK);
    hop_enc_uint(enc, "id", w->id);
    hop_enc_uint(enc, "tag", 6);
    hop_enc_cstr(enc, "key", "bget");
    s_record(&records, &count, enc, "g", 1);
    s_fake_send_batch(self, rid, enc, &records, count);
    msgpack_sbuffer_destroy(&records);
}

static bool
s_wire_is(hop_str_t str, const char *value)
{
    return str.ptr && str.len == strlen(value) && memcmp(str.ptr, value, str.len) == 0;
}

// Checks the order of burst messages and how they came.
static void
s_fake_burst(s_fake_t *self, const hop_wire_t *w, const uint8_t *body, size_t body_size,
             bool batched)
{
    long seq = -1;
    if (w->cmd == HOP_CMD_PUBLISH && s_wire_is(w->exchange, "burst") && body_size >= 4)
        seq = (long)((uint32_t)body[0] << 24 | (uint32_t)body[1] << 16 | (uint32_t)body[2] << 8 |
                     body[3]);
    else if (w->cmd == HOP_CMD_ACK && w->tag >= S_BURST_TAG)
        seq = (long)(w->tag - S_BURST_TAG);
    else
        return;
    int at = atomic_load(&self->seen);
    if (seq != at || at >= S_BURST) {
        atomic_fetch_add(&self->out_of_order, 1);
        return;
    }
    self->how[at] = batched ? 2 : 1;
    self->body_size[at] = (uint32_t)body_size;
    atomic_fetch_add(&self->seen, 1); // publishes how[at] to the test thread
}

// Keeps the header of a command from the client for the test to decode.
static void
s_fake_note(s_fake_t *self, const hop_wire_t *w, const uint8_t *head, size_t head_size,
            bool batched)
{
    if (head_size <= sizeof self->last[0]) {
        memcpy(self->last[w->cmd], head, head_size);
        self->last_size[w->cmd] = head_size;
    }
    int n = atomic_load(&self->pubs);
    if (w->cmd == HOP_CMD_PUBLISH && s_wire_is(w->exchange, "c") && n < S_PUBS &&
        head_size <= sizeof self->pub_head[0]) {
        memcpy(self->pub_head[n], head, head_size);
        self->pub_size[n] = head_size;
        self->pub_batched[n] = batched;
        atomic_fetch_add(&self->pubs, 1); // publishes the copy to the test thread
    }
    atomic_fetch_add(&self->count[w->cmd], 1);
}

static void
s_enc_confirm(hop_enc_t *enc, uint64_t seq, bool multiple, bool nack)
{
    hop_enc_begin(enc, HOP_CMD_CONFIRM);
    hop_enc_uint(enc, "seq", seq);
    hop_enc_bool(enc, "multiple", multiple);
    if (nack) {
        hop_enc_bool(enc, "nack", true);
        hop_enc_uint(enc, "code", 506);
        hop_enc_cstr(enc, "text", "queue 'jobs' is full");
    }
}

static void
s_enc_return(hop_enc_t *enc, const hop_wire_t *w)
{
    hop_enc_begin(enc, HOP_CMD_RETURN);
    hop_enc_uint(enc, "code", 312);
    hop_enc_cstr(enc, "text", "NO_ROUTE");
    hop_enc_str(enc, "exchange", w->exchange.ptr, w->exchange.len);
    hop_enc_str(enc, "key", w->key.ptr, w->key.len);
    if (w->has & HOP_F_SEQ)
        hop_enc_uint(enc, "seq", w->seq);
    hop_enc_map_begin(enc, "props");
    hop_enc_cstr(enc, "content_type", "text/plain");
    hop_enc_map_end(enc);
}

static void
s_enc_revoked(hop_enc_t *enc, uint64_t tag)
{
    hop_enc_begin(enc, HOP_CMD_REVOKED);
    hop_enc_cstr(enc, "consumer", "ctag-r");
    hop_enc_uint(enc, "tag", tag);
    hop_enc_cstr(enc, "text", "not acked within 1000 ms");
}

// Publishes to exchange "c": the routing key picks the answer. "hold": none; "ok": a confirm of
// its seq; "all": a multiple confirm up to its seq; "nack": a negative confirm (506); "ret": a
// return with its body, then a confirm of its seq (when it has one); "batch": one batch of a
// negative confirm of seq - 2, a return, a revoked delivery (tag 9) and a multiple confirm up to
// its seq. Publishes without a seq get no confirm.
static bool
s_fake_confirm(s_fake_t *self, zmq_msg_t *rid, const hop_wire_t *w, const uint8_t *body,
               size_t body_size, hop_enc_t *enc)
{
    bool has_seq = w->has & HOP_F_SEQ;
    if (s_wire_is(w->key, "batch")) {
        msgpack_sbuffer records;
        msgpack_sbuffer_init(&records);
        uint32_t count = 0;
        s_enc_confirm(enc, w->seq - 2, false, true);
        s_record(&records, &count, enc, NULL, 0);
        s_enc_return(enc, w);
        s_record(&records, &count, enc, body, body_size);
        s_enc_revoked(enc, 9);
        s_record(&records, &count, enc, NULL, 0);
        s_enc_confirm(enc, w->seq, true, false);
        s_record(&records, &count, enc, NULL, 0);
        s_fake_send_batch(self, rid, enc, &records, count);
        msgpack_sbuffer_destroy(&records);
        return true;
    }
    if (s_wire_is(w->key, "ret")) {
        s_enc_return(enc, w);
        s_fake_send_n(self, rid, enc, body ? body : (const uint8_t *)"", body_size);
    }
    if (!has_seq || s_wire_is(w->key, "hold"))
        return s_wire_is(w->key, "ret");
    s_enc_confirm(enc, w->seq, s_wire_is(w->key, "all"), s_wire_is(w->key, "nack"));
    s_fake_send(self, rid, enc, NULL);
    return true;
}

// consume: consume-ok with the tag asked for, else "ctag-r". Queue "rq" then gets delivery 1
// ("work"); queue "rq2" a batch of deliveries 2 and 3 and the revocation of 2.
static void
s_fake_consume(s_fake_t *self, zmq_msg_t *rid, const hop_wire_t *w, hop_enc_t *enc)
{
    hop_enc_begin(enc, HOP_CMD_CONSUME_OK);
    hop_enc_uint(enc, "id", w->id);
    if (w->consumer.len)
        hop_enc_str(enc, "consumer", w->consumer.ptr, w->consumer.len);
    else
        hop_enc_cstr(enc, "consumer", "ctag-r");
    s_fake_send(self, rid, enc, NULL);
    if (s_wire_is(w->queue, "rq")) {
        s_enc_deliver(enc, 1);
        s_fake_send(self, rid, enc, "work");
    } else if (s_wire_is(w->queue, "rq2")) {
        msgpack_sbuffer records;
        msgpack_sbuffer_init(&records);
        uint32_t count = 0;
        s_enc_deliver(enc, 2);
        s_record(&records, &count, enc, "two", 3);
        s_enc_deliver(enc, 3);
        s_record(&records, &count, enc, "three", 5);
        s_enc_revoked(enc, 2);
        s_record(&records, &count, enc, NULL, 0);
        s_fake_send_batch(self, rid, enc, &records, count);
        msgpack_sbuffer_destroy(&records);
    }
}

// Encodes the death array of the "dead" get and of the parsing tests: two records, newest first,
// with an entry that is not a map between them.
static void
s_enc_deaths(hop_enc_t *enc)
{
    hop_enc_array_begin(enc, "death", 3);
    hop_enc_map_begin(enc, NULL);
    hop_enc_cstr(enc, "reason", "expired");
    hop_enc_cstr(enc, "queue", "jobs");
    hop_enc_cstr(enc, "exchange", "");
    hop_enc_cstr(enc, "key", "jobs.eu");
    hop_enc_uint(enc, "time", 1700000000123);
    hop_enc_uint(enc, "count", 2);
    hop_enc_cstr(enc, "future", "ignored");
    hop_enc_map_end(enc);
    msgpack_pack_int(hop_enc_packer(enc), 5); // not a map: skipped
    hop_enc_map_begin(enc, NULL);
    hop_enc_cstr(enc, "reason", "rejected");
    hop_enc_cstr(enc, "queue", "work");
    hop_enc_uint(enc, "exchange", 3); // mistyped: read as absent
    hop_enc_uint(enc, "time", 1700000000000);
    hop_enc_uint(enc, "count", 1);
    hop_enc_map_end(enc);
}

// Answers one command. Returns whether it sent anything.
static bool
s_fake_answer(s_fake_t *self, zmq_msg_t *rid, const hop_wire_t *w, const uint8_t *body,
              size_t body_size, hop_enc_t *enc)
{
    switch (w->cmd) {
    case HOP_CMD_HELLO:
        atomic_fetch_add(&self->hellos, 1);
        snprintf(self->name, sizeof self->name, "%.*s", (int)w->name.len,
                 w->name.ptr ? w->name.ptr : "");
        self->hello_batch = w->batch;
        hop_enc_begin(enc, HOP_CMD_HELLO_OK);
        hop_enc_uint(enc, "id", w->id);
        hop_enc_uint(enc, "version", 1);
        hop_enc_cstr(enc, "server", "fake");
        hop_enc_uint(enc, "heartbeat", 100);
        hop_enc_uint(enc, "timeout", 500);
        hop_enc_uint(enc, "max_message", self->max_message ? self->max_message : 1000);
        break;
    case HOP_CMD_HEARTBEAT:
        atomic_fetch_add(&self->heartbeats, 1);
        return false;
    case HOP_CMD_QUEUE_DECLARE: {
        if (s_wire_is(w->queue, "batch")) {
            s_fake_batch_reply(self, rid, w, enc);
            return true;
        }
        if (s_wire_is(w->queue, "badbatch")) {
            s_fake_bad_batch_reply(self, rid, w, enc);
            return true;
        }
        if (s_wire_is(w->queue, "revoke")) {
            s_enc_revoked(enc, 1); // before the reply, as the broker's timer may fire
            s_fake_send(self, rid, enc, NULL);
        }
        if (s_wire_is(w->queue, "typo")) {
            // A reply with a mistyped field placed before its id (a newer or buggier broker).
            hop_enc_begin(enc, HOP_CMD_QUEUE_OK);
            hop_enc_cstr(enc, "messages", "many");
            hop_enc_uint(enc, "id", w->id);
            hop_enc_cstr(enc, "queue", "typo");
            break;
        }
        int code = 0;
        if (w->queue.len == 4 && w->queue.ptr[0] == 'e')
            code = atoi(w->queue.ptr + 1); // "e404" answers error 404
        if (code) {
            hop_enc_begin(enc, HOP_CMD_ERROR);
            hop_enc_uint(enc, "id", w->id);
            hop_enc_uint(enc, "code", (uint64_t)code);
            char text[64];
            snprintf(text, sizeof text, "no queue '%.*s'", (int)w->queue.len, w->queue.ptr);
            hop_enc_cstr(enc, "text", text);
        } else {
            hop_enc_begin(enc, HOP_CMD_QUEUE_OK);
            hop_enc_uint(enc, "id", w->id);
            hop_enc_str(enc, "queue", w->queue.len ? w->queue.ptr : "amq.gen-1",
                        w->queue.len ? w->queue.len : 9);
            hop_enc_uint(enc, "messages", 0);
            hop_enc_uint(enc, "consumers", 0);
        }
        break;
    }
    case HOP_CMD_PUBLISH:
        if (s_wire_is(w->exchange, "c"))
            return s_fake_confirm(self, rid, w, body, body_size, enc);
        if (!(w->exchange.len == 4 && memcmp(w->exchange.ptr, "nope", 4) == 0))
            return false;
        hop_enc_begin(enc, HOP_CMD_ERROR);
        hop_enc_uint(enc, "id", 0);
        hop_enc_uint(enc, "code", 404);
        hop_enc_cstr(enc, "text", "no exchange 'nope'");
        break;
    case HOP_CMD_CONSUME:
        s_fake_consume(self, rid, w, enc);
        return true;
    case HOP_CMD_GET:
        if (s_wire_is(w->queue, "bget")) {
            s_fake_batch_get(self, rid, w, enc);
            return true;
        }
        if (s_wire_is(w->queue, "dead")) {
            hop_enc_begin(enc, HOP_CMD_GET_OK);
            hop_enc_uint(enc, "id", w->id);
            hop_enc_uint(enc, "tag", 8);
            hop_enc_cstr(enc, "exchange", "dlx");
            hop_enc_cstr(enc, "key", "jobs.eu");
            hop_enc_uint(enc, "priority", 7);
            s_enc_deaths(enc);
            s_fake_send(self, rid, enc, "dead");
            return true;
        }
        hop_enc_begin(enc, HOP_CMD_GET_OK);
        hop_enc_uint(enc, "id", w->id);
        hop_enc_uint(enc, "tag", 7);
        hop_enc_cstr(enc, "exchange", "");
        hop_enc_cstr(enc, "key", "q");
        hop_enc_uint(enc, "messages", 0);
        // Queue "hb" holds a message whose body looks exactly like a heartbeat header.
        s_fake_send(self, rid, enc,
                    w->queue.len == 2 && memcmp(w->queue.ptr, "hb", 2) == 0 ? s_heartbeat_bytes
                                                                            : "payload");
        return true;
    case HOP_CMD_CLOSE:
        atomic_fetch_add(&self->closes, 1);
        hop_enc_begin(enc, HOP_CMD_CLOSE_OK);
        hop_enc_uint(enc, "id", w->id);
        break;
    default:
        return false;
    }
    s_fake_send(self, rid, enc, NULL);
    return true;
}

// Handles one message from the client: its records one by one when it is a batch. Returns
// whether it sent anything.
static bool
s_fake_handle(s_fake_t *self, zmq_msg_t *frames, int n, hop_enc_t *enc)
{
    hop_wire_t wire;
    if (hop_wire_decode(&wire, zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]), NULL, 0))
        return false;
    const uint8_t *body = n >= 3 ? zmq_msg_data(&frames[2]) : NULL;
    size_t body_size = n >= 3 ? zmq_msg_size(&frames[2]) : 0;
    if (wire.cmd != HOP_CMD_BATCH) {
        s_fake_note(self, &wire, zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]), false);
        s_fake_burst(self, &wire, body, body_size, false);
        return s_fake_answer(self, &frames[0], &wire, body, body_size, enc);
    }
    atomic_fetch_add(&self->batches, 1);
    bool sent = false;
    uint64_t records = 0;
    hop_batch_t batch;
    hop_batch_init(&batch, body, body_size);
    const uint8_t *head, *rec_body;
    uint32_t head_size, rec_body_size;
    int rc;
    while ((rc = hop_batch_next(&batch, &head, &head_size, &rec_body, &rec_body_size)) == 1) {
        records++;
        hop_wire_t rec;
        if (hop_wire_decode(&rec, head, head_size, NULL, 0) || rec.cmd == HOP_CMD_BATCH ||
            rec.cmd == HOP_CMD_HELLO)
            break;
        s_fake_note(self, &rec, head, head_size, true);
        s_fake_burst(self, &rec, rec_body, rec_body_size, true);
        sent |= s_fake_answer(self, &frames[0], &rec, rec_body, rec_body_size, enc);
    }
    // The client never batches a lone message, nor more than 256.
    if (rc != 0 || records != wire.count || records < 2 || records > 256)
        atomic_fetch_add(&self->out_of_order, 1000);
    return sent;
}

static void *
s_fake_run(void *arg)
{
    s_fake_t *self = arg;
    hop_enc_t enc;
    hop_enc_init(&enc);
    zmq_msg_t rid; // routing id of the last client heard, for heartbeats
    zmq_msg_init(&rid);
    bool known = false;
    int64_t last_sent = hop_client_now();
    zmq_pollitem_t item = {self->router, 0, ZMQ_POLLIN, 0};
    while (!atomic_load(&self->stop)) {
        if (atomic_load(&self->paused)) {
            s_sleep_ms(2);
            last_sent = hop_client_now();
            continue;
        }
        zmq_poll(&item, 1, 20);
        bool silent = atomic_load(&self->silent);
        while (true) {
            zmq_msg_t frames[3];
            int n = 0;
            zmq_msg_init(&frames[0]);
            if (zmq_msg_recv(&frames[0], self->router, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&frames[0]);
                break;
            }
            n = 1;
            while (zmq_msg_more(&frames[n - 1])) {
                zmq_msg_t *into = &frames[n < 3 ? n : 2];
                if (n >= 3)
                    zmq_msg_close(into);
                zmq_msg_init(into);
                zmq_msg_recv(into, self->router, 0);
                if (n < 3)
                    n++;
            }
            if (!silent && n >= 2) {
                if (s_fake_handle(self, frames, n, &enc))
                    last_sent = hop_client_now();
                zmq_msg_close(&rid);
                zmq_msg_init(&rid);
                zmq_msg_copy(&rid, &frames[0]);
                known = true;
            }
            for (int i = 0; i < n; i++)
                zmq_msg_close(&frames[i]);
        }
        if (!silent && known && hop_client_now() - last_sent >= 100) {
            hop_enc_begin(&enc, HOP_CMD_HEARTBEAT);
            s_fake_send(self, &rid, &enc, NULL);
            last_sent = hop_client_now();
        }
    }
    zmq_msg_close(&rid);
    hop_enc_fini(&enc);
    return NULL;
}

static int
s_fake_setup(void **state)
{
    s_fake_t *self = calloc(1, sizeof *self);
    self->ctx = zmq_ctx_new();
    self->router = zmq_socket(self->ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(self->router, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(self->router, "tcp://127.0.0.1:*"))
        return -1;
    size_t size = sizeof self->endpoint;
    zmq_getsockopt(self->router, ZMQ_LAST_ENDPOINT, self->endpoint, &size);
    pthread_create(&self->thread, NULL, s_fake_run, self);
    *state = self;
    return 0;
}

static int
s_fake_teardown(void **state)
{
    s_fake_t *self = *state;
    atomic_store(&self->stop, true);
    pthread_join(self->thread, NULL);
    zmq_close(self->router);
    zmq_ctx_term(self->ctx);
    free(self);
    return 0;
}

static hop_client_t *
s_connect(s_fake_t *fake)
{
    hop_client_t *client = hop_client_new();
    hop_client_set_timeout(client, 1000);
    hop_client_set_name(client, "unit");
    assert_int_equal(hop_client_connect(client, fake->endpoint), HOP_OK);
    return client;
}

static void
test_connect_says_hello_and_close_says_goodbye(void **state)
{
    s_fake_t *fake = *state;
    hop_client_t *client = s_connect(fake);
    assert_true(hop_client_connected(client));
    assert_int_equal(atomic_load(&fake->hellos), 1);
    assert_string_equal(fake->name, "unit");
    assert_int_equal(hop_client_connect(client, fake->endpoint), HOP_EINVAL); // already
    hop_client_destroy(&client);
    assert_int_equal(atomic_load(&fake->closes), 1);
}

static void
test_broker_errors_map_to_codes_and_text(void **state)
{
    s_fake_t *fake = *state;
    hop_client_t *client = s_connect(fake);
    static const struct {
        const char *queue;
        int rc;
        int code;
    } cases[] = {{"e404", HOP_ENOTFOUND, 404}, {"e403", HOP_EREFUSED, 403},
                 {"e405", HOP_EREFUSED, 405},  {"e406", HOP_EPRECOND, 406},
                 {"e541", HOP_EBROKER, 541},   {"e311", HOP_EBROKER, 311}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(hop_client_declare_queue(client, cases[i].queue, 0, NULL, 0), cases[i].rc);
        assert_int_equal(hop_client_error_code(client), cases[i].code);
    }
    assert_int_equal(hop_client_declare_queue(client, "e404", 0, NULL, 0), HOP_ENOTFOUND);
    assert_string_equal(hop_client_error(client), "broker: 404 not-found: no queue 'e404'");
    char name[HOP_NAME_MAX + 1];
    assert_int_equal(hop_client_declare_queue(client, "", 0, name, sizeof name), HOP_OK);
    assert_string_equal(name, "amq.gen-1");
    char tiny[4];
    assert_int_equal(hop_client_declare_queue(client, "", 0, tiny, sizeof tiny), HOP_EINVAL);
    hop_client_destroy(&client);
}

static void
test_async_error_is_returned_by_the_next_waiting_call(void **state)
{
    s_fake_t *fake = *state;
    hop_client_t *client = s_connect(fake);
    assert_int_equal(hop_client_publish(client, "nope", "k", "x", 1, NULL), HOP_OK);
    // The broker answers in order: the 404 arrives before the declare's reply.
    assert_int_equal(hop_client_declare_queue(client, "q", 0, NULL, 0), HOP_ENOTFOUND);
    assert_string_equal(hop_client_error(client), "broker: 404 not-found: no exchange 'nope'");
    assert_int_equal(hop_client_declare_queue(client, "q", 0, NULL, 0), HOP_OK);
    // receive reports it as soon as it arrives.
    assert_int_equal(hop_client_publish(client, "nope", "k", "x", 1, NULL), HOP_OK);
    hop_delivery_t *d;
    assert_int_equal(hop_client_receive(client, &d, 2000), HOP_ENOTFOUND);
    assert_null(d);
    assert_int_equal(hop_client_receive(client, &d, 0), HOP_ETIMEOUT);
    hop_client_destroy(&client);
}

static void
test_io_thread_heartbeats_while_the_user_thread_is_busy(void **state)
{
    s_fake_t *fake = *state;
    hop_client_t *client = s_connect(fake);
    // No calls for longer than the broker's 500 ms timeout: only the I/O thread talks.
    assert_true(s_wait_for(&fake->heartbeats, 6, 5000));
    assert_int_equal(hop_client_declare_queue(client, "q", 0, NULL, 0), HOP_OK);
    assert_int_equal(atomic_load(&fake->hellos), 1); // still the first connection
    hop_client_destroy(&client);
}

static void
test_silent_broker_is_lost_then_reconnected(void **state)
{
    s_fake_t *fake = *state;
    hop_client_t *client = s_connect(fake);
    hop_client_set_timeout(client, 300);
    atomic_store(&fake->silent, true);
    // The I/O thread reports the broker lost after 500 ms of silence; the reconnect attempt
    // that follows fails while the broker stays silent.
    int rc = HOP_OK;
    for (int i = 0; i < 100 && rc == HOP_OK; i++) {
        s_sleep_ms(50);
        rc = hop_client_publish(client, "", "q", "x", 1, NULL);
    }
    assert_int_equal(rc, HOP_ECONNECT);
    assert_false(hop_client_connected(client));
    atomic_store(&fake->silent, false);
    assert_int_equal(hop_client_declare_queue(client, "q", 0, NULL, 0), HOP_OK);
    assert_true(hop_client_connected(client));
    assert_true(atomic_load(&fake->hellos) >= 2);
    hop_client_destroy(&client);
}

static void
test_unexpected_frame_means_lost_and_old_tags_are_refused(void **state)
{
    s_fake_t *fake = *state;
    hop_client_t *client = s_connect(fake);
    hop_delivery_t *d;
    assert_int_equal(hop_client_get(client, "q", 0, &d), HOP_OK);
    assert_int_equal(d->tag, 7);
    assert_int_equal(d->body_size, 7);
    assert_memory_equal(d->body, "payload", 7);
    assert_int_equal(hop_client_ack(client, d->tag, false), HOP_OK);
    // 505: the broker forgot us. The call fails; the next one reconnects.
    assert_int_equal(hop_client_declare_queue(client, "e505", 0, NULL, 0), HOP_ECONNECT);
    assert_int_equal(hop_client_error_code(client), 505);
    assert_false(hop_client_connected(client));
    assert_int_equal(hop_client_declare_queue(client, "q", 0, NULL, 0), HOP_OK);
    assert_int_equal(atomic_load(&fake->hellos), 2);
    // The tag of the first connection must not settle a message of the second.
    assert_int_equal(hop_client_ack(client, d->tag, false), HOP_EPRECOND);
    hop_delivery_destroy(&d);
    assert_int_equal(hop_client_get(client, "q", 0, &d), HOP_OK);
    assert_int_equal(hop_client_ack(client, d->tag, false), HOP_OK);
    hop_delivery_destroy(&d);
    hop_client_destroy(&client);
}

static void
test_body_that_looks_like_a_heartbeat_is_delivered(void **state)
{
    s_fake_t *fake = *state;
    hop_client_t *client = s_connect(fake);
    hop_delivery_t *d;
    assert_int_equal(hop_client_get(client, "hb", 0, &d), HOP_OK);
    assert_int_equal(d->body_size, strlen(s_heartbeat_bytes));
    assert_memory_equal(d->body, s_heartbeat_bytes, d->body_size);
    hop_delivery_destroy(&d);
    hop_client_destroy(&client);
}

static void
test_without_reconnect_a_lost_client_stays_closed(void **state)
{
    s_fake_t *fake = *state;
    hop_client_t *client = s_connect(fake);
    hop_client_set_reconnect(client, false);
    assert_int_equal(hop_client_declare_queue(client, "e505", 0, NULL, 0), HOP_ECONNECT);
    assert_int_equal(hop_client_declare_queue(client, "q", 0, NULL, 0), HOP_ECLOSED);
    assert_non_null(strstr(hop_client_error(client), "lost"));
    assert_int_equal(hop_client_connect(client, fake->endpoint), HOP_OK);
    assert_int_equal(hop_client_declare_queue(client, "q", 0, NULL, 0), HOP_OK);
    hop_client_destroy(&client);
}

static void
test_body_over_max_message_is_refused_locally(void **state)
{
    s_fake_t *fake = *state;
    hop_client_t *client = s_connect(fake);
    char body[1001] = {0};
    // Refused as the broker would refuse it (311), not as a bad argument: callers such as the
    // CLI report it as a refusal (exit 1), not a usage error.
    assert_int_equal(hop_client_publish(client, "", "q", body, sizeof body, NULL), HOP_EBROKER);
    assert_int_equal(hop_client_error_code(client), HOP_CODE_CONTENT_TOO_LARGE);
    assert_int_equal(hop_client_publish(client, "", "q", body, 1000, NULL), HOP_OK);
    hop_client_destroy(&client);
}

// Such a reply is still matched to its request by cmd and id (the shared decoder reads past the
// bad field), so the call succeeds instead of timing out; the bad field is simply absent.
static void
test_reply_with_mistyped_field_still_answers_its_request(void **state)
{
    s_fake_t *fake = *state;
    hop_client_t *client = s_connect(fake);
    hop_client_set_timeout(client, 2000);
    char name[64] = "";
    uint64_t messages = 99;
    assert_int_equal(
        hop_client_declare_queue_ex(client, "typo", 0, name, sizeof name, &messages, NULL), HOP_OK);
    assert_string_equal(name, "typo");
    assert_int_equal(messages, 0);
    hop_client_destroy(&client);
}

static void
test_hello_says_batch(void **state)
{
    s_fake_t *fake = *state;
    hop_client_t *client = s_connect(fake);
    assert_true(fake->hello_batch);
    hop_client_destroy(&client);
}

static void
test_batch_from_broker_is_handled_record_by_record(void **state)
{
    s_fake_t *fake = *state;
    hop_client_t *client = s_connect(fake);
    // The reply is the fourth of six records: matched by id, with the records before it
    // handled first and the ones after it kept for later, in order.
    assert_int_equal(hop_client_declare_queue(client, "batch", 0, NULL, 0), HOP_OK);
    hop_delivery_t *d[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(hop_client_receive(client, &d[i], 1000), HOP_OK);
        assert_int_equal(d[i]->tag, i + 1);
        assert_string_equal(d[i]->consumer, "ctag-b");
        assert_string_equal(d[i]->exchange, "ex");
        assert_string_equal(d[i]->routing_key, "k");
    }
    // The error after the last delivery comes after it.
    hop_delivery_t *none;
    assert_int_equal(hop_client_receive(client, &none, 1000), HOP_ENOTFOUND);
    assert_string_equal(hop_client_error(client), "broker: 404 not-found: no exchange 'gone'");
    assert_int_equal(hop_client_receive(client, &none, 0), HOP_ETIMEOUT);
    // Bodies stay valid after their batch is gone: copied when small, shared when large.
    assert_string_equal(d[0]->props.content_type, "text/plain");
    assert_int_equal(d[0]->body_size, 3);
    assert_memory_equal(d[0]->body, "one", 3);
    assert_int_equal(d[1]->body_size, HOP_BATCH_BODY_MAX + 1000);
    for (size_t i = 0; i < d[1]->body_size; i++)
        assert_int_equal(((const char *)d[1]->body)[i], 'b');
    assert_int_equal(d[2]->body_size, 5);
    assert_memory_equal(d[2]->body, "three", 5);
    hop_delivery_destroy(&d[1]);
    hop_delivery_destroy(&d[0]);
    hop_delivery_destroy(&d[2]);

    // A get-ok inside a batch, after a delivery.
    hop_delivery_t *got;
    assert_int_equal(hop_client_get(client, "bget", 0, &got), HOP_OK);
    assert_int_equal(got->tag, 6);
    assert_string_equal(got->routing_key, "bget");
    assert_int_equal(got->body_size, 1);
    assert_memory_equal(got->body, "g", 1);
    assert_int_equal(hop_client_receive(client, &d[0], 1000), HOP_OK);
    assert_int_equal(d[0]->tag, 5);
    assert_memory_equal(d[0]->body, "d", 1);
    hop_delivery_destroy(&d[0]);
    hop_delivery_destroy(&got);
    hop_client_destroy(&client);
}

static void
test_malformed_batch_is_a_protocol_error_after_its_good_records(void **state)
{
    s_fake_t *fake = *state;
    hop_client_t *client = s_connect(fake);
    // The batch announces one record more than it holds; the reply follows on its own.
    assert_int_equal(hop_client_declare_queue(client, "badbatch", 0, NULL, 0), HOP_EPROTO);
    assert_non_null(strstr(hop_client_error(client), "batch: fewer records than its count"));
    hop_delivery_t *d;
    assert_int_equal(hop_client_receive(client, &d, 1000), HOP_OK);
    assert_memory_equal(d->body, "x", 1);
    hop_delivery_destroy(&d);
    assert_int_equal(hop_client_receive(client, &d, 1000), HOP_OK);
    assert_memory_equal(d->body, "y", 1);
    hop_delivery_destroy(&d);
    assert_int_equal(hop_client_receive(client, &d, 0), HOP_ETIMEOUT);
    assert_true(hop_client_connected(client));
    assert_int_equal(hop_client_declare_queue(client, "q", 0, NULL, 0), HOP_OK);
    hop_client_destroy(&client);
}

// Publishes burst message seq: a body of body_size bytes starting with seq (big-endian).
static int
s_publish_seq(hop_client_t *client, uint32_t seq, size_t body_size)
{
    static uint8_t body[HOP_BATCH_BODY_MAX + 100];
    assert_true(body_size >= 4 && body_size <= sizeof body);
    uint8_t be[4] = {(uint8_t)(seq >> 24), (uint8_t)(seq >> 16), (uint8_t)(seq >> 8), (uint8_t)seq};
    memcpy(body, be, 4);
    memset(body + 4, 'p', body_size - 4);
    return hop_client_publish(client, "burst", "k", body, body_size, NULL);
}

static void
test_burst_is_sent_in_batches_in_order(void **state)
{
    s_fake_t *fake = *state;
    fake->max_message = 1 << 20;
    hop_client_t *client = s_connect(fake);
    // A lone message goes out at once, as it is: nothing waits to fill a batch.
    assert_int_equal(s_publish_seq(client, 0, 10), HOP_OK);
    assert_true(s_wait_for(&fake->seen, 1, 5000));
    assert_int_equal(fake->how[0], 1);

    // Made while the broker reads nothing: the I/O thread finds them queued. Acks (one frame),
    // publishes, large bodies and a raw call (never batched) are interleaved.
    atomic_store(&fake->paused, true);
    uint32_t raw_seq = S_BURST / 2;
    for (uint32_t seq = 1; seq < S_BURST; seq++) {
        if (seq == raw_seq) {
            hop_enc_t enc;
            hop_enc_init(&enc);
            hop_enc_begin(&enc, HOP_CMD_PUBLISH);
            hop_enc_cstr(&enc, "exchange", "burst");
            hop_enc_cstr(&enc, "key", "k");
            size_t size;
            const void *header = hop_enc_end(&enc, &size);
            uint8_t body[4] = {(uint8_t)(seq >> 24), (uint8_t)(seq >> 16), (uint8_t)(seq >> 8),
                               (uint8_t)seq};
            assert_int_equal(hop_client_call_raw(client, header, size, body, 4, NULL, NULL),
                             HOP_OK);
            hop_enc_fini(&enc);
        } else if (seq % 10 == 3)
            assert_int_equal(hop_client_ack(client, S_BURST_TAG + seq, false), HOP_OK);
        else if (seq % 500 == 7)
            assert_int_equal(s_publish_seq(client, seq, HOP_BATCH_BODY_MAX + 1), HOP_OK);
        else
            assert_int_equal(s_publish_seq(client, seq, 4 + seq % 50), HOP_OK);
    }
    atomic_store(&fake->paused, false);
    assert_true(s_wait_for(&fake->seen, S_BURST, 10000));
    assert_int_equal(atomic_load(&fake->out_of_order), 0);
    assert_true(atomic_load(&fake->batches) > 0);
    int batched = 0;
    for (uint32_t seq = 1; seq < S_BURST; seq++) {
        if (seq == raw_seq || seq % 500 == 7)
            assert_int_equal(fake->how[seq], 1); // alone
        else if (seq % 10 == 3)
            assert_int_equal(fake->body_size[seq], 0);
        else
            assert_int_equal(fake->body_size[seq], 4 + seq % 50);
        batched += fake->how[seq] == 2;
    }
    assert_true(batched > 0);
    hop_client_destroy(&client);
}

// ---------------------------------------------------------------------------------------
// Delivery guarantees: confirms, returns, revoked deliveries, queue arguments

// What the callbacks heard, copied (what they are given is borrowed).
typedef struct {
    int confirms;
    struct {
        uint64_t seq;
        bool multiple, ok;
        int code;
        char text[256];
    } confirm[16];
    int returns;
    struct {
        uint64_t tag;
        int code;
        char text[64], exchange[32], key[32], content_type[32], body[32];
        size_t body_size;
    } ret[4];
    int revokes;
    struct {
        char consumer[32];
        uint64_t tag;
    } revoked[4];
    bool republish; // the confirm callback publishes a refused message again, to "c"/"ok"
    int rc;         // of that publish
    uint64_t seq;   // and its seq
} s_log_t;

static void
s_on_confirm(hop_client_t *client, uint64_t seq, bool multiple, bool ok, int code, const char *text,
             void *arg)
{
    s_log_t *log = arg;
    assert_true(log->confirms < 16);
    assert_non_null(text);
    log->confirm[log->confirms].seq = seq;
    log->confirm[log->confirms].multiple = multiple;
    log->confirm[log->confirms].ok = ok;
    log->confirm[log->confirms].code = code;
    snprintf(log->confirm[log->confirms].text, sizeof log->confirm[0].text, "%s", text);
    log->confirms++;
    if (!ok && log->republish) {
        log->republish = false; // once
        log->rc = hop_client_publish_ex(client, "c", "ok", "again", 5, NULL, NULL, &log->seq);
    }
}

static void
s_on_return(hop_client_t *client, const hop_delivery_t *d, int code, const char *text, void *arg)
{
    (void)client;
    s_log_t *log = arg;
    assert_true(log->returns < 4);
    s_log_t *l = log;
    int i = l->returns++;
    l->ret[i].tag = d->tag;
    l->ret[i].code = code;
    snprintf(l->ret[i].text, sizeof l->ret[i].text, "%s", text);
    snprintf(l->ret[i].exchange, sizeof l->ret[i].exchange, "%s", d->exchange);
    snprintf(l->ret[i].key, sizeof l->ret[i].key, "%s", d->routing_key);
    snprintf(l->ret[i].content_type, sizeof l->ret[i].content_type, "%s",
             d->props.content_type ? d->props.content_type : "");
    l->ret[i].body_size = d->body_size;
    snprintf(l->ret[i].body, sizeof l->ret[i].body, "%.*s", (int)d->body_size,
             (const char *)d->body);
}

static void
s_on_revoked(hop_client_t *client, const char *consumer, uint64_t tag, void *arg)
{
    (void)client;
    s_log_t *log = arg;
    assert_true(log->revokes < 4);
    snprintf(log->revoked[log->revokes].consumer, sizeof log->revoked[0].consumer, "%s", consumer);
    log->revoked[log->revokes].tag = tag;
    log->revokes++;
}

static hop_client_t *
s_connect_logged(s_fake_t *fake, s_log_t *log)
{
    memset(log, 0, sizeof *log);
    hop_client_t *client = s_connect(fake);
    hop_client_on_confirm(client, s_on_confirm, log);
    hop_client_on_return(client, s_on_return, log);
    hop_client_on_revoked(client, s_on_revoked, log);
    return client;
}

// Decodes publish i to exchange "c" as the fake broker received it.
static void
s_fake_pub(s_fake_t *fake, int i, hop_wire_t *wire)
{
    assert_true(i < atomic_load(&fake->pubs));
    assert_int_equal(hop_wire_decode(wire, fake->pub_head[i], fake->pub_size[i], NULL, 0), 0);
    assert_int_equal(wire->cmd, HOP_CMD_PUBLISH);
}

// Decodes the last header of cmd the fake broker received, once it has seen at least n.
static void
s_fake_last(s_fake_t *fake, hop_cmd_t cmd, int n, hop_wire_t *wire)
{
    assert_true(s_wait_for(&fake->count[cmd], n, 5000));
    assert_int_equal(hop_wire_decode(wire, fake->last[cmd], fake->last_size[cmd], NULL, 0), 0);
    assert_int_equal(wire->cmd, cmd);
}

#define S_ARG_BITS                                                                                 \
    (HOP_F_MAX_LENGTH | HOP_F_MAX_LENGTH_BYTES | HOP_F_OVERFLOW | HOP_F_MESSAGE_TTL |              \
     HOP_F_EXPIRES | HOP_F_MAX_DELIVERIES | HOP_F_DLX | HOP_F_DLK | HOP_F_RETRY_DELAY |            \
     HOP_F_RETRY_DELAY_MAX | HOP_F_MAX_PRIORITY | HOP_F_ACK_TIMEOUT)

static void
test_confirms_number_publishes_per_batch_record(void **state)
{
    s_fake_t *fake = *state;
    s_log_t log;
    hop_client_t *client = s_connect_logged(fake, &log);
    uint64_t seq = 99;
    // Outside confirm mode nothing is numbered, and there is nothing to wait for.
    assert_int_equal(hop_client_publish_ex(client, "c", "hold", "x", 1, NULL, NULL, &seq), HOP_OK);
    assert_int_equal(seq, 0);
    assert_int_equal(hop_client_wait_confirms(client, 100, NULL), HOP_EINVAL);
    assert_non_null(strstr(hop_client_error(client), "hop_client_confirm_select"));
    assert_int_equal(hop_client_confirm_select(client), HOP_OK);
    assert_int_equal(hop_client_confirm_select(client), HOP_OK); // idempotent

    // Made while the broker reads nothing, so that the I/O thread batches them: each record
    // carries its own seq, and the options of its own publish.
    atomic_store(&fake->paused, true);
    hop_publish_opts_t opts = {
        .mandatory = true, .persistent = true, .expiration = 60000, .priority = 9};
    for (uint64_t i = 1; i < 200; i++) {
        assert_int_equal(
            hop_client_publish_ex(client, "c", "hold", "m", 1, NULL, i == 1 ? &opts : NULL, &seq),
            HOP_OK);
        assert_int_equal(seq, i);
    }
    assert_int_equal(hop_client_unconfirmed(client), 199);
    assert_int_equal(hop_client_publish_ex(client, "c", "all", "m", 1, NULL, NULL, &seq), HOP_OK);
    assert_int_equal(seq, 200);
    atomic_store(&fake->paused, false);

    uint64_t nacked = 99;
    assert_int_equal(hop_client_wait_confirms(client, 5000, &nacked), HOP_OK);
    assert_int_equal(nacked, 0);
    assert_int_equal(hop_client_unconfirmed(client), 0);
    // One multiple confirm settled all 200, and the callback heard it once.
    assert_int_equal(log.confirms, 1);
    assert_int_equal(log.confirm[0].seq, 200);
    assert_true(log.confirm[0].multiple);
    assert_true(log.confirm[0].ok);
    assert_int_equal(log.confirm[0].code, 0);
    assert_string_equal(log.confirm[0].text, "");

    assert_int_equal(atomic_load(&fake->pubs), 201);
    hop_wire_t w;
    s_fake_pub(fake, 0, &w);
    assert_false(w.has & HOP_F_SEQ); // before confirm_select
    int batched = 0;
    for (int i = 1; i <= 200; i++) {
        s_fake_pub(fake, i, &w);
        assert_true(w.has & HOP_F_SEQ);
        assert_int_equal(w.seq, i);
        batched += fake->pub_batched[i];
    }
    assert_true(batched > 0);
    s_fake_pub(fake, 1, &w);
    assert_true(w.mandatory && w.persistent);
    assert_int_equal(w.expiration, 60000);
    assert_int_equal(w.priority, 9);
    s_fake_pub(fake, 2, &w);
    assert_int_equal(
        w.has & (HOP_F_MANDATORY | HOP_F_PERSISTENT | HOP_F_EXPIRATION | HOP_F_PRIORITY), 0);
    hop_client_destroy(&client);
}

static void
test_confirms_single_and_multiple_settle_what_they_name(void **state)
{
    s_fake_t *fake = *state;
    s_log_t log;
    hop_client_t *client = s_connect_logged(fake, &log);
    hop_client_confirm_select(client);
    uint64_t seq;
    // 1 held, 2 confirmed alone: 1 is still pending.
    assert_int_equal(hop_client_publish_ex(client, "c", "hold", "a", 1, NULL, NULL, &seq), HOP_OK);
    assert_int_equal(hop_client_publish_ex(client, "c", "ok", "b", 1, NULL, NULL, &seq), HOP_OK);
    assert_int_equal(seq, 2);
    assert_int_equal(hop_client_wait_confirms(client, 200, NULL), HOP_ETIMEOUT);
    assert_string_equal(hop_client_error(client), "publish 1 still unconfirmed after 200 ms");
    assert_int_equal(hop_client_unconfirmed(client), 1);
    assert_int_equal(log.confirms, 1);
    assert_int_equal(log.confirm[0].seq, 2);
    assert_false(log.confirm[0].multiple);
    // 3 held, 4 multiple: settles 1, 3 and 4.
    assert_int_equal(hop_client_publish_ex(client, "c", "hold", "c", 1, NULL, NULL, &seq), HOP_OK);
    assert_int_equal(hop_client_publish_ex(client, "c", "all", "d", 1, NULL, NULL, &seq), HOP_OK);
    assert_int_equal(seq, 4);
    assert_int_equal(hop_client_wait_confirms(client, 2000, NULL), HOP_OK);
    assert_int_equal(hop_client_unconfirmed(client), 0);
    assert_int_equal(log.confirms, 2);
    assert_int_equal(log.confirm[1].seq, 4);
    assert_true(log.confirm[1].multiple);
    // Plain publishes, requests' included, are numbered too.
    assert_int_equal(hop_client_publish(client, "c", "ok", "e", 1, NULL), HOP_OK);
    assert_int_equal(hop_client_wait_confirms(client, 2000, NULL), HOP_OK);
    assert_int_equal(log.confirm[2].seq, 5);
    hop_client_destroy(&client);
}

static void
test_wait_confirms_reports_nacks_and_callbacks_may_publish(void **state)
{
    s_fake_t *fake = *state;
    s_log_t log;
    hop_client_t *client = s_connect_logged(fake, &log);
    hop_client_confirm_select(client);
    log.republish = true;
    uint64_t seq;
    assert_int_equal(hop_client_publish_ex(client, "c", "ok", "a", 1, NULL, NULL, &seq), HOP_OK);
    assert_int_equal(hop_client_publish_ex(client, "c", "nack", "b", 1, NULL, NULL, &seq), HOP_OK);
    assert_int_equal(seq, 2);
    uint64_t nacked = 0;
    // The callback republishes the refused message from inside the wait, which then waits
    // for that one too.
    assert_int_equal(hop_client_wait_confirms(client, 2000, &nacked), HOP_ENACKED);
    assert_int_equal(nacked, 1);
    assert_int_equal(hop_client_error_code(client), 506);
    assert_string_equal(hop_client_error(client), "publish 2 was refused by the broker: 506 "
                                                  "resource-error: queue 'jobs' is full");
    assert_int_equal(log.rc, HOP_OK);
    assert_int_equal(log.seq, 3);
    assert_int_equal(hop_client_unconfirmed(client), 0);
    assert_int_equal(log.confirms, 3);
    assert_true(log.confirm[0].ok);
    assert_int_equal(log.confirm[1].seq, 2);
    assert_false(log.confirm[1].ok);
    assert_false(log.confirm[1].multiple);
    assert_int_equal(log.confirm[1].code, 506);
    assert_string_equal(log.confirm[1].text, "queue 'jobs' is full");
    assert_int_equal(log.confirm[2].seq, 3);
    assert_true(log.confirm[2].ok);
    // Reported once: the next wait starts afresh.
    assert_int_equal(hop_client_wait_confirms(client, 0, &nacked), HOP_OK);
    assert_int_equal(nacked, 0);
    // Two refused: counted, the first one explains.
    assert_int_equal(hop_client_publish(client, "c", "nack", "c", 1, NULL), HOP_OK);
    assert_int_equal(hop_client_publish(client, "c", "nack", "d", 1, NULL), HOP_OK);
    assert_int_equal(hop_client_wait_confirms(client, 2000, &nacked), HOP_ENACKED);
    assert_int_equal(nacked, 2);
    assert_string_equal(hop_client_error(client),
                        "2 publishes were not confirmed; the first, publish 4, was refused by "
                        "the broker: 506 resource-error: queue 'jobs' is full");
    hop_client_destroy(&client);
}

static void
test_wait_confirms_times_out_then_succeeds(void **state)
{
    s_fake_t *fake = *state;
    s_log_t log;
    hop_client_t *client = s_connect_logged(fake, &log);
    hop_client_confirm_select(client);
    assert_int_equal(hop_client_wait_confirms(client, 0, NULL), HOP_OK); // nothing published
    assert_int_equal(hop_client_wait_confirms(client, -2, NULL), HOP_EINVAL);
    for (int i = 0; i < 3; i++)
        assert_int_equal(hop_client_publish(client, "c", "hold", "x", 1, NULL), HOP_OK);
    uint64_t nacked = 99;
    int64_t start = hop_client_now();
    assert_int_equal(hop_client_wait_confirms(client, 150, &nacked), HOP_ETIMEOUT);
    assert_true(hop_client_now() - start >= 150);
    assert_int_equal(nacked, 0);
    assert_string_equal(hop_client_error(client),
                        "3 publishes still unconfirmed after 150 ms (the oldest is 1)");
    assert_int_equal(hop_client_unconfirmed(client), 3);
    assert_int_equal(log.confirms, 0);
    assert_int_equal(hop_client_publish(client, "c", "all", "x", 1, NULL), HOP_OK);
    assert_int_equal(hop_client_wait_confirms(client, 2000, &nacked), HOP_OK);
    assert_int_equal(hop_client_unconfirmed(client), 0);
    hop_client_destroy(&client);
}

static void
test_lost_connection_nacks_pending_publishes(void **state)
{
    s_fake_t *fake = *state;
    s_log_t log;
    hop_client_t *client = s_connect_logged(fake, &log);
    hop_client_confirm_select(client);
    assert_int_equal(hop_client_publish(client, "c", "hold", "a", 1, NULL), HOP_OK);
    assert_int_equal(hop_client_publish(client, "c", "hold", "b", 1, NULL), HOP_OK);
    assert_int_equal(hop_client_declare_queue(client, "e505", 0, NULL, 0), HOP_ECONNECT);
    assert_int_equal(hop_client_unconfirmed(client), 0);
    uint64_t nacked = 0;
    // Nothing is pending any more: the wait needs no connection.
    assert_int_equal(hop_client_wait_confirms(client, 1000, &nacked), HOP_ENACKED);
    assert_false(hop_client_connected(client));
    assert_int_equal(nacked, 2);
    assert_int_equal(hop_client_error_code(client), 0);
    assert_non_null(strstr(hop_client_error(client),
                           "2 publishes were not confirmed; the first, publish 1, was lost with "
                           "the connection (connection to tcp://"));
    assert_non_null(strstr(hop_client_error(client), "): publish it again"));
    assert_int_equal(log.confirms, 1);
    assert_int_equal(log.confirm[0].seq, 2);
    assert_true(log.confirm[0].multiple);
    assert_false(log.confirm[0].ok);
    assert_int_equal(log.confirm[0].code, 0);
    assert_non_null(strstr(log.confirm[0].text, "not confirmed: connection to tcp://"));
    // The next publish reconnects and goes on counting.
    uint64_t seq;
    assert_int_equal(hop_client_publish_ex(client, "c", "ok", "a", 1, NULL, NULL, &seq), HOP_OK);
    assert_int_equal(seq, 3);
    assert_int_equal(atomic_load(&fake->hellos), 2);
    assert_int_equal(hop_client_wait_confirms(client, 2000, &nacked), HOP_OK);
    assert_int_equal(log.confirms, 2);
    assert_int_equal(log.confirm[1].seq, 3);
    hop_client_destroy(&client);
}

static void
test_returned_message_reaches_the_return_callback(void **state)
{
    s_fake_t *fake = *state;
    s_log_t log;
    hop_client_t *client = s_connect_logged(fake, &log);
    hop_publish_opts_t opts = {.mandatory = true};
    // Outside confirm mode: heard inside receive, which goes on waiting for a delivery.
    assert_int_equal(hop_client_publish_ex(client, "c", "ret", "lost", 4, NULL, &opts, NULL),
                     HOP_OK);
    hop_delivery_t *d;
    assert_int_equal(hop_client_receive(client, &d, 300), HOP_ETIMEOUT);
    assert_int_equal(log.returns, 1);
    assert_int_equal(log.ret[0].tag, 0);
    assert_int_equal(log.ret[0].code, HOP_CODE_NO_ROUTE);
    assert_string_equal(log.ret[0].text, "NO_ROUTE");
    assert_string_equal(log.ret[0].exchange, "c");
    assert_string_equal(log.ret[0].key, "ret");
    assert_string_equal(log.ret[0].content_type, "text/plain");
    assert_int_equal(log.ret[0].body_size, 4);
    assert_string_equal(log.ret[0].body, "lost");
    // In confirm mode the return comes before the (positive) confirm.
    hop_client_confirm_select(client);
    assert_int_equal(hop_client_publish_ex(client, "c", "ret", "again", 5, NULL, &opts, NULL),
                     HOP_OK);
    assert_int_equal(hop_client_wait_confirms(client, 2000, NULL), HOP_OK);
    assert_int_equal(log.returns, 2);
    assert_string_equal(log.ret[1].body, "again");
    assert_int_equal(log.confirms, 1);
    assert_true(log.confirm[0].ok);
    // Without a callback a return is dropped.
    hop_client_on_return(client, NULL, NULL);
    assert_int_equal(hop_client_publish_ex(client, "c", "ret", "x", 1, NULL, &opts, NULL), HOP_OK);
    assert_int_equal(hop_client_wait_confirms(client, 2000, NULL), HOP_OK);
    assert_int_equal(log.returns, 2);
    hop_client_destroy(&client);
}

static void
test_confirms_returns_and_revocations_inside_a_broker_batch(void **state)
{
    s_fake_t *fake = *state;
    s_log_t log;
    hop_client_t *client = s_connect_logged(fake, &log);
    hop_client_confirm_select(client);
    hop_publish_opts_t opts = {.mandatory = true};
    assert_int_equal(hop_client_publish(client, "c", "hold", "1", 1, NULL), HOP_OK);
    assert_int_equal(hop_client_publish(client, "c", "hold", "2", 1, NULL), HOP_OK);
    // Answered with one batch: nack of 1, the return of 3, tag 9 revoked, confirm of 2-3.
    assert_int_equal(hop_client_publish_ex(client, "c", "batch", "3", 1, NULL, &opts, NULL),
                     HOP_OK);
    uint64_t nacked = 0;
    assert_int_equal(hop_client_wait_confirms(client, 2000, &nacked), HOP_ENACKED);
    assert_int_equal(nacked, 1);
    assert_string_equal(hop_client_error(client), "publish 1 was refused by the broker: 506 "
                                                  "resource-error: queue 'jobs' is full");
    assert_int_equal(log.confirms, 2);
    assert_int_equal(log.confirm[0].seq, 1);
    assert_false(log.confirm[0].ok);
    assert_int_equal(log.confirm[1].seq, 3);
    assert_true(log.confirm[1].multiple);
    assert_true(log.confirm[1].ok);
    assert_int_equal(log.returns, 1);
    assert_string_equal(log.ret[0].key, "batch");
    assert_string_equal(log.ret[0].body, "3");
    assert_int_equal(log.revokes, 1);
    assert_string_equal(log.revoked[0].consumer, "ctag-r");
    assert_int_equal(log.revoked[0].tag, 9);
    assert_int_equal(hop_client_ack(client, 9, false), HOP_EPRECOND);
    assert_int_equal(hop_client_ack(client, 10, false), HOP_OK);
    hop_client_destroy(&client);
}

static void
test_revoked_tag_is_refused_locally(void **state)
{
    s_fake_t *fake = *state;
    s_log_t log;
    hop_client_t *client = s_connect_logged(fake, &log);
    char tag[64];
    assert_int_equal(hop_client_consume_ex(client, "rq", NULL, 10, 0, 999, tag, sizeof tag),
                     HOP_EINVAL);
    assert_string_equal(hop_client_error(client), "ack_timeout_ms is 999: it must be at least "
                                                  "1000 ms (0: the queue's or the broker's "
                                                  "default)");
    assert_int_equal(hop_client_consume_ex(client, "rq", NULL, 10, 0, 60000, tag, sizeof tag),
                     HOP_OK);
    assert_string_equal(tag, "ctag-r");
    hop_wire_t w;
    s_fake_last(fake, HOP_CMD_CONSUME, 1, &w);
    assert_true(w.has & HOP_F_ACK_TIMEOUT);
    assert_int_equal(w.ack_timeout, 60000);
    assert_int_equal(w.prefetch, 10);
    hop_delivery_t *d;
    assert_int_equal(hop_client_receive(client, &d, 1000), HOP_OK);
    assert_int_equal(d->tag, 1);
    // The broker revokes it while the application works on it; the callback hears it by the
    // end of the next call.
    assert_int_equal(hop_client_declare_queue(client, "revoke", 0, NULL, 0), HOP_OK);
    assert_int_equal(log.revokes, 1);
    assert_string_equal(log.revoked[0].consumer, "ctag-r");
    assert_int_equal(log.revoked[0].tag, 1);
    assert_int_equal(hop_client_ack(client, d->tag, false), HOP_EPRECOND);
    assert_string_equal(hop_client_error(client),
                        "delivery tag 1 was revoked by the broker: not acked within its ack "
                        "deadline; the message went back to its queue");
    assert_int_equal(hop_client_nack(client, d->tag, false, true), HOP_EPRECOND);
    assert_int_equal(hop_client_reject(client, d->tag, false), HOP_EPRECOND);
    assert_int_equal(hop_client_retry_later(client, d->tag, 100), HOP_EPRECOND);
    hop_delivery_destroy(&d);
    // Nothing of it reached the broker; acks of other tags do.
    assert_int_equal(hop_client_ack(client, 2, false), HOP_OK);
    s_fake_last(fake, HOP_CMD_ACK, 1, &w);
    assert_int_equal(w.tag, 2);
    assert_int_equal(atomic_load(&fake->count[HOP_CMD_NACK]), 0);
    assert_int_equal(atomic_load(&fake->count[HOP_CMD_REJECT]), 0);
    hop_client_destroy(&client);
}

static void
test_revoked_delivery_still_buffered_is_dropped(void **state)
{
    s_fake_t *fake = *state;
    s_log_t log;
    hop_client_t *client = s_connect_logged(fake, &log);
    // One batch: deliveries 2 and 3, then 2 revoked before the application received it.
    assert_int_equal(hop_client_consume(client, "rq2", NULL, 0, 0, NULL, 0), HOP_OK);
    hop_delivery_t *d;
    assert_int_equal(hop_client_receive(client, &d, 1000), HOP_OK);
    assert_int_equal(d->tag, 3);
    assert_memory_equal(d->body, "three", 5);
    assert_int_equal(log.revokes, 1);
    assert_int_equal(log.revoked[0].tag, 2);
    assert_int_equal(hop_client_ack(client, d->tag, false), HOP_OK);
    hop_delivery_destroy(&d);
    assert_int_equal(hop_client_receive(client, &d, 0), HOP_ETIMEOUT);
    assert_int_equal(hop_client_ack(client, 2, false), HOP_EPRECOND);
    hop_client_destroy(&client);
}

static void
test_retry_later_sends_nack_with_delay(void **state)
{
    s_fake_t *fake = *state;
    hop_client_t *client = s_connect(fake);
    hop_delivery_t *d;
    assert_int_equal(hop_client_get(client, "q", 0, &d), HOP_OK);
    assert_int_equal(hop_client_retry_later(client, d->tag, 2500), HOP_OK);
    hop_wire_t w;
    s_fake_last(fake, HOP_CMD_NACK, 1, &w);
    assert_int_equal(w.tag, 7);
    assert_true((w.has & HOP_F_REQUEUE) && w.requeue);
    assert_true(w.has & HOP_F_DELAY);
    assert_int_equal(w.delay, 2500);
    assert_false(w.has & HOP_F_MULTIPLE);
    // 0 travels too: "at once", not "the queue's retry_delay".
    assert_int_equal(hop_client_retry_later(client, d->tag, 0), HOP_OK);
    s_fake_last(fake, HOP_CMD_NACK, 2, &w);
    assert_true(w.has & HOP_F_DELAY);
    assert_int_equal(w.delay, 0);
    // A plain nack has no delay.
    assert_int_equal(hop_client_nack(client, d->tag, false, true), HOP_OK);
    s_fake_last(fake, HOP_CMD_NACK, 3, &w);
    assert_false(w.has & HOP_F_DELAY);
    hop_delivery_destroy(&d);
    hop_client_destroy(&client);
}

static void
test_declare_queue_args_encodes_what_is_set(void **state)
{
    s_fake_t *fake = *state;
    hop_client_t *client = s_connect(fake);
    hop_queue_args_t args = {.max_length = 10,
                             .max_length_bytes = 1 << 20,
                             .overflow = "reject-publish",
                             .message_ttl = 60000,
                             .expires = 3600000,
                             .max_deliveries = 5,
                             .dead_letter_exchange = "",
                             .dead_letter_key = "dead",
                             .retry_delay = 1000,
                             .retry_delay_max = 30000,
                             .max_priority = 9,
                             .ack_timeout = 120000};
    char name[64];
    assert_int_equal(hop_client_declare_queue_args(client, "args", HOP_DURABLE, &args, name,
                                                   sizeof name, NULL, NULL),
                     HOP_OK);
    assert_string_equal(name, "args");
    hop_wire_t w;
    s_fake_last(fake, HOP_CMD_QUEUE_DECLARE, 1, &w);
    assert_true(w.durable);
    assert_int_equal(w.has & S_ARG_BITS, S_ARG_BITS);
    assert_int_equal(w.max_length, 10);
    assert_int_equal(w.max_length_bytes, 1 << 20);
    assert_true(s_wire_is(w.overflow, "reject-publish"));
    assert_int_equal(w.message_ttl, 60000);
    assert_int_equal(w.expires, 3600000);
    assert_int_equal(w.max_deliveries, 5);
    assert_non_null(w.dead_letter_exchange.ptr); // "" is set: the default exchange
    assert_int_equal(w.dead_letter_exchange.len, 0);
    assert_true(s_wire_is(w.dead_letter_key, "dead"));
    assert_int_equal(w.retry_delay, 1000);
    assert_int_equal(w.retry_delay_max, 30000);
    assert_int_equal(w.max_priority, 9);
    assert_int_equal(w.ack_timeout, 120000);
    // Only what is set travels.
    hop_queue_args_t few = {.max_length = 3, .dead_letter_key = "k"};
    assert_int_equal(hop_client_declare_queue_args(client, "args2", 0, &few, NULL, 0, NULL, NULL),
                     HOP_OK);
    s_fake_last(fake, HOP_CMD_QUEUE_DECLARE, 2, &w);
    assert_int_equal(w.has & S_ARG_BITS, HOP_F_MAX_LENGTH | HOP_F_DLK);
    assert_int_equal(hop_client_declare_queue_args(client, "args3", 0, NULL, NULL, 0, NULL, NULL),
                     HOP_OK);
    s_fake_last(fake, HOP_CMD_QUEUE_DECLARE, 3, &w);
    assert_int_equal(w.has & S_ARG_BITS, 0);
    hop_client_destroy(&client);
}

static void
test_declare_queue_args_are_checked(void **state)
{
    (void)state;
    hop_client_t *client = hop_client_new();
    hop_queue_args_t args = {.overflow = "drop-tail"};
    assert_int_equal(hop_client_declare_queue_args(client, "q", 0, &args, NULL, 0, NULL, NULL),
                     HOP_EINVAL);
    assert_string_equal(hop_client_error(client), "queue argument overflow is 'drop-tail': it "
                                                  "must be drop-head or reject-publish");
    args = (hop_queue_args_t){.max_priority = 256};
    assert_int_equal(hop_client_declare_queue_args(client, "q", 0, &args, NULL, 0, NULL, NULL),
                     HOP_EINVAL);
    assert_string_equal(hop_client_error(client), "queue argument max_priority is 256: it must "
                                                  "be 1 to 255 (0: no priorities)");
    args = (hop_queue_args_t){.ack_timeout = 999};
    assert_int_equal(hop_client_declare_queue_args(client, "q", 0, &args, NULL, 0, NULL, NULL),
                     HOP_EINVAL);
    assert_string_equal(hop_client_error(client), "queue argument ack_timeout is 999 ms: it must "
                                                  "be at least 1000 ms (0: the broker's default)");
    char long_name[HOP_NAME_MAX + 2];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    args = (hop_queue_args_t){.dead_letter_key = long_name};
    assert_int_equal(hop_client_declare_queue_args(client, "q", 0, &args, NULL, 0, NULL, NULL),
                     HOP_EINVAL);
    assert_non_null(strstr(hop_client_error(client), "dead_letter_key is 256 bytes long"));
    // Valid arguments get as far as the connection check.
    args = (hop_queue_args_t){.overflow = "drop-head", .max_priority = 255, .ack_timeout = 1000};
    assert_int_equal(hop_client_declare_queue_args(client, "q", 0, &args, NULL, 0, NULL, NULL),
                     HOP_ECLOSED);
    assert_int_equal(hop_client_consume_ex(client, "q", NULL, 0, 0, 1, NULL, 0), HOP_EINVAL);
    hop_client_destroy(&client);
}

static void
s_check_deaths(const hop_delivery_t *d)
{
    assert_int_equal(d->priority, 7);
    assert_int_equal(d->death_count, 2);
    assert_string_equal(d->deaths[0].reason, "expired");
    assert_string_equal(d->deaths[0].queue, "jobs");
    assert_string_equal(d->deaths[0].exchange, "");
    assert_string_equal(d->deaths[0].routing_key, "jobs.eu");
    assert_int_equal(d->deaths[0].time, 1700000000123);
    assert_int_equal(d->deaths[0].count, 2);
    assert_string_equal(d->deaths[1].reason, "rejected");
    assert_string_equal(d->deaths[1].queue, "work");
    assert_string_equal(d->deaths[1].exchange, ""); // mistyped on the wire
    assert_string_equal(d->deaths[1].routing_key, "");
    assert_int_equal(d->deaths[1].time, 1700000000000);
    assert_int_equal(d->deaths[1].count, 1);
}

static void
test_delivery_parse_reads_priority_and_deaths(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_DELIVER);
    hop_enc_cstr(&enc, "consumer", "c");
    hop_enc_uint(&enc, "tag", 3);
    hop_enc_uint(&enc, "priority", 7);
    s_enc_deaths(&enc);
    hop_enc_map_begin(&enc, "props");
    hop_enc_map_begin(&enc, "headers");
    hop_enc_cstr(&enc, "h", "v");
    size_t size;
    const void *header = hop_enc_end(&enc, &size);
    hop_wire_t wire;
    assert_int_equal(hop_wire_decode(&wire, header, size, NULL, 0), 0);
    // On its own, and as a record of a batch (body copied into the same allocation).
    hop_delivery_t *d = hop_delivery_parse(&wire, NULL);
    zmq_msg_t frame;
    zmq_msg_init_data(&frame, "xxbodyxx", 8, NULL, NULL);
    hop_delivery_t *r = hop_delivery_parse_record(&wire, &frame, (const char *)"xxbodyxx" + 2, 4);
    zmq_msg_close(&frame);
    hop_enc_fini(&enc); // both must own everything they point to
    s_check_deaths(d);
    s_check_deaths(r);
    assert_string_equal(hop_delivery_header(r, "h"), "v");
    assert_int_equal(r->body_size, 4);
    assert_memory_equal(r->body, "body", 4);
    hop_delivery_destroy(&d);
    hop_delivery_destroy(&r);

    // Without them: 0 and none; a priority over 255 reads as 255; a malformed death array
    // (not an array at all is the codec's business) is ignored.
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_DELIVER);
    hop_enc_uint(&enc, "priority", 1000);
    hop_enc_array_begin(&enc, "death", 0);
    header = hop_enc_end(&enc, &size);
    assert_int_equal(hop_wire_decode(&wire, header, size, NULL, 0), 0);
    d = hop_delivery_parse(&wire, NULL);
    assert_int_equal(d->priority, 255);
    assert_int_equal(d->death_count, 0);
    assert_null(d->deaths);
    hop_delivery_destroy(&d);
    hop_enc_fini(&enc);
}

static void
test_get_returns_deaths_from_the_broker(void **state)
{
    s_fake_t *fake = *state;
    hop_client_t *client = s_connect(fake);
    hop_delivery_t *d;
    assert_int_equal(hop_client_get(client, "dead", 0, &d), HOP_OK);
    assert_int_equal(d->tag, 8);
    assert_string_equal(d->exchange, "dlx");
    assert_memory_equal(d->body, "dead", 4);
    s_check_deaths(d);
    hop_delivery_destroy(&d);
    hop_client_destroy(&client);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_names_every_code),
        cmocka_unit_test(test_new_client_is_unconnected_without_error),
        cmocka_unit_test(test_calls_before_connect_say_not_connected),
        cmocka_unit_test(test_bad_arguments_are_einval_with_a_message),
        cmocka_unit_test(test_unreachable_broker_is_econnect_within_timeout),
        cmocka_unit_test(test_null_endpoint_uses_hopper_broker_variable),
        cmocka_unit_test(test_malformed_endpoint_is_einval),
        cmocka_unit_test(test_delivery_parse_reads_every_field),
        cmocka_unit_test(test_delivery_parse_without_props_or_body),
        cmocka_unit_test(test_delivery_parse_ignores_mistyped_props),
        cmocka_unit_test_setup_teardown(test_connect_says_hello_and_close_says_goodbye,
                                        s_fake_setup, s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_broker_errors_map_to_codes_and_text, s_fake_setup,
                                        s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_async_error_is_returned_by_the_next_waiting_call,
                                        s_fake_setup, s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_io_thread_heartbeats_while_the_user_thread_is_busy,
                                        s_fake_setup, s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_silent_broker_is_lost_then_reconnected, s_fake_setup,
                                        s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_unexpected_frame_means_lost_and_old_tags_are_refused,
                                        s_fake_setup, s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_body_that_looks_like_a_heartbeat_is_delivered,
                                        s_fake_setup, s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_without_reconnect_a_lost_client_stays_closed,
                                        s_fake_setup, s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_body_over_max_message_is_refused_locally, s_fake_setup,
                                        s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_reply_with_mistyped_field_still_answers_its_request,
                                        s_fake_setup, s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_hello_says_batch, s_fake_setup, s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_batch_from_broker_is_handled_record_by_record,
                                        s_fake_setup, s_fake_teardown),
        cmocka_unit_test_setup_teardown(
            test_malformed_batch_is_a_protocol_error_after_its_good_records, s_fake_setup,
            s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_burst_is_sent_in_batches_in_order, s_fake_setup,
                                        s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_confirms_number_publishes_per_batch_record,
                                        s_fake_setup, s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_confirms_single_and_multiple_settle_what_they_name,
                                        s_fake_setup, s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_wait_confirms_reports_nacks_and_callbacks_may_publish,
                                        s_fake_setup, s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_wait_confirms_times_out_then_succeeds, s_fake_setup,
                                        s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_lost_connection_nacks_pending_publishes, s_fake_setup,
                                        s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_returned_message_reaches_the_return_callback,
                                        s_fake_setup, s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_confirms_returns_and_revocations_inside_a_broker_batch,
                                        s_fake_setup, s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_revoked_tag_is_refused_locally, s_fake_setup,
                                        s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_revoked_delivery_still_buffered_is_dropped,
                                        s_fake_setup, s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_retry_later_sends_nack_with_delay, s_fake_setup,
                                        s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_declare_queue_args_encodes_what_is_set, s_fake_setup,
                                        s_fake_teardown),
        cmocka_unit_test(test_declare_queue_args_are_checked),
        cmocka_unit_test(test_delivery_parse_reads_priority_and_deaths),
        cmocka_unit_test_setup_teardown(test_get_returns_deaths_from_the_broker, s_fake_setup,
                                        s_fake_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
