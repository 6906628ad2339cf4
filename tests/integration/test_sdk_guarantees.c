// tests/integration/test_sdk_guarantees.c - delivery guarantees (issue 4) through libhopper
// against a real hopperd: a consumer process frozen with SIGSTOP, the bounded producer/consumer
// buffer (reject-publish + confirms + retry), a poison message dead-lettered after exactly N
// deliveries, retry-later, ack deadlines with a late ack, mandatory returns, and per-message
// TTL with dead-letter records. Counts are exact: nothing lost, nothing duplicated except
// flagged redeliveries.
#include "sdk_helpers.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// ---------------------------------------------------------------------------------------
// A consumer frozen with SIGSTOP: its messages go to a live consumer within its timeout,
// and its late acks after SIGCONT are refused without touching anyone else's messages.

#define FROZEN_HEARTBEAT 200 // ms: the broker declares the consumer dead after 5 x this
#define FROZEN_PREFETCH  5
#define FROZEN_TOTAL     20

static bool
s_file_exists(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    return stat(path, &st) == 0;
}

static void
s_write_file(const char *dir, const char *name, const char *text)
{
    char path[512], tmp[520];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
    rename(tmp, path); // appears whole
}

// The frozen consumer's process: takes FROZEN_PREFETCH messages without acking, says so in
// DIR/ready, waits for DIR/go (it is stopped and continued meanwhile), then acks them and
// writes what the acks returned to DIR/result.
static int
s_sleeper_main(const char *endpoint, const char *queue, const char *dir)
{
    hop_client_t *c = hop_client_new();
    hop_client_set_heartbeat(c, FROZEN_HEARTBEAT);
    hop_client_set_name(c, "sleeper");
    if (hop_client_connect(c, endpoint) != HOP_OK ||
        hop_client_consume(c, queue, "sleeper", FROZEN_PREFETCH, 0, NULL, 0) != HOP_OK) {
        fprintf(stderr, "sleeper: %s\n", hop_client_error(c));
        hop_client_destroy(&c);
        return 1;
    }
    uint64_t tags[FROZEN_PREFETCH];
    for (int i = 0; i < FROZEN_PREFETCH; i++) {
        hop_delivery_t *d = NULL;
        if (hop_client_receive(c, &d, 20000) != HOP_OK) {
            fprintf(stderr, "sleeper: no delivery: %s\n", hop_client_error(c));
            hop_client_destroy(&c);
            return 1;
        }
        tags[i] = d->tag;
        hop_delivery_destroy(&d);
    }
    s_write_file(dir, "ready", "5\n");
    uint64_t until = harness_now_ms() + 60000;
    while (!s_file_exists(dir, "go") && harness_now_ms() < until)
        harness_pause_ms(20);
    // Awake: the broker closed this connection while we slept. The first call finds out and
    // reconnects; the acks that follow name deliveries of the old connection.
    void *status = NULL;
    size_t size = 0;
    int status_rc = hop_client_status(c, &status, &size);
    if (status_rc != HOP_OK)
        status_rc = hop_client_status(c, &status, &size);
    free(status);
    char result[512];
    int n = snprintf(result, sizeof result, "status=%d", status_rc);
    for (int i = 0; i < FROZEN_PREFETCH; i++)
        n += snprintf(result + n, sizeof result - (size_t)n, " ack=%d",
                      hop_client_ack(c, tags[i], false));
    snprintf(result + n, sizeof result - (size_t)n, "\n");
    s_write_file(dir, "result", result);
    hop_client_destroy(&c);
    return 0;
}

typedef struct {
    const char *dir;
    const char *name;
} s_file_t;

static bool
s_file_appeared(void *arg)
{
    s_file_t *f = arg;
    return s_file_exists(f->dir, f->name);
}

static void
test_sigstopped_consumer_messages_go_to_a_live_one(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = sx_client(fx, "live", 0);
    CHECK(c, hop_client_declare_queue(c, "frozen", 0, NULL, 0));
    for (int i = 0; i < FROZEN_TOTAL; i++) {
        char body[16];
        snprintf(body, sizeof body, "%d", i);
        sx_publish_text(c, "", "frozen", body);
    }
    sx_sync(c);
    const char *dir = harness_tempdir();
    char *argv[] = {(char *)harness_self_path(),
                    "--sleeper",
                    (char *)harness_broker_endpoint(fx->broker),
                    "frozen",
                    (char *)dir,
                    NULL};
    int pid = harness_spawn(argv);
    assert_true(pid > 0);
    s_file_t ready = {dir, "ready"};
    if (!harness_wait_until(s_file_appeared, &ready, WAIT_MS)) {
        harness_kill9(pid);
        fail_msg("the sleeper never took its %d messages", FROZEN_PREFETCH);
    }
    uint64_t unacked = 0;
    assert_true(sx_list_uint(c, "consumers", "consumer", "sleeper", "unacked", &unacked));
    assert_int_equal(unacked, FROZEN_PREFETCH);

    // Freeze it: no heartbeats any more. A live consumer gets everything, the sleeper's
    // messages flagged redelivered once the broker gives up on it (5 x 200 ms).
    assert_int_equal(kill(pid, SIGSTOP), 0);
    uint64_t stopped_at = harness_now_ms();
    CHECK(c, hop_client_consume(c, "frozen", "live", 0, 0, NULL, 0));
    bool seen[FROZEN_TOTAL] = {false};
    int redelivered = 0;
    uint64_t last_at = 0;
    for (int i = 0; i < FROZEN_TOTAL; i++) {
        hop_delivery_t *d = sx_receive(c);
        long seq = sx_body_seq(d);
        assert_true(seq >= 0 && seq < FROZEN_TOTAL);
        assert_false(seen[seq]);
        seen[seq] = true;
        if (d->redelivered) {
            assert_int_equal(d->delivery_count, 2);
            redelivered++;
            last_at = harness_now_ms();
        }
        CHECK(c, hop_client_ack(c, d->tag, false));
        hop_delivery_destroy(&d);
    }
    assert_int_equal(redelivered, FROZEN_PREFETCH);
    // Within the configured time: 5 heartbeats of silence, plus the broker's 100 ms tick and
    // generous slack for a loaded machine.
    assert_true(last_at - stopped_at < 5 * FROZEN_HEARTBEAT + 4000);
    sx_expect_nothing(c);
    assert_int_equal(sx_queue_stat(c, "frozen", "acked"), FROZEN_TOTAL);

    // Wake it: its late acks must be refused (the deliveries belong to a closed connection)
    // and must not settle anything else.
    sx_publish_text(c, "", "frozen", "after");
    sx_sync(c);
    CHECK(c, hop_client_cancel(c, "live"));
    s_write_file(dir, "go", "go\n");
    assert_int_equal(kill(pid, SIGCONT), 0);
    assert_int_equal(harness_reap(pid, WAIT_MS), 0);
    char path[512], result[512] = "";
    snprintf(path, sizeof path, "%s/result", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(result, sizeof result, f));
    fclose(f);
    char want[256];
    int n = snprintf(want, sizeof want, "status=0");
    for (int i = 0; i < FROZEN_PREFETCH; i++)
        n += snprintf(want + n, sizeof want - (size_t)n, " ack=%d", HOP_EPRECOND);
    snprintf(want + n, sizeof want - (size_t)n, "\n");
    assert_string_equal(result, want);
    // The message published meanwhile is untouched; nothing was acked twice.
    assert_int_equal(sx_queue_stat(c, "frozen", "messages_ready"), 1);
    assert_int_equal(sx_queue_stat(c, "frozen", "acked"), FROZEN_TOTAL);
}

// ---------------------------------------------------------------------------------------
// The bounded buffer: a reject-publish queue, a producer in confirm mode that retries what
// was refused, a consumer with prefetch 1. Everything arrives exactly once.

#define BUF_LIMIT 100
#define BUF_TOTAL 2000
#define BUF_ROUND 250 // publishes between confirm waits

typedef struct {
    uint64_t seq_of[BUF_TOTAL]; // confirm sequence of each value's latest publish
    bool nacked[BUF_TOTAL];     // its latest publish was refused
    uint64_t nacks;
} s_producer_t;

static void
s_on_confirm(hop_client_t *client, uint64_t seq, bool multiple, bool ok, int code, const char *text,
             void *arg)
{
    (void)client, (void)text;
    s_producer_t *p = arg;
    if (ok)
        return;
    // Negative confirms are never "multiple" from hopperd; map the seq back to its value.
    for (int v = 0; v < BUF_TOTAL; v++)
        if (p->seq_of[v] == seq || (multiple && p->seq_of[v] && p->seq_of[v] <= seq)) {
            p->nacked[v] = true;
            p->nacks++;
            assert_true(code == HOP_CODE_RESOURCE_ERROR);
        }
}

static void
s_publish_value(hop_client_t *c, s_producer_t *p, int v)
{
    char body[16];
    snprintf(body, sizeof body, "%d", v);
    uint64_t seq = 0;
    CHECK(c, hop_client_publish_ex(c, "", "buffer", body, strlen(body), NULL, NULL, &seq));
    assert_true(seq > 0);
    p->seq_of[v] = seq;
    p->nacked[v] = false;
}

// Takes up to max deliveries that are already waiting (prefetch 1: one at a time).
static int
s_consume_some(hop_client_t *c, int *seen, int max)
{
    int n = 0;
    hop_delivery_t *d = NULL;
    while (n < max && hop_client_receive(c, &d, n == 0 ? 200 : 50) == HOP_OK) {
        long v = sx_body_seq(d);
        assert_true(v >= 0 && v < BUF_TOTAL);
        seen[v]++;
        CHECK(c, hop_client_ack(c, d->tag, false));
        hop_delivery_destroy(&d);
        n++;
    }
    return n;
}

static void
test_bounded_buffer_with_reject_publish_loses_nothing(void **state)
{
    fx_t *fx = *state;
    hop_client_t *prod = sx_client(fx, "producer", 0);
    hop_client_t *cons = sx_client(fx, "consumer", 0);
    hop_queue_args_t args = {.max_length = BUF_LIMIT, .overflow = "reject-publish"};
    CHECK(prod, hop_client_declare_queue_args(prod, "buffer", 0, &args, NULL, 0, NULL, NULL));
    s_producer_t *p = calloc(1, sizeof *p);
    int *seen = calloc(BUF_TOTAL, sizeof *seen);
    assert_non_null(p);
    assert_non_null(seen);
    CHECK(prod, hop_client_confirm_select(prod));
    hop_client_on_confirm(prod, s_on_confirm, p);
    CHECK(cons, hop_client_consume(cons, "buffer", "worker", 1, 0, NULL, 0));

    // First pass: everything, faster than the consumer can take it.
    for (int v = 0; v < BUF_TOTAL; v++) {
        s_publish_value(prod, p, v);
        if ((v + 1) % BUF_ROUND == 0) {
            uint64_t nacked = 0;
            int rc = hop_client_wait_confirms(prod, WAIT_MS, &nacked);
            assert_true(rc == HOP_OK || rc == HOP_ENACKED);
        }
    }
    uint64_t nacked = 0;
    int rc = hop_client_wait_confirms(prod, WAIT_MS, &nacked);
    assert_true(rc == HOP_OK || rc == HOP_ENACKED);
    assert_true(p->nacks > 0); // the limit was hit: the scenario was exercised
    assert_true(sx_queue_stat(prod, "buffer", "messages_ready") <= BUF_LIMIT);

    // Then: consume some, retry what was refused, until nothing is left to retry.
    uint64_t deadline = harness_now_ms() + 60000;
    for (;;) {
        s_consume_some(cons, seen, BUF_LIMIT / 2);
        int retried = 0;
        for (int v = 0; v < BUF_TOTAL; v++)
            if (p->nacked[v]) {
                s_publish_value(prod, p, v);
                retried++;
            }
        rc = hop_client_wait_confirms(prod, WAIT_MS, &nacked);
        assert_true(rc == HOP_OK || rc == HOP_ENACKED);
        if (retried == 0)
            break;
        assert_true(harness_now_ms() < deadline);
    }
    int total = 0;
    while (total < BUF_TOTAL && harness_now_ms() < deadline) {
        total = 0;
        for (int v = 0; v < BUF_TOTAL; v++)
            total += seen[v] > 0;
        if (total < BUF_TOTAL)
            s_consume_some(cons, seen, BUF_LIMIT);
    }
    for (int v = 0; v < BUF_TOTAL; v++)
        if (seen[v] != 1)
            fail_msg("value %d consumed %d times", v, seen[v]);
    assert_true(sx_queue_stat(prod, "buffer", "rejected_publishes") == p->nacks);
    assert_int_equal(sx_queue_stat(prod, "buffer", "messages"), 0);
    assert_int_equal(sx_queue_stat(prod, "buffer", "acked"), BUF_TOTAL);
    assert_int_equal(hop_client_unconfirmed(prod), 0);
    free(p);
    free(seen);
}

// ---------------------------------------------------------------------------------------
// A poison message: always rejected with requeue, dead-lettered after exactly N deliveries.

static void
test_poison_message_dead_lettered_after_max_deliveries(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = sx_client(fx, "worker", 0);
    CHECK(c, hop_client_declare_queue(c, "poisoned", 0, NULL, 0));
    hop_queue_args_t args = {
        .max_deliveries = 3, .dead_letter_exchange = "", .dead_letter_key = "poisoned"};
    CHECK(c, hop_client_declare_queue_args(c, "work", 0, &args, NULL, 0, NULL, NULL));
    sx_publish_text(c, "", "work", "poison");
    CHECK(c, hop_client_consume(c, "work", "w", 1, 0, NULL, 0));
    for (uint32_t n = 1; n <= 3; n++) {
        hop_delivery_t *d = sx_receive(c);
        assert_true(sx_body_is(d, "poison"));
        assert_int_equal(d->delivery_count, n);
        CHECK(c, hop_client_reject(c, d->tag, true));
        hop_delivery_destroy(&d);
    }
    sx_expect_nothing(c);
    CHECK(c, hop_client_cancel(c, "w"));
    hop_delivery_t *d = NULL;
    CHECK(c, hop_client_get(c, "poisoned", HOP_NO_ACK, &d));
    assert_true(sx_body_is(d, "poison"));
    assert_int_equal(d->death_count, 1);
    assert_string_equal(d->deaths[0].reason, "delivery-limit");
    assert_string_equal(d->deaths[0].queue, "work");
    assert_string_equal(d->deaths[0].exchange, "");
    assert_string_equal(d->deaths[0].routing_key, "work");
    assert_int_equal(d->deaths[0].count, 1);
    assert_true(d->deaths[0].time > 0);
    hop_delivery_destroy(&d);
    assert_int_equal(sx_queue_stat(c, "work", "messages"), 0);
    assert_int_equal(sx_queue_stat(c, "work", "dead_lettered"), 1);
}

// ---------------------------------------------------------------------------------------
// Retry later: the message comes back no earlier than asked, others flow meanwhile.

static void
test_retry_later_comes_back_after_the_delay(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = sx_client(fx, "retrier", 0);
    CHECK(c, hop_client_declare_queue(c, "later", 0, NULL, 0));
    sx_publish_text(c, "", "later", "first");
    CHECK(c, hop_client_consume(c, "later", "r", 10, 0, NULL, 0));
    hop_delivery_t *d = sx_receive(c);
    assert_true(sx_body_is(d, "first"));
    uint64_t nacked_at = harness_now_ms();
    CHECK(c, hop_client_retry_later(c, d->tag, 400));
    hop_delivery_destroy(&d);
    sx_publish_text(c, "", "later", "second");
    sx_expect_body(c, "second"); // not stuck behind the delayed one
    assert_int_equal(sx_queue_stat(c, "later", "messages_delayed"), 1);
    d = sx_receive(c);
    uint64_t back_at = harness_now_ms();
    assert_true(sx_body_is(d, "first"));
    assert_true(d->redelivered);
    assert_int_equal(d->delivery_count, 2);
    assert_true(back_at - nacked_at >= 400);
    CHECK(c, hop_client_ack(c, d->tag, false));
    hop_delivery_destroy(&d);
}

// ---------------------------------------------------------------------------------------
// Ack deadline: a delivery held past it is revoked, redelivered, and a late ack refused.

static uint64_t s_revoked_tag;

static void
s_on_revoked(hop_client_t *client, const char *consumer, uint64_t tag, void *arg)
{
    (void)client, (void)arg;
    if (strcmp(consumer, "slow") == 0)
        s_revoked_tag = tag;
}

static void
test_ack_deadline_revokes_and_refuses_a_late_ack(void **state)
{
    fx_t *fx = *state;
    hop_client_t *slow = sx_client(fx, "slow", 0);
    hop_client_t *other = sx_client(fx, "other", 0);
    CHECK(slow, hop_client_declare_queue(slow, "deadline", 0, NULL, 0));
    sx_publish_text(slow, "", "deadline", "job");
    s_revoked_tag = 0;
    hop_client_on_revoked(slow, s_on_revoked, NULL);
    // The deadline runs from the broker's delivery, which comes after this moment (taking it
    // once the delivery was received would count a slow receive against the deadline).
    uint64_t got_at = harness_now_ms();
    CHECK(slow, hop_client_consume_ex(slow, "deadline", "slow", 1, 0, 1000, NULL, 0));
    hop_delivery_t *d = sx_receive(slow);
    uint64_t tag = d->tag;
    hop_delivery_destroy(&d);
    CHECK(other, hop_client_consume(other, "deadline", "other", 1, 0, NULL, 0));
    d = sx_receive(other); // once revoked, the message goes to the other consumer
    assert_true(harness_now_ms() - got_at >= 1000);
    assert_true(sx_body_is(d, "job"));
    assert_true(d->redelivered);
    assert_int_equal(d->delivery_count, 2);
    CHECK(other, hop_client_ack(other, d->tag, false));
    hop_delivery_destroy(&d);
    sx_sync(slow); // the revoked notice has been processed
    assert_int_equal(s_revoked_tag, tag);
    int rc = hop_client_ack(slow, tag, false);
    if (rc == HOP_OK) // refused by the broker: reported on the next round trip
        rc = hop_client_declare_exchange(slow, "amq.direct", "direct", HOP_PASSIVE);
    assert_int_equal(rc, HOP_EPRECOND);
    assert_non_null(strstr(hop_client_error(slow), "revoked"));
    assert_int_equal(sx_queue_stat(other, "deadline", "acked"), 1);
    assert_int_equal(sx_queue_stat(other, "deadline", "messages"), 0);
}

// ---------------------------------------------------------------------------------------
// Mandatory: an unroutable message comes back through the return callback.

typedef struct {
    int returns;
    int code;
    char body[32];
} s_returns_t;

static void
s_on_return(hop_client_t *client, const hop_delivery_t *returned, int code, const char *text,
            void *arg)
{
    (void)client, (void)text;
    s_returns_t *r = arg;
    r->returns++;
    r->code = code;
    snprintf(r->body, sizeof r->body, "%.*s", (int)returned->body_size,
             (const char *)returned->body);
}

static void
test_mandatory_unroutable_message_is_returned(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = sx_client(fx, "mandatory", 0);
    s_returns_t r = {0};
    hop_client_on_return(c, s_on_return, &r);
    CHECK(c, hop_client_confirm_select(c));
    hop_publish_opts_t opts = {.mandatory = true};
    CHECK(c, hop_client_publish_ex(c, "amq.direct", "nobody", "lost?", 5, NULL, &opts, NULL));
    CHECK(c, hop_client_wait_confirms(c, WAIT_MS, NULL));
    assert_int_equal(r.returns, 1);
    assert_int_equal(r.code, HOP_CODE_NO_ROUTE);
    assert_string_equal(r.body, "lost?");
    // Not mandatory: dropped and counted, no return.
    CHECK(c, hop_client_publish_ex(c, "amq.direct", "nobody", "gone", 4, NULL, NULL, NULL));
    CHECK(c, hop_client_wait_confirms(c, WAIT_MS, NULL));
    assert_int_equal(r.returns, 1);
}

// ---------------------------------------------------------------------------------------
// TTL: an expired message is never delivered; it is dead-lettered with its death record.

static void
test_expired_message_is_dead_lettered_with_its_record(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = sx_client(fx, "ttl", 0);
    CHECK(c, hop_client_declare_queue(c, "expired", 0, NULL, 0));
    hop_queue_args_t args = {
        .message_ttl = 5000, .dead_letter_exchange = "", .dead_letter_key = "expired"};
    CHECK(c, hop_client_declare_queue_args(c, "short", 0, &args, NULL, 0, NULL, NULL));
    hop_publish_opts_t opts = {.expiration = 150, .priority = 0};
    CHECK(c, hop_client_publish_ex(c, "", "short", "stale", 5, NULL, &opts, NULL));
    sx_publish_text(c, "", "short", "fresh"); // the queue's 5 s TTL applies to this one
    uint64_t deadline = harness_now_ms() + WAIT_MS;
    while (sx_queue_stat(c, "expired", "messages_ready") < 1 && harness_now_ms() < deadline)
        harness_pause_ms(20);
    hop_delivery_t *d = NULL;
    CHECK(c, hop_client_get(c, "expired", HOP_NO_ACK, &d));
    assert_true(sx_body_is(d, "stale"));
    assert_int_equal(d->death_count, 1);
    assert_string_equal(d->deaths[0].reason, "expired");
    assert_string_equal(d->deaths[0].queue, "short");
    assert_string_equal(d->deaths[0].routing_key, "short");
    assert_string_equal(d->routing_key, "expired");
    hop_delivery_destroy(&d);
    CHECK(c, hop_client_get(c, "short", HOP_NO_ACK, &d));
    assert_true(sx_body_is(d, "fresh"));
    assert_int_equal(d->death_count, 0);
    hop_delivery_destroy(&d);
    assert_int_equal(sx_queue_stat(c, "short", "expired"), 1);
}

// ---------------------------------------------------------------------------------------
// Publisher flow control: a queue over the broker's watermark pauses its publisher; the
// publish fails with HOP_EFULL after the client's timeout; it resumes once the queue drains.

#define FLOW_WATERMARK 1000

static int
s_setup_flow(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    harness_opts_t opts = {.flow_messages = FLOW_WATERMARK};
    fx->broker = harness_broker_start(&opts);
    if (!fx->broker) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static void
test_publisher_paused_over_the_watermark_then_resumed(void **state)
{
    fx_t *fx = *state;
    hop_client_t *pub = sx_client(fx, "flooder", 0);
    hop_client_t *c = sx_client(fx, "drainer", 0);
    hop_client_t *stuck = sx_client(fx, "stuck", 0);
    hop_client_set_timeout(pub, 1000); // how long a paused publish waits
    CHECK(c, hop_client_declare_queue(c, "flood", 0, NULL, 0));
    // Without consumers a queue may grow (a backlog kept on purpose): not paused.
    char body[64];
    for (int i = 0; i < 3 * FLOW_WATERMARK; i++)
        CHECK(pub, hop_client_publish(pub, "", "flood", "early", 5, NULL));
    sx_sync(pub);
    assert_int_equal(sx_queue_stat(c, "flood", "messages_ready"), 3 * FLOW_WATERMARK);
    CHECK(c, hop_client_purge_queue(c, "flood", NULL));
    // A consumer that stopped taking messages (prefetch 1, never acks): its publisher pauses.
    CHECK(stuck, hop_client_consume(stuck, "flood", "stuck", 1, 0, NULL, 0));
    uint64_t sent = 0;
    int rc = HOP_OK;
    uint64_t deadline = harness_now_ms() + WAIT_MS;
    while (rc == HOP_OK && harness_now_ms() < deadline) {
        snprintf(body, sizeof body, "%llu", (unsigned long long)sent);
        rc = hop_client_publish(pub, "", "flood", body, strlen(body), NULL);
        if (rc == HOP_OK)
            sent++;
    }
    assert_int_equal(rc, HOP_EFULL);
    assert_non_null(strstr(hop_client_error(pub), "paused"));
    assert_non_null(strstr(hop_client_error(pub), "flood"));
    assert_true(sent >= FLOW_WATERMARK);
    void *status = NULL;
    size_t size = 0;
    CHECK(c, hop_client_status(c, &status, &size));
    uint64_t paused = 0;
    assert_true(harness_map_uint(status, size, "paused_publishers", &paused));
    assert_int_equal(paused, 1);
    free(status);

    // A queue with a length limit fills up to it and meets its overflow policy instead.
    hop_queue_args_t bounded = {.max_length = 2 * FLOW_WATERMARK, .overflow = "reject-publish"};
    CHECK(c, hop_client_declare_queue_args(c, "bounded", 0, &bounded, NULL, 0, NULL, NULL));
    CHECK(stuck, hop_client_consume(stuck, "bounded", "stuck2", 1, 0, NULL, 0));
    hop_client_t *conf = sx_client(fx, "confirming", 0);
    CHECK(conf, hop_client_confirm_select(conf));
    for (int i = 0; i < 3 * FLOW_WATERMARK; i++)
        CHECK(conf, hop_client_publish(conf, "", "bounded", "b", 1, NULL));
    uint64_t nacked = 0;
    assert_int_equal(hop_client_wait_confirms(conf, WAIT_MS, &nacked), HOP_ENACKED);
    assert_int_equal(nacked, FLOW_WATERMARK - 1); // 1 went to the stuck consumer
    assert_int_equal(sx_queue_stat(c, "bounded", "messages_ready"), 2 * FLOW_WATERMARK);

    // Drain: every message that was published arrives exactly once (the one the stuck
    // consumer holds comes back when it goes); the publisher resumes.
    CHECK(c, hop_client_consume(c, "flood", "d", 500, 0, NULL, 0));
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (fx->clients[i] == stuck)
            hop_client_destroy(&fx->clients[i]);
    uint8_t *seen = calloc(sent, 1);
    assert_non_null(seen);
    for (uint64_t i = 0; i < sent; i++) {
        hop_delivery_t *d = sx_receive(c);
        long v = sx_body_seq(d);
        assert_true(v >= 0 && (uint64_t)v < sent);
        assert_int_equal(seen[v], 0);
        seen[v] = 1;
        CHECK(c, hop_client_ack(c, d->tag, false));
        hop_delivery_destroy(&d);
    }
    free(seen);
    sx_expect_nothing(c);
    CHECK(pub, hop_client_publish(pub, "", "flood", "again", 5, NULL));
    sx_expect_body(c, "again");
    CHECK(c, hop_client_status(c, &status, &size));
    assert_true(harness_map_uint(status, size, "paused_publishers", &paused));
    assert_int_equal(paused, 0);
    free(status);
}

int
main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--sleeper") == 0)
        return s_sleeper_main(argv[2], argv[3], argv[4]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sigstopped_consumer_messages_go_to_a_live_one,
                                        sx_setup, sx_teardown),
        cmocka_unit_test_setup_teardown(test_bounded_buffer_with_reject_publish_loses_nothing,
                                        sx_setup, sx_teardown),
        cmocka_unit_test_setup_teardown(test_poison_message_dead_lettered_after_max_deliveries,
                                        sx_setup, sx_teardown),
        cmocka_unit_test_setup_teardown(test_retry_later_comes_back_after_the_delay, sx_setup,
                                        sx_teardown),
        cmocka_unit_test_setup_teardown(test_ack_deadline_revokes_and_refuses_a_late_ack, sx_setup,
                                        sx_teardown),
        cmocka_unit_test_setup_teardown(test_mandatory_unroutable_message_is_returned, sx_setup,
                                        sx_teardown),
        cmocka_unit_test_setup_teardown(test_expired_message_is_dead_lettered_with_its_record,
                                        sx_setup, sx_teardown),
        cmocka_unit_test_setup_teardown(test_publisher_paused_over_the_watermark_then_resumed,
                                        s_setup_flow, sx_teardown),
    };
    return cmocka_run_group_tests_name("integration.sdk_guarantees", tests, NULL, NULL);
}
