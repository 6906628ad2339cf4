// tests/unit/test_client_protocol.c - libhopper's protocol behaviour against a scripted fake
// broker (fake_broker.h): hello and close, broker errors, heartbeats, losing and regaining the
// broker, batches in both directions.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_broker.h"

#include <string.h>

static void
test_connect_says_hello_and_close_says_goodbye(void **state)
{
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
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
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
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
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
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
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
    // No calls for longer than the broker's 500 ms timeout: only the I/O thread talks.
    assert_true(fb_wait_for(&fake->heartbeats, 6, 5000));
    assert_int_equal(hop_client_declare_queue(client, "q", 0, NULL, 0), HOP_OK);
    assert_int_equal(atomic_load(&fake->hellos), 1); // still the first connection
    hop_client_destroy(&client);
}

static void
test_silent_broker_is_lost_then_reconnected(void **state)
{
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
    hop_client_set_timeout(client, 300);
    atomic_store(&fake->silent, true);
    // The I/O thread reports the broker lost after 500 ms of silence; the reconnect attempt
    // that follows fails while the broker stays silent.
    int rc = HOP_OK;
    for (int i = 0; i < 100 && rc == HOP_OK; i++) {
        fb_sleep_ms(50);
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
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
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
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
    hop_delivery_t *d;
    assert_int_equal(hop_client_get(client, "hb", 0, &d), HOP_OK);
    assert_int_equal(d->body_size, strlen(fb_heartbeat_bytes));
    assert_memory_equal(d->body, fb_heartbeat_bytes, d->body_size);
    hop_delivery_destroy(&d);
    hop_client_destroy(&client);
}

static void
test_without_reconnect_a_lost_client_stays_closed(void **state)
{
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
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
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
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
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
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
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
    assert_true(fake->hello_batch);
    hop_client_destroy(&client);
}

typedef struct {
    int seen;
    bool ok[3];
} s_dispatched_t;

static int
s_check_batch_delivery(hop_client_t *client, const hop_delivery_t *d, void *arg)
{
    (void)client;
    s_dispatched_t *log = arg;
    static const char *const bodies[] = {"one", NULL, "three"};
    int i = log->seen++;
    if (i >= 3 || d->tag != (uint64_t)i + 1 || strcmp(d->consumer, "ctag-b") != 0 ||
        strcmp(d->routing_key, "k") != 0)
        return 1;
    if (bodies[i])
        log->ok[i] =
            d->body_size == strlen(bodies[i]) && memcmp(d->body, bodies[i], d->body_size) == 0;
    else {
        log->ok[i] = d->body_size == HOP_BATCH_BODY_MAX + 1000;
        for (size_t at = 0; log->ok[i] && at < d->body_size; at++)
            log->ok[i] = ((const char *)d->body)[at] == 'b';
    }
    return 0;
}

// Dispatch lends each delivery to the handler and reuses its allocation for the next: bodies of
// every size (copied small ones, a shared large one) and strings stay right, in order, and the
// error after the last delivery is reported after it.
static void
test_dispatch_reuses_deliveries_of_any_size(void **state)
{
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
    assert_int_equal(hop_client_declare_queue(client, "batch", 0, NULL, 0), HOP_OK);
    s_dispatched_t log = {0};
    assert_int_equal(hop_client_dispatch(client, s_check_batch_delivery, &log, 1000),
                     HOP_ENOTFOUND);
    assert_int_equal(log.seen, 3);
    for (int i = 0; i < 3; i++)
        assert_true(log.ok[i]);
    assert_non_null(client->spare);
    hop_client_destroy(&client); // and the spare with it (LSan)
}

static void
test_batch_from_broker_is_handled_record_by_record(void **state)
{
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
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
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
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
    fb_broker_t *fake = *state;
    fake->max_message = 1 << 20;
    hop_client_t *client = fb_connect(fake);
    // A lone message goes out at once, as it is: nothing waits to fill a batch.
    assert_int_equal(s_publish_seq(client, 0, 10), HOP_OK);
    assert_true(fb_wait_for(&fake->seen, 1, 5000));
    assert_int_equal(fake->how[0], 1);

    // Made while the broker reads nothing: the I/O thread finds them queued. Acks (one frame),
    // publishes, large bodies and a raw call (never batched) are interleaved.
    atomic_store(&fake->paused, true);
    uint32_t raw_seq = FB_BURST / 2;
    for (uint32_t seq = 1; seq < FB_BURST; seq++) {
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
            assert_int_equal(hop_client_ack(client, FB_BURST_TAG + seq, false), HOP_OK);
        else if (seq % 500 == 7)
            assert_int_equal(s_publish_seq(client, seq, HOP_BATCH_BODY_MAX + 1), HOP_OK);
        else
            assert_int_equal(s_publish_seq(client, seq, 4 + seq % 50), HOP_OK);
    }
    atomic_store(&fake->paused, false);
    assert_true(fb_wait_for(&fake->seen, FB_BURST, 10000));
    assert_int_equal(atomic_load(&fake->out_of_order), 0);
    assert_true(atomic_load(&fake->batches) > 0);
    int batched = 0;
    for (uint32_t seq = 1; seq < FB_BURST; seq++) {
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connect_says_hello_and_close_says_goodbye, fb_setup,
                                        fb_teardown),
        cmocka_unit_test_setup_teardown(test_broker_errors_map_to_codes_and_text, fb_setup,
                                        fb_teardown),
        cmocka_unit_test_setup_teardown(test_async_error_is_returned_by_the_next_waiting_call,
                                        fb_setup, fb_teardown),
        cmocka_unit_test_setup_teardown(test_io_thread_heartbeats_while_the_user_thread_is_busy,
                                        fb_setup, fb_teardown),
        cmocka_unit_test_setup_teardown(test_silent_broker_is_lost_then_reconnected, fb_setup,
                                        fb_teardown),
        cmocka_unit_test_setup_teardown(test_unexpected_frame_means_lost_and_old_tags_are_refused,
                                        fb_setup, fb_teardown),
        cmocka_unit_test_setup_teardown(test_body_that_looks_like_a_heartbeat_is_delivered,
                                        fb_setup, fb_teardown),
        cmocka_unit_test_setup_teardown(test_without_reconnect_a_lost_client_stays_closed, fb_setup,
                                        fb_teardown),
        cmocka_unit_test_setup_teardown(test_body_over_max_message_is_refused_locally, fb_setup,
                                        fb_teardown),
        cmocka_unit_test_setup_teardown(test_reply_with_mistyped_field_still_answers_its_request,
                                        fb_setup, fb_teardown),
        cmocka_unit_test_setup_teardown(test_hello_says_batch, fb_setup, fb_teardown),
        cmocka_unit_test_setup_teardown(test_dispatch_reuses_deliveries_of_any_size, fb_setup,
                                        fb_teardown),
        cmocka_unit_test_setup_teardown(test_batch_from_broker_is_handled_record_by_record,
                                        fb_setup, fb_teardown),
        cmocka_unit_test_setup_teardown(
            test_malformed_batch_is_a_protocol_error_after_its_good_records, fb_setup, fb_teardown),
        cmocka_unit_test_setup_teardown(test_burst_is_sent_in_batches_in_order, fb_setup,
                                        fb_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
