// tests/integration/test_guarantees.c - what hopperd promises about each message, over the raw
// wire protocol (docs/PROTOCOL.md 4.3-4.7, 6.4, 6.5): publisher confirms, mandatory returns,
// bounded queues, TTL and queue expiry, dead letters, delivery limits, delayed retries, ack
// deadlines, priorities, and the counters that report them. Each test starts its own broker and
// checks exact counts and values: no message lost, none duplicated except flagged redeliveries.
//
// Some behaviours here are about time (TTL, delays, ack deadlines, queue expiry). Those tests
// wait for the event with a deadline and assert only lower bounds ("not before the delay"),
// never speed. Everything else is made deterministic by round trips: the broker handles one
// connection's messages in order, so a reply proves what it did and sent before.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "hopper.h"
#include "raw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_MS   10000 // longest wait for any single event
#define HB_LONG   60000 // heartbeat of test connections: they must never time out
#define SEQ_MAX   1024  // publisher sequence numbers a test may use
#define SMALL_MAX 1024  // --max-message of the broker that refuses large bodies
#define DEATH_MAX 8     // death records a test reads from one message

// ---------------------------------------------------------------------------------------
// Fixture: a broker and two connections that said hello.

typedef struct {
    harness_broker_t *broker;
    raw_t *a;
    raw_t *b;
    bool batch; // both said batch:true: deliveries made in one loop turn come as batches
} fx_t;

static int
s_setup_with(void **state, const harness_opts_t *opts, bool batch)
{
    fx_t *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    fx->broker = harness_broker_start(opts);
    if (!fx->broker) {
        free(fx);
        return -1;
    }
    fx->a = raw_new(harness_broker_endpoint(fx->broker));
    fx->b = raw_new(harness_broker_endpoint(fx->broker));
    *state = fx;
    fx->batch = batch;
    int (*hello)(raw_t *, uint64_t, const char *) = batch ? raw_hello_batch : raw_hello;
    if (!fx->a || !fx->b || hello(fx->a, HB_LONG, "a") || hello(fx->b, HB_LONG, "b")) {
        fprintf(stderr, "setup: hello failed\n");
        return -1;
    }
    return 0;
}

static int
setup(void **state)
{
    return s_setup_with(state, NULL, false);
}

// A broker with --max-message SMALL_MAX.
static int
setup_small(void **state)
{
    harness_opts_t opts = {.max_message = SMALL_MAX};
    return s_setup_with(state, &opts, false);
}

// The same tests with clients that take batches: deliveries then take the broker's batch path.
static int
setup_batch(void **state)
{
    return s_setup_with(state, NULL, true);
}

static int
teardown(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return 0;
    raw_destroy(&fx->a);
    raw_destroy(&fx->b);
    // The broker must still be up, and must exit cleanly (under ASan: without leaks).
    int rc = harness_broker_finish(&fx->broker);
    free(fx);
    *state = NULL;
    return rc;
}

// ---------------------------------------------------------------------------------------
// Helpers: requests

static uint64_t
s_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

// A round trip on c: everything the broker sent c before it is then buffered.
static void
s_sync(raw_t *c)
{
    assert_int_equal(raw_exchange_declare(c, "amq.direct", NULL, false, false, true), 0);
}

// Sends the request being built on c and waits for its reply. Returns 0 for a success reply or
// the error code; the reply's text (if any) goes to text.
static int
s_call(raw_t *c, char *text, size_t size)
{
    raw_msg_t *m = raw_call(c);
    if (!m)
        fail_msg("no reply to request %llu within %d ms", (unsigned long long)raw_last_id(c),
                 RAW_TIMEOUT_MS);
    int code = 0;
    if (m->wire.cmd == HOP_CMD_ERROR) {
        code = (int)m->wire.code;
        assert_int_equal(m->wire.id, raw_last_id(c));
    }
    if (text)
        raw_str(m->wire.text, text, size);
    raw_msg_destroy(&m);
    return code;
}

// Begins a queue.declare of queue; add arguments to the encoder, then s_call.
static hop_enc_t *
s_qdecl(raw_t *c, const char *queue)
{
    hop_enc_t *enc = raw_begin(c, HOP_CMD_QUEUE_DECLARE);
    hop_enc_cstr(enc, "queue", queue);
    return enc;
}

// Options of one publish; zero values are not sent.
typedef struct {
    uint64_t seq; // asks for a confirm
    bool mandatory;
    bool has_expiration;
    uint64_t expiration;
    uint64_t priority;
    const char *message_id; // sends props {content_type:"text/plain", message_id}
} s_pub_t;

static void
s_pub(raw_t *c, const char *exchange, const char *key, const char *body, const s_pub_t *o)
{
    hop_enc_t *enc = raw_begin_noid(c, HOP_CMD_PUBLISH);
    hop_enc_cstr(enc, "exchange", exchange);
    hop_enc_cstr(enc, "key", key);
    if (o && o->seq)
        hop_enc_uint(enc, "seq", o->seq);
    if (o && o->mandatory)
        hop_enc_bool(enc, "mandatory", true);
    if (o && o->has_expiration)
        hop_enc_uint(enc, "expiration", o->expiration);
    if (o && o->priority)
        hop_enc_uint(enc, "priority", o->priority);
    if (o && o->message_id) {
        hop_enc_map_begin(enc, "props");
        hop_enc_cstr(enc, "content_type", "text/plain");
        hop_enc_cstr(enc, "message_id", o->message_id);
        hop_enc_map_end(enc);
    }
    assert_int_equal(raw_send_enc(c, body, strlen(body)), 0);
}

// consume with a given tag, prefetch and (when not 0) ack_timeout. Returns 0 or the error code.
static int
s_consume(raw_t *c, const char *queue, const char *tag, uint64_t prefetch, uint64_t ack_timeout)
{
    hop_enc_t *enc = raw_begin(c, HOP_CMD_CONSUME);
    hop_enc_cstr(enc, "queue", queue);
    hop_enc_cstr(enc, "consumer", tag);
    hop_enc_uint(enc, "prefetch", prefetch);
    if (ack_timeout)
        hop_enc_uint(enc, "ack_timeout", ack_timeout);
    return s_call(c, NULL, 0);
}

// ack / nack / reject of tag without an id; requeue and delay are sent when >= 0.
static void
s_settle(raw_t *c, hop_cmd_t cmd, uint64_t tag, int requeue, long delay)
{
    hop_enc_t *enc = raw_begin_noid(c, cmd);
    hop_enc_uint(enc, "tag", tag);
    if (requeue >= 0)
        hop_enc_bool(enc, "requeue", requeue != 0);
    if (delay >= 0)
        hop_enc_uint(enc, "delay", (uint64_t)delay);
    assert_int_equal(raw_send_enc(c, NULL, 0), 0);
}

// ---------------------------------------------------------------------------------------
// Helpers: what comes back

static raw_msg_t *
s_deliver(raw_t *c)
{
    raw_msg_t *m = raw_next(c, HOP_CMD_DELIVER, WAIT_MS);
    if (!m)
        fail_msg("no delivery within %d ms", WAIT_MS);
    return m;
}

static void
s_check_delivery(const raw_msg_t *m, const char *text, bool redelivered, uint64_t count)
{
    char buf[256];
    if (!raw_body_is(m, text))
        fail_msg("expected message '%s', got '%s'", text, raw_body(m, buf, sizeof buf));
    assert_true(m->wire.has & HOP_F_TAG);
    if (m->wire.redelivered != redelivered || m->wire.count != count)
        fail_msg("message '%s': expected redelivered=%d count=%llu, got redelivered=%d count=%llu",
                 text, redelivered, (unsigned long long)count, m->wire.redelivered,
                 (unsigned long long)m->wire.count);
}

// Waits for a delivery of text with these flags; returns its tag.
static uint64_t
s_expect_deliver(raw_t *c, const char *text, bool redelivered, uint64_t count)
{
    raw_msg_t *m = s_deliver(c);
    s_check_delivery(m, text, redelivered, count);
    uint64_t tag = m->wire.tag;
    raw_msg_destroy(&m);
    return tag;
}

static void
s_expect_no_delivery(raw_t *c)
{
    s_sync(c);
    size_t n = raw_pending(c, HOP_CMD_DELIVER);
    if (n) {
        raw_msg_t *m = raw_next(c, HOP_CMD_DELIVER, 0);
        char buf[256];
        fail_msg("%zu unexpected deliveries, the first '%s' (count %llu)", n,
                 raw_body(m, buf, sizeof buf), (unsigned long long)m->wire.count);
    }
}

static void
s_expect_no_error(raw_t *c)
{
    s_sync(c);
    raw_msg_t *m = raw_pending(c, HOP_CMD_ERROR) ? raw_next(c, HOP_CMD_ERROR, 0) : NULL;
    if (m) {
        char text[512];
        fail_msg("unexpected error %d: %s", (int)m->wire.code,
                 raw_str(m->wire.text, text, sizeof text));
    }
}

// get: returns the reply (get-ok, get-empty or error).
static raw_msg_t *
s_get(raw_t *c, const char *queue, bool no_ack)
{
    hop_enc_t *enc = raw_begin(c, HOP_CMD_GET);
    hop_enc_cstr(enc, "queue", queue);
    hop_enc_bool(enc, "no_ack", no_ack);
    raw_msg_t *m = raw_call(c);
    assert_non_null(m);
    return m;
}

static raw_msg_t *
s_get_ok(raw_t *c, const char *queue, bool no_ack)
{
    raw_msg_t *m = s_get(c, queue, no_ack);
    if (m->wire.cmd != HOP_CMD_GET_OK)
        fail_msg("get from '%s': expected get-ok, got %s %d", queue, hop_cmd_name(m->wire.cmd),
                 (int)m->wire.code);
    return m;
}

static void
s_expect_empty(raw_t *c, const char *queue)
{
    raw_msg_t *m = s_get(c, queue, true);
    char buf[256];
    if (m->wire.cmd != HOP_CMD_GET_EMPTY)
        fail_msg("get from '%s': expected get-empty, got %s '%s'", queue, hop_cmd_name(m->wire.cmd),
                 raw_body(m, buf, sizeof buf));
    raw_msg_destroy(&m);
}

// Gets every ready message of queue (no-ack) and returns their bodies joined by ','.
static char *
s_drain(raw_t *c, const char *queue, char *out, size_t size)
{
    out[0] = '\0';
    while (true) {
        raw_msg_t *m = s_get(c, queue, true);
        if (m->wire.cmd == HOP_CMD_GET_EMPTY) {
            raw_msg_destroy(&m);
            return out;
        }
        assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
        char body[256];
        raw_body(m, body, sizeof body);
        size_t len = strlen(out);
        snprintf(out + len, size - len, "%s%s", len ? "," : "", body);
        raw_msg_destroy(&m);
    }
}

static void
s_expect_props(const raw_msg_t *m, const char *message_id)
{
    assert_true(m->wire.has & HOP_F_PROPS);
    char buf[64];
    assert_true(
        harness_map_str(m->wire.props.ptr, m->wire.props.len, "content_type", buf, sizeof buf));
    assert_string_equal(buf, "text/plain");
    assert_true(
        harness_map_str(m->wire.props.ptr, m->wire.props.len, "message_id", buf, sizeof buf));
    assert_string_equal(buf, message_id);
}

static void
s_expect_str(hop_str_t s, const char *text)
{
    char buf[300];
    if (!raw_str_is(s, text))
        fail_msg("expected '%s', got '%s'", text, raw_str(s, buf, sizeof buf));
}

// A uint field of queue in list queues.
static uint64_t
s_qstat(raw_t *c, const char *queue, const char *field)
{
    uint64_t value = 0;
    if (!raw_queue_stat(c, queue, field, &value))
        fail_msg("queue '%s' not listed (or no uint field '%s')", queue, field);
    return value;
}

// A uint field of status.
static uint64_t
s_status(raw_t *c, const char *field)
{
    raw_msg_t *m = raw_status(c);
    assert_non_null(m);
    uint64_t value = 0;
    bool found =
        harness_map_uint(zmq_msg_data(&m->header), zmq_msg_size(&m->header), field, &value);
    raw_msg_destroy(&m);
    if (!found)
        fail_msg("status has no uint field '%s'", field);
    return value;
}

static bool
s_queue_listed(raw_t *c, const char *queue)
{
    raw_msg_t *list = raw_list(c, "queues");
    assert_non_null(list);
    const void *item;
    size_t size;
    bool found =
        harness_items_find(list->wire.items.ptr, list->wire.items.len, "name", queue, &item, &size);
    raw_msg_destroy(&list);
    return found;
}

// Waiting for a queue counter (list queues does not count as using a queue).
typedef struct {
    raw_t *c;
    const char *queue, *field;
    uint64_t value;
} s_qwait_t;

static bool
s_qfield_reached(void *arg)
{
    s_qwait_t *w = arg;
    uint64_t v = 0;
    return raw_queue_stat(w->c, w->queue, w->field, &v) && v >= w->value;
}

// Waits until queue's field reaches value (at most timeout_ms); then it must equal value.
// Returns the monotonic ms at which it was seen.
static uint64_t
s_wait_qfield(raw_t *c, const char *queue, const char *field, uint64_t value, int timeout_ms)
{
    s_qwait_t w = {c, queue, field, value};
    if (!harness_wait_until(s_qfield_reached, &w, timeout_ms))
        fail_msg("queue '%s': %s is %llu, not %llu, after %d ms", queue, field,
                 (unsigned long long)s_qstat(c, queue, field), (unsigned long long)value,
                 timeout_ms);
    uint64_t at = harness_now_ms();
    assert_int_equal(s_qstat(c, queue, field), value);
    return at;
}

typedef struct {
    raw_t *c;
    const char *queue;
} s_gone_t;

static bool
s_queue_gone(void *arg)
{
    s_gone_t *g = arg;
    return !s_queue_listed(g->c, g->queue);
}

// ---------------------------------------------------------------------------------------
// Helpers: publisher confirms

typedef enum { C_PENDING = 0, C_ACK, C_NACK } s_cstate_t;

// What the broker confirmed, per sequence number.
typedef struct {
    uint8_t state[SEQ_MAX + 1]; // s_cstate_t
    uint64_t code[SEQ_MAX + 1]; // of negative confirms
    uint64_t published;         // highest sequence published (they start at 1)
    size_t acks, nacks;
} s_confirms_t;

static s_confirms_t s_conf; // one per test (reset by s_confirms_reset)

static s_confirms_t *
s_confirms_reset(void)
{
    memset(&s_conf, 0, sizeof s_conf);
    return &s_conf;
}

// The next sequence number to publish with.
static uint64_t
s_next_seq(s_confirms_t *t)
{
    assert_true(t->published < SEQ_MAX);
    return ++t->published;
}

// Applies one confirm: it must name a published sequence no confirm covered yet; a multiple
// one covers every sequence up to it that was still pending (PROTOCOL.md 4.4).
static void
s_confirm_apply(s_confirms_t *t, const raw_msg_t *m)
{
    assert_int_equal(m->wire.cmd, HOP_CMD_CONFIRM);
    assert_true(m->wire.has & HOP_F_SEQ);
    uint64_t seq = m->wire.seq;
    if (seq == 0 || seq > t->published)
        fail_msg("confirm of seq %llu, which was never published (last %llu)",
                 (unsigned long long)seq, (unsigned long long)t->published);
    if (t->state[seq] != C_PENDING)
        fail_msg("seq %llu confirmed twice (%s, then %s)", (unsigned long long)seq,
                 t->state[seq] == C_ACK ? "ack" : "nack", m->wire.nack ? "nack" : "ack");
    if (m->wire.nack) {
        assert_false(m->wire.multiple);
        assert_true(m->wire.has & HOP_F_CODE);
        assert_true((m->wire.has & HOP_F_TEXT) && m->wire.text.len > 0);
        t->state[seq] = C_NACK;
        t->code[seq] = m->wire.code;
        t->nacks++;
        return;
    }
    for (uint64_t s = m->wire.multiple ? 1 : seq; s <= seq; s++)
        if (t->state[s] == C_PENDING) {
            t->state[s] = C_ACK;
            t->acks++;
        }
}

// Waits until every published sequence is confirmed, one way or the other.
static void
s_confirms_wait(raw_t *c, s_confirms_t *t)
{
    while (t->acks + t->nacks < t->published) {
        raw_msg_t *m = raw_next(c, HOP_CMD_CONFIRM, WAIT_MS);
        if (!m)
            fail_msg("confirms: %zu acks + %zu nacks of %llu published after %d ms", t->acks,
                     t->nacks, (unsigned long long)t->published, WAIT_MS);
        s_confirm_apply(t, m);
        raw_msg_destroy(&m);
    }
}

static void
s_expect_no_confirm(raw_t *c)
{
    s_sync(c);
    assert_int_equal(raw_pending(c, HOP_CMD_CONFIRM), 0);
}

// ---------------------------------------------------------------------------------------
// Helpers: death records

typedef struct {
    char reason[32], queue[64], exchange[64], key[64];
    uint64_t time, count;
} s_death_t;

// Reads the death records of a delivery, newest first. Returns how many (0 when absent).
static int
s_deaths(const raw_msg_t *m, s_death_t *out)
{
    if (!(m->wire.has & HOP_F_DEATH))
        return 0;
    hop_mp_t mp;
    hop_mp_init(&mp, m->wire.death.ptr, m->wire.death.len);
    uint32_t n;
    assert_int_equal(hop_mp_array(&mp, &n), 0);
    assert_true(n <= DEATH_MAX);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *start = mp.p;
        assert_int_equal(hop_mp_skip(&mp), 0);
        size_t size = (size_t)(mp.p - start);
        s_death_t *d = &out[i];
        memset(d, 0, sizeof *d);
        assert_true(harness_map_str(start, size, "reason", d->reason, sizeof d->reason));
        assert_true(harness_map_str(start, size, "queue", d->queue, sizeof d->queue));
        assert_true(harness_map_str(start, size, "exchange", d->exchange, sizeof d->exchange));
        assert_true(harness_map_str(start, size, "key", d->key, sizeof d->key));
        assert_true(harness_map_uint(start, size, "time", &d->time));
        assert_true(harness_map_uint(start, size, "count", &d->count));
    }
    assert_true(hop_mp_at_end(&mp));
    return (int)n;
}

// Checks one death record; its time must lie within wall_lo..wall_hi (ms since the epoch).
static void
s_check_death(const s_death_t *d, const char *reason, const char *queue, const char *exchange,
              const char *key, uint64_t count, uint64_t wall_lo, uint64_t wall_hi)
{
    assert_string_equal(d->reason, reason);
    assert_string_equal(d->queue, queue);
    assert_string_equal(d->exchange, exchange);
    assert_string_equal(d->key, key);
    if (d->count != count)
        fail_msg("death record %s/%s: count %llu, expected %llu", reason, queue,
                 (unsigned long long)d->count, (unsigned long long)count);
    if (d->time < wall_lo || d->time > wall_hi)
        fail_msg("death record %s/%s: time %llu outside %llu..%llu", reason, queue,
                 (unsigned long long)d->time, (unsigned long long)wall_lo,
                 (unsigned long long)wall_hi);
}

// ---------------------------------------------------------------------------------------
// 1. Publisher confirms

static void
test_confirms_cover_every_publish_exactly_once(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    s_confirms_t *t = s_confirms_reset();
    enum { N = 300 };
    assert_int_equal(raw_queue_declare(a, "cq", false, false, false, false), 0);
    char body[32];
    for (int i = 1; i <= N; i++) {
        snprintf(body, sizeof body, "c%d", i);
        s_pub(a, "", "cq", body, &(s_pub_t){.seq = s_next_seq(t)});
    }
    s_confirms_wait(a, t);
    assert_int_equal(t->acks, N);
    assert_int_equal(t->nacks, 0);
    s_expect_no_confirm(a);
    assert_int_equal(s_status(a, "confirmed"), N);
    // Confirmed means stored: every one of them is in the queue, in order.
    assert_int_equal(s_qstat(a, "cq", "messages_ready"), N);
    for (int i = 1; i <= N; i++) {
        raw_msg_t *m = s_get_ok(a, "cq", true);
        snprintf(body, sizeof body, "c%d", i);
        s_check_delivery(m, body, false, 1);
        raw_msg_destroy(&m);
    }
    s_expect_empty(a, "cq");

    // An unknown exchange: a negative confirm 404, and no error (the confirm is the answer).
    uint64_t seq = s_next_seq(t);
    s_pub(a, "no-such-exchange", "k", "lost", &(s_pub_t){.seq = seq});
    s_confirms_wait(a, t);
    assert_int_equal(t->state[seq], C_NACK);
    assert_int_equal(t->code[seq], HOP_CODE_NOT_FOUND);
    s_expect_no_error(a);

    // After a negative confirm, later publishes are confirmed as before.
    seq = s_next_seq(t);
    s_pub(a, "", "cq", "after", &(s_pub_t){.seq = seq});
    s_confirms_wait(a, t);
    assert_int_equal(t->state[seq], C_ACK);

    // seq 0 is no sequence number: error 502 with the publish's id, no confirm, not stored.
    hop_enc_t *enc = raw_begin(a, HOP_CMD_PUBLISH);
    hop_enc_cstr(enc, "exchange", "");
    hop_enc_cstr(enc, "key", "cq");
    hop_enc_uint(enc, "seq", 0);
    assert_int_equal(raw_send_enc(a, "zero", 4), 0);
    raw_msg_t *m = raw_reply(a, raw_last_id(a), WAIT_MS);
    assert_non_null(m);
    assert_int_equal(m->wire.cmd, HOP_CMD_ERROR);
    assert_int_equal(m->wire.code, HOP_CODE_SYNTAX_ERROR);
    raw_msg_destroy(&m);
    s_expect_no_confirm(a);
    char bodies[64];
    assert_string_equal(s_drain(a, "cq", bodies, sizeof bodies), "after");
}

static void
test_refused_publish_with_seq_gets_a_negative_confirm_not_an_error(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    s_confirms_t *t = s_confirms_reset();
    assert_int_equal(raw_queue_declare(a, "rq", false, false, false, false), 0);
    // A body over --max-message: 311.
    static char big[SMALL_MAX + 1];
    memset(big, 'b', sizeof big);
    uint64_t seq_big = s_next_seq(t);
    hop_enc_t *enc = raw_begin_noid(a, HOP_CMD_PUBLISH);
    hop_enc_cstr(enc, "exchange", "");
    hop_enc_cstr(enc, "key", "rq");
    hop_enc_uint(enc, "seq", seq_big);
    assert_int_equal(raw_send_enc(a, big, SMALL_MAX + 1), 0);
    // A priority out of range: 502.
    uint64_t seq_prio = s_next_seq(t);
    s_pub(a, "", "rq", "loud", &(s_pub_t){.seq = seq_prio, .priority = 300});
    // A field of the wrong type: 502.
    uint64_t seq_type = s_next_seq(t);
    enc = raw_begin_noid(a, HOP_CMD_PUBLISH);
    hop_enc_cstr(enc, "exchange", "");
    hop_enc_cstr(enc, "key", "rq");
    hop_enc_uint(enc, "seq", seq_type);
    hop_enc_cstr(enc, "expiration", "soon");
    assert_int_equal(raw_send_enc(a, "typo", 4), 0);
    // And one that is fine.
    uint64_t seq_ok = s_next_seq(t);
    s_pub(a, "", "rq", "fine", &(s_pub_t){.seq = seq_ok});

    s_sync(a);
    char errors[1024] = "";
    raw_msg_t *err;
    while (raw_pending(a, HOP_CMD_ERROR) && (err = raw_next(a, HOP_CMD_ERROR, 0))) {
        char text[256];
        size_t len = strlen(errors);
        snprintf(errors + len, sizeof errors - len, "%s%d (%s)", len ? "; " : "",
                 (int)err->wire.code, raw_str(err->wire.text, text, sizeof text));
        raw_msg_destroy(&err);
    }
    if (errors[0])
        fail_msg("publishes with seq answered with error instead of a negative confirm: %s",
                 errors);
    s_confirms_wait(a, t);
    assert_int_equal(t->state[seq_big], C_NACK);
    assert_int_equal(t->code[seq_big], HOP_CODE_CONTENT_TOO_LARGE);
    assert_int_equal(t->state[seq_prio], C_NACK);
    assert_int_equal(t->code[seq_prio], HOP_CODE_SYNTAX_ERROR);
    assert_int_equal(t->state[seq_type], C_NACK);
    assert_int_equal(t->code[seq_type], HOP_CODE_SYNTAX_ERROR);
    assert_int_equal(t->state[seq_ok], C_ACK);
    char bodies[64];
    assert_string_equal(s_drain(a, "rq", bodies, sizeof bodies), "fine");
}

static void
test_close_right_after_publishing_still_confirms(void **state)
{
    fx_t *fx = *state;
    raw_t *c = raw_new(harness_broker_endpoint(fx->broker));
    assert_non_null(c);
    assert_int_equal(raw_hello(c, HB_LONG, "closer"), 0);
    assert_int_equal(raw_queue_declare(c, "cc", false, false, false, false), 0);
    s_confirms_t *t = s_confirms_reset();
    enum { N = 3 };
    // N publishes and the close in one batch: the broker handles them in one turn.
    msgpack_sbuffer records;
    msgpack_sbuffer_init(&records);
    hop_enc_t enc;
    hop_enc_init(&enc);
    size_t size;
    const void *header;
    for (int i = 0; i < N; i++) {
        hop_enc_begin(&enc, HOP_CMD_PUBLISH);
        hop_enc_cstr(&enc, "exchange", "");
        hop_enc_cstr(&enc, "key", "cc");
        hop_enc_uint(&enc, "seq", s_next_seq(t));
        header = hop_enc_end(&enc, &size);
        hop_batch_append(&records, header, size, "x", 1);
    }
    hop_enc_begin(&enc, HOP_CMD_CLOSE);
    uint64_t close_id = raw_next_id(c);
    hop_enc_uint(&enc, "id", close_id);
    header = hop_enc_end(&enc, &size);
    hop_batch_append(&records, header, size, NULL, 0);
    hop_enc_begin(&enc, HOP_CMD_BATCH);
    hop_enc_uint(&enc, "count", N + 1);
    header = hop_enc_end(&enc, &size);
    const void *frames[2] = {header, records.data};
    size_t sizes[2] = {size, records.size};
    assert_int_equal(raw_send_frames(c, frames, sizes, 2), 0);
    hop_enc_fini(&enc);
    msgpack_sbuffer_destroy(&records);

    // Everything the broker says before close-ok: the confirms must be among it.
    raw_msg_t *m;
    while ((m = raw_any(c, WAIT_MS)) && m->wire.cmd != HOP_CMD_CLOSE_OK) {
        if (m->wire.cmd == HOP_CMD_CONFIRM)
            s_confirm_apply(t, m);
        else
            fail_msg("unexpected %s before close-ok", hop_cmd_name(m->wire.cmd));
        raw_msg_destroy(&m);
    }
    if (!m)
        fail_msg("no close-ok within %d ms", WAIT_MS);
    assert_int_equal(m->wire.id, close_id);
    raw_msg_destroy(&m);
    raw_destroy(&c);
    // The messages were stored...
    assert_int_equal(s_qstat(fx->a, "cc", "messages_ready"), N);
    // ... and their publisher must have been told.
    if (t->acks != N)
        fail_msg("close-ok came after %zu confirms of %d stored publishes: the publisher never "
                 "learns they were stored",
                 t->acks, N);
}

// ---------------------------------------------------------------------------------------
// 2. Mandatory publishes and unroutable messages

static void
test_mandatory_unroutable_is_returned_then_confirmed(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    s_confirms_t *t = s_confirms_reset();
    assert_int_equal(raw_exchange_declare(a, "mx", "direct", false, false, false), 0);

    uint64_t seq = s_next_seq(t);
    s_pub(a, "mx", "nowhere", "lost",
          &(s_pub_t){.seq = seq, .mandatory = true, .message_id = "m-1"});
    // The return comes first, then the positive confirm.
    raw_msg_t *m = raw_any(a, WAIT_MS);
    assert_non_null(m);
    if (m->wire.cmd != HOP_CMD_RETURN)
        fail_msg("expected return first, got %s", hop_cmd_name(m->wire.cmd));
    assert_int_equal(m->wire.code, HOP_CODE_NO_ROUTE);
    assert_true((m->wire.has & HOP_F_TEXT) && m->wire.text.len > 0);
    s_expect_str(m->wire.exchange, "mx");
    s_expect_str(m->wire.key, "nowhere");
    assert_true(m->wire.has & HOP_F_SEQ);
    assert_int_equal(m->wire.seq, seq);
    s_expect_props(m, "m-1");
    assert_true(raw_body_is(m, "lost"));
    raw_msg_destroy(&m);
    m = raw_any(a, WAIT_MS);
    assert_non_null(m);
    if (m->wire.cmd != HOP_CMD_CONFIRM)
        fail_msg("expected the confirm after the return, got %s", hop_cmd_name(m->wire.cmd));
    s_confirm_apply(t, m);
    raw_msg_destroy(&m);
    assert_int_equal(t->state[seq], C_ACK);

    // Without seq: returned (no seq in it), never confirmed.
    s_pub(a, "mx", "nowhere", "lost too", &(s_pub_t){.mandatory = true});
    m = raw_next(a, HOP_CMD_RETURN, WAIT_MS);
    assert_non_null(m);
    assert_false(m->wire.has & HOP_F_SEQ);
    assert_false(m->wire.has & HOP_F_PROPS);
    assert_true(raw_body_is(m, "lost too"));
    raw_msg_destroy(&m);
    s_expect_no_confirm(a);
    assert_int_equal(s_status(a, "returned"), 2);

    // Not mandatory: no return, confirmed all the same, counted as unroutable.
    assert_int_equal(raw_exchange_declare(a, "mx2", "direct", false, false, false), 0);
    uint64_t unroutable = s_status(a, "unroutable");
    seq = s_next_seq(t);
    s_pub(a, "mx2", "nowhere", "dropped", &(s_pub_t){.seq = seq});
    s_confirms_wait(a, t);
    assert_int_equal(t->state[seq], C_ACK);
    s_sync(a);
    assert_int_equal(raw_pending(a, HOP_CMD_RETURN), 0);
    assert_int_equal(s_status(a, "unroutable"), unroutable + 1);
    raw_msg_t *list = raw_list(a, "exchanges");
    assert_non_null(list);
    uint64_t n = 0;
    assert_true(harness_items_uint(list->wire.items.ptr, list->wire.items.len, "name", "mx2",
                                   "unroutable", &n));
    assert_int_equal(n, 1);
    assert_true(harness_items_uint(list->wire.items.ptr, list->wire.items.len, "name", "mx2",
                                   "published", &n));
    assert_int_equal(n, 1);
    raw_msg_destroy(&list);

    // Mandatory and routable: stored, confirmed, not returned.
    assert_int_equal(raw_queue_declare(a, "mq", false, false, false, false), 0);
    assert_int_equal(raw_bind(a, "mq", "mx", "here"), 0);
    seq = s_next_seq(t);
    s_pub(a, "mx", "here", "kept", &(s_pub_t){.seq = seq, .mandatory = true});
    s_confirms_wait(a, t);
    assert_int_equal(t->state[seq], C_ACK);
    s_sync(a);
    assert_int_equal(raw_pending(a, HOP_CMD_RETURN), 0);
    assert_int_equal(s_status(a, "returned"), 2);
    char bodies[64];
    assert_string_equal(s_drain(a, "mq", bodies, sizeof bodies), "kept");
    s_expect_no_confirm(a);
}

// ---------------------------------------------------------------------------------------
// 3-5. Bounded queues

static void
test_max_length_drop_head_keeps_newest_and_dead_letters_the_rest(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_exchange_declare(a, "ex", "direct", false, false, false), 0);
    assert_int_equal(raw_exchange_declare(a, "dlx", "fanout", false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "dlq", false, false, false, false), 0);
    assert_int_equal(raw_bind(a, "dlq", "dlx", ""), 0);
    hop_enc_t *enc = s_qdecl(a, "q");
    hop_enc_uint(enc, "max_length", 3);
    hop_enc_cstr(enc, "dead_letter_exchange", "dlx");
    assert_int_equal(s_call(a, NULL, 0), 0);
    enc = s_qdecl(a, "plain"); // the same limit, no dead-letter exchange: drops are counted
    hop_enc_uint(enc, "max_length", 3);
    hop_enc_cstr(enc, "overflow", "drop-head");
    assert_int_equal(s_call(a, NULL, 0), 0);
    assert_int_equal(raw_bind(a, "q", "ex", "k"), 0);
    assert_int_equal(raw_bind(a, "plain", "ex", "k"), 0);

    uint64_t wall_lo = s_wall_ms();
    char body[16];
    for (int i = 0; i < 10; i++) {
        snprintf(body, sizeof body, "m%d", i);
        s_pub(a, "ex", "k", body, &(s_pub_t){.message_id = body});
    }
    s_sync(a);
    uint64_t wall_hi = s_wall_ms();
    assert_int_equal(s_qstat(a, "q", "messages_ready"), 3);
    assert_int_equal(s_qstat(a, "q", "dead_lettered"), 7);
    assert_int_equal(s_qstat(a, "q", "dropped"), 0);
    assert_int_equal(s_qstat(a, "plain", "dropped"), 7);
    assert_int_equal(s_qstat(a, "plain", "dead_lettered"), 0);
    assert_int_equal(s_qstat(a, "dlq", "messages_ready"), 7);
    char bodies[256];
    assert_string_equal(s_drain(a, "q", bodies, sizeof bodies), "m7,m8,m9");
    assert_string_equal(s_drain(a, "plain", bodies, sizeof bodies), "m7,m8,m9");

    // The 7 dropped arrive in the dead-letter queue, oldest first, each with one death record.
    for (int i = 0; i < 7; i++) {
        raw_msg_t *m = s_get_ok(a, "dlq", true);
        snprintf(body, sizeof body, "m%d", i);
        s_check_delivery(m, body, false, 1);
        s_expect_str(m->wire.exchange, "dlx");
        s_expect_str(m->wire.key, "k"); // no dead_letter_key: its own key
        s_expect_props(m, body);
        s_death_t d[DEATH_MAX];
        assert_int_equal(s_deaths(m, d), 1);
        s_check_death(&d[0], "maxlen", "q", "ex", "k", 1, wall_lo, wall_hi);
        raw_msg_destroy(&m);
    }
    s_expect_empty(a, "dlq");
    assert_int_equal(s_status(a, "dead_lettered"), 7);
    assert_int_equal(s_status(a, "dropped"), 7);
}

static void
test_max_length_bytes_counts_ready_bodies(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    s_confirms_t *t = s_confirms_reset();
    hop_enc_t *enc = s_qdecl(a, "qb");
    hop_enc_uint(enc, "max_length_bytes", 10);
    assert_int_equal(s_call(a, NULL, 0), 0);
    s_pub(a, "", "qb", "aaaa", NULL);
    s_pub(a, "", "qb", "bbbb", NULL);
    s_pub(a, "", "qb", "cccc", NULL); // 12 bytes: the oldest goes
    s_sync(a);
    assert_int_equal(s_qstat(a, "qb", "bytes_ready"), 8);
    assert_int_equal(s_qstat(a, "qb", "dropped"), 1);
    s_pub(a, "", "qb", "dd", NULL); // exactly 10: nothing goes
    s_sync(a);
    assert_int_equal(s_qstat(a, "qb", "bytes_ready"), 10);
    assert_int_equal(s_qstat(a, "qb", "messages_ready"), 3);
    assert_int_equal(s_qstat(a, "qb", "dropped"), 1);
    // Unacked bodies do not count: take one, and there is room for 4 bytes again.
    raw_msg_t *m = s_get_ok(a, "qb", false);
    uint64_t tag = m->wire.tag;
    s_check_delivery(m, "bbbb", false, 1);
    raw_msg_destroy(&m);
    s_pub(a, "", "qb", "eeee", NULL);
    s_sync(a);
    assert_int_equal(s_qstat(a, "qb", "dropped"), 1);
    assert_int_equal(s_qstat(a, "qb", "bytes_ready"), 10);
    raw_ack(a, tag, false);
    char bodies[64];
    assert_string_equal(s_drain(a, "qb", bodies, sizeof bodies), "cccc,dd,eeee");

    // reject-publish by bytes: what does not fit is refused (506), what fits is stored.
    enc = s_qdecl(a, "qr");
    hop_enc_uint(enc, "max_length_bytes", 10);
    hop_enc_cstr(enc, "overflow", "reject-publish");
    assert_int_equal(s_call(a, NULL, 0), 0);
    const char *bodies_in[] = {"aaaa", "bbbb", "cccc", "dd", "x"};
    const s_cstate_t expect[] = {C_ACK, C_ACK, C_NACK, C_ACK, C_NACK};
    for (int i = 0; i < 5; i++)
        s_pub(a, "", "qr", bodies_in[i], &(s_pub_t){.seq = s_next_seq(t)});
    s_confirms_wait(a, t);
    for (int i = 0; i < 5; i++) {
        if (t->state[i + 1] != expect[i])
            fail_msg("'%s' (seq %d): expected %s", bodies_in[i], i + 1,
                     expect[i] == C_ACK ? "ack" : "nack 506");
        if (expect[i] == C_NACK)
            assert_int_equal(t->code[i + 1], HOP_CODE_RESOURCE_ERROR);
    }
    assert_int_equal(s_qstat(a, "qr", "rejected_publishes"), 2);
    assert_int_equal(s_qstat(a, "qr", "bytes_ready"), 10);
    assert_string_equal(s_drain(a, "qr", bodies, sizeof bodies), "aaaa,bbbb,dd");
}

static void
test_reject_publish_bounded_buffer_loses_and_duplicates_nothing(void **state)
{
    fx_t *fx = *state;
    raw_t *p = fx->a; // producer
    raw_t *c = fx->b; // consumer
    s_confirms_t *t = s_confirms_reset();
    enum { N = 40, CAP = 5, FIRST = 10, TAKE = 3, WINDOW = 8 };
    hop_enc_t *enc = s_qdecl(p, "bq");
    hop_enc_uint(enc, "max_length", CAP);
    hop_enc_cstr(enc, "overflow", "reject-publish");
    assert_int_equal(s_call(p, NULL, 0), 0);

    static int body_of[SEQ_MAX + 1]; // which body each sequence carried
    bool stored[N] = {false};
    int seen[N] = {0};
    char body[16];
    // A first burst into the empty queue: the first CAP are stored, the rest refused.
    for (int i = 0; i < FIRST; i++) {
        uint64_t seq = s_next_seq(t);
        body_of[seq] = i;
        snprintf(body, sizeof body, "b%02d", i);
        s_pub(p, "", "bq", body, &(s_pub_t){.seq = seq});
    }
    s_confirms_wait(p, t);
    for (uint64_t s = 1; s <= FIRST; s++) {
        if (s <= CAP)
            assert_int_equal(t->state[s], C_ACK);
        else {
            assert_int_equal(t->state[s], C_NACK);
            assert_int_equal(t->code[s], HOP_CODE_RESOURCE_ERROR);
        }
        if (t->state[s] == C_ACK)
            stored[body_of[s]] = true;
    }
    assert_int_equal(s_qstat(p, "bq", "messages_ready"), CAP);
    assert_int_equal(s_qstat(p, "bq", "rejected_publishes"), FIRST - CAP);

    // Then the producer retries what was refused (and goes on with new bodies) while the
    // consumer takes a few each round, until every body was stored and consumed.
    int next_new = FIRST, consumed = 0, rounds = 0;
    while (consumed < N) {
        if (++rounds > 500)
            fail_msg("no progress: %d of %d consumed", consumed, N);
        for (int k = 0; k < TAKE; k++) {
            raw_msg_t *m = s_get(c, "bq", false);
            if (m->wire.cmd == HOP_CMD_GET_EMPTY) {
                raw_msg_destroy(&m);
                break;
            }
            assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
            assert_false(m->wire.redelivered);
            raw_body(m, body, sizeof body);
            int i = atoi(body + 1);
            assert_true(i >= 0 && i < N);
            if (!stored[i])
                fail_msg("consumed '%s', which was never confirmed as stored", body);
            seen[i]++;
            consumed++;
            raw_ack(c, m->wire.tag, false);
            raw_msg_destroy(&m);
        }
        uint64_t from = t->published + 1;
        int sent = 0;
        for (int i = 0; i < next_new && sent < WINDOW; i++)
            if (!stored[i]) {
                uint64_t seq = s_next_seq(t);
                body_of[seq] = i;
                snprintf(body, sizeof body, "b%02d", i);
                s_pub(p, "", "bq", body, &(s_pub_t){.seq = seq});
                sent++;
            }
        while (next_new < N && sent < WINDOW) {
            uint64_t seq = s_next_seq(t);
            body_of[seq] = next_new;
            snprintf(body, sizeof body, "b%02d", next_new++);
            s_pub(p, "", "bq", body, &(s_pub_t){.seq = seq});
            sent++;
        }
        s_confirms_wait(p, t);
        for (uint64_t s = from; s <= t->published; s++) {
            if (t->state[s] == C_NACK)
                assert_int_equal(t->code[s], HOP_CODE_RESOURCE_ERROR);
            else if (stored[body_of[s]])
                fail_msg("body b%02d stored twice (seq %llu)", body_of[s], (unsigned long long)s);
            else
                stored[body_of[s]] = true;
        }
        assert_true(s_qstat(p, "bq", "messages_ready") <= CAP);
    }
    for (int i = 0; i < N; i++)
        if (seen[i] != 1)
            fail_msg("body b%02d consumed %d times", i, seen[i]);
    s_expect_empty(c, "bq");
    s_expect_no_error(c);
    s_expect_no_confirm(p);
    assert_int_equal(t->acks, N);
    assert_int_equal(s_qstat(p, "bq", "published"), N);
    assert_int_equal(s_qstat(p, "bq", "acked"), N);
    assert_int_equal(s_qstat(p, "bq", "messages"), 0);
    assert_int_equal(s_qstat(p, "bq", "rejected_publishes"), t->nacks);
    assert_int_equal(s_status(p, "rejected_publishes"), t->nacks);
    assert_int_equal(s_status(p, "confirmed"), N);
}

// ---------------------------------------------------------------------------------------
// 6. Message TTL

static void
test_message_ttl_expired_messages_are_never_delivered(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    enum { TTL = 200 };
    hop_enc_t *enc = s_qdecl(a, "ttl");
    hop_enc_uint(enc, "message_ttl", TTL);
    assert_int_equal(s_call(a, NULL, 0), 0);

    // Before its TTL it is there (unless that much time passed: no assumption about speed).
    uint64_t expired = 0;
    uint64_t t0 = harness_now_ms();
    s_pub(a, "", "ttl", "fresh", NULL);
    raw_msg_t *m = s_get(a, "ttl", true);
    if (m->wire.cmd == HOP_CMD_GET_OK)
        assert_true(raw_body_is(m, "fresh"));
    else {
        assert_int_equal(m->wire.cmd, HOP_CMD_GET_EMPTY);
        assert_true(harness_now_ms() - t0 >= TTL);
        expired++;
    }
    raw_msg_destroy(&m);

    // After it, never.
    s_pub(a, "", "ttl", "stale", NULL);
    harness_pause_ms(TTL + 300);
    s_expect_empty(a, "ttl");
    expired++;
    assert_int_equal(s_qstat(a, "ttl", "expired"), expired);
    assert_int_equal(s_qstat(a, "ttl", "dropped"), expired); // no dead-letter exchange
    assert_int_equal(s_qstat(a, "ttl", "messages"), 0);

    // A long TTL ahead of a short one delays the short one's removal, never its expiry.
    assert_int_equal(raw_queue_declare(a, "mixed", false, false, false, false), 0);
    s_pub(a, "", "mixed", "long", &(s_pub_t){.has_expiration = true, .expiration = 60000});
    s_pub(a, "", "mixed", "short", &(s_pub_t){.has_expiration = true, .expiration = TTL});
    harness_pause_ms(TTL + 300);
    char bodies[64];
    assert_string_equal(s_drain(a, "mixed", bodies, sizeof bodies), "long");
    assert_int_equal(s_qstat(a, "mixed", "expired"), 1);
    // A consumer that comes later gets nothing either.
    assert_int_equal(s_consume(a, "ttl", "late", 0, 0), 0);
    s_expect_no_delivery(a);
    assert_int_equal(s_status(a, "expired"), expired + 1);

    // Expired while unacked, then requeued: it is not delivered again.
    s_pub(a, "", "ttl", "held", NULL);
    uint64_t tag = s_expect_deliver(a, "held", false, 1);
    harness_pause_ms(TTL + 300);
    s_settle(a, HOP_CMD_NACK, tag, 1, -1);
    s_expect_no_delivery(a);
    assert_int_equal(s_qstat(a, "ttl", "messages"), 0);
    assert_int_equal(s_qstat(a, "ttl", "expired"), expired + 1);

    // Expiry is checked at the head of every priority level, not only the highest one.
    enc = s_qdecl(a, "pttl");
    hop_enc_uint(enc, "max_priority", 3);
    assert_int_equal(s_call(a, NULL, 0), 0);
    s_pub(a, "", "pttl", "hi", &(s_pub_t){.priority = 3});
    s_pub(a, "", "pttl", "lo", &(s_pub_t){.has_expiration = true, .expiration = TTL});
    s_wait_qfield(a, "pttl", "expired", 1, 3000);
    assert_string_equal(s_drain(a, "pttl", bodies, sizeof bodies), "hi");
}

static void
test_message_ttl_dead_letters_with_reason_expired(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    enum { TTL = 200 };
    assert_int_equal(raw_queue_declare(a, "dead", false, false, false, false), 0);
    hop_enc_t *enc = s_qdecl(a, "td");
    hop_enc_uint(enc, "message_ttl", TTL);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "dead");
    assert_int_equal(s_call(a, NULL, 0), 0);

    uint64_t wall_lo = s_wall_ms();
    uint64_t t0 = harness_now_ms();
    s_pub(a, "", "td", "e1", &(s_pub_t){.message_id = "id-e1", .priority = 7});
    uint64_t at = s_wait_qfield(a, "dead", "messages_ready", 1, 3000);
    uint64_t wall_hi = s_wall_ms();
    if (at - t0 < TTL)
        fail_msg("dead-lettered %llu ms after publishing, before its TTL of %d ms",
                 (unsigned long long)(at - t0), TTL);
    raw_msg_t *m = s_get_ok(a, "dead", true);
    s_check_delivery(m, "e1", false, 1);
    s_expect_str(m->wire.exchange, "");
    s_expect_str(m->wire.key, "dead");
    s_expect_props(m, "id-e1");
    assert_int_equal(m->wire.priority, 7); // kept (PROTOCOL.md 6.4)
    s_death_t d[DEATH_MAX];
    assert_int_equal(s_deaths(m, d), 1);
    s_check_death(&d[0], "expired", "td", "", "td", 1, wall_lo, wall_hi);
    raw_msg_destroy(&m);
    assert_int_equal(s_qstat(a, "td", "expired"), 1);
    assert_int_equal(s_qstat(a, "td", "dead_lettered"), 1);
    assert_int_equal(s_qstat(a, "td", "dropped"), 0);
    assert_int_equal(s_qstat(a, "td", "messages"), 0);
    assert_int_equal(s_status(a, "expired"), 1);
}

static void
test_per_message_expiration_and_the_shorter_ttl_applies(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    enum { SHORT = 200 };
    // Per-message expiration on a queue without TTL.
    assert_int_equal(raw_queue_declare(a, "pm", false, false, false, false), 0);
    uint64_t t0 = harness_now_ms();
    s_pub(a, "", "pm", "short", &(s_pub_t){.has_expiration = true, .expiration = SHORT});
    s_pub(a, "", "pm", "keep", NULL);
    uint64_t at = s_wait_qfield(a, "pm", "expired", 1, 3000);
    assert_true(at - t0 >= SHORT);
    char bodies[64];
    assert_string_equal(s_drain(a, "pm", bodies, sizeof bodies), "keep");

    // Queue TTL 10 s, message 200 ms: the message's applies (well before 10 s).
    assert_int_equal(raw_queue_declare(a, "dead", false, false, false, false), 0);
    hop_enc_t *enc = s_qdecl(a, "qlong");
    hop_enc_uint(enc, "message_ttl", 10000);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "dead");
    assert_int_equal(s_call(a, NULL, 0), 0);
    t0 = harness_now_ms();
    s_pub(a, "", "qlong", "a", &(s_pub_t){.has_expiration = true, .expiration = SHORT});
    at = s_wait_qfield(a, "dead", "messages_ready", 1, 3000);
    assert_true(at - t0 >= SHORT);
    raw_msg_t *m = s_get_ok(a, "dead", true);
    s_check_delivery(m, "a", false, 1);
    s_death_t d[DEATH_MAX];
    assert_int_equal(s_deaths(m, d), 1);
    assert_string_equal(d[0].reason, "expired");
    assert_string_equal(d[0].queue, "qlong");
    raw_msg_destroy(&m);

    // Queue TTL 200 ms, message 60 s: the queue's applies.
    enc = s_qdecl(a, "qshort");
    hop_enc_uint(enc, "message_ttl", SHORT);
    assert_int_equal(s_call(a, NULL, 0), 0);
    t0 = harness_now_ms();
    s_pub(a, "", "qshort", "b", &(s_pub_t){.has_expiration = true, .expiration = 60000});
    at = s_wait_qfield(a, "qshort", "expired", 1, 3000);
    assert_true(at - t0 >= SHORT);
    s_expect_empty(a, "qshort");

    // A dead letter's expiration is removed: it does not expire again where it went.
    assert_int_equal(raw_queue_declare(a, "dead2", false, false, false, false), 0);
    enc = s_qdecl(a, "q3");
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "dead2");
    assert_int_equal(s_call(a, NULL, 0), 0);
    s_pub(a, "", "q3", "c", &(s_pub_t){.has_expiration = true, .expiration = SHORT});
    s_wait_qfield(a, "dead2", "messages_ready", 1, 3000);
    harness_pause_ms(SHORT + 300);
    assert_int_equal(s_qstat(a, "dead2", "expired"), 0);
    assert_string_equal(s_drain(a, "dead2", bodies, sizeof bodies), "c");

    assert_int_equal(s_status(a, "expired"), 4);
}

// ---------------------------------------------------------------------------------------
// 7. Queue expiry

static void
test_queue_expires_when_unused(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    enum { EXPIRES = 500 };
    uint64_t t0 = harness_now_ms();
    hop_enc_t *enc = s_qdecl(a, "idle");
    hop_enc_uint(enc, "expires", EXPIRES);
    assert_int_equal(s_call(a, NULL, 0), 0);
    enc = s_qdecl(a, "busy");
    hop_enc_uint(enc, "expires", EXPIRES);
    assert_int_equal(s_call(a, NULL, 0), 0);
    assert_int_equal(s_consume(b, "busy", "keeper", 0, 0), 0);
    // Publishing is no use: the idle queue goes anyway (with its message).
    s_pub(a, "", "idle", "m", NULL);

    // Polled with list (not a passive declare, which would count as a use).
    s_gone_t gone = {a, "idle"};
    if (!harness_wait_until(s_queue_gone, &gone, 3000))
        fail_msg("queue 'idle' (expires %d) still there after 3 s", EXPIRES);
    assert_true(harness_now_ms() - t0 >= EXPIRES);
    // The one with a consumer stays, well past its expiry.
    uint64_t elapsed = harness_now_ms() - t0;
    if (elapsed < 2 * EXPIRES + 200)
        harness_pause_ms((int)(2 * EXPIRES + 200 - elapsed));
    assert_true(s_queue_listed(a, "busy"));

    // Unused from the moment its last consumer goes.
    uint64_t t1 = harness_now_ms(); // before the cancel: the broker's clock starts after it
    assert_int_equal(raw_cancel(b, "keeper"), 0);
    gone.queue = "busy";
    if (!harness_wait_until(s_queue_gone, &gone, 3000))
        fail_msg("queue 'busy' still there 3 s after its consumer went");
    assert_true(harness_now_ms() - t1 >= EXPIRES);
    s_expect_no_error(b);
}

// ---------------------------------------------------------------------------------------
// 8. Dead letters on reject / nack

static void
test_reject_and_nack_without_requeue_dead_letter(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_exchange_declare(a, "work.x", "direct", false, false, false), 0);
    assert_int_equal(raw_exchange_declare(a, "dlx.x", "direct", false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "failed", false, false, false, false), 0);
    assert_int_equal(raw_bind(a, "failed", "dlx.x", "failed"), 0);
    hop_enc_t *enc = s_qdecl(a, "work");
    hop_enc_cstr(enc, "dead_letter_exchange", "dlx.x");
    hop_enc_cstr(enc, "dead_letter_key", "failed");
    assert_int_equal(s_call(a, NULL, 0), 0);
    assert_int_equal(raw_bind(a, "work", "work.x", "job"), 0);
    assert_int_equal(s_consume(a, "work", "w", 0, 0), 0);

    uint64_t wall_lo = s_wall_ms();
    s_pub(a, "work.x", "job", "j1", &(s_pub_t){.message_id = "id-j1"});
    s_pub(a, "work.x", "job", "j2", &(s_pub_t){.message_id = "id-j2"});
    uint64_t t1 = s_expect_deliver(a, "j1", false, 1);
    uint64_t t2 = s_expect_deliver(a, "j2", false, 1);
    s_settle(a, HOP_CMD_REJECT, t1, 0, -1);
    s_settle(a, HOP_CMD_NACK, t2, 0, -1);
    s_expect_no_delivery(a); // not requeued
    uint64_t wall_hi = s_wall_ms();
    assert_int_equal(s_qstat(a, "work", "messages"), 0);
    assert_int_equal(s_qstat(a, "work", "dead_lettered"), 2);
    assert_int_equal(s_qstat(a, "work", "dropped"), 0);
    assert_int_equal(s_qstat(a, "work", "acked"), 0);

    const char *names[] = {"j1", "j2"}, *ids[] = {"id-j1", "id-j2"};
    for (int i = 0; i < 2; i++) {
        raw_msg_t *m = s_get_ok(a, "failed", true);
        s_check_delivery(m, names[i], false, 1);
        s_expect_str(m->wire.exchange, "dlx.x");
        s_expect_str(m->wire.key, "failed"); // dead_letter_key overrides "job"
        s_expect_props(m, ids[i]);
        s_death_t d[DEATH_MAX];
        assert_int_equal(s_deaths(m, d), 1);
        s_check_death(&d[0], "rejected", "work", "work.x", "job", 1, wall_lo, wall_hi);
        raw_msg_destroy(&m);
    }
    s_expect_empty(a, "failed");

    // Without a dead-letter exchange a rejected message is dropped and counted.
    assert_int_equal(raw_queue_declare(a, "nodlx", false, false, false, false), 0);
    s_pub(a, "", "nodlx", "gone", NULL);
    raw_msg_t *m = s_get_ok(a, "nodlx", false);
    s_settle(a, HOP_CMD_REJECT, m->wire.tag, 0, -1);
    raw_msg_destroy(&m);
    s_expect_no_error(a);
    assert_int_equal(s_qstat(a, "nodlx", "dropped"), 1);
    assert_int_equal(s_qstat(a, "nodlx", "dead_lettered"), 0);
    assert_int_equal(s_qstat(a, "nodlx", "messages"), 0);
    assert_int_equal(s_status(a, "dead_lettered"), 2);
    assert_int_equal(s_status(a, "dropped"), 1);
}

// Checks a dead letter's body byte for byte (the large one is 'L' x LARGE).
static void
s_check_body(const raw_msg_t *m, const char *small, size_t large)
{
    if (small) {
        assert_true(raw_body_is(m, small));
        return;
    }
    assert_true(m->has_body);
    assert_int_equal(zmq_msg_size((zmq_msg_t *)&m->body), large);
    const char *p = zmq_msg_data((zmq_msg_t *)&m->body);
    for (size_t i = 0; i < large; i++)
        if (p[i] != 'L')
            fail_msg("large body differs at byte %zu", i);
}

static void
test_dead_letters_fan_out_and_keep_their_bodies(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    enum { LARGE = 10000 };
    assert_int_equal(raw_exchange_declare(a, "fan.dlx", "fanout", false, false, false), 0);
    hop_enc_t *enc = s_qdecl(a, "src");
    hop_enc_cstr(enc, "dead_letter_exchange", "fan.dlx");
    assert_int_equal(s_call(a, NULL, 0), 0);
    enc = s_qdecl(a, "d1");
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "d3");
    assert_int_equal(s_call(a, NULL, 0), 0);
    assert_int_equal(raw_queue_declare(a, "d2", false, false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "d3", false, false, false, false), 0);
    assert_int_equal(raw_bind(a, "d1", "fan.dlx", ""), 0);
    assert_int_equal(raw_bind(a, "d2", "fan.dlx", ""), 0);

    // Two small ones in one client batch (they share its frame), a large one on its own.
    msgpack_sbuffer records;
    msgpack_sbuffer_init(&records);
    hop_enc_t henc;
    hop_enc_init(&henc);
    size_t size;
    const void *header;
    const char *small[] = {"s1", "s2"};
    for (int i = 0; i < 2; i++) {
        hop_enc_begin(&henc, HOP_CMD_PUBLISH);
        hop_enc_cstr(&henc, "exchange", "");
        hop_enc_cstr(&henc, "key", "src");
        hop_enc_map_begin(&henc, "props");
        hop_enc_cstr(&henc, "content_type", "text/plain");
        hop_enc_cstr(&henc, "message_id", small[i]);
        hop_enc_map_end(&henc);
        header = hop_enc_end(&henc, &size);
        hop_batch_append(&records, header, size, small[i], 2);
    }
    hop_enc_begin(&henc, HOP_CMD_BATCH);
    hop_enc_uint(&henc, "count", 2);
    header = hop_enc_end(&henc, &size);
    const void *frames[2] = {header, records.data};
    size_t sizes[2] = {size, records.size};
    assert_int_equal(raw_send_frames(a, frames, sizes, 2), 0);
    hop_enc_fini(&henc);
    msgpack_sbuffer_destroy(&records);
    static char large[LARGE + 1];
    memset(large, 'L', LARGE);
    s_pub(a, "", "src", large, &(s_pub_t){.message_id = "big"});

    // Rejected from src: each lands in d1 and d2.
    const char *ids[] = {"s1", "s2", "big"};
    for (int i = 0; i < 3; i++) {
        raw_msg_t *m = s_get_ok(a, "src", false);
        s_check_body(m, i < 2 ? small[i] : NULL, LARGE);
        s_settle(a, HOP_CMD_REJECT, m->wire.tag, 0, -1);
        raw_msg_destroy(&m);
    }
    s_expect_no_error(a);
    assert_int_equal(s_qstat(a, "src", "messages"), 0);
    assert_int_equal(s_qstat(a, "d1", "messages_ready"), 3);
    assert_int_equal(s_qstat(a, "d2", "messages_ready"), 3);
    // Rejected again from d1 while d2 still holds its copies: they go on to d3.
    for (int i = 0; i < 3; i++) {
        raw_msg_t *m = s_get_ok(a, "d1", false);
        s_check_body(m, i < 2 ? small[i] : NULL, LARGE);
        s_expect_props(m, ids[i]);
        s_settle(a, HOP_CMD_REJECT, m->wire.tag, 0, -1);
        raw_msg_destroy(&m);
    }
    s_expect_no_error(a);
    for (int i = 0; i < 3; i++) {
        raw_msg_t *m = s_get_ok(a, "d3", true);
        s_check_body(m, i < 2 ? small[i] : NULL, LARGE);
        s_expect_props(m, ids[i]);
        s_expect_str(m->wire.key, "d3");
        s_death_t d[DEATH_MAX];
        assert_int_equal(s_deaths(m, d), 2);
        assert_string_equal(d[0].queue, "d1");
        assert_string_equal(d[0].exchange, "fan.dlx");
        assert_string_equal(d[0].key, "src");
        assert_string_equal(d[1].queue, "src");
        assert_string_equal(d[1].exchange, "");
        assert_string_equal(d[1].key, "src");
        raw_msg_destroy(&m);
    }
    for (int i = 0; i < 3; i++) {
        raw_msg_t *m = s_get_ok(a, "d2", true);
        s_check_body(m, i < 2 ? small[i] : NULL, LARGE);
        s_expect_props(m, ids[i]);
        s_expect_str(m->wire.exchange, "fan.dlx");
        s_expect_str(m->wire.key, "src");
        s_death_t d[DEATH_MAX];
        assert_int_equal(s_deaths(m, d), 1);
        s_check_death(&d[0], "rejected", "src", "", "src", 1, 0, UINT64_MAX);
        raw_msg_destroy(&m);
    }
    s_expect_empty(a, "d2");
    s_expect_empty(a, "d3");
}

static void
test_nack_multiple_without_requeue_dead_letters_in_order(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "mdl.dead", false, false, false, false), 0);
    hop_enc_t *enc = s_qdecl(a, "mdl");
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "mdl.dead");
    assert_int_equal(s_call(a, NULL, 0), 0);
    assert_int_equal(s_consume(a, "mdl", "c", 0, 0), 0);
    const char *bodies[] = {"n1", "n2", "n3", "n4", "n5"};
    uint64_t last = 0;
    for (int i = 0; i < 5; i++)
        s_pub(a, "", "mdl", bodies[i], NULL);
    for (int i = 0; i < 5; i++)
        last = s_expect_deliver(a, bodies[i], false, 1);
    hop_enc_t *nack = raw_begin_noid(a, HOP_CMD_NACK);
    hop_enc_uint(nack, "tag", last);
    hop_enc_bool(nack, "multiple", true);
    hop_enc_bool(nack, "requeue", false);
    assert_int_equal(raw_send_enc(a, NULL, 0), 0);
    s_expect_no_delivery(a);
    assert_int_equal(s_qstat(a, "mdl", "dead_lettered"), 5);
    char out[64];
    assert_string_equal(s_drain(a, "mdl.dead", out, sizeof out), "n1,n2,n3,n4,n5");
}

static void
test_dead_lettered_again_from_the_same_queue_counts_up(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    // w rejects into d; d's messages expire back into w: a cycle that includes a rejection,
    // so it is allowed (PROTOCOL.md 6.4).
    hop_enc_t *enc = s_qdecl(a, "w");
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "d");
    assert_int_equal(s_call(a, NULL, 0), 0);
    enc = s_qdecl(a, "d");
    hop_enc_uint(enc, "message_ttl", 100);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "w");
    assert_int_equal(s_call(a, NULL, 0), 0);

    uint64_t wall_lo = s_wall_ms();
    s_pub(a, "", "w", "boomerang", &(s_pub_t){.message_id = "id-b"});
    raw_msg_t *m = s_get_ok(a, "w", false);
    s_check_delivery(m, "boomerang", false, 1);
    assert_int_equal(s_deaths(m, (s_death_t[DEATH_MAX]){0}), 0);
    for (uint64_t round = 1; round <= 3; round++) {
        s_settle(a, HOP_CMD_REJECT, m->wire.tag, 0, -1);
        raw_msg_destroy(&m);
        s_wait_qfield(a, "w", "messages_ready", 1, 3000);
        uint64_t wall_hi = s_wall_ms();
        m = s_get_ok(a, "w", false);
        // A new message each time it comes back (dead letters are republished).
        s_check_delivery(m, "boomerang", false, 1);
        s_expect_str(m->wire.key, "w");
        s_expect_props(m, "id-b");
        s_death_t d[DEATH_MAX];
        // Two records however often it goes round: each one counted up, newest first.
        assert_int_equal(s_deaths(m, d), 2);
        s_check_death(&d[0], "expired", "d", "", "d", round, wall_lo, wall_hi);
        s_check_death(&d[1], "rejected", "w", "", "w", round, wall_lo, wall_hi);
        assert_true(d[0].time >= d[1].time);
    }
    s_settle(a, HOP_CMD_ACK, m->wire.tag, -1, -1);
    raw_msg_destroy(&m);
    s_expect_no_error(a);
    assert_int_equal(s_qstat(a, "w", "dead_lettered"), 3);
    assert_int_equal(s_qstat(a, "d", "dead_lettered"), 3);
    assert_int_equal(s_qstat(a, "d", "expired"), 3);
    assert_int_equal(s_qstat(a, "w", "messages"), 0);
    assert_int_equal(s_qstat(a, "d", "messages"), 0);

    // A cycle without a rejection is cut: c1 expires into c2, c2 would expire back into c1.
    const char *pairs[2][2] = {{"c1", "c2"}, {"c2", "c1"}};
    for (int i = 0; i < 2; i++) {
        enc = s_qdecl(a, pairs[i][0]);
        hop_enc_uint(enc, "message_ttl", 100);
        hop_enc_cstr(enc, "dead_letter_exchange", "");
        hop_enc_cstr(enc, "dead_letter_key", pairs[i][1]);
        assert_int_equal(s_call(a, NULL, 0), 0);
    }
    s_pub(a, "", "c1", "loop", NULL);
    s_wait_qfield(a, "c2", "expired", 1, 3000);
    assert_int_equal(s_qstat(a, "c2", "dropped"), 1);
    assert_int_equal(s_qstat(a, "c1", "expired"), 1);
    assert_int_equal(s_qstat(a, "c1", "messages"), 0);
    assert_int_equal(s_qstat(a, "c2", "messages"), 0);
    assert_int_equal(s_qstat(a, "c1", "published"), 1); // never came back
}

static void
test_dead_letter_back_into_the_queue_it_left_is_dropped(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    enum { TTL = 100 };
    // A queue whose expired messages would go back into itself: the first expiry drops them.
    hop_enc_t *enc = s_qdecl(a, "self");
    hop_enc_uint(enc, "message_ttl", TTL);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "self");
    assert_int_equal(s_call(a, NULL, 0), 0);
    s_pub(a, "", "self", "fresh", NULL);
    s_wait_qfield(a, "self", "expired", 1, 3000);
    harness_pause_ms(5 * TTL); // time for it to go round, were it to
    assert_int_equal(s_qstat(a, "self", "expired"), 1);
    assert_int_equal(s_qstat(a, "self", "dropped"), 1);
    assert_int_equal(s_qstat(a, "self", "messages"), 0);

    // The same for a message that was rejected somewhere else before: that rejection is not
    // part of this cycle (self2 -> self2, reason expired), so the cycle is still cut.
    enc = s_qdecl(a, "self2");
    hop_enc_uint(enc, "message_ttl", TTL);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "self2");
    assert_int_equal(s_call(a, NULL, 0), 0);
    enc = s_qdecl(a, "inbox");
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "self2");
    assert_int_equal(s_call(a, NULL, 0), 0);
    s_pub(a, "", "inbox", "refused", NULL);
    raw_msg_t *m = s_get_ok(a, "inbox", false);
    s_settle(a, HOP_CMD_REJECT, m->wire.tag, 0, -1);
    raw_msg_destroy(&m);
    s_wait_qfield(a, "self2", "expired", 1, 3000);
    harness_pause_ms(5 * TTL);
    uint64_t expired = s_qstat(a, "self2", "expired");
    if (expired != 1)
        fail_msg("a dead letter expired %llu times going round self2 -> self2 (the earlier "
                 "rejection in 'inbox' is not part of that cycle): expected 1, then dropped",
                 (unsigned long long)expired);
    assert_int_equal(s_qstat(a, "self2", "published"), 1);
    assert_int_equal(s_qstat(a, "self2", "messages"), 0);
}

static void
test_dead_letters_to_a_missing_exchange_or_no_queue_are_dropped(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    hop_enc_t *enc = s_qdecl(a, "nox");
    hop_enc_cstr(enc, "dead_letter_exchange", "no-such-exchange");
    assert_int_equal(s_call(a, NULL, 0), 0);
    enc = s_qdecl(a, "noq");
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "no-such-queue");
    assert_int_equal(s_call(a, NULL, 0), 0);
    const char *queues[] = {"nox", "noq"};
    for (int i = 0; i < 2; i++) {
        s_pub(a, "", queues[i], "x", NULL);
        raw_msg_t *m = s_get_ok(a, queues[i], false);
        s_settle(a, HOP_CMD_REJECT, m->wire.tag, 0, -1);
        raw_msg_destroy(&m);
        s_expect_no_error(a);
        assert_int_equal(s_qstat(a, queues[i], "dropped"), 1);
        assert_int_equal(s_qstat(a, queues[i], "messages"), 0);
    }
    assert_int_equal(s_status(a, "dropped"), 2);
}

// ---------------------------------------------------------------------------------------
// 9. Delivery limit

static void
test_max_deliveries_dead_letters_a_poison_message(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    enum { LIMIT = 3 };
    assert_int_equal(raw_queue_declare(a, "graveyard", false, false, false, false), 0);
    hop_enc_t *enc = s_qdecl(a, "poison");
    hop_enc_uint(enc, "max_deliveries", LIMIT);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "graveyard");
    assert_int_equal(s_call(a, NULL, 0), 0);
    assert_int_equal(s_consume(a, "poison", "picky", 1, 0), 0);

    uint64_t wall_lo = s_wall_ms();
    s_pub(a, "", "poison", "bad", NULL);
    for (uint64_t n = 1; n <= LIMIT; n++) {
        uint64_t tag = s_expect_deliver(a, "bad", n > 1, n);
        s_settle(a, HOP_CMD_REJECT, tag, 1, -1); // always back to the queue
    }
    // The LIMIT-th return sends it to the graveyard instead: no delivery LIMIT + 1.
    s_expect_no_delivery(a);
    uint64_t wall_hi = s_wall_ms();
    assert_int_equal(s_qstat(a, "poison", "messages"), 0);
    assert_int_equal(s_qstat(a, "poison", "delivered"), LIMIT);
    assert_int_equal(s_qstat(a, "poison", "dead_lettered"), 1);
    raw_msg_t *m = s_get_ok(a, "graveyard", true);
    s_check_delivery(m, "bad", false, 1);
    s_death_t d[DEATH_MAX];
    assert_int_equal(s_deaths(m, d), 1);
    s_check_death(&d[0], "delivery-limit", "poison", "", "poison", 1, wall_lo, wall_hi);
    raw_msg_destroy(&m);
    s_expect_empty(a, "graveyard");

    // Other messages keep flowing to the same consumer.
    s_pub(a, "", "poison", "good", NULL);
    uint64_t tag = s_expect_deliver(a, "good", false, 1);
    raw_ack(a, tag, false);
    s_expect_no_error(a);
    assert_int_equal(s_qstat(a, "poison", "acked"), 1);

    // A nack with requeue counts the same way (limit 1: the first return is the last).
    assert_int_equal(raw_queue_declare(a, "graveyard2", false, false, false, false), 0);
    enc = s_qdecl(a, "once");
    hop_enc_uint(enc, "max_deliveries", 1);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "graveyard2");
    assert_int_equal(s_call(a, NULL, 0), 0);
    s_pub(a, "", "once", "single", NULL);
    m = s_get_ok(a, "once", false);
    s_settle(a, HOP_CMD_NACK, m->wire.tag, 1, -1);
    raw_msg_destroy(&m);
    s_expect_empty(a, "once");
    m = s_get_ok(a, "graveyard2", true);
    assert_int_equal(s_deaths(m, d), 1);
    assert_string_equal(d[0].reason, "delivery-limit");
    raw_msg_destroy(&m);

    // So does a consumer that goes away holding it (here: its connection closes).
    raw_t *c = raw_new(harness_broker_endpoint(fx->broker));
    assert_non_null(c);
    assert_int_equal(raw_hello(c, HB_LONG, "leaver"), 0);
    assert_int_equal(s_consume(c, "once", "leaver", 1, 0), 0);
    s_pub(a, "", "once", "abandoned", NULL);
    s_expect_deliver(c, "abandoned", false, 1);
    raw_begin(c, HOP_CMD_CLOSE);
    assert_int_equal(s_call(c, NULL, 0), 0);
    raw_destroy(&c);
    s_expect_empty(a, "once");
    m = s_get_ok(a, "graveyard2", true);
    s_check_delivery(m, "abandoned", false, 1);
    assert_int_equal(s_deaths(m, d), 1);
    assert_string_equal(d[0].reason, "delivery-limit");
    raw_msg_destroy(&m);
}

// ---------------------------------------------------------------------------------------
// 10. Delayed retry

static void
test_nack_with_delay_holds_the_message_back(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    enum { DELAY = 500 };
    assert_int_equal(raw_queue_declare(a, "dq", false, false, false, false), 0);
    assert_int_equal(s_consume(a, "dq", "c", 1, 0), 0); // a delayed message frees its credit
    s_pub(b, "", "dq", "m1", NULL);
    uint64_t tag = s_expect_deliver(a, "m1", false, 1);

    uint64_t t0 = harness_now_ms();
    s_settle(a, HOP_CMD_NACK, tag, -1, DELAY); // delay implies requeue
    // Waiting: delayed, neither ready nor unacked.
    assert_int_equal(s_qstat(a, "dq", "messages_delayed"), 1);
    assert_int_equal(s_qstat(a, "dq", "messages_ready"), 0);
    assert_int_equal(s_qstat(a, "dq", "messages_unacked"), 0);
    assert_int_equal(s_qstat(a, "dq", "messages"), 1);
    assert_int_equal(s_status(a, "messages_delayed"), 1);
    // Others keep flowing meanwhile: m2, published after the nack, comes first.
    s_pub(b, "", "dq", "m2", NULL);
    raw_msg_t *m = s_deliver(a);
    if (!raw_body_is(m, "m2"))
        fail_msg("the delayed message came back before a later one (after %llu ms)",
                 (unsigned long long)(harness_now_ms() - t0));
    s_check_delivery(m, "m2", false, 1);
    raw_ack(a, m->wire.tag, false);
    raw_msg_destroy(&m);

    m = s_deliver(a);
    uint64_t elapsed = harness_now_ms() - t0;
    s_check_delivery(m, "m1", true, 2);
    if (elapsed < DELAY)
        fail_msg("redelivered %llu ms after a nack with delay %d", (unsigned long long)elapsed,
                 DELAY);
    raw_ack(a, m->wire.tag, false);
    raw_msg_destroy(&m);
    s_expect_no_error(a);
    assert_int_equal(s_qstat(a, "dq", "messages_delayed"), 0);
    assert_int_equal(s_qstat(a, "dq", "messages"), 0);
    assert_int_equal(s_qstat(a, "dq", "acked"), 2);

    // reject takes a delay too; delay 0 requeues at once.
    s_pub(b, "", "dq", "m3", NULL);
    tag = s_expect_deliver(a, "m3", false, 1);
    t0 = harness_now_ms();
    s_settle(a, HOP_CMD_REJECT, tag, 1, 300);
    tag = s_expect_deliver(a, "m3", true, 2);
    assert_true(harness_now_ms() - t0 >= 300);
    s_settle(a, HOP_CMD_NACK, tag, 1, 0);
    assert_int_equal(s_qstat(a, "dq", "messages_delayed"), 0);
    tag = s_expect_deliver(a, "m3", true, 3);
    raw_ack(a, tag, false);
    s_expect_no_error(a);
    assert_int_equal(s_qstat(a, "dq", "messages"), 0);
}

static void
test_delayed_messages_are_not_ready(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    s_confirms_t *t = s_confirms_reset();
    // They do not count toward max_length: with one delayed, one more is accepted.
    hop_enc_t *enc = s_qdecl(a, "full");
    hop_enc_uint(enc, "max_length", 1);
    hop_enc_cstr(enc, "overflow", "reject-publish");
    assert_int_equal(s_call(a, NULL, 0), 0);
    s_pub(b, "", "full", "first", &(s_pub_t){.seq = s_next_seq(t)});
    s_confirms_wait(b, t); // stored: the get on the other connection finds it
    raw_msg_t *m = s_get_ok(a, "full", false);
    s_settle(a, HOP_CMD_NACK, m->wire.tag, -1, 60000);
    raw_msg_destroy(&m);
    assert_int_equal(s_qstat(a, "full", "messages_delayed"), 1);
    s_pub(b, "", "full", "second", &(s_pub_t){.seq = s_next_seq(t)});
    s_pub(b, "", "full", "third", &(s_pub_t){.seq = s_next_seq(t)});
    s_confirms_wait(b, t);
    assert_int_equal(t->state[1], C_ACK);
    assert_int_equal(t->state[2], C_ACK);
    assert_int_equal(t->state[3], C_NACK);
    assert_int_equal(t->code[3], HOP_CODE_RESOURCE_ERROR);
    char bodies[64];
    assert_string_equal(s_drain(a, "full", bodies, sizeof bodies), "second");
    assert_int_equal(s_qstat(a, "full", "messages"), 1); // "first", still delayed

    // A message whose TTL passes while it is delayed is never delivered again.
    enc = s_qdecl(a, "short");
    hop_enc_uint(enc, "message_ttl", 300);
    assert_int_equal(s_call(a, NULL, 0), 0);
    assert_int_equal(s_consume(a, "short", "c", 0, 0), 0);
    s_pub(b, "", "short", "doomed", NULL);
    uint64_t tag = s_expect_deliver(a, "doomed", false, 1);
    s_settle(a, HOP_CMD_NACK, tag, -1, 600);
    s_wait_qfield(a, "short", "expired", 1, 3000);
    s_expect_no_delivery(a);
    assert_int_equal(s_qstat(a, "short", "messages"), 0);
}

static void
test_queue_retry_delay_backs_off_exponentially_up_to_its_cap(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    hop_enc_t *enc = s_qdecl(a, "bo");
    hop_enc_uint(enc, "retry_delay", 200);
    hop_enc_uint(enc, "retry_delay_max", 400);
    assert_int_equal(s_call(a, NULL, 0), 0);
    assert_int_equal(s_consume(a, "bo", "c", 0, 0), 0);
    s_pub(a, "", "bo", "flaky", NULL);
    uint64_t tag = s_expect_deliver(a, "flaky", false, 1);
    // 200 ms, then doubled to 400, then capped at 400.
    const uint64_t spacing[] = {200, 400, 400};
    for (int i = 0; i < 3; i++) {
        uint64_t t0 = harness_now_ms();
        s_settle(a, HOP_CMD_REJECT, tag, -1, -1); // requeue by default
        assert_int_equal(s_qstat(a, "bo", "messages_delayed"), 1);
        tag = s_expect_deliver(a, "flaky", true, (uint64_t)i + 2);
        uint64_t elapsed = harness_now_ms() - t0;
        if (elapsed < spacing[i])
            fail_msg("retry %d came after %llu ms, before the backoff of %llu ms", i + 1,
                     (unsigned long long)elapsed, (unsigned long long)spacing[i]);
    }
    // An explicit delay:0 overrides the queue's backoff: requeued at once.
    s_settle(a, HOP_CMD_NACK, tag, 1, 0);
    assert_int_equal(s_qstat(a, "bo", "messages_delayed"), 0);
    tag = s_expect_deliver(a, "flaky", true, 5);
    raw_ack(a, tag, false);
    s_expect_no_error(a);
    assert_int_equal(s_qstat(a, "bo", "messages"), 0);
    assert_int_equal(s_qstat(a, "bo", "acked"), 1);
}

// ---------------------------------------------------------------------------------------
// 11. Ack deadlines

// Waits for the revoked push on c; checks consumer and tag. Returns when it arrived.
static uint64_t
s_expect_revoked(raw_t *c, const char *consumer, uint64_t tag, int timeout_ms)
{
    raw_msg_t *m = raw_next(c, HOP_CMD_REVOKED, timeout_ms);
    if (!m)
        fail_msg("no revoked within %d ms", timeout_ms);
    uint64_t at = harness_now_ms();
    s_expect_str(m->wire.consumer, consumer);
    assert_true(m->wire.has & HOP_F_TAG);
    assert_int_equal(m->wire.tag, tag);
    assert_true((m->wire.has & HOP_F_TEXT) && m->wire.text.len > 0);
    raw_msg_destroy(&m);
    return at;
}

// A late ack of a revoked tag: 406 saying it was revoked, carrying the ack's id.
static void
s_expect_late_ack_refused(raw_t *c, uint64_t tag)
{
    hop_enc_t *enc = raw_begin(c, HOP_CMD_ACK);
    hop_enc_uint(enc, "tag", tag);
    char text[512];
    assert_int_equal(s_call(c, text, sizeof text), HOP_CODE_PRECONDITION_FAILED);
    if (!strstr(text, "revoked"))
        fail_msg("late ack of tag %llu: the error does not say it was revoked: %s",
                 (unsigned long long)tag, text);
}

static uint64_t
s_consumer_ack_timeout(raw_t *c, const char *consumer)
{
    raw_msg_t *list = raw_list(c, "consumers");
    assert_non_null(list);
    uint64_t v = 0;
    bool found = harness_items_uint(list->wire.items.ptr, list->wire.items.len, "consumer",
                                    consumer, "ack_timeout", &v);
    raw_msg_destroy(&list);
    if (!found)
        fail_msg("consumer '%s' not listed with an ack_timeout", consumer);
    return v;
}

static void
test_queue_ack_timeout_revokes_and_redelivers(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    enum { DEADLINE = 1000 };
    hop_enc_t *enc = s_qdecl(a, "slow");
    hop_enc_uint(enc, "ack_timeout", DEADLINE);
    assert_int_equal(s_call(a, NULL, 0), 0);
    assert_int_equal(s_consume(a, "slow", "c1", 1, 0), 0);
    assert_int_equal(s_consumer_ack_timeout(a, "c1"), DEADLINE);

    uint64_t t0 = harness_now_ms();
    s_pub(b, "", "slow", "job", NULL);
    uint64_t tag1 = s_expect_deliver(a, "job", false, 1);
    // Not acked: revoked after the deadline (never before), within 3 s of it.
    uint64_t at = s_expect_revoked(a, "c1", tag1, DEADLINE + 3000);
    if (at - t0 < DEADLINE)
        fail_msg("revoked %llu ms after publishing, before the %d ms deadline",
                 (unsigned long long)(at - t0), DEADLINE);
    // ... and delivered again, flagged, under a new tag.
    raw_msg_t *m = s_deliver(a);
    s_check_delivery(m, "job", true, 2);
    uint64_t tag2 = m->wire.tag;
    assert_true(tag2 > tag1);
    raw_msg_destroy(&m);
    // The late ack of the old tag cannot settle anything.
    s_expect_late_ack_refused(a, tag1);
    assert_int_equal(s_qstat(a, "slow", "messages_unacked"), 1);
    raw_ack(a, tag2, false);
    s_expect_no_error(a);
    s_expect_no_delivery(a);
    assert_int_equal(s_qstat(a, "slow", "messages"), 0);
    assert_int_equal(s_qstat(a, "slow", "acked"), 1);
    assert_int_equal(s_qstat(a, "slow", "delivered"), 2);
    assert_int_equal(s_status(a, "revoked"), 1);

    // get has no deadline.
    assert_int_equal(raw_cancel(a, "c1"), 0);
    s_pub(b, "", "slow", "got", NULL);
    m = s_get_ok(b, "slow", false);
    s_check_delivery(m, "got", false, 1);
    uint64_t tag = m->wire.tag;
    raw_msg_destroy(&m);
    // Neither has a no-ack consumer.
    hop_enc_t *nenc = raw_begin(b, HOP_CMD_CONSUME);
    hop_enc_cstr(nenc, "queue", "slow");
    hop_enc_cstr(nenc, "consumer", "free");
    hop_enc_bool(nenc, "no_ack", true);
    assert_int_equal(s_call(b, NULL, 0), 0);
    s_pub(b, "", "slow", "fire and forget", NULL);
    s_expect_deliver(b, "fire and forget", false, 1);
    harness_pause_ms(DEADLINE + 500);
    s_sync(b);
    assert_int_equal(raw_pending(b, HOP_CMD_REVOKED), 0);
    raw_ack(b, tag, false);
    s_expect_no_error(b);
    assert_int_equal(s_status(a, "revoked"), 1);
    assert_int_equal(s_qstat(a, "slow", "messages"), 0);
}

static void
test_consumer_ack_timeout_overrides_the_queue(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    // Values under 1000 ms are refused, on the queue and on the consumer.
    hop_enc_t *enc = s_qdecl(a, "bad");
    hop_enc_uint(enc, "ack_timeout", 999);
    assert_int_equal(s_call(a, NULL, 0), HOP_CODE_SYNTAX_ERROR);
    assert_false(s_queue_listed(a, "bad"));
    enc = s_qdecl(a, "q2");
    hop_enc_uint(enc, "ack_timeout", 60000);
    assert_int_equal(s_call(a, NULL, 0), 0);
    assert_int_equal(s_consume(a, "q2", "too-short", 1, 999), HOP_CODE_SYNTAX_ERROR);

    assert_int_equal(raw_queue_declare(a, "plain", false, false, false, false), 0);
    assert_int_equal(s_consume(b, "plain", "default", 1, 0), 0);
    assert_int_equal(s_consume(b, "q2", "queue's", 1, 0), 0);
    assert_int_equal(s_consume(a, "q2", "fast", 1, 1000), 0);
    assert_int_equal(s_consumer_ack_timeout(a, "fast"), 1000);
    assert_int_equal(s_consumer_ack_timeout(a, "queue's"), 60000);
    assert_int_equal(s_consumer_ack_timeout(a, "default"), 30u * 60 * 1000);
    raw_msg_t *list = raw_list(a, "consumers");
    assert_non_null(list);
    assert_int_equal(harness_items_count(list->wire.items.ptr, list->wire.items.len), 3);
    raw_msg_destroy(&list); // "too-short" was never made
}

static void
test_consumer_ack_timeout_revokes_before_the_queue_deadline(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    hop_enc_t *enc = s_qdecl(a, "q2");
    hop_enc_uint(enc, "ack_timeout", 60000);
    assert_int_equal(s_call(a, NULL, 0), 0);
    assert_int_equal(s_consume(a, "q2", "fast", 1, 1000), 0);
    assert_int_equal(s_consumer_ack_timeout(a, "fast"), 1000);
    assert_int_equal(s_consume(a, "q2", "too-short", 1, 999), HOP_CODE_SYNTAX_ERROR);

    uint64_t t0 = harness_now_ms();
    s_pub(b, "", "q2", "job", NULL);
    uint64_t tag1 = s_expect_deliver(a, "job", false, 1);
    uint64_t at = s_expect_revoked(a, "fast", tag1, 1000 + 3000);
    assert_true(at - t0 >= 1000);
    uint64_t tag2 = s_expect_deliver(a, "job", true, 2);
    s_expect_late_ack_refused(a, tag1);
    raw_ack(a, tag2, false);
    s_expect_no_error(a);
    assert_int_equal(s_qstat(a, "q2", "messages"), 0);
    assert_int_equal(s_status(a, "revoked"), 1);

    // Upwards too: a consumer with 60 s on a queue with 1 s keeps its delivery past 1 s.
    enc = s_qdecl(a, "q1s");
    hop_enc_uint(enc, "ack_timeout", 1000);
    assert_int_equal(s_call(a, NULL, 0), 0);
    assert_int_equal(s_consume(b, "q1s", "patient", 1, 60000), 0);
    assert_int_equal(s_consumer_ack_timeout(a, "patient"), 60000);
    s_pub(a, "", "q1s", "long job", NULL);
    uint64_t tag = s_expect_deliver(b, "long job", false, 1);
    harness_pause_ms(1000 + 500);
    s_sync(b);
    assert_int_equal(raw_pending(b, HOP_CMD_REVOKED), 0);
    raw_ack(b, tag, false);
    s_expect_no_error(b);
    assert_int_equal(s_qstat(a, "q1s", "acked"), 1);
    assert_int_equal(s_status(a, "revoked"), 1);
}

static void
test_revoked_delivery_is_offered_to_another_consumer_first(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    hop_enc_t *enc = s_qdecl(a, "shared");
    hop_enc_uint(enc, "ack_timeout", 1000);
    assert_int_equal(s_call(a, NULL, 0), 0);
    assert_int_equal(s_consume(a, "shared", "stuck", 1, 0), 0);
    s_pub(b, "", "shared", "job", NULL);
    uint64_t tag = s_expect_deliver(a, "job", false, 1);
    assert_int_equal(s_consume(b, "shared", "healthy", 1, 0), 0);
    s_expect_revoked(a, "stuck", tag, 1000 + 3000);
    // The other consumer gets it; the stuck one stays and gets nothing more.
    uint64_t tag2 = s_expect_deliver(b, "job", true, 2);
    raw_ack(b, tag2, false);
    s_expect_no_error(b);
    s_expect_no_delivery(a);
    s_expect_late_ack_refused(a, tag);
    assert_int_equal(s_qstat(a, "shared", "consumers"), 2);
    assert_int_equal(s_qstat(a, "shared", "messages"), 0);
    // The stuck consumer still takes new work.
    s_pub(b, "", "shared", "next", NULL);
    s_pub(b, "", "shared", "after", NULL);
    raw_msg_t *m1 = s_deliver(a);
    raw_msg_t *m2 = s_deliver(b);
    assert_true((raw_body_is(m1, "next") && raw_body_is(m2, "after")) ||
                (raw_body_is(m1, "after") && raw_body_is(m2, "next")));
    raw_ack(a, m1->wire.tag, false);
    raw_ack(b, m2->wire.tag, false);
    raw_msg_destroy(&m1);
    raw_msg_destroy(&m2);
    s_expect_no_error(a);
    s_expect_no_error(b);
    assert_int_equal(s_qstat(a, "shared", "acked"), 3);
}

static void
test_revoke_at_the_delivery_limit_dead_letters(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "lim.dead", false, false, false, false), 0);
    hop_enc_t *enc = s_qdecl(a, "lim");
    hop_enc_uint(enc, "ack_timeout", 1000);
    hop_enc_uint(enc, "max_deliveries", 1);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "lim.dead");
    assert_int_equal(s_call(a, NULL, 0), 0);
    assert_int_equal(s_consume(a, "lim", "c", 1, 0), 0);
    s_pub(a, "", "lim", "stuck", NULL);
    uint64_t tag = s_expect_deliver(a, "stuck", false, 1);
    s_expect_revoked(a, "c", tag, 1000 + 3000);
    s_expect_no_delivery(a);
    s_expect_late_ack_refused(a, tag);
    assert_int_equal(s_qstat(a, "lim", "messages"), 0);
    assert_int_equal(s_qstat(a, "lim", "dead_lettered"), 1);
    raw_msg_t *m = s_get_ok(a, "lim.dead", true);
    s_check_delivery(m, "stuck", false, 1);
    s_death_t d[DEATH_MAX];
    assert_int_equal(s_deaths(m, d), 1);
    assert_string_equal(d[0].reason, "delivery-limit");
    assert_string_equal(d[0].queue, "lim");
    assert_int_equal(d[0].count, 1);
    raw_msg_destroy(&m);
}

static void
test_many_revoked_deliveries_each_come_back_once(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    enum { N = 12 };
    hop_enc_t *enc = s_qdecl(a, "many");
    hop_enc_uint(enc, "ack_timeout", 1000);
    assert_int_equal(s_call(a, NULL, 0), 0);
    assert_int_equal(s_consume(a, "many", "stuck", N, 0), 0);
    char body[16];
    for (int i = 0; i < N; i++) {
        snprintf(body, sizeof body, "m%02d", i);
        s_pub(b, "", "many", body, NULL);
    }
    uint64_t old[N];
    for (int i = 0; i < N; i++) {
        snprintf(body, sizeof body, "m%02d", i);
        old[i] = s_expect_deliver(a, body, false, 1);
    }
    // Every one is revoked, once.
    bool revoked[N] = {false};
    for (int i = 0; i < N; i++) {
        raw_msg_t *m = raw_next(a, HOP_CMD_REVOKED, 1000 + 3000);
        if (!m)
            fail_msg("%d of %d deliveries revoked after 4 s", i, N);
        int k = 0;
        while (k < N && old[k] != m->wire.tag)
            k++;
        if (k == N || revoked[k])
            fail_msg("revoked tag %llu: %s", (unsigned long long)m->wire.tag,
                     k == N ? "never delivered" : "revoked twice");
        revoked[k] = true;
        raw_msg_destroy(&m);
    }
    // They come back in their original order, flagged, and the late acks of the old tags all
    // fail saying why.
    uint64_t fresh[N];
    for (int i = 0; i < N; i++) {
        snprintf(body, sizeof body, "m%02d", i);
        fresh[i] = s_expect_deliver(a, body, true, 2);
    }
    for (int i = 0; i < N; i++)
        raw_ack(a, fresh[i], false);
    s_expect_no_error(a);
    s_expect_no_delivery(a);
    assert_int_equal(s_qstat(a, "many", "messages"), 0);
    assert_int_equal(s_qstat(a, "many", "acked"), N);
    assert_int_equal(s_status(a, "revoked"), N);
    for (int i = 0; i < N; i++)
        s_expect_late_ack_refused(a, old[i]);
}

// ---------------------------------------------------------------------------------------
// 12. Priorities

static void
test_priorities_deliver_highest_first_fifo_within(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    hop_enc_t *enc = s_qdecl(a, "prio");
    hop_enc_uint(enc, "max_priority", 5);
    assert_int_equal(s_call(a, NULL, 0), 0);
    static const struct {
        const char *body;
        uint64_t priority;
    } in[] = {{"p0", 0}, {"p3", 3}, {"p5a", 5}, {"p1", 1}, {"p5b", 5}, {"p9", 9}};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        s_pub(a, "", "prio", in[i].body, &(s_pub_t){.priority = in[i].priority});
    s_sync(a);
    // 9 counts as 5 and came last among the fives.
    static const struct {
        const char *body;
        uint64_t priority;
    } out[] = {{"p5a", 5}, {"p5b", 5}, {"p9", 9}, {"p3", 3}, {"p1", 1}, {"p0", 0}};
    uint64_t tags[6];
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) {
        raw_msg_t *m = s_get_ok(a, "prio", false);
        s_check_delivery(m, out[i].body, false, 1);
        if (out[i].priority) {
            assert_true(m->wire.has & HOP_F_PRIORITY);
            assert_int_equal(m->wire.priority, out[i].priority);
        } else
            assert_false(m->wire.has & HOP_F_PRIORITY);
        assert_int_equal(m->wire.messages, sizeof out / sizeof out[0] - i - 1);
        tags[i] = m->wire.tag;
        raw_msg_destroy(&m);
    }
    s_expect_empty(a, "prio");
    // Requeued, they go back to their places: the same order again.
    for (size_t i = 6; i-- > 0;)
        s_settle(a, HOP_CMD_NACK, tags[i], 1, -1);
    assert_int_equal(s_qstat(a, "prio", "messages_ready"), 6);
    // A consumer sees them in that order, priorities carried.
    assert_int_equal(s_consume(a, "prio", "c", 0, 0), 0);
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) {
        raw_msg_t *m = s_deliver(a);
        s_check_delivery(m, out[i].body, true, 2);
        if (out[i].priority)
            assert_int_equal(m->wire.priority, out[i].priority);
        else
            assert_false(m->wire.has & HOP_F_PRIORITY);
        raw_ack(a, m->wire.tag, false);
        raw_msg_destroy(&m);
    }
    s_expect_no_error(a);
    assert_int_equal(s_qstat(a, "prio", "messages"), 0);
    assert_int_equal(s_qstat(a, "prio", "acked"), 6);
    // The consume dispatched all six at once: a batching client got them as a batch.
    size_t records = 0;
    if (fx->batch)
        assert_true(raw_batches(a, &records) >= 1 && records >= 2);
    else
        assert_int_equal(raw_batches(a, &records), 0);
}

// ---------------------------------------------------------------------------------------
// 13. Queue arguments: validation and equivalence

static void
test_queue_arguments_are_checked_and_fixed_at_first_declare(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    char text[512];
    hop_enc_t *enc = s_qdecl(a, "bad");
    hop_enc_cstr(enc, "overflow", "drop-tail");
    assert_int_equal(s_call(a, text, sizeof text), HOP_CODE_SYNTAX_ERROR);
    assert_non_null(strstr(text, "overflow"));
    enc = s_qdecl(a, "bad");
    hop_enc_cstr(enc, "dead_letter_key", "k");
    assert_int_equal(s_call(a, text, sizeof text), HOP_CODE_PRECONDITION_FAILED);
    assert_non_null(strstr(text, "dead_letter_key"));
    enc = s_qdecl(a, "bad");
    hop_enc_uint(enc, "max_priority", 0);
    assert_int_equal(s_call(a, NULL, 0), HOP_CODE_SYNTAX_ERROR);
    enc = s_qdecl(a, "bad");
    hop_enc_uint(enc, "max_priority", 256);
    assert_int_equal(s_call(a, NULL, 0), HOP_CODE_SYNTAX_ERROR);
    enc = s_qdecl(a, "bad");
    hop_enc_cstr(enc, "max_length", "ten"); // wrong type
    assert_int_equal(s_call(a, NULL, 0), HOP_CODE_SYNTAX_ERROR);
    enc = s_qdecl(a, "bad");
    hop_enc_uint(enc, "expires", 0); // a queue cannot expire before it is used
    assert_int_equal(s_call(a, NULL, 0), HOP_CODE_SYNTAX_ERROR);
    enc = s_qdecl(a, "bad");
    hop_enc_uint(enc, "retry_delay", 500);
    hop_enc_uint(enc, "retry_delay_max", 100); // a cap under the start
    assert_int_equal(s_call(a, text, sizeof text), HOP_CODE_PRECONDITION_FAILED);
    assert_non_null(strstr(text, "retry_delay_max"));
    assert_false(s_queue_listed(a, "bad")); // none of them made it

    enc = s_qdecl(a, "eq");
    hop_enc_uint(enc, "max_length", 5);
    hop_enc_cstr(enc, "dead_letter_exchange", "dlx");
    assert_int_equal(s_call(a, NULL, 0), 0);
    // A different value: 406 naming the argument; the queue keeps its own.
    enc = s_qdecl(a, "eq");
    hop_enc_uint(enc, "max_length", 6);
    assert_int_equal(s_call(a, text, sizeof text), HOP_CODE_PRECONDITION_FAILED);
    if (!strstr(text, "max_length"))
        fail_msg("406 does not name max_length: %s", text);
    enc = s_qdecl(a, "eq");
    hop_enc_cstr(enc, "dead_letter_exchange", "other");
    assert_int_equal(s_call(a, text, sizeof text), HOP_CODE_PRECONDITION_FAILED);
    assert_non_null(strstr(text, "dead_letter_exchange"));
    enc = s_qdecl(a, "eq");
    hop_enc_uint(enc, "message_ttl", 1000); // not set at first: different too
    assert_int_equal(s_call(a, text, sizeof text), HOP_CODE_PRECONDITION_FAILED);
    assert_non_null(strstr(text, "message_ttl"));
    assert_int_equal(s_qstat(a, "eq", "max_length"), 5);
    // The same values, or none at all: accepted.
    enc = s_qdecl(a, "eq");
    hop_enc_uint(enc, "max_length", 5);
    assert_int_equal(s_call(a, NULL, 0), 0);
    assert_int_equal(raw_queue_declare(a, "eq", false, false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "eq", false, false, false, true), 0);
    assert_int_equal(s_qstat(a, "eq", "max_length"), 5);
    s_expect_no_error(a);
}

// ---------------------------------------------------------------------------------------
// 14. list and status

static void
s_expect_listed_str(const void *item, size_t size, const char *key, const char *value)
{
    char buf[64];
    if (!harness_map_str(item, size, key, buf, sizeof buf))
        fail_msg("list queues: no string '%s'", key);
    assert_string_equal(buf, value);
}

static void
test_list_and_status_show_arguments_and_counters(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    raw_t *b = fx->b;
    s_confirms_t *t = s_confirms_reset();
    assert_int_equal(raw_queue_declare(a, "lq.dead", false, false, false, false), 0);
    hop_enc_t *enc = s_qdecl(a, "lq");
    hop_enc_uint(enc, "max_length", 2);
    hop_enc_cstr(enc, "overflow", "reject-publish");
    hop_enc_uint(enc, "max_length_bytes", 4096);
    hop_enc_uint(enc, "message_ttl", 60000);
    hop_enc_uint(enc, "expires", 600000);
    hop_enc_uint(enc, "max_deliveries", 5);
    hop_enc_cstr(enc, "dead_letter_exchange", "");
    hop_enc_cstr(enc, "dead_letter_key", "lq.dead");
    hop_enc_uint(enc, "retry_delay", 100);
    hop_enc_uint(enc, "retry_delay_max", 800);
    hop_enc_uint(enc, "max_priority", 3);
    hop_enc_uint(enc, "ack_timeout", 5000);
    assert_int_equal(s_call(a, NULL, 0), 0);

    // rejected_publishes: 2 stored (confirmed), the third refused (it asked for no confirm).
    s_pub(b, "", "lq", "one", &(s_pub_t){.seq = s_next_seq(t)});
    s_pub(b, "", "lq", "two", &(s_pub_t){.seq = s_next_seq(t)});
    s_pub(b, "", "lq", "three", NULL);
    s_sync(b); // all three handled before anything is consumed
    s_confirms_wait(b, t);
    assert_int_equal(t->acks, 2);
    s_expect_no_confirm(b);
    // messages_delayed: one nacked with a long delay. dead_lettered: one rejected.
    assert_int_equal(s_consume(a, "lq", "lc", 1, 0), 0);
    uint64_t tag = s_expect_deliver(a, "one", false, 1);
    s_settle(a, HOP_CMD_NACK, tag, -1, 60000);
    tag = s_expect_deliver(a, "two", false, 1);
    s_settle(a, HOP_CMD_REJECT, tag, 0, -1);
    s_expect_no_delivery(a);
    // expired and dropped: a message that expires with no dead-letter exchange.
    enc = s_qdecl(a, "lx");
    hop_enc_uint(enc, "message_ttl", 100);
    assert_int_equal(s_call(a, NULL, 0), 0);
    s_pub(b, "", "lx", "old", NULL);
    s_wait_qfield(a, "lx", "expired", 1, 3000);
    // returned: a mandatory message with no route.
    s_pub(b, "", "nowhere", "back", &(s_pub_t){.mandatory = true});
    raw_msg_t *m = raw_next(b, HOP_CMD_RETURN, WAIT_MS);
    assert_non_null(m);
    raw_msg_destroy(&m);

    raw_msg_t *list = raw_list(a, "queues");
    assert_non_null(list);
    const void *item;
    size_t size;
    assert_true(
        harness_items_find(list->wire.items.ptr, list->wire.items.len, "name", "lq", &item, &size));
    static const struct {
        const char *key;
        uint64_t value;
    } nums[] = {
        {"max_length", 2},        {"max_length_bytes", 4096},
        {"message_ttl", 60000},   {"expires", 600000},
        {"max_deliveries", 5},    {"retry_delay", 100},
        {"retry_delay_max", 800}, {"max_priority", 3},
        {"ack_timeout", 5000},    {"messages_ready", 0},
        {"messages_unacked", 0},  {"messages_delayed", 1},
        {"messages", 1},          {"published", 2},
        {"delivered", 2},         {"acked", 0},
        {"dead_lettered", 1},     {"dropped", 0},
        {"expired", 0},           {"rejected_publishes", 1},
        {"consumers", 1},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        uint64_t v;
        if (!harness_map_uint(item, size, nums[i].key, &v))
            fail_msg("list queues: lq has no '%s'", nums[i].key);
        if (v != nums[i].value)
            fail_msg("list queues: lq %s is %llu, expected %llu", nums[i].key,
                     (unsigned long long)v, (unsigned long long)nums[i].value);
    }
    s_expect_listed_str(item, size, "overflow", "reject-publish");
    s_expect_listed_str(item, size, "dead_letter_exchange", "");
    s_expect_listed_str(item, size, "dead_letter_key", "lq.dead");
    // A queue without arguments lists none of them.
    assert_true(harness_items_find(list->wire.items.ptr, list->wire.items.len, "name", "lq.dead",
                                   &item, &size));
    static const char *const args[] = {"max_length",           "max_length_bytes", "overflow",
                                       "message_ttl",          "expires",          "max_deliveries",
                                       "dead_letter_exchange", "dead_letter_key",  "retry_delay",
                                       "retry_delay_max",      "max_priority",     "ack_timeout"};
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        hop_mp_t v;
        if (harness_map_find(item, size, args[i], &v))
            fail_msg("list queues: lq.dead lists '%s', which was never set", args[i]);
    }
    uint64_t v = 0;
    assert_true(harness_map_uint(item, size, "messages_ready", &v));
    assert_int_equal(v, 1);
    raw_msg_destroy(&list);
    assert_int_equal(s_qstat(a, "lx", "expired"), 1);
    assert_int_equal(s_qstat(a, "lx", "dropped"), 1);

    assert_int_equal(s_consumer_ack_timeout(a, "lc"), 5000);

    static const struct {
        const char *key;
        uint64_t value;
    } totals[] = {
        {"returned", 1},         {"confirmed", 2},        {"rejected_publishes", 1},
        {"dead_lettered", 1},    {"dropped", 1},          {"expired", 1},
        {"revoked", 0},          {"messages_delayed", 1}, {"messages_ready", 1},
        {"messages_unacked", 0},
    };
    raw_msg_t *status = raw_status(a);
    assert_non_null(status);
    for (size_t i = 0; i < sizeof totals / sizeof totals[0]; i++) {
        if (!harness_map_uint(zmq_msg_data(&status->header), zmq_msg_size(&status->header),
                              totals[i].key, &v))
            fail_msg("status has no '%s'", totals[i].key);
        if (v != totals[i].value)
            fail_msg("status %s is %llu, expected %llu", totals[i].key, (unsigned long long)v,
                     (unsigned long long)totals[i].value);
    }
    raw_msg_destroy(&status);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_confirms_cover_every_publish_exactly_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_refused_publish_with_seq_gets_a_negative_confirm_not_an_error, setup_small,
            teardown),
        cmocka_unit_test_setup_teardown(test_close_right_after_publishing_still_confirms, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mandatory_unroutable_is_returned_then_confirmed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_max_length_drop_head_keeps_newest_and_dead_letters_the_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_length_bytes_counts_ready_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_reject_publish_bounded_buffer_loses_and_duplicates_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_ttl_expired_messages_are_never_delivered,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_ttl_dead_letters_with_reason_expired, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_per_message_expiration_and_the_shorter_ttl_applies,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_expires_when_unused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_and_nack_without_requeue_dead_letter, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dead_letters_fan_out_and_keep_their_bodies, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_nack_multiple_without_requeue_dead_letters_in_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_lettered_again_from_the_same_queue_counts_up,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letter_back_into_the_queue_it_left_is_dropped,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_dead_letters_to_a_missing_exchange_or_no_queue_are_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_deliveries_dead_letters_a_poison_message, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_nack_with_delay_holds_the_message_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_delayed_messages_are_not_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_queue_retry_delay_backs_off_exponentially_up_to_its_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_ack_timeout_revokes_and_redelivers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_consumer_ack_timeout_overrides_the_queue, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_consumer_ack_timeout_revokes_before_the_queue_deadline,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoked_delivery_is_offered_to_another_consumer_first,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke_at_the_delivery_limit_dead_letters, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_many_revoked_deliveries_each_come_back_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_priorities_deliver_highest_first_fifo_within, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_queue_arguments_are_checked_and_fixed_at_first_declare,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_and_status_show_arguments_and_counters, setup,
                                        teardown),
        // Again with batching clients (the broker's batch path for deliveries).
        cmocka_unit_test_setup_teardown(test_mandatory_unroutable_is_returned_then_confirmed,
                                        setup_batch, teardown),
        cmocka_unit_test_setup_teardown(test_reject_and_nack_without_requeue_dead_letter,
                                        setup_batch, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letters_fan_out_and_keep_their_bodies,
                                        setup_batch, teardown),
        cmocka_unit_test_setup_teardown(test_max_deliveries_dead_letters_a_poison_message,
                                        setup_batch, teardown),
        cmocka_unit_test_setup_teardown(test_nack_with_delay_holds_the_message_back, setup_batch,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_delayed_messages_are_not_ready, setup_batch, teardown),
        cmocka_unit_test_setup_teardown(
            test_queue_retry_delay_backs_off_exponentially_up_to_its_cap, setup_batch, teardown),
        cmocka_unit_test_setup_teardown(test_queue_ack_timeout_revokes_and_redelivers, setup_batch,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_many_revoked_deliveries_each_come_back_once,
                                        setup_batch, teardown),
        cmocka_unit_test_setup_teardown(test_priorities_deliver_highest_first_fifo_within,
                                        setup_batch, teardown),
        cmocka_unit_test_setup_teardown(test_list_and_status_show_arguments_and_counters,
                                        setup_batch, teardown),
    };
    return cmocka_run_group_tests_name("integration.guarantees", tests, NULL, NULL);
}
