// tests/integration/test_sdk.c - hopperd driven through libhopper (sdk/hopper.h): each exchange
// type end to end, fan-out and work-queue volumes with several clients in several threads, a
// consumer process killed with SIGKILL while it holds messages, a consumer that is busy but
// alive, request/reply, and inspection.
//
// cmocka asserts only in the main thread: worker threads record what they saw and the main
// thread checks it after joining them. A client is used by one thread at a time: clients are
// set up in the main thread, handed to a worker, and used again only after the join.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "sdk_helpers.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// Exchange types end to end

static void
test_direct_exchange(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = sx_client(fx, "direct", 0);
    CHECK(c, hop_client_declare_exchange(c, "orders", "direct", 0));
    CHECK(c, hop_client_declare_queue(c, "paid", 0, NULL, 0));
    CHECK(c, hop_client_declare_queue(c, "shipped", 0, NULL, 0));
    CHECK(c, hop_client_bind(c, "paid", "orders", "order.paid"));
    CHECK(c, hop_client_bind(c, "shipped", "orders", "order.shipped"));
    CHECK(c, hop_client_consume(c, "paid", "paid-c", 10, 0, NULL, 0));

    hop_header_t headers[] = {{"x-tenant", "acme"}, {"x-attempt", "1"}};
    hop_props_t props = {.content_type = "text/plain",
                         .message_id = "m-1",
                         .app_id = "it",
                         .timestamp = 1700000000000ull,
                         .headers = headers,
                         .header_count = 2};
    CHECK(c, hop_client_publish(c, "orders", "order.paid", "42 coffees", 10, &props));
    CHECK(c, hop_client_publish(c, "orders", "order.shipped", "shipped", 7, NULL));
    CHECK(c, hop_client_publish(c, "orders", "order.refunded", "nobody", 6, NULL));
    hop_delivery_t *d = sx_receive(c);
    assert_true(sx_body_is(d, "42 coffees"));
    assert_string_equal(d->consumer, "paid-c");
    assert_string_equal(d->exchange, "orders");
    assert_string_equal(d->routing_key, "order.paid");
    assert_false(d->redelivered);
    assert_int_equal(d->delivery_count, 1);
    assert_string_equal(d->props.content_type, "text/plain");
    assert_string_equal(d->props.message_id, "m-1");
    assert_string_equal(d->props.app_id, "it");
    assert_int_equal(d->props.timestamp, 1700000000000ull);
    assert_non_null(hop_delivery_header(d, "x-tenant"));
    assert_string_equal(hop_delivery_header(d, "x-tenant"), "acme");
    assert_string_equal(hop_delivery_header(d, "x-attempt"), "1");
    assert_null(hop_delivery_header(d, "x-missing"));
    CHECK(c, hop_client_ack(c, d->tag, false));
    hop_delivery_destroy(&d);

    CHECK(c, hop_client_get(c, "shipped", 0, &d));
    assert_true(sx_body_is(d, "shipped"));
    assert_string_equal(d->routing_key, "order.shipped");
    assert_int_equal(d->message_count, 0);
    CHECK(c, hop_client_ack(c, d->tag, false));
    hop_delivery_destroy(&d);
    assert_int_equal(hop_client_get(c, "shipped", 0, &d), HOP_EEMPTY);
    assert_null(d);
    sx_expect_nothing(c);
    assert_int_equal(sx_queue_stat(c, "paid", "acked"), 1);
}

static void
test_fanout_exchange_subscribers(void **state)
{
    fx_t *fx = *state;
    hop_client_t *pub = sx_client(fx, "pub", 0);
    hop_client_t *s1 = sx_client(fx, "sub1", 0);
    hop_client_t *s2 = sx_client(fx, "sub2", 0);
    CHECK(pub, hop_client_declare_exchange(pub, "news", "fanout", 0));
    char q1[HOP_NAME_MAX + 1], q2[HOP_NAME_MAX + 1];
    CHECK(s1, hop_client_subscribe(s1, "news", NULL, q1, sizeof q1));
    CHECK(s2, hop_client_subscribe(s2, "news", NULL, q2, sizeof q2));
    assert_string_not_equal(q1, q2);
    sx_publish_text(pub, "news", "ignored.key", "headline");
    sx_publish_text(pub, "news", "", "second");
    sx_expect_body(s1, "headline");
    sx_expect_body(s1, "second");
    sx_expect_body(s2, "headline");
    sx_expect_body(s2, "second");
    // The subscription queues are exclusive and go away with their clients.
    hop_client_destroy(&fx->clients[1]);
    uint64_t v;
    assert_false(sx_list_uint(pub, "queues", "name", q1, "messages", &v));
    assert_true(sx_list_uint(pub, "queues", "name", q2, "messages", &v));
}

static void
test_topic_exchange_subscribers(void **state)
{
    fx_t *fx = *state;
    hop_client_t *pub = sx_client(fx, "pub", 0);
    hop_client_t *star = sx_client(fx, "star", 0);
    hop_client_t *hash = sx_client(fx, "hash", 0);
    hop_client_t *all = sx_client(fx, "all", 0);
    CHECK(pub, hop_client_declare_exchange(pub, "logs", "topic", 0));
    CHECK(star, hop_client_subscribe(star, "logs", "app.*.error", NULL, 0));
    CHECK(hash, hop_client_subscribe(hash, "logs", "app.#", NULL, 0));
    CHECK(all, hop_client_subscribe(all, "logs", NULL, NULL, 0)); // "#"
    const char *keys[] = {"app.web.error", "app.web.info", "app", "app.db.pool.error", "sys.error"};
    for (int i = 0; i < 5; i++)
        sx_publish_text(pub, "logs", keys[i], keys[i]);
    sx_sync(pub);
    sx_expect_body(star, "app.web.error");
    sx_expect_nothing(star);
    sx_expect_body(hash, "app.web.error");
    sx_expect_body(hash, "app.web.info");
    sx_expect_body(hash, "app");
    sx_expect_body(hash, "app.db.pool.error");
    sx_expect_nothing(hash);
    for (int i = 0; i < 5; i++)
        sx_expect_body(all, keys[i]);
    sx_expect_nothing(all);
}

static void
test_default_exchange_by_queue_name(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = sx_client(fx, "default", 0);
    char name[HOP_NAME_MAX + 1];
    uint64_t messages = 99, consumers = 99;
    CHECK(c, hop_client_declare_queue_ex(c, "", 0, name, sizeof name, &messages, &consumers));
    assert_true(strncmp(name, "amq.gen-", 8) == 0);
    assert_int_equal(messages, 0);
    assert_int_equal(consumers, 0);
    sx_publish_text(c, "", name, "direct to the queue");
    hop_delivery_t *d = NULL;
    CHECK(c, hop_client_get(c, name, HOP_NO_ACK, &d));
    assert_true(sx_body_is(d, "direct to the queue"));
    assert_string_equal(d->exchange, "");
    assert_string_equal(d->routing_key, name);
    hop_delivery_destroy(&d);
    // Publishing to a missing exchange is reported at the next call that waits.
    sx_publish_text(c, "no-such-exchange", "k", "lost");
    int rc = hop_client_declare_queue(c, name, HOP_PASSIVE, NULL, 0);
    assert_int_equal(rc, HOP_ENOTFOUND);
    assert_int_equal(hop_client_error_code(c), HOP_CODE_NOT_FOUND);
    assert_non_null(strstr(hop_client_error(c), "no-such-exchange"));
    // And the connection is fine afterwards.
    CHECK(c, hop_client_declare_queue(c, name, HOP_PASSIVE, NULL, 0));
}

// ---------------------------------------------------------------------------------------
// Volume: fan-out to 4 subscribers, in order

typedef struct {
    hop_client_t *client;
    int expected;
    int received;
    int out_of_order; // deliveries whose sequence number was not the next one
    long first_bad;   // first out-of-order sequence number, -1 if none
    int rc;           // last receive error, HOP_OK when all arrived
} s_sub_t;

static void *
s_subscriber_thread(void *arg)
{
    s_sub_t *sub = arg;
    sub->first_bad = -1;
    while (sub->received < sub->expected) {
        hop_delivery_t *d = NULL;
        sub->rc = hop_client_receive(sub->client, &d, WAIT_MS);
        if (sub->rc != HOP_OK)
            break;
        long seq = sx_body_seq(d);
        if (seq != sub->received) {
            if (!sub->out_of_order)
                sub->first_bad = seq;
            sub->out_of_order++;
        }
        sub->received++;
        hop_delivery_destroy(&d);
    }
    return NULL;
}

static void
test_fanout_volume_in_order_to_4_subscribers(void **state)
{
    fx_t *fx = *state;
    hop_client_t *pub = sx_client(fx, "volume-pub", 0);
    CHECK(pub, hop_client_declare_exchange(pub, "ticks", "fanout", 0));
    s_sub_t subs[4];
    pthread_t threads[4];
    memset(subs, 0, sizeof subs);
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof name, "sub-%d", i);
        subs[i].client = sx_client(fx, name, 0);
        subs[i].expected = VOLUME;
        CHECK(subs[i].client, hop_client_subscribe(subs[i].client, "ticks", NULL, NULL, 0));
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, s_subscriber_thread, &subs[i]), 0);
    for (int seq = 0; seq < VOLUME; seq++) {
        char body[32];
        int n = snprintf(body, sizeof body, "%d", seq);
        CHECK(pub, hop_client_publish(pub, "ticks", "", body, (size_t)n, NULL));
    }
    sx_sync(pub);
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < 4; i++) {
        if (subs[i].rc != HOP_OK)
            fail_msg("subscriber %d stopped after %d messages: %s (%s)", i, subs[i].received,
                     hop_strerror(subs[i].rc), hop_client_error(subs[i].client));
        assert_int_equal(subs[i].received, VOLUME);
        if (subs[i].out_of_order)
            fail_msg("subscriber %d: %d messages out of order, the first was %ld", i,
                     subs[i].out_of_order, subs[i].first_bad);
        sx_expect_nothing(subs[i].client);
    }
}

// ---------------------------------------------------------------------------------------
// Volume: a work queue over 3 consumers in 3 threads

typedef struct {
    hop_client_t *client;
    pthread_mutex_t *lock;
    uint16_t *deliveries; // per sequence number, shared
    atomic_int *acked;    // shared total
    int total;
    int got;
    int redelivered;
    int bad_seq;
    int rc;      // first error, HOP_OK if none
    int sync_rc; // of the round trip after the last ack
} s_worker_t;

static void *
s_worker_thread(void *arg)
{
    s_worker_t *w = arg;
    uint64_t idle_since = harness_now_ms();
    while (atomic_load(w->acked) < w->total) {
        hop_delivery_t *d = NULL;
        int rc = hop_client_receive(w->client, &d, 50);
        if (rc == HOP_ETIMEOUT) {
            // Others may be finishing the last ones; give up only after a long silence.
            if (harness_now_ms() - idle_since > WAIT_MS) {
                w->rc = rc;
                break;
            }
            continue;
        }
        if (rc != HOP_OK) {
            w->rc = rc;
            break;
        }
        idle_since = harness_now_ms();
        long seq = sx_body_seq(d);
        if (seq < 0 || seq >= w->total)
            w->bad_seq++;
        else {
            pthread_mutex_lock(w->lock);
            w->deliveries[seq]++;
            pthread_mutex_unlock(w->lock);
        }
        w->redelivered += d->redelivered;
        rc = hop_client_ack(w->client, d->tag, false);
        hop_delivery_destroy(&d);
        if (rc != HOP_OK) {
            w->rc = rc;
            break;
        }
        w->got++;
        atomic_fetch_add(w->acked, 1);
    }
    // The broker answers in order: once this returns, every ack above was handled.
    w->sync_rc = hop_client_declare_queue(w->client, "work", HOP_PASSIVE, NULL, 0);
    return NULL;
}

static void
test_work_queue_each_message_once_over_3_consumers(void **state)
{
    fx_t *fx = *state;
    hop_client_t *pub = sx_client(fx, "work-pub", 0);
    CHECK(pub, hop_client_declare_queue(pub, "work", 0, NULL, 0));
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    uint16_t *deliveries = calloc(VOLUME, sizeof *deliveries);
    assert_non_null(deliveries);
    atomic_int acked = 0;
    s_worker_t workers[3];
    pthread_t threads[3];
    memset(workers, 0, sizeof workers);
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "worker-%d", i);
        workers[i] = (s_worker_t){.client = sx_client(fx, name, 0),
                                  .lock = &lock,
                                  .deliveries = deliveries,
                                  .acked = &acked,
                                  .total = VOLUME};
        CHECK(workers[i].client,
              hop_client_consume(workers[i].client, "work", NULL, 50, 0, NULL, 0));
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, s_worker_thread, &workers[i]), 0);
    for (int seq = 0; seq < VOLUME; seq++) {
        char body[32];
        int n = snprintf(body, sizeof body, "%d", seq);
        CHECK(pub, hop_client_publish(pub, "", "work", body, (size_t)n, NULL));
    }
    sx_sync(pub);
    for (int i = 0; i < 3; i++)
        pthread_join(threads[i], NULL);

    int total = 0;
    for (int i = 0; i < 3; i++) {
        if (workers[i].rc != HOP_OK || workers[i].sync_rc != HOP_OK)
            fail_msg("worker %d: rc %d sync %d: %s", i, workers[i].rc, workers[i].sync_rc,
                     hop_client_error(workers[i].client));
        assert_int_equal(workers[i].bad_seq, 0);
        assert_int_equal(workers[i].redelivered, 0);
        if (workers[i].got == 0)
            fail_msg("worker %d got no message", i);
        total += workers[i].got;
    }
    assert_int_equal(total, VOLUME);
    for (int seq = 0; seq < VOLUME; seq++)
        if (deliveries[seq] != 1)
            fail_msg("message %d was delivered %d times", seq, deliveries[seq]);
    free(deliveries);
    assert_int_equal(sx_queue_stat(pub, "work", "messages"), 0);
    assert_int_equal(sx_queue_stat(pub, "work", "published"), VOLUME);
    assert_int_equal(sx_queue_stat(pub, "work", "delivered"), VOLUME);
    assert_int_equal(sx_queue_stat(pub, "work", "acked"), VOLUME);
    assert_int_equal(sx_queue_stat(pub, "work", "consumers"), 3);
}

// ---------------------------------------------------------------------------------------
// A consumer process killed with SIGKILL while it holds unacked messages

#define HOLD_PREFETCH 10
#define HOLD_TOTAL    50

// The helper process: connects with a 200 ms heartbeat, consumes with prefetch 10 and never
// acks. It runs until killed (or, as a safety net, for a minute).
static int
s_holder_main(const char *endpoint, const char *queue)
{
    hop_client_t *c = hop_client_new();
    hop_client_set_heartbeat(c, 200);
    hop_client_set_name(c, "holder");
    hop_client_set_reconnect(c, false);
    if (hop_client_connect(c, endpoint) != HOP_OK ||
        hop_client_consume(c, queue, "holder", HOLD_PREFETCH, 0, NULL, 0) != HOP_OK) {
        fprintf(stderr, "holder: %s\n", hop_client_error(c));
        hop_client_destroy(&c);
        return 1;
    }
    uint64_t until = harness_now_ms() + 60000;
    while (harness_now_ms() < until) {
        hop_delivery_t *d = NULL;
        if (hop_client_receive(c, &d, 100) == HOP_OK)
            hop_delivery_destroy(&d); // held, never acked
    }
    hop_client_destroy(&c);
    return 0;
}

typedef struct {
    hop_client_t *client;
    const char *queue;
    uint64_t want;
} s_unacked_t;

static bool
s_holder_has_unacked(void *arg)
{
    s_unacked_t *u = arg;
    uint64_t unacked = 0;
    return sx_list_uint(u->client, "consumers", "consumer", "holder", "unacked", &unacked) &&
           unacked == u->want;
}

static void
test_killed_consumer_process_messages_redelivered(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = sx_client(fx, "survivor", 0);
    CHECK(c, hop_client_declare_queue(c, "jobs", 0, NULL, 0));
    for (int seq = 0; seq < HOLD_TOTAL; seq++) {
        char body[16];
        snprintf(body, sizeof body, "%d", seq);
        sx_publish_text(c, "", "jobs", body);
    }
    sx_sync(c);
    const char *self = harness_self_path();
    assert_non_null(self);
    char *argv[] = {(char *)self, "--holder", (char *)harness_broker_endpoint(fx->broker), "jobs",
                    NULL};
    int pid = harness_spawn(argv);
    assert_true(pid > 0);
    s_unacked_t u = {.client = c, .queue = "jobs", .want = HOLD_PREFETCH};
    if (!harness_wait_until(s_holder_has_unacked, &u, WAIT_MS)) {
        harness_kill9(pid);
        fail_msg("the holder process never held %d unacked messages", HOLD_PREFETCH);
    }
    assert_int_equal(sx_queue_stat(c, "jobs", "messages_unacked"), HOLD_PREFETCH);

    // Another consumer takes the rest at once.
    CHECK(c, hop_client_consume(c, "jobs", "survivor", 0, 0, NULL, 0));
    bool seen[HOLD_TOTAL] = {false};
    int fresh = 0, again = 0;
    for (int i = 0; i < HOLD_TOTAL - HOLD_PREFETCH; i++) {
        hop_delivery_t *d = sx_receive(c);
        long seq = sx_body_seq(d);
        assert_true(seq >= HOLD_PREFETCH && seq < HOLD_TOTAL);
        assert_false(d->redelivered);
        assert_false(seen[seq]);
        seen[seq] = true;
        fresh++;
        CHECK(c, hop_client_ack(c, d->tag, false));
        hop_delivery_destroy(&d);
    }
    // kill -9: the broker must notice (the peer falls silent) and redeliver what it held.
    assert_int_equal(harness_kill9(pid), 128 + 9);
    for (int i = 0; i < HOLD_PREFETCH; i++) {
        hop_delivery_t *d = sx_receive(c);
        long seq = sx_body_seq(d);
        assert_true(seq >= 0 && seq < HOLD_PREFETCH);
        assert_true(d->redelivered);
        assert_int_equal(d->delivery_count, 2);
        assert_false(seen[seq]);
        seen[seq] = true;
        again++;
        CHECK(c, hop_client_ack(c, d->tag, false));
        hop_delivery_destroy(&d);
    }
    assert_int_equal(fresh + again, HOLD_TOTAL);
    for (int seq = 0; seq < HOLD_TOTAL; seq++)
        assert_true(seen[seq]);
    sx_expect_nothing(c);
    assert_int_equal(sx_queue_stat(c, "jobs", "messages"), 0);
    assert_int_equal(sx_queue_stat(c, "jobs", "consumers"), 1);
    assert_int_equal(sx_queue_stat(c, "jobs", "acked"), HOLD_TOTAL);
}

// ---------------------------------------------------------------------------------------
// A consumer busy for 3 peer timeouts inside its handler is not declared dead

#define BUSY_HEARTBEAT 200                      // ms; the broker's timeout is 5 x this
#define BUSY_SLEEP_MS  (3 * 5 * BUSY_HEARTBEAT) // three timeouts

typedef struct {
    atomic_bool got;  // the handler has the message
    bool redelivered; // as delivered to the busy consumer
    uint64_t count;
    int ack_rc;
    int dispatch_rc;
    int sync_rc;
} s_busy_t;

static int
s_busy_handler(hop_client_t *client, const hop_delivery_t *d, void *arg)
{
    s_busy_t *b = arg;
    b->redelivered = d->redelivered;
    b->count = d->delivery_count;
    atomic_store(&b->got, true);
    // Sleeping is the behaviour under test: a long task, no ack, no call into the client.
    harness_pause_ms(BUSY_SLEEP_MS);
    b->ack_rc = hop_client_ack(client, d->tag, false);
    return 1;
}

typedef struct {
    hop_client_t *client;
    s_busy_t *busy;
} s_busy_arg_t;

static void *
s_busy_thread(void *arg)
{
    s_busy_arg_t *a = arg;
    a->busy->dispatch_rc = hop_client_dispatch(a->client, s_busy_handler, a->busy, WAIT_MS);
    a->busy->sync_rc = hop_client_declare_queue(a->client, "slow", HOP_PASSIVE, NULL, 0);
    return NULL;
}

static bool
s_busy_got(void *arg)
{
    return atomic_load(&((s_busy_t *)arg)->got);
}

static void
test_busy_consumer_is_not_declared_dead(void **state)
{
    fx_t *fx = *state;
    hop_client_t *busy = sx_client(fx, "busy", BUSY_HEARTBEAT);
    hop_client_t *other = sx_client(fx, "other", 0);
    CHECK(busy, hop_client_declare_queue(busy, "slow", 0, NULL, 0));
    CHECK(busy, hop_client_consume(busy, "slow", "busy", 1, 0, NULL, 0));
    s_busy_t b = {.ack_rc = -100, .dispatch_rc = -100, .sync_rc = -100};
    s_busy_arg_t arg = {.client = busy, .busy = &b};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, s_busy_thread, &arg), 0);
    sx_publish_text(other, "", "slow", "long task");
    bool got = harness_wait_until(s_busy_got, &b, WAIT_MS);
    // A second consumer: if the busy one were declared dead, the message would come here.
    if (got)
        CHECK(other, hop_client_consume(other, "slow", "other", 1, 0, NULL, 0));
    pthread_join(thread, NULL);
    assert_true(got);
    assert_false(b.redelivered);
    assert_int_equal(b.count, 1);
    assert_int_equal(b.dispatch_rc, HOP_OK);
    assert_int_equal(b.ack_rc, HOP_OK);
    if (b.sync_rc != HOP_OK)
        fail_msg("busy consumer's connection after the long task: %s (%s)", hop_strerror(b.sync_rc),
                 hop_client_error(busy));
    sx_expect_nothing(other);
    assert_int_equal(sx_queue_stat(other, "slow", "delivered"), 1);
    assert_int_equal(sx_queue_stat(other, "slow", "acked"), 1);
    assert_int_equal(sx_queue_stat(other, "slow", "messages"), 0);
    // Still the same connection: one named "busy", never reconnected.
    void *items = NULL;
    size_t size = 0;
    CHECK(other, hop_client_list(other, "connections", &items, &size));
    const void *map;
    size_t map_size;
    assert_true(harness_items_find(items, size, "name", "busy", &map, &map_size));
    uint64_t connected_ms = 0;
    assert_true(harness_map_uint(map, map_size, "connected_ms", &connected_ms));
    assert_true(connected_ms >= BUSY_SLEEP_MS);
    free(items);
}

// ---------------------------------------------------------------------------------------
// Request/reply

#define RPC_COUNT 20

typedef struct {
    int served;
    int rc;
} s_server_t;

static int
s_rpc_handler(hop_client_t *client, const hop_delivery_t *d, void *arg)
{
    s_server_t *s = arg;
    char upper[64];
    size_t n = d->body_size < sizeof upper ? d->body_size : sizeof upper;
    for (size_t i = 0; i < n; i++) {
        char ch = ((const char *)d->body)[i];
        upper[i] = ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
    }
    hop_props_t props = {.content_type = "text/plain"};
    int rc = hop_client_reply(client, d, upper, n, &props);
    if (rc == HOP_OK)
        rc = hop_client_ack(client, d->tag, false);
    if (rc != HOP_OK) {
        s->rc = rc;
        return 1;
    }
    return ++s->served == RPC_COUNT;
}

typedef struct {
    hop_client_t *client;
    s_server_t *server;
} s_server_arg_t;

static void *
s_server_thread(void *arg)
{
    s_server_arg_t *a = arg;
    int rc = hop_client_dispatch(a->client, s_rpc_handler, a->server, WAIT_MS);
    if (rc != HOP_OK && a->server->rc == HOP_OK)
        a->server->rc = rc;
    return NULL;
}

static void
test_request_reply(void **state)
{
    fx_t *fx = *state;
    hop_client_t *server = sx_client(fx, "rpc-server", 0);
    hop_client_t *caller = sx_client(fx, "rpc-caller", 0);
    CHECK(server, hop_client_declare_queue(server, "rpc", 0, NULL, 0));
    CHECK(server, hop_client_consume(server, "rpc", NULL, 5, 0, NULL, 0));
    s_server_t s = {0};
    s_server_arg_t arg = {.client = server, .server = &s};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, s_server_thread, &arg), 0);
    char first_corr[64] = "";
    int bad = 0;
    for (int i = 0; i < RPC_COUNT && !bad; i++) {
        char body[32], want[32];
        snprintf(body, sizeof body, "ping-%d", i);
        snprintf(want, sizeof want, "PING-%d", i);
        hop_delivery_t *reply = NULL;
        int rc = hop_client_request(caller, "", "rpc", body, strlen(body), NULL, WAIT_MS, &reply);
        if (rc != HOP_OK) {
            fprintf(stderr, "request %d: %s (%s)\n", i, hop_strerror(rc), hop_client_error(caller));
            bad = 1;
            break;
        }
        if (!sx_body_is(reply, want) || !reply->props.correlation_id ||
            !reply->props.content_type || strcmp(reply->props.content_type, "text/plain") != 0) {
            fprintf(stderr, "request %d: reply '%.*s'\n", i, (int)reply->body_size,
                    (const char *)reply->body);
            bad = 1;
        } else if (i == 0)
            snprintf(first_corr, sizeof first_corr, "%s", reply->props.correlation_id);
        else if (strcmp(first_corr, reply->props.correlation_id) == 0)
            bad = 1; // every request has its own correlation id
        hop_delivery_destroy(&reply);
    }
    if (bad) {
        // Unblock the server so that the join returns.
        for (int i = s.served; i < RPC_COUNT; i++)
            hop_client_publish(caller, "", "rpc", "x", 1, NULL);
    }
    pthread_join(thread, NULL);
    assert_int_equal(bad, 0);
    assert_int_equal(s.rc, HOP_OK);
    assert_int_equal(s.served, RPC_COUNT);

    // Nobody answers: the request times out, and the client stays usable.
    CHECK(caller, hop_client_declare_queue(caller, "void", 0, NULL, 0));
    hop_delivery_t *reply = NULL;
    assert_int_equal(hop_client_request(caller, "", "void", "?", 1, NULL, 300, &reply),
                     HOP_ETIMEOUT);
    assert_null(reply);
    sx_sync(caller);
}

// ---------------------------------------------------------------------------------------
// Inspection

static void
test_list_queues_counts(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = sx_client(fx, "lister", 0);
    hop_client_t *consumer = sx_client(fx, "holder", 0);
    CHECK(c, hop_client_declare_queue(c, "counted", HOP_DURABLE, NULL, 0));
    CHECK(c, hop_client_declare_queue(c, "empty", HOP_AUTO_DELETE, NULL, 0));
    for (int i = 0; i < 7; i++)
        sx_publish_text(c, "", "counted", "x");
    sx_sync(c);
    CHECK(consumer, hop_client_consume(consumer, "counted", "two", 2, 0, NULL, 0));
    hop_delivery_t *d1 = sx_receive(consumer), *d2 = sx_receive(consumer);

    void *items = NULL;
    size_t size = 0;
    CHECK(c, hop_client_list(c, "queues", &items, &size));
    assert_int_equal(harness_items_count(items, size), 2);
    const void *map;
    size_t map_size;
    assert_true(harness_items_find(items, size, "name", "counted", &map, &map_size));
    uint64_t v = 0;
    bool durable = false;
    assert_true(harness_map_bool(map, map_size, "durable", &durable));
    assert_true(durable);
    assert_true(harness_map_uint(map, map_size, "messages_ready", &v));
    assert_int_equal(v, 5);
    assert_true(harness_map_uint(map, map_size, "messages_unacked", &v));
    assert_int_equal(v, 2);
    assert_true(harness_map_uint(map, map_size, "messages", &v));
    assert_int_equal(v, 7);
    assert_true(harness_map_uint(map, map_size, "consumers", &v));
    assert_int_equal(v, 1);
    assert_true(harness_items_find(items, size, "name", "empty", &map, &map_size));
    assert_true(harness_map_uint(map, map_size, "messages", &v));
    assert_int_equal(v, 0);
    bool auto_delete = false;
    assert_true(harness_map_bool(map, map_size, "auto_delete", &auto_delete));
    assert_true(auto_delete);
    free(items);

    CHECK(consumer, hop_client_ack(consumer, d2->tag, true));
    hop_delivery_destroy(&d1);
    hop_delivery_destroy(&d2);
    sx_sync(consumer);
    assert_int_equal(sx_queue_stat(c, "counted", "messages_unacked"), 2); // the next two
    assert_int_equal(sx_queue_stat(c, "counted", "messages_ready"), 3);
    assert_int_equal(sx_queue_stat(c, "counted", "acked"), 2);
    CHECK(consumer, hop_client_cancel(consumer, "two"));
    assert_int_equal(sx_queue_stat(c, "counted", "messages_ready"), 5);
    assert_int_equal(sx_queue_stat(c, "counted", "consumers"), 0);
    uint64_t purged = 0;
    CHECK(c, hop_client_purge_queue(c, "counted", &purged));
    assert_int_equal(purged, 5);

    // status through the SDK
    void *status = NULL;
    CHECK(c, hop_client_status(c, &status, &size));
    uint64_t queues = 0, connections = 0;
    assert_true(harness_map_uint(status, size, "queues", &queues));
    assert_true(harness_map_uint(status, size, "connections", &connections));
    assert_int_equal(queues, 2);
    assert_int_equal(connections, 2);
    free(status);
}

// ---------------------------------------------------------------------------------------
// Broker restarts

// A client (heartbeat_ms) consuming from queue (declared here) with consumer tag.
static hop_client_t *
s_consuming(fx_t *fx, const char *name, int heartbeat_ms, const char *queue, const char *tag)
{
    hop_client_t *c = sx_client(fx, name, heartbeat_ms);
    CHECK(c, hop_client_declare_queue(c, queue, 0, NULL, 0));
    CHECK(c, hop_client_consume(c, queue, tag, 10, 0, NULL, 0));
    return c;
}

static void
test_client_reconnects_after_broker_restart(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = s_consuming(fx, "survivor", 200, "rq", "rc");
    sx_publish_text(c, "", "rq", "before restart");
    hop_delivery_t *old = sx_receive(c);
    uint64_t old_tag = old->tag;
    hop_delivery_destroy(&old);

    assert_int_equal(harness_broker_restart(fx->broker), 0);
    // The new broker knows nothing (the queue was not durable): another client recreates the
    // queue and publishes before the survivor makes its next call.
    hop_client_t *other = sx_client(fx, "other", 0);
    CHECK(other, hop_client_declare_queue(other, "rq", 0, NULL, 0));
    sx_publish_text(other, "", "rq", "after restart");
    sx_sync(other);

    // The survivor finds out (a call fails with HOP_ECONNECT, or succeeds after reconnecting)
    // and gets the message through its restored consumer.
    hop_delivery_t *d = NULL;
    uint64_t deadline = harness_now_ms() + WAIT_MS;
    int rc = HOP_ETIMEOUT, lost = 0;
    while (harness_now_ms() < deadline) {
        rc = hop_client_receive(c, &d, 500);
        if (rc == HOP_OK)
            break;
        if (rc == HOP_ECONNECT)
            lost++;
        else if (rc != HOP_ETIMEOUT)
            fail_msg("receive after restart: %s (%s)", hop_strerror(rc), hop_client_error(c));
    }
    if (rc != HOP_OK)
        fail_msg("no delivery after the broker restarted: %s", hop_client_error(c));
    assert_true(sx_body_is(d, "after restart"));
    assert_string_equal(d->consumer, "rc");
    CHECK(c, hop_client_ack(c, d->tag, false));
    hop_delivery_destroy(&d);
    print_message("survivor saw %d lost-connection errors\n", lost);
    // A tag of the old connection is refused locally, not sent to settle a stranger's message.
    assert_int_equal(hop_client_ack(c, old_tag, false), HOP_EPRECOND);
    sx_sync(c);
    assert_int_equal(sx_queue_stat(other, "rq", "acked"), 1);
    assert_int_equal(sx_queue_stat(other, "rq", "consumers"), 1);
}

static void
test_calls_fail_instead_of_hanging_when_the_broker_dies(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = sx_client(fx, "orphan", 200);
    hop_client_set_timeout(c, 2000);
    CHECK(c, hop_client_declare_queue(c, "dq", 0, NULL, 0));
    assert_int_equal(harness_broker_kill(fx->broker), 0);
    int rc = hop_client_declare_queue(c, "dq", 0, NULL, 0);
    if (rc != HOP_ECONNECT && rc != HOP_ETIMEOUT)
        fail_msg("declare with the broker dead: %d %s (%s)", rc, hop_strerror(rc),
                 hop_client_error(c));
    hop_delivery_t *d = NULL;
    rc = hop_client_receive(c, &d, 1000);
    assert_true(rc == HOP_ECONNECT || rc == HOP_ETIMEOUT);
    // Back on the same port: the client carries on.
    assert_int_equal(harness_broker_restart(fx->broker), 0);
    uint64_t deadline = harness_now_ms() + WAIT_MS;
    do
        rc = hop_client_declare_queue(c, "dq", 0, NULL, 0);
    while (rc != HOP_OK && harness_now_ms() < deadline);
    if (rc != HOP_OK)
        fail_msg("no reconnect after the broker came back: %s", hop_client_error(c));
    sx_publish_text(c, "", "dq", "back");
    CHECK(c, hop_client_get(c, "dq", HOP_NO_ACK, &d));
    assert_true(sx_body_is(d, "back"));
    hop_delivery_destroy(&d);
}

// The SDK reads its socket itself (sdk/zmtp.h): a broker killed outright is noticed at once,
// from the closed connection, not after the heartbeat timeout (here 50 s); a broker that is
// alive but silent is noticed after the timeout. Each says which it was.
static void
test_a_killed_broker_is_noticed_at_once_and_a_frozen_one_after_the_timeout(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = s_consuming(fx, "watcher", 10000, "kq", "kc");
    assert_int_equal(harness_broker_kill(fx->broker), 0);
    uint64_t start = harness_now_ms();
    hop_delivery_t *d = NULL;
    int rc = hop_client_receive(c, &d, 30000);
    assert_int_equal(rc, HOP_ECONNECT);
    assert_true(harness_now_ms() - start < 10000);
    if (!strstr(hop_client_error(c), "the broker closed it"))
        fail_msg("error after kill -9: %s", hop_client_error(c));

    assert_int_equal(harness_broker_restart(fx->broker), 0);
    hop_client_t *f = s_consuming(fx, "frozen", 200, "fq", "fc"); // silent for 1 s: lost
    int pid = harness_broker_pid(fx->broker);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    rc = hop_client_receive(f, &d, 30000);
    kill(pid, SIGCONT);
    assert_int_equal(rc, HOP_ECONNECT);
    if (!strstr(hop_client_error(f), "nothing heard from the broker"))
        fail_msg("error with the broker stopped: %s", hop_client_error(f));
}

int
main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--holder") == 0)
        return s_holder_main(argv[2], argv[3]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_direct_exchange, sx_setup, sx_teardown),
        cmocka_unit_test_setup_teardown(test_fanout_exchange_subscribers, sx_setup, sx_teardown),
        cmocka_unit_test_setup_teardown(test_topic_exchange_subscribers, sx_setup, sx_teardown),
        cmocka_unit_test_setup_teardown(test_default_exchange_by_queue_name, sx_setup, sx_teardown),
        cmocka_unit_test_setup_teardown(test_fanout_volume_in_order_to_4_subscribers, sx_setup,
                                        sx_teardown),
        cmocka_unit_test_setup_teardown(test_work_queue_each_message_once_over_3_consumers,
                                        sx_setup, sx_teardown),
        cmocka_unit_test_setup_teardown(test_killed_consumer_process_messages_redelivered, sx_setup,
                                        sx_teardown),
        cmocka_unit_test_setup_teardown(test_busy_consumer_is_not_declared_dead, sx_setup,
                                        sx_teardown),
        cmocka_unit_test_setup_teardown(test_request_reply, sx_setup, sx_teardown),
        cmocka_unit_test_setup_teardown(test_list_queues_counts, sx_setup, sx_teardown),
        cmocka_unit_test_setup_teardown(test_client_reconnects_after_broker_restart, sx_setup,
                                        sx_teardown),
        cmocka_unit_test_setup_teardown(test_calls_fail_instead_of_hanging_when_the_broker_dies,
                                        sx_setup, sx_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_killed_broker_is_noticed_at_once_and_a_frozen_one_after_the_timeout, sx_setup,
            sx_teardown),
    };
    return cmocka_run_group_tests_name("integration.sdk", tests, NULL, NULL);
}
