// tests/unit/test_client.c - libhopper without hopperd: argument checks, error names, connect
// failures and delivery parsing. The client's protocol behaviour against a scripted fake broker
// is in test_client_protocol.c; confirms, returns, revocations, retry-later, queue arguments
// and death records in test_client_confirm.c.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "client_internal.h"

#include <stdlib.h>
#include <string.h>

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
    hop_delivery_t *d = hop_delivery_parse(&wire, &body, NULL);
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
    hop_delivery_t *d = hop_delivery_parse(&wire, NULL, NULL);
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
    hop_delivery_t *d = hop_delivery_parse(&wire, NULL, NULL);
    assert_null(d->props.content_type);
    assert_int_equal(d->props.timestamp, 0);
    assert_int_equal(d->props.header_count, 0);
    assert_null(d->headers_raw);
    assert_string_equal(d->props.type, "kept");
    assert_non_null(d->props_raw);
    hop_delivery_destroy(&d);
    hop_enc_fini(&enc);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
