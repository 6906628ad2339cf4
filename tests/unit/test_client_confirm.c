// tests/unit/test_client_confirm.c - libhopper's delivery guarantees against a scripted fake
// broker (fake_broker.h): publisher confirms, returns, revoked deliveries, retry-later, queue
// arguments, priority and death records.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_broker.h"

#include <stdio.h>
#include <string.h>

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
s_connect_logged(fb_broker_t *fake, s_log_t *log)
{
    memset(log, 0, sizeof *log);
    hop_client_t *client = fb_connect(fake);
    hop_client_on_confirm(client, s_on_confirm, log);
    hop_client_on_return(client, s_on_return, log);
    hop_client_on_revoked(client, s_on_revoked, log);
    return client;
}
#define S_ARG_BITS                                                                                 \
    (HOP_F_MAX_LENGTH | HOP_F_MAX_LENGTH_BYTES | HOP_F_OVERFLOW | HOP_F_MESSAGE_TTL |              \
     HOP_F_EXPIRES | HOP_F_MAX_DELIVERIES | HOP_F_DLX | HOP_F_DLK | HOP_F_RETRY_DELAY |            \
     HOP_F_RETRY_DELAY_MAX | HOP_F_MAX_PRIORITY | HOP_F_ACK_TIMEOUT)

static void
test_confirms_number_publishes_per_batch_record(void **state)
{
    fb_broker_t *fake = *state;
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
    fb_pub(fake, 0, &w);
    assert_false(w.has & HOP_F_SEQ); // before confirm_select
    int batched = 0;
    for (int i = 1; i <= 200; i++) {
        fb_pub(fake, i, &w);
        assert_true(w.has & HOP_F_SEQ);
        assert_int_equal(w.seq, i);
        batched += fake->pub_batched[i];
    }
    assert_true(batched > 0);
    fb_pub(fake, 1, &w);
    assert_true(w.mandatory && w.persistent);
    assert_int_equal(w.expiration, 60000);
    assert_int_equal(w.priority, 9);
    fb_pub(fake, 2, &w);
    assert_int_equal(
        w.has & (HOP_F_MANDATORY | HOP_F_PERSISTENT | HOP_F_EXPIRATION | HOP_F_PRIORITY), 0);
    hop_client_destroy(&client);
}

static void
test_confirms_single_and_multiple_settle_what_they_name(void **state)
{
    fb_broker_t *fake = *state;
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
    fb_broker_t *fake = *state;
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
    fb_broker_t *fake = *state;
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
    fb_broker_t *fake = *state;
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
    fb_broker_t *fake = *state;
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
    fb_broker_t *fake = *state;
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
    fb_broker_t *fake = *state;
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
    fb_last(fake, HOP_CMD_CONSUME, 1, &w);
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
    fb_last(fake, HOP_CMD_ACK, 1, &w);
    assert_int_equal(w.tag, 2);
    assert_int_equal(atomic_load(&fake->count[HOP_CMD_NACK]), 0);
    assert_int_equal(atomic_load(&fake->count[HOP_CMD_REJECT]), 0);
    hop_client_destroy(&client);
}

static void
test_revoked_delivery_still_buffered_is_dropped(void **state)
{
    fb_broker_t *fake = *state;
    s_log_t log;
    hop_client_t *client = s_connect_logged(fake, &log);
    // While the application waits for a reply, one batch: deliveries 2 and 3 (buffered), then
    // 2 revoked before the application received it, then the reply.
    assert_int_equal(hop_client_consume(client, "rq2", NULL, 0, 0, NULL, 0), HOP_OK);
    assert_int_equal(hop_client_declare_queue(client, "rq2", 0, NULL, 0), HOP_OK);
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
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
    hop_delivery_t *d;
    assert_int_equal(hop_client_get(client, "q", 0, &d), HOP_OK);
    assert_int_equal(hop_client_retry_later(client, d->tag, 2500), HOP_OK);
    hop_wire_t w;
    fb_last(fake, HOP_CMD_NACK, 1, &w);
    assert_int_equal(w.tag, 7);
    assert_true((w.has & HOP_F_REQUEUE) && w.requeue);
    assert_true(w.has & HOP_F_DELAY);
    assert_int_equal(w.delay, 2500);
    assert_false(w.has & HOP_F_MULTIPLE);
    // 0 travels too: "at once", not "the queue's retry_delay".
    assert_int_equal(hop_client_retry_later(client, d->tag, 0), HOP_OK);
    fb_last(fake, HOP_CMD_NACK, 2, &w);
    assert_true(w.has & HOP_F_DELAY);
    assert_int_equal(w.delay, 0);
    // A plain nack has no delay.
    assert_int_equal(hop_client_nack(client, d->tag, false, true), HOP_OK);
    fb_last(fake, HOP_CMD_NACK, 3, &w);
    assert_false(w.has & HOP_F_DELAY);
    hop_delivery_destroy(&d);
    hop_client_destroy(&client);
}

static void
test_declare_queue_args_encodes_what_is_set(void **state)
{
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
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
    fb_last(fake, HOP_CMD_QUEUE_DECLARE, 1, &w);
    assert_true(w.durable);
    assert_int_equal(w.has & S_ARG_BITS, S_ARG_BITS);
    assert_int_equal(w.max_length, 10);
    assert_int_equal(w.max_length_bytes, 1 << 20);
    assert_true(fb_wire_is(w.overflow, "reject-publish"));
    assert_int_equal(w.message_ttl, 60000);
    assert_int_equal(w.expires, 3600000);
    assert_int_equal(w.max_deliveries, 5);
    assert_non_null(w.dead_letter_exchange.ptr); // "" is set: the default exchange
    assert_int_equal(w.dead_letter_exchange.len, 0);
    assert_true(fb_wire_is(w.dead_letter_key, "dead"));
    assert_int_equal(w.retry_delay, 1000);
    assert_int_equal(w.retry_delay_max, 30000);
    assert_int_equal(w.max_priority, 9);
    assert_int_equal(w.ack_timeout, 120000);
    // Only what is set travels.
    hop_queue_args_t few = {.max_length = 3, .dead_letter_key = "k"};
    assert_int_equal(hop_client_declare_queue_args(client, "args2", 0, &few, NULL, 0, NULL, NULL),
                     HOP_OK);
    fb_last(fake, HOP_CMD_QUEUE_DECLARE, 2, &w);
    assert_int_equal(w.has & S_ARG_BITS, HOP_F_MAX_LENGTH | HOP_F_DLK);
    assert_int_equal(hop_client_declare_queue_args(client, "args3", 0, NULL, NULL, 0, NULL, NULL),
                     HOP_OK);
    fb_last(fake, HOP_CMD_QUEUE_DECLARE, 3, &w);
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
    fb_enc_deaths(&enc);
    hop_enc_map_begin(&enc, "props");
    hop_enc_map_begin(&enc, "headers");
    hop_enc_cstr(&enc, "h", "v");
    size_t size;
    const void *header = hop_enc_end(&enc, &size);
    hop_wire_t wire;
    assert_int_equal(hop_wire_decode(&wire, header, size, NULL, 0), 0);
    // On its own, and as a record of a batch (body copied into the same allocation).
    hop_delivery_t *d = hop_delivery_parse(&wire, NULL, NULL);
    zmq_msg_t frame;
    zmq_msg_init_data(&frame, "xxbodyxx", 8, NULL, NULL);
    hop_delivery_t *r =
        hop_delivery_parse_record(&wire, &frame, (const char *)"xxbodyxx" + 2, 4, NULL);
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
    d = hop_delivery_parse(&wire, NULL, NULL);
    assert_int_equal(d->priority, 255);
    assert_int_equal(d->death_count, 0);
    assert_null(d->deaths);
    hop_delivery_destroy(&d);
    hop_enc_fini(&enc);
}

static void
test_get_returns_deaths_from_the_broker(void **state)
{
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
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
        cmocka_unit_test_setup_teardown(test_confirms_number_publishes_per_batch_record, fb_setup,
                                        fb_teardown),
        cmocka_unit_test_setup_teardown(test_confirms_single_and_multiple_settle_what_they_name,
                                        fb_setup, fb_teardown),
        cmocka_unit_test_setup_teardown(test_wait_confirms_reports_nacks_and_callbacks_may_publish,
                                        fb_setup, fb_teardown),
        cmocka_unit_test_setup_teardown(test_wait_confirms_times_out_then_succeeds, fb_setup,
                                        fb_teardown),
        cmocka_unit_test_setup_teardown(test_lost_connection_nacks_pending_publishes, fb_setup,
                                        fb_teardown),
        cmocka_unit_test_setup_teardown(test_returned_message_reaches_the_return_callback, fb_setup,
                                        fb_teardown),
        cmocka_unit_test_setup_teardown(test_confirms_returns_and_revocations_inside_a_broker_batch,
                                        fb_setup, fb_teardown),
        cmocka_unit_test_setup_teardown(test_revoked_tag_is_refused_locally, fb_setup, fb_teardown),
        cmocka_unit_test_setup_teardown(test_revoked_delivery_still_buffered_is_dropped, fb_setup,
                                        fb_teardown),
        cmocka_unit_test_setup_teardown(test_retry_later_sends_nack_with_delay, fb_setup,
                                        fb_teardown),
        cmocka_unit_test_setup_teardown(test_declare_queue_args_encodes_what_is_set, fb_setup,
                                        fb_teardown),
        cmocka_unit_test(test_declare_queue_args_are_checked),
        cmocka_unit_test(test_delivery_parse_reads_priority_and_deaths),
        cmocka_unit_test_setup_teardown(test_get_returns_deaths_from_the_broker, fb_setup,
                                        fb_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
